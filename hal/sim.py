"""Simulated buttons, LEDs, relays and network, for a desk without a Pi and for tests.

The simulated GPIO board runs the very same :class:`hal.gpio.PinBoard` as the
RPi.GPIO backend (same debouncing, long-press timing, LED patterns and relay
pulses) over in-memory pins that record every level they are driven to with
the loop's timestamp. Like gpiozero's ``pins/mock.py`` it exposes the raw
pins (:meth:`SimPins.drive_high`, :meth:`SimPins.drive_low`) and an
``assert_states`` check, plus named helpers: :meth:`SimGpioBoard.press`,
:meth:`SimGpioBoard.release`, :meth:`SimGpioBoard.click`,
:meth:`SimGpioBoard.led_history`, :meth:`SimGpioBoard.relay_history` and a
one-line text :meth:`SimGpioBoard.command` for a CLI.

The simulated network (:class:`SimNetwork`) holds a snapshot that tests or a
CLI change (:meth:`SimNetwork.add_address`, :meth:`SimNetwork.set_link`...);
events are computed with the same diff as the real watcher and delivered on
the loop.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence

from hal.gpio import (
    Buttons,
    GpioConfig,
    Leds,
    PinBoard,
    Pull,
    Relay,
    validate_config,
)
from hal.loop_api import EventLoop
from hal.network import (
    DefaultRoute,
    InterfaceAddress,
    NetworkHandler,
    NetworkSnapshot,
    diff_snapshots,
)
from sipstack.records import replace

__all__ = ["SimPins", "SimGpioBoard", "SimNetwork", "default_sim_snapshot"]


class SimPins:
    """In-memory pins implementing :class:`hal.gpio.PinIO`, with history.

    Output writes are recorded as ``(loop time, high)``; inputs read whatever
    was last driven from outside (or their pull when never driven).
    """

    def __init__(self, loop: EventLoop) -> None:
        self._loop = loop
        self._levels: dict[int, bool] = {}
        self.history: dict[int, list[tuple[float, bool]]] = {}

    def read(self, bcm: int) -> bool:
        """The pin's level (False for a pin nobody drove)."""
        return self._levels.get(bcm, False)

    def write(self, bcm: int, high: bool) -> None:
        """Drive an output, recording it."""
        self._levels[bcm] = high
        self.history.setdefault(bcm, []).append((self._loop.time(), high))

    def drive_high(self, bcm: int) -> None:
        """Pull an input high from outside (as gpiozero's MockPin.drive_high)."""
        self._levels[bcm] = True

    def drive_low(self, bcm: int) -> None:
        """Pull an input low from outside."""
        self._levels[bcm] = False

    def assert_states(self, bcm: int, expected: Sequence[bool]) -> None:
        """Raise AssertionError unless the pin was driven through exactly ``expected``."""
        actual = [high for _, high in self.history.get(bcm, [])]
        if actual != list(expected):
            raise AssertionError(f"BCM {bcm} went through {actual}, expected {list(expected)}")


