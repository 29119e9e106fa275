"""A PulseAudio daemon for the ALSA tests: the paced "sound card" of this machine.

ALSA's ``pulse`` plugin in front of it is paced in real time (PEERS.md), and
killing it is what an unplugged USB card or a crashed sound server looks like
to alsa-lib; starting it again is the card coming back. Used by
``tests/hal/test_audio_alsa.py`` and ``tests/robustness/test_audio_faults.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

__all__ = ["PulseServer"]


class PulseServer:
    """A PulseAudio daemon with one null sink (``nul``), on a private unix socket."""

    def __init__(self, rundir: Path) -> None:
        self.rundir = rundir
        self.sock = rundir / "sock"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it and wait (bounded) for its socket; skip the test if it cannot run."""
        if self.sock.exists():
            self.sock.unlink()
        env = dict(os.environ, HOME=str(self.rundir), XDG_RUNTIME_DIR=str(self.rundir))
        # -n: no default.pa; --use-pid-file=no lets several daemons run at once;
        # as root PulseAudio only warns ("not intended to be run as root").
        with open(self.rundir / "pulse.log", "ab") as log_file:
            self.proc = subprocess.Popen(
                [
                    "pulseaudio",
                    "-n",
                    "--daemonize=no",
                    "--use-pid-file=no",
                    "--exit-idle-time=-1",
                    "--log-target=stderr",
                    "-L",
                    "module-null-sink sink_name=nul",
                    "-L",
                    f"module-native-protocol-unix socket={self.sock} auth-anonymous=1",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        deadline = time.monotonic() + 10
        while not self.sock.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.rundir / "pulse.log").read_text(errors="replace")[-2000:]
                self.stop()
                pytest.skip(f"pulseaudio did not start: {log}")
            time.sleep(0.05)

    def kill(self) -> None:
        """Die at once, like an unplugged card or a crashed sound server."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None
