"""One account slot at run time: its registration, keep-alives and authenticated requests.

The user agent owns the slot table; an :class:`Account` owns what one identity
keeps alive: the REGISTER machine (run by a :class:`MachineDriver`), NAT
keep-alives towards the registrar's flow, and the digest state its requests
share. It reports through the ``emit`` callback it is given.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from .account_config import AccountConfig, RpidElement
from .account_events import RegStateChanged, UaEvent
from .digest import AuthenticationError, DigestAuthenticator
from .driver import MachineDriver
from .endpoint import Endpoint, RequestFailure
from .headers import NameAddr
from .ids import IdGenerator
from .loop import TimerHandle
from .message import Request, Response
from .records import dataclass
from .registration import (
    Registration,
    RegistrationConfig,
    RegistrationEvent,
    RegistrationStateChanged,
)
from .registration import RequestFailure as RegFailure
from .transport_base import Destination, is_ip_literal
from .uri import URI, parse_uri

if TYPE_CHECKING:
    # presence (RFC 3856/3903) is imported when an account first uses it: its
    # event classes are start-up CPU the first REGISTER does not need (issue 6)
    from .pidf import PresenceStatus
    from .publisher import Publisher, PublisherEvent

__all__ = ["Account", "ContactSource"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ContactSource:
    """Where our Contact points: transport id, its type, the address and port."""

    transport_id: int
    transport: str
    host: str
    port: int


class Account:
    """The live part of an account slot (see the module docstring)."""

    def __init__(
        self,
        slot: int,
        config: AccountConfig,
        endpoint: Endpoint,
        ids: IdGenerator,
        rng: random.Random,
        emit: Callable[[UaEvent], None],
        *,
        local: bool = False,
        user_agent: str = "",
    ) -> None:
        self.slot = slot
        self.config = config
        self.local = local
        self.endpoint = endpoint
        self.ids = ids
        self.rng = rng
        self.emit = emit
        self.user_agent = user_agent
        try:
            self.address = NameAddr.parse(config.id)
        except Exception as exc:
            raise ValueError(f"account id {config.id!r} is not a SIP address: {exc}") from None
        if self.address.uri.scheme not in ("sip", "sips"):
            raise ValueError(f"account id {config.id!r} must be a sip: or sips: URI")
        self.authenticator = DigestAuthenticator(list(config.cred_info), ids)
        self.online = True  # PJSUA's initial online status
        self.rpid = RpidElement()
        self.publisher: Publisher | None = None
        self.pub_driver: MachineDriver[PublisherEvent] | None = None
        self._tuple_id = f"t{ids.tag()[:8]}"
        self.registration: Registration | None = None
        self.reg_driver: MachineDriver[RegistrationEvent] | None = None
        self.reg_destination: Destination | None = None
        self.last_reg_event: RegStateChanged | None = None
        self._ka_timer: TimerHandle | None = None
        self._starting = False
        self._waiting = False  # no route to the registrar yet
        self._retry_start: TimerHandle | None = None

    # -- identity -------------------------------------------------------------------

    @property
    def uri(self) -> URI:
        """The account's SIP URI (From of its requests)."""
        return self.address.uri

    @property
    def route_set(self) -> list[str]:
        """The account's proxies as Route values (``;lr`` added, RFC 3261 16.12.1.1)."""
        out = []
        for proxy in self.config.proxy:
            uri = parse_uri(proxy.strip().strip("<>"))
            if "lr" not in uri.params:
                uri = uri.replace(params={**uri.params, "lr": None})
            out.append(f"<{uri}>")
        return out

    @property
    def has_registration(self) -> bool:
        """True when the account registers (it has a registrar URI)."""
        return bool(self.config.reg_uri) and not self.local

    # -- registration ---------------------------------------------------------------------

    def start_registration(self, contact_source: Callable[[str, str], ContactSource]) -> None:
        """Begin registering (once the registrar's address is known, for the Contact)."""
        if not self.has_registration or self._starting:
            return
        if self._retry_start is not None:
            self._retry_start.cancel()
            self._retry_start = None
        if self.registration is not None:
            self.registration.refresh(self.endpoint.loop.time())
            self._pump_reg()
            return
        registrar = parse_uri(self.config.reg_uri)
        first_hop = (
            parse_uri(self.config.proxy[0].strip().strip("<>"))
            if (self.config.proxy and self.config.reg_use_proxy & 2)
            else registrar
        )
        transport = (
            registrar.transport
            or first_hop.transport
            or ("tls" if registrar.scheme == "sips" else "udp")
        )
        host = first_hop.params.get("maddr") or first_hop.host
        if is_ip_literal(host):
            self._begin(contact_source, transport, host)
            return
        if self.endpoint.resolver is None:
            # no resolver: never look a name up in the loop; the default route decides
            self._begin(contact_source, transport, "192.0.2.1")
            return
        self._starting = True

        def resolved(result: object) -> None:
            self._starting = False
            # An unresolvable registrar name still gets a REGISTER (whose failure
            # retries on schedule); the default-route address goes in the Contact.
            remote = str(result[0]) if isinstance(result, list) and result else "192.0.2.1"
            self._begin(contact_source, transport, remote)

        self.endpoint.resolver.resolve_host(host, resolved)

    def _begin(
        self, contact_source: Callable[[str, str], ContactSource], transport: str, remote: str
    ) -> None:
        """Create the registration once we know our address towards the registrar."""
        try:
            source = contact_source(transport, remote)
        except ValueError as exc:
            # No route yet (a door station booting before its network is up) or no
            # transport: say so once, then try again on the retry schedule and on
            # every network change.
            if not self._waiting:
                self._waiting = True
                log.warning("account %d cannot register yet: %s", self.slot, exc)
                self.emit(
                    RegStateChanged(
                        self.slot,
                        "unregistered",
                        False,
                        503,
                        str(exc),
                        None,
                        "waiting for a route to the registrar",
                    )
                )
            delay = self.config.reg_first_retry_interval or self.config.reg_retry_interval or 30
            self._retry_start = self.endpoint.loop.call_later(
                min(delay, 30), lambda: self.start_registration(contact_source)
            )
            return
        self._waiting = False
        self._create_registration(source)

    def _create_registration(self, source: ContactSource) -> None:
        cfg = self.config
        user = self.uri.user
        scheme = "sips" if source.transport == "tls" and self.uri.scheme == "sips" else "sip"
        contact = URI(
            scheme=scheme,
            user=user,
            host=source.host,
            port=source.port,
            params={} if source.transport == "udp" else {"transport": source.transport},
        )
        reg_cfg = RegistrationConfig(
            id=cfg.id,
            reg_uri=cfg.reg_uri,
            contact=str(contact),
            contact_params=cfg.contact_params,
            contact_uri_params=cfg.contact_uri_params,
            reg_timeout=cfg.reg_timeout,
            reg_retry_interval=cfg.reg_retry_interval,
            reg_first_retry_interval=cfg.reg_first_retry_interval,
            reg_delay_before_refresh=cfg.reg_delay_before_refresh,
            unreg_timeout=cfg.unreg_timeout,
            proxy=tuple(cfg.proxy) if cfg.reg_use_proxy & 2 else (),
            allow_contact_rewrite=cfg.allow_contact_rewrite,
            user_agent=self.user_agent,
            allow=("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "MESSAGE", "SUBSCRIBE", "NOTIFY"),
        )
        self.registration = Registration(reg_cfg, self.ids, self.rng, self.authenticator)
        self.reg_driver = MachineDriver(
            self.endpoint, self.registration, self._on_reg_event, self._on_reg_failure
        )
        self.reg_driver.on_destination = self._remember_destination
        self.registration.start(self.endpoint.loop.time())
        self.reg_driver.pump()

    def _remember_destination(self, dest: Destination) -> None:
        self.reg_destination = dest

    def _on_reg_failure(self, request: Request, failure: RequestFailure, now: float) -> None:
        assert self.registration is not None
        reason = RegFailure.TIMEOUT if failure.status == 408 else RegFailure.TRANSPORT_ERROR
        self.registration.request_failed(request, reason, now, failure.reason)

    def _on_reg_event(self, event: RegistrationEvent) -> None:
        if not isinstance(event, RegistrationStateChanged):
            log.info("account %d: %s", self.slot, event.note)
            return
        if event.note:
            log.info(
                "account %d registration: %s -> %s (%d %s) %s",
                self.slot,
                event.old.value,
                event.new.value,
                event.status_code,
                event.status_text,
                event.note,
            )
        changed = RegStateChanged(
            self.slot,
            event.new.value,
            event.is_registered,
            event.status_code,
            event.status_text,
            event.expires,
            event.note,
        )
        self.last_reg_event = changed
        if event.is_registered:
            self._start_keepalive()
        else:
            self._stop_keepalive()
        self.emit(changed)

    def _pump_reg(self) -> None:
        if self.reg_driver is not None:
            self.reg_driver.pump()

    def refresh_registration(self) -> None:
        """Re-REGISTER now (after a dropped TCP flow, or asked by the application)."""
        if self.registration is None:
            return
        if self.registration.state.value in ("unregistered",):
            self.registration.start(self.endpoint.loop.time())
        else:
            self.registration.refresh(self.endpoint.loop.time())
        self._pump_reg()

    def change_contact(self, source: ContactSource) -> None:
        """The local address changed: bind the new Contact, drop the old binding."""
        if self.registration is None:
            return
        old = self.registration.contact
        if (old.host, old.port) == (source.host, source.port):
            self.refresh_registration()
            return
        new = old.replace(host=source.host, port=source.port)
        self.registration.set_contact(new, self.endpoint.loop.time())
        self._pump_reg()

    def unregister(self) -> None:
        """Remove our binding (bounded by ``unreg_timeout``)."""
        self._stop_keepalive()
        if self.registration is not None and self.registration.state.value != "unregistered":
            self.registration.stop(self.endpoint.loop.time())
            self._pump_reg()

    @property
    def unregistered(self) -> bool:
        """True when no binding is held or being removed."""
        return self.registration is None or self.registration.state.value == "unregistered"

    def close(self) -> None:
        """Stop every timer (after :meth:`unregister` has finished or timed out)."""
        self._stop_keepalive()
        if self._retry_start is not None:
            self._retry_start.cancel()
            self._retry_start = None
        if self.reg_driver is not None:
            self.reg_driver.close()
        if self.pub_driver is not None:
            self.pub_driver.close()

    # -- keep-alives (RFC 5626 4.4.1 for streams; a datagram for UDP NAT bindings) ---------

    def _start_keepalive(self) -> None:
        if self.config.ka_interval <= 0 or self._ka_timer is not None:
            return
        self._ka_timer = self.endpoint.loop.call_later(self.config.ka_interval, self._keepalive)

    def _stop_keepalive(self) -> None:
        if self._ka_timer is not None:
            self._ka_timer.cancel()
            self._ka_timer = None

    def _keepalive(self) -> None:
        self._ka_timer = None
        dest = self.reg_destination
        if dest is not None:
            data = self.config.ka_data if dest.transport == "udp" else b"\r\n\r\n"
            try:
                self.endpoint.transports.send_raw(data, dest)
            except Exception as exc:  # a failed keep-alive shows as a failed refresh later
                log.info(
                    "account %d keep-alive to %s:%d failed: %s",
                    self.slot,
                    dest.host,
                    dest.port,
                    exc,
                )
        self._start_keepalive()

    # -- requests outside dialogs -----------------------------------------------------------

    def send_authenticated(
        self,
        request: Request,
        on_final: Callable[[Response | RequestFailure], None],
        challenges_left: int = 2,
    ) -> None:
        """Send ``request``; answer up to ``challenges_left`` 401/407s with our credentials."""
        self.authenticator.authorize(request)

        def on_response(response: Response) -> None:
            if response.status < 200:
                return
            if response.status in (401, 407) and challenges_left > 0:
                try:
                    self.authenticator.handle_challenge(request, response)
                except AuthenticationError as exc:
                    log.warning(
                        "account %d: %s %s: %s", self.slot, request.method, request.uri, exc
                    )
                    on_final(response)
                    return
                retry = request.copy()
                cseq = request.cseq
                retry.headers.set("CSeq", f"{cseq.seq + 1} {cseq.method}")
                self.send_authenticated(retry, on_final, challenges_left - 1)
                return
            on_final(response)

        self.endpoint.send_request(request, on_response, on_final)

    def set_status(self, online: bool, rpid: RpidElement) -> None:
        """Remember the presence status and PUBLISH it when ``publish_enabled``."""
        self.online = online
        self.rpid = rpid
        if self.publisher is not None:
            self.publisher.publish(self._pidf(), self.endpoint.loop.time())
            self._pump_pub()

    @property
    def presence(self) -> PresenceStatus:
        """The status in the form the PIDF builder and the notifier take."""
        from .pidf import PresenceStatus

        r = self.rpid
        return PresenceStatus(self.online, r.note, r.activity, r.id or None)

    def _pidf(self) -> bytes:
        from .pidf import build_status

        return build_status(str(self.uri), self.presence, self._tuple_id)

    # -- publication (RFC 3903) -----------------------------------------------------------

    def start_publish(self) -> None:
        """PUBLISH the current status to the account's presence server."""
        if not self.config.publish_enabled or self.local or self.publisher is not None:
            return
        from .account_config import PUBLISH_EXPIRATION
        from .publisher import Publisher, PublisherConfig

        cfg = PublisherConfig(
            aor=self.config.id,
            proxy=tuple(self.config.proxy),
            expires=PUBLISH_EXPIRATION,
            user_agent=self.user_agent,
            retry_interval=float(self.config.reg_retry_interval or 300),
        )
        self.publisher = Publisher(cfg, self.ids, self.rng, self.authenticator)
        publisher = self.publisher

        def on_failure(request: Request, failure: RequestFailure, now: float) -> None:
            publisher.request_failed(request, failure.reason, now)

        self.pub_driver = MachineDriver(self.endpoint, publisher, self._on_pub_event, on_failure)
        publisher.publish(self._pidf(), self.endpoint.loop.time())
        self._pump_pub()

    def stop_publish(self) -> None:
        """Remove our publication (RFC 3903 4.4: Expires 0)."""
        if self.publisher is not None and self.publisher.etag is not None:
            self.publisher.unpublish(self.endpoint.loop.time())
            self._pump_pub()

    def _pump_pub(self) -> None:
        if self.pub_driver is not None:
            self.pub_driver.pump()

    def _on_pub_event(self, event: PublisherEvent) -> None:
        from .publisher import Published, PublishFailed

        if isinstance(event, Published):
            log.debug("account %d: presence published (%s s)", self.slot, event.expires)
        elif isinstance(event, PublishFailed):
            log.warning("account %d: PUBLISH failed: %d %s", self.slot, event.code, event.reason)
