"""SRTP with SDES keys against baresip's ``srtp`` module, on 127.0.0.1.

The offer/answer and key handling are checked here without the call layer
(tests/interop/test_media_baresip_codecs.py runs whole calls): the test speaks
just enough SIP over a raw UDP socket: an INVITE whose SDP offer carries our ``a=crypto`` lines
(RTP/SAVP for MANDATORY, RTP/AVP for OPTIONAL), the 200 OK with baresip's answer
and key, ACK, then RTP both ways for two seconds, then BYE. baresip
(``answermode=auto``, ``mediaenc=srtp-mand``, ``srtp`` or none) plays a 1000 Hz
tone from ``aufile``; we play 440 Hz to it and its ``sndfile`` module records
what it decoded. Each side must hear the other's tone, which proves that each
side's key decrypts the other's packets.
"""

from __future__ import annotations

import math
import os
import random
import select
import shutil
import socket
import struct
import sys
import time
import wave
from pathlib import Path

import pytest

from sipstack.codec_g711 import ulaw_decode, ulaw_encode
from sipstack.message import Response, parse_message
from sipstack.offer_answer import CodecSpec, LocalMedia, create_offer
from sipstack.sdp import parse_sdp
from sipstack.srtp import (
    CryptoSuite,
    SrtpContext,
    SrtpError,
    SrtpMode,
    SrtpOffer,
    srtp_accept_answer,
    srtp_offer,
)

from .peers import ManagedProcess, PortAllocator
from .peers.process import wait_until

pytestmark = pytest.mark.interop

HOST = "127.0.0.1"
RATE = 8000
THEIR_TONE = 1000.0  # what baresip's aufile plays
OUR_TONE = 440.0  # what we send
MODULES = "/usr/lib/baresip/modules"


# -- helpers ------------------------------------------------------------------------


def tone_pcm(freq: float, seconds: float, amplitude: int = 8000) -> bytes:
    """16-bit native-endian mono PCM at 8 kHz."""
    n = int(RATE * seconds)
    samples = [int(amplitude * math.sin(2 * math.pi * freq * i / RATE)) for i in range(n)]
    return struct.pack(f"={n}h", *samples)


def write_wav(path: Path, pcm: bytes) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(pcm if sys.byteorder == "little" else _swap16(pcm))


def _swap16(pcm: bytes) -> bytes:
    n = len(pcm) // 2
    return struct.pack(f"<{n}h", *struct.unpack(f">{n}h", pcm))


def goertzel_power(samples: list[int], freq: float) -> float:
    """Signal power at ``freq`` (Goertzel), normalised by the block length."""
    coeff = 2 * math.cos(2 * math.pi * freq / RATE)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / max(len(samples), 1) ** 2


