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

from sipstack._validate import HEAD_MAX_FIELDS
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


# -- the one-match path and the line-by-line path agree --------------------------------
# parse_message checks a usually spelled header section with one regex (HEAD_RE)
# and takes the line-by-line path for anything else, or when the caller lowers
# max_headers below HEAD_MAX_FIELDS. Both must give the same message, typed
# values included, and refuse the same input.

SLOW = {"max_headers": HEAD_MAX_FIELDS - 1}  # forces the line-by-line path


def _outcome(data: bytes, **limits: int) -> Request | Response | SipParseError:
    try:
        return parse_message(data, **limits)
    except SipParseError as exc:
        return exc


def _typed(msg: Request | Response) -> tuple[object, ...]:
    via = msg.top_via
    addresses = [(a.uri, a.display_name, a.params, a.tag) for a in (msg.from_, msg.to)]
    return (
        (via.transport, via.host, via.port, via.params, via.branch, via.sent_by, via.protocol),
        addresses,
        msg.call_id,
        msg.cseq,
        msg.content_length,
        msg.max_forwards,
    )


def assert_paths_agree(data: bytes) -> None:
    fast, slow = _outcome(data), _outcome(data, **SLOW)
    if isinstance(slow, SipParseError):
        assert isinstance(fast, SipParseError), data
        assert fast.status == slow.status
        return
    assert not isinstance(fast, SipParseError), (fast, data)
    assert fast == slow and list(fast.headers) == list(slow.headers)
    assert _typed(fast) == _typed(slow)


@pytest.mark.parametrize("seed_index", range(len(SEEDS)), ids=[p.name for p in SEEDS])
def test_one_match_and_line_by_line_paths_agree(seed_index: int) -> None:
    original = SEEDS[seed_index].read_bytes()
    assert_paths_agree(original)
    rng = random.Random(f"paths-{SEEDS[seed_index].name}")
    for _ in range(CASES // len(SEEDS) // 2 + 1):
        assert_paths_agree(mutate(original, rng))


def test_corpus_takes_the_one_match_path() -> None:
    # The benchmark's premise: real desk-phone traffic is spelled the usual way.
    for path in sorted((DATA / "corpus").glob("*.sip")):
        assert parse_message(path.read_bytes()).headers._hot is not None, path.name


INVITE = (DATA / "corpus" / "03-invite-sdp.sip").read_bytes()


@pytest.mark.parametrize(
    "old, new",
    [
        (b"CSeq: 21346 INVITE\r\n", b"CSeq: 21346 INVITE\r\nCSeq: 21347 INVITE\r\n"),
        (b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\r\nMax-Forwards: 69\r\n"),
        (b"Call-ID: 4e7a", b"Call-ID: x\r\nCall-ID: 4e7a"),
        (b"To: <sip:201@pbx.example.com>", b"To: <sip:a@b>\r\nTo: <sip:201@pbx.example.com>"),
        (b"Content-Length: 287\r\n", b"Content-Length: 287\r\nContent-Length: 287\r\n"),
        (b"Call-ID: 4e7a9b1c3d5f7e9a0b2c4d6e8f0a1b3c\r\n", b""),
        (b"Via: SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bK9f2b4c6d8e0a1b3c;rport\r\n", b""),
        (b"CSeq: 21346 INVITE", b"CSeq: 21346 BYE"),
    ],
    ids=[
        "cseq-twice",
        "mf-twice",
        "callid-twice",
        "to-twice",
        "cl-twice",
        "no-callid",
        "no-via",
        "cseq-method",
    ],
)
def test_one_match_path_refuses_what_the_rfc_refuses(old: bytes, new: bytes) -> None:
    data = INVITE.replace(old, new)
    assert data != INVITE
    with pytest.raises(SipParseError) as exc:
        parse_message(data)
    assert exc.value.status == 400
    assert_paths_agree(data)


@pytest.mark.parametrize(
    "old, new, branch, tag",
    [
        # The parameter spelled another way: line-by-line path, same values.
        (b";branch=z9hG4bK9f2b4c6d8e0a1b3c", b";BRANCH=z9hG4bKup", "z9hG4bKup", "3c9d2e1f0a8b7c6d"),
        (b";tag=3c9d2e1f0a8b7c6d", b";TAG=up", "z9hG4bK9f2b4c6d8e0a1b3c", "up"),
        (b";tag=3c9d2e1f0a8b7c6d", b';tag="q"', "z9hG4bK9f2b4c6d8e0a1b3c", '"q"'),
        # The last one wins, in both paths.
        (b";tag=3c9d2e1f0a8b7c6d", b";tag=a;x=1;tag=b", "z9hG4bK9f2b4c6d8e0a1b3c", "b"),
        (b";rport", b";rport;branch=z9hG4bKlast", "z9hG4bKlast", "3c9d2e1f0a8b7c6d"),
        # Look-alikes are other parameters.
        (b";tag=3c9d2e1f0a8b7c6d", b";tags=1;xtag=2", "z9hG4bK9f2b4c6d8e0a1b3c", None),
        # A second Via field: the top Via is still the first one.
        (
            b"Max-Forwards: 70\r\n",
            b"Max-Forwards: 70\r\nVia: SIP/2.0/TCP b;branch=z9hG4bKb\r\n",
            "z9hG4bK9f2b4c6d8e0a1b3c",
            "3c9d2e1f0a8b7c6d",
        ),
        # Compact and odd-case names, folding: line-by-line path.
        (b"From: ", b"f: ", "z9hG4bK9f2b4c6d8e0a1b3c", "3c9d2e1f0a8b7c6d"),
        (b"Via: ", b"VIA: ", "z9hG4bK9f2b4c6d8e0a1b3c", "3c9d2e1f0a8b7c6d"),
        (b";tag=3c9d2e1f0a8b7c6d", b"\r\n ;tag=fold", "z9hG4bK9f2b4c6d8e0a1b3c", "fold"),
    ],
)
def test_hot_values_whatever_the_spelling(
    old: bytes, new: bytes, branch: str, tag: str | None
) -> None:
    data = INVITE.replace(old, new, 1)
    assert data != INVITE
    msg = parse_message(data)
    assert (msg.top_via.branch, msg.from_.tag) == (branch, tag)
    assert (msg.top_via.host, msg.top_via.port) == ("192.168.1.50", 5060)
    assert_paths_agree(data)
