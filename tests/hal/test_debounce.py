"""Pure debouncer and LED schedule: explicit ``now``, exact deadlines."""

from __future__ import annotations

import pytest

from hal.debounce import (
    ButtonEvent,
    ButtonLongPressed,
    ButtonPhase,
    ButtonPressed,
    ButtonReleased,
    Debouncer,
    LedPattern,
    PatternSchedule,
)
from hal.gpio import FAST_BLINK, SLOW_BLINK, STEADY


def drain(d: Debouncer) -> list[ButtonEvent]:
    out: list[ButtonEvent] = []
    while (e := d.next_event()) is not None:
        out.append(e)
    return out


def fire(d: Debouncer) -> None:
    """Jump to the debouncer's own deadline, as the loop would."""
    when = d.get_timer()
    assert when is not None
    d.handle_timer(when)


# -- debouncer ------------------------------------------------------------------


def test_idle_button_wants_no_timer() -> None:
    d = Debouncer("door", debounce=0.03, long_press=1.0, now=10.0)
    assert d.get_timer() is None
    d.feed(False, 10.5)  # same level: nothing pending
    assert d.get_timer() is None
    assert drain(d) == []


def test_bouncing_press_gives_one_press_timed_at_the_last_edge() -> None:
    d = Debouncer("door", debounce=0.03, long_press=None, now=0.0)
    # closed/open/closed/open/closed, 5 ms apart: all inside one debounce window
    for i, level in enumerate([True, False, True, False, True]):
        d.feed(level, 10.0 + i * 0.005)
        d.handle_timer(10.0 + i * 0.005)
        assert drain(d) == []
    assert d.get_timer() == pytest.approx(10.02 + 0.03)
    d.handle_timer(10.049)  # one ms early: still nothing
    assert drain(d) == []
    fire(d)
    (press,) = drain(d)
    assert isinstance(press, ButtonPressed) and press.at == pytest.approx(10.02)
    assert d.phase is ButtonPhase.PRESSED
    assert d.get_timer() is None  # no long press configured


def test_glitch_shorter_than_window_is_ignored() -> None:
    d = Debouncer("door", debounce=0.03, long_press=1.0, now=0.0)
    d.feed(True, 5.0)
    d.feed(False, 5.01)  # back to the settled level inside the window
    assert d.get_timer() is None
    d.handle_timer(6.0)
    assert drain(d) == []
    assert not d.pressed


def test_press_release_with_bouncy_release() -> None:
    d = Debouncer("door", debounce=0.02, long_press=1.0, now=0.0)
    d.feed(True, 1.0)
    fire(d)
    assert drain(d) == [ButtonPressed("door", 1.0)]
    assert d.get_timer() == 2.0  # long-press deadline
    for t, level in [(1.3, False), (1.305, True), (1.31, False)]:
        d.feed(level, t)
    assert d.get_timer() == pytest.approx(1.33)
    fire(d)
    (release,) = drain(d)
    assert isinstance(release, ButtonReleased)
    assert (release.button, release.at, release.long) == ("door", 1.31, False)
    assert release.held == pytest.approx(0.31)
    assert d.get_timer() is None


def test_long_press_emitted_once_and_flagged_on_release() -> None:
    d = Debouncer("door", debounce=0.03, long_press=1.5, now=0.0)
    d.feed(True, 100.0)
    fire(d)
    assert drain(d) == [ButtonPressed("door", 100.0)]
    assert d.get_timer() == 101.5
    d.handle_timer(101.4)
    assert drain(d) == []
    fire(d)
    assert drain(d) == [ButtonLongPressed("door", 101.5)]
    assert d.phase is ButtonPhase.HELD
    assert d.get_timer() is None
    d.handle_timer(200.0)
    assert drain(d) == []  # not repeated
    d.feed(False, 203.0)
    fire(d)
    assert drain(d) == [ButtonReleased("door", 203.0, 103.0, True)]
    assert not d.pressed


def test_release_pending_at_long_press_deadline_is_a_short_press() -> None:
    d = Debouncer("door", debounce=0.05, long_press=1.0, now=0.0)
    d.feed(True, 0.0)
    fire(d)
    drain(d)
    d.feed(False, 0.98)  # released 20 ms before the deadline, not yet confirmed
    d.handle_timer(1.0)
    assert drain(d) == []
    fire(d)  # at 1.03
    assert drain(d) == [ButtonReleased("door", 0.98, 0.98, False)]


