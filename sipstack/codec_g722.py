"""G.722 at 64 kbit/s (16 kHz wideband) through libspandsp's codec, via ctypes.

G.722 is two sub-band ADPCM coders behind a QMF filter bank: thousands of
multiply-adds per millisecond, far too slow in pure Python for a Pi Zero. The
Debian / Raspberry Pi OS package ``libspandsp2`` ships a mature C codec
(``g722_encode`` / ``g722_decode``), and a ctypes call per 20 ms frame costs a
few microseconds of overhead.

RFC 3551 section 4.5.2: the RTP clock rate of G.722 is 8000 Hz although it
samples at 16 kHz (an error in RFC 1890 kept for compatibility), so a 20 ms
packet advances the RTP timestamp by 160 while carrying 320 samples in 160
bytes. Static payload type 9.

Lost frames are concealed by the same pitch-repetition concealer as G.711,
running at 16 kHz (:mod:`sipstack.plc`).
"""

from __future__ import annotations

import ctypes
import weakref

from .codecs import CodecInfo, CodecUnavailableError, load_native
from .plc import PacketLossConcealer

__all__ = ["INFO", "SPANDSP_LIBRARY", "G722Codec", "SpanDsp", "available", "load_spandsp"]

SPANDSP_LIBRARY = "libspandsp.so.2"
_BIT_RATE = 64000  # modes 56k/48k exist but RFC 3551 G722 is 64 kbit/s
_OPTIONS = 0  # 16 kHz PCM in and out, one code word per byte (not G722_PACKED)
_SAMPLE_RATE = 16000
_CLOCK_RATE = 8000  # RFC 3551 section 4.5.2


class SpanDsp:
    """The G.722 entry points of a loaded libspandsp, with prototypes declared."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        vp, cp, ci = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for prefix in ("g722_encode", "g722_decode"):
            init = getattr(lib, f"{prefix}_init")
            init.argtypes = [vp, ci, ci]
            init.restype = vp
            free = getattr(lib, f"{prefix}_free")
            free.argtypes = [vp]
            free.restype = ci
        # int g722_encode(g722_encode_state_t *s, uint8_t g722_data[], const int16_t amp[], int len)
        lib.g722_encode.argtypes = [vp, vp, cp, ci]
        lib.g722_encode.restype = ci
        # int g722_decode(g722_decode_state_t *s, int16_t amp[], const uint8_t g722_data[], int len)
        lib.g722_decode.argtypes = [vp, vp, cp, ci]
        lib.g722_decode.restype = ci
        self.lib = lib
        self.encode_init = lib.g722_encode_init
        self.encode_free = lib.g722_encode_free
        self.encode = lib.g722_encode
        self.decode_init = lib.g722_decode_init
        self.decode_free = lib.g722_decode_free
        self.decode = lib.g722_decode


def load_spandsp(name: str | None = None) -> SpanDsp:
    """Load libspandsp (``name`` overrides the file; tests use it to check the error).

    Raises :class:`CodecUnavailableError` naming the package to install.
    """
    return load_native(
        SpanDsp,
        codec="G.722",
        soname=SPANDSP_LIBRARY,
        short_name="spandsp",
        package="libspandsp2",
        name=name,
    )


def available(name: str | None = None) -> bool:
    """Whether libspandsp can be loaded, i.e. whether G.722 can be offered."""
    try:
        load_spandsp(name)
    except CodecUnavailableError:
        return False
    return True


class G722Codec:
    """One G.722 stream: spandsp encoder and decoder states plus concealment.

    The C states are freed by :meth:`close` (or when the object is collected).
    ``library`` names the shared object to load instead of ``libspandsp.so.2``.
    """

    def __init__(self, *, plc: bool = True, library: str | None = None) -> None:
        dsp = load_spandsp(library)
        self._dsp = dsp
        enc = dsp.encode_init(None, _BIT_RATE, _OPTIONS)
        dec = dsp.decode_init(None, _BIT_RATE, _OPTIONS)
        if not enc or not dec:
            if enc:
                dsp.encode_free(enc)
            if dec:
                dsp.decode_free(dec)
            raise MemoryError("g722_*_init could not allocate codec state")
        self._enc: int = enc
        self._dec: int = dec
        self._finalizer = weakref.finalize(self, _free, dsp, enc, dec)
        # Output buffers grow to the largest frame seen and are reused.
        self._enc_buf = ctypes.create_string_buffer(0)
        self._dec_buf = ctypes.create_string_buffer(0)
        self._plc = PacketLossConcealer(_SAMPLE_RATE) if plc else None

    @property
    def name(self) -> str:
        """``"G722"``."""
        return "G722"

    @property
    def clock_rate(self) -> int:
        """8000, not 16000: RFC 3551 section 4.5.2."""
        return _CLOCK_RATE

    @property
    def sample_rate(self) -> int:
        """16000."""
        return _SAMPLE_RATE

    def frame_samples(self, ptime: int) -> int:
        """PCM samples per ``ptime`` ms packet (320 for 20 ms)."""
        return _SAMPLE_RATE * ptime // 1000

    def encode(self, pcm: bytes) -> bytes:
        """Two samples per code byte: 640 PCM bytes in, 160 bytes out per 20 ms."""
        if len(pcm) & 3:
            raise ValueError(
                f"G.722 encodes pairs of 16-bit samples; {len(pcm)} bytes is not a multiple of 4"
            )
        samples = len(pcm) // 2
        size = samples // 2
        if len(self._enc_buf) < size:
            self._enc_buf = ctypes.create_string_buffer(size)
        n = self._dsp.encode(self._live(self._enc), self._enc_buf, pcm, samples)
        return self._enc_buf.raw[:n]

    def decode(self, payload: bytes) -> bytes:
        """Each code byte gives two 16 kHz samples."""
        size = 4 * len(payload)
        if len(self._dec_buf) < size:
            self._dec_buf = ctypes.create_string_buffer(size)
        n = self._dsp.decode(self._live(self._dec), self._dec_buf, payload, len(payload))
        pcm = self._dec_buf.raw[: 2 * n]
        return pcm if self._plc is None else self._plc.good_frame(pcm)

    def conceal(self, samples: int) -> bytes:
        """Pitch-repetition concealment at 16 kHz (silence when built with ``plc=False``)."""
        if self._plc is None:
            return bytes(2 * samples)
        return self._plc.conceal(samples)

    def reset(self) -> None:
        """Re-initialise both ADPCM states in place and forget concealment history."""
        self._dsp.encode_init(self._live(self._enc), _BIT_RATE, _OPTIONS)
        self._dsp.decode_init(self._live(self._dec), _BIT_RATE, _OPTIONS)
        if self._plc is not None:
            self._plc.reset()

    def close(self) -> None:
        """Free the C states; the codec is unusable afterwards. Idempotent."""
        self._finalizer()

    def _live(self, state: int) -> int:
        if not self._finalizer.alive:
            raise RuntimeError("G722Codec used after close()")
        return state


def _free(dsp: SpanDsp, enc: int, dec: int) -> None:
    dsp.encode_free(enc)
    dsp.decode_free(dec)


INFO = CodecInfo("G722", _CLOCK_RATE, _SAMPLE_RATE, G722Codec, static_payload_type=9)
