"""SIP requests and responses: parsing from bytes, serializing, typed header access.

``parse_message`` is the one entry point for bytes from the network. It
checks the whole message eagerly (start line, every header whose grammar it
knows, 32-bit scalars, mandatory headers, CSeq method, Content-Length) so
that a malformed message is rejected with the right status before any layer
sees it, but it builds typed header values (``Via``, ``NameAddr``...) lazily,
on first use of an accessor, and caches them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from operator import itemgetter

from . import _grammar as g
from ._accessors import HeaderAccessors, required_header
from ._validate import FAST, HEAD_GROUPS, HEAD_MAX_FIELDS, HEAD_RE, Validator, check_full
from .errors import SipParseError
from .headers import _CANONICAL, _FAST, Headers
from .uri import URI, parse_uri

TYPE_CHECKING = False  # mypy honours any name TYPE_CHECKING; typing is not imported
if TYPE_CHECKING:
    from .headers import HotValues

__all__ = [
    "Headers",
    "Message",
    "Request",
    "Response",
    "make_response",
    "parse_message",
    "reason_phrase",
]


DEFAULT_MAX_SIZE = 65536
DEFAULT_MAX_HEADERS = 256
DEFAULT_MAX_LINE = 8192

_REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete",
    485: "Ambiguous", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 489: "Bad Event", 491: "Request Pending",
    493: "Undecipherable", 500: "Server Internal Error", 501: "Not Implemented",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Server Time-out",
    505: "Version Not Supported", 513: "Message Too Large", 600: "Busy Everywhere",
    603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}  # fmt: skip
_CLASS_REASONS = {1: "Trying", 2: "OK", 3: "Redirect", 4: "Client Error", 5: "Server Error",
                  6: "Global Failure"}  # fmt: skip


def reason_phrase(status: int) -> str:
    """The standard reason phrase for ``status`` (RFC 3261 21), or its class's."""
    return _REASONS.get(status) or _CLASS_REASONS.get(status // 100, "Unknown")


class Message(HeaderAccessors):
    """What requests and responses share: headers, body and typed accessors.

    Typed accessors parse their header on first use and cache the value until
    that header is changed through ``headers``. A missing mandatory header
    (Via, From, To, Call-ID, CSeq) raises ``LookupError``; ``parse_message``
    guarantees they are present.
    """

    __slots__ = ("headers", "body")

    headers: Headers
    body: bytes

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is always written and always matches the body."""
        lines = [self._start_line()]
        lines += [f"{n}: {v}" for k, n, v in self.headers._items if k != "content-length"]
        lines.append(f"Content-Length: {len(self.body)}\r\n\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def _same(self, other: Message) -> bool:
        """Equal headers (Content-Length aside: it follows the body) and body."""
        mine = [(k, v) for k, _, v in self.headers._items if k != "content-length"]
        theirs = [(k, v) for k, _, v in other.headers._items if k != "content-length"]
        return mine == theirs and self.body == other.body

    __hash__ = None  # type: ignore[assignment]


class Request(Message):
    """A SIP request. ``method`` is case-sensitive (RFC 3261 7.1).

    A parsed request keeps its Request-URI text (already grammar-checked) and
    builds the :class:`URI` on first access of ``uri``.
    """

    __slots__ = ("method", "_uri", "_uri_text")

    def __init__(
        self, method: str, uri: URI, headers: Headers | None = None, body: bytes = b""
    ) -> None:
        self.method = method
        self._uri: URI | None = uri
        self._uri_text: str | None = None
        self.headers = headers if headers is not None else Headers()
        self.body = body

    @classmethod
    def _parsed(cls, method: str, uri_text: str) -> Request:
        self = cls.__new__(cls)
        self.method = method
        self._uri = None
        self._uri_text = uri_text
        return self

    @property
    def uri(self) -> URI:
        """The Request-URI."""
        uri = self._uri
        if uri is None:
            assert self._uri_text is not None
            uri = self._uri = parse_uri(self._uri_text)
        return uri

    @uri.setter
    def uri(self, value: URI) -> None:
        self._uri = value
        self._uri_text = None

    def _start_line(self) -> str:
        if self._uri is None:
            return f"{self.method} {self._uri_text} SIP/2.0"
        return f"{self.method} {self._uri} SIP/2.0"

    def copy(self) -> Request:
        """An independent copy (headers copied; URI and body are immutable)."""
        return Request(self.method, self.uri, self.headers.copy(), self.body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Request):
            return NotImplemented
        return self.method == other.method and self.uri == other.uri and self._same(other)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response; ``reason`` defaults to the standard phrase."""

    __slots__ = ("status", "reason")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
    ) -> None:
        self.status = status
        self.reason = reason_phrase(status) if reason is None else reason
        self.headers = headers if headers is not None else Headers()
        self.body = body

    @classmethod
    def _parsed(cls, status: int, reason: str) -> Response:
        self = cls.__new__(cls)
        self.status = status
        self.reason = reason
        return self

    def _start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def copy(self) -> Response:
        """An independent copy (headers copied)."""
        return Response(self.status, self.reason, self.headers.copy(), self.body)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Response):
            return NotImplemented
        return self.status == other.status and self.reason == other.reason and self._same(other)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def make_response(
    request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> Response:
    """Build a response to ``request`` (RFC 3261 8.2.6.2).

    Copies every Via (in order), From, To, Call-ID and CSeq; adds ``to_tag``
    to To when To has no tag yet; a 100 also copies Timestamp (8.2.6.1).
    """
    headers = Headers()
    for name, value in request.headers:
        if name == "Via":
            headers.add(name, value)
    headers.add("From", required_header(request.headers, "From"))
    to = required_header(request.headers, "To")
    if to_tag is not None and request.to.tag is None:
        to = f"{to};tag={to_tag}"
    headers.add("To", to)
    headers.add("Call-ID", required_header(request.headers, "Call-ID"))
    headers.add("CSeq", required_header(request.headers, "CSeq"))
    if status == 100:
        timestamp = request.headers.get("Timestamp")
        if timestamp is not None:
            headers.add("Timestamp", timestamp)
    return Response(status, reason, headers)


# -- the parser ------------------------------------------------------------------------

# Headers RFC 3261 8.1.1 makes mandatory in every message (Max-Forwards is left
# out: RFC 2543 peers omit it, RFC 4475 3.4.1) and those that may appear once.
_REQUIRED = ("from", "to", "call-id", "cseq")  # and Via, which may repeat
_SINGLE = frozenset(("from", "to", "call-id", "cseq", "max-forwards", "content-length"))
_REQUIRED_SET = frozenset(("via", *_REQUIRED))

# What the parse loop does with a header besides storing it: nothing, keep its
# match as the only one (single headers), or keep the first one (Via: the top
# Via is the first value of the first Via field, RFC 3261 7.3.1).
_PLAIN, _ONCE, _FIRST = 0, 1, 2

# (key, canonical name, fast check or None, what to keep)
_Info = tuple[str, str, "Validator | None", int]


def _info(canonical: str) -> _Info:
    key = canonical.lower()
    keep = _ONCE if key in _SINGLE else _FIRST if key == "via" else _PLAIN
    return (key, canonical, FAST.get(key), keep)


# Header name as written -> _Info. Built once from the fixed tables; input
# never adds to it.
_NAME_INFO: dict[str, _Info] = {name: _info(canon) for name, canon in _FAST.items()}


def _slow_info(line: str, name: str, colon: str, status: int | None) -> _Info:
    """Look up a header name not spelled the usual way (odd case, SP before ':')."""
    if not colon:
        raise SipParseError(f"header line without a colon: {line[:80]!r}", status)
    name = name.rstrip(" \t")  # RFC 3261 7.3.1: HCOLON admits SP/HTAB before ':'
    canon = _CANONICAL.get(name.lower())
    if canon is not None:
        return _info(canon)
    if g.TOKEN_RE.fullmatch(name):
        return (name.lower(), name, None, _PLAIN)
    raise SipParseError(f"bad header name {name[:80]!r}", status)


def parse_message(
    data: bytes,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    max_headers: int = DEFAULT_MAX_HEADERS,
    max_line: int = DEFAULT_MAX_LINE,
) -> Request | Response:
    """Parse one SIP message from a datagram (or a frame from ``StreamFramer``).

    Bytes beyond Content-Length are ignored (RFC 3261 18.3); a missing
    Content-Length means the body is the rest of the datagram. Raises
    :class:`SipParseError` with ``status`` 400 (505 for a SIP version other
    than 2.0, 513 for an oversized request) for a bad request and ``None``
    for a bad response. Header values are decoded as UTF-8 with
    ``surrogateescape`` so no byte is lost; the body is kept as bytes.

    Every header whose grammar is known is checked here. The rest is lazy:
    a header section spelled the usual way is checked by one regex match
    (``HEAD_RE``) and split into fields on first use of ``headers``; typed
    values are built by the accessors (for Via, From, To, CSeq and Call-ID
    from the pieces that match captured), the Request-URI on first access.
    """
    is_response = data[:4].upper() == b"SIP/"
    status: int | None = None if is_response else 400
    if len(data) > max_size:
        reason = f"message of {len(data)} bytes exceeds {max_size}"
        raise SipParseError(reason, None if is_response else 513)
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        body_start = end + 4
    elif data.endswith(b"\r\n"):
        # A datagram that stops right after its last header line: the datagram
        # boundary ends the header section (RFC 4475's baddn has this shape).
        end = len(data) - 2
        body_start = len(data)
    else:
        raise SipParseError("no CRLF ending the header section", status)
    # The header section with the CRLF of its last line.
    head = data[: end + 2].decode("utf-8", "surrogateescape")
    if "\x00" in head and g.BARE_NUL_RE.search(head):
        raise SipParseError("NUL byte in the header section", status)
    if len(head) > max_line and max(map(len, head.split("\r\n"))) > max_line:
        raise SipParseError(f"a line is longer than {max_line} characters", status)
    msg, cl = _parse_head(head, status, max_headers)
    if cl is None:
        msg.body = data[body_start:]
    else:
        length = int(cl)  # checked by its grammar
        if length > len(data) - body_start:
            have = len(data) - body_start
            raise SipParseError(f"Content-Length {length} exceeds the {have} body bytes", status)
        msg.body = data[body_start : body_start + length]
    return msg


def _check_request_line(start: str) -> tuple[str, str]:
    """The full RFC 3261 25.1 Request-Line check, with the right error status."""
    m = g.REQUEST_LINE_RE.fullmatch(start)
    if m is None:
        raise SipParseError(f"malformed request line {start[:80]!r}", 400)
    method, uri_text, version = m.groups()
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        # RFC 3261 8.2.2 / 21.5.6: answer 505, before judging anything else.
        raise SipParseError(f"unsupported SIP version {version[:20]!r}", 505)
    if not g.REQUEST_URI_RE.fullmatch(uri_text):
        # Includes URI headers (RFC 3261 19.1.1 table 1: not allowed here).
        raise SipParseError(f"bad Request-URI {uri_text[:80]!r}", 400)
    return method, uri_text


def _check_status_line(start: str) -> tuple[str, str]:
    """The full RFC 3261 25.1 Status-Line check."""
    m = g.STATUS_LINE_RE.fullmatch(start)
    if m is None:
        raise SipParseError(f"malformed status line {start[:80]!r}", None)
    version, code, reason = m.groups()
    if version.upper() != "SIP/2.0":
        raise SipParseError(f"unsupported SIP version {version[:20]!r}", None)
    return code, reason or ""


def _check_value(key: str, canon: str, value: str, status: int | None) -> tuple[re.Match[str], str]:
    """The full-grammar check of a value the fast check refused; returns (match, value)."""
    value = value.strip(" \t")  # RFC 3261 7.3.1: surrounding whitespace is not the value
    m = check_full(key, value)
    if m is None:
        raise SipParseError(f"malformed {canon} header {value[:80]!r}", status)
    return m, value


def _missing_or_twice(items: list[tuple[str, str, str]], seen: Mapping[str, object]) -> str:
    """Why the mandatory / single header check failed (off the common path)."""
    counts: dict[str, int] = {}
    for key, _, _ in items:
        counts[key] = counts.get(key, 0) + 1
    twice = [_CANONICAL[k] for k in sorted(_SINGLE) if counts.get(k, 0) > 1]
    if twice:
        return f"more than one {', '.join(twice)} header"
    missing = [_CANONICAL[k] for k in ("via", *_REQUIRED) if k not in seen]
    return f"missing mandatory header(s) {', '.join(missing)}"


# Via transport, From, To, Call-ID and CSeq number in what HEAD_RE captured.
_MANDATORY = itemgetter(0, 5, 7, 9, 10)


def _start_line(start: str, status: int | None) -> tuple[Request | Response, str | None]:
    """The message for a start line, and the method of a request."""
    if status is None:
        m = g.FAST_STATUS_LINE_RE.fullmatch(start)
        code, reason = m.groups() if m is not None else _check_status_line(start)
        return Response._parsed(int(code), reason), None
    m = g.FAST_REQUEST_LINE_RE.fullmatch(start)
    method, uri_text = m.groups() if m is not None else _check_request_line(start)
    return Request._parsed(method, uri_text), method


def _parse_head(
    head: str, status: int | None, max_headers: int
) -> tuple[Request | Response, str | None]:
    """Start line and header fields of ``head`` (ending with CRLF).

    Returns the message and its Content-Length value, if any.
    """
    if max_headers >= HEAD_MAX_FIELDS:  # else HEAD_RE could take too many
        line_end = head.find("\r\n")
        msg, method = _start_line(head[:line_end], status)
        # The usual spelling: one match checks every line (see _grammar.head_re).
        # Folded lines (RFC 3261 7.3.1) fail it.
        m = HEAD_RE.compiled.fullmatch(head, line_end + 2)
        if m is not None:
            # The groups' types depend on the match: see Headers._checked.
            hot: HotValues = m.group(*HEAD_GROUPS)
            # RFC 3261 8.1.1: the mandatory headers (a second one failed the match).
            if None not in _MANDATORY(hot):
                if method is not None and hot[11] != method:
                    # RFC 4475 3.1.2.17/18: the CSeq method must match the request method.
                    raise SipParseError(f"CSeq method differs from {method!r}", 400)
                msg.headers = Headers._checked(head[line_end + 2 :], hot)
                return msg, hot[12]
    return _parse_unusual(head, status, max_headers)


def _parse_unusual(
    head: str, status: int | None, max_headers: int
) -> tuple[Request | Response, str | None]:
    """:func:`_parse_head` for what HEAD_RE refused: field by field, full grammar."""
    if head.count("\r\n") - 1 > max_headers:
        raise SipParseError(f"more than {max_headers} header fields", status)
    if "\r\n " in head or "\r\n\t" in head:
        # RFC 3261 7.3.1: a CRLF followed by whitespace continues the line.
        head = g.UNFOLD_RE.sub(" ", head)
    line_end = head.find("\r\n")
    msg, method = _start_line(head[:line_end], status)
    items, cl = _parse_fields(head[line_end + 2 : -2], method, status)
    msg.headers = Headers._from_parsed(items)
    return msg, cl


def _parse_fields(
    text: str, method: str | None, status: int | None
) -> tuple[list[tuple[str, str, str]], str | None]:
    """Check the header lines of ``text`` one by one, with the full grammar.

    Returns the ``(key, name, value)`` fields and the Content-Length value.
    Bare CR and LF (RFC 3261 7: lines end with CRLF) are caught by the
    grammar of every checked field and explicitly for the others.
    """
    items: list[tuple[str, str, str]] = []
    seen: dict[str, re.Match[str]] = {}
    name_info = _NAME_INFO
    append = items.append
    nonce = 0
    for line in text.split("\r\n") if text else ():
        name, colon, value = line.partition(": ")
        info = name_info.get(name)
        if info is None or not colon:
            name, colon, value = line.partition(":")
            info = _slow_info(line, name, colon, status)
        key, canon, check, keep = info
        if check is not None:
            m = check(value)
            if m is None:
                m, value = _check_value(key, canon, value, status)
            if keep:
                if keep == _ONCE:
                    seen[key] = m
                    nonce += 1
                elif key not in seen:
                    seen[key] = m
        else:  # no grammar beyond TEXT-UTF8: only CR and LF are out of place
            value = value.strip(" \t")
            if "\r" in value or "\n" in value:
                raise SipParseError(f"bare CR or LF in the {canon} header", status)
        append((key, canon, value))

    # Counted rather than checked per line: cheaper.
    if len(seen) != nonce + 1 or not seen.keys() >= _REQUIRED_SET:
        raise SipParseError(_missing_or_twice(items, seen), status)
    if method is not None and seen["cseq"][2] != method:
        # RFC 4475 3.1.2.17/18: the CSeq method must match the request method.
        raise SipParseError(f"CSeq method differs from {method!r}", 400)
    cl = seen.get("content-length")
    return items, None if cl is None else cl[0]
