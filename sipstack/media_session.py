"""One call's audio stream on the loop: sockets, RTP/RTCP, codec, jitter buffer, DTMF.

:class:`MediaSession` is the glue between the sans-IO pieces and the network.
It owns one UDP socket pair (RTP on an even port, RTCP on the next one,
RFC 3550 11) taken from a :class:`RtpPortAllocator`, registers both with the
loop, and is a *port* of the audio graph:

* :meth:`MediaSession.read` gives one frame of received audio per ptime
  tick (jitter buffer -> decode, or conceal, or silence);
* :meth:`MediaSession.write` takes one frame to send per tick
  (encode -> :class:`~sipstack.rtp_session.RtpSender` -> ``sendto``), or an
  RFC 4733 event packet in that slot while digits are queued. Packets are as
  long as the peer's ``a=ptime`` asks (RFC 8866 6.4: 10-120 ms, cut from the
  ticks' payloads) for G.711 and G.722; other codecs send one tick per packet.
  Received packets may be of any length from 2.5 to 120 ms: a
  :class:`~sipstack.depacketise.PacketSplitter` cuts them into frames for the
  jitter buffer (10 and 30 ms packets into 10 ms frames, two per tick).

The media clock (the audio device or a loop timer) calls both once per tick;
the session itself never sleeps and keeps no timer for audio. Only RTCP has its
own timer (RFC 3550 6.3, via ``loop.call_at``).

Why it is built this way:

* **Symmetric RTP (RFC 4961).** We send from the port we receive on, to the
  SDP address until :class:`~sipstack.rtp_session.RtpReceiver` latches to the
  address the peer really sends from: behind NAT that is the only address
  whose packets reach the peer. A stray source needs several packets in
  sequence before it is believed, so it cannot steal the stream.
* **Bounded work per wake-up.** At most :data:`MAX_DATAGRAMS_PER_WAKEUP`
  datagrams are read per readable event, so a flood cannot starve the loop
  (the rest wait for the next iteration).
* **Hold keeps RTCP (RFC 3264 8.4, RFC 3550 6).** ``sendonly``/``recvonly``/
  ``inactive`` stop audio in the direction(s) not allowed; the RTP timestamp
  keeps running and reports keep flowing, so the peer does not time the call out.
* **Hot path.** Per packet there is one ``recvfrom``, one parse (one small
  frozen object) and a dict insert; per tick one encode and one ``sendto``.
  Silence frames are cached, ``now`` is read once per batch.
"""

from __future__ import annotations

import enum
import errno
import logging
import math
import os
import random
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from sipstack.codecs import Codec, CodecRegistry
from sipstack.depacketise import PacketSplitter
from sipstack.dtmf import DtmfPacket, DtmfReceiver, DtmfSender
from sipstack.jitter import Frame, JitterBuffer, JitterStats, Lost
from sipstack.loop import Loop, TimerHandle
from sipstack.offer_answer import NegotiatedMedia
from sipstack.records import dataclass
from sipstack.rtcp import NTP_UNIX_OFFSET
from sipstack.rtp import MAX_RTP_PACKET, is_rtcp
from sipstack.rtp_session import (
    RTCP_MIN_TIME,
    Address,
    ByeReceived,
    RtcpSourceLatched,
    RtpReceiver,
    RtpSender,
    RtpSession,
    RtpStreamStats,
    SourceLatched,
    SsrcChanged,
)
from sipstack.sdp import Direction

if TYPE_CHECKING:  # srtp imports pylibsrtp: only load it for calls that use SRTP
    from sipstack.srtp import SrtpContext

__all__ = [
    "MAX_DATAGRAMS_PER_WAKEUP",
    "READER_FALLBACK",
    "DtmfNotNegotiatedError",
    "DtmfReceived",
    "MediaEvent",
    "MediaLatched",
    "MediaSession",
    "MediaState",
    "MediaStats",
    "RemoteBye",
    "RemoteSourceChanged",
    "RtpPortAllocator",
]

log = logging.getLogger(__name__)

#: Datagrams read per readable event or tick before yielding to the loop (one per tick
#: is normal).
MAX_DATAGRAMS_PER_WAKEUP = 32
#: Seconds without a :meth:`MediaSession.read` after which the loop reads RTP again.
READER_FALLBACK = 1.0


# -- events -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """The peer sent an RFC 4733 digit (reported once, when it ended)."""

    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class MediaLatched:
    """Our RTP now goes to ``addr``: the peer's media really comes from there (RFC 4961)."""

    addr: Address


@dataclass(frozen=True, slots=True)
class RemoteSourceChanged:
    """The peer's stream has a new SSRC (first source, or a restart)."""

    ssrc: int


