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
* the network watcher (re-register on address change), the request screen
  (below), the in-memory log ring, the SIP trace tap and the control socket.

Safe by default (SIP scanners ring exposed devices at night): with a config
file, requests are admitted only from the registrars and proxies of the
configured accounts (their resolved addresses; UDP by address and port, TCP/TLS
by address, whose source cannot be spoofed without a handshake), from
explicitly allowed peers (``allow`` entries, and IP-literal hosts of
``[intercom] trusted`` / ``door_code_from``) and within dialogs we already
have. Everything else is answered 403 or dropped (:class:`Screening`),
counted, and a source that keeps trying is dropped silently. Only the built-in
default (no file) is open, as the README promises a new user.

Start-up is ordered for speed: the user agent and accounts come first so the
first REGISTER leaves on the loop's first turn; calls, media, GPIO and the
control socket are built right after it (on the same turn), importing only
what the chosen backend needs.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import logging
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from firmware.config import BUILTIN_SOURCE, Config
from firmware.control import ControlConnection, ControlError, ControlServer
from hal.debounce import ButtonLongPressed, ButtonPressed, ButtonReleased, LedPattern
from hal.gpio import DOUBLE_FLASH, FAST_BLINK, HEARTBEAT, SLOW_BLINK, STEADY
from sipstack.account_config import INVALID_ID, RpidElement
from sipstack.account_events import IncomingMessage, MessageStatus, RegStateChanged, UaEvent
from sipstack.loop import Loop, TimerHandle
from sipstack.transport_base import Destination, Peer, is_ip_literal

if TYPE_CHECKING:
    from firmware.behaviour import Behaviour, BehaviourEvent, Command, ToneKind
    from hal.gpio import GpioBoard
    from hal.network import NetworkInfo
    from sipstack.calls import CallEvent, CallManager
    from sipstack.endpoint import IncomingRequest
    from sipstack.media_factory import RtpMediaFactory
    from sipstack.media_graph import Conference, MediaClock
    from sipstack.message import Request, Response
    from sipstack.resolver import Resolver
    from sipstack.timers import TimerConfig
    from sipstack.tones import ToneGenerator, ToneSpec
    from sipstack.useragent import UserAgent
    from sipstack.wav_io import WavRecorder

__all__ = ["App", "Screening", "LogRing", "mask_secrets", "VERSION"]

log = logging.getLogger("intercom")

VERSION = "0.1.0"
_PATTERN_NAMES: dict[LedPattern | None, str] = {
    STEADY: "steady",
    SLOW_BLINK: "slow blink",
    FAST_BLINK: "fast blink",
    DOUBLE_FLASH: "double flash",
    HEARTBEAT: "heartbeat",
    None: "off",
}

# -- secrets never leave the device ---------------------------------------------------

_SECRET_PATTERNS = (
    # RFC 3261 22.4 / RFC 7616: the digest response proves the password; mask it
    re.compile(r'(\bresponse\s*=\s*)("[^"]*"|[^\s,;]+)', re.I),
    re.compile(
        r'(\b(?:password|passwd|pass|pwd|secret|token)\s*[=:]\s*)("[^"]*"|[^\s,;&>]+)', re.I
    ),
    # RFC 3261 19.1.1: "sip:user:password@host" (deprecated, still seen)
    re.compile(r"(\bsips?:[^:@\s;>]+:)([^@\s;>]+)(?=@)", re.I),
)


def mask_secrets(text: str) -> str:
    """Replace digest responses and anything that looks like a password by ``***``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


# -- the log ring ----------------------------------------------------------------------


class LogRing(logging.Handler):
    """The last ``capacity`` log records, for ``intercom log``; live to followers.

    Records logged from other threads (the WAV writer) reach followers through
    the loop, so sockets are only touched on the loop thread.
    """

    def __init__(self, loop: Loop, capacity: int = 1000) -> None:
        super().__init__(logging.INFO)
        self.loop = loop
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self.followers: list[ControlConnection] = []
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record (masked) and send it to followers."""
        try:
            item = {
                "time": record.created,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": mask_secrets(record.getMessage()),
            }
        except Exception:
            self.handleError(record)
            return
        if threading.get_ident() == self._thread:
            self._deliver(item)
        else:
            self.loop.call_soon_threadsafe(lambda: self._deliver(item))

    def _deliver(self, item: dict[str, Any]) -> None:
        self.records.append(item)
        for conn in list(self.followers):
            conn.push(item)


