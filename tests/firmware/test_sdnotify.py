"""sd_notify messages reach a datagram socket like systemd's, and are no-ops without one."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from firmware.sdnotify import Notifier


def test_ready_and_watchdog_reach_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(path))
        n = Notifier(
            {
                "NOTIFY_SOCKET": str(path),
                "WATCHDOG_USEC": "10000000",
                "WATCHDOG_PID": str(os.getpid()),
            }
        )
        assert n.enabled and n.watchdog_interval == 5.0
        assert n.ready("registered 1/1")
        assert n.watchdog()
        assert systemd.recv(100) == b"READY=1\nSTATUS=registered 1/1"
        assert systemd.recv(100) == b"WATCHDOG=1"


def test_abstract_socket_name() -> None:
    name = f"intercom-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind("\0" + name)
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).stopping()
        assert systemd.recv(100) == b"STOPPING=1"


def test_outside_systemd_nothing_happens() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    assert not n.ready()


def test_watchdog_for_another_pid_is_ignored() -> None:
    n = Notifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert n.watchdog_interval is None
    assert not n.ready()  # the socket does not exist: reported, not raised
