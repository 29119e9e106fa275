"""SRTP (RFC 3711) keyed by SDES (RFC 4568 ``a=crypto``), with PJSUA-style modes.

Three jobs, kept apart:

- **Crypto attributes**: :func:`generate_crypto` writes ours (a fresh random
  master key and salt from :mod:`secrets`), :func:`parse_crypto` reads and
  checks a peer's. Both give a :class:`CryptoAttribute`; ``str()`` of it is the
  value to put after ``a=crypto:``.
- **Negotiation** by :class:`SrtpMode`, as PJSUA's ``use_srtp``:
  :func:`srtp_offer` says which profile and crypto lines to offer,
  :func:`srtp_answer` chooses a suite and tag from a peer's offer (or refuses it:
  the user agent then answers 488), :func:`srtp_accept_answer` checks the
  peer's answer to our offer. :meth:`SrtpPolicy.mode_for_call` applies PJSUA's
  ``srtp_secure_signaling``: SDES keys travel in clear in the SDP, so by default
  we only use them when the signalling hop is TLS.
- **Packets**: :class:`SrtpContext` protects what we send and checks what we
  receive, RTP and RTCP, by wrapping two libsrtp sessions (``pylibsrtp``).
  A packet that fails raises :class:`SrtpError`; the media layer drops it and
  counts it by :attr:`SrtpError.failure`.

Nothing here reads a clock or a socket. Not supported (lines using them are
treated as unacceptable, never silently mis-keyed): MKI, several master keys,
and the session parameters KDR, UNENCRYPTED_SRTP/SRTCP, UNAUTHENTICATED_SRTP and
FEC_KEY. The key lifetime is parsed and kept but not enforced: libsrtp itself
refuses a key past the RFC 3711 section 9.2 limit (2^48 RTP / 2^31 RTCP packets),
which a phone call never reaches.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from sipstack.errors import SipStackError
from sipstack.records import dataclass, field

if TYPE_CHECKING:
    # imported where a context is built: libsrtp and its libcrypto cost ~5 MiB
    # resident, which a device that never negotiates RTP/SAVP need not pay
    import pylibsrtp

__all__ = [
    "DEFAULT_SUITES",
    "CryptoAttribute",
    "CryptoAttributeError",
    "CryptoSuite",
    "KeyParams",
    "SecureSignaling",
    "SrtpContext",
    "SrtpError",
    "SrtpFailure",
    "SrtpMode",
    "SrtpNegotiated",
    "SrtpNegotiationError",
    "SrtpOffer",
    "SrtpPolicy",
    "UnsupportedCryptoError",
    "generate_crypto",
    "parse_crypto",
    "srtp_accept_answer",
    "srtp_answer",
    "srtp_offer",
]

PLAIN_RTP = "RTP/AVP"
SECURE_RTP = "RTP/SAVP"  # RFC 3711 section 12

#: The smallest RTP header (RFC 3550 5.1) and RTCP header (RFC 3550 6.4.1).
_RTP_HEADER = 12
_RTCP_HEADER = 8

TokenBytes = Callable[[int], bytes]


def _token_bytes(n: int) -> bytes:
    """:func:`secrets.token_bytes`, imported on first use (``secrets`` pulls in
    ``hmac`` and OpenSSL's libcrypto)."""
    import secrets

    return secrets.token_bytes(n)


# -- suites ---------------------------------------------------------------------------


class CryptoSuite(enum.Enum):
    """SRTP crypto suites we can key, by their SDES names.

    RFC 4568 6.2.1/6.2.2 (AES counter mode, HMAC-SHA1 80- or 32-bit tag; SRTCP
    always uses the 80-bit tag) and RFC 7714 section 14.2 (AES-GCM).
    """

    AES_CM_128_HMAC_SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
    AES_CM_128_HMAC_SHA1_32 = "AES_CM_128_HMAC_SHA1_32"
    AEAD_AES_128_GCM = "AEAD_AES_128_GCM"
    AEAD_AES_256_GCM = "AEAD_AES_256_GCM"

    @property
    def key_length(self) -> int:
        """Master key length in bytes."""
        return 32 if self is CryptoSuite.AEAD_AES_256_GCM else 16

    @property
    def salt_length(self) -> int:
        """Master salt length in bytes: 112 bits for AES-CM, 96 for GCM (RFC 7714 14.2)."""
        return 12 if self.value.startswith("AEAD_") else 14

    @property
    def key_salt_length(self) -> int:
        """Length of the decoded ``inline:`` value: master key || master salt."""
        return self.key_length + self.salt_length

    @property
    def _profile(self) -> int:
        import pylibsrtp

        profiles: dict[CryptoSuite, int] = {
            CryptoSuite.AES_CM_128_HMAC_SHA1_80: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
            CryptoSuite.AES_CM_128_HMAC_SHA1_32: pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
            CryptoSuite.AEAD_AES_128_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
            CryptoSuite.AEAD_AES_256_GCM: pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
        }
        return profiles[self]


#: What we offer unless configured otherwise, best first. The two AES-CM suites
#: are the ones every SDES phone has (RFC 4568 6.2); GCM is opt-in because some
#: older phones refuse an offer that lists a suite they do not know.
DEFAULT_SUITES: tuple[CryptoSuite, ...] = (
    CryptoSuite.AES_CM_128_HMAC_SHA1_80,
    CryptoSuite.AES_CM_128_HMAC_SHA1_32,
)


# -- crypto attributes --------------------------------------------------------------


class CryptoAttributeError(SipStackError, ValueError):
    """An ``a=crypto`` value is malformed (the writer's fault: usually the peer's)."""


class UnsupportedCryptoError(CryptoAttributeError):
    """An ``a=crypto`` value is well formed but asks for something we do not do.

    An unknown suite, MKI, several keys, or a session parameter we cannot honour.
    In an offer such a line is simply not chosen (RFC 4568 7.1.2).
    """


@dataclass(frozen=True, slots=True)
class KeyParams:
    """One ``inline:`` key parameter (RFC 4568 6.1); key material kept out of ``repr``."""

    key: bytes = field(repr=False)
    salt: bytes = field(repr=False)
    lifetime: int | None = None
    mki: int | None = None
    mki_length: int | None = None

    def __str__(self) -> str:
        text = "inline:" + base64.b64encode(self.key + self.salt).decode("ascii")
        if self.lifetime is not None:
            text += f"|{_format_lifetime(self.lifetime)}"
        if self.mki is not None:
            text += f"|{self.mki}:{self.mki_length}"
        return text


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """One ``a=crypto`` value (RFC 4568 section 9.1): tag, suite, keys, session params."""

    tag: int
    suite: CryptoSuite
    keys: tuple[KeyParams, ...]
    session_params: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Our own misuse (a peer's bad line is caught in parse_crypto first).
        if not 0 <= self.tag <= 999_999_999:
            raise ValueError(f"crypto tag {self.tag} out of range (RFC 4568 9.1: 1*9DIGIT)")
        if not self.keys:
            raise ValueError("a crypto attribute needs at least one key")
        for key in self.keys:
            if (len(key.key), len(key.salt)) != (self.suite.key_length, self.suite.salt_length):
                raise ValueError(
                    f"{self.suite.value} needs a {self.suite.key_length}-byte key and a "
                    f"{self.suite.salt_length}-byte salt"
                )

    @property
    def master_key_salt(self) -> bytes:
        """The first key's master key || master salt, as libsrtp wants it."""
        return self.keys[0].key + self.keys[0].salt

    def __str__(self) -> str:
        parts = [str(self.tag), self.suite.value, ";".join(str(k) for k in self.keys)]
        return " ".join([*parts, *self.session_params])

    def check_usable(self) -> None:
        """Raise :class:`UnsupportedCryptoError` if :class:`SrtpContext` cannot key this.

        pylibsrtp exposes neither MKI nor key derivation rates, and we never
        turn encryption or authentication off (RFC 4568 6.3.2-6.3.4).
        """
        if len(self.keys) != 1:
            raise UnsupportedCryptoError(f"crypto tag {self.tag}: several master keys (MKI)")
        if self.keys[0].mki is not None:
            raise UnsupportedCryptoError(f"crypto tag {self.tag}: MKI is not supported")
        for param in self.session_params:
            name = param.split("=", 1)[0].upper()
            # RFC 4568 6.3.6: WSH is a hint (we keep libsrtp's 128-packet window);
            # 6.3.5: FEC_ORDER only matters with FEC, which we never negotiate.
            if name not in ("WSH", "FEC_ORDER"):
                raise UnsupportedCryptoError(
                    f"crypto tag {self.tag}: session parameter {param!r} is not supported"
                )


_TAG = re.compile(r"[0-9]{1,9}")
_LIFETIME = re.compile(r"2\^([0-9]{1,2})|([0-9]{1,20})")  # exponent capped: no 2^huge
_MKI = re.compile(r"([0-9]{1,128}):([0-9]{1,3})")
_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def parse_crypto(value: str) -> CryptoAttribute:
    """Parse one ``a=crypto`` value (without ``a=crypto:``), RFC 4568 section 9.1.

    Raises :class:`CryptoAttributeError` for a malformed line (bad tag, bad
    base64, wrong key length) and :class:`UnsupportedCryptoError` for a suite
    we do not know or a key parameter other than ``inline``. MKI and session
    parameters are parsed; :meth:`CryptoAttribute.check_usable` says whether we
    can key them.
    """
    parts = value.split()
    if len(parts) < 3:
        raise CryptoAttributeError(f"a=crypto {value!r}: needs tag, suite and key params")
    tag_text, suite_text, key_text, *session_params = parts
    if not _TAG.fullmatch(tag_text):
        raise CryptoAttributeError(f"a=crypto tag {tag_text!r} is not 1-9 digits")
    try:
        suite = CryptoSuite(suite_text.upper())
    except ValueError:
        raise UnsupportedCryptoError(f"a=crypto suite {suite_text!r} is not supported") from None
    keys = tuple(_parse_key_params(part, suite) for part in key_text.split(";"))
    return CryptoAttribute(int(tag_text), suite, keys, tuple(session_params))


def _parse_key_params(text: str, suite: CryptoSuite) -> KeyParams:
    method, colon, info = text.partition(":")
    if not colon:
        raise CryptoAttributeError(f"a=crypto key params {text!r}: expected 'inline:...'")
    if method.lower() != "inline":  # RFC 4568 6.1: the only key method SDES defines
        raise UnsupportedCryptoError(f"a=crypto key method {method!r} is not supported")
    key_b64, *rest = info.split("|")
    if len(rest) > 2:
        raise CryptoAttributeError(f"a=crypto key info {info!r}: too many '|' fields")
    material = _decode_key(key_b64, suite)
    lifetime = mki = mki_length = None
    for item in rest:
        mki_match = _MKI.fullmatch(item)
        life_match = _LIFETIME.fullmatch(item)
        if mki_match and mki is None:
            mki, mki_length = int(mki_match[1]), int(mki_match[2])
            if not 1 <= mki_length <= 128:
                raise CryptoAttributeError(f"a=crypto MKI length {mki_length} not in 1-128")
        elif life_match and lifetime is None and mki is None:  # lifetime comes first
            lifetime = 2 ** int(life_match[1]) if life_match[1] else int(life_match[2])
        else:
            raise CryptoAttributeError(f"a=crypto key info {info!r}: bad field {item!r}")
    key_length = suite.key_length
    return KeyParams(material[:key_length], material[key_length:], lifetime, mki, mki_length)


def _decode_key(text: str, suite: CryptoSuite) -> bytes:
    # RFC 4568 6.1: base64 (RFC 3548 3) of key || salt. Padding is restored if a
    # peer left it off; any other stray character is an error.
    if not _B64.fullmatch(text):
        raise CryptoAttributeError(f"a=crypto key {text[:8]!r}...: not base64")
    try:
        material = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CryptoAttributeError(f"a=crypto key {text[:8]!r}...: not base64") from None
    if len(material) != suite.key_salt_length:
        raise CryptoAttributeError(
            f"a=crypto key is {len(material)} bytes; {suite.value} needs "
            f"{suite.key_salt_length} (key {suite.key_length} + salt {suite.salt_length})"
        )
    return material


def _format_lifetime(lifetime: int) -> str:
    if lifetime > 0 and lifetime & (lifetime - 1) == 0:
        return f"2^{lifetime.bit_length() - 1}"
    return str(lifetime)


def generate_crypto(
    suite: CryptoSuite = CryptoSuite.AES_CM_128_HMAC_SHA1_80,
    tag: int = 1,
    *,
    token_bytes: TokenBytes = _token_bytes,
) -> CryptoAttribute:
    """A crypto attribute with a fresh master key and salt (RFC 4568 6.1, RFC 3711 8.1).

    ``token_bytes`` is :func:`secrets.token_bytes` except in tests. No lifetime
    or MKI is written: both are optional and many phones mishandle MKI.
    """
    material = token_bytes(suite.key_salt_length)
    if len(material) != suite.key_salt_length:
        raise ValueError(f"token_bytes gave {len(material)} bytes for {suite.key_salt_length}")
    key = KeyParams(material[: suite.key_length], material[suite.key_length :])
    return CryptoAttribute(tag, suite, (key,))


# -- modes and policy ---------------------------------------------------------------


class SrtpMode(enum.Enum):
    """PJSUA's ``use_srtp``: whether a call's media must, may or must not be SRTP."""

    #: Plain RTP only; an RTP/SAVP offer is refused (488).
    DISABLED = "disabled"
    #: Offer RTP/AVP with ``a=crypto`` (best effort, as PJSUA and baresip's
    #: ``mediaenc=srtp``); use SRTP whenever the peer gives a usable key.
    OPTIONAL = "optional"
    #: Offer RTP/SAVP; accept only RTP/SAVP with a usable key, else 488.
    MANDATORY = "mandatory"


class SecureSignaling(enum.Enum):
    """PJSUA's ``srtp_secure_signaling``: what SIP transport SDES keys may travel on.

    The values are PJSUA's numbers. The default is :attr:`TLS`, as in PJSUA:
    SDES puts the keys in the SDP, so over UDP or TCP anyone on the path can
    decrypt the media. :attr:`SIPS` additionally asks for TLS on every hop
    (RFC 3261 26.2.2); :attr:`NONE` allows SDES over any transport (for tests,
    or a LAN where the threat is accepted).
    """

    NONE = 0
    TLS = 1
    SIPS = 2


class SrtpNegotiationError(SipStackError):
    """SRTP could not be agreed for a call.

    ``status`` is the response to send when we are answering an INVITE (488
    Not Acceptable Here, RFC 3261 21.4.26) or None when the failure is in a
    peer's answer to our offer (the call layer ends the call instead).
    """

    def __init__(self, reason: str, status: int | None = 488) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


@dataclass(frozen=True, slots=True)
class SrtpPolicy:
    """An account's SRTP settings: mode, signalling requirement, suites best first."""

    mode: SrtpMode = SrtpMode.DISABLED
    secure_signaling: SecureSignaling = SecureSignaling.TLS
    suites: tuple[CryptoSuite, ...] = DEFAULT_SUITES

    def __post_init__(self) -> None:
        if self.mode is not SrtpMode.DISABLED and not self.suites:
            raise ValueError(f"SrtpPolicy: mode {self.mode.value} needs at least one suite")

    def mode_for_call(self, *, tls: bool, sips: bool) -> SrtpMode:
        """The mode for one call, given how its signalling travels.

        ``tls``: the hop to the next SIP element is TLS; ``sips``: the request
        URI is ``sips:`` (TLS end to end). As PJSUA (``pjsua_media.c`` compares
        the call's security level with ``srtp_secure_signaling`` for OPTIONAL
        and MANDATORY alike): when the requirement is not met no key is sent
        and the call cannot go ahead: :class:`SrtpNegotiationError` with
        status 488 (an incoming call is answered so; an outgoing one is not made).
        """
        if self.mode is SrtpMode.DISABLED:
            return self.mode
        needed = self.secure_signaling
        met = (
            needed is SecureSignaling.NONE
            or (needed is SecureSignaling.TLS and (tls or sips))
            or (needed is SecureSignaling.SIPS and sips)
        )
        if met:
            return self.mode
        have = "sips: (TLS end to end)" if sips else "TLS" if tls else "not TLS"
        raise SrtpNegotiationError(
            f"SRTP is {self.mode.value} but this call's signalling ({have}) is not secure "
            f"enough to carry SDES keys (srtp_secure_signaling={needed.value}: "
            f"{needed.name} required)"
        )


# -- negotiation --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SrtpOffer:
    """What our offer carries: the m= line profile and our crypto attributes."""

    proto: str
    crypto: tuple[CryptoAttribute, ...] = ()

    @property
    def crypto_lines(self) -> tuple[str, ...]:
        """The ``a=crypto`` values, for ``LocalMedia(crypto=...)``."""
        return tuple(str(c) for c in self.crypto)


@dataclass(frozen=True, slots=True)
class SrtpNegotiated:
    """The outcome for a call: both keys (SRTP) or neither (plain RTP)."""

    local: CryptoAttribute | None = None
    remote: CryptoAttribute | None = None

    @property
    def secure(self) -> bool:
        """True when media is SRTP."""
        return self.local is not None and self.remote is not None

    def context(self) -> SrtpContext:
        """A packet context for these keys; raises ValueError for plain RTP."""
        if self.local is None or self.remote is None:
            raise ValueError("SrtpNegotiated: plain RTP has no SRTP context")
        return SrtpContext(self.local, self.remote)


def srtp_offer(
    mode: SrtpMode,
    suites: Sequence[CryptoSuite] = DEFAULT_SUITES,
    *,
    token_bytes: TokenBytes = _token_bytes,
) -> SrtpOffer:
    """Our offer's profile and crypto lines, one per suite, tags 1, 2, ... (RFC 4568 5.1)."""
    if mode is SrtpMode.DISABLED:
        return SrtpOffer(PLAIN_RTP)
    if not suites:
        raise ValueError(f"srtp_offer: mode {mode.value} needs at least one suite")
    crypto = tuple(
        generate_crypto(suite, tag, token_bytes=token_bytes)
        for tag, suite in enumerate(suites, start=1)
    )
    # RFC 4568 5.1 puts a=crypto under RTP/SAVP. OPTIONAL offers RTP/AVP so that
    # a peer without SRTP still takes the call ("best effort", as PJSUA and baresip).
    return SrtpOffer(SECURE_RTP if mode is SrtpMode.MANDATORY else PLAIN_RTP, crypto)


def srtp_answer(
    mode: SrtpMode,
    offered_proto: str,
    offered_crypto: Sequence[str],
    suites: Sequence[CryptoSuite] = DEFAULT_SUITES,
    *,
    token_bytes: TokenBytes = _token_bytes,
) -> SrtpNegotiated:
    """Choose SRTP or plain RTP for a peer's offered audio stream.

    RFC 4568 7.1.2: the first offered line (the offerer's preference) whose
    suite is in ``suites`` and which we can key is answered with the same tag
    and suite and a fresh key of ours. Raises :class:`SrtpNegotiationError`
    (status 488) when ``mode`` forbids what was offered: RTP/SAVP when
    DISABLED, no usable key under RTP/SAVP, or anything but RTP/SAVP with a
    usable key when MANDATORY (as PJSUA does). The answer's m= line keeps the
    offered profile (RFC 3264 6).
    """
    proto = offered_proto.upper()
    if proto not in (PLAIN_RTP, SECURE_RTP):
        raise SrtpNegotiationError(f"media profile {offered_proto!r} is not RTP/AVP or RTP/SAVP")
    if mode is SrtpMode.DISABLED:
        if proto == SECURE_RTP:
            raise SrtpNegotiationError("RTP/SAVP offered but SRTP is disabled on this account")
        return SrtpNegotiated()
    if mode is SrtpMode.MANDATORY and proto != SECURE_RTP:
        raise SrtpNegotiationError(f"SRTP is mandatory but {offered_proto} was offered")
    chosen, why = _choose_offered(offered_crypto, suites)
    if chosen is None:
        if proto == SECURE_RTP:
            raise SrtpNegotiationError(f"no acceptable a=crypto in the RTP/SAVP offer: {why}")
        return SrtpNegotiated()  # OPTIONAL, RTP/AVP: plain RTP (crypto lines ignored)
    local = generate_crypto(chosen.suite, chosen.tag, token_bytes=token_bytes)
    return SrtpNegotiated(local, chosen)


def _choose_offered(
    lines: Sequence[str], suites: Sequence[CryptoSuite]
) -> tuple[CryptoAttribute | None, str]:
    reasons: list[str] = []
    for line in lines:
        try:
            crypto = parse_crypto(line)
            if crypto.suite not in suites:
                raise UnsupportedCryptoError(f"suite {crypto.suite.value} is not enabled")
            crypto.check_usable()
        except CryptoAttributeError as exc:
            reasons.append(str(exc))  # RFC 4568 7.1.2: not acceptable, try the next
            continue
        return crypto, ""
    return None, "; ".join(reasons) or "none offered"


def srtp_accept_answer(
    mode: SrtpMode, offer: SrtpOffer, answer_proto: str, answer_crypto: Sequence[str]
) -> SrtpNegotiated:
    """Check the peer's answer to our ``offer`` and pair its key with ours.

    RFC 4568 7.1.3: an answer that accepts SRTP carries exactly one crypto
    line whose tag and suite are one we offered. Plain RTP is accepted only
    when ``mode`` is OPTIONAL (or DISABLED, where any crypto is ignored).
    Raises :class:`SrtpNegotiationError` (status None: the peer's answer is
    at fault and the call layer ends the call).
    """
    if mode is SrtpMode.DISABLED or not offer.crypto:
        if answer_proto.upper() == SECURE_RTP:
            raise SrtpNegotiationError("RTP/SAVP answer to an RTP/AVP offer", None)
        return SrtpNegotiated()
    if not answer_crypto:
        if mode is SrtpMode.MANDATORY:
            raise SrtpNegotiationError("SRTP is mandatory but the answer has no a=crypto", None)
        return SrtpNegotiated()  # OPTIONAL: the peer chose plain RTP
    if len(answer_crypto) != 1:
        raise SrtpNegotiationError(
            f"answer has {len(answer_crypto)} a=crypto lines (RFC 4568 7.1.3: exactly one)", None
        )
    try:
        remote = parse_crypto(answer_crypto[0])
        remote.check_usable()
    except CryptoAttributeError as exc:
        raise SrtpNegotiationError(f"unusable a=crypto in the answer: {exc}", None) from None
    local = next((c for c in offer.crypto if c.tag == remote.tag), None)
    if local is None or local.suite is not remote.suite:
        raise SrtpNegotiationError(
            f"answer's a=crypto tag {remote.tag} {remote.suite.value} was not offered", None
        )
    return SrtpNegotiated(local, remote)


# -- packets ------------------------------------------------------------------------


class SrtpFailure(enum.Enum):
    """Why a packet was dropped, so the media layer can count each kind."""

    AUTHENTICATION = "authentication"  # tampered, or keyed differently (RFC 3711 3.4)
    REPLAY = "replay"  # seen before or too old for the window (RFC 3711 3.3.2)
    MALFORMED = "malformed"  # too short or too long to be SRTP/SRTCP at all
    OTHER = "other"


class SrtpError(SipStackError):
    """A packet could not be protected or unprotected; ``failure`` says why.

    For received packets this is the peer's (or an attacker's) doing: drop the
    packet, count it, go on.
    """

    def __init__(self, reason: str, failure: SrtpFailure) -> None:
        super().__init__(reason)
        self.reason = reason
        self.failure = failure


def _failure_of(message: str) -> SrtpFailure:
    if "authentication" in message:
        return SrtpFailure.AUTHENTICATION
    if "replay" in message or "too old" in message:
        return SrtpFailure.REPLAY
    return SrtpFailure.OTHER


class SrtpContext:
    """SRTP/SRTCP for one media stream: our key protects, the peer's key checks.

    ``local_crypto`` is the crypto attribute we sent (our sending key),
    ``remote_crypto`` the peer's; both as :class:`CryptoAttribute` or raw
    ``a=crypto`` values, with the same suite (RFC 4568 7.1.2). Any SSRC is
    accepted in both directions (libsrtp's ``ssrc_any_*`` templates), so a
    peer that changes SSRC mid-call keeps working; RFC 3711 3.3.1 rollover
    counters are kept per SSRC by libsrtp.
    """

    def __init__(
        self, local_crypto: CryptoAttribute | str, remote_crypto: CryptoAttribute | str
    ) -> None:
        local = parse_crypto(local_crypto) if isinstance(local_crypto, str) else local_crypto
        remote = parse_crypto(remote_crypto) if isinstance(remote_crypto, str) else remote_crypto
        local.check_usable()
        remote.check_usable()
        if local.suite is not remote.suite:
            raise ValueError(
                f"SrtpContext: local suite {local.suite.value} differs from remote "
                f"{remote.suite.value}"
            )
        self.suite = local.suite
        import pylibsrtp

        self._outbound = pylibsrtp.Session(self._policy(local, pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        self._inbound = pylibsrtp.Session(self._policy(remote, pylibsrtp.Policy.SSRC_ANY_INBOUND))

    @staticmethod
    def _policy(crypto: CryptoAttribute, ssrc_type: int) -> pylibsrtp.Policy:
        import pylibsrtp

        return pylibsrtp.Policy(
            key=crypto.master_key_salt, ssrc_type=ssrc_type, srtp_profile=crypto.suite._profile
        )

    def protect_rtp(self, packet: bytes) -> bytes:
        """Encrypt and authenticate one RTP packet we send (RFC 3711 3.3)."""
        self._check_size(packet, _RTP_HEADER, "RTP")
        return self._run(self._outbound.protect, packet, "protect RTP")

    def unprotect_rtp(self, packet: bytes) -> bytes:
        """Check and decrypt one SRTP packet received; raises :class:`SrtpError`."""
        self._check_size(packet, _RTP_HEADER, "SRTP")
        return self._run(self._inbound.unprotect, packet, "unprotect SRTP")

    def protect_rtcp(self, packet: bytes) -> bytes:
        """Encrypt and authenticate one compound RTCP packet we send (RFC 3711 3.4)."""
        self._check_size(packet, _RTCP_HEADER, "RTCP")
        return self._run(self._outbound.protect_rtcp, packet, "protect RTCP")

    def unprotect_rtcp(self, packet: bytes) -> bytes:
        """Check and decrypt one SRTCP packet received; raises :class:`SrtpError`."""
        self._check_size(packet, _RTCP_HEADER, "SRTCP")
        return self._run(self._inbound.unprotect_rtcp, packet, "unprotect SRTCP")

    @staticmethod
    def _check_size(packet: bytes, minimum: int, kind: str) -> None:
        if len(packet) < minimum or packet[0] >> 6 != 2:  # RFC 3550: version 2
            raise SrtpError(
                f"{kind} packet of {len(packet)} bytes is malformed", SrtpFailure.MALFORMED
            )

    @staticmethod
    def _run(operation: Callable[[bytes], bytes], packet: bytes, what: str) -> bytes:
        try:
            return operation(bytes(packet))
        except ValueError as exc:  # pylibsrtp: "packet is too long" for its 1500-byte buffer
            raise SrtpError(f"{what}: {exc}", SrtpFailure.MALFORMED) from None
        except Exception as exc:
            # pylibsrtp.Error (not a ValueError), named here rather than in the
            # except clause: the module is imported lazily, see the imports above
            import pylibsrtp

            if not isinstance(exc, pylibsrtp.Error):
                raise
            message = str(exc)
            raise SrtpError(f"{what}: {message}", _failure_of(message)) from None
