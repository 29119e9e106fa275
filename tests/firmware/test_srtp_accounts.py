"""SRTP per account: ``use_srtp`` / ``srtp_secure_signaling`` from the file to the wire.

The config keys are checked like every other key. Then one door App (simulated
hardware) with two local accounts, both ``use_srtp = "mandatory"`` with the
default ``srtp_secure_signaling = 1``: the TLS one offers RTP/SAVP with
``a=crypto`` keys, the UDP one must not send keys in clear, so its outgoing
call is refused with a clear error and an incoming call over UDP gets 488.
A flat user agent on loopback (TLS and UDP) plays the other phone.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from firmware.app import App
from firmware.config import ConfigError, load_config
from firmware.control import ControlError
from sipstack.calls import CallEvent, CallManager, CallMediaState, CallStateChanged, IncomingCall
from sipstack.endpoint import IncomingRequest
from sipstack.invite_events import InviteState
from sipstack.loop import Loop
from sipstack.media_factory import RtpMediaFactory
from sipstack.message import Request, Response
from sipstack.srtp import SecureSignaling, SrtpMode, SrtpPolicy
from sipstack.useragent import UserAgent
from tests.firmware.conftest import FAST
from tests.interop.peers.certs import CertBundle, make_certs

BASE = """
hal = "sim"

[sip]
udp = "127.0.0.1:0"
tcp = ""
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "srtp.toml"
    path.write_text(text)
    return load_config(path)


# -- the config keys ---------------------------------------------------------------------


def test_srtp_keys_default_to_plain_rtp_and_map_to_pjsua_meanings(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        BASE
        + """
[[accounts]]
local = true

[[accounts]]
id = "<sip:door@127.0.0.1>"
use_srtp = "optional"
srtp_secure_signaling = 2
""",
    )
    plain, secure = config.accounts  # type: ignore[attr-defined]
    assert plain.srtp_policy() == SrtpPolicy(SrtpMode.DISABLED, SecureSignaling.TLS)
    assert secure.srtp_policy() == SrtpPolicy(SrtpMode.OPTIONAL, SecureSignaling.SIPS)


@pytest.mark.parametrize(
    ("line", "key", "expected"),
    [
        ('use_srtp = "always"', "use_srtp", "'disabled', 'optional', 'mandatory'"),
        ("use_srtp = true", "use_srtp", "'disabled', 'optional', 'mandatory'"),
        ("srtp_secure_signaling = 3", "srtp_secure_signaling", "one of 0, 1, 2"),
        ('srtp_secure_signaling = "tls"', "srtp_secure_signaling", "one of 0, 1, 2"),
    ],
)
def test_bad_srtp_values_are_config_errors_with_line_and_key(
    tmp_path: Path, line: str, key: str, expected: str
) -> None:
    text = BASE + f'\n[[accounts]]\nid = "<sip:door@127.0.0.1>"\n{line}\n'
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    [problem] = caught.value.problems
    assert problem.key.endswith(key)
    assert problem.line == text.splitlines().index(line) + 1
    assert expected in problem.expected


# -- on the wire ---------------------------------------------------------------------------


class Flat:
    """The other phone: UDP and TLS, answers every call, accepts SRTP on any transport."""

    def __init__(self, loop: Loop, certs: CertBundle) -> None:
        from sipstack.tls import client_context, server_context

        self.events: list[CallEvent] = []
        self.invites: list[Request] = []
        self.ua = UserAgent(loop, timers=FAST, rng=random.Random(5))
        udp = self.ua.transport_create("udp", "127.0.0.1", 0)
        tls = self.ua.transport_create(
            "tls",
            "127.0.0.1",
            0,
            tls_server=server_context(str(certs.server_cert), str(certs.server_key)),
            tls_client=client_context(str(certs.ca_cert)),
        )
        info = self.ua.endpoint.transports.info
        self.udp_port, self.tls_port = info(udp).local_port, info(tls).local_port
        self.udp_acc = self.ua.acc_add_local(udp)
        self.ua.add_request_filter(self._note)
        self.media = RtpMediaFactory(loop, srtp=SrtpPolicy(SrtpMode.OPTIONAL, SecureSignaling.NONE))
        self.calls = CallManager(self.ua, on_event=self._on_event, media=self.media)
        self.ua.acc_add_local(tls)

    def _note(self, inc: IncomingRequest) -> Response | None:
        if inc.request.method == "INVITE":
            self.invites.append(inc.request)
        return None

    def _on_event(self, event: CallEvent) -> None:
        self.events.append(event)
        if isinstance(event, IncomingCall):
            self.calls.call_answer(event.call_id, 200)

    def states(self) -> list[InviteState]:
        return [e.state for e in self.events if isinstance(e, CallStateChanged)]

    def close(self) -> None:
        self.calls.close()
        self.media.close_all()
        self.ua.shutdown(timeout=0)


