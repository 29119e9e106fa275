"""Real calls with audio against baresip, on 127.0.0.1: CallManager + RtpMediaFactory.

baresip (``answermode=auto``) plays a 1000 Hz tone from ``aufile`` and records
what it decodes with ``sndfile``; we play 440 Hz from a tone generator and
record with our WAV recorder. Each recording must contain the other side's
tone (Goertzel). DTMF goes both ways: ours as RFC 4733 through
``call_dial_dtmf`` (baresip logs ``received DTMF``), baresip's typed into its
``cons`` UDP console while the call is up (it sends RFC 4733; our
CallManager reports ``DtmfDigit`` events). Hold/unhold and BYE run too.
"""

from __future__ import annotations

import math
import os
import shutil
import socket
import struct
import time
import wave
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sipstack.calls import CallManager, CallStateChanged, DtmfDigit, MediaStatus
from sipstack.invite_events import InviteState
from sipstack.loop import Loop
from sipstack.media_factory import RtpMediaFactory, file_endpoint
from sipstack.media_session import RtpPortAllocator
from sipstack.useragent import UserAgent
from sipstack.wav_io import WavRecorder

from .peers import ManagedProcess, PortAllocator
from .peers.process import wait_until

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
RATE = 8000
THEIR_TONE = 1000.0
OUR_TONE = 440
MODULES = "/usr/lib/baresip/modules"


def goertzel(samples: list[int], freq: float, rate: int = RATE) -> float:
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    n = max(1, len(samples))
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)


def dominant(pcm_le: bytes, rate: int = RATE) -> float:
    """The strongest of a few candidate frequencies in the last second of a recording."""
    n = len(pcm_le) // 2
    samples = list(struct.unpack(f"<{n}h", pcm_le[: 2 * n]))[-rate:]
    candidates = [300.0, 440.0, 700.0, 1000.0, 1400.0, 2000.0]
    powers = {f: goertzel(samples, f, rate) for f in candidates}
    best = max(powers, key=lambda f: powers[f])
    others = max(p for f, p in powers.items() if f != best)
    assert powers[best] > 20 * others, f"no clear tone: {powers}"
    return best


