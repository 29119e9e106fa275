"""Audio interfaces of the hardware layer: configuration, streams, events.

An audio device has a capture stream (microphone) and a playback stream
(loudspeaker). Both move *frames*: 16-bit signed little-endian mono PCM, one
frame per period, and the period equals the RTP packetisation time (ptime, 20 ms
by default) so that one captured frame becomes one RTP packet and one decoded
packet fills one period. At 8 kHz a frame is 160 samples (320 bytes); at 16 kHz
320 samples (640 bytes).

The device drives the timing (push for capture, pull for playback), because only
the sound card knows when a period is due:

* capture: the device calls ``on_frame(frame)`` for every period it records;
* playback: the device calls ``source()`` whenever it has room for a period; the
  source returns a frame, or ``None`` for "nothing to play" (the device then
  plays silence, which keeps the card running and avoids an underrun).

Backends (``hal.alsa``, ``hal.sim_audio``) join the single select loop through
file descriptors or loop timers; no backend runs a thread.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Protocol

from sipstack.records import dataclass

__all__ = [
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
]

SAMPLE_WIDTH = 2
"""Bytes per sample: signed 16-bit little-endian (ALSA ``S16_LE``)."""

SUPPORTED_RATES = (8000, 16000)
"""Narrowband (G.711) and wideband (G.722 / L16) telephony rates."""


class AudioError(Exception):
    """Base class of audio errors."""


class AudioConfigError(AudioError, ValueError):
    """The configuration asks for something impossible: the integrator's fault."""


class AudioDeviceError(AudioError):
    """The sound device refused or failed: hardware or system configuration."""


class AudioMixerError(AudioDeviceError):
    """No usable mixer control (volume cannot be set); audio itself still works."""


@dataclass(frozen=True, slots=True)
class AudioConfig:
    """How to open the sound device.

    ``capture_device`` / ``playback_device`` are ALSA PCM names (``default``,
    ``plughw:CARD=Device``...); a ``plug`` device converts the sample rate if the
    card cannot do 8 or 16 kHz itself. ``buffer_periods`` is the ALSA ring size in
    periods: 4 x 20 ms gives 60 ms of slack against a late loop iteration, at the
    cost of latency. ``prefill_periods`` of silence are written when playback
    starts or recovers from an underrun, so the first real frame does not
    underrun at once. ``reopen_interval`` is the delay between attempts to reopen
    a device that vanished (USB sound card unplugged).
    """

    sample_rate: int = 8000
    ptime_ms: int = 20
    buffer_periods: int = 4
    prefill_periods: int = 2
    capture_device: str = "default"
    playback_device: str = "default"
    mixer_device: str | None = None
    mixer_control: str | None = None
    reopen_interval: float = 2.0

    def __post_init__(self) -> None:
        if self.sample_rate not in SUPPORTED_RATES:
            raise AudioConfigError(
                f"audio sample_rate {self.sample_rate} is not supported; use one of "
                f"{', '.join(map(str, SUPPORTED_RATES))}"
            )
        if self.ptime_ms not in (10, 20, 30, 40, 60):
            raise AudioConfigError(
                f"audio ptime_ms {self.ptime_ms} is not a usual RTP ptime (10/20/30/40/60)"
            )
        if not 2 <= self.buffer_periods <= 16:
            raise AudioConfigError(
                f"audio buffer_periods {self.buffer_periods} must be between 2 and 16"
            )
        if not 0 <= self.prefill_periods < self.buffer_periods:
            raise AudioConfigError(
                f"audio prefill_periods {self.prefill_periods} must be >= 0 and less "
                f"than buffer_periods ({self.buffer_periods})"
            )
        if self.reopen_interval <= 0:
            raise AudioConfigError(
                f"audio reopen_interval must be positive, not {self.reopen_interval}"
            )

    @property
    def period_frames(self) -> int:
        """Samples per period (ALSA "frames", mono): 160 at 8 kHz / 20 ms."""
        return self.sample_rate * self.ptime_ms // 1000

    @property
    def period_bytes(self) -> int:
        """Bytes per period."""
        return self.period_frames * SAMPLE_WIDTH

    @property
    def period_seconds(self) -> float:
        """Duration of one period."""
        return self.ptime_ms / 1000.0

    @property
    def mixer_device_name(self) -> str:
        """The ALSA device whose mixer controls the loudspeaker volume."""
        return self.mixer_device if self.mixer_device is not None else self.playback_device


class StreamDirection(enum.Enum):
    """Which half of the device."""

    CAPTURE = "capture"
    PLAYBACK = "playback"


class StreamState(enum.Enum):
    """Life of one stream.

    STOPPED -> RUNNING (start) -> STOPPED (stop);
    RUNNING -> LOST (device vanished or failed) -> RUNNING (reopened on a timer);
    LOST -> STOPPED (stop).
    """

    STOPPED = "stopped"
    RUNNING = "running"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class AudioXrun:
    """An underrun (playback) or overrun (capture) happened and was recovered."""

    direction: StreamDirection
    device: str
    count: int  # xruns on this stream since it was started


@dataclass(frozen=True, slots=True)
class AudioDeviceLost:
    """The device failed or vanished; the backend retries opening it."""

    direction: StreamDirection
    device: str
    reason: str


@dataclass(frozen=True, slots=True)
class AudioDeviceRestored:
    """A lost device was reopened and the stream runs again."""

    direction: StreamDirection
    device: str


AudioEvent = AudioXrun | AudioDeviceLost | AudioDeviceRestored

FrameSink = Callable[[bytes], object]
"""Receives each captured frame (``period_bytes`` long)."""

FrameSource = Callable[[], bytes | None]
"""Returns the next frame to play (``period_bytes`` long), or None for silence."""

EventSink = Callable[[AudioEvent], object]
"""Receives xrun / lost / restored notifications."""


class CaptureStream(Protocol):
    """The microphone side of a device."""

    @property
    def state(self) -> StreamState: ...

    def start(self, on_frame: FrameSink) -> None:
        """Open (if needed) and start delivering frames to ``on_frame``."""
        ...

    def stop(self) -> None:
        """Stop and release the device; no more ``on_frame`` calls afterwards."""
        ...


class PlaybackStream(Protocol):
    """The loudspeaker side of a device."""

    @property
    def state(self) -> StreamState: ...

    def start(self, source: FrameSource) -> None:
        """Open (if needed) and start pulling frames from ``source``."""
        ...

    def stop(self) -> None:
        """Stop at once (queued audio is dropped) and release the device."""
        ...


class AudioDevice(Protocol):
    """A full-duplex telephony audio device."""

    @property
    def config(self) -> AudioConfig: ...

    @property
    def capture(self) -> CaptureStream: ...

    @property
    def playback(self) -> PlaybackStream: ...

    def set_volume(self, percent: int) -> None:
        """Loudspeaker volume 0-100; raises :class:`AudioMixerError` without a mixer."""
        ...

    def get_volume(self) -> int:
        """Loudspeaker volume 0-100; raises :class:`AudioMixerError` without a mixer."""
        ...

    def close(self) -> None:
        """Stop both streams and release everything."""
        ...


def silence(config: AudioConfig) -> bytes:
    """One period of digital silence."""
    return bytes(config.period_bytes)
