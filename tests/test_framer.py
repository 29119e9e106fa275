"""StreamFramer: RFC 3261 18.3 stream framing and RFC 5626 keep-alives."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipstack.errors import SipParseError
from sipstack.framer import KeepAlivePing, KeepAlivePong, StreamFramer
from sipstack.message import parse_message

CORPUS = sorted((Path(__file__).parent / "data" / "corpus").glob("*.sip"))
MESSAGES = [p.read_bytes() for p in CORPUS]
STREAM = b"".join(MESSAGES)


def feed_all(framer: StreamFramer, chunks: list[bytes]) -> list[object]:
    out: list[object] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def test_whole_stream_at_once() -> None:
    framer = StreamFramer()
    assert framer.feed(STREAM) == MESSAGES
    assert framer.buffered == 0
    for frame in MESSAGES:
        parse_message(frame)


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    out = feed_all(framer, [STREAM[i : i + 1] for i in range(len(STREAM))])
    assert out == MESSAGES


@given(st.lists(st.integers(1, 400), min_size=1, max_size=80))
def test_arbitrary_chunking(sizes: list[int]) -> None:
    chunks, pos = [], 0
    while pos < len(STREAM):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(STREAM[pos : pos + size])
        pos += size
    assert feed_all(StreamFramer(), chunks) == MESSAGES


def test_trailing_partial_message_is_held() -> None:
    framer = StreamFramer()
    first, second = MESSAGES[2], MESSAGES[5]
    out = framer.feed(first + second[:100])
    assert out == [first]
    assert framer.buffered == 100
    assert framer.feed(second[100:]) == [second]


def test_body_is_exactly_content_length() -> None:
    msg = b"MESSAGE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello"
    framer = StreamFramer()
    assert framer.feed(msg + b"OPTIONS") == [msg]
    assert framer.buffered == len(b"OPTIONS")
    folded = b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nhi"
    assert StreamFramer().feed(folded) == [folded]


def test_keepalives_between_messages() -> None:
    framer = StreamFramer()
    m1, m2 = MESSAGES[0], MESSAGES[1]
    out = framer.feed(b"\r\n\r\n" + m1 + b"\r\n" + m2 + b"\r\n\r\n\r\n")
    assert out == [KeepAlivePing(), m1, KeepAlivePong(), m2, KeepAlivePing(), KeepAlivePong()]


def test_ping_split_across_reads_is_still_a_ping() -> None:
    framer = StreamFramer()
    out = feed_all(framer, [b"\r", b"\n", b"\r", b"\n"])
    assert out == [KeepAlivePong(), KeepAlivePing()]
    assert StreamFramer().feed(b"\r") == []


@pytest.mark.parametrize(
    "data",
    [
        b"HELLO THERE\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n",  # a TLS ClientHello on the plain port
        b"\r\x00",
        # no Content-Length (RFC 3261 18.3: mandatory on streams)
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n",
        b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 1\r\nl: 1\r\n\r\nx",
        b"INVITE sip:a@b SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n",
    ],
)
def test_garbage_raises_and_stays_failed(data: bytes) -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError):
        framer.feed(data)
    with pytest.raises(SipParseError):
        framer.feed(MESSAGES[0])


def test_oversize_is_bounded() -> None:
    framer = StreamFramer(max_message_size=1000)
    # A header section that never ends: refused once it passes the bound.
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(SipParseError, match="size limit"):
        for _ in range(100):
            framer.feed(b"X-Filler: " + b"a" * 50 + b"\r\n")
    assert framer.buffered == 0
    # A declared body that would pass the bound: refused before it arrives.
    framer = StreamFramer(max_message_size=1000)
    with pytest.raises(SipParseError, match="exceeds"):
        framer.feed(b"MESSAGE sip:a@b SIP/2.0\r\nContent-Length: 5000\r\n\r\n")
    # A start line that never ends.
    with pytest.raises(SipParseError):
        StreamFramer(max_message_size=1000).feed(b"INVITE " + b"a" * 2000)
    # Responses are never answered: status None.
    with pytest.raises(SipParseError) as info:
        StreamFramer().feed(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n")
    assert info.value.status is None
