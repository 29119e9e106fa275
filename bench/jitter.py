"""Per-packet CPU cost of the media receive/send path: RTP parse, receiver, jitter buffer.

Run from the repository root::

    .venv/bin/python bench/jitter.py            # best of 5 repeats of 30,000 packets
    .venv/bin/python bench/jitter.py --json     # table on stderr, result lines on stdout

Reports microseconds of process CPU time per packet for each stage of a call's
per-packet work, and what one minute of a G.711 call (50 packets/s each way)
costs in CPU milliseconds. No sockets, no codec: the SIP-stack part only.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable

from sipstack.dtmf import DtmfReceiver
from sipstack.jitter import JitterBuffer
from sipstack.rtp import build_rtp, parse_rtp
from sipstack.rtp_session import RtpReceiver, RtpSender

N = 30_000


def best(fn: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return min(times) / N * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="result lines for bench/run_all.py")
    args = ap.parse_args()
    rng = random.Random(1)
    payload = b"\xd5" * 160
    packets = [build_rtp(0, k & 0xFFFF, (k * 160) & 0xFFFFFFFF, 0x1234, payload) for k in range(N)]
    jitter = [rng.uniform(0, 0.03) for _ in range(N)]
    addr = ("192.0.2.1", 4000)

    def send() -> None:
        tx = RtpSender(1, 0, 8000, random.Random(2))
        for k in range(N):
            tx.send(payload, 160, k * 0.02)

    def parse() -> None:
        for data in packets:
            parse_rtp(data)

    def receive() -> None:
        rx = RtpReceiver(8000, remote_addr=addr)
        for k, data in enumerate(packets):
            rx.receive(data, addr, k * 0.02)

    def jbuf() -> None:
        jb = JitterBuffer()
        for k in range(N):
            jb.put(k & 0xFFFF, (k * 160) & 0xFFFFFFFF, payload, k * 0.02 + jitter[k])
            jb.get(k * 0.02 + 0.01)

    def whole() -> None:
        rx = RtpReceiver(8000, remote_addr=addr)
        jb = JitterBuffer()
        dtmf = DtmfReceiver()
        for k, data in enumerate(packets):
            now = k * 0.02 + jitter[k]
            pkt = rx.receive(data, addr, now)
            if pkt is not None:
                if pkt.payload_type == 101:
                    dtmf.receive(pkt.payload, pkt.timestamp, now)
                else:
                    jb.put(pkt.sequence, pkt.timestamp, pkt.payload, now)
            jb.get(k * 0.02 + 0.01)

    rows = [
        ("RtpSender.send", send),
        ("parse_rtp", parse),
        ("RtpReceiver.receive", receive),
        ("JitterBuffer put+get", jbuf),
        ("receive path (rx+jbuf)", whole),
    ]
    out = sys.stderr if args.json else sys.stdout  # with --json, stdout is result lines only
    print(f"{'stage':28} {'us/packet':>10} {'ms CPU per call-minute':>24}", file=out)
    for name, fn in rows:
        us = best(fn, args.repeats)
        print(f"{name:28} {us:10.2f} {us * 3000 / 1000:24.2f}", file=out)
        if args.json and fn is whole:
            line = {
                "name": "RTP receive path (receiver + jitter buffer) per packet",
                "ours": round(us, 2),
                "peer": None,
                "ratio": None,
                "unit": "us CPU per packet",
                "better": "lower",
                "peer_name": "",
                "target": "",
                "note": f"{us * 3:.1f} ms CPU per call-minute at 50 packets/s",
            }
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
