"""Memory and CPU of the account layer: 8 accounts registered over UDP at a real Kamailio.

Runs, on this machine and at the same time:
- a child process (Debian's /usr/bin/python3 with the venv's packages) holding a
  UserAgent with 8 accounts registered at Kamailio with digest auth, refreshing
  every ``--expires`` seconds; its peak and settled RSS and its CPU time per
  registration refresh (everything the process spent, idle loop included);
- a bare ``python3 -c`` sleeping, for the interpreter's own RSS;
- baresip with one registered account, when installed.

    .venv/bin/python bench/accounts.py [--seconds 60] [--expires 10] [--json]

``--json`` prints the report on stderr and run_all's result lines on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.interop.peers import KamailioConfig, KamailioServer, PortAllocator  # noqa: E402

CHILD = textwrap.dedent("""
    import random, sys, time

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key):
                return int(line.split()[1])
        return 0

    base = status("VmRSS")
    from sipstack.account_config import AccountConfig
    from sipstack.account_events import RegStateChanged
    from sipstack.digest import CredentialInfo
    from sipstack.loop import Loop
    from sipstack.useragent import UserAgent
    imported = status("VmRSS")

    port, expires, seconds = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    loop = Loop()
    ok = []
    def on_event(e):
        # one "registered" event per answered REGISTER (initial or refresh); the
        # "refreshing" event before each refresh also says is_registered: not counted
        if isinstance(e, RegStateChanged) and e.state == "registered" and e.status == 200:
            ok.append(e)
    ua = UserAgent(loop, on_event=on_event, rng=random.Random(1))
    ua.transport_create("udp", "127.0.0.1", 0)
    for i in range(8):
        ua.acc_add(AccountConfig(id=f"<sip:u{i}@test.local>", reg_uri=f"sip:127.0.0.1:{port}",
                                 cred_info=[CredentialInfo("*", f"u{i}", f"p{i}")],
                                 reg_timeout=expires, reg_delay_before_refresh=1,
                                 ka_interval=0))
    loop.run_until(lambda: len(ok) >= 8, 10)
    assert len(ok) >= 8, "not all accounts registered"
    registered = status("VmRSS")
    first = len(ok)
    t0 = time.process_time()
    loop.run_until(lambda: False, seconds)
    cpu = time.process_time() - t0
    refreshes = len(ok) - first
    print(status("VmRSS"), status("VmHWM"), refreshes, cpu, base, imported, registered)
    ua.shutdown()
""")


def rss_of(pid: int) -> int:
    """VmRSS in KiB of a running process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1])
    return 0


def bare_python_rss(python: str) -> int:
    proc = subprocess.Popen([python, "-c", "import time; time.sleep(3)"])
    time.sleep(1.0)
    rss = rss_of(proc.pid)
    proc.wait()
    return rss


def baresip_rss(kam: KamailioServer, tmp: Path) -> int | None:
    """RSS of baresip once its one account is registered at ``kam`` (None: not installed)."""
    if shutil.which("baresip") is None:
        return None
    (tmp / "accounts").write_text(
        f'<sip:u0@test.local>;auth_pass=p0;outbound="{kam.uri()}";regint=300\n'
    )
    (tmp / "config").write_text(
        "module_path /usr/lib/baresip/modules\n"
        "module g711.so\nmodule_app account.so\nmodule_app menu.so\n"
        "sip_listen 127.0.0.1:0\nnet_interface 127.0.0.1\n"
    )
    (tmp / "contacts").write_text("")
    proc = subprocess.Popen(
        ["baresip", "-f", str(tmp)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while "u0" not in kam.registrations():
            if time.monotonic() > deadline:
                raise RuntimeError("baresip did not register at Kamailio")
            time.sleep(0.1)
        time.sleep(2.0)  # settle after registering
        return rss_of(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--expires", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="result lines for bench/run_all.py")
    args = parser.parse_args()
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        lines = measure(args)
    if args.json:
        for line in lines:
            print(json.dumps(line), flush=True)


def measure(args: argparse.Namespace) -> list[dict[str, object]]:
    """Run the child, the bare interpreter and baresip; print the report; return result lines."""
    python = "/usr/bin/python3"
    users = {f"u{i}": f"p{i}" for i in range(8)}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        kam = KamailioServer(
            KamailioConfig(users=users, min_expires=2), tmp / "kam", port=PortAllocator().allocate()
        )
        kam.start()
        try:
            env = dict(os.environ, PYTHONPATH=f"{ROOT}:{_site_packages()}")
            out = subprocess.run(
                [python, "-c", CHILD, str(kam.port), str(args.expires), str(args.seconds)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            rss, peak, refreshes, cpu = int(out[0]), int(out[1]), int(out[2]), float(out[3])
            base, imported, registered = int(out[4]), int(out[5]), int(out[6])
            bare = bare_python_rss(python)
            bs = baresip_rss(kam, tmp)
        finally:
            kam.stop()
    print(
        f"user agent + 8 registered accounts (UDP): RSS {rss / 1024:.1f} MiB "
        f"(peak {peak / 1024:.1f} MiB)"
    )
    print(
        f"  of which: interpreter at start {base / 1024:.1f} MiB, after importing the "
        f"stack {imported / 1024:.1f} MiB, with 8 accounts registered "
        f"{registered / 1024:.1f} MiB"
    )
    print(f"bare {python}: RSS {bare / 1024:.1f} MiB")
    if bs is not None:
        print(f"baresip, 1 registered account: RSS {bs / 1024:.1f} MiB")
    print(
        f"{refreshes} refreshes (REGISTERs answered 200) in "
        f"{args.seconds:.0f} s; process CPU {cpu * 1000:.1f} ms; "
        f"{cpu / max(refreshes, 1) * 1e6:.0f} us CPU per refresh (idle loop included)"
    )
    return [
        {
            "name": "RSS, 8 registered accounts (UDP), idle",
            "ours": round(rss / 1024, 1),
            "peer": None if bs is None else round(bs / 1024, 1),
            "ratio": None if not bs else round(rss / bs, 2),
            "unit": "MiB",
            "better": "lower",
            "peer_name": "baresip 1.0.0, 1 account",
            "target": "<= 1.5x baresip",
            "note": f"bare python3 {bare / 1024:.1f} MiB; ours peak {peak / 1024:.1f} MiB",
        },
        {
            "name": "CPU per registration refresh (idle loop included)",
            "ours": round(cpu / max(refreshes, 1) * 1e6),
            "peer": None,
            "ratio": None,
            "unit": "us",
            "better": "lower",
            "peer_name": "",
            "target": "",
            "note": f"{refreshes} refreshes of 8 accounts in {args.seconds:.0f} s",
        },
    ]


def _site_packages() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


if __name__ == "__main__":
    main()
