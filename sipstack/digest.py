"""Digest access authentication, client side (RFC 3261 section 22, RFC 2617,
RFC 7616, RFC 8760).

Two layers:

* pure functions on strings -- :func:`compute_ha1`, :func:`compute_response`,
  :func:`hash_username` -- that reproduce the RFC example vectors;
* :class:`DigestAuthenticator`, a sans-IO object holding one account's
  credentials and the challenges it has answered.

Flow (the caller owns the transaction and the CSeq)::

    auth.handle_challenge(request, response)   # 401/407: learn, or raise
    retry = request.copy()                     # caller: CSeq + 1, new Via branch
    auth.authorize(retry)                      # sets Authorization/Proxy-Authorization
    ...                                        # later requests: auth.authorize(req)
                                               # before sending (pre-emptive, nc + 1)

The authenticator keeps no clock and does no I/O. It is a leaf of the stack: it
talks to messages through the small :class:`AuthRequest` / :class:`AuthResponse`
protocols that :mod:`sipstack.message` satisfies. Passwords and HA1 values never
appear in reprs, logs or exception messages.
"""

from __future__ import annotations

import enum
import functools
import importlib
import logging
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from sipstack.auth_header import Challenge, Credentials
from sipstack.errors import SipStackError
from sipstack.ids import IdGenerator
from sipstack.records import dataclass

__all__ = [
    "Algorithm",
    "AuthFailure",
    "AuthHeader",
    "AuthRequest",
    "AuthResponse",
    "AuthenticationError",
    "CredentialInfo",
    "DataType",
    "DEFAULT_PREFERENCE",
    "DigestAuthenticator",
    "NATIVE_SHA512_256",
    "Qop",
    "compute_ha1",
    "compute_response",
    "hash_username",
    "sha512_256_py",
]

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------
# Hash functions
# ---------------------------------------------------------------------------

_M64 = (1 << 64) - 1


def _first_primes(count: int) -> list[int]:
    primes: list[int] = []
    n = 2
    while len(primes) < count:
        if all(n % p for p in primes if p * p <= n):
            primes.append(n)
        n += 1
    return primes


def _icbrt(n: int) -> int:
    """floor(cbrt(n)) for a positive int, by Newton's method on integers."""
    x = 1 << ((n.bit_length() + 2) // 3)
    while True:
        y = (2 * x + n // (x * x)) // 3
        if y >= x:
            return x
        x = y


# FIPS 180-4 4.2.3 / 5.3.5: the constants are the first 64 bits of the fractional
# parts of the cube roots (K) and square roots (H0) of the first primes; deriving
# them avoids 88 hand-typed literals.
_K512 = tuple(_icbrt(p << 192) & _M64 for p in _first_primes(80))
_H512 = tuple(math.isqrt(p << 128) & _M64 for p in _first_primes(8))


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (64 - n))) & _M64


def _sha512_compress(state: tuple[int, ...], block: bytes) -> tuple[int, ...]:
    w = list(struct.unpack(">16Q", block))
    for t in range(16, 80):
        x, y = w[t - 15], w[t - 2]
        s0 = _rotr(x, 1) ^ _rotr(x, 8) ^ (x >> 7)
        s1 = _rotr(y, 19) ^ _rotr(y, 61) ^ (y >> 6)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & _M64)
    a, b, c, d, e, f, g, h = state
    for t in range(80):
        t1 = h + (_rotr(e, 14) ^ _rotr(e, 18) ^ _rotr(e, 41))
        t1 += ((e & f) ^ ((e ^ _M64) & g)) + _K512[t] + w[t]
        t2 = (_rotr(a, 28) ^ _rotr(a, 34) ^ _rotr(a, 39)) + ((a & b) ^ (a & c) ^ (b & c))
        h, g, f, e = g, f, e, (d + t1) & _M64
        d, c, b, a = c, b, a, (t1 + t2) & _M64
    return tuple((s + v) & _M64 for s, v in zip(state, (a, b, c, d, e, f, g, h), strict=True))


