"""Bad input everywhere (issue 8): mutation fuzzing of SIP, RTP/RTCP and SDP.

The harness is ``bench/fuzz.py`` (its docstring says what is mutated and what
each input goes through); this file runs it with CI-sized counts and a fixed
seed. The 1,000,000-message run is recorded in ``docs/robustness.md``.

Unlike ``tests/test_parser_fuzz.py`` (the parser alone), every SIP mutant here
arrives as a UDP datagram at a real user agent with an answering call manager
on a :class:`~sipstack.loop.Loop`: an exception anywhere on that path is caught
by the loop's error logging, which the harness turns into a finding.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sipstack.offer_answer import CodecSpec, LocalMedia, create_answer
from sipstack.sdp import parse_sdp

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"
SEED = 20261127


def _load_harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_fuzz", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_fuzz"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


fuzz = _load_harness()


def _explain(result: object) -> str:
    return fuzz.report(result)  # type: ignore[no-any-return]


def test_sip_mutants_through_the_user_agent() -> None:
    result = fuzz.run_sip(20_000, SEED)
    assert result.findings == [], _explain(result)
    out = result.outcomes
    # The run exercised every branch it claims to: refused garbage, answered
    # it, and took valid requests far enough for calls to be answered.
    assert out["parse error, answered"] > 1000, _explain(result)
    assert out["parse error, dropped"] > 1000, _explain(result)
    assert out["request, answered"] > 500, _explain(result)
    assert out["answer 2xx"] > 50, _explain(result)
    assert out["answer 4xx"] > 1000, _explain(result)


def test_rtp_and_rtcp_mutants_through_a_media_session() -> None:
    result = fuzz.run_media(20_000, SEED)
    assert result.findings == [], _explain(result)
    out = result.outcomes
    assert out["rtcp"] > 5000 and out["rtp"] > 10000, _explain(result)
    # mutants got past the receiver into the jitter buffer and the DTMF receiver
    assert out["stream: packets received"] > 100, _explain(result)
    assert out["dtmf digits received"] > 0, _explain(result)
    assert out["stream: malformed"] > 1000, _explain(result)


def test_sdp_mutants_through_offer_answer() -> None:
    result = fuzz.run_sdp(5_000, SEED)
    assert result.findings == [], _explain(result)
    out = result.outcomes
    assert out["parse error"] > 1000, _explain(result)
    assert out["offer answered"] > 1000, _explain(result)
    assert out["answer accepted"] > 1000, _explain(result)


def test_crash_detection_sees_what_the_loop_swallows() -> None:
    # The rules above are only as good as this: a handler exception that the
    # loop logs and survives must become a finding.
    harness = fuzz.SipHarness(1)
    crashes = fuzz.CrashLog().install()
    try:

        def broken(acc_id: int, inc: object) -> bool:
            raise RuntimeError("handler bug")

        harness.ua.add_request_handler(broken)
        options = [s for s in fuzz.sip_seeds(harness.client_port) if s.startswith(b"OPTIONS")]
        harness.feed(options[0])
    finally:
        crashes.uninstall()
        harness.close()
    assert any(
        r.exc_info is not None and "handler bug" in str(r.exc_info[1]) for r in crashes.records
    ), crashes.records


def test_mutators_are_deterministic() -> None:
    import random

    seeds = fuzz.sip_seeds(5060)
    a = [fuzz.mutate_sip(s, random.Random(7)) for s in seeds]
    b = [fuzz.mutate_sip(s, random.Random(7)) for s in seeds]
    assert a == b
    assert any(x != s for x, s in zip(a, seeds, strict=True))


# -- regressions found by the fuzzer ---------------------------------------------------------


@pytest.mark.parametrize("ptime", ["\x1f20", "20\x1d", "\x1c20\x1e"])
def test_offer_with_control_characters_in_ptime_is_answered(ptime: str) -> None:
    # bench/fuzz.py: "a=ptime:\x1f20" made create_answer raise ValueError from float().
    offer = parse_sdp(
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 10042 RTP/AVP 0\r\na=ptime:" + ptime.encode() + b"\r\n"
    )
    local = LocalMedia("127.0.0.1", 40000, (CodecSpec("PCMU", 8000),))
    _answer, negotiated = create_answer(offer, local, 1, 1)
    assert negotiated is not None
    assert offer.media[0].ptime is None  # an unreadable ptime is ignored, not fatal
