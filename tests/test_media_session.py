"""MediaSession on real loopback sockets, paced by a real loop timer clock.

Two sessions exchange a 1 kHz tone both ways for about a second per test; the
received audio is checked with a Goertzel filter. Also: RFC 4733 digits both
ways, hold (no audio, RTCP goes on), latching to the port a peer really sends
from, a stray source that must not steal the stream, SRTP, and port allocation.
"""

from __future__ import annotations

import contextlib
import math
import random
import selectors
import socket
import sys
import time
import wave
from array import array
from collections.abc import Iterator
from pathlib import Path

import pytest

from sipstack import codec_g722, codec_opus, records
from sipstack.codec_g711 import ulaw_decode, ulaw_encode
from sipstack.codecs import default_registry
from sipstack.loop import Loop
from sipstack.media_factory import (
    CallMediaEvent,
    CallSignalling,
    RtpMediaFactory,
    file_endpoint,
)
from sipstack.media_graph import MediaClock
from sipstack.media_session import (
    DtmfNotNegotiatedError,
    DtmfReceived,
    MediaEvent,
    MediaLatched,
    MediaSession,
    MediaState,
    RemoteBye,
    RtpPortAllocator,
)
from sipstack.offer_answer import (
    CodecSpec,
    LocalMedia,
    NegotiatedMedia,
    create_answer,
    create_offer,
    process_answer,
)
from sipstack.rtp import build_rtp
from sipstack.sdp import Direction
from sipstack.srtp import (
    CryptoSuite,
    SecureSignaling,
    SrtpMode,
    SrtpNegotiationError,
    SrtpPolicy,
)
from sipstack.tones import ToneGenerator, ToneSegment, ToneSpec
from sipstack.wav_io import WavRecorder

PTIME = 0.02
HOST = "127.0.0.1"


def goertzel_power(pcm: bytes, rate: int, freq: float) -> float:
    """Normalised power of ``freq`` in 16-bit PCM (Goertzel algorithm)."""
    samples = array("h")
    samples.frombytes(pcm)
    coeff = 2.0 * math.cos(2.0 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    n = max(1, len(samples))
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)


def tone_dominates(pcm: bytes, rate: int, freq: float = 1000.0) -> bool:
    """``freq`` carries far more power than other frequencies, and is loud enough."""
    target = goertzel_power(pcm, rate, freq)
    probes = (440.0, 600.0, 700.0, 1000.0, 1400.0, 2500.0)
    others = [goertzel_power(pcm, rate, f) for f in probes if abs(f - freq) > 50]
    # a -13 dBFS sine of amplitude ~7300 gives (A/2)^2 ~ 1.3e7
    return target > 1e6 and target > 50 * max(others)


class Peer:
    """One side: a session, a tone source, a record of what it heard and its events."""

    def __init__(
        self,
        loop: Loop,
        ports: RtpPortAllocator,
        *,
        codecs: tuple[str, ...] = ("PCMU",),
        latch_after: int = 4,
        seed: int = 1,
    ) -> None:
        self.events: list[MediaEvent] = []
        self.registry = default_registry()
        self.session = MediaSession(
            loop,
            self.registry,
            host=HOST,
            ports=ports,
            on_event=self.events.append,
            rng=random.Random(seed),
            latch_after=latch_after,
            rtcp_interval=0.2,
        )
        self.codecs = tuple(
            CodecSpec(info.name, info.clock_rate)
            for name in codecs
            if (info := self.registry.find(name)) is not None
        )
        self.heard: list[bytes] = []
        self.tone: ToneGenerator | None = None
        self.talking = True

    def local(self, direction: Direction = Direction.SENDRECV) -> LocalMedia:
        return LocalMedia(HOST, self.session.local_port, self.codecs, direction=direction)

    def start_tone(self, freq: int = 1000) -> None:
        rate = self.session.sample_rate
        samples = self.session.frame_samples
        assert rate is not None and samples is not None
        self.tone = ToneGenerator(rate, samples)
        self.tone.play(ToneSpec("test", (ToneSegment((freq,), 1000),)))

    def tick(self, now: float) -> None:
        frame = self.tone.read(now) if self.tone is not None and self.talking else None
        self.session.write(frame, now)
        heard = self.session.read(now)
        self.heard.append(heard if heard is not None else b"")

    def digits(self) -> str:
        return "".join(e.digit for e in self.events if isinstance(e, DtmfReceived))


def negotiate(
    a: Peer,
    b: Peer,
    a_dir: Direction = Direction.SENDRECV,
    b_dir: Direction = Direction.SENDRECV,
) -> tuple[NegotiatedMedia, NegotiatedMedia]:
    """RFC 3264 offer from ``a``, answer from ``b``: both sides' outcomes."""
    offer = create_offer(a.local(a_dir), 1, 1)
    answer, for_b = create_answer(offer, b.local(b_dir), 2, 1)
    for_a = process_answer(offer, answer)
    assert for_a is not None and for_b is not None
    return for_a, for_b


@pytest.fixture
def loop() -> Iterator[Loop]:
    with Loop() as lp:
        yield lp


@pytest.fixture
def ports() -> RtpPortAllocator:
    # a range of its own, away from other tests' ephemeral ports
    return RtpPortAllocator(47000 + 2 * random.randrange(500), 48999)


def run_clock(loop: Loop, peers: list[Peer], seconds: float) -> MediaClock:
    """Tick every peer once per 20 ms from loop timers for ``seconds`` of loop time."""

    def on_tick(now: float) -> None:
        for peer in peers:
            peer.tick(now)

    clock = MediaClock(PTIME, on_tick)
    clock.start_timer(loop)
    loop.run_until(lambda: False, seconds)
    clock.stop()
    return clock


