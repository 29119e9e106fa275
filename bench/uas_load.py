"""Transactions per second as a UAS under SIPp load: our user agent vs baresip, same machine.

Run from the repository root (needs ``sipp``; baresip is skipped with a note if absent)::

    .venv/bin/python bench/uas_load.py            # 8 s per rate step, factor 1.25 steps
    .venv/bin/python bench/uas_load.py --quick    # 4 s steps, factor 1.6
    .venv/bin/python bench/uas_load.py --json     # report on stderr, result lines on stdout

The load: SIPp's UAC sends out-of-dialog OPTIONS over UDP at a fixed rate
(``-r``), each a new transaction (RFC 3261 11: the UAS answers 200 with what it
supports), retransmitted by SIPp every 500 ms until answered (RFC 3261
17.1.2.2 Timer E), failed after 4 s without an answer. For each step the rate
is offered for ``--step`` seconds; a step passes when fewer than 1 % of its
transactions failed and the answered rate reached 95 % of the offered one.
Steps grow by ``--factor`` from ``--start`` until one fails; the figure is the
highest answered rate of a passing step (and the UAS's CPU per transaction
there, from /proc).

The UASes, each alone on the machine while measured:

- ours: a child process (this venv's Python) with a :class:`sipstack.UserAgent`,
  one UDP transport and a local account on the loop, the stack the firmware
  runs (transaction layer, UAS policy, OPTIONS answered from the user agent);
- peer: baresip 1.0.0 with one account and no registration. Why baresip: it
  is a user agent like ours, single-threaded on one event loop (libre), and it
  answers OPTIONS itself (with its capabilities), so both do the same job in
  the same role. Kamailio would be the faster responder but is a multi-process
  proxy whose stateless ``sl_send_reply`` skips the transaction layer a UA
  must keep: a ceiling for a different job, not a peer.

SIPp runs on the same 2-core machine and takes CPU too (alike for both).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")

SCENARIO = """<?xml version="1.0" encoding="UTF-8"?>
<scenario name="bench_options_load">
  <send retrans="500">
    <![CDATA[
      OPTIONS sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
      From: <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 OPTIONS
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Accept: application/sdp
      Content-Length: 0

    ]]>
  </send>
  <recv response="200" timeout="4000"/>
</scenario>
"""

OUR_UAS = textwrap.dedent("""
    import sys
    from sipstack.loop import Loop
    from sipstack.useragent import UserAgent

    loop = Loop()
    ua = UserAgent(loop)
    tid = ua.transport_create("udp", "127.0.0.1", int(sys.argv[1]))
    ua.acc_add_local(tid, is_default=True)
    print("ready", flush=True)
    loop.run()
""")


def free_port() -> int:
    """A UDP port free on 127.0.0.1 now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass(frozen=True, slots=True)
class Step:
    """One rate step: offered rate, answered rate, failures, the UAS's CPU per transaction."""

    offered: float
    answered: float
    total: int
    failed: int
    cpu_us: float

    @property
    def passed(self) -> bool:
        """Under 1 % failures and at least 95 % of the offered rate answered."""
        return (
            self.total > 0
            and self.failed < 0.01 * self.total
            and (self.answered >= 0.95 * self.offered)
        )


def sipp_step(
    target: tuple[str, int], rate: float, seconds: float, workdir: Path, pid: int
) -> Step:
    """Offer ``rate`` OPTIONS/s for ``seconds`` with SIPp; count what was answered."""
    scenario = workdir / "options.xml"
    scenario.write_text(SCENARIO)
    stat = workdir / f"stat-{rate:.0f}.csv"
    count = max(1, round(rate * seconds))
    argv = [
        "sipp",
        f"{target[0]}:{target[1]}",
        "-sf",
        str(scenario),
        "-t",
        "u1",
        "-i",
        "127.0.0.1",
        "-p",
        str(free_port()),
        "-s",
        "bench",
        "-r",
        str(round(rate)),
        "-rp",
        "1000",
        "-m",
        str(count),
        "-l",
        "100000",
        "-nostdin",
        "-timeout",
        f"{seconds + 20:.0f}s",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
    ]
    cpu0 = cpu_seconds(pid)
    t0 = time.monotonic()
    proc = subprocess.run(
        argv,
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=seconds + 40,
        check=False,
    )
    elapsed = time.monotonic() - t0
    cpu = cpu_seconds(pid) - cpu0
    ok, failed = _sipp_counts(stat)
    if ok + failed == 0:
        raise RuntimeError(f"SIPp ran no calls (exit {proc.returncode}): {proc.stderr[-2000:]!r}")
    # answered rate over the offering period; SIPp's run also holds its start-up and the
    # wait for the last answers (up to 1 s is not counted against the UAS)
    period = max(count / rate, elapsed - 1.0)
    return Step(rate, ok / period, ok + failed, failed, cpu / max(ok, 1) * 1e6)


