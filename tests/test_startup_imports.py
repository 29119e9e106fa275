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
        from firmware.cli import build_parser
        args = build_parser().parse_args(["run", "--config", "x.toml", "--hal", "sim"])
        assert args.command == "run" and args.hal == "sim"
        """,
        ARCHIVERS,
    )
    assert loaded == set()


@pytest.mark.parametrize("columns", [None, "60", "132", "0", "junk"])
def test_help_is_formatted_as_stock_argparse_would(
    columns: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the same text, wrapped at the same width, as argparse.HelpFormatter gives
    # (under pytest stdout is not a terminal: $COLUMNS, else 80)
    import argparse

    from firmware.cli import build_parser

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
