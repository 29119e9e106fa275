"""Simulated audio device: WAV files and tones in, recordings out.

Used on a desk without a sound card and in tests. It implements
:class:`hal.audio.AudioDevice` with the same push/pull contract as the ALSA
backend:

* **paced** (default): one frame every ptime on the loop's clock, at absolute
  deadlines (``start + k * ptime``), so a late loop iteration does not make the
  stream drift, exactly like a sound card's clock;
* **unpaced** (``paced=False``): frames as fast as the loop turns (one per
  iteration, through ``call_soon``, so timers and sockets still get served);
  tests use this to push seconds of audio in milliseconds.

Capture plays a queue of frames (from :func:`wav_frames`, :func:`tone_frames`,
raw bytes, or fed later with :meth:`SimCapture.feed`) and then silence, like a
microphone in a quiet room. Playback records every frame it pulls
(:attr:`SimPlayback.recorded`, :meth:`SimPlayback.save_wav`). ``unplug()`` /
``replug()`` inject a lost device for tests of the layers above.

WAV files are read completely when a source is built, not inside the loop.
"""

from __future__ import annotations

import array
import collections
import math
import os
import sys
import wave
from collections.abc import Iterable, Iterator

from .audio import (
    SAMPLE_WIDTH,
    AudioConfig,
    AudioConfigError,
    AudioDeviceLost,
    AudioDeviceRestored,
    EventSink,
    FrameSink,
    FrameSource,
    StreamDirection,
    StreamState,
)
from .loop_api import Cancellable, EventLoop

__all__ = [
    "SimAudioDevice",
    "SimCapture",
    "SimPlayback",
    "tone_frames",
    "wav_frames",
    "pcm_frames",
    "read_wav",
    "write_wav",
]


def _to_le(samples: array.array[int]) -> bytes:
    if sys.byteorder != "little":  # pragma: no cover - the Pi is little-endian
        samples.byteswap()
    return samples.tobytes()


def pcm_frames(pcm: bytes, config: AudioConfig) -> Iterator[bytes]:
    """Cut raw S16_LE mono audio into frames; the last one is padded with silence."""
    period = config.period_bytes
    if len(pcm) % SAMPLE_WIDTH:
        raise AudioConfigError(f"raw audio of {len(pcm)} bytes is not whole 16-bit samples")
    for offset in range(0, len(pcm), period):
        chunk = pcm[offset : offset + period]
        yield chunk if len(chunk) == period else chunk + bytes(period - len(chunk))


def tone_frames(
    config: AudioConfig,
    frequency: float,
    amplitude: float = 0.25,
    seconds: float | None = None,
) -> Iterator[bytes]:
    """A sine tone (``amplitude`` of full scale), for ``seconds`` or forever."""
    if not 0.0 <= amplitude <= 1.0:
        raise AudioConfigError(f"tone amplitude must be 0..1, not {amplitude}")
    if not 0.0 < frequency < config.sample_rate / 2:
        raise AudioConfigError(
            f"tone frequency {frequency} Hz is outside 0..{config.sample_rate // 2} Hz"
        )
    n = config.period_frames
    step = 2.0 * math.pi * frequency / config.sample_rate
    peak = amplitude * 32767.0
    total = None if seconds is None else math.ceil(seconds * config.sample_rate / n)
    index = 0
    k = 0
    while total is None or k < total:
        samples = array.array("h", (round(peak * math.sin(step * (index + i))) for i in range(n)))
        index += n
        k += 1
        yield _to_le(samples)


def read_wav(path: str | os.PathLike[str], config: AudioConfig) -> bytes:
    """Read a 16-bit mono WAV at the configured rate; anything else is refused."""
    with wave.open(str(path), "rb") as wav:
        if (
            wav.getnchannels() != 1
            or wav.getsampwidth() != SAMPLE_WIDTH
            or wav.getframerate() != config.sample_rate
        ):
            raise AudioConfigError(
                f"{path}: WAV is {wav.getnchannels()} channel(s), "
                f"{8 * wav.getsampwidth()} bit, {wav.getframerate()} Hz; the simulated "
                f"device needs mono 16 bit {config.sample_rate} Hz "
                f"(convert with: sox in.wav -c 1 -b 16 -r {config.sample_rate} out.wav)"
            )
        return wav.readframes(wav.getnframes())


