"""Header fields: the ordered multi-map ``Headers`` and typed header values.

Typed values (``NameAddr``, ``Via``, ``CSeq``) are small mutable value classes
(constructor, fields, ``==`` and ``repr`` as dataclasses would have them) with
``parse`` classmethods raising :class:`SipParseError` and a ``__str__`` that
serializes them back to a header value. Parameter names are lower-cased;
parameter values are kept as written (a quoted value keeps its quotes, so it
serializes back unchanged).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator

from . import _grammar as g
from .errors import SipParseError
from .uri import URI, parse_uri

# typing is only needed by type checkers; mypy honours any name TYPE_CHECKING.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self, TypeVar

    T = TypeVar("T")
    # What HEAD_RE captured, as Headers._checked describes it.
    HotValues = tuple[
        str, str, str | None, str, str | None,  # Via transport, host, port, params, branch
        str, str | None, str, str | None,  # From, its tag, To, its tag
        str, str, str, str | None,  # Call-ID, CSeq number and method, Content-Length
    ]  # fmt: skip

__all__ = [
    "CSeq",
    "Headers",
    "NameAddr",
    "Via",
    "canonical_name",
    "quote",
    "split_list",
    "unquote",
]

# Canonical spelling of well-known header names, keyed by lower-case name,
# including the compact forms (RFC 3261 7.3.3 / 20, RFC 3265, RFC 3515, RFC 4028).
_CANONICAL: dict[str, str] = {
    n.lower(): n
    for n in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info",
        "Allow", "Allow-Events", "Authentication-Info", "Authorization", "Call-ID",
        "Call-Info", "Contact", "Content-Disposition", "Content-Encoding",
        "Content-Language", "Content-Length", "Content-Type", "CSeq", "Date", "Error-Info",
        "Event", "Expires", "From", "Identity", "Identity-Info", "In-Reply-To",
        "Max-Forwards", "MIME-Version", "Min-Expires", "Min-SE", "Organization",
        "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority", "Privacy",
        "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
        "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces",
        "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq",
        "Server", "Service-Route", "Session-Expires", "SIP-ETag", "SIP-If-Match",
        "Subject", "Subscription-State", "Supported", "Timestamp", "To", "Unsupported",
        "User-Agent", "Via", "Warning", "WWW-Authenticate",
    )
}  # fmt: skip
_COMPACT = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact",
    "k": "Supported", "l": "Content-Length", "m": "Contact", "n": "Identity-Info",
    "o": "Event", "r": "Refer-To", "s": "Subject", "t": "To", "u": "Allow-Events",
    "v": "Via", "x": "Session-Expires", "y": "Identity",
}  # fmt: skip
_CANONICAL.update(_COMPACT)
# name as commonly written -> canonical, to skip .lower() on the hot path.
_FAST = dict(_CANONICAL)
_FAST.update({n: n for n in _CANONICAL.values()})
_FAST.update({c.upper(): n for c, n in _COMPACT.items()})

# Headers whose value is a comma-separated list (RFC 3261 7.3.1); get_all splits them.
LIST_HEADERS = frozenset(
    (
        "Accept", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow", "Allow-Events",
        "Call-Info", "Contact", "Content-Encoding", "Content-Language", "Error-Info",
        "In-Reply-To", "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Proxy-Require",
        "Record-Route", "Require", "Route", "Service-Route", "Supported", "Unsupported",
        "Via", "Warning",
    )
)  # fmt: skip


def canonical_name(name: str) -> str:
    """The canonical long form of a header name (``v`` -> ``Via``); unknown names as given."""
    known = _FAST.get(name)
    if known is not None:
        return known
    return _CANONICAL.get(name.lower(), name)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value; commas inside quotes or <> do not split."""
    if '"' not in value and "<" not in value:
        return [item.strip() for item in value.split(",") if item.strip()]
    return [item.strip() for item in g.LIST_ITEM_RE.compiled.findall(value) if item.strip()]


