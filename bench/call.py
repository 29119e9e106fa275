"""CPU cost of a two-way call: two of our instances vs two baresip instances, on loopback.

Run from the repository root::

    .venv/bin/python bench/call.py                     # PCMU and G722, 60 s each, ours + baresip
    .venv/bin/python bench/call.py --seconds 20 --codec PCMU --only ours
    .venv/bin/python bench/call.py --json    # table on stderr, one result line per codec

Each side of a call is its own process. Ours: ``bench/call.py --child`` runs a
UserAgent + CallManager + RtpMediaFactory on one loop; the callee answers, the
caller dials with a real INVITE on 127.0.0.1; the media clock is the loop
timer (20 ms ticks), the audio endpoint a 1 kHz tone source (no recorder), the
conference runs at the codec's rate (no resampling). baresip: ``aubridge`` as
source and player (a paced in-process loop: a player fed by the call, whose
audio goes back out as the source), so it runs at real time without a sound
card. CPU is read from ``/proc/PID/stat`` (utime + stime) over a window that
starts once media flows and ends before hang-up. Packet rates are checked:
ours from the child's own counters, baresip from its RTCP summary.

Output: a Markdown table, CPU seconds per minute of call per endpoint and the
same as % of one core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
BARESIP_MODULES = "/usr/lib/baresip/modules"
#: PulseAudio null sink that paces baresip (see ensure_pulse()).
PULSE_SINK = "bench_call"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/PID/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- our child process --------------------------------------------------------------------


def child(role: str, port: int, peer_port: int, codec: str, rtp_base: int) -> None:
    """One endpoint: answer (callee) or dial (caller); report when media flows; run until EOF."""
    from sipstack.calls import CallManager, CallMediaState, IncomingCall, MediaStatus
    from sipstack.loop import Loop
    from sipstack.media_factory import RtpMediaFactory, file_endpoint
    from sipstack.media_session import RtpPortAllocator
    from sipstack.useragent import UserAgent

    loop = Loop()
    ua = UserAgent(loop)
    tid = ua.transport_create("udp", "127.0.0.1", port)
    acc = ua.acc_add_local(tid)
    rate = 16000 if codec == "G722" else 8000
    frame = rate // 50
    media = RtpMediaFactory(
        loop,
        ports=RtpPortAllocator(rtp_base, rtp_base + 99),
        codecs=(codec,),
        sample_rate=rate,
        endpoint=file_endpoint(rate, frame, tone_hz=1000),
    )
    calls: list[int] = []
    reported = [False]

    def on_event(event: object) -> None:
        if isinstance(event, IncomingCall):
            calls.append(event.call_id)
            manager.call_answer(event.call_id, 200)
        elif (
            isinstance(event, CallMediaState)
            and event.status is MediaStatus.ACTIVE
            and not reported[0]
        ):
            reported[0] = True
            print(json.dumps({"media": True}), flush=True)

    manager = CallManager(ua, on_event=on_event, media=media)
    media.on_dtmf = manager.on_media_dtmf
    if role == "caller":
        calls.append(manager.call_make_call(acc, f"sip:127.0.0.1:{peer_port}"))

    def on_stdin() -> None:
        if not os.read(sys.stdin.fileno(), 4096):
            loop.stop()

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    profile_to = os.environ.get("BENCH_CALL_PROFILE")  # a directory: cProfile each child
    if profile_to:
        import cProfile

        with cProfile.Profile() as prof:
            loop.run()
        prof.dump_stats(f"{profile_to}/{role}.prof")
    else:
        loop.run()
    stats = media.rtp_stats(calls[0]) if calls else None
    out: dict[str, object] = {"done": True}
    if stats is not None and stats.rtp is not None and stats.jitter is not None:
        out.update(
            sent=stats.rtp.packets_sent,
            received=stats.rtp.packets_received,
            lost=stats.rtp.cumulative_lost,
            jb_delay_ms=round(stats.jitter.current_delay * 1000, 1),
        )
    print(json.dumps(out), flush=True)
    media.close_all()
    ua.shutdown(timeout=0)
    loop.close()


@dataclass
class Result:
    stack: str
    codec: str
    cpu_per_min: tuple[float, float]  # seconds of CPU per minute of call, per endpoint
    rates: tuple[float, float]  # RTP packets/s sent by each endpoint
    note: str = ""


def run_ours(codec: str, seconds: float) -> Result:
    ports = (free_port(), free_port())
    procs = []
    for i, role in enumerate(("callee", "caller")):
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            role,
            str(ports[i]),
            str(ports[1 - i]),
            codec,
            str(41000 + 200 * i),
        ]
        procs.append(
            subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
            )
        )
        if role == "callee":
            time.sleep(0.5)  # let the callee bind its SIP port
    try:
        for p in procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if not line or not json.loads(line).get("media"):
                raise RuntimeError(f"our endpoint pid {p.pid} did not start media: {line!r}")
        time.sleep(1.0)  # the jitter buffer and RTCP settle
        before = [cpu_seconds(p.pid) for p in procs]
        t0 = time.monotonic()
        time.sleep(seconds)
        after = [cpu_seconds(p.pid) for p in procs]
        elapsed = time.monotonic() - t0
    finally:
        reports = []
        for p in procs:
            assert p.stdin is not None and p.stdout is not None
            p.stdin.close()
            reports.append(json.loads(p.stdout.readline() or "{}"))
            p.wait(10)
    cpu = tuple(60 * (a - b) / elapsed for a, b in zip(after, before, strict=True))
    total = elapsed + 1.0  # media ran about this long before the window, too
    rates = tuple(float(r.get("sent", 0)) / total for r in reports)
    note = ", ".join(
        f"{name}: sent {r.get('sent')} recv {r.get('received')} lost {r.get('lost')} "
        f"jb {r.get('jb_delay_ms')} ms"
        for name, r in zip(("callee", "caller"), reports, strict=True)
    )
    return Result("ours (Python)", codec, (cpu[0], cpu[1]), (rates[0], rates[1]), note)


# -- baresip --------------------------------------------------------------------------------


def baresip_config(workdir: Path, sip_port: int, rtp_low: int, codec: str, device: str) -> None:
    module = {"PCMU": "g711.so", "PCMA": "g711.so", "G722": "g722.so"}[codec]
    rate = 16000 if codec == "G722" else 8000
    workdir.mkdir(parents=True)
    (workdir / "config").write_text(
        "\n".join(
            [
                f"sip_listen 127.0.0.1:{sip_port}",
                "net_interface 127.0.0.1",
                f"rtp_ports {rtp_low}-{rtp_low + 9}",
                f"audio_source pulse,{PULSE_SINK}.monitor",
                f"audio_player pulse,{PULSE_SINK}",
                f"audio_alert pulse,{PULSE_SINK}",
                f"ausrc_srate {rate}",
                f"auplay_srate {rate}",
                "ausrc_channels 1",
                "auplay_channels 1",
                "rtcp_enable yes",
                f"module_path {BARESIP_MODULES}",
                f"module {module}",
                "module pulse.so",
                "module rtcpsummary.so",
                "module_app account.so",
                "module_app menu.so",
                "",
            ]
        )
    )
    (workdir / "accounts").write_text(
        f"<sip:b@127.0.0.1:{sip_port}>;regint=0;answermode=auto;audio_codecs={codec}\n"
    )
    (workdir / "contacts").write_text("")


def run_baresip(codec: str, seconds: float) -> Result:
    if shutil.which("baresip") is None:
        raise RuntimeError("baresip is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="bench-baresip-"))
    ports = (free_port(), free_port())
    procs: list[subprocess.Popen[bytes]] = []
    logs = []
    for i in range(2):
        workdir = tmp / f"b{i}"
        baresip_config(workdir, ports[i], 43000 + 100 * i, codec, f"dev{i}")
        args = ["baresip", "-f", str(workdir), "-v"]
        if i == 1:
            args += ["-e", f"/dial sip:b@127.0.0.1:{ports[0]}"]
        log = open(workdir / "log.txt", "wb")  # noqa: SIM115 - closed below
        logs.append(log)
        procs.append(
            subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.PIPE)
        )
        time.sleep(0.5)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = (tmp / "b1" / "log.txt").read_text(errors="replace")
            if "Call established" in text or "call established" in text.lower():
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"baresip call not established:\n{text[-3000:]}")
        time.sleep(1.0)
        before = [cpu_seconds(p.pid) for p in procs]
        t0 = time.monotonic()
        time.sleep(seconds)
        after = [cpu_seconds(p.pid) for p in procs]
        elapsed = time.monotonic() - t0
    finally:
        # the caller first: its BYE makes the callee print its RTCP summary too
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
        for log in logs:
            log.close()
    cpu = tuple(60 * (a - b) / elapsed for a, b in zip(after, before, strict=True))
    # the callee's summary counts both directions (what it sent, what the caller sent)
    rates = _baresip_rates((tmp / "b0" / "log.txt").read_text(errors="replace"))
    if os.environ.get("BENCH_CALL_KEEP") is None:
        shutil.rmtree(tmp, ignore_errors=True)
    return Result("baresip 1.0.0", codec, (cpu[0], cpu[1]), (rates[0], rates[1]))


def _baresip_rates(log: str) -> tuple[float, float]:
    """Packets/s (sent, received) from the callee's rtcpsummary line at the caller's BYE.

    ``EX=...;CD=<call seconds>;PR=<received>;PS=<sent>;...``: the counts come
    from the last RTCP reports, so they lag the end of the call by up to one
    report interval (5 s): over a 60 s call the rates read up to ~8 % low.
    """
    found = re.search(r"EX=BareSip;CS=\d+;CD=(\d+);PR=(\d+);PS=(\d+);", log)
    if not found or int(found.group(1)) == 0:
        return (float("nan"), float("nan"))
    duration = int(found.group(1))
    return (int(found.group(3)) / duration, int(found.group(2)) / duration)


def ensure_pulse() -> subprocess.Popen[bytes] | None:
    """A PulseAudio daemon with our null sink; returns the daemon if we started it."""
    started = None
    if subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
        started = subprocess.Popen(
            [
                "pulseaudio",
                "-n",
                "--daemonize=no",
                "--exit-idle-time=-1",
                "-L",
                "module-native-protocol-unix",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                started.kill()
                raise RuntimeError("could not start PulseAudio for baresip")
            time.sleep(0.1)
    sinks = subprocess.run(["pactl", "list", "short", "sinks"], capture_output=True, text=True)
    if PULSE_SINK not in sinks.stdout:
        subprocess.run(
            [
                "pactl",
                "load-module",
                "module-null-sink",
                f"sink_name={PULSE_SINK}",
                "rate=16000",
                "channels=1",
            ],
            check=True,
            capture_output=True,
        )
    return started


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, role, port, peer, codec, rtp_base = sys.argv
        sys.path.insert(0, str(ROOT))
        child(role, int(port), int(peer), codec, int(rtp_base))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--codec", action="append", choices=["PCMU", "PCMA", "G722"])
    ap.add_argument("--only", choices=["ours", "baresip"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    codecs = args.codec or ["PCMU", "G722"]
    results: list[Result] = []
    pulse = ensure_pulse() if args.only != "ours" else None
    try:
        _run_all(codecs, args, results)
    finally:
        if pulse is not None:
            pulse.terminate()
            pulse.wait(5)
    _print(results, args)


def _run_all(codecs: list[str], args: argparse.Namespace, results: list[Result]) -> None:
    for codec in codecs:
        if args.only != "baresip":
            results.append(run_ours(codec, args.seconds))
        if args.only != "ours":
            results.append(run_baresip(codec, args.seconds))


def _print(results: list[Result], args: argparse.Namespace) -> None:
    if args.json:
        # the table for the log on stderr, one result line per codec on stdout (run_all)
        with contextlib.redirect_stdout(sys.stderr):
            _print_table(results, args)
        for line in _json_lines(results):
            print(json.dumps(line), flush=True)
        return
    _print_table(results, args)


def _mean_percent(r: Result) -> float:
    """Mean CPU of the two endpoints as % of one core."""
    return sum(r.cpu_per_min) / 2 / 60 * 100


def _json_lines(results: list[Result]) -> list[dict[str, object]]:
    """One run_all result per codec: our mean % of a core per endpoint vs baresip's."""
    lines: list[dict[str, object]] = []
    for codec in dict.fromkeys(r.codec for r in results):
        ours = next((r for r in results if r.codec == codec and r.stack.startswith("ours")), None)
        peer = next(
            (r for r in results if r.codec == codec and r.stack.startswith("baresip")), None
        )
        if ours is None:
            continue
        mine = _mean_percent(ours)
        theirs = _mean_percent(peer) if peer is not None else None
        lines.append(
            {
                "name": f"CPU per call endpoint, {codec} two-way call",
                "ours": round(mine, 3),
                "peer": round(theirs, 3) if theirs is not None else None,
                "ratio": round(mine / theirs, 3) if theirs else None,
                "unit": "% of a core",
                "better": "lower",
                "peer_name": "baresip 1.0.0 (pulse, paced)",
                "target": "<= baresip and <= pjsua (~1.2 %)",
                "note": "RTP pkt/s sent: ours {:.1f}/{:.1f}".format(*ours.rates)
                + ("" if peer is None else ", baresip {:.1f}/{:.1f}".format(*peer.rates)),
            }
        )
    return lines


def _print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(f"{args.seconds:.0f} s window per call; CPU per endpoint process (callee, caller)\n")
    print(
        "| stack | codec | CPU s / min (callee) | CPU s / min (caller) | % of a core (mean) "
        "| RTP pkt/s sent (callee, caller) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for r in results:
        mean = _mean_percent(r)
        print(
            f"| {r.stack} | {r.codec} | {r.cpu_per_min[0]:.2f} | {r.cpu_per_min[1]:.2f} "
            f"| {mean:.2f} % | {r.rates[0]:.1f}, {r.rates[1]:.1f} |"
        )
    for r in results:
        if r.note:
            print(f"\n{r.stack} {r.codec}: {r.note}")


if __name__ == "__main__":
    main()
