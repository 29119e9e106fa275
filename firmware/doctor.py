"""``intercom doctor``: check what usually goes wrong and say it in plain words.

Each check is ``{"check", "status": ok|warn|fail, "message", "advice"}``:
configuration, each account's registration and NAT (RFC 3581 received/rport
against our Contact), audio, GPIO, the clock, screening, and DNS for every
server name (answered asynchronously, bounded by a timeout).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from firmware.config import BUILTIN_SOURCE
from firmware.screening import server_hosts
from sipstack.transport_base import is_ip_literal

if TYPE_CHECKING:
    from firmware.app import App
    from firmware.audio_path import AudioPath
    from firmware.config import Config

__all__ = ["audio_words", "gpio_words", "run_doctor"]


def run_doctor(app: App, reply: Callable[[object], None], dns_timeout: float = 3.0) -> None:
    """Check what usually goes wrong and say it in plain words; ``reply`` gets
    a list of ``{"check", "status": ok|warn|fail, "message", "advice"}``
    once the DNS look-ups are done (bounded by ``dns_timeout``)."""
    assert app.ua is not None
    checks: list[dict[str, str]] = []

    def add(check: str, status: str, message: str, advice: str = "") -> None:
        checks.append({"check": check, "status": status, "message": message, "advice": advice})

    if app.config.source == BUILTIN_SOURCE:
        add(
            "config",
            "warn",
            "running the built-in default: no config file, open to calls from anyone",
            "write /etc/intercom/intercom.toml (see the README) and restart",
        )
    else:
        add(
            "config",
            "ok",
            f"running {app.config.source} ({len(app.config.accounts)} account(s))",
        )
    if app.config_error is not None:
        first = app.config_error.problems[0]
        add(
            "config reload",
            "fail",
            f"the last reload failed, the previous config is still running: {first}",
            f"fix it (intercom config check {app.config.source}), then intercom reload",
        )
    if app.restart_needed:
        add(
            "config reload",
            "warn",
            f"changed but not applied until a restart: {', '.join(app.restart_needed)}",
            "systemctl restart intercom",
        )
    for acc in app.ua.enum_accs():
        st = app.account_status(acc)
        if not st["local"]:
            add("registration", *_registration_words(st))
            nat = _nat_words(st)
            if nat is not None:
                add("nat", *nat)
    add("audio", *audio_words(app.audio))
    add("gpio", *gpio_words(app.config, app.hal))
    add("clock", *_clock_words(time.time()))
    counts = app.screen.counts
    if counts.total:
        add(
            "screening",
            "ok",
            f"refused {counts.total} request(s) from unknown sources "
            f"({counts.rate_limited} rate-limited)",
            "normal on a device reachable from the internet; see `intercom status` for sources",
        )
    hosts = sorted(
        {h for s in app.config.accounts if not s.local for h in server_hosts(s)}
        - {h for h in _hosts_of_literals(app.config)}
    )
    resolver = app.ua.endpoint.resolver
    if not hosts or resolver is None:
        reply(checks)
        return
    answers: dict[str, object] = {}
    done = {"sent": False}

    def finish() -> None:
        if done["sent"]:
            return
        done["sent"] = True
        for host in hosts:
            result = answers.get(host)
            if isinstance(result, list) and result:
                add("dns", "ok", f"{host} resolves to {', '.join(map(str, result[:3]))}")
            elif host in answers:
                add(
                    "dns",
                    "fail",
                    f"{host} does not resolve",
                    "check the name in reg_uri/proxy and the DNS server (resolvectl status)",
                )
            else:
                add(
                    "dns",
                    "fail",
                    f"no DNS answer for {host} within {dns_timeout:g} s",
                    "check the network and the DNS server (resolvectl status)",
                )
        reply(checks)

    def answered(host: str, result: object) -> None:
        answers[host] = result
        if len(answers) == len(hosts):
            finish()

    for host in hosts:
        resolver.resolve_host(host, lambda r, h=host: answered(h, r))  # type: ignore[misc]
    app.loop.call_later(dns_timeout, finish)


def audio_words(audio: AudioPath | None) -> tuple[str, str, str]:
    """The audio path, in plain words (status, message, advice)."""
    if audio is None:
        return "fail", "no audio path", ""
    if audio.fault:
        return (
            "fail",
            f"audio device problem: {audio.fault}",
            "check the USB sound card / HAT and `aplay -l`; the firmware retries by itself",
        )
    if audio.alsa is not None and audio.voice is None:
        return (
            "warn",
            f"{audio.device}, without echo cancellation",
            "install libspeexdsp (apt install libspeexdsp1) for echo cancellation",
        )
    return "ok", audio.device, "run `intercom audio-test` to hear and measure it"


def gpio_words(config: Config, hal: str) -> tuple[str, str, str]:
    """The configured pins, in plain words (status, message, advice)."""
    parts = [f"button {b.name} on BCM {b.bcm} ({b.action})" for b in config.buttons]
    parts += [f"LED {x.name} on BCM {x.bcm}" for x in config.leds]
    if config.relay is not None:
        parts.append(f"relay on BCM {config.relay.bcm}")
    if not parts:
        return (
            "warn",
            "no buttons, LEDs or relay configured",
            "add [[buttons]] to intercom.toml",
        )
    kind = "simulated pins" if hal == "sim" else "RPi.GPIO"
    return (
        "ok",
        f"{kind}: " + "; ".join(parts),
        "press each button and watch `intercom log -f` for 'button NAME pressed'",
    )


# -- in plain words ---------------------------------------------------------------------


def _hosts_of_literals(config: Config) -> set[str]:
    return {h for s in config.accounts if not s.local for h in server_hosts(s) if is_ip_literal(h)}


def _who(uri: str) -> str:
    """``"Door" <sip:door@pbx.example.com>`` -> ``door@pbx.example.com``."""
    m = re.search(r"sips?:([^;>\s]+)", uri)
    return m.group(1) if m else uri


def _registration_words(st: dict[str, Any]) -> tuple[str, str, str]:
    """One account's registration, in plain words (status, message, advice).

    The status code says who answered; ``last_error`` (see
    :func:`firmware.status.registration_error`) says why, and decides what a
    401/407 or a lost binding means.
    """
    who, status, reason = _who(st["uri"]), st["status"], st["reason"]
    why = str(st.get("last_error") or "")
    line = f" (config line {st['config_line']})" if st["config_line"] else ""
    if st["registered"]:
        return "ok", f"{who} is registered (renews in {max(st['expires'], 0)} s)", ""
    if status in (401, 407):
        return _auth_words(st, who, why, line)
    if status == 403:
        return (
            "fail",
            f"the registrar refused {who} (403 {reason}): "
            f"check the user name in [[accounts.cred_info]] and id{line}",
            "the PBX may also block this device's address (fail2ban, allowed networks)",
        )
    if status == 404:
        return "fail", f"the registrar does not know {who} (404){line}", "check id and reg_uri"
    if status == 408:
        return (
            "fail",
            f"no answer from the registrar of {who} ({st['registrar']})",
            "check reg_uri, the network, and firewalls between here and the PBX",
        )
    if status == 503:
        return (
            "fail",
            f"cannot reach the registrar of {who} ({st['registrar']}): {reason}",
            "check reg_uri and the transport (udp/tcp/tls) the PBX listens on",
        )
    if status >= 300:
        return "fail", f"the registrar answered {status} {reason} for {who}{line}", ""
    if why:
        return _lost_words(st, who, why)
    return "warn", f"{who} is still registering ({st['state']})", "wait a few seconds and retry"


# Words of the notes sipstack writes (sipstack/registration.py, sipstack/digest.py
# AuthFailure) that change what a 401/407 means. The tests take the notes from a
# real Registration, so a rewording there fails them rather than this silently.
_STALE = "stale=true"
_NO_CREDENTIALS = "no credentials"
_UNSUPPORTED = "no challenge uses a scheme"
_BAD_CHALLENGE = "unusable challenge"
_BINDING_EXPIRED = "binding expired"


def _auth_words(st: dict[str, Any], who: str, why: str, line: str) -> tuple[str, str, str]:
    """A 401/407: the password is only to blame when nothing else explains it."""
    status, reason = st["status"], st["reason"]
    if _STALE in why:
        # RFC 7616 3.3: stale=true says our credentials were right and only the
        # nonce was not; a registrar that says so of every fresh nonce is broken.
        return (
            "fail",
            f"the registrar of {who} keeps rejecting its own nonces ({status} {reason} with "
            "stale=true on every fresh nonce): the registrar's clock or nonce lifetime is "
            "wrong, the password is not in question",
            "ask whoever runs the PBX to check its clock and its nonce lifetime "
            "(e.g. Kamailio's auth nonce_expire); the device retries on its own",
        )
    if _NO_CREDENTIALS in why:
        return (
            "fail",
            f"the registrar asks {who} for a password and none is configured for its realm: "
            f"add [[accounts.cred_info]]{line}",
            'the realm must match the PBX\'s or be "*"',
        )
    if _UNSUPPORTED in why or _BAD_CHALLENGE in why:
        return (
            "fail",
            f"the registrar of {who} asks for authentication this device cannot answer "
            f"({status} {reason}): {why}",
            "allow MD5 or SHA-256 digest authentication for this extension on the PBX",
        )
    if why and st["state"] == "registering":
        # A retry is out and the failure that preceded it is no longer known:
        # blaming the password here would be a guess.
        return (
            "warn",
            f"the registrar refused the last attempt of {who} ({status} {reason}); "
            "a new one is under way",
            "run `intercom doctor` again in a few seconds for its outcome",
        )
    return (
        "fail",
        f"the registrar refused the password for {who}: check [[accounts.cred_info]]{line}",
        "compare username and password with the PBX's extension settings; "
        'the realm must match or be "*"',
    )


def _lost_words(st: dict[str, Any], who: str, why: str) -> tuple[str, str, str]:
    """Not registered although the last answer was a 2xx: ``why`` says what happened."""
    if _BINDING_EXPIRED in why:
        return (
            "fail",
            f"{who} lost its registration: the registrar ({st['registrar']}) did not answer "
            "the refresh before the binding expired",
            "check that the registrar is up and reachable (network, firewall); the REGISTER "
            "in flight gives up after 64*T1 (32 s by default) and retries on schedule",
        )
    if st["state"] == "retry-wait":
        return (
            "fail",
            f"{who} is not registered: {why}",
            "the registrar's answer was unusable; check its logs for this extension",
        )
    return "warn", f"{who} is registering again: {why}", "wait a few seconds and retry"


def _nat_words(st: dict[str, Any]) -> tuple[str, str, str] | None:
    """RFC 3581: compare where the registrar sees us with what our Contact says."""
    seen, contact = st.get("seen_as"), st.get("contact")
    if not seen or not contact:
        return None
    m = re.search(r"@?([\w.\-]+|\[[0-9a-fA-F:.]+\]):(\d+)", contact.partition(":")[2])
    ours = f"{m.group(1)}:{m.group(2)}" if m else contact
    if ours == seen:
        return "ok", f"{_who(st['uri'])}: the registrar sees us where our Contact says ({seen})", ""
    return (
        "warn",
        f"{_who(st['uri'])}: the registrar sees us at {seen} but our Contact says {ours}: "
        "there is NAT between us",
        "keep allow_contact_rewrite = true; if audio is one-way, the router's SIP ALG or "
        "port forwarding is the usual suspect",
    )


def _clock_words(now: float) -> tuple[str, str, str]:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    if now < 1704067200:  # 2024-01-01: the Pi has no battery-backed clock
        return (
            "fail",
            f"the clock says {when}: it was never set",
            "the Pi has no real-time clock: check network time (timedatectl status)",
        )
    return "ok", f"the clock says {when}", ""
