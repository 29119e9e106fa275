"""What all SIP transactions share: states, events, keys and the sans-IO base.

RFC 3261 section 17 defines four transaction state machines (INVITE / non-INVITE,
client / server), amended for 2xx responses to INVITE by RFC 6026. Each machine
lives in its own module (``transaction_client``, ``transaction_server``); the
``transaction_layer`` matches messages to them. This module holds the vocabulary
they share:

* :class:`TransactionState`: one enum for the states of all four machines; each
  machine lists its legal transitions in a table, and :meth:`Transaction._move`
  raises on any other.
* Events (frozen dataclasses) the transaction user drains with ``next_event()``.
  Every event names the transaction it came from by its key.
* Transaction keys: how a message is matched to a transaction
  (RFC 3261 17.1.3 for responses, 17.2.3 for requests, including the RFC 2543
  fallback for branches without the magic cookie).

A transaction is sans-IO (GUIDE: h11, aioquic): it is fed (``receive``,
``handle_timer``, API calls) with an explicit ``now``, drained
(``messages_to_send``, ``next_event``) and asked ``get_timer()``. It never reads
the clock or touches a socket.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping
from typing import ClassVar

from sipstack.errors import SipStackError
from sipstack.ids import MAGIC_COOKIE
from sipstack.message import Request, Response
from sipstack.records import dataclass
from sipstack.timers import TimerConfig

__all__ = [
    "AckReceived",
    "ClientKey",
    "LegacyServerKey",
    "NON_INVITE_TRANSITIONS",
    "RequestReceived",
    "ResponseReceived",
    "ServerKey",
    "ServerTransactionKey",
    "StrayResponse",
    "Terminated",
    "TimedOut",
    "TimerName",
    "Transaction",
    "TransactionEvent",
    "TransactionKey",
    "TransactionState",
    "TransactionStateError",
    "TransportFailed",
    "client_key",
    "server_key",
]


class TransactionStateError(SipStackError, RuntimeError):
    """The caller used a transaction in a way its current state forbids.

    This is the local user's fault (sending a response after the final one,
    feeding a terminated transaction...), never the peer's: the peer's odd
    messages are absorbed or ignored as RFC 3261 17 says.
    """


class TransactionState(enum.Enum):
    """States of the RFC 3261 17 / RFC 6026 transaction machines."""

    CALLING = "Calling"  # client INVITE: request sent, nothing heard yet
    TRYING = "Trying"  # non-INVITE: client sent the request / server got it
    PROCEEDING = "Proceeding"  # a provisional response was seen or sent
    COMPLETED = "Completed"  # final response: absorbing retransmissions
    ACCEPTED = "Accepted"  # RFC 6026: a 2xx to INVITE was received or sent
    CONFIRMED = "Confirmed"  # server INVITE: the ACK for a non-2xx arrived
    TERMINATED = "Terminated"  # over: the layer forgets the transaction


class TimerName(enum.Enum):
    """The RFC 3261 / RFC 6026 timer letters, plus the 100 (Trying) delay."""

    A = "A"
    B = "B"
    D = "D"
    E = "E"
    F = "F"
    G = "G"
    H = "H"
    I = "I"  # noqa: E741 - the RFC's name
    J = "J"
    K = "K"
    L = "L"
    M = "M"
    TRYING = "100 Trying"


# -- keys ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientKey:
    """RFC 3261 17.1.3: a response matches the client transaction whose request
    had the same top-Via branch and the same CSeq method (so a CANCEL, which
    reuses the INVITE's branch, is a separate transaction)."""

    branch: str
    method: str


@dataclass(frozen=True, slots=True)
class ServerKey:
    """RFC 3261 17.2.3: branch, sent-by of the top Via and method (an ACK
    carries method INVITE here because it belongs to the INVITE transaction)."""

    branch: str
    host: str
    port: int | None
    method: str


@dataclass(frozen=True, slots=True)
class LegacyServerKey:
    """RFC 3261 17.2.3 fallback for RFC 2543 peers (branch without ``z9hG4bK``).

    Request-URI, From tag, Call-ID, CSeq number, method (ACK as INVITE) and the
    whole top Via. The To tag is not part of the key because an ACK carries the
    tag of the *response*; the layer compares it separately.
    """

    request_uri: str
    from_tag: str | None
    call_id: str
    cseq: int
    method: str
    top_via: str


ServerTransactionKey = ServerKey | LegacyServerKey
TransactionKey = ClientKey | ServerKey | LegacyServerKey


def client_key(message: Request | Response) -> ClientKey | None:
    """The client transaction key of a request we send or a response we got.

    ``None`` when the top Via has no branch: such a response cannot match any
    transaction of ours (we always send a branch).
    """
    branch = message.top_via.branch
    if not branch:
        return None
    return ClientKey(branch, message.cseq.method.upper())


def server_key(request: Request) -> ServerTransactionKey:
    """The server transaction key of a received request (RFC 3261 17.2.3)."""
    method = request.method.upper()
    if method == "ACK":
        method = "INVITE"
    via = request.top_via
    branch = via.branch
    if branch and branch.startswith(MAGIC_COOKIE):
        host, port = via.sent_by
        return ServerKey(branch, host.lower(), port, method)
    return LegacyServerKey(
        request_uri=str(request.uri),
        from_tag=request.from_.tag,
        call_id=request.call_id,
        cseq=request.cseq.seq,
        method=method,
        top_via=str(via),
    )


# -- events ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request created a server transaction; the TU must answer it."""

    key: ServerTransactionKey
    request: Request


@dataclass(frozen=True, slots=True)
class AckReceived:
    """An ACK the TU must see: for a 2xx it sent (RFC 6026 7.1, ``key`` set) or
    one that matched no transaction (``key`` is None: an ACK for a 2xx carries a
    new branch, RFC 3261 17.1.1.3, so it usually arrives this way)."""

    request: Request
    key: ServerTransactionKey | None = None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response the client transaction passes up to the TU."""

    key: ClientKey
    response: Response


@dataclass(frozen=True, slots=True)
class StrayResponse:
    """A response that matched no client transaction (RFC 3261 17.1.3: passed to
    the core, which re-ACKs 2xx retransmissions and drops the rest)."""

    response: Response


@dataclass(frozen=True, slots=True)
class TimedOut:
    """Timer B / F (no final response) or H (no ACK for our non-2xx) fired."""

    key: TransactionKey


@dataclass(frozen=True, slots=True)
class TransportFailed:
    """The transport could not send this transaction's message (RFC 3261 17.1.4, 17.2.4)."""

    key: TransactionKey


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction reached Terminated; it is gone and its key may be reused."""

    key: TransactionKey


TransactionEvent = (
    RequestReceived
    | AckReceived
    | ResponseReceived
    | StrayResponse
    | TimedOut
    | TransportFailed
    | Terminated
)

Transitions = Mapping[TransactionState, frozenset[TransactionState]]

#: RFC 3261 17.1.2 and 17.2.2: non-INVITE client and server share one state graph.
NON_INVITE_TRANSITIONS: Transitions = {
    TransactionState.TRYING: frozenset(
        {TransactionState.PROCEEDING, TransactionState.COMPLETED, TransactionState.TERMINATED}
    ),
    TransactionState.PROCEEDING: frozenset(
        {TransactionState.COMPLETED, TransactionState.TERMINATED}
    ),
    TransactionState.COMPLETED: frozenset({TransactionState.TERMINATED}),
    TransactionState.TERMINATED: frozenset(),
}


# -- the shared machinery -----------------------------------------------------------


class Transaction:
    """Base of the four machines: timers, outbox, event queue, guarded transitions.

    Subclasses set ``TRANSITIONS`` (the whole state table of that machine) and
    implement ``_on_timer``. Retransmission means passing the very message sent
    before to the transport again (RFC 3261 17.1.1.2), so the outbox holds the
    same objects.
    """

    TRANSITIONS: ClassVar[Transitions]

    def __init__(
        self,
        request: Request,
        key: TransactionKey,
        initial: TransactionState,
        *,
        reliable: bool,
        timers: TimerConfig,
    ) -> None:
        self._request = request
        self._key = key
        self._state = initial
        self._reliable = reliable
        self._timers = timers
        self._deadlines: dict[TimerName, float] = {}
        self._outbox: list[Request | Response] = []
        self._events: deque[TransactionEvent] = deque()

    # -- asked -----------------------------------------------------------------

    @property
    def key(self) -> TransactionKey:
        """How the layer finds this transaction (see :mod:`sipstack.transaction`)."""
        return self._key

    @property
    def request(self) -> Request:
        """The request that created the transaction."""
        return self._request

    @property
    def state(self) -> TransactionState:
        """The current state."""
        return self._state

    @property
    def reliable(self) -> bool:
        """Whether the transport is reliable (TCP/TLS): no retransmissions then."""
        return self._reliable

    @property
    def terminated(self) -> bool:
        """True once the transaction reached Terminated."""
        return self._state is TransactionState.TERMINATED

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        return min(self._deadlines.values(), default=None)

    # -- drained -----------------------------------------------------------------

    def messages_to_send(self) -> list[Request | Response]:
        """Messages for the transport, oldest first; the list is emptied."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> TransactionEvent | None:
        """The next event for the TU, or None when there is none."""
        return self._events.popleft() if self._events else None

    # -- fed -----------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``, earliest first.

        A fired timer may cancel others (Timer B stops Timer A), so the due set
        is re-read after each one. Calling early is harmless.
        """
        while self._deadlines:
            name = min(self._deadlines, key=self._deadlines.__getitem__)
            if self._deadlines[name] > now:
                return
            del self._deadlines[name]
            self._on_timer(name, now)

    def transport_error(self, now: float) -> None:
        """The transport failed to send our message: inform the TU and terminate.

        RFC 3261 17.1.1.2, 17.1.2.2, 17.2.1, 17.2.2 and 17.1.4 / 17.2.4: a
        transport error in any live state ends the transaction.
        """
        self._require_live("report a transport error to")
        self._events.append(TransportFailed(self._key))
        self._move(TransactionState.TERMINATED)

    # -- for subclasses ------------------------------------------------------------

    def _on_timer(self, name: TimerName, now: float) -> None:
        raise NotImplementedError

    def _start(self, name: TimerName, now: float, delay: float) -> None:
        self._deadlines[name] = now + delay

    def _stop(self, *names: TimerName) -> None:
        for name in names:
            self._deadlines.pop(name, None)

    def _send(self, message: Request | Response) -> None:
        self._outbox.append(message)

    def _emit(self, event: TransactionEvent) -> None:
        self._events.append(event)

    def _require_live(self, action: str) -> None:
        if self._state is TransactionState.TERMINATED:
            raise TransactionStateError(f"cannot {action} a terminated transaction {self._key}")

    def _move(self, new: TransactionState) -> None:
        """The one place a state changes; anything not in TRANSITIONS raises."""
        if new not in self.TRANSITIONS.get(self._state, frozenset()):
            raise TransactionStateError(
                f"{type(self).__name__}: illegal transition {self._state.value} -> {new.value}"
            )
        self._state = new
        if new is TransactionState.TERMINATED:
            self._deadlines.clear()
            self._emit(Terminated(self._key))

    def _wait_then_terminate(self, name: TimerName, now: float, delay: float) -> None:
        """Start a wait timer (D, I, J, K); a zero wait (reliable transport)
        terminates at once, as RFC 3261 17 says "fires immediately"."""
        if delay <= 0:
            self._move(TransactionState.TERMINATED)
        else:
            self._start(name, now, delay)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._key} {self._state.value}>"
