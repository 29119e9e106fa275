"""Live reload, decided: what a changed config file means for the running firmware.

``systemctl reload intercom`` (SIGHUP) and ``intercom reload`` load the file
again (:func:`firmware.config.reload`: a broken file keeps the old config).
This module only *plans* what to do with a good one, as a pure function of the
running config, the new one and the accounts the user agent has now; the
:class:`~firmware.app.App` carries the plan out.

What applies live, and why:

* ``[[accounts]]``: through the user agent's account API (PJSUA's
  ``acc_add`` / ``acc_del`` / ``acc_modify``). Accounts are matched by ``id``
  (local ones by ``transport``); a changed ``id`` is a different account.
* ``[intercom]``, ``[sip] allow`` / ``refuse``, the secrets file: pure
  settings of the behaviour and the request screen.
* ``targets`` of ``[[buttons]]``, ``shows`` of ``[[leds]]``, ``pulse_seconds``
  of ``[relay]``: what the pins mean, not which pins.

Everything else (``hal``, transports and TLS files, ``user_agent``, ``[audio]``,
the pins themselves) is bound to sockets, devices and GPIO lines at start-up:
those keys are reported as "restart needed", by name, and the running values
stay in force until then.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from firmware.config import (
    BUILTIN_SOURCE,
    AccountSettings,
    AudioSettings,
    ButtonSettings,
    Config,
    IntercomSettings,
    LedSettings,
    RelaySettings,
    SipSettings,
)
from firmware.screening import Screening, trusted_hosts
from sipstack import records
from sipstack.records import dataclass

__all__ = ["AccountChanges", "ReloadPlan", "changed_keys", "plan_reload", "screening_for"]

# Labels that say where a value came from, not what it is.
_LABELS = frozenset({"source", "line"})
# Per repeated section: the fields that can change under running pins.
_LIVE_FIELDS: Mapping[str, frozenset[str]] = {
    "buttons": frozenset({"targets"}),
    "leds": frozenset({"shows"}),
    "relay": frozenset({"pulse_seconds"}),
}

# Reported key by key; anything else (a listen address, a credential) is one value.
_SECTIONS = (
    Config,
    SipSettings,
    AudioSettings,
    IntercomSettings,
    RelaySettings,
    ButtonSettings,
    LedSettings,
    AccountSettings,
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class AccountChanges:
    """What to do with the user agent's accounts (by their ids)."""

    removed: tuple[int, ...] = ()
    modified: tuple[tuple[int, AccountSettings], ...] = ()
    kept: tuple[tuple[int, AccountSettings], ...] = ()
    added: tuple[AccountSettings, ...] = ()

    def summary(self) -> dict[str, int]:
        """Counts, for the CLI and the log."""
        return {
            "added": len(self.added),
            "removed": len(self.removed),
            "modified": len(self.modified),
            "unchanged": len(self.kept),
        }


@dataclass(frozen=True, slots=True)
class ReloadPlan:
    """``config`` is what will be in force: the new file, with the running values
    of the keys in ``restart_needed`` (dotted, ``buttons[1].bcm`` 1-based as in
    error messages)."""

    config: Config
    accounts: AccountChanges
    restart_needed: tuple[str, ...]


def plan_reload(
    running: Config, new: Config, accounts: Mapping[int, AccountSettings]
) -> ReloadPlan:
    """Plan the move from ``running`` to ``new``; ``accounts`` maps the user
    agent's account ids to the settings each was made from."""
    applied = records.replace(
        new,
        hal=running.hal,
        sip=records.replace(running.sip, allow=new.sip.allow, refuse=new.sip.refuse),
        audio=running.audio,
        buttons=_merge_all(running.buttons, new.buttons, _LIVE_FIELDS["buttons"]),
        leds=_merge_all(running.leds, new.leds, _LIVE_FIELDS["leds"]),
        relay=_merge_relay(running, new),
    )
    return ReloadPlan(
        config=applied,
        accounts=_plan_accounts(accounts, new.accounts),
        restart_needed=tuple(changed_keys(applied, new)),
    )


def screening_for(config: Config) -> Screening:
    """Who may send us requests under ``config``: ``[sip] allow`` and ``refuse``,
    plus the IP hosts of ``[intercom] trusted`` / ``door_code_from``; open to
    everyone only with the built-in default (no file)."""
    return Screening(
        refuse=config.sip.refuse,
        allow=tuple(dict.fromkeys((*config.sip.allow, *trusted_hosts(config)))),
        open=config.source == BUILTIN_SOURCE,
    )


def changed_keys(old: object, new: object, prefix: str = "") -> list[str]:
    """The dotted keys whose values differ (labels such as ``line`` ignored)."""
    if _same(old, new):
        return []
    if isinstance(old, _SECTIONS) and type(old) is type(new):
        keys: list[str] = []
        for f in records.fields(old):
            if f.name not in _LABELS:
                name = f"{prefix}.{f.name}" if prefix else f.name
                keys += changed_keys(getattr(old, f.name), getattr(new, f.name), name)
        return keys
    if (
        isinstance(old, tuple)
        and isinstance(new, tuple)
        and len(old) == len(new)
        and all(isinstance(x, _SECTIONS) for x in (*old, *new))
    ):
        keys = []
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            keys += changed_keys(a, b, f"{prefix}[{i + 1}]")
        return keys
    return [prefix or "(everything)"]


def _same(a: object, b: object, ignore: frozenset[str] = frozenset()) -> bool:
    """Equal apart from labels and the ``ignore`` fields."""
    if records.is_dataclass(a) and not isinstance(a, type) and type(a) is type(b):
        return all(
            _same(getattr(a, f.name), getattr(b, f.name))
            for f in records.fields(a)
            if f.name not in _LABELS | ignore
        )
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _merge_all(old: tuple[_T, ...], new: tuple[_T, ...], live: frozenset[str]) -> tuple[_T, ...]:
    """The new entries when only ``live`` fields changed, else the running ones."""
    if len(old) == len(new) and all(_same(a, b, live) for a, b in zip(old, new, strict=True)):
        return new
    return old


def _merge_relay(running: Config, new: Config) -> RelaySettings | None:
    old, fresh = running.relay, new.relay
    if old is not None and fresh is not None and _same(old, fresh, _LIVE_FIELDS["relay"]):
        return fresh
    return old


def _account_key(s: AccountSettings) -> tuple[bool, str]:
    return (True, s.transport) if s.local else (False, s.id)


def _plan_accounts(
    current: Mapping[int, AccountSettings], wanted: tuple[AccountSettings, ...]
) -> AccountChanges:
    by_key = {_account_key(s): acc for acc, s in current.items()}
    removed, modified, kept, added = [], [], [], []
    matched: set[int] = set()
    for settings in wanted:
        acc = by_key.get(_account_key(settings))
        if acc is None or acc in matched:
            added.append(settings)
            continue
        matched.add(acc)
        if _same(current[acc], settings):
            kept.append((acc, settings))
        elif settings.local:  # a local account cannot be modified, only replaced
            removed.append(acc)
            added.append(settings)
        else:
            modified.append((acc, settings))
    removed += [acc for acc in current if acc not in matched]
    return AccountChanges(tuple(sorted(removed)), tuple(modified), tuple(kept), tuple(added))
