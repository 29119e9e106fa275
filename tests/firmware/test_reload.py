"""Live config reload: the plan (pure), a real App reloading, SIGHUP, ``intercom reload``.

A tiny registrar on a loopback UDP socket (it answers every REGISTER 200 and
remembers what it saw) shows accounts being added, removed and modified through
the user agent's account API. Strangers send requests from 127.0.0.2.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.app import App
from firmware.cli import EXIT_OK, EXIT_PROBLEM, main
from firmware.config import AccountSettings, ButtonSettings, Config, ConfigError, load_config
from firmware.reconfig import changed_keys, plan_reload
from sipstack import records
from sipstack.loop import Loop
from sipstack.message import Request, make_response, parse_message
from tests.firmware.test_app import send_raw, sip_port

# -- the plan ------------------------------------------------------------------------------


def acc(id_: str, **changes: Any) -> AccountSettings:
    return AccountSettings(line=1, id=id_, reg_uri="sip:127.0.0.1", **changes)


def test_plan_matches_accounts_by_id_and_lists_restart_keys() -> None:
    a, b, c = acc("sip:a@x"), acc("sip:b@x"), acc("sip:c@x")
    local = AccountSettings(line=9, local=True)
    bell = ButtonSettings("bell", 17, "call", "f line 3", targets=("sip:flat@x",))
    running = Config(source="f", accounts=(a, b, local), buttons=(bell,))
    new = Config(
        source="f",
        accounts=(
            records.replace(local, line=2),  # moved in the file: unchanged
            records.replace(a, reg_timeout=60, line=5),
            c,
        ),
        buttons=(records.replace(bell, targets=("sip:other@x",), source="f line 9"),),
        audio=records.replace(running.audio, ptime=40),
        sip=records.replace(running.sip, udp=None, refuse="drop", allow=("10.0.0.1",)),
    )
    plan = plan_reload(running, new, {0: a, 1: b, 2: local})
    assert plan.accounts.removed == (1,)
    assert [(i, s.id) for i, s in plan.accounts.modified] == [(0, "sip:a@x")]
    assert [i for i, _ in plan.accounts.kept] == [2]
    assert [s.id for s in plan.accounts.added] == ["sip:c@x"]
    assert plan.restart_needed == ("sip.udp", "audio.ptime")
    # live: screening and the bell's targets; the rest keeps the running values
    cfg = plan.config
    assert (cfg.sip.refuse, cfg.sip.allow, cfg.sip.udp) == ("drop", ("10.0.0.1",), running.sip.udp)
    assert cfg.buttons[0].targets == ("sip:other@x",) and cfg.audio == running.audio


def test_a_moved_pin_keeps_the_running_buttons() -> None:
    bell = ButtonSettings("bell", 17, "call", "f line 3", targets=("sip:flat@x",))
    running = Config(source="f", buttons=(bell,))
    new = Config(source="f", buttons=(records.replace(bell, bcm=5, targets=("sip:b@x",)),))
    plan = plan_reload(running, new, {})
    assert plan.config.buttons == (bell,)
    assert plan.restart_needed == ("buttons[1].bcm", "buttons[1].targets")
    assert changed_keys(running, running) == []


def test_a_changed_local_account_is_replaced_not_modified() -> None:
    local = AccountSettings(line=1, local=True)
    new = Config(accounts=(records.replace(local, priority=5),))
    plan = plan_reload(Config(), new, {3: local})
    assert plan.accounts.removed == (3,) and len(plan.accounts.added) == 1
    assert plan.accounts.modified == ()


# -- a registrar ---------------------------------------------------------------------------


class Registrar:
    """Answers every REGISTER 200 with the Contact and Expires asked for."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[str, int]] = []  # (user, expires)
        loop.add_reader(self.sock, self._readable)

    def _readable(self) -> None:
        data, addr = self.sock.recvfrom(65535)
        request = parse_message(data)
        if not isinstance(request, Request) or request.method != "REGISTER":
            return
        contact = request.contacts[0]
        expires = contact.params.get("expires") or request.headers.get("Expires") or "3600"
        self.seen.append((request.from_.uri.user or "", int(expires)))
        response = make_response(request, 200, to_tag="reg")
        if int(expires):
            response.headers.add("Contact", f"{contact};expires={expires}")
        self.sock.sendto(response.to_bytes(), addr)

    def registered(self, user: str) -> bool:
        last = [e for u, e in self.seen if u == user]
        return bool(last) and last[-1] > 0

    def close(self) -> None:
        self.loop.remove_reader(self.sock)
        self.sock.close()


@pytest.fixture
def registrar(loop: Loop) -> Iterator[Registrar]:
    reg = Registrar(loop)
    yield reg
    reg.close()


BASE = """
hal = "sim"

[sip]
udp = "{udp}"
tcp = ""
{sip}

{accounts}

[[buttons]]
name = "bell"
bcm = 17
action = "call"
targets = ["sip:flat@127.0.0.1:5999"]

[[leds]]
name = "status"
bcm = 22

[relay]
bcm = 26
pulse_seconds = {pulse}

[intercom]
trusted = ["sip:*@127.0.0.1:*"]
max_call_seconds = {max_call}
"""