def unquote(value: str) -> str:
    """Remove the quotes and quoted-pair escapes of a quoted-string; other text as is."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        inner = value[1:-1]
        return re.sub(r"\\(.)", r"\1", inner, flags=re.S) if "\\" in inner else inner
    return value


#: Characters qdtext does not admit but quoted-pair does (RFC 3261 25.1): the
#: controls other than HTAB, LF and CR, and DEL. LF and CR cannot be quoted at all.
_NEEDS_QUOTED_PAIR = re.compile(r'[\\"\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def quote(value: str) -> str:
    """Make a quoted-string, escaping ``"``, ``\\`` and controls (RFC 3261 25.1 quoted-pair).

    A display name parsed from ``"NUL:\\<NUL>"`` (RFC 4475 intmeth) must be
    written back the same way: a raw NUL or BEL is not qdtext.
    """
    return '"' + _NEEDS_QUOTED_PAIR.sub(lambda m: "\\" + m.group(), value) + '"'


def _split_params(text: str) -> dict[str, str | None]:
    """``;a=b ; c`` (leading ';' optional) -> ordered dict, names lower-cased."""
    params: dict[str, str | None] = {}
    parts = text.split(";") if '"' not in text else _split_quoted(text, ";")
    for part in parts:
        name, eq, value = part.partition("=")
        name = name.strip()
        if name:
            params[name.lower()] = value.strip() if eq else None
    return params


def _fast_params(text: str) -> dict[str, str | None]:
    """``;a=b;c`` matched by a fast pattern (no whitespace) -> ordered dict."""
    if '"' in text:
        return _split_params(text)
    params: dict[str, str | None] = {}
    for part in text[1:].split(";"):
        name, eq, value = part.partition("=")
        params[name.lower()] = value if eq else None
    return params


def _split_quoted(text: str, sep: str) -> list[str]:
    out: list[str] = []
    start = 0
    in_quote = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch == sep:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


# -- typed values ----------------------------------------------------------------
# Hand-written slotted classes rather than dataclasses: the same constructor,
# fields, ``==`` and ``repr``, but importing ``dataclasses`` (which imports
# ``inspect``) and generating the methods cost start-up time, and NameAddr and
# Via build their parameter dict (and NameAddr its URI) only when asked: the
# parser hands them the text the grammar check already captured, and the
# transaction layer mostly reads just the tag or the branch.

_NAME_ADDR_RE = g.LazyPattern(
    rf"(?:({g.QSTRING})|({g.TOKEN}(?:{g.LWS}{g.TOKEN})*))?{g.WS}<([^>]*)>{g.WS}((?s:.*))"
)
_VIA_RE = g.LazyPattern(
    rf"({g.TOKEN}{g.SLASH}{g.TOKEN}){g.SLASH}({g.TOKEN}){g.LWS}({g.HOST})"
    rf"(?:{g.COLON}({g.PORT}))?{g.WS}((?s:.*))"
)


class NameAddr:
    """An address with optional display name and header parameters (RFC 3261 20.10).

    Used for From, To, Contact, Route and Record-Route. ``display_name`` is
    unquoted; ``params`` are header parameters (``tag``, ``expires``, ``q``...).
    Construct as ``NameAddr(uri, display_name=None, params=None)``; fields
    may be reassigned. Equality compares the three fields.
    """

    __slots__ = ("_value", "_tag", "_uri", "_display", "_params")
    __match_args__ = ("uri", "display_name", "params")

    def __init__(
        self,
        uri: URI,
        display_name: str | None = None,
        params: dict[str, str | None] | None = None,
    ) -> None:
        # A From / To value the parser checked, split into the fields below on
        # first use (see _checked); None once split or when built from fields.
        self._value: str | None = None
        self._tag: str | None = None  # with _value: see _checked
        self._uri = uri
        self._display = display_name
        self._params: dict[str, str | None] = {} if params is None else params

    @classmethod
    def _checked(cls, value: str, tag: str | None) -> Self:
        """A lazy NameAddr for a From / To value that matched HEAD_RE, with its tag.

        The transaction layer mostly reads only the tag (what ``params["tag"]``
        will hold: _grammar._params_strict); the URI, display name and
        parameter dict are built when first asked for.
        """
        self = cls.__new__(cls)
        self._value = value
        self._tag = tag
        return self

    def _split(self, value: str) -> None:
        m = g.ADDRESS_PARTS_RE.fullmatch(value)
        assert m is not None, "HEAD_RE accepted it"
        quoted, tokens, uri_text, spec, params = m.groups()
        # The fast pattern admits no escapes in quotes and single spaces only.
        self._uri = parse_uri(uri_text or spec)
        self._display = quoted if quoted is not None else tokens
        self._params = _fast_params(params) if params else {}
        self._value = None

    @property
    def uri(self) -> URI:
        """The address's URI."""
        if self._value is not None:
            self._split(self._value)
        return self._uri

    @uri.setter
    def uri(self, uri: URI) -> None:
        if self._value is not None:
            self._split(self._value)
        self._uri = uri

    @property
    def display_name(self) -> str | None:
        """The display name, unquoted, or None."""
        if self._value is not None:
            self._split(self._value)
        return self._display

    @display_name.setter
    def display_name(self, display_name: str | None) -> None:
        if self._value is not None:
            self._split(self._value)
        self._display = display_name

    @property
    def params(self) -> dict[str, str | None]:
        """Header parameters, names lower-cased, values as written."""
        if self._value is not None:
            self._split(self._value)
        return self._params

    @params.setter
    def params(self, params: dict[str, str | None]) -> None:
        if self._value is not None:
            self._split(self._value)
        self._params = params

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (RFC 3261 19.3), or None."""
        if self._value is not None:
            return self._tag
        return self._params.get("tag")

    @classmethod
    def parse(cls, value: str) -> Self:
        """Parse one name-addr or addr-spec with parameters."""
        m = g.ADDRESS_PARTS_RE.fullmatch(value)
        if m is not None:
            quoted, tokens, uri_text, spec, params = m.groups()
            name = quoted if quoted is not None else tokens
            return cls(parse_uri(uri_text or spec), name, _fast_params(params) if params else {})
        value = value.strip()
        if not g.ADDRESS_FULL.fullmatch(value):
            raise SipParseError(f"malformed address {value[:80]!r}")
        m = _NAME_ADDR_RE.fullmatch(value)
        if m is not None:
            quoted, tokens, uri_text, rest = m.groups()
            if quoted is not None:
                display: str | None = unquote(quoted)
            elif tokens is not None:
                display = " ".join(tokens.split())
            else:
                display = None
            return cls(parse_uri(uri_text), display, _split_params(rest) if rest else {})
        # addr-spec form: ';' starts header parameters (RFC 3261 20.10).
        uri_text, _, rest = value.partition(";")
        return cls(parse_uri(uri_text.strip()), None, _split_params(rest) if rest else {})

    @classmethod
    def parse_list(cls, value: str) -> list[Self]:
        """Parse a comma-separated list (Contact, Route, Record-Route)."""
        return [cls.parse(item) for item in split_list(value)]

    def with_tag(self, tag: str) -> NameAddr:
        """A copy with the ``tag`` parameter set."""
        params = dict(self.params)
        params["tag"] = tag
        return NameAddr(self.uri, self.display_name, params)

    def __str__(self) -> str:
        display = self.display_name
        head = f"<{self.uri}>" if display is None else f"{quote(display)} <{self.uri}>"
        params = self.params
        return head + _format_params(params) if params else head

    def __repr__(self) -> str:
        return (
            f"NameAddr(uri={self.uri!r}, display_name={self.display_name!r}, "
            f"params={self.params!r})"
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, NameAddr)
        return (self.uri, self.display_name, self.params) == (
            other.uri,
            other.display_name,
            other.params,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces


class Via:
    """One Via value (RFC 3261 20.42, 18.2.1). ``transport`` is upper-case (``UDP``).

    Construct as ``Via(transport, host, port=None, params=None, protocol="SIP/2.0")``;
    fields may be reassigned. Equality compares the five fields.
    """

    __slots__ = ("transport", "host", "port", "protocol", "_params", "_params_text", "_branch")
    __match_args__ = ("transport", "host", "port", "params", "protocol")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.transport = transport
        self.host = host
        self.port = port
        self._params: dict[str, str | None] | None = {} if params is None else params
        self._params_text = ""  # with _branch: see _checked
        self._branch: str | None = None
        self.protocol = protocol

    @property
    def params(self) -> dict[str, str | None]:
        """Via parameters, names lower-cased, values as written."""
        params = self._params
        if params is None:
            text = self._params_text
            params = self._params = _fast_params(text) if text else {}
        return params

    @params.setter
    def params(self, value: dict[str, str | None]) -> None:
        self._params = value

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (RFC 3261 8.1.1.7), or None (RFC 2543 peers)."""
        params = self._params
        return self._branch if params is None else params.get("branch")

    @property
    def received(self) -> str | None:
        """The ``received`` parameter (RFC 3261 18.2.1), brackets of IPv6 removed."""
        value = self.params.get("received")
        if value and value[0] == "[":
            return value[1:-1]
        return value

    @property
    def rport(self) -> int | None:
        """The ``rport`` value filled in by a server (RFC 3581), or None."""
        value = self.params.get("rport")
        return int(value) if value and value.isdigit() else None

    @property
    def rport_requested(self) -> bool:
        """True when a bare ``;rport`` asks the server to fill it in (RFC 3581 3)."""
        params = self.params
        return "rport" in params and params["rport"] is None

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """``(host, port)`` as the sender wrote them; IPv6 without brackets."""
        return self.host, self.port

    @classmethod
    def _checked(
        cls, transport: str, host: str, port: str | None, params: str, branch: str | None
    ) -> Self:
        """The top Via from what HEAD_RE captured; the parameter dict is built later.

        ``branch`` is what ``params["branch"]`` will hold (_grammar._params_strict).
        """
        self = cls.__new__(cls)
        self.transport = transport.upper()
        self.host = host.lower()
        self.port = None if port is None else int(port)
        self.protocol = "SIP/2.0"
        self._params = None
        self._params_text = params
        self._branch = branch
        return self

    @classmethod
    def parse(cls, value: str) -> Self:
        """Parse one via-parm."""
        m = g.VIA_PARM_RE.fullmatch(value)
        if m is not None:
            transport, host, port, params, _ = m.groups()
            return cls(
                transport.upper(),
                host.lower(),
                None if port is None else int(port),
                _fast_params(params) if params else {},
            )
        value = value.strip()
        if not g.VIA_FULL.fullmatch(value) or "," in _strip_quoted(value):
            raise SipParseError(f"malformed Via {value[:80]!r}")
        m = _VIA_RE.fullmatch(value)
        if m is None:  # pragma: no cover - VIA_FULL accepted it
            raise SipParseError(f"malformed Via {value[:80]!r}")
        protocol, transport, host, port, rest = m.groups()
        if host[0] == "[":
            host = host[1:-1]
        port_num = int(port) if port is not None else None
        protocol = "".join(protocol.split()).upper()
        return cls(
            transport.upper(),
            host.lower(),
            port_num,
            _split_params(rest) if rest else {},
            protocol,
        )

    @classmethod
    def parse_list(cls, value: str) -> list[Self]:
        """Parse a comma-separated Via value."""
        return [cls.parse(item) for item in split_list(value)]

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        sent_by = host if self.port is None else f"{host}:{self.port}"
        return f"{self.protocol}/{self.transport} {sent_by}{_format_params(self.params)}"

    def __repr__(self) -> str:
        return (
            f"Via(transport={self.transport!r}, host={self.host!r}, port={self.port!r}, "
            f"params={self.params!r}, protocol={self.protocol!r})"
        )

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, Via)
        return (self.transport, self.host, self.port, self.params, self.protocol) == (
            other.transport,
            other.host,
            other.port,
            other.params,
            other.protocol,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces


def _strip_quoted(value: str) -> str:
    return re.sub(g.QSTRING, "", value) if '"' in value else value


class CSeq:
    """The CSeq header (RFC 3261 20.16): sequence number and method."""

    __slots__ = ("seq", "method")
    __match_args__ = ("seq", "method")

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    @classmethod
    def parse(cls, value: str) -> Self:
        """Parse ``"<seq> <METHOD>"``; the number must fit in 32 bits (RFC 3261 8.1.1.5)."""
        value = value.strip()
        # Both check the 32-bit range and capture (seq, method).
        m = g.CSEQ_RE.fullmatch(value) or g.CSEQ_FULL.fullmatch(value)
        if m is None:
            raise SipParseError(f"malformed CSeq {value[:80]!r}")
        seq, method = m.groups()
        return cls(int(seq), method)

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq(seq={self.seq!r}, method={self.method!r})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        assert isinstance(other, CSeq)
        return self.seq == other.seq and self.method == other.method

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces


# -- the multi-map -------------------------------------------------------------------

# Headers whose typed value the accessors build from what the parser captured
# -> the Headers slot caching it ("" for none). Changing one of them drops the
# captured values (the fields are split by then) and that slot.
_HOT_SLOTS = {"via": "_via1", "from": "_from", "to": "_to", "cseq": "_cseq", "call-id": ""}
# Name as commonly written -> (key, canonical name).
_KEY_NAME = {name: (canon.lower(), canon) for name, canon in _FAST.items()}


def _split_checked(text: str) -> list[tuple[str, str, str]]:
    """Fields of header lines that passed HEAD_RE (see ``Headers._checked``)."""
    items = []
    known = _KEY_NAME
    for line in text[:-2].split("\r\n"):
        name, _, value = line.partition(": ")
        key_name = known.get(name)
        if key_name is None:
            lower = name.lower()
            canon = _CANONICAL.get(lower)
            key_name = (lower, name) if canon is None else (canon.lower(), canon)
        items.append((*key_name, value))
    return items


class Headers:
    """An ordered multi-map of ``(name, value)`` header fields.

    Known names are stored in their canonical long form (``v`` -> ``Via``);
    unknown names are kept verbatim and in order. Look-ups are
    case-insensitive. Typed views of a header (see :meth:`typed`) are cached
    and dropped when that header changes.
    """

    __slots__ = ("_list", "_text", "_hot", "_cache", "_via1", "_from", "_to", "_cseq")

    def __init__(self, items: Iterable[tuple[str, str]] | None = None) -> None:
        # (lower-case key, name as stored, value); None until _text is split.
        self._list: list[tuple[str, str, str]] | None = []
        self._text = ""
        # What the parser captured (see _checked) while those headers are unchanged.
        self._hot: HotValues | None = None
        self._cache: dict[str, dict[Callable[[Headers], Any], Any]] = {}
        # Typed values of the hot headers, cached (see _HOT_SLOTS).
        self._via1: Via | None = None
        self._from: NameAddr | None = None
        self._to: NameAddr | None = None
        self._cseq: CSeq | None = None
        if items is not None:
            for name, value in items:
                self.add(name, value)

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str, str]]) -> Headers:
        """Adopt ``(key, name, value)`` triples built by the parser (no re-checks)."""
        self = cls.__new__(cls)
        self._list = items
        self._text = ""
        self._hot = self._via1 = self._from = self._to = self._cseq = None
        self._cache = {}
        return self

    @classmethod
    def _checked(cls, text: str, hot: HotValues) -> Headers:
        """Adopt header lines that matched HEAD_RE, split into fields on first use.

        Every line of ``text`` is ``Name: value\r\n`` with the usual spelling
        of the name and no whitespace around the value. ``hot`` holds what
        HEAD_RE captured (``_validate.HEAD_GROUPS``): 0-4 transport, host,
        port, parameters and branch of the top Via; 5-6 From and its tag;
        7-8 To and its tag; 9 Call-ID; 10-11 CSeq number and method; 12
        Content-Length.
        """
        self = cls.__new__(cls)
        self._list = None
        self._text = text
        self._hot = hot
        self._via1 = self._from = self._to = self._cseq = None
        self._cache = {}
        return self

    @property
    def _items(self) -> list[tuple[str, str, str]]:
        items = self._list
        if items is None:
            items = self._list = _split_checked(self._text)
        return items

    @_items.setter
    def _items(self, items: list[tuple[str, str, str]]) -> None:
        self._list = items

    def _changed(self, key: str) -> None:
        """Drop what was derived from header ``key``."""
        self._cache.pop(key, None)
        slot = _HOT_SLOTS.get(key)
        if slot is not None:
            self._hot = None
            if slot:
                setattr(self, slot, None)

    @staticmethod
    def _key(name: str) -> str:
        known = _FAST.get(name)
        if known is not None:
            return known.lower()
        lower = name.lower()
        known = _CANONICAL.get(lower)
        return known.lower() if known is not None else lower

    @staticmethod
    def _check(name: str, value: str) -> None:
        # The caller's misuse, not a peer's: raise ValueError, never SipParseError.
        if not g.TOKEN_RE.fullmatch(name):
            raise ValueError(f"header name {name!r} is not a token")
        if "\r" in value or "\n" in value:
            raise ValueError(f"header {name} value contains CR or LF")
        # RFC 3261 25.1: a NUL is legal only as a quoted-pair ("\\\x00" in a
        # quoted display name, RFC 4475 3.1.1.3 intmeth). The parser accepts
        # that, so a response copying such a To must be buildable too.
        if "\x00" in value and g.BARE_NUL_RE.search(value):
            raise ValueError(f"header {name} value contains a NUL outside a quoted-pair")

    def get(self, name: str) -> str | None:
        """The first value of ``name``, or None."""
        return self._first(self._key(name))

    def _first(self, key: str) -> str | None:
        for k, _, v in self._items:
            if k == key:
                return v
        return None

    def get_all(self, name: str) -> list[str]:
        """All values of ``name`` in order; comma lists are split for list headers."""
        key = self._key(name)
        values = [v for k, _, v in self._items if k == key]
        if canonical_name(name) in LIST_HEADERS:
            return [item for v in values for item in split_list(v)]
        return values

    def set(self, name: str, value: str) -> None:
        """Replace all ``name`` fields with one (kept at the first one's position)."""
        self._check(name, value)
        key = self._key(name)
        entry = (key, canonical_name(name), value)
        items = self._items
        for i, item in enumerate(items):
            if item[0] == key:
                items[i] = entry
                self._items = items[: i + 1] + [it for it in items[i + 1 :] if it[0] != key]
                break
        else:
            items.append(entry)
        self._changed(key)

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        self._check(name, value)
        key = self._key(name)
        self._items.append((key, canonical_name(name), value))
        self._changed(key)

    def prepend(self, name: str, value: str) -> None:
        """Insert a field before all others (a proxy's or UAC's new top Via)."""
        self._check(name, value)
        key = self._key(name)
        self._items.insert(0, (key, canonical_name(name), value))
        self._changed(key)

    def remove(self, name: str) -> None:
        """Delete every ``name`` field (no error if absent)."""
        key = self._key(name)
        self._items = [it for it in self._items if it[0] != key]
        self._changed(key)

    def typed(self, name: str, parse: Callable[[Headers], T]) -> T:
        """``parse(self)``, cached until header ``name`` changes.

        The typed accessors of messages use this; a cached value is a view, so
        change a header through :meth:`set` / :meth:`add`, not by mutating it.
        """
        return self._typed(self._key(name), parse)

    def _typed(self, key: str, parse: Callable[[Headers], T]) -> T:
        """:meth:`typed` for a key already lower-cased and canonical."""
        slot = self._cache.get(key)
        if slot is None:
            value = parse(self)
            self._cache[key] = {parse: value}
            return value
        if parse in slot:  # not try/except: a raised KeyError costs more than a parse
            return slot[parse]  # type: ignore[no-any-return]
        value = slot[parse] = parse(self)
        return value

    def copy(self) -> Headers:
        """An independent copy (typed views are not shared)."""
        if self._list is None:
            assert self._hot is not None
            return Headers._checked(self._text, self._hot)
        return Headers._from_parsed(list(self._list))

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._key(name)
        return any(k == key for k, _, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((n, v) for _, n, v in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"
