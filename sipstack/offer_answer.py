"""SDP offer/answer (RFC 3264) for one audio stream, as pure functions.

The invite session keeps the state (which description was offered, the session
id and version); these functions only decide:

- :func:`create_offer` writes our offer (RFC 3264 section 5) or re-offer
  (section 8: same session id, version + 1, every earlier m= line kept in place);
  hold is an offer with ``direction="sendonly"`` (section 8.4).
- :func:`create_answer` answers a peer's offer (section 6): the first audio
  stream we can handle is accepted with the best codec in *our* preference order
  under the *offerer's* payload type number; every other stream is refused with
  port 0 in the same position.
- :func:`process_answer` reads the peer's answer to our offer (section 7).

Both sides come out as a :class:`NegotiatedMedia`: where to send RTP, with which
codec and payload types, and whether each direction may flow.

We answer with a single codec (plus telephone-event), as PJSIP does by default:
the RTP layer then never has to follow a peer that switches codec mid-stream.

SDES keys (RFC 4568) follow :class:`~sipstack.srtp.SrtpMode` as PJSUA's
``use_srtp``: MANDATORY offers RTP/SAVP and accepts only RTP/SAVP with a usable
key; OPTIONAL offers RTP/AVP with ``a=crypto`` ("best effort", what PJSUA and
baresip's ``mediaenc=srtp`` send) and answers a key wherever the offer has one
we can use, under either profile; DISABLED never sends a key.
"""

from __future__ import annotations

from collections.abc import Sequence

from sipstack.errors import SipStackError
from sipstack.records import dataclass, field
from sipstack.sdp import (
    STATIC_PAYLOAD_TYPES,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    Timing,
)
from sipstack.srtp import (
    CryptoAttribute,
    CryptoAttributeError,
    CryptoSuite,
    SrtpMode,
    parse_crypto,
)

__all__ = [
    "SUPPORTED_EVENTS",
    "CodecSpec",
    "LocalMedia",
    "NegotiatedMedia",
    "OfferAnswerError",
    "create_answer",
    "create_offer",
    "process_answer",
]

#: RFC 4733 section 3.2: events we send and receive: DTMF 0-9 * # A-D (0-15) and flash (16).
SUPPORTED_EVENTS = frozenset(range(17))
_TELEPHONE_EVENT = "telephone-event"
_PREFERRED_EVENT_PT = 101  # the number nearly every phone uses; any dynamic one is legal
_DYNAMIC_PTS = range(96, 128)  # RFC 3551 section 3
_PLAIN_RTP = "RTP/AVP"
_SECURE_RTP = "RTP/SAVP"  # RFC 3711 section 12; keys by a=crypto (RFC 4568)


class OfferAnswerError(SipStackError, ValueError):
    """The peer's answer breaks RFC 3264 section 6 (the peer's fault: end the call)."""


@dataclass(frozen=True, slots=True)
class CodecSpec:
    """One audio codec as SDP names it (RFC 4855 section 3: names are case-insensitive).

    ``payload_type`` None means "the RFC 3551 static number if the codec has one,
    else a dynamic one chosen when offering". In a :class:`NegotiatedMedia` it
    is the number agreed for the call, and ``fmtp`` is the peer's format
    parameters for it (what its decoder wants from our encoder).
    """

    name: str
    clock_rate: int
    channels: int = 1
    payload_type: int | None = None
    fmtp: str | None = None

    def matches(self, name: str, clock_rate: int, channels: int) -> bool:
        """Same encoding: name (any case), clock rate and channel count."""
        return (
            self.name.lower() == name.lower()
            and self.clock_rate == clock_rate
            and self.channels == channels
        )

    def static_payload_type(self) -> int | None:
        """The RFC 3551 static payload type of this encoding, if it has one."""
        for pt, (name, clock, channels) in STATIC_PAYLOAD_TYPES.items():
            if self.matches(name, clock, channels):
                return pt
        return None


