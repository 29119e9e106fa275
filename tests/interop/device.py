"""Drive real ``intercom run`` processes the way a person over SSH would.

Shared by the end-to-end tests (issue 6) and the robustness suite (issue 8):
start the firmware with a config file and its own control socket, optionally
inside a network namespace, run the real CLI against it, read its status, and
read what the kernel says about it (resident memory, open descriptors).

The firmware runs on the wall clock, so waiting here polls the CLI (bounded).
"""

from __future__ import annotations

import array
import json
import math
import os
import subprocess
import sys
import wave
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .peers.process import ManagedProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]


def intercom(*args: str, control: Path | None = None, timeout: float = 30) -> tuple[int, str]:
    """Run the real CLI (``python -m firmware.cli``); returns (exit code, stdout+stderr)."""
    argv = [sys.executable, "-m", "firmware.cli", *args]
    if control is not None:
        argv += ["--control", str(control)]
    done = subprocess.run(
        argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False
    )
    return done.returncode, done.stdout + done.stderr


def status(control: Path) -> dict[str, Any]:
    """``intercom status --json`` of the device behind ``control``, parsed."""
    code, out = intercom("status", "--json", control=control)
    assert code == 0, out
    result: dict[str, Any] = json.loads(out)
    return result


def poll(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait (bounded) for a condition on a wall-clock process."""
    return wait_until(predicate, timeout, interval=0.2)


def account_toml(user: str, password: str, kam: Any, extra: str = "") -> str:
    """One ``[[accounts]]`` table registering ``user`` at a KamailioServer;
    ``extra`` holds more keys of the account (lines of TOML)."""
    return f"""
[[accounts]]
id = "<sip:{user}@test.local>"
reg_uri = "{kam.uri()}"
proxy = ["{kam.uri()};lr"]
ka_interval = 0
unreg_timeout = 1
{extra}

[[accounts.cred_info]]
realm = "*"
username = "{user}"
data = "{password}"
"""


DESK_FLAT = """
[[buttons]]
name = "answer"
bcm = 17
action = "answer"

[[buttons]]
name = "hangup"
bcm = 27
action = "hangup"

[intercom]
profile = "desk"
"""
"""A flat's desk phone: answer and hang-up buttons (BCM 17, 27), ``desk`` profile."""


def device_toml(udp_port: int, mic_hz: int, record: Path, host: str = "127.0.0.1") -> str:
    """Simulated hardware: a tone as microphone, a WAV file as loudspeaker."""
    return f"""
hal = "sim"

[sip]
udp = "{host}:{udp_port}"
tcp = ""

[audio]
capture_device = "tone:{mic_hz}"
playback_device = "{record}"
"""


class Firmware:
    """One ``intercom run`` process with its own config, ports and control socket.

    ``prefix`` runs it under another command, e.g. ``["ip", "netns", "exec",
    "ns1"]`` to put it in a network namespace (the control socket is a file, so
    the CLI reaches it from the root namespace).
    """

    def __init__(self, name: str, tmp: Path, text: str, prefix: Sequence[str] = ()) -> None:
        self.name = name
        self.config = tmp / f"{name}.toml"
        self.config.write_text(text)
        self.control = tmp / f"{name}.sock"
        self.record = tmp / f"{name}.wav"
        self.log_path = tmp / f"{name}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        argv = [
            *prefix,
            sys.executable,
            "-m",
            "firmware.cli",
            "run",
            "--config",
            str(self.config),
            "--control",
            str(self.control),
        ]
        self.process = ManagedProcess(argv, self.log_path, cwd=ROOT, env=env, name=name)

    def describe(self) -> str:
        return self.process.log_text()

    def cli(self, *args: str, timeout: float = 30) -> tuple[int, str]:
        """Run ``intercom ARGS --control <this device's socket>``."""
        return intercom(*args, control=self.control, timeout=timeout)

    def status(self) -> dict[str, Any]:
        return status(self.control)

    def ready(self) -> bool:
        return self.control.exists() and intercom("status", control=self.control)[0] == 0

    def registered(self) -> bool:
        return self.ready() and all(a["registered"] for a in self.status()["accounts"])

    def log_text(self) -> str:
        """Everything the firmware printed (its log goes to stderr)."""
        return self.process.log_text(max_chars=10_000_000)

    def firmware_pid(self) -> int:
        """PID of the Python process itself, also when run under a ``prefix``.

        ``ip netns exec`` execs its command, so the PID is the same; this reads
        /proc to be sure rather than assume it.
        """
        pid = self.process.pid
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if b"firmware.cli" in cmdline:
            return pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return int(children[0])

    def rss_kib(self) -> int:
        """Resident set size now, from /proc/PID/status (VmRSS)."""
        return _proc_status_kib(self.firmware_pid(), "VmRSS")

    def peak_rss_kib(self) -> int:
        """Peak resident set size so far (VmHWM)."""
        return _proc_status_kib(self.firmware_pid(), "VmHWM")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.firmware_pid()}/fd"))

    def stop(self) -> int | None:
        return self.process.stop(term_timeout=5.0)


def _proc_status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(f"{key} not in /proc/{pid}/status")


@pytest.fixture
def firmware(tmp_path: Path) -> Iterator[Callable[..., Firmware]]:
    """Factory ``firmware(name, toml_text, prefix=())``; every device is stopped after."""
    made: list[Firmware] = []

    def make(name: str, text: str, prefix: Sequence[str] = ()) -> Firmware:
        fw = Firmware(name, tmp_path, text, prefix)
        made.append(fw)
        return fw

    yield make
    for fw in made:
        fw.stop()


def goertzel_share(pcm: bytes, rate: int, hz: float, block: int = 160) -> int:
    """Blocks (20 ms at 8 kHz) in which ``hz`` carries most of the block's energy."""
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % 2])
    coeff = 2 * math.cos(2 * math.pi * hz / rate)
    hits = 0
    for start in range(0, len(samples) - block + 1, block):
        chunk = samples[start : start + block]
        energy = sum(x * x for x in chunk)
        if energy < block * 100**2:  # below -50 dBFS: silence
            continue
        s1 = s2 = 0.0
        for x in chunk:
            s1, s2 = x + coeff * s1 - s2, s1
        power = s1 * s1 + s2 * s2 - coeff * s1 * s2  # |X(hz)|^2
        # a pure tone of amplitude A gives power ~ (A*N/2)^2 and energy ~ A^2*N/2
        if power / (energy * block / 2) > 0.5:
            hits += 1
    return hits


def read_wav(path: Path) -> tuple[bytes, int]:
    with wave.open(str(path), "rb") as wav:
        return wav.readframes(wav.getnframes()), wav.getframerate()
