"""Offer/answer (RFC 3264): RFC 4317 vectors, hold, DTMF payloads, rejection, IPv6, SRTP."""

from __future__ import annotations

import pytest

from sipstack.offer_answer import (
    CodecSpec,
    LocalMedia,
    NegotiatedMedia,
    OfferAnswerError,
    create_answer,
    create_offer,
    process_answer,
)
from sipstack.sdp import Connection, Direction, SessionDescription, parse_sdp
from sipstack.srtp import SrtpMode

PCMU = CodecSpec("PCMU", 8000)
PCMA = CodecSpec("PCMA", 8000)
G722 = CodecSpec("G722", 8000)
ILBC = CodecSpec("iLBC", 8000)
OPUS = CodecSpec("opus", 48000, 2, fmtp="useinbandfec=1")


def sdp(text: str) -> SessionDescription:
    """Parse a description written with LF in the source, sent as CRLF."""
    return parse_sdp(text.strip("\n").replace("\n", "\r\n").encode() + b"\r\n")


def local(*codecs: CodecSpec, **kwargs: object) -> LocalMedia:
    return LocalMedia("192.0.2.50", 4000, list(codecs) or [PCMU], **kwargs)  # type: ignore[arg-type]


# -- RFC 4317 (transcribed; "s= " carries the single space the RFC notes in 1) -------

ALICE_AV = """
v=0
o=alice 2890844526 2890844526 IN IP4 host.atlanta.example.com
s= 
c=IN IP4 host.atlanta.example.com
t=0 0
m=audio 49170 RTP/AVP 0 8 97
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:97 iLBC/8000
m=video 51372 RTP/AVP 31 32
a=rtpmap:31 H261/90000
a=rtpmap:32 MPV/90000
"""  # noqa: W291 -- RFC 4317 section 1: the subject line is a single space

BOB_HEAD = """
v=0
o=bob 2808844564 {version} IN IP4 host.biloxi.example.com
s= 
c=IN IP4 {host}.biloxi.example.com
t=0 0
"""  # noqa: W291

ALICE_HEAD = """
v=0
o=alice 2890844526 {version} IN IP4 host.atlanta.example.com
s= 
c=IN IP4 {host}
t=0 0
"""  # noqa: W291


def bob(body: str, version: int = 2808844564, host: str = "host") -> SessionDescription:
    return sdp(BOB_HEAD.format(version=version, host=host) + body.strip("\n"))


def alice(
    body: str, version: int = 2890844526, host: str = "host.atlanta.example.com"
) -> SessionDescription:
    return sdp(ALICE_HEAD.format(version=version, host=host) + body.strip("\n"))


def test_rfc4317_2_1_audio_and_video_1() -> None:
    offer = sdp(ALICE_AV)
    answer = bob(
        """
m=audio 49174 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 49170 RTP/AVP 32
a=rtpmap:32 MPV/90000
"""
    )
    got = process_answer(offer, answer)
    assert got is not None
    assert got.codec == CodecSpec("PCMU", 8000, 1, 0)
    assert (got.remote_address, got.remote_port, got.remote_rtcp_port) == (
        "host.biloxi.example.com",
        49174,
        49175,
    )
    assert got.direction is Direction.SENDRECV and not got.on_hold_by_remote
    assert got.telephone_event_pt is None


def test_rfc4317_2_1_our_answer_has_the_rfc_shape_with_video_refused() -> None:
    answer, got = create_answer(sdp(ALICE_AV), local(PCMU), 2808844564, 2808844564)
    audio, video = answer.media
    assert (audio.media, audio.proto, audio.formats) == ("audio", "RTP/AVP", ["0"])
    assert audio.port == 4000
    assert audio.rtpmap(0) is not None and audio.rtpmap(0).encoding == "PCMU"  # type: ignore[union-attr]
    # RFC 3264 6: a stream we cannot handle is refused with port 0, in place.
    assert (video.media, video.port, video.proto) == ("video", 0, "RTP/AVP")
    assert got is not None and got.remote_port == 49170 and got.stream_index == 0
    assert parse_sdp(answer.to_bytes()) == answer


def test_rfc4317_2_2_video_refused_then_audio_narrowed() -> None:
    offer = sdp(ALICE_AV)
    answer = bob(
        """
m=audio 49172 RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
m=video 0 RTP/AVP 31
a=rtpmap:31 H261/90000
"""
    )
    got = process_answer(offer, answer)
    assert got is not None and got.codec.name == "PCMU" and got.remote_port == 49172

    offer2 = alice(
        """
m=audio 51372 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 0 RTP/AVP 31
a=rtpmap:31 H261/90000
""",
        version=2890844527,
    )
    answer2 = bob(
        """
m=audio 49172 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=video 0 RTP/AVP 31
a=rtpmap:31 H261/90000
""",
        version=2808844565,
    )
    got2 = process_answer(offer2, answer2)
    assert got2 is not None and got2.codec.payload_type == 0
    # As Bob: the re-offer keeps both m= lines; we answer audio and keep video at 0.
    ours, _ = create_answer(offer2, local(PCMA, PCMU), 7, 8)
    assert [m.port for m in ours.media] == [4000, 0]
    assert ours.media[0].formats == ["0"]


