"""What the LEDs show: the status LED's priorities and the pattern of each ``shows``.

Kept apart from the call rules in :mod:`firmware.behaviour` because it only
reads their outcome (the phone's state, the accounts' registrations, faults)
and decides nothing back. :class:`LedPanel` remembers what each LED shows so
that only changes go out: restarting a blink that did not change would make it
stutter.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping, Sequence
from types import MappingProxyType

from hal.debounce import LedPattern
from hal.gpio import DOUBLE_FLASH, FAST_BLINK, HEARTBEAT, SLOW_BLINK, STEADY

from .behaviour_events import PhoneState, RegStatus, ShowLed
from .config import LedSettings

__all__ = ["LedState", "LED_PATTERNS", "status_led_state", "led_pattern", "LedPanel"]


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

_RINGING_STATES = (PhoneState.RINGING, PhoneState.CALL_WAITING)


def status_led_state(
    phone: PhoneState, registrations: Collection[RegStatus], faulty: bool
) -> LedState:
    """The most urgent thing a status LED can tell: a call ringing or going on
    beats any trouble, trouble (a fault, a failed registration) beats an
    account still registering, which beats one not registered at all."""
    if phone in _RINGING_STATES:
        return LedState.RINGING
    if phone is PhoneState.IN_CALL:
        return LedState.IN_CALL
    statuses = set(registrations)
    if faulty or RegStatus.FAILED in statuses:
        return LedState.ERROR
    if RegStatus.REGISTERING in statuses:
        return LedState.REGISTERING
    if RegStatus.NOT_REGISTERED in statuses:
        return LedState.NOT_REGISTERED
    return LedState.IDLE


def led_pattern(shows: str, phone: PhoneState, status: LedState) -> LedPattern | None:
    """The pattern of an LED that ``shows`` "status", "ringing" or "call"."""
    if shows == "status":
        return LED_PATTERNS[status]
    if shows == "ringing":
        if phone in _RINGING_STATES:
            return FAST_BLINK
        return SLOW_BLINK if phone is PhoneState.DIALING else None
    if phone in (PhoneState.IN_CALL, PhoneState.CALL_WAITING):
        return STEADY  # shows == "call"
    return None


class LedPanel:
    """The configured LEDs and the pattern each was last told to show."""

    def __init__(self, leds: Sequence[LedSettings]) -> None:
        self._leds = tuple(leds)
        self._shown: dict[str, LedPattern | None] = {}

    def reconfigure(self, leds: Sequence[LedSettings]) -> None:
        """Take a reloaded LED list. LEDs that stay keep what they show, so the
        next :meth:`update` only re-sends those whose meaning changed."""
        self._leds = tuple(leds)
        names = {led.name for led in self._leds}
        self._shown = {name: p for name, p in self._shown.items() if name in names}

    def update(self, phone: PhoneState, status: LedState) -> list[ShowLed]:
        """A :class:`ShowLed` for each LED whose pattern changed (every LED the
        first time), in configuration order."""
        out = []
        for led in self._leds:
            pattern = led_pattern(led.shows, phone, status)
            if led.name not in self._shown or self._shown[led.name] != pattern:
                self._shown[led.name] = pattern
                out.append(ShowLed(led.name, pattern))
        return out
