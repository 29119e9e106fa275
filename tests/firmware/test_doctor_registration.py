"""What ``intercom status`` and ``intercom doctor`` say about registrar trouble.

The registration events come from a real :class:`sipstack.registration.Registration`
driven with a fake clock and hand-made answers (the test plays the transaction
glue and the registrar), turned into the ``RegStateChanged`` the user agent
reports, exactly as ``sipstack/account.py`` does. So the notes the doctor reads
are the stack's own words: if they change, these tests fail.

The last test runs a real App on loopback against a registrar that answers
once and then goes silent, to see the words through ``App.account_status``
and ``App.doctor``.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.app import App
from firmware.doctor import _registration_words
from firmware.status import registration_error
from sipstack.account_events import RegStateChanged
from sipstack.digest import CredentialInfo, DigestAuthenticator
from sipstack.ids import IdGenerator
from sipstack.loop import Loop
from sipstack.message import Request, Response, make_response, parse_message
from sipstack.registration import (
    Registration,
    RegistrationConfig,
    RegistrationState,
    RegistrationStateChanged,
    RequestFailure,
)

AOR = '"Door" <sip:door@pbx.example.com>'
CONTACT = "sip:door@192.0.2.10:5060"
REALM = "pbx.example.com"
PASSWORD = "d00r"
RETRY = 60  # reg_retry_interval
S = RegistrationState


class Door:
    """One Registration and the last ``RegStateChanged`` it produced."""

    def __init__(self, *, credentials: bool = True) -> None:
        cfg = RegistrationConfig(
            id=AOR,
            reg_uri="sip:pbx.example.com",
            contact=CONTACT,
            reg_timeout=60,
            reg_retry_interval=RETRY,
        )
        auth = None
        if credentials:
            auth = DigestAuthenticator(
                [CredentialInfo(REALM, "door", PASSWORD)], IdGenerator(random.Random(3))
            )
        self.reg = Registration(cfg, IdGenerator(random.Random(7)), random.Random(1), auth)
        self.last: RegStateChanged | None = None
        self.branches = 0

    def pump(self) -> RegStateChanged | None:
        """Drain the machine's events; the last state change, as the UA reports it."""
        while (ev := self.reg.next_event()) is not None:
            if isinstance(ev, RegistrationStateChanged):
                self.last = RegStateChanged(
                    0,
                    ev.new.value,
                    ev.is_registered,
                    ev.status_code,
                    ev.status_text,
                    ev.expires,
                    ev.note,
                )
        return self.last

    def take(self) -> Request:
        """The one REGISTER to send, with the Via its transaction would add."""
        requests = self.reg.requests_to_send()
        assert len(requests) == 1, requests
        self.branches += 1
        req = requests[0]
        req.headers.prepend("Via", f"SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKd{self.branches}")
        return req

    def answer(
        self, req: Request, status: int, now: float, *, challenge: str = "", grant: int | None = 60
    ) -> None:
        """Answer ``req``; a 2xx lists our Contact with ``grant`` seconds (None: not at all)."""
        resp = make_response(req, status, to_tag="reg")
        if challenge:
            resp.headers.add("WWW-Authenticate", challenge)
        if 200 <= status < 300 and grant is not None:
            resp.headers.add("Contact", f"<{CONTACT}>;expires={grant}")
        parsed = parse_message(resp.to_bytes())
        assert isinstance(parsed, Response)
        self.reg.receive_response(req, parsed, now)

    def registered(self, now: float = 0.0) -> Request:
        self.reg.start(now)
        req = self.take()
        self.answer(req, 200, now)
        assert self.reg.state is S.REGISTERED
        return req


def challenge(nonce: str, *, stale: bool = False) -> str:
    value = f'Digest realm="{REALM}", nonce="{nonce}", qop="auth", algorithm=MD5'
    return value + ", stale=true" if stale else value


def account(event: RegStateChanged | None) -> dict[str, Any]:
    """The account as ``firmware.status.account_report`` builds it from ``event``."""
    assert event is not None
    return {
        "uri": AOR,
        "registered": event.is_registered,
        "state": event.state,
        "status": event.status,
        "reason": event.reason,
        "expires": event.expires if event.expires is not None else -1,
        "last_error": registration_error(event),
        "config_line": 12,
        "registrar": "sip:pbx.example.com",
        "contact": CONTACT,
        "seen_as": None,
    }


