"""The ALSA backend against the real alsa-lib, through user-space plugins.

No sound card is needed. The module writes an ``.asoundrc`` into a temp HOME:

* ``null`` and ``file`` (with ``infile``) PCMs: unpaced (a read returns at
  once), used to check that capture delivers exactly the bytes of a raw file
  and that playback writes exactly the frames pulled from the source;
* ALSA's ``pulse`` plugin in front of a PulseAudio null sink started here:
  paced in real time, used for pacing, underrun recovery, device loss and
  reopen (the server is killed and restarted), and the mixer (``ctl`` pulse).

Runs against sipstack.loop.Loop, the loop the firmware uses.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

alsaaudio = pytest.importorskip("alsaaudio")

from hal.alsa import AlsaAudioDevice, AlsaCapture, AlsaMixer, AlsaPlayback  # noqa: E402
from hal.audio import (  # noqa: E402
    AudioConfig,
    AudioDeviceLost,
    AudioDeviceRestored,
    AudioEvent,
    AudioMixerError,
    AudioXrun,
    StreamDirection,
    StreamState,
)
from sipstack.loop import Loop  # noqa: E402
from tests.hal.pulse import PulseServer  # noqa: E402

PERIOD = AudioConfig().period_bytes  # 320 bytes at 8 kHz / 20 ms


class Env:
    """Paths of the ALSA sandbox."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.infile = root / "in.raw"
        self.outfile = root / "out.raw"
        self.pa1 = root / "pa1"
        self.pa2 = root / "pa2"


def _asoundrc(env: Env) -> str:
    def pulse(name: str, sock: Path, device: str) -> str:
        return f'pcm.{name} {{ type pulse; server "unix:{sock}"; device "{device}" }}\n'

    return (
        "pcm.nulldev { type null }\n"
        f'pcm.capfile {{ type file; slave.pcm "null"; file "/dev/null"; '
        f'infile "{env.infile}"; format "raw" }}\n'
        f'pcm.playfile {{ type file; slave.pcm "null"; file "{env.outfile}"; format "raw" }}\n'
        + pulse("pa", env.pa1 / "sock", "nul")
        + pulse("pamon", env.pa1 / "sock", "nul.monitor")
        + f'ctl.pa {{ type pulse; server "unix:{env.pa1 / "sock"}" }}\n'
        + pulse("pa2", env.pa2 / "sock", "nul")
        + pulse("pa2mon", env.pa2 / "sock", "nul.monitor")
        + pulse("nowhere", env.root / "no-such-server.sock", "nul")
    )


@pytest.fixture(scope="module")
def alsa_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """A HOME with our .asoundrc for this module (alsa-lib reads ~/.asoundrc)."""
    env = Env(tmp_path_factory.mktemp("alsa"))
    env.pa1.mkdir()
    env.pa2.mkdir()
    (env.root / ".asoundrc").write_text(_asoundrc(env))
    old_home = os.environ.get("HOME")
    os.environ["HOME"] = str(env.root)
    try:
        yield env
    finally:
        if old_home is None:
            del os.environ["HOME"]
        else:
            os.environ["HOME"] = old_home


@pytest.fixture(scope="module")
def pulse(alsa_env: Env) -> Iterator[PulseServer]:
    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed (apt install pulseaudio)")
    server = PulseServer(alsa_env.pa1)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def loop() -> Iterator[Loop]:
    with Loop() as lp:
        yield lp