def test_rfc4317_2_3_answer_may_renumber_a_dynamic_type() -> None:
    answer = bob(
        """
m=audio 49172 RTP/AVP 99
a=rtpmap:99 iLBC/8000
m=video 51374 RTP/AVP 31
a=rtpmap:31 H261/90000
"""
    )
    got = process_answer(sdp(ALICE_AV), answer)
    assert got is not None
    # Offered as 97, answered as 99: we send 99, the number Bob decodes.
    assert got.codec == CodecSpec("iLBC", 8000, 1, 99)


def test_rfc4317_2_4_telephone_event_only_stream() -> None:
    offer = alice(
        """
m=audio 49170 RTP/AVP 0 97
a=rtpmap:0 PCMU/8000
a=rtpmap:97 iLBC/8000
m=audio 49172 RTP/AVP 98
a=rtpmap:98 telephone-event/8000
a=sendonly
"""
    )
    rfc_answer = bob(
        """
m=audio 49172 RTP/AVP 97
a=rtpmap:97 iLBC/8000
m=audio 49174 RTP/AVP 98
a=rtpmap:98 telephone-event/8000
a=recvonly
"""
    )
    got = process_answer(offer, rfc_answer)
    assert got is not None and got.codec.name == "iLBC" and got.stream_index == 0
    # Our own answer takes the codec stream and refuses the events-only one,
    # which is legal (RFC 3264 6) since we carry DTMF inside the audio stream.
    ours, negotiated = create_answer(offer, local(ILBC, PCMU), 1, 1)
    assert [m.port for m in ours.media] == [4000, 0]
    assert ours.media[0].formats == ["97"]
    assert negotiated is not None and negotiated.telephone_event_pt is None


def test_rfc4317_2_6_first_stream_refused_second_taken() -> None:
    offer = alice(
        """
m=audio 49170 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=audio 51372 RTP/AVP 97 101
a=rtpmap:97 iLBC/8000
a=rtpmap:101 telephone-event/8000
"""
    )
    rfc_answer = bob(
        """
m=audio 0 RTP/AVP 0
a=rtpmap:0 PCMU/8000
m=audio 49170 RTP/AVP 97 101
a=rtpmap:97 iLBC/8000
a=rtpmap:101 telephone-event/8000
"""
    )
    got = process_answer(offer, rfc_answer)
    assert got is not None
    assert (got.stream_index, got.remote_port, got.codec.payload_type) == (1, 49170, 97)
    assert got.telephone_event_pt == 101
    assert got.events == frozenset(range(16))  # RFC 4733 7.1.1: no fmtp means 0-15
    # As Bob with only iLBC we produce the RFC's answer streams exactly.
    ours, negotiated = create_answer(offer, local(ILBC), 2808844564, 2808844564)
    assert [(m.port, m.formats) for m in ours.media] == [(0, ["0"]), (4000, ["97", "101"])]
    assert negotiated is not None and negotiated.stream_index == 1


def test_rfc4317_3_1_hold_in_the_answer_then_unhold() -> None:
    offer = alice(
        """
m=audio 49170 RTP/AVP 0 97
a=rtpmap:0 PCMU/8000
a=rtpmap:97 iLBC/8000
"""
    )
    answer = bob(
        """
m=audio 49172 RTP/AVP 97
a=rtpmap:97 iLBC/8000
a=sendonly
""",
        host="placeholder",
    )
    got = process_answer(offer, answer)
    assert got is not None
    assert got.remote_address == "placeholder.biloxi.example.com"
    assert got.direction is Direction.RECVONLY
    assert got.can_receive and not got.can_send and got.on_hold_by_remote

    # Bob's second offer takes Alice off hold; as Alice we answer sendrecv.
    offer2 = bob(
        """
m=audio 49170 RTP/AVP 97
a=rtpmap:97 iLBC/8000
""",
        version=2808844565,
    )
    ours, negotiated = create_answer(offer2, local(ILBC, PCMU), 2890844526, 2890844527)
    assert negotiated is not None
    assert negotiated.direction is Direction.SENDRECV and not negotiated.on_hold_by_remote
    assert ours.direction_for(ours.media[0]) is Direction.SENDRECV
    assert ours.origin.session_version == 2890844527


