"""The user agent over real UDP sockets: slots, MESSAGE both ways, OPTIONS, presence, RFC 4475.

Registration against real registrars is in tests/interop/test_accounts_interop.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipstack.account_config import INVALID_ID, MAX_ACC, AccountConfig, RpidElement
from sipstack.account_events import (
    IncomingMessage,
    IncomingSubscribe,
    MessageStatus,
    UaEvent,
)
from sipstack.errors import SipParseError
from sipstack.loop import Loop
from sipstack.message import Response, parse_message
from sipstack.pidf import parse_pidf
from sipstack.timers import TimerConfig
from sipstack.useragent import UserAgent

DATA = Path(__file__).parent / "data" / "rfc4475"


class Recorder:
    def __init__(self) -> None:
        self.events: list[UaEvent] = []

    def of(self, kind: type) -> list[UaEvent]:
        return [e for e in self.events if isinstance(e, kind)]


@pytest.fixture
def loop() -> Iterator[Loop]:
    with Loop() as lp:
        yield lp


def make_ua(loop: Loop) -> tuple[UserAgent, Recorder, int]:
    rec = Recorder()
    ua = UserAgent(loop, on_event=rec.events.append, timers=TimerConfig(t1=0.05))
    tid = ua.transport_create("udp", "127.0.0.1", 0)
    return ua, rec, tid


def test_slots_are_static_and_reused(loop: Loop) -> None:
    ua, _, tid = make_ua(loop)
    with pytest.raises(ValueError):
        ua.acc_add(AccountConfig(id="not a uri at all <<"))
    assert ua.acc_get_count() == 0  # a refused account takes no slot
    ids = [ua.acc_add(AccountConfig(id=f"<sip:user{i}@example.com>")) for i in range(MAX_ACC)]
    assert ids == list(range(MAX_ACC))
    assert ua.acc_get_default() == 0
    with pytest.raises(LookupError, match="slots"):
        ua.acc_add(AccountConfig(id="<sip:ninth@example.com>"))
    ua.acc_del(3)
    assert not ua.acc_is_valid(3)
    assert ua.acc_add(AccountConfig(id="<sip:again@example.com>"), is_default=True) == 3
    assert ua.acc_get_default() == 3
    assert ua.acc_get_count() == MAX_ACC
    with pytest.raises(ValueError):
        ua.acc_get_info(42)
    info = ua.acc_get_info(3)
    assert info.is_default and not info.has_registration and info.expires == -1
    ua.shutdown(timeout=0)


def test_local_account_and_matching(loop: Loop) -> None:
    ua, _, tid = make_ua(loop)
    local = ua.acc_add_local(tid)
    port = ua.endpoint.transports.info(tid).local_port
    assert ua.acc_get_info(local).uri == f"<sip:127.0.0.1:{port}>"
    alice = ua.acc_add(AccountConfig(id="<sip:alice@example.com>", priority=5))
    assert ua.acc_find_for_outgoing("sip:bob@example.com") == alice
    assert ua.acc_find_for_outgoing("sip:bob@other.org") == local  # the default
    assert ua.acc_get_default() == local
    ua.acc_set_default(alice)
    assert ua.acc_get_default() == alice
    ua.acc_del(alice)
    assert ua.acc_get_default() == local
    ua.acc_del(local)
    assert ua.acc_get_default() == INVALID_ID
    ua.shutdown(timeout=0)


def test_message_both_ways_between_two_user_agents(loop: Loop) -> None:
    a, rec_a, ta = make_ua(loop)
    b, rec_b, tb = make_ua(loop)
    acc_a = a.acc_add_local(ta)
    acc_b = b.acc_add_local(tb)
    uri_b = f"sip:127.0.0.1:{b.endpoint.transports.info(tb).local_port}"
    uri_a = f"sip:127.0.0.1:{a.endpoint.transports.info(ta).local_port}"
    a.im_send(acc_a, uri_b, "Ding dong ☺", token="t1")
    b.im_send(acc_b, uri_a, "Door open", token="t2")
    assert loop.run_until(
        lambda: bool(
            rec_a.of(MessageStatus)
            and rec_b.of(IncomingMessage)
            and rec_b.of(MessageStatus)
            and rec_a.of(IncomingMessage)
        ),
        timeout=5,
    )
    got_b = rec_b.of(IncomingMessage)[0]
    assert isinstance(got_b, IncomingMessage)
    assert got_b.body.decode() == "Ding dong ☺" and got_b.acc_id == acc_b
    status = rec_a.of(MessageStatus)[0]
    assert isinstance(status, MessageStatus) and status.status == 200 and status.token == "t1"
    a.shutdown(timeout=0)
    b.shutdown(timeout=0)


def test_message_to_nobody_reports_failure(loop: Loop) -> None:
    a, rec, ta = make_ua(loop)
    acc = a.acc_add_local(ta)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hole:
        hole.bind(("127.0.0.1", 0))
        a.im_send(acc, f"sip:x@127.0.0.1:{hole.getsockname()[1]}", "anyone?")
        assert loop.run_until(lambda: bool(rec.of(MessageStatus)), timeout=10)
    status = rec.of(MessageStatus)[0]
    assert isinstance(status, MessageStatus) and status.status == 408
    a.shutdown(timeout=0)


def _exchange(loop: Loop, sock: socket.socket, data: bytes, port: int) -> Response | None:
    sock.sendto(data, ("127.0.0.1", port))
    for _ in range(40):
        loop.run_once(max_wait=0.02)
        try:
            reply = sock.recv(65535)
        except BlockingIOError:
            continue
        status = int(reply.split(b" ", 2)[1])
        if status >= 200:
            try:
                msg = parse_message(reply)
            except SipParseError:
                # a 400 to a request without From/To/Call-ID (insuf) cannot have them
                msg = Response(status)
            assert isinstance(msg, Response)
            return msg
    return None


def test_subscribe_gets_notify_with_pidf_that_follows_status(loop: Loop) -> None:
    ua, rec, tid = make_ua(loop)
    acc = ua.acc_add(AccountConfig(id="<sip:door@127.0.0.1>"))
    port = ua.endpoint.transports.info(tid).local_port
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as watcher:
        watcher.bind(("127.0.0.1", 0))
        watcher.setblocking(False)
        wport = watcher.getsockname()[1]
        sub = (
            f"SUBSCRIBE sip:door@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{wport};branch=z9hG4bKsub1;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <sip:watcher@127.0.0.1>;tag=w1\r\n"
            "To: <sip:door@127.0.0.1>\r\nCall-ID: sub-1@test\r\nCSeq: 1 SUBSCRIBE\r\n"
            f"Contact: <sip:watcher@127.0.0.1:{wport}>\r\nEvent: presence\r\n"
            "Accept: application/pidf+xml\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
        ).encode()
        watcher.sendto(sub, ("127.0.0.1", port))
        notifies: list[bytes] = []

        def pump_until(n: int) -> None:
            for _ in range(100):
                loop.run_once(max_wait=0.02)
                try:
                    data = watcher.recv(65535)
                except BlockingIOError:
                    continue
                msg = parse_message(data)
                if not isinstance(msg, Response):
                    notifies.append(data)
                    # answer the NOTIFY 200
                    from sipstack.message import make_response

                    watcher.sendto(make_response(msg, 200).to_bytes(), ("127.0.0.1", port))
                if len(notifies) >= n:
                    return

        pump_until(1)
        assert rec.of(IncomingSubscribe)
        first = parse_message(notifies[0])
        assert first.headers.get("Event") == "presence"
        assert (first.headers.get("Subscription-State") or "").startswith("active")
        ua.acc_set_online_status2(acc, True, RpidElement(activity="busy", note="At the door"))
        pump_until(2)
        second = parse_message(notifies[1])
        info = parse_pidf(second.body)
        assert info.note == "At the door" or "At the door" in second.body.decode()
        assert "busy" in second.body.decode()
        assert second.cseq.seq > first.cseq.seq
    ua.shutdown(timeout=0)


# RFC 4475 application-layer vectors and the answers RFC 3261 8.2 gives them.
APP_LAYER = {
    "badbranch": 200,
    "insuf": 400,
    "unkscm": 416,
    "novelsc": 416,
    "unksm2": 405,
    "bext01": 420,
    "invut": 415,
    "regaut01": 405,
    "multi01": 400,
    "mcl01": 400,
    "bcast": None,
    "zeromf": 200,
    "cparam01": 405,
    "cparam02": 405,
    "regescrt": 405,
    "sdp01": 406,
    "inv2543": 480,
}


@pytest.mark.parametrize("name", sorted(APP_LAYER))
def test_rfc4475_application_layer_answers(loop: Loop, name: str) -> None:
    ua, _, tid = make_ua(loop)
    ua.acc_add_local(tid)
    port = ua.endpoint.transports.info(tid).local_port
    raw = (DATA / f"{name}.dat").read_bytes()
    # The vectors' Vias name hosts we are not; ask for rport (RFC 3581) so the
    # answer comes back to this test's socket instead of the sent-by address.
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith((b"via:", b"v:")) and b"rport" not in line:
            lines[i] = line + b";rport"
            break
    data = b"\r\n".join(lines) + sep + body
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        resp = _exchange(loop, peer, data, port)
    expected = APP_LAYER[name]
    if expected is None:
        assert resp is None
    else:
        assert resp is not None and resp.status == expected
        if expected == 420:
            assert "nothingSupportsThis" in (resp.headers.get("Unsupported") or "")
    ua.shutdown(timeout=0)


def test_udp_keepalives_follow_the_registration_flow(loop: Loop) -> None:
    """A registrar made of a plain socket: it answers REGISTER 200 and counts keep-alives."""
    from sipstack.message import Request, make_response

    ua, rec, tid = make_ua(loop)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as registrar:
        registrar.bind(("127.0.0.1", 0))
        registrar.setblocking(False)
        port = registrar.getsockname()[1]
        keepalives: list[bytes] = []

        def on_datagram() -> None:
            data, addr = registrar.recvfrom(65535)
            if data.strip() == b"":
                keepalives.append(data)
                return
            req = parse_message(data)
            assert isinstance(req, Request)
            resp = make_response(req, 200)
            resp.headers.set("Contact", f"{req.headers.get('Contact')};expires=300")
            registrar.sendto(resp.to_bytes(), addr)

        loop.add_reader(registrar, on_datagram)
        acc = ua.acc_add(
            AccountConfig(id="<sip:kay@127.0.0.1>", reg_uri=f"sip:127.0.0.1:{port}", ka_interval=1)
        )
        assert loop.run_until(lambda: len(keepalives) >= 2, timeout=5)
        assert keepalives[0] == b"\r\n"  # ka_data default
        assert ua.acc_get_info(acc).status == 200
        loop.remove_reader(registrar)
    ua.shutdown(timeout=0)


def test_request_filter_answers_403_and_admit_drops(loop: Loop) -> None:
    from sipstack.message import make_response

    ua, _, tid = make_ua(loop)
    ua.acc_add_local(tid)
    port = ua.endpoint.transports.info(tid).local_port
    ua.add_request_filter(
        lambda inc: (
            make_response(inc.request, 403) if "evil" in str(inc.request.from_.uri) else None
        )
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        wport = peer.getsockname()[1]

        def options(user: str, branch: str) -> bytes:
            return (
                f"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{wport};"
                f"branch=z9hG4bK{branch};rport\r\nFrom: <sip:{user}@h>;tag=1\r\n"
                "To: <sip:x@127.0.0.1>\r\nCall-ID: f1\r\nCSeq: 1 OPTIONS\r\n"
                "Max-Forwards: 70\r\n\r\n"
            ).encode()

        ok = _exchange(loop, peer, options("friend", "a1"), port)
        assert ok is not None and ok.status == 200
        bad = _exchange(loop, peer, options("evil", "a2"), port)
        assert bad is not None and bad.status == 403
        ua.endpoint.admit = lambda req, src: "evil" not in str(req.from_.uri)
        assert _exchange(loop, peer, options("evil", "a3"), port) is None
        assert ua.endpoint.refused == 1
    ua.shutdown(timeout=0)


def test_local_account_needs_a_listening_transport(loop: Loop) -> None:
    from sipstack.tls import client_context

    ua = UserAgent(loop)
    tls = ua.transport_create("tls", "127.0.0.1", 0, tls_client=client_context())
    with pytest.raises(ValueError, match="does not listen"):
        ua.acc_add_local(tls)
    ua.shutdown(timeout=0)
