"""The firmware App in one process, on loopback: screening, behaviour wiring,
the control socket and graceful shutdown.

A door App (simulated hardware) and a plain user agent playing the flat share
one real loop; the tests turn it with ``run_until`` (bounded by loop time,
never sleeps). Strangers send raw requests from other loopback addresses
(127.0.0.2), which Linux routes like any other source.
"""

from __future__ import annotations

import random
import socket
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from firmware.app import App, Screening, mask_secrets
from firmware.audio_path import DeferredMedia
from firmware.config import load_config
from firmware.control import ControlClient, RemoteError
from sipstack.calls import CallEvent, CallManager, CallStateChanged, IncomingCall
from sipstack.invite_events import InviteState
from sipstack.loop import Loop
from sipstack.useragent import UserAgent
from tests.firmware.conftest import FAST


class Flat:
    """The other phone: a user agent with a local account that answers every call."""

    def __init__(self, loop: Loop) -> None:
        self.events: list[CallEvent] = []
        self.ua = UserAgent(loop, timers=FAST, rng=random.Random(3))
        tid = self.ua.transport_create("udp", "127.0.0.1", 0)
        self.port = self.ua.endpoint.transports.info(tid).local_port
        self.acc = self.ua.acc_add_local(tid)
        self.calls = CallManager(self.ua, on_event=self._on_event)

    def _on_event(self, event: CallEvent) -> None:
        self.events.append(event)
        if isinstance(event, IncomingCall):
            self.calls.call_answer(event.call_id, 200)

    def state(self) -> InviteState | None:
        states = [e.state for e in self.events if isinstance(e, CallStateChanged)]
        return states[-1] if states else None

    def close(self) -> None:
        self.calls.close()
        self.ua.shutdown(timeout=0)


DOOR = """
hal = "sim"

[sip]
udp = "127.0.0.1:0"
tcp = ""

[[accounts]]
local = true

[[buttons]]
name = "bell"
bcm = 17
action = "call"
targets = ["sip:flat@127.0.0.1:{flat_port}"]

[relay]
bcm = 26
pulse_seconds = 2

[intercom]
door_code = "4711"
door_code_from = ["sip:*@127.0.0.1:*"]
"""


def sip_port(app: App) -> int:
    return app.ports["udp"]


