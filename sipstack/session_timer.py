"""Session timers (RFC 4028) for INVITE sessions, sans-IO.

A SIP session has no keep-alive of its own: when a peer or a proxy forgets a
call (crash, NAT reboot) the other side keeps it forever. RFC 4028 makes one
side, the *refresher*, repeat a re-INVITE (or UPDATE) every half
Session-Expires; the other side ends the call with a BYE when no refresh came
in time. Many PBXs require it and drop calls that do not play along.

:class:`SessionTimer` negotiates the interval and refresher on each INVITE
transaction (ours or the peer's), decorates our requests and 2xx responses, and
reports the next deadline with what to do then. It never reads the clock.
Refresher values ``uac``/``uas`` name the UAC and UAS *of the transaction that
negotiated them* (RFC 4028 7.1), not of the dialog.
"""

from __future__ import annotations

import enum

from sipstack.message import Message, Request, Response
from sipstack.records import dataclass

__all__ = [
    "SessionTimer",
    "SessionTimerAction",
    "SessionTimerConfig",
    "SessionTimerMode",
    "parse_session_expires",
]

# RFC 4028 4: Min-SE may never be below 90 s; 1800 s is the recommended default.
ABSOLUTE_MIN_SE = 90
DEFAULT_SESSION_EXPIRES = 1800
TIMER_TAG = "timer"


class SessionTimerMode(enum.Enum):
    """How keen we are on session timers (PJSUA's ``timer_use``).

    OFF: not offered, peers' requests for it ignored (we answer without).
    SUPPORTED: offered (``Supported: timer`` and Session-Expires); used when
    the peer agrees. ALWAYS: as SUPPORTED, and when the peer does not take it
    up we refresh anyway, as refresher, with our own interval (RFC 4028 7.2
    lets a UAC do so).
    """

    OFF = "off"
    SUPPORTED = "supported"
    ALWAYS = "always"


class SessionTimerAction(enum.Enum):
    """What the session must do when the timer's deadline comes."""

    REFRESH = "refresh"  # we are the refresher: send a re-INVITE now
    EXPIRE = "expire"  # we are the refreshee and nothing came: BYE


@dataclass(frozen=True, slots=True)
class SessionTimerConfig:
    """Our preferences: interval asked for and the smallest we accept (RFC 4028 4, 5)."""

    mode: SessionTimerMode = SessionTimerMode.SUPPORTED
    session_expires: int = DEFAULT_SESSION_EXPIRES
    min_se: int = ABSOLUTE_MIN_SE

    def __post_init__(self) -> None:
        if self.min_se < ABSOLUTE_MIN_SE:
            raise ValueError(f"min_se must be at least {ABSOLUTE_MIN_SE} s (RFC 4028 4)")
        if self.session_expires < self.min_se:
            raise ValueError(f"session_expires {self.session_expires} is below min_se")


def parse_session_expires(message: Message) -> tuple[int, str | None] | None:
    """``(seconds, refresher)`` from a Session-Expires header, or None.

    A malformed value counts as absent: a peer's bad header must not end a call.
    """
    value = message.headers.get("Session-Expires")
    if value is None:
        return None
    head, *params = (p.strip() for p in value.split(";"))
    if not head.isdigit():
        return None
    refresher = None
    for param in params:
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher" and val.strip().lower() in ("uac", "uas"):
            refresher = val.strip().lower()
    return int(head), refresher


def _min_se(message: Message) -> int | None:
    value = message.headers.get("Min-SE")
    if value is None:
        return None
    head = value.split(";", 1)[0].strip()
    return int(head) if head.isdigit() else None


