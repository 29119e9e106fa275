"""Network information: the interface, its events, and the pure snapshot diff.

The firmware needs three things from the network: the local address to put in
Contact / Via / SDP ``c=`` for a given destination, the interface that carries
the default route, and word when any of that changes (so it can re-REGISTER
from the new address instead of staying deaf). A backend describes the
system as an immutable :class:`NetworkSnapshot`; :func:`diff_snapshots` turns
two snapshots into events. The diff is pure so that it is tested without a
kernel, and shared by the real watcher and the simulated network.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Protocol

from sipstack.records import dataclass, field

__all__ = [
    "InterfaceAddress",
    "DefaultRoute",
    "NetworkSnapshot",
    "AddressAdded",
    "AddressRemoved",
    "LinkUp",
    "LinkDown",
    "DefaultRouteChanged",
    "NetworkEvent",
    "NetworkHandler",
    "NetworkInfo",
    "diff_snapshots",
    "family_name",
]


def family_name(family: int) -> str:
    """``"IPv4"`` / ``"IPv6"`` for log lines."""
    if family == socket.AF_INET:
        return "IPv4"
    if family == socket.AF_INET6:
        return "IPv6"
    return str(family)


@dataclass(frozen=True, slots=True, order=True)
class InterfaceAddress:
    """One address on one interface. IPv6 addresses carry no ``%zone`` suffix."""

    interface: str
    family: int
    address: str


@dataclass(frozen=True, slots=True)
class DefaultRoute:
    """The default route for one address family (``gateway`` None for on-link)."""

    family: int
    interface: str
    gateway: str | None = None


@dataclass(frozen=True, slots=True)
class NetworkSnapshot:
    """The state of the network at one instant."""

    addresses: frozenset[InterfaceAddress] = frozenset()
    links_up: frozenset[str] = frozenset()
    default_routes: tuple[DefaultRoute, ...] = field(default=())

    def default_route(self, family: int = socket.AF_INET) -> DefaultRoute | None:
        """The default route of ``family``, if any."""
        for route in self.default_routes:
            if route.family == family:
                return route
        return None

    def addresses_of(self, interface: str, family: int | None = None) -> tuple[str, ...]:
        """Addresses on ``interface`` (of ``family`` if given), sorted."""
        return tuple(
            sorted(
                a.address
                for a in self.addresses
                if a.interface == interface and (family is None or a.family == family)
            )
        )


# -- events ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AddressAdded:
    """An address appeared on an interface."""

    interface: str
    family: int
    address: str


@dataclass(frozen=True, slots=True)
class AddressRemoved:
    """An address went away: anything bound to it (sockets, registrations) is dead."""

    interface: str
    family: int
    address: str


@dataclass(frozen=True, slots=True)
class LinkUp:
    """An interface is administratively up and has carrier."""

    interface: str


@dataclass(frozen=True, slots=True)
class LinkDown:
    """An interface lost carrier, was set down, or disappeared."""

    interface: str


@dataclass(frozen=True, slots=True)
class DefaultRouteChanged:
    """The default route of ``family`` moved (``interface`` None: no default route now)."""

    family: int
    interface: str | None
    gateway: str | None
    previous_interface: str | None


NetworkEvent = AddressAdded | AddressRemoved | LinkUp | LinkDown | DefaultRouteChanged
NetworkHandler = Callable[[NetworkEvent], object]


def diff_snapshots(old: NetworkSnapshot, new: NetworkSnapshot) -> list[NetworkEvent]:
    """Events that turn ``old`` into ``new``, in an order a phone can act on.

    Losses first (links down, addresses removed), then gains (addresses added,
    links up), then default-route changes last, so a handler that re-registers
    on :class:`DefaultRouteChanged` already sees the new addresses.
    Within each group the order is sorted, hence deterministic.
    """
    events: list[NetworkEvent] = []
    events.extend(LinkDown(name) for name in sorted(old.links_up - new.links_up))
    events.extend(
        AddressRemoved(a.interface, a.family, a.address)
        for a in sorted(old.addresses - new.addresses)
    )
    events.extend(
        AddressAdded(a.interface, a.family, a.address)
        for a in sorted(new.addresses - old.addresses)
    )
    events.extend(LinkUp(name) for name in sorted(new.links_up - old.links_up))
    for family in (socket.AF_INET, socket.AF_INET6):
        before, after = old.default_route(family), new.default_route(family)
        if before != after:
            events.append(
                DefaultRouteChanged(
                    family,
                    after.interface if after else None,
                    after.gateway if after else None,
                    before.interface if before else None,
                )
            )
    return events


class NetworkInfo(Protocol):
    """What the firmware asks of the network (implemented by netwatch and sim)."""

    def snapshot(self) -> NetworkSnapshot:
        """The state as last observed."""
        ...

    def addresses(self, interface: str | None = None) -> tuple[InterfaceAddress, ...]:
        """Local addresses (of one interface if given), sorted."""
        ...

    def default_interface(self, family: int = socket.AF_INET) -> str | None:
        """The interface carrying the default route of ``family``, or None."""
        ...

    def local_address_for(self, destination: str) -> str | None:
        """The source address the system would use to reach ``destination``.

        That is the address to put in Contact, Via and SDP for that peer.
        ``destination`` must be an IP literal (resolve names first; DNS is
        not this layer's job). None when there is no route.
        """
        ...

    def set_handler(self, handler: NetworkHandler | None) -> None:
        """Deliver change events (on the loop) to ``handler``."""
        ...

    def close(self) -> None:
        """Stop watching. Safe to call twice."""
        ...
