"""The SDP parser (RFC 8866 section 9 grammar): bytes in, :class:`SessionDescription` out.

Private: callers use :func:`sipstack.sdp.parse_sdp`, which loads this module on
first use. The data model, the writer and the attribute accessors live in
:mod:`sipstack.sdp`; this module only knows which lines may appear where and
how each structural line (v=, o=, c=, b=, t=, m=) is spelled. One linear pass,
bounded in size and lines; anything invalid raises :class:`SdpParseError`.
"""

from __future__ import annotations

from sipstack.sdp import (
    _DIGITS_RE,
    _MAX_REPORTED,
    _TOKEN_RE,
    Attribute,
    Bandwidth,
    Connection,
    MediaDescription,
    Origin,
    SdpParseError,
    SessionDescription,
    Timing,
)

__all__ = ["parse_body"]

# Line types RFC 8866 section 5 defines, by where they may appear.
_SESSION_ONLY = frozenset("vosuepztr")
_MEDIA_ALLOWED = frozenset("icbka")


def parse_body(data: bytes, *, max_size: int, max_lines: int) -> SessionDescription:
    """Parse an SDP body; the contract is :func:`sipstack.sdp.parse_sdp`'s."""
    if len(data) > max_size:
        raise SdpParseError(f"SDP body is {len(data)} bytes, over the {max_size}-byte limit")
    if data.count(b"\n") > max_lines:
        raise SdpParseError(f"SDP body has more than {max_lines} lines")
    if b"\x00" in data:
        raise SdpParseError("SDP body contains a NUL byte")
    # RFC 8866 section 5: text is UTF-8 by default; undecodable bytes survive a
    # round trip through surrogateescape instead of failing the whole call.
    text = bytes(data).decode("utf-8", "surrogateescape")
    builder = _Builder()
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw[:-1] if raw.endswith("\r") else raw
        if not line:
            continue
        if "\r" in line:
            raise SdpParseError(f"line {lineno}: bare CR inside a line")
        if not builder.seen_version and not line.startswith("v="):
            raise SdpParseError(f"line {lineno}: SDP must start with v=0, got {line[:20]!r}")
        if len(line) < 2 or line[1] != "=" or not line[0].isascii() or not line[0].isalpha():
            raise SdpParseError(
                f"line {lineno}: expected '<letter>=<value>', got {line[:_MAX_REPORTED]!r}"
            )
        builder.feed(line[0], line[2:], lineno)
    return builder.finish()


class _Builder:
    """Accumulates one description line by line; knows which lines may go where."""

    def __init__(self) -> None:
        self.seen_version = False
        self.origin: Origin | None = None
        self.session_name: str | None = None
        self.session = SessionDescription(origin=Origin("-", 0, 0, "0.0.0.0"), timings=[])
        self.current: MediaDescription | None = None
        self.seen: set[str] = set()  # single-occurrence session fields already met

    def feed(self, kind: str, value: str, lineno: int) -> None:
        if not self.seen_version:  # parse_sdp has checked that this line is v=
            if value != "0":
                raise SdpParseError(f"line {lineno}: unsupported SDP version v={value[:10]!r}")
            self.seen_version = True
            return
        if kind == "m":
            self.current = _parse_media(value, lineno)
            self.session.media.append(self.current)
        elif self.current is not None:
            self._feed_media(self.current, kind, value, lineno)
        else:
            self._feed_session(kind, value, lineno)

    def _once(self, kind: str, lineno: int) -> None:
        if kind in self.seen:
            raise SdpParseError(f"line {lineno}: second {kind}= line at session level")
        self.seen.add(kind)

    def _feed_session(self, kind: str, value: str, lineno: int) -> None:
        s = self.session
        if kind == "v":
            raise SdpParseError(f"line {lineno}: second v= line")
        if kind in "osiuzkc":
            self._once(kind, lineno)
        if kind == "o":
            s.origin = _parse_origin(value, lineno)
            self.origin = s.origin
        elif kind == "s":
            s.session_name = value
        elif kind == "i":
            s.information = value
        elif kind == "u":
            s.uri = value
        elif kind == "e":
            s.emails.append(value)
        elif kind == "p":
            s.phones.append(value)
        elif kind == "c":
            s.connection = _parse_connection(value, lineno)
        elif kind == "b":
            s.bandwidths.append(_parse_bandwidth(value, lineno))
        elif kind == "t":
            s.timings.append(_parse_timing(value, lineno))
        elif kind == "r":
            if not s.timings:
                raise SdpParseError(f"line {lineno}: r= before any t= line")
            last = s.timings[-1]
            s.timings[-1] = Timing(last.start, last.stop, (*last.repeats, value))
        elif kind == "z":
            s.time_zones = value
        elif kind == "k":
            s.key = value
        elif kind == "a":
            s.attributes.append(_parse_attribute(value, lineno))
        else:
            s.extra_lines.append((kind, value))

    def _feed_media(self, media: MediaDescription, kind: str, value: str, lineno: int) -> None:
        if kind in _SESSION_ONLY:
            raise SdpParseError(f"line {lineno}: {kind}= is not allowed inside an m= section")
        if kind == "a":
            media.attributes.append(_parse_attribute(value, lineno))
        elif kind == "c":
            media.connections.append(_parse_connection(value, lineno))
        elif kind == "b":
            media.bandwidths.append(_parse_bandwidth(value, lineno))
        elif kind == "i":
            if media.information is not None:
                raise SdpParseError(f"line {lineno}: second i= line in an m= section")
            media.information = value
        elif kind == "k":
            if media.key is not None:
                raise SdpParseError(f"line {lineno}: second k= line in an m= section")
            media.key = value
        else:
            media.extra_lines.append((kind, value))

    def finish(self) -> SessionDescription:
        if not self.seen_version:
            raise SdpParseError("empty SDP body (no v= line)")
        if self.origin is None:
            raise SdpParseError("missing o= line")
        s = self.session
        if not s.timings:
            s.timings.append(Timing())
        for index, media in enumerate(s.media):
            # RFC 8866 5.7: every stream needs a c=, its own or the session's;
            # a disabled stream (port 0) carries no media so needs none.
            if media.port != 0 and not media.connections and s.connection is None:
                raise SdpParseError(
                    f"m= line {index + 1} ({media.media}) has no c= line and the session has none"
                )
        return s


