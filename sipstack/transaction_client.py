"""Client transactions: INVITE (RFC 3261 17.1.1 + RFC 6026 7.2) and non-INVITE (17.1.2).

Also the two requests a client transaction derives from its INVITE: the ACK for a
non-2xx final response (17.1.1.3, sent by the transaction itself) and a CANCEL
(9.1, its own non-INVITE transaction, built here for the layer and the TU).
"""

from __future__ import annotations

from typing import ClassVar

from sipstack.message import Headers, Request, Response
from sipstack.timers import TimerConfig
from sipstack.transaction import (
    NON_INVITE_TRANSITIONS,
    ClientKey,
    ResponseReceived,
    TimedOut,
    TimerName,
    Transaction,
    TransactionState,
    Transitions,
    client_key,
)

__all__ = [
    "InviteClientTransaction",
    "NonInviteClientTransaction",
    "build_ack",
    "build_cancel",
]

S = TransactionState


def _key_of(request: Request) -> ClientKey:
    key = client_key(request)
    if key is None:
        raise ValueError(
            f"{request.method} has no branch in its top Via; the TU must add one (RFC 3261 8.1.1.7)"
        )
    return key


def _copy_common(request: Request, method: str, to: str) -> Headers:
    """Headers shared by ACK and CANCEL: one Via (the request's top one),
    From, To, Call-ID, CSeq number with the new method, the Route set."""
    headers = Headers()
    # RFC 3261 17.1.1.3 / 9.1: a single Via equal to the top Via of the request.
    headers.add("Via", str(request.top_via))
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("Max-Forwards", "70")
    headers.add("From", str(request.from_))
    headers.add("To", to)
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.seq} {method}")
    return headers


