"""The presence notifier (RFC 6665 / RFC 3856), driven with a fake clock and hand-made messages."""

from __future__ import annotations

import random

import pytest

from sipstack.digest import CredentialInfo, DigestAuthenticator
from sipstack.ids import IdGenerator
from sipstack.message import Request, Response, make_response, parse_message
from sipstack.pidf import PresenceStatus, parse_pidf
from sipstack.presence_notifier import (
    NotifierEvent,
    NotifyFailed,
    PresenceNotifier,
    SubscriptionAdded,
    SubscriptionRefreshed,
    SubscriptionState,
    SubscriptionTerminated,
    check_subscribe,
)
from sipstack.uri import parse_uri

ACCOUNT = "sip:door@example.com"
CONTACT = "sip:door@192.0.2.10:5060"
WATCHER_CONTACT = "sip:bob@192.0.2.20:5062;transport=udp"


def make_notifier(**kwargs: object) -> PresenceNotifier:
    ids = IdGenerator(random.Random(7))
    return PresenceNotifier(ACCOUNT, CONTACT, ids, **kwargs)  # type: ignore[arg-type]


def subscribe(
    *,
    call_id: str = "call-1@watcher",
    from_tag: str = "wt1",
    to_tag: str | None = None,
    cseq: int = 1,
    expires: int | None = 600,
    contact: str | None = f"<{WATCHER_CONTACT}>",
    event: str | None = "presence",
    extra: tuple[str, ...] = (),
) -> Request:
    """A SUBSCRIBE as it would arrive from the network."""
    to = "<sip:door@example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        "SUBSCRIBE sip:door@192.0.2.10:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKproxy1",
        f"Via: SIP/2.0/UDP 192.0.2.20:5062;branch=z9hG4bKw{cseq}{call_id[:6]}",
        "Max-Forwards: 69",
        f'From: "Bob" <sip:bob@example.com>;tag={from_tag}',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} SUBSCRIBE",
    ]
    if contact is not None:
        lines.append(f"Contact: {contact}")
    if event is not None:
        lines.append(f"Event: {event}")
    if expires is not None:
        lines.append(f"Expires: {expires}")
    lines += list(extra)
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


def on_wire(request: Request) -> Request:
    """What the glue does: add a Via, serialize, and what the peer parses."""
    wired = request.copy()
    wired.headers.prepend("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKn" + str(id(request)))
    parsed = parse_message(wired.to_bytes())
    assert isinstance(parsed, Request)
    return parsed


def answer(request: Request, status: int, *headers: tuple[str, str]) -> Response:
    response = make_response(on_wire(request), status)
    for name, value in headers:
        response.headers.add(name, value)
    return response


def events(n: PresenceNotifier) -> list[NotifierEvent]:
    out: list[NotifierEvent] = []
    while (ev := n.next_event()) is not None:
        out.append(ev)
    return out


def one_notify(n: PresenceNotifier) -> Request:
    sent = n.requests_to_send()
    assert len(sent) == 1, sent
    return sent[0]


def establish(n: PresenceNotifier, now: float = 0.0, **kwargs: object) -> tuple[Response, Request]:
    """Initial SUBSCRIBE answered and its first NOTIFY acknowledged with 200."""
    response = n.receive_subscribe(subscribe(**kwargs), now)  # type: ignore[arg-type]
    assert response.status == 200
    notify = one_notify(n)
    n.receive_response(notify, answer(notify, 200), now)
    return response, notify


# -- initial SUBSCRIBE ---------------------------------------------------------------------


