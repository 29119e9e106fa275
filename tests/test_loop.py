"""The select loop: timers in order, cancellation, fds, thread wake-ups, faulty callbacks."""

from __future__ import annotations

import socket
import threading

import pytest

from sipstack.loop import Loop


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_timers_run_in_deadline_order_and_cancel() -> None:
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        fired: list[str] = []
        loop.call_at(1003.0, lambda: fired.append("c"))
        loop.call_at(1001.0, lambda: fired.append("a"))
        cancelled = loop.call_at(1002.0, lambda: fired.append("x"))
        loop.call_at(1002.0, lambda: fired.append("b"))
        cancelled.cancel()
        clock.now = 1002.5
        loop.run_once(max_wait=0)
        assert fired == ["a", "b"]
        clock.now = 1003.0
        loop.run_once(max_wait=0)
        assert fired == ["a", "b", "c"]


def test_equal_deadlines_keep_insertion_order() -> None:
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        fired: list[int] = []
        for i in range(5):
            loop.call_at(1001.0, lambda i=i: fired.append(i))
        clock.now = 1001.0
        loop.run_once(max_wait=0)
        assert fired == [0, 1, 2, 3, 4]


def test_reader_callback_and_removal() -> None:
    with Loop() as loop:
        a, b = socket.socketpair()
        got: list[bytes] = []
        loop.add_reader(a, lambda: got.append(a.recv(100)))
        b.send(b"ping")
        assert loop.run_until(lambda: bool(got), timeout=2.0)
        assert got == [b"ping"]
        loop.remove_reader(a)
        b.send(b"again")
        loop.run_once(max_wait=0.01)
        assert got == [b"ping"]
        a.close()
        b.close()


def test_reader_and_writer_on_same_fd() -> None:
    with Loop() as loop:
        a, b = socket.socketpair()
        events: list[str] = []

        def on_write() -> None:
            events.append("w")
            loop.remove_writer(a)

        loop.add_reader(a, lambda: events.append("r") or a.recv(10))
        loop.add_writer(a, on_write)
        b.send(b"x")
        assert loop.run_until(lambda: len(events) >= 2, timeout=2.0)
        assert sorted(events[:2]) == ["r", "w"]
        loop.remove_reader(a)
        a.close()
        b.close()


def test_threadsafe_call_wakes_a_sleeping_select() -> None:
    with Loop() as loop:
        done: list[str] = []
        threading.Timer(0.05, lambda: loop.call_soon_threadsafe(lambda: done.append("t"))).start()
        # No timers and no fds: only the self-pipe can wake this select.
        assert loop.run_until(lambda: bool(done), timeout=5.0)


def test_failing_callback_is_logged_and_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        after: list[int] = []

        def boom() -> None:
            raise RuntimeError("bad packet handler")

        loop.call_soon(boom)
        loop.call_soon(lambda: after.append(1))
        loop.run_once(max_wait=0)
        assert after == [1]
        assert "bad packet handler" in caplog.text


def test_stop_ends_run() -> None:
    with Loop() as loop:
        loop.call_later(0.01, loop.stop)
        loop.run()  # returns because stop() was called


def test_callbacks_scheduled_during_a_turn_run_next_turn() -> None:
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        order: list[str] = []

        def first() -> None:
            order.append("first")
            loop.call_soon(lambda: order.append("second"))

        loop.call_soon(first)
        loop.run_once(max_wait=0)
        assert order == ["first"]
        loop.run_once(max_wait=0)
        assert order == ["first", "second"]
