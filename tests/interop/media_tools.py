"""Audio helpers for the media interop tests: a PCMU pcap writer, tones, Goertzel.

SIPp's ``play_pcap_audio`` replays the UDP payloads of a libpcap capture with
the capture's timing; :func:`write_pcmu_pcap` makes such a capture without any
external tool: the classic libpcap file format (``tcpdump.org`` "pcap savefile"
header, one record per packet) with Ethernet II / IPv4 / UDP framing around RTP
(RFC 3550 section 5.1) carrying 20 ms of G.711 mu-law each.

The mu-law encoder here is a deliberately independent textbook one (ITU-T
G.711 / the Sun ``g711.c`` algorithm), not ``sipstack.codec_g711``: when SIPp
plays a capture we made and our stack decodes it, an error shared by one
encoder and its own decoder cannot cancel out.

Tone detection: :func:`goertzel_power` measures one frequency; :func:`tone_blocks`
says, block by block, which candidate frequency dominates, so a test can ask
"does at least 1.5 s of this recording carry 1000 Hz" and is not fooled by the
silence before the first packet or after the last.
"""

from __future__ import annotations

import math
import socket
import struct
import uuid
import wave
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sipstack.account_config import AccountConfig
from sipstack.account_events import RegStateChanged, UaEvent
from sipstack.calls import CallEvent, CallManager, CallStateChanged, IncomingCall
from sipstack.digest import CredentialInfo
from sipstack.invite_events import InviteState
from sipstack.loop import Loop
from sipstack.media_factory import RtpMediaFactory, file_endpoint
from sipstack.media_session import RtpPortAllocator
from sipstack.srtp import SrtpPolicy
from sipstack.timers import TimerConfig
from sipstack.tls import client_context, server_context
from sipstack.useragent import UserAgent
from sipstack.wav_io import WavRecorder

from .peers import CertBundle, KamailioServer

__all__ = [
    "FAST_TIMERS",
    "MediaPhone",
    "PcapPacket",
    "dominant_blocks",
    "goertzel_power",
    "read_pcap_udp",
    "read_wav",
    "register_contact",
    "tone_blocks",
    "tone_samples",
    "ulaw_encode_sample",
    "via_kamailio",
    "write_pcmu_pcap",
    "write_wav",
]

# libpcap savefile: magic, version 2.4, thiszone, sigfigs, snaplen, LINKTYPE_ETHERNET
_PCAP_MAGIC = 0xA1B2C3D4
_LINKTYPE_ETHERNET = 1
_ETHERTYPE_IPV4 = 0x0800
_IPPROTO_UDP = 17
_PCMU_PT = 0  # RFC 3551 table 4
_RATE = 8000
#: A short T1 so lost UDP requests are retried fast (the peers run on the wall clock).
FAST_TIMERS = TimerConfig(t1=0.1, t2=0.8, t4=1.0)


# -- tones ----------------------------------------------------------------------------


def tone_samples(
    freq: float, seconds: float, rate: int = _RATE, amplitude: int = 8000
) -> list[int]:
    """A sine of ``freq`` Hz as 16-bit sample values."""
    n = int(rate * seconds)
    step = 2 * math.pi * freq / rate
    return [int(amplitude * math.sin(step * i)) for i in range(n)]


