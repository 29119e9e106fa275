"""A recording fake of the ``RPi.GPIO`` module, for tests only.

This is the one fake the test suite allows, because no GPIO hardware exists on
CI machines (and ``RPi.GPIO`` refuses to import off a Raspberry Pi). It mimics
the parts of the real library the backend uses, including its failure modes
(setup before setmode, output on an input, edge detection added twice), and
records every call with the thread it came from.

Edges are injected the way the real library delivers them: :meth:`FakeGPIO.edge`
sets the input level and runs the registered callback on a separate "edge
thread" (one long-lived thread, like RPi.GPIO's poll thread); :meth:`wait_edges`
waits until the thread has delivered everything queued.

Constant values are those of RPi.GPIO 0.7.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

BOARD = 10
BCM = 11
OUT = 0
IN = 1
LOW = 0
HIGH = 1
PUD_OFF = 20
PUD_DOWN = 21
PUD_UP = 22
RISING = 31
FALLING = 32
BOTH = 33


@dataclass
class Call:
    """One recorded call: name, arguments and the calling thread's ident."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    thread: int = 0


@dataclass
class _Pin:
    direction: int
    pull: int = PUD_OFF
    level: int = LOW
    external: int | None = None  # level driven from outside (the "button")
    callback: Callable[[int], None] | None = None
    edge: int | None = None


