"""Exceptions of the SIP stack, split by whose fault they are (GUIDE: errors say whose fault)."""

from __future__ import annotations

__all__ = ["SipParseError", "SipStackError", "TransportError"]


class SipStackError(Exception):
    """Base class for errors raised by :mod:`sipstack`."""


class SipParseError(SipStackError, ValueError):
    """A peer sent bytes that are not a valid SIP message (the peer's fault).

    ``status`` is the response code a user agent should answer a request with
    (normally 400; 505 for an unsupported SIP version; 416 for an unsupported
    URI scheme when that is decided at parse time), or ``None`` when the input
    is (or looks like) a response, which is never answered.
    """

    def __init__(self, reason: str, status: int | None = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class TransportError(SipStackError, OSError):
    """A message could not be sent (connection refused, reset, unreachable...)."""
