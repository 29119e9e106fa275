"""The audio graph: conference mixing, N-1, volume/mute, media clock, resampling."""

from __future__ import annotations

import array
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hal.audio import AudioConfig
from hal.sim_audio import SimAudioDevice, tone_frames
from sipstack.loop import Loop
from sipstack.media_graph import (
    ClockMode,
    Conference,
    DevicePort,
    MediaClock,
    PortLevels,
    ResampledSink,
    ResampledSource,
    Resampler,
    mix_frames,
)

N = 160  # samples per frame: 20 ms at 8 kHz


# -- helpers ------------------------------------------------------------------


def pcm(samples: list[int]) -> bytes:
    return array.array("h", samples).tobytes()


def samples_of(frame: bytes) -> list[int]:
    out = array.array("h")
    out.frombytes(frame)
    return out.tolist()


def sine(freq: float, rate: int, count: int, amplitude: float = 8000.0) -> bytes:
    return pcm([round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(count)])


def goertzel_amplitude(data: bytes, freq: float, rate: int) -> float:
    """Amplitude of the ``freq`` component (Goertzel, normalised to a sine's peak)."""
    xs = samples_of(data)
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in xs:
        s1, s2 = x + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return 2.0 * math.sqrt(max(power, 0.0)) / len(xs)


def db(ratio: float) -> float:
    return 20.0 * math.log10(max(ratio, 1e-12))


class FrameQueue:
    """A source that plays a fixed list of frames, then None."""

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = list(frames)
        self.reads: list[float] = []

    def read(self, now: float) -> bytes | None:
        self.reads.append(now)
        return self.frames.pop(0) if self.frames else None


class Constant:
    """A source repeating one frame forever."""

    def __init__(self, frame: bytes) -> None:
        self.frame = frame

    def read(self, now: float) -> bytes | None:
        return self.frame


class Collect:
    """A sink remembering every frame and its time."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.times: list[float] = []

    def write(self, frame: bytes, now: float) -> None:
        self.frames.append(frame)
        self.times.append(now)


def clamp(v: int) -> int:
    return max(-32768, min(32767, v))


def random_frame(rng: random.Random, lo: int = -32768, hi: int = 32767) -> list[int]:
    return [rng.randint(lo, hi) for _ in range(N)]


# -- mixing -------------------------------------------------------------------


def test_two_sources_sum_into_one_sink_with_saturation() -> None:
    rng = random.Random(7)
    a = random_frame(rng)
    b = random_frame(rng)
    a[:3] = [30000, -30000, 100]  # forced clipping both ways, and one that does not
    b[:3] = [10000, -10000, -50]
    conf = Conference(8000, N)
    sink = Collect()
    pa = conf.add_port("a", source=Constant(pcm(a)))
    pb = conf.add_port("b", source=Constant(pcm(b)))
    pc = conf.add_port("speaker", sink=sink)
    conf.connect(pa, pc)
    conf.connect(pb, pc)
    conf.tick(1.0)
    got = samples_of(sink.frames[0])
    assert got == [clamp(x + y) for x, y in zip(a, b, strict=True)]
    assert got[:3] == [32767, -32768, 50]
    assert sink.times == [1.0]


def test_n_minus_one_a_port_never_hears_itself() -> None:
    rng = random.Random(3)
    voices = [random_frame(rng, -8000, 8000) for _ in range(3)]
    conf = Conference(8000, N)
    sinks = [Collect() for _ in range(3)]
    slots = [
        conf.add_port(f"call{i}", source=Constant(pcm(v)), sink=s)
        for i, (v, s) in enumerate(zip(voices, sinks, strict=True))
    ]
    conf.connect_all(slots)
    conf.tick(0.0)
    for i, sink in enumerate(sinks):
        others = [v for j, v in enumerate(voices) if j != i]
        assert samples_of(sink.frames[0]) == [a + b for a, b in zip(*others, strict=True)]
    assert conf.connections(slots[0]) == {slots[1], slots[2]}
    with pytest.raises(ValueError, match="itself"):
        conf.connect(slots[0], slots[0])


def test_single_source_at_unity_passes_the_frame_through_unchanged() -> None:
    frame = pcm(random_frame(random.Random(1)))
    conf = Conference(8000, N)
    sink = Collect()
    src = conf.add_port("call", source=Constant(frame))
    dst = conf.add_port("speaker", sink=sink)
    conf.connect(src, dst)
    conf.tick(0.0)
    assert sink.frames == [frame]


def test_routing_follows_every_change_between_ticks() -> None:
    """The tick's precomputed routing is rebuilt after connects, new ports and removals."""
    call_frame = pcm([1200] * N)
    tone_frame = pcm([-300] * N)
    conf = Conference(8000, N)
    speaker = Collect()
    call = conf.add_port("call", source=Constant(call_frame))
    spk = conf.add_port("speaker", sink=speaker)
    conf.tick(0.0)
    assert speaker.frames[-1] == bytes(2 * N)  # nothing connected yet
    conf.connect(call, spk)
    conf.tick(0.02)
    assert speaker.frames[-1] is call_frame  # one source at unity: passed through, no copy
    tone = conf.add_port("tone", source=Constant(tone_frame))
    conf.connect(tone, spk)
    conf.tick(0.04)
    assert samples_of(speaker.frames[-1]) == [900] * N  # now mixed
    conf.disconnect(call, spk)
    conf.tick(0.06)
    assert speaker.frames[-1] is tone_frame
    conf.remove_port(tone)
    conf.tick(0.08)
    assert speaker.frames[-1] == bytes(2 * N)
    conf.connect(call, spk)
    conf.set_tx_volume(spk, 0.5)
    conf.tick(0.1)
    assert samples_of(speaker.frames[-1]) == [600] * N


