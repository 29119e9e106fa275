"""The configuration's data model: one frozen dataclass per section of the file.

:class:`Config` is a whole, validated configuration as
:func:`firmware.config.load_config` builds it (that module reads and checks
the file and re-exports every name here). Conversions to the lower layers'
configuration (:meth:`AccountSettings.to_account_config`,
:meth:`Config.gpio_config`, :meth:`AudioSettings.to_audio_config`) live next
to the settings they convert.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from hal.gpio_config import ButtonConfig, GpioConfig, LedConfig, Pull, RelayConfig
from sipstack.account_config import INVALID_ID, AccountConfig
from sipstack.digest import CredentialInfo
from sipstack.records import dataclass

if TYPE_CHECKING:
    from hal.audio import AudioConfig
    from hal.voice import VoiceConfig
    from sipstack.srtp import SrtpPolicy

__all__ = [
    "BUILTIN_SOURCE",
    "BUTTON_ACTIONS",
    "LED_SHOWS",
    "MAX_RELAY_PULSE",
    "NETWORK_WATCHES",
    "PROFILES",
    "REFUSE_MODES",
    "SRTP_MODES",
    "TRANSPORTS",
    "AccountSettings",
    "AudioSettings",
    "ButtonSettings",
    "Config",
    "IntercomSettings",
    "LedSettings",
    "ListenAddress",
    "NetworkSettings",
    "RelaySettings",
    "SipSettings",
    "default_config",
    "parse_listen",
]

#: :attr:`Config.source` of the built-in default.
BUILTIN_SOURCE = "<built-in default>"

BUTTON_ACTIONS = ("call", "answer", "hangup", "speed_dial", "door")
LED_SHOWS = ("status", "ringing", "call")
PROFILES = ("intercom", "desk")
TRANSPORTS = ("udp", "tcp", "tls")
REFUSE_MODES = ("403", "drop")  # firmware.screening.Screening.refuse
MAX_RELAY_PULSE = 30.0  # hal.gpio.RelayConfig.max_pulse: strikes overheat
SRTP_MODES = ("disabled", "optional", "mandatory")  # sipstack.srtp.SrtpMode values
NETWORK_WATCHES = ("auto", "kernel", "sim")  # NetworkSettings.watch


@dataclass(frozen=True, slots=True)
class ListenAddress:
    """Where a transport listens; port 0 lets the system choose."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_listen(value: str) -> ListenAddress | None:
    """``"host:port"`` / ``"[v6]:port"`` as a :class:`ListenAddress`; None if malformed."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]\s]+):(\d{1,5})", value)
    if m is None:
        return None
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    return ListenAddress(host, port) if port <= 65535 else None


@dataclass(frozen=True, slots=True)
class SipSettings:
    """``[sip]``: transports (None = disabled), TLS files, User-Agent header, and
    request screening (:class:`firmware.screening.Screening`): ``allow`` extra
    peers (``"address"``, ``"address:port"``, ``"network/length"``), ``refuse``
    strangers with ``"403"`` or ``"drop"`` them unanswered."""

    udp: ListenAddress | None = ListenAddress("0.0.0.0", 5060)
    tcp: ListenAddress | None = ListenAddress("0.0.0.0", 5060)
    tls: ListenAddress | None = None
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    user_agent: str = "intercom-firmware"
    allow: tuple[str, ...] = ()
    refuse: str = "403"

    def enabled(self) -> tuple[str, ...]:
        """The names of the enabled transports."""
        return tuple(t for t in TRANSPORTS if getattr(self, t) is not None)


@dataclass(frozen=True, slots=True)
class AccountSettings:
    """One ``[[accounts]]`` entry; keys are named as in :class:`AccountConfig`.

    ``local`` accounts are userless (``sip:ADDRESS:PORT``) and take only
    ``transport``, ``priority`` and the SRTP keys. ``transport`` is "" for any.
    ``line`` is where the entry starts, for messages at run time.
    ``use_srtp`` and ``srtp_secure_signaling`` are PJSUA's account settings of
    those names (:meth:`srtp_policy`); the firmware applies them per call.
    """

    line: int
    local: bool = False
    id: str = ""
    reg_uri: str = ""
    proxy: tuple[str, ...] = ()
    cred_info: tuple[CredentialInfo, ...] = ()
    reg_timeout: int = 300
    reg_retry_interval: int = 300
    reg_first_retry_interval: int = 0
    reg_delay_before_refresh: int = 5
    unreg_timeout: float = 4.0
    reg_use_proxy: int = 3
    contact_params: str = ""
    contact_uri_params: str = ""
    allow_contact_rewrite: bool = True
    allow_via_rewrite: bool = True
    ka_interval: int = 15
    publish_enabled: bool = False
    priority: int = 0
    transport: str = ""
    use_rfc5626: bool = False
    use_srtp: str = "disabled"
    srtp_secure_signaling: int = 1

    def srtp_policy(self) -> SrtpPolicy:
        """The media layer's SRTP policy for this account's calls.

        PJSUA's meanings: ``use_srtp`` says whether media must, may or must not
        be SRTP; ``srtp_secure_signaling`` what SIP transport the SDES keys
        (RFC 4568, in clear in the SDP) may travel on: 0 any, 1 TLS to the next
        hop (the default), 2 ``sips:`` end to end (RFC 3261 26.2.2).
        """
        from sipstack.srtp import SecureSignaling, SrtpMode, SrtpPolicy

        return SrtpPolicy(SrtpMode(self.use_srtp), SecureSignaling(self.srtp_secure_signaling))

    def to_account_config(self, transport_id: int = INVALID_ID) -> AccountConfig:
        """The user agent's configuration; ``transport_id`` is the transport the
        firmware created for :attr:`transport` (the config cannot know its id)."""
        if self.local:
            raise ValueError(f"account at line {self.line} is local: use acc_add_local")
        return AccountConfig(
            id=self.id,
            reg_uri=self.reg_uri,
            proxy=list(self.proxy),
            cred_info=list(self.cred_info),
            reg_timeout=self.reg_timeout,
            reg_retry_interval=self.reg_retry_interval,
            reg_first_retry_interval=self.reg_first_retry_interval,
            reg_delay_before_refresh=self.reg_delay_before_refresh,
            unreg_timeout=self.unreg_timeout,
            reg_use_proxy=self.reg_use_proxy,
            contact_params=self.contact_params,
            contact_uri_params=self.contact_uri_params,
            allow_contact_rewrite=self.allow_contact_rewrite,
            allow_via_rewrite=self.allow_via_rewrite,
            ka_interval=self.ka_interval,
            publish_enabled=self.publish_enabled,
            priority=self.priority,
            transport_id=transport_id,
            use_rfc5626=self.use_rfc5626,
        )


@dataclass(frozen=True, slots=True)
class AudioSettings:
    """``[audio]``: ALSA devices, rate and framing, voice processing, volume (0-100)."""

    capture_device: str = "default"
    playback_device: str = "default"
    sample_rate: int = 8000
    ptime: int = 20
    buffer_periods: int = 4
    echo_cancel: bool = True
    noise_suppression: bool = True
    agc: bool = True
    volume: int | None = None

    def to_audio_config(self) -> AudioConfig:
        """The hardware layer's device configuration."""
        from hal.audio import AudioConfig  # only when audio starts: keeps start-up lean

        return AudioConfig(
            sample_rate=self.sample_rate,
            ptime_ms=self.ptime,
            buffer_periods=self.buffer_periods,
            prefill_periods=min(2, self.buffer_periods - 1),
            capture_device=self.capture_device,
            playback_device=self.playback_device,
        )

    def to_voice_config(self) -> VoiceConfig:
        """The voice chain's configuration (echo canceller, denoiser, AGC)."""
        from hal.voice import VoiceConfig

        return VoiceConfig(
            echo_cancel=self.echo_cancel, noise_suppression=self.noise_suppression, agc=self.agc
        )


