"""Send and receive state of one RTP stream and its RTCP (RFC 3550), sans-IO.

* :class:`RtpSender` numbers and stamps outgoing packets (RFC 3550 5.1): random
  initial sequence number and timestamp, one timestamp clock that keeps running
  through silence, and the marker bit on the first packet of a talkspurt
  (RFC 3551 4.1).
* :class:`RtpReceiver` decides which datagrams belong to the stream: source
  validation with probation (RFC 3550 A.1), SSRC changes, and symmetric-RTP
  latching (RFC 4961; "comedia" behind NAT): it tells the media glue the address
  the peer really sends from, so our packets go back through the peer's NAT
  binding. A new address (or a new SSRC from a new address) is believed only
  after ``latch_after`` packets in sequence, so a stray or spoofed packet cannot
  steal the stream.
* :class:`RtpSession` adds RTCP on top: SR/RR with SDES CNAME on the randomised
  interval of RFC 3550 6.3 (5 s minimum), round-trip time from LSR/DLSR, and BYE.

None of them reads the clock or touches a socket: ``now`` is an argument, the
glue sends what :meth:`RtpSession.rtcp_to_send` returns and asks
:meth:`RtpSession.get_timer` when to call :meth:`RtpSession.handle_timer`.
"""

from __future__ import annotations

import math
import random
from collections import deque
from typing import Any

from sipstack.records import dataclass
from sipstack.rtcp import (
    Bye,
    ReceiverReport,
    ReceptionStats,
    ReportBlock,
    RtcpPacket,
    SenderReport,
    SeqStatus,
    SourceDescription,
    build_compound,
    ntp_timestamp,
    parse_rtcp,
    rtt_from_block,
)
from sipstack.rtp import MAX_RTP_PACKET, RTP_HEADER, RtpPacket, RtpParseError, build_rtp, parse_rtp

__all__ = [
    "Address",
    "ByeReceived",
    "RtcpSourceLatched",
    "AcceptedRtp",
    "RtpEvent",
    "RtpReceiver",
    "RtpSender",
    "RtpSession",
    "RtpStreamStats",
    "SourceLatched",
    "SsrcChanged",
    "rtcp_interval",
]

#: A socket address as ``recvfrom`` returns it: ``(host, port)`` or IPv6's 4-tuple.
Address = tuple[Any, ...]

# RFC 3550 6.3.1 / A.7 constants.
RTCP_MIN_TIME = 5.0
RTCP_SENDER_BW_FRACTION = 0.25
RTCP_RCVR_BW_FRACTION = 0.75
RTCP_COMPENSATION = math.e - 1.5
#: IPv4 + UDP header octets, counted in the average RTCP size (RFC 3550 6.3.1).
_UDP_IP_OVERHEAD = 28


@dataclass(frozen=True, slots=True)
class SourceLatched:
    """Send our RTP to ``addr`` from now on: the peer's media comes from there (RFC 4961)."""

    addr: Address
    ssrc: int


@dataclass(frozen=True, slots=True)
class RtcpSourceLatched:
    """Send our RTCP to ``addr``: the validated source's RTCP comes from there."""

    addr: Address


@dataclass(frozen=True, slots=True)
class SsrcChanged:
    """The peer's stream now has SSRC ``new`` (``old`` is None for the first source).

    The glue resets the jitter buffer and the decoder: sequence numbers and
    timestamps of the new source are unrelated to the old ones.
    """

    old: int | None
    new: int


@dataclass(frozen=True, slots=True)
class ByeReceived:
    """The peer's source left (RFC 3550 6.6)."""

    ssrc: int
    reason: str | None


RtpEvent = SourceLatched | RtcpSourceLatched | SsrcChanged | ByeReceived

#: What :meth:`RtpReceiver.accept` returns for a packet to play:
#: ``(payload_type, sequence, timestamp, payload)``. A plain tuple, because the
#: receive path runs 50 times a second per call and a tuple costs a tenth of
#: building an :class:`~sipstack.rtp.RtpPacket`.
AcceptedRtp = tuple[int, int, int, bytes]


@dataclass(frozen=True, slots=True)
class RtpStreamStats:
    """A snapshot of one stream's counters, for call info and logs.

    ``jitter`` values are in seconds; ``remote_*`` is what the peer reported
    about our stream in its last RTCP report (None until one came).
    """

    packets_sent: int
    octets_sent: int
    packets_received: int
    octets_received: int
    cumulative_lost: int
    expected: int
    jitter: float
    rtt: float | None
    remote_fraction_lost: int | None
    remote_cumulative_lost: int | None
    remote_jitter: float | None
    malformed: int
    rejected: int


