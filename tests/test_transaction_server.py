"""Server transactions (RFC 3261 17.2 + RFC 6026 7.1) driven with a fake clock."""

from __future__ import annotations

import pytest

from sipstack.message import Request, Response, make_response, parse_message
from sipstack.timers import TimerConfig
from sipstack.transaction import (
    AckReceived,
    RequestReceived,
    ServerKey,
    Terminated,
    TimedOut,
    TransactionEvent,
    TransactionState,
    TransactionStateError,
    TransportFailed,
)
from sipstack.transaction_server import InviteServerTransaction, NonInviteServerTransaction

S = TransactionState
TIMERS = TimerConfig()
Server = InviteServerTransaction | NonInviteServerTransaction


def make_request(
    method: str = "INVITE", branch: str = "z9hG4bKs1", cseq: int = 3, to_tag: str | None = None
) -> Request:
    to = "<sip:door@192.0.2.2>" + (f";tag={to_tag}" if to_tag else "")
    data = (
        f"{method} sip:door@192.0.2.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:flat12@192.0.2.1>;tag=caller\r\n"
        f"To: {to}\r\n"
        "Call-ID: s1@192.0.2.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Timestamp: 54\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def ack_for(invite: Request, response: Response) -> Request:
    """The ACK a client transaction sends for a non-2xx (same branch)."""
    data = (
        "ACK sip:door@192.0.2.2 SIP/2.0\r\n"
        f"Via: {invite.top_via}\r\n"
        "Max-Forwards: 70\r\n"
        f"From: {invite.from_}\r\n"
        f"To: {response.to}\r\n"
        f"Call-ID: {invite.call_id}\r\n"
        f"CSeq: {invite.cseq.seq} ACK\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def events(txn: Server) -> list[TransactionEvent]:
    out = []
    while (ev := txn.next_event()) is not None:
        out.append(ev)
    return out


def state_of(txn: Server) -> TransactionState:
    """The state, without letting mypy narrow it across later transitions."""
    return txn.state


def new_invite_txn(reliable: bool = False, now: float = 0.0) -> InviteServerTransaction:
    inv = make_request()
    txn = InviteServerTransaction(inv, reliable=reliable, timers=TIMERS, now=now)
    assert events(txn) == [RequestReceived(txn.key, inv)]
    return txn


# -- INVITE server ----------------------------------------------------------------------


def test_invite_server_key_and_initial_state() -> None:
    txn = new_invite_txn()
    assert txn.state is S.PROCEEDING
    assert txn.key == ServerKey("z9hG4bKs1", "192.0.2.1", 5060, "INVITE")
    assert txn.messages_to_send() == []


@pytest.mark.parametrize("reliable", [False, True])
def test_100_trying_after_200_ms_without_a_to_tag(reliable: bool) -> None:
    txn = new_invite_txn(reliable=reliable, now=5.0)
    assert txn.get_timer() == 5.2
    txn.handle_timer(5.19)
    assert txn.messages_to_send() == []
    txn.handle_timer(5.2)
    sent = txn.messages_to_send()
    assert len(sent) == 1
    trying = sent[0]
    assert isinstance(trying, Response)
    assert trying.status == 100
    assert trying.to.tag is None  # RFC 3261 17.2.1: SHOULD NOT add a To tag
    assert trying.headers.get("Timestamp") == "54"  # 8.2.6.1 via make_response
    assert trying.call_id == txn.request.call_id
    assert txn.state is S.PROCEEDING
    assert txn.get_timer() is None
    assert events(txn) == []
    # A retransmitted INVITE is answered with that 100 again.
    txn.receive(txn.request, 5.5)
    assert txn.messages_to_send() == [trying]
    assert events(txn) == []


def test_no_100_when_the_tu_answers_first() -> None:
    txn = new_invite_txn()
    ringing = make_response(txn.request, 180, to_tag="uas")
    txn.send_response(ringing, 0.1)
    assert txn.messages_to_send() == [ringing]
    assert txn.get_timer() is None
    txn.handle_timer(0.2)
    assert txn.messages_to_send() == []
    txn.receive(txn.request, 0.3)  # retransmission -> most recent provisional
    assert txn.messages_to_send() == [ringing]
    ringing2 = make_response(txn.request, 183, to_tag="uas")
    txn.send_response(ringing2, 0.4)
    txn.messages_to_send()
    txn.receive(txn.request, 0.5)
    assert txn.messages_to_send() == [ringing2]


def test_retransmitted_invite_before_any_response_is_absorbed() -> None:
    txn = new_invite_txn()
    txn.receive(txn.request, 0.1)
    assert txn.messages_to_send() == [] and events(txn) == []


def test_non_2xx_final_retransmitted_on_timer_g_until_timer_h() -> None:
    txn = new_invite_txn(now=0.0)
    busy = make_response(txn.request, 486, to_tag="uas")
    txn.send_response(busy, 1.0)
    assert txn.state is S.COMPLETED
    assert txn.messages_to_send() == [busy]
    times = []
    while (when := txn.get_timer()) is not None:
        txn.handle_timer(when)
        assert txn.messages_to_send() in ([busy], [])
        times.append(when)
    # RFC 3261 17.2.1: G = T1 doubling to T2 (0.5 1 2 4 4 ...), H = 64*T1.
    assert times == [1.5, 2.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5, 32.5, 33.0]
    assert events(txn) == [TimedOut(txn.key), Terminated(txn.key)]
    assert txn.terminated


def test_non_2xx_final_ack_confirms_then_timer_i() -> None:
    txn = new_invite_txn()
    busy = make_response(txn.request, 603, to_tag="uas")
    txn.send_response(busy, 0.1)
    txn.messages_to_send()
    txn.receive(txn.request, 0.2)  # retransmitted INVITE -> final again
    assert txn.messages_to_send() == [busy]
    ack = ack_for(txn.request, busy)
    txn.receive(ack, 0.3)
    assert txn.state is S.CONFIRMED
    assert events(txn) == []  # an ACK for a non-2xx never reaches the TU
    assert txn.get_timer() == pytest.approx(5.3)  # Timer I = T4; G and H stopped
    txn.receive(ack, 0.4)  # absorbed
    txn.receive(txn.request, 0.5)  # absorbed too
    assert txn.messages_to_send() == [] and events(txn) == []
    txn.handle_timer(5.3)
    assert txn.terminated
    assert events(txn) == [Terminated(txn.key)]


def test_non_2xx_final_reliable_no_g_and_i_zero() -> None:
    txn = new_invite_txn(reliable=True)
    busy = make_response(txn.request, 480, to_tag="uas")
    txn.send_response(busy, 0.0)
    assert txn.messages_to_send() == [busy]
    assert txn.get_timer() == 32.0  # only Timer H
    txn.receive(ack_for(txn.request, busy), 1.0)
    assert txn.terminated
    assert events(txn) == [Terminated(txn.key)]


def test_2xx_moves_to_accepted_tu_retransmits_acks_go_up_until_l() -> None:
    txn = new_invite_txn()
    ok = make_response(txn.request, 200, to_tag="uas")
    txn.send_response(ok, 1.0)
    assert txn.state is S.ACCEPTED
    assert txn.messages_to_send() == [ok]
    assert txn.get_timer() == 33.0  # RFC 6026 Timer L = 64*T1
    txn.handle_timer(2.0)
    assert txn.messages_to_send() == []  # never retransmits the 2xx itself
    txn.send_response(ok, 1.5)  # the TU's 13.3.1.4 retransmission passes through
    assert txn.messages_to_send() == [ok]
    txn.receive(txn.request, 1.6)  # INVITE retransmission: absorbed
    assert txn.messages_to_send() == [] and events(txn) == []
    ack = ack_for(txn.request, ok)
    txn.receive(ack, 1.7)
    assert events(txn) == [AckReceived(ack, txn.key)]
    assert txn.state is S.ACCEPTED
    with pytest.raises(TransactionStateError):
        txn.send_response(make_response(txn.request, 486, to_tag="uas"), 1.8)
    txn.handle_timer(33.0)
    assert txn.terminated
    assert events(txn) == [Terminated(txn.key)]


def test_invite_server_misuse_raises() -> None:
    txn = new_invite_txn()
    busy = make_response(txn.request, 486, to_tag="uas")
    with pytest.raises(ValueError):
        txn.send_response(make_response(make_request("OPTIONS"), 200), 0.0)
    txn.send_response(busy, 0.0)
    with pytest.raises(TransactionStateError):
        txn.send_response(make_response(txn.request, 180, to_tag="uas"), 0.1)
    with pytest.raises(TransactionStateError):
        txn.send_response(make_response(txn.request, 200, to_tag="uas"), 0.1)
    with pytest.raises(TypeError):
        txn.receive(busy, 0.2)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        InviteServerTransaction(make_request("BYE"), reliable=False, timers=TIMERS, now=0)


@pytest.mark.parametrize("status", [None, 180, 200, 500])
def test_invite_server_transport_error(status: int | None) -> None:
    txn = new_invite_txn()
    if status is not None:
        txn.send_response(make_response(txn.request, status, to_tag="uas"), 0.0)
    txn.transport_error(0.1)
    assert events(txn) == [TransportFailed(txn.key), Terminated(txn.key)]
    assert txn.get_timer() is None
    with pytest.raises(TransactionStateError):
        txn.send_response(make_response(txn.request, 200, to_tag="uas"), 0.2)
    with pytest.raises(TransactionStateError):
        txn.receive(txn.request, 0.2)


def test_invite_server_transition_table() -> None:
    table = InviteServerTransaction.TRANSITIONS
    assert table[S.COMPLETED] == frozenset({S.CONFIRMED, S.TERMINATED})
    assert S.PROCEEDING not in table[S.ACCEPTED]
    assert S.TRYING not in table  # INVITE servers start in Proceeding


# -- non-INVITE server ---------------------------------------------------------------------


def test_non_invite_trying_absorbs_then_proceeding_and_completed_repeat() -> None:
    req = make_request("REGISTER")
    txn = NonInviteServerTransaction(req, reliable=False, timers=TIMERS, now=0.0)
    assert events(txn) == [RequestReceived(txn.key, req)]
    assert state_of(txn) is S.TRYING
    assert txn.get_timer() is None  # no 100 Trying of its own (17.2.2)
    txn.receive(req, 0.1)
    assert txn.messages_to_send() == [] and events(txn) == []
    trying = make_response(req, 100)
    txn.send_response(trying, 0.2)
    assert state_of(txn) is S.PROCEEDING
    assert txn.messages_to_send() == [trying]
    txn.receive(req, 0.3)
    assert txn.messages_to_send() == [trying]
    ok = make_response(req, 200, to_tag="uas")
    txn.send_response(ok, 1.0)
    assert txn.state is S.COMPLETED
    assert txn.messages_to_send() == [ok]
    assert txn.get_timer() == 33.0  # Timer J = 64*T1 on UDP
    txn.receive(req, 20.0)
    assert txn.messages_to_send() == [ok]
    assert events(txn) == []
    with pytest.raises(TransactionStateError):
        txn.send_response(ok, 21.0)
    txn.handle_timer(33.0)
    assert txn.terminated
    assert events(txn) == [Terminated(txn.key)]


def test_non_invite_final_from_trying_reliable_terminates_at_once() -> None:
    req = make_request("OPTIONS")
    txn = NonInviteServerTransaction(req, reliable=True, timers=TIMERS, now=0.0)
    events(txn)
    ok = make_response(req, 200, to_tag="uas")
    txn.send_response(ok, 0.0)
    assert txn.messages_to_send() == [ok]
    assert txn.state is S.TERMINATED  # Timer J = 0 on reliable transports
    assert events(txn) == [Terminated(txn.key)]


def test_non_invite_server_transport_error_and_misuse() -> None:
    req = make_request("BYE", to_tag="uas")
    txn = NonInviteServerTransaction(req, reliable=False, timers=TIMERS, now=0.0)
    events(txn)
    with pytest.raises(ValueError):
        txn.send_response(make_response(make_request("OPTIONS"), 200), 0.0)
    txn.send_response(make_response(req, 200), 0.0)
    txn.transport_error(0.0)
    assert events(txn) == [TransportFailed(txn.key), Terminated(txn.key)]
    for method in ("INVITE", "ACK"):
        with pytest.raises(ValueError):
            NonInviteServerTransaction(make_request(method), reliable=False, timers=TIMERS, now=0)
