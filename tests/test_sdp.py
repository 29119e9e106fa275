"""SDP (RFC 8866): parsing the published vectors, accessors, errors, round trips."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipstack.sdp import (
    MAX_SDP_LINES,
    MAX_SDP_SIZE,
    Attribute,
    Bandwidth,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtcpAttribute,
    RtpMap,
    SdpParseError,
    SessionDescription,
    Timing,
    parse_sdp,
)

DATA = Path(__file__).parent / "data"


def sdp(text: str) -> bytes:
    """Test SDP written with LF in the source, sent with CRLF as on the wire."""
    return text.replace("\n", "\r\n").encode()


def body_of(path: Path) -> bytes:
    """The body of a SIP message file (CRLF or bare-LF archive form)."""
    data = path.read_bytes()
    for sep in (b"\r\n\r\n", b"\n\n"):
        head, found, body = data.partition(sep)
        if found:
            return body
    raise AssertionError(f"{path} has no body")


BASIC = sdp(
    """v=0
o=alice 2890844526 2890844527 IN IP4 host.atlanta.example.com
s=Door call
c=IN IP4 192.0.2.10
t=0 0
a=sendonly
m=audio 49170 RTP/AVP 0 8 97 101
a=rtpmap:0 PCMU/8000
a=rtpmap:97 iLBC/8000
a=fmtp:97 mode=30
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:30
a=maxptime:150
a=rtcp:53020 IN IP4 126.16.64.4
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32
a=x-unknown:keep me
a=recvonly
m=video 0 RTP/AVP 31
"""
)


# -- the published vectors ----------------------------------------------------------


RFC4475_WITH_SDP = [
    "sdp01",
    "wsinv",
    "esc01",
    "longreq",
    "inv2543",
    "unreason",
    "multi01",
    "insuf",
    "bcast",
]


@pytest.mark.parametrize("name", RFC4475_WITH_SDP)
def test_rfc4475_bodies_parse(name: str) -> None:
    desc = parse_sdp(body_of(DATA / "rfc4475" / f"{name}.dat"))
    assert desc.origin.username == "mhandley"
    assert desc.origin.session_id == 29739
    assert desc.media[0].media == "audio"
    assert desc.media[0].port == 49217
    assert desc.media[0].proto == "RTP/AVP"
    assert desc.media[0].payload_types[0] == 0


def test_rfc4475_sdp01_details_and_the_clockless_rtpmap() -> None:
    desc = parse_sdp(body_of(DATA / "rfc4475" / "sdp01.dat"))
    assert desc.session_name == "-"
    assert desc.connection == Connection("192.0.2.5")
    audio, video = desc.media
    assert audio.payload_types == [0, 12]
    assert video.payload_types == [31]
    # "a=rtpmap:31 LPC" has no clock rate: kept raw, ignored by the accessor,
    # which then falls back to RFC 3551's static meaning of 31 (H261/90000).
    assert video.attributes == [Attribute("rtpmap", "31 LPC")]
    assert video.rtpmaps == {}
    assert video.rtpmap(31) == RtpMap(31, "H261", 90000)
    assert audio.rtpmap(12) == RtpMap(12, "QCELP", 8000)


def test_rfc4475_invut_body_is_not_sdp() -> None:
    # RFC 4475 3.3.10: Content-Type application/unknownformat; the body is XML-ish.
    with pytest.raises(SdpParseError, match="must start with v=0"):
        parse_sdp(body_of(DATA / "rfc4475" / "invut.dat"))


def test_rfc5118_ipv6_in_sdp() -> None:
    desc = parse_sdp(body_of(DATA / "rfc5118" / "ipv6-in-sdp"))
    assert desc.origin == Origin("assistant", 971731711378798081, 0, "2001:db8::20", addrtype="IP6")
    assert desc.connection == Connection("2001:db8::20", "IP6")
    assert desc.timings == [Timing(3338481189, 3370017201)]
    assert desc.media[0].rtpmap(2) == RtpMap(2, "G726-32", 8000)
    assert desc.media[1].rtpmap(107) == RtpMap(107, "H263-1998", 90000)


def test_rfc5118_mult_ip_in_sdp_per_stream_connections() -> None:
    desc = parse_sdp(body_of(DATA / "rfc5118" / "mult-ip-in-sdp"))
    assert desc.connection is None
    assert desc.session_name == ""
    audio, video = desc.media
    assert desc.connection_for(audio) == Connection("192.0.2.1", "IP4")
    assert desc.connection_for(video) == Connection("2001:db8::1", "IP6")


def test_rfc5118_ipv4_mapped_ipv6() -> None:
    desc = parse_sdp(body_of(DATA / "rfc5118" / "ipv4-mapped-ipv6"))
    assert desc.connection == Connection("::ffff:192.0.2.2", "IP6")
    assert desc.origin.address == "::ffff:192.0.2.2"


@pytest.mark.parametrize("name", ["ipv6-in-sdp", "mult-ip-in-sdp", "ipv4-mapped-ipv6"])
def test_rfc5118_wire_form_parses_the_same_as_the_archive(name: str) -> None:
    archive = parse_sdp(body_of(DATA / "rfc5118" / name))
    wire = parse_sdp(body_of(DATA / "rfc5118" / "wire" / f"{name}.sip"))
    assert wire == archive


@pytest.mark.parametrize("name", ["03-invite-sdp.sip", "06-200-invite-sdp.sip"])
def test_corpus_bodies_from_real_peers(name: str) -> None:
    desc = parse_sdp(body_of(DATA / "corpus" / name))
    audio = desc.media[0]
    assert audio.rtpmap(9) == RtpMap(9, "G722", 8000)
    assert audio.rtpmap(101) == RtpMap(101, "telephone-event", 8000)
    assert audio.ptime == 20
    assert desc.direction_for(audio) is Direction.SENDRECV


# -- accessors ----------------------------------------------------------------------


def test_fields_and_accessors() -> None:
    desc = parse_sdp(BASIC)
    assert desc.origin == Origin("alice", 2890844526, 2890844527, "host.atlanta.example.com")
    assert desc.session_name == "Door call"
    audio, video = desc.media
    assert audio.payload_types == [0, 8, 97, 101]
    assert audio.rtpmap(0) == RtpMap(0, "PCMU", 8000)
    assert audio.rtpmap(8) == RtpMap(8, "PCMA", 8000)  # static, no rtpmap line
    assert audio.rtpmap(97) == RtpMap(97, "iLBC", 8000)
    assert audio.rtpmap(96) is None  # dynamic and unmapped
    assert audio.fmtp(97) == "mode=30"
    assert audio.fmtp(101) == "0-15"
    assert audio.fmtp(0) is None
    assert audio.ptime == 30
    assert audio.maxptime == 150
    assert audio.rtcp == RtcpAttribute(53020, "126.16.64.4", "IP4")
    assert audio.crypto == [
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
    ]
    assert audio.get_attribute("x-unknown") == "keep me"
    # media level overrides the session level; the video stream inherits it.
    assert desc.own_direction is Direction.SENDONLY
    assert desc.direction_for(audio) is Direction.RECVONLY
    assert desc.direction_for(video) is Direction.SENDONLY
    assert video.port == 0


def test_attributes_keep_order_and_property_attributes_have_no_value() -> None:
    desc = parse_sdp(BASIC)
    names = [a.name for a in desc.media[0].attributes]
    assert names == [
        "rtpmap", "rtpmap", "fmtp", "rtpmap", "fmtp", "ptime", "maxptime",
        "rtcp", "crypto", "x-unknown", "recvonly",
    ]  # fmt: skip
    assert desc.media[0].attributes[-1] == Attribute("recvonly", None)
    assert desc.media[0].has_attribute("RECVONLY")  # names compare case-insensitively


def test_default_direction_is_sendrecv() -> None:
    desc = parse_sdp(sdp("v=0\no=- 1 1 IN IP4 h\nc=IN IP4 h\nm=audio 1 RTP/AVP 0\n"))
    assert desc.direction_for(desc.media[0]) is Direction.SENDRECV


def test_missing_s_and_t_are_tolerated() -> None:
    # RFC 4475 mismatch02's body has neither; real peers occasionally do the same.
    desc = parse_sdp(body_of(DATA / "rfc4475" / "mismatch02.dat"))
    assert desc.session_name == "-"
    assert desc.timings == [Timing(0, 0)]
    assert b"s=-\r\n" in desc.to_bytes() and b"t=0 0\r\n" in desc.to_bytes()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20", 20),
        ("20.0", 20),
        ("0", None),
        ("abc", None),
        ("-20", None),
        ("99999999", None),
        (" 20\t", 20),
        # found by bench/fuzz.py: control characters around the number raised ValueError
        ("\x1f20", None),
        ("20\x1d", None),
    ],
)
def test_ptime_values(value: str, expected: int | None) -> None:
    media = MediaDescription("audio", 1, "RTP/AVP", ["0"], attributes=[Attribute("ptime", value)])
    assert media.ptime == expected


@pytest.mark.parametrize(
    "value",
    ["", "x PCMU/8000", "200 PCMU/8000", "0 PCMU", "0 PCMU/0", "0 PCMU/abc", "0 a b/8000"],
)
def test_malformed_rtpmaps_are_ignored_not_fatal(value: str) -> None:
    media = MediaDescription("audio", 1, "RTP/AVP", ["96"], attributes=[Attribute("rtpmap", value)])
    assert media.rtpmaps == {}
    assert media.rtpmap(96) is None


def test_payload_rtpmaps_resolves_explicit_static_and_skips_unknown() -> None:
    audio = parse_sdp(BASIC).media[0]
    assert audio.payload_rtpmaps() == {
        0: RtpMap(0, "PCMU", 8000),
        8: RtpMap(8, "PCMA", 8000),
        97: RtpMap(97, "iLBC", 8000),
        101: RtpMap(101, "telephone-event", 8000),
    }
    media = MediaDescription("audio", 1, "RTP/AVP", ["96", "0", "96"])
    assert list(media.payload_rtpmaps()) == [0]


def test_rtpmap_channels() -> None:
    assert RtpMap.parse("96 opus/48000/2") == RtpMap(96, "opus", 48000, "2")
    assert RtpMap(96, "opus", 48000, "2").channels == 2
    assert RtpMap(0, "PCMU", 8000).channels == 1


def test_rtcp_port_only() -> None:
    assert RtcpAttribute.parse("5001") == RtcpAttribute(5001)
    assert RtcpAttribute.parse("99999") is None
    assert RtcpAttribute.parse("5001 IN") is None


def test_multicast_connection_ttl_and_count() -> None:
    desc = parse_sdp(
        sdp(
            "v=0\no=- 1 1 IN IP4 h\ns=-\nc=IN IP4 224.2.36.42/127/3\nt=0 0\n"
            "m=audio 1 RTP/AVP 0\nc=IN IP6 ff15::101/3\n"
        )
    )
    assert desc.connection == Connection("224.2.36.42", "IP4", ttl=127, count=3)
    assert desc.media[0].connections == [Connection("ff15::101", "IP6", count=3)]
    assert parse_sdp(desc.to_bytes()) == desc


def test_unspecified_connection() -> None:
    assert Connection("0.0.0.0").is_unspecified
    assert Connection("::", "IP6").is_unspecified
    assert not Connection("192.0.2.1").is_unspecified


def test_direction_algebra() -> None:
    assert Direction.SENDONLY.reversed() is Direction.RECVONLY
    assert Direction.INACTIVE.reversed() is Direction.INACTIVE
    assert Direction.SENDRECV.reversed() is Direction.SENDRECV
    assert Direction.SENDRECV & Direction.SENDONLY is Direction.SENDONLY
    assert Direction.SENDONLY & Direction.RECVONLY is Direction.INACTIVE
    assert Direction.from_flags(False, True) is Direction.RECVONLY


# -- line ends, unknown lines, round trips --------------------------------------------


def test_bare_lf_and_crlf_give_the_same_description() -> None:
    assert parse_sdp(BASIC.replace(b"\r\n", b"\n")) == parse_sdp(BASIC)


def test_unknown_line_types_are_preserved_in_place() -> None:
    body = sdp(
        "v=0\no=- 1 1 IN IP4 h\ns=-\ny=session extra\nc=IN IP4 h\nt=0 0\n"
        "m=audio 1 RTP/AVP 0\nx=media extra\na=sendrecv\n"
    )
    desc = parse_sdp(body)
    assert desc.extra_lines == [("y", "session extra")]
    assert desc.media[0].extra_lines == [("x", "media extra")]
    out = desc.to_bytes()
    assert b"y=session extra\r\n" in out and b"x=media extra\r\n" in out
    assert out.index(b"x=media extra") > out.index(b"m=audio")
    assert parse_sdp(out) == desc


def test_serialization_is_exact_and_in_rfc_order() -> None:
    desc = SessionDescription(
        origin=Origin("-", 42, 7, "2001:db8::1", addrtype="IP6"),
        session_name="-",
        connection=Connection("2001:db8::1", "IP6"),
        bandwidths=[Bandwidth("AS", 64)],
        timings=[Timing(0, 0, ("7d 1h 0 25h",))],
        media=[
            MediaDescription(
                "audio",
                5004,
                "RTP/AVP",
                ["0", "101"],
                attributes=[Attribute("rtpmap", "101 telephone-event/8000"), Attribute("sendrecv")],
            )
        ],
    )
    assert desc.to_bytes() == sdp(
        """v=0
