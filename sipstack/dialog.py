"""SIP dialogs (RFC 3261 section 12): identifiers, sequence numbers, route set, target.

A :class:`Dialog` is the peer-to-peer relationship an INVITE (or a SUBSCRIBE)
creates. It holds exactly the state RFC 3261 12 lists -- Call-ID, local and
remote tags, local and remote sequence numbers, local and remote URIs, the
remote target, the secure flag and the route set -- and the three rules that
use it:

* building a request inside the dialog (12.2.1.1: loose or strict routing),
* checking a request received inside it (12.2.2: CSeq order, 500 when lower),
* target refresh (12.2.1.2 / 12.2.2: the Contact of a re-INVITE and its 2xx).

It is plain data with no clock and no I/O. The INVITE session
(:mod:`sipstack.invite_session`) owns dialogs; early dialogs (one per To tag of
the provisional responses of a forked INVITE) are separate objects that become
confirmed on the matching 2xx (RFC 3261 12.1.2, 13.2.2.4).
"""

from __future__ import annotations

import enum

from sipstack.headers import Headers, NameAddr
from sipstack.message import Request, Response
from sipstack.records import dataclass
from sipstack.uri import URI

__all__ = ["Dialog", "DialogError", "DialogId", "DialogState"]

# 12.2.1.1: the CSeq of the first request a UAS sends in a dialog it did not
# start is "chosen per 8.1.1.5"; any value below 2**31 works.
_FIRST_LOCAL_SEQ = 1
# Request methods that carry no new CSeq (they reuse the INVITE's, 13.2.2.4 / 9.1)
# and do not move the remote sequence number.
_SAME_SEQ_METHODS = frozenset({"ACK", "CANCEL"})
# Methods that refresh the remote target (RFC 3261 12.2, RFC 3311 for UPDATE).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE"})


class DialogError(ValueError):
    """A message cannot create or belong to a dialog (missing tag or Contact).

    Raised for the caller's misuse (building a dialog from a request without a
    From tag); a peer's bad message is answered by the session, not raised.
    """