@dataclass(frozen=True, slots=True)
class LocalMedia:
    """What we can do: our RTP address/port and codecs, best first.

    ``direction`` is what we want for the stream (``"sendonly"`` to hold,
    RFC 3264 8.4). ``crypto`` holds complete ``a=crypto`` values (RFC 4568
    section 9.1, ``"1 AES_CM_128_HMAC_SHA1_80 inline:..."``), at most one per
    suite: our keys. ``srtp`` says how they are used (see the module
    docstring); left None it is MANDATORY with ``crypto`` and DISABLED
    without. MANDATORY with no ``crypto`` is a stream that accepts nothing:
    a call whose signalling may not carry keys (PJSUA's
    ``srtp_secure_signaling``) is then answered 488, and cannot offer.
    """

    address: str
    port: int
    codecs: Sequence[CodecSpec]
    telephone_event: bool = True
    ptime: int = 20
    direction: Direction | str = Direction.SENDRECV
    rtcp_port: int | None = None
    crypto: Sequence[str] | None = None
    srtp: SrtpMode | None = None

    def __post_init__(self) -> None:
        # Misuse by the caller: raise at once rather than write a broken offer.
        if not self.address or any(c in self.address for c in " \r\n\x00"):
            raise ValueError(f"LocalMedia: bad address {self.address!r}")
        if not 0 < self.port <= 65535:
            raise ValueError(f"LocalMedia: port {self.port} out of range 1-65535")
        if self.rtcp_port is not None and not 0 < self.rtcp_port <= 65535:
            raise ValueError(f"LocalMedia: rtcp_port {self.rtcp_port} out of range")
        if not self.codecs:
            raise ValueError("LocalMedia: at least one codec is needed")
        if self.ptime <= 0:
            raise ValueError(f"LocalMedia: ptime {self.ptime} must be positive")
        try:
            Direction(self.direction)
        except ValueError:
            raise ValueError(f"LocalMedia: unknown direction {self.direction!r}") from None
        for codec in self.codecs:
            if codec.payload_type is not None and not 0 <= codec.payload_type <= 127:
                raise ValueError(f"LocalMedia: payload type of {codec.name} out of 0-127")
        object.__setattr__(self, "codecs", tuple(self.codecs))
        if self.crypto is not None:
            object.__setattr__(self, "crypto", tuple(self.crypto))
        mode = self.srtp
        if mode is None:
            mode = SrtpMode.MANDATORY if self.crypto else SrtpMode.DISABLED
            object.__setattr__(self, "srtp", mode)
        if mode is SrtpMode.DISABLED and self.crypto:
            raise ValueError("LocalMedia: a=crypto keys given but srtp is DISABLED")
        if mode is SrtpMode.OPTIONAL and not self.crypto:
            raise ValueError("LocalMedia: srtp OPTIONAL needs a=crypto keys to offer")

    @property
    def srtp_mode(self) -> SrtpMode:
        """``srtp`` as resolved at construction (never None)."""
        assert self.srtp is not None  # set by __post_init__
        return self.srtp

    @property
    def media_direction(self) -> Direction:
        """``direction`` as a :class:`Direction`."""
        return Direction(self.direction)

    @property
    def addrtype(self) -> str:
        """``IP6`` for an IPv6 literal, else ``IP4`` (RFC 8866 5.7)."""
        return "IP6" if ":" in self.address else "IP4"


@dataclass(frozen=True, slots=True)
class NegotiatedMedia:
    """The outcome for our audio stream, from our point of view.

    ``direction`` says what we may do: :attr:`can_send` and :attr:`can_receive`.
    ``on_hold_by_remote`` is True when the peer does not want our media (it
    offered or answered sendonly/inactive, or the RFC 2543 ``c=0.0.0.0``).
    ``telephone_event_pt`` is the RFC 4733 payload type, whose clock is the
    codec's. ``remote_rtcp_port`` is the peer's ``a=rtcp`` port or RTP + 1.
    """

    remote_address: str
    remote_port: int
    remote_rtcp_port: int | None
    codec: CodecSpec
    telephone_event_pt: int | None
    ptime: int
    direction: Direction
    on_hold_by_remote: bool
    stream_index: int = 0
    local_crypto: str | None = None
    remote_crypto: str | None = None
    events: frozenset[int] = field(default=frozenset())

    @property
    def can_send(self) -> bool:
        """We may send RTP to the peer."""
        return self.direction.sends

    @property
    def can_receive(self) -> bool:
        """The peer may send RTP to us."""
        return self.direction.receives


