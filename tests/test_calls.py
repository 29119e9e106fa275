"""The call layer: two user agents with CallManagers calling each other on 127.0.0.1.

Real UDP sockets, a fake loop clock: nothing is retransmitted unless a test
moves the clock, so every exchange is deterministic, and durations and
session timers are checked by jumping the clock.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator

import pytest

from sipstack.calls import (
    CallEvent,
    CallInfo,
    CallManager,
    CallMediaState,
    CallStateChanged,
    DtmfDigit,
    IncomingCall,
    MediaStatus,
    SignallingOnlyMedia,
)
from sipstack.ids import IdGenerator
from sipstack.invite_events import InviteSessionError, InviteState
from sipstack.invite_session import Role
from sipstack.loop import Loop
from sipstack.offer_answer import CodecSpec, LocalMedia, NegotiatedMedia
from sipstack.sdp import Direction, parse_sdp
from sipstack.session_timer import SessionTimerConfig, SessionTimerMode
from sipstack.timers import TimerConfig
from sipstack.useragent import UserAgent

S = InviteState
NO_TIMER = SessionTimerConfig(mode=SessionTimerMode.OFF)


class Clock:
    """The loop's clock; only tests move it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def loop(clock: Clock) -> Iterator[Loop]:
    with Loop(clock=clock) as lp:
        yield lp