o=- 42 7 IN IP6 2001:db8::1
s=-
c=IN IP6 2001:db8::1
b=AS:64
t=0 0
r=7d 1h 0 25h
m=audio 5004 RTP/AVP 0 101
a=rtpmap:101 telephone-event/8000
a=sendrecv
"""
    )


def test_basic_round_trip_keeps_meaning() -> None:
    desc = parse_sdp(BASIC)
    again = parse_sdp(desc.to_bytes())
    assert again == desc
    assert again.to_bytes() == desc.to_bytes() == BASIC


@pytest.mark.parametrize("bad", ["x\r\na=b", "x\ny", "nul\x00"])
def test_writing_refuses_line_injection(bad: str) -> None:
    desc = parse_sdp(BASIC)
    desc.session_name = bad
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        desc.to_bytes()


# -- malformed input ----------------------------------------------------------------


VALID_HEAD = "v=0\no=- 1 1 IN IP4 192.0.2.1\ns=-\nc=IN IP4 192.0.2.1\nt=0 0\n"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "empty SDP body"),
        ("\r\n\r\n", "empty SDP body"),
        ("o=- 1 1 IN IP4 h\ns=-\n", "must start with v=0"),
        ("v=1\no=- 1 1 IN IP4 h\n", "unsupported SDP version"),
        ("v=0\ns=-\nc=IN IP4 h\nt=0 0\n", "missing o= line"),
        ("v=0\nv=0\no=- 1 1 IN IP4 h\n", "second v= line"),
        ("v=0\no=- 1 1 IN IP4 h\no=- 1 1 IN IP4 h\n", "second o= line"),
        ("v=0\no=- 1 IN IP4 h\n", "o= needs 6 fields"),
        ("v=0\no=- x 1 IN IP4 h\n", "session id is not a number"),
        ("v=0\no=- 1 1 IN IP4 h\nc=IN IP4\n", "c= needs 3 fields"),
        ("v=0\no=- 1 1 IN IP4 h\nc=IN IP4 224.1.1.1/300\n", "c= TTL 300 is over 255"),
        ("v=0\no=- 1 1 IN IP4 h\nc=IN IP4 224.1.1.1/1/2/3\n", "bad c= address suffix"),
        ("v=0\no=- 1 1 IN IP4 h\nt=now 0\n", "t= start is not a number"),
        ("v=0\no=- 1 1 IN IP4 h\nb=AS\n", "b= needs"),
        ("v=0\no=- 1 1 IN IP4 h\nr=1d 1h 0\n", "r= before any t="),
        (VALID_HEAD + "m=audio 70000 RTP/AVP 0\n", "m= port 70000 is over 65535"),
        (VALID_HEAD + "m=audio abc RTP/AVP 0\n", "m= port is not a number"),
        (VALID_HEAD + "m=audio -1 RTP/AVP 0\n", "m= port is not a number"),
        (VALID_HEAD + "m=audio 49170/0 RTP/AVP 0\n", "port count is 0"),
        (VALID_HEAD + "m=audio 49170 RTP/AVP PCMU\n", "RTP payload type is not a number"),
        (VALID_HEAD + "m=audio 49170 RTP/AVP 0 128\n", "RTP payload type 128 is over 127"),
        (VALID_HEAD + "m=audio 49170 RTP/AVP\n", "lists no formats"),
        (VALID_HEAD + "m=audio 49170\n", "m= needs"),
        (VALID_HEAD + "m=audio 1 RTP/AVP 0\no=- 1 1 IN IP4 h\n", "not allowed inside an m="),
        (VALID_HEAD + "m=audio 1 RTP/AVP 0\nt=0 0\n", "not allowed inside an m="),
        (VALID_HEAD + "m =video 3227 RTP/AVP 31\n", "expected '<letter>=<value>'"),
        (VALID_HEAD + "a=\n", "attribute name is not a token"),
        (VALID_HEAD + "a=bad name\n", "attribute name is not a token"),
        (VALID_HEAD + "garbage\n", "expected '<letter>=<value>'"),
        (VALID_HEAD + "1=2\n", "expected '<letter>=<value>'"),
        (VALID_HEAD + "a=x\ry\n", "bare CR"),
        (
            "v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=audio 1 RTP/AVP 0\n",
            "has no c= line and the session has none",
        ),
    ],
)
def test_malformed_sdp_is_rejected_with_a_reason(body: str, reason: str) -> None:
    with pytest.raises(SdpParseError) as info:
        parse_sdp(body.encode())
    assert reason in info.value.reason
    assert isinstance(info.value, ValueError)


def test_disabled_stream_needs_no_connection() -> None:
    desc = parse_sdp(sdp("v=0\no=- 1 1 IN IP4 h\ns=-\nt=0 0\nm=video 0 RTP/AVP 31\n"))
    assert desc.media[0].port == 0


def test_gigantic_input_is_refused_before_decoding() -> None:
    huge = sdp(VALID_HEAD) + b"a=x:" + b"y" * (MAX_SDP_SIZE + 1) + b"\r\n"
    with pytest.raises(SdpParseError, match="over the 65536-byte limit"):
        parse_sdp(huge)


def test_too_many_lines_are_refused() -> None:
    body = sdp(VALID_HEAD) + b"a=x\n" * MAX_SDP_LINES
    with pytest.raises(SdpParseError, match="more than 1000 lines"):
        parse_sdp(body)
    # just under the limit still parses: the bound is on lines, not a guess
    ok = sdp(VALID_HEAD) + b"a=x\n" * (MAX_SDP_LINES - 10)
    assert len(parse_sdp(ok).attributes) == MAX_SDP_LINES - 10


def test_nul_byte_is_refused() -> None:
    with pytest.raises(SdpParseError, match="NUL"):
        parse_sdp(sdp(VALID_HEAD) + b"a=x\x00\r\n")


def test_non_utf8_text_survives_a_round_trip() -> None:
    body = sdp(VALID_HEAD).replace(b"s=-", b"s=caf\xe9")  # Latin-1 from an old peer
    desc = parse_sdp(body)
    assert desc.to_bytes() == body


def test_every_prefix_parses_or_raises_sdp_parse_error() -> None:
    # GUIDE rule 9: feed the parser cut at every byte; no other exception may escape.
    for cut in range(len(BASIC) + 1):
        with contextlib.suppress(SdpParseError):
            parse_sdp(BASIC[:cut])


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(SdpParseError):
        parse_sdp(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(BASIC.split(b"\r\n")), max_size=30))
def test_shuffled_valid_lines_never_crash(lines: list[bytes]) -> None:
    with contextlib.suppress(SdpParseError):
        parse_sdp(b"v=0\r\n" + b"\r\n".join(lines))


# -- hypothesis round trip ----------------------------------------------------------

_TOKEN_CHARS = "!#$%&'*+-.0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ^_`abcdefghijklmnopqrstuvwxyz{|}~"
tokens = st.text(_TOKEN_CHARS, min_size=1, max_size=12)
# Text values: anything but CR, LF, NUL and surrogates (which UTF-8 cannot carry).
texts = st.text(st.characters(codec="utf-8", exclude_characters="\r\n\x00"), max_size=30)
numbers = st.integers(min_value=0, max_value=2**64)
addresses = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str), st.just("host.example.com")
)


@st.composite
def connections(draw: st.DrawFn) -> Connection:
    address = draw(addresses)
    addrtype = "IP6" if ":" in address else "IP4"
    ttl = draw(st.none() | st.integers(0, 255)) if addrtype == "IP4" else None
    count = draw(st.none() | st.integers(1, 16)) if addrtype == "IP6" or ttl is not None else None
    return Connection(address, addrtype, "IN", ttl, count)


attributes = st.builds(
    Attribute,
    tokens.filter(lambda name: ":" not in name),
    st.none() | texts,
)


@st.composite
def media_descriptions(draw: st.DrawFn) -> MediaDescription:
    rtp = draw(st.booleans())
    proto = draw(st.sampled_from(["RTP/AVP", "RTP/SAVP"])) if rtp else draw(tokens)
    formats = draw(
        st.lists(st.integers(0, 127).map(str) if rtp else tokens, min_size=1, max_size=6)
    )
    return MediaDescription(
        media=draw(st.sampled_from(["audio", "video", "application", "text"])),
        port=draw(st.integers(1, 65535)),
        proto=proto,
        formats=formats,
        port_count=draw(st.none() | st.integers(1, 4)),
        information=draw(st.none() | texts),
        connections=draw(st.lists(connections(), min_size=1, max_size=2)),
        bandwidths=draw(st.lists(st.builds(Bandwidth, tokens, numbers), max_size=2)),
        key=draw(st.none() | texts),
        attributes=draw(st.lists(attributes, max_size=6)),
        extra_lines=draw(st.lists(st.tuples(st.sampled_from("xyw"), texts), max_size=2)),
    )


@st.composite
def descriptions(draw: st.DrawFn) -> SessionDescription:
    address = draw(addresses)
    return SessionDescription(
        origin=Origin(
            draw(tokens),
            draw(numbers),
            draw(numbers),
            address,
            "IN",
            "IP6" if ":" in address else "IP4",
        ),
        session_name=draw(texts),
        connection=draw(st.none() | connections()),
        timings=draw(
            st.lists(
                st.builds(Timing, numbers, numbers, st.lists(texts, max_size=2).map(tuple)),
                min_size=1,
                max_size=2,
            )
        ),
        media=draw(st.lists(media_descriptions(), max_size=4)),
        attributes=draw(st.lists(attributes, max_size=5)),
        bandwidths=draw(st.lists(st.builds(Bandwidth, tokens, numbers), max_size=2)),
        information=draw(st.none() | texts),
        uri=draw(st.none() | texts),
        emails=draw(st.lists(texts, max_size=2)),
        phones=draw(st.lists(texts, max_size=2)),
        time_zones=draw(st.none() | texts),
        key=draw(st.none() | texts),
        extra_lines=draw(st.lists(st.tuples(st.sampled_from("xyw"), texts), max_size=2)),
    )


@settings(max_examples=120, deadline=None)
@given(descriptions())
def test_generated_descriptions_round_trip(desc: SessionDescription) -> None:
    wire = desc.to_bytes()
    again = parse_sdp(wire, max_size=10**6)
    assert again == desc
    assert again.to_bytes() == wire
