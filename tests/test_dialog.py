"""Dialogs (RFC 3261 section 12): creation on both sides, routing, CSeq rules, refresh."""

from __future__ import annotations

import pytest

from sipstack.dialog import Dialog, DialogError, DialogId, DialogState
from sipstack.headers import Headers, NameAddr
from sipstack.message import Request, Response, make_response, parse_message
from sipstack.uri import parse_uri


def invite(*, record_routes: tuple[str, ...] = (), uri: str = "sip:bob@example.com") -> Request:
    h = Headers()
    h.add("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1")
    for rr in record_routes:
        h.add("Record-Route", rr)
    h.add("Max-Forwards", "70")
    h.add("From", '"Alice" <sip:alice@example.com>;tag=alicetag')
    h.add("To", "<sip:bob@example.com>")
    h.add("Call-ID", "call-1@192.0.2.1")
    h.add("CSeq", "7 INVITE")
    h.add("Contact", "<sip:alice@192.0.2.1:5060>")
    return Request("INVITE", parse_uri(uri), h)


def answer(
    request: Request, status: int, *, contact: str | None = "<sip:bob@192.0.2.2:5070>"
) -> Response:
    response = make_response(request, status, to_tag="bobtag")
    for rr in request.headers.get_all("Record-Route"):
        response.headers.add("Record-Route", rr)
    if contact is not None:
        response.headers.add("Contact", contact)
    return response


P1 = "<sip:p1.example.com;lr>"
P2 = "<sip:p2.example.com;lr>"


def test_uac_dialog_from_2xx_takes_ids_target_and_reversed_route_set() -> None:
    req = invite(record_routes=(P1, P2))
    d = Dialog.from_uac(req, answer(req, 200))
    assert d.id == DialogId("call-1@192.0.2.1", "alicetag", "bobtag")
    assert d.state is DialogState.CONFIRMED
    assert d.local_seq == 7 and d.remote_seq is None
    assert d.remote_target == parse_uri("sip:bob@192.0.2.2:5070")
    # RFC 3261 12.1.2: the UAC reverses Record-Route.
    assert [str(r.uri) for r in d.route_set] == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert not d.secure


def test_uac_early_dialog_without_contact_keeps_request_uri_until_2xx() -> None:
    req = invite()
    d = Dialog.from_uac(req, answer(req, 180, contact=None))
    assert d.state is DialogState.EARLY
    assert d.remote_target == req.uri
    ok = answer(req, 200)
    ok.headers.add("Record-Route", P1)
    d.confirm(ok)  # RFC 3261 13.2.2.4: route set recomputed from the 2xx
    assert d.state is DialogState.CONFIRMED
    assert d.remote_target == parse_uri("sip:bob@192.0.2.2:5070")
    assert [str(r.uri) for r in d.route_set] == ["sip:p1.example.com;lr"]


def test_2xx_contact_that_adds_only_a_parameter_still_becomes_the_target() -> None:
    # linphone's 180 has no Contact and its 200 a GRUU: the same URI as the
    # Request-URI under RFC 3261 19.1.4 comparison (a parameter on one side only
    # is ignored), but the target must be the 2xx's URI as written (12.1.2), or
    # the proxy that issued the GRUU cannot route the ACK and BYE.
    req = invite(uri="sip:flat@test.local")
    d = Dialog.from_uac(req, answer(req, 180, contact=None))
    gruu = "sip:flat@test.local;gr=urn:uuid:f5aecbae-513a-0072-96ef-abd8c2f13d25"
    d.confirm(answer(req, 200, contact=f"<{gruu}>"))
    assert str(d.remote_target) == gruu
    assert str(d.new_request("ACK", seq=7).uri) == gruu
    assert d.refresh_target(answer(req, 200, contact="<sip:flat@test.local>"))
    assert str(d.remote_target) == "sip:flat@test.local"


def test_uac_dialog_needs_tags() -> None:
    req = invite()
    untagged = make_response(req, 200)
    with pytest.raises(DialogError):
        Dialog.from_uac(req, untagged)


def test_uas_dialog_keeps_record_route_order_and_remote_seq() -> None:
    req = invite(record_routes=(P1, P2), uri="sips:bob@example.com")
    me = NameAddr(parse_uri("sips:bob@192.0.2.2:5061"))
    d = Dialog.from_uas(req, "bobtag", me)
    assert d.id == DialogId("call-1@192.0.2.1", "bobtag", "alicetag")
    assert d.remote_seq == 7 and d.local_seq is None
    assert [str(r.uri) for r in d.route_set] == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert d.remote_target == parse_uri("sip:alice@192.0.2.1:5060")
    assert d.secure  # SIPS Request-URI (12.1.1)
    bye = d.new_request("BYE")
    assert bye.cseq.seq == 1  # first request of the UAS: local seq was empty
    assert str(bye.from_.uri) == "sip:bob@example.com" and bye.from_.tag == "bobtag"
    assert bye.to.tag == "alicetag" and bye.to.display_name == "Alice"