def write_wav(path: Path, samples: Sequence[int], rate: int) -> None:
    """A mono 16-bit little-endian WAV file (what baresip's ``aufile`` reads)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(struct.pack(f"<{len(samples)}h", *samples))


def read_wav(path: Path) -> tuple[int, list[int]]:
    """(sample rate, samples) of a mono 16-bit WAV file; other formats raise."""
    with wave.open(str(path), "rb") as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: not mono 16-bit ({w.getnchannels()} ch)")
        data = w.readframes(w.getnframes())
        rate = w.getframerate()
    n = len(data) // 2
    return rate, list(struct.unpack(f"<{n}h", data[: 2 * n]))


# -- mu-law (ITU-T G.711), independent of sipstack ------------------------------------

_BIAS = 0x84
_CLIP = 32635


def ulaw_encode_sample(sample: int) -> int:
    """One 16-bit linear sample to a mu-law byte (G.711 section 3, Sun g711.c layout)."""
    sign = 0x80 if sample < 0 else 0
    magnitude = min(-sample if sample < 0 else sample, _CLIP) + _BIAS
    exponent = 7
    mask = 0x4000
    while exponent > 0 and not magnitude & mask:
        exponent -= 1
        mask >>= 1
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


# -- pcap -----------------------------------------------------------------------------


def _ip_checksum(header: bytes) -> int:
    """RFC 791 header checksum: one's complement of the one's-complement sum."""
    total: int = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _udp_checksum(src: bytes, dst: bytes, segment: bytes) -> int:
    """RFC 768 checksum over the IPv4 pseudo-header and the segment (0 becomes 0xFFFF)."""
    padded = segment + b"\0" * (len(segment) % 2)
    pseudo = src + dst + struct.pack("!BBH", 0, _IPPROTO_UDP, len(segment))
    value = _ip_checksum(pseudo + padded)
    return value or 0xFFFF


def _frame(src: tuple[str, int], dst: tuple[str, int], payload: bytes, ident: int) -> bytes:
    """Ethernet II + IPv4 (no options) + UDP around ``payload``."""
    src_ip, dst_ip = socket.inet_aton(src[0]), socket.inet_aton(dst[0])
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", src[1], dst[1], udp_len, 0) + payload
    udp = udp[:6] + struct.pack("!H", _udp_checksum(src_ip, dst_ip, udp)) + udp[8:]
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, ident & 0xFFFF, 0x4000, 64, _IPPROTO_UDP, 0,
        src_ip, dst_ip,
    )  # fmt: skip
    ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
    ethernet = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01" + struct.pack("!H", _ETHERTYPE_IPV4)
    return ethernet + ip + udp


def write_pcmu_pcap(
    path: Path,
    freq: float,
    seconds: float,
    *,
    src: tuple[str, int] = ("127.0.0.1", 7000),
    dst: tuple[str, int] = ("127.0.0.1", 6000),
    ssrc: int = 0x1CE0BE11,
    first_seq: int = 1000,
    amplitude: int = 8000,
    packet_ms: int = 20,
) -> int:
    """Write a capture of a ``freq`` Hz PCMU tone, one RTP packet per ``packet_ms``.

    SIPp rewrites the addresses and ports when it replays (only the payloads
    and the gaps between timestamps matter to it), so the defaults are
    placeholders. Returns the number of packets written.
    """
    samples = tone_samples(freq, seconds, _RATE, amplitude)
    size = _RATE * packet_ms // 1000
    count = len(samples) // size
    out = bytearray(struct.pack("<IHHiIII", _PCAP_MAGIC, 2, 4, 0, 0, 65535, _LINKTYPE_ETHERNET))
    for i in range(count):
        chunk = samples[i * size : (i + 1) * size]
        # RFC 3550 5.1: V=2, marker on the first packet of the talkspurt; the
        # timestamp advances by the samples a packet carries
        header = struct.pack(
            "!BBHII",
            0x80,
            (0x80 if i == 0 else 0) | _PCMU_PT,
            (first_seq + i) & 0xFFFF,
            i * size,
            ssrc,
        )
        frame = _frame(src, dst, header + bytes(ulaw_encode_sample(s) for s in chunk), i)
        usec = i * packet_ms * 1000
        out += struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000, len(frame), len(frame))
        out += frame
    path.write_bytes(bytes(out))
    return count


@dataclass(frozen=True, slots=True)
class PcapPacket:
    """One UDP datagram read back from a capture."""

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def read_pcap_udp(path: Path) -> list[PcapPacket]:
    """The UDP datagrams of an Ethernet/IPv4 capture (to test :func:`write_pcmu_pcap`).

    Checks what SIPp's reader relies on: the link type, the IPv4 and UDP
    lengths and both checksums; a malformed capture raises ValueError.
    """
    data = path.read_bytes()
    magic, major, minor, _, _, _, link = struct.unpack_from("<IHHiIII", data, 0)
    if (magic, major, minor, link) != (_PCAP_MAGIC, 2, 4, _LINKTYPE_ETHERNET):
        raise ValueError(f"not a little-endian Ethernet pcap 2.4: {magic:#x} {link}")
    packets = []
    offset = 24
    while offset < len(data):
        sec, usec, caplen, length = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        if caplen != length or len(frame) != caplen:
            raise ValueError("truncated packet record")
        if struct.unpack_from("!H", frame, 12)[0] != _ETHERTYPE_IPV4:
            raise ValueError("not IPv4")
        ip = frame[14:34]
        if ip[0] != 0x45 or ip[9] != _IPPROTO_UDP or _ip_checksum(ip) != 0:
            raise ValueError("bad IPv4 header")
        if struct.unpack_from("!H", ip, 2)[0] != len(frame) - 14:
            raise ValueError("IPv4 total length does not match the frame")
        udp = frame[34:]
        sport, dport, ulen, _ = struct.unpack_from("!HHHH", udp, 0)
        if ulen != len(udp) or _ip_checksum_udp(ip[12:16], ip[16:20], udp) != 0:
            raise ValueError("bad UDP length or checksum")
        packets.append(
            PcapPacket(
                sec + usec / 1e6,
                (socket.inet_ntoa(ip[12:16]), sport),
                (socket.inet_ntoa(ip[16:20]), dport),
                udp[8:],
            )
        )
    return packets


def _ip_checksum_udp(src: bytes, dst: bytes, segment: bytes) -> int:
    """The UDP checksum verified in place: 0 when the segment's checksum is right."""
    padded = segment + b"\0" * (len(segment) % 2)
    pseudo = src + dst + struct.pack("!BBH", 0, _IPPROTO_UDP, len(segment))
    return _ip_checksum(pseudo + padded)