# -- request screening ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Screening:
    """Who may send us requests (see the module docstring).

    ``refuse``: ``"403"`` answers strangers 403 Forbidden, ``"drop"`` ignores
    them (scanners learn nothing). ``allow``: extra peers, ``"host"``,
    ``"host:port"`` or ``"net/len"``. ``open``: admit everyone (the built-in
    default only). A source refused ``burst`` times within ``window`` seconds
    is then dropped silently until it stays quiet for a window.
    """

    refuse: str = "403"
    allow: tuple[str, ...] = ()
    open: bool = False
    burst: int = 5
    window: float = 60.0

    def __post_init__(self) -> None:
        if self.refuse not in ("403", "drop"):
            raise ValueError(f'screening refuse must be "403" or "drop", not {self.refuse!r}')


@dataclass
class _Refusals:
    """Counters for ``intercom status``."""

    total: int = 0
    forbidden: int = 0
    dropped: int = 0
    rate_limited: int = 0
    last: collections.deque[dict[str, Any]] = field(
        default_factory=lambda: collections.deque(maxlen=10)
    )


class _Screen:
    """The admission rule, with per-source rate limiting (bounded memory)."""

    MAX_SOURCES = 1024

    def __init__(self, settings: Screening, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self.udp: set[tuple[str, int]] = set()  # registrars/proxies by address and port
        self.hosts: set[str] = set()  # any port (streams, allowed hosts)
        self.stream_hosts: set[str] = set()  # registrars/proxies, for TCP/TLS
        self.nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.counts = _Refusals()
        self._recent: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict()
        )
        for entry in settings.allow:
            self.allow(entry)

    def allow(self, entry: str) -> None:
        """Admit ``host``, ``host:port`` (UDP exact) or ``net/len``."""
        if "/" in entry:
            self.nets.append(ipaddress.ip_network(entry, strict=False))
            return
        host, _, port = entry.rpartition(":") if entry.count(":") == 1 else ("", "", "")
        if host and port.isdigit():
            self.udp.add((host, int(port)))
            self.stream_hosts.add(host)
        else:
            self.hosts.add(entry.strip("[]"))

    def add_server(self, host: str, port: int) -> None:
        """A registrar or proxy address (resolved)."""
        self.udp.add((host, port))
        self.stream_hosts.add(host)

    def trusted(self, peer: Peer) -> bool:
        """Whether requests from ``peer`` are admitted without further questions."""
        if self.settings.open or peer.host in self.hosts:
            return True
        if peer.reliable:
            if peer.host in self.stream_hosts:
                return True
        elif (peer.host, peer.port) in self.udp:
            return True
        if self.nets:
            try:
                addr = ipaddress.ip_address(peer.host)
            except ValueError:
                return False
            return any(addr in net for net in self.nets)
        return False

    def refuse(self, request: Request, peer: Peer) -> bool:
        """Count a refusal; True when it must be dropped (mode, or rate limit)."""
        now = self._clock()
        counts = self.counts
        counts.total += 1
        times = self._recent.pop(peer.host, None) or collections.deque(maxlen=self.settings.burst)
        while times and now - times[0] > self.settings.window:
            times.popleft()
        limited = len(times) >= self.settings.burst
        times.append(now)
        self._recent[peer.host] = times
        while len(self._recent) > self.MAX_SOURCES:
            self._recent.popitem(last=False)
        drop = limited or self.settings.refuse == "drop"
        if limited:
            counts.rate_limited += 1
        elif drop:
            counts.dropped += 1
        else:
            counts.forbidden += 1
        counts.last.append(
            {
                "time": time.time(),
                "source": f"{peer.transport}:{peer.host}:{peer.port}",
                "method": request.method,
                "action": "rate-limited" if limited else ("dropped" if drop else "403"),
            }
        )
        if counts.total <= 3 or counts.total % 100 == 0:
            log.warning(
                "refused %s from %s:%s:%d (not a registrar, proxy or allowed peer; %d so far)",
                request.method,
                peer.transport,
                peer.host,
                peer.port,
                counts.total,
            )
        return drop


# -- tones ---------------------------------------------------------------------------


