"""The firmware's configuration file (TOML): load, validate, convert.

A user edits one file, often on an SD card from another PC, and the device
has no screen. So every mistake is reported with the file, the line, the key,
what was expected and what was found, and *all* mistakes are reported at once
(``intercom config check`` should be one round trip, not ten). Unknown keys are
errors: a misspelt ``reg_timout`` silently ignored is a day of debugging.

Passwords may live in a separate secrets file that only its owner may read;
:func:`load_config` refuses one that group or others can open.

The result is a tree of frozen dataclasses (:class:`Config`); conversions to
the lower layers' configuration (:meth:`AccountSettings.to_account_config`,
:meth:`Config.gpio_config`, :meth:`AudioSettings.to_audio_config`) live next to
them. Loading never touches a running system: :func:`reload` builds a new
:class:`Config` and hands back the old one if the file is broken (for example
truncated while an editor was writing it).
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hal.gpio import (
    ButtonConfig,
    GpioConfig,
    GpioConfigError,
    LedConfig,
    Pull,
    RelayConfig,
    validate_config,
)
from sipstack.account_config import INVALID_ID, MAX_ACC, AccountConfig
from sipstack.digest import CredentialInfo, DataType
from sipstack.errors import SipParseError

if TYPE_CHECKING:
    from hal.audio import AudioConfig
    from hal.voice import VoiceConfig

__all__ = [
    "DEFAULT_PATH",
    "BUILTIN_SOURCE",
    "ConfigProblem",
    "ConfigError",
    "ListenAddress",
    "SipSettings",
    "AccountSettings",
    "AudioSettings",
    "ButtonSettings",
    "LedSettings",
    "RelaySettings",
    "IntercomSettings",
    "Config",
    "load_config",
    "reload",
    "default_config",
]

#: Where ``intercom run`` looks when no ``--config`` is given.
DEFAULT_PATH = "/etc/intercom/intercom.toml"
#: :attr:`Config.source` of the built-in default.
BUILTIN_SOURCE = "<built-in default>"

BUTTON_ACTIONS = ("call", "answer", "hangup", "speed_dial", "door")
LED_SHOWS = ("status", "ringing", "call")
PROFILES = ("intercom", "desk")
TRANSPORTS = ("udp", "tcp", "tls")
# RFC 4733 3.2: the DTMF events a telephone keypad can send.
_DTMF_DIGITS = frozenset("0123456789*#ABCD")
_MIN_DOOR_CODE = 4  # shorter codes are guessed by a patient visitor
_MAX_RELAY_PULSE = 30.0  # hal.gpio.RelayConfig.max_pulse: strikes overheat

# -- problems -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One mistake in a config file.

    ``key`` is a dotted path with 1-based indices for arrays of tables
    (``accounts[2].cred_info[1].username``: the second ``[[accounts]]``);
    ``line`` is None only when the file could not be read at all.
    """

    file: str
    line: int | None
    key: str
    expected: str
    found: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} expected {self.expected}, found {self.found}"


class ConfigError(ValueError):
    """The configuration file is wrong: the user's fault, with every problem listed."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# -- where keys are (tomllib does not say) -------------------------------------

PathKey = tuple[str | int, ...]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _split_key(line: str, i: int) -> tuple[list[str], int]:
    """Parse a (dotted, maybe quoted) TOML key starting at ``line[i]``."""
    parts: list[str] = []
    n = len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] in "\"'":
            quote = line[i]
            j = i + 1
            while j < n and line[j] != quote:
                j += 2 if quote == '"' and line[j] == "\\" else 1
            parts.append(line[i + 1 : j])
            i = j + 1
        else:
            m = _BARE_KEY.match(line, i)
            if m is None:
                return parts, i
            parts.append(m.group())
            i = m.end()
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] == ".":
            i += 1
            continue
        return parts, i


def _scan_value(line: str, i: int, multiline: str | None, depth: int) -> tuple[str | None, int]:
    """Follow a value through ``line``; return the open multi-line string and bracket depth."""
    n = len(line)
    while i < n:
        c = line[i]
        if multiline is not None:
            if multiline == '"""' and c == "\\":
                i += 2
            elif line.startswith(multiline, i):
                i += 3
                while i < n and line[i] == multiline[0]:  # up to two quotes may close it
                    i += 1
                multiline = None
            else:
                i += 1
            continue
        if c == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            multiline = line[i : i + 3]
            i += 3
            continue
        if c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if c == '"' and line[j] == "\\" else 1
            i = j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return multiline, depth


