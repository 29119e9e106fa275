"""Where keys are in a TOML file: ``tomllib`` parses values but does not say.

Config problems name the line of the offending key, so a user editing the
file on another PC finds it at once. :func:`key_lines` maps every key and
table of a *valid* document to its first line in one pass over the text;
:func:`line_of` looks a path up, falling back to the enclosing key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["PathKey", "key_lines", "key_text", "line_of"]

PathKey = tuple[str | int, ...]
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _split_key(line: str, i: int) -> tuple[list[str], int]:
    """Parse a (dotted, maybe quoted) TOML key starting at ``line[i]``."""
    parts: list[str] = []
    n = len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] in "\"'":
            quote = line[i]
            j = i + 1
            while j < n and line[j] != quote:
                j += 2 if quote == '"' and line[j] == "\\" else 1
            parts.append(line[i + 1 : j])
            i = j + 1
        else:
            m = _BARE_KEY.match(line, i)
            if m is None:
                return parts, i
            parts.append(m.group())
            i = m.end()
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] == ".":
            i += 1
            continue
        return parts, i


def _scan_value(line: str, i: int, multiline: str | None, depth: int) -> tuple[str | None, int]:
    """Follow a value through ``line``; return the open multi-line string and bracket depth."""
    n = len(line)
    while i < n:
        c = line[i]
        if multiline is not None:
            if multiline == '"""' and c == "\\":
                i += 2
            elif line.startswith(multiline, i):
                i += 3
                while i < n and line[i] == multiline[0]:  # up to two quotes may close it
                    i += 1
                multiline = None
            else:
                i += 1
            continue
        if c == "#":
            break
        if line.startswith('"""', i) or line.startswith("'''", i):
            multiline = line[i : i + 3]
            i += 3
            continue
        if c in "\"'":
            j = i + 1
            while j < n and line[j] != c:
                j += 2 if c == '"' and line[j] == "\\" else 1
            i = j + 1
            continue
        if c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        i += 1
    return multiline, depth


def key_lines(text: str) -> dict[PathKey, int]:
    """Map every key and table of a *valid* TOML document to the line it starts on.

    Paths use 0-based integers for array-of-tables elements:
    ``("accounts", 1, "cred_info", 0, "username")``. Values inside inline
    tables and arrays are not mapped; :func:`line_of` falls back to the
    enclosing key.
    """
    lines: dict[PathKey, int] = {}
    table: PathKey = ()
    counts: dict[PathKey, int] = {}  # array-of-tables path -> current index

    def resolve(parts: list[str]) -> list[str | int]:
        out: list[str | int] = []
        for part in parts:
            out.append(part)
            if tuple(out) in counts:
                out.append(counts[tuple(out)])
        return out

    multiline: str | None = None
    depth = 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        if multiline is not None or depth > 0:
            multiline, depth = _scan_value(line, 0, multiline, depth)
            continue
        stripped = line.lstrip()
        start = len(line) - len(stripped)
        if not stripped or stripped[0] == "#":
            continue
        if stripped.startswith("[["):
            parts, _ = _split_key(line, start + 2)
            array: PathKey = (*resolve(parts[:-1]), parts[-1])
            counts[array] = counts.get(array, -1) + 1
            table = (*array, counts[array])
            lines.setdefault(array, lineno)
            lines.setdefault(table, lineno)
        elif stripped.startswith("["):
            parts, _ = _split_key(line, start + 1)
            table = tuple(resolve(parts))
            lines.setdefault(table, lineno)
        else:
            parts, i = _split_key(line, start)
            for k in range(1, len(parts) + 1):
                lines.setdefault((*table, *parts[:k]), lineno)
            eq = line.find("=", i)
            multiline, depth = _scan_value(line, eq + 1, None, 0)
    return lines


def line_of(lines: Mapping[PathKey, int], path: PathKey) -> int | None:
    """The line of ``path``, or of its nearest enclosing key or table."""
    for k in range(len(path), 0, -1):
        if path[:k] in lines:
            return lines[path[:k]]
    return None


def key_text(path: PathKey) -> str:
    """``("accounts", 1, "id")`` -> ``accounts[2].id``: 1-based, as a user counts."""
    out = ""
    for part in path:
        out += f"[{part + 1}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out
