"""Typed header accessors shared by requests and responses.

Each accessor parses its header on first use (``Headers._typed``) and keeps
the value until that header changes. The parse functions are module-level so
that they can serve as cache keys. The values the transaction layer reads on
every message (top Via, From, To, CSeq, Call-ID) are cached in slots of
``Headers`` instead, and built from the values the parser's ``HEAD_RE``
captured (``Headers._checked``) with string methods; from the fields only
when the message was built by hand, changed, or spelled unusually.
"""

from __future__ import annotations

from collections.abc import Callable

from ._validate import delta_seconds
from .errors import SipParseError
from .headers import CSeq, Headers, NameAddr, Via, split_list

TYPE_CHECKING = False  # mypy honours any name TYPE_CHECKING; typing is not imported
if TYPE_CHECKING:
    from .auth_header import Challenge, Credentials

__all__ = ["HeaderAccessors", "required_header"]


# -- typed accessor parsers (module functions so they are cache keys) -----------------

_KEYS = {n: n.lower() for n in ("Via", "From", "To", "Call-ID", "CSeq")}


def required_header(h: Headers, name: str) -> str:
    """The first value of a mandatory header; LookupError when it is missing."""
    value = h._first(_KEYS.get(name) or name.lower())
    if value is None:
        raise LookupError(f"message has no {name} header")
    return value


def _vias(h: Headers) -> list[Via]:
    return [Via.parse(item) for item in h.get_all("Via")]


def _top_via(h: Headers) -> Via:
    hot = h._hot
    if hot is not None:  # what HEAD_RE captured: see Headers._checked
        return Via._checked(hot[0], hot[1], hot[2], hot[3], hot[4])
    value = required_header(h, "Via")
    return Via.parse(value if "," not in value else split_list(value)[0])


def _from(h: Headers) -> NameAddr:
    hot = h._hot
    if hot is not None:
        return NameAddr._checked(hot[5], hot[6])
    return NameAddr.parse(required_header(h, "From"))


def _to(h: Headers) -> NameAddr:
    hot = h._hot
    if hot is not None:
        return NameAddr._checked(hot[7], hot[8])
    return NameAddr.parse(required_header(h, "To"))


def _cseq(h: Headers) -> CSeq:
    hot = h._hot
    if hot is not None:
        return CSeq(int(hot[10]), hot[11])
    return CSeq.parse(required_header(h, "CSeq"))


def _address_list(name: str) -> Callable[[Headers], list[NameAddr]]:
    def parse(h: Headers) -> list[NameAddr]:
        return [NameAddr.parse(item) for item in h.get_all(name) if item != "*"]

    parse.__name__ = f"_parse_{name}"
    return parse


_contacts = _address_list("Contact")
_routes = _address_list("Route")
_record_routes = _address_list("Record-Route")


def _int_header(name: str) -> Callable[[Headers], int | None]:
    def parse(h: Headers) -> int | None:
        value = h.get(name)
        if value is None:
            return None
        number = delta_seconds(value.split(None, 1)[0].split(";", 1)[0] if value else value)
        if number is None:
            raise SipParseError(f"malformed {name} {value[:40]!r}")
        return number

    return parse


_max_forwards = _int_header("Max-Forwards")
_expires = _int_header("Expires")
_min_expires = _int_header("Min-Expires")
_content_length = _int_header("Content-Length")
_retry_after = _int_header("Retry-After")


def _challenges(name: str) -> Callable[[Headers], list[Challenge]]:
    def parse(h: Headers) -> list[Challenge]:
        from .auth_header import parse_challenge  # lazy: owned by the digest module

        return [parse_challenge(v) for v in h.get_all(name)]

    return parse


def _credentials(name: str) -> Callable[[Headers], list[Credentials]]:
    def parse(h: Headers) -> list[Credentials]:
        from .auth_header import parse_credentials  # lazy: owned by the digest module

        return [parse_credentials(v) for v in h.get_all(name)]

    return parse


_www_authenticate = _challenges("WWW-Authenticate")
_proxy_authenticate = _challenges("Proxy-Authenticate")
_authorization = _credentials("Authorization")
_proxy_authorization = _credentials("Proxy-Authorization")


