"""The pure snapshot diff, and the watcher's scheduling with an injected reader."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest

from hal.netwatch import NetifacesWatcher, route_source_address
from hal.network import (
    AddressAdded,
    AddressRemoved,
    DefaultRoute,
    DefaultRouteChanged,
    InterfaceAddress,
    LinkDown,
    LinkUp,
    NetworkInfo,
    NetworkSnapshot,
    diff_snapshots,
)
from sipstack.loop import Loop

V4, V6 = socket.AF_INET, socket.AF_INET6


def snap(
    addrs: dict[str, list[str]],
    up: set[str],
    routes: tuple[DefaultRoute, ...] = (),
) -> NetworkSnapshot:
    items = {
        InterfaceAddress(name, V6 if ":" in a else V4, a)
        for name, lst in addrs.items()
        for a in lst
    }
    return NetworkSnapshot(frozenset(items), frozenset(up), routes)


BASE = snap(
    {"lo": ["127.0.0.1", "::1"], "eth0": ["192.168.1.50", "fe80::1"]},
    {"lo", "eth0"},
    (DefaultRoute(V4, "eth0", "192.168.1.1"),),
)


def test_no_change_no_events() -> None:
    assert diff_snapshots(BASE, BASE) == []
    assert diff_snapshots(NetworkSnapshot(), NetworkSnapshot()) == []


def test_dhcp_renumbering() -> None:
    new = snap(
        {"lo": ["127.0.0.1", "::1"], "eth0": ["192.168.7.9", "fe80::1"]},
        {"lo", "eth0"},
        (DefaultRoute(V4, "eth0", "192.168.7.1"),),
    )
    assert diff_snapshots(BASE, new) == [
        AddressRemoved("eth0", V4, "192.168.1.50"),
        AddressAdded("eth0", V4, "192.168.7.9"),
        DefaultRouteChanged(V4, "eth0", "192.168.7.1", "eth0"),
    ]


def test_cable_pulled_then_wifi_takes_over() -> None:
    unplugged = snap(
        {"lo": ["127.0.0.1", "::1"], "eth0": ["fe80::1"]},
        {"lo"},
    )
    assert diff_snapshots(BASE, unplugged) == [
        LinkDown("eth0"),
        AddressRemoved("eth0", V4, "192.168.1.50"),
        DefaultRouteChanged(V4, None, None, "eth0"),
    ]
    wifi = snap(
        {"lo": ["127.0.0.1", "::1"], "eth0": ["fe80::1"], "wlan0": ["10.0.0.5", "2001:db8::5"]},
        {"lo", "wlan0"},
        (DefaultRoute(V4, "wlan0", "10.0.0.1"), DefaultRoute(V6, "wlan0", "fe80::a")),
    )
    assert diff_snapshots(unplugged, wifi) == [
        AddressAdded("wlan0", V4, "10.0.0.5"),
        AddressAdded("wlan0", V6, "2001:db8::5"),
        LinkUp("wlan0"),
        DefaultRouteChanged(V4, "wlan0", "10.0.0.1", None),
        DefaultRouteChanged(V6, "wlan0", "fe80::a", None),
    ]


def test_losses_come_before_gains_and_order_is_deterministic() -> None:
    old = snap({"a": ["10.0.0.2", "10.0.0.1"], "b": ["10.1.0.1"]}, {"a", "b"})
    new = snap({"a": ["10.0.0.3"], "c": ["10.2.0.1"]}, {"a", "c"})
    events = diff_snapshots(old, new)
    assert events == [
        LinkDown("b"),
        AddressRemoved("a", V4, "10.0.0.1"),
        AddressRemoved("a", V4, "10.0.0.2"),
        AddressRemoved("b", V4, "10.1.0.1"),
        AddressAdded("a", V4, "10.0.0.3"),
        AddressAdded("c", V4, "10.2.0.1"),
        LinkUp("c"),
    ]


def test_snapshot_queries() -> None:
    assert BASE.default_route(V4) == DefaultRoute(V4, "eth0", "192.168.1.1")
    assert BASE.default_route(V6) is None
    assert BASE.addresses_of("eth0") == ("192.168.1.50", "fe80::1")
    assert BASE.addresses_of("eth0", V6) == ("fe80::1",)


# -- watcher scheduling with an injected reader (no kernel involved) ---------------------


class FakeClock:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class CountingLoop:
    """The real loop, counting timer requests (to prove netlink mode does not poll)."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.timers = 0
        self.readers: list[Any] = []

    def time(self) -> float:
        return self.loop.time()

    def call_soon(self, cb: Callable[[], object]) -> None:
        self.loop.call_soon(cb)

    def call_soon_threadsafe(self, cb: Callable[[], object]) -> None:
        self.loop.call_soon_threadsafe(cb)

    def call_at(self, when: float, cb: Callable[[], object]) -> Any:
        self.timers += 1
        return self.loop.call_at(when, cb)

    def call_later(self, delay: float, cb: Callable[[], object]) -> Any:
        self.timers += 1
        return self.loop.call_later(delay, cb)

    def add_reader(self, fd: Any, cb: Callable[[], object]) -> None:
        self.readers.append(fd)
        self.loop.add_reader(fd, cb)

    def remove_reader(self, fd: Any) -> None:
        self.readers.remove(fd)
        self.loop.remove_reader(fd)

    def add_writer(self, fd: Any, cb: Callable[[], object]) -> None:
        self.loop.add_writer(fd, cb)

    def remove_writer(self, fd: Any) -> None:
        self.loop.remove_writer(fd)