def _fields(value: str, count: int, what: str, lineno: int) -> list[str]:
    parts = value.split()
    if len(parts) != count:
        raise SdpParseError(
            f"line {lineno}: {what} needs {count} fields, got {value[:_MAX_REPORTED]!r}"
        )
    return parts


def _number(text: str, what: str, lineno: int, maximum: int | None = None) -> int:
    if not _DIGITS_RE.fullmatch(text):
        raise SdpParseError(f"line {lineno}: {what} is not a number: {text[:20]!r}")
    number = int(text)
    if maximum is not None and number > maximum:
        raise SdpParseError(f"line {lineno}: {what} {number} is over {maximum}")
    return number


def _token(text: str, what: str, lineno: int) -> str:
    if not _TOKEN_RE.fullmatch(text):
        raise SdpParseError(f"line {lineno}: {what} is not a token: {text[:20]!r}")
    return text


def _parse_origin(value: str, lineno: int) -> Origin:
    user, sess_id, sess_version, nettype, addrtype, address = _fields(value, 6, "o=", lineno)
    return Origin(
        username=user,
        session_id=_number(sess_id, "o= session id", lineno),
        session_version=_number(sess_version, "o= session version", lineno),
        address=address,
        nettype=_token(nettype, "o= nettype", lineno),
        addrtype=_token(addrtype, "o= addrtype", lineno),
    )


def _parse_connection(value: str, lineno: int) -> Connection:
    nettype, addrtype, address = _fields(value, 3, "c=", lineno)
    _token(nettype, "c= nettype", lineno)
    _token(addrtype, "c= addrtype", lineno)
    ttl: int | None = None
    count: int | None = None
    kind = addrtype.upper()
    if kind in ("IP4", "IP6") and "/" in address:
        # RFC 8866 5.7: IP4 multicast is <addr>/<ttl>[/<count>], IP6 <addr>[/<count>].
        address, *suffix = address.split("/")
        if kind == "IP4" and len(suffix) in (1, 2):
            ttl = _number(suffix[0], "c= TTL", lineno, 255)
            if len(suffix) == 2:
                count = _number(suffix[1], "c= address count", lineno)
        elif kind == "IP6" and len(suffix) == 1:
            count = _number(suffix[0], "c= address count", lineno)
        else:
            raise SdpParseError(f"line {lineno}: bad c= address suffix in {value[:60]!r}")
    if not address:
        raise SdpParseError(f"line {lineno}: empty c= address")
    return Connection(address, addrtype, nettype, ttl, count)


def _parse_bandwidth(value: str, lineno: int) -> Bandwidth:
    bwtype, sep, amount = value.partition(":")
    if not sep:
        raise SdpParseError(f"line {lineno}: b= needs <type>:<bandwidth>, got {value[:40]!r}")
    return Bandwidth(_token(bwtype, "b= type", lineno), _number(amount, "b= bandwidth", lineno))


def _parse_timing(value: str, lineno: int) -> Timing:
    start, stop = _fields(value, 2, "t=", lineno)
    return Timing(_number(start, "t= start", lineno), _number(stop, "t= stop", lineno))


def _parse_attribute(value: str, lineno: int) -> Attribute:
    name, sep, attr_value = value.partition(":")
    _token(name, "a= attribute name", lineno)
    return Attribute(name, attr_value if sep else None)


def _parse_media(value: str, lineno: int) -> MediaDescription:
    parts = value.split()
    if len(parts) < 3:
        raise SdpParseError(f"line {lineno}: m= needs <media> <port> <proto> <fmt>...")
    media, port_text, proto, *formats = parts
    _token(media, "m= media type", lineno)
    port_text, slash, count_text = port_text.partition("/")
    port = _number(port_text, "m= port", lineno, 65535)
    port_count = _number(count_text, "m= port count", lineno) if slash else None
    if port_count == 0:
        raise SdpParseError(f"line {lineno}: m= port count is 0")
    if not all(_TOKEN_RE.fullmatch(part) for part in proto.split("/")):
        raise SdpParseError(f"line {lineno}: m= proto is not valid: {proto[:20]!r}")
    if not formats and port != 0:
        raise SdpParseError(f"line {lineno}: m= line lists no formats")
    is_rtp = "RTP/" in proto.upper()
    for fmt in formats:
        if is_rtp:
            # RFC 3551 section 3 / RFC 8866 5.14: RTP formats are payload type numbers.
            _number(fmt, "m= RTP payload type", lineno, 127)
        else:
            _token(fmt, "m= format", lineno)
    return MediaDescription(media, port, proto, formats, port_count)
