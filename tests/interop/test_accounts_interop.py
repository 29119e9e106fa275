"""Accounts (issue 3) against real Kamailio and SIPp registrars on 127.0.0.1.

Timers are real here (Kamailio does not run on a fake clock), so the tests use
short intervals: registration retries after 1-3 s instead of 300 s.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Callable
from typing import Any

import pytest

from sipstack.account_config import AccountConfig, RpidElement
from sipstack.account_events import (
    IncomingMessage,
    MessageStatus,
    RegStateChanged,
    UaEvent,
)
from sipstack.digest import CredentialInfo
from sipstack.loop import Loop
from sipstack.message import Request, make_response, parse_message
from sipstack.timers import TimerConfig
from sipstack.tls import client_context
from sipstack.useragent import UserAgent

pytestmark = pytest.mark.interop

FAST = TimerConfig(t1=0.1, t2=0.8, t4=1.0)


class Agent:
    """A user agent plus the events it reported."""

    def __init__(self, loop: Loop, ca: str | None = None) -> None:
        self.events: list[UaEvent] = []
        self.ua = UserAgent(loop, on_event=self.events.append, timers=FAST,
                            rng=random.Random(7))
        self.udp = self.ua.transport_create("udp", "127.0.0.1", 0)
        self.tcp = self.ua.transport_create("tcp", "127.0.0.1", 0)
        if ca is not None:
            self.tls = self.ua.transport_create("tls", "127.0.0.1", 0,
                                                tls_client=client_context(ca))

    def reg_events(self, acc: int) -> list[RegStateChanged]:
        return [e for e in self.events if isinstance(e, RegStateChanged) and e.acc_id == acc]

    def registered(self, acc: int) -> bool:
        evs = self.reg_events(acc)
        return bool(evs) and evs[-1].is_registered

    def failed_with(self, acc: int, status: int) -> bool:
        return any(e.status == status and not e.is_registered for e in self.reg_events(acc))


def account(kam: Any, user: str, password: str, transport: str = "udp",
            **extra: Any) -> AccountConfig:
    return AccountConfig(
        id=f"<sip:{user}@test.local>",
        reg_uri=kam.uri(transport=transport),
        cred_info=[CredentialInfo("*", user, password)],
        reg_retry_interval=2, reg_first_retry_interval=1, ka_interval=0, **extra,
    )


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_register_with_digest_on_each_transport(
    loop: Loop, kamailio_server: Callable[..., Any], transport: str
) -> None:
    kam = kamailio_server({"alice": "s3cret"}, tls=transport == "tls")
    agent = Agent(loop, str(kam.ca_cert) if kam.ca_cert else None)
    acc = agent.ua.acc_add(account(kam, "alice", "s3cret", transport))
    assert loop.run_until(lambda: agent.registered(acc), timeout=10)
    contacts = kam.registrations()["alice"]
    assert len(contacts) == 1
    assert f"transport={transport}" in contacts[0].uri or transport == "udp"
    info = agent.ua.acc_get_info(acc)
    assert info.status == 200 and 0 < info.expires <= 300
    # unregister on shutdown: the binding disappears at the registrar
    agent.ua.shutdown()
    assert "alice" not in kam.registrations()


def test_wrong_password_retries_until_fixed_on_the_server(
    loop: Loop, kamailio_server: Callable[..., Any]
) -> None:
    kam = kamailio_server({"bob": "old"})
    agent = Agent(loop)
    acc = agent.ua.acc_add(account(kam, "bob", "new"))
    assert loop.run_until(lambda: agent.failed_with(acc, 401) or agent.failed_with(acc, 403),
                          timeout=10)
    assert not agent.registered(acc)
    assert agent.ua.acc_get_info(acc).expires == -1
    kam.set_users({"bob": "new"})  # the admin fixes the password on the server
    assert loop.run_until(lambda: agent.registered(acc), timeout=15)
    agent.ua.shutdown()


def test_registrar_restart_ends_registered_again(
    loop: Loop, kamailio_server: Callable[..., Any]
) -> None:
    kam = kamailio_server({"carol": "pw"}, min_expires=2)
    agent = Agent(loop)
    acc = agent.ua.acc_add(account(kam, "carol", "pw", reg_timeout=4,
                                   reg_delay_before_refresh=1))
    assert loop.run_until(lambda: agent.registered(acc), timeout=10)
    kam.restart()  # the location table is gone
    assert "carol" not in kam.registrations()
    # the next refresh (within the 4 s grant) puts the binding back
    assert loop.run_until(lambda: "carol" in kam.registrations(), timeout=10)
    assert agent.registered(acc)
    agent.ua.shutdown()


def test_eight_accounts_ninth_refused_modify_and_delete(
    loop: Loop, kamailio_server: Callable[..., Any]
) -> None:
    users = {f"u{i}": f"p{i}" for i in range(9)}
    kam = kamailio_server(users)
    agent = Agent(loop)
    ids = [agent.ua.acc_add(account(kam, f"u{i}", f"p{i}")) for i in range(8)]
    with pytest.raises(LookupError):
        agent.ua.acc_add(account(kam, "u8", "p8"))
    assert loop.run_until(lambda: all(agent.registered(i) for i in ids), timeout=15)
    assert {f"u{i}" for i in range(8)} <= set(kam.registrations())
    # modify account 2 to another user: old binding removed, new one made
    agent.ua.acc_modify(ids[2], account(kam, "u8", "p8"))
    assert loop.run_until(
        lambda: "u8" in kam.registrations() and "u2" not in kam.registrations(), timeout=10)
    agent.ua.acc_del(ids[5])
    assert loop.run_until(lambda: "u5" not in kam.registrations(), timeout=10)
    agent.ua.shutdown()


def test_sipp_423_then_granted_shorter_expiry(loop: Loop, sipp: Callable[..., Any]) -> None:
    registrar = sipp("uas_register_423", keys={"min_expires": "1800"})
    agent = Agent(loop)
    host, port = registrar.address
    cfg = AccountConfig(id="<sip:dave@test.local>", reg_uri=f"sip:{host}:{port}",
                        reg_timeout=300, ka_interval=0)
    acc = agent.ua.acc_add(cfg)
    assert loop.run_until(lambda: agent.registered(acc), timeout=10)
    registers = registrar.received("REGISTER")
    assert len(registers) == 2
    assert "1800" in registers[1].text  # asked again with Min-Expires
    agent.ua.shutdown(timeout=0)


def test_sipp_grant_shorter_than_asked_is_followed(loop: Loop,
                                                   sipp: Callable[..., Any]) -> None:
    registrar = sipp("uas_register_ok", keys={"granted_expires": "60"})
    agent = Agent(loop)
    host, port = registrar.address
    acc = agent.ua.acc_add(AccountConfig(id="<sip:erin@test.local>",
                                         reg_uri=f"sip:{host}:{port}", reg_timeout=3600,
                                         ka_interval=0))
    assert loop.run_until(lambda: agent.registered(acc), timeout=10)
    info = agent.ua.acc_get_info(acc)
    assert 50 <= info.expires <= 60  # the registrar's 60, not our 3600
    agent.ua.shutdown(timeout=0)


def test_sipp_nat_received_rport_rewrites_contact(loop: Loop, sipp: Callable[..., Any]) -> None:
    registrar = sipp("uas_register_nat", calls=2,
                     keys={"nat_ip": "198.51.100.7", "nat_port": "40123"})
    agent = Agent(loop)
    host, port = registrar.address
    acc = agent.ua.acc_add(AccountConfig(id="<sip:finn@test.local>",
                                         reg_uri=f"sip:{host}:{port}", ka_interval=0))
    assert loop.run_until(lambda: len(registrar.received("REGISTER")) >= 2, timeout=10)
    second = registrar.received("REGISTER")[1].text
    assert "198.51.100.7:40123" in second  # the corrected Contact
    assert "expires=0" in second.replace(" ", "")  # the old binding removed
    assert acc in agent.ua.enum_accs()
    agent.ua.shutdown(timeout=0)


def test_silent_registrar_retries_on_schedule(loop: Loop, sipp: Callable[..., Any]) -> None:
    registrar = sipp("uas_silent", calls=3, timeout=30)
    agent = Agent(loop)
    host, port = registrar.address
    acc = agent.ua.acc_add(AccountConfig(id="<sip:gus@test.local>",
                                         reg_uri=f"sip:{host}:{port}", ka_interval=0,
                                         reg_retry_interval=2, reg_first_retry_interval=1))
    # Timer F is 6.4 s with FAST timers: timeout -> 408, retry ~1 s later
    assert loop.run_until(lambda: agent.failed_with(acc, 408), timeout=10)
    assert not agent.registered(acc)
    calls = {m.text.split("Call-ID:")[1].split()[0] for m in registrar.received("REGISTER")}
    assert len(calls) == 1  # one Call-ID across retries (RFC 3261 10.2)
    assert loop.run_until(lambda: len(agent.reg_events(acc)) >= 3, timeout=15)
    agent.ua.shutdown(timeout=0)


def test_message_both_ways_through_kamailio(loop: Loop,
                                            kamailio_server: Callable[..., Any]) -> None:
    kam = kamailio_server({"hal": "a", "ida": "b"}, challenge_requests=True)
    a, b = Agent(loop), Agent(loop)
    acc_a = a.ua.acc_add(account(kam, "hal", "a", proxy=[kam.uri()]))
    acc_b = b.ua.acc_add(account(kam, "ida", "b", proxy=[kam.uri()]))
    assert loop.run_until(lambda: a.registered(acc_a) and b.registered(acc_b), timeout=10)
    a.ua.im_send(acc_a, "sip:ida@test.local", "open the door please")
    b.ua.im_send(acc_b, "sip:hal@test.local", "on my way")

    def delivered() -> bool:
        return (any(isinstance(e, IncomingMessage) for e in b.events)
                and any(isinstance(e, IncomingMessage) for e in a.events)
                and any(isinstance(e, MessageStatus) for e in a.events))

    assert loop.run_until(delivered, timeout=10)
    got = next(e for e in b.events if isinstance(e, IncomingMessage))
    assert got.body == b"open the door please" and got.from_uri.startswith("sip:hal@")
    status = next(e for e in a.events if isinstance(e, MessageStatus))
    assert status.status == 200  # after answering Kamailio's 407
    a.ua.shutdown()
    b.ua.shutdown()


def test_publish_and_subscribe_through_kamailio_presence(
    loop: Loop, kamailio_server: Callable[..., Any]
) -> None:
    """Our PUBLISH reaches Kamailio's presence server; a watcher's NOTIFY follows it."""
    kam = kamailio_server({"door": "d", "flat": "f"}, presence=True)
    door = Agent(loop)
    acc_door = door.ua.acc_add(account(kam, "door", "d", proxy=[kam.uri()],
                                       publish_enabled=True))
    assert loop.run_until(lambda: door.registered(acc_door), timeout=10)
    door.ua.acc_set_online_status2(acc_door, True,
                                   RpidElement(activity="busy", note="Ringing"))
    loop.run_until(lambda: False, timeout=1.0)  # let the PUBLISH go through
    # a watcher (a plain socket) subscribes at Kamailio and reads the PIDF it gets
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as w:
        w.bind(("127.0.0.1", 0))
        w.settimeout(0.05)
        wport = w.getsockname()[1]
        sub = (
            f"SUBSCRIBE sip:door@test.local SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{wport};branch=z9hG4bKw1;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:flat@test.local>;tag=f1\r\n"
            "To: <sip:door@test.local>\r\nCall-ID: watch-1@test\r\nCSeq: 1 SUBSCRIBE\r\n"
            f"Contact: <sip:flat@127.0.0.1:{wport}>\r\nEvent: presence\r\n"
            "Accept: application/pidf+xml\r\nExpires: 60\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        w.sendto(sub, kam.address)
        body = b""
        for _ in range(200):
            loop.run_once(max_wait=0.01)
            try:
                data = w.recv(65535)
            except TimeoutError:
                continue
            msg = parse_message(data)
            if isinstance(msg, Request) and msg.method == "NOTIFY":
                w.sendto(make_response(msg, 200).to_bytes(), kam.address)
                if msg.body:
                    body = msg.body
                    break
        assert b"busy" in body and b"Ringing" in body
    door.ua.shutdown()


def test_tcp_flow_drop_registers_again_at_once(
    loop: Loop, kamailio_server: Callable[..., Any]
) -> None:
    kam = kamailio_server({"kim": "k"})
    agent = Agent(loop)
    acc = agent.ua.acc_add(account(kam, "kim", "k", "tcp", reg_timeout=3600))
    assert loop.run_until(lambda: agent.registered(acc), timeout=10)
    kam.restart()  # drops our TCP connection and forgets the binding
    assert "kim" not in kam.registrations()
    # not an hour later at the refresh: the closed flow triggers a new REGISTER
    assert loop.run_until(lambda: "kim" in kam.registrations(), timeout=8)
    agent.ua.shutdown()