def _sha512_words(iv: tuple[int, ...], data: bytes) -> tuple[int, ...]:
    # FIPS 180-4 5.1.2: append 0x80, zero-fill, then the 128-bit bit length.
    padded = data + b"\x80" + b"\x00" * ((111 - len(data)) % 128)
    padded += (len(data) * 8).to_bytes(16, "big")
    state = iv
    for i in range(0, len(padded), 128):
        state = _sha512_compress(state, padded[i : i + 128])
    return state


@functools.cache
def _h512_256() -> tuple[int, ...]:
    # FIPS 180-4 5.3.6: SHA-512/t starts from SHA-512 run with H0 xor a5a5... over
    # "SHA-512/t". Worked out on first use: it is a pure-Python SHA-512 run.
    return _sha512_words(tuple(h ^ 0xA5A5A5A5A5A5A5A5 for h in _H512), b"SHA-512/256")


def sha512_256_py(data: bytes) -> bytes:
    """SHA-512/256 (FIPS 180-4 5.3.6.2) in pure Python.

    Used only when the OpenSSL that hashlib links against lacks ``sha512_256``
    (some builds do); digest inputs are a few hundred bytes, so speed is moot.
    """
    return b"".join(w.to_bytes(8, "big") for w in _sha512_words(_h512_256(), data)[:4])


def _native_available(name: str) -> bool:
    import hashlib

    try:
        hashlib.new(name)
    except ValueError:
        return False
    return True


#: True when hashlib provides SHA-512/256 natively. Checked on first use (PEP 562
#: ``__getattr__`` below): asking means loading OpenSSL's libcrypto.
NATIVE_SHA512_256: bool


def __getattr__(name: str) -> object:
    if name == "NATIVE_SHA512_256":
        value = _native_available("sha512_256")
        globals()[name] = value  # a cache of a fact about this interpreter, set once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _native_sha512_256() -> bool:
    known = globals().get("NATIVE_SHA512_256")
    return bool(__getattr__("NATIVE_SHA512_256") if known is None else known)


#: CPython's own MD5/SHA-256 (the ``_md5`` and ``_sha2``/``_sha256`` built-ins) where
#: present: ``import hashlib`` loads OpenSSL's libcrypto, about 3.5 MiB of resident
#: memory on a device that only needs MD5 for REGISTER (issue 6 benchmark).
_BUILTIN_HASHES = {"md5": ("_md5",), "sha256": ("_sha2", "_sha256")}


@functools.cache
def _hash_constructor(name: str) -> Any:
    for module in _BUILTIN_HASHES.get(name, ()):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    import hashlib

    return functools.partial(hashlib.new, name)


# ---------------------------------------------------------------------------
# Algorithms and pure digest arithmetic (RFC 7616 section 3.4)
# ---------------------------------------------------------------------------


class Algorithm(enum.Enum):
    """Digest algorithms (RFC 7616 section 6.1 registry, RFC 8760 for SIP)."""

    MD5 = "MD5"
    MD5_SESS = "MD5-sess"
    SHA_256 = "SHA-256"
    SHA_256_SESS = "SHA-256-sess"
    SHA_512_256 = "SHA-512-256"
    SHA_512_256_SESS = "SHA-512-256-sess"

    @classmethod
    def from_token(cls, token: str | None) -> Algorithm | None:
        """The algorithm named by a challenge's ``algorithm`` parameter, or None if unknown.

        RFC 7616 section 3.3: absent means MD5. Tokens compare case-insensitively.
        """
        if token is None:
            return cls.MD5
        wanted = token.lower()
        for alg in cls:
            if alg.value.lower() == wanted:
                return alg
        return None

    @property
    def is_session(self) -> bool:
        """True for the ``-sess`` variants (HA1 bound to nonce and cnonce)."""
        return self.value.endswith("-sess")

    @property
    def hash_name(self) -> str:
        """The underlying hash: ``md5``, ``sha256`` or ``sha512_256``."""
        base = self.value.removesuffix("-sess")
        return {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}[base]

    def hexdigest(self, data: bytes) -> str:
        """H(data) as lower-case hex (RFC 7616 section 3.4: ``H(data)``)."""
        if self.hash_name == "sha512_256" and not _native_sha512_256():
            return sha512_256_py(data).hex()
        return str(_hash_constructor(self.hash_name)(data).hexdigest())


