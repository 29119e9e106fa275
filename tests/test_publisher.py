"""The PUBLISH machine (RFC 3903), driven with a fake clock and hand-made responses."""

from __future__ import annotations

import random

import pytest

from sipstack.digest import CredentialInfo, DigestAuthenticator
from sipstack.ids import IdGenerator
from sipstack.message import Request, Response, make_response, parse_message
from sipstack.publisher import (
    PUBLISH_EXPIRATION,
    Published,
    Publisher,
    PublisherConfig,
    PublisherEvent,
    PublisherState,
    PublishFailed,
    Unpublished,
    refresh_delay,
)

AOR = '"Door" <sip:door@example.com>'
DOC1 = b"<presence>one</presence>"  # opaque to the publisher
DOC2 = b"<presence>two</presence>"
DOC3 = b"<presence>three</presence>"


def make_publisher(
    seed: int = 1, authenticator: DigestAuthenticator | None = None, **kwargs: object
) -> Publisher:
    config = PublisherConfig(AOR, proxy=("sip:proxy.example.com",), user_agent="door/1", **kwargs)  # type: ignore[arg-type]
    return Publisher(config, IdGenerator(random.Random(99)), random.Random(seed), authenticator)


def wire(request: Request) -> Request:
    """Add the Via the glue adds, serialize, and parse as the server would."""
    copy = request.copy()
    copy.headers.prepend("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKp{request.cseq.seq}")
    parsed = parse_message(copy.to_bytes())
    assert isinstance(parsed, Request)
    return parsed


def answer(request: Request, status: int, *headers: tuple[str, str]) -> Response:
    response = make_response(wire(request), status, to_tag="srv")
    for name, value in headers:
        response.headers.add(name, value)
    return response


def ok(request: Request, etag: str, expires: int) -> Response:
    return answer(request, 200, ("SIP-ETag", etag), ("Expires", str(expires)))


def one(p: Publisher) -> Request:
    sent = p.requests_to_send()
    assert len(sent) == 1, sent
    return sent[0]


def drain(p: Publisher) -> list[PublisherEvent]:
    out: list[PublisherEvent] = []
    while (ev := p.next_event()) is not None:
        out.append(ev)
    return out


def state(p: Publisher) -> PublisherState:
    """``p.state`` read afresh (a property mypy would otherwise keep narrowed)."""
    return p.state


def jitter(seed: int, count: int = 1) -> float:
    """The n-th jitter the publisher draws with rng seed ``seed`` (retry_jitter 10)."""
    rng = random.Random(seed)
    value = 0.0
    for _ in range(count):
        value = rng.uniform(0, 10.0)
    return value


def test_full_cycle_initial_refresh_modify_412_unpublish() -> None:
    p = make_publisher()
    assert state(p) is PublisherState.IDLE and p.get_timer() is None
    p.publish(DOC1, 0.0)
    initial = wire(one(p))
    assert initial.method == "PUBLISH"
    assert str(initial.uri) == "sip:door@example.com"  # RFC 3903 4.1: the AOR
    assert str(initial.to.uri) == "sip:door@example.com" and initial.to.tag is None
    assert str(initial.from_.uri) == "sip:door@example.com" and initial.from_.tag
    assert [str(r.uri) for r in initial.routes] == ["sip:proxy.example.com;lr"]
    assert initial.event == "presence"
    assert initial.expires == PUBLISH_EXPIRATION == 600
    assert initial.sip_if_match is None
    assert initial.content_type == "application/pidf+xml" and initial.body == DOC1
    assert initial.cseq.seq == 1 and initial.max_forwards == 70
    assert initial.user_agent == "door/1"
    assert state(p) is PublisherState.PUBLISHING

    p.receive_response(initial, ok(initial, "e1", 600), 0.2)
    assert drain(p) == [Published("e1", 600)]
    assert state(p) is PublisherState.PUBLISHED and p.etag == "e1"
    assert p.get_timer() == pytest.approx(595.2)  # delay_before_refresh = 5

    p.handle_timer(595.1)
    assert p.requests_to_send() == []
    p.handle_timer(595.2)
    refresh = wire(one(p))
    assert refresh.sip_if_match == "e1" and refresh.body == b""
    assert refresh.content_type is None and refresh.expires == 600
    assert refresh.cseq.seq == 2 and refresh.call_id == initial.call_id
    assert refresh.from_.tag == initial.from_.tag

    p.receive_response(refresh, ok(refresh, "e2", 600), 595.5)
    assert drain(p) == [Published("e2", 600)]

    p.publish(DOC2, 700.0)  # modify (RFC 3903 4.4)
    modify = wire(one(p))
    assert modify.sip_if_match == "e2" and modify.body == DOC2 and modify.cseq.seq == 3

    # The server lost our entity: 412, then publish anew without SIP-If-Match.
    p.receive_response(modify, answer(modify, 412), 700.1)
    anew = wire(one(p))
    assert anew.sip_if_match is None and anew.body == DOC2 and anew.cseq.seq == 4
    assert anew.expires == 600
    assert drain(p) == []
    p.receive_response(anew, ok(anew, "e3", 600), 700.3)
    assert drain(p) == [Published("e3", 600)]

    p.unpublish(800.0)  # RFC 3903 4.5
    remove = wire(one(p))
    assert remove.expires == 0 and remove.sip_if_match == "e3"
    assert remove.body == b"" and remove.content_type is None
    assert state(p) is PublisherState.UNPUBLISHING
    p.receive_response(remove, answer(remove, 200, ("SIP-ETag", "e3")), 800.1)
    assert drain(p) == [Unpublished(True)]
    assert state(p) is PublisherState.IDLE and p.etag is None and p.get_timer() is None