def doctor(door: Door) -> tuple[str, str, str]:
    return _registration_words(account(door.pump()))


# -- stale nonces (issue 6/8) ------------------------------------------------------------------


def stale_every_time(door: Door, now: float) -> None:
    """One attempt against a registrar that calls every fresh nonce stale."""
    for n in range(4):
        req = door.take()
        door.answer(req, 401, now, challenge=challenge(f"s{now:g}-{n}", stale=True))


def test_stale_nonces_blame_the_registrar_not_the_password() -> None:
    door = Door()
    door.reg.start(0.0)
    stale_every_time(door, 0.0)
    event = door.pump()
    assert event is not None and event.state == "retry-wait" and event.status == 401
    assert "stale=true" in registration_error(event)

    verdict, message, advice = doctor(door)
    assert verdict == "fail"
    assert "keeps rejecting its own nonces" in message
    assert "the password is not in question" in message
    assert "password" not in advice and "clock" in advice
    assert "refused the password" not in message


def test_a_retry_in_flight_after_stale_nonces_blames_nobody() -> None:
    door = Door()
    door.reg.start(0.0)
    stale_every_time(door, 0.0)
    door.pump()
    retry_at = door.reg.get_timer()
    assert retry_at is not None
    door.reg.handle_timer(retry_at)
    event = door.pump()
    # The "retrying" event replaces the failure's note: the 401 is all that is left.
    assert event is not None and (event.state, event.status) == ("registering", 401)
    assert "stale" not in event.note

    verdict, message, _advice = doctor(door)
    assert verdict == "warn"
    assert "refused the last attempt of door@pbx.example.com (401 Unauthorized)" in message
    assert "password" not in message


def test_a_wrong_password_is_still_called_one() -> None:
    door = Door()
    door.reg.start(0.0)
    req = door.take()
    door.answer(req, 401, 0.0, challenge=challenge("n1"))
    again = door.take()
    door.answer(again, 401, 0.0, challenge=challenge("n2"))  # not stale: refused
    assert door.reg.state is S.RETRY_WAIT

    verdict, message, _advice = doctor(door)
    assert verdict == "fail"
    assert message == (
        "the registrar refused the password for door@pbx.example.com: "
        "check [[accounts.cred_info]] (config line 12)"
    )


def test_no_credentials_says_add_them_not_check_them() -> None:
    door = Door(credentials=False)
    door.reg.start(0.0)
    door.answer(door.take(), 401, 0.0, challenge=challenge("n1"))
    verdict, message, _advice = doctor(door)
    assert verdict == "fail"
    assert "none is configured" in message and "add [[accounts.cred_info]]" in message
    assert "refused the password" not in message


def test_an_unanswerable_challenge_is_the_registrars_policy() -> None:
    door = Door()
    door.reg.start(0.0)
    door.answer(door.take(), 401, 0.0, challenge=f'Digest realm="{REALM}", nonce="n", qop="x"')
    verdict, message, advice = doctor(door)
    assert verdict == "fail"
    assert "cannot answer" in message and "no challenge uses a scheme" in message
    assert "digest" in advice


# -- a registrar that stops answering (finding 2) ------------------------------------------


def test_binding_expired_with_the_refresh_unanswered_says_why_in_status_and_doctor() -> None:
    door = Door()
    door.registered(0.0)
    assert registration_error(door.pump()) == ""
    assert doctor(door)[0] == "ok"

    refresh_at = door.reg.get_timer()
    assert refresh_at == 55.0  # granted 60 s, refreshed 5 s early
    door.reg.handle_timer(refresh_at)
    refresh = door.take()
    assert door.pump() is not None and registration_error(door.last) == ""  # still bound
    expiry = door.reg.get_timer()
    assert expiry == 60.0
    door.reg.handle_timer(expiry)  # RFC 3261 10.2.1: past the grant the binding is gone
    event = door.pump()
    assert event is not None and (event.state, event.status) == ("registering", 200)
    assert not event.is_registered
    assert registration_error(event) == "binding expired before the refresh was answered"

    verdict, message, advice = doctor(door)
    assert verdict == "fail"
    assert message == (
        "door@pbx.example.com lost its registration: the registrar (sip:pbx.example.com) "
        "did not answer the refresh before the binding expired"
    )
    assert "wait a few seconds" not in advice

    # Timer F (RFC 3261 17.1.2.2) ends the refresh: now the status code says it.
    door.reg.request_failed(refresh, RequestFailure.TIMEOUT, 55.0 + 32.0)
    event = door.pump()
    assert event is not None and event.state == "retry-wait"
    assert registration_error(event).startswith("408 Request Timeout REGISTER failed")
    assert doctor(door)[1].startswith("no answer from the registrar of door@pbx.example.com")


