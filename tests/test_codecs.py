"""Tests of the audio codecs (G.711, G.722, Opus), the G.711 PLC and the registry."""

from __future__ import annotations

import importlib
import math
import warnings
from array import array
from types import ModuleType

import pytest

from sipstack import codec_g711, codec_g722, codec_opus
from sipstack.codec_g711 import G711Codec, alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from sipstack.codec_g722 import G722Codec
from sipstack.codecs import (
    Codec,
    CodecInfo,
    CodecRegistry,
    CodecUnavailableError,
    UnknownCodecError,
    default_registry,
)
from sipstack.plc import PacketLossConcealer

ALL_SAMPLES = array("h", range(-32768, 32768)).tobytes()
ALL_CODES = bytes(range(256))


def _audioop() -> ModuleType | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return importlib.import_module("audioop")
        except ImportError:  # Python 3.13+
            return None


audioop = _audioop()
needs_audioop = pytest.mark.skipif(audioop is None, reason="audioop removed in Python 3.13")


def pcm(samples: list[int]) -> bytes:
    return array("h", samples).tobytes()


def samples_of(data: bytes) -> list[int]:
    return array("h", data).tolist()


def tone(freq: float, count: int, rate: int, amplitude: float, phase: float = 0.0) -> list[int]:
    return [
        int(round(amplitude * math.sin(2 * math.pi * freq * i / rate + phase)))
        for i in range(count)
    ]


def snr_db(reference: list[int], actual: list[int]) -> float:
    signal = sum(r * r for r in reference)
    noise = sum((r - a) ** 2 for r, a in zip(reference, actual, strict=True))
    return math.inf if noise == 0 else 10 * math.log10(signal / noise)


def goertzel_power(values: list[int], freq: float, rate: int) -> float:
    coeff = 2 * math.cos(2 * math.pi * freq / rate)
    s1 = s2 = 0.0
    for v in values:
        s1, s2 = v + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def dominant_frequency(values: list[int], rate: int, candidates: list[float]) -> float:
    return max(candidates, key=lambda f: goertzel_power(values, f, rate))


# -- G.711 -----------------------------------------------------------------------------


@needs_audioop
def test_g711_bit_exact_with_audioop_for_every_input() -> None:
    assert audioop is not None
    assert ulaw_encode(ALL_SAMPLES) == audioop.lin2ulaw(ALL_SAMPLES, 2)
    assert alaw_encode(ALL_SAMPLES) == audioop.lin2alaw(ALL_SAMPLES, 2)
    assert ulaw_decode(ALL_CODES) == audioop.ulaw2lin(ALL_CODES, 2)
    assert alaw_decode(ALL_CODES) == audioop.alaw2lin(ALL_CODES, 2)


def test_encode_table_matches_the_per_sample_formula() -> None:
    # The run-length table build must agree with the formula for every input
    # (independent of audioop, so this also runs on 3.13).
    ulaw = ulaw_encode(ALL_SAMPLES)
    alaw = alaw_encode(ALL_SAMPLES)
    for i, x in enumerate(range(-32768, 32768)):
        assert ulaw[i] == codec_g711._ulaw_encode_one(x)
        assert alaw[i] == codec_g711._alaw_encode_one(x)


def test_alaw_every_code_word_round_trips() -> None:
    assert alaw_encode(alaw_decode(ALL_CODES)) == ALL_CODES


def test_ulaw_every_code_word_round_trips_except_negative_zero() -> None:
    back = ulaw_encode(ulaw_decode(ALL_CODES))
    expected = bytearray(ALL_CODES)
    expected[0x7F] = 0xFF  # 0x7F is "-0": it decodes to 0, which encodes as +0
    assert back == bytes(expected)
    assert samples_of(ulaw_decode(b"\x7f\xff")) == [0, 0]