def test_rfc4317_3_2_hold_one_of_two_streams() -> None:
    offer2 = bob(
        """
m=audio 49172 RTP/AVP 97
a=rtpmap:97 iLBC/8000
a=sendonly
m=audio 49174 RTP/AVP 98
a=rtpmap:98 telephone-event/8000
a=recvonly
""",
        version=2808844565,
    )
    ours, negotiated = create_answer(offer2, local(ILBC), 1, 2)
    assert negotiated is not None
    assert negotiated.direction is Direction.RECVONLY and negotiated.on_hold_by_remote
    assert ours.media[0].own_direction is Direction.RECVONLY  # RFC 3264 6.1 mirror
    assert ours.media[1].port == 0


def test_rfc4317_4_3_video_deleted_in_a_reoffer() -> None:
    offer2 = bob(
        """
m=audio 49174 RTP/AVP 97
a=rtpmap:97 iLBC/8000
m=video 0 RTP/AVP 31
a=rtpmap:31 H261/90000
""",
        version=2808844565,
    )
    ours, negotiated = create_answer(offer2, local(ILBC), 2890844526, 2890844527)
    assert [(m.media, m.port) for m in ours.media] == [("audio", 4000), ("video", 0)]
    rfc_answer = alice(
        """
m=audio 49170 RTP/AVP 97
a=rtpmap:97 iLBC/8000
m=video 0 RTP/AVP 31
a=rtpmap:31 H261/90000
""",
        version=2890844527,
    )
    got = process_answer(offer2, rfc_answer)
    assert got is not None and got.remote_port == 49170 and got.codec.payload_type == 97


def test_rfc4317_5_1_no_media_then_audio_added() -> None:
    ours, negotiated = create_answer(alice(""), local(ILBC), 1, 1)
    assert ours.media == [] and negotiated is None
    offer2 = alice("m=audio 49170 RTP/AVP 97\na=rtpmap:97 iLBC/8000", version=2890844527)
    ours2, negotiated2 = create_answer(offer2, local(ILBC), 1, 2)
    assert negotiated2 is not None and ours2.media[0].formats == ["97"]


def test_rfc4317_5_2_offer_with_0_0_0_0_is_an_old_style_hold() -> None:
    offer = alice("m=audio 23442 RTP/AVP 97\na=rtpmap:97 iLBC/8000", host="0.0.0.0")
    ours, negotiated = create_answer(offer, local(ILBC), 1, 1)
    assert negotiated is not None
    assert negotiated.on_hold_by_remote
    assert not negotiated.can_send and negotiated.can_receive
    assert ours.media[0].own_direction is Direction.RECVONLY
    # Second exchange: a real address, media flows both ways.
    offer2 = alice("m=audio 49170 RTP/AVP 97\na=rtpmap:97 iLBC/8000", version=2890844527)
    _, negotiated2 = create_answer(offer2, local(ILBC), 1, 2)
    assert negotiated2 is not None and negotiated2.direction is Direction.SENDRECV
    assert not negotiated2.on_hold_by_remote


def test_rfc4317_5_3_answer_with_0_0_0_0() -> None:
    offer = alice("m=audio 49170 RTP/AVP 97\na=rtpmap:97 iLBC/8000")
    answer = sdp(
        BOB_HEAD.format(version=2808844564, host="host").replace(
            "c=IN IP4 host.biloxi.example.com", "c=IN IP4 0.0.0.0"
        )
        + "m=audio 9322 RTP/AVP 97\na=rtpmap:97 iLBC/8000"
    )
    got = process_answer(offer, answer)
    assert got is not None
    assert got.on_hold_by_remote and not got.can_send and got.can_receive


# -- our offers, re-offers, hold ----------------------------------------------------


def test_offer_lists_our_codecs_in_order_with_static_and_dynamic_types() -> None:
    offer = create_offer(local(OPUS, G722, PCMU, PCMA), 1234, 1)
    audio = offer.media[0]
    assert audio.formats == ["96", "9", "0", "8", "101", "97"]
    assert audio.rtpmap(96) is not None and audio.rtpmap(96).channels == 2  # type: ignore[union-attr]
    assert audio.fmtp(96) == "useinbandfec=1"
    te = {pt: audio.rtpmap(pt) for pt in (101, 97)}
    assert [(m.encoding, m.clock_rate) for m in te.values() if m] == [
        ("telephone-event", 8000),
        ("telephone-event", 48000),
    ]
    assert audio.fmtp(101) == "0-16"
    assert audio.ptime == 20
    assert offer.direction_for(audio) is Direction.SENDRECV
    assert offer.origin.session_id == 1234 and offer.origin.session_version == 1
    assert offer.connection == Connection("192.0.2.50")
    assert parse_sdp(offer.to_bytes()) == offer


