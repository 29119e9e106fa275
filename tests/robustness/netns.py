"""A network namespace joined to the root namespace by a veth pair, for fault tests.

:func:`veth_namespace` creates a namespace (named after the pid plus a random
tag, deleted in ``finally`` even when the test fails) and a veth pair on a free
198.18.N.0/24 subnet (RFC 2544 benchmarking space, never routed): ``.2`` is the
root end (where Kamailio listens), ``.1`` the device inside the namespace, and
``.3`` the address the device moves to. It skips the test where it cannot (not
root, no iproute2, a chroot whose namespaces cannot be entered), like
``tests/test_network_change.py`` does.

The faults are what a door station sees in a house: the address renumbered by
DHCP (:meth:`VethNet.move_address`), the link down (:meth:`VethNet.set_link`),
a TCP connection reset (:meth:`VethNet.reset_tcp`, ``ss -K``) or silently
black-holed (:meth:`VethNet.blackhole_tcp`, an nftables ``drop`` in the
namespace that matches one connection only).

The firmware in the namespace runs with the real rtnetlink watcher
(``hal.netwatch``) that ``hal = "rpi"`` uses on the Pi, while GPIO and audio
stay simulated: ``python -m tests.robustness.netns -- <intercom argv>`` is
that launcher (see :func:`main`), used through :meth:`VethNet.prefix`.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

__all__ = ["VethNet", "veth_namespace", "main"]

NS_IF = "va"  # the device's interface inside the namespace
_TABLE = "robust"  # our nftables table inside the namespace


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=15, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _used_subnets() -> str:
    return _run(["ip", "-o", "addr"]).stdout + _run(["ip", "route"]).stdout


@dataclass(frozen=True, slots=True)
class VethNet:
    """One namespace and its addresses: ``device`` (first), ``moved`` (after a
    renumbering), ``registrar`` (the root namespace's end)."""

    ns: str
    root_if: str
    device: str
    moved: str
    registrar: str

    def prefix(self, netwatch: bool = True) -> list[str]:
        """Command prefix running a program in the namespace.

        With ``netwatch`` the ``intercom`` argv that follows runs through this
        module's launcher, i.e. with the real rtnetlink network watcher.
        """
        base = ["ip", "netns", "exec", self.ns]
        if netwatch:
            base += [sys.executable, "-m", "tests.robustness.netns", "--"]
        return base

    def ip(self, *args: str) -> str:
        """``ip -n NS ARGS`` (raises with iproute2's message on failure)."""
        return _run(["ip", "-n", self.ns, *args]).stdout

    def exec(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace."""
        return _run(["ip", "netns", "exec", self.ns, *argv], check=check)

    def addresses(self) -> list[str]:
        """IPv4 addresses on the device's interface now."""
        out = self.ip("-o", "-4", "addr", "show", "dev", NS_IF)
        return [line.split()[3].split("/")[0] for line in out.splitlines()]

    def move_address(self, old: str, new: str) -> None:
        """DHCP renumbering: delete ``old``, add ``new`` and the default route again.

        Deleting the only address of the subnet also drops the routes through it,
        so the default route comes back with the new address, as a DHCP client
        would set it.
        """
        self.ip("addr", "del", f"{old}/24", "dev", NS_IF)
        self.ip("addr", "add", f"{new}/24", "dev", NS_IF)
        self.ip("route", "replace", "default", "via", self.registrar, "dev", NS_IF)

    def set_link(self, up: bool) -> None:
        """Take the device's link down or up (the cable pulled, Wi-Fi lost).

        Bringing it up restores the default route the kernel dropped with it.
        """
        self.ip("link", "set", NS_IF, "up" if up else "down")
        if up:
            self.ip("route", "replace", "default", "via", self.registrar, "dev", NS_IF)

    def tcp_connections(self, remote_port: int) -> list[tuple[str, int]]:
        """(local address, local port) of established TCP connections to the
        registrar's ``remote_port``, from ``ss`` inside the namespace."""
        out = self.exec("ss", "-Htn", "state", "established", f"( dport = :{remote_port} )").stdout
        found = []
        for line in out.splitlines():
            fields = line.split()
            local = fields[2] if len(fields) >= 4 else ""
            host, _, port = local.rpartition(":")
            if port.isdigit():
                found.append((host.strip("[]"), int(port)))
        return found

    def reset_tcp(self, local_port: int) -> None:
        """Abort our TCP connection from ``local_port`` the way a peer's RST would:
        ``ss -K`` (SOCK_DESTROY) on the registrar's end, in the root namespace,
        which sends the device a reset."""
        _run(["ss", "-K", "-tn", "src", self.registrar, "dst", f"{self.device}:{local_port}"])

    def blackhole_tcp(self, local_port: int) -> None:
        """Drop, silently and in both directions, every packet of one TCP
        connection (the device's ``local_port``), like a NAT box that forgot
        the flow. Other connections, even to the same server, pass."""
        self._nft(
            f"add rule inet {_TABLE} out tcp sport {local_port} drop\n"
            f"add rule inet {_TABLE} in tcp dport {local_port} drop\n"
        )

    def _nft(self, rules: str) -> None:
        """Load ``rules`` into this namespace's own nftables table (made on first use)."""
        head = (
            f"add table inet {_TABLE}\n"
            f"add chain inet {_TABLE} out {{ type filter hook output priority 0 ; }}\n"
            f"add chain inet {_TABLE} in {{ type filter hook input priority 0 ; }}\n"
        )
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns, "nft", "-f", "-"],
            input=head + rules,
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nft refused the rules: {done.stderr.strip()}")

    def blackhole_host(self, host: str) -> None:
        """Drop, silently and in both directions, everything to and from ``host``
        (the path to the registrar gone without the link noticing)."""
        self._nft(
            f"add rule inet {_TABLE} out ip daddr {host} drop\n"
            f"add rule inet {_TABLE} in ip saddr {host} drop\n"
        )

    def clear_firewall(self) -> None:
        """Remove what :meth:`blackhole_tcp` added."""
        self.exec("nft", "delete", "table", "inet", _TABLE, check=False)


@contextmanager
def veth_namespace() -> Iterator[VethNet]:
    """A fresh namespace with a veth pair; skips the test where that is impossible."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to create a network namespace")
    tag = secrets.token_hex(3)
    name = f"robnf{os.getpid()}{tag}"
    root_if = f"rnf{tag}"  # <= 15 characters
    used = _used_subnets()
    free = [n for n in range(256) if f"198.18.{n}." not in used]
    if not free:
        pytest.skip("no free 198.18.N.0/24 subnet for the test")
    base = ipaddress.IPv4Address(f"198.18.{secrets.choice(free)}.0")
    device, registrar, moved = (str(base + i) for i in (1, 2, 3))
    made = _run(["ip", "netns", "add", name], check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace: {made.stderr.strip()}")
    usable = _run(["ip", "-n", name, "link", "set", "lo", "up"], check=False)
    if usable.returncode != 0:
        # e.g. a chroot without its own /run: the namespace exists but cannot be entered
        _run(["ip", "netns", "del", name], check=False)
        pytest.skip(f"network namespaces unusable here: {usable.stderr.strip()}")
    try:
        _run(["ip", "link", "add", root_if, "type", "veth", "peer", "name", NS_IF, "netns", name])
        _run(["ip", "addr", "add", f"{registrar}/24", "dev", root_if])
        _run(["ip", "link", "set", root_if, "up"])
        net = VethNet(name, root_if, device, moved, registrar)
        net.ip("addr", "add", f"{device}/24", "dev", NS_IF)
        net.ip("link", "set", NS_IF, "up")
        net.ip("route", "replace", "default", "via", registrar, "dev", NS_IF)
        yield net
    finally:
        # Deleting the namespace destroys va and with it its peer in the root namespace.
        _run(["ip", "netns", "del", name], check=False)
        _run(["ip", "link", "del", root_if], check=False)


def main(argv: Sequence[str]) -> int:
    """Run ``intercom`` (``... -m firmware.cli ARGS``) with the real network watcher.

    ``hal = "sim"`` gives the firmware a simulated network that never changes
    (``[network] watch = "auto"``); on the Pi (``hal = "rpi"``) it watches
    rtnetlink through :class:`hal.netwatch.NetifacesWatcher`. Here GPIO and
    audio stay simulated and ``intercom run --watch kernel`` makes only the
    network watcher the Pi's, so the faults a test makes in the namespace reach
    the firmware the way they would on the device.
    """
    args = list(argv)
    if args and args[0] == "--":
        args = args[1:]
    if "firmware.cli" not in args:
        print(f"usage: python -m tests.robustness.netns -- <python> -m firmware.cli ARGS: {args}")
        return 2
    rest = args[args.index("firmware.cli") + 1 :]
    if rest[:1] == ["run"]:
        rest = [*rest, "--watch", "kernel"]

    from firmware import cli

    return cli.main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
