"""The loop's own epoll path behaves as the ``selectors`` path it replaced.

``Loop()`` on Linux polls ``select.epoll`` itself; ``Loop(selector=...)`` goes
through ``selectors``. Every case runs on both and must give the same result.
"""

from __future__ import annotations

import os
import select
import selectors
import socket
from collections.abc import Callable, Iterator

import pytest

from sipstack.loop import Loop

LOOPS: dict[str, Callable[[], Loop]] = {
    "epoll": Loop,
    "selectors": lambda: Loop(selector=selectors.DefaultSelector()),
}


@pytest.fixture(params=list(LOOPS))
def loop(request: pytest.FixtureRequest) -> Iterator[Loop]:
    if request.param == "epoll" and not hasattr(select, "epoll"):
        pytest.skip("no epoll on this platform")
    with LOOPS[request.param]() as lp:
        yield lp


def test_default_loop_polls_epoll_itself() -> None:
    if not hasattr(select, "epoll"):
        pytest.skip("no epoll on this platform")
    with Loop() as lp:
        assert isinstance(lp._epoll, select.epoll)  # the fast path is the one in use
    with Loop(selector=selectors.DefaultSelector()) as lp:
        assert lp._epoll is None


def test_hang_up_wakes_the_reader(loop: Loop) -> None:
    # EPOLLHUP without EPOLLIN: selectors reports it as readable, so must we.
    r, w = os.pipe()
    try:
        seen: list[bytes] = []
        loop.add_reader(r, lambda: seen.append(os.read(r, 10)))
        os.close(w)
        w = -1
        loop.run_once(max_wait=1.0)
        assert seen == [b""]
        loop.remove_reader(r)
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_reader_and_writer_on_one_socket(loop: Loop) -> None:
    a, b = socket.socketpair()
    try:
        events: list[str] = []

        def on_write() -> None:
            events.append("w")
            loop.remove_writer(a)

        def on_read() -> None:
            events.append("r:" + a.recv(10).decode())

        loop.add_writer(a, on_write)
        loop.add_reader(a, on_read)
        b.send(b"hi")
        loop.run_once(max_wait=1.0)
        assert events == ["r:hi", "w"]  # read first, as before
        loop.run_once(max_wait=0.05)
        assert events == ["r:hi", "w"]  # the writer is gone, nothing to read
        loop.remove_reader(a)
        loop.remove_reader(a)  # unknown now: ignored
    finally:
        a.close()
        b.close()


def test_a_reader_that_closes_its_fd_is_forgotten(loop: Loop) -> None:
    a, b = socket.socketpair()
    calls: list[str] = []

    def on_read() -> None:
        calls.append("a")
        loop.remove_reader(a)
        a.close()

    loop.add_reader(a, on_read)
    b.send(b"x")
    loop.run_once(max_wait=1.0)
    b.close()
    # the descriptor number is free again; a new socket on it registers cleanly
    c, d = socket.socketpair()
    try:
        loop.add_reader(c, lambda: calls.append("c:" + c.recv(10).decode()))
        d.send(b"y")
        loop.run_once(max_wait=1.0)
        assert calls == ["a", "c:y"]
        loop.remove_reader(c)
    finally:
        c.close()
        d.close()


def test_a_regular_file_is_refused_without_a_stale_entry(
    loop: Loop, tmp_path: pytest.TempPathFactory
) -> None:
    path = os.path.join(str(tmp_path), "f")
    with open(path, "wb") as f:
        if isinstance(loop._selector, selectors.SelectSelector):
            pytest.skip("select() accepts regular files")
        with pytest.raises(PermissionError):  # epoll: EPERM for regular files
            loop.add_reader(f.fileno(), lambda: None)
        loop.remove_reader(f.fileno())  # nothing was kept: a no-op


def test_timeout_is_not_shortened(loop: Loop) -> None:
    # epoll_wait takes whole milliseconds: a timer is never run early.
    fired: list[float] = []
    due = loop.time() + 0.0155
    loop.call_at(due, lambda: fired.append(loop.time()))
    while not fired:
        loop.run_once()
    assert fired[0] >= due
