"""G.722 and SRTP calls with audio against baresip 1.0 (issue 4), on 127.0.0.1.

Our side: :class:`CallManager` with :class:`RtpMediaFactory` (a tone generator
as microphone, a WAV recorder as speaker: :class:`media_tools.MediaPhone`).
baresip plays a tone from ``aufile`` and records what it decodes with
``sndfile`` (``dump-*-dec.wav``, complete once baresip has exited). Each side's
recording must hold the other side's tone (Goertzel, block by block).

- G.722: both sides offer only G722; the bridge, the recordings and baresip's
  audio run at 16 kHz. The tones are above 4 kHz (5 kHz from baresip, 6 kHz
  from us), which no 8 kHz codec can carry, so hearing them proves the call
  really was wideband end to end, through both G.722 sub-bands.
- SRTP (RFC 3711, SDES keys RFC 4568) against baresip's ``srtp`` module, both
  call directions: our MANDATORY policy with ``mediaenc=srtp-mand`` (RTP/SAVP),
  our OPTIONAL policy with ``mediaenc=srtp`` (best effort: RTP/AVP with
  ``a=crypto``, answered with a key). Those run on plain UDP with
  ``secure_signaling=NONE``; with PJSUA's default rule (TLS needed for SDES
  keys) the same calls over UDP are refused: 488 for baresip's, an error
  before any INVITE for ours; over TLS they go ahead.

CANCEL before answer against baresip is covered by
``test_calls_interop.py::test_cancel_before_baresip_answers``.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sipstack.invite_events import InviteState
from sipstack.media_factory import CallSignalling, call_signalling
from sipstack.offer_answer import NegotiatedMedia
from sipstack.srtp import SecureSignaling, SrtpMode, SrtpNegotiationError, SrtpPolicy

from .media_tools import MediaPhone, dominant_blocks, read_wav, tone_samples, write_wav
from .peers import CertBundle, ManagedProcess, PortAllocator
from .peers.process import wait_until
from .peers.sipp import port_bound

pytestmark = pytest.mark.interop

S = InviteState
MODULES = "/usr/lib/baresip/modules"


class Baresip:
    """A headless baresip: ``aufile`` tone source, ``sndfile`` recorder, ``cons`` console.

    ``codec``: its only audio codec (``PCMU`` or ``G722``); ``rate``: its
    audio source/player rate (the WAV it plays is written at that rate);
    ``mediaenc``: the account's media encryption (``srtp``, ``srtp-mand``) or
    None; ``certificate``: a PEM with certificate and key, which makes it listen
    for TLS on the SIP port + 1. ``answermode=auto``: it answers our calls at once.
    """

    def __init__(
        self,
        workdir: Path,
        ports: PortAllocator,
        *,
        codec: str,
        rate: int,
        tone_hz: float,
        mediaenc: str | None = None,
        certificate: Path | None = None,
    ) -> None:
        workdir.mkdir()
        self.record_dir = workdir / "rec"
        self.record_dir.mkdir()
        # baresip listens for TLS on the SIP port + 1 (with a certificate)
        self.sip_port = ports.allocate(count=2)
        self.cons_port = ports.allocate()
        rtp_low = ports.allocate(count=10)
        tone = workdir / "tone.wav"
        write_wav(tone, tone_samples(tone_hz, 30.0, rate), rate)
        (workdir / "config").write_text(
            "\n".join(
                [
                    f"sip_listen 127.0.0.1:{self.sip_port}",
                    "net_interface 127.0.0.1",
                    f"rtp_ports {rtp_low}-{rtp_low + 9}",
                    f"audio_source aufile,{tone}",
                    "audio_player alsa,null",
                    "audio_alert alsa,null",
                    f"ausrc_srate {rate}",
                    f"auplay_srate {rate}",
                    "ausrc_channels 1",
                    "auplay_channels 1",
                    f"cons_listen 127.0.0.1:{self.cons_port}",
                    *([f"sip_certificate {certificate}"] if certificate else []),
                    f"module_path {MODULES}",
                    "module g711.so",
                    "module g722.so",
                    "module srtp.so",
                    "module aufile.so",
                    "module alsa.so",
                    "module sndfile.so",
                    "module cons.so",
                    f"snd_path {self.record_dir}",
                    "module_app account.so",
                    "module_app menu.so",
                    "",
                ]
            )
        )
        enc = f";mediaenc={mediaenc}" if mediaenc else ""
        (workdir / "accounts").write_text(
            f"<sip:bob@127.0.0.1:{self.sip_port}>;regint=0;answermode=auto;"
            f"audio_codecs={codec}{enc}\n"
        )
        (workdir / "contacts").write_text("")
        self.process = ManagedProcess(
            ["baresip", "-f", str(workdir), "-v"], workdir / "baresip.log", cwd=workdir
        )
        if not wait_until(lambda: "baresip is ready" in self.log(), 10.0):
            self.process.stop()
            pytest.fail(f"baresip did not start:\n{self.log()}")

    @property
    def uri(self) -> str:
        return f"sip:bob@127.0.0.1:{self.sip_port}"

    @property
    def tls_uri(self) -> str:
        return f"sip:bob@127.0.0.1:{self.sip_port + 1};transport=tls"

    def log(self) -> str:
        return self.process.log_text(max_chars=400_000)

    def command(self, text: str) -> None:
        """A menu command (``/dial sip:...``) through the ``cons`` UDP console."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(f"{text}\n".encode(), ("127.0.0.1", self.cons_port))

    def stop(self) -> None:
        self.process.stop()

    def recording(self) -> tuple[int, list[int]]:
        """(rate, samples) of the first call's decoded audio; stop baresip first."""
        found = sorted(self.record_dir.glob("dump-*-dec.wav"))
        assert found, f"baresip recorded nothing: {list(self.record_dir.iterdir())}"
        return read_wav(found[0])


