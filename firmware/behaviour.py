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

This module holds the rules and the one state table; the pieces with a job of
their own live beside it and are re-exported here, where the rest of the
firmware imports them from: the events and commands
(:mod:`firmware.behaviour_events`), calling out (:mod:`firmware.dialing`), the
door code (:mod:`firmware.door_code`), the LEDs (:mod:`firmware.leds`) and
caller patterns (:mod:`firmware.callers`).
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from hal.debounce import ButtonLongPressed, ButtonPressed, ButtonReleased

from .behaviour_events import (
    Answer,
    BehaviourEvent,
    CallPhase,
    CallPlaced,
    CallStateChanged,
    Command,
    DialRequested,
    DtmfReceived,
    FaultChanged,
    Hangup,
    HangupRequested,
    IncomingCall,
    Log,
    MakeCall,
    PhoneState,
    PlayTone,
    PulseRelay,
    RegistrationChanged,
    RegStatus,
    ShowLed,
    StopTone,
    ToneKind,
)
from .callers import caller_matches
from .config import ButtonSettings, Config, IntercomSettings, LedSettings
from .dialing import Dialer, DialStep, TrackedCall
from .door_code import CodeVerdict, DoorCodeEntry
from .leds import LED_PATTERNS, LedPanel, LedState, status_led_state

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

_STATE_TONE: Mapping[PhoneState, ToneKind | None] = MappingProxyType(
    {
        PhoneState.IDLE: None,
        PhoneState.DIALING: ToneKind.RINGBACK,
        PhoneState.RINGING: ToneKind.RING,
        PhoneState.IN_CALL: None,
        PhoneState.CALL_WAITING: ToneKind.CALL_WAITING,
    }
)


class BehaviourError(RuntimeError):
    """An illegal state transition: a bug in this module, not the caller's fault."""


