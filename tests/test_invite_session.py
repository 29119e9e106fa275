"""INVITE sessions (RFC 3261 13-15, RFC 6026, RFC 4028), UAC wired to UAS, fake clock.

The :class:`Link` below plays the network and the glue: it drains both
sessions, puts every message through bytes and the parser (adding the Via a
transport would), and delivers it, letting a test drop, hold back or reorder
messages. Time only moves when a test says so.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from sipstack.digest import CredentialInfo, DigestAuthenticator
from sipstack.headers import Headers
from sipstack.ids import IdGenerator
from sipstack.invite_events import (
    Disconnected,
    DtmfInfo,
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
    StateChanged,
)
from sipstack.invite_session import InviteSession, Role, parse_dtmf_info
from sipstack.message import Request, Response, make_response, parse_message
from sipstack.session_timer import SessionTimerConfig, SessionTimerMode
from sipstack.timers import TimerConfig
from sipstack.transaction_client import build_cancel
from sipstack.uri import parse_uri

S = InviteState
OFFER = b"v=0\r\no=alice 1 1 IN IP4 192.0.2.1\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n"
ANSWER = b"v=0\r\no=bob 2 1 IN IP4 192.0.2.2\r\ns=-\r\nm=audio 5000 RTP/AVP 0\r\n"
HOLD = OFFER + b"a=sendonly\r\n"
HELD = ANSWER + b"a=recvonly\r\n"
TIMERS = TimerConfig()  # T1 0.5 s, T2 4 s
NO_TIMER = SessionTimerConfig(mode=SessionTimerMode.OFF)


def make_invite(
    call_id: str = "call-1@192.0.2.1",
    uri: str = "sip:bob@192.0.2.2:5070",
    body: bytes = OFFER,
    cseq: int = 1,
) -> Request:
    h = Headers()
    h.add("Max-Forwards", "70")
    h.add("From", "<sip:alice@example.com>;tag=alicetag")
    h.add("To", "<sip:bob@example.com>")
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq} INVITE")
    h.add("Contact", "<sip:alice@192.0.2.1:5060>")
    if body:
        h.add("Content-Type", "application/sdp")
    return Request("INVITE", parse_uri(uri), h, body)


def uac_session(
    invite: Request | None = None,
    *,
    seed: int = 1,
    session_timer: SessionTimerConfig = NO_TIMER,
    auth: DigestAuthenticator | None = None,
    max_redirects: int = 5,
) -> InviteSession:
    return InviteSession.outgoing(
        invite if invite is not None else make_invite(),
        ids=IdGenerator(random.Random(seed)),
        rng=random.Random(seed),
        authenticator=auth,
        timers=TIMERS,
        session_timer=session_timer,
        max_redirects=max_redirects,
    )


@dataclass
class Packet:
    """A message on the wire, with the sender's own request object for matching."""

    to: Side
    message: Request | Response
    original: Request | None = None


@dataclass
class Side:
    """One user agent: its session, its requests in flight, what it received."""

    name: str
    session: InviteSession | None = None
    inflight: dict[tuple[int, str], tuple[Request, Request]] = field(default_factory=dict)
    received: list[Request | Response] = field(default_factory=list)
    events: list[InviteSessionEvent] = field(default_factory=list)

    def drain_events(self) -> list[InviteSessionEvent]:
        assert self.session is not None
        while (event := self.session.next_event()) is not None:
            self.events.append(event)
        return self.events

    def states(self) -> list[InviteState]:
        return [e.new for e in self.drain_events() if isinstance(e, StateChanged)]

    def of(self, kind: type) -> list[object]:
        return [e for e in self.drain_events() if isinstance(e, kind)]

    @property
    def s(self) -> InviteSession:
        assert self.session is not None
        return self.session


