"""RPi.GPIO backend against the recording fake (tests/hal/fake_rpigpio.py), on the real loop.

The loop is ``sipstack.loop.Loop`` with a fake clock: the test sets the clock
to an instant and runs the loop without blocking, so every deadline is exact.
Edges come from the fake's own thread, as the real library's do.
"""

from __future__ import annotations

import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hal.gpio import (
    FAST_BLINK,
    SLOW_BLINK,
    ButtonConfig,
    ButtonLongPressed,
    ButtonPressed,
    ButtonReleased,
    GpioBoard,
    GpioConfig,
    GpioConfigError,
    LedConfig,
    LedPattern,
    Pull,
    RelayConfig,
)
from hal.rpigpio import GpioUnavailableError, RpiGpioBoard
from sipstack.loop import Loop
from tests.hal.fake_rpigpio import BCM, BOTH, HIGH, IN, LOW, OUT, PUD_DOWN, PUD_UP, FakeGPIO

DOOR, CALL, RING_LED, STATUS_LED, STRIKE = 17, 27, 22, 23, 24

CONFIG = GpioConfig(
    buttons=(
        ButtonConfig("door", DOOR, "intercom.toml line 3", debounce=0.03, long_press=2.0),
        ButtonConfig("call", CALL, "intercom.toml line 4", pull=Pull.DOWN, active_low=False),
    ),
    leds=(
        LedConfig("ring", RING_LED, "intercom.toml line 7"),
        LedConfig("status", STATUS_LED, "intercom.toml line 8", active_high=False),
    ),
    relays=(RelayConfig("strike", STRIKE, "intercom.toml line 11", max_pulse=10.0),),
)


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class ThreadCheckingLoop:
    """Delegates to the real loop; records any call made from a foreign thread."""

    def __init__(self, loop: Loop) -> None:
        self._loop = loop
        self._main = threading.get_ident()
        self.foreign_calls: list[str] = []
        self.threadsafe_threads: list[int] = []

    def _check(self, name: str) -> None:
        if threading.get_ident() != self._main:
            self.foreign_calls.append(name)

    def time(self) -> float:
        self._check("time")
        return self._loop.time()

    def call_soon(self, callback: Callable[[], object]) -> None:
        self._check("call_soon")
        self._loop.call_soon(callback)

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None:
        self.threadsafe_threads.append(threading.get_ident())
        self._loop.call_soon_threadsafe(callback)

    def call_at(self, when: float, callback: Callable[[], object]) -> Any:
        self._check("call_at")
        return self._loop.call_at(when, callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Any:
        self._check("call_later")
        return self._loop.call_later(delay, callback)

    def add_reader(self, fd: Any, callback: Callable[[], object]) -> None:
        self._check("add_reader")
        self._loop.add_reader(fd, callback)

    def remove_reader(self, fd: Any) -> None:
        self._check("remove_reader")
        self._loop.remove_reader(fd)

    def add_writer(self, fd: Any, callback: Callable[[], object]) -> None:
        self._check("add_writer")
        self._loop.add_writer(fd, callback)

    def remove_writer(self, fd: Any) -> None:
        self._check("remove_writer")
        self._loop.remove_writer(fd)


class Rig:
    def __init__(self, fake: FakeGPIO, config: GpioConfig = CONFIG) -> None:
        self.fake = fake
        self.clock = FakeClock()
        self.real_loop = Loop(clock=self.clock)
        self.loop = ThreadCheckingLoop(self.real_loop)
        self.board = RpiGpioBoard(self.loop, config, gpio=fake)
        self.events: list[object] = []
        self.board.buttons.set_handler(self.events.append)
        self.spin()

    def spin(self) -> None:
        """Run everything that is due at the current fake time, without blocking."""
        for _ in range(4):
            self.real_loop.run_once(max_wait=0)

    def at(self, t: float) -> None:
        assert t >= self.clock.now
        self.clock.now = t
        self.spin()

    def edges(self, channel: int, levels: list[int]) -> None:
        """Inject edges from the fake's thread at the current fake time, then spin."""
        self.fake.edges(channel, levels)
        self.fake.wait_edges()
        self.spin()

    def close(self) -> None:
        self.board.close()
        self.real_loop.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    r = Rig(FakeGPIO())
    yield r
    r.close()


# -- start-up -------------------------------------------------------------------------


def test_setup_calls_bcm_pullups_directions(rig: Rig) -> None:
    board: GpioBoard = rig.board  # the protocol is satisfied (mypy checks this line)
    assert set(board.relays) == {"strike"}
    fake = rig.fake
    assert fake.calls_named("setmode")[0].args == (BCM,)
    setups = [(c.args, c.kwargs) for c in fake.calls_named("setup")]
    assert setups == [
        # the relay first, at its inactive level
        ((STRIKE, OUT), {"pull_up_down": 20, "initial": LOW}),
        ((RING_LED, OUT), {"pull_up_down": 20, "initial": LOW}),
        ((STATUS_LED, OUT), {"pull_up_down": 20, "initial": HIGH}),  # active-low LED off
        ((DOOR, IN), {"pull_up_down": PUD_UP}),
        ((CALL, IN), {"pull_up_down": PUD_DOWN}),
    ]
    detects = fake.calls_named("add_event_detect")
    assert [(c.args) for c in detects] == [(DOOR, BOTH), (CALL, BOTH)]
    # software debounce only: RPi.GPIO's bouncetime would eat release edges
    assert all("bouncetime" not in c.kwargs for c in detects)
    assert all(callable(c.kwargs["callback"]) for c in detects)
    assert rig.board.buttons.names() == ("door", "call")
    assert not rig.board.buttons.is_pressed("door")
    assert rig.events == []


def test_relay_left_on_by_a_crash_is_driven_off_at_start() -> None:
    fake = FakeGPIO()
    fake.setmode(BCM)
    fake.setup(STRIKE, OUT, initial=HIGH)  # the previous run died mid-pulse
    fake.calls.clear()
    r = Rig(fake)
    try:
        assert fake.level(STRIKE) == LOW
        assert not r.board.relays["strike"].is_on
        first_setup = fake.calls_named("setup")[0]
        assert first_setup.args[0] == STRIKE
    finally:
        r.close()


def test_active_low_relay_rests_high() -> None:
    cfg = GpioConfig(relays=(RelayConfig("strike", STRIKE, active_high=False),))
    r = Rig(FakeGPIO(), cfg)
    try:
        assert r.fake.level(STRIKE) == HIGH
        r.board.relays["strike"].pulse(1.0)
        assert r.fake.level(STRIKE) == LOW
        r.at(1001.0)
        assert r.fake.level(STRIKE) == HIGH
    finally:
        r.close()


def test_bad_config_is_reported_before_touching_any_pin() -> None:
    fake = FakeGPIO()
    cfg = GpioConfig(
        buttons=(ButtonConfig("door", 17, "intercom.toml line 12"),),
        relays=(RelayConfig("strike", 17, "intercom.toml line 20"),),
    )
    with pytest.raises(GpioConfigError) as info:
        RpiGpioBoard(Loop(), cfg, gpio=fake)
    msg = str(info.value)
    assert "intercom.toml line 20: relay 'strike'" in msg
    assert "already used by intercom.toml line 12: button 'door'" in msg
    assert fake.calls == []


def test_pin_claimed_elsewhere_names_the_entry_and_releases_the_relay() -> None:
    # rpi-lgpio raises lgpio.error (not RuntimeError) when another process holds a pin.
    class LgpioError(Exception):
        pass

    fake = FakeGPIO(fail_setup={CALL: LgpioError("GPIO busy")})
    with pytest.raises(GpioUnavailableError) as info:
        RpiGpioBoard(Loop(), CONFIG, gpio=fake)
    msg = str(info.value)
    assert "intercom.toml line 4: button 'call' on BCM 27" in msg
    assert "GPIO busy" in msg
    assert fake.writes[STRIKE][-1] == LOW
    (cleanup,) = fake.calls_named("cleanup")
    assert set(cleanup.args[0]) == {STRIKE, RING_LED, STATUS_LED, DOOR, CALL}


def test_edge_detection_failure_hints_at_rpi_lgpio() -> None:
    fake = FakeGPIO()

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("Failed to add edge detection")

    fake.add_event_detect = broken  # type: ignore[method-assign]
    with pytest.raises(GpioUnavailableError, match="rpi-lgpio") as info:
        RpiGpioBoard(Loop(), CONFIG, gpio=fake)
    assert "intercom.toml line 3: button 'door'" in str(info.value)
    assert fake.writes[STRIKE][-1] == LOW


def test_board_numbering_already_chosen_is_refused() -> None:
    fake = FakeGPIO()
    fake.setmode(fake.BOARD)
    with pytest.raises(GpioUnavailableError, match="BCM"):
        RpiGpioBoard(Loop(), CONFIG, gpio=fake)


def test_imports_rpi_gpio_when_no_module_given(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeGPIO()
    package = types.ModuleType("RPi")
    package.GPIO = fake  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "RPi", package)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", fake)
    with Loop() as loop, RpiGpioBoard(loop, CONFIG) as board:
        assert board.buttons.names() == ("door", "call")
    assert fake.calls_named("setmode")[0].args == (BCM,)


def test_missing_library_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "RPi", None)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", None)
    with pytest.raises(GpioUnavailableError, match="rpi-lgpio"):
        RpiGpioBoard(Loop(), CONFIG)


