"""Audio device faults in a call (issue 8): the device vanishes and returns; xruns.

The call here is the firmware's own audio path, built from the same parts
``firmware.audio_path`` wires on real hardware: the ALSA backend
(:class:`hal.alsa.AlsaAudioDevice`) ticking a :class:`MediaClock` in device
mode, a :class:`DevicePort` and a :class:`MediaSession` in a
:class:`Conference`. The far end is another MediaSession on the same loop
playing a tone, clocked by loop timers (like the simulated firmware).

"Device gone" is reproduced honestly with ALSA's ``pulse`` plugin in front of a
PulseAudio daemon started here: killing the daemon is what a USB sound card
unplugged or a crashed sound server looks like to alsa-lib (every call on the
PCM fails), and starting it again is the card coming back. The microphone is
the monitor of the loudspeaker's null sink, so what the device plays (the far
end's tone) is what it captures and sends back: audio reaching the far end
again proves the whole path works after the fault. An xrun is provoked by a
callback that blocks the loop for longer than the ALSA buffer.

Runs on the wall clock (the sound server is real); the waits are bounded polls.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

alsaaudio = pytest.importorskip("alsaaudio")

from hal.alsa import AlsaAudioDevice  # noqa: E402
from hal.audio import (  # noqa: E402
    AudioConfig,
    AudioDeviceLost,
    AudioDeviceRestored,
    AudioEvent,
    AudioXrun,
    StreamDirection,
    StreamState,
)
from sipstack.codecs import default_registry  # noqa: E402
from sipstack.loop import Loop  # noqa: E402
from sipstack.media_graph import Conference, DevicePort, MediaClock  # noqa: E402
from sipstack.media_session import MediaSession, RtpPortAllocator  # noqa: E402
from sipstack.offer_answer import CodecSpec, LocalMedia, create_answer, create_offer  # noqa: E402
from sipstack.tones import ToneGenerator, ToneSegment, ToneSpec  # noqa: E402
from tests.hal.pulse import PulseServer  # noqa: E402
from tests.interop.device import (  # noqa: E402
    ROOT,
    account_toml,
    device_toml,
    goertzel_share,
    poll,
)
from tests.interop.peers import PortAllocator  # noqa: E402

RATE, FRAME = 8000, 160
ALSA_CONF = "/usr/share/alsa/alsa.conf"
FAR_HZ = 1900


@pytest.fixture
def pulse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PulseServer]:
    if shutil.which("pulseaudio") is None or not Path(ALSA_CONF).exists():
        pytest.skip("pulseaudio or alsa-lib's alsa.conf is missing (apt install pulseaudio)")
    rundir = tmp_path / "pulse"
    rundir.mkdir()
    server = PulseServer(rundir)
    # The loudspeaker and the microphone of the call. alsa-lib caches its
    # configuration for the life of the process and does not notice a new
    # ~/.asoundrc under another HOME; a new ALSA_CONFIG_PATH list makes it reload.
    conf = tmp_path / "asound.conf"
    conf.write_text(
        f'pcm.spk {{ type pulse; server "unix:{server.sock}"; device "nul" }}\n'
        f'pcm.mic {{ type pulse; server "unix:{server.sock}"; device "nul.monitor" }}\n'
    )
    monkeypatch.setenv("ALSA_CONFIG_PATH", f"{ALSA_CONF}:{conf}")
    server.start()
    try:
        yield server
    finally:
        server.stop()


class Heard:
    """The far end's loudspeaker: every frame it is given."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, frame: bytes, now: float) -> None:
        self.frames.append(frame)


