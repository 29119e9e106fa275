"""Pure timing state machines for buttons and LEDs: fed ``(level, now)``, never read a clock.

* :class:`Debouncer` turns raw contact samples into press / release / long-press
  events. It is *stability* debouncing: a new level is accepted only once it
  has held for ``debounce`` seconds. Reporting on the first edge instead would
  be ~30 ms faster, but a doorbell on a long cable picks up spikes (a passing
  tram, a relay coil next door) and a spike must not ring the flat.
* :class:`PatternSchedule` says whether an LED pattern is lit at a given time
  and when it next changes.

Both follow the sans-IO shape used across the firmware: the owner feeds them,
asks :meth:`Debouncer.get_timer` when to call back, and drains
:meth:`Debouncer.next_event`. The button events and :class:`LedPattern` live
here, at the bottom of the dependency graph, and are re-exported by
:mod:`hal.gpio`, which is where callers should import them from.
"""

from __future__ import annotations

import collections
import enum
import math

from sipstack.records import dataclass

__all__ = [
    "ButtonPressed",
    "ButtonReleased",
    "ButtonLongPressed",
    "ButtonEvent",
    "ButtonPhase",
    "Debouncer",
    "LedPattern",
    "PatternSchedule",
]

# -- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ButtonPressed:
    """A button went down (after debouncing). ``at`` is when the contact settled."""

    button: str
    at: float


@dataclass(frozen=True, slots=True)
class ButtonReleased:
    """A button came back up.

    ``held`` is how long it was down; ``long`` is true when a
    :class:`ButtonLongPressed` was emitted during this press, so a handler can
    ignore the release of a long press.
    """

    button: str
    at: float
    held: float
    long: bool


@dataclass(frozen=True, slots=True)
class ButtonLongPressed:
    """A button has been held for its long-press time (emitted once per press)."""

    button: str
    at: float


ButtonEvent = ButtonPressed | ButtonReleased | ButtonLongPressed

# -- debouncer ----------------------------------------------------------------


class ButtonPhase(enum.Enum):
    """Debounced state of one button."""

    RELEASED = "released"
    PRESSED = "pressed"  # down, long-press time not reached yet
    HELD = "held"  # down, ButtonLongPressed already emitted