def run_more(loop: Loop, clock: MediaClock, seconds: float) -> None:
    clock.start_timer(loop)
    loop.run_until(lambda: False, seconds)
    clock.stop()


def audio_of(peer: Peer, last: int) -> bytes:
    return b"".join(peer.heard[-last:])


def close_all(*peers: Peer) -> None:
    for peer in peers:
        peer.session.close()


# -- the tone both ways -----------------------------------------------------------------

CODECS = ["PCMU", "PCMA"] + (["G722"] if codec_g722.available() else [])


@pytest.mark.parametrize("codec", CODECS)
def test_tone_both_ways_at_50_packets_per_second(
    loop: Loop, ports: RtpPortAllocator, codec: str
) -> None:
    a, b = Peer(loop, ports, codecs=(codec,), seed=1), Peer(loop, ports, codecs=(codec,), seed=2)
    for_a, for_b = negotiate(a, b)
    assert for_a.codec.name.upper() == codec
    a.session.apply(for_a)
    b.session.apply(for_b)
    a.start_tone()
    b.start_tone()
    started = loop.time()
    clock = run_clock(loop, [a, b], 1.5)
    elapsed = loop.time() - started
    rate = a.session.sample_rate
    assert rate == (16000 if codec == "G722" else 8000)
    for listener in (a, b):
        # the last half second: the jitter buffer has long started playing
        assert tone_dominates(audio_of(listener, 25), rate)
    sa, sb = a.session.stats(), b.session.stats()
    assert sa.rtp is not None and sb.rtp is not None
    # one packet per tick each way: 50 packets/s on the clock's 20 ms grid
    assert sa.rtp.packets_sent == clock.ticks == sb.rtp.packets_sent
    # paced by the loop's clock (which a busy machine may stretch), not by a count
    assert abs(clock.ticks - elapsed / PTIME) <= 2
    # loopback loses nothing; at most a packet or two is still in flight
    assert clock.ticks - 2 <= sb.rtp.packets_received <= sa.rtp.packets_sent
    assert clock.ticks - 2 <= sa.rtp.packets_received <= sb.rtp.packets_sent
    assert sb.rtp.cumulative_lost == 0 and sa.rtp.cumulative_lost == 0
    assert sb.jitter is not None and sb.jitter.played > 0.5 * clock.ticks
    assert sb.jitter.current_delay < 0.2
    # RTCP every ~0.2 s: each side has the other's report about its stream, and an RTT
    assert sa.rtp.rtt is not None and 0 <= sa.rtp.rtt < 0.1
    assert sb.rtp.remote_cumulative_lost == 0
    assert sa.codec == codec and sa.direction is Direction.SENDRECV
    close_all(a, b)


def test_close_sends_rtcp_bye_and_releases_the_ports(loop: Loop, ports: RtpPortAllocator) -> None:
    a, b = Peer(loop, ports, seed=1), Peer(loop, ports, seed=2)
    for_a, for_b = negotiate(a, b)
    a.session.apply(for_a)
    b.session.apply(for_b)
    run_clock(loop, [a, b], 0.3)
    port = a.session.local_port
    a.session.close("bye now")
    a.session.close()  # idempotent
    assert a.session.state is MediaState.CLOSED
    loop.run_until(lambda: any(isinstance(e, RemoteBye) for e in b.events), 1.0)
    assert RemoteBye("bye now") in b.events
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((HOST, port))  # free again
    b.session.close()


# -- DTMF -------------------------------------------------------------------------------


def test_dtmf_digits_both_ways_arrive_in_order(loop: Loop, ports: RtpPortAllocator) -> None:
    a, b = Peer(loop, ports, seed=3), Peer(loop, ports, seed=4)
    for_a, for_b = negotiate(a, b)
    assert for_a.telephone_event_pt is not None
    a.session.apply(for_a)
    b.session.apply(for_b)
    a.start_tone()
    b.start_tone()
    a.session.send_dtmf("1234#", duration=0.06)
    b.session.send_dtmf("*90AD", duration=0.06)
    with pytest.raises(ValueError):
        a.session.send_dtmf("x")
    run_clock(loop, [a, b], 1.6)
    assert b.digits() == "1234#"
    assert a.digits() == "*90AD"
    durations = {e.duration_ms for e in b.events if isinstance(e, DtmfReceived)}
    assert durations == {60}
    assert a.session.stats().dtmf_received == 5 and a.session.stats().dtmf_sent == 5
    # the audio carries on around the digits
    assert tone_dominates(audio_of(a, 10), 8000)
    close_all(a, b)


def test_dtmf_without_telephone_event_raises(loop: Loop, ports: RtpPortAllocator) -> None:
    a, b = Peer(loop, ports, seed=5), Peer(loop, ports, seed=6)
    offer = create_offer(records.replace(a.local(), telephone_event=False), 1, 1)
    answer, for_b = create_answer(offer, b.local(), 2, 1)
    assert for_b is not None and for_b.telephone_event_pt is None
    b.session.apply(for_b)
    with pytest.raises(DtmfNotNegotiatedError):
        b.session.send_dtmf("1")
    close_all(a, b)


# -- hold -------------------------------------------------------------------------------