def test_volume_and_mute() -> None:
    a = [1000 * (i % 7) - 3000 for i in range(N)]
    b = [(-1) ** i * 500 for i in range(N)]
    conf = Conference(8000, N)
    sink = Collect()
    pa = conf.add_port("a", source=Constant(pcm(a)))
    pb = conf.add_port("b", source=Constant(pcm(b)))
    pc = conf.add_port("c", sink=sink)
    conf.connect(pa, pc)
    conf.connect(pb, pc)

    conf.set_rx_volume(pa, 0.5)
    conf.tick(0.0)
    assert samples_of(sink.frames[-1]) == [x // 2 + y for x, y in zip(a, b, strict=True)]

    conf.set_tx_volume(pc, 2.0)  # applies to everything c hears
    conf.tick(0.02)
    assert samples_of(sink.frames[-1]) == [x + 2 * y for x, y in zip(a, b, strict=True)]

    conf.set_mute(pa, rx=True)
    conf.tick(0.04)
    assert samples_of(sink.frames[-1]) == [2 * y for y in b]
    assert conf.levels(pa) == PortLevels(rx=max(abs(x) for x in a), tx=0)

    conf.set_mute(pc, tx=True)
    conf.tick(0.06)
    assert sink.frames[-1] == bytes(2 * N)

    conf.set_mute(pa, rx=False)
    conf.set_mute(pc, tx=False)
    conf.set_rx_volume(pb, 0.0)
    conf.tick(0.08)
    assert samples_of(sink.frames[-1]) == [x for x in a]  # 0.5 * 2.0
    assert conf.levels(pc).tx == max(abs(x) for x in a)
    with pytest.raises(ValueError, match="volume"):
        conf.set_rx_volume(pa, 5.0)


def test_sinks_get_silence_without_sources_and_removed_ports_vanish() -> None:
    conf = Conference(8000, N)
    sink = Collect()
    idle = FrameQueue([pcm([100] * N)])
    src = conf.add_port("player", source=idle)
    dst = conf.add_port("rtp", sink=sink)
    conf.connect(src, dst)
    conf.tick(0.0)
    conf.tick(0.02)  # the source has run out: None means silence
    assert samples_of(sink.frames[0]) == [100] * N
    assert sink.frames[1] == bytes(2 * N)
    conf.remove_port(src)
    assert conf.connections(dst) == frozenset()
    assert conf.ports() == {dst: "rtp"}
    conf.tick(0.04)
    assert len(idle.reads) == 2 and sink.frames[2] == bytes(2 * N)
    with pytest.raises(ValueError, match="no conference port"):
        conf.connect(src, dst)


def test_a_source_returning_a_wrong_frame_size_is_named() -> None:
    conf = Conference(8000, N)
    conf.add_port("broken codec", source=Constant(b"\0" * 100))
    with pytest.raises(ValueError, match="broken codec.*100 bytes, not 320"):
        conf.tick(0.0)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.integers(-32768, 32767), min_size=8, max_size=8),
            st.floats(0.0, 4.0, allow_nan=False),
        ),
        min_size=0,
        max_size=5,
    )
)
def test_mix_frames_matches_a_plain_reference(inputs: list[tuple[list[int], float]]) -> None:
    got = samples_of(mix_frames([(pcm(s), g) for s, g in inputs], 8))
    expected = []
    for i in range(8):
        q16 = sum(round(g * 65536) * s[i] for s, g in inputs)
        expected.append(clamp((q16 + 32768) >> 16))  # round half up, then saturate
    assert got == expected


