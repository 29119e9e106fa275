"""The firmware against linphone (linphonec 5.1 from Debian's ``linphone-cli``).

linphone is the third family of softphones people call a door station from
(after baresip and the PJSIP-based ones SIPp stands in for). Each test runs a
real ``intercom run`` process with simulated hardware (a tone as microphone, a
WAV file as loudspeaker) and a real linphonec driven through its console, and
checks what a person would hear: each side's recording holds the *other*
side's tone (Goertzel), and the door code typed on linphone's keypad pulses
the door's relay. Covered: linphone calls the door directly (auto-answer, DTMF
door code; hold and resume), the door's bell rings linphone registered at Kamailio (linphone
answers with a GRUU Contact), a call with linphone's SRTP made mandatory,
instant messages (RFC 3428 MESSAGE) both ways through Kamailio, and the door's
presence as linphone sees it through Kamailio's presence server.

linphonec advertises its route-to-the-internet address in its SDP, never
127.0.0.1, so it runs in a network namespace of the test's own, joined to the
root namespace by a veth pair (198.18.N.0/24, never routed); the door and
Kamailio listen on the root end. Needs root and iproute2 (skips otherwise, as
the other namespace tests do).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.robustness.netns import VethNet, veth_namespace

from .device import Firmware, account_toml, device_toml, goertzel_share, poll, read_wav
from .media_tools import tone_samples, write_wav
from .peers import PortAllocator
from .peers.linphone import LinphoneAccount, Linphonec, linphonec_available

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not linphonec_available(), reason="linphonec (linphone-cli) not installed"),
]

DOOR_HZ, PHONE_HZ = 700, 1900  # clear of ring, ringback and DTMF tones
DOOR_CODE = "4711"
RATE = 8000


@pytest.fixture
def net() -> Iterator[VethNet]:
    with veth_namespace() as made:
        yield made


@pytest.fixture
def linphone(
    net: VethNet, tmp_path: Path, port_allocator: PortAllocator
) -> Iterator[Callable[..., Linphonec]]:
    """Factory ``linphone(contact, account=None, srtp=False)``: linphonec in ``net``'s namespace,
    its microphone a 30 s tone at PHONE_HZ, its loudspeaker ``phone.wav``."""
    made: list[Linphonec] = []

    def make(
        contact: str,
        account: LinphoneAccount | None = None,
        *,
        srtp: bool = False,
        gruu: bool = True,
    ) -> Linphonec:
        phone = Linphonec(
            tmp_path / "linphone",
            contact=contact,
            sip_port=port_allocator.allocate(),
            rtp_port=port_allocator.allocate(),
            prefix=["ip", "netns", "exec", net.ns],
            account=account,
            srtp=srtp,
            gruu=gruu,
        )
        made.append(phone)
        tone = tmp_path / "tone.wav"
        write_wav(tone, tone_samples(PHONE_HZ, 30.0, RATE), RATE)
        phone.send(f"play {tone}")
        phone.send(f"record {tmp_path / 'phone.wav'}")
        return phone

    yield make
    for phone in made:
        phone.stop()


def _heard(path: Path, hz: float) -> int:
    """20 ms blocks of ``path`` in which ``hz`` dominates (0 if nothing was written)."""
    if not path.exists() or path.stat().st_size <= 44:
        return 0
    pcm, rate = read_wav(path)
    return goertzel_share(pcm, rate, hz, block=rate // 50)


def _both_heard_each_other(door: Firmware, phone: Linphonec, tmp_path: Path) -> None:
    """Stop both (closing their recordings), then look for the other side's tone."""
    phone.stop()
    door.stop()
    assert _heard(tmp_path / "door.wav", PHONE_HZ) > 50, "the door never heard linphone"
    assert _heard(tmp_path / "phone.wav", DOOR_HZ) > 50, "linphone never heard the door"
    log = door.log_text()
    assert "Traceback" not in log, log[-4000:]


def _door_code_pulsed(door: Firmware) -> bool:
    return bool(door.status()["relays"]["door"]["pulses"] >= 1)


def _local_door(
    net: VethNet, port: int, record: Path, caller: str, *, account: str = "", intercom: str = ""
) -> str:
    """A door with a local account on the root end of ``net`` that answers ``caller``;
    ``account`` and ``intercom`` are extra lines for those tables."""
    return f"""
hal = "sim"

[sip]
udp = "{net.registrar}:{port}"
tcp = ""
allow = ["{net.device}"]

[audio]
capture_device = "tone:{DOOR_HZ}"
playback_device = "{record}"

[relay]
bcm = 26
pulse_seconds = 2

[[accounts]]
local = true
{account}
[intercom]
auto_answer = true
trusted = ["{caller}"]
{intercom}"""


