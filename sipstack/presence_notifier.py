"""Presence notifier: one account's SUBSCRIBE dialogs and their NOTIFYs, sans-IO.

RFC 6665 (SIP-specific event notification) with the presence package of
RFC 3856; bodies are PIDF/RPID from :mod:`sipstack.pidf`. The object is fed
SUBSCRIBE requests (:meth:`PresenceNotifier.receive_subscribe`, which returns the
response to send), NOTIFY outcomes (:meth:`~PresenceNotifier.receive_response`,
:meth:`~PresenceNotifier.request_failed`), status changes and timer ticks; it is
drained of NOTIFY requests (:meth:`~PresenceNotifier.requests_to_send`, which
the glue gives a Via and a client transaction) and of events
(:meth:`~PresenceNotifier.next_event`). It never reads the clock.

The glue must send the SUBSCRIBE response before the NOTIFYs that the same
call queued, so the subscriber sees its dialog confirmed first.

Each subscription is its own dialog (no dialog sharing, which RFC 6665 section
4.5.3 discourages). At most one NOTIFY per subscription is in flight: a newer
state waits for the previous NOTIFY's response and then only the latest state
is sent, so a subscriber never sees an old state arrive last (RFC 3261
12.2.2 would make it reject a lower CSeq anyway).
"""

from __future__ import annotations

import enum
import math
from collections import deque

from sipstack.digest import AuthenticationError, DigestAuthenticator
from sipstack.errors import SipParseError
from sipstack.headers import NameAddr
from sipstack.ids import IdGenerator
from sipstack.message import Request, Response, make_response
from sipstack.pidf import CONTENT_TYPE, PresenceStatus, build_status
from sipstack.records import dataclass
from sipstack.uri import URI, parse_uri

__all__ = [
    "EVENT_PACKAGE",
    "NotifierEvent",
    "NotifyFailed",
    "PresenceNotifier",
    "SubscriptionAdded",
    "SubscriptionId",
    "SubscriptionInfo",
    "SubscriptionRefreshed",
    "SubscriptionState",
    "SubscriptionTerminated",
    "check_subscribe",
]

EVENT_PACKAGE = "presence"  # RFC 3856 section 6.2


class SubscriptionState(enum.Enum):
    """Life of one subscription (RFC 6665 section 4.1.3 states; we never hold one pending).

    ACTIVE -> TERMINATED when it expires, is unsubscribed or the account goes;
    the final NOTIFY is then sent and the subscription forgotten. A failed
    NOTIFY drops it at once (RFC 6665 section 4.2.2).
    """

    ACTIVE = "active"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class SubscriptionId:
    """The dialog id (RFC 3261 12) plus the Event ``id`` parameter (RFC 6665 4.1.2)."""

    call_id: str
    local_tag: str
    remote_tag: str
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class SubscriptionAdded:
    """A watcher subscribed; ``expires`` is what we granted, in seconds."""

    id: SubscriptionId
    subscriber: URI
    expires: int


@dataclass(frozen=True, slots=True)
class SubscriptionRefreshed:
    """A watcher refreshed its subscription for ``expires`` more seconds."""

    id: SubscriptionId
    subscriber: URI
    expires: int


@dataclass(frozen=True, slots=True)
class SubscriptionTerminated:
    """A subscription ended; ``reason`` is the RFC 6665 4.1.3 reason or ``notify-failed``."""

    id: SubscriptionId
    subscriber: URI
    reason: str


@dataclass(frozen=True, slots=True)
class NotifyFailed:
    """A NOTIFY got an error ``status``, or none at all (408: timeout or transport, as PJSIP)."""

    id: SubscriptionId
    subscriber: URI
    status: int
    reason: str


NotifierEvent = SubscriptionAdded | SubscriptionRefreshed | SubscriptionTerminated | NotifyFailed


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """A snapshot of one subscription, for diagnostics."""

    id: SubscriptionId
    subscriber: URI
    remote_target: URI
    state: SubscriptionState
    expires_at: float
    notify_pending: bool