class _Timer(enum.IntEnum):
    """Deadlines; on equal times the lower value fires first."""

    MAX_CALL = 1
    DOOR_HANGUP = 2
    RING_TIMEOUT = 3
    DIGITS = 4


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
        self._relay_pulse = relay_pulse
        self._call_account = call_account
        self._door_hangup_delay = door_hangup_delay
        self._digit_timeout = digit_timeout
        self._door_from = intercom.door_code_from or intercom.trusted
        self._can_answer = any(b.action == "answer" for b in buttons)

        self._now = now
        self._state = PhoneState.IDLE
        self._commands: deque[Command] = deque()
        self._timers: dict[_Timer, float] = {}
        self._tone: ToneKind | None = None
        self._leds = LedPanel(leds)
        self._reg: dict[int, RegStatus] = {acc: RegStatus.NOT_REGISTERED for acc in accounts}
        self._faults: set[str] = set()

        self._calls: dict[int, TrackedCall] = {}  # by call id: incoming and answered calls
        self._active: TrackedCall | None = None  # answered / connected
        self._ringing: TrackedCall | None = None  # ringing here (or waiting)
        self._dialer = Dialer(self._commands)  # outgoing attempts, while DIALING
        self._code = DoorCodeEntry(max_wrong_codes)  # the active call's door code
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
        self._relay_pulse = None if config.relay is None else config.relay.pulse_seconds
        self._call_account = call_account
        self._door_from = intercom.door_code_from or intercom.trusted
        self._can_answer = any(b.action == "answer" for b in config.buttons)
        self._reg = {acc: self._reg.get(acc, RegStatus.NOT_REGISTERED) for acc in accounts}
        self._leds.reconfigure(config.leds)
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

    @property
    def led_state(self) -> LedState:
        """What a status LED shows now."""
        return status_led_state(self._state, self._reg.values(), bool(self._faults))

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
                self._dial_step(self._dialer.placed(event.ref, event.call_id, event.reason))
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

    def _set_active(self, call: TrackedCall | None) -> None:
        """Change the answered call; its door-code entry and deadlines start afresh."""
        self._active = call
        self._code.reset()
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
        self._move(PhoneState.DIALING, f"{why}: calling {', '.join(targets)}")
        account = self._call_account if acc is None else acc
        self._dialer.start(targets, parallel=parallel, timeout=timeout, acc=account)
        self._dial_step(DialStep.PLACED)

    def _dial_step(self, step: DialStep) -> None:
        """Follow the dialer: a new attempt gets the full ring timeout; when
        nobody is left to call, give up with the busy tone."""
        if step is DialStep.PLACED:
            if self._dialer.ring_timeout is not None:
                self._timers[_Timer.RING_TIMEOUT] = self._now + self._dialer.ring_timeout
        elif step is DialStep.EXHAUSTED:
            self._move(PhoneState.IDLE, "nobody answered")
            self._commands.append(PlayTone(ToneKind.BUSY))

    def _cancel_dialing(self, why: str) -> None:
        self._dialer.cancel()
        self._move(PhoneState.IDLE, f"calling cancelled: {why}")

    # -- calls ------------------------------------------------------------------------

    def _on_incoming(self, call_id: int, remote: str) -> None:
        s = self._settings
        call = TrackedCall(remote, outgoing=False, call_id=call_id, phase=CallPhase.INCOMING)
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
        call = self._calls.get(event.call_id) or self._dialer.find(event.call_id)
        if call is None:
            return  # a call we already let go of
        call.phase = event.state
        if event.state is CallPhase.CONFIRMED:
            self._on_confirmed(call)
        elif event.state is CallPhase.DISCONNECTED:
            self._on_disconnected(call, event.status)

    def _on_confirmed(self, call: TrackedCall) -> None:
        if self._dialer.owns(call) and call.call_id is not None:
            # The first to answer wins; cancel the others (parallel ringing).
            self._dialer.answered(call)
            self._calls[call.call_id] = call
            self._set_active(call)
            self._move(PhoneState.IN_CALL, f"{call.remote} answered")
        if call is self._active and self._settings.max_call_seconds:
            self._timers.setdefault(_Timer.MAX_CALL, self._now + self._settings.max_call_seconds)

    def _on_disconnected(self, call: TrackedCall, status: int) -> None:
        why = f"{call.remote} ended the call" + (f" ({status})" if status else "")
        if self._dialer.owns(call):
            self._dial_step(self._dialer.failed(call, str(status) if status else "disconnected"))
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

    def _forget(self, call: TrackedCall) -> None:
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
        verdict = self._code.enter(digit, code)
        if verdict is CodeVerdict.INCOMPLETE:
            self._timers[_Timer.DIGITS] = self._now + self._digit_timeout
            return
        self._timers.pop(_Timer.DIGITS, None)
        if verdict is CodeVerdict.RIGHT:
            self._open_door(f"door code from {call.remote}")
            self._commands.append(PlayTone(ToneKind.DOOR_OPENED))
            if self._settings.hangup_after_door:
                self._timers[_Timer.DOOR_HANGUP] = self._now + self._door_hangup_delay
            return
        self._commands.append(PlayTone(ToneKind.WRONG_CODE))
        self._log(
            f"wrong door code from {call.remote} "
            f"({self._code.wrong_codes} of {self._code.max_wrong})",
            "warning",
        )
        if self._code.locked_out:
            self._hangup_active("too many wrong door codes")

    # -- timers ---------------------------------------------------------------------------

    def _on_timer(self, timer: _Timer) -> None:
        if timer is _Timer.MAX_CALL and self._active is not None:
            self._hangup_active(f"max_call_seconds ({self._settings.max_call_seconds} s) reached")
        elif timer is _Timer.DOOR_HANGUP and self._active is not None:
            self._hangup_active("door opened (hangup_after_door)")
        elif timer is _Timer.DIGITS:
            self._code.forget_partial()  # a partial code is forgotten after a pause
        elif timer is _Timer.RING_TIMEOUT and self._state is PhoneState.DIALING:
            self._dial_step(self._dialer.timed_out())

    # -- registration and LEDs -----------------------------------------------------------

    def _on_registration(self, event: RegistrationChanged) -> None:
        status = event.status or (
            RegStatus.REGISTERED if event.registered else RegStatus.REGISTERING
        )
        if self._reg.get(event.acc) is not status:
            self._log(f"account {event.acc}: {status.value}")
        self._reg[event.acc] = status
        self._refresh_leds()

    def _refresh_leds(self) -> None:
        self._commands.extend(self._leds.update(self._state, self.led_state))

    def _log(self, msg: str, level: str = "info") -> None:
        self._commands.append(Log(msg, level))
