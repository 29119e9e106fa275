"""RTCP (RFC 3550 6, A.1, A.3, A.8): packets on the wire, compound parsing, statistics."""

from __future__ import annotations

import struct

import pytest

from sipstack.rtcp import (
    Bye,
    ReceiverReport,
    ReceptionStats,
    ReportBlock,
    RtcpPacket,
    SdesChunk,
    SenderReport,
    SeqStatus,
    SourceDescription,
    UnknownRtcp,
    build_compound,
    ntp_middle,
    ntp_timestamp,
    parse_rtcp,
    rtt_from_block,
)
from sipstack.rtp import RtpParseError

BLOCK = ReportBlock(0x11111111, 51, 2, 0x0001FFFF, 37, 0xAABBCCDD, 0x00018000)


def test_receiver_report_wire_layout() -> None:
    data = ReceiverReport(0x01020304, (BLOCK,)).to_bytes()
    assert data[:8] == bytes.fromhex("81 c9 0007 01020304")
    assert data[8:] == struct.pack(
        "!IIIIII", 0x11111111, 51 << 24 | 2, 0x1FFFF, 37, 0xAABBCCDD, 0x18000
    )
    assert parse_rtcp(data) == [ReceiverReport(0x01020304, (BLOCK,))]


def test_sender_report_wire_layout() -> None:
    sr = SenderReport(7, 0x0102030405060708, 160, 3, 480)
    data = sr.to_bytes()
    assert data == bytes.fromhex("80 c8 0006 00000007 0102030405060708 000000a0 00000003 000001e0")
    assert parse_rtcp(data) == [sr]


def test_sdes_cname_wire_layout_and_padding() -> None:
    data = SourceDescription.cname(5, "ab").to_bytes()
    # chunk: SSRC, CNAME item (1, 2, "ab"), null terminator padded to 32 bits
    assert data == bytes.fromhex("81ca0003 00000005 01026162 00000000")
    (sdes,) = parse_rtcp(data)
    assert isinstance(sdes, SourceDescription)
    assert sdes.chunks[0].cname == "ab"
    for name in ("", "a", "abc", "abcd", "x" * 255):
        (back,) = parse_rtcp(SourceDescription.cname(9, name).to_bytes())
        assert isinstance(back, SourceDescription)
        assert back.chunks[0].cname == name


def test_bye_with_and_without_reason() -> None:
    assert Bye((1, 2)).to_bytes() == bytes.fromhex("82 cb 0002 00000001 00000002")
    data = Bye((1,), "gone").to_bytes()
    assert data == bytes.fromhex("81 cb 0003 00000001 04") + b"gone" + b"\0\0\0"
    assert parse_rtcp(data) == [Bye((1,), "gone")]


def test_compound_round_trip_with_unknown_packet() -> None:
    packets: list[RtcpPacket] = [
        SenderReport(1, ntp_timestamp(3.5), 99, 10, 1600, (BLOCK, BLOCK)),
        SourceDescription(
            (SdesChunk(1, ((1, b"me@host"), (6, b"intercom"))), SdesChunk(2, ((1, b"b"),)))
        ),
        UnknownRtcp(204, 3, b"name" + b"data"),
        Bye((1,), "hangup"),
    ]
    data = build_compound(packets)
    assert parse_rtcp(data) == packets


def test_negative_and_huge_cumulative_loss() -> None:
    (rr,) = parse_rtcp(ReceiverReport(1, (ReportBlock(2, 0, -3, 0, 0),)).to_bytes())
    assert isinstance(rr, ReceiverReport)
    assert rr.reports[0].cumulative_lost == -3
    (rr,) = parse_rtcp(ReceiverReport(1, (ReportBlock(2, 0, 1 << 30, 0, 0),)).to_bytes())
    assert isinstance(rr, ReceiverReport)
    assert rr.reports[0].cumulative_lost == 0x7FFFFF  # clamped, RFC 3550 6.4.1


