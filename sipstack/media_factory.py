"""The call layer's media: one :class:`MediaSession` per call, wired into the audio graph.

:class:`RtpMediaFactory` implements :class:`sipstack.calls.MediaFactory` (and the
optional ``send_dtmf`` / ``rtp_stats`` hooks): the call layer asks it for our
side of the SDP (:meth:`~RtpMediaFactory.create_local_media`: a socket pair is
bound from the port range and described with our codecs in preference order),
hands it every offer/answer outcome (:meth:`~RtpMediaFactory.on_negotiated`:
start, hold, unhold, a moved peer, SRTP keys) and tells it when the call ends
(:meth:`~RtpMediaFactory.close`).

Each running call is a port of a :class:`~sipstack.media_graph.Conference`,
connected both ways to the audio endpoint port (the sound card, or without one
a tone/WAV source and a WAV recorder: :func:`file_endpoint`). A call whose
codec runs at another rate than the bridge (G.711 at 8 kHz on a 16 kHz bridge)
is wrapped in resamplers. When the factory owns the media clock it ticks only
while a call is up, so an idle intercom spends no CPU on audio.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sipstack.codecs import CodecRegistry, default_registry
from sipstack.loop import Loop
from sipstack.media_graph import (
    ClockMode,
    Conference,
    FrameSink,
    FrameSource,
    MediaClock,
    ResampledSink,
    ResampledSource,
)
from sipstack.media_session import (
    DtmfNotNegotiatedError,
    DtmfReceived,
    MediaEvent,
    MediaSession,
    MediaStats,
    RtpPortAllocator,
)
from sipstack.offer_answer import CodecSpec, LocalMedia, NegotiatedMedia

__all__ = ["AudioEndpoint", "CallMediaEvent", "RtpMediaFactory", "file_endpoint"]

#: Default codec preference: G.711 first (cheapest, universal), then wideband.
DEFAULT_CODECS = ("PCMU", "PCMA", "G722")


@dataclass(frozen=True, slots=True)
class AudioEndpoint:
    """What calls hear and what they say, as one conference port.

    ``source`` is the microphone side (sent into calls), ``sink`` the speaker
    side (what calls bring). Either may be None.
    """

    source: FrameSource | None
    sink: FrameSink | None


@dataclass(frozen=True, slots=True)
class CallMediaEvent:
    """A media event of call ``call_id`` (DTMF, latching, RTCP BYE...)."""

    call_id: int
    event: MediaEvent


def file_endpoint(
    sample_rate: int,
    frame_samples: int,
    *,
    tone_hz: int | None = 1000,
    play: str | Path | None = None,
    record: str | Path | None = None,
) -> AudioEndpoint:
    """An endpoint without a sound card: a tone (or a WAV clip, looped) and a WAV recorder.

    For tests and benchmarks, and for a headless unit that should still prove
    audio flows. ``tone_hz=None`` and no ``play`` sends silence.
    """
    from sipstack.tones import ToneGenerator, ToneSegment, ToneSpec
    from sipstack.wav_io import WavPlayer, WavRecorder, load_wav

    source: FrameSource | None = None
    if play is not None:
        source = WavPlayer(load_wav(play, sample_rate), frame_samples, loop=True)
    elif tone_hz is not None:
        tone = ToneGenerator(sample_rate, frame_samples)
        tone.play(ToneSpec(f"{tone_hz} Hz", (ToneSegment((tone_hz,), 1000),)))
        source = tone
    sink = WavRecorder(record, sample_rate) if record is not None else None
    return AudioEndpoint(source, sink)


class _Call:
    __slots__ = ("session", "slot", "rate", "crypto", "keys")

    def __init__(self, session: MediaSession, crypto: tuple[str, ...] | None) -> None:
        self.session = session
        self.slot: int | None = None
        self.rate: int | None = None
        self.crypto = crypto  # our a=crypto lines, kept for re-offers (RFC 4568 6.1)
        self.keys: tuple[str, str] | None = None


class RtpMediaFactory:
    """Media for :class:`~sipstack.calls.CallManager` (its ``MediaFactory`` protocol).

    ``host`` is the address sockets are bound to; ``address_of(call_id)`` the
    address written in the SDP (default ``host``; pass CallManager's contact
    host when binding to ``0.0.0.0``). ``codecs`` is the preference order, of
    which the registry's available codecs are offered. ``conference`` and
    ``audio_slot`` plug calls into an existing graph (the device port); without
    them the factory builds a bridge at ``sample_rate`` with ``endpoint`` as its
    audio port and paces it with its own loop-timer :class:`MediaClock` while
    calls are up. ``latch_after`` and ``rtcp_interval`` go to every
    :class:`MediaSession`. ``srtp=True`` offers SDES keys (RFC 4568); keys a peer
    answers with switch SRTP on. Set :attr:`on_dtmf` to
    ``CallManager.on_media_dtmf`` so received digits reach the call layer.
    """

    def __init__(
        self,
        loop: Loop,
        *,
        host: str = "127.0.0.1",
        address_of: Callable[[int], str] | None = None,
        ports: RtpPortAllocator | None = None,
        registry: CodecRegistry | None = None,
        codecs: Sequence[str] = DEFAULT_CODECS,
        telephone_event: bool = True,
        ptime: int = 20,
        conference: Conference | None = None,
        audio_slot: int | None = None,
        sample_rate: int = 16000,
        endpoint: AudioEndpoint | None = None,
        srtp: bool = False,
        rng: random.Random | None = None,
        on_event: Callable[[CallMediaEvent], None] | None = None,
        latch_after: int = 4,
        rtcp_interval: float = 5.0,
    ) -> None:
        self._loop = loop
        self.host = host
        self._address_of = address_of
        self._ports = ports if ports is not None else RtpPortAllocator()
        self.registry = registry if registry is not None else default_registry()
        specs = []
        for name in codecs:
            info = self.registry.find(name)
            if info is not None:
                specs.append(CodecSpec(info.name, info.clock_rate))
        if not specs:
            raise ValueError(f"none of the codecs {list(codecs)} is available")
        self.codecs: tuple[CodecSpec, ...] = tuple(specs)
        self.telephone_event = telephone_event
        self.ptime = ptime
        self._srtp = srtp
        self._rng = rng if rng is not None else random.Random()
        self.on_event = on_event
        self.on_dtmf: Callable[[int, str, int], None] | None = None
        self._latch_after = latch_after
        self._rtcp_interval = rtcp_interval
        self._calls: dict[int, _Call] = {}
        self._clock: MediaClock | None = None
        if conference is None:
            conference = Conference(sample_rate, sample_rate * ptime // 1000)
            self._clock = MediaClock(ptime / 1000, conference.tick)
            if audio_slot is None:
                ep = endpoint if endpoint is not None else AudioEndpoint(None, None)
                audio_slot = conference.add_port("audio", ep.source, ep.sink)
        self.conference = conference
        self.audio_slot = audio_slot

    # -- calls.MediaFactory ----------------------------------------------------------------

    def create_local_media(self, call_id: int) -> LocalMedia:
        """Bind a socket pair for the call (once) and describe it for the SDP."""
        call = self._calls.get(call_id)
        if call is None:
            session = MediaSession(
                self._loop,
                self.registry,
                host=self.host,
                ports=self._ports,
                ptime=self.ptime,
                on_event=lambda event: self._on_session_event(call_id, event),
                rng=random.Random(self._rng.getrandbits(64)),
                latch_after=self._latch_after,
                rtcp_interval=self._rtcp_interval,
            )
            call = _Call(session, self._new_crypto() if self._srtp else None)
            self._calls[call_id] = call
        address = self._address_of(call_id) if self._address_of is not None else self.host
        return LocalMedia(
            address,
            call.session.local_port,
            self.codecs,
            telephone_event=self.telephone_event,
            ptime=self.ptime,
            rtcp_port=call.session.local_rtcp_port,
            crypto=call.crypto,
        )

    def on_negotiated(self, call_id: int, media: NegotiatedMedia) -> None:
        """Start or update the call's stream and plug it into the bridge."""
        call = self._calls.get(call_id)
        if call is None:
            raise ValueError(f"on_negotiated for call {call_id} without create_local_media")
        context = None
        if media.local_crypto is not None and media.remote_crypto is not None:
            keys = (media.local_crypto, media.remote_crypto)
            if keys != call.keys:  # RFC 4568 7.1.4: new keys, new crypto context
                from sipstack.srtp import SrtpContext

                context = SrtpContext(*keys)
                call.keys = keys
        call.session.apply(media, context)
        self._plug(call_id, call)

    def close(self, call_id: int) -> None:
        """End the call's stream (RTCP BYE), unplug it, and stop the clock when idle."""
        call = self._calls.pop(call_id, None)
        if call is None:
            return
        if call.slot is not None:
            self.conference.remove_port(call.slot)
        call.session.close()
        if not any(c.slot is not None for c in self._calls.values()) and self._clock is not None:
            self._clock.stop()

    # -- optional hooks of the call layer --------------------------------------------------

    def send_dtmf(self, call_id: int, digits: str) -> bool:
        """RFC 4733 digits; False when the call has no telephone-event (use SIP INFO)."""
        call = self._calls.get(call_id)
        if call is None:
            return False
        try:
            call.session.send_dtmf(digits)
        except DtmfNotNegotiatedError:
            return False
        return True

    def rtp_stats(self, call_id: int) -> MediaStats | None:
        """RTP/RTCP and jitter-buffer statistics for ``call_get_info``."""
        call = self._calls.get(call_id)
        return call.session.stats() if call is not None else None

    def session(self, call_id: int) -> MediaSession | None:
        """The call's media session (None when it has none)."""
        call = self._calls.get(call_id)
        return call.session if call is not None else None

    def slot(self, call_id: int) -> int | None:
        """The call's conference port, for the application's own routing."""
        call = self._calls.get(call_id)
        return call.slot if call is not None else None

    def close_all(self) -> None:
        """Close every call's media (shutdown)."""
        for call_id in list(self._calls):
            self.close(call_id)

    # -- internals --------------------------------------------------------------------------

    def _new_crypto(self) -> tuple[str, ...]:
        from sipstack.srtp import generate_crypto

        return (str(generate_crypto()),)

    def _plug(self, call_id: int, call: _Call) -> None:
        session = call.session
        rate = session.sample_rate
        if rate == call.rate and call.slot is not None:
            return
        conf = self.conference
        if call.slot is not None:
            conf.remove_port(call.slot)  # the codec changed rate (re-INVITE)
        assert rate is not None
        source: FrameSource = session
        sink: FrameSink = session
        if rate != conf.sample_rate:
            source = ResampledSource(session, rate, conf.sample_rate)
            sink = ResampledSink(session, conf.sample_rate, rate)
        call.slot = conf.add_port(f"call {call_id}", source, sink)
        call.rate = rate
        if self.audio_slot is not None:
            conf.connect(call.slot, self.audio_slot)
            conf.connect(self.audio_slot, call.slot)
        clock = self._clock
        if clock is not None and clock.mode is ClockMode.STOPPED:
            clock.start_timer(self._loop)

    def _on_session_event(self, call_id: int, event: MediaEvent) -> None:
        if isinstance(event, DtmfReceived) and self.on_dtmf is not None:
            self.on_dtmf(call_id, event.digit, event.duration_ms)
        if self.on_event is not None:
            self.on_event(CallMediaEvent(call_id, event))