def test_known_vectors() -> None:
    assert ulaw_encode(pcm([0])) == b"\xff"
    assert alaw_encode(pcm([0])) == b"\xd5"
    assert ulaw_encode(pcm([0, 0, 0])) == b"\xff\xff\xff"
    assert alaw_encode(pcm([-1, 8, -9])) == b"\x55\xd5\x55"
    # End points and smallest steps of the G.711 tables (16-bit scale).
    assert samples_of(ulaw_decode(b"\x80\x00\xfe\x7e")) == [32124, -32124, 8, -8]
    assert samples_of(alaw_decode(b"\xaa\x2a\xd5\x55")) == [32256, -32256, 8, -8]


def test_clipping_of_extreme_values() -> None:
    extremes = pcm([32767, 32700, 32635, -32768, -32700])
    assert ulaw_encode(extremes) == b"\x80\x80\x80\x00\x00"
    assert alaw_encode(extremes) == b"\xaa\xaa\xaa\x2a\x2a"
    assert samples_of(ulaw_decode(ulaw_encode(extremes))) == [32124] * 3 + [-32124] * 2
    assert samples_of(alaw_decode(alaw_encode(extremes))) == [32256] * 3 + [-32256] * 2


@pytest.mark.parametrize("law", ["PCMU", "PCMA"])
def test_sine_round_trip_snr(law: str) -> None:
    x = tone(1000, 8000, 8000, 32767 * 10 ** (-10 / 20), phase=0.3)  # -10 dBFS (AES17)
    codec = G711Codec(law)
    y: list[int] = []
    for k in range(0, len(x), 160):
        y += samples_of(codec.decode(codec.encode(pcm(x[k : k + 160]))))
    assert snr_db(x, y) > 35


def test_g711_lengths_and_bad_input() -> None:
    codec = G711Codec("pcma")
    assert codec.name == "PCMA"
    assert (codec.clock_rate, codec.sample_rate, codec.frame_samples(20)) == (8000, 8000, 160)
    assert len(codec.encode(bytes(320))) == 160
    assert len(codec.decode(bytes(160))) == 320
    assert codec.encode(b"") == b"" and codec.decode(b"") == b""
    assert codec.encode(pcm([1000])) == alaw_encode(pcm([1000, 0]))[:1]
    with pytest.raises(ValueError, match="odd length"):
        codec.encode(b"\x00\x01\x02")
    with pytest.raises(ValueError, match="PCMU"):
        G711Codec("G729")


# -- PLC -------------------------------------------------------------------------------


