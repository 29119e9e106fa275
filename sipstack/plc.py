"""Packet-loss concealment by pitch-period repetition, after ITU-T G.711 Appendix I.

When a packet is lost the listener should hear the voice continue briefly and
fade, not a click and a hole. Appendix I does this by repeating the last pitch
period of the decoded signal, and this module follows its recipe:

* the pitch is found once per loss by normalised cross-correlation of the last
  20 ms against lags of 5 to 15 ms (66-200 Hz), first on every other sample,
  then refined at full resolution around the best coarse lag;
* the repeated cycle's end is overlap-added (a quarter period) with the signal
  that preceded its start, so the loop joins without a step;
* after 10 ms of loss two pitch periods are cycled, after 20 ms three, each
  switch cross-faded over a quarter period, so a long gap does not buzz;
* the output is attenuated linearly by 20 % per 10 ms after the first 10 ms,
  reaching silence at 60 ms;
* the first good frame after a loss is overlap-added with the continuing
  synthetic signal over 4 ms, plus 4 ms per further 10 ms of loss, at most 10 ms.

One deliberate difference: Appendix I delays all output by 3.75 ms so that it
can overlap-add the *start* of the synthetic signal with the last real quarter
period. We do not want that latency on every packet of every call, so instead
the start of the synthetic signal is offset so it continues the last real
sample (the period-to-period step of the previous cycle is carried over) and
that offset decays to zero over a quarter period.

The object is cheap when nothing is lost: a good frame only appends to a
48.75 ms history kept as ``bytes``. The pitch search runs once per loss, in
C-level ``sum(map(mul, ...))`` loops (see ``bench/codecs.py`` for the costs,
and the comparison with libspandsp's ``plc_*``).

PCM is 16-bit signed native-endian mono; the sample rate is a multiple of
8 kHz (all durations scale with it, so the same code serves G.722's 16 kHz).
"""

from __future__ import annotations

import math
from array import array
from operator import mul

__all__ = ["PacketLossConcealer"]

_BASE_RATE = 8000
# G.711 Appendix I constants, in samples at 8 kHz.
_HISTORY = 390  # 48.75 ms: 3 * PITCH_MAX + PITCH_MAX / 4
_PITCH_MIN = 40  # 5 ms (200 Hz)
_PITCH_MAX = 120  # 15 ms (66.7 Hz)
_CORR_LEN = 160  # 20 ms correlation window
_TEN_MS = 80
_FADE = 400  # gain goes 1 -> 0 between 10 ms and 60 ms of loss (20 % per 10 ms)
_OLA_STEP = 32  # 4 ms of end-of-loss overlap-add per 10 ms of loss
_MAX_PERIODS = 3