def send_raw(loop: Loop, source: str, port: int, method: str = "OPTIONS") -> str | None:
    """Send one request from ``source`` and return the answer (None: no answer in 1 s)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.setblocking(False)
        me = sock.getsockname()[1]
        request = (
            f"{method} sip:door@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:{me};branch=z9hG4bK{uuid.uuid4().hex[:10]}\r\n"
            f"From: <sip:scan@{source}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:door@127.0.0.1>\r\nCall-ID: {uuid.uuid4().hex}\r\n"
            f"CSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:scan@{source}:{me}>\r\nContent-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), ("127.0.0.1", port))
        answers: list[str] = []

        def readable() -> None:
            answers.append(sock.recv(65535).decode(errors="replace"))

        loop.add_reader(sock, readable)
        try:
            loop.run_until(lambda: bool(answers), 1.0)
        finally:
            loop.remove_reader(sock)
        return answers[0] if answers else None


# -- screening -------------------------------------------------------------------------


def test_strangers_get_403_then_are_rate_limited_allowed_peers_get_in(
    loop: Loop, make_app: Callable[..., App]
) -> None:
    app = make_app(DOOR.format(flat_port=5060))
    port = sip_port(app)
    for _ in range(5):
        answer = send_raw(loop, "127.0.0.2", port)
        assert answer is not None and answer.startswith("SIP/2.0 403"), answer
    assert send_raw(loop, "127.0.0.2", port) is None  # the sixth in a minute: dropped
    counts = app.status()["screening"]
    assert (counts["refused"], counts["forbidden"], counts["rate_limited"]) == (6, 5, 1)
    assert counts["last"][-1]["source"].startswith("udp:127.0.0.2:")
    # 127.0.0.1 is allowed (an IP host in door_code_from): OPTIONS is answered normally
    answer = send_raw(loop, "127.0.0.1", port)
    assert answer is not None and answer.startswith("SIP/2.0 200"), answer
    assert app.status()["screening"]["refused"] == 6


def test_drop_mode_answers_nothing(loop: Loop, make_app: Callable[..., App]) -> None:
    app = make_app(DOOR.format(flat_port=5060), screening=Screening(refuse="drop"))
    assert send_raw(loop, "127.0.0.2", sip_port(app), "INVITE") is None
    counts = app.status()["screening"]
    assert (counts["refused"], counts["dropped"], counts["forbidden"]) == (1, 1, 0)
    assert app.status()["calls"] == []


def test_sip_allow_and_refuse_come_from_the_config(
    loop: Loop, make_app: Callable[..., App]
) -> None:
    text = DOOR.format(flat_port=5060).replace(
        'tcp = ""', 'tcp = ""\nallow = ["127.0.0.3"]\nrefuse = "drop"'
    )
    app = make_app(text)
    assert app.screen.settings.refuse == "drop"
    assert send_raw(loop, "127.0.0.2", sip_port(app)) is None  # a stranger: dropped
    answer = send_raw(loop, "127.0.0.3", sip_port(app))  # allowed in [sip]
    assert answer is not None and answer.startswith("SIP/2.0 200"), answer
    counts = app.status()["screening"]
    assert (counts["mode"], counts["refused"], counts["dropped"]) == ("drop", 1, 1)


def test_screening_rejects_bad_mode() -> None:
    with pytest.raises(ValueError, match="403"):
        Screening(refuse="maybe")


# -- the behaviour wired to calls and pins ------------------------------------------------


def test_bell_calls_the_flat_and_the_door_code_opens_the_door(
    loop: Loop, make_app: Callable[..., App], tmp_path: Path
) -> None:
    flat = Flat(loop)
    try:
        app = make_app(DOOR.format(flat_port=flat.port), control_path=str(tmp_path / "c.sock"))
        assert app.press("bell") == "pressed bell"
        assert loop.run_until(lambda: flat.state() is InviteState.CONFIRMED, 3.0), flat.events
        assert loop.run_until(lambda: app.status()["phone"] == "in call", 2.0)
        [call] = app.status()["calls"]
        assert call["direction"] == "outgoing" and call["state"] == "confirmed"
        assert call["codec"] == "PCMU/8000" and call["srtp"] is None
        assert app.board is not None
        assert not app.board.relays["door"].is_on
        # The flat has no RTP (signalling only): the digits go as SIP INFO.
        flat_call = flat.calls.enum_calls()[0]
        flat.calls.call_dial_dtmf(flat_call, "4711")
        assert loop.run_until(lambda: app.relay_pulses == 1, 3.0)
        assert app.board.relays["door"].is_on
        assert app.status()["relays"]["door"] == {"on": True, "pulses": 1}
        app.shutdown()  # graceful: relay released, call ended, socket removed
        assert not app.board.relays["door"].is_on
        assert not (tmp_path / "c.sock").exists()
        assert loop.run_until(lambda: flat.state() is InviteState.DISCONNECTED, 2.0)
    finally:
        flat.close()


def test_a_wrong_code_does_not_open(loop: Loop, make_app: Callable[..., App]) -> None:
    flat = Flat(loop)
    try:
        app = make_app(DOOR.format(flat_port=flat.port))
        app.press("bell")
        assert loop.run_until(lambda: flat.state() is InviteState.CONFIRMED, 3.0)
        flat.calls.call_dial_dtmf(flat.calls.enum_calls()[0], "1234")
        assert loop.run_until(
            lambda: any("wrong door code" in r["message"] for r in app.log_ring.records), 3.0
        )
        assert app.relay_pulses == 0
        assert "1234" not in " ".join(r["message"] for r in app.log_ring.records)
    finally:
        flat.close()


# -- the control socket ------------------------------------------------------------------


def ask(loop: Loop, client: ControlClient, cmd: str, **args: Any) -> Any:
    """Run a blocking client request in a thread while the loop serves it."""
    box: list[Any] = []

    def work() -> None:
        try:
            box.append(client.request(cmd, **args))
        except Exception as exc:
            box.append(exc)
        loop.call_soon_threadsafe(lambda: None)  # wake the loop: the answer is in

    thread = threading.Thread(target=work)
    thread.start()
    assert loop.run_until(lambda: bool(box), 5.0)
    thread.join()
    if isinstance(box[0], Exception):
        raise box[0]
    return box[0]


def test_control_socket_status_press_and_errors(
    loop: Loop, make_app: Callable[..., App], tmp_path: Path
) -> None:
    path = tmp_path / "run" / "control.sock"
    app = make_app(DOOR.format(flat_port=5060), control_path=str(path))
    assert oct(path.stat().st_mode & 0o777) == "0o660"
    client = ControlClient(str(path))
    status = ask(loop, client, "status")
    assert status["hal"] == "sim" and status["phone"] == "idle"
    assert status["accounts"][0]["local"] is True
    with pytest.raises(RemoteError, match="no button named 'doorbell'.*configured: bell"):
        ask(loop, client, "press", name="doorbell")
    with pytest.raises(RemoteError, match="no connected call"):
        ask(loop, client, "dtmf", digits="1")
    with pytest.raises(RemoteError, match="unknown command"):
        ask(loop, client, "reboot")
    result = ask(loop, client, "audio-test", seconds=0.3)
    assert result["mic_peak_dbfs"] == pytest.approx(-13.0, abs=0.5)  # the simulated 1 kHz mic
    assert result["speaker_peak_dbfs"] == pytest.approx(-12.0, abs=0.5)  # the test tone
    checks = ask(loop, client, "doctor")
    assert {c["check"] for c in checks} >= {"config", "audio", "gpio", "clock"}
    assert app.control is not None
    assert loop.run_until(lambda: app.control is not None and app.control.clients == 0, 1.0)


def test_intercom_call_goes_through_the_behaviour(
    loop: Loop, make_app: Callable[..., App], tmp_path: Path
) -> None:
    flat = Flat(loop)
    try:
        text = DOOR.format(flat_port=5060).replace(
            "[intercom]\n",
            '[[leds]]\nname = "status"\nbcm = 22\n\n[intercom]\nmax_call_seconds = 1\n',
        )
        path = tmp_path / "c.sock"
        app = make_app(text, control_path=str(path))
        client = ControlClient(str(path))
        target = f"sip:flat@127.0.0.1:{flat.port}"
        result = ask(loop, client, "call", uri=target)
        assert result["uri"] == target and app.status()["calls"][0]["id"] == result["call"]
        assert loop.run_until(lambda: app.status()["phone"] == "in call", 3.0)
        assert app.leds["status"] == "steady"  # the behaviour knows the call: LED in call
        with pytest.raises(RemoteError, match="the phone is in call; hang up first"):
            ask(loop, client, "call", uri=target)
        # max_call_seconds = 1 ends it, as it would a bell call
        assert loop.run_until(lambda: flat.state() is InviteState.DISCONNECTED, 3.0)
        assert loop.run_until(lambda: app.status()["phone"] == "idle", 1.0)
        assert app.leds["status"] == "heartbeat"
        with pytest.raises(RemoteError, match="no call to hang up"):
            ask(loop, client, "hangup")
        ask(loop, client, "call", uri=target)
        assert app.status()["phone"] != "idle"
        assert ask(loop, client, "hangup").endswith(", now idle)")
        assert loop.run_until(lambda: not app.status()["calls"], 3.0)
    finally:
        flat.close()


def test_a_second_instance_on_the_same_socket_is_refused(
    loop: Loop, make_app: Callable[..., App], tmp_path: Path
) -> None:
    path = str(tmp_path / "c.sock")
    make_app(DOOR.format(flat_port=5060), control_path=path)
    with pytest.raises(OSError, match="another intercom already listens"):
        make_app(DOOR.format(flat_port=5060), control_path=path)


def test_trace_masks_digest_responses_and_passwords() -> None:
    text = (
        "REGISTER sip:pbx SIP/2.0\r\n"
        'Authorization: Digest username="door", realm="pbx", nonce="abc", '
        'uri="sip:pbx", response="6629fae49393a05397450978507c4ef1", algorithm=MD5\r\n'
        "Contact: <sip:door:hunter2@192.168.1.50>;password=hunter2\r\n"
    )
    masked = mask_secrets(text)
    assert "6629fae4" not in masked and "hunter2" not in masked
    assert "response=***," in masked and "sip:door:***@192.168.1.50" in masked
    assert 'username="door"' in masked and 'nonce="abc"' in masked  # the rest stays readable


def test_trace_masks_the_passwords_of_the_config(
    loop: Loop, make_app: Callable[..., App], tmp_path: Path
) -> None:
    account = """