def test_initial_subscribe_creates_dialog_and_notifies_at_once() -> None:
    n = make_notifier()
    req = subscribe(
        extra=(
            "Record-Route: <sip:p2.example.com;lr>",
            "Record-Route: <sip:p1.example.com;lr;transport=tcp>",
        )
    )
    response = n.receive_subscribe(req, 0.0)
    assert response.status == 200
    our_tag = response.to.tag
    assert our_tag
    assert response.expires == 600
    assert [str(c.uri) for c in response.contacts] == [CONTACT]
    # RFC 3261 12.1.1: Record-Route copied into the dialog-creating 2xx.
    assert [str(r.uri) for r in response.record_routes] == [
        "sip:p2.example.com;lr",
        "sip:p1.example.com;lr;transport=tcp",
    ]
    [added] = events(n)
    assert isinstance(added, SubscriptionAdded)
    assert added.expires == 600 and str(added.subscriber) == "sip:bob@example.com"

    notify = on_wire(one_notify(n))
    assert notify.method == "NOTIFY"
    assert str(notify.uri) == WATCHER_CONTACT  # remote target
    # UAS route set: Record-Route in the order received (RFC 3261 12.1.1).
    assert [str(r.uri) for r in notify.routes] == [
        "sip:p2.example.com;lr",
        "sip:p1.example.com;lr;transport=tcp",
    ]
    assert notify.from_.tag == our_tag and str(notify.from_.uri) == "sip:door@example.com"
    assert notify.to.tag == "wt1" and str(notify.to.uri) == "sip:bob@example.com"
    assert notify.call_id == "call-1@watcher"
    assert (notify.cseq.seq, notify.cseq.method) == (1, "NOTIFY")
    assert [str(c.uri) for c in notify.contacts] == [CONTACT]
    assert notify.event == "presence"
    assert notify.subscription_state == "active;expires=600"
    assert notify.content_type == "application/pidf+xml"
    assert notify.max_forwards == 70
    info = parse_pidf(notify.body)
    assert info.entity == ACCOUNT and info.basic_open is True  # PJSUA default: online


def test_expires_absent_uses_default_and_large_is_clamped() -> None:
    n = make_notifier(max_expires=1800, default_expires=300)
    assert n.receive_subscribe(subscribe(expires=None), 0.0).expires == 300
    r = n.receive_subscribe(subscribe(call_id="c2", expires=86400), 0.0)
    assert r.expires == 1800
    notifies = n.requests_to_send()
    assert [x.subscription_state for x in notifies] == [
        "active;expires=300",
        "active;expires=1800",
    ]
    for x in notifies:
        n.receive_response(x, answer(x, 200), 0.1)
    assert n.get_timer() == 300.0


def test_too_brief_expires_gets_423_with_min_expires() -> None:
    n = make_notifier(min_expires=60)
    response = n.receive_subscribe(subscribe(expires=30), 0.0)
    assert response.status == 423
    assert response.min_expires == 60
    assert n.subscriptions() == [] and n.requests_to_send() == [] and events(n) == []
    assert n.receive_subscribe(subscribe(expires=60), 0.0).status == 200


def test_fetch_with_expires_zero_sends_one_terminated_notify_with_state() -> None:
    n = make_notifier()
    response = n.receive_subscribe(subscribe(expires=0), 5.0)
    assert response.status == 200 and response.expires == 0
    notify = one_notify(n)
    assert notify.subscription_state == "terminated;reason=timeout"
    assert parse_pidf(notify.body).basic_open is True
    n.receive_response(notify, answer(notify, 200), 5.1)
    assert n.subscriptions() == [] and n.get_timer() is None
    assert events(n) == []


def test_missing_contact_and_unacceptable_accept_and_capacity() -> None:
    n = make_notifier(max_subscriptions=1)
    assert n.receive_subscribe(subscribe(contact=None), 0.0).status == 400
    r = n.receive_subscribe(subscribe(extra=("Accept: application/xpidf+xml",)), 0.0)
    assert r.status == 406 and r.headers.get("Accept") == "application/pidf+xml"
    ok = subscribe(extra=("Accept: application/pidf+xml, application/xpidf+xml",))
    assert n.receive_subscribe(ok, 0.0).status == 200
    full = n.receive_subscribe(subscribe(call_id="other"), 0.0)
    assert full.status == 503 and full.retry_after == 60


def test_check_subscribe_routes_other_packages_to_489() -> None:
    for event in ("dialog", "presence.winfo", "message-summary"):
        r = check_subscribe(subscribe(event=event))
        assert r is not None and r.status == 489
        assert r.headers.get_all("Allow-Events") == ["presence"]
    missing = check_subscribe(subscribe(event=None))
    assert missing is not None and missing.status == 400
    assert check_subscribe(subscribe(event="Presence;id=12")) is None
    n = make_notifier()
    assert n.receive_subscribe(subscribe(event="dialog"), 0.0).status == 489
    invite = parse_message(
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:c@d>;tag=1\r\n"
        b"To: <sip:a@b>\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n"
    )
    assert isinstance(invite, Request)
    with pytest.raises(ValueError, match="SUBSCRIBE"):
        check_subscribe(invite)


# -- refresh, unsubscribe, expiry ---------------------------------------------------------------


