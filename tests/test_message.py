"""parse_message / Request / Response / make_response."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sipstack.errors import SipParseError
from sipstack.headers import CSeq, Headers
from sipstack.message import Request, Response, make_response, parse_message, reason_phrase
from sipstack.uri import URI, parse_uri

CORPUS = Path(__file__).parent / "data" / "corpus"

INVITE = (
    b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.1:5062;branch=z9hG4bKnashds8;received=192.0.2.1\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Bob" <sip:bob@biloxi.example.com>\r\n'
    b'From: "Alice \xc3\x89" <sip:alice@atlanta.example.com>;tag=1928301774\r\n'
    b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n"
    b"CSeq: 314159 INVITE\r\n"
    b"Contact: <sip:alice@pc33.atlanta.example.com>\r\n"
    b"X-Unknown: keep  me   verbatim\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: 4\r\n"
    b"\r\n"
    b"v=0\n"
)


def test_parse_request() -> None:
    msg = parse_message(INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.uri == parse_uri("sip:bob@biloxi.example.com")
    assert msg.body == b"v=0\n"
    assert msg.top_via.branch == "z9hG4bK776asdhds"
    assert msg.top_via.sent_by == ("pc33.atlanta.example.com", None)
    assert [v.received for v in msg.vias] == [None, "192.0.2.1"]
    assert msg.from_.display_name == "Alice É"
    assert msg.from_.tag == "1928301774"
    assert msg.to.tag is None
    assert msg.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert msg.cseq == CSeq(314159, "INVITE")
    assert msg.max_forwards == 70
    assert msg.content_length == 4
    assert msg.content_type == "application/sdp"
    assert [str(c.uri) for c in msg.contacts] == ["sip:alice@pc33.atlanta.example.com"]
    assert not msg.contact_star
    assert msg.headers.get("x-unknown") == "keep  me   verbatim"
    assert msg.expires is None and msg.routes == [] and msg.allow == []


def test_parse_response_compact_forms_and_reason() -> None:
    data = (
        "SIP/2.0 180 Ça sonne\r\n"
        "v: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n"
        "f: <sip:a@example.com>;tag=1\r\n"
        "t: <sip:b@example.com>;tag=2\r\n"
        "i: x@y\r\n"
        "CSEQ: 1 INVITE\r\n"
        "m: <sip:b@10.0.0.2>\r\n"
        "k: 100rel, timer\r\n"
        "l: 0\r\n\r\n"
    ).encode()
    msg = parse_message(data)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (180, "Ça sonne")
    assert [n for n, _ in msg.headers] == [
        "Via", "From", "To", "Call-ID", "CSeq", "Contact", "Supported", "Content-Length"
    ]  # fmt: skip
    assert msg.supported == ["100rel", "timer"]
    assert msg.to.tag == "2"


def test_content_length_rules() -> None:
    base = INVITE.replace(b"Content-Length: 4\r\n", b"")
    # Missing on a datagram: the rest of the datagram.
    assert parse_message(base + b"extra").body == b"v=0\nextra"
    # Shorter: the rest is ignored (RFC 3261 18.3).
    assert parse_message(INVITE.replace(b"Length: 4", b"Length: 2")).body == b"v="
    # Longer: the message is truncated, reject.
    with pytest.raises(SipParseError) as info:
        parse_message(INVITE.replace(b"Length: 4", b"Length: 5"))
    assert info.value.status == 400
    for bad in (b"-1", b"x", b"4294967296", b"1 2"):
        with pytest.raises(SipParseError):
            parse_message(INVITE.replace(b"Length: 4", b"Length: " + bad))


def test_body_kept_as_bytes_with_binary() -> None:
    body = bytes(range(256))
    data = INVITE.replace(b"Content-Length: 4", b"Content-Length: 256").replace(b"v=0\n", body)
    assert parse_message(data).body == body


def test_utf8_and_invalid_bytes_survive() -> None:
    data = INVITE.replace(b"keep  me   verbatim", b"caf\xc3\xa9 \xff\xfe raw")
    msg = parse_message(data)
    assert msg.headers.get("X-Unknown") == "café \udcff\udcfe raw"
    assert b"X-Unknown: caf\xc3\xa9 \xff\xfe raw\r\n" in msg.to_bytes()


@pytest.mark.parametrize(
    ("mutate", "status"),
    [
        (lambda d: d.replace(b"X-Unknown: keep", b"X-Unknown: ke\x00ep"), 400),
        (lambda d: d.replace(b"X-Unknown: keep", b"X-Unknown: ke\rep"), 400),
        (lambda d: d.replace(b"X-Unknown: keep", b"X-Unknown: ke\nep"), 400),
        (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: 256"), 400),
        (lambda d: d.replace(b"CSeq: 314159 INVITE", b"CSeq: 314159 BYE"), 400),
        (lambda d: d.replace(b"SIP/2.0\r\n", b"SIP/3.0\r\n", 1), 505),
        (lambda d: d.replace(b"Call-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n", b""), 400),
        (lambda d: d.replace(b"X-Unknown", b"X Unknown"), 400),
        (lambda d: d.replace(b"X-Unknown: keep", b"X-Unknown keep"), 400),
        (lambda d: d.replace(b"\r\n\r\n", b"\r\n"), 400),
        (lambda d: d.replace(b"To:", b"To: a\r\nTo:"), 400),
        # identical one-character duplicates (interned strings) are still duplicates
        (lambda d: d.replace(b"Max-Forwards: 70", b"Max-Forwards: 5\r\nMax-Forwards: 5"), 400),
        (lambda d: d.replace(b"Content-Length: 4", b"l: 4\r\nContent-Length: 4"), 400),
        (lambda d: d.replace(b"INVITE sip:", b"INVITE  sip:"), 400),
        (lambda d: b"SIP/2.0 99 Nope\r\n" + d.split(b"\r\n", 1)[1], None),
        (lambda d: b"SIP/2.0 200 OK\r\n" + d.split(b"\r\n", 1)[1].replace(b"Via", b"Vxa"), None),
    ],
)
def test_rejections_and_status(mutate: object, status: int | None) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(mutate(INVITE))  # type: ignore[operator]
    assert info.value.status == status


def test_limits() -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(INVITE + b"x" * 70000)
    assert info.value.status == 513
    assert parse_message(INVITE + b"x" * 70000, max_size=80000).body == b"v=0\n"
    many = INVITE.replace(b"X-Unknown", b"X-A: 1\r\n" * 300 + b"X-Unknown")
    with pytest.raises(SipParseError, match="more than 256"):
        parse_message(many, max_size=1 << 20)
    long_line = INVITE.replace(b"keep  me", b"k" * 9000)
    with pytest.raises(SipParseError, match="longer than"):
        parse_message(long_line)
    assert (
        parse_message(long_line, max_line=10000)
        .headers.get(
            "X-Unknown",
        )
        .startswith("kkk")
    )


_N = 20_000  # ~0.2 MB of repeated items (linear, a few us each); separator runs are 1 MB
HOSTILE = {
    "commas": (b"Via", b"a" + b"," * 1_000_000),
    "semicolons": (b"Contact", b"<sip:a@b>" + b";" * 1_000_000),
    "via params": (b"Via", b"SIP/2.0/UDP h" + b";a=b" * _N + b";"),
    "via list": (b"Via", b"SIP/2.0/UDP h, " * _N + b","),
    "contact list": (b"Contact", b"<sip:a@b>, " * _N + b","),
    "uri params": (b"Route", b"<sip:h" + b";lr" * _N + b";>"),
    "from params": (b"From", b"<sip:a@b>" + b";x" * _N + b";"),
    "display tokens": (b"From", b"a " * _N + b"<"),
    "open quote": (b"To", b'"' + b"a," * _N),
    "allow": (b"Allow", b"A, " * _N + b","),
    "auth": (b"Authorization", b"Digest " + b'a="b", ' * _N + b","),
    "user escapes": (b"To", b"<sip:" + b"%41" * _N + b"%4@b>"),
    "unknown": (b"X-Junk", b",;" * 500_000),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_repetition_is_cheap(name: str) -> None:
    # About 1 MB of separators or repeated items that match a long way and then
    # fail. The default limits refuse it by size at once; with the limits
    # lifted the grammar itself must refuse it in linear time. The 1 s bound
    # only catches quadratic or exponential blow-up.
    header, value = HOSTILE[name]
    data = INVITE.replace(b"X-Unknown: keep  me   verbatim", header + b": " + value)
    with pytest.raises(SipParseError):
        parse_message(data)
    start = time.process_time()
    try:
        parse_message(data, max_size=4 << 20, max_line=4 << 20)
        accepted = True
    except SipParseError:
        accepted = False
    assert time.process_time() - start < 1.0
    assert accepted == (name == "unknown")


def test_failing_lists_cost_linear_time() -> None:
    # A long valid-looking Contact list that fails at its end makes the regex
    # engine back up through every item: that must stay linear (4x the items,
    # about 4x the time; quadratic would be 16x).
    def cost(n: int) -> float:
        data = INVITE.replace(
            b"X-Unknown: keep  me   verbatim", b"Contact: " + b"<sip:a@b>, " * n + b","
        )
        best = float("inf")
        for _ in range(5):
            start = time.process_time()
            with pytest.raises(SipParseError):
                parse_message(data, max_size=4 << 20, max_line=4 << 20)
            best = min(best, time.process_time() - start)
        return best

    # quadratic would be 16x; 11x leaves room for a busy machine's noise
    assert cost(20_000) < 11 * cost(5_000)


def test_serialize_roundtrip_and_content_length() -> None:
    msg = parse_message(INVITE)
    out = msg.to_bytes()
    assert out.startswith(b"INVITE sip:bob@biloxi.example.com SIP/2.0\r\nVia: SIP/2.0/UDP pc33")
    assert out.endswith(b"Content-Length: 4\r\n\r\nv=0\n")
    assert parse_message(out) == msg
    msg.body = b"longer body"
    assert parse_message(msg.to_bytes()).body == b"longer body"
    assert bytes(msg) == msg.to_bytes()


def test_build_request_and_response() -> None:
    req = Request(
        "OPTIONS",
        URI(host="pbx.example.com"),
        Headers(
            [
                ("Via", "SIP/2.0/UDP 192.168.1.50:5060;branch=z9hG4bKabc;rport"),
                ("Max-Forwards", "70"),
                ("From", "<sip:200@pbx.example.com>;tag=a1"),
                ("To", "<sip:pbx.example.com>"),
                ("Call-ID", "c1@192.168.1.50"),
                ("CSeq", "7 OPTIONS"),
                ("Timestamp", "54.2"),
            ]
        ),
    )
    wire = req.to_bytes()
    assert wire.startswith(b"OPTIONS sip:pbx.example.com SIP/2.0\r\n")
    assert wire.endswith(b"Content-Length: 0\r\n\r\n")
    assert parse_message(wire) == req

    resp = make_response(req, 200, to_tag="xyz")
    assert (resp.status, resp.reason) == (200, "OK")
    assert resp.to.tag == "xyz"
    assert resp.headers.get("Timestamp") is None
    assert [n for n, _ in resp.headers] == ["Via", "From", "To", "Call-ID", "CSeq"]
    assert parse_message(resp.to_bytes()) == resp
    trying = make_response(req, 100)
    assert trying.reason == "Trying" and trying.headers.get("Timestamp") == "54.2"
    assert trying.to.tag is None
    # A To that already has a tag keeps it.
    req.headers.set("To", "<sip:pbx.example.com>;tag=old")
    assert make_response(req, 486, to_tag="new").to.tag == "old"
    assert make_response(req, 486, "Not Now").reason == "Not Now"
    assert reason_phrase(499) == "Client Error" and Response(603).reason == "Decline"


def test_typed_accessors_follow_header_changes() -> None:
    msg = parse_message(INVITE)
    assert msg.top_via.branch == "z9hG4bK776asdhds"
    msg.headers.prepend("Via", "SIP/2.0/TCP proxy.example.com;branch=z9hG4bKnew")
    assert msg.top_via.branch == "z9hG4bKnew"
    assert len(msg.vias) == 3
    msg.headers.set("Expires", "3600")
    assert msg.expires == 3600
    msg.headers.set("Contact", "*")
    assert msg.contact_star and msg.contacts == []
    copy = msg.copy()
    copy.headers.remove("Via")
    assert len(msg.vias) == 3
    assert copy.uri == msg.uri
    msg.uri = parse_uri("sip:carol@chicago.example.com")
    assert msg.to_bytes().startswith(b"INVITE sip:carol@chicago.example.com SIP/2.0")


def test_auth_accessors_use_auth_header_module() -> None:
    data = (CORPUS / "02-401-challenge.sip").read_bytes()
    msg = parse_message(data)
    (challenge,) = msg.www_authenticate
    assert challenge.scheme.lower() == "digest"
    assert challenge.params["realm"] == "asterisk"
    reg = parse_message((CORPUS / "01-register-auth.sip").read_bytes())
    (cred,) = reg.authorization
    assert cred.params["username"] == "200"
    assert reg.proxy_authorization == [] and reg.proxy_authenticate == []


def test_other_accessors_on_corpus() -> None:
    notify = parse_message((CORPUS / "10-notify-pidf.sip").read_bytes())
    assert notify.event == "presence"
    assert notify.subscription_state == "active;expires=598"
    assert notify.server == "kamailio (5.7.4 (x86_64/linux))"
    assert notify.body.startswith(b"<?xml")
    ok = parse_message((CORPUS / "06-200-invite-sdp.sip").read_bytes())
    assert ok.require == ["timer"]
    assert [str(r.uri) for r in ok.record_routes] == [
        "sip:192.168.1.10;lr;ftag=3c9d2e1f0a8b7c6d;did=2a1.b3c4"
    ]
    assert "INVITE" in ok.allow
    reg = parse_message((CORPUS / "01-register-auth.sip").read_bytes())
    assert reg.expires == 3600 and reg.user_agent == "baresip v3.10.1 (arm64/linux)"
    assert reg.contacts[0].params["expires"] == "3600"
    ack = parse_message((CORPUS / "07-ack.sip").read_bytes())
    assert [r.uri.params.get("lr", "absent") for r in ack.routes] == [None]
    busy = parse_message(b"SIP/2.0 503 Busy\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
                         b"From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: 1\r\nCSeq: 1 BYE\r\n"
                         b"Retry-After: 120 (maintenance);duration=60\r\nMin-Expires: 60\r\n"
                         b"Unsupported: foo\r\nSIP-ETag: e1\r\nSIP-If-Match: e0\r\n"
                         b"\r\n")  # fmt: skip
    assert (busy.retry_after, busy.min_expires, busy.unsupported) == (120, 60, ["foo"])
    assert (busy.sip_etag, busy.sip_if_match) == ("e1", "e0")


def test_feed_corpus_whole_and_with_trailing_bytes() -> None:
    for path in sorted(CORPUS.glob("*.sip")):
        data = path.read_bytes()
        msg = parse_message(data)
        assert parse_message(data + b"trailing garbage after the body") == msg
        assert parse_message(msg.to_bytes()) == msg


# -- property: generated messages round-trip -------------------------------------------

_token = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,12}", fullmatch=True)
_user = st.from_regex(r"[A-Za-z0-9\-_.!~*'()&=+$,]{1,12}", fullmatch=True)
_host = st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,10}){0,2}", fullmatch=True)
_text = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\u2028\u2029\x85"),
    max_size=30,
).map(str.strip)


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    method = draw(st.sampled_from(["INVITE", "REGISTER", "BYE", "OPTIONS", "MESSAGE", "X-CUSTOM"]))
    headers = Headers()
    for _ in range(draw(st.integers(1, 3))):
        port = draw(st.one_of(st.none(), st.integers(1, 65535)))
        sent_by = draw(_host) + ("" if port is None else f":{port}")
        headers.add(
            "Via",
            f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} {sent_by}"
            f";branch=z9hG4bK{draw(_token)}",
        )
    display = draw(
        st.one_of(
            st.none(), st.just("Alice"), _text.filter(lambda t: '"' not in t and "\\" not in t)
        )
    )
    name = "" if display is None else f'"{display}" '
    headers.add("From", f"{name}<sip:{draw(_user)}@{draw(_host)}>;tag={draw(_token)}")
    headers.add("To", f"<sip:{draw(_user)}@{draw(_host)}>")
    headers.add("Call-ID", draw(_token) + "@" + draw(_host))
    headers.add("CSeq", f"{draw(st.integers(0, 2**32 - 1))} {method}")
    headers.add("Max-Forwards", str(draw(st.integers(0, 255))))
    for _ in range(draw(st.integers(0, 3))):
        headers.add("X-" + draw(_token), draw(_text))
    body = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        return Request(method, URI(user=draw(_user), host=draw(_host)), headers, body)
    status = draw(st.integers(100, 699))
    return Response(status, draw(_text), headers, body)


@settings(max_examples=100)
@given(messages())
def test_roundtrip_property(msg: Request | Response) -> None:
    again = parse_message(msg.to_bytes())
    assert again == msg
    assert again.to_bytes() == msg.to_bytes()
    assert again.cseq == msg.cseq and again.from_.tag == msg.from_.tag


def test_response_to_intmeth_copies_quoted_pair_nul() -> None:
    # Found by bench/fuzz.py: the UA's 501 to RFC 4475 3.1.1.3 intmeth raised
    # ValueError in make_response (its To display name holds a quoted-pair NUL).
    raw = (Path(__file__).parent / "data" / "rfc4475" / "intmeth.dat").read_bytes()
    request = parse_message(raw)
    assert isinstance(request, Request)
    response = make_response(request, 501)
    again = parse_message(response.to_bytes())
    assert isinstance(again, Response)
    assert again.status == 501
    assert again.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    # ... and so does a To re-serialized with a tag added (the UA's path):
    # the controls go back out as quoted-pairs (RFC 3261 25.1).
    to = request.to
    to.params["tag"] = "t1"
    response.headers.set("To", str(to))
    again = parse_message(response.to_bytes())
    assert isinstance(again, Response)
    assert again.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert again.to.tag == "t1"