def _tone_specs(region: str = "EU") -> dict[ToneKind, ToneSpec]:
    from firmware.behaviour import ToneKind
    from sipstack.tones import TONE_PLANS, ToneSegment, ToneSpec

    plan = TONE_PLANS[region]

    def times(spec: ToneSpec, n: int) -> ToneSpec:
        return ToneSpec(spec.name, spec.segments * n, repeat=False)

    beep = (ToneSegment((1400,), 120, -12.0), ToneSegment((), 80))
    return {
        ToneKind.RING: plan.ring,
        ToneKind.RINGBACK: plan.ringback,
        ToneKind.CALL_WAITING: plan.call_waiting,
        ToneKind.BUSY: times(plan.busy, 3),
        ToneKind.DOOR_OPENED: ToneSpec("door opened", beep * 3, repeat=False),
        ToneKind.WRONG_CODE: ToneSpec("wrong code", (ToneSegment((400,), 500, -12.0),), False),
    }


_INTO_CALL = frozenset({"door opened", "wrong code"})  # ToneKind values: for the caller


class _NullSink:
    """A loudspeaker nobody hears."""

    def write(self, frame: bytes, now: float) -> None:
        """Discard the frame."""


class _SimDevice:
    """The simulated device port: a tone or WAV clip as microphone, a recorder as speaker.

    ``[audio] capture_device`` is ``"tone:HZ"``, ``"silence"``, a WAV path or
    ``"default"`` (a 1 kHz tone); ``playback_device`` a WAV path to record to,
    or ``"default"`` (heard by nobody, levels still measured).
    """

    def __init__(self, capture: str, playback: str, rate: int, frame: int) -> None:
        from sipstack.tones import ToneGenerator, ToneSegment, ToneSpec

        self.description = f"simulated (mic: {capture}, speaker: {playback})"
        self.source: Any = None
        if capture.startswith("tone:") or capture == "default":
            hz = 1000 if capture == "default" else int(capture[5:])
            gen = ToneGenerator(rate, frame)
            gen.play(ToneSpec(f"{hz} Hz", (ToneSegment((hz,), 1000),)))
            self.source = gen
        elif capture != "silence":
            from sipstack.wav_io import WavPlayer, load_wav

            self.source = WavPlayer(load_wav(capture, rate), frame, loop=True)
        self.recorder: WavRecorder | None = None
        self.sink: Any = _NullSink()  # still a sink, so the bridge measures speaker levels
        if playback != "default":
            from sipstack.wav_io import WavRecorder

            self.recorder = self.sink = WavRecorder(playback, rate)

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()
            self.recorder.wait_closed(2.0)


