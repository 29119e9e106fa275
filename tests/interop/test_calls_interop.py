"""Calls (issue 4, signalling) against SIPp, Kamailio and baresip on 127.0.0.1.

Each SIPp scenario checks what it receives (our SDP directions with
``check_it``) and exits 0 only when the whole dialog went as written, so the
exit code is the peer's verdict; our side checks its own call events. Timers
are real (the peers run on the wall clock), with a short T1.
"""

from __future__ import annotations

import math
import random
import shutil
import socket
import struct
import uuid
import wave
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sipstack.account_config import AccountConfig
from sipstack.account_events import RegStateChanged, UaEvent
from sipstack.calls import (
    CallEvent,
    CallManager,
    CallMediaState,
    CallStateChanged,
    IncomingCall,
    MediaStatus,
)
from sipstack.digest import CredentialInfo
from sipstack.invite_events import InviteState
from sipstack.loop import Loop
from sipstack.sdp import Direction, parse_sdp
from sipstack.timers import TimerConfig
from sipstack.useragent import UserAgent

from .peers import PortAllocator
from .peers.process import ManagedProcess, PeerStartError, wait_until
from .peers.sipp import port_bound

pytestmark = pytest.mark.interop

S = InviteState
FAST = TimerConfig(t1=0.1, t2=0.8, t4=1.0)


class Phone:
    """A user agent with a CallManager; answers every call when ``auto_answer``."""

    def __init__(self, loop: Loop, *, auto_answer: bool = False) -> None:
        self.loop = loop
        self.auto_answer = auto_answer
        self.events: list[CallEvent] = []
        self.ua_events: list[UaEvent] = []
        self.ua = UserAgent(loop, on_event=self.ua_events.append, timers=FAST, rng=random.Random(7))
        self.udp = self.ua.transport_create("udp", "127.0.0.1", 0)
        self.port = self.ua.endpoint.transports.info(self.udp).local_port
        self.local_acc = self.ua.acc_add_local(self.udp)
        self.calls = CallManager(self.ua, on_event=self._on_event)

    def _on_event(self, event: CallEvent) -> None:
        self.events.append(event)
        if self.auto_answer and isinstance(event, IncomingCall):
            self.calls.call_answer(event.call_id, 200)

    def states(self, call_id: int) -> list[InviteState]:
        return [
            e.state for e in self.events if isinstance(e, CallStateChanged) and e.call_id == call_id
        ]

    def state(self, call_id: int) -> InviteState | None:
        states = self.states(call_id)
        return states[-1] if states else None

    def last_change(self, call_id: int) -> CallStateChanged:
        found = [e for e in self.events if isinstance(e, CallStateChanged) and e.call_id == call_id]
        return found[-1]

    def media(self, call_id: int) -> list[MediaStatus]:
        return [
            e.status for e in self.events if isinstance(e, CallMediaState) and e.call_id == call_id
        ]

    def incoming(self) -> list[IncomingCall]:
        return [e for e in self.events if isinstance(e, IncomingCall)]

    def registered(self, acc: int) -> bool:
        evs = [e for e in self.ua_events if isinstance(e, RegStateChanged) and e.acc_id == acc]
        return bool(evs) and evs[-1].is_registered

    def close(self) -> None:
        self.calls.hangup_all()
        self.loop.run_until(lambda: self.calls.call_get_count() == 0, 1.0)
        self.calls.close()
        self.ua.shutdown(timeout=1.0)


@pytest.fixture
def phones(loop: Loop) -> Iterator[Callable[..., Phone]]:
    made: list[Phone] = []

    def make(**options: Any) -> Phone:
        phone = Phone(loop, **options)
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.close()


def direction(sdp: bytes | None) -> Direction:
    assert sdp is not None
    description = parse_sdp(sdp)
    return description.direction_for(description.media[0])


