"""GPIO pin configuration and its start-up validation (re-exported by ``hal.gpio``).

Apart from :mod:`hal.gpio` so that loading ``intercom.toml`` (``firmware.config``)
checks pins without importing the board glue and the debouncer: start-up CPU
the first REGISTER does not need (issue 6).
"""

from __future__ import annotations

import enum

from sipstack.records import dataclass

__all__ = [
    "Pull",
    "ButtonConfig",
    "LedConfig",
    "RelayConfig",
    "GpioConfig",
    "GpioConfigError",
    "validate_config",
    "VALID_BCM_PINS",
]


# -- configuration ----------------------------------------------------------------


class Pull(enum.Enum):
    """Internal pull resistor for an input."""

    UP = "up"
    DOWN = "down"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class ButtonConfig:
    """One push button.

    ``source`` names where this entry came from (``"intercom.toml line 12"``)
    so that start-up errors point at the line to fix. The default wiring is the
    usual one: button between the pin and ground, internal pull-up, so the pin
    reads low while pressed.
    """

    name: str
    bcm: int
    source: str = "<code>"
    pull: Pull = Pull.UP
    active_low: bool = True
    debounce: float = 0.03
    long_press: float | None = 1.5


@dataclass(frozen=True, slots=True)
class LedConfig:
    """One LED; ``active_high`` when the pin drives the anode through a resistor."""

    name: str
    bcm: int
    source: str = "<code>"
    active_high: bool = True


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """One relay (door opener). ``max_pulse`` caps any pulse so that a bug in the
    caller cannot hold a door strike energised (they overheat)."""

    name: str
    bcm: int
    source: str = "<code>"
    active_high: bool = True
    max_pulse: float = 30.0


@dataclass(frozen=True, slots=True)
class GpioConfig:
    """Every pin the firmware uses."""

    buttons: tuple[ButtonConfig, ...] = ()
    leds: tuple[LedConfig, ...] = ()
    relays: tuple[RelayConfig, ...] = ()


class GpioConfigError(ValueError):
    """The GPIO configuration is wrong (the config file's fault, not the code's).

    ``problems`` holds one line per offending entry, each starting with the
    entry's ``source``.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid GPIO configuration:\n  " + "\n  ".join(self.problems))


# BCM 2-27 are on the 40-pin header of every Pi since the B+ (and the Pi 5).
# BCM 0 and 1 are on the header too but reserved for the HAT ID EEPROM (I2C0).
VALID_BCM_PINS = frozenset(range(2, 28))
_RESERVED_BCM = {0: "the HAT ID EEPROM (ID_SD)", 1: "the HAT ID EEPROM (ID_SC)"}


def validate_config(config: GpioConfig) -> None:
    """Raise :class:`GpioConfigError` listing every bad entry, or return.

    Checks BCM numbers, pins used twice (whatever their role), names used
    twice within a role, and timing values.
    """
    problems: list[str] = []
    users: dict[int, str] = {}
    entries: list[tuple[str, ButtonConfig | LedConfig | RelayConfig]] = [
        *(("button", b) for b in config.buttons),
        *(("led", led) for led in config.leds),
        *(("relay", r) for r in config.relays),
    ]
    names: dict[tuple[str, str], str] = {}
    for kind, entry in entries:
        where = f"{entry.source}: {kind} {entry.name!r}"
        if not entry.name:
            problems.append(f"{entry.source}: {kind} has an empty name")
        key = (kind, entry.name)
        if key in names:
            problems.append(f"{where}: name already used by the {kind} at {names[key]}")
        else:
            names[key] = entry.source
        bcm = entry.bcm
        if isinstance(bcm, bool) or not isinstance(bcm, int):
            problems.append(f"{where}: BCM pin must be an integer, got {bcm!r}")
            continue
        if bcm in _RESERVED_BCM:
            problems.append(f"{where}: BCM {bcm} is reserved for {_RESERVED_BCM[bcm]}")
            continue
        if bcm not in VALID_BCM_PINS:
            problems.append(f"{where}: BCM {bcm} is not a header GPIO (valid: 2-27)")
            continue
        if bcm in users:
            problems.append(f"{where}: BCM {bcm} is already used by {users[bcm]}")
        else:
            users[bcm] = where
        if isinstance(entry, ButtonConfig):
            if not (0 <= entry.debounce <= 1.0):
                problems.append(f"{where}: debounce must be 0-1 s, got {entry.debounce!r}")
            if entry.long_press is not None and not entry.long_press > entry.debounce:
                problems.append(
                    f"{where}: long_press ({entry.long_press!r} s) must exceed "
                    f"debounce ({entry.debounce!r} s)"
                )
        if isinstance(entry, RelayConfig) and not (0 < entry.max_pulse <= 600):
            problems.append(f"{where}: max_pulse must be 0-600 s, got {entry.max_pulse!r}")
    if problems:
        raise GpioConfigError(problems)