# -- the media clock on the real loop with a fake clock ------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_timer_clock_ticks_at_exact_absolute_deadlines() -> None:
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        ticks: list[float] = []
        mc = MediaClock(0.02, ticks.append)
        mc.start_timer(loop)
        assert mc.mode is ClockMode.TIMER
        for k in range(1, 6):
            clock.now = 1000.0 + 0.02 * k + 0.003 * (k % 2)  # the loop is a bit late
            loop.run_once(max_wait=0)
        assert ticks == pytest.approx([1000.0 + 0.02 * k for k in range(1, 6)], abs=1e-9)
        loop.run_once(max_wait=0)  # nothing more is due
        assert len(ticks) == 5
        mc.stop()
        clock.now += 1.0
        loop.run_once(max_wait=0)
        assert len(ticks) == 5
        assert mc.mode.value == "stopped"


def test_timer_clock_catches_up_a_bounded_number_of_frames_after_a_stall() -> None:
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        ticks: list[float] = []
        mc = MediaClock(0.02, ticks.append, max_catchup=3)
        mc.start_timer(loop)
        clock.now = 1000.02
        loop.run_once(max_wait=0)
        assert len(ticks) == 1
        clock.now = 1001.005  # a 1 s stall: 49 more deadlines passed (1000.04 .. 1001.00)
        loop.run_once(max_wait=0)
        assert len(ticks) == 4  # only three caught up, back to back
        assert ticks[1:] == pytest.approx([1000.96, 1000.98, 1001.00], abs=1e-9)
        assert mc.skipped == 46
        # then it is back on the same grid, one tick per deadline
        clock.now = 1001.02
        loop.run_once(max_wait=0)
        clock.now = 1001.04
        loop.run_once(max_wait=0)
        assert ticks[4:] == pytest.approx([1001.02, 1001.04], abs=1e-9)
        assert mc.ticks == 6


def test_timer_clock_does_not_drift_over_ten_minutes() -> None:
    clock = FakeClock(5000.0)
    rng = random.Random(42)
    with Loop(clock=clock) as loop:
        ticks: list[float] = []
        mc = MediaClock(0.02, ticks.append)
        mc.start_timer(loop)
        end = 5000.0 + 600.0
        deadline = 5000.02
        while deadline <= end + 1e-9:
            # each turn wakes up 0-12 ms late, as a busy Pi Zero would
            clock.now = deadline + rng.uniform(0.0, 0.012)
            loop.run_once(max_wait=0)
            deadline = round(deadline + 0.02, 9)
        assert len(ticks) == 30000
        assert mc.skipped == 0
        assert ticks[-1] == pytest.approx(5600.0, abs=1e-6)
        worst = max(abs(t - (5000.0 + 0.02 * (i + 1))) for i, t in enumerate(ticks))
        assert worst < 1e-6


def test_clock_refuses_double_start() -> None:
    with Loop(clock=FakeClock()) as loop:
        mc = MediaClock(0.02, lambda now: None)
        mc.start_timer(loop)
        with pytest.raises(RuntimeError, match="already running"):
            mc.start_timer(loop)


def _advance(loop: Loop, clock: FakeClock, seconds: float) -> None:
    """Run the loop over ``seconds`` of fake time in 5 ms steps."""
    stop = clock.now + seconds
    while clock.now < stop - 1e-9:
        clock.now = round(clock.now + 0.005, 9)
        loop.run_once(max_wait=0)


