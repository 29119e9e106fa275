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

SRTP follows the account's :class:`~sipstack.srtp.SrtpPolicy` as PJSUA's
``use_srtp`` and ``srtp_secure_signaling``: a call whose signalling is not
secure enough for SDES keys sends none: an outgoing call is not made
(:class:`~sipstack.srtp.SrtpNegotiationError`), an incoming one is answered 488.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Sequence

from sipstack.call_events import CallInfo
from sipstack.codecs import CodecRegistry, default_registry
from sipstack.invite_session import Role
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
from sipstack.records import dataclass
from sipstack.srtp import (
    SecureSignaling,
    SrtpContext,
    SrtpMode,
    SrtpNegotiationError,
    SrtpPolicy,
    srtp_offer,
)

__all__ = [
    "AudioEndpoint",
    "CallMediaEvent",
    "CallSignalling",
    "RtpMediaFactory",
    "call_signalling",
    "file_endpoint",
]

log = logging.getLogger(__name__)

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


@dataclass(frozen=True, slots=True)
class CallSignalling:
    """How one call's SIP travels, for PJSUA's ``srtp_secure_signaling`` check.

    ``tls``: the hop to the next SIP element is TLS; ``sips``: the call is
    ``sips:`` (TLS on every hop, RFC 3261 26.2.2); ``incoming``: we answer it.
    """

    tls: bool
    sips: bool
    incoming: bool


def call_signalling(info: CallInfo) -> CallSignalling:
    """A call's :class:`CallSignalling`, read from ``CallManager.call_get_info``.

    PJSUA's ``get_secure_level``: ``sips:`` on the peer's URI or our Contact
    is level 2; a Contact on a TLS transport (``;transport=tls``, which is how
    our Contact names the transport the call uses) is level 1.
    """
    contact = info.local_contact.lower()
    sips = info.remote_uri.lower().startswith("sips:") or "<sips:" in contact
    tls = sips or ";transport=tls" in contact
    return CallSignalling(tls=tls, sips=sips, incoming=info.role is Role.UAS)


def file_endpoint(
    sample_rate: int,
    frame_samples: int,
    *,
    tone_hz: int | None = 1000,
    play: str | os.PathLike[str] | None = None,
    record: str | os.PathLike[str] | None = None,
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
    __slots__ = ("session", "slot", "rate", "crypto", "mode", "keys")

    def __init__(self, session: MediaSession, crypto: tuple[str, ...], mode: SrtpMode) -> None:
        self.session = session
        self.slot: int | None = None
        self.rate: int | None = None
        self.crypto = crypto  # our a=crypto lines, kept for re-offers (RFC 4568 6.1)
        self.mode = mode
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
    :class:`MediaSession`. ``srtp`` is the account's :class:`SrtpPolicy` (SDES
    keys, RFC 4568); ``True`` is OPTIONAL on any signalling (tests only: keys in
    clear). ``srtp_of(call_id)``, when given, is asked instead for each new call
    (PJSUA's ``use_srtp`` is per account: the call's account's policy); a call
    keeps its mode and keys from then on. ``signalling_of(call_id)`` says how a
    call's SIP travels, for the policy's ``secure_signaling``; wire it (and
    :attr:`on_dtmf`) once the :class:`~sipstack.calls.CallManager` exists::

        factory.signalling_of = lambda c: call_signalling(calls.call_get_info(c))
        factory.on_dtmf = calls.on_media_dtmf
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
        srtp: SrtpPolicy | bool = False,
        srtp_of: Callable[[int], SrtpPolicy] | None = None,
        signalling_of: Callable[[int], CallSignalling] | None = None,
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
        if srtp is True:
            srtp = SrtpPolicy(SrtpMode.OPTIONAL, SecureSignaling.NONE)
        self.srtp: SrtpPolicy = srtp if isinstance(srtp, SrtpPolicy) else SrtpPolicy()
        self.srtp_of = srtp_of
        self.signalling_of = signalling_of
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
        """Bind a socket pair for the call (once) and describe it for the SDP.

        Raises :class:`SrtpNegotiationError` for an outgoing call whose
        signalling may not carry the SDES keys the policy needs (nothing is
        bound then); an incoming one gets a description that accepts no
        stream, which the call layer answers with 488 (as PJSUA does).
        """
        call = self._calls.get(call_id)
        if call is None:
            mode, crypto = self._keys_for(call_id)
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
            call = _Call(session, crypto, mode)
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
            srtp=call.mode,
        )

    def _keys_for(self, call_id: int) -> tuple[SrtpMode, tuple[str, ...]]:
        """The call's SRTP mode and our a=crypto lines (one per suite, RFC 4568 5.1)."""
        policy = self.srtp if self.srtp_of is None else self.srtp_of(call_id)
        if policy.mode is SrtpMode.DISABLED:
            return SrtpMode.DISABLED, ()
        if policy.secure_signaling is SecureSignaling.NONE:
            tls = sips = incoming = False
        elif self.signalling_of is None:
            raise ValueError(
                f"RtpMediaFactory: SRTP with secure_signaling={policy.secure_signaling.name}"
                " needs signalling_of to tell how each call's SIP travels"
            )
        else:
            how = self.signalling_of(call_id)
            tls, sips, incoming = how.tls, how.sips, how.incoming
        try:
            mode = policy.mode_for_call(tls=tls, sips=sips)
        except SrtpNegotiationError as exc:
            if not incoming:
                raise
            # No keys in clear; MANDATORY without keys accepts no stream: 488.
            log.warning("call %d: refusing the offer: %s", call_id, exc.reason)
            return SrtpMode.MANDATORY, ()
        return mode, srtp_offer(mode, policy.suites).crypto_lines

    def on_negotiated(self, call_id: int, media: NegotiatedMedia) -> None:
        """Start or update the call's stream and plug it into the bridge."""
        call = self._calls.get(call_id)
        if call is None:
            raise ValueError(f"on_negotiated for call {call_id} without create_local_media")
        context = None
        if media.local_crypto is not None and media.remote_crypto is not None:
            keys = (media.local_crypto, media.remote_crypto)
            if keys != call.keys:  # RFC 4568 7.1.4: new keys, new crypto context
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
