"""What the device does: the door-station and desk-phone rules as one pure state machine.

It is fed events (buttons from :mod:`hal.debounce`, registration and call
events the application translates from the user agent) with the time they
happened, and it is drained of commands (:class:`MakeCall`, :class:`Answer`,
:class:`PulseRelay`, :class:`ShowLed`...). It never reads a clock and never
touches the user agent or a pin: the application asks :meth:`Behaviour.get_timer`
when to call :meth:`Behaviour.handle_timer` and carries out the commands. So
every rule below is tested with a fake clock, and the firmware's wiring stays
a thin loop.

The rules (``[intercom]`` in the config file):

* A ``call`` button (the bell) calls its targets, one after the other with
  ``ring_timeout`` each (``ring_mode = "sequential"``), or all at once where
  the first to answer wins and the others are cancelled (``"parallel"``).
  Pressing it again while calling out is ignored (visitors press twice);
  pressing it during a connected call hangs up or is ignored
  (``bell_during_call``). ``speed_dial`` buttons call their one target with no
  timeout of ours.
* Incoming calls from ``trusted`` callers are answered at once when
  ``auto_answer`` is set. Others ring (ring tone, LEDs) until answered,
  rejected with the hang-up button, or cancelled by the caller, except on an
  intercom with no answer button, where nobody could pick up: those are
  declined (603).
* While busy, an intercom answers further calls 486 Busy Here; a desk phone
  signals a second call as call waiting (tone, LED). Answer then hangs up the
  current call and takes the waiting one; hang-up ends the current call and
  lets the waiting one ring.
* In a connected call, DTMF digits from an allowed caller (``door_code_from``,
  else ``trusted``) are matched against ``door_code``: a match pulses the
  relay (and hangs up shortly after with ``hangup_after_door``); three wrong
  codes end the call. Partial codes are forgotten after a pause.
* ``max_call_seconds`` ends connected calls.
* Calls asked for from the command line (:class:`DialRequested`) are dialled
  like a bell press with one target; :class:`HangupRequested` does what the
  hang-up button does. So ``intercom call`` shows on the LEDs, plays ringback
  and is cut by ``max_call_seconds`` like any other call.
* A long press of a hang-up button ends everything (calls, waiting, dialing).

The application correlates our :class:`MakeCall` (which carries a ``ref``)
with the user agent's call id by feeding :class:`CallPlaced` right after it
placed the call.
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from hal.debounce import ButtonLongPressed, ButtonPressed, ButtonReleased, LedPattern
from hal.gpio import DOUBLE_FLASH, FAST_BLINK, HEARTBEAT, SLOW_BLINK, STEADY

from .config import ButtonSettings, Config, IntercomSettings, LedSettings

__all__ = [
    "PhoneState",
    "CallPhase",
    "RegStatus",
    "LedState",
    "ToneKind",
    "LED_PATTERNS",
    "RegistrationChanged",
    "IncomingCall",
    "CallPlaced",
    "CallStateChanged",
    "DtmfReceived",
    "FaultChanged",
    "DialRequested",
    "HangupRequested",
    "BehaviourEvent",
    "MakeCall",
    "Answer",
    "Hangup",
    "PulseRelay",
    "ShowLed",
    "PlayTone",
    "StopTone",
    "Log",
    "Command",
    "BehaviourError",
    "Behaviour",
    "caller_matches",
]

# -- states -----------------------------------------------------------------------


class PhoneState(enum.Enum):
    """What the device is doing, as a person would say it."""

    IDLE = "idle"
    DIALING = "dialing"  # calling targets out, nobody answered yet
    RINGING = "ringing"  # an incoming call rings here
    IN_CALL = "in call"  # one call answered (or being answered)
    CALL_WAITING = "call waiting"  # in a call, and a second one rings (desk phone)


# Every legal move, in one place (GUIDE rule 2). Anything else is our bug.
_TRANSITIONS: Mapping[PhoneState, frozenset[PhoneState]] = MappingProxyType(
    {
        PhoneState.IDLE: frozenset({PhoneState.DIALING, PhoneState.RINGING, PhoneState.IN_CALL}),
        PhoneState.DIALING: frozenset({PhoneState.IDLE, PhoneState.IN_CALL}),
        PhoneState.RINGING: frozenset({PhoneState.IDLE, PhoneState.IN_CALL}),
        PhoneState.IN_CALL: frozenset({PhoneState.IDLE, PhoneState.CALL_WAITING}),
        PhoneState.CALL_WAITING: frozenset(
            {PhoneState.IDLE, PhoneState.IN_CALL, PhoneState.RINGING}
        ),
    }
)


class CallPhase(enum.Enum):
    """A call's state, named as PJSIP's ``pjsip_inv_state``."""

    CALLING = "calling"
    INCOMING = "incoming"
    EARLY = "early"
    CONNECTING = "connecting"
    CONFIRMED = "confirmed"
    DISCONNECTED = "disconnected"


class RegStatus(enum.Enum):
    """One account's registration, as the status LED sees it."""

    NOT_REGISTERED = "not registered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


