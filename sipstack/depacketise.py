"""Depacketisation: packets of any duration into the jitter buffer's frames.

The media path plays one 20 ms frame per tick; peers send 10, 30, 40, 60 ms
packets too (``a=ptime``, RFC 8866 6.4; Opus frames, RFC 6716). Kept apart
from :mod:`sipstack.jitter` so the buffer stays about frames only.
"""

from __future__ import annotations

import math

from sipstack.jitter import JitterBuffer

__all__ = ["MAX_PACKET_MS", "PacketSplitter"]

#: The longest packet :class:`PacketSplitter` takes, in ms (RFC 8866 6.4 ptime range:
#: what the send side also honours). Longer ones would not fit a sensible buffer.
MAX_PACKET_MS = 120
# The shortest frame a plan may use, in ms: Opus's smallest frame (RFC 6716 2.1.4).
_MIN_UNIT_MS = 2.5


class PacketSplitter:
    """Feeds packets of any duration to a frame-based :class:`JitterBuffer`.

    The playout clock ticks every ``tick_samples``; a peer's packets may be
    longer (``a=ptime:30``/``40``/``60``, Opus 40/60 ms) or shorter (10 ms).
    The plan for a packet of ``d`` samples is a frame (*unit*) of
    ``gcd(d, tick)`` samples: the buffer holds units, a packet is
    ``d // unit`` of them and a tick plays ``tick // unit``. So a 20 ms packet
    is one frame as before (no extra work), 40 and 60 ms packets are 2 and 3
    frames, and 10 and 30 ms packets become 10 ms units, two per tick. Loss,
    reordering and concealment then work per unit, not per packet.

    Each unit needs a sequence number of its own: unit ``k`` of packet ``seq``
    gets ``seq * n + k`` (mod 2**16), which is contiguous across the wrap as
    long as ``n`` (units per packet) stays the same. A packet of another
    duration makes a new plan, which restarts the buffer (a peer changes its
    ptime only on a re-negotiation). A duration that leaves a unit under
    2.5 ms, or above :data:`MAX_PACKET_MS`, is refused and counted in
    :attr:`refused` (its slots are concealed as lost).

    ``sliceable``: one payload byte per RTP clock tick (G.711, and G.722 whose
    RTP clock is 8000, RFC 3551 4.5.2), so a unit's payload is a slice and
    decodes on its own. Otherwise (Opus) the first unit of a packet carries the
    whole payload and the others an empty one (``b""``): the reader decodes the
    packet at its first unit and plays the rest from what it decoded.

    Jitter statistics (RFC 3550 A.8) stay per packet: they are computed by the
    RTP receiver before this. The buffer's own delay estimate sees every unit,
    so it learns that the last unit of a long packet waits longest: the
    packetisation delay is part of what it must hold.
    """

    def __init__(self, jitter: JitterBuffer, tick_samples: int, *, sliceable: bool) -> None:
        if tick_samples <= 0:
            raise ValueError("tick size must be positive")
        self.jitter = jitter
        self.tick_samples = tick_samples
        self.sliceable = sliceable
        rate = jitter.clock_rate
        self._min_unit = max(1, math.ceil(rate * _MIN_UNIT_MS / 1000))
        self._max_packet = rate * MAX_PACKET_MS // 1000
        #: the packet duration the current plan is for (RTP clock samples)
        self.packet_samples = tick_samples
        #: frame length in the buffer (RTP clock samples)
        self.unit = tick_samples
        #: units per packet
        self.per_packet = 1
        #: units per tick: :meth:`JitterBuffer.get` calls per tick
        self.per_tick = 1
        #: one get per tick and one whole payload per frame: the reader's fast path
        self.simple = True
        #: a sliceable payload this long is one tick under the current plan: the
        #: receive path may :meth:`JitterBuffer.put` it directly (-1: never)
        self.whole_bytes = tick_samples if sliceable else -1
        #: packets refused for their duration
        self.refused = 0
        jitter.set_frame_samples(tick_samples)

    def put(self, seq: int, timestamp: int, payload: bytes, samples: int, now: float) -> None:
        """One audio packet of ``samples`` RTP clock ticks (16-bit seq, 32-bit timestamp)."""
        if samples != self.packet_samples and not self._plan(samples):
            self.refused += 1
            return
        jitter = self.jitter
        n = self.per_packet
        if n == 1:
            jitter.put(seq, timestamp, payload, now)
            return
        unit = self.unit
        base = seq * n
        if self.sliceable:
            for k in range(n):
                part = payload[k * unit : (k + 1) * unit]
                jitter.put((base + k) & 0xFFFF, (timestamp + k * unit) & 0xFFFFFFFF, part, now)
            return
        jitter.put(base & 0xFFFF, timestamp, payload, now)
        for k in range(1, n):
            jitter.put((base + k) & 0xFFFF, (timestamp + k * unit) & 0xFFFFFFFF, b"", now)

    def put_event(self, seq: int, timestamp: int, now: float) -> None:
        """A packet without audio (RFC 4733 event): it takes its units' sequence numbers."""
        n = self.per_packet
        if n == 1:
            self.jitter.put_event(seq, timestamp, now)
            return
        base = seq * n
        for k in range(n):
            self.jitter.put_event((base + k) & 0xFFFF, timestamp, now)

    def _plan(self, samples: int) -> bool:
        if not 0 < samples <= self._max_packet:
            return False
        unit = math.gcd(samples, self.tick_samples)
        if unit < self._min_unit:
            return False
        self.packet_samples = samples
        self.unit = unit
        self.per_packet = samples // unit
        self.per_tick = self.tick_samples // unit
        self.simple = self.per_tick == 1 and (self.sliceable or self.per_packet == 1)
        tick = self.per_packet == 1 and self.per_tick == 1
        self.whole_bytes = self.tick_samples if tick and self.sliceable else -1
        # the units' sequence numbering changed with the plan: a restart
        self.jitter.set_frame_samples(unit, self.per_packet)
        self.jitter.reset()
        return True