#: Local policy (RFC 8760 section 2.4): strongest hash first.
DEFAULT_PREFERENCE: tuple[Algorithm, ...] = (
    Algorithm.SHA_512_256,
    Algorithm.SHA_512_256_SESS,
    Algorithm.SHA_256,
    Algorithm.SHA_256_SESS,
    Algorithm.MD5,
    Algorithm.MD5_SESS,
)


class Qop(enum.Enum):
    """Quality of protection (RFC 7616 section 3.3)."""

    AUTH = "auth"
    AUTH_INT = "auth-int"


def _h(algorithm: Algorithm, *parts: str) -> str:
    # RFC 7616 section 3.4: H(a ":" b ...); SIP carries UTF-8 (RFC 3261 section 25.1).
    return algorithm.hexdigest(":".join(parts).encode("utf-8"))


def compute_ha1(algorithm: Algorithm, username: str, realm: str, password: str) -> str:
    """H(username ":" realm ":" password): the storable, non-session HA1 (RFC 7616 3.4.2)."""
    return _h(algorithm, username, realm, password)


def hash_username(algorithm: Algorithm, username: str, realm: str) -> str:
    """H(username ":" realm), sent when the server offers ``userhash=true`` (RFC 7616 3.4.4)."""
    return _h(algorithm, username, realm)


def compute_response(
    algorithm: Algorithm,
    *,
    username: str,
    realm: str,
    method: str,
    uri: str,
    nonce: str,
    password: str | None = None,
    ha1: str | None = None,
    qop: Qop | None = None,
    nc: int = 1,
    cnonce: str = "",
    body: bytes = b"",
) -> str:
    """The ``response`` parameter (RFC 7616 section 3.4.1, RFC 2069 without qop).

    Give exactly one of ``password`` or a precomputed non-session ``ha1``
    (:func:`compute_ha1` with the same hash). ``body`` matters for auth-int only.
    """
    if (password is None) == (ha1 is None):
        raise ValueError("give exactly one of password or ha1")
    if ha1 is not None:
        base = ha1.lower()
    else:
        base = compute_ha1(algorithm, username, realm, password or "")
    # RFC 7616 3.4.2: -sess binds A1 to the nonce and cnonce.
    key = _h(algorithm, base, nonce, cnonce) if algorithm.is_session else base
    if qop is Qop.AUTH_INT:
        # RFC 7616 3.4.3; RFC 3261 22.4: an empty body hashes the empty string.
        ha2 = _h(algorithm, method, uri, algorithm.hexdigest(body))
    else:
        ha2 = _h(algorithm, method, uri)
    if qop is None:
        return _h(algorithm, key, nonce, ha2)  # RFC 2069 section 2.1.1
    return _h(algorithm, key, nonce, f"{nc:08x}", cnonce, qop.value, ha2)


# ---------------------------------------------------------------------------
# Credentials and errors
# ---------------------------------------------------------------------------


class DataType(enum.Enum):
    """What :attr:`CredentialInfo.data` holds (PJSIP's cred_info data_type)."""

    PLAIN_PASSWORD = "plain"
    HA1_MD5 = "md5"  # hex H(user:realm:password) with MD5
    HA1_SHA256 = "sha256"
    HA1_SHA512_256 = "sha512_256"


# data type -> (hash name, hex length)
_HA1_KIND = {
    DataType.HA1_MD5: ("md5", 32),
    DataType.HA1_SHA256: ("sha256", 64),
    DataType.HA1_SHA512_256: ("sha512_256", 64),
}