class Debouncer:
    """Software debounce and long-press detection for one button.

    Feed it every sample or edge with :meth:`feed`, call :meth:`handle_timer`
    when the clock reaches :meth:`get_timer`, drain :meth:`next_event`.
    Timestamps on events are when the contact *settled* (the last edge), not
    when the debounce window closed, so ``held`` measures the real press.
    """

    def __init__(
        self,
        button: str,
        *,
        debounce: float = 0.03,
        long_press: float | None = 1.5,
        pressed: bool = False,
        now: float = 0.0,
    ) -> None:
        if debounce < 0:
            raise ValueError(f"debounce must be >= 0, got {debounce!r}")
        if long_press is not None and not long_press > debounce:
            raise ValueError(f"long_press ({long_press!r}) must exceed debounce ({debounce!r})")
        self.button = button
        self.debounce = debounce
        self.long_press = long_press
        # A button already down at start-up (stuck, or leant on while the
        # intercom rebooted) is treated as an old long press: no press or long
        # press is reported, and its release comes with ``long=True``.
        self._phase = ButtonPhase.HELD if pressed else ButtonPhase.RELEASED
        self._raw = pressed
        self._raw_since = now
        self._pressed_at = now
        self._events: collections.deque[ButtonEvent] = collections.deque()

    @property
    def phase(self) -> ButtonPhase:
        """The debounced state."""
        return self._phase

    @property
    def pressed(self) -> bool:
        """Debounced: is the button down?"""
        return self._phase is not ButtonPhase.RELEASED

    def feed(self, pressed: bool, now: float) -> None:
        """A sample of the contact (``True`` = closed) taken at ``now``.

        A repeated level changes nothing; a new level restarts the stability
        window. Going back to the debounced level inside the window cancels
        the pending change (that was a glitch).
        """
        if pressed != self._raw:
            self._raw = pressed
            self._raw_since = now

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next run, or None."""
        if self._raw != self.pressed:
            # A change is pending; a long press cannot be decided before the
            # release is confirmed or refuted.
            return self._raw_since + self.debounce
        if self._phase is ButtonPhase.PRESSED and self.long_press is not None:
            return self._pressed_at + self.long_press
        return None

    def handle_timer(self, now: float) -> None:
        """Accept a level that has been stable long enough; detect long presses."""
        if self._raw != self.pressed and now >= self._raw_since + self.debounce:
            self._accept(self._raw_since)
        if (
            self._phase is ButtonPhase.PRESSED
            and self._raw
            and self.long_press is not None
            and now >= self._pressed_at + self.long_press
        ):
            self._phase = ButtonPhase.HELD
            self._events.append(ButtonLongPressed(self.button, self._pressed_at + self.long_press))

    def _accept(self, at: float) -> None:
        # All state transitions of the machine are here and in handle_timer.
        if self._raw:
            if self._phase is not ButtonPhase.RELEASED:
                raise AssertionError(f"press accepted while {self._phase}")
            self._phase = ButtonPhase.PRESSED
            self._pressed_at = at
            self._events.append(ButtonPressed(self.button, at))
        else:
            was_long = self._phase is ButtonPhase.HELD
            if self._phase is ButtonPhase.RELEASED:
                raise AssertionError("release accepted while released")
            self._phase = ButtonPhase.RELEASED
            self._events.append(ButtonReleased(self.button, at, at - self._pressed_at, was_long))

    def next_event(self) -> ButtonEvent | None:
        """The oldest undelivered event, or None."""
        return self._events.popleft() if self._events else None


# -- LED patterns -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedPattern:
    """A sequence of ``(lit, seconds)`` steps, repeated or played once.

    A one-shot pattern leaves the LED off when it ends.
    """

    steps: tuple[tuple[bool, float], ...]
    repeat: bool = True

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("an LED pattern needs at least one step")
        for lit, seconds in self.steps:
            if not isinstance(lit, bool):
                raise ValueError(f"LED pattern step level must be a bool, got {lit!r}")
            if not (seconds > 0 and math.isfinite(seconds)):
                raise ValueError(f"LED pattern step must last > 0 s, got {seconds!r}")

    @classmethod
    def blink(cls, on: float, off: float) -> LedPattern:
        """A repeating on/off blink."""
        return cls(((True, on), (False, off)))

    @property
    def period(self) -> float:
        """Length of one pass through the steps, in seconds."""
        return sum(seconds for _, seconds in self.steps)


# Float slack when deciding which step an instant falls in, so that a timer
# fired exactly at a boundary lands in the new step despite rounding.
_EPSILON = 1e-9


class PatternSchedule:
    """Where a :class:`LedPattern` started at ``start`` is at any instant.

    Every answer is computed from ``start`` (not from the previous change), so
    a loop that wakes late shows the right level at once and never drifts.
    """

    def __init__(self, pattern: LedPattern, start: float) -> None:
        self.pattern = pattern
        self.start = start
        self._period = pattern.period
        # Boundaries within one period at which the level really changes
        # (consecutive steps with the same level are merged).
        levels = [lit for lit, _ in pattern.steps]
        ends: list[float] = []
        bounds: list[float] = []
        t = 0.0
        for i, (lit, seconds) in enumerate(pattern.steps):
            t += seconds
            ends.append(t)
            if i + 1 < len(levels):
                following = levels[i + 1]
            else:  # wrap to the first step, or go dark after a one-shot
                following = levels[0] if pattern.repeat else False
            if following != lit:
                bounds.append(t)
        self._ends = ends
        self._levels = levels
        self._change_bounds = bounds

    def level_at(self, now: float) -> bool:
        """Whether the LED is lit at ``now`` (off before ``start``)."""
        offset = now - self.start + _EPSILON
        if offset < 0:
            return False
        if not self.pattern.repeat and offset >= self._period:
            return False
        within = offset % self._period
        for end, lit in zip(self._ends, self._levels, strict=True):
            if within < end:
                return lit
        return self._levels[-1]  # rounding at the very end of a period

    def next_change(self, now: float) -> float | None:
        """The first instant after ``now`` at which the level changes, or None."""
        if not self._change_bounds:
            return None
        offset = now - self.start + _EPSILON
        if offset < 0:
            return self.start
        if self.pattern.repeat:
            cycle = math.floor(offset / self._period)
        else:
            if offset >= self._period:
                return None
            cycle = 0
        while True:
            base = self.start + cycle * self._period
            for bound in self._change_bounds:
                when = base + bound
                if when > now + _EPSILON:
                    return when
            if not self.pattern.repeat:
                return None
            cycle += 1
