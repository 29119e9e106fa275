"""The App's two hooks into the user agent that let requests in or keep them out.

The rules are :class:`~firmware.screening.RequestScreen`'s (our servers, allowed
peers, rate limits, 403 or drop); this module applies them at the two places
the user agent asks (and one the transports ask, :meth:`RequestGate.prescreen`,
before parsing): :meth:`RequestGate.admit` before a request reaches the
transaction layer (a dropped request costs no transaction and gets no answer)
and :meth:`RequestGate.filter` before a handler takes it (403). Requests in
our calls' dialogs always pass: their Call-ID and tags cannot be guessed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from firmware.app import App
    from sipstack.endpoint import IncomingRequest
    from sipstack.message import Request, Response
    from sipstack.transport_base import Peer

__all__ = ["RequestGate"]


class RequestGate:
    """Screens requests for ``app`` with whichever screen is in force (it changes
    on a reload)."""

    def __init__(self, app: App) -> None:
        self._app = app

    def prescreen(self, data: bytes, peer: Peer) -> bool:
        """Whether received bytes are dropped before they are even parsed: those of
        a stranger that is rate-limited now (a flood costs a look-up, not a parse)."""
        return self._app.screen.drop_unparsed(data, peer)

    def admit(self, request: Request, peer: Peer) -> bool:
        """Whether the endpoint takes ``request`` in at all (False: dropped unanswered).

        ACKs always pass: RFC 3261 17.2.1 matches them to our own INVITE server
        transactions, and a 2xx's ACK (13.3.1.4) belongs to a call we answered.
        """
        screen = self._app.screen
        if request.method == "ACK" or screen.trusted(peer) or self.in_our_dialog(request):
            return True
        return not screen.refuse(request, peer)

    def filter(self, inc: IncomingRequest) -> Response | None:
        """A 403 for a request from an untrusted peer outside our dialogs, else None."""
        from sipstack.message import make_response

        if self._app.screen.trusted(inc.peer) or self.in_our_dialog(inc.request):
            return None
        return make_response(inc.request, 403, "Forbidden")

    def in_our_dialog(self, request: Request) -> bool:
        """In-dialog requests of our calls (their Call-ID and tags cannot be guessed)."""
        calls = self._app.calls
        try:
            if calls is None or request.to.tag is None:
                return False
            call_id = request.call_id
        except Exception:
            return False  # a header we cannot read: not ours
        return any(calls.call_get_info(c).sip_call_id == call_id for c in calls.enum_calls())