class SimGpioBoard:
    """A :class:`hal.gpio.GpioBoard` on simulated pins, with test/desk controls.

    Inputs rest at their pull level (released); :meth:`press` and
    :meth:`release` drive the pin and wake the board on the loop, as an edge
    interrupt would.
    """

    def __init__(self, loop: EventLoop, config: GpioConfig) -> None:
        validate_config(config)
        self._loop = loop
        self._config = config
        self.pins = SimPins(loop)
        for bc in config.buttons:
            # Released level: a pulled-up active-low button reads high.
            if bc.pull is Pull.UP or (bc.pull is Pull.OFF and bc.active_low):
                self.pins.drive_high(bc.bcm)
            else:
                self.pins.drive_low(bc.bcm)
        self._board = PinBoard(loop, config, self.pins)
        self._buttons = {bc.name: bc for bc in config.buttons}
        self._leds = {lc.name: lc for lc in config.leds}
        self._relays = {rc.name: rc for rc in config.relays}

    # -- GpioBoard --------------------------------------------------------------------

    @property
    def buttons(self) -> Buttons:
        """The configured buttons."""
        return self._board.buttons

    @property
    def leds(self) -> Leds:
        """The configured LEDs."""
        return self._board.leds

    @property
    def relays(self) -> Mapping[str, Relay]:
        """The configured relays, by name."""
        return self._board.relays

    def close(self) -> None:
        """Relays off, LEDs off, timers stopped. Idempotent."""
        self._board.close()

    def __enter__(self) -> SimGpioBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- controls -----------------------------------------------------------------------

    def _button_pin(self, name: str) -> tuple[int, bool]:
        try:
            bc = self._buttons[name]
        except KeyError:
            raise KeyError(f"no button named {name!r}") from None
        return bc.bcm, bc.active_low

    def set_contact(self, name: str, closed: bool) -> None:
        """Close or open a button's contact; the board samples it on the loop."""
        bcm, active_low = self._button_pin(name)
        if closed != active_low:
            self.pins.drive_high(bcm)
        else:
            self.pins.drive_low(bcm)
        self._loop.call_soon(lambda: self._board.pin_changed(bcm))

    def press(self, name: str) -> None:
        """Push the button down (events follow after the debounce time)."""
        self.set_contact(name, True)

    def release(self, name: str) -> None:
        """Let the button go."""
        self.set_contact(name, False)

    def click(self, name: str, hold: float = 0.2) -> None:
        """Press now and release ``hold`` seconds later (loop time)."""
        self.press(name)
        self._loop.call_later(hold, lambda: self.release(name))

    def led_history(self, name: str) -> list[tuple[float, bool]]:
        """``(time, lit)`` for every change of an LED, from start-up."""
        try:
            lc = self._leds[name]
        except KeyError:
            raise KeyError(f"no LED named {name!r}") from None
        return [(t, high == lc.active_high) for t, high in self.pins.history.get(lc.bcm, [])]

    def relay_history(self, name: str) -> list[tuple[float, bool]]:
        """``(time, energised)`` for every write to a relay, from start-up."""
        try:
            rc = self._relays[name]
        except KeyError:
            raise KeyError(f"no relay named {name!r}") from None
        return [(t, high == rc.active_high) for t, high in self.pins.history.get(rc.bcm, [])]

    def command(self, line: str) -> str:
        """Run one text command (for a desk CLI) and return a one-line answer.

        ``press NAME``, ``release NAME``, ``click NAME [SECONDS]``, ``leds``,
        ``relays``. Unknown input raises ValueError with usage.
        """
        words = line.split()
        usage = "commands: press NAME | release NAME | click NAME [SECONDS] | leds | relays"
        if not words:
            raise ValueError(usage)
        verb, args = words[0].lower(), words[1:]
        if verb in ("press", "release") and len(args) == 1:
            (self.press if verb == "press" else self.release)(args[0])
            return f"{verb}ed {args[0]}" if verb == "press" else f"released {args[0]}"
        if verb == "click" and len(args) in (1, 2):
            hold = float(args[1]) if len(args) == 2 else 0.2
            self.click(args[0], hold)
            return f"clicked {args[0]} for {hold:g} s"
        if verb == "leds" and not args:
            leds = self._board.leds
            return " ".join(f"{n}={'on' if leds.is_lit(n) else 'off'}" for n in leds.names())
        if verb == "relays" and not args:
            relays = self._board.relays
            return " ".join(f"{n}={'on' if r.is_on else 'off'}" for n, r in relays.items())
        raise ValueError(usage)


# -- network ----------------------------------------------------------------------------


def default_sim_snapshot() -> NetworkSnapshot:
    """A typical Pi: loopback plus eth0 on 192.168.1.50/24 with a default route."""
    return NetworkSnapshot(
        addresses=frozenset(
            {
                InterfaceAddress("lo", socket.AF_INET, "127.0.0.1"),
                InterfaceAddress("lo", socket.AF_INET6, "::1"),
                InterfaceAddress("eth0", socket.AF_INET, "192.168.1.50"),
            }
        ),
        links_up=frozenset({"lo", "eth0"}),
        default_routes=(DefaultRoute(socket.AF_INET, "eth0", "192.168.1.1"),),
    )