def test_refresh_follows_the_granted_expiry() -> None:
    p = make_publisher()
    p.publish(DOC1, 10.0)
    req = one(p)
    p.receive_response(req, ok(req, "e", 120), 10.0)
    assert p.get_timer() == 125.0
    assert p.expires_in(100.0) == 30
    # A grant too short for the 5 s margin refreshes halfway.
    assert refresh_delay(8, 5) == 4.0
    assert refresh_delay(600, 5) == 595


def test_only_one_publish_outstanding_and_latest_status_wins() -> None:
    p = make_publisher()
    p.publish(DOC1, 0.0)
    first = one(p)
    p.publish(DOC2, 1.0)
    p.publish(DOC3, 2.0)
    assert p.requests_to_send() == []
    p.receive_response(first, answer(first, 100), 2.5)
    assert p.requests_to_send() == []
    p.receive_response(first, ok(first, "e1", 600), 3.0)
    follow = one(p)
    assert follow.body == DOC3 and follow.sip_if_match == "e1"
    p.receive_response(follow, ok(follow, "e2", 600), 3.5)
    assert p.requests_to_send() == []
    assert drain(p) == [Published("e1", 600), Published("e2", 600)]


def test_423_retries_with_min_expires_and_keeps_it() -> None:
    p = make_publisher(expires=60)
    p.publish(DOC1, 0.0)
    first = one(p)
    p.receive_response(first, answer(first, 423, ("Min-Expires", "1800")), 0.1)
    second = one(p)
    assert second.expires == 1800 and second.cseq.seq == 2 and second.body == DOC1
    p.receive_response(second, ok(second, "e", 1800), 0.2)
    p.handle_timer(1795.2)
    assert one(p).expires == 1800


def test_423_without_a_larger_min_expires_is_a_failure() -> None:
    p = make_publisher(expires=600)
    p.publish(DOC1, 0.0)
    req = one(p)
    p.receive_response(req, answer(req, 423, ("Min-Expires", "300")), 0.1)
    assert drain(p) == [PublishFailed(423, "Interval Too Brief")]
    assert p.requests_to_send() == [] and state(p) is PublisherState.RETRY_WAIT