class LedState(enum.Enum):
    """What a ``shows = "status"`` LED tells, most urgent first."""

    RINGING = "ringing"
    IN_CALL = "in call"
    ERROR = "error"
    REGISTERING = "registering"
    NOT_REGISTERED = "not registered"
    IDLE = "idle"


#: The hardware layer's patterns for each status (None: off).
LED_PATTERNS: Mapping[LedState, LedPattern | None] = MappingProxyType(
    {
        LedState.RINGING: FAST_BLINK,
        LedState.IN_CALL: STEADY,
        LedState.ERROR: DOUBLE_FLASH,
        LedState.REGISTERING: SLOW_BLINK,
        LedState.NOT_REGISTERED: None,
        LedState.IDLE: HEARTBEAT,
    }
)


class ToneKind(enum.Enum):
    """Tones the application plays. RING (speaker), RINGBACK (speaker, while
    calling out) and CALL_WAITING loop until :class:`StopTone`; the others
    play once (DOOR_OPENED and WRONG_CODE into the call, for the caller)."""

    RING = "ring"
    RINGBACK = "ringback"
    CALL_WAITING = "call waiting"
    BUSY = "busy"
    DOOR_OPENED = "door opened"
    WRONG_CODE = "wrong code"


_STATE_TONE: Mapping[PhoneState, ToneKind | None] = MappingProxyType(
    {
        PhoneState.IDLE: None,
        PhoneState.DIALING: ToneKind.RINGBACK,
        PhoneState.RINGING: ToneKind.RING,
        PhoneState.IN_CALL: None,
        PhoneState.CALL_WAITING: ToneKind.CALL_WAITING,
    }
)

# -- events in ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """An account's registration changed. ``status`` None means REGISTERED when
    ``registered`` else REGISTERING (the user agent keeps trying)."""

    acc: int
    registered: bool
    status: RegStatus | None = None


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A call arrived (``remote_uri``: the caller's URI, From)."""

    call_id: int
    remote_uri: str


