"""TCP and TLS transports: a listening socket plus connections, all non-blocking.

TLS runs through ``ssl.MemoryBIO`` so the handshake and records are pumped by
the loop like plain TCP bytes: nothing ever blocks, and a slow or silent peer
costs a buffer, not a thread. Connections are reused per remote address
(RFC 3261 18.1.1 / 18.2.2), answer RFC 5626 CRLF keep-alives, close when idle,
and are dropped on garbage or oversized messages (bounded buffers).

A flow can die without a FIN or RST (a NAT box or firewall forgets it, a
cable is pulled at the far end): the kernel would keep retransmitting for
many minutes while we believe we are registered. So our own CRLF pings are
timed (RFC 5626 4.4.1): once the peer has shown it answers pings with a pong,
a ping met with silence for ``keepalive_timeout`` seconds fails the flow, which
closes it as an error and lets the layers above connect and register again.
A peer that never answered a ping (no RFC 5626 support) is not held to it.
"""

from __future__ import annotations

import enum
import errno
import itertools
import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import SipParseError, TransportError
from .framer import KeepAlivePing, KeepAlivePong, StreamFramer
from .loop import Loop, TimerHandle
from .transport_base import Destination, Peer, RateLimitedLog, TransportStats

if TYPE_CHECKING:
    # imported where TLS is used: plain UDP/TCP never pays for OpenSSL (~4 MiB resident)
    import ssl

__all__ = ["StreamTransport", "StreamConnection", "ConnState", "address_is_ours"]

log = logging.getLogger(__name__)

READ_SIZE = 65536
#: Wire bytes queued per connection before we give up on a peer that never reads.
MAX_OUTBOUND = 1024 * 1024
#: RFC 5626 4.4.1: "If a pong is not received within 10 seconds after sending a
#: ping ... the client MUST treat the flow as failed."
KEEPALIVE_TIMEOUT = 10.0
PING = b"\r\n\r\n"

DataHandler = Callable[[bytes, Peer], None]
ClosedHandler = Callable[["StreamConnection", str], None]
ErrorHandler = Callable[[TransportError], None]


class ConnState(enum.Enum):
    """Life of a stream connection."""

    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    OPEN = "open"
    CLOSED = "closed"