@pytest.fixture
def baresip(tmp_path: Path, port_allocator: PortAllocator) -> Iterator[Callable[..., Baresip]]:
    """Factory ``baresip(codec=, rate=, tone_hz=, mediaenc=)``; each is stopped by PID."""
    needed = ("g722.so", "srtp.so", "aufile.so", "sndfile.so", "cons.so")
    if shutil.which("baresip") is None or not all(os.path.exists(f"{MODULES}/{m}") for m in needed):
        pytest.skip(f"baresip with {', '.join(needed)} is not installed")
    made: list[Baresip] = []

    def make(**options: Any) -> Baresip:
        peer = Baresip(tmp_path / f"baresip{len(made)}", port_allocator, **options)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.stop()


def _talk(p: MediaPhone, peer: Baresip, direction: str, seconds_of_packets: int) -> int:
    """Set up a call either way, let ``seconds_of_packets`` s of RTP arrive; the call id."""
    if direction == "we-call":
        call = p.calls.call_make_call(p.local_acc, peer.uri)
    else:
        peer.command(f"/dial sip:intercom@127.0.0.1:{p.port}")
        assert p.run_until(lambda: bool(p.incoming()), 10), peer.log()
        call = p.incoming()[0].call_id
    assert p.run_until(lambda: p.state(call) is S.CONFIRMED, 10), peer.log()
    wanted = 50 * seconds_of_packets
    assert p.run_until(lambda: p.packets_received(call) >= wanted, seconds_of_packets + 5), (
        p.packets_received(call),
        peer.log()[-4000:],
    )
    return call


def _hang_up(p: MediaPhone, peer: Baresip, call: int) -> None:
    p.calls.call_hangup(call)
    assert p.run_until(lambda: p.state(call) is S.DISCONNECTED, 5), peer.log()
    assert p.last_code(call) == 200
    p.close()
    peer.stop()  # sndfile finishes its WAV files when baresip exits


# -- G.722 ------------------------------------------------------------------------------

WIDE_THEIRS = 5000.0
WIDE_OURS = 6000
WIDE_CANDIDATES = [1000.0, 2000.0, 3000.0, WIDE_THEIRS, float(WIDE_OURS), 7000.0]


