"""Who may send us requests: the admission rule and its rate limit.

Safe by default (SIP scanners ring exposed devices at night): with a config
file, requests are admitted only from the registrars and proxies of the
configured accounts (their resolved addresses; UDP by address and port, TCP/TLS
by address, whose source cannot be spoofed without a handshake), from
explicitly allowed peers (``allow`` entries, and IP-literal hosts of
``[intercom] trusted`` / ``door_code_from``) and within dialogs we already
have (the :class:`~firmware.app.App` checks those). Everything else is answered
403 or dropped (:class:`Screening`), counted, and a source that keeps trying is
dropped silently. Only the built-in default (no file) is open, as the README
promises a new user.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sipstack.transport_base import Peer, is_ip_literal

if TYPE_CHECKING:
    from firmware.config import AccountSettings, Config
    from sipstack.message import Request

__all__ = ["Refusals", "RequestScreen", "Screening", "server_hosts", "trusted_hosts"]

log = logging.getLogger("intercom")


# -- request screening ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Screening:
    """Who may send us requests (see the module docstring).

    ``refuse``: ``"403"`` answers strangers 403 Forbidden, ``"drop"`` ignores
    them (scanners learn nothing). ``allow``: extra peers, ``"host"``,
    ``"host:port"`` or ``"net/len"``. ``open``: admit everyone (the built-in
    default only). A source refused ``burst`` times within ``window`` seconds
    is then dropped silently until it stays quiet for a window.
    """

    refuse: str = "403"
    allow: tuple[str, ...] = ()
    open: bool = False
    burst: int = 5
    window: float = 60.0

    def __post_init__(self) -> None:
        if self.refuse not in ("403", "drop"):
            raise ValueError(f'screening refuse must be "403" or "drop", not {self.refuse!r}')


@dataclass
class Refusals:
    """Counters for ``intercom status``."""

    total: int = 0
    forbidden: int = 0
    dropped: int = 0
    rate_limited: int = 0
    last: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=10)
    )


class RequestScreen:
    """The admission rule, with per-source rate limiting (bounded memory)."""

    MAX_SOURCES = 1024

    def __init__(self, settings: Screening, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self.udp: set[tuple[str, int]] = set()  # registrars/proxies by address and port
        self.hosts: set[str] = set()  # any port (streams, allowed hosts)
        self.stream_hosts: set[str] = set()  # registrars/proxies, for TCP/TLS
        self.nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.counts = Refusals()
        self._recent: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        for entry in settings.allow:
            self.allow(entry)

    def allow(self, entry: str) -> None:
        """Admit ``host``, ``host:port`` (UDP exact) or ``net/len``."""
        if "/" in entry:
            self.nets.append(ipaddress.ip_network(entry, strict=False))
            return
        host, _, port = entry.rpartition(":") if entry.count(":") == 1 else ("", "", "")
        if host and port.isdigit():
            self.udp.add((host, int(port)))
            self.stream_hosts.add(host)
        else:
            self.hosts.add(entry.strip("[]"))

    def add_server(self, host: str, port: int) -> None:
        """A registrar or proxy address (resolved)."""
        self.udp.add((host, port))
        self.stream_hosts.add(host)

    def trusted(self, peer: Peer) -> bool:
        """Whether requests from ``peer`` are admitted without further questions."""
        if self.settings.open or peer.host in self.hosts:
            return True
        if peer.reliable:
            if peer.host in self.stream_hosts:
                return True
        elif (peer.host, peer.port) in self.udp:
            return True
        if self.nets:
            try:
                addr = ipaddress.ip_address(peer.host)
            except ValueError:
                return False
            return any(addr in net for net in self.nets)
        return False

    def refuse(self, request: Request, peer: Peer) -> bool:
        """Count a refusal; True when it must be dropped (mode, or rate limit)."""
        now = self._clock()
        counts = self.counts
        counts.total += 1
        times = self._recent.pop(peer.host, None) or collections.deque(maxlen=self.settings.burst)
        while times and now - times[0] > self.settings.window:
            times.popleft()
        limited = len(times) >= self.settings.burst
        times.append(now)
        self._recent[peer.host] = times
        while len(self._recent) > self.MAX_SOURCES:
            self._recent.popitem(last=False)
        drop = limited or self.settings.refuse == "drop"
        if limited:
            counts.rate_limited += 1
        elif drop:
            counts.dropped += 1
        else:
            counts.forbidden += 1
        counts.last.append(
            {
                "time": time.time(),
                "source": f"{peer.transport}:{peer.host}:{peer.port}",
                "method": request.method,
                "action": "rate-limited" if limited else ("dropped" if drop else "403"),
            }
        )
        if counts.total <= 3 or counts.total % 100 == 0:
            log.warning(
                "refused %s from %s:%s:%d (not a registrar, proxy or allowed peer; %d so far)",
                request.method,
                peer.transport,
                peer.host,
                peer.port,
                counts.total,
            )
        return drop


# -- which hosts ------------------------------------------------------------------------


def trusted_hosts(config: Config) -> tuple[str, ...]:
    """IP-literal hosts in ``[intercom] trusted`` / ``door_code_from`` (no wildcards):
    the phones on the LAN that may call us directly."""
    hosts = []
    for pattern in (*config.intercom.trusted, *config.intercom.door_code_from):
        host = pattern.partition(":")[2].rpartition("@")[2]
        host = re.split(r"[;?>]", host, maxsplit=1)[0]
        if host.startswith("["):
            host = host[1 : host.find("]")]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        if "*" not in host and "?" not in host and is_ip_literal(host):
            hosts.append(host)
    return tuple(dict.fromkeys(hosts))


def server_hosts(settings: AccountSettings) -> list[str]:
    """The hosts of an account's registrar and proxies (``maddr`` wins), as written."""
    from sipstack.uri import parse_uri

    hosts = []
    for text in (settings.reg_uri, *settings.proxy):
        if text:
            uri = parse_uri(text.strip().strip("<>"))
            hosts.append(uri.params.get("maddr") or uri.host)
    return hosts