def _registered_pair(
    net: VethNet,
    kam: Any,
    port: int,
    record: Path,
    linphone: Callable[..., Linphonec],
    firmware: Callable[..., Firmware],
    extra: str = "",
    *,
    account: str = "",
    gruu: bool = True,
) -> tuple[Firmware, Linphonec]:
    """The door and linphone (as flat) both registered at ``kam``; ``extra`` adds
    tables to the door's config, ``account`` lines to its account."""
    door = firmware(
        "door",
        device_toml(port, DOOR_HZ, record, host=net.registrar)
        + account_toml("door", "d00r", kam, account)
        + extra,
    )
    flat = LinphoneAccount(
        identity="sip:flat@test.local",
        proxy=f"sip:{net.registrar}:{kam.port}",
        username="flat",
        password="fl4t",
        realm="test.local",
    )
    phone = linphone('"Flat" <sip:flat@test.local>', flat, gruu=gruu)
    assert poll(door.registered, 20), door.describe()
    assert poll(lambda: "flat" in str(kam.registrations()), 20), phone.output()[-3000:]
    return door, phone


def _door_call(door: Firmware) -> dict[str, Any]:
    """The door's one call, as ``intercom status`` shows it."""
    calls = door.status()["calls"]
    assert len(calls) == 1, (calls, door.describe())
    return calls[0]  # type: ignore[no-any-return]


def _linphone_calls_the_door(
    net: VethNet,
    linphone: Callable[..., Linphonec],
    firmware: Callable[..., Firmware],
    port: int,
    tmp_path: Path,
    *,
    account: str = "",
    intercom: str = "",
    srtp: bool = False,
) -> tuple[Firmware, Linphonec, int]:
    """A local door answering linphone (``sip:tenant@`` the namespace's address),
    called by it; returns when the call is up and audio has flowed for two
    seconds, with linphone's output mark from before the call."""
    caller = f"sip:tenant@{net.device}"
    door = firmware(
        "door",
        _local_door(net, port, tmp_path / "door.wav", caller, account=account, intercom=intercom),
    )
    assert poll(door.ready, 20), door.describe()
    phone = linphone(f'"Tenant" <{caller}>', srtp=srtp)
    mark = phone.send(f"call sip:door@{net.registrar}:{port}")
    assert phone.wait_for("connected.", 15, since=mark), phone.output()[-3000:]
    assert poll(lambda: len(door.status()["calls"]) == 1), door.describe()
    assert _door_call(door)["state"] == "confirmed", door.status()
    assert poll(lambda: _door_call(door).get("packets_received", 0) > 100, 10)
    return door, phone, mark


def test_linphone_calls_the_door_hears_it_and_opens_it(
    net: VethNet,
    linphone: Callable[..., Linphonec],
    firmware: Callable[..., Firmware],
    port_allocator: PortAllocator,
    tmp_path: Path,
) -> None:
    door, phone, _ = _linphone_calls_the_door(
        net,
        linphone,
        firmware,
        port_allocator.allocate(),
        tmp_path,
        intercom=f'door_code = "{DOOR_CODE}"',
    )
    # after two seconds of talk, the door code on linphone's keypad (RFC 4733 events)
    phone.send(DOOR_CODE)
    assert poll(lambda: _door_code_pulsed(door), 10), (door.status(), phone.output()[-2000:])

    mark = phone.send("terminate")
    assert phone.wait_for("ended", 10, since=mark), phone.output()[-2000:]
    assert poll(lambda: not door.status()["calls"]), door.status()
    _both_heard_each_other(door, phone, tmp_path)


def test_door_bell_rings_linphone_through_kamailio(
    net: VethNet,
    linphone: Callable[..., Linphonec],
    firmware: Callable[..., Firmware],
    kamailio_server: Any,
    port_allocator: PortAllocator,
    tmp_path: Path,
) -> None:
    kam = kamailio_server({"door": "d00r", "flat": "fl4t"}, host=net.registrar)
    bell = """
[[buttons]]
name = "bell"
bcm = 17
action = "call"
targets = ["sip:flat@test.local"]
"""
    door, phone = _registered_pair(
        net, kam, port_allocator.allocate(), tmp_path / "door.wav", linphone, firmware, bell
    )

    mark = phone.mark()
    code, out = door.cli("press", "bell")
    assert code == 0, out
    assert phone.wait_for("Receiving new incoming call", 15, since=mark), phone.output()[-3000:]
    mark = phone.send("answer")
    assert phone.wait_for("connected.", 10, since=mark), phone.output()[-3000:]
    assert poll(lambda: bool(door.status()["calls"])), door.describe()
    assert poll(lambda: door.status()["calls"][0]["state"] == "confirmed"), door.status()
    assert poll(lambda: door.status()["calls"][0].get("packets_received", 0) > 100, 10)

    code, out = door.cli("hangup")
    assert code == 0, out
    assert phone.wait_for("ended", 10, since=mark), phone.output()[-2000:]
    assert poll(lambda: not door.status()["calls"]), door.status()
    _both_heard_each_other(door, phone, tmp_path)


