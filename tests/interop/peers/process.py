"""Start a peer program in the foreground, log its output, and end it by PID.

Every peer runs in its own session (process group), so teardown can also reach
the worker children a server like Kamailio forks, without ever signalling a
process the test did not start. All waits are bounded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

__all__ = ["ManagedProcess", "PeerStartError", "wait_until"]


class PeerStartError(RuntimeError):
    """A third-party peer did not start or become ready: the environment's fault.

    The message includes the tail of the peer's log, which says why.
    """


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it returns True or ``timeout`` seconds pass.

    Used only to wait for an external process (a port opening, a file appearing);
    protocol timing in tests uses a fake clock instead.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class ManagedProcess:
    """One foreground child process with stdout+stderr in ``log_path``.

    ``argv`` is run without a shell, in ``cwd``, in a new session, with stdin
    from /dev/null or, with ``stdin_pipe``, a pipe (:meth:`send`). ``stop()``
    sends SIGTERM to the child, waits up to ``term_timeout`` seconds, then
    SIGKILLs its whole process group (the group id is the child's own PID).
    """

    def __init__(
        self,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        name: str | None = None,
        stdin_pipe: bool = False,
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = log_path
        self.name = name or Path(self.argv[0]).name
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 -- closed in stop()
        self._log.write(f"$ {' '.join(self.argv)}\n".encode())
        self._log.flush()
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            self._log.close()
            raise PeerStartError(f"cannot run {self.argv[0]}: {exc}") from exc
        self.pid = self.popen.pid

    def _exit_status(self) -> int | None:
        """Exit status if the child has exited, without reaping it (WNOWAIT).

        The zombie keeps holding the PID, which is also the group id, so a later
        ``killpg`` can never hit a process that reused the number.
        """
        if self.popen.returncode is not None:
            return self.popen.returncode
        info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        if info is None:
            return None
        if info.si_code == os.CLD_EXITED:
            return info.si_status
        return -info.si_status

    @property
    def running(self) -> bool:
        """True while the child has not exited."""
        return self._exit_status() is None

    @property
    def returncode(self) -> int | None:
        """Exit status (negative signal number if killed), None while running."""
        return self._exit_status()

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` seconds for exit; return the exit status or None."""
        wait_until(lambda: self._exit_status() is not None, timeout, interval=0.01)
        return self._exit_status()

    def stop(self, term_timeout: float = 3.0) -> int | None:
        """End the child (SIGTERM, then SIGKILL to its group), reap it; idempotent."""
        if self.popen.returncode is None:
            if self._exit_status() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGTERM)
                self.wait(term_timeout)
            # Still unreaped, so the group id is ours: kill workers left behind
            # (and the leader itself if SIGTERM did not end it).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(term_timeout)
        if not self._log.closed:
            self._log.close()
        if self.popen.stdin is not None and not self.popen.stdin.closed:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        return self.popen.returncode

    def send(self, line: str) -> None:
        """Write one line to the child's stdin (needs ``stdin_pipe``)."""
        if self.popen.stdin is None:
            raise RuntimeError(f"{self.name} was started without stdin_pipe")
        self.popen.stdin.write(line.encode() + b"\n")
        self.popen.stdin.flush()

    def log_text(self, max_chars: int = 20000) -> str:
        """The end of the log file (stdout+stderr), for failure reports."""
        try:
            data = self.log_path.read_bytes()
        except OSError as exc:
            return f"<cannot read {self.log_path}: {exc}>"
        text = data.decode(errors="replace")
        if len(text) > max_chars:
            text = "[...]\n" + text[-max_chars:]
        return text

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} rc={self.returncode}>"