def run_with_losses(
    x: list[int], lost: set[int], frame: int = 160, rate: int = 8000
) -> tuple[list[int], PacketLossConcealer]:
    plc = PacketLossConcealer(rate)
    out: list[int] = []
    for k in range(len(x) // frame):
        chunk = pcm(x[k * frame : (k + 1) * frame])
        out += samples_of(plc.conceal(frame) if k in lost else plc.good_frame(chunk))
    return out, plc


@pytest.mark.parametrize(("freq", "pitch"), [(1000, 40), (200, 40), (300, 80), (100, 80)])
def test_plc_single_lost_frame_in_a_tone(freq: int, pitch: int) -> None:
    x = tone(freq, 8000, 8000, 10000, phase=0.7)
    out, plc = run_with_losses(x, {20})
    assert plc.pitch == pitch
    lost = slice(20 * 160, 21 * 160)
    # First 10 ms are a faithful continuation; by 20 ms App. I has attenuated 20 %.
    assert snr_db(x[lost][:80], out[lost][:80]) > 30
    assert snr_db(x[lost], out[lost]) > 15
    # The recovery frame is cross-faded, not replaced, and everything else is untouched.
    assert snr_db(x[21 * 160 : 22 * 160], out[21 * 160 : 22 * 160]) > 15
    assert out[: 20 * 160] == x[: 20 * 160]
    assert out[22 * 160 :] == x[22 * 160 :]


def swelling(freq: float, count: int, phase: float) -> list[int]:
    """A tone whose level and pitch drift, so no two periods are alike."""
    out = []
    for i in range(count):
        t = i / 8000
        level = 3000 + 11000 * t / (count / 8000)
        out.append(int(level * math.sin(2 * math.pi * freq * t * (1 + 0.3 * t) + phase)))
    return out


def max_curvature(values: list[int]) -> int:
    """Largest second difference: a step (click) in a smooth signal stands out here."""
    return max(
        abs(values[i + 1] - 2 * values[i] + values[i - 1]) for i in range(1, len(values) - 1)
    )


@pytest.mark.parametrize("kind", ["tone", "swelling"])
@pytest.mark.parametrize("freq", [157.0, 220.0, 440.0, 1000.0])
@pytest.mark.parametrize("phase", [0.0, 1.3, 2.9])
def test_plc_no_click_at_the_loss_boundaries(kind: str, freq: float, phase: float) -> None:
    x = tone(freq, 6400, 8000, 12000, phase) if kind == "tone" else swelling(freq, 6400, phase)
    out, _ = run_with_losses(x, {15, 16})
    reference = max_curvature(x[14 * 160 : 18 * 160])
    # Onset, period switches at 10 and 20 ms, recovery: none may bend the
    # waveform harder than the signal itself does (without the overlap-adds
    # and the onset offset this ratio reaches 1.4 to 35).
    assert max_curvature(out[15 * 160 - 20 : 15 * 160 + 40]) <= 1.15 * reference
    assert max_curvature(out[15 * 160 : 17 * 160]) <= 1.15 * reference
    assert max_curvature(out[17 * 160 - 20 : 17 * 160 + 80]) <= 1.15 * reference


def test_plc_decays_to_silence_after_60_ms() -> None:
    x = tone(300, 1600, 8000, 12000)
    plc = PacketLossConcealer()
    for k in range(10):
        plc.good_frame(pcm(x[k * 160 : (k + 1) * 160]))
    blocks = [samples_of(plc.conceal(80)) for _ in range(10)]  # 10 ms each
    peaks = [max(map(abs, b)) for b in blocks]
    assert peaks[0] > 11000  # first 10 ms at full level
    assert all(a > b for a, b in zip(peaks[1:6], peaks[2:6], strict=False))
    assert peaks[5] < 0.25 * peaks[0]
    assert all(v == 0 for b in blocks[6:] for v in b)
    assert plc.lost_samples == 800
    # Speech returns with a fade-in, not a jump from silence.
    back = samples_of(plc.good_frame(pcm(x[:160])))
    assert abs(back[0]) < 0.1 * 12000
    assert back[100:] == x[100:160]
    assert plc.lost_samples == 0


def test_plc_concealment_in_odd_sizes_matches_whole_frames() -> None:
    x = tone(250, 1600, 8000, 9000)
    whole, _ = run_with_losses(x, {6, 7})
    plc = PacketLossConcealer()
    pieces: list[int] = []
    for k in range(6):
        pieces += samples_of(plc.good_frame(pcm(x[k * 160 : (k + 1) * 160])))
    for size in (7, 33, 80, 1, 99, 100):  # 320 samples in irregular pieces
        pieces += samples_of(plc.conceal(size))
    pieces += samples_of(plc.good_frame(pcm(x[8 * 160 : 9 * 160])))
    assert pieces == whole[: 9 * 160]


def test_plc_at_16_khz_and_reset() -> None:
    x = tone(500, 16000, 16000, 8000)
    out, plc = run_with_losses(x, {30}, frame=320, rate=16000)
    assert plc.pitch % 32 == 0  # a whole number of 500 Hz periods at 16 kHz
    lost = slice(30 * 320, 31 * 320)
    assert snr_db(x[lost][:160], out[lost][:160]) > 30
    plc.reset()
    assert plc.conceal(320) == bytes(640)  # nothing heard since reset: silence
    with pytest.raises(ValueError):
        PacketLossConcealer(11025)
    with pytest.raises(ValueError):
        plc.conceal(-1)
    with pytest.raises(ValueError, match="odd"):
        plc.good_frame(b"\x00")


def test_g711_codec_uses_plc_and_can_skip_it() -> None:
    x = tone(300, 1600, 8000, 10000)
    with_plc = G711Codec("PCMU")
    without = G711Codec("PCMU", plc=False)
    for k in range(5):
        frame = with_plc.encode(pcm(x[k * 160 : (k + 1) * 160]))
        with_plc.decode(frame)
        without.decode(frame)
    concealed = samples_of(with_plc.conceal(160))
    assert max(map(abs, concealed[:80])) > 9000
    assert snr_db(x[5 * 160 : 5 * 160 + 80], concealed[:80]) > 25
    assert without.conceal(160) == bytes(320)
    with_plc.reset()
    assert with_plc.conceal(160) == bytes(320)


# -- G.722 -----------------------------------------------------------------------------


def g722_run(x: list[int], frame: int = 320) -> tuple[list[int], list[bytes]]:
    enc, dec = G722Codec(), G722Codec()
    payloads = [enc.encode(pcm(x[k : k + frame])) for k in range(0, len(x), frame)]
    out: list[int] = []
    for p in payloads:
        out += samples_of(dec.decode(p))
    enc.close()
    dec.close()
    return out, payloads


def test_g722_frame_sizes_and_rates() -> None:
    codec = G722Codec()
    assert (codec.name, codec.clock_rate, codec.sample_rate) == ("G722", 8000, 16000)
    assert codec.frame_samples(20) == 320
    assert len(codec.encode(bytes(640))) == 160
    assert len(codec.decode(bytes(160))) == 640
    assert codec.encode(b"") == b""
    with pytest.raises(ValueError, match="multiple of 4"):
        codec.encode(bytes(642))
    codec.close()
    codec.close()
    with pytest.raises(RuntimeError, match="after close"):
        codec.encode(bytes(640))


def test_g722_tone_comes_back_at_1_khz_with_good_snr() -> None:
    x = tone(1000, 16000, 16000, 10000, phase=0.2)
    y, payloads = g722_run(x)
    assert all(len(p) == 160 for p in payloads)
    steady = y[4000:12000]
    candidates = [250.0, 500.0, 800.0, 1000.0, 1250.0, 2000.0, 3000.0, 6000.0]
    assert dominant_frequency(steady, 16000, candidates) == 1000.0
    # Align for the codec's delay (QMF filters) and compare sample by sample.
    best = max(snr_db(x[4000 - d : 12000 - d], steady) for d in range(0, 40))
    assert best > 35


def test_g722_keeps_state_across_frames() -> None:
    x = tone(700, 3200, 16000, 9000)
    one = G722Codec()
    whole = one.encode(pcm(x))
    framed, _ = g722_run(x)
    _, payloads = g722_run(x)
    assert b"".join(payloads) == whole  # frame-by-frame == one go: state carried over
    fresh = G722Codec()
    again = G722Codec()
    again.decode(payloads[0])
    # Decoding frame 2 with and without frame 1's state gives different audio.
    assert fresh.decode(payloads[1]) != again.decode(payloads[1])
    # reset() is a fresh start.
    again.reset()
    assert again.decode(payloads[0]) == G722Codec().decode(payloads[0])
    one.reset()
    assert one.encode(pcm(x)) == whole
    assert len(framed) == len(x)


def test_g722_conceals_lost_frames() -> None:
    codec = G722Codec()
    x = tone(400, 3200, 16000, 9000)
    for k in range(0, 3200, 320):
        codec.decode(codec.encode(pcm(x[k : k + 320])))
    concealed = samples_of(codec.conceal(320))
    assert len(concealed) == 320
    assert max(map(abs, concealed[:160])) > 6000


def test_g722_missing_library_gives_a_clear_error() -> None:
    with pytest.raises(CodecUnavailableError) as info:
        G722Codec(library="libspandsp-does-not-exist.so.9")
    message = str(info.value)
    assert "G.722" in message
    assert "libspandsp-does-not-exist.so.9" in message
    assert "libspandsp2" in message
    assert not codec_g722.available("libspandsp-does-not-exist.so.9")


# -- Opus (optional) -------------------------------------------------------------------

needs_opus = pytest.mark.skipif(not codec_opus.available(), reason="libopus not installed")


@needs_opus
def test_opus_round_trip_keeps_the_tone() -> None:
    codec = codec_opus.OpusCodec(16000)
    assert (codec.name, codec.clock_rate, codec.sample_rate) == ("opus", 48000, 16000)
    assert codec.frame_samples(20) == 320
    x = tone(1000, 16000, 16000, 10000)
    y: list[int] = []
    for k in range(0, len(x), 320):
        packet = codec.encode(pcm(x[k : k + 320]))
        assert 0 < len(packet) < 400
        y += samples_of(codec.decode(packet))
    assert len(y) == len(x)
    candidates = [500.0, 1000.0, 2000.0, 3000.0]
    assert dominant_frequency(y[4000:12000], 16000, candidates) == 1000.0
    assert len(codec.conceal(320)) == 640
    assert codec.decode(b"\xff\xff\xff") == b""  # garbage from the peer: nothing to play
    with pytest.raises(ValueError, match="rejected"):
        codec.encode(bytes(2 * 123))
    codec.reset()
    codec.close()


def test_opus_missing_library_gives_a_clear_error() -> None:
    with pytest.raises(CodecUnavailableError, match="libopus0"):
        codec_opus.OpusCodec(library="libopus-does-not-exist.so.9")
    with pytest.raises(ValueError):
        codec_opus.OpusCodec(44100)


# -- registry --------------------------------------------------------------------------


def test_default_registry_contents_and_order() -> None:
    registry = default_registry()
    assert [i.rtpmap for i in registry] == ["G722/8000", "PCMU/8000", "PCMA/8000"]
    assert [i.static_payload_type for i in registry] == [9, 0, 8]
    assert [i.rtpmap for i in default_registry(g722=False)] == ["PCMU/8000", "PCMA/8000"]
    if codec_opus.available():
        assert default_registry(opus=True).get("OPUS").rtpmap == "opus/48000/2"


def test_registry_lookup_by_name_and_clock_rate() -> None:
    registry = default_registry()
    assert registry.get("pcmu", 8000) is codec_g711.PCMU_INFO
    assert registry.get("g722").sample_rate == 16000
    assert registry.find("G722", 16000) is None  # G.722's RTP clock is 8000
    assert registry.find("PCMA", 8000) is codec_g711.PCMA_INFO
    assert registry.by_payload_type(8) is codec_g711.PCMA_INFO
    assert registry.by_payload_type(18) is None
    assert "PcMu" in registry and "G729" not in registry
    assert len(registry) == 3
    with pytest.raises(UnknownCodecError, match="no codec G729/8000 registered"):
        registry.create("G729", 8000)
    codec = registry.create("PCMU")
    assert isinstance(codec, Codec)
    assert isinstance(registry.create("G722", 8000), Codec)


def test_registry_is_per_instance_and_rejects_duplicates() -> None:
    a = CodecRegistry([codec_g711.PCMU_INFO])
    b = CodecRegistry()
    assert len(a) == 1 and len(b) == 0
    with pytest.raises(ValueError, match="already registered"):
        a.register(CodecInfo("pcmu", 8000, 8000, codec_g711.pcmu_codec))
    a.register(CodecInfo("PCMU", 16000, 16000, codec_g711.pcmu_codec))  # other clock: fine
    assert a.get("PCMU").clock_rate == 8000  # first registered wins without a rate