class Call:
    """Our device (ALSA, device clock) in a call with a far end (tone, timer clock)."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.events: list[AudioEvent] = []
        registry = default_registry()
        ports = RtpPortAllocator(46000, 46999)
        self.ours = MediaSession(loop, registry, ports=ports, rng=random.Random(1))
        self.far = MediaSession(loop, registry, ports=ports, rng=random.Random(2))
        pcmu = (CodecSpec("PCMU", 8000),)
        offer = create_offer(LocalMedia("127.0.0.1", self.ours.local_port, pcmu), 1, 1)
        answer, far_media = create_answer(
            offer, LocalMedia("127.0.0.1", self.far.local_port, pcmu), 2, 1
        )
        from sipstack.offer_answer import process_answer

        our_media = process_answer(offer, answer)
        assert our_media is not None and far_media is not None
        self.ours.apply(our_media)
        self.far.apply(far_media)
        # our side: the firmware's wiring on real hardware (audio_path._open_alsa)
        config = AudioConfig(capture_device="mic", playback_device="spk", reopen_interval=0.2)
        self.device = AlsaAudioDevice(loop, config, on_event=self.events.append)
        self.port = DevicePort()
        self.conf = Conference(RATE, FRAME)
        dev = self.conf.add_port("device", self.port, self.port)
        call = self.conf.add_port("call", self.ours, self.ours)
        self.conf.connect(dev, call)
        self.conf.connect(call, dev)
        self.clock = MediaClock(0.02, self.conf.tick)
        # far end: a tone into the call, a recorder for what comes back
        self.tone = ToneGenerator(RATE, FRAME)
        self.tone.play(ToneSpec("far", (ToneSegment((FAR_HZ,), 1000),)))
        self.heard = Heard()
        self.far_conf = Conference(RATE, FRAME)
        far_mic = self.far_conf.add_port("mic", self.tone, self.heard)
        far_call = self.far_conf.add_port("call", self.far, self.far)
        self.far_conf.connect(far_mic, far_call)
        self.far_conf.connect(far_call, far_mic)
        self.far_clock = MediaClock(0.02, self.far_conf.tick)

    def start(self) -> None:
        self.far_clock.start_timer(self.loop)
        self.clock.start_device(
            self.device.capture, self.device.playback, self.port, self.loop.time
        )

    def received_by_far(self) -> int:
        """RTP packets of ours that the far end accepted."""
        stats = self.far.stats().rtp
        return stats.packets_received if stats is not None else 0

    def tone_back(self, since: int) -> int:
        """Frames since index ``since`` in which the far end hears its own tone come back."""
        return goertzel_share(b"".join(self.heard.frames[since:]), RATE, FAR_HZ)

    def run(self, seconds: float) -> None:
        self.loop.run_until(lambda: False, timeout=seconds)

    def states(self) -> tuple[StreamState, StreamState]:
        return self.device.capture.state, self.device.playback.state

    def close(self) -> None:
        self.clock.stop()
        self.far_clock.stop()
        self.device.close()
        self.ours.close()
        self.far.close()


@pytest.fixture
def call(pulse: PulseServer) -> Iterator[Call]:
    with Loop() as loop:
        c = Call(loop)
        try:
            yield c
        finally:
            c.close()


def test_device_lost_mid_call_and_back_audio_resumes(
    pulse: PulseServer, call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    call.start()
    # audio flows both ways: the far end's tone comes back through our device
    assert call.loop.run_until(lambda: call.tone_back(0) > 20, timeout=10), (
        call.received_by_far(),
        len(call.heard.frames),
    )

    pulse.kill()
    assert call.loop.run_until(
        lambda: call.states() == (StreamState.LOST, StreamState.LOST), timeout=5
    ), call.states()
    lost_at = call.received_by_far()
    far_frames = len(call.heard.frames)
    call.run(1.0)  # the outage: several reopen attempts, the loop goes on
    assert call.states() == (StreamState.LOST, StreamState.LOST)
    assert len(call.heard.frames) - far_frames >= 40  # the far end's clock never stalled
    sent_during_outage = call.received_by_far() - lost_at

    pulse.start()
    assert call.loop.run_until(
        lambda: call.states() == (StreamState.RUNNING, StreamState.RUNNING), timeout=10
    ), call.states()
    back = len(call.heard.frames)
    before = call.received_by_far()
    assert call.loop.run_until(
        lambda: call.received_by_far() > before + 50 and call.tone_back(back) > 20, timeout=10
    ), (call.received_by_far() - before, call.tone_back(back))

    lost = [e for e in call.events if isinstance(e, AudioDeviceLost)]
    restored = [e for e in call.events if isinstance(e, AudioDeviceRestored)]
    assert sorted(e.direction.value for e in lost) == ["capture", "playback"]
    assert sorted(e.direction.value for e in restored) == ["capture", "playback"]
    # the log says it once per stream, not once per reopen attempt
    messages = [r.getMessage() for r in caplog.records if r.name == "hal.alsa"]
    assert sum(" lost (" in m for m in messages) == 2, messages
    assert sum("is back" in m for m in messages) == 2, messages
    assert not [r for r in caplog.records if r.name == "sipstack.loop"]  # nothing raised
    print(f"\nRTP sent while the device was gone: {sent_during_outage} packets")


def test_xruns_mid_call_are_recovered_and_logged_once(
    call: Call, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    call.start()
    assert call.loop.run_until(lambda: call.tone_back(0) > 20, timeout=10)
    for episode in range(3):
        # a callback that blocks the loop far longer than the 80 ms ALSA buffer
        call.loop.call_soon(lambda: time.sleep(0.4))
        seen = len([e for e in call.events if isinstance(e, AudioXrun)])

        def xrun_seen(seen: int = seen) -> bool:
            return len([e for e in call.events if isinstance(e, AudioXrun)]) > seen

        assert call.loop.run_until(xrun_seen, timeout=3), (episode, call.events)
        mark = len(call.heard.frames)
        before = call.received_by_far()
        assert call.loop.run_until(
            lambda: call.received_by_far() > before + 25 and call.tone_back(mark) > 10,  # noqa: B023
            timeout=10,
        ), (episode, call.received_by_far() - before)
        assert call.states() == (StreamState.RUNNING, StreamState.RUNNING)
    xruns = [e for e in call.events if isinstance(e, AudioXrun)]
    directions = {e.direction for e in xruns}
    assert directions <= {StreamDirection.CAPTURE, StreamDirection.PLAYBACK}
    messages = [r.getMessage() for r in caplog.records if r.name == "hal.alsa"]
    xrun_lines = [m for m in messages if "underrun" in m or "overrun" in m]
    assert len(xrun_lines) == len(directions), messages  # once per stream
    assert not [e for e in call.events if isinstance(e, AudioDeviceLost)]
    assert not [r for r in caplog.records if r.name == "sipstack.loop"]
    print(f"\nxruns: {len(xruns)} ({', '.join(sorted(d.value for d in directions))})")


# -- the real firmware process ---------------------------------------------------------------


def _rpi_shim(tmp: Path) -> Path:
    """A package dir making ``import RPi.GPIO`` give the suite's recording fake.

    ``hal = "rpi"`` selects both the GPIO and the ALSA backend; this machine
    has no GPIO, so the process gets ``tests/hal/fake_rpigpio.FakeGPIO`` (the
    one fake the suite allows) while its audio is the real ALSA backend.
    """
    pkg = tmp / "shim" / "RPi"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "GPIO.py").write_text(
        "import sys\n"
        "from tests.hal.fake_rpigpio import FakeGPIO\n"
        "sys.modules[__name__] = FakeGPIO()  # module-like by design\n"
    )
    return tmp / "shim"


def test_firmware_call_survives_sound_card_loss(
    pulse: PulseServer,
    kamailio_server: Any,
    port_allocator: PortAllocator,
    firmware: Any,
    tmp_path: Path,
) -> None:
    kam = kamailio_server({"door": "d00r", "flat": "fl4t"})
    door_cfg = f"""
