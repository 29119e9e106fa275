"""The transaction layer's deadline index (issue 8): a heap with lazy invalidation.

The layer must answer ``get_timer`` and fire ``handle_timer`` exactly as a scan
over every transaction would, while thousands of transactions are alive,
deadlines move (earlier and later), keys are reused, and stale entries pile up.
Expected deadlines are computed here from RFC 3261 17 timer values, and a
seeded random walk checks the layer against a small model of Timer J.
"""

from __future__ import annotations

import random

import pytest

from sipstack.message import Request, make_response, parse_message
from sipstack.timers import TimerConfig
from sipstack.transaction import (
    ClientKey,
    RequestReceived,
    ServerTransactionKey,
    Terminated,
    TimedOut,
    TransactionEvent,
    TransactionKey,
)
from sipstack.transaction_layer import TransactionLayer

J = 32.0  # RFC 3261 17.2.2: Timer J = 64*T1 over UDP with the default T1


def options(branch: str, sent_by: str = "192.0.2.1:5060") -> Request:
    data = (
        "OPTIONS sip:door@192.0.2.2 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:flat12@192.0.2.1>;tag=caller\r\n"
        "To: <sip:door@192.0.2.2>\r\n"
        f"Call-ID: {branch}@192.0.2.1\r\n"
        "CSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, Request)
    return msg


def drain(layer: TransactionLayer) -> list[TransactionEvent]:
    out = []
    while (ev := layer.next_event()) is not None:
        out.append(ev)
    return out


def receive_and_answer(
    layer: TransactionLayer, request: Request, now: float
) -> ServerTransactionKey:
    """A new server transaction answered 200 at ``now``: Timer J runs to now + 32."""
    layer.receive(request, False, now)
    (event,) = drain(layer)
    assert isinstance(event, RequestReceived)
    layer.send_response(event.key, make_response(request, 200, to_tag="t"), now)
    layer.messages_to_send()
    return event.key


def terminated(events: list[TransactionEvent]) -> list[TransactionKey]:
    return [e.key for e in events if isinstance(e, Terminated)]


def test_thousands_of_transactions_fire_one_by_one_in_deadline_order() -> None:
    layer = TransactionLayer()
    keys = [receive_and_answer(layer, options(f"z9hG4bKm{i}"), i * 0.01) for i in range(3000)]
    assert len(layer) == 3000
    assert layer.get_timer() == J
    layer.handle_timer(J - 0.001)  # early: nothing is due
    assert drain(layer) == [] and len(layer) == 3000
    layer.handle_timer(J + 0.005)  # only the first is due
    assert terminated(drain(layer)) == [keys[0]]
    assert layer.get_timer() == pytest.approx(J + 0.01)
    layer.handle_timer(40.0)  # deadlines up to 40 s: transactions 0..800
    assert terminated(drain(layer)) == keys[1:801]
    assert len(layer) == 3000 - 801
    assert layer.get_timer() == pytest.approx(J + 8.01)
    layer.handle_timer(100.0)
    assert terminated(drain(layer)) == keys[801:]
    assert len(layer) == 0 and layer.get_timer() is None


def test_stale_entries_of_retransmission_timers_fire_nothing() -> None:
    """A UDP non-INVITE client: Timer E fires at 0.5, 1.5, 3.5 (RFC 3261
    17.1.2.2, doubling), then a 200 at 4.0 replaces E (due 7.5) and F (32)
    with Timer K (4.0 + T4 = 9.0). The index still holds the E and F entries."""
    layer = TransactionLayer()
    request = options("z9hG4bKe1")
    key = layer.send_request(request, False, 0.0)
    layer.messages_to_send()
    for when in (0.5, 1.5, 3.5):
        assert layer.get_timer() == when
        layer.handle_timer(when)
        assert [m.method for _, m in layer.messages_to_send() if isinstance(m, Request)] == [
            "OPTIONS"
        ]
    assert layer.get_timer() == 7.5
    layer.receive(parse_message(make_response(request, 200, to_tag="t").to_bytes()), False, 4.0)
    drain(layer)
    assert layer.get_timer() == 9.0  # the stale 7.5 entry is not reported
    layer.handle_timer(7.5)  # and firing at its time does nothing
    assert layer.messages_to_send() == [] and drain(layer) == []
    layer.handle_timer(9.0)
    assert terminated(drain(layer)) == [key]
    assert layer.get_timer() is None  # the stale F entry (32) is not reported either
    assert layer.indexed_deadlines == 0


def test_a_deadline_that_moves_earlier_is_seen_and_the_old_one_dropped() -> None:
    """With T4 = 1 s, a client in Proceeding waiting on Timer E at +T2 gets its
    final response and Timer K (+T4) becomes earlier than another transaction."""
    layer = TransactionLayer(TimerConfig(t4=1.0))
    request = options("z9hG4bKmove")
    key = layer.send_request(request, False, 0.0)
    layer.messages_to_send()
    trying = parse_message(make_response(request, 100).to_bytes())
    layer.receive(trying, False, 0.1)  # Proceeding; E still due at 0.5
    drain(layer)
    for when in (0.5, 1.5, 3.5, 7.5):  # E doubles to T2 = 4 (17.1.2.2)
        layer.handle_timer(when)
    assert layer.get_timer() == 11.5
    other = receive_and_answer(layer, options("z9hG4bKother", "192.0.2.9:5060"), -22.0)
    assert layer.get_timer() == 10.0  # the server transaction's Timer J
    final = parse_message(make_response(request, 404, to_tag="t").to_bytes())
    layer.receive(final, False, 8.0)
    drain(layer)
    layer.messages_to_send()
    assert layer.get_timer() == 9.0  # K moved the client's deadline before J
    layer.handle_timer(9.0)
    assert terminated(drain(layer)) == [key]
    assert layer.get_timer() == 10.0
    layer.handle_timer(11.5)  # the stale E entry of the gone client is skipped
    assert terminated(drain(layer)) == [other]
    assert layer.messages_to_send() == []
    assert layer.get_timer() is None


def test_touches_without_a_new_deadline_keep_the_index_bounded() -> None:
    """Every retransmitted request touches its Completed transaction (the 200 is
    resent, RFC 3261 17.2.2) and pushes an entry; the heap is rebuilt so it stays
    a small multiple of the live count, and each transaction still fires once."""
    layer = TransactionLayer()
    requests = [options(f"z9hG4bKr{i}") for i in range(10)]
    keys = [receive_and_answer(layer, r, 0.0) for r in requests]
    for n in range(2000):
        layer.receive(requests[n % 10], False, 1.0 + n * 0.001)
        assert layer.indexed_deadlines <= 4 * len(layer) + 64
    assert len(layer.messages_to_send()) == 2000  # each retransmission answered
    assert drain(layer) == []
    assert layer.get_timer() == J
    layer.handle_timer(J)
    assert terminated(drain(layer)) == keys  # once each, in creation order
    assert layer.get_timer() is None


def test_index_bound_holds_with_many_moving_client_deadlines() -> None:
    """Timer E retransmissions of many UDP clients push and pop entries; the
    index never outgrows its bound and timeouts (Timer F) come all at 32 s."""
    layer = TransactionLayer()
    keys = [layer.send_request(options(f"z9hG4bKc{i}"), False, 0.0) for i in range(200)]
    now = 0.0
    while (when := layer.get_timer()) is not None and when < J:
        now = when
        layer.handle_timer(now)
        assert layer.indexed_deadlines <= 4 * len(layer) + 64
    # E: 0.5 1.5 3.5 7.5 11.5 ... every 4 s up to 31.5 (RFC 3261 17.1.2.2)
    assert now == 31.5
    retransmitted = [k for k, _ in layer.messages_to_send()]
    # the first send, E at 0.5 1.5 3.5, then at every T2 from 7.5 to 31.5
    assert len(retransmitted) == 200 * (1 + 3 + 7)
    layer.handle_timer(J)
    events = drain(layer)
    assert [e.key for e in events if isinstance(e, TimedOut)] == keys
    assert all(isinstance(k, ClientKey) for k in terminated(events))
    assert len(layer) == 0 and layer.get_timer() is None


def test_a_reused_key_after_termination_gets_the_right_deadline() -> None:
    """A request retransmitted after its transaction ended (Timer J fired)
    opens a new one under the same key; old entries must not confuse it."""
    layer = TransactionLayer()
    request = options("z9hG4bKagain")
    key = receive_and_answer(layer, request, 0.0)
    layer.handle_timer(J)
    assert terminated(drain(layer)) == [key]
    assert receive_and_answer(layer, request, 40.0) == key
    assert layer.get_timer() == 40.0 + J
    layer.handle_timer(J + 1)
    assert drain(layer) == []
    layer.handle_timer(40.0 + J)
    assert terminated(drain(layer)) == [key]


def test_random_walk_matches_a_model_of_timer_j() -> None:
    """Seeded random arrivals, answers, retransmissions and clock jumps over
    UDP OPTIONS server transactions. The model: a transaction answered at
    ``a`` ends at ``a + 32``; unanswered ones have no timer."""
    rng = random.Random(8)
    layer = TransactionLayer()
    model: dict[ServerTransactionKey, float | None] = {}  # key -> Timer J deadline
    requests: dict[ServerTransactionKey, Request] = {}
    now = 0.0
    for n in range(4000):
        now += rng.choice((0.0, 0.001, 0.01, 0.1, 1.0))
        action = rng.random()
        if action < 0.4:
            request = options(f"z9hG4bKw{n}")
            layer.receive(request, False, now)
            (event,) = drain(layer)
            assert isinstance(event, RequestReceived)
            model[event.key] = None
            requests[event.key] = request
        elif action < 0.7 and model:
            key = rng.choice(list(model))
            if model[key] is None:
                layer.send_response(key, make_response(requests[key], 200, to_tag="t"), now)
                model[key] = now + J
            else:
                layer.receive(requests[key], False, now)  # a retransmission
        else:
            layer.handle_timer(now)
            due = {k: t for k, t in model.items() if t is not None and t <= now}
            ended = [k for k in terminated(drain(layer)) if not isinstance(k, ClientKey)]
            assert len(ended) == len(due) and set(ended) == set(due)
            assert [due[k] for k in ended] == sorted(due.values())  # deadline order
            for k in ended:
                del model[k]
        layer.messages_to_send()
        deadlines = [t for t in model.values() if t is not None]
        assert layer.get_timer() == min(deadlines, default=None)
        assert len(layer) == len(model)
        assert layer.indexed_deadlines <= 4 * len(layer) + 64