@pytest.fixture
def certs(tmp_path: Path) -> CertBundle:
    return make_certs(tmp_path / "certs")


@pytest.fixture
def flat(loop: Loop, certs: CertBundle) -> Iterator[Flat]:
    flat = Flat(loop, certs)
    yield flat
    flat.close()


def door_text(certs: CertBundle) -> str:
    return f"""
hal = "sim"

[sip]
udp = "127.0.0.1:0"
tcp = ""
tls = "127.0.0.1:0"
tls_cert = "{certs.server_cert}"
tls_key = "{certs.server_key}"
tls_ca = "{certs.ca_cert}"
allow = ["127.0.0.1"]

[[accounts]]
local = true
transport = "tls"
use_srtp = "mandatory"

[[accounts]]
local = true
transport = "udp"
use_srtp = "mandatory"

[[buttons]]
name = "answer"
bcm = 17
action = "answer"

[intercom]
profile = "desk"
"""


def account_on(app: App, transport: str) -> int:
    assert app.accounts is not None
    [acc] = [a for a, s in app.accounts.settings.items() if s.transport == transport]
    return acc


def test_a_mandatory_account_over_tls_offers_savp_with_keys(
    loop: Loop, make_app: Callable[..., App], certs: CertBundle, flat: Flat
) -> None:
    app = make_app(door_text(certs))
    placed = app.commands.call(
        f"sip:flat@127.0.0.1:{flat.tls_port};transport=tls", account_on(app, "tls")
    )
    assert loop.run_until(lambda: InviteState.CONFIRMED in flat.states(), 3.0), flat.events
    [invite] = flat.invites
    sdp = invite.body.decode()
    assert "m=audio " in sdp and " RTP/SAVP " in sdp, sdp
    assert "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" in sdp, sdp
    # the keys took: the flat agreed SRTP with the door's key
    agreed = [e.media for e in flat.events if isinstance(e, CallMediaState) and e.media]
    assert agreed and agreed[-1].local_crypto and agreed[-1].remote_crypto
    assert agreed[-1].remote_crypto in sdp
    assert loop.run_until(
        lambda: (
            [(c["id"], c["state"]) for c in app.status()["calls"]]
            == [(placed["call"], "confirmed")]
        ),
        2.0,
    )
    # status names the suite (for diagnosis over SSH) and never shows the key
    [call] = app.status()["calls"]
    assert call["srtp"] == "AES_CM_128_HMAC_SHA1_80"
    key = agreed[-1].remote_crypto.split("inline:")[1]
    assert key not in str(app.status())
    app.commands.hangup()
    assert loop.run_until(lambda: not app.status()["calls"], 3.0)


def test_a_mandatory_account_over_udp_keeps_its_keys_and_refuses(
    loop: Loop, make_app: Callable[..., App], certs: CertBundle, flat: Flat
) -> None:
    app = make_app(door_text(certs))
    # outgoing: not made, and the error says why
    with pytest.raises(ControlError, match=r"SRTP is mandatory .* not secure enough"):
        app.commands.call(f"sip:flat@127.0.0.1:{flat.udp_port}", account_on(app, "udp"))
    assert flat.invites == [] and app.status()["calls"] == []
    # incoming over UDP: answered 488, no keys sent in clear
    flat.calls.call_make_call(flat.udp_acc, f"sip:door@127.0.0.1:{app.ports['udp']}")
    assert loop.run_until(lambda: app.status()["phone"] == "ringing", 3.0)
    [call] = app.status()["calls"]
    assert call["account"] == account_on(app, "udp")
    app.press("answer")
    assert loop.run_until(lambda: InviteState.DISCONNECTED in flat.states(), 3.0), flat.events
    [ended] = [e for e in flat.events if isinstance(e, CallStateChanged)][-1:]
    assert ended.code == 488, ended
    assert loop.run_until(lambda: not app.status()["calls"], 2.0)


def test_each_call_gets_its_own_accounts_policy_and_keeps_it(loop: Loop) -> None:
    policies = {
        0: SrtpPolicy(SrtpMode.MANDATORY, SecureSignaling.NONE),
        1: SrtpPolicy(),  # an account with use_srtp = "disabled"
    }
    asked: list[int] = []

    def policy_of(call_id: int) -> SrtpPolicy:
        asked.append(call_id)
        return policies[call_id]

    factory = RtpMediaFactory(loop, srtp_of=policy_of, host="127.0.0.1")
    try:
        first = factory.create_local_media(0)
        second = factory.create_local_media(1)
        assert (first.srtp, second.srtp) == (SrtpMode.MANDATORY, SrtpMode.DISABLED)
        assert first.crypto and not second.crypto
        # a re-offer of call 0 after call 1 was set up: same mode, same keys
        assert factory.create_local_media(0) == first
        assert asked == [0, 1]
    finally:
        factory.close_all()