@dataclass(frozen=True, slots=True)
class ButtonSettings:
    """One ``[[buttons]]``: ``targets`` for ``call`` / ``speed_dial``; ``source`` its line."""

    name: str
    bcm: int
    action: str
    source: str
    targets: tuple[str, ...] = ()
    pull: Pull = Pull.UP
    active_low: bool = True
    debounce: float = 0.03
    long_press: float | None = 1.5


@dataclass(frozen=True, slots=True)
class LedSettings:
    """One ``[[leds]]``; ``shows`` is ``status``, ``ringing`` or ``call``."""

    name: str
    bcm: int
    shows: str
    source: str
    active_high: bool = True


@dataclass(frozen=True, slots=True)
class RelaySettings:
    """``[relay]``: the door opener, pulsed for ``pulse_seconds``."""

    bcm: int
    source: str
    pulse_seconds: float = 3.0
    active_high: bool = True
    name: str = "door"


@dataclass(frozen=True, slots=True)
class IntercomSettings:
    """``[intercom]``: what the device does (see :mod:`firmware.behaviour`).

    ``max_call_seconds`` 0 means no limit. ``door_code`` "" means DTMF never
    opens the door; ``door_code_from`` empty means "the trusted callers".
    """

    profile: str = "intercom"
    auto_answer: bool = False
    trusted: tuple[str, ...] = ()
    door_code: str = ""
    door_code_from: tuple[str, ...] = ()
    hangup_after_door: bool = False
    max_call_seconds: int = 0
    bell_during_call: str = "ignore"
    ring_mode: str = "sequential"
    ring_timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class NetworkSettings:
    """``[network]``: how address and link changes are noticed.

    ``watch``: ``"kernel"`` reads rtnetlink (:class:`hal.netwatch.NetifacesWatcher`,
    needs ``netifaces``), ``"sim"`` is the simulated network that only changes
    from code, ``"auto"`` the kernel's with ``hal = "rpi"`` and the simulated one
    with ``hal = "sim"`` (a simulated device stays deterministic unless asked).
    """

    watch: str = "auto"

    def watcher_for(self, hal: str) -> str:
        """``"kernel"`` or ``"sim"``: what ``watch`` means on hardware ``hal``."""
        if self.watch != "auto":
            return self.watch
        return "kernel" if hal == "rpi" else "sim"


