"""Runs a sans-IO client machine (registration, publication, notifier) on the endpoint.

The machines only produce requests, take responses and ask for a timer; this
driver is the one piece that sends their requests in transactions, feeds back
responses and failures with the loop's clock, keeps one loop timer per machine
and passes their events on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from .endpoint import Endpoint, RequestFailure
from .loop import TimerHandle
from .message import Request, Response
from .transport_base import Destination

__all__ = ["ClientMachine", "MachineDriver"]

log = logging.getLogger(__name__)

E_co = TypeVar("E_co", covariant=True)
E = TypeVar("E")


class ClientMachine(Protocol[E_co]):
    """The sans-IO shape shared by Registration, Publisher and PresenceNotifier."""

    def requests_to_send(self) -> list[Request]: ...

    def receive_response(self, request: Request, response: Response, now: float) -> None: ...

    def handle_timer(self, now: float) -> None: ...

    def get_timer(self) -> float | None: ...

    def next_event(self) -> E_co | None: ...


class MachineDriver(Generic[E]):
    """Drives one machine: ``on_failure(request, failure, now)`` adapts endpoint failures
    (408/503) to the machine's own ``request_failed`` signature."""

    def __init__(
        self,
        endpoint: Endpoint,
        machine: ClientMachine[E],
        on_event: Callable[[E], None],
        on_failure: Callable[[Request, RequestFailure, float], None],
    ) -> None:
        self.endpoint = endpoint
        self.machine = machine
        self._on_event = on_event
        self._on_failure = on_failure
        self._timer: TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        #: told where each answered request went (keep-alives follow that flow)
        self.on_destination: Callable[[Destination], None] | None = None

    def pump(self) -> None:
        """Send what the machine wants sent, hand on its events, re-arm its timer."""
        if self._closed:
            return
        for request in self.machine.requests_to_send():
            self._send(request)
        while (event := self.machine.next_event()) is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("event handler failed for %r", event)
        self._arm()

    def _send(self, request: Request) -> None:
        def on_response(response: Response) -> None:
            if self.on_destination is not None and out.destination is not None:
                self.on_destination(out.destination)
            if response.status >= 200 and not self._closed:
                self.machine.receive_response(request, response, self.endpoint.loop.time())
                self.pump()

        def on_failure(failure: RequestFailure) -> None:
            if not self._closed:
                self._on_failure(request, failure, self.endpoint.loop.time())
                self.pump()

        out = self.endpoint.send_request(request, on_response, on_failure)

    def _arm(self) -> None:
        when = self.machine.get_timer()
        if when == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self.endpoint.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_at = None
        self.machine.handle_timer(self.endpoint.loop.time())
        self.pump()

    def close(self) -> None:
        """Stop driving: no more timers, late responses are ignored."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
