"""Simulated audio device, configuration and interfaces (no sound card, no numpy)."""

from __future__ import annotations

import array
import math
from pathlib import Path

import pytest

from hal.audio import (
    AudioConfig,
    AudioConfigError,
    AudioDeviceLost,
    AudioDeviceRestored,
    AudioEvent,
    StreamDirection,
    StreamState,
    silence,
)
from hal.sim_audio import (
    SimAudioDevice,
    pcm_frames,
    read_wav,
    tone_frames,
    wav_frames,
    write_wav,
)
from sipstack.loop import Loop


class FakeClock:
    """A clock the test moves by hand (the loop asks it for the time)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _advance(loop: Loop, clock: FakeClock, seconds: float, step: float = 0.005) -> None:
    start = clock.now
    steps = max(1, round(seconds / step))
    for i in range(1, steps + 1):
        clock.now = start + seconds * i / steps
        loop.run_once(max_wait=0)


def test_config_derives_period_and_refuses_nonsense() -> None:
    assert AudioConfig().period_frames == 160
    assert AudioConfig(sample_rate=16000).period_bytes == 640
    assert len(silence(AudioConfig(sample_rate=16000, ptime_ms=10))) == 320
    assert AudioConfig(playback_device="plughw:CARD=Device").mixer_device_name == (
        "plughw:CARD=Device"
    )
    with pytest.raises(AudioConfigError, match="44100"):
        AudioConfig(sample_rate=44100)
    with pytest.raises(AudioConfigError, match="ptime"):
        AudioConfig(ptime_ms=25)
    with pytest.raises(AudioConfigError, match="prefill"):
        AudioConfig(buffer_periods=2, prefill_periods=2)


def test_paced_streams_tick_at_exact_deadlines_on_the_loop_clock() -> None:
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        cfg = AudioConfig()
        dev = SimAudioDevice(loop, cfg, capture_frames=tone_frames(cfg, 440, seconds=0.1))
        got: list[bytes] = []
        dev.capture.start(got.append)
        dev.playback.start(lambda: None)
        _advance(loop, clock, 0.2)
        # t0 = 100.0: one frame every 20 ms, at absolute deadlines (no drift)
        assert dev.capture.tick_times == pytest.approx([100.0 + 0.02 * k for k in range(1, 11)])
        assert len(got) == 10
        assert got[:5] == list(tone_frames(cfg, 440, seconds=0.1))
        assert got[5:] == [bytes(320)] * 5  # then a quiet room
        assert dev.playback.silent_frames == 10
        assert dev.playback.recorded == bytes(320 * 10)
        # A late loop turn does not shift later deadlines.
        clock.now += 0.05
        loop.run_once(max_wait=0)
        _advance(loop, clock, 0.1)
        assert dev.capture.tick_times[-1] == pytest.approx(100.0 + 0.02 * 17)
        dev.close()
        n = len(got)
        _advance(loop, clock, 0.1)
        assert len(got) == n


def test_unpaced_moves_audio_fast_and_records_exactly(tmp_path: Path) -> None:
    with Loop() as loop:
        cfg = AudioConfig(sample_rate=16000)
        tone = list(tone_frames(cfg, 1000, amplitude=0.5, seconds=2.0))
        assert len(tone) == 100
        out = tmp_path / "played.wav"
        dev = SimAudioDevice(loop, cfg, paced=False, record_path=out)
        captured: list[bytes] = []
        queue = list(tone)
        dev.capture.feed(b"\x01\x00" * 320 * 3)  # raw bytes are framed too
        dev.capture.start(captured.append)
        dev.playback.start(lambda: queue.pop(0) if queue else None)
        assert loop.run_until(lambda: len(captured) >= 200, timeout=2.0)
        dev.close()
        assert captured[:3] == [b"\x01\x00" * 320] * 3
        assert read_wav(out, cfg)[: 640 * 100] == b"".join(tone)


def test_tone_is_the_requested_frequency_and_level() -> None:
    cfg = AudioConfig()
    pcm = b"".join(tone_frames(cfg, 1000, amplitude=0.5, seconds=1.0))
    samples = array.array("h")
    samples.frombytes(pcm)
    assert len(samples) == 8000
    assert max(samples) == pytest.approx(0.5 * 32767, rel=0.01)
    rms = math.sqrt(sum(s * s for s in samples) / len(samples))
    assert rms == pytest.approx(0.5 * 32767 / math.sqrt(2), rel=0.01)
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if a < 0 <= b)
    assert crossings in (999, 1000)
    with pytest.raises(AudioConfigError):
        next(tone_frames(cfg, 5000))


def test_wav_roundtrip_and_wrong_format_is_refused(tmp_path: Path) -> None:
    cfg = AudioConfig()
    pcm = bytes(range(256)) * 5  # 1280 bytes = 4 frames
    path = tmp_path / "a.wav"
    write_wav(path, pcm, 8000)
    assert b"".join(wav_frames(path, cfg)) == pcm
    assert len(list(pcm_frames(pcm[:-100], cfg))) == 4  # last one padded
    with pytest.raises(AudioConfigError, match="16000"):
        read_wav(path, AudioConfig(sample_rate=16000))


def test_unplug_and_replug_emit_events() -> None:
    clock = FakeClock()
    events: list[AudioEvent] = []
    with Loop(clock=clock) as loop:
        dev = SimAudioDevice(loop, AudioConfig(), on_event=events.append)
        got: list[bytes] = []
        dev.capture.start(got.append)
        dev.playback.start(lambda: None)
        _advance(loop, clock, 0.1)
        dev.unplug()
        assert dev.capture.state is StreamState.LOST
        n = len(got)
        _advance(loop, clock, 0.1)
        assert len(got) == n
        dev.replug()
        _advance(loop, clock, 0.1)
        assert len(got) == n + 5
        assert dev.playback.state is StreamState.RUNNING
    assert [type(e) for e in events] == [
        AudioDeviceLost,
        AudioDeviceLost,
        AudioDeviceRestored,
        AudioDeviceRestored,
    ]
    assert {e.direction for e in events} == {StreamDirection.CAPTURE, StreamDirection.PLAYBACK}


def test_volume_is_recorded_and_bad_frames_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    with Loop(clock=clock) as loop:
        dev = SimAudioDevice(loop, AudioConfig())
        dev.set_volume(30)
        assert dev.get_volume() == 30
        assert dev.volume_history == [(100.0, 30)]
        with pytest.raises(ValueError):
            dev.set_volume(-1)
        dev.playback.start(lambda: b"\x00" * 10)
        with caplog.at_level("ERROR", logger="sipstack.loop"):
            _advance(loop, clock, 0.02)
        # the loop logs the callback's error: whose fault, and what a frame is
        assert "returned 10 bytes, not 320" in caplog.text
        assert dev.playback.recorded == b""
        with pytest.raises(RuntimeError):
            dev.playback.start(lambda: None)