def test_poll_fallback_reads_every_interval_and_diffs() -> None:
    clock = FakeClock(100.0)
    states = [BASE, BASE, snap({"lo": ["127.0.0.1"]}, {"lo"})]
    reads: list[float] = []

    def reader() -> NetworkSnapshot:
        reads.append(clock.now)
        return states[min(len(reads) - 1, len(states) - 1)]

    with Loop(clock=clock) as loop:
        watcher = NetifacesWatcher(loop, use_netlink=False, poll_interval=2.0, reader=reader)
        events: list[object] = []
        watcher.set_handler(events.append)
        assert watcher.mode == "poll"
        for t in (101.9, 102.0, 103.9, 104.0):
            clock.now = t
            loop.run_once(max_wait=0)
        assert reads == [100.0, 102.0, 104.0]
        assert events[0] == LinkDown("eth0")
        assert DefaultRouteChanged(V4, None, None, "eth0") in events
        assert watcher.default_interface() is None
        watcher.close()
        clock.now = 200.0
        loop.run_once(max_wait=0)
        assert reads == [100.0, 102.0, 104.0]  # closed: no more polling


def test_reader_failure_keeps_the_last_state() -> None:
    clock = FakeClock(0.0)
    calls = 0

    def reader() -> NetworkSnapshot:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("netlink dump interrupted")
        return BASE

    with Loop(clock=clock) as loop:
        watcher = NetifacesWatcher(loop, use_netlink=False, poll_interval=1.0, reader=reader)
        events: list[object] = []
        watcher.set_handler(events.append)
        for t in (1.0, 2.0):
            clock.now = t
            loop.run_once(max_wait=0)
        assert calls == 3 and events == [] and watcher.snapshot() == BASE
        watcher.close()


def test_netlink_mode_registers_a_reader_and_sets_no_timer() -> None:
    with Loop() as real:
        loop = CountingLoop(real)
        watcher = NetifacesWatcher(loop, reader=lambda: BASE)
        info: NetworkInfo = watcher  # the protocol is satisfied (mypy checks this line)
        assert info.default_interface() == "eth0"
        assert watcher.mode == "netlink"
        assert len(loop.readers) == 1 and loop.timers == 0  # no polling at all
        assert watcher.addresses("eth0") == (
            InterfaceAddress("eth0", V4, "192.168.1.50"),
            InterfaceAddress("eth0", V6, "fe80::1"),
        )
        watcher.close()
        watcher.close()
        assert loop.readers == []


@pytest.mark.parametrize("bad", [{"settle": -1.0}, {"poll_interval": 0.0}, {"poll_interval": 6.0}])
def test_watcher_rejects_settings_that_break_the_5_s_promise(bad: dict[str, float]) -> None:
    with Loop() as loop, pytest.raises(ValueError):
        NetifacesWatcher(loop, use_netlink=False, reader=lambda: BASE, **bad)


def test_route_source_address_loopback() -> None:
    assert route_source_address("127.0.0.1") == "127.0.0.1"
    assert route_source_address("127.0.0.1", 9) == "127.0.0.1"


def test_route_source_address_needs_a_literal() -> None:
    with pytest.raises(ValueError, match="resolve names"):
        route_source_address("sip.example.com")