def test_hold_stops_audio_and_keeps_rtcp(loop: Loop, ports: RtpPortAllocator) -> None:
    a, b = Peer(loop, ports, seed=7), Peer(loop, ports, seed=8)
    for_a, for_b = negotiate(a, b)
    a.session.apply(for_a)
    b.session.apply(for_b)
    a.start_tone()
    b.start_tone()
    clock = run_clock(loop, [a, b], 0.6)
    assert tone_dominates(audio_of(a, 10), 8000)
    # a puts b on hold (RFC 3264 8.4): a sendonly, b answers recvonly
    hold_a, hold_b = negotiate(a, b, a_dir=Direction.SENDONLY)
    assert hold_a.direction is Direction.SENDONLY and hold_b.direction is Direction.RECVONLY
    a.session.apply(hold_a)
    b.session.apply(hold_b)
    before = b.session.stats()
    rtt_before = a.session.stats()
    a.heard.clear()
    run_more(loop, clock, 0.8)
    after = b.session.stats()
    assert after.rtp is not None and before.rtp is not None
    assert after.rtp.packets_sent == before.rtp.packets_sent  # b sends no audio on hold
    assert after.direction is Direction.RECVONLY
    # a hears nothing (silence), b still hears a's music on hold
    assert all(f == b"" for f in a.heard[10:])
    assert tone_dominates(audio_of(b, 10), 8000)
    # RTCP kept flowing both ways: b's reports still reach a
    a_rtp = a.session.stats().rtp
    assert a_rtp is not None and rtt_before.rtp is not None
    assert a_rtp.remote_jitter is not None
    # both inactive: no audio either way, RTCP still runs
    off_a, off_b = negotiate(a, b, a_dir=Direction.INACTIVE)
    a.session.apply(off_a)
    b.session.apply(off_b)
    sent_a = a.session.stats().rtp
    b.heard.clear()
    run_more(loop, clock, 0.5)
    assert all(f == b"" for f in b.heard[5:])
    now_a = a.session.stats().rtp
    assert sent_a is not None and now_a is not None
    assert now_a.packets_sent == sent_a.packets_sent
    # unhold: audio comes back
    on_a, on_b = negotiate(a, b)
    a.session.apply(on_a)
    b.session.apply(on_b)
    run_more(loop, clock, 0.8)
    assert tone_dominates(audio_of(a, 10), 8000)
    assert tone_dominates(audio_of(b, 10), 8000)
    close_all(a, b)


# -- latching and strangers ---------------------------------------------------------------


def test_latches_to_the_port_the_peer_really_sends_from(
    loop: Loop, ports: RtpPortAllocator
) -> None:
    a, b = Peer(loop, ports, seed=9), Peer(loop, ports, seed=10, latch_after=4)
    for_a, for_b = negotiate(a, b)
    # b was told a wrong port for a (a NAT rewrote it): b's packets go nowhere
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind((HOST, 0))
        wrong = dead.getsockname()[1]
        b.session.apply(records.replace(for_b, remote_port=wrong, remote_rtcp_port=wrong))
        a.session.apply(for_a)
        a.start_tone()
        b.start_tone()
        run_clock(loop, [a, b], 1.2)
        dead.setblocking(False)
        misdirected = 0
        while True:
            try:
                dead.recv(2048)
            except BlockingIOError:
                break
            misdirected += 1
    real = (HOST, a.session.local_port)
    latched = [e for e in b.events if isinstance(e, MediaLatched)]
    assert latched == [MediaLatched(real)]
    # b sent to the SDP port only until a's 4th packet in sequence latched it
    assert 1 <= misdirected <= 6
    stats = b.session.stats()
    assert stats.remote_rtp == real
    assert stats.rtp is not None and stats.rtp.rejected == 3  # probation: 3 dropped
    # symmetric RTP: a hears b's tone, coming from b's receive port
    assert tone_dominates(audio_of(a, 25), 8000)
    close_all(a, b)


def test_stray_source_is_ignored(loop: Loop, ports: RtpPortAllocator) -> None:
    a, b = Peer(loop, ports, seed=11), Peer(loop, ports, seed=12)
    for_a, for_b = negotiate(a, b)
    a.session.apply(for_a)
    b.session.apply(for_b)
    a.start_tone()
    stray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stray.bind((HOST, 0))
    seq = [0]
    noise = bytes([0x00, 0x80] * 80)  # loud PCMU garbage, in sequence, from elsewhere

    def tick_with_stray(now: float) -> None:
        a.tick(now)
        b.tick(now)
        if now > 0.3 + start:  # after the real source is established
            stray.sendto(
                build_rtp(0, seq[0], seq[0] * 160, 0xBADBAD, noise), (HOST, b.session.local_port)
            )
            seq[0] += 1

    start = loop.time()
    clock = MediaClock(PTIME, tick_with_stray)
    clock.start_timer(loop)
    loop.run_until(lambda: False, 1.5)
    clock.stop()
    stray_addr = stray.getsockname()
    stray.close()
    assert seq[0] > 30
    assert not any(isinstance(e, MediaLatched) and e.addr == stray_addr for e in b.events)
    stats = b.session.stats()
    assert stats.rtp is not None and stats.rtp.rejected >= seq[0] - 1
    assert stats.remote_rtp == (HOST, a.session.local_port)
    assert tone_dominates(audio_of(b, 25), 8000)
    close_all(a, b)


# -- SRTP -------------------------------------------------------------------------------


def test_srtp_protects_both_ways_and_drops_plain_rtp(loop: Loop, ports: RtpPortAllocator) -> None:
    srtp = pytest.importorskip("sipstack.srtp")
    a, b = Peer(loop, ports, seed=13), Peer(loop, ports, seed=14)
    for_a, for_b = negotiate(a, b)
    key_a = srtp.generate_crypto(srtp.CryptoSuite.AES_CM_128_HMAC_SHA1_80, 1)
    key_b = srtp.generate_crypto(srtp.CryptoSuite.AES_CM_128_HMAC_SHA1_80, 1)
    a.session.apply(for_a, srtp.SrtpContext(key_a, key_b))
    b.session.apply(for_b, srtp.SrtpContext(key_b, key_a))
    a.start_tone()
    b.start_tone()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        for i in range(5):
            plain.sendto(build_rtp(0, i, i * 160, 1234, bytes(160)), (HOST, b.session.local_port))
        run_clock(loop, [a, b], 1.2)
    assert tone_dominates(audio_of(a, 25), 8000)
    assert tone_dominates(audio_of(b, 25), 8000)
    assert b.session.stats().srtp_failures == 5
    close_all(a, b)


