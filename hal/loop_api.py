"""What the hardware layer needs from the event loop, as a Protocol.

``hal`` must not import ``sipstack`` (layers only look down, and they are
siblings), so backends are handed any object with this shape; in the firmware
it is ``sipstack.loop.Loop``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["EventLoop", "Cancellable"]


class Cancellable(Protocol):
    """A scheduled call that can be cancelled."""

    def cancel(self) -> None: ...


class EventLoop(Protocol):
    """The single select loop: fds, timers, and a thread-safe wake-up."""

    def time(self) -> float: ...

    def call_soon(self, callback: Callable[[], object]) -> None: ...

    def call_soon_threadsafe(self, callback: Callable[[], object]) -> None: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> Cancellable: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable: ...

    def add_reader(self, fd: int | Any, callback: Callable[[], object]) -> None: ...

    def remove_reader(self, fd: int | Any) -> None: ...

    def add_writer(self, fd: int | Any, callback: Callable[[], object]) -> None: ...

    def remove_writer(self, fd: int | Any) -> None: ...