def run(loop: Loop, predicate: Callable[[], bool], limit: float = 5.0) -> bool:
    """Run the loop until ``predicate`` holds; ``limit`` bounds real time only in
    case of a bug (the loop clock is fake and does not move by itself)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            return predicate()
        loop.run_once(max_wait=0.01)
    return True


def settle(loop: Loop, rounds: int = 30) -> None:
    """Let in-flight loopback datagrams arrive (no clock movement)."""
    for _ in range(rounds):
        loop.run_once(max_wait=0.005)


class Party:
    """One user agent with a local account and a CallManager, and its call events."""

    def __init__(
        self,
        loop: Loop,
        seed: int,
        *,
        max_calls: int = 4,
        session_timer: SessionTimerConfig = NO_TIMER,
        media: object | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.loop = loop
        self.events: list[CallEvent] = []
        self.ua = UserAgent(
            loop,
            timers=TimerConfig(t1=0.5),
            ids=IdGenerator(random.Random(seed)),
            rng=random.Random(seed),
        )
        tid = self.ua.transport_create("udp", host, 0)
        self.acc = self.ua.acc_add_local(tid)
        self.port = self.ua.endpoint.transports.info(tid).local_port
        self.uri = f"sip:127.0.0.1:{self.port}"
        self.calls = CallManager(
            self.ua,
            on_event=self.events.append,
            max_calls=max_calls,
            session_timer=session_timer,
            media=media,  # type: ignore[arg-type]
        )

    def of(self, kind: type, call_id: int | None = None) -> list[CallEvent]:
        return [
            e
            for e in self.events
            if isinstance(e, kind) and (call_id is None or e.call_id == call_id)
        ]

    def states(self, call_id: int) -> list[InviteState]:
        return [
            e.state for e in self.events if isinstance(e, CallStateChanged) and e.call_id == call_id
        ]

    def state(self, call_id: int) -> InviteState | None:
        states = self.states(call_id)
        return states[-1] if states else None

    def incoming(self) -> list[IncomingCall]:
        return [e for e in self.events if isinstance(e, IncomingCall)]

    def media(self, call_id: int) -> MediaStatus | None:
        found = [e for e in self.events if isinstance(e, CallMediaState) and e.call_id == call_id]
        return found[-1].status if found else None

    def close(self) -> None:
        self.calls.close()
        self.ua.shutdown(timeout=0)


@pytest.fixture
def parties(loop: Loop) -> Iterator[Callable[..., Party]]:
    made: list[Party] = []

    def make(seed: int, **options: object) -> Party:
        party = Party(loop, seed, **options)  # type: ignore[arg-type]
        made.append(party)
        return party

    yield make
    for party in made:
        party.close()


def direction_of(sdp: bytes | None) -> Direction:
    assert sdp is not None
    description = parse_sdp(sdp)
    return description.direction_for(description.media[0])


def connect(loop: Loop, a: Party, b: Party) -> tuple[int, int]:
    """A calls B, B answers 200: returns (A's call id, B's call id), both confirmed."""
    before = len(b.incoming())
    ca = a.calls.call_make_call(a.acc, b.uri)
    assert run(loop, lambda: len(b.incoming()) > before)
    cb = b.incoming()[-1].call_id
    b.calls.call_answer(cb, 200)
    assert run(loop, lambda: a.state(ca) is S.CONFIRMED and b.state(cb) is S.CONFIRMED)
    return ca, cb


# -- a whole call --------------------------------------------------------------------


def test_call_ring_answer_hold_unhold_dtmf_and_bye_from_callee(
    loop: Loop, clock: Clock, parties: Callable[..., Party]
) -> None:
    a, b = parties(1), parties(2)
    ca = a.calls.call_make_call(a.acc, b.uri)
    assert a.calls.call_is_active(ca) and a.calls.call_get_info(ca).role is Role.UAC
    assert run(loop, lambda: bool(b.incoming()))
    inc = b.incoming()[0]
    cb = inc.call_id
    assert inc.acc_id == b.acc
    assert inc.remote_uri == f"sip:127.0.0.1:{a.port}"
    assert b.state(cb) is S.INCOMING

    b.calls.call_answer(cb, 180)
    assert run(loop, lambda: a.state(ca) is S.EARLY)
    info = a.calls.call_get_info(ca)
    assert (info.last_status, info.last_reason) == (180, "Ringing")

    clock.now += 3.0  # ringing for three seconds
    b.calls.call_answer(cb, 200)
    assert run(loop, lambda: a.state(ca) is S.CONFIRMED and b.state(cb) is S.CONFIRMED)
    assert a.states(ca) == [S.CALLING, S.EARLY, S.CONNECTING, S.CONFIRMED]
    assert b.states(cb) == [S.INCOMING, S.EARLY, S.CONNECTING, S.CONFIRMED]
    for party, cid in ((a, ca), (b, cb)):
        info = party.calls.call_get_info(cid)
        assert info.media_status is MediaStatus.ACTIVE
        assert info.codec == "PCMU/8000"
        assert direction_of(info.local_sdp) is Direction.SENDRECV
        assert info.media is not None and info.media.telephone_event_pt == 101
    a_info, b_info = a.calls.call_get_info(ca), b.calls.call_get_info(cb)
    assert a_info.sip_call_id == b_info.sip_call_id
    # each side sends RTP to the port the other reserved
    assert a_info.media is not None and b_info.media is not None
    assert a_info.media.remote_port == parse_sdp(b_info.local_sdp or b"").media[0].port
    assert b_info.media.remote_port == parse_sdp(a_info.local_sdp or b"").media[0].port
    assert b_info.remote_contact == f"<sip:127.0.0.1:{a.port}>"
    assert a_info.total_duration == 3.0 and a_info.connect_duration == 0.0
    origin_before = parse_sdp(a_info.local_sdp or b"").origin

    # Hold (RFC 3264 8.4): our re-offer is sendonly, the answer recvonly.
    a.calls.call_set_hold(ca)
    assert run(loop, lambda: a.media(ca) is MediaStatus.LOCAL_HOLD)
    assert run(loop, lambda: b.media(cb) is MediaStatus.REMOTE_HOLD)
    a_info, b_info = a.calls.call_get_info(ca), b.calls.call_get_info(cb)
    assert direction_of(a_info.local_sdp) is Direction.SENDONLY
    assert direction_of(b_info.local_sdp) is Direction.RECVONLY
    assert a_info.media is not None and a_info.media.direction is Direction.SENDONLY
    # RFC 3264 8: same session id, version + 1
    origin_hold = parse_sdp(a_info.local_sdp or b"").origin
    assert origin_hold.session_id == origin_before.session_id
    assert origin_hold.session_version == origin_before.session_version + 1

    a.calls.call_reinvite(ca)  # unhold
    assert run(
        loop, lambda: a.media(ca) is MediaStatus.ACTIVE and b.media(cb) is MediaStatus.ACTIVE
    )
    assert direction_of(a.calls.call_get_info(ca).local_sdp) is Direction.SENDRECV
    assert direction_of(b.calls.call_get_info(cb).local_sdp) is Direction.SENDRECV

    # DTMF without a media layer: SIP INFO, one at a time, in order.
    a.calls.call_dial_dtmf(ca, "19#a")
    assert run(loop, lambda: len(b.of(DtmfDigit)) == 4)
    digits = [e for e in b.events if isinstance(e, DtmfDigit)]
    assert [d.digit for d in digits] == ["1", "9", "#", "A"]
    assert all(d.method == "info" and d.duration == 160 and d.call_id == cb for d in digits)

    clock.now += 30.0
    b.calls.call_hangup(cb)
    assert run(loop, lambda: a.state(ca) is S.DISCONNECTED and b.state(cb) is S.DISCONNECTED)
    assert not a.calls.call_is_active(ca) and not b.calls.call_is_active(cb)
    assert a.calls.call_get_count() == 0 and b.calls.enum_calls() == []
    with pytest.raises(ValueError):
        a.calls.call_get_info(ca)
    disconnect = [e for e in a.events if isinstance(e, CallStateChanged)][-1]
    assert (disconnect.code, disconnect.reason) == (200, "Normal call clearing")


def test_caller_hangs_up_with_bye_and_durations_are_measured(
    loop: Loop, clock: Clock, parties: Callable[..., Party]
) -> None:
    a, b = parties(3), parties(4)
    ca, cb = connect(loop, a, b)
    clock.now += 42.0
    info = b.calls.call_get_info(cb)
    assert info.connect_duration == 42.0 and info.total_duration == 42.0
    final: list[float] = []

    def on_event(event: CallEvent) -> None:
        # as in PJSUA's on_call_state, the info is still there at DISCONNECTED
        if isinstance(event, CallStateChanged) and event.state is S.DISCONNECTED:
            info = a.calls.call_get_info(ca)
            assert info.state is S.DISCONNECTED and info.last_status == 200
            final.append(info.connect_duration)
        a.events.append(event)

    a.calls.on_event = on_event
    a.calls.call_hangup(ca)
    clock.now += 0.1  # the 200 to the BYE takes a while
    assert run(loop, lambda: a.state(ca) is S.DISCONNECTED and b.state(cb) is S.DISCONNECTED)
    assert final == [pytest.approx(42.1)]
    assert not a.calls.call_is_active(ca)
    ended = [e for e in b.events if isinstance(e, CallStateChanged)][-1]
    assert ended.code == 200


def test_callee_refuses_with_603(loop: Loop, parties: Callable[..., Party]) -> None:
    a, b = parties(5), parties(6)
    ca = a.calls.call_make_call(a.acc, b.uri)
    assert run(loop, lambda: bool(b.incoming()))
    b.calls.call_hangup(b.incoming()[0].call_id)  # default 603 Decline
    assert run(loop, lambda: a.state(ca) is S.DISCONNECTED)
    last = [e for e in a.events if isinstance(e, CallStateChanged)][-1]
    assert (last.code, last.reason) == (603, "Decline")
    assert a.calls.call_get_count() == 0 and b.calls.call_get_count() == 0


# -- CANCEL ---------------------------------------------------------------------------


def test_cancel_after_ringing_gives_487_both_sides(
    loop: Loop, parties: Callable[..., Party]
) -> None:
    a, b = parties(7), parties(8)
    ca = a.calls.call_make_call(a.acc, b.uri)
    assert run(loop, lambda: bool(b.incoming()))
    cb = b.incoming()[0].call_id
    b.calls.call_answer(cb, 180)
    assert run(loop, lambda: a.state(ca) is S.EARLY)
    a.calls.call_hangup(ca)
    assert run(loop, lambda: a.state(ca) is S.DISCONNECTED and b.state(cb) is S.DISCONNECTED)
    for party, cid in ((a, ca), (b, cb)):
        last = [e for e in party.events if isinstance(e, CallStateChanged) and e.call_id == cid][-1]
        assert last.code == 487
    assert S.CONFIRMED not in a.states(ca)
    assert a.calls.call_get_count() == 0 and b.calls.call_get_count() == 0


def test_cancel_before_any_response_waits_for_the_100(
    loop: Loop, clock: Clock, parties: Callable[..., Party]
) -> None:
    """Hang up before the INVITE even left: RFC 3261 9.1 holds the CANCEL until a
    provisional response; the callee's transaction sends 100 after 200 ms."""
    a, b = parties(9), parties(10)
    ca = a.calls.call_make_call(a.acc, b.uri)
    a.calls.call_hangup(ca)
    assert run(loop, lambda: bool(b.incoming()))
    cb = b.incoming()[0].call_id
    settle(loop)
    assert b.state(cb) is S.INCOMING  # no CANCEL yet: nothing provisional went back
    clock.now += 0.25  # RFC 3261 17.2.1: 100 Trying after 200 ms
    assert run(loop, lambda: a.state(ca) is S.DISCONNECTED and b.state(cb) is S.DISCONNECTED)
    for party, cid in ((a, ca), (b, cb)):
        last = [e for e in party.events if isinstance(e, CallStateChanged) and e.call_id == cid][-1]
        assert last.code == 487


