"""Audio codecs: the :class:`Codec` protocol every codec implements, and a registry.

A codec turns 16-bit signed native-endian mono PCM (``bytes``, the format ALSA
delivers as ``S16_LE`` on every Raspberry Pi) into RTP payloads and back. It is
a leaf of the stack: it knows nothing of RTP, SDP or sockets. Per call the
media layer creates one codec object per stream direction pair (encoder and
decoder state live in the same object, as in PJMEDIA's ``pjmedia_codec``).

Two rates matter and they differ for G.722 and Opus:

* ``clock_rate``: the RTP timestamp clock written in SDP ``a=rtpmap``
  (RFC 3551 section 4.5.2: G.722 says 8000 although it samples at 16 kHz;
  RFC 7587 section 4.1: Opus always says 48000);
* ``sample_rate``: the PCM rate the codec consumes and produces, which the
  audio device must run at.

The registry maps SDP encoding names (case-insensitive, RFC 8866 section 6.6)
and clock rates to factories; its order is the default preference order for
offers. :func:`default_registry` builds one with what this machine can run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from .records import dataclass

if TYPE_CHECKING:
    import ctypes

_Lib = TypeVar("_Lib")

__all__ = [
    "Codec",
    "CodecError",
    "CodecInfo",
    "CodecRegistry",
    "CodecUnavailableError",
    "UnknownCodecError",
    "default_registry",
]


class CodecError(Exception):
    """Base class for codec errors."""


class CodecUnavailableError(CodecError):
    """A codec's native library cannot be loaded: an installation problem, not a bug.

    The message names the library and the package that provides it.
    """


class UnknownCodecError(CodecError, KeyError):
    """The caller asked the registry for a codec it does not hold."""

    def __str__(self) -> str:
        # KeyError would repr() the message; we want it readable.
        return str(self.args[0]) if self.args else ""


@runtime_checkable
class Codec(Protocol):
    """One audio codec instance (encoder and decoder state of one stream).

    PCM is 16-bit signed native-endian mono at :attr:`sample_rate`. Payloads are
    what goes into one RTP packet. Instances are not thread-safe; the media
    layer drives them from the loop thread.
    """

    @property
    def name(self) -> str:
        """Encoding name as written in SDP ``a=rtpmap`` (e.g. ``"PCMU"``)."""
        ...

    @property
    def clock_rate(self) -> int:
        """RTP timestamp clock rate (Hz), as in ``a=rtpmap``."""
        ...

    @property
    def sample_rate(self) -> int:
        """PCM sample rate (Hz) of :meth:`encode` input and :meth:`decode` output."""
        ...

    def frame_samples(self, ptime: int) -> int:
        """PCM samples in one packet of ``ptime`` milliseconds."""
        ...

    def encode(self, pcm: bytes) -> bytes:
        """Encode PCM (a whole number of samples) into one RTP payload."""
        ...

    def decode(self, payload: bytes) -> bytes:
        """Decode one RTP payload into PCM."""
        ...

    def conceal(self, samples: int) -> bytes:
        """PCM to play instead of a lost packet of ``samples`` samples (PLC)."""
        ...

    def reset(self) -> None:
        """Forget all encoder, decoder and concealment state (new stream / SSRC)."""
        ...


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """What the SDP layer needs to know about a codec, and how to make one.

    ``channels`` is the ``a=rtpmap`` encoding parameter (RFC 7587 section 7:
    Opus always announces 2 even when the stream is mono); ``None`` when the
    rtpmap carries none. ``static_payload_type`` is the RFC 3551 table 4
    number, or ``None`` for dynamically assigned codecs.
    """

    name: str
    clock_rate: int
    sample_rate: int
    factory: Callable[[], Codec]
    static_payload_type: int | None = None
    channels: int | None = None

    @property
    def key(self) -> tuple[str, int]:
        """Case-folded name and clock rate: what identifies a codec in SDP."""
        return (self.name.lower(), self.clock_rate)

    @property
    def rtpmap(self) -> str:
        """The ``a=rtpmap`` value after the payload type: ``"G722/8000"``."""
        base = f"{self.name}/{self.clock_rate}"
        return base if self.channels is None else f"{base}/{self.channels}"


class CodecRegistry:
    """Ordered set of codecs known to one user agent (no global registry).

    Iteration order is the registration order, which is the default
    preference order for SDP offers.
    """

    def __init__(self, infos: Iterable[CodecInfo] = ()) -> None:
        self._infos: dict[tuple[str, int], CodecInfo] = {}
        for info in infos:
            self.register(info)

    def register(self, info: CodecInfo) -> None:
        """Add a codec; registering the same name and clock rate twice is a bug."""
        if info.key in self._infos:
            raise ValueError(f"codec {info.rtpmap} is already registered")
        self._infos[info.key] = info

    def find(self, name: str, clock_rate: int | None = None) -> CodecInfo | None:
        """Look up by encoding name (case-insensitive) and, if given, clock rate.

        Without a clock rate the first registered codec of that name wins.
        """
        folded = name.lower()
        if clock_rate is not None:
            return self._infos.get((folded, clock_rate))
        for info in self._infos.values():
            if info.key[0] == folded:
                return info
        return None

    def get(self, name: str, clock_rate: int | None = None) -> CodecInfo:
        """Like :meth:`find` but raises :class:`UnknownCodecError` when absent."""
        info = self.find(name, clock_rate)
        if info is None:
            wanted = name if clock_rate is None else f"{name}/{clock_rate}"
            known = ", ".join(i.rtpmap for i in self._infos.values()) or "none"
            raise UnknownCodecError(f"no codec {wanted} registered (known: {known})")
        return info

    def by_payload_type(self, payload_type: int) -> CodecInfo | None:
        """The codec with this RFC 3551 static payload type, if registered."""
        for info in self._infos.values():
            if info.static_payload_type == payload_type:
                return info
        return None

    def create(self, name: str, clock_rate: int | None = None) -> Codec:
        """Make a fresh codec instance by SDP name and clock rate."""
        return self.get(name, clock_rate).factory()

    def __iter__(self) -> Iterator[CodecInfo]:
        return iter(list(self._infos.values()))

    def __len__(self) -> int:
        return len(self._infos)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None


def default_registry(*, g722: bool = True, opus: bool = False) -> CodecRegistry:
    """A registry with the codecs this machine can run, in default preference order.

    Order: G.722 (wideband, cheap through libspandsp), PCMU, PCMA, then Opus
    when asked for (it costs far more CPU per frame; see docs/benchmarks.md).
    A codec whose native library is missing is left out rather than offered
    and failing mid-call; ask for it by constructing it directly to get the
    :class:`CodecUnavailableError` explaining what to install.
    """
    from . import codec_g711

    infos: list[CodecInfo] = []
    if g722:
        from . import codec_g722

        if codec_g722.available():
            infos.append(codec_g722.INFO)
    infos.extend((codec_g711.PCMU_INFO, codec_g711.PCMA_INFO))
    if opus:
        from . import codec_opus

        if codec_opus.available():
            infos.append(codec_opus.INFO)
    return CodecRegistry(infos)


def load_native(
    wrap: Callable[[ctypes.CDLL], _Lib],
    *,
    codec: str,
    soname: str,
    short_name: str,
    package: str,
    name: str | None = None,
) -> _Lib:
    """Load a codec's C library through ctypes and bind it with ``wrap``.

    ``name`` overrides the file (tests use it to check the error); otherwise
    ``soname`` is tried, then what ``ctypes.util.find_library(short_name)``
    finds. A missing library or symbol raises :class:`CodecUnavailableError`
    naming the Debian package to install.
    """
    import ctypes
    import sys

    first = name if name is not None else soname

    def candidates() -> Iterator[str]:
        yield first
        if name is None:
            # only when the usual soname fails: find_library runs ldconfig in a
            # subprocess, and ctypes.util imports subprocess and tempfile
            import ctypes.util

            found = ctypes.util.find_library(short_name)
            if found and found != first:
                yield found

    errors: list[str] = []
    for candidate in candidates():
        try:
            return wrap(ctypes.CDLL(candidate))
        except OSError as exc:
            errors.append(str(exc))
        except AttributeError as exc:
            errors.append(f"{candidate}: missing symbol ({exc})")
    hint = (
        f"install it (Debian / Raspberry Pi OS: 'apt install {package}')"
        if sys.platform.startswith("linux")
        else f"install {short_name}"
    )
    raise CodecUnavailableError(
        f"{codec} needs {first!r}, which cannot be loaded: {'; '.join(errors)}; {hint}"
    )
