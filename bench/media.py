"""Media-graph benchmark (issue 4): CPU per 20 ms frame of mixing, resampling, tones, WAV.

Run:  .venv/bin/python bench/media.py            (prints a Markdown table)
      .venv/bin/python bench/media.py --json     (run_all result lines; all figures on stderr)

Each figure is the *minimum* over ``--repeats`` runs of the CPU time
(``time.process_time_ns``) of ``--frames`` calls, divided by the number of
calls: microseconds per 20 ms frame. The minimum, not the median, because a
shared development machine adds noise that only ever makes things slower.
"% core" is that cost over 20 ms: the share of one core spent at 50 frames/s.

Sections:

1. Saturating mix of two frames: the three ways tried. ``lanes`` (packed big
   ints, what :mod:`sipstack.media_graph` uses), ``array+map``
   (``array('h', map(add, a, b))`` with an OverflowError fallback) and a list
   comprehension with min/max.
2. Conference ticks of realistic graphs (door station in a call; desk phone
   with a call, a tone and a recorder; three-party).
3. 8 <-> 16 kHz resampling, tone generation, WAV playback.
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import sys
import time
from array import array
from collections.abc import Callable
from functools import partial
from itertools import repeat
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sipstack.media_graph import Conference, Resampler, mix_frames  # noqa: E402
from sipstack.tones import TONE_PLANS, ToneGenerator, dtmf_tone  # noqa: E402
from sipstack.wav_io import WavClip, WavPlayer  # noqa: E402


def sine(freq: float, rate: int, count: int, amplitude: float = 9000.0) -> bytes:
    return array(
        "h", (round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(count))
    ).tobytes()


def measure(fn: Callable[[], object], frames: int, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.process_time_ns()
        for _ in range(frames):
            fn()
        best = min(best, (time.process_time_ns() - start) / frames / 1000.0)
    return best


class Const:
    def __init__(self, frame: bytes) -> None:
        self.frame = frame

    def read(self, now: float) -> bytes | None:
        return self.frame


class Null:
    def write(self, frame: bytes, now: float) -> None:
        pass


def mix_variants(n: int) -> dict[str, Callable[[], object]]:
    a, b = sine(440, 8000, n), sine(1000, 8000, n)
    add = operator.add

    def array_map() -> bytes:
        x, y = array("h", a), array("h", b)
        try:
            return array("h", map(add, x, y)).tobytes()
        except OverflowError:
            s = map(min, map(max, map(add, x, y), repeat(-32768)), repeat(32767))
            return array("h", s).tobytes()

    def listcomp() -> bytes:
        x, y = array("h", a), array("h", b)
        summed = [max(-32768, min(32767, p + q)) for p, q in zip(x, y, strict=True)]
        return array("h", summed).tobytes()

    return {
        f"mix 2 x {n} (lanes)": lambda: mix_frames([(a, 1.0), (b, 1.0)], n),
        f"mix 2 x {n} (lanes, gains 0.7/1.3)": lambda: mix_frames([(a, 0.7), (b, 1.3)], n),
        f"mix 2 x {n} (array+map)": array_map,
        f"mix 2 x {n} (list comprehension)": listcomp,
    }


def graphs() -> dict[str, Callable[[], object]]:
    out: dict[str, Callable[[], object]] = {}
    for rate in (8000, 16000):
        n = rate // 50
        # door station in a call: device <-> call, nothing else (pass-through path)
        conf = Conference(rate, n)
        dev = conf.add_port("device", Const(sine(300, rate, n)), Null())
        call = conf.add_port("call", Const(sine(700, rate, n)), Null())
        conf.connect_all([dev, call])
        out[f"tick: device + call @{rate}"] = partial(conf.tick, 0.0)
        # desk phone: device, call, call-waiting tone to the speaker, recorder of both
        conf = Conference(rate, n)
        dev = conf.add_port("device", Const(sine(300, rate, n)), Null())
        call = conf.add_port("call", Const(sine(700, rate, n)), Null())
        tone = conf.add_port("tone", Const(sine(425, rate, n, 3000.0)))
        rec = conf.add_port("recorder", sink=Null())
        conf.connect_all([dev, call])
        conf.connect(tone, dev)
        conf.connect(dev, rec)
        conf.connect(call, rec)
        out[f"tick: device + call + tone + recorder @{rate}"] = partial(conf.tick, 0.0)
        # three-party conference on the device
        conf = Conference(rate, n)
        slots = [
            conf.add_port(f"p{i}", Const(sine(300 + 200 * i, rate, n)), Null()) for i in range(3)
        ]
        conf.connect_all(slots)
        out[f"tick: 3-party mesh @{rate}"] = partial(conf.tick, 0.0)
    return out


def others() -> dict[str, Callable[[], object]]:
    up, down = Resampler(8000, 16000), Resampler(16000, 8000)
    f8, f16 = sine(1000, 8000, 160), sine(1000, 16000, 320)
    gen = ToneGenerator(8000, 160)
    gen.play(TONE_PLANS["EU"].ringback)
    gen16 = ToneGenerator(16000, 320)
    gen16.play(dtmf_tone("5", duration_ms=10**6))
    player = WavPlayer(WavClip(sine(440, 16000, 16000), 16000, 16000), 320, loop=True)
    return {
        "resample 8k->16k (160 in)": lambda: up.process(f8),
        "resample 16k->8k (320 in)": lambda: down.process(f16),
        "tone: EU ringback @8000": lambda: gen.read(0.0),
        "tone: DTMF 5 @16000": lambda: gen16.read(0.0),
        "WAV player loop @16000": lambda: player.read(0.0),
    }


def _json_lines(results: dict[str, float]) -> list[dict[str, object]]:
    """run_all lines: the mix we use vs the usual array+map way; the in-call tick alone."""
    ours, peer = results["mix 2 x 160 (lanes)"], results["mix 2 x 160 (array+map)"]
    tick = "tick: device + call @8000"
    return [
        {
            "name": "saturating mix of two 160-sample frames",
            "ours": round(ours, 2),
            "peer": round(peer, 2),
            "ratio": round(ours / peer, 3),
            "unit": "us CPU per frame",
            "better": "lower",
            "peer_name": "array('h', map(add, a, b)) (the plain Python way)",
            "target": "",
            "note": "",
        },
        {
            "name": "conference tick, device + call at 8 kHz",
            "ours": round(results[tick], 2),
            "peer": None,
            "ratio": None,
            "unit": "us CPU per 20 ms frame",
            "better": "lower",
            "peer_name": "",
            "target": "",
            "note": "",
        },
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    cases = {**mix_variants(160), **mix_variants(320), **graphs(), **others()}
    results = {name: measure(fn, args.frames, args.repeats) for name, fn in cases.items()}
    if args.json:
        # every figure on stderr (for the log), run_all's result lines on stdout
        print(json.dumps({k: round(v, 2) for k, v in results.items()}, indent=2), file=sys.stderr)
        for line in _json_lines(results):
            print(json.dumps(line), flush=True)
        return
    print(f"Python {sys.version.split()[0]}, {args.frames} frames x {args.repeats} runs (min)\n")
    print("| operation | us / frame | % core at 50 frames/s |")
    print("|---|---:|---:|")
    for name, us in results.items():
        print(f"| {name} | {us:.1f} | {us / 200.0:.3f} |")


if __name__ == "__main__":
    main()
