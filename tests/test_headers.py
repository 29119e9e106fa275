"""Header values (NameAddr, Via, CSeq) and the Headers multi-map."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipstack.errors import SipParseError
from sipstack.headers import CSeq, Headers, NameAddr, Via, canonical_name, split_list
from sipstack.uri import URI, parse_uri

# -- NameAddr ------------------------------------------------------------------------


def test_name_addr_forms() -> None:
    a = NameAddr.parse('"Front Door" <sip:200@pbx.example.com>;tag=3c9d;+sip.instance="<urn:x>"')
    assert a.display_name == "Front Door"
    assert a.uri == parse_uri("sip:200@pbx.example.com")
    assert a.params == {"tag": "3c9d", "+sip.instance": '"<urn:x>"'}
    assert a.tag == "3c9d"
    b = NameAddr.parse("sip:+19725552222@gw1.example.net;unknownparam")  # RFC 4475 3.3.12
    assert b.display_name is None
    assert b.uri.params == {}
    assert b.params == {"unknownparam": None}
    c = NameAddr.parse("<sip:+19725552222@gw1.example.net;unknownparam>")  # 3.3.13
    assert c.uri.params == {"unknownparam": None} and c.params == {}
    d = NameAddr.parse("caller<sip:caller@example.com>;tag=323")  # 3.1.1.6
    assert (d.display_name, d.tag) == ("caller", "323")
    e = NameAddr.parse("  Joe   Q.  User <sip:joe@example.com> ; TAG = x ")
    assert e.display_name == "Joe Q. User"
    assert e.params == {"tag": "x"}


def test_name_addr_quoted_escapes_and_utf8() -> None:
    a = NameAddr.parse(r'"J Rosenberg \\\"" <sip:jdrosen@example.com>')
    assert a.display_name == 'J Rosenberg \\"'
    assert NameAddr.parse(str(a)) == a
    b = NameAddr.parse('"Порта" <sip:door@example.com>')
    assert b.display_name == "Порта"
    assert str(b) == '"Порта" <sip:door@example.com>'


def test_name_addr_other_schemes() -> None:
    assert NameAddr.parse("isbn:2983792873").uri.scheme == "isbn"
    assert NameAddr.parse("<http://www.example.com>;tag=3234233").uri.opaque == "//www.example.com"
    assert NameAddr.parse("<tel:+1-555-0100>").uri.user == "+1-555-0100"


@pytest.mark.parametrize(
    "value",
    [
        "",
        '"Mr. J. User <sip:j.user@example.com>',  # 4475 quotbal
        '"Watson, Thomas" < sip:t.watson@example.org >',  # 4475 badaspec
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # 4475 baddn
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # 4475 regbadct
        '"Joe" <sip:joe@example.org>;;;;',  # 4475 badinv01
        "<sip:joe@example.org",
        "<sip:joe@example.org>;tag",
        "<sip:joe@example.org>;tag=a b",
        "<sip:joe@example.org> junk",
    ],
)
def test_name_addr_malformed(value: str) -> None:
    if value == "<sip:joe@example.org>;tag":
        assert NameAddr.parse(value).params == {"tag": None}  # a valueless param is fine
        return
    with pytest.raises(SipParseError):
        NameAddr.parse(value)


def test_name_addr_list_splits_outside_quotes_and_brackets() -> None:
    items = NameAddr.parse_list(
        '"Doe, John" <sip:a@b.example>;q=0.5, <sip:c,d@d.example;x=1>, sip:e@f.example'
    )
    assert [str(i.uri) for i in items] == [
        "sip:a@b.example",
        "sip:c,d@d.example;x=1",
        "sip:e@f.example",
    ]
    assert items[0].display_name == "Doe, John"
    assert items[0].params == {"q": "0.5"}


def test_name_addr_with_tag_and_str() -> None:
    a = NameAddr(URI(user="bob", host="biloxi.example.com"), "Bob")
    assert str(a) == '"Bob" <sip:bob@biloxi.example.com>'
    tagged = a.with_tag("abc")
    assert str(tagged) == '"Bob" <sip:bob@biloxi.example.com>;tag=abc'
    assert a.tag is None and tagged.tag == "abc"


# -- Via -----------------------------------------------------------------------------


def test_via() -> None:
    v = Via.parse("SIP/2.0/UDP 192.168.1.50:5060;rport;branch=z9hG4bK776asdhds;received=10.0.0.1")
    assert (v.protocol, v.transport, v.host, v.port) == ("SIP/2.0", "UDP", "192.168.1.50", 5060)
    assert v.branch == "z9hG4bK776asdhds"
    assert v.received == "10.0.0.1"
    assert v.rport is None and v.rport_requested
    assert v.sent_by == ("192.168.1.50", 5060)
    filled = Via.parse("SIP/2.0/TCP host.example.com;rport=40123;branch=z9hG4bKx")
    assert filled.rport == 40123 and not filled.rport_requested
    assert filled.port is None


def test_via_folded_whitespace_and_ipv6() -> None:
    v = Via.parse("SIP  /   2.0  /UDP     192.0.2.2;branch=390skdjuw")  # RFC 4475 wsinv, unfolded
    assert (v.protocol, v.transport, v.host, v.branch) == (
        "SIP/2.0",
        "UDP",
        "192.0.2.2",
        "390skdjuw",
    )
    v6 = Via.parse("SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];branch=z9hG4bKas3")
    assert (v6.host, v6.port, v6.received) == ("2001:db8::9:1", 6050, "2001:db8::9:255")
    bare = Via.parse("SIP/2.0/UDP [2001:db8::9:1];received=2001:db8::9:255;branch=z9hG4bKas3")
    assert bare.received == "2001:db8::9:255"  # RFC 5118 4.5
    assert (
        str(v6) == "SIP/2.0/UDP [2001:db8::9:1]:6050;received=[2001:db8::9:255];branch=z9hG4bKas3"
    )


def test_via_list_and_malformed() -> None:
    vias = Via.parse_list(
        "SIP/2.0/TCP a.example.com;branch=z9hG4bK1 , SIP/2.0/UDP b.example.com:5062"
    )
    assert [(v.host, v.port) for v in vias] == [("a.example.com", None), ("b.example.com", 5062)]
    bad_values = [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0 host",
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/2.0/UDP h;branch=a,b",
        "SIP/2.0/UDP host:70000",
        "SIP/2.0/UDP host;branch=",
    ]
    for bad in bad_values:
        with pytest.raises(SipParseError):
            Via.parse(bad)


# -- CSeq ----------------------------------------------------------------------------


def test_cseq() -> None:
    assert CSeq.parse("0009\t INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(4294967295, "BYE")) == "4294967295 BYE"
    for bad in ["", "1", "INVITE 1", "4294967296 INVITE", "-1 INVITE", "1 INV ITE"]:
        with pytest.raises(SipParseError):
            CSeq.parse(bad)


# -- Headers multi-map -----------------------------------------------------------------


def test_headers_canonical_and_case_insensitive() -> None:
    h = Headers([("v", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("i", "abc"), ("X-Custom", "1")])
    assert list(h) == [
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"),
        ("Call-ID", "abc"),
        ("X-Custom", "1"),
    ]
    assert h.get("VIA") == h.get("v") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert h.get("call-id") == "abc"
    assert h.get("x-custom") == "1"
    assert "x-CUSTOM" in h and "Route" not in h and 3 not in h
    assert len(h) == 3
    assert (
        canonical_name("cseq") == "CSeq"
        and canonical_name("www-authenticate") == "WWW-Authenticate"
    )
    assert canonical_name("New-Fangled") == "New-Fangled"


def test_headers_mutation_keeps_order() -> None:
    h = Headers([("Via", "1"), ("To", "t"), ("Via", "2"), ("From", "f")])
    h.prepend("Via", "0")
    assert h.get_all("Via") == ["0", "1", "2"]
    h.add("Contact", "<sip:a@b>")
    h.set("Via", "x")
    assert list(h) == [("Via", "x"), ("To", "t"), ("From", "f"), ("Contact", "<sip:a@b>")]
    h.set("Max-Forwards", "70")
    assert list(h)[-1] == ("Max-Forwards", "70")
    h.remove("to")
    h.remove("not-there")
    assert [n for n, _ in h] == ["Via", "From", "Contact", "Max-Forwards"]


def test_headers_get_all_splits_list_headers_only() -> None:
    h = Headers(
        [
            ("Allow", "INVITE, ACK"),
            ("Allow", "BYE"),
            ("Contact", '"Doe, J" <sip:a@b>, <sip:c@d>'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
        ]
    )
    assert h.get_all("allow") == ["INVITE", "ACK", "BYE"]
    assert h.get_all("m") == ['"Doe, J" <sip:a@b>', "<sip:c@d>"]
    assert h.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert h.get_all("Route") == []


def test_headers_reject_callers_misuse() -> None:
    h = Headers()
    with pytest.raises(ValueError):
        h.add("Bad Name", "x")
    with pytest.raises(ValueError):
        h.set("Subject", "line\r\nInjected: yes")
    with pytest.raises(ValueError):
        h.prepend("Subject", "nul\x00")
    with pytest.raises(ValueError):
        h.add("Subject", "lone\rCR")


def test_headers_accept_quoted_pair_nul() -> None:
    # RFC 3261 25.1 quoted-pair admits %x00; found by bench/fuzz.py: answering
    # RFC 4475 intmeth (unknown method -> 501) raised in make_response.
    h = Headers()
    h.add("To", '"NUL:\\\x00" <sip:a@b>')
    assert h.get("To") == '"NUL:\\\x00" <sip:a@b>'


def test_typed_cache_invalidated_on_change() -> None:
    calls = []

    def parse(headers: Headers) -> str | None:
        calls.append(1)
        return headers.get("To")

    h = Headers([("To", "<sip:a@b>")])
    assert h.typed("To", parse) == "<sip:a@b>"
    assert h.typed("t", parse) == "<sip:a@b>"
    assert len(calls) == 1
    h.add("From", "<sip:c@d>")  # another header: cache kept
    assert h.typed("To", parse) == "<sip:a@b>" and len(calls) == 1
    h.set("To", "<sip:x@y>")
    assert h.typed("To", parse) == "<sip:x@y>" and len(calls) == 2
    copy = h.copy()
    copy.remove("To")
    assert h.get("To") == "<sip:x@y>"


def test_split_list() -> None:
    assert split_list("a, b,,c ,") == ["a", "b", "c"]
    assert split_list('"a,b" <sip:x>, <sip:y;p=1,2>') == ['"a,b" <sip:x>', "<sip:y;p=1,2>"]
    assert split_list(r'"a\",b" <sip:x>, c') == [r'"a\",b" <sip:x>', "c"]


_token = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,10}", fullmatch=True)
_display = st.one_of(
    st.none(), st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12)
)


@given(
    display=_display,
    user=st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    host=st.from_regex(r"[a-z]{1,8}\.example", fullmatch=True),
    params=st.dictionaries(_token.map(str.lower), st.one_of(st.none(), _token), max_size=3),
)
def test_name_addr_roundtrip_property(
    display: str | None, user: str, host: str, params: dict[str, str | None]
) -> None:
    a = NameAddr(URI(user=user, host=host), display, params)
    again = NameAddr.parse(str(a))
    assert again == a
