"""Simulated GPIO board on the real loop with a fake clock: buttons from code, histories."""

from __future__ import annotations

from collections.abc import Iterator

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
    RelayConfig,
)
from hal.sim import SimGpioBoard
from sipstack.loop import Loop

CONFIG = GpioConfig(
    buttons=(ButtonConfig("door", 17, debounce=0.03, long_press=1.0),),
    leds=(LedConfig("ring", 22), LedConfig("status", 23, active_high=False)),
    relays=(RelayConfig("strike", 24, max_pulse=10.0),),
)


class FakeClock:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class Desk:
    def __init__(self) -> None:
        self.clock = FakeClock(50.0)
        self.loop = Loop(clock=self.clock)
        self.sim = SimGpioBoard(self.loop, CONFIG)
        self.events: list[object] = []
        self.sim.buttons.set_handler(self.events.append)

    def at(self, t: float) -> None:
        self.clock.now = t
        for _ in range(4):
            self.loop.run_once(max_wait=0)


@pytest.fixture
def desk() -> Iterator[Desk]:
    d = Desk()
    yield d
    d.sim.close()
    d.loop.close()


def test_is_a_gpio_board(desk: Desk) -> None:
    board: GpioBoard = desk.sim  # the protocol is satisfied (mypy checks this line)
    assert board.buttons.names() == ("door",)
    assert board.leds.names() == ("ring", "status")
    assert set(board.relays) == {"strike"}


def test_press_and_release_from_code(desk: Desk) -> None:
    desk.sim.press("door")
    desk.at(50.0)
    assert desk.events == []  # debouncing
    desk.at(50.03)
    assert desk.events == [ButtonPressed("door", 50.0)]
    desk.sim.release("door")
    desk.at(50.25)
    desk.at(50.279)
    assert len(desk.events) == 1
    desk.at(50.28)
    assert desk.events[1:] == [ButtonReleased("door", 50.25, 0.25, False)]


def test_click_and_long_press(desk: Desk) -> None:
    desk.sim.click("door", hold=0.1)
    for t in (50.0, 50.03, 50.1, 50.13):
        desk.at(t)
    assert [type(e) for e in desk.events] == [ButtonPressed, ButtonReleased]
    desk.events.clear()
    desk.sim.press("door")
    for t in (51.0, 51.03, 52.0):
        desk.at(t)
    assert desk.events == [ButtonPressed("door", 51.0), ButtonLongPressed("door", 52.0)]


def test_led_history_with_timestamps(desk: Desk) -> None:
    leds = desk.sim.leds
    leds.show("ring", SLOW_BLINK)
    for t in (50.5, 51.0, 51.5, 51.75):
        desk.at(t)
    leds.on("ring")
    desk.at(52.0)
    leds.off("ring")
    assert desk.sim.led_history("ring") == [
        (50.0, False),  # start-up
        (50.0, True),
        (50.5, False),
        (51.0, True),
        (51.5, False),
        (51.75, True),
        (52.0, False),
    ]
    # Raw pin view, as gpiozero's MockPin.assert_states: active-low LED inverted.
    leds.show("status", FAST_BLINK)
    desk.at(52.1)
    desk.sim.pins.assert_states(23, [True, False, True])
    with pytest.raises(AssertionError):
        desk.sim.pins.assert_states(23, [False, True])


def test_relay_history_and_close(desk: Desk) -> None:
    desk.sim.relays["strike"].pulse(2.0)
    desk.at(52.0)
    desk.sim.relays["strike"].pulse(5.0)
    desk.at(53.0)
    desk.sim.close()
    assert desk.sim.relay_history("strike") == [
        (50.0, False),
        (50.0, True),
        (52.0, False),
        (52.0, True),
        (53.0, False),  # close() mid-pulse
    ]
    desk.at(60.0)
    assert desk.sim.relay_history("strike")[-1] == (53.0, False)


def test_text_commands_for_a_cli(desk: Desk) -> None:
    assert desk.sim.command("press door") == "pressed door"
    desk.at(50.0)
    desk.at(50.05)
    assert desk.sim.command("release door") == "released door"
    desk.at(50.05)
    desk.at(50.1)
    assert [type(e) for e in desk.events] == [ButtonPressed, ButtonReleased]
    desk.sim.leds.on("ring")
    assert desk.sim.command("leds") == "ring=on status=off"
    assert desk.sim.command("relays") == "strike=off"
    assert desk.sim.command("click door 0.5") == "clicked door for 0.5 s"
    with pytest.raises(ValueError, match="commands:"):
        desk.sim.command("open sesame")
    with pytest.raises(KeyError, match="no button named 'gate'"):
        desk.sim.command("press gate")


def test_sim_validates_config_like_the_real_backend() -> None:
    cfg = GpioConfig(
        buttons=(ButtonConfig("door", 17, "desk.toml line 2"),),
        relays=(RelayConfig("strike", 17, "desk.toml line 9"),),
    )
    with Loop() as loop, pytest.raises(GpioConfigError, match="desk.toml line 9"):
        SimGpioBoard(loop, cfg)


def test_a_raising_handler_does_not_break_long_press(desk: Desk) -> None:
    def handler(event: object) -> None:
        desk.events.append(event)
        raise RuntimeError("bug in the app")

    desk.sim.buttons.set_handler(handler)
    desk.sim.press("door")
    for t in (50.0, 50.03, 51.0):
        desk.at(t)
    assert desk.events == [ButtonPressed("door", 50.0), ButtonLongPressed("door", 51.0)]
