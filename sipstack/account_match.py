"""Which account serves a request: PJSUA's matching rules as pure functions.

Kept apart from the user agent so each rule can be tested on its own, with no
sockets and no slots.
"""

from __future__ import annotations

from collections.abc import Sequence

from .records import dataclass
from .uri import URI

__all__ = ["AccountView", "find_for_outgoing", "find_for_incoming", "priority_order"]


@dataclass(frozen=True, slots=True)
class AccountView:
    """The parts of an account that matching looks at.

    ``domain``/``port``/``user`` come from the account URI (``port`` 0 when
    absent, as in PJSUA); ``transport`` is the type of the bound transport
    (``None`` when the account is not bound to one).
    """

    id: int
    priority: int
    domain: str
    port: int
    user: str | None
    has_route_set: bool
    transport: str | None


def priority_order(accounts: Sequence[AccountView]) -> list[AccountView]:
    """Higher priority first; equal priorities keep slot order."""
    return sorted(accounts, key=lambda a: (-a.priority, a.id))


def find_for_outgoing(accounts: Sequence[AccountView], target: URI, default: int) -> int:
    """The account to send a request to ``target`` from (``pjsua_acc_find_for_outgoing``).

    - A non-SIP target (``tel:``): the first account, by priority, that has a
      route set (it has a proxy that can route the number); else the default.
    - A SIP/SIPS target, by priority: the first account whose domain equals the
      target host and whose port equals the target port (0 when absent); then
      the first whose domain alone matches; then the default.
    """
    ordered = priority_order(accounts)
    if target.scheme not in ("sip", "sips"):
        for acc in ordered:
            if acc.has_route_set:
                return acc.id
        return default
    host = target.host.lower()
    port = target.port or 0
    for acc in ordered:
        if acc.domain.lower() == host and acc.port == port:
            return acc.id
    for acc in ordered:
        if acc.domain.lower() == host:
            return acc.id
    return default


def find_for_incoming(
    accounts: Sequence[AccountView],
    to_uri: URI | None,
    request_uri: URI | None,
    transport: str,
    default: int,
) -> int:
    """The account a received request is for (``pjsua_acc_find_for_incoming``).

    The To URI is matched, or the Request-URI when To is not a SIP URI. Each
    account scores +8 when its bound transport is the receiving one (or it is
    not bound), +4 when its domain equals the host, +2 when its user equals the
    To user, +1 when its user equals the Request-URI user. The highest score
    wins; ties go to the higher priority (the first in priority order); when no
    account scores above zero, or neither URI is a SIP URI, the default wins.
    """
    uri = to_uri if to_uri is not None and to_uri.scheme in ("sip", "sips") else None
    if uri is None:
        if request_uri is None or request_uri.scheme not in ("sip", "sips"):
            return default
        uri = request_uri
    ruri_user = request_uri.user if request_uri is not None else None
    best, best_score = default, 0
    for acc in priority_order(accounts):
        score = 0
        if acc.transport is None or acc.transport == transport:
            score += 8
        if acc.domain.lower() == uri.host.lower():
            score += 4
        if acc.user is not None and acc.user == uri.user:
            score += 2
        if acc.user is not None and acc.user == ruri_user:
            score += 1
        if score > best_score:
            best, best_score = acc.id, score
    return best
