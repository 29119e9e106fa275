"""Boot a built Raspberry Pi image under QEMU (TCG) and talk to it, for the slow tests.

The image is booted the way QEMU can: ``-M virt`` with the image's own kernel and initrd
taken from its FAT partition and the command line from its ``cmdline.txt`` (serial
console swapped for QEMU's PL011). Everything after the kernel is the image's: the
initramfs, overlayroot, fstab, systemd units, sshd, the firmware. User-mode networking
forwards SSH and SIP from 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import json
import lzma
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SECTOR = 512


@dataclass(frozen=True, slots=True)
class Partition:
    """One MBR partition of the disk image, in bytes."""

    start: int
    size: int


def partitions(image: Path) -> list[Partition]:
    """The image's partitions, read with ``sfdisk --json`` (no loop device)."""
    out = subprocess.run(
        ["sfdisk", "--json", str(image)], check=True, capture_output=True, text=True
    ).stdout
    table = json.loads(out)["partitiontable"]
    return [Partition(p["start"] * SECTOR, p["size"] * SECTOR) for p in table["partitions"]]


def decompress(xz: Path, dest: Path) -> None:
    """Write the .img.xz out as a sparse raw image (zero blocks become holes)."""
    block = 1 << 20
    zero = bytes(block)
    with lzma.open(xz) as src, open(dest, "wb") as dst:
        while chunk := src.read(block):
            if chunk == zero[: len(chunk)]:
                dst.seek(len(chunk), os.SEEK_CUR)
            else:
                dst.write(chunk)
        dst.truncate()


def _mtools_env() -> dict[str, str]:
    return {**os.environ, "MTOOLS_SKIP_CHECK": "1"}


def fat_read(image: Path, boot: Partition, name: str, dest: Path) -> None:
    """Copy ``name`` out of the FAT boot partition with mtools."""
    subprocess.run(
        ["mcopy", "-n", "-i", f"{image}@@{boot.start}", f"::{name}", str(dest)],
        check=True,
        env=_mtools_env(),
    )


def fat_write(image: Path, boot: Partition, src: Path, name: str) -> None:
    """Put ``src`` on the FAT boot partition as ``name`` (what a user does from a PC)."""
    subprocess.run(
        ["mcopy", "-o", "-i", f"{image}@@{boot.start}", str(src), f"::{name}"],
        check=True,
        env=_mtools_env(),
    )


def fat_list(image: Path, boot: Partition) -> list[str]:
    """Names of the files at the top of the FAT boot partition."""
    out = subprocess.run(
        ["mdir", "-b", "-i", f"{image}@@{boot.start}", "::"],
        check=True,
        capture_output=True,
        text=True,
        env=_mtools_env(),
    ).stdout
    return [line.rsplit("/", 1)[-1] for line in out.split()]


def free_port(kind: int) -> int:
    """A port free on 127.0.0.1 right now for ``kind`` (SOCK_STREAM or SOCK_DGRAM)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def qemu_cmdline(boot_cmdline: str) -> str:
    """The image's kernel command line with QEMU's serial console instead of the Pi's."""
    args = [a for a in boot_cmdline.split() if not a.startswith("console=")]
    return " ".join([*args, "console=ttyAMA0,115200"])


class VM:
    """One QEMU guest booted from ``image`` (a raw disk image it may write to)."""

    def __init__(
        self, image: Path, kernel: Path, initrd: Path, cmdline: str, key: Path, workdir: Path
    ) -> None:
        self.image, self.kernel, self.initrd, self.cmdline = image, kernel, initrd, cmdline
        self.key = key
        self.workdir = workdir
        self.ssh_port = free_port(socket.SOCK_STREAM)
        self.sip_port = free_port(socket.SOCK_DGRAM)
        self.proc: subprocess.Popen[bytes] | None = None
        self.boots = 0
        self.started_at = 0.0  # time.monotonic() of the last power-on

    @property
    def console_log(self) -> Path:
        """Serial console of the current boot."""
        return self.workdir / f"console-{self.boots}.log"

    def start(self) -> None:
        """Power on (a cold boot: QEMU starts from nothing)."""
        assert self.proc is None, "already running"
        self.boots += 1
        self.started_at = time.monotonic()
        cmd = [
            "qemu-system-aarch64",
            "-M",
            "virt",
            "-cpu",
            "cortex-a72",
            "-smp",
            "2",
            "-m",
            "1024",
            "-nographic",
            "-monitor",
            "none",
            "-serial",
            f"file:{self.console_log}",
            "-kernel",
            str(self.kernel),
            "-initrd",
            str(self.initrd),
            "-append",
            self.cmdline,
            "-drive",
            f"file={self.image},if=none,id=disk,format=raw,cache=writeback",
            "-device",
            "virtio-blk-pci,drive=disk",
            "-netdev",
            (
                f"user,id=net,hostfwd=tcp:127.0.0.1:{self.ssh_port}-:22,"
                f"hostfwd=udp:127.0.0.1:{self.sip_port}-:5060"
            ),
            "-device",
            "virtio-net-pci,netdev=net,romfile=",
            "-device",
            "virtio-rng-pci",
        ]
        with open(self.workdir / "qemu.err", "ab") as err:  # Popen keeps its own copy
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )

    def power_cut(self) -> None:
        """Kill QEMU: the guest gets no chance to flush or unmount (a pulled plug)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def shutdown(self, timeout: float = 120) -> None:
        """Clean power-off from inside; falls back to a power cut after ``timeout``."""
        if self.proc is None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.ssh("systemctl poweroff", check=False, timeout=20)
            self.proc.wait(timeout)
        self.power_cut()

    def ssh_argv(self, *extra: str) -> list[str]:
        """ssh command line for this guest (host key not checked: it is new per image)."""
        return [
            "ssh",
            "-p",
            str(self.ssh_port),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=10",
            *extra,
            "root@127.0.0.1",
        ]

    def ssh(
        self, command: str, *, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run ``command`` in the guest as root over SSH with the test key."""
        argv = self.ssh_argv("-i", str(self.key), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes")
        return subprocess.run(
            [*argv, command], capture_output=True, text=True, check=check, timeout=timeout
        )

    def wait_ssh(self, timeout: float) -> float:
        """Poll until SSH login works; return the seconds it took, fail at ``timeout``."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(
                    f"QEMU exited ({self.proc.returncode}); see {self.console_log}"
                )
            try:
                if self.ssh("true", check=False, timeout=30).returncode == 0:
                    return time.monotonic() - t0
            except subprocess.TimeoutExpired:
                pass
            time.sleep(3)  # polling a real, emulated boot: no clock to fake here
        tail = self.console_log.read_text(errors="replace")[-3000:]
        raise AssertionError(f"no SSH login within {timeout:.0f} s; console tail:\n{tail}")


def have_qemu() -> bool:
    """True if the tools the boot test needs are installed."""
    return all(shutil.which(t) for t in ("qemu-system-aarch64", "mcopy", "sfdisk", "ssh"))
