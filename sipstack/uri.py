"""SIP, SIPS and tel URIs (RFC 3261 19.1, RFC 3966) and any other absolute URI.

``parse_uri`` is strict about the RFC 3261 25.1 grammar of sip/sips URIs (a
malformed Request-URI must be answered 400) and lenient about other schemes,
which are kept opaque. Equality follows RFC 3261 19.1.4.
"""

from __future__ import annotations

import re

from . import _grammar as g
from .errors import SipParseError

TYPE_CHECKING = False  # mypy honours any name TYPE_CHECKING; typing is not imported
if TYPE_CHECKING:
    from typing import Any

__all__ = ["URI", "parse_uri"]

# The usual shape (user@host:port;params, no escapes, no IPv6): a subset of _SIP_RE.
_FAST_SIP_RE = re.compile(
    rf"(?:([{g.F_USER_CHARS},]+)@)?({g.F_HOST})(?::({g.F_PORT}))?((?:;[{g.F_PARAM_CHARS}]+(?:=[{g.F_PARAM_CHARS}]+)?)*)"
)
# The full grammar, compiled on first use (see _grammar.LazyPattern).
_SIP_RE = g.LazyPattern(
    rf"(?:(?=[^@]*@)({g.USER})(?::({g.PASSWORD}))?@)?({g.HOST})(?::({g.PORT}))?"
    rf"({g.URI_PARAMS})((?:\?[^?]*)?)"
)
_HEADERS_RE = g.LazyPattern(g.URI_HEADERS)
_TEL_RE = g.LazyPattern(rf"([0-9A-Fa-f*#+().\-]+)({g.URI_PARAMS})")
_SCHEME_RE = g.LazyPattern(r"[A-Za-z][A-Za-z0-9+\-.]*")
_OPAQUE_RE = g.LazyPattern(rf"(?:[{g._UNRESERVED};/?:@&=+$,\[\]]|{g.ESCAPED})+")
_ESCAPES_RE = g.LazyPattern(r"(?:%[0-9A-Fa-f]{2})+")
_FIELDS = ("scheme", "user", "password", "host", "port", "params", "headers", "opaque")

# RFC 3261 19.1.4: these parameters, present in only one URI, make them differ.
_SIGNIFICANT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def _parse_params(text: str) -> dict[str, str | None]:
    """``;a=b;c`` -> ``{"a": "b", "c": None}`` (already grammar-checked)."""
    params: dict[str, str | None] = {}
    for part in text[1:].split(";"):
        name, eq, value = part.partition("=")
        params[name.lower()] = value if eq else None
    return params