class Link:
    """A UAC session wired to a UAS session built from the first INVITE."""

    def __init__(
        self,
        uac: InviteSession,
        *,
        uas_timer: SessionTimerConfig = NO_TIMER,
        uas_seed: int = 2,
        uas_auth: DigestAuthenticator | None = None,
    ) -> None:
        self.a = Side("uac", uac)
        self.b = Side("uas")
        self.uas_timer = uas_timer
        self.uas_seed = uas_seed
        self.uas_auth = uas_auth
        self.pending: list[Packet] = []
        self.branches = IdGenerator(random.Random(99))

    def peer(self, side: Side) -> Side:
        return self.b if side is self.a else self.a

    def collect(self) -> None:
        """Move everything both sessions want to send onto the wire."""
        for side in (self.a, self.b):
            if side.session is None:
                continue
            self.put(side, side.session.requests_to_send())
            for response in side.session.responses_to_send():
                self.pending.append(Packet(self.peer(side), self._bytes(response)))

    def put(self, side: Side, requests: list[OutRequest]) -> None:
        """Do what the glue does with drained requests: Via, CANCEL, onto the wire."""
        for out in requests:
            req = out.request
            if out.cancels is not None:
                # The transaction layer builds the CANCEL from the INVITE it sent.
                sent = side.inflight[(out.cancels.cseq.seq, "INVITE")][1]
                self.pending.append(Packet(self.peer(side), build_cancel(sent)))
                continue
            wire = req.copy()
            wire.headers.prepend(
                "Via", f"SIP/2.0/UDP {side.name}.invalid;branch={self.branches.branch()}"
            )
            wire = self._bytes(wire)
            assert isinstance(wire, Request)
            if not out.stateless:
                side.inflight[(req.cseq.seq, req.method)] = (req, wire)
            self.pending.append(Packet(self.peer(side), wire, req))

    @staticmethod
    def _bytes(message: Request | Response) -> Request | Response:
        return parse_message(message.to_bytes())

    def deliver(self, packet: Packet, now: float) -> None:
        side, msg = packet.to, packet.message
        side.received.append(msg)
        if isinstance(msg, Response):
            entry = side.inflight.get((msg.cseq.seq, msg.cseq.method))
            side.s.receive_response(entry[0] if entry else None, msg, now)
            return
        fresh = msg.method == "INVITE" and msg.to.tag is None
        if side.session is None or (fresh and side.session.state is S.DISCONNECTED):
            assert fresh
            side.session = InviteSession.incoming(
                msg,
                ids=IdGenerator(random.Random(self.uas_seed)),
                rng=random.Random(self.uas_seed),
                contact=parse_uri("sip:bob@192.0.2.2:5070"),
                authenticator=self.uas_auth,
                timers=TIMERS,
                session_timer=self.uas_timer,
            )
            return
        side.s.receive_request(msg, now)

    def run(self, now: float, drop: Callable[[Packet], bool] | None = None) -> list[Packet]:
        """Deliver everything (in order) until both sides are quiet; returns what moved."""
        moved: list[Packet] = []
        for _ in range(100):
            self.collect()
            if not self.pending:
                return moved
            batch, self.pending = self.pending, []
            for packet in batch:
                moved.append(packet)
                if drop is None or not drop(packet):
                    self.deliver(packet, now)
        raise AssertionError("the sessions never went quiet")

    def tick(self, now: float, drop: Callable[[Packet], bool] | None = None) -> list[Packet]:
        """Fire both sides' due timers at ``now`` and deliver the outcome."""
        for side in (self.a, self.b):
            if side.session is not None:
                side.session.handle_timer(now)
        return self.run(now, drop)


def methods(packets: list[Packet]) -> list[str]:
    out = []
    for p in packets:
        m = p.message
        out.append(m.method if isinstance(m, Request) else f"{m.status} {m.cseq.method}")
    return out


def is_(kind: str) -> Callable[[Packet], bool]:
    """A drop filter: 'ACK', 'BYE', '200 INVITE'..."""
    return lambda p: methods([p]) == [kind]


def connect(link: Link, now: float = 0.0) -> None:
    """Ring and answer: 180, then 200 with the answer; ACK through."""
    link.run(now)
    link.b.s.answer(180, None, now)
    link.run(now)
    link.b.s.answer(200, ANSWER, now)
    link.run(now)
    assert link.a.s.state is S.CONFIRMED and link.b.s.state is S.CONFIRMED


# -- the basic call ------------------------------------------------------------------


def test_call_ringing_early_media_answer_ack() -> None:
    link = Link(uac_session())
    assert link.a.states() == [S.CALLING]
    link.run(0.0)
    assert link.b.states() == [S.INCOMING]
    assert link.b.of(RemoteOffer) == [RemoteOffer(OFFER)]
    link.b.s.answer(180, None, 0.1)
    link.run(0.1)
    assert link.a.s.state is S.EARLY
    link.b.s.answer(183, ANSWER, 0.2)
    link.run(0.2)
    assert link.a.of(EarlyMedia) == [EarlyMedia(ANSWER)]
    link.b.s.answer(200, ANSWER, 0.3)
    moved = link.run(0.3)
    assert methods(moved) == ["200 INVITE", "ACK"]
    ack = moved[1].message
    assert isinstance(ack, Request)
    # RFC 3261 13.2.2.4: the ACK has the INVITE's CSeq number, goes to the Contact.
    assert ack.cseq.seq == 1 and ack.cseq.method == "ACK"
    assert ack.uri == parse_uri("sip:bob@192.0.2.2:5070")
    assert ack.to.tag == link.b.s.dialog.local_tag  # type: ignore[union-attr]
    assert link.a.states() == [S.CALLING, S.EARLY, S.CONNECTING, S.CONFIRMED]
    assert link.b.states() == [S.INCOMING, S.EARLY, S.CONNECTING, S.CONFIRMED]
    assert link.a.of(RemoteAnswer) == [RemoteAnswer(ANSWER)]
    assert link.b.s.get_timer() is None  # ACK stopped the 2xx retransmissions


