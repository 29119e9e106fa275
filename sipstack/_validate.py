"""Per-header grammar checks run by ``parse_message`` on every header it knows.

RFC 4475 3.1.2 expects a parser to reject a message whose defect sits in a
header the user agent may never read (a non-GMT Date, a four-digit Warning
code), so validation is eager while building typed values stays lazy. Each
check is one precompiled regex (``_grammar``: a fast pattern for the usual
spelling, then the full grammar), scalar ranges included: cheap enough to run
on every message.

A validator takes the unfolded header value and returns a truthy value when
it is well formed.
"""

from __future__ import annotations

from collections.abc import Callable

from . import _grammar as g

__all__ = ["MAX_UINT32", "VALIDATORS", "delta_seconds"]

MAX_UINT32 = 0xFFFFFFFF

Validator = Callable[[str], object]


def delta_seconds(value: str) -> int | None:
    """A 32-bit ``delta-seconds`` (RFC 3261 25.1), or None when malformed or too big."""
    if value.isascii() and value.isdigit():
        number = int(value)
        if number <= MAX_UINT32:
            return number
    return None


_address = g.ADDRESS_RE.fullmatch
_address_list = g.ADDRESS_LIST_RE.fullmatch
_token_list = g.TOKEN_LIST_RE.fullmatch

# Keyed by lower-case canonical name. Scalars are range-checked by the regex
# itself (UINT32, MAX_FORWARDS_RE): a Python-level check would cost more.
VALIDATORS: dict[str, Validator] = {
    "via": g.VIA_LIST_RE.fullmatch,
    "from": _address,
    "to": _address,
    "contact": g.CONTACT_RE.fullmatch,
    "route": _address_list,
    "record-route": _address_list,
    "reply-to": _address,
    "refer-to": _address,
    "referred-by": _address,
    "p-asserted-identity": _address_list,
    "p-preferred-identity": _address_list,
    "path": _address_list,
    "service-route": _address_list,
    "max-forwards": g.MAX_FORWARDS_RE.fullmatch,
    "expires": g.UINT32_RE.fullmatch,
    "min-expires": g.UINT32_RE.fullmatch,
    "content-length": g.UINT32_RE.fullmatch,
    "rseq": g.UINT32_RE.fullmatch,
    "rack": g.RACK_CHECK_RE.fullmatch,
    "retry-after": g.RETRY_AFTER_CHECK_RE.fullmatch,
    "session-expires": g.DELTA_PARAMS_CHECK_RE.fullmatch,
    "min-se": g.DELTA_PARAMS_CHECK_RE.fullmatch,
    "cseq": g.CSEQ_CHECK_RE.fullmatch,
    "call-id": g.CALL_ID_RE.fullmatch,
    "date": g.DATE_RE.fullmatch,
    "warning": g.WARNING_RE.fullmatch,
    "timestamp": g.TIMESTAMP_RE.fullmatch,
    "content-type": g.MEDIA_TYPE_RE.fullmatch,
    "accept": g.ACCEPT_RE.fullmatch,
    "allow": _token_list,
    "supported": _token_list,
    "allow-events": _token_list,
    "content-encoding": g.TOKEN_LIST1_RE.fullmatch,
    "require": g.TOKEN_LIST1_RE.fullmatch,
    "proxy-require": g.TOKEN_LIST1_RE.fullmatch,
    "unsupported": g.TOKEN_LIST1_RE.fullmatch,
    "event": g.TOKEN_PARAMS_RE.fullmatch,
    "subscription-state": g.TOKEN_PARAMS_RE.fullmatch,
    "content-disposition": g.TOKEN_PARAMS_RE.fullmatch,
    "sip-etag": g.TOKEN_RE.fullmatch,
    "sip-if-match": g.TOKEN_RE.fullmatch,
    "www-authenticate": g.AUTH_RE.fullmatch,
    "proxy-authenticate": g.AUTH_RE.fullmatch,
    "authorization": g.AUTH_RE.fullmatch,
    "proxy-authorization": g.AUTH_RE.fullmatch,
}