def test_padding_on_the_last_packet() -> None:
    data = bytearray(ReceiverReport(1).to_bytes() + b"\0\0\0\x04")
    data[0] |= 0x20
    data[3] += 1
    assert parse_rtcp(bytes(data)) == [ReceiverReport(1)]


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"\x81\xc9", "shorter"),
        (bytes.fromhex("41c90001 00000001"), "version"),
        (bytes.fromhex("81c90007 00000001"), "runs past"),
        (bytes.fromhex("81c90001 00000001"), "too short for 1"),
        (bytes.fromhex("80c80001 00000001"), "SR too short"),
        (bytes.fromhex("81ca0002 00000001 01056162"), "SDES item"),
        (bytes.fromhex("81ca0002 00000001 01026162"), "null"),
        (bytes.fromhex("82cb0001 00000001"), "BYE too short"),
        (bytes.fromhex("81cb0002 00000001 09616263"), "reason"),
        (bytes.fromhex("a1c90001 00000000"), "padding"),
        (bytes.fromhex("a0c90001 00000009"), "padding"),
        (ReceiverReport(1).to_bytes() + b"\x80\xc9", "partial"),
    ],
)
def test_malformed_rtcp(data: bytes, words: str) -> None:
    with pytest.raises(RtpParseError, match=words):
        parse_rtcp(data)


def test_every_misaligned_truncation_fails() -> None:
    first = SenderReport(1, 2, 3, 4, 5, (BLOCK,)).to_bytes()
    data = first + SourceDescription.cname(1, "host").to_bytes() + Bye((1,), "x").to_bytes()
    boundaries = {len(first), len(first) + len(SourceDescription.cname(1, "host").to_bytes())}
    for n in range(len(data)):
        if n in boundaries:
            assert parse_rtcp(data[:n])  # whole packets
            continue
        with pytest.raises(RtpParseError):
            parse_rtcp(data[:n])


def test_ntp_helpers() -> None:
    assert ntp_timestamp(1.5) == (1 << 32) | (1 << 31)
    assert ntp_timestamp(3_900_000_000.25) == (3_900_000_000 << 32) | (1 << 30)
    assert ntp_middle(0x1122334455667788) == 0x33445566


def test_rtt_from_lsr_and_dlsr() -> None:
    # RFC 3550 6.4.1 figure 2: we sent an SR at T, the peer held it 1.25 s, the
    # report comes back at T + 1.25 + 0.080: the round trip is 80 ms.
    t = 3_900_000_000.5
    block = ReportBlock(1, 0, 0, 0, 0, lsr=ntp_middle(ntp_timestamp(t)), dlsr=int(1.25 * 65536))
    rtt = rtt_from_block(block, ntp_timestamp(t + 1.25 + 0.080))
    assert rtt == pytest.approx(0.080, abs=2 / 65536)
    # no SR heard yet, or a DLSR that would make the RTT negative: no measurement
    assert rtt_from_block(ReportBlock(1, 0, 0, 0, 0), ntp_timestamp(t)) is None
    bad = ReportBlock(1, 0, 0, 0, 0, lsr=ntp_middle(ntp_timestamp(t)), dlsr=5 * 65536)
    assert rtt_from_block(bad, ntp_timestamp(t + 1)) is None


# -- reception statistics -----------------------------------------------------------


def feed(stats: ReceptionStats, seqs: list[int], start: float = 0.0) -> list[SeqStatus]:
    """Packets every 20 ms with timestamps in step: no jitter."""
    out = []
    for i, seq in enumerate(seqs):
        out.append(stats.update(seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, start + i * 0.02, 160))
    return out


def test_probation_needs_min_sequential_packets() -> None:
    stats = ReceptionStats(1, 8000)  # MIN_SEQUENTIAL = 2
    assert feed(stats, [100, 101, 102]) == [SeqStatus.PROBATION, SeqStatus.VALID, SeqStatus.VALID]
    assert stats.received == 2 and stats.expected == 2
    stats = ReceptionStats(1, 8000, probation=3)
    assert feed(stats, [5, 9, 10, 11]) == [
        SeqStatus.PROBATION,
        SeqStatus.PROBATION,
        SeqStatus.PROBATION,
        SeqStatus.VALID,
    ]


