"""GPIO backend on the ``RPi.GPIO`` API (Raspberry Pi 1-4, and Pi 5 through rpi-lgpio).

Pin numbering is BCM (the ``GPIOnn`` names on pinout diagrams), never
physical-header numbers. Buttons are inputs with the configured pull
(normally the internal pull-up, the button shorting the pin to ground).

Threads: ``RPi.GPIO`` reports edges from its own thread. The callback we give
it does exactly one thing, ``loop.call_soon_threadsafe(...)``, which wakes the
select loop through its self-pipe; reading the pin, debouncing, long-press
timing, LED patterns and relay pulses all happen on the loop (see
:class:`hal.gpio.PinBoard`). We pass no ``bouncetime`` to
``add_event_detect``: RPi.GPIO's version swallows every edge for N ms after
the first, which loses the release of a short press, and rpi-lgpio implements
it differently; our software debounce behaves the same on both.

Raspberry Pi 5
--------------
RPi.GPIO pokes the SoC's GPIO registers and does not work on the Pi 5 (the
pins live on the RP1 chip), nor on kernels that removed the sysfs GPIO
interface ("Failed to add edge detection"). Install the drop-in instead::

    sudo apt remove python3-rpi.gpio && sudo apt install python3-rpi-lgpio
    # or in a venv:  pip uninstall RPi.GPIO && pip install rpi-lgpio

It provides the same ``RPi.GPIO`` module on top of ``/dev/gpiochip*`` (lgpio),
and this backend runs on it unchanged. Differences that matter here:

* the user needs access to the gpiochip device (group ``gpio`` or ``dialout``
  on Raspberry Pi OS), not ``/dev/gpiomem``;
* the chip is chosen from the board revision (``gpiochip4`` on early Pi 5
  kernels, ``gpiochip0`` otherwise); override with ``RPI_LGPIO_CHIP=N``;
* a pin claimed by another process fails at ``setup`` (``lgpio.error``, not
  ``RuntimeError``); we report it as :class:`GpioUnavailableError` naming the
  config entry;
* edge callbacks come from lgpio's thread; that is fine, since ours only wakes
  the loop.

Start-up errors: the configuration is validated before any pin is touched
(:class:`hal.gpio.GpioConfigError`, naming each entry's ``source``, e.g.
``intercom.toml line 12``); a library or permission failure raises
:class:`GpioUnavailableError` naming the pin and its entry. Either way relays
that were already set up are driven off before the error propagates.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from hal.gpio import (
    ButtonConfig,
    Buttons,
    GpioConfig,
    LedConfig,
    Leds,
    PinBoard,
    Pull,
    Relay,
    RelayConfig,
    validate_config,
)
from hal.loop_api import EventLoop

__all__ = ["RpiGpioBoard", "GpioUnavailableError"]

log = logging.getLogger(__name__)

_Entry = ButtonConfig | LedConfig | RelayConfig


class GpioUnavailableError(RuntimeError):
    """The GPIO library or hardware refused (the environment's fault, not the config's)."""


def _import_gpio() -> Any:
    """Import the vendor module; only this backend ever does."""
    try:
        import RPi.GPIO as gpio_module  # type: ignore[import-not-found,unused-ignore]
    except ImportError as exc:
        raise GpioUnavailableError(
            "RPi.GPIO is not installed: install python3-rpi.gpio (Pi 1-4) or "
            "python3-rpi-lgpio (Pi 5), or choose the 'sim' GPIO backend"
        ) from exc
    except RuntimeError as exc:  # "This module can only be run on a Raspberry Pi!"
        raise GpioUnavailableError(f"RPi.GPIO refused to load: {exc}") from exc
    return gpio_module


def _where(kind: str, entry: _Entry) -> str:
    return f"{entry.source}: {kind} {entry.name!r} on BCM {entry.bcm}"


class _RpiPins:
    """:class:`hal.gpio.PinIO` over the RPi.GPIO module (called on the loop only)."""

    def __init__(self, gpio: Any) -> None:
        self._gpio = gpio

    def read(self, bcm: int) -> bool:
        return bool(self._gpio.input(bcm))

    def write(self, bcm: int, high: bool) -> None:
        self._gpio.output(bcm, self._gpio.HIGH if high else self._gpio.LOW)


class RpiGpioBoard:
    """Buttons, LEDs and relays on real pins; implements :class:`hal.gpio.GpioBoard`.

    ``gpio`` is the ``RPi.GPIO`` module; leave it ``None`` to import it (tests
    pass a recording fake). Construction order is safety order: relays are
    configured as outputs at their *inactive* level before anything else, so a
    restart after a crash releases the door first.
    """

    def __init__(self, loop: EventLoop, config: GpioConfig, *, gpio: Any | None = None) -> None:
        validate_config(config)  # before touching any pin
        self._gpio = gpio if gpio is not None else _import_gpio()
        self._loop = loop
        self._config = config
        self._claimed: list[int] = []
        self._edges: list[int] = []
        self._board: PinBoard | None = None
        self._closed = False
        try:
            self._setup()
        except BaseException:
            self._release()
            raise

    # -- set-up -----------------------------------------------------------------

    def _call(
        self, kind: str, entry: _Entry, what: str, fn: Callable[..., object], *args: Any, **kw: Any
    ) -> None:
        try:
            fn(*args, **kw)
        except Exception as exc:
            hint = ""
            if "edge detection" in str(exc).lower():
                hint = " (on a Pi 5 or a kernel without sysfs GPIO, install rpi-lgpio)"
            raise GpioUnavailableError(
                f"{_where(kind, entry)}: {what} failed: {exc}{hint}"
            ) from exc

    def _setup(self) -> None:
        g = self._gpio
        # Pins left configured by a crashed run are expected; we set them again.
        g.setwarnings(False)
        mode = g.getmode()
        if mode is not None and mode != g.BCM:
            raise GpioUnavailableError(
                "RPi.GPIO is already in BOARD numbering in this process; this backend "
                "uses BCM numbering (the config's pin numbers are BCM)"
            )
        g.setmode(g.BCM)
        for rc in self._config.relays:
            self._setup_output("relay", rc, high=not rc.active_high)
        for lc in self._config.leds:
            self._setup_output("led", lc, high=not lc.active_high)
        pulls = {Pull.UP: g.PUD_UP, Pull.DOWN: g.PUD_DOWN, Pull.OFF: g.PUD_OFF}
        for bc in self._config.buttons:
            self._claimed.append(bc.bcm)
            self._call(
                "button", bc, "setup as input", g.setup, bc.bcm, g.IN, pull_up_down=pulls[bc.pull]
            )
        board = PinBoard(self._loop, self._config, _RpiPins(g))
        self._board = board
        for bc in self._config.buttons:
            on_edge, wake = self._edge_callback(board, bc.bcm)
            self._call(
                "button",
                bc,
                "add_event_detect",
                g.add_event_detect,
                bc.bcm,
                g.BOTH,
                callback=on_edge,
            )
            self._edges.append(bc.bcm)
            # An edge between setup and add_event_detect would be lost: sample once.
            self._loop.call_soon(wake)

    def _setup_output(self, kind: str, entry: RelayConfig | LedConfig, *, high: bool) -> None:
        g = self._gpio
        level = g.HIGH if high else g.LOW
        self._claimed.append(entry.bcm)
        self._call(kind, entry, "setup as output", g.setup, entry.bcm, g.OUT, initial=level)

    def _edge_callback(
        self, board: PinBoard, bcm: int
    ) -> tuple[Callable[[int], None], Callable[[], None]]:
        loop = self._loop

        def wake() -> None:
            board.pin_changed(bcm)

        def on_edge(channel: int) -> None:
            # Runs on RPi.GPIO's thread: only wake the loop, touch nothing else.
            loop.call_soon_threadsafe(wake)

        return on_edge, wake

    # -- GpioBoard ----------------------------------------------------------------

    @property
    def buttons(self) -> Buttons:
        """The configured buttons."""
        return self._live().buttons

    @property
    def leds(self) -> Leds:
        """The configured LEDs."""
        return self._live().leds

    @property
    def relays(self) -> Mapping[str, Relay]:
        """The configured relays, by name."""
        return self._live().relays

    def _live(self) -> PinBoard:
        if self._board is None:
            raise RuntimeError("GPIO board is not set up")
        return self._board

    def close(self) -> None:
        """Relays off, LEDs off, edge detection removed, pins released. Idempotent.

        Released pins go back to inputs, the state they have at power-on, which
        the relay circuit must already treat as "off".
        """
        if self._closed:
            return
        self._closed = True
        self._release()

    def _release(self) -> None:
        g = self._gpio
        if self._board is not None:
            self._board.close()
        else:
            # Failed half-way through set-up: drive whatever relays exist off.
            for rc in self._config.relays:
                if rc.bcm in self._claimed:
                    try:
                        g.output(rc.bcm, g.HIGH if not rc.active_high else g.LOW)
                    except Exception:
                        log.exception("could not drive relay %r off", rc.name)
        for bcm in self._edges:
            try:
                g.remove_event_detect(bcm)
            except Exception:
                log.exception("remove_event_detect(%d) failed", bcm)
        self._edges.clear()
        if self._claimed:
            try:
                g.cleanup(list(self._claimed))
            except Exception:
                log.exception("GPIO cleanup failed")
            self._claimed.clear()

    def __enter__(self) -> RpiGpioBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
