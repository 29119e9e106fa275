"""Run Kamailio 5.6 as registrar + stateful proxy (+ TLS, + presence) for one test.

One config template (``tests/interop/kamailio/proxy.cfg``) serves every test:
values (ports, realm, users, paths) are rendered into ``@@NAME@@`` tokens, features
are switched on with ``kamailio -A WITH_X`` defines. Kamailio runs in the foreground
(``-DD -E``) in a per-test run directory and is ended by PID. Registrations are read
back with ``kamcmd ul.dump`` over the ``ctl`` module's unix socket.
"""

from __future__ import annotations

import dataclasses
import re
import socket
import sqlite3
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .certs import CertBundle
from .process import ManagedProcess, PeerStartError, wait_until

__all__ = ["Contact", "KamailioConfig", "KamailioServer"]

TEMPLATE = Path(__file__).resolve().parent.parent / "kamailio" / "proxy.cfg"
SQL_DIR = Path("/usr/share/kamailio/db_sqlite")
# Digest algorithms Kamailio 5.6's auth module accepts ("" = MD5, header omitted).
# SHA-512-256 (RFC 8760) is *not* offered by 5.6.
ALGORITHMS = ("", "MD5", "SHA-256")
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9!#%&'()*+,\-./:;<=>?@\[\]^_`{|}~ ]*$")
_SAFE_TOKEN = re.compile(r"^[A-Za-z0-9._\-]+$")


@dataclass(frozen=True, slots=True)
class KamailioConfig:
    """What one Kamailio instance should do.

    users: ``{"alice": "secret"}`` plain passwords; None disables digest auth
        entirely (open registrar). Unknown users get 403 before any digest check.
    realm: digest realm, also added as a Kamailio ``alias`` so that
        ``sip:alice@<realm>`` is "myself".
    algorithm: ``"MD5"``, ``"SHA-256"`` or ``""`` (MD5 with no algorithm param
        in the challenge). 5.6 offers nothing else.
    qop: ``"auth"`` (challenge carries qop="auth") or None (RFC 2069 style).
    challenge_requests: also challenge initial INVITE/MESSAGE/SUBSCRIBE/PUBLISH/
        REFER/NOTIFY/OPTIONS-to-a-user with 407 (REGISTER always gets 401).
    tls: also listen on a TLS port with a generated certificate (needs ``certs``).
    presence: run the presence + presence_xml server (sqlite db, force_active).
    nat: ``fix_nated_register`` so contacts are reached at the REGISTER's source.
    default_expires / min_expires / max_expires: registrar limits in seconds.
    min_expires_reject: answer 423 Interval Too Brief below ``min_expires``
        (Kamailio's default silently raises the expiry instead).
    debug: Kamailio log level (2 = info, 3 = debug).
    """

    users: Mapping[str, str] | None = None
    realm: str = "test.local"
    algorithm: str = "MD5"
    qop: str | None = "auth"
    challenge_requests: bool = False
    tls: bool = False
    presence: bool = False
    nat: bool = False
    default_expires: int = 3600
    min_expires: int = 10
    max_expires: int = 3600
    min_expires_reject: bool = False
    debug: int = 2
    extra_defines: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"Kamailio 5.6 offers algorithms {ALGORITHMS}, not {self.algorithm!r}")
        if self.qop not in (None, "auth"):
            raise ValueError(f"qop must be 'auth' or None, not {self.qop!r}")
        if not _SAFE_TOKEN.match(self.realm):
            raise ValueError(f"realm {self.realm!r} must be a plain token")
        for user, password in (self.users or {}).items():
            if not _SAFE_TOKEN.match(user) or not _SAFE_VALUE.match(password):
                raise ValueError(f"user/password for {user!r} has characters the cfg cannot quote")