class RtpSender:
    """Numbers and stamps our packets of one stream (RFC 3550 5.1).

    The sequence number and timestamp start at random values from ``rng``
    (RFC 3550 5.1: makes known-plaintext attacks on encryption harder). The
    timestamp is a sampling clock: :meth:`send` and :meth:`skip` both advance it
    by the frame's samples, so it stays continuous through silence.
    """

    __slots__ = (
        "ssrc",
        "payload_type",
        "clock_rate",
        "sequence",
        "timestamp",
        "packet_count",
        "octet_count",
        "_talkspurt",
        "_last_ts",
        "_last_now",
    )

    def __init__(self, ssrc: int, payload_type: int, clock_rate: int, rng: random.Random) -> None:
        if not 0 <= ssrc <= 0xFFFFFFFF or not 0 <= payload_type <= 127 or clock_rate <= 0:
            raise ValueError("SSRC, payload type or clock rate out of range")
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.clock_rate = clock_rate
        #: Sequence number of the next packet.
        self.sequence = rng.randrange(1 << 16)
        #: RTP timestamp of the next frame's first sample.
        self.timestamp = rng.getrandbits(32)
        self.packet_count = 0
        self.octet_count = 0
        self._talkspurt = True  # the first packet starts a talkspurt
        self._last_ts = self.timestamp
        self._last_now: float | None = None

    def send(self, payload: bytes, samples: int, now: float) -> bytes:
        """The next media packet, carrying ``samples`` samples; advances seq and timestamp.

        RFC 3551 4.1: the marker bit is set on the first packet after silence.
        """
        seq = self.sequence
        ts = self.timestamp
        # the fields are ours and in range (checked at construction, kept masked)
        data = RTP_HEADER.pack(
            0x80, self.payload_type | (0x80 if self._talkspurt else 0), seq, ts, self.ssrc
        )
        self._talkspurt = False
        self.sequence = (seq + 1) & 0xFFFF
        self.timestamp = (ts + samples) & 0xFFFFFFFF
        # _account(), inlined: this runs for every packet we send
        self.packet_count += 1
        self.octet_count += len(payload)  # RFC 3550 6.4.1: payload octets only
        self._last_ts = ts
        self._last_now = now
        return data + payload

    def skip(self, samples: int) -> None:
        """A frame of silence not sent (DTX, hold, or the slot an event packet took)."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self._talkspurt = True

    def send_other(
        self, payload_type: int, payload: bytes, timestamp: int, marker: bool, now: float
    ) -> bytes:
        """A packet of another payload type in the same stream (RFC 4733 events).

        It takes the next sequence number but leaves the media clock alone: the
        caller gives the event's own timestamp and calls :meth:`skip` for the
        frame slot it occupies.
        """
        seq = self.sequence
        data = build_rtp(payload_type, seq, timestamp, self.ssrc, payload, marker)
        self.sequence = (seq + 1) & 0xFFFF
        self._account(len(payload), None, now)
        return data

    def _account(self, size: int, ts: int | None, now: float) -> None:
        self.packet_count += 1
        self.octet_count += size  # RFC 3550 6.4.1: payload octets only
        if ts is not None:
            self._last_ts = ts
            self._last_now = now

    def timestamp_at(self, now: float) -> int:
        """The RTP timestamp that corresponds to ``now`` (for an SR, RFC 3550 6.4.1)."""
        if self._last_now is None:
            return self.timestamp
        elapsed = round((now - self._last_now) * self.clock_rate)
        return (self._last_ts + elapsed) & 0xFFFFFFFF


class RtpReceiver:
    """Chooses which datagrams belong to the peer's stream, and from where it comes.

    ``remote_addr`` is the address the SDP gave; a source sending from it is
    validated after ``min_sequential`` packets in sequence (RFC 3550 A.1). A
    source at any other address (NAT in between) needs ``latch_after`` packets
    in sequence from that one address with one SSRC before we latch to it; a
    new SSRC at a new address is even then considered only once the current
    source has been silent for ``source_timeout`` seconds. Packets of a source
    not (yet) accepted are dropped, not played.
    """

    def __init__(
        self,
        clock_rate: int,
        *,
        remote_addr: Address | None = None,
        min_sequential: int = 2,
        latch_after: int = 4,
        source_timeout: float = 2.0,
        event_payload_types: frozenset[int] = frozenset(),
    ) -> None:
        if min_sequential < 1 or latch_after < 1:
            raise ValueError("min_sequential and latch_after must be at least 1")
        self.clock_rate = clock_rate
        self.min_sequential = min_sequential
        self.latch_after = latch_after
        self.source_timeout = source_timeout
        self.event_payload_types = event_payload_types
        self._remote_addr = remote_addr
        self._addr: Address | None = None
        self._source: ReceptionStats | None = None
        self._last_valid = -math.inf
        self._candidate: ReceptionStats | None = None
        self._candidate_addr: Address | None = None
        self._events: deque[RtpEvent] = deque()
        #: Datagrams that were not RTP at all.
        self.malformed = 0
        #: Valid RTP not accepted: unvalidated sources, strangers, bad sequence jumps.
        self.rejected = 0

    @property
    def latched_addr(self) -> Address | None:
        """Where the accepted source sends from (None until one is accepted)."""
        return self._addr

    @property
    def last_valid(self) -> float:
        """When the last packet of the accepted source was accepted (-inf: never)."""
        return self._last_valid

    @property
    def source(self) -> ReceptionStats | None:
        """Statistics of the accepted source, or None."""
        return self._source

    def reset_remote(self, remote_addr: Address | None) -> None:
        """The SDP moved the peer's media (re-INVITE): forget the latch, keep counting."""
        self._remote_addr = remote_addr
        self._addr = None
        self._candidate = None
        self._last_valid = -math.inf

    @property
    def has_events(self) -> bool:
        """True when :meth:`next_event` has something (a cheap check per tick)."""
        return bool(self._events)

    def next_event(self) -> RtpEvent | None:
        """The oldest undelivered event, or None."""
        return self._events.popleft() if self._events else None

    def push_event(self, event: RtpEvent) -> None:
        """Queue an event found outside RTP (RTCP BYE/latching by :class:`RtpSession`)."""
        self._events.append(event)

    def accept(self, data: bytes, addr: Address, now: float) -> AcceptedRtp | None:
        """:meth:`receive` for the media hot path: the same verdict, as a plain tuple.

        The common packet (a header-only RTP packet of the accepted source from
        its latched address) is checked straight from the header bytes; every
        other datagram takes the full path of :meth:`receive`.
        """
        source = self._source
        if (
            source is not None
            and len(data) > 12  # RTP_HEADER_SIZE, and a non-empty payload
            and data[0] == 0x80  # RFC 3550 5.1: V=2, no padding, extension or CSRC
            and addr == self._addr
        ):
            _b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
            if ssrc == source.ssrc and len(data) <= MAX_RTP_PACKET:
                pt = b1 & 0x7F
                size = len(data) - 12
                jitter = pt not in self.event_payload_types
                if source.update(seq, ts, now, size, jitter) is SeqStatus.BAD:
                    self.rejected += 1
                    return None
                self._last_valid = now
                return pt, seq, ts, data[12:]
        pkt = self.receive(data, addr, now)
        if pkt is None:
            return None
        return pkt.payload_type, pkt.sequence, pkt.timestamp, pkt.payload

    def receive(self, data: bytes, addr: Address, now: float) -> RtpPacket | None:
        """Account for one datagram; returns the packet when it should be played."""
        try:
            pkt = parse_rtp(data)
        except RtpParseError:
            self.malformed += 1
            return None
        jitter = pkt.payload_type not in self.event_payload_types
        source = self._source
        if source is not None and pkt.ssrc == source.ssrc and addr == self._addr:
            status = source.update(pkt.sequence, pkt.timestamp, now, len(pkt.payload), jitter)
            if status is SeqStatus.BAD:
                self.rejected += 1
                return None
            self._last_valid = now
            return pkt
        return self._receive_candidate(pkt, addr, now, jitter)

    def _receive_candidate(
        self, pkt: RtpPacket, addr: Address, now: float, jitter: bool
    ) -> RtpPacket | None:
        source = self._source
        if (
            source is not None
            and pkt.ssrc != source.ssrc
            and addr != self._addr
            and now - self._last_valid < self.source_timeout
        ):
            self.rejected += 1  # a stranger while our source is alive
            return None
        known_addr = self._addr if self._addr is not None else self._remote_addr
        needed = self.min_sequential if addr == known_addr else self.latch_after
        cand = self._candidate
        if cand is None or cand.ssrc != pkt.ssrc or self._candidate_addr != addr:
            cand = ReceptionStats(pkt.ssrc, self.clock_rate, probation=needed)
            self._candidate = cand
            self._candidate_addr = addr
        size = len(pkt.payload)
        if cand.update(pkt.sequence, pkt.timestamp, now, size, jitter) is not SeqStatus.VALID:
            self.rejected += 1
            return None
        self._candidate = None
        if source is not None and source.ssrc == pkt.ssrc:
            # Same source, new address (NAT rebinding): keep its statistics.
            source.update(pkt.sequence, pkt.timestamp, now, size, jitter)
        else:
            self._source = cand
            self._events.append(SsrcChanged(source.ssrc if source else None, pkt.ssrc))
        if addr != self._addr:
            self._addr = addr
            self._events.append(SourceLatched(addr, pkt.ssrc))
        self._last_valid = now
        return pkt