@dataclass(frozen=True, slots=True)
class CallPlaced:
    """The application carried out :class:`MakeCall` ``ref``: the user agent's
    ``call_id``, or None when placing it failed at once (``reason`` says why)."""

    ref: int
    call_id: int | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CallStateChanged:
    """A call moved to ``state``; ``status`` is the SIP code that ended it, if any."""

    call_id: int
    state: CallPhase
    status: int = 0


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A DTMF digit (RFC 4733 event or SIP INFO) arrived in a call."""

    call_id: int
    digit: str


@dataclass(frozen=True, slots=True)
class FaultChanged:
    """Something outside SIP is broken (``active``) or fine again: the audio device,
    the network. Any active fault shows as the error LED state."""

    what: str
    active: bool


@dataclass(frozen=True, slots=True)
class DialRequested:
    """Someone asked for a call to ``target`` (``intercom call``), from account
    ``acc`` (None: the behaviour's calling account). It is dialled like a bell
    press with one target: only when idle, with ``ring_timeout``, LEDs and
    ``max_call_seconds`` applying."""

    target: str
    acc: int | None = None


@dataclass(frozen=True, slots=True)
class HangupRequested:
    """Someone asked to hang up (``intercom hangup``): what a short press of a
    hang-up button does, whether one is wired or not."""


BehaviourEvent = (
    ButtonPressed
    | ButtonReleased
    | ButtonLongPressed
    | RegistrationChanged
    | IncomingCall
    | CallPlaced
    | CallStateChanged
    | DtmfReceived
    | FaultChanged
    | DialRequested
    | HangupRequested
)

# -- commands out ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MakeCall:
    """Call ``target`` from account ``acc``; report the call id with :class:`CallPlaced`."""

    acc: int
    target: str
    ref: int


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer an incoming call."""

    call_id: int
    code: int = 200


@dataclass(frozen=True, slots=True)
class Hangup:
    """End a call in whatever state (CANCEL, BYE or a final answer); ``code`` is the
    answer to an unanswered incoming call (0: the user agent's default)."""

    call_id: int
    code: int = 0


@dataclass(frozen=True, slots=True)
class PulseRelay:
    """Energise the door relay for ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class ShowLed:
    """Show ``pattern`` on LED ``name``; None turns it off."""

    name: str
    pattern: LedPattern | None


@dataclass(frozen=True, slots=True)
class PlayTone:
    """Start a tone (see :class:`ToneKind` for which loop)."""

    kind: ToneKind


@dataclass(frozen=True, slots=True)
class StopTone:
    """Stop the looping tone."""


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the log (never holds a password or the door code)."""

    msg: str
    level: str = "info"


Command = MakeCall | Answer | Hangup | PulseRelay | ShowLed | PlayTone | StopTone | Log


class BehaviourError(RuntimeError):
    """An illegal state transition: a bug in this module, not the caller's fault."""


# -- caller patterns -----------------------------------------------------------------------


def _address(uri: str) -> str:
    """``"Flat" <sip:Flat@PBX.example.com;transport=tcp>`` -> ``sip:Flat@pbx.example.com``."""
    text = uri.strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1 : text.index(">")]
    scheme, _, rest = text.partition(":")
    user, at, host = rest.rpartition("@")
    user = user.split(":", 1)[0]  # drop a password
    host = re.split(r"[;?]", host, maxsplit=1)[0]
    return f"{scheme.lower()}:{user}{at}{host.lower()}"


def caller_matches(uri: str, patterns: Iterable[str]) -> bool:
    """Whether ``uri`` matches any pattern. ``*`` and ``?`` are wildcards; scheme
    and host compare case-insensitively, the user part exactly (RFC 3261 19.1.4);
    URI parameters and display names are ignored."""
    addr = _address(uri)
    for pattern in patterns:
        norm = re.escape(_address(pattern)).replace(r"\*", ".*").replace(r"\?", ".")
        if re.fullmatch(norm, addr):
            return True
    return False


# -- the machine ---------------------------------------------------------------------------


class _Timer(enum.IntEnum):
    """Deadlines; on equal times the lower value fires first."""

    MAX_CALL = 1
    DOOR_HANGUP = 2
    RING_TIMEOUT = 3
    DIGITS = 4


@dataclass
class _Call:
    """One call we care about (mutable: its phase and id change)."""

    remote: str
    outgoing: bool
    call_id: int | None = None
    ref: int | None = None
    phase: CallPhase = CallPhase.CALLING
    door_denied_logged: bool = False


