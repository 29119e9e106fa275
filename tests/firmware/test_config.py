"""The config file: every error names file, line, key, expected and found."""

from __future__ import annotations

import os
import stat
import textwrap
from pathlib import Path

import pytest

from firmware.cli import main
from firmware.config import (
    BUILTIN_SOURCE,
    Config,
    ConfigError,
    ConfigProblem,
    ListenAddress,
    default_config,
    key_lines,
    load_config,
    reload,
)
from hal.gpio import Pull, validate_config
from sipstack.account_config import MAX_ACC, AccountConfig
from sipstack.digest import DataType

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "intercom.example.toml"

MINIMAL = """\
[[accounts]]
id = "sip:door@pbx.example.com"
reg_uri = "sip:pbx.example.com"

[[accounts.cred_info]]
username = "door"
data = "s3cret"
"""


def write(tmp_path: Path, text: str, name: str = "intercom.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def line_no(path: Path, needle: str, nth: int = 1) -> int:
    """The 1-based line of the ``nth`` line of ``path`` that starts with ``needle``."""
    hits = [i for i, ln in enumerate(path.read_text().splitlines(), 1) if ln.startswith(needle)]
    return hits[nth - 1]


def problems(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return list(info.value.problems)


def only_problem(path: Path) -> ConfigProblem:
    (problem,) = problems(path)
    return problem


# -- good files --------------------------------------------------------------------


def test_example_config_loads_and_converts() -> None:
    config = load_config(EXAMPLE)
    assert config.source == str(EXAMPLE)
    assert config.intercom.profile == "intercom"
    assert config.intercom.door_code == "4711"
    assert config.sip.udp == ListenAddress("0.0.0.0", 5060)
    assert config.sip.tls is None
    (account,) = config.accounts
    acc = account.to_account_config(transport_id=0)
    assert isinstance(acc, AccountConfig)
    assert acc.reg_uri == "sip:pbx.example.com"
    assert acc.reg_retry_interval == 60
    assert acc.transport_id == 0
    assert acc.cred_info[0].username == "door"
    gpio = config.gpio_config()
    validate_config(gpio)
    bell = next(b for b in gpio.buttons if b.name == "bell")
    text = EXAMPLE.read_text().splitlines()
    line = int(bell.source.rsplit(" ", 1)[1])
    assert bell.source.startswith("intercom.example.toml line ")
    assert text[line - 1].strip() == "bcm = 17"
    assert gpio.relays[0].bcm == 24
    assert config.audio.to_audio_config().sample_rate == 16000
    assert config.audio.to_voice_config().echo_cancel is True


def test_minimal_config_has_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.hal == "rpi"
    assert config.sip.enabled() == ("udp", "tcp")
    acc = config.accounts[0].to_account_config()
    default = AccountConfig()
    assert acc.reg_timeout == default.reg_timeout
    assert acc.ka_interval == default.ka_interval
    assert acc.allow_contact_rewrite is default.allow_contact_rewrite
    assert config.buttons == () and config.relay is None
    assert config.intercom.ring_mode == "sequential"


def test_sip_screening_keys(tmp_path: Path) -> None:
    assert (load_config(write(tmp_path, MINIMAL)).sip.allow, "403") == ((), "403")
    allowed = '"192.168.1.20", "10.0.0.5:5070", "192.168.2.0/24", "::1", "[fe80::1]"'
    path = write(tmp_path, MINIMAL + f'\n[sip]\nallow = [{allowed}]\nrefuse = "drop"\n')
    sip = load_config(path).sip
    assert sip.allow == (
        "192.168.1.20",
        "10.0.0.5:5070",
        "192.168.2.0/24",
        "::1",
        "[fe80::1]",
    )
    assert sip.refuse == "drop"


def test_default_config_is_simulated_with_one_local_account() -> None:
    config = default_config()
    assert config.source == BUILTIN_SOURCE
    assert config.hal == "sim"
    (account,) = config.accounts
    assert account.local
    assert config.sip.udp == ListenAddress("0.0.0.0", 5060)
    validate_config(config.gpio_config())
    with pytest.raises(ValueError, match="local"):
        account.to_account_config()


def test_every_account_key_converts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [sip]
        tls = "[::]:5061"
        tls_cert = "cert.pem"
        tls_key = "key.pem"

        [[accounts]]
        id = '"Door" <sips:door@pbx.example.com>'
        reg_uri = "sips:pbx.example.com"
        proxy = ["sip:a.example.com;lr", "sip:b.example.com;lr"]
        reg_timeout = 600
        reg_retry_interval = 30
        reg_first_retry_interval = 5
        reg_delay_before_refresh = 10
        unreg_timeout = 2
        reg_use_proxy = 2
        contact_params = ";foo=bar"
        contact_uri_params = ";ob"
        allow_contact_rewrite = false
        allow_via_rewrite = false
        ka_interval = 0
        publish_enabled = true
        priority = 5
        transport = "tls"
        use_rfc5626 = true

        [[accounts.cred_info]]
        realm = "pbx"
        username = "door"
        data = "0123456789abcdef0123456789abcdef"
        data_type = "md5"

        [[accounts]]
        local = true
        transport = "udp"
        """,
    )
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    config = load_config(path)
    assert config.sip.tls == ListenAddress("::", 5061)
    assert str(config.sip.tls) == "[::]:5061"
    acc = config.accounts[0].to_account_config(3)
    assert acc.proxy == ["sip:a.example.com;lr", "sip:b.example.com;lr"]
    assert (acc.reg_timeout, acc.reg_retry_interval, acc.reg_first_retry_interval) == (600, 30, 5)
    assert acc.reg_delay_before_refresh == 10 and acc.unreg_timeout == 2.0
    assert acc.reg_use_proxy == 2 and acc.contact_params == ";foo=bar"
    assert acc.contact_uri_params == ";ob"
    assert not acc.allow_contact_rewrite and not acc.allow_via_rewrite
    assert acc.ka_interval == 0 and acc.publish_enabled and acc.priority == 5
    assert acc.use_rfc5626 and acc.transport_id == 3
    assert acc.cred_info[0].data_type is DataType.HA1_MD5
    assert config.accounts[1].local and config.accounts[1].transport == "udp"


# -- syntax and reading ----------------------------------------------------------------


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[sip]\nudp = "0.0.0.0:5060"\ntcp = 0.0.0.0:5060\n')
    problem = only_problem(path)
    assert problem.file == str(path)
    assert problem.line == 3
    assert problem.expected == "valid TOML"
    assert "syntax error" in problem.found
    assert str(problem).startswith(f"{path}:3: expected valid TOML, found a syntax error")


def test_unterminated_table_at_end(tmp_path: Path) -> None:
    problem = only_problem(write(tmp_path, MINIMAL + "\n[audi"))
    assert problem.line == 9


def test_missing_empty_and_binary_files(tmp_path: Path) -> None:
    missing = only_problem(tmp_path / "nope.toml")
    assert missing.line is None and "No such file" in missing.found
    empty = only_problem(write(tmp_path, "\n  \n"))
    assert "empty file" in empty.found
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b'hal = "sim"\n\xff\xfe\n')
    bad = only_problem(binary)
    assert bad.line == 2 and bad.expected == "UTF-8 text"


# -- semantic errors ------------------------------------------------------------------------


def test_unknown_key_names_line_and_suggests(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('reg_uri = "sip', 'reg_timout = 5\nreg_uri = "sip'))
    problem = only_problem(path)
    assert problem.line == 3
    assert problem.key == "accounts[1].reg_timout"
    assert "did you mean 'reg_timeout'" in problem.found
    assert "reg_timeout" in problem.expected


def test_unknown_section_and_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\nfoo = 1\n[intercomm]\nprofile = "desk"\n')
    found = {(p.line, p.key) for p in problems(path)}
    # foo follows [[accounts.cred_info]], so TOML puts it there.
    assert found == {(9, "accounts[1].cred_info[1].foo"), (10, "intercomm")}


def test_wrong_type(tmp_path: Path) -> None:
    path = write(
        tmp_path, MINIMAL.replace('reg_uri = "sip:pbx.example.com"', 'reg_timeout = "300"')
    )
    problem = only_problem(path)
    assert (problem.line, problem.key) == (3, "accounts[1].reg_timeout")
    assert problem.expected == "an integer from 1 to 86400"
    assert problem.found == '"300"'


@pytest.mark.parametrize(
    ("section", "line", "key", "expected", "found"),
    [
        (
            "[audio]\nsample_rate = 44100",
            "sample_rate",
            "audio.sample_rate",
            "one of 8000, 16000",
            "an integer 44100",
        ),
        (
            "[audio]\nptime = 25",
            "ptime",
            "audio.ptime",
            "one of 10, 20, 30, 40, 60",
            "an integer 25",
        ),
        (
            "[audio]\nvolume = 101",
            "volume",
            "audio.volume",
            "an integer from 0 to 100",
            "an integer 101",
        ),
        (
            "[relay]\nbcm = 24\npulse_seconds = 60",
            "pulse_seconds",
            "relay.pulse_seconds",
            "a number more than 0 and at most 30",
            "an integer 60",
        ),
        (
            '[intercom]\nring_mode = "random"',
            "ring_mode",
            "intercom.ring_mode",
            "one of 'sequential', 'parallel'",
            '"random"',
        ),
        (
            "[intercom]\nmax_call_seconds = -1",
            "max_call_seconds",
            "intercom.max_call_seconds",
            "an integer from 0 to 86400",
            "an integer -1",
        ),
        (
            '[intercom]\nauto_answer = "yes"',
            "auto_answer",
            "intercom.auto_answer",
            "true or false",
            '"yes"',
        ),
        (
            '[sip]\nudp = "0.0.0.0:99999"',
            "udp",
            "sip.udp",
            'a listen address "host:port" ("[::]:5060" for IPv6) or "" to disable',
            '"0.0.0.0:99999"',
        ),
        (
            '[sip]\nrefuse = "ignore"',
            "refuse",
            "sip.refuse",
            "one of '403', 'drop'",
            '"ignore"',
        ),
        *(
            (
                f'[sip]\nallow = ["192.168.1.20", "{bad}"]',
                "allow",
                "sip.allow",
                'an IP address ("192.168.1.20"), "address:port" ("192.168.1.20:5060") '
                'or a network ("192.168.1.0/24"); IPv6 without a port',
                f'"{bad}"' if bad else "an empty string",
            )
            for bad in ("pbx.example.com", "10.0.0.1:0", "10.0.0.0/33", "[::1]:5060", "")
        ),
    ],
)
def test_out_of_range(
    tmp_path: Path, section: str, line: str, key: str, expected: str, found: str
) -> None:
    path = write(tmp_path, MINIMAL + "\n" + section + "\n")
    problem = only_problem(path)
    lines = path.read_text().splitlines()
    assert lines[problem.line - 1].startswith(line)  # type: ignore[operator]
    assert (problem.key, problem.expected, problem.found) == (key, expected, found)


def test_nine_accounts(tmp_path: Path) -> None:
    block = '[[accounts]]\nid = "sip:a{n}@pbx.example.com"\n\n'
    text = "".join(block.format(n=n) for n in range(MAX_ACC + 1))
    problem = only_problem(write(tmp_path, text))
    assert problem.line == 3 * MAX_ACC + 1  # the ninth [[accounts]]
    assert problem.key == "accounts[9]"
    assert problem.expected == "at most 8 [[accounts]]"
    # eight are fine
    load_config(write(tmp_path, "".join(block.format(n=n) for n in range(MAX_ACC))))


def test_duplicate_bcm_pins_via_hal(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
[[buttons]]
name = "bell"
bcm = 17
action = "call"
targets = ["sip:flat@pbx.example.com"]

[[leds]]
name = "status"
bcm = 17
""",
    )
    problem = only_problem(path)
    assert (problem.line, problem.key) == (line_no(path, "bcm", 2), "leds[1].bcm")
    assert problem.expected == "a BCM pin no other button, LED or relay uses"
    bell = line_no(path, "bcm = 17")
    assert f"BCM 17 is already used by intercom.toml line {bell}: button 'bell'" in problem.found


def test_reserved_pin_and_duplicate_names(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
[[leds]]
name = "a"
bcm = 1
[[leds]]
name = "a"
bcm = 5
""",
    )
    found = {(p.line, p.key, p.expected) for p in problems(path)}
    assert found == {
        (line_no(path, "bcm = 1"), "leds[1].bcm", "a header GPIO, BCM 2-27"),
        (line_no(path, "name", 2), "leds[2].name", "a name no other entry of its kind uses"),
    }


def test_required_keys_and_local_accounts(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        [[accounts]]
        reg_uri = "sip:pbx.example.com"

        [[accounts]]
        local = true
        reg_uri = "sip:pbx.example.com"
        """,
    )
    found = {(p.line, p.key, p.found) for p in problems(path)}
    assert found == {
        (1, "accounts[1]", "none"),
        (6, "accounts[2].reg_uri", "unknown key 'reg_uri'"),
    }


def test_cross_checks(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
[sip]
tcp = ""
tls = "0.0.0.0:5061"

[[buttons]]
name = "bell"
bcm = 17
action = "call"

[[buttons]]
name = "speed"
bcm = 18
action = "speed_dial"
targets = ["sip:a@pbx.example.com", "sip:b@pbx.example.com"]

[[buttons]]
name = "exit"
bcm = 19
action = "door"
targets = "sip:a@pbx.example.com"

[intercom]
auto_answer = true
door_code = "12"
""",
    )
    got = {(p.line, p.key, p.found) for p in problems(path)}
    tls = line_no(path, "tls =")
    assert got == {
        (tls, "sip.tls", "no tls_cert"),
        (tls, "sip.tls", "no tls_key"),
        (line_no(path, "[[buttons]]"), "buttons[1]", "no targets"),
        (line_no(path, "targets", 1), "buttons[2].targets", "2 targets"),
        (line_no(path, 'action = "door"'), "buttons[3].action", "no [relay]"),
        (line_no(path, "targets", 2), "buttons[3].targets", "targets"),
        (line_no(path, "auto_answer"), "intercom.auto_answer", "no trusted list"),
        # a secret: the digits are not shown
        (line_no(path, "door_code"), "intercom.door_code", "a string"),
    }


def test_door_code_needs_relay_and_callers(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + '\n[intercom]\ndoor_code = "4711"\n')
    got = {(p.key, p.found) for p in problems(path)}
    assert got == {("intercom.door_code", "no [relay]"), ("intercom.door_code", "neither")}
    for p in problems(path):
        assert "4711" not in str(p)


def test_account_transport_must_be_enabled_and_ids_unique(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL.replace('reg_uri = "sip:pbx.example.com"', 'transport = "tls"')
        + '\n[[accounts]]\nid = "sip:door@pbx.example.com"\n',
    )
    got = {(p.line, p.key, p.found) for p in problems(path)}
    assert got == {
        (3, "accounts[1].transport", '"tls"'),
        (10, "accounts[2].id", '"sip:door@pbx.example.com"'),
    }


def test_passwords_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace('data = "s3cret"', "data = 98765"))
    problem = only_problem(path)
    assert problem.key == "accounts[1].cred_info[1].data"
    assert "98765" not in str(problem)
    assert "s3cret" not in repr(load_config(write(tmp_path, MINIMAL)))


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, 'hal = "pi"\n[audio]\nptime = 7\nagc = 1\n')
    assert [p.line for p in problems(path)] == [1, 3, 4]


# -- secrets ---------------------------------------------------------------------------


def secrets_config(tmp_path: Path, secrets: str, mode: int) -> Path:
    spath = tmp_path / "secrets.toml"
    spath.write_text(secrets)
    os.chmod(spath, mode)
    return write(
        tmp_path,
        'secrets = "secrets.toml"\n' + MINIMAL.replace('data = "s3cret"\n', ""),
    )


def test_secrets_file_supplies_password(tmp_path: Path) -> None:
    path = secrets_config(tmp_path, '[passwords]\ndoor = "from-secrets"\n', 0o600)
    config = load_config(path)
    assert config.accounts[0].cred_info[0].data == "from-secrets"
    assert config.secrets == str(tmp_path / "secrets.toml")


def test_secrets_by_account_id_and_realm(tmp_path: Path) -> None:
    text = '[passwords]\n"sip:door@pbx.example.com" = "by-id"\n"door@*" = "by-realm"\n'
    path = secrets_config(tmp_path, text, 0o400)
    assert load_config(path).accounts[0].cred_info[0].data == "by-realm"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_secrets_readable_by_others_refused(tmp_path: Path, mode: int) -> None:
    path = secrets_config(tmp_path, '[passwords]\ndoor = "x"\n', mode)
    got = problems(path)
    assert got[0].line == 1 and got[0].key == "secrets"
    assert "chmod 600" in got[0].expected
    assert got[0].found == f"mode {stat.filemode(stat.S_IFREG | mode)} owner uid {os.geteuid()}"
    # and the password it would have given is missing, said in plain words
    assert got[1].key == "accounts[1].cred_info[1]"
    assert got[1].line == line_no(path, "[[accounts.cred_info]]")


def test_secrets_file_errors_name_the_secrets_file(tmp_path: Path) -> None:
    path = secrets_config(tmp_path, '[passwords]\ndoor = "x"\n[pass]\n', 0o600)
    problem = only_problem(path)
    assert problem.file == str(tmp_path / "secrets.toml")
    assert (problem.line, problem.key) == (3, "pass")
    missing = secrets_config(tmp_path, "[passwords]\nother = 'x'\n", 0o600)
    assert "secrets.toml" in only_problem(missing).found


# -- reload -----------------------------------------------------------------------------


def test_truncated_file_keeps_previous_config(tmp_path: Path) -> None:
    path = tmp_path / "intercom.toml"
    path.write_text(EXAMPLE.read_text())
    current = load_config(path)
    text = EXAMPLE.read_text().replace('door_code = "4711"', 'door_code = "9876"')
    path.write_text(text[: text.index("[[buttons]]") + 5])  # cut inside a header
    kept, error = reload(current, path)
    assert kept is current
    assert error is not None and error.problems[0].line is not None
    path.write_text(text)
    new, error = reload(current, path)
    assert error is None and new.intercom.door_code == "9876"


def test_every_truncation_loads_or_reports(tmp_path: Path) -> None:
    """Cut the example anywhere: reload either succeeds or keeps the old config
    with located problems; it never raises anything else."""
    text = EXAMPLE.read_text()
    current = default_config()
    path = tmp_path / "intercom.toml"
    errors = 0
    for cut in range(0, len(text), 7):
        path.write_text(text[:cut])
        config, error = reload(current, path)
        if error is None:
            assert isinstance(config, Config) and config is not current
        else:
            errors += 1
            assert config is current
            assert all(p.line is not None for p in error.problems)
    assert errors > 0


# -- the line finder ---------------------------------------------------------------------


def test_key_lines_follow_tables_arrays_and_strings() -> None:
    text = textwrap.dedent(
        '''\
        top = 1
        note = """
        [not.a.table]
        fake = 2
        """
        list = [
          "x = 3",
          ]
        [a.b]
        "quoted.key" = 4
        c.d = 5
        [[x]]
        k = 1
        [[x.y]]
        k = 2
        [[x.y]]
        k = 3
        [[x]]
        k = 4
        [[x.y]]
        k = 5
        '''
    )
    lines = key_lines(text)
    assert lines[("top",)] == 1
    assert lines[("note",)] == 2
    assert ("not",) not in lines and ("fake",) not in lines
    assert lines[("list",)] == 6
    assert lines[("a", "b", "quoted.key")] == 10
    assert lines[("a", "b", "c", "d")] == 11
    assert lines[("x", 0, "k")] == 13
    assert lines[("x", 0, "y", 0, "k")] == 15
    assert lines[("x", 0, "y", 1, "k")] == 17
    assert lines[("x", 1, "k")] == 19
    assert lines[("x", 1, "y", 0, "k")] == 21


# -- CLI ------------------------------------------------------------------------------------


def test_cli_config_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.startswith(f"OK: {EXAMPLE}")
    bad = write(tmp_path, MINIMAL + "\n[audio]\nptime = 25\n")
    assert main(["config", "check", str(bad)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{bad}:10: audio.ptime: expected one of 10, 20, 30, 40, 60, found an integer 25",
        f"{bad}: 1 problem",
    ]


def test_button_settings_convert(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        MINIMAL
        + """
[[buttons]]
name = "answer"
bcm = 5
action = "answer"
pull = "down"
active_low = false
long_press = false
debounce = 0.05
""",
    )
    (button,) = load_config(path).gpio_config().buttons
    assert button.pull is Pull.DOWN and not button.active_low
    assert button.long_press is None and button.debounce == 0.05
    assert button.source == "intercom.toml line 11"
