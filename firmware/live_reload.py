"""Live reload carried out: SIGHUP and ``intercom reload`` on a running :class:`~firmware.app.App`.

:func:`firmware.config.reload` reads the file again (a broken one keeps the
running config) and :func:`firmware.reconfig.plan_reload` decides what applies
live; this module applies the plan to the running parts: accounts, request
screen, behaviour, trace masking, LEDs. The network watcher is chosen at
start-up, so a changed ``[network]`` is reported as "restart needed" and the
running value stays in force.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from firmware.config import BUILTIN_SOURCE, ConfigError
from firmware.reconfig import ReloadPlan, plan_reload, screening_for
from firmware.screening import RequestScreen
from firmware.sip_tap import config_secrets
from sipstack import records

if TYPE_CHECKING:
    from firmware.account_wiring import AccountWiring
    from firmware.app import App
    from firmware.config import Config

__all__ = ["LiveReload"]

log = logging.getLogger("intercom")


class LiveReload:
    """Reloads ``app``'s config file into the running firmware."""

    def __init__(self, app: App) -> None:
        self._app = app

    def reload(self) -> dict[str, Any]:
        """Read the config file again and apply what can change live (see
        :meth:`App.reload <firmware.app.App.reload>`)."""
        from firmware.config import reload as reload_config

        app = self._app
        source = app.config.source
        if source == BUILTIN_SOURCE:
            raise ValueError("running the built-in default: there is no file to reload")
        assert app.accounts is not None and app.behaviour is not None and app.tap is not None
        new, error = reload_config(app.config, source)
        if error is not None:
            app.config_error = error
            count = len(error.problems)
            log.error(
                "config reload failed, keeping the running config: %d problem%s\n%s",
                count,
                "" if count == 1 else "s",
                error,
            )
            raise error
        plan = _keep_network(plan_reload(app.config, new, app.accounts.settings), app.config, new)
        app.config_error = None
        app.config = plan.config
        app.screen = self._replace_screen(app.screen, app.accounts)
        app.accounts.apply(plan.accounts)
        app.behaviour.reconfigure(plan.config, **app.behaviour_accounts())
        app.tap.secrets = config_secrets(plan.config)
        app.driver.run_commands()  # LEDs that show something else now
        app.driver.arm()
        app.restart_needed = plan.restart_needed
        changes = plan.accounts.summary()
        log.info(
            "config reloaded from %s: accounts %s%s",
            source,
            ", ".join(f"{n} {what}" for what, n in changes.items()),
            f"; restart needed for {', '.join(plan.restart_needed)}" if plan.restart_needed else "",
        )
        return {
            "config": source,
            "accounts": changes,
            "restart_needed": list(plan.restart_needed),
        }

    def on_signal(self) -> None:
        """SIGHUP: reload, logging (never raising) what went wrong."""
        app = self._app
        if not app.ready or app.closed:
            log.warning("SIGHUP during start-up or shutdown: not reloading")
            return
        log.info("SIGHUP: reloading %s", app.config.source)
        try:
            self.reload()
        except (ConfigError, ValueError) as exc:
            if not isinstance(exc, ConfigError):
                log.warning("not reloading: %s", exc)  # ConfigError: reload() logged it

    def _replace_screen(self, old: RequestScreen, accounts: AccountWiring) -> RequestScreen:
        """The screen for the new config; counters carry over, servers are admitted again."""
        app = self._app
        screen = RequestScreen(app.screening or screening_for(app.config), app.loop.time)
        screen.counts = old.counts
        accounts.retrust(screen)
        return screen


def _keep_network(plan: ReloadPlan, running: Config, new: Config) -> ReloadPlan:
    """The watcher runs from start-up: keep the running ``[network]``, report a change."""
    if running.network == new.network:
        return plan
    return records.replace(
        plan,
        config=records.replace(plan.config, network=running.network),
        restart_needed=(*plan.restart_needed, "network.watch"),
    )
