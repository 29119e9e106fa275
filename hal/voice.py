"""Voice processing on the device path: echo cancellation, noise suppression, AGC.

An intercom's loudspeaker sits a few centimetres from its microphone, so
without cancellation the caller hears themselves back. The chain is:

    far end (decoded RTP) --playback()--> loudspeaker
                                  \\ reference
    microphone --capture()--> [echo canceller] --> [preprocessor: residual echo
    suppression, noise suppression, AGC] --> encoder / RTP

Both stages are SpeexDSP (:mod:`hal.speexdsp`). The frame size is the audio
period (ptime), so one call per period on each side, all on the loop thread.

Two ways to feed the canceller:

* :meth:`VoiceProcessor.playback` / :meth:`VoiceProcessor.capture` for a live
  device: SpeexDSP keeps a small internal playback queue and pairs each
  captured frame with the frame played about a buffer earlier. The delay the
  sound card adds between the two must fit in ``filter_ms``.
  :meth:`wrap_source` / :meth:`wrap_sink` plug this into a
  :class:`hal.audio.AudioDevice` without the caller pairing anything.
* :meth:`VoiceProcessor.process` when the caller already knows which far-end
  frame belongs with which microphone frame (simulations, benchmarks).
"""

from __future__ import annotations

from sipstack.records import dataclass

from .audio import SUPPORTED_RATES, AudioConfig, AudioConfigError, FrameSink, FrameSource
from .speexdsp import EchoCanceller, Preprocessor, load_library

__all__ = ["VoiceConfig", "VoiceProcessor"]


@dataclass(frozen=True, slots=True)
class VoiceConfig:
    """What the voice chain does.

    ``filter_ms``: echo tail the canceller models (acoustic path + sound card
    buffering), 100-200 ms for a door station. ``noise_suppress_db`` and
    ``echo_suppress_db`` are maximum attenuations (negative dB);
    ``echo_suppress_active_db`` applies while the near end talks (double-talk),
    milder so the visitor's voice survives. ``agc_level`` is the RMS target on
    the int16 scale.
    """

    echo_cancel: bool = True
    filter_ms: int = 160
    noise_suppression: bool = True
    noise_suppress_db: int = -15
    residual_echo_suppression: bool = True
    echo_suppress_db: int = -40
    echo_suppress_active_db: int = -15
    agc: bool = True
    agc_level: float = 8000.0
    agc_max_gain_db: int = 20

    def __post_init__(self) -> None:
        if not 20 <= self.filter_ms <= 500:
            raise AudioConfigError(f"voice filter_ms {self.filter_ms} must be 20..500 ms")
        for name in ("noise_suppress_db", "echo_suppress_db", "echo_suppress_active_db"):
            if getattr(self, name) > 0:
                raise AudioConfigError(f"voice {name} is an attenuation: use a value <= 0 dB")
        if not 0 < self.agc_level <= 32767:
            raise AudioConfigError(f"voice agc_level {self.agc_level} must be 1..32767")


class VoiceProcessor:
    """SpeexDSP echo canceller + preprocessor for one call's audio.

    Build one per call (or :meth:`reset` between calls): the canceller learns
    the room, and a new call after a volume change should relearn.
    """

    def __init__(self, audio: AudioConfig, voice: VoiceConfig | None = None) -> None:
        if audio.sample_rate not in SUPPORTED_RATES:  # pragma: no cover - AudioConfig checks
            raise AudioConfigError(f"unsupported sample rate {audio.sample_rate}")
        self.audio = audio
        self.voice = voice if voice is not None else VoiceConfig()
        lib = load_library()
        n = audio.period_frames
        self.frame_bytes = audio.period_bytes
        self._echo: EchoCanceller | None = None
        if self.voice.echo_cancel:
            tail = audio.sample_rate * self.voice.filter_ms // 1000
            self._echo = EchoCanceller(n, max(tail, n), audio.sample_rate, lib=lib)
        self._pre: Preprocessor | None = None
        v = self.voice
        if v.noise_suppression or v.agc or (self._echo is not None and v.residual_echo_suppression):
            pre = Preprocessor(n, audio.sample_rate, lib=lib)
            pre.set_denoise(v.noise_suppression, v.noise_suppress_db)
            pre.set_agc(v.agc, v.agc_level, v.agc_max_gain_db)
            if self._echo is not None and v.residual_echo_suppression:
                pre.attach_echo_state(self._echo, v.echo_suppress_db, v.echo_suppress_active_db)
            self._pre = pre
        self.voice_active = False
        """Whether the preprocessor heard speech in the last captured frame."""

    # -- live device path -----------------------------------------------------

    def playback(self, frame: bytes) -> None:
        """Tell the canceller which frame the loudspeaker is about to play."""
        if self._echo is not None:
            self._echo.playback(frame)

    def capture(self, frame: bytes) -> bytes:
        """Clean one microphone frame (pairs it with the queued playback frames)."""
        out = self._echo.capture(frame) if self._echo is not None else frame
        return self._post(out)

    # -- aligned path ---------------------------------------------------------

    def process(self, mic: bytes, far: bytes) -> bytes:
        """Clean ``mic`` given the far-end frame ``far`` played at the same time."""
        out = self._echo.cancel(mic, far) if self._echo is not None else mic
        return self._post(out)

    def cancel_only(self, mic: bytes, far: bytes) -> bytes:
        """Linear echo cancellation alone (no preprocessor): for measurements."""
        return self._echo.cancel(mic, far) if self._echo is not None else mic

    def _post(self, frame: bytes) -> bytes:
        if self._pre is None:
            return frame
        out, self.voice_active = self._pre.run(frame)
        return out

    # -- wiring helpers -------------------------------------------------------

    def wrap_source(self, source: FrameSource) -> FrameSource:
        """A playback source that also feeds each frame to the canceller."""
        silence = bytes(self.frame_bytes)

        def pull() -> bytes | None:
            frame = source()
            # Silence is played too, and the canceller must see every period to
            # stay aligned with the capture side.
            self.playback(frame if frame is not None else silence)
            return frame

        return pull

    def wrap_sink(self, sink: FrameSink) -> FrameSink:
        """A capture sink that hands cleaned frames to ``sink``."""

        def push(frame: bytes) -> None:
            sink(self.capture(frame))

        return push

    def reset(self) -> None:
        """Forget the learnt echo path (new call, volume change)."""
        if self._echo is not None:
            self._echo.reset()

    def close(self) -> None:
        """Free the SpeexDSP states (preprocessor first: it points at the canceller)."""
        if self._pre is not None:
            self._pre.close()
            self._pre = None
        if self._echo is not None:
            self._echo.close()
            self._echo = None