def test_refresh_in_dialog_extends_and_notifies_with_next_cseq() -> None:
    n = make_notifier()
    response, _ = establish(n)
    events(n)
    tag = response.to.tag
    refresh = subscribe(to_tag=tag, cseq=2, expires=600)
    r = n.receive_subscribe(refresh, 100.0)
    assert r.status == 200 and r.expires == 600 and r.to.tag == tag
    [ev] = events(n)
    assert isinstance(ev, SubscriptionRefreshed) and ev.expires == 600
    notify = one_notify(n)
    assert notify.cseq.seq == 2
    assert notify.subscription_state == "active;expires=600"
    assert n.get_timer() == pytest.approx(100.0 + 64.0)  # the NOTIFY guard comes first
    n.receive_response(notify, answer(notify, 200), 100.5)
    assert n.get_timer() == 700.0


def test_refresh_updates_remote_target() -> None:
    n = make_notifier()
    response, _ = establish(n)
    moved = subscribe(to_tag=response.to.tag, cseq=2, contact="<sip:bob@198.51.100.9:5070>")
    n.receive_subscribe(moved, 10.0)
    assert str(one_notify(n).uri) == "sip:bob@198.51.100.9:5070"


def test_subscription_state_expires_counts_down() -> None:
    n = make_notifier()
    establish(n)
    n.set_status(PresenceStatus(online=True, note="x"), 250.0)
    first = one_notify(n)
    assert first.subscription_state == "active;expires=350"
    n.receive_response(first, answer(first, 200), 250.2)
    n.set_status(PresenceStatus(online=False), 599.5)
    assert one_notify(n).subscription_state == "active;expires=0"


def test_expiry_at_the_exact_deadline_sends_terminated_timeout() -> None:
    n = make_notifier()
    establish(n, expires=120)
    events(n)
    assert n.get_timer() == 120.0
    n.handle_timer(119.999)
    assert n.requests_to_send() == [] and events(n) == []
    n.handle_timer(120.0)
    notify = one_notify(n)
    assert notify.subscription_state == "terminated;reason=timeout"
    assert notify.cseq.seq == 2
    [ev] = events(n)
    assert isinstance(ev, SubscriptionTerminated) and ev.reason == "timeout"
    [info] = n.subscriptions()
    assert info.state is SubscriptionState.TERMINATED
    n.receive_response(notify, answer(notify, 200), 120.1)
    assert n.subscriptions() == [] and n.get_timer() is None


def test_refresh_after_expiry_gets_481() -> None:
    n = make_notifier()
    response, _ = establish(n, expires=120)
    late = subscribe(to_tag=response.to.tag, cseq=2)
    assert n.receive_subscribe(late, 121.0).status == 481
    # The expiry noticed on the way still produced the final NOTIFY.
    assert one_notify(n).subscription_state == "terminated;reason=timeout"


def test_unsubscribe_sends_final_notify_then_forgets() -> None:
    n = make_notifier()
    response, _ = establish(n)
    events(n)
    r = n.receive_subscribe(subscribe(to_tag=response.to.tag, cseq=2, expires=0), 30.0)
    assert r.status == 200 and r.expires == 0
    notify = one_notify(n)
    assert notify.subscription_state == "terminated;reason=timeout"
    assert parse_pidf(notify.body).entity == ACCOUNT  # the last state goes with it
    [ev] = events(n)
    assert isinstance(ev, SubscriptionTerminated)
    n.receive_response(notify, answer(notify, 200), 30.1)
    assert n.subscriptions() == []
    again = subscribe(to_tag=response.to.tag, cseq=3)
    assert n.receive_subscribe(again, 31.0).status == 481


def test_refresh_too_brief_gets_423_and_keeps_the_subscription() -> None:
    n = make_notifier()
    response, _ = establish(n)
    r = n.receive_subscribe(subscribe(to_tag=response.to.tag, cseq=2, expires=10), 50.0)
    assert r.status == 423
    assert n.requests_to_send() == []
    assert n.get_timer() == 600.0


def test_unknown_dialog_and_other_event_id_get_481() -> None:
    n = make_notifier()
    response, _ = establish(n, event="presence;id=a1")
    assert n.receive_subscribe(subscribe(to_tag="nope", cseq=2), 1.0).status == 481
    other_id = subscribe(to_tag=response.to.tag, cseq=2, event="presence;id=b2")
    assert n.receive_subscribe(other_id, 1.0).status == 481
    same = subscribe(to_tag=response.to.tag, cseq=3, event="presence;id=a1")
    assert n.receive_subscribe(same, 1.0).status == 200
    assert one_notify(n).event == "presence;id=a1"


