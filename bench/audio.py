"""Voice chain benchmark and echo-canceller measurement (issue 5).

Run:  .venv/bin/python bench/audio.py            (both rates, prints a table)
      .venv/bin/python bench/audio.py --json     (machine-readable)

Needs numpy (test/bench only; the firmware does not).

1. **ERLE in a simulated room.** No speech recordings ship with the project, so
   the talkers are synthesised: voiced syllables (a harmonic series on a
   jittering pitch, shaped by three moving formant resonances, 3-5 syllables a
   second with pauses) plus short unvoiced noise bursts. The far-end talker is
   "played" through a room impulse response (exponentially decaying noise,
   RT60 0.25 s, after a direct-path delay), scaled to a strong coupling, and
   added to the near-end talker and a little sensor noise at the microphone.
   Timeline: far end only (0-12 s), double talk (12-15 s), near end only (15-17 s).

   * ERLE = 10 log10(energy at the microphone / energy after processing) over
     the far-end-only part after 5 s of convergence (5-12 s), for the linear
     canceller alone, for the full chain (+ residual echo suppression + denoise;
     AGC off, since it would re-amplify the residue under measurement), and for
     the full chain driven through the live-device API (playback()/capture(),
     with the echo arriving 2 prefill periods later as on a real card).
   * Near-end preservation: the output is compared with what the same chain
     makes of the near-end talker alone (no far end): scale-invariant
     signal-to-distortion ratio and level change, in double talk and in the
     near-only part. (Against the raw signal the chain differs anyway: the
     canceller's DC notch cuts below ~150 Hz and the preprocessor delays by
     one frame.)

2. **CPU per second of audio** (``time.process_time``) for the capture path
   (ALSA frame -> echo canceller -> preprocessor with AGC) and the playback path
   (frame -> canceller reference queue). There is no G.711 codec module yet, so
   the encode/decode halves are NOT included; add them when the codec lands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hal.audio import AudioConfig  # noqa: E402
from hal.voice import VoiceConfig, VoiceProcessor  # noqa: E402
from sipstack.codecs import default_registry  # noqa: E402

FloatArray = np.ndarray


def speech_like(rate: int, seconds: float, seed: int, f0: float) -> FloatArray:
    """A speech-like signal in [-1, 1]: voiced syllables, fricatives, pauses."""
    rng = np.random.default_rng(seed)
    n = int(rate * seconds)
    out = np.zeros(n)
    t = 0
    while t < n:
        syllable = int(rate * rng.uniform(0.12, 0.28))
        pause = int(rate * rng.uniform(0.03, 0.25))
        if rng.random() < 0.15:
            pause += int(rate * rng.uniform(0.3, 0.7))  # breath between phrases
        end = min(n, t + syllable)
        m = end - t
        if m <= 0:
            break
        tt = np.arange(m) / rate
        # pitch with intonation and jitter
        pitch = f0 * (1 + 0.12 * np.sin(2 * np.pi * rng.uniform(0.5, 2) * tt + rng.uniform(0, 6)))
        pitch *= 1 + 0.01 * rng.standard_normal(m).cumsum() / np.sqrt(np.arange(1, m + 1))
        phase = 2 * np.pi * np.cumsum(pitch) / rate
        formants = [rng.uniform(300, 800), rng.uniform(900, 2200), rng.uniform(2300, 3300)]
        voiced = np.zeros(m)
        for k in range(1, int((rate / 2) / (f0 * 1.2))):
            fk = k * pitch
            gain = sum(1.0 / (1.0 + ((fk - fm) / (60.0 + 0.08 * fm)) ** 2) for fm in formants) / (
                1 + 0.1 * k
            )
            gain = np.where(fk < rate / 2 - 200, gain, 0.0)
            voiced += gain * np.sin(k * phase)
        envelope = np.sin(np.pi * np.arange(m) / m) ** 0.6
        seg = voiced * envelope
        if rng.random() < 0.35:  # fricative onset: high-passed noise burst
            b = min(m, int(rate * rng.uniform(0.03, 0.08)))
            noise = rng.standard_normal(b)
            noise = np.diff(noise, prepend=0.0)
            seg[:b] += 0.3 * noise * np.hanning(b) * np.abs(voiced).max()
        out[t:end] = seg
        t = end + pause
    peak = np.abs(out).max()
    return out / peak if peak > 0 else out


def room_impulse_response(
    rate: int, delay_ms: float, rt60: float, length_s: float, seed: int
) -> FloatArray:
    """Direct-path delay, then exponentially decaying noise (a small lobby)."""
    rng = np.random.default_rng(seed)
    d = int(rate * delay_ms / 1000)
    n = int(rate * length_s)
    tt = np.arange(n) / rate
    tail = rng.standard_normal(n) * 10 ** (-3 * tt / rt60)  # -60 dB at rt60
    tail[0] = 3.0  # direct path, stronger than the first reflections
    return np.concatenate([np.zeros(d), tail / np.sqrt(np.sum(tail**2))])


def _to_int16(x: FloatArray) -> FloatArray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


# Timeline of the simulated call (seconds).
FAR_ONLY = (0.0, 12.0)
DOUBLE_TALK = (12.0, 15.0)
NEAR_ONLY = (15.0, 17.0)
CONVERGED = 5.0  # ERLE is measured from here to the end of FAR_ONLY
LIVE_LATENCY_PERIODS = 2  # playback prefill: frames between playback() and the speaker


@dataclass(frozen=True)
class RoomResult:
    """Figures of one simulated call (dB)."""

    sample_rate: int
    delay_ms: float
    filter_ms: int
    erle_aec_db: float  # linear canceller alone
    erle_chain_db: float  # + residual echo suppression + denoise
    erle_live_db: float  # full chain through the live-device API (playback()/capture())
    dt_sdr_db: float  # double talk: output vs the chain's output for the near end alone
    dt_level_db: float  # double talk: near-end level change caused by echo + canceller
    near_only_sdr_db: float
    near_only_level_db: float


def simulate_room(
    rate: int = 8000, delay_ms: float = 30.0, filter_ms: int = 200, seed: int = 1
) -> RoomResult:
    """Run the synthetic call through the voice chain and measure it."""
    seconds = NEAR_ONLY[1]
    far = 0.5 * speech_like(rate, seconds, seed=seed, f0=115.0)
    near = 0.35 * speech_like(rate, seconds, seed=seed + 100, f0=210.0)
    near[: int(DOUBLE_TALK[0] * rate)] = 0.0  # the visitor is silent at first
    far[int(NEAR_ONLY[0] * rate) :] = 0.0  # the far end stops talking
    rir = room_impulse_response(rate, delay_ms, rt60=0.25, length_s=0.2, seed=seed + 7)
    n = far.size
    noise = 10 ** (-60 / 20) * np.random.default_rng(seed + 3).standard_normal(n)
    audio = AudioConfig(sample_rate=rate)
    fs = audio.period_frames
    frames = n // fs
    lead = LIVE_LATENCY_PERIODS * fs

    def convolve(x: FloatArray) -> FloatArray:
        size = 1 << int(np.ceil(np.log2(x.size + rir.size)))
        y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(rir, size), size)[: x.size]
        return 0.8 * y  # loudspeaker a few cm from the microphone: echo as loud as a voice

    far16 = _to_int16(far)
    mic16 = _to_int16(convolve(far) + near + noise)
    near_mic16 = _to_int16(near + noise)  # what the microphone would hear without echo
    # Live device: the frame handed to playback() reaches the loudspeaker only
    # after the prefilled periods, so the echo lags by that much more.
    far_late = np.concatenate([np.zeros(lead), far])[:n]
    mic_live16 = _to_int16(convolve(far_late) + near + noise)

    voice = VoiceConfig(filter_ms=filter_ms, agc=False)
    chain = VoiceProcessor(audio, voice)
    reference = VoiceProcessor(audio, voice)
    aec_only = VoiceProcessor(
        audio,
        VoiceConfig(
            filter_ms=filter_ms, agc=False, noise_suppression=False, residual_echo_suppression=False
        ),
    )
    live = VoiceProcessor(audio, voice)
    out_chain = np.zeros(frames * fs, dtype=np.int16)
    out_ref = np.zeros(frames * fs, dtype=np.int16)
    out_aec = np.zeros(frames * fs, dtype=np.int16)
    out_live = np.zeros(frames * fs, dtype=np.int16)
    silent = bytes(audio.period_bytes)
    for i in range(frames):
        sl = slice(i * fs, (i + 1) * fs)
        far_b = far16[sl].tobytes()
        mic_b = mic16[sl].tobytes()
        out_chain[sl] = np.frombuffer(chain.process(mic_b, far_b), dtype=np.int16)
        out_aec[sl] = np.frombuffer(aec_only.process(mic_b, far_b), dtype=np.int16)
        out_ref[sl] = np.frombuffer(
            reference.process(near_mic16[sl].tobytes(), silent), dtype=np.int16
        )
        # live device order: a period is queued for playback, a period is captured
        live.playback(far_b)
        out_live[sl] = np.frombuffer(live.capture(mic_live16[sl].tobytes()), dtype=np.int16)
    for proc in (chain, reference, aec_only, live):
        proc.close()

    def energy(x: FloatArray, a: float, b: float) -> float:
        seg = x[int(a * rate) : int(b * rate)].astype(np.float64)
        return float(np.sum(seg**2)) + 1e-9

    def erle(mic: FloatArray, out: FloatArray) -> float:
        return float(
            10 * np.log10(energy(mic, CONVERGED, FAR_ONLY[1]) / energy(out, CONVERGED, FAR_ONLY[1]))
        )

    def sdr(out: FloatArray, window: tuple[float, float]) -> tuple[float, float]:
        a, b = int(window[0] * rate), int(window[1] * rate)
        ref = out_ref[a:b].astype(np.float64)
        est = out[a:b].astype(np.float64)
        target = float(np.dot(est, ref) / np.dot(ref, ref)) * ref
        return (
            float(10 * np.log10(np.sum(target**2) / (np.sum((est - target) ** 2) + 1e-9))),
            float(10 * np.log10((np.sum(est**2) + 1e-9) / np.sum(ref**2))),
        )

    dt_sdr, dt_level = sdr(out_chain, (DOUBLE_TALK[0] + 0.5, DOUBLE_TALK[1]))
    no_sdr, no_level = sdr(out_chain, NEAR_ONLY)
    return RoomResult(
        sample_rate=rate,
        delay_ms=delay_ms,
        filter_ms=filter_ms,
        erle_aec_db=round(erle(mic16, out_aec), 1),
        erle_chain_db=round(erle(mic16, out_chain), 1),
        erle_live_db=round(erle(mic_live16, out_live), 1),
        dt_sdr_db=round(dt_sdr, 1),
        dt_level_db=round(dt_level, 1),
        near_only_sdr_db=round(no_sdr, 1),
        near_only_level_db=round(no_level, 1),
    )


@dataclass(frozen=True)
class CpuResult:
    """CPU cost of the voice chain per second of audio."""

    sample_rate: int
    capture_cpu_ms_per_s: float  # echo canceller + preprocessor (NS, AGC, residual) + encode
    playback_cpu_ms_per_s: float  # decode + canceller reference queueing
    capture_percent_core: float


def measure_cpu(rate: int, seconds: float = 20.0, filter_ms: int = 160) -> CpuResult:
    """CPU ms spent per second of audio on each path, production voice settings."""
    audio = AudioConfig(sample_rate=rate)
    fs = audio.period_frames
    far = _to_int16(0.5 * speech_like(rate, seconds, seed=5, f0=120.0))
    mic = _to_int16(0.3 * speech_like(rate, seconds, seed=6, f0=200.0))
    frames = far.size // fs
    far_frames = [far[i * fs : (i + 1) * fs].tobytes() for i in range(frames)]
    mic_frames = [mic[i * fs : (i + 1) * fs].tobytes() for i in range(frames)]
    proc = VoiceProcessor(audio, VoiceConfig(filter_ms=filter_ms))
    # the codec of a call at that rate: G.711 (PCMU) at 8 kHz, G.722 at 16 kHz
    codec = default_registry().create("PCMU" if rate == 8000 else "G722")
    payloads = [codec.encode(f) for f in far_frames]
    codec.reset()
    play_cpu = 0.0
    cap_cpu = 0.0
    for p, m in zip(payloads, mic_frames, strict=True):
        t0 = time.process_time()
        proc.playback(codec.decode(p))  # network -> decode -> speaker (AEC reference)
        t1 = time.process_time()
        codec.encode(proc.capture(m))  # microphone -> AEC/NS/AGC -> encode -> network
        t2 = time.process_time()
        play_cpu += t1 - t0
        cap_cpu += t2 - t1
    proc.close()
    audio_seconds = frames * audio.period_seconds
    return CpuResult(
        sample_rate=rate,
        capture_cpu_ms_per_s=round(1000 * cap_cpu / audio_seconds, 2),
        playback_cpu_ms_per_s=round(1000 * play_cpu / audio_seconds, 3),
        capture_percent_core=round(100 * cap_cpu / audio_seconds, 2),
    )


def _json_lines(rooms: list[RoomResult], cpus: list[CpuResult]) -> list[dict[str, object]]:
    """run_all result lines: worst full-chain ERLE, capture-path CPU per rate (no peer)."""
    worst = min(rooms, key=lambda r: r.erle_chain_db)
    lines: list[dict[str, object]] = [
        {
            "name": "echo cancellation ERLE, full chain (worst room case)",
            "ours": worst.erle_chain_db,
            "peer": None,
            "ratio": None,
            "unit": "dB",
            "better": "higher",
            "peer_name": "",
            "target": ">= 20 dB",
            "note": f"{worst.sample_rate} Hz, {worst.delay_ms:.0f} ms echo delay",
        }
    ]
    for c in cpus:
        lines.append(
            {
                "name": f"voice capture path CPU (AEC+NS+AGC+encode), {c.sample_rate} Hz",
                "ours": c.capture_cpu_ms_per_s,
                "peer": None,
                "ratio": None,
                "unit": "ms CPU per s of audio",
                "better": "lower",
                "peer_name": "",
                "target": "",
                "note": f"playback path {c.playback_cpu_ms_per_s} ms/s",
            }
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    """Print the ERLE and CPU figures for 8 and 16 kHz."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--json",
        action="store_true",
        help="report on stderr, result lines for bench/run_all.py on stdout",
    )
    args = parser.parse_args(argv)
    rooms = [simulate_room(rate, delay_ms=d) for rate in (8000, 16000) for d in (10.0, 30.0, 60.0)]
    cpus = [measure_cpu(rate) for rate in (8000, 16000)]
    if args.json:
        # the readable report goes to stderr, run_all's result lines to stdout
        with contextlib.redirect_stdout(sys.stderr):
            print(
                json.dumps({"room": [asdict(r) for r in rooms], "cpu": [asdict(c) for c in cpus]})
            )
        for line in _json_lines(rooms, cpus):
            print(json.dumps(line), flush=True)
        return 0
    print("rate  delay | ERLE: aec  chain  live | double talk: SDR  level | near only: SDR  level")
    for r in rooms:
        print(
            f"{r.sample_rate:5d} {r.delay_ms:3.0f}ms | {r.erle_aec_db:9.1f} {r.erle_chain_db:6.1f}"
            f" {r.erle_live_db:5.1f} | {r.dt_sdr_db:16.1f} {r.dt_level_db:6.1f} |"
            f" {r.near_only_sdr_db:14.1f} {r.near_only_level_db:6.1f}   (dB)"
        )
    print()
    print("rate   capture path (AEC+NS+AGC+encode)   playback path (decode+AEC reference)")
    print("       codec: PCMU at 8 kHz, G.722 at 16 kHz")
    for c in cpus:
        print(
            f"{c.sample_rate:5d}  {c.capture_cpu_ms_per_s:7.2f} ms CPU/s "
            f"({c.capture_percent_core:.2f}% of a core)   {c.playback_cpu_ms_per_s:7.3f} ms CPU/s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
