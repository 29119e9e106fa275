"""WAV player and recorder: round trips, resampling, bad files, a recorder that never blocks."""

from __future__ import annotations

import array
import io
import math
import os
import shutil
import subprocess
import threading
import wave
from pathlib import Path
from typing import BinaryIO

import pytest

from sipstack.wav_io import (
    RecorderFailed,
    RecorderState,
    WavClip,
    WavFormatError,
    WavPlayer,
    WavRecorder,
    load_wav,
)

SOX = shutil.which("sox")
needs_sox = pytest.mark.skipif(SOX is None, reason="sox is not installed")


def sine(freq: float, rate: int, count: int, amplitude: float = 8000.0) -> bytes:
    return array.array(
        "h", (round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(count))
    ).tobytes()


def goertzel(data: bytes, freq: float, rate: int) -> float:
    xs = array.array("h")
    xs.frombytes(data)
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in xs:
        s1, s2 = x + coeff * s1 - s2, s1
    return 2.0 * math.sqrt(max(s1 * s1 + s2 * s2 - coeff * s1 * s2, 0.0)) / len(xs)


def write_wav(path: Path, pcm: bytes, rate: int, channels: int = 1, width: int = 2) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(pcm)


# -- player --------------------------------------------------------------------


def test_recorder_then_player_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rec.wav"
    audio = sine(440.0, 8000, 8000)
    frames = [audio[i : i + 320] for i in range(0, len(audio), 320)]
    rec = WavRecorder(path, 8000, chunk_bytes=4096)
    for k, frame in enumerate(frames):
        rec.write(frame, 0.02 * k)
    rec.close()
    assert rec.wait_closed(timeout=10)
    assert rec.state is RecorderState.CLOSED and rec.error is None
    assert rec.bytes_written == len(audio) and rec.dropped_frames == 0
    with wave.open(str(path), "rb") as wav:  # the standard reader agrees on the header
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == 8000
    clip = load_wav(path, 8000)
    assert clip.pcm == audio and clip.seconds == 1.0
    player = WavPlayer(clip, 160)
    assert [player.read(0.0) for _ in range(50)] == frames
    assert player.read(0.0) is None and player.finished
    player.rewind()
    assert player.read(0.0) == frames[0]


def test_player_once_pads_the_last_frame_and_loop_wraps_seamlessly() -> None:
    pcm = bytes(range(200)) * 2  # 200 samples: one frame and a quarter at 160
    clip = WavClip(pcm, 8000, 8000)
    once = WavPlayer(clip, 160)
    first, second, third = once.read(0.0), once.read(0.02), once.read(0.04)
    assert first == pcm[:320]
    assert second == pcm[320:] + bytes(240)
    assert third is None
    looped = WavPlayer(clip, 160, loop=True)
    played = b"".join(f for f in (looped.read(0.0) for _ in range(10)) if f is not None)
    assert played == (pcm * 8)[:3200] and len(played) == 3200
    assert not looped.finished


def test_a_loop_shorter_than_a_frame_still_fills_frames() -> None:
    clip = WavClip(b"\x01\x00\x02\x00\x03\x00", 8000, 8000)  # three samples
    looped = WavPlayer(clip, 4, loop=True)
    assert looped.read(0.0) == b"\x01\x00\x02\x00\x03\x00\x01\x00"
    assert looped.read(0.0) == b"\x02\x00\x03\x00\x01\x00\x02\x00"


@pytest.mark.parametrize(("file_rate", "graph_rate"), [(8000, 16000), (16000, 8000)])
def test_a_clip_at_the_other_rate_is_converted_on_load(
    tmp_path: Path, file_rate: int, graph_rate: int
) -> None:
    path = tmp_path / "tone.wav"
    write_wav(path, sine(1000.0, file_rate, file_rate), file_rate)
    clip = load_wav(path, graph_rate)
    assert clip.sample_rate == graph_rate and clip.file_rate == file_rate
    assert len(clip.pcm) == 2 * graph_rate
    body = clip.pcm[400:-400]
    assert goertzel(body, 1000.0, graph_rate) == pytest.approx(8000.0, rel=0.02)