def write_tone_wav(path: Path, freq: float, seconds: float) -> None:
    n = int(RATE * seconds)
    data = struct.pack(
        f"<{n}h", *(int(8000 * math.sin(2 * math.pi * freq * i / RATE)) for i in range(n))
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(data)


class Baresip:
    """baresip answering automatically, playing a tone, recording, with a UDP console."""

    def __init__(self, workdir: Path, ports: PortAllocator) -> None:
        workdir.mkdir()
        self.record_dir = workdir / "rec"
        self.record_dir.mkdir()
        self.sip_port = ports.allocate()
        self.cons_port = ports.allocate()
        rtp_low = ports.allocate(count=10)
        tone = workdir / "tone.wav"
        write_tone_wav(tone, THEIR_TONE, 30.0)
        (workdir / "config").write_text(
            "\n".join(
                [
                    f"sip_listen {HOST}:{self.sip_port}",
                    f"net_interface {HOST}",
                    f"rtp_ports {rtp_low}-{rtp_low + 9}",
                    f"audio_source aufile,{tone}",
                    "audio_player alsa,null",
                    "audio_alert alsa,null",
                    f"ausrc_srate {RATE}",
                    f"auplay_srate {RATE}",
                    "ausrc_channels 1",
                    "auplay_channels 1",
                    f"cons_listen {HOST}:{self.cons_port}",
                    f"module_path {MODULES}",
                    "module g711.so",
                    "module aufile.so",
                    "module alsa.so",
                    "module sndfile.so",
                    "module cons.so",
                    f"snd_path {self.record_dir}",
                    "module_app account.so",
                    "module_app menu.so",
                    "",
                ]
            )
        )
        (workdir / "accounts").write_text(
            f"<sip:bob@{HOST}:{self.sip_port}>;regint=0;answermode=auto;audio_codecs=PCMU\n"
        )
        (workdir / "contacts").write_text("")
        self.process = ManagedProcess(
            ["baresip", "-f", str(workdir), "-v"], workdir / "baresip.log", cwd=workdir
        )
        if not wait_until(lambda: "baresip is ready" in self.log(), 10.0):
            self.process.stop()
            pytest.fail(f"baresip did not start:\n{self.log()}")

    def log(self) -> str:
        return self.process.log_text(max_chars=400_000)

    def type_keys(self, loop: Loop, keys: str, gap: float = 0.3) -> None:
        """Key presses on baresip's UDP console, ``gap`` apart, scheduled on our loop.

        In a call baresip's menu sends a typed digit as RFC 4733 DTMF.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        target = (HOST, self.cons_port)

        def press(key: str) -> Callable[[], object]:
            return lambda: sock.sendto(key.encode(), target)

        for i, key in enumerate(keys):
            loop.call_later(i * gap, press(key))
        loop.call_later(len(keys) * gap, sock.close)

    def stop(self) -> None:
        self.process.stop()


def _run(loop: Loop, predicate: Callable[[], bool], timeout: float) -> bool:
    return loop.run_until(predicate, timeout)


@pytest.fixture
def baresip(tmp_path: Path, port_allocator: PortAllocator) -> Iterator[Baresip]:
    if shutil.which("baresip") is None or not os.path.exists(f"{MODULES}/cons.so"):
        pytest.skip("baresip (with cons, aufile, sndfile) is not installed")
    peer = Baresip(tmp_path / "baresip", port_allocator)
    yield peer
    peer.stop()


def test_call_with_baresip_tone_both_ways_dtmf_hold_and_bye(
    baresip: Baresip, tmp_path: Path, port_allocator: PortAllocator
) -> None:
    events: list[object] = []
    with Loop() as loop:
        ua = UserAgent(loop)
        tid = ua.transport_create("udp", HOST, port_allocator.allocate())
        acc = ua.acc_add_local(tid)
        endpoint = file_endpoint(RATE, 160, tone_hz=OUR_TONE, record=tmp_path / "ours.wav")
        media = RtpMediaFactory(
            loop,
            ports=RtpPortAllocator(port_allocator.allocate(count=20), 65000),
            codecs=("PCMU",),
            sample_rate=RATE,
            endpoint=endpoint,
        )
        calls = CallManager(ua, on_event=events.append, media=media)
        media.on_dtmf = calls.on_media_dtmf

        def state() -> InviteState | None:
            found = [e.state for e in events if isinstance(e, CallStateChanged)]
            return found[-1] if found else None

        def status() -> MediaStatus:
            return calls.call_get_info(cid).media_status

        cid = calls.call_make_call(acc, f"sip:bob@{HOST}:{baresip.sip_port}")
        assert _run(loop, lambda: state() is InviteState.CONFIRMED, 10.0), baresip.log()
        loop.run_until(lambda: False, 2.0)
        calls.call_dial_dtmf(cid, "159#")
        loop.run_until(lambda: False, 1.5)
        baresip.type_keys(loop, "27*")
        loop.run_until(lambda: len([e for e in events if isinstance(e, DtmfDigit)]) >= 3, 5.0)
        remote_sdp = calls.call_get_info(cid).remote_sdp
        stats = media.rtp_stats(cid)
        assert stats is not None and stats.rtp is not None
        assert stats.rtp.packets_received > 150, stats  # ~50/s for over 3 s
        assert calls.call_get_info(cid).rtp_stats == stats
        # hold (we send sendonly, baresip answers recvonly) and unhold
        calls.call_set_hold(cid)
        assert _run(loop, lambda: status() is MediaStatus.LOCAL_HOLD, 5.0)
        loop.run_until(lambda: False, 1.0)
        held = media.rtp_stats(cid)
        assert held is not None and held.rtp is not None
        loop.run_until(lambda: False, 1.0)
        still = media.rtp_stats(cid)
        assert still is not None and still.rtp is not None
        assert still.rtp.packets_received <= held.rtp.packets_received + 2  # baresip stopped
        calls.call_reinvite(cid)
        assert _run(loop, lambda: status() is MediaStatus.ACTIVE, 5.0)
        loop.run_until(lambda: False, 1.5)
        calls.call_hangup(cid)
        assert _run(loop, lambda: state() is InviteState.DISCONNECTED, 5.0)
        sink = endpoint.sink
        assert isinstance(sink, WavRecorder)
        sink.close()
        assert sink.wait_closed(5.0)
        ua.shutdown(timeout=0)
    time.sleep(0.5)
    log = baresip.log()
    # our RFC 4733 digits, in order, each ended once, at baresip
    lines = log.replace("\r", "\n").splitlines()
    got = [x.split("'")[1] for x in lines if x.startswith("received event:") and "end=1" in x]
    assert got == list("159#"), ([x for x in lines if "event" in x], remote_sdp)
    # baresip's digits at our call layer, in order
    digits = [e.digit for e in events if isinstance(e, DtmfDigit)]
    assert digits == list("27*"), (digits, log[-3000:])
    # our recording: baresip's 1000 Hz tone; its recording: our 440 Hz tone
    with wave.open(str(tmp_path / "ours.wav"), "rb") as w:
        assert dominant(w.readframes(w.getnframes())) == THEIR_TONE
    recordings = sorted(baresip.record_dir.glob("dump-*-dec.wav"))
    assert recordings, list(baresip.record_dir.iterdir())
    with wave.open(str(recordings[0]), "rb") as w:
        assert dominant(w.readframes(w.getnframes()), w.getframerate()) == OUR_TONE
