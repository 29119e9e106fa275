"""Server transactions: INVITE (RFC 3261 17.2.1 + RFC 6026 7.1) and non-INVITE (17.2.2).

A server transaction is created by the layer for a request that matched no
existing transaction. It hands the request to the TU (``RequestReceived``),
sends what the TU answers, and absorbs request retransmissions by repeating the
last response, so the TU sees each request once.
"""

from __future__ import annotations

from typing import ClassVar

from sipstack.message import Request, Response, make_response
from sipstack.timers import TimerConfig
from sipstack.transaction import (
    NON_INVITE_TRANSITIONS,
    AckReceived,
    LegacyServerKey,
    RequestReceived,
    ServerKey,
    ServerTransactionKey,
    TimedOut,
    TimerName,
    Transaction,
    TransactionState,
    TransactionStateError,
    Transitions,
    server_key,
)

__all__ = ["InviteServerTransaction", "NonInviteServerTransaction"]

S = TransactionState


def _check_response(request: Request, response: Response) -> None:
    """Refuse a response that is not for this transaction's request (caller's bug)."""
    if not isinstance(response, Response):
        raise TypeError(f"send_response needs a Response, not {response!r}")
    if not 100 <= response.status <= 699:
        raise ValueError(f"status {response.status} is not a SIP status code (100-699)")
    if response.cseq.method.upper() != request.method.upper():
        raise ValueError(
            f"response CSeq method {response.cseq.method} does not match the"
            f" {request.method} of this transaction"
        )


class _ServerTransaction(Transaction):
    """What both server machines share: the request goes up on creation, the
    last response is kept to answer retransmissions."""

    def __init__(
        self,
        request: Request,
        initial: TransactionState,
        *,
        reliable: bool,
        timers: TimerConfig,
    ) -> None:
        super().__init__(request, server_key(request), initial, reliable=reliable, timers=timers)
        self._last_response: Response | None = None
        self._emit(RequestReceived(self.key, request))

    @property
    def key(self) -> ServerTransactionKey:
        """The RFC 3261 17.2.3 key (see :func:`sipstack.transaction.server_key`)."""
        key = self._key
        assert isinstance(key, ServerKey | LegacyServerKey)
        return key

    @property
    def last_response(self) -> Response | None:
        """The most recent response sent (the layer needs its To tag for
        RFC 2543 ACK matching)."""
        return self._last_response

    def _send_response(self, response: Response) -> None:
        self._last_response = response
        self._send(response)

    def _resend_last(self) -> None:
        if self._last_response is not None:
            self._send(self._last_response)