def test_180_and_200_carry_contact_and_record_route() -> None:
    invite = make_invite()
    link = Link(uac_session(invite))
    link.collect()
    wire = link.pending[0].message
    wire.headers.add("Record-Route", "<sip:p1.example.com;lr>")
    wire.headers.add("Record-Route", "<sip:p2.example.com;lr>")
    link.run(0.0)
    link.b.s.answer(200, ANSWER, 0.0)
    moved = link.run(0.0)
    ok, ack = moved[0].message, moved[1].message
    assert isinstance(ok, Response) and isinstance(ack, Request)
    assert ok.headers.get_all("Record-Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:p2.example.com;lr>",
    ]
    assert str(ok.contacts[0].uri) == "sip:bob@192.0.2.2:5070"
    # The UAC's route set is Record-Route reversed (RFC 3261 12.1.2).
    assert ack.headers.get_all("Route") == ["<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"]
    # The UAS keeps the order; its BYE goes p1 then p2 to Alice's Contact.
    link.b.s.hangup(1.0)
    moved = link.run(1.0)
    bye = moved[0].message
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.uri == parse_uri("sip:alice@192.0.2.1:5060")


# -- 2xx retransmission and ACK -----------------------------------------------------------


def test_2xx_retransmitted_t1_doubling_to_t2_and_reacked() -> None:
    link = Link(uac_session())
    link.run(0.0)
    link.b.s.answer(200, ANSWER, 10.0)
    moved = link.run(10.0, drop=is_("ACK"))  # the first ACK is lost
    assert methods(moved) == ["200 INVITE", "ACK"]
    first_ack = moved[1].message
    # RFC 3261 13.3.1.4: T1, 2T1, 4T1, then T2 intervals.
    assert link.b.s.get_timer() == pytest.approx(10.5)
    moved = link.tick(10.5, drop=is_("ACK"))
    assert methods(moved) == ["200 INVITE", "ACK"]  # the UAC ACKs the retransmission again
    assert moved[1].message.cseq == first_ack.cseq  # type: ignore[union-attr]
    assert link.b.s.get_timer() == pytest.approx(11.5)
    link.tick(11.5, drop=is_("ACK"))
    assert link.b.s.get_timer() == pytest.approx(13.5)
    link.tick(13.5, drop=is_("ACK"))
    assert link.b.s.get_timer() == pytest.approx(17.5)
    link.tick(17.5, drop=is_("ACK"))
    assert link.b.s.get_timer() == pytest.approx(21.5)  # capped at T2 = 4 s
    moved = link.tick(21.5)  # this ACK gets through
    assert methods(moved) == ["200 INVITE", "ACK"]
    assert link.b.s.state is S.CONFIRMED and link.b.s.get_timer() is None
    assert link.a.states().count(S.CONFIRMED) == 1


def test_uas_without_ack_sends_bye_after_64_t1() -> None:
    link = Link(uac_session())
    link.run(0.0)
    link.b.s.answer(200, ANSWER, 0.0)
    link.run(0.0, drop=is_("ACK"))
    sends = []
    while (when := link.b.s.get_timer()) is not None and when < 32.0:
        moved = link.tick(when, drop=is_("ACK"))
        sends.append(when)
        assert "200 INVITE" in methods(moved)
    assert sends == pytest.approx([0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5])
    assert link.b.s.get_timer() == pytest.approx(32.0)
    moved = link.tick(32.0)
    assert methods(moved)[:2] == ["BYE", "200 BYE"]
    assert link.b.s.state is S.DISCONNECTED
    assert link.b.of(Disconnected) == [Disconnected(408, "ACK timeout", False)]
    assert link.a.of(Disconnected) == [Disconnected(200, "Normal call clearing", True)]


# -- CANCEL ------------------------------------------------------------------------------


def test_cancel_before_answer_gives_487() -> None:
    link = Link(uac_session())
    link.run(0.0)
    link.b.s.answer(180, None, 0.0)
    link.run(0.0)
    link.a.s.hangup(1.0)
    out = link.a.s.requests_to_send()
    assert len(out) == 1 and out[0].cancels is link.a.s.invite and not out[0].stateless
    assert out[0].request.method == "CANCEL" and out[0].request.cseq.seq == 1
    link.put(link.a, out)
    moved = link.run(1.0)
    assert methods(moved) == ["CANCEL", "200 CANCEL", "487 INVITE"]
    assert link.a.s.state is S.DISCONNECTED and link.b.s.state is S.DISCONNECTED
    assert link.a.of(Disconnected) == [Disconnected(487, "Request Terminated", False)]
    assert link.b.of(Disconnected) == [Disconnected(487, "Request Terminated", True)]
    assert link.a.states() == [S.CALLING, S.EARLY, S.DISCONNECTING, S.DISCONNECTED]