@dataclass(frozen=True, slots=True)
class RemoteBye:
    """The peer's RTCP BYE (RFC 3550 6.6): its source left the session."""

    reason: str | None


MediaEvent = DtmfReceived | MediaLatched | RemoteSourceChanged | RemoteBye


class DtmfNotNegotiatedError(ValueError):
    """The caller asked for RFC 4733 digits on a stream without telephone-event.

    The call layer can fall back to SIP INFO.
    """


class MediaState(enum.Enum):
    """Lifecycle: sockets bound -> negotiated stream running -> closed."""

    BOUND = "bound"
    ACTIVE = "active"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class MediaStats:
    """What ``call_get_info`` shows about the audio (delays in seconds)."""

    codec: str | None
    payload_type: int | None
    direction: Direction
    local_port: int
    remote_rtp: Address | None
    rtp: RtpStreamStats | None
    jitter: JitterStats | None
    dtmf_sent: int
    dtmf_received: int
    unknown_payload: int
    srtp_failures: int
    #: audio packets dropped for a duration the receive side cannot play (see
    #: :class:`~sipstack.depacketise.PacketSplitter`)
    refused_duration: int = 0


# -- ports ------------------------------------------------------------------------------


class RtpPortAllocator:
    """Hands out RTP/RTCP socket pairs from ``[first, last]`` (RTP even, RTCP RTP + 1).

    A port that cannot be bound (another program has it) is skipped. Successive
    calls continue after the last pair handed out, so a port just closed is not
    reused at once (late packets of the old call would land in the new one).
    """

    def __init__(self, first: int = 40000, last: int = 40999) -> None:
        first += first & 1  # RFC 3550 11: RTP on an even port
        if not 0 < first < last <= 65535:
            raise ValueError(f"RTP port range {first}-{last} is empty or out of 1-65535")
        self.first = first
        self.last = last
        self._next = first

    def bind(self, host: str) -> tuple[socket.socket, socket.socket]:
        """Two non-blocking UDP sockets on ``host``; raises :class:`OSError` when all are taken."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        pairs = (self.last - self.first + 1) // 2
        last_error: OSError | None = None
        for _ in range(pairs):
            port = self._next
            self._next = port + 2 if port + 3 <= self.last else self.first
            rtp = socket.socket(family, socket.SOCK_DGRAM)
            rtcp = socket.socket(family, socket.SOCK_DGRAM)
            try:
                rtp.bind((host, port))
                rtcp.bind((host, port + 1))
            except OSError as exc:
                rtp.close()
                rtcp.close()
                if exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise  # a bad host address: no other port will do better
                last_error = exc
                continue
            rtp.setblocking(False)
            rtcp.setblocking(False)
            return rtp, rtcp
        raise OSError(
            errno.EADDRINUSE,
            f"no free RTP port pair on {host} in {self.first}-{self.last} ({last_error})",
        )


# Linux receive timestamps with a 64-bit time_t on every architecture (kernel >= 5.1):
# SO_TIMESTAMPNS_NEW from asm-generic/socket.h; the stdlib does not name it. Only the
# architectures that use the generic numbering (every Raspberry Pi, x86) turn it on.
_SO_TIMESTAMPNS_NEW = 64
_TIMESTAMP_MACHINES = frozenset(
    {"x86_64", "i686", "aarch64", "arm64", "armv6l", "armv7l", "armv8l", "riscv64"}
)
_TIMESPEC = struct.Struct("=qq")  # struct __kernel_timespec: seconds, nanoseconds
_CMSG_SPACE = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def _enable_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp every datagram with its arrival time; False if it cannot."""
    # os.uname is what platform.machine() reads, without importing platform
    if sys.platform != "linux" or os.uname().machine not in _TIMESTAMP_MACHINES:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS_NEW, 1)
    except OSError:  # a kernel before 5.1
        return False
    return True


def _default_jitter(clock_rate: int, frame_samples: int) -> JitterBuffer:
    return JitterBuffer(clock_rate, frame_samples)


# RFC 6716 3.1: frame length by TOC configuration (config >> 2 selects the row's
# pattern), in 48 kHz samples: SILK 10/20/40/60 ms, Hybrid 10/20, CELT 2.5/5/10/20.
_OPUS_FRAME_48K = (480, 960, 1920, 2880) * 3 + (480, 960) * 2 + (120, 240, 480, 960) * 4


