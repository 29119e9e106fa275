"""RTP packets (RFC 3550 section 5.1): parse and serialize, nothing else.

This is the per-packet hot path of a call (50 packets a second each way on a
Pi Zero), so it is written for few allocations: one precompiled
:class:`struct.Struct` for the fixed header, a fast path for the common
header-only packet (``V=2, P=0, X=0, CC=0``), and :func:`build_rtp` for senders
that do not need a :class:`RtpPacket` object at all.

Header extensions (RFC 3550 5.3.1, RFC 8285) are skipped: nothing we negotiate
uses them, but a peer that adds one (some SBCs add RFC 6464 audio levels) must
still be heard. Padding is removed on parse and never added on serialize (it
exists for encryption block sizes, which SRTP does not need).
"""

from __future__ import annotations

import struct

from sipstack.errors import SipStackError
from sipstack.records import dataclass

__all__ = [
    "MAX_RTP_PACKET",
    "RTP_HEADER",
    "RTP_HEADER_SIZE",
    "RtpPacket",
    "RtpParseError",
    "build_rtp",
    "is_rtcp",
    "parse_rtp",
]

#: Largest datagram we accept as RTP: an Ethernet MTU with room to spare. Audio
#: packets are far smaller (G.711 20 ms = 172 bytes); anything bigger is not ours.
MAX_RTP_PACKET = 2048
#: The fixed header: V/P/X/CC, M/PT, sequence number, timestamp, SSRC.
RTP_HEADER_SIZE = 12

#: The fixed header as a precompiled :class:`struct.Struct` (shared by the receive path).
RTP_HEADER = struct.Struct("!BBHII")
_HEADER = RTP_HEADER
_EXT_HEADER = struct.Struct("!HH")
_CSRC = struct.Struct("!I")


class RtpParseError(SipStackError, ValueError):
    """A peer sent a datagram that is not a valid RTP or RTCP packet (the peer's fault).

    The receiver drops the datagram and goes on; nothing is answered.
    """


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 5.1); ``payload`` excludes header, extension and padding."""

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()

    def to_bytes(self) -> bytes:
        """Serialize; raises :class:`ValueError` on out-of-range fields (caller's bug)."""
        if len(self.csrcs) > 15:
            raise ValueError("RTP allows at most 15 CSRCs (RFC 3550 5.1 CC is 4 bits)")
        if not self.csrcs:
            return build_rtp(
                self.payload_type,
                self.sequence,
                self.timestamp,
                self.ssrc,
                self.payload,
                self.marker,
            )
        _check_fields(self.payload_type, self.sequence, self.timestamp, self.ssrc)
        head = _HEADER.pack(
            0x80 | len(self.csrcs),
            self.payload_type | (0x80 if self.marker else 0),
            self.sequence,
            self.timestamp,
            self.ssrc,
        )
        return head + b"".join(_CSRC.pack(c) for c in self.csrcs) + self.payload


def build_rtp(
    payload_type: int,
    sequence: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool = False,
) -> bytes:
    """The bytes of a plain RTP packet (no CSRC, extension or padding): the send path."""
    try:
        head = _HEADER.pack(0x80, payload_type | (0x80 if marker else 0), sequence, timestamp, ssrc)
    except struct.error:
        _check_fields(payload_type, sequence, timestamp, ssrc)
        raise
    if payload_type > 127 or payload_type < 0:
        raise ValueError(f"RTP payload type {payload_type} is not in 0..127")
    return head + payload


def _check_fields(payload_type: int, sequence: int, timestamp: int, ssrc: int) -> None:
    if not 0 <= payload_type <= 127:
        raise ValueError(f"RTP payload type {payload_type} is not in 0..127")
    if not 0 <= sequence <= 0xFFFF:
        raise ValueError(f"RTP sequence number {sequence} is not in 0..65535")
    if not 0 <= timestamp <= 0xFFFFFFFF:
        raise ValueError(f"RTP timestamp {timestamp} does not fit 32 bits")
    if not 0 <= ssrc <= 0xFFFFFFFF:
        raise ValueError(f"SSRC {ssrc} does not fit 32 bits")


def parse_rtp(data: bytes | bytearray | memoryview, max_size: int = MAX_RTP_PACKET) -> RtpPacket:
    """Parse one RTP datagram; raises :class:`RtpParseError` for anything malformed.

    Checks follow RFC 3550 A.1's header validity tests: version 2, the CSRC list
    and extension inside the datagram, a padding count that is non-zero and
    leaves at least the header.
    """
    size = len(data)
    if size < RTP_HEADER_SIZE:
        raise RtpParseError(f"RTP packet of {size} bytes is shorter than the 12-byte header")
    if size > max_size:
        raise RtpParseError(f"RTP packet of {size} bytes exceeds the {max_size}-byte limit")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 == 0x80:  # fast path: V=2, no padding, no extension, no CSRC
        return RtpPacket(b1 & 0x7F, seq, ts, ssrc, bytes(data[RTP_HEADER_SIZE:]), b1 >= 0x80)
    if b0 >> 6 != 2:
        raise RtpParseError(f"RTP version {b0 >> 6} is not 2")
    cc = b0 & 0x0F
    offset = RTP_HEADER_SIZE + 4 * cc
    if offset > size:
        raise RtpParseError(f"RTP CSRC count {cc} runs past the end of a {size}-byte packet")
    csrcs = tuple(_CSRC.unpack_from(data, RTP_HEADER_SIZE + 4 * i)[0] for i in range(cc))
    if b0 & 0x10:  # RFC 3550 5.3.1: 16-bit profile, 16-bit length in 32-bit words
        if offset + 4 > size:
            raise RtpParseError("RTP header extension runs past the end of the packet")
        _profile, words = _EXT_HEADER.unpack_from(data, offset)
        offset += 4 + 4 * words
        if offset > size:
            raise RtpParseError(f"RTP header extension of {words} words runs past the end")
    end = size
    if b0 & 0x20:  # RFC 3550 5.1: the last octet counts the padding, itself included
        pad = data[-1]
        if pad == 0 or end - pad < offset:
            raise RtpParseError(f"RTP padding count {pad} is invalid for a {size}-byte packet")
        end -= pad
    return RtpPacket(b1 & 0x7F, seq, ts, ssrc, bytes(data[offset:end]), b1 >= 0x80, csrcs)


def is_rtcp(data: bytes | bytearray | memoryview) -> bool:
    """True when a datagram on a shared port is RTCP, not RTP (RFC 5761 4).

    RTCP packet types 192-223 collide only with RTP payload types 64-95 with
    the marker set, which RFC 5761 tells us never to negotiate.
    """
    return len(data) >= 2 and 192 <= data[1] <= 223
