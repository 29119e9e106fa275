"""Accounts (issue 3) against a second real client and a failing-over registrar.

- Presence end to end with baresip 1.0 as the watcher (its ``presence`` module
  subscribes to contacts marked ``;presence=p2p``, through Kamailio, answering
  Kamailio's 407 with its credentials): once served by OUR notifier (Kamailio
  routes the SUBSCRIBE to our registered Contact and record-routes the dialog),
  once by Kamailio's presence server fed by our PUBLISH. baresip runs with
  ``-s`` (SIP trace to its log), so the test reads the exact NOTIFYs it
  received, and its own verdict (``changed status from Online to Busy``).
- MESSAGE both ways between our account and baresip through Kamailio with
  digest auth on MESSAGE (407).
- Registrar failover at the account level (RFC 3263 4.3): ``reg_uri`` is a
  domain whose SRV records (tests/dnsserver.py) list a SIPp that never answers
  (or answers 503) first and Kamailio second.

Timers are real (Kamailio and baresip do not run on a fake clock); the test
loop polls the peers' logs between short loop iterations.
"""

from __future__ import annotations

import random
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sipstack.account_config import AccountConfig, RpidElement
from sipstack.account_events import (
    IncomingMessage,
    IncomingSubscribe,
    MessageStatus,
    RegStateChanged,
    UaEvent,
)
from sipstack.digest import CredentialInfo
from sipstack.loop import Loop
from sipstack.resolver import Resolver
from sipstack.timers import TimerConfig
from sipstack.useragent import UserAgent

from ..dnsserver import DnsTestServer
from .conftest import _KamailioLog, _register_peer
from .peers import KamailioConfig, KamailioServer, ManagedProcess, PeerStartError, PortAllocator
from .peers.sipp import port_bound

pytestmark = pytest.mark.interop

FAST = TimerConfig(t1=0.1, t2=0.8, t4=1.0)
OUR_AGENT = "intercom-firmware"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


# -- our side ------------------------------------------------------------------------


class Agent:
    """Our user agent on a UDP transport, with the events it reported."""

    def __init__(
        self, loop: Loop, resolver: Resolver | None = None, timers: TimerConfig = FAST
    ) -> None:
        self.loop = loop
        self.events: list[UaEvent] = []
        self.ua = UserAgent(
            loop,
            on_event=self.events.append,
            timers=timers,
            resolver=resolver,
            rng=random.Random(11),
        )
        self.ua.transport_create("udp", "127.0.0.1", 0)

    def of(self, kind: type[Any]) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def registered(self, acc: int) -> bool:
        regs = [e for e in self.of(RegStateChanged) if e.acc_id == acc]
        return bool(regs) and regs[-1].is_registered