def build_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response to ``invite`` (RFC 3261 17.1.1.3).

    Same Request-URI, Call-ID, From, top Via (hence branch) and Route headers as
    the INVITE; To from the response (it carries the UAS's tag); CSeq number of
    the INVITE with method ACK. (The ACK for a 2xx is a new transaction built by
    the dialog, RFC 3261 13.2.2.4.)
    """
    if not 300 <= response.status <= 699:
        raise ValueError(f"the transaction ACKs only 300-699 responses, not {response.status}")
    headers = _copy_common(invite, "ACK", str(response.to))
    return Request("ACK", invite.uri, headers)


def build_cancel(invite: Request) -> Request:
    """A CANCEL for ``invite`` (RFC 3261 9.1).

    Same Request-URI, Call-ID, To, From, CSeq number (method CANCEL), a single
    Via equal to the INVITE's top Via (same branch, so a proxy can match it) and
    the same Route headers. No Require / Proxy-Require.
    """
    if invite.method.upper() != "INVITE":
        raise ValueError(f"only an INVITE can be cancelled, not {invite.method}")
    headers = _copy_common(invite, "CANCEL", str(invite.to))
    return Request("CANCEL", invite.uri, headers)


class _ClientTransaction(Transaction):
    """What both client machines share: a :class:`ClientKey`."""

    @property
    def key(self) -> ClientKey:
        """The RFC 3261 17.1.3 key: top-Via branch and CSeq method."""
        key = self._key
        assert isinstance(key, ClientKey)
        return key


class InviteClientTransaction(_ClientTransaction):
    """RFC 3261 17.1.1 (Figure 5) with the RFC 6026 Accepted state.

    Calling: the INVITE is retransmitted on Timer A (unreliable transports),
    doubling each time without cap, until a response or Timer B (64*T1).
    A 1xx moves to Proceeding (no more retransmissions; RFC 3261 leaves the
    rest to the TU's Timer C / CANCEL). A 300-699 is ACKed here and moves to
    Completed (Timer D absorbs retransmissions). A 2xx moves to Accepted: the
    TU builds the ACK, and 2xx retransmissions keep reaching it until Timer M.
    """

    TRANSITIONS: ClassVar[Transitions] = {
        S.CALLING: frozenset({S.PROCEEDING, S.COMPLETED, S.ACCEPTED, S.TERMINATED}),
        S.PROCEEDING: frozenset({S.COMPLETED, S.ACCEPTED, S.TERMINATED}),
        S.COMPLETED: frozenset({S.TERMINATED}),
        S.ACCEPTED: frozenset({S.TERMINATED}),
        S.TERMINATED: frozenset(),
    }

    def __init__(
        self, request: Request, *, reliable: bool, timers: TimerConfig, now: float
    ) -> None:
        if request.method.upper() != "INVITE":
            raise ValueError(f"InviteClientTransaction needs an INVITE, not {request.method}")
        super().__init__(request, _key_of(request), S.CALLING, reliable=reliable, timers=timers)
        self._ack: Request | None = None
        self._interval = timers.timer_a
        self._send(request)
        if not reliable:
            # RFC 3261 17.1.1.2: Timer A only on unreliable transports.
            self._start(TimerName.A, now, self._interval)
        self._start(TimerName.B, now, timers.timer_b)

    @property
    def ack(self) -> Request | None:
        """The ACK this transaction sent for a non-2xx final response, if any."""
        return self._ack

    def receive(self, response: Response, now: float) -> None:
        """Feed a response matched to this transaction (RFC 3261 17.1.3)."""
        if not isinstance(response, Response):
            raise TypeError(f"a client transaction receives responses, not {response!r}")
        self._require_live("feed a response to")
        status = response.status
        if self._state in (S.CALLING, S.PROCEEDING):
            self._stop(TimerName.A, TimerName.B)
            if status < 200:
                if self._state is S.CALLING:
                    self._move(S.PROCEEDING)
                self._emit(ResponseReceived(self.key, response))
            elif status < 300:
                # RFC 6026 7.2: 2xx -> Accepted, pass up, Timer M.
                self._move(S.ACCEPTED)
                self._emit(ResponseReceived(self.key, response))
                self._start(TimerName.M, now, self._timers.timer_m)
            else:
                # RFC 3261 17.1.1.2: 300-699 -> ACK, pass up, Completed, Timer D.
                self._ack = build_ack(self._request, response)
                self._send(self._ack)
                self._move(S.COMPLETED)
                self._emit(ResponseReceived(self.key, response))
                self._wait_then_terminate(TimerName.D, now, self._timers.timer_d(self._reliable))
        elif self._state is S.COMPLETED:
            # Retransmitted final response: ACK again, do not bother the TU.
            if status >= 300 and self._ack is not None:
                self._send(self._ack)
        elif self._state is S.ACCEPTED and 200 <= status < 300:
            # RFC 6026 7.2: every 2xx goes up so the TU re-ACKs (and may see
            # 2xx from other forks); anything else is absorbed.
            self._emit(ResponseReceived(self.key, response))

    def _on_timer(self, name: TimerName, now: float) -> None:
        if name is TimerName.A and self._state is S.CALLING:
            # RFC 3261 17.1.1.2: retransmit, double A (no T2 cap for INVITE).
            self._send(self._request)
            self._interval *= 2
            self._start(TimerName.A, now, self._interval)
        elif name is TimerName.B and self._state is S.CALLING:
            self._emit(TimedOut(self._key))
            self._move(S.TERMINATED)
        elif (name is TimerName.D and self._state is S.COMPLETED) or (
            name is TimerName.M and self._state is S.ACCEPTED
        ):
            self._move(S.TERMINATED)


class NonInviteClientTransaction(_ClientTransaction):
    """RFC 3261 17.1.2 (Figure 6).

    Trying: retransmit on Timer E (unreliable only), doubling up to T2; a 1xx
    moves to Proceeding where E fires every T2. Timer F (64*T1) times out in
    either state. Any final response moves to Completed, which absorbs
    retransmissions for Timer K (T4, or 0 on reliable transports).
    """

    TRANSITIONS: ClassVar[Transitions] = NON_INVITE_TRANSITIONS

    def __init__(
        self, request: Request, *, reliable: bool, timers: TimerConfig, now: float
    ) -> None:
        method = request.method.upper()
        if method in ("INVITE", "ACK"):
            raise ValueError(
                f"{method} cannot start a non-INVITE client transaction"
                " (ACK is never a transaction of its own, RFC 3261 17)"
            )
        super().__init__(request, _key_of(request), S.TRYING, reliable=reliable, timers=timers)
        self._interval = timers.timer_e
        self._send(request)
        if not reliable:
            self._start(TimerName.E, now, self._interval)
        self._start(TimerName.F, now, timers.timer_f)

    def receive(self, response: Response, now: float) -> None:
        """Feed a response matched to this transaction (RFC 3261 17.1.3)."""
        if not isinstance(response, Response):
            raise TypeError(f"a client transaction receives responses, not {response!r}")
        self._require_live("feed a response to")
        if self._state not in (S.TRYING, S.PROCEEDING):
            return  # Completed absorbs retransmitted final responses
        if response.status < 200:
            if self._state is S.TRYING:
                self._move(S.PROCEEDING)
            self._emit(ResponseReceived(self.key, response))
            return
        self._stop(TimerName.E, TimerName.F)
        self._move(S.COMPLETED)
        self._emit(ResponseReceived(self.key, response))
        self._wait_then_terminate(TimerName.K, now, self._timers.timer_k(self._reliable))

    def _on_timer(self, name: TimerName, now: float) -> None:
        if name is TimerName.E and self._state in (S.TRYING, S.PROCEEDING):
            self._send(self._request)
            if self._state is S.TRYING:
                # RFC 3261 17.1.2.2: E = min(2E, T2) while Trying ...
                self._interval = min(2 * self._interval, self._timers.t2)
            else:
                # ... and T2 once a provisional response arrived.
                self._interval = self._timers.t2
            self._start(TimerName.E, now, self._interval)
        elif name is TimerName.F and self._state in (S.TRYING, S.PROCEEDING):
            self._emit(TimedOut(self._key))
            self._move(S.TERMINATED)
        elif name is TimerName.K and self._state is S.COMPLETED:
            self._move(S.TERMINATED)