def wav_frames(path: str | os.PathLike[str], config: AudioConfig) -> Iterator[bytes]:
    """Frames of a WAV file (read completely now, so not from inside the loop)."""
    return pcm_frames(read_wav(path, config), config)


def write_wav(path: str | os.PathLike[str], pcm: bytes, sample_rate: int) -> None:
    """Write S16_LE mono audio as a WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)


class _SimStream:
    direction: StreamDirection

    def __init__(
        self,
        loop: EventLoop,
        config: AudioConfig,
        paced: bool,
        on_event: EventSink | None,
    ) -> None:
        self._loop = loop
        self._config = config
        self._paced = paced
        self._on_event = on_event
        self._state = StreamState.STOPPED
        self._timer: Cancellable | None = None
        self._generation = 0  # invalidates call_soon chains of a previous run
        self._start_time = 0.0
        self._ticks = 0
        self.frames = 0
        """Frames moved since the stream was created."""
        self.tick_times: list[float] = []
        """Deadline of every tick when paced, loop time when unpaced (for tests)."""

    @property
    def state(self) -> StreamState:
        """STOPPED, RUNNING or LOST (after :meth:`SimAudioDevice.unplug`)."""
        return self._state

    def _run(self) -> None:
        self._state = StreamState.RUNNING
        self._generation += 1
        self._start_time = self._loop.time()
        self._ticks = 0
        self._schedule(self._generation)

    def _schedule(self, generation: int) -> None:
        if self._paced:
            self._ticks += 1
            when = self._start_time + self._ticks * self._config.period_seconds
            self._timer = self._loop.call_at(when, lambda: self._tick(generation, when))
        else:
            self._loop.call_soon(lambda: self._tick(generation, self._loop.time()))

    def _tick(self, generation: int, when: float) -> None:
        if generation != self._generation or self._state is not StreamState.RUNNING:
            return
        self.tick_times.append(when)
        self._schedule(generation)
        self.frames += 1
        self._move_frame()

    def _move_frame(self) -> None:
        raise NotImplementedError

    def _halt(self) -> None:
        self._generation += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stop(self) -> None:
        """Stop the stream."""
        self._halt()
        self._state = StreamState.STOPPED

    def unplug(self) -> None:
        """Test helper: the device vanishes (stream goes LOST, event emitted)."""
        if self._state is not StreamState.RUNNING:
            return
        self._halt()
        self._state = StreamState.LOST
        if self._on_event is not None:
            self._on_event(AudioDeviceLost(self.direction, "sim", "unplugged (simulated)"))

    def replug(self) -> None:
        """Test helper: the device is back (stream runs again, event emitted)."""
        if self._state is not StreamState.LOST:
            return
        self._run()
        if self._on_event is not None:
            self._on_event(AudioDeviceRestored(self.direction, "sim"))


class SimCapture(_SimStream):
    """Simulated microphone: queued frames, then silence."""

    direction = StreamDirection.CAPTURE

    def __init__(
        self,
        loop: EventLoop,
        config: AudioConfig,
        frames: Iterable[bytes] = (),
        *,
        paced: bool = True,
        on_event: EventSink | None = None,
    ) -> None:
        super().__init__(loop, config, paced, on_event)
        self._queue: collections.deque[bytes] = collections.deque()
        self._iter: Iterator[bytes] | None = None
        self._on_frame: FrameSink | None = None
        self._silence = bytes(config.period_bytes)
        self.feed(frames)

    def feed(self, audio: Iterable[bytes] | bytes) -> None:
        """Queue more audio: raw S16_LE bytes, or an iterable of frames (lazily read)."""
        if isinstance(audio, bytes | bytearray):
            self._queue.extend(pcm_frames(bytes(audio), self._config))
        else:
            pending = iter(audio)
            previous = self._iter
            if previous is None:
                self._iter = pending
            else:
                self._iter = _chain(previous, pending)

    @property
    def exhausted(self) -> bool:
        """True when only silence is left to capture."""
        if self._queue:
            return False
        if self._iter is not None:
            try:
                self._queue.append(next(self._iter))
            except StopIteration:
                self._iter = None
                return True
            return False
        return True

    def start(self, on_frame: FrameSink) -> None:
        """Start delivering frames to ``on_frame``."""
        if self._state is not StreamState.STOPPED:
            raise RuntimeError("simulated capture is already started")
        self._on_frame = on_frame
        self._run()

    def _next(self) -> bytes:
        if not self.exhausted:
            frame = self._queue.popleft()
            if len(frame) != self._config.period_bytes:
                raise AudioConfigError(
                    f"simulated capture frame is {len(frame)} bytes, "
                    f"not {self._config.period_bytes}"
                )
            return frame
        return self._silence

    def _move_frame(self) -> None:
        frame = self._next()
        if self._on_frame is not None:
            self._on_frame(frame)


def _chain(first: Iterator[bytes], second: Iterator[bytes]) -> Iterator[bytes]:
    yield from first
    yield from second


class SimPlayback(_SimStream):
    """Simulated loudspeaker: records every frame pulled from the source."""

    direction = StreamDirection.PLAYBACK

    def __init__(
        self,
        loop: EventLoop,
        config: AudioConfig,
        *,
        paced: bool = True,
        on_event: EventSink | None = None,
    ) -> None:
        super().__init__(loop, config, paced, on_event)
        self._source: FrameSource | None = None
        self._recorded = bytearray()
        self._silence = bytes(config.period_bytes)
        self.silent_frames = 0
        """Frames played as silence because the source had nothing (None)."""

    @property
    def recorded(self) -> bytes:
        """Everything played so far (silence included), S16_LE mono."""
        return bytes(self._recorded)

    def start(self, source: FrameSource) -> None:
        """Start pulling frames from ``source``."""
        if self._state is not StreamState.STOPPED:
            raise RuntimeError("simulated playback is already started")
        self._source = source
        self._run()

    def _move_frame(self) -> None:
        frame = self._source() if self._source is not None else None
        if frame is None:
            self.silent_frames += 1
            frame = self._silence
        elif len(frame) != self._config.period_bytes:
            raise AudioConfigError(
                f"playback source returned {len(frame)} bytes, not {self._config.period_bytes}"
            )
        self._recorded += frame

    def save_wav(self, path: str | os.PathLike[str]) -> None:
        """Write the recording as a WAV file (call outside the audio path)."""
        write_wav(path, bytes(self._recorded), self._config.sample_rate)

    def clear(self) -> None:
        """Forget the recording so far."""
        self._recorded.clear()


class SimAudioDevice:
    """A simulated full-duplex device implementing :class:`hal.audio.AudioDevice`."""

    def __init__(
        self,
        loop: EventLoop,
        config: AudioConfig,
        *,
        capture_frames: Iterable[bytes] = (),
        paced: bool = True,
        on_event: EventSink | None = None,
        record_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._config = config
        self._capture = SimCapture(loop, config, capture_frames, paced=paced, on_event=on_event)
        self._playback = SimPlayback(loop, config, paced=paced, on_event=on_event)
        self._record_path = record_path
        self._volume = 100
        self.volume_history: list[tuple[float, int]] = []
        """(loop time, percent) for every volume change."""
        self._loop = loop

    @property
    def config(self) -> AudioConfig:
        """The configuration the device was built with."""
        return self._config

    @property
    def capture(self) -> SimCapture:
        """Simulated microphone."""
        return self._capture

    @property
    def playback(self) -> SimPlayback:
        """Simulated loudspeaker."""
        return self._playback

    def set_volume(self, percent: int) -> None:
        """Record a volume change (0-100)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"volume must be 0-100 percent, not {percent}")
        self._volume = percent
        self.volume_history.append((self._loop.time(), percent))

    def get_volume(self) -> int:
        """The last volume set (100 initially)."""
        return self._volume

    def unplug(self) -> None:
        """Test helper: both streams lose the device."""
        self._capture.unplug()
        self._playback.unplug()

    def replug(self) -> None:
        """Test helper: both streams get the device back."""
        self._capture.replug()
        self._playback.replug()

    def close(self) -> None:
        """Stop both streams; write the playback recording if a path was given."""
        self._capture.stop()
        self._playback.stop()
        if self._record_path is not None:
            self._playback.save_wav(self._record_path)
