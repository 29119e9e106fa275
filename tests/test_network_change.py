"""Network change: a registered account moves its binding when the device's address changes.

Each test creates its own network namespace (named after the pid plus a random
tag; deleted in ``finally`` even when the test fails) joined to the root
namespace by a veth pair on a free 198.18.N.0/24 subnet (RFC 2544 benchmarking
space): ``.1`` is the device inside the namespace, ``.2`` the registrar in the
root namespace. The device is a child Python process run with ``ip netns
exec``: a :class:`~sipstack.useragent.UserAgent` with one account registering
over UDP from a transport bound to ``0.0.0.0``. The registrar is a plain UDP
socket in this test that answers every REGISTER with 200 (echoing the
Contacts it keeps) and records every datagram with its source address.

Then the test deletes the device's address and adds another (``.3``), and the
child calls ``ua.handle_network_change()`` -- told to over its stdin, or by the
real ``hal.netwatch`` rtnetlink watcher, as the firmware wires it. Asserted:
within 10 s a REGISTER arrives *from the new address* whose Contact is the new
address and which removes the old binding (``expires=0``, RFC 3261 10.2.2), and
the UDP keep-alives (``ka_data``) reach the registrar, from the new address
afterwards. Needs root and iproute2; skipped otherwise.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sipstack.message import Request, make_response, parse_message

ROOT = Path(__file__).resolve().parents[1]
BOUND = 10.0  # seconds: "re-register from the new address within seconds"
KA_INTERVAL = 1  # seconds between keep-alive datagrams in the child

CHILD = r"""
import dataclasses, json, logging, os, random, sys
from sipstack.account_config import AccountConfig
from sipstack.account_events import RegStateChanged
from sipstack.loop import Loop
from sipstack.timers import TimerConfig
from sipstack.useragent import UserAgent

registrar, mode, ka = sys.argv[1], sys.argv[2], int(sys.argv[3])
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
loop = Loop()

def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

def on_event(e):
    if isinstance(e, RegStateChanged):
        emit({"type": "reg", "registered": e.is_registered, "status": e.status, "note": e.note})

ua = UserAgent(loop, on_event=on_event, timers=TimerConfig(t1=0.1), rng=random.Random(5))
ua.transport_create("udp", "0.0.0.0", 0)
acc = ua.acc_add(AccountConfig(id="<sip:door@test.local>", reg_uri=f"sip:{registrar}",
                               reg_timeout=120, ka_interval=ka, reg_retry_interval=2))
watcher = None
if mode == "watcher":
    from hal.netwatch import NetifacesWatcher

    watcher = NetifacesWatcher(loop, use_netlink=True)

    def on_network(event):
        emit({"type": "net", "event": type(event).__name__})
        ua.handle_network_change()

    watcher.set_handler(on_network)
pending = b""

def on_stdin():
    global pending
    data = os.read(0, 4096)
    if not data:
        loop.remove_reader(0)
        if watcher is not None:
            watcher.close()
        ua.shutdown(timeout=3)
        emit({"type": "bye"})
        loop.stop()
        return
    pending += data
    while b"\n" in pending:
        line, pending = pending.split(b"\n", 1)
        if line.strip() == b"change":
            ua.handle_network_change()
            emit({"type": "changed"})

loop.add_reader(0, on_stdin)
emit({"type": "ready"})
loop.run()
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _used_subnets() -> str:
    out = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, timeout=10)
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, timeout=10)
    return out.stdout + routes.stdout


@dataclass(frozen=True, slots=True)
class Net:
    """The namespace and its addresses: ``device`` (old), ``moved`` (new), ``registrar``."""

    ns: str
    device: str
    moved: str
    registrar: str


@pytest.fixture
def net() -> Iterator[Net]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    tag = secrets.token_hex(3)
    name = f"acnc{os.getpid()}{tag}"
    root_if = f"acr{tag}"  # the root namespace end of the veth pair (<= 15 chars)
    used = _used_subnets()
    free = [n for n in range(256) if f"198.18.{n}." not in used and f"198.19.{n}." not in used]
    if not free:
        pytest.skip("no free 198.18.N.0/24 subnet for the test")
    n = secrets.choice(free)
    base = ipaddress.IPv4Address(f"198.18.{n}.0")
    device, registrar, moved = (str(base + i) for i in (1, 2, 3))
    try:
        _ip("netns", "add", name)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create a network namespace: {exc.stderr.decode().strip()}")
    usable = subprocess.run(
        ["ip", "-n", name, "link", "set", "lo", "up"], capture_output=True, timeout=10
    )
    if usable.returncode != 0:
        # e.g. a chroot without its own /run: the namespace exists but cannot be entered
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        pytest.skip(f"network namespaces unusable here: {usable.stderr.decode().strip()}")
    try:
        _ip("link", "add", root_if, "type", "veth", "peer", "name", "va", "netns", name)
        _ip("addr", "add", f"{registrar}/24", "dev", root_if)
        _ip("link", "set", root_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        _ip("-n", name, "addr", "add", f"{device}/24", "dev", "va")
        _ip("-n", name, "link", "set", "va", "up")
        yield Net(name, device, moved, registrar)
    finally:
        # Deleting the namespace destroys va and with it its peer in the root namespace.
        subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=10)
        subprocess.run(["ip", "link", "del", root_if], capture_output=True, timeout=10)