# -- buttons ------------------------------------------------------------------------------


def test_bouncing_press_is_one_press(rig: Rig) -> None:
    # Contact closes (pin pulled low) with bounce: five edges over 8 ms.
    for t, level in [(1000.000, LOW), (1000.002, HIGH), (1000.004, LOW), (1000.006, HIGH)]:
        rig.at(t)
        rig.edges(DOOR, [level])
    rig.at(1000.008)
    rig.edges(DOOR, [LOW])
    rig.at(1000.037)  # 29 ms after the last edge: still settling
    assert rig.events == []
    rig.at(1000.038)
    assert rig.events == [ButtonPressed("door", 1000.008)]
    assert rig.board.buttons.is_pressed("door")
    # Bouncy release.
    rig.at(1000.5)
    rig.edges(DOOR, [HIGH, LOW, HIGH])
    rig.at(1000.53)
    assert rig.events[1:] == [ButtonReleased("door", 1000.5, 1000.5 - 1000.008, False)]
    assert len(rig.events) == 2


def test_edge_thread_only_wakes_the_loop(rig: Rig) -> None:
    rig.edges(DOOR, [LOW, HIGH, LOW])
    rig.at(1000.1)
    assert rig.events == [ButtonPressed("door", 1000.0)]
    edge_thread = rig.fake.edge_thread_ident
    assert edge_thread is not None and edge_thread != threading.get_ident()
    # The callback ran on the edge thread and did nothing but call_soon_threadsafe...
    assert rig.loop.threadsafe_threads and set(rig.loop.threadsafe_threads) == {edge_thread}
    assert rig.loop.foreign_calls == []
    # ...so the pin was read on the loop's thread, never on the edge thread.
    reads = rig.fake.calls_named("input")
    assert reads and {c.thread for c in reads} == {threading.get_ident()}


