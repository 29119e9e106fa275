"""Opus (RFC 6716) through libopus via ctypes: optional, mono, VoIP mode.

Opus costs far more CPU per frame than G.711 or G.722 (see
docs/benchmarks.md), so it is not in the default offer; ask
:func:`sipstack.codecs.default_registry` for it with ``opus=True``.

RFC 7587 section 4.1: the RTP clock is always 48000 and the rtpmap always says
``opus/48000/2``, whatever the actual sampling rate and channel count. The PCM
side runs at any rate libopus supports (8, 12, 16, 24 or 48 kHz; 16 kHz by
default, matching a G.722-capable audio device), and the decoder resamples
internally. Lost frames are concealed by libopus's own PLC.
"""

from __future__ import annotations

import ctypes
import weakref

from .codecs import CodecError, CodecInfo, CodecUnavailableError, load_native

__all__ = ["INFO", "OPUS_LIBRARY", "OpusCodec", "available", "load_opus"]

OPUS_LIBRARY = "libopus.so.0"
_CLOCK_RATE = 48000  # RFC 7587 section 4.1
_APPLICATION_VOIP = 2048  # opus_defines.h OPUS_APPLICATION_VOIP
_SET_BITRATE = 4002  # OPUS_SET_BITRATE_REQUEST
_SET_COMPLEXITY = 4010  # OPUS_SET_COMPLEXITY_REQUEST
_RESET_STATE = 4028  # OPUS_RESET_STATE
_MAX_PACKET = 1500  # bytes; RFC 6716 3.2.1 caps one frame at 1275
_MAX_FRAME_MS = 120
_RATES = (8000, 12000, 16000, 24000, 48000)


