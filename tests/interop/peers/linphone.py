"""linphonec (Debian's ``linphone-cli``, liblinphone 5.1) as a softphone peer.

linphonec is driven through its stdin, one command per line, as a person would
type them; its console output (unbuffered) goes to a log file that the test
reads. It needs a headless set-up, all in a private HOME:

- ``~/.local/share/linphone`` must exist: without its database directory the
  core never starts its SIP transports (``ports`` then says ``sip port = 0``);
- ``soundcard use files``: no sound card; ``play FILE.wav`` is the microphone
  and ``record FILE.wav`` the loudspeaker;
- the address it puts in its SDP is that of its route to the internet (it asks
  the kernel, no packet is sent), never 127.0.0.1, so the tests run it in a
  network namespace of their own (``prefix``) where that address is the
  namespace's end of a veth pair.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .process import ManagedProcess, PeerStartError, wait_until

__all__ = ["LinphoneAccount", "Linphonec", "linphonec_available"]


def linphonec_available() -> bool:
    """True when the ``linphonec`` binary is installed."""
    return shutil.which("linphonec") is not None


@dataclass(frozen=True, slots=True)
class LinphoneAccount:
    """A registration: ``identity`` (``sip:user@domain``) at ``proxy`` (``sip:host:port``)."""

    identity: str
    proxy: str
    username: str
    password: str
    realm: str


class Linphonec:
    """One linphonec process with its own config, HOME, ports and WAV files."""

    def __init__(
        self,
        work: Path,
        *,
        contact: str,
        sip_port: int,
        rtp_port: int,
        prefix: Sequence[str] = (),
        account: LinphoneAccount | None = None,
        srtp: bool = False,
        gruu: bool = True,
    ) -> None:
        """``srtp``: SDES-keyed SRTP (RFC 4568) made mandatory, so linphone offers
        RTP/SAVP and refuses a call whose answer has no usable key. ``gruu``:
        ask the registrar for a GRUU (RFC 5627) and use it as Contact, as
        linphone does by default."""
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        (work / ".local" / "share" / "linphone").mkdir(parents=True, exist_ok=True)
        self.rc = work / "linphonerc"
        self.rc.write_text(_config(contact, sip_port, rtp_port, account, srtp, gruu))
        self.log_path = work / "linphonec.log"
        env = {**os.environ, "HOME": str(work)}
        self.process = ManagedProcess(
            [*prefix, "linphonec", "-c", str(self.rc)],
            self.log_path,
            cwd=work,
            env=env,
            name="linphonec",
            stdin_pipe=True,
        )
        if not self.wait_for("linphonec> ", 15):
            self.process.stop()
            raise PeerStartError(f"linphonec did not start:\n{self.output()}")
        self.send("soundcard use files")
        if not self.wait_for("Using wav files instead of soundcard.", 5):
            self.process.stop()
            raise PeerStartError(f"linphonec has no file sound card:\n{self.output()}")

    def mark(self) -> int:
        """The current end of the output: look for what happens next from here."""
        return len(self.output())

    def send(self, command: str) -> int:
        """Type ``command``; returns the :meth:`mark` from which to look for its effect."""
        mark = self.mark()
        self.process.send(command)
        return mark

    def output(self) -> str:
        """Everything linphonec printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def wait_for(self, text: str, timeout: float, since: int = 0) -> bool:
        """Poll the console output (bounded) until ``text`` appears after offset ``since``."""
        return wait_until(lambda: text in self.output()[since:], timeout, interval=0.05)

    def stop(self) -> None:
        """``quit`` (which closes its recording), then end the process; idempotent."""
        if self.process.running:
            with contextlib.suppress(OSError):  # it may have just exited
                self.process.send("quit")
            self.process.wait(5)
        self.process.stop()


def _config(
    contact: str,
    sip_port: int,
    rtp_port: int,
    account: LinphoneAccount | None,
    srtp: bool,
    gruu: bool,
) -> str:
    encryption = "media_encryption=srtp\nmedia_encryption_mandatory=1\n" if srtp else ""
    supported = "" if gruu else "supported=replaces, outbound\n"
    text = f"""[sip]
{encryption}{supported}
sip_port={sip_port}
sip_tcp_port=0
sip_tls_port=0
use_ipv6=0
contact={contact}
default_proxy={0 if account else -1}

[rtp]
audio_rtp_port={rtp_port}
video_rtp_port={rtp_port + 2}

[video]
capture=0
display=0
automatically_initiate=0
automatically_accept=0
"""
    if account is not None:
        text += f"""
[proxy_0]
reg_proxy=<{account.proxy};transport=udp>
reg_route=<{account.proxy};transport=udp;lr>
reg_identity={account.identity}
reg_expires=300
reg_sendregister=1
publish=0
dial_escape_plus=0

[auth_info_0]
username={account.username}
passwd={account.password}
realm={account.realm}
"""
    return text