def _opus_samples(payload: bytes, clock_rate: int, default: int) -> int:
    """Duration of an Opus packet from its TOC byte (RFC 6716 3.1), in RTP clock ticks.

    A packet too short to tell (or a malformed code 3 packet) counts as
    ``default``: the decoder will judge it.
    """
    if not payload:
        return default
    toc = payload[0]
    code = toc & 3
    if code == 0:
        frames = 1
    elif code < 3:
        frames = 2
    elif len(payload) > 1 and payload[1] & 0x3F:
        frames = payload[1] & 0x3F  # RFC 6716 3.2.5: M in the frame count byte
    else:
        return default
    return frames * _OPUS_FRAME_48K[toc >> 3] * clock_rate // 48000


# -- the session ------------------------------------------------------------------------


class _Stream:
    """Per-negotiation state: codec, RTP session, jitter buffer, DTMF (one object, slots)."""

    __slots__ = (
        "codec",
        "payload_type",
        "event_pt",
        "rtp",
        "sender",
        "jitter",
        "dtmf_tx",
        "dtmf_rx",
        "dtmf_tx_active",
        "dtmf_rx_active",
        "rtp_samples",
        "pcm_samples",
        "silence_pcm",
        "silence_payload",
        "can_send",
        "can_receive",
        "packet_samples",
        "pending",
        "splitter",
        "opus",
        "stash",
        "stash_ts",
    )

    def __init__(
        self,
        codec: Codec,
        payload_type: int,
        event_pt: int | None,
        rtp: RtpSession,
        jitter: JitterBuffer,
        ptime: int,
    ) -> None:
        self.codec = codec
        self.payload_type = payload_type
        self.event_pt = event_pt
        self.rtp = rtp
        self.sender = rtp.sender
        self.jitter = jitter
        self.rtp_samples = codec.clock_rate * ptime // 1000
        self.pcm_samples = codec.frame_samples(ptime)
        # RFC 4733 2.2: the event clock is the audio codec's RTP clock.
        self.dtmf_tx = DtmfSender(codec.clock_rate, self.rtp_samples)
        self.dtmf_rx = DtmfReceiver(codec.clock_rate)
        self.dtmf_tx_active = False  # digits queued: ask dtmf_tx every tick
        self.dtmf_rx_active = False  # a received digit is unfinished: mind its timer
        self.silence_pcm = bytes(2 * self.pcm_samples)
        self.silence_payload = codec.encode(self.silence_pcm)
        self.can_send = True
        self.can_receive = True
        #: RTP samples per packet we send (the peer's a=ptime) and the encoded
        #: audio waiting for a packet; see :meth:`set_packet_ptime`.
        self.packet_samples = self.rtp_samples
        self.pending = b""
        # Receive side: packets of another length than a tick go through the splitter.
        sliceable = len(self.silence_payload) == self.rtp_samples
        self.splitter = PacketSplitter(jitter, self.rtp_samples, sliceable=sliceable)
        self.opus = codec.name.lower() == "opus"
        #: decoded PCM of a long packet not yet played, and the RTP timestamp it starts at
        self.stash = b""
        self.stash_ts = 0

    def packet_duration(self, payload: bytes) -> int:
        """RTP clock ticks of audio in a received payload."""
        if self.splitter.sliceable:
            return len(payload)
        if self.opus:
            return _opus_samples(payload, self.codec.clock_rate, self.rtp_samples)
        return self.rtp_samples  # a codec we cannot measure: one tick, as sent

    def set_packet_ptime(self, ptime: int | None) -> None:
        """Send ``ptime`` ms packets (RFC 8866 6.4: the peer's a=ptime) if we can.

        Only a codec whose payload is one byte per RTP clock tick (G.711, and
        G.722 whose RTP clock is 8000, RFC 3551 4.5.2) can be cut anywhere;
        other codecs, and values outside 10-120 ms, keep one frame per packet.
        """
        samples = self.rtp_samples
        if (
            ptime is not None
            and 10 <= ptime <= 120
            and len(self.silence_payload) == self.rtp_samples
        ):
            samples = self.codec.clock_rate * ptime // 1000
        self.packet_samples = samples