class _AudioPath:
    """Conference bridge, media clock, tone port and the device port.

    The clock runs only while something needs audio (a call, a tone, an audio
    test), so an idle door station spends no CPU on it.
    """

    def __init__(self, app: App) -> None:
        from sipstack.media_graph import Conference, MediaClock
        from sipstack.tones import ToneGenerator

        self.app = app
        cfg = app.config.audio
        self.rate = cfg.sample_rate
        frame = cfg.sample_rate * cfg.ptime // 1000
        self.conference: Conference = Conference(self.rate, frame)
        self.clock: MediaClock = MediaClock(cfg.ptime / 1000, self._tick)
        self.tones: ToneGenerator = ToneGenerator(self.rate, frame)
        self.specs = _tone_specs()
        self.tone_slot = self.conference.add_port("tones", self.tones, None)
        self.hold = 0  # audio tests running
        self.sim: _SimDevice | None = None
        self.alsa: Any = None
        self.voice: Any = None
        self._port: Any = None
        self.fault = ""
        if app.hal == "rpi":
            self._open_alsa()
        else:
            self.sim = _SimDevice(cfg.capture_device, cfg.playback_device, self.rate, frame)
            self.device = self.sim.description
            self.audio_slot = self.conference.add_port("device", self.sim.source, self.sim.sink)
        self.conference.connect(self.tone_slot, self.audio_slot)

    def _open_alsa(self) -> None:
        from firmware.behaviour import FaultChanged
        from hal.alsa import AlsaAudioDevice
        from hal.audio import AudioDeviceLost, AudioDeviceRestored
        from sipstack.media_graph import DevicePort

        cfg = self.app.config.audio
        audio_config = cfg.to_audio_config()

        def on_event(event: object) -> None:
            if isinstance(event, AudioDeviceLost):
                self.fault = f"{event.device} lost: {event.reason}"
                self.app.post(FaultChanged("audio", True))
            elif isinstance(event, AudioDeviceRestored):
                self.fault = ""
                self.app.post(FaultChanged("audio", False))

        self.alsa = AlsaAudioDevice(self.app.loop, audio_config, on_event=on_event)
        if cfg.volume is not None:
            try:
                self.alsa.set_volume(cfg.volume)
            except Exception as exc:
                log.warning("cannot set the loudspeaker volume: %s", exc)
        try:
            from hal.voice import VoiceProcessor

            self.voice = VoiceProcessor(audio_config, cfg.to_voice_config())
        except Exception as exc:  # libspeexdsp missing: run without, say so once
            log.warning("no echo cancellation / noise suppression: %s", exc)
        self._port = DevicePort()
        self.device = f"ALSA capture {cfg.capture_device!r}, playback {cfg.playback_device!r}"
        self.audio_slot = self.conference.add_port("device", self._port, self._port)

    # -- the clock -------------------------------------------------------------------

    def _tick(self, now: float) -> None:
        self.conference.tick(now)
        if self.clock.ticks % 25 == 0:
            self.app.loop.call_soon(self.update)

    def needed(self) -> bool:
        calls = self.app.calls
        return bool(self.tones.active or self.hold or (calls and calls.call_get_count()))

    def update(self) -> None:
        """Start or stop the clock as audio is needed or not."""
        from sipstack.media_graph import ClockMode

        running = self.clock.mode is not ClockMode.STOPPED
        if self.needed() and not running:
            if self.alsa is not None:
                capture, playback = self.alsa.capture, self.alsa.playback
                if self.voice is not None:
                    self.voice.reset()
                    capture, playback = (
                        _VoiceCapture(capture, self.voice),
                        _VoicePlayback(playback, self.voice),
                    )
                self.clock.start_device(capture, playback, self._port, self.app.loop.time)
            else:
                self.clock.start_timer(self.app.loop)
        elif running and not self.needed():
            self.clock.stop()

    # -- tones -----------------------------------------------------------------------

    def play(self, kind: ToneKind, call_slot: int | None) -> None:
        """Play a tone to the speaker, or into the call for the caller's feedback."""
        conf = self.conference
        for slot in list(conf.ports()):
            if slot != self.tone_slot and self.tone_slot in conf.connections(slot):
                conf.disconnect(self.tone_slot, slot)
        if kind.value in _INTO_CALL and call_slot is not None:
            conf.connect(self.tone_slot, call_slot)
        else:
            conf.connect(self.tone_slot, self.audio_slot)
        self.tones.play(self.specs[kind])
        self.update()

    def stop_tone(self) -> None:
        self.tones.stop()
        self.update()

    def close(self) -> None:
        self.clock.stop()
        if self.sim is not None:
            self.sim.close()
        if self.voice is not None:
            self.voice.close()
        if self.alsa is not None:
            self.alsa.close()


class _VoiceCapture:
    """A capture stream whose frames pass through the echo canceller first."""

    def __init__(self, inner: Any, voice: Any) -> None:
        self._inner, self._voice = inner, voice

    def start(self, on_frame: Callable[[bytes], object]) -> None:
        self._inner.start(self._voice.wrap_sink(on_frame))

    def stop(self) -> None:
        self._inner.stop()


class _VoicePlayback:
    """A playback stream that shows every frame to the echo canceller."""

    def __init__(self, inner: Any, voice: Any) -> None:
        self._inner, self._voice = inner, voice

    def start(self, source: Callable[[], bytes | None]) -> None:
        self._inner.start(self._voice.wrap_source(source))

    def stop(self) -> None:
        self._inner.stop()


