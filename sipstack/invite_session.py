"""INVITE sessions (RFC 3261 13-15, RFC 6026, RFC 4028), UAC and UAS, sans-IO.

One :class:`InviteSession` is one call leg: the INVITE that starts it, the
dialog it creates (plus the extra dialogs of a forked INVITE, which are ACKed
and hung up at once, RFC 3261 13.2.2.4), re-INVITEs both ways, INFO, CANCEL
and BYE. SDP bodies are opaque bytes: the session carries offers and answers
where RFC 3264 puts them and reports them as events; the media layer decides
what they mean.

It is fed (``receive_response``, ``request_failed``, ``receive_request``,
``handle_timer`` and the API calls ``answer``, ``hangup``, ``reinvite``,
``send_info``), drained (``requests_to_send``, ``responses_to_send``,
``next_event``) and asked (``get_timer``). It never reads the clock and takes
its randomness (tags, the 491 back-off) from injected objects.

What the glue does with the output:

* :class:`OutRequest` with ``stateless``: send as is (the ACK for a 2xx,
  13.2.2.4); with ``cancels``: cancel that INVITE's client transaction
  (``Endpoint.cancel``); otherwise a new client transaction, then report every
  response (including 2xx retransmissions and forked 2xx, RFC 6026) to
  ``receive_response`` and a timeout or transport failure to ``request_failed``.
* Responses: through the server transaction their top Via and CSeq name (the
  2xx retransmissions of 13.3.1.4 come out here again at T1, 2T1, 4T1... T2;
  after the transaction's Timer L they go straight to the transport).
"""

from __future__ import annotations

import random

from sipstack._invite_base import ALLOW, SDP, Role, _Incoming, _Purpose, _Sent
from sipstack._invite_uas import _UasSide, parse_dtmf_info
from sipstack.dialog import Dialog
from sipstack.digest import AuthenticationError
from sipstack.errors import SipParseError
from sipstack.headers import Headers, NameAddr
from sipstack.ids import IdGenerator
from sipstack.invite_events import (
    EarlyMedia,
    InviteSessionError,
    InviteSessionEvent,
    InviteState,
    OfferRejected,
    OutRequest,
    Redirected,
    RemoteAnswer,
    RemoteOffer,
    SessionRefreshed,
)
from sipstack.message import Request, Response, make_response
from sipstack.registration_config import Authenticator
from sipstack.session_timer import (
    SessionTimerAction,
    SessionTimerConfig,
)
from sipstack.timers import TimerConfig
from sipstack.uri import URI

__all__ = ["InviteSession", "Role", "parse_dtmf_info"]

_S = InviteState
_MAX_AUTH_ROUNDS = 3
_MAX_422_ROUNDS = 2


