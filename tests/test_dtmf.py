"""RFC 4733 telephone-events both ways, and SIP INFO DTMF bodies."""

from __future__ import annotations

import random

import pytest

from sipstack.dtmf import (
    DIGITS,
    DtmfDigit,
    DtmfPacket,
    DtmfReceiver,
    DtmfSender,
    TelephoneEvent,
    parse_dtmf_info,
    parse_telephone_event,
)
from sipstack.errors import SipParseError
from sipstack.rtp import RtpParseError, parse_rtp
from sipstack.rtp_session import RtpSender

P = 0.02


def run_sender(tx: DtmfSender, start_ts: int = 1000, max_ticks: int = 10_000) -> list[DtmfPacket]:
    """Tick the sender like the media clock; returns the packets (None ticks dropped)."""
    out = []
    ts = start_ts
    for _ in range(max_ticks):
        if not tx.busy:
            break
        pkt = tx.tick(ts)
        if pkt is not None:
            out.append(pkt)
        ts = (ts + 160) & 0xFFFFFFFF
    return out


def digits_of(rx: DtmfReceiver) -> list[DtmfDigit]:
    out = []
    while (d := rx.next_event()) is not None:
        out.append(d)
    return out


def test_payload_wire_format() -> None:
    assert TelephoneEvent(11, True, 10, 800).to_bytes() == bytes.fromhex("0b 8a 0320")
    assert parse_telephone_event(bytes.fromhex("05 0a 00a0")) == TelephoneEvent(5, False, 10, 160)
    with pytest.raises(RtpParseError):
        parse_telephone_event(b"\x05\x0a\x00")


def test_packet_series_for_one_digit() -> None:
    tx = DtmfSender()
    tx.queue("5", duration=0.1)  # 800 samples: 5 updates + 3 end packets
    pkts = run_sender(tx, start_ts=4242)
    events = [parse_telephone_event(p.payload) for p in pkts]
    assert [p.marker for p in pkts] == [True] + [False] * 7
    assert {p.timestamp for p in pkts} == {4242}  # RFC 4733 2.5.1.2: the start time
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800, 800]
    assert [e.end for e in events] == [False] * 5 + [True] * 3
    assert {(e.event, e.volume) for e in events} == {(5, 10)}


def test_gap_between_digits_and_new_timestamps() -> None:
    tx = DtmfSender(gap=0.06)
    tx.queue("12", duration=0.04)
    ticks = []
    ts = 0
    while tx.busy:
        ticks.append(tx.tick(ts))
        ts += 160
    # digit 1: 2 updates + 3 ends, 3 silent frames, digit 2 likewise, 3 silent frames
    assert [p is not None for p in ticks] == [True] * 5 + [False] * 3 + [True] * 5 + [False] * 3
    first, second = ticks[0], ticks[8]
    assert first is not None and second is not None
    assert (first.timestamp, second.timestamp) == (0, 8 * 160)
    assert second.marker


def test_invalid_digits_and_durations_are_the_callers_fault() -> None:
    tx = DtmfSender()
    with pytest.raises(ValueError, match="not a DTMF digit"):
        tx.queue("12x")
    with pytest.raises(ValueError):
        tx.queue("1", duration=10.0)  # > 65535 samples
    assert not tx.busy  # nothing of the bad string was queued


def feed(rx: DtmfReceiver, pkts: list[DtmfPacket], start: float = 0.0) -> float:
    now = start
    for p in pkts:
        rx.receive(p.payload, p.timestamp, now)
        now += P
    return now


def test_all_digits_round_trip_in_order() -> None:
    tx = DtmfSender()
    tx.queue(DIGITS, duration=0.1)
    tx.queue("abcd")  # lower case is accepted
    rx = DtmfReceiver()
    feed(rx, run_sender(tx))
    got = digits_of(rx)
    assert "".join(d.digit for d in got) == DIGITS + "ABCD"
    assert {d.duration_ms for d in got} == {100}


def test_redundancy_and_duplicates_report_once() -> None:
    tx = DtmfSender()
    tx.queue("73#")
    pkts = run_sender(tx)
    rx = DtmfReceiver()
    feed(rx, [p for p in pkts for _ in range(2)])  # every packet twice
    assert [d.digit for d in digits_of(rx)] == ["7", "3", "#"]


def test_lost_start_packet_still_reports_the_digit() -> None:
    tx = DtmfSender()
    tx.queue("9", duration=0.1)
    pkts = run_sender(tx)[1:]  # marker packet lost
    rx = DtmfReceiver()
    feed(rx, pkts)
    assert digits_of(rx) == [DtmfDigit("9", 100)]


def test_lost_end_packets_end_on_timeout() -> None:
    tx = DtmfSender()
    tx.queue("4", duration=0.1)
    pkts = [p for p in run_sender(tx) if not parse_telephone_event(p.payload).end]
    rx = DtmfReceiver(end_timeout=0.5)
    feed(rx, pkts)  # last update at 4 * P
    assert digits_of(rx) == []
    assert rx.get_timer() == pytest.approx(4 * P + 0.5)
    rx.handle_timer(4 * P + 0.49)
    assert digits_of(rx) == []
    rx.handle_timer(4 * P + 0.5)
    assert digits_of(rx) == [DtmfDigit("4", 100)]  # the duration last heard
    assert rx.get_timer() is None


