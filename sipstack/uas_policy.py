"""What a user agent server checks before it looks at a request's meaning.

RFC 3261 8.2 in its order: method inspection (8.2.1: 405/501), header
inspection (8.2.2: 416 for a Request-URI scheme we do not handle, 400 when a
mandatory header is unusable, 420 for an unsupported Require), content
processing (8.2.3: 415 for a body type we cannot read). RFC 4475 section 3.3
lists the torture messages that exercise each of these answers.
"""

from __future__ import annotations

from collections.abc import Collection

from .errors import SipParseError
from .message import Request, Response, make_response
from .records import dataclass, field

__all__ = ["UasPolicy", "KNOWN_METHODS"]

#: Methods of RFC 3261 and its common extensions: an unknown method gets 501,
#: a known one we do not serve 405 (RFC 3261 8.2.1, 21.4.6, 21.5.2).
KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    }
)


@dataclass(frozen=True)
class UasPolicy:
    """What this user agent serves: methods, URI schemes, extensions, body types.

    ``accept`` maps a method to the body types it understands (a method not
    listed takes no body at all, e.g. OPTIONS, whose body is ignored).
    """

    allow: tuple[str, ...] = (
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "MESSAGE",
        "SUBSCRIBE",
        "NOTIFY",
        "INFO",
        "UPDATE",
    )
    schemes: frozenset[str] = frozenset({"sip", "sips"})
    supported: tuple[str, ...] = ("replaces", "timer")
    accept: dict[str, Collection[str]] = field(
        default_factory=lambda: {
            "INVITE": ("application/sdp",),
            "UPDATE": ("application/sdp",),
            "MESSAGE": ("text/plain", "text/html", "application/im-iscomposing+xml"),
            "NOTIFY": (
                "application/pidf+xml",
                "application/simple-message-summary",
                "message/sipfrag",
            ),
            "INFO": ("application/dtmf-relay", "application/dtmf"),
        }
    )

    def check(self, request: Request) -> Response | None:
        """The error response RFC 3261 8.2 requires, or None when the request may proceed.

        ACK is never answered (RFC 3261 17.2.3); CANCEL skips content checks.
        """
        method = request.method
        if method == "ACK":
            return None
        if method not in self.allow:
            if method in KNOWN_METHODS:
                resp = make_response(request, 405)
            else:
                resp = make_response(request, 501)
            resp.headers.set("Allow", ", ".join(self.allow))
            return resp
        if request.uri.scheme not in self.schemes:
            return make_response(request, 416)
        try:
            required = request.require
        except SipParseError:
            return make_response(request, 400, "Bad Require")
        unsupported = [tag for tag in required if tag.lower() not in self.supported]
        if unsupported and method != "CANCEL":
            resp = make_response(request, 420)
            resp.headers.set("Unsupported", ", ".join(unsupported))
            return resp
        if method == "CANCEL" or not request.body:
            return self._check_accept(request)
        ctype = (request.content_type or "").split(";", 1)[0].strip().lower()
        accepted = self.accept.get(method, ())
        if ctype.startswith("multipart/") and accepted:
            return None  # the body handler picks the part it understands
        if ctype not in accepted:
            resp = make_response(request, 415)
            resp.headers.set("Accept", ", ".join(accepted) or "application/sdp")
            return resp
        return self._check_accept(request)

    def _check_accept(self, request: Request) -> Response | None:
        """RFC 3261 21.4.7: 406 when a request that gets a body in its answer rules
        out the body type we would send (RFC 4475 3.3.15, sdp01)."""
        if request.method != "INVITE":
            return None
        accept = request.headers.get_all("Accept")
        if not accept:
            return None
        types = {a.split(";", 1)[0].strip().lower() for a in accept}
        if types & {"application/sdp", "application/*", "*/*"}:
            return None
        resp = make_response(request, 406)
        resp.headers.set("Accept", "application/sdp")
        return resp

    def options_response(self, request: Request) -> Response:
        """200 to an out-of-dialog OPTIONS with what we support (RFC 3261 11.2)."""
        resp = make_response(request, 200)
        resp.headers.set("Allow", ", ".join(self.allow))
        resp.headers.set("Accept", "application/sdp")
        resp.headers.set("Accept-Encoding", "identity")
        resp.headers.set("Accept-Language", "en")
        resp.headers.set("Supported", ", ".join(self.supported))
        return resp