# -- slots ----------------------------------------------------------------------------


def test_busy_when_every_slot_is_taken(loop: Loop, parties: Callable[..., Party]) -> None:
    a, b = parties(11), parties(12, max_calls=1)
    c = parties(13)
    ca, cb = connect(loop, a, b)
    cc = c.calls.call_make_call(c.acc, b.uri)
    assert run(loop, lambda: c.state(cc) is S.DISCONNECTED)
    last = [e for e in c.events if isinstance(e, CallStateChanged)][-1]
    assert (last.code, last.reason) == (486, "Busy Here")
    assert len(b.incoming()) == 1 and b.calls.call_get_count() == 1
    assert a.state(ca) is S.CONFIRMED
    # the caller's own table is bounded too
    small = parties(14, max_calls=1)
    small.calls.call_make_call(small.acc, a.uri)
    with pytest.raises(LookupError, match="1 call slots"):
        small.calls.call_make_call(small.acc, a.uri)


def test_two_concurrent_calls_are_independent(loop: Loop, parties: Callable[..., Party]) -> None:
    a, b = parties(15), parties(16)
    first = connect(loop, a, b)
    second = connect(loop, a, b)
    assert first[0] != second[0] and first[1] != second[1]
    assert a.calls.enum_calls() == sorted([first[0], second[0]])
    assert b.calls.call_get_count() == 2
    id1 = a.calls.call_get_info(first[0]).sip_call_id
    id2 = a.calls.call_get_info(second[0]).sip_call_id
    assert id1 != id2
    a.calls.call_set_hold(first[0])
    assert run(loop, lambda: b.media(first[1]) is MediaStatus.REMOTE_HOLD)
    assert b.media(second[1]) is MediaStatus.ACTIVE
    a.calls.call_hangup(first[0])
    assert run(loop, lambda: b.state(first[1]) is S.DISCONNECTED)
    assert b.state(second[1]) is S.CONFIRMED and b.calls.enum_calls() == [second[1]]
    a.calls.call_dial_dtmf(second[0], "5")
    assert run(loop, lambda: bool(b.of(DtmfDigit)))
    assert b.of(DtmfDigit)[0] == DtmfDigit(second[1], "5", 160, "info")
    a.calls.hangup_all()
    assert run(loop, lambda: b.calls.call_get_count() == 0 and a.calls.call_get_count() == 0)