def key_lines(text: str) -> dict[PathKey, int]:
    """Map every key and table of a *valid* TOML document to the line it starts on.

    Paths use 0-based integers for array-of-tables elements:
    ``("accounts", 1, "cred_info", 0, "username")``. Values inside inline
    tables and arrays are not mapped; :func:`line_of` falls back to the
    enclosing key.
    """
    lines: dict[PathKey, int] = {}
    table: PathKey = ()
    counts: dict[PathKey, int] = {}  # array-of-tables path -> current index

    def resolve(parts: list[str]) -> list[str | int]:
        out: list[str | int] = []
        for part in parts:
            out.append(part)
            if tuple(out) in counts:
                out.append(counts[tuple(out)])
        return out

    multiline: str | None = None
    depth = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if multiline is not None or depth > 0:
            multiline, depth = _scan_value(line, 0, multiline, depth)
            continue
        stripped = line.lstrip()
        start = len(line) - len(stripped)
        if not stripped or stripped[0] == "#":
            continue
        if stripped.startswith("[["):
            parts, _ = _split_key(line, start + 2)
            array: PathKey = (*resolve(parts[:-1]), parts[-1])
            counts[array] = counts.get(array, -1) + 1
            table = (*array, counts[array])
            lines.setdefault(array, lineno)
            lines.setdefault(table, lineno)
        elif stripped.startswith("["):
            parts, _ = _split_key(line, start + 1)
            table = tuple(resolve(parts))
            lines.setdefault(table, lineno)
        else:
            parts, i = _split_key(line, start)
            for k in range(1, len(parts) + 1):
                lines.setdefault((*table, *parts[:k]), lineno)
            eq = line.find("=", i)
            multiline, depth = _scan_value(line, eq + 1, None, 0)
    return lines


def line_of(lines: Mapping[PathKey, int], path: PathKey) -> int | None:
    """The line of ``path``, or of its nearest enclosing key or table."""
    for k in range(len(path), 0, -1):
        if path[:k] in lines:
            return lines[path[:k]]
    return None


def _key_text(path: PathKey) -> str:
    out = ""
    for part in path:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _describe(value: object, secret: bool = False) -> str:
    """Say what a TOML value is, for "found ...". Secrets show their type only."""
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    if secret or isinstance(value, list | dict):
        return kind
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if value else "an empty string"
    return f"{kind} {value!r}"


# -- reading tables -------------------------------------------------------------


class _Context:
    """One file being read: its name, its key lines and the problems found so far."""

    def __init__(self, file: str, text: str, problems: list[ConfigProblem]) -> None:
        self.file = file
        self.lines = key_lines(text)
        self.problems = problems

    def problem(self, path: PathKey, expected: str, found: str) -> None:
        line = line_of(self.lines, path)
        self.problems.append(ConfigProblem(self.file, line, _key_text(path), expected, found))

    def source(self, path: PathKey) -> str:
        """``"intercom.toml line N"``, the label the hal configs carry."""
        return f"{os.path.basename(self.file)} line {line_of(self.lines, path) or '?'}"


