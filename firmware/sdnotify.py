"""systemd service notification (sd_notify) without a dependency.

``Type=notify`` units learn that start-up finished from ``READY=1`` and that
the process is alive from ``WATCHDOG=1`` on the datagram socket named by
``NOTIFY_SOCKET`` (a path, or an abstract name starting with ``@``). Outside
systemd the variables are absent and every call is a cheap no-op.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier"]


class Notifier:
    """Sends sd_notify messages; ``env`` is injectable for tests."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # abstract namespace
        self._address = address
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        watchdog = usec.isdigit() and (not pid or pid == str(os.getpid()))
        #: seconds between WATCHDOG=1 pings (half the unit's WatchdogSec), or None
        self.watchdog_interval: float | None = int(usec) / 2e6 if watchdog else None

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return bool(self._address)

    def notify(self, message: str) -> bool:
        """Send one ``KEY=value`` message (lines joined by newlines); False if not sent."""
        if not self._address:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.sendto(message.encode(), self._address)
        except OSError:
            return False  # systemd went away: nothing useful to do about it
        return True

    def ready(self, status: str = "") -> bool:
        """Start-up is complete (``READY=1``), with an optional status line."""
        return self.notify("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> bool:
        """The loop is alive (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """Shutdown has begun (``STOPPING=1``)."""
        return self.notify("STOPPING=1")