def test_offer_avoids_payload_type_collisions() -> None:
    odd = CodecSpec("L16", 16000, payload_type=101)
    offer = create_offer(local(odd, CodecSpec("speex", 16000), PCMU), 1, 1)
    audio = offer.media[0]
    numbers = audio.payload_types
    assert len(numbers) == len(set(numbers))
    assert numbers[:3] == [101, 96, 0]
    events = [pt for pt in numbers if audio.rtpmap(pt).encoding == "telephone-event"]  # type: ignore[union-attr]
    assert 101 not in events and len(events) == 2  # one per clock: 16000 and 8000


def test_offer_without_telephone_event_and_with_rtcp_port() -> None:
    offer = create_offer(local(PCMU, telephone_event=False, rtcp_port=4005, ptime=30), 1, 1)
    audio = offer.media[0]
    assert audio.formats == ["0"]
    assert audio.rtcp is not None and audio.rtcp.port == 4005
    assert audio.ptime == 30


def test_full_call_hold_and_unhold_between_two_of_us() -> None:
    a_local, b_local = local(PCMU, PCMA), LocalMedia("192.0.2.60", 6000, [PCMA, PCMU])
    offer = create_offer(a_local, 111, 1)
    answer, b_view = create_answer(parse_sdp(offer.to_bytes()), b_local, 222, 1)
    a_view = process_answer(offer, parse_sdp(answer.to_bytes()))
    assert a_view is not None and b_view is not None
    assert a_view.codec == b_view.codec == CodecSpec("PCMA", 8000, 1, 8)  # B's preference
    assert a_view.telephone_event_pt == b_view.telephone_event_pt == 101
    assert (a_view.remote_address, a_view.remote_port) == ("192.0.2.60", 6000)
    assert (b_view.remote_address, b_view.remote_port) == ("192.0.2.50", 4000)

    # A holds: RFC 3264 8.4 re-offer, same session id, version + 1, sendonly.
    hold = create_offer(local(PCMU, PCMA, direction="sendonly"), 111, 2, previous=offer)
    assert hold.origin.session_id == 111 and hold.origin.session_version == 2
    answer2, b_view2 = create_answer(hold, b_local, 222, 2)
    a_view2 = process_answer(hold, answer2)
    assert b_view2 is not None and a_view2 is not None
    assert answer2.media[0].own_direction is Direction.RECVONLY
    assert b_view2.on_hold_by_remote and not b_view2.can_send and b_view2.can_receive
    assert a_view2.can_send and not a_view2.can_receive and not a_view2.on_hold_by_remote

    # A resumes.
    unhold = create_offer(a_local, 111, 3, previous=hold)
    answer3, b_view3 = create_answer(unhold, b_local, 222, 3)
    a_view3 = process_answer(unhold, answer3)
    assert b_view3 is not None and a_view3 is not None
    assert b_view3.direction is a_view3.direction is Direction.SENDRECV
    assert not b_view3.on_hold_by_remote and not a_view3.on_hold_by_remote


def test_hold_while_held_becomes_inactive() -> None:
    offer = create_offer(local(PCMU, direction="sendonly"), 1, 2)
    answer, view = create_answer(offer, local(PCMU, direction="sendonly"), 2, 2)
    assert answer.media[0].own_direction is Direction.INACTIVE
    assert view is not None and view.direction is Direction.INACTIVE


def test_recvonly_offer_is_answered_sendonly_and_is_not_a_hold() -> None:
    offer = create_offer(local(PCMU, direction="recvonly"), 1, 1)
    answer, view = create_answer(offer, local(PCMU), 2, 1)
    assert answer.media[0].own_direction is Direction.SENDONLY
    assert view is not None and view.can_send and not view.on_hold_by_remote


def test_session_level_direction_is_the_default_for_streams() -> None:
    offer = sdp(
        """
v=0
o=x 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
a=sendonly
m=audio 5000 RTP/AVP 0
"""
    )
    _, view = create_answer(offer, local(PCMU), 1, 1)
    assert view is not None and view.direction is Direction.RECVONLY


def test_reoffer_keeps_every_earlier_m_line_in_place() -> None:
    # The peer offered video then audio; our re-offer must keep both lines.
    previous = sdp(
        """
v=0
o=x 1 1 IN IP4 192.0.2.1
s=-
c=IN IP4 192.0.2.1
t=0 0
m=video 5002 RTP/AVP 31
m=audio 5000 RTP/AVP 0
"""
    )
    reoffer = create_offer(local(PCMU), 9, 2, previous=previous)
    assert [(m.media, m.port) for m in reoffer.media] == [("video", 0), ("audio", 4000)]
    answer, _ = create_answer(reoffer, LocalMedia("192.0.2.1", 5000, [PCMU]), 1, 2)
    got = process_answer(reoffer, answer)
    assert got is not None and got.stream_index == 1 and got.remote_port == 5000