def test_a_2xx_that_grants_nothing_is_an_error_although_its_status_is_200() -> None:
    door = Door()
    door.reg.start(0.0)
    door.answer(door.take(), 200, 0.0, grant=0)  # our Contact listed with expires=0
    event = door.pump()
    assert event is not None and (event.state, event.status) == ("retry-wait", 200)
    assert registration_error(event).startswith(
        "registrar answered 2xx but granted our Contact no time; retry in"
    )
    verdict, message, _advice = doctor(door)
    assert verdict == "fail"
    assert message.startswith("door@pbx.example.com is not registered: registrar answered 2xx")


def test_nothing_to_explain_before_the_first_answer_or_after_an_unregister() -> None:
    door = Door()
    door.reg.start(0.0)
    req = door.take()
    event = door.pump()
    assert event is not None and (event.state, event.status) == ("registering", 0)
    assert registration_error(event) == ""
    assert doctor(door) == (
        "warn",
        "door@pbx.example.com is still registering (registering)",
        "wait a few seconds and retry",
    )
    door.answer(req, 200, 0.0)
    door.reg.stop(1.0)
    door.answer(door.take(), 200, 1.0, grant=None)
    event = door.pump()
    assert event is not None and (event.state, event.status) == ("unregistered", 200)
    assert registration_error(event) == ""
    assert registration_error(None) == ""


def test_a_moving_contact_is_explained_but_not_a_failure() -> None:
    door = Door()
    door.registered(0.0)
    door.reg.set_contact("sip:door@192.0.2.99:5060", 10.0)  # a network change
    event = door.pump()
    assert event is not None and (event.state, event.status) == ("registering", 200)
    assert registration_error(event).startswith("contact changed from")
    verdict, message, _advice = doctor(door)
    assert verdict == "warn" and message.startswith("door@pbx.example.com is registering again")


def test_refusals_keep_their_status_in_last_error() -> None:
    door = Door()
    door.reg.start(0.0)
    door.answer(door.take(), 404, 0.0)
    event = door.pump()
    assert event is not None
    assert registration_error(event).startswith("404 Not Found registrar answered 404 Not Found")


# -- the same through a real App ---------------------------------------------------------------


class GoingSilentRegistrar:
    """Grants the first REGISTER ``grant`` seconds, then answers nothing."""

    def __init__(self, loop: Loop, grant: int) -> None:
        self.loop = loop
        self.grant = grant
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.registers = 0
        loop.add_reader(self.sock, self._readable)

    def _readable(self) -> None:
        data, addr = self.sock.recvfrom(65535)
        request = parse_message(data)
        if not isinstance(request, Request) or request.method != "REGISTER":
            return
        self.registers += 1
        if self.registers > 1:
            return  # gone
        response = make_response(request, 200, to_tag="reg")
        response.headers.add("Contact", f"{request.contacts[0]};expires={self.grant}")
        self.sock.sendto(response.to_bytes(), addr)

    def close(self) -> None:
        self.loop.remove_reader(self.sock)
        self.sock.close()


@pytest.fixture
def silent_after_one(loop: Loop) -> Iterator[GoingSilentRegistrar]:
    reg = GoingSilentRegistrar(loop, grant=2)
    yield reg
    reg.close()


def door_toml(port: int) -> str:
    return f"""
hal = "sim"

[sip]
udp = "127.0.0.1:0"
tcp = ""

[[accounts]]
id = "<sip:door@127.0.0.1>"
reg_uri = "sip:127.0.0.1:{port}"
reg_timeout = 2
reg_retry_interval = 60
ka_interval = 0
unreg_timeout = 0.5

[[accounts.cred_info]]
username = "door"
data = "d00r"
"""