def test_loss_and_fraction_lost_by_hand() -> None:
    stats = ReceptionStats(7, 8000, probation=0)
    feed(stats, [s for s in range(10, 30) if s not in (13, 14, 20)])
    # 20 expected (10..29), 17 received: 3 lost; fraction = floor(3 * 256 / 20) = 38
    assert (stats.expected, stats.received, stats.cumulative_lost) == (20, 17, 3)
    block = stats.report_block(now=1.0)
    assert (block.ssrc, block.fraction_lost, block.cumulative_lost) == (7, 38, 3)
    assert block.highest_seq == 29
    # next interval: 10 expected, 10 received, no new loss
    feed(stats, list(range(30, 40)), start=1.0)
    block = stats.report_block(now=2.0)
    assert (block.fraction_lost, block.cumulative_lost) == (0, 3)
    # one lost of 4 in the next interval: 64
    feed(stats, [40, 41, 43], start=2.0)
    assert stats.report_block(now=3.0).fraction_lost == 64


def test_sequence_wrap_around() -> None:
    stats = ReceptionStats(1, 8000, probation=0)
    feed(stats, list(range(65530, 65536)) + list(range(65536, 65542)))
    assert stats.cycles == 65536
    assert stats.extended_max == 65536 + 5
    assert stats.report_block(1.0).highest_seq == 0x00010005
    assert stats.cumulative_lost == 0 and stats.expected == 12


def test_duplicates_make_loss_negative() -> None:
    stats = ReceptionStats(1, 8000, probation=0)
    feed(stats, [1, 2, 2, 3, 3, 4])
    assert stats.cumulative_lost == -2
    assert stats.report_block(1.0).fraction_lost == 0


def test_misordered_packets_do_not_move_the_maximum() -> None:
    stats = ReceptionStats(1, 8000, probation=0)
    assert feed(stats, [1, 3, 2, 4]) == [SeqStatus.VALID] * 4
    assert stats.extended_max == 4 and stats.cumulative_lost == 0


def test_big_jump_needs_confirmation() -> None:
    stats = ReceptionStats(1, 8000, probation=0)
    feed(stats, [1, 2, 3])
    assert stats.update(5000, 0, 1.0) is SeqStatus.BAD  # one stray packet: dropped
    assert stats.update(4, 0, 1.0) is SeqStatus.VALID
    assert stats.update(9000, 0, 1.0) is SeqStatus.BAD
    assert stats.update(9001, 0, 1.0) is SeqStatus.RESTARTED  # A.1: sender restarted
    assert (stats.expected, stats.received) == (1, 1)


def test_interarrival_jitter_by_hand() -> None:
    # RFC 3550 A.8: J += (|D| - J) / 16, D in timestamp units (8 kHz)
    stats = ReceptionStats(1, 8000, probation=0)
    stats.update(0, 0, 0.00)
    stats.update(1, 160, 0.02)  # D = 0
    assert stats.jitter == 0.0
    stats.update(2, 320, 0.06)  # 20 ms late: D = 160
    assert stats.jitter == pytest.approx(10.0)
    stats.update(3, 480, 0.06)  # back on time: D = -160
    assert stats.jitter == pytest.approx(10 + 150 / 16)
    stats.update(4, 640, 0.08)  # D = 0
    assert stats.jitter == pytest.approx((10 + 150 / 16) * 15 / 16)
    assert stats.report_block(1.0).jitter == int((10 + 150 / 16) * 15 / 16)


def test_jitter_across_timestamp_wrap_and_excluded_packets() -> None:
    stats = ReceptionStats(1, 8000, probation=0)
    stats.update(0, 0xFFFFFFF0, 0.0)
    stats.update(1, 0x90, 0.02)  # 160 samples later, across the 32-bit wrap
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)
    # an RFC 4733 event packet (timestamp of the event start) is kept out
    stats.update(2, 0, 5.0, jitter=False)
    stats.update(3, 0x90 + 160, 0.04)
    assert stats.jitter == pytest.approx(0.0, abs=1e-6)


def test_dlsr_counts_from_the_sr_arrival() -> None:
    stats = ReceptionStats(1, 8000, probation=0)
    feed(stats, [1, 2])
    stats.sender_report_received(0x0000_1234_5678_0000, arrival=10.0)
    block = stats.report_block(now=12.5)
    assert block.lsr == 0x12345678
    assert block.dlsr == int(2.5 * 65536)