# -- Goertzel -------------------------------------------------------------------------


def goertzel_power(samples: Sequence[int], freq: float, rate: int) -> float:
    """Power at ``freq`` (Goertzel's algorithm), normalised by the block length squared."""
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    n = max(1, len(samples))
    return (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)


def tone_blocks(
    samples: Sequence[int],
    rate: int,
    candidates: Sequence[float],
    *,
    block_seconds: float = 0.1,
    min_ratio: float = 10.0,
    min_power: float = 1e4,
) -> list[float | None]:
    """For each block, the candidate that dominates it, or None.

    A block counts only when its strongest candidate has ``min_ratio`` times
    the power of the runner-up and at least ``min_power`` (an amplitude of
    about 200 of 32767: silence and comfort noise stay None).
    """
    size = int(rate * block_seconds)
    found: list[float | None] = []
    for start in range(0, len(samples) - size + 1, size):
        block = samples[start : start + size]
        powers = sorted(((goertzel_power(block, f, rate), f) for f in candidates), reverse=True)
        (best, freq), (second, _) = powers[0], powers[1]
        found.append(freq if best >= min_power and best >= min_ratio * second else None)
    return found


def dominant_blocks(
    samples: Sequence[int], rate: int, freq: float, candidates: Sequence[float]
) -> float:
    """Seconds of ``samples`` in which ``freq`` clearly dominates ``candidates``."""
    blocks = tone_blocks(samples, rate, [freq, *[c for c in candidates if c != freq]])
    return sum(0.1 for b in blocks if b == freq)


# -- our side of a call with audio ------------------------------------------------------


