"""SIPp floods against a registered device in a call (issue 8, scanners and floods).

A door device registers to Kamailio (127.0.0.1:PORT, refreshing every few
seconds) and talks to a flat device; after 10 s of quiet call, SIPp floods the
door for 30 s with out-of-dialog OPTIONS, or INVITEs with SDP, at 10,000 per
second from 127.0.0.3, an address the door trusts on no port. Asserted:

- the flood was refused, not served: at most ``burst`` answered 403, the rest
  rate-limited, and the door read (and counted) at least half of what SIPp
  sent rather than leaving it to overflow its socket buffer;
- the door stays registered: ``intercom status`` says so at every sample,
  Kamailio holds a live binding at every sample, and the door's refreshes got
  through (the binding's REGISTER CSeq grew during the flood);
- its memory stays bounded: peak RSS (VmHWM) less than
  :data:`RSS_GROWTH_BOUND_KIB` over the in-call RSS before the flood;
- the call keeps its audio both ways: RTP captured on the wire (tcpdump) has
  no sequence gap, an RFC 3550 jitter of at most 10 ms, and 95 % of its packet
  gaps within ptime + 10 ms (p99 and max are reported beside those of the quiet
  stretch: this shared 2-core machine's scheduler alone can exceed 10 ms); the
  jitter each device reports in ``intercom status --json`` is at most 10 ms.

Figures (SIPp's achieved rate, what the door read, refused and lost, its CPU,
RSS, gaps and jitter before and during the flood) are printed (``pytest -s``)
for docs/robustness.md.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from firmware.screening import Screening
from tests.interop.device import ROOT, Firmware, account_toml, device_toml, poll
from tests.interop.peers import PortAllocator, SippRun

HERE = Path(__file__).parent
SCANNER_HOST = "127.0.0.3"  # any 127/8 address is local; this one is trusted by nobody
FLOOD_SECONDS = 30
OPTIONS_RATE = 10_000
INVITE_RATE = 10_000
PTIME_MS = 20.0
#: Peak RSS may exceed the in-call RSS before the flood by this much (about 15 %
#: of the ~27 MiB the device uses). The refused path keeps no state per request:
#: a rate-limited source's datagrams are dropped unparsed, the first ``burst``
#: requests make one short transaction each, the screen remembers at most 1024
#: sources and the last 10 refusals, and the log gets a few lines per decade of
#: the count. What may grow is the allocator's high-water mark for one read
#: batch (64 datagrams): measured +80 to +280 KiB.
RSS_GROWTH_BOUND_KIB = 4 * 1024
REG_TIMEOUT = 10  # short, so refreshes must get through the flood


# -- SIPp as an untrusted flooder -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FloodFigures:
    """What SIPp's final screen says it sent."""

    created: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.created / self.elapsed_s if self.elapsed_s else 0.0


def flood_figures(run: SippRun) -> FloodFigures:
    """Requests sent (one per call) and the run's total time, from SIPp's final screen.

    The scenario screen's ``Total-time`` is the whole run (the statistics
    screen's ``Elapsed Time`` restarts with each report period).
    """
    text = run.screen_path.read_text(errors="replace")
    total = re.findall(r"([\d.]+) s\s+(\d+)\s+[\d.]+:\d+\(UDP\)", text)
    assert total, text[-3000:]
    seconds, created = total[-1]
    return FloodFigures(int(created), float(seconds))


@pytest.fixture
def flooder(tmp_path: Path, port_allocator: PortAllocator) -> Iterator[Callable[..., SippRun]]:
    """Factory ``flooder(scenario, remote, rate, seconds)``: SIPp from SCANNER_HOST.

    The shared ``sipp`` fixture binds 127.0.0.1 and traces every message; a
    flood needs another source address and no per-message trace (300,000
    lines of it would cost more CPU than the device under test gets).
    """
    if shutil.which("sipp") is None:
        pytest.skip("sipp not installed")
    runs: list[SippRun] = []

    def make(scenario: str, remote: tuple[str, int], rate: int, seconds: int) -> SippRun:
        run = SippRun(
            HERE / "scenarios" / f"{scenario}.xml",
            tmp_path / "flood",
            port=port_allocator.allocate(),
            media_port=port_allocator.allocate(count=4),
            control_port=port_allocator.allocate(),
            remote=remote,
            calls=rate * seconds,
            timeout=seconds + 30,
            service="door",
            extra_args=["-r", str(rate), "-rp", "1000", "-nr"],
            host=SCANNER_HOST,
        )
        at = run.argv.index("-trace_msg")
        del run.argv[at : at + 3]  # -trace_msg -message_file PATH
        runs.append(run)
        run.start()
        return run

    yield make
    for run in runs:
        run.stop()


