"""Calling out: a list of targets rung one after the other or all at once.

The bell, a speed-dial button and ``intercom call`` all dial through one
:class:`Dialer`. It keeps the attempts still ringing and the targets still to
call, and emits :class:`MakeCall` / :class:`Hangup` / :class:`Log` into the
behaviour's command queue; the behaviour (:mod:`firmware.behaviour`) keeps the
phone's state, the ring-timeout deadline and the tones, and learns from each
:class:`DialStep` what to do about them.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence

from sipstack.records import dataclass

from .behaviour_events import CallPhase, Command, Hangup, Log, MakeCall

__all__ = ["TrackedCall", "DialStep", "Dialer"]


@dataclass(eq=False)
class TrackedCall:
    """One call the behaviour cares about (mutable: its phase and id change).

    Compared by identity: two attempts to the same target are two calls.
    ``ref`` ties an outgoing attempt to its :class:`MakeCall` until the
    application reports the user agent's ``call_id``.
    """

    remote: str
    outgoing: bool
    call_id: int | None = None
    ref: int | None = None
    phase: CallPhase = CallPhase.CALLING
    door_denied_logged: bool = False


class DialStep(enum.Enum):
    """What the behaviour must do after the dialer moved on."""

    PLACED = "placed"  # a new attempt rings: arm the ring timeout afresh
    WAITING = "waiting"  # other attempts still ring (or nothing changed)
    EXHAUSTED = "exhausted"  # nobody is left to call: give up


class Dialer:
    """The attempts of one dialing, and the targets still to call (sequential).

    ``commands`` is the behaviour's queue, so our commands keep their order
    with the behaviour's own. Refs count up over the dialer's life: a late
    :class:`~firmware.behaviour_events.CallPlaced` for an attempt already
    given up is recognised and hung up.
    """

    def __init__(self, commands: deque[Command]) -> None:
        self._commands = commands
        self._attempts: list[TrackedCall] = []
        self._by_id: dict[int, TrackedCall] = {}
        self._targets: list[str] = []
        self._account = 0
        self._next_ref = 1
        self.ring_timeout: float | None = None
        """Seconds each attempt (sequential) or all of them (parallel) may ring."""

    def start(
        self, targets: Sequence[str], *, parallel: bool, timeout: float | None, acc: int
    ) -> None:
        """Call ``targets`` (at least one) from account ``acc``: the first now
        (sequential), or all now where the first to answer wins (parallel).
        The caller arms the ring timeout, as after :attr:`DialStep.PLACED`."""
        if not targets:
            raise ValueError("Dialer.start needs at least one target (the caller checks)")
        self._account = acc
        self._targets = list(targets)
        self.ring_timeout = timeout
        if parallel:
            while self._targets:
                self._place(self._targets.pop(0))
        else:
            self._place(self._targets.pop(0))

    def find(self, call_id: int) -> TrackedCall | None:
        """The ringing attempt with the user agent's ``call_id``, if it is ours."""
        return self._by_id.get(call_id)

    def owns(self, call: TrackedCall) -> bool:
        """Whether ``call`` is one of the attempts still ringing."""
        return call in self._attempts

    def placed(self, ref: int, call_id: int | None, reason: str) -> DialStep:
        """The application placed :class:`MakeCall` ``ref`` as ``call_id`` (None:
        it failed at once, ``reason`` says why)."""
        call = next((c for c in self._attempts if c.ref == ref), None)
        if call is None:
            if call_id is not None:  # we gave up on it before it was placed
                self._commands.append(Hangup(call_id))
            return DialStep.WAITING
        if call_id is None:
            return self.failed(call, reason or "could not place the call")
        call.call_id = call_id
        self._by_id[call_id] = call
        return DialStep.WAITING

    def failed(self, call: TrackedCall, why: str) -> DialStep:
        """One attempt failed (busy, declined, unreachable): call the next
        target once no other attempt rings."""
        self._drop(call, hang_up=False)
        self._commands.append(Log(f"call to {call.remote} failed: {why}"))
        if self._attempts:
            return DialStep.WAITING  # parallel: the others still ring
        return self._next()

    def answered(self, call: TrackedCall) -> None:
        """``call`` answered first: it is no attempt any more, and the others
        are cancelled (parallel ringing)."""
        self._attempts.remove(call)
        if call.call_id is not None:
            self._by_id.pop(call.call_id, None)
        for other in list(self._attempts):
            self._drop(other, hang_up=True)
        self._targets = []

    def timed_out(self) -> DialStep:
        """The ring timeout passed: hang up what rings, call the next target."""
        for call in list(self._attempts):
            self._commands.append(Log(f"no answer from {call.remote} in {self.ring_timeout:g} s"))
            self._drop(call, hang_up=True)
        return self._next()

    def cancel(self) -> None:
        """Hang up every attempt and call nobody else."""
        for call in list(self._attempts):
            self._drop(call, hang_up=True)
        self._targets = []

    def _next(self) -> DialStep:
        """Sequential: call the next target, or say that none is left."""
        if not self._targets:
            return DialStep.EXHAUSTED
        self._place(self._targets.pop(0))
        return DialStep.PLACED

    def _place(self, target: str) -> None:
        ref = self._next_ref
        self._next_ref += 1
        self._attempts.append(TrackedCall(target, outgoing=True, ref=ref))
        self._commands.append(MakeCall(self._account, target, ref))

    def _drop(self, call: TrackedCall, hang_up: bool) -> None:
        self._attempts.remove(call)
        if call.call_id is not None:
            self._by_id.pop(call.call_id, None)
            if hang_up:
                self._commands.append(Hangup(call.call_id))
