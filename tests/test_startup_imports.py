"""What start-up imports: heavy modules stay out until a feature needs them (issue 6).

Each check runs in a fresh interpreter, since this test process has long since
imported everything. The modules named here each cost hundreds of KiB to MiB
of resident memory (``ssl``/``hashlib``/``hmac`` map OpenSSL's libcrypto,
``pylibsrtp`` maps libsrtp) or start-up time; ``bench/startup.py`` measures the
whole process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Not needed by a device that registers over UDP/TCP with digest MD5.
HEAVY = (
    "ssl",
    "_ssl",
    "hashlib",
    "_hashlib",
    "hmac",
    "secrets",
    "pylibsrtp",
    "xml.etree.ElementTree",
    "pyexpat",
    "difflib",
    "encodings.idna",
)


def loaded_after(
    code: str, watch: tuple[str, ...] = HEAVY, env: dict[str, str] | None = None
) -> set[str]:
    """Run ``code`` in a fresh interpreter; the ``watch`` modules it left loaded."""
    script = textwrap.dedent(code) + textwrap.dedent(f"""
        import json, sys
        print(json.dumps(sorted(m for m in {watch!r} if m in sys.modules)))
    """)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def test_interpreter_itself_loads_none_of_them() -> None:
    # the premise of the other tests: a bare interpreter has none of these
    assert loaded_after("pass") == set()


def test_registering_over_udp_with_md5_needs_no_openssl() -> None:
    loaded = loaded_after("""
        from sipstack.account_config import AccountConfig
        from sipstack.digest import Algorithm, CredentialInfo
        from sipstack.loop import Loop
        from sipstack.useragent import UserAgent

        loop = Loop()
        ua = UserAgent(loop)
        ua.transport_create("udp", "127.0.0.1", 0)
        ua.transport_create("tcp", "127.0.0.1", 0)
        ua.acc_add(AccountConfig(id="<sip:u@127.0.0.1>", reg_uri="sip:127.0.0.1:9",
                                 cred_info=[CredentialInfo("*", "u", "p")], ka_interval=0))
        loop.run_until(lambda: False, 0.05)
        # RFC 2617 3.5 example HA1 input, MD5 and SHA-256 from CPython's own modules
        assert Algorithm.MD5.hexdigest(b"Mufasa:testrealm@host.com:Circle Of Life") == (
            "939e7578ed9e3c518a452acee763bce9")
        assert Algorithm.SHA_256.hexdigest(b"abc").startswith("ba7816bf")
        ua.shutdown(timeout=0)
        loop.close()
    """)
    assert loaded == set()


def test_tls_still_loads_ssl_when_asked_for() -> None:
    loaded = loaded_after("""
        from sipstack.tls import client_context
        from sipstack.loop import Loop
        from sipstack.useragent import UserAgent

        loop = Loop()
        ua = UserAgent(loop)
        ua.transport_create("tls", "127.0.0.1", 0, tls_client=client_context(verify=False))
        ua.shutdown(timeout=0)
        loop.close()
    """)
    assert "ssl" in loaded


def test_srtp_loads_libsrtp_only_for_a_context() -> None:
    assert loaded_after("import sipstack.srtp, sipstack.offer_answer") == set()
    loaded = loaded_after("""
        from sipstack.srtp import SrtpContext, generate_crypto
        local, remote = generate_crypto(), generate_crypto()
        rtp = bytes([0x80, 0]) + bytes(10) + b"payload"
        protected = SrtpContext(local, remote).protect_rtp(rtp)
        assert SrtpContext(remote, local).unprotect_rtp(protected) == rtp
    """)
    assert {"pylibsrtp", "secrets"} <= loaded


def test_unknown_srtp_failure_still_maps_to_srtp_error() -> None:
    # the lazily named pylibsrtp.Error still becomes our SrtpError
    loaded = loaded_after("""
        from sipstack.srtp import SrtpContext, SrtpError, generate_crypto
        local, remote = generate_crypto(), generate_crypto()
        packet = SrtpContext(local, remote).protect_rtp(bytes([0x80, 0]) + bytes(10) + b"x")
        try:
            SrtpContext(local, generate_crypto()).unprotect_rtp(packet)  # wrong key
        except SrtpError:
            pass
        else:
            raise AssertionError("a packet under the wrong key was accepted")
    """)
    assert "pylibsrtp" in loaded


def test_presence_parsing_loads_xml_only_for_a_body() -> None:
    assert loaded_after("import sipstack.pidf, sipstack.presence_notifier") == set()
    loaded = loaded_after("""
        from sipstack.pidf import PresenceStatus, build_status, parse_pidf
        body = build_status("sip:a@example.com", PresenceStatus(online=True), "t1")
        assert parse_pidf(body).basic_open is True
    """)
    assert "pyexpat" in loaded


def test_config_suggests_close_keys_with_difflib_only_on_a_typo(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.toml", tmp_path / "bad.toml"
    good.write_text('hal = "sim"\n[sip]\nudp = "127.0.0.1:5060"\n')
    bad.write_text('hal = "sim"\n[sip]\nudpp = "127.0.0.1:5060"\n')
    loaded = loaded_after(f"""
        from firmware.config import load_config
        load_config({str(good)!r})
    """)
    assert loaded == set()
    loaded = loaded_after(f"""
        from firmware.config import ConfigError, load_config
        try:
            load_config({str(bad)!r})
        except ConfigError as exc:
            assert any("did you mean 'udp'" in str(p) for p in exc.problems), exc.problems
        else:
            raise AssertionError("a misspelt key was accepted")
    """)
    assert "difflib" in loaded


def test_nameserver_addresses_parse_without_idna() -> None:
    loaded = loaded_after("""
        from sipstack.loop import Loop
        from sipstack.resolver import Resolver
        loop = Loop()
        Resolver(loop, nameservers=["127.0.0.1", "::1"])
        loop.close()
    """)
    assert loaded == set()


#: What argparse's help formatter pulls in through shutil (about 0.6 MiB).
ARCHIVERS = ("shutil", "bz2", "lzma", "zlib")


def test_intercom_run_parses_its_arguments_without_shutil() -> None:
    assert loaded_after("pass", ARCHIVERS) == set()  # the premise
    loaded = loaded_after(
        """
        from firmware.cli_args import build_parser
        args = build_parser().parse_args(["run", "--config", "x.toml", "--hal", "sim"])
        assert args.command == "run" and args.hal == "sim"
        """,
        ARCHIVERS,
    )
    assert loaded == set()


#: The command-line parser's own imports; ``intercom run`` drops them once parsed.
PARSER = ("argparse", "gettext", "locale", "firmware.cli_args")


def test_intercom_run_unloads_the_parser_once_its_arguments_are_read() -> None:
    assert loaded_after("pass", PARSER) == set()  # the premise
    run = loaded_after(
        """
        from firmware.cli import parse_command_line
        args = parse_command_line(["run", "--hal", "sim", "--port", "5070"])
        assert (args.command, args.hal, args.port, args.config) == ("run", "sim", 5070, None)
        """,
        PARSER,
    )
    assert run == set()
    # the short-lived commands keep it: they exit right away
    status = loaded_after(
        """
        from firmware.cli import parse_command_line
        assert parse_command_line(["status", "--json"]).json is True
        """,
        PARSER,
    )
    assert status == set(PARSER)


@pytest.mark.parametrize("columns", [None, "60", "132", "0", "junk"])
def test_help_is_formatted_as_stock_argparse_would(
    columns: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same text, wrapped at the same width, as argparse.HelpFormatter gives
    # (under pytest stdout is not a terminal: $COLUMNS, else 80)
    import argparse

    from firmware.cli_args import build_parser

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    parser = build_parser()
    subparsers = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    ).choices
    for each in (parser, *subparsers.values()):
        ours = each.format_help()
        each.formatter_class = argparse.HelpFormatter
        assert each.format_help() == ours


# -- the first REGISTER: what it does not need (issue 6) -----------------------------------

#: Presence (RFC 3856 notifier, RFC 3903 publisher, PIDF): made on first use.
PRESENCE = ("sipstack.presence_notifier", "sipstack.publisher", "sipstack.pidf")


def test_first_register_needs_no_presence_and_no_header_section_regex() -> None:
    # a registrar socket that only receives: the REGISTER goes out, no answer is parsed
    loaded = loaded_after(
        """
        import socket
        from sipstack import _validate
        from sipstack.account_config import AccountConfig
        from sipstack.digest import CredentialInfo
        from sipstack.loop import Loop
        from sipstack.useragent import UserAgent

        registrar = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        registrar.bind(("127.0.0.1", 0))
        registrar.settimeout(10)
        loop = Loop()
        ua = UserAgent(loop)
        ua.transport_create("udp", "127.0.0.1", 0)
        ua.acc_add(AccountConfig(
            id="<sip:u@127.0.0.1>", reg_uri=f"sip:127.0.0.1:{registrar.getsockname()[1]}",
            cred_info=[CredentialInfo("*", "u", "p")], ka_interval=0))
        loop.run_once(max_wait=0.5)
        assert registrar.recv(65536).startswith(b"REGISTER sip:127.0.0.1")
        # HEAD_RE is compiled by the first parse, not by import (see _grammar.head_re)
        assert _validate.HEAD_RE._compiled is None
        """,
        PRESENCE,
    )
    assert loaded == set()


def test_header_section_regex_compiles_on_first_parse_with_its_groups() -> None:
    # the import-time assertion _validate no longer makes (it would compile HEAD_RE)
    from sipstack._grammar import HEAD_PIECES
    from sipstack._validate import HEAD_RE
    from sipstack.message import parse_message

    msg = parse_message(
        b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK1\r\n"
        b"From: <sip:u@127.0.0.1>;tag=a\r\nTo: <sip:u@127.0.0.1>;tag=b\r\n"
        b"Call-ID: c1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
    )
    assert msg.call_id == "c1"
    assert HEAD_RE.compiled.groups == sum(n for _, n in HEAD_PIECES.values()) == 14


def test_status_set_before_any_subscribe_is_in_the_first_notify() -> None:
    # the notifier is made by the first SUBSCRIBE: it must start from the account's
    # current status (RFC 3856 6.6.2: the first NOTIFY carries the current state)
    loaded = loaded_after(
        """
        import socket
        from sipstack.account_config import AccountConfig, RpidElement
        from sipstack.loop import Loop
        from sipstack.message import Request, Response, make_response, parse_message
        from sipstack.useragent import UserAgent

        loop = Loop()
        ua = UserAgent(loop)
        tid = ua.transport_create("udp", "127.0.0.1", 0)
        acc = ua.acc_add(AccountConfig(id="<sip:door@127.0.0.1>"))
        ua.acc_set_online_status2(acc, True, RpidElement(activity="busy", note="At the door"))
        import sys
        assert "sipstack.presence_notifier" not in sys.modules  # nobody subscribed yet
        port = ua.endpoint.transports.info(tid).local_port
        watcher = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        watcher.bind(("127.0.0.1", 0))
        watcher.setblocking(False)
        wport = watcher.getsockname()[1]
        watcher.sendto((
            f"SUBSCRIBE sip:door@127.0.0.1:{port} SIP/2.0\\r\\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{wport};branch=z9hG4bKsub1;rport\\r\\n"
            "Max-Forwards: 70\\r\\nFrom: <sip:watcher@127.0.0.1>;tag=w1\\r\\n"
            "To: <sip:door@127.0.0.1>\\r\\nCall-ID: sub-1@test\\r\\nCSeq: 1 SUBSCRIBE\\r\\n"
            f"Contact: <sip:watcher@127.0.0.1:{wport}>\\r\\nEvent: presence\\r\\n"
            "Accept: application/pidf+xml\\r\\nExpires: 600\\r\\nContent-Length: 0\\r\\n\\r\\n"
        ).encode(), ("127.0.0.1", port))
        notify = None
        for _ in range(200):
            loop.run_once(max_wait=0.02)
            try:
                msg = parse_message(watcher.recv(65535))
            except BlockingIOError:
                continue
            if isinstance(msg, Request) and msg.method == "NOTIFY":
                notify = msg
                break
        assert notify is not None, "no NOTIFY"
        body = notify.body.decode()
        assert "busy" in body and "At the door" in body and "open" in body, body
        ua.shutdown(timeout=0)
        loop.close()
        """,
        PRESENCE,
    )
    assert "sipstack.presence_notifier" in loaded


#: Modules the firmware's way to its first REGISTER does without (issue 6): DNS
#: (the registrar is an IP address), presence, the GPIO board glue and debouncer
#: (the config loader needs only ``hal.gpio_config``), the call layer.
NOT_BEFORE_REGISTER = (
    *PRESENCE,
    "sipstack.dns_wire",
    "sipstack.dns_cache",
    "sipstack.locate",
    "sipstack.resolver",
    "hal.gpio",
    "hal.debounce",
    "sipstack.calls",
    "sipstack.sdp",
    "sipstack.dialog",
    "firmware.behaviour",
)


def test_firmware_sends_its_first_register_without_dns_presence_gpio_or_calls(
    tmp_path: Path,
) -> None:
    config = tmp_path / "intercom.toml"
    loaded = loaded_after(
        f"""
        import pathlib, socket
        registrar = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        registrar.bind(("127.0.0.1", 0))
        registrar.settimeout(10)
        pathlib.Path({str(config)!r}).write_text(
            'hal = "sim"\\n[sip]\\nudp = "127.0.0.1:0"\\ntcp = ""\\n'
            '[[accounts]]\\nid = "<sip:u0@127.0.0.1>"\\n'
            f'reg_uri = "sip:127.0.0.1:{{registrar.getsockname()[1]}}"\\nka_interval = 0\\n'
            '[[accounts.cred_info]]\\nrealm = "*"\\nusername = "u0"\\ndata = "p0"\\n'
        )
        from firmware.app import App
        from firmware.config import load_config

        app = App(load_config({str(config)!r}), heartbeat_interval=0)
        app.start()
        app.loop.run_once(max_wait=0.5)
        assert registrar.recv(65536).startswith(b"REGISTER sip:127.0.0.1")
        """,
        NOT_BEFORE_REGISTER,
    )
    assert loaded == set()
