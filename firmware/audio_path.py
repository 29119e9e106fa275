"""The audio path: conference bridge, media clock, tones and the device port.

Calls' RTP streams join the :class:`~sipstack.media_graph.Conference` built
here; its device port is the sound card (ALSA plus the voice processor on
``--hal rpi``) or, simulated, a tone/WAV source and a WAV recorder
(:class:`SimDevice`). Heavy modules are imported only when the chosen backend
needs them, so start-up stays quick, and the calls' RTP media factory waits
for the first call (:class:`DeferredMedia`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firmware.app import App
    from firmware.behaviour import ToneKind
    from sipstack.media_factory import RtpMediaFactory
    from sipstack.media_graph import Conference, MediaClock
    from sipstack.offer_answer import LocalMedia, NegotiatedMedia
    from sipstack.tones import ToneGenerator, ToneSpec
    from sipstack.wav_io import WavRecorder

__all__ = ["AudioPath", "DeferredMedia", "SimDevice", "dbfs", "tone_specs"]

log = logging.getLogger("intercom")

# -- tones ---------------------------------------------------------------------------


def tone_specs(region: str = "EU") -> dict[ToneKind, ToneSpec]:
    """The tone of each :class:`~firmware.behaviour.ToneKind`: the region's plan plus beeps."""
    from firmware.behaviour import ToneKind
    from sipstack.tones import TONE_PLANS, ToneSegment, ToneSpec

    plan = TONE_PLANS[region]

    def times(spec: ToneSpec, n: int) -> ToneSpec:
        return ToneSpec(spec.name, spec.segments * n, repeat=False)

    beep = (ToneSegment((1400,), 120, -12.0), ToneSegment((), 80))
    return {
        ToneKind.RING: plan.ring,
        ToneKind.RINGBACK: plan.ringback,
        ToneKind.CALL_WAITING: plan.call_waiting,
        ToneKind.BUSY: times(plan.busy, 3),
        ToneKind.DOOR_OPENED: ToneSpec("door opened", beep * 3, repeat=False),
        ToneKind.WRONG_CODE: ToneSpec("wrong code", (ToneSegment((400,), 500, -12.0),), False),
    }


_INTO_CALL = frozenset({"door opened", "wrong code"})  # ToneKind values: for the caller


class _NullSink:
    """A loudspeaker nobody hears."""

    def write(self, frame: bytes, now: float) -> None:
        """Discard the frame."""


class SimDevice:
    """The simulated device port: a tone or WAV clip as microphone, a recorder as speaker.

    ``[audio] capture_device`` is ``"tone:HZ"``, ``"silence"``, a WAV path or
    ``"default"`` (a 1 kHz tone); ``playback_device`` a WAV path to record to,
    or ``"default"`` (heard by nobody, levels still measured).
    """

    def __init__(self, capture: str, playback: str, rate: int, frame: int) -> None:
        from sipstack.tones import ToneGenerator, ToneSegment, ToneSpec

        self.description = f"simulated (mic: {capture}, speaker: {playback})"
        self.source: Any = None
        if capture.startswith("tone:") or capture == "default":
            hz = 1000 if capture == "default" else int(capture[5:])
            gen = ToneGenerator(rate, frame)
            gen.play(ToneSpec(f"{hz} Hz", (ToneSegment((hz,), 1000),)))
            self.source = gen
        elif capture != "silence":
            from sipstack.wav_io import WavPlayer, load_wav

            self.source = WavPlayer(load_wav(capture, rate), frame, loop=True)
        self.recorder: WavRecorder | None = None
        self.sink: Any = _NullSink()  # still a sink, so the bridge measures speaker levels
        if playback != "default":
            from sipstack.wav_io import WavRecorder

            self.recorder = self.sink = WavRecorder(playback, rate)

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder.wait_closed(2.0)


