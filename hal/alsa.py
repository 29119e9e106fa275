"""ALSA audio backend (pyalsaaudio), joined to the select loop by poll descriptors.

Both PCMs are opened non-blocking (``PCM_NONBLOCK``) and their
``polldescriptors()`` are registered with the loop; when one fires, the PCM is
asked what really happened (``polldescriptors_revents``: plugin PCMs such as
``pulse`` signal "writable" as *readable* on an internal pipe, and the call also
rearms that pipe), then all available periods are moved. No thread, no blocking
call.

Robustness, because an intercom runs unattended for years:

* **xruns**: a playback underrun is answered by re-preparing the PCM (pyalsaaudio
  already calls ``snd_pcm_prepare`` when ``writei`` fails with ``-EPIPE``),
  writing ``prefill_periods`` of silence and fading the next real frame in, so
  the restart makes no click; a capture overrun restarts capture. The first xrun
  of a stream is logged, later ones are only counted (and reported as events).
* **device lost** (USB card unplugged, sound server gone): every ALSA error on
  an open stream closes it, logs one line, emits :class:`AudioDeviceLost` and
  retries opening every ``reopen_interval`` seconds on a loop timer until it
  works (:class:`AudioDeviceRestored`).
* **rate**: the device must run at exactly the configured rate; with a ``plug``
  / ``plughw`` device ALSA converts, with raw ``hw`` it may refuse, which is a
  configuration error (raised, not retried).

``alsaaudio`` is imported only here, lazily, so that the rest of ``hal`` (and
the simulated backend) works where pyalsaaudio is not installed.
"""

from __future__ import annotations

import array
import contextlib
import errno
import logging
import select
import sys
from functools import partial
from typing import Any

from .audio import (
    SAMPLE_WIDTH,
    AudioConfig,
    AudioConfigError,
    AudioDeviceError,
    AudioDeviceLost,
    AudioDeviceRestored,
    AudioEvent,
    AudioMixerError,
    AudioXrun,
    EventSink,
    FrameSink,
    FrameSource,
    StreamDirection,
    StreamState,
)
from .loop_api import Cancellable, EventLoop

__all__ = ["AlsaAudioDevice", "AlsaCapture", "AlsaPlayback", "AlsaMixer", "import_alsaaudio"]

log = logging.getLogger(__name__)

_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_POLL_TROUBLE = select.POLLERR | select.POLLHUP | select.POLLNVAL

# Mixer controls that usually drive the loudspeaker, most specific first.
_PREFERRED_CONTROLS = ("Speaker", "Master", "PCM", "Headphone", "Playback")


def import_alsaaudio() -> Any:
    """Import pyalsaaudio or explain what to install."""
    try:
        import alsaaudio
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise AudioDeviceError(
            "the ALSA audio backend needs pyalsaaudio ('apt install python3-alsaaudio' or "
            "'pip install pyalsaaudio'); on a desk without ALSA use the 'sim' audio backend"
            f" ({exc})"
        ) from exc
    return alsaaudio


def _fade_in(frame: bytes) -> bytes:
    """Ramp a frame from silence to full level (after an underrun: no click)."""
    samples = array.array("h")
    samples.frombytes(frame)
    if sys.byteorder != "little":  # pragma: no cover - the Pi is little-endian
        samples.byteswap()
    n = len(samples)
    for i in range(n):
        samples[i] = samples[i] * i // n
    if sys.byteorder != "little":  # pragma: no cover
        samples.byteswap()
    return samples.tobytes()


def _pollable(fd: int) -> bool:
    """Whether epoll accepts ``fd`` (it refuses regular files and /dev/null)."""
    probe = select.epoll()
    try:
        probe.register(fd, select.EPOLLIN)
    except PermissionError:
        return False
    finally:
        probe.close()
    return True


