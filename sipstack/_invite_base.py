"""Shared state and plumbing of an INVITE session (see :mod:`sipstack.invite_session`).

Private: the session's state lives here, with the helpers both roles use to
queue requests and responses, change state and end the call. The UAS-side
handling is in :mod:`sipstack._invite_uas`, the UAC side and the public API in
:mod:`sipstack.invite_session`.
"""

from __future__ import annotations

import enum
import random
from collections import deque

from sipstack.dialog import Dialog
from sipstack.headers import NameAddr
from sipstack.ids import IdGenerator
from sipstack.invite_events import (
    TRANSITIONS,
    Disconnected,
    InviteSessionError,
    InviteSessionEvent,
    InviteState,
    OutRequest,
    StateChanged,
)
from sipstack.message import Request, Response, make_response, reason_phrase
from sipstack.records import dataclass
from sipstack.registration_config import Authenticator
from sipstack.session_timer import (
    SessionTimer,
    SessionTimerConfig,
)
from sipstack.timers import TimerConfig
from sipstack.uri import URI

_S = InviteState
SDP = "application/sdp"
ALLOW = "INVITE, ACK, CANCEL, BYE, INFO, OPTIONS"


class Role(enum.Enum):
    """Which side started the session."""

    UAC = "uac"
    UAS = "uas"


class _Purpose(enum.Enum):
    INITIAL = "initial INVITE"
    REINVITE = "re-INVITE"
    BYE = "BYE"
    INFO = "INFO"
    FORK_BYE = "BYE of a surplus fork"


@dataclass(slots=True)
class _Sent:
    """A request of ours awaiting its final response."""

    request: Request
    purpose: _Purpose
    dialog: Dialog | None = None
    auth_rounds: int = 0
    timer_rounds: int = 0


@dataclass(slots=True)
class _Incoming:
    """A received INVITE (initial or re-INVITE) we still owe a final response."""

    request: Request
    initial: bool
    offer: bool


@dataclass(slots=True)
class _PendingAck:
    """Our 2xx to an INVITE, retransmitted until its ACK (RFC 3261 13.3.1.4)."""

    response: Response
    seq: int
    next_at: float
    interval: float
    give_up_at: float
    expect_answer: bool  # the 2xx carried our offer: the ACK must bring the answer
    initial: bool


class _SessionBase:
    """The state of one INVITE session and the plumbing both roles share."""

    def __init__(
        self,
        role: Role,
        *,
        ids: IdGenerator,
        rng: random.Random,
        authenticator: Authenticator | None,
        timers: TimerConfig | None,
        session_timer: SessionTimerConfig | None,
        local_contact: NameAddr,
        max_redirects: int = 5,
    ) -> None:
        self._role = role
        self._max_redirects = max_redirects
        self._ids = ids
        self._rng = rng
        self._auth = authenticator
        self._timers = timers if timers is not None else TimerConfig()
        self._st = SessionTimer(
            session_timer if session_timer is not None else SessionTimerConfig()
        )
        self._local_contact = local_contact
        self._state = _S.NULL
        self._events: deque[InviteSessionEvent] = deque()
        self._requests: list[OutRequest] = []
        self._responses: list[Response] = []
        self._invite: Request | None = None  # the current initial INVITE (ours or theirs)
        self._dialog: Dialog | None = None  # the dialog of this session
        self._early: dict[str, Dialog] = {}  # UAC: early dialogs by remote tag
        self._sent: list[_Sent] = []
        self._acks: dict[tuple[str, int], Request] = {}  # (remote tag, seq) -> our ACK
        self._incoming: _Incoming | None = None
        self._pending_ack: _PendingAck | None = None
        self._reinvite: _Sent | None = None
        self._retry_at: float | None = None  # 491 back-off (RFC 3261 14.1)
        self._retry_sdp: bytes | None = None
        self._cancel_guard: float | None = None
        self._bye_after_ack = False
        self._late_offer_ack: tuple[Dialog, int] | None = None  # UAC: ACK awaiting our answer
        self._offer_in_invite = False
        self._early_sdp: bytes | None = None
        self._local_sdp: bytes | None = None
        self._remote_sdp: bytes | None = None
        self._cause: tuple[int, str, bool] = (0, "", False)
        self._redirects = 0
        self._tried: list[URI] = []
        self._local_tag = ""

    # -- plumbing ---------------------------------------------------------------------------

    def _make(self, request: Request, code: int) -> Response:
        return make_response(request, code, to_tag=self._local_tag)

    def _respond(self, request: Request, code: int) -> None:
        self._responses.append(self._make(request, code))

    def _authorize(self, request: Request) -> None:
        if self._auth is not None:
            self._auth.authorize(request)

    def _queue(self, sent: _Sent) -> None:
        self._sent.append(sent)
        self._requests.append(OutRequest(sent.request))

    def _forget(self, sent: _Sent) -> None:
        if sent in self._sent:
            self._sent.remove(sent)

    def _find_sent(self, request: Request | None, response: Response) -> _Sent | None:
        if request is not None:
            for sent in self._sent:
                if sent.request is request:
                    return sent
        cseq = response.cseq
        tag = response.to.tag
        for sent in self._sent:
            if sent.request.cseq == cseq and (sent.dialog is None or sent.dialog.remote_tag == tag):
                return sent
        return None

    def _move(self, new: InviteState, code: int, reason: str) -> None:
        """The one place the state changes; anything not in TRANSITIONS raises."""
        old = self._state
        if new not in TRANSITIONS[old]:
            raise InviteSessionError(f"illegal transition {old.value} -> {new.value}")
        self._state = new
        self._events.append(StateChanged(old, new, code, reason))

    def _end(self, code: int, reason: str, by_remote: bool) -> None:
        if self._state is _S.DISCONNECTED:
            return
        self._pending_ack = None
        self._retry_at = None
        self._cancel_guard = None
        self._late_offer_ack = None
        self._st.stop()
        if self._dialog is not None:
            self._dialog.terminate()
        self._move(_S.DISCONNECTED, code, reason)
        self._events.append(Disconnected(code, reason or reason_phrase(code), by_remote))

    def _send_ack(self, dialog: Dialog, seq: int, sdp: bytes | None) -> None:
        ack = dialog.new_request("ACK", seq=seq, body=sdp or b"", content_type=SDP)
        source = next(
            (
                s.request
                for s in self._sent
                if s.request.cseq.seq == seq and s.request.method == "INVITE"
            ),
            None,
        )
        if source is not None:
            # RFC 3261 13.2.2.4: the ACK carries the INVITE's credentials.
            for name in ("Authorization", "Proxy-Authorization"):
                for value in source.headers.get_all(name):
                    ack.headers.add(name, value)
        self._acks[(dialog.remote_tag, seq)] = ack
        self._requests.append(OutRequest(ack, stateless=True))

    def _begin_bye(self, dialog: Dialog, code: int, reason: str, by_remote: bool) -> None:
        self._cause = (code, reason, by_remote)
        self._bye_after_ack = False
        self._pending_ack = None
        self._st.stop()
        self._retry_at = None
        bye = dialog.new_request("BYE")
        self._authorize(bye)
        self._queue(_Sent(bye, _Purpose.BYE, dialog))
        if self._state is not _S.DISCONNECTING:
            self._move(_S.DISCONNECTING, code, reason)