# -- RTP on the wire --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamFigures:
    """One RTP stream in a time window: count, gaps, RFC 3550 jitter (ms)."""

    packets: int
    gap_p50_ms: float
    gap_p95_ms: float
    gap_p99_ms: float
    max_gap_ms: float
    jitter_ms: float  # the RFC 3550 6.4.1 estimate at the end of the window
    max_jitter_ms: float  # its largest value within the window
    seq_gaps: int

    def __str__(self) -> str:
        return (
            f"{self.packets} packets, gaps p50 {self.gap_p50_ms:.1f} / p95 "
            f"{self.gap_p95_ms:.1f} / p99 "
            f"{self.gap_p99_ms:.1f} / max {self.max_gap_ms:.1f} ms, jitter "
            f"{self.jitter_ms:.1f} (max {self.max_jitter_ms:.1f}) ms, "
            f"{self.seq_gaps} sequence gaps"
        )


class Packet(NamedTuple):
    """One captured UDP/IPv4 packet."""

    time: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


class Capture:
    """tcpdump on lo with a BPF filter (applied in the kernel: the flood costs it nothing).

    ``-U`` writes each packet as it comes, ``-Z root`` keeps tcpdump from
    switching to a user that cannot write the test's directory, ``-B`` gives
    the capture a buffer no burst of RTP/SIP overflows.
    """

    def __init__(self, path: Path, bpf: str) -> None:
        if shutil.which("tcpdump") is None:
            pytest.skip("tcpdump not installed (scripts/bootstrap test installs it)")
        self.path = path
        self.proc = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-U", "-Z", "root", "-B", "8192", "-s", "0"]
            + ["-w", str(path), bpf],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        started = poll(lambda: path.exists() and path.stat().st_size >= 24, 10)
        assert started, f"tcpdump did not start (rc {self.proc.poll()})"

    def stop(self) -> None:
        """End tcpdump (by its PID); the file is complete afterwards."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def packets(self) -> list[Packet]:
        """Every UDP/IPv4 packet in the (classic pcap) file."""
        data = self.path.read_bytes()
        magic = struct.unpack_from("<I", data)[0]
        endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        scale = 1e9 if magic in (0xA1B23C4D, 0x4D3CB2A1) else 1e6
        linktype = struct.unpack_from(endian + "I", data, 20)[0]
        offset = {0: 4, 1: 14, 113: 16, 276: 20}.get(linktype, 14)  # null, ether, SLL, SLL2
        out = []
        at = 24
        while at + 16 <= len(data):
            sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, at)
            ip = data[at + 16 + offset : at + 16 + incl]
            at += 16 + incl
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            sport, dport = struct.unpack_from("!HH", ip, ihl)
            src, dst = socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])
            out.append(Packet(sec + frac / scale, src, sport, dst, dport, ip[ihl + 8 :]))
        return out


def rtp_streams(
    packets: list[Packet], start: float, end: float
) -> dict[tuple[int, int], StreamFigures]:
    """Per (source port, destination port) audio stream sent within [start, end)."""
    by_stream: dict[tuple[int, int], list[tuple[float, int, int]]] = {}
    for when, _src, sport, _dst, dport, payload in packets:
        if not start <= when < end or len(payload) < 12 or payload[0] >> 6 != 2:
            continue
        if payload[1] & 0x7F not in (0, 8, 9):  # audio (not RTCP 200-204, not DTMF)
            continue
        seq, ts = struct.unpack_from("!HI", payload, 2)
        by_stream.setdefault((sport, dport), []).append((when, seq, ts))
    figures = {}
    for key, items in by_stream.items():
        gaps, seq_gaps = [], 0
        jitter = max_jitter = 0.0
        for (t0, s0, r0), (t1, s1, r1) in itertools.pairwise(items):
            gaps.append((t1 - t0) * 1000)
            if (s1 - s0) & 0xFFFF != 1:
                seq_gaps += 1
            # RFC 3550 6.4.1: D = (Rj - Ri) - (Sj - Si), J += (|D| - J) / 16; 8 kHz clock
            d = (t1 - t0) - ((r1 - r0) & 0xFFFFFFFF) / 8000.0
            jitter += (abs(d) - jitter) / 16
            max_jitter = max(max_jitter, jitter)
        gaps.sort()
        figures[key] = StreamFigures(
            len(items),
            gaps[len(gaps) // 2] if gaps else 0.0,
            gaps[int(len(gaps) * 0.95)] if gaps else 0.0,
            gaps[int(len(gaps) * 0.99)] if gaps else 0.0,
            gaps[-1] if gaps else 0.0,
            jitter * 1000,
            max_jitter * 1000,
            seq_gaps,
        )
    return figures


# -- the set-up: door and flat on Kamailio, in a call ------------------------------------


@dataclass
class Scene:
    kam: Any
    door: Firmware
    flat: Firmware
    door_port: int
    flat_port: int


def door_and_flat_in_call(
    kamailio_server: Any, port_allocator: PortAllocator, firmware: Any, tmp_path: Path
) -> Scene:
    kam = kamailio_server({"door": "d00r", "flat": "fl4t"})
    door_port, flat_port = port_allocator.allocate(), port_allocator.allocate()
    fast = f"reg_timeout = {REG_TIMEOUT}\n"

    door = firmware(
        "door",
        device_toml(door_port, 700, tmp_path / "door.wav")
        + account_toml("door", "d00r", kam).replace("ka_interval = 0\n", "ka_interval = 0\n" + fast)
        + '\n[intercom]\nprofile = "intercom"\n',
    )
    flat = firmware(
        "flat",
        device_toml(flat_port, 1900, tmp_path / "flat.wav")
        + account_toml("flat", "fl4t", kam)
        + '\n[[buttons]]\nname = "answer"\nbcm = 17\naction = "answer"\n'
        + '\n[intercom]\nprofile = "desk"\n',
    )
    assert poll(door.registered, 15), door.describe()
    assert poll(flat.registered, 15), flat.describe()
    code, out = door.cli("call", "sip:flat@test.local")
    assert code == 0, out
    assert poll(lambda: flat.status()["phone"] == "ringing"), door.describe() + flat.describe()
    code, out = flat.cli("answer")
    assert code == 0, out

    def flowing() -> bool:
        calls = [fw.status()["calls"] for fw in (door, flat)]
        return all(c and (c[0].get("packets_received") or 0) > 25 for c in calls)

    assert poll(flowing, 15), door.describe() + flat.describe()
    return Scene(kam, door, flat, door_port, flat_port)


def udp_ports(pid: int) -> set[int]:
    """Local UDP ports of a process (its SIP, RTP and RTCP sockets), from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for name in ("udp", "udp6"):
        for line in Path("/proc/net", name).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@dataclass(frozen=True, slots=True)
