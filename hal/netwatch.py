"""Network watch on ``netifaces`` and rtnetlink: implements :class:`hal.network.NetworkInfo`.

How changes are noticed without busy polling: a ``NETLINK_ROUTE`` socket
subscribed to the link, IPv4/IPv6 address and IPv4/IPv6 route multicast
groups (rtnetlink(7)) is registered with the select loop. The kernel writes a
message to it on every change; we do not parse them (a burst of ten messages
for one DHCP renewal is common) but, after a short settle delay that lets the
burst finish, re-read the whole state with ``netifaces`` and diff it against
the previous snapshot (:func:`hal.network.diff_snapshots`). A receive-buffer
overrun (``ENOBUFS``) therefore loses nothing: we resync anyway.

Where netlink is unavailable (not Linux, or a sandbox forbids it) the watcher
falls back to re-reading every ``poll_interval`` seconds (2 s by default, so
changes are still seen within 5 s); it logs which mode it is in.

Link state (``IFF_UP`` and ``IFF_RUNNING``, i.e. administratively up with
carrier) is read with the ``SIOCGIFFLAGS`` ioctl, since ``netifaces`` does
not report it.

The source address for a destination comes from the kernel's routing table:
``connect()`` on a UDP socket performs the route look-up and binds a source
address without sending a packet; ``getsockname()`` returns it. That is the
address to advertise in Via (RFC 3261 18.1.1), Contact and SDP ``c=``
(RFC 4566 5.7) for that peer.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable

import netifaces

from hal.loop_api import Cancellable, EventLoop
from hal.network import (
    DefaultRoute,
    InterfaceAddress,
    NetworkHandler,
    NetworkSnapshot,
    diff_snapshots,
)

__all__ = ["NetifacesWatcher", "read_snapshot", "route_source_address", "RTNETLINK_GROUPS"]

log = logging.getLogger(__name__)

# rtnetlink(7) multicast groups (linux/rtnetlink.h RTMGRP_*).
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
RTNETLINK_GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)

_SIOCGIFFLAGS = 0x8913  # linux/sockios.h
_IFF_UP = 0x1
_IFF_RUNNING = 0x40
_IFREQ_SIZE = 40  # struct ifreq on 64-bit Linux (name[16] + 24-byte union)


def _link_flags(sock: socket.socket, name: str) -> int | None:
    """Interface flags, or None if the interface vanished meanwhile."""
    request = struct.pack("16sH", name.encode()[:15], 0).ljust(_IFREQ_SIZE, b"\0")
    try:
        reply = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request)
    except OSError:
        return None
    flags: int = struct.unpack_from("16sH", reply)[1]
    return flags


def read_snapshot() -> NetworkSnapshot:
    """Read addresses, link states and default routes from the running system.

    Blocking but cheap (a few netlink dumps and ioctls); called on the loop
    only after the kernel said something changed.
    """
    addresses: set[InterfaceAddress] = set()
    links_up: set[str] = set()
    families = ((netifaces.AF_INET, socket.AF_INET), (netifaces.AF_INET6, socket.AF_INET6))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as ioctl_sock:
        for name in netifaces.interfaces():
            try:
                info = netifaces.ifaddresses(name)
            except ValueError:  # vanished between the listing and now
                continue
            for ni_family, family in families:
                for entry in info.get(ni_family, []):
                    addr = entry.get("addr")
                    if addr:
                        addresses.add(InterfaceAddress(name, family, addr.split("%", 1)[0]))
            flags = _link_flags(ioctl_sock, name.split(":", 1)[0])
            if flags is not None and flags & _IFF_UP and flags & _IFF_RUNNING:
                links_up.add(name)
    routes: list[DefaultRoute] = []
    defaults = netifaces.gateways().get("default", {})
    for ni_family, family in families:
        entry = defaults.get(ni_family)
        if entry:
            gateway, interface = entry[0], entry[1]
            routes.append(DefaultRoute(family, interface, gateway or None))
    return NetworkSnapshot(frozenset(addresses), frozenset(links_up), tuple(routes))


def route_source_address(destination: str, port: int = 5060) -> str | None:
    """The local address the kernel would send from to reach ``destination``.

    No packet is sent: ``connect()`` on a UDP socket only looks up the route.
    ``destination`` must be an IP literal (IPv6 may carry ``%zone``); a name
    is the caller's mistake (resolve it first, off the loop). None when there
    is no route.
    """
    try:
        parsed = ipaddress.ip_address(destination.split("%", 1)[0])
    except ValueError:
        raise ValueError(
            f"{destination!r} is not an IP address literal; resolve names before asking "
            "for a source address"
        ) from None
    family = socket.AF_INET6 if parsed.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((destination, port))
        except OSError:  # ENETUNREACH and friends: no route
            return None
        address = str(sock.getsockname()[0]).split("%", 1)[0]
    if ipaddress.ip_address(address).is_unspecified:
        return None
    return address


def _open_netlink() -> socket.socket | None:
    family = getattr(socket, "AF_NETLINK", None)
    if family is None:
        log.warning("this system has no netlink sockets")
        return None
    try:
        sock = socket.socket(family, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    except OSError as exc:
        log.warning("cannot open an rtnetlink socket: %s", exc)
        return None
    try:
        sock.setblocking(False)
        sock.bind((0, RTNETLINK_GROUPS))
    except OSError as exc:
        log.warning("cannot subscribe to rtnetlink groups: %s", exc)
        sock.close()
        return None
    return sock


class NetifacesWatcher:
    """Tracks local addresses, links and default routes; emits change events.

    ``reader`` produces a snapshot (tests inject one); ``settle`` is how long
    to let a burst of netlink messages finish before re-reading; with
    ``use_netlink=False`` (or when netlink is unavailable) the state is
    re-read every ``poll_interval`` seconds instead.
    """

    def __init__(
        self,
        loop: EventLoop,
        *,
        settle: float = 0.2,
        poll_interval: float = 2.0,
        use_netlink: bool = True,
        reader: Callable[[], NetworkSnapshot] = read_snapshot,
    ) -> None:
        if not 0 <= settle < 5:
            raise ValueError(f"settle must be 0-5 s, got {settle!r}")
        if not 0 < poll_interval < 5:
            raise ValueError(
                f"poll_interval must be 0-5 s to notice changes in time, got {poll_interval!r}"
            )
        self._loop = loop
        self._settle = settle
        self._poll_interval = poll_interval
        self._reader = reader
        self._handler: NetworkHandler | None = None
        self._timer: Cancellable | None = None
        self._closed = False
        self.resyncs = 0
        self._snapshot = reader()
        self._sock = _open_netlink() if use_netlink else None
        if self._sock is not None:
            loop.add_reader(self._sock, self._on_netlink)
            log.info("watching the network through rtnetlink")
        else:
            log.info("watching the network by polling every %.1f s", poll_interval)
            self._timer = loop.call_later(poll_interval, self._resync)

    @property
    def mode(self) -> str:
        """``"netlink"`` or ``"poll"``."""
        return "netlink" if self._sock is not None else "poll"

    # -- NetworkInfo ------------------------------------------------------------------

    def snapshot(self) -> NetworkSnapshot:
        """The state as last read."""
        return self._snapshot

    def addresses(self, interface: str | None = None) -> tuple[InterfaceAddress, ...]:
        """Local addresses (of one interface if given), sorted."""
        return tuple(
            sorted(a for a in self._snapshot.addresses if interface in (None, a.interface))
        )

    def default_interface(self, family: int = socket.AF_INET) -> str | None:
        """The interface carrying the default route of ``family``, or None."""
        route = self._snapshot.default_route(family)
        return route.interface if route else None

    def local_address_for(self, destination: str) -> str | None:
        """The source address for ``destination`` (asks the kernel, see module doc)."""
        return route_source_address(destination)

    def set_handler(self, handler: NetworkHandler | None) -> None:
        """Deliver change events (on the loop) to ``handler``."""
        self._handler = handler

    def close(self) -> None:
        """Stop watching. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sock is not None:
            self._loop.remove_reader(self._sock)
            self._sock.close()
            self._sock = None

    # -- internals -----------------------------------------------------------------

    def _on_netlink(self) -> None:
        assert self._sock is not None
        while True:
            try:
                if not self._sock.recv(65536):
                    break
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    # Kernel dropped messages; harmless, the resync re-reads everything.
                    log.debug("rtnetlink overrun; resyncing")
                    continue
                log.warning("rtnetlink read failed: %s", exc)
                break
        # Bounded latency: the first message of a burst starts the settle
        # delay and later ones do not push it back.
        if self._timer is None and not self._closed:
            self._timer = self._loop.call_later(self._settle, self._resync)

    def _resync(self) -> None:
        self._timer = None
        if self._closed:
            return
        try:
            new = self._reader()
        except Exception:
            log.exception("reading the network state failed; keeping the previous one")
            new = self._snapshot
        self.resyncs += 1
        old, self._snapshot = self._snapshot, new
        if self._sock is None:
            self._timer = self._loop.call_later(self._poll_interval, self._resync)
        for event in diff_snapshots(old, new):
            log.info("network: %s", event)
            if self._handler is not None:
                self._handler(event)
