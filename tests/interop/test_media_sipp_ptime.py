"""SIPp plays packets longer than our 20 ms tick (issue 4: receive any ptime), on 127.0.0.1.

Old PBXes send G.711 with ``a=ptime:30``, desk phones 40 ms. SIPp's
``play_pcap_audio`` replays a capture packet by packet at its recorded pace,
so a capture of 30 or 40 ms PCMU packets makes SIPp such a peer. The capture
is cut from the 20 ms one of :func:`media_tools.write_pcmu_pcap` (its audio is
mu-law encoded independently of sipstack), and read back with
:func:`media_tools.read_pcap_udp`, which checks the framing SIPp relies on.

Our side is the real thing (:class:`media_tools.MediaPhone`: call manager,
media factory, tone microphone, WAV speaker). The recording must hold the
1000 Hz tone: each packet was cut into 10 ms (30 ms packets) or 20 ms (40 ms
packets) frames for the jitter buffer, and played in 20 ms ticks.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sipstack.invite_events import InviteState
from sipstack.loop import Loop

from .media_tools import (
    MediaPhone,
    dominant_blocks,
    read_pcap_udp,
    write_pcmu_pcap,
)

S = InviteState
RATE = 8000
THEIR_TONE = 1000.0
OUR_TONE = 440
CANDIDATES = [300.0, OUR_TONE, 700.0, THEIR_TONE, 1400.0, 2000.0]
SECONDS = 3.6  # a multiple of 30, 40 and 20 ms
SSRC = 0x5EED0030


def _capture(tmp_path: Path, packet_ms: int) -> Path:
    path = tmp_path / f"tone-{packet_ms}ms.pcap"
    written = write_pcmu_pcap(
        path, THEIR_TONE, SECONDS, packet_ms=packet_ms, first_seq=2000, ssrc=SSRC
    )
    assert written == round(SECONDS * 1000 / packet_ms)
    return path


@pytest.mark.parametrize("packet_ms", [30, 40])
def test_long_packet_capture_is_framed_as_sipp_expects(tmp_path: Path, packet_ms: int) -> None:
    packets = read_pcap_udp(_capture(tmp_path, packet_ms))  # lengths, IPv4/UDP checksums
    size = RATE * packet_ms // 1000
    assert {len(p.payload) for p in packets} == {12 + size}
    assert round(packets[1].time - packets[0].time, 3) == packet_ms / 1000
    heads = [struct.unpack("!BBHII", p.payload[:12]) for p in packets]
    assert [h[3] for h in heads[:3]] == [0, size, 2 * size]
    assert [h[2] for h in heads[:3]] == [2000, 2001, 2002]
    pcm = [s for p in packets for s in _ulaw_to_linear(p.payload[12:])]
    assert dominant_blocks(pcm, RATE, THEIR_TONE, CANDIDATES) == pytest.approx(SECONDS)


def _ulaw_to_linear(data: bytes) -> list[int]:
    from sipstack.codec_g711 import ulaw_decode

    pcm = ulaw_decode(data)
    return list(struct.unpack(f"={len(pcm) // 2}h", pcm))


@pytest.mark.interop
@pytest.mark.parametrize("packet_ms", [30, 40])
def test_sipp_plays_long_packets_and_we_hear_them(
    loop: Loop,
    phone: Callable[..., MediaPhone],
    sipp: Any,
    tmp_path: Path,
    packet_ms: int,
) -> None:
    p = phone()
    pcap = _capture(tmp_path, packet_ms)
    run = sipp("uas_call_play_pcap_bye", render={"pcap": str(pcap), "hold_ms": 500})
    call = p.calls.call_make_call(p.local_acc, f"sip:service@127.0.0.1:{run.port}")
    assert p.run_until(lambda: p.state(call) is S.CONFIRMED, 10), run.describe()
    assert p.calls.call_get_info(call).codec == "PCMU/8000"
    wanted = round(2.7 * 1000 / packet_ms)  # 2.7 s of the 3.6 s capture
    assert p.run_until(lambda: p.packets_received(call) >= wanted, 8), (
        p.packets_received(call),
        run.describe(),
    )
    stats = p.media.rtp_stats(call)
    assert stats is not None and stats.jitter is not None and stats.rtp is not None
    assert stats.refused_duration == 0
    assert stats.rtp.octets_received == stats.rtp.packets_received * RATE * packet_ms // 1000
    # loopback loses nothing: no frame of a long packet was concealed
    assert stats.rtp.cumulative_lost == 0 and stats.jitter.lost == 0
    p.calls.call_hangup(call)
    assert p.run_until(lambda: p.state(call) is S.DISCONNECTED, 5), run.describe()
    assert p.run_until(lambda: run.returncode is not None, 10), run.describe()
    assert run.returncode == 0, run.describe()
    p.close()
    assert heard(p, THEIR_TONE) >= 2.0
    assert heard(p, OUR_TONE) == 0.0


def heard(p: MediaPhone, freq: float) -> float:
    """Seconds of our finished recording in which ``freq`` dominates."""
    rate, samples = p.recording()
    assert rate == RATE
    return dominant_blocks(samples, rate, freq, CANDIDATES)