def test_app_status_and_doctor_explain_a_registrar_gone_silent(
    loop: Loop,
    make_app: Callable[..., App],
    silent_after_one: GoingSilentRegistrar,
    tmp_path: Path,
) -> None:
    app = make_app(door_toml(silent_after_one.port))
    assert app.ua is not None
    acc = next(a for a in app.ua.enum_accs() if not app.account_status(a)["local"])

    def status() -> dict[str, Any]:
        return app.account_status(acc)

    assert loop.run_until(lambda: status()["registered"], 3.0), status()
    assert status()["last_error"] == ""
    # A grant of 2 s is refreshed after 1 s; the refresh goes unanswered and the
    # binding expires at 2 s, long before Timer F (64*T1 = 3.2 s with the test's
    # T1 of 50 ms) ends the refresh transaction.
    assert loop.run_until(lambda: not status()["registered"], 3.0), status()
    st = status()
    assert (st["state"], st["status"]) == ("registering", 200), st
    assert st["last_error"] == "binding expired before the refresh was answered"
    assert silent_after_one.registers >= 2  # the refresh went out

    checks: list[Any] = []
    app.doctor(checks.append)  # registrar given as an IP literal: no DNS, answers at once
    assert len(checks) == 1
    (registration,) = [c for c in checks[0] if c["check"] == "registration"]
    assert registration["status"] == "fail"
    assert "lost its registration" in registration["message"]

    # Timer F: the user now sees the timeout, with the retry.
    assert loop.run_until(lambda: status()["status"] == 408, 4.0), status()
    st = status()
    assert st["state"] == "retry-wait" and "408 Request Timeout" in st["last_error"]
    assert "retry in" in st["last_error"]


# -- the failure kept until the next success (the App's AccountWiring) --------------------------


def test_the_failures_explanation_survives_the_retry_until_a_success(loop: Loop) -> None:
    """The App keeps each account's last failed event (``AccountWiring.reg_failures``)
    and passes it on, so the retry's "registering" event, which repeats the 401
    without its note, still reads as the stale-nonce registrar it is."""

    from firmware.account_wiring import AccountWiring, is_failure
    from firmware.config import AccountSettings
    from firmware.screening import RequestScreen, Screening
    from sipstack import records
    from sipstack.useragent import UserAgent

    ua = UserAgent(loop)
    ua.transport_create("udp", "127.0.0.1", 0)
    wiring = AccountWiring(ua, RequestScreen(Screening(open=True), loop.time))
    acc = wiring.add(AccountSettings(line=12, local=True))

    def note(event: RegStateChanged | None) -> str:
        """Feed the event as the App does; the account's last_error as status shows it."""
        assert event is not None
        wiring.note_registration(records.replace(event, acc_id=acc))
        return registration_error(wiring.reg_events[acc], wiring.reg_failures.get(acc))

    try:
        door = Door()
        door.reg.start(0.0)
        stale_every_time(door, 0.0)
        failed = door.pump()
        assert failed is not None and is_failure(failed)
        assert "stale=true" in note(failed)
        retry_at = door.reg.get_timer()
        assert retry_at is not None
        door.reg.handle_timer(retry_at)
        retrying = door.pump()
        assert retrying is not None and retrying.state == "registering"
        assert not is_failure(retrying)  # it repeats the 401 but explains nothing
        # without the kept failure the note would be gone (see the test above) ...
        assert "stale" not in registration_error(retrying)
        # ... with it, status and doctor still blame the registrar's nonces
        why = note(retrying)
        assert "stale=true" in why
        st = account(retrying) | {"last_error": why}
        verdict, message, _advice = _registration_words(st)
        assert verdict == "fail" and "keeps rejecting its own nonces" in message

        # the next success forgets it: a later retry explains nothing stale
        door.answer(door.take(), 200, retry_at)
        registered = door.pump()
        assert registered is not None and registered.is_registered
        assert note(registered) == "" and acc not in wiring.reg_failures
        assert registration_error(retrying, wiring.reg_failures.get(acc)) == (
            registration_error(retrying)
        )
    finally:
        ua.shutdown(timeout=0)