def _dbfs(peak: int) -> float:
    import math

    return round(20 * math.log10(peak / 32768), 1) if peak > 0 else -120.0


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
            screening = Screening(open=builtin, allow=_trusted_hosts(config))
        self.screen = _Screen(screening, self.loop.time)
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
        self.audio: _AudioPath | None = None
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
            for h in _server_hosts(s)
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
        self.audio = audio = _AudioPath(self)
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
                    "speaker_peak_dbfs": _dbfs(peaks["speaker"]),
                    "mic_peak_dbfs": _dbfs(peaks["mic"]),
                }
            )

        self.loop.call_later(0.05, sample)

    # -- status ------------------------------------------------------------------------------

    def account_status(self, acc: int) -> dict[str, Any]:
        """One account as ``intercom status`` shows it."""
        assert self.ua is not None
        info = self.ua.acc_get_info(acc)
        settings = self._acc_settings.get(acc)
        event = self._reg_events.get(acc)
        account = self.ua.acc_get_account(acc)
        reg = account.registration
        out: dict[str, Any] = {
            "id": acc,
            "uri": info.uri,
            "local": bool(settings is not None and settings.local),
            "registrar": account.config.reg_uri,
            "registered": bool(event is not None and event.is_registered),
            "state": event.state if event is not None else ("local" if account.local else "idle"),
            "status": info.status,
            "reason": info.status_text,
            "expires": info.expires,
            "last_error": "",
            "config_line": settings.line if settings is not None else 0,
            "contact": str(reg.contact) if reg is not None else None,
            "seen_as": None,
        }
        if event is not None and not event.is_registered and event.status >= 300:
            out["last_error"] = f"{event.status} {event.reason} {event.note}".strip()
        if reg is not None and reg.call_id in self._reg_seen:
            host, port = self._reg_seen[reg.call_id]
            out["seen_as"] = f"{host}:{port}"
        return out

    def call_status(self, call_id: int) -> dict[str, Any]:
        """One call as ``intercom status`` shows it."""
        assert self.calls is not None
        info = self.calls.call_get_info(call_id)
        out: dict[str, Any] = {
            "id": call_id,
            "account": info.acc_id,
            "direction": "outgoing" if info.role.value == "uac" else "incoming",
            "remote": info.remote_uri,
            "state": info.state.value,
            "codec": info.codec,
            "media": info.media_status.value,
            "duration": round(info.connect_duration, 1),
            "loss": None,
            "jitter_ms": None,
        }
        stats = info.rtp_stats
        rtp = getattr(stats, "rtp", None)
        if rtp is not None:
            out["loss"] = round(rtp.cumulative_lost / rtp.expected, 4) if rtp.expected else 0.0
            out["jitter_ms"] = round(rtp.jitter * 1000, 1)
            out["packets_sent"], out["packets_received"] = rtp.packets_sent, rtp.packets_received
        return out

    def status(self) -> dict[str, Any]:
        """Everything ``intercom status`` shows (JSON-able)."""
        assert self.ua is not None and self.calls is not None and self.behaviour is not None
        board, audio = self.board, self.audio
        relays = {}
        if board is not None:
            relays = {
                name: {"on": relay.is_on, "pulses": self.relay_pulses}
                for name, relay in board.relays.items()
            }
        network: dict[str, Any] = {}
        if self.network is not None:
            snap = self.network.snapshot()
            network = {
                "addresses": sorted(
                    f"{a.interface} {a.address}" for a in snap.addresses if a.interface != "lo"
                ),
                "default_interface": self.network.default_interface(),
                "links_up": sorted(snap.links_up),
            }
        counts = self.screen.counts
        return {
            "version": VERSION,
            "config": self.config.source,
            "hal": self.hal,
            "uptime": round(time.monotonic() - self.started_at, 1),
            "ports": self.ports,
            "phone": self.behaviour.state.value,
            "led_state": self.behaviour.led_state.value,
            "accounts": [self.account_status(a) for a in self.ua.enum_accs()],
            "calls": [self.call_status(c) for c in self.calls.enum_calls()],
            "leds": dict(self.leds),
            "relays": relays,
            "buttons": list(self.last_buttons),
            "network": network,
            "audio": {
                "device": audio.device if audio else None,
                "clock": audio.clock.mode.value if audio else None,
                "fault": audio.fault if audio else "",
            },
            "screening": {
                "mode": "open" if self.screen.settings.open else self.screen.settings.refuse,
                "refused": counts.total,
                "forbidden": counts.forbidden,
                "dropped": counts.dropped,
                "rate_limited": counts.rate_limited,
                "last": list(counts.last),
            },
        }

    # -- doctor ------------------------------------------------------------------------------

    def doctor(self, reply: Callable[[object], None], dns_timeout: float = 3.0) -> None:
        """Check what usually goes wrong and say it in plain words; ``reply`` gets
        a list of ``{"check", "status": ok|warn|fail, "message", "advice"}``
        once the DNS look-ups are done (bounded by ``dns_timeout``)."""
        assert self.ua is not None
        checks: list[dict[str, str]] = []

        def add(check: str, status: str, message: str, advice: str = "") -> None:
            checks.append({"check": check, "status": status, "message": message, "advice": advice})

        if self.config.source == BUILTIN_SOURCE:
            add(
                "config",
                "warn",
                "running the built-in default: no config file, open to calls from anyone",
                "write /etc/intercom/intercom.toml (see the README) and restart",
            )
        else:
            add(
                "config",
                "ok",
                f"running {self.config.source} ({len(self.config.accounts)} account(s))",
            )
        for acc in self.ua.enum_accs():
            st = self.account_status(acc)
            if not st["local"]:
                add("registration", *_registration_words(st))
                nat = _nat_words(st)
                if nat is not None:
                    add("nat", *nat)
        add("audio", *self._audio_words())
        add("gpio", *self._gpio_words())
        add("clock", *_clock_words(time.time()))
        counts = self.screen.counts
        if counts.total:
            add(
                "screening",
                "ok",
                f"refused {counts.total} request(s) from unknown sources "
                f"({counts.rate_limited} rate-limited)",
                "normal on a device reachable from the internet; see `intercom status` for sources",
            )
        hosts = sorted(
            {h for s in self.config.accounts if not s.local for h in _server_hosts(s)}
            - {h for h in _hosts_of_literals(self.config)}
        )
        resolver = self.ua.endpoint.resolver
        if not hosts or resolver is None:
            reply(checks)
            return
        answers: dict[str, object] = {}
        done = {"sent": False}

        def finish() -> None:
            if done["sent"]:
                return
            done["sent"] = True
            for host in hosts:
                result = answers.get(host)
                if isinstance(result, list) and result:
                    add("dns", "ok", f"{host} resolves to {', '.join(map(str, result[:3]))}")
                elif host in answers:
                    add(
                        "dns",
                        "fail",
                        f"{host} does not resolve",
                        "check the name in reg_uri/proxy and the DNS server (resolvectl status)",
                    )
                else:
                    add(
                        "dns",
                        "fail",
                        f"no DNS answer for {host} within {dns_timeout:g} s",
                        "check the network and the DNS server (resolvectl status)",
                    )
            reply(checks)

        def answered(host: str, result: object) -> None:
            answers[host] = result
            if len(answers) == len(hosts):
                finish()

        for host in hosts:
            resolver.resolve_host(host, lambda r, h=host: answered(h, r))  # type: ignore[misc]
        self.loop.call_later(dns_timeout, finish)

    def _audio_words(self) -> tuple[str, str, str]:
        audio = self.audio
        if audio is None:
            return "fail", "no audio path", ""
        if audio.fault:
            return (
                "fail",
                f"audio device problem: {audio.fault}",
                "check the USB sound card / HAT and `aplay -l`; the firmware retries by itself",
            )
        if audio.alsa is not None and audio.voice is None:
            return (
                "warn",
                f"{audio.device}, without echo cancellation",
                "install libspeexdsp (apt install libspeexdsp1) for echo cancellation",
            )
        return "ok", audio.device, "run `intercom audio-test` to hear and measure it"

    def _gpio_words(self) -> tuple[str, str, str]:
        parts = [f"button {b.name} on BCM {b.bcm} ({b.action})" for b in self.config.buttons]
        parts += [f"LED {x.name} on BCM {x.bcm}" for x in self.config.leds]
        if self.config.relay is not None:
            parts.append(f"relay on BCM {self.config.relay.bcm}")
        if not parts:
            return (
                "warn",
                "no buttons, LEDs or relay configured",
                "add [[buttons]] to intercom.toml",
            )
        kind = "simulated pins" if self.hal == "sim" else "RPi.GPIO"
        return (
            "ok",
            f"{kind}: " + "; ".join(parts),
            "press each button and watch `intercom log -f` for 'button NAME pressed'",
        )


