"""Client registration (RFC 3261 section 10) as a sans-IO state machine.

One :class:`Registration` keeps one Contact bound to one address-of-record at a
registrar, for months: it refreshes before the granted expiry, retries after
failures on a schedule, answers digest challenges, follows the registrar's view
of our address behind NAT (RFC 3581) and unregisters on shutdown.

It is fed (:meth:`~Registration.start`, :meth:`~Registration.stop`,
:meth:`~Registration.refresh`, :meth:`~Registration.set_contact`,
:meth:`~Registration.receive_response`, :meth:`~Registration.request_failed`,
:meth:`~Registration.handle_timer`), drained (:meth:`~Registration.requests_to_send`,
:meth:`~Registration.next_event`) and asked (:meth:`~Registration.get_timer`).
It never reads the clock, touches a socket or draws randomness of its own. The
glue sends each drained REGISTER in a new non-INVITE client transaction (adding
the Via with a fresh branch) and reports its outcome back with the request.

Policy choices, with their reasons:

* **Refresh time** (:func:`refresh_delay`): ``granted - reg_delay_before_refresh``
  but never earlier than half the grant, so a short grant (say 8 s with a 5 s
  margin) is not refreshed almost at once. Times count from when the REGISTER was
  built, not when the answer came: the registrar started its clock no earlier
  (RFC 3261 10.2.1 expiry is relative to its receipt), so we err on the safe side.
* **Registered means bound.** A failed refresh, a 200 that grants our Contact no
  time (or arrives after the time it grants has run out), or the granted expiry
  passing while a refresh is still unanswered all leave the machine not
  registered, whatever the binding may still be.
* **Retry schedule**: ``reg_first_retry_interval`` after the first failure of a
  series (0 = same as ``reg_retry_interval``), then ``reg_retry_interval``.
  Jitter (:func:`retry_delay`) is uniform in +/- min(10 s, interval/2): PJSUA adds
  +/-10 s to intervals of 10 s or more (and replaces shorter ones by 0-10 s); we
  keep its spread for long intervals and never go below half a short one. A
  Retry-After (RFC 3261 20.33; honoured on any failure, not only 503) replaces the
  interval, capped at ``max_retry_after`` and floored at 1 s, and only gets
  positive jitter so we never come back early.
* **Wrong password**: unlike PJSUA, which stops, we report the failure (401/407,
  with the authenticator's explanation) and keep retrying on schedule: a password
  fixed on the server must bring a door station back without a site visit.
* **Contact rewrite** (``allow_contact_rewrite``, PJSUA's behaviour): when a 2xx
  shows, in the top Via, a received/rport (RFC 3581 4) different from our Contact's
  host/port, we re-register at once with the corrected Contact and, in the same
  REGISTER, ``expires=0`` for the old one (RFC 3261 10.2.2 allows both in one
  request). We rewrite only when the registrar's view *changed* since its previous
  2xx, and never in answer to the rewriting REGISTER itself: a registrar (or an
  ALG) whose view never matches costs one extra REGISTER, and one that keeps
  moving at most one per refresh, never a loop.
* **One REGISTER at a time** (RFC 3261 10.2), except that :meth:`~Registration.stop`
  and :meth:`~Registration.set_contact` supersede an unanswered one: on shutdown
  or after a network change the old transaction is moot. Its late answer is
  ignored, and its lower CSeq makes the registrar discard it if it arrives later
  (RFC 3261 10.3 step 7).
"""

from __future__ import annotations

import enum
import random
from collections import deque

from sipstack.digest import AuthenticationError
from sipstack.errors import SipParseError
from sipstack.headers import Headers, NameAddr
from sipstack.ids import IdGenerator
from sipstack.message import Request, Response, reason_phrase
from sipstack.records import dataclass
from sipstack.registration_config import (
    Authenticator,
    ContactRewritten,
    RegistrationConfig,
    RegistrationEvent,
    RegistrationState,
    RegistrationStateChanged,
    RegistrationStateError,
    RequestFailure,
    apply_uri_params,
    contact_address,
    granted_expiry,
    refresh_delay,
    retry_after,
    retry_delay,
    seen_address,
)
from sipstack.uri import URI, parse_uri

