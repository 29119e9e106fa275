"""Events the user agent reports to the application (PJSUA's ``on_*`` callbacks)."""

from __future__ import annotations

from .records import dataclass

__all__ = [
    "RegStateChanged",
    "IncomingSubscribe",
    "SubscriptionEnded",
    "IncomingMessage",
    "MessageStatus",
    "UaEvent",
]


@dataclass(frozen=True, slots=True)
class RegStateChanged:
    """``on_reg_state2``: an account's registration changed.

    ``state`` is the registration machine's state name, ``status``/``reason``
    the last final answer (408/503 made up for timeouts and transport errors),
    ``expires`` the granted seconds when registered, ``note`` why, to log once.
    """

    acc_id: int
    state: str
    is_registered: bool
    status: int
    reason: str
    expires: int | None
    note: str


@dataclass(frozen=True, slots=True)
class IncomingSubscribe:
    """``on_incoming_subscribe``: someone subscribed to an account's presence."""

    acc_id: int
    subscriber: str


@dataclass(frozen=True, slots=True)
class SubscriptionEnded:
    """A presence subscription to an account ended (expired, unsubscribed, failed)."""

    acc_id: int
    subscriber: str
    reason: str


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """``on_pager2``: a MESSAGE (RFC 3428) arrived for an account."""

    acc_id: int
    from_uri: str
    to_uri: str
    content_type: str
    body: bytes


@dataclass(frozen=True, slots=True)
class MessageStatus:
    """``on_pager_status2``: the outcome of a MESSAGE we sent (``token`` is the caller's)."""

    acc_id: int
    to_uri: str
    status: int
    reason: str
    token: object = None


UaEvent = RegStateChanged | IncomingSubscribe | SubscriptionEnded | IncomingMessage | MessageStatus
