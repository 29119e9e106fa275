"""What ``intercom status``, ``call``, ``reload`` and friends do in the running firmware.

:class:`ControlCommands` is the handler of the control socket
(:class:`~firmware.control.ControlServer`): one method per command, each
answering through the connection or raising
:class:`~firmware.control.ControlError` with words for the person at the
keyboard. Calls and hang-ups go through the behaviour (so LEDs, tones and
``max_call_seconds`` apply as for a button); ``press`` drives the behaviour as
a button would, on any backend.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from firmware.audio_path import dbfs
from firmware.config import ConfigError
from firmware.control import ControlConnection, ControlError

if TYPE_CHECKING:
    from firmware.app import App
    from sipstack.account_events import MessageStatus

__all__ = ["ControlCommands"]

log = logging.getLogger("intercom")


class ControlCommands:
    """The control socket's commands, carried out on ``app``."""

    def __init__(self, app: App) -> None:
        self.app = app
        self._pending_messages: dict[object, ControlConnection] = {}

    def handle(self, cmd: str, args: dict[str, Any], conn: ControlConnection) -> None:
        """The :class:`~firmware.control.ControlServer` handler."""
        app = self.app
        if not app.ready:
            raise ControlError("the firmware is still starting; try again")
        simple: dict[str, Callable[[dict[str, Any]], object]] = {
            "status": lambda a: app.status(),
            "call": lambda a: self.call(str(a["uri"]), a.get("account")),
            "answer": lambda a: self.button("answer"),
            "hangup": lambda a: self.hangup(),
            "press": lambda a: self.press(str(a["name"])),
            "dtmf": lambda a: self.dtmf(str(a["digits"])),
            "presence": lambda a: self.presence(bool(a["online"]), a.get("note")),
            "reload": lambda a: self.reload(),
        }
        if cmd in simple:
            try:
                result = simple[cmd](args)
            except KeyError as exc:
                raise ControlError(f"{cmd}: missing argument {exc}") from None
            conn.reply(result)
        elif cmd == "log":
            conn.reply(list(app.log_ring.records)[-int(args.get("lines", 200)) :])
        elif cmd == "follow":
            conn.start_stream()
            for item in list(app.log_ring.records)[-int(args.get("lines", 20)) :]:
                conn.push(item)
            _subscribe(app.log_ring.followers, conn)
        elif cmd == "trace":
            assert app.tap is not None
            conn.start_stream()
            _subscribe(app.tap.followers, conn)
        elif cmd == "message":
            self.message(str(args["uri"]), str(args["text"]), conn)
        elif cmd == "audio-test":
            self.audio_test(float(args.get("seconds", 2.0)), conn)
        elif cmd == "doctor":
            app.doctor(conn.reply)
        else:
            raise ControlError(f"unknown command {cmd!r}")

    # -- buttons and calls -----------------------------------------------------------------

    def press(self, name: str) -> str:
        """Press and release button ``name`` as if by hand, on any backend, through
        the behaviour (not the pins: a Pi's inputs cannot be driven from here)."""
        from hal.debounce import ButtonPressed, ButtonReleased  # not before a button is used

        app = self.app
        names = [b.name for b in app.config.buttons]
        if name not in names:
            raise ControlError(
                f"no button named {name!r} (configured: {', '.join(names) or 'none'})"
            )
        now = app.loop.time()
        app.last_buttons.append({"time": time.time(), "button": name, "simulated": True})
        log.info("button %s pressed (simulated)", name)
        app.post(ButtonPressed(name, now))
        app.post(ButtonReleased(name, now, 0.1, False))
        return f"pressed {name}"

    def button(self, action: str) -> str:
        """Press the first button with ``action`` (answer / hangup)."""
        for button in self.app.config.buttons:
            if button.action == action:
                return self.press(button.name)
        raise ControlError(f'no button with action = "{action}" is configured')

    def hangup(self) -> str:
        """``intercom hangup``: what the hang-up button does (cancel calling out,
        end the call, or reject the one ringing), wired or not."""
        from firmware.behaviour import HangupRequested

        behaviour = self.app.behaviour
        assert behaviour is not None
        before = behaviour.state.value
        if before == "idle":
            raise ControlError("no call to hang up")
        self.app.post(HangupRequested())
        return f"hung up (was {before}, now {behaviour.state.value})"

    def call(self, uri: str, account: object = None) -> dict[str, Any]:
        """``intercom call``: dialled by the behaviour, like a bell press (LEDs,
        ringback, ``max_call_seconds``); refused unless the phone is idle."""
        from firmware.behaviour import DialRequested

        app = self.app
        assert app.ua is not None and app.behaviour is not None and app.driver is not None
        acc = app.ua.acc_get_default() if account is None else int(str(account))
        if not app.ua.acc_is_valid(acc):
            raise ControlError(f"no account {acc} (see intercom status)")
        state = app.behaviour.state.value
        placed: list[tuple[int | None, str]] = []
        app.driver.placing = placed
        try:
            app.post(DialRequested(uri, acc))
        finally:
            app.driver.placing = None
        if not placed:
            raise ControlError(f"cannot call now: the phone is {state}; hang up first")
        call_id, reason = placed[0]
        if call_id is None:
            raise ControlError(f"cannot call {uri}: {reason}")
        return {"call": call_id, "account": acc, "uri": uri}

    def dtmf(self, digits: str) -> str:
        """``intercom dtmf``: into the behaviour's call, else the first connected one."""
        calls, behaviour = self.app.calls, self.app.behaviour
        assert calls is not None and behaviour is not None
        call = behaviour.active_call
        if call is None or not calls.call_is_active(call):
            confirmed = [
                c for c in calls.enum_calls() if calls.call_get_info(c).state.value == "confirmed"
            ]
            call = confirmed[0] if confirmed else None
        if call is None:
            raise ControlError("no connected call to send DTMF in")
        try:
            calls.call_dial_dtmf(call, digits)
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        return f"sent {len(digits)} digit(s) in call {call}"

    # -- configuration ---------------------------------------------------------------------

    def reload(self) -> dict[str, Any]:
        """``intercom reload``: the reload's report, or the file's problems as the error."""
        app = self.app
        try:
            return app.reload()
        except ConfigError as exc:
            count = len(exc.problems)
            raise ControlError(
                f"{app.config.source}: {count} problem{'' if count == 1 else 's'}; "
                f"the running config stays in force\n{exc}"
            ) from None
        except ValueError as exc:
            raise ControlError(str(exc)) from None

    # -- messages and presence -------------------------------------------------------------

    def message(self, uri: str, text: str, conn: ControlConnection) -> None:
        """``intercom message``: answered when the far end has answered the MESSAGE."""
        ua = self.app.ua
        assert ua is not None
        token = object()
        self._pending_messages[token] = conn
        try:
            ua.im_send(ua.acc_get_default(), uri, text, token=token)
        except Exception as exc:
            self._pending_messages.pop(token, None)
            raise ControlError(f"cannot send to {uri}: {exc}") from None

    def message_status(self, event: MessageStatus) -> None:
        """The user agent's verdict on a MESSAGE we sent: answer whoever asked."""
        conn = self._pending_messages.pop(event.token, None)
        if conn is not None:
            if event.status < 300:
                conn.reply({"status": event.status, "reason": event.reason})
            else:
                conn.fail(f"message to {event.to_uri} refused: {event.status} {event.reason}")

    def presence(self, online: bool, note: object) -> str:
        """``intercom presence``: on every account."""
        from sipstack.account_config import RpidElement

        ua = self.app.ua
        assert ua is not None
        rpid = RpidElement(note=str(note) if note else None)
        for acc in ua.enum_accs():
            ua.acc_set_online_status2(acc, online, rpid)
        return f"presence {'online' if online else 'offline'} on {len(ua.enum_accs())} account(s)"

    # -- audio -----------------------------------------------------------------------------

    def audio_test(self, seconds: float, conn: ControlConnection) -> None:
        """Play a 1 kHz tone to the speaker for ``seconds``, watch both levels."""
        from firmware.behaviour import ToneKind
        from sipstack.tones import ToneSegment, ToneSpec

        app = self.app
        audio, calls = app.audio, app.calls
        assert audio is not None and calls is not None
        if calls.call_get_count():
            raise ControlError("a call is up: try the audio test when idle")
        seconds = min(max(seconds, 0.2), 10.0)
        peaks = {"mic": 0, "speaker": 0}
        audio.hold += 1
        audio.play(ToneKind.RING, None)  # routes the tone port to the speaker
        audio.tones.play(ToneSpec("test 1 kHz", (ToneSegment((1000,), 1000, -12.0),)))
        end = app.loop.time() + seconds

        def sample() -> None:
            levels = audio.conference.levels(audio.audio_slot)
            peaks["mic"] = max(peaks["mic"], levels.rx)
            peaks["speaker"] = max(peaks["speaker"], levels.tx)
            if app.loop.time() < end and not app.closed:
                app.loop.call_later(0.05, sample)
                return
            audio.hold -= 1
            audio.stop_tone()
            conn.reply(
                {
                    "tone_hz": 1000,
                    "seconds": seconds,
                    "device": audio.device,
                    "speaker_peak_dbfs": dbfs(peaks["speaker"]),
                    "mic_peak_dbfs": dbfs(peaks["mic"]),
                }
            )

        app.loop.call_later(0.05, sample)


def _subscribe(group: list[ControlConnection], conn: ControlConnection) -> None:
    """Stream to ``conn`` until it closes."""
    group.append(conn)

    def gone() -> None:
        if conn in group:
            group.remove(conn)

    conn.on_close = gone