hal = "rpi"

[sip]
udp = "127.0.0.1:{port_allocator.allocate()}"
tcp = ""

[audio]
capture_device = "mic"
playback_device = "spk"
echo_cancel = false
noise_suppression = false
agc = false
""" + account_toml("door", "d00r", kam)
    shim = _rpi_shim(tmp_path)
    door = firmware("door", door_cfg, prefix=["env", f"PYTHONPATH={shim}:{ROOT}"])
    flat = firmware(
        "flat",
        device_toml(port_allocator.allocate(), FAR_HZ, tmp_path / "flat.wav")
        + account_toml("flat", "fl4t", kam)
        + '\n[[buttons]]\nname = "answer"\nbcm = 17\naction = "answer"\n',
    )
    assert poll(door.registered, 20) and poll(flat.registered, 20), (
        door.describe() + flat.describe()
    )
    assert door.status()["audio"]["device"].startswith("ALSA"), door.status()["audio"]

    code, out = door.cli("call", "sip:flat@test.local")
    assert code == 0, out
    assert poll(lambda: flat.status()["phone"] == "ringing"), flat.describe()
    code, out = flat.cli("answer")
    assert code == 0, out

    def door_call() -> dict[str, Any]:
        calls = door.status()["calls"]
        assert len(calls) == 1, (calls, door.describe())
        return calls[0]  # type: ignore[no-any-return]

    assert poll(lambda: door_call().get("packets_sent", 0) > 50, 10), door_call()
    assert door.status()["audio"]["fault"] == ""

    pulse.kill()
    assert poll(lambda: door.status()["audio"]["fault"] != "", 5), door.describe()
    fault = door.status()["audio"]["fault"]
    sent_at_loss = door_call()["packets_sent"]
    time.sleep(2.0)  # the outage itself: nothing to poll for, the point is the duration
    outage = door_call()
    assert outage["state"] == "confirmed", outage  # the call is still up
    sent_during_outage = outage["packets_sent"] - sent_at_loss
    # loop timers stand in for the card's clock: the door keeps sending (silence),
    # so a peer with an RTP timeout keeps the call; 2 s at 50 packets/s is 100
    assert sent_during_outage >= 60, (sent_during_outage, outage)

    pulse.start()
    assert poll(lambda: door.status()["audio"]["fault"] == "", 10), door.describe()
    resumed_from = door_call()["packets_sent"]
    assert poll(lambda: door_call()["packets_sent"] > resumed_from + 100, 10), door_call()
    assert flat.status()["calls"][0]["state"] == "confirmed"

    code, out = flat.cli("hangup")
    assert code == 0, out
    assert poll(lambda: not door.status()["calls"] and not flat.status()["calls"])
    log = door.log_text()
    assert "Traceback" not in log and "the loop goes on" not in log, log[-4000:]
    assert log.count(" lost (") == 2, log[-4000:]  # capture and playback, once each
    assert log.count(" is back") == 2, log[-4000:]
    print(f"\ndoor fault while gone: {fault!r}; RTP sent during 2 s outage: {sent_during_outage}")
