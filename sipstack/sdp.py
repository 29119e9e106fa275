"""Session Description Protocol (RFC 8866): parse a peer's body, write our own.

:func:`parse_sdp` turns bytes into a :class:`SessionDescription`;
:meth:`SessionDescription.to_bytes` writes one back. Offer/answer decisions live
in :mod:`sipstack.offer_answer`; this module only knows the syntax. The
line-by-line parser itself is in ``sipstack._sdp_parse``; :func:`parse_sdp`
is its public entry point.

Parsing treats the body as hostile: it is bounded in size and line count, runs in
one linear pass, and anything that is not valid SDP raises :class:`SdpParseError`
(the peer's fault; the user agent answers 400/488). The structural lines (v=, o=,
c=, b=, t=, m=) are checked strictly because negotiation depends on them.
Attribute values are kept raw and in order, and parsed only by the accessors
(:meth:`MediaDescription.rtpmap`, ``fmtp``, ``ptime``...), which skip values that
do not parse: RFC 8866 section 5.13 has a receiver ignore attributes it does not
understand, and real peers send oddities such as ``a=rtpmap:31 LPC`` (RFC 4475
3.1.1.1) that must not cost the call. Lines of unknown type are preserved.

Both CRLF and bare LF line ends are accepted (RFC 8866 section 5: "a parser
SHOULD accept" LF); we always write CRLF.
"""

from __future__ import annotations

import enum
import re
import types
from collections.abc import Iterator, Mapping
from typing import Final

from sipstack.errors import SipStackError
from sipstack.records import dataclass, field

__all__ = [
    "MAX_SDP_LINES",
    "MAX_SDP_SIZE",
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Bandwidth",
    "Connection",
    "Direction",
    "MediaDescription",
    "Origin",
    "RtcpAttribute",
    "RtpMap",
    "SdpParseError",
    "SessionDescription",
    "Timing",
    "parse_sdp",
]

#: Largest body we parse: a SIP message over UDP cannot carry more (RFC 3261 18.1.1).
MAX_SDP_SIZE: Final = 65536
#: Most lines we parse; a phone's SDP has ~20, a WebRTC gateway's with ICE ~100.
MAX_SDP_LINES: Final = 1000

#: RFC 3551 section 6 tables 4 and 5: static payload type -> (encoding, clock, channels).
#: Encoding names are matched case-insensitively (RFC 4855 section 3). G722 says
#: 8000 although it samples at 16 kHz: RFC 3551 section 4.5.2 keeps the old value.
STATIC_PAYLOAD_TYPES: Final[Mapping[int, tuple[str, int, int]]] = types.MappingProxyType(
    {
        0: ("PCMU", 8000, 1),
        3: ("GSM", 8000, 1),
        4: ("G723", 8000, 1),
        5: ("DVI4", 8000, 1),
        6: ("DVI4", 16000, 1),
        7: ("LPC", 8000, 1),
        8: ("PCMA", 8000, 1),
        9: ("G722", 8000, 1),
        10: ("L16", 44100, 2),
        11: ("L16", 44100, 1),
        12: ("QCELP", 8000, 1),
        13: ("CN", 8000, 1),
        14: ("MPA", 90000, 1),
        15: ("G728", 8000, 1),
        16: ("DVI4", 11025, 1),
        17: ("DVI4", 22050, 1),
        18: ("G729", 8000, 1),
        25: ("CelB", 90000, 1),
        26: ("JPEG", 90000, 1),
        28: ("nv", 90000, 1),
        31: ("H261", 90000, 1),
        32: ("MPV", 90000, 1),
        33: ("MP2T", 90000, 1),
        34: ("H263", 90000, 1),
    }
)

# RFC 8866 section 9: token-char (no space, no ":" is NOT excluded by the
# grammar, but an attribute name ends at the first ":").
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_DIGITS_RE = re.compile(r"[0-9]{1,20}")
_PTIME_RE = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")
_UNSAFE_RE = re.compile(r"[\r\n\x00]")
_MAX_REPORTED = 60  # characters of an offending line quoted in an error


