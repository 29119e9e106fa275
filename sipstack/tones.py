"""Call-progress and feedback tones: ringback, busy, ring, call waiting, DTMF.

A tone is a cadence of segments (ITU-T E.180: a frequency set on for so many
milliseconds, then silence, repeated). :class:`ToneGenerator` is a frame
source for the conference bridge. The cost per frame is a ``bytes`` slice or
two: for each frequency set it precomputes, once, a table covering a whole
number of periods of the combined waveform. With integer frequencies that
table is ``rate / gcd(rate, f1, f2...)`` samples long, at most one second
(16 kB at 8 kHz); a frame is then a slice of the table at the running phase,
never ``math.sin`` per sample per frame. Tables are cached per generator
(:meth:`ToneGenerator.prepare` builds them ahead of time, e.g. at start-up).

Segments start at phase zero and stop abruptly, as exchange tones do.
"""

from __future__ import annotations

import array
import math
import sys
import types
from collections.abc import Mapping
from functools import reduce

from .records import dataclass

__all__ = [
    "DTMF_FREQUENCIES",
    "TONE_PLANS",
    "ToneGenerator",
    "TonePlan",
    "ToneSegment",
    "ToneSpec",
    "dtmf_tone",
]


@dataclass(frozen=True, slots=True)
class ToneSegment:
    """``frequencies`` (Hz, integers; empty for silence) for ``duration_ms``.

    ``level_dbfs`` is the peak of each sine component relative to full scale
    (a sine at X dBm0 peaks at about X - 3 dBFS in G.711: -13 dBFS ~ -10 dBm0).
    """

    frequencies: tuple[int, ...]
    duration_ms: int
    level_dbfs: float = -13.0

    def __post_init__(self) -> None:
        if self.duration_ms <= 0:
            raise ValueError(f"tone segment duration must be positive, not {self.duration_ms}")
        if any(f <= 0 for f in self.frequencies):
            raise ValueError(f"tone frequencies must be positive, not {self.frequencies}")
        if self.level_dbfs > 0:
            raise ValueError(f"tone level {self.level_dbfs} dBFS is above full scale")


@dataclass(frozen=True, slots=True)
class ToneSpec:
    """A cadence: the segments in order, repeated or played once."""

    name: str
    segments: tuple[ToneSegment, ...]
    repeat: bool = True

    def __post_init__(self) -> None:
        if not self.segments:
            raise ValueError(f"tone {self.name!r} has no segments")

    @property
    def cycle_ms(self) -> int:
        """Length of one cadence cycle."""
        return sum(s.duration_ms for s in self.segments)


def _on_off(
    name: str, freqs: tuple[int, ...], *pattern: int, level: float = -13.0, repeat: bool = True
) -> ToneSpec:
    """Alternating on/off durations (ms), the way national tone plans write them."""
    segments = tuple(
        ToneSegment(freqs if i % 2 == 0 else (), ms, level) for i, ms in enumerate(pattern)
    )
    return ToneSpec(name, segments, repeat)


@dataclass(frozen=True, slots=True)
class TonePlan:
    """A country's call-progress tones, plus the local ring of a desk phone."""

    ringback: ToneSpec
    busy: ToneSpec
    congestion: ToneSpec
    call_waiting: ToneSpec
    ring: ToneSpec


# A local ringer (a desk phone's own ring, not a network tone): a 20 Hz-style
# trill of two tones, 1 s of it, then 2 s of quiet. Same in every plan.
_RING = ToneSpec(
    "ring",
    tuple(ToneSegment((f,), 50, -9.0) for _ in range(10) for f in (1000, 1250))
    + (ToneSegment((), 2000),),
)

TONE_PLANS: Mapping[str, TonePlan] = types.MappingProxyType(
    {
        # ETSI ES 201 970 / ITU-T E.180 supplement 2, CEPT values (most of Europe)
        "EU": TonePlan(
            ringback=_on_off("ringback", (425,), 1000, 4000),
            busy=_on_off("busy", (425,), 500, 500),
            congestion=_on_off("congestion", (425,), 250, 250),
            call_waiting=_on_off("call waiting", (425,), 200, 200, 200, 4400),
            ring=_RING,
        ),
        # ANSI T1.401 / Telcordia GR-506 precise tone plan (North America)
        "US": TonePlan(
            ringback=_on_off("ringback", (440, 480), 2000, 4000, level=-22.0),
            busy=_on_off("busy", (480, 620), 500, 500, level=-27.0),
            congestion=_on_off("congestion", (480, 620), 250, 250, level=-27.0),
            call_waiting=_on_off("call waiting", (440,), 300, 9700, level=-16.0),
            ring=_RING,
        ),
    }
)
"""Call-progress tone plans by region; choose one in the firmware configuration."""

DTMF_FREQUENCIES: Mapping[str, tuple[int, int]] = types.MappingProxyType(
    {
        key: (low, high)
        for low, row in zip((697, 770, 852, 941), ("123A", "456B", "789C", "*0#D"), strict=True)
        for high, key in zip((1209, 1336, 1477, 1633), row, strict=True)
    }
)
"""ITU-T Q.23: the low (row) and high (column) frequency of each key."""


