"""The vocabulary of INVITE sessions: states, their transition table, events, output.

Kept apart from :mod:`sipstack.invite_session` so the call layer can import
the names it reacts to without the machine, and the machine stays one job.
"""

from __future__ import annotations

import enum

from sipstack.errors import SipStackError
from sipstack.message import Request
from sipstack.records import dataclass
from sipstack.uri import URI

__all__ = [
    "Disconnected",
    "DtmfInfo",
    "EarlyMedia",
    "InviteSessionError",
    "InviteSessionEvent",
    "InviteState",
    "OfferRejected",
    "OutRequest",
    "Redirected",
    "RemoteAnswer",
    "RemoteOffer",
    "SessionRefreshed",
    "StateChanged",
    "TRANSITIONS",
]


class InviteSessionError(SipStackError, RuntimeError):
    """The local user called the session in a state that forbids it (our fault,
    never the peer's: a peer's odd message is answered, not raised)."""


class InviteState(enum.Enum):
    """PJSIP's INVITE session states (``pjsip_inv_state``)."""

    NULL = "null"  # not started
    CALLING = "calling"  # UAC: INVITE sent, no provisional with To tag yet
    INCOMING = "incoming"  # UAS: INVITE received, nothing but 100 sent
    EARLY = "early"  # a 1xx with To tag was received / sent: early dialog
    CONNECTING = "connecting"  # 2xx sent or received, ACK not yet through
    CONFIRMED = "confirmed"  # the ACK went out / came in: the call is up
    DISCONNECTING = "disconnecting"  # BYE or CANCEL sent, waiting for its answer
    DISCONNECTED = "disconnected"  # over


_S = InviteState

# The whole machine in one table (GUIDE rule 2). EARLY -> CALLING is a 3xx or a
# 401/407 after early dialogs: the new INVITE starts from scratch.
TRANSITIONS: dict[InviteState, frozenset[InviteState]] = {
    _S.NULL: frozenset({_S.CALLING, _S.INCOMING, _S.DISCONNECTED}),
    _S.CALLING: frozenset({_S.EARLY, _S.CONNECTING, _S.DISCONNECTING, _S.DISCONNECTED}),
    _S.INCOMING: frozenset({_S.EARLY, _S.CONNECTING, _S.DISCONNECTED}),
    _S.EARLY: frozenset({_S.CALLING, _S.CONNECTING, _S.DISCONNECTING, _S.DISCONNECTED}),
    _S.CONNECTING: frozenset({_S.CONFIRMED, _S.DISCONNECTING, _S.DISCONNECTED}),
    _S.CONFIRMED: frozenset({_S.DISCONNECTING, _S.DISCONNECTED}),
    _S.DISCONNECTING: frozenset({_S.DISCONNECTED}),
    _S.DISCONNECTED: frozenset(),
}


@dataclass(frozen=True, slots=True)
class OutRequest:
    """A request for the glue to send.

    ``stateless``: send without a transaction (``Endpoint.send_stateless``): the
    ACK for a 2xx (RFC 3261 13.2.2.4). ``cancels``: this is a CANCEL; do not
    send ``request`` itself but call ``TransactionLayer.cancel`` /
    ``Endpoint.cancel`` for the INVITE ``cancels`` (the very object drained
    earlier), because the CANCEL must copy the Via branch the transport gave
    that INVITE (RFC 3261 9.1). ``request`` then shows what will be sent.
    Everything else goes in a new client transaction.
    """

    request: Request
    stateless: bool = False
    cancels: Request | None = None


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The session moved from ``old`` to ``new``; ``code``/``reason`` say why
    (the response or cause that moved it; 0 when there is none)."""

    old: InviteState
    new: InviteState
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class RemoteOffer:
    """The peer sent an SDP offer; answer it with ``answer(200, sdp, now)``
    (or a 488 to refuse a re-INVITE's offer)."""

    sdp: bytes


@dataclass(frozen=True, slots=True)
class RemoteAnswer:
    """The peer answered our offer (in a 2xx, or in the ACK of a late offer)."""

    sdp: bytes


@dataclass(frozen=True, slots=True)
class EarlyMedia:
    """A provisional response carried SDP: early media may be played from it.
    The 2xx will bring the real answer (RFC 3261 13.2.1 unreliable 1xx)."""

    sdp: bytes


@dataclass(frozen=True, slots=True)
class DtmfInfo:
    """A DTMF digit arrived in SIP INFO (application/dtmf-relay or application/dtmf).
    ``duration`` in milliseconds, 0 when not given."""

    digit: str
    duration: int


@dataclass(frozen=True, slots=True)
class Redirected:
    """A 3xx: the session follows ``contacts[0]`` (the ones not tried yet, best first)."""

    code: int
    contacts: tuple[URI, ...]


@dataclass(frozen=True, slots=True)
class SessionRefreshed:
    """An INVITE or UPDATE transaction succeeded in the dialog: the session
    timer restarted. ``interval`` is the negotiated Session-Expires (None: off)."""

    interval: int | None
    by_remote: bool


@dataclass(frozen=True, slots=True)
class OfferRejected:
    """Our re-INVITE failed with a final non-2xx: the old session stays (RFC 3261 14.1)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Disconnected:
    """The session is over; ``by_remote`` when the peer ended it (BYE, rejection)."""

    code: int
    reason: str
    by_remote: bool


InviteSessionEvent = (
    StateChanged
    | RemoteOffer
    | RemoteAnswer
    | EarlyMedia
    | DtmfInfo
    | Redirected
    | SessionRefreshed
    | OfferRejected
    | Disconnected
)
