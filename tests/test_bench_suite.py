"""The benchmark suite's plumbing: result lines, the generated doc block, marker pairing.

The figures themselves are measured by ``bench/run_all.py`` (slow, and never
asserted on here); these tests check that what it writes is right and that
the parts that turn raw timestamps and SIPp statistics into figures compute
what they claim.
"""

from __future__ import annotations

import argparse
import array
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    """Import bench/NAME.py (bench/ is a directory of scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


run_all = _load("run_all")
latency = _load("latency")
uas_load = _load("uas_load")

HAND_WRITTEN = "## Parser\n\nMethodology that must survive -- every run.\n"


def _outcome(bench: str, lines: list[dict[str, object]], status: str = "ok") -> object:
    return run_all.Outcome(
        bench, f".venv/bin/python bench/{bench}.py --seconds 5", lines, 1.0, status,
        "2026-11-27 21:00 UTC", (1.0, 2.0),
    )  # fmt: skip


def _line(name: str, ours: float, peer: float | None, better: str = "lower") -> dict[str, object]:
    return {
        "name": name,
        "ours": ours,
        "peer": peer,
        "ratio": None if peer is None else ours / peer,
        "unit": "ms",
        "better": better,
    }


def test_parse_lines_keeps_only_result_objects() -> None:
    text = "\n".join(
        [
            "a table row | 12 |",
            json.dumps(_line("x", 1.0, 2.0)),
            "{not json",
            json.dumps({"name": "no ours field"}),
            json.dumps([1, 2]),
            "  " + json.dumps(_line("y", 3.0, None)),
        ]
    )
    assert [line["name"] for line in run_all.parse_lines(text)] == ["x", "y"]


@pytest.mark.parametrize(
    ("ours", "peer", "better", "expected"),
    [
        (1.0, 2.0, "lower", "0.50x (ours better)"),
        (1.0, 2.0, "higher", "0.50x (ours worse)"),
        (3.0, 1.0, "higher", "3.00x (ours better)"),
        (2.0, 2.0, "lower", "1.00x (even)"),
        (2.0, None, "lower", "-"),
    ],
)
def test_ratio_text_says_which_way_is_better(
    ours: float, peer: float | None, better: str, expected: str
) -> None:
    assert run_all.ratio_text(_line("f", ours, peer, better)) == expected


def test_a_line_without_ratio_gets_it_computed_and_lower_is_better_by_default() -> None:
    line = {"name": "startup", "ours": 30.0, "peer": 10.0, "unit": "ms"}
    assert run_all.ratio_text(line) == "3.00x (ours worse)"


def _args(quick: bool = False) -> argparse.Namespace:
    return argparse.Namespace(quick=quick)


def test_write_doc_replaces_only_the_generated_block(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n" + HAND_WRITTEN)
    first = run_all.render_block([_outcome("parse", [_line("old figure", 1.0, 2.0)])], _args(), 60)
    run_all.write_doc(doc, first)
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\n" + run_all.BEGIN)
    assert text.endswith(HAND_WRITTEN)
    second = run_all.render_block([_outcome("parse", [_line("new figure", 1.0, 4.0)])], _args(), 60)
    run_all.write_doc(doc, second)
    text = doc.read_text()
    assert "new figure" in text and "old figure" not in text
    assert text.count(run_all.BEGIN) == 1 and text.count(run_all.END) == 1
    assert text.endswith(HAND_WRITTEN)


def test_table_rows_carry_figures_ratio_and_command() -> None:
    block = run_all.render_block(
        [
            _outcome("call", [_line("CPU per call", 1.5, 3.0)]),
            _outcome("startup", [], "skipped: bench/startup.py is absent"),
        ],
        _args(),
        60,
    )
    row = next(r for r in block.splitlines() if r.startswith("| CPU per call"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == [
        "CPU per call",
        "1.5 ms",
        "3 ms",
        "0.50x (ours better)",
        "-",
        "`.venv/bin/python bench/call.py --seconds 5`",
    ]
    assert "- `startup`: skipped: bench/startup.py is absent" in block


def test_previous_outcomes_round_trip_through_the_html_comment(tmp_path: Path) -> None:
    outcomes = [_outcome("parse", [_line("a --> b", 1.0, 2.0)]), _outcome("media", [])]
    doc = tmp_path / "b.md"
    run_all.write_doc(doc, run_all.render_block(outcomes, _args(), 60))
    comment = doc.read_text().split(run_all.RAW_PREFIX, 1)[1].split(" -->", 1)[0]
    assert "--" not in comment  # an HTML comment may not hold "--"
    back = run_all.previous_outcomes(doc.read_text())
    assert [o.__dict__ for o in back] == [o.__dict__ for o in outcomes]


def test_only_keeps_rows_of_benchmarks_not_rerun(tmp_path: Path) -> None:
    doc = tmp_path / "b.md"
    doc.write_text("# Benchmarks\n\n" + HAND_WRITTEN)
    old = [
        _outcome("parse", [_line("parse figure", 1.0, 2.0)]),
        _outcome("jitter", [_line("old jitter figure", 9.0, None)]),
    ]
    run_all.write_doc(doc, run_all.render_block(old, _args(), 60))
    # a real (short) benchmark subprocess through the --json contract
    code = run_all.main(
        ["--only", "jitter", "--quick", "--out", str(doc), "--logs", str(tmp_path / "logs")]
    )
    assert code == 0
    text = doc.read_text()
    assert "parse figure" in text  # kept from the previous run
    assert "old jitter figure" not in text  # replaced by the new run
    assert "| RTP receive path (receiver + jitter buffer) per packet |" in text
    assert text.index("parse figure") < text.index("RTP receive path")  # suite order
    assert text.endswith(HAND_WRITTEN)
    assert (tmp_path / "logs" / "jitter.log").read_text().strip()


def test_an_absent_benchmark_is_skipped_with_a_reason(tmp_path: Path) -> None:
    bench = run_all.Bench("no_such_bench", (), (), 10, "absent")
    out = run_all.run_bench(bench, quick=True, logs=tmp_path)
    assert out.status == "skipped: bench/no_such_bench.py is absent"
    assert out.lines == []


def test_quick_arguments_a_script_does_not_know_are_dropped_with_their_values() -> None:
    bench = run_all.Bench("jitter", (), ("--repeats", "1", "--no-such-flag", "7"), 10, "")
    assert run_all._supported_quick_args(bench) == ("--repeats", "1")


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("media", ["--frames", "20", "--repeats", "1"]),
        ("codecs", ["--frames", "20", "--repeats", "1"]),
        ("jitter", ["--repeats", "1"]),
    ],
)
def test_micro_benchmarks_print_only_result_lines_with_json(script: str, args: list[str]) -> None:
    out = subprocess.run(
        [sys.executable, f"bench/{script}.py", *args, "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    lines = [json.loads(raw) for raw in out.stdout.splitlines()]
    assert lines
    for line in lines:
        assert {"name", "ours", "peer", "ratio", "unit", "better"} <= set(line)
        assert line["better"] in ("higher", "lower")
        assert isinstance(line["ours"], int | float) and line["ours"] > 0
        if line["peer"] is not None:
            assert line["ratio"] == pytest.approx(line["ours"] / line["peer"], rel=0.01)


# -- latency: marker detection and pairing -------------------------------------------------


def test_burst_frame_starts_at_its_onset_sample() -> None:
    frame = latency.burst_frame()
    assert len(frame) == 2 * latency.FRAME
    assert latency.onset(frame) == latency.ONSET
    assert latency.onset(bytes(2 * latency.FRAME)) is None


def _shifted(samples: int) -> bytes:
    """The burst frame delayed by ``samples`` within a 2-frame window (first frame)."""
    both = array.array("h", bytes(2 * latency.FRAME) + latency.burst_frame())
    shifted = both[latency.FRAME - samples : 2 * latency.FRAME - samples]
    return shifted.tobytes()


def test_pair_delays_counts_frame_times_and_sample_offsets() -> None:
    quiet, burst = bytes(2 * latency.FRAME), latency.burst_frame()
    origin = [(0.00, quiet), (0.02, burst), (0.04, quiet), (0.52, burst), (0.54, quiet)]
    # first burst: 0.030 s later, same sample offset; second: same frame time but the
    # audio moved 80 samples (10 ms) later inside the frame, as a look-ahead stage does
    dest = [(0.01, quiet), (0.05, burst), (0.07, quiet), (0.53, _shifted(80)), (0.55, burst)]
    delays = latency.pair_delays(origin, dest)
    assert delays == pytest.approx([0.030, 0.010 + 80 / latency.RATE])


def test_pair_delays_skips_destination_bursts_before_their_origin() -> None:
    quiet, burst = bytes(2 * latency.FRAME), latency.burst_frame()
    origin = [(1.00, burst), (1.02, quiet)]
    dest = [(0.50, burst), (0.52, quiet), (1.04, burst)]  # a leftover burst, then ours
    assert latency.pair_delays(origin, dest) == pytest.approx([0.04])


# -- uas_load: SIPp statistics and the pass rule -------------------------------------------


def test_sipp_counts_read_the_last_cumulative_row(tmp_path: Path) -> None:
    stat = tmp_path / "stat.csv"
    stat.write_text(
        "StartTime;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n"
        "t;10;10;0;0;\n"
        "t;5;995;1;4;\n"
    )
    assert uas_load._sipp_counts(stat) == (995, 4)
    assert uas_load._sipp_counts(tmp_path / "missing.csv") == (0, 0)


@pytest.mark.parametrize(
    ("answered", "total", "failed", "passed"),
    [
        (1000.0, 8000, 79, True),  # 0.99 % failed
        (1000.0, 8000, 80, False),  # 1 % is not under 1 %
        (949.0, 8000, 0, False),  # SIPp or the UAS could not keep the offered rate
        (950.0, 8000, 0, True),
        (0.0, 0, 0, False),
    ],
)
def test_a_step_passes_under_one_percent_failures_at_the_offered_rate(
    answered: float, total: int, failed: int, passed: bool
) -> None:
    assert uas_load.Step(1000.0, answered, total, failed, 100.0).passed is passed


def test_cpu_is_compared_at_the_highest_rate_both_passed() -> None:
    step = uas_load.Step
    steps = {
        "ours": [step(100, 100, 800, 0, 500), step(160, 160, 1280, 0, 600), step(256, 90, 9, 9, 1)],
        "baresip": [step(100, 100, 800, 0, 200), step(160, 160, 1280, 0, 250)],
    }
    assert uas_load._cpu_at_common_rate(steps) == (160.0, 600, 250)
    assert uas_load.best(steps["ours"]) == steps["ours"][1]