def test_cancel_racing_200_acks_then_byes() -> None:
    link = Link(uac_session())
    link.run(0.0)
    link.b.s.answer(180, None, 0.0)
    link.run(0.0)
    link.b.s.answer(200, ANSWER, 1.0)
    link.collect()  # the 200 is on the wire...
    link.a.s.hangup(1.0)  # ...when Alice gives up
    moved = link.run(1.0)
    assert methods(moved) == ["200 INVITE", "CANCEL", "ACK", "BYE", "200 CANCEL", "200 BYE"]
    assert link.a.s.state is S.DISCONNECTED and link.b.s.state is S.DISCONNECTED
    assert link.b.of(Disconnected)[0].by_remote  # type: ignore[attr-defined]
    assert link.a.of(Disconnected) == [Disconnected(487, "Request Terminated", False)]


def test_cancel_without_any_answer_gives_up_after_64_t1() -> None:
    link = Link(uac_session())
    link.a.s.requests_to_send()  # the INVITE vanishes
    link.a.s.hangup(0.0)
    assert link.a.s.get_timer() == pytest.approx(32.0)
    link.a.s.handle_timer(32.0)
    assert link.a.s.state is S.DISCONNECTED


@pytest.mark.parametrize("code", [486, 480, 603])
def test_refusal_ends_with_its_code(code: int) -> None:
    link = Link(uac_session())
    link.run(0.0)
    link.b.s.answer(code, None, 0.0)
    link.run(0.0)
    assert link.a.s.state is S.DISCONNECTED
    disconnected = link.a.of(Disconnected)
    assert len(disconnected) == 1 and disconnected[0].code == code  # type: ignore[attr-defined]
    assert disconnected[0].by_remote  # type: ignore[attr-defined]
    assert link.b.of(Disconnected)[0].code == code  # type: ignore[attr-defined]


def test_uas_hangup_before_answer_sends_final_response() -> None:
    link = Link(uac_session())
    link.run(0.0)
    link.b.s.hangup(0.0, code=486)
    assert methods(link.run(0.0)) == ["486 INVITE"]
    assert link.a.s.state is S.DISCONNECTED


# -- redirects and authentication -------------------------------------------------------------


def redirect(request: Request, *contacts: str, code: int = 302) -> Response:
    response = make_response(request, code, to_tag="r1")
    for c in contacts:
        response.headers.add("Contact", c)
    return response


def test_3xx_follows_best_contact_with_cseq_plus_one() -> None:
    s = uac_session()
    first = s.requests_to_send()[0].request
    s.receive_response(
        first,
        redirect(first, "<sip:bob@203.0.113.1>;q=0.5", "<sip:bob@203.0.113.2>;q=0.9"),
        0.1,
    )
    out = s.requests_to_send()
    assert len(out) == 1
    second = out[0].request
    assert second.uri == parse_uri("sip:bob@203.0.113.2")
    assert second.cseq.seq == 2 and second.call_id == first.call_id
    assert second.from_.tag == first.from_.tag and second.to.tag is None
    events = []
    while (e := s.next_event()) is not None:
        events.append(e)
    assert [e for e in events if isinstance(e, Redirected)] == [
        Redirected(302, (parse_uri("sip:bob@203.0.113.2"), parse_uri("sip:bob@203.0.113.1")))
    ]
    # A redirect back to a URI already tried is a loop: the call fails.
    s.receive_response(second, redirect(second, f"<{first.uri}>"), 0.2)
    assert s.requests_to_send() == []
    assert s.state is S.DISCONNECTED


def test_redirects_are_bounded() -> None:
    s = uac_session(max_redirects=2)
    req = s.requests_to_send()[0].request
    for hop in range(3):
        s.receive_response(req, redirect(req, f"<sip:hop{hop}@203.0.113.9>"), float(hop))
        out = s.requests_to_send()
        if hop < 2:
            req = out[0].request
            assert req.uri.user == f"hop{hop}"
        else:
            assert out == []
    assert s.state is S.DISCONNECTED


def digest(username: str = "alice") -> DigestAuthenticator:
    return DigestAuthenticator(
        [CredentialInfo("example.com", username, "secret")], IdGenerator(random.Random(5))
    )


def challenge(request: Request, code: int, nonce: str) -> Response:
    response = make_response(request, code, to_tag="authtag")
    header = "WWW-Authenticate" if code == 401 else "Proxy-Authenticate"
    response.headers.add(
        header, f'Digest realm="example.com", nonce="{nonce}", qop="auth", algorithm=MD5'
    )
    return response


def test_401_on_invite_resent_with_credentials_and_ack_carries_them() -> None:
    link = Link(uac_session(auth=digest()))
    link.collect()
    invite_packet = link.pending.pop()
    first = invite_packet.original
    assert first is not None and "Authorization" not in first.headers
    link.a.s.receive_response(first, challenge(invite_packet.message, 401, "n1"), 0.0)  # type: ignore[arg-type]
    out = link.a.s.requests_to_send()
    retry = out[0].request
    assert retry.cseq.seq == 2 and retry.method == "INVITE"
    creds = retry.authorization
    assert creds and creds[0].params["nonce"] in ('"n1"', "n1")
    link.put(link.a, out)
    link.run(0.0)
    link.b.s.answer(200, ANSWER, 0.0)
    moved = link.run(0.0)
    ack = moved[1].message
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq.seq == 2
    # RFC 3261 13.2.2.4: the ACK carries the INVITE's credentials.
    assert ack.headers.get("Authorization") == retry.headers.get("Authorization")
    assert link.a.s.state is S.CONFIRMED