class SimNetwork:
    """A :class:`hal.network.NetworkInfo` whose state is changed from code."""

    def __init__(self, loop: EventLoop, snapshot: NetworkSnapshot | None = None) -> None:
        self._loop = loop
        self._snapshot = snapshot if snapshot is not None else default_sim_snapshot()
        self._handler: NetworkHandler | None = None
        self._closed = False

    # -- NetworkInfo ------------------------------------------------------------------

    def snapshot(self) -> NetworkSnapshot:
        """The current simulated state."""
        return self._snapshot

    def addresses(self, interface: str | None = None) -> tuple[InterfaceAddress, ...]:
        """Local addresses (of one interface if given), sorted."""
        return tuple(
            sorted(a for a in self._snapshot.addresses if interface in (None, a.interface))
        )

    def default_interface(self, family: int = socket.AF_INET) -> str | None:
        """The interface carrying the default route of ``family``, or None."""
        route = self._snapshot.default_route(family)
        return route.interface if route else None

    def local_address_for(self, destination: str) -> str | None:
        """Route-table logic in miniature: loopback, own address, else default route."""
        try:
            dest = ipaddress.ip_address(destination.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"{destination!r} is not an IP address literal") from None
        family = socket.AF_INET6 if dest.version == 6 else socket.AF_INET
        snap = self._snapshot
        mine = {a.address for a in snap.addresses if a.family == family}
        if dest.is_loopback or str(dest) in mine:
            if str(dest) in mine:
                return str(dest)
            return "127.0.0.1" if family == socket.AF_INET else "::1"
        route = snap.default_route(family)
        if route is None or route.interface not in snap.links_up:
            return None
        candidates = [
            a
            for a in snap.addresses_of(route.interface, family)
            if not ipaddress.ip_address(a).is_link_local
        ]
        return candidates[0] if candidates else None

    def set_handler(self, handler: NetworkHandler | None) -> None:
        """Deliver change events (on the loop) to ``handler``."""
        self._handler = handler

    def close(self) -> None:
        """Stop delivering events."""
        self._closed = True

    # -- injection ------------------------------------------------------------------------

    def apply(self, new: NetworkSnapshot) -> None:
        """Replace the state; the resulting events are delivered on the loop."""
        old, self._snapshot = self._snapshot, new
        events = diff_snapshots(old, new)

        def deliver() -> None:
            for event in events:
                if self._handler is not None and not self._closed:
                    self._handler(event)

        if events:
            self._loop.call_soon(deliver)

    def add_address(self, interface: str, address: str) -> None:
        """Put ``address`` on ``interface`` (family from the literal)."""
        family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
        snap = self._snapshot
        item = InterfaceAddress(interface, family, address)
        self.apply(replace(snap, addresses=snap.addresses | {item}))

    def remove_address(self, interface: str, address: str) -> None:
        """Take ``address`` off ``interface`` (KeyError if it is not there)."""
        snap = self._snapshot
        matches = {a for a in snap.addresses if a.interface == interface and a.address == address}
        if not matches:
            raise KeyError(f"{address} is not on {interface}")
        self.apply(replace(snap, addresses=snap.addresses - matches))

    def set_link(self, interface: str, up: bool) -> None:
        """Bring a link up or down (addresses stay, as with a pulled cable)."""
        snap = self._snapshot
        links = snap.links_up | {interface} if up else snap.links_up - {interface}
        self.apply(replace(snap, links_up=links))

    def set_default_route(
        self, interface: str | None, gateway: str | None = None, family: int = socket.AF_INET
    ) -> None:
        """Point the default route of ``family`` at ``interface`` (None removes it)."""
        snap = self._snapshot
        routes = tuple(r for r in snap.default_routes if r.family != family)
        if interface is not None:
            routes += (DefaultRoute(family, interface, gateway),)
        self.apply(replace(snap, default_routes=routes))