class HeaderAccessors:
    """Typed views of the headers of a message (RFC 3261 20).

    A missing mandatory header (Via, From, To, Call-ID, CSeq) raises
    ``LookupError``; ``parse_message`` guarantees they are present.
    Challenge and credential parsing is ``sipstack.auth_header``'s, imported
    on first use.
    """

    __slots__ = ()

    headers: Headers

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first."""
        return self.headers._typed("via", _vias)

    # The hot accessors cache in Headers slots (cleared by Headers._changed):
    # cheaper than the generic cache of the others.

    @property
    def top_via(self) -> Via:
        """The first Via value (RFC 3261 17.2.3 transaction matching)."""
        h = self.headers
        via = h._via1
        if via is None:
            via = h._via1 = _top_via(h)
        return via

    @property
    def from_(self) -> NameAddr:
        """The From header."""
        h = self.headers
        value = h._from
        if value is None:
            value = h._from = _from(h)
        return value

    @property
    def to(self) -> NameAddr:
        """The To header."""
        h = self.headers
        value = h._to
        if value is None:
            value = h._to = _to(h)
        return value

    @property
    def call_id(self) -> str:
        """The Call-ID header."""
        h = self.headers
        hot = h._hot
        if hot is not None:
            return hot[9]
        value = h._first("call-id")
        if value is None:
            raise LookupError("message has no Call-ID header")
        return value

    @property
    def cseq(self) -> CSeq:
        """The CSeq header."""
        h = self.headers
        value = h._cseq
        if value is None:
            value = h._cseq = _cseq(h)
        return value

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact addresses (empty for ``Contact: *``)."""
        return self.headers._typed("contact", _contacts)

    @property
    def contact_star(self) -> bool:
        """True for ``Contact: *`` (RFC 3261 10.2.2 remove all bindings)."""
        return self.headers.get("Contact") == "*"

    @property
    def routes(self) -> list[NameAddr]:
        """Route values in order."""
        return self.headers._typed("route", _routes)

    @property
    def record_routes(self) -> list[NameAddr]:
        """Record-Route values in order."""
        return self.headers._typed("record-route", _record_routes)

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards, or None when absent."""
        return self.headers._typed("max-forwards", _max_forwards)

    @property
    def expires(self) -> int | None:
        """Expires in seconds, or None."""
        return self.headers._typed("expires", _expires)

    @property
    def min_expires(self) -> int | None:
        """Min-Expires in seconds, or None."""
        return self.headers._typed("min-expires", _min_expires)

    @property
    def content_type(self) -> str | None:
        """The Content-Type value as written (parameters included), or None."""
        return self.headers.get("Content-Type")

    @property
    def content_length(self) -> int | None:
        """The Content-Length header as received, or None (``len(body)`` is the truth)."""
        return self.headers._typed("content-length", _content_length)

    @property
    def www_authenticate(self) -> list[Challenge]:
        """WWW-Authenticate challenges (RFC 3261 22.3)."""
        return self.headers._typed("www-authenticate", _www_authenticate)

    @property
    def proxy_authenticate(self) -> list[Challenge]:
        """Proxy-Authenticate challenges."""
        return self.headers._typed("proxy-authenticate", _proxy_authenticate)

    @property
    def authorization(self) -> list[Credentials]:
        """Authorization credentials."""
        return self.headers._typed("authorization", _authorization)

    @property
    def proxy_authorization(self) -> list[Credentials]:
        """Proxy-Authorization credentials."""
        return self.headers._typed("proxy-authorization", _proxy_authorization)

    @property
    def event(self) -> str | None:
        """The Event header as written (RFC 6665), or None."""
        return self.headers.get("Event")

    @property
    def subscription_state(self) -> str | None:
        """The Subscription-State header as written, or None."""
        return self.headers.get("Subscription-State")

    @property
    def sip_etag(self) -> str | None:
        """SIP-ETag (RFC 3903), or None."""
        return self.headers.get("SIP-ETag")

    @property
    def sip_if_match(self) -> str | None:
        """SIP-If-Match (RFC 3903), or None."""
        return self.headers.get("SIP-If-Match")

    @property
    def allow(self) -> list[str]:
        """Allowed methods."""
        return self.headers.get_all("Allow")

    @property
    def supported(self) -> list[str]:
        """Supported option tags."""
        return self.headers.get_all("Supported")

    @property
    def require(self) -> list[str]:
        """Required option tags."""
        return self.headers.get_all("Require")

    @property
    def unsupported(self) -> list[str]:
        """Unsupported option tags (in a 420)."""
        return self.headers.get_all("Unsupported")

    @property
    def retry_after(self) -> int | None:
        """Retry-After seconds (comment and parameters dropped), or None."""
        return self.headers._typed("retry-after", _retry_after)

    @property
    def user_agent(self) -> str | None:
        """User-Agent as written, or None."""
        return self.headers.get("User-Agent")

    @property
    def server(self) -> str | None:
        """Server as written, or None."""
        return self.headers.get("Server")