# -- helpers ------------------------------------------------------------------------------


def _trusted_hosts(config: Config) -> tuple[str, ...]:
    """IP-literal hosts in ``[intercom] trusted`` / ``door_code_from`` (no wildcards):
    the phones on the LAN that may call us directly."""
    hosts = []
    for pattern in (*config.intercom.trusted, *config.intercom.door_code_from):
        host = pattern.partition(":")[2].rpartition("@")[2]
        host = re.split(r"[;?>]", host, maxsplit=1)[0]
        if host.startswith("["):
            host = host[1 : host.find("]")]
        elif host.count(":") == 1:
            host = host.partition(":")[0]
        if "*" not in host and "?" not in host and is_ip_literal(host):
            hosts.append(host)
    return tuple(dict.fromkeys(hosts))


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


def _server_hosts(settings: Any) -> list[str]:
    from sipstack.uri import parse_uri

    hosts = []
    for text in (settings.reg_uri, *settings.proxy):
        if text:
            uri = parse_uri(text.strip().strip("<>"))
            hosts.append(uri.params.get("maddr") or uri.host)
    return hosts


def _hosts_of_literals(config: Config) -> set[str]:
    return {h for s in config.accounts if not s.local for h in _server_hosts(s) if is_ip_literal(h)}


def _who(uri: str) -> str:
    """``"Door" <sip:door@pbx.example.com>`` -> ``door@pbx.example.com``."""
    m = re.search(r"sips?:([^;>\s]+)", uri)
    return m.group(1) if m else uri


