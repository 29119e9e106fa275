"""The ``intercom`` command in-process: exit codes, and the words people read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from firmware.cli import EXIT_OK, EXIT_PROBLEM, EXIT_UNREACHABLE, EXIT_USAGE, format_doctor, main
from firmware.control import control_path
from firmware.doctor import _nat_words, _registration_words


def test_run_with_a_broken_config_lists_every_problem_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "intercom.toml"
    bad.write_text('hal = "sim"\n\n[sip]\nudp = "nowhere"\n\n[intercom]\nauto_answer = true\n')
    assert main(["run", "--config", str(bad), "--control", str(tmp_path / "c.sock")]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f'{bad}:4: sip.udp: expected a listen address "host:port"' in err
    assert f"{bad}:7: intercom.auto_answer: expected trusted callers" in err
    assert "2 problems; not started" in err
    assert not (tmp_path / "c.sock").exists()


def test_commands_without_a_firmware_exit_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sock = str(tmp_path / "none.sock")
    for argv in (["status"], ["answer"], ["doctor", "--json"], ["press", "bell"]):
        assert main([*argv, "--control", sock]) == EXIT_UNREACHABLE
        assert f"no firmware control socket at {sock}" in capsys.readouterr().err


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["presence", "maybe"])
    assert exc.value.code == EXIT_USAGE


def test_config_check_exit_codes(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text('hal = "sim"\n[[accounts]]\nlocal = true\n')
    assert main(["config", "check", str(good)]) == EXIT_OK
    good.write_text('hal = "simulated"\n')
    assert main(["config", "check", str(good)]) == EXIT_PROBLEM


def test_control_path_precedence() -> None:
    assert control_path("/x.sock", {"INTERCOM_CONTROL": "/y.sock"}) == "/x.sock"
    assert control_path(None, {"INTERCOM_CONTROL": "/y.sock"}) == "/y.sock"
    assert control_path(None, {}) == "/run/intercom/control.sock"


def account(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "uri": '"Door" <sip:door@pbx.example.com>',
        "registered": False,
        "status": 0,
        "reason": "",
        "state": "registering",
        "expires": -1,
        "config_line": 12,
        "registrar": "sip:pbx.example.com",
        "contact": "sip:door@192.168.1.50:5060",
        "seen_as": None,
    }
    return {**base, **changes}


@pytest.mark.parametrize(
    ("changes", "verdict", "words"),
    [
        (
            {"status": 401, "reason": "Unauthorized"},
            "fail",
            "the registrar refused the password for door@pbx.example.com: "
            "check [[accounts.cred_info]] (config line 12)",
        ),
        ({"status": 407}, "fail", "refused the password for door@pbx.example.com"),
        ({"status": 403, "reason": "Forbidden"}, "fail", "the registrar refused door@"),
        ({"status": 408}, "fail", "no answer from the registrar of door@pbx.example.com"),
        ({"registered": True, "expires": 280}, "ok", "door@pbx.example.com is registered"),
        ({}, "warn", "still registering"),
    ],
)
def test_registration_in_plain_words(changes: dict[str, Any], verdict: str, words: str) -> None:
    status, message, _advice = _registration_words(account(**changes))
    assert status == verdict
    assert words in message


def test_nat_mismatch_between_contact_and_received_rport() -> None:
    assert _nat_words(account()) is None  # no 2xx seen yet
    same = _nat_words(account(seen_as="192.168.1.50:5060"))
    assert same is not None and same[0] == "ok"
    natted = _nat_words(account(seen_as="203.0.113.7:40112"))
    assert natted is not None and natted[0] == "warn"
    assert "sees us at 203.0.113.7:40112 but our Contact says 192.168.1.50:5060" in natted[1]


def test_doctor_report_for_a_person() -> None:
    text = format_doctor(
        [
            {"check": "clock", "status": "ok", "message": "fine", "advice": "ignored"},
            {"check": "registration", "status": "fail", "message": "bad", "advice": "fix it"},
        ]
    )
    assert text.splitlines() == [
        "OK   clock: fine",
        "FAIL registration: bad",
        "     -> fix it",
        "1 problem(s), 0 warning(s)",
    ]