def test_late_timer_still_reports_settle_time() -> None:
    d = Debouncer("door", debounce=0.03, long_press=1.0, now=0.0)
    d.feed(True, 1.0)
    d.handle_timer(5.0)  # the loop was stalled for seconds
    assert drain(d) == [ButtonPressed("door", 1.0), ButtonLongPressed("door", 2.0)]


def test_button_held_at_start_is_resting_state() -> None:
    d = Debouncer("door", debounce=0.03, long_press=1.0, pressed=True, now=7.0)
    assert d.pressed and d.phase is ButtonPhase.HELD
    assert d.get_timer() is None  # no long press for a button stuck at boot
    d.handle_timer(100.0)
    assert drain(d) == []
    d.feed(False, 108.0)
    fire(d)
    assert drain(d) == [ButtonReleased("door", 108.0, 101.0, True)]
    d.feed(True, 110.0)  # the next press is an ordinary one
    fire(d)
    assert drain(d) == [ButtonPressed("door", 110.0)]


def test_zero_debounce_accepts_at_once() -> None:
    d = Debouncer("door", debounce=0.0, long_press=None)
    d.feed(True, 3.0)
    assert d.get_timer() == 3.0
    d.handle_timer(3.0)
    assert drain(d) == [ButtonPressed("door", 3.0)]


@pytest.mark.parametrize(("debounce", "long_press"), [(-0.1, None), (0.1, 0.1), (0.5, 0.2)])
def test_bad_timings_are_the_callers_fault(debounce: float, long_press: float | None) -> None:
    with pytest.raises(ValueError):
        Debouncer("x", debounce=debounce, long_press=long_press)


# -- LED schedule ---------------------------------------------------------------------


def transitions(s: PatternSchedule, start: float, end: float) -> list[tuple[float, bool]]:
    """Walk the schedule as the loop would: level now, then jump to next_change."""
    out = [(start, s.level_at(start))]
    now = start
    while (when := s.next_change(now)) is not None and when <= end:
        now = when
        out.append((now, s.level_at(now)))
    return out


def test_slow_blink_exact_times() -> None:
    s = PatternSchedule(SLOW_BLINK, 1000.0)
    assert transitions(s, 1000.0, 1002.0) == [
        (1000.0, True),
        (1000.5, False),
        (1001.0, True),
        (1001.5, False),
        (1002.0, True),
    ]


def test_fast_blink_does_not_drift_over_a_long_ring() -> None:
    s = PatternSchedule(FAST_BLINK, 50.0)
    trans = transitions(s, 50.0, 110.0 + 1e-6)
    assert len(trans) == 601  # 60 s at 10 changes per second, plus the start
    assert trans[-1][0] == pytest.approx(110.0, abs=1e-9)
    levels = [lit for _, lit in trans]
    assert levels == [i % 2 == 0 for i in range(601)]


def test_schedule_answers_from_start_after_a_late_wakeup() -> None:
    s = PatternSchedule(SLOW_BLINK, 0.0)
    # The loop woke 0.3 s late for the change due at 2.5.
    assert s.level_at(2.8) is False
    assert s.next_change(2.8) == 3.0


def test_steady_never_changes() -> None:
    s = PatternSchedule(STEADY, 5.0)
    assert s.level_at(5.0) and s.level_at(500.0)
    assert s.next_change(5.0) is None


def test_merged_steps_and_one_shot_ends_dark() -> None:
    pattern = LedPattern(((True, 0.25), (True, 0.25), (False, 0.5), (True, 1.0)), repeat=False)
    s = PatternSchedule(pattern, 0.0)
    assert transitions(s, 0.0, 10.0) == [(0.0, True), (0.5, False), (1.0, True), (2.0, False)]
    assert s.next_change(2.0) is None
    assert s.level_at(3.0) is False


def test_level_before_start_is_off() -> None:
    s = PatternSchedule(SLOW_BLINK, 10.0)
    assert s.level_at(9.0) is False
    assert s.next_change(9.0) == 10.0


@pytest.mark.parametrize(
    "steps", [(), ((True, 0.0),), ((True, -1.0),), ((1, 0.5),), ((True, float("inf")),)]
)
def test_bad_patterns_rejected(steps: tuple[tuple[bool, float], ...]) -> None:
    with pytest.raises(ValueError):
        LedPattern(steps)