class Binding:
    """One contact of an AOR in ``kamcmd ul.dump``; ``expires`` None once lapsed."""

    address: str
    expires: int | None
    cseq: int


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def live_binding(kam: Any, aor: str) -> Binding | None:
    """The AOR's unexpired contact, read from ``kamcmd ul.dump`` directly.

    (``KamailioServer.registrations()`` cannot parse ``Expires: expired``,
    which Kamailio shows for a lapsed contact until its timer purges it.)
    """
    blocks: list[dict[str, str]] = []
    current_aor = None
    for line in kam.kamcmd("ul.dump").splitlines():
        key, sep, value = line.strip().partition(":")
        key, value = key.strip(), value.strip()
        if key == "AoR":
            current_aor = value
        elif key == "Contact" and value == "{" and current_aor == aor:
            blocks.append({})
        elif sep and blocks and current_aor == aor and key not in blocks[-1]:
            blocks[-1][key] = value
    bindings = [
        Binding(
            b.get("Address", ""),
            int(b["Expires"]) if b.get("Expires", "").isdigit() else None,
            int(b.get("CSeq", "0") or 0),
        )
        for b in blocks
    ]
    live = [b for b in bindings if b.expires is not None]
    return max(live, key=lambda b: b.cseq) if live else None


# -- the tests --------------------------------------------------------------------------