class MediaPhone:
    """Our user agent with calls and real media, for tests against real peers.

    A :class:`UserAgent` on a UDP transport, a :class:`CallManager` and an
    :class:`RtpMediaFactory` whose audio port is a ``tone_hz`` tone generator
    (what we say) and a WAV recorder at ``rate`` (what we hear), RTP ports
    from ``rtp_low`` upwards. ``auto_answer`` answers every incoming call 200.
    :meth:`close` hangs up, stops everything and finishes the recording, after
    which :meth:`recording` reads it back.
    """

    def __init__(
        self,
        loop: Loop,
        record: Path,
        *,
        rtp_low: int,
        tone_hz: int = 440,
        codecs: Sequence[str] = ("PCMU",),
        rate: int = _RATE,
        srtp: bool | SrtpPolicy = False,
        auto_answer: bool = False,
        tls: CertBundle | None = None,
    ) -> None:
        self.loop = loop
        self.auto_answer = auto_answer
        self.events: list[CallEvent] = []
        self.ua_events: list[UaEvent] = []
        self.ua = UserAgent(loop, on_event=self.ua_events.append, timers=FAST_TIMERS)
        self.udp = self.ua.transport_create("udp", "127.0.0.1", 0)
        self.port = self.ua.endpoint.transports.info(self.udp).local_port
        self.local_acc = self.ua.acc_add_local(self.udp)
        #: with ``tls``: a TLS transport (peers checked against its CA; listening
        #: with its server certificate, so our Contact is reachable) and a local
        #: account on it, for calls whose SDES keys must not travel in clear
        self.tls_acc: int | None = None
        if tls is not None:
            tid = self.ua.transport_create(
                "tls",
                "127.0.0.1",
                0,
                tls_client=client_context(str(tls.ca_cert)),
                tls_server=server_context(str(tls.server_cert), str(tls.server_key)),
            )
            self.tls_acc = self.ua.acc_add_local(tid)
        self.endpoint = file_endpoint(rate, rate // 50, tone_hz=tone_hz, record=record)
        self.media = RtpMediaFactory(
            loop,
            ports=RtpPortAllocator(rtp_low, rtp_low + 19),
            codecs=codecs,
            sample_rate=rate,
            endpoint=self.endpoint,
            srtp=srtp,
        )
        self.calls = CallManager(self.ua, on_event=self._on_event, media=self.media)
        self.media.on_dtmf = self.calls.on_media_dtmf
        self.record = record
        self._closed = False

    def _on_event(self, event: CallEvent) -> None:
        self.events.append(event)
        if self.auto_answer and isinstance(event, IncomingCall):
            self.calls.call_answer(event.call_id, 200)

    def states(self, call_id: int) -> list[InviteState]:
        """Every state ``call_id`` went through, in order."""
        return [
            e.state for e in self.events if isinstance(e, CallStateChanged) and e.call_id == call_id
        ]

    def state(self, call_id: int) -> InviteState | None:
        """The call's latest state (None before the first)."""
        states = self.states(call_id)
        return states[-1] if states else None

    def last_code(self, call_id: int) -> int:
        """The status code of the call's latest state change (200 for a BYE either way)."""
        found = [e for e in self.events if isinstance(e, CallStateChanged) and e.call_id == call_id]
        return found[-1].code

    def incoming(self) -> list[IncomingCall]:
        """The incoming calls seen so far."""
        return [e for e in self.events if isinstance(e, IncomingCall)]

    def registered(self, acc: int) -> bool:
        """True once account ``acc`` reported a successful registration."""
        evs = [e for e in self.ua_events if isinstance(e, RegStateChanged) and e.acc_id == acc]
        return bool(evs) and evs[-1].is_registered

    def packets_received(self, call_id: int) -> int:
        """RTP packets the call's media session took in so far (0 without media)."""
        stats = self.media.rtp_stats(call_id)
        return stats.rtp.packets_received if stats is not None and stats.rtp is not None else 0

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Run the loop until ``predicate()`` or ``timeout`` seconds."""
        return self.loop.run_until(predicate, timeout)

    def close(self) -> None:
        """Hang up what is left, stop media and signalling, finish the WAV file; idempotent."""
        if self._closed:
            return
        self._closed = True
        self.calls.hangup_all()
        self.loop.run_until(lambda: self.calls.call_get_count() == 0, 2.0)
        self.calls.close()
        self.media.close_all()
        sink = self.endpoint.sink
        assert isinstance(sink, WavRecorder)
        sink.close()
        if not sink.wait_closed(5.0):
            raise TimeoutError(f"recorder {self.record} did not finish in 5 s")
        self.ua.shutdown(timeout=1.0)

    def recording(self) -> tuple[int, list[int]]:
        """(rate, samples) of what we heard; call after :meth:`close`."""
        if not self._closed:
            raise RuntimeError("close() the phone before reading its recording")
        return read_wav(self.record)


def via_kamailio(phone: MediaPhone, kam: KamailioServer, user: str, password: str | None) -> int:
    """An account ``user@test.local`` with Kamailio as outbound proxy (and registrar,
    waited for, when ``password`` is given)."""
    config = AccountConfig(
        id=f"<sip:{user}@test.local>",
        reg_uri=kam.uri() if password is not None else "",
        proxy=[kam.uri()],
        cred_info=[CredentialInfo("*", user, password)] if password is not None else [],
        ka_interval=0,
    )
    acc = phone.ua.acc_add(config)
    if password is not None and not phone.run_until(lambda: phone.registered(acc), 5.0):
        raise AssertionError(f"{user} did not register at Kamailio: {phone.ua_events}")
    return acc


def register_contact(kam: KamailioServer, user: str, contact_port: int) -> None:
    """Bind ``user@test.local`` at an open Kamailio registrar to 127.0.0.1:``contact_port``
    (a peer, such as SIPp, that does not register itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(3.0)
        local = sock.getsockname()[1]
        tag, call_id, branch = uuid.uuid4().hex[:8], uuid.uuid4().hex, uuid.uuid4().hex[:12]
        request = (
            f"REGISTER sip:{kam.host}:{kam.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch=z9hG4bK{branch}\r\n"
            f"From: <sip:{user}@test.local>;tag={tag}\r\n"
            f"To: <sip:{user}@test.local>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: 1 REGISTER\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:{user}@127.0.0.1:{contact_port}>\r\nExpires: 300\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (kam.host, kam.port))
        reply = sock.recv(65535).decode(errors="replace")
    if not reply.startswith("SIP/2.0 200"):
        raise AssertionError(f"Kamailio refused the REGISTER of {user}: {reply}")
