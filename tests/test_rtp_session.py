"""RTP send/receive state and RTCP timing (RFC 3550, RFC 4961 latching), fake clock."""

from __future__ import annotations

import math
import random

import pytest

from sipstack.rtcp import Bye, ReceiverReport, SenderReport, SourceDescription, parse_rtcp
from sipstack.rtp import RtpPacket, build_rtp, parse_rtp
from sipstack.rtp_session import (
    Address,
    ByeReceived,
    RtcpSourceLatched,
    RtpEvent,
    RtpReceiver,
    RtpSender,
    RtpSession,
    SourceLatched,
    SsrcChanged,
    rtcp_interval,
)

SDP_ADDR: Address = ("192.0.2.7", 4000)  # what the peer's SDP says (private, behind NAT)
NAT_ADDR: Address = ("198.51.100.1", 31000)  # where its packets really come from
EVIL: Address = ("203.0.113.66", 6666)


class FixedRng(random.Random):
    """Start values chosen by the test instead of drawn."""

    def __init__(self, seq: int, ts: int) -> None:
        super().__init__(0)
        self._seq = seq
        self._ts = ts

    def randrange(self, *args: object, **kwargs: object) -> int:
        return self._seq

    def getrandbits(self, k: int) -> int:
        return self._ts


def events(rx: RtpReceiver | RtpSession) -> list[RtpEvent]:
    out = []
    while (ev := rx.next_event()) is not None:
        out.append(ev)
    return out


# -- sender -------------------------------------------------------------------------


def test_sender_numbers_and_stamps_packets() -> None:
    tx = RtpSender(0xCAFE, 0, 8000, FixedRng(65534, 0xFFFFFF00))
    pkts = [parse_rtp(tx.send(b"\xff" * 160, 160, i * 0.02)) for i in range(3)]
    assert [p.sequence for p in pkts] == [65534, 65535, 0]  # wraps at 65535
    assert [p.timestamp for p in pkts] == [0xFFFFFF00, 0xFFFFFFA0, 0x40]  # and at 2^32
    assert [p.marker for p in pkts] == [True, False, False]  # first packet starts a talkspurt
    assert {p.ssrc for p in pkts} == {0xCAFE}
    assert (tx.packet_count, tx.octet_count) == (3, 480)


def test_timestamp_runs_through_silence_and_marks_the_next_talkspurt() -> None:
    tx = RtpSender(1, 8, 8000, FixedRng(10, 1000))
    tx.send(b"a", 160, 0.0)
    tx.skip(160)
    tx.skip(160)
    pkt = parse_rtp(tx.send(b"b", 160, 0.06))
    assert (pkt.sequence, pkt.timestamp, pkt.marker) == (11, 1000 + 3 * 160, True)
    pkt = parse_rtp(tx.send(b"c", 160, 0.08))
    assert (pkt.sequence, pkt.timestamp, pkt.marker) == (12, 1000 + 4 * 160, False)


def test_send_other_takes_a_sequence_number_not_time() -> None:
    tx = RtpSender(1, 0, 8000, FixedRng(10, 1000))
    tx.send(b"a", 160, 0.0)
    ev = parse_rtp(tx.send_other(101, b"\x05\x0a\x00\xa0", 1160, True, 0.02))
    assert (ev.payload_type, ev.sequence, ev.timestamp, ev.marker) == (101, 11, 1160, True)
    assert tx.timestamp == 1160 and tx.sequence == 12


def test_initial_values_come_from_the_rng() -> None:
    a = RtpSender(1, 0, 8000, random.Random(1))
    b = RtpSender(1, 0, 8000, random.Random(1))
    c = RtpSender(1, 0, 8000, random.Random(2))
    assert (a.sequence, a.timestamp) == (b.sequence, b.timestamp)
    assert (a.sequence, a.timestamp) != (c.sequence, c.timestamp)