class AudioPath:
    """Conference bridge, media clock, tone port and the device port.

    The clock runs only while something needs audio (a call, a tone, an audio
    test), so an idle door station spends no CPU on it.
    """

    def __init__(self, app: App) -> None:
        from sipstack.media_graph import Conference, MediaClock
        from sipstack.tones import ToneGenerator

        self.app = app
        cfg = app.config.audio
        self.rate = cfg.sample_rate
        frame = cfg.sample_rate * cfg.ptime // 1000
        self.conference: Conference = Conference(self.rate, frame)
        self.clock: MediaClock = MediaClock(cfg.ptime / 1000, self._tick)
        self.tones: ToneGenerator = ToneGenerator(self.rate, frame)
        self.specs = tone_specs()
        self.tone_slot = self.conference.add_port("tones", self.tones, None)
        self.hold = 0  # audio tests running
        self.sim: SimDevice | None = None
        self.alsa: Any = None
        self.voice: Any = None
        self._port: Any = None
        self.fault = ""
        if app.hal == "rpi":
            self._open_alsa()
        else:
            self.sim = SimDevice(cfg.capture_device, cfg.playback_device, self.rate, frame)
            self.device = self.sim.description
            self.audio_slot = self.conference.add_port("device", self.sim.source, self.sim.sink)
        self.conference.connect(self.tone_slot, self.audio_slot)

    def _open_alsa(self) -> None:
        from firmware.behaviour import FaultChanged
        from hal.alsa import AlsaAudioDevice
        from hal.audio import AudioDeviceLost, AudioDeviceRestored, StreamDirection
        from sipstack.media_graph import DevicePort

        cfg = self.app.config.audio
        audio_config = cfg.to_audio_config()

        def on_event(event: object) -> None:
            if isinstance(event, AudioDeviceLost):
                self.fault = f"{event.device} lost: {event.reason}"
                self.app.post(FaultChanged("audio", True))
                if event.direction is StreamDirection.CAPTURE:
                    # keep calls sending RTP (silence) until the card is back
                    self.clock.cover_capture_gap(self.app.loop)
            elif isinstance(event, AudioDeviceRestored):
                self.fault = ""
                self.app.post(FaultChanged("audio", False))

        self.alsa = AlsaAudioDevice(self.app.loop, audio_config, on_event=on_event)
        if cfg.volume is not None:
            try:
                self.alsa.set_volume(cfg.volume)
            except Exception as exc:
                log.warning("cannot set the loudspeaker volume: %s", exc)
        try:
            from hal.voice import VoiceProcessor

            self.voice = VoiceProcessor(audio_config, cfg.to_voice_config())
        except Exception as exc:  # libspeexdsp missing: run without, say so once
            log.warning("no echo cancellation / noise suppression: %s", exc)
        self._port = DevicePort()
        self.device = f"ALSA capture {cfg.capture_device!r}, playback {cfg.playback_device!r}"
        self.audio_slot = self.conference.add_port("device", self._port, self._port)

    # -- the clock -------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        self.conference.tick(now)
        if self.clock.ticks % 25 == 0:
            self.app.loop.call_soon(self.update)

    def needed(self) -> bool:
        calls = self.app.calls
        return bool(self.tones.active or self.hold or (calls and calls.call_get_count()))

    def update(self) -> None:
        """Start or stop the clock as audio is needed or not."""
        from sipstack.media_graph import ClockMode

        running = self.clock.mode is not ClockMode.STOPPED
        if self.needed() and not running:
            if self.alsa is not None:
                capture, playback = self.alsa.capture, self.alsa.playback
                if self.voice is not None:
                    self.voice.reset()
                    capture, playback = (
                        _VoiceCapture(capture, self.voice),
                        _VoicePlayback(playback, self.voice),
                    )
                self.clock.start_device(capture, playback, self._port, self.app.loop.time)
            else:
                self.clock.start_timer(self.app.loop)
        elif running and not self.needed():
            self.clock.stop()

    # -- tones -----------------------------------------------------------------------

    def play(self, kind: ToneKind, call_slot: int | None) -> None:
        """Play a tone to the speaker, or into the call for the caller's feedback."""
        conf = self.conference
        for slot in list(conf.ports()):
            if slot != self.tone_slot and self.tone_slot in conf.connections(slot):
                conf.disconnect(self.tone_slot, slot)
        if kind.value in _INTO_CALL and call_slot is not None:
            conf.connect(self.tone_slot, call_slot)
        else:
            conf.connect(self.tone_slot, self.audio_slot)
        self.tones.play(self.specs[kind])
        self.update()

    def stop_tone(self) -> None:
        self.tones.stop()
        self.update()

    def close(self) -> None:
        self.clock.stop()
        if self.sim is not None:
            self.sim.close()
        if self.voice is not None:
            self.voice.close()
        if self.alsa is not None:
            self.alsa.close()


