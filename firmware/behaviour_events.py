"""The behaviour's vocabulary: the events it is fed, the commands it emits, and
the enums they carry.

Plain frozen data, no rules (those are in :mod:`firmware.behaviour`), so the
application, the control commands and the audio path can name an event or a
command without pulling in the state machine. Everything here is re-exported
by :mod:`firmware.behaviour`, the place other modules import it from.
"""

from __future__ import annotations

import enum

from hal.debounce import ButtonLongPressed, ButtonPressed, ButtonReleased, LedPattern
from sipstack.records import dataclass

__all__ = [
    "PhoneState",
    "CallPhase",
    "RegStatus",
    "ToneKind",
    "RegistrationChanged",
    "IncomingCall",
    "CallPlaced",
    "CallStateChanged",
    "DtmfReceived",
    "FaultChanged",
    "DialRequested",
    "HangupRequested",
    "BehaviourEvent",
    "MakeCall",
    "Answer",
    "Hangup",
    "PulseRelay",
    "ShowLed",
    "PlayTone",
    "StopTone",
    "Log",
    "Command",
]

# -- states -----------------------------------------------------------------------


class PhoneState(enum.Enum):
    """What the device is doing, as a person would say it."""

    IDLE = "idle"
    DIALING = "dialing"  # calling targets out, nobody answered yet
    RINGING = "ringing"  # an incoming call rings here
    IN_CALL = "in call"  # one call answered (or being answered)
    CALL_WAITING = "call waiting"  # in a call, and a second one rings (desk phone)


class CallPhase(enum.Enum):
    """A call's state, named as PJSIP's ``pjsip_inv_state``."""

    CALLING = "calling"
    INCOMING = "incoming"
    EARLY = "early"
    CONNECTING = "connecting"
    CONFIRMED = "confirmed"
    DISCONNECTED = "disconnected"


class RegStatus(enum.Enum):
    """One account's registration, as the status LED sees it."""

    NOT_REGISTERED = "not registered"
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"


class ToneKind(enum.Enum):
    """Tones the application plays. RING (speaker), RINGBACK (speaker, while
    calling out) and CALL_WAITING loop until :class:`StopTone`; the others
    play once (DOOR_OPENED and WRONG_CODE into the call, for the caller)."""

    RING = "ring"
    RINGBACK = "ringback"
    CALL_WAITING = "call waiting"
    BUSY = "busy"
    DOOR_OPENED = "door opened"
    WRONG_CODE = "wrong code"


# -- events in ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegistrationChanged:
    """An account's registration changed. ``status`` None means REGISTERED when
    ``registered`` else REGISTERING (the user agent keeps trying)."""

    acc: int
    registered: bool
    status: RegStatus | None = None


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A call arrived (``remote_uri``: the caller's URI, From)."""

    call_id: int
    remote_uri: str


@dataclass(frozen=True, slots=True)
class CallPlaced:
    """The application carried out :class:`MakeCall` ``ref``: the user agent's
    ``call_id``, or None when placing it failed at once (``reason`` says why)."""

    ref: int
    call_id: int | None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CallStateChanged:
    """A call moved to ``state``; ``status`` is the SIP code that ended it, if any."""

    call_id: int
    state: CallPhase
    status: int = 0


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """A DTMF digit (RFC 4733 event or SIP INFO) arrived in a call."""

    call_id: int
    digit: str


@dataclass(frozen=True, slots=True)
class FaultChanged:
    """Something outside SIP is broken (``active``) or fine again: the audio device,
    the network. Any active fault shows as the error LED state."""

    what: str
    active: bool


@dataclass(frozen=True, slots=True)
class DialRequested:
    """Someone asked for a call to ``target`` (``intercom call``), from account
    ``acc`` (None: the behaviour's calling account). It is dialled like a bell
    press with one target: only when idle, with ``ring_timeout``, LEDs and
    ``max_call_seconds`` applying."""

    target: str
    acc: int | None = None


@dataclass(frozen=True, slots=True)
class HangupRequested:
    """Someone asked to hang up (``intercom hangup``): what a short press of a
    hang-up button does, whether one is wired or not."""


BehaviourEvent = (
    ButtonPressed
    | ButtonReleased
    | ButtonLongPressed
    | RegistrationChanged
    | IncomingCall
    | CallPlaced
    | CallStateChanged
    | DtmfReceived
    | FaultChanged
    | DialRequested
    | HangupRequested
)

# -- commands out ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MakeCall:
    """Call ``target`` from account ``acc``; report the call id with :class:`CallPlaced`."""

    acc: int
    target: str
    ref: int


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer an incoming call."""

    call_id: int
    code: int = 200


@dataclass(frozen=True, slots=True)
class Hangup:
    """End a call in whatever state (CANCEL, BYE or a final answer); ``code`` is the
    answer to an unanswered incoming call (0: the user agent's default)."""

    call_id: int
    code: int = 0


@dataclass(frozen=True, slots=True)
class PulseRelay:
    """Energise the door relay for ``seconds``."""

    seconds: float


@dataclass(frozen=True, slots=True)
class ShowLed:
    """Show ``pattern`` on LED ``name``; None turns it off."""

    name: str
    pattern: LedPattern | None


@dataclass(frozen=True, slots=True)
class PlayTone:
    """Start a tone (see :class:`ToneKind` for which loop)."""

    kind: ToneKind


@dataclass(frozen=True, slots=True)
class StopTone:
    """Stop the looping tone."""


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the log (never holds a password or the door code)."""

    msg: str
    level: str = "info"


Command = MakeCall | Answer | Hangup | PulseRelay | ShowLed | PlayTone | StopTone | Log
