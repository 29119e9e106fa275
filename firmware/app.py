"""The firmware application: one :class:`App` wires config, hardware, SIP and behaviour.

``intercom run`` builds an :class:`App` from a :class:`~firmware.config.Config`
and runs its loop. Everything lives on that one :class:`~sipstack.loop.Loop`:

* transports from ``[sip]`` and up to 8 accounts (:class:`~sipstack.useragent.UserAgent`),
  calls (:class:`~sipstack.calls.CallManager`) with RTP media plugged into a
  conference bridge whose device port is the sound card (ALSA plus the voice
  processor on ``--hal rpi``) or, simulated, a tone/WAV source and a WAV recorder;
* the GPIO board (simulated or RPi.GPIO), whose button events go to the pure
  :class:`~firmware.behaviour.Behaviour`; its commands are carried out here
  (calls, relay, LEDs, tones) and the user agent's and calls' events are
  translated back into behaviour events;
* the network watcher (re-register on address change), the request screen,
  the in-memory log ring, the SIP trace tap and the control socket.

Requests are screened (:mod:`firmware.screening`): with a config file only our
servers, allowed peers and our own dialogs get through. The audio path is in
:mod:`firmware.audio_path`, the log ring in :mod:`firmware.logring`, and
``intercom status`` / ``intercom doctor`` in :mod:`firmware.status` /
:mod:`firmware.doctor`; this module wires them together.

Start-up is ordered for speed: the user agent and accounts come first so the
first REGISTER leaves on the loop's first turn; calls, media, GPIO and the
control socket are built right after it (on the same turn), importing only
what the chosen backend needs.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from firmware.audio_path import AudioPath, dbfs
from firmware.config import BUILTIN_SOURCE, Config
from firmware.control import ControlConnection, ControlError, ControlServer
from firmware.doctor import run_doctor
from firmware.logring import LogRing, mask_secrets
from firmware.screening import RequestScreen, Screening, server_hosts, trusted_hosts
from firmware.status import VERSION, account_report, call_report, status_report
from hal.debounce import ButtonLongPressed, ButtonPressed, ButtonReleased, LedPattern
from hal.gpio import DOUBLE_FLASH, FAST_BLINK, HEARTBEAT, SLOW_BLINK, STEADY
from sipstack.account_config import INVALID_ID, RpidElement
from sipstack.account_events import IncomingMessage, MessageStatus, RegStateChanged, UaEvent
from sipstack.loop import Loop, TimerHandle
from sipstack.transport_base import Destination, Peer, is_ip_literal

if TYPE_CHECKING:
    from firmware.behaviour import Behaviour, BehaviourEvent, Command
    from hal.gpio import GpioBoard
    from hal.network import NetworkInfo
    from sipstack.calls import CallEvent, CallManager
    from sipstack.endpoint import IncomingRequest
    from sipstack.media_factory import RtpMediaFactory
    from sipstack.message import Request, Response
    from sipstack.resolver import Resolver
    from sipstack.timers import TimerConfig
    from sipstack.useragent import UserAgent

__all__ = ["App", "Screening", "LogRing", "mask_secrets", "VERSION"]

log = logging.getLogger("intercom")

_PATTERN_NAMES: dict[LedPattern | None, str] = {
    STEADY: "steady",
    SLOW_BLINK: "slow blink",
    FAST_BLINK: "fast blink",
    DOUBLE_FLASH: "double flash",
    HEARTBEAT: "heartbeat",
    None: "off",
}

# -- the application --------------------------------------------------------------------


class App:
    """The firmware: build with a :class:`Config`, :meth:`start`, :meth:`run`.

    ``hal`` overrides ``config.hal`` (``"sim"`` or ``"rpi"``); ``control_path``
    is the control socket (None: no socket, for tests that drive the App
    directly). ``bind`` is ``(host, first_port)`` for the built-in default,
    which moves to the next free port. ``screening`` defaults to "only our
    servers and ``[intercom] trusted`` IP hosts" with a file and to open
    without. ``on_ready`` runs once start-up is complete and ``on_heartbeat``
    every ``heartbeat_interval`` seconds while the loop turns (hooks for
    sd_notify READY=1 and WATCHDOG=1).
    """

    def __init__(
        self,
        config: Config,
        *,
        loop: Loop | None = None,
        hal: str | None = None,
        control_path: str | None = None,
        bind: tuple[str, int] = ("0.0.0.0", 5060),
        screening: Screening | None = None,
        timers: TimerConfig | None = None,
        resolver: Resolver | None = None,
        unregister_timeout: float = 2.0,
        heartbeat_interval: float = 5.0,
    ) -> None:
        self.config = config
        self.loop = loop if loop is not None else Loop()
        self._own_loop = loop is None
        self.hal = hal or config.hal
        if self.hal not in ("sim", "rpi"):
            raise ValueError(f"hal must be 'sim' or 'rpi', not {self.hal!r}")
        self.control_path = control_path
        self._bind = bind
        builtin = config.source == BUILTIN_SOURCE
        if screening is None:
            screening = Screening(open=builtin, allow=trusted_hosts(config))
        self.screen = RequestScreen(screening, self.loop.time)
        self._timers = timers
        self._resolver = resolver
        self.unregister_timeout = unregister_timeout
        self.heartbeat_interval = heartbeat_interval
        self.on_ready: Callable[[], None] | None = None
        self.on_heartbeat: Callable[[], None] | None = None
        self.started_at = time.monotonic()
        self.ua: UserAgent | None = None
        self.calls: CallManager | None = None
        self.media: RtpMediaFactory | None = None
        self.audio: AudioPath | None = None
        self.board: GpioBoard | None = None
        self.network: NetworkInfo | None = None
        self.behaviour: Behaviour | None = None
        self.control: ControlServer | None = None
        self.log_ring = LogRing(self.loop)
        self.ready = False
        self.failure: str | None = None
        self.ports: dict[str, int] = {}
        self.relay_pulses = 0
        self.leds: dict[str, str] = {}
        self.last_buttons: collections.deque[dict[str, Any]] = collections.deque(maxlen=10)
        self.cli_calls: set[int] = set()
        self._acc_settings: dict[int, Any] = {}
        self._reg_events: dict[int, RegStateChanged] = {}
        self._reg_seen: dict[str, tuple[str, int]] = {}  # REGISTER Call-ID -> received, rport
        self._inbox: collections.deque[BehaviourEvent] = collections.deque()
        self._busy = False
        self._behaviour_timer: TimerHandle | None = None
        self._net_timer: TimerHandle | None = None
        self._trace: list[ControlConnection] = []
        self._pending_messages: dict[object, ControlConnection] = {}
        self._closed = False

    # -- start-up -------------------------------------------------------------------------

    def start(self) -> None:
        """Bind transports and add accounts (the first REGISTER goes out on the
        loop's next turn), then build everything else on that same turn."""
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
        self._tap_transports()
        ua.endpoint.admit = self._admit
        ua.add_request_filter(self._filter)
        self._create_transports()
        if self.control_path is not None:
            # bound now, so a second instance on the same path fails start(), loudly
            self.control = ControlServer(self.loop, self.control_path, self._on_control)
            self.control.start()
        self._add_accounts()
        self.loop.call_soon(self._start_rest)

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

    def _add_accounts(self) -> None:
        assert self.ua is not None
        ua = self.ua
        tm = ua.endpoint.transports
        for settings in self.config.accounts:
            tid = INVALID_ID
            if settings.transport:
                found = tm.find(settings.transport)
                tid = found if found is not None else INVALID_ID
            if settings.local:
                if tid == INVALID_ID:
                    udp = tm.find("udp")
                    tid = udp if udp is not None else 0
                acc = ua.acc_add_local(tid)
            else:
                acc = ua.acc_add(settings.to_account_config(tid))
                self._trust_servers(settings)
            self._acc_settings[acc] = settings
        if (
            self.config.accounts
            and not any(not s.local for s in self.config.accounts)
            and not (self.screen.settings.open or self.screen.settings.allow)
        ):
            log.warning(
                "only local accounts and no allowed peers: every request will be refused; "
                'add [intercom] trusted = ["sip:*@192.168.1.20"] for the phones that may call'
            )

    def _trust_servers(self, settings: Any) -> None:
        """Admit requests from the account's registrar and proxies (RFC 3263 targets)."""
        from sipstack.uri import parse_uri

        for text in (settings.reg_uri, *settings.proxy):
            if not text:
                continue
            uri = parse_uri(text.strip().strip("<>"))
            host = uri.params.get("maddr") or uri.host
            transport = uri.transport
            secure = uri.scheme == "sips"
            if is_ip_literal(host):
                port = uri.port or (5061 if secure or transport == "tls" else 5060)
                self.screen.add_server(host, port)
                continue
            resolver = self.ua.endpoint.resolver if self.ua is not None else None
            if resolver is None:
                continue

            def found(result: object) -> None:
                if isinstance(result, list):
                    for target in result:
                        self.screen.add_server(target.address, target.port)

            try:
                resolver.locate(host, uri.port, transport, secure, found)
            except ValueError as exc:
                log.warning("cannot resolve %s for request screening: %s", host, exc)

    def _start_rest(self) -> None:
        """Calls, media, GPIO, behaviour, network: everything after the first REGISTER.

        It runs as a loop callback, whose exceptions the loop would swallow: a
        half-built firmware must not look alive, so a failure stops the loop and
        :meth:`run` reports it.
        """
        try:
            self._build_rest()
        except Exception as exc:
            log.critical("start-up failed: %s", exc, exc_info=True)
            self.failure = str(exc)
            self.loop.stop()

    def _build_rest(self) -> None:
        from firmware.behaviour import Behaviour
        from sipstack.calls import CallManager
        from sipstack.media_factory import RtpMediaFactory

        assert self.ua is not None
        config = self.config
        if self.ua.endpoint.resolver is None:
            # calls to names (sip:flat@example.com) need DNS; REGISTER did not
            self.ua.endpoint.resolver = _make_resolver(self.loop)
        self.audio = audio = AudioPath(self)
        udp = config.sip.udp
        host = udp.host if udp is not None and self.config.source != BUILTIN_SOURCE else "0.0.0.0"
        self.media = RtpMediaFactory(
            self.loop,
            host=host,
            address_of=self._media_address,
            conference=audio.conference,
            audio_slot=audio.audio_slot,
            ptime=config.audio.ptime,
        )
        self.calls = CallManager(self.ua, on_event=self._on_call_event, media=self.media)
        self.media.on_dtmf = self.calls.on_media_dtmf
        self._start_board()
        self._start_network()
        registering = [a for a, s in self._acc_settings.items() if not s.local]
        self.behaviour = Behaviour.from_config(
            config,
            now=self.loop.time(),
            call_account=registering[0] if registering else self.ua.acc_get_default(),
            accounts=registering,
        )
        self._run_commands()  # initial LED states
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

    def _start_board(self) -> None:
        gpio = self.config.gpio_config()
        if self.hal == "rpi":
            from hal.rpigpio import RpiGpioBoard

            board: GpioBoard = RpiGpioBoard(self.loop, gpio)
        else:
            from hal.sim import SimGpioBoard

            board = SimGpioBoard(self.loop, gpio)
        board.buttons.set_handler(self._on_button)
        self.board = board

    def _start_network(self) -> None:
        if self.hal == "rpi":
            from hal.netwatch import NetifacesWatcher

            network: NetworkInfo = NetifacesWatcher(self.loop)
        else:
            from hal.sim import SimNetwork

            network = SimNetwork(self.loop)
        network.set_handler(self._on_network_event)
        self.network = network

    def _media_address(self, call_id: int) -> str:
        """The address our SDP offers: the bound host, else the one our packets
        leave from toward the default account's registrar (or the default route).

        ``CallManager.call_get_info`` cannot answer this while the offer is being
        made (the session does not exist yet), so it is worked out here.
        """
        assert self.media is not None and self.ua is not None
        if self.media.host not in ("0.0.0.0", "::"):
            return self.media.host
        ua = self.ua
        remote = "192.0.2.1"  # TEST-NET: the kernel answers with the default-route address
        default = ua.acc_get_default()
        if ua.acc_is_valid(default):
            dest = ua.acc_get_account(default).reg_destination
            if dest is not None:
                remote = dest.host
        tm = ua.endpoint.transports
        udp = tm.find("udp")
        found = tm.local_address(udp if udp is not None else 0, remote)
        return found if found is not None else "127.0.0.1"  # no route at all: offline

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

    def run(self) -> int:
        """Start (if needed) and run until SIGTERM/SIGINT; then shut down gracefully."""
        if self.ua is None:
            self.start()

        def stop(signum: int, _frame: object) -> None:
            log.info("signal %d: shutting down", signum)
            self.loop.call_soon_threadsafe(self.loop.stop)

        previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
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
        if self.network is not None:
            self.network.close()
        if self.control is not None:
            self.control.close()
        logging.getLogger().removeHandler(self.log_ring)
        if self._own_loop:
            self.loop.close()
        log.info("intercom stopped")

    # -- screening ----------------------------------------------------------------------------

    def _admit(self, request: Request, peer: Peer) -> bool:
        if request.method == "ACK" or self.screen.trusted(peer) or self._in_our_dialog(request):
            return True
        return not self.screen.refuse(request, peer)

    def _filter(self, inc: IncomingRequest) -> Response | None:
        from sipstack.message import make_response

        if self.screen.trusted(inc.peer) or self._in_our_dialog(inc.request):
            return None
        return make_response(inc.request, 403, "Forbidden")

    def _in_our_dialog(self, request: Request) -> bool:
        """In-dialog requests of our calls (their Call-ID and tags cannot be guessed)."""
        calls = self.calls
        try:
            if calls is None or request.to.tag is None:
                return False
            call_id = request.call_id
        except Exception:
            return False
        return any(calls.call_get_info(c).sip_call_id == call_id for c in calls.enum_calls())

    # -- trace ------------------------------------------------------------------------------

    def _tap_transports(self) -> None:
        """See every SIP message in and out, for ``intercom trace`` and NAT checks.

        The transport manager has no tap hook yet; its ``on_message`` attribute
        and ``send_raw`` method are wrapped on this instance only.
        """
        assert self.ua is not None
        tm = self.ua.endpoint.transports
        deliver = tm.on_message
        send_raw = tm.send_raw

        def on_message(message: Request | Response, peer: Peer) -> None:
            self._note_incoming(message)
            if self._trace:
                where = f"{peer.transport}:{peer.host}:{peer.port}"
                self._trace_item("in", where, message.to_bytes())
            deliver(message, peer)

        def traced_send(data: bytes, dest: Destination, on_error: Any = None) -> None:
            if self._trace:
                self._trace_item("out", f"{dest.transport}:{dest.host}:{dest.port}", data)
            send_raw(data, dest, on_error)

        tm.on_message = on_message
        setattr(tm, "send_raw", traced_send)  # noqa: B010 - instance-level wrap, see docstring

    def _note_incoming(self, message: Request | Response) -> None:
        """Remember where registrars see us (RFC 3581 received/rport) for the NAT check."""
        from sipstack.message import Response

        if not isinstance(message, Response) or not 200 <= message.status < 300:
            return
        try:
            if message.cseq.method != "REGISTER":
                return
            via = message.top_via
            received, rport = via.received, via.rport
        except Exception:
            return
        if received is not None or rport is not None:
            self._reg_seen[message.call_id] = (received or via.host, rport or via.port or 5060)
            if len(self._reg_seen) > 64:
                self._reg_seen.pop(next(iter(self._reg_seen)))

    @property
    def trace_followers(self) -> int:
        """``intercom trace`` clients connected now."""
        return len(self._trace)

    def _trace_item(self, direction: str, where: str, data: bytes) -> None:
        item = {
            "time": time.time(),
            "dir": direction,
            "peer": where,
            "text": mask_secrets(data.decode("utf-8", "replace")),
        }
        for conn in list(self._trace):
            conn.push(item)

    # -- events in ----------------------------------------------------------------------------

    def post(self, event: BehaviourEvent) -> None:
        """Feed one event to the behaviour and carry out what it decides.

        Events that arrive while commands are being carried out (a call event
        raised inside ``call_make_call``) wait their turn, so the behaviour
        always learns of a call (:class:`CallPlaced`) before the call's events.
        """
        self._inbox.append(event)
        self._drain()

    def _drain(self) -> None:
        if self._busy or self.behaviour is None:
            return
        self._busy = True
        try:
            while self._inbox:
                self.behaviour.handle_event(self._inbox.popleft(), self.loop.time())
                self._run_commands()
        finally:
            self._busy = False
        self._arm_behaviour()
        if self.audio is not None:
            self.audio.update()

    def _arm_behaviour(self) -> None:
        if self._behaviour_timer is not None:
            self._behaviour_timer.cancel()
            self._behaviour_timer = None
        when = self.behaviour.get_timer() if self.behaviour is not None else None
        if when is not None and not self._closed:
            self._behaviour_timer = self.loop.call_at(when, self._on_behaviour_timer)

    def _on_behaviour_timer(self) -> None:
        self._behaviour_timer = None
        if self.behaviour is None or self._busy:
            return
        self._busy = True
        try:
            self.behaviour.handle_timer(self.loop.time())
            self._run_commands()
        finally:
            self._busy = False
        self._drain()

    def _on_button(self, event: object) -> None:
        if isinstance(event, ButtonPressed):
            self.last_buttons.append({"time": time.time(), "button": event.button})
            log.info("button %s pressed", event.button)
        if isinstance(event, ButtonPressed | ButtonReleased | ButtonLongPressed):
            self.post(event)

    def _on_network_event(self, event: object) -> None:
        log.info("network: %s", event)
        # A burst of netlink events becomes one re-registration.
        if self._net_timer is not None:
            self._net_timer.cancel()
        self._net_timer = self.loop.call_later(0.5, self._network_changed)

    def _network_changed(self) -> None:
        self._net_timer = None
        if self.ua is not None and not self._closed:
            self.ua.handle_network_change()

    def _on_ua_event(self, event: UaEvent) -> None:
        from firmware.behaviour import RegistrationChanged, RegStatus

        if isinstance(event, RegStateChanged):
            self._reg_events[event.acc_id] = event
            if event.is_registered:
                status = RegStatus.REGISTERED
            elif event.status in (401, 403, 404, 407) and event.state == "retry-wait":
                status = RegStatus.FAILED
            elif event.state == "unregistered":
                status = RegStatus.NOT_REGISTERED
            else:
                status = RegStatus.REGISTERING
            self._trust_destination(event.acc_id)
            self.post(RegistrationChanged(event.acc_id, event.is_registered, status))
        elif isinstance(event, IncomingMessage):
            text = event.body.decode("utf-8", "replace")[:200]
            log.info("message from %s: %s", event.from_uri, text)
        elif isinstance(event, MessageStatus):
            conn = self._pending_messages.pop(event.token, None)
            if conn is not None:
                if event.status < 300:
                    conn.reply({"status": event.status, "reason": event.reason})
                else:
                    conn.fail(f"message to {event.to_uri} refused: {event.status} {event.reason}")

    def _trust_destination(self, acc_id: int) -> None:
        assert self.ua is not None
        if self.ua.acc_is_valid(acc_id):
            dest = self.ua.acc_get_account(acc_id).reg_destination
            if dest is not None:
                self.screen.add_server(dest.host, dest.port)

    def _on_call_event(self, event: CallEvent) -> None:
        from firmware.behaviour import CallPhase, DtmfReceived, IncomingCall
        from firmware.behaviour import CallStateChanged as PhoneCallState
        from sipstack import calls as c

        if isinstance(event, c.IncomingCall):
            log.info("incoming call %d from %s", event.call_id, event.remote_uri)
            self.post(IncomingCall(event.call_id, event.remote_uri))
        elif isinstance(event, c.CallStateChanged):
            if event.state.value in ("disconnected",):
                self.cli_calls.discard(event.call_id)
                log.info("call %d ended: %d %s", event.call_id, event.code, event.reason)
            try:
                phase = CallPhase(event.state.value)
            except ValueError:
                return  # NULL / DISCONNECTING: nothing the behaviour acts on
            self.post(PhoneCallState(event.call_id, phase, event.code))
        elif isinstance(event, c.DtmfDigit):
            self.post(DtmfReceived(event.call_id, event.digit))
        elif isinstance(event, c.CallMediaState) and self.audio is not None:
            self.audio.update()

    # -- commands out -------------------------------------------------------------------------

    def _run_commands(self) -> None:
        assert self.behaviour is not None
        while commands := self.behaviour.drain_commands():
            for command in commands:
                try:
                    self._execute(command)
                except Exception:
                    log.exception("carrying out %r failed", command)

    def _execute(self, command: Command) -> None:
        from firmware.behaviour import (
            Answer,
            CallPlaced,
            Hangup,
            Log,
            MakeCall,
            PlayTone,
            PulseRelay,
            ShowLed,
            StopTone,
        )

        assert self.behaviour is not None
        if isinstance(command, MakeCall):
            assert self.calls is not None
            try:
                call_id = self.calls.call_make_call(command.acc, command.target)
            except Exception as exc:
                log.warning("cannot call %s: %r", command.target, exc, exc_info=True)
                placed = CallPlaced(command.ref, None, str(exc))
            else:
                placed = CallPlaced(command.ref, call_id)
            self.behaviour.handle_event(placed, self.loop.time())
        elif isinstance(command, Answer):
            assert self.calls is not None
            self.calls.call_answer(command.call_id, command.code)
        elif isinstance(command, Hangup):
            assert self.calls is not None
            if self.calls.call_is_active(command.call_id):
                if command.code:
                    self.calls.call_hangup(command.call_id, command.code)
                else:
                    self.calls.call_hangup(command.call_id)
        elif isinstance(command, PulseRelay):
            assert self.board is not None
            for relay in self.board.relays.values():
                relay.pulse(command.seconds)
            self.relay_pulses += 1
        elif isinstance(command, ShowLed):
            assert self.board is not None
            self.leds[command.name] = _PATTERN_NAMES.get(command.pattern, "pattern")
            if command.pattern is None:
                self.board.leds.off(command.name)
            else:
                self.board.leds.show(command.name, command.pattern)
        elif isinstance(command, PlayTone):
            if self.audio is not None:
                active = self.behaviour.active_call
                slot = self.media.slot(active) if self.media and active is not None else None
                self.audio.play(command.kind, slot)
        elif isinstance(command, StopTone):
            if self.audio is not None:
                self.audio.stop_tone()
        elif isinstance(command, Log):
            log.log(logging.getLevelName(command.level.upper()), "%s", command.msg)

    # -- the control socket ---------------------------------------------------------------------

    def _on_control(self, cmd: str, args: dict[str, Any], conn: ControlConnection) -> None:
        if not self.ready:
            raise ControlError("the firmware is still starting; try again")
        simple: dict[str, Callable[[dict[str, Any]], object]] = {
            "status": lambda a: self.status(),
            "call": lambda a: self.cli_call(str(a["uri"]), a.get("account")),
            "answer": lambda a: self.cli_button("answer"),
            "hangup": lambda a: self.cli_hangup(),
            "press": lambda a: self.press(str(a["name"])),
            "dtmf": lambda a: self.cli_dtmf(str(a["digits"])),
            "presence": lambda a: self.cli_presence(bool(a["online"]), a.get("note")),
        }
        if cmd in simple:
            try:
                result = simple[cmd](args)
            except KeyError as exc:
                raise ControlError(f"{cmd}: missing argument {exc}") from None
            conn.reply(result)
        elif cmd == "log":
            conn.reply(list(self.log_ring.records)[-int(args.get("lines", 200)) :])
        elif cmd == "follow":
            conn.start_stream()
            for item in list(self.log_ring.records)[-int(args.get("lines", 20)) :]:
                conn.push(item)
            self._subscribe(self.log_ring.followers, conn)
        elif cmd == "trace":
            conn.start_stream()
            self._subscribe(self._trace, conn)
        elif cmd == "message":
            self.cli_message(str(args["uri"]), str(args["text"]), conn)
        elif cmd == "audio-test":
            self.audio_test(float(args.get("seconds", 2.0)), conn)
        elif cmd == "doctor":
            self.doctor(conn.reply)
        else:
            raise ControlError(f"unknown command {cmd!r}")

    @staticmethod
    def _subscribe(group: list[ControlConnection], conn: ControlConnection) -> None:
        group.append(conn)

        def gone() -> None:
            if conn in group:
                group.remove(conn)

        conn.on_close = gone

    # -- what the CLI can do ---------------------------------------------------------------------

    def press(self, name: str) -> str:
        """Press and release button ``name`` as if by hand, on any backend, through
        the behaviour (not the pins: a Pi's inputs cannot be driven from here)."""
        names = [b.name for b in self.config.buttons]
        if name not in names:
            raise ControlError(
                f"no button named {name!r} (configured: {', '.join(names) or 'none'})"
            )
        now = self.loop.time()
        self.last_buttons.append({"time": time.time(), "button": name, "simulated": True})
        log.info("button %s pressed (simulated)", name)
        self.post(ButtonPressed(name, now))
        self.post(ButtonReleased(name, now, 0.1, False))
        return f"pressed {name}"

    def cli_button(self, action: str) -> str:
        """Press the first button with ``action`` (answer / hangup)."""
        for button in self.config.buttons:
            if button.action == action:
                return self.press(button.name)
        raise ControlError(f'no button with action = "{action}" is configured')

    def cli_hangup(self) -> str:
        assert self.behaviour is not None and self.calls is not None
        ended = []
        if self.behaviour.state.value != "idle":
            if any(b.action == "hangup" for b in self.config.buttons):
                self.cli_button("hangup")
                ended.append("pressed hangup")
            else:
                for call in (self.behaviour.active_call, self.behaviour.ringing_call):
                    if call is not None and self.calls.call_is_active(call):
                        self.calls.call_hangup(call)
                        ended.append(f"call {call}")
        for call in sorted(self.cli_calls):
            if self.calls.call_is_active(call):
                self.calls.call_hangup(call)
                ended.append(f"call {call}")
        if not ended:
            raise ControlError("no call to hang up")
        return "hung up: " + ", ".join(ended)

    def cli_call(self, uri: str, account: object = None) -> dict[str, Any]:
        assert self.ua is not None and self.calls is not None
        acc = self.ua.acc_get_default() if account is None else int(str(account))
        if not self.ua.acc_is_valid(acc):
            raise ControlError(f"no account {acc} (see intercom status)")
        try:
            call_id = self.calls.call_make_call(acc, uri)
        except Exception as exc:
            raise ControlError(f"cannot call {uri}: {exc}") from None
        self.cli_calls.add(call_id)
        return {"call": call_id, "account": acc, "uri": uri}

    def cli_dtmf(self, digits: str) -> str:
        assert self.calls is not None and self.behaviour is not None
        call = self.behaviour.active_call
        if call is None or not self.calls.call_is_active(call):
            confirmed = [
                c
                for c in self.calls.enum_calls()
                if self.calls.call_get_info(c).state.value == "confirmed"
            ]
            call = confirmed[0] if confirmed else None
        if call is None:
            raise ControlError("no connected call to send DTMF in")
        try:
            self.calls.call_dial_dtmf(call, digits)
        except ValueError as exc:
            raise ControlError(str(exc)) from None
        return f"sent {len(digits)} digit(s) in call {call}"

    def cli_message(self, uri: str, text: str, conn: ControlConnection) -> None:
        assert self.ua is not None
        token = object()
        self._pending_messages[token] = conn
        try:
            self.ua.im_send(self.ua.acc_get_default(), uri, text, token=token)
        except Exception as exc:
            self._pending_messages.pop(token, None)
            raise ControlError(f"cannot send to {uri}: {exc}") from None

    def cli_presence(self, online: bool, note: object) -> str:
        assert self.ua is not None
        rpid = RpidElement(note=str(note) if note else None)
        for acc in self.ua.enum_accs():
            self.ua.acc_set_online_status2(acc, online, rpid)
        return (
            f"presence {'online' if online else 'offline'} on {len(self.ua.enum_accs())} account(s)"
        )

    def audio_test(self, seconds: float, conn: ControlConnection) -> None:
        """Play a 1 kHz tone to the speaker for ``seconds``, watch both levels."""
        from firmware.behaviour import ToneKind
        from sipstack.tones import ToneSegment, ToneSpec

        audio, calls = self.audio, self.calls
        assert audio is not None and calls is not None
        if calls.call_get_count():
            raise ControlError("a call is up: try the audio test when idle")
        seconds = min(max(seconds, 0.2), 10.0)
        peaks = {"mic": 0, "speaker": 0}
        audio.hold += 1
        audio.play(ToneKind.RING, None)  # routes the tone port to the speaker
        audio.tones.play(ToneSpec("test 1 kHz", (ToneSegment((1000,), 1000, -12.0),)))
        end = self.loop.time() + seconds

        def sample() -> None:
            levels = audio.conference.levels(audio.audio_slot)
            peaks["mic"] = max(peaks["mic"], levels.rx)
            peaks["speaker"] = max(peaks["speaker"], levels.tx)
            if self.loop.time() < end and not self._closed:
                self.loop.call_later(0.05, sample)
                return
            audio.hold -= 1
            audio.stop_tone()
            conn.reply(
                {
                    "tone_hz": 1000,
                    "seconds": seconds,
                    "device": audio.device,
                    "speaker_peak_dbfs": dbfs(peaks["speaker"]),
                    "mic_peak_dbfs": dbfs(peaks["mic"]),
                }
            )

        self.loop.call_later(0.05, sample)

    # -- status ------------------------------------------------------------------------------

    def account_status(self, acc: int) -> dict[str, Any]:
        """One account as ``intercom status`` shows it."""
        assert self.ua is not None
        return account_report(
            self.ua, acc, self._acc_settings.get(acc), self._reg_events.get(acc), self._reg_seen
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
