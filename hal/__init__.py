"""hal: the hardware layer (audio, GPIO, network) behind small interfaces.

Each backend lives in its own module and imports its vendor library only there
(``hal.alsa`` -> alsaaudio, ``hal.rpigpio`` -> RPi.GPIO, ``hal.netwatch`` -> netifaces);
names load on first use (PEP 562), so ``import hal`` costs nothing and the
simulated backends run on any machine. ``hal.rpigpio`` is imported by name only.
hal never imports sipstack or firmware: the loop comes in as ``hal.loop_api.EventLoop``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "audio": [
        "SAMPLE_WIDTH",
        "SUPPORTED_RATES",
        "AudioConfig",
        "AudioError",
        "AudioConfigError",
        "AudioDeviceError",
        "AudioMixerError",
        "StreamDirection",
        "StreamState",
        "AudioEvent",
        "AudioXrun",
        "AudioDeviceLost",
        "AudioDeviceRestored",
        "FrameSink",
        "FrameSource",
        "EventSink",
        "CaptureStream",
        "PlaybackStream",
        "AudioDevice",
        "silence",
    ],
    "debounce": [
        "ButtonPressed",
        "ButtonReleased",
        "ButtonLongPressed",
        "ButtonEvent",
        "ButtonPhase",
        "Debouncer",
        "LedPattern",
        "PatternSchedule",
    ],
    "gpio": [
        "ButtonHandler",
        "STEADY",
        "SLOW_BLINK",
        "FAST_BLINK",
        "DOUBLE_FLASH",
        "HEARTBEAT",
        "Pull",
        "ButtonConfig",
        "LedConfig",
        "RelayConfig",
        "GpioConfig",
        "GpioConfigError",
        "validate_config",
        "VALID_BCM_PINS",
        "Buttons",
        "Leds",
        "Relay",
        "GpioBoard",
        "PinIO",
        "PinBoard",
    ],
    "network": [
        "InterfaceAddress",
        "DefaultRoute",
        "NetworkSnapshot",
        "AddressAdded",
        "AddressRemoved",
        "LinkUp",
        "LinkDown",
        "DefaultRouteChanged",
        "NetworkEvent",
        "NetworkHandler",
        "NetworkInfo",
        "diff_snapshots",
        "family_name",
    ],
    "netwatch": [
        "NetifacesWatcher",
        "read_snapshot",
        "route_source_address",
        "RTNETLINK_GROUPS",
    ],
    "sim": [
        "SimPins",
        "SimGpioBoard",
        "SimNetwork",
        "default_sim_snapshot",
    ],
    "sim_audio": [
        "SimAudioDevice",
        "SimCapture",
        "SimPlayback",
        "tone_frames",
        "wav_frames",
        "pcm_frames",
        "read_wav",
        "write_wav",
    ],
    "voice": [
        "VoiceConfig",
        "VoiceProcessor",
    ],
    "speexdsp": [
        "EchoCanceller",
        "Preprocessor",
        "SpeexDSPError",
        "SpeexDSPUnavailable",
        "load_library",
    ],
    "alsa": [
        "AlsaAudioDevice",
        "AlsaCapture",
        "AlsaPlayback",
        "AlsaMixer",
        "import_alsaaudio",
    ],
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'hal' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
