"""The ``intercom`` command: run the firmware, and look after it over SSH.

``intercom run`` runs the firmware in the foreground (systemd runs exactly
this). Every other command talks to the running firmware over its control
socket (``--control PATH``, else ``$INTERCOM_CONTROL``, else
``/run/intercom/control.sock``)::

    intercom status [--json]          accounts, calls, network, audio, relay, LEDs
    intercom log [-f] [-n N]          recent log lines (-f: follow)
    intercom trace                    SIP messages live, passwords masked
    intercom call URI [--account N]   intercom answer | hangup
    intercom press NAME               a button press, on any backend
    intercom dtmf DIGITS              intercom message URI TEXT
    intercom presence online|offline [--note TEXT]
    intercom audio-test [--seconds S] intercom doctor [--json]
    intercom config check PATH        intercom reload

Exit codes: 0 all well; 1 a problem was found (doctor, a refused command, a
broken file for ``config check`` and ``reload``); 2 usage or, for ``run``, a broken config
file (systemd: ``RestartPreventExitStatus=2``, restarting cannot fix it);
3 the firmware cannot be reached (not running, wrong ``--control``, no permission).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

__all__ = ["main", "EXIT_OK", "EXIT_PROBLEM", "EXIT_USAGE", "EXIT_UNREACHABLE"]

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3


# -- run ----------------------------------------------------------------------------------


def run(args: SimpleNamespace) -> int:
    """Load the config (or the built-in default), build the App, run until a signal."""
    import logging

    from firmware.config import DEFAULT_PATH, ConfigError, default_config, load_config
    from firmware.control import control_path

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    path = args.config
    if path is None and os.path.exists(DEFAULT_PATH):
        path = DEFAULT_PATH
    if path is None:
        config = default_config()
        print(f"intercom: no {DEFAULT_PATH}: running the built-in default", flush=True)
    else:
        try:
            config = load_config(path)
        except ConfigError as exc:
            for problem in exc.problems:
                print(problem, file=sys.stderr)
            count = len(exc.problems)
            print(
                f"intercom: {path}: {count} problem{'s' if count != 1 else ''}; not started",
                file=sys.stderr,
            )
            return EXIT_USAGE
    from firmware.app import App
    from firmware.sdnotify import Notifier

    systemd = Notifier()
    app = App(
        config,
        hal=args.hal,
        watch=args.watch,
        control_path=control_path(args.control),
        bind=(args.host, args.port),
        # systemd's WatchdogSec: ping at half of it from the loop, so a stuck loop
        # gets the service restarted
        heartbeat_interval=systemd.watchdog_interval or 5.0,
    )
    try:
        app.start()
    except OSError as exc:
        print(f"intercom: cannot start: {exc}", file=sys.stderr)
        app.shutdown()
        return EXIT_PROBLEM

    def announce() -> None:
        assert app.ua is not None
        info = app.ua.acc_get_info(app.ua.acc_get_default()) if app.ua.enum_accs() else None
        ports = ", ".join(f"{k.upper()} {v}" for k, v in app.ports.items())
        target = f"; call {info.uri}" if info is not None else ""
        print(f"intercom: listening on {ports}{target}", flush=True)
        if path is None and app.ports.get("udp") != args.port:
            print(f"intercom: port {args.port} was taken, using {app.ports['udp']}", flush=True)

    def ready() -> None:
        announce()
        systemd.ready("running")

    app.on_ready = ready

    def heartbeat() -> None:
        systemd.watchdog()

    app.on_heartbeat = heartbeat
    try:
        return app.run()
    finally:
        systemd.stopping()


def config_check(args: SimpleNamespace) -> int:
    """``intercom config check PATH``: print OK or every problem; exit 0 or 1."""
    from firmware.config import ConfigError, load_config

    try:
        config = load_config(args.path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem)
        count = len(exc.problems)
        print(f"{args.path}: {count} problem{'s' if count != 1 else ''}")
        return EXIT_PROBLEM
    relay = "a relay" if config.relay is not None else "no relay"
    print(
        f"OK: {args.path}: {len(config.accounts)} account(s), {len(config.buttons)} button(s), "
        f"{len(config.leds)} LED(s), {relay}, profile {config.intercom.profile}"
    )
    return EXIT_OK


# -- talking to the firmware ---------------------------------------------------------------


def _client(args: SimpleNamespace, timeout: float = 10.0) -> Any:
    from firmware.control import ControlClient, control_path

    return ControlClient(control_path(args.control), timeout=timeout)


def _show(args: SimpleNamespace, result: Any, human: Callable[[Any], str]) -> None:
    if args.json:
        print(json.dumps(result, indent=2, sort_keys=True))
    else:
        print(human(result))


def _ago(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def format_status(st: dict[str, Any]) -> str:
    """``intercom status`` for a person."""
    lines = [
        f"intercom {st['version']}: {st['phone']} (LED: {st['led_state']}), "
        f"up {_ago(st['uptime'])}",
        f"config {st['config']}, {st['hal']} hardware, ports "
        + ", ".join(f"{k.upper()} {v}" for k, v in st["ports"].items()),
    ]
    error = st.get("config_error")
    if error:
        lines.append(
            f"CONFIG RELOAD FAILED ({error['problems']} problem(s)), the previous config stays "
            "in force:"
        )
        lines += [f"  {line}" for line in error["text"].splitlines()]
    if st.get("restart_needed"):
        lines.append(
            "restart needed to apply: "
            + ", ".join(st["restart_needed"])
            + " (systemctl restart intercom)"
        )
    lines.append("accounts:")
    for acc in st["accounts"]:
        if acc["local"]:
            lines.append(f"  [{acc['id']}] {acc['uri']}: local account (no registration)")
            continue
        if acc["registered"]:
            state = f"registered, renews in {acc['expires']} s"
        else:
            state = acc["state"]
            if acc["last_error"]:
                state += f", last error: {acc['last_error']}"
        lines.append(f"  [{acc['id']}] {acc['uri']}: {state}")
    if st["calls"]:
        lines.append("calls:")
        for call in st["calls"]:
            media = ""
            if call["codec"]:
                media = f", {call['codec']}"
            if call.get("srtp"):
                media += f", SRTP {call['srtp']}"
            if call["loss"] is not None:
                media += f", loss {100 * call['loss']:.1f}%, jitter {call['jitter_ms']} ms"
            lines.append(
                f"  [{call['id']}] {call['direction']} {call['remote']}: {call['state']}, "
                f"{call['duration']} s{media}"
            )
    else:
        lines.append("calls: none")
    net = st["network"]
    if net:
        lines.append(
            f"network: {', '.join(net['addresses']) or 'no address'}; "
            f"default route via {net['default_interface'] or 'nothing'}"
        )
    audio = st["audio"]
    fault = f" (FAULT: {audio['fault']})" if audio["fault"] else ""
    lines.append(f"audio: {audio['device']}, clock {audio['clock']}{fault}")
    relays = ", ".join(
        f"{n} {'ON' if r['on'] else 'off'} ({r['pulses']} pulses)" for n, r in st["relays"].items()
    )
    lines.append(f"relay: {relays or 'none'}")
    leds = ", ".join(f"{n} {p}" for n, p in st["leds"].items())
    lines.append(f"LEDs: {leds or 'none'}")
    scr = st["screening"]
    lines.append(
        f"screening ({scr['mode']}): {scr['refused']} refused ({scr['forbidden']} answered 403, "
        f"{scr['dropped']} dropped, {scr['rate_limited']} rate-limited)"
    )
    for item in scr["last"][-3:]:
        lines.append(f"  last: {item['method']} from {item['source']} ({item['action']})")
    return "\n".join(lines)


def _format_log(item: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(item["time"]))
    return f"{stamp} {item['level'].upper():7} {item['logger']}: {item['message']}"


def _format_trace(item: dict[str, Any]) -> str:
    stamp = time.strftime("%H:%M:%S", time.localtime(item["time"]))
    arrow = "<--" if item["dir"] == "in" else "-->"
    return f"{stamp} {arrow} {item['peer']}\n{item['text'].rstrip()}\n"


_MARK = {"ok": "OK  ", "warn": "WARN", "fail": "FAIL"}


def format_doctor(checks: list[dict[str, str]]) -> str:
    """``intercom doctor`` for a person: one line per check, advice indented."""
    lines = []
    for check in checks:
        lines.append(f"{_MARK.get(check['status'], '?   ')} {check['check']}: {check['message']}")
        if check["advice"] and check["status"] != "ok":
            lines.append(f"     -> {check['advice']}")
    problems = sum(1 for c in checks if c["status"] == "fail")
    warnings = sum(1 for c in checks if c["status"] == "warn")
    lines.append(
        "all good"
        if not problems and not warnings
        else f"{problems} problem(s), {warnings} warning(s)"
    )
    return "\n".join(lines)


def _local_config_check(path: str) -> dict[str, str] | None:
    """Check the file the firmware runs from as it is on disk now (edited since?)."""
    from firmware.config import BUILTIN_SOURCE, ConfigError, load_config

    if path == BUILTIN_SOURCE:
        return None
    try:
        load_config(path)
    except ConfigError as exc:
        first = exc.problems[0]
        readable = first.line is not None or "denied" not in first.found.lower()
        return {
            "check": "config file",
            "status": "fail" if readable else "warn",
            "message": f"{path} as it is now: {len(exc.problems)} problem(s), first: {first}",
            "advice": f"intercom config check {path}"
            if readable
            else "run as root to read it (and its secrets file)",
        }
    return {"check": "config file", "status": "ok", "message": f"{path} is valid", "advice": ""}


def client_command(args: SimpleNamespace) -> int:
    """Every command that talks to the running firmware."""
    from firmware.control import FirmwareUnreachable, RemoteError

    cmd = args.command
    try:
        if cmd == "status":
            _show(args, _client(args).request("status"), format_status)
        elif cmd == "log":
            if args.follow:
                for item in _client(args).stream("follow", lines=args.lines):
                    print(_format_log(item), flush=True)
            else:
                items = _client(args).request("log", lines=args.lines)
                _show(args, items, lambda xs: "\n".join(_format_log(x) for x in xs))
        elif cmd == "trace":
            for item in _client(args).stream("trace"):
                if args.json:
                    print(json.dumps(item), flush=True)
                else:
                    print(_format_trace(item), flush=True)
        elif cmd == "call":
            result = _client(args).request("call", uri=args.uri, account=args.account)
            _show(args, result, lambda r: f"calling {r['uri']} (call {r['call']})")
        elif cmd == "reload":
            _show(args, _client(args).request("reload"), _format_reload)
        elif cmd in ("answer", "hangup"):
            _show(args, _client(args).request(cmd), str)
        elif cmd == "press":
            _show(args, _client(args).request("press", name=args.name), str)
        elif cmd == "dtmf":
            _show(args, _client(args).request("dtmf", digits=args.digits), str)
        elif cmd == "message":
            result = _client(args, timeout=40.0).request("message", uri=args.uri, text=args.text)
            _show(args, result, lambda r: f"delivered ({r['status']} {r['reason']})")
        elif cmd == "presence":
            online = args.state == "online"
            _show(args, _client(args).request("presence", online=online, note=args.note), str)
        elif cmd == "audio-test":
            client = _client(args, timeout=args.seconds + 10)
            result = client.request("audio-test", seconds=args.seconds)
            _show(args, result, _format_audio_test)
            if result["mic_peak_dbfs"] < -60:
                return EXIT_PROBLEM
        elif cmd == "doctor":
            checks: list[dict[str, str]] = _client(args, timeout=15.0).request("doctor")
            status = _client(args).request("status")
            local = _local_config_check(status["config"])
            if local is not None:
                checks.insert(0, local)
            _show(args, checks, format_doctor)
            return EXIT_PROBLEM if any(c["status"] == "fail" for c in checks) else EXIT_OK
    except FirmwareUnreachable as exc:
        print(f"intercom: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except RemoteError as exc:
        print(f"intercom {cmd}: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_OK


def _format_reload(r: dict[str, Any]) -> str:
    changes = ", ".join(f"{n} {what}" for what, n in r["accounts"].items())
    lines = [f"reloaded {r['config']}: accounts {changes}"]
    if r["restart_needed"]:
        lines.append(
            "not applied until a restart (systemctl restart intercom): "
            + ", ".join(r["restart_needed"])
        )
    return "\n".join(lines)


def _format_audio_test(r: dict[str, Any]) -> str:
    verdict = (
        "the microphone hears nothing: check its wiring and the capture device"
        if r["mic_peak_dbfs"] < -60
        else "both directions show signal"
    )
    return (
        f"played {r['tone_hz']} Hz for {r['seconds']:g} s on {r['device']}\n"
        f"speaker peak {r['speaker_peak_dbfs']} dBFS, microphone peak {r['mic_peak_dbfs']} dBFS\n"
        f"{verdict}"
    )


def parse_command_line(argv: Sequence[str] | None = None) -> SimpleNamespace:
    """The parsed command line; for ``run``, argparse is unloaded again.

    ``intercom run`` lives for months and needs its arguments for a millisecond:
    the parser and what it imports (argparse, gettext, locale: about 0.35 MiB of
    a Pi Zero's memory, docs/benchmarks.md) are dropped from ``sys.modules`` once
    the result is copied into a plain namespace, so nothing keeps them alive.
    Modules that were loaded before parsing stay.
    """
    before = set(sys.modules)
    from firmware.cli_args import build_parser

    args = SimpleNamespace(**vars(build_parser().parse_args(argv)))
    if args.command == "run":
        for name in ("firmware.cli_args", "argparse", "gettext", "locale"):
            if name not in before:
                sys.modules.pop(name, None)
        # a module is a reference cycle (its functions hold its dict): collect now,
        # so the imports that follow reuse the memory
        import gc

        gc.collect()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``intercom`` console script."""
    args = parse_command_line(argv)
    if args.command == "run":
        return run(args)
    if args.command == "config":
        return config_check(args)
    return client_command(args)


if __name__ == "__main__":
    sys.exit(main())
