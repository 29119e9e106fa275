"""The media hook of the call layer: what a call needs from the media layer.

:class:`MediaFactory` is the protocol :class:`~sipstack.calls.CallManager`
calls (one RTP stream per call), :class:`MediaDtmf` and :class:`MediaStats`
the optional abilities it looks for, :class:`SignallingOnlyMedia` the default
that reserves a port and sends nothing. The pure offer/answer helpers the call
layer uses on top of :mod:`sipstack.offer_answer` are here too, so
:mod:`sipstack.calls` only drives sessions. It re-exports the public names.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from . import records
from .call_events import MediaStatus
from .offer_answer import CodecSpec, LocalMedia, NegotiatedMedia, create_answer, create_offer
from .sdp import SdpParseError, parse_sdp

__all__ = [
    "MediaDtmf",
    "MediaFactory",
    "MediaStats",
    "SignallingOnlyMedia",
    "media_status",
    "refusal_answer",
]


# -- the media hook ------------------------------------------------------------------


class MediaFactory(Protocol):
    """What the call layer needs from the media layer (one RTP stream per call).

    ``create_local_media`` runs when a call needs an offer or answer (the call
    is in its slot already, so ``call_get_info(call_id).local_contact`` tells
    which address the peer reaches us at); ``on_negotiated`` gets every
    outcome (answer, hold, unhold: the direction says what may flow);
    ``close`` runs once when the call ends.
    """

    def create_local_media(self, call_id: int) -> LocalMedia: ...

    def on_negotiated(self, call_id: int, media: NegotiatedMedia) -> None: ...

    def close(self, call_id: int) -> None: ...


@runtime_checkable
class MediaDtmf(Protocol):
    """Optional: a media layer that sends RFC 4733 events.

    ``send_dtmf`` returns False when it cannot (the peer did not accept
    telephone-event); the call layer then sends SIP INFO instead. Digits it
    receives are reported to :meth:`~sipstack.calls.CallManager.on_media_dtmf`.
    """

    def send_dtmf(self, call_id: int, digits: str) -> bool: ...


@runtime_checkable
class MediaStats(Protocol):
    """Optional: a media layer that reports RTP/RTCP statistics for ``call_get_info``."""

    def rtp_stats(self, call_id: int) -> object | None: ...


class SignallingOnlyMedia:
    """The default :class:`MediaFactory`: PCMU, PCMA and telephone-event offered on
    a UDP port reserved by binding it (so no other program takes the number the
    peer will send to), but no RTP is sent or read. ``address_of(call_id)``
    gives the address to put in the SDP."""

    def __init__(self, address_of: Callable[[int], str]) -> None:
        self._address_of = address_of
        self._sockets: dict[int, socket.socket] = {}

    def create_local_media(self, call_id: int) -> LocalMedia:
        """Reserve a port (once per call) and describe it."""
        address = self._address_of(call_id)
        sock = self._sockets.get(call_id)
        if sock is None:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((address, 0))
            except OSError:
                sock.close()
                raise
            self._sockets[call_id] = sock
        port = sock.getsockname()[1]
        return LocalMedia(address, port, (CodecSpec("PCMU", 8000), CodecSpec("PCMA", 8000)))

    def on_negotiated(self, call_id: int, media: NegotiatedMedia) -> None:
        """Nothing to start: signalling only."""

    def close(self, call_id: int) -> None:
        """Release the reserved port."""
        sock = self._sockets.pop(call_id, None)
        if sock is not None:
            sock.close()


# -- offer/answer helpers --------------------------------------------------------------


def media_status(
    media: NegotiatedMedia | None, *, error: bool = False, local_hold: bool = False
) -> MediaStatus:
    """What a call's audio is doing once ``media`` is negotiated (None: nothing is).

    ``error`` marks a failed offer/answer; ``local_hold`` that we put the call on hold.
    """
    if media is None:
        return MediaStatus.ERROR if error else MediaStatus.NONE
    if local_hold:
        return MediaStatus.LOCAL_HOLD
    if media.on_hold_by_remote:
        return MediaStatus.REMOTE_HOLD
    return MediaStatus.ACTIVE


def refusal_answer(offer_sdp: bytes, local: LocalMedia, session_id: int, version: int) -> bytes:
    """An answer refusing every stream (port 0), for an offer that must be answered.

    RFC 3264 6: an offer in a 2xx must be answered in the ACK even when nothing is
    acceptable; an unreadable offer gets a plain description of ``local``.
    """
    try:
        offer = parse_sdp(offer_sdp)
    except SdpParseError:
        offer = None
    if offer is None:
        return create_offer(local, session_id, version).to_bytes()
    empty = records.replace(local, codecs=(CodecSpec("x-none", 1),))
    answer, _ = create_answer(offer, empty, session_id, version)
    return answer.to_bytes()