class StreamConnection:
    """One TCP or TLS connection: socket, optional TLS object, framer, out buffer."""

    def __init__(
        self,
        transport: StreamTransport,
        sock: socket.socket,
        conn_id: int,
        remote: tuple[str, int],
        tls: ssl.SSLObject | None,
        outgoing: bool,
    ) -> None:
        self.transport = transport
        self.id = conn_id
        self.remote = remote
        self.outgoing = outgoing
        self.state = ConnState.CONNECTING if outgoing else ConnState.HANDSHAKING
        self._sock = sock
        self._tls = tls
        self._tls_in: ssl.MemoryBIO | None = None
        self._tls_out: ssl.MemoryBIO | None = None
        self._framer = StreamFramer(transport.max_message_size)
        self._wire_out = bytearray()  # bytes ready for the socket
        self._pending_plain: list[tuple[bytes, ErrorHandler | None]] = []
        self.last_activity = transport.loop.time()
        self.pongs = 0  # keep-alive pongs received: the peer speaks RFC 5626 4.4.1
        self._awaiting_pong = False
        self._pong_timer: TimerHandle | None = None
        self.peer = Peer(transport.name, remote[0], remote[1], conn_id)
        local = sock.getsockname()
        self.local: tuple[str, int] = (local[0], local[1])

    @property
    def is_open(self) -> bool:
        """True once connected (and, for TLS, handshaken)."""
        return self.state is ConnState.OPEN

    # -- set-up -----------------------------------------------------------------

    def attach_tls(self, tls: ssl.SSLObject, tls_in: ssl.MemoryBIO, tls_out: ssl.MemoryBIO) -> None:
        """Use TLS over this socket (called before any data flows)."""
        self._tls, self._tls_in, self._tls_out = tls, tls_in, tls_out

    def start(self) -> None:
        """Register with the loop: wait for connect, or start the server side."""
        loop = self.transport.loop
        loop.add_reader(self._sock, self._read_ready)
        if self.state is ConnState.CONNECTING:
            loop.add_writer(self._sock, self._connect_ready)
        else:
            self._after_tcp_connected()

    def _connect_ready(self) -> None:
        err = self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        self.transport.loop.remove_writer(self._sock)
        if err:
            self.close(f"connect failed: {errno.errorcode.get(err, err)}", error=True)
            return
        local = self._sock.getsockname()
        self.local = (local[0], local[1])
        self._after_tcp_connected()

    def _after_tcp_connected(self) -> None:
        if self._tls is None:
            self._opened()
        else:
            self.state = ConnState.HANDSHAKING
            self._handshake()

    def _handshake(self) -> None:
        import ssl

        assert self._tls is not None
        try:
            self._tls.do_handshake()
        except ssl.SSLWantReadError:
            self._flush_tls()
            return
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._flush_tls()
            self.close(f"TLS handshake failed: {exc}", error=True)
            return
        self._flush_tls()
        self._opened()

    def _opened(self) -> None:
        self.state = ConnState.OPEN
        pending, self._pending_plain = self._pending_plain, []
        for data, _ in pending:
            self._queue_plain(data)
        self._flush()

    # -- sending ----------------------------------------------------------------

    def send(self, data: bytes, on_error: ErrorHandler | None = None) -> None:
        """Queue a message; errors before the connection opens reach ``on_error``."""
        if self.state is ConnState.CLOSED:
            raise TransportError(f"{self.transport.name} connection to {self.remote} is closed")
        self.last_activity = self.transport.loop.time()
        if data == PING:
            self._await_pong()
        if self.state is not ConnState.OPEN:
            self._pending_plain.append((data, on_error))
            return
        self._queue_plain(data)
        self._flush()

    def _await_pong(self) -> None:
        # RFC 5626 4.4.1: a ping starts the 10 s wait for its pong (one wait at a
        # time: a second ping before the pong does not extend the first one's).
        self._awaiting_pong = True
        if self._pong_timer is None and self.pongs > 0:
            self._pong_timer = self.transport.loop.call_later(
                self.transport.keepalive_timeout, self._pong_missing
            )

    def _pong_missing(self) -> None:
        self._pong_timer = None
        self.transport.stats.keepalive_failures += 1
        log.info(
            "%s flow to %s:%d failed: no keep-alive pong within %.0f s (RFC 5626 4.4.1)",
            self.transport.name,
            self.remote[0],
            self.remote[1],
            self.transport.keepalive_timeout,
        )
        self.close("no keep-alive pong", error=True)

    def _queue_plain(self, data: bytes) -> None:
        if self._tls is not None:
            self._tls.write(data)
            self._pump_tls_out()
        else:
            self._wire_out += data
        if len(self._wire_out) > MAX_OUTBOUND:
            self.close("peer is not reading (output buffer full)", error=True)

    def _pump_tls_out(self) -> None:
        assert self._tls_out is not None
        chunk = self._tls_out.read()
        if chunk:
            self._wire_out += chunk

    def _flush_tls(self) -> None:
        self._pump_tls_out()
        self._flush()

    def _flush(self) -> None:
        if not self._wire_out or self.state is ConnState.CLOSED:
            return
        try:
            sent = self._sock.send(self._wire_out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self.close(f"send failed: {exc.strerror}", error=True)
            return
        del self._wire_out[:sent]
        self.transport.stats.sent += 1 if sent else 0
        if self._wire_out:
            self.transport.loop.add_writer(self._sock, self._write_ready)

    def _write_ready(self) -> None:
        self.transport.loop.remove_writer(self._sock)
        self._flush()

    # -- receiving --------------------------------------------------------------

    def _read_ready(self) -> None:
        if self.state is ConnState.CONNECTING:
            return  # wait for the writer callback to report the connect result
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self.close(f"receive failed: {exc.strerror}")
            return
        if not data:
            self.close("closed by peer")
            return
        self.last_activity = self.transport.loop.time()
        if self._tls is None:
            self._feed(data)
            return
        import ssl

        assert self._tls_in is not None
        self._tls_in.write(data)
        if self.state is ConnState.HANDSHAKING:
            self._handshake()
            if not self.is_open:
                return
        plain = bytearray()
        while True:
            try:
                chunk = self._tls.read(READ_SIZE)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._flush_tls()
                self.close("TLS closed by peer")
                return
            except ssl.SSLError as exc:
                self.close(f"TLS error: {exc}")
                return
            if not chunk:
                break
            plain += chunk
        self._flush_tls()
        if plain:
            self._feed(bytes(plain))

    def _got_pong(self) -> None:
        self._awaiting_pong = False
        self.pongs += 1
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None

    def _feed(self, data: bytes) -> None:
        if (
            self._awaiting_pong
            and data.startswith(b"\r\n")
            and not data.startswith(PING)
            and self._framer.buffered == 0
        ):
            # The lone CRLF answering our ping. Taken here, not by the framer: after
            # one pong the framer reads the next lone CRLF as the end of a ping split
            # across reads (and we would answer our own pong with another).
            self._got_pong()
            data = data[2:]
            if not data:
                return
        try:
            items = self._framer.feed(data)
        except SipParseError as exc:
            self.transport.stats.bad_messages += 1
            self.transport.bad_log.warning(
                self.remote[0],
                "dropping %s connection from %s:%d: %s",
                self.transport.name,
                self.remote[0],
                self.remote[1],
                exc.reason,
            )
            self.close("bad stream data")
            return
        for item in items:
            if self.state is ConnState.CLOSED:
                return
            if isinstance(item, KeepAlivePing):
                # RFC 5626 4.4.1: answer a double-CRLF ping with a single CRLF pong
                self.transport.stats.keepalives_answered += 1
                self.send(b"\r\n")
            elif isinstance(item, KeepAlivePong):
                self._got_pong()
            else:
                self.transport.stats.received += 1
                self.transport.on_data(item, self.peer)

    # -- teardown ---------------------------------------------------------------

    def close(self, reason: str, error: bool = False) -> None:
        """Close the socket; report queued sends as failed when ``error``."""
        if self.state is ConnState.CLOSED:
            return
        self.state = ConnState.CLOSED
        if self._pong_timer is not None:
            self._pong_timer.cancel()
            self._pong_timer = None
        loop = self.transport.loop
        loop.remove_reader(self._sock)
        loop.remove_writer(self._sock)
        self._sock.close()
        pending, self._pending_plain = self._pending_plain, []
        exc = TransportError(f"{self.transport.name} {self.remote[0]}:{self.remote[1]}: {reason}")
        if error:
            self.transport.stats.send_errors += len(pending) or 1
        for _, on_error in pending:
            if on_error is not None:
                on_error(exc)
        self.transport.connection_closed(self, reason)


def address_is_ours(host: str) -> bool:
    """True unless the kernel says ``host`` is not an address of this host now
    (binding a probe socket to it fails with EADDRNOTAVAIL)."""
    if host in ("", "0.0.0.0", "::"):
        return True  # not bound yet (still connecting)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, 0))
        except OSError as exc:
            return exc.errno != errno.EADDRNOTAVAIL
    return True


class StreamTransport:
    """A TCP or TLS transport: optional listener and a table of connections.

    ``server_context`` makes it TLS on the accepting side, ``client_context``
    on the connecting side (both ``None`` = plain TCP). ``keepalive_timeout``
    is how long a pong may take (RFC 5626 4.4.1); ``is_local_address(host)``
    says whether an address is still ours (default: ask the kernel), for
    :meth:`close_stranded`.
    """

    def __init__(
        self,
        loop: Loop,
        name: str,
        host: str,
        port: int,
        on_data: DataHandler,
        *,
        listen: bool = True,
        server_context: ssl.SSLContext | None = None,
        client_context: ssl.SSLContext | None = None,
        idle_timeout: float = 180.0,
        max_connections: int = 256,
        max_message_size: int = 65536,
        on_closed: ClosedHandler | None = None,
        stats: TransportStats | None = None,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
        is_local_address: Callable[[str], bool] | None = None,
    ) -> None:
        if name not in ("tcp", "tls"):
            raise ValueError(f"stream transport must be tcp or tls, not {name!r}")
        if name == "tls" and client_context is None:
            raise ValueError("a TLS transport needs a client SSLContext")
        self.loop = loop
        self.name = name
        self.reliable = True
        self.on_data = on_data
        self.on_closed = on_closed
        self.server_context = server_context
        self.client_context = client_context
        self.idle_timeout = idle_timeout
        self.keepalive_timeout = keepalive_timeout
        self._is_local_address = is_local_address or address_is_ours
        self.max_connections = max_connections
        self.max_message_size = max_message_size
        self.stats = stats if stats is not None else TransportStats()
        self.bad_log = RateLimitedLog(log, clock=loop.time)
        self.family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._ids = itertools.count(1)
        self._by_id: dict[int, StreamConnection] = {}
        self._by_remote: dict[tuple[str, int], StreamConnection] = {}
        self._listener: socket.socket | None = None
        self.local_host = host
        self.local_port = port
        if listen:
            if name == "tls" and server_context is None:
                raise ValueError("a listening TLS transport needs a server SSLContext")
            self._listener = socket.socket(self.family, socket.SOCK_STREAM)
            try:
                self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                self._listener.setblocking(False)
                self._listener.bind((host, port))
                self._listener.listen(64)
            except OSError as exc:
                self._listener.close()
                raise TransportError(
                    f"cannot listen on {name.upper()} {host}:{port}: {exc.strerror}"
                ) from exc
            bound = self._listener.getsockname()
            self.local_host, self.local_port = bound[0], bound[1]
            loop.add_reader(self._listener, self._accept_ready)
        self._idle_timer: TimerHandle | None = loop.call_later(
            max(1.0, idle_timeout / 4), self._reap_idle
        )

    # -- public -----------------------------------------------------------------

    def send(self, data: bytes, dest: Destination, on_error: ErrorHandler | None = None) -> int:
        """Send over an existing connection or a new one; returns the connection id.

        Connection errors that happen after this call returns reach
        ``on_error`` (asynchronous connect and TLS handshake).
        """
        conn = None
        if dest.connection_id is not None:
            conn = self._by_id.get(dest.connection_id)
        if conn is None:
            conn = self._by_remote.get((dest.host, dest.port))
        if conn is None or conn.state is ConnState.CLOSED:
            conn = self._connect(dest)
        conn.send(data, on_error)
        return conn.id

    def connection(self, conn_id: int) -> StreamConnection | None:
        """The live connection with that id, if any."""
        return self._by_id.get(conn_id)

    def connection_to(self, host: str, port: int) -> StreamConnection | None:
        """The live connection to a remote address, if any."""
        return self._by_remote.get((host, port))

    def connections(self) -> list[StreamConnection]:
        """All live connections (for diagnostics)."""
        return list(self._by_id.values())

    def close(self) -> None:
        """Close the listener and every connection."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._listener is not None:
            self.loop.remove_reader(self._listener)
            self._listener.close()
            self._listener = None
        for conn in list(self._by_id.values()):
            conn.close("transport shut down")

    def close_stranded(self) -> int:
        """Close connections whose local address this host no longer has.

        After a renumbering (DHCP gave us another address) a connection from
        the old address can neither send nor receive, yet the kernel reports no
        error for minutes. Closing it (as an error: queued sends fail) lets the
        next request open a connection from the new address. Returns the count.
        """
        ours = self._is_local_address
        stranded = [c for c in self._by_id.values() if not ours(c.local[0])]
        for conn in stranded:
            conn.close(f"local address {conn.local[0]} is gone", error=True)
        return len(stranded)

    # -- internals --------------------------------------------------------------

    def _connect(self, dest: Destination) -> StreamConnection:
        if len(self._by_id) >= self.max_connections:
            raise TransportError(f"too many {self.name} connections ({self.max_connections})")
        family = socket.AF_INET6 if ":" in dest.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            err = sock.connect_ex((dest.host, dest.port))
        except OSError as exc:
            sock.close()
            raise TransportError(f"connect to {dest.host}:{dest.port}: {exc.strerror}") from exc
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            raise TransportError(
                f"connect to {dest.host}:{dest.port}: {errno.errorcode.get(err, err)}"
            )
        conn = StreamConnection(self, sock, next(self._ids), (dest.host, dest.port), None, True)
        if self.name == "tls":
            import ssl

            assert self.client_context is not None
            tls_in, tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
            tls = self.client_context.wrap_bio(
                tls_in,
                tls_out,
                server_side=False,
                server_hostname=dest.server_name or dest.host,
            )
            conn.attach_tls(tls, tls_in, tls_out)
        self._register(conn)
        conn.start()
        return conn

    def _accept_ready(self) -> None:
        assert self._listener is not None
        for _ in range(16):
            try:
                sock, addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("%s accept failed: %s", self.name, exc)
                return
            if len(self._by_id) >= self.max_connections:
                self.bad_log.warning(
                    addr[0], "refusing %s connection from %s: table full", self.name, addr[0]
                )
                sock.close()
                continue
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = StreamConnection(self, sock, next(self._ids), (addr[0], addr[1]), None, False)
            if self.server_context is not None:
                import ssl

                tls_in, tls_out = ssl.MemoryBIO(), ssl.MemoryBIO()
                conn.attach_tls(
                    self.server_context.wrap_bio(tls_in, tls_out, server_side=True),
                    tls_in,
                    tls_out,
                )
            self._register(conn)
            conn.start()

    def _register(self, conn: StreamConnection) -> None:
        self._by_id[conn.id] = conn
        self._by_remote[conn.remote] = conn
        self.stats.connections_opened += 1

    def connection_closed(self, conn: StreamConnection, reason: str) -> None:
        """Called by a connection once it has closed."""
        self._by_id.pop(conn.id, None)
        if self._by_remote.get(conn.remote) is conn:
            del self._by_remote[conn.remote]
        self.stats.connections_closed += 1
        log.debug(
            "%s connection %d to %s:%d closed: %s",
            self.name,
            conn.id,
            conn.remote[0],
            conn.remote[1],
            reason,
        )
        if self.on_closed is not None:
            self.on_closed(conn, reason)

    def _reap_idle(self) -> None:
        now = self.loop.time()
        for conn in list(self._by_id.values()):
            if now - conn.last_activity > self.idle_timeout:
                conn.close("idle")
        self._idle_timer = self.loop.call_later(max(1.0, self.idle_timeout / 4), self._reap_idle)
