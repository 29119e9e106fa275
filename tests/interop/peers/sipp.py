"""Run one SIPp 3.6 scenario (UAS or UAC) in the foreground and collect its traces.

Scenarios live in ``tests/interop/scenarios``; each documents the ``-key`` values
(``[keyword]``) it reads. Scenarios are rendered into the run directory first:
``@@METHOD@@`` (SIPp cannot take a keyword as a request method) and the pause
lengths ``@@HOLD_MS@@``/``@@SILENT_MS@@`` (``<pause variable=...>`` ignores
``-set`` values). Traces: ``-trace_msg`` (every message sent and received),
``-trace_err`` (unexpected messages), ``-trace_screen`` (final statistics).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .process import ManagedProcess, PeerStartError, wait_until

__all__ = ["SCENARIO_DIR", "SippMessage", "SippRun", "scenario_path"]

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
TRANSPORTS = {"udp": "u1", "tcp": "t1"}
# Scenarios that must see retransmissions as new messages: SIPp's own
# retransmission detection (UDP only) would swallow them, -nr turns it off.
NEEDS_NO_RETRANS_DETECTION = frozenset({"uas_options_ignore_first"})
# Default values of the @@NAME@@ tokens rendered into scenarios (SIPp's
# <pause variable=...> reads -set values as 0, and a request method cannot be a
# [keyword], so these are substituted before SIPp reads the file).
DEFAULT_RENDER: Mapping[str, str] = {"METHOD": "OPTIONS", "HOLD_MS": "1000", "SILENT_MS": "60000"}
# Default -key values for the [keywords] the scenarios use.
DEFAULT_KEYS: Mapping[str, str] = {
    "realm": "test.local",
    "nonce": "0123456789abcdef0123456789abcdef",
    "algorithm": "MD5",
    "retry_after": "5",
    "min_expires": "60",
    "granted_expires": "3600",
    "nat_ip": "192.0.2.33",
    "nat_port": "40000",
    "username": "alice",
    "password": "secret",
    "expires": "3600",
}
SIPP_EXIT_CODES = {
    0: "all calls succeeded",
    1: "at least one call failed",
    97: "exit on internal command",
    99: "normal exit without calls processed",
    254: "fatal error binding a socket",
    255: "fatal error",
}


def scenario_path(name: str) -> Path:
    """Path of a scenario in ``tests/interop/scenarios`` by name (without ``.xml``)."""
    path = SCENARIO_DIR / f"{name}.xml"
    if not path.exists():
        raise FileNotFoundError(f"no SIPp scenario {path}")
    return path


@dataclass(frozen=True, slots=True)
class SippMessage:
    """One message from SIPp's ``-trace_msg`` file."""

    direction: str  # "sent" or "received"
    transport: str  # "UDP" or "TCP"
    text: str

    @property
    def first_line(self) -> str:
        """Request line or status line."""
        return self.text.split("\n", 1)[0].strip()

    @property
    def method_or_status(self) -> str:
        """``"OPTIONS"`` for a request, ``"200"`` for a response."""
        first = self.first_line
        return first.split()[1] if first.startswith("SIP/2.0") else first.split()[0]


_TRACE_HEADER = re.compile(
    r"^(UDP|TCP|TLS) message (sent|received) [\[(](\d+)[\])]? ?bytes ?[\])]?\s*:\s*$",
    re.MULTILINE,
)


def parse_message_trace(text: str) -> list[SippMessage]:
    """Split a ``-trace_msg`` file into messages."""
    messages = []
    headers = list(_TRACE_HEADER.finditer(text))
    for i, match in enumerate(headers):
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        body = text[match.end() : end]
        body = re.sub(r"\n-{20,}[^\n]*\n?\s*$", "\n", body)  # the next entry's separator
        messages.append(SippMessage(match.group(2), match.group(1), body.strip("\r\n") + "\n"))
    return messages


