"""The transaction layer: matches messages to transactions (RFC 3261 17.1.3, 17.2.3).

A sans-IO manager over the four machines. The transport glue feeds it every
received message with ``receive(message, reliable, now)`` and sends what
``messages_to_send()`` returns; each message comes with the key of its
transaction so the glue knows the destination (the target a client request was
sent to; the Via of a server request for responses, RFC 3261 18.2.2). The TU
drains ``next_event()`` and answers with ``send_response`` / ``send_request``.

Retransmissions are absorbed here: the TU sees each request and each
response once, except what RFC 6026 says it must see again (2xx to INVITE and
their ACKs).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque

from sipstack.message import Request, Response
from sipstack.timers import TimerConfig
from sipstack.transaction import (
    AckReceived,
    ClientKey,
    LegacyServerKey,
    ServerKey,
    ServerTransactionKey,
    StrayResponse,
    TransactionEvent,
    TransactionKey,
    TransactionState,
    TransactionStateError,
    client_key,
    server_key,
)
from sipstack.transaction_client import (
    InviteClientTransaction,
    NonInviteClientTransaction,
    build_cancel,
)
from sipstack.transaction_server import InviteServerTransaction, NonInviteServerTransaction

__all__ = ["ClientTransaction", "ServerTransaction", "TransactionLayer"]

log = logging.getLogger(__name__)

ClientTransaction = InviteClientTransaction | NonInviteClientTransaction
ServerTransaction = InviteServerTransaction | NonInviteServerTransaction


class TransactionLayer:
    """All live transactions of one user agent, keyed as RFC 3261 17 matches them.

    Deadlines are kept in a heap of ``(deadline, seq, key)`` with lazy
    invalidation, so ``get_timer`` and ``handle_timer`` cost O(log n) per
    deadline instead of a scan: over UDP an answered non-INVITE server
    transaction lives 64*T1 = 32 s (RFC 3261 17.2.2 Timer J), so a UAS
    answering 150 requests/s holds ~5,000 of them and asks after every message.
    An entry is valid only while its transaction is alive and still reports
    that very deadline; every touch of a transaction pushes its new deadline
    and the old entry silently goes stale.
    """

    #: The heap is rebuilt from the live transactions once it holds more than
    #: this many entries per live transaction (plus ``_HEAP_SLACK``), so stale
    #: entries cannot pile up; rebuilding is O(n), paid once per ~3n pushes.
    _HEAP_FACTOR = 4
    _HEAP_SLACK = 64

    def __init__(self, timers: TimerConfig | None = None) -> None:
        self._timers = timers if timers is not None else TimerConfig()
        self._clients: dict[ClientKey, ClientTransaction] = {}
        self._servers: dict[ServerTransactionKey, ServerTransaction] = {}
        # (deadline, seq, key): seq breaks ties so keys are never compared.
        self._deadlines: list[tuple[float, int, TransactionKey]] = []
        self._seq = itertools.count()
        # INVITEs whose CANCEL waits for a provisional response (RFC 3261 9.1).
        self._pending_cancels: set[ClientKey] = set()
        self._outbox: list[tuple[TransactionKey, Request | Response]] = []
        self._events: deque[TransactionEvent] = deque()

    @property
    def timers(self) -> TimerConfig:
        """The timer values every new transaction gets."""
        return self._timers

    # -- asked -------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of live transactions."""
        return len(self._clients) + len(self._servers)

    def __contains__(self, key: object) -> bool:
        return key in self._clients or key in self._servers

    def state(self, key: TransactionKey) -> TransactionState | None:
        """The state of a live transaction, or None when it is gone."""
        txn = self._find(key)
        return None if txn is None else txn.state

    @property
    def indexed_deadlines(self) -> int:
        """Entries in the deadline index, stale ones included (a diagnostic:
        it stays within a small multiple of the live transactions)."""
        return len(self._deadlines)

    def get_timer(self) -> float | None:
        """The earliest deadline over all transactions, or None.

        Stale index entries met on top are dropped on the way (amortised
        O(log n)); the answer is that of asking every transaction.
        """
        heap = self._deadlines
        while heap:
            when, _, key = heap[0]
            if self._is_current(when, key):
                return when
            heapq.heappop(heap)
        return None

    def match_cancel(self, cancel: Request) -> TransactionKey | None:
        """The INVITE server transaction a received CANCEL targets (RFC 3261 9.2).

        Matching is that of 17.2.3 with the method taken as INVITE. The TU
        answers the CANCEL itself (200, or 481 when this returns None) and, if
        the INVITE is still unanswered, answers it 487.
        """
        if cancel.method.upper() != "CANCEL":
            raise ValueError(f"match_cancel needs a CANCEL, not {cancel.method}")
        key = server_key(cancel)
        if isinstance(key, ServerKey):
            invite_key: ServerTransactionKey = ServerKey(key.branch, key.host, key.port, "INVITE")
        else:
            invite_key = LegacyServerKey(
                key.request_uri, key.from_tag, key.call_id, key.cseq, "INVITE", key.top_via
            )
        txn = self._servers.get(invite_key)
        if txn is None:
            return None
        if isinstance(invite_key, LegacyServerKey) and cancel.to.tag != txn.request.to.tag:
            return None
        return invite_key

    # -- drained -----------------------------------------------------------------

    def messages_to_send(self) -> list[tuple[TransactionKey, Request | Response]]:
        """(transaction key, message) pairs for the transport, oldest first."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> TransactionEvent | None:
        """The next event for the TU, or None."""
        return self._events.popleft() if self._events else None

    # -- fed by the TU -------------------------------------------------------------

    def send_request(self, request: Request, reliable: bool, now: float) -> ClientKey:
        """Start a client transaction for ``request`` and return its key.

        The request must carry a top Via with a unique ``z9hG4bK`` branch
        (RFC 3261 8.1.1.7). ACK is refused: an ACK for a 2xx is sent without a
        transaction, and the ACK for a non-2xx is the transaction's own job.
        """
        method = request.method.upper()
        if method == "ACK":
            raise ValueError("ACK is not a transaction; send an ACK for 2xx directly")
        txn: ClientTransaction
        if method == "INVITE":
            txn = InviteClientTransaction(request, reliable=reliable, timers=self._timers, now=now)
        else:
            txn = NonInviteClientTransaction(
                request, reliable=reliable, timers=self._timers, now=now
            )
        key = txn.key
        if key in self._clients:
            raise TransactionStateError(f"a client transaction {key} is still alive")
        self._clients[key] = txn
        self._collect(txn, now)
        return key

    def cancel(self, key: ClientKey, now: float) -> ClientKey | None:
        """Cancel a pending INVITE client transaction (RFC 3261 9.1).

        Returns the key of the CANCEL client transaction. Before any
        provisional response the CANCEL MUST NOT be sent: it is held and sent
        when the first 1xx arrives (dropped if a final response comes first).
        Returns None when it is too late: the INVITE got its final response.
        """
        txn = self._clients.get(key)
        if not isinstance(txn, InviteClientTransaction):
            if txn is None:
                return None
            raise ValueError(f"only INVITE transactions can be cancelled, not {key}")
        cancel_key = ClientKey(key.branch, "CANCEL")
        if txn.state is TransactionState.CALLING:
            self._pending_cancels.add(key)
            return cancel_key
        if txn.state is not TransactionState.PROCEEDING:
            return None
        if cancel_key in self._clients:
            return cancel_key  # already cancelling
        return self.send_request(build_cancel(txn.request), txn.reliable, now)

    def send_response(self, key: ServerTransactionKey, response: Response, now: float) -> None:
        """Send the TU's response through server transaction ``key``.

        Raises KeyError when that transaction is gone (the TU answered too
        late or twice) and :class:`TransactionStateError` when its state
        forbids the response.
        """
        txn = self._servers.get(key)
        if txn is None:
            raise KeyError(f"no live server transaction {key}")
        txn.send_response(response, now)
        self._collect(txn, now)

    # -- fed by the transport glue and the loop --------------------------------------

    def receive(self, message: Request | Response, reliable: bool, now: float) -> None:
        """Match a received message to its transaction, or hand it to the TU.

        Missing Via / CSeq headers raise the parser's ``SipParseError`` from
        the message accessors: the peer's fault; the glue answers a request 400.
        """
        if isinstance(message, Response):
            self._receive_response(message, now)
        else:
            self._receive_request(message, reliable, now)

    def transport_error(self, key: TransactionKey, now: float) -> None:
        """The transport failed to send a message of ``key`` (RFC 3261 17.1.4,
        17.2.4): the transaction reports ``TransportFailed`` and terminates.
        Unknown keys (already terminated) are ignored: the error came late."""
        txn = self._find(key)
        if txn is None:
            log.debug("transport error for finished transaction %s", key)
            return
        txn.transport_error(now)
        self._collect(txn, now)

    def handle_timer(self, now: float) -> None:
        """Fire the timers of every transaction that is due at ``now``.

        Due transactions fire in deadline order, each once per call (as a scan
        would: one whose next deadline is also past fires on the next call),
        and are re-indexed by ``_collect``. Transactions created meanwhile (a
        held CANCEL) are not due: their timers start at ``now`` plus a delay.
        """
        heap = self._deadlines
        due: dict[TransactionKey, None] = {}  # ordered set: duplicates fire once
        while heap and heap[0][0] <= now:
            when, _, key = heapq.heappop(heap)
            if self._is_current(when, key):
                due[key] = None
        for key in due:
            txn = self._find(key)
            if txn is None:
                continue  # defensive: firing one transaction never ends another
            next_at = txn.get_timer()
            if next_at is not None and next_at <= now:
                txn.handle_timer(now)
            # Always re-collect: the popped entry is gone, so the transaction
            # must be pushed again even if nothing changed.
            self._collect(txn, now)

    # -- internals -----------------------------------------------------------------

    def _find(self, key: TransactionKey) -> ClientTransaction | ServerTransaction | None:
        if isinstance(key, ClientKey):
            return self._clients.get(key)
        return self._servers.get(key)

    def _is_current(self, when: float, key: TransactionKey) -> bool:
        """Whether an index entry still tells the truth: its transaction is
        alive and its next deadline is that one. A later transaction under a
        reused key with the same deadline passes too, rightly so."""
        txn = self._find(key)
        return txn is not None and txn.get_timer() == when

    def _index(self, txn: ClientTransaction | ServerTransaction) -> None:
        """Push the transaction's current deadline; rebuild an overgrown heap."""
        when = txn.get_timer()
        if when is None:
            return
        heap = self._deadlines
        heapq.heappush(heap, (when, next(self._seq), txn.key))
        if len(heap) > self._HEAP_FACTOR * len(self) + self._HEAP_SLACK:
            self._rebuild_index()

    def _rebuild_index(self) -> None:
        """One entry per live transaction with a timer, stale ones dropped."""
        entries = [
            (when, next(self._seq), txn.key)
            for txn in (*self._clients.values(), *self._servers.values())
            if (when := txn.get_timer()) is not None
        ]
        heapq.heapify(entries)
        self._deadlines = entries

    def _receive_response(self, response: Response, now: float) -> None:
        key = client_key(response)
        txn = self._clients.get(key) if key is not None else None
        if txn is None:
            # RFC 3261 17.1.3: no match -> the core (2xx retransmissions after
            # Timer M, or a late response to a finished transaction).
            self._events.append(StrayResponse(response))
            return
        txn.receive(response, now)
        self._collect(txn, now)

    def _receive_request(self, request: Request, reliable: bool, now: float) -> None:
        key = server_key(request)
        txn = self._servers.get(key)
        if txn is not None and isinstance(key, LegacyServerKey):
            txn = txn if self._legacy_to_tag_matches(txn, request) else None
        is_ack = request.method.upper() == "ACK"
        if txn is not None:
            txn.receive(request, now)
            self._collect(txn, now)
            return
        if is_ack:
            # An ACK for a 2xx has its own branch (RFC 3261 17.1.1.3) and lands
            # here; the dialog layer takes it.
            self._events.append(AckReceived(request, None))
            return
        if key in self._servers:
            # RFC 2543 peer: same key but different To tag; no transaction can
            # take it without losing the other one. Drop, it is retransmitted.
            log.warning("RFC 2543 request collides with a live transaction; dropped")
            return
        new: ServerTransaction
        if request.method.upper() == "INVITE":
            new = InviteServerTransaction(request, reliable=reliable, timers=self._timers, now=now)
        else:
            new = NonInviteServerTransaction(
                request, reliable=reliable, timers=self._timers, now=now
            )
        self._servers[new.key] = new
        self._collect(new, now)

    @staticmethod
    def _legacy_to_tag_matches(txn: ServerTransaction, request: Request) -> bool:
        """RFC 3261 17.2.3 for RFC 2543 peers: a retransmission carries the To
        tag of the original request; an ACK carries the To tag of our response."""
        if request.method.upper() == "ACK":
            last = txn.last_response
            return last is not None and request.to.tag == last.to.tag
        return request.to.tag == txn.request.to.tag

    def _collect(self, txn: ClientTransaction | ServerTransaction, now: float) -> None:
        """Move a transaction's output to the layer's queues; forget it once
        Terminated (RFC 3261 17: destroyed immediately)."""
        key = txn.key
        self._outbox.extend((key, message) for message in txn.messages_to_send())
        while (event := txn.next_event()) is not None:
            self._events.append(event)
        if isinstance(txn, InviteClientTransaction):
            self._flush_pending_cancel(txn, now)
        if txn.terminated:
            # Its index entries go stale by themselves (see _is_current).
            if isinstance(key, ClientKey):
                self._clients.pop(key, None)
            else:
                self._servers.pop(key, None)
        else:
            self._index(txn)

    def _flush_pending_cancel(self, txn: InviteClientTransaction, now: float) -> None:
        key = txn.key
        if key not in self._pending_cancels or txn.state is TransactionState.CALLING:
            return
        self._pending_cancels.discard(key)
        if txn.state is TransactionState.PROCEEDING:
            # RFC 3261 9.1: the provisional response arrived; now it may go.
            self.send_request(build_cancel(txn.request), txn.reliable, now)