def test_linphone_mandatory_srtp_call_to_the_door(
    net: VethNet,
    linphone: Callable[..., Linphonec],
    firmware: Callable[..., Firmware],
    port_allocator: PortAllocator,
    tmp_path: Path,
) -> None:
    # linphone's encryption is mandatory: without our key in the answer it would
    # refuse the call, so "connected" and audio both ways mean SRTP both ways
    door, phone, mark = _linphone_calls_the_door(
        net,
        linphone,
        firmware,
        port_allocator.allocate(),
        tmp_path,
        account='use_srtp = "optional"\nsrtp_secure_signaling = 0',
        srtp=True,
    )
    call = _door_call(door)
    assert call["srtp"] in ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32"), call

    code, out = door.cli("hangup")
    assert code == 0, out
    assert phone.wait_for("ended", 10, since=mark), phone.output()[-2000:]
    _both_heard_each_other(door, phone, tmp_path)


def test_messages_between_the_door_and_linphone_through_kamailio(
    net: VethNet,
    linphone: Callable[..., Linphonec],
    firmware: Callable[..., Firmware],
    kamailio_server: Any,
    port_allocator: PortAllocator,
    tmp_path: Path,
) -> None:
    kam = kamailio_server({"door": "d00r", "flat": "fl4t"}, host=net.registrar)
    door, phone = _registered_pair(
        net, kam, port_allocator.allocate(), tmp_path / "door.wav", linphone, firmware
    )

    mark = phone.mark()
    code, out = door.cli("message", "sip:flat@test.local", "Parcel at the door")
    assert code == 0, out  # linphone's 200 came back
    said = "Message received from sip:door@test.local: Parcel at the door"
    assert phone.wait_for(said, 10, since=mark), phone.output()[-2000:]

    phone.send("chat sip:door@test.local Leave it there please")
    said = "message from sip:flat@test.local: Leave it there please"
    assert poll(lambda: said in door.log_text(), 10), (
        door.log_text()[-2000:],
        phone.output()[-2000:],
    )


def test_linphone_watches_the_doors_presence_through_kamailio(
    net: VethNet,
    linphone: Callable[..., Linphonec],
    firmware: Callable[..., Firmware],
    kamailio_server: Any,
    port_allocator: PortAllocator,
    tmp_path: Path,
) -> None:
    """The door PUBLISHes (RFC 3903) to Kamailio's presence server; linphone, a
    watcher of the door, gets each change in a NOTIFY and shows it.

    This linphone does not ask for a GRUU: Kamailio's presence server would send
    its NOTIFYs to the GRUU itself, which it routes only for requests it receives.
    """
    kam = kamailio_server({"door": "d00r", "flat": "fl4t"}, host=net.registrar, presence=True)
    door, phone = _registered_pair(
        net,
        kam,
        port_allocator.allocate(),
        tmp_path / "door.wav",
        linphone,
        firmware,
        account="publish_enabled = true",
        gruu=False,
    )
    mark = phone.send('friend add "Door" sip:door@test.local')
    online = 'Friend "Door" <sip:door@test.local> is Online'
    assert phone.wait_for(online, 10, since=mark), phone.output()[-3000:]

    mark = phone.mark()
    code, out = door.cli("presence", "offline", "--note", "Gone fishing")
    assert code == 0, out
    offline = 'Friend "Door" <sip:door@test.local> is Offline'
    assert phone.wait_for(offline, 10, since=mark), phone.output()[-3000:]

    mark = phone.mark()
    code, out = door.cli("presence", "online")
    assert code == 0, out
    assert phone.wait_for(online, 10, since=mark), phone.output()[-3000:]


def test_linphone_holds_and_resumes_the_call_to_the_door(
    net: VethNet,
    linphone: Callable[..., Linphonec],
    firmware: Callable[..., Firmware],
    port_allocator: PortAllocator,
    tmp_path: Path,
) -> None:
    """linphone's pause and resume are re-INVITEs (RFC 3264 8.4): the door shows
    the remote hold, keeps the call, and the audio comes back after resume."""
    door, phone, _ = _linphone_calls_the_door(
        net, linphone, firmware, port_allocator.allocate(), tmp_path
    )

    assert poll(lambda: _door_call(door)["media"] == "active"), _door_call(door)
    phone.send("pause")
    assert poll(lambda: _door_call(door)["media"] == "remote_hold"), (
        _door_call(door),
        phone.output()[-2000:],
    )
    assert _door_call(door)["state"] == "confirmed"
    received = _door_call(door).get("packets_received", 0)

    phone.send("resume")
    assert poll(lambda: _door_call(door)["media"] == "active"), (
        _door_call(door),
        phone.output()[-2000:],
    )
    assert poll(lambda: _door_call(door).get("packets_received", 0) > received + 100, 10)
    mark = phone.send("terminate")
    assert phone.wait_for("ended", 10, since=mark), phone.output()[-2000:]
    assert poll(lambda: not door.status()["calls"]), door.status()
    _both_heard_each_other(door, phone, tmp_path)
