"""Live reload of a real ``intercom run`` process, the way systemd and a person do it:
``kill -HUP`` (``systemctl reload intercom``) and ``intercom reload`` over the socket."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.interop.device import Firmware, intercom, poll

CONFIG = """
hal = "sim"

[sip]
udp = "127.0.0.1:0"
tcp = ""
refuse = "{refuse}"

[[accounts]]
local = true

[intercom]
trusted = ["sip:*@127.0.0.1"]
max_call_seconds = {max_call}
"""


def test_sighup_and_intercom_reload_on_a_running_firmware(tmp_path: Path) -> None:
    fw = Firmware("door", tmp_path, CONFIG.format(refuse="403", max_call=0))
    try:
        assert poll(fw.ready), fw.describe()
        assert fw.status()["screening"]["mode"] == "403"

        fw.config.write_text(CONFIG.format(refuse="drop", max_call=60))
        os.kill(fw.firmware_pid(), signal.SIGHUP)
        assert poll(lambda: fw.status()["screening"]["mode"] == "drop"), fw.describe()

        text = CONFIG.format(refuse="403", max_call=60)
        fw.config.write_text(text[: text.index("max_call_seconds") + 12])  # half-saved
        code, out = intercom("reload", control=fw.control)
        assert code == 1, out
        assert f"intercom reload: {fw.config}: 1 problem; the running config stays" in out
        status = fw.status()
        assert status["screening"]["mode"] == "drop"  # the last good config goes on
        assert status["config_error"]["file"] == str(fw.config)
        assert status["config_error"]["expected"] == "valid TOML"
        os.kill(fw.firmware_pid(), signal.SIGHUP)  # a broken file on SIGHUP: still running
        assert poll(fw.ready), fw.describe()

        fw.config.write_text(text)
        code, out = intercom("reload", control=fw.control)
        assert code == 0, out
        assert f"reloaded {fw.config}: accounts 0 added, 0 removed, 0 modified, 1 unchanged" in out
        status = fw.status()
        assert status["config_error"] is None and status["screening"]["mode"] == "403"
    finally:
        assert fw.stop() == 0, fw.describe()
