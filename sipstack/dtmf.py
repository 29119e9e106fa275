"""DTMF: RFC 4733 telephone-events in RTP both ways, and SIP INFO bodies, sans-IO.

Sending (:class:`DtmfSender`) follows RFC 4733 2.5.1: an event's packets all
carry the RTP timestamp of its start; the first has the marker bit; one update
per frame carries the duration so far; the final packet (E bit, full duration)
goes out three times (2.5.1.4) so a single loss does not leave the key stuck.

Receiving (:class:`DtmfReceiver`) reports each digit exactly once, when it
ends, with its duration. Packets are grouped by their timestamp (one event per
timestamp, RFC 4733 2.5.1.3), so redundant end packets, duplicates and a lost
first packet change nothing; an event whose end packets were all lost ends when
the next event starts or after ``end_timeout`` without an update (2.5.2.2).

:func:`parse_dtmf_info` reads the bodies of SIP INFO requests used by phones
that do not do RFC 4733: ``application/dtmf-relay`` (``Signal=5``,
``Duration=160``) and ``application/dtmf`` (the digit alone).
"""

from __future__ import annotations

import math
import struct
from collections import deque

from sipstack.errors import SipParseError
from sipstack.records import dataclass
from sipstack.rtp import RtpParseError

__all__ = [
    "DIGITS",
    "DtmfDigit",
    "DtmfPacket",
    "DtmfReceiver",
    "DtmfSender",
    "TelephoneEvent",
    "parse_dtmf_info",
    "parse_telephone_event",
]

#: RFC 4733 3.2: events 0-15 are the DTMF digits in this order.
DIGITS = "0123456789*#ABCD"
_EVENT_OF = {d: i for i, d in enumerate(DIGITS)}
_PAYLOAD = struct.Struct("!BBH")
#: Duration reported for an INFO without a Duration line (Cisco's documented default).
INFO_DEFAULT_DURATION_MS = 250


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """The 4-byte telephone-event payload (RFC 4733 2.3)."""

    event: int
    end: bool
    volume: int
    duration: int

    def to_bytes(self) -> bytes:
        """Serialize; the R bit is always 0 (RFC 4733 2.3.3)."""
        return _PAYLOAD.pack(
            self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration
        )


