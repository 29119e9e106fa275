"""Client registration (RFC 3261 section 10) driven with a fake clock and hand-made answers.

The test plays the transaction glue: it drains REGISTERs, adds the Via a transaction
would add, and feeds back responses built with ``make_response`` (or failures).
Deadlines are asserted exactly through ``get_timer()``; jitter comes from an rng
whose ``uniform`` returns a chosen point of its range.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import random
import time
from dataclasses import dataclass, field

import pytest

from sipstack.digest import Algorithm, CredentialInfo, DigestAuthenticator, Qop, compute_response
from sipstack.headers import Via
from sipstack.ids import IdGenerator
from sipstack.message import Request, Response, make_response, parse_message
from sipstack.registration import (
    ContactRewritten,
    Registration,
    RegistrationConfig,
    RegistrationEvent,
    RegistrationState,
    RegistrationStateChanged,
    RegistrationStateError,
    RequestFailure,
    refresh_delay,
    retry_delay,
)
from sipstack.uri import parse_uri

S = RegistrationState
AOR = '"Alice" <sip:alice@example.com>'
CONTACT = "sip:alice@192.0.2.10:5060"
REALM = "example.com"
PASSWORD = "s3cret"


class FixedRng(random.Random):
    """``uniform(a, b)`` returns ``a + (b - a) * frac``: 0.5 is the middle of the range."""

    def __init__(self, frac: float = 0.5) -> None:
        super().__init__(0)
        self.frac = frac
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return a + (b - a) * self.frac


def config(**changes: object) -> RegistrationConfig:
    base: dict[str, object] = {"id": AOR, "reg_uri": "sip:example.com", "contact": CONTACT}
    base.update(changes)
    return RegistrationConfig(**base)  # type: ignore[arg-type]


def make_reg(
    rng: random.Random | None = None, auth: DigestAuthenticator | None = None, **changes: object
) -> Registration:
    return Registration(config(**changes), IdGenerator(random.Random(7)), rng or FixedRng(), auth)


def digest_auth(password: str = PASSWORD) -> DigestAuthenticator:
    return DigestAuthenticator(
        [CredentialInfo(REALM, "alice", password)], IdGenerator(random.Random(3))
    )


_branches = itertools.count(1)


def take(reg: Registration) -> Request:
    """Drain exactly one REGISTER and add the Via the client transaction would add."""
    requests = reg.requests_to_send()
    assert len(requests) == 1, requests
    req = requests[0]
    assert req.method == "REGISTER"
    req.headers.prepend("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{next(_branches)};rport")
    # What we send must survive our own parser.
    assert parse_message(req.to_bytes()) == req
    return req


def reply(
    req: Request,
    status: int,
    *,
    contacts: tuple[str, ...] | None = None,
    expires: int | None = None,
    received: str | None = None,
    rport: int | None = None,
    headers: tuple[tuple[str, str], ...] = (),
    wire: bool = True,
) -> Response:
    """A response to ``req``; by default a 2xx lists the request's Contacts as granted.

    ``wire`` sends it through bytes and our parser, as the transport would.
    """
    resp = make_response(req, status, to_tag="reg1")
    if received is not None or rport is not None:
        via = req.top_via
        params = dict(via.params)
        if received is not None:
            params["received"] = received
        if rport is not None:
            params["rport"] = str(rport)
        resp.headers.set("Via", str(Via(via.transport, via.host, via.port, params)))
    if contacts is None and 200 <= status < 300:
        contacts = tuple(c for c in req.headers.get_all("Contact") if not c.endswith(";expires=0"))
    for c in contacts or ():
        resp.headers.add("Contact", c)
    if expires is not None:
        resp.headers.add("Expires", str(expires))
    for name, value in headers:
        resp.headers.add(name, value)
    return parse_message(resp.to_bytes()) if wire else resp  # type: ignore[return-value]


def events(reg: Registration) -> list[RegistrationEvent]:
    out = []
    while (ev := reg.next_event()) is not None:
        out.append(ev)
    return out


def states(reg: Registration) -> list[tuple[S, S]]:
    return [(e.old, e.new) for e in events(reg) if isinstance(e, RegistrationStateChanged)]


def registered(reg: Registration, now: float = 0.0, granted: int = 300) -> Request:
    """Start and complete a first registration at ``now``; returns the REGISTER."""
    reg.start(now)
    req = take(reg)
    reg.receive_response(req, reply(req, 200, contacts=(f"<{CONTACT}>;expires={granted}",)), now)
    assert reg.state is S.REGISTERED
    events(reg)
    return req


# -- the REGISTER request ------------------------------------------------------------------


def test_first_register_carries_rfc3261_10_2_headers() -> None:
    reg = make_reg(
        proxy=("sip:proxy1.example.com", "<sip:proxy2.example.com:5070;lr>"),
        contact_params=';+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>"',
        contact_uri_params=";ob",
        user_agent="intercom/0.1",
        allow=("INVITE", "ACK", "BYE"),
        supported=("path", "outbound"),
    )
    assert reg.state is S.UNREGISTERED and not reg.is_registered
    assert reg.get_timer() is None
    reg.start(100.0)
    req = take(reg)
    assert str(req.uri) == "sip:example.com"
    assert req.from_.display_name == "Alice"
    assert str(req.from_.uri) == "sip:alice@example.com"
    assert req.from_.tag
    assert str(req.to.uri) == "sip:alice@example.com" and req.to.tag is None
    assert req.cseq.method == "REGISTER" and req.cseq.seq == 1
    assert req.call_id == reg.call_id
    assert req.max_forwards == 70
    assert [str(r) for r in req.routes] == [
        "<sip:proxy1.example.com;lr>",
        "<sip:proxy2.example.com:5070;lr>",
    ]
    (contact,) = req.contacts
    assert str(contact.uri) == "sip:alice@192.0.2.10:5060;ob"
    assert contact.params["expires"] == "300"
    assert contact.params["+sip.instance"] == '"<urn:uuid:00000000-0000-0000-0000-000000000001>"'
    assert req.expires == 300
    assert req.user_agent == "intercom/0.1"
    assert req.allow == ["INVITE", "ACK", "BYE"]
    assert req.supported == ["path", "outbound"]
    assert "Authorization" not in req.headers
    assert states(reg) == [(S.UNREGISTERED, S.REGISTERING)]
    # Only the guard against a lost transaction report is pending.
    assert reg.get_timer() == 100.0 + 64.0


def test_optional_headers_left_out_when_not_configured() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    for name in ("Route", "User-Agent", "Allow", "Supported", "Authorization"):
        assert name not in req.headers


def test_call_id_and_from_tag_stable_cseq_increments() -> None:
    reg = make_reg()
    first = registered(reg, 0.0)
    reg.handle_timer(295.0)
    second = take(reg)
    assert second.call_id == first.call_id
    assert second.from_.tag == first.from_.tag
    assert second.cseq.seq == first.cseq.seq + 1
    reg.receive_response(second, reply(second, 200), 295.0)
    reg.stop(300.0)
    third = take(reg)
    assert third.call_id == first.call_id and third.cseq.seq == 3
    reg.receive_response(third, reply(third, 200), 300.0)
    reg.start(400.0)  # a restart in the same boot keeps the Call-ID (RFC 3261 10.2)
    fourth = take(reg)
    assert fourth.call_id == first.call_id and fourth.cseq.seq == 4


@pytest.mark.parametrize("text", ["sip:", "mailto:a@b", "<sip:a@b"])
@pytest.mark.parametrize("field_name", ["id", "reg_uri", "contact"])
def test_bad_addresses_are_configuration_errors(field_name: str, text: str) -> None:
    with pytest.raises(ValueError, match=f"RegistrationConfig.{field_name}"):
        config(**{field_name: text})


@pytest.mark.parametrize(
    "changes",
    [
        {"reg_timeout": 0},
        {"reg_retry_interval": -1},
        {"unreg_timeout": 0},
        {"proxy": ("tel:+123",)},
        {"contact_params": ';a="unterminated'},
    ],
)
def test_bad_settings_are_configuration_errors(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="RegistrationConfig"):
        config(**changes)


# -- granted expiry and refresh -------------------------------------------------------------


def test_refresh_at_granted_minus_delay_before_refresh() -> None:
    reg = make_reg()
    reg.start(1000.0)
    req = take(reg)
    events(reg)
    reg.receive_response(req, reply(req, 200), 1001.0)  # lists our Contact;expires=300
    (ev,) = events(reg)
    assert isinstance(ev, RegistrationStateChanged)
    assert (ev.old, ev.new, ev.status_code, ev.expires) == (S.REGISTERING, S.REGISTERED, 200, 300)
    assert ev.is_registered and reg.is_registered
    assert reg.status_code == 200 and reg.status_text == "OK"
    assert reg.granted_expires == 300
    # Counted from when the REGISTER was built (1000), the safe side.
    assert reg.expires_remaining(1001.0) == 299
    assert reg.get_timer() == 1295.0
    reg.handle_timer(1294.999)
    assert reg.requests_to_send() == [] and reg.state is S.REGISTERED
    reg.handle_timer(1295.0)
    assert states(reg) == [(S.REGISTERED, S.REFRESHING)]
    assert reg.is_registered  # the binding is still valid while the refresh is out
    refresh = take(reg)
    assert refresh.contacts[0].params["expires"] == "300"
    reg.receive_response(refresh, reply(refresh, 200), 1295.5)
    assert states(reg) == [(S.REFRESHING, S.REGISTERED)]
    assert reg.get_timer() == 1295.0 + 295.0


def test_other_bindings_ignored_ours_matched_by_uri_equality() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    # RFC 3261 19.1.4: host case and a parameter present on one side only do not matter.
    contacts = (
        "<sip:alice@198.51.100.7:5060>;expires=3600",
        "<sip:alice@192.0.2.10:5060;x-added=1>;expires=90;q=0.5",
        "<sip:alice@192.0.2.10:5062>;expires=10",
    )
    reg.receive_response(req, reply(req, 200, contacts=contacts, expires=1000), 0.0)
    assert reg.granted_expires == 90
    assert reg.get_timer() == 85.0


@pytest.mark.parametrize(
    ("contacts", "expires", "granted"),
    [
        ((f"<{CONTACT}>",), 120, 120),  # our Contact without expires: the Expires header
        (("<sip:alice@198.51.100.7>;expires=77",), 150, 150),  # ours not listed: Expires
        ((), None, 300),  # nothing at all: what we asked
        ((f"<{CONTACT}>;expires=3600",), None, 3600),  # longer than asked: still honoured
    ],
)
def test_granted_expiry_fallbacks(
    contacts: tuple[str, ...], expires: int | None, granted: int
) -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200, contacts=contacts, expires=expires), 0.0)
    assert reg.granted_expires == granted
    assert reg.get_timer() == refresh_delay(granted, 5)


def test_short_grant_refreshes_at_half_not_at_once() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200, contacts=(f"<{CONTACT}>;expires=8",)), 0.0)
    assert reg.get_timer() == 4.0  # max(8 - 5, 8 / 2)


@pytest.mark.parametrize(
    ("granted", "delay", "expected"),
    [(300, 5, 295), (3600, 5, 3595), (60, 50, 30), (8, 5, 4), (1, 5, 0.5), (10, 0, 10)],
)
def test_refresh_delay_rule(granted: int, delay: int, expected: float) -> None:
    assert refresh_delay(granted, delay) == expected


def test_granted_zero_is_a_failure_not_a_registration() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    events(reg)
    reg.receive_response(req, reply(req, 200, contacts=(f"<{CONTACT}>;expires=0",)), 0.0)
    assert reg.state is S.RETRY_WAIT and not reg.is_registered
    (ev,) = [e for e in events(reg) if isinstance(e, RegistrationStateChanged)]
    assert ev.status_code == 200 and "no time" in ev.note


def test_binding_expires_while_refresh_unanswered() -> None:
    reg = make_reg()
    registered(reg, 0.0)
    reg.handle_timer(295.0)
    refresh = take(reg)
    events(reg)
    assert reg.get_timer() == 300.0  # the granted expiry comes before the 64 s guard
    reg.handle_timer(300.0)
    assert states(reg) == [(S.REFRESHING, S.REGISTERING)]
    assert not reg.is_registered and reg.expires_remaining(300.0) is None
    assert reg.requests_to_send() == []  # the refresh is still out: no second REGISTER
    reg.receive_response(refresh, reply(refresh, 200), 310.0)
    assert reg.state is S.REGISTERED
    assert reg.get_timer() == 295.0 + 295.0


def test_late_answer_makes_refresh_due_at_once() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200, contacts=(f"<{CONTACT}>;expires=20",)), 18.0)
    assert reg.get_timer() == 18.0  # built at 0, refresh due at 15: now
    reg.handle_timer(18.0)
    assert reg.state is S.REFRESHING and take(reg).cseq.seq == 2


def test_answer_after_the_grant_ran_out_registers_again() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    events(reg)
    reg.receive_response(req, reply(req, 200, contacts=(f"<{CONTACT}>;expires=20",)), 25.0)
    assert reg.state is S.REGISTERING and not reg.is_registered
    assert take(reg).cseq.seq == 2
    assert events(reg) == []


def test_provisional_response_ignored() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, make_response(req, 100), 0.1)
    assert reg.state is S.REGISTERING and reg.requests_to_send() == []
    reg.receive_response(req, reply(req, 200), 0.2)
    assert reg.state is S.REGISTERED


# -- 423 -----------------------------------------------------------------------------------


def test_423_retries_at_once_with_min_expires() -> None:
    reg = make_reg(reg_timeout=30)
    reg.start(0.0)
    req = take(reg)
    events(reg)
    reg.receive_response(req, reply(req, 423, headers=(("Min-Expires", "600"),)), 0.5)
    again = take(reg)
    assert again.cseq.seq == req.cseq.seq + 1
    assert again.expires == 600 and again.contacts[0].params["expires"] == "600"
    assert reg.state is S.REGISTERING and events(reg) == []
    reg.receive_response(again, reply(again, 200), 0.6)
    assert reg.granted_expires == 600
    reg.handle_timer(595.5)
    assert take(reg).expires == 600  # refreshes keep asking what the registrar accepts


@pytest.mark.parametrize("min_expires", [None, "30", "10"])
def test_423_without_usable_min_expires_fails(min_expires: str | None) -> None:
    reg = make_reg(reg_timeout=30)
    reg.start(0.0)
    req = take(reg)
    headers = () if min_expires is None else (("Min-Expires", min_expires),)
    reg.receive_response(req, reply(req, 423, headers=headers), 0.0)
    assert reg.state is S.RETRY_WAIT and reg.status_code == 423
    assert reg.requests_to_send() == []


# -- authentication ------------------------------------------------------------------------


def challenge(nonce: str, stale: bool = False) -> str:
    value = f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5'
    return value + ", stale=true" if stale else value


def check_digest(req: Request, header: str = "Authorization", password: str = PASSWORD) -> str:
    """Verify the credentials as a registrar would; returns the nonce used."""
    creds = (req.authorization if header == "Authorization" else req.proxy_authorization)[0]
    p = creds.params
    assert p["username"] == "alice" and p["realm"] == REALM and p["uri"] == "sip:example.com"
    expected = compute_response(
        Algorithm.MD5,
        username="alice",
        realm=REALM,
        method="REGISTER",
        uri=p["uri"],
        nonce=p["nonce"],
        password=password,
        qop=Qop.AUTH,
        nc=int(p["nc"], 16),
        cnonce=p["cnonce"],
    )
    assert p["response"] == expected
    return p["nonce"]


@pytest.mark.parametrize(
    ("status", "challenge_header", "credentials_header"),
    [
        (401, "WWW-Authenticate", "Authorization"),
        (407, "Proxy-Authenticate", "Proxy-Authorization"),
    ],
)
def test_challenge_answered_with_cseq_plus_one(
    status: int, challenge_header: str, credentials_header: str
) -> None:
    reg = make_reg(auth=digest_auth())
    reg.start(0.0)
    req = take(reg)
    events(reg)
    reg.receive_response(
        req, reply(req, status, headers=((challenge_header, challenge("n1")),)), 0.1
    )
    again = take(reg)
    assert again.cseq.seq == req.cseq.seq + 1 and again.call_id == req.call_id
    assert check_digest(again, credentials_header) == "n1"
    assert reg.state is S.REGISTERING and events(reg) == []
    reg.receive_response(again, reply(again, 200), 0.2)
    assert reg.state is S.REGISTERED
    # The refresh is authorised pre-emptively with the cached nonce (nc goes up).
    assert reg.get_timer() == 0.1 + 295.0  # counted from the answered REGISTER
    reg.handle_timer(295.1)
    refresh = take(reg)
    assert check_digest(refresh, credentials_header) == "n1"
    creds = refresh.authorization or refresh.proxy_authorization
    assert creds[0].params["nc"] == "00000002"


def test_wrong_password_reported_and_retried_on_schedule() -> None:
    reg = make_reg(auth=digest_auth("bad-pw-xyz"), reg_first_retry_interval=30)
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(
        req, reply(req, 401, headers=(("WWW-Authenticate", challenge("n1")),)), 0.0
    )
    again = take(reg)
    with pytest.raises(AssertionError):
        check_digest(again)  # the registrar's view: the response does not verify
    reg.receive_response(
        again, reply(again, 401, headers=(("WWW-Authenticate", challenge("n2")),)), 0.1
    )
    assert reg.state is S.RETRY_WAIT and not reg.is_registered
    assert reg.status_code == 401
    ev = [e for e in events(reg) if isinstance(e, RegistrationStateChanged)][-1]
    assert ev.new is S.RETRY_WAIT and ev.status_code == 401
    assert "wrong username or password" in ev.note and "'alice'" in ev.note
    assert "bad-pw-xyz" not in ev.note  # secrets never reach a log line
    assert reg.requests_to_send() == []  # no immediate loop with the bad password
    assert reg.get_timer() == 0.1 + 30.0  # unlike pjsua, it keeps trying
    reg.handle_timer(30.1)
    retry = take(reg)
    assert reg.state is S.REGISTERING
    # The server is still refusing: the schedule goes on (second failure: 300 s).
    reg.receive_response(
        retry, reply(retry, 401, headers=(("WWW-Authenticate", challenge("n3")),)), 30.2
    )
    fresh = take(reg)
    reg.receive_response(
        fresh, reply(fresh, 401, headers=(("WWW-Authenticate", challenge("n4")),)), 30.3
    )
    assert reg.state is S.RETRY_WAIT and reg.get_timer() == pytest.approx(30.3 + 300.0)


def test_password_fixed_on_server_brings_it_back() -> None:
    reg = make_reg(auth=digest_auth("typo"), reg_retry_interval=60)
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(
        req, reply(req, 401, headers=(("WWW-Authenticate", challenge("n1")),)), 0.0
    )
    again = take(reg)
    reg.receive_response(
        again, reply(again, 401, headers=(("WWW-Authenticate", challenge("n2")),)), 0.0
    )
    assert reg.state is S.RETRY_WAIT
    # The administrator sets the account's password to what the device sends.
    reg.handle_timer(60.0)
    retry = take(reg)
    reg.receive_response(
        retry, reply(retry, 401, headers=(("WWW-Authenticate", challenge("n5")),)), 60.0
    )
    answered = take(reg)
    check_digest(answered, password="typo")
    reg.receive_response(answered, reply(answered, 200), 60.1)
    assert reg.state is S.REGISTERED and reg.is_registered


def test_stale_nonce_is_answered_not_a_failure() -> None:
    reg = make_reg(auth=digest_auth())
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(
        req, reply(req, 401, headers=(("WWW-Authenticate", challenge("n1")),)), 0.0
    )
    ok = take(reg)
    reg.receive_response(ok, reply(ok, 200), 0.0)
    reg.handle_timer(295.0)
    refresh = take(reg)  # pre-emptive with n1
    reg.receive_response(
        refresh,
        reply(refresh, 401, headers=(("WWW-Authenticate", challenge("n2", stale=True)),)),
        295.0,
    )
    again = take(reg)
    assert check_digest(again) == "n2"
    assert reg.state is S.REFRESHING and reg.is_registered
    reg.receive_response(again, reply(again, 200), 295.1)
    assert reg.state is S.REGISTERED


def test_challenge_without_authenticator_fails() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(
        req, reply(req, 401, headers=(("WWW-Authenticate", challenge("n1")),)), 0.0
    )
    assert reg.state is S.RETRY_WAIT and reg.status_code == 401
    assert "no credentials" in reg_note(reg)


def test_unusable_challenge_is_the_registrars_fault() -> None:
    reg = make_reg(auth=digest_auth())
    reg.start(0.0)
    req = take(reg)
    bad = reply(req, 401, headers=(("WWW-Authenticate", 'Digest realm="x'),), wire=False)
    reg.receive_response(req, bad, 0.0)
    assert reg.state is S.RETRY_WAIT and reg.status_code == 401
    assert "unusable challenge" in reg_note(reg)


def reg_note(reg: Registration) -> str:
    return [e for e in events(reg) if isinstance(e, RegistrationStateChanged)][-1].note


def test_endless_stale_challenges_are_bounded() -> None:
    reg = make_reg(auth=digest_auth())
    reg.start(0.0)
    for i in range(10):
        reqs = reg.requests_to_send()
        if not reqs:
            break
        (req,) = reqs
        req.headers.prepend("Via", f"SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKs{i}")
        hdr = ("WWW-Authenticate", challenge(f"n{i}", stale=i > 0))
        reg.receive_response(req, reply(req, 401, headers=(hdr,)), 0.0)
    assert i < 6 and reg.state is S.RETRY_WAIT and reg.status_code == 401
    # the user is told it is the registrar's nonces, not the password
    note = reg_note(reg)
    assert "stale=true" in note and "password is not in question" in note, note


def test_answer_refused_without_stale_is_not_blamed_on_nonces() -> None:
    # A fresh challenge without stale=true after our answer means the password
    # was refused (the digest layer says so): the note must not blame nonces.
    reg = make_reg(auth=digest_auth())
    reg.start(0.0)
    for i in range(10):
        reqs = reg.requests_to_send()
        if not reqs:
            break
        (req,) = reqs
        req.headers.prepend("Via", f"SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKf{i}")
        hdr = ("WWW-Authenticate", challenge(f"n{i}"))
        reg.receive_response(req, reply(req, 401, headers=(hdr,)), 0.0)
    assert reg.state is S.RETRY_WAIT and reg.status_code == 401
    assert "stale" not in reg_note(reg)


# -- failures and retry schedule ---------------------------------------------------------------


def fail_once(reg: Registration, now: float, status: int = 500, **kw: object) -> None:
    req = take(reg)
    reg.receive_response(req, reply(req, status, **kw), now)  # type: ignore[arg-type]


def test_retry_schedule_first_then_regular_reset_by_success() -> None:
    rng = FixedRng(0.5)  # jitter 0
    reg = make_reg(rng=rng, reg_first_retry_interval=30, reg_retry_interval=300)
    reg.start(0.0)
    fail_once(reg, 1.0)
    assert reg.state is S.RETRY_WAIT and reg.get_timer() == 31.0
    (ev,) = [e for e in events(reg) if e.new is S.RETRY_WAIT]  # type: ignore[union-attr]
    assert isinstance(ev, RegistrationStateChanged) and ev.retry_in == 30.0
    reg.handle_timer(31.0)
    fail_once(reg, 32.0, 404)
    assert reg.get_timer() == 332.0 and reg.status_code == 404
    reg.handle_timer(332.0)
    fail_once(reg, 333.0, 603)
    assert reg.get_timer() == 633.0
    reg.handle_timer(633.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200), 633.0)
    assert reg.state is S.REGISTERED
    reg.handle_timer(928.0)  # refresh ...
    fail_once(reg, 928.0, 500)  # ... fails: the first failure of a new series
    assert reg.get_timer() == 958.0


def test_first_retry_zero_means_regular_interval() -> None:
    reg = make_reg(reg_first_retry_interval=0, reg_retry_interval=120)
    reg.start(0.0)
    fail_once(reg, 0.0)
    assert reg.get_timer() == 120.0


@pytest.mark.parametrize(("frac", "expected"), [(0.0, 290.0), (1.0, 310.0)])
def test_jitter_bounds_long_interval(frac: float, expected: float) -> None:
    reg = make_reg(rng=FixedRng(frac), reg_retry_interval=300)
    reg.start(0.0)
    fail_once(reg, 0.0)
    assert reg.get_timer() == expected


def test_jitter_short_interval_never_below_half() -> None:
    rng = FixedRng(0.0)
    assert retry_delay(4.0, rng) == 2.0
    assert rng.calls == [(-2.0, 2.0)]
    assert retry_delay(0.0, rng) == 0.0
    assert retry_delay(100.0, FixedRng(1.0), only_later=True) == 110.0
    assert retry_delay(100.0, FixedRng(0.0), only_later=True) == 100.0
    real = random.Random(5)
    for _ in range(1000):
        assert 290.0 <= retry_delay(300.0, real) <= 310.0
        assert 1.5 <= retry_delay(3.0, real) <= 4.5


def test_retry_disabled_when_interval_zero() -> None:
    reg = make_reg(reg_retry_interval=0)
    reg.start(0.0)
    fail_once(reg, 0.0, 403)
    assert reg.state is S.RETRY_WAIT and reg.get_timer() is None
    ev = [e for e in events(reg) if isinstance(e, RegistrationStateChanged)][-1]
    assert ev.retry_in is None and "disabled" in ev.note
    reg.refresh(10.0)  # the application can still ask
    assert reg.state is S.REGISTERING and take(reg).cseq.seq == 2


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("30", 30.0), ("45 (maintenance);duration=10", 45.0), ("0", 1.0), ("999999", 3600.0)],
)
def test_retry_after_honoured(retry_after: str, expected: float) -> None:
    reg = make_reg(rng=FixedRng(0.0), reg_first_retry_interval=5)
    reg.start(0.0)
    fail_once(reg, 0.0, 503, headers=(("Retry-After", retry_after),))
    assert reg.state is S.RETRY_WAIT and reg.status_code == 503
    assert reg.get_timer() == expected


def test_retry_after_jitter_only_later() -> None:
    rng = FixedRng(0.5)
    reg = make_reg(rng=rng)
    reg.start(0.0)
    fail_once(reg, 0.0, 503, headers=(("Retry-After", "30"),))
    assert rng.calls == [(0.0, 10.0)] and reg.get_timer() == 35.0


def test_failed_refresh_never_claims_registered() -> None:
    reg = make_reg(reg_first_retry_interval=20)
    registered(reg, 0.0)
    reg.handle_timer(295.0)
    assert reg.is_registered
    refresh = take(reg)
    events(reg)
    reg.receive_response(refresh, reply(refresh, 500), 295.2)
    (ev,) = events(reg)
    assert isinstance(ev, RegistrationStateChanged)
    assert (ev.old, ev.new, ev.status_code, ev.is_registered) == (
        S.REFRESHING,
        S.RETRY_WAIT,
        500,
        False,
    )
    assert ev.expires is None
    assert not reg.is_registered and reg.expires_remaining(296.0) is None
    assert reg.granted_expires is None
    assert reg.get_timer() == 315.2  # no stale refresh/expiry timers left behind


@pytest.mark.parametrize(
    ("failure", "detail", "status", "text"),
    [
        (RequestFailure.TIMEOUT, "", 408, "Request Timeout"),
        (RequestFailure.TRANSPORT_ERROR, "connection refused", 503, "connection refused"),
        (RequestFailure.TRANSPORT_ERROR, "", 503, "Service Unavailable"),
    ],
)
def test_timeout_and_transport_error(
    failure: RequestFailure, detail: str, status: int, text: str
) -> None:
    reg = make_reg(reg_first_retry_interval=10)
    registered(reg, 0.0)
    reg.handle_timer(295.0)
    refresh = take(reg)
    events(reg)
    reg.request_failed(refresh, failure, 327.0, detail)
    assert reg.state is S.RETRY_WAIT and not reg.is_registered
    assert (reg.status_code, reg.status_text) == (status, text)
    assert reg.get_timer() == 337.0


def test_guard_when_the_transaction_never_reports() -> None:
    reg = make_reg(reg_first_retry_interval=10)
    reg.start(0.0)
    req = take(reg)
    assert reg.get_timer() == 64.0
    reg.handle_timer(64.0)
    assert reg.state is S.RETRY_WAIT and reg.status_code == 408
    assert "no final response within 64 s" in reg.status_text
    reg.receive_response(req, reply(req, 200), 65.0)  # too late: ignored
    assert reg.state is S.RETRY_WAIT


def test_answer_to_unknown_request_ignored() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    other = req.copy()
    other.headers.set("CSeq", "99 REGISTER")
    reg.receive_response(other, reply(other, 200), 0.0)
    reg.request_failed(other, RequestFailure.TIMEOUT, 0.0)
    assert reg.state is S.REGISTERING


# -- contact rewrite (RFC 3581) ------------------------------------------------------------------


def test_contact_rewritten_from_received_rport_old_binding_removed() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    events(reg)
    reg.receive_response(req, reply(req, 200, received="203.0.113.5", rport=40000), 0.1)
    evs = events(reg)
    assert len(evs) == 1 and isinstance(evs[0], ContactRewritten)
    assert str(evs[0].old_contact) == CONTACT
    assert str(evs[0].new_contact) == "sip:alice@203.0.113.5:40000"
    assert "203.0.113.5:40000" in evs[0].note
    assert reg.state is S.REGISTERING and not reg.is_registered  # not REGISTERED in between
    again = take(reg)
    assert again.cseq.seq == 2
    new, old = again.contacts
    assert str(new.uri) == "sip:alice@203.0.113.5:40000" and new.params["expires"] == "300"
    assert str(old.uri) == CONTACT and old.params["expires"] == "0"
    assert again.expires == 300
    reg.receive_response(again, reply(again, 200, received="203.0.113.5", rport=40000), 0.2)
    assert reg.state is S.REGISTERED and str(reg.contact) == "sip:alice@203.0.113.5:40000"
    assert [type(e) for e in events(reg)] == [RegistrationStateChanged]
    reg.handle_timer(295.1)
    refresh = take(reg)
    assert [str(c.uri) for c in refresh.contacts] == ["sip:alice@203.0.113.5:40000"]
    reg.receive_response(refresh, reply(refresh, 200, received="203.0.113.5", rport=40000), 295.2)
    assert reg.state is S.REGISTERED and reg.requests_to_send() == []


def test_rewrite_keeps_uri_params_and_follows_a_later_nat_change() -> None:
    reg = make_reg(contact="sip:alice@10.0.0.2:5060;transport=udp")
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200, received="203.0.113.5", rport=1024), 0.0)
    again = take(reg)
    assert str(again.contacts[0].uri) == "sip:alice@203.0.113.5:1024;transport=udp"
    reg.receive_response(again, reply(again, 200, received="203.0.113.5", rport=1024), 0.0)
    assert reg.state is S.REGISTERED
    # The NAT maps us to a new port: one rewrite, removing the previous binding.
    reg.handle_timer(295.0)
    refresh = take(reg)
    reg.receive_response(refresh, reply(refresh, 200, received="203.0.113.5", rport=2048), 295.0)
    moved = take(reg)
    assert [(str(c.uri), c.params["expires"]) for c in moved.contacts] == [
        ("sip:alice@203.0.113.5:2048;transport=udp", "300"),
        ("sip:alice@203.0.113.5:1024;transport=udp", "0"),
    ]


def test_rewrite_at_most_once_per_observed_address_no_loop() -> None:
    """A registrar whose view moves on every answer costs one extra REGISTER per
    cycle at most, never a loop."""
    reg = make_reg()
    reg.start(0.0)
    now = 0.0
    sent = 0
    for port in range(40000, 40020):
        for req in reg.requests_to_send():
            sent += 1
            req.headers.prepend("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKl{sent};rport")
            reg.receive_response(req, reply(req, 200, received="203.0.113.5", rport=port), now)
        for req in reg.requests_to_send():  # the rewrite (answered with yet another port)
            sent += 1
            req.headers.prepend("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKm{sent};rport")
            reg.receive_response(
                req, reply(req, 200, received="203.0.113.5", rport=port + 1000), now
            )
        assert reg.requests_to_send() == []
        assert reg.state is S.REGISTERED
        timer = reg.get_timer()
        assert timer is not None
        now = timer
        reg.handle_timer(now)
    assert sent <= 2 * 20


def test_same_observed_address_rewritten_only_once() -> None:
    """A registrar that keeps reporting an address our Contact can never equal
    (e.g. an ALG mangling the Via) gets one rewrite, not one per refresh."""
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200, received="203.0.113.5", rport=40000), 0.0)
    rewrite = take(reg)
    # The answer to the rewrite reports the original address again.
    reg.receive_response(rewrite, reply(rewrite, 200, received="192.0.2.10", rport=5060), 0.0)
    assert reg.state is S.REGISTERED and reg.requests_to_send() == []
    now = 0.0
    for _ in range(5):  # the view did not change since the last 2xx: no more rewrites
        now += 295.0
        reg.handle_timer(now)
        refresh = take(reg)
        reg.receive_response(refresh, reply(refresh, 200, received="192.0.2.10", rport=5060), now)
        assert reg.requests_to_send() == [] and reg.state is S.REGISTERED
    assert str(reg.contact) == "sip:alice@203.0.113.5:40000"


@pytest.mark.parametrize(
    ("contact", "received", "rport"),
    [
        (CONTACT, "192.0.2.10", 5060),  # what we said
        ("sip:alice@192.0.2.10", "192.0.2.10", 5060),  # default port on both sides
        ("sip:alice@[2001:db8::1]:5060", "2001:db8:0:0::1", 5060),  # same IPv6 address
        (CONTACT, None, None),  # the registrar filled in nothing
    ],
)
def test_no_rewrite_when_address_matches(
    contact: str, received: str | None, rport: int | None
) -> None:
    reg = make_reg(contact=contact)
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200, received=received, rport=rport), 0.0)
    assert reg.state is S.REGISTERED and reg.requests_to_send() == []


def test_rport_alone_triggers_rewrite_of_port() -> None:
    reg = make_reg()
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200, rport=6000), 0.0)
    assert str(take(reg).contacts[0].uri) == "sip:alice@192.0.2.10:6000"


def test_no_rewrite_when_disabled() -> None:
    reg = make_reg(allow_contact_rewrite=False)
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200, received="203.0.113.5", rport=40000), 0.0)
    assert reg.state is S.REGISTERED and reg.requests_to_send() == []
    assert str(reg.contact) == CONTACT


def test_rewrite_request_failing_keeps_removing_old_contact() -> None:
    reg = make_reg(reg_first_retry_interval=10)
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200, received="203.0.113.5", rport=40000), 0.0)
    rewrite = take(reg)
    reg.request_failed(rewrite, RequestFailure.TIMEOUT, 32.0)
    assert reg.state is S.RETRY_WAIT
    reg.handle_timer(42.0)
    retry = take(reg)
    assert [(str(c.uri), c.params["expires"]) for c in retry.contacts] == [
        ("sip:alice@203.0.113.5:40000", "300"),
        (CONTACT, "0"),
    ]
    reg.receive_response(retry, reply(retry, 200, received="203.0.113.5", rport=40000), 42.0)
    reg.handle_timer(337.0)
    assert len(take(reg).contacts) == 1


# -- network change --------------------------------------------------------------------------


def test_set_contact_registers_new_and_removes_old() -> None:
    reg = make_reg(contact_uri_params=";ob")
    registered_contact = "sip:alice@192.0.2.10:5060;ob"
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(req, reply(req, 200), 0.0)
    events(reg)
    reg.set_contact("sip:alice@198.51.100.20:5060", 100.0)
    assert states(reg) == [(S.REGISTERED, S.REGISTERING)]
    assert not reg.is_registered
    moved = take(reg)
    assert [(str(c.uri), c.params["expires"]) for c in moved.contacts] == [
        ("sip:alice@198.51.100.20:5060;ob", "300"),
        (registered_contact, "0"),
    ]
    reg.receive_response(moved, reply(moved, 200), 100.2)
    assert reg.state is S.REGISTERED and reg.get_timer() == 395.0
    reg.set_contact(parse_uri("sip:alice@198.51.100.20:5060"), 101.0)  # same: nothing
    assert reg.requests_to_send() == [] and reg.state is S.REGISTERED


def test_set_contact_supersedes_unanswered_register() -> None:
    reg = make_reg()
    registered(reg, 0.0)
    reg.handle_timer(295.0)
    stuck = take(reg)  # the refresh went out on the old network
    reg.set_contact("sip:alice@198.51.100.20", 296.0)
    moved = take(reg)
    assert moved.cseq.seq == stuck.cseq.seq + 1
    reg.receive_response(stuck, reply(stuck, 200), 297.0)  # late: ignored
    assert reg.state is S.REGISTERING
    reg.receive_response(moved, reply(moved, 200), 297.0)
    assert reg.state is S.REGISTERED and str(reg.contact) == "sip:alice@198.51.100.20"


def test_set_contact_while_idle_only_changes_the_contact() -> None:
    reg = make_reg()
    reg.set_contact("sip:alice@198.51.100.20", 0.0)
    assert reg.requests_to_send() == [] and reg.state is S.UNREGISTERED
    reg.start(1.0)
    assert [str(c.uri) for c in take(reg).contacts] == ["sip:alice@198.51.100.20"]


def test_flapping_network_bounds_the_removal_list() -> None:
    reg = make_reg()
    registered(reg, 0.0)
    for i in range(10):
        reg.set_contact(f"sip:alice@198.51.100.{i + 1}", 10.0 + i)
        reg.requests_to_send()
    req = reg.requests_to_send() or None
    assert req is None
    reg.set_contact("sip:alice@198.51.100.99", 30.0)
    (last,) = reg.requests_to_send()
    assert 1 < len(last.contacts) <= 5


# -- refresh() and start() -------------------------------------------------------------------


def test_refresh_api() -> None:
    reg = make_reg()
    with pytest.raises(RegistrationStateError, match="unregistered"):
        reg.refresh(0.0)
    registered(reg, 0.0)
    reg.refresh(10.0)
    assert states(reg) == [(S.REGISTERED, S.REFRESHING)]
    req = take(reg)
    reg.refresh(11.0)  # already out: nothing more
    assert reg.requests_to_send() == []
    reg.receive_response(req, reply(req, 200), 11.0)
    assert reg.get_timer() == 305.0
    reg.start(12.0)  # start() on an active registration refreshes
    assert reg.state is S.REFRESHING and take(reg).cseq.seq == 3


def test_refresh_from_retry_wait_retries_now() -> None:
    reg = make_reg()
    reg.start(0.0)
    fail_once(reg, 0.0)
    reg.refresh(5.0)
    assert reg.state is S.REGISTERING and take(reg).cseq.seq == 2


# -- stop() / unregister ----------------------------------------------------------------------


def test_stop_unregisters_our_contact_only() -> None:
    reg = make_reg()
    registered(reg, 0.0)
    reg.stop(100.0)
    assert states(reg) == [(S.REGISTERED, S.UNREGISTERING)]
    assert not reg.is_registered
    req = take(reg)
    assert not req.contact_star
    (contact,) = req.contacts
    assert str(contact.uri) == CONTACT and contact.params["expires"] == "0"
    assert req.expires == 0
    assert reg.get_timer() == 104.0  # unreg_timeout (the 64 s guard is later)
    reg.receive_response(req, reply(req, 200, contacts=()), 100.1)
    (ev,) = events(reg)
    assert isinstance(ev, RegistrationStateChanged)
    assert (ev.old, ev.new, ev.status_code, ev.note) == (
        S.UNREGISTERING,
        S.UNREGISTERED,
        200,
        "unregistered",
    )
    assert reg.get_timer() is None
    reg.stop(101.0)  # idempotent
    assert reg.requests_to_send() == [] and events(reg) == []


def test_stop_bounded_by_unreg_timeout() -> None:
    reg = make_reg(unreg_timeout=2.5)
    registered(reg, 0.0)
    reg.stop(50.0)
    req = take(reg)
    events(reg)
    reg.handle_timer(52.4)
    assert reg.state is S.UNREGISTERING
    reg.handle_timer(52.5)
    (ev,) = events(reg)
    assert isinstance(ev, RegistrationStateChanged)
    assert ev.new is S.UNREGISTERED and ev.status_code == 408 and "2.5 s" in ev.note
    assert reg.get_timer() is None
    reg.receive_response(req, reply(req, 200), 53.0)  # late: ignored
    assert events(reg) == []


@pytest.mark.parametrize("how", ["500", "timeout", "transport"])
def test_stop_done_even_on_failure(how: str) -> None:
    reg = make_reg()
    registered(reg, 0.0)
    reg.stop(10.0)
    req = take(reg)
    events(reg)
    if how == "500":
        reg.receive_response(req, reply(req, 500), 10.1)
    elif how == "timeout":
        reg.request_failed(req, RequestFailure.TIMEOUT, 10.1)
    else:
        reg.request_failed(req, RequestFailure.TRANSPORT_ERROR, 10.1, "network unreachable")
    (ev,) = events(reg)
    assert isinstance(ev, RegistrationStateChanged)
    assert ev.new is S.UNREGISTERED and ev.status_code in (500, 408, 503)
    assert reg.get_timer() is None and reg.requests_to_send() == []


def test_stop_answers_a_challenge() -> None:
    reg = make_reg(auth=digest_auth())
    reg.start(0.0)
    req = take(reg)
    reg.receive_response(
        req, reply(req, 401, headers=(("WWW-Authenticate", challenge("n1")),)), 0.0
    )
    ok = take(reg)
    reg.receive_response(ok, reply(ok, 200), 0.0)
    reg.stop(10.0)
    unreg = take(reg)
    reg.receive_response(
        unreg, reply(unreg, 401, headers=(("WWW-Authenticate", challenge("n9")),)), 10.1
    )
    again = take(reg)
    assert check_digest(again) == "n9" and again.expires == 0
    assert reg.state is S.UNREGISTERING
    reg.receive_response(again, reply(again, 200, contacts=()), 10.2)
    assert reg.state is S.UNREGISTERED and reg.status_code == 200


def test_stop_while_registering_supersedes_and_removes_old_contacts() -> None:
    reg = make_reg()
    registered(reg, 0.0)
    reg.set_contact("sip:alice@198.51.100.20", 10.0)
    moving = take(reg)
    reg.stop(11.0)
    unreg = take(reg)
    assert unreg.cseq.seq == moving.cseq.seq + 1
    assert sorted((str(c.uri), c.params["expires"]) for c in unreg.contacts) == [
        (CONTACT, "0"),
        ("sip:alice@198.51.100.20", "0"),
    ]
    reg.receive_response(moving, reply(moving, 200), 11.1)  # superseded
    assert reg.state is S.UNREGISTERING
    reg.receive_response(unreg, reply(unreg, 200, contacts=()), 11.2)
    assert reg.state is S.UNREGISTERED
    reg.start(20.0)  # stale Contacts were removed: not sent again
    assert len(take(reg).contacts) == 1


def test_contact_changed_while_unregistering_is_removed_if_restarted() -> None:
    reg = make_reg()
    registered(reg, 0.0)
    reg.stop(10.0)
    take(reg)
    reg.set_contact("sip:alice@198.51.100.20", 10.1)
    assert reg.requests_to_send() == []
    reg.start(10.2)  # supersedes the unregister: the old Contact must still go
    assert [(str(c.uri), c.params["expires"]) for c in take(reg).contacts] == [
        ("sip:alice@198.51.100.20", "300"),
        (CONTACT, "0"),
    ]


def test_rewrite_during_refresh_leaves_no_stale_timers() -> None:
    reg = make_reg()
    registered(reg, 0.0)
    reg.handle_timer(295.0)
    refresh = take(reg)
    reg.receive_response(refresh, reply(refresh, 200, received="203.0.113.5", rport=40000), 295.1)
    assert reg.state is S.REGISTERING
    assert reg.get_timer() == 295.1 + 64.0  # only the guard of the rewriting REGISTER
    rewrite = take(reg)
    assert [c.params["expires"] for c in rewrite.contacts] == ["300", "0"]


def test_start_while_unregistering_registers_again() -> None:
    reg = make_reg()
    registered(reg, 0.0)
    reg.stop(10.0)
    unreg = take(reg)
    reg.start(10.5)
    req = take(reg)
    assert req.expires == 300 and reg.state is S.REGISTERING
    reg.receive_response(unreg, reply(unreg, 200, contacts=()), 10.6)  # superseded
    reg.receive_response(req, reply(req, 200), 10.7)
    assert reg.state is S.REGISTERED and reg.get_timer() == 305.5


# -- a long life -------------------------------------------------------------------------------


@dataclass
class FakeRegistrar:
    """A registrar with RFC 3261 10.3 bindings, a CSeq order check, digest auth and
    a chosen failure mix. ``restarts`` forgets every binding (lost location table)."""

    rng: random.Random
    failure_rate: float
    bindings: dict[str, float] = field(default_factory=dict)
    last_cseq: int = -1
    nonce: int = 0
    nonce_uses: int = 0
    restarted_at: float = -1.0

    @staticmethod
    @functools.lru_cache(maxsize=64)
    def key(uri_text: str) -> str:
        return str(parse_uri(uri_text))

    def handle(self, req: Request, now: float) -> Response | RequestFailure | None:
        roll = self.rng.random()
        if roll < self.failure_rate * 0.2:
            return RequestFailure.TIMEOUT
        if roll < self.failure_rate * 0.3:
            return None  # the glue loses the report: the guard must catch it
        if roll < self.failure_rate * 0.5:
            return reply(req, 500)
        if roll < self.failure_rate * 0.6:
            return reply(req, 503, headers=(("Retry-After", str(self.rng.randint(1, 120))),))
        if roll < self.failure_rate * 0.7:
            self.bindings.clear()
            self.restarted_at = now
            self.nonce += 1  # a restarted server has forgotten its nonces
        if req.cseq.seq <= self.last_cseq:
            return reply(req, 500)  # RFC 3261 10.3 step 7: out of order
        self.last_cseq = req.cseq.seq
        # Digest: a nonce lasts 20 uses, then stale=true.
        creds = req.authorization
        if not creds or creds[0].params["nonce"] != f"n{self.nonce}" or self.nonce_uses >= 20:
            stale = bool(creds) and self.nonce_uses >= 20
            if stale:
                self.nonce += 1
            self.nonce_uses = 0
            return reply(
                req, 401, headers=(("WWW-Authenticate", challenge(f"n{self.nonce}", stale)),)
            )
        check_digest(req)
        self.nonce_uses += 1
        grant = self.rng.choice((60, 300, 300, 3600))
        for contact in req.contacts:
            asked = int(contact.params["expires"] or 0)
            key = self.key(str(contact.uri))
            if asked == 0:
                self.bindings.pop(key, None)
            else:
                self.bindings[key] = now + min(asked, grant)
        self.bindings = {k: v for k, v in self.bindings.items() if v > now}
        listed = tuple(f"<{k}>;expires={int(v - now)}" for k, v in self.bindings.items())
        # One answer in ten goes through bytes and the parser; the rest skip it for speed.
        return reply(req, 200, contacts=listed, wire=self.rng.random() < 0.1)

    def bound(self, contact: str, now: float) -> bool:
        return self.bindings.get(self.key(contact), -1.0) > now


def run_life(cycles: int, seed: int, failure_rate: float) -> tuple[int, float, float]:
    """Drive one registration through ``cycles`` registrar exchanges.

    Returns (successful registrations, seconds of fake time, fraction of time registered).
    At every step: registered implies the registrar holds our binding (unless it
    restarted since), the claimed expiry never outlives the registrar's, a failure
    is never followed by silence, and timers never go back in time.
    """
    rng = random.Random(seed)
    registrar = FakeRegistrar(random.Random(seed + 1), failure_rate)
    reg = Registration(
        config(reg_first_retry_interval=15, reg_retry_interval=120),
        IdGenerator(random.Random(seed + 2)),
        random.Random(seed + 3),
        digest_auth(),
    )
    # (delivery time, tie-breaker, request, outcome, when the registrar processed it)
    queue: list[tuple[float, int, Request, Response | RequestFailure, float]] = []
    seq = itertools.count()
    now = 0.0
    reg.start(now)
    exchanges = successes = 0
    backed_since = -1.0  # when the registrar processed the REGISTER of our last success
    registered_time = 0.0
    contacts = ("sip:alice@192.0.2.10:5060", "sip:alice@198.51.100.20:5060")
    while exchanges < cycles:
        for req in reg.requests_to_send():
            exchanges += 1
            req.headers.prepend("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{exchanges}")
            outcome = registrar.handle(req, now + 0.01)
            if isinstance(outcome, Response):
                delay = rng.uniform(0.01, 2.0)
                heapq.heappush(queue, (now + delay, next(seq), req, outcome, now + 0.01))
            elif outcome is not None:
                heapq.heappush(queue, (now + 32.0, next(seq), req, outcome, now + 0.01))
        timer = reg.get_timer()
        assert timer is not None or queue, f"silence in {reg.state} at {now}"
        nxt = min(t for t in (timer, queue[0][0] if queue else None) if t is not None)
        step_to = max(now, nxt)  # a timer set "at once" may be due already
        if reg.is_registered:
            registered_time += step_to - now
            if registrar.restarted_at < backed_since:
                # The claim holds, unchanged, until step_to: so must the binding.
                assert registrar.bound(str(reg.contact), step_to - 1e-6), (now, step_to)
        now = step_to
        processed = -1.0
        if queue and queue[0][0] <= now:
            _, _, req, outcome, processed = heapq.heappop(queue)
            if isinstance(outcome, Response):
                reg.receive_response(req, outcome, now)
            else:
                reg.request_failed(req, outcome, now)
        else:
            reg.handle_timer(now)
            after = reg.get_timer()
            assert after is None or after > now, "a due timer survived handle_timer"
        if rng.random() < 0.0005:  # an occasional network change
            reg.set_contact(contacts[0] if str(reg.contact) == contacts[1] else contacts[1], now)
        while (ev := reg.next_event()) is not None:
            if isinstance(ev, RegistrationStateChanged):
                assert ev.is_registered == (ev.new in (S.REGISTERED, S.REFRESHING))
                if ev.new is S.REGISTERED:
                    successes += 1
                    backed_since = processed
                if ev.new is S.RETRY_WAIT:
                    assert reg.get_timer() is not None  # never silent after a failure
        # The invariant: a registered claim is backed by the registrar's table
        # (unless the registrar lost it in a restart after granting it).
        if reg.is_registered and registrar.restarted_at < backed_since:
            assert registrar.bound(str(reg.contact), now), (now, reg.state)
            remaining = reg.expires_remaining(now)
            assert remaining is not None
            assert now + remaining <= registrar.bindings[registrar.key(str(reg.contact))] + 1e-6
    return successes, now, registered_time / now


def test_long_life_with_a_flaky_registrar() -> None:
    started = time.process_time()
    successes, span, fraction = run_life(cycles=30_000, seed=11, failure_rate=0.05)
    cpu = time.process_time() - started
    print(f"\n{successes} registrations over {span / 86400:.0f} fake days in {cpu:.1f} s CPU")
    assert span > 30 * 86400  # months of fake time
    assert successes > 10_000
    assert fraction > 0.9  # with 5 % failures the device is registered most of the time


def test_long_life_registrar_down_half_the_time() -> None:
    successes, span, fraction = run_life(cycles=5_000, seed=5, failure_rate=0.5)
    assert successes > 500 and 0.2 < fraction < 0.98


@pytest.mark.slow
def test_long_life_100k_cycles() -> None:
    successes, span, _ = run_life(cycles=100_000, seed=23, failure_rate=0.03)
    assert span > 180 * 86400 and successes > 40_000
