"""Simulated network: injected changes become events on the loop."""

from __future__ import annotations

import socket

import pytest

from hal.network import (
    AddressAdded,
    AddressRemoved,
    DefaultRouteChanged,
    LinkDown,
    LinkUp,
    NetworkInfo,
)
from hal.sim import SimNetwork
from sipstack.loop import Loop

V4, V6 = socket.AF_INET, socket.AF_INET6


def test_injected_changes_arrive_on_the_loop_in_order() -> None:
    with Loop() as loop:
        net = SimNetwork(loop)
        info: NetworkInfo = net  # protocol satisfied (mypy checks this line)
        events: list[object] = []
        info.set_handler(events.append)
        net.remove_address("eth0", "192.168.1.50")
        net.add_address("eth0", "192.168.1.77")
        assert events == []  # delivered on the loop, not inside the call
        loop.run_once(max_wait=0)
        assert events == [
            AddressRemoved("eth0", V4, "192.168.1.50"),
            AddressAdded("eth0", V4, "192.168.1.77"),
        ]
        events.clear()
        net.set_link("eth0", False)
        net.set_default_route(None)
        net.set_link("eth0", True)
        net.set_default_route("eth0", "192.168.1.1")
        net.add_address("eth0", "2001:db8::7")
        loop.run_once(max_wait=0)
        assert events == [
            LinkDown("eth0"),
            DefaultRouteChanged(V4, None, None, "eth0"),
            LinkUp("eth0"),
            DefaultRouteChanged(V4, "eth0", "192.168.1.1", None),
            AddressAdded("eth0", V6, "2001:db8::7"),
        ]
        assert net.addresses("eth0")[0].address == "192.168.1.77"


def test_local_address_for_follows_default_route_and_link() -> None:
    with Loop() as loop:
        net = SimNetwork(loop)
        assert net.local_address_for("127.0.0.1") == "127.0.0.1"
        assert net.local_address_for("::1") == "::1"
        assert net.local_address_for("192.168.1.50") == "192.168.1.50"
        assert net.local_address_for("203.0.113.9") == "192.168.1.50"
        assert net.local_address_for("2001:db8::1") is None  # no IPv6 default route
        assert net.default_interface() == "eth0"
        net.set_link("eth0", False)
        assert net.local_address_for("203.0.113.9") is None
        with pytest.raises(ValueError):
            net.local_address_for("pbx.example.com")


def test_removing_an_absent_address_is_the_callers_fault() -> None:
    with Loop() as loop:
        net = SimNetwork(loop)
        with pytest.raises(KeyError, match="10.9.9.9 is not on eth0"):
            net.remove_address("eth0", "10.9.9.9")


def test_no_events_after_close() -> None:
    with Loop() as loop:
        net = SimNetwork(loop)
        events: list[object] = []
        net.set_handler(events.append)
        net.set_link("eth0", False)
        net.close()
        loop.run_once(max_wait=0)
        assert events == []