@dataclass(frozen=True, slots=True)
class Datagram:
    """One datagram the registrar received: when, from where, what."""

    at: float
    source: tuple[str, int]
    data: bytes

    @property
    def register(self) -> Request | None:
        if self.data.strip() == b"":
            return None
        msg = parse_message(self.data)
        return msg if isinstance(msg, Request) and msg.method == "REGISTER" else None


class PlainRegistrar:
    """A UDP registrar on one socket: answers REGISTER with 200, logs every datagram.

    The 200 lists the Contacts still bound with their ``expires`` (RFC 3261 10.3
    step 8) and the Via gets ``received``/``rport`` (RFC 3581 4), so the client
    sees no NAT and keeps its Contact. Driven from the test: :meth:`wait_for`
    reads until a predicate holds.
    """

    def __init__(self, host: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.address: tuple[str, int] = self.sock.getsockname()
        self.received: list[Datagram] = []
        self.bindings: dict[str, int] = {}
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ)

    def _answer(self, req: Request, source: tuple[str, int]) -> None:
        default = req.expires if req.expires is not None else 3600
        for contact in req.contacts:
            expires_param = contact.params.get("expires")
            expires = int(expires_param) if expires_param is not None else default
            key = str(contact.uri)
            if expires == 0:
                self.bindings.pop(key, None)
            else:
                self.bindings[key] = expires
        resp = make_response(req, 200, to_tag="reg1")
        via = req.top_via
        via.params["received"] = source[0]
        if "rport" in via.params:
            via.params["rport"] = str(source[1])
        vias = [str(via)] + [str(v) for v in req.vias[1:]]
        resp.headers.set("Via", vias[0])
        for extra in vias[1:]:
            resp.headers.add("Via", extra)
        for uri, expires in self.bindings.items():
            resp.headers.add("Contact", f"<{uri}>;expires={expires}")
        self.sock.sendto(resp.to_bytes(), source)

    def poll(self, timeout: float) -> None:
        """Read (and answer) what arrives within ``timeout`` seconds."""
        if not self._sel.select(timeout):
            return
        while True:
            try:
                data, source = self.sock.recvfrom(65535, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return
            gram = Datagram(time.monotonic(), source, data)
            self.received.append(gram)
            req = gram.register
            if req is not None:
                self._answer(req, source)

    def wait_for(
        self, predicate: Callable[[Datagram], bool], what: str, timeout: float = BOUND
    ) -> Datagram:
        """The first datagram (already received or arriving within ``timeout``) matching."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for gram in self.received[seen:]:
                if predicate(gram):
                    return gram
            seen = len(self.received)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {what} within {timeout} s; got {self.describe()}")
            self.poll(left)

    def describe(self) -> str:
        return "\n".join(f"{g.source}: {g.data[:400]!r}" for g in self.received[-12:])

    def close(self) -> None:
        self._sel.close()
        self.sock.close()


class Device:
    """The child process in the namespace: reports events as JSON lines on stdout."""

    def __init__(self, ns: str, registrar: tuple[str, int], mode: str) -> None:
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            [
                "ip", "netns", "exec", ns, sys.executable, "-c", CHILD,
                f"{registrar[0]}:{registrar[1]}", mode, str(KA_INTERVAL),
            ],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self._fd = self.proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._buf = b""
        self.lines: list[dict[str, Any]] = []

    def read(self) -> None:
        """Collect whatever the child printed so far (non-blocking)."""
        with contextlib.suppress(BlockingIOError):
            chunk = os.read(self._fd, 65536)
            self._buf += chunk
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            self.lines.append(json.loads(line))

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def finish(self, poll: Callable[[float], None], timeout: float = 10.0) -> None:
        """Close stdin (the child shuts down) and keep ``poll`` running until it exits."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            poll(0.05)
        self.read()

    def errors(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self.stderr.close()


def _contacts(req: Request) -> dict[str, int | None]:
    """Contact host -> the expiry asked for it (its ``expires`` parameter, else the
    Expires header, RFC 3261 10.2.1.1), None when neither is given."""
    out: dict[str, int | None] = {}
    for c in req.contacts:
        param = c.params.get("expires")
        out[c.uri.host] = int(param) if param is not None else req.expires
    return out


def _is_keepalive(gram: Datagram) -> bool:
    return gram.data == b"\r\n"


@pytest.mark.parametrize("mode", ["explicit", "watcher"])
def test_address_change_moves_the_binding(net: Net, mode: str) -> None:
    registrar = PlainRegistrar(net.registrar)
    device = Device(net.ns, registrar.address, mode)
    try:
        first = registrar.wait_for(
            lambda g: g.register is not None and g.source[0] == net.device,
            f"REGISTER from {net.device}",
            timeout=20.0,  # child start-up (imports) included
        )
        req = first.register
        assert req is not None
        port = first.source[1]
        assert _contacts(req) == {net.device: 120}
        assert req.contacts[0].uri.port == port  # the Contact is where we send from
        # UDP keep-alives (ka_data, default CRLF) reach the registrar from the device
        registrar.wait_for(
            lambda g: _is_keepalive(g) and g.source == (net.device, port),
            "keep-alive from the device",
            timeout=KA_INTERVAL * 4,
        )

        _ip("-n", net.ns, "addr", "del", f"{net.device}/24", "dev", "va")
        if mode == "watcher":
            # let the watcher report the removal on its own before the new address comes
            deadline = time.monotonic() + BOUND
            while not any(line.get("event") == "AddressRemoved" for line in device.lines):
                assert time.monotonic() < deadline, f"watcher silent: {device.errors()}"
                registrar.poll(0.05)
                device.read()
        _ip("-n", net.ns, "addr", "add", f"{net.moved}/24", "dev", "va")
        changed_at = time.monotonic()
        if mode == "explicit":
            device.send("change")

        moved = registrar.wait_for(
            lambda g: g.register is not None and g.source[0] == net.moved,
            f"REGISTER from the new address {net.moved}",
        )
        latency = moved.at - changed_at
        req = moved.register
        assert req is not None
        contacts = _contacts(req)
        # the new binding, and the old one removed in the same REGISTER (RFC 3261 10.2.2)
        assert contacts.get(net.moved) == 120, f"no new binding: {req.to_bytes()!r}"
        assert contacts.get(net.device) == 0, f"old binding not removed: {req.to_bytes()!r}"
        assert {c.uri.port for c in req.contacts if c.uri.host == net.moved} == {moved.source[1]}
        assert registrar.bindings == {f"sip:door@{net.moved}:{moved.source[1]}": 120}
        registrar.wait_for(
            lambda g: _is_keepalive(g) and g.source == moved.source,
            "keep-alive from the new address",
            timeout=KA_INTERVAL * 4,
        )
        # the account reports itself registered again after the move
        deadline = time.monotonic() + 5
        while True:
            device.read()
            regs = [line for line in device.lines if line["type"] == "reg"]
            if (
                regs
                and regs[-1]["registered"]
                and "contact changed" in " ".join(r["note"] for r in regs)
            ):
                break
            assert time.monotonic() < deadline, f"{device.lines}\n{device.errors()}"
            registrar.poll(0.05)
        print(f"{mode}: new REGISTER {latency * 1000:.0f} ms after the new address was added")

        # EOF on stdin: the child shuts down, which unregisters (answered by us meanwhile)
        device.finish(registrar.poll)
        assert registrar.bindings == {}, registrar.describe()
        regs = [line for line in device.lines if line["type"] == "reg"]
        assert regs[-1] == {
            "type": "reg",
            "registered": False,
            "status": 200,
            "note": "unregistered",
        }, regs[-1]
    except BaseException:
        print(f"child stderr:\n{device.errors()}\nchild stdout: {device.lines}")
        raise
    finally:
        device.close()
        registrar.close()


def test_lost_route_never_advertises_loopback(net: Net) -> None:
    registrar = PlainRegistrar(net.registrar)
    device = Device(net.ns, registrar.address, "explicit")
    try:
        registrar.wait_for(lambda g: g.register is not None, "first REGISTER", timeout=20.0)
        _ip("-n", net.ns, "addr", "del", f"{net.device}/24", "dev", "va")
        device.send("change")  # the address went: no route to the registrar now
        _ip("-n", net.ns, "addr", "add", f"{net.moved}/24", "dev", "va")
        device.send("change")
        registrar.wait_for(
            lambda g: g.register is not None and g.source[0] == net.moved,
            "REGISTER from the new address",
        )
        device.finish(registrar.poll)
        advertised = {
            c.uri.host
            for g in registrar.received
            if (req := g.register) is not None
            for c in req.contacts
        }
        assert advertised == {net.device, net.moved}, advertised
    finally:
        device.close()
        registrar.close()


def test_link_down_shows_unregistered_at_once_and_link_up_registers(net: Net) -> None:
    # reg_timeout is 120 s: no refresh falls in this test, so "not registered"
    # during the outage and "registered" after it are the watcher's doing
    registrar = PlainRegistrar(net.registrar)
    device = Device(net.ns, registrar.address, "watcher")

    def wait_reg(registered: bool, what: str, timeout: float) -> float:
        start = time.monotonic()
        seen = len(device.lines)
        while True:
            device.read()
            regs = [x for x in device.lines[seen:] if x["type"] == "reg"]
            if regs and regs[-1]["registered"] is registered:
                return time.monotonic() - start
            assert time.monotonic() - start < timeout, f"{what}: {device.lines}\n{device.errors()}"
            registrar.poll(0.05)

    try:
        wait_reg(True, "first registration", 20.0)  # child start-up included
        _ip("-n", net.ns, "link", "set", "va", "down")
        down = wait_reg(False, "not registered after link down", 5.0)
        _ip("-n", net.ns, "link", "set", "va", "up")
        up = wait_reg(True, "registered after link up", BOUND)
        print(f"link down: unregistered after {down:.2f} s; link up: registered after {up:.2f} s")
    finally:
        device.close()
        registrar.close()
