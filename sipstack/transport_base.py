"""Types shared by the SIP transports: where a message came from, where it goes.

Transports do I/O; everything above them is fed :class:`Received` messages and
hands back bytes plus a :class:`Destination`. Keeping these types in a leaf
module lets the UDP and stream transports and the manager share them without
importing each other.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable

from .records import dataclass, field

__all__ = [
    "Destination",
    "Peer",
    "RateLimitedLog",
    "TransportStats",
    "is_ip_literal",
    "DEFAULT_PORTS",
    "RELIABLE",
]

#: RFC 3261 19.1.2: default ports per transport.
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
#: Transports that deliver reliably (no retransmissions, RFC 3261 17.1.1.2).
RELIABLE = frozenset({"tcp", "tls"})


@dataclass(frozen=True, slots=True)
class Peer:
    """The remote end a message came from: transport, IP literal and port.

    ``connection_id`` names the stream connection it arrived on (None for UDP),
    so responses can go back over the same connection (RFC 3261 18.2.2).
    """

    transport: str
    host: str
    port: int
    connection_id: int | None = None

    @property
    def reliable(self) -> bool:
        """True for TCP and TLS."""
        return self.transport in RELIABLE


@dataclass(frozen=True, slots=True)
class Destination:
    """Where to send: a transport, an IP literal and a port.

    ``server_name`` is the host name TLS checks the certificate against (SNI);
    ``connection_id`` pins a stream connection (responses on the connection the
    request came in on).
    """

    transport: str
    host: str
    port: int
    server_name: str | None = None
    connection_id: int | None = None

    @property
    def reliable(self) -> bool:
        """True for TCP and TLS."""
        return self.transport in RELIABLE


@dataclass(slots=True)
class TransportStats:
    """Counters a diagnostics CLI can show: what came in, what was refused."""

    received: int = 0
    sent: int = 0
    bad_messages: int = 0
    send_errors: int = 0
    connections_opened: int = 0
    connections_closed: int = 0
    keepalives_answered: int = 0
    keepalive_failures: int = 0  # flows failed for want of a pong (RFC 5626 4.4.1)


@dataclass
class RateLimitedLog:
    """Log a peer's misbehaviour once per source per interval, counting the rest.

    A SIP scanner sending thousands of bad datagrams must not fill the SD card
    with log lines; the next line reports how many were suppressed.
    """

    logger: logging.Logger
    interval: float = 60.0
    clock: Callable[[], float] = time.monotonic
    max_sources: int = 1024
    _last: dict[str, tuple[float, int]] = field(default_factory=dict)

    def warning(self, source: str, msg: str, *args: object) -> None:
        """Log ``msg`` for ``source`` unless it was logged within ``interval``."""
        now = self.clock()
        last = self._last.get(source)
        if last is not None and now - last[0] < self.interval:
            self._last[source] = (last[0], last[1] + 1)
            return
        suppressed = last[1] if last is not None else 0
        if len(self._last) >= self.max_sources:
            # bounded memory under a flood from many sources: forget the oldest
            oldest = min(self._last, key=lambda k: self._last[k][0])
            del self._last[oldest]
        self._last[source] = (now, 0)
        if suppressed:
            self.logger.warning(msg + " (%d similar suppressed)", *args, suppressed)
        else:
            self.logger.warning(msg, *args)


def is_ip_literal(host: str) -> bool:
    """True for an IPv4 or IPv6 literal (without brackets)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