class DialogState(enum.Enum):
    """RFC 3261 12: a dialog is early (after a 1xx with To tag) or confirmed (2xx)."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    """RFC 3261 12: Call-ID, local tag and remote tag identify a dialog."""

    call_id: str
    local_tag: str
    remote_tag: str


def _route_set(record_routes: list[NameAddr], reverse: bool) -> list[NameAddr]:
    """The route set from Record-Route (12.1.1 UAS: as is; 12.1.2 UAC: reversed).

    Header parameters of Record-Route values are kept as they were (they are
    part of the value the proxy wants back).
    """
    routes = [NameAddr(r.uri, r.display_name, dict(r.params)) for r in record_routes]
    if reverse:
        routes.reverse()
    return routes


class Dialog:
    """One dialog's state (RFC 3261 12) and the rules that read and change it.

    Construct with :meth:`from_uac` (from our request and a response with a To
    tag) or :meth:`from_uas` (from a received request and the tag we choose).
    """

    def __init__(
        self,
        *,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: NameAddr,
        remote_uri: NameAddr,
        remote_target: URI,
        local_contact: NameAddr | None,
        route_set: list[NameAddr],
        local_seq: int | None,
        remote_seq: int | None,
        secure: bool,
        state: DialogState,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        # From/To addresses without their tags; the tags above are the truth.
        self.local_uri = _without_tag(local_uri)
        self.remote_uri = _without_tag(remote_uri)
        self.remote_target = remote_target
        self.local_contact = local_contact
        self.route_set = route_set
        self.local_seq = local_seq
        self.remote_seq = remote_seq
        self.secure = secure
        self._state = state

    # -- construction ----------------------------------------------------------

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """The UAC side (RFC 3261 12.1.2) from our request and a 1xx/2xx with To tag.

        Route set: the response's Record-Route in reverse order; remote target:
        its Contact (a 1xx without Contact leaves the Request-URI, to be
        replaced by the 2xx's); local sequence number: the request's CSeq;
        remote sequence number empty.
        """
        remote_tag = response.to.tag
        local_tag = request.from_.tag
        if remote_tag is None or local_tag is None:
            raise DialogError("a dialog needs a From tag in the request and a To tag in the answer")
        contacts = response.contacts
        state = DialogState.CONFIRMED if 200 <= response.status < 300 else DialogState.EARLY
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=request.from_,
            remote_uri=request.to,
            remote_target=contacts[0].uri if contacts else request.uri,
            local_contact=request.contacts[0] if request.contacts else None,
            route_set=_route_set(response.record_routes, reverse=True),
            local_seq=request.cseq.seq,
            remote_seq=None,
            # 12.1.2: secure when the request went over TLS with a SIPS Request-URI.
            secure=request.uri.is_secure,
            state=state,
        )

    @classmethod
    def from_uas(
        cls,
        request: Request,
        local_tag: str,
        local_contact: NameAddr | None,
        *,
        secure: bool | None = None,
        state: DialogState = DialogState.EARLY,
    ) -> Dialog:
        """The UAS side (RFC 3261 12.1.1) from a dialog-creating request.

        Route set: the request's Record-Route in order; remote target: its
        Contact; remote sequence number: its CSeq; local sequence number empty.
        ``secure`` defaults to "the Request-URI is a SIPS URI" (the transport
        check is the glue's: it knows whether the request came over TLS).
        """
        remote_tag = request.from_.tag
        if remote_tag is None:
            # RFC 2543 peers may omit it; we still need a value to match on.
            raise DialogError("the request has no From tag; cannot form a dialog")
        contacts = request.contacts
        if not contacts:
            raise DialogError(f"{request.method} without Contact cannot create a dialog")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=remote_tag,
            local_uri=request.to,
            remote_uri=request.from_,
            remote_target=contacts[0].uri,
            local_contact=local_contact,
            route_set=_route_set(request.record_routes, reverse=False),
            local_seq=None,
            remote_seq=request.cseq.seq,
            secure=request.uri.is_secure if secure is None else secure,
            state=state,
        )

    # -- asked -------------------------------------------------------------------

    @property
    def id(self) -> DialogId:
        """The dialog identifier (RFC 3261 12)."""
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @property
    def state(self) -> DialogState:
        """Early, confirmed or terminated."""
        return self._state

    def matches(self, message: Request | Response, *, incoming_request: bool) -> bool:
        """Whether ``message`` belongs to this dialog (Call-ID and both tags).

        A request from the peer has our tag in To and theirs in From; a
        response to our request has ours in From and theirs in To.
        """
        if message.call_id != self.call_id:
            return False
        if incoming_request:
            return message.to.tag == self.local_tag and message.from_.tag == self.remote_tag
        return message.from_.tag == self.local_tag and message.to.tag == self.remote_tag

    # -- changed ---------------------------------------------------------------------

    def confirm(self, response: Response | None = None) -> None:
        """Early -> confirmed (RFC 3261 13.2.2.4).

        On the UAC side ``response`` is the 2xx: the route set is recomputed
        from its Record-Route (reversed) and its Contact becomes the target.
        """
        if self._state is DialogState.TERMINATED:
            raise DialogError(f"dialog {self.id} is terminated")
        if response is not None:
            self.route_set = _route_set(response.record_routes, reverse=True)
            self.refresh_target(response)
        self._state = DialogState.CONFIRMED

    def terminate(self) -> None:
        """Mark the dialog over (BYE, failure); later requests are refused."""
        self._state = DialogState.TERMINATED

    def refresh_target(self, message: Request | Response) -> bool:
        """Take the Contact of a target refresh (RFC 3261 12.2.1.2, 12.2.2).

        Returns True when the remote target changed. A message without Contact
        leaves the target as it was. The target is the URI as written: URI
        equality (19.1.4) ignores a parameter present on one side only, such as
        a GRUU's ``gr`` (RFC 5627), which the next hop needs to route.
        """
        contacts = message.contacts
        if not contacts or str(contacts[0].uri) == str(self.remote_target):
            return False
        self.remote_target = contacts[0].uri
        return True

    def validate_request(self, request: Request) -> int | None:
        """RFC 3261 12.2.2 checks of a request received in this dialog.

        Returns the status to reject it with, or None when it is acceptable
        (then the remote sequence number has advanced, and for a target
        refresh request the remote target has been updated). A lower CSeq
        than the last one is out of order: 500. ACK and CANCEL reuse the
        INVITE's number and move nothing.
        """
        if self._state is DialogState.TERMINATED:
            return 481
        method = request.method.upper()
        if method in _SAME_SEQ_METHODS:
            return None
        seq = request.cseq.seq
        if self.remote_seq is not None and seq < self.remote_seq:
            return 500
        self.remote_seq = seq
        if method in TARGET_REFRESH_METHODS:
            self.refresh_target(request)
        return None

    # -- requests ----------------------------------------------------------------------

    def next_seq(self) -> int:
        """Advance the local sequence number and return it (RFC 3261 12.2.1.1)."""
        self.local_seq = _FIRST_LOCAL_SEQ if self.local_seq is None else self.local_seq + 1
        return self.local_seq

    def new_request(
        self,
        method: str,
        *,
        seq: int | None = None,
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Request:
        """A request inside the dialog (RFC 3261 12.2.1.1). The glue adds the Via.

        The CSeq number is the local sequence number plus one, except for ACK
        (give ``seq``: the INVITE's, 13.2.2.4). Request-URI and Route follow
        the route set: empty -> the remote target; first route loose (``lr``)
        -> the remote target with the route set as Route; first route strict ->
        that route as Request-URI and the rest plus the remote target as
        Route. Target refresh requests (INVITE, UPDATE) carry our Contact.
        """
        if self._state is DialogState.TERMINATED:
            raise DialogError(f"dialog {self.id} is terminated; cannot send {method}")
        upper = method.upper()
        if upper in _SAME_SEQ_METHODS:
            if seq is None:
                raise ValueError(f"{method} reuses the INVITE's CSeq: pass seq")
        elif seq is None:
            seq = self.next_seq()
        uri, routes = self._request_uri_and_routes()
        h = Headers()
        for route in routes:
            h.add("Route", str(route))
        h.add("Max-Forwards", "70")
        h.add("From", str(self.local_uri.with_tag(self.local_tag)))
        h.add("To", str(self.remote_uri.with_tag(self.remote_tag)))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{seq} {method}")
        if upper in TARGET_REFRESH_METHODS and self.local_contact is not None:
            h.add("Contact", str(self.local_contact))
        if body:
            h.add("Content-Type", content_type or "application/sdp")
        return Request(method, uri, h, body)

    def _request_uri_and_routes(self) -> tuple[URI, list[NameAddr]]:
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        if "lr" in first.uri.params:
            return self.remote_target, list(self.route_set)
        # Strict router (RFC 2543): it wants to be the Request-URI; parameters not
        # allowed in a Request-URI (URI headers) are stripped; the remote target
        # goes last in Route so the strict router can put it back.
        uri = first.uri.replace(headers={})
        routes = [*self.route_set[1:], NameAddr(self.remote_target)]
        return uri, routes

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} {self.local_tag}/{self.remote_tag} {self._state.value}>"


def _without_tag(address: NameAddr) -> NameAddr:
    params = {k: v for k, v in address.params.items() if k != "tag"}
    return NameAddr(address.uri, address.display_name, params)
