"""Parse and serialize throughput of sipstack.message against pyVoIP and sippy.

Run from the repository root (the peers are bench-only pip packages, ``pyVoIP``
and ``sippy``; each is skipped with a note if it is not installed)::

    .venv/bin/python bench/parse.py            # best of 15 repeats
    .venv/bin/python bench/parse.py --repeats 5 --seconds 0.05
    .venv/bin/python bench/parse.py --json     # table on stderr, result lines on stdout

For every message of tests/data/corpus/ it reports messages per second (best
of N repeats, each repeat parsing the message for about ``--seconds``) for:

- ``ours``: ``parse_message`` (validates every known header; the header list
  is split and typed values are built lazily)
- ``ours+txn``: ``parse_message`` plus what the transaction and dialog layers
  read on every message (top Via branch and sent-by, From/To tags, Call-ID,
  CSeq), which builds those typed values: the headline comparison
- ``ours+all``: ``parse_message`` plus ``list(msg.headers)``, which splits
  every header field (what a layer that walks all headers pays)
- ``pyVoIP``: ``pyVoIP.SIP.SIPMessage(data)`` (eager; rejects some messages)
- ``sippy``: ``SipRequest``/``SipResponse`` from the decoded text, then
  ``getBody()`` on every header so the lazily parsed values are really parsed
- ``ours ser``: ``to_bytes()`` of the parsed message

Times are process CPU time (``time.process_time``), not wall time, and the
parsers take turns within each repeat: on a shared box that keeps another
process's load from inflating one column more than another. "overall" is
messages over total time for the messages a parser accepted (slow messages
weigh what they cost); each peer is also compared on exactly the messages it
accepts. The summary compares ``ours+txn`` (and plain ``ours``) with each
peer on exactly the messages that peer accepts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sipstack.message import parse_message  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "corpus"


def ours(data: bytes) -> object:
    return parse_message(data)


def ours_txn(data: bytes) -> object:
    msg = parse_message(data)
    via = msg.top_via
    return (via.branch, via.sent_by, msg.from_.tag, msg.to.tag, msg.call_id, msg.cseq)


def ours_all(data: bytes) -> object:
    return list(parse_message(data).headers)


def _load_peers() -> dict[str, Callable[[bytes], object]]:
    peers: dict[str, Callable[[bytes], object]] = {}
    try:
        # pyVoIP 1.6's SIP and VoIP modules import each other: VoIP must go first.
        import pyVoIP.VoIP  # type: ignore[import-not-found]  # noqa: F401
        from pyVoIP.SIP import SIPMessage  # type: ignore[import-not-found]

        peers["pyVoIP"] = SIPMessage
    except ImportError:
        print("note: pyVoIP not installed (pip install pyVoIP); skipped")
    try:
        from sippy.SipRequest import SipRequest  # type: ignore[import-not-found]
        from sippy.SipResponse import SipResponse  # type: ignore[import-not-found]

        def sippy_full(data: bytes) -> object:
            text = data.decode()
            msg = SipResponse(buf=text) if text.startswith("SIP/") else SipRequest(buf=text)
            for header in msg.headers:
                header.getBody()
            return msg

        peers["sippy"] = sippy_full
    except ImportError:
        print("note: sippy not installed (pip install sippy); skipped")
    return peers


def loop_size(func: Callable[[bytes], object], data: bytes, seconds: float) -> int:
    """How many calls take about ``seconds`` of CPU time."""
    n = 1
    while True:
        t0 = time.process_time()
        for _ in range(n):
            func(data)
        elapsed = time.process_time() - t0
        if elapsed >= seconds / 4:
            return max(1, int(n * seconds / max(elapsed, 1e-9)))
        n *= 2


def rates(
    funcs: dict[str, Callable[[bytes], object]], data: bytes, repeats: int, seconds: float
) -> dict[str, float]:
    """Best-of-``repeats`` calls per CPU second for each function.

    The functions take turns within every repeat, so a burst of load on a
    shared machine hits all of them alike instead of one column.
    """
    sizes = {name: loop_size(func, data, seconds) for name, func in funcs.items()}
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(repeats):
        for name, func in funcs.items():
            n = sizes[name]
            t0 = time.process_time()
            for _ in range(n):
                func(data)
            best[name] = min(best[name], (time.process_time() - t0) / n)
    return {name: 1 / t for name, t in best.items()}


def serializer(data: bytes) -> Callable[[bytes], object]:
    msg = parse_message(data)
    return lambda _data: msg.to_bytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--seconds", type=float, default=0.1, help="length of one repeat")
    ap.add_argument(
        "--json",
        action="store_true",
        help="one JSON result per line on stdout (bench/run_all.py); the table goes to stderr",
    )
    args = ap.parse_args()
    # With --json the human table goes to stderr so stdout holds only result lines.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        results = measure(args)
    if args.json:
        for line in results:
            print(json.dumps(line), flush=True)


def measure(args: argparse.Namespace) -> list[dict[str, object]]:
    """Print the table and the like-for-like summary; return the run_all result lines."""

    files = sorted(CORPUS.glob("*.sip"))
    parsers: dict[str, Callable[[bytes], object]] = {
        "ours": ours,
        "ours+txn": ours_txn,
        "ours+all": ours_all,
    }
    parsers.update(_load_peers())
    columns = [*parsers, "ours ser"]
    table: dict[str, dict[str, float]] = {}
    print(f"Python {sys.version.split()[0]}, best of {args.repeats}, msg/s (CPU time)")
    print(f"{'message':24s}" + "".join(f"{c:>11s}" for c in columns))
    for path in files:
        data = path.read_bytes()
        funcs: dict[str, Callable[[bytes], object]] = {}
        for name in columns:
            func = serializer(data) if name == "ours ser" else parsers[name]
            try:
                func(data)
            except Exception as exc:  # a peer rejecting a message is a result, not a crash
                if name.startswith("ours"):
                    raise SystemExit(f"our parser failed on {path.name}: {exc!r}") from exc
                continue
            funcs[name] = func
        table[path.stem] = rates(funcs, data, args.repeats, args.seconds)
        row = table[path.stem]
        print(
            f"{path.stem:24s}"
            + "".join(f"{row[c]:11.0f}" if c in row else f"{'fails':>11s}" for c in columns)
        )

    def overall(column: str, messages: list[str]) -> float:
        # Messages over total time: each message weighs what it costs.
        return len(messages) / sum(1 / table[m][column] for m in messages)

    accepted = {c: [m for m in table if c in table[m]] for c in columns}
    print(f"{'overall':24s}" + "".join(f"{overall(c, accepted[c]):11.0f}" for c in columns))
    print(f"{'messages parsed':24s}" + "".join(f"{len(accepted[c]):>11d}" for c in columns))
    # A peer's overall only covers the messages it accepts: compare like with like.
    results: list[dict[str, object]] = []
    for peer in (p for p in parsers if not p.startswith("ours")):
        ok = accepted[peer]
        theirs = overall(peer, ok)
        for column in ("ours+txn", "ours"):
            mine = overall(column, ok)
            slowest = min((table[m][column] / table[m][peer], m) for m in ok)
            print(
                f"on the {len(ok)} messages {peer} accepts: {column} {mine:.0f} msg/s, "
                f"{peer} {theirs:.0f} msg/s, ratio {mine / theirs:.2f}x "
                f"(smallest per-message ratio {slowest[0]:.2f}x, {slowest[1]})"
            )
            results.append(
                {
                    "name": f"parse {column} vs {peer} ({len(ok)} messages it accepts)",
                    "ours": round(mine),
                    "peer": round(theirs),
                    "ratio": round(mine / theirs, 3),
                    "unit": "msg/s (CPU time)",
                    "better": "higher",
                    "peer_name": peer,
                    "target": ">= 2x the faster peer, faster on every message",
                    "note": f"smallest per-message ratio {slowest[0]:.2f}x ({slowest[1]})",
                }
            )
    return results


if __name__ == "__main__":
    main()
