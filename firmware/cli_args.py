"""The ``intercom`` command line: the argparse parser of every subcommand.

A module of its own so that ``intercom run`` can drop it, and argparse with it,
once its arguments are read (:func:`firmware.cli.parse_command_line`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["build_parser"]


# -- the parser --------------------------------------------------------------------------


def _terminal_columns() -> int:
    """``shutil.get_terminal_size().columns``, without importing shutil.

    argparse's help formatter asks shutil for the width, and shutil imports
    bz2, lzma and zlib: about 0.6 MiB that ``intercom run`` would carry for
    its whole life, since argparse builds a formatter for every
    ``add_argument``. Same rules: ``$COLUMNS`` if positive, else stdout's
    terminal, else 80.
    """
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        stdout = sys.__stdout__  # None under pythonw-like embedding
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns if stdout else 0
        except (AttributeError, ValueError, OSError):  # no fileno, closed, not a terminal
            columns = 0
    return columns or 80


class _HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter with the width worked out by :func:`_terminal_columns`."""

    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        if width is None:
            width = _terminal_columns() - 2  # as argparse does with shutil's answer
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser using :class:`_HelpFormatter`; its subparsers are of
    this class too (argparse makes them of the parent's class)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The ``intercom`` argument parser (exits 2 on usage errors, as argparse does)."""
    parser = _Parser(
        prog="intercom",
        description="SIP door intercom / desk phone firmware",
        epilog="exit codes: 0 ok, 1 problem found, 2 usage or broken config, "
        "3 cannot reach the firmware",
    )
    common = _Parser(add_help=False)
    common.add_argument(
        "--control",
        metavar="PATH",
        help="control socket (default: $INTERCOM_CONTROL or /run/intercom/control.sock)",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)

    p_run = sub.add_parser("run", parents=[common], help="run the firmware in the foreground")
    p_run.add_argument("--config", metavar="PATH", help="default /etc/intercom/intercom.toml")
    p_run.add_argument("--hal", choices=["sim", "rpi"], help="hardware (default: the config's)")
    p_run.add_argument(
        "--watch",
        choices=["auto", "kernel", "sim"],
        help="network watcher (default: the config's [network] watch)",
    )
    p_run.add_argument("--host", default="0.0.0.0", help="built-in default: address to listen on")
    p_run.add_argument("--port", type=int, default=5060, help="built-in default: first SIP port")
    p_run.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    p_config = sub.add_parser("config", help="work with the configuration file")
    config_sub = p_config.add_subparsers(dest="config_command", required=True)
    p_check = config_sub.add_parser("check", help="validate a config file without running")
    p_check.add_argument("path", help="the config file, e.g. /etc/intercom/intercom.toml")

    sub.add_parser("status", parents=[common], help="what the device thinks, at a glance")
    sub.add_parser(
        "reload",
        parents=[common],
        help="read the config file again and apply it (a broken file changes nothing)",
    )
    p_log = sub.add_parser("log", parents=[common], help="recent log lines")
    p_log.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p_log.add_argument("-n", "--lines", type=int, default=200, help="how many lines (200)")
    sub.add_parser("trace", parents=[common], help="SIP messages live (passwords masked)")
    p_call = sub.add_parser("call", parents=[common], help="place a call")
    p_call.add_argument("uri", help="sip:someone@pbx.example.com")
    p_call.add_argument("--account", type=int, help="account id (see intercom status)")
    sub.add_parser("answer", parents=[common], help="answer the ringing call")
    sub.add_parser("hangup", parents=[common], help="end the call")
    p_press = sub.add_parser("press", parents=[common], help="press a button (any backend)")
    p_press.add_argument("name", help="the button's name in intercom.toml")
    p_dtmf = sub.add_parser("dtmf", parents=[common], help="send DTMF digits in the call")
    p_dtmf.add_argument("digits", help="0-9 * # A-D")
    p_msg = sub.add_parser("message", parents=[common], help="send a SIP MESSAGE")
    p_msg.add_argument("uri")
    p_msg.add_argument("text")
    p_pres = sub.add_parser("presence", parents=[common], help="set presence on every account")
    p_pres.add_argument("state", choices=["online", "offline"])
    p_pres.add_argument("--note", help="free text shown to watchers")
    p_audio = sub.add_parser("audio-test", parents=[common], help="play a tone, measure levels")
    p_audio.add_argument("--seconds", type=float, default=2.0)
    sub.add_parser("doctor", parents=[common], help="check everything, advise in plain words")
    return parser