def test_timestamp_at_extrapolates_from_the_last_packet() -> None:
    tx = RtpSender(1, 0, 8000, FixedRng(0, 5000))
    assert tx.timestamp_at(3.0) == 5000  # nothing sent yet
    tx.send(b"x", 160, 10.0)
    assert tx.timestamp_at(10.5) == 5000 + 4000


# -- receiver: validation and latching ---------------------------------------------


def rtp(seq: int, ssrc: int = 0x1111, pt: int = 0) -> bytes:
    return build_rtp(pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc, b"\xd5" * 160)


def test_source_at_the_sdp_address_is_valid_after_probation() -> None:
    rx = RtpReceiver(8000, remote_addr=SDP_ADDR)
    assert rx.receive(rtp(100), SDP_ADDR, 0.0) is None  # probation (RFC 3550 A.1)
    pkt = rx.receive(rtp(101), SDP_ADDR, 0.02)
    assert pkt is not None and pkt.sequence == 101
    assert events(rx) == [SsrcChanged(None, 0x1111), SourceLatched(SDP_ADDR, 0x1111)]
    assert rx.latched_addr == SDP_ADDR
    assert rx.receive(rtp(102), SDP_ADDR, 0.04) is not None
    assert rx.source is not None and rx.source.received == 2


def test_latching_to_a_nat_address_needs_n_packets() -> None:
    rx = RtpReceiver(8000, remote_addr=SDP_ADDR, latch_after=4)
    got = [rx.receive(rtp(s), NAT_ADDR, s * 0.02) for s in range(1, 6)]
    assert [p is not None for p in got] == [False, False, False, True, True]
    assert events(rx) == [SsrcChanged(None, 0x1111), SourceLatched(NAT_ADDR, 0x1111)]
    assert rx.rejected == 3


def test_out_of_sequence_packets_restart_the_count() -> None:
    rx = RtpReceiver(8000, latch_after=3)
    for seq in (1, 2, 7, 8):  # the jump restarts probation at 7
        assert rx.receive(rtp(seq), NAT_ADDR, 0.0) is None
    assert rx.receive(rtp(9), NAT_ADDR, 0.0) is not None


def test_a_stray_packet_cannot_hijack_the_stream() -> None:
    rx = RtpReceiver(8000, remote_addr=SDP_ADDR, latch_after=4)
    for s in range(2):
        rx.receive(rtp(s), SDP_ADDR, s * 0.02)
    events(rx)
    # a stranger with another SSRC, even in sequence, while our source is alive
    for s in range(10):
        assert rx.receive(rtp(500 + s, ssrc=0x6666), EVIL, 0.05 + s * 0.01) is None
    # a spoofer who knows our SSRC but sends fewer than N packets
    for s in range(3):
        assert rx.receive(rtp(2 + s), EVIL, 0.2) is None
    assert rx.receive(rtp(2), SDP_ADDR, 0.2) is not None  # the real peer goes on
    assert events(rx) == []
    assert rx.latched_addr == SDP_ADDR


def test_nat_rebinding_relatches_after_n_packets_and_keeps_statistics() -> None:
    rx = RtpReceiver(8000, remote_addr=SDP_ADDR, latch_after=4)
    for s in range(10):
        rx.receive(rtp(s), SDP_ADDR, s * 0.02)
    events(rx)
    moved = ("198.51.100.1", 31002)
    got = [rx.receive(rtp(s), moved, s * 0.02) for s in range(10, 14)]
    assert [p is not None for p in got] == [False, False, False, True]
    assert events(rx) == [SourceLatched(moved, 0x1111)]
    assert rx.source is not None and rx.source.extended_max == 13
    assert rx.source.received == 10  # 1..9 after probation, then 13; 10-12 were held back