# -- re-INVITE --------------------------------------------------------------------------


def test_reinvite_from_callee_and_hold_by_remote(loop: Loop, parties: Callable[..., Party]) -> None:
    a, b = parties(17), parties(18)
    ca, cb = connect(loop, a, b)
    v1 = parse_sdp(b.calls.call_get_info(cb).local_sdp or b"").origin.session_version
    b.calls.call_reinvite(cb)  # a refresh / re-offer from the callee side
    assert run(
        loop, lambda: len(a.of(CallMediaState, ca)) >= 2 and len(b.of(CallMediaState, cb)) >= 2
    )
    v2 = parse_sdp(b.calls.call_get_info(cb).local_sdp or b"").origin.session_version
    assert v2 == v1 + 1
    assert a.media(ca) is MediaStatus.ACTIVE and b.media(cb) is MediaStatus.ACTIVE

    b.calls.call_set_hold(cb)
    assert run(loop, lambda: a.media(ca) is MediaStatus.REMOTE_HOLD)
    assert run(loop, lambda: b.media(cb) is MediaStatus.LOCAL_HOLD)
    settle(loop)  # the ACK reaches A: only then may A offer again (RFC 3261 14.1)
    assert direction_of(a.calls.call_get_info(ca).local_sdp) is Direction.RECVONLY
    # both hold: the second holder offers inactive (RFC 3264 8.4)
    a.calls.call_set_hold(ca)
    assert run(loop, lambda: a.media(ca) is MediaStatus.LOCAL_HOLD)
    settle(loop)
    assert direction_of(a.calls.call_get_info(ca).local_sdp) is Direction.INACTIVE
    assert direction_of(b.calls.call_get_info(cb).local_sdp) is Direction.INACTIVE
    a.calls.call_reinvite(ca)
    assert run(
        loop,
        lambda: b.media(cb) is MediaStatus.LOCAL_HOLD and a.media(ca) is MediaStatus.REMOTE_HOLD,
    )
    assert direction_of(b.calls.call_get_info(cb).local_sdp) is Direction.SENDONLY