def test_407_on_bye_resent_with_credentials() -> None:
    link = Link(uac_session(auth=digest()))
    connect(link)
    link.a.s.hangup(5.0)
    link.collect()
    bye_packet = link.pending.pop()
    bye = bye_packet.original
    assert bye is not None and bye.method == "BYE"
    link.a.s.receive_response(bye, challenge(bye_packet.message, 407, "n2"), 5.0)  # type: ignore[arg-type]
    retry = link.a.s.requests_to_send()[0].request
    assert retry.method == "BYE" and retry.cseq.seq == bye.cseq.seq + 1
    assert retry.proxy_authorization
    assert link.a.s.state is S.DISCONNECTING
    link.a.s.receive_response(retry, make_response(retry, 200), 5.1)
    assert link.a.s.state is S.DISCONNECTED


def test_401_without_credentials_ends_the_call() -> None:
    s = uac_session()
    first = s.requests_to_send()[0].request
    s.receive_response(first, challenge(first, 401, "n"), 0.0)
    assert s.state is S.DISCONNECTED and s.requests_to_send() == []


# -- BYE both ways ------------------------------------------------------------------------------


@pytest.mark.parametrize("caller_hangs_up", [True, False])
def test_bye_either_way(caller_hangs_up: bool) -> None:
    link = Link(uac_session())
    connect(link)
    hanger, other = (link.a, link.b) if caller_hangs_up else (link.b, link.a)
    hanger.s.hangup(3.0)
    assert hanger.s.state is S.DISCONNECTING
    moved = link.run(3.0)
    assert methods(moved) == ["BYE", "200 BYE"]
    assert hanger.of(Disconnected) == [Disconnected(200, "Normal call clearing", False)]
    assert other.of(Disconnected) == [Disconnected(200, "Normal call clearing", True)]
    # Anything later in that dialog is refused: 481.
    late = Request("INFO", parse_uri("sip:x@192.0.2.9"), moved[0].message.headers.copy())
    late.headers.set("CSeq", "99 INFO")
    other.s.receive_request(late, 4.0)
    assert [r.status for r in other.s.responses_to_send()] == [481]


def test_uas_hangup_while_waiting_for_ack_waits_for_it() -> None:
    link = Link(uac_session())
    link.run(0.0)
    link.b.s.answer(200, ANSWER, 0.0)
    link.collect()
    held = link.pending  # the 200 is in flight
    link.pending = []
    link.b.s.hangup(0.1)  # RFC 3261 15: no BYE before the ACK
    assert link.b.s.requests_to_send() == []
    link.pending = held
    moved = link.run(0.2)
    assert methods(moved) == ["200 INVITE", "ACK", "BYE", "200 BYE"]
    assert link.a.s.state is S.DISCONNECTED and link.b.s.state is S.DISCONNECTED


# -- re-INVITE, hold, glare -------------------------------------------------------------------


@pytest.mark.parametrize("caller_holds", [True, False])
def test_hold_and_unhold_by_reinvite(caller_holds: bool) -> None:
    link = Link(uac_session())
    connect(link)
    holder, held = (link.a, link.b) if caller_holds else (link.b, link.a)
    holder.s.reinvite(HOLD, 5.0)
    moved = link.run(5.0)
    assert methods(moved) == ["INVITE"]
    assert held.of(RemoteOffer)[-1] == RemoteOffer(HOLD)
    held.s.answer(200, HELD, 5.1)
    moved = link.run(5.1)
    assert methods(moved) == ["200 INVITE", "ACK"]
    reinvite, ack = moved[0].message, moved[1].message
    assert isinstance(ack, Request) and ack.cseq.seq == reinvite.cseq.seq
    assert holder.of(RemoteAnswer)[-1] == RemoteAnswer(HELD)
    assert holder.s.local_sdp == HOLD and held.s.remote_sdp == HOLD
    holder.s.reinvite(OFFER, 6.0)  # unhold
    link.run(6.0)
    held.s.answer(200, ANSWER, 6.0)
    link.run(6.0)
    assert holder.of(RemoteAnswer)[-1] == RemoteAnswer(ANSWER)
    assert link.a.s.state is S.CONFIRMED and link.b.s.state is S.CONFIRMED
    assert held.s.get_timer() is None  # the re-INVITE's 2xx was ACKed


def test_reinvite_rejected_keeps_the_session() -> None:
    link = Link(uac_session())
    connect(link)
    link.a.s.reinvite(HOLD, 5.0)
    link.run(5.0)
    link.b.s.answer(488, None, 5.0)
    link.run(5.0)
    assert link.a.of(OfferRejected) == [OfferRejected(488, "Not Acceptable Here")]
    assert link.a.s.state is S.CONFIRMED and link.b.s.state is S.CONFIRMED
    assert link.a.s.local_sdp == OFFER