class DeferredMedia:
    """The call layer's media factory, built when the first call needs media.

    Building :class:`~sipstack.media_factory.RtpMediaFactory` imports the RTP
    stack and loads the codec libraries through ctypes (3.4 MiB resident and
    50 ms of CPU on a desktop core, several times that on a Pi); a door
    station may sit idle for days before its first call, so it pays that then.
    ``build`` makes the real factory, once, the first time a call asks for
    its local media (an incoming
    INVITE's answer or an outgoing call's offer: RFC 3264 5/6); until then no
    call has media, so there is nothing to close, no statistics and no
    RFC 4733 stream (the call layer sends DTMF by SIP INFO, as it would for a
    call without telephone-event).
    """

    def __init__(self, build: Callable[[], RtpMediaFactory]) -> None:
        self._build = build
        self.factory: RtpMediaFactory | None = None
        """The real factory, once a call has needed it."""

    def get(self) -> RtpMediaFactory:
        """The real factory, built now if no call has needed it yet."""
        if self.factory is None:
            self.factory = self._build()
        return self.factory

    def create_local_media(self, call_id: int) -> LocalMedia:
        """Our side of the call's offer or answer (builds the factory on the first call)."""
        return self.get().create_local_media(call_id)

    def on_negotiated(self, call_id: int, media: NegotiatedMedia) -> None:
        """Start or update the call's stream."""
        self.get().on_negotiated(call_id, media)

    def close(self, call_id: int) -> None:
        """End the call's stream, if media was ever built."""
        if self.factory is not None:
            self.factory.close(call_id)

    def send_dtmf(self, call_id: int, digits: str) -> bool:
        """RFC 4733 digits; False (SIP INFO instead) when the call has no stream."""
        return self.factory is not None and self.factory.send_dtmf(call_id, digits)

    def rtp_stats(self, call_id: int) -> object | None:
        """The call's RTP statistics, None when it has no stream."""
        return self.factory.rtp_stats(call_id) if self.factory is not None else None


class _VoiceCapture:
    """A capture stream whose frames pass through the echo canceller first."""

    def __init__(self, inner: Any, voice: Any) -> None:
        self._inner, self._voice = inner, voice

    def start(self, on_frame: Callable[[bytes], object]) -> None:
        self._inner.start(self._voice.wrap_sink(on_frame))

    def stop(self) -> None:
        self._inner.stop()


class _VoicePlayback:
    """A playback stream that shows every frame to the echo canceller."""

    def __init__(self, inner: Any, voice: Any) -> None:
        self._inner, self._voice = inner, voice

    def start(self, source: Callable[[], bytes | None]) -> None:
        self._inner.start(self._voice.wrap_source(source))

    def stop(self) -> None:
        self._inner.stop()


def dbfs(peak: int) -> float:
    """A 16-bit sample peak in dB full scale (-120 for silence), for the audio test."""
    import math

    return round(20 * math.log10(peak / 32768), 1) if peak > 0 else -120.0