@pytest.mark.parametrize("direction", ["we-call", "baresip-calls"])
def test_g722_call_with_baresip_carries_wideband_tones(
    phone: Callable[..., MediaPhone], baresip: Callable[..., Baresip], direction: str
) -> None:
    peer = baresip(codec="G722", rate=16000, tone_hz=WIDE_THEIRS)
    p = phone(codecs=("G722",), rate=16000, tone_hz=WIDE_OURS, auto_answer=True)
    call = _talk(p, peer, direction, 3)
    info = p.calls.call_get_info(call)
    assert info.codec == "G722/8000"  # RFC 3551 4.5.2: the RTP clock stays 8000
    _hang_up(p, peer, call)
    rate, ours = p.recording()
    assert rate == 16000
    assert dominant_blocks(ours, rate, WIDE_THEIRS, WIDE_CANDIDATES) >= 1.5
    rate, theirs = peer.recording()
    assert rate == 16000
    assert dominant_blocks(theirs, rate, WIDE_OURS, WIDE_CANDIDATES) >= 1.5


# -- SRTP ------------------------------------------------------------------------------

THEIR_TONE = 1000.0
OUR_TONE = 440
CANDIDATES = [300.0, float(OUR_TONE), 700.0, THEIR_TONE, 1400.0, 2000.0]


def _wire_signalling(p: MediaPhone, *, dialing_tls: bool) -> None:
    """What the application does: the factory learns each call's transport.

    ``CallManager.call_get_info`` fails for an outgoing call until its INVITE
    exists, which is when the factory asks (reported for sipstack/calls.py);
    until then the caller says what it dials over: ``dialing_tls``.
    """

    def signalling(call: int) -> CallSignalling:
        try:
            return call_signalling(p.calls.call_get_info(call))
        except AssertionError:
            return CallSignalling(tls=dialing_tls, sips=False, incoming=False)

    p.media.signalling_of = signalling


@pytest.mark.parametrize(
    ("mediaenc", "mode", "direction"),
    [
        ("srtp-mand", SrtpMode.MANDATORY, "we-call"),
        ("srtp-mand", SrtpMode.MANDATORY, "baresip-calls"),
        ("srtp", SrtpMode.OPTIONAL, "we-call"),
        ("srtp", SrtpMode.OPTIONAL, "baresip-calls"),
    ],
)
def test_srtp_call_with_baresip_tone_both_ways(
    phone: Callable[..., MediaPhone],
    baresip: Callable[..., Baresip],
    mediaenc: str,
    mode: SrtpMode,
    direction: str,
) -> None:
    peer = baresip(codec="PCMU", rate=8000, tone_hz=THEIR_TONE, mediaenc=mediaenc)
    policy = SrtpPolicy(mode, SecureSignaling.NONE)  # keys in clear: loopback only
    p = phone(codecs=("PCMU",), rate=8000, tone_hz=OUR_TONE, srtp=policy, auto_answer=True)
    call = _talk(p, peer, direction, 3)
    info = p.calls.call_get_info(call)
    media = info.media
    assert isinstance(media, NegotiatedMedia)
    assert media.local_crypto is not None and media.remote_crypto is not None
    suite = media.remote_crypto.split()[1]
    assert media.local_crypto.split()[1] == suite  # RFC 4568 6.1: one suite both ways
    # The profile on the wire: RTP/SAVP for mandatory, RTP/AVP (best effort) for optional.
    proto = b"RTP/SAVP" if mode is SrtpMode.MANDATORY else b"RTP/AVP"
    assert info.local_sdp is not None and info.remote_sdp is not None
    for body in (info.local_sdp, info.remote_sdp):
        assert b" " + proto + b" " in body and b"a=crypto:" in body, body
    log = peer.log()
    _hang_up(p, peer, call)
    assert f"SRTP is Enabled (cryptosuite={suite})" in log, log[-4000:]
    assert "failed to decrypt" not in peer.log()
    rate, ours = p.recording()
    assert dominant_blocks(ours, rate, THEIR_TONE, CANDIDATES) >= 1.5
    rate, theirs = peer.recording()
    assert rate == 8000
    assert dominant_blocks(theirs, rate, float(OUR_TONE), CANDIDATES) >= 1.5