def test_glare_491_and_retry_after_random_delay() -> None:
    link = Link(uac_session(seed=7), uas_seed=8)
    connect(link)
    link.a.s.reinvite(HOLD, 10.0)
    link.b.s.reinvite(HOLD, 10.0)
    moved = link.run(10.0)
    assert sorted(methods(moved)) == ["491 INVITE", "491 INVITE", "INVITE", "INVITE"]
    # RFC 3261 14.1: the Call-ID owner (the UAC) waits 2.1-4 s, the other 0-2 s, in 10 ms.
    a_rng, b_rng = random.Random(7), random.Random(8)
    a_at = link.a.s.get_timer()
    b_at = link.b.s.get_timer()
    assert a_at is not None and b_at is not None
    assert 12.1 <= a_at <= 14.0 and 10.0 <= b_at <= 12.0
    assert round((a_at - 10.0) * 100) == a_rng.randint(210, 400)
    assert round((b_at - 10.0) * 100) == b_rng.randint(0, 200)
    link.tick(b_at)  # the UAS goes first and succeeds
    link.a.s.answer(200, HELD, b_at)
    link.run(b_at)
    assert link.b.of(RemoteAnswer)[-1] == RemoteAnswer(HELD)
    moved = link.tick(a_at)
    assert methods(moved) == ["INVITE"]
    link.b.s.answer(200, HELD, a_at)
    assert methods(link.run(a_at)) == ["200 INVITE", "ACK"]
    assert link.a.of(RemoteAnswer)[-1] == RemoteAnswer(HELD)


def test_second_reinvite_while_one_pending_gets_500_with_retry_after() -> None:
    link = Link(uac_session())
    connect(link)
    link.a.s.reinvite(HOLD, 5.0)
    moved = link.run(5.0)
    again = moved[0].message.copy()
    assert isinstance(again, Request)
    again.headers.set("CSeq", f"{again.cseq.seq + 1} INVITE")
    link.b.s.receive_request(again, 5.1)
    (response,) = link.b.s.responses_to_send()
    assert response.status == 500 and 0 <= (response.retry_after or 0) <= 10


def test_reinvite_api_misuse_raises() -> None:
    link = Link(uac_session())
    with pytest.raises(InviteSessionError):
        link.a.s.reinvite(HOLD, 0.0)
    connect(link)
    link.a.s.reinvite(HOLD, 1.0)
    with pytest.raises(InviteSessionError):
        link.a.s.reinvite(OFFER, 1.0)


def test_target_refresh_from_reinvite_contact() -> None:
    link = Link(uac_session())
    connect(link)
    link.b.s.reinvite(OFFER, 5.0)
    link.collect()
    packet = link.pending[0]
    packet.message.headers.set("Contact", "<sip:bob@198.51.100.20:5080>")
    link.run(5.0)
    assert link.a.s.dialog is not None
    assert link.a.s.dialog.remote_target == parse_uri("sip:bob@198.51.100.20:5080")
    link.a.s.answer(200, ANSWER, 5.0)
    link.run(5.0)
    link.a.s.hangup(6.0)
    bye = link.run(6.0)[0].message
    assert isinstance(bye, Request) and bye.uri == parse_uri("sip:bob@198.51.100.20:5080")


def test_offerless_reinvite_is_answered_with_our_sdp_and_ack_brings_answer() -> None:
    link = Link(uac_session())
    connect(link)
    dialog = link.a.s.dialog
    assert dialog is not None
    reinvite = dialog.new_request("INVITE")
    reinvite.headers.prepend("Via", "SIP/2.0/UDP a.invalid;branch=z9hG4bKoffless")
    link.b.s.receive_request(reinvite, 7.0)
    (ok,) = link.b.s.responses_to_send()
    assert ok.status == 200 and ok.body == ANSWER
    ack = dialog.new_request("ACK", seq=reinvite.cseq.seq, body=OFFER)
    link.b.s.receive_request(ack, 7.1)
    assert link.b.of(RemoteAnswer)[-1] == RemoteAnswer(OFFER)
    assert link.b.s.get_timer() is None


# -- in-dialog odds and ends ---------------------------------------------------------------------


def test_info_dtmf_relay_reaches_the_peer() -> None:
    link = Link(uac_session())
    connect(link)
    link.a.s.send_info(b"Signal=5\r\nDuration=160\r\n", "application/dtmf-relay", 5.0)
    moved = link.run(5.0)
    assert methods(moved) == ["INFO", "200 INFO"]
    assert link.b.of(DtmfInfo) == [DtmfInfo("5", 160)]


def test_parse_dtmf_info_formats() -> None:
    assert parse_dtmf_info("application/dtmf-relay", b"Signal= #\r\nDuration= 250\r\n") == (
        "#",
        250,
    )
    assert parse_dtmf_info("application/dtmf-relay", b"Signal=11\r\n") == ("#", 0)
    assert parse_dtmf_info("application/dtmf", b"7") == ("7", 0)
    assert parse_dtmf_info("application/dtmf-relay", b"Signal=X\r\n") is None
    assert parse_dtmf_info("text/plain", b"5") is None