def test_out_of_order_cseq_gets_500() -> None:
    n = make_notifier()
    response, _ = establish(n, cseq=10)
    assert n.receive_subscribe(subscribe(to_tag=response.to.tag, cseq=9), 1.0).status == 500


def test_strict_router_in_route_set() -> None:
    n = make_notifier()
    n.receive_subscribe(
        subscribe(extra=("Record-Route: <sip:strict.example.com>, <sip:loose.example.com;lr>",)),
        0.0,
    )
    notify = on_wire(one_notify(n))
    assert str(notify.uri) == "sip:strict.example.com"  # RFC 3261 12.2.1.1
    assert [str(r.uri) for r in notify.routes] == ["sip:loose.example.com;lr", WATCHER_CONTACT]


# -- status changes and termination -----------------------------------------------------------


def test_set_status_notifies_every_active_subscriber() -> None:
    n = make_notifier()
    establish(n, call_id="a", from_tag="ta")
    establish(n, call_id="b", from_tag="tb")
    events(n)
    n.set_status(PresenceStatus(online=False, note="Gone home", activity="away"), 42.0)
    notifies = n.requests_to_send()
    assert sorted(x.call_id for x in notifies) == ["a", "b"]
    for x in notifies:
        info = parse_pidf(x.body)
        assert info.basic_open is False
        assert info.note == "Gone home" and info.activities == ("away",)
        assert x.cseq.seq == 2
    assert n.status.note == "Gone home"


def test_bad_status_raises_and_changes_nothing() -> None:
    n = make_notifier()
    establish(n)
    with pytest.raises(ValueError):
        n.set_status(PresenceStatus(online=False, activity="dancing"), 1.0)
    assert n.requests_to_send() == [] and n.status.online is True


def test_one_notify_in_flight_and_only_the_latest_state_follows() -> None:
    n = make_notifier()
    n.receive_subscribe(subscribe(), 0.0)
    first = one_notify(n)
    n.set_status(PresenceStatus(online=False, note="one"), 1.0)
    n.set_status(PresenceStatus(online=True, note="two"), 2.0)
    assert n.requests_to_send() == []  # waits for the first NOTIFY's response
    n.receive_response(first, answer(first, 100), 2.1)  # provisional: still waiting
    assert n.requests_to_send() == []
    n.receive_response(first, answer(first, 200), 3.0)
    second = one_notify(n)
    assert parse_pidf(second.body).note == "two"
    assert second.cseq.seq == 2
    assert second.subscription_state == "active;expires=597"


def test_terminate_all_sends_noresource_without_body() -> None:
    n = make_notifier()
    establish(n, call_id="a", from_tag="ta")
    establish(n, call_id="b", from_tag="tb")
    events(n)
    n.terminate_all(10.0)
    notifies = n.requests_to_send()
    assert [x.subscription_state for x in notifies] == ["terminated;reason=noresource"] * 2
    assert all(x.body == b"" and x.content_type is None for x in notifies)
    evs = events(n)
    assert [type(e) for e in evs] == [SubscriptionTerminated] * 2
    assert {e.reason for e in evs if isinstance(e, SubscriptionTerminated)} == {"noresource"}
    for x in notifies:
        n.receive_response(x, answer(x, 200), 10.5)
    assert n.subscriptions() == [] and n.get_timer() is None


def test_termination_waits_for_in_flight_notify() -> None:
    n = make_notifier()
    n.receive_subscribe(subscribe(), 0.0)
    first = one_notify(n)
    n.terminate_all(1.0, reason="deactivated")
    assert n.requests_to_send() == []
    n.receive_response(first, answer(first, 200), 1.5)
    final = one_notify(n)
    assert final.subscription_state == "terminated;reason=deactivated"
    assert final.cseq.seq == 2


# -- NOTIFY failures ---------------------------------------------------------------------------


def test_481_to_notify_removes_the_subscription() -> None:
    n = make_notifier()
    response, _ = establish(n)
    events(n)
    n.set_status(PresenceStatus(online=False), 5.0)
    notify = one_notify(n)
    n.receive_response(notify, answer(notify, 481), 5.2)
    failed, ended = events(n)
    assert isinstance(failed, NotifyFailed) and failed.status == 481
    assert isinstance(ended, SubscriptionTerminated) and ended.reason == "notify-failed"
    assert n.subscriptions() == [] and n.get_timer() is None
    n.set_status(PresenceStatus(online=True), 6.0)
    assert n.requests_to_send() == []
    assert n.receive_subscribe(subscribe(to_tag=response.to.tag, cseq=2), 7.0).status == 481