def test_authentication_retry_with_cseq_plus_one() -> None:
    ids = IdGenerator(random.Random(5))
    auth = DigestAuthenticator([CredentialInfo("example.com", "door", "secret")], ids)
    p = make_publisher(authenticator=auth)
    p.publish(DOC1, 0.0)
    bare = one(p)
    assert bare.authorization == [] and bare.proxy_authorization == []
    challenge = ("WWW-Authenticate", 'Digest realm="example.com", nonce="abc", qop="auth"')
    p.receive_response(bare, answer(bare, 401, challenge), 0.1)
    authed = wire(one(p))
    assert authed.cseq.seq == bare.cseq.seq + 1
    assert authed.body == DOC1 and authed.sip_if_match is None
    [cred] = authed.authorization
    assert cred.params["username"] == "door" and cred.params["uri"] == "sip:door@example.com"
    p.receive_response(authed, ok(authed, "e1", 600), 0.2)
    assert drain(p) == [Published("e1", 600)]
    # The refresh carries credentials pre-emptively.
    p.handle_timer(595.2)
    [cred2] = one(p).authorization
    assert cred2.params["nc"] == "00000002"


def test_wrong_password_fails_clearly_and_retries_later() -> None:
    ids = IdGenerator(random.Random(5))
    auth = DigestAuthenticator([CredentialInfo("example.com", "door", "hunter2pw")], ids)
    p = make_publisher(seed=4, authenticator=auth)
    p.publish(DOC1, 0.0)
    first = one(p)
    ch1 = ("WWW-Authenticate", 'Digest realm="example.com", nonce="n1", qop="auth"')
    p.receive_response(first, answer(first, 401, ch1), 0.1)
    second = one(p)
    ch2 = ("WWW-Authenticate", 'Digest realm="example.com", nonce="n2", qop="auth"')
    p.receive_response(second, answer(second, 401, ch2), 0.2)
    [failed] = drain(p)
    assert isinstance(failed, PublishFailed) and failed.code == 401
    assert "wrong username or password" in failed.reason and "hunter2pw" not in failed.reason
    assert p.requests_to_send() == []
    assert p.get_timer() == pytest.approx(0.2 + 300 + jitter(4))


def test_401_without_authenticator_is_a_failure() -> None:
    p = make_publisher()
    p.publish(DOC1, 0.0)
    req = one(p)
    p.receive_response(
        req, answer(req, 401, ("WWW-Authenticate", 'Digest realm="r", nonce="n"')), 1
    )
    assert drain(p) == [PublishFailed(401, "Unauthorized")]


def test_failure_retries_after_interval_plus_jitter() -> None:
    p = make_publisher(seed=11)
    p.publish(DOC1, 0.0)
    req = one(p)
    p.receive_response(req, answer(req, 500), 1.0)
    assert drain(p) == [PublishFailed(500, "Server Internal Error")]
    due = 1.0 + 300 + jitter(11)
    assert p.get_timer() == pytest.approx(due)
    assert state(p) is PublisherState.RETRY_WAIT
    p.handle_timer(due - 0.01)
    assert p.requests_to_send() == []
    p.handle_timer(due)
    again = one(p)
    assert again.body == DOC1 and again.sip_if_match is None and again.cseq.seq == 2
    # A second failure draws a fresh jitter.
    p.receive_response(again, answer(again, 503), due + 1)
    assert p.get_timer() == pytest.approx(due + 1 + 300 + jitter(11, 2))


def test_retry_after_is_honoured() -> None:
    p = make_publisher()
    p.publish(DOC1, 0.0)
    req = one(p)
    p.receive_response(req, answer(req, 503, ("Retry-After", "42")), 1.0)
    assert p.get_timer() == 43.0


def test_timeout_and_lost_report_count_as_408() -> None:
    p = make_publisher(seed=2, response_guard=64.0)
    p.publish(DOC1, 0.0)
    req = one(p)
    p.request_failed(req, "Timer F expired", 32.0)
    assert drain(p) == [PublishFailed(408, "Timer F expired")]
    p.publish(DOC2, 40.0)  # a new status is tried at once
    req2 = one(p)
    assert p.get_timer() == 104.0
    p.handle_timer(104.0)
    assert drain(p) == [PublishFailed(408, "no response to PUBLISH")]
    p.receive_response(req2, ok(req2, "late", 600), 105.0)  # too late: ignored
    assert drain(p) == [] and p.etag is None


