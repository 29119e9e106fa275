"""The config's ``[[accounts]]`` in the user agent, and the servers they make trusted.

At start-up every account is added (the first REGISTER leaves on the loop's
next turn); on a live reload the :class:`~firmware.reconfig.AccountChanges`
are carried out through the user agent's account API (PJSUA's ``acc_add`` /
``acc_del`` / ``acc_modify``). Each account's registrar and proxies are
admitted by the request screen (:mod:`firmware.screening`): by address when
written as one, else once resolved (RFC 3263), and by the destination each
REGISTER actually went to.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sipstack.account_config import INVALID_ID
from sipstack.transport_base import is_ip_literal

if TYPE_CHECKING:
    from firmware.config import AccountSettings
    from firmware.reconfig import AccountChanges
    from firmware.screening import RequestScreen
    from sipstack.account_events import RegStateChanged
    from sipstack.useragent import UserAgent

__all__ = ["AccountWiring", "is_failure"]

log = logging.getLogger("intercom")

# Registration states a deleted account passes through while it unregisters.
_LEAVING = frozenset({"unregistering", "unregistered"})
# States a failed attempt leaves a registration in (sipstack RegistrationState values).
_FAILED = frozenset({"retry-wait", "unregistered"})


def is_failure(event: RegStateChanged) -> bool:
    """Whether ``event`` ends a failed attempt: a refusal or a made-up 408/503
    (RFC 3261 17.1.2.2 timeout, 17.1.4 transport error), waiting to retry or
    given up. The "registering" event of the retry repeats the status without
    the explanation, so it is not one."""
    return event.status >= 300 and event.state in _FAILED


class AccountWiring:
    """Accounts by user-agent id with the settings each was made from, the
    last registration event of each, and the last failure of each until it
    registers again (for ``intercom status`` and ``intercom doctor``)."""

    def __init__(self, ua: UserAgent, screen: RequestScreen) -> None:
        self.ua = ua
        self.screen = screen
        self.settings: dict[int, AccountSettings] = {}
        self.reg_events: dict[int, RegStateChanged] = {}
        self.reg_failures: dict[int, RegStateChanged] = {}
        """The last failed registration event of each account, kept until it
        registers: the retry that follows a 401/407 reports the status but not
        the failure's note, which says whether the password is to blame."""
        self._replaced: set[int] = set()  # ids whose old account may still unregister

    @property
    def registering(self) -> list[int]:
        """Ids of the accounts that register (not the local ones), in id order."""
        return sorted(a for a, s in self.settings.items() if not s.local)

    def add_all(self, accounts: Sequence[AccountSettings]) -> None:
        """Add the config's accounts (start-up)."""
        for settings in accounts:
            self.add(settings)
        if (
            accounts
            and all(s.local for s in accounts)
            and not (self.screen.settings.open or self.screen.settings.allow)
        ):
            log.warning(
                "only local accounts and no allowed peers: every request will be refused; "
                'add [intercom] trusted = ["sip:*@192.168.1.20"] for the phones that may call'
            )

    def add(self, settings: AccountSettings) -> int:
        """Add one account; its registration starts at once."""
        tid = self._transport(settings)
        if settings.local:
            if tid == INVALID_ID:
                udp = self.ua.endpoint.transports.find("udp")
                tid = udp if udp is not None else 0
            acc = self.ua.acc_add_local(tid)
        else:
            acc = self.ua.acc_add(settings.to_account_config(tid))
            self.trust_servers(settings)
        self.settings[acc] = settings
        return acc

    def apply(self, changes: AccountChanges) -> None:
        """Carry out a reload's account changes: deletions first (they free slots)."""
        for acc in changes.removed:
            log.info("account %d removed by the reload", acc)
            self.ua.acc_del(acc)
            self._forget(acc)
        for acc, settings in changes.modified:
            log.info("account %d (%s) changed by the reload: registering again", acc, settings.id)
            self.ua.acc_modify(acc, settings.to_account_config(self._transport(settings)))
            self._forget(acc)
            self.settings[acc] = settings
            self.trust_servers(settings)
        for acc, settings in changes.kept:
            self.settings[acc] = settings  # its line in the file may have moved
        for settings in changes.added:
            acc = self.add(settings)
            log.info("account %d added by the reload: %s", acc, settings.id or "local")

    def _forget(self, acc: int) -> None:
        self.settings.pop(acc, None)
        self.reg_events.pop(acc, None)
        self.reg_failures.pop(acc, None)
        self._replaced.add(acc)

    def _transport(self, settings: AccountSettings) -> int:
        if not settings.transport:
            return INVALID_ID
        found = self.ua.endpoint.transports.find(settings.transport)
        return found if found is not None else INVALID_ID

    def is_current(self, event: RegStateChanged) -> bool:
        """Whether ``event`` is about an account we have now: a deleted or replaced
        account goes on unregistering for a moment under the same id."""
        acc = event.acc_id
        if acc not in self.settings or not self.ua.acc_is_valid(acc):
            return False
        if acc in self._replaced and event.state in _LEAVING:
            return self.ua.acc_get_account(acc).last_reg_event is event
        return True

    def note_registration(self, event: RegStateChanged) -> None:
        """Remember a (current) account's registration event; trust where it went."""
        self.reg_events[event.acc_id] = event
        if event.is_registered:
            self.reg_failures.pop(event.acc_id, None)
        elif is_failure(event):
            self.reg_failures[event.acc_id] = event
        self.trust_destination(event.acc_id)

    def retrust(self, screen: RequestScreen) -> None:
        """A new request screen (a reload): admit every account's servers again."""
        self.screen = screen
        for acc, settings in self.settings.items():
            if not settings.local:
                self.trust_servers(settings)
                self.trust_destination(acc)

    def trust_destination(self, acc_id: int) -> None:
        """Admit the address the account's REGISTERs go to."""
        if self.ua.acc_is_valid(acc_id):
            dest = self.ua.acc_get_account(acc_id).reg_destination
            if dest is not None:
                self.screen.add_server(dest.host, dest.port)

    def trust_servers(self, settings: AccountSettings) -> None:
        """Admit requests from the account's registrar and proxies (RFC 3263 targets)."""
        from sipstack.uri import parse_uri

        for text in (settings.reg_uri, *settings.proxy):
            if not text:
                continue
            uri = parse_uri(text.strip().strip("<>"))
            host = uri.params.get("maddr") or uri.host
            transport = uri.transport
            secure = uri.scheme == "sips"
            if is_ip_literal(host):
                port = uri.port or (5061 if secure or transport == "tls" else 5060)
                self.screen.add_server(host, port)
                continue
            resolver = self.ua.endpoint.resolver
            if resolver is None:
                continue
            screen = self.screen  # the one in force now, not a later reload's

            def found(result: object, screen: RequestScreen = screen) -> None:
                if isinstance(result, list):
                    for target in result:
                        screen.add_server(target.address, target.port)

            try:
                resolver.locate(host, uri.port, transport, secure, found)
            except ValueError as exc:
                log.warning("cannot resolve %s for request screening: %s", host, exc)
