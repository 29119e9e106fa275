"""Start-up time and resident memory, ours beside baresip's, in the same run (issue 6).

For the firmware (``python -m firmware.cli run`` with simulated hardware, the
project's venv interpreter) and for baresip 1.0 doing the same job:

- **first REGISTER**: milliseconds from process start (the timestamp taken just
  before fork/exec) to the first REGISTER arriving at a UDP socket this
  benchmark owns. That socket plays the registrar: it challenges each REGISTER
  once (RFC 3261 22.4: 401 with a Digest nonce; a real registrar always does,
  so the client's digest code is part of start-up) and answers the
  authorised retry with 200 OK (``--no-auth``: 200 at once).
- **registered**: milliseconds from process start until the client itself
  reports every account registered: ours over its control socket (the
  ``status`` command ``intercom status`` uses, which answers once start-up is
  complete), baresip by its "200 OK ... binding" console line. Both are
  polled every ``--poll-ms``.
- **bound**: milliseconds from process start until the registrar has sent its
  200 OK to every account, i.e. when the PBX can route calls to the device
  (the registrar's view, the same for both clients, no polling).
- **RSS idle**: VmRSS from /proc with 8 accounts registered, after a settle time.
- **RSS in call**: VmRSS while a SIPp UAC calls account 0 (auto-answered by both)
  and streams a PCMU tone at it; audio flows both ways (ours: a tone source and a
  WAV sink on the simulated hardware; baresip: ``aufile`` source, ``alsa,null`` sink).

Each timing is the median of ``--runs`` starts (the machine is shared: medians, not
minimums). Run::

    .venv/bin/python bench/startup.py            # a table
    .venv/bin/python bench/startup.py --json     # one JSON object per line:
        {"name": ..., "ours": ..., "peer": ..., "ratio": ..., "unit": ...}
    .venv/bin/python bench/startup.py --tree /tmp/old   # ours from another checkout
    .venv/bin/python bench/startup.py --installed       # ours without the editable hook

``first_register_cpu`` is the CPU time (``/proc/PID/schedstat``) the client had
used when its first REGISTER arrived: on a busy machine the wall-clock figures
mostly measure the queue for a core, this one the work itself. Ours runs with
fresh ``.pyc`` files (written first, as an install does) and without
``PYTHONDONTWRITEBYTECODE``, else every import would compile source.

Targets (issue 6): first REGISTER within 200 ms; RSS within 1.5x of baresip's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.interop.media_tools import (  # noqa: E402
    tone_samples,
    write_pcmu_pcap,
    write_wav,
)
from tests.interop.peers.ports import PortAllocator  # noqa: E402
from tests.interop.peers.process import ManagedProcess  # noqa: E402
from tests.interop.peers.sipp import SippRun  # noqa: E402

PYTHON = ROOT / ".venv" / "bin" / "python"
BARESIP_MODULES = "/usr/lib/baresip/modules"
REG_EXPIRES = 600  # long enough that no refresh falls inside a measurement
TARGET_FIRST_REGISTER_MS = 200.0
TARGET_RSS_RATIO = 1.5

# RFC 3261 7.3.3: compact header forms a client may use
_COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact"}


# -- the registrar --------------------------------------------------------------------------


@dataclass
class Registrar:
    """A UDP registrar on 127.0.0.1 that records when each REGISTER arrives.

    It runs in a thread with blocking ``recvfrom``, so an arrival is timestamped
    (``time.monotonic``) the moment the kernel hands it over. Any other request
    gets a plain 200 (OPTIONS keep-alives and the like).
    """

    challenge: bool = True
    sock: socket.socket = field(init=False)
    arrivals: list[tuple[float, str]] = field(default_factory=list)  # (time, Call-ID)
    watched: Client | None = None  # whose CPU time is read at the first REGISTER
    first_cpu_ms: float | None = None
    ok_sent: dict[str, float] = field(default_factory=dict)  # Call-ID -> first 200 sent
    _thread: threading.Thread | None = None
    _closed: bool = False

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        """Forget what arrived (between runs; the socket stays)."""
        self.arrivals = []
        self.ok_sent = {}
        self.first_cpu_ms = None

    def first_register(self) -> float | None:
        return self.arrivals[0][0] if self.arrivals else None

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self.sock.sendto(b"", self.sock.getsockname())  # wake the thread
        if self._thread is not None:
            self._thread.join(2)
        self.sock.close()

    def _serve(self) -> None:
        while not self._closed:
            try:
                data, peer = self.sock.recvfrom(65536)
            except OSError:
                return
            now = time.monotonic()
            if not data or self._closed:
                continue
            with contextlib.suppress(Exception):  # a message we cannot read: ignore it
                self._answer(data, peer, now)

    @staticmethod
    def _client_cpu_ms(client: Client) -> float | None:
        deadline = time.monotonic() + 0.5
        while client.process is None and time.monotonic() < deadline:
            time.sleep(0.0005)  # Popen has exec'd the child but not yet returned
        return cpu_ms(client.process.pid) if client.process is not None else None

    def _answer(self, data: bytes, peer: tuple[str, int], now: float) -> None:
        head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) < 3 or parts[0].startswith("SIP/"):
            return  # a response: nothing to do
        method = parts[0]
        headers: list[tuple[str, str]] = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # RFC 3261 7.3.1: folded line
                name, value = headers[-1]
                headers[-1] = (name, value + " " + line.strip())
                continue
            name, _, value = line.partition(":")
            key = name.strip().lower()
            headers.append((_COMPACT.get(key, key), value.strip()))
        get = dict(reversed(headers))  # the first of repeated headers wins
        call_id = get.get("call-id", "")
        status, extra = "200 OK", []
        if method == "REGISTER":
            if not self.arrivals and self.watched is not None:
                self.first_cpu_ms = self._client_cpu_ms(self.watched)
            if not any(t == call_id for _, t in self.arrivals):
                self.arrivals.append((now, call_id))
            if self.challenge and "authorization" not in get:
                # RFC 3261 22.4: the registrar asks for credentials
                status = "401 Unauthorized"
                nonce = os.urandom(8).hex()
                extra.append(
                    f'WWW-Authenticate: Digest realm="bench", nonce="{nonce}", '
                    'algorithm=MD5, qop="auth"'
                )
            elif "contact" in get:
                # RFC 3261 10.3 step 8: the 200 lists the binding with its expiry
                expires = min(int(get.get("expires", REG_EXPIRES)), REG_EXPIRES)
                contact = get["contact"]
                if contact != "*" and "expires=" not in contact:
                    contact += f";expires={expires}"
                extra.append(f"Contact: {contact}")
        to = get.get("to", "")
        if ";tag=" not in to:
            to += ";tag=bench"
        reply = [f"SIP/2.0 {status}", *(f"Via: {v}" for k, v in headers if k == "via")]
        reply += [f"From: {get.get('from', '')}", f"To: {to}", f"Call-ID: {call_id}"]
        reply += [f"CSeq: {get.get('cseq', '')}", *extra, "Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(reply).encode(), peer)
        if method == "REGISTER" and status == "200 OK":
            self.ok_sent.setdefault(call_id, time.monotonic())


# -- the two clients ------------------------------------------------------------------------


def cpu_ms(pid: int) -> float | None:
    """CPU time the process's main thread has run, in ms (``/proc/PID/schedstat``,
    nanoseconds): start-up work independent of how busy the machine is."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e6
    except (OSError, ValueError, IndexError):
        return None


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    """A ``/proc/PID/status`` figure in KiB (VmRSS, VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(f"{key} not in /proc/{pid}/status")


def wait_for(predicate: Callable[[], bool], timeout: float, poll: float) -> bool:
    """Poll an external process's state (bounded); True once ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)  # waiting on another process, not on protocol timing
    return predicate()