def dtmf_tone(digit: str, duration_ms: int = 100, level_dbfs: float = -16.0) -> ToneSpec:
    """The dual tone of one key, played once (local feedback for a key press)."""
    try:
        freqs = DTMF_FREQUENCIES[digit.upper()]
    except KeyError:
        raise ValueError(f"{digit!r} is not a DTMF key (0-9, *, #, A-D)") from None
    return ToneSpec(f"dtmf {digit}", (ToneSegment(freqs, duration_ms, level_dbfs),), repeat=False)


class ToneGenerator:
    """A :class:`~sipstack.media_graph.FrameSource` playing one :class:`ToneSpec` at a time.

    :meth:`read` returns None while idle, so the bridge mixes nothing.
    """

    def __init__(self, sample_rate: int, frame_samples: int) -> None:
        if sample_rate <= 0 or frame_samples <= 0:
            raise ValueError("tone generator sample_rate and frame_samples must be positive")
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self._tables: dict[tuple[tuple[int, ...], float], tuple[bytes, int]] = {}
        self._spec: ToneSpec | None = None
        self._lengths: tuple[int, ...] = ()
        self._segment = 0
        self._left = 0  # samples left in the current segment
        self._phase = 0  # sample index into the current segment's table

    @property
    def active(self) -> bool:
        """True while a tone plays (a repeating one until :meth:`stop`)."""
        return self._spec is not None

    @property
    def playing(self) -> ToneSpec | None:
        """The tone being played."""
        return self._spec

    def prepare(self, spec: ToneSpec) -> None:
        """Build the tables of ``spec`` now (start-up), not on the first :meth:`play`."""
        for segment in spec.segments:
            if segment.frequencies:
                self._table(segment)

    def play(self, spec: ToneSpec) -> None:
        """Start ``spec`` from its beginning (replacing what played)."""
        nyquist = self.sample_rate / 2
        for segment in spec.segments:
            if any(f >= nyquist for f in segment.frequencies):
                raise ValueError(
                    f"tone {spec.name!r} has a frequency at or above {nyquist:g} Hz, "
                    f"which {self.sample_rate} Hz audio cannot carry"
                )
        self.prepare(spec)
        self._spec = spec
        self._lengths = tuple(
            max(1, s.duration_ms * self.sample_rate // 1000) for s in spec.segments
        )
        self._segment = 0
        self._left = self._lengths[0]
        self._phase = 0

    def stop(self) -> None:
        """Stop playing; :meth:`read` returns None from now on."""
        self._spec = None

    def read(self, now: float) -> bytes | None:
        """The next frame of the tone, or None when idle."""
        spec = self._spec
        if spec is None:
            return None
        wanted = self.frame_samples
        left = self._left
        if wanted < left:
            # Fast path (all but the last frame of a segment): one slice of the
            # period table, no list, no join; the fallback below handles the rest.
            segment = spec.segments[self._segment]
            if segment.frequencies:
                table, period = self._tables[(segment.frequencies, segment.level_dbfs)]
                phase = self._phase
                self._left = left - wanted
                self._phase = (phase + wanted) % period
                return table[2 * phase : 2 * (phase + wanted)]
        pieces: list[bytes] = []
        while wanted:
            segment = spec.segments[self._segment]
            take = min(wanted, self._left)
            if segment.frequencies:
                table, period = self._table(segment)
                pieces.append(table[2 * self._phase : 2 * (self._phase + take)])
                self._phase = (self._phase + take) % period
            else:
                pieces.append(bytes(2 * take))
            wanted -= take
            self._left -= take
            if self._left == 0 and not self._next_segment(spec):
                pieces.append(bytes(2 * wanted))  # a tone played once ends mid-frame
                break
        return b"".join(pieces)

    def _next_segment(self, spec: ToneSpec) -> bool:
        self._segment += 1
        if self._segment == len(spec.segments):
            if not spec.repeat:
                self._spec = None
                return False
            self._segment = 0
        self._left = self._lengths[self._segment]
        self._phase = 0
        return True

    def _table(self, segment: ToneSegment) -> tuple[bytes, int]:
        """(samples covering whole periods + one frame for wrap-free slicing, period)."""
        key = (segment.frequencies, segment.level_dbfs)
        cached = self._tables.get(key)
        if cached is not None:
            return cached
        rate = self.sample_rate
        # the sum of sines repeats after rate/gcd(rate, f1, f2...) samples
        period = rate // reduce(math.gcd, segment.frequencies, rate)
        peak = 32767.0 * 10.0 ** (segment.level_dbfs / 20.0)
        steps = [2.0 * math.pi * f / rate for f in segment.frequencies]
        one = [round(peak * sum(math.sin(w * i) for w in steps)) for i in range(period)]
        samples = array.array("h", (max(-32768, min(32767, v)) for v in one))
        if sys.byteorder != "little":  # pragma: no cover - the Pi is little-endian
            samples.byteswap()
        body = samples.tobytes()
        # tile so that any frame-long slice starting inside one period is contiguous
        table = body * (1 + -(-self.frame_samples // period))
        self._tables[key] = (table, period)
        return table, period
