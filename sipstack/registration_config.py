"""The vocabulary of client registration (RFC 3261 section 10): configuration,
states, events, the digest collaborator it needs, the timing policy and how to
read a registrar's answer.

The machine itself is :class:`sipstack.registration.Registration`, which
re-exports every public name here. Configuration field names follow
``pjsua_acc_config`` so the account layer can hand its settings over one to one.
Addresses are given as text, the way a user writes them in the device's TOML
file; :class:`RegistrationConfig` checks them when it is built (a bad address is
the configuration's fault: ``ValueError`` naming the field), and offers the
parsed forms the state machine uses.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from typing import Protocol

from sipstack.errors import SipParseError, SipStackError
from sipstack.headers import NameAddr
from sipstack.message import Request, Response
from sipstack.records import dataclass
from sipstack.uri import URI, parse_uri

__all__ = [
    "Authenticator",
    "ContactRewritten",
    "RegistrationConfig",
    "RegistrationEvent",
    "RegistrationState",
    "RegistrationStateChanged",
    "RegistrationStateError",
    "RequestFailure",
    "apply_uri_params",
    "contact_address",
    "granted_expiry",
    "refresh_delay",
    "retry_after",
    "retry_delay",
    "seen_address",
]

_JITTER_CAP = 10.0  # seconds, as PJSUA


def _parse_params_text(text: str, what: str) -> dict[str, str | None]:
    """``";a=b;c"`` (PJSUA's format) -> ordered dict; ``ValueError`` if malformed."""
    text = text.strip()
    if not text:
        return {}
    if not text.startswith(";"):
        text = ";" + text
    try:
        # Reuse the real grammar: hang the parameters on a dummy address.
        return dict(NameAddr.parse(f"<sip:x.invalid>{text}").params)
    except SipParseError as exc:
        raise ValueError(
            f"RegistrationConfig.{what}: malformed parameters {text!r}: {exc}"
        ) from None


def apply_uri_params(uri: URI, uri_params: dict[str, str | None]) -> URI:
    """``uri`` with ``uri_params`` added (they win over params already present)."""
    if not uri_params:
        return uri
    return uri.replace(params={**uri.params, **uri_params})


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    """What one account needs to keep a binding at its registrar.

    * ``id``: the address-of-record, as a name-addr (``"Alice" <sip:alice@example.com>``);
      it goes in From and To (RFC 3261 10.2).
    * ``reg_uri``: the registrar's Request-URI, normally the domain only
      (``sip:example.com``; RFC 3261 10.2 forbids userinfo there, but we send what is
      configured rather than second-guess a registrar that wants it).
    * ``contact``: our Contact URI (``sip:alice@192.0.2.10:5060``);
      ``contact_uri_params`` are added inside it (``;ob``), ``contact_params`` after
      it as header parameters (``;+sip.instance="<urn:uuid:...>"``), both in PJSUA's
      ``;name=value`` text format.
    * ``reg_timeout``: the expiry we ask for, seconds (PJSUA ``REG_INTERVAL`` = 300).
    * ``reg_retry_interval``: wait after a failure before trying again, seconds;
      0 disables automatic retry (as in PJSUA).
    * ``reg_first_retry_interval``: the wait after the *first* failure of a series;
      0 means "same as ``reg_retry_interval``".
    * ``reg_delay_before_refresh``: refresh this many seconds before the granted
      expiry (see :func:`sipstack.registration.refresh_delay` for short grants).
    * ``unreg_timeout``: the most :meth:`Registration.stop` waits for the
      unregister answer, seconds (PJSUA's default is 4000 ms).
    * ``proxy``: the outbound route set, each a SIP URI; ``;lr`` is added when
      missing (RFC 3261 16.12.1.1: we only speak loose routing).
    * ``allow_contact_rewrite``: follow the registrar's received/rport (RFC 3581)
      when it differs from our Contact (PJSUA's default: on).
    * ``user_agent``, ``allow``, ``supported``: header values to add when non-empty.
    * ``max_forwards``: RFC 3261 8.1.1.6 recommends 70.
    * ``response_guard``: if no final response nor failure is reported for a
      REGISTER within this many seconds, the machine treats it as a timeout itself
      (a lost report must not leave a door station unregistered forever). It must
      exceed the transaction layer's Timer F (64*T1 = 32 s by default).
    * ``max_retry_after``: the most we honour of a Retry-After, seconds.
    """

    id: str
    reg_uri: str
    contact: str
    contact_params: str = ""
    contact_uri_params: str = ""
    reg_timeout: int = 300
    reg_retry_interval: int = 300
    reg_first_retry_interval: int = 0
    reg_delay_before_refresh: int = 5
    unreg_timeout: float = 4.0
    proxy: tuple[str, ...] = ()
    allow_contact_rewrite: bool = True
    user_agent: str = ""
    allow: tuple[str, ...] = ()
    supported: tuple[str, ...] = ()
    max_forwards: int = 70
    response_guard: float = 64.0
    max_retry_after: int = 3600

    def __post_init__(self) -> None:
        if self.reg_timeout < 1:
            raise ValueError(
                f"RegistrationConfig.reg_timeout must be >= 1 s, got {self.reg_timeout}"
            )
        for name in ("reg_retry_interval", "reg_first_retry_interval", "reg_delay_before_refresh"):
            if getattr(self, name) < 0:
                raise ValueError(f"RegistrationConfig.{name} must not be negative")
        if self.unreg_timeout <= 0 or self.response_guard <= 0:
            raise ValueError("RegistrationConfig.unreg_timeout and response_guard must be positive")
        if not 0 <= self.max_forwards <= 255:
            raise ValueError(f"RegistrationConfig.max_forwards out of range: {self.max_forwards}")
        if self.max_retry_after < 1:
            raise ValueError("RegistrationConfig.max_retry_after must be >= 1 s")
        # Parse everything once now so a typo fails at configuration time.
        self.aor()
        self.registrar()
        self.contact_uri()
        self.contact_header_params()
        self.route_set()

    def aor(self) -> NameAddr:
        """The address-of-record for From/To, without any tag."""
        try:
            addr = NameAddr.parse(self.id)
        except SipParseError as exc:
            raise ValueError(
                f"RegistrationConfig.id: not a SIP address {self.id!r}: {exc}"
            ) from None
        if addr.uri.scheme not in ("sip", "sips"):
            raise ValueError(f"RegistrationConfig.id: {self.id!r} is not a sip/sips address")
        addr.params.pop("tag", None)
        return addr

    def registrar(self) -> URI:
        """The REGISTER Request-URI."""
        return _parse_sip_uri(self.reg_uri, "reg_uri")

    def uri_params(self) -> dict[str, str | None]:
        """``contact_uri_params`` parsed."""
        return _parse_params_text(self.contact_uri_params, "contact_uri_params")

    def contact_uri(self) -> URI:
        """Our Contact URI with ``contact_uri_params`` applied."""
        return apply_uri_params(_parse_sip_uri(self.contact, "contact"), self.uri_params())

    def contact_header_params(self) -> dict[str, str | None]:
        """``contact_params`` parsed (``expires`` is ours to set, so it is dropped)."""
        params = _parse_params_text(self.contact_params, "contact_params")
        params.pop("expires", None)
        return params

    def route_set(self) -> list[NameAddr]:
        """The Route headers: each proxy with ``;lr`` (RFC 3261 8.1.1.1, 16.12.1.1)."""
        routes = []
        for i, text in enumerate(self.proxy):
            uri = _parse_sip_uri(text.strip().removeprefix("<").removesuffix(">"), f"proxy[{i}]")
            if "lr" not in uri.params:
                uri = uri.replace(params={**uri.params, "lr": None})
            routes.append(NameAddr(uri))
        return routes


def _parse_sip_uri(text: str, what: str) -> URI:
    try:
        uri = parse_uri(text.strip())
    except SipParseError as exc:
        raise ValueError(f"RegistrationConfig.{what}: bad URI {text!r}: {exc}") from None
    if uri.scheme not in ("sip", "sips"):
        raise ValueError(f"RegistrationConfig.{what}: {text!r} is not a sip/sips URI")
    return uri


# -- states, events, collaborators, timing policy ----------------------------------------


class RegistrationStateError(SipStackError, RuntimeError):
    """The caller used the registration in a way its state forbids (the caller's fault)."""


class RegistrationState(enum.Enum):
    """Where a registration stands (the machine's table is in :mod:`sipstack.registration`)."""

    UNREGISTERED = "unregistered"  # idle: never started, or stopped
    REGISTERING = "registering"  # a REGISTER is out and no binding is known to be valid
    REGISTERED = "registered"  # bound; a refresh is scheduled
    REFRESHING = "refreshing"  # bound; the refresh REGISTER is out
    RETRY_WAIT = "retry-wait"  # the last attempt failed; a retry is scheduled
    UNREGISTERING = "unregistering"  # stop(): expires=0 is out, bounded by unreg_timeout

    @property
    def is_bound(self) -> bool:
        """True in the states where a granted binding is known to be valid."""
        return self in (RegistrationState.REGISTERED, RegistrationState.REFRESHING)


class RequestFailure(enum.Enum):
    """Why a REGISTER got no final response, with the status PJSIP reports for it."""

    TIMEOUT = 408  # Timer F fired (RFC 3261 17.1.2.2)
    TRANSPORT_ERROR = 503  # the transport could not send it (RFC 3261 17.1.4)


@dataclass(frozen=True, slots=True)
class RegistrationStateChanged:
    """The registration moved from ``old`` to ``new``.

    ``status_code``/``status_text`` are the last final answer (408/503 made up for
    timeouts and transport errors, 0 before any answer); ``expires`` is the
    granted time when registered; ``retry_in`` the wait before the next attempt in
    RETRY_WAIT (None when retry is disabled); ``note`` says why, to log once.
    """

    old: RegistrationState
    new: RegistrationState
    status_code: int
    status_text: str
    expires: int | None
    retry_in: float | None
    note: str

    @property
    def is_registered(self) -> bool:
        """True when the new state holds a valid binding."""
        return self.new.is_bound


@dataclass(frozen=True, slots=True)
class ContactRewritten:
    """The registrar saw us at another address (RFC 3581); we re-register with it.

    ``old_contact`` gets ``expires=0`` in the same REGISTER that binds ``new_contact``.
    """

    old_contact: URI
    new_contact: URI
    note: str


RegistrationEvent = RegistrationStateChanged | ContactRewritten


class Authenticator(Protocol):
    """The digest collaborator (:class:`sipstack.digest.DigestAuthenticator` fits).

    ``handle_challenge`` learns a 401/407 or raises
    :class:`sipstack.digest.AuthenticationError` (wrong password, no credentials...);
    ``authorize`` puts the answers (pre-emptively, once learned) on a new request.
    """

    def handle_challenge(self, request: Request, response: Response) -> None:
        """Learn the challenges of ``response`` (401/407) to ``request``."""

    def authorize(self, request: Request) -> object:
        """Add Authorization / Proxy-Authorization to ``request`` if any are known."""


def refresh_delay(granted: float, delay_before_refresh: float) -> float:
    """Seconds after the REGISTER was built at which to refresh a grant of ``granted`` s.

    ``granted - delay_before_refresh``, but not earlier than ``granted / 2``.
    """
    return max(granted - delay_before_refresh, granted / 2)


def retry_delay(interval: float, rng: random.Random, *, only_later: bool = False) -> float:
    """``interval`` with jitter uniform in +/- min(10 s, interval/2).

    ``only_later`` keeps the jitter non-negative (for a server's Retry-After).
    """
    spread = min(_JITTER_CAP, interval / 2)
    if spread <= 0:
        return interval
    return interval + rng.uniform(0.0 if only_later else -spread, spread)


# -- reading the registrar's answer ---------------------------------------------------------


def _int_param(value: str | None) -> int | None:
    """A delta-seconds header parameter (``expires=300``, possibly quoted), or None."""
    if value is None:
        return None
    value = value.strip().strip('"')
    return int(value) if value.isdigit() and len(value) <= 10 else None


def _norm_host(host: str) -> str:
    """Hosts compared as addresses when they are IP literals (``::01`` == ``::1``)."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        return host.lower()


def _default_port(secure: bool) -> int:
    return 5061 if secure else 5060  # RFC 3261 19.1.2 / 18.2.1


def granted_expiry(response: Response, contact: URI, asked: int) -> int:
    """What a 2xx grants ``contact`` (RFC 3261 10.2.4 / 10.3 step 8).

    Its ``expires`` parameter in the 2xx's Contact list (matched by RFC 3261 19.1.4
    URI equality, other devices' bindings ignored), else the Expires header, else
    ``asked``. Unparsable values are the registrar's fault and fall through.
    """
    try:
        contacts = response.contacts
    except SipParseError:
        contacts = []
    for listed in contacts:
        if listed.uri == contact:
            value = _int_param(listed.params.get("expires"))
            if value is not None:
                return value
            break
    try:
        header = response.expires
    except SipParseError:
        header = None
    return header if header is not None else asked


def retry_after(response: Response) -> int | None:
    """The Retry-After seconds (RFC 3261 20.33), None if absent or unparsable."""
    try:
        return response.retry_after
    except SipParseError:
        return None


def seen_address(response: Response) -> tuple[str, int] | None:
    """(host, port) the server saw our request come from, per the top Via's
    ``received`` / ``rport`` (RFC 3581 4); None when it filled in neither."""
    try:
        via = response.top_via
    except (LookupError, SipParseError):
        return None
    if via.received is None and via.rport is None:
        return None
    host = via.received or via.host
    port = via.rport or via.port or _default_port(via.transport == "TLS")
    return _norm_host(host), port


def contact_address(uri: URI) -> tuple[str, int]:
    """(host, port) of a Contact URI in the form :func:`seen_address` returns."""
    secure = uri.is_secure or uri.transport == "tls"
    return _norm_host(uri.host), uri.port or _default_port(secure)