def test_lost_final_edge_is_caught_by_resampling(rig: Rig) -> None:
    # The library reported the first edge but missed the bounce back up and
    # down again; the pin is low. Resampling at the deadline settles on it.
    rig.edges(DOOR, [LOW])
    rig.fake.drive(DOOR, HIGH)  # a bounce with no callback
    rig.at(1000.01)
    rig.fake.drive(DOOR, LOW)
    rig.at(1000.03)  # deadline of the first edge: resample sees LOW
    assert rig.events == [ButtonPressed("door", 1000.0)]


def test_glitch_does_not_ring(rig: Rig) -> None:
    rig.edges(DOOR, [LOW])
    rig.at(1000.01)
    rig.edges(DOOR, [HIGH])
    rig.at(1001.0)
    assert rig.events == []


def test_long_press(rig: Rig) -> None:
    rig.edges(DOOR, [LOW])
    rig.at(1000.03)
    assert rig.events == [ButtonPressed("door", 1000.0)]
    rig.at(1001.999)
    assert len(rig.events) == 1
    rig.at(1002.0)
    assert rig.events[1] == ButtonLongPressed("door", 1002.0)
    rig.at(1005.0)
    rig.edges(CALL, [])  # nothing
    rig.edges(DOOR, [HIGH])
    rig.at(1005.03)
    assert rig.events[2:] == [ButtonReleased("door", 1005.0, 5.0, True)]


def test_active_high_button_with_pull_down(rig: Rig) -> None:
    rig.edges(CALL, [HIGH])
    rig.at(1000.03)
    assert rig.events == [ButtonPressed("call", 1000.0)]


def test_button_held_at_start_reports_nothing_until_released() -> None:
    fake = FakeGPIO()
    fake.drive(DOOR, LOW)
    r = Rig(fake)
    try:
        assert r.board.buttons.is_pressed("door")
        r.at(1005.0)
        assert r.events == []  # no press, no long press for a button stuck at boot
        r.edges(DOOR, [HIGH])
        r.at(1005.03)
        assert [type(e) for e in r.events] == [ButtonReleased]
    finally:
        r.close()


# -- LEDs ---------------------------------------------------------------------------------


def test_led_pattern_timing_on_the_loop_with_fake_clock(rig: Rig) -> None:
    fake, leds = rig.fake, rig.board.leds
    leds.show("ring", SLOW_BLINK)
    assert fake.level(RING_LED) == HIGH
    for t, level in [(1000.499, HIGH), (1000.5, LOW), (1000.999, LOW), (1001.0, HIGH)]:
        rig.at(t)
        assert fake.level(RING_LED) == level, t
    # The loop stalls for 1.3 s: the LED shows the level due now, without drift.
    rig.at(1002.3)
    assert fake.level(RING_LED) == HIGH  # 1002.0-1002.5 is an "on" half
    rig.at(1002.5)
    assert fake.level(RING_LED) == LOW
    leds.on("ring")
    rig.at(1010.0)
    assert fake.level(RING_LED) == HIGH and leds.is_lit("ring")