def test_lower_cseq_gets_500_and_wrong_tag_481() -> None:
    link = Link(uac_session())
    connect(link)
    dialog = link.a.s.dialog
    assert dialog is not None
    info = dialog.new_request("INFO")
    info.headers.prepend("Via", "SIP/2.0/UDP a.invalid;branch=z9hG4bKi1")
    link.b.s.receive_request(info, 5.0)
    old = info.copy()
    old.headers.set("CSeq", f"{info.cseq.seq - 1} INFO")
    link.b.s.receive_request(old, 5.0)
    stranger = info.copy()
    stranger.headers.set("To", "<sip:bob@example.com>;tag=nottheirs")
    stranger.headers.set("CSeq", f"{info.cseq.seq + 1} INFO")
    link.b.s.receive_request(stranger, 5.0)
    assert [r.status for r in link.b.s.responses_to_send()] == [200, 500, 481]


def test_update_without_body_ok_with_offer_501() -> None:
    link = Link(uac_session())
    connect(link)
    dialog = link.a.s.dialog
    assert dialog is not None
    for body in (b"", OFFER):
        update = dialog.new_request("UPDATE", body=body)
        update.headers.prepend("Via", "SIP/2.0/UDP a.invalid;branch=z9hG4bKu")
        link.b.s.receive_request(update, 5.0)
    assert [r.status for r in link.b.s.responses_to_send()] == [200, 501]


def test_required_unknown_extension_gets_420() -> None:
    invite = make_invite()
    invite.headers.add("Require", "100rel")
    invite.headers.prepend("Via", "SIP/2.0/UDP a.invalid;branch=z9hG4bKr")
    s = InviteSession.incoming(
        invite,
        ids=IdGenerator(random.Random(1)),
        rng=random.Random(1),
        contact=parse_uri("sip:bob@192.0.2.2"),
    )
    (response,) = s.responses_to_send()
    assert response.status == 420 and response.unsupported == ["100rel"]
    assert s.state is S.DISCONNECTED and s.role is Role.UAS


def test_answer_2xx_without_sdp_to_an_offer_is_misuse() -> None:
    link = Link(uac_session())
    link.run(0.0)
    with pytest.raises(InviteSessionError):
        link.b.s.answer(200, None, 0.0)
    with pytest.raises(InviteSessionError):
        link.a.s.answer(200, ANSWER, 0.0)  # nothing to answer on the UAC side


# -- forks (RFC 6026) ----------------------------------------------------------------------------


def test_second_fork_2xx_is_acked_and_byed() -> None:
    s = uac_session()
    invite = s.requests_to_send()[0].request
    wire = invite.copy()
    wire.headers.prepend("Via", "SIP/2.0/UDP a.invalid;branch=z9hG4bKf")

    def ok(tag: str, contact: str) -> Response:
        r = make_response(wire, 200, to_tag=tag)
        r.headers.add("Contact", contact)
        r.headers.add("Content-Type", "application/sdp")
        r.body = ANSWER
        return r

    first, second = ok("forkA", "<sip:a@192.0.2.50>"), ok("forkB", "<sip:b@192.0.2.51>")
    s.receive_response(invite, first, 1.0)
    out = s.requests_to_send()
    assert [(o.request.method, o.stateless) for o in out] == [("ACK", True)]
    s.receive_response(invite, second, 1.1)
    out = s.requests_to_send()
    assert [(o.request.method, o.stateless) for o in out] == [("ACK", True), ("BYE", False)]
    assert all(o.request.to.tag == "forkB" for o in out)
    assert out[1].request.uri == parse_uri("sip:b@192.0.2.51")
    s.receive_response(invite, second, 1.5)  # retransmission of the surplus 2xx
    again = s.requests_to_send()
    assert [o.request.method for o in again] == ["ACK"] and again[0].request is out[0].request
    assert s.state is S.CONFIRMED and s.dialog is not None and s.dialog.remote_tag == "forkA"
    s.receive_response(out[1].request, make_response(out[1].request, 200), 1.6)
    assert s.state is S.CONFIRMED  # the fork's BYE answer does not touch our call


# -- session timers (RFC 4028) ---------------------------------------------------------------------

ST = SessionTimerConfig(mode=SessionTimerMode.SUPPORTED, session_expires=120, min_se=90)