@dataclass(slots=True)
class _Subscription:
    id: SubscriptionId
    local: NameAddr  # our side of the dialog, with our tag (the SUBSCRIBE's To)
    remote: NameAddr  # the watcher, with its tag (the SUBSCRIBE's From)
    remote_target: URI
    route_set: list[NameAddr]
    event: str  # the Event value we put in NOTIFYs
    remote_cseq: int
    expires_at: float
    local_cseq: int = 0
    state: SubscriptionState = SubscriptionState.ACTIVE
    reason: str | None = None  # why it terminated
    dirty: bool = True  # the watcher has not been told the current state yet
    in_flight: Request | None = None
    deadline: float = math.inf  # guard on the in-flight NOTIFY
    retry_at: float | None = None  # after a Retry-After
    auth_tries: int = 0

    def info(self) -> SubscriptionInfo:
        return SubscriptionInfo(
            self.id,
            self.remote.uri,
            self.remote_target,
            self.state,
            self.expires_at,
            self.in_flight is not None,
        )


def _event_parts(value: str) -> tuple[str, str | None]:
    """``presence;id=7`` -> (``presence``, ``7``). Package names compare case-insensitively."""
    package, _, rest = value.partition(";")
    event_id = None
    for param in rest.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "id":
            event_id = val.strip()
    return package.strip().lower(), event_id


def check_subscribe(request: Request) -> Response | None:
    """The rejection for a SUBSCRIBE this package cannot take, or None if it is ours.

    400 without an Event header (RFC 6665 section 7.2.1 makes it mandatory);
    489 Bad Event with ``Allow-Events: presence`` for any other package,
    ``presence.winfo`` included (RFC 6665 section 4.2.1.1).
    """
    if request.method != "SUBSCRIBE":
        raise ValueError(f"check_subscribe needs a SUBSCRIBE, not {request.method}")
    event = request.event
    if event is None or not event.strip():
        return make_response(request, 400, "Missing Event Header")
    if _event_parts(event)[0] != EVENT_PACKAGE:
        response = make_response(request, 489)
        response.headers.add("Allow-Events", EVENT_PACKAGE)
        return response
    return None


def _accepts_pidf(request: Request) -> bool:
    """RFC 3856 section 6.7: no Accept means PIDF; otherwise PIDF must be listed."""
    if "Accept" not in request.headers:
        return True
    for item in request.headers.get_all("Accept"):
        media = item.partition(";")[0].strip().lower()
        if media in (CONTENT_TYPE, "application/*", "*/*"):
            return True
    return False


def _as_uri(value: URI | str) -> URI:
    return value if isinstance(value, URI) else parse_uri(value)