class InviteServerTransaction(_ServerTransaction):
    """RFC 3261 17.2.1 (Figure 7) with the RFC 6026 Accepted state.

    Proceeding: sends the TU's provisional responses, and a 100 (Trying) of its
    own if the TU has said nothing within ``trying_delay`` (200 ms). A 2xx from
    the TU moves to Accepted: the TU retransmits the 2xx itself (passed through
    here) and gets the ACKs, until Timer L. A 300-699 moves to Completed: it is
    retransmitted on Timer G (unreliable, doubling to T2) until the ACK (->
    Confirmed, Timer I) or Timer H (-> TimedOut).
    """

    TRANSITIONS: ClassVar[Transitions] = {
        S.PROCEEDING: frozenset({S.COMPLETED, S.ACCEPTED, S.TERMINATED}),
        S.COMPLETED: frozenset({S.CONFIRMED, S.TERMINATED}),
        S.CONFIRMED: frozenset({S.TERMINATED}),
        S.ACCEPTED: frozenset({S.TERMINATED}),
        S.TERMINATED: frozenset(),
    }

    def __init__(
        self, request: Request, *, reliable: bool, timers: TimerConfig, now: float
    ) -> None:
        if request.method.upper() != "INVITE":
            raise ValueError(f"InviteServerTransaction needs an INVITE, not {request.method}")
        super().__init__(request, S.PROCEEDING, reliable=reliable, timers=timers)
        self._interval = timers.timer_g
        # RFC 3261 17.2.1: 100 (Trying) unless the TU answers within 200 ms.
        self._start(TimerName.TRYING, now, timers.trying_delay)

    def send_response(self, response: Response, now: float) -> None:
        """Send a response from the TU (RFC 3261 17.2.1, RFC 6026 7.1).

        Raises :class:`TransactionStateError` when the state allows no such
        response (anything after a non-2xx final; non-2xx after a 2xx).
        """
        _check_response(self._request, response)
        self._require_live("send a response on")
        status = response.status
        if self._state is S.ACCEPTED:
            if not 200 <= status < 300:
                raise TransactionStateError(
                    f"only 2xx retransmissions may follow a 2xx, not {status} ({self._key})"
                )
            # RFC 6026 7.1: the TU's 2xx retransmissions go out through us.
            self._send_response(response)
            return
        if self._state is not S.PROCEEDING:
            raise TransactionStateError(
                f"cannot send {status}: a final response was already sent ({self._key})"
            )
        self._stop(TimerName.TRYING)
        self._send_response(response)
        if status < 200:
            return
        if status < 300:
            self._move(S.ACCEPTED)
            self._start(TimerName.L, now, self._timers.timer_l)
            return
        self._move(S.COMPLETED)
        if not self._reliable:
            self._start(TimerName.G, now, self._interval)
        self._start(TimerName.H, now, self._timers.timer_h)

    def receive(self, request: Request, now: float) -> None:
        """Feed a retransmitted INVITE or an ACK matched to this transaction."""
        if not isinstance(request, Request):
            raise TypeError(f"a server transaction receives requests, not {request!r}")
        self._require_live("feed a request to")
        if request.method.upper() == "ACK":
            if self._state is S.COMPLETED:
                self._stop(TimerName.G, TimerName.H)
                self._move(S.CONFIRMED)
                self._wait_then_terminate(TimerName.I, now, self._timers.timer_i(self._reliable))
            elif self._state is S.ACCEPTED:
                # RFC 6026 7.1: ACKs in Accepted belong to the TU.
                self._emit(AckReceived(request, self.key))
            # Proceeding (no final yet: a confused peer) and Confirmed: absorbed.
            return
        # A retransmitted INVITE: repeat the last provisional (Proceeding) or
        # final (Completed); absorbed in Accepted and Confirmed.
        if self._state in (S.PROCEEDING, S.COMPLETED):
            self._resend_last()

    def _on_timer(self, name: TimerName, now: float) -> None:
        if name is TimerName.TRYING and self._state is S.PROCEEDING:
            # RFC 3261 17.2.1: built per 8.2.6 but SHOULD NOT add a To tag.
            self._send_response(make_response(self._request, 100))
        elif name is TimerName.G and self._state is S.COMPLETED:
            self._resend_last()
            self._interval = min(2 * self._interval, self._timers.t2)
            self._start(TimerName.G, now, self._interval)
        elif name is TimerName.H and self._state is S.COMPLETED:
            # The ACK never came: tell the TU (RFC 3261 17.2.1).
            self._emit(TimedOut(self._key))
            self._move(S.TERMINATED)
        elif (name is TimerName.I and self._state is S.CONFIRMED) or (
            name is TimerName.L and self._state is S.ACCEPTED
        ):
            self._move(S.TERMINATED)


class NonInviteServerTransaction(_ServerTransaction):
    """RFC 3261 17.2.2 (Figure 8).

    Trying absorbs retransmissions until the TU answers; Proceeding repeats the
    last provisional; Completed repeats the final until Timer J (64*T1, or 0 on
    reliable transports).
    """

    TRANSITIONS: ClassVar[Transitions] = NON_INVITE_TRANSITIONS

    def __init__(
        self, request: Request, *, reliable: bool, timers: TimerConfig, now: float
    ) -> None:
        method = request.method.upper()
        if method in ("INVITE", "ACK"):
            raise ValueError(f"{method} cannot start a non-INVITE server transaction")
        super().__init__(request, S.TRYING, reliable=reliable, timers=timers)

    def send_response(self, response: Response, now: float) -> None:
        """Send a response from the TU (RFC 3261 17.2.2).

        Raises :class:`TransactionStateError` once a final response was sent.
        """
        _check_response(self._request, response)
        self._require_live("send a response on")
        if self._state is S.COMPLETED:
            raise TransactionStateError(
                f"cannot send {response.status}: a final response was already sent ({self._key})"
            )
        self._send_response(response)
        if response.status < 200:
            if self._state is S.TRYING:
                self._move(S.PROCEEDING)
            return
        self._move(S.COMPLETED)
        self._wait_then_terminate(TimerName.J, now, self._timers.timer_j(self._reliable))

    def receive(self, request: Request, now: float) -> None:
        """Feed a retransmission of the request matched to this transaction."""
        if not isinstance(request, Request):
            raise TypeError(f"a server transaction receives requests, not {request!r}")
        self._require_live("feed a request to")
        if self._state in (S.PROCEEDING, S.COMPLETED):
            self._resend_last()
        # Trying: absorbed; the TU has not answered yet.

    def _on_timer(self, name: TimerName, now: float) -> None:
        if name is TimerName.J and self._state is S.COMPLETED:
            self._move(S.TERMINATED)
