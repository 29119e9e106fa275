"""The transport layer (RFC 3261 section 18): all transports behind one manager.

Incoming bytes become parsed messages with the RFC 3261 18.2.1 / RFC 3581
``received``/``rport`` fix-ups; malformed requests are answered 400 straight
from the raw bytes, counted and logged once per source per interval. Outgoing
requests get their transport chosen (18.1.1: large requests move from UDP to
TCP) and their top Via filled; responses go where 18.2.2 says.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import SipParseError, TransportError
from .headers import Via
from .loop import Loop
from .message import Request, Response, parse_message
from .records import dataclass
from .transport_base import DEFAULT_PORTS, Destination, Peer, RateLimitedLog, TransportStats
from .transport_stream import StreamConnection, StreamTransport
from .transport_udp import UdpTransport

if TYPE_CHECKING:
    import ssl  # loaded only with TLS: it maps OpenSSL (~4 MiB resident)

__all__ = ["TransportManager", "TransportInfo", "MTU_THRESHOLD"]

log = logging.getLogger(__name__)

#: RFC 3261 18.1.1: requests larger than 1300 bytes (MTU unknown) go over TCP.
MTU_THRESHOLD = 1300

MessageHandler = Callable[[Request | Response, Peer], None]
ClosedHandler = Callable[[str, str, int], None]
Transport = UdpTransport | StreamTransport


@dataclass(frozen=True, slots=True)
class TransportInfo:
    """What the account layer needs to know about a transport (like pjsua_transport_info)."""

    id: int
    type: str
    local_host: str
    local_port: int
    reliable: bool


class TransportManager:
    """Owns the transports; parses what they receive and sends what the stack makes.

    ``on_message`` receives every well-formed message with the :class:`Peer` it
    came from; ``on_connection_closed(transport, host, port)`` tells upper
    layers (registrations over TCP/TLS) that a flow died.
    """

    def __init__(
        self,
        loop: Loop,
        on_message: MessageHandler,
        *,
        on_connection_closed: ClosedHandler | None = None,
        max_message_size: int = 65536,
    ) -> None:
        self.loop = loop
        self.on_message = on_message
        self.on_connection_closed = on_connection_closed
        self.max_message_size = max_message_size
        self.stats = TransportStats()
        self._transports: list[Transport] = []
        self._bad_log = RateLimitedLog(log, clock=loop.time)
        #: ``prescreen(data, peer)`` -> True drops received bytes before they are
        #: parsed: a flood from a source already refused and rate-limited then
        #: costs a look-up per datagram, not a parse (issue 8)
        self.prescreen: Callable[[bytes, Peer], bool] | None = None
        self._route_cache: dict[str, str] = {}

    # -- set-up -------------------------------------------------------------------

    def add_udp(self, host: str = "0.0.0.0", port: int = 5060) -> int:
        """Bind a UDP transport; returns its transport id."""
        return self._add(UdpTransport(self.loop, host, port, self._on_data, self.stats))

    def add_tcp(
        self,
        host: str = "0.0.0.0",
        port: int = 5060,
        *,
        listen: bool = True,
        idle_timeout: float = 180.0,
    ) -> int:
        """Start a TCP transport (listening unless ``listen`` is False)."""
        return self._add(
            StreamTransport(
                self.loop,
                "tcp",
                host,
                port,
                self._on_data,
                listen=listen,
                idle_timeout=idle_timeout,
                max_message_size=self.max_message_size,
                on_closed=self._stream_closed,
                stats=self.stats,
            )
        )

    def add_tls(
        self,
        host: str = "0.0.0.0",
        port: int = 5061,
        *,
        client_context: ssl.SSLContext,
        server_context: ssl.SSLContext | None = None,
        idle_timeout: float = 180.0,
    ) -> int:
        """Start a TLS transport; it listens only when given a server context."""
        return self._add(
            StreamTransport(
                self.loop,
                "tls",
                host,
                port,
                self._on_data,
                listen=server_context is not None,
                server_context=server_context,
                client_context=client_context,
                idle_timeout=idle_timeout,
                max_message_size=self.max_message_size,
                on_closed=self._stream_closed,
                stats=self.stats,
            )
        )

    def _add(self, transport: Transport) -> int:
        self._transports.append(transport)
        return len(self._transports) - 1

    def info(self, transport_id: int) -> TransportInfo:
        """Describe a transport; raises ``ValueError`` for an unknown id."""
        t = self._get(transport_id)
        return TransportInfo(transport_id, t.name, t.local_host, t.local_port, t.reliable)

    def enum(self) -> list[TransportInfo]:
        """Every transport, in id order."""
        return [self.info(i) for i in range(len(self._transports))]

    def _get(self, transport_id: int) -> Transport:
        if not 0 <= transport_id < len(self._transports):
            raise ValueError(f"no transport with id {transport_id}")
        return self._transports[transport_id]

    def find(self, name: str, family: int | None = None) -> int | None:
        """The id of the first transport of that type (and address family)."""
        for i, t in enumerate(self._transports):
            if t.name == name and (family is None or t.family == family):
                return i
        return None

    def supported(self) -> set[str]:
        """Transport names we can send over (for RFC 3263 target selection)."""
        return {t.name for t in self._transports}

    def close(self) -> None:
        """Close every transport."""
        for t in self._transports:
            t.close()

    # -- receiving ----------------------------------------------------------------

    def _on_data(self, data: bytes, peer: Peer) -> None:
        if self.prescreen is not None and self.prescreen(data, peer):
            return
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            self._bad_message(data, peer, exc)
            return
        if isinstance(msg, Request):
            try:
                self._stamp_via(msg, peer)
            except SipParseError as exc:
                self._bad_message(data, peer, exc)
                return
        self.on_message(msg, peer)

    @staticmethod
    def _stamp_via(request: Request, peer: Peer) -> None:
        """RFC 3261 18.2.1 and RFC 3581 4: record where the request really came from."""
        vias = request.vias
        if not vias:
            raise SipParseError("request without Via")
        top = vias[0]
        changed = False
        params = dict(top.params)
        if top.host != peer.host or "rport" in params:
            params["received"] = peer.host
            changed = True
        if "rport" in params and params["rport"] is None:
            params["rport"] = str(peer.port)
            changed = True
        if changed:
            stamped = Via(top.transport, top.host, top.port, params, top.protocol)
            rest = request.headers.get_all("Via")[1:]
            request.headers.set("Via", str(stamped))
            for value in rest:
                request.headers.add("Via", value)

    def _bad_message(self, data: bytes, peer: Peer, exc: SipParseError) -> None:
        self.stats.bad_messages += 1
        self._bad_log.warning(
            peer.host,
            "bad SIP message from %s %s:%d: %s",
            peer.transport,
            peer.host,
            peer.port,
            exc.reason,
        )
        if exc.status is None:
            return  # a broken response is dropped (RFC 3261 18.1.2)
        reply = error_response_from_raw(data, exc.status, exc.reason)
        if reply is None:
            return
        try:
            self.send_raw(
                reply,
                Destination(peer.transport, peer.host, peer.port, connection_id=peer.connection_id),
            )
        except TransportError as err:
            log.debug("could not answer bad message: %s", err)

    def _stream_closed(self, conn: StreamConnection, reason: str) -> None:
        if self.on_connection_closed is not None:
            self.on_connection_closed(conn.transport.name, conn.remote[0], conn.remote[1])

    # -- sending ------------------------------------------------------------------

    def transport_for(self, dest: Destination) -> Transport:
        """The transport that can reach ``dest`` (same type and address family)."""
        family = socket.AF_INET6 if ":" in dest.host else socket.AF_INET
        fallback: Transport | None = None
        for t in self._transports:
            if t.name == dest.transport:
                if t.family == family:
                    return t
                fallback = fallback or t
        if fallback is not None and fallback.family == family:
            return fallback
        raise TransportError(f"no {dest.transport.upper()} transport for {dest.host}")

    def prepare_request(self, request: Request, dest: Destination) -> Destination:
        """Choose the final transport for ``request`` and fill its top Via.

        RFC 3261 18.1.1: a request over 1300 bytes on UDP is sent over TCP when
        we have TCP. The top Via gets our transport, sent-by and ``rport``
        (RFC 3581). Call before creating the client transaction, whose
        reliability depends on the outcome.
        """
        if (
            dest.transport == "udp"
            and len(request.to_bytes()) > MTU_THRESHOLD
            and self.find("tcp") is not None
        ):
            dest = Destination("tcp", dest.host, dest.port, dest.server_name)
        transport = self.transport_for(dest)
        host = self.local_address_for(transport, dest.host)
        if host is None:
            raise TransportError(f"no route to {dest.host}")
        top = request.top_via
        params = dict(top.params)
        params.setdefault("rport", None)
        via = Via(dest.transport.upper(), host, transport.local_port, params)
        rest = request.headers.get_all("Via")[1:]
        request.headers.set("Via", str(via))
        for value in rest:
            request.headers.add("Via", value)
        return dest

    def local_address_for(self, transport: Transport, remote_host: str) -> str | None:
        """Our address as ``remote_host`` sees it (for Via, Contact and SDP).

        A transport bound to a wildcard address asks the kernel's routing table
        via a connected UDP socket (no packet is sent); results are cached
        until :meth:`forget_routes` (called on network change). ``None`` when
        there is no route: never a loopback stand-in, which a registrar would
        store as our Contact.
        """
        if transport.local_host not in ("0.0.0.0", "::"):
            return transport.local_host
        cached = self._route_cache.get(remote_host)
        if cached is not None:
            return cached
        family = socket.AF_INET6 if ":" in remote_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.connect((remote_host, 9))
                local = str(probe.getsockname()[0])
            except OSError:
                return None
        if len(self._route_cache) > 256:
            self._route_cache.clear()
        self._route_cache[remote_host] = local
        return local

    def local_address(self, transport_id: int, remote_host: str) -> str | None:
        """Our address on transport ``transport_id`` as ``remote_host`` sees it.

        No packet is sent: the kernel's route lookup answers (see
        :meth:`local_address_for`). TEST-NET addresses (192.0.2.1) give the
        default-route address.
        """
        return self.local_address_for(self._get(transport_id), remote_host)

    def forget_routes(self) -> None:
        """The network changed: drop cached source addresses, and close stream
        connections left on an address we no longer have (they would swallow
        the next request silently; see :meth:`StreamTransport.close_stranded`)."""
        self._route_cache.clear()
        for transport in self._transports:
            if isinstance(transport, StreamTransport):
                transport.close_stranded()

    def send_raw(
        self,
        data: bytes,
        dest: Destination,
        on_error: Callable[[TransportError], None] | None = None,
    ) -> None:
        """Send bytes; synchronous errors raise, asynchronous ones reach ``on_error``."""
        transport = self.transport_for(dest)
        if isinstance(transport, UdpTransport):
            transport.send(data, dest)
        else:
            transport.send(data, dest, on_error)

    def send_request(
        self,
        request: Request,
        dest: Destination,
        on_error: Callable[[TransportError], None] | None = None,
    ) -> None:
        """Send a prepared request (see :meth:`prepare_request`)."""
        self.send_raw(request.to_bytes(), dest, on_error)

    def response_destination(self, response: Response, peer: Peer | None = None) -> Destination:
        """Where RFC 3261 18.2.2 (and RFC 3581 4) says a response goes.

        Reliable: back over the connection the request arrived on while it is
        open, else a new connection to ``received`` and the sent-by port.
        Unreliable: ``received``:``rport`` when rport was used, else
        ``received`` (or sent-by host) and the sent-by port.
        """
        via = response.top_via
        # The answer goes over the transport the request came in on, whatever
        # its Via claims (RFC 4475 3.3.5 bext01 arrives over UDP saying TLS).
        transport = peer.transport if peer is not None else via.transport.lower()
        host = via.received or via.host
        if peer is not None and peer.reliable and peer.connection_id is not None:
            return Destination(
                peer.transport, peer.host, peer.port, connection_id=peer.connection_id
            )
        port = via.port or DEFAULT_PORTS.get(transport, 5060)
        rport = via.rport
        if transport == "udp" and rport is not None:
            port = rport
        return Destination(transport, host, port)

    def send_response(
        self,
        response: Response,
        peer: Peer | None = None,
        on_error: Callable[[TransportError], None] | None = None,
    ) -> None:
        """Send a response per RFC 3261 18.2.2."""
        self.send_raw(response.to_bytes(), self.response_destination(response, peer), on_error)


_ECHOED = {
    b"via": b"Via",
    b"v": b"Via",
    b"from": b"From",
    b"f": b"From",
    b"to": b"To",
    b"t": b"To",
    b"call-id": b"Call-ID",
    b"i": b"Call-ID",
    b"cseq": b"CSeq",
}
_REQUIRED = {b"Via", b"CSeq"}
_REASONS = {
    400: b"Bad Request",
    505: b"Version Not Supported",
    416: b"Unsupported URI Scheme",
    413: b"Request Entity Too Large",
    420: b"Bad Extension",
}


def error_response_from_raw(data: bytes, status: int, reason: str) -> bytes | None:
    """Build an error response from a request the parser refused.

    RFC 3261 8.2.6 copies Via, From, To, Call-ID and CSeq; they are taken
    verbatim from the raw bytes, the first of each when repeated (RFC 4475
    3.3.8 multi01). Via and CSeq are the least a sender needs to match our
    answer (RFC 4475 3.3.1 insuf lacks the others and still gets its 400);
    without them the bytes are dropped, like garbage from a scanner.
    """
    head = data.split(b"\r\n\r\n", 1)[0][:16384]
    lines = head.split(b"\r\n")
    if not lines or lines[0].startswith(b"SIP/") or b" SIP/" not in lines[0]:
        return None
    echoed: list[bytes] = []
    seen: set[bytes] = set()
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        canon = _ECHOED.get(name.strip().lower())
        if canon is None:
            continue
        if b"\r" in value or b"\n" in value or b"\0" in value:
            # A bare CR/LF or NUL would make our answer a different message (or a
            # header injection); without the line, a missing Via/CSeq drops it.
            continue
        if canon != b"Via" and canon in seen:
            continue
        seen.add(canon)
        echoed.append(canon + b": " + value.strip())
    if not seen >= _REQUIRED:
        return None
    phrase = _REASONS.get(status, b"Bad Request")
    safe_reason = reason.encode("ascii", "replace")[:100].replace(b"\r", b" ").replace(b"\n", b" ")
    out = [b"SIP/2.0 %d %s" % (status, phrase)]
    out.extend(echoed)
    out.append(b'Warning: 399 - "' + safe_reason.replace(b'"', b"'") + b'"')
    out.append(b"Content-Length: 0")
    return b"\r\n".join(out) + b"\r\n\r\n"