class InviteSession(_UasSide):
    """The INVITE session machine (PJSIP's ``pjsip_inv_session``), both roles.

    Build it with :meth:`outgoing` or :meth:`incoming`. States and their legal
    transitions are in :data:`sipstack.invite_events.TRANSITIONS`.
    """

    # -- construction ---------------------------------------------------------------

    @classmethod
    def outgoing(
        cls,
        invite: Request,
        *,
        ids: IdGenerator,
        rng: random.Random,
        authenticator: Authenticator | None = None,
        timers: TimerConfig | None = None,
        session_timer: SessionTimerConfig | None = None,
        max_redirects: int = 5,
    ) -> InviteSession:
        """A UAC session for ``invite`` (From tag, Call-ID, CSeq, Contact and, for
        an early offer, the SDP body set by the caller; no Via: the glue adds it).
        The INVITE is queued at once; the session is CALLING."""
        if invite.method != "INVITE":
            raise ValueError(f"an INVITE session starts with an INVITE, not {invite.method}")
        if invite.from_.tag is None or not invite.contacts:
            raise ValueError(
                "the INVITE needs a From tag and a Contact (RFC 3261 8.1.1.3, 8.1.1.8)"
            )
        session = cls(
            Role.UAC,
            ids=ids,
            rng=rng,
            authenticator=authenticator,
            timers=timers,
            session_timer=session_timer,
            local_contact=invite.contacts[0],
            max_redirects=max_redirects,
        )
        session._local_tag = invite.from_.tag
        session._offer_in_invite = bool(invite.body)
        session._local_sdp = invite.body or None
        session._tried.append(invite.uri)
        invite = invite.copy()
        session._st.decorate_request(invite)
        if "Allow" not in invite.headers:
            invite.headers.add("Allow", ALLOW)
        session._send_initial(invite, auth_rounds=0, timer_rounds=0)
        session._move(_S.CALLING, 0, "INVITE sent")
        return session

    @classmethod
    def incoming(
        cls,
        invite: Request,
        *,
        ids: IdGenerator,
        rng: random.Random,
        contact: NameAddr | URI,
        authenticator: Authenticator | None = None,
        timers: TimerConfig | None = None,
        session_timer: SessionTimerConfig | None = None,
        secure: bool | None = None,
    ) -> InviteSession:
        """A UAS session for a received dialog-creating INVITE.

        ``contact`` is our Contact for the responses. The session is INCOMING
        and reports the offer, if any; or it has already answered 400, 420 or
        422 (see ``responses_to_send``) and is DISCONNECTED.
        """
        local_contact = contact if isinstance(contact, NameAddr) else NameAddr(contact)
        session = cls(
            Role.UAS,
            ids=ids,
            rng=rng,
            authenticator=authenticator,
            timers=timers,
            session_timer=session_timer,
            local_contact=local_contact,
        )
        session._local_tag = ids.tag()
        session._invite = invite
        session._incoming = _Incoming(invite, initial=True, offer=bool(invite.body))
        session._offer_in_invite = bool(invite.body)
        session._start_incoming(invite, secure)
        return session

    # -- asked -------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        """UAC (we called) or UAS (we were called)."""
        return self._role

    @property
    def state(self) -> InviteState:
        """The current state."""
        return self._state

    @property
    def dialog(self) -> Dialog | None:
        """The session's dialog (the confirmed one; the UAS's early one), if any."""
        return self._dialog

    @property
    def invite(self) -> Request | None:
        """The initial INVITE (the latest one sent after redirects or challenges)."""
        return self._invite

    @property
    def call_id(self) -> str:
        """The Call-ID of the session."""
        assert self._invite is not None
        return self._invite.call_id

    @property
    def local_sdp(self) -> bytes | None:
        """The SDP we last offered or answered with."""
        return self._local_sdp

    @property
    def remote_sdp(self) -> bytes | None:
        """The SDP the peer last sent."""
        return self._remote_sdp

    @property
    def session_interval(self) -> int | None:
        """The negotiated session timer interval (RFC 4028), None when off."""
        return self._st.interval

    @property
    def session_refresher(self) -> bool:
        """True when we are the session refresher."""
        return self._st.we_refresh

    def get_timer(self) -> float | None:
        """When ``handle_timer`` must next be called, or None."""
        times = [self._retry_at, self._cancel_guard, self._st.get_timer()]
        pa = self._pending_ack
        if pa is not None:
            times += [pa.next_at, pa.give_up_at]
        return min((t for t in times if t is not None), default=None)

    # -- drained -----------------------------------------------------------------------

    def requests_to_send(self) -> list[OutRequest]:
        """Requests for the glue, oldest first; the list is emptied."""
        out, self._requests = self._requests, []
        return out

    def responses_to_send(self) -> list[Response]:
        """Responses for the glue (to the INVITE and in-dialog requests), oldest first."""
        out, self._responses = self._responses, []
        return out

    def next_event(self) -> InviteSessionEvent | None:
        """The next event, or None."""
        return self._events.popleft() if self._events else None

    # -- API ---------------------------------------------------------------------------

    def answer(self, code: int, sdp: bytes | None, now: float) -> None:
        """Answer the pending received INVITE (initial or re-INVITE).

        1xx (180/183 with ``sdp`` for early media), 2xx with ``sdp`` (the answer
        to the peer's offer, or our offer when the INVITE had none), 3xx-6xx to
        refuse. Also completes a late-offer call we placed: with a 2xx, ``sdp``
        is the answer the ACK carries (RFC 3264 via RFC 3261 13.2.2.4).
        """
        if not 100 <= code <= 699:
            raise ValueError(f"{code} is not a response status")
        late = self._late_offer_ack
        if self._incoming is None and late is not None:
            if not 200 <= code < 300 or not sdp:
                raise InviteSessionError("the 2xx carried an offer: answer it with 2xx and SDP")
            self._late_offer_ack = None
            self._local_sdp = sdp
            self._send_ack(late[0], late[1], sdp)
            self._move(_S.CONFIRMED, 200, "ACK sent")
            return
        inc = self._incoming
        if inc is None:
            raise InviteSessionError(f"no INVITE awaits an answer (state {self._state.value})")
        if code == 100:
            self._responses.append(make_response(inc.request, 100))
            return
        if 200 <= code < 300:
            if not sdp:
                why = "the answer to its offer" if inc.offer else "our offer"
                raise InviteSessionError(f"a 2xx to this INVITE must carry {why} (RFC 3264)")
            self._answer_2xx(inc, code, sdp, now)
        elif code < 200:
            response = self._dialog_response(inc, code, sdp)
            self._responses.append(response)
            if sdp:
                self._local_sdp = sdp
            if inc.initial and self._state is _S.INCOMING:
                self._move(_S.EARLY, code, response.reason)
        else:
            self._incoming = None
            response = make_response(inc.request, code, to_tag=self._local_tag)
            self._responses.append(response)
            if inc.initial:
                self._end(code, response.reason, by_remote=False)

    def hangup(self, now: float, code: int = 603) -> None:
        """End the session the way its state requires (RFC 3261 9.1, 15).

        UAC before a 2xx: CANCEL. UAS before answering: final response ``code``.
        Confirmed: BYE (a UAS waiting for the ACK of its 2xx sends the BYE once
        the ACK arrives or the 2xx times out, RFC 3261 15). Repeated calls and
        calls after the end do nothing.
        """
        state = self._state
        if state in (_S.DISCONNECTING, _S.DISCONNECTED, _S.NULL):
            return
        if self._role is Role.UAC and state in (_S.CALLING, _S.EARLY):
            self._cancel(now)
        elif state in (_S.INCOMING, _S.EARLY):
            if not 300 <= code <= 699:
                raise ValueError(f"a call is refused with 300-699, not {code}")
            self.answer(code, None, now)
        elif state is _S.CONNECTING and self._late_offer_ack is not None:
            dialog, seq = self._late_offer_ack
            self._late_offer_ack = None
            self._send_ack(dialog, seq, None)
            self._begin_bye(dialog, 200, "Normal call clearing", by_remote=False)
        elif state is _S.CONNECTING:
            # RFC 3261 15: the callee MUST NOT send BYE before the ACK (or the timeout).
            self._bye_after_ack = True
            self._cause = (200, "Normal call clearing", False)
            self._move(_S.DISCONNECTING, 0, "hangup")
        else:
            assert self._dialog is not None
            self._refuse_pending_reinvite()
            self._begin_bye(self._dialog, 200, "Normal call clearing", by_remote=False)

    def set_local_contact(self, contact: NameAddr) -> None:
        """Our address changed (the network did): use ``contact`` from now on.

        It goes out in the next target refresh request (RFC 3261 12.2.1.1: a
        re-INVITE's Contact is the dialog's new remote target for the peer) and
        in our responses; the caller sends that re-INVITE.
        """
        self._local_contact = contact
        if self._dialog is not None:
            self._dialog.local_contact = contact

    def reinvite(self, sdp: bytes | None, now: float) -> None:
        """Send a re-INVITE with ``sdp`` (hold, unhold, new media) or, with None,
        our last SDP again (a refresh). Only when CONFIRMED and no other offer is
        in progress (RFC 3261 14.1); a re-INVITE waiting out a 491 takes the new SDP."""
        if self._state is not _S.CONFIRMED:
            raise InviteSessionError(
                f"re-INVITE needs a confirmed session, not {self._state.value}"
            )
        body = sdp if sdp is not None else self._local_sdp
        if body is None:
            raise InviteSessionError("no SDP to send: the session has none yet")
        if self._retry_at is not None:
            self._retry_sdp = body
            return
        if self._reinvite is not None or self._incoming is not None or self._pending_ack:
            raise InviteSessionError("an offer/answer exchange is in progress (RFC 3261 14.1)")
        self._send_reinvite(body, auth_rounds=0, timer_rounds=0)

    def send_info(self, body: bytes, content_type: str, now: float) -> Request:
        """Send INFO in the confirmed dialog (DTMF relay, RFC 6086); returns it."""
        if self._state is not _S.CONFIRMED or self._dialog is None:
            raise InviteSessionError(f"INFO needs a confirmed session, not {self._state.value}")
        request = self._dialog.new_request("INFO", body=body, content_type=content_type)
        self._authorize(request)
        self._queue(_Sent(request, _Purpose.INFO, self._dialog))
        return request

    # -- fed: responses to our requests ---------------------------------------------------

    def receive_response(self, request: Request | None, response: Response, now: float) -> None:
        """A response to a request this session produced (``request``: that object,
        or None for a stray 2xx retransmission after its transaction ended)."""
        if response.cseq.method == "INVITE" and 200 <= response.status < 300:
            ack = self._acks.get((response.to.tag or "", response.cseq.seq))
            if ack is not None:
                # RFC 3261 13.2.2.4: a 2xx retransmission gets the same ACK again.
                self._requests.append(OutRequest(ack, stateless=True))
                return
        sent = self._find_sent(request, response)
        if sent is None:
            if response.cseq.method == "INVITE" and 200 <= response.status < 300:
                self._surplus_2xx(response)
            return
        purpose = sent.purpose
        if purpose is _Purpose.INITIAL:
            self._on_initial_response(sent, response, now)
        elif response.status < 200:
            return
        elif purpose is _Purpose.REINVITE:
            self._on_reinvite_response(sent, response, now)
        else:
            self._forget(sent)
            if response.status in (401, 407) and self._retry_with_auth(sent, response, now):
                return
            if purpose is _Purpose.BYE:
                self._end(*self._cause)
            elif purpose is _Purpose.INFO and response.status in (408, 481):
                self._dialog_failed(response.status, response.reason)

    def request_failed(self, request: Request, status: int, reason: str, now: float) -> None:
        """A request of ours got no response: timeout (408) or transport failure (503)."""
        sent = next((s for s in self._sent if s.request is request), None)
        if sent is None:
            return
        self._forget(sent)
        if sent.purpose is _Purpose.INITIAL:
            if sent.request is self._invite and self._state is not _S.DISCONNECTED:
                self._end(status, reason, by_remote=False)
        elif sent.purpose is _Purpose.BYE:
            self._end(*self._cause)
        elif sent.purpose in (_Purpose.REINVITE, _Purpose.INFO):
            if sent is self._reinvite:
                self._reinvite = None
            # RFC 3261 12.2.1.2: no answer inside the dialog ends it.
            self._dialog_failed(408, reason)

    # -- fed: requests from the peer --------------------------------------------------------

    def receive_request(self, request: Request, now: float) -> None:
        """A request for this session: ACK, CANCEL of a pending INVITE, or in-dialog."""
        method = request.method
        if method == "ACK":
            self._on_ack(request, now)
            return
        if method == "CANCEL":
            self._on_cancel(request)
            return
        dialog = self._dialog
        if (
            dialog is None
            or not dialog.matches(request, incoming_request=True)
            or self._state is _S.DISCONNECTED
            or (self._role is Role.UAS and self._state in (_S.INCOMING, _S.EARLY))
        ):
            self._respond(request, 481)
            return
        code = dialog.validate_request(request)
        if code is not None:
            self._respond(request, code)
            return
        if method == "BYE":
            self._on_bye(request)
        elif method == "INVITE":
            self._on_reinvite(request, now)
        elif method == "UPDATE":
            self._on_update(request, now)
        elif method == "INFO":
            self._on_info(request)
        elif method == "OPTIONS":
            response = self._make(request, 200)
            response.headers.add("Allow", ALLOW)
            response.headers.add("Accept", SDP)
            self._responses.append(response)
        else:
            self._respond(request, 501)

    # -- fed: the clock -------------------------------------------------------------------

    def handle_timer(self, now: float) -> None:
        """Run whatever is due at ``now``; calling early is harmless."""
        pa = self._pending_ack
        if pa is not None:
            if now >= pa.give_up_at:
                self._ack_timeout(pa)
            else:
                while pa.next_at <= now:
                    # RFC 3261 13.3.1.4: T1, then doubling up to T2, until the ACK.
                    self._responses.append(pa.response)
                    pa.interval = min(pa.interval * 2, self._timers.t2)
                    pa.next_at += pa.interval
        if self._cancel_guard is not None and now >= self._cancel_guard:
            # RFC 3261 9.1: no final response 64*T1 after CANCEL: consider it gone.
            self._cancel_guard = None
            self._end(487, "Request Terminated", by_remote=False)
        if self._retry_at is not None and now >= self._retry_at:
            self._retry_glare(now)
        action = self._st.due(now)
        if action is SessionTimerAction.REFRESH:
            self._refresh(now)
        elif (
            action is SessionTimerAction.EXPIRE
            and self._dialog is not None
            and self._state in (_S.CONFIRMED, _S.CONNECTING)
        ):
            # RFC 4028 10: no refresh came: the session is dead, say so with BYE.
            self._begin_bye(self._dialog, 408, "Session timer expired", by_remote=False)

    # -- UAC: the initial INVITE ----------------------------------------------------------

    def _send_initial(self, invite: Request, *, auth_rounds: int, timer_rounds: int) -> None:
        self._invite = invite
        self._authorize(invite)
        self._queue(_Sent(invite, _Purpose.INITIAL, None, auth_rounds, timer_rounds))

    def _resend_initial(self, sent: _Sent, **changes: object) -> Request:
        """A new INVITE for the same call: CSeq + 1 (RFC 3261 8.1.3.5, 22.2)."""
        invite = sent.request.copy()
        invite.headers.remove("Via")
        invite.headers.set("CSeq", f"{sent.request.cseq.seq + 1} INVITE")
        uri = changes.get("uri")
        if isinstance(uri, URI):
            invite.uri = uri
            invite.headers.remove("Authorization")
            invite.headers.remove("Proxy-Authorization")
        return invite

    def _on_initial_response(self, sent: _Sent, response: Response, now: float) -> None:
        status = response.status
        if sent.request is not self._invite:
            return  # a superseded INVITE's late non-2xx
        if status < 200:
            self._on_provisional(sent, response)
        elif status < 300:
            self._on_invite_2xx(sent, response, now)
        else:
            self._forget(sent)
            self._early.clear()
            self._on_initial_failure(sent, response, now)

    def _on_provisional(self, sent: _Sent, response: Response) -> None:
        tag = response.to.tag
        if response.status == 100 or tag is None or self._state is _S.DISCONNECTING:
            return
        dialog = self._early.get(tag)
        if dialog is None:
            self._early[tag] = Dialog.from_uac(sent.request, response)
        else:
            dialog.refresh_target(response)
        if response.body:
            self._early_sdp = response.body
            self._events.append(EarlyMedia(response.body))
        if self._state is _S.CALLING:
            self._move(_S.EARLY, response.status, response.reason)

    def _on_invite_2xx(self, sent: _Sent, response: Response, now: float) -> None:
        tag = response.to.tag
        if tag is None:
            return  # not a usable 2xx: no dialog can be formed
        if self._dialog is not None or self._state is _S.DISCONNECTED:
            self._surplus_2xx(response)
            return
        dialog = self._early.pop(tag, None) or Dialog.from_uac(sent.request, response)
        dialog.confirm(response)
        self._dialog = dialog
        seq = response.cseq.seq
        if self._state is _S.DISCONNECTING:
            # RFC 3261 9.1 race: the 2xx crossed our CANCEL; the call must go.
            self._cancel_guard = None
            self._send_ack(dialog, seq, None)
            self._begin_bye(dialog, *self._cause)
            return
        self._st.on_success_as_uac(response, now)
        self._move(_S.CONNECTING, response.status, response.reason)
        if self._offer_in_invite:
            answer = response.body or self._early_sdp
            self._send_ack(dialog, seq, None)
            if answer is None:
                self._begin_bye(dialog, 488, "No SDP answer in 2xx", by_remote=False)
                return
            self._remote_sdp = answer
            self._events.append(RemoteAnswer(answer))
        elif response.body:
            # Late offer: the 2xx offers, our ACK answers (RFC 3261 13.2.1).
            self._remote_sdp = response.body
            self._late_offer_ack = (dialog, seq)
            self._events.append(RemoteOffer(response.body))
            return
        else:
            self._send_ack(dialog, seq, None)
            self._begin_bye(dialog, 488, "No SDP offer in 2xx", by_remote=False)
            return
        self._move(_S.CONFIRMED, response.status, "ACK sent")

    def _surplus_2xx(self, response: Response) -> None:
        """A 2xx from a second fork (or after the end): ACK it, then BYE it (13.2.2.4)."""
        assert self._invite is not None
        tag = response.to.tag
        if tag is None or response.call_id != self._invite.call_id:
            return
        if self._dialog is not None and tag == self._dialog.remote_tag:
            return  # ours, but for a CSeq we never ACKed: not a retransmission we know
        fork = self._early.pop(tag, None) or Dialog.from_uac(self._invite, response)
        fork.confirm(response)
        self._send_ack(fork, response.cseq.seq, None)
        bye = fork.new_request("BYE")
        self._authorize(bye)
        self._queue(_Sent(bye, _Purpose.FORK_BYE, fork))

    def _on_initial_failure(self, sent: _Sent, response: Response, now: float) -> None:
        status, reason = response.status, response.reason
        hanging_up = self._state is _S.DISCONNECTING
        if not hanging_up:
            if status in (401, 407) and self._retry_with_auth(sent, response, now):
                return
            if (
                status == 422
                and sent.timer_rounds < _MAX_422_ROUNDS
                and self._st.on_too_small(response)
            ):
                # RFC 4028 6: retry with Session-Expires >= the peer's Min-SE.
                invite = self._resend_initial(sent)
                self._st.decorate_request(invite)
                self._restart_calling()
                self._send_initial(
                    invite, auth_rounds=sent.auth_rounds, timer_rounds=sent.timer_rounds + 1
                )
                return
            if 300 <= status < 400 and self._redirect(sent, response):
                return
        self._cancel_guard = None
        self._end(status, reason, by_remote=not hanging_up)

    def _redirect(self, sent: _Sent, response: Response) -> bool:
        """RFC 3261 8.1.3.4: try the Contacts of a 3xx, best q first, never twice."""
        if self._redirects >= self._max_redirects:
            return False

        def q(address: NameAddr) -> float:
            try:
                return float(address.params.get("q") or 1.0)
            except ValueError:
                return 0.0

        try:
            contacts = sorted(response.contacts, key=q, reverse=True)
        except SipParseError:
            return False
        fresh: list[URI] = []
        for address in contacts:
            uri = address.uri
            if uri.scheme in ("sip", "sips") and uri not in self._tried and uri not in fresh:
                fresh.append(uri)
        if not fresh:
            return False
        self._redirects += 1
        self._tried.append(fresh[0])
        self._events.append(Redirected(response.status, tuple(fresh)))
        invite = self._resend_initial(sent, uri=fresh[0])
        self._restart_calling()
        self._send_initial(invite, auth_rounds=0, timer_rounds=sent.timer_rounds)
        return True

    def _restart_calling(self) -> None:
        self._early_sdp = None
        if self._state is _S.EARLY:
            self._move(_S.CALLING, 0, "new INVITE")

    def _cancel(self, now: float) -> None:
        invite = self._invite
        assert invite is not None
        h = Headers()
        for route in invite.headers.get_all("Route"):
            h.add("Route", route)
        h.add("Max-Forwards", "70")
        h.add("From", str(invite.from_))
        h.add("To", str(invite.to))
        h.add("Call-ID", invite.call_id)
        h.add("CSeq", f"{invite.cseq.seq} CANCEL")
        self._requests.append(
            OutRequest(Request("CANCEL", invite.uri, h), stateless=False, cancels=invite)
        )
        self._cause = (487, "Request Terminated", False)
        self._cancel_guard = now + self._timers.timer_b
        self._move(_S.DISCONNECTING, 0, "CANCEL sent")

    # -- UAC: ACK, re-INVITE, BYE -------------------------------------------------------------

    def _send_reinvite(self, sdp: bytes, *, auth_rounds: int, timer_rounds: int) -> None:
        assert self._dialog is not None
        request = self._dialog.new_request("INVITE", body=sdp, content_type=SDP)
        request.headers.add("Allow", ALLOW)
        self._st.decorate_request(request)
        self._authorize(request)
        sent = _Sent(request, _Purpose.REINVITE, self._dialog, auth_rounds, timer_rounds)
        self._reinvite = sent
        self._queue(sent)

    def _on_reinvite_response(self, sent: _Sent, response: Response, now: float) -> None:
        status = response.status
        dialog = sent.dialog
        assert dialog is not None
        if 200 <= status < 300:
            self._forget(sent)
            self._reinvite = None
            self._send_ack(dialog, response.cseq.seq, None)
            if self._state is not _S.CONFIRMED:
                return
            dialog.refresh_target(response)  # RFC 3261 12.2.1.2 target refresh
            self._local_sdp = sent.request.body
            self._st.on_success_as_uac(response, now)
            if response.body:
                self._remote_sdp = response.body
                self._events.append(RemoteAnswer(response.body))
            self._events.append(SessionRefreshed(self._st.interval, by_remote=False))
            return
        self._forget(sent)
        self._reinvite = None
        if self._state is not _S.CONFIRMED:
            return
        if status in (401, 407) and self._retry_with_auth(sent, response, now):
            return
        if (
            status == 422
            and sent.timer_rounds < _MAX_422_ROUNDS
            and self._st.on_too_small(response)
        ):
            self._send_reinvite(
                sent.request.body, auth_rounds=sent.auth_rounds, timer_rounds=sent.timer_rounds + 1
            )
            return
        if status == 491:
            # RFC 3261 14.1: glare; the Call-ID owner waits 2.1-4 s, the other 0-2 s,
            # in units of 10 ms.
            low, high = (210, 400) if self._role is Role.UAC else (0, 200)
            self._retry_at = now + self._rng.randint(low, high) / 100
            self._retry_sdp = sent.request.body
            return
        if status in (408, 481):
            self._dialog_failed(status, response.reason)
            return
        self._events.append(OfferRejected(status, response.reason))

    def _retry_glare(self, now: float) -> None:
        sdp = self._retry_sdp
        self._retry_at = None
        self._retry_sdp = None
        if self._state is not _S.CONFIRMED or sdp is None:
            return
        if self._reinvite is not None or self._incoming is not None or self._pending_ack:
            # The peer's re-INVITE went first; ours still has to go, a bit later.
            self._retry_at = now + self._rng.randint(0, 200) / 100
            self._retry_sdp = sdp
            return
        self._send_reinvite(sdp, auth_rounds=0, timer_rounds=0)

    def _refresh(self, now: float) -> None:
        """RFC 4028 10: we are the refresher; re-INVITE with the same SDP."""
        if self._state is not _S.CONFIRMED or self._local_sdp is None:
            return
        if self._reinvite is not None or self._incoming is not None or self._retry_at is not None:
            return  # a transaction in progress will refresh the session when it ends
        self._send_reinvite(self._local_sdp, auth_rounds=0, timer_rounds=0)

    def _dialog_failed(self, status: int, reason: str) -> None:
        """RFC 3261 12.2.1.2: a 481 or 408 inside the dialog ends it."""
        if self._state is not _S.CONFIRMED or self._dialog is None:
            return
        if status == 481:
            self._end(481, reason, by_remote=True)
        else:
            self._begin_bye(self._dialog, status, reason, by_remote=False)

    def _retry_with_auth(self, sent: _Sent, response: Response, now: float) -> bool:
        """RFC 3261 22.2: answer a 401/407 and resend with CSeq + 1; False if we cannot."""
        if self._auth is None or sent.auth_rounds >= _MAX_AUTH_ROUNDS:
            return False
        try:
            self._auth.handle_challenge(sent.request, response)
        except (AuthenticationError, SipParseError):
            return False
        rounds = sent.auth_rounds + 1
        if sent.purpose is _Purpose.INITIAL:
            self._restart_calling()
            self._send_initial(
                self._resend_initial(sent), auth_rounds=rounds, timer_rounds=sent.timer_rounds
            )
        elif sent.purpose is _Purpose.REINVITE:
            self._send_reinvite(sent.request.body, auth_rounds=rounds, timer_rounds=0)
        else:
            dialog = sent.dialog
            assert dialog is not None
            content_type = sent.request.content_type
            request = dialog.new_request(
                sent.request.method, body=sent.request.body, content_type=content_type
            )
            self._authorize(request)
            self._queue(_Sent(request, sent.purpose, dialog, rounds))
        return True

    def __repr__(self) -> str:
        call_id = self._invite.call_id if self._invite is not None else "?"
        return f"<InviteSession {self._role.value} {call_id} {self._state.value}>"
