"""The SIP endpoint: transports, transactions and server location on one loop.

This is the only place where the sans-IO transaction layer meets sockets and
the clock. It sends requests to the targets RFC 3263 finds, failing over to the
next target on a timeout, a transport error or a 503 (RFC 3263 4.3) with a new
transaction each time; it hands incoming requests to the transaction user (the
user agent) and sends its responses back where RFC 3261 18.2.2 says.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from .errors import TransportError
from .ids import IdGenerator
from .loop import Loop, TimerHandle
from .message import Request, Response
from .records import dataclass
from .targets import FailureReason, LocateError, Target, TargetList
from .timers import TimerConfig
from .transaction import (
    AckReceived,
    ClientKey,
    RequestReceived,
    ResponseReceived,
    ServerTransactionKey,
    StrayResponse,
    Terminated,
    TimedOut,
    TransactionKey,
    TransportFailed,
    server_key,
)
from .transaction_layer import TransactionLayer
from .transport import TransportManager
from .transport_base import Destination, Peer, is_ip_literal
from .uri import URI

if TYPE_CHECKING:
    # DNS only when a server is named by host name: IP-literal set-ups never load it
    from .resolver import Resolver

__all__ = ["Endpoint", "IncomingRequest", "OutgoingRequest", "RequestFailure"]

log = logging.getLogger(__name__)

ResponseHandler = Callable[[Response], None]
LocateKey = tuple[str, int | None, str | None, bool]

#: How long a target that answered stays first in line for its next hop. RFC 3263
#: 4.3 has each request walk the list anew; remembering the server that answered
#: spares a refresh the Timer F wait on a dead first SRV target every time.
PREFERRED_TARGET_SECONDS = 300.0


@dataclass(frozen=True, slots=True)
class RequestFailure:
    """A request that got no response: timeout (408) or transport/DNS failure (503).

    Like PJSIP, failures carry the status code a TU would see in a synthetic
    response, so registration and call code handle them uniformly.
    """

    status: int
    reason: str


FailureHandler = Callable[[RequestFailure], None]


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """A new request for the TU, with where it came from and its transaction key."""

    request: Request
    peer: Peer
    key: ServerTransactionKey


class OutgoingRequest:
    """A request in flight, possibly across several targets (RFC 3263 4.3)."""

    def __init__(
        self, request: Request, on_response: ResponseHandler, on_failure: FailureHandler
    ) -> None:
        self.request = request
        self.on_response = on_response
        self.on_failure = on_failure
        self.targets: TargetList | None = None
        self.locate_key: LocateKey | None = None  # what RFC 3263 was asked
        self.key: ClientKey | None = None
        self.sent: Request | None = None  # the attempt in flight (with Via filled)
        self.destination: Destination | None = None
        self.final = False
        self.cancelled = False


class Endpoint:
    """Binds a :class:`TransactionLayer` to real transports and a resolver.

    ``on_request`` gets every new request (the TU must answer it with
    :meth:`respond`); ``on_ack`` gets ACKs for 2xx responses (they carry a new
    branch, RFC 3261 17.1.1.3, so no transaction matches them);
    ``on_stray_response`` gets responses no transaction wants (2xx
    retransmissions after an INVITE transaction ended).
    """

    def __init__(
        self,
        loop: Loop,
        *,
        on_request: Callable[[IncomingRequest], None],
        on_ack: Callable[[Request, Peer], None] | None = None,
        on_stray_response: Callable[[Response], None] | None = None,
        on_connection_closed: Callable[[str, str, int], None] | None = None,
        resolver: Resolver | None = None,
        timers: TimerConfig | None = None,
        ids: IdGenerator | None = None,
    ) -> None:
        self.loop = loop
        self.ids = ids if ids is not None else IdGenerator()
        self.transports = TransportManager(
            loop, self._on_message, on_connection_closed=on_connection_closed
        )
        self.layer = TransactionLayer(timers)
        self.resolver = resolver
        self.on_request = on_request
        self.on_ack = on_ack
        self.on_stray_response = on_stray_response
        self._outgoing: dict[TransactionKey, OutgoingRequest] = {}
        self._client_dest: dict[TransactionKey, Destination] = {}
        self._server_peer: dict[TransactionKey, Peer] = {}
        self._last_peer = Peer("udp", "0.0.0.0", 0)  # source of the message being handled
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._pumping = False
        self._preferred: dict[LocateKey, tuple[Target, float]] = {}
        #: ``admit(request, peer)`` -> False drops a request silently before a
        #: transaction is made (SIP scanners learn nothing); see ``refused``
        self.admit: Callable[[Request, Peer], bool] | None = None
        self.refused = 0

    # -- requests we send -------------------------------------------------------------

    def send_request(
        self,
        request: Request,
        on_response: ResponseHandler,
        on_failure: FailureHandler,
        destination: Destination | None = None,
    ) -> OutgoingRequest:
        """Send ``request`` in a client transaction; report every response.

        Without ``destination`` the next hop is the first Route (loose routing,
        RFC 3261 8.1.2) or the Request-URI, located with RFC 3263. Provisional
        and final responses reach ``on_response`` (for INVITE also 2xx
        retransmissions and forks); ``on_failure`` gets a 408 or 503 when no
        target answered.
        """
        out = OutgoingRequest(request, on_response, on_failure)
        if destination is not None:
            target = Target(
                destination.transport,
                destination.host,
                destination.port,
                destination.server_name or destination.host,
            )
            self.loop.call_soon(lambda: self._targets_found(out, [target]))
        else:
            hop = self.next_hop(request)
            out.locate_key = self._locate_key(hop)
            self._locate(hop, lambda r: self._targets_found(out, r))
        return out

    @staticmethod
    def _locate_key(uri: URI) -> LocateKey:
        return (uri.params.get("maddr") or uri.host, uri.port, uri.transport, uri.scheme == "sips")

    def cancel(self, out: OutgoingRequest) -> None:
        """CANCEL a pending INVITE (RFC 3261 9.1); the INVITE then ends with 487."""
        out.cancelled = True
        if out.key is None or out.final:
            return
        cancel_key = self.layer.cancel(out.key, self.loop.time())
        if cancel_key is not None and out.destination is not None:
            self._client_dest[cancel_key] = out.destination
        self._pump()

    def send_stateless(
        self,
        request: Request,
        destination: Destination | None = None,
        on_failure: FailureHandler | None = None,
    ) -> None:
        """Send a request outside any transaction (the ACK for a 2xx, RFC 3261 13.2.2.4)."""

        def send(result: list[Target] | LocateError) -> None:
            if isinstance(result, LocateError):
                if on_failure is not None:
                    on_failure(RequestFailure(503, str(result)))
                return
            target = result[0]
            dest = Destination(target.transport, target.address, target.port, target.host)
            if not request.headers.get("Via"):
                request.headers.prepend("Via", f"SIP/2.0/UDP invalid;branch={self.ids.branch()}")
            try:
                dest = self.transports.prepare_request(request, dest)
                self.transports.send_request(request, dest)
            except TransportError as exc:
                if on_failure is not None:
                    on_failure(RequestFailure(503, str(exc)))

        if destination is not None:
            send(
                [
                    Target(
                        destination.transport,
                        destination.host,
                        destination.port,
                        destination.server_name or destination.host,
                    )
                ]
            )
        else:
            self._locate(self.next_hop(request), send)

    @staticmethod
    def next_hop(request: Request) -> URI:
        """The URI whose server gets the request (RFC 3261 8.1.2).

        The first Route when it is a loose router (``;lr``); otherwise the
        Request-URI, which for a strict router already holds that router
        (12.2.1.1 moved it there).
        """
        routes = request.routes
        if routes and "lr" in routes[0].uri.params:
            return routes[0].uri
        return request.uri

    def _locate(self, uri: URI, callback: Callable[[list[Target] | LocateError], None]) -> None:
        host = uri.params.get("maddr") or uri.host
        transport = uri.transport
        secure = uri.scheme == "sips"
        if self.resolver is None:
            if not is_ip_literal(host):
                err = LocateError(host)
                self.loop.call_soon(lambda: callback(err))
                return
            tp = transport or ("tls" if secure else "udp")
            port = uri.port or (5061 if tp == "tls" else 5060)
            targets = [Target(tp, host, port, host)]
            self.loop.call_soon(lambda: callback(targets))
            return
        try:
            self.resolver.locate(host, uri.port, transport, secure, callback)
        except ValueError as exc:
            err = LocateError(host)
            log.warning("cannot locate %s: %s", uri, exc)
            self.loop.call_soon(lambda: callback(err))

    def _targets_found(self, out: OutgoingRequest, result: list[Target] | LocateError) -> None:
        if isinstance(result, LocateError):
            out.final = True
            out.on_failure(RequestFailure(503, f"cannot locate server: {result}"))
            return
        supported = self.transports.supported()
        usable = [t for t in result if t.transport in supported]
        key = out.locate_key
        preferred = self._preferred.get(key) if key is not None else None
        if key is not None and preferred is not None:
            target, until = preferred
            if until < self.loop.time() or target not in usable:
                del self._preferred[key]
            else:
                usable.remove(target)
                usable.insert(0, target)
        if not usable:
            out.final = True
            out.on_failure(
                RequestFailure(
                    503, f"no transport for {', '.join(sorted({t.transport for t in result}))}"
                )
            )
            return
        out.targets = TargetList(usable)
        self._attempt(out)

    def _attempt(self, out: OutgoingRequest) -> None:
        """Send to the current target in a new client transaction (new branch)."""
        assert out.targets is not None
        while True:
            target = out.targets.current
            if target is None:
                out.final = True
                failures = out.targets.failures
                status = 408 if failures and failures[-1][1] is FailureReason.TIMEOUT else 503
                why = "; ".join(
                    f"{t.transport}:{t.address}:{t.port} {r.value}" for t, r in failures
                )
                out.on_failure(RequestFailure(status, f"no server answered ({why})"))
                return
            request = out.request.copy()
            via = f"SIP/2.0/{target.transport.upper()} invalid;branch={self.ids.branch()}"
            if request.headers.get("Via"):
                request.headers.remove("Via")
            request.headers.prepend("Via", via)
            dest = Destination(target.transport, target.address, target.port, target.host)
            try:
                dest = self.transports.prepare_request(request, dest)
            except TransportError as exc:
                log.info(
                    "cannot use %s:%s:%d: %s", target.transport, target.address, target.port, exc
                )
                out.targets.failed(target, FailureReason.TRANSPORT_ERROR)
                continue
            break
        now = self.loop.time()
        key = self.layer.send_request(request, dest.reliable, now)
        out.key, out.sent, out.destination = key, request, dest
        self._outgoing[key] = out
        self._client_dest[key] = dest
        if out.cancelled and request.method == "INVITE":
            # cancel() came while the server was still being located: the layer
            # holds the CANCEL until a provisional response arrives (RFC 3261 9.1)
            cancel_key = self.layer.cancel(key, now)
            if cancel_key is not None:
                self._client_dest[cancel_key] = dest
        self._pump()

    def _retry_next(self, out: OutgoingRequest, reason: FailureReason) -> bool:
        """Move to the next target; False when there is none left."""
        if out.targets is None or out.cancelled:
            return False
        current = out.targets.current
        if current is None:
            return False
        if out.targets.failed(current, reason) is None:
            return False
        self._attempt(out)
        return True

    # -- requests we receive ------------------------------------------------------------

    def respond(self, incoming: IncomingRequest, response: Response) -> None:
        """Answer a request through its server transaction."""
        self.layer.send_response(incoming.key, response, self.loop.time())
        self._pump()

    def _on_message(self, message: Request | Response, peer: Peer) -> None:
        if (
            isinstance(message, Request)
            and self.admit is not None
            and not self.admit(message, peer)
        ):
            self.refused += 1  # dropped before any transaction exists: no 100, no trace
            return
        if isinstance(message, Request) and message.method != "ACK":
            key = server_key(message)
            self._server_peer.setdefault(key, peer)
        self._last_peer = peer
        self.layer.receive(message, peer.reliable, self.loop.time())
        self._pump()

    # -- the pump: drain the layer, then re-arm the timer ------------------------------

    def _pump(self) -> None:
        if self._pumping:
            return  # re-entered from a callback: the outer loop drains
        self._pumping = True
        try:
            while True:
                progressed = self._send_outbox()
                event = self.layer.next_event()
                if event is not None:
                    progressed = True
                    self._dispatch(event)
                if not progressed:
                    break
        finally:
            self._pumping = False
        self._arm_timer()

    def _send_outbox(self) -> bool:
        batch = self.layer.messages_to_send()
        for key, message in batch:
            on_error = self._error_reporter(key)
            try:
                if isinstance(message, Response):
                    peer = self._server_peer.get(key)
                    self.transports.send_response(message, peer, on_error)
                else:
                    dest = self._client_dest.get(key)
                    if dest is None:
                        log.error("no destination for %s", key)
                        continue
                    self.transports.send_request(message, dest, on_error)
            except TransportError as exc:
                log.info("transport error for %s: %s", key, exc)
                self.layer.transport_error(key, self.loop.time())
        return bool(batch)

    def _error_reporter(self, key: TransactionKey) -> Callable[[TransportError], None]:
        def report(exc: TransportError) -> None:
            log.info("transport error for %s: %s", key, exc)
            self.layer.transport_error(key, self.loop.time())
            self._pump()

        return report

    def _dispatch(self, event: object) -> None:
        if isinstance(event, RequestReceived):
            key = event.key
            assert not isinstance(key, ClientKey)
            peer = self._server_peer.get(key, self._last_peer)
            try:
                self.on_request(IncomingRequest(event.request, peer, key))
            except Exception:
                log.exception("request handler failed for %s", event.request.method)
        elif isinstance(event, ResponseReceived):
            self._response(event.key, event.response)
        elif isinstance(event, TimedOut | TransportFailed):
            self._client_failed(event.key, isinstance(event, TimedOut))
        elif isinstance(event, Terminated):
            self._outgoing.pop(event.key, None)
            self._client_dest.pop(event.key, None)
            self._server_peer.pop(event.key, None)
        elif isinstance(event, AckReceived):
            if self.on_ack is not None:
                self.on_ack(event.request, self._last_peer)
        elif isinstance(event, StrayResponse) and self.on_stray_response is not None:
            self.on_stray_response(event.response)

    def _response(self, key: TransactionKey, response: Response) -> None:
        out = self._outgoing.get(key)
        if out is None:
            return  # the CANCEL's own 200, or a transaction we forgot
        if out.locate_key is not None and out.targets is not None and response.status != 503:
            current = out.targets.current
            if current is not None:  # this server answers: try it first next time
                self._preferred[out.locate_key] = (
                    current,
                    self.loop.time() + PREFERRED_TARGET_SECONDS,
                )
        if (
            response.status == 503
            and not out.final
            and self._retry_next(out, FailureReason.SERVICE_UNAVAILABLE)
        ):
            return  # RFC 3263 4.3: a 503 moves on to the next target
        if response.status >= 200:
            out.final = True
        try:
            out.on_response(response)
        except Exception:
            log.exception("response handler failed for %s", out.request.method)

    def _client_failed(self, key: TransactionKey, timeout: bool) -> None:
        out = self._outgoing.get(key)
        if out is None or out.final:
            return
        reason = FailureReason.TIMEOUT if timeout else FailureReason.TRANSPORT_ERROR
        if self._retry_next(out, reason):
            return
        out.final = True
        status = 408 if timeout else 503
        text = "Request Timeout" if timeout else "Transport Error"
        try:
            out.on_failure(RequestFailure(status, text))
        except Exception:
            log.exception("failure handler failed for %s", out.request.method)

    def _arm_timer(self) -> None:
        when = self.layer.get_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.layer.handle_timer(self.loop.time())
        self._pump()

    def close(self) -> None:
        """Stop timers and close every transport and the resolver."""
        if self._timer is not None:
            self._timer.cancel()
        self.transports.close()
        if self.resolver is not None:
            self.resolver.close()