# -- offering -----------------------------------------------------------------------


def create_offer(
    local: LocalMedia,
    session_id: int,
    version: int,
    *,
    previous: SessionDescription | None = None,
) -> SessionDescription:
    """Our offer (RFC 3264 section 5), or a re-offer when ``previous`` is given.

    ``previous`` is the last description of this session (either side's): RFC
    3264 section 8 requires a new offer to keep every m= line in place, so its
    streams other than the audio one we use are written back disabled (port 0),
    and the audio stream takes the position of the first active audio line. A
    re-offer uses the same ``session_id`` and ``version`` + 1 (section 8).
    """
    media = _offer_media(local)
    description = _skeleton(local, session_id, version)
    if previous is None or not previous.media:
        description.media.append(media)
        return description
    ours = _first_audio_index(previous)
    for index, old in enumerate(previous.media):
        if index == ours:
            description.media.append(media)
        else:
            description.media.append(_disabled(old))
    if ours is None:
        # RFC 3264 8.1 adds a stream at the end when no old slot fits.
        description.media.append(media)
    return description


def _skeleton(local: LocalMedia, session_id: int, version: int) -> SessionDescription:
    return SessionDescription(
        origin=Origin("-", session_id, version, local.address, addrtype=local.addrtype),
        session_name="-",
        connection=Connection(local.address, local.addrtype),
        timings=[Timing(0, 0)],
    )


def _offer_media(local: LocalMedia) -> MediaDescription:
    mode = local.srtp_mode
    if mode is SrtpMode.MANDATORY and not local.crypto:
        raise ValueError(
            "LocalMedia: SRTP is required but there are no keys we may send"
            " (signalling not secure enough for SDES): nothing to offer"
        )
    # Explicit and static numbers first, so that dynamic ones never collide with them.
    used: set[int] = set()
    fixed: list[int | None] = []
    for codec in local.codecs:
        pt = codec.payload_type if codec.payload_type is not None else codec.static_payload_type()
        fixed.append(pt if pt is not None and pt not in used else None)
        if pt is not None:
            used.add(pt)
    chosen = [
        (pt if pt is not None else _free_dynamic(used), codec)
        for pt, codec in zip(fixed, local.codecs, strict=True)
    ]
    events: list[tuple[int, int]] = []
    if local.telephone_event:
        # RFC 4733 section 7.1.1: telephone-event uses the clock of the audio it
        # goes with, so offer one per clock rate among our codecs; the 8000 one
        # first, so that it gets the customary 101.
        clocks = dict.fromkeys(codec.clock_rate for _, codec in chosen)
        for clock in sorted(clocks, key=lambda c: c != 8000):
            events.append((_free_dynamic(used, _PREFERRED_EVENT_PT), clock))
    media = MediaDescription(
        media="audio",
        port=local.port,
        # RFC 4568 5.1 puts a=crypto under RTP/SAVP; OPTIONAL offers RTP/AVP so that
        # a peer without SRTP still takes the call (best effort, as PJSUA OPTIONAL).
        proto=_SECURE_RTP if mode is SrtpMode.MANDATORY else _PLAIN_RTP,
        formats=[str(pt) for pt, _ in chosen] + [str(pt) for pt, _ in events],
    )
    for pt, codec in chosen:
        _add_rtpmap(media, pt, codec.name, codec.clock_rate, codec.channels, codec.fmtp)
    for pt, clock in events:
        _add_rtpmap(media, pt, _TELEPHONE_EVENT, clock, 1, _format_events(SUPPORTED_EVENTS))
    _add_common_attributes(media, local, local.media_direction)
    for crypto in local.crypto or ():
        media.add_attribute("crypto", crypto)
    return media


