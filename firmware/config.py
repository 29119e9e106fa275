"""The firmware's configuration file (TOML): load, validate, convert.

A user edits one file, often on an SD card from another PC, and the device
has no screen. So every mistake is reported with the file, the line, the key,
what was expected and what was found, and *all* mistakes are reported at once
(``intercom config check`` should be one round trip, not ten). Unknown keys are
errors: a misspelt ``reg_timout`` silently ignored is a day of debugging.

Passwords may live in a separate secrets file that only its owner may read;
:func:`load_config` refuses one that group or others can open.

The result is a tree of frozen dataclasses (:class:`Config`, defined with the
conversions to the lower layers' configuration in :mod:`firmware.config_sections`;
the tolerant table reader is ``firmware._toml_table``, the key line finder
``firmware._toml_lines``). Every public name of those is importable from here.
Loading never touches a running system: :func:`reload` builds a new
:class:`Config` and hands back the old one if the file is broken (for example
truncated while an editor was writing it).
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import tomllib
from collections.abc import Callable, Mapping
from typing import Any

from firmware._toml_lines import PathKey, key_lines, line_of
from firmware._toml_table import ConfigError, ConfigProblem, Context, Table
from firmware.config_sections import (
    BUILTIN_SOURCE,
    BUTTON_ACTIONS,
    LED_SHOWS,
    MAX_RELAY_PULSE,
    NETWORK_WATCHES,
    PROFILES,
    REFUSE_MODES,
    SRTP_MODES,
    TRANSPORTS,
    AccountSettings,
    AudioSettings,
    ButtonSettings,
    Config,
    IntercomSettings,
    LedSettings,
    ListenAddress,
    NetworkSettings,
    RelaySettings,
    SipSettings,
    default_config,
    parse_listen,
)
from hal.gpio_config import GpioConfig, GpioConfigError, Pull, validate_config
from sipstack.account_config import MAX_ACC, AccountConfig
from sipstack.digest import CredentialInfo, DataType
from sipstack.errors import SipParseError

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
    "NetworkSettings",
    "Config",
    "load_config",
    "reload",
    "default_config",
    "key_lines",
    "line_of",
]

#: Where ``intercom run`` looks when no ``--config`` is given.
DEFAULT_PATH = "/etc/intercom/intercom.toml"
# RFC 4733 3.2: the DTMF events a telephone keypad can send.
_DTMF_DIGITS = frozenset("0123456789*#ABCD")
_MIN_DOOR_CODE = 4  # shorter codes are guessed by a patient visitor


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


def _check_allow(value: str) -> str | None:
    """A peer request screening admits: what :class:`RequestScreen.allow` matches.

    The screen compares the packet's source address, so a host name could never
    match; IPv6 with a port is not something the screen can express either.
    """
    expected = (
        'an IP address ("192.168.1.20"), "address:port" ("192.168.1.20:5060") '
        'or a network ("192.168.1.0/24"); IPv6 without a port'
    )
    if "/" in value:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return expected
        return None
    host, port = value, ""
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        if not (port.isdigit() and 1 <= int(port) <= 65535):
            return expected
    try:
        ipaddress.ip_address(host.strip("[]") if not port else host)
    except ValueError:
        return expected
    return None


def _check_file(base: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value and not os.path.isfile(os.path.join(base, value)):
            return "the path of an existing file"
        return None

    return check


# -- reading each section -----------------------------------------------------------


def _read_sip(t: Table | None, base: str) -> SipSettings:
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
                if v == "" or parse_listen(v)
                else 'a listen address "host:port" ("[::]:5060" for IPv6) or "" to disable'
            ),
        )
        listen[name] = parse_listen(text) if text else None
    check = _check_file(base)
    settings = SipSettings(
        udp=listen["udp"],
        tcp=listen["tcp"],
        tls=listen["tls"],
        tls_cert=t.string("tls_cert", check=check),
        tls_key=t.string("tls_key", check=check),
        tls_ca=t.string("tls_ca", check=check),
        user_agent=t.string("user_agent", defaults.user_agent),
        allow=t.strings("allow", check=_check_allow),
        refuse=t.string("refuse", defaults.refuse, choices=REFUSE_MODES),
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
    t: Table, sip: SipSettings, passwords: Mapping[str, str] | None, secrets_file: str
) -> AccountSettings:
    values: dict[str, Any] = {"line": t.line() or 0}
    values["local"] = local = t.boolean("local", False)
    transports = ("", *sip.enabled())
    values["transport"] = t.string("transport", "", choices=transports)
    values["priority"] = t.integer("priority", 0, lo=-1000, hi=1000)
    # PJSUA's use_srtp / srtp_secure_signaling: local accounts take calls too
    values["use_srtp"] = t.string("use_srtp", "disabled", choices=SRTP_MODES)
    values["srtp_secure_signaling"] = t.integer("srtp_secure_signaling", 1, choices=(0, 1, 2))
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
    t: Table, acc_id: str, passwords: Mapping[str, str] | None, secrets_file: str
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


def _read_audio(t: Table | None) -> AudioSettings:
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


def _read_network(t: Table | None) -> NetworkSettings:
    if t is None:
        return NetworkSettings()
    settings = NetworkSettings(watch=t.string("watch", "auto", choices=NETWORK_WATCHES))
    t.finish()
    return settings


def _read_button(t: Table) -> ButtonSettings:
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


def _read_led(t: Table) -> LedSettings:
    led = LedSettings(
        name=t.string("name", required=True),
        bcm=t.integer("bcm", -1, required=True),
        shows=t.string("shows", "status", choices=LED_SHOWS),
        source=t.ctx.source((*t.path, "bcm")),
        active_high=t.boolean("active_high", True),
    )
    t.finish()
    return led


def _read_relay(t: Table) -> RelaySettings:
    relay = RelaySettings(
        bcm=t.integer("bcm", -1, required=True),
        source=t.ctx.source((*t.path, "bcm")),
        pulse_seconds=t.number("pulse_seconds", 3.0, lo=0, hi=MAX_RELAY_PULSE),
        active_high=t.boolean("active_high", True),
    )
    t.finish()
    return relay


def _read_intercom(t: Table | None, has_relay: bool) -> IntercomSettings:
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
    t: Table, base: str, problems: list[ConfigProblem]
) -> tuple[str, dict[str, str] | None]:
    """Read the secrets file named by the top-level ``secrets`` key."""
    name = t.string("secrets")
    if not name:
        return "", None
    path = os.path.join(base, name)
    try:
        st = os.stat(path)
    except OSError as exc:
        t.problem("secrets", "a readable secrets file", f"{exc.strerror or exc} ({path})")
        return path, None
    if st.st_mode & 0o077 or st.st_uid not in (0, os.geteuid()):
        t.problem(
            "secrets",
            f"a file only its owner can read (chmod 600 {path}; chown root {path})",
            f"mode {stat.filemode(st.st_mode)} owner uid {st.st_uid}",
        )
        return path, None
    data = _parse_file(path, problems)
    if data is None:
        return path, None
    text, doc = data
    top = Table(Context(path, text, problems), (), doc)
    passwords: dict[str, str] = {}
    pw = top.table("passwords")
    if pw is not None:
        for key in pw.data:
            passwords[key] = pw.string(key, secret=True)
        pw.finish()
    top.finish()
    return path, passwords


# -- files -------------------------------------------------------------------------


def _parse_file(file: str, problems: list[ConfigProblem]) -> tuple[str, dict[str, Any]] | None:
    """Read and parse one TOML file; on failure record the problem and return None."""
    try:
        with open(file, "rb") as f:
            raw = f.read()
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
    ctx = Context(file, text, problems)
    base = os.path.dirname(file)
    top = Table(ctx, (), doc)
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
    network = _read_network(top.table("network"))
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
        network=network,
        secrets=secrets_file,
    )
    _check_gpio(config, ctx)
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.file != file, p.file, p.line or 0)))
    return config


def _check_gpio(config: Config, ctx: Context) -> None:
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