class MediaSession:
    """One call's RTP stream on the loop (see the module doc).

    ``host`` is the local address to bind (also what the SDP advertises);
    ``ptime`` the frame length the graph ticks at (ms). ``on_event`` receives
    :data:`MediaEvent` values; ``rng`` makes SSRC and sequence numbers
    reproducible in tests. ``latch_after`` is how many packets in sequence a
    source at an address other than the SDP one needs before we latch to it.
    ``jitter_factory(clock_rate, frame_samples)`` builds the jitter buffer;
    ``rtcp_interval`` is the RFC 3550 6.2 minimum report interval (5 s; tests
    shorten it). ``srtp_context`` protects both sockets (RFC 3711).
    ``kernel_timestamps`` asks Linux for the arrival time of every RTP
    datagram (``SO_TIMESTAMPNS``); without it (or off Linux) a datagram's
    arrival is the time it is read.
    """

    def __init__(
        self,
        loop: Loop,
        registry: CodecRegistry,
        *,
        host: str = "127.0.0.1",
        ports: RtpPortAllocator | None = None,
        ptime: int = 20,
        on_event: Callable[[MediaEvent], None] | None = None,
        rng: random.Random | None = None,
        cname: str | None = None,
        latch_after: int = 4,
        srtp_context: SrtpContext | None = None,
        jitter_factory: Callable[[int, int], JitterBuffer] | None = None,
        rtcp_interval: float = RTCP_MIN_TIME,
        kernel_timestamps: bool = True,
    ) -> None:
        self._loop = loop
        self._registry = registry
        self.host = host
        self.ptime = ptime
        self._on_event = on_event
        self._rng = rng if rng is not None else random.Random()
        self._ssrc = self._rng.getrandbits(32)
        self.cname = cname if cname is not None else f"{self._ssrc:08x}@{host}"
        self._latch_after = latch_after
        self._jitter_factory = jitter_factory or _default_jitter
        self._rtcp_interval = rtcp_interval
        self._rtp_sock, self._rtcp_sock = (ports or RtpPortAllocator()).bind(host)
        self.local_port: int = self._rtp_sock.getsockname()[1]
        self.local_rtcp_port: int = self._rtcp_sock.getsockname()[1]
        self._v6 = self._rtp_sock.family == socket.AF_INET6
        self._stamped = kernel_timestamps and _enable_timestamps(self._rtp_sock)
        # a datagram younger than this came after the previous tick (see _receive_rtp)
        self._fresh = 0.9 * ptime / 1000
        self._stream: _Stream | None = None
        self._negotiated: NegotiatedMedia | None = None
        self._direction = Direction.SENDRECV
        self._rtp_dest: Address | None = None
        self._rtcp_dest: Address | None = None
        self._rtcp_timer: TimerHandle | None = None
        self._srtp = srtp_context
        self.state = MediaState.BOUND
        self.unknown_payload = 0
        self.srtp_failures = 0
        self.dtmf_sent = 0
        self.dtmf_received = 0
        # RTP is read by a loop reader only until the graph reads the session
        # (read() takes over; the RTCP timer hands it back if the reads stop).
        self._rtp_reader = True
        self._last_read = -math.inf
        loop.add_reader(self._rtp_sock, self._on_rtp_readable)
        loop.add_reader(self._rtcp_sock, self._on_rtcp_readable)

    # -- negotiation ---------------------------------------------------------------------

    @property
    def negotiated(self) -> NegotiatedMedia | None:
        """The media description in force (None before the first answer)."""
        return self._negotiated

    @property
    def codec(self) -> Codec | None:
        """The codec of the running stream."""
        return self._stream.codec if self._stream is not None else None

    @property
    def sample_rate(self) -> int | None:
        """PCM rate of :meth:`read`/:meth:`write` (None before negotiation)."""
        return self._stream.codec.sample_rate if self._stream is not None else None

    @property
    def frame_samples(self) -> int | None:
        """PCM samples per tick (None before negotiation)."""
        return self._stream.pcm_samples if self._stream is not None else None

    def apply(self, media: NegotiatedMedia, srtp_context: SrtpContext | None = None) -> None:
        """Start the stream, or follow a re-negotiation (re-INVITE, hold/unhold).

        Same codec and payload type: the RTP session, jitter buffer and codec
        state carry on; only the direction and (if it moved) the peer's address
        change. A different codec starts a fresh stream (same SSRC).
        ``srtp_context`` (an :class:`~sipstack.srtp.SrtpContext`) switches SRTP on.
        """
        if self.state is MediaState.CLOSED:
            raise RuntimeError("MediaSession.apply() after close()")
        if srtp_context is not None:
            self._srtp = srtp_context
        spec = media.codec
        pt = spec.payload_type if spec.payload_type is not None else spec.static_payload_type()
        if pt is None:
            raise ValueError(f"negotiated codec {spec.name} has no payload type")
        old = self._negotiated
        stream = self._stream
        now = self._loop.time()
        remote = self._remote_tuple(media.remote_address, media.remote_port)
        if (
            stream is None
            or old is None
            or stream.payload_type != pt
            or stream.event_pt != media.telephone_event_pt
            or not old.codec.matches(spec.name, spec.clock_rate, spec.channels)
        ):
            stream = self._new_stream(media, pt, remote, now)
            self._stream = stream
            self._rtp_dest = remote
            self._rtcp_dest = self._remote_tuple(media.remote_address, media.remote_rtcp_port)
        elif (old.remote_address, old.remote_port) != (media.remote_address, media.remote_port):
            # RFC 3264 8.3.1: the peer moved its media; latch afresh.
            stream.rtp.receiver.reset_remote(remote)
            self._rtp_dest = remote
            self._rtcp_dest = self._remote_tuple(media.remote_address, media.remote_rtcp_port)
        self._negotiated = media
        self._direction = media.direction
        stream.can_send = media.can_send
        stream.can_receive = media.can_receive
        if stream.packet_samples != stream.rtp_samples or media.ptime != self.ptime:
            self._drop_pending(stream)
            stream.set_packet_ptime(media.ptime)
        self.state = MediaState.ACTIVE
        self._schedule_rtcp()

    def _new_stream(
        self, media: NegotiatedMedia, pt: int, remote: Address | None, now: float
    ) -> _Stream:
        spec = media.codec
        codec = self._registry.create(spec.name, spec.clock_rate)
        rate = codec.clock_rate
        event_pt = media.telephone_event_pt
        sender = RtpSender(self._ssrc, pt, rate, self._rng)
        receiver = RtpReceiver(
            rate,
            remote_addr=remote,
            latch_after=self._latch_after,
            event_payload_types=frozenset() if event_pt is None else frozenset({event_pt}),
        )
        rtp = RtpSession(
            sender,
            receiver,
            cname=self.cname,
            rng=self._rng,
            now=now,
            # RFC 3550 6.4.1: SR carries wall-clock NTP time; only RTT needs it constant.
            ntp_offset=time.time() - now + NTP_UNIX_OFFSET,
            min_interval=self._rtcp_interval,
        )
        jitter = self._jitter_factory(rate, rate * self.ptime // 1000)
        return _Stream(codec, pt, event_pt, rtp, jitter, self.ptime)

    def _remote_tuple(self, host: str, port: int | None) -> Address | None:
        # RFC 3264 8.4 / RFC 2543: c=0.0.0.0 (or port 0) means "do not send to me".
        if port is None or port == 0 or host in ("0.0.0.0", "::"):
            return None
        return (host, port, 0, 0) if self._v6 else (host, port)

    # -- the graph port ------------------------------------------------------------------

    def write(self, frame: bytes | None, now: float) -> None:
        """Send one tick's frame (``None``: nothing to say, silence is sent).

        While digits are queued their RFC 4733 packets take the slots
        (RFC 4733 2.5.1: one update per frame), and the audio frame is skipped.
        """
        stream = self._stream
        if stream is None:
            return
        sender = stream.sender
        dest = self._rtp_dest
        if not stream.can_send or dest is None:
            self._drop_pending(stream)
            sender.skip(stream.rtp_samples)  # RFC 3550 5.1: the clock keeps running
            return
        if stream.dtmf_tx_active:  # digits were queued (the flag spares a call per tick)
            dtmf = stream.dtmf_tx
            if not dtmf.busy:
                stream.dtmf_tx_active = False
            elif (event := self._dtmf_tick(stream)) is not None:
                assert stream.event_pt is not None  # send_dtmf() checked
                data = sender.send_other(
                    stream.event_pt, event.payload, event.timestamp, event.marker, now
                )
                sender.skip(stream.rtp_samples)
                self._send(self._rtp_sock, data, dest)
                return
        payload = stream.silence_payload if frame is None else stream.codec.encode(frame)
        if stream.packet_samples != stream.rtp_samples:
            self._repacketise(stream, payload, now, dest)
            return
        data = sender.send(payload, stream.rtp_samples, now)
        if self._srtp is not None:
            self._send(self._rtp_sock, data, dest)
            return
        try:  # _send() without SRTP, inlined: once per tick
            self._rtp_sock.sendto(data, dest)
        except OSError as exc:
            log.debug("RTP sendto %s failed: %s", dest, exc)

    def _repacketise(self, stream: _Stream, payload: bytes, now: float, dest: Address) -> None:
        """Send ``packet_samples`` packets cut from the ticks' payloads (peer's a=ptime).

        One payload byte is one RTP clock tick here (see ``set_packet_ptime``),
        so a packet's RTP timestamp is the sender's, and the wall-clock time of
        its first sample (for RTCP SR, RFC 3550 6.4.1) lies ``len(buffer)``
        ticks before the end of this tick's frame.
        """
        buf = stream.pending + payload if stream.pending else payload
        size = stream.packet_samples
        rate = stream.codec.clock_rate
        start = now - (len(buf) - stream.rtp_samples) / rate
        sock, sender = self._rtp_sock, stream.sender
        while len(buf) >= size:
            self._send(sock, sender.send(buf[:size], size, start), dest)
            buf = buf[size:]
            start += size / rate
        stream.pending = buf

    def _dtmf_tick(self, stream: _Stream) -> DtmfPacket | None:
        # This tick's slot starts after the audio still waiting for a longer
        # packet; an event packet drops that audio, taking over its time.
        pending = stream.pending
        event = stream.dtmf_tx.tick((stream.sender.timestamp + len(pending)) & 0xFFFFFFFF)
        if event is not None and pending:
            self._drop_pending(stream)
        return event

    @staticmethod
    def _drop_pending(stream: _Stream) -> None:
        if stream.pending:
            stream.sender.skip(len(stream.pending))  # RFC 3550 5.1: the clock runs on
            stream.pending = b""

    def read(self, now: float) -> bytes | None:
        """One tick of received audio: decoded or concealed; None for silence.

        The first call moves the RTP socket from its loop reader to this
        method: from then on every tick drains the socket before it asks the
        jitter buffer, so a call wakes the loop once per ptime, not twice.
        """
        if self._rtp_reader:
            if self.state is MediaState.CLOSED:
                return None
            self._loop.remove_reader(self._rtp_sock)
            self._rtp_reader = False
        self._last_read = now
        stream = self._stream
        if stream is None or stream.splitter.per_tick == 1:
            self._receive_rtp(self._fresh)
        else:
            # packets shorter than a tick: two or more arrive per tick, read them all
            self._receive_rtp(self._fresh / stream.splitter.per_tick)
        stream = self._stream
        if stream is None:
            return None
        if stream.dtmf_rx_active:  # only while a received digit is unfinished
            dtmf_rx = stream.dtmf_rx
            if dtmf_rx.get_timer() is not None:
                dtmf_rx.handle_timer(now)  # RFC 4733 2.5.2.2: end a digit whose end was lost
                self._drain_digits(dtmf_rx)
            stream.dtmf_rx_active = dtmf_rx.get_timer() is not None
        if not stream.can_receive:
            return None
        if not stream.splitter.simple:
            return self._read_units(stream, now)
        result = stream.jitter.get(now)
        if type(result) is Frame:
            return stream.codec.decode(result.payload)
        if type(result) is Lost:
            return stream.codec.conceal(stream.pcm_samples)
        return None

    def _read_units(self, stream: _Stream, now: float) -> bytes | None:
        """One tick from several frames of the buffer, or from part of a long packet.

        Unit ``k`` of the tick is played ``k`` units after ``now``: that is the
        time the buffer measures its delay against. Consecutive slices of a
        sliceable codec are decoded in one call; each lost unit is concealed on
        its own (per-frame PLC), an empty one is silence.
        """
        splitter = stream.splitter
        codec = stream.codec
        jitter = stream.jitter
        unit_pcm = stream.pcm_samples // splitter.per_tick
        step = splitter.unit / codec.clock_rate
        parts: list[bytes] = []
        slices: list[bytes] = []
        audio = False
        for k in range(splitter.per_tick):
            result = jitter.get(now + k * step)
            if type(result) is Frame:
                audio = True
                if splitter.sliceable:
                    slices.append(result.payload)
                else:
                    parts.append(self._decode_unit(stream, result, unit_pcm))
                continue
            if slices:
                parts.append(codec.decode(b"".join(slices)))
                slices = []
            if type(result) is Lost:
                audio = True
                stream.stash = b""
                parts.append(codec.conceal(unit_pcm))
            else:
                parts.append(bytes(2 * unit_pcm))
        if slices:
            parts.append(codec.decode(b"".join(slices)))
        return b"".join(parts) if audio else None

    @staticmethod
    def _decode_unit(stream: _Stream, frame: Frame, unit_pcm: int) -> bytes:
        """A unit of a codec that cannot be sliced: decode at the first, play the rest after."""
        size = 2 * unit_pcm
        unit = stream.splitter.unit
        if frame.payload:
            pcm = stream.codec.decode(frame.payload)
            stream.stash = pcm[size:]
            stream.stash_ts = (frame.timestamp + unit) & 0xFFFFFFFF
            pcm = pcm[:size]
        elif stream.stash and frame.timestamp == stream.stash_ts:
            pcm = stream.stash[:size]
            stream.stash = stream.stash[size:]
            stream.stash_ts = (frame.timestamp + unit) & 0xFFFFFFFF
        else:  # its first unit was dropped (delay correction): nothing decoded
            return stream.codec.conceal(unit_pcm)
        if len(pcm) < size:  # a broken packet decodes short (the peer's fault)
            pcm += bytes(size - len(pcm))
        return pcm

    def send_dtmf(self, digits: str, duration: float = 0.1) -> None:
        """Queue RFC 4733 digits; they go out in the next ticks, in order.

        Raises :class:`DtmfNotNegotiatedError` when the peer did not accept
        telephone-event and :class:`ValueError` for characters that are not digits.
        """
        stream = self._stream
        if stream is None or stream.event_pt is None:
            raise DtmfNotNegotiatedError("telephone-event was not negotiated for this call")
        stream.dtmf_tx.queue(digits, duration)
        stream.dtmf_tx_active = True
        self.dtmf_sent += len(digits)

    # -- receive path --------------------------------------------------------------------

    def _on_rtp_readable(self) -> None:
        # Only until the graph first reads the session (see read()).
        self._receive_rtp(fresh=0.0)

    def _receive_rtp(self, fresh: float) -> None:
        """Read the RTP socket: every datagram waiting, or up to the first fresh one.

        With kernel receive timestamps each datagram carries its true arrival
        time (RFC 3550 A.8 jitter and the jitter buffer need it, not the tick's
        time), and reading stops after one that arrived less than ``fresh``
        seconds ago: anything behind it is younger still and waits for the next
        tick, so the usual tick costs one ``recvmsg`` and no failing read.
        Without timestamps the socket is read until it is empty.
        """
        sock = self._rtp_sock
        now = self._loop.time()
        stamped = self._stamped
        wall = time.time() if stamped else 0.0
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            try:
                if stamped:
                    data, ancillary, _flags, addr = sock.recvmsg(MAX_RTP_PACKET, _CMSG_SPACE)
                else:
                    data, addr = sock.recvfrom(MAX_RTP_PACKET)
                    ancillary = None
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ICMP port unreachable surfaces here on Linux
                log.debug("RTP socket error: %s", exc)
                continue
            age = -1.0
            if ancillary:
                level, kind, raw = ancillary[0]
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS_NEW:
                    sec, nsec = _TIMESPEC.unpack_from(raw)
                    age = wall - sec - nsec * 1e-9
            if 0.0 <= age < 1.0:  # a wall-clock step makes it useless: then use now
                self._on_datagram(data, addr, now - age)
                if age < fresh:
                    break
            else:
                self._on_datagram(data, addr, now)
        stream = self._stream
        if stream is not None and stream.rtp.receiver.has_events:
            self._drain_rtp_events(stream)

    def _on_datagram(self, data: bytes, addr: Address, now: float) -> None:
        """One datagram from the RTP socket, received at ``now``."""
        stream = self._stream
        if stream is None:
            return  # nothing negotiated yet: early packets are dropped
        srtp = self._srtp
        if srtp is not None:
            plain = self._unprotect(srtp, data, rtcp=is_rtcp(data))
            if plain is None:
                return
            data = plain
        if len(data) > 1 and 192 <= data[1] <= 223:  # is_rtcp(), inlined: RFC 5761 4
            stream.rtp.receive_rtcp(data, addr, now)  # a peer muxing RTCP on this port
            return
        accepted = stream.rtp.accept_rtp(data, addr, now)
        if accepted is None:
            return
        pt, seq, ts, payload = accepted
        if pt == stream.payload_type:
            if not stream.can_receive:
                return
            if len(payload) == stream.splitter.whole_bytes:
                stream.jitter.put(seq, ts, payload, now)  # one tick: the usual packet
            else:
                stream.splitter.put(seq, ts, payload, stream.packet_duration(payload), now)
        elif pt == stream.event_pt:
            stream.splitter.put_event(seq, ts, now)
            stream.dtmf_rx.receive(payload, ts, now)
            self._drain_digits(stream.dtmf_rx)
            stream.dtmf_rx_active = stream.dtmf_rx.get_timer() is not None
        else:
            self.unknown_payload += 1  # e.g. comfort noise (RFC 3389) we did not offer

    def _on_rtcp_readable(self) -> None:
        sock = self._rtcp_sock
        now = self._loop.time()
        stream = self._stream
        for _ in range(MAX_DATAGRAMS_PER_WAKEUP):
            try:
                data, addr = sock.recvfrom(MAX_RTP_PACKET)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.debug("RTCP socket error: %s", exc)
                continue
            if stream is None:
                continue
            if self._srtp is not None:
                plain = self._unprotect(self._srtp, data, rtcp=True)
                if plain is None:
                    continue
                data = plain
            stream.rtp.receive_rtcp(data, addr, now)
        if stream is not None:
            self._drain_rtp_events(stream)

    def _unprotect(self, srtp: SrtpContext, data: bytes, *, rtcp: bool) -> bytes | None:
        from sipstack.srtp import SrtpError

        try:
            return srtp.unprotect_rtcp(data) if rtcp else srtp.unprotect_rtp(data)
        except SrtpError as exc:
            if self.srtp_failures == 0:
                log.warning("dropping SRTP packet that fails to verify: %s", exc.reason)
            self.srtp_failures += 1
            return None

    def _drain_rtp_events(self, stream: _Stream) -> None:
        rtp = stream.rtp
        event = rtp.next_event()
        while event is not None:
            if isinstance(event, SourceLatched):
                if event.addr != self._rtp_dest:
                    self._rtp_dest = event.addr
                    self._emit(MediaLatched(event.addr))
            elif isinstance(event, RtcpSourceLatched):
                self._rtcp_dest = event.addr
            elif isinstance(event, SsrcChanged):
                if event.old is not None:
                    # RFC 3550 8.2: a new source's numbering is unrelated to the old one
                    stream.jitter.reset()
                    stream.stash = b""
                self._emit(RemoteSourceChanged(event.new))
            elif isinstance(event, ByeReceived):
                self._emit(RemoteBye(event.reason))
            event = rtp.next_event()

    def _drain_digits(self, dtmf_rx: DtmfReceiver) -> None:
        digit = dtmf_rx.next_event()
        while digit is not None:
            self.dtmf_received += 1
            self._emit(DtmfReceived(digit.digit, digit.duration_ms))
            digit = dtmf_rx.next_event()

    def _emit(self, event: MediaEvent) -> None:
        if self._on_event is not None:
            self._on_event(event)

    # -- RTCP ----------------------------------------------------------------------------

    def _schedule_rtcp(self) -> None:
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
            self._rtcp_timer = None
        stream = self._stream
        when = stream.rtp.get_timer() if stream is not None else None
        if when is not None:
            self._rtcp_timer = self._loop.call_at(when, self._on_rtcp_timer)

    def _on_rtcp_timer(self) -> None:
        self._rtcp_timer = None
        stream = self._stream
        if stream is None or self.state is not MediaState.ACTIVE:
            return
        now = self._loop.time()
        if not self._rtp_reader and now - self._last_read > READER_FALLBACK:
            # Nobody ticks us any more (the clock stopped, the port was unplugged):
            # the loop reads the socket again, so latching, DTMF and statistics go on.
            self._loop.add_reader(self._rtp_sock, self._on_rtp_readable)
            self._rtp_reader = True
        stream.rtp.handle_timer(now)
        dest = self._rtcp_dest
        for data in stream.rtp.rtcp_to_send():
            if dest is not None:  # RFC 3264 8.4: RTCP keeps flowing on hold
                self._send(self._rtcp_sock, data, dest, rtcp=True)
        self._schedule_rtcp()

    def _send(self, sock: socket.socket, data: bytes, dest: Address, *, rtcp: bool = False) -> None:
        srtp = self._srtp
        if srtp is not None:
            data = srtp.protect_rtcp(data) if rtcp else srtp.protect_rtp(data)
        try:
            sock.sendto(data, dest)
        except OSError as exc:
            # A full socket buffer or an unreachable peer loses one packet; the
            # call goes on (RTP tolerates loss by design).
            log.debug("RTP sendto %s failed: %s", dest, exc)

    # -- statistics and teardown ---------------------------------------------------------

    def stats(self) -> MediaStats:
        """Counters for ``call_get_info``: RTP/RTCP (loss, jitter, RTT) and jitter buffer."""
        stream = self._stream
        return MediaStats(
            codec=stream.codec.name if stream else None,
            payload_type=stream.payload_type if stream else None,
            direction=self._direction,
            local_port=self.local_port,
            remote_rtp=self._rtp_dest,
            rtp=stream.rtp.stats() if stream else None,
            jitter=stream.jitter.stats() if stream else None,
            dtmf_sent=self.dtmf_sent,
            dtmf_received=self.dtmf_received,
            unknown_payload=self.unknown_payload,
            srtp_failures=self.srtp_failures,
            refused_duration=stream.splitter.refused if stream else 0,
        )

    def close(self, reason: str | None = None) -> None:
        """Send RTCP BYE (RFC 3550 6.6), unregister and close both sockets. Idempotent."""
        if self.state is MediaState.CLOSED:
            return
        stream = self._stream
        if stream is not None and self._rtcp_dest is not None:
            self._send(
                self._rtcp_sock,
                stream.rtp.bye(self._loop.time(), reason),
                self._rtcp_dest,
                rtcp=True,
            )
        self.state = MediaState.CLOSED
        if self._rtcp_timer is not None:
            self._rtcp_timer.cancel()
            self._rtcp_timer = None
        if self._rtp_reader:
            self._loop.remove_reader(self._rtp_sock)
            self._rtp_reader = False
        self._loop.remove_reader(self._rtcp_sock)
        self._rtp_sock.close()
        self._rtcp_sock.close()
        close = getattr(stream.codec, "close", None) if stream is not None else None
        if close is not None:
            close()  # G.722 frees its C state now rather than at collection
