"""RTCP (RFC 3550 section 6): packets, compound parsing, and reception statistics.

Packets are frozen dataclasses with ``to_bytes()``; :func:`parse_rtcp` splits a
compound datagram (RFC 3550 6.1) into them and :func:`build_compound` joins them.
Packet types we do not use (APP, feedback, XR) come back as :class:`UnknownRtcp`
so one exotic packet in a compound does not lose the reports around it.

:class:`ReceptionStats` is the per-source receive bookkeeping of RFC 3550
appendix A: sequence validation with probation (A.1), expected/lost counts and
the fraction lost per interval (A.3), interarrival jitter (A.8), and the
LSR/DLSR pair that lets the sender measure round-trip time (6.4.1). It is pure
arithmetic, fed one packet at a time with the arrival time as an argument.
"""

from __future__ import annotations

import enum
import struct

from sipstack.records import dataclass
from sipstack.rtp import RtpParseError

__all__ = [
    "MAX_DROPOUT",
    "MAX_MISORDER",
    "MIN_SEQUENTIAL",
    "NTP_UNIX_OFFSET",
    "Bye",
    "ReceiverReport",
    "ReceptionStats",
    "ReportBlock",
    "RtcpPacket",
    "RtcpType",
    "SdesChunk",
    "SenderReport",
    "SeqStatus",
    "SourceDescription",
    "UnknownRtcp",
    "build_compound",
    "ntp_middle",
    "ntp_timestamp",
    "parse_rtcp",
    "rtt_from_block",
]

#: Seconds from the NTP epoch (1900) to the Unix epoch (1970).
NTP_UNIX_OFFSET = 2_208_988_800
# RFC 3550 A.1 constants.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2
_SEQ_MOD = 1 << 16

_COMMON = struct.Struct("!BBH")
_SSRC = struct.Struct("!I")
_SR_INFO = struct.Struct("!IQIII")  # sender SSRC, NTP timestamp, RTP timestamp, counts
_BLOCK = struct.Struct("!IIIIII")

_Buf = bytes | bytearray | memoryview

#: SDES item type of the canonical name (RFC 3550 6.5.1).
SDES_CNAME = 1


class RtcpType(enum.IntEnum):
    """RTCP packet types (RFC 3550 12.1)."""

    SR = 200
    RR = 201
    SDES = 202
    BYE = 203
    APP = 204


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 6.4.1) about source ``ssrc``.

    ``cumulative_lost`` is signed (duplicates can make it negative);
    ``lsr``/``dlsr`` are in NTP short format (1/65536 s), 0 when no SR was heard.
    """

    ssrc: int
    fraction_lost: int
    cumulative_lost: int
    highest_seq: int
    jitter: int
    lsr: int = 0
    dlsr: int = 0

    def pack(self) -> bytes:
        """The 24 bytes of the block."""
        # RFC 3550 6.4.1: cumulative loss is a signed 24-bit field; clamp, do not wrap.
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost)) & 0xFFFFFF
        return _BLOCK.pack(
            self.ssrc,
            (self.fraction_lost & 0xFF) << 24 | lost,
            self.highest_seq & 0xFFFFFFFF,
            min(self.jitter, 0xFFFFFFFF),
            self.lsr,
            self.dlsr,
        )


@dataclass(frozen=True, slots=True)
class SenderReport:
    """SR (RFC 3550 6.4.1): what ``ssrc`` sent, and its reception reports."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    def to_bytes(self) -> bytes:
        """Serialize as one RTCP packet."""
        _check_count(len(self.reports))
        body = _SR_INFO.pack(
            self.ssrc,
            self.ntp_timestamp,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        ) + b"".join(b.pack() for b in self.reports)
        return _packet(RtcpType.SR, len(self.reports), body)


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """RR (RFC 3550 6.4.2): reception reports from a participant that did not send."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()

    def to_bytes(self) -> bytes:
        """Serialize as one RTCP packet."""
        _check_count(len(self.reports))
        body = _SSRC.pack(self.ssrc) + b"".join(b.pack() for b in self.reports)
        return _packet(RtcpType.RR, len(self.reports), body)


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """The SDES items (type, value) of one source (RFC 3550 6.5)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        """The CNAME item (RFC 3550 6.5.1) decoded as UTF-8, if present."""
        for kind, value in self.items:
            if kind == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None

    def pack(self) -> bytes:
        """The chunk, null-terminated and padded to 32 bits."""
        out = bytearray(_SSRC.pack(self.ssrc))
        for kind, value in self.items:
            if not 1 <= kind <= 255 or len(value) > 255:
                raise ValueError(f"SDES item type {kind} or length {len(value)} out of range")
            out += bytes((kind, len(value))) + value
        out += b"\0" * (4 - len(out) % 4)  # RFC 3550 6.5: at least one null octet
        return bytes(out)


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """SDES (RFC 3550 6.5): one chunk per source."""

    chunks: tuple[SdesChunk, ...]

    @classmethod
    def cname(cls, ssrc: int, cname: str) -> SourceDescription:
        """The usual SDES: one chunk carrying our CNAME."""
        return cls((SdesChunk(ssrc, ((SDES_CNAME, cname.encode("utf-8")),)),))

    def to_bytes(self) -> bytes:
        """Serialize as one RTCP packet."""
        _check_count(len(self.chunks))
        return _packet(RtcpType.SDES, len(self.chunks), b"".join(c.pack() for c in self.chunks))


