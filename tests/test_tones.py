"""Tones: right frequencies (Goertzel), right cadences, right levels, DTMF pairs."""

from __future__ import annotations

import array
import math

import pytest

from sipstack.tones import (
    DTMF_FREQUENCIES,
    TONE_PLANS,
    ToneGenerator,
    ToneSegment,
    ToneSpec,
    dtmf_tone,
)


def samples_of(frame: bytes) -> list[int]:
    out = array.array("h")
    out.frombytes(frame)
    return out.tolist()


def goertzel(xs: list[int], freq: float, rate: int) -> float:
    """Amplitude of ``freq`` in ``xs`` (a sine of peak A reads about A)."""
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in xs:
        s1, s2 = x + coeff * s1 - s2, s1
    return 2.0 * math.sqrt(max(s1 * s1 + s2 * s2 - coeff * s1 * s2, 0.0)) / len(xs)


def frames(gen: ToneGenerator, count: int) -> list[bytes | None]:
    return [gen.read(0.02 * k) for k in range(count)]


def on_off_runs(chunks: list[bytes | None]) -> list[tuple[bool, int]]:
    """(tone on?, run length in frames) from per-frame energy."""
    runs: list[tuple[bool, int]] = []
    for chunk in chunks:
        assert chunk is not None
        on = max(abs(x) for x in samples_of(chunk)) > 100
        if runs and runs[-1][0] == on:
            runs[-1] = (on, runs[-1][1] + 1)
        else:
            runs.append((on, 1))
    return runs


def peak_for(dbfs: float) -> float:
    return 32767.0 * math.pow(10.0, dbfs / 20.0)


