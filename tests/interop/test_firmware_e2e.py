"""End to end (issue 6): two ``intercom run`` processes, a door and a flat, on Kamailio.

Everything a user would do over SSH, through the real CLI and control sockets:
``intercom press bell`` on the door rings the flat, ``intercom answer`` on the
flat connects them, audio flows both ways (each side's simulated microphone is
a tone of its own frequency; each side's simulated loudspeaker is a WAV file,
checked with a Goertzel filter for the *other* side's tone), ``intercom dtmf``
with the door code on the flat pulses the door's relay (seen in ``intercom
status --json``), ``intercom hangup`` ends it. A raw INVITE from an address
that is neither Kamailio nor an allowed peer is refused and counted. A broken
config gives its documented error and exit code, and ``intercom doctor`` on a
device with a wrong password says so in plain words.

The peers run on the wall clock, so waiting here polls the CLI (bounded), the
way a person at a terminal would.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from .device import (
    DESK_FLAT,
    account_toml,
    device_toml,
    goertzel_share,
    intercom,
    poll,
    read_wav,
)
from .peers import PortAllocator

pytestmark = pytest.mark.interop

DOOR_HZ, FLAT_HZ = 700, 1900  # clear of ring (1000/1250), ringback (425), DTMF tones
DOOR_CODE = "4711"


def test_door_rings_flat_talk_open_door_hang_up(
    kamailio_server: Any, port_allocator: PortAllocator, firmware: Any, tmp_path: Path
) -> None:
    kam = kamailio_server({"door": "d00r", "flat": "fl4t"})
    door_port, flat_port = port_allocator.allocate(), port_allocator.allocate()
    door = firmware(
        "door",
        device_toml(door_port, DOOR_HZ, tmp_path / "door.wav")
        + account_toml("door", "d00r", kam)
        + f"""
[[buttons]]
name = "bell"
bcm = 17
action = "call"
targets = ["sip:flat@test.local"]

[relay]
bcm = 26
pulse_seconds = 2

[intercom]
profile = "intercom"
door_code = "{DOOR_CODE}"
door_code_from = ["sip:flat@test.local"]
""",
    )
    flat = firmware(
        "flat",
        device_toml(flat_port, FLAT_HZ, tmp_path / "flat.wav")
        + account_toml("flat", "fl4t", kam)
        + DESK_FLAT,
    )
    assert poll(door.registered, 15), door.describe()
    assert poll(flat.registered, 15), flat.describe()

    # A stranger calls the door directly (not through Kamailio): refused, counted.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as scanner:
        scanner.bind(("127.0.0.1", 0))
        scanner.settimeout(5)
        me = scanner.getsockname()[1]
        invite = (
            f"INVITE sip:door@127.0.0.1:{door_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{me};branch=z9hG4bK{uuid.uuid4().hex[:10]}\r\n"
            f"From: <sip:100@scanner.invalid>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:door@127.0.0.1>\r\nCall-ID: {uuid.uuid4().hex}\r\n"
            "CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:100@127.0.0.1:{me}>\r\nContent-Length: 0\r\n\r\n"
        )
        scanner.sendto(invite.encode(), ("127.0.0.1", door_port))
        answer = scanner.recv(65535).decode(errors="replace")
    assert answer.startswith("SIP/2.0 403"), answer
    screening = door.status()["screening"]
    assert screening["refused"] == 1 and screening["forbidden"] == 1, screening
    assert door.status()["calls"] == []  # it never became a call

    # The visitor presses the bell: the flat rings.
    code, out = intercom("press", "bell", control=door.control)
    assert code == 0, out
    assert poll(lambda: flat.status()["phone"] == "ringing"), door.describe() + flat.describe()
    calls = flat.status()["calls"]
    assert len(calls) == 1 and calls[0]["direction"] == "incoming", calls
    assert "door@test.local" in calls[0]["remote"]

    code, out = intercom("answer", control=flat.control)
    assert code == 0, out

    def both_connected() -> bool:
        d, f = door.status()["calls"], flat.status()["calls"]
        return bool(d and f and d[0]["state"] == "confirmed" and f[0]["state"] == "confirmed")

    assert poll(both_connected), door.describe() + flat.describe()
    assert door.status()["phone"] == "in call" and flat.status()["phone"] == "in call"

    # Let audio flow both ways for a while (wall clock: the peers are real).
    assert poll(
        lambda: all(
            (c.get("packets_received") or 0) > 50
            for fw in (door, flat)
            for c in fw.status()["calls"]
        )
    ), door.describe() + flat.describe()

    # The flat opens the door with the code.
    assert door.status()["relays"]["door"]["pulses"] == 0
    code, out = intercom("dtmf", DOOR_CODE, control=flat.control)
    assert code == 0, out
    assert poll(lambda: door.status()["relays"]["door"]["pulses"] == 1), door.describe()

    code, out = intercom("hangup", control=flat.control)
    assert code == 0, out
    assert poll(lambda: not door.status()["calls"] and not flat.status()["calls"])
    assert door.status()["phone"] == "idle" and flat.status()["phone"] == "idle"

    # Graceful stop writes the recordings and unregisters.
    assert door.stop() == 0, door.describe()
    assert flat.stop() == 0, flat.describe()
    assert not door.control.exists() and not flat.control.exists()
    door_heard, rate = read_wav(tmp_path / "door.wav")
    flat_heard, _ = read_wav(tmp_path / "flat.wav")
    # at least half a second of the other side's tone on each loudspeaker
    assert goertzel_share(door_heard, rate, FLAT_HZ) >= 25
    assert goertzel_share(flat_heard, rate, DOOR_HZ) >= 25
    # and not our own microphone (the bridge never plays a port to itself)
    assert goertzel_share(door_heard, rate, DOOR_HZ) == 0
    assert goertzel_share(flat_heard, rate, FLAT_HZ) == 0
    assert poll(lambda: not kam.registrations(), 5), kam.registrations()


def test_doctor_explains_a_wrong_password(
    kamailio_server: Any, port_allocator: PortAllocator, firmware: Any, tmp_path: Path
) -> None:
    kam = kamailio_server({"door": "right-one"})
    door = firmware(
        "door",
        device_toml(port_allocator.allocate(), DOOR_HZ, tmp_path / "door.wav")
        + account_toml("door", "wrong-one", kam),
    )

    def refused() -> bool:
        if not door.ready():
            return False
        account = door.status()["accounts"][0]
        return bool(account["last_error"])

    assert poll(refused, 15), door.describe()
    code, out = intercom("doctor", control=door.control)
    assert code == 1, out
    assert (
        "the registrar refused the password for door@test.local: "
        "check [[accounts.cred_info]]" in out
    ), out
    assert "wrong-one" not in out  # never a password on screen
    code, out = intercom("doctor", "--json", control=door.control)
    checks = json.loads(out)
    assert code == 1
    assert any(c["check"] == "registration" and c["status"] == "fail" for c in checks)
    # nor in the log
    code, out = intercom("log", control=door.control)
    assert code == 0 and "wrong-one" not in out


def test_broken_config_and_unreachable_firmware(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('hal = "sim"\n[[accounts]]\nid = "<sip:door@test.local>"\nreg_timout = 60\n')
    code, out = intercom("run", "--config", str(bad), "--control", str(tmp_path / "x.sock"))
    assert code == 2, out
    assert f"{bad}:4: accounts[1].reg_timout: expected one of the keys" in out, out
    assert "did you mean 'reg_timeout'?" in out
    assert "not started" in out
    code, out = intercom("status", control=tmp_path / "nobody.sock")
    assert code == 3, out
    assert "is `intercom run` running?" in out