def _frame(value: int) -> bytes:
    return value.to_bytes(2, "little", signed=True) * (PERIOD // 2)


# -- unpaced plugins: exact data path -----------------------------------------


def test_capture_from_file_plugin_delivers_the_file_exactly(alsa_env: Env, loop: Loop) -> None:
    source = b"".join(_frame(i * 7 - 100) for i in range(60))
    alsa_env.infile.write_bytes(source)
    cfg = AudioConfig(capture_device="capfile")
    got: list[bytes] = []
    cap = AlsaCapture(loop, cfg)
    cap.start(got.append)
    assert cap.state.value == "running"
    assert cap.pcm_info["rate"] == 8000
    assert cap.pcm_info["period_size"] == 160
    assert loop.run_until(lambda: len(got) >= 60, timeout=5)
    cap.stop()
    assert cap.state is StreamState.STOPPED
    assert all(len(f) == PERIOD for f in got)
    assert b"".join(got[:60]) == source


def test_playback_to_file_plugin_writes_prefill_then_every_frame(alsa_env: Env, loop: Loop) -> None:
    cfg = AudioConfig(playback_device="playfile", prefill_periods=2)
    queue = [_frame(1000 + i) for i in range(40)]
    pulled: list[int] = []

    def source() -> bytes | None:
        pulled.append(len(queue))
        return queue.pop(0) if queue else None

    play = AlsaPlayback(loop, cfg)
    play.start(source)
    assert loop.run_until(lambda: len(pulled) >= 60, timeout=5)
    play.stop()
    data = alsa_env.outfile.read_bytes()
    frames = [data[i : i + PERIOD] for i in range(0, len(data), PERIOD)]
    assert frames[:2] == [bytes(PERIOD)] * 2  # prefill silence
    assert frames[2:42] == [_frame(1000 + i) for i in range(40)]
    assert all(f == bytes(PERIOD) for f in frames[42:])  # None -> silence
    assert len(frames) >= 50


def test_null_device_full_duplex_and_work_per_wakeup_is_bounded(loop: Loop, alsa_env: Env) -> None:
    cfg = AudioConfig(capture_device="nulldev", playback_device="nulldev", sample_rate=16000)
    dev = AlsaAudioDevice(loop, cfg)
    captured: list[bytes] = []
    pulls = [0]

    def source() -> bytes | None:
        pulls[0] += 1
        return None

    dev.capture.start(captured.append)
    dev.playback.start(source)
    # An unpaced device is always ready; a single loop turn must still return
    # (other fds and timers get their turn), moving at most buffer+1 periods.
    before = len(captured), pulls[0]
    loop.run_once(max_wait=0)
    assert 0 < len(captured) - before[0] <= cfg.buffer_periods + 1
    assert 0 < pulls[0] - before[1] <= cfg.buffer_periods + 1
    assert loop.run_until(lambda: len(captured) > 100 and pulls[0] > 100, timeout=5)
    assert all(len(f) == 640 for f in captured)
    dev.close()
    n = len(captured)
    loop.run_once(max_wait=0.05)
    assert len(captured) == n  # nothing after close


def test_unknown_device_goes_lost_and_retries_without_raising(
    loop: Loop, alsa_env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[AudioEvent] = []
    cfg = AudioConfig(playback_device="no_such_pcm_name", reopen_interval=0.05)
    play = AlsaPlayback(loop, cfg, events.append)
    with caplog.at_level(logging.WARNING, logger="hal.alsa"):
        play.start(lambda: None)
        loop.run_until(lambda: False, timeout=0.3)  # several retries
    assert play.state.value == "lost"
    assert len(events) == 1  # retries are silent
    lost = events[0]
    assert isinstance(lost, AudioDeviceLost)
    assert (lost.direction, lost.device) == (StreamDirection.PLAYBACK, "no_such_pcm_name")
    lines = [r.getMessage() for r in caplog.records if "no_such_pcm_name" in r.getMessage()]
    assert len(lines) == 1, lines  # one clear line, not one per retry
    assert "cannot be opened" in lines[0] and "retrying every 0.05 s" in lines[0]
    play.stop()
    assert play.state is StreamState.STOPPED


def test_mixer_missing_is_a_clear_error_not_a_crash(alsa_env: Env) -> None:
    with pytest.raises(AudioMixerError, match="nulldev"):
        AlsaMixer("nulldev").get_volume()
    with pytest.raises(ValueError):
        AlsaMixer("nulldev").set_volume(101)


# -- paced: PulseAudio null sink ----------------------------------------------


def test_pulse_mixer_sets_the_sink_volume(pulse: PulseServer) -> None:
    mixer = AlsaMixer("pa")
    assert mixer.control == "Master"
    mixer.set_volume(37)
    assert mixer.get_volume() == 37
    out = subprocess.run(
        ["pactl", f"--server=unix:{pulse.sock}", "get-sink-volume", "nul"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "37%" in out
    mixer.set_volume(100)
    mixer.close()
    with pytest.raises(AudioMixerError, match="Nope"):
        AlsaMixer("pa", "Nope").set_volume(50)


def test_pulse_is_paced_in_real_time(pulse: PulseServer, loop: Loop) -> None:
    cfg = AudioConfig(capture_device="pamon", playback_device="pa")
    dev = AlsaAudioDevice(loop, cfg)
    stamps: list[float] = []
    pulls: list[float] = []

    def source() -> bytes | None:
        pulls.append(time.monotonic())
        return _frame(3000)

    dev.capture.start(lambda f: stamps.append(time.monotonic()))
    dev.playback.start(source)
    # PulseAudio's null sink wakes up from idle with a long first block; wait
    # until playback really flows, then count over two seconds.
    assert loop.run_until(lambda: len(pulls) > 30, timeout=8)
    t0 = time.monotonic()
    n_cap, n_play = len(stamps), len(pulls)
    loop.run_until(lambda: False, timeout=2.0)
    elapsed = time.monotonic() - t0
    cap_rate = (len(stamps) - n_cap) / elapsed
    play_rate = (len(pulls) - n_play) / elapsed
    dev.close()
    print(f"\npulse pacing: capture {cap_rate:.1f} frames/s, playback {play_rate:.1f} frames/s")
    # 50 frames/s nominal; an unpaced device would be in the thousands.
    assert 35 <= play_rate <= 65
    assert 35 <= cap_rate <= 65


def test_pulse_underrun_is_recovered_and_reported_once(
    pulse: PulseServer, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[AudioEvent] = []
    cfg = AudioConfig(playback_device="pa")
    play = AlsaPlayback(loop, cfg, events.append)
    pulls = [0]

    def source() -> bytes | None:
        pulls[0] += 1
        return _frame(2000)

    with caplog.at_level(logging.WARNING, logger="hal.alsa"):
        play.start(source)
        assert loop.run_until(lambda: pulls[0] > 30, timeout=8)
        for episode in range(2):
            # A callback that blocks the loop far longer than the 80 ms buffer.
            loop.call_soon(lambda: time.sleep(0.4))
            seen = episode

            def xrun_seen() -> bool:
                return len(events) > seen  # noqa: B023

            assert loop.run_until(xrun_seen, timeout=2)
            before = pulls[0]
            # Audio flows again (the null sink, idle after the underrun, takes
            # up to ~2 s to pull from the re-prepared stream).
            assert loop.run_until(lambda: pulls[0] > before + 20, timeout=8)  # noqa: B023
            assert play.state is StreamState.RUNNING
    xruns = [e for e in events if isinstance(e, AudioXrun)]
    assert xruns[0] == AudioXrun(StreamDirection.PLAYBACK, "pa", 1)
    warnings = [r for r in caplog.records if "underrun" in r.getMessage()]
    assert len(warnings) == 1  # logged once, later ones counted
    assert play.xruns == len(xruns) >= 2
    play.stop()


def test_sound_server_killed_then_back_reopens(
    alsa_env: Env, loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    if shutil.which("pulseaudio") is None:
        pytest.skip("pulseaudio is not installed")
    server = PulseServer(alsa_env.pa2)
    server.start()
    events: list[AudioEvent] = []
    cfg = AudioConfig(capture_device="pa2mon", playback_device="pa2", reopen_interval=0.2)
    dev = AlsaAudioDevice(loop, cfg, on_event=events.append)
    captured = [0]
    pulls = [0]

    def source() -> bytes | None:
        pulls[0] += 1
        return None

    try:
        with caplog.at_level(logging.WARNING, logger="hal.alsa"):
            dev.capture.start(lambda f: captured.__setitem__(0, captured[0] + 1))
            dev.playback.start(source)
            assert loop.run_until(lambda: pulls[0] > 10 and captured[0] > 10, timeout=8)
            server.kill()

            def both_lost() -> bool:
                return dev.capture.state is dev.playback.state is StreamState.LOST

            assert loop.run_until(both_lost, timeout=5), (dev.capture.state, dev.playback.state)
            loop.run_until(lambda: False, timeout=0.7)  # a few failed reopen attempts
            assert both_lost()
            server.start()

            def both_running() -> bool:
                return dev.capture.state is dev.playback.state is StreamState.RUNNING

            assert loop.run_until(both_running, timeout=10)
            c0, p0 = captured[0], pulls[0]
            assert loop.run_until(lambda: pulls[0] > p0 + 10 and captured[0] > c0 + 10, timeout=8)
    finally:
        dev.close()
        server.stop()
    lost = [e for e in events if isinstance(e, AudioDeviceLost)]
    back = [e for e in events if isinstance(e, AudioDeviceRestored)]
    assert {e.direction for e in lost} == {StreamDirection.CAPTURE, StreamDirection.PLAYBACK}
    assert {e.direction for e in back} == {StreamDirection.CAPTURE, StreamDirection.PLAYBACK}
    assert len(lost) == 2 and len(back) == 2  # retries are silent
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost" in m for m in messages) == 2
    assert sum("is back" in m for m in messages) == 2
    assert dev.playback.opens == 2 and dev.capture.opens == 2