# -- telephone-event and payload type mapping ----------------------------------------


def offer_with(audio_lines: str) -> SessionDescription:
    return sdp("v=0\no=p 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n" + audio_lines)


def test_telephone_event_101_is_negotiated() -> None:
    offer = offer_with(
        "m=audio 5000 RTP/AVP 0 101\na=rtpmap:101 telephone-event/8000\na=fmtp:101 0-16\n"
    )
    answer, view = create_answer(offer, local(PCMU), 1, 1)
    assert view is not None and view.telephone_event_pt == 101
    assert view.events == frozenset(range(17))
    assert answer.media[0].formats == ["0", "101"]
    assert answer.media[0].fmtp(101) == "0-16"


def test_telephone_event_with_an_odd_payload_type_and_event_list() -> None:
    offer = offer_with(
        "m=audio 5000 RTP/AVP 8 126\na=rtpmap:126 TELEPHONE-EVENT/8000\na=fmtp:126 0-11,16,70\n"
    )
    answer, view = create_answer(offer, local(PCMU, PCMA), 1, 1)
    assert view is not None and view.telephone_event_pt == 126
    # Only events both ends know: 70 is not ours.
    assert view.events == frozenset([*range(12), 16])
    assert answer.media[0].formats == ["8", "126"]
    assert answer.media[0].fmtp(126) == "0-11,16"


def test_telephone_event_at_another_clock_is_not_used() -> None:
    offer = offer_with(
        "m=audio 5000 RTP/AVP 96 100\na=rtpmap:96 opus/48000/2\na=rtpmap:100 telephone-event/8000\n"
    )
    answer, view = create_answer(offer, local(OPUS), 1, 1)
    assert view is not None and view.codec.payload_type == 96
    assert view.telephone_event_pt is None  # RFC 4733 7.1.1: clocks must match
    assert answer.media[0].formats == ["96"]


def test_dynamic_payload_type_of_the_offerer_is_kept() -> None:
    offer = offer_with(
        "m=audio 5000 RTP/AVP 111 0\na=rtpmap:111 opus/48000/2\n"
        "a=fmtp:111 minptime=10;useinbandfec=1\na=ptime:40\na=rtcp:5009\n"
    )
    answer, view = create_answer(offer, local(OPUS, PCMU), 1, 1)
    assert view is not None
    assert view.codec == CodecSpec("opus", 48000, 2, 111, "minptime=10;useinbandfec=1")
    assert view.ptime == 40  # the peer's a=ptime is what it wants to receive
    assert view.remote_rtcp_port == 5009  # RFC 3605
    assert answer.media[0].formats == ["111"]
    assert answer.media[0].rtpmap(111) is not None
    assert answer.media[0].fmtp(111) == "useinbandfec=1"  # our own parameters


def test_our_preference_beats_the_offer_order() -> None:
    offer = offer_with("m=audio 5000 RTP/AVP 0 8 9\n")
    _, view = create_answer(offer, local(G722, PCMA, PCMU), 1, 1)
    assert view is not None and view.codec == CodecSpec("G722", 8000, 1, 9)


def test_codec_names_compare_case_insensitively_but_clocks_must_match() -> None:
    offer = offer_with(
        "m=audio 5000 RTP/AVP 97 98\na=rtpmap:97 pcmu/16000\na=rtpmap:98 pcmu/8000\n"
    )
    _, view = create_answer(offer, local(PCMU), 1, 1)
    assert view is not None and view.codec.payload_type == 98


# -- refusals -----------------------------------------------------------------------


def test_no_common_codec_answers_port_0_and_no_media() -> None:
    offer = offer_with("m=audio 5000 RTP/AVP 18 4\n")  # G729, G723
    answer, view = create_answer(offer, local(PCMU, PCMA), 1, 1)
    assert view is None
    assert [(m.media, m.port, m.formats) for m in answer.media] == [("audio", 0, ["18", "4"])]


