"""Per-header grammar checks run by ``parse_message`` on every header it knows.

RFC 4475 3.1.2 expects a parser to reject a message whose defect sits in a
header the user agent may never read (a non-GMT Date, a four-digit Warning
code), so validation is eager while building typed values stays lazy. Each
check is a precompiled regex for the spelling real stacks send (``FAST``),
and when that fails, the full RFC 3261 grammar on the value with surrounding
whitespace removed (``check_full``, compiled on first use). Scalar ranges are
part of the patterns: cheap enough to run on every message.

A header section spelled the usual way is checked in one match of
``HEAD_RE`` instead (see ``_grammar.head_re``); the line-by-line checks
here decide for everything else.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from . import _grammar as g
from .headers import _CANONICAL

__all__ = ["FAST", "HEAD_RE", "MAX_UINT32", "check_full", "delta_seconds"]

MAX_UINT32 = 0xFFFFFFFF

# Takes a header value, returns a match when it is well formed.
Validator = Callable[[str], "re.Match[str] | None"]


def delta_seconds(value: str) -> int | None:
    """A 32-bit ``delta-seconds`` (RFC 3261 25.1), or None when malformed or too big."""
    if value.isascii() and value.isdigit():
        number = int(value)
        if number <= MAX_UINT32:
            return number
    return None


_address = g.ADDRESS_FULL.fullmatch
_address_list = g.ADDRESS_LIST_RE.fullmatch
_address_list_full = g.ADDRESS_LIST_FULL.fullmatch
_token_list = g.TOKEN_LIST_RE.fullmatch
_token_list1 = g.TOKEN_LIST1_RE.fullmatch
_token_params = g.TOKEN_PARAMS_RE.fullmatch
_auth = g.AUTH_RE.fullmatch
_short_uint = g.SHORT_UINT_RE.fullmatch
_uint32 = g.UINT32_RE.fullmatch

# Keyed by lower-case canonical name: (fast check, full check). Headers seen in
# nearly every message have a compiled fast check; rare ones go straight to
# their (lazily compiled) full grammar.
_CHECKS: dict[str, tuple[Validator, Validator]] = {
    "via": (g.VIA_RE.fullmatch, g.VIA_FULL.fullmatch),
    "from": (_address, _address),
    "to": (_address, _address),
    "contact": (g.CONTACT_RE.fullmatch, g.CONTACT_FULL.fullmatch),
    "route": (_address_list, _address_list_full),
    "record-route": (_address_list, _address_list_full),
    "reply-to": (_address, _address),
    "refer-to": (_address, _address),
    "referred-by": (_address, _address),
    "p-asserted-identity": (_address_list, _address_list_full),
    "p-preferred-identity": (_address_list, _address_list_full),
    "path": (_address_list, _address_list_full),
    "service-route": (_address_list, _address_list_full),
    "max-forwards": (g.MAX_FORWARDS_RE.fullmatch, g.MAX_FORWARDS_RE.fullmatch),
    "expires": (_short_uint, _uint32),
    "min-expires": (_short_uint, _uint32),
    "content-length": (_short_uint, _uint32),
    "rseq": (_short_uint, _uint32),
    "rack": (g.RACK_RE.fullmatch, g.RACK_RE.fullmatch),
    "retry-after": (g.RETRY_AFTER_RE.fullmatch, g.RETRY_AFTER_RE.fullmatch),
    "session-expires": (g.DELTA_PARAMS_RE.fullmatch, g.DELTA_PARAMS_FULL.fullmatch),
    "min-se": (g.DELTA_PARAMS_RE.fullmatch, g.DELTA_PARAMS_FULL.fullmatch),
    "cseq": (g.CSEQ_RE.fullmatch, g.CSEQ_FULL.fullmatch),
    "call-id": (g.CALL_ID_RE.fullmatch, g.CALL_ID_RE.fullmatch),
    "date": (g.DATE_RE.fullmatch, g.DATE_RE.fullmatch),
    "warning": (g.WARNING_RE.fullmatch, g.WARNING_RE.fullmatch),
    "timestamp": (g.TIMESTAMP_RE.fullmatch, g.TIMESTAMP_RE.fullmatch),
    "content-type": (g.MEDIA_TYPE_RE.fullmatch, g.MEDIA_TYPE_FULL.fullmatch),
    "accept": (g.ACCEPT_RE.fullmatch, g.ACCEPT_RE.fullmatch),
    "allow": (_token_list, g.TOKEN_LIST_FULL.fullmatch),
    "supported": (_token_list, g.TOKEN_LIST_FULL.fullmatch),
    "allow-events": (_token_list, g.TOKEN_LIST_FULL.fullmatch),
    "content-encoding": (_token_list1, g.TOKEN_LIST1_FULL.fullmatch),
    "require": (_token_list1, g.TOKEN_LIST1_FULL.fullmatch),
    "proxy-require": (_token_list1, g.TOKEN_LIST1_FULL.fullmatch),
    "unsupported": (_token_list1, g.TOKEN_LIST1_FULL.fullmatch),
    "event": (_token_params, g.TOKEN_PARAMS_FULL.fullmatch),
    "subscription-state": (_token_params, g.TOKEN_PARAMS_FULL.fullmatch),
    "content-disposition": (_token_params, g.TOKEN_PARAMS_FULL.fullmatch),
    "sip-etag": (g.TOKEN_RE.fullmatch, g.TOKEN_RE.fullmatch),
    "sip-if-match": (g.TOKEN_RE.fullmatch, g.TOKEN_RE.fullmatch),
    "www-authenticate": (_auth, g.AUTH_FULL.fullmatch),
    "proxy-authenticate": (_auth, g.AUTH_FULL.fullmatch),
    "authorization": (_auth, g.AUTH_FULL.fullmatch),
    "proxy-authorization": (_auth, g.AUTH_FULL.fullmatch),
}

# The first check of each header: what ``parse_message`` calls per header line.
FAST: dict[str, Validator] = {key: fast for key, (fast, _) in _CHECKS.items()}


def check_full(key: str, value: str) -> re.Match[str] | None:
    """The full check of header ``key`` on ``value`` without surrounding whitespace.

    Called when the fast check failed. RFC 3261 7.3.1: whitespace around a
    value is not part of it. The fast check is retried first so that a
    padded but otherwise usual value still yields the captures of the hot
    headers.
    """
    fast, full = _CHECKS[key]
    return fast(value) or full(value)


# Every name of a checked header, compact forms included: the generic line of
# HEAD_RE must not take any of them, in any letter case.
_CHECKED_NAMES = sorted(name for name, canon in _CANONICAL.items() if canon.lower() in _CHECKS)
HEAD_RE = g.head_re(_CHECKED_NAMES)

# HEAD_RE.compiled.groups == 14: checked by tests/test_startup_imports.py, since
# asking here would compile it at import.
# HEAD_RE groups the parser keeps (g.HEAD_PIECES without Max-Forwards): Via
# transport, host, port, params, branch; From, from tag; To, to tag; Call-ID;
# CSeq number, method; Content-Length. Headers._checked names the positions.
HEAD_GROUPS = (*range(1, 13), 14)
HEAD_MAX_FIELDS = g.HEAD_MAX_FIELDS