def test_session_timer_caller_refreshes_at_half_interval() -> None:
    link = Link(uac_session(session_timer=ST), uas_timer=ST)
    link.collect()
    invite = link.pending[0].message
    assert invite.headers.get("Session-Expires") == "120"
    assert invite.headers.get("Min-SE") == "90" and "timer" in invite.supported
    link.run(0.0)
    link.b.s.answer(200, ANSWER, 0.0)
    moved = link.run(0.0)
    ok = moved[0].message
    assert ok.headers.get("Session-Expires") == "120;refresher=uac"
    assert ok.require == ["timer"]
    assert link.a.s.session_refresher and not link.b.s.session_refresher
    assert link.a.s.get_timer() == pytest.approx(60.0)
    assert link.b.s.get_timer() == pytest.approx(88.0)  # 120 - min(32, 40)
    moved = link.tick(60.0)
    assert methods(moved) == ["INVITE"]
    refresh = moved[0].message
    assert refresh.body == OFFER  # same SDP: a refresh, not a change
    assert refresh.headers.get("Session-Expires") == "120;refresher=uac"
    link.b.s.answer(200, ANSWER, 60.0)
    link.run(60.0)
    assert SessionRefreshed(120, by_remote=False) in link.a.drain_events()
    assert link.a.s.get_timer() == pytest.approx(120.0)
    assert link.b.s.get_timer() == pytest.approx(148.0)


def test_session_timer_refreshee_byes_when_no_refresh() -> None:
    link = Link(uac_session(session_timer=ST), uas_timer=ST)
    connect(link)
    link.a.s.handle_timer(60.0)
    link.a.s.requests_to_send()  # the refresh is lost, and so are its retransmissions
    moved = link.tick(88.0)
    assert methods(moved)[:2] == ["BYE", "200 BYE"]
    assert link.b.of(Disconnected) == [Disconnected(408, "Session timer expired", False)]
    assert link.a.s.state is S.DISCONNECTED


def test_session_timer_uas_refreshes_when_caller_cannot() -> None:
    always = SessionTimerConfig(mode=SessionTimerMode.ALWAYS, session_expires=100, min_se=90)
    link = Link(uac_session(), uas_timer=always)  # the caller does not offer timers
    connect(link)
    assert link.b.s.session_refresher and link.b.s.session_interval == 100
    assert link.b.s.get_timer() == pytest.approx(50.0)
    assert link.a.s.session_interval is None
    moved = link.tick(50.0)
    assert methods(moved) == ["INVITE"]
    link.a.s.answer(200, ANSWER, 50.0)
    link.run(50.0)
    assert link.b.s.get_timer() == pytest.approx(100.0)


def test_422_raises_session_expires_to_min_se() -> None:
    strict = SessionTimerConfig(mode=SessionTimerMode.SUPPORTED, session_expires=1800, min_se=300)
    link = Link(uac_session(session_timer=ST), uas_timer=strict)
    moved = link.run(0.0)
    # The first UAS session refused it at once; a new one took the retry.
    assert methods(moved) == ["INVITE", "422 INVITE", "INVITE"]
    first_b, refusal, retry = (p.message for p in moved)
    assert first_b.headers.get("Session-Expires") == "120"
    assert refusal.headers.get("Min-SE") == "300"
    assert isinstance(retry, Request) and retry.cseq.seq == 2
    assert retry.headers.get("Session-Expires") == "300"
    assert retry.headers.get("Min-SE") == "300"
    link.b.s.answer(200, ANSWER, 0.0)
    link.run(0.0)
    assert link.a.s.session_interval == 300 and link.a.s.session_refresher
    assert link.a.s.get_timer() == pytest.approx(150.0)


# -- two calls at once -----------------------------------------------------------------------------


def test_two_sessions_are_independent() -> None:
    one = Link(uac_session(make_invite(call_id="c1")), uas_seed=3)
    two = Link(uac_session(make_invite(call_id="c2"), seed=4), uas_seed=5)
    connect(one)
    two.run(0.0)
    two.b.s.answer(180, None, 0.0)
    two.run(0.0)
    one.a.s.hangup(1.0)
    one.run(1.0)
    assert one.a.s.state is S.DISCONNECTED and two.a.s.state is S.EARLY
    two.b.s.answer(200, ANSWER, 2.0)
    two.run(2.0)
    assert two.a.s.state is S.CONFIRMED and two.b.s.state is S.CONFIRMED
    # Call one's BYE offered to call two's session is not its dialog: 481, call two goes on.
    bye = next(m for m in one.b.received if isinstance(m, Request) and m.method == "BYE")
    two.b.s.receive_request(bye, 3.0)
    assert [r.status for r in two.b.s.responses_to_send()] == [481]
    assert two.b.s.state is S.CONFIRMED


def test_request_timeout_of_invite_ends_the_call() -> None:
    s = uac_session()
    invite = s.requests_to_send()[0].request
    s.request_failed(invite, 408, "Request Timeout", 32.0)
    assert s.state is S.DISCONNECTED
    events = []
    while (e := s.next_event()) is not None:
        events.append(e)
    assert events[-1] == Disconnected(408, "Request Timeout", False)


def test_reinvite_timeout_ends_the_dialog_with_bye() -> None:
    link = Link(uac_session())
    connect(link)
    link.a.s.reinvite(HOLD, 5.0)
    (out,) = link.a.s.requests_to_send()
    link.a.s.request_failed(out.request, 408, "Request Timeout", 37.0)
    (bye,) = link.a.s.requests_to_send()
    assert bye.request.method == "BYE" and link.a.s.state is S.DISCONNECTING