def _free_dynamic(used: set[int], preferred: int | None = None) -> int:
    if preferred is not None and preferred not in used:
        used.add(preferred)
        return preferred
    for pt in _DYNAMIC_PTS:
        if pt not in used:
            used.add(pt)
            return pt
    raise ValueError("LocalMedia: more codecs than the 32 dynamic payload types")


def _add_rtpmap(
    media: MediaDescription, pt: int, name: str, clock: int, channels: int, fmtp: str | None
) -> None:
    # Written for static types too: RFC 8866 6.6 allows it, and some peers want it.
    suffix = f"/{channels}" if channels != 1 else ""
    media.add_attribute("rtpmap", f"{pt} {name}/{clock}{suffix}")
    if fmtp:
        media.add_attribute("fmtp", f"{pt} {fmtp}")


def _add_common_attributes(media: MediaDescription, local: LocalMedia, dirn: Direction) -> None:
    media.add_attribute("ptime", str(local.ptime))
    if local.rtcp_port is not None:
        media.add_attribute("rtcp", str(local.rtcp_port))  # RFC 3605 section 2.1
    # Always explicit: RFC 3264 5.1 lets sendrecv be implied, but saying it costs
    # nothing and spares a peer's session-level default from deciding for us.
    media.add_attribute(dirn.value)


def _disabled(old: MediaDescription) -> MediaDescription:
    """An m= line kept only to hold its place: port 0, same media, proto, formats."""
    return MediaDescription(old.media, 0, old.proto, list(old.formats) or ["0"])


def _first_audio_index(description: SessionDescription) -> int | None:
    for index, media in enumerate(description.media):
        if media.media.lower() == "audio" and media.port != 0:
            return index
    return None


# -- answering ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Choice:
    codec: CodecSpec  # ours, with the offerer's payload type
    event_pt: int | None
    events: frozenset[int]
    local_crypto: str | None
    remote_crypto: str | None


def create_answer(
    offer: SessionDescription, local: LocalMedia, session_id: int, version: int
) -> tuple[SessionDescription, NegotiatedMedia | None]:
    """Answer a peer's offer (RFC 3264 section 6).

    Returns the answer and the negotiated audio stream, or None when no stream
    could be accepted: the caller then normally rejects the INVITE with 488
    (RFC 3261 13.3.1.1) instead of sending this all-port-0 answer.
    """
    answer = _skeleton(local, session_id, version)
    negotiated: NegotiatedMedia | None = None
    for index, offered in enumerate(offer.media):
        choice = None if negotiated is not None else _choose(offer, offered, local)
        if choice is None:
            # RFC 3264 6: same position, same media and proto, port 0.
            answer.media.append(_disabled(offered))
            continue
        offer_dirn = _effective_direction(offer, offered)
        # RFC 3264 6.1: mirror the offer (its sendonly is our recvonly) and
        # narrow by what we want ourselves.
        our_dirn = offer_dirn.reversed() & local.media_direction
        answer.media.append(_answer_media(offered, local, choice, our_dirn))
        negotiated = _negotiated(
            offer, offered, index, choice, our_dirn, local.ptime, not offer_dirn.receives
        )
    return answer, negotiated