class PacketLossConcealer:
    """Conceals lost frames of one decoded audio stream.

    Feed every decoded frame through :meth:`good_frame` (it returns the frame
    to play, cross-faded if a loss just ended) and call :meth:`conceal` for
    each lost one. State is per stream: :meth:`reset` on a new SSRC.
    """

    def __init__(self, sample_rate: int = _BASE_RATE) -> None:
        if sample_rate <= 0 or sample_rate % _BASE_RATE:
            raise ValueError(f"sample_rate must be a multiple of 8000, not {sample_rate}")
        scale = sample_rate // _BASE_RATE
        self._sample_rate = sample_rate
        self._history_len = _HISTORY * scale
        self._history_bytes = 2 * self._history_len
        self._pitch_min = _PITCH_MIN * scale
        self._pitch_max = _PITCH_MAX * scale
        self._corr_len = _CORR_LEN * scale
        self._coarse_step = 2 * scale
        self._ten_ms = _TEN_MS * scale
        self._fade = _FADE * scale
        self._ola_step = _OLA_STEP * scale
        self._silent_after = self._ten_ms + self._fade
        # Gain of the n-th concealed sample (App. I attenuation), precomputed.
        self._gains = [
            1.0 if n < self._ten_ms else 1.0 - (n - self._ten_ms) / self._fade
            for n in range(self._silent_after)
        ]
        self._history = bytes(self._history_bytes)
        # Loss state, valid while _lost > 0.
        self._lost = 0  # samples concealed in the current loss
        self._made = 0  # synthetic samples generated (incl. end-of-loss overlap)
        self._hist: list[int] = []
        self._pitch = 0
        self._quarter = 0
        self._cycles: list[list[float]] = []
        self._periods = 1
        self._pos = 0
        self._onset_offset = 0.0
        self._xfade_left = 0

    @property
    def sample_rate(self) -> int:
        """PCM sample rate this concealer was built for."""
        return self._sample_rate

    @property
    def lost_samples(self) -> int:
        """Samples concealed since the last good frame (0 when not in a loss)."""
        return self._lost

    @property
    def pitch(self) -> int:
        """Pitch period (samples) used for the current or last loss; 0 before any."""
        return self._pitch

    def reset(self) -> None:
        """Forget history and any loss in progress."""
        self._history = bytes(self._history_bytes)
        self._lost = 0
        self._made = 0
        self._pitch = 0

    def good_frame(self, pcm: bytes) -> bytes:
        """Record a correctly received frame; return what to play for it.

        That is ``pcm`` itself, except right after a loss, when its start is
        cross-faded with the continuing concealment.
        """
        if len(pcm) & 1:
            raise ValueError(f"PCM frame has an odd length ({len(pcm)} bytes)")
        if self._lost:
            if pcm:
                pcm = self._merge(pcm)
            self._lost = 0
        self._history = (self._history + pcm)[-self._history_bytes :]
        return pcm

    def conceal(self, samples: int) -> bytes:
        """Return ``samples`` samples of concealment for a lost frame."""
        if samples < 0:
            raise ValueError(f"cannot conceal a negative number of samples ({samples})")
        if samples == 0:
            return b""
        if self._lost == 0:
            self._start()
        self._lost += samples
        if self._made >= self._silent_after:
            # Past 60 ms the output is silence; skip the synthesis.
            self._made += samples
            out = bytes(2 * samples)
        else:
            start = self._made
            values = self._synth(samples)
            out = self._to_pcm(self._attenuate(values, start))
        self._history = (self._history + out)[-self._history_bytes :]
        return out

    # -- loss onset ---------------------------------------------------------------

    def _start(self) -> None:
        hist = array("h", self._history).tolist()
        self._hist = hist
        pitch = self._find_pitch(hist)
        quarter = max(1, pitch // 4)
        self._pitch = pitch
        self._quarter = quarter
        self._cycles = [self._cycle(hist, 1)]
        self._periods = 1
        self._pos = 0
        self._made = 0
        self._xfade_left = 0
        # The next real sample would have continued hist[-1] with the step the
        # signal took one period earlier; start the repetition there and let
        # the offset die away over a quarter period (see module docstring).
        self._onset_offset = float(hist[-1] - hist[-pitch - 1])

    def _find_pitch(self, hist: list[int]) -> int:
        """G.711 App. I pitch search: best normalised correlation of the last 20 ms.

        Coarse pass on every other sample (every ``2 * scale``-th at higher
        rates), fine pass at full resolution around the coarse winner. The
        energy of the lagged window slides by one sample per lag instead of
        being summed again.
        """
        end = len(hist)
        corr_len = self._corr_len
        target = hist[end - corr_len :]
        step = self._coarse_step
        best = self._search(hist, target[::step], self._pitch_min, self._pitch_max, step)
        low = max(self._pitch_min, best - step + 1)
        high = min(self._pitch_max, best + step - 1)
        return self._search(hist, target, low, high, 1)

    def _search(self, hist: list[int], target: list[int], low: int, high: int, step: int) -> int:
        """The lag in ``low..high`` (by ``step``) whose window best matches ``target``."""
        end = len(hist)
        span = len(target) * step  # samples covered by the (decimated) window
        first = end - span - low
        seg = hist[first : end - low : step]
        energy = sum(map(mul, seg, seg))
        best, best_score = low, -math.inf
        for lag in range(low, high + 1, step):
            if lag != low:
                # Window moves back by ``step``: one sample enters, one leaves.
                first -= step
                entering = hist[first]
                leaving = hist[first + span]
                energy += entering * entering - leaving * leaving
                seg = hist[first : first + span : step]
            corr = sum(map(mul, target, seg))
            score = corr / math.sqrt(energy) if energy > 0 else 0.0
            if score > best_score:
                best, best_score = lag, score
        return best

    def _cycle(self, hist: list[int], periods: int) -> list[float]:
        """The last ``periods`` pitch periods, with the loop point smoothed.

        The cycle's last quarter period is overlap-added with the quarter period
        that preceded the cycle's first sample, so that wrapping from the end
        back to the start continues like the original signal did.
        """
        length = periods * self._pitch
        q = self._quarter
        end = len(hist)
        cycle: list[float] = [float(v) for v in hist[end - length :]]
        for i in range(q):
            w = (i + 1) / (q + 1)
            j = length - q + i
            cycle[j] = (1.0 - w) * hist[end - q + i] + w * hist[end - length - q + i]
        return cycle

    # -- synthesis ----------------------------------------------------------------

    def _synth(self, count: int) -> list[float]:
        """The next ``count`` samples of un-attenuated periodic extension.

        Plain stretches are slices of the cycle; only the onset offset and the
        cross-fades after a period switch are computed sample by sample.
        """
        out: list[float] = []
        q = self._quarter
        while count > 0:
            made = self._made
            periods = self._periods
            if periods < _MAX_PERIODS and made == periods * self._ten_ms:
                self._grow()  # App. I: one more period after each 10 ms
                periods += 1
            cycle = self._cycles[-1]
            length = len(cycle)
            pos = self._pos
            if made < q or self._xfade_left:
                n = min(count, q - made if made < q else self._xfade_left)
                old = self._cycles[-2] if self._xfade_left else cycle
                for i in range(n):
                    value = cycle[(pos + i) % length]
                    if self._xfade_left:
                        # App. I: fade from the previous cycle into the longer one.
                        w = (q - self._xfade_left + 1) / (q + 1)
                        value = w * value + (1.0 - w) * old[(pos + i) % len(old)]
                        self._xfade_left -= 1
                    else:
                        value += self._onset_offset * (q - made - i) / q
                    out.append(value)
            else:
                n = count
                if periods < _MAX_PERIODS:
                    n = min(n, periods * self._ten_ms - made)
                left, at = n, pos
                while left:
                    take = min(left, length - at)
                    out.extend(cycle[at : at + take])
                    left -= take
                    at = (at + take) % length
            self._pos = (pos + n) % length
            self._made = made + n
            count -= n
        return out

    def _grow(self) -> None:
        """Cycle one more (older) pitch period, keeping the phase."""
        self._periods += 1
        self._cycles.append(self._cycle(self._hist, self._periods))
        self._xfade_left = self._quarter

    def _attenuate(self, values: list[float], start: int) -> list[float]:
        """App. I: full level for 10 ms, then -20 % per 10 ms, silent at 60 ms."""
        if start + len(values) <= self._ten_ms:
            return values
        gains = self._gains[start : start + len(values)]
        if len(gains) < len(values):
            gains.extend([0.0] * (len(values) - len(gains)))
        return list(map(mul, values, gains))

    @staticmethod
    def _to_pcm(values: list[float]) -> bytes:
        if values and (min(values) < -32768.0 or max(values) > 32767.0):
            # Only the onset offset can push a sample past full scale; clip it.
            values = [-32768.0 if v < -32768.0 else min(v, 32767.0) for v in values]
        return array("h", map(round, values)).tobytes()

    # -- end of loss --------------------------------------------------------------

    def _merge(self, pcm: bytes) -> bytes:
        """Overlap-add the start of the first good frame with the concealment."""
        units = -(-self._lost // self._ten_ms)  # ceil: 10 ms blocks lost
        ola = min(self._ola_step * units, self._ten_ms, len(pcm) // 2)
        start = self._made
        if start >= self._silent_after:
            synth = [0.0] * ola
        else:
            synth = self._attenuate(self._synth(ola), start)
        real = array("h", pcm[: 2 * ola])
        mixed = []
        for i in range(ola):
            w = (i + 1) / (ola + 1)
            mixed.append(w * real[i] + (1.0 - w) * synth[i])
        return self._to_pcm(mixed) + pcm[2 * ola :]