class _Table:
    """Typed access to one TOML table; remembers which keys were read.

    Each getter returns the default after recording a problem, so reading goes
    on and every mistake in the file is reported in one pass.
    """

    def __init__(self, ctx: _Context, path: PathKey, data: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.path = path
        self.data = data
        self._known: list[str] = []

    def has(self, key: str) -> bool:
        return key in self.data

    def line(self, key: str | None = None) -> int | None:
        return line_of(self.ctx.lines, self.path if key is None else (*self.path, key))

    def problem(self, key: str | None, expected: str, found: str) -> None:
        self.ctx.problem(self.path if key is None else (*self.path, key), expected, found)

    def _get(self, key: str, required: bool, expected: str) -> Any:
        if key not in self._known:
            self._known.append(key)
        if key not in self.data:
            if required:
                self.problem(None, f"a key {key!r} ({expected})", "none")
            return None
        return self.data[key]

    def string(
        self,
        key: str,
        default: str = "",
        *,
        required: bool = False,
        choices: Sequence[str] | None = None,
        secret: bool = False,
        check: Callable[[str], str | None] | None = None,
    ) -> str:
        """A string; ``check`` returns what was expected when the value is wrong."""
        expected = "a string" if choices is None else "one of " + ", ".join(map(repr, choices))
        value = self._get(key, required, expected)
        if value is None:
            return default
        if not isinstance(value, str) or (choices is not None and value not in choices):
            self.problem(key, expected, _describe(value, secret))
            return default
        if check is not None and (want := check(value)) is not None:
            self.problem(key, want, _describe(value, secret))
            return default
        return value

    def integer(
        self,
        key: str,
        default: int,
        *,
        lo: int | None = None,
        hi: int | None = None,
        required: bool = False,
        choices: Sequence[int] | None = None,
    ) -> int:
        if choices is not None:
            expected = "one of " + ", ".join(map(str, choices))
        elif lo is not None and hi is not None:
            expected = f"an integer from {lo} to {hi}"
        elif lo is not None:
            expected = f"an integer >= {lo}"
        else:
            expected = "an integer"
        value = self._get(key, required, expected)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (choices is not None and value not in choices)
            or (lo is not None and value < lo)
            or (hi is not None and value > hi)
        ):
            self.problem(key, expected, _describe(value))
            return default
        return value

    def number(
        self, key: str, default: float, *, lo: float, hi: float, lo_open: bool = True
    ) -> float:
        """A number of seconds or similar; integers are accepted."""
        low = "more than" if lo_open else "at least"
        expected = f"a number {low} {lo:g} and at most {hi:g}"
        value = self._get(key, False, expected)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (lo < value <= hi if lo_open else lo <= value <= hi)
        ):
            self.problem(key, expected, _describe(value))
            return default
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, False, "true or false")
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, "true or false", _describe(value))
            return default
        return value

    def strings(
        self, key: str, *, check: Callable[[str], str | None] | None = None
    ) -> tuple[str, ...]:
        """A list of strings; a single string is taken as a list of one."""
        expected = "a string or a list of strings"
        value = self._get(key, False, expected)
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            self.problem(key, expected, _describe(value))
            return ()
        good: list[str] = []
        for item in items:
            if check is not None and (want := check(item)) is not None:
                self.problem(key, want, _describe(item))
            else:
                good.append(item)
        return tuple(good)

    def table(self, key: str) -> _Table | None:
        value = self._get(key, False, "a table")
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, f"a [{key}] table", _describe(value))
            return None
        return _Table(self.ctx, (*self.path, key), value)

    def tables(self, key: str) -> list[_Table]:
        value = self._get(key, False, "an array of tables")
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problem(key, f"[[{key}]] tables", _describe(value))
            return []
        return [_Table(self.ctx, (*self.path, key, i), v) for i, v in enumerate(value)]

    def finish(self) -> None:
        """Report every key that no getter asked for."""
        for key in self.data:
            if key in self._known:
                continue
            close = difflib.get_close_matches(key, self._known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = _key_text(self.path) or "the top level"
            self.problem(
                key,
                f"one of the keys of {where}: {', '.join(self._known)}",
                f"unknown key {key!r}{hint}",
            )


# -- value checks ---------------------------------------------------------------


def _check_sip_uri(value: str) -> str | None:
    from sipstack.uri import parse_uri  # the parser is heavy to import; only when needed

    expected = 'a SIP URI like "sip:user@pbx.example.com"'
    try:
        uri = parse_uri(value)
    except SipParseError:
        return expected
    return None if uri.scheme in ("sip", "sips", "tel") else expected


def _check_name_addr(value: str) -> str | None:
    from sipstack.headers import NameAddr

    expected = 'a SIP URI, optionally with a name: "Door" <sip:door@pbx.example.com>'
    try:
        addr = NameAddr.parse(value)
    except SipParseError:
        return expected
    return None if addr.uri.scheme in ("sip", "sips") else expected


def _check_pattern(value: str) -> str | None:
    expected = 'a SIP URI or a pattern like "sip:*@pbx.example.com"'
    if not value.startswith(("sip:", "sips:", "tel:")) or any(c in value for c in " <>\"'"):
        return expected
    if "*" in value or "?" in value or "[" in value:
        return None
    return _check_sip_uri(value)


def _check_door_code(value: str) -> str | None:
    if value == "":
        return None
    if not set(value) <= _DTMF_DIGITS or not _MIN_DOOR_CODE <= len(value) <= 16:
        return f'{_MIN_DOOR_CODE} to 16 DTMF digits (0-9 * # A-D), or "" for none'
    return None


def _check_file(base: Path) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value and not (base / value).is_file():
            return "the path of an existing file"
        return None

    return check


# -- the sections -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where a transport listens; port 0 lets the system choose."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _parse_listen(value: str) -> ListenAddress | None:
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]\s]+):(\d{1,5})", value)
    if m is None:
        return None
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    return ListenAddress(host, port) if port <= 65535 else None