@dataclass(frozen=True, slots=True)
class Contact:
    """One registered contact as ``kamcmd ul.dump`` reports it."""

    aor: str
    uri: str
    expires: int
    """Seconds left, as Kamailio counts them (0 would mean permanent)."""
    q: float | None
    received: str | None
    socket: str | None
    call_id: str | None
    cseq: int | None
    user_agent: str | None
    path: str | None
    raw: Mapping[str, str]


class KamailioServer:
    """One Kamailio process: start, stop, restart on the same ports, inspect.

    ``port`` serves UDP and TCP, ``tls_port`` TLS (when ``config.tls``); ``ca_cert``
    is the CA a client must trust. ``run_dir`` holds the rendered cfg, the log,
    the ctl socket, tls.cfg and the presence db.
    """

    def __init__(
        self,
        config: KamailioConfig,
        run_dir: Path,
        *,
        port: int,
        tls_port: int | None = None,
        certs: CertBundle | None = None,
        host: str = "127.0.0.1",
        start_timeout: float = 10.0,
    ) -> None:
        if config.tls and (tls_port is None or certs is None):
            raise ValueError("tls=True needs tls_port and certs")
        self.config = config
        self.run_dir = run_dir
        self.host = host
        self.port = port
        self.tls_port = tls_port if config.tls else None
        self.certs = certs if config.tls else None
        self.start_timeout = start_timeout
        self.ctl_socket = run_dir / "ctl.sock"
        self.cfg_path = run_dir / "kamailio.cfg"
        self.log_path = run_dir / "kamailio.log"
        self.presence_db = run_dir / "presence.sqlite" if config.presence else None
        self.process: ManagedProcess | None = None
        run_dir.mkdir(parents=True, exist_ok=True)
        self._render()

    # -- addresses ---------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        """(host, port) of the UDP/TCP listener."""
        return (self.host, self.port)

    @property
    def ca_cert(self) -> Path | None:
        """The CA certificate that signed the TLS server certificate."""
        return self.certs.ca_cert if self.certs else None

    def uri(self, user: str | None = None, transport: str | None = None) -> str:
        """``sip:[user@]host:port[;transport=x]`` for this server (``sips:`` for tls)."""
        scheme, port = "sip", self.port
        if transport == "tls":
            if self.tls_port is None:
                raise ValueError("this Kamailio has no TLS listener")
            scheme, port = "sips", self.tls_port
        userpart = f"{user}@" if user else ""
        params = f";transport={transport}" if transport in ("tcp", "udp") else ""
        return f"{scheme}:{userpart}{self.host}:{port}{params}"

    # -- config ------------------------------------------------------------------
    def _defines(self) -> list[str]:
        c = self.config
        defines = list(c.extra_defines)
        if c.users is not None:
            defines.append("WITH_AUTH")
            if c.challenge_requests:
                defines.append("WITH_AUTH_REQ")
        if c.tls:
            defines.append("WITH_TLS")
        if c.presence:
            defines.append("WITH_PRESENCE")
        if c.nat:
            defines.append("WITH_NAT")
        return defines

    def _render(self) -> None:
        c = self.config
        if c.users:
            cases = "".join(
                f'\t\tcase "{user}":\n\t\t\t$var(pw) = "{pw}";\n\t\t\tbreak;\n'
                for user, pw in c.users.items()
            )
            passwords = f"\tswitch ($au) {{\n{cases}\t}}"
        else:
            passwords = '\t$var(pw) = "";'
        values = {
            "DEBUG": str(c.debug),
            "HOST": self.host,
            "PORT": str(self.port),
            "TLS_PORT": str(self.tls_port or 0),
            "DOMAIN": c.realm,
            "REALM": c.realm,
            "CTL_SOCKET": str(self.ctl_socket),
            "DEFAULT_EXPIRES": str(c.default_expires),
            "MIN_EXPIRES": str(c.min_expires),
            "MAX_EXPIRES": str(c.max_expires),
            "MIN_EXPIRES_MODE": "1" if c.min_expires_reject else "0",
            "ALGORITHM": c.algorithm,
            # auth_challenge flags: 1 = qop="auth" in the challenge
            "CHALLENGE_FLAGS": "1" if c.qop == "auth" else "0",
            "TLS_CONFIG": str(self.run_dir / "tls.cfg"),
            "PRESENCE_DB": str(self.presence_db or ""),
            "PASSWORDS": passwords,
        }
        text = TEMPLATE.read_text()
        for name, value in values.items():
            text = text.replace(f"@@{name}@@", value)
        leftover = re.findall(r"@@[A-Z_]+@@", text)
        if leftover:
            raise AssertionError(f"{TEMPLATE} has unrendered tokens {leftover}")
        self.cfg_path.write_text(text)
        if self.certs:
            (self.run_dir / "tls.cfg").write_text(
                "[server:default]\n"
                "method = TLSv1.2+\n"
                "verify_certificate = no\n"
                "require_certificate = no\n"
                f"private_key = {self.certs.server_key}\n"
                f"certificate = {self.certs.server_cert}\n"
                f"ca_list = {self.certs.ca_cert}\n"
                "\n[client:default]\n"
                "method = TLSv1.2+\n"
                "verify_certificate = no\n"
                "require_certificate = no\n"
            )

    def _make_presence_db(self) -> None:
        assert self.presence_db is not None
        self.presence_db.unlink(missing_ok=True)
        with sqlite3.connect(self.presence_db) as db:
            for name in ("standard-create.sql", "presence-create.sql"):
                db.executescript((SQL_DIR / name).read_text())
        db.close()

    # -- lifecycle ---------------------------------------------------------------
    def check_config(self) -> None:
        """Run ``kamailio -c``; raise PeerStartError with its output if the cfg is bad."""
        argv = ["kamailio", "-c", "-f", str(self.cfg_path)]
        for name in self._defines():
            argv += ["-A", name]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        if proc.returncode != 0:
            raise PeerStartError(f"kamailio -c rejected {self.cfg_path}:\n{proc.stderr[-4000:]}")

    def start(self) -> None:
        """Start Kamailio (fresh, empty location table) and wait until it answers.

        Ready means: an OPTIONS over UDP gets a response, the TCP (and TLS) port
        accepts a connection, and the ctl socket exists. Bounded by start_timeout.
        """
        if self.process is not None and self.process.running:
            raise RuntimeError("Kamailio is already running")
        if self.presence_db is not None:
            self._make_presence_db()
        self.ctl_socket.unlink(missing_ok=True)
        argv = ["kamailio", "-DD", "-E", "-f", str(self.cfg_path), "-Y", str(self.run_dir)]
        argv += ["-P", str(self.run_dir / "kamailio.pid")]
        for name in self._defines():
            argv += ["-A", name]
        self.process = ManagedProcess(argv, self.log_path, cwd=self.run_dir, name="kamailio")
        try:
            ready = wait_until(self._ready, self.start_timeout, interval=0.05)
        except BaseException:
            self.stop()
            raise
        if not ready:
            log = self.process.log_text(6000)
            self.stop()
            raise PeerStartError(f"Kamailio not ready in {self.start_timeout}s; log:\n{log}")

    def stop(self) -> None:
        """End Kamailio by PID (SIGTERM, then SIGKILL to its group); idempotent."""
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        """Stop and start again on the same ports: every registration is forgotten."""
        self.stop()
        self.start()

    def set_users(self, users: Mapping[str, str]) -> None:
        """Change the digest users and restart (a password fixed on the server)."""
        self.stop()
        self.config = dataclasses.replace(self.config, users=dict(users))
        self._render()
        self.start()

    @property
    def running(self) -> bool:
        """True while the Kamailio main process lives."""
        return self.process is not None and self.process.running

    def log_text(self, max_chars: int = 20000) -> str:
        """Tail of Kamailio's log (all runs of this server)."""
        return self.process.log_text(max_chars) if self.process else ""

    def _ready(self) -> bool:
        assert self.process is not None
        if not self.process.running:
            raise PeerStartError(
                f"Kamailio exited with {self.process.returncode}; log:\n"
                + self.process.log_text(6000)
            )
        if not self.ctl_socket.exists():
            return False
        ports = [self.port] + ([self.tls_port] if self.tls_port else [])
        for port in ports:
            try:
                socket.create_connection((self.host, port), timeout=0.2).close()
            except OSError:
                return False
        return self._options_answered()

    def _options_answered(self) -> bool:
        branch = "z9hG4bK" + uuid.uuid4().hex
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((self.host, 0))
            local = sock.getsockname()[1]
            request = (
                f"OPTIONS sip:{self.host}:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {self.host}:{local};branch={branch};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{self.host}:{local}>;tag={uuid.uuid4().hex[:8]}\r\n"
                f"To: <sip:{self.host}:{self.port}>\r\n"
                f"Call-ID: {uuid.uuid4().hex}@probe\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            )
            sock.settimeout(0.3)
            try:
                sock.sendto(request.encode(), (self.host, self.port))
                data = sock.recv(65535)
            except OSError:
                return False
        return data.startswith(b"SIP/2.0 ")

    # -- inspection --------------------------------------------------------------
    def kamcmd(self, *args: str, timeout: float = 10.0) -> str:
        """Run ``kamcmd -s unix:<ctl socket> ARGS`` and return its stdout."""
        proc = subprocess.run(
            ["kamcmd", "-s", f"unix:{self.ctl_socket}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"kamcmd {' '.join(args)} failed: {proc.stderr or proc.stdout}")
        return proc.stdout

    def registrations(self) -> dict[str, list[Contact]]:
        """Registered contacts by AOR, parsed from ``kamcmd ul.dump``.

        AORs are user parts only (usrloc runs with use_domain=0): ``"alice"``.
        """
        return parse_ul_dump(self.kamcmd("ul.dump"))


def parse_ul_dump(text: str) -> dict[str, list[Contact]]:
    """Parse ``kamcmd ul.dump`` text output into contacts by AOR."""
    result: dict[str, list[Contact]] = {}
    aor: str | None = None
    current: dict[str, str] | None = None

    def flush() -> None:
        if current is not None and aor is not None:
            result.setdefault(aor, []).append(_contact(aor, current))

    for line in text.splitlines():
        stripped = line.strip()
        if stripped == "}" and current is not None:
            # Contact blocks hold no nested braces: this closes the contact.
            flush()
            current = None
            continue
        key, sep, value = stripped.partition(":")
        if not sep:
            continue
        key, value = key.strip(), value.strip()
        if key == "AoR":
            flush()
            current = None
            aor = value
            result.setdefault(aor, [])
        elif key == "Contact" and value == "{":
            flush()
            current = {}
        elif key == "Address" and current is not None and "Address" not in current:
            current["Address"] = value
        elif current is not None and key not in current:
            current[key] = value
    flush()
    return result


def _opt(raw: Mapping[str, str], key: str) -> str | None:
    value = raw.get(key)
    return None if value in (None, "", "[not set]", "<null>") else value


def _contact(aor: str, raw: dict[str, str]) -> Contact:
    expires_text = raw.get("Expires", "0")
    expires = 0 if expires_text == "permanent" else int(expires_text)
    q = _opt(raw, "Q")
    cseq = _opt(raw, "CSeq")
    return Contact(
        aor=aor,
        uri=raw.get("Address", ""),
        expires=expires,
        q=float(q) if q not in (None, "-1") else None,
        received=_opt(raw, "Received"),
        socket=_opt(raw, "Socket"),
        call_id=_opt(raw, "Call-ID"),
        cseq=int(cseq) if cseq else None,
        user_agent=_opt(raw, "User-Agent"),
        path=_opt(raw, "Path"),
        raw=dict(raw),
    )