def test_multiple_m_lines_only_the_first_usable_audio_is_taken() -> None:
    offer = offer_with(
        "m=video 5002 RTP/AVP 31\n"
        "m=audio 5004 RTP/AVP 18\n"  # nothing in common
        "m=audio 5006 RTP/AVPF 0\n"  # profile we do not speak
        "m=audio 0 RTP/AVP 0\n"  # disabled by the offerer
        "m=audio 5008 RTP/AVP 8 0\n"
        "m=audio 5010 RTP/AVP 0\n"  # a second usable one: refused, we do one stream
        "m=application 5012 udp wb\n"
    )
    answer, view = create_answer(offer, local(PCMU, PCMA), 1, 1)
    ports = [m.port for m in answer.media]
    assert ports == [0, 0, 0, 0, 4000, 0, 0]
    assert [m.media for m in answer.media] == [m.media for m in offer.media]
    assert [m.proto for m in answer.media] == [m.proto for m in offer.media]
    assert view is not None and view.stream_index == 4 and view.remote_port == 5008
    assert view.codec.name == "PCMU"
    assert process_answer(offer, answer) == view.__class__(
        remote_address="192.0.2.50",
        remote_port=4000,
        remote_rtcp_port=4001,
        codec=CodecSpec("PCMU", 8000, 1, 0),
        telephone_event_pt=None,
        ptime=20,
        direction=Direction.SENDRECV,
        on_hold_by_remote=False,
        stream_index=4,
    )


def test_answer_refusing_everything_gives_none() -> None:
    offer = create_offer(local(PCMU), 1, 1)
    answer, _ = create_answer(offer, local(CodecSpec("G729", 8000)), 2, 1)
    assert answer.media[0].port == 0
    assert process_answer(offer, answer) is None


def test_answer_with_a_codec_we_never_offered_gives_none() -> None:
    offer = create_offer(local(PCMU), 1, 1)
    answer = offer_with("m=audio 5000 RTP/AVP 18\n")
    assert process_answer(offer, answer) is None


def test_answer_with_wrong_m_line_count_is_the_peers_fault() -> None:
    offer = create_offer(local(PCMU), 1, 1)
    answer = offer_with("m=audio 5000 RTP/AVP 0\nm=video 5002 RTP/AVP 31\n")
    with pytest.raises(OfferAnswerError, match="2 m= lines for an offer of 1"):
        process_answer(offer, answer)


def test_answer_with_wrong_media_type_is_the_peers_fault() -> None:
    offer = create_offer(local(PCMU), 1, 1)
    with pytest.raises(OfferAnswerError, match="'video' for offered 'audio'"):
        process_answer(offer, offer_with("m=video 5000 RTP/AVP 31\n"))


# -- IPv6 ---------------------------------------------------------------------------


def test_ipv6_offer_and_answer() -> None:
    mine = LocalMedia("2001:db8::50", 4000, [PCMU])
    offer = create_offer(mine, 1, 1)
    assert offer.connection == Connection("2001:db8::50", "IP6")
    assert offer.origin.addrtype == "IP6"
    assert b"c=IN IP6 2001:db8::50\r\n" in offer.to_bytes()
    answer, view = create_answer(offer, LocalMedia("2001:db8::60", 6000, [PCMU]), 2, 1)
    assert view is not None and view.remote_address == "2001:db8::50"
    got = process_answer(offer, answer)
    assert got is not None and got.remote_address == "2001:db8::60"


def test_rfc5118_ipv6_offer_is_answered() -> None:
    offer = sdp(
        """
v=0
o=assistant 971731711378798081 0 IN IP6 2001:db8::20
s=Live video feed for today's meeting
c=IN IP6 2001:db8::20
t=3338481189 3370017201
m=audio 6000 RTP/AVP 2
a=rtpmap:2 G726-32/8000
m=video 6024 RTP/AVP 107
a=rtpmap:107 H263-1998/90000
"""
    )
    answer, view = create_answer(offer, local(CodecSpec("G726-32", 8000)), 1, 1)
    assert view is not None
    assert (view.remote_address, view.remote_port, view.codec.payload_type) == (
        "2001:db8::20",
        6000,
        2,
    )
    assert [m.port for m in answer.media] == [4000, 0]


# -- SRTP (SDES keys kept raw) ------------------------------------------------------

KEY_A = "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
KEY_B = "1 AES_CM_128_HMAC_SHA1_80 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj"


def test_srtp_offer_and_answer_pair_the_crypto_lines() -> None:
    offer = create_offer(local(PCMU, crypto=[KEY_A]), 1, 1)
    assert offer.media[0].proto == "RTP/SAVP" and offer.media[0].crypto == [KEY_A]
    answer, b_view = create_answer(offer, local(PCMU, crypto=[KEY_B]), 2, 1)
    assert answer.media[0].proto == "RTP/SAVP" and answer.media[0].crypto == [KEY_B]
    assert b_view is not None and (b_view.local_crypto, b_view.remote_crypto) == (KEY_B, KEY_A)
    a_view = process_answer(offer, answer)
    assert a_view is not None and (a_view.local_crypto, a_view.remote_crypto) == (KEY_A, KEY_B)


def test_srtp_offer_without_our_keys_is_refused() -> None:
    offer = create_offer(local(PCMU, crypto=[KEY_A]), 1, 1)
    answer, view = create_answer(offer, local(PCMU), 2, 1)
    assert view is None and answer.media[0].port == 0