class Behaviour:
    """The device's rules; see the module docstring.

    ``accounts`` are the user-agent ids of accounts that register (local ones
    do not); they start NOT_REGISTERED. ``call_account`` places outgoing calls.
    ``relay_pulse`` is None when no relay is wired.
    """

    def __init__(
        self,
        intercom: IntercomSettings,
        *,
        now: float,
        buttons: Sequence[ButtonSettings] = (),
        leds: Sequence[LedSettings] = (),
        relay_pulse: float | None = None,
        call_account: int = 0,
        accounts: Sequence[int] = (),
        door_hangup_delay: float = 1.0,
        digit_timeout: float = 5.0,
        max_wrong_codes: int = 3,
    ) -> None:
        self._settings = intercom
        self._buttons = {b.name: b for b in buttons}
        self._leds = tuple(leds)
        self._relay_pulse = relay_pulse
        self._call_account = call_account
        self._door_hangup_delay = door_hangup_delay
        self._digit_timeout = digit_timeout
        self._max_wrong_codes = max_wrong_codes
        self._door_from = intercom.door_code_from or intercom.trusted
        self._can_answer = any(b.action == "answer" for b in buttons)

        self._now = now
        self._state = PhoneState.IDLE
        self._commands: deque[Command] = deque()
        self._timers: dict[_Timer, float] = {}
        self._tone: ToneKind | None = None
        self._shown: dict[str, LedPattern | None] = {}
        self._reg: dict[int, RegStatus] = {acc: RegStatus.NOT_REGISTERED for acc in accounts}
        self._faults: set[str] = set()

        self._calls: dict[int, _Call] = {}  # by call id: every call we still track
        self._active: _Call | None = None  # answered / connected
        self._ringing: _Call | None = None  # ringing here (or waiting)
        self._attempts: list[_Call] = []  # outgoing, while DIALING
        self._targets: list[str] = []  # still to call (sequential)
        self._ring_timeout: float | None = None
        self._dial_account = call_account  # the account of the calls being dialled
        self._next_ref = 1
        self._digits = ""
        self._wrong_codes = 0
        self._refresh_leds()

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        now: float,
        call_account: int = 0,
        accounts: Sequence[int] = (),
    ) -> Behaviour:
        """Build from a loaded :class:`~firmware.config.Config`."""
        return cls(
            config.intercom,
            now=now,
            buttons=config.buttons,
            leds=config.leds,
            relay_pulse=None if config.relay is None else config.relay.pulse_seconds,
            call_account=call_account,
            accounts=accounts,
        )

    def reconfigure(
        self, config: Config, *, call_account: int = 0, accounts: Sequence[int] = ()
    ) -> None:
        """Take a reloaded config's rules without dropping what is going on.

        Calls in progress go on; a connected call keeps the ``max_call_seconds``
        deadline it got when it was answered. Accounts no longer listed are
        forgotten, new ones start NOT_REGISTERED. LEDs whose meaning changed are
        shown anew (drain the commands).
        """
        intercom = config.intercom
        self._settings = intercom
        self._buttons = {b.name: b for b in config.buttons}
        self._leds = tuple(config.leds)
        self._relay_pulse = None if config.relay is None else config.relay.pulse_seconds
        self._call_account = call_account
        self._door_from = intercom.door_code_from or intercom.trusted
        self._can_answer = any(b.action == "answer" for b in config.buttons)
        self._reg = {acc: self._reg.get(acc, RegStatus.NOT_REGISTERED) for acc in accounts}
        names = {led.name for led in self._leds}
        self._shown = {name: p for name, p in self._shown.items() if name in names}
        self._refresh_leds()

    # -- the sans-IO surface ------------------------------------------------------------

    @property
    def state(self) -> PhoneState:
        """What the device is doing."""
        return self._state

    @property
    def active_call(self) -> int | None:
        """The answered call's id, if any."""
        return None if self._active is None else self._active.call_id

    @property
    def ringing_call(self) -> int | None:
        """The call ringing here (or waiting), if any."""
        return None if self._ringing is None else self._ringing.call_id

    def drain_commands(self) -> list[Command]:
        """Every command emitted since the last call, in order."""
        out = list(self._commands)
        self._commands.clear()
        return out

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (None: no deadline)."""
        return min(self._timers.values(), default=None)

    def handle_timer(self, now: float) -> None:
        """Run every deadline that is due at ``now``."""
        self._now = now
        while True:
            due = sorted(t for t, when in self._timers.items() if when <= now)
            if not due:
                return
            timer = due[0]
            del self._timers[timer]
            self._on_timer(timer)

    def handle_event(self, event: BehaviourEvent, now: float) -> None:
        """Feed one event that happened at ``now``."""
        self._now = now
        match event:
            case ButtonPressed(button=name):
                self._on_button(name)
            case ButtonLongPressed(button=name):
                b = self._buttons.get(name)
                if b is not None and b.action == "hangup":
                    self._hangup_everything(f"long press of {name!r}")
            case ButtonReleased():
                pass  # everything acts on the press
            case RegistrationChanged():
                self._on_registration(event)
            case IncomingCall():
                self._on_incoming(event.call_id, event.remote_uri)
            case CallPlaced():
                self._on_placed(event)
            case CallStateChanged():
                self._on_call_state(event)
            case DtmfReceived():
                self._on_dtmf(event.call_id, event.digit)
            case DialRequested():
                self._on_dial_request(event)
            case HangupRequested():
                self._on_hangup_button()
            case FaultChanged():
                if event.active:
                    self._faults.add(event.what)
                else:
                    self._faults.discard(event.what)
                self._refresh_leds()

    # -- transitions ---------------------------------------------------------------------

    def _move(self, new: PhoneState, why: str) -> None:
        """The one place the state changes: check the table, set tone and LEDs."""
        if new not in _TRANSITIONS[self._state]:
            raise BehaviourError(f"illegal transition {self._state.value} -> {new.value} ({why})")
        self._log(f"{self._state.value} -> {new.value}: {why}")
        self._state = new
        tone = _STATE_TONE[new]
        if tone != self._tone:
            self._commands.append(StopTone() if tone is None else PlayTone(tone))
            self._tone = tone
        if new is not PhoneState.DIALING:
            self._timers.pop(_Timer.RING_TIMEOUT, None)
        self._refresh_leds()

    def _set_active(self, call: _Call | None) -> None:
        """Change the answered call; its door-code entry and deadlines start afresh."""
        self._active = call
        self._digits = ""
        self._wrong_codes = 0
        for timer in (_Timer.MAX_CALL, _Timer.DOOR_HANGUP, _Timer.DIGITS):
            self._timers.pop(timer, None)

    def _after_active_gone(self, why: str) -> None:
        """The answered call ended: ring a waiting call, or go idle."""
        self._set_active(None)
        if self._ringing is not None:
            self._move(PhoneState.RINGING, why)
        elif self._state is not PhoneState.IDLE:
            self._move(PhoneState.IDLE, why)

    # -- buttons --------------------------------------------------------------------------

    def _on_button(self, name: str) -> None:
        button = self._buttons.get(name)
        if button is None:
            self._log(f"button {name!r} is not configured; ignored", "warning")
            return
        action = button.action
        if action == "door":
            self._open_door(f"button {name!r}")
        elif action == "call":
            self._on_bell(button)
        elif action == "speed_dial":
            if self._state is PhoneState.IDLE:
                self._dial(list(button.targets), parallel=False, timeout=None, why=name)
            else:
                self._log(f"speed dial {name!r} ignored while {self._state.value}")
        elif action == "answer":
            self._on_answer_button()
        elif action == "hangup":
            self._on_hangup_button()

    def _on_bell(self, button: ButtonSettings) -> None:
        s = self._settings
        if self._state is PhoneState.IDLE:
            self._dial(
                list(button.targets),
                parallel=s.ring_mode == "parallel",
                timeout=s.ring_timeout,
                why=f"button {button.name!r}",
            )
        elif self._active is not None and s.bell_during_call == "hangup":
            self._hangup_active(f"button {button.name!r} pressed during the call")
        else:
            self._log(f"button {button.name!r} ignored while {self._state.value}")

    def _on_dial_request(self, event: DialRequested) -> None:
        if self._state is not PhoneState.IDLE:
            self._log(f"call to {event.target} refused while {self._state.value}", "warning")
            return
        self._dial(
            [event.target],
            parallel=False,
            timeout=self._settings.ring_timeout,
            why="call request",
            acc=event.acc,
        )

    def _on_answer_button(self) -> None:
        waiting = self._ringing
        waiting_id = None if waiting is None else waiting.call_id
        if waiting is None or waiting_id is None:
            self._log(f"answer ignored while {self._state.value}")
            return
        active_id = None if self._active is None else self._active.call_id
        if self._active is not None and active_id is not None:
            # Call waiting: no hold yet, so answering swaps the calls.
            self._commands.append(Hangup(active_id))
            self._forget(self._active)
        self._ringing = None
        self._set_active(waiting)
        self._commands.append(Answer(waiting_id))
        self._move(PhoneState.IN_CALL, f"answered {waiting.remote}")

    def _on_hangup_button(self) -> None:
        if self._state is PhoneState.DIALING:
            self._cancel_dialing("hang-up button")
        elif self._active is not None:
            self._hangup_active("hang-up button")
        elif self._ringing is not None:
            call = self._ringing
            self._reject_ringing()
            self._move(PhoneState.IDLE, f"rejected {call.remote}")
        else:
            self._log(f"hang-up ignored while {self._state.value}")

    def _hangup_everything(self, why: str) -> None:
        if self._state is PhoneState.DIALING:
            self._cancel_dialing(why)
            return
        if self._ringing is not None:
            self._reject_ringing()
        if self._active is not None:
            self._hangup_active(why)
        elif self._state is not PhoneState.IDLE:
            self._move(PhoneState.IDLE, why)

    def _reject_ringing(self) -> None:
        call = self._ringing
        assert call is not None and call.call_id is not None
        self._commands.append(Hangup(call.call_id))
        self._forget(call)
        self._ringing = None

    def _open_door(self, why: str) -> None:
        if self._relay_pulse is None:
            self._log(f"no relay configured; door not opened ({why})", "warning")
            return
        self._commands.append(PulseRelay(self._relay_pulse))
        self._log(f"door opened: {why}")

    # -- dialing out -------------------------------------------------------------------

    def _dial(
        self,
        targets: list[str],
        *,
        parallel: bool,
        timeout: float | None,
        why: str,
        acc: int | None = None,
    ) -> None:
        if not targets:
            self._log(f"{why}: no targets to call", "warning")
            return
        self._dial_account = self._call_account if acc is None else acc
        self._targets = targets
        self._ring_timeout = timeout
        self._move(PhoneState.DIALING, f"{why}: calling {', '.join(targets)}")
        if parallel:
            while self._targets:
                self._place(self._targets.pop(0))
            self._arm_ring_timeout()
        else:
            self._dial_next()

    def _place(self, target: str) -> None:
        ref = self._next_ref
        self._next_ref += 1
        self._attempts.append(_Call(target, outgoing=True, ref=ref))
        self._commands.append(MakeCall(self._dial_account, target, ref))

    def _arm_ring_timeout(self) -> None:
        if self._ring_timeout is not None:
            self._timers[_Timer.RING_TIMEOUT] = self._now + self._ring_timeout

    def _dial_next(self) -> None:
        """Sequential: call the next target, or give up when none is left."""
        if not self._targets:
            self._dialing_failed()
            return
        self._place(self._targets.pop(0))
        self._arm_ring_timeout()

    def _dialing_failed(self) -> None:
        self._move(PhoneState.IDLE, "nobody answered")
        self._commands.append(PlayTone(ToneKind.BUSY))

    def _drop_attempt(self, call: _Call, hang_up: bool) -> None:
        self._attempts.remove(call)
        if hang_up and call.call_id is not None:
            self._commands.append(Hangup(call.call_id))
        self._forget(call)

    def _attempt_ended(self, call: _Call, why: str) -> None:
        """One outgoing attempt failed (busy, declined, unreachable)."""
        self._drop_attempt(call, hang_up=False)
        self._log(f"call to {call.remote} failed: {why}")
        if self._attempts:
            return  # parallel: the others still ring
        if self._targets:
            self._dial_next()
        else:
            self._dialing_failed()

    def _cancel_dialing(self, why: str) -> None:
        for call in list(self._attempts):
            self._drop_attempt(call, hang_up=True)
        self._targets = []
        self._move(PhoneState.IDLE, f"calling cancelled: {why}")

    def _on_placed(self, event: CallPlaced) -> None:
        call = next((c for c in self._attempts if c.ref == event.ref), None)
        if call is None:
            if event.call_id is not None:  # we gave up on it before it was placed
                self._commands.append(Hangup(event.call_id))
            return
        if event.call_id is None:
            self._attempt_ended(call, event.reason or "could not place the call")
            return
        call.call_id = event.call_id
        self._calls[event.call_id] = call

    # -- calls ------------------------------------------------------------------------

    def _on_incoming(self, call_id: int, remote: str) -> None:
        s = self._settings
        call = _Call(remote, outgoing=False, call_id=call_id, phase=CallPhase.INCOMING)
        if self._state is PhoneState.IDLE:
            if s.auto_answer and caller_matches(remote, s.trusted):
                self._calls[call_id] = call
                self._set_active(call)
                self._commands.append(Answer(call_id))
                self._move(PhoneState.IN_CALL, f"auto-answered trusted caller {remote}")
            elif s.profile == "intercom" and not self._can_answer:
                self._commands.append(Hangup(call_id, 603))
                self._log(f"declined {remote}: not trusted and no answer button")
            else:
                self._calls[call_id] = call
                self._ringing = call
                self._move(PhoneState.RINGING, f"call from {remote}")
        elif self._state is PhoneState.IN_CALL and s.profile == "desk":
            self._calls[call_id] = call
            self._ringing = call
            self._move(PhoneState.CALL_WAITING, f"second call from {remote}")
        else:
            self._commands.append(Hangup(call_id, 486))  # RFC 3261 21.4.24 Busy Here
            self._log(f"busy: refused {remote} while {self._state.value}")

    def _on_call_state(self, event: CallStateChanged) -> None:
        call = self._calls.get(event.call_id)
        if call is None:
            return  # a call we already let go of
        call.phase = event.state
        if event.state is CallPhase.CONFIRMED:
            self._on_confirmed(call)
        elif event.state is CallPhase.DISCONNECTED:
            self._on_disconnected(call, event.status)

    def _on_confirmed(self, call: _Call) -> None:
        if call in self._attempts:
            # The first to answer wins; cancel the others (parallel ringing).
            self._attempts.remove(call)
            for other in list(self._attempts):
                self._drop_attempt(other, hang_up=True)
            self._targets = []
            self._set_active(call)
            self._move(PhoneState.IN_CALL, f"{call.remote} answered")
        if call is self._active and self._settings.max_call_seconds:
            self._timers.setdefault(_Timer.MAX_CALL, self._now + self._settings.max_call_seconds)

    def _on_disconnected(self, call: _Call, status: int) -> None:
        why = f"{call.remote} ended the call" + (f" ({status})" if status else "")
        if call in self._attempts:
            self._attempt_ended(call, str(status) if status else "disconnected")
            return
        self._forget(call)
        if call is self._active:
            self._after_active_gone(why)
        elif call is self._ringing:
            self._ringing = None
            self._move(PhoneState.IN_CALL if self._active else PhoneState.IDLE, why)

    def _hangup_active(self, why: str) -> None:
        call = self._active
        assert call is not None and call.call_id is not None  # only answered calls are active
        self._commands.append(Hangup(call.call_id))
        self._forget(call)
        self._after_active_gone(why)

    def _forget(self, call: _Call) -> None:
        if call.call_id is not None:
            self._calls.pop(call.call_id, None)

    # -- DTMF door code -------------------------------------------------------------------

    def _on_dtmf(self, call_id: int, digit: str) -> None:
        call = self._active
        code = self._settings.door_code
        if call is None or call.call_id != call_id or call.phase is not CallPhase.CONFIRMED:
            return
        if not code or self._relay_pulse is None:
            return
        if not caller_matches(call.remote, self._door_from):
            if not call.door_denied_logged:
                call.door_denied_logged = True
                self._log(f"DTMF from {call.remote} ignored: not allowed to open", "warning")
            return
        self._digits += digit
        self._timers[_Timer.DIGITS] = self._now + self._digit_timeout
        if len(self._digits) < len(code):
            return
        entered, self._digits = self._digits, ""
        self._timers.pop(_Timer.DIGITS, None)
        import hmac  # here: it loads OpenSSL's libcrypto, only door codes need it

        if hmac.compare_digest(entered.encode(), code.encode()):
            self._open_door(f"door code from {call.remote}")
            self._commands.append(PlayTone(ToneKind.DOOR_OPENED))
            if self._settings.hangup_after_door:
                self._timers[_Timer.DOOR_HANGUP] = self._now + self._door_hangup_delay
            return
        self._wrong_codes += 1
        self._commands.append(PlayTone(ToneKind.WRONG_CODE))
        self._log(
            f"wrong door code from {call.remote} ({self._wrong_codes} of {self._max_wrong_codes})",
            "warning",
        )
        if self._wrong_codes >= self._max_wrong_codes:
            self._hangup_active("too many wrong door codes")

    # -- timers ---------------------------------------------------------------------------

    def _on_timer(self, timer: _Timer) -> None:
        if timer is _Timer.MAX_CALL and self._active is not None:
            self._hangup_active(f"max_call_seconds ({self._settings.max_call_seconds} s) reached")
        elif timer is _Timer.DOOR_HANGUP and self._active is not None:
            self._hangup_active("door opened (hangup_after_door)")
        elif timer is _Timer.DIGITS:
            self._digits = ""  # a partial code is forgotten after a pause
        elif timer is _Timer.RING_TIMEOUT and self._state is PhoneState.DIALING:
            for call in list(self._attempts):
                self._log(f"no answer from {call.remote} in {self._ring_timeout:g} s")
                self._drop_attempt(call, hang_up=True)
            self._dial_next()

    # -- registration and LEDs -----------------------------------------------------------

    def _on_registration(self, event: RegistrationChanged) -> None:
        status = event.status or (
            RegStatus.REGISTERED if event.registered else RegStatus.REGISTERING
        )
        if self._reg.get(event.acc) is not status:
            self._log(f"account {event.acc}: {status.value}")
        self._reg[event.acc] = status
        self._refresh_leds()

    @property
    def led_state(self) -> LedState:
        """What a status LED shows now."""
        if self._state in (PhoneState.RINGING, PhoneState.CALL_WAITING):
            return LedState.RINGING
        if self._state is PhoneState.IN_CALL:
            return LedState.IN_CALL
        statuses = set(self._reg.values())
        if self._faults or RegStatus.FAILED in statuses:
            return LedState.ERROR
        if RegStatus.REGISTERING in statuses:
            return LedState.REGISTERING
        if RegStatus.NOT_REGISTERED in statuses:
            return LedState.NOT_REGISTERED
        return LedState.IDLE

    def _pattern(self, shows: str) -> LedPattern | None:
        if shows == "status":
            return LED_PATTERNS[self.led_state]
        if shows == "ringing":
            if self._state in (PhoneState.RINGING, PhoneState.CALL_WAITING):
                return FAST_BLINK
            return SLOW_BLINK if self._state is PhoneState.DIALING else None
        if self._state in (PhoneState.IN_CALL, PhoneState.CALL_WAITING):
            return STEADY  # shows == "call"
        return None

    def _refresh_leds(self) -> None:
        """Emit :class:`ShowLed` for each LED whose pattern changed (restarting a
        blink that did not change would make it stutter)."""
        for led in self._leds:
            pattern = self._pattern(led.shows)
            if led.name not in self._shown or self._shown[led.name] != pattern:
                self._shown[led.name] = pattern
                self._commands.append(ShowLed(led.name, pattern))

    def _log(self, msg: str, level: str = "info") -> None:
        self._commands.append(Log(msg, level))
