"""Reading a config file's TOML tables with every mistake reported, not just the first.

:class:`Table` gives typed access to one table (strings, integers, numbers,
lists, sub-tables) and records a :class:`ConfigProblem`, with file, line and
key, for each wrong value instead of raising; :meth:`Table.finish` reports the
keys nobody asked for (a misspelt ``reg_timout``). :class:`ConfigError`
carries them all to the user at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from firmware._toml_lines import PathKey, key_lines, key_text, line_of
from sipstack.records import dataclass

__all__ = ["ConfigError", "ConfigProblem", "Context", "Table", "describe"]


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One mistake in a config file.

    ``key`` is a dotted path with 1-based indices for arrays of tables
    (``accounts[2].cred_info[1].username``: the second ``[[accounts]]``);
    ``line`` is None only when the file could not be read at all.
    """

    file: str
    line: int | None
    key: str
    expected: str
    found: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} expected {self.expected}, found {self.found}"


class ConfigError(ValueError):
    """The configuration file is wrong: the user's fault, with every problem listed."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# -- what was found ---------------------------------------------------------------


def describe(value: object, secret: bool = False) -> str:
    """Say what a TOML value is, for "found ...". Secrets show their type only."""
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
    if secret or isinstance(value, list | dict):
        return kind
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"' if value else "an empty string"
    return f"{kind} {value!r}"


# -- reading tables -------------------------------------------------------------


class Context:
    """One file being read: its name, its key lines and the problems found so far."""

    def __init__(self, file: str, text: str, problems: list[ConfigProblem]) -> None:
        self.file = file
        self.lines = key_lines(text)
        self.problems = problems

    def problem(self, path: PathKey, expected: str, found: str) -> None:
        line = line_of(self.lines, path)
        self.problems.append(ConfigProblem(self.file, line, key_text(path), expected, found))

    def source(self, path: PathKey) -> str:
        """``"intercom.toml line N"``, the label the hal configs carry."""
        return f"{os.path.basename(self.file)} line {line_of(self.lines, path) or '?'}"


class Table:
    """Typed access to one TOML table; remembers which keys were read.

    Each getter returns the default after recording a problem, so reading goes
    on and every mistake in the file is reported in one pass.
    """

    def __init__(self, ctx: Context, path: PathKey, data: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.path = path
        self.data = data
        self._known: list[str] = []

    def has(self, key: str) -> bool:
        return key in self.data

    def line(self, key: str | None = None) -> int | None:
        return line_of(self.ctx.lines, self.path if key is None else (*self.path, key))

    def problem(self, key: str | None, expected: str, found: str) -> None:
        self.ctx.problem(self.path if key is None else (*self.path, key), expected, found)

    def _get(self, key: str, required: bool, expected: str) -> Any:
        if key not in self._known:
            self._known.append(key)
        if key not in self.data:
            if required:
                self.problem(None, f"a key {key!r} ({expected})", "none")
            return None
        return self.data[key]

    def string(
        self,
        key: str,
        default: str = "",
        *,
        required: bool = False,
        choices: Sequence[str] | None = None,
        secret: bool = False,
        check: Callable[[str], str | None] | None = None,
    ) -> str:
        """A string; ``check`` returns what was expected when the value is wrong."""
        expected = "a string" if choices is None else "one of " + ", ".join(map(repr, choices))
        value = self._get(key, required, expected)
        if value is None:
            return default
        if not isinstance(value, str) or (choices is not None and value not in choices):
            self.problem(key, expected, describe(value, secret))
            return default
        if check is not None and (want := check(value)) is not None:
            self.problem(key, want, describe(value, secret))
            return default
        return value

    def integer(
        self,
        key: str,
        default: int,
        *,
        lo: int | None = None,
        hi: int | None = None,
        required: bool = False,
        choices: Sequence[int] | None = None,
    ) -> int:
        if choices is not None:
            expected = "one of " + ", ".join(map(str, choices))
        elif lo is not None and hi is not None:
            expected = f"an integer from {lo} to {hi}"
        elif lo is not None:
            expected = f"an integer >= {lo}"
        else:
            expected = "an integer"
        value = self._get(key, required, expected)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or (choices is not None and value not in choices)
            or (lo is not None and value < lo)
            or (hi is not None and value > hi)
        ):
            self.problem(key, expected, describe(value))
            return default
        return value

    def number(
        self, key: str, default: float, *, lo: float, hi: float, lo_open: bool = True
    ) -> float:
        """A number of seconds or similar; integers are accepted."""
        low = "more than" if lo_open else "at least"
        expected = f"a number {low} {lo:g} and at most {hi:g}"
        value = self._get(key, False, expected)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not (lo < value <= hi if lo_open else lo <= value <= hi)
        ):
            self.problem(key, expected, describe(value))
            return default
        return float(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self._get(key, False, "true or false")
        if value is None:
            return default
        if not isinstance(value, bool):
            self.problem(key, "true or false", describe(value))
            return default
        return value

    def strings(
        self, key: str, *, check: Callable[[str], str | None] | None = None
    ) -> tuple[str, ...]:
        """A list of strings; a single string is taken as a list of one."""
        expected = "a string or a list of strings"
        value = self._get(key, False, expected)
        if value is None:
            return ()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            self.problem(key, expected, describe(value))
            return ()
        good: list[str] = []
        for item in items:
            if check is not None and (want := check(item)) is not None:
                self.problem(key, want, describe(item))
            else:
                good.append(item)
        return tuple(good)

    def table(self, key: str) -> Table | None:
        value = self._get(key, False, "a table")
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problem(key, f"a [{key}] table", describe(value))
            return None
        return Table(self.ctx, (*self.path, key), value)

    def tables(self, key: str) -> list[Table]:
        value = self._get(key, False, "an array of tables")
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.problem(key, f"[[{key}]] tables", describe(value))
            return []
        return [Table(self.ctx, (*self.path, key, i), v) for i, v in enumerate(value)]

    def finish(self) -> None:
        """Report every key that no getter asked for."""
        for key in self.data:
            if key in self._known:
                continue
            import difflib  # only for a typo's suggestion

            close = difflib.get_close_matches(key, self._known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            where = key_text(self.path) or "the top level"
            self.problem(
                key,
                f"one of the keys of {where}: {', '.join(self._known)}",
                f"unknown key {key!r}{hint}",
            )
