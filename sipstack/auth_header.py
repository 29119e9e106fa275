"""Values of the WWW-Authenticate, Proxy-Authenticate, Authorization and
Proxy-Authorization header fields: parse and serialize.

This module is syntax only (what the digest arithmetic needs lives in
:mod:`sipstack.digest`). Grammar, RFC 3261 section 25.1::

    challenge   = ("Digest" LWS digest-cln *(COMMA digest-cln)) / other-challenge
    other-challenge = auth-scheme LWS auth-param *(COMMA auth-param)
    auth-param  = auth-param-name EQUAL ( token / quoted-string )
    EQUAL = SWS "=" SWS          COMMA = SWS "," SWS

Unlike HTTP (RFC 7235 section 4.1), one SIP header field value carries exactly
one challenge; a server offering several sends several header fields (RFC 8760
section 2.3). A value that starts a second scheme after a comma is therefore
rejected rather than silently merged.

Parameter names are case-insensitive (RFC 7616 section 3.3/3.4) and are stored
lower-cased, in the order received. Values are stored unquoted and unescaped.
On output, the parameters that RFC 7616 / RFC 3261 define as quoted-string are
always quoted, the ones defined as tokens are written bare (quoted anyway if the
value is not a valid token), and unknown ones are quoted only when needed.
"""

from __future__ import annotations

from collections.abc import Mapping

from sipstack.errors import SipParseError
from sipstack.records import dataclass, field

__all__ = ["Challenge", "Credentials", "parse_challenge", "parse_credentials"]

# RFC 3261 section 25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+"
#                                   / "`" / "'" / "~")
_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
# RFC 3261 section 25.1: LWS/SWS. The message parser has unfolded CRLF+WSP
# already, so a CR or LF that still reaches us is an error.
_WS = " \t"

# RFC 7616 section 3.3 (challenge) and 3.4 (response); RFC 3261 section 25.1.
_CHALLENGE_QUOTED = frozenset({"realm", "domain", "nonce", "opaque", "qop"})
_CHALLENGE_BARE = frozenset({"algorithm", "stale", "charset", "userhash"})
_CREDENTIALS_QUOTED = frozenset(
    {"username", "realm", "nonce", "uri", "response", "cnonce", "opaque"}
)
# RFC 2617 errata 1649 / RFC 7616 3.4: qop and nc are bare tokens in the answer.
_CREDENTIALS_BARE = frozenset({"algorithm", "qop", "nc", "userhash", "username*"})


def _is_token(text: str) -> bool:
    return bool(text) and all(c in _TOKEN_CHARS for c in text)


def _quote(value: str) -> str:
    # RFC 3261 section 25.1: quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F);
    # only DQUOTE and backslash need escaping inside a quoted-string.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _check_fields(scheme: str, params: Mapping[str, str], what: str) -> None:
    """Reject values that cannot be serialized (a programming error: ValueError)."""
    if not _is_token(scheme):
        raise ValueError(f"{what} scheme {scheme!r} is not a token")
    for name, value in params.items():
        if not _is_token(name) or name != name.lower():
            raise ValueError(f"{what} parameter name {name!r} is not a lower-case token")
        # CR and LF cannot be carried even as quoted-pairs (RFC 3261 section 25.1).
        if "\r" in value or "\n" in value or "\x00" in value:
            raise ValueError(f"{what} parameter {name!r} holds CR, LF or NUL")


def _serialize(
    scheme: str, params: Mapping[str, str], quoted: frozenset[str], bare: frozenset[str]
) -> str:
    parts = []
    for name, value in params.items():
        if name in quoted or (name not in bare and not _is_token(value)):
            parts.append(f"{name}={_quote(value)}")
        elif _is_token(value):
            parts.append(f"{name}={value}")
        else:
            # A token-typed parameter with a non-token value: quoting keeps the
            # header well-formed; the peer will judge the value itself.
            parts.append(f"{name}={_quote(value)}")
    return f"{scheme} {', '.join(parts)}" if parts else scheme


@dataclass(frozen=True, slots=True)
class Challenge:
    """One WWW-Authenticate / Proxy-Authenticate value (RFC 3261 section 22).

    ``scheme`` is kept as received (compare it case-insensitively, see
    :attr:`is_digest`); ``params`` maps lower-cased names to unquoted values.
    """

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_fields(self.scheme, self.params, "challenge")

    @property
    def is_digest(self) -> bool:
        """True for the Digest scheme (auth-scheme is case-insensitive, RFC 7235 2.1)."""
        return self.scheme.lower() == "digest"

    def __str__(self) -> str:
        return _serialize(self.scheme, self.params, _CHALLENGE_QUOTED, _CHALLENGE_BARE)


