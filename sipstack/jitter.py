"""Adaptive jitter buffer for one audio stream, sans-IO.

The network hands us packets early, late, out of order, twice or never; the
audio device wants exactly one frame every ``ptime``. :class:`JitterBuffer` sits
between: the receive path calls :meth:`~JitterBuffer.put` for every audio
packet, the playout clock calls :meth:`~JitterBuffer.get` once per frame and
plays what it returns (:class:`Frame`), conceals (:class:`Lost`) or plays
silence (:class:`Empty`).

How it works, with the reasons:

* **Playout follows the RTP timestamp**, not just the sequence number: a slot
  with no packet because the sender was silent (DTX) or sent an RFC 4733 event
  instead comes out as :class:`Empty`, so pauses keep their length; a slot whose
  packet is missing while later ones are here is :class:`Lost` (conceal it).
  Sequence numbers give order, duplicates and lateness.
* **Delay is measured, not guessed from the fill level.** For every packet
  ``r = arrival - timestamp / clock_rate``; its minimum over the last one to two
  seconds is the fastest path through the network. The buffer delay is
  ``(now - play_timestamp / clock_rate) - min r``: how long the quickest packets
  wait before they are played. Jitter is the spread of ``r`` above that minimum
  (the RFC 3550 A.8 transit idea, kept as a peak rather than a mean, because a
  packet later than the peak is a gap in the audio).
* **Target = jitter peak + one frame, clamped to [min_delay, max_delay]. It
  grows at once and shrinks slowly** (peak held for ``hold_time``, then at
  ``shrink_rate`` seconds per second): networks that spiked once spike again.
* **Delay follows target by dropping or inserting a frame**, preferably where it
  is inaudible: a silent slot, or a frame the injected ``is_quiet`` predicate
  calls quiet (for G.711 the codec knows the energy; we never decode). Only when
  the error passes ``urgent`` frames does it act on a loud frame. This is also
  what keeps a long call's delay bounded when the sender's clock runs 0.5 %
  fast or slow: the error grows by a frame every 4 s and is corrected at the
  next quiet moment.
* **Bounded**: never more than ``max_delay`` of audio; the oldest goes first.
* **A loss seen late is not played twice.** Slots that underran while nothing
  was here and that a later packet then shows to be lost are skipped, not
  concealed again (with 60 ms packets a loss shows only 60 ms later).
* **Packets of any length** (10-120 ms) reach it through
  :class:`~sipstack.depacketise.PacketSplitter`, which cuts them into frames of a length that
  divides both the packet and the playout tick; loss, reordering and
  concealment then work per frame.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable

from .records import dataclass

__all__ = [
    "EMPTY",
    "Empty",
    "Frame",
    "JitterBuffer",
    "JitterResult",
    "JitterStats",
    "Lost",
    "LossReason",
]

# A sequence number this far behind what we played is a restart, not a late
# packet: RtpReceiver (RFC 3550 A.1) only lets such jumps through when confirmed.
_RESTART_BEHIND = 100
# A jump this far ahead is a restart too: nothing of the old stream is worth keeping.
_RESTART_AHEAD = 1000
# Played-history bits kept to tell a duplicate from a late packet.
_HISTORY_BITS = 64
_HISTORY_MASK = (1 << _HISTORY_BITS) - 1
# Float slack in delay comparisons, so a start exactly on a band edge is inside it.
_EPS = 1e-6


class LossReason(enum.Enum):
    """Why :meth:`JitterBuffer.get` has no audio for a slot the stream is talking in."""

    MISSING = "missing"  #: the packet was lost (a later one is here): conceal it
    UNDERRUN = "underrun"  #: nothing has arrived yet: a late packet or a pause; conceal
    INSERTED = "inserted"  #: the buffer stretched time toward its target: conceal it


@dataclass(frozen=True, slots=True)
class Frame:
    """Play this payload now."""

    seq: int
    timestamp: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Lost:
    """Conceal one frame (packet-loss concealment), for the reason given."""

    seq: int
    reason: LossReason


@dataclass(frozen=True, slots=True)
class Empty:
    """Nothing to play: before the stream starts, or the sender is silent."""


#: The one :class:`Empty` value (immutable, shared).
EMPTY = Empty()

JitterResult = Frame | Lost | Empty


@dataclass(frozen=True, slots=True)
class JitterStats:
    """A snapshot of the buffer's state and counters; delays in seconds."""

    current_delay: float
    target_delay: float
    jitter: float
    level: int
    received: int
    played: int
    late: int
    lost: int
    duplicate: int
    reordered: int
    dropped: int
    inserted: int
    overflow: int
    underruns: int