@dataclass(frozen=True, slots=True)
class Bye:
    """BYE (RFC 3550 6.6): the sources leave, optionally saying why."""

    ssrcs: tuple[int, ...]
    reason: str | None = None

    def to_bytes(self) -> bytes:
        """Serialize as one RTCP packet."""
        _check_count(len(self.ssrcs))
        body = bytearray(b"".join(_SSRC.pack(s) for s in self.ssrcs))
        if self.reason is not None:
            text = self.reason.encode("utf-8")[:255]
            body += bytes((len(text),)) + text
            body += b"\0" * (-len(body) % 4)
        return _packet(RtcpType.BYE, len(self.ssrcs), bytes(body))


@dataclass(frozen=True, slots=True)
class UnknownRtcp:
    """A packet of a type we do not interpret (APP, RTPFB, PSFB, XR...), kept raw."""

    packet_type: int
    count: int
    body: bytes

    def to_bytes(self) -> bytes:
        """Serialize as one RTCP packet."""
        return _packet(self.packet_type, self.count, self.body)


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | UnknownRtcp


def _check_count(count: int) -> None:
    if count > 31:
        raise ValueError(f"an RTCP packet holds at most 31 items, not {count} (5-bit count)")


def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    if len(body) % 4:
        raise ValueError("RTCP packet bodies are whole 32-bit words (RFC 3550 6.4.1)")
    return _COMMON.pack(0x80 | count, packet_type, len(body) // 4) + body


def build_compound(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """Join packets into one compound datagram (RFC 3550 6.1: SR/RR first, then SDES)."""
    return b"".join(p.to_bytes() for p in packets)


def parse_rtcp(data: bytes | bytearray | memoryview) -> list[RtcpPacket]:
    """Split and parse a compound RTCP datagram; :class:`RtpParseError` if malformed.

    RFC 3550 A.2 validity: version 2 everywhere and lengths that add up to the
    datagram. We do not insist that the first packet is an SR/RR, so that
    reduced-size RTCP (RFC 5506) from a peer is still understood.
    """
    packets: list[RtcpPacket] = []
    offset = 0
    size = len(data)
    if size < 4:
        raise RtpParseError(f"RTCP datagram of {size} bytes is shorter than a header")
    while offset < size:
        if offset + 4 > size:
            raise RtpParseError("RTCP compound packet ends with a partial header")
        b0, ptype, words = _COMMON.unpack_from(data, offset)
        if b0 >> 6 != 2:
            raise RtpParseError(f"RTCP version {b0 >> 6} is not 2")
        end = offset + 4 + 4 * words
        if end > size:
            raise RtpParseError(f"RTCP packet length {words} runs past the end of the datagram")
        body_end = end
        if b0 & 0x20:  # padding: the last octet counts it (RFC 3550 6.4.1)
            pad = data[end - 1]
            if pad == 0 or body_end - pad < offset + 4:
                raise RtpParseError(f"RTCP padding count {pad} is invalid")
            body_end -= pad
        packets.append(_parse_one(ptype, b0 & 0x1F, data, offset + 4, body_end))
        offset = end
    return packets


def _parse_one(ptype: int, count: int, data: _Buf, start: int, end: int) -> RtcpPacket:
    if ptype == RtcpType.SR:
        if start + _SR_INFO.size + 24 * count > end:
            raise RtpParseError(f"RTCP SR too short for {count} report blocks")
        ssrc, ntp, rtp_ts, pkts, octets = _SR_INFO.unpack_from(data, start)
        blocks = _parse_blocks(data, start + _SR_INFO.size, count)
        return SenderReport(ssrc, ntp, rtp_ts, pkts, octets, blocks)
    if ptype == RtcpType.RR:
        if start + 4 + 24 * count > end:
            raise RtpParseError(f"RTCP RR too short for {count} report blocks")
        return ReceiverReport(
            _SSRC.unpack_from(data, start)[0], _parse_blocks(data, start + 4, count)
        )
    if ptype == RtcpType.SDES:
        return _parse_sdes(data, start, end, count)
    if ptype == RtcpType.BYE:
        if start + 4 * count > end:
            raise RtpParseError(f"RTCP BYE too short for {count} sources")
        ssrcs = tuple(_SSRC.unpack_from(data, start + 4 * i)[0] for i in range(count))
        pos = start + 4 * count
        reason = None
        if pos < end:
            length = data[pos]
            if pos + 1 + length > end:
                raise RtpParseError("RTCP BYE reason runs past the end of the packet")
            reason = bytes(data[pos + 1 : pos + 1 + length]).decode("utf-8", "replace")
        return Bye(ssrcs, reason)
    return UnknownRtcp(ptype, count, bytes(data[start:end]))


def _parse_blocks(data: _Buf, pos: int, count: int) -> tuple[ReportBlock, ...]:
    blocks = []
    for _ in range(count):
        ssrc, loss, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, pos)
        lost = loss & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        blocks.append(ReportBlock(ssrc, loss >> 24, lost, highest, jitter, lsr, dlsr))
        pos += 24
    return tuple(blocks)


def _parse_sdes(data: _Buf, pos: int, end: int, count: int) -> SourceDescription:
    chunks = []
    for _ in range(count):
        if pos + 4 > end:
            raise RtpParseError("RTCP SDES chunk runs past the end of the packet")
        ssrc = _SSRC.unpack_from(data, pos)[0]
        pos += 4
        items = []
        while True:
            if pos >= end:
                raise RtpParseError("RTCP SDES chunk is not null-terminated")
            kind = data[pos]
            if kind == 0:
                pos += 1
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise RtpParseError("RTCP SDES item runs past the end of the packet")
            length = data[pos + 1]
            items.append((kind, bytes(data[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        pos += -pos % 4  # chunks start on 32-bit boundaries
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return SourceDescription(tuple(chunks))


# -- time ---------------------------------------------------------------------


def ntp_timestamp(seconds: float) -> int:
    """The 64-bit NTP timestamp (RFC 3550 4) of ``seconds`` since 1900."""
    whole = int(seconds)
    return (whole & 0xFFFFFFFF) << 32 | int((seconds - whole) * 4294967296.0) & 0xFFFFFFFF


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR format (RFC 3550 6.4.1)."""
    return (ntp >> 16) & 0xFFFFFFFF


def rtt_from_block(block: ReportBlock, arrival_ntp: int) -> float | None:
    """Round-trip time in seconds from a report about our SR (RFC 3550 6.4.1, figure 2).

    ``arrival_ntp`` is when the report arrived, on the clock our SRs are stamped
    with. ``None`` when the peer has not heard an SR yet (LSR 0) or the result is
    negative (a peer with a broken DLSR), which must not be averaged in.
    """
    if block.lsr == 0:
        return None
    rtt = (ntp_middle(arrival_ntp) - block.lsr - block.dlsr) & 0xFFFFFFFF
    if rtt & 0x80000000:
        return None
    return rtt / 65536.0


# -- reception statistics -------------------------------------------------------


class SeqStatus(enum.Enum):
    """What :meth:`ReceptionStats.update` made of a packet (RFC 3550 A.1)."""

    VALID = "valid"  #: in sequence, or a tolerated reorder/duplicate: deliver it
    PROBATION = "probation"  #: the source is not validated yet: hold or drop
    BAD = "bad"  #: a jump too large to trust (until confirmed by the next packet)
    RESTARTED = "restarted"  #: the jump was confirmed: the sender restarted its sequence


class ReceptionStats:
    """Receive state of one SSRC: RFC 3550 A.1 validation, A.3 loss, A.8 jitter.

    ``probation`` is how many sequential packets validate the source (A.1's
    MIN_SEQUENTIAL); 0 trusts it from the first packet. Arrival times are in
    seconds on the caller's clock; the jitter is kept in timestamp units.
    """

    __slots__ = (
        "ssrc",
        "clock_rate",
        "probation",
        "_min_sequential",
        "max_seq",
        "cycles",
        "base_seq",
        "bad_seq",
        "received",
        "octets",
        "_expected_prior",
        "_received_prior",
        "_jitter",
        "_last_arrival",
        "_last_ts",
        "_started",
        "last_sr_middle",
        "last_sr_arrival",
    )

    def __init__(self, ssrc: int, clock_rate: int, probation: int = MIN_SEQUENTIAL) -> None:
        if clock_rate <= 0:
            raise ValueError(f"clock rate {clock_rate} must be positive")
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.probation = probation
        self._min_sequential = probation
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = _SEQ_MOD + 1  # RFC 3550 A.1: "so seq == bad_seq is false"
        self.received = 0
        self.octets = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._jitter = 0.0
        self._last_arrival: float | None = None
        self._last_ts = 0
        self._started = False
        #: LSR of the last SR heard from this source, and when (our clock).
        self.last_sr_middle = 0
        self.last_sr_arrival: float | None = None

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = _SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self.octets = 0
        self._received_prior = 0
        self._expected_prior = 0

    def update(
        self, seq: int, timestamp: int, arrival: float, size: int = 0, jitter: bool = True
    ) -> SeqStatus:
        """Account for one packet; its verdict follows RFC 3550 A.1 ``update_seq``.

        ``size`` is the payload size for the octet count; ``jitter=False`` keeps
        packets whose timestamp is not a sampling instant (RFC 4733 events all
        carry their start time) out of the jitter estimate.
        """
        max_seq = self.max_seq
        if seq == max_seq + 1 and not self.probation and self._started:
            # The per-packet common case (the next packet of a validated source, no
            # wrap): A.1's in-order branch and _count() inlined, same arithmetic.
            self.max_seq = seq
            self.received += 1
            self.octets += size
            if jitter:
                last = self._last_arrival
                if last is not None:
                    dts = (timestamp - self._last_ts) & 0xFFFFFFFF
                    if dts & 0x80000000:
                        dts -= 1 << 32
                    d = (arrival - last) * self.clock_rate - dts
                    self._jitter += (abs(d) - self._jitter) / 16.0
                self._last_arrival = arrival
                self._last_ts = timestamp
            return SeqStatus.VALID
        if not self._started:
            self._started = True
            self._init_seq(seq)
            if self.probation:
                self.max_seq = (seq - 1) & 0xFFFF  # A.1: the first packet counts toward probation
            else:
                self._count(timestamp, arrival, size, jitter)
                return SeqStatus.VALID
        udelta = (seq - self.max_seq) & 0xFFFF
        status = SeqStatus.VALID
        if self.probation:
            # A.1: a new source is valid after MIN_SEQUENTIAL packets in sequence.
            if seq == (self.max_seq + 1) & 0xFFFF:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self._count(timestamp, arrival, size, jitter)
                    return SeqStatus.VALID
            else:
                self.probation = self._min_sequential - 1
                self.max_seq = seq
            return SeqStatus.PROBATION
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:  # in order with a permissible gap; wrapped
                self.cycles += _SEQ_MOD
            self.max_seq = seq
        elif udelta <= _SEQ_MOD - MAX_MISORDER:
            # A.1: a very large jump; believe it only if the next packet follows it.
            if seq != self.bad_seq:
                self.bad_seq = (seq + 1) & 0xFFFF
                return SeqStatus.BAD
            self._init_seq(seq)
            self._last_arrival = None
            status = SeqStatus.RESTARTED
        # else: a duplicate or reordered packet; counted, max_seq unchanged
        self._count(timestamp, arrival, size, jitter)
        return status

    def _count(self, timestamp: int, arrival: float, size: int, jitter: bool) -> None:
        self.received += 1
        self.octets += size
        if not jitter:
            return
        last = self._last_arrival
        if last is not None:
            # RFC 3550 A.8: D = (Rj - Ri) - (Sj - Si) in timestamp units; J += (|D| - J)/16.
            dts = (timestamp - self._last_ts) & 0xFFFFFFFF
            if dts & 0x80000000:
                dts -= 1 << 32
            d = (arrival - last) * self.clock_rate - dts
            self._jitter += (abs(d) - self._jitter) / 16.0
        self._last_arrival = arrival
        self._last_ts = timestamp

    @property
    def extended_max(self) -> int:
        """The extended highest sequence number received (RFC 3550 6.4.1)."""
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        """Packets expected so far (RFC 3550 A.3)."""
        return self.extended_max - self.base_seq + 1 if self.received else 0

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received; negative when duplicates arrived (RFC 3550 6.4.1)."""
        return self.expected - self.received

    @property
    def jitter(self) -> float:
        """Interarrival jitter in timestamp units (RFC 3550 A.8)."""
        return self._jitter

    def sender_report_received(self, ntp: int, arrival: float) -> None:
        """Remember an SR from this source, for LSR/DLSR in our next report."""
        self.last_sr_middle = ntp_middle(ntp)
        self.last_sr_arrival = arrival

    def report_block(self, now: float) -> ReportBlock:
        """A reception report as of ``now``; starts a new loss interval (RFC 3550 A.3)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        self._expected_prior = expected
        received_interval = self.received - self._received_prior
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            fraction = 0
        else:
            fraction = (lost_interval << 8) // expected_interval
        dlsr = 0
        if self.last_sr_arrival is not None:
            # RFC 3550 6.4.1: DLSR in units of 1/65536 s since that SR arrived.
            dlsr = max(0, min(0xFFFFFFFF, int((now - self.last_sr_arrival) * 65536)))
        return ReportBlock(
            self.ssrc,
            min(fraction, 255),
            self.cumulative_lost,
            self.extended_max & 0xFFFFFFFF,
            int(self._jitter),
            self.last_sr_middle,
            dlsr,
        )