def test_device_paced_clock_ticks_only_when_the_card_delivers_a_frame() -> None:
    clock = FakeClock(100.0)
    cfg = AudioConfig(sample_rate=8000, ptime_ms=20)
    with Loop(clock=clock) as loop:
        mic_audio = list(tone_frames(cfg, 1000.0, seconds=0.2))
        dev = SimAudioDevice(loop, cfg, capture_frames=mic_audio)
        conf = Conference(8000, N)
        port = DevicePort()
        to_call = Collect()
        ring = sine(600.0, 8000, N)
        dev_slot = conf.add_port("device", source=port, sink=port)
        call = conf.add_port("call", source=Constant(ring), sink=to_call)
        conf.connect_all([dev_slot, call])
        ticks: list[float] = []

        def on_tick(now: float) -> None:
            ticks.append(now)
            conf.tick(now)

        mc = MediaClock(0.02, on_tick)
        mc.start_device(dev.capture, dev.playback, port, loop.time)
        assert mc.mode is ClockMode.DEVICE

        _advance(loop, clock, 0.2)
        assert len(ticks) == 10 == dev.capture.frames
        assert ticks == pytest.approx(dev.capture.tick_times, abs=1e-9)
        assert to_call.frames == mic_audio  # the microphone reaches the call unchanged
        # the call's audio reaches the loudspeaker; the queue stays short
        played = dev.playback.recorded
        assert played.count(ring) >= 8
        assert port.queued <= 2 and port.dropped == 0

        dev.unplug()  # the card stops: so does the graph (no timer takes over)
        _advance(loop, clock, 0.2)
        assert len(ticks) == 10
        dev.replug()
        _advance(loop, clock, 0.1)
        assert len(ticks) == 15

        mc.stop()
        _advance(loop, clock, 0.1)
        assert len(ticks) == 15
        assert dev.capture.state.value == "stopped"


def test_timers_cover_a_lost_capture_stream_until_the_card_is_back() -> None:
    clock = FakeClock(100.0)
    cfg = AudioConfig(sample_rate=8000, ptime_ms=20)
    with Loop(clock=clock) as loop:
        dev = SimAudioDevice(loop, cfg, capture_frames=list(tone_frames(cfg, 1000.0, seconds=1.0)))
        conf = Conference(8000, N)
        port = DevicePort()
        to_call = Collect()
        conf.connect_all(
            [
                conf.add_port("device", source=port, sink=port),
                conf.add_port("call", source=Constant(sine(600.0, 8000, N)), sink=to_call),
            ]
        )
        ticks: list[float] = []

        def on_tick(now: float) -> None:
            ticks.append(now)
            conf.tick(now)

        mc = MediaClock(0.02, on_tick)
        mc.cover_capture_gap(loop)  # stopped: nothing to cover
        assert not mc.covering and mc.mode is ClockMode.STOPPED
        mc.start_device(dev.capture, dev.playback, port, loop.time)

        _advance(loop, clock, 0.2)
        assert len(ticks) == 10 and not mc.covering
        dev.unplug()
        lost_at = clock.now
        mc.cover_capture_gap(loop)
        mc.cover_capture_gap(loop)  # a second loss event (the playback side) changes nothing
        assert mc.covering
        _advance(loop, clock, 0.5)
        covered = ticks[10:]
        assert len(covered) == 25  # one tick per ptime on the timer grid
        assert covered == pytest.approx([lost_at + 0.02 * (i + 1) for i in range(25)], abs=1e-9)
        # the call hears silence from the missing microphone, every frame
        assert to_call.frames[10:] == [bytes(2 * N)] * 25

        dev.replug()
        _advance(loop, clock, 0.2)
        assert not mc.covering  # the card's first frame took over
        card = dev.capture.tick_times[10:]
        assert len(card) == 10
        # at most the one timer tick that fell due before the card's first frame,
        # then the card's ticks only: the timer is gone, no frame is doubled
        handover = len(ticks) - 35 - len(card)
        assert handover in (0, 1)
        assert ticks[35 + handover :] == pytest.approx(card, abs=0.0051)  # 5 ms clock steps
        mc.stop()
        _advance(loop, clock, 0.1)
        assert len(ticks) == 45 + handover


def test_device_port_playout_queue_is_bounded() -> None:
    port = DevicePort(max_queue=2)
    for i in range(4):
        port.write(bytes([i]) * 4, 0.0)
    assert port.dropped == 2
    assert port.pull() == bytes([2]) * 4
    assert port.pull() == bytes([3]) * 4
    assert port.pull() is None and port.underruns == 1


# -- resampling ----------------------------------------------------------------


def run_frames(resampler: Resampler, data: bytes, frame_bytes: int) -> bytes:
    return b"".join(
        resampler.process(data[i : i + frame_bytes]) for i in range(0, len(data), frame_bytes)
    )


