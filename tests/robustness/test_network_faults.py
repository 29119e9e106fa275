"""Network faults (issue 8): a real ``intercom run`` in a namespace, Kamailio outside.

Each test makes its own namespace and veth pair (:mod:`tests.robustness.netns`):
the device runs inside it (``ip netns exec``) with the real rtnetlink network
watcher, Kamailio runs in the root namespace listening on the veth's root end.
Then the test breaks the network the way a house does and asserts, by polling
Kamailio's location table (``kamcmd ul.dump``) and the device's
``intercom status --json``:

- the address changes (DHCP renumbering): the device's binding at Kamailio is
  the new address within 10 s of the new address being added;
- the link goes down for 30 s: status stops claiming "registered" once a
  refresh fails, and within 10 s of link up the device is registered again;
- its TCP connection to the registrar is reset, or silently black-holed (only
  the RFC 5626 CRLF keep-alive can notice): it reconnects and registers again;
- a call in progress when the address changes is re-INVITEd or ended, never
  left hanging.

The peers run on the wall clock; every wait is a bounded poll. Figures (time to
re-register, counts) are printed with ``-s`` for docs/robustness.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.device import DESK_FLAT, Firmware, poll
from tests.interop.peers import KamailioConfig, KamailioServer, PortAllocator, make_certs

from .netns import VethNet, veth_namespace

BOUND = 10.0  # seconds: "re-registers within 10 s of the network being usable"
DOOR_HZ = 700


@pytest.fixture
def net() -> Iterator[VethNet]:
    with veth_namespace() as made:
        yield made


@pytest.fixture
def registrar(
    net: VethNet, tmp_path: Path, port_allocator: PortAllocator, request: pytest.FixtureRequest
) -> Iterator[KamailioServer]:
    """Kamailio (open registrar) in the root namespace, on the veth's root address;
    with TLS too when the test is parametrized with ``transport="tls"``.

    Built here rather than with ``kamailio_server`` because that fixture always
    listens on 127.0.0.1, which the namespace cannot reach (and its certificate
    names 127.0.0.1 only).
    """
    import shutil

    if shutil.which("kamailio") is None or shutil.which("kamcmd") is None:
        pytest.skip("kamailio/kamcmd not installed")
    tls = getattr(request, "param", "udp") == "tls"
    certs = None
    if tls:
        if shutil.which("openssl") is None:
            pytest.skip("openssl not installed")
        certs = make_certs(tmp_path / "certs", ip=net.registrar)
    server = KamailioServer(
        KamailioConfig(min_expires=5, tls=tls),
        tmp_path / "kamailio",
        port=port_allocator.allocate(),
        tls_port=port_allocator.allocate() if tls else None,
        certs=certs,
        host=net.registrar,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def device_config(
    kam: KamailioServer,
    port: int,
    record: Path,
    *,
    transport: str = "udp",
    reg_timeout: int = 60,
    ka_interval: int = 0,
    retry: int = 2,
    user: str = "door",
    extra: str = "",
) -> str:
    """One device bound to every address in the namespace (``0.0.0.0``), so a
    renumbering needs no new socket, registering at ``kam`` over ``transport``."""
    reg_uri = kam.uri(transport=transport) if transport != "udp" else kam.uri()
    tcp = f"0.0.0.0:{port}" if transport == "tcp" else ""
    tls = ""
    if transport == "tls":
        assert kam.certs is not None
        c = kam.certs  # the device's own certificate does not matter here: reuse these
        tls = f"""tls = "0.0.0.0:{port + 1}"
tls_cert = "{c.server_cert}"
tls_key = "{c.server_key}"
tls_ca = "{c.ca_cert}"
"""
    return f"""
hal = "sim"

[sip]
udp = "0.0.0.0:{port}"
tcp = "{tcp}"
{tls}
[audio]
capture_device = "tone:{DOOR_HZ}"
playback_device = "{record}"