__all__ = [
    "Authenticator",
    "ContactRewritten",
    "Registration",
    "RegistrationConfig",
    "RegistrationEvent",
    "RegistrationState",
    "RegistrationStateChanged",
    "RegistrationStateError",
    "RequestFailure",
    "refresh_delay",
    "retry_delay",
]

_MAX_AUTH_ROUNDS = 3  # challenges answered per attempt before we call it a failure
_MAX_STALE_CONTACTS = 4  # old Contacts kept for removal while the network flaps

_S = RegistrationState
# The whole state table (GUIDE rule 2); _move raises on anything else.
_TRANSITIONS: dict[RegistrationState, frozenset[RegistrationState]] = {
    _S.UNREGISTERED: frozenset({_S.REGISTERING}),
    _S.REGISTERING: frozenset({_S.REGISTERED, _S.RETRY_WAIT, _S.UNREGISTERING}),
    _S.REGISTERED: frozenset({_S.REFRESHING, _S.REGISTERING, _S.UNREGISTERING}),
    _S.REFRESHING: frozenset({_S.REGISTERED, _S.REGISTERING, _S.RETRY_WAIT, _S.UNREGISTERING}),
    _S.RETRY_WAIT: frozenset({_S.REGISTERING, _S.UNREGISTERING}),
    _S.UNREGISTERING: frozenset({_S.UNREGISTERED, _S.REGISTERING}),
}
_BOUND = frozenset(s for s in RegistrationState if s.is_bound)


class _Timer(enum.IntEnum):
    """The machine's timers; on equal deadlines the lower value fires first."""

    REFRESH = 1
    EXPIRY = 2
    RETRY = 3
    GUARD = 4
    UNREG_TIMEOUT = 5


@dataclass(frozen=True, slots=True)
class _Pending:
    """The REGISTER we are waiting on."""

    cseq: int
    built_at: float
    expires: int  # what it asked for our Contact (0 when unregistering)
    removes: tuple[URI, ...]  # old Contacts it carries with expires=0
    unregister: bool
    rewrite: bool  # sent because of a contact rewrite (its 2xx may not trigger another)
    auth_rounds: int


def _says_stale(response: Response) -> bool:
    """True if a 401/407 carries a challenge with ``stale=true`` (RFC 7616 3.3)."""
    try:
        challenges = [*response.www_authenticate, *response.proxy_authenticate]
    except SipParseError:
        return False
    return any(c.params.get("stale", "").lower() == "true" for c in challenges)