@pytest.mark.parametrize("rate", [8000, 16000])
def test_eu_ringback_is_425hz_one_second_on_four_off(rate: int) -> None:
    gen = ToneGenerator(rate, rate // 50)
    gen.play(TONE_PLANS["EU"].ringback)
    chunks = frames(gen, 500)  # 10 s: two cycles
    assert on_off_runs(chunks) == [(True, 50), (False, 200), (True, 50), (False, 200)]
    on = samples_of(b"".join(c for c in chunks[:50] if c is not None))
    level = goertzel(on, 425, rate)
    assert level == pytest.approx(peak_for(-13.0), rel=0.01)
    for other in (350, 400, 450, 500, 1000):
        assert goertzel(on, other, rate) < level / 30


def test_us_ringback_and_busy_are_dual_tones_with_their_cadences() -> None:
    plan = TONE_PLANS["US"]
    gen = ToneGenerator(8000, 160)
    gen.play(plan.ringback)
    chunks = frames(gen, 300)
    assert on_off_runs(chunks) == [(True, 100), (False, 200)]
    on = samples_of(b"".join(c for c in chunks[:100] if c is not None))
    assert goertzel(on, 440, 8000) == pytest.approx(peak_for(-22.0), rel=0.01)
    assert goertzel(on, 480, 8000) == pytest.approx(peak_for(-22.0), rel=0.01)
    assert goertzel(on, 425, 8000) < goertzel(on, 440, 8000) / 10

    gen.play(plan.busy)
    chunks = frames(gen, 100)
    assert on_off_runs(chunks) == [(True, 25), (False, 25)] * 2
    on = samples_of(b"".join(c for c in chunks[:25] if c is not None))
    assert goertzel(on, 480, 8000) > 10 * goertzel(on, 440, 8000)
    assert goertzel(on, 620, 8000) > 10 * goertzel(on, 440, 8000)


def test_eu_busy_congestion_and_call_waiting_cadences() -> None:
    plan = TONE_PLANS["EU"]
    gen = ToneGenerator(8000, 160)
    gen.play(plan.busy)
    assert on_off_runs(frames(gen, 100)) == [(True, 25), (False, 25)] * 2
    gen.play(plan.congestion)
    # 250 ms = 12.5 frames: the half-on frame counts as on
    assert on_off_runs(frames(gen, 50)) == [(True, 13), (False, 12)] * 2
    gen.play(plan.call_waiting)
    runs = on_off_runs(frames(gen, 250))
    assert runs == [(True, 10), (False, 10), (True, 10), (False, 220)]


def test_cadence_boundaries_are_sample_exact_inside_frames() -> None:
    # 250 ms at 8 kHz is 2000 samples: 12.5 frames of 160, so a boundary falls mid-frame
    gen = ToneGenerator(8000, 160)
    gen.play(TONE_PLANS["EU"].congestion)
    xs = samples_of(b"".join(c for c in frames(gen, 50) if c is not None))
    for start in (0, 4000):
        assert max(abs(x) for x in xs[start : start + 2000]) > 5000
        assert max(abs(x) for x in xs[start + 2000 : start + 4000]) == 0


def test_the_waveform_is_continuous_across_frames() -> None:
    gen = ToneGenerator(8000, 160)
    gen.play(ToneSpec("test", (ToneSegment((425,), 1000, -6.0),)))
    xs = samples_of(b"".join(c for c in frames(gen, 50) if c is not None))
    peak = peak_for(-6.0)
    expected = [round(peak * math.sin(2 * math.pi * 425 * i / 8000)) for i in range(8000)]
    assert max(abs(a - b) for a, b in zip(xs, expected, strict=True)) <= 1


def test_ring_tone_trills_between_two_frequencies() -> None:
    gen = ToneGenerator(8000, 160)
    gen.play(TONE_PLANS["EU"].ring)
    chunks = frames(gen, 150)
    assert on_off_runs(chunks) == [(True, 50), (False, 100)]
    xs = samples_of(b"".join(c for c in chunks if c is not None))
    first, second = xs[0:400], xs[400:800]  # two 50 ms halves of the trill
    assert goertzel(first, 1000, 8000) > 20 * goertzel(first, 1250, 8000)
    assert goertzel(second, 1250, 8000) > 20 * goertzel(second, 1000, 8000)


@pytest.mark.parametrize("digit", sorted(DTMF_FREQUENCIES))
def test_dtmf_keys_make_their_row_and_column_pair(digit: str) -> None:
    gen = ToneGenerator(8000, 160)
    gen.play(dtmf_tone(digit, duration_ms=100))
    chunks = frames(gen, 7)
    assert chunks[5] is None and chunks[6] is None and not gen.active  # played once, 100 ms
    xs = samples_of(b"".join(c for c in chunks if c is not None))
    candidates = (697, 770, 852, 941, 1209, 1336, 1477, 1633)
    levels = sorted(((goertzel(xs, f, 8000), f) for f in candidates), reverse=True)
    (a, fa), (b, fb), (c, _) = levels[:3]
    assert {fa, fb} == set(DTMF_FREQUENCIES[digit])
    assert c < min(a, b) / 10  # twist-free and no third tone


def test_a_tone_played_once_ends_mid_frame_with_silence() -> None:
    gen = ToneGenerator(8000, 160)
    gen.play(dtmf_tone("5", duration_ms=30))  # 240 samples: one and a half frames
    first, second, third = frames(gen, 3)
    assert first is not None and second is not None and third is None
    tail = samples_of(second)
    assert max(abs(x) for x in tail[:80]) > 1000 and tail[80:] == [0] * 80


def test_idle_generator_reads_none_and_stop_silences() -> None:
    gen = ToneGenerator(8000, 160)
    assert gen.read(0.0) is None and not gen.active
    gen.play(TONE_PLANS["EU"].busy)
    assert gen.playing is TONE_PLANS["EU"].busy
    assert gen.read(0.0) is not None
    gen.stop()
    assert gen.read(0.02) is None


def test_bad_tones_are_refused() -> None:
    with pytest.raises(ValueError, match="not a DTMF key"):
        dtmf_tone("E")
    with pytest.raises(ValueError, match="4000 Hz"):
        ToneGenerator(8000, 160).play(ToneSpec("x", (ToneSegment((5000,), 100),)))
    with pytest.raises(ValueError, match="duration"):
        ToneSegment((425,), 0)
    with pytest.raises(ValueError, match="full scale"):
        ToneSegment((425,), 100, level_dbfs=3.0)
    with pytest.raises(ValueError, match="no segments"):
        ToneSpec("empty", ())