def test_a_1khz_tone_survives_8k_to_16k_to_8k() -> None:
    tone = sine(1000.0, 8000, 8000)
    up = run_frames(Resampler(8000, 16000), tone, 320)
    assert len(up) == 2 * len(tone)
    # at 16 kHz: the tone is there, and its image at 7 kHz is gone
    assert db(goertzel_amplitude(up[3200:], 1000.0, 16000) / 8000.0) == pytest.approx(0, abs=0.1)
    assert db(goertzel_amplitude(up[3200:], 7000.0, 16000) / 8000.0) < -60
    back = run_frames(Resampler(16000, 8000), up, 640)
    assert len(back) == len(tone)
    assert db(goertzel_amplitude(back[1600:], 1000.0, 8000) / 8000.0) == pytest.approx(0, abs=0.1)
    # and it is the same waveform, delayed by the two filters (15 samples at 16 kHz each)
    delay = 15
    a, b = samples_of(tone)[1000:-100], samples_of(back)[1000 + delay : -100 + delay]
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 8000 * 0.01


def test_telephone_band_edge_passes_and_6khz_is_stopped_going_down() -> None:
    down = Resampler(16000, 8000)
    edge = run_frames(down, sine(3400.0, 16000, 16000), 640)
    assert db(goertzel_amplitude(edge[1600:], 3400.0, 8000) / 8000.0) > -1.0
    down.reset()
    high = run_frames(down, sine(6000.0, 16000, 16000), 640)
    # 6 kHz would alias to 2 kHz at 8 kHz: the anti-alias filter must remove it
    assert db(goertzel_amplitude(high[1600:], 2000.0, 8000) / 8000.0) < -60


def test_frame_by_frame_equals_one_block() -> None:
    data = pcm(random_frame(random.Random(5)) * 5)
    assert run_frames(Resampler(8000, 16000), data, 320) == Resampler(8000, 16000).process(data)
    assert run_frames(Resampler(16000, 8000), data, 320) == Resampler(16000, 8000).process(data)


def test_full_scale_overshoot_saturates_instead_of_wrapping() -> None:
    square = [32767 if (i // 10) % 2 else -32767 for i in range(640)]
    half = [x // 2 for x in square]
    for rates, chunk in (((8000, 16000), 320), ((16000, 8000), 640)):
        full_out = samples_of(run_frames(Resampler(*rates), pcm(square), chunk))
        half_out = samples_of(run_frames(Resampler(*rates), pcm(half), chunk))
        assert max(abs(x) for x in half_out) > 16384  # the filter rings above the input
        assert min(full_out) == -32768 and max(full_out) == 32767
        for x, h in zip(full_out, half_out, strict=True):
            assert abs(x - clamp(2 * h)) <= 2


def test_resampler_refuses_other_rates_and_odd_input() -> None:
    with pytest.raises(ValueError, match="8000 <-> 16000"):
        Resampler(8000, 48000)
    with pytest.raises(ValueError, match="whole samples"):
        Resampler(16000, 8000).process(b"\0" * 6)


def test_an_8k_call_on_a_16k_conference() -> None:
    conf = Conference(16000, 2 * N)
    to_call = Collect()
    speaker = Collect()
    call_audio = FrameQueue([sine(1000.0, 8000, 8000)[i : i + 320] for i in range(0, 16000, 320)])
    call = conf.add_port(
        "g711 call",
        source=ResampledSource(call_audio, 8000, 16000),
        sink=ResampledSink(to_call, 16000, 8000),
    )
    mic = conf.add_port("mic", source=Constant(sine(400.0, 16000, 2 * N)))
    spk = conf.add_port("speaker", sink=speaker)
    conf.connect(call, spk)
    conf.connect(mic, call)
    for k in range(50):
        conf.tick(k * 0.02)
    heard = b"".join(speaker.frames[5:])
    assert all(len(f) == 640 for f in speaker.frames)
    assert db(goertzel_amplitude(heard, 1000.0, 16000) / 8000.0) == pytest.approx(0, abs=0.2)
    sent = b"".join(to_call.frames[5:])
    assert all(len(f) == 320 for f in to_call.frames)
    assert db(goertzel_amplitude(sent, 400.0, 8000) / 8000.0) == pytest.approx(0, abs=0.2)