@pytest.mark.parametrize("mode", [SrtpMode.OPTIONAL, SrtpMode.MANDATORY])
def test_srtp_keys_never_travel_over_udp_by_default(
    phone: Callable[..., MediaPhone], baresip: Callable[..., Baresip], mode: SrtpMode
) -> None:
    """PJSUA's srtp_secure_signaling=1: SDES over UDP is refused, as pjsua_media.c does."""
    mediaenc = "srtp-mand" if mode is SrtpMode.MANDATORY else "srtp"
    peer = baresip(codec="PCMU", rate=8000, tone_hz=THEIR_TONE, mediaenc=mediaenc)
    policy = SrtpPolicy(mode)
    assert policy.secure_signaling is SecureSignaling.TLS
    p = phone(codecs=("PCMU",), rate=8000, tone_hz=OUR_TONE, srtp=policy, auto_answer=True)
    _wire_signalling(p, dialing_tls=False)
    # Ours: no INVITE leaves (the keys would be in it), the error says why.
    with pytest.raises(SrtpNegotiationError, match="srtp_secure_signaling=1"):
        p.calls.call_make_call(p.local_acc, peer.uri)
    assert p.calls.call_get_count() == 0
    # baresip's: answered 488 without a key in any response.
    peer.command(f"/dial sip:intercom@127.0.0.1:{p.port}")
    assert p.run_until(lambda: bool(p.incoming()), 10), peer.log()
    call = p.incoming()[0].call_id
    assert p.run_until(lambda: p.state(call) is S.DISCONNECTED, 5), peer.log()
    assert p.last_code(call) == 488
    assert wait_until(lambda: "488 Not Acceptable Here" in peer.log(), 5.0), peer.log()[-4000:]
    log = peer.log()
    assert "SRTP is Enabled" not in log
    assert "incoming call from: sip:intercom" not in log  # our failed call never got there


def test_srtp_call_with_baresip_over_tls(
    phone: Callable[..., MediaPhone],
    baresip: Callable[..., Baresip],
    tls_certs: CertBundle,
    tmp_path: Path,
) -> None:
    """SDES keys as they should travel: in SIP over TLS (RFC 4568 8.3)."""
    pem = tmp_path / "baresip-cert.pem"
    pem.write_text(tls_certs.server_cert.read_text() + tls_certs.server_key.read_text())
    peer = baresip(
        codec="PCMU", rate=8000, tone_hz=THEIR_TONE, mediaenc="srtp-mand", certificate=pem
    )
    assert wait_until(lambda: port_bound(peer.sip_port + 1, "tcp"), 5.0), peer.log()
    # PJSUA's default rule (TLS on the next hop) with mandatory SRTP: met over TLS.
    p = phone(tone_hz=OUR_TONE, srtp=SrtpPolicy(SrtpMode.MANDATORY), tls=tls_certs)
    _wire_signalling(p, dialing_tls=True)
    assert p.tls_acc is not None
    call = p.calls.call_make_call(p.tls_acc, peer.tls_uri)
    assert p.run_until(lambda: p.state(call) is S.CONFIRMED, 10), peer.log()
    assert p.run_until(lambda: p.packets_received(call) >= 150, 8), peer.log()[-4000:]
    info = p.calls.call_get_info(call)
    assert info.local_contact.endswith(";transport=tls>"), info.local_contact
    assert ":0;" not in info.local_contact  # a listening transport: a reachable Contact
    media = info.media
    assert media is not None and media.local_crypto is not None
    log = peer.log()
    _hang_up(p, peer, call)
    assert "ua: sipsess connect via TLS" in log  # baresip's view of our INVITE
    assert "SRTP is Enabled (cryptosuite=AES_CM_128_HMAC_SHA1_80)" in log
    rate, ours = p.recording()
    assert dominant_blocks(ours, rate, THEIR_TONE, CANDIDATES) >= 1.5
    rate, theirs = peer.recording()
    assert dominant_blocks(theirs, rate, float(OUR_TONE), CANDIDATES) >= 1.5
