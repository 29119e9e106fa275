"""Codec benchmark (issue 4): CPU per 20 ms frame of each codec and of the G.711 PLC.

Run:  .venv/bin/python bench/codecs.py            (prints Markdown tables)
      .venv/bin/python bench/codecs.py --json     (run_all result lines; all figures on stderr)

Every figure is the median over ``--repeats`` runs of the CPU time
(``time.process_time_ns``) of a loop of ``--frames`` calls, divided by the
number of calls: microseconds per 20 ms frame. "CPU % of a leg" is
(encode + decode) / 20 ms: the share of one core one call direction pair
costs in the codec alone (a two-way call runs one encode and one decode per
20 ms). The input is a speech-like signal (harmonics on a moving pitch with
syllable envelope), so table look-ups and the ADPCM coders see varied data.

Sections:

1. codecs: encode / decode per frame for PCMU, PCMA (with and without PLC on
   the decode side), G.722 (libspandsp via ctypes) and Opus (libopus, 16 kHz
   PCM, complexity 10 = default and 5).
2. PLC: cost of a good frame passing through the concealer, of the first lost
   frame (pitch search), of a further lost frame, and of the recovery frame;
   side by side with libspandsp's ``plc_rx`` / ``plc_fillin`` through ctypes;
   plus the average per frame of a leg losing 5 % of its packets.
3. G.711 implementation variants tried for the pure-Python conversion.
4. One-off cost of building the G.711 tables (module import).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import math
import random
import statistics
import sys
import time
from array import array
from collections.abc import Callable
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipstack import codec_g711, codec_g722, codec_opus  # noqa: E402
from sipstack.codec_g711 import G711Codec  # noqa: E402
from sipstack.codec_g722 import G722Codec  # noqa: E402
from sipstack.codecs import Codec  # noqa: E402
from sipstack.plc import PacketLossConcealer  # noqa: E402

FRAME_MS = 20


def speech_like(rate: int, seconds: float, seed: int = 1) -> bytes:
    """Harmonics of a wandering 100-220 Hz pitch under a 4 Hz syllable envelope."""
    rng = random.Random(seed)
    n = int(rate * seconds)
    out = []
    phase = 0.0
    f0 = 140.0
    for i in range(n):
        f0 = min(220.0, max(100.0, f0 + rng.uniform(-0.5, 0.5)))
        phase += 2 * math.pi * f0 / rate
        env = 0.5 + 0.5 * math.sin(2 * math.pi * 4 * i / rate)
        v = sum(math.sin(k * phase) / k for k in range(1, 12))
        out.append(int(9000 * env * v / 2 + rng.gauss(0, 100)))
    return array("h", [max(-32768, min(32767, v)) for v in out]).tobytes()


def per_call_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Median CPU microseconds per call over ``repeats`` loops of ``calls`` calls."""
    results = []
    for _ in range(repeats):
        start = time.process_time_ns()
        for _ in range(calls):
            fn()
        results.append((time.process_time_ns() - start) / calls / 1000)
    return statistics.median(results)


def frames_of(pcm: bytes, samples: int) -> list[bytes]:
    size = 2 * samples
    return [pcm[i : i + size] for i in range(0, len(pcm) - size + 1, size)]


def cycler(items: list[bytes]) -> Callable[[], bytes]:
    state = {"i": 0}

    def next_item() -> bytes:
        i = state["i"]
        state["i"] = (i + 1) % len(items)
        return items[i]

    return next_item


def bench_codec(
    name: str, make: Callable[[], Codec], rate: int, args: argparse.Namespace
) -> dict[str, Any]:
    codec = make()
    samples = rate * FRAME_MS // 1000
    frames = frames_of(speech_like(rate, 2.0), samples)
    payloads = [codec.encode(f) for f in frames]
    nf, np_ = cycler(frames), cycler(payloads)
    enc = per_call_us(lambda: codec.encode(nf()), args.frames, args.repeats)
    dec = per_call_us(lambda: codec.decode(np_()), args.frames, args.repeats)
    return {
        "codec": name,
        "encode_us": enc,
        "decode_us": dec,
        "payload_bytes": len(payloads[0]),
        "leg_cpu_percent": (enc + dec) / (FRAME_MS * 1000) * 100,
    }


class Concealer(Protocol):
    def good_frame(self, pcm: bytes) -> bytes: ...
    def conceal(self, samples: int) -> bytes: ...


