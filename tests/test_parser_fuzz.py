"""Mutation fuzzing: whatever bytes arrive, only SipParseError may escape.

Seeds are the realistic corpus and the conformance vectors; mutations are
byte flips, insertions (including CR, LF, NUL, SP, ':', ';', ',', '"', '<'),
deletions, duplications and truncations. A mutant that parses must also be
fully usable: every typed accessor works and it serializes to bytes that
parse back to the same message.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from sipstack.errors import SipParseError
from sipstack.framer import StreamFramer
from sipstack.message import Request, Response, parse_message

DATA = Path(__file__).parent / "data"
SEEDS = sorted(
    [*DATA.glob("corpus/*.sip"), *DATA.glob("rfc4475/*.dat"), *DATA.glob("rfc5118/wire/*.sip")]
)
SPECIAL = b'\r\n\x00 \t:;,"<>@=%\\/[]\xff\xc3'
CASES = 4000  # spread over the seeds; a few seconds


def mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not buf:
            break
        op = rng.randrange(6)
        pos = rng.randrange(len(buf))
        if op == 0:
            buf[pos] = rng.randrange(256)
        elif op == 1:
            buf[pos] = rng.choice(SPECIAL)
        elif op == 2:
            buf[pos:pos] = bytes(rng.choice(SPECIAL) for _ in range(rng.randint(1, 3)))
        elif op == 3:
            del buf[pos : pos + rng.randint(1, 8)]
        elif op == 4:
            end = min(len(buf), pos + rng.randint(1, 40))
            buf[pos:pos] = buf[pos:end]
        else:
            del buf[pos:]
    return bytes(buf)


ACCESSORS: list[Callable[[Request | Response], object]] = [
    lambda m: m.vias,
    lambda m: m.top_via,
    lambda m: m.from_,
    lambda m: m.to,
    lambda m: m.call_id,
    lambda m: m.cseq,
    lambda m: m.contacts,
    lambda m: m.routes,
    lambda m: m.record_routes,
    lambda m: m.max_forwards,
    lambda m: m.expires,
    lambda m: m.min_expires,
    lambda m: m.content_length,
    lambda m: m.retry_after,
    lambda m: m.allow,
    lambda m: m.supported,
    lambda m: m.require,
    lambda m: m.uri if isinstance(m, Request) else m.status,
]


def check_usable(msg: Request | Response) -> None:
    for accessor in ACCESSORS:
        accessor(msg)  # validated by parse_message: must not raise
    again = parse_message(msg.to_bytes(), max_size=1 << 20)
    assert again == msg


@pytest.mark.parametrize("seed_index", range(len(SEEDS)), ids=[p.name for p in SEEDS])
def test_mutants_only_raise_sip_parse_error(seed_index: int) -> None:
    original = SEEDS[seed_index].read_bytes()
    rng = random.Random(f"fuzz-{SEEDS[seed_index].name}")
    for _ in range(CASES // len(SEEDS) + 1):
        data = mutate(original, rng)
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            assert exc.status in (None, 400, 505, 513)
            assert exc.reason
            continue
        check_usable(msg)


def test_framer_on_mutated_streams() -> None:
    rng = random.Random("framer")
    stream = b"".join(p.read_bytes() for p in SEEDS[:12])
    for _ in range(300):
        data = mutate(stream, rng)
        framer = StreamFramer()
        try:
            pos = 0
            while pos < len(data):
                step = rng.randint(1, 700)
                for item in framer.feed(data[pos : pos + step]):
                    if isinstance(item, bytes):
                        with contextlib.suppress(SipParseError):
                            parse_message(item)
                pos += step
        except SipParseError:
            continue


def test_some_mutants_parse_and_some_fail() -> None:
    # Guards against a fuzzer that only ever produces garbage (or never does).
    rng = random.Random("balance")
    ok = bad = 0
    seed = (DATA / "corpus" / "03-invite-sdp.sip").read_bytes()
    for _ in range(300):
        try:
            parse_message(mutate(seed, rng))
            ok += 1
        except SipParseError:
            bad += 1
    assert ok > 20 and bad > 20