def register_contact(kam: Any, user: str, contact_port: int) -> None:
    """Bind ``user`` at Kamailio (no auth) to a contact on 127.0.0.1 (SIPp's port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3.0)
        local = sock.getsockname()[1]
        tag, call_id = uuid.uuid4().hex[:8], uuid.uuid4().hex
        request = (
            f"REGISTER sip:{kam.host}:{kam.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{uuid.uuid4().hex[:12]}\r\n"
            f"From: <sip:{user}@test.local>;tag={tag}\r\n"
            f"To: <sip:{user}@test.local>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:{user}@127.0.0.1:{contact_port}>\r\nExpires: 300\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (kam.host, kam.port))
        reply = sock.recv(65535).decode(errors="replace")
        assert reply.startswith("SIP/2.0 200"), reply


def via_kamailio(phone: Phone, kam: Any, user: str, password: str | None = None) -> int:
    """An account ``user@test.local`` using Kamailio as outbound proxy (and registrar
    when it has a password)."""
    creds = [CredentialInfo("*", user, password)] if password is not None else []
    config = AccountConfig(
        id=f"<sip:{user}@test.local>",
        reg_uri=kam.uri() if password is not None else "",
        proxy=[kam.uri()],
        cred_info=creds,
        ka_interval=0,
    )
    acc = phone.ua.acc_add(config)
    if password is not None:
        assert phone.loop.run_until(lambda: phone.registered(acc), 5), phone.ua_events
    return acc


# -- SIPp ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["direct", "kamailio"])
def test_sipp_calls_us_holds_and_hangs_up(
    loop: Loop, phones: Callable[..., Phone], sipp: Any, kamailio_server: Any, path: str
) -> None:
    phone = phones(auto_answer=True)
    if path == "direct":
        run = sipp("uac_call_hold_bye", remote=("127.0.0.1", phone.port))
    else:
        kam = kamailio_server({"bob": "b0b"})
        via_kamailio(phone, kam, "bob", "b0b")
        run = sipp("uac_call_hold_bye", remote=(kam.host, kam.port), service="bob")
    assert loop.run_until(lambda: run.returncode is not None, 20), run.describe()
    assert run.returncode == 0, run.describe()
    call = phone.incoming()[0].call_id
    assert phone.states(call) == [S.INCOMING, S.CONNECTING, S.CONFIRMED, S.DISCONNECTED]
    assert phone.media(call) == [MediaStatus.ACTIVE, MediaStatus.REMOTE_HOLD, MediaStatus.ACTIVE]
    assert phone.last_change(call).code == 200  # the peer's BYE
    if path == "kamailio":
        # loose routing: SIPp's in-dialog requests came through the proxy
        assert any("Record-Route" in m.text for m in run.received("200"))


def _we_call(phone: Phone, kam: Any, run: Any, path: str) -> int:
    if path == "direct":
        return phone.calls.call_make_call(phone.local_acc, run.uri())
    register_contact(kam, "sipp", run.port)
    acc = via_kamailio(phone, kam, "alice")
    return phone.calls.call_make_call(acc, "sip:sipp@test.local")


@pytest.mark.parametrize("path", ["direct", "kamailio"])
def test_we_call_sipp_hold_unhold_and_hang_up(
    loop: Loop, phones: Callable[..., Phone], sipp: Any, kamailio_server: Any, path: str
) -> None:
    phone = phones()
    kam = kamailio_server() if path == "kamailio" else None
    run = sipp("uas_call_hold_bye", render={"hold_ms": 300})
    call = _we_call(phone, kam, run, path)
    assert loop.run_until(lambda: phone.state(call) is S.CONFIRMED, 10), run.describe()
    assert S.EARLY in phone.states(call)  # the 180
    assert phone.calls.call_get_info(call).codec == "PCMU/8000"
    phone.calls.call_set_hold(call)
    assert loop.run_until(lambda: phone.media(call)[-1] is MediaStatus.LOCAL_HOLD, 5)
    info = phone.calls.call_get_info(call)
    assert direction(info.local_sdp) is Direction.SENDONLY
    assert direction(info.remote_sdp) is Direction.RECVONLY
    phone.calls.call_reinvite(call)
    assert loop.run_until(lambda: phone.media(call)[-1] is MediaStatus.ACTIVE, 5)
    assert direction(phone.calls.call_get_info(call).local_sdp) is Direction.SENDRECV
    phone.calls.call_hangup(call)
    assert loop.run_until(lambda: phone.state(call) is S.DISCONNECTED, 5)
    assert loop.run_until(lambda: run.returncode is not None, 10)
    assert run.returncode == 0, run.describe()


@pytest.mark.parametrize("path", ["direct", "kamailio"])
def test_sipp_hangs_up_our_call(
    loop: Loop, phones: Callable[..., Phone], sipp: Any, kamailio_server: Any, path: str
) -> None:
    phone = phones()
    kam = kamailio_server() if path == "kamailio" else None
    run = sipp("uas_call_bye_from_peer")
    call = _we_call(phone, kam, run, path)
    assert loop.run_until(lambda: phone.state(call) is S.DISCONNECTED, 10), run.describe()
    assert S.CONFIRMED in phone.states(call)
    assert phone.last_change(call).code == 200
    assert loop.run_until(lambda: run.returncode is not None, 10)
    assert run.returncode == 0, run.describe()


@pytest.mark.parametrize("path", ["direct", "kamailio"])
def test_cancel_before_answer_sipp(
    loop: Loop, phones: Callable[..., Phone], sipp: Any, kamailio_server: Any, path: str
) -> None:
    phone = phones()
    kam = kamailio_server() if path == "kamailio" else None
    run = sipp("uas_call_ring_cancel", render={"hold_ms": 300})
    call = _we_call(phone, kam, run, path)
    assert loop.run_until(lambda: phone.state(call) is S.EARLY, 10), run.describe()
    phone.calls.call_hangup(call)
    assert loop.run_until(lambda: phone.state(call) is S.DISCONNECTED, 10)
    assert phone.last_change(call).code == 487
    assert S.CONFIRMED not in phone.states(call)
    assert loop.run_until(lambda: run.returncode is not None, 10)
    assert run.returncode == 0, run.describe()


# -- digest auth on INVITE through Kamailio ---------------------------------------------


@pytest.mark.parametrize("password", ["a1ice", "wrong"])
def test_invite_challenged_by_kamailio(
    loop: Loop, phones: Callable[..., Phone], kamailio_server: Any, password: str
) -> None:
    """With challenge_requests Kamailio answers an initial INVITE 407; the call goes
    through with the right password and fails with the wrong one."""
    kam = kamailio_server({"alice": "a1ice", "bob": "b0b"}, challenge_requests=True)
    bob = phones(auto_answer=True)
    via_kamailio(bob, kam, "bob", "b0b")
    alice = phones()
    acc = alice.ua.acc_add(
        AccountConfig(
            id="<sip:alice@test.local>",
            proxy=[kam.uri()],
            cred_info=[CredentialInfo("*", "alice", password)],
            ka_interval=0,
        )
    )
    call = alice.calls.call_make_call(acc, "sip:bob@test.local")
    if password == "wrong":
        assert loop.run_until(lambda: alice.state(call) is S.DISCONNECTED, 10)
        assert alice.last_change(call).code in (403, 407)
        assert not bob.incoming()
        return
    assert loop.run_until(lambda: alice.state(call) is S.CONFIRMED, 10), kam.log_text()
    callee = bob.incoming()[0].call_id
    assert loop.run_until(lambda: bob.state(callee) is S.CONFIRMED, 5)
    alice.calls.call_hangup(call)
    assert loop.run_until(
        lambda: alice.state(call) is S.DISCONNECTED and bob.state(callee) is S.DISCONNECTED, 5
    )
    assert bob.last_change(callee).code == 200


# -- baresip -------------------------------------------------------------------------------


def _write_tone(path: Path, seconds: float) -> None:
    """A 440 Hz tone, 8000 Hz mono s16: what baresip's aufile source needs."""
    rate = 8000
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(rate * seconds))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames)


