"""The glue between the pure :class:`~firmware.behaviour.Behaviour` and the firmware.

Events in: buttons (from the GPIO board), registrations, calls and DTMF (from
the user agent and the call manager, translated into behaviour events), and
the requests of ``intercom call`` / ``hangup``. Commands out: calls placed,
answered and hung up, the relay pulsed, LEDs shown, tones played, lines
logged, all carried out on the :class:`~firmware.app.App`'s parts. The
behaviour's one deadline is kept as one loop timer.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import TYPE_CHECKING

# hal.gpio and hal.debounce are imported by the first button or LED: the App
# builds this driver before its first REGISTER, which needs neither (issue 6).
if TYPE_CHECKING:
    from firmware.app import App
    from firmware.behaviour import BehaviourEvent, Command
    from hal.debounce import LedPattern
    from sipstack.account_events import RegStateChanged
    from sipstack.calls import CallEvent
    from sipstack.loop import TimerHandle

__all__ = ["BehaviourDriver"]

log = logging.getLogger("intercom")


def _pattern_name(pattern: LedPattern | None) -> str:
    """What ``intercom status`` calls an LED pattern."""
    from hal.gpio import DOUBLE_FLASH, FAST_BLINK, HEARTBEAT, SLOW_BLINK, STEADY

    names: dict[LedPattern | None, str] = {
        STEADY: "steady",
        SLOW_BLINK: "slow blink",
        FAST_BLINK: "fast blink",
        DOUBLE_FLASH: "double flash",
        HEARTBEAT: "heartbeat",
        None: "off",
    }
    return names.get(pattern, "pattern")


# RFC 3261 21.4.2/21.4.4/21.4.5/21.4.8: the registrar refused who we are, not a timeout.
_REFUSED = (401, 403, 404, 407)


class BehaviourDriver:
    """Feeds ``app.behaviour`` and carries out its commands (see the module docstring).

    ``placing``, when a list, collects ``(call_id, reason)`` for each call the
    behaviour places, so a caller of :meth:`post` learns what its event did.
    """

    def __init__(self, app: App) -> None:
        self.app = app
        self.placing: list[tuple[int | None, str]] | None = None
        self._inbox: collections.deque[BehaviourEvent] = collections.deque()
        self._busy = False
        self._timer: TimerHandle | None = None

    # -- events in -------------------------------------------------------------------------

    def post(self, event: BehaviourEvent) -> None:
        """Feed one event to the behaviour and carry out what it decides.

        Events that arrive while commands are being carried out (a call event
        raised inside ``call_make_call``) wait their turn, so the behaviour
        always learns of a call (:class:`CallPlaced`) before the call's events.
        """
        self._inbox.append(event)
        self._drain()

    def _drain(self) -> None:
        behaviour = self.app.behaviour
        if self._busy or behaviour is None:
            return
        self._busy = True
        try:
            while self._inbox:
                behaviour.handle_event(self._inbox.popleft(), self.app.loop.time())
                self.run_commands()
        finally:
            self._busy = False
        self.arm()
        if self.app.audio is not None:
            self.app.audio.update()

    def arm(self) -> None:
        """Set the loop timer to the behaviour's next deadline."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        behaviour = self.app.behaviour
        when = behaviour.get_timer() if behaviour is not None else None
        if when is not None and not self.app.closed:
            self._timer = self.app.loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        behaviour = self.app.behaviour
        if behaviour is None or self._busy:
            return
        self._busy = True
        try:
            behaviour.handle_timer(self.app.loop.time())
            self.run_commands()
        finally:
            self._busy = False
        self._drain()

    def on_button(self, event: object) -> None:
        """A button event from the GPIO board."""
        from hal.debounce import ButtonLongPressed, ButtonPressed, ButtonReleased

        if isinstance(event, ButtonPressed):
            self.app.last_buttons.append({"time": time.time(), "button": event.button})
            log.info("button %s pressed", event.button)
        if isinstance(event, ButtonPressed | ButtonReleased | ButtonLongPressed):
            self.post(event)

    def on_registration(self, event: RegStateChanged) -> None:
        """An account's registration changed: what the status LED makes of it."""
        from firmware.behaviour import RegistrationChanged, RegStatus

        if event.is_registered:
            status = RegStatus.REGISTERED
        elif event.status in _REFUSED and event.state == "retry-wait":
            status = RegStatus.FAILED
        elif event.state == "unregistered":
            status = RegStatus.NOT_REGISTERED
        else:
            status = RegStatus.REGISTERING
        self.post(RegistrationChanged(event.acc_id, event.is_registered, status))

    def on_call_event(self, event: CallEvent) -> None:
        """A call manager event, as the behaviour's call events."""
        from firmware.behaviour import CallPhase, DtmfReceived, IncomingCall
        from firmware.behaviour import CallStateChanged as PhoneCallState
        from sipstack import calls as c

        if isinstance(event, c.IncomingCall):
            log.info("incoming call %d from %s", event.call_id, event.remote_uri)
            self.post(IncomingCall(event.call_id, event.remote_uri))
        elif isinstance(event, c.CallStateChanged):
            if event.state.value in ("disconnected",):
                log.info("call %d ended: %d %s", event.call_id, event.code, event.reason)
            try:
                phase = CallPhase(event.state.value)
            except ValueError:
                return  # NULL / DISCONNECTING: nothing the behaviour acts on
            self.post(PhoneCallState(event.call_id, phase, event.code))
        elif isinstance(event, c.DtmfDigit):
            self.post(DtmfReceived(event.call_id, event.digit))
        elif isinstance(event, c.CallMediaState) and self.app.audio is not None:
            self.app.audio.update()

    # -- commands out ----------------------------------------------------------------------

    def run_commands(self) -> None:
        """Carry out everything the behaviour decided; one failure does not stop the rest."""
        behaviour = self.app.behaviour
        assert behaviour is not None
        while commands := behaviour.drain_commands():
            for command in commands:
                try:
                    self._execute(command)
                except Exception:
                    log.exception("carrying out %r failed", command)

    def _execute(self, command: Command) -> None:
        from firmware.behaviour import (
            Answer,
            Hangup,
            Log,
            MakeCall,
            PlayTone,
            PulseRelay,
            ShowLed,
            StopTone,
        )

        app = self.app
        if isinstance(command, MakeCall):
            self._make_call(command)
        elif isinstance(command, Answer):
            assert app.calls is not None
            app.calls.call_answer(command.call_id, command.code)
        elif isinstance(command, Hangup):
            assert app.calls is not None
            if app.calls.call_is_active(command.call_id):
                if command.code:
                    app.calls.call_hangup(command.call_id, command.code)
                else:
                    app.calls.call_hangup(command.call_id)
        elif isinstance(command, PulseRelay):
            assert app.board is not None
            for relay in app.board.relays.values():
                relay.pulse(command.seconds)
            app.relay_pulses += 1
        elif isinstance(command, ShowLed):
            assert app.board is not None
            app.leds[command.name] = _pattern_name(command.pattern)
            if command.pattern is None:
                app.board.leds.off(command.name)
            else:
                app.board.leds.show(command.name, command.pattern)
        elif isinstance(command, PlayTone):
            if app.audio is not None:
                assert app.behaviour is not None
                active = app.behaviour.active_call
                slot = app.media.slot(active) if app.media and active is not None else None
                app.audio.play(command.kind, slot)
        elif isinstance(command, StopTone):
            if app.audio is not None:
                app.audio.stop_tone()
        elif isinstance(command, Log):
            log.log(logging.getLevelName(command.level.upper()), "%s", command.msg)

    def _make_call(self, command: Command) -> None:
        from firmware.behaviour import CallPlaced, MakeCall

        assert isinstance(command, MakeCall)
        app = self.app
        assert app.calls is not None and app.behaviour is not None
        try:
            call_id = app.calls.call_make_call(command.acc, command.target)
        except Exception as exc:
            log.warning("cannot call %s: %r", command.target, exc, exc_info=True)
            placed = CallPlaced(command.ref, None, str(exc))
        else:
            placed = CallPlaced(command.ref, call_id)
        if self.placing is not None:
            self.placing.append((placed.call_id, placed.reason))
        app.behaviour.handle_event(placed, app.loop.time())