[[accounts]]
id = "sip:door@127.0.0.1"
reg_uri = "sip:127.0.0.1:9"
[[accounts.cred_info]]
username = "door"
data = "{password}"
"""
    app = make_app(
        DOOR.format(flat_port=5060) + account.format(password="hunter2-door"),
        unregister_timeout=0.1,
    )
    assert app.tap is not None
    leaked = "MESSAGE sip:x SIP/2.0\r\nSubject: hunter2-door\r\nX-Pw: sip:door:hunter2-door@h\r\n"
    masked = app.tap.mask(leaked)
    assert "hunter2" not in masked and "Subject: ***" in masked
    Path(app.config.source).write_text(
        DOOR.format(flat_port=5060) + account.format(password="correct-horse")
    )
    app.reload()
    assert "correct-horse" not in app.tap.mask("Subject: correct-horse")


def test_trace_streams_sip_messages_live(
    loop: Loop, make_app: Callable[..., App], tmp_path: Path
) -> None:
    path = str(tmp_path / "c.sock")
    app = make_app(DOOR.format(flat_port=5060), control_path=path)
    items: list[Any] = []

    def follow() -> None:
        for item in ControlClient(path).stream("trace"):
            items.append(item)
            if len(items) == 2:
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    assert loop.run_until(lambda: app.trace_followers == 1, 5.0)  # the stream is subscribed
    answer = send_raw(loop, "127.0.0.1", sip_port(app))
    assert answer is not None and answer.startswith("SIP/2.0 200")
    assert loop.run_until(lambda: len(items) == 2, 5.0)
    thread.join(5.0)
    assert [i["dir"] for i in items] == ["in", "out"]
    assert items[0]["text"].startswith("OPTIONS sip:door@127.0.0.1")
    assert items[1]["text"].startswith("SIP/2.0 200")
    assert loop.run_until(
        lambda: app.trace_followers == 0, 2.0
    )  # unsubscribed when the client left


# -- start-up order (issue 6) -------------------------------------------------------------


class Registrar:
    """A registrar on the test's loop: it challenges each REGISTER once (RFC 3261
    22.4: 401 with a Digest nonce) and binds the authorised retry; ``silent``
    answers nothing. For each REGISTER it notes whether ``app`` was ready (the
    rest of start-up built) when the REGISTER arrived."""

    def __init__(self, loop: Loop, *, silent: bool = False) -> None:
        self.loop = loop
        self.silent = silent
        self.app: App | None = None
        self.ready_at_arrival: list[bool] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        loop.add_reader(self.sock, self._read)

    def _read(self) -> None:
        data, peer = self.sock.recvfrom(65535)
        head, _, _ = data.decode().partition("\r\n\r\n")
        start, *lines = head.split("\r\n")
        if not start.startswith("REGISTER "):
            return
        assert self.app is not None
        self.ready_at_arrival.append(self.app.ready)
        if self.silent:
            return
        headers = [tuple(p.strip() for p in line.split(":", 1)) for line in lines]
        get = {name.lower(): value for name, value in reversed(headers)}
        to = get["to"] if ";tag=" in get["to"] else get["to"] + ";tag=reg"
        reply = [*(f"Via: {v}" for n, v in headers if n.lower() == "via")]
        reply += [f"From: {get['from']}", f"To: {to}", f"Call-ID: {get['call-id']}"]
        reply += [f"CSeq: {get['cseq']}"]
        if "authorization" in get:
            reply = ["SIP/2.0 200 OK", *reply, f"Contact: {get['contact']};expires=600"]
        else:
            reply = ["SIP/2.0 401 Unauthorized", *reply]
            reply.append(f'WWW-Authenticate: Digest realm="test", nonce="{uuid.uuid4().hex}"')
        reply += ["Content-Length: 0", "", ""]
        self.sock.sendto("\r\n".join(reply).encode(), peer)

    def close(self) -> None:
        self.loop.remove_reader(self.sock)
        self.sock.close()


REGISTERING_DOOR = """
hal = "sim"