def test_late_offer_call(loop: Loop, parties: Callable[..., Party]) -> None:
    """INVITE without SDP: the callee offers in the 2xx, the caller answers in the ACK."""
    a, b = parties(19), parties(20)
    ca = a.calls.call_make_call(a.acc, b.uri, sdp_offer=b"")
    assert run(loop, lambda: bool(b.incoming()))
    cb = b.incoming()[0].call_id
    b.calls.call_answer(cb, 200)
    assert run(loop, lambda: b.media(cb) is MediaStatus.ACTIVE and a.state(ca) is S.CONFIRMED)
    assert b.state(cb) is S.CONFIRMED
    info = b.calls.call_get_info(cb)
    assert info.codec == "PCMU/8000" and info.remote_sdp is not None


def test_session_timer_refresh_keeps_the_call(
    loop: Loop, clock: Clock, parties: Callable[..., Party]
) -> None:
    """RFC 4028: with Session-Expires 90 the refresher re-INVITEs at 45 s; without
    that refresh the other side would BYE at 60 s (90 - min(32, 90/3))."""
    timer = SessionTimerConfig(SessionTimerMode.SUPPORTED, session_expires=90, min_se=90)
    a, b = parties(21, session_timer=timer), parties(22, session_timer=timer)
    ca, cb = connect(loop, a, b)
    remote_sdp_before = a.calls.call_get_info(ca).remote_sdp
    for _ in range(4):  # 4 x 46 s: several refresh periods
        clock.now += 46.0
        settle(loop)
        assert a.state(ca) is S.CONFIRMED and b.state(cb) is S.CONFIRMED
    # the refreshes were offer/answer exchanges with unchanged SDP (RFC 4028 10)
    assert a.calls.call_get_info(ca).remote_sdp == remote_sdp_before


def test_session_timer_expiry_ends_the_call(
    loop: Loop, clock: Clock, parties: Callable[..., Party]
) -> None:
    """The callee is refreshee; when the refresher's process is gone, it sends BYE."""
    timer = SessionTimerConfig(SessionTimerMode.SUPPORTED, session_expires=90, min_se=90)
    a, b = parties(23, session_timer=timer), parties(24, session_timer=timer)
    ca, cb = connect(loop, a, b)
    a.ua.endpoint.transports.close()  # the caller vanishes without a word
    clock.now += 61.0
    assert run(loop, lambda: b.state(cb) is S.DISCONNECTING)
    changed = [e for e in b.events if isinstance(e, CallStateChanged)]
    assert (changed[-1].code, changed[-1].reason) == (408, "Session timer expired")
    settle(loop)  # the BYE leaves
    clock.now += 64 * 0.5  # RFC 3261 17.1.2.2 Timer F: the BYE times out; the call is over
    assert run(loop, lambda: b.state(cb) is S.DISCONNECTED)
    assert b.calls.call_get_count() == 0


