"""The ``intercom`` command.

``intercom run`` starts the SIP user agent in the foreground (systemd runs
exactly this): UDP and TCP transports on port 5060, or the next free port,
and one local (userless) account anyone on the network can call or message.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

from sipstack.account_events import (
    IncomingMessage,
    IncomingSubscribe,
    MessageStatus,
    RegStateChanged,
    SubscriptionEnded,
    UaEvent,
)
from sipstack.errors import TransportError
from sipstack.loop import Loop
from sipstack.resolver import Resolver
from sipstack.useragent import UserAgent

__all__ = ["main"]

log = logging.getLogger("intercom")


def _describe(event: UaEvent) -> str:
    if isinstance(event, RegStateChanged):
        return (
            f"account {event.acc_id}: registration {event.state} "
            f"({event.status} {event.reason}) {event.note}"
        )
    if isinstance(event, IncomingMessage):
        text = event.body.decode("utf-8", "replace")
        return f"account {event.acc_id}: message from {event.from_uri}: {text}"
    if isinstance(event, MessageStatus):
        return f"account {event.acc_id}: message to {event.to_uri}: {event.status} {event.reason}"
    if isinstance(event, IncomingSubscribe):
        return f"account {event.acc_id}: {event.subscriber} watches our presence"
    if isinstance(event, SubscriptionEnded):
        return f"account {event.acc_id}: {event.subscriber} stopped watching ({event.reason})"
    return repr(event)


def _bind_first_free(ua: UserAgent, host: str, first_port: int, tries: int = 20) -> int:
    """Bind UDP and TCP on the first port where both are free; returns the port."""
    for port in range(first_port, first_port + tries):
        try:
            ua.transport_create("udp", host, port)
        except TransportError:
            continue
        try:
            ua.transport_create("tcp", host, port)
        except TransportError:
            # UDP is bound on this port already; keep it and let TCP live elsewhere.
            ua.transport_create("tcp", host, 0)
        return port
    raise SystemExit(f"intercom: no free SIP port in {first_port}..{first_port + tries - 1}")


def run(args: argparse.Namespace) -> int:
    """Run the firmware until SIGINT/SIGTERM; unregister on the way out."""
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    loop = Loop()
    resolver = Resolver(loop)
    ua = UserAgent(loop, resolver=resolver, on_event=lambda e: log.info("%s", _describe(e)))
    port = _bind_first_free(ua, args.host, args.port)
    acc = ua.acc_add_local(0, is_default=True)
    info = ua.acc_get_info(acc)
    print(f"intercom: listening on UDP and TCP port {port}; call or message {info.uri}", flush=True)
    if port != args.port:
        print(f"intercom: port {args.port} was taken, using {port}", flush=True)

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d: shutting down", signum)
        loop.call_soon_threadsafe(loop.stop)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        loop.run()
    finally:
        ua.shutdown()
        loop.close()
    return 0


def config_check(args: argparse.Namespace) -> int:
    """``intercom config check PATH``: print OK or every problem; exit 0 or 1."""
    from firmware.config import ConfigError, load_config

    try:
        config = load_config(args.path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        count = len(exc.problems)
        print(f"{args.path}: {count} problem{'s' if count != 1 else ''}")
        return 1
    relay = "a relay" if config.relay is not None else "no relay"
    print(
        f"OK: {args.path}: {len(config.accounts)} account(s), {len(config.buttons)} button(s), "
        f"{len(config.leds)} LED(s), {relay}, profile {config.intercom.profile}"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``intercom`` console script."""
    parser = argparse.ArgumentParser(prog="intercom", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run", help="run the firmware in the foreground")
    p_run.add_argument("--host", default="0.0.0.0", help="address to listen on")
    p_run.add_argument("--port", type=int, default=5060, help="first SIP port to try")
    p_run.add_argument(
        "--hal",
        choices=["sim", "rpi"],
        default="sim",
        help="hardware backend (only 'sim' is wired up so far)",
    )
    p_run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    p_config = sub.add_parser("config", help="work with the configuration file")
    config_sub = p_config.add_subparsers(dest="config_command", required=True)
    p_check = config_sub.add_parser("check", help="validate a config file without running")
    p_check.add_argument("path", help="the config file, e.g. /etc/intercom/intercom.toml")
    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args)
    if args.command == "config":
        return config_check(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
