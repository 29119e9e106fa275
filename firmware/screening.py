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
from typing import TYPE_CHECKING, Any

from sipstack.records import dataclass, field
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
        self._noted: dict[str, float] = {}  # when drop_unparsed last noted a source
        self._next_log = 100
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
        times = self._recent.pop(peer.host, None) or collections.deque(maxlen=self.settings.burst)
        while times and now - times[0] > self.settings.window:
            times.popleft()
        limited = len(times) >= self.settings.burst
        times.append(now)
        self._recent[peer.host] = times
        while len(self._recent) > self.MAX_SOURCES:
            self._recent.popitem(last=False)
        drop = limited or self.settings.refuse == "drop"
        if not limited and len(times) >= self.settings.burst:
            log.warning(
                "%s refused %d times within %g s: its requests are now dropped silently "
                "until it stays quiet for %g s",
                peer.host,
                len(times),
                self.settings.window,
                self.settings.window,
            )
        self._count(
            request.method, peer, "rate-limited" if limited else ("dropped" if drop else "403")
        )
        return drop

    def drop_unparsed(self, data: bytes, peer: Peer) -> bool:
        """True when bytes from ``peer`` are to be dropped before they are parsed.

        That is: the source is rate-limited now (refused ``burst`` times within
        ``window``, still trying) and is not a host we trust on any port. A
        flood then costs a few look-ups per datagram instead of a parse (about
        a tenth), so the socket is drained faster than it fills and the
        registrar's answers, queued behind the flood in the same receive
        buffer, still get through. Counted as rate-limited, as :meth:`refuse`
        would; ``counts.last`` notes such a source once a second, not per
        datagram. ACKs pass (they end our 403 transactions, which would
        otherwise retransmit for 32 s). A limited host loses the in-dialog
        exemption while it floods (the dialog check needs a parsed message);
        hosts of registrars, proxies and allowed peers never do.
        """
        host = peer.host
        times = self._recent.get(host)
        if times is None or len(times) < self.settings.burst:
            return False
        now = self._clock()
        if now - times[0] > self.settings.window or host in self.hosts:
            return False
        if host in self.stream_hosts or self.settings.open or (self.nets and self.trusted(peer)):
            return False  # every registrar/proxy/allowed host:port is in stream_hosts
        if data.startswith(b"ACK "):
            return False  # it ends one of our 403 transactions (RFC 3261 17.2.1): let it
        times.append(now)  # still trying: stays limited (the deque is bounded)
        counts = self.counts
        counts.total += 1
        counts.rate_limited += 1
        if now - self._noted.get(host, -1e9) >= 1.0:
            self._noted[host] = now
            if len(self._noted) > self.MAX_SOURCES:
                self._noted.pop(next(iter(self._noted)))
            method = data[:16].partition(b" ")[0].decode("ascii", "replace") or "?"
            self._note(method, peer, "rate-limited")
        return True

    def _count(self, method: str, peer: Peer, action: str) -> None:
        counts = self.counts
        counts.total += 1
        if action == "rate-limited":
            counts.rate_limited += 1
        elif action == "dropped":
            counts.dropped += 1
        else:
            counts.forbidden += 1
        self._note(method, peer, action)

    def _note(self, method: str, peer: Peer, action: str) -> None:
        """Remember a refusal for ``intercom status``; log a few per decade of the count."""
        counts = self.counts
        counts.last.append(
            {
                "time": time.time(),
                "source": f"{peer.transport}:{peer.host}:{peer.port}",
                "method": method,
                "action": action,
            }
        )
        if counts.total <= 3 or counts.total >= self._next_log:
            # 1, 2, 3, then 100, 200 ... 900, 1000, 2000 ...: a flood of a million
            # requests writes some fifty lines, not ten thousand
            step = 10 ** max(2, len(str(counts.total)) - 1)
            self._next_log = (counts.total // step + 1) * step
            log.warning(
                "refused %s from %s:%s:%d (not a registrar, proxy or allowed peer; %d so far)",
                method,
                peer.transport,
                peer.host,
                peer.port,
                counts.total,
            )


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
