"""The UAS half of an INVITE session: answering INVITEs and the peer's requests.

Private: :class:`sipstack.invite_session.InviteSession` is the public class.
RFC 3261 12.1.1 (dialog from the INVITE), 13.3.1.4 (2xx until ACK), 9.2
(CANCEL), 14.2 (re-INVITE: 491 / 500), 15.1.2 (BYE); RFC 4028 9 (timers as
UAS); INFO with DTMF relay.
"""

from __future__ import annotations

from sipstack._invite_base import ALLOW, SDP, _Incoming, _PendingAck, _SessionBase
from sipstack.dialog import Dialog, DialogError
from sipstack.errors import SipParseError
from sipstack.invite_events import (
    DtmfInfo,
    InviteState,
    RemoteAnswer,
    RemoteOffer,
    SessionRefreshed,
)
from sipstack.message import Request, Response, make_response
from sipstack.session_timer import (
    TIMER_TAG,
)

_S = InviteState
_DTMF_EVENTS = "0123456789*#ABCD"  # RFC 4733 event codes 0-15


class _UasSide(_SessionBase):
    """Everything the session does as the receiver of requests."""

    def _start_incoming(self, invite: Request, secure: bool | None) -> None:
        try:
            self._dialog = Dialog.from_uas(
                invite, self._local_tag, self._local_contact, secure=secure
            )
        except (DialogError, SipParseError) as exc:
            self._reject_initial(400, str(exc))
            return
        unsupported = [tag for tag in invite.require if tag.lower() != TIMER_TAG]
        if unsupported:
            # RFC 3261 8.2.2.3: an extension we do not know is required.
            self._reject_initial(420, "Bad Extension", unsupported=", ".join(unsupported))
            return
        min_se = self._st.check_request(invite)
        if min_se is not None:
            # RFC 4028 8.1: the asked interval is below what we accept.
            self._reject_initial(422, "Session Interval Too Small", min_se=str(min_se))
            return
        self._move(_S.INCOMING, 0, "INVITE received")
        if invite.body:
            self._remote_sdp = invite.body
            self._events.append(RemoteOffer(invite.body))

    def _reject_initial(self, code: int, reason: str, **extra: str) -> None:
        assert self._invite is not None
        response = make_response(self._invite, code, to_tag=self._local_tag)
        if "unsupported" in extra:
            response.headers.add("Unsupported", extra["unsupported"])
        if "min_se" in extra:
            response.headers.add("Min-SE", extra["min_se"])
        self._responses.append(response)
        self._incoming = None
        self._end(code, reason, by_remote=False)

    # -- UAS ---------------------------------------------------------------------------------

    def _dialog_response(self, inc: _Incoming, code: int, sdp: bytes | None) -> Response:
        """A 1xx/2xx to an INVITE: To tag, Contact, and Record-Route for the
        initial INVITE (RFC 3261 12.1.1)."""
        response = make_response(inc.request, code, to_tag=self._local_tag)
        if inc.initial:
            for value in inc.request.headers.get_all("Record-Route"):
                response.headers.add("Record-Route", value)
        response.headers.add("Contact", str(self._local_contact))
        response.headers.add("Allow", ALLOW)
        if sdp:
            response.headers.add("Content-Type", SDP)
            response.body = sdp
        return response

    def _answer_2xx(self, inc: _Incoming, code: int, sdp: bytes, now: float) -> None:
        response = self._dialog_response(inc, code, sdp)
        self._st.decorate_2xx(response)
        self._st.on_success_as_uas(inc.request, response, now)
        self._incoming = None
        self._local_sdp = sdp
        t1 = self._timers.t1
        self._pending_ack = _PendingAck(
            response,
            inc.request.cseq.seq,
            next_at=now + t1,
            interval=t1,
            give_up_at=now + 64 * t1,
            expect_answer=not inc.offer,
            initial=inc.initial,
        )
        self._responses.append(response)
        if inc.initial:
            assert self._dialog is not None
            self._dialog.confirm()  # RFC 3261 12.1.1: confirmed once the 2xx is sent
            self._move(_S.CONNECTING, code, response.reason)
        else:
            self._events.append(SessionRefreshed(self._st.interval, by_remote=True))

    def _on_ack(self, request: Request, now: float) -> None:
        pa = self._pending_ack
        dialog = self._dialog
        if pa is None or request.cseq.seq != pa.seq or dialog is None:
            return  # an ACK retransmission, or for a response we no longer track
        if not dialog.matches(request, incoming_request=True):
            return
        self._pending_ack = None
        if pa.expect_answer:
            if not request.body:
                self._begin_bye(dialog, 400, "ACK without SDP answer", by_remote=False)
                return
            self._remote_sdp = request.body
            self._events.append(RemoteAnswer(request.body))
        if self._bye_after_ack:
            self._begin_bye(dialog, *self._cause)
        elif pa.initial and self._state is _S.CONNECTING:
            self._move(_S.CONFIRMED, 200, "ACK received")

    def _ack_timeout(self, pa: _PendingAck) -> None:
        """RFC 3261 13.3.1.4: no ACK for 64*T1: the dialog is confirmed, the session ends."""
        self._pending_ack = None
        if self._dialog is None:
            return
        if self._state is _S.CONNECTING:
            self._move(_S.CONFIRMED, 408, "no ACK")
        if self._bye_after_ack:
            self._begin_bye(self._dialog, *self._cause)
        else:
            self._begin_bye(self._dialog, 408, "ACK timeout", by_remote=False)

    def _on_cancel(self, cancel: Request) -> None:
        """RFC 3261 9.2: 200 to the CANCEL; 487 to the INVITE if still unanswered."""
        inc = self._incoming
        self._responses.append(make_response(cancel, 200, to_tag=self._local_tag))
        if inc is None or cancel.cseq.seq != inc.request.cseq.seq:
            return  # already answered: the CANCEL has no effect
        self._incoming = None
        self._responses.append(make_response(inc.request, 487, to_tag=self._local_tag))
        if inc.initial:
            self._end(487, "Request Terminated", by_remote=True)

    def _on_bye(self, request: Request) -> None:
        """RFC 3261 15.1.2: 200 to the BYE, 487 to an INVITE still pending."""
        self._respond(request, 200)
        self._refuse_pending_reinvite()
        self._end(200, "Normal call clearing", by_remote=True)

    def _refuse_pending_reinvite(self) -> None:
        inc = self._incoming
        if inc is not None:
            self._incoming = None
            self._respond(inc.request, 487)

    def _on_reinvite(self, request: Request, now: float) -> None:
        if self._state is not _S.CONFIRMED:
            self._respond(request, 491 if self._state is _S.CONNECTING else 481)
            return
        if (
            self._reinvite is not None
            or self._pending_ack is not None
            or self._late_offer_ack is not None
        ):
            # RFC 3261 14.2: our own offer is in progress: glare.
            self._respond(request, 491)
            return
        if self._incoming is not None:
            # RFC 3261 14.2: an earlier INVITE is unanswered: 500 with Retry-After 0-10 s.
            response = self._make(request, 500)
            response.headers.add("Retry-After", str(self._rng.randint(0, 10)))
            self._responses.append(response)
            return
        min_se = self._st.check_request(request)
        if min_se is not None:
            response = self._make(request, 422)
            response.headers.add("Min-SE", str(min_se))
            self._responses.append(response)
            return
        inc = _Incoming(request, initial=False, offer=bool(request.body))
        self._incoming = inc
        if request.body:
            self._remote_sdp = request.body
            self._events.append(RemoteOffer(request.body))
        elif self._local_sdp is not None:
            # An offerless re-INVITE (often a session refresh): offer our current SDP.
            self._answer_2xx(inc, 200, self._local_sdp, now)
        else:
            self._incoming = None
            self._respond(request, 488)

    def _on_update(self, request: Request, now: float) -> None:
        """We are UPDATE-free: a bodiless UPDATE (a session refresh) gets 200,
        one carrying an offer 501 (RFC 3311 is not implemented)."""
        if request.body:
            self._respond(request, 501)
            return
        min_se = self._st.check_request(request)
        if min_se is not None:
            response = self._make(request, 422)
            response.headers.add("Min-SE", str(min_se))
            self._responses.append(response)
            return
        response = self._make(request, 200)
        response.headers.add("Contact", str(self._local_contact))
        self._st.decorate_2xx(response)
        self._st.on_success_as_uas(request, response, now)
        self._responses.append(response)
        self._events.append(SessionRefreshed(self._st.interval, by_remote=True))

    def _on_info(self, request: Request) -> None:
        self._respond(request, 200)
        digit_duration = parse_dtmf_info(request.content_type, request.body)
        if digit_duration is not None:
            self._events.append(DtmfInfo(*digit_duration))


def parse_dtmf_info(content_type: str | None, body: bytes) -> tuple[str, int] | None:
    """``(digit, duration ms)`` from an INFO body (application/dtmf-relay or
    application/dtmf, the de-facto formats of Cisco and others), or None."""
    if content_type is None:
        return None
    kind = content_type.split(";", 1)[0].strip().lower()
    text = body.decode("ascii", "replace")
    if kind == "application/dtmf":
        return _dtmf_digit(text.strip(), 0)
    if kind != "application/dtmf-relay":
        return None
    fields: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            fields[name.strip().lower()] = value.strip()
    duration = fields.get("duration", "0")
    return _dtmf_digit(fields.get("signal", ""), int(duration) if duration.isdigit() else 0)


def _dtmf_digit(signal: str, duration: int) -> tuple[str, int] | None:
    if len(signal) == 1 and signal.upper() in _DTMF_EVENTS:
        return signal.upper(), duration
    if signal.isdigit() and int(signal) < len(_DTMF_EVENTS):
        return _DTMF_EVENTS[int(signal)], duration  # event code 10 is '*', 11 '#'
    return None
