"""The transaction layer: a UAC layer wired to a UAS layer over a fake network.

The network serialises every message to bytes and parses it back, and can
drop or reorder what is in flight; the clock only moves when a test jumps it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sipstack.message import Request, Response, make_response, parse_message
from sipstack.transaction import (
    AckReceived,
    ClientKey,
    LegacyServerKey,
    RequestReceived,
    ResponseReceived,
    ServerKey,
    StrayResponse,
    Terminated,
    TimedOut,
    TransactionEvent,
    TransactionState,
    TransactionStateError,
    TransportFailed,
)
from sipstack.transaction_layer import TransactionLayer

S = TransactionState
Message = Request | Response


def make_request(
    method: str = "INVITE",
    *,
    branch: str | None = "z9hG4bKl1",
    cseq: int = 1,
    to_tag: str | None = None,
    sent_by: str = "192.0.2.1:5060",
    uri: str = "sip:door@192.0.2.2",
) -> Request:
    via_params = f";branch={branch}" if branch is not None else ""
    to = "<sip:door@192.0.2.2>" + (f";tag={to_tag}" if to_tag else "")
    data = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by}{via_params}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:flat12@192.0.2.1>;tag=caller\r\n"
        f"To: {to}\r\n"
        "Call-ID: l1@192.0.2.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def ack_for_2xx(invite: Request, ok: Response, branch: str = "z9hG4bKack2xx") -> Request:
    """What a dialog sends for a 2xx: a new branch (RFC 3261 13.2.2.4)."""
    ack = make_request("ACK", branch=branch, cseq=invite.cseq.seq, to_tag=ok.to.tag)
    return ack


class Network:
    """Two transaction layers, a fake clock and the messages in flight."""

    def __init__(self, reliable: bool = False) -> None:
        self.reliable = reliable
        self.now = 0.0
        self.uac = TransactionLayer()
        self.uas = TransactionLayer()
        self.sent: dict[str, list[Message]] = {"uac": [], "uas": []}

    def _side(self, name: str) -> tuple[TransactionLayer, TransactionLayer]:
        return (self.uac, self.uas) if name == "uac" else (self.uas, self.uac)

    def transfer(
        self,
        src: str,
        *,
        drop: Callable[[Message], bool] = lambda m: False,
        reorder: bool = False,
    ) -> list[Message]:
        """Deliver what ``src`` sent (over bytes), minus dropped, maybe reversed."""
        sender, receiver = self._side(src)
        flight = [m for _, m in sender.messages_to_send()]
        self.sent[src].extend(flight)
        if reorder:
            flight.reverse()
        delivered = []
        for msg in flight:
            if drop(msg):
                continue
            wire = parse_message(msg.to_bytes())
            receiver.receive(wire, self.reliable, self.now)
            delivered.append(wire)
        return delivered

    def jump(self, to: float) -> None:
        """Move the clock deadline by deadline up to ``to``, firing timers."""
        while True:
            deadlines = [t for t in (self.uac.get_timer(), self.uas.get_timer()) if t is not None]
            if not deadlines or min(deadlines) > to:
                break
            self.now = min(deadlines)
            self.uac.handle_timer(self.now)
            self.uas.handle_timer(self.now)
        self.now = to


def drain(layer: TransactionLayer) -> list[TransactionEvent]:
    out = []
    while (ev := layer.next_event()) is not None:
        out.append(ev)
    return out


def status_of(msg: Message) -> int | str:
    return msg.status if isinstance(msg, Response) else msg.method


def only_request(events: list[TransactionEvent]) -> RequestReceived:
    assert len(events) == 1 and isinstance(events[0], RequestReceived), events
    return events[0]


# -- whole exchanges -------------------------------------------------------------------


def test_invite_call_over_udp_with_100_180_200_and_ack() -> None:
    net = Network()
    invite = make_request()
    key = net.uac.send_request(invite, False, 0.0)
    assert key == ClientKey("z9hG4bKl1", "INVITE")
    assert net.uac.messages_to_send() == [(key, invite)]
    net.jump(0.5)  # lost; Timer A retransmits it
    assert [status_of(m) for m in net.transfer("uac")] == ["INVITE"]
    received = only_request(drain(net.uas))
    skey = received.key
    assert isinstance(skey, ServerKey) and skey.method == "INVITE"
    assert net.uas.state(skey) is S.PROCEEDING
    # 100 Trying 200 ms later, from the transaction itself.
    assert net.uas.get_timer() == pytest.approx(0.7)
    net.jump(0.7)
    assert [status_of(m) for m in net.transfer("uas")] == [100]
    assert net.uac.state(key) is S.PROCEEDING
    ringing = make_response(received.request, 180, to_tag="uas")
    net.uas.send_response(skey, ringing, 1.0)
    ok = make_response(received.request, 200, to_tag="uas")
    net.uas.send_response(skey, ok, 2.0)
    assert net.uas.state(skey) is S.ACCEPTED
    net.transfer("uas")
    evs = [e for e in drain(net.uac) if isinstance(e, ResponseReceived) and e.key == key]
    assert [e.response.status for e in evs] == [100, 180, 200]
    assert net.uac.state(key) is S.ACCEPTED
    # The TU's ACK for the 2xx has a new branch: up to the UAS TU, no transaction.
    ack = ack_for_2xx(invite, evs[-1].response)
    net.uas.receive(ack, False, 2.1)
    assert [type(e) for e in drain(net.uas)] == [AckReceived]


def test_2xx_retransmissions_reach_the_tu_until_timer_m_then_are_stray() -> None:
    net = Network()
    invite = make_request()
    key = net.uac.send_request(invite, False, 0.0)
    net.transfer("uac")
    skey = only_request(drain(net.uas)).key
    ok = make_response(invite, 200, to_tag="uas")
    net.uas.send_response(skey, ok, 0.1)
    net.transfer("uas")
    assert [type(e) for e in drain(net.uac)] == [ResponseReceived]
    # The UAS TU retransmits its 2xx (13.3.1.4): passed up again (RFC 6026).
    net.now = 0.6
    net.uas.send_response(skey, ok, net.now)
    net.transfer("uas")
    evs = drain(net.uac)
    assert len(evs) == 1 and isinstance(evs[0], ResponseReceived) and evs[0].key == key
    # An ACK routed back on the INVITE's branch hits the Accepted server transaction.
    same_branch_ack = ack_for_2xx(invite, ok, branch="z9hG4bKl1")
    net.uas.receive(same_branch_ack, False, net.now)
    assert drain(net.uas) == [AckReceived(same_branch_ack, skey)]
    # Timer M (UAC) and Timer L (UAS) both run 32 s from the 2xx.
    net.jump(32.1)
    assert net.uac.state(key) is None and len(net.uac) == 0
    assert net.uas.state(skey) is None and len(net.uas) == 0
    assert drain(net.uac) == [Terminated(key)]
    assert drain(net.uas) == [Terminated(skey)]
    assert net.uac.get_timer() is None and net.uas.get_timer() is None
    net.uac.receive(parse_message(ok.to_bytes()), False, 33.0)
    evs = drain(net.uac)
    assert len(evs) == 1 and isinstance(evs[0], StrayResponse)
    assert evs[0].response.status == 200


def test_lost_invites_are_retransmitted_and_the_uas_sees_one_request() -> None:
    net = Network()
    net.uac.send_request(make_request(), False, 0.0)
    assert net.transfer("uac", drop=lambda m: True) == []
    net.jump(0.5)
    assert net.transfer("uac", drop=lambda m: True) == []
    net.jump(1.5)
    assert len(net.transfer("uac")) == 1
    assert len(drain(net.uas)) == 1
    net.jump(3.5)  # the UAS already sent 100 at 1.7, but we drop it
    net.transfer("uas", drop=lambda m: True)
    assert len(net.transfer("uac")) == 1  # retransmission at 3.5 ...
    assert drain(net.uas) == []  # ... absorbed,
    assert [status_of(m) for m in net.transfer("uas")] == [100]  # and answered with the 100
    assert [status_of(m) for m in net.sent["uac"]] == ["INVITE"] * 4


def test_lost_final_response_is_retransmitted_on_g_and_acked() -> None:
    net = Network()
    invite = make_request()
    key = net.uac.send_request(invite, False, 0.0)
    net.transfer("uac")
    skey = only_request(drain(net.uas)).key
    net.uas.send_response(skey, make_response(invite, 486, to_tag="uas"), 0.1)
    net.transfer("uas", drop=lambda m: True)  # the 486 is lost
    net.jump(0.5)  # UAC retransmits the INVITE; UAS answers with the 486 again
    net.transfer("uac")
    assert [status_of(m) for m in net.transfer("uas")] == [486]
    assert net.uac.state(key) is S.COMPLETED
    assert [status_of(m) for m in net.transfer("uac")] == ["ACK"]
    assert net.uas.state(skey) is S.CONFIRMED
    net.jump(0.6)  # Timer G (at 0.6) was stopped by the ACK
    assert net.transfer("uas") == []
    evs = drain(net.uac)
    assert [e.response.status for e in evs if isinstance(e, ResponseReceived)] == [486]
    net.jump(5.5)  # Timer I = T4 from the ACK at 0.5
    assert net.uas.state(skey) is None
    net.jump(32.5)  # Timer D = 32 s from the 486 at 0.5
    assert net.uac.state(key) is None


def test_retransmitted_final_is_reacked_without_bothering_the_tu() -> None:
    net = Network()
    invite = make_request()
    key = net.uac.send_request(invite, False, 0.0)
    net.transfer("uac")
    skey = only_request(drain(net.uas)).key
    net.uas.send_response(skey, make_response(invite, 404, to_tag="uas"), 0.1)
    net.transfer("uas")
    net.transfer("uac", drop=lambda m: True)  # the ACK is lost
    net.jump(0.6)  # Timer G
    assert [status_of(m) for m in net.transfer("uas")] == [404]
    assert [status_of(m) for m in net.transfer("uac")] == ["ACK"]
    statuses = [e.response.status for e in drain(net.uac) if isinstance(e, ResponseReceived)]
    assert statuses == [404]
    assert net.uac.state(key) is S.COMPLETED
    assert net.uas.state(skey) is S.CONFIRMED


def test_reordered_provisional_after_2xx_is_absorbed() -> None:
    net = Network()
    invite = make_request()
    key = net.uac.send_request(invite, False, 0.0)
    net.transfer("uac")
    skey = only_request(drain(net.uas)).key
    net.uas.send_response(skey, make_response(invite, 180, to_tag="uas"), 0.1)
    net.uas.send_response(skey, make_response(invite, 200, to_tag="uas"), 0.1)
    net.transfer("uas", reorder=True)
    evs = drain(net.uac)
    assert [e.response.status for e in evs if isinstance(e, ResponseReceived)] == [200]
    assert net.uac.state(key) is S.ACCEPTED


def test_non_invite_over_udp_absorbs_retransmissions_both_ways() -> None:
    net = Network()
    options = make_request("OPTIONS", branch="z9hG4bKopt")
    key = net.uac.send_request(options, False, 0.0)
    net.transfer("uac")
    skey = only_request(drain(net.uas)).key
    net.jump(0.5)
    net.transfer("uac")  # retransmission while Trying: absorbed, no answer yet
    assert drain(net.uas) == [] and net.transfer("uas") == []
    net.uas.send_response(skey, make_response(options, 200, to_tag="uas"), 0.6)
    net.transfer("uas", drop=lambda m: True)  # the 200 is lost
    net.jump(1.5)
    net.transfer("uac")  # retransmission reaches Completed: the 200 again
    assert [status_of(m) for m in net.transfer("uas")] == [200]
    evs = drain(net.uac)
    assert [type(e) for e in evs] == [ResponseReceived]
    assert net.uac.state(key) is S.COMPLETED
    net.jump(6.5)  # Timer K = T4
    assert net.uac.state(key) is None
    assert drain(net.uac) == [Terminated(key)]
    net.jump(32.6)  # Timer J = 64*T1 from the 200 at 0.6
    assert net.uas.state(skey) is None


def test_reliable_transport_sends_everything_once() -> None:
    net = Network(reliable=True)
    invite = make_request()
    key = net.uac.send_request(invite, True, 0.0)
    net.transfer("uac")
    skey = only_request(drain(net.uas)).key
    net.uas.send_response(skey, make_response(invite, 500, to_tag="uas"), 0.1)
    net.transfer("uas")
    assert net.uac.state(key) is None  # Timer D = 0
    net.transfer("uac")  # the ACK
    assert net.uas.state(skey) is None  # Timer I = 0
    assert [status_of(m) for m in net.sent["uac"]] == ["INVITE", "ACK"]
    assert [status_of(m) for m in net.sent["uas"]] == [500]
    net.jump(100.0)
    assert net.transfer("uac") == [] and net.transfer("uas") == []


def test_timeouts_reach_the_tu_and_transactions_are_removed() -> None:
    net = Network()
    key = net.uac.send_request(make_request(), False, 0.0)
    okey = net.uac.send_request(make_request("OPTIONS", branch="z9hG4bKo"), False, 0.25)
    assert net.uac.get_timer() == 0.5
    net.uac.messages_to_send()
    net.jump(40.0)
    assert drain(net.uac) == [TimedOut(key), Terminated(key), TimedOut(okey), Terminated(okey)]
    assert len(net.uac) == 0


def test_timer_h_reports_a_missing_ack() -> None:
    net = Network()
    invite = make_request()
    net.uac.send_request(invite, False, 0.0)
    net.transfer("uac")
    skey = only_request(drain(net.uas)).key
    net.jump(1.0)
    net.uas.send_response(skey, make_response(invite, 486, to_tag="uas"), 1.0)
    net.jump(40.0)
    assert drain(net.uas) == [TimedOut(skey), Terminated(skey)]
    # 100 Trying at 0.2, the 486 and 10 Timer G retransmissions (1.5 ... 32.5);
    # none after Timer H at 33.
    assert [status_of(m) for _, m in net.uas.messages_to_send()] == [100] + [486] * 11


# -- CANCEL ------------------------------------------------------------------------------


def test_cancel_waits_for_a_provisional_then_is_its_own_transaction() -> None:
    net = Network()
    invite = make_request()
    key = net.uac.send_request(invite, False, 0.0)
    cancel_key = net.uac.cancel(key, 0.05)
    assert cancel_key == ClientKey("z9hG4bKl1", "CANCEL")
    # RFC 3261 9.1: no CANCEL before a provisional response.
    assert [status_of(m) for m in net.transfer("uac")] == ["INVITE"]
    assert cancel_key not in net.uac
    inv_event = only_request(drain(net.uas))
    net.jump(0.2)
    net.transfer("uas")  # 100 Trying
    assert cancel_key in net.uac
    assert [status_of(m) for m in net.transfer("uac")] == ["CANCEL"]
    cancel_event = only_request(drain(net.uas))
    assert cancel_event.key != inv_event.key
    assert isinstance(cancel_event.key, ServerKey) and cancel_event.key.method == "CANCEL"
    assert net.uas.match_cancel(cancel_event.request) == inv_event.key
    # The UAS TU: 200 to the CANCEL, 487 to the INVITE.
    net.uas.send_response(cancel_event.key, make_response(cancel_event.request, 200), 0.3)
    net.uas.send_response(inv_event.key, make_response(inv_event.request, 487, to_tag="uas"), 0.3)
    net.transfer("uas")
    evs = [e for e in drain(net.uac) if isinstance(e, ResponseReceived)]
    assert [(e.key.method, e.response.status) for e in evs if isinstance(e.key, ClientKey)] == [
        ("INVITE", 100),
        ("CANCEL", 200),
        ("INVITE", 487),
    ]
    assert [status_of(m) for m in net.transfer("uac")] == ["ACK"]
    assert net.uas.state(inv_event.key) is S.CONFIRMED


def test_cancel_too_late_or_dropped_when_final_comes_first() -> None:
    net = Network()
    invite = make_request()
    key = net.uac.send_request(invite, False, 0.0)
    net.transfer("uac")
    skey = only_request(drain(net.uas)).key
    assert net.uac.cancel(key, 0.05) is not None  # pending
    net.uas.send_response(skey, make_response(invite, 200, to_tag="uas"), 0.1)
    net.transfer("uas")
    assert net.uac.messages_to_send() == []  # no CANCEL, and no ACK for a 2xx
    assert ClientKey("z9hG4bKl1", "CANCEL") not in net.uac
    assert net.uac.cancel(key, 0.2) is None  # Accepted: nothing to cancel
    assert net.uac.cancel(ClientKey("z9hG4bKgone", "INVITE"), 0.2) is None
    okey = net.uac.send_request(make_request("OPTIONS", branch="z9hG4bKo"), False, 0.3)
    with pytest.raises(ValueError):
        net.uac.cancel(okey, 0.3)


def test_match_cancel_for_unknown_invite_is_none() -> None:
    layer = TransactionLayer()
    cancel = make_request("CANCEL", branch="z9hG4bKnothere")
    assert layer.match_cancel(cancel) is None
    with pytest.raises(ValueError):
        layer.match_cancel(make_request("BYE"))


# -- matching ------------------------------------------------------------------------------


def test_server_matching_uses_branch_sent_by_and_method() -> None:
    layer = TransactionLayer()
    layer.receive(make_request(), False, 0.0)
    # Same branch from another sent-by: another transaction (17.2.3).
    layer.receive(make_request(sent_by="192.0.2.77:5060"), False, 0.0)
    # Same branch and sent-by, other method: another transaction.
    layer.receive(make_request("CANCEL"), False, 0.0)
    # A retransmission: absorbed.
    layer.receive(make_request(), False, 0.0)
    keys = [e.key for e in drain(layer) if isinstance(e, RequestReceived)]
    assert len(keys) == 3 and len(set(keys)) == 3
    assert len(layer) == 3


def test_response_matching_uses_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    invite = make_request()
    key = layer.send_request(invite, False, 0.0)
    # Same branch, CSeq method CANCEL: no CANCEL transaction -> stray.
    cancel_ok = make_response(make_request("CANCEL"), 200)
    layer.receive(cancel_ok, False, 0.1)
    # Another branch: stray.
    other = make_response(make_request(branch="z9hG4bKzzz"), 180, to_tag="x")
    layer.receive(other, False, 0.1)
    assert drain(layer) == [StrayResponse(cancel_ok), StrayResponse(other)]
    assert layer.state(key) is S.CALLING


def test_rfc2543_fallback_matching() -> None:
    layer = TransactionLayer()
    invite = make_request(branch=None)
    layer.receive(invite, False, 0.0)
    skey = only_request(drain(layer)).key
    assert isinstance(skey, LegacyServerKey)
    assert skey.method == "INVITE" and skey.cseq == 1 and skey.from_tag == "caller"
    # A retransmission matches (same Request-URI, tags, Call-ID, CSeq, top Via).
    layer.receive(make_request(branch=None), False, 0.1)
    assert drain(layer) == []
    # A branch without the magic cookie is RFC 2543 too.
    layer.receive(make_request(branch="old1"), False, 0.1)
    assert len(drain(layer)) == 1
    # Different CSeq: a new request.
    layer.receive(make_request(branch=None, cseq=2), False, 0.1)
    assert len(drain(layer)) == 1
    # Different Request-URI: a new request.
    layer.receive(make_request(branch=None, uri="sip:other@192.0.2.2"), False, 0.1)
    assert len(drain(layer)) == 1
    # CANCEL finds the INVITE by the same rules (method aside).
    assert layer.match_cancel(make_request("CANCEL", branch=None)) == skey
    layer.send_response(skey, make_response(invite, 486, to_tag="t486"), 0.2)
    layer.messages_to_send()
    # An ACK with another To tag is not for this transaction.
    wrong = make_request("ACK", branch=None, to_tag="nope")
    layer.receive(wrong, False, 0.3)
    assert drain(layer) == [AckReceived(wrong, None)]
    assert layer.state(skey) is S.COMPLETED
    # The ACK with the response's To tag (CSeq method ACK) matches.
    layer.receive(make_request("ACK", branch=None, to_tag="t486"), False, 0.4)
    assert layer.state(skey) is S.CONFIRMED
    assert drain(layer) == []


def test_rfc2543_invite_with_other_to_tag_does_not_match() -> None:
    layer = TransactionLayer()
    layer.receive(make_request(branch=None, to_tag="a"), False, 0.0)
    skey = only_request(drain(layer)).key
    layer.receive(make_request(branch=None, to_tag="a"), False, 0.1)
    assert drain(layer) == []
    layer.receive(make_request(branch=None, to_tag="b"), False, 0.1)
    assert drain(layer) == []  # collides with a live transaction: dropped
    assert len(layer) == 1
    assert layer.state(skey) is S.PROCEEDING


# -- transport errors and misuse ------------------------------------------------------------


def test_transport_error_terminates_and_removes() -> None:
    layer = TransactionLayer()
    key = layer.send_request(make_request(), False, 0.0)
    layer.transport_error(key, 0.0)
    assert drain(layer) == [TransportFailed(key), Terminated(key)]
    assert key not in layer and layer.get_timer() is None
    layer.transport_error(key, 0.1)  # late error for a gone transaction: ignored
    assert drain(layer) == []
    layer.receive(make_request("MESSAGE", branch="z9hG4bKm"), True, 0.0)
    skey = only_request(drain(layer)).key
    layer.transport_error(skey, 0.1)
    assert drain(layer) == [TransportFailed(skey), Terminated(skey)]


def test_layer_misuse_raises() -> None:
    layer = TransactionLayer()
    with pytest.raises(ValueError):
        layer.send_request(make_request("ACK"), False, 0.0)
    layer.send_request(make_request(), False, 0.0)
    with pytest.raises(TransactionStateError):
        layer.send_request(make_request(), False, 0.0)
    with pytest.raises(KeyError):
        layer.send_response(
            ServerKey("z9hG4bKx", "192.0.2.1", 5060, "INVITE"),
            make_response(make_request(), 200),
            0.0,
        )
    layer.receive(make_request("OPTIONS", branch="z9hG4bKq"), False, 0.0)
    skey = only_request([e for e in drain(layer) if isinstance(e, RequestReceived)]).key
    assert isinstance(skey, ServerKey)
    options = make_request("OPTIONS", branch="z9hG4bKq")
    layer.send_response(skey, make_response(options, 200, to_tag="t"), 0.1)
    with pytest.raises(TransactionStateError):
        layer.send_response(skey, make_response(options, 500, to_tag="t"), 0.2)


def test_get_timer_is_the_earliest_over_all_transactions() -> None:
    layer = TransactionLayer()
    assert layer.get_timer() is None
    layer.send_request(make_request("OPTIONS", branch="z9hG4bKa"), True, 0.0)  # F at 32
    assert layer.get_timer() == 32.0
    layer.receive(make_request(branch="z9hG4bKb"), True, 1.0)  # 100 Trying at 1.2
    assert layer.get_timer() == pytest.approx(1.2)
    layer.send_request(make_request(branch="z9hG4bKc"), False, 1.0)  # A at 1.5
    assert layer.get_timer() == pytest.approx(1.2)
    layer.handle_timer(1.2)
    layer.handle_timer(1.2)
    assert layer.get_timer() == 1.5
    sent = layer.messages_to_send()
    assert [(type(k).__name__, status_of(m)) for k, m in sent] == [
        ("ClientKey", "OPTIONS"),
        ("ClientKey", "INVITE"),
        ("ServerKey", 100),
    ]