class SippRun:
    """One SIPp process running one scenario.

    scenario: a scenario name (``"uas_register_auth"``) or a path to an XML file.
    run_dir: directory for the rendered scenario, logs and traces.
    port: local SIP port (``-p``); media_port: first of 4 local ports for ``-mp``;
        control_port: ``-cp`` (SIPp's remote-control UDP socket).
    remote: ``(host, port)`` to send to; None makes a UAS (it only answers).
    transport: ``"udp"`` (``-t u1``) or ``"tcp"`` (``-t t1``).
    calls: ``-m``: exit after this many calls (scenario runs) are processed.
    timeout: ``-timeout`` in seconds; with ``-timeout_error`` reaching it fails.
    keys: ``-key name value`` overrides of :data:`DEFAULT_KEYS` (``[name]`` in XML).
    sets: ``-set name value`` for scenarios declaring ``<Global variables=...>``.
    method: replaces ``@@METHOD@@`` in the scenario (default ``OPTIONS``).
    render: other ``@@NAME@@`` values over :data:`DEFAULT_RENDER`: ``hold_ms``
        (UDP linger after a final answer, absorbing retransmissions; the linger
        is dropped on TCP) and ``silent_ms`` (how long uas_silent keeps quiet).
    service: ``-s``: user part of the request URI a UAC sends to.
    extra_args: appended to the command line as given.
    """

    def __init__(
        self,
        scenario: str | Path,
        run_dir: Path,
        *,
        port: int,
        media_port: int,
        control_port: int,
        remote: tuple[str, int] | None = None,
        transport: str = "udp",
        calls: int = 1,
        timeout: float = 15.0,
        keys: Mapping[str, str] | None = None,
        sets: Mapping[str, str] | None = None,
        method: str = "OPTIONS",
        render: Mapping[str, str | int] | None = None,
        service: str = "service",
        extra_args: Sequence[str] = (),
        host: str = "127.0.0.1",
    ) -> None:
        if transport not in TRANSPORTS:
            raise ValueError(f"SIPp transport must be one of {sorted(TRANSPORTS)} (no TLS)")
        source = scenario if isinstance(scenario, Path) else scenario_path(scenario)
        self.name = source.stem
        self.run_dir = run_dir
        self.host = host
        self.port = port
        self.transport = transport
        self.remote = remote
        self.timeout = timeout
        run_dir.mkdir(parents=True, exist_ok=True)
        tag = f"{self.name}-{port}"
        self.scenario_file = run_dir / f"{tag}.xml"
        text = source.read_text()
        if transport == "tcp":
            # The linger after a final answer only absorbs UDP retransmissions; on
            # TCP a peer closing the connection during it makes SIPp fail the call.
            text = text.replace('<pause milliseconds="@@HOLD_MS@@"/>', "")
        tokens = {
            **DEFAULT_RENDER,
            "METHOD": method,
            **{k.upper(): str(v) for k, v in (render or {}).items()},
        }
        for name, value in tokens.items():
            text = text.replace(f"@@{name}@@", value)
        leftover = re.findall(r"@@[A-Z_]+@@", text)
        if leftover:
            raise ValueError(f"scenario {self.name} needs render values for {leftover}")
        self.scenario_file.write_text(text)
        self.log_path = run_dir / f"{tag}.log"
        self.message_path = run_dir / f"{tag}.messages"
        self.error_path = run_dir / f"{tag}.errors"
        self.screen_path = run_dir / f"{tag}.screen"
        argv = ["sipp"]
        if remote is not None:
            argv.append(f"{remote[0]}:{remote[1]}")
        argv += ["-sf", str(self.scenario_file), "-t", TRANSPORTS[transport]]
        argv += ["-i", host, "-p", str(port), "-mi", host, "-mp", str(media_port)]
        argv += ["-cp", str(control_port), "-m", str(calls), "-s", service]
        argv += ["-timeout", f"{timeout}s", "-timeout_error", "-nostdin"]
        argv += ["-trace_msg", "-message_file", str(self.message_path)]
        argv += ["-trace_err", "-error_file", str(self.error_path)]
        argv += ["-trace_screen", "-screen_file", str(self.screen_path)]
        for name, value in {**DEFAULT_KEYS, **(keys or {})}.items():
            argv += ["-key", name, str(value)]
        for name, value in (sets or {}).items():
            argv += ["-set", name, str(value)]
        if self.name in NEEDS_NO_RETRANS_DETECTION:
            argv.append("-nr")
        argv += list(extra_args)
        self.argv = argv
        self.process: ManagedProcess | None = None

    @property
    def is_uas(self) -> bool:
        """True when no remote was given: SIPp waits for requests."""
        return self.remote is None

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) SIPp listens on."""
        return (self.host, self.port)

    def uri(self, user: str = "service") -> str:
        """``sip:user@host:port;transport=x`` addressing this SIPp."""
        return f"sip:{user}@{self.host}:{self.port};transport={self.transport}"

    def start(self, ready_timeout: float = 5.0) -> None:
        """Start SIPp; for a UAS, wait until its SIP port is bound (bounded)."""
        self.process = ManagedProcess(self.argv, self.log_path, cwd=self.run_dir, name="sipp")
        if self.is_uas and not wait_until(self._listening, ready_timeout):
            log = self.describe()
            self.stop()
            raise PeerStartError(
                f"SIPp UAS not listening on {self.port} in {ready_timeout}s\n{log}"
            )

    def _listening(self) -> bool:
        assert self.process is not None
        if not self.process.running:
            raise PeerStartError(f"SIPp exited at start-up\n{self.describe()}")
        return port_bound(self.port, self.transport)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for SIPp to exit and return its exit code (0 = all calls succeeded).

        ``timeout`` defaults to the SIPp ``-timeout`` plus 5 s; if SIPp is still
        running then, it is stopped and TimeoutError raised with its logs.
        """
        if self.process is None:
            raise RuntimeError("SippRun.wait() before start()")
        limit = self.timeout + 5.0 if timeout is None else timeout
        code = self.process.wait(limit)
        if code is None:
            self.stop()
            raise TimeoutError(f"SIPp {self.name} still running after {limit}s\n{self.describe()}")
        return code

    def stop(self) -> None:
        """End SIPp by PID if it still runs; idempotent."""
        if self.process is not None:
            self.process.stop(term_timeout=2.0)

    @property
    def returncode(self) -> int | None:
        """SIPp's exit code, None while it runs."""
        return self.process.returncode if self.process else None

    def messages(self) -> list[SippMessage]:
        """Every message SIPp sent and received so far, from the ``-trace_msg`` file."""
        try:
            return parse_message_trace(self.message_path.read_text(errors="replace"))
        except FileNotFoundError:
            return []

    def received(self, method_or_status: str | None = None) -> list[SippMessage]:
        """Messages SIPp received, optionally only one method / status code."""
        return [
            m
            for m in self.messages()
            if m.direction == "received"
            and (method_or_status is None or m.method_or_status == method_or_status)
        ]

    def sent(self, method_or_status: str | None = None) -> list[SippMessage]:
        """Messages SIPp sent, optionally only one method / status code."""
        return [
            m
            for m in self.messages()
            if m.direction == "sent"
            and (method_or_status is None or m.method_or_status == method_or_status)
        ]

    def describe(self, max_chars: int = 8000) -> str:
        """Exit code, unexpected-message errors and the process log, for failure reports."""
        parts = [
            f"SIPp {self.name} on {self.host}:{self.port}/{self.transport} rc={self.returncode}"
        ]
        if self.returncode is not None:
            parts[0] += f" ({SIPP_EXIT_CODES.get(self.returncode, 'unknown')})"
        for label, path in (("errors", self.error_path), ("log", self.log_path)):
            if path.exists():
                parts.append(f"--- {label} ({path}) ---\n{path.read_text(errors='replace')}")
        text = "\n".join(parts)
        return text if len(text) <= max_chars else "[...]\n" + text[-max_chars:]


def port_bound(port: int, transport: str) -> bool:
    """True if some socket is bound to ``port`` (UDP) or listens on it (TCP).

    Reads /proc/net (Linux) rather than probing, so it cannot disturb the peer.
    """
    files = ("udp", "udp6") if transport == "udp" else ("tcp", "tcp6")
    want = f":{port:04X}"
    for name in files:
        try:
            lines = Path("/proc/net", name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or not fields[1].endswith(want):
                continue
            if transport == "udp" or fields[3] == "0A":  # 0A = TCP_LISTEN
                return True
    return False
