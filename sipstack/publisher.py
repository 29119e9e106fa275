"""Presence publisher: one account's PUBLISH machine (RFC 3903), sans-IO.

The machine is fed API calls (:meth:`Publisher.publish`, :meth:`~Publisher.unpublish`),
responses (:meth:`~Publisher.receive_response`), transport failures
(:meth:`~Publisher.request_failed`) and timer ticks (:meth:`~Publisher.handle_timer`);
it is drained of requests (:meth:`~Publisher.requests_to_send`: the glue adds
the Via and runs the client transaction) and events
(:meth:`~Publisher.next_event`). Time is always an argument.

One PUBLISH is outstanding at a time (RFC 3903 section 4.1: a new one waits
for the previous response, since it must carry the entity-tag that response
returns). A status set meanwhile replaces any status still waiting, so only
the latest is sent.

Cycle (RFC 3903 section 4): initial PUBLISH with the body -> 2xx with SIP-ETag
and Expires -> refresh before expiry with SIP-If-Match and no body (4.2) ->
modify with SIP-If-Match and a body (4.4) -> remove with SIP-If-Match and
``Expires: 0`` (4.5). A 412 means the server lost our entity: publish anew
(4.2 / 6). 423 raises our expiry to Min-Expires (4.1 / 6).
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque

from sipstack.digest import AuthenticationError, DigestAuthenticator
from sipstack.errors import SipParseError
from sipstack.headers import NameAddr
from sipstack.ids import IdGenerator
from sipstack.message import Request, Response
from sipstack.pidf import CONTENT_TYPE
from sipstack.records import dataclass
from sipstack.uri import parse_uri

__all__ = [
    "PUBLISH_EXPIRATION",
    "PublishFailed",
    "Published",
    "Publisher",
    "PublisherConfig",
    "PublisherEvent",
    "PublisherState",
    "Unpublished",
    "refresh_delay",
]

#: PJSUA's default publication lifetime, seconds.
PUBLISH_EXPIRATION = 600
_MAX_MIN_EXPIRES = 86400  # a Min-Expires above a day is a broken server, not a policy


def refresh_delay(granted: int, delay_before_refresh: float) -> float:
    """Seconds after a 2xx to refresh: ``delay_before_refresh`` early, halfway if that is short."""
    if granted > 2 * delay_before_refresh:
        return granted - delay_before_refresh
    return granted / 2


@dataclass(frozen=True, slots=True)
class PublisherConfig:
    """What one account's publisher needs (names after ``pjsua_acc_config``/``pjsip_publishc``).

    * ``aor``: the presentity, a name-addr or URI; it is the Request-URI, From
      and To (RFC 3903 section 4.1).
    * ``proxy``: the outbound route set; ``;lr`` is added when missing.
    * ``expires``: the lifetime we ask for (``PUBLISH_EXPIRATION``).
    * ``delay_before_refresh``: refresh this long before the granted expiry.
    * ``retry_interval`` + up to ``retry_jitter`` random seconds: the wait
      after a failure before trying again (a fixed server must bring us back).
    * ``response_guard``: a PUBLISH unanswered and unreported this long is
      treated as timed out (longer than Timer F, 32 s).
    * ``max_retry_after``: the most we honour of a Retry-After.
    """

    aor: str
    proxy: tuple[str, ...] = ()
    expires: int = PUBLISH_EXPIRATION
    delay_before_refresh: float = 5.0
    retry_interval: float = 300.0
    retry_jitter: float = 10.0
    user_agent: str = ""
    max_forwards: int = 70
    response_guard: float = 64.0
    max_retry_after: int = 3600
    event: str = "presence"
    content_type: str = CONTENT_TYPE

    def __post_init__(self) -> None:
        if self.expires < 1:
            raise ValueError(f"PublisherConfig.expires must be >= 1 s, got {self.expires}")
        if self.retry_interval <= 0 or self.response_guard <= 0:
            raise ValueError("PublisherConfig.retry_interval and response_guard must be positive")
        if self.delay_before_refresh < 0 or self.retry_jitter < 0:
            raise ValueError("PublisherConfig.delay_before_refresh and retry_jitter must be >= 0")
        self.address()
        self.route_set()

    def address(self) -> NameAddr:
        """The AOR as From/To (no tag)."""
        try:
            addr = NameAddr.parse(self.aor)
        except SipParseError as exc:
            raise ValueError(
                f"PublisherConfig.aor: not a SIP address {self.aor!r}: {exc}"
            ) from None
        if addr.uri.scheme not in ("sip", "sips"):
            raise ValueError(f"PublisherConfig.aor: {self.aor!r} is not a sip/sips address")
        addr.params.pop("tag", None)
        return addr

    def route_set(self) -> list[NameAddr]:
        """Route headers: each proxy, loose-routing (RFC 3261 16.12.1.1)."""
        routes = []
        for text in self.proxy:
            try:
                uri = parse_uri(text.strip().removeprefix("<").removesuffix(">"))
            except SipParseError as exc:
                raise ValueError(f"PublisherConfig.proxy: bad URI {text!r}: {exc}") from None
            if "lr" not in uri.params:
                uri = uri.replace(params={**uri.params, "lr": None})
            routes.append(NameAddr(uri))
        return routes


class PublisherState(enum.Enum):
    """Where the publication stands."""

    IDLE = "idle"  # nothing published and nothing to do
    PUBLISHING = "publishing"  # an initial, modify or refresh PUBLISH is in flight
    PUBLISHED = "published"  # the server holds our state; a refresh is scheduled
    RETRY_WAIT = "retry-wait"  # the last attempt failed; a retry is scheduled
    UNPUBLISHING = "unpublishing"  # the removal is in flight


class _Kind(enum.Enum):
    INITIAL = "initial"  # body, no SIP-If-Match (RFC 3903 4.1)
    MODIFY = "modify"  # body and SIP-If-Match (4.4)
    REFRESH = "refresh"  # SIP-If-Match, no body (4.2)
    REMOVE = "remove"  # SIP-If-Match, Expires 0 (4.5)

    @property
    def has_body(self) -> bool:
        return self is _Kind.INITIAL or self is _Kind.MODIFY


@dataclass(frozen=True, slots=True)
class Published:
    """The server holds our state under ``etag`` for ``expires`` seconds."""

    etag: str
    expires: int


@dataclass(frozen=True, slots=True)
class PublishFailed:
    """A PUBLISH failed: the final status, or 408 when no response came (as PJSIP reports)."""

    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class Unpublished:
    """Our state is gone from the server (``removed``) or was given up on (``removed`` False)."""

    removed: bool = True


PublisherEvent = Published | PublishFailed | Unpublished


class Publisher:
    """Keeps one presence document published at the account's presence server.

    ``ids`` makes the Call-ID and From tag (one for the publisher's life: the
    CSeq then orders every PUBLISH, as PJSIP's publishc does); ``rng`` draws
    the retry jitter; ``authenticator`` answers 401/407 (none: they fail).
    """

    def __init__(
        self,
        config: PublisherConfig,
        ids: IdGenerator,
        rng: random.Random,
        authenticator: DigestAuthenticator | None = None,
    ) -> None:
        self.config = config
        self._rng = rng
        self._auth = authenticator
        self._address = config.address()
        self._routes = config.route_set()
        self._call_id = ids.call_id(self._address.uri.host)
        self._from_tag = ids.tag()
        self._cseq = 0
        self._expires = config.expires  # raised by a 423
        self._body: bytes | None = None  # the document we want published
        self._dirty = False  # the server lacks ``_body``
        self._want_remove = False
        self._etag: str | None = None
        self._expires_at = math.inf
        self._refresh_at = math.inf
        self._retry_at: float | None = None
        self._in_flight: Request | None = None
        self._kind = _Kind.INITIAL
        self._deadline = math.inf
        self._auth_tries = 0
        self._outbox: list[Request] = []
        self._events: deque[PublisherEvent] = deque()

    # -- queries -------------------------------------------------------------------

    @property
    def state(self) -> PublisherState:
        """The current :class:`PublisherState`."""
        if self._in_flight is not None:
            if self._kind is _Kind.REMOVE:
                return PublisherState.UNPUBLISHING
            return PublisherState.PUBLISHING
        if self._retry_at is not None:
            return PublisherState.RETRY_WAIT
        return PublisherState.PUBLISHED if self._etag is not None else PublisherState.IDLE

    @property
    def etag(self) -> str | None:
        """The entity-tag the server gave our state, or None."""
        return self._etag

    def expires_in(self, now: float) -> int:
        """Seconds our published state has left (0 when none)."""
        if self._etag is None:
            return 0
        return max(0, int(self._expires_at - now))

    # -- draining --------------------------------------------------------------------

    def requests_to_send(self) -> list[Request]:
        """PUBLISH requests to send (at most one), without Via."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> PublisherEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next run, or None."""
        if self._in_flight is not None:
            return self._deadline
        if self._retry_at is not None:
            return self._retry_at
        if self._etag is not None and not self._want_remove:
            return min(self._refresh_at, self._expires_at)
        return None

    # -- feeding ---------------------------------------------------------------------

    def publish(self, body: bytes, now: float) -> None:
        """Publish ``body`` (initial, or a modify when the server holds an entity).

        Sent at once unless a PUBLISH is in flight; then it follows that one's
        response, replacing any document still waiting.
        """
        self._body, self._dirty, self._want_remove = body, True, False
        self._retry_at = None  # a new status is worth trying now
        self._step(now)

    def unpublish(self, now: float) -> None:
        """Remove our state from the server (RFC 3903 4.5); ends with :class:`Unpublished`."""
        self._body, self._dirty, self._want_remove = None, False, True
        self._retry_at = None
        self._step(now)

    def handle_timer(self, now: float) -> None:
        """Run due refreshes and retries; a lost response report counts as a timeout."""
        if self._in_flight is not None:
            if now >= self._deadline:
                self._failed(408, "no response to PUBLISH", now)
            return
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_at = None
        self._step(now)

    def receive_response(self, request: Request, response: Response, now: float) -> None:
        """A response to the PUBLISH in flight (others are stale and ignored)."""
        if response.status < 200 or not self._is_in_flight(request):
            return
        kind = self._kind
        self._in_flight, self._deadline = None, math.inf
        status = response.status
        if status < 300:
            self._auth_tries = 0
            self._succeeded(kind, response, now)
        elif status == 412 and kind is not _Kind.INITIAL:
            # RFC 3903 6: the server no longer knows our entity-tag: start afresh.
            self._drop_etag()
            if kind is _Kind.REMOVE:
                self._finish_remove(True)
        elif status == 423 and kind is not _Kind.REMOVE and self._raise_expires(response):
            self._restore(kind)  # RFC 3903 4.1 / 6: again with Min-Expires
        elif status in (401, 407) and self._auth is not None and self._auth_tries < 2:
            try:
                self._auth.handle_challenge(request, response)
            except AuthenticationError as exc:
                self._failed(status, str(exc), now)
                return
            self._auth_tries += 1
            self._restore(kind)  # re-sent with CSeq + 1 and credentials (RFC 3261 22.2)
        else:
            self._failed(status, response.reason, now, _retry_after(response))
            return
        self._step(now)

    def request_failed(self, request: Request, reason: str, now: float) -> None:
        """The PUBLISH in flight timed out or could not be sent."""
        if self._is_in_flight(request):
            self._failed(408, reason, now)

    # -- internals --------------------------------------------------------------------

    def _is_in_flight(self, request: Request) -> bool:
        if self._in_flight is None:
            return False
        try:
            return request.call_id == self._call_id and request.cseq.seq == self._cseq
        except (LookupError, SipParseError):
            return False

    def _succeeded(self, kind: _Kind, response: Response, now: float) -> None:
        if kind is _Kind.REMOVE:
            self._drop_etag()
            self._finish_remove(True)
            return
        try:
            granted = response.expires
        except SipParseError:
            granted = None
        etag = response.sip_etag
        if etag is None or granted == 0:
            # RFC 3903 4.1: a 2xx carries SIP-ETag; without it we cannot refresh.
            self._restore(kind)
            self._failed(response.status, "2xx to PUBLISH without SIP-ETag (server's fault)", now)
            return
        if granted is None:
            granted = self._expires  # RFC 3903 4.1 says it is there; assume what we asked
        self._etag = etag
        self._expires_at = now + granted
        self._refresh_at = now + refresh_delay(granted, self.config.delay_before_refresh)
        self._events.append(Published(etag, granted))

    def _failed(self, status: int, reason: str, now: float, retry_after: int | None = None) -> None:
        """Report, then retry later (or give a removal up: the state expires by itself)."""
        kind = self._kind
        self._in_flight, self._deadline = None, math.inf
        self._events.append(PublishFailed(status, reason))
        if kind is _Kind.REMOVE:
            self._drop_etag()
            self._finish_remove(False)
            self._step(now)
            return
        self._restore(kind)
        if retry_after is not None:
            delay = float(min(retry_after, self.config.max_retry_after))
        else:
            delay = self.config.retry_interval + self._rng.uniform(0, self.config.retry_jitter)
        self._retry_at = now + delay

    def _restore(self, kind: _Kind) -> None:
        """Make the next step re-send what ``kind`` carried."""
        if kind.has_body and self._body is not None:
            self._dirty = True
        # A refresh is re-sent because _refresh_at is still due; a removal
        # because _want_remove is still set.

    def _raise_expires(self, response: Response) -> bool:
        try:
            minimum = response.min_expires
        except SipParseError:
            return False
        if minimum is None or minimum <= self._expires or minimum > _MAX_MIN_EXPIRES:
            return False
        self._expires = minimum
        return True

    def _drop_etag(self) -> None:
        self._etag = None
        self._expires_at = self._refresh_at = math.inf
        if self._body is not None:
            self._dirty = True  # the server has nothing: publish the body anew

    def _finish_remove(self, removed: bool) -> None:
        self._want_remove = False
        self._events.append(Unpublished(removed))

    def _step(self, now: float) -> None:
        """Decide the next PUBLISH, if any; the one place that sends."""
        if self._in_flight is not None:
            return
        if self._etag is not None and now >= self._expires_at:
            self._drop_etag()  # our state lapsed at the server (RFC 3903 4.1)
        if self._want_remove:
            if self._etag is None:
                self._finish_remove(True)  # nothing held at the server
                return
            self._send(_Kind.REMOVE, now)
        elif self._body is None or self._retry_at is not None:
            return
        elif self._dirty:
            self._send(_Kind.MODIFY if self._etag is not None else _Kind.INITIAL, now)
        elif self._etag is not None and now >= self._refresh_at:
            self._send(_Kind.REFRESH, now)

    def _send(self, kind: _Kind, now: float) -> None:
        self._cseq += 1
        request = Request("PUBLISH", self._address.uri)
        h = request.headers
        for route in self._routes:
            h.add("Route", str(route))
        h.add("Max-Forwards", str(self.config.max_forwards))
        h.add("From", str(self._address.with_tag(self._from_tag)))
        h.add("To", str(self._address))
        h.add("Call-ID", self._call_id)
        h.add("CSeq", f"{self._cseq} PUBLISH")
        h.add("Event", self.config.event)
        h.add("Expires", "0" if kind is _Kind.REMOVE else str(self._expires))
        if kind is not _Kind.INITIAL:
            assert self._etag is not None
            h.add("SIP-If-Match", self._etag)
        if self.config.user_agent:
            h.add("User-Agent", self.config.user_agent)
        if kind.has_body:
            assert self._body is not None
            h.add("Content-Type", self.config.content_type)
            request.body = self._body
            self._dirty = False
        if self._auth is not None:
            self._auth.authorize(request)  # pre-emptive once challenged (RFC 3261 22.3)
        self._kind = kind
        self._in_flight, self._deadline = request, now + self.config.response_guard
        self._outbox.append(request)


def _retry_after(response: Response) -> int | None:
    try:
        return response.retry_after
    except SipParseError:
        return None