# -- packet size: the peer's a=ptime (RFC 8866 6.4) -----------------------------------------


def _raw_peer_media(port: int, codec: str, ptime: int) -> NegotiatedMedia:
    pt = 0 if codec == "PCMU" else 9
    return NegotiatedMedia(
        remote_address=HOST,
        remote_port=port,
        remote_rtcp_port=port + 1,
        codec=CodecSpec(codec, 8000, payload_type=pt),
        telephone_event_pt=101,
        ptime=ptime,
        direction=Direction.SENDRECV,
        on_hold_by_remote=False,
    )


def _sent_packets(sock: socket.socket) -> list[tuple[int, int, int, bytes]]:
    """(marker+pt, seq, timestamp, payload) of every packet waiting on ``sock``."""
    got = []
    with contextlib.suppress(BlockingIOError):
        while True:
            data = sock.recv(2048)
            got.append((data[1], int.from_bytes(data[2:4]), int.from_bytes(data[4:8]), data[12:]))
    return got


@pytest.mark.parametrize(
    ("codec", "ptime", "ticks", "sizes"),
    [
        ("PCMU", 40, 6, [320] * 3),
        ("PCMU", 30, 6, [240] * 4),  # two packets every three ticks
        ("PCMU", 10, 2, [80] * 4),  # two packets a tick
        ("PCMU", 20, 3, [160] * 3),
        ("PCMU", 250, 3, [160] * 3),  # beyond 120 ms: one frame per packet
    ]
    + ([("G722", 40, 4, [320] * 2)] if codec_g722.available() else []),
)
def test_packets_follow_the_peers_ptime(
    loop: Loop, ports: RtpPortAllocator, codec: str, ptime: int, ticks: int, sizes: list[int]
) -> None:
    a = Peer(loop, ports, codecs=(codec,), seed=31)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind((HOST, 0))
        raw.setblocking(False)
        a.session.apply(_raw_peer_media(raw.getsockname()[1], codec, ptime))
        a.start_tone()
        rate = 8000
        for n in range(ticks):
            a.tick(100.0 + n * PTIME)
        time.sleep(0.05)  # loopback delivery (no clock involved in what is checked)
        packets = _sent_packets(raw)
    assert [len(p[3]) for p in packets] == sizes
    first_ts = packets[0][2]
    # RTP timestamps advance by the samples each packet carries; sequence by one
    assert [p[2] - first_ts for p in packets] == [sum(sizes[:i]) for i in range(len(sizes))]
    assert [p[1] - packets[0][1] for p in packets] == list(range(len(packets)))
    assert packets[0][0] & 0x80 and not any(p[0] & 0x80 for p in packets[1:])
    if codec == "PCMU":  # the cut packets still carry the tone, sample for sample
        pcm = b"".join(ulaw_decode(p[3]) for p in packets)
        assert tone_dominates(pcm, rate)
    a.session.close()


def test_repacketising_gives_way_to_dtmf_and_hold(loop: Loop, ports: RtpPortAllocator) -> None:
    a = Peer(loop, ports, seed=32)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.bind((HOST, 0))
        raw.setblocking(False)
        media = _raw_peer_media(raw.getsockname()[1], "PCMU", 40)
        a.session.apply(media)
        a.start_tone()
        a.tick(100.0)  # half a packet waits
        a.session.send_dtmf("5", duration=0.04)
        for n in range(1, 6):
            a.tick(100.0 + n * PTIME)
        a.session.apply(records.replace(media, direction=Direction.RECVONLY))
        a.tick(100.2)
        a.session.apply(media)  # unhold
        for n in range(2):
            a.tick(100.3 + n * PTIME)
        time.sleep(0.05)
        packets = _sent_packets(raw)
    kinds = [(p[0] & 0x7F, len(p[3])) for p in packets]
    events = [k for k in kinds if k[0] == 101]
    audio = [k for k in kinds if k[0] == 0]
    assert events and all(size == 4 for _, size in events)
    # audio resumes in whole 40 ms packets; the half packet before the digit was dropped
    assert audio and all(size == 320 for _, size in audio)
    # The digit starts at its tick (the half packet before it is dropped, not sent
    # late), and RFC 3550 5.1: the clock ran on through all that was not sent, so
    # the last packet (ticks 7-8) starts six ticks after the digit (tick 1).
    last_audio = [p for p in packets if p[0] & 0x7F == 0][-1]
    assert packets[0][0] & 0x7F == 101
    assert last_audio[2] - packets[0][2] == 6 * 160
    a.session.close()


# -- ports ------------------------------------------------------------------------------


def test_port_allocator_skips_taken_ports_and_pairs_even_odd() -> None:
    base = 46000 + 2 * random.randrange(400)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind((HOST, base + 1))  # the RTCP half of the first pair is taken
        alloc = RtpPortAllocator(base, base + 7)
        rtp, rtcp = alloc.bind(HOST)
        assert rtp.getsockname()[1] == base + 2 and rtcp.getsockname()[1] == base + 3
        rtp2, rtcp2 = alloc.bind(HOST)  # continues after the last pair
        assert rtp2.getsockname()[1] == base + 4
        rtp3, rtcp3 = alloc.bind(HOST)
        assert rtp3.getsockname()[1] == base + 6
        with pytest.raises(OSError, match="no free RTP port pair"):
            alloc.bind(HOST)
        for s in (rtp, rtcp, rtp2, rtcp2, rtp3, rtcp3):
            s.close()
    assert RtpPortAllocator(40001, 40010).first == 40002
    with pytest.raises(ValueError):
        RtpPortAllocator(5000, 4000)


