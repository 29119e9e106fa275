"""RTP packet parse/serialize (RFC 3550 5.1): round trips, wire layout, malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipstack.rtp import MAX_RTP_PACKET, RtpPacket, RtpParseError, build_rtp, is_rtcp, parse_rtp


def test_wire_layout_of_a_plain_packet() -> None:
    data = build_rtp(0, 0x1234, 0xDEADBEEF, 0x01020304, b"\xff" * 160, marker=True)
    assert data[:12] == bytes.fromhex("80 80 1234 deadbeef 01020304")
    assert data[12:] == b"\xff" * 160
    pkt = parse_rtp(data)
    assert pkt == RtpPacket(0, 0x1234, 0xDEADBEEF, 0x01020304, b"\xff" * 160, True)


def test_marker_clear_and_payload_type() -> None:
    pkt = parse_rtp(build_rtp(101, 7, 8, 9, b"\x01\x02\x03\x04"))
    assert (pkt.payload_type, pkt.marker, pkt.sequence, pkt.timestamp, pkt.ssrc) == (
        101,
        False,
        7,
        8,
        9,
    )


def test_csrc_round_trip() -> None:
    pkt = RtpPacket(8, 65535, 0xFFFFFFFF, 1, b"abc", True, (10, 20, 0xFFFFFFFF))
    data = pkt.to_bytes()
    assert data[0] == 0x83
    assert struct.unpack("!III", data[12:24]) == (10, 20, 0xFFFFFFFF)
    assert parse_rtp(data) == pkt


def test_extension_is_skipped() -> None:
    head = bytes.fromhex("90 00 0001 00000002 00000003")  # X bit set
    ext = struct.pack("!HH", 0xBEDE, 2) + b"\x10\xaa\x00\x00" + b"\x00" * 4
    pkt = parse_rtp(head + ext + b"payload")
    assert pkt.payload == b"payload"
    assert pkt.sequence == 1


def test_padding_is_removed() -> None:
    data = bytes.fromhex("a0 00 0001 00000002 00000003") + b"xyz" + b"\0\0\0\x04"
    assert parse_rtp(data).payload == b"xyz"
    # padding may eat the whole payload
    data = bytes.fromhex("a0 00 0001 00000002 00000003") + b"\0\0\x03"
    assert parse_rtp(data).payload == b""


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "shorter"),
        (b"\x80\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00", "shorter"),
        (bytes.fromhex("40 00 0001 00000002 00000003") + b"x", "version"),
        (bytes.fromhex("00 00 0001 00000002 00000003"), "version"),
        (bytes.fromhex("c0 00 0001 00000002 00000003"), "version"),
        (bytes.fromhex("82 00 0001 00000002 00000003") + b"\0\0\0\1", "CSRC"),
        (bytes.fromhex("8f 00 0001 00000002 00000003") + b"\0" * 56, "CSRC"),
        (bytes.fromhex("a0 00 0001 00000002 00000003") + b"ab\x04", "padding"),
        (bytes.fromhex("a0 00 0001 00000002 00000003") + b"ab\x00", "padding"),
        (bytes.fromhex("a0 00 0001 00000002 00000003") + b"\x0d", "padding"),
        (bytes.fromhex("90 00 0001 00000002 00000003") + b"\xbe\xde", "extension"),
        (bytes.fromhex("90 00 0001 00000002 00000003") + b"\xbe\xde\x00\x02\0\0\0\0", "extension"),
    ],
)
def test_malformed_packets_are_the_peers_fault(data: bytes, words: str) -> None:
    with pytest.raises(RtpParseError, match=words):
        parse_rtp(data)


def test_every_truncation_of_the_header_fails() -> None:
    data = RtpPacket(0, 1, 2, 3, b"", False, (4, 5)).to_bytes()
    for n in range(len(data)):
        with pytest.raises(RtpParseError):
            parse_rtp(data[:n])


def test_size_limit() -> None:
    data = build_rtp(0, 1, 2, 3, b"\0" * (MAX_RTP_PACKET - 12))
    assert len(parse_rtp(data).payload) == MAX_RTP_PACKET - 12
    with pytest.raises(RtpParseError, match="limit"):
        parse_rtp(data + b"\0")


def test_parse_accepts_memoryview_and_bytearray() -> None:
    data = build_rtp(0, 1, 2, 3, b"abc")
    assert parse_rtp(bytearray(data)).payload == b"abc"
    assert parse_rtp(memoryview(data)).payload == b"abc"


@pytest.mark.parametrize(
    "fields",
    [(128, 0, 0, 0), (-1, 0, 0, 0), (0, 65536, 0, 0), (0, 0, 1 << 32, 0), (0, 0, 0, -1)],
)
def test_out_of_range_fields_are_the_callers_fault(fields: tuple[int, int, int, int]) -> None:
    pt, seq, ts, ssrc = fields
    with pytest.raises(ValueError):
        build_rtp(pt, seq, ts, ssrc, b"")
    with pytest.raises(ValueError):
        RtpPacket(pt, seq, ts, ssrc, b"", False, (1,)).to_bytes()


def test_too_many_csrcs() -> None:
    with pytest.raises(ValueError, match="15"):
        RtpPacket(0, 0, 0, 0, b"", False, tuple(range(16))).to_bytes()


def test_is_rtcp_demultiplexes() -> None:
    assert is_rtcp(bytes.fromhex("81c90007"))  # RR
    assert is_rtcp(bytes.fromhex("80c8"))  # SR
    assert not is_rtcp(build_rtp(0, 1, 2, 3, b""))
    assert not is_rtcp(build_rtp(101, 1, 2, 3, b"", marker=True))
    assert not is_rtcp(b"\x80")


@given(
    pt=st.integers(0, 127),
    seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=300),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
)
def test_round_trip_property(
    pt: int, seq: int, ts: int, ssrc: int, payload: bytes, marker: bool, csrcs: tuple[int, ...]
) -> None:
    pkt = RtpPacket(pt, seq, ts, ssrc, payload, marker, csrcs)
    assert parse_rtp(pkt.to_bytes()) == pkt


@given(st.binary(max_size=64))
def test_garbage_never_raises_anything_but_parse_errors(data: bytes) -> None:
    try:
        pkt = parse_rtp(data)
    except RtpParseError:
        return
    assert len(pkt.payload) <= len(data) - 12