class Baresip:
    """A headless baresip 1.0 (g711, a WAV tone as source, ALSA null player) with the
    ``cons`` module for commands over UDP."""

    def __init__(self, run_dir: Path, ports: PortAllocator, answermode: str) -> None:
        run_dir.mkdir(parents=True, exist_ok=True)
        self.port = ports.allocate()
        self.cons_port = ports.allocate()
        rtp = ports.allocate(count=20)
        tone = run_dir / "tone.wav"
        _write_tone(tone, seconds=10.0)
        (run_dir / "config").write_text(
            f"sip_listen\t127.0.0.1:{self.port}\n"
            "sip_trans_def\tudp\n"
            "net_interface\t127.0.0.1\n"
            "module_path\t/usr/lib/baresip/modules\n"
            "module\tg711.so\nmodule\taufile.so\nmodule\talsa.so\n"
            "module_app\taccount.so\nmodule_app\tmenu.so\nmodule\tcons.so\n"
            f"cons_listen\t127.0.0.1:{self.cons_port}\n"
            f"audio_player\talsa,null\naudio_source\taufile,{tone}\naudio_alert\talsa,null\n"
            "ausrc_srate\t8000\nausrc_channels\t1\n"
            f"rtp_ports\t{rtp}-{rtp + 19}\n"
        )
        (run_dir / "accounts").write_text(
            f"<sip:baresip@127.0.0.1:{self.port}>;regint=0;answermode={answermode};"
            "audio_codecs=PCMU\n"
        )
        self.name = "baresip"
        self.process = ManagedProcess(
            ["baresip", "-f", str(run_dir)], run_dir / "baresip.log", name="baresip"
        )
        if not wait_until(lambda: port_bound(self.cons_port, "udp"), 5.0):
            log = self.describe()
            self.stop()
            raise PeerStartError(f"baresip did not start\n{log}")

    @property
    def uri(self) -> str:
        return f"sip:baresip@127.0.0.1:{self.port}"

    def command(self, text: str) -> None:
        """A menu command (``/hangup``, ``/dial sip:...``) through the cons module."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(f"{text}\n".encode(), ("127.0.0.1", self.cons_port))

    def describe(self) -> str:
        return self.process.log_text()

    def stop(self) -> None:
        self.process.stop(term_timeout=2.0)


@pytest.fixture
def baresip(tmp_path: Path, port_allocator: PortAllocator) -> Iterator[Callable[..., Baresip]]:
    """Factory ``baresip(answermode)``; every baresip started is stopped by PID."""
    if shutil.which("baresip") is None:
        pytest.skip("baresip is not installed")
    made: list[Baresip] = []

    def make(answermode: str = "auto") -> Baresip:
        peer = Baresip(tmp_path / f"baresip{len(made)}", port_allocator, answermode)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.stop()


def test_baresip_answers_hold_unhold_and_our_bye(
    loop: Loop, phones: Callable[..., Phone], baresip: Callable[..., Baresip]
) -> None:
    peer = baresip("auto")
    phone = phones()
    call = phone.calls.call_make_call(phone.local_acc, peer.uri)
    assert loop.run_until(lambda: phone.state(call) is S.CONFIRMED, 10), peer.describe()
    assert phone.media(call) == [MediaStatus.ACTIVE]
    assert phone.calls.call_get_info(call).codec == "PCMU/8000"
    phone.calls.call_set_hold(call)
    assert loop.run_until(lambda: phone.media(call)[-1] is MediaStatus.LOCAL_HOLD, 5)
    assert direction(phone.calls.call_get_info(call).remote_sdp) is Direction.RECVONLY
    phone.calls.call_reinvite(call)
    assert loop.run_until(lambda: phone.media(call)[-1] is MediaStatus.ACTIVE, 5)
    assert direction(phone.calls.call_get_info(call).remote_sdp) is Direction.SENDRECV
    phone.calls.call_hangup(call)
    assert loop.run_until(lambda: phone.state(call) is S.DISCONNECTED, 5)
    assert phone.last_change(call).code == 200
    # baresip logs our BYE as "session closed: Connection reset by peer"
    assert wait_until(lambda: "session closed" in peer.describe(), 3.0), peer.describe()


def test_baresip_hangs_up(
    loop: Loop, phones: Callable[..., Phone], baresip: Callable[..., Baresip]
) -> None:
    peer = baresip("auto")
    phone = phones()
    call = phone.calls.call_make_call(phone.local_acc, peer.uri)
    assert loop.run_until(lambda: phone.state(call) is S.CONFIRMED, 10), peer.describe()
    loop.run_until(lambda: False, 0.3)  # let the ACK land before the BYE comes back
    peer.command("/hangup")
    assert loop.run_until(lambda: phone.state(call) is S.DISCONNECTED, 5), peer.describe()
    assert phone.last_change(call).code == 200
    assert not phone.calls.call_is_active(call)


def test_baresip_calls_us_we_answer_and_it_hangs_up(
    loop: Loop, phones: Callable[..., Phone], baresip: Callable[..., Baresip]
) -> None:
    peer = baresip("auto")
    phone = phones(auto_answer=True)
    peer.command(f"/dial sip:intercom@127.0.0.1:{phone.port}")
    assert loop.run_until(lambda: bool(phone.incoming()), 10), peer.describe()
    call = phone.incoming()[0].call_id
    assert loop.run_until(lambda: phone.state(call) is S.CONFIRMED, 5), peer.describe()
    assert phone.media(call) == [MediaStatus.ACTIVE]
    loop.run_until(lambda: False, 0.3)
    peer.command("/hangup")
    assert loop.run_until(lambda: phone.state(call) is S.DISCONNECTED, 5), peer.describe()
    assert phone.last_change(call).code == 200


def test_cancel_before_baresip_answers(
    loop: Loop, phones: Callable[..., Phone], baresip: Callable[..., Baresip]
) -> None:
    peer = baresip("manual")
    phone = phones()
    call = phone.calls.call_make_call(phone.local_acc, peer.uri)
    assert loop.run_until(lambda: phone.state(call) is S.EARLY, 10), peer.describe()
    phone.calls.call_hangup(call)
    assert loop.run_until(lambda: phone.state(call) is S.DISCONNECTED, 5), peer.describe()
    assert phone.last_change(call).code == 487
    assert S.CONFIRMED not in phone.states(call)