def _registration_words(st: dict[str, Any]) -> tuple[str, str, str]:
    """One account's registration, in plain words (status, message, advice)."""
    who, status, reason = _who(st["uri"]), st["status"], st["reason"]
    line = f" (config line {st['config_line']})" if st["config_line"] else ""
    if st["registered"]:
        return "ok", f"{who} is registered (renews in {max(st['expires'], 0)} s)", ""
    if status in (401, 407):
        return (
            "fail",
            f"the registrar refused the password for {who}: check [[accounts.cred_info]]{line}",
            "compare username and password with the PBX's extension settings; "
            'the realm must match or be "*"',
        )
    if status == 403:
        return (
            "fail",
            f"the registrar refused {who} (403 {reason}): "
            f"check the user name in [[accounts.cred_info]] and id{line}",
            "the PBX may also block this device's address (fail2ban, allowed networks)",
        )
    if status == 404:
        return "fail", f"the registrar does not know {who} (404){line}", "check id and reg_uri"
    if status == 408:
        return (
            "fail",
            f"no answer from the registrar of {who} ({st['registrar']})",
            "check reg_uri, the network, and firewalls between here and the PBX",
        )
    if status == 503:
        return (
            "fail",
            f"cannot reach the registrar of {who} ({st['registrar']}): {reason}",
            "check reg_uri and the transport (udp/tcp/tls) the PBX listens on",
        )
    if status >= 300:
        return "fail", f"the registrar answered {status} {reason} for {who}{line}", ""
    return "warn", f"{who} is still registering ({st['state']})", "wait a few seconds and retry"


def _nat_words(st: dict[str, Any]) -> tuple[str, str, str] | None:
    """RFC 3581: compare where the registrar sees us with what our Contact says."""
    seen, contact = st.get("seen_as"), st.get("contact")
    if not seen or not contact:
        return None
    m = re.search(r"@?([\w.\-]+|\[[0-9a-fA-F:.]+\]):(\d+)", contact.partition(":")[2])
    ours = f"{m.group(1)}:{m.group(2)}" if m else contact
    if ours == seen:
        return "ok", f"{_who(st['uri'])}: the registrar sees us where our Contact says ({seen})", ""
    return (
        "warn",
        f"{_who(st['uri'])}: the registrar sees us at {seen} but our Contact says {ours}: "
        "there is NAT between us",
        "keep allow_contact_rewrite = true; if audio is one-way, the router's SIP ALG or "
        "port forwarding is the usual suspect",
    )


def _clock_words(now: float) -> tuple[str, str, str]:
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    if now < 1704067200:  # 2024-01-01: the Pi has no battery-backed clock
        return (
            "fail",
            f"the clock says {when}: it was never set",
            "the Pi has no real-time clock: check network time (timedatectl status)",
        )
    return "ok", f"the clock says {when}", ""