@dataclass(frozen=True, slots=True)
class Credentials:
    """One Authorization / Proxy-Authorization value (RFC 3261 section 22).

    Same shape as :class:`Challenge`. Build it with lower-case parameter names
    in the order they should be written.
    """

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_fields(self.scheme, self.params, "credentials")

    @property
    def is_digest(self) -> bool:
        """True for the Digest scheme (auth-scheme is case-insensitive, RFC 7235 2.1)."""
        return self.scheme.lower() == "digest"

    def __str__(self) -> str:
        return _serialize(self.scheme, self.params, _CREDENTIALS_QUOTED, _CREDENTIALS_BARE)


class _Scanner:
    """A cursor over one header value; errors carry the SIP status to answer with."""

    def __init__(self, text: str, status: int | None) -> None:
        self.text = text
        self.pos = 0
        self.status = status

    def fail(self, reason: str) -> SipParseError:
        return SipParseError(f"{reason} at offset {self.pos} in {self.text!r}", self.status)

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> bool:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1
        return self.pos > start

    def token(self, what: str) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TOKEN_CHARS:
            self.pos += 1
        if self.pos == start:
            raise self.fail(f"expected {what}")
        return self.text[start : self.pos]

    def quoted_string(self) -> str:
        # RFC 3261 section 25.1: quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE
        assert self.text[self.pos] == '"'
        self.pos += 1
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise self.fail("unterminated quoted-string")
            c = self.text[self.pos]
            if c == '"':
                self.pos += 1
                return "".join(out)
            if c == "\\":
                if self.pos + 1 >= len(self.text):
                    raise self.fail("backslash at end of quoted-string")
                nxt = self.text[self.pos + 1]
                # CR/LF cannot be escaped (RFC 3261 25.1); NUL in a realm or nonce
                # would only ever be an attack on a C peer, so it is refused too.
                if nxt in "\r\n\x00" or ord(nxt) > 0x7F:
                    raise self.fail("invalid quoted-pair")
                out.append(nxt)
                self.pos += 2
                continue
            # qdtext excludes controls other than LWS.
            if (ord(c) < 0x20 and c not in "\t") or c == "\x7f":
                raise self.fail(f"control character {c!r} in quoted-string")
            out.append(c)
            self.pos += 1


def _parse(value: str, status: int | None, what: str) -> tuple[str, dict[str, str]]:
    s = _Scanner(value, status)
    s.skip_ws()
    scheme = s.token(f"{what} auth-scheme")
    params: dict[str, str] = {}
    if s.at_end():
        return scheme, params
    if not s.skip_ws():
        raise s.fail("expected whitespace after auth-scheme")
    if s.at_end():
        return scheme, params
    while True:
        # Tolerate empty list elements ("a=1, , b=2"), as RFC 7230 section 7 asks.
        if s.peek() == ",":
            s.pos += 1
            s.skip_ws()
            if s.at_end():
                break
            continue
        name_at = s.pos
        name = s.token("auth-param name").lower()
        s.skip_ws()
        if s.peek() != "=":
            if s.peek() == "" or s.peek() == ",":
                raise s.fail(f"auth-param {name!r} has no value")
            # "Digest realm=a, Basic realm=b": a second challenge on one line.
            raise s.fail("expected '=' (several challenges in one header value?)")
        s.pos += 1
        s.skip_ws()
        if s.peek() == '"':
            param_value = s.quoted_string()
        else:
            param_value = s.token(f"value of auth-param {name!r}")
        if name in params:
            # RFC 7616 section 3.3: each parameter must occur only once.
            s.pos = name_at
            raise s.fail(f"duplicate auth-param {name!r}")
        params[name] = param_value
        s.skip_ws()
        if s.at_end():
            break
        if s.peek() != ",":
            raise s.fail("expected ',' between auth-params")
        s.pos += 1
        s.skip_ws()
        if s.at_end():
            break
    return scheme, params


def parse_challenge(value: str) -> Challenge:
    """Parse one WWW-Authenticate / Proxy-Authenticate header value.

    Raises :class:`SipParseError` with ``status=None``: a challenge arrives in a
    response, which is never answered.
    """
    scheme, params = _parse(value, None, "challenge")
    return Challenge(scheme, params)


def parse_credentials(value: str) -> Credentials:
    """Parse one Authorization / Proxy-Authorization header value.

    Raises :class:`SipParseError` with ``status=400`` (the request carrying it
    is malformed, RFC 3261 section 21.4.1).
    """
    scheme, params = _parse(value, 400, "credentials")
    return Credentials(scheme, params)
