"""The public surface of each package: every exported name resolves, imports stay lazy."""

from __future__ import annotations

import subprocess
import sys

import hal
import sipstack


def test_every_sipstack_export_resolves() -> None:
    for name in sipstack.__all__:
        assert getattr(sipstack, name) is not None, name
    assert sipstack.MAX_ACC == 8
    assert (
        sipstack.parse_message(
            b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1"
            b"\r\nFrom: <sip:c@d>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\n"
            b"CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n"
        ).method
        == "OPTIONS"
    )


def test_every_hal_export_resolves() -> None:
    for name in hal.__all__:
        assert getattr(hal, name) is not None, name


def test_import_sipstack_parser_does_not_pull_in_the_resolver_or_ssl() -> None:
    code = (
        "import sys, sipstack; sipstack.parse_message; "
        "print('sipstack.resolver' in sys.modules, 'ssl' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["False", "False"]


def test_hal_imports_no_sip_code() -> None:
    """The hardware layer stands alone: the only sipstack module it loads is
    ``sipstack.records`` (the dataclass decorator, standard library only)."""
    code = (
        "import sys, hal, hal.sim, hal.gpio, hal.network, hal.voice; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sipstack'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "['sipstack', 'sipstack.records']"