class SdpParseError(SipStackError, ValueError):
    """A peer's body is not valid SDP (the peer's fault: answer 400 or 488).

    ``reason`` says what is wrong and, where it applies, on which line.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Direction(enum.Enum):
    """Media direction attribute (RFC 8866 sections 6.7.1-6.7.4), seen by its writer."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        """The writer of the description sends media."""
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        """The writer of the description wants to receive media."""
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def from_flags(cls, sends: bool, receives: bool) -> Direction:
        """The direction with exactly these two abilities."""
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def reversed(self) -> Direction:
        """The same stream seen from the other end (RFC 3264 6.1: sendonly <-> recvonly)."""
        return Direction.from_flags(self.receives, self.sends)

    def __and__(self, other: Direction) -> Direction:
        """What both allow: ``SENDRECV & SENDONLY`` is ``SENDONLY``."""
        return Direction.from_flags(self.sends and other.sends, self.receives and other.receives)


_DIRECTION_NAMES = frozenset(d.value for d in Direction)


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=`` (RFC 8866 section 5.2): who made the description, and which version of it.

    RFC 3264 section 8: a changed description keeps ``session_id`` and raises
    ``session_version`` by one.
    """

    username: str
    session_id: int
    session_version: int
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=`` (RFC 8866 section 5.7). ``address`` without the ``/ttl/count`` suffix.

    ``ttl`` exists only for IP4 multicast; ``count`` is the number of
    consecutive multicast addresses. ``0.0.0.0`` is the RFC 2543 way to put a
    peer on hold (see :attr:`is_unspecified`).
    """

    address: str
    addrtype: str = "IP4"
    nettype: str = "IN"
    ttl: int | None = None
    count: int | None = None

    @property
    def is_unspecified(self) -> bool:
        """``0.0.0.0`` (or ``::``): no media may be sent here (RFC 3264 8.4, RFC 2543 hold)."""
        return self.address in ("0.0.0.0", "::")

    def __str__(self) -> str:
        text = f"{self.nettype} {self.addrtype} {self.address}"
        if self.ttl is not None:
            text += f"/{self.ttl}"
        if self.count is not None:
            text += f"/{self.count}"
        return text


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (RFC 8866 section 5.8); kbit/s for CT and AS."""

    bwtype: str
    bandwidth: int

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class Timing:
    """``t=<start> <stop>`` (RFC 8866 section 5.9) and its ``r=`` lines, kept raw."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.start} {self.stop}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` or ``a=<name>:<value>``; ``value`` None for a property attribute."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock>[/<params>]`` (RFC 8866 section 6.6)."""

    payload_type: int
    encoding: str
    clock_rate: int
    encoding_params: str | None = None

    @property
    def channels(self) -> int:
        """Audio channels: the encoding parameter, 1 when absent (RFC 8866 6.6)."""
        if self.encoding_params is not None and self.encoding_params.isdigit():
            return int(self.encoding_params)
        return 1

    @classmethod
    def parse(cls, value: str) -> RtpMap | None:
        """Parse an ``rtpmap`` value; None when it is malformed (ignored, RFC 8866 5.13)."""
        pt_text, sep, rest = value.partition(" ")
        if not sep or not pt_text.isdigit() or len(pt_text) > 3 or int(pt_text) > 127:
            return None
        parts = rest.strip().split("/")
        if len(parts) not in (2, 3) or not _TOKEN_RE.fullmatch(parts[0]):
            return None
        if not _DIGITS_RE.fullmatch(parts[1]) or int(parts[1]) == 0:
            return None
        params = parts[2] if len(parts) == 3 else None
        return cls(int(pt_text), parts[0], int(parts[1]), params)

    def __str__(self) -> str:
        text = f"{self.payload_type} {self.encoding}/{self.clock_rate}"
        return text if self.encoding_params is None else f"{text}/{self.encoding_params}"


@dataclass(frozen=True, slots=True)
class RtcpAttribute:
    """``a=rtcp:<port> [IN IP4 <address>]`` (RFC 3605 section 2.1)."""

    port: int
    address: str | None = None
    addrtype: str | None = None

    @classmethod
    def parse(cls, value: str) -> RtcpAttribute | None:
        """Parse an ``rtcp`` value; None when it is malformed."""
        parts = value.split()
        if not parts or not parts[0].isdigit() or len(parts[0]) > 5 or int(parts[0]) > 65535:
            return None
        if len(parts) == 1:
            return cls(int(parts[0]))
        if len(parts) == 4 and parts[1] == "IN":
            return cls(int(parts[0]), parts[3], parts[2])
        return None

    def __str__(self) -> str:
        if self.address is None:
            return str(self.port)
        return f"{self.port} IN {self.addrtype or 'IP4'} {self.address}"


class _AttributeList:
    """Look-ups shared by the session and media levels over an ordered attribute list.

    Names compare case-insensitively: RFC 8866 does not say, and peers differ.
    """

    __slots__ = ()
    attributes: list[Attribute]

    def get_attribute(self, name: str) -> str | None:
        """The value of the first ``a=name`` (None if absent or a property attribute)."""
        for attr in self._named(name):
            return attr.value
        return None

    def get_attributes(self, name: str) -> list[str | None]:
        """Values of every ``a=name``, in order."""
        return [attr.value for attr in self._named(name)]

    def has_attribute(self, name: str) -> bool:
        """Whether at least one ``a=name`` is present."""
        return any(True for _ in self._named(name))

    def add_attribute(self, name: str, value: str | None = None) -> None:
        """Append ``a=name[:value]``."""
        self.attributes.append(Attribute(name, value))

    @property
    def own_direction(self) -> Direction | None:
        """The direction attribute written at this level (the last one wins), or None."""
        found: Direction | None = None
        for attr in self.attributes:
            lowered = attr.name.lower()
            if attr.value is None and lowered in _DIRECTION_NAMES:
                found = Direction(lowered)
        return found

    def _named(self, name: str) -> Iterator[Attribute]:
        lowered = name.lower()
        return (a for a in self.attributes if a.name.lower() == lowered)


