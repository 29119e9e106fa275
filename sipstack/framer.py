"""Cut a TCP/TLS byte stream into SIP messages and keep-alives (sans-IO).

RFC 3261 18.3: on a stream the header section ends at the first empty line
and Content-Length, mandatory on streams, gives the body size. RFC 5626 3.5.1:
between messages a double CRLF is a keep-alive "ping" (the connection answers
with one CRLF) and a single CRLF is the "pong". The framer only frames: each
complete message is handed out as bytes for :func:`sipstack.message.parse_message`.
"""

from __future__ import annotations

import re

from .errors import SipParseError
from .records import dataclass

__all__ = ["FramerEvent", "KeepAlivePing", "KeepAlivePong", "StreamFramer"]


@dataclass(frozen=True, slots=True)
class KeepAlivePing:
    """The peer sent CRLFCRLF (RFC 5626 3.5.1); answer with a single CRLF."""


@dataclass(frozen=True, slots=True)
class KeepAlivePong:
    """The peer sent a lone CRLF: the answer to our ping."""


FramerEvent = KeepAlivePing | KeepAlivePong

_TOKEN = rb"[A-Za-z0-9\-.!%*_+`'~]+"
_START_LINE_RE = re.compile(
    rb"(?:" + _TOKEN + rb" [^ \t\r\n]+ (?i:SIP)/[0-9]+\.[0-9]+"
    rb"|(?i:SIP)/[0-9]+\.[0-9]+ [0-9]{3}(?: [^\r\n]*)?)\r\n"
)
_CONTENT_LENGTH_RE = re.compile(rb"\r\n(?i:content-length|l)[ \t]*:[ \t]*([^\r\n]*)")
_UNFOLD_RE = re.compile(rb"[ \t]*\r\n[ \t]+")
_CRLF = b"\r\n"


class StreamFramer:
    """Incremental framer for one stream connection.

    ``feed`` returns, in order, each complete message (header section plus
    exactly Content-Length body bytes) and keep-alive events. It raises
    :class:`SipParseError` when the stream cannot be SIP (a first line that is
    not a start line, a missing or malformed Content-Length, a message over
    ``max_message_size``); the framer then stays failed and the caller drops
    the connection.

    A ping split across reads right after its first CRLF is reported as
    ``KeepAlivePong`` then ``KeepAlivePing``: the CRLF that completes a ping
    is recognised, so the ping is still answered.
    """

    def __init__(self, max_message_size: int = 65536) -> None:
        self._max = max_message_size
        self._buf = bytearray()
        self._scan_from = 0  # where to resume looking for the empty line
        self._need: int | None = None  # total size of the current message, once known
        self._start_checked = False
        self._after_pong = False
        self._error: SipParseError | None = None

    @property
    def buffered(self) -> int:
        """Bytes held for an incomplete message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | FramerEvent]:
        """Add received bytes; return the messages and events they complete."""
        if self._error is not None:
            raise self._error
        self._buf += data
        out: list[bytes | FramerEvent] = []
        try:
            while self._buf and self._step(out):
                pass
        except SipParseError as exc:
            self._error = exc
            self._buf.clear()
            raise
        return out

    def _step(self, out: list[bytes | FramerEvent]) -> bool:
        """Consume one item from the buffer if complete; False when more bytes are needed."""
        buf = self._buf
        if self._need is None and not self._start_checked and buf[0] == 0x0D:
            if len(buf) < 2:
                return False
            if buf[1] != 0x0A:
                raise SipParseError("CR without LF between messages", None)
            if buf.startswith(b"\r\n\r\n"):
                out.append(KeepAlivePing())
                del buf[:4]
                self._after_pong = False
            elif self._after_pong:
                out.append(KeepAlivePing())  # second half of a split ping
                del buf[:2]
                self._after_pong = False
            else:
                out.append(KeepAlivePong())
                del buf[:2]
                self._after_pong = True
            return True
        self._after_pong = False
        if self._need is None:
            if not self._start_checked:
                line_end = buf.find(_CRLF)
                if line_end < 0:
                    if len(buf) > min(self._max, 8192):
                        raise SipParseError("start line too long or missing", self._status())
                    return False
                if not _START_LINE_RE.match(buf, 0, line_end + 2):
                    raise SipParseError(
                        f"not a SIP start line: {bytes(buf[: min(line_end, 60)])!r}", None
                    )
                self._start_checked = True
            end = buf.find(b"\r\n\r\n", max(0, self._scan_from - 3))
            if end < 0:
                self._scan_from = len(buf)
                if len(buf) > self._max:
                    raise SipParseError("header section exceeds the size limit", self._status())
                return False
            self._need = end + 4 + self._content_length(bytes(buf[: end + 2]))
            if self._need > self._max:
                raise SipParseError(
                    f"message of {self._need} bytes exceeds {self._max}", self._status()
                )
        if len(buf) < self._need:
            return False
        out.append(bytes(buf[: self._need]))
        del buf[: self._need]
        self._need = None
        self._scan_from = 0
        self._start_checked = False
        return True

    def _status(self) -> int | None:
        return None if self._buf[:4].upper() == b"SIP/" else 400

    def _content_length(self, head: bytes) -> int:
        if b"\r\n " in head or b"\r\n\t" in head:
            head = _UNFOLD_RE.sub(b" ", head)
        values = _CONTENT_LENGTH_RE.findall(head)
        if not values:
            # RFC 3261 18.3: "the Content-Length header field MUST be used" on streams.
            raise SipParseError("no Content-Length on a stream transport", self._status())
        if len(values) > 1:
            raise SipParseError("more than one Content-Length", self._status())
        value = values[0].strip(b" \t")
        if not value.isdigit() or len(value) > 10:
            raise SipParseError(f"malformed Content-Length {value[:20]!r}", self._status())
        return int(value)