def test_uas_dialog_needs_from_tag_and_contact() -> None:
    req = invite()
    req.headers.set("From", "<sip:alice@example.com>")
    with pytest.raises(DialogError):
        Dialog.from_uas(req, "t", None)
    req = invite()
    req.headers.remove("Contact")
    with pytest.raises(DialogError):
        Dialog.from_uas(req, "t", None)


def test_loose_routing_request_keeps_target_and_routes() -> None:
    req = invite(record_routes=(P1, P2))
    d = Dialog.from_uac(req, answer(req, 200))
    bye = d.new_request("BYE")
    assert bye.uri == parse_uri("sip:bob@192.0.2.2:5070")
    assert bye.headers.get_all("Route") == [
        "<sip:p2.example.com;lr>",
        "<sip:p1.example.com;lr>",
    ]
    assert bye.cseq.seq == 8 and bye.cseq.method == "BYE"
    assert "Contact" not in bye.headers  # BYE is no target refresh
    reinvite = d.new_request("INVITE", body=b"v=0\r\n")
    assert reinvite.cseq.seq == 9
    assert reinvite.contacts[0].uri == parse_uri("sip:alice@192.0.2.1:5060")
    assert reinvite.content_type == "application/sdp"
    # The built request survives the wire once a Via is added.
    reinvite.headers.prepend("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx")
    assert parse_message(reinvite.to_bytes()) == reinvite


def test_strict_router_becomes_request_uri() -> None:
    strict = "<sip:strict.example.com;maddr=192.0.2.9>"
    req = invite(record_routes=(P1, strict))
    d = Dialog.from_uac(req, answer(req, 200))  # route set: strict, p1
    bye = d.new_request("BYE")
    # RFC 3261 12.2.1.1: first route is strict -> Request-URI; the remote target last.
    assert bye.uri == parse_uri("sip:strict.example.com;maddr=192.0.2.9")
    assert bye.headers.get_all("Route") == [
        "<sip:p1.example.com;lr>",
        "<sip:bob@192.0.2.2:5070>",
    ]


def test_ack_reuses_the_invite_seq_and_does_not_advance() -> None:
    req = invite()
    d = Dialog.from_uac(req, answer(req, 200))
    ack = d.new_request("ACK", seq=7)
    assert ack.cseq.seq == 7 and ack.cseq.method == "ACK"
    assert d.local_seq == 7
    with pytest.raises(ValueError):
        d.new_request("ACK")


def test_validate_request_cseq_order_and_target_refresh() -> None:
    req = invite()
    d = Dialog.from_uas(req, "bobtag", None)
    peer = Dialog.from_uac(req, answer(req, 200))
    info = peer.new_request("INFO")
    assert info.cseq.seq == 8
    assert d.validate_request(info) is None and d.remote_seq == 8
    stale = info.copy()
    stale.headers.set("CSeq", "6 INFO")
    assert d.validate_request(stale) == 500  # RFC 3261 12.2.2: lower CSeq
    assert d.remote_seq == 8
    peer.local_contact = NameAddr(parse_uri("sip:alice@198.51.100.7:5060"))
    refresh = peer.new_request("INVITE")
    assert d.validate_request(refresh) is None
    assert d.remote_target == parse_uri("sip:alice@198.51.100.7:5060")
    ack = peer.new_request("ACK", seq=refresh.cseq.seq)
    assert d.validate_request(ack) is None and d.remote_seq == refresh.cseq.seq
    d.terminate()
    assert d.validate_request(peer.new_request("BYE")) == 481
    with pytest.raises(DialogError):
        d.new_request("BYE")


def test_matches_by_call_id_and_tags_in_each_direction() -> None:
    req = invite()
    uac = Dialog.from_uac(req, answer(req, 200))
    uas = Dialog.from_uas(req, "bobtag", None)
    bye = uac.new_request("BYE")
    assert uas.matches(bye, incoming_request=True)
    assert not uac.matches(bye, incoming_request=True)
    assert uac.matches(make_response(bye, 200), incoming_request=False)
    other = bye.copy()
    other.headers.set("Call-ID", "else")
    assert not uas.matches(other, incoming_request=True)


def test_refresh_target_reports_change_only() -> None:
    req = invite()
    d = Dialog.from_uac(req, answer(req, 200))
    assert not d.refresh_target(answer(req, 200))
    assert d.refresh_target(answer(req, 200, contact="<sip:bob@203.0.113.5>"))
    assert not d.refresh_target(answer(req, 200, contact=None))
    assert d.remote_target == parse_uri("sip:bob@203.0.113.5")