def test_failed_refresh_after_expiry_publishes_anew() -> None:
    p = make_publisher(seed=3, retry_interval=30.0)
    p.publish(DOC1, 0.0)
    req = one(p)
    p.receive_response(req, ok(req, "e1", 60), 0.0)
    p.handle_timer(55.0)
    refresh = one(p)
    assert refresh.sip_if_match == "e1"
    p.receive_response(refresh, answer(refresh, 500), 55.0)
    drain(p)
    due = 55.0 + 30 + jitter(3)
    p.handle_timer(due)  # past the 60 s the server granted: our entity is gone
    anew = one(p)
    assert anew.sip_if_match is None and anew.body == DOC1


def test_failed_refresh_before_expiry_retries_the_refresh() -> None:
    p = make_publisher(seed=3, retry_interval=10.0, retry_jitter=0.0)
    p.publish(DOC1, 0.0)
    req = one(p)
    p.receive_response(req, ok(req, "e1", 600), 0.0)
    p.handle_timer(595.0)
    refresh = one(p)
    p.request_failed(refresh, "transport", 595.0)
    p.handle_timer(597.0)
    assert p.requests_to_send() == []
    p.handle_timer(605.0)
    # 605 > 600: the retry notices the lapse and publishes the body again.
    assert one(p).sip_if_match is None


def test_2xx_without_etag_is_the_servers_fault() -> None:
    p = make_publisher()
    p.publish(DOC1, 0.0)
    req = one(p)
    p.receive_response(req, answer(req, 200, ("Expires", "600")), 0.1)
    [failed] = drain(p)
    assert isinstance(failed, PublishFailed) and "SIP-ETag" in failed.reason
    assert p.etag is None and state(p) is PublisherState.RETRY_WAIT


def test_unpublish_with_nothing_published_needs_no_request() -> None:
    p = make_publisher()
    p.unpublish(0.0)
    assert p.requests_to_send() == []
    assert drain(p) == [Unpublished(True)]


def test_unpublish_while_initial_in_flight_removes_after_it() -> None:
    p = make_publisher()
    p.publish(DOC1, 0.0)
    req = one(p)
    p.unpublish(0.5)
    assert p.requests_to_send() == []
    p.receive_response(req, ok(req, "e1", 600), 1.0)
    remove = one(p)
    assert remove.expires == 0 and remove.sip_if_match == "e1"
    p.receive_response(remove, answer(remove, 200), 1.1)
    assert drain(p) == [Published("e1", 600), Unpublished(True)]
    assert p.get_timer() is None


def test_failed_or_412_removal_is_not_retried() -> None:
    p = make_publisher()
    p.publish(DOC1, 0.0)
    req = one(p)
    p.receive_response(req, ok(req, "e1", 600), 0.0)
    p.unpublish(1.0)
    remove = one(p)
    p.receive_response(remove, answer(remove, 500), 1.1)
    assert drain(p)[1:] == [PublishFailed(500, "Server Internal Error"), Unpublished(False)]
    assert p.get_timer() is None and p.requests_to_send() == []

    p.publish(DOC2, 2.0)
    req = one(p)
    assert req.sip_if_match is None
    p.receive_response(req, ok(req, "e2", 600), 2.0)
    p.unpublish(3.0)
    remove = one(p)
    p.receive_response(remove, answer(remove, 412), 3.1)
    assert drain(p)[1:] == [Unpublished(True)]


def test_412_to_an_initial_publish_is_a_failure_not_a_loop() -> None:
    p = make_publisher()
    p.publish(DOC1, 0.0)
    req = one(p)
    p.receive_response(req, answer(req, 412), 0.1)
    assert drain(p) == [PublishFailed(412, "Conditional Request Failed")]
    assert p.requests_to_send() == []


def test_publish_during_retry_wait_goes_at_once() -> None:
    p = make_publisher()
    p.publish(DOC1, 0.0)
    req = one(p)
    p.receive_response(req, answer(req, 500), 0.1)
    p.publish(DOC2, 5.0)
    assert one(p).body == DOC2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"aor": "not a uri"}, "aor"),
        ({"aor": "tel:+1234"}, "sip/sips"),
        ({"aor": "sip:a@b", "expires": 0}, "expires"),
        ({"aor": "sip:a@b", "retry_interval": 0}, "retry_interval"),
        ({"aor": "sip:a@b", "proxy": ("::bad",)}, "proxy"),
    ],
)
def test_bad_config_raises_value_error(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PublisherConfig(**kwargs)  # type: ignore[arg-type]