def test_ssrc_change_from_the_latched_address() -> None:
    rx = RtpReceiver(8000, remote_addr=SDP_ADDR)
    for s in range(3):
        rx.receive(rtp(s), SDP_ADDR, 0.0)
    events(rx)
    assert rx.receive(rtp(900, ssrc=0x2222), SDP_ADDR, 0.1) is None
    assert rx.receive(rtp(901, ssrc=0x2222), SDP_ADDR, 0.12) is not None
    assert events(rx) == [SsrcChanged(0x1111, 0x2222)]
    assert rx.source is not None and rx.source.ssrc == 0x2222


def test_a_new_source_elsewhere_is_learned_once_the_old_one_is_silent() -> None:
    rx = RtpReceiver(8000, remote_addr=SDP_ADDR, latch_after=4, source_timeout=2.0)
    for s in range(3):
        rx.receive(rtp(s), SDP_ADDR, s * 0.02)
    events(rx)
    # 1.9 s after the last packet: still refused
    assert rx.receive(rtp(70, ssrc=0x3333), NAT_ADDR, 1.94) is None
    got = [rx.receive(rtp(70 + i, ssrc=0x3333), NAT_ADDR, 2.05 + i * 0.02) for i in range(4)]
    assert [p is not None for p in got] == [False, False, False, True]
    assert events(rx) == [SsrcChanged(0x1111, 0x3333), SourceLatched(NAT_ADDR, 0x3333)]


def test_malformed_and_bad_jumps_are_counted_not_played() -> None:
    rx = RtpReceiver(8000, remote_addr=SDP_ADDR)
    for s in range(3):
        rx.receive(rtp(s), SDP_ADDR, 0.0)
    assert rx.receive(b"\x00" * 20, SDP_ADDR, 0.0) is None
    assert rx.receive(rtp(20000), SDP_ADDR, 0.0) is None  # A.1: unconfirmed jump
    assert rx.receive(rtp(3), SDP_ADDR, 0.0) is not None
    assert (rx.malformed, rx.rejected) == (1, 2)


def test_reset_remote_forgets_the_latch() -> None:
    rx = RtpReceiver(8000, remote_addr=SDP_ADDR)
    for s in range(3):
        rx.receive(rtp(s), SDP_ADDR, 0.0)
    events(rx)
    new = ("192.0.2.99", 5000)
    rx.reset_remote(new)
    assert rx.latched_addr is None
    assert rx.receive(rtp(3), new, 0.1) is None
    assert rx.receive(rtp(4), new, 0.12) is not None
    assert events(rx) == [SourceLatched(new, 0x1111)]


# -- RTCP timing and a session pair --------------------------------------------------


def test_rtcp_interval_formula() -> None:
    # 2 members, we sent: senders (2) > members/4, so n = 2 and the full bandwidth.
    rng = random.Random(5)
    u = random.Random(5).random()
    t = rtcp_interval(2, 2, 500.0, True, 100.0, False, rng)
    assert t == pytest.approx(5.0 * (u + 0.5) / (math.e - 1.5))
    # a big conference on little bandwidth exceeds the 5 s minimum
    u = random.Random(6).random()
    t = rtcp_interval(1000, 1, 500.0, False, 100.0, False, random.Random(6))
    assert t == pytest.approx(100.0 * 999 / (500 * 0.75) * (u + 0.5) / (math.e - 1.5))
    # the first report may come after half the minimum
    u = random.Random(7).random()
    t = rtcp_interval(1, 0, 500.0, False, 100.0, True, random.Random(7))
    assert t == pytest.approx(2.5 * (u + 0.5) / (math.e - 1.5))