def account_block(user: str, port: int, timeout: int = 300) -> str:
    return (
        f'[[accounts]]\nid = "sip:{user}@127.0.0.1"\nreg_uri = "sip:127.0.0.1:{port}"\n'
        f"reg_timeout = {timeout}\n"
        f'[[accounts.cred_info]]\nusername = "{user}"\ndata = "pw-{user}-secret"\n'
    )


def door(
    accounts: str = "",
    sip: str = "",
    pulse: float = 2,
    max_call: int = 0,
    udp: str = "127.0.0.1:0",
) -> str:
    return BASE.format(accounts=accounts, sip=sip, pulse=pulse, max_call=max_call, udp=udp)


def registered_users(app: App) -> dict[str, bool]:
    return {
        a["uri"].split(":")[1].split("@")[0]: a["registered"]
        for a in app.status()["accounts"]
        if not a["local"]
    }


def test_reload_adds_removes_and_modifies_accounts(
    loop: Loop, registrar: Registrar, make_app: Callable[..., App]
) -> None:
    port = registrar.port
    app = make_app(door(account_block("alice", port) + account_block("bob", port)))
    assert loop.run_until(lambda: registered_users(app) == {"alice": True, "bob": True}, 3.0)
    alice_ids = [a["id"] for a in app.status()["accounts"] if "alice" in a["uri"]]
    seen_before = len(registrar.seen)

    Path(app.config.source).write_text(
        door(account_block("alice", port, timeout=120) + account_block("carol", port))
    )
    report = app.reload()
    assert report["accounts"] == {"added": 1, "removed": 1, "modified": 1, "unchanged": 0}
    assert report["restart_needed"] == []
    assert loop.run_until(
        lambda: (
            registered_users(app) == {"alice": True, "carol": True} and ("bob", 0) in registrar.seen
        ),
        3.0,
    ), (registered_users(app), registrar.seen)
    new = registrar.seen[seen_before:]
    assert ("alice", 0) in new and ("alice", 120) in new  # modified: unbound, bound anew
    assert ("carol", 300) in new
    assert [a["id"] for a in app.status()["accounts"] if "alice" in a["uri"]] == alice_ids
    assert app.status()["config_error"] is None


def test_a_broken_file_keeps_the_config_and_says_why_until_a_good_reload(
    loop: Loop, registrar: Registrar, make_app: Callable[..., App]
) -> None:
    text = door(account_block("alice", registrar.port))
    app = make_app(text)
    assert loop.run_until(lambda: registrar.registered("alice"), 3.0)
    path = Path(app.config.source)
    running = app.config
    path.write_text(text[: text.index("reg_timeout")] + "reg_timeout = \n")  # cut mid-save
    with pytest.raises(ConfigError):
        app.reload()
    assert app.config is running
    error = app.status()["config_error"]
    assert error is not None
    assert (error["file"], error["key"], error["expected"]) == (str(path), "", "valid TOML")
    assert error["line"] == text[: text.index("reg_timeout")].count("\n") + 1
    assert "syntax error" in error["found"]
    errors = [r for r in app.log_ring.records if r["level"] == "error"]
    assert len(errors) == 1 and "keeping the running config" in errors[0]["message"]
    assert list(registered_users(app)) == ["alice"]  # the account is still there

    path.write_text(text.replace("reg_timeout = 300", "reg_timout = 300"))  # a typo
    with pytest.raises(ConfigError):
        app.reload()
    error = app.status()["config_error"]
    assert error["key"] == "accounts[1].reg_timout" and error["found"].startswith("unknown key")

    path.write_text(text)
    assert app.reload()["accounts"]["unchanged"] == 1
    assert app.status()["config_error"] is None


def test_screening_and_behaviour_settings_apply_live_pins_need_a_restart(
    loop: Loop, make_app: Callable[..., App]
) -> None:
    app = make_app(door())
    port = sip_port(app)
    answer = send_raw(loop, "127.0.0.2", port)
    assert answer is not None and answer.startswith("SIP/2.0 403")
    path = Path(app.config.source)

    path.write_text(door(sip='allow = ["127.0.0.2"]', pulse=5, max_call=60))
    assert app.reload()["restart_needed"] == []
    answer = send_raw(loop, "127.0.0.2", port)
    assert answer is not None and answer.startswith("SIP/2.0 200"), answer
    assert app.config.intercom.max_call_seconds == 60
    assert app.config.relay is not None and app.config.relay.pulse_seconds == 5

    path.write_text(
        door(sip='refuse = "drop"', udp="127.0.0.1:5999", pulse=5).replace("bcm = 26", "bcm = 25")
    )
    report = app.reload()
    assert report["restart_needed"] == ["sip.udp", "relay.bcm"]
    assert app.status()["restart_needed"] == ["sip.udp", "relay.bcm"]
    assert sip_port(app) == port and app.config.relay is not None
    assert app.config.relay.bcm == 26  # the running pin stays until the restart
    assert send_raw(loop, "127.0.0.2", port) is None  # dropped now
    screening = app.status()["screening"]
    assert screening["mode"] == "drop"
    assert (screening["forbidden"], screening["dropped"]) == (1, 1)  # counters carried over


