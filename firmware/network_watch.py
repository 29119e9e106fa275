"""Which network watcher the firmware runs, and re-registration when the network changes.

``[network] watch`` (or ``intercom run --watch``) picks the watcher:
``"kernel"`` is :class:`hal.netwatch.NetifacesWatcher` (rtnetlink, needs the
``netifaces`` package), ``"sim"`` is :class:`hal.sim.SimNetwork` (changes
only from code), and ``"auto"`` means the kernel's on the Pi (``hal = "rpi"``)
and the simulated one with ``hal = "sim"``, so simulated devices and the
tests stay deterministic unless they ask for the real thing (a PC or CI
device that should notice a DHCP renumbering sets ``watch = "kernel"``).

A burst of change events (one DHCP renewal gives several) becomes one call of
``on_change`` after a settle delay: the user agent re-registers once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from firmware.config import NetworkSettings

if TYPE_CHECKING:
    from hal.network import NetworkInfo
    from sipstack.loop import Loop, TimerHandle

__all__ = ["NetworkWatch", "WatcherUnavailable", "watcher_kind"]

log = logging.getLogger("intercom")


class WatcherUnavailable(RuntimeError):
    """The configured watcher cannot run here (the device's setup: a missing package)."""


def watcher_kind(settings: NetworkSettings, hal: str, override: str | None = None) -> str:
    """``"kernel"`` or ``"sim"``: ``override`` (``--watch``) else ``settings.watch``,
    with ``"auto"`` resolved for hardware ``hal``."""
    chosen = settings if override is None else NetworkSettings(watch=override)
    if chosen.watch not in ("auto", "kernel", "sim"):
        raise ValueError(f"watch must be 'auto', 'kernel' or 'sim', not {chosen.watch!r}")
    return chosen.watcher_for(hal)


class NetworkWatch:
    """Runs one network watcher on ``loop``; calls ``on_change`` once per burst of
    events, ``settle`` seconds after the last one."""

    def __init__(self, loop: Loop, on_change: Callable[[], None], settle: float = 0.5) -> None:
        self._loop = loop
        self._on_change = on_change
        self._settle = settle
        self._timer: TimerHandle | None = None
        self._closed = False
        self.kind = ""
        """``"kernel"`` or ``"sim"`` once started."""

    def start(self, kind: str) -> NetworkInfo:
        """Start the ``kind`` watcher (see :func:`watcher_kind`) and return it."""
        network: NetworkInfo
        if kind == "kernel":
            try:
                from hal.netwatch import NetifacesWatcher
            except ImportError as exc:
                raise WatcherUnavailable(
                    f"the kernel's network watcher needs the netifaces package ({exc}): "
                    'install it, or set [network] watch = "sim"'
                ) from exc
            network = NetifacesWatcher(self._loop)
        elif kind == "sim":
            from hal.sim import SimNetwork

            network = SimNetwork(self._loop)
        else:
            raise ValueError(f"network watcher must be 'kernel' or 'sim', not {kind!r}")
        network.set_handler(self._on_event)
        self.kind = kind
        return network

    def close(self) -> None:
        """No re-registration after this (shutdown); the watcher is closed by its owner."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_event(self, event: object) -> None:
        log.info("network: %s", event)
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(self._settle, self._changed)

    def _changed(self) -> None:
        self._timer = None
        if not self._closed:
            self._on_change()
