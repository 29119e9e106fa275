"""The single event loop: a ``selectors`` selector, a timer heap and a self-pipe.

Everything in the firmware runs on one thread: SIP and RTP sockets, ALSA poll
descriptors and GPIO wake-ups all register file descriptors here. Callbacks must
never block. Other threads (a vendor GPIO callback thread) may only call
:meth:`Loop.call_soon_threadsafe`, which writes one byte to the self-pipe.

Modelled on CPython's ``asyncio.BaseEventLoop._run_once``: compute the timeout
from the earliest timer, select, run due timers, then run ready callbacks.

On Linux the loop drives ``select.epoll`` itself unless a selector is passed:
a call wakes the loop 50 times a second, and ``selectors.EpollSelector.select``
costs a ``SelectorKey`` look-up, a list and a rounding per wake-up on top of the
same ``epoll_wait`` (a measurable share of a call's CPU; docs/benchmarks.md).
An injected selector (tests) is used as before, through the same code path.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import logging
import os
import select
import selectors
import threading
import time
import types
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Loop", "TimerHandle"]

log = logging.getLogger(__name__)

Callback = Callable[[], object]

#: epoll event bits; as ``selectors.EpollSelector``, an error or hang-up
#: (any bit but the other direction's) makes both registered directions ready.
_EPOLLIN = getattr(select, "EPOLLIN", 0x001)
_EPOLLOUT = getattr(select, "EPOLLOUT", 0x004)


class TimerHandle:
    """A scheduled call; :meth:`cancel` makes it a no-op (lazy removal from the heap)."""

    __slots__ = ("when", "callback", "cancelled")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Stop the callback from running; safe to call more than once."""
        self.cancelled = True


#: Heap entries are (when, sequence, handle): tuples compare in C, and the
#: sequence keeps equal deadlines in scheduling order without touching the handle.
_Entry = tuple[float, int, TimerHandle]