class _AlsaStream:
    """What capture and playback share: open/close, poll fds, loss and reopen."""

    direction: StreamDirection

    def __init__(
        self,
        loop: EventLoop,
        config: AudioConfig,
        device: str,
        on_event: EventSink | None,
    ) -> None:
        self._loop = loop
        self._config = config
        self._device = device
        self._on_event = on_event
        self._alsa = import_alsaaudio()
        self._pcm: Any = None
        self._fds: list[tuple[int, int]] = []
        self._watched: list[tuple[int, bool]] = []  # (fd, is_reader)
        self._state = StreamState.STOPPED
        self._retry: Cancellable | None = None
        self._xruns = 0
        self._opens = 0
        # Bound the work per wake-up: an unpaced device (ALSA null/file) is always
        # ready, and the loop must still serve SIP and timers in between.
        self._max_periods_per_wakeup = config.buffer_periods + 1

    # -- public ---------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        """STOPPED, RUNNING or LOST (waiting to reopen)."""
        return self._state

    @property
    def device(self) -> str:
        """The ALSA PCM name."""
        return self._device

    @property
    def xruns(self) -> int:
        """Xruns recovered since the stream was started."""
        return self._xruns

    @property
    def opens(self) -> int:
        """How many times the PCM was opened successfully (1 + reopens)."""
        return self._opens

    @property
    def pcm_info(self) -> dict[str, Any]:
        """ALSA's view of the open PCM (rate, period_size, buffer_size...)."""
        if self._pcm is None:
            raise AudioDeviceError(f"{self._what} is not open")
        info: dict[str, Any] = self._pcm.info()
        return info

    def stop(self) -> None:
        """Stop the stream, drop queued audio, release the PCM."""
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._close_pcm()
        if self._state is not StreamState.STOPPED and self._xruns > 1:
            log.info("%s had %d xruns while running", self._what, self._xruns)
        self._set_state(StreamState.STOPPED)

    # -- subclass hooks -------------------------------------------------------

    def _after_open(self) -> None:
        """Prime the freshly opened PCM (prefill / first read)."""
        raise NotImplementedError

    def _service(self) -> None:
        """Move every available period; may raise ALSAAudioError."""
        raise NotImplementedError

    # -- state ----------------------------------------------------------------

    @property
    def _what(self) -> str:
        return f"audio {self.direction.value} device {self._device!r}"

    def _set_state(self, new: StreamState) -> None:
        # The whole transition table of StreamState lives here.
        allowed = {
            StreamState.STOPPED: {StreamState.RUNNING, StreamState.LOST, StreamState.STOPPED},
            StreamState.RUNNING: {StreamState.STOPPED, StreamState.LOST, StreamState.RUNNING},
            StreamState.LOST: {StreamState.RUNNING, StreamState.STOPPED, StreamState.LOST},
        }
        if new not in allowed[self._state]:  # pragma: no cover - table is total today
            raise RuntimeError(f"{self._what}: illegal transition {self._state} -> {new}")
        self._state = new

    def _emit(self, event: AudioEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    def _begin(self) -> None:
        """Common part of start(): open now, or schedule reopening."""
        if self._state is not StreamState.STOPPED:
            raise RuntimeError(f"{self._what} is already started (state {self._state.value})")
        self._xruns = 0
        try:
            self._open()
        except self._alsa.ALSAAudioError as exc:
            self._set_state(StreamState.LOST)
            log.warning(
                "%s cannot be opened (%s); retrying every %g s",
                self._what,
                exc,
                self._config.reopen_interval,
            )
            self._emit(AudioDeviceLost(self.direction, self._device, str(exc)))
            self._schedule_retry()
            return
        if self._pcm is not None:  # else a frame callback already stopped us
            self._set_state(StreamState.RUNNING)

    def _open(self) -> None:
        alsa = self._alsa
        cfg = self._config
        pcm_type = (
            alsa.PCM_CAPTURE if self.direction is StreamDirection.CAPTURE else alsa.PCM_PLAYBACK
        )
        pcm = alsa.PCM(
            type=pcm_type,
            mode=alsa.PCM_NONBLOCK,
            device=self._device,
            rate=cfg.sample_rate,
            channels=1,
            format=alsa.PCM_FORMAT_S16_LE,
            periodsize=cfg.period_frames,
            periods=cfg.buffer_periods,
        )
        info = pcm.info()
        if info.get("rate") != cfg.sample_rate or info.get("channels") != 1:
            pcm.close()
            raise AudioConfigError(
                f"{self._what} runs at {info.get('rate')} Hz / {info.get('channels')} "
                f"channel(s), not {cfg.sample_rate} Hz mono; use a 'plug' device "
                f"(e.g. 'plughw:CARD=...') so ALSA converts"
            )
        self._pcm = pcm
        try:
            self._fds = [(int(fd), int(mask)) for fd, mask in pcm.polldescriptors()]
            self._after_open()
        except BaseException:
            self._close_pcm()
            raise
        self._opens += 1
        if self._pcm is not pcm:
            return  # a frame callback stopped the stream while priming
        for fd, mask in self._fds:
            if not _pollable(fd):
                # ALSA's null/file plugins hand out /dev/null-like descriptors
                # that epoll refuses; they are always "ready", so service the
                # stream on every loop turn instead (unpaced, as the device is).
                self._spin(pcm)
                break
            if mask & _POLLIN:
                self._loop.add_reader(fd, partial(self._on_fd, fd, _POLLIN))
                self._watched.append((fd, True))
            if mask & _POLLOUT:
                self._loop.add_writer(fd, partial(self._on_fd, fd, _POLLOUT))
                self._watched.append((fd, False))
        log.debug(
            "%s open: %s",
            self._what,
            {k: info.get(k) for k in ("rate", "period_size", "buffer_size")},
        )

    def _close_pcm(self) -> None:
        for fd, is_reader in self._watched:
            if is_reader:
                self._loop.remove_reader(fd)
            else:
                self._loop.remove_writer(fd)
        self._watched = []
        self._fds = []
        pcm, self._pcm = self._pcm, None
        if pcm is None:
            return
        # drop() first: pyalsaaudio's close() drains playback, which would block
        # the loop for a whole buffer.
        with contextlib.suppress(self._alsa.ALSAAudioError):
            pcm.drop()
        with contextlib.suppress(self._alsa.ALSAAudioError):
            pcm.close()

    def _spin(self, pcm: Any) -> None:
        def turn() -> None:
            if self._pcm is not pcm:
                return  # closed or reopened since
            try:
                self._service()
            except self._alsa.ALSAAudioError as exc:
                self._lose(str(exc))
                return
            if self._pcm is pcm:
                self._loop.call_soon(turn)

        self._loop.call_soon(turn)

    def _on_fd(self, fd: int, event: int) -> None:
        pcm = self._pcm
        if pcm is None:
            return
        try:
            polled = [(f, event if f == fd else 0) for f, _ in self._fds]
            revents = pcm.polldescriptors_revents(polled)
            if revents & _POLL_TROUBLE and pcm.state() == self._alsa.PCM_STATE_DISCONNECTED:
                self._lose("device disconnected")
                return
            self._service()
        except self._alsa.ALSAAudioError as exc:
            self._lose(str(exc))

    def _note_xrun(self, kind: str) -> None:
        self._xruns += 1
        if self._xruns == 1:
            log.warning(
                "%s %s (recovered; further xruns are counted, not logged)", self._what, kind
            )
        self._emit(AudioXrun(self.direction, self._device, self._xruns))

    def _lose(self, reason: str) -> None:
        self._close_pcm()
        self._set_state(StreamState.LOST)
        log.warning(
            "%s lost (%s); reopening every %g s", self._what, reason, self._config.reopen_interval
        )
        self._emit(AudioDeviceLost(self.direction, self._device, reason))
        self._schedule_retry()

    def _schedule_retry(self) -> None:
        self._retry = self._loop.call_later(self._config.reopen_interval, self._try_reopen)

    def _try_reopen(self) -> None:
        self._retry = None
        if self._state is not StreamState.LOST:
            return
        try:
            self._open()
        except (self._alsa.ALSAAudioError, AudioConfigError) as exc:
            log.debug("%s still unavailable: %s", self._what, exc)
            self._schedule_retry()
            return
        self._set_state(StreamState.RUNNING)
        log.warning("%s is back", self._what)
        self._emit(AudioDeviceRestored(self.direction, self._device))


class AlsaCapture(_AlsaStream):
    """Microphone stream: calls ``on_frame`` with each ``period_bytes`` frame."""

    direction = StreamDirection.CAPTURE

    def __init__(
        self, loop: EventLoop, config: AudioConfig, on_event: EventSink | None = None
    ) -> None:
        super().__init__(loop, config, config.capture_device, on_event)
        self._on_frame: FrameSink | None = None
        self._acc = bytearray()

    def start(self, on_frame: FrameSink) -> None:
        """Open the PCM and start delivering frames (or retry opening on a timer)."""
        self._on_frame = on_frame
        self._begin()

    def _after_open(self) -> None:
        self._acc.clear()
        # A prepared capture PCM does not run (so never polls readable) until
        # something reads from it: snd_pcm_readi starts it.
        self._service()

    def _service(self) -> None:
        pcm = self._pcm
        period = self._config.period_bytes
        for _ in range(self._max_periods_per_wakeup):
            if pcm is None or self._pcm is not pcm:
                return  # the frame callback stopped us
            length, data = pcm.read()
            if length == 0:
                return  # -EAGAIN: nothing more for now
            if length < 0:
                # -EPIPE: overrun. pyalsaaudio has already re-prepared the PCM;
                # the next read() restarts it. The lost audio is gone; what we
                # held is still valid, so the accumulator is kept.
                self._note_xrun("overrun")
                continue
            self._acc += data
            while len(self._acc) >= period and self._on_frame is not None:
                frame = bytes(self._acc[:period])
                del self._acc[:period]
                self._on_frame(frame)


class AlsaPlayback(_AlsaStream):
    """Loudspeaker stream: pulls frames from ``source`` whenever there is room."""

    direction = StreamDirection.PLAYBACK

    def __init__(
        self, loop: EventLoop, config: AudioConfig, on_event: EventSink | None = None
    ) -> None:
        super().__init__(loop, config, config.playback_device, on_event)
        self._source: FrameSource | None = None
        self._pending: bytes | None = None
        self._silence = bytes(config.period_bytes)

    def start(self, source: FrameSource) -> None:
        """Open the PCM, prefill silence, and start pulling from ``source``."""
        self._source = source
        self._begin()

    def _after_open(self) -> None:
        self._pending = None
        self._prefill()
        self._service()

    def _prefill(self) -> None:
        for _ in range(self._config.prefill_periods):
            if self._pcm.write(self._silence) <= 0:
                break

    def _pull(self) -> bytes:
        frame = self._source() if self._source is not None else None
        if frame is None:
            return self._silence
        if len(frame) != self._config.period_bytes:
            raise AudioConfigError(
                f"playback source returned {len(frame)} bytes; a frame is "
                f"{self._config.period_bytes} bytes ({self._config.period_frames} samples)"
            )
        return frame

    def _service(self) -> None:
        pcm = self._pcm
        period_frames = self._config.period_frames
        for _ in range(self._max_periods_per_wakeup):
            if pcm is None or self._pcm is not pcm:
                return
            avail = pcm.avail()
            if 0 <= avail < period_frames and self._pending is None:
                return  # no room for a whole period yet
            if self._pending is None:
                self._pending = self._pull()
            written = pcm.write(self._pending)
            if written == -errno.EPIPE:
                # Underrun. pyalsaaudio re-prepared the PCM; refill a cushion of
                # silence and fade the interrupted audio back in: no click.
                self._note_xrun("underrun")
                self._prefill()
                self._pending = _fade_in(self._pending)
                continue
            if written <= 0:
                return  # buffer full (-EAGAIN is reported as 0)
            consumed = written * SAMPLE_WIDTH
            self._pending = self._pending[consumed:] or None


class AlsaMixer:
    """Loudspeaker volume through an ALSA simple mixer control, opened on first use."""

    def __init__(self, device: str, control: str | None = None) -> None:
        self._alsa = import_alsaaudio()
        self._device = device
        self._control = control
        self._mixer: Any = None

    def _open(self) -> Any:
        if self._mixer is not None:
            return self._mixer
        alsa = self._alsa
        control = self._control
        if control is None:
            try:
                names = list(alsa.mixers(device=self._device))
            except alsa.ALSAAudioError as exc:
                raise AudioMixerError(
                    f"ALSA device {self._device!r} has no mixer ({exc}); set audio "
                    f"mixer_device to the card's control device (e.g. 'hw:CARD=...'), "
                    f"see 'amixer -D {self._device} scontrols'"
                ) from exc
            preferred = [n for n in _PREFERRED_CONTROLS if n in names]
            if preferred:
                control = preferred[0]
            elif names:
                control = names[0]
            else:
                raise AudioMixerError(
                    f"ALSA device {self._device!r} has no mixer controls; "
                    f"volume cannot be set (audio still works)"
                )
        try:
            self._mixer = alsa.Mixer(control=control, device=self._device)
        except alsa.ALSAAudioError as exc:
            raise AudioMixerError(
                f"no mixer control {control!r} on ALSA device {self._device!r} ({exc}); "
                f"set audio mixer_control to one of 'amixer -D {self._device} scontrols'"
            ) from exc
        return self._mixer

    @property
    def control(self) -> str:
        """The control in use (opens the mixer)."""
        return str(self._open().mixer())

    def set_volume(self, percent: int) -> None:
        """Set every channel of the control to ``percent`` (0-100)."""
        if not 0 <= percent <= 100:
            raise ValueError(f"volume must be 0-100 percent, not {percent}")
        mixer = self._open()
        try:
            mixer.setvolume(percent)
        except self._alsa.ALSAAudioError as exc:
            raise AudioMixerError(f"cannot set volume on {self._device!r}: {exc}") from exc

    def get_volume(self) -> int:
        """The current volume in percent (the loudest channel)."""
        mixer = self._open()
        try:
            levels = mixer.getvolume()
        except self._alsa.ALSAAudioError as exc:
            raise AudioMixerError(f"cannot read volume on {self._device!r}: {exc}") from exc
        return int(max(levels)) if levels else 0

    def close(self) -> None:
        """Release the mixer handle."""
        if self._mixer is not None:
            self._mixer.close()
            self._mixer = None


class AlsaAudioDevice:
    """A full-duplex ALSA device implementing :class:`hal.audio.AudioDevice`."""

    def __init__(
        self,
        loop: EventLoop,
        config: AudioConfig,
        *,
        on_event: EventSink | None = None,
    ) -> None:
        self._config = config
        self._capture = AlsaCapture(loop, config, on_event)
        self._playback = AlsaPlayback(loop, config, on_event)
        self._mixer = AlsaMixer(config.mixer_device_name, config.mixer_control)

    @property
    def config(self) -> AudioConfig:
        """The configuration the device was built with."""
        return self._config

    @property
    def capture(self) -> AlsaCapture:
        """Microphone stream."""
        return self._capture

    @property
    def playback(self) -> AlsaPlayback:
        """Loudspeaker stream."""
        return self._playback

    @property
    def mixer(self) -> AlsaMixer:
        """Volume control."""
        return self._mixer

    def set_volume(self, percent: int) -> None:
        """Loudspeaker volume 0-100 (raises AudioMixerError without a mixer)."""
        self._mixer.set_volume(percent)

    def get_volume(self) -> int:
        """Loudspeaker volume 0-100 (raises AudioMixerError without a mixer)."""
        return self._mixer.get_volume()

    def close(self) -> None:
        """Stop both streams and release the mixer."""
        self._capture.stop()
        self._playback.stop()
        self._mixer.close()
