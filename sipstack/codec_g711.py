"""G.711 PCMU (mu-law) and PCMA (A-law) in pure Python, table driven.

``audioop`` left the standard library in Python 3.13, so the conversion is
ours. The per-sample formulas are the classic Sun/CCITT ones that ``audioop``
used (``st_14linear2ulaw``, ``st_linear2alaw`` and the inverse tables) and the
results are bit-identical to ``audioop`` for all 65536 inputs (tested). They
run only at import, to fill the tables:

* decode: two 256-entry ``bytes.translate`` tables, one per output byte, and
  the two translated strings interleaved by slice assignment (all C loops);
* encode: one 65536-byte table indexed by the signed 16-bit sample (a negative
  index reaches the upper half, which is where the two's-complement pattern of
  that sample would index), looked up with ``operator.itemgetter``. The table is
  built from the <= 256 runs of equal code words, so import stays cheap on a Pi.
  It is ``bytes``, not a tuple of ints: 64 KiB instead of 512 KiB of pointers
  per law (a tick's 160 look-ups then touch fewer cache lines, and the cyclic
  garbage collector has nothing to traverse), at the same speed.

``bench/codecs.py`` compares these against the alternatives (``map`` over an
``array``, a ``memoryview`` cast, ...) and records per-frame costs.

RFC 3551 section 4.5.14: PCMU is static payload type 0, PCMA 8; both 8 kHz.
Every lost frame is concealed with :class:`sipstack.plc.PacketLossConcealer`
(ITU-T G.711 Appendix I style).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Callable
from operator import itemgetter

from .codecs import CodecInfo
from .plc import PacketLossConcealer

__all__ = [
    "PCMA_INFO",
    "PCMU_INFO",
    "G711Codec",
    "alaw_decode",
    "alaw_encode",
    "pcma_codec",
    "pcmu_codec",
    "ulaw_decode",
    "ulaw_encode",
]

_SAMPLE_RATE = 8000
_SEG_ULAW_END = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_ALAW_END = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)
_ULAW_BIAS = 0x84


def _segment(value: int, ends: tuple[int, ...]) -> int:
    for seg, end in enumerate(ends):
        if value <= end:
            return seg
    return len(ends)


def _ulaw_encode_one(sample: int) -> int:
    """G.711 mu-law of one 16-bit sample (on its top 14 bits), as audioop did it.

    The magnitude of a negative sample is taken after the arithmetic shift,
    which is what audioop's ``st_14linear2ulaw(val >> 2)`` computed.
    """
    value = sample >> 2
    if value < 0:
        value = -value
        mask = 0x7F
    else:
        mask = 0xFF
    value += _ULAW_BIAS >> 2
    seg = _segment(value, _SEG_ULAW_END)
    if seg >= 8:  # beyond the last segment: clip to the largest code
        return 0x7F ^ mask
    return ((seg << 4) | ((value >> (seg + 1)) & 0x0F)) ^ mask


def _alaw_encode_one(sample: int) -> int:
    """G.711 A-law of one 16-bit sample (on its top 13 bits), even bits inverted."""
    value = sample >> 3
    if value >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        value = -value - 1
    seg = _segment(value, _SEG_ALAW_END)
    if seg >= 8:
        return 0x7F ^ mask
    quant = (value >> 1) if seg < 2 else (value >> seg)
    return ((seg << 4) | (quant & 0x0F)) ^ mask


def _ulaw_decode_one(code: int) -> int:
    code = ~code & 0xFF
    t = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return _ULAW_BIAS - t if code & 0x80 else t - _ULAW_BIAS


def _alaw_decode_one(code: int) -> int:
    code ^= 0x55
    t = (code & 0x0F) << 4
    seg = (code & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if code & 0x80 else -t


def _encode_table(encode_one: Callable[[int], int]) -> bytes:
    """65536 code words indexed by unsigned sample pattern, built run by run.

    G.711 maps each code word to one contiguous input interval, so a binary
    search finds where each run ends: ~4000 calls instead of 65536.
    """
    runs = bytearray()
    x = -32768
    while x <= 32767:
        code = encode_one(x)
        lo, hi = x, 32767
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if encode_one(mid) == code:
                lo = mid
            else:
                hi = mid - 1
        runs += bytes((code,)) * (lo - x + 1)
        x = lo + 1
    # runs[0] is -32768; rotate so that index i is the pattern i (negatives on top).
    return bytes(runs[32768:] + runs[:32768])


def _decode_tables(decode_one: Callable[[int], int]) -> tuple[bytes, bytes]:
    """Translate tables giving the low and high byte of each decoded sample."""
    values = [decode_one(c) & 0xFFFF for c in range(256)]
    low = bytes(v & 0xFF for v in values)
    high = bytes(v >> 8 for v in values)
    return (low, high) if sys.byteorder == "little" else (high, low)


_ULAW_ENC = _encode_table(_ulaw_encode_one)
_ALAW_ENC = _encode_table(_alaw_encode_one)
_ULAW_DEC = _decode_tables(_ulaw_decode_one)
_ALAW_DEC = _decode_tables(_alaw_decode_one)


def _encode(pcm: bytes, table: bytes) -> bytes:
    if len(pcm) & 1:
        raise ValueError(f"PCM has an odd length ({len(pcm)} bytes); samples are 16-bit")
    samples = array("h", pcm)
    if len(samples) < 2:
        # itemgetter with one key returns a bare item, with none it is an error.
        return bytes(table[s] for s in samples)
    return bytes(itemgetter(*samples)(table))


def _decode(payload: bytes, tables: tuple[bytes, bytes]) -> bytes:
    out = bytearray(2 * len(payload))
    out[0::2] = payload.translate(tables[0])
    out[1::2] = payload.translate(tables[1])
    return bytes(out)


def ulaw_encode(pcm: bytes) -> bytes:
    """16-bit native-endian PCM to mu-law (what ``audioop.lin2ulaw(pcm, 2)`` gave)."""
    return _encode(pcm, _ULAW_ENC)


def alaw_encode(pcm: bytes) -> bytes:
    """16-bit native-endian PCM to A-law (what ``audioop.lin2alaw(pcm, 2)`` gave)."""
    return _encode(pcm, _ALAW_ENC)


def ulaw_decode(payload: bytes) -> bytes:
    """Mu-law to 16-bit native-endian PCM (what ``audioop.ulaw2lin(data, 2)`` gave)."""
    return _decode(payload, _ULAW_DEC)


def alaw_decode(payload: bytes) -> bytes:
    """A-law to 16-bit native-endian PCM (what ``audioop.alaw2lin(data, 2)`` gave)."""
    return _decode(payload, _ALAW_DEC)


class G711Codec:
    """A PCMU or PCMA stream: stateless conversion plus packet-loss concealment.

    ``plc=False`` makes :meth:`conceal` return silence and :meth:`decode` skip
    the concealer's history (for measuring, or when the jitter buffer conceals).
    """

    def __init__(self, law: str = "PCMU", *, plc: bool = True) -> None:
        folded = law.upper()
        if folded == "PCMU":
            self._enc, self._dec = _ULAW_ENC, _ULAW_DEC
        elif folded == "PCMA":
            self._enc, self._dec = _ALAW_ENC, _ALAW_DEC
        else:
            raise ValueError(f"G.711 law must be 'PCMU' or 'PCMA', not {law!r}")
        self._name = folded
        self._plc = PacketLossConcealer(_SAMPLE_RATE) if plc else None

    @property
    def name(self) -> str:
        """``"PCMU"`` or ``"PCMA"``."""
        return self._name

    @property
    def clock_rate(self) -> int:
        """8000 (RFC 3551 section 4.5.14)."""
        return _SAMPLE_RATE

    @property
    def sample_rate(self) -> int:
        """8000: one code word per sample."""
        return _SAMPLE_RATE

    def frame_samples(self, ptime: int) -> int:
        """Samples per ``ptime`` ms packet (160 for 20 ms)."""
        return _SAMPLE_RATE * ptime // 1000

    def encode(self, pcm: bytes) -> bytes:
        """One byte per sample."""
        if len(pcm) > 3 and not len(pcm) & 1:  # _encode(), inlined: once per tick
            return bytes(itemgetter(*array("h", pcm))(self._enc))
        return _encode(pcm, self._enc)

    def decode(self, payload: bytes) -> bytes:
        """Two PCM bytes per code word, cross-faded after a concealed loss."""
        low, high = self._dec  # _decode(), inlined: once per tick
        out = bytearray(2 * len(payload))
        out[0::2] = payload.translate(low)
        out[1::2] = payload.translate(high)
        pcm = bytes(out)
        return pcm if self._plc is None else self._plc.good_frame(pcm)

    def conceal(self, samples: int) -> bytes:
        """G.711 Appendix I style concealment (silence when built with ``plc=False``)."""
        if self._plc is None:
            return bytes(2 * samples)
        return self._plc.conceal(samples)

    def reset(self) -> None:
        """Forget the concealment history (the conversion itself is stateless)."""
        if self._plc is not None:
            self._plc.reset()


def pcmu_codec() -> G711Codec:
    """A PCMU codec with concealment (registry factory)."""
    return G711Codec("PCMU")


def pcma_codec() -> G711Codec:
    """A PCMA codec with concealment (registry factory)."""
    return G711Codec("PCMA")


PCMU_INFO = CodecInfo("PCMU", _SAMPLE_RATE, _SAMPLE_RATE, pcmu_codec, static_payload_type=0)
PCMA_INFO = CodecInfo("PCMA", _SAMPLE_RATE, _SAMPLE_RATE, pcma_codec, static_payload_type=8)