@dataclass(slots=True)
class MediaDescription(_AttributeList):
    """One ``m=`` section (RFC 8866 section 5.14) with its own lines.

    ``formats`` are kept as written; for RTP profiles they are payload type
    numbers (see :attr:`payload_types`). Port 0 means the stream is rejected or
    disabled (RFC 3264 sections 6 and 8.2).
    """

    media: str
    port: int
    proto: str
    formats: list[str] = field(default_factory=list)
    port_count: int | None = None
    information: str | None = None
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[Bandwidth] = field(default_factory=list)
    key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    extra_lines: list[tuple[str, str]] = field(default_factory=list)

    @property
    def is_rtp(self) -> bool:
        """The transport is an RTP profile (RTP/AVP, RTP/SAVP, UDP/TLS/RTP/SAVPF...)."""
        return "RTP/" in self.proto.upper()

    @property
    def payload_types(self) -> list[int]:
        """Formats as RTP payload type numbers (empty unless :attr:`is_rtp`)."""
        return [int(f) for f in self.formats] if self.is_rtp else []

    @property
    def rtpmaps(self) -> dict[int, RtpMap]:
        """Well-formed ``a=rtpmap`` lines by payload type (the first one per type wins)."""
        result: dict[int, RtpMap] = {}
        for value in self.get_attributes("rtpmap"):
            parsed = RtpMap.parse(value) if value is not None else None
            if parsed is not None and parsed.payload_type not in result:
                result[parsed.payload_type] = parsed
        return result

    def rtpmap(self, payload_type: int) -> RtpMap | None:
        """The encoding of ``payload_type``: its ``a=rtpmap``, else RFC 3551's static one."""
        return self.rtpmaps.get(payload_type) or _static_rtpmap(payload_type)

    def payload_rtpmaps(self) -> dict[int, RtpMap]:
        """Encoding of every payload type on the m= line that has one, in m= order.

        One pass over the attributes (a per-type :meth:`rtpmap` call would make a
        hostile line of thousands of formats quadratic).
        """
        explicit = self.rtpmaps
        result: dict[int, RtpMap] = {}
        for pt in self.payload_types:
            found = explicit.get(pt) or _static_rtpmap(pt)
            if found is not None and pt not in result:
                result[pt] = found
        return result

    @property
    def fmtps(self) -> dict[str, str]:
        """``a=fmtp:<format> <params>`` by format (RFC 8866 section 6.15)."""
        result: dict[str, str] = {}
        for value in self.get_attributes("fmtp"):
            if value is None:
                continue
            fmt, sep, params = value.partition(" ")
            if sep and fmt and fmt not in result:
                result[fmt] = params.strip()
        return result

    def fmtp(self, fmt: int | str) -> str | None:
        """Format parameters of one format, or None."""
        return self.fmtps.get(str(fmt))

    @property
    def ptime(self) -> int | None:
        """``a=ptime`` in whole milliseconds (RFC 8866 6.4), None if absent or absurd."""
        return self._milliseconds("ptime")

    @property
    def maxptime(self) -> int | None:
        """``a=maxptime`` in whole milliseconds (RFC 8866 6.5), None if absent or absurd."""
        return self._milliseconds("maxptime")

    @property
    def rtcp(self) -> RtcpAttribute | None:
        """``a=rtcp`` (RFC 3605): where the peer wants RTCP when not at port + 1."""
        value = self.get_attribute("rtcp")
        return RtcpAttribute.parse(value) if value is not None else None

    @property
    def crypto(self) -> list[str]:
        """Raw ``a=crypto`` values (RFC 4568 section 9.1), for the SRTP layer."""
        return [v for v in self.get_attributes("crypto") if v is not None]

    def _milliseconds(self, name: str) -> int | None:
        value = self.get_attribute(name)
        if value is None:
            return None
        # Only SP/HTAB around the number: str.strip() also eats \x1c-\x1f,
        # which float() refuses (a fuzzed "a=ptime:\x1f20" raised ValueError).
        text = value.strip(" \t")
        if not _PTIME_RE.fullmatch(text):
            return None
        millis = round(float(text))
        return millis if 1 <= millis <= 10000 else None


