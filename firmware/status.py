"""``intercom status``: the firmware's state as one JSON-able dict."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firmware.app import App
    from firmware.config import AccountSettings, ConfigError
    from sipstack.account_events import RegStateChanged
    from sipstack.call_events import CallInfo
    from sipstack.useragent import UserAgent

__all__ = ["VERSION", "account_report", "call_report", "registration_error", "status_report"]

VERSION = "0.1.0"


def status_report(app: App) -> dict[str, Any]:
    """Everything ``intercom status`` shows (JSON-able)."""
    assert app.ua is not None and app.calls is not None and app.behaviour is not None
    board, audio = app.board, app.audio
    relays = {}
    if board is not None:
        relays = {
            name: {"on": relay.is_on, "pulses": app.relay_pulses}
            for name, relay in board.relays.items()
        }
    network: dict[str, Any] = {}
    if app.network is not None:
        snap = app.network.snapshot()
        network = {
            "addresses": sorted(
                f"{a.interface} {a.address}" for a in snap.addresses if a.interface != "lo"
            ),
            "default_interface": app.network.default_interface(),
            "links_up": sorted(snap.links_up),
            "watch": app.network_watch,
        }
    counts = app.screen.counts
    return {
        "version": VERSION,
        "config": app.config.source,
        "hal": app.hal,
        "uptime": round(time.monotonic() - app.started_at, 1),
        "ports": app.ports,
        "phone": app.behaviour.state.value,
        "led_state": app.behaviour.led_state.value,
        "accounts": [app.account_status(a) for a in app.ua.enum_accs()],
        "calls": [app.call_status(c) for c in app.calls.enum_calls()],
        "leds": dict(app.leds),
        "relays": relays,
        "buttons": list(app.last_buttons),
        "network": network,
        "audio": {
            "device": audio.device if audio else None,
            "clock": audio.clock.mode.value if audio else None,
            "fault": audio.fault if audio else "",
        },
        "config_error": _config_error(app.config_error),
        "restart_needed": list(app.restart_needed),
        "screening": {
            "mode": "open" if app.screen.settings.open else app.screen.settings.refuse,
            "refused": counts.total,
            "forbidden": counts.forbidden,
            "dropped": counts.dropped,
            "rate_limited": counts.rate_limited,
            "last": list(counts.last),
        },
    }


def _config_error(error: ConfigError | None) -> dict[str, Any] | None:
    """The last failed reload: its first problem's parts, and all of them as text."""
    if error is None:
        return None
    first = error.problems[0]
    return {
        "file": first.file,
        "line": first.line,
        "key": first.key,
        "expected": first.expected,
        "found": first.found,
        "problems": len(error.problems),
        "text": str(error),
    }


def account_report(
    ua: UserAgent,
    acc: int,
    settings: AccountSettings | None,
    event: RegStateChanged | None,
    seen: Mapping[str, tuple[str, int]],
    failure: RegStateChanged | None = None,
) -> dict[str, Any]:
    """One account as ``intercom status`` shows it.

    ``settings`` are its config-file settings, ``event`` its last registration
    event, ``seen`` where registrars saw our REGISTERs (by Call-ID, RFC 3581),
    ``failure`` its last failed registration event since it was last registered
    (see :func:`registration_error`).
    """
    info = ua.acc_get_info(acc)
    account = ua.acc_get_account(acc)
    reg = account.registration
    out: dict[str, Any] = {
        "id": acc,
        "uri": info.uri,
        "local": bool(settings is not None and settings.local),
        "registrar": account.config.reg_uri,
        "registered": bool(event is not None and event.is_registered),
        "state": event.state if event is not None else ("local" if account.local else "idle"),
        "status": info.status,
        "reason": info.status_text,
        "expires": info.expires,
        "last_error": "",
        "config_line": settings.line if settings is not None else 0,
        "contact": str(reg.contact) if reg is not None else None,
        "seen_as": None,
    }
    out["last_error"] = registration_error(event, failure)
    if reg is not None and reg.call_id in seen:
        host, port = seen[reg.call_id]
        out["seen_as"] = f"{host}:{port}"
    return out


def registration_error(
    event: RegStateChanged | None, failure: RegStateChanged | None = None
) -> str:
    """Why an account is not registered, from its last registration event ("" if it is).

    A refusal or failure (status 300 and up, or 408/503 made up for a timeout or
    a transport error) shows with its status. A not-registered state after a 2xx
    shows its note alone: the machine only leaves a binding with a 2xx as the last
    answer when the binding expired with the refresh unanswered (the registrar is
    gone: Timer F, RFC 3261 17.1.2.2, has up to 32 s to run before a 408), when a
    2xx came too late or granted nothing, or while the Contact moves (network
    change, RFC 3581 rewrite). Without it a user would see "registering", status
    200 and no reason for half a minute. Before any answer (status 0), and after
    a deliberate unregister, there is nothing to explain.

    ``failure`` is the account's last failed event (kept by
    :class:`~firmware.account_wiring.AccountWiring` until it registers): while
    the retry after a refusal is out, the "registering" event repeats the
    refusal's status but not its note (stale nonces, no credentials, a wrong
    password), so the failure's words are shown instead.
    """
    if event is None or event.is_registered:
        return ""
    if event.status >= 300:
        if failure is not None and event.state == "registering" and not failure.is_registered:
            event = failure
        return f"{event.status} {event.reason} {event.note}".strip()
    if event.status >= 200 and event.state in ("registering", "retry-wait"):
        return event.note
    return ""


def _srtp_suite(info: CallInfo) -> str | None:
    """The SRTP crypto suite in use (RFC 4568), None for plain RTP; never the key."""
    media = info.media
    if media is None or media.local_crypto is None or media.remote_crypto is None:
        return None
    fields = media.local_crypto.split()
    return fields[1] if len(fields) > 1 else None


def call_report(info: CallInfo) -> dict[str, Any]:
    """One call as ``intercom status`` shows it."""
    out: dict[str, Any] = {
        "id": info.id,
        "account": info.acc_id,
        "direction": "outgoing" if info.role.value == "uac" else "incoming",
        "remote": info.remote_uri,
        "state": info.state.value,
        "codec": info.codec,
        "srtp": _srtp_suite(info),
        "media": info.media_status.value,
        "duration": round(info.connect_duration, 1),
        "loss": None,
        "jitter_ms": None,
    }
    stats = info.rtp_stats
    rtp = getattr(stats, "rtp", None)
    if rtp is not None:
        out["loss"] = round(rtp.cumulative_lost / rtp.expected, 4) if rtp.expected else 0.0
        out["jitter_ms"] = round(rtp.jitter * 1000, 1)
        out["packets_sent"], out["packets_received"] = rtp.packets_sent, rtp.packets_received
    return out
