"""Mouth-to-ear delay the device adds: capture to RTP out, and RTP in to playback.

Run from the repository root::

    .venv/bin/python bench/latency.py               # 30 s: 5 phases x 6 s, plain and voice chain
    .venv/bin/python bench/latency.py --seconds 8 --json

What is measured, on one loop in one process, with the media path the
firmware uses on a Raspberry Pi (the card's clock paces the graph:
:meth:`MediaClock.start_device` on :class:`hal.sim_audio.SimAudioDevice`, paced
like a sound card, its microphone and speaker as the conference's
:class:`DevicePort`; a call's :class:`MediaSession` from
:class:`RtpMediaFactory`, PCMU, 20 ms):

- **capture -> RTP out**: a marker (a 10 ms 1 kHz burst after silence, starting
  at a known sample of its frame) is queued in the simulated microphone. The
  probe around the capture stream notes the time its frame is handed to the
  graph (``time.monotonic``, when the card would have delivered the period);
  a far-end socket with kernel receive timestamps (``SO_TIMESTAMPNS``; on
  loopback that is the instant of our ``sendto``) notes when the RTP packet
  carrying the burst's first sample arrives. Delay = packet time + onset
  sample offset in the packet - (frame time + onset offset in the frame), so a
  processing stage that shifts samples (the voice chain's one-frame look-ahead)
  counts.
- **RTP in -> playback**: the far end sends PCMU every 20 ms (its own steady
  clock, at a phase offset to the card's ticks) with a burst in one packet; the
  probe around the playback stream notes when the frame holding the burst's
  first sample is pulled by the card, i.e. written to the device. Delay = that
  time + onset offset in the frame - (send time + onset offset in the packet).

The far end's phase to the card's clock decides how long a packet waits for
the next tick (0-20 ms), so the run is split into ``--phases`` sessions with
phase offsets spread over one period; the result is the median over all
markers, with the range. Two device configurations run: ``plain`` (what
``--hal sim`` and a card without the voice processor do) and ``voice`` (echo
canceller + preprocessor in the path, as on the Pi; needs libspeexdsp).

The reference ("peer") for RTP in -> playback is the jitter buffer's target
delay at the end of each session: the part of the delay a receiver must add
on purpose to absorb network jitter; everything above it is what the device's
structure costs (waiting for the next tick, the playout queue). For capture
-> RTP out the ideal is 0 (a frame is sent the moment it is complete); there
is no peer. baresip is not compared: it offers no hook to timestamp a frame
inside its audio pipeline, and an end-to-end file-to-file measurement through
``aufile``/``sndfile`` would time its file modules' threads, not its audio path.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import math
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hal.audio import AudioConfig, FrameSink, FrameSource  # noqa: E402
from hal.sim_audio import SimAudioDevice  # noqa: E402
from sipstack.codec_g711 import ulaw_decode, ulaw_encode  # noqa: E402
from sipstack.loop import Loop  # noqa: E402
from sipstack.media_factory import RtpMediaFactory  # noqa: E402
from sipstack.media_graph import Conference, DevicePort, MediaClock  # noqa: E402
from sipstack.media_session import RtpPortAllocator  # noqa: E402
from sipstack.offer_answer import CodecSpec, NegotiatedMedia  # noqa: E402
from sipstack.rtp import build_rtp, parse_rtp  # noqa: E402
from sipstack.sdp import Direction  # noqa: E402

RATE = 8000
FRAME = 160  # 20 ms at 8 kHz
PTIME = FRAME / RATE
MARK_EVERY = 25  # frames between markers (0.5 s): the jitter buffer and AEC settle
ONSET = 40  # the burst starts at this sample of its frame / packet (5 ms in)
BURST = 80  # samples of burst (10 ms)
THRESHOLD = 3000  # a sample above this (in magnitude) is the burst; silence is 0
# Linux: SO_TIMESTAMPNS_NEW (asm-generic/socket.h), a 64-bit struct __kernel_timespec
SO_TIMESTAMPNS_NEW = 64
TIMESPEC = struct.Struct("=qq")


def burst_frame() -> bytes:
    """A frame of silence with a 1 kHz burst from sample ONSET (-6 dBFS)."""
    samples = [0] * FRAME
    for i in range(BURST):
        samples[ONSET + i] = round(16000 * math.sin(2 * math.pi * 1000 * (i + 0.5) / RATE))
    return array.array("h", samples).tobytes()


def onset(frame: bytes) -> int | None:
    """Index of the first sample above THRESHOLD, or None."""
    samples = array.array("h", frame)
    for i, s in enumerate(samples):
        if abs(s) > THRESHOLD:
            return i
    return None


@dataclass
class Probe:
    """Times of frames crossing the device boundary: (monotonic time, frame)."""

    frames: list[tuple[float, bytes]] = field(default_factory=list)


class CaptureProbe:
    """Wraps a capture stream: notes when each frame reaches the graph."""

    def __init__(
        self, inner: Any, probe: Probe, wrap: Callable[[FrameSink], FrameSink] | None
    ) -> None:
        self._inner, self._probe, self._wrap = inner, probe, wrap

    def start(self, on_frame: FrameSink) -> None:
        sink = self._wrap(on_frame) if self._wrap is not None else on_frame
        frames = self._probe.frames

        def deliver(frame: bytes) -> None:
            frames.append((time.monotonic(), frame))
            sink(frame)

        self._inner.start(deliver)

    def stop(self) -> None:
        self._inner.stop()


class PlaybackProbe:
    """Wraps a playback stream: notes when each frame is pulled (written to the card)."""

    def __init__(
        self, inner: Any, probe: Probe, wrap: Callable[[FrameSource], FrameSource] | None
    ) -> None:
        self._inner, self._probe, self._wrap = inner, probe, wrap

    def start(self, source: FrameSource) -> None:
        src = self._wrap(source) if self._wrap is not None else source
        frames = self._probe.frames
        silence = bytes(2 * FRAME)

        def pull() -> bytes | None:
            frame = src()
            frames.append((time.monotonic(), frame if frame is not None else silence))
            return frame

        self._inner.start(pull)

    def stop(self) -> None:
        self._inner.stop()


@dataclass
class Session:
    """One measured call: delays in seconds and the jitter buffer's target."""

    capture: list[float]
    playback: list[float]
    jb_target: float
    lost: int