class URI:
    """A parsed URI. Construct with keyword arguments; ``str()`` serializes.

    ``user`` and ``password`` keep their %-escapes as written; ``host`` is
    lower-case and an IPv6 address has no brackets. URIs of schemes other
    than sip, sips and tel keep everything after ``scheme:`` in ``opaque``.

    A URI is a value: it is hashable (RFC 3261 19.1.4 equality), so do not
    mutate one, use :meth:`replace`. It is a plain slotted class rather than
    a frozen dataclass: a frozen dataclass costs four times as much to build
    (0.95 us against 0.25 us) and the parser builds one for every address it
    reads; and importing ``dataclasses`` costs start-up time on a Pi Zero.
    """

    __slots__ = _FIELDS
    __match_args__ = ("scheme", "user", "password", "host", "port", "params", "headers", "opaque")

    def __init__(
        self,
        scheme: str = "sip",
        user: str | None = None,
        password: str | None = None,
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
        opaque: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params: dict[str, str | None] = {} if params is None else params
        self.headers: dict[str, str] = {} if headers is None else headers
        self.opaque = opaque

    @property
    def transport(self) -> str | None:
        """The lower-cased ``transport`` parameter, if any."""
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def host_port(self) -> str:
        """``host[:port]`` with IPv6 addresses bracketed, e.g. ``[::1]:5060``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    @property
    def is_secure(self) -> bool:
        """True for a sips URI (RFC 3261 19.1: TLS on every hop)."""
        return self.scheme == "sips"

    def replace(self, **changes: Any) -> URI:
        """A copy with the given fields changed (TypeError for an unknown field)."""
        fields = {name: getattr(self, name) for name in _FIELDS}
        unknown = changes.keys() - fields.keys()
        if unknown:
            raise TypeError(f"URI has no field(s) {', '.join(sorted(unknown))}")
        fields.update(changes)
        return URI(**fields)

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        parts = [self.scheme, ":"]
        if self.scheme == "tel":
            parts.append(self.user or "")
        else:
            if self.user is not None:
                parts.append(self.user)
                if self.password is not None:
                    parts += (":", self.password)
                parts.append("@")
            parts.append(self.host_port)
        for name, value in self.params.items():
            parts += (";", name) if value is None else (";", name, "=", value)
        if self.headers:
            parts += ("?", "&".join(f"{k}={v}" for k, v in self.headers.items()))
        return "".join(parts)

    def __repr__(self) -> str:
        return f"URI({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        """RFC 3261 19.1.4 URI comparison."""
        if not isinstance(other, URI):
            return NotImplemented
        if self.scheme != other.scheme:
            return False
        if self.opaque is not None or other.opaque is not None:
            return self.opaque == other.opaque
        if (
            _unescape(self.user) != _unescape(other.user)
            or _unescape(self.password) != _unescape(other.password)
            or self.host != other.host
            or self.port != other.port
        ):
            return False
        mine = {k: _fold(v) for k, v in self.params.items()}
        theirs = {k: _fold(v) for k, v in other.params.items()}
        for name in mine.keys() | theirs.keys():
            if name in mine and name in theirs:
                if mine[name] != theirs[name]:
                    return False
            elif name in _SIGNIFICANT_PARAMS:
                return False
        # Header components are never ignored (names case-insensitive).
        return {k.lower(): _unquote(v) for k, v in self.headers.items()} == {
            k.lower(): _unquote(v) for k, v in other.headers.items()
        }

    def __hash__(self) -> int:
        return hash((self.scheme, _unescape(self.user), self.host, self.port, self.opaque))


def _unquote(value: str, errors: str = "replace") -> str:
    """Decode %-escapes as UTF-8, like ``urllib.parse.unquote`` (which costs an import)."""
    if "%" not in value:
        return value
    return _ESCAPES_RE.compiled.sub(
        lambda m: bytes.fromhex(m[0].replace("%", "")).decode("utf-8", errors), value
    )


def _unescape(value: str | None) -> str | None:
    if value is None or "%" not in value:
        return value
    return _unquote(value, "surrogateescape")


def _fold(value: str | None) -> str | None:
    return None if value is None else _unquote(value).lower()


def parse_uri(text: str) -> URI:
    """Parse a URI (no surrounding whitespace or angle brackets).

    Raises :class:`SipParseError` (status 400) when a sip/sips/tel URI breaks
    the RFC 3261 25.1 / RFC 3966 grammar or another scheme's text is not an
    absoluteURI.
    """
    scheme, colon, rest = text.partition(":")
    if scheme == "sip" or scheme == "sips":
        m = _FAST_SIP_RE.fullmatch(rest)
        if m is not None:
            user, host, port, params = m.groups()
            return URI(
                scheme,
                user,
                None,
                host.lower(),
                None if port is None else int(port),
                _parse_params(params) if params else {},
                {},
            )
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError(f"URI {text[:80]!r} has no valid scheme")
    scheme = scheme.lower()
    if scheme == "sip" or scheme == "sips":
        m = _SIP_RE.fullmatch(rest)
        if m is None:
            raise SipParseError(f"malformed {scheme} URI {text[:80]!r}")
        user, password, host, port, params, headers = m.groups()
        if host[0] == "[":
            host = host[1:-1]
        port_num = None
        if port is not None:
            port_num = int(port)
            if port_num > 65535:
                raise SipParseError(f"port out of range in URI {text[:80]!r}")
        header_map: dict[str, str] = {}
        if headers:
            if not _HEADERS_RE.fullmatch(headers):
                raise SipParseError(f"malformed headers in URI {text[:80]!r}")
            for item in headers[1:].split("&"):
                name, _, value = item.partition("=")
                header_map[name] = value
        return URI(
            scheme,
            user,
            password,
            host.lower(),
            port_num,
            _parse_params(params) if params else {},
            header_map,
        )
    if scheme == "tel":
        m = _TEL_RE.fullmatch(rest)
        if m is None:
            raise SipParseError(f"malformed tel URI {text[:80]!r}")
        number, params = m.groups()
        return URI("tel", number, params=_parse_params(params) if params else {})
    if not _OPAQUE_RE.fullmatch(rest):
        raise SipParseError(f"malformed {scheme} URI {text[:80]!r}")
    return URI(scheme, opaque=rest)