def test_srtp_accepted_without_crypto_is_the_peers_fault() -> None:
    offer = create_offer(local(PCMU, crypto=[KEY_A]), 1, 1)
    answer = offer_with("m=audio 5000 RTP/SAVP 0\n")
    with pytest.raises(OfferAnswerError, match="without a=crypto"):
        process_answer(offer, answer)


KEY_32 = "2 AES_CM_128_HMAC_SHA1_32 inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj"
KEY_MKI = "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4"
OPTIONAL = SrtpMode.OPTIONAL
MANDATORY = SrtpMode.MANDATORY


def best_effort_offer(*crypto: str) -> SessionDescription:
    """What baresip ``mediaenc=srtp`` and PJSUA ``use_srtp=1`` send: RTP/AVP with keys."""
    lines = "".join(f"a=crypto:{c}\n" for c in crypto)
    return offer_with(f"m=audio 5000 RTP/AVP 0\na=rtpmap:0 PCMU/8000\n{lines}")


def test_optional_offer_is_rtp_avp_with_crypto() -> None:
    offer = create_offer(local(PCMU, crypto=[KEY_A, KEY_32], srtp=OPTIONAL), 1, 1)
    assert offer.media[0].proto == "RTP/AVP" and offer.media[0].crypto == [KEY_A, KEY_32]
    assert b"m=audio 4000 RTP/AVP 0 101\r\n" in offer.to_bytes()


@pytest.mark.parametrize("mode", [OPTIONAL, None])
def test_best_effort_offer_is_answered_with_a_key(mode: SrtpMode | None) -> None:
    # None: a LocalMedia with keys and no mode is MANDATORY, which refuses RTP/AVP.
    ours = local(PCMU, crypto=[KEY_B], srtp=mode)
    answer, view = create_answer(best_effort_offer(KEY_MKI, KEY_A), ours, 2, 1)
    if mode is None:
        assert view is None and answer.media[0].port == 0
        return
    media = answer.media[0]
    assert media.proto == "RTP/AVP"  # RFC 3264 6: the answer keeps the offered profile
    assert media.crypto == [KEY_B]  # MKI line skipped (RFC 4568 7.1.2), tag 1 answered
    assert view is not None and (view.local_crypto, view.remote_crypto) == (KEY_B, KEY_A)


def test_best_effort_answer_takes_the_offerers_tag_and_our_key_of_that_suite() -> None:
    ours = local(PCMU, crypto=[KEY_B, "7 AES_CM_128_HMAC_SHA1_32 " + KEY_32.split()[2]])
    ours = LocalMedia(ours.address, ours.port, ours.codecs, crypto=ours.crypto, srtp=OPTIONAL)
    answer, view = create_answer(best_effort_offer(KEY_32), ours, 2, 1)
    expected = "2 AES_CM_128_HMAC_SHA1_32 " + KEY_32.split()[2]
    assert answer.media[0].crypto == [expected]
    assert view is not None and view.local_crypto == expected and view.remote_crypto == KEY_32


@pytest.mark.parametrize(
    ("offered", "mode", "outcome"),
    [
        ([], OPTIONAL, "plain"),
        (["1 AES_CM_256_NOPE inline:AAAA"], OPTIONAL, "plain"),  # unknown suite: skipped
        ([KEY_MKI], OPTIONAL, "plain"),  # MKI: we cannot key it
        ([KEY_A], SrtpMode.DISABLED, "plain"),  # keys in RTP/AVP ignored
        ([KEY_A], MANDATORY, "refused"),  # PJSUA: mandatory wants RTP/SAVP
    ],
)
def test_best_effort_offer_outcomes(offered: list[str], mode: SrtpMode, outcome: str) -> None:
    crypto = [] if mode is SrtpMode.DISABLED else [KEY_B]
    answer, view = create_answer(
        best_effort_offer(*offered), local(PCMU, crypto=crypto, srtp=mode), 2, 1
    )
    if outcome == "refused":
        assert view is None and answer.media[0].port == 0
    else:
        assert view is not None and view.local_crypto is None and view.remote_crypto is None
        assert answer.media[0].crypto == [] and answer.media[0].proto == "RTP/AVP"


def test_savp_offer_under_optional_needs_a_usable_key() -> None:
    ours = local(PCMU, crypto=[KEY_B], srtp=OPTIONAL)
    good = offer_with(f"m=audio 5000 RTP/SAVP 0\na=crypto:{KEY_A}\n")
    answer, view = create_answer(good, ours, 2, 1)
    assert view is not None and view.remote_crypto == KEY_A
    assert answer.media[0].proto == "RTP/SAVP"
    bad = offer_with(f"m=audio 5000 RTP/SAVP 0\na=crypto:{KEY_MKI}\n")
    answer, view = create_answer(bad, ours, 2, 1)
    assert view is None and answer.media[0].port == 0