def _choose(
    offer: SessionDescription, offered: MediaDescription, local: LocalMedia
) -> _Choice | None:
    if offered.port == 0 or offered.media.lower() != "audio":
        return None
    proto = offered.proto.upper()
    if proto not in (_PLAIN_RTP, _SECURE_RTP):
        return None
    mode = local.srtp_mode
    # As PJSUA: DISABLED refuses RTP/SAVP, MANDATORY refuses RTP/AVP even with
    # a=crypto (RFC 3264 6: the answer cannot change the offered profile).
    if (mode is SrtpMode.DISABLED and proto == _SECURE_RTP) or (
        mode is SrtpMode.MANDATORY and proto == _PLAIN_RTP
    ):
        return None
    local_crypto = remote_crypto = None
    if mode is not SrtpMode.DISABLED:
        # Under RTP/AVP the keys are best effort: without a usable one the
        # stream is plain RTP; under RTP/SAVP one is required (RFC 4568 7.1.2).
        pair = _match_crypto(offered.crypto, local.crypto or ())
        if pair is not None:
            local_crypto, remote_crypto = pair
        elif proto == _SECURE_RTP:
            return None
    connection = offer.connection_for(offered)
    if connection is None or connection.addrtype.upper() not in ("IP4", "IP6"):
        return None
    rtpmaps = offered.payload_rtpmaps()
    for ours in local.codecs:  # our preference order decides (RFC 3264 6.1 lets us)
        for pt, rtpmap in rtpmaps.items():
            if ours.matches(rtpmap.encoding, rtpmap.clock_rate, rtpmap.channels):
                codec = CodecSpec(ours.name, ours.clock_rate, ours.channels, pt, offered.fmtp(pt))
                event_pt, events = _choose_events(offered, rtpmaps, ours.clock_rate, local)
                return _Choice(codec, event_pt, events, local_crypto, remote_crypto)
    return None


def _choose_events(
    offered: MediaDescription, rtpmaps: dict[int, RtpMap], clock: int, local: LocalMedia
) -> tuple[int | None, frozenset[int]]:
    if not local.telephone_event:
        return None, frozenset()
    for pt, rtpmap in rtpmaps.items():
        if (
            rtpmap.encoding.lower() == _TELEPHONE_EVENT
            and rtpmap.clock_rate == clock  # RFC 4733 7.1.1: same clock as the audio
        ):
            events = _parse_events(offered.fmtp(pt)) & SUPPORTED_EVENTS
            if events:
                return pt, events
    return None, frozenset()


def _match_crypto(offered: Sequence[str], ours: Sequence[str]) -> tuple[str, str] | None:
    """RFC 4568 7.1.2: the first offered line we can key, answered with its tag and our key.

    A line that is malformed, of a suite we have no key for, or using what
    :class:`~sipstack.srtp.SrtpContext` cannot do (MKI, KDR...) is skipped.
    """
    by_suite: dict[CryptoSuite, CryptoAttribute] = {}
    for line in ours:
        mine = parse_crypto(line)  # our own keys: a bad one is the caller's bug
        by_suite.setdefault(mine.suite, mine)
    for line in offered:
        try:
            theirs = parse_crypto(line)
            theirs.check_usable()
        except CryptoAttributeError:
            continue
        mine_for_suite = by_suite.get(theirs.suite)
        if mine_for_suite is not None:
            answer = CryptoAttribute(theirs.tag, theirs.suite, mine_for_suite.keys)
            return str(answer), line
    return None


def _answer_media(
    offered: MediaDescription, local: LocalMedia, choice: _Choice, dirn: Direction
) -> MediaDescription:
    codec = choice.codec
    assert codec.payload_type is not None
    formats = [str(codec.payload_type)]
    if choice.event_pt is not None:
        formats.append(str(choice.event_pt))
    media = MediaDescription("audio", local.port, offered.proto, formats)
    ours = next(c for c in local.codecs if c.matches(codec.name, codec.clock_rate, codec.channels))
    _add_rtpmap(media, codec.payload_type, codec.name, codec.clock_rate, codec.channels, ours.fmtp)
    if choice.event_pt is not None:
        events = _format_events(choice.events)
        _add_rtpmap(media, choice.event_pt, _TELEPHONE_EVENT, codec.clock_rate, 1, events)
    _add_common_attributes(media, local, dirn)
    if choice.local_crypto is not None:
        media.add_attribute("crypto", choice.local_crypto)
    return media


