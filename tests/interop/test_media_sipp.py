"""Calls with audio against SIPp (issue 4), directly and through Kamailio, on 127.0.0.1.

Our side is the real thing: :class:`CallManager` with :class:`RtpMediaFactory`,
a 440 Hz tone generator as microphone and a WAV recorder as speaker
(:class:`media_tools.MediaPhone`). SIPp's side of the audio is either a
capture we generate (:func:`media_tools.write_pcmu_pcap`: a 1000 Hz PCMU tone
in 20 ms packets, mu-law encoded independently of sipstack) replayed with
``play_pcap_audio``, or ``-rtp_echo``, which returns our own packets.

- SIPp answers our call and plays the capture: our recording holds 1000 Hz
  (and never our 440 Hz: nothing loops our tone back locally).
- SIPp answers and echoes: our 440 Hz tone went out, came back, was decoded.
- SIPp calls us (we answer automatically), plays the capture and hangs up with
  BYE: our recording holds 1000 Hz.

SIPp's exit code is its verdict on the signalling (0: every message as the
scenario expects); the recordings are checked block by block with Goertzel.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sipstack.codec_g711 import ulaw_decode
from sipstack.invite_events import InviteState
from sipstack.loop import Loop

from .media_tools import (
    MediaPhone,
    dominant_blocks,
    read_pcap_udp,
    register_contact,
    tone_samples,
    ulaw_encode_sample,
    via_kamailio,
    write_pcmu_pcap,
)

S = InviteState
RATE = 8000
THEIR_TONE = 1000.0  # the capture SIPp replays
OUR_TONE = 440  # our tone generator
CANDIDATES = [300.0, OUR_TONE, 700.0, THEIR_TONE, 1400.0, 2000.0]
PCAP_SECONDS = 4.0


@pytest.fixture
def tone_pcap(tmp_path: Path) -> Path:
    """The capture SIPp replays: 4 s of 1000 Hz PCMU, 200 packets of 20 ms."""
    path = tmp_path / "tone-1000hz-pcmu.pcap"
    assert write_pcmu_pcap(path, THEIR_TONE, PCAP_SECONDS) == 200
    return path


def heard(p: MediaPhone, freq: float) -> float:
    """Seconds of our finished recording in which ``freq`` dominates."""
    rate, samples = p.recording()
    assert rate == RATE
    return dominant_blocks(samples, rate, freq, CANDIDATES)


# -- the capture itself (no peer needed) --------------------------------------------------


def test_pcap_writer_frames_rtp_sipp_can_replay(tone_pcap: Path) -> None:
    packets = read_pcap_udp(tone_pcap)  # checks lengths and IPv4/UDP checksums
    assert len(packets) == 200
    assert [round(p.time - packets[0].time, 3) for p in packets[:3]] == [0.0, 0.02, 0.04]
    first, last = packets[0].payload, packets[-1].payload
    assert len(first) == 12 + 160
    version, mpt, seq, ts, ssrc = struct.unpack("!BBHII", first[:12])
    assert (version, mpt & 0x7F, mpt >> 7) == (0x80, 0, 1)  # RTP v2, PCMU, marker
    _, mpt2, seq2, ts2, ssrc2 = struct.unpack("!BBHII", last[:12])
    assert (seq2 - seq, ts2 - ts, ssrc2, mpt2) == (199, 199 * 160, ssrc, 0)
    # the payload decodes (with sipstack's independent decoder) to the tone it encodes
    pcm = b"".join(ulaw_decode(p.payload[12:]) for p in packets)
    samples = list(struct.unpack(f"={len(pcm) // 2}h", pcm))
    assert dominant_blocks(samples, RATE, THEIR_TONE, CANDIDATES) == pytest.approx(4.0)
    original = tone_samples(THEIR_TONE, PCAP_SECONDS)
    # G.711 keeps about 3 % of the amplitude as error at 8000 peak
    assert max(abs(a - b) for a, b in zip(original, samples, strict=True)) < 300


def test_ulaw_reference_points() -> None:
    # G.711 table 2a: +0 -> 0xFF, -1 -> 0x7F, clip levels -> 0x80 / 0x00
    assert [ulaw_encode_sample(s) for s in (0, -1, 32767, -32768)] == [0xFF, 0x7F, 0x80, 0x00]
    # decision levels of segment 0 (bias 0x84): 0..3 -> 0xFF, 4..11 -> 0xFE (Sun g711.c)
    assert [ulaw_encode_sample(s) for s in (3, 4, 11, 12)] == [0xFF, 0xFE, 0xFE, 0xFD]


# -- SIPp answers our call -------------------------------------------------------------


def _call_sipp(p: MediaPhone, kam: Any, sipp_port: int, path: str) -> int:
    if path == "direct":
        return p.calls.call_make_call(p.local_acc, f"sip:service@127.0.0.1:{sipp_port}")
    register_contact(kam, "sipp", sipp_port)
    acc = via_kamailio(p, kam, "alice", None)
    return p.calls.call_make_call(acc, "sip:sipp@test.local")


@pytest.mark.interop
@pytest.mark.parametrize("path", ["direct", "kamailio"])
def test_sipp_answers_and_plays_pcap(
    loop: Loop,
    phone: Callable[..., MediaPhone],
    sipp: Any,
    kamailio_server: Any,
    tone_pcap: Path,
    path: str,
) -> None:
    p = phone()
    kam = kamailio_server() if path == "kamailio" else None
    run = sipp("uas_call_play_pcap_bye", render={"pcap": str(tone_pcap), "hold_ms": 500})
    call = _call_sipp(p, kam, run.port, path)
    assert p.run_until(lambda: p.state(call) is S.CONFIRMED, 10), run.describe()
    assert p.calls.call_get_info(call).codec == "PCMU/8000"
    # 150 of the 200 packets (3 s): bounded, whatever the wall clock does
    assert p.run_until(lambda: p.packets_received(call) >= 150, 8), (
        p.packets_received(call),
        run.describe(),
    )
    p.calls.call_hangup(call)
    assert p.run_until(lambda: p.state(call) is S.DISCONNECTED, 5), run.describe()
    assert p.last_code(call) == 200
    assert p.run_until(lambda: run.returncode is not None, 10), run.describe()
    assert run.returncode == 0, run.describe()
    p.close()
    assert heard(p, THEIR_TONE) >= 2.0
    assert heard(p, OUR_TONE) == 0.0  # our own tone never reaches our speaker


@pytest.mark.interop
@pytest.mark.parametrize("path", ["direct", "kamailio"])
def test_sipp_echoes_our_tone(
    loop: Loop,
    phone: Callable[..., MediaPhone],
    sipp: Any,
    kamailio_server: Any,
    path: str,
) -> None:
    p = phone()
    kam = kamailio_server() if path == "kamailio" else None
    run = sipp("uas_call_media_bye", render={"hold_ms": 500}, extra_args=["-rtp_echo"])
    call = _call_sipp(p, kam, run.port, path)
    assert p.run_until(lambda: p.state(call) is S.CONFIRMED, 10), run.describe()
    assert p.run_until(lambda: p.packets_received(call) >= 125, 8), (
        p.packets_received(call),
        run.describe(),
    )
    p.calls.call_hangup(call)
    assert p.run_until(lambda: p.state(call) is S.DISCONNECTED, 5), run.describe()
    assert p.run_until(lambda: run.returncode is not None, 10), run.describe()
    assert run.returncode == 0, run.describe()
    p.close()
    assert heard(p, OUR_TONE) >= 1.5
    assert heard(p, THEIR_TONE) == 0.0


# -- SIPp calls us -------------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.parametrize("path", ["direct", "kamailio"])
def test_sipp_calls_us_plays_pcap_and_hangs_up(
    loop: Loop,
    phone: Callable[..., MediaPhone],
    sipp: Any,
    kamailio_server: Any,
    tone_pcap: Path,
    path: str,
) -> None:
    p = phone(auto_answer=True)
    render = {"pcap": str(tone_pcap), "play_ms": 3500}
    if path == "direct":
        run = sipp("uac_call_play_pcap_bye", remote=("127.0.0.1", p.port), render=render)
    else:
        kam = kamailio_server({"bob": "b0b"})
        via_kamailio(p, kam, "bob", "b0b")
        run = sipp(
            "uac_call_play_pcap_bye", remote=(kam.host, kam.port), service="bob", render=render
        )
    assert p.run_until(lambda: bool(p.incoming()), 10), run.describe()
    call = p.incoming()[0].call_id
    # SIPp hangs up after play_ms: its BYE ends the call
    assert p.run_until(lambda: p.state(call) is S.DISCONNECTED, 15), run.describe()
    assert p.states(call) == [S.INCOMING, S.CONNECTING, S.CONFIRMED, S.DISCONNECTED]
    assert p.last_code(call) == 200
    assert p.run_until(lambda: run.returncode is not None, 10), run.describe()
    assert run.returncode == 0, run.describe()
    assert any(m.first_line.startswith("BYE") for m in run.sent()), run.describe()
    p.close()
    assert heard(p, THEIR_TONE) >= 2.0
    assert heard(p, OUR_TONE) == 0.0
