"""The user agent: transports, a fixed table of account slots, presence and messages.

The API follows PJSUA's account API (``pjsua_acc_*``) without the prefix:
static slots (ids are slot indexes, a deleted slot is reused), one default
account, local (userless) accounts bound to a transport, registration kept
alive by the stack, presence notified and published, MESSAGE both ways and
PJSUA's account matching. Errors raise (``ValueError`` for a bad id or
configuration, ``LookupError`` when the table is full) instead of returning
status codes.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from .account import Account, ContactSource
from .account_config import (
    INVALID_ID,
    MAX_ACC,
    AccountConfig,
    AccountInfo,
    RpidElement,
)
from .account_events import (
    IncomingMessage,
    IncomingSubscribe,
    MessageStatus,
    SubscriptionEnded,
    UaEvent,
)
from .account_match import AccountView, find_for_incoming, find_for_outgoing
from .driver import MachineDriver
from .endpoint import Endpoint, IncomingRequest, RequestFailure
from .headers import NameAddr
from .ids import IdGenerator
from .loop import Loop
from .message import Request, Response, make_response
from .timers import TimerConfig
from .transport_base import is_ip_literal
from .uas_policy import UasPolicy
from .uri import URI, parse_uri

if TYPE_CHECKING:
    import ssl  # loaded only with TLS: it maps OpenSSL (~4 MiB resident)

    # presence (RFC 3856) is imported by the first SUBSCRIBE or status change:
    # start-up CPU the first REGISTER does not need (issue 6)
    from .presence_notifier import NotifierEvent
    from .resolver import Resolver

__all__ = ["UserAgent", "DEFAULT_USER_AGENT"]

log = logging.getLogger(__name__)

DEFAULT_USER_AGENT = "intercom-firmware/0.1"


class UserAgent:
    """A SIP user agent with PJSUA-style accounts on one :class:`Loop`.

    ``on_event`` receives :mod:`sipstack.account_events` events (registration
    state, incoming subscription and message, message delivery status).
    ``rng`` drives retry jitter; ``ids`` tags, branches and Call-IDs; both are
    injectable so tests are repeatable.
    """

    def __init__(
        self,
        loop: Loop,
        *,
        on_event: Callable[[UaEvent], None] | None = None,
        resolver: Resolver | None = None,
        timers: TimerConfig | None = None,
        ids: IdGenerator | None = None,
        rng: random.Random | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        policy: UasPolicy | None = None,
    ) -> None:
        self.loop = loop
        self.ids = ids if ids is not None else IdGenerator()
        self.rng = rng if rng is not None else random.Random()
        self.user_agent = user_agent
        self.policy = policy if policy is not None else UasPolicy()
        self.on_event = on_event
        self.endpoint = Endpoint(
            loop,
            on_request=self._on_request,
            resolver=resolver,
            timers=timers,
            ids=self.ids,
            on_connection_closed=self._on_connection_closed,
        )
        self._slots: list[Account | None] = [None] * MAX_ACC
        self._notifiers: dict[int, MachineDriver[NotifierEvent]] = {}
        self._retiring: list[Account] = []
        self._default = INVALID_ID
        #: handlers asked first for every request that passed the RFC 3261 8.2
        #: checks (the call layer claims INVITE, in-dialog requests, CANCEL); a
        #: handler returns True when it took the request
        self._request_handlers: list[Callable[[int, IncomingRequest], bool]] = []
        self._network_handlers: list[Callable[[], None]] = []
        self._request_filters: list[Callable[[IncomingRequest], Response | None]] = []

    # -- transports (pjsua_transport_*) ---------------------------------------------------

    def transport_create(
        self,
        type: str,
        host: str = "0.0.0.0",
        port: int = 5060,
        *,
        tls_client: ssl.SSLContext | None = None,
        tls_server: ssl.SSLContext | None = None,
    ) -> int:
        """Create a UDP, TCP or TLS transport; returns its id. Port 0 picks a free one."""
        tm = self.endpoint.transports
        kind = type.lower()
        if kind == "udp":
            return tm.add_udp(host, port)
        if kind == "tcp":
            return tm.add_tcp(host, port)
        if kind == "tls":
            if tls_client is None:
                raise ValueError("a TLS transport needs a client SSL context")
            return tm.add_tls(host, port, client_context=tls_client, server_context=tls_server)
        raise ValueError(f"unknown transport type {type!r} (udp, tcp or tls)")

    # -- the slot table ---------------------------------------------------------------------

    def acc_get_count(self) -> int:
        """Number of accounts in use."""
        return sum(1 for a in self._slots if a is not None)

    def acc_is_valid(self, acc_id: int) -> bool:
        """True when ``acc_id`` names an account in use."""
        return 0 <= acc_id < MAX_ACC and self._slots[acc_id] is not None

    def _acc(self, acc_id: int) -> Account:
        if not 0 <= acc_id < MAX_ACC:
            raise ValueError(f"account id {acc_id} out of range 0..{MAX_ACC - 1}")
        acc = self._slots[acc_id]
        if acc is None:
            raise ValueError(f"no account with id {acc_id}")
        return acc

    def acc_get_account(self, acc_id: int) -> Account:
        """The live account object (its authenticator, registration state...)."""
        return self._acc(acc_id)

    def acc_set_default(self, acc_id: int) -> None:
        """Make ``acc_id`` the default account (used when matching finds nothing)."""
        self._acc(acc_id)
        self._default = acc_id

    def acc_get_default(self) -> int:
        """The default account id, or ``INVALID_ID`` when there is no account."""
        return self._default

    def enum_accs(self) -> list[int]:
        """Ids of the accounts in use, in slot order."""
        return [i for i, a in enumerate(self._slots) if a is not None]

    def acc_enum_info(self) -> list[AccountInfo]:
        """:meth:`acc_get_info` of every account."""
        return [self.acc_get_info(i) for i in self.enum_accs()]

    def _free_slot(self) -> int:
        for i, a in enumerate(self._slots):
            if a is None:
                return i
        raise LookupError(f"all {MAX_ACC} account slots are in use; delete one first")

    def acc_add(self, cfg: AccountConfig, is_default: bool = False) -> int:
        """Add an account; it starts registering at once when it has a ``reg_uri``."""
        slot = self._free_slot()
        if cfg.transport_id != INVALID_ID:
            self.endpoint.transports.info(cfg.transport_id)  # raises on a bad id
        acc = Account(
            slot,
            cfg.dup(),
            self.endpoint,
            self.ids,
            self.rng,
            self._emit,
            user_agent=self.user_agent,
        )
        self._install(acc, is_default)
        self._start(acc)
        return slot

    def _start(self, acc: Account) -> None:
        if acc.has_registration and acc.config.register_on_acc_add:
            acc.start_registration(self._contact_source_for(acc))
        acc.start_publish()

    def acc_add_local(self, transport_id: int, is_default: bool = False) -> int:
        """Add a userless account for a transport (``sip:ADDRESS:PORT``), no registration."""
        info = self.endpoint.transports.info(transport_id)
        if info.local_port == 0:
            raise ValueError(
                f"transport {transport_id} ({info.type}) does not listen: a local account on it"
                " could not be called (give the TLS transport a server context)"
            )
        host = info.local_host
        if host in ("0.0.0.0", "::"):
            host = self.endpoint.transports.local_address(
                transport_id, "192.0.2.1" if ":" not in host else "2001:db8::1"
            ) or ("127.0.0.1" if ":" not in host else "::1")  # no network yet: loopback
        params = "" if info.type == "udp" else f";transport={info.type}"
        hostport = f"[{host}]" if ":" in host else host
        cfg = AccountConfig(
            id=f"<sip:{hostport}:{info.local_port}{params}>", transport_id=transport_id, priority=-1
        )
        slot = self._free_slot()
        acc = Account(
            slot,
            cfg,
            self.endpoint,
            self.ids,
            self.rng,
            self._emit,
            local=True,
            user_agent=self.user_agent,
        )
        self._install(acc, is_default)
        return slot

    def _install(self, acc: Account, is_default: bool) -> None:
        self._slots[acc.slot] = acc
        if is_default or self._default == INVALID_ID:
            self._default = acc.slot

    def _notifier(self, acc_id: int) -> MachineDriver[NotifierEvent] | None:
        """The presence notifier of account ``acc_id`` (None: no such account),
        made on first use: most devices are never subscribed to."""
        driver = self._notifiers.get(acc_id)
        acc = self._slots[acc_id] if 0 <= acc_id < len(self._slots) else None
        if driver is not None or acc is None:
            return driver
        from .presence_notifier import PresenceNotifier

        try:
            contact = self.acc_create_uac_contact(acc.slot, str(acc.uri))
        except ValueError:
            # no route anywhere yet (booting): a placeholder until the network is up;
            # NOTIFYs only go out after a SUBSCRIBE reached us, i.e. with a network
            contact = f"<sip:{acc.uri.user + '@' if acc.uri.user else ''}invalid>"
        notifier = PresenceNotifier(
            acc.uri,
            NameAddr.parse(contact).uri,
            self.ids,
            authenticator=acc.authenticator,
            user_agent=self.user_agent,
            status=acc.presence,
        )
        slot = acc.slot

        def on_event(event: NotifierEvent) -> None:
            self._on_notifier_event(slot, event)

        def on_failure(request: Request, failure: RequestFailure, now: float) -> None:
            notifier.request_failed(request, failure.reason, now)

        driver = MachineDriver(self.endpoint, notifier, on_event, on_failure)
        self._notifiers[slot] = driver
        return driver

    def acc_del(self, acc_id: int) -> None:
        """Delete an account: unregister it, end its subscriptions, free its slot now."""
        acc = self._acc(acc_id)
        driver = self._notifiers.pop(acc_id, None)
        if driver is not None:
            from .presence_notifier import PresenceNotifier

            notifier = driver.machine
            assert isinstance(notifier, PresenceNotifier)
            notifier.terminate_all(self.loop.time(), "noresource")
            driver.pump()
        acc.stop_publish()
        acc.unregister()
        self._retiring.append(acc)
        self.loop.call_later(
            max(acc.config.unreg_timeout, 1.0) + 1.0, lambda: self._retire(acc, driver)
        )
        self._slots[acc_id] = None
        if self._default == acc_id:
            remaining = self.enum_accs()
            self._default = remaining[0] if remaining else INVALID_ID

    def _retire(self, acc: Account, driver: MachineDriver[NotifierEvent] | None) -> None:
        acc.close()
        if driver is not None:
            driver.close()
        if acc in self._retiring:
            self._retiring.remove(acc)

    def acc_modify(self, acc_id: int, cfg: AccountConfig) -> None:
        """Replace an account's configuration; the old binding is removed, the new one made."""
        old = self._acc(acc_id)
        if old.local:
            raise ValueError("a local account cannot be modified; delete and re-add it")
        was_default = self._default == acc_id
        self.acc_del(acc_id)
        acc = Account(
            acc_id,
            cfg.dup(),
            self.endpoint,
            self.ids,
            self.rng,
            self._emit,
            user_agent=self.user_agent,
        )
        acc.online, acc.rpid = old.online, old.rpid
        self._install(acc, was_default)
        self._start(acc)

    def acc_set_transport(self, acc_id: int, transport_id: int) -> None:
        """Bind an account to one transport (used for matching and its Contact)."""
        acc = self._acc(acc_id)
        self.endpoint.transports.info(transport_id)
        acc.config.transport_id = transport_id

    def acc_get_info(self, acc_id: int) -> AccountInfo:
        """The ``pjsua_acc_info`` of an account."""
        acc = self._acc(acc_id)
        reg = acc.registration
        expires, status, text = -1, 0, ""
        if reg is not None:
            remaining = reg.expires_remaining(self.loop.time())
            expires = remaining if remaining is not None and reg.is_registered else -1
            status, text = reg.status_code, reg.status_text
        online_text = acc.rpid.note or ("Online" if acc.online else "Offline")
        return AccountInfo(
            id=acc_id,
            uri=acc.config.id,
            is_default=self._default == acc_id,
            has_registration=acc.has_registration,
            expires=expires,
            status=status,
            status_text=text,
            online_status=acc.online,
            online_status_text=online_text,
            rpid=acc.rpid,
        )

    # -- registration -----------------------------------------------------------------------

    def acc_set_registration(self, acc_id: int, renew: bool) -> None:
        """Register again now (``renew``) or unregister."""
        acc = self._acc(acc_id)
        if not acc.has_registration:
            raise ValueError(f"account {acc_id} has no registrar (reg_uri)")
        if renew:
            if acc.registration is None:
                acc.start_registration(self._contact_source_for(acc))
            else:
                acc.refresh_registration()
        else:
            acc.unregister()

    def _contact_source_for(self, acc: Account) -> Callable[[str, str], ContactSource]:
        def source(transport: str, remote_host: str) -> ContactSource:
            return self._contact_source(acc, transport, remote_host)

        return source

    def _contact_source(self, acc: Account, transport: str, remote_host: str) -> ContactSource:
        tm = self.endpoint.transports
        tid = acc.config.transport_id
        if tid == INVALID_ID:
            family_v6 = ":" in remote_host
            found = tm.find(transport)
            for info in tm.enum():
                if info.type == transport and (":" in info.local_host) == family_v6:
                    found = info.id
                    break
            if found is None:
                raise ValueError(f"account {acc.slot}: no {transport.upper()} transport")
            tid = found
        info = tm.info(tid)
        host = tm.local_address(tid, remote_host)
        if host is None:
            raise ValueError(f"account {acc.slot}: no route to {remote_host}")
        return ContactSource(tid, info.type, host, info.local_port)

    def handle_network_change(self) -> None:
        """The local address or link changed: re-register every account from the new address.

        The hardware layer's network watcher calls this; it must be cheap and
        idempotent (a burst of netlink events may call it several times).
        """
        self.endpoint.transports.forget_routes()
        for acc in self._slots:
            if acc is None or not acc.has_registration:
                continue
            if acc.registration is None:
                # it was waiting for a route to its registrar: try now
                acc.start_registration(self._contact_source_for(acc))
                continue
            dest = acc.reg_destination
            remote = dest.host if dest is not None else acc.registration.contact.host
            try:
                source = self._contact_source(
                    acc, acc.registration.contact.params.get("transport") or "udp", remote
                )
            except ValueError as exc:
                # No route to the registrar (link down, address gone): refresh now
                # so that the failure shows at once instead of the account claiming
                # a registration nobody can reach; the next change retries.
                log.warning("%s", exc)
                acc.refresh_registration()
                continue
            acc.change_contact(source)
        # then the layers above (calls re-INVITE from the new address), which
        # build their Contacts from the registrations just updated
        for handler in list(self._network_handlers):
            handler()

    def add_network_change_handler(self, handler: Callable[[], None]) -> None:
        """Run ``handler()`` after each :meth:`handle_network_change` has moved
        the registrations (the call layer re-INVITEs its calls there)."""
        self._network_handlers.append(handler)

    def _on_connection_closed(self, transport: str, host: str, port: int) -> None:
        for acc in self._slots:
            dest = acc.reg_destination if acc is not None else None
            if acc is None or dest is None:
                continue
            if (dest.transport, dest.host, dest.port) == (transport, host, port):
                log.info(
                    "account %d: %s flow to %s:%d closed, registering again",
                    acc.slot,
                    transport.upper(),
                    host,
                    port,
                )
                acc.refresh_registration()

    # -- presence ---------------------------------------------------------------------------

    def acc_set_online_status(self, acc_id: int, is_online: bool) -> None:
        """Set the basic presence status and notify subscribers (and PUBLISH)."""
        self.acc_set_online_status2(acc_id, is_online, self._acc(acc_id).rpid)

    def acc_set_online_status2(self, acc_id: int, is_online: bool, rpid: RpidElement) -> None:
        """Set presence with an RPID element (activity, note, id) and notify everyone."""
        acc = self._acc(acc_id)
        acc.set_status(is_online, rpid)
        driver = self._notifiers.get(acc_id)
        if driver is None:
            return  # nobody subscribed yet: a notifier made later starts from acc.presence
        from .pidf import PresenceStatus
        from .presence_notifier import PresenceNotifier

        notifier = driver.machine
        assert isinstance(notifier, PresenceNotifier)
        notifier.set_status(
            PresenceStatus(is_online, rpid.note, rpid.activity, rpid.id or None), self.loop.time()
        )
        driver.pump()

    def _on_notifier_event(self, acc_id: int, event: NotifierEvent) -> None:
        from .presence_notifier import SubscriptionAdded, SubscriptionTerminated

        if isinstance(event, SubscriptionAdded):
            self._emit(IncomingSubscribe(acc_id, str(event.subscriber)))
        elif isinstance(event, SubscriptionTerminated):
            self._emit(SubscriptionEnded(acc_id, str(event.subscriber), event.reason))

    # -- requests and contacts ------------------------------------------------------------

    def acc_find_for_outgoing(self, url: str | URI) -> int:
        """The account to use to reach ``url`` (see :func:`find_for_outgoing`)."""
        uri = parse_uri(url) if isinstance(url, str) else url
        return find_for_outgoing(self._views(), uri, self._default)

    def acc_find_for_incoming(self, request: Request, transport: str = "udp") -> int:
        """The account a request is for (see :func:`find_for_incoming`)."""
        try:
            to_uri: URI | None = request.to.uri
        except Exception:
            to_uri = None
        return find_for_incoming(self._views(), to_uri, request.uri, transport, self._default)

    def _views(self) -> list[AccountView]:
        tm = self.endpoint.transports
        views = []
        for acc in self._slots:
            if acc is None:
                continue
            tid = acc.config.transport_id
            views.append(
                AccountView(
                    acc.slot,
                    acc.config.priority,
                    acc.uri.host,
                    acc.uri.port or 0,
                    acc.uri.user,
                    bool(acc.config.proxy),
                    tm.info(tid).type if tid != INVALID_ID else None,
                )
            )
        return views

    def acc_create_uac_contact(self, acc_id: int, uri: str | URI) -> str:
        """The Contact for a request from ``acc_id`` to ``uri`` (address seen by that target)."""
        acc = self._acc(acc_id)
        target = parse_uri(uri) if isinstance(uri, str) else uri
        if acc.registration is not None:
            return f"<{acc.registration.contact}>"
        transport = target.transport or ("tls" if target.scheme == "sips" else "udp")
        host = target.host if target.host else "127.0.0.1"
        source = self._contact_source(
            acc,
            transport if self.endpoint.transports.find(transport) is not None else "udp",
            host if is_ip_literal(host) else "192.0.2.1",
        )
        hostport = f"[{source.host}]" if ":" in source.host else source.host
        user = f"{acc.uri.user}@" if acc.uri.user else ""
        params = "" if source.transport == "udp" else f";transport={source.transport}"
        return f"<sip:{user}{hostport}:{source.port}{params}>"

    def acc_create_uas_contact(self, acc_id: int, request: Request) -> str:
        """The Contact for our answer to ``request`` (reachable by its sender)."""
        try:
            target = request.contacts[0].uri if request.contacts else request.from_.uri
        except Exception:
            target = request.from_.uri
        return self.acc_create_uac_contact(acc_id, target)

    def acc_create_request(self, acc_id: int, method: str, target: str | URI) -> Request:
        """A new out-of-dialog request from an account (From, To, Call-ID, CSeq, Route...)."""
        acc = self._acc(acc_id)
        target_uri = parse_uri(target) if isinstance(target, str) else target
        from_ = NameAddr(acc.uri, acc.address.display_name, {"tag": self.ids.tag()})
        req = Request(method.upper(), target_uri)
        h = req.headers
        for route in acc.route_set:
            h.add("Route", route)
        h.add("Max-Forwards", "70")
        h.add("From", str(from_))
        h.add("To", f"<{target_uri}>")
        h.add("Call-ID", self.ids.call_id())
        h.add("CSeq", f"1 {method.upper()}")
        if method.upper() in ("INVITE", "SUBSCRIBE", "REFER", "OPTIONS"):
            h.add("Contact", self.acc_create_uac_contact(acc_id, target_uri))
        if self.user_agent:
            h.add("User-Agent", self.user_agent)
        return req

    # -- instant messages (RFC 3428) ------------------------------------------------------

    def im_send(
        self,
        acc_id: int,
        to: str,
        content: str | bytes,
        mime_type: str = "text/plain",
        token: object = None,
    ) -> None:
        """Send a MESSAGE; the outcome arrives as a :class:`MessageStatus` event."""
        acc = self._acc(acc_id)
        req = self.acc_create_request(acc_id, "MESSAGE", to)
        req.body = content.encode() if isinstance(content, str) else content
        req.headers.set("Content-Type", mime_type)

        def done(result: Response | RequestFailure) -> None:
            self._emit(MessageStatus(acc_id, to, result.status, result.reason or "", token))

        acc.send_authenticated(req, done)

    # -- incoming requests ------------------------------------------------------------------

    def _on_request(self, inc: IncomingRequest) -> None:
        request = inc.request
        for screen in self._request_filters:
            answer = screen(inc)
            if answer is not None:
                self._respond(inc, answer)  # e.g. 403 to a caller we do not know
                return
        rejection = self.policy.check(request)
        if rejection is not None:
            self._respond(inc, rejection)
            return
        method = request.method
        in_dialog = request.to.tag is not None
        acc_id = self.acc_find_for_incoming(request, inc.peer.transport)
        for handler in self._request_handlers:
            if handler(acc_id, inc):
                return
        if method == "OPTIONS" and not in_dialog:
            self._respond(inc, self.policy.options_response(request))
        elif method == "MESSAGE":
            self._on_message(inc, acc_id)
        elif method == "SUBSCRIBE":
            self._on_subscribe(inc, acc_id)
        elif method == "INVITE" and not in_dialog:
            self._respond(inc, make_response(request, 480, "No Call Handler"))
        else:
            # In-dialog requests for dialogs we do not have (BYE, NOTIFY, INFO...)
            self._respond(inc, make_response(request, 481))

    def _respond(self, inc: IncomingRequest, response: Response) -> None:
        if response.status >= 101 and response.to.tag is None:
            to = response.to
            to.params["tag"] = self.ids.tag()
            response.headers.set("To", str(to))
        self.endpoint.respond(inc, response)

    def _on_message(self, inc: IncomingRequest, acc_id: int) -> None:
        request = inc.request
        if acc_id == INVALID_ID:
            self._respond(inc, make_response(request, 404))
            return
        self._respond(inc, make_response(request, 200))
        self._emit(
            IncomingMessage(
                acc_id,
                str(request.from_.uri),
                str(request.to.uri),
                request.content_type or "text/plain",
                request.body,
            )
        )

    def _on_subscribe(self, inc: IncomingRequest, acc_id: int) -> None:
        from .presence_notifier import PresenceNotifier, check_subscribe

        request = inc.request
        bad = check_subscribe(request)
        if bad is not None:
            self._respond(inc, bad)  # RFC 6665 4.2.1: 489 for an unknown event package
            return
        driver = self._find_notifier(request, acc_id)
        if driver is None:
            self._respond(inc, make_response(request, 404))
            return
        notifier = driver.machine
        assert isinstance(notifier, PresenceNotifier)
        self.endpoint.respond(inc, notifier.receive_subscribe(request, self.loop.time()))
        driver.pump()

    def _find_notifier(self, request: Request, acc_id: int) -> MachineDriver[NotifierEvent] | None:
        from .presence_notifier import PresenceNotifier

        if request.to.tag is not None:
            # in-dialog refresh: the notifier that owns the dialog
            for driver in self._notifiers.values():
                notifier = driver.machine
                assert isinstance(notifier, PresenceNotifier)
                if any(s.id.call_id == request.call_id for s in notifier.subscriptions()):
                    return driver
        return self._notifier(acc_id)

    def add_request_handler(self, handler: Callable[[int, IncomingRequest], bool]) -> None:
        """Let a layer above (calls) claim requests before the defaults answer them.

        ``handler(acc_id, incoming)`` runs for each request that passed the
        RFC 3261 8.2 checks, with the account :meth:`acc_find_for_incoming`
        chose; it returns True when it took (and will answer) the request.
        """
        self._request_handlers.append(handler)

    def add_request_filter(self, screen: Callable[[IncomingRequest], Response | None]) -> None:
        """Screen every request before anything else looks at it.

        ``screen(incoming)`` returns None to let the request through, or the
        response to answer it with (the firmware's "only from our registrars
        and allowed peers" rule answers 403). To drop silently instead, set
        ``endpoint.admit``.
        """
        self._request_filters.append(screen)

    def respond(self, inc: IncomingRequest, response: Response) -> None:
        """Answer a request, adding a To tag to non-100 answers (RFC 3261 8.2.6.2)."""
        self._respond(inc, response)

    # -- events and life --------------------------------------------------------------------

    def _emit(self, event: UaEvent) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("event handler failed for %r", event)

    def shutdown(self, timeout: float | None = None) -> None:
        """Unregister every account (bounded by ``unreg_timeout``) and close transports."""
        accounts = [a for a in self._slots if a is not None]
        for acc in accounts:
            driver = self._notifiers.get(acc.slot)
            if driver is not None:
                from .presence_notifier import PresenceNotifier

                notifier = driver.machine
                assert isinstance(notifier, PresenceNotifier)
                notifier.terminate_all(self.loop.time(), "deactivated")
                driver.pump()
            acc.stop_publish()
            acc.unregister()
        limit = (
            timeout
            if timeout is not None
            else max([a.config.unreg_timeout for a in accounts] or [0.0])
        )
        everyone = accounts + self._retiring
        if limit > 0:
            self.loop.run_until(lambda: all(a.unregistered for a in everyone), limit)
        for acc in everyone:
            acc.close()
        for driver in self._notifiers.values():
            driver.close()
        self.endpoint.close()