class Client:
    """One client process under test; subclasses say how to start it and ask it."""

    name = ""

    def __init__(self, work: Path, accounts: int, registrar: Registrar, sip_port: int) -> None:
        self.work = work
        self.accounts = accounts
        self.registrar = registrar
        self.sip_port = sip_port
        self.process: ManagedProcess | None = None
        self.started = 0.0

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def registered_count(self) -> int:
        raise NotImplementedError

    def media_flows(self) -> bool:
        """Whether RTP flows both ways in the call (True if the client cannot say)."""
        return True

    def start(self) -> None:
        log = self.work / f"{self.name}.log"
        argv, env = self.argv(), self.env()
        self.started = time.monotonic()  # just before fork/exec
        self.process = ManagedProcess(argv, log, cwd=ROOT, env=env, name=self.name)

    def log_text(self) -> str:
        return (self.work / f"{self.name}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(term_timeout=3.0)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


class Ours(Client):
    """``python -m firmware.cli run`` with simulated hardware, from ``tree``."""

    name = "ours"
    tree = ROOT
    python = PYTHON

    def __init__(self, work: Path, accounts: int, registrar: Registrar, sip_port: int) -> None:
        super().__init__(work, accounts, registrar, sip_port)
        self.control = work / "control.sock"
        tables = []
        for i in range(accounts):
            tables.append(
                f'[[accounts]]\nid = "<sip:u{i}@127.0.0.1>"\n'
                f'reg_uri = "sip:127.0.0.1:{registrar.port}"\n'
                f"reg_timeout = {REG_EXPIRES}\nka_interval = 0\nunreg_timeout = 1\n"
                f'[[accounts.cred_info]]\nrealm = "*"\nusername = "u{i}"\ndata = "p{i}"\n'
            )
        self.config = work / "intercom.toml"
        self.config.write_text(
            'hal = "sim"\n'
            f'[sip]\nudp = "127.0.0.1:{sip_port}"\ntcp = ""\n'
            f'[audio]\ncapture_device = "tone:440"\nplayback_device = "{work / "out.wav"}"\n'
            '[intercom]\nauto_answer = true\ntrusted = ["sip:sipp@127.0.0.1:*"]\n' + "".join(tables)
        )

    def argv(self) -> list[str]:
        return [
            str(self.python),
            "-m",
            "firmware.cli",
            "run",
            "--config",
            str(self.config),
            "--control",
            str(self.control),
        ]

    def env(self) -> dict[str, str]:
        # bytecode as on the device (pip/apt compile it): without a .pyc every
        # import compiles its source, a cost the device never pays
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        return {**env, "PYTHONPATH": str(self.tree)}

    def start(self) -> None:
        log = self.work / f"{self.name}.log"
        argv, env = self.argv(), self.env()
        self.started = time.monotonic()  # just before fork/exec
        self.process = ManagedProcess(argv, log, cwd=self.tree, env=env, name=self.name)

    def registered_count(self) -> int:
        """Accounts the firmware reports registered (the ``status`` command)."""
        status = self.status()
        return sum(1 for a in status.get("accounts", ()) if a.get("registered"))

    def media_flows(self) -> bool:
        """True when a call shows RTP packets sent and received."""
        return any(
            c.get("packets_sent") and c.get("packets_received")
            for c in self.status().get("calls", ())
        )

    def status(self) -> dict[str, Any]:
        """What ``intercom status --json`` shows, asked over the control socket."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(2)
                s.connect(str(self.control))
                s.sendall(b'{"cmd": "status", "args": {}}\n')
                buf = b""
                while not buf.endswith(b"\n"):
                    chunk = s.recv(65536)
                    if not chunk:
                        return {}
                    buf += chunk
        except OSError:
            return {}
        answer = json.loads(buf)
        result: dict[str, Any] = answer.get("result", {}) if answer.get("ok") else {}
        return result


class Baresip(Client):
    """baresip 1.0 with the modules a headless door station needs."""

    name = "baresip"

    def __init__(self, work: Path, accounts: int, registrar: Registrar, sip_port: int) -> None:
        super().__init__(work, accounts, registrar, sip_port)
        self.conf = work / "baresip"
        self.conf.mkdir(exist_ok=True)
        tone = work / "tone.wav"
        if not tone.exists():
            write_wav(tone, tone_samples(440, 30.0, 8000), 8000)
        (self.conf / "config").write_text(
            "\n".join(
                [
                    f"sip_listen 127.0.0.1:{sip_port}",
                    "net_interface 127.0.0.1",
                    f"audio_source aufile,{tone}",
                    "audio_player alsa,null",
                    "audio_alert alsa,null",
                    "ausrc_srate 8000",
                    "auplay_srate 8000",
                    "ausrc_channels 1",
                    "auplay_channels 1",
                    f"module_path {BARESIP_MODULES}",
                    "module g711.so",
                    "module aufile.so",
                    "module alsa.so",
                    "module_app account.so",
                    "module_app menu.so",
                    "",
                ]
            )
        )
        (self.conf / "accounts").write_text(
            "".join(
                f"<sip:u{i}@127.0.0.1:{registrar.port}>;auth_pass=p{i};"
                f"regint={REG_EXPIRES};answermode=auto;audio_codecs=PCMU\n"
                for i in range(accounts)
            )
        )
        (self.conf / "contacts").write_text("")
        self._seen = 0
        self._offset = 0

    def argv(self) -> list[str]:
        # line-buffered stdout, so the "registered" line reaches the log at once
        return ["stdbuf", "-oL", "baresip", "-f", str(self.conf)]

    def registered_count(self) -> int:
        """Accounts baresip has printed a "200 OK ... binding" line for."""
        with open(self.work / f"{self.name}.log", "rb") as f:
            f.seek(self._offset)
            new = f.read()
        cut = new.rfind(b"\n") + 1
        self._offset += cut
        self._seen += sum(
            1 for line in new[:cut].splitlines() if b" 200 OK " in line and b"binding" in line
        )
        return self._seen


# -- one measurement ---------------------------------------------------------------------------


@dataclass
class Startup:
    first_register_ms: float
    registered_ms: float
    first_register_cpu_ms: float
    bound_ms: float


def measure_startup(client: Client, registrar: Registrar, poll: float) -> Startup:
    """Start ``client``, time its first REGISTER and its own "all registered"."""
    registrar.reset()
    registrar.watched = client
    client.start()
    process = client.process
    assert process is not None
    done = wait_for(
        lambda: client.registered_count() >= client.accounts or not process.running,
        30,
        poll,
    )
    first = registrar.first_register()
    if not done or first is None or not process.running:
        raise RuntimeError(f"{client.name} did not register\n{client.log_text()}")
    registered = time.monotonic()
    cpu = registrar.first_cpu_ms
    oks = list(registrar.ok_sent.values())  # one Call-ID per account
    bound = max(oks) if len(oks) >= client.accounts else float("nan")
    return Startup(
        (first - client.started) * 1000,
        (registered - client.started) * 1000,
        cpu if cpu is not None else float("nan"),
        (bound - client.started) * 1000,
    )


def measure_call_rss(client: Client, ports: PortAllocator, settle: float) -> tuple[int, int, int]:
    """(idle, in-call, idle after the call) VmRSS in KiB of a running, registered
    ``client``: the last one shows what a call leaves behind."""
    time.sleep(settle)  # let start-up garbage settle: wall time of a foreign process
    idle = rss_kib(client.pid)
    pcap = client.work / "tone.pcap"
    if not pcap.exists():
        write_pcmu_pcap(pcap, 1000, 8.0)
    sipp = SippRun(
        "uac_call_play_pcap_bye",
        client.work / f"sipp-{client.name}",
        port=ports.allocate(),
        media_port=ports.allocate(count=4),
        control_port=ports.allocate(),
        remote=("127.0.0.1", client.sip_port),
        service="u0",
        timeout=30,
        render={"pcap": str(pcap), "play_ms": int(settle * 1000) + 3000},
    )
    sipp.start()
    try:
        answered = wait_for(lambda: bool(sipp.received("200")), 10, 0.05)
        if not answered:
            raise RuntimeError(
                f"{client.name} did not answer the call\n{sipp.describe()}\n{client.log_text()}"
            )
        time.sleep(settle)  # the call runs with media both ways
        in_call = rss_kib(client.pid)
        if not client.media_flows():
            raise RuntimeError(f"{client.name}: no RTP both ways in the call\n{client.log_text()}")
        if sipp.wait(30) != 0:  # the call must have ended cleanly (BYE answered)
            raise RuntimeError(f"{client.name}: the call failed\n{sipp.describe()}")
    finally:
        sipp.stop()
    time.sleep(settle)
    return idle, in_call, rss_kib(client.pid)


@dataclass
class Figures:
    first_1: list[float] = field(default_factory=list)
    cpu_1: list[float] = field(default_factory=list)
    cpu_8: list[float] = field(default_factory=list)
    registered_1: list[float] = field(default_factory=list)
    first_8: list[float] = field(default_factory=list)
    registered_8: list[float] = field(default_factory=list)
    bound_1: list[float] = field(default_factory=list)
    bound_8: list[float] = field(default_factory=list)
    rss_idle_1: int = 0
    rss_idle_8: int = 0
    rss_call_8: int = 0
    rss_after_call_8: int = 0


def run_all(
    kinds: list[type[Client]], work: Path, registrar: Registrar, args: argparse.Namespace
) -> list[Figures]:
    """Every client, interleaved start by start so that both see the same load."""
    ports = PortAllocator()
    figures = [Figures() for _ in kinds]
    poll = args.poll_ms / 1000
    for accounts in (1, 8):
        for run in range(args.runs):
            for kind, fig in zip(kinds, figures, strict=True):
                sub = work / f"{kind.name}-{accounts}-{run}"
                sub.mkdir()
                client = kind(sub, accounts, registrar, ports.allocate())
                try:
                    started = measure_startup(client, registrar, poll)
                    firsts, regs = (
                        (fig.first_1, fig.registered_1)
                        if accounts == 1
                        else (fig.first_8, fig.registered_8)
                    )
                    firsts.append(started.first_register_ms)
                    (fig.cpu_1 if accounts == 1 else fig.cpu_8).append(
                        started.first_register_cpu_ms
                    )
                    regs.append(started.registered_ms)
                    (fig.bound_1 if accounts == 1 else fig.bound_8).append(started.bound_ms)
                    if run < args.runs - 1:
                        continue
                    if accounts == 1:  # memory from the last start only
                        time.sleep(args.settle)  # wall time of a foreign process
                        fig.rss_idle_1 = rss_kib(client.pid)
                    else:
                        fig.rss_idle_8, fig.rss_call_8, fig.rss_after_call_8 = measure_call_rss(
                            client, ports, args.settle
                        )
                finally:
                    client.stop()
    return figures


def _purelib(python: Path) -> str:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.strip()


def installed_python(work: Path) -> Path:
    """An interpreter laid out like the device's: a venv whose site-packages holds
    only a path line to the project venv's packages (pylibsrtp, netifaces).

    The project venv has the firmware as an *editable* install, whose import hook
    (``__editable___*_finder``, run by a ``.pth`` at every start) imports pathlib,
    urllib.parse and ipaddress; the image installs a wheel, which has no such hook.
    """
    venv = work / "installed-venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
    )
    deps, purelib = _purelib(PYTHON), _purelib(venv / "bin" / "python")
    # a plain path line: the directory joins sys.path, its own .pth files are not run
    (Path(purelib) / "project-deps.pth").write_text(deps + "\n")
    return venv / "bin" / "python"


def compile_tree(tree: Path) -> None:
    """Write fresh .pyc files for the firmware's packages, as an install would."""
    import compileall

    for package in ("sipstack", "hal", "firmware"):
        compileall.compile_dir(tree / package, quiet=1)


# -- report -----------------------------------------------------------------------------------


def rows(ours: Figures, peer: Figures | None) -> Iterator[tuple[str, float, float | None, str]]:
    def med(values: list[float]) -> float:
        return round(statistics.median(values), 1)

    def mib(kib: int) -> float:
        return round(kib / 1024, 2)

    table: tuple[tuple[str, str, Callable[[Figures], float]], ...] = (
        ("first_register_1acc", "ms", lambda f: med(f.first_1)),
        ("first_register_cpu_1acc", "ms", lambda f: med(f.cpu_1)),
        ("bound_1acc", "ms", lambda f: med(f.bound_1)),
        ("registered_1acc", "ms", lambda f: med(f.registered_1)),
        ("first_register_8acc", "ms", lambda f: med(f.first_8)),
        ("first_register_cpu_8acc", "ms", lambda f: med(f.cpu_8)),
        ("bound_8acc", "ms", lambda f: med(f.bound_8)),
        ("registered_8acc", "ms", lambda f: med(f.registered_8)),
        ("rss_idle_1acc", "MiB", lambda f: mib(f.rss_idle_1)),
        ("rss_idle_8acc", "MiB", lambda f: mib(f.rss_idle_8)),
        ("rss_call_8acc", "MiB", lambda f: mib(f.rss_call_8)),
        ("rss_after_call_8acc", "MiB", lambda f: mib(f.rss_after_call_8)),
    )
    for key, unit, get in table:
        yield key, get(ours), (get(peer) if peer is not None else None), unit


def _load_text(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="starts per client and size")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before reading RSS")
    parser.add_argument("--poll-ms", type=float, default=5.0, help="'registered' poll period")
    parser.add_argument("--no-auth", action="store_true", help="registrar answers 200 at once")
    parser.add_argument("--no-peer", action="store_true", help="skip baresip")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--tree", type=Path, default=ROOT, help="run our firmware from this source tree"
    )
    parser.add_argument(
        "--installed",
        action="store_true",
        help="run ours from a venv laid out like the image's (no editable-install hook)",
    )
    args = parser.parse_args()
    Ours.tree = args.tree.resolve()
    compile_tree(Ours.tree)
    if not shutil.which("sipp"):
        parser.error("SIPp (sip-tester) is needed for the in-call figures")
    with_peer = not args.no_peer and shutil.which("baresip") is not None
    load_before = os.getloadavg()
    registrar = Registrar(challenge=not args.no_auth)
    kinds: list[type[Client]] = [Ours, Baresip] if with_peer else [Ours]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            if args.installed:
                Ours.python = installed_python(Path(tmp))
            figures = run_all(kinds, Path(tmp), registrar, args)
            ours, peer = figures[0], (figures[1] if with_peer else None)
    finally:
        registrar.close()
    table = list(rows(ours, peer))
    # the machine is shared: the wall-clock figures mean little without the load
    load = f"load average {_load_text(load_before)} before, {_load_text(os.getloadavg())} after"
    if args.json:
        for name, o, p, unit in table:
            ratio = round(o / p, 2) if p else None
            row = {"name": name, "ours": o, "peer": p, "ratio": ratio, "unit": unit}
            row["better"] = "lower"
            row["peer_name"] = "baresip"
            if name.startswith("first_register_") and "cpu" not in name:
                row["target"] = f"<= {TARGET_FIRST_REGISTER_MS:.0f} ms (issue 6)"
            elif name.startswith("rss_"):
                row["target"] = f"<= {TARGET_RSS_RATIO}x baresip (issue 6)"
            print(json.dumps(row))
        print(load, file=sys.stderr)
        return 0
    layout = "installed-like venv" if args.installed else "project .venv (editable)"
    print(
        f"runs={args.runs} (median)  registrar auth={'off' if args.no_auth else 'digest'}  "
        f"ours: {layout}, tree {Ours.tree}"
    )
    print(f"{load} ({os.cpu_count()} CPUs)")
    print(f"{'figure':22s} {'ours':>9s} {'baresip':>9s} {'ratio':>6s}  unit")
    for name, o, p, unit in table:
        ratio_text = f"{o / p:6.2f}" if p else "     -"
        peer_text = f"{p:9.1f}" if p is not None else "        -"
        print(f"{name:22s} {o:9.1f} {peer_text} {ratio_text}  {unit}")
    print(
        f"targets: first REGISTER <= {TARGET_FIRST_REGISTER_MS:.0f} ms; "
        f"RSS <= {TARGET_RSS_RATIO}x baresip"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