@needs_sox
def test_a_wav_made_by_sox_plays_and_our_recording_reads_in_sox(tmp_path: Path) -> None:
    assert SOX is not None
    made = tmp_path / "sox.wav"
    subprocess.run(
        [SOX, "-n", "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(made)]
        + ["synth", "1", "sine", "1000", "vol", "0.25"],
        check=True,
        timeout=30,
    )
    clip = load_wav(made, 16000)
    assert goertzel(clip.pcm[3200:-3200], 1000.0, 16000) == pytest.approx(8192, rel=0.03)

    path = tmp_path / "ours.wav"
    rec = WavRecorder(path, 16000, chunk_bytes=8192)
    for i in range(0, len(clip.pcm), 640):
        rec.write(clip.pcm[i : i + 640], 0.0)
    rec.close()
    assert rec.wait_closed(timeout=10)
    info = subprocess.run(
        [SOX, "--i", str(path)], check=True, capture_output=True, text=True, timeout=30
    ).stdout
    assert "Sample Rate    : 16000" in info and "Channels       : 1" in info
    assert "16000 samples" in info
    stat = subprocess.run(
        [SOX, str(path), "-n", "stat", "-freq"], capture_output=True, text=True, timeout=30
    )
    assert stat.returncode == 0, stat.stderr


# -- bad files -----------------------------------------------------------------


def test_bad_wav_formats_are_refused_with_the_file_named(tmp_path: Path) -> None:
    stereo = tmp_path / "stereo.wav"
    write_wav(stereo, bytes(800), 8000, channels=2)
    eight_bit = tmp_path / "8bit.wav"
    write_wav(eight_bit, bytes(400), 8000, width=1)
    cd = tmp_path / "cd.wav"
    write_wav(cd, bytes(800), 44100)
    for path, what in ((stereo, "2 channel"), (eight_bit, "8 bit"), (cd, "44100 Hz")):
        with pytest.raises(WavFormatError, match=f"{path.name}.*{what}.*sox"):
            load_wav(path, 8000)

    text = tmp_path / "notes.wav"
    text.write_text("this is not audio\n")
    with pytest.raises(WavFormatError, match="notes.wav: not a PCM WAV"):
        load_wav(text, 8000)

    float_wav = tmp_path / "float.wav"  # WAVE_FORMAT_IEEE_FLOAT (3), as DAWs export
    fmt = (3).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    fmt += (32000).to_bytes(4, "little") + (4).to_bytes(2, "little") + (32).to_bytes(2, "little")
    body = (
        b"WAVE" + b"fmt " + (16).to_bytes(4, "little") + fmt + b"data" + (8).to_bytes(4, "little")
    )
    float_wav.write_bytes(b"RIFF" + (len(body) + 8).to_bytes(4, "little") + body + bytes(8))
    with pytest.raises(WavFormatError, match="float.wav: not a PCM WAV"):
        load_wav(float_wav, 8000)

    truncated = tmp_path / "cut.wav"
    write_wav(truncated, sine(440, 8000, 800), 8000)
    truncated.write_bytes(truncated.read_bytes()[:30])
    with pytest.raises(WavFormatError, match="cut.wav"):
        load_wav(truncated, 8000)

    empty = tmp_path / "empty.wav"
    write_wav(empty, b"", 8000)
    with pytest.raises(WavFormatError, match="no audio"):
        load_wav(empty, 8000)

    long = tmp_path / "long.wav"
    write_wav(long, bytes(2 * 8000 * 3), 8000)
    with pytest.raises(WavFormatError, match="3.0 s .* 2 s limit"):
        load_wav(long, 8000, max_seconds=2)

    with pytest.raises(FileNotFoundError):
        load_wav(tmp_path / "missing.wav", 8000)


# -- recorder: never blocks, bounded, reports a full disk ------------------------


class StalledCard(io.RawIOBase):
    """A file whose writes wait until the test releases them (an SD card flushing)."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate
        self.writes: list[int] = []
        self.data = bytearray()
        self.pos = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        data = bytes(b)  # type: ignore[call-overload]
        if not self.gate.wait(timeout=30):
            raise OSError("test gate never opened")
        self.writes.append(len(data))
        self.data[self.pos : self.pos + len(data)] = data
        self.pos += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset
        return offset


def test_write_never_waits_for_a_stalled_card_and_the_backlog_is_bounded() -> None:
    gate = threading.Event()
    card = StalledCard(gate)

    def opener(path: str) -> BinaryIO:
        return card  # type: ignore[return-value]

    rec = WavRecorder(
        "stalled.wav", 8000, chunk_bytes=4096, max_buffered_bytes=16384, opener=opener
    )
    frames = [bytes([k % 251]) * 320 for k in range(200)]
    for k, frame in enumerate(frames):
        rec.write(frame, 0.02 * k)  # the writer thread is stuck on the header meanwhile
    assert card.writes == []  # nothing reached the card, yet every write returned
    accepted = 16384 // 320  # 51 frames fit the bound; the rest are dropped
    assert rec.dropped_frames == 200 - accepted
    assert rec.buffered_bytes == accepted * 320
    assert rec.state is RecorderState.RECORDING

    gate.set()
    rec.close()
    assert rec.state in (RecorderState.CLOSING, RecorderState.CLOSED)
    assert rec.wait_closed(timeout=10) and rec.state is RecorderState.CLOSED
    # header, then exact 4 kB chunks, then the rest, then the header patched at close
    assert card.writes[0] == 44 and card.writes[-1] == 44
    chunks = card.writes[1:-1]
    assert chunks == [4096] * 3 + [accepted * 320 - 3 * 4096]
    assert bytes(card.data[44:]) == b"".join(frames[:accepted])
    with wave.open(io.BytesIO(bytes(card.data)), "rb") as wav:
        assert wav.getnframes() == accepted * 160


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs Linux /dev/full")
def test_a_full_disk_stops_the_recording_and_is_reported_once() -> None:
    failures: list[RecorderFailed] = []
    rec = WavRecorder("/dev/full", 8000, chunk_bytes=4096, on_error=failures.append)
    for _ in range(13):  # 4160 bytes: one chunk goes to the (kernel's) full disk
        rec.write(bytes(320), 0.0)
    assert rec.wait_closed(timeout=10)  # the writer gives up and ends
    assert rec.state is RecorderState.FAILED
    assert rec.error is not None and "disk is full" in rec.error
    assert failures == [RecorderFailed("/dev/full", rec.error)]
    rec.write(bytes(320), 0.0)  # later frames are ignored, not re-reported
    assert len(failures) == 1


def test_an_impossible_path_fails_cleanly(tmp_path: Path) -> None:
    failures: list[RecorderFailed] = []
    rec = WavRecorder(tmp_path / "no" / "such" / "dir.wav", 16000, on_error=failures.append)
    assert rec.wait_closed(timeout=10)
    assert rec.state is RecorderState.FAILED
    assert failures and "cannot create" in failures[0].reason


def test_recorder_misuse_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="8000 or 16000"):
        WavRecorder(tmp_path / "x.wav", 44100)
    with pytest.raises(ValueError, match="two chunks"):
        WavRecorder(tmp_path / "x.wav", 8000, chunk_bytes=4096, max_buffered_bytes=4096)
    rec = WavRecorder(tmp_path / "x.wav", 8000)
    rec.close()
    with pytest.raises(RuntimeError, match="closed"):
        rec.write(bytes(320), 0.0)
    assert rec.wait_closed(timeout=10)
    with wave.open(str(tmp_path / "x.wav"), "rb") as wav:
        assert wav.getnframes() == 0