def _static_rtpmap(payload_type: int) -> RtpMap | None:
    static = STATIC_PAYLOAD_TYPES.get(payload_type)
    if static is None:
        return None
    name, clock, channels = static
    return RtpMap(payload_type, name, clock, str(channels) if channels != 1 else None)


@dataclass(slots=True)
class SessionDescription(_AttributeList):
    """A whole description: session-level lines and the ``m=`` sections in order.

    Build one with keyword arguments or :func:`parse_sdp`; write it with
    :meth:`to_bytes`. Lines of unknown type are kept in ``extra_lines`` as
    ``(type, value)`` and written back before the attributes.
    """

    origin: Origin
    session_name: str = "-"
    connection: Connection | None = None
    timings: list[Timing] = field(default_factory=lambda: [Timing()])
    media: list[MediaDescription] = field(default_factory=list)
    attributes: list[Attribute] = field(default_factory=list)
    bandwidths: list[Bandwidth] = field(default_factory=list)
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    time_zones: str | None = None
    key: str | None = None
    version: int = 0
    extra_lines: list[tuple[str, str]] = field(default_factory=list)

    def connection_for(self, media: MediaDescription) -> Connection | None:
        """Where a stream's media goes: its own first ``c=``, else the session's (5.7)."""
        return media.connections[0] if media.connections else self.connection

    def direction_for(self, media: MediaDescription) -> Direction:
        """A stream's direction: its own attribute, the session's, else sendrecv (6.7)."""
        return media.own_direction or self.own_direction or Direction.SENDRECV

    def to_bytes(self) -> bytes:
        """Serialize in RFC 8866 section 5 order with CRLF line ends.

        Raises ValueError (the caller's fault) if a field contains CR, LF or NUL,
        which would let a value inject lines.
        """
        return "".join(self._lines()).encode("utf-8", "surrogateescape")

    def _lines(self) -> Iterator[str]:
        yield _line("v", str(self.version))
        yield _line("o", str(self.origin))
        yield _line("s", self.session_name)
        if self.information is not None:
            yield _line("i", self.information)
        if self.uri is not None:
            yield _line("u", self.uri)
        for email in self.emails:
            yield _line("e", email)
        for phone in self.phones:
            yield _line("p", phone)
        if self.connection is not None:
            yield _line("c", str(self.connection))
        for bw in self.bandwidths:
            yield _line("b", str(bw))
        for timing in self.timings or [Timing()]:  # t= is mandatory (5.9)
            yield _line("t", str(timing))
            for repeat in timing.repeats:
                yield _line("r", repeat)
        if self.time_zones is not None:
            yield _line("z", self.time_zones)
        if self.key is not None:
            yield _line("k", self.key)
        for kind, value in self.extra_lines:
            yield _line(kind, value)
        for attr in self.attributes:
            yield _line("a", str(attr))
        for media in self.media:
            yield from _media_lines(media)


def _media_lines(media: MediaDescription) -> Iterator[str]:
    port = str(media.port) if media.port_count is None else f"{media.port}/{media.port_count}"
    yield _line("m", " ".join([media.media, port, media.proto, *media.formats]))
    if media.information is not None:
        yield _line("i", media.information)
    for conn in media.connections:
        yield _line("c", str(conn))
    for bw in media.bandwidths:
        yield _line("b", str(bw))
    if media.key is not None:
        yield _line("k", media.key)
    for kind, value in media.extra_lines:
        yield _line(kind, value)
    for attr in media.attributes:
        yield _line("a", str(attr))


def _line(kind: str, value: str) -> str:
    if _UNSAFE_RE.search(value) or len(kind) != 1 or not kind.isalpha():
        raise ValueError(f"cannot write SDP line {kind}={value[:_MAX_REPORTED]!r}: CR, LF or NUL")
    return f"{kind}={value}\r\n"


# -- parsing ------------------------------------------------------------------------


def parse_sdp(
    data: bytes, *, max_size: int = MAX_SDP_SIZE, max_lines: int = MAX_SDP_LINES
) -> SessionDescription:
    """Parse an SDP body (RFC 8866 section 9 grammar); raise SdpParseError if invalid.

    Missing ``s=`` and ``t=`` lines are tolerated (defaults ``-`` and ``0 0``);
    a missing ``v=`` or ``o=`` is not, since offer/answer needs the origin's
    version (RFC 3264 section 8). Blank lines are skipped.
    """
    # The parser (sipstack._sdp_parse) builds the classes above, so it imports this
    # module; loading it on first use keeps the import graph one-way at start-up.
    from sipstack._sdp_parse import parse_body

    return parse_body(data, max_size=max_size, max_lines=max_lines)
