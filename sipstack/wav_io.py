"""WAV files in and out of the audio graph: a clip player and a streaming recorder.

Formats: RIFF/WAVE, PCM, mono, 16-bit, 8 or 16 kHz (what telephony and the
Pi's sound path use). A clip at the other rate is converted once when it is
loaded (:class:`~sipstack.media_graph.Resampler`); anything else is refused
with a :class:`WavFormatError` that names the file and says how to convert it.

I/O and the loop. The loop must never wait for the SD card:

* Playing: :func:`load_wav` reads the whole (bounded) file into memory; call
  it at start-up or when the configuration changes, not per call, and share
  the :class:`WavClip` between players. :class:`WavPlayer` then only slices
  bytes.
* Recording: :class:`WavRecorder` ``write`` only appends to a memory buffer.
  Every ``chunk_bytes`` the buffer goes to a writer thread that owns the file
  (open, header, writes, final header patch). Regular files cannot be made
  non-blocking on Linux (``O_NONBLOCK`` is ignored, epoll refuses them) and an
  SD card can stall writes for hundreds of milliseconds when its write-back
  cache flushes, so a thread is the only way to keep that off the loop. The
  thread touches no loop state; it only moves bytes and sets flags. The
  amount waiting for the card is bounded (``max_buffered_bytes``): beyond it
  frames are dropped and counted rather than memory growing. A full disk or
  any other write error stops the recording, keeps what was written
  (the header is patched if possible) and is reported once, on the loop
  thread, through ``on_error``.
"""

from __future__ import annotations

import enum
import errno
import os
import queue
import struct
import threading
import wave
from collections.abc import Callable
from typing import BinaryIO

from .media_graph import Resampler
from .records import dataclass

__all__ = [
    "RecorderFailed",
    "RecorderState",
    "WavClip",
    "WavFormatError",
    "WavPlayer",
    "WavRecorder",
    "load_wav",
]

SUPPORTED_RATES = (8000, 16000)
_HEADER_BYTES = 44
_MAX_DATA_BYTES = 0xFFFFFFFF - _HEADER_BYTES  # RIFF sizes are 32-bit


class WavFormatError(ValueError):
    """The WAV file is not something we can play: the file's (or its author's) fault."""


@dataclass(frozen=True, slots=True)
class WavClip:
    """Decoded audio at the graph's rate: S16_LE mono ``pcm``.

    ``file_rate`` is the rate stored in the file (it differs from
    ``sample_rate`` when the clip was converted on load).
    """

    pcm: bytes
    sample_rate: int
    file_rate: int
    path: str = ""

    @property
    def seconds(self) -> float:
        """Duration."""
        return len(self.pcm) / (2 * self.sample_rate)