def rtcp_interval(
    members: int,
    senders: int,
    rtcp_bw: float,
    we_sent: bool,
    avg_rtcp_size: float,
    initial: bool,
    rng: random.Random,
    min_time: float = RTCP_MIN_TIME,
) -> float:
    """The randomised RTCP report interval of RFC 3550 6.3.1 (code in A.7).

    ``rtcp_bw`` is in octets per second (5 % of the session bandwidth).
    """
    if initial:
        min_time /= 2  # 6.2: the first report may go out after half the minimum
    n = members
    if senders <= members * RTCP_SENDER_BW_FRACTION:
        # 6.2: senders share a quarter of the RTCP bandwidth when they are few
        if we_sent:
            rtcp_bw *= RTCP_SENDER_BW_FRACTION
            n = senders
        else:
            rtcp_bw *= RTCP_RCVR_BW_FRACTION
            n -= senders
    t = avg_rtcp_size * max(n, 1) / rtcp_bw if rtcp_bw > 0 else min_time
    t = max(t, min_time)
    # 6.3.1: spread over [0.5, 1.5] x T against synchronisation, then compensate
    # for timer reconsideration converging below the mean.
    return t * (rng.random() + 0.5) / RTCP_COMPENSATION


class RtpSession:
    """One RTP stream both ways with its RTCP: the media glue's sans-IO partner.

    ``ntp_offset`` maps the loop clock to NTP time (seconds since 1900) for SR
    timestamps: the glue passes ``time.time() - loop.time() + NTP_UNIX_OFFSET``.
    Round-trip times only need it to be constant. ``bandwidth`` is the session
    bandwidth in bits/s (RFC 3550 6.2: RTCP gets 5 % of it).
    """

    def __init__(
        self,
        sender: RtpSender,
        receiver: RtpReceiver,
        *,
        cname: str,
        rng: random.Random,
        now: float,
        ntp_offset: float = 0.0,
        bandwidth: float = 80_000.0,
        min_interval: float = RTCP_MIN_TIME,
    ) -> None:
        self.sender = sender
        self.receiver = receiver
        self.cname = cname
        self._rng = rng
        self._ntp_offset = ntp_offset
        self._rtcp_bw = bandwidth * 0.05 / 8
        self._min_interval = min_interval
        self._avg_rtcp_size = 128.0  # A.7 initial guess; refined by every packet
        self._out: list[bytes] = []
        self._rtcp_addr: Address | None = None
        self._sent_at_last_report = 0
        self._received_at_last_report = 0
        self._bye_at = -math.inf  # when the peer's RTCP BYE came (RFC 3550 6.6)
        self.rtt: float | None = None
        self.remote_report: ReportBlock | None = None
        self.rtcp_malformed = 0
        self._initial = True  # no report sent yet (RFC 3550 6.2: half the minimum)
        self._tp = now
        self._tn: float | None = now + self._interval()

    # -- RTP -------------------------------------------------------------------

    def send(self, payload: bytes, samples: int, now: float) -> bytes:
        """Our next media packet (see :meth:`RtpSender.send`)."""
        return self.sender.send(payload, samples, now)

    def receive_rtp(self, data: bytes, addr: Address, now: float) -> RtpPacket | None:
        """A datagram from the RTP socket (see :meth:`RtpReceiver.receive`)."""
        return self.receiver.receive(data, addr, now)

    def accept_rtp(self, data: bytes, addr: Address, now: float) -> AcceptedRtp | None:
        """:meth:`receive_rtp` without building a packet object (see :meth:`RtpReceiver.accept`)."""
        return self.receiver.accept(data, addr, now)

    def next_event(self) -> RtpEvent | None:
        """The oldest undelivered event of the stream."""
        return self.receiver.next_event()

    # -- RTCP ------------------------------------------------------------------

    def receive_rtcp(self, data: bytes, addr: Address, now: float) -> None:
        """A datagram from the RTCP socket: SR timing, reports about us, BYE."""
        try:
            packets = parse_rtcp(data)
        except RtpParseError:
            self.rtcp_malformed += 1
            return
        self._avg_rtcp_size += (len(data) + _UDP_IP_OVERHEAD - self._avg_rtcp_size) / 16
        source = self.receiver.source
        ours = self.sender.ssrc
        for pkt in packets:
            if isinstance(pkt, SenderReport | ReceiverReport):
                if source is not None and pkt.ssrc == source.ssrc:
                    self._latch_rtcp(addr)
                    if isinstance(pkt, SenderReport):
                        source.sender_report_received(pkt.ntp_timestamp, now)
                for block in pkt.reports:
                    if block.ssrc == ours:
                        self.remote_report = block
                        rtt = rtt_from_block(block, ntp_timestamp(now + self._ntp_offset))
                        if rtt is not None:
                            self.rtt = rtt
            elif isinstance(pkt, Bye) and source is not None and source.ssrc in pkt.ssrcs:
                self._bye_at = now
                self.receiver.push_event(ByeReceived(source.ssrc, pkt.reason))

    def _latch_rtcp(self, addr: Address) -> None:
        if addr != self._rtcp_addr:
            self._rtcp_addr = addr
            self.receiver.push_event(RtcpSourceLatched(addr))

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` wants to run next (None after BYE)."""
        return self._tn

    def handle_timer(self, now: float) -> None:
        """Send a report if it is due, with timer reconsideration (RFC 3550 6.3.6)."""
        if self._tn is None or now < self._tn:
            return
        t = self._interval()
        if self._tp + t > now:
            self._tn = self._tp + t  # 6.3.6: reconsidered; not yet
            return
        self._queue(self._report(now))
        self._initial = False
        self._tp = now
        self._tn = now + self._interval()

    def rtcp_to_send(self) -> list[bytes]:
        """Drain the compound RTCP datagrams to send (to the latched RTCP address)."""
        out, self._out = self._out, []
        return out

    def bye(self, now: float, reason: str | None = None) -> bytes:
        """The final compound packet (report, SDES, BYE); stops the RTCP timer."""
        self._tn = None
        packets = self._report(now)
        packets.append(Bye((self.sender.ssrc,), reason))
        return build_compound(packets)

    def _queue(self, packets: list[RtcpPacket]) -> None:
        data = build_compound(packets)
        self._avg_rtcp_size += (len(data) + _UDP_IP_OVERHEAD - self._avg_rtcp_size) / 16
        self._out.append(data)

    def _report(self, now: float) -> list[RtcpPacket]:
        blocks: tuple[ReportBlock, ...] = ()
        source = self.receiver.source
        if source is not None and source.received != self._received_at_last_report:
            self._received_at_last_report = source.received
            blocks = (source.report_block(now),)
        sender = self.sender
        report: RtcpPacket
        if sender.packet_count != self._sent_at_last_report:  # RFC 3550 6.4: SR if we sent
            self._sent_at_last_report = sender.packet_count
            report = SenderReport(
                sender.ssrc,
                ntp_timestamp(now + self._ntp_offset),
                sender.timestamp_at(now),
                sender.packet_count,
                sender.octet_count,
                blocks,
            )
        else:
            report = ReceiverReport(sender.ssrc, blocks)
        return [report, SourceDescription.cname(sender.ssrc, self.cname)]

    def _interval(self) -> float:
        we_sent = self.sender.packet_count != self._sent_at_last_report
        members = 2 if self.receiver.source is not None else 1
        # the peer is a sender when it sent media since its last BYE (if any)
        peer_sending = self.receiver.last_valid > self._bye_at
        senders = int(we_sent) + int(peer_sending)
        return rtcp_interval(
            members,
            senders,
            self._rtcp_bw,
            we_sent,
            self._avg_rtcp_size,
            self._initial,
            self._rng,
            self._min_interval,
        )

    def stats(self) -> RtpStreamStats:
        """A snapshot of both directions' counters."""
        source = self.receiver.source
        rate = self.receiver.clock_rate
        remote = self.remote_report
        return RtpStreamStats(
            packets_sent=self.sender.packet_count,
            octets_sent=self.sender.octet_count,
            packets_received=source.received if source else 0,
            octets_received=source.octets if source else 0,
            cumulative_lost=source.cumulative_lost if source else 0,
            expected=source.expected if source else 0,
            jitter=source.jitter / rate if source else 0.0,
            rtt=self.rtt,
            remote_fraction_lost=remote.fraction_lost if remote else None,
            remote_cumulative_lost=remote.cumulative_lost if remote else None,
            remote_jitter=remote.jitter / self.sender.clock_rate if remote else None,
            malformed=self.receiver.malformed + self.rtcp_malformed,
            rejected=self.receiver.rejected,
        )