def _sipp_counts(stat: Path) -> tuple[int, int]:
    """(successful, failed) cumulative counts from the last line of SIPp's -trace_stat CSV."""
    try:
        rows = [r for r in stat.read_text().splitlines() if r.strip()]
    except FileNotFoundError:
        return (0, 0)
    if len(rows) < 2:
        return (0, 0)
    head = rows[0].split(";")
    last = rows[-1].split(";")
    values = dict(zip(head, last, strict=False))
    return int(values.get("SuccessfulCall(C)", 0)), int(values.get("FailedCall(C)", 0))


def ladders(
    targets: dict[str, tuple[tuple[str, int], int]], args: argparse.Namespace, workdir: Path
) -> dict[str, list[Step]]:
    """Steps of growing rate, the UASes taking turns at each rate, until each has failed.

    Taking turns (ours, then the peer, at the same rate) keeps the other jobs on
    this shared machine from loading one ladder more than the other.
    """
    steps: dict[str, list[Step]] = {name: [] for name in targets}
    running = set(targets)
    rate = args.start
    while running and rate <= args.max:
        for name, (target, pid) in targets.items():
            if name not in running:
                continue
            step = sipp_step(target, rate, args.step, workdir, pid)
            steps[name].append(step)
            print(
                f"  {name:8s} offered {step.offered:7.0f}/s answered {step.answered:7.0f}/s "
                f"failed {step.failed}/{step.total}  UAS CPU {step.cpu_us:.0f} us/transaction  "
                f"load {os.getloadavg()[0]:.1f}  {'pass' if step.passed else 'FAIL'}",
                flush=True,
            )
            if not step.passed:
                running.discard(name)
            time.sleep(1.0)  # retransmission tails and queues drain before the next step
        rate *= args.factor
    return steps