def run_session(seconds: float, phase: float, voice: bool) -> Session:
    """One call of ``seconds`` with the far end sending at ``phase`` s after the card's ticks."""
    loop = Loop()
    config = AudioConfig(sample_rate=RATE)
    device = SimAudioDevice(loop, config)
    conference = Conference(RATE, FRAME)
    port = DevicePort()
    slot = conference.add_port("device", port, port)
    clock = MediaClock(PTIME, conference.tick)
    factory = RtpMediaFactory(
        loop,
        ports=RtpPortAllocator(46000, 46999),
        codecs=("PCMU",),
        telephone_event=False,
        conference=conference,
        audio_slot=slot,
    )
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind(("127.0.0.1", 0))
    far.setblocking(False)
    far.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS_NEW, 1)
    local = factory.create_local_media(1)
    factory.on_negotiated(
        1,
        NegotiatedMedia(
            remote_address="127.0.0.1",
            remote_port=far.getsockname()[1],
            remote_rtcp_port=None,
            codec=CodecSpec("PCMU", RATE, payload_type=0),
            telephone_event_pt=None,
            ptime=20,
            direction=Direction.SENDRECV,
            on_hold_by_remote=False,
        ),
    )
    wrap_sink = wrap_source = None
    processor = None
    if voice:
        from hal.voice import VoiceConfig, VoiceProcessor

        processor = VoiceProcessor(config, VoiceConfig())
        wrap_sink, wrap_source = processor.wrap_sink, processor.wrap_source
    cap, play = Probe(), Probe()
    frames = int(seconds / PTIME)
    marker, silence = burst_frame(), bytes(2 * FRAME)
    device.capture.feed(
        [marker if k % MARK_EVERY == MARK_EVERY // 2 else silence for k in range(frames)]
    )
    # RTP out: (kernel arrival time in monotonic seconds, decoded payload)
    wall_offset = time.time() - time.monotonic()
    received: list[tuple[float, bytes]] = []

    def on_far_readable() -> None:
        while True:
            try:
                data, ancillary, _flags, _addr = far.recvmsg(2048, socket.CMSG_SPACE(16))
            except BlockingIOError:
                return
            stamp = time.monotonic()
            for level, kind, raw in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS_NEW:
                    sec, nsec = TIMESPEC.unpack_from(raw)
                    stamp = sec + nsec * 1e-9 - wall_offset
            pkt = parse_rtp(data)
            received.append((stamp, ulaw_decode(pkt.payload)))

    loop.add_reader(far.fileno(), on_far_readable)
    sent: list[tuple[float, bytes]] = []  # (send time, PCM) of the far end's packets
    remote = ("127.0.0.1", local.port)
    marker_ulaw, silence_ulaw = ulaw_encode(marker), ulaw_encode(silence)
    state = {"seq": 0}

    def far_send(when: float) -> None:
        k = state["seq"]
        if k >= frames:
            return
        state["seq"] = k + 1
        loop.call_at(when + PTIME, lambda: far_send(when + PTIME))
        is_marker = k % MARK_EVERY == MARK_EVERY // 2 and k > MARK_EVERY
        payload = marker_ulaw if is_marker else silence_ulaw
        t = time.monotonic()
        far.sendto(build_rtp(0, k & 0xFFFF, (k * FRAME) & 0xFFFFFFFF, 0x5EED, payload), remote)
        sent.append((t, marker if is_marker else silence))

    clock.start_device(
        CaptureProbe(device.capture, cap, wrap_sink),
        PlaybackProbe(device.playback, play, wrap_source),
        port,
        loop.time,
    )
    start = loop.time()
    loop.call_at(start + phase, lambda: far_send(start + phase))
    loop.run_until(lambda: False, seconds + 0.5)
    stats = factory.rtp_stats(1)
    jb_target = stats.jitter.target_delay if stats is not None and stats.jitter else math.nan
    lost = stats.rtp.cumulative_lost if stats is not None and stats.rtp else 0
    clock.stop()
    factory.close_all()
    loop.remove_reader(far.fileno())
    far.close()
    if processor is not None:
        processor.close()
    loop.close()
    return Session(
        capture=pair_delays(cap.frames, received),
        playback=pair_delays(sent, play.frames),
        jb_target=jb_target,
        lost=lost,
    )


def pair_delays(origin: list[tuple[float, bytes]], dest: list[tuple[float, bytes]]) -> list[float]:
    """Delay of each burst from ``origin`` to its first appearance in ``dest``.

    Each side is a time-ordered list of (time, frame); a burst's instant is
    its frame's time plus its onset sample. Bursts are matched in order; a
    destination burst is the first loud frame after a quiet one.
    """

    def bursts(frames: list[tuple[float, bytes]]) -> list[float]:
        out, quiet = [], True
        for t, frame in frames:
            at = onset(frame)
            if at is not None and quiet:
                out.append(t + at / RATE)
            quiet = at is None
        return out

    a, b = bursts(origin), bursts(dest)
    delays = []
    j = 0
    for t in a:
        while j < len(b) and b[j] < t:
            j += 1  # a destination burst before its origin: left over, skip it
        if j == len(b):
            break
        delays.append(b[j] - t)
        j += 1
    return delays


def measure(
    seconds: float, phases: int, voice: bool
) -> tuple[list[float], list[float], list[float]]:
    """Capture and playback delays over all phase sessions, and the JB targets."""
    cap: list[float] = []
    play: list[float] = []
    targets: list[float] = []
    per = max(2.0, seconds / phases)
    for i in range(phases):
        phase = (i + 0.5) / phases * PTIME
        s = run_session(per, phase, voice)
        # the first marker of a session meets a jitter buffer still settling: skip it
        cap += s.capture[1:]
        play += s.playback[1:]
        targets.append(s.jb_target)
        print(
            f"  {'voice' if voice else 'plain'} phase {phase * 1000:4.1f} ms: capture->RTP "
            + _ms(s.capture[1:])
            + ", RTP->playback "
            + _ms(s.playback[1:])
            + f", JB target {s.jb_target * 1000:.0f} ms, lost {s.lost}"
        )
    return cap, play, targets


def _ms(values: list[float]) -> str:
    if not values:
        return "no markers"
    low, high = min(values) * 1000, max(values) * 1000
    return f"{statistics.median(values) * 1000:.1f} ms ({low:.1f}-{high:.1f})"


def main(argv: list[str] | None = None) -> int:
    """Measure both configurations; print a report (and run_all result lines with --json)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="per configuration")
    ap.add_argument("--phases", type=int, default=5, help="far-end phase offsets over 20 ms")
    ap.add_argument("--no-voice", action="store_true", help="skip the voice-chain configuration")
    ap.add_argument("--json", action="store_true", help="result lines for bench/run_all.py")
    args = ap.parse_args(argv)
    configs = [False] if args.no_voice else [False, True]
    lines: list[dict[str, object]] = []
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        for voice in configs:
            if voice:
                try:
                    import hal.voice  # noqa: F401

                    run_session(0.1, 0.0, True)
                except Exception as exc:  # libspeexdsp missing: say so, measure the rest
                    print(f"voice chain unavailable ({exc}); skipped")
                    continue
            label = "with echo canceller + preprocessor" if voice else "device path"
            cap, play, targets = measure(args.seconds, args.phases, voice)
            if not cap or not play:
                print(f"{label}: no markers measured")
                return 1
            target = statistics.median(targets)
            c, p = statistics.median(cap), statistics.median(play)
            print(
                f"{label}: capture -> RTP out {_ms(cap)}; RTP in -> playback {_ms(play)}; "
                f"jitter-buffer target {target * 1000:.0f} ms"
            )
            lines.append(
                {
                    "name": f"added delay capture -> RTP out ({label})",
                    "ours": round(c * 1000, 2),
                    "peer": None,
                    "ratio": None,
                    "unit": "ms",
                    "better": "lower",
                    "peer_name": "",
                    "target": "ideal 0 (sent when the frame is complete)",
                    "note": f"median of {len(cap)} markers, range "
                    f"{min(cap) * 1000:.1f}-{max(cap) * 1000:.1f} ms",
                }
            )
            lines.append(
                {
                    "name": f"added delay RTP in -> playback write ({label})",
                    "ours": round(p * 1000, 1),
                    "peer": round(target * 1000, 1),
                    "ratio": round(p / target, 2),
                    "unit": "ms",
                    "better": "lower",
                    "peer_name": "jitter-buffer target delay",
                    "target": "",
                    "note": f"median of {len(play)} markers over {args.phases} far-end phases, "
                    f"range {min(play) * 1000:.1f}-{max(play) * 1000:.1f} ms",
                }
            )
    if args.json:
        for line in lines:
            print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