class PresenceNotifier:
    """The notifier side of presence for one account (RFC 6665 4.2, RFC 3856).

    ``account_uri`` is the presentity (the PIDF entity); ``contact_uri`` goes
    in our 200 responses and NOTIFYs. Granted expiries are clamped to
    ``max_expires``; a request below ``min_expires`` gets 423; no Expires means
    ``default_expires``. ``authenticator`` answers 401/407 challenges to NOTIFY;
    without one such a subscription is dropped. ``max_subscriptions`` bounds
    the memory a flood of SUBSCRIBEs can take (beyond it: 503).
    ``response_guard`` is how long a NOTIFY may stay unanswered before we treat
    it as timed out ourselves (longer than Timer F, 32 s).
    """

    def __init__(
        self,
        account_uri: URI | str,
        contact_uri: URI | str,
        ids: IdGenerator,
        max_expires: int = 3600,
        min_expires: int = 60,
        default_expires: int = 600,
        *,
        status: PresenceStatus | None = None,
        authenticator: DigestAuthenticator | None = None,
        user_agent: str = "",
        max_subscriptions: int = 64,
        response_guard: float = 64.0,
        max_retry_after: int = 3600,
        tuple_id: str | None = None,
    ) -> None:
        if not 0 < min_expires <= default_expires <= max_expires:
            raise ValueError(
                "PresenceNotifier needs 0 < min_expires <= default_expires <= max_expires, "
                f"got {min_expires}, {default_expires}, {max_expires}"
            )
        self.account_uri = _as_uri(account_uri)
        self.contact_uri = _as_uri(contact_uri)
        self._ids = ids
        self.max_expires = max_expires
        self.min_expires = min_expires
        self.default_expires = default_expires
        self._authenticator = authenticator
        self._user_agent = user_agent
        self._max_subscriptions = max_subscriptions
        self._response_guard = response_guard
        self._max_retry_after = max_retry_after
        # PJSUA's default online status is "online"; tuple ids stay stable across
        # NOTIFYs so watchers can correlate them (RFC 3863 section 4.1.2).
        self._status = status if status is not None else PresenceStatus(online=True)
        self._tuple_id = tuple_id if tuple_id is not None else f"t{ids.tag()}"
        self._body: bytes | None = None
        self._subs: dict[SubscriptionId, _Subscription] = {}
        self._outbox: list[Request] = []
        self._events: deque[NotifierEvent] = deque()

    # -- queries -------------------------------------------------------------------

    @property
    def status(self) -> PresenceStatus:
        """The status watchers are told."""
        return self._status

    def subscriptions(self) -> list[SubscriptionInfo]:
        """Every subscription we hold, terminated ones awaiting their final NOTIFY included."""
        return [s.info() for s in self._subs.values()]

    def body(self) -> bytes:
        """The PIDF document for the current status."""
        if self._body is None:
            self._body = build_status(str(self.account_uri), self._status, self._tuple_id)
        return self._body

    # -- draining ------------------------------------------------------------------

    def requests_to_send(self) -> list[Request]:
        """NOTIFY requests to send, oldest first (the glue adds Via and a transaction)."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> NotifierEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next run, or None."""
        when = math.inf
        for s in self._subs.values():
            if s.state is SubscriptionState.ACTIVE:
                when = min(when, s.expires_at)
            if s.in_flight is not None:
                when = min(when, s.deadline)
            if s.retry_at is not None:
                when = min(when, s.retry_at)
        return None if when == math.inf else when

    # -- feeding -------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Expire subscriptions (RFC 6665 4.2.2: reason=timeout) and run due retries."""
        for s in list(self._subs.values()):
            if s.in_flight is not None and now >= s.deadline:
                self._notify_failed(s, 408, "no response to NOTIFY", now)
                continue
            if s.retry_at is not None and now >= s.retry_at:
                s.retry_at = None
                s.dirty = True
            if s.state is SubscriptionState.ACTIVE and now >= s.expires_at:
                self._terminate(s, "timeout")
            self._kick(s, now)

    def set_status(self, status: PresenceStatus, now: float) -> None:
        """Change what we tell watchers and notify every active subscription."""
        # Build first: a bad activity or id is the caller's mistake and must not
        # leave a half-applied status behind.
        body = build_status(str(self.account_uri), status, self._tuple_id)
        self._status, self._body = status, body
        for s in list(self._subs.values()):
            if s.state is SubscriptionState.ACTIVE:
                s.dirty = True
                self._kick(s, now)

    def terminate_all(self, now: float, reason: str = "noresource") -> None:
        """End every subscription with a final NOTIFY (account deleted: ``noresource``).

        ``deactivated`` instead invites watchers to subscribe again at once
        (RFC 6665 section 4.1.3), e.g. when our contact address changes.
        """
        for s in list(self._subs.values()):
            if s.state is SubscriptionState.ACTIVE:
                self._terminate(s, reason)
                self._kick(s, now)

    def receive_subscribe(self, request: Request, now: float) -> Response:
        """Answer a presence SUBSCRIBE (RFC 6665 4.2.1); queue the NOTIFY it calls for.

        Initial (no To tag): creates the dialog. In-dialog: refreshes, or with
        ``Expires: 0`` unsubscribes. Errors in the peer's request are answered,
        never raised; a request that is not a SUBSCRIBE raises ``ValueError``.
        """
        rejection = check_subscribe(request)
        if rejection is not None:
            return rejection
        self.handle_timer(now)  # a subscription past its expiry must not be refreshed
        try:
            asked = request.expires
            contacts = request.contacts
            route_set = request.record_routes
            to_tag = request.to.tag
            remote = request.from_
        except SipParseError as exc:
            return make_response(request, 400, f"Bad Request ({exc.reason[:60]})")
        if remote.tag is None:
            return make_response(request, 400, "Missing From Tag")
        event_id = _event_parts(request.event or "")[1]
        if asked is None:
            asked = self.default_expires  # RFC 6665 4.2.1.1 / RFC 3856 6.4
        if to_tag is not None:
            return self._in_dialog(request, now, asked, contacts, event_id)

        if len(contacts) != 1:
            # RFC 6665 4.1.2.1 / RFC 3261 12.1.1: the remote target is the one Contact.
            return make_response(request, 400, "Missing or Ambiguous Contact")
        if not _accepts_pidf(request):
            response = make_response(request, 406)
            response.headers.add("Accept", CONTENT_TYPE)
            return response
        too_brief = self._too_brief(request, asked)
        if too_brief is not None:
            return too_brief
        if len(self._subs) >= self._max_subscriptions:
            response = make_response(request, 503, "Too Many Subscriptions")
            response.headers.add("Retry-After", "60")
            return response

        granted = min(asked, self.max_expires)
        local_tag = self._ids.tag()
        sid = SubscriptionId(request.call_id, local_tag, remote.tag, event_id)
        event = EVENT_PACKAGE if event_id is None else f"{EVENT_PACKAGE};id={event_id}"
        sub = _Subscription(
            id=sid,
            local=NameAddr(request.to.uri, request.to.display_name, {"tag": local_tag}),
            remote=NameAddr(remote.uri, remote.display_name, dict(remote.params)),
            remote_target=contacts[0].uri,
            route_set=list(route_set),  # RFC 3261 12.1.1: UAS keeps Record-Route order
            event=event,
            remote_cseq=request.cseq.seq,
            expires_at=now + granted,
        )
        self._subs[sid] = sub
        response = self._ok(request, granted, local_tag)
        for value in request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", value)  # RFC 3261 12.1.1
        if granted == 0:
            # A fetch (RFC 6665 4.4.3 polling): one NOTIFY with the state, then nothing.
            self._terminate(sub, "timeout", announce=False)
        else:
            self._events.append(SubscriptionAdded(sid, remote.uri, granted))
        self._kick(sub, now)  # RFC 6665 4.2.1.2: NOTIFY immediately
        return response

    def receive_response(self, request: Request, response: Response, now: float) -> None:
        """A final response to a NOTIFY we sent (provisional ones are ignored)."""
        if response.status < 200:
            return
        sub = self._owner(request)
        if sub is None:
            return  # a late answer to a NOTIFY we have given up on
        sub.in_flight, sub.deadline = None, math.inf
        if response.status < 300:
            sub.auth_tries = 0
            if sub.state is SubscriptionState.TERMINATED and not sub.dirty:
                del self._subs[sub.id]
            self._kick(sub, now)
            return
        if response.status in (401, 407) and self._authenticator is not None and sub.auth_tries < 2:
            try:
                self._authenticator.handle_challenge(request, response)
            except AuthenticationError as exc:
                self._notify_failed(sub, response.status, str(exc), now)
                return
            sub.auth_tries += 1
            sub.dirty = True  # re-sent with CSeq + 1 and credentials (RFC 3261 22.2)
            self._kick(sub, now)
            return
        retry_after = _retry_after(response)
        if retry_after is not None and sub.state is SubscriptionState.ACTIVE:
            # RFC 6665 4.2.2: a failure with Retry-After does not end the subscription.
            sub.retry_at = now + min(retry_after, self._max_retry_after)
            sub.dirty = True
            return
        self._notify_failed(sub, response.status, response.reason, now)

    def request_failed(self, request: Request, reason: str, now: float) -> None:
        """A NOTIFY timed out or could not be sent (RFC 6665 4.2.2: drop the subscription)."""
        sub = self._owner(request)
        if sub is not None:
            self._notify_failed(sub, 408, reason, now)

    # -- internals ------------------------------------------------------------------

    def _in_dialog(
        self,
        request: Request,
        now: float,
        asked: int,
        contacts: list[NameAddr],
        event_id: str | None,
    ) -> Response:
        sid = SubscriptionId(
            request.call_id, request.to.tag or "", request.from_.tag or "", event_id
        )
        sub = self._subs.get(sid)
        if sub is None or sub.state is not SubscriptionState.ACTIVE:
            return make_response(request, 481)  # RFC 3261 12.2.2: no such dialog
        if request.cseq.seq < sub.remote_cseq:
            return make_response(request, 500, "Out Of Order CSeq")  # RFC 3261 12.2.2
        if asked != 0:
            too_brief = self._too_brief(request, asked)
            if too_brief is not None:
                return too_brief
        sub.remote_cseq = request.cseq.seq
        if len(contacts) == 1:
            sub.remote_target = contacts[0].uri  # RFC 6665 4.1.2: SUBSCRIBE refreshes the target
        if asked == 0:
            # RFC 6665 4.1.2.3: unsubscribing; the final NOTIFY carries the last state.
            self._terminate(sub, "timeout")
            response = self._ok(request, 0, None)
        else:
            granted = min(asked, self.max_expires)
            sub.expires_at = now + granted
            sub.dirty = True
            self._events.append(SubscriptionRefreshed(sid, sub.remote.uri, granted))
            response = self._ok(request, granted, None)
        self._kick(sub, now)
        return response

    def _too_brief(self, request: Request, asked: int) -> Response | None:
        if 0 < asked < self.min_expires:
            response = make_response(request, 423)  # RFC 6665 4.2.1.1
            response.headers.add("Min-Expires", str(self.min_expires))
            return response
        return None

    def _ok(self, request: Request, granted: int, to_tag: str | None) -> Response:
        # RFC 6665 4.2.1.1: 200 (RFC 6665 deprecates 202) with the granted Expires.
        response = make_response(request, 200, to_tag=to_tag)
        response.headers.add("Expires", str(granted))
        response.headers.add("Contact", f"<{self.contact_uri}>")
        response.headers.add("Allow-Events", EVENT_PACKAGE)
        return response

    def _terminate(self, sub: _Subscription, reason: str, *, announce: bool = True) -> None:
        sub.state, sub.reason, sub.dirty, sub.retry_at = (
            SubscriptionState.TERMINATED,
            reason,
            True,
            None,
        )
        if announce:
            self._events.append(SubscriptionTerminated(sub.id, sub.remote.uri, reason))

    def _notify_failed(self, sub: _Subscription, status: int, reason: str, now: float) -> None:
        del self._subs[sub.id]
        self._events.append(NotifyFailed(sub.id, sub.remote.uri, status, reason))
        if sub.state is SubscriptionState.ACTIVE:
            self._events.append(SubscriptionTerminated(sub.id, sub.remote.uri, "notify-failed"))

    def _owner(self, request: Request) -> _Subscription | None:
        """The subscription whose in-flight NOTIFY ``request`` is (matched by dialog and CSeq)."""
        try:
            key = (request.call_id, request.from_.tag, request.cseq.seq)
        except (LookupError, SipParseError):
            return None
        for sub in self._subs.values():
            if sub.in_flight is not None and key == (
                sub.id.call_id,
                sub.id.local_tag,
                sub.local_cseq,
            ):
                return sub
        return None

    def _kick(self, sub: _Subscription, now: float) -> None:
        """Send the current state if the watcher lacks it and nothing is in flight."""
        if not sub.dirty or sub.in_flight is not None or sub.retry_at is not None:
            return
        if sub.id not in self._subs:
            return
        request = self._notify(sub, now)
        sub.dirty = False
        sub.in_flight, sub.deadline = request, now + self._response_guard
        self._outbox.append(request)

    def _notify(self, sub: _Subscription, now: float) -> Request:
        """A NOTIFY within the dialog (RFC 3261 12.2.1.1, RFC 6665 4.2.2)."""
        sub.local_cseq += 1
        uri, routes = sub.remote_target, list(sub.route_set)
        if routes and "lr" not in routes[0].uri.params:
            # RFC 3261 12.2.1.1: strict router first hop goes in the Request-URI.
            uri = routes[0].uri.replace(headers={})
            routes = routes[1:] + [NameAddr(sub.remote_target)]
        request = Request("NOTIFY", uri)
        h = request.headers
        for route in routes:
            h.add("Route", str(route))
        h.add("Max-Forwards", "70")
        h.add("From", str(sub.local))
        h.add("To", str(sub.remote))
        h.add("Call-ID", sub.id.call_id)
        h.add("CSeq", f"{sub.local_cseq} NOTIFY")
        h.add("Contact", f"<{self.contact_uri}>")
        h.add("Event", sub.event)
        if sub.state is SubscriptionState.ACTIVE:
            remaining = max(0, int(sub.expires_at - now))
            h.add("Subscription-State", f"active;expires={remaining}")
            with_body = True
        else:
            h.add("Subscription-State", f"terminated;reason={sub.reason}")
            # The last state goes with a timeout (unsubscribe, fetch, expiry); a gone
            # resource has none to give (RFC 6665 4.1.3 noresource).
            with_body = sub.reason == "timeout"
        if self._user_agent:
            h.add("User-Agent", self._user_agent)
        if with_body:
            h.add("Content-Type", CONTENT_TYPE)
            request.body = self.body()
        if self._authenticator is not None:
            self._authenticator.authorize(request)
        return request


def _retry_after(response: Response) -> int | None:
    try:
        return response.retry_after
    except SipParseError:
        return None
