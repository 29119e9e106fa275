"""Buttons, LEDs and relays: the interfaces, their configuration, and the loop glue.

What lives here:

* the ``typing.Protocol``\\ s the firmware codes against (:class:`Buttons`,
  :class:`Leds`, :class:`Relay`, :class:`GpioBoard`) and the events buttons
  emit (:class:`ButtonPressed`, :class:`ButtonReleased`, :class:`ButtonLongPressed`);
* the pin configuration (:class:`GpioConfig` and friends) and its start-up
  validation (:func:`validate_config`), shared by every backend so that a bad
  ``intercom.toml`` fails the same way on a desk as on a Pi (defined in
  :mod:`hal.gpio_config`, which the config loader imports without the rest);
* :class:`PinBoard`, the one implementation of debouncing, LED patterns and
  relay pulses on top of the select loop. A backend only supplies raw pin
  access (:class:`PinIO`) and calls :meth:`PinBoard.pin_changed` on the loop
  when an input may have changed. Keeping the timing here means the RPi.GPIO
  backend and the simulated one cannot drift apart.

All timing runs on the loop's clock; the pure state machines are in
:mod:`hal.debounce`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from hal.debounce import (
    ButtonEvent,
    ButtonLongPressed,
    ButtonPressed,
    ButtonReleased,
    Debouncer,
    LedPattern,
    PatternSchedule,
)
from hal.gpio_config import (
    VALID_BCM_PINS,
    ButtonConfig,
    GpioConfig,
    GpioConfigError,
    LedConfig,
    Pull,
    RelayConfig,
    validate_config,
)
from hal.loop_api import Cancellable, EventLoop

__all__ = [
    "ButtonPressed",
    "ButtonReleased",
    "ButtonLongPressed",
    "ButtonEvent",
    "ButtonHandler",
    "LedPattern",
    "STEADY",
    "SLOW_BLINK",
    "FAST_BLINK",
    "DOUBLE_FLASH",
    "HEARTBEAT",
    "Pull",
    "ButtonConfig",
    "LedConfig",
    "RelayConfig",
    "GpioConfig",
    "GpioConfigError",
    "validate_config",
    "VALID_BCM_PINS",
    "Buttons",
    "Leds",
    "Relay",
    "GpioBoard",
    "PinIO",
    "PinBoard",
]

log = logging.getLogger(__name__)

ButtonHandler = Callable[[ButtonEvent], object]

# -- LED patterns ---------------------------------------------------------------

# The phone's vocabulary (immutable module constants, not state).
STEADY = LedPattern(((True, 1.0),))  # in call
SLOW_BLINK = LedPattern.blink(0.5, 0.5)  # registering (1 Hz)
FAST_BLINK = LedPattern.blink(0.1, 0.1)  # ringing (5 Hz)
DOUBLE_FLASH = LedPattern(((True, 0.1), (False, 0.1), (True, 0.1), (False, 0.7)))  # error
HEARTBEAT = LedPattern(((True, 0.05), (False, 2.95)))  # idle, registered

# -- interfaces -------------------------------------------------------------------


class Buttons(Protocol):
    """Debounced push buttons, by name."""

    def set_handler(self, handler: ButtonHandler | None) -> None:
        """Deliver button events (on the loop) to ``handler``; ``None`` drops them."""
        ...

    def names(self) -> tuple[str, ...]:
        """The configured button names."""
        ...

    def is_pressed(self, name: str) -> bool:
        """The debounced state."""
        ...


class Leds(Protocol):
    """Indicator LEDs, by name."""

    def names(self) -> tuple[str, ...]:
        """The configured LED names."""
        ...

    def on(self, name: str) -> None:
        """Light steadily (cancels a pattern)."""
        ...

    def off(self, name: str) -> None:
        """Turn off (cancels a pattern)."""
        ...

    def show(self, name: str, pattern: LedPattern) -> None:
        """Play ``pattern`` from its first step (replaces the current one)."""
        ...

    def is_lit(self, name: str) -> bool:
        """Whether the LED is lit right now."""
        ...


class Relay(Protocol):
    """One relay. It is only ever energised for a bounded pulse."""

    def pulse(self, seconds: float) -> None:
        """Energise for ``seconds`` (extends a pulse already running)."""
        ...

    def off(self) -> None:
        """De-energise now and cancel any pulse."""
        ...

    @property
    def is_on(self) -> bool:
        """Whether the relay is energised."""
        ...


class GpioBoard(Protocol):
    """What a GPIO backend hands the firmware."""

    @property
    def buttons(self) -> Buttons: ...

    @property
    def leds(self) -> Leds: ...

    @property
    def relays(self) -> Mapping[str, Relay]: ...

    def close(self) -> None:
        """Relays off, LEDs off, pins released. Safe to call twice."""
        ...


class PinIO(Protocol):
    """Raw pin access a backend gives :class:`PinBoard` (electrical levels)."""

    def read(self, bcm: int) -> bool:
        """True when the pin reads high."""
        ...

    def write(self, bcm: int, high: bool) -> None:
        """Drive an output pin."""
        ...


# -- the loop glue ------------------------------------------------------------------


class _ButtonInput:
    """One button: a :class:`~hal.debounce.Debouncer` plus its loop timer."""

    def __init__(self, board: PinBoard, config: ButtonConfig, pressed: bool) -> None:
        self.config = config
        self._board = board
        self.debouncer = Debouncer(
            config.name,
            debounce=config.debounce,
            long_press=config.long_press,
            pressed=pressed,
            now=board.loop.time(),
        )
        self._timer: Cancellable | None = None
        self._timer_when: float | None = None

    def sample(self) -> None:
        """Read the pin now and feed the debouncer."""
        high = self._board.pins.read(self.config.bcm)
        pressed = high != self.config.active_low
        self.debouncer.feed(pressed, self._board.loop.time())

    def on_timer(self) -> None:
        self._timer = None
        self._timer_when = None
        # Re-read before deciding: an edge may have been lost while bouncing.
        self.sample()
        self.debouncer.handle_timer(self._board.loop.time())
        self._board.flush(self)

    def rearm(self) -> None:
        when = self.debouncer.get_timer()
        if when == self._timer_when:
            return
        self.cancel()
        if when is not None:
            self._timer = self._board.loop.call_at(when, self.on_timer)
            self._timer_when = when

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_when = None


class _LedOutput:
    """One LED: level or :class:`~hal.debounce.PatternSchedule` plus its timer."""

    def __init__(self, board: PinBoard, config: LedConfig) -> None:
        self.config = config
        self._board = board
        self.lit = False
        self._timer: Cancellable | None = None
        self._schedule: PatternSchedule | None = None

    def set_level(self, lit: bool) -> None:
        self.cancel()
        self._write(lit)

    def show(self, pattern: LedPattern) -> None:
        if self._board.closed:
            return  # shutting down: the LED stays off
        self.cancel()
        schedule = PatternSchedule(pattern, self._board.loop.time())
        self._schedule = schedule
        self._step(schedule)

    def _step(self, schedule: PatternSchedule) -> None:
        self._timer = None
        if schedule is not self._schedule:
            return  # superseded
        now = self._board.loop.time()
        self._write(schedule.level_at(now))
        when = schedule.next_change(now)
        if when is not None:
            self._timer = self._board.loop.call_at(when, lambda: self._step(schedule))
        else:
            self._schedule = None

    def _write(self, lit: bool) -> None:
        if lit != self.lit or not self._board.started:
            self._board.pins.write(self.config.bcm, lit == self.config.active_high)
        self.lit = lit

    def cancel(self) -> None:
        self._schedule = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _RelayOutput:
    """One relay, implementing :class:`Relay`."""

    def __init__(self, board: PinBoard, config: RelayConfig) -> None:
        self.config = config
        self._board = board
        self._on = False
        self._off_at: float | None = None
        self._timer: Cancellable | None = None

    @property
    def is_on(self) -> bool:
        """Whether the relay is energised."""
        return self._on

    def pulse(self, seconds: float) -> None:
        """Energise for ``seconds``; a pulse while on extends it, never shortens it."""
        if self._board.closed:
            raise RuntimeError(f"relay {self.config.name!r} used after the GPIO board was closed")
        if not (0 < seconds <= self.config.max_pulse):
            raise ValueError(
                f"relay {self.config.name!r}: pulse of {seconds!r} s is outside "
                f"(0, {self.config.max_pulse}] s ({self.config.source})"
            )
        off_at = self._board.loop.time() + seconds
        if self._off_at is not None and self._off_at >= off_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._off_at = off_at
        self._timer = self._board.loop.call_at(off_at, self._expire)
        if not self._on:
            log.info("relay %s on for %.2f s", self.config.name, seconds)
            self._drive(True)

    def off(self) -> None:
        """De-energise now and cancel any pulse."""
        if self._board.closed and not self._on:
            return  # close() already drove it off and the pins may be released
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._off_at = None
        self._drive(False)

    def _expire(self) -> None:
        self._timer = None
        self._off_at = None
        log.info("relay %s off", self.config.name)
        self._drive(False)

    def _drive(self, on: bool) -> None:
        self._board.pins.write(self.config.bcm, on == self.config.active_high)
        self._on = on


class _ButtonGroup:
    """The :class:`Buttons` face of a :class:`PinBoard`."""

    def __init__(self, board: PinBoard) -> None:
        self._board = board

    def set_handler(self, handler: ButtonHandler | None) -> None:
        """Deliver button events (on the loop) to ``handler``; ``None`` drops them."""
        self._board.handler = handler

    def names(self) -> tuple[str, ...]:
        """The configured button names."""
        return tuple(self._board.button_inputs)

    def is_pressed(self, name: str) -> bool:
        """The debounced state."""
        return self._board.button(name).debouncer.pressed


class _LedGroup:
    """The :class:`Leds` face of a :class:`PinBoard`."""

    def __init__(self, board: PinBoard) -> None:
        self._board = board

    def names(self) -> tuple[str, ...]:
        """The configured LED names."""
        return tuple(self._board.led_outputs)

    def on(self, name: str) -> None:
        """Light steadily (cancels a pattern)."""
        led = self._board.led(name)
        if not self._board.closed:  # shutting down: the LED stays off
            led.set_level(True)

    def off(self, name: str) -> None:
        """Turn off (cancels a pattern)."""
        self._board.led(name).set_level(False)

    def show(self, name: str, pattern: LedPattern) -> None:
        """Play ``pattern`` from its first step (replaces the current one)."""
        self._board.led(name).show(pattern)

    def is_lit(self, name: str) -> bool:
        """Whether the LED is lit right now."""
        return self._board.led(name).lit


class PinBoard:
    """Buttons, LEDs and relays on top of raw pins and the select loop.

    Construction drives every relay and LED to off *first* (before buttons are
    even looked at) so that a restart after a crash releases the door. The
    backend must already have configured the pins as inputs/outputs.
    """

    def __init__(self, loop: EventLoop, config: GpioConfig, pins: PinIO) -> None:
        validate_config(config)
        self.loop = loop
        self.pins = pins
        self.closed = False
        self.started = False
        self.handler: ButtonHandler | None = None
        self.relay_outputs: dict[str, _RelayOutput] = {}
        for rc in config.relays:
            relay = _RelayOutput(self, rc)
            relay.off()
            self.relay_outputs[rc.name] = relay
        self.led_outputs: dict[str, _LedOutput] = {}
        for lc in config.leds:
            led = _LedOutput(self, lc)
            led.set_level(False)
            self.led_outputs[lc.name] = led
        self.button_inputs: dict[str, _ButtonInput] = {}
        self._by_pin: dict[int, _ButtonInput] = {}
        for bc in config.buttons:
            # A button held at start-up is taken as the resting state: no event.
            pressed = pins.read(bc.bcm) != bc.active_low
            button = _ButtonInput(self, bc, pressed)
            self.button_inputs[bc.name] = button
            self._by_pin[bc.bcm] = button
        self.started = True
        self.buttons: Buttons = _ButtonGroup(self)
        self.leds: Leds = _LedGroup(self)
        self.relays: Mapping[str, Relay] = dict(self.relay_outputs)

    def pin_changed(self, bcm: int) -> None:
        """An input may have changed level: sample it. Call on the loop only."""
        if self.closed:
            return
        button = self._by_pin.get(bcm)
        if button is None:
            log.debug("edge on BCM %d, which is not a button", bcm)
            return
        button.sample()
        button.debouncer.handle_timer(self.loop.time())
        self.flush(button)

    def flush(self, button: _ButtonInput) -> None:
        """Hand the button's queued events to the handler and re-arm its timer."""
        while (event := button.debouncer.next_event()) is not None:
            if self.closed:
                continue
            if self.handler is None:
                log.debug("no button handler; dropping %r", event)
                continue
            try:
                self.handler(event)
            except Exception:
                # The handler's bug must not leave this button without its timer.
                log.exception("button handler raised on %r", event)
        if not self.closed:
            button.rearm()

    def button(self, name: str) -> _ButtonInput:
        """Look up a button by name (KeyError names the button)."""
        try:
            return self.button_inputs[name]
        except KeyError:
            raise KeyError(f"no button named {name!r}") from None

    def led(self, name: str) -> _LedOutput:
        """Look up an LED by name (KeyError names the LED)."""
        try:
            return self.led_outputs[name]
        except KeyError:
            raise KeyError(f"no LED named {name!r}") from None

    def close(self) -> None:
        """Relays off first, then LEDs off, then stop all timers. Idempotent."""
        if self.closed:
            return
        # Drive relays off unconditionally, even those we believe are off, and
        # keep going if one fails: the next relay must still be released.
        for relay in self.relay_outputs.values():
            try:
                relay.off()
            except Exception:
                log.exception("could not drive relay %r off", relay.config.name)
        self.closed = True
        for led in self.led_outputs.values():
            try:
                led.set_level(False)
            except Exception:
                log.exception("could not turn LED %r off", led.config.name)
        for button in self.button_inputs.values():
            button.cancel()