@dataclass(frozen=True, slots=True)
class SipSettings:
    """``[sip]``: transports (None = disabled), TLS files, User-Agent header."""

    udp: ListenAddress | None = ListenAddress("0.0.0.0", 5060)
    tcp: ListenAddress | None = ListenAddress("0.0.0.0", 5060)
    tls: ListenAddress | None = None
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    user_agent: str = "intercom-firmware"

    def enabled(self) -> tuple[str, ...]:
        """The names of the enabled transports."""
        return tuple(t for t in TRANSPORTS if getattr(self, t) is not None)


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """One ``[[accounts]]`` entry; keys are named as in :class:`AccountConfig`.

    ``local`` accounts are userless (``sip:ADDRESS:PORT``) and take only
    ``transport`` and ``priority``. ``transport`` is "" for any. ``line`` is
    where the entry starts, for messages at run time.
    """

    line: int
    local: bool = False
    id: str = ""
    reg_uri: str = ""
    proxy: tuple[str, ...] = ()
    cred_info: tuple[CredentialInfo, ...] = ()
    reg_timeout: int = 300
    reg_retry_interval: int = 300
    reg_first_retry_interval: int = 0
    reg_delay_before_refresh: int = 5
    unreg_timeout: float = 4.0
    reg_use_proxy: int = 3
    contact_params: str = ""
    contact_uri_params: str = ""
    allow_contact_rewrite: bool = True
    allow_via_rewrite: bool = True
    ka_interval: int = 15
    publish_enabled: bool = False
    priority: int = 0
    transport: str = ""
    use_rfc5626: bool = False

    def to_account_config(self, transport_id: int = INVALID_ID) -> AccountConfig:
        """The user agent's configuration; ``transport_id`` is the transport the
        firmware created for :attr:`transport` (the config cannot know its id)."""
        if self.local:
            raise ValueError(f"account at line {self.line} is local: use acc_add_local")
        return AccountConfig(
            id=self.id,
            reg_uri=self.reg_uri,
            proxy=list(self.proxy),
            cred_info=list(self.cred_info),
            reg_timeout=self.reg_timeout,
            reg_retry_interval=self.reg_retry_interval,
            reg_first_retry_interval=self.reg_first_retry_interval,
            reg_delay_before_refresh=self.reg_delay_before_refresh,
            unreg_timeout=self.unreg_timeout,
            reg_use_proxy=self.reg_use_proxy,
            contact_params=self.contact_params,
            contact_uri_params=self.contact_uri_params,
            allow_contact_rewrite=self.allow_contact_rewrite,
            allow_via_rewrite=self.allow_via_rewrite,
            ka_interval=self.ka_interval,
            publish_enabled=self.publish_enabled,
            priority=self.priority,
            transport_id=transport_id,
            use_rfc5626=self.use_rfc5626,
        )


@dataclass(frozen=True, slots=True)
class AudioSettings:
    """``[audio]``: ALSA devices, rate and framing, voice processing, volume (0-100)."""

    capture_device: str = "default"
    playback_device: str = "default"
    sample_rate: int = 8000
    ptime: int = 20
    buffer_periods: int = 4
    echo_cancel: bool = True
    noise_suppression: bool = True
    agc: bool = True
    volume: int | None = None

    def to_audio_config(self) -> AudioConfig:
        """The hardware layer's device configuration."""
        from hal.audio import AudioConfig  # only when audio starts: keeps start-up lean

        return AudioConfig(
            sample_rate=self.sample_rate,
            ptime_ms=self.ptime,
            buffer_periods=self.buffer_periods,
            prefill_periods=min(2, self.buffer_periods - 1),
            capture_device=self.capture_device,
            playback_device=self.playback_device,
        )

    def to_voice_config(self) -> VoiceConfig:
        """The voice chain's configuration (echo canceller, denoiser, AGC)."""
        from hal.voice import VoiceConfig

        return VoiceConfig(
            echo_cancel=self.echo_cancel, noise_suppression=self.noise_suppression, agc=self.agc
        )


@dataclass(frozen=True, slots=True)
class ButtonSettings:
    """One ``[[buttons]]``: ``targets`` for ``call`` / ``speed_dial``; ``source`` its line."""

    name: str
    bcm: int
    action: str
    source: str
    targets: tuple[str, ...] = ()
    pull: Pull = Pull.UP
    active_low: bool = True
    debounce: float = 0.03
    long_press: float | None = 1.5


@dataclass(frozen=True, slots=True)
class LedSettings:
    """One ``[[leds]]``; ``shows`` is ``status``, ``ringing`` or ``call``."""

    name: str
    bcm: int
    shows: str
    source: str
    active_high: bool = True


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """``[relay]``: the door opener, pulsed for ``pulse_seconds``."""

    bcm: int
    source: str
    pulse_seconds: float = 3.0
    active_high: bool = True
    name: str = "door"


