"""The firmware application: one :class:`App` wires config, hardware, SIP and behaviour.

``intercom run`` builds an :class:`App` from a :class:`~firmware.config.Config`
and runs its loop. Everything lives on that one :class:`~sipstack.loop.Loop`:

* transports from ``[sip]`` and up to 8 accounts (:class:`~sipstack.useragent.UserAgent`),
  calls (:class:`~sipstack.calls.CallManager`) with RTP media plugged into a
  conference bridge whose device port is the sound card (ALSA plus the voice
  processor on ``--hal rpi``) or, simulated, a tone/WAV source and a WAV recorder;
* the GPIO board (simulated or RPi.GPIO), whose button events go to the pure
  :class:`~firmware.behaviour.Behaviour`; :mod:`firmware.behaviour_driver`
  feeds it and carries out its commands (calls, relay, LEDs, tones);
* the network watcher (:mod:`firmware.network_watch`: re-register on address
  change), the request screen (:mod:`firmware.request_gate`), the in-memory log
  ring, the SIP trace tap (:mod:`firmware.sip_tap`) and the control socket,
  whose commands are in :mod:`firmware.control_commands`;
* live reload (SIGHUP, ``intercom reload``): planned by :mod:`firmware.reconfig`,
  carried out by :mod:`firmware.live_reload`, accounts changed by
  :mod:`firmware.account_wiring`.

Requests are screened (:mod:`firmware.screening`): with a config file only our
servers, allowed peers and our own dialogs get through. The audio path is in
:mod:`firmware.audio_path`, the log ring in :mod:`firmware.logring`, and
``intercom status`` / ``intercom doctor`` in :mod:`firmware.status` /
:mod:`firmware.doctor`; this module wires them together.

Start-up is ordered for speed: the user agent, accounts and control socket
come first, so the first REGISTER leaves on the loop's first turn. The rest
(calls, audio, GPIO, network, behaviour) waits until every account has had its
registrar's answer (the digest challenge and the authorised retry go out
without waiting behind ~100 ms of building), or ``rest_after`` seconds at
most, or a request we let in, whichever comes first. The RTP media factory
and its codec libraries wait for the first call
(:class:`~firmware.audio_path.DeferredMedia`): an idle door station never
loads them. :mod:`firmware.call_media` builds it, with each account's SRTP
policy (``use_srtp``, ``srtp_secure_signaling``).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from firmware.account_wiring import AccountWiring
from firmware.audio_path import AudioPath, DeferredMedia
from firmware.behaviour_driver import BehaviourDriver
from firmware.config import BUILTIN_SOURCE, Config, ConfigError
from firmware.control import ControlServer
from firmware.control_commands import ControlCommands
from firmware.heap import release_free_heap
from firmware.live_reload import LiveReload
from firmware.logring import LogRing, mask_secrets
from firmware.network_watch import NetworkWatch, watcher_kind
from firmware.reconfig import screening_for
from firmware.request_gate import RequestGate
from firmware.screening import RequestScreen, Screening, server_hosts
from firmware.sip_tap import SipTap, config_secrets
from firmware.status import VERSION, account_report, call_report, status_report
from sipstack.account_events import IncomingMessage, MessageStatus, RegStateChanged, UaEvent
from sipstack.loop import Loop, TimerHandle
from sipstack.transport_base import is_ip_literal

if TYPE_CHECKING:
    from firmware.behaviour import Behaviour, BehaviourEvent
    from hal.gpio import GpioBoard
    from hal.network import NetworkInfo
    from sipstack.calls import CallManager
    from sipstack.endpoint import IncomingRequest
    from sipstack.media_factory import RtpMediaFactory
    from sipstack.message import Response
    from sipstack.resolver import Resolver
    from sipstack.timers import TimerConfig
    from sipstack.useragent import UserAgent

__all__ = ["App", "Screening", "LogRing", "mask_secrets", "VERSION"]

log = logging.getLogger("intercom")


# -- the application --------------------------------------------------------------------


class App:
    """The firmware: build with a :class:`Config`, :meth:`start`, :meth:`run`.

    ``hal`` overrides ``config.hal`` (``"sim"`` or ``"rpi"``), ``watch`` the
    config's ``[network] watch`` (:mod:`firmware.network_watch`); ``control_path``
    is the control socket (None: no socket, for tests that drive the App
    directly). ``bind`` is ``(host, first_port)`` for the built-in default,
    which moves to the next free port. ``screening`` overrides the config's
    (:func:`~firmware.reconfig.screening_for`: our servers, ``[sip] allow``,
    ``[intercom] trusted`` IP hosts and ``[sip] refuse`` with a file; open
    without), also across reloads. ``on_ready`` runs once start-up is complete and ``on_heartbeat``
    every ``heartbeat_interval`` seconds while the loop turns (hooks for
    sd_notify READY=1 and WATCHDOG=1). ``rest_after`` bounds how long the rest
    of start-up waits for the registrars' first answers (see the module
    docstring); :attr:`ready` says when it is done.
    """

    def __init__(
        self,
        config: Config,
        *,
        loop: Loop | None = None,
        hal: str | None = None,
        watch: str | None = None,
        control_path: str | None = None,
        bind: tuple[str, int] = ("0.0.0.0", 5060),
        screening: Screening | None = None,
        timers: TimerConfig | None = None,
        resolver: Resolver | None = None,
        unregister_timeout: float = 2.0,
        heartbeat_interval: float = 5.0,
        rest_after: float = 0.5,
    ) -> None:
        self.config = config
        self.loop = loop if loop is not None else Loop()
        self._own_loop = loop is None
        self.hal = hal or config.hal
        if self.hal not in ("sim", "rpi"):
            raise ValueError(f"hal must be 'sim' or 'rpi', not {self.hal!r}")
        self.network_watch = watcher_kind(config.network, self.hal, watch)
        """The network watcher that runs: ``"kernel"`` or ``"sim"``."""
        self.control_path = control_path
        self._bind = bind
        self.screening = screening
        """A test's screening override (None: from the config, at every reload)."""
        self.screen = RequestScreen(screening or screening_for(config), self.loop.time)
        self._timers = timers
        self._resolver = resolver
        self.unregister_timeout = unregister_timeout
        self.heartbeat_interval = heartbeat_interval
        self.rest_after = rest_after
        self.on_ready: Callable[[], None] | None = None
        self.on_heartbeat: Callable[[], None] | None = None
        self.started_at = time.monotonic()
        self.ua: UserAgent | None = None
        self.accounts: AccountWiring | None = None
        self.config_error: ConfigError | None = None
        """Why the last reload failed (None: the file in force is the file on disk)."""
        self.restart_needed: tuple[str, ...] = ()
        """Keys a reload changed that only apply at the next start."""
        self.calls: CallManager | None = None
        self.media: RtpMediaFactory | None = None
        """The RTP media factory; None until the first call needs media."""
        self.audio: AudioPath | None = None
        self.board: GpioBoard | None = None
        self.network: NetworkInfo | None = None
        self.behaviour: Behaviour | None = None
        self.control: ControlServer | None = None
        self.tap: SipTap | None = None
        self.driver = BehaviourDriver(self)
        self.commands = ControlCommands(self)
        self.gate = RequestGate(self)
        self.reloader = LiveReload(self)
        self.watcher = NetworkWatch(self.loop, self._network_changed)
        self.log_ring = LogRing(self.loop)
        self.ready = False
        self.failure: str | None = None
        self.ports: dict[str, int] = {}
        self.relay_pulses = 0
        self.leds: dict[str, str] = {}
        self.last_buttons: collections.deque[dict[str, Any]] = collections.deque(maxlen=10)
        self._rest_timer: TimerHandle | None = None
        self._rest_begun = False
        self.media_host = "0.0.0.0"
        """Where RTP sockets are bound: ``[sip] udp``'s host with a config file."""
        self._closed = False

    # -- start-up -------------------------------------------------------------------------

    def start(self) -> None:
        """Bind transports and add accounts (the first REGISTER goes out on the
        loop's next turn); everything else is built once the registrars have
        answered (see the module docstring)."""
        try:
            self._start()
        except BaseException:
            self.shutdown()  # nothing half-bound left behind (ports, the socket)
            raise

    def _start(self) -> None:
        logging.getLogger().addHandler(self.log_ring)
        from sipstack.useragent import UserAgent

        if self._resolver is None and any(
            not is_ip_literal(h)
            for s in self.config.accounts
            if not s.local
            for h in server_hosts(s)
        ):
            self._resolver = _make_resolver(self.loop)  # needed for the first REGISTER
        self.ua = ua = UserAgent(
            self.loop,
            on_event=self._on_ua_event,
            resolver=self._resolver,
            timers=self._timers,
            user_agent=self.config.sip.user_agent,
        )
        self.tap = SipTap(ua.endpoint.transports, config_secrets(self.config))
        ua.endpoint.admit = self.gate.admit
        ua.endpoint.transports.prescreen = self.gate.prescreen
        ua.add_request_filter(self.gate.filter)
        ua.add_request_filter(self._rest_before_requests)
        self._create_transports()
        if self.control_path is not None:
            # bound now, so a second instance on the same path fails start(), loudly
            self.control = ControlServer(self.loop, self.control_path, self.commands.handle)
            self.control.start()
        self.accounts = AccountWiring(ua, self.screen)
        self.accounts.add_all(self.config.accounts)
        if self._registrations_answered():
            self.loop.call_soon(self._start_rest)  # nothing to wait for
        else:
            self._rest_timer = self.loop.call_later(self.rest_after, self._start_rest)

    def _create_transports(self) -> None:
        assert self.ua is not None
        ua, sip = self.ua, self.config.sip
        if self.config.source == BUILTIN_SOURCE:
            host, first = self._bind
            self.ports["udp"] = self.ports["tcp"] = _bind_first_free(ua, host, first)
            return
        for kind in ("udp", "tcp", "tls"):
            where = getattr(sip, kind)
            if where is None:
                continue
            contexts: dict[str, Any] = {}
            if kind == "tls":
                from sipstack.tls import client_context, server_context

                ca = sip.tls_ca or None
                contexts["tls_client"] = client_context(ca)
                contexts["tls_server"] = server_context(sip.tls_cert, sip.tls_key, ca)
            tid = ua.transport_create(kind, where.host, where.port, **contexts)
            self.ports[kind] = ua.endpoint.transports.info(tid).local_port

    def _registrations_answered(self) -> bool:
        """Whether every registering account has had an outcome: registered,
        refused, timed out or waiting for a route (anything but a REGISTER
        still out). A digest challenge (RFC 3261 22.2) is not an outcome: the
        authorised retry is still to come."""
        assert self.accounts is not None
        events = self.accounts.reg_events
        return all(
            acc in events and events[acc].state != "registering"
            for acc in self.accounts.registering
        )

    def _rest_before_requests(self, inc: IncomingRequest) -> Response | None:
        """A request the screen let in may be a call: the call layer must be
        there before the user agent looks for a handler (else it answers 480)."""
        if not self._rest_begun:
            self._start_rest()
        return None

    def _start_rest(self) -> None:
        """Calls, audio, GPIO, behaviour, network: everything the first REGISTER
        did not need. Runs once, on whichever comes first: the registrars'
        answers, the ``rest_after`` timer or a request let in.

        It runs as a loop callback, whose exceptions the loop would swallow: a
        half-built firmware must not look alive, so a failure stops the loop and
        :meth:`run` reports it.
        """
        if self._rest_begun or self._closed:
            return
        self._rest_begun = True
        if self._rest_timer is not None:
            self._rest_timer.cancel()
            self._rest_timer = None
        try:
            self._build_rest()
        except Exception as exc:
            log.critical("start-up failed: %s", exc, exc_info=True)
            self.failure = str(exc)
            self.loop.stop()

    def _build_rest(self) -> None:
        from firmware.behaviour import Behaviour
        from sipstack.calls import CallManager

        assert self.ua is not None and self.accounts is not None
        config = self.config
        if self.ua.endpoint.resolver is None:
            # calls to names (sip:flat@example.com) need DNS; REGISTER did not
            self.ua.endpoint.resolver = _make_resolver(self.loop)
        self.audio = AudioPath(self)
        udp = config.sip.udp
        if udp is not None and config.source != BUILTIN_SOURCE:
            self.media_host = udp.host
        self.calls = CallManager(
            self.ua, on_event=self.driver.on_call_event, media=DeferredMedia(self._build_media)
        )
        self._start_board()
        self._start_network()
        self.behaviour = Behaviour.from_config(
            config, now=self.loop.time(), **self.behaviour_accounts()
        )
        self.driver.run_commands()  # initial LED states
        # the registrars may have answered already: the status LED learns it now
        for acc in self.accounts.registering:
            event = self.accounts.reg_events.get(acc)
            if event is not None:
                self.driver.on_registration(event)
        if self.heartbeat_interval > 0:
            self.loop.call_later(self.heartbeat_interval, self._heartbeat)
        self.ready = True
        log.info(
            "intercom ready: %s, %s hardware, ports %s, control %s",
            config.source,
            self.hal,
            ", ".join(f"{k.upper()} {v}" for k, v in self.ports.items()),
            self.control_path or "off",
        )
        if self.on_ready is not None:
            self.on_ready()
        # start-up's short-lived buffers are freed: give their pages back
        release_free_heap()

    def _build_media(self) -> RtpMediaFactory:
        """The RTP media factory (the first call's): :func:`firmware.call_media.build_media`."""
        from firmware.call_media import build_media

        self.media = build_media(self)
        return self.media

    def behaviour_accounts(self) -> dict[str, Any]:
        """The behaviour's view of the accounts: which register (their LED states),
        which places the calls (the first that registers, else the default)."""
        assert self.ua is not None and self.accounts is not None
        registering = self.accounts.registering
        return {
            "call_account": registering[0] if registering else self.ua.acc_get_default(),
            "accounts": registering,
        }

    def _start_board(self) -> None:
        gpio = self.config.gpio_config()
        if self.hal == "rpi":
            from hal.rpigpio import RpiGpioBoard

            board: GpioBoard = RpiGpioBoard(self.loop, gpio)
        else:
            from hal.sim import SimGpioBoard

            board = SimGpioBoard(self.loop, gpio)
        board.buttons.set_handler(self.driver.on_button)
        self.board = board

    def _start_network(self) -> None:
        self.network = self.watcher.start(self.network_watch)

    def _network_changed(self) -> None:
        """A settled burst of network events: re-register (RFC 3261 10.2.7 via the UA)."""
        if self.ua is not None and not self._closed:
            self.ua.handle_network_change()

    def _heartbeat(self) -> None:
        if self._closed:
            return
        if self.on_heartbeat is not None:
            try:
                self.on_heartbeat()
            except Exception:
                log.exception("heartbeat hook failed")
        self.loop.call_later(self.heartbeat_interval, self._heartbeat)

    # -- running and stopping ----------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once :meth:`shutdown` has begun."""
        return self._closed

    def run(self) -> int:
        """Start (if needed) and run until SIGTERM/SIGINT; then shut down gracefully."""
        if self.ua is None:
            self.start()

        def stop(signum: int, _frame: object) -> None:
            log.info("signal %d: shutting down", signum)
            self.loop.call_soon_threadsafe(self.loop.stop)

        def hup(_signum: int, _frame: object) -> None:
            self.loop.call_soon_threadsafe(self._reload_on_signal)

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
        # systemctl reload intercom (ExecReload=/bin/kill -HUP $MAINPID)
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hup)
        try:
            self.loop.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.shutdown()
        return 1 if self.failure is not None else 0

    def shutdown(self) -> None:
        """Relay off first (a door strike must never stay energised because
        something below hangs), hang up, unregister (bounded), remove the socket."""
        if self._closed:
            return
        self._closed = True
        if self._rest_timer is not None:
            self._rest_timer.cancel()
        if self.board is not None:
            self.board.close()
        if self.calls is not None:
            calls = self.calls
            calls.hangup_all()
            self.loop.run_until(lambda: calls.call_get_count() == 0, 1.0)
            calls.close()
        if self.media is not None:
            self.media.close_all()
        if self.audio is not None:
            self.audio.close()
        if self.ua is not None:
            self.ua.shutdown(timeout=self.unregister_timeout)
        self.watcher.close()
        if self.network is not None:
            self.network.close()
        if self.control is not None:
            self.control.close()
        logging.getLogger().removeHandler(self.log_ring)
        if self._own_loop:
            self.loop.close()
        log.info("intercom stopped")

    # -- live reload --------------------------------------------------------------------------

    def reload(self) -> dict[str, Any]:
        """Read the config file again and apply what can change live.

        A broken file (one caught half-saved, too) raises :class:`ConfigError`
        and changes nothing: the running config stays in force, the error is
        logged once and shown by ``intercom status`` until a good reload.
        Keys that only apply at start-up are listed in the answer (and in
        status) as ``restart_needed``. The file is small: reading it on the loop
        costs a few milliseconds, once per reload. Carried out by
        :class:`~firmware.live_reload.LiveReload`.
        """
        return self.reloader.reload()

    def _reload_on_signal(self) -> None:
        self.reloader.on_signal()

    @property
    def trace_followers(self) -> int:
        """``intercom trace`` clients connected now."""
        return len(self.tap.followers) if self.tap is not None else 0

    # -- events in ----------------------------------------------------------------------------

    def post(self, event: BehaviourEvent) -> None:
        """Feed one event to the behaviour and carry out what it decides
        (:meth:`BehaviourDriver.post <firmware.behaviour_driver.BehaviourDriver.post>`)."""
        self.driver.post(event)

    def _on_ua_event(self, event: UaEvent) -> None:
        if isinstance(event, RegStateChanged):
            if self.accounts is None or not self.accounts.is_current(event):
                return  # a deleted account's unregistration
            self.accounts.note_registration(event)
            if self.behaviour is not None:
                self.driver.on_registration(event)
            elif not self._rest_begun and self._registrations_answered():
                # the rest of start-up runs on the next turn: the other
                # accounts' answers already read on this one go first
                self.loop.call_soon(self._start_rest)
        elif isinstance(event, IncomingMessage):
            text = event.body.decode("utf-8", "replace")[:200]
            log.info("message from %s: %s", event.from_uri, text)
        elif isinstance(event, MessageStatus):
            self.commands.message_status(event)

    # -- what the CLI can do ---------------------------------------------------------------------

    def press(self, name: str) -> str:
        """Press and release button ``name`` as if by hand (``intercom press``)."""
        return self.commands.press(name)

    # -- status ------------------------------------------------------------------------------

    def account_status(self, acc: int) -> dict[str, Any]:
        """One account as ``intercom status`` shows it."""
        assert self.ua is not None and self.accounts is not None
        wiring = self.accounts
        return account_report(
            self.ua,
            acc,
            wiring.settings.get(acc),
            wiring.reg_events.get(acc),
            self.tap.reg_seen if self.tap is not None else {},
            wiring.reg_failures.get(acc),
        )

    def call_status(self, call_id: int) -> dict[str, Any]:
        """One call as ``intercom status`` shows it."""
        assert self.calls is not None
        return call_report(self.calls.call_get_info(call_id))

    def status(self) -> dict[str, Any]:
        """Everything ``intercom status`` shows (JSON-able)."""
        return status_report(self)

    # -- doctor ------------------------------------------------------------------------------

    def doctor(self, reply: Callable[[object], None], dns_timeout: float = 3.0) -> None:
        """Check what usually goes wrong and say it in plain words; ``reply`` gets
        a list of ``{"check", "status": ok|warn|fail, "message", "advice"}``
        once the DNS look-ups are done (bounded by ``dns_timeout``)."""
        from firmware.doctor import run_doctor  # only when someone asks

        run_doctor(self, reply, dns_timeout)


# -- helpers ------------------------------------------------------------------------------


def _bind_first_free(ua: UserAgent, host: str, first_port: int, tries: int = 20) -> int:
    """Bind UDP and TCP on the first port where both are free; returns the port."""
    from sipstack.errors import TransportError

    for port in range(first_port, first_port + tries):
        try:
            ua.transport_create("udp", host, port)
        except TransportError:
            continue
        with contextlib.suppress(TransportError):
            ua.transport_create("tcp", host, port)
            return port
        ua.transport_create("tcp", host, 0)  # UDP is ours here; TCP lives elsewhere
        return port
    raise OSError(f"no free SIP port in {first_port}..{first_port + tries - 1}")


def _make_resolver(loop: Loop) -> Resolver:
    from sipstack.resolver import Resolver

    return Resolver(loop)