class SessionTimer:
    """One session's RFC 4028 state: negotiated interval, who refreshes, deadline."""

    def __init__(self, config: SessionTimerConfig) -> None:
        self._config = config
        self._interval: int | None = None  # negotiated Session-Expires, None = no timer
        self._we_refresh = False
        self._min_se = config.min_se  # raised by a 422 or a peer's Min-SE (RFC 4028 5)
        self._deadline: float | None = None

    # -- asked -------------------------------------------------------------------

    @property
    def interval(self) -> int | None:
        """The negotiated session interval in seconds, or None when not in use."""
        return self._interval

    @property
    def we_refresh(self) -> bool:
        """True when we are the refresher."""
        return self._we_refresh

    @property
    def enabled(self) -> bool:
        """Whether we take part in session timers at all."""
        return self._config.mode is not SessionTimerMode.OFF

    def get_timer(self) -> float | None:
        """When :meth:`due` will say what to do, or None."""
        return self._deadline

    def due(self, now: float) -> SessionTimerAction | None:
        """The action due at ``now`` (the deadline is then cleared), or None."""
        if self._deadline is None or now < self._deadline:
            return None
        self._deadline = None
        return SessionTimerAction.REFRESH if self._we_refresh else SessionTimerAction.EXPIRE

    # -- our requests (we are the UAC of the transaction) ------------------------------

    def decorate_request(self, request: Request) -> None:
        """Add Supported / Session-Expires / Min-SE to our INVITE (RFC 4028 7.1).

        In a refresh we keep the negotiated interval and name ourselves the
        refresher when we are it; otherwise we ask for our interval and let
        the UAS choose who refreshes.
        """
        if not self.enabled:
            return
        _add_supported(request)
        interval = self._interval if self._interval is not None else self._asked()
        value = str(interval)
        if self._interval is not None:
            value += ";refresher=" + ("uac" if self._we_refresh else "uas")
        request.headers.set("Session-Expires", value)
        request.headers.set("Min-SE", str(self._min_se))

    def _asked(self) -> int:
        return max(self._config.session_expires, self._min_se)

    def on_too_small(self, response: Response) -> bool:
        """A 422 (RFC 4028 6): raise our Min-SE to the peer's; True to retry.

        False when the 422 carries no usable Min-SE or asks no more than we
        already offered (retrying would loop).
        """
        wanted = _min_se(response)
        if wanted is None or wanted <= self._current_offer():
            return False
        self._min_se = max(self._min_se, wanted)
        if self._interval is not None and self._interval < wanted:
            self._interval = wanted
        return True

    def _current_offer(self) -> int:
        return self._interval if self._interval is not None else self._asked()

    def on_success_as_uac(self, response: Response, now: float) -> None:
        """Our INVITE got a 2xx: take the interval and refresher from it (RFC 4028 7.2)."""
        if not self.enabled:
            return
        found = parse_session_expires(response)
        if found is None:
            if self._config.mode is SessionTimerMode.ALWAYS:
                # RFC 4028 7.2: the UAS does not do timers; we refresh on our own.
                self._start(self._current_offer(), True, now)
            else:
                self._stop()
            return
        interval, refresher = found
        # RFC 4028 7.2: a 2xx without a refresher parameter leaves it to the UAC.
        self._start(interval, refresher != "uas", now)

    # -- peer's requests (we are the UAS of the transaction) -----------------------------

    def check_request(self, request: Request) -> int | None:
        """RFC 4028 8.1: the Min-SE to answer 422 with when the asked interval is
        below our minimum, else None."""
        if not self.enabled:
            return None
        found = parse_session_expires(request)
        if found is not None and found[0] < self._min_se:
            return self._min_se
        return None

    def on_success_as_uas(self, request: Request, response: Response, now: float) -> None:
        """We answer the peer's INVITE (or UPDATE) with 2xx: negotiate and decorate it.

        RFC 4028 9: with a Session-Expires in the request we keep its interval
        (we could lower it to no less than its Min-SE; we do not need to), and
        its refresher, or choose one: the UAC when it supports timers
        (it asked for them), else us. Without one we use timers only in
        ALWAYS mode, and then refresh ourselves when the UAC cannot.
        """
        if not self.enabled:
            return
        found = parse_session_expires(request)
        uac_supports = TIMER_TAG in request.supported
        if found is not None:
            interval, refresher = found
            if refresher is None:
                refresher = "uac" if uac_supports else "uas"
        elif self._config.mode is SessionTimerMode.ALWAYS:
            interval = self._asked()
            refresher = "uac" if uac_supports else "uas"
        else:
            self._stop()
            return
        peer_min = _min_se(request)
        if peer_min is not None:
            self._min_se = max(self._min_se, peer_min)
        response.headers.set("Session-Expires", f"{interval};refresher={refresher}")
        if uac_supports:
            # RFC 4028 9: Require: timer tells the UAC we really use it.
            response.headers.set("Require", TIMER_TAG)
        self._start(interval, refresher == "uas", now)

    def decorate_2xx(self, response: Response) -> None:
        """Our answer says we support timers (Supported is harmless on any 2xx)."""
        if self.enabled:
            _add_supported(response)

    # -- internals ---------------------------------------------------------------------

    def _start(self, interval: int, we_refresh: bool, now: float) -> None:
        self._interval = interval
        self._we_refresh = we_refresh
        if we_refresh:
            # RFC 4028 10: the refresher sends the refresh at half the interval.
            self._deadline = now + interval / 2
        else:
            # RFC 4028 10: the other side sends BYE min(32, SE/3) before expiry.
            self._deadline = now + interval - min(32.0, interval / 3)

    def _stop(self) -> None:
        self._interval = None
        self._we_refresh = False
        self._deadline = None

    def stop(self) -> None:
        """No more refreshes or expiries (the session ended)."""
        self._stop()


def _add_supported(message: Message) -> None:
    tags = message.supported
    if TIMER_TAG not in tags:
        message.headers.set("Supported", ", ".join([*tags, TIMER_TAG]))