def test_reload_changes_what_the_bell_calls_and_the_status_led(
    loop: Loop, make_app: Callable[..., App]
) -> None:
    app = make_app(door())
    assert app.leds["status"] == "heartbeat"  # idle, nothing to register
    path = Path(app.config.source)
    path.write_text(door().replace("bcm = 22", 'bcm = 22\nshows = "call"'))
    assert app.reload()["restart_needed"] == []
    assert app.leds["status"] == "off"  # a "call" LED is dark while idle
    assert app.behaviour is not None


# -- SIGHUP and the CLI --------------------------------------------------------------------


def test_sighup_reloads_while_running(loop: Loop, make_app: Callable[..., App]) -> None:
    app = make_app(door())
    Path(app.config.source).write_text(door(max_call=42))
    deadline = loop.time() + 5.0

    def poll() -> None:
        if app.config.intercom.max_call_seconds == 42 or loop.time() > deadline:
            loop.stop()
        else:
            loop.call_later(0.01, poll)

    loop.call_soon(lambda: os.kill(os.getpid(), signal.SIGHUP))
    loop.call_soon(poll)
    previous = signal.getsignal(signal.SIGHUP)
    assert app.run() == 0  # returns when poll stops the loop; shuts the App down
    assert signal.getsignal(signal.SIGHUP) is previous  # handler restored
    assert app.config.intercom.max_call_seconds == 42


def cli(loop: Loop, *argv: str) -> int:
    """Run ``intercom ARGV`` in a thread while the loop serves it."""
    box: list[int] = []

    def work() -> None:
        try:
            box.append(main(list(argv)))
        finally:
            loop.call_soon_threadsafe(lambda: None)  # wake the loop: the answer is in

    thread = threading.Thread(target=work)
    thread.start()
    assert loop.run_until(lambda: bool(box), 10.0)
    thread.join()
    return box[0]


def test_intercom_reload_exit_codes_and_words(
    loop: Loop, make_app: Callable[..., App], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = str(tmp_path / "c.sock")
    app = make_app(door(), control_path=sock)
    path = Path(app.config.source)
    path.write_text(door(udp="127.0.0.1:5999", max_call=30))
    assert cli(loop, "reload", "--control", sock) == EXIT_OK
    out = capsys.readouterr().out
    assert f"reloaded {path}: accounts 0 added" in out
    assert "not applied until a restart (systemctl restart intercom): sip.udp" in out

    path.write_text(door().replace("max_call_seconds = 0", 'max_call_seconds = "soon"'))
    assert cli(loop, "reload", "--control", sock) == EXIT_PROBLEM
    err = capsys.readouterr().err
    line = door().splitlines().index("max_call_seconds = 0") + 1
    assert f"intercom reload: {path}: 1 problem; the running config stays in force" in err
    assert f"{path}:{line}: intercom.max_call_seconds: expected an integer" in err
    assert 'found "soon"' in err
    assert app.config.intercom.max_call_seconds == 30

    assert cli(loop, "status", "--control", sock) == EXIT_OK
    out = capsys.readouterr().out
    assert "CONFIG RELOAD FAILED (1 problem(s)), the previous config stays in force:" in out
    assert f"{path}:{line}: intercom.max_call_seconds" in out
    assert "restart needed to apply: sip.udp" in out
    assert cli(loop, "status", "--json", "--control", sock) == EXIT_OK
    assert '"key": "intercom.max_call_seconds"' in capsys.readouterr().out
    assert cli(loop, "doctor", "--control", sock) == EXIT_PROBLEM
    out = capsys.readouterr().out
    assert "FAIL config reload: the last reload failed, the previous config is still running" in out
    assert "WARN config reload: changed but not applied until a restart: sip.udp" in out


def test_the_builtin_default_has_nothing_to_reload(loop: Loop, tmp_path: Path) -> None:
    from firmware.config import default_config

    app = App(default_config(), loop=loop, bind=("127.0.0.1", 0), heartbeat_interval=0)
    try:
        app.start()
        assert loop.run_until(lambda: app.ready, 2.0)
        with pytest.raises(ValueError, match="built-in default"):
            app.reload()
    finally:
        app.shutdown()


def test_unit_file_reloads_with_sighup() -> None:
    unit = Path(__file__).resolve().parents[2] / "deploy/rootfs/etc/systemd/system/intercom.service"
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit.read_text().splitlines()


def test_load_config_reads_what_the_tests_write(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text(door(sip='allow = ["127.0.0.2"]\nrefuse = "drop"'))
    config = load_config(path)
    assert (config.sip.allow, config.sip.refuse) == (("127.0.0.2",), "drop")