class Pair:
    """Two sessions wired back to back with a fixed one-way delay and a loss filter."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.now = 0.0
        self.a = RtpSession(
            RtpSender(0xA, 0, 8000, random.Random(1)),
            RtpReceiver(8000, remote_addr=("b", 1)),
            cname="a@test",
            rng=random.Random(11),
            now=0.0,
            ntp_offset=3_900_000_000.0,
        )
        self.b = RtpSession(
            RtpSender(0xB, 0, 8000, random.Random(2)),
            RtpReceiver(8000, remote_addr=("a", 1)),
            cname="b@test",
            rng=random.Random(12),
            now=0.0,
            ntp_offset=1_000.0,  # the two ends' clocks need not agree
        )
        # datagrams in flight: (arrival, to, kind, data)
        self.wire: list[tuple[float, str, str, bytes]] = []
        self.drop_a_seq: set[int] = set()

    def run(self, seconds: float, b_sends: bool = True) -> None:
        end = self.now + seconds
        while self.now < end:
            t = self.now
            pkt = self.a.send(b"\xff" * 160, 160, t)
            if parse_rtp(pkt).sequence not in self.drop_a_seq:
                self.wire.append((round(t + self.delay, 6), "b", "rtp", pkt))
            if b_sends:
                self.wire.append(
                    (round(t + self.delay, 6), "a", "rtp", self.b.send(b"\x7f" * 160, 160, t))
                )
            for name, s in (("a", self.a), ("b", self.b)):
                timer = s.get_timer()
                if timer is not None and timer <= t:
                    s.handle_timer(t)
                for data in s.rtcp_to_send():
                    self.wire.append(
                        (round(t + self.delay, 6), "b" if name == "a" else "a", "rtcp", data)
                    )
            for item in [w for w in self.wire if w[0] <= t]:
                self.wire.remove(item)
                _, to, kind, data = item
                dst = self.a if to == "a" else self.b
                src = ("b", 1) if to == "a" else ("a", 1)
                if kind == "rtp":
                    dst.receive_rtp(data, src, t)
                else:
                    dst.receive_rtcp(data, src, t)
            self.now = round(t + 0.02, 6)


def test_first_report_deadline_is_exact() -> None:
    rng_copy = random.Random(11)
    pair = Pair()
    # nothing sent or received yet: 1 member, avg size 128 -> the 2.5 s floor rules
    assert pair.a.get_timer() == pytest.approx(2.5 * (rng_copy.random() + 0.5) / (math.e - 1.5))


def test_session_pair_measures_rtt_loss_and_jitter() -> None:
    pair = Pair(delay=0.06)  # a multiple of the 20 ms step: delivered exactly on time
    pair.drop_a_seq = {(pair.a.sender.sequence + k) & 0xFFFF for k in (50, 51, 52, 300)}
    pair.run(30.0)
    a, b = pair.a.stats(), pair.b.stats()
    assert a.rtt == pytest.approx(0.12, abs=2 / 65536)  # 2 x 60 ms, unlike NTP clocks
    assert b.rtt == pytest.approx(0.12, abs=2 / 65536)
    assert b.cumulative_lost == 4  # b saw a's 4 losses...
    assert a.remote_cumulative_lost == 4  # ...and told a in its RR/SR
    assert a.cumulative_lost == 0 and b.remote_cumulative_lost == 0
    assert b.jitter == pytest.approx(0.0, abs=1e-6)  # constant delay: no jitter
    assert a.packets_sent == 1500 and b.packets_received == 1500 - 4 - 1 - 3  # probation, in flight
    assert a.octets_sent == 1500 * 160


def fire(s: RtpSession) -> tuple[float, bytes]:
    """Run the RTCP timer at its deadlines until a report goes out (6.3.6 may defer it)."""
    for _ in range(20):
        deadline = s.get_timer()
        assert deadline is not None
        s.handle_timer(deadline)
        out = s.rtcp_to_send()
        if out:
            assert len(out) == 1
            return deadline, out[0]
    raise AssertionError("no RTCP report after 20 deadlines")


def test_reports_are_sr_when_sending_rr_when_not() -> None:
    s = RtpSession(
        RtpSender(0xA, 0, 8000, random.Random(1)),
        RtpReceiver(8000),
        cname="x",
        rng=random.Random(3),
        now=0.0,
    )
    deadline, data = fire(s)
    rr, sdes = parse_rtcp(data)
    assert rr == ReceiverReport(0xA)
    assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == "x"
    s.send(b"z" * 160, 160, deadline)
    nxt = s.get_timer()
    assert nxt is not None
    assert 5.0 * 0.5 / (math.e - 1.5) <= nxt - deadline <= 5.0 * 1.5 / (math.e - 1.5)
    later, data = fire(s)
    assert later >= nxt
    sr = parse_rtcp(data)[0]
    assert isinstance(sr, SenderReport) and (sr.packet_count, sr.octet_count) == (1, 160)


def test_no_report_before_the_deadline() -> None:
    s = RtpSession(
        RtpSender(1, 0, 8000, random.Random(1)),
        RtpReceiver(8000),
        cname="x",
        rng=random.Random(3),
        now=100.0,
    )
    deadline = s.get_timer()
    assert deadline is not None
    s.handle_timer(deadline - 0.001)
    assert s.rtcp_to_send() == []
    assert s.get_timer() == deadline


def test_bye_ends_rtcp_and_is_reported_to_the_peer() -> None:
    pair = Pair()
    pair.run(1.0)
    events(pair.b)
    data = pair.a.bye(pair.now, "hangup")
    assert pair.a.get_timer() is None
    assert parse_rtcp(data)[-1] == Bye((0xA,), "hangup")
    pair.b.receive_rtcp(data, ("a", 1), pair.now)
    assert events(pair.b) == [RtcpSourceLatched(("a", 1)), ByeReceived(0xA, "hangup")]


def test_malformed_rtcp_is_counted() -> None:
    pair = Pair()
    pair.a.receive_rtcp(b"\x00\x01", ("b", 1), 0.0)
    assert pair.a.stats().malformed == 1


# -- the hot path: accept() must give receive()'s verdicts --------------------------


def _with_csrc(seq: int) -> bytes:
    """An RTP packet with a CSRC list: not the header-only fast path."""
    return RtpPacket(0, seq, seq * 160, 0x1111, b"\xd5" * 160, csrcs=(7,)).to_bytes()


def test_accept_gives_the_same_verdicts_and_statistics_as_receive() -> None:
    rng = random.Random(5)
    script: list[tuple[bytes, Address]] = []
    for seq in range(40):
        script.append((rtp(seq), SDP_ADDR))
    script += [
        (rtp(40, pt=101), SDP_ADDR),  # an event payload type: no jitter sample
        (rtp(41, ssrc=0x2222), SDP_ADDR),  # a stranger's SSRC
        (rtp(42), EVIL),  # our SSRC from another address
        (b"\x80\x00\x00", SDP_ADDR),  # truncated
        (rtp(20000), SDP_ADDR),  # A.1 bad jump
        (rtp(39), SDP_ADDR),  # duplicate
        (_with_csrc(43), SDP_ADDR),  # CSRC: the slow path
        (rtp(0xFFFF + 45), SDP_ADDR),  # far jump again
    ]
    script += [(rtp(seq), SDP_ADDR) for seq in range(44, 60)]
    slow = RtpReceiver(8000, remote_addr=SDP_ADDR, event_payload_types=frozenset({101}))
    fast = RtpReceiver(8000, remote_addr=SDP_ADDR, event_payload_types=frozenset({101}))
    now = 0.0
    for data, addr in script:
        now += 0.02 + rng.uniform(-0.005, 0.005)
        pkt = slow.receive(data, addr, now)
        got = fast.accept(data, addr, now)
        want = None if pkt is None else (pkt.payload_type, pkt.sequence, pkt.timestamp, pkt.payload)
        assert got == want
    assert events(slow) == events(fast)
    assert (slow.malformed, slow.rejected) == (fast.malformed, fast.rejected)
    assert slow.source is not None and fast.source is not None
    assert slow.source.received == fast.source.received > 40
    assert slow.source.cumulative_lost == fast.source.cumulative_lost
    assert slow.source.jitter == fast.source.jitter > 0
    assert slow.last_valid == fast.last_valid == now
    assert fast.has_events is False