# -- the media hook ---------------------------------------------------------------------


class RecordingMedia:
    """A fake media layer: G.722 preferred, DTMF by RFC 4733, statistics."""

    def __init__(self) -> None:
        self.inner = SignallingOnlyMedia(lambda _cid: "127.0.0.1")
        self.negotiated: list[tuple[int, NegotiatedMedia]] = []
        self.closed: list[int] = []
        self.sent_dtmf: list[tuple[int, str]] = []

    def create_local_media(self, call_id: int) -> LocalMedia:
        base = self.inner.create_local_media(call_id)
        codecs = (CodecSpec("G722", 8000), CodecSpec("PCMA", 8000))
        return LocalMedia(base.address, base.port, codecs)

    def on_negotiated(self, call_id: int, media: NegotiatedMedia) -> None:
        self.negotiated.append((call_id, media))

    def close(self, call_id: int) -> None:
        self.closed.append(call_id)
        self.inner.close(call_id)

    def send_dtmf(self, call_id: int, digits: str) -> bool:
        self.sent_dtmf.append((call_id, digits))
        return True

    def rtp_stats(self, call_id: int) -> object | None:
        return {"call": call_id, "rx_packets": 7}


def test_media_factory_is_used_for_codecs_dtmf_and_stats(
    loop: Loop, parties: Callable[..., Party]
) -> None:
    media = RecordingMedia()
    a, b = parties(25, media=media), parties(26)
    ca, cb = connect(loop, a, b)
    # B's default media has no G.722: the PCMA second choice is taken
    assert a.calls.call_get_info(ca).codec == "PCMA/8000"
    assert media.negotiated and media.negotiated[-1][0] == ca
    assert media.negotiated[-1][1].codec.name == "PCMA"
    assert a.calls.call_get_info(ca).rtp_stats == {"call": ca, "rx_packets": 7}
    a.calls.call_dial_dtmf(ca, "42")
    assert media.sent_dtmf == [(ca, "42")]
    settle(loop)
    assert not b.of(DtmfDigit)  # went by RTP, not INFO
    a.calls.on_media_dtmf(ca, "7", 120)
    assert a.of(DtmfDigit) == [DtmfDigit(ca, "7", 120, "rfc4733")]
    b.calls.call_hangup(cb)
    assert run(loop, lambda: a.state(ca) is S.DISCONNECTED)
    assert media.closed == [ca]


class InfoReadingMedia(RecordingMedia):
    """A media factory that reads the call while building the first offer.

    A real factory does this to choose SRTP by the call's signalling (TLS,
    sips:); the outgoing call has no session yet at that moment.
    """

    def __init__(self, calls: Callable[[], CallManager]) -> None:
        super().__init__()
        self.calls = calls
        self.seen: list[CallInfo] = []

    def create_local_media(self, call_id: int) -> LocalMedia:
        self.seen.append(self.calls().call_get_info(call_id))
        return super().create_local_media(call_id)


def test_call_info_is_available_while_the_first_offer_is_built(
    loop: Loop, parties: Callable[..., Party]
) -> None:
    holder: list[Party] = []
    media = InfoReadingMedia(lambda: holder[0].calls)
    a, b = parties(27, media=media), parties(28)
    holder.append(a)
    ca = a.calls.call_make_call(a.acc, b.uri)
    (info,) = media.seen
    assert (info.id, info.role, info.state) == (ca, Role.UAC, S.NULL)
    assert info.remote_uri == b.uri and info.local_sdp is None
    assert info.sip_call_id == a.calls.call_get_info(ca).sip_call_id  # the same INVITE
    assert a.calls.call_get_info(ca).state is S.CALLING


