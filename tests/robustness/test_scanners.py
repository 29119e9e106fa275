"""sipvicious against a registered door device (issue 8, scanners and floods).

The door listens on 127.0.0.1 and registers to Kamailio on 127.0.0.2, the only
peer it trusts (trust is by the registrar's address and port), so the
scanners are strangers by address, not only by port: ``svmap`` runs from
127.0.0.3 (``-b``); ``svwar`` and ``svcrack`` 0.3.3 ignore ``-b`` (they never
pass it to their scanner object) and reach the door from 127.0.0.1, which
trusts nobody either.

For ``refuse = "403"`` (the default) and ``refuse = "drop"``:

- ``svmap`` (OPTIONS sweep) finds no fingerprint: one 403 with no User-Agent or
  Server header, or (drop) no answer and no device;
- ``svwar`` (REGISTER extension guessing) gets the same answer for the door's
  real user as for a user that does not exist, and reports no extension;
  ``svwar -m INVITE`` (the "phone rings at 3 am" scan) rings nothing;
- ``svcrack`` (REGISTER password guessing, the real password in its
  dictionary) is never challenged, so it has nothing to crack.

Every packet the door sends is captured (tcpdump): to the scanners only 403s
(or nothing), never a challenge, an Authorization header or a User-Agent;
the door never rings (phone state, call list, its log); each refusal is
counted in ``intercom status`` and a source gets at most ``burst`` answers
before it is rate-limited.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.screening import Screening
from tests.interop.device import Firmware, account_toml, device_toml, poll
from tests.interop.peers import KamailioConfig, KamailioServer, PortAllocator

from .test_floods import Capture, Packet

KAM_HOST = "127.0.0.2"  # the registrar: the one peer the door trusts
DOOR_HOST = "127.0.0.1"
SVMAP_HOST = "127.0.0.3"
USER, PASSWORD = "door", "d00r-s3cret"
STRANGER = "nobody-here"
USER_AGENT = "intercom-firmware"  # [sip] user_agent default: the fingerprint svmap looks for
BURST = Screening().burst


def sipvicious(tool: str, *args: str, home: Path, timeout: float = 60) -> str:
    """Run a sipvicious tool (Debian: ``svmap``...; PyPI: ``sipvicious_svmap``...)."""
    program = shutil.which(tool) or shutil.which(f"sipvicious_{tool}")
    if program is None:
        pytest.skip(f"sipvicious not installed (no {tool}): apt-get install sipvicious")
    home.mkdir(exist_ok=True)
    done = subprocess.run(
        [program, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HOME": str(home)},  # sessions go to ~/.sipvicious
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return done.stdout + done.stderr


@pytest.fixture
def registrar(tmp_path: Path, port_allocator: PortAllocator) -> Iterator[KamailioServer]:
    """Kamailio on 127.0.0.2 (the shared fixture always binds 127.0.0.1)."""
    if shutil.which("kamailio") is None or shutil.which("kamcmd") is None:
        pytest.skip("kamailio not installed")
    server = KamailioServer(
        KamailioConfig(users={USER: PASSWORD}),
        tmp_path / "kamailio",
        port=port_allocator.allocate(),
        host=KAM_HOST,
    )
    server.start()
    yield server
    server.stop()


def first_line(payload: bytes) -> str:
    return payload.split(b"\r\n", 1)[0].decode("ascii", "replace")


def header(payload: bytes, name: str) -> str | None:
    found = re.search(rb"(?im)^" + name.encode() + rb"\s*:\s*(.*?)\r?$", payload)
    return found.group(1).decode("ascii", "replace") if found else None


def answers_by_call_id(packets: list[Packet], door_port: int) -> dict[str, list[str]]:
    """The door's responses, keyed by Call-ID, each normalised: status line and the
    header names in order (values like tags and branches differ by nature)."""
    out: dict[str, list[str]] = {}
    for p in packets:
        if p.sport == door_port and p.payload.startswith(b"SIP/2.0"):
            names = re.findall(rb"(?m)^([A-Za-z-]+)\s*:", p.payload)
            shape = first_line(p.payload) + " | " + ",".join(n.decode() for n in names)
            out.setdefault(header(p.payload, "Call-ID") or "?", []).append(shape)
    return out


def phone_is_quiet(door: Firmware, phones: list[str]) -> None:
    status = door.status()
    phones.append(status["phone"])
    assert status["calls"] == [], status["calls"]


@pytest.mark.parametrize("refuse", ["403", "drop"])
def test_sipvicious_learns_nothing(
    refuse: str,
    registrar: KamailioServer,
    port_allocator: PortAllocator,
    firmware: Any,
    tmp_path: Path,
) -> None:
    port = port_allocator.allocate()
    sip = device_toml(port, 700, tmp_path / "door.wav", host=DOOR_HOST)
    sip = sip.replace('tcp = ""\n', f'tcp = ""\nrefuse = "{refuse}"\n')
    door: Firmware = firmware(
        "door",
        sip + account_toml(USER, PASSWORD, registrar) + '\n[intercom]\nprofile = "intercom"\n',
    )
    assert poll(door.registered, 15), door.describe()
    assert door.status()["screening"]["mode"] == refuse
    capture = Capture(tmp_path / "sip.pcap", f"udp and port {port}")
    home, phones = tmp_path / "home", list[str]()
    target = ["-p", str(port), DOOR_HOST]
    quick = ["--maximumtime", "3"]  # give up after 3 s of silence (default 10)

    out_map = sipvicious("svmap", "-b", SVMAP_HOST, *target, home=home)
    phone_is_quiet(door, phones)
    # svwar: one extension per run, the stranger first, then the real user
    war: dict[str, str] = {}
    war_time: dict[str, tuple[float, float]] = {}
    for name in (STRANGER, USER):
        words = tmp_path / f"{name}.txt"
        words.write_text(f"{name}\n")
        started = time.time()
        war[name] = sipvicious("svwar", "-d", str(words), "--force", *quick, *target, home=home)
        war_time[name] = (started, time.time())
        phone_is_quiet(door, phones)
    out_invite = sipvicious(
        "svwar", "-m", "INVITE", "-e", "100-110", "--force", *quick, *target, home=home
    )
    phone_is_quiet(door, phones)
    passwords = tmp_path / "passwords.txt"
    passwords.write_text(f"1234\n{PASSWORD}\npassword\n")
    out_crack = sipvicious("svcrack", "-u", USER, "-d", str(passwords), *quick, *target, home=home)
    phone_is_quiet(door, phones)
    after = door.status()
    capture.stop()
    packets = capture.packets()
    screening = after["screening"]
    print(
        f"\nrefuse={refuse}\nsvmap:\n{out_map}\nsvwar {STRANGER}:\n{war[STRANGER]}\n"
        f"svwar {USER}:\n{war[USER]}\nsvwar -m INVITE:\n{out_invite}\nsvcrack:\n{out_crack}\n"
        f"screening: { {k: v for k, v in screening.items() if k != 'last'} }\n"
        + "\n".join(
            f"{p.src}:{p.sport} -> {p.dst}:{p.dport} {first_line(p.payload)}" for p in packets
        )
    )

    # Who said what to whom, on the wire.
    to_strangers = [p for p in packets if p.sport == port and p.dst != KAM_HOST]
    from_strangers = [p for p in packets if p.dport == port and p.src != KAM_HOST]
    requests = [p for p in from_strangers if not p.payload.startswith(b"SIP/2.0")]
    assert {p.src for p in requests} == {SVMAP_HOST, DOOR_HOST}, requests  # both scanners ran
    for p in to_strangers:
        assert first_line(p.payload).startswith("SIP/2.0 403"), p
        for name in ("Authorization", "WWW-Authenticate", "Proxy-Authenticate"):
            assert header(p.payload, name) is None, (name, p)  # no digest either way
        assert header(p.payload, "User-Agent") is None and header(p.payload, "Server") is None
        assert USER_AGENT.encode() not in p.payload
    for p in packets:  # credentials only ever go to the registrar
        if header(p.payload, "Authorization") is not None and p.sport == port:
            assert (p.dst, p.dport) == (KAM_HOST, registrar.port), p
    for source in (SVMAP_HOST, DOOR_HOST):
        # distinct answers (a 403 to an INVITE is retransmitted until the ACK, RFC 3261 17.2.1)
        answered = {
            (header(p.payload, "Call-ID"), header(p.payload, "CSeq"))
            for p in to_strangers
            if p.dst == source
        }
        assert len(answered) <= (BURST if refuse == "403" else 0), (source, answered)

    # svmap: no fingerprint; with "drop" not even a device
    assert USER_AGENT not in out_map, out_map
    device_rows = [line for line in out_map.splitlines() if f"{DOOR_HOST}:{port}" in line]
    if refuse == "403":
        assert len(device_rows) == 1 and "unknown" in device_rows[0], out_map
    else:
        assert device_rows == [], out_map

    # svwar: the real user and the stranger look the same, in its report and on the wire
    def report(text: str, name: str) -> list[str]:
        lines = [line for line in text.splitlines() if not line.startswith(("ERROR", "DEBUG"))]
        return [line.replace(name, "EXT") for line in lines]

    assert report(war[USER], USER) == report(war[STRANGER], STRANGER), war
    assert "found nothing" in war[USER] and "found nothing" in out_invite, war
    if refuse == "403":  # (dropped, svwar gives up after its first, random, probe)
        by_call = answers_by_call_id(packets, port)
        shapes = {}
        for name in (STRANGER, USER):
            asked = [
                p
                for p in requests
                if war_time[name][0] <= p.time <= war_time[name][1]
                and f"sip:{name}@" in (header(p.payload, "To") or "")
            ]
            assert asked, f"svwar never asked for {name}"
            shapes[name] = [by_call.get(header(p.payload, "Call-ID") or "", []) for p in asked]
        assert shapes[USER] == shapes[STRANGER] != [[]], shapes

    # svcrack: never challenged, so nothing cracked
    assert PASSWORD not in out_crack and "found nothing" in out_crack, out_crack

    # never rang, never became a call
    assert "ringing" not in phones, phones
    assert "-> ringing" not in door.log_text()
    assert door.status()["calls"] == []

    # counted and rate-limited: every request the scanners sent (ACKs are not
    # requests to screen: RFC 3261 17.2.1 absorbs them) is one refusal
    counted = [p for p in requests if not first_line(p.payload).startswith("ACK ")]
    assert screening["refused"] == len(counted), (screening, len(counted))
    answered = screening["forbidden"] + screening["dropped"]
    assert answered <= 2 * BURST, screening  # two source addresses
    assert screening["rate_limited"] == screening["refused"] - answered, screening
    if refuse == "403":
        assert screening["rate_limited"] > 0, screening  # svcrack kept trying
    else:
        assert screening["forbidden"] == 0, screening  # (sipvicious gives up on silence)
    assert door.registered(), door.describe()