def test_active_low_led_and_pattern_replacement(rig: Rig) -> None:
    fake, leds = rig.fake, rig.board.leds
    assert fake.level(STATUS_LED) == HIGH  # off
    leds.show("status", FAST_BLINK)
    assert fake.level(STATUS_LED) == LOW and leds.is_lit("status")
    rig.at(1000.05)
    leds.show("status", LedPattern(((False, 1.0), (True, 1.0))))  # restarts from now
    assert fake.level(STATUS_LED) == HIGH
    rig.at(1000.2)  # the old FAST_BLINK timers must be dead
    assert fake.level(STATUS_LED) == HIGH
    rig.at(1001.05)
    assert fake.level(STATUS_LED) == LOW
    leds.off("status")
    rig.at(1003.0)
    assert fake.level(STATUS_LED) == HIGH


def test_led_pattern_on_the_real_clock() -> None:
    fake = FakeGPIO()
    with Loop() as loop:
        board = RpiGpioBoard(loop, CONFIG, gpio=fake)
        board.leds.show("ring", LedPattern.blink(0.02, 0.02))
        before = len(fake.writes[RING_LED])
        # Generous bound: only a broken scheduler fails it.
        assert loop.run_until(lambda: len(fake.writes[RING_LED]) >= before + 6, timeout=5.0)
        board.close()
    changes = fake.writes[RING_LED][before - 1 : -1]  # from the pattern's first "on"
    assert changes[:6] == [HIGH, LOW, HIGH, LOW, HIGH, LOW]
    assert fake.writes[RING_LED][-1] == LOW


def test_unknown_led_is_a_key_error(rig: Rig) -> None:
    with pytest.raises(KeyError, match="no LED named 'nope'"):
        rig.board.leds.on("nope")


# -- relay --------------------------------------------------------------------------------


def test_relay_pulse(rig: Rig) -> None:
    relay = rig.board.relays["strike"]
    relay.pulse(3.0)
    assert relay.is_on and rig.fake.level(STRIKE) == HIGH
    rig.at(1002.999)
    assert rig.fake.level(STRIKE) == HIGH
    rig.at(1003.0)
    assert rig.fake.level(STRIKE) == LOW and not relay.is_on


def test_relay_pulse_extends_never_shortens(rig: Rig) -> None:
    relay = rig.board.relays["strike"]
    relay.pulse(3.0)
    rig.at(1001.0)
    relay.pulse(1.0)  # would end at 1002: keeps 1003
    relay.pulse(4.0)  # ends at 1005
    rig.at(1004.9)
    assert relay.is_on
    rig.at(1005.0)
    assert not relay.is_on
    assert rig.fake.writes[STRIKE] == [LOW, LOW, HIGH, LOW]  # setup, start-up off, pulse, end


def test_relay_refuses_unbounded_pulses(rig: Rig) -> None:
    relay = rig.board.relays["strike"]
    for seconds in (0.0, -1.0, 10.5, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="strike"):
            relay.pulse(seconds)
    assert not relay.is_on and rig.fake.level(STRIKE) == LOW


def test_close_drives_relay_off_mid_pulse_and_releases_pins(rig: Rig) -> None:
    relay = rig.board.relays["strike"]
    relay.pulse(5.0)
    rig.board.leds.show("ring", SLOW_BLINK)
    rig.at(1001.0)
    rig.board.close()
    assert rig.fake.writes[STRIKE][-1] == LOW
    assert rig.fake.writes[RING_LED][-1] == LOW
    removed = {c.args[0] for c in rig.fake.calls_named("remove_event_detect")}
    assert removed == {DOOR, CALL}
    (cleanup,) = rig.fake.calls_named("cleanup")
    assert set(cleanup.args[0]) == {STRIKE, RING_LED, STATUS_LED, DOOR, CALL}
    # Timers of the pulse and the pattern are dead: nothing touches the released pins.
    n_calls = len(rig.fake.calls)
    rig.at(1010.0)
    assert len(rig.fake.calls) == n_calls
    with pytest.raises(RuntimeError, match="closed"):
        relay.pulse(1.0)
    rig.board.close()  # idempotent
    assert len(rig.fake.calls_named("cleanup")) == 1


def test_no_button_events_after_close(rig: Rig) -> None:
    rig.edges(DOOR, [LOW])
    rig.board.close()
    rig.at(1001.0)
    assert rig.events == []
