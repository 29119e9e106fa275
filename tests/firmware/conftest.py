"""Fixtures shared by the firmware App tests: one real loop, Apps built from TOML text."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.app import App
from firmware.config import load_config
from sipstack.loop import Loop
from sipstack.timers import TimerConfig

FAST = TimerConfig(t1=0.05, t2=0.4, t4=0.5)


@pytest.fixture
def loop() -> Iterator[Loop]:
    with Loop() as lp:
        yield lp


@pytest.fixture
def make_app(loop: Loop, tmp_path: Path) -> Iterator[Callable[..., App]]:
    """``make_app(toml_text, **App_options)``: written to ``tmp_path/appN.toml``,
    started and ready; every App is shut down after the test."""
    apps: list[App] = []

    def make(text: str, **options: Any) -> App:
        path = tmp_path / f"app{len(apps)}.toml"
        path.write_text(text)
        app = App(load_config(path), loop=loop, timers=FAST, heartbeat_interval=0, **options)
        app.start()
        apps.append(app)
        assert loop.run_until(lambda: app.ready, 2.0)
        return app

    yield make
    for app in apps:
        app.shutdown()