[[accounts]]
id = "<sip:{user}@test.local>"
reg_uri = "{reg_uri}"
proxy = ["{reg_uri};lr"]
reg_timeout = {reg_timeout}
reg_retry_interval = {retry}
ka_interval = {ka_interval}
unreg_timeout = 1
{extra}
"""


def contacts(kam: KamailioServer, user: str = "door") -> list[str]:
    """Contact URIs bound to ``user`` at Kamailio now (not expired).

    Read from ``kamcmd ul.dump`` here: ``KamailioServer.registrations()`` fails
    on a contact Kamailio lists as ``Expires: expired`` (before its timer purges it).
    """
    found: list[str] = []
    aor, uri = None, None
    for line in kam.kamcmd("ul.dump").splitlines():
        key, _, value = (part.strip() for part in line.strip().partition(":"))
        if key == "AoR":
            aor = value
        elif key == "Address" and aor == user:
            uri = value
        elif key == "Expires" and uri is not None:
            if value != "expired":
                found.append(uri)
            uri = None
    return found


def timed(predicate: Callable[[], bool], timeout: float) -> float | None:
    """Seconds until ``predicate`` held (polled), or None if it did not within ``timeout``."""
    start = time.monotonic()
    if poll(predicate, timeout):
        return round(time.monotonic() - start, 2)
    return None


def start_device(firmware: Callable[..., Firmware], net: VethNet, name: str, text: str) -> Firmware:
    device: Firmware = firmware(name, text, prefix=net.prefix())
    assert poll(device.registered, 15), device.describe()
    return device


def report(label: str, device: Firmware) -> None:
    """Print the figures docs/robustness.md records (run with ``-s``)."""
    print(
        f"{label}: peak RSS {device.peak_rss_kib()} KiB, RSS {device.rss_kib()} KiB,"
        f" open fds {device.open_fds()}"
    )


def account(device: Firmware) -> dict[str, Any]:
    result: dict[str, Any] = device.status()["accounts"][0]
    return result


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_address_change_reregisters_from_new_address(
    transport: str,
    net: VethNet,
    registrar: KamailioServer,
    firmware: Callable[..., Firmware],
    port_allocator: PortAllocator,
    tmp_path: Path,
) -> None:
    port = port_allocator.allocate()
    door = start_device(
        firmware,
        net,
        "door",
        device_config(registrar, port, tmp_path / "door.wav", transport=transport, retry=60),
    )
    assert poll(lambda: any(net.device in c for c in contacts(registrar)), 5), contacts(registrar)
    assert f"va {net.device}" in door.status()["network"]["addresses"]  # the real watcher

    net.move_address(net.device, net.moved)
    took = timed(
        lambda: len(contacts(registrar)) == 1 and f"@{net.moved}:" in contacts(registrar)[0],
        BOUND,
    )
    print(f"\n{transport} address change: new Contact at Kamailio after {took} s")
    assert took is not None, (contacts(registrar), door.log_text()[-3000:])
    # the old binding was removed (RFC 3261 10.2.2), not left to expire
    assert not any(net.device in c for c in contacts(registrar))
    acc = account(door)
    assert acc["registered"] and net.moved in acc["contact"], acc
    seen = door.status()["network"]["addresses"]
    assert f"va {net.moved}" in seen and f"va {net.device}" not in seen, seen
    report(f"{transport} address change", door)
    if transport == "udp":
        assert contacts(registrar) == [f"sip:door@{net.moved}:{port}"]
    else:
        flows = net.tcp_connections(registrar.port)
        assert [host for host, _ in flows] == [net.moved], flows


def test_link_down_30s_then_up(
    net: VethNet,
    registrar: KamailioServer,
    firmware: Callable[..., Firmware],
    port_allocator: PortAllocator,
    tmp_path: Path,
) -> None:
    port = port_allocator.allocate()
    # reg_timeout and retries of 60 s: nothing in the stack's own timing falls in
    # the first seconds of the outage or right after it, so what happens then is
    # the network watcher's doing
    door = start_device(
        firmware,
        net,
        "door",
        device_config(registrar, port, tmp_path / "door.wav", reg_timeout=60, retry=60),
    )
    log_before = len(door.log_text())
    net.set_link(False)
    down_at = time.monotonic()
    # The link down is noticed, a refresh tried and failed (no route): status
    # must stop claiming "registered" at once, not when the binding runs out.
    stale_for = timed(lambda: not account(door)["registered"], 5)
    acc_down = account(door)
    print(f"\nlink down: status shows not registered after {stale_for} s: {acc_down}")
    assert stale_for is not None, (acc_down, door.log_text()[-3000:])
    # ... and never claims it again while the link is down
    while time.monotonic() - down_at < 30:
        assert not account(door)["registered"], account(door)
        time.sleep(0.5)
    outage_log = door.log_text()[log_before:].splitlines()
    print(f"log during the 30 s outage: {len(outage_log)} lines")
    print("\n".join(outage_log[:20]))
    net.set_link(True)
    took = timed(lambda: account(door)["registered"] and bool(contacts(registrar)), BOUND)
    print(f"link up: registered again after {took} s")
    assert took is not None, (account(door), contacts(registrar), door.log_text()[-3000:])
    assert contacts(registrar) == [f"sip:door@{net.device}:{port}"]
    report("link down/up", door)


def _contact_cseq(kam: KamailioServer) -> int:
    found = kam.registrations().get("door", [])
    assert len(found) == 1, found
    assert found[0].cseq is not None
    return found[0].cseq


STREAM_FAULTS = [
    ("tcp", "reset"),
    ("tcp", "blackhole"),
    ("tcp", "outage"),
    ("tls", "reset"),
    ("tls", "blackhole"),
]


@pytest.mark.parametrize(
    ("registrar", "fault"),
    STREAM_FAULTS,
    ids=[f"{t}-{f}" for t, f in STREAM_FAULTS],
    indirect=["registrar"],
)
def test_stream_flow_reset_or_blackholed(
    fault: str,
    net: VethNet,
    registrar: KamailioServer,
    firmware: Callable[..., Firmware],
    port_allocator: PortAllocator,
    tmp_path: Path,
) -> None:
    """``reset``: the registrar's end aborts the connection (RST).
    ``blackhole``: every packet of the connection is dropped, silently, for good.
    ``outage``: everything to and from the registrar is dropped for 20 s."""
    import shutil

    if fault != "reset" and shutil.which("nft") is None:
        pytest.skip("nft (Debian package nftables) not installed")
    transport = "tls" if registrar.tls_port is not None else "tcp"
    server_port = registrar.tls_port or registrar.port
    port = port_allocator.allocate(count=2)  # TLS listens on port + 1
    ka = 2
    door = start_device(
        firmware,
        net,
        "door",
        device_config(
            registrar,
            port,
            tmp_path / "door.wav",
            transport=transport,
            reg_timeout=300,
            ka_interval=ka,
        ),
    )
    flows = net.tcp_connections(server_port)
    assert len(flows) == 1, flows
    old_port = flows[0][1]
    cseq = _contact_cseq(registrar)
    if fault == "reset":
        net.reset_tcp(old_port)
    else:
        # the stack holds a silent flow against a peer once it has answered a
        # ping (RFC 5626 4.4.1): let one keep-alive round trip happen first
        time.sleep(ka + 1)
        if fault == "blackhole":
            net.blackhole_tcp(old_port)
        else:
            net.blackhole_host(net.registrar)
    started = time.monotonic()
    if fault == "outage":
        # the device must not claim a registration it cannot refresh... but with
        # reg_timeout 300 nothing forces a refresh in 20 s: what it shows is printed
        time.sleep(20)
        shown = account(door)
        net.clear_firewall()
        print(f"\n{transport} outage: after 20 s status shows registered={shown['registered']}")
        bound = BOUND  # from the path being usable again
    elif fault == "blackhole":
        # only a keep-alive can notice: one interval, then RFC 5626 4.4.1's 10 s
        # wait for the pong, then the new connection and REGISTER
        bound = ka + 10 + BOUND
    else:
        bound = BOUND

    def registered_anew() -> bool:
        now = net.tcp_connections(server_port)
        return (
            len(now) == 1
            and now[0][1] != old_port
            and _contact_cseq(registrar) > cseq
            and account(door)["registered"]
        )

    took = timed(registered_anew, bound)
    total = round(time.monotonic() - started, 2)
    print(
        f"\n{transport} {fault}: new connection and REGISTER after {took} s"
        f" ({total} s after the fault began)"
    )
    assert took is not None, (
        net.tcp_connections(server_port),
        registrar.registrations(),
        door.log_text()[-3000:],
    )
    new_port = net.tcp_connections(server_port)[0][1]
    # the binding follows the new flow (Contact rewritten from Via rport by the
    # device), the old one is replaced, not left behind
    bound_now = contacts(registrar)
    assert len(bound_now) == 1 and f"@{net.device}:{new_port};" in bound_now[0], bound_now
    report(f"{transport} {fault}", door)
    failures = door.log_text().count("no keep-alive pong")
    print(f"log lines about failed pongs: {failures}")
    if fault == "blackhole":
        assert failures == 1


def _packets(device: Firmware) -> int:
    calls = device.status()["calls"]
    return int(calls[0].get("packets_received") or 0) if calls else -1


def test_call_in_progress_is_reinvited_from_the_new_address(
    net: VethNet,
    registrar: KamailioServer,
    firmware: Callable[..., Firmware],
    port_allocator: PortAllocator,
    tmp_path: Path,
) -> None:
    door_port, flat_port = port_allocator.allocate(), port_allocator.allocate()
    door = start_device(
        firmware, net, "door", device_config(registrar, door_port, tmp_path / "door.wav")
    )
    # the flat is a second firmware in the root namespace, on the veth's root address
    flat_text = device_config(
        registrar, flat_port, tmp_path / "flat.wav", user="flat", extra=DESK_FLAT
    ).replace(f'udp = "0.0.0.0:{flat_port}"', f'udp = "{net.registrar}:{flat_port}"')
    flat: Firmware = firmware("flat", flat_text)
    assert poll(flat.registered, 15), flat.describe()

    code, out = door.cli("call", "sip:flat@test.local")
    assert code == 0, out
    assert poll(lambda: flat.status()["phone"] == "ringing"), flat.describe()
    code, out = flat.cli("answer")
    assert code == 0, out

    def flowing(min_packets: int) -> bool:
        return _packets(door) > min_packets and _packets(flat) > min_packets

    assert poll(lambda: flowing(25)), door.describe() + flat.describe()

    net.move_address(net.device, net.moved)
    moved_at_door, moved_at_flat = _packets(door), _packets(flat)
    # Re-INVITEd: the call goes on at both ends, and the door hears the flat again
    # (RTP sent to its new address; without the re-INVITE it would hear nothing).
    took = timed(lambda: _packets(door) > moved_at_door + 50, BOUND)
    print(f"\ncall during address change: audio back at the door after {took} s")
    door_calls, flat_calls = door.status()["calls"], flat.status()["calls"]
    assert took is not None, (door_calls, flat_calls, door.log_text()[-4000:])
    assert [c["state"] for c in door_calls] == ["confirmed"], door_calls
    assert [c["state"] for c in flat_calls] == ["confirmed"], flat_calls
    assert _packets(flat) > moved_at_flat + 50  # and the flat hears the door
    assert "re-INVITE" in door.log_text()
    assert contacts(registrar) == [f"sip:door@{net.moved}:{door_port}"]
    report("call during address change (door)", door)

    # the flat can still end the call: its BYE reaches the door's new Contact
    code, out = flat.cli("hangup")
    assert code == 0, out
    assert poll(lambda: not door.status()["calls"] and not flat.status()["calls"]), door.log_text()[
        -3000:
    ]