@contextlib.contextmanager
def our_uas(port: int) -> Iterator[int]:
    """Our user agent as a child process on ``port``; yields its pid."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", OUR_UAS, str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("our UAS did not start")
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def baresip_uas(port: int, workdir: Path) -> Iterator[int]:
    """baresip with one account (no registration) on ``port``; yields its pid."""
    conf = workdir / "baresip"
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "config").write_text(
        f"sip_listen 127.0.0.1:{port}\nnet_interface 127.0.0.1\n"
        "module_path /usr/lib/baresip/modules\nmodule g711.so\n"
        "module_app account.so\n"
    )
    (conf / "accounts").write_text(f"<sip:bench@127.0.0.1:{port}>;regint=0\n")
    (conf / "contacts").write_text("")
    log = open(workdir / "baresip.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        ["baresip", "-f", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
    )
    try:
        deadline = time.monotonic() + 10
        while not _udp_bound(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"baresip did not listen on {port}; see {workdir}/baresip.log")
            time.sleep(0.1)
        time.sleep(0.5)
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _udp_bound(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _cpu_at_common_rate(steps: dict[str, list[Step]]) -> tuple[float, float, float] | None:
    """(rate, our CPU us, peer CPU us) at the highest rate both passed."""
    ours = {round(s.offered): s for s in steps.get("ours", []) if s.passed}
    peer = {round(s.offered): s for s in steps.get("baresip", []) if s.passed}
    common = sorted(set(ours) & set(peer))
    if not common:
        return None
    rate = common[-1]
    return (float(rate), ours[rate].cpu_us, peer[rate].cpu_us)


def best(steps: list[Step]) -> Step | None:
    """The passing step with the highest answered rate."""
    passing = [s for s in steps if s.passed]
    return max(passing, key=lambda s: s.answered) if passing else None


def main(argv: list[str] | None = None) -> int:
    """Run both ladders; print the report (and run_all result lines with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="4 s steps, factor 1.6")
    ap.add_argument("--step", type=float, default=8.0, help="seconds per rate step")
    ap.add_argument("--start", type=float, default=100.0, help="first rate (OPTIONS/s)")
    ap.add_argument("--factor", type=float, default=1.25, help="rate growth per step")
    ap.add_argument("--max", type=float, default=40000.0, help="highest rate tried")
    ap.add_argument("--only", choices=["ours", "baresip"])
    ap.add_argument("--json", action="store_true", help="result lines for bench/run_all.py")
    args = ap.parse_args(argv)
    if args.quick:
        args.step, args.factor = 4.0, 1.6
    if shutil.which("sipp") is None:
        print("sipp is not installed (Debian: sip-tester)", file=sys.stderr)
        return 1
    all_steps: dict[str, list[Step]] = {}
    with (
        contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext(),
        tempfile.TemporaryDirectory(prefix="bench-uas-") as d,
    ):
        work = Path(d)
        print(f"OPTIONS over UDP, {args.step:.0f} s per step, x{args.factor} per step")
        with contextlib.ExitStack() as stack:
            targets: dict[str, tuple[tuple[str, int], int]] = {}
            if args.only != "baresip":
                port = free_port()
                targets["ours"] = (("127.0.0.1", port), stack.enter_context(our_uas(port)))
            if args.only != "ours":
                if shutil.which("baresip") is None:
                    print("baresip is not installed: peer skipped")
                else:
                    port = free_port()
                    pid = stack.enter_context(baresip_uas(port, work))
                    targets["baresip"] = (("127.0.0.1", port), pid)
            all_steps = ladders(targets, args, work)
        results = {name: best(steps) for name, steps in all_steps.items()}
        for name, step in results.items():
            if step is None:
                print(f"{name}: no step passed (lower --start)")
            else:
                print(
                    f"{name}: {step.answered:.0f} transactions/s sustained "
                    f"(offered {step.offered:.0f}/s, {step.failed} of {step.total} failed), "
                    f"UAS CPU {step.cpu_us:.0f} us per transaction"
                )
    ours, peer = results.get("ours"), results.get("baresip")
    if args.json and ours is not None:
        line = {
            "name": "UAS transactions/s (OPTIONS over UDP, SIPp, <1 % failed)",
            "ours": round(ours.answered),
            "peer": round(peer.answered) if peer is not None else None,
            "ratio": round(ours.answered / peer.answered, 3) if peer is not None else None,
            "unit": "transactions/s",
            "better": "higher",
            "peer_name": "baresip 1.0.0",
            "target": "",
            "note": f"UAS CPU per transaction at that rate: ours {ours.cpu_us:.0f} us"
            + (f", baresip {peer.cpu_us:.0f} us" if peer is not None else "")
            + f"; steps of {args.step:.0f} s growing x{args.factor}",
        }
        print(json.dumps(line), flush=True)
        common = _cpu_at_common_rate(all_steps)
        if common is not None:
            rate, mine, theirs = common
            line = {
                "name": f"UAS CPU per OPTIONS transaction (at {rate:.0f}/s, both passing)",
                "ours": round(mine),
                "peer": round(theirs),
                "ratio": round(mine / theirs, 2),
                "unit": "us",
                "better": "lower",
                "peer_name": "baresip 1.0.0",
                "target": "",
                "note": "process CPU time from /proc over the step, idle loop included",
            }
            print(json.dumps(line), flush=True)
    return 0 if ours is not None or args.only == "baresip" else 1


if __name__ == "__main__":
    raise SystemExit(main())
