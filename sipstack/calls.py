"""Calls on the user agent: PJSUA's call API over INVITE sessions, on the endpoint.

:class:`CallManager` is the glue between the sans-IO
:class:`~sipstack.invite_session.InviteSession` and the real endpoint, the way
:class:`~sipstack.driver.MachineDriver` is for client-only machines; sessions
also *answer* requests, so it keeps, per call, the server transaction
(:class:`~sipstack.endpoint.IncomingRequest`) of every request the session
received and sends each response the session produces through it.

It owns a fixed table of call slots (ids are slot indexes, as PJSUA's
``pjsua_call_id``), claims INVITEs, CANCELs, ACKs for 2xx and in-dialog
requests from the user agent, runs one loop timer per session (retransmitted
2xx, session timers, 491 back-off) and does the SDP offer/answer (RFC 3264)
with :mod:`sipstack.offer_answer` unless the application passes raw SDP.

Media is behind :class:`MediaFactory`; without one, :class:`SignallingOnlyMedia`
offers PCMU/PCMA/telephone-event on a reserved UDP port and sends nothing, so
signalling runs (and is tested) alone. Errors follow the user agent: a bad call
id or a call in the wrong state raises (``ValueError`` /
:class:`~sipstack.invite_events.InviteSessionError`), a full table raises
``LookupError``; a peer's bad SDP ends that call with 488, never raises.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from . import records
from .account import Account
from .account_config import INVALID_ID
from .call_events import (
    CallEvent,
    CallInfo,
    CallMediaState,
    CallStateChanged,
    DtmfDigit,
    IncomingCall,
    MediaStatus,
)
from .call_media import (
    MediaDtmf,
    MediaFactory,
    MediaStats,
    SignallingOnlyMedia,
    media_status,
    refusal_answer,
)
from .endpoint import IncomingRequest, OutgoingRequest, RequestFailure
from .errors import SipParseError, TransportError
from .headers import NameAddr
from .invite_events import (
    Disconnected,
    DtmfInfo,
    EarlyMedia,
    InviteSessionError,
    InviteSessionEvent,
    InviteState,
    OfferRejected,
    OutRequest,
    RemoteAnswer,
    RemoteOffer,
    StateChanged,
)
from .invite_session import InviteSession, Role
from .loop import TimerHandle
from .message import Message, Request, Response, make_response
from .offer_answer import (
    LocalMedia,
    NegotiatedMedia,
    OfferAnswerError,
    create_answer,
    create_offer,
    process_answer,
)
from .records import dataclass
from .sdp import Direction, SdpParseError, SessionDescription, parse_sdp
from .session_timer import SessionTimerConfig
from .transport_base import Peer
from .useragent import UserAgent

__all__ = [
    "PJSUA_MAX_CALLS",
    "CallEvent",
    "CallInfo",
    "CallManager",
    "CallMediaState",
    "CallStateChanged",
    "DtmfDigit",
    "IncomingCall",
    "MediaDtmf",
    "MediaFactory",
    "MediaStats",
    "MediaStatus",
    "SignallingOnlyMedia",
]

log = logging.getLogger(__name__)

#: PJSUA's default number of call slots.
PJSUA_MAX_CALLS = 4
_DTMF_DIGITS = "0123456789*#ABCD"
_INFO_DTMF_DURATION = 160  # ms, what most phones put in application/dtmf-relay
_S = InviteState


# -- one call -----------------------------------------------------------------------


_TxnId = tuple[str, int, str, str]


def _txn_id(message: Message) -> _TxnId:
    """What ties a response to the request it answers: Call-ID, CSeq and top Via
    branch (CANCEL shares the INVITE's branch but not its method, RFC 3261 9.2)."""
    cseq = message.cseq
    return (message.call_id, cseq.seq, cseq.method.upper(), message.top_via.branch or "")


class _Call:
    """The run-time state of one slot: the session and the glue around it."""

    def __init__(
        self, slot: int, acc_id: int, role: Role, contact: NameAddr, now: float, raw: bool
    ) -> None:
        self.slot = slot
        self.acc_id = acc_id
        self.role = role
        self.contact = contact
        self.raw = raw  # the application handles SDP itself
        self.session: InviteSession | None = None
        # The INVITE being built, until the session exists: call_make_call asks the
        # media factory for the offer first, and the factory may read call_get_info.
        self.pending_invite: Request | None = None
        self.started = now
        self.connected: float | None = None
        self.ended: float | None = None
        self.last_status = 0
        self.last_reason = ""
        # server transactions of requests the session received, by _txn_id
        self.incoming: dict[_TxnId, IncomingRequest] = {}
        # INVITEs we sent (by identity of the drained Request) -> their transaction
        self.invites: dict[int, tuple[Request, OutgoingRequest]] = {}
        self.cancel_deferred: set[int] = set()
        self.timer: TimerHandle | None = None
        self.timer_at: float | None = None
        self.pumping = False
        self.retired = False  # ended: no events, slot freed; still absorbs late 2xx
        self.dropped = False  # forgotten entirely
        # offer/answer state (RFC 3264 8: one session id, version + 1 per change)
        self.media_used = False
        self.local: LocalMedia | None = None
        self.sdp_session_id = 0
        self.sdp_version = 0
        self.last_local: SessionDescription | None = None
        self.pending_offer: bytes | None = None  # the peer's offer in the initial INVITE
        # (peer's offer, our direction, our answer) of the last exchange we answered
        self.last_answer: tuple[bytes, Direction, bytes] | None = None
        self.negotiated: NegotiatedMedia | None = None
        self.media_status = MediaStatus.NONE
        self.local_hold = False
        self.dtmf_queue: deque[str] = deque()
        self.info_in_flight = False

    @property
    def sess(self) -> InviteSession:
        assert self.session is not None
        return self.session


@dataclass(frozen=True, slots=True)
class _Release:
    """Queued after a call's last event: free its slot once that event is delivered."""

    call: _Call


class CallManager:
    """PJSUA-style calls on a :class:`UserAgent` (see the module docstring).

    ``on_event`` receives :data:`CallEvent` events. ``max_calls`` is the slot
    count (a new INVITE when every slot is taken gets 486 Busy Here);
    ``media`` the media layer (default :class:`SignallingOnlyMedia`);
    ``session_timer`` the RFC 4028 preferences of every call.
    """

    def __init__(
        self,
        ua: UserAgent,
        *,
        on_event: Callable[[CallEvent], None] | None = None,
        max_calls: int = PJSUA_MAX_CALLS,
        media: MediaFactory | None = None,
        session_timer: SessionTimerConfig | None = None,
    ) -> None:
        if max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, not {max_calls}")
        self.ua = ua
        self.endpoint = ua.endpoint
        self.loop = ua.loop
        self.on_event = on_event
        self.media: MediaFactory = (
            media if media is not None else SignallingOnlyMedia(self._media_address)
        )
        self.session_timer = session_timer
        self._slots: list[_Call | None] = [None] * max_calls
        self._retired: list[_Call] = []
        self._events: deque[CallEvent | _Release] = deque()
        self._flushing = False
        ua.add_request_handler(self._on_request)
        ua.add_network_change_handler(self.handle_network_change)
        # RFC 3261 17.1.1.3 / 17.2.1: ACKs for 2xx and 2xx retransmissions that
        # outlived their transaction belong to the dialog layer.
        self.endpoint.on_ack = self._on_ack
        self.endpoint.on_stray_response = self._on_stray_response

    # -- the slot table ----------------------------------------------------------------

    @property
    def max_calls(self) -> int:
        """The number of call slots."""
        return len(self._slots)

    def call_get_count(self) -> int:
        """Number of calls in progress."""
        return sum(1 for c in self._slots if c is not None)

    def enum_calls(self) -> list[int]:
        """Ids of the calls in progress, in slot order."""
        return [i for i, c in enumerate(self._slots) if c is not None]

    def call_is_active(self, call_id: int) -> bool:
        """True when ``call_id`` names a call in progress."""
        return 0 <= call_id < len(self._slots) and self._slots[call_id] is not None

    def _call(self, call_id: int) -> _Call:
        if not 0 <= call_id < len(self._slots):
            raise ValueError(f"call id {call_id} out of range 0..{len(self._slots) - 1}")
        call = self._slots[call_id]
        if call is None:
            raise ValueError(f"no call with id {call_id}")
        return call

    def _free_slot(self) -> int | None:
        return next((i for i, c in enumerate(self._slots) if c is None), None)

    def _account(self, acc_id: int) -> Account:
        # UserAgent has no public accessor for the Account object (its
        # authenticator is needed for 401/407 on INVITE and BYE).
        return self.ua.acc_get_account(acc_id)

    # -- making, answering and ending calls --------------------------------------------

    def call_make_call(self, acc_id: int, dst_uri: str, *, sdp_offer: bytes | None = None) -> int:
        """Call ``dst_uri`` from account ``acc_id``; returns the call id.

        Without ``sdp_offer`` the offer comes from the media factory; with
        ``b""`` the INVITE has no SDP (late offer: the 2xx offers, the media
        factory answers in the ACK); any other value is sent as is, and the
        answers are only reported (the application owns the media).
        """
        acc = self._account(acc_id)
        slot = self._free_slot()
        if slot is None:
            raise LookupError(f"all {len(self._slots)} call slots are in use")
        invite = self.ua.acc_create_request(acc_id, "INVITE", dst_uri)
        call = _Call(slot, acc_id, Role.UAC, invite.contacts[0], self.loop.time(), bool(sdp_offer))
        call.pending_invite = invite
        self._slots[slot] = call
        try:
            body = sdp_offer if sdp_offer is not None else self._new_offer(call)
            if body:
                invite.headers.set("Content-Type", "application/sdp")
                invite.body = body
            call.session = InviteSession.outgoing(
                invite,
                ids=self.ua.ids,
                rng=self.ua.rng,
                authenticator=acc.authenticator,
                timers=self.endpoint.layer.timers,
                session_timer=self.session_timer,
            )
        except Exception:
            self._slots[slot] = None
            if call.media_used:
                self.media.close(slot)
            raise
        finally:
            call.pending_invite = None
        self._pump(call)
        return slot

    def call_answer(self, call_id: int, code: int = 200, sdp: bytes | None = None) -> None:
        """Answer an incoming call: 180/183 (ringing), 2xx (connect), 3xx-6xx (refuse).

        A 2xx without ``sdp`` answers the peer's offer (or offers, when its
        INVITE had none) from the media factory; when no stream can be
        accepted the call is refused with 488 (RFC 3261 13.3.1.1) instead.
        """
        call = self._call(call_id)
        now = self.loop.time()
        session = call.sess
        if call.role is not Role.UAS or session.state not in (_S.INCOMING, _S.EARLY):
            raise InviteSessionError(
                f"call {call_id} is an {call.role.value} call in state {session.state.value}:"
                " nothing to answer"
            )
        if 200 <= code < 300 and sdp is None:
            if call.raw:
                raise ValueError(f"call {call_id} uses raw SDP: pass the answer")
            offer = call.pending_offer
            if offer is None:
                sdp = self._new_offer(call)
            else:
                sdp = self._answer_offer(call, offer)
                if sdp is None:
                    session.answer(488, None, now)
                    self._pump(call)
                    return
            call.pending_offer = None
        elif 200 <= code < 300 and sdp is not None:
            call.raw = True  # the application answered: it owns this call's media
        session.answer(code, sdp, now)
        self._pump(call)

    def call_hangup(self, call_id: int, code: int = 603) -> None:
        """End a call: CANCEL, a ``code`` (300-699) refusal or BYE, as its state needs."""
        call = self._call(call_id)
        call.sess.hangup(self.loop.time(), code)
        self._pump(call)

    def hangup_all(self) -> None:
        """Hang up every call (PJSUA's ``pjsua_call_hangup_all``)."""
        for call_id in self.enum_calls():
            try:
                self.call_hangup(call_id)
            except (InviteSessionError, ValueError) as exc:
                log.warning("call %d: hangup failed: %s", call_id, exc)

    def close(self) -> None:
        """Stop driving every call (after ``hangup_all`` and some loop time, or at
        shutdown): timers cancelled, media closed, no more events."""
        for call in [c for c in self._slots if c is not None] + self._retired:
            if call.media_used and not call.retired:
                try:
                    self.media.close(call.slot)
                except Exception:
                    log.exception("call %d: media layer failed to close", call.slot)
            call.retired = True
            self._drop(call)
        self._slots = [None] * len(self._slots)
        self._events.clear()

    # -- hold, re-INVITE, DTMF -----------------------------------------------------------

    def call_set_hold(self, call_id: int) -> None:
        """Put the call on hold: re-INVITE with ``sendonly`` (``inactive`` when the
        peer holds us too), RFC 3264 8.4."""
        call = self._call(call_id)
        self._require_sdp_control(call)
        held_by_peer = call.negotiated is not None and call.negotiated.on_hold_by_remote
        direction = Direction.INACTIVE if held_by_peer else Direction.SENDONLY
        self._reoffer(call, direction, hold=True)

    def call_reinvite(self, call_id: int) -> None:
        """Re-INVITE with our normal direction: releases a hold, refreshes the session."""
        call = self._call(call_id)
        self._require_sdp_control(call)
        assert call.local is not None
        self._reoffer(call, call.local.media_direction, hold=False)

    def handle_network_change(self) -> None:
        """Our address changed: re-INVITE every confirmed call from the new one.

        The peer still sends RTP to the old ``c=`` address and in-dialog
        requests (its BYE) to the old Contact, so without this a call would go
        silent and could not be ended by the peer. The re-INVITE carries the
        new Contact (RFC 3261 12.2.1.1 target refresh) and an SDP offer with the
        new address (RFC 3264 8: a new version of our session description).
        With no route at the moment (link down) a call is left as it is: the
        link may come back with the same address, and a new one brings another
        change. A call whose re-INVITE cannot go out now (an offer already in
        progress, RFC 3261 14.1) is ended, so nothing is left hanging. Calls
        not yet confirmed are not moved.
        """
        for call in self._sessions():
            if call.retired or call.session is None or call.sess.state is not _S.CONFIRMED:
                continue
            dialog = call.sess.dialog
            if call.raw or call.local is None or dialog is None:
                continue
            try:
                contact = NameAddr.parse(
                    self.ua.acc_create_uac_contact(call.acc_id, dialog.remote_target)
                )
            except ValueError as exc:  # no route to the peer at the moment
                log.info("call %d: not moved to a new address: %s", call.slot, exc)
                continue
            if (contact.uri.host, contact.uri.port) == (
                call.contact.uri.host,
                call.contact.uri.port,
            ):
                continue  # this call's address did not change
            log.info("call %d: address changed to %s, re-INVITE", call.slot, contact.uri.host)
            call.contact = contact
            call.sess.set_local_contact(contact)
            call.local = records.replace(call.local, address=contact.uri.host)
            try:
                self._reoffer(call, call.local.media_direction, hold=call.local_hold)
            except InviteSessionError as exc:
                log.info("call %d: cannot re-INVITE (%s): ending it", call.slot, exc)
                self.call_hangup(call.slot)

    def _require_sdp_control(self, call: _Call) -> None:
        if call.raw or call.local is None:
            raise ValueError(f"call {call.slot} uses raw SDP: send re-INVITEs yourself")
        if call.sess.state is not _S.CONFIRMED:
            raise InviteSessionError(f"call {call.slot} is {call.sess.state.value}, not confirmed")

    def _reoffer(self, call: _Call, direction: Direction, *, hold: bool) -> None:
        assert call.local is not None
        local = records.replace(call.local, direction=direction)
        version = call.sdp_version + 1
        offer = create_offer(local, call.sdp_session_id, version, previous=call.last_local)
        # Raises when another offer/answer is in progress (RFC 3261 14.1): then
        # nothing changed here either.
        call.sess.reinvite(offer.to_bytes(), self.loop.time())
        call.sdp_version, call.last_local, call.local_hold = version, offer, hold
        self._pump(call)

    def call_dial_dtmf(self, call_id: int, digits: str) -> None:
        """Send DTMF: RFC 4733 by the media layer when it can, else SIP INFO
        (``application/dtmf-relay``), one INFO at a time so the order holds."""
        call = self._call(call_id)
        digits = digits.upper()
        bad = [d for d in digits if d not in _DTMF_DIGITS]
        if bad or not digits:
            raise ValueError(f"not DTMF digits: {digits!r} (0-9 * # A-D)")
        if call.sess.state is not _S.CONFIRMED:
            raise InviteSessionError(f"call {call_id} is {call.sess.state.value}, not confirmed")
        media = self.media
        if isinstance(media, MediaDtmf) and not call.raw and media.send_dtmf(call_id, digits):
            return
        call.dtmf_queue.extend(digits)
        self._next_info(call)

    def _next_info(self, call: _Call) -> None:
        if call.info_in_flight or not call.dtmf_queue or call.sess.state is not _S.CONFIRMED:
            return
        digit = call.dtmf_queue.popleft()
        body = f"Signal={digit}\r\nDuration={_INFO_DTMF_DURATION}\r\n".encode()
        call.sess.send_info(body, "application/dtmf-relay", self.loop.time())
        self._pump(call)

    def on_media_dtmf(self, call_id: int, digit: str, duration: int) -> None:
        """For the media layer: an RFC 4733 digit arrived on ``call_id``'s stream."""
        call = self._slots[call_id] if 0 <= call_id < len(self._slots) else None
        if call is not None:
            self._events.append(DtmfDigit(call_id, digit, duration, "rfc4733"))
            self._flush()

    # -- information ---------------------------------------------------------------------

    def call_get_info(self, call_id: int) -> CallInfo:
        """A snapshot of the call (state, parties, media, durations, RTP statistics)."""
        call = self._call(call_id)
        session = call.session
        # Before the session exists (the media factory building the first offer)
        # the INVITE being built says who calls whom; the state is still NULL.
        invite = session.invite if session is not None else call.pending_invite
        assert invite is not None
        dialog = session.dialog if session is not None else None
        if dialog is not None:
            local, remote = dialog.local_uri, dialog.remote_uri
        elif call.role is Role.UAC:
            local, remote = invite.from_, invite.to
        else:
            local, remote = invite.to, invite.from_
        local, remote = _untagged(local), _untagged(remote)
        now = call.ended if call.ended is not None else self.loop.time()
        codec = call.negotiated.codec if call.negotiated is not None else None
        stats = self.media.rtp_stats(call_id) if isinstance(self.media, MediaStats) else None
        return CallInfo(
            id=call_id,
            acc_id=call.acc_id,
            role=call.role,
            state=session.state if session is not None else _S.NULL,
            local_info=str(local),
            local_contact=str(call.contact),
            remote_info=str(remote),
            remote_uri=str(remote.uri),
            remote_contact=f"<{dialog.remote_target}>" if dialog is not None else None,
            sip_call_id=session.call_id if session is not None else invite.call_id,
            last_status=call.last_status,
            last_reason=call.last_reason,
            media_status=call.media_status,
            media=call.negotiated,
            codec=f"{codec.name}/{codec.clock_rate}" if codec is not None else None,
            local_sdp=session.local_sdp if session is not None else None,
            remote_sdp=session.remote_sdp if session is not None else None,
            connect_duration=now - call.connected if call.connected is not None else 0.0,
            total_duration=now - call.started,
            rtp_stats=stats,
        )

    # -- offer/answer --------------------------------------------------------------------

    def _media_address(self, call_id: int) -> str:
        call = self._slots[call_id]
        assert call is not None
        return call.contact.uri.host

    def _local_media(self, call: _Call) -> LocalMedia:
        if call.local is None:
            call.local = self.media.create_local_media(call.slot)
            call.media_used = True
            call.sdp_session_id = self.ua.rng.randrange(1, 2**31)
        return call.local

    def _our_direction(self, call: _Call) -> Direction:
        local = self._local_media(call)
        return Direction.SENDONLY if call.local_hold else local.media_direction

    def _new_offer(self, call: _Call) -> bytes:
        local = self._local_media(call)
        call.sdp_version += 1
        offer = create_offer(
            records.replace(local, direction=self._our_direction(call)),
            call.sdp_session_id,
            call.sdp_version,
            previous=call.last_local,
        )
        call.last_local = offer
        return offer.to_bytes()

    def _answer_offer(self, call: _Call, sdp: bytes) -> bytes | None:
        """Our answer to the peer's offer, or None when nothing is acceptable (488)."""
        try:
            offer = parse_sdp(sdp)
        except SdpParseError as exc:
            log.info("call %d: unreadable SDP offer: %s", call.slot, exc.reason)
            self._set_media(call, None, error=True)
            return None
        direction = self._our_direction(call)
        previous = call.last_answer
        if previous is not None and previous[:2] == (sdp, direction):
            # RFC 4028 10 / RFC 3264 8: an unchanged offer (a session refresh)
            # gets our unchanged answer, same version; the media stays as it is.
            return previous[2]
        local = records.replace(self._local_media(call), direction=direction)
        version = call.sdp_version + 1
        answer, negotiated = create_answer(offer, local, call.sdp_session_id, version)
        if negotiated is None:
            self._set_media(call, None, error=True)
            return None
        body = answer.to_bytes()
        call.sdp_version, call.last_local, call.last_answer = (
            version,
            answer,
            (sdp, direction, body),
        )
        self._set_media(call, negotiated)
        return body

    def _take_answer(self, call: _Call, sdp: bytes) -> bool:
        """The peer's answer to the offer the session last sent; False if unusable."""
        ours = call.sess.local_sdp
        if ours is None:
            return False
        try:
            negotiated = process_answer(parse_sdp(ours), parse_sdp(sdp))
        except (SdpParseError, OfferAnswerError) as exc:
            log.info("call %d: bad SDP answer: %s", call.slot, exc)
            negotiated = None
        if call.raw:
            # Only reported: the application owns the media.
            if negotiated is not None:
                call.negotiated = negotiated
            return True
        self._set_media(call, negotiated, error=negotiated is None)
        return negotiated is not None

    def _set_media(self, call: _Call, media: NegotiatedMedia | None, error: bool = False) -> None:
        status = media_status(media, error=error, local_hold=call.local_hold)
        call.negotiated = media if media is not None else call.negotiated
        call.media_status = status
        if media is not None and not call.raw:
            try:
                self.media.on_negotiated(call.slot, media)
            except Exception:
                log.exception("call %d: media layer failed to apply %r", call.slot, media)
        if not call.retired:
            self._events.append(CallMediaState(call.slot, status, media))

    # -- the session's events ------------------------------------------------------------

    def _on_session_event(self, call: _Call, event: InviteSessionEvent) -> None:
        session = call.sess
        now = self.loop.time()
        if isinstance(event, StateChanged):
            if event.code:
                call.last_status, call.last_reason = event.code, event.reason
            if event.new is _S.CONFIRMED and call.connected is None:
                call.connected = now
            if event.new is _S.DISCONNECTED and call.ended is None:
                call.ended = now
            if not call.retired:
                self._events.append(
                    CallStateChanged(call.slot, event.new, event.code, event.reason)
                )
        elif isinstance(event, RemoteOffer):
            if call.role is Role.UAS and session.state in (_S.INCOMING, _S.EARLY):
                call.pending_offer = event.sdp  # answered by call_answer
                return
            # A re-INVITE's offer, or the offer of a 2xx to our offerless INVITE:
            # PJSUA answers these itself.
            answer = None if call.raw else self._answer_offer(call, event.sdp)
            if call.raw:
                answer = session.local_sdp
            try:
                if answer is not None:
                    session.answer(200, answer, now)
                elif session.state is _S.CONNECTING:
                    # RFC 3264 6: the ACK must carry an answer; refuse every stream, then end.
                    session.answer(200, self._refusal(call, event.sdp), now)
                    session.hangup(now)
                else:
                    session.answer(488, None, now)
            except InviteSessionError as exc:
                log.warning("call %d: cannot answer the offer: %s", call.slot, exc)
        elif isinstance(event, RemoteAnswer | EarlyMedia):
            usable = self._take_answer(call, event.sdp)
            if (
                not usable
                and isinstance(event, RemoteAnswer)
                and not call.raw
                and call.negotiated is None
                and session.state in (_S.CONNECTING, _S.CONFIRMED)
            ):
                log.info("call %d: no usable audio in the answer; hanging up", call.slot)
                session.hangup(now)
        elif isinstance(event, OfferRejected):
            # RFC 3261 14.1: the old session stays; so does the old hold state.
            if call.negotiated is not None:
                call.local_hold = not call.negotiated.can_receive and call.negotiated.can_send
                self._set_media(call, call.negotiated)
        elif isinstance(event, DtmfInfo):
            if not call.retired:
                self._events.append(DtmfDigit(call.slot, event.digit, event.duration, "info"))
        elif isinstance(event, Disconnected):
            log.info(
                "call %d ended: %d %s%s",
                call.slot,
                event.code,
                event.reason,
                " (by peer)" if event.by_remote else "",
            )

    def _refusal(self, call: _Call, sdp: bytes) -> bytes:
        """An answer refusing every stream (port 0), for an offer that must be answered."""
        local = self._local_media(call)
        call.sdp_version += 1
        return refusal_answer(sdp, local, call.sdp_session_id, call.sdp_version)

    # -- driving the session -------------------------------------------------------------

    def _pump(self, call: _Call) -> None:
        """Send what the session wants sent, handle its events, re-arm its timer."""
        if call.dropped:
            return
        if call.pumping:
            return  # re-entered from a handler: the outer loop drains
        call.pumping = True
        session = call.sess
        try:
            while True:
                responses = session.responses_to_send()
                for response in responses:
                    self._send_response(call, response)
                requests = session.requests_to_send()
                for out in requests:
                    self._send_request(call, out)
                progressed = bool(responses or requests)
                while (event := session.next_event()) is not None:
                    progressed = True
                    self._on_session_event(call, event)
                if not progressed:
                    break
        finally:
            call.pumping = False
        if session.state is _S.CONFIRMED and call.dtmf_queue and not call.info_in_flight:
            self._next_info(call)
        self._arm(call)
        if session.state is _S.DISCONNECTED and not call.retired:
            self._retire(call)
        self._flush()

    def _send_response(self, call: _Call, response: Response) -> None:
        tid = _txn_id(response)
        inc = call.incoming.get(tid)
        if inc is None:
            log.error("call %d: no server transaction for %d %s", call.slot, response.status, tid)
            return
        try:
            self.endpoint.respond(inc, response)
        except KeyError:
            # RFC 6026 8.1: the transaction ended (Timer L); the core sends
            # retransmissions of its 2xx straight to the transport.
            try:
                self.endpoint.transports.send_response(response, inc.peer)
            except TransportError as exc:
                log.info("call %d: cannot resend %d: %s", call.slot, response.status, exc)
        method = tid[2]
        if response.status >= 200 and (method != "INVITE" or response.status >= 300):
            call.incoming.pop(tid, None)

    def _send_request(self, call: _Call, out: OutRequest) -> None:
        request = out.request
        if out.stateless:
            self.endpoint.send_stateless(request)  # the ACK for a 2xx (RFC 3261 13.2.2.4)
            return
        if out.cancels is not None:
            entry = call.invites.get(id(out.cancels))
            if entry is None or entry[0] is not out.cancels:
                log.error("call %d: CANCEL for an INVITE we never sent", call.slot)
                return
            handle = entry[1]
            self.endpoint.cancel(handle)
            if handle.key is None:
                # Still locating the server: the endpoint would send the INVITE
                # anyway; cancel it at its first provisional response.
                call.cancel_deferred.add(id(handle))
            return

        def on_response(response: Response) -> None:
            if id(handle) in call.cancel_deferred and response.status < 200:
                call.cancel_deferred.discard(id(handle))
                self.endpoint.cancel(handle)
            if request.method == "INFO" and response.status >= 200:
                call.info_in_flight = False
            call.sess.receive_response(request, response, self.loop.time())
            self._pump(call)

        def on_failure(failure: RequestFailure) -> None:
            if request.method == "INFO":
                call.info_in_flight = False
            call.sess.request_failed(request, failure.status, failure.reason, self.loop.time())
            self._pump(call)

        handle = self.endpoint.send_request(request, on_response, on_failure)
        if request.method == "INFO":
            call.info_in_flight = True  # DTMF order: the next INFO waits (also after a 401)
        if request.method == "INVITE":
            call.invites[id(request)] = (request, handle)
            if len(call.invites) > 8:  # re-INVITEs of a long call: keep the recent ones
                del call.invites[next(iter(call.invites))]

    def _arm(self, call: _Call) -> None:
        when = call.sess.get_timer()
        if when == call.timer_at and call.timer is not None:
            return
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        call.timer_at = when
        if when is not None:
            call.timer = self.loop.call_at(when, lambda: self._fire(call))

    def _fire(self, call: _Call) -> None:
        call.timer = None
        call.timer_at = None
        if call.dropped:
            return
        call.sess.handle_timer(self.loop.time())
        self._pump(call)

    def _retire(self, call: _Call) -> None:
        """The call is over: free its slot and media now; keep the session a while
        (64*T1) so a late 2xx is still ACKed and hung up (RFC 3261 13.2.2.4)."""
        call.retired = True
        # The slot is freed once the DISCONNECTED event is delivered, so the
        # handler can still read call_get_info (as in PJSUA's on_call_state).
        self._events.append(_Release(call))
        if call.media_used:
            try:
                self.media.close(call.slot)
            except Exception:
                log.exception("call %d: media layer failed to close", call.slot)
        self._retired.append(call)
        self.loop.call_later(64 * self.endpoint.layer.timers.t1, lambda: self._drop(call))

    def _drop(self, call: _Call) -> None:
        call.dropped = True
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None
        if call in self._retired:
            self._retired.remove(call)

    def _flush(self) -> None:
        """Deliver queued events in order; handlers may call the API (re-entry queues)."""
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, _Release):
                    if self._slots[event.call.slot] is event.call:
                        self._slots[event.call.slot] = None
                    continue
                if self.on_event is None:
                    continue
                try:
                    self.on_event(event)
                except Exception:
                    log.exception("call event handler failed for %r", event)
        finally:
            self._flushing = False

    # -- requests from the user agent ----------------------------------------------------

    def _sessions(self) -> list[_Call]:
        live = [c for c in self._slots if c is not None and c.session is not None]
        return live + [c for c in self._retired if not c.dropped]

    def _find_dialog(self, message: Request, *, incoming_request: bool) -> _Call | None:
        for call in self._sessions():
            dialog = call.sess.dialog
            if dialog is not None and dialog.matches(message, incoming_request=incoming_request):
                return call
        return None

    def _on_request(self, acc_id: int, inc: IncomingRequest) -> bool:
        request = inc.request
        method = request.method
        if method == "CANCEL":
            return self._on_cancel(inc)
        if request.to.tag is None:
            if method != "INVITE":
                return False
            self._on_invite(acc_id, inc)
            return True
        call = self._find_dialog(request, incoming_request=True)
        if call is None:
            return False  # not one of our dialogs: the user agent answers 481
        self._feed(call, inc)
        return True

    def _feed(self, call: _Call, inc: IncomingRequest) -> None:
        call.incoming[_txn_id(inc.request)] = inc
        call.sess.receive_request(inc.request, self.loop.time())
        self._pump(call)

    def _on_cancel(self, inc: IncomingRequest) -> bool:
        key = self.endpoint.layer.match_cancel(inc.request)
        if key is None:
            return False  # RFC 3261 9.2: no such transaction: the user agent answers 481
        for call in self._sessions():
            if any(i.key == key for i in call.incoming.values()):
                self._feed(call, inc)
                return True
        return False

    def _on_invite(self, acc_id: int, inc: IncomingRequest) -> None:
        invite = inc.request
        if acc_id == INVALID_ID:
            self.ua.respond(inc, make_response(invite, 404, "No Such Account"))
            return
        for call in self._sessions():
            first = call.sess.invite
            if (
                call.role is Role.UAS
                and first is not None
                and first.call_id == invite.call_id
                and first.from_.tag == invite.from_.tag
                and first.cseq == invite.cseq
            ):
                # RFC 3261 8.2.2.2: the same request again by another path (a fork).
                self.ua.respond(inc, make_response(invite, 482, "Loop Detected"))
                return
        slot = self._free_slot()
        if slot is None:
            # All slots taken: "a second caller at a busy intercom gets 486".
            self.ua.respond(inc, make_response(invite, 486, "Busy Here"))
            return
        acc = self._account(acc_id)
        try:
            contact = NameAddr.parse(self.ua.acc_create_uas_contact(acc_id, invite))
        except (ValueError, SipParseError) as exc:
            log.warning("no Contact for an INVITE on account %d: %s", acc_id, exc)
            self.ua.respond(inc, make_response(invite, 500, "No Usable Transport"))
            return
        call = _Call(slot, acc_id, Role.UAS, contact, self.loop.time(), raw=False)
        call.incoming[_txn_id(invite)] = inc
        call.session = InviteSession.incoming(
            invite,
            ids=self.ua.ids,
            rng=self.ua.rng,
            contact=contact,
            authenticator=acc.authenticator,
            timers=self.endpoint.layer.timers,
            session_timer=self.session_timer,
            secure=inc.peer.transport == "tls" and invite.uri.is_secure,
        )
        if call.sess.state is _S.INCOMING:
            self._slots[slot] = call
            self._events.append(IncomingCall(slot, acc_id, str(invite.from_.uri)))
            self._pump(call)
        else:
            # Refused at once (400, 420, 422): it never took a slot.
            call.retired = True
            self._pump(call)

    def _on_ack(self, ack: Request, peer: Peer) -> None:
        call = self._find_dialog(ack, incoming_request=True)
        if call is None:
            log.debug("ACK for no dialog of ours (Call-ID %s)", ack.call_id)
            return
        for tid in [t for t in call.incoming if t[1] == ack.cseq.seq and t[2] == "INVITE"]:
            del call.incoming[tid]  # the 2xx is acknowledged: no more retransmissions
        call.sess.receive_request(ack, self.loop.time())
        self._pump(call)

    def _on_stray_response(self, response: Response) -> None:
        """A 2xx retransmission after our INVITE transaction ended (RFC 6026)."""
        for call in self._sessions():
            invite = call.sess.invite
            if (
                call.role is Role.UAC
                and invite is not None
                and invite.call_id == response.call_id
                and invite.from_.tag == response.from_.tag
            ):
                call.sess.receive_response(None, response, self.loop.time())
                self._pump(call)
                return


def _untagged(address: NameAddr) -> NameAddr:
    params = {k: v for k, v in address.params.items() if k != "tag"}
    return NameAddr(address.uri, address.display_name, params)