def test_apply_after_close_is_a_bug(loop: Loop, ports: RtpPortAllocator) -> None:
    a, b = Peer(loop, ports, seed=15), Peer(loop, ports, seed=16)
    for_a, _ = negotiate(a, b)
    a.session.close()
    with pytest.raises(RuntimeError):
        a.session.apply(for_a)
    assert a.session.read(loop.time()) is None
    b.session.close()


# -- the factory: calls plugged into the audio graph ----------------------------------------


def _read_wav(path: Path) -> tuple[int, bytes]:
    with wave.open(str(path), "rb") as wav:
        return wav.getframerate(), wav.readframes(wav.getnframes())


@pytest.mark.parametrize("codec", ["PCMU"] + (["G722"] if codec_g722.available() else []))
def test_factory_call_between_two_file_endpoints(
    loop: Loop, ports: RtpPortAllocator, tmp_path: Path, codec: str
) -> None:
    rate, frame = 16000, 320
    ends = {
        "a": file_endpoint(rate, frame, tone_hz=1000, record=tmp_path / "a.wav"),
        "b": file_endpoint(rate, frame, tone_hz=600, record=tmp_path / "b.wav"),
    }
    events: list[CallMediaEvent] = []
    fa, fb = (
        RtpMediaFactory(
            loop,
            ports=ports,
            codecs=(codec,),
            endpoint=ends[name],
            rtcp_interval=0.2,
            rng=random.Random(seed),
            on_event=events.append,
        )
        for name, seed in (("a", 21), ("b", 22))
    )
    digits: list[tuple[int, str, int]] = []
    fa.on_dtmf = lambda call, digit, ms: digits.append((call, digit, ms))
    local_a = fa.create_local_media(3)
    assert fa.create_local_media(3).port == local_a.port  # one socket pair per call
    assert [c.name for c in local_a.codecs] == [codec]
    local_b = fb.create_local_media(0)
    offer = create_offer(local_a, 1, 1)
    answer, for_b = create_answer(offer, local_b, 2, 1)
    for_a = process_answer(offer, answer)
    assert for_a is not None and for_b is not None
    fa.on_negotiated(3, for_a)
    fb.on_negotiated(0, for_b)
    assert fb.send_dtmf(0, "7*") and not fb.send_dtmf(9, "1")
    loop.run_until(lambda: False, 1.5)
    stats = fa.rtp_stats(3)
    assert stats is not None and stats.codec == codec and stats.rtp is not None
    assert stats.rtp.packets_received > 60
    assert fa.slot(3) is not None and fa.session(3) is not None
    fa.close(3)
    fb.close_all()
    assert fa.session(3) is None and fa.rtp_stats(3) is None
    for end in ends.values():
        assert isinstance(end.sink, WavRecorder)
        end.sink.close()
        assert end.sink.wait_closed(5.0)
    # a hears b's 600 Hz and b hears a's 1 kHz, through codec and resampler
    got_rate, heard_a = _read_wav(tmp_path / "a.wav")
    assert got_rate == rate
    tail_a = heard_a[-2 * rate // 2 :]  # the last half second
    assert tone_dominates(tail_a, rate, 600.0)
    _, heard_b = _read_wav(tmp_path / "b.wav")
    assert tone_dominates(heard_b[-2 * rate // 2 :], rate, 1000.0)
    assert [d for _, d, _ in digits] == ["7", "*"] and {c for c, _, _ in digits} == {3}
    assert any(e.call_id == 3 and isinstance(e.event, DtmfReceived) for e in events)


# -- the factory's SRTP policy (PJSUA use_srtp / srtp_secure_signaling) --------------------

UDP_OUT = CallSignalling(tls=False, sips=False, incoming=False)
UDP_IN = CallSignalling(tls=False, sips=False, incoming=True)
TLS_OUT = CallSignalling(tls=True, sips=False, incoming=False)


def _srtp_factory(
    loop: Loop, ports: RtpPortAllocator, policy: SrtpPolicy, how: CallSignalling | None
) -> RtpMediaFactory:
    return RtpMediaFactory(
        loop,
        ports=ports,
        codecs=("PCMU",),
        srtp=policy,
        signalling_of=(lambda _call: how) if how is not None else None,
        rng=random.Random(5),
    )


@pytest.mark.parametrize("mode", [SrtpMode.OPTIONAL, SrtpMode.MANDATORY])
def test_factory_makes_no_call_that_would_send_keys_in_clear(
    loop: Loop, ports: RtpPortAllocator, mode: SrtpMode
) -> None:
    factory = _srtp_factory(loop, ports, SrtpPolicy(mode, SecureSignaling.TLS), UDP_OUT)
    with pytest.raises(SrtpNegotiationError, match="srtp_secure_signaling=1") as info:
        factory.create_local_media(0)
    assert info.value.status == 488
    assert factory.session(0) is None  # nothing bound, nothing to close


@pytest.mark.parametrize("mode", [SrtpMode.OPTIONAL, SrtpMode.MANDATORY])
def test_factory_answers_an_insecure_incoming_call_488(
    loop: Loop, ports: RtpPortAllocator, mode: SrtpMode
) -> None:
    factory = _srtp_factory(loop, ports, SrtpPolicy(mode, SecureSignaling.TLS), UDP_IN)
    ours = factory.create_local_media(1)
    assert ours.crypto == () and ours.srtp_mode is SrtpMode.MANDATORY
    peer = LocalMedia(HOST, 40000, [CodecSpec("PCMU", 8000)], crypto=None)
    answer, negotiated = create_answer(create_offer(peer, 1, 1), ours, 2, 1)
    assert negotiated is None and answer.media[0].port == 0  # the call layer sends 488
    factory.close_all()


def test_factory_sends_keys_when_signalling_is_secure_enough(
    loop: Loop, ports: RtpPortAllocator
) -> None:
    suites = (CryptoSuite.AES_CM_128_HMAC_SHA1_80, CryptoSuite.AEAD_AES_128_GCM)
    policy = SrtpPolicy(SrtpMode.OPTIONAL, SecureSignaling.TLS, suites)
    factory = _srtp_factory(loop, ports, policy, TLS_OUT)
    ours = factory.create_local_media(0)
    assert ours.srtp_mode is SrtpMode.OPTIONAL
    assert [c.split()[:2] for c in ours.crypto or ()] == [
        ["1", "AES_CM_128_HMAC_SHA1_80"],
        ["2", "AEAD_AES_128_GCM"],
    ]
    assert create_offer(ours, 1, 1).media[0].proto == "RTP/AVP"
    assert factory.create_local_media(0).crypto == ours.crypto  # same keys on re-offers
    sips_only = _srtp_factory(
        loop, ports, SrtpPolicy(SrtpMode.MANDATORY, SecureSignaling.SIPS), TLS_OUT
    )
    with pytest.raises(SrtpNegotiationError, match="SIPS required"):
        sips_only.create_local_media(0)
    factory.close_all()


def test_factory_needs_to_know_the_signalling_to_apply_the_rule(
    loop: Loop, ports: RtpPortAllocator
) -> None:
    factory = _srtp_factory(loop, ports, SrtpPolicy(SrtpMode.OPTIONAL), None)
    with pytest.raises(ValueError, match="needs signalling_of"):
        factory.create_local_media(0)
    # srtp=True: best effort on any signalling (tests; keys travel in clear)
    anywhere = RtpMediaFactory(loop, ports=ports, codecs=("PCMU",), srtp=True)
    ours = anywhere.create_local_media(0)
    assert ours.srtp_mode is SrtpMode.OPTIONAL and ours.crypto
    plain = RtpMediaFactory(loop, ports=ports, codecs=("PCMU",))
    assert plain.create_local_media(0).srtp_mode is SrtpMode.DISABLED
    anywhere.close_all()
    plain.close_all()


def test_factories_key_srtp_from_a_best_effort_offer(loop: Loop, ports: RtpPortAllocator) -> None:
    policy = SrtpPolicy(SrtpMode.OPTIONAL, SecureSignaling.NONE)
    fa = RtpMediaFactory(loop, ports=ports, codecs=("PCMU",), srtp=policy, rng=random.Random(1))
    fb = RtpMediaFactory(loop, ports=ports, codecs=("PCMU",), srtp=policy, rng=random.Random(2))
    offer = create_offer(fa.create_local_media(0), 1, 1)
    assert offer.media[0].proto == "RTP/AVP" and offer.media[0].crypto
    answer, for_b = create_answer(offer, fb.create_local_media(0), 2, 1)
    for_a = process_answer(offer, answer)
    assert for_a is not None and for_b is not None and for_a.remote_crypto is not None
    fa.on_negotiated(0, for_a)
    fb.on_negotiated(0, for_b)
    loop.run_until(lambda: False, 0.6)
    stats_b = fb.rtp_stats(0)
    assert stats_b is not None and stats_b.rtp is not None
    assert stats_b.rtp.packets_received >= 20 and stats_b.srtp_failures == 0
    # b expects SRTP: a plain RTP packet to it fails authentication
    session_b = fb.session(0)
    assert session_b is not None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as plain:
        plain.sendto(build_rtp(0, 1, 160, 77, bytes(160)), (HOST, session_b.local_port))
        loop.run_until(lambda: False, 0.1)
    after = fb.rtp_stats(0)
    assert after is not None and after.srtp_failures == 1
    fa.close_all()
    fb.close_all()


# -- the receive path: read from the tick, kernel arrival times ------------------------------


class CountingSelector(selectors.DefaultSelector):
    """The loop's selector, counting how often the loop waits (its wake-ups)."""

    def __init__(self) -> None:
        super().__init__()
        self.waits = 0

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.waits += 1
        return list(super().select(timeout))


def test_a_call_wakes_the_loop_once_per_tick() -> None:
    """Once the graph reads the sessions, RTP is read in the tick: no wake-up of its own."""
    selector = CountingSelector()
    with Loop(selector=selector) as loop:
        ports = RtpPortAllocator(47000 + 2 * random.randrange(500), 48999)
        a, b = Peer(loop, ports, seed=31), Peer(loop, ports, seed=32)
        for_a, for_b = negotiate(a, b)
        a.session.apply(for_a)
        b.session.apply(for_b)
        a.start_tone()
        b.start_tone()
        clock = run_clock(loop, [a, b], 0.2)  # past the first reads
        before = selector.waits
        ticks = clock.ticks
        run_more(loop, clock, 1.0)
        ticks = clock.ticks - ticks
        waits = selector.waits - before
        sa, sb = a.session.stats(), b.session.stats()
        assert sa.rtp is not None and sb.rtp is not None
        assert sa.rtp.packets_received >= clock.ticks - 3 and sa.rtp.cumulative_lost == 0
        assert tone_dominates(audio_of(a, 25), 8000) and tone_dominates(audio_of(b, 25), 8000)
        # one wait per tick, plus RTCP (a report every ~0.2 s each way: timers and
        # datagrams); a reader per RTP socket would add a wake-up per packet (~2 per tick)
        assert ticks >= 45
        assert waits <= ticks + 30
        close_all(a, b)


def _one_way(
    loop: Loop, ports: RtpPortAllocator, *, kernel_timestamps: bool
) -> tuple[MediaSession, socket.socket]:
    """A session whose peer is a plain socket of the test (its SDP port is that socket's)."""
    session = MediaSession(
        loop, default_registry(), host=HOST, ports=ports, kernel_timestamps=kernel_timestamps
    )
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((HOST, 0))
    local = LocalMedia(HOST, session.local_port, (CodecSpec("PCMU", 8000),))
    remote = LocalMedia(HOST, peer.getsockname()[1], (CodecSpec("PCMU", 8000),))
    offer = create_offer(remote, 1, 1)
    _answer, negotiated = create_answer(offer, local, 2, 1)
    assert negotiated is not None
    session.apply(negotiated)
    return session, peer


@pytest.mark.parametrize("stamped", [True, False])
def test_arrival_times_come_from_the_kernel_when_it_stamps_datagrams(
    ports: RtpPortAllocator, stamped: bool
) -> None:
    """RFC 3550 A.8 jitter needs when a packet arrived, not when a tick got to it.

    The loop clock is frozen, so only kernel timestamps can tell that the third
    packet came 50 ms (real time: the kernel's clock) after the second, while
    its RTP timestamp says 20 ms: |D| = 30 ms. Read at one instant, D = -20 ms.
    """
    with Loop(clock=lambda: 100.0) as loop:
        session, peer = _one_way(loop, ports, kernel_timestamps=stamped)
        dest = (HOST, session.local_port)
        for seq in (1, 2):  # probation (A.1), then the first counted packet
            peer.sendto(build_rtp(0, seq, seq * 160, 0x5150, bytes(160)), dest)
        time.sleep(0.05)  # real time on purpose: it is the kernel's clock under test
        peer.sendto(build_rtp(0, 3, 3 * 160, 0x5150, bytes(160)), dest)
        session.read(100.0)
        stats = session.stats()
        assert stats.rtp is not None and stats.rtp.packets_received == 2
        d = 16 * stats.rtp.jitter  # J = |D| / 16 after one difference
        if stamped and sys.platform == "linux":
            assert 0.029 < d < 0.5
        else:
            assert d == pytest.approx(0.02)
        peer.close()
        session.close()


def test_a_backlog_is_drained_in_one_tick(ports: RtpPortAllocator) -> None:
    """Datagrams that waited longer than a tick all reach the jitter buffer at once."""
    with Loop() as loop:
        session, peer = _one_way(loop, ports, kernel_timestamps=True)
        dest = (HOST, session.local_port)
        for seq in range(1, 9):
            peer.sendto(build_rtp(0, seq, seq * 160, 0x5150, bytes(160)), dest)
        time.sleep(0.03)  # real time: older than one ptime by the kernel's clock
        session.read(loop.time())
        stats = session.stats()
        assert stats.rtp is not None and stats.rtp.packets_received == 7  # 1 in probation
        assert stats.jitter is not None and stats.jitter.received == 7
        peer.close()
        session.close()


def test_the_loop_reads_rtp_again_when_the_ticks_stop(loop: Loop, ports: RtpPortAllocator) -> None:
    """A session nobody reads any more still counts, latches and hears BYE."""
    a, b = Peer(loop, ports, seed=33), Peer(loop, ports, seed=34)
    for_a, for_b = negotiate(a, b)
    a.session.apply(for_a)
    b.session.apply(for_b)
    run_clock(loop, [a, b], 0.3)  # a and b now read RTP from their ticks
    received = b.session.stats().rtp
    assert received is not None and received.packets_received > 5
    # only a goes on sending (its own clock); b is no longer read by anyone
    sender = MediaClock(PTIME, lambda now: a.session.write(None, now))
    sender.start_timer(loop)
    loop.run_until(lambda: False, 1.0 + 2 * 0.2 * 1.5)  # READER_FALLBACK + RTCP intervals
    sender.stop()
    later = b.session.stats().rtp
    assert later is not None
    assert later.packets_received - received.packets_received >= 40
    close_all(a, b)


# -- receiving packets longer or shorter than a tick (issue 4) --------------------------

RX_LENGTHS = [("PCMU", 30), ("PCMU", 40), ("PCMA", 60), ("PCMU", 10), ("PCMU", 120)] + (
    [("G722", 30), ("G722", 40)] if codec_g722.available() else []
)


@pytest.mark.parametrize(("codec", "ptime"), RX_LENGTHS)
def test_a_peer_sending_longer_or_shorter_packets_is_heard(
    loop: Loop, ports: RtpPortAllocator, codec: str, ptime: int
) -> None:
    """b sends ``ptime`` ms packets (its peer asked for a=ptime); a plays them in 20 ms ticks."""
    a, b = Peer(loop, ports, codecs=(codec,), seed=41), Peer(loop, ports, codecs=(codec,), seed=42)
    for_a, for_b = negotiate(a, b)
    a.session.apply(for_a)
    b.session.apply(records.replace(for_b, ptime=ptime))  # as if a had said a=ptime
    b.start_tone()
    clock = run_clock(loop, [a, b], 1.5)
    rate = a.session.sample_rate
    assert rate is not None and a.session.frame_samples is not None
    # the last half second: every tick a whole frame of the tone, nothing concealed
    last = a.heard[-25:]
    assert all(len(frame) == 2 * a.session.frame_samples for frame in last)
    assert tone_dominates(b"".join(last), rate)
    sa, sb = a.session.stats(), b.session.stats()
    assert sa.rtp is not None and sb.rtp is not None and sa.jitter is not None
    # b really sent ptime-long packets: one every ptime / 20 ticks
    assert abs(sb.rtp.packets_sent - clock.ticks * PTIME * 1000 / ptime) <= 1
    assert sb.rtp.octets_sent == sb.rtp.packets_sent * 8 * ptime
    assert sa.rtp.cumulative_lost == 0 and sa.refused_duration == 0
    assert sa.jitter.lost == 0
    # RFC 3550 A.8 jitter stays per packet: a 40 ms packet is not 2 late 20 ms ones
    assert sa.rtp.jitter < 0.02
    close_all(a, b)


def _raw_sender(
    loop: Loop, ports: RtpPortAllocator, codec: str, *, opus: bool = False
) -> tuple[MediaSession, socket.socket, int]:
    """A session fed by a plain socket of the test; also the payload type to send."""
    registry = default_registry(opus=opus)
    session = MediaSession(loop, registry, host=HOST, ports=ports, kernel_timestamps=False)
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((HOST, 0))
    info = registry.find(codec)
    assert info is not None
    spec = CodecSpec(info.name, info.clock_rate)
    if info.channels is not None:
        spec = CodecSpec(info.name, info.clock_rate, channels=info.channels)
    offer = create_offer(LocalMedia(HOST, peer.getsockname()[1], (spec,)), 1, 1)
    _answer, negotiated = create_answer(offer, LocalMedia(HOST, session.local_port, (spec,)), 2, 1)
    assert negotiated is not None
    session.apply(negotiated)
    pt = negotiated.codec.payload_type
    if pt is None:
        pt = negotiated.codec.static_payload_type()
    assert pt is not None
    return session, peer, pt


def _play_raw(
    session: MediaSession,
    peer: socket.socket,
    packets: list[tuple[int, int, int, bytes] | None],
    ms: int,
    seconds: float,
    clock: list[float],
) -> list[bytes | None]:
    """Send ``(pt, seq, ts, payload)`` packets every ``ms`` (None: lost), read every tick.

    Time is the fake loop clock ``clock[0]``; loopback UDP is delivered within
    ``sendto``, so each tick reads what was sent before it.
    """
    dest = (HOST, session.local_port)
    heard: list[bytes | None] = []
    start = clock[0]
    sent = 0
    while clock[0] - start < seconds:
        while sent < len(packets) and sent * ms / 1000 <= clock[0] - start + 1e-9:
            if (packet := packets[sent]) is not None:
                pt, seq, ts, payload = packet
                peer.sendto(build_rtp(pt, seq, ts, 0x4711, payload), dest)
            sent += 1
        heard.append(session.read(clock[0]))
        clock[0] += PTIME
    return heard


def _tone_pcm(rate: int, ms: int, count: int) -> list[bytes]:
    """``count`` consecutive ``ms`` ms chunks of a 1 kHz tone."""
    gen = ToneGenerator(rate, rate * ms // 1000)
    gen.play(ToneSpec("test", (ToneSegment((1000,), 1000),)))
    out = []
    for _ in range(count):
        chunk = gen.read(0.0)
        assert chunk is not None
        out.append(chunk)
    return out


def test_a_lost_30_ms_packet_is_concealed_not_silent(ports: RtpPortAllocator) -> None:
    clock = [100.0]
    with Loop(clock=lambda: clock[0]) as loop:
        session, peer, pt = _raw_sender(loop, ports, "PCMU")
        chunks = _tone_pcm(8000, 30, 50)
        packets: list[tuple[int, int, int, bytes] | None] = [
            (pt, 1000 + k, 5000 + 240 * k, ulaw_encode(chunk)) for k, chunk in enumerate(chunks)
        ]
        packets[30] = None
        heard = _play_raw(session, peer, packets, 30, 1.6, clock)
        stats = session.stats()
        assert stats.jitter is not None and stats.rtp is not None
        assert stats.rtp.cumulative_lost == 1  # RFC 3550: one packet
        assert stats.jitter.lost == 3  # three 10 ms units concealed
        first = next(i for i, f in enumerate(heard) if f is not None)
        played = heard[first : first + 70]  # 49 packets * 30 ms = 73 ticks, less the tail
        # every tick plays a whole frame: audio, or concealment of the lost 30 ms
        assert all(f is not None and len(f) == 320 for f in played)
        assert tone_dominates(b"".join(f for f in played if f is not None), 8000)
        peer.close()
        session.close()


@pytest.mark.skipif(not codec_opus.available(), reason="libopus is not installed")
@pytest.mark.parametrize("ms", [40, 60, 10])
def test_opus_packets_of_any_length_are_played_in_20_ms_ticks(
    ports: RtpPortAllocator, ms: int
) -> None:
    """Opus cannot be cut: a long packet is decoded at its first unit and played on."""
    clock = [100.0]
    with Loop(clock=lambda: clock[0]) as loop:
        session, peer, pt = _raw_sender(loop, ports, "opus", opus=True)
        encoder = default_registry(opus=True).create("opus", 48000)
        count = 1200 // ms
        packets: list[tuple[int, int, int, bytes] | None] = [
            (pt, 7 + k, 48 * ms * k, encoder.encode(chunk))
            for k, chunk in enumerate(_tone_pcm(16000, ms, count))
        ]
        heard = _play_raw(session, peer, packets, ms, 1.4, clock)
        stats = session.stats()
        assert stats.jitter is not None and stats.rtp is not None
        assert stats.refused_duration == 0 and stats.jitter.lost == 0
        audio = [f for f in heard if f is not None]
        assert len(audio) >= 1200 // 20 - 6
        assert all(len(f) == 640 for f in audio)  # 20 ms at 16 kHz, every tick
        assert tone_dominates(b"".join(audio[-25:]), 16000)
        close = getattr(encoder, "close", None)
        if close is not None:
            close()
        peer.close()
        session.close()