class _Opus:
    """The libopus entry points used here, with prototypes declared."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        ip = ctypes.POINTER(ctypes.c_int)
        lib.opus_encoder_create.argtypes = [ctypes.c_int32, ci, ci, ip]
        lib.opus_encoder_create.restype = vp
        lib.opus_decoder_create.argtypes = [ctypes.c_int32, ci, ip]
        lib.opus_decoder_create.restype = vp
        lib.opus_encoder_destroy.argtypes = [vp]
        lib.opus_encoder_destroy.restype = None
        lib.opus_decoder_destroy.argtypes = [vp]
        lib.opus_decoder_destroy.restype = None
        lib.opus_encode.argtypes = [vp, cp, ci, vp, ctypes.c_int32]
        lib.opus_encode.restype = ctypes.c_int32
        lib.opus_decode.argtypes = [vp, cp, ctypes.c_int32, vp, ci, ci]
        lib.opus_decode.restype = ci
        lib.opus_strerror.argtypes = [ci]
        lib.opus_strerror.restype = cp
        # opus_encoder_ctl / opus_decoder_ctl are variadic: no argtypes.
        lib.opus_encoder_ctl.restype = ci
        lib.opus_decoder_ctl.restype = ci
        self.lib = lib

    def error(self, code: int) -> str:
        text = self.lib.opus_strerror(code)
        return text.decode() if isinstance(text, bytes) else f"error {code}"


def load_opus(name: str | None = None) -> _Opus:
    """Load libopus; raises :class:`CodecUnavailableError` naming the package."""
    return load_native(
        _Opus,
        codec="Opus",
        soname=OPUS_LIBRARY,
        short_name="opus",
        package="libopus0",
        name=name,
    )


def available(name: str | None = None) -> bool:
    """Whether libopus can be loaded."""
    try:
        load_opus(name)
    except CodecUnavailableError:
        return False
    return True


class OpusCodec:
    """One mono Opus stream (encoder + decoder) at ``sample_rate`` PCM.

    ``bitrate`` (bit/s) and ``complexity`` (0-10; lower is cheaper on a Pi)
    default to libopus's choices. Free the C states with :meth:`close`.
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        *,
        bitrate: int | None = None,
        complexity: int | None = None,
        library: str | None = None,
    ) -> None:
        if sample_rate not in _RATES:
            raise ValueError(f"Opus runs at {_RATES} Hz, not {sample_rate}")
        opus = load_opus(library)
        self._opus = opus
        self._sample_rate = sample_rate
        err = ctypes.c_int(0)
        enc = opus.lib.opus_encoder_create(sample_rate, 1, _APPLICATION_VOIP, ctypes.byref(err))
        if not enc:
            raise CodecError(f"opus_encoder_create failed: {opus.error(err.value)}")
        dec = opus.lib.opus_decoder_create(sample_rate, 1, ctypes.byref(err))
        if not dec:
            opus.lib.opus_encoder_destroy(enc)
            raise CodecError(f"opus_decoder_create failed: {opus.error(err.value)}")
        self._enc: int = enc
        self._dec: int = dec
        self._finalizer = weakref.finalize(self, _free, opus, enc, dec)
        self._settings = (bitrate, complexity)
        self._apply_settings()
        self._packet = ctypes.create_string_buffer(_MAX_PACKET)
        self._pcm = ctypes.create_string_buffer(2 * sample_rate * _MAX_FRAME_MS // 1000)

    @property
    def name(self) -> str:
        """``"opus"`` (the rtpmap spelling of RFC 7587)."""
        return "opus"

    @property
    def clock_rate(self) -> int:
        """48000 whatever the PCM rate (RFC 7587 section 4.1)."""
        return _CLOCK_RATE

    @property
    def sample_rate(self) -> int:
        """The PCM rate chosen at construction."""
        return self._sample_rate

    def frame_samples(self, ptime: int) -> int:
        """PCM samples per ``ptime`` ms packet (320 for 20 ms at 16 kHz)."""
        return self._sample_rate * ptime // 1000

    def encode(self, pcm: bytes) -> bytes:
        """One Opus packet; the frame must be 2.5, 5, 10, 20, 40 or 60 ms long."""
        if len(pcm) & 1:
            raise ValueError(f"PCM has an odd length ({len(pcm)} bytes); samples are 16-bit")
        n = self._opus.lib.opus_encode(
            self._live(self._enc), pcm, len(pcm) // 2, self._packet, _MAX_PACKET
        )
        if n < 0:
            raise ValueError(
                f"opus_encode rejected a {len(pcm) // 2}-sample frame: {self._opus.error(n)}"
            )
        return self._packet.raw[:n]

    def decode(self, payload: bytes) -> bytes:
        """Decode one packet; a corrupt packet from the peer yields no samples."""
        return self._decode(payload, len(self._pcm) // 2)

    def conceal(self, samples: int) -> bytes:
        """libopus PLC for ``samples`` samples (a multiple of 2.5 ms)."""
        return self._decode(None, samples)

    def reset(self) -> None:
        """OPUS_RESET_STATE on both sides; settings are kept."""
        # Variadic calls: handles passed as pointers, not (32-bit) C ints.
        self._opus.lib.opus_encoder_ctl(
            ctypes.c_void_p(self._live(self._enc)), ctypes.c_int(_RESET_STATE)
        )
        self._opus.lib.opus_decoder_ctl(
            ctypes.c_void_p(self._live(self._dec)), ctypes.c_int(_RESET_STATE)
        )

    def close(self) -> None:
        """Free the C states; idempotent."""
        self._finalizer()

    def _decode(self, payload: bytes | None, max_samples: int) -> bytes:
        size = 0 if payload is None else len(payload)
        n = self._opus.lib.opus_decode(
            self._live(self._dec), payload, size, self._pcm, max_samples, 0
        )
        if n < 0:
            # The peer's packet is broken (its fault, not ours): play nothing.
            return b""
        return self._pcm.raw[: 2 * n]

    def _apply_settings(self) -> None:
        bitrate, complexity = self._settings
        lib = self._opus.lib
        # Variadic call: pass the handle as a pointer, not a (32-bit) C int.
        enc = ctypes.c_void_p(self._enc)
        if bitrate is not None:
            lib.opus_encoder_ctl(enc, ctypes.c_int(_SET_BITRATE), ctypes.c_int(bitrate))
        if complexity is not None:
            lib.opus_encoder_ctl(enc, ctypes.c_int(_SET_COMPLEXITY), ctypes.c_int(complexity))

    def _live(self, state: int) -> int:
        if not self._finalizer.alive:
            raise RuntimeError("OpusCodec used after close()")
        return state


def _free(opus: _Opus, enc: int, dec: int) -> None:
    opus.lib.opus_encoder_destroy(enc)
    opus.lib.opus_decoder_destroy(dec)


INFO = CodecInfo("opus", _CLOCK_RATE, 16000, OpusCodec, channels=2)