def wait(loop: Loop, predicate: Callable[[], bool], timeout: float) -> bool:
    """Run the loop in short steps until ``predicate()`` (which may read a peer's
    log, something the loop cannot wake up for) holds or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return predicate()
        loop.run_once(max_wait=0.05)
    return True


def door_account(kam: KamailioServer, **extra: Any) -> AccountConfig:
    return AccountConfig(
        id="<sip:door@test.local>",
        reg_uri=kam.uri(),
        proxy=[kam.uri()],
        cred_info=[CredentialInfo("*", "door", "d00r")],
        ka_interval=0,
        reg_retry_interval=2,
        reg_first_retry_interval=1,
        **extra,
    )


# -- Kamailio that routes SUBSCRIBE to the registered user agent ------------------------


class SubscribeRoutingKamailio(KamailioServer):
    """The shared test Kamailio, but without the presence server *and* without its
    ``404 No presence server`` for SUBSCRIBE: a SUBSCRIBE for a registered AoR
    goes through auth and ``lookup("location")`` to the user agent, like an
    INVITE, and is record-routed (so NOTIFYs come back through the proxy).

    The shared template has no switch for this (see the report to the lead), so
    the rendered cfg is edited; the edit fails loudly if the template changes.
    """

    _NO_SERVER = (
        'if (is_method("PUBLISH|SUBSCRIBE")) {\n\t\tsl_send_reply("404", "No presence server");'
    )
    _PUBLISH_ONLY = 'if (is_method("PUBLISH")) {\n\t\tsl_send_reply("404", "No presence server");'

    def _render(self) -> None:
        super()._render()
        text = self.cfg_path.read_text()
        if self._NO_SERVER not in text:
            raise AssertionError(f"proxy.cfg changed: no SUBSCRIBE 404 to lift in {self.cfg_path}")
        self.cfg_path.write_text(text.replace(self._NO_SERVER, self._PUBLISH_ONLY))


@pytest.fixture
def routing_kamailio(
    request: pytest.FixtureRequest, tmp_path: Path, port_allocator: PortAllocator
) -> Iterator[Callable[..., KamailioServer]]:
    """Factory ``routing_kamailio(users, **options)``: a started SubscribeRoutingKamailio."""
    if shutil.which("kamailio") is None or shutil.which("kamcmd") is None:
        pytest.skip("kamailio is not installed")
    made: list[KamailioServer] = []

    def make(users: dict[str, str], **options: Any) -> KamailioServer:
        server = SubscribeRoutingKamailio(
            KamailioConfig(users=users, **options),
            tmp_path / f"routing-kamailio{len(made)}",
            port=port_allocator.allocate(),
        )
        made.append(server)
        _register_peer(request, _KamailioLog(server))
        server.start()
        return server

    yield make
    for server in made:
        server.stop()


# -- baresip as the second client ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Traced:
    """One SIP message from baresip's ``-s`` trace, as baresip saw it."""

    received: bool  # True: baresip received it; False: baresip sent it
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def method(self) -> str:
        """Request method, or ``"SIP/2.0"`` for a response."""
        return self.first_line.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        parts = self.first_line.split(" ", 2)
        return int(parts[1]) if parts[0] == "SIP/2.0" else None

    def header(self, name: str) -> str | None:
        match = re.search(rf"^{re.escape(name)}:\s*(.*)$", self.text, re.MULTILINE | re.IGNORECASE)
        return match.group(1).strip() if match else None

    @property
    def body(self) -> str:
        return self.text.split("\n\n", 1)[1] if "\n\n" in self.text else ""