class FakeGPIO:
    """Module-like object: pass it as ``gpio=`` or install it as ``RPi.GPIO``."""

    BOARD = BOARD
    BCM = BCM
    OUT = OUT
    IN = IN
    LOW = LOW
    HIGH = HIGH
    PUD_OFF = PUD_OFF
    PUD_DOWN = PUD_DOWN
    PUD_UP = PUD_UP
    RISING = RISING
    FALLING = FALLING
    BOTH = BOTH

    def __init__(self, *, fail_setup: dict[int, Exception] | None = None) -> None:
        self.calls: list[Call] = []
        self.pins: dict[int, _Pin] = {}
        self.mode: int | None = None
        self.fail_setup = dict(fail_setup or {})
        # history of levels written per output pin: list of levels
        self.writes: dict[int, list[int]] = {}
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, int] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self.edge_thread_ident: int | None = None
        self._sentinel = threading.Event()

    # -- recording ------------------------------------------------------------------

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        with self._lock:
            self.calls.append(Call(name, args, kwargs, threading.get_ident()))

    def calls_named(self, name: str) -> list[Call]:
        """All recorded calls of one function, in order."""
        with self._lock:
            return [c for c in self.calls if c.name == name]

    # -- the RPi.GPIO API -------------------------------------------------------------

    def setwarnings(self, flag: bool) -> None:
        self._record("setwarnings", flag)

    def getmode(self) -> int | None:
        self._record("getmode")
        return self.mode

    def setmode(self, mode: int) -> None:
        self._record("setmode", mode)
        if self.mode is not None and self.mode != mode:
            raise ValueError("A different mode has already been set!")
        self.mode = mode

    def setup(
        self,
        channel: int,
        direction: int,
        pull_up_down: int = PUD_OFF,
        initial: int = -1,
    ) -> None:
        kwargs: dict[str, Any] = {"pull_up_down": pull_up_down}
        if initial != -1:
            kwargs["initial"] = initial
        self._record("setup", channel, direction, **kwargs)
        if self.mode is None:
            raise RuntimeError(
                "Please set pin numbering mode using GPIO.setmode(GPIO.BOARD) or "
                "GPIO.setmode(GPIO.BCM)"
            )
        if channel in self.fail_setup:
            raise self.fail_setup[channel]
        if not 0 <= channel <= 27:
            raise ValueError("The channel sent is invalid on a Raspberry Pi")
        if direction == OUT and pull_up_down != PUD_OFF:
            raise ValueError("pull_up_down parameter is not valid for outputs")
        pin = _Pin(direction=direction, pull=pull_up_down)
        old = self.pins.get(channel)
        if old is not None:
            pin.external = old.external
        if direction == OUT:
            pin.level = initial if initial != -1 else LOW
            self.writes.setdefault(channel, []).append(pin.level)
        self.pins[channel] = pin

    def output(self, channel: int, value: int | bool) -> None:
        self._record("output", channel, value)
        pin = self.pins.get(channel)
        if pin is None or pin.direction != OUT:
            raise RuntimeError("The GPIO channel has not been set up as an OUTPUT")
        pin.level = HIGH if value else LOW
        self.writes.setdefault(channel, []).append(pin.level)

    def input(self, channel: int) -> int:
        self._record("input", channel)
        pin = self.pins.get(channel)
        if pin is None:
            raise RuntimeError("You must setup() the GPIO channel first")
        return self._level(pin)

    @staticmethod
    def _level(pin: _Pin) -> int:
        if pin.direction == OUT:
            return pin.level
        if pin.external is not None:
            return pin.external
        return HIGH if pin.pull == PUD_UP else LOW

    def add_event_detect(
        self,
        channel: int,
        edge: int,
        callback: Callable[[int], None] | None = None,
        bouncetime: int | None = None,
    ) -> None:
        kwargs: dict[str, Any] = {"callback": callback}
        if bouncetime is not None:
            kwargs["bouncetime"] = bouncetime
        self._record("add_event_detect", channel, edge, **kwargs)
        pin = self.pins.get(channel)
        if pin is None or pin.direction != IN:
            raise RuntimeError("You must setup() the GPIO channel as an input first")
        if pin.edge is not None:
            raise RuntimeError("Conflicting edge detection already enabled for this GPIO channel")
        pin.edge = edge
        pin.callback = callback

    def remove_event_detect(self, channel: int) -> None:
        self._record("remove_event_detect", channel)
        pin = self.pins.get(channel)
        if pin is not None:
            pin.edge = None
            pin.callback = None

    def cleanup(self, channel: int | Iterable[int] | None = None) -> None:
        self._record("cleanup", channel)
        if channel is None:
            channels = list(self.pins)
            self.mode = None
        elif isinstance(channel, int):
            channels = [channel]
        else:
            channels = list(channel)
        for ch in channels:
            self.pins.pop(ch, None)
        if not self.pins:
            self.mode = None

    # -- test controls -------------------------------------------------------------------

    def drive(self, channel: int, level: int) -> None:
        """Set an input's external level without an edge callback (e.g. before start-up)."""
        pin = self.pins.get(channel)
        if pin is None:
            self.pins[channel] = pin = _Pin(direction=IN)
        pin.external = level

    def edge(self, channel: int, level: int) -> None:
        """Queue: set ``channel`` to ``level`` and fire its callback from the edge thread."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._edge_worker, daemon=True)
            self._thread.start()
        self._queue.put((channel, level))

    def edges(self, channel: int, levels: Iterable[int]) -> None:
        """Queue several edges (a bouncing contact)."""
        for level in levels:
            self.edge(channel, level)

    def wait_edges(self, timeout: float = 5.0) -> None:
        """Block until the edge thread has delivered everything queued."""
        if self._thread is None:
            return
        done = threading.Event()
        self._sentinel = done
        self._queue.put(None)
        if not done.wait(timeout):
            raise TimeoutError("fake RPi.GPIO edge thread is stuck")

    def _edge_worker(self) -> None:
        self.edge_thread_ident = threading.get_ident()
        while True:
            item = self._queue.get()
            if item is None:
                self._sentinel.set()
                continue
            channel, level = item
            pin = self.pins.get(channel)
            if pin is None:
                continue
            old = self._level(pin)
            pin.external = level
            fire = (
                pin.callback is not None
                and old != level
                and (
                    pin.edge == BOTH
                    or (pin.edge == RISING and level == HIGH)
                    or (pin.edge == FALLING and level == LOW)
                )
            )
            if fire and pin.callback is not None:
                pin.callback(channel)

    def level(self, channel: int) -> int:
        """The level an output pin is driving (or an input reads)."""
        return self._level(self.pins[channel])