def _effective_direction(description: SessionDescription, media: MediaDescription) -> Direction:
    """The writer's direction, counting ``c=0.0.0.0`` as "do not send to me".

    RFC 3264 8.4: an RFC 2543 peer holds by setting the address to 0.0.0.0;
    it still may send, so its sendrecv means sendonly.
    """
    dirn = description.direction_for(media)
    connection = description.connection_for(media)
    if connection is not None and connection.is_unspecified:
        dirn = Direction.from_flags(dirn.sends, False)
    return dirn


def _negotiated(
    remote: SessionDescription,
    remote_media: MediaDescription,
    index: int,
    choice: _Choice,
    our_dirn: Direction,
    default_ptime: int,
    on_hold: bool,
) -> NegotiatedMedia:
    connection = remote.connection_for(remote_media)
    assert connection is not None  # parse_sdp guarantees one for an active stream
    rtcp = remote_media.rtcp
    # RFC 3550 11 puts RTCP at RTP + 1 unless RFC 3605 a=rtcp says otherwise.
    rtcp_port = rtcp.port if rtcp is not None else remote_media.port + 1
    return NegotiatedMedia(
        remote_address=connection.address,
        remote_port=remote_media.port,
        remote_rtcp_port=rtcp_port,
        codec=choice.codec,
        telephone_event_pt=choice.event_pt,
        # RFC 8866 6.4: a=ptime is what the peer wants to receive; else ours.
        ptime=remote_media.ptime or default_ptime,
        direction=our_dirn,
        on_hold_by_remote=on_hold,
        stream_index=index,
        local_crypto=choice.local_crypto,
        remote_crypto=choice.remote_crypto,
        events=choice.events,
    )


# -- reading the answer -------------------------------------------------------------


def process_answer(offer: SessionDescription, answer: SessionDescription) -> NegotiatedMedia | None:
    """The peer's answer to our ``offer`` (RFC 3264 section 7); None if it refused audio.

    The first audio stream the answer accepted is the call's.

    The answerer may name our codec under another payload type number (RFC 4317
    2.3 shows 97 answered as 99); we then send with the answer's number, which
    is the one it will decode. Raises :class:`OfferAnswerError` when the answer
    is not a legal answer to this offer.
    """
    if len(answer.media) != len(offer.media):
        raise OfferAnswerError(
            f"answer has {len(answer.media)} m= lines for an offer of {len(offer.media)}"
            " (RFC 3264 6)"
        )
    for index, (ours, theirs) in enumerate(zip(offer.media, answer.media, strict=True)):
        if ours.media.lower() != theirs.media.lower():
            raise OfferAnswerError(
                f"m= line {index + 1}: answer has {theirs.media!r} for offered {ours.media!r}"
            )
        if ours.port == 0 or ours.media.lower() != "audio":
            continue
        if theirs.port == 0:
            continue  # refused (RFC 3264 6); another audio stream may be taken (RFC 4317 2.6)
        negotiated = _read_answer(offer, ours, answer, theirs, index)
        if negotiated is not None:
            return negotiated
    return None