def test_next_digit_ends_one_whose_end_packets_were_lost() -> None:
    tx = DtmfSender()
    tx.queue("12")
    pkts = run_sender(tx)
    first_ts = pkts[0].timestamp
    kept = [
        p for p in pkts if not (p.timestamp == first_ts and parse_telephone_event(p.payload).end)
    ]
    rx = DtmfReceiver()
    feed(rx, kept)
    assert [d.digit for d in digits_of(rx)] == ["1", "2"]


def test_straggler_of_an_old_event_is_ignored() -> None:
    tx = DtmfSender()
    tx.queue("12")
    pkts = run_sender(tx)
    rx = DtmfReceiver()
    now = feed(rx, pkts)
    rx.receive(pkts[0].payload, pkts[0].timestamp, now)  # a late copy of digit 1's start
    rx.receive(pkts[2].payload, pkts[2].timestamp, now)
    assert [d.digit for d in digits_of(rx)] == ["1", "2"]


def test_random_loss_and_reorder_keeps_digits_once_and_in_order() -> None:
    rng = random.Random(3)
    tx = DtmfSender()
    tx.queue("0123456789*#ABCD" * 3)
    pkts = run_sender(tx)
    # lose 15 % of packets, but never a whole digit, and swap some neighbours
    kept = [p for p in pkts if rng.random() > 0.15 or p.marker]
    for i in range(0, len(kept) - 1, 7):
        kept[i], kept[i + 1] = kept[i + 1], kept[i]
    rx = DtmfReceiver()
    now = feed(rx, kept)
    rx.handle_timer(now + 1.0)
    assert "".join(d.digit for d in digits_of(rx)) == "0123456789*#ABCD" * 3


def test_malformed_and_non_dtmf_events_are_counted() -> None:
    rx = DtmfReceiver()
    rx.receive(b"\x01", 0, 0.0)
    rx.receive(TelephoneEvent(16, True, 0, 800).to_bytes(), 0, 0.0)  # hook flash
    assert (rx.malformed, rx.unsupported) == (1, 1)
    assert digits_of(rx) == []


def test_through_rtp_sender_packets() -> None:
    """The glue's send path: event packets share SSRC and sequence with audio."""
    rtp = RtpSender(0x42, 0, 8000, random.Random(1))
    tx = DtmfSender()
    rx = DtmfReceiver()
    rtp.send(b"\xff" * 160, 160, 0.0)
    tx.queue("8")
    seqs = []
    now = P
    while tx.busy:
        ev = tx.tick(rtp.timestamp)
        if ev is None:
            data = rtp.send(b"\xff" * 160, 160, now)
        else:
            data = rtp.send_other(101, ev.payload, ev.timestamp, ev.marker, now)
            rtp.skip(160)
        pkt = parse_rtp(data)
        seqs.append(pkt.sequence)
        if pkt.payload_type == 101:
            rx.receive(pkt.payload, pkt.timestamp, now)
        now += P
    assert digits_of(rx) == [DtmfDigit("8", 100)]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(seqs, seqs[1:], strict=False))


@pytest.mark.parametrize(
    ("ctype", "body", "expected"),
    [
        ("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n", DtmfDigit("5", 160)),
        ("Application/DTMF-Relay; charset=x", b"signal= #\nduration = 250", DtmfDigit("#", 250)),
        ("application/dtmf-relay", b"Signal=*\r\n", DtmfDigit("*", 250)),
        ("application/dtmf-relay", b"Signal=10\r\nDuration=100", DtmfDigit("*", 100)),
        ("application/dtmf-relay", b"Signal=a\r\nDuration=100", DtmfDigit("A", 100)),
        ("application/dtmf", b"7\r\n", DtmfDigit("7", 250)),
    ],
)
def test_info_bodies(ctype: str, body: bytes, expected: DtmfDigit) -> None:
    assert parse_dtmf_info(ctype, body) == expected


@pytest.mark.parametrize(
    ("ctype", "body", "status"),
    [
        ("application/dtmf-relay", b"Duration=160", 400),
        ("application/dtmf-relay", b"Signal=E", 400),
        ("application/dtmf-relay", b"Signal=5\nDuration=-1", 400),
        ("application/dtmf-relay", b"Signal=5\nDuration=soon", 400),
        ("application/dtmf-relay", b"Signal=\xff", 400),
        ("application/dtmf", b"55", 400),
        ("text/plain", b"5", 415),
    ],
)
def test_bad_info_bodies_are_the_peers_fault(ctype: str, body: bytes, status: int) -> None:
    with pytest.raises(SipParseError) as err:
        parse_dtmf_info(ctype, body)
    assert err.value.status == status
