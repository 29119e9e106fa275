"""The README stays true: its config snippet loads, the commands it names exist."""

from __future__ import annotations

import re
from pathlib import Path

from firmware.cli import main
from firmware.config import load_config

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_config_snippet_is_a_valid_config(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert blocks, "the README lost its config example"
    for i, block in enumerate(blocks):
        path = tmp_path / f"snippet{i}.toml"
        path.write_text(block)
        load_config(path)  # raises ConfigError with the line on any mistake


def test_readme_cli_commands_exist() -> None:
    text = README.read_text()
    named = set(re.findall(r"(?:^|`)(?:\.venv/bin/)?intercom ([a-z][a-z-]+)", text, re.M))
    assert {"run", "status", "doctor", "press"} <= named
    for command in named - {"config", "firmware"}:
        try:
            main([command, "--help"])
        except SystemExit as exc:  # argparse exits 0 after printing help
            assert exc.code == 0, command