class _State(enum.Enum):
    BUFFERING = "buffering"  # waiting until the first frames have waited the target delay
    PLAYING = "playing"


class JitterBuffer:
    """An adaptive, bounded, reorder-tolerant playout buffer (see the module doc).

    ``frame_samples`` is the samples per :meth:`put` and per :meth:`get` call:
    one entry is one frame. Packets of another length go through a
    :class:`~sipstack.depacketise.PacketSplitter`, which cuts them into frames
    (or sets a shorter frame with :meth:`set_frame_samples`).
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        *,
        min_delay: float = 0.04,
        max_delay: float = 0.5,
        initial_delay: float = 0.06,
        is_quiet: Callable[[bytes], bool] | None = None,
        hold_time: float = 10.0,
        shrink_rate: float = 0.005,
        urgent: int = 3,
        expand_frames: int = 3,
        idle_timeout: float = 1.0,
    ) -> None:
        if clock_rate <= 0 or frame_samples <= 0:
            raise ValueError("clock rate and frame size must be positive")
        if not 0 <= min_delay <= initial_delay <= max_delay:
            raise ValueError("need 0 <= min_delay <= initial_delay <= max_delay")
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.ptime = frame_samples / clock_rate
        self.min_delay = min_delay
        self.max_delay = max_delay
        self._max_frames = max(2, math.ceil(max_delay / self.ptime))
        self._is_quiet = is_quiet
        self._hold_blocks = max(1, round(hold_time))
        self._shrink_rate = shrink_rate
        self._urgent = urgent * self.ptime
        self._floor = min_delay  # lowest target: see set_frame_samples()
        self._expand_frames = expand_frames
        self._expand_time = expand_frames * self.ptime
        self._idle_timeout = idle_timeout
        self._initial_delay = initial_delay
        # counters survive reset(): they describe the whole call
        self.received = 0
        self.played = 0
        self.late = 0
        self.lost = 0
        self.duplicate = 0
        self.reordered = 0
        self.dropped = 0
        self.inserted = 0
        self.overflow = 0
        self.underruns = 0
        self._jitter_est = max(0.0, initial_delay - self.ptime)
        self._target = initial_delay
        self.reset()

    def set_frame_samples(self, frame_samples: int, frames_per_packet: int = 1) -> None:
        """Change the frame length; a real change forgets the stream (counters stay).

        The frames held were cut to the old length, so they cannot be played
        at the new one: this is a restart, like a new SSRC.
        ``frames_per_packet`` frames arrive together (a long packet cut up by
        :class:`~sipstack.depacketise.PacketSplitter`): the last waits that many frames minus one
        longer than the first whatever the network does, so the target never
        goes below that plus one frame, from the first packet on.
        """
        if frame_samples <= 0 or frames_per_packet <= 0:
            raise ValueError("frame size and frames per packet must be positive")
        changed = frame_samples != self.frame_samples
        self.frame_samples = frame_samples
        self.ptime = frame_samples / self.clock_rate
        self._max_frames = max(2, math.ceil(self.max_delay / self.ptime))
        # time constants given in frames (urgent, expand_frames) keep their length in time
        self._expand_frames = max(1, round(self._expand_time / self.ptime))
        self._floor = min(self.max_delay, max(self.min_delay, frames_per_packet * self.ptime))
        self._target = max(self._target, self._floor)
        if changed:
            self.reset()

    def reset(self) -> None:
        """Forget the stream (new SSRC, sequence restart); keep counters and the target."""
        self._state = _State.BUFFERING
        # ext seq -> (ts relative to the origin, payload); payload None = not audio
        self._frames: dict[int, tuple[int, bytes | None]] = {}
        self._max_seq: int | None = None
        self._next_seq = 0
        self._ts_origin = 0
        self._last_ts = 0  # relative ts of the last packet put, for unwrapping
        self._play_ts = 0
        self._history = 0
        self._since_adjust = 0
        self._empty_gets = 0
        self._last_quiet = True
        self._talking = False  # the last slot played audio (or concealed it)
        self._last_put: float | None = None
        self._delay = 0.0
        self._reset_estimator()
        # Until playout (re)starts, arrivals set the base but are not jitter: the
        # first packets after an outage come as a burst in any order.
        self._resync = True

    def _reset_estimator(self) -> None:
        self._block_start: float | None = None
        self._cur_min = math.inf
        self._prev_min = math.inf
        self._cur_spread = 0.0
        self._spreads: deque[float] = deque(maxlen=self._hold_blocks)
        self._held_peak = 0.0
        self._est_time: float | None = None

    # -- input -------------------------------------------------------------------

    def put_event(self, packet_seq: int, timestamp: int, arrival_now: float) -> None:
        """Note a packet of this stream that carries no audio (an RFC 4733 event).

        Its sequence number then counts neither as lost nor as a slot: the
        time the event took shows up as :class:`Empty` slots, by timestamp.
        """
        self.put(packet_seq, timestamp, None, arrival_now)

    def put(self, seq: int, timestamp: int, payload: bytes | None, now: float) -> None:
        """Store one audio packet's payload (16-bit seq, 32-bit RTP timestamp).

        ``payload=None`` is what :meth:`put_event` stores for a packet without audio.
        """
        max_seq = self._max_seq
        if max_seq is None:
            ext = seq
            self._ts_origin = timestamp
            ts = 0
        else:
            ext = max_seq + ((seq - max_seq + 0x8000) & 0xFFFF) - 0x8000
            ts = (
                self._last_ts
                + ((timestamp - self._ts_origin - self._last_ts + 0x80000000) & 0xFFFFFFFF)
                - 0x80000000
            )
            if ext > max_seq + _RESTART_AHEAD or (
                self._state is _State.PLAYING and ext < self._next_seq - _RESTART_BEHIND
            ):
                self.reset()
                self.put(seq, timestamp, payload, now)
                return
        self._last_put = now
        if self._state is _State.PLAYING and ext < self._next_seq:
            back = self._next_seq - 1 - ext
            if back < _HISTORY_BITS and (self._history >> back) & 1:
                self.duplicate += 1
                return
            self.late += 1
            if payload is not None:
                self._measure(ts, now)  # the packet that came too late is the jitter
            return
        if ext in self._frames:
            self.duplicate += 1
            return
        if max_seq is not None and ext < max_seq:
            self.reordered += 1
        else:
            self._max_seq = ext
            self._last_ts = ts
        self._frames[ext] = (ts, payload)
        if payload is not None:
            self.received += 1
            self._measure(ts, now)
        if len(self._frames) > self._max_frames:
            self._drop_oldest()

    def _measure(self, ts: int, now: float) -> None:
        """Track min transit and the jitter peak above it (see module doc)."""
        r = now - ts / self.clock_rate
        start = self._block_start
        if start is None:
            self._block_start = now
        elif now - start >= 1.0:
            # one-second blocks; the minimum of this and the previous block is the
            # base, so a clock drifting 0.5 % moves it by at most 10 ms
            self._spreads.append(self._cur_spread)
            self._held_peak = max(self._spreads)
            self._prev_min = self._cur_min
            self._cur_min = math.inf
            self._cur_spread = 0.0
            self._block_start = now if now - start >= 2.0 else start + 1.0
        if r < self._cur_min:
            self._cur_min = r
        if self._resync:
            return
        excess = r - min(self._cur_min, self._prev_min)
        if excess > self._cur_spread:
            self._cur_spread = excess
        peak = max(self._cur_spread, self._held_peak)
        est = self._jitter_est
        if peak >= est:
            est = peak  # grow at once
        elif self._est_time is not None:
            est = max(peak, est - self._shrink_rate * (now - self._est_time))
        self._est_time = now
        self._jitter_est = est
        self._target = min(self.max_delay, max(self._floor, est + self.ptime))

    def _drop_oldest(self) -> None:
        oldest = min(self._frames)
        ts, _payload = self._frames.pop(oldest)
        self.overflow += 1
        if self._state is _State.PLAYING:
            self.lost += oldest - self._next_seq  # never arrived, now never will
            while self._next_seq <= oldest:
                self._advance(self._next_seq == oldest)
            self._play_ts = max(self._play_ts, ts + self.frame_samples)

    def _advance(self, had_packet: bool) -> None:
        self._history = ((self._history << 1) | had_packet) & _HISTORY_MASK
        self._next_seq += 1

    # -- output ------------------------------------------------------------------

    def get(self, now: float) -> Frame | Lost | Empty:
        """What to play for the next ``frame_samples`` (call once per frame)."""
        if self._state is _State.BUFFERING and not self._start(now):
            return EMPTY
        entry = self._frames.get(self._next_seq)
        if entry is not None and entry[1] is None:
            self._skip_events()
        cur_min = self._cur_min
        prev_min = self._prev_min
        base = cur_min if cur_min < prev_min else prev_min
        delay = now - self._play_ts / self.clock_rate - base if base < math.inf else 0.0
        self._delay = delay
        err = delay - self._target
        since = self._since_adjust = self._since_adjust + 1
        if since >= 2 and (err > self.ptime + _EPS or err < -0.5 * self.ptime - _EPS):
            if err > self.ptime + _EPS and self._drop(err):
                self._since_adjust = 0
                self._delay -= self.ptime
                self._skip_events()
            elif err < -0.5 * self.ptime - _EPS and (self._last_quiet or err < -self._urgent):
                # hold the timeline one frame: conceal in speech, silence in a pause
                self._since_adjust = 0
                self.inserted += 1
                self._delay += self.ptime
                if self._talking:
                    return Lost(self._next_seq & 0xFFFF, LossReason.INSERTED)
                return EMPTY
        return self._output(now)

    def _start(self, now: float) -> bool:
        """Leave BUFFERING once the head frame has waited the target delay."""
        frames = self._frames
        if not frames:
            return False
        base = min(self._cur_min, self._prev_min)
        head = min(frames)
        if now - frames[head][0] / self.clock_rate - base < self._target - 0.5 * self.ptime:
            return False
        # After an outage a burst may hold more than the target: start at the
        # newest frames so the delay is right at once (the stale ones are dropped).
        while len(frames) > 1:
            if now - frames[head][0] / self.clock_rate - base <= self._target + self.ptime:
                break
            del frames[head]
            self.dropped += 1
            head = min(frames)
        self._state = _State.PLAYING
        self._resync = False
        self._next_seq = head
        self._play_ts = frames[head][0]
        self._history = 0
        self._since_adjust = 0
        return True

    def _skip_events(self) -> None:
        frames = self._frames
        entry = frames.get(self._next_seq)
        while entry is not None and entry[1] is None:
            del frames[self._next_seq]
            self._advance(True)
            self._talking = False  # the sender sends events, not speech
            entry = frames.get(self._next_seq)

    def _slot_is_quiet(self) -> bool:
        entry = self._frames.get(self._next_seq)
        if entry is None or entry[0] - self._play_ts >= self.frame_samples // 2:
            return True  # a silent slot (or one we would conceal anyway)
        payload = entry[1]
        return self._is_quiet is None or payload is None or self._is_quiet(payload)

    def _drop(self, err: float) -> bool:
        """Skip the coming slot if dropping it now is inaudible or urgent."""
        if not (err > self._urgent or self._slot_is_quiet()):
            return False
        entry = self._frames.get(self._next_seq)
        if entry is not None and entry[0] - self._play_ts < self.frame_samples // 2:
            del self._frames[self._next_seq]
            self._advance(True)
            self._play_ts = entry[0] + self.frame_samples
        elif entry is None and self._max_seq is not None and self._max_seq > self._next_seq:
            self._advance(False)  # a missing frame: skipping it loses nothing more
            self.lost += 1
            self._play_ts += self.frame_samples
        else:
            self._play_ts += self.frame_samples  # shorten a silence
        self.dropped += 1
        return True

    def _output(self, now: float) -> Frame | Lost | Empty:
        frames = self._frames
        seq = self._next_seq
        entry = frames.get(seq)
        if entry is None and self._empty_gets and self._max_seq is not None:
            seq = self._catch_up(seq)
            entry = frames.get(seq)
            if entry is not None and entry[1] is None:
                # caught up onto RFC 4733 event packets: they carry no audio
                self._skip_events()
                seq = self._next_seq
                entry = frames.get(seq)
        if entry is not None:
            self._empty_gets = 0
            ts, payload = entry
            if ts - self._play_ts >= self.frame_samples // 2:
                # RFC 3550 5.1: a timestamp ahead of the sequence means the sender
                # was silent (DTX) or sent events: play silence, keep the timing
                self._play_ts += self.frame_samples
                self._last_quiet = True
                self._talking = False
                return EMPTY
            del frames[seq]
            # _advance(True), inlined: this is the path of every played frame
            self._history = ((self._history << 1) | 1) & _HISTORY_MASK
            self._next_seq = seq + 1
            # a late talkspurt start (ts behind) just moves the schedule
            self._play_ts = ts + self.frame_samples
            self.played += 1
            assert payload is not None  # events were skipped before
            is_quiet = self._is_quiet
            self._last_quiet = is_quiet is None or is_quiet(payload)
            self._talking = True
            return Frame(seq & 0xFFFF, (ts + self._ts_origin) & 0xFFFFFFFF, payload)
        if self._max_seq is not None and self._max_seq > seq:
            # a later packet is here, this one is not: lost (or hopelessly late)
            self._empty_gets = 0
            self._advance(False)
            self.lost += 1
            self._play_ts += self.frame_samples
            return Lost(seq & 0xFFFF, LossReason.MISSING)
        # Nothing at all: an underrun in a talkspurt, or the sender fell silent.
        self._empty_gets += 1
        self._play_ts += self.frame_samples
        if self._empty_gets <= self._expand_frames and self._talking:
            # If the packet is only late it will still be played when it comes
            # (its timestamp is behind: the schedule moves, the delay grows);
            # if the sender fell silent (DTX) the timeline was kept.
            self.underruns += 1
            return Lost(seq & 0xFFFF, LossReason.UNDERRUN)
        self._last_quiet = True
        self._talking = False
        if self._last_put is not None and now - self._last_put > self._idle_timeout:
            # a long pause (hold, DTX): re-anchor on the next packet
            self._state = _State.BUFFERING
            self._frames.clear()
            self._max_seq = None
            self._reset_estimator()
            self._resync = True
        return EMPTY

    def _catch_up(self, seq: int) -> int:
        """After underruns: skip missing slots whose time the underruns already took.

        The slots were concealed (or silent) by time while nothing was here; a
        later packet now shows they are lost. Those whose time has passed are
        skipped: concealing them again would play the gap twice (a long
        packet's loss is only seen when the next one comes, a packet later).
        """
        frames = self._frames
        assert self._max_seq is not None
        nxt = seq + 1
        while nxt < self._max_seq and nxt not in frames:
            nxt += 1
        entry = frames.get(nxt)
        if entry is None:
            return seq
        size = self.frame_samples
        # where the missing run began, were the timestamps contiguous (a DTX jump
        # only makes this later: fewer slots skipped)
        first_ts = entry[0] - (nxt - seq) * size
        covered = (self._play_ts - first_ts + size // 2) // size
        if covered <= 0:
            return seq
        skip = min(covered, nxt - seq)
        self.lost += skip
        for _ in range(skip):
            self._advance(False)
        return seq + skip

    # -- statistics --------------------------------------------------------------

    @property
    def target_delay(self) -> float:
        """The delay the buffer steers toward (seconds)."""
        return self._target

    @property
    def current_delay(self) -> float:
        """The measured delay at the last :meth:`get` (seconds)."""
        return self._delay

    def stats(self) -> JitterStats:
        """A snapshot of state and counters."""
        level = 0
        if self._max_seq is not None and self._frames:
            level = self._max_seq - min(self._frames) + 1
        return JitterStats(
            current_delay=self._delay,
            target_delay=self._target,
            jitter=self._jitter_est,
            level=level,
            received=self.received,
            played=self.played,
            late=self.late,
            lost=self.lost,
            duplicate=self.duplicate,
            reordered=self.reordered,
            dropped=self.dropped,
            inserted=self.inserted,
            overflow=self.overflow,
            underruns=self.underruns,
        )