@dataclass(frozen=True, slots=True)
class Config:
    """A whole, validated configuration. ``source`` is the file it came from."""

    source: str = BUILTIN_SOURCE
    hal: str = "rpi"
    sip: SipSettings = SipSettings()
    accounts: tuple[AccountSettings, ...] = ()
    audio: AudioSettings = AudioSettings()
    buttons: tuple[ButtonSettings, ...] = ()
    leds: tuple[LedSettings, ...] = ()
    relay: RelaySettings | None = None
    intercom: IntercomSettings = IntercomSettings()
    network: NetworkSettings = NetworkSettings()
    secrets: str = ""

    def gpio_config(self) -> GpioConfig:
        """The hardware layer's pin configuration, each entry labelled with its line."""
        return GpioConfig(
            buttons=tuple(
                ButtonConfig(
                    b.name,
                    b.bcm,
                    b.source,
                    pull=b.pull,
                    active_low=b.active_low,
                    debounce=b.debounce,
                    long_press=b.long_press,
                )
                for b in self.buttons
            ),
            leds=tuple(LedConfig(x.name, x.bcm, x.source, x.active_high) for x in self.leds),
            relays=()
            if self.relay is None
            else (
                RelayConfig(
                    self.relay.name,
                    self.relay.bcm,
                    self.relay.source,
                    self.relay.active_high,
                    max_pulse=MAX_RELAY_PULSE,
                ),
            ),
        )


def default_config() -> Config:
    """What runs with no config file: simulated hardware, one local account,
    UDP and TCP on 5060 (the runner moves to the next free port), a desk-phone
    profile so an incoming call rings and ``intercom answer`` takes it."""
    return Config(
        source=BUILTIN_SOURCE,
        hal="sim",
        accounts=(AccountSettings(line=0, local=True),),
        buttons=(
            ButtonSettings("answer", 17, "answer", f"{BUILTIN_SOURCE} answer"),
            ButtonSettings("hangup", 27, "hangup", f"{BUILTIN_SOURCE} hangup"),
        ),
        leds=(LedSettings("status", 22, "status", f"{BUILTIN_SOURCE} status"),),
        intercom=IntercomSettings(profile="desk"),
    )