def test_optional_offer_answered_plain_or_with_a_key() -> None:
    offer = create_offer(local(PCMU, crypto=[KEY_A], srtp=OPTIONAL), 1, 1)
    plain = offer_with("m=audio 5000 RTP/AVP 0\n")
    view = process_answer(offer, plain)
    assert view is not None and view.local_crypto is None  # best effort declined
    keyed = offer_with(f"m=audio 5000 RTP/AVP 0\na=crypto:{KEY_B}\n")
    view = process_answer(offer, keyed)
    assert view is not None and (view.local_crypto, view.remote_crypto) == (KEY_A, KEY_B)
    # and end to end with our own answerer
    answer, b_view = create_answer(offer, local(PCMU, crypto=[KEY_B], srtp=OPTIONAL), 2, 1)
    a_view = process_answer(offer, answer)
    assert a_view is not None and b_view is not None
    assert (a_view.local_crypto, a_view.remote_crypto) == (KEY_A, KEY_B)
    assert (b_view.local_crypto, b_view.remote_crypto) == (KEY_B, KEY_A)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([KEY_B, KEY_B], "2 a=crypto lines"),
        ([KEY_32], "tag 2 AES_CM_128_HMAC_SHA1_32 was not offered"),
        (["1 AES_CM_128_HMAC_SHA1_32 " + KEY_B.split()[2]], "tag 1 AES_CM_128_HMAC_SHA1_32"),
        ([KEY_MKI], "unusable a=crypto"),
    ],
)
def test_bad_crypto_in_the_answer_is_the_peers_fault(lines: list[str], message: str) -> None:
    offer = create_offer(local(PCMU, crypto=[KEY_A], srtp=OPTIONAL), 1, 1)
    crypto = "".join(f"a=crypto:{c}\n" for c in lines)
    with pytest.raises(OfferAnswerError, match=message):
        process_answer(offer, offer_with(f"m=audio 5000 RTP/AVP 0\n{crypto}"))


def test_mandatory_without_keys_accepts_nothing_and_cannot_offer() -> None:
    # What the media factory gives an incoming call whose signalling may not carry
    # keys (srtp_secure_signaling not met): every stream refused, so 488.
    ours = local(PCMU, crypto=[], srtp=MANDATORY)
    for offer in (
        best_effort_offer(KEY_A),
        best_effort_offer(),
        offer_with(f"m=audio 5000 RTP/SAVP 0\na=crypto:{KEY_A}\n"),
    ):
        answer, view = create_answer(offer, ours, 2, 1)
        assert view is None and answer.media[0].port == 0
        assert b"a=crypto" not in answer.to_bytes()
    with pytest.raises(ValueError, match="no keys we may send"):
        create_offer(ours, 1, 1)


# -- misuse -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"port": 0}, "port 0 out of range"),
        ({"port": 70000}, "port 70000 out of range"),
        ({"codecs": []}, "at least one codec"),
        ({"direction": "sideways"}, "unknown direction"),
        ({"ptime": 0}, "ptime 0 must be positive"),
        ({"address": ""}, "bad address"),
        ({"address": "1.2.3.4\r\nm=evil"}, "bad address"),
        ({"codecs": [CodecSpec("X", 8000, payload_type=128)]}, "out of 0-127"),
        ({"crypto": [KEY_A], "srtp": SrtpMode.DISABLED}, "srtp is DISABLED"),
        ({"srtp": SrtpMode.OPTIONAL}, "OPTIONAL needs a=crypto"),
    ],
)
def test_local_media_misuse_raises(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"address": "192.0.2.1", "port": 4000, "codecs": [PCMU]}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        LocalMedia(**args)  # type: ignore[arg-type]


def test_negotiated_media_is_immutable() -> None:
    _, view = create_answer(create_offer(local(PCMU), 1, 1), local(PCMU), 2, 1)
    assert isinstance(view, NegotiatedMedia)
    with pytest.raises(AttributeError):
        view.remote_port = 1  # type: ignore[misc]


def test_hostile_offer_with_thousands_of_formats_is_negotiated() -> None:
    # ~13k formats on one line and 900 rtpmaps (the size and line limits allow
    # it): duplicates and junk encodings are skipped and the static PCMU found.
    formats = " ".join(["96"] * 13000 + ["0"])
    rtpmaps = "".join(f"a=rtpmap:96 x{i}/8000\n" for i in range(900))
    offer = offer_with(f"m=audio 5000 RTP/AVP {formats}\n{rtpmaps}")
    _, view = create_answer(offer, local(PCMU), 1, 1)
    assert view is not None and view.codec.payload_type == 0