def test_offer_without_a_common_codec_is_refused_with_488(
    loop: Loop, parties: Callable[..., Party]
) -> None:
    a, b = parties(27), parties(28)
    offer = (
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 40000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"
    )
    ca = a.calls.call_make_call(a.acc, b.uri, sdp_offer=offer)
    assert run(loop, lambda: bool(b.incoming()))
    cb = b.incoming()[0].call_id
    b.calls.call_answer(cb, 200)
    assert run(loop, lambda: a.state(ca) is S.DISCONNECTED and b.state(cb) is S.DISCONNECTED)
    last = [e for e in a.events if isinstance(e, CallStateChanged)][-1]
    assert last.code == 488
    assert b.of(CallMediaState)[-1] == CallMediaState(cb, MediaStatus.ERROR, None)


# -- misuse raises ---------------------------------------------------------------------


def test_api_misuse_raises(loop: Loop, parties: Callable[..., Party]) -> None:
    a, b = parties(29), parties(30)
    with pytest.raises(ValueError, match="out of range"):
        a.calls.call_get_info(99)
    with pytest.raises(ValueError, match="no call"):
        a.calls.call_hangup(0)
    with pytest.raises(ValueError, match="account"):
        a.calls.call_make_call(7, b.uri)
    with pytest.raises(ValueError):
        CallManager(a.ua, max_calls=0)
    ca = a.calls.call_make_call(a.acc, b.uri)
    with pytest.raises(InviteSessionError, match="nothing to answer"):
        a.calls.call_answer(ca, 200)
    with pytest.raises(InviteSessionError, match="not confirmed"):
        a.calls.call_set_hold(ca)
    assert run(loop, lambda: bool(b.incoming()))
    cb = b.incoming()[0].call_id
    with pytest.raises(InviteSessionError):
        b.calls.call_dial_dtmf(cb, "1")
    b.calls.call_answer(cb, 200)
    assert run(loop, lambda: a.state(ca) is S.CONFIRMED)
    with pytest.raises(ValueError, match="DTMF"):
        a.calls.call_dial_dtmf(ca, "12x")


# -- the network changes under a call ---------------------------------------------------


def test_network_change_reinvites_a_call_from_the_new_address(
    loop: Loop, parties: Callable[..., Party], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A listens on every address, so 127.0.0.2 (all of 127/8 is loopback) reaches it
    a, b = parties(41, host="0.0.0.0"), parties(42)
    ca, cb = connect(loop, a, b)
    before = parse_sdp(a.calls.call_get_info(ca).local_sdp or b"")
    media_events = len(b.of(CallMediaState, cb))

    a.ua.handle_network_change()  # same address: nothing to do
    settle(loop)
    assert len(b.of(CallMediaState, cb)) == media_events
    assert "127.0.0.1" in (b.calls.call_get_info(cb).remote_contact or "")

    # The kernel now routes from 127.0.0.2 (what the route look-up would say after
    # a renumbering; here loopback cannot move, so the look-up is stood in for).
    moved = f"<sip:127.0.0.2:{a.port}>"
    monkeypatch.setattr(a.ua, "acc_create_uac_contact", lambda acc, uri: moved)
    a.ua.handle_network_change()
    assert run(loop, lambda: len(b.of(CallMediaState, cb)) > media_events)
    settle(loop)
    # RFC 3261 12.2.1.1: B's dialog now targets the new Contact ...
    assert "127.0.0.2" in (b.calls.call_get_info(cb).remote_contact or "")
    # ... and RFC 3264 8: a new version of A's SDP with the new address
    after = parse_sdp(a.calls.call_get_info(ca).local_sdp or b"")
    assert after.origin.session_version == before.origin.session_version + 1
    assert "c=IN IP4 127.0.0.2" in (a.calls.call_get_info(ca).local_sdp or b"").decode()
    assert a.state(ca) is S.CONFIRMED and b.state(cb) is S.CONFIRMED
    # the peer's BYE reaches the new address: the call is not left hanging
    b.calls.call_hangup(cb)
    assert run(loop, lambda: a.state(ca) is S.DISCONNECTED and b.state(cb) is S.DISCONNECTED)