def prescreen_wired() -> bool:
    """Whether received bytes from a rate-limited source are dropped before parsing.

    That needs ``TransportManager.prescreen`` (sipstack/transport.py) set by the
    firmware to something calling ``RequestScreen.drop_unparsed``: files this
    suite's author does not own; see the xfail reason.
    """
    from sipstack.transport import TransportManager

    callers = [
        path
        for path in (ROOT / "firmware").glob("*.py")
        if path.name != "screening.py" and "drop_unparsed" in path.read_text()
    ]
    return "prescreen" in TransportManager.__init__.__code__.co_names and bool(callers)


NOT_WIRED = (
    "every flood datagram is parsed, Via-stamped and screened (~80 us CPU each), so on a "
    "busy 2-core machine the door reads 19-30 % of ~9,600/s and the rest overflows its "
    "socket with the registrar's answers (status showed it unregistered at 4 of 17 "
    "samples). Fix (/tmp/r3_prescreen.patch): TransportManager.prescreen called in "
    "_on_data before parse_message, set by the App (RequestGate) to "
    "RequestScreen.drop_unparsed"
)

BASELINE_SECONDS = 10


@dataclass
class Watch:
    """Samples of the door's registration, taken once a second."""

    registered: list[bool]
    bound: list[bool]

    def sample(self, door: Firmware, kam: Any) -> None:
        self.registered.append(door.registered())
        self.bound.append(live_binding(kam, "door") is not None)