def parse_telephone_event(payload: bytes) -> TelephoneEvent:
    """Parse a telephone-event payload; :class:`RtpParseError` when shorter than 4 bytes.

    Extra bytes are ignored: RFC 4733 2.5.1.5 packs further events only via
    RFC 2198 redundancy, which is a different payload type.
    """
    if len(payload) < 4:
        raise RtpParseError(f"telephone-event payload of {len(payload)} bytes, need 4")
    event, flags, duration = _PAYLOAD.unpack_from(payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


@dataclass(frozen=True, slots=True)
class DtmfDigit:
    """A digit the peer sent, reported once when it ended."""

    digit: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """One event packet to send: the glue passes it to ``RtpSender.send_other``."""

    payload: bytes
    timestamp: int
    marker: bool


class DtmfSender:
    """Turns queued digits into one RFC 4733 packet per frame slot.

    Each frame the glue calls :meth:`tick` with the media timestamp of the
    slot. A returned packet takes the slot (send it, skip the audio frame); None
    means send audio as usual. Digits are separated by ``gap`` seconds of audio.
    """

    def __init__(
        self,
        clock_rate: int = 8000,
        frame_samples: int = 160,
        *,
        volume: int = 10,
        end_repeats: int = 3,
        gap: float = 0.06,
    ) -> None:
        if not 0 <= volume <= 63 or end_repeats < 1 or clock_rate <= 0 or frame_samples <= 0:
            raise ValueError("volume 0..63, end_repeats >= 1, positive rate and frame")
        self.clock_rate = clock_rate
        self.frame_samples = frame_samples
        self.volume = volume
        self.end_repeats = end_repeats
        self._gap_frames = math.ceil(round(gap * clock_rate) / frame_samples)
        self._queue: deque[tuple[int, int]] = deque()  # (event, duration in samples)
        self._event: int | None = None
        self._total = 0
        self._sent = 0  # packets sent of the current event
        self._updates = 0  # update packets before the end packets
        self._start_ts = 0
        self._gap_left = 0

    def queue(self, digits: str, duration: float = 0.1) -> None:
        """Queue digits (``0-9 * # A-D``) of ``duration`` seconds each.

        Raises :class:`ValueError` (the caller's mistake) for other characters or
        a duration that does not fit one event (RFC 4733 2.5.1.3: 16 bits).
        """
        samples = round(duration * self.clock_rate)
        if not 0 < samples <= 0xFFFF:
            raise ValueError(f"DTMF duration {duration} s does not fit a 16-bit event duration")
        events = []
        for char in digits.upper():
            if char not in _EVENT_OF:
                raise ValueError(f"{char!r} is not a DTMF digit (0-9 * # A-D)")
            events.append((_EVENT_OF[char], samples))
        self._queue.extend(events)

    @property
    def busy(self) -> bool:
        """True while digits, their end packets or the gap after them are pending."""
        return self._event is not None or bool(self._queue) or self._gap_left > 0

    def tick(self, timestamp: int) -> DtmfPacket | None:
        """The packet for this frame slot (``timestamp``: its media timestamp), or None."""
        if self._event is None:
            if self._gap_left > 0:
                self._gap_left -= 1
                return None
            if not self._queue:
                return None
            self._event, self._total = self._queue.popleft()
            self._start_ts = timestamp
            self._sent = 0
            self._updates = math.ceil(self._total / self.frame_samples)
        i = self._sent
        self._sent += 1
        end = i >= self._updates
        duration = self._total if end else min((i + 1) * self.frame_samples, self._total)
        payload = TelephoneEvent(self._event, end, self.volume, duration).to_bytes()
        packet = DtmfPacket(payload, self._start_ts, i == 0)
        if self._sent >= self._updates + self.end_repeats:
            self._event = None
            self._gap_left = self._gap_frames
        return packet


class DtmfReceiver:
    """Decodes telephone-event packets into digits, each reported exactly once."""

    def __init__(self, clock_rate: int = 8000, *, end_timeout: float = 0.5) -> None:
        self.clock_rate = clock_rate
        self.end_timeout = end_timeout
        self._events: deque[DtmfDigit] = deque()
        self._ts: int | None = None  # start timestamp of the current event
        self._code = 0
        self._duration = 0
        self._open = False  # the current event has not been reported yet
        self._deadline: float | None = None
        #: Payloads too short to be telephone-events.
        self.malformed = 0
        #: Events that are not DTMF digits (flash, tones...), ignored.
        self.unsupported = 0

    def receive(self, payload: bytes, timestamp: int, now: float) -> None:
        """One telephone-event packet of the peer's validated stream."""
        try:
            ev = parse_telephone_event(payload)
        except RtpParseError:
            self.malformed += 1
            return
        if ev.event >= len(DIGITS):
            self.unsupported += 1
            return
        current = self._ts
        if current is None or timestamp != current or ev.event != self._code:
            if current is not None and (timestamp - current) & 0x80000000:
                return  # a straggler from an older event: already reported or given up
            self._finish()  # a new event ends the previous one (its end packets were lost)
            self._ts = timestamp
            self._code = ev.event
            self._duration = 0
            self._open = True
        elif not self._open:
            return  # redundant end packet or late update of a reported digit
        self._duration = max(self._duration, ev.duration)
        if ev.end:
            self._finish()
        else:
            self._deadline = now + self.end_timeout

    def _finish(self) -> None:
        if self._open:
            self._open = False
            self._deadline = None
            ms = round(self._duration * 1000 / self.clock_rate)
            self._events.append(DtmfDigit(DIGITS[self._code], ms))

    def get_timer(self) -> float | None:
        """When an unfinished digit will be ended for lack of updates, or None."""
        return self._deadline

    def handle_timer(self, now: float) -> None:
        """End a digit whose end packets never came (RFC 4733 2.5.2.2)."""
        if self._deadline is not None and now >= self._deadline:
            self._finish()

    def next_event(self) -> DtmfDigit | None:
        """The oldest digit not yet delivered."""
        return self._events.popleft() if self._events else None


def parse_dtmf_info(content_type: str, body: bytes) -> DtmfDigit:
    """The digit in a SIP INFO body; :class:`SipParseError` (400, or 415) if unusable."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise SipParseError("DTMF INFO body is not ASCII") from None
    if ctype == "application/dtmf-relay":
        fields: dict[str, str] = {}
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if sep:
                fields[name.strip().lower()] = value.strip()
        signal = fields.get("signal")
        if signal is None:
            raise SipParseError("application/dtmf-relay body has no Signal line")
        duration = fields.get("duration")
        if duration is None:
            ms = INFO_DEFAULT_DURATION_MS
        elif duration.isdigit() and 0 < int(duration) <= 60_000:
            ms = int(duration)
        else:
            raise SipParseError(f"DTMF INFO Duration {duration!r} is not a positive integer")
        return DtmfDigit(_info_digit(signal), ms)
    if ctype == "application/dtmf":
        return DtmfDigit(_info_digit(text), INFO_DEFAULT_DURATION_MS)
    raise SipParseError(f"unsupported DTMF INFO content type {content_type!r}", 415)


def _info_digit(signal: str) -> str:
    value = signal.upper()
    if len(value) == 1 and value in _EVENT_OF:
        return value
    if value.isdigit() and int(value) < len(DIGITS):
        return DIGITS[int(value)]  # some phones send the event code (10 for *)
    raise SipParseError(f"DTMF INFO signal {signal!r} is not a digit")