class Registration:
    """Keeps one Contact registered for one account; see the module docstring.

    ``ids`` makes the Call-ID and From tag (constant for the object's life, RFC 3261
    10.2: one Call-ID per boot, CSeq going up); ``rng`` draws the retry jitter;
    ``authenticator`` answers 401/407 (None: a challenge is a failure).
    """

    def __init__(
        self,
        config: RegistrationConfig,
        ids: IdGenerator,
        rng: random.Random,
        authenticator: Authenticator | None = None,
    ) -> None:
        self._cfg = config
        self._rng = rng
        self._auth = authenticator
        self._registrar = config.registrar()
        self._aor = config.aor()
        self._routes = config.route_set()
        self._uri_params = config.uri_params()
        self._contact_params = config.contact_header_params()
        self._contact = config.contact_uri()
        self._from_tag = ids.tag()
        self._call_id = ids.call_id()
        self._cseq = 0
        self._asked = config.reg_timeout  # raised by a 423's Min-Expires (RFC 3261 10.2.8)
        self._stale: list[URI] = []  # old Contacts to remove with expires=0
        self._last_seen: tuple[str, int] | None = None  # the registrar's view of us
        self._state = _S.UNREGISTERED
        self._status_code = 0
        self._status_text = ""
        self._granted: int | None = None
        self._bound_until: float | None = None
        self._failures = 0
        self._pending: _Pending | None = None
        self._deadlines: dict[_Timer, float] = {}
        self._outbox: list[Request] = []
        self._events: deque[RegistrationEvent] = deque()

    # -- asked -------------------------------------------------------------------------

    @property
    def state(self) -> RegistrationState:
        """The current state."""
        return self._state

    @property
    def is_registered(self) -> bool:
        """True while a binding granted by the registrar is known to be valid."""
        return self._state in _BOUND

    @property
    def status_code(self) -> int:
        """The last final status (408/503 for timeouts/transport errors; 0 before any)."""
        return self._status_code

    @property
    def status_text(self) -> str:
        """The reason phrase (or failure detail) that came with :attr:`status_code`."""
        return self._status_text

    @property
    def contact(self) -> URI:
        """Our Contact as registered (after any rewrite): use it in dialogs too."""
        return self._contact

    @property
    def call_id(self) -> str:
        """The Call-ID of every REGISTER of this object (RFC 3261 10.2)."""
        return self._call_id

    @property
    def granted_expires(self) -> int | None:
        """The expiry the registrar last granted our Contact, while registered."""
        return self._granted if self.is_registered else None

    def expires_remaining(self, now: float) -> int | None:
        """Whole seconds until the binding expires, or None when not registered."""
        if not self.is_registered or self._bound_until is None:
            return None
        return max(0, int(self._bound_until - now))

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        return min(self._deadlines.values(), default=None)

    # -- drained -----------------------------------------------------------------------

    def requests_to_send(self) -> list[Request]:
        """REGISTER requests to send, oldest first (each in its own transaction)."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> RegistrationEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    # -- fed: the account layer ------------------------------------------------------------

    def start(self, now: float) -> None:
        """Register (again, if stopped or stopping); when active this is :meth:`refresh`."""
        if self._state in (_S.UNREGISTERED, _S.UNREGISTERING):
            self._clear_timers()
            self._pending = None
            self._failures = 0
            self._send_register(now)
            self._move(_S.REGISTERING, "registration started")
        else:
            self.refresh(now)

    def refresh(self, now: float) -> None:
        """Re-register now (PJSUA ``acc_set_registration(id, renew=True)``).

        No-op while a REGISTER is already out; raises if never started or stopping.
        """
        if self._state in (_S.UNREGISTERED, _S.UNREGISTERING):
            raise RegistrationStateError(
                f"cannot refresh a registration that is {self._state.value}"
            )
        if self._state is _S.REGISTERED:
            self._stop_timer(_Timer.REFRESH)
            self._send_register(now)
            self._move(_S.REFRESHING, "refresh requested")
        elif self._state is _S.RETRY_WAIT:
            self._stop_timer(_Timer.RETRY)
            self._send_register(now)
            self._move(_S.REGISTERING, "retry requested")

    def stop(self, now: float) -> None:
        """Unregister our Contact (``expires=0``, never ``*``: RFC 3261 10.2.2 would
        remove other devices' bindings of the same AoR).

        Ends in UNREGISTERED when answered, or after ``unreg_timeout`` whatever
        happens. No-op when already unregistered or unregistering.
        """
        if self._state in (_S.UNREGISTERED, _S.UNREGISTERING):
            return
        self._clear_timers()
        self._pending = None  # superseded: see the module docstring
        self._bound_until = None
        self._granted = None
        self._send(now, expires=0, unregister=True, rewrite=False, auth_rounds=0)
        self._deadlines[_Timer.UNREG_TIMEOUT] = now + self._cfg.unreg_timeout
        self._move(_S.UNREGISTERING, "unregistering")

    def set_contact(self, contact: URI | str, now: float) -> None:
        """Our address changed (network change): bind ``contact`` and remove the old one.

        ``contact_uri_params`` of the configuration are applied to it. When active,
        a REGISTER goes out at once carrying both Contacts; the old gets expires=0.
        """
        uri = parse_uri(contact) if isinstance(contact, str) else contact
        uri = apply_uri_params(uri, self._uri_params)
        if uri == self._contact:
            return
        old, self._contact = self._contact, uri
        self._last_seen = None  # a new network: the NAT may map us afresh
        if self._state is _S.UNREGISTERED:
            return  # nothing bound to move
        self._add_stale(old)  # removed by the unregister in flight, or the next REGISTER
        if self._state is _S.UNREGISTERING:
            return
        self._clear_timers()
        self._pending = None  # superseded: the old network's transaction is moot
        self._bound_until = None
        self._granted = None
        self._send_register(now)
        if self._state is not _S.REGISTERING:
            self._move(_S.REGISTERING, f"contact changed from {old} to {uri}")

    # -- fed: the transaction glue -------------------------------------------------------

    def receive_response(self, request: Request, response: Response, now: float) -> None:
        """A final response to a REGISTER this machine produced.

        Responses to superseded requests, and provisional ones, are ignored.
        """
        pending = self._match(request)
        if pending is None or response.status < 200:
            return
        self._pending = None
        self._stop_timer(_Timer.GUARD)
        status = response.status
        if status in (401, 407):
            self._on_challenge(pending, request, response, now)
        elif pending.unregister:
            ok = 200 <= status < 300
            note = (
                "unregistered"
                if ok
                else "unregister refused; the binding will expire at the registrar"
            )
            self._unregistered(status, response.reason, note)
        elif 200 <= status < 300:
            self._on_success(pending, response, now)
        elif status == 423:
            self._on_interval_too_brief(pending, response, now)
        else:
            self._fail(
                now,
                status,
                response.reason,
                f"registrar answered {status} {response.reason}",
                retry_after=retry_after(response),
            )

    def request_failed(
        self, request: Request, reason: RequestFailure, now: float, detail: str = ""
    ) -> None:
        """A REGISTER got no final response: timeout (408) or transport error (503)."""
        pending = self._match(request)
        if pending is None:
            return
        self._pending = None
        self._stop_timer(_Timer.GUARD)
        self._no_answer(pending, reason, detail or reason_phrase(reason.value), now)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now``, earliest first; calling early is harmless."""
        while self._deadlines:
            timer = min(self._deadlines, key=lambda t: (self._deadlines[t], t))
            if self._deadlines[timer] > now:
                return
            del self._deadlines[timer]
            self._on_timer(timer, now)

    # -- reactions -------------------------------------------------------------------------

    def _on_timer(self, timer: _Timer, now: float) -> None:
        if timer is _Timer.REFRESH and self._state is _S.REGISTERED:
            self._send_register(now)
            self._move(_S.REFRESHING, "refreshing before the binding expires")
        elif timer is _Timer.EXPIRY and self._state in _BOUND:
            # RFC 3261 10.2.1: past the granted time the binding is gone.
            self._bound_until = None
            self._granted = None
            if self._state is _S.REGISTERED:  # only if a refresh was never sent
                self._send_register(now)
            self._move(_S.REGISTERING, "binding expired before the refresh was answered")
        elif timer is _Timer.RETRY and self._state is _S.RETRY_WAIT:
            self._send_register(now)
            self._move(_S.REGISTERING, "retrying")
        elif timer is _Timer.GUARD and self._pending is not None:
            pending, self._pending = self._pending, None
            detail = f"no final response within {self._cfg.response_guard:g} s"
            self._no_answer(pending, RequestFailure.TIMEOUT, detail, now)
        elif timer is _Timer.UNREG_TIMEOUT and self._state is _S.UNREGISTERING:
            self._pending = None
            note = f"no answer to the unregister within {self._cfg.unreg_timeout:g} s"
            self._unregistered(408, "Request Timeout", note)

    def _no_answer(
        self, pending: _Pending, reason: RequestFailure, detail: str, now: float
    ) -> None:
        if pending.unregister:
            self._unregistered(reason.value, detail, f"unregister failed: {detail}")
        else:
            self._fail(now, reason.value, detail, f"REGISTER failed: {detail}")

    def _on_success(self, pending: _Pending, response: Response, now: float) -> None:
        self._failures = 0  # the registrar is reachable and accepts us
        self._stale = [c for c in self._stale if c not in pending.removes]
        if self._maybe_rewrite(pending, response, now):
            return
        granted = granted_expiry(response, self._contact, pending.expires)
        if granted <= 0:
            self._fail(
                now,
                response.status,
                response.reason,
                "registrar answered 2xx but granted our Contact no time",
            )
            return
        self._status_code, self._status_text = response.status, response.reason
        if pending.built_at + granted <= now:
            # The answer came after the granted time ran out by our (early) clock:
            # claiming the binding would be a guess, so register again at once.
            self._bound_until = None
            self._granted = None
            self._stop_timer(_Timer.REFRESH, _Timer.EXPIRY)
            self._send_register(now)
            if self._state is not _S.REGISTERING:
                self._move(_S.REGISTERING, f"answer granting {granted} s came too late")
            return
        self._granted = granted
        self._bound_until = pending.built_at + granted
        self._deadlines[_Timer.EXPIRY] = self._bound_until
        refresh_at = pending.built_at + refresh_delay(granted, self._cfg.reg_delay_before_refresh)
        self._deadlines[_Timer.REFRESH] = max(now, refresh_at)
        note = f"registered {self._contact} for {granted} s"
        if granted != pending.expires:
            note += f" (asked {pending.expires} s)"
        self._move(_S.REGISTERED, note)

    def _maybe_rewrite(self, pending: _Pending, response: Response, now: float) -> bool:
        """RFC 3581 4: re-register with the address the registrar saw, if that changed."""
        if not self._cfg.allow_contact_rewrite:
            return False
        seen = seen_address(response)
        if seen is None:
            return False
        changed, self._last_seen = seen != self._last_seen, seen
        if not changed or pending.rewrite:
            return False
        if seen == contact_address(self._contact):
            return False
        old = self._contact
        self._contact = old.replace(host=seen[0], port=seen[1])
        self._add_stale(old)
        self._bound_until = None
        self._granted = None
        self._stop_timer(_Timer.REFRESH, _Timer.EXPIRY)
        self._send(now, expires=self._asked, unregister=False, rewrite=True, auth_rounds=0)
        new_at, old_at = self._contact.host_port, old.host_port
        note = f"registrar sees us at {new_at}, not {old_at}: rewriting the Contact"
        self._events.append(ContactRewritten(old, self._contact, note))
        if self._state is not _S.REGISTERING:
            self._move(_S.REGISTERING, note)
        return True

    def _on_interval_too_brief(self, pending: _Pending, response: Response, now: float) -> None:
        # RFC 3261 10.2.8 / 21.4.17: retry at once with at least Min-Expires.
        try:
            minimum = response.min_expires
        except SipParseError:
            minimum = None
        if minimum is None or minimum <= pending.expires:
            self._fail(
                now,
                423,
                response.reason,
                f"423 without a usable Min-Expires (got {minimum}, asked {pending.expires})",
            )
            return
        self._asked = minimum
        self._send(
            now,
            expires=minimum,
            unregister=False,
            rewrite=pending.rewrite,
            auth_rounds=pending.auth_rounds,
        )

    def _on_challenge(
        self, pending: _Pending, request: Request, response: Response, now: float
    ) -> None:
        """RFC 3261 22.2: answer the challenge and resend with CSeq + 1."""
        problem = None
        if self._auth is None:
            problem = "the registrar wants authentication and no credentials are configured"
        elif pending.auth_rounds >= _MAX_AUTH_ROUNDS:
            problem = f"still challenged after {pending.auth_rounds} authenticated attempts"
            if _says_stale(response):
                # RFC 7616 3.3: stale=true means our credentials were right and only
                # the nonce was not; a registrar that says so of every fresh nonce is
                # broken (nonce lifetime, clock), and the user must not be sent to
                # check a password that is fine.
                problem = (
                    f"the registrar called {pending.auth_rounds} fresh nonces in a row stale"
                    " (stale=true): its nonces expire too soon; the password is not in question"
                )
        else:
            try:
                self._auth.handle_challenge(request, response)
            except AuthenticationError as exc:
                problem = str(exc)
            except SipParseError as exc:
                problem = f"unusable challenge from the registrar: {exc.reason}"
        if problem is not None:
            if pending.unregister:
                self._unregistered(
                    response.status, response.reason, f"unregister failed: {problem}"
                )
            else:
                self._fail(
                    now, response.status, response.reason, f"authentication failed: {problem}"
                )
            return
        self._send(
            now,
            expires=pending.expires,
            unregister=pending.unregister,
            rewrite=pending.rewrite,
            auth_rounds=pending.auth_rounds + 1,
        )

    def _fail(
        self, now: float, status: int, text: str, note: str, retry_after: int | None = None
    ) -> None:
        """Any failed attempt: not registered, retry on schedule."""
        self._status_code, self._status_text = status, text
        self._bound_until = None
        self._granted = None
        self._stop_timer(_Timer.REFRESH, _Timer.EXPIRY)
        self._failures += 1
        cfg = self._cfg
        wait: float | None
        if retry_after is not None:
            wait = retry_delay(
                max(1.0, min(retry_after, cfg.max_retry_after)), self._rng, only_later=True
            )
        elif cfg.reg_retry_interval <= 0:
            wait = None  # PJSUA: retry interval 0 disables automatic retry
        else:
            first = self._failures == 1 and cfg.reg_first_retry_interval > 0
            wait = retry_delay(
                cfg.reg_first_retry_interval if first else cfg.reg_retry_interval, self._rng
            )
        if wait is not None:
            self._deadlines[_Timer.RETRY] = now + wait
            note += f"; retry in {wait:.1f} s"
        else:
            note += "; automatic retry disabled"
        self._move(_S.RETRY_WAIT, note, retry_in=wait)

    def _unregistered(self, status: int, text: str, note: str) -> None:
        self._status_code, self._status_text = status, text
        self._clear_timers()
        self._stale.clear()
        self._move(_S.UNREGISTERED, note)

    # -- building requests ------------------------------------------------------------------

    def _send_register(self, now: float) -> None:
        self._send(now, expires=self._asked, unregister=False, rewrite=False, auth_rounds=0)

    def _send(
        self, now: float, *, expires: int, unregister: bool, rewrite: bool, auth_rounds: int
    ) -> None:
        """Build the next REGISTER (RFC 3261 10.2), queue it and remember it as pending."""
        self._cseq += 1
        removes = tuple(self._stale)
        h = Headers()
        h.add("Max-Forwards", str(self._cfg.max_forwards))
        for route in self._routes:
            h.add("Route", str(route))
        h.add("From", str(self._aor.with_tag(self._from_tag)))
        h.add("To", str(self._aor))
        h.add("Call-ID", self._call_id)
        h.add("CSeq", f"{self._cseq} REGISTER")
        # Per-Contact expires (RFC 3261 10.2.1.1) lets one REGISTER bind the new
        # Contact and remove old ones (10.2.2); the Expires header is for registrars
        # that only read it (the parameter wins, 10.3 step 6).
        h.add("Contact", self._contact_value(self._contact, expires))
        for old in removes:
            h.add("Contact", self._contact_value(old, 0))
        h.add("Expires", str(expires))
        if self._cfg.allow:
            h.add("Allow", ", ".join(self._cfg.allow))
        if self._cfg.supported:
            h.add("Supported", ", ".join(self._cfg.supported))
        if self._cfg.user_agent:
            h.add("User-Agent", self._cfg.user_agent)
        request = Request("REGISTER", self._registrar, h)
        if self._auth is not None:
            self._auth.authorize(request)  # pre-emptive, once a challenge is known
        self._outbox.append(request)
        self._pending = _Pending(
            self._cseq, now, expires, removes, unregister, rewrite, auth_rounds
        )
        self._deadlines[_Timer.GUARD] = now + self._cfg.response_guard

    def _contact_value(self, uri: URI, expires: int) -> str:
        return str(NameAddr(uri, None, {**self._contact_params, "expires": str(expires)}))

    def _add_stale(self, old: URI) -> None:
        if old not in self._stale:
            self._stale.append(old)
            del self._stale[:-_MAX_STALE_CONTACTS]

    # -- small helpers ------------------------------------------------------------------------

    def _match(self, request: Request) -> _Pending | None:
        """The pending record ``request`` answers, or None (superseded or foreign)."""
        pending = self._pending
        if pending is None:
            return None
        try:
            if request.call_id != self._call_id or request.cseq.seq != pending.cseq:
                return None
        except (LookupError, SipParseError):
            return None
        return pending

    def _stop_timer(self, *timers: _Timer) -> None:
        for timer in timers:
            self._deadlines.pop(timer, None)

    def _clear_timers(self) -> None:
        self._deadlines.clear()

    def _move(self, new: RegistrationState, note: str, retry_in: float | None = None) -> None:
        """The one place the state changes; transitions outside the table raise."""
        old = self._state
        if new not in _TRANSITIONS[old]:
            raise RegistrationStateError(
                f"illegal registration transition {old.value} -> {new.value}"
            )
        self._state = new
        self._events.append(
            RegistrationStateChanged(
                old,
                new,
                self._status_code,
                self._status_text,
                self._granted if new in _BOUND else None,
                retry_in,
                note,
            )
        )

    def __repr__(self) -> str:
        return f"<Registration {self._aor.uri} {self._state.value} contact={self._contact}>"