class SpanDspPlc:
    """libspandsp's plc_* through ctypes, for comparison only."""

    def __init__(self) -> None:
        lib = codec_g722.load_spandsp().lib
        vp, ci = ctypes.c_void_p, ctypes.c_int
        lib.plc_init.argtypes = [vp]
        lib.plc_init.restype = vp
        lib.plc_rx.argtypes = [vp, vp, ci]
        lib.plc_rx.restype = ci
        lib.plc_fillin.argtypes = [vp, vp, ci]
        lib.plc_fillin.restype = ci
        lib.plc_free.argtypes = [vp]
        lib.plc_free.restype = ci
        self._lib = lib
        self._state = lib.plc_init(None)
        self._buf = ctypes.create_string_buffer(4096)

    def good_frame(self, pcm: bytes) -> bytes:
        ctypes.memmove(self._buf, pcm, len(pcm))
        self._lib.plc_rx(self._state, self._buf, len(pcm) // 2)
        return self._buf.raw[: len(pcm)]

    def conceal(self, samples: int) -> bytes:
        self._lib.plc_fillin(self._state, self._buf, samples)
        return self._buf.raw[: 2 * samples]


def bench_plc(make: Callable[[], Concealer], args: argparse.Namespace) -> dict[str, float]:
    frames = frames_of(speech_like(8000, 2.0, seed=3), 160)
    plc = make()
    nf = cycler(frames)
    good = per_call_us(lambda: plc.good_frame(nf()), args.frames, args.repeats)

    # Loss episodes: good, good, lost, lost, then the recovery frame; each step
    # timed on its own (the timer's own cost, < 1 us, is included).
    steps: dict[str, list[float]] = {"first": [], "next": [], "recovery": []}
    clock = time.process_time_ns
    for _ in range(max(50, args.frames // 10)):
        plc.good_frame(nf())
        plc.good_frame(nf())
        for key in ("first", "next"):
            t0 = clock()
            plc.conceal(160)
            steps[key].append((clock() - t0) / 1000)
        frame = nf()
        t0 = clock()
        plc.good_frame(frame)
        steps["recovery"].append((clock() - t0) / 1000)
    first, second, recovery = (statistics.median(steps[k]) for k in ("first", "next", "recovery"))

    rng = random.Random(7)
    pattern = [rng.random() < 0.05 for _ in range(1000)]
    leg = make()
    state = {"i": 0}

    def lossy_frame() -> None:
        i = state["i"]
        state["i"] = (i + 1) % len(pattern)
        if pattern[i]:
            leg.conceal(160)
        else:
            leg.good_frame(nf())

    avg = per_call_us(lossy_frame, len(pattern), args.repeats)
    return {
        "good_frame_us": good,
        "first_lost_frame_us": first,
        "next_lost_frame_us": second,
        "recovery_frame_us": recovery,
        "avg_frame_at_5pct_loss_us": avg,
    }


def bench_variants(args: argparse.Namespace) -> list[dict[str, Any]]:
    pcm = frames_of(speech_like(8000, 0.2), 160)[3]
    tup = codec_g711._ULAW_ENC
    lst = list(tup)
    tbytes = bytes(tup)
    low, high = codec_g711._ULAW_DEC
    dec_list = array("h", codec_g711.ulaw_decode(bytes(range(256)))).tolist()
    payload = codec_g711.ulaw_encode(pcm)
    expected_enc, expected_dec = payload, codec_g711.ulaw_decode(payload)

    def dec_translate() -> bytes:
        out = bytearray(320)
        out[0::2] = payload.translate(low)
        out[1::2] = payload.translate(high)
        return bytes(out)

    variants: list[tuple[str, str, Callable[[], bytes], bytes]] = [
        (
            "encode",
            "itemgetter(*array) over tuple (used)",
            lambda: bytes(itemgetter(*array("h", pcm))(tup)),
            expected_enc,
        ),
        (
            "encode",
            "itemgetter(*array) over list",
            lambda: bytes(itemgetter(*array("h", pcm))(lst)),
            expected_enc,
        ),
        (
            "encode",
            "map(list.__getitem__, array)",
            lambda: bytes(map(lst.__getitem__, array("h", pcm))),
            expected_enc,
        ),
        (
            "encode",
            "map(bytes.__getitem__, array)",
            lambda: bytes(map(tbytes.__getitem__, array("h", pcm))),
            expected_enc,
        ),
        (
            "encode",
            "map(list.__getitem__, memoryview.cast)",
            lambda: bytes(map(lst.__getitem__, memoryview(pcm).cast("h"))),
            expected_enc,
        ),
        ("decode", "2 x bytes.translate + slice interleave (used)", dec_translate, expected_dec),
        (
            "decode",
            "array(map(list.__getitem__, payload))",
            lambda: array("h", map(dec_list.__getitem__, payload)).tobytes(),
            expected_dec,
        ),
    ]
    out = []
    for kind, label, fn, expected in variants:
        assert fn() == expected, label
        out.append({"op": kind, "variant": label, "us": per_call_us(fn, args.frames, args.repeats)})
    return out


def bench_import() -> float:
    start = time.process_time_ns()
    for _ in range(5):
        importlib.reload(codec_g711)
    return (time.process_time_ns() - start) / 5 / 1e6


def _json_lines(results: dict[str, Any]) -> list[dict[str, object]]:
    """run_all lines: PLC vs libspandsp (a peer measured in the same run), codec legs alone."""
    ours = results["plc"]["python (sipstack.plc)"]["avg_frame_at_5pct_loss_us"]
    peer = results["plc"]["libspandsp plc_* via ctypes"]["avg_frame_at_5pct_loss_us"]
    lines: list[dict[str, object]] = [
        {
            "name": "packet-loss concealment, average frame at 5 % loss",
            "ours": round(ours, 2),
            "peer": round(peer, 2),
            "ratio": round(ours / peer, 2),
            "unit": "us CPU per 20 ms frame",
            "better": "lower",
            "peer_name": "libspandsp plc_* (C, via ctypes)",
            "target": "well inside the frame budget (chosen for no-loss cost, see below)",
            "note": "good frame: ours {:.1f} us, libspandsp {:.1f} us".format(
                results["plc"]["python (sipstack.plc)"]["good_frame_us"],
                results["plc"]["libspandsp plc_* via ctypes"]["good_frame_us"],
            ),
        }
    ]
    for r in results["codecs"]:
        if r["codec"] in ("PCMU + PLC", "G722 + PLC (libspandsp)"):
            lines.append(
                {
                    "name": f"codec {r['codec']}, encode + decode share of a leg",
                    "ours": round(r["leg_cpu_percent"], 3),
                    "peer": None,
                    "ratio": None,
                    "unit": "% of a core",
                    "better": "lower",
                    "peer_name": "",
                    "target": "",
                    "note": f"encode {r['encode_us']:.1f} us, decode {r['decode_us']:.1f} us",
                }
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--frames", type=int, default=2000, help="calls per timing loop")
    parser.add_argument("--repeats", type=int, default=7, help="timing loops (median taken)")
    args = parser.parse_args()

    codecs: list[tuple[str, Callable[[], Codec], int]] = [
        ("PCMU + PLC", lambda: G711Codec("PCMU"), 8000),
        ("PCMU, no PLC", lambda: G711Codec("PCMU", plc=False), 8000),
        ("PCMA + PLC", lambda: G711Codec("PCMA"), 8000),
        ("G722 + PLC (libspandsp)", lambda: G722Codec(), 16000),
        ("G722, no PLC (libspandsp)", lambda: G722Codec(plc=False), 16000),
    ]
    if codec_opus.available():
        codecs += [
            ("Opus 16 kHz, complexity 10 (libopus)", lambda: codec_opus.OpusCodec(16000), 16000),
            (
                "Opus 16 kHz, complexity 5 (libopus)",
                lambda: codec_opus.OpusCodec(16000, complexity=5),
                16000,
            ),
        ]
    results: dict[str, Any] = {
        "python": sys.version.split()[0],
        "codecs": [bench_codec(n, m, r, args) for n, m, r in codecs],
        "plc": {
            "python (sipstack.plc)": bench_plc(PacketLossConcealer, args),
            "libspandsp plc_* via ctypes": bench_plc(SpanDspPlc, args),
        },
        "variants": bench_variants(args),
        "g711_import_ms": bench_import(),
    }
    if args.json:
        # full figures on stderr (for the log), run_all's result lines on stdout
        print(json.dumps(results, indent=2), file=sys.stderr)
        for line in _json_lines(results):
            print(json.dumps(line), flush=True)
        return
    print(f"Python {results['python']}; microseconds of CPU per 20 ms frame (median)\n")
    print("| codec | encode | decode | payload | CPU % of a 20 ms leg |")
    print("|---|---:|---:|---:|---:|")
    for r in results["codecs"]:
        print(
            f"| {r['codec']} | {r['encode_us']:.1f} us | {r['decode_us']:.1f} us | "
            f"{r['payload_bytes']} B | {r['leg_cpu_percent']:.3f} % |"
        )
    print(
        "\n| PLC (8 kHz, 20 ms frames) | good frame | 1st lost frame | next lost frame | "
        "recovery frame | average at 5 % loss |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name, p in results["plc"].items():
        print(
            f"| {name} | {p['good_frame_us']:.1f} us | {p['first_lost_frame_us']:.0f} us | "
            f"{p['next_lost_frame_us']:.0f} us | {p['recovery_frame_us']:.0f} us | "
            f"{p['avg_frame_at_5pct_loss_us']:.1f} us |"
        )
    print("\n| G.711 variant (160 samples) | us |")
    print("|---|---:|")
    for v in results["variants"]:
        print(f"| {v['op']}: {v['variant']} | {v['us']:.1f} |")
    print(f"\nG.711 module import (both tables built): {results['g711_import_ms']:.1f} ms CPU")


if __name__ == "__main__":
    main()
