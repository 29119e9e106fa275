"""``[network] watch`` / ``intercom run --watch``: which network watcher runs, and what
a change does (one re-registration per burst of events)."""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from firmware.app import App
from firmware.config import ConfigError, NetworkSettings, load_config
from firmware.network_watch import NetworkWatch, WatcherUnavailable, watcher_kind
from hal.sim import SimNetwork
from sipstack.loop import Loop
from tests.firmware.conftest import FAST
from tests.firmware.test_app import REGISTERING_DOOR, Registrar

DOOR = """
hal = "sim"

[sip]
udp = "127.0.0.1:0"
tcp = ""

[[accounts]]
local = true
"""


class FakeLoop:
    """Just enough of the loop for a watcher: call_soon / call_later on a fake clock."""

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[[], object], list[bool]]] = []
        self._seq = 0

    def time(self) -> float:
        return self.now

    def call_soon(self, callback: Callable[[], object]) -> None:
        self.call_later(0.0, callback)

    def call_later(self, delay: float, callback: Callable[[], object]) -> _Handle:
        flag = [False]
        self._seq += 1
        heapq.heappush(self._heap, (self.now + delay, self._seq, callback, flag))
        return _Handle(flag)

    def advance(self, seconds: float) -> None:
        """Jump the clock, running every callback due on the way, in order."""
        end = self.now + seconds
        while self._heap and self._heap[0][0] <= end:
            when, _, callback, cancelled = heapq.heappop(self._heap)
            self.now = max(self.now, when)
            if not cancelled[0]:
                callback()
        self.now = end


class _Handle:
    def __init__(self, flag: list[bool]) -> None:
        self._flag = flag

    def cancel(self) -> None:
        self._flag[0] = True


@pytest.mark.parametrize(
    ("watch", "hal", "override", "kind"),
    [
        ("auto", "sim", None, "sim"),
        ("auto", "rpi", None, "kernel"),
        ("kernel", "sim", None, "kernel"),
        ("sim", "rpi", None, "sim"),
        ("sim", "sim", "kernel", "kernel"),  # --watch wins over the file
        ("kernel", "rpi", "auto", "kernel"),
        ("kernel", "sim", "auto", "sim"),
    ],
)
def test_watcher_kind(watch: str, hal: str, override: str | None, kind: str) -> None:
    assert watcher_kind(NetworkSettings(watch), hal, override) == kind


def test_a_bad_override_is_the_callers_error() -> None:
    with pytest.raises(ValueError, match="'auto', 'kernel' or 'sim'"):
        watcher_kind(NetworkSettings(), "sim", "netlink")


def test_bad_network_values_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    text = DOOR + '\n[network]\nwatch = "netlink"\npoll = 2\n'
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = {p.key: p for p in caught.value.problems}
    assert set(problems) == {"network.watch", "network.poll"}
    assert "'auto', 'kernel', 'sim'" in problems["network.watch"].expected
    assert problems["network.watch"].line == text.splitlines().index('watch = "netlink"') + 1


def test_a_burst_of_changes_is_one_reregistration_after_the_settle_delay() -> None:
    loop = FakeLoop()
    changes: list[float] = []
    watch = NetworkWatch(loop, lambda: changes.append(loop.now), settle=0.5)  # type: ignore[arg-type]
    network = watch.start("sim")
    assert isinstance(network, SimNetwork) and watch.kind == "sim"
    network.add_address("eth0", "192.0.2.50")
    loop.advance(0.2)
    network.set_link("eth0", False)
    loop.advance(0.2)
    network.set_link("eth0", True)
    loop.advance(0.49)
    assert changes == []  # still settling: 0.5 s after the last event
    loop.advance(0.02)
    assert changes == [pytest.approx(0.9)]
    loop.advance(5.0)
    assert len(changes) == 1
    # after close (shutdown) a pending burst re-registers nothing
    network.remove_address("eth0", "192.0.2.50")
    loop.advance(0.1)
    watch.close()
    loop.advance(1.0)
    assert len(changes) == 1


def test_the_kernel_watcher_without_netifaces_says_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "hal.netwatch", None)  # import fails as if missing
    watch = NetworkWatch(FakeLoop(), lambda: None)  # type: ignore[arg-type]
    with pytest.raises(WatcherUnavailable, match=r'netifaces.*watch = "sim"'):
        watch.start("kernel")


def test_a_simulated_device_watches_the_simulated_network_by_default(
    make_app: Callable[..., App],
) -> None:
    app = make_app(DOOR)
    assert app.network_watch == "sim" and isinstance(app.network, SimNetwork)
    assert app.status()["network"]["watch"] == "sim"


def test_watch_kernel_runs_the_rtnetlink_watcher_with_simulated_gpio(
    make_app: Callable[..., App],
) -> None:
    netwatch = pytest.importorskip("hal.netwatch")  # needs netifaces
    app = make_app(DOOR + '\n[network]\nwatch = "kernel"\n')
    assert app.hal == "sim" and app.network_watch == "kernel"
    assert isinstance(app.network, netwatch.NetifacesWatcher)
    assert app.status()["network"]["watch"] == "kernel"
    # the override of `intercom run --watch` wins over the file
    other = make_app(DOOR + '\n[network]\nwatch = "kernel"\n', watch="sim")
    assert isinstance(other.network, SimNetwork)


def test_a_network_change_registers_again(loop: Loop, tmp_path: Path) -> None:
    registrar = Registrar(loop)
    path = tmp_path / "door.toml"
    path.write_text(REGISTERING_DOOR.format(registrar_port=registrar.port))
    app = App(load_config(path), loop=loop, timers=FAST, heartbeat_interval=0)
    registrar.app = app
    app.start()
    try:
        assert loop.run_until(lambda: app.ready and app.status()["accounts"][0]["registered"], 3.0)
        before = len(registrar.ready_at_arrival)
        assert isinstance(app.network, SimNetwork)
        app.network.add_address("eth0", "192.0.2.77")
        app.network.set_link("eth0", False)
        app.network.set_link("eth0", True)
        assert loop.run_until(lambda: len(registrar.ready_at_arrival) > before, 3.0)
        assert loop.run_until(lambda: app.status()["accounts"][0]["registered"], 3.0)
        # one burst, one re-registration (a REGISTER and its authorised retry)
        loop.run_until(lambda: False, 0.7)
        assert len(registrar.ready_at_arrival) - before <= 2
    finally:
        app.shutdown()
        registrar.close()


def test_a_changed_watch_needs_a_restart(make_app: Callable[..., App], tmp_path: Path) -> None:
    app = make_app(DOOR)
    Path(app.config.source).write_text(DOOR + '\n[network]\nwatch = "kernel"\n')
    report = app.reload()
    assert report["restart_needed"] == ["network.watch"]
    assert app.config.network.watch == "auto" and app.network_watch == "sim"
    assert app.status()["restart_needed"] == ["network.watch"]
