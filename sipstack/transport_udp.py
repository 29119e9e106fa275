"""UDP transport: one non-blocking datagram socket on the loop."""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Callable

from .errors import TransportError
from .loop import Loop
from .transport_base import Destination, Peer, TransportStats

__all__ = ["UdpTransport"]

log = logging.getLogger(__name__)

#: Largest datagram we accept; a SIP message over UDP is far smaller.
MAX_DATAGRAM = 65535
#: Datagrams read per readiness callback, so a flood cannot starve timers and RTP.
READ_BUDGET = 64

DataHandler = Callable[[bytes, Peer], None]


class UdpTransport:
    """A bound UDP socket feeding datagrams to ``on_data``.

    Each datagram is one message (RFC 3261 18.3); framing and parsing happen
    above. Sends never block: a full socket buffer drops the datagram, exactly
    what the network would do, and retransmission recovers it.
    """

    name = "udp"
    reliable = False

    def __init__(
        self,
        loop: Loop,
        host: str,
        port: int,
        on_data: DataHandler,
        stats: TransportStats | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            self._sock.setblocking(False)
            self._sock.bind((host, port))
        except OSError as exc:
            self._sock.close()
            raise TransportError(f"cannot bind UDP {host}:{port}: {exc.strerror}") from exc
        self._loop = loop
        self._on_data = on_data
        self.family = family
        self.stats = stats if stats is not None else TransportStats()
        bound = self._sock.getsockname()
        self.local_host: str = bound[0]
        self.local_port: int = bound[1]
        loop.add_reader(self._sock, self._read_ready)

    def fileno(self) -> int:
        """The socket's descriptor (for diagnostics)."""
        return self._sock.fileno()

    def send(self, data: bytes, dest: Destination) -> None:
        """Send one datagram; raises :class:`TransportError` on a hard error."""
        try:
            self._sock.sendto(data, (dest.host, dest.port))
        except (BlockingIOError, InterruptedError):
            log.debug("UDP send buffer full, datagram to %s:%d dropped", dest.host, dest.port)
            return
        except OSError as exc:
            self.stats.send_errors += 1
            raise TransportError(
                f"UDP send to {dest.host}:{dest.port} failed: {exc.strerror}"
            ) from exc
        self.stats.sent += 1

    def _read_ready(self) -> None:
        for _ in range(READ_BUDGET):
            try:
                data, addr = self._sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # ICMP port unreachable surfaces as ECONNREFUSED on Linux: not fatal
                if exc.errno not in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                    log.warning(
                        "UDP receive error on %s:%d: %s", self.local_host, self.local_port, exc
                    )
                continue
            self.stats.received += 1
            self._on_data(data, Peer("udp", addr[0], addr[1]))

    def close(self) -> None:
        """Stop reading and release the socket."""
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock)
            self._sock.close()