class Baresip:
    """baresip 1.0 registered as ``flat`` at Kamailio, with its SIP trace in its log.

    ``contacts`` lines go to its address book (``;presence=p2p`` makes its
    presence module subscribe). Commands go over the ``cons`` module's UDP port.
    """

    name = "baresip"

    def __init__(
        self, run_dir: Path, ports: PortAllocator, kam: KamailioServer, contacts: list[str]
    ) -> None:
        run_dir.mkdir(parents=True)
        self.port = ports.allocate()
        self.cons_port = ports.allocate()
        (run_dir / "config").write_text(
            f"sip_listen\t127.0.0.1:{self.port}\n"
            "sip_trans_def\tudp\n"
            "net_interface\t127.0.0.1\n"
            "module_path\t/usr/lib/baresip/modules\n"
            "module_app\taccount.so\nmodule_app\tcontact.so\nmodule_app\tmenu.so\n"
            "module_app\tpresence.so\nmodule\tcons.so\n"
            f"cons_listen\t127.0.0.1:{self.cons_port}\n"
        )
        (run_dir / "accounts").write_text(
            f'<sip:flat@test.local>;auth_pass=fl4t;outbound="{kam.uri()}";regint=300\n'
        )
        (run_dir / "contacts").write_text("".join(f"{line}\n" for line in contacts))
        self.log_path = run_dir / "baresip.log"
        self.process = ManagedProcess(
            ["baresip", "-f", str(run_dir), "-s"], self.log_path, name="baresip"
        )
        deadline = time.monotonic() + 10
        while not port_bound(self.cons_port, "udp"):
            if time.monotonic() > deadline or not self.process.running:
                log = self.describe()
                self.stop()
                raise PeerStartError(f"baresip did not start\n{log}")
            time.sleep(0.05)  # waiting for an external process to bind, not protocol timing

    def log(self) -> str:
        return _ANSI.sub("", self.log_path.read_text(errors="replace"))

    def trace(self) -> list[Traced]:
        """Every SIP message baresip sent or received so far.

        ``-s`` prints each as ``ESC[36;1m#``, ``UDP src -> dst``, the message,
        ``ESC[;m``: the colour codes delimit it (a body may hold any text).
        """
        raw = self.log_path.read_text(errors="replace")
        out = []
        for match in re.finditer(
            r"\x1b\[36;1m#\n(?:UDP|TCP|TLS) (\S+) -> (\S+)\n(.*?)\x1b\[;m", raw, re.DOTALL
        ):
            dest_port = int(match.group(2).rsplit(":", 1)[1])
            text = match.group(3).replace("\r\n", "\n").strip("\n")
            out.append(Traced(dest_port == self.port, text))
        return out

    def requests(self, method: str) -> list[Traced]:
        """Requests baresip received, once each (UDP retransmissions dropped)."""
        seen: set[tuple[str | None, str | None]] = set()
        out = []
        for m in self.trace():
            key = (m.header("Call-ID"), m.header("CSeq"))
            if m.received and m.method == method and key not in seen:
                seen.add(key)
                out.append(m)
        return out

    def notifies(self) -> list[Traced]:
        return self.requests("NOTIFY")

    def contact_status(self, aor: str) -> str | None:
        """The status ``/contacts`` shows for ``aor`` (Unknown, Online, Busy, Offline)."""
        match = re.search(rf"(\w+) [^\n]*<{re.escape(aor)}>", self.command("/contacts"))
        return match.group(1) if match else None

    def status_changes(self, aor: str) -> list[str]:
        """baresip's verdicts: the statuses it moved ``aor`` to, in order (it logs a
        change, but not the first move away from Unknown)."""
        return re.findall(rf"<{re.escape(aor)}> changed status from \S+ to (\S+)", self.log())

    def command(self, text: str) -> str:
        """A menu command through ``cons`` (UDP); returns baresip's printed answer."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(0.3)
            sock.sendto(f"{text}\n".encode(), ("127.0.0.1", self.cons_port))
            out = b""
            try:
                while True:
                    out += sock.recv(65535)
            except TimeoutError:
                pass
        return _ANSI.sub("", out.decode(errors="replace"))

    def describe(self) -> str:
        return self.process.log_text()

    def stop(self) -> None:
        self.process.stop(term_timeout=2.0)


@pytest.fixture
def baresip(
    request: pytest.FixtureRequest, tmp_path: Path, port_allocator: PortAllocator
) -> Iterator[Callable[..., Baresip]]:
    """Factory ``baresip(kam, contacts)``; stopped by PID after the test."""
    if shutil.which("baresip") is None:
        pytest.skip("baresip is not installed")
    made: list[Baresip] = []

    def make(kam: KamailioServer, contacts: list[str]) -> Baresip:
        peer = Baresip(tmp_path / f"baresip{len(made)}", port_allocator, kam, contacts)
        made.append(peer)
        _register_peer(request, peer)
        return peer

    yield make
    for peer in made:
        peer.stop()


def _registered_at(kam: KamailioServer, user: str) -> Callable[[], bool]:
    return lambda: user in kam.registrations()


USERS = {"door": "d00r", "flat": "fl4t"}
WATCH_DOOR = '"Door" <sip:door@test.local>;presence=p2p'


# -- 1a: presence, our notifier --------------------------------------------------------


def test_baresip_watches_our_notifier_through_kamailio(
    loop: Loop,
    routing_kamailio: Callable[..., KamailioServer],
    baresip: Callable[..., Baresip],
) -> None:
    kam = routing_kamailio(USERS, challenge_requests=True)
    door = Agent(loop)
    acc = door.ua.acc_add(door_account(kam))
    assert wait(loop, lambda: door.registered(acc), 10)
    peer = baresip(kam, [WATCH_DOOR])
    assert wait(loop, lambda: bool(door.of(IncomingSubscribe)), 10), peer.describe()
    assert door.of(IncomingSubscribe)[0].subscriber == "sip:flat@test.local"
    assert wait(loop, lambda: peer.contact_status("sip:door@test.local") == "Online", 10)

    door.ua.acc_set_online_status2(acc, True, RpidElement(activity="busy", note="Ringing"))
    assert wait(loop, lambda: peer.status_changes("sip:door@test.local")[-1:] == ["Busy"], 10)
    door.ua.acc_set_online_status2(acc, False, RpidElement(note="Out of order"))
    assert wait(loop, lambda: peer.status_changes("sip:door@test.local")[-1:] == ["Offline"], 10)
    assert peer.contact_status("sip:door@test.local") == "Offline"

    trace = peer.trace()
    # Kamailio challenged baresip's SUBSCRIBE; the authorised one reached us
    subscribes = [m for m in trace if not m.received and m.method == "SUBSCRIBE"]
    assert any(m.header("Proxy-Authorization") for m in subscribes)
    assert any(
        m.received and m.status == 407 and "SUBSCRIBE" in (m.header("CSeq") or "") for m in trace
    )
    # every NOTIFY baresip got came from our notifier, through Kamailio (Via of both)
    notifies = peer.notifies()
    assert len(notifies) == 3, [n.text for n in notifies]
    for n in notifies:
        assert (n.header("User-Agent") or "").startswith(OUR_AGENT), n.text
        assert n.header("Content-Type") == "application/pidf+xml"
        assert n.text.count("\nVia:") == 2, n.text
    first, busy, closed = (n.body for n in notifies)
    assert "<basic>open</basic>" in first and "rpid:busy" not in first
    assert "<basic>open</basic>" in busy and "<rpid:busy/>" in busy and "Ringing" in busy
    assert "<basic>closed</basic>" in closed and "Out of order" in closed
    # baresip answered each of them 200
    ok = [
        m
        for m in trace
        if not m.received and m.status == 200 and (m.header("CSeq") or "").endswith("NOTIFY")
    ]
    assert len(ok) >= 3

    # deleting the account terminates the subscription (RFC 6665 4.2.2)
    door.ua.acc_del(acc)
    assert wait(
        loop,
        lambda: any(
            (n.header("Subscription-State") or "").startswith("terminated") for n in peer.notifies()
        ),
        10,
    )
    door.ua.shutdown()


# -- 1a: presence, Kamailio's presence server fed by our PUBLISH -------------------------


def test_baresip_watches_our_publication_at_kamailio_presence_server(
    loop: Loop, kamailio_server: Callable[..., KamailioServer], baresip: Callable[..., Baresip]
) -> None:
    kam = kamailio_server(USERS, presence=True, challenge_requests=True)
    door = Agent(loop)
    acc = door.ua.acc_add(door_account(kam, publish_enabled=True))
    assert wait(loop, lambda: door.registered(acc), 10)
    peer = baresip(kam, [WATCH_DOOR])
    # the PUBLISH on acc_add made us "open" at the server: baresip hears it from Kamailio
    assert wait(loop, lambda: peer.contact_status("sip:door@test.local") == "Online", 10), (
        peer.describe()
    )

    door.ua.acc_set_online_status2(acc, True, RpidElement(activity="busy", note="Ringing"))
    assert wait(loop, lambda: peer.status_changes("sip:door@test.local")[-1:] == ["Busy"], 10)
    door.ua.acc_set_online_status2(acc, False, RpidElement(note="Out of order"))
    assert wait(loop, lambda: peer.status_changes("sip:door@test.local")[-1:] == ["Offline"], 10)

    # Kamailio answered the SUBSCRIBE itself: nothing reached our notifier
    assert door.of(IncomingSubscribe) == []
    bodies = [
        n.body for n in peer.notifies() if (n.header("User-Agent") or "").startswith("kamailio")
    ]
    busy = [b for b in bodies if "<rpid:busy/>" in b]
    assert busy and "Ringing" in busy[0] and "<basic>open</basic>" in busy[0]
    assert any("<basic>closed</basic>" in b and "Out of order" in b for b in bodies)
    door.ua.shutdown()


# -- 1b: MESSAGE both ways ------------------------------------------------------------


def test_message_both_ways_with_baresip_through_kamailio(
    loop: Loop, kamailio_server: Callable[..., KamailioServer], baresip: Callable[..., Baresip]
) -> None:
    kam = kamailio_server(USERS, challenge_requests=True)
    door = Agent(loop)
    acc = door.ua.acc_add(door_account(kam))
    peer = baresip(kam, ['"Door" <sip:door@test.local>'])
    assert wait(loop, lambda: door.registered(acc) and "flat" in kam.registrations(), 10), (
        peer.describe()
    )

    # theirs -> ours: baresip's MESSAGE to its current contact, challenged by Kamailio
    peer.command("/message Hello from the flat")
    assert wait(loop, lambda: bool(door.of(IncomingMessage)), 10), peer.describe()
    got = door.of(IncomingMessage)[0]
    assert got.body == b"Hello from the flat"
    assert got.from_uri == "sip:flat@test.local" and got.acc_id == acc
    assert got.content_type.startswith("text/plain")

    def answered(status: int) -> Callable[[], bool]:
        return lambda: any(
            m.received and m.status == status and (m.header("CSeq") or "").endswith("MESSAGE")
            for m in peer.trace()
        )

    assert answered(407)(), "Kamailio did not challenge baresip's MESSAGE"
    assert wait(loop, answered(200), 5), "baresip never saw our 200 for its MESSAGE"

    # ours -> theirs: through the account's route set, answering Kamailio's 407
    door.ua.im_send(acc, "sip:flat@test.local", "Someone is at the door", token="t1")
    assert wait(loop, lambda: bool(door.of(MessageStatus)), 10)
    status = door.of(MessageStatus)[0]
    assert (status.status, status.token) == (200, "t1")
    received = peer.requests("MESSAGE")
    assert [m.body.strip() for m in received] == ["Someone is at the door"]
    assert (received[0].header("From") or "").startswith("<sip:door@test.local>")
    assert any(
        not m.received
        and m.status == 200
        and m.header("CSeq") == received[0].header("CSeq")
        and m.header("Call-ID") == received[0].header("Call-ID")
        for m in peer.trace()
    )
    door.ua.shutdown()


# -- 2: registrar failover through RFC 3263 targets ---------------------------------------


def _srv_zone(first_port: int, second_port: int) -> str:
    return (
        f"_sip._udp.reg.test. 60 IN SRV 10 0 {first_port} a.reg.test.\n"
        f"_sip._udp.reg.test. 60 IN SRV 20 0 {second_port} b.reg.test.\n"
        "a.reg.test. 60 IN A 127.0.0.1\nb.reg.test. 60 IN A 127.0.0.1\n"
    )


@pytest.fixture
def failover(
    loop: Loop,
    kamailio_server: Callable[..., KamailioServer],
    sipp: Callable[..., Any],
    request: pytest.FixtureRequest,
) -> Iterator[tuple[Agent, int, KamailioServer, Any]]:
    """An account with ``reg_uri=sip:reg.test``: SRV 10 -> a broken SIPp, SRV 20 -> Kamailio."""
    scenario = getattr(request, "param", "uas_silent")
    kam = kamailio_server({"door": "d00r"})
    broken = sipp(scenario, method="REGISTER", timeout=60, render={"silent_ms": 60000})
    with DnsTestServer(_srv_zone(broken.address[1], kam.port)) as dns:
        resolver = Resolver(
            loop,
            nameservers=[dns.address],
            resolv_conf=None,
            hosts_file=None,
            supported_transports=("udp",),
        )
        agent = Agent(loop, resolver=resolver, timers=TimerConfig(t1=0.1))
        acc = agent.ua.acc_add(
            AccountConfig(
                id="<sip:door@test.local>",
                reg_uri="sip:reg.test",
                cred_info=[CredentialInfo("*", "door", "d00r")],
                ka_interval=0,
                reg_timeout=60,
                reg_retry_interval=2,
                reg_first_retry_interval=1,
            )
        )
        yield agent, acc, kam, broken
        agent.ua.shutdown(timeout=0)
        resolver.close()


@pytest.mark.parametrize("failover", ["uas_silent", "uas_503"], indirect=True)
def test_account_fails_over_to_the_second_srv_target(
    loop: Loop, failover: tuple[Agent, int, KamailioServer, Any]
) -> None:
    agent, acc, kam, broken = failover
    # Timer F with T1=0.1 is 6.4 s per silent attempt (REGISTER, then the authorised one)
    assert wait(loop, lambda: agent.registered(acc), 25), broken.describe()
    assert broken.received("REGISTER"), "the first SRV target was never tried"
    contacts = kam.registrations()["door"]
    info = agent.ua.acc_get_info(acc)
    assert (info.status, info.has_registration) == (200, True) and info.expires > 0
    local = agent.ua.acc_create_uac_contact(acc, "sip:reg.test")
    assert [c.uri for c in contacts] == [local.strip("<>")]


def test_unregister_after_failover_reaches_the_registrar_at_once(
    loop: Loop, failover: tuple[Agent, int, KamailioServer, Any]
) -> None:
    agent, acc, kam, _ = failover
    assert wait(loop, lambda: agent.registered(acc) and "door" in kam.registrations(), 25)
    agent.ua.acc_set_registration(acc, False)
    # unreg_timeout (4 s default) is shorter than Timer F (6.4 s here, 32 s by default)
    assert wait(loop, lambda: "door" not in kam.registrations(), 3.0)
