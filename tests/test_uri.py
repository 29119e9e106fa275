"""URIs: RFC 3261 19.1 grammar, serialization and 19.1.4 comparison."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipstack.errors import SipParseError
from sipstack.uri import URI, parse_uri


def test_full_sip_uri() -> None:
    uri = parse_uri(
        "sips:alice:secret@Example.COM:5061;transport=TCP;lr;maddr=1.2.3.4?subject=hi&x="
    )
    assert uri.scheme == "sips"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "example.com"
    assert uri.port == 5061
    assert uri.params == {"transport": "TCP", "lr": None, "maddr": "1.2.3.4"}
    assert list(uri.params) == ["transport", "lr", "maddr"]
    assert uri.headers == {"subject": "hi", "x": ""}
    assert uri.transport == "tcp"
    assert uri.is_secure
    assert uri.host_port == "example.com:5061"
    assert uri.opaque is None


def test_minimal_and_ipv6() -> None:
    uri = parse_uri("sip:[2001:DB8::10]:5070")
    assert (uri.user, uri.host, uri.port) == (None, "2001:db8::10", 5070)
    assert uri.host_port == "[2001:db8::10]:5070"
    assert str(uri) == "sip:[2001:db8::10]:5070"
    # RFC 5118 4.3: the last group is part of the address, not a port.
    assert parse_uri("sip:[2001:db8::10:5070]").port is None


def test_escapes_kept_as_written() -> None:
    uri = parse_uri("sip:%75se%72@example.com;n%61me=v%61lue")
    assert uri.user == "%75se%72"
    assert uri.params == {"n%61me": "v%61lue"}
    assert str(uri) == "sip:%75se%72@example.com;n%61me=v%61lue"


def test_user_with_semicolon_and_unusual_characters() -> None:
    # RFC 4475 3.1.1.9 / 3.1.1.2
    assert parse_uri("sip:user;par=u%40example.net@example.com").user == "user;par=u%40example.net"
    uri = parse_uri(
        "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com"
    )
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"


def test_tel_and_other_schemes() -> None:
    tel = parse_uri("tel:+1-201-555-0123;phone-context=example.com")
    assert (tel.scheme, tel.user, tel.params) == (
        "tel",
        "+1-201-555-0123",
        {"phone-context": "example.com"},
    )
    assert str(tel) == "tel:+1-201-555-0123;phone-context=example.com"
    other = parse_uri("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    assert other.scheme == "urn" and other.opaque == "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    assert str(other) == "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6"
    assert parse_uri("HTTP://www.example.com").scheme == "http"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "example.com",
        "sip:",
        "sip:user@",
        "sip:2001:db8::10",  # RFC 5118 4.2: IPv6 needs brackets
        "sip:user@example.com:99999",
        "sip:user@exa mple.com",
        "sip:user@example.com;lr=",
        "sip:us%zzer@example.com",
        "sip:<user@example.com>",
        "sip:a@b@c",
        "tel:",
        "1abc:foo",
        "sip:user@example.com\r\n",
    ],
)
def test_malformed(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_comparison_rfc3261_19_1_4() -> None:
    # Equivalent per the RFC's own examples.
    assert parse_uri("sip:%61lice@atlanta.com;transport=TCP") == parse_uri(
        "sip:alice@AtLanTa.CoM;Transport=tcp"
    )
    assert parse_uri("sip:carol@chicago.com") == parse_uri("sip:carol@chicago.com;newparam=5")
    assert parse_uri("sip:carol@chicago.com;security=on") == parse_uri(
        "sip:carol@chicago.com;newparam=5"
    )
    assert parse_uri(
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com"
    ) == parse_uri("sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com")
    # Not equivalent.
    assert parse_uri("SIP:ALICE@AtLanTa.CoM;Transport=udp") != parse_uri(
        "sip:alice@AtLanTa.CoM;Transport=UDP"
    )
    assert parse_uri("sip:bob@biloxi.com") != parse_uri("sip:bob@biloxi.com:5060")
    assert parse_uri("sip:bob@biloxi.com") != parse_uri("sip:bob@biloxi.com;transport=udp")
    assert parse_uri("sip:carol@chicago.com;security=on") != parse_uri(
        "sip:carol@chicago.com;security=off"
    )
    assert parse_uri("sip:bob@biloxi.com") != parse_uri("sips:bob@biloxi.com")
    assert parse_uri("sip:bob@biloxi.com?subject=a") != parse_uri("sip:bob@biloxi.com")
    equal = {parse_uri("sip:%61lice@atlanta.com"), parse_uri("sip:alice@ATLANTA.com")}
    assert len(equal) == 1  # hash agrees with ==


def test_construct_and_replace() -> None:
    uri = URI(user="bob", host="biloxi.example.com", params={"transport": "tcp"})
    assert str(uri) == "sip:bob@biloxi.example.com;transport=tcp"
    moved = uri.replace(port=5080, params={})
    assert str(moved) == "sip:bob@biloxi.example.com:5080"
    assert str(uri) == "sip:bob@biloxi.example.com;transport=tcp"
    assert URI(host="::1").host_port == "[::1]"


_user = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABC0123456789-_.!~*'()&=+$,;?/%", min_size=1, max_size=12
)
_host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9\-]{0,10}(\.[a-z][a-z0-9\-]{0,10}){0,3}", fullmatch=True),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: a.compressed),
)
_pname = st.from_regex(r"[a-z][a-z0-9\-]{0,8}", fullmatch=True)
_pvalue = st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9\-_.!~*'()]{1,10}", fullmatch=True))


@given(
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.one_of(st.none(), _user.filter(lambda u: "%" not in u)),
    password=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9&=+$,]{0,8}", fullmatch=True)),
    host=_host,
    port=st.one_of(st.none(), st.integers(0, 65535)),
    params=st.dictionaries(_pname, _pvalue, max_size=4),
    headers=st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,6}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9%]{0,6}", fullmatch=True).filter(lambda v: "%" not in v),
        max_size=2,
    ),
)
def test_roundtrip_property(
    scheme: str,
    user: str | None,
    password: str | None,
    host: str,
    port: int | None,
    params: dict[str, str | None],
    headers: dict[str, str],
) -> None:
    if user is None:
        password = None
    uri = URI(scheme, user, password, host, port, params, headers)
    again = parse_uri(str(uri))
    assert again == uri
    assert (again.user, again.password, again.host, again.port) == (user, password, host, port)
    assert again.params == params and again.headers == headers
    assert str(again) == str(uri)