@dataclass(frozen=True, slots=True)
class IntercomSettings:
    """``[intercom]``: what the device does (see :mod:`firmware.behaviour`).

    ``max_call_seconds`` 0 means no limit. ``door_code`` "" means DTMF never
    opens the door; ``door_code_from`` empty means "the trusted callers".
    """

    profile: str = "intercom"
    auto_answer: bool = False
    trusted: tuple[str, ...] = ()
    door_code: str = ""
    door_code_from: tuple[str, ...] = ()
    hangup_after_door: bool = False
    max_call_seconds: int = 0
    bell_during_call: str = "ignore"
    ring_mode: str = "sequential"
    ring_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, validated configuration. ``source`` is the file it came from."""

    source: str = BUILTIN_SOURCE
    hal: str = "rpi"
    sip: SipSettings = SipSettings()
    accounts: tuple[AccountSettings, ...] = ()
    audio: AudioSettings = AudioSettings()
    buttons: tuple[ButtonSettings, ...] = ()
    leds: tuple[LedSettings, ...] = ()
    relay: RelaySettings | None = None
    intercom: IntercomSettings = IntercomSettings()
    secrets: str = ""

    def gpio_config(self) -> GpioConfig:
        """The hardware layer's pin configuration, each entry labelled with its line."""
        return GpioConfig(
            buttons=tuple(
                ButtonConfig(
                    b.name,
                    b.bcm,
                    b.source,
                    pull=b.pull,
                    active_low=b.active_low,
                    debounce=b.debounce,
                    long_press=b.long_press,
                )
                for b in self.buttons
            ),
            leds=tuple(LedConfig(x.name, x.bcm, x.source, x.active_high) for x in self.leds),
            relays=()
            if self.relay is None
            else (
                RelayConfig(
                    self.relay.name,
                    self.relay.bcm,
                    self.relay.source,
                    self.relay.active_high,
                    max_pulse=_MAX_RELAY_PULSE,
                ),
            ),
        )


def default_config() -> Config:
    """What runs with no config file: simulated hardware, one local account,
    UDP and TCP on 5060 (the runner moves to the next free port), a desk-phone
    profile so an incoming call rings and ``intercom answer`` takes it."""
    return Config(
        source=BUILTIN_SOURCE,
        hal="sim",
        accounts=(AccountSettings(line=0, local=True),),
        buttons=(
            ButtonSettings("answer", 17, "answer", f"{BUILTIN_SOURCE} answer"),
            ButtonSettings("hangup", 27, "hangup", f"{BUILTIN_SOURCE} hangup"),
        ),
        leds=(LedSettings("status", 22, "status", f"{BUILTIN_SOURCE} status"),),
        intercom=IntercomSettings(profile="desk"),
    )


# -- reading each section -----------------------------------------------------------


def _read_sip(t: _Table | None, base: Path) -> SipSettings:
    if t is None:
        return SipSettings()
    defaults = SipSettings()
    listen: dict[str, ListenAddress | None] = {}
    for name in TRANSPORTS:
        dflt = getattr(defaults, name)
        text = t.string(
            name,
            "" if dflt is None else str(dflt),
            check=lambda v: (
                None
                if v == "" or _parse_listen(v)
                else 'a listen address "host:port" ("[::]:5060" for IPv6) or "" to disable'
            ),
        )
        listen[name] = _parse_listen(text) if text else None
    check = _check_file(base)
    settings = SipSettings(
        udp=listen["udp"],
        tcp=listen["tcp"],
        tls=listen["tls"],
        tls_cert=t.string("tls_cert", check=check),
        tls_key=t.string("tls_key", check=check),
        tls_ca=t.string("tls_ca", check=check),
        user_agent=t.string("user_agent", defaults.user_agent),
    )
    if settings.tls is not None:
        for key in ("tls_cert", "tls_key"):
            if not t.has(key):
                t.problem("tls", f"{key} to be set when tls is enabled", "no " + key)
    if not settings.enabled():
        t.problem(None, "at least one of udp, tcp, tls enabled", "all disabled")
    t.finish()
    return settings


_ACCOUNT_INTS: dict[str, tuple[int, int]] = {
    "reg_timeout": (1, 86400),
    "reg_retry_interval": (0, 86400),
    "reg_first_retry_interval": (0, 86400),
    "reg_delay_before_refresh": (0, 3600),
    "reg_use_proxy": (0, 3),
    "ka_interval": (0, 3600),
}
_ACCOUNT_BOOLS = (
    "allow_contact_rewrite",
    "allow_via_rewrite",
    "publish_enabled",
    "use_rfc5626",
)