def _read_answer(
    offer: SessionDescription,
    ours: MediaDescription,
    answer: SessionDescription,
    theirs: MediaDescription,
    index: int,
) -> NegotiatedMedia | None:
    offered_codecs = [
        r for r in ours.payload_rtpmaps().values() if r.encoding.lower() != _TELEPHONE_EVENT
    ]
    answered = theirs.payload_rtpmaps()
    codec: CodecSpec | None = None
    for pt, rtpmap in answered.items():  # the answerer's order is its preference
        if rtpmap.encoding.lower() == _TELEPHONE_EVENT:
            continue
        for mine in offered_codecs:
            if (mine.encoding.lower(), mine.clock_rate, mine.channels) == (
                rtpmap.encoding.lower(),
                rtpmap.clock_rate,
                rtpmap.channels,
            ):
                name, clock, channels = mine.encoding, mine.clock_rate, mine.channels
                codec = CodecSpec(name, clock, channels, pt, theirs.fmtp(pt))
                break
        if codec is not None:
            break
    if codec is None:
        return None  # nothing we offered: no usable audio
    event_pt: int | None = None
    events: frozenset[int] = frozenset()
    for pt, rtpmap in answered.items():
        if rtpmap.encoding.lower() == _TELEPHONE_EVENT and rtpmap.clock_rate == codec.clock_rate:
            events = _parse_events(theirs.fmtp(pt)) & SUPPORTED_EVENTS
            event_pt = pt if events else None
            break
    local_crypto, remote_crypto = _read_answer_crypto(ours, theirs, index)
    offer_dirn = offer.direction_for(ours)
    answer_dirn = _effective_direction(answer, theirs)
    our_dirn = offer_dirn & answer_dirn.reversed()
    choice = _Choice(codec, event_pt, events, local_crypto, remote_crypto)
    on_hold = offer_dirn.sends and not answer_dirn.receives
    return _negotiated(answer, theirs, index, choice, our_dirn, ours.ptime or 20, on_hold)


def _read_answer_crypto(
    ours: MediaDescription, theirs: MediaDescription, index: int
) -> tuple[str | None, str | None]:
    """(our key, their key) from the answer, or (None, None) for plain RTP.

    RFC 4568 7.1.3: an answer that accepts SRTP has exactly one crypto line,
    with a tag and suite we offered. Our RTP/SAVP offer must be answered so;
    our best-effort RTP/AVP offer may be answered without keys (plain RTP).
    """
    line = f"m= line {index + 1}"
    if not ours.crypto:
        return None, None  # we sent no keys: any in the answer mean nothing
    if not theirs.crypto:
        if ours.proto.upper() == _SECURE_RTP:
            raise OfferAnswerError(f"{line}: RTP/SAVP accepted without a=crypto")
        return None, None  # best effort declined: plain RTP
    if len(theirs.crypto) != 1:
        raise OfferAnswerError(
            f"{line}: answer has {len(theirs.crypto)} a=crypto lines (RFC 4568 7.1.3: one)"
        )
    try:
        remote = parse_crypto(theirs.crypto[0])
        remote.check_usable()
    except CryptoAttributeError as exc:
        raise OfferAnswerError(f"{line}: unusable a=crypto in the answer: {exc}") from None
    for mine in ours.crypto:
        try:
            offered = parse_crypto(mine)
        except CryptoAttributeError:
            continue
        if offered.tag == remote.tag and offered.suite is remote.suite:
            return mine, theirs.crypto[0]
    raise OfferAnswerError(
        f"{line}: answer's a=crypto tag {remote.tag} {remote.suite.value} was not offered"
    )


# -- RFC 4733 event lists -----------------------------------------------------------


def _parse_events(fmtp: str | None) -> frozenset[int]:
    """``0-15,66,70`` -> the set; RFC 4733 7.1.1: absent means 0-15."""
    if fmtp is None:
        return frozenset(range(16))
    result: set[int] = set()
    for item in fmtp.replace(" ", "").split(","):
        low, dash, high = item.partition("-")
        if not low.isdigit() or len(low) > 3 or (dash and (not high.isdigit() or len(high) > 3)):
            continue  # ignore what we cannot read rather than lose DTMF altogether
        first, last = int(low), int(high) if dash else int(low)
        if first <= last <= 255:
            result.update(range(first, last + 1))
    return frozenset(result)


def _format_events(events: frozenset[int]) -> str:
    ordered = sorted(events)
    ranges: list[str] = []
    start = prev = ordered[0]
    for event in [*ordered[1:], None]:
        if event is not None and event == prev + 1:
            prev = event
            continue
        ranges.append(str(start) if start == prev else f"{start}-{prev}")
        if event is not None:
            start = prev = event
    return ",".join(ranges)