@dataclass(frozen=True, slots=True, repr=False)
class CredentialInfo:
    """One account secret for one realm (``"*"`` matches any realm).

    ``data`` is the password, or a precomputed HA1 in hex when ``data_type`` is
    one of the ``HA1_*`` kinds; an HA1 only answers challenges that use its hash
    and its realm, so it cannot go with the wildcard realm. ``repr`` hides it.
    """

    realm: str
    username: str
    data: str
    data_type: DataType = DataType.PLAIN_PASSWORD
    scheme: str = "digest"

    def __post_init__(self) -> None:
        if self.scheme.lower() != "digest":
            raise ValueError(f"credential scheme {self.scheme!r}: only 'digest' is supported")
        if self.data_type is not DataType.PLAIN_PASSWORD:
            if self.realm == "*":
                raise ValueError("an HA1 credential is bound to one realm; '*' cannot be used")
            want = _HA1_KIND[self.data_type][1]
            if len(self.data) != want or any(c not in "0123456789abcdefABCDEF" for c in self.data):
                raise ValueError(f"HA1 for {self.data_type.name} must be {want} hex digits")

    def can_answer(self, algorithm: Algorithm) -> bool:
        """Whether this secret can compute ``algorithm`` (an HA1 fixes the hash)."""
        if self.data_type is DataType.PLAIN_PASSWORD:
            return True
        return _HA1_KIND[self.data_type][0] == algorithm.hash_name

    def __repr__(self) -> str:
        return (
            f"CredentialInfo(realm={self.realm!r}, username={self.username!r}, "
            f"data=<hidden>, data_type={self.data_type.name}, scheme={self.scheme!r})"
        )


class AuthFailure(enum.Enum):
    """Why authentication cannot proceed, and whose fault that is."""

    NO_CREDENTIALS = "no credentials configured for the realm (our configuration)"
    REJECTED = "the server rejected the credentials: wrong username or password (our configuration)"
    UNSUPPORTED = "no challenge uses a scheme, algorithm and qop we support (server policy)"
    BAD_CHALLENGE = "the server sent an unusable challenge (the server's fault)"


class AuthenticationError(SipStackError):
    """The request cannot be authorised; :attr:`failure` says why and whose fault.

    Never carries a password or HA1; ``realms`` lists the protection spaces involved.
    """

    def __init__(self, failure: AuthFailure, realms: Iterable[str], detail: str = "") -> None:
        self.failure = failure
        self.realms = tuple(realms)
        text = f"{failure.value}; realm(s) {', '.join(repr(r) for r in self.realms) or '-'}"
        super().__init__(f"{text}: {detail}" if detail else text)


# ---------------------------------------------------------------------------
# The sans-IO authenticator
# ---------------------------------------------------------------------------


class _HeaderStore(Protocol):
    def add(self, name: str, value: str) -> object: ...
    def remove(self, name: str) -> object: ...


class _UriLike(Protocol):
    @property
    def host(self) -> str: ...


class _RouteLike(Protocol):
    @property
    def uri(self) -> _UriLike: ...


class AuthRequest(Protocol):
    """What the authenticator reads from and writes to a request (sipstack.message.Request)."""

    @property
    def method(self) -> str: ...
    @property
    def uri(self) -> _UriLike: ...  # str() gives the Request-URI (RFC 3261 22.4: digest-uri)
    @property
    def routes(self) -> Sequence[_RouteLike]: ...
    @property
    def body(self) -> bytes: ...
    @property
    def headers(self) -> _HeaderStore: ...
    @property
    def authorization(self) -> list[Credentials]: ...
    @property
    def proxy_authorization(self) -> list[Credentials]: ...


class AuthResponse(Protocol):
    """What the authenticator reads from a 401/407 (sipstack.message.Response)."""

    @property
    def status(self) -> int: ...
    @property
    def www_authenticate(self) -> list[Challenge]: ...
    @property
    def proxy_authenticate(self) -> list[Challenge]: ...


AUTHORIZATION = "Authorization"
PROXY_AUTHORIZATION = "Proxy-Authorization"