def test_transaction_timeout_removes_the_subscription() -> None:
    n = make_notifier()
    n.receive_subscribe(subscribe(), 0.0)
    events(n)
    notify = one_notify(n)
    n.request_failed(notify, "Timer F", 32.0)
    failed, _ = events(n)
    assert isinstance(failed, NotifyFailed) and failed.status == 408
    assert n.subscriptions() == []


def test_unreported_notify_is_timed_out_by_the_guard() -> None:
    n = make_notifier(response_guard=64.0)
    n.receive_subscribe(subscribe(), 0.0)
    events(n)
    one_notify(n)
    assert n.get_timer() == 64.0
    n.handle_timer(63.9)
    assert events(n) == []
    n.handle_timer(64.0)
    assert isinstance(events(n)[0], NotifyFailed)
    assert n.subscriptions() == []


def test_retry_after_keeps_the_subscription_and_resends() -> None:
    n = make_notifier()
    n.receive_subscribe(subscribe(), 0.0)
    notify = one_notify(n)
    n.receive_response(notify, answer(notify, 503, ("Retry-After", "20")), 1.0)
    assert n.requests_to_send() == []
    assert n.get_timer() == 21.0
    n.handle_timer(21.0)
    again = one_notify(n)
    assert again.cseq.seq == 2 and again.subscription_state == "active;expires=579"


def test_stale_response_is_ignored() -> None:
    n = make_notifier()
    establish(n)
    n.set_status(PresenceStatus(online=False), 1.0)
    current = one_notify(n)
    old = current.copy()
    old.headers.set("CSeq", "1 NOTIFY")
    events(n)
    n.receive_response(old, answer(old, 481), 1.1)
    assert len(n.subscriptions()) == 1 and events(n) == []
    n.receive_response(current, answer(current, 200), 1.2)
    assert n.subscriptions()[0].notify_pending is False


def test_401_to_notify_is_answered_with_credentials() -> None:
    ids = IdGenerator(random.Random(3))
    auth = DigestAuthenticator([CredentialInfo("example.com", "door", "secret")], ids)
    n = PresenceNotifier(ACCOUNT, CONTACT, ids, authenticator=auth)
    n.receive_subscribe(subscribe(), 0.0)
    notify = one_notify(n)
    challenge = ("Proxy-Authenticate", 'Digest realm="example.com", nonce="n1", qop="auth"')
    n.receive_response(notify, answer(notify, 407, challenge), 0.5)
    retry = one_notify(n)
    assert retry.cseq.seq == notify.cseq.seq + 1
    [cred] = retry.proxy_authorization
    assert cred.params["username"] == "door" and cred.params["realm"] == "example.com"
    assert cred.params["uri"] == WATCHER_CONTACT
    n.receive_response(retry, answer(retry, 200), 0.6)
    assert len(n.subscriptions()) == 1
    # Later NOTIFYs carry credentials pre-emptively (nc goes up).
    n.set_status(PresenceStatus(online=False), 1.0)
    [cred2] = one_notify(n).proxy_authorization
    assert cred2.params["nc"] == "00000002"


def test_401_without_authenticator_drops_the_subscription() -> None:
    n = make_notifier()
    n.receive_subscribe(subscribe(), 0.0)
    notify = one_notify(n)
    challenge = ("WWW-Authenticate", 'Digest realm="x", nonce="n"')
    n.receive_response(notify, answer(notify, 401, challenge), 0.5)
    assert n.subscriptions() == []
    assert any(isinstance(e, NotifyFailed) and e.status == 401 for e in events(n))


def test_subscriptions_snapshot() -> None:
    n = make_notifier()
    n.receive_subscribe(subscribe(), 0.0)
    [info] = n.subscriptions()
    assert info.subscriber == parse_uri("sip:bob@example.com")
    assert info.remote_target == parse_uri(WATCHER_CONTACT)
    assert info.state is SubscriptionState.ACTIVE
    assert info.expires_at == 600.0 and info.notify_pending is True
    assert info.id.call_id == "call-1@watcher" and info.id.remote_tag == "wt1"


def test_bad_constructor_limits_raise() -> None:
    with pytest.raises(ValueError, match="min_expires"):
        make_notifier(min_expires=700)