def _read_account(
    t: _Table, sip: SipSettings, passwords: Mapping[str, str] | None, secrets_file: str
) -> AccountSettings:
    values: dict[str, Any] = {"line": t.line() or 0}
    values["local"] = local = t.boolean("local", False)
    transports = ("", *sip.enabled())
    values["transport"] = t.string("transport", "", choices=transports)
    values["priority"] = t.integer("priority", 0, lo=-1000, hi=1000)
    if local:
        t.finish()  # every other key is unknown for a local account
        return AccountSettings(**values)
    values["id"] = t.string("id", required=True, check=_check_name_addr)
    values["reg_uri"] = t.string("reg_uri", check=lambda v: v and _check_sip_uri(v) or None)
    values["proxy"] = t.strings("proxy", check=_check_sip_uri)
    defaults = AccountConfig()  # the user agent's defaults stay the file's defaults
    for key, (lo, hi) in _ACCOUNT_INTS.items():
        values[key] = t.integer(key, getattr(defaults, key), lo=lo, hi=hi)
    values["unreg_timeout"] = t.number("unreg_timeout", defaults.unreg_timeout, lo=0, hi=60)
    for key in _ACCOUNT_BOOLS:
        values[key] = t.boolean(key, getattr(defaults, key))
    values["contact_params"] = t.string("contact_params")
    values["contact_uri_params"] = t.string("contact_uri_params")
    creds: list[CredentialInfo] = []
    for c in t.tables("cred_info"):
        cred = _read_cred(c, values["id"], passwords, secrets_file)
        if cred is not None:
            creds.append(cred)
    values["cred_info"] = tuple(creds)
    t.finish()
    return AccountSettings(**values)


def _read_cred(
    t: _Table, acc_id: str, passwords: Mapping[str, str] | None, secrets_file: str
) -> CredentialInfo | None:
    realm = t.string("realm", "*")
    username = t.string("username", required=True)
    data = t.string("data", secret=True)
    kind = t.string("data_type", "plain", choices=[d.value for d in DataType])
    t.finish()
    if not t.has("data"):
        keys = (f"{username}@{realm}", acc_id, username)
        found = (
            None
            if passwords is None
            else next((passwords[k] for k in keys if k in passwords), None)
        )
        if found is None:
            where = f"in {secrets_file}" if secrets_file else "(no secrets file is set)"
            t.problem(
                None,
                f'a password: data = "..." here, or [passwords] "{username}" = "..." '
                "in the secrets file",
                f"none {where}",
            )
            return None
        data = found
    try:
        return CredentialInfo(realm, username, data, DataType(kind))
    except ValueError as exc:
        t.problem("data", str(exc), "a value that does not fit")
        return None


def _read_audio(t: _Table | None) -> AudioSettings:
    if t is None:
        return AudioSettings()
    volume = t.integer("volume", -1, lo=0, hi=100)
    settings = AudioSettings(
        capture_device=t.string("capture_device", "default"),
        playback_device=t.string("playback_device", "default"),
        sample_rate=t.integer("sample_rate", 8000, choices=(8000, 16000)),
        ptime=t.integer("ptime", 20, choices=(10, 20, 30, 40, 60)),
        buffer_periods=t.integer("buffer_periods", 4, lo=2, hi=16),
        echo_cancel=t.boolean("echo_cancel", True),
        noise_suppression=t.boolean("noise_suppression", True),
        agc=t.boolean("agc", True),
        volume=None if volume < 0 else volume,
    )
    t.finish()
    return settings


def _read_button(t: _Table) -> ButtonSettings:
    name = t.string("name", required=True)
    bcm = t.integer("bcm", -1, required=True)
    action = t.string("action", "call", required=True, choices=BUTTON_ACTIONS)
    targets = t.strings("targets", check=_check_sip_uri)
    pull = t.string("pull", "up", choices=[p.value for p in Pull])
    long_press: float | None = 1.5
    if isinstance(t.data.get("long_press"), bool) and not t.data["long_press"]:
        t.boolean("long_press", False)
        long_press = None
    else:
        long_press = t.number("long_press", 1.5, lo=0.1, hi=30, lo_open=False)
    debounce = t.number("debounce", 0.03, lo=0, hi=1, lo_open=False)
    active_low = t.boolean("active_low", True)
    if t.has("action") and action in ("call", "speed_dial") and not t.has("targets"):
        t.problem(None, f'targets = ["sip:..."] for action "{action}"', "no targets")
    elif action == "speed_dial" and len(targets) > 1:
        t.problem("targets", "one target for a speed_dial button", f"{len(targets)} targets")
    elif action not in ("call", "speed_dial") and t.has("targets"):
        t.problem("targets", 'no targets (only "call" and "speed_dial" buttons call)', "targets")
    t.finish()
    return ButtonSettings(
        name,
        bcm,
        action,
        t.ctx.source((*t.path, "bcm")),
        targets,
        Pull(pull),
        active_low,
        debounce,
        long_press,
    )