@dataclass(frozen=True, slots=True)
class AuthHeader:
    """A header to put on a request: ``name`` is Authorization or Proxy-Authorization."""

    name: str
    credentials: Credentials

    @property
    def value(self) -> str:
        """The serialized header value."""
        return str(self.credentials)


@dataclass(slots=True)
class _Session:
    """One answered challenge: a protection space, its nonce and our use count."""

    header: str
    realm: str
    challenge: Challenge
    algorithm: Algorithm
    qop: Qop | None
    credential: CredentialInfo
    cnonce: str
    server: str  # the host that challenged: where these credentials may go again
    nc: int = 0


_NC_MAX = 0xFFFFFFFF  # RFC 7616 3.4: nc is 8 hex digits


def _challenger(header: str, request: AuthRequest) -> str:
    """The host a request's challenge of this kind comes from.

    401 (Authorization) comes from the UAS, named by the Request-URI; 407
    (Proxy-Authorization) from the proxy at the next hop: the first Route,
    else the Request-URI.
    """
    if header == PROXY_AUTHORIZATION and request.routes:
        return request.routes[0].uri.host.lower()
    return request.uri.host.lower()


class DigestAuthenticator:
    """Answers digest challenges for one account and re-uses them pre-emptively.

    ``credentials`` are searched by exact realm first, then ``"*"``.
    ``algorithms`` is the local preference order (RFC 8760 section 2.4 lets local
    policy pick among several challenges for one realm); algorithms left out are
    never used. ``use_userhash`` sends H(username:realm) when the server offers it.
    """

    def __init__(
        self,
        credentials: Sequence[CredentialInfo],
        ids: IdGenerator,
        *,
        algorithms: Sequence[Algorithm] = DEFAULT_PREFERENCE,
        use_userhash: bool = True,
    ) -> None:
        self._credentials = tuple(credentials)
        self._ids = ids
        self._preference = tuple(algorithms)
        self._use_userhash = use_userhash
        # (header name, realm) -> session; RFC 3261 22.3 keeps proxy and UAS spaces apart.
        self._sessions: dict[tuple[str, str], _Session] = {}

    # -- queries ---------------------------------------------------------------

    def credential_for(self, realm: str) -> CredentialInfo | None:
        """The credential that answers ``realm``: exact match first, then ``"*"``."""
        for cred in self._credentials:
            if cred.realm == realm:
                return cred
        for cred in self._credentials:
            if cred.realm == "*":
                return cred
        return None

    @property
    def realms(self) -> list[tuple[str, str]]:
        """The cached protection spaces as (header name, realm), in answer order."""
        return list(self._sessions)

    def forget(self, realm: str | None = None) -> None:
        """Drop cached challenges (all, or one realm's) so the next request goes bare."""
        for key in [k for k in self._sessions if realm is None or k[1] == realm]:
            del self._sessions[key]

    # -- feeding challenges ------------------------------------------------------

    def handle_challenge(self, request: AuthRequest, response: AuthResponse) -> None:
        """Learn the challenges of a 401/407 to ``request``; then call :meth:`authorize`.

        Both WWW-Authenticate and Proxy-Authenticate are read whatever the status,
        since a forking proxy may merge them into one response (RFC 3261 22.3).
        Realms we cannot answer are skipped as long as one realm can be; raises
        :class:`AuthenticationError` otherwise, or when a realm rejects the very
        credentials it was just given with a non-stale challenge.
        """
        if response.status not in (401, 407):
            raise ValueError(f"handle_challenge needs a 401 or 407, not {response.status}")
        groups: dict[tuple[str, str], list[Challenge]] = {}
        problems: dict[AuthFailure, list[str]] = {}
        for header, challenges in (
            (AUTHORIZATION, response.www_authenticate),
            (PROXY_AUTHORIZATION, response.proxy_authenticate),
        ):
            for ch in challenges:
                if not ch.is_digest:
                    problems.setdefault(AuthFailure.UNSUPPORTED, []).append(ch.scheme)
                elif "realm" not in ch.params or "nonce" not in ch.params:
                    # RFC 7616 3.3: realm and nonce are mandatory.
                    problems.setdefault(AuthFailure.BAD_CHALLENGE, []).append(
                        ch.params.get("realm", "?")
                    )
                else:
                    groups.setdefault((header, ch.params["realm"]), []).append(ch)

        sent = {
            AUTHORIZATION: request.authorization,
            PROXY_AUTHORIZATION: request.proxy_authorization,
        }
        learned = 0
        for (header, realm), challenges in groups.items():
            cred = self.credential_for(realm)
            if cred is None:
                problems.setdefault(AuthFailure.NO_CREDENTIALS, []).append(realm)
                continue
            choice = self._choose(challenges, cred)
            if choice is None:
                problems.setdefault(AuthFailure.UNSUPPORTED, []).append(realm)
                continue
            challenge, algorithm, qop = choice
            previous = next(
                (c for c in sent[header] if c.is_digest and c.params.get("realm") == realm), None
            )
            if previous is not None:
                self._check_retry(header, realm, cred, previous, challenge)
            self._sessions[(header, realm)] = _Session(
                header,
                realm,
                challenge,
                algorithm,
                qop,
                cred,
                self._ids.cnonce(),
                _challenger(header, request),
            )
            log.debug("digest: %s realm %r answered with %s", header, realm, algorithm.value)
            learned += 1

        if learned == 0:
            for failure in (
                AuthFailure.NO_CREDENTIALS,
                AuthFailure.UNSUPPORTED,
                AuthFailure.BAD_CHALLENGE,
            ):
                if failure in problems:
                    raise AuthenticationError(failure, problems[failure])
            raise AuthenticationError(
                AuthFailure.BAD_CHALLENGE, [], "the response has no challenge"
            )

    def _choose(
        self, challenges: list[Challenge], cred: CredentialInfo
    ) -> tuple[Challenge, Algorithm, Qop | None] | None:
        best: tuple[int, Challenge, Algorithm, Qop | None] | None = None
        for ch in challenges:
            alg = Algorithm.from_token(ch.params.get("algorithm"))
            if alg is None or alg not in self._preference or not cred.can_answer(alg):
                continue
            if "qop" in ch.params:
                offered = {q.strip().lower() for q in ch.params["qop"].split(",")}
                # Prefer plain auth: auth-int would hash every body for little gain in SIP.
                if "auth" in offered:
                    qop: Qop | None = Qop.AUTH
                elif "auth-int" in offered:
                    qop = Qop.AUTH_INT
                else:
                    continue
            elif alg.is_session:
                continue  # -sess needs a cnonce, which only exists with qop (RFC 2617 3.2.2.2)
            else:
                qop = None  # RFC 2069 compatibility (RFC 3261 22.4)
            rank = self._preference.index(alg)
            if best is None or rank < best[0]:  # ties keep the server's order (RFC 8760 2.4)
                best = (rank, ch, alg, qop)
        return None if best is None else best[1:]

    def _check_retry(
        self, header: str, realm: str, cred: CredentialInfo, previous: Credentials, new: Challenge
    ) -> None:
        """Decide whether a renewed challenge means a wrong password (RFC 7616 3.3 stale)."""
        old_nonce = previous.params.get("nonce")
        stale = new.params.get("stale", "").lower() == "true"
        if stale:
            if old_nonce == new.params["nonce"]:
                raise AuthenticationError(
                    AuthFailure.BAD_CHALLENGE, [realm], "stale=true with the nonce we just used"
                )
            return  # credentials were good, the nonce expired: retry silently
        nc_text = previous.params.get("nc")
        if nc_text is not None:
            try:
                first_use = int(nc_text, 16) == 1
            except ValueError:
                first_use = True
        else:
            # RFC 2069 mode has no nc: ask our own use count for that nonce.
            session = self._sessions.get((header, realm))
            first_use = (
                session is None
                or session.challenge.params["nonce"] != old_nonce
                or (session.nc <= 1)
            )
        if first_use or old_nonce == new.params["nonce"]:
            self._sessions.pop((header, realm), None)
            raise AuthenticationError(AuthFailure.REJECTED, [realm], f"username {cred.username!r}")
        # A re-used (pre-emptive) nonce refused without stale: some servers forget
        # nonces silently. Answer the fresh challenge once; if that fails, it is nc=1.

    # -- producing credentials ---------------------------------------------------

    def credentials_for(
        self,
        method: str,
        uri: str,
        body: bytes = b"",
        *,
        servers: Mapping[str, str] | None = None,
    ) -> list[AuthHeader]:
        """Headers for a request, one per cached protection space; nc goes up by one each.

        ``servers`` maps each header name to the host the request goes to for it
        (Authorization: the Request-URI host, the UAS; Proxy-Authorization: the
        next hop, the proxy). A protection space is only answered for the host
        that issued its challenge (RFC 7616 3.6, RFC 3261 22.1), so a
        registrar's credentials never travel to a watcher or a callee.
        """
        out: list[AuthHeader] = []
        for key, session in list(self._sessions.items()):
            if servers is not None and servers.get(session.header) != session.server:
                continue
            if session.nc >= _NC_MAX:
                del self._sessions[key]  # nonce worn out: let the server challenge again
                continue
            session.nc += 1
            out.append(AuthHeader(session.header, self._answer(session, method, uri, body)))
        return out

    def authorize(self, request: AuthRequest) -> list[AuthHeader]:
        """Replace ``request``'s Authorization/Proxy-Authorization with fresh answers.

        Use it on the re-sent copy after :meth:`handle_challenge` and on any later
        request (pre-emptive authorisation). Does nothing and returns ``[]`` when no
        challenge is cached. The caller increments CSeq (RFC 3261 22.2). Not for
        ACK, which carries the INVITE's credentials unchanged (RFC 3261 13.2.2.4),
        nor CANCEL, which cannot be challenged (RFC 3261 22.1).
        """
        servers = {
            AUTHORIZATION: _challenger(AUTHORIZATION, request),
            PROXY_AUTHORIZATION: _challenger(PROXY_AUTHORIZATION, request),
        }
        headers = self.credentials_for(
            request.method, str(request.uri), request.body, servers=servers
        )
        if headers:
            request.headers.remove(AUTHORIZATION)
            request.headers.remove(PROXY_AUTHORIZATION)
            for h in headers:
                request.headers.add(h.name, h.value)
        return headers

    def _answer(self, s: _Session, method: str, uri: str, body: bytes) -> Credentials:
        cred, ch, alg = s.credential, s.challenge, s.algorithm
        plain = cred.data_type is DataType.PLAIN_PASSWORD
        response = compute_response(
            alg,
            username=cred.username,
            realm=s.realm,
            method=method,
            uri=uri,
            nonce=ch.params["nonce"],
            qop=s.qop,
            nc=s.nc,
            cnonce=s.cnonce,
            body=body,
            password=cred.data if plain else None,
            ha1=None if plain else cred.data,
        )
        hashed = self._use_userhash and ch.params.get("userhash", "").lower() == "true"
        # RFC 7616 3.4 / RFC 3261 22.4 parameter set; order follows the RFC examples.
        params = {
            "username": hash_username(alg, cred.username, s.realm) if hashed else cred.username,
            "realm": s.realm,
            "nonce": ch.params["nonce"],
            "uri": uri,
            "response": response,
            "algorithm": alg.value,
        }
        if s.qop is not None:
            # RFC 7616 3.4: one cnonce per nonce keeps -sess A1 identical across uses.
            params.update(cnonce=s.cnonce, qop=s.qop.value, nc=f"{s.nc:08x}")
        if "opaque" in ch.params:
            params["opaque"] = ch.params["opaque"]  # RFC 7616 3.4: echoed unchanged
        if hashed:
            params["userhash"] = "true"
        return Credentials("Digest", params)
