"""A small ctypes binding to ``libspeexdsp.so.1``: echo canceller and preprocessor.

Only the calls the voice chain needs are bound. The PyPI ``speexdsp`` wrappers
are unmaintained and need a compiler; ``libspeexdsp1`` is a plain Debian /
Raspberry Pi OS package, so ctypes keeps the firmware pure Python.

Frames are 16-bit signed native-endian mono samples passed as ``bytes`` (or any
buffer); every call checks the length, because a short buffer handed to C would
be read past its end.

The states own C memory: call :meth:`close` (or use ``with``) when done; a
finalizer frees it as a last resort.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import weakref
from types import TracebackType

__all__ = [
    "EchoCanceller",
    "Preprocessor",
    "SpeexDSPError",
    "SpeexDSPUnavailable",
    "load_library",
]

# speex/speex_echo.h
_SPEEX_ECHO_GET_FRAME_SIZE = 3
_SPEEX_ECHO_SET_SAMPLING_RATE = 24
_SPEEX_ECHO_GET_SAMPLING_RATE = 25

# speex/speex_preprocess.h
_PP_SET_DENOISE = 0
_PP_GET_DENOISE = 1
_PP_SET_AGC = 2
_PP_GET_AGC = 3
_PP_SET_AGC_LEVEL = 6  # float*
_PP_SET_NOISE_SUPPRESS = 18  # int* (dB, negative)
_PP_GET_NOISE_SUPPRESS = 19
_PP_SET_ECHO_SUPPRESS = 20  # int* (dB, negative)
_PP_SET_ECHO_SUPPRESS_ACTIVE = 22  # int* (dB, negative)
_PP_SET_ECHO_STATE = 24  # SpeexEchoState*
_PP_SET_AGC_MAX_GAIN = 30  # int* (dB)

_LIBRARY_NAME = "libspeexdsp.so.1"
_SAMPLE_BYTES = 2


class SpeexDSPError(Exception):
    """Base class for errors of this binding."""


class SpeexDSPUnavailable(SpeexDSPError):
    """The shared library could not be loaded: an installation problem, not a bug."""


def load_library(name: str | None = None) -> ctypes.CDLL:
    """Load libspeexdsp and declare the prototypes used here.

    ``name`` overrides the library file (tests use it to check the error).
    Raises :class:`SpeexDSPUnavailable` with the package to install.
    """
    candidates = [name] if name is not None else [_LIBRARY_NAME]
    if name is None:
        found = ctypes.util.find_library("speexdsp")
        if found and found not in candidates:
            candidates.append(found)
    errors: list[str] = []
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate)
        except OSError as exc:
            errors.append(str(exc))
            continue
        try:
            _declare(lib)
        except AttributeError as exc:
            errors.append(f"{candidate}: missing symbol ({exc})")
            continue
        return lib
    hint = (
        "install the SpeexDSP runtime (Debian / Raspberry Pi OS: 'apt install libspeexdsp1')"
        if sys.platform.startswith("linux")
        else "install SpeexDSP (libspeexdsp)"
    )
    raise SpeexDSPUnavailable(
        f"cannot load {candidates[0]!r} for echo cancellation: {'; '.join(errors)}; {hint}"
    )


def _declare(lib: ctypes.CDLL) -> None:
    vp = ctypes.c_void_p
    i16p = ctypes.POINTER(ctypes.c_int16)
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_state_init.restype = vp
    lib.speex_echo_state_destroy.argtypes = [vp]
    lib.speex_echo_state_destroy.restype = None
    lib.speex_echo_cancellation.argtypes = [vp, i16p, i16p, i16p]
    lib.speex_echo_cancellation.restype = None
    lib.speex_echo_playback.argtypes = [vp, i16p]
    lib.speex_echo_playback.restype = None
    lib.speex_echo_capture.argtypes = [vp, i16p, i16p]
    lib.speex_echo_capture.restype = None
    lib.speex_echo_state_reset.argtypes = [vp]
    lib.speex_echo_state_reset.restype = None
    lib.speex_echo_ctl.argtypes = [vp, ctypes.c_int, vp]
    lib.speex_echo_ctl.restype = ctypes.c_int
    lib.speex_preprocess_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_preprocess_state_init.restype = vp
    lib.speex_preprocess_state_destroy.argtypes = [vp]
    lib.speex_preprocess_state_destroy.restype = None
    lib.speex_preprocess_run.argtypes = [vp, i16p]
    lib.speex_preprocess_run.restype = ctypes.c_int
    lib.speex_preprocess_ctl.argtypes = [vp, ctypes.c_int, vp]
    lib.speex_preprocess_ctl.restype = ctypes.c_int


def _check_frame(frame: bytes | bytearray | memoryview, frame_size: int, what: str) -> None:
    if len(frame) != frame_size * _SAMPLE_BYTES:
        raise ValueError(
            f"{what} frame is {len(frame)} bytes; this state was built for "
            f"{frame_size} samples ({frame_size * _SAMPLE_BYTES} bytes)"
        )


class _Buffers:
    """Reusable C int16 arrays, so a frame costs two memmoves and no allocation."""

    def __init__(self, frame_size: int) -> None:
        array_type = ctypes.c_int16 * frame_size
        self.a = array_type()
        self.b = array_type()
        self.out = array_type()
        self.nbytes = frame_size * _SAMPLE_BYTES

    def load(
        self, target: ctypes.Array[ctypes.c_int16], frame: bytes | bytearray | memoryview
    ) -> None:
        ctypes.memmove(target, frame if isinstance(frame, bytes) else bytes(frame), self.nbytes)


class EchoCanceller:
    """SpeexDSP acoustic echo canceller (MDF adaptive filter).

    ``frame_size`` samples per call (the ALSA period: 160 at 8 kHz, 320 at 16 kHz);
    ``filter_length`` samples of echo tail the filter can model (100-200 ms of
    audio is typical for a small enclosure; it must cover the acoustic path plus
    whatever delay the sound card buffers add between playback and capture).
    """

    def __init__(
        self,
        frame_size: int,
        filter_length: int,
        sample_rate: int,
        *,
        lib: ctypes.CDLL | None = None,
    ) -> None:
        if frame_size <= 0 or filter_length < frame_size:
            raise ValueError(
                f"filter_length ({filter_length}) must be >= frame_size ({frame_size}) > 0"
            )
        self._lib = lib if lib is not None else load_library()
        state = self._lib.speex_echo_state_init(frame_size, filter_length)
        if not state:
            raise SpeexDSPError("speex_echo_state_init returned NULL (out of memory?)")
        self._state: int | None = state
        self._finalizer = weakref.finalize(self, self._lib.speex_echo_state_destroy, state)
        rate = ctypes.c_int(sample_rate)
        self._lib.speex_echo_ctl(state, _SPEEX_ECHO_SET_SAMPLING_RATE, ctypes.byref(rate))
        self.frame_size = frame_size
        self.filter_length = filter_length
        self.sample_rate = sample_rate
        self._buf = _Buffers(frame_size)

    @property
    def handle(self) -> int:
        """The ``SpeexEchoState*`` (for :meth:`Preprocessor.attach_echo_state`)."""
        if self._state is None:
            raise SpeexDSPError("echo canceller is closed")
        return self._state

    def get_sampling_rate(self) -> int:
        """Read the sampling rate back from the C state (a sanity check)."""
        value = ctypes.c_int(0)
        self._lib.speex_echo_ctl(self.handle, _SPEEX_ECHO_GET_SAMPLING_RATE, ctypes.byref(value))
        return value.value

    def get_frame_size(self) -> int:
        """The frame size the C state was built with."""
        value = ctypes.c_int(0)
        self._lib.speex_echo_ctl(self.handle, _SPEEX_ECHO_GET_FRAME_SIZE, ctypes.byref(value))
        return value.value

    def cancel(self, mic: bytes, far: bytes) -> bytes:
        """Synchronous form: ``far`` is the frame whose echo is in ``mic`` now.

        Use when the caller already aligns playback and capture (simulations).
        """
        _check_frame(mic, self.frame_size, "microphone")
        _check_frame(far, self.frame_size, "far-end")
        buf = self._buf
        buf.load(buf.a, mic)
        buf.load(buf.b, far)
        self._lib.speex_echo_cancellation(self.handle, buf.a, buf.b, buf.out)
        return ctypes.string_at(buf.out, buf.nbytes)

    def playback(self, far: bytes) -> None:
        """Buffered form, half 1: the frame just handed to the loudspeaker."""
        _check_frame(far, self.frame_size, "far-end")
        buf = self._buf
        buf.load(buf.b, far)
        self._lib.speex_echo_playback(self.handle, buf.b)

    def capture(self, mic: bytes) -> bytes:
        """Buffered form, half 2: the microphone frame just read; returns it echo-free."""
        _check_frame(mic, self.frame_size, "microphone")
        buf = self._buf
        buf.load(buf.a, mic)
        self._lib.speex_echo_capture(self.handle, buf.a, buf.out)
        return ctypes.string_at(buf.out, buf.nbytes)

    def reset(self) -> None:
        """Forget the learnt echo path (e.g. after the loudspeaker volume jumps)."""
        self._lib.speex_echo_state_reset(self.handle)

    def close(self) -> None:
        """Free the C state; safe to call twice."""
        self._finalizer()
        self._state = None

    def __enter__(self) -> EchoCanceller:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Preprocessor:
    """SpeexDSP preprocessor: noise suppression, AGC, residual echo suppression."""

    def __init__(
        self,
        frame_size: int,
        sample_rate: int,
        *,
        lib: ctypes.CDLL | None = None,
    ) -> None:
        if frame_size <= 0:
            raise ValueError(f"frame_size must be > 0, not {frame_size}")
        self._lib = lib if lib is not None else load_library()
        state = self._lib.speex_preprocess_state_init(frame_size, sample_rate)
        if not state:
            raise SpeexDSPError("speex_preprocess_state_init returned NULL (out of memory?)")
        self._state: int | None = state
        self._finalizer = weakref.finalize(self, self._lib.speex_preprocess_state_destroy, state)
        self.frame_size = frame_size
        self.sample_rate = sample_rate
        self._frame = (ctypes.c_int16 * frame_size)()
        self._nbytes = frame_size * _SAMPLE_BYTES
        # Keeps the echo canceller alive while the C preprocessor points at it.
        self._echo: EchoCanceller | None = None

    @property
    def _handle(self) -> int:
        if self._state is None:
            raise SpeexDSPError("preprocessor is closed")
        return self._state

    def _ctl_int(self, request: int, value: int) -> None:
        c_value = ctypes.c_int(value)
        if self._lib.speex_preprocess_ctl(self._handle, request, ctypes.byref(c_value)) != 0:
            raise SpeexDSPError(f"speex_preprocess_ctl({request}, {value}) failed")

    def _get_int(self, request: int) -> int:
        c_value = ctypes.c_int(0)
        self._lib.speex_preprocess_ctl(self._handle, request, ctypes.byref(c_value))
        return c_value.value

    def set_denoise(self, enabled: bool, suppress_db: int = -15) -> None:
        """Noise suppression on/off and its maximum attenuation (negative dB)."""
        self._ctl_int(_PP_SET_DENOISE, int(enabled))
        self._ctl_int(_PP_SET_NOISE_SUPPRESS, suppress_db)

    def denoise_enabled(self) -> bool:
        """Whether noise suppression is on (read back from the C state)."""
        return bool(self._get_int(_PP_GET_DENOISE))

    def set_agc(self, enabled: bool, level: float = 8000.0, max_gain_db: int = 20) -> None:
        """Automatic gain control towards ``level`` (RMS, int16 scale)."""
        self._ctl_int(_PP_SET_AGC, int(enabled))
        if enabled:
            c_level = ctypes.c_float(level)
            self._lib.speex_preprocess_ctl(self._handle, _PP_SET_AGC_LEVEL, ctypes.byref(c_level))
            self._ctl_int(_PP_SET_AGC_MAX_GAIN, max_gain_db)

    def agc_enabled(self) -> bool:
        """Whether AGC is on (read back from the C state)."""
        return bool(self._get_int(_PP_GET_AGC))

    def attach_echo_state(
        self,
        echo: EchoCanceller | None,
        suppress_db: int = -40,
        suppress_active_db: int = -15,
    ) -> None:
        """Enable residual echo suppression driven by ``echo`` (None detaches).

        The linear canceller leaves a residue (non-linear loudspeaker distortion,
        tail beyond the filter); the preprocessor attenuates it using the
        canceller's own estimate. ``suppress_active_db`` applies while the near
        end talks, so double-talk keeps more of the local voice.
        """
        pointer = ctypes.c_void_p(echo.handle if echo is not None else None)
        # SPEEX_PREPROCESS_SET_ECHO_STATE takes the SpeexEchoState* itself.
        self._lib.speex_preprocess_ctl(self._handle, _PP_SET_ECHO_STATE, pointer)
        self._echo = echo
        if echo is not None:
            self._ctl_int(_PP_SET_ECHO_SUPPRESS, suppress_db)
            self._ctl_int(_PP_SET_ECHO_SUPPRESS_ACTIVE, suppress_active_db)

    def run(self, frame: bytes) -> tuple[bytes, bool]:
        """Process one frame; returns ``(processed, voice_detected)``."""
        _check_frame(frame, self.frame_size, "preprocessor")
        ctypes.memmove(
            self._frame, frame if isinstance(frame, bytes) else bytes(frame), self._nbytes
        )
        vad = self._lib.speex_preprocess_run(self._handle, self._frame)
        return ctypes.string_at(self._frame, self._nbytes), bool(vad)

    def close(self) -> None:
        """Free the C state (detaching the echo canceller first); safe to call twice."""
        if self._state is not None and self._echo is not None:
            self._lib.speex_preprocess_ctl(self._state, _PP_SET_ECHO_STATE, ctypes.c_void_p(None))
        self._echo = None
        self._finalizer()
        self._state = None

    def __enter__(self) -> Preprocessor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