def load_wav(
    path: str | os.PathLike[str], sample_rate: int, *, max_seconds: float = 120.0
) -> WavClip:
    """Read a whole WAV file and convert it to ``sample_rate`` (8000 or 16000).

    Blocking file I/O: call outside the audio path. ``max_seconds`` bounds the
    memory a clip may take (120 s at 16 kHz is 3.8 MB).
    """
    if sample_rate not in SUPPORTED_RATES:
        raise ValueError(f"graph sample rate {sample_rate} is not 8000 or 16000")
    name = str(path)
    hint = f"(convert with: sox in.wav -c 1 -b 16 -r {sample_rate} -e signed-integer {name})"
    try:
        with wave.open(name, "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.getnframes()
            if channels != 1 or width != 2 or rate not in SUPPORTED_RATES:
                raise WavFormatError(
                    f"{name}: WAV is {channels} channel(s), {8 * width} bit, {rate} Hz; "
                    f"we play mono 16-bit PCM at 8000 or 16000 Hz {hint}"
                )
            if frames > max_seconds * rate:
                raise WavFormatError(
                    f"{name}: {frames / rate:.1f} s of audio is longer than the "
                    f"{max_seconds:g} s limit for a clip; use a shorter file"
                )
            pcm = wav.readframes(frames)
    except wave.Error as exc:
        raise WavFormatError(f"{name}: not a PCM WAV file ({exc}) {hint}") from None
    except EOFError:
        raise WavFormatError(f"{name}: WAV file is truncated or empty") from None
    pcm = pcm[: len(pcm) - len(pcm) % 2]
    if not pcm:
        raise WavFormatError(f"{name}: WAV file holds no audio")
    if rate != sample_rate:
        pcm = _convert(pcm, rate, sample_rate)
    return WavClip(pcm, sample_rate, rate, name)


def _convert(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    resampler = Resampler(from_rate, to_rate)
    if len(pcm) % 4 and to_rate < from_rate:
        pcm += b"\0\0"  # down-sampling takes sample pairs
    step = 2 * from_rate  # one second per call keeps the big integers modest
    return b"".join(resampler.process(pcm[i : i + step]) for i in range(0, len(pcm), step))


class WavPlayer:
    """A :class:`~sipstack.media_graph.FrameSource` playing a :class:`WavClip`.

    Played once, the last frame is padded with silence and then :meth:`read`
    returns None (:attr:`finished` is true). Looped, the end joins the
    beginning seamlessly (a ring tone, a door chime).
    """

    def __init__(self, clip: WavClip, frame_samples: int, *, loop: bool = False) -> None:
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        self.clip = clip
        self.loop = loop
        self._frame_bytes = 2 * frame_samples
        pcm = clip.pcm
        if loop:
            # append the head once so that every frame is one slice
            pcm = pcm * (1 + -(-self._frame_bytes // len(pcm)))
        self._pcm = pcm
        self._length = len(clip.pcm)
        self._pos = 0
        self._finished = False

    @property
    def finished(self) -> bool:
        """True once a clip played once has been played to its end."""
        return self._finished

    def rewind(self) -> None:
        """Start again from the beginning."""
        self._pos = 0
        self._finished = False

    def read(self, now: float) -> bytes | None:
        """The next frame, or None after the end of a clip played once."""
        if self._finished:
            return None
        start = self._pos
        end = start + self._frame_bytes
        if self.loop:
            self._pos = end % self._length
            return self._pcm[start:end]
        frame = self._pcm[start:end]
        self._pos = end
        if end >= self._length:
            self._finished = True
            frame += bytes(self._frame_bytes - len(frame))
        return frame


# ---------------------------------------------------------------------------
# recording


class RecorderState(enum.Enum):
    """RECORDING -> CLOSING (close) -> CLOSED (file complete); any -> FAILED (write error)."""

    RECORDING = "recording"
    CLOSING = "closing"
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class RecorderFailed:
    """The recording stopped because the file could not be written (disk full, card gone)."""

    path: str
    reason: str


def _header(sample_rate: int, data_bytes: int) -> bytes:
    # RIFF/WAVE with a 16-byte PCM fmt chunk (WAVE_FORMAT_PCM = 1), mono, 16-bit
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        sample_rate,
        2 * sample_rate,
        2,
        16,
        b"data",
        data_bytes,
    )


def _open_for_writing(path: str) -> BinaryIO:
    return open(path, "wb")  # noqa: SIM115 - the writer thread closes it


class _FileWriter:
    """The thread that owns the file. Shares only a queue, a lock and counters."""

    def __init__(self, path: str, sample_rate: int, opener: Callable[[str], BinaryIO]) -> None:
        self.path = path
        self.sample_rate = sample_rate
        self._opener = opener
        self.chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.in_flight = 0  # bytes queued but not yet written (guarded by lock)
        self.written = 0  # audio bytes in the file
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name=f"wav-writer {path}", daemon=True)
        self.thread.start()

    def submit(self, chunk: bytes) -> None:
        with self.lock:
            self.in_flight += len(chunk)
        self.chunks.put(chunk)

    def finish(self) -> None:
        self.chunks.put(None)

    def _run(self) -> None:
        try:
            handle = self._opener(self.path)
        except OSError as exc:
            self.error = f"{self.path}: cannot create the recording: {exc.strerror or exc}"
            return
        try:
            handle.write(_header(self.sample_rate, 0))
            while (chunk := self.chunks.get()) is not None:
                if self.written + len(chunk) > _MAX_DATA_BYTES:
                    raise _TooLong
                handle.write(chunk)
                handle.flush()  # so that ENOSPC shows now, not at close
                with self.lock:
                    self.in_flight -= len(chunk)
                self.written += len(chunk)
        except _TooLong:
            self.error = f"{self.path}: the recording reached the 4 GiB WAV size limit"
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                self.error = (
                    f"{self.path}: the disk is full ({self.written} bytes of audio "
                    "were saved); recording stopped"
                )
            else:
                self.error = f"{self.path}: writing the recording failed: {exc.strerror or exc}"
        finally:
            self._finish_file(handle)

    def _finish_file(self, handle: BinaryIO) -> None:
        # Patch the RIFF and data chunk sizes (RIFF WAVE layout) so that
        # players see the real length, even of a recording cut short.
        try:
            handle.seek(0)
            handle.write(_header(self.sample_rate, self.written))
            handle.flush()
        except OSError:
            pass  # the audio written so far is still readable by lenient players
        try:
            handle.close()
        except OSError as exc:
            if self.error is None:
                self.error = f"{self.path}: closing the recording failed: {exc.strerror or exc}"


class _TooLong(Exception):
    pass


class WavRecorder:
    """A :class:`~sipstack.media_graph.FrameSink` streaming frames to a WAV file.

    ``write`` never touches the file (see the module docstring). ``chunk_bytes``
    is the size of each file write (32 kB = 1 s at 16 kHz; a multiple of the
    card's 4 kB page is kindest to flash); at most
    ``max_buffered_bytes`` may wait for the card before frames are dropped
    (:attr:`dropped_frames`). ``opener`` opens the file for writing in the
    writer thread (tests inject slow or failing files).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sample_rate: int,
        *,
        chunk_bytes: int = 32768,
        max_buffered_bytes: int = 1 << 20,
        on_error: Callable[[RecorderFailed], object] | None = None,
        opener: Callable[[str], BinaryIO] = _open_for_writing,
    ) -> None:
        if sample_rate not in SUPPORTED_RATES:
            raise ValueError(f"recording sample rate {sample_rate} is not 8000 or 16000")
        if chunk_bytes < 2 or chunk_bytes % 2:
            raise ValueError(f"chunk_bytes must be an even number >= 2, not {chunk_bytes}")
        if max_buffered_bytes < 2 * chunk_bytes:
            raise ValueError("max_buffered_bytes must hold at least two chunks")
        self.path = str(path)
        self.sample_rate = sample_rate
        self._chunk_bytes = chunk_bytes
        self._max_buffered = max_buffered_bytes
        self._on_error = on_error
        self._pending = bytearray()
        self._closing = False
        self._reported = False
        self.dropped_frames = 0
        """Frames lost because the card fell more than ``max_buffered_bytes`` behind."""
        self._writer = _FileWriter(self.path, sample_rate, opener)

    @property
    def state(self) -> RecorderState:
        """Where the recording stands (FAILED wins: check :attr:`error`)."""
        if self._writer.error is not None:
            return RecorderState.FAILED
        if not self._closing:
            return RecorderState.RECORDING
        return RecorderState.CLOSING if self._writer.thread.is_alive() else RecorderState.CLOSED

    @property
    def error(self) -> str | None:
        """Why the recording failed, or None."""
        return self._writer.error

    @property
    def bytes_written(self) -> int:
        """Audio bytes that reached the file so far."""
        return self._writer.written

    @property
    def buffered_bytes(self) -> int:
        """Audio bytes accepted but not yet in the file."""
        with self._writer.lock:
            return self._writer.in_flight + len(self._pending)

    def write(self, frame: bytes, now: float) -> None:
        """Accept one frame; returns at once whatever the card is doing."""
        if self._closing:
            raise RuntimeError(f"recorder {self.path} is closed; remove it from the graph first")
        if self._writer.error is not None:
            self._report()
            return
        with self._writer.lock:
            waiting = self._writer.in_flight + len(self._pending)
        if waiting + len(frame) > self._max_buffered:
            self.dropped_frames += 1
            return
        self._pending += frame
        while len(self._pending) >= self._chunk_bytes:
            # exact chunk sizes: whole flash pages, whatever the frame size
            self._writer.submit(bytes(self._pending[: self._chunk_bytes]))
            del self._pending[: self._chunk_bytes]

    def close(self) -> None:
        """Flush what is buffered and finish the file in the background; idempotent."""
        if self._closing:
            return
        self._closing = True
        if self._pending and self._writer.error is None:
            self._writer.submit(bytes(self._pending))
            self._pending.clear()
        self._writer.finish()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Block until the file is complete (shutdown, tests); True if it is.

        Reports a failure through ``on_error`` if nobody saw it yet.
        """
        self._writer.thread.join(timeout)
        done = not self._writer.thread.is_alive()
        if self._writer.error is not None:
            self._report()
        return done

    def _report(self) -> None:
        if self._reported or self._writer.error is None:
            return
        self._reported = True
        if self._on_error is not None:
            self._on_error(RecorderFailed(self.path, self._writer.error))