class Loop:
    """A small single-threaded reactor.

    ``clock`` is injectable (defaults to ``time.monotonic``) so that code driven
    by the loop can be tested with a controlled clock; ``selector`` likewise.
    Exceptions raised by callbacks are logged and swallowed: one bad packet
    handler must never stop a door station.
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        selector: selectors.BaseSelector | None = None,
    ) -> None:
        self._clock = clock
        self._epoll: Any = None  # select.epoll when the loop drives epoll itself
        if selector is None and hasattr(select, "epoll"):
            self._epoll = select.epoll()
            selector = _EpollRegistry(self._epoll)
        self._selector = selector if selector is not None else selectors.DefaultSelector()
        self._timers: list[_Entry] = []
        self._ready: collections.deque[Callback] = collections.deque()
        self._threadsafe: collections.deque[Callback] = collections.deque()
        self._seq = 0
        self._stopping = False
        self._closed = False
        # fd -> [reader or None, writer or None]
        self._handlers: dict[int, list[Callback | None]] = {}
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._thread_id: int | None = None

    # -- time -----------------------------------------------------------------

    def time(self) -> float:
        """The loop's clock (monotonic seconds); the only clock protocol code sees."""
        return self._clock()

    # -- scheduling -----------------------------------------------------------

    def call_soon(self, callback: Callback) -> None:
        """Run ``callback`` on the next iteration, after I/O callbacks."""
        self._ready.append(callback)

    def call_soon_threadsafe(self, callback: Callback) -> None:
        """Schedule from another thread; wakes the selector through the self-pipe."""
        self._threadsafe.append(callback)  # deque.append is atomic
        with contextlib.suppress(OSError):  # pipe full: the loop is awake anyway
            os.write(self._wake_w, b"\0")

    def call_at(self, when: float, callback: Callback) -> TimerHandle:
        """Run ``callback`` when the loop clock reaches ``when``."""
        self._seq += 1
        handle = TimerHandle(when, callback)
        heapq.heappush(self._timers, (when, self._seq, handle))
        return handle

    def call_later(self, delay: float, callback: Callback) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds."""
        return self.call_at(self._clock() + delay, callback)

    # -- file descriptors -----------------------------------------------------

    def add_reader(self, fd: int | Any, callback: Callback) -> None:
        """Call ``callback`` whenever ``fd`` is readable (replaces a previous reader)."""
        self._set_handler(_fileno(fd), 0, callback)

    def remove_reader(self, fd: int | Any) -> None:
        """Stop watching ``fd`` for reading; unknown fds are ignored."""
        self._set_handler(_fileno(fd), 0, None)

    def add_writer(self, fd: int | Any, callback: Callback) -> None:
        """Call ``callback`` whenever ``fd`` is writable (replaces a previous writer)."""
        self._set_handler(_fileno(fd), 1, callback)

    def remove_writer(self, fd: int | Any) -> None:
        """Stop watching ``fd`` for writing; unknown fds are ignored."""
        self._set_handler(_fileno(fd), 1, None)

    def _set_handler(self, fd: int, slot: int, callback: Callback | None) -> None:
        handlers = self._handlers.get(fd)
        if handlers is None:
            if callback is None:
                return
            handlers = [None, None]
            handlers[slot] = callback
            # register first: a descriptor epoll refuses (EPERM for regular
            # files) must not leave a stale entry behind
            self._selector.register(fd, self._mask(handlers))
            self._handlers[fd] = handlers
            return
        handlers[slot] = callback
        mask = self._mask(handlers)
        if mask == 0:
            del self._handlers[fd]
            self._selector.unregister(fd)
        else:
            self._selector.modify(fd, mask)

    @staticmethod
    def _mask(handlers: list[Callback | None]) -> int:
        mask = 0
        if handlers[0] is not None:
            mask |= selectors.EVENT_READ
        if handlers[1] is not None:
            mask |= selectors.EVENT_WRITE
        return mask

    # -- running --------------------------------------------------------------

    def stop(self) -> None:
        """Make :meth:`run` return after the current iteration."""
        self._stopping = True

    def run(self) -> None:
        """Run until :meth:`stop` is called."""
        self._stopping = False
        self._thread_id = threading.get_ident()
        try:
            while not self._stopping:
                self.run_once()
        finally:
            self._thread_id = None

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Run until ``predicate()`` is true or ``timeout`` loop-seconds pass.

        Returns the predicate's final value. Meant for tests and for bounded
        shutdown sequences (e.g. waiting for un-REGISTER).
        """
        deadline = self._clock() + timeout
        while not predicate():
            now = self._clock()
            if now >= deadline:
                return predicate()
            self.run_once(max_wait=deadline - now)
        return True

    def run_once(self, max_wait: float | None = None) -> None:
        """One iteration: wait for I/O or the next timer, then run what is due."""
        timeout: float | None
        if self._ready or self._threadsafe:
            timeout = 0.0
        else:
            timeout = None
            timers = self._timers
            while timers and timers[0][2].cancelled:
                heapq.heappop(timers)
            if timers:
                timeout = max(0.0, timers[0][0] - self._clock())
            if max_wait is not None:
                timeout = max_wait if timeout is None else min(timeout, max_wait)
        epoll = self._epoll
        if epoll is not None:
            # epoll_wait rounds the timeout up to whole ms, as selectors does.
            for fd, event in epoll.poll(-1 if timeout is None else timeout):
                self._dispatch(fd, event & ~_EPOLLOUT, event & ~_EPOLLIN)
        else:
            for key, mask in self._selector.select(timeout):
                self._dispatch(key.fd, mask & selectors.EVENT_READ, mask & selectors.EVENT_WRITE)
        while self._threadsafe:
            self._ready.append(self._threadsafe.popleft())
        now = self._clock()
        timers = self._timers
        ready = self._ready
        while timers and timers[0][0] <= now:
            handle = heapq.heappop(timers)[2]
            if not handle.cancelled:
                handle.cancelled = True
                ready.append(handle.callback)
        # Only run what is ready now; callbacks scheduled meanwhile wait a turn.
        for _ in range(len(ready)):
            callback = ready.popleft()
            try:  # _run_callback(), inlined: this runs on every tick of every call
                callback()
            except Exception:
                log.exception("callback %r raised; the loop goes on", callback)

    def _dispatch(self, fd: int, readable: int, writable: int) -> None:
        if fd == self._wake_r:
            self._drain_wakeup()
            return
        handlers = self._handlers.get(fd)
        if handlers is None:
            return
        if readable and handlers[0] is not None:
            self._run_callback(handlers[0])
        if writable:
            # the read callback may have removed the writer (or closed the fd)
            handlers = self._handlers.get(fd)
            if handlers is not None and handlers[1] is not None:
                self._run_callback(handlers[1])

    def _drain_wakeup(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    @staticmethod
    def _run_callback(callback: Callback) -> None:
        try:
            callback()
        except Exception:
            log.exception("callback %r raised; the loop goes on", callback)

    def close(self) -> None:
        """Release the selector and the self-pipe."""
        if self._closed:
            return
        self._closed = True
        self._selector.close()
        os.close(self._wake_r)
        os.close(self._wake_w)

    def __enter__(self) -> Loop:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _EpollRegistry(selectors.BaseSelector):
    """Registration side of a loop-driven ``select.epoll`` (no ``select()``).

    The loop polls the epoll object itself; this keeps ``register`` /
    ``modify`` / ``unregister`` / ``close`` behaving as ``EpollSelector``'s do
    (``KeyError`` for an unknown or repeated fd, a closed fd unregisters quietly).
    """

    def __init__(self, epoll: Any) -> None:
        self._epoll = epoll
        self._keys: dict[int, selectors.SelectorKey] = {}

    @staticmethod
    def _bits(events: int) -> int:
        bits = 0
        if events & selectors.EVENT_READ:
            bits |= _EPOLLIN
        if events & selectors.EVENT_WRITE:
            bits |= _EPOLLOUT
        return bits

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = _fileno(fileobj)
        if fd in self._keys:
            raise KeyError(f"{fileobj!r} (FD {fd}) is already registered")
        key = selectors.SelectorKey(fileobj, fd, events, data)
        self._epoll.register(fd, self._bits(events))
        self._keys[fd] = key
        return key

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self._keys.pop(_fileno(fileobj))
        with contextlib.suppress(OSError):  # closed already: the kernel dropped it
            self._epoll.unregister(key.fd)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        fd = _fileno(fileobj)
        old = self._keys[fd]
        key = selectors.SelectorKey(old.fileobj, fd, events, data)
        self._epoll.modify(fd, self._bits(events))
        self._keys[fd] = key
        return key

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        raise NotImplementedError("the loop polls its epoll object directly")

    def close(self) -> None:
        self._keys.clear()
        self._epoll.close()

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return types.MappingProxyType(self._keys)


def _fileno(fd: int | Any) -> int:
    return fd if isinstance(fd, int) else int(fd.fileno())