[sip]
udp = "127.0.0.1:0"
tcp = ""

[[accounts]]
id = "<sip:door@127.0.0.1>"
reg_uri = "sip:127.0.0.1:{registrar_port}"
ka_interval = 0
unreg_timeout = 1
[[accounts.cred_info]]
realm = "*"
username = "door"
data = "d00r"

[[leds]]
name = "status"
bcm = 22

[intercom]
auto_answer = true
trusted = ["sip:127.0.0.1:*"]
"""


def start_app(loop: Loop, tmp_path: Path, registrar: Registrar, **options: Any) -> App:
    """A door registering at ``registrar``, started but (unlike ``make_app``) not waited for."""
    path = tmp_path / "door.toml"
    path.write_text(REGISTERING_DOOR.format(registrar_port=registrar.port))
    app = App(load_config(path), loop=loop, timers=FAST, heartbeat_interval=0, **options)
    registrar.app = app
    app.start()
    return app


def test_the_rest_of_start_up_waits_for_the_registrar_and_media_for_a_call(
    loop: Loop, tmp_path: Path
) -> None:
    registrar = Registrar(loop)
    # rest_after far away: only the registrar's answers can bring the rest forward
    app = start_app(loop, tmp_path, registrar, rest_after=30.0)
    try:
        assert not app.ready and app.calls is None and app.board is None
        assert loop.run_until(lambda: app.ready, 2.0)
        # the REGISTER and its authorised retry both left before calls, audio,
        # GPIO and behaviour were built: the challenge was not kept waiting
        assert registrar.ready_at_arrival == [False, False]
        [account] = app.status()["accounts"]
        assert account["registered"] is True
        # the behaviour was built after the 200 OK and still shows it: idle
        # (registered), not the slow blink of an account still registering
        assert app.status()["led_state"] == "idle"
        assert app.leds["status"] == "heartbeat"
        assert app.calls is not None and app.audio is not None
        assert app.media is None  # no call yet: no RTP stack, no codec libraries
    finally:
        app.shutdown()
        registrar.close()


def test_a_call_before_the_rest_is_built_is_answered_with_media(loop: Loop, tmp_path: Path) -> None:
    registrar = Registrar(loop, silent=True)  # the registrar never answers
    flat = Flat(loop)
    app = start_app(loop, tmp_path, registrar, rest_after=30.0)
    try:
        assert loop.run_until(lambda: bool(registrar.ready_at_arrival), 2.0)
        assert not app.ready and app.calls is None
        # the flat calls the door while the door still waits for its registrar
        flat.calls.call_make_call(flat.acc, f"sip:door@127.0.0.1:{sip_port(app)}")
        assert loop.run_until(lambda: flat.state() is InviteState.CONFIRMED, 3.0), flat.events
        assert app.ready  # the INVITE brought the rest forward, the call layer took it
        assert loop.run_until(
            lambda: [c["state"] for c in app.status()["calls"]] == ["confirmed"], 2.0
        )
        [call] = app.status()["calls"]
        assert call["direction"] == "incoming"
        assert app.media is not None and call["codec"] == "PCMU/8000"  # built for this call
        assert app.status()["led_state"] == "in call"
        flat.calls.call_hangup(flat.calls.enum_calls()[0])
        assert loop.run_until(lambda: not app.status()["calls"], 3.0)
    finally:
        app.shutdown()
        flat.close()
        registrar.close()


def test_without_answers_the_rest_is_built_after_rest_after(loop: Loop, tmp_path: Path) -> None:
    registrar = Registrar(loop, silent=True)
    app = start_app(loop, tmp_path, registrar, rest_after=0.3)
    try:
        began = loop.time()
        assert loop.run_until(lambda: app.ready, 2.0)
        assert loop.time() - began >= 0.25  # waited for the registrar, then gave up waiting
        # no answer yet, as the behaviour sees it (the 408 comes at Timer F)
        assert app.status()["led_state"] == "not registered"
    finally:
        app.shutdown()
        registrar.close()


def test_deferred_media_builds_once_and_only_for_a_call() -> None:
    built: list[object] = []

    class Factory:
        def create_local_media(self, call_id: int) -> str:
            return f"media for {call_id}"

    def build() -> Any:
        built.append(Factory())
        return built[-1]

    media = DeferredMedia(build)
    # before any call: nothing to close, no statistics, DTMF goes by SIP INFO
    media.close(0)
    assert media.rtp_stats(0) is None and media.send_dtmf(0, "1") is False
    assert built == [] and media.factory is None
    assert media.create_local_media(3) == "media for 3"
    assert media.create_local_media(4) == "media for 4"
    assert len(built) == 1 and media.factory is built[0]
