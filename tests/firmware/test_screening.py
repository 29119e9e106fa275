"""Request screening: the rate limit, and dropping a flood before it is parsed.

A fake clock drives :class:`RequestScreen`; every expectation is an exact
count (issue 8: a SIPp flood of 10,000 OPTIONS/s must cost a look-up per
datagram, not a parse, or the registrar's answers drown in the socket).
"""

from __future__ import annotations

import logging

import pytest

from firmware.screening import RequestScreen, Screening
from sipstack.message import Request, parse_message
from sipstack.transport_base import Peer

SCANNER = Peer("udp", "192.0.2.66", 5060)
REGISTRAR = ("198.51.100.1", 5060)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def options(method: str = "OPTIONS") -> tuple[bytes, Request]:
    data = (
        f"{method} sip:door@203.0.113.5 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.0.2.66:5060;branch=z9hG4bK-1\r\n"
        "From: <sip:100@192.0.2.66>;tag=1\r\nTo: <sip:door@203.0.113.5>\r\n"
        f"Call-ID: c1\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    request = parse_message(data)
    assert isinstance(request, Request)
    return data, request


def make(clock: FakeClock, **settings: object) -> RequestScreen:
    screen = RequestScreen(Screening(**settings), clock)  # type: ignore[arg-type]
    screen.add_server(*REGISTRAR)
    return screen


def limit(screen: RequestScreen, peer: Peer = SCANNER) -> None:
    """Refuse ``burst`` requests from ``peer``: the next one is rate-limited."""
    _, request = options()
    for _ in range(screen.settings.burst):
        assert screen.refuse(request, peer) is False  # answered 403


def test_refuse_answers_burst_times_then_drops() -> None:
    clock = FakeClock()
    screen = make(clock)
    _, request = options()
    answers = [screen.refuse(request, SCANNER) for _ in range(8)]
    assert answers == [False] * 5 + [True] * 3
    counts = screen.counts
    assert (counts.total, counts.forbidden, counts.rate_limited, counts.dropped) == (8, 5, 3, 0)


def test_nothing_is_dropped_unparsed_before_the_limit() -> None:
    clock = FakeClock()
    screen = make(clock)
    data, request = options()
    assert screen.drop_unparsed(data, SCANNER) is False  # never seen
    for _ in range(4):
        screen.refuse(request, SCANNER)
    assert screen.drop_unparsed(data, SCANNER) is False  # 4 < burst
    screen.refuse(request, SCANNER)
    assert screen.drop_unparsed(data, SCANNER) is True
    assert screen.counts.total == 6 and screen.counts.rate_limited == 1


def test_a_continuing_flood_stays_limited_and_a_quiet_source_is_forgiven() -> None:
    clock = FakeClock()
    screen = make(clock, window=60.0)
    limit(screen)
    data, _ = options()
    for _ in range(300):  # one every second for five minutes: longer than the window
        clock.now += 1.0
        assert screen.drop_unparsed(data, SCANNER) is True
    assert screen.counts.rate_limited == 300
    clock.now += 60.5  # quiet for a window: its next request is parsed and screened anew
    assert screen.drop_unparsed(data, SCANNER) is False


def test_trusted_hosts_are_never_dropped_unparsed() -> None:
    clock = FakeClock()
    screen = make(clock, allow=("192.0.2.7", "10.9.0.0/16"))
    data, _ = options()
    # the registrar's host from another port: untrusted (UDP trust is host and port)
    # and limited, but it is still parsed (its in-dialog requests must get through)
    other_port = Peer("udp", REGISTRAR[0], 5070)
    allowed, in_net = Peer("udp", "192.0.2.7", 5099), Peer("udp", "10.9.3.4", 5060)
    for peer in (other_port, allowed, in_net):
        limit(screen, peer)
        assert screen.drop_unparsed(data, peer) is False, peer
    assert screen.drop_unparsed(data, Peer("udp", *REGISTRAR)) is False


def test_acks_are_not_dropped_unparsed() -> None:
    """An ACK ends our 403 transaction (RFC 3261 17.2.1); dropped, the 403 would be
    retransmitted until Timer H."""
    clock = FakeClock()
    screen = make(clock)
    limit(screen)
    assert screen.drop_unparsed(options("ACK")[0], SCANNER) is False
    assert screen.drop_unparsed(options("BYE")[0], SCANNER) is True


def test_open_screening_drops_nothing() -> None:
    clock = FakeClock()
    screen = make(clock, open=True)
    limit(screen)
    assert screen.drop_unparsed(options()[0], SCANNER) is False


def test_a_flood_is_noted_once_a_second_with_its_method() -> None:
    clock = FakeClock()
    screen = make(clock)
    limit(screen)
    screen.counts.last.clear()
    data, _ = options("INVITE")
    for _ in range(1000):  # 1000 in 0.1 s
        assert screen.drop_unparsed(data, SCANNER)
        clock.now += 0.0001
    assert len(screen.counts.last) == 1
    note = screen.counts.last[0]
    assert note["method"] == "INVITE" and note["action"] == "rate-limited"
    assert note["source"] == "udp:192.0.2.66:5060"
    clock.now += 1.0
    assert screen.drop_unparsed(b"\x00\xff garbage", SCANNER)
    assert len(screen.counts.last) == 2 and screen.counts.last[-1]["method"] != ""
    assert screen.counts.total == 5 + 1001


def test_a_flood_logs_a_few_lines_per_decade(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    screen = make(clock)
    _, request = options()
    with caplog.at_level(logging.WARNING, logger="intercom"):
        for _ in range(10_000):
            screen.refuse(request, SCANNER)
            clock.now += 0.0001
    lines = [r.getMessage() for r in caplog.records]
    refused = [line for line in lines if line.startswith("refused OPTIONS")]
    # 1, 2, 3, then 100..900 (9), 1000..9000 (9), 10000
    assert len(refused) == 3 + 9 + 9 + 1, refused
    assert refused[-1].endswith("10000 so far)")
    limited = [line for line in lines if "now dropped silently" in line]
    assert len(limited) == 1 and limited[0].startswith("192.0.2.66 refused 5 times"), lines


def test_sources_are_bounded() -> None:
    """The limiter remembers at most MAX_SOURCES hosts: the oldest is forgotten."""
    clock = FakeClock()
    screen = make(clock)
    limit(screen)
    data, request = options()
    assert screen.drop_unparsed(data, SCANNER)
    for i in range(RequestScreen.MAX_SOURCES):  # a spoofed-source sweep
        screen.refuse(request, Peer("udp", f"10.{i // 250}.{i % 250}.1", 5060))
    assert screen.drop_unparsed(data, SCANNER) is False  # forgotten: parsed and screened