def _read_led(t: _Table) -> LedSettings:
    led = LedSettings(
        name=t.string("name", required=True),
        bcm=t.integer("bcm", -1, required=True),
        shows=t.string("shows", "status", choices=LED_SHOWS),
        source=t.ctx.source((*t.path, "bcm")),
        active_high=t.boolean("active_high", True),
    )
    t.finish()
    return led


def _read_relay(t: _Table) -> RelaySettings:
    relay = RelaySettings(
        bcm=t.integer("bcm", -1, required=True),
        source=t.ctx.source((*t.path, "bcm")),
        pulse_seconds=t.number("pulse_seconds", 3.0, lo=0, hi=_MAX_RELAY_PULSE),
        active_high=t.boolean("active_high", True),
    )
    t.finish()
    return relay


def _read_intercom(t: _Table | None, has_relay: bool) -> IntercomSettings:
    if t is None:
        return IntercomSettings()
    s = IntercomSettings(
        profile=t.string("profile", "intercom", choices=PROFILES),
        auto_answer=t.boolean("auto_answer", False),
        trusted=t.strings("trusted", check=_check_pattern),
        door_code=t.string("door_code", check=_check_door_code, secret=True),
        door_code_from=t.strings("door_code_from", check=_check_pattern),
        hangup_after_door=t.boolean("hangup_after_door", False),
        max_call_seconds=t.integer("max_call_seconds", 0, lo=0, hi=86400),
        bell_during_call=t.string("bell_during_call", "ignore", choices=("hangup", "ignore")),
        ring_mode=t.string("ring_mode", "sequential", choices=("sequential", "parallel")),
        ring_timeout=t.number("ring_timeout", 30.0, lo=0, hi=600),
    )
    if s.auto_answer and not t.has("trusted"):
        t.problem("auto_answer", "trusted callers to answer (trusted = [...])", "no trusted list")
    if s.door_code:
        if not has_relay:
            t.problem("door_code", "a [relay] section to open the door with", "no [relay]")
        if not t.has("door_code_from") and not t.has("trusted"):
            t.problem("door_code", "door_code_from or trusted: who may open", "neither")
    t.finish()
    return s


def _read_secrets(
    t: _Table, base: Path, problems: list[ConfigProblem]
) -> tuple[str, dict[str, str] | None]:
    """Read the secrets file named by the top-level ``secrets`` key."""
    name = t.string("secrets")
    if not name:
        return "", None
    path = base / name
    try:
        st = path.stat()
    except OSError as exc:
        t.problem("secrets", "a readable secrets file", f"{exc.strerror or exc} ({path})")
        return str(path), None
    if st.st_mode & 0o077 or st.st_uid not in (0, os.geteuid()):
        t.problem(
            "secrets",
            f"a file only its owner can read (chmod 600 {path}; chown root {path})",
            f"mode {stat.filemode(st.st_mode)} owner uid {st.st_uid}",
        )
        return str(path), None
    data = _parse_file(str(path), problems)
    if data is None:
        return str(path), None
    text, doc = data
    top = _Table(_Context(str(path), text, problems), (), doc)
    passwords: dict[str, str] = {}
    pw = top.table("passwords")
    if pw is not None:
        for key in pw.data:
            passwords[key] = pw.string(key, secret=True)
        pw.finish()
    top.finish()
    return str(path), passwords


# -- files -------------------------------------------------------------------------


