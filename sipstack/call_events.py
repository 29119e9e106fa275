"""What the call layer reports: call events and the ``call_get_info`` snapshot.

Kept apart from :mod:`sipstack.calls` so that an application (and the media
layer) can name the events it handles without the machinery that makes them;
:mod:`sipstack.calls` re-exports every name here.
"""

from __future__ import annotations

import enum
from typing import Literal

from .invite_events import InviteState
from .invite_session import Role
from .offer_answer import NegotiatedMedia
from .records import dataclass

__all__ = [
    "CallEvent",
    "CallInfo",
    "CallMediaState",
    "CallStateChanged",
    "DtmfDigit",
    "IncomingCall",
    "MediaStatus",
]


# -- events and information ----------------------------------------------------------


class MediaStatus(enum.Enum):
    """PJSUA's ``pjsua_call_media_status``: what the audio stream is doing."""

    NONE = "none"  # no negotiated media (yet)
    ACTIVE = "active"
    LOCAL_HOLD = "local_hold"  # we put the call on hold
    REMOTE_HOLD = "remote_hold"  # the peer put us on hold
    ERROR = "error"  # the offer/answer failed


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A new INVITE took slot ``call_id``.

    Answer it with :meth:`~sipstack.calls.CallManager.call_answer`.
    """

    call_id: int
    acc_id: int
    remote_uri: str


@dataclass(frozen=True, slots=True)
class CallStateChanged:
    """The call moved to ``state``; ``code``/``reason`` say why (0 when nothing did)."""

    call_id: int
    state: InviteState
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class CallMediaState:
    """The negotiated audio changed (answer received, hold, unhold, failure)."""

    call_id: int
    status: MediaStatus
    media: NegotiatedMedia | None


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A DTMF digit from the peer, in RTP (RFC 4733) or SIP INFO; ``duration`` in ms."""

    call_id: int
    digit: str
    duration: int
    method: Literal["rfc4733", "info"]


CallEvent = IncomingCall | CallStateChanged | CallMediaState | DtmfDigit


@dataclass(frozen=True, slots=True)
class CallInfo:
    """PJSUA's ``pjsua_call_info``: a snapshot of one call."""

    id: int
    acc_id: int
    role: Role
    state: InviteState
    local_info: str  # our address in this dialog (From / To, without tag)
    local_contact: str
    remote_info: str  # the peer's address (without tag)
    remote_uri: str
    remote_contact: str | None  # the remote target, once a dialog exists
    sip_call_id: str
    last_status: int
    last_reason: str
    media_status: MediaStatus
    media: NegotiatedMedia | None
    codec: str | None  # "PCMU/8000" once negotiated
    local_sdp: bytes | None
    remote_sdp: bytes | None
    connect_duration: float  # seconds since CONFIRMED (0 before), frozen at the end
    total_duration: float  # seconds since the call started, frozen at the end
    rtp_stats: object | None  # from the media layer (MediaStats), None without one
