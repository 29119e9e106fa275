"""Client transactions (RFC 3261 17.1 + RFC 6026 7.2) driven with a fake clock."""

from __future__ import annotations

import pytest

from sipstack.message import Request, Response, make_response, parse_message
from sipstack.timers import TimerConfig
from sipstack.transaction import (
    ClientKey,
    ResponseReceived,
    Terminated,
    TimedOut,
    TransactionEvent,
    TransactionState,
    TransactionStateError,
    TransportFailed,
)
from sipstack.transaction_client import (
    InviteClientTransaction,
    NonInviteClientTransaction,
    build_ack,
    build_cancel,
)

S = TransactionState
TIMERS = TimerConfig()


def make_request(method: str = "INVITE", branch: str = "z9hG4bKc1", cseq: int = 7) -> Request:
    data = (
        f"{method} sip:door@192.0.2.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch};rport\r\n"
        "Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKlower\r\n"
        "Max-Forwards: 70\r\n"
        "Route: <sip:p1.example.com;lr>\r\n"
        "Route: <sip:p2.example.com;lr>\r\n"
        'From: "Door" <sip:door@192.0.2.1>;tag=fromtag\r\n'
        "To: <sip:flat12@192.0.2.2>\r\n"
        "Call-ID: c1@192.0.2.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Require: foo\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def respond(request: Request, status: int, tag: str | None = "totag") -> Response:
    return make_response(request, status, to_tag=tag if status > 100 else None)


def events(txn: InviteClientTransaction | NonInviteClientTransaction) -> list[TransactionEvent]:
    out = []
    while (ev := txn.next_event()) is not None:
        out.append(ev)
    return out


def run_timers(
    txn: InviteClientTransaction | NonInviteClientTransaction, until: float
) -> list[tuple[float, int]]:
    """Jump the fake clock from deadline to deadline; return (time, messages sent)."""
    log = []
    while (when := txn.get_timer()) is not None and when <= until:
        txn.handle_timer(when)
        log.append((when, len(txn.messages_to_send())))
    return log


# -- INVITE client -------------------------------------------------------------------


def test_invite_udp_retransmits_on_timer_a_then_times_out_on_b() -> None:
    inv = make_request()
    txn = InviteClientTransaction(inv, reliable=False, timers=TIMERS, now=0.0)
    assert txn.state is S.CALLING
    assert txn.key == ClientKey("z9hG4bKc1", "INVITE")
    assert txn.messages_to_send() == [inv]
    assert txn.get_timer() == 0.5
    txn.handle_timer(0.49)  # early wake-ups do nothing
    assert txn.messages_to_send() == []
    log = run_timers(txn, until=100.0)
    # RFC 3261 17.1.1.2: A doubles (0.5, 1, 2, 4, 8, 16), no T2 cap; B = 64*T1.
    assert log == [(0.5, 1), (1.5, 1), (3.5, 1), (7.5, 1), (15.5, 1), (31.5, 1), (32.0, 0)]
    assert events(txn) == [TimedOut(txn.key), Terminated(txn.key)]
    assert txn.terminated
    assert txn.get_timer() is None


def test_invite_retransmission_is_the_same_request() -> None:
    inv = make_request()
    txn = InviteClientTransaction(inv, reliable=False, timers=TIMERS, now=10.0)
    txn.messages_to_send()
    txn.handle_timer(10.5)
    assert txn.messages_to_send() == [inv]
    assert txn.get_timer() == 11.5


def test_invite_reliable_sends_once_and_times_out_at_b() -> None:
    txn = InviteClientTransaction(make_request(), reliable=True, timers=TIMERS, now=0.0)
    assert len(txn.messages_to_send()) == 1
    assert txn.get_timer() == 32.0
    assert run_timers(txn, until=100.0) == [(32.0, 0)]
    assert events(txn) == [TimedOut(txn.key), Terminated(txn.key)]


def test_invite_timer_b_follows_t1() -> None:
    timers = TimerConfig(t1=0.25)
    txn = InviteClientTransaction(make_request(), reliable=True, timers=timers, now=0.0)
    assert txn.get_timer() == 16.0


def test_invite_provisional_stops_retransmissions_and_timer_b() -> None:
    inv = make_request()
    txn = InviteClientTransaction(inv, reliable=False, timers=TIMERS, now=0.0)
    txn.messages_to_send()
    ringing = respond(inv, 180)
    txn.receive(ringing, 0.7)
    assert txn.state is S.PROCEEDING
    assert events(txn) == [ResponseReceived(txn.key, ringing)]
    assert txn.get_timer() is None  # Proceeding: the TU's Timer C governs
    again = respond(inv, 183)
    txn.receive(again, 1.0)
    assert txn.state is S.PROCEEDING
    assert events(txn) == [ResponseReceived(txn.key, again)]
    assert txn.messages_to_send() == []


@pytest.mark.parametrize("first_provisional", [False, True])
def test_invite_non_2xx_final_is_acked_and_absorbed_for_timer_d(first_provisional: bool) -> None:
    inv = make_request()
    txn = InviteClientTransaction(inv, reliable=False, timers=TIMERS, now=0.0)
    txn.messages_to_send()
    if first_provisional:
        txn.receive(respond(inv, 100), 0.1)
        assert txn.state is S.PROCEEDING
        events(txn)
    busy = respond(inv, 486)
    txn.receive(busy, 1.0)
    assert txn.state is S.COMPLETED
    sent = txn.messages_to_send()
    assert len(sent) == 1 and sent[0] is txn.ack
    assert events(txn) == [ResponseReceived(txn.key, busy)]
    # RFC 3261 17.1.1.2: Timer D is 32 s on UDP.
    assert txn.get_timer() == 33.0
    # A retransmitted final response is re-ACKed, not passed up.
    txn.receive(busy, 2.0)
    assert txn.messages_to_send() == [txn.ack]
    assert events(txn) == []
    # Provisional and 2xx responses in Completed are absorbed.
    txn.receive(respond(inv, 180), 2.5)
    assert txn.messages_to_send() == [] and events(txn) == []
    txn.handle_timer(32.99)
    assert txn.state is S.COMPLETED
    txn.handle_timer(33.0)
    assert txn.terminated
    assert events(txn) == [Terminated(txn.key)]


def test_ack_for_non_2xx_follows_17_1_1_3() -> None:
    inv = make_request()
    busy = respond(inv, 486, tag="uas-tag")
    ack = build_ack(inv, busy)
    assert ack.method == "ACK"
    assert ack.uri == inv.uri
    assert [str(v) for v in ack.vias] == [str(inv.top_via)]
    assert ack.top_via.branch == "z9hG4bKc1"
    assert ack.call_id == inv.call_id
    assert str(ack.from_) == str(inv.from_)
    assert ack.to.tag == "uas-tag"
    assert (ack.cseq.seq, ack.cseq.method) == (7, "ACK")
    assert [str(r) for r in ack.routes] == [str(r) for r in inv.routes]
    assert len(ack.routes) == 2
    assert ack.max_forwards == 70
    assert ack.body == b""
    # Round-trips through the wire format.
    again = parse_message(ack.to_bytes())
    assert isinstance(again, Request) and again.cseq.method == "ACK"


def test_build_ack_refuses_2xx() -> None:
    inv = make_request()
    with pytest.raises(ValueError):
        build_ack(inv, respond(inv, 200))


def test_build_cancel_follows_9_1() -> None:
    inv = make_request()
    cancel = build_cancel(inv)
    assert cancel.method == "CANCEL"
    assert cancel.uri == inv.uri
    assert [str(v) for v in cancel.vias] == [str(inv.top_via)]
    assert (cancel.cseq.seq, cancel.cseq.method) == (7, "CANCEL")
    assert cancel.call_id == inv.call_id
    assert str(cancel.to) == str(inv.to)
    assert str(cancel.from_) == str(inv.from_)
    assert [str(r) for r in cancel.routes] == [str(r) for r in inv.routes]
    assert "Require" not in cancel.headers  # RFC 3261 9.1
    with pytest.raises(ValueError):
        build_cancel(make_request("OPTIONS"))


def test_invite_reliable_non_2xx_terminates_at_once() -> None:
    inv = make_request()
    txn = InviteClientTransaction(inv, reliable=True, timers=TIMERS, now=0.0)
    txn.messages_to_send()
    txn.receive(respond(inv, 603), 1.0)
    assert txn.state is S.TERMINATED  # Timer D = 0 on reliable transports
    assert len(txn.messages_to_send()) == 1  # the ACK still goes out
    evs = events(txn)
    assert [type(e) for e in evs] == [ResponseReceived, Terminated]


def test_invite_2xx_goes_to_accepted_and_passes_retransmissions_up_until_m() -> None:
    inv = make_request()
    txn = InviteClientTransaction(inv, reliable=False, timers=TIMERS, now=0.0)
    txn.messages_to_send()
    ok = respond(inv, 200)
    txn.receive(ok, 2.0)
    assert txn.state is S.ACCEPTED
    assert txn.messages_to_send() == []  # the TU, not us, ACKs a 2xx
    assert events(txn) == [ResponseReceived(txn.key, ok)]
    assert txn.get_timer() == 34.0  # RFC 6026 Timer M = 64*T1
    txn.receive(ok, 2.5)
    assert events(txn) == [ResponseReceived(txn.key, ok)]
    other_fork = respond(inv, 200, tag="fork2")
    txn.receive(other_fork, 3.0)
    assert events(txn) == [ResponseReceived(txn.key, other_fork)]
    txn.receive(respond(inv, 486), 3.5)  # non-2xx in Accepted: absorbed
    assert events(txn) == [] and txn.messages_to_send() == []
    txn.handle_timer(34.0)
    assert txn.terminated
    assert events(txn) == [Terminated(txn.key)]


def test_invite_2xx_after_provisional() -> None:
    inv = make_request()
    txn = InviteClientTransaction(inv, reliable=True, timers=TIMERS, now=0.0)
    txn.receive(respond(inv, 180), 0.1)
    txn.receive(respond(inv, 200), 0.2)
    assert txn.state is S.ACCEPTED
    assert txn.get_timer() == pytest.approx(32.2)


@pytest.mark.parametrize("reliable", [False, True])
def test_invite_transport_error_in_calling(reliable: bool) -> None:
    txn = InviteClientTransaction(make_request(), reliable=reliable, timers=TIMERS, now=0.0)
    txn.transport_error(0.0)
    assert txn.terminated
    assert events(txn) == [TransportFailed(txn.key), Terminated(txn.key)]
    assert txn.get_timer() is None


def test_invite_transport_error_when_acking() -> None:
    inv = make_request()
    txn = InviteClientTransaction(inv, reliable=False, timers=TIMERS, now=0.0)
    txn.receive(respond(inv, 404), 0.2)
    events(txn)
    txn.transport_error(0.2)
    assert events(txn) == [TransportFailed(txn.key), Terminated(txn.key)]


def test_invite_client_misuse_raises() -> None:
    with pytest.raises(ValueError):
        InviteClientTransaction(make_request("OPTIONS"), reliable=False, timers=TIMERS, now=0)
    with pytest.raises(ValueError):
        InviteClientTransaction(make_request(branch=""), reliable=False, timers=TIMERS, now=0)
    inv = make_request()
    txn = InviteClientTransaction(inv, reliable=False, timers=TIMERS, now=0.0)
    with pytest.raises(TypeError):
        txn.receive(inv, 0.1)  # type: ignore[arg-type]
    txn.transport_error(0.1)
    with pytest.raises(TransactionStateError):
        txn.receive(respond(inv, 200), 0.2)
    with pytest.raises(TransactionStateError):
        txn.transport_error(0.2)


def test_transition_table_rejects_illegal_moves() -> None:
    """The one place states change refuses anything not in the table."""
    table = InviteClientTransaction.TRANSITIONS
    assert S.CALLING not in table[S.PROCEEDING]
    assert table[S.TERMINATED] == frozenset()
    assert S.PROCEEDING not in NonInviteClientTransaction.TRANSITIONS[S.COMPLETED]
    inv = make_request()
    txn = InviteClientTransaction(inv, reliable=False, timers=TIMERS, now=0.0)
    with pytest.raises(TransactionStateError):
        txn._move(S.CONFIRMED)  # not a client INVITE state at all


# -- non-INVITE client -----------------------------------------------------------------


def test_non_invite_udp_timer_e_doubles_to_t2_then_f() -> None:
    req = make_request("OPTIONS")
    txn = NonInviteClientTransaction(req, reliable=False, timers=TIMERS, now=0.0)
    assert txn.state is S.TRYING
    assert txn.messages_to_send() == [req]
    log = run_timers(txn, until=100.0)
    # RFC 3261 17.1.2.2: E = 0.5, 1, 2, 4, 4, ... (capped at T2); F = 32 s.
    expected = [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert log == [(t, 1) for t in expected] + [(32.0, 0)]
    assert events(txn) == [TimedOut(txn.key), Terminated(txn.key)]


def test_non_invite_proceeding_retransmits_every_t2() -> None:
    req = make_request("REGISTER")
    txn = NonInviteClientTransaction(req, reliable=False, timers=TIMERS, now=0.0)
    txn.messages_to_send()
    txn.handle_timer(0.5)  # E -> 1.5
    assert len(txn.messages_to_send()) == 1
    trying = respond(req, 100)
    txn.receive(trying, 0.6)
    assert txn.state is S.PROCEEDING
    assert events(txn) == [ResponseReceived(txn.key, trying)]
    assert txn.get_timer() == 1.5  # the running Timer E is kept ...
    log = run_timers(txn, until=12.0)
    # ... and once it fires in Proceeding it is reset to T2 each time.
    assert log == [(1.5, 1), (5.5, 1), (9.5, 1)]
    ok = respond(req, 200)
    txn.receive(ok, 12.0)
    assert [txn.state] == [S.COMPLETED]
    assert events(txn) == [ResponseReceived(txn.key, ok)]
    assert txn.get_timer() == 17.0  # Timer K; E and F stopped


def test_non_invite_final_completes_and_absorbs_for_timer_k() -> None:
    req = make_request("OPTIONS")
    txn = NonInviteClientTransaction(req, reliable=False, timers=TIMERS, now=0.0)
    txn.messages_to_send()
    ok = respond(req, 200)
    txn.receive(ok, 1.0)
    assert txn.state is S.COMPLETED
    assert events(txn) == [ResponseReceived(txn.key, ok)]
    assert txn.get_timer() == 6.0  # Timer K = T4
    txn.receive(ok, 2.0)
    assert events(txn) == [] and txn.messages_to_send() == []
    txn.handle_timer(6.0)
    assert txn.terminated
    assert events(txn) == [Terminated(txn.key)]


def test_non_invite_reliable_no_retransmissions_and_k_is_zero() -> None:
    req = make_request("BYE")
    txn = NonInviteClientTransaction(req, reliable=True, timers=TIMERS, now=0.0)
    assert txn.messages_to_send() == [req]
    assert txn.get_timer() == 32.0
    failure = respond(req, 481)
    txn.receive(failure, 0.3)
    assert txn.terminated
    assert events(txn) == [ResponseReceived(txn.key, failure), Terminated(txn.key)]


def test_non_invite_timeout_in_proceeding() -> None:
    req = make_request("OPTIONS")
    txn = NonInviteClientTransaction(req, reliable=True, timers=TIMERS, now=0.0)
    txn.receive(respond(req, 100), 0.1)
    events(txn)
    txn.handle_timer(32.0)
    assert events(txn) == [TimedOut(txn.key), Terminated(txn.key)]


def test_non_invite_transport_error() -> None:
    req = make_request("MESSAGE")
    txn = NonInviteClientTransaction(req, reliable=False, timers=TIMERS, now=0.0)
    txn.transport_error(0.5)
    assert events(txn) == [TransportFailed(txn.key), Terminated(txn.key)]
    with pytest.raises(TransactionStateError):
        txn.receive(respond(req, 200), 0.6)


@pytest.mark.parametrize("method", ["INVITE", "ACK"])
def test_non_invite_client_refuses_invite_and_ack(method: str) -> None:
    with pytest.raises(ValueError):
        NonInviteClientTransaction(make_request(method), reliable=False, timers=TIMERS, now=0)


def test_timer_config_derivations_and_validation() -> None:
    t = TimerConfig()
    assert (t.timer_a, t.timer_b, t.timer_e, t.timer_f, t.timer_g, t.timer_h) == (
        0.5,
        32.0,
        0.5,
        32.0,
        0.5,
        32.0,
    )
    assert (t.timer_l, t.timer_m) == (32.0, 32.0)
    assert (t.timer_d(False), t.timer_d(True)) == (32.0, 0.0)
    assert (t.timer_i(False), t.timer_i(True)) == (5.0, 0.0)
    assert (t.timer_k(False), t.timer_k(True)) == (5.0, 0.0)
    assert (t.timer_j(False), t.timer_j(True)) == (32.0, 0.0)
    assert t.trying_delay == 0.2
    with pytest.raises(ValueError):
        TimerConfig(t1=0)
    with pytest.raises(ValueError):
        TimerConfig(t1=5.0, t2=4.0)