def _parse_file(file: str, problems: list[ConfigProblem]) -> tuple[str, dict[str, Any]] | None:
    """Read and parse one TOML file; on failure record the problem and return None."""
    try:
        raw = Path(file).read_bytes()
    except OSError as exc:
        problems.append(ConfigProblem(file, None, "", "a readable file", exc.strerror or str(exc)))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad_line = raw[: exc.start].count(b"\n") + 1
        problems.append(
            ConfigProblem(file, bad_line, "", "UTF-8 text", f"the byte {raw[exc.start]:#04x}")
        )
        return None
    if not text.strip():
        problems.append(
            ConfigProblem(file, 1, "", "a configuration", "an empty file (truncated while saved?)")
        )
        return None
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        # 3.11-3.13 put "(at line L, column C)" in the message; 3.14 adds attributes.
        line: int | None = getattr(exc, "lineno", None)
        m = re.search(r"\(at line (\d+), column (\d+)\)|\(at end of document\)", message)
        if line is None and m is not None:
            line = int(m.group(1)) if m.group(1) else text.count("\n") + 1
        reason = (message[: m.start()] if m else message).strip() or "invalid TOML"
        problems.append(ConfigProblem(file, line, "", "valid TOML", f"a syntax error: {reason}"))
        return None


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read, validate and convert a config file. Raises :class:`ConfigError`
    listing every problem (in the file and its secrets file)."""
    file = os.fspath(path)
    problems: list[ConfigProblem] = []
    parsed = _parse_file(file, problems)
    if parsed is None:
        raise ConfigError(problems)
    text, doc = parsed
    ctx = _Context(file, text, problems)
    base = Path(file).parent
    top = _Table(ctx, (), doc)
    hal = top.string("hal", "rpi", choices=("rpi", "sim"))
    secrets_file, passwords = _read_secrets(top, base, problems)
    sip = _read_sip(top.table("sip"), base)
    accounts: list[AccountSettings] = []
    ids: dict[str, int] = {}
    for t in top.tables("accounts"):
        index = t.path[-1]
        assert isinstance(index, int)
        if index == MAX_ACC:
            t.problem(None, f"at most {MAX_ACC} [[accounts]]", f"account number {index + 1}")
        acc = _read_account(t, sip, passwords, secrets_file)
        if acc.id and acc.id in ids:
            t.problem("id", f"an id not used by the account at line {ids[acc.id]}", f'"{acc.id}"')
        ids.setdefault(acc.id, acc.line)
        accounts.append(acc)
    audio = _read_audio(top.table("audio"))
    button_tables = top.tables("buttons")
    buttons = tuple(_read_button(t) for t in button_tables)
    leds = tuple(_read_led(t) for t in top.tables("leds"))
    relay_table = top.table("relay")
    relay = None if relay_table is None else _read_relay(relay_table)
    intercom = _read_intercom(top.table("intercom"), relay is not None)
    if relay is None:
        for t, b in zip(button_tables, buttons, strict=True):
            if b.action == "door":
                t.problem("action", 'a [relay] section for a "door" button', "no [relay]")
    top.finish()
    config = Config(
        source=file,
        hal=hal,
        sip=sip,
        accounts=tuple(accounts),
        audio=audio,
        buttons=buttons,
        leds=leds,
        relay=relay,
        intercom=intercom,
        secrets=secrets_file,
    )
    _check_gpio(config, ctx)
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.file != file, p.file, p.line or 0)))
    return config


def _check_gpio(config: Config, ctx: _Context) -> None:
    """Pin conflicts and ranges, by the hardware layer's own rules.

    Entries whose ``bcm`` was missing or mistyped (-1) are already reported.
    """
    gpio = config.gpio_config()
    try:
        validate_config(
            GpioConfig(
                buttons=tuple(b for b in gpio.buttons if b.bcm != -1),
                leds=tuple(x for x in gpio.leds if x.bcm != -1),
                relays=tuple(r for r in gpio.relays if r.bcm != -1),
            )
        )
    except GpioConfigError as exc:
        keys: dict[str, PathKey] = {}
        for kind in ("buttons", "leds"):
            for i in range(len(getattr(config, kind))):
                keys[ctx.source((kind, i, "bcm"))] = (kind, i, "bcm")
        if config.relay is not None:
            keys[config.relay.source] = ("relay", "bcm")
        for text in exc.problems:
            source, _, rest = text.partition(": ")
            path = keys.get(source, ())
            if "name already used" in rest:
                path, expected = (*path[:-1], "name"), "a name no other entry of its kind uses"
            elif "already used" in rest:
                expected = "a BCM pin no other button, LED or relay uses"
            elif "reserved" in rest or "header GPIO" in rest:
                expected = "a header GPIO, BCM 2-27"
            else:
                key = next((k for k in ("long_press", "debounce") if k in rest), "bcm")
                path, expected = (*path[:-1], key), "values the GPIO layer accepts"
            ctx.problem(path, expected, rest)


def reload(current: Config, path: str | os.PathLike[str]) -> tuple[Config, ConfigError | None]:
    """Load ``path`` into a new :class:`Config`; on any error keep ``current``.

    A file caught half-written (an editor saving, an SD card pulled) fails to
    parse or validate, and the device must go on with what it had.
    """
    try:
        return load_config(path), None
    except ConfigError as exc:
        return current, exc