@pytest.mark.xfail(not prescreen_wired(), reason=NOT_WIRED, strict=True)
@pytest.mark.parametrize(
    ("scenario", "rate"), [("flood_options", OPTIONS_RATE), ("flood_invite", INVITE_RATE)]
)
def test_flood_from_untrusted_source(
    scenario: str,
    rate: int,
    kamailio_server: Any,
    port_allocator: PortAllocator,
    firmware: Any,
    flooder: Callable[..., SippRun],
    tmp_path: Path,
) -> None:
    scene = door_and_flat_in_call(kamailio_server, port_allocator, firmware, tmp_path)
    door, flat, kam = scene.door, scene.flat, scene.kam
    # everything UDP but the SIP ports and the flood: the two devices' RTP and RTCP
    sip_ports = " and ".join(f"not port {p}" for p in (scene.door_port, scene.flat_port, kam.port))
    capture = Capture(tmp_path / "rtp.pcap", f"udp and not host {SCANNER_HOST} and {sip_ports}")
    # A quiet stretch first: the same call on the same (shared, busy) machine
    # without the flood, for comparison.
    quiet = Watch([], [])
    quiet_from = time.time()
    while time.time() - quiet_from < BASELINE_SECONDS:
        quiet.sample(door, kam)
        time.sleep(1.0)  # sampling period of a wall-clock observation, not a wait
    binding = live_binding(kam, "door")
    assert binding is not None, kam.kamcmd("ul.dump")
    rss_before, before = door.rss_kib(), door.status()
    cpu_before = cpu_seconds(door.firmware_pid())
    flood_from = time.time()
    run = flooder(scenario, ("127.0.0.1", scene.door_port), rate, FLOOD_SECONDS)
    loud = Watch([], [])
    while run.returncode is None and time.time() - flood_from < FLOOD_SECONDS + 20:
        loud.sample(door, kam)
        time.sleep(1.0)  # sampling period, as above
    code = run.wait(timeout=30)
    flood_to = time.time()
    cpu = (cpu_seconds(door.firmware_pid()) - cpu_before) / (flood_to - flood_from)
    peak, after = door.peak_rss_kib(), door.status()
    door_call, flat_call = after["calls"], flat.status()["calls"]
    rebound = live_binding(kam, "door")
    mine = udp_ports(door.firmware_pid())
    capture.stop()
    packets = capture.packets()
    figures = flood_figures(run)

    def door_streams(start: float, end: float) -> dict[str, StreamFigures]:
        streams = rtp_streams(packets, start, end)
        return {
            ("door->flat" if k[0] in mine else "flat->door"): v
            for k, v in streams.items()
            if k[0] in mine or k[1] in mine
        }

    calm, flooded = door_streams(quiet_from, flood_from), door_streams(flood_from, flood_to)
    screening = after["screening"]
    refused = screening["refused"] - before["screening"]["refused"]
    print(
        f"\n{scenario}: SIPp sent {figures.created} in {figures.elapsed_s:.1f} s "
        f"({figures.rate:.0f}/s, asked {rate}/s), exit {code}\n"
        f"door refused {refused} ({refused / max(1, figures.created):.1%}; answered 403: "
        f"{screening['forbidden']}, rate-limited {screening['rate_limited']}); lost before "
        f"the door read them (socket buffer full): {figures.created - refused}\n"
        f"registered at {sum(loud.registered)}/{len(loud.registered)} samples in the flood "
        f"({sum(quiet.registered)}/{len(quiet.registered)} before), bound in Kamailio at "
        f"{sum(loud.bound)}/{len(loud.bound)}; REGISTER CSeq {binding.cseq} -> "
        f"{rebound.cseq if rebound else None}\n"
        f"door CPU in the flood {cpu:.0%} of one core; "
        f"RSS before {rss_before} KiB, peak {peak} KiB (+{peak - rss_before})\n"
        f"door call jitter {door_call[0]['jitter_ms'] if door_call else None} ms, "
        f"flat call jitter {flat_call[0]['jitter_ms'] if flat_call else None} ms\n"
        + "\n".join(f"before: {k}: {v}" for k, v in sorted(calm.items()))
        + "\n"
        + "\n".join(f"flood:  {k}: {v}" for k, v in sorted(flooded.items()))
    )
    # the flood happened, and was refused, not served: a handful of 403s, then silence
    assert figures.created >= rate * FLOOD_SECONDS * 0.9, figures
    assert screening["forbidden"] <= Screening().burst, screening
    assert screening["rate_limited"] == refused - screening["forbidden"], screening
    # the door drained its socket: a refused datagram costs a look-up, not a parse
    assert refused >= figures.created * 0.5, (refused, figures)
    # and it was dropped unparsed: such drops are noted once a second, where each
    # screened request would be noted (thousands a second)
    noted = [e["time"] for e in screening["last"] if SCANNER_HOST in e["source"]]
    assert len(noted) >= 2, screening["last"]
    assert all(b - a >= 0.9 for a, b in itertools.pairwise(noted)), noted
    # (a) registered throughout, and its refreshes got through the flood
    assert all(quiet.registered + loud.registered), (quiet, loud, door.describe())
    assert all(loud.bound), loud
    assert rebound is not None and rebound.cseq > binding.cseq, (binding, rebound)
    assert len(door_call) == 1 and door_call[0]["state"] == "confirmed", door_call
    assert door.registered(), door.describe()  # and after it
    # (b) bounded memory
    assert peak - rss_before < RSS_GROWTH_BOUND_KIB, (rss_before, peak)
    # (c) the call kept its audio, both ways: every packet sent, 95 % of them within
    # 10 ms of their schedule, RFC 3550 jitter within 10 ms. (The rarer, longer
    # gaps, p99 and max, are reported, not asserted: on this shared 2-core machine
    # the scheduler alone makes them, in the quiet stretch as much as in the flood.)
    assert set(flooded) == {"door->flat", "flat->door"}, flooded
    for name, stream in flooded.items():
        assert stream.packets >= (flood_to - flood_from) * 1000 / PTIME_MS * 0.95, stream
        assert stream.seq_gaps == 0, stream
        assert stream.jitter_ms <= 10, stream
        assert stream.gap_p95_ms <= PTIME_MS + 10, (name, stream, calm[name])
    assert door_call[0]["jitter_ms"] <= 10 and flat_call[0]["jitter_ms"] <= 10