def dominant_tone(pcm: bytes, candidates: list[float]) -> tuple[float, float]:
    """The candidate frequency with most power, and its ratio to the runner-up."""
    samples = list(struct.unpack(f"={len(pcm) // 2}h", pcm[: len(pcm) // 2 * 2]))
    powers = sorted(((goertzel_power(samples, f), f) for f in candidates), reverse=True)
    best, second = powers[0], powers[1]
    return best[1], best[0] / max(second[0], 1e-9)


class Baresip:
    """A baresip answering calls automatically, with SRTP and a recording of what it hears."""

    def __init__(self, workdir: Path, sip_port: int, rtp_low: int, mediaenc: str | None) -> None:
        self.dir = workdir
        self.dir.mkdir()
        self.record_dir = workdir / "rec"
        self.record_dir.mkdir()
        self.sip_port = sip_port
        tone = workdir / "tone.wav"
        write_wav(tone, tone_pcm(THEIR_TONE, 10.0))
        (workdir / "config").write_text(
            "\n".join(
                [
                    f"sip_listen {HOST}:{sip_port}",
                    f"net_interface {HOST}",
                    f"rtp_ports {rtp_low}-{rtp_low + 9}",
                    f"audio_source aufile,{tone}",
                    "audio_player alsa,null",
                    "audio_alert alsa,null",
                    f"ausrc_srate {RATE}",
                    f"auplay_srate {RATE}",
                    "ausrc_channels 1",
                    "auplay_channels 1",
                    "jitter_buffer_delay 1-10",
                    f"module_path {MODULES}",
                    "module g711.so",
                    "module aufile.so",
                    "module alsa.so",
                    "module srtp.so",
                    "module sndfile.so",
                    f"snd_path {self.record_dir}",
                    "module_app account.so",
                    "module_app menu.so",
                    "",
                ]
            )
        )
        (workdir / "accounts").write_text(
            f"<sip:bob@{HOST}:{sip_port}>;regint=0;answermode=auto;"
            "audio_codecs=PCMU" + (f";mediaenc={mediaenc}" if mediaenc else "") + "\n"
        )
        (workdir / "contacts").write_text("")
        self.process = ManagedProcess(
            ["baresip", "-f", str(workdir), "-v"], workdir / "baresip.log", cwd=workdir
        )
        if not wait_until(lambda: "baresip is ready" in self.log(), 10.0):
            self.process.stop()
            pytest.fail(f"baresip did not start:\n{self.log()}")

    def log(self) -> str:
        return self.process.log_text()

    def stop(self) -> None:
        self.process.stop()


class RawUac:
    """Just enough of a SIP UAC on one UDP socket: INVITE, ACK, BYE."""

    def __init__(self, sock: socket.socket, target: tuple[str, int]) -> None:
        self.sock = sock
        self.target = target
        self.local_port = sock.getsockname()[1]
        self.call_id = f"{random.getrandbits(64):x}@{HOST}"
        self.from_tag = f"{random.getrandbits(32):x}"
        self.to_tag = ""
        self.request_uri = f"sip:bob@{HOST}:{target[1]}"
        self.remote_target = self.request_uri

    def _request(
        self, method: str, cseq: int, body: bytes = b"", branch: str | None = None
    ) -> bytes:
        branch = branch or f"z9hG4bK{random.getrandbits(48):x}"
        to = f"<{self.request_uri}>" + (f";tag={self.to_tag}" if self.to_tag else "")
        uri = self.request_uri if method == "INVITE" else self.remote_target
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {HOST}:{self.local_port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: <sip:alice@{HOST}:{self.local_port}>;tag={self.from_tag}",
            f"To: {to}",
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:alice@{HOST}:{self.local_port}>",
        ]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _final(self, message: bytes, method: str, timeout: float) -> Response:
        """Send (retransmitting every 0.5 s, RFC 3261 Timer A style) until a final response."""
        deadline = time.monotonic() + timeout
        resend = 0.0
        while time.monotonic() < deadline:
            if time.monotonic() >= resend:
                self.sock.sendto(message, self.target)
                resend = time.monotonic() + 0.5
            ready, _, _ = select.select([self.sock], [], [], 0.1)
            if not ready:
                continue
            data, _ = self.sock.recvfrom(65535)
            response = parse_message(data)
            if not isinstance(response, Response) or response.cseq.method != method:
                continue
            if response.status >= 200:
                return response
            resend = deadline  # provisional: stop retransmitting (RFC 3261 17.1.1.2)
        pytest.fail(f"no final response to {method} in {timeout} s")

    def invite(self, sdp: bytes) -> Response:
        response = self._final(self._request("INVITE", 1, sdp), "INVITE", 10.0)
        if response.status == 200:
            self.to_tag = response.to.tag or ""
            if response.contacts:
                self.remote_target = str(response.contacts[0].uri)
        return response

    def ack(self) -> None:
        self.sock.sendto(self._request("ACK", 1), self.target)

    def bye(self) -> Response:
        return self._final(self._request("BYE", 2), "BYE", 5.0)


def exchange_media(
    context: SrtpContext | None,
    rtp_sock: socket.socket,
    remote: tuple[str, int],
    seconds: float,
) -> tuple[list[bytes], list[bytes], int]:
    """Send our tone every 20 ms for ``seconds`` (SRTP unless ``context`` is None).

    Paced by the monotonic clock because the peer is a real process playing in
    real time. Returns (packets received, their decrypted RTP, SRTP failures).
    """
    ssrc = random.getrandbits(32)
    seq = random.getrandbits(15)
    pcm = tone_pcm(OUR_TONE, seconds + 1.0)
    received: list[bytes] = []
    decrypted: list[bytes] = []
    failures = 0
    start = time.monotonic()
    next_send = start
    sent = 0
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if now >= next_send:
            frame = pcm[sent * 320 : (sent + 1) * 320]
            header = struct.pack("!BBHII", 0x80, 0, (seq + sent) & 0xFFFF, sent * 160, ssrc)
            packet = header + ulaw_encode(frame)
            rtp_sock.sendto(packet if context is None else context.protect_rtp(packet), remote)
            sent += 1
            next_send = start + sent * 0.02
        ready, _, _ = select.select([rtp_sock], [], [], max(0.0, next_send - time.monotonic()))
        if ready:
            data, _ = rtp_sock.recvfrom(2048)
            received.append(data)
            try:
                decrypted.append(data if context is None else context.unprotect_rtp(data))
            except SrtpError:
                failures += 1
    return received, decrypted, failures


# -- the test -----------------------------------------------------------------------

_80 = CryptoSuite.AES_CM_128_HMAC_SHA1_80


@pytest.mark.parametrize(
    ("mode", "mediaenc", "suite", "secure"),
    [
        # RTP/SAVP offer to baresip's mandatory SRTP, each suite both sides know.
        (SrtpMode.MANDATORY, "srtp-mand", _80, True),
        (SrtpMode.MANDATORY, "srtp-mand", CryptoSuite.AES_CM_128_HMAC_SHA1_32, True),
        (SrtpMode.MANDATORY, "srtp-mand", CryptoSuite.AEAD_AES_128_GCM, True),
        # Best effort both sides: RTP/AVP with a=crypto, answered with a key.
        (SrtpMode.OPTIONAL, "srtp", _80, True),
        # Best effort to a baresip without SRTP: it answers plain RTP, we fall back.
        (SrtpMode.OPTIONAL, None, _80, False),
    ],
    ids=["mand-80", "mand-32", "mand-gcm128", "optional-80", "optional-to-plain"],
)
def test_srtp_call_with_baresip(
    tmp_path: Path,
    port_allocator: PortAllocator,
    mode: SrtpMode,
    mediaenc: str | None,
    suite: CryptoSuite,
    secure: bool,
) -> None:
    if shutil.which("baresip") is None or not os.path.exists(f"{MODULES}/srtp.so"):
        pytest.skip("baresip with its srtp module is not installed")
    baresip = Baresip(
        tmp_path / "baresip",
        port_allocator.allocate(),
        port_allocator.allocate(count=10),
        mediaenc,
    )
    try:
        _call(baresip, port_allocator, mode, suite, secure)
    except BaseException:
        print(f"--- baresip log ---\n{baresip.log()}")
        raise
    finally:
        baresip.stop()
    # Only after it exits has sndfile closed (and finished) its WAV files.
    recordings = sorted(baresip.record_dir.glob("dump-*-dec.wav"))
    assert recordings, f"baresip recorded nothing: {list(baresip.record_dir.iterdir())}"
    with wave.open(str(recordings[0]), "rb") as rec:
        assert (rec.getframerate(), rec.getnchannels()) == (RATE, 1)
        heard = rec.readframes(rec.getnframes())
    if sys.byteorder != "little":
        heard = _swap16(heard)
    # Skip the jitter buffer's silent start; then our tone must dominate.
    assert len(heard) >= RATE  # at least half a second of audio
    freq, ratio = dominant_tone(heard[len(heard) // 4 :], [OUR_TONE, THEIR_TONE, 700.0, 1500.0])
    assert freq == OUR_TONE and ratio > 10, (freq, ratio)
    assert "failed to decrypt" not in baresip.log()


def _call(
    baresip: Baresip,
    port_allocator: PortAllocator,
    mode: SrtpMode,
    suite: CryptoSuite,
    secure: bool,
) -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sip_sock,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rtp_sock,
    ):
        sip_sock.bind((HOST, 0))
        rtp_port = port_allocator.allocate(count=2)
        rtp_sock.bind((HOST, rtp_port))
        offer: SrtpOffer = srtp_offer(mode, [suite])
        local = LocalMedia(
            HOST,
            rtp_port,
            [CodecSpec("PCMU", RATE)],
            telephone_event=False,
            crypto=offer.crypto_lines,
            srtp=mode,
        )
        description = create_offer(local, random.getrandbits(31), 1)
        # offer_answer and srtp_offer agree on the profile: RTP/SAVP for MANDATORY,
        # RTP/AVP with a=crypto (best effort) for OPTIONAL.
        assert description.media[0].proto == offer.proto
        offer_sdp = description.to_bytes()
        assert f"a=crypto:1 {suite.value} inline:".encode() in offer_sdp

        uac = RawUac(sip_sock, (HOST, baresip.sip_port))
        response = uac.invite(offer_sdp)
        assert response.status == 200, response.to_bytes().decode(errors="replace")
        uac.ack()
        answer = parse_sdp(response.body)
        media = answer.media[0]
        assert media.proto == offer.proto
        result = srtp_accept_answer(mode, offer, media.proto, media.crypto)
        assert result.secure is secure
        context = result.context() if secure else None
        connection = answer.connection_for(media)
        assert connection is not None
        remote = (connection.address, media.port)

        received, decrypted, failures = exchange_media(context, rtp_sock, remote, 2.0)
        bye = uac.bye()
        assert bye.status == 200

    if secure:
        assert result.remote is not None and result.remote.suite is suite
        assert f"SRTP is Enabled (cryptosuite={suite.value})" in baresip.log()
    else:
        assert not media.crypto and "SRTP is Enabled" not in baresip.log()
    # baresip's packets: all decrypt with the key from its answer, PCMU, its tone.
    assert failures == 0
    assert len(decrypted) >= 40, f"only {len(decrypted)} RTP packets from baresip"
    assert all(p[1] & 0x7F == 0 for p in decrypted)
    pcm = b"".join(ulaw_decode(p[12:]) for p in decrypted[10:])
    freq, ratio = dominant_tone(pcm, [THEIR_TONE, OUR_TONE, 700.0, 1500.0])
    assert freq == THEIR_TONE and ratio > 10, (freq, ratio)
    if context is not None:
        # On the wire the payload was not the plain one (it really was encrypted)...
        assert all(len(raw) > len(plain) for raw, plain in zip(received, decrypted, strict=True))
        assert decrypted[-1][12:] not in received[-1]
        # ...and a tampered copy of a real baresip packet is refused.
        tampered = bytearray(received[-1])
        tampered[20] ^= 0x01
        with pytest.raises(SrtpError):
            context.unprotect_rtp(bytes(tampered))
