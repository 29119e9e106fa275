"""Parse/serialize tests for WWW-/Proxy-Authenticate and (Proxy-)Authorization values."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipstack.auth_header import Challenge, Credentials, parse_challenge, parse_credentials
from sipstack.errors import SipParseError

# RFC 3261 section 22.4 / 25 example style, folded onto one line as the parser sees it.
SIP_CHALLENGE = (
    'Digest realm="atlanta.com", domain="sip:boxesbybob.com", qop="auth", '
    'nonce="f84f1cec41e6cbe5aea9c8e88d359", opaque="", stale=FALSE, algorithm=MD5'
)
SIP_CREDENTIALS = (
    'Digest username="bob", realm="atlanta.com", nonce="ea9c8e88df84f1cec4341ae6cbe5a359", '
    'opaque="", uri="sips:ss2.biloxi.example.com", '
    'response="dfe56131d1958046689d83306477ecc"'
)


def test_parse_sip_challenge() -> None:
    ch = parse_challenge(SIP_CHALLENGE)
    assert ch.scheme == "Digest"
    assert ch.is_digest
    assert ch.params == {
        "realm": "atlanta.com",
        "domain": "sip:boxesbybob.com",
        "qop": "auth",
        "nonce": "f84f1cec41e6cbe5aea9c8e88d359",
        "opaque": "",
        "stale": "FALSE",
        "algorithm": "MD5",
    }
    assert list(ch.params) == ["realm", "domain", "qop", "nonce", "opaque", "stale", "algorithm"]


def test_parse_sip_credentials() -> None:
    cr = parse_credentials(SIP_CREDENTIALS)
    assert cr.scheme == "Digest"
    assert cr.params["uri"] == "sips:ss2.biloxi.example.com"
    assert cr.params["opaque"] == ""
    assert cr.params["response"] == "dfe56131d1958046689d83306477ecc"


def test_serialize_quotes_by_parameter_kind() -> None:
    ch = parse_challenge(
        "Digest realm=r, nonce=n, qop=auth, algorithm=MD5, stale=TRUE, opaque=o, x=y"
    )
    # RFC 7616 3.3: realm/nonce/qop/opaque are quoted-strings; algorithm/stale tokens.
    assert str(ch) == (
        'Digest realm="r", nonce="n", qop="auth", algorithm=MD5, stale=TRUE, opaque="o", x=y'
    )
    cr = Credentials(
        "Digest",
        {
            "username": "u",
            "realm": "r",
            "nonce": "n",
            "uri": "sip:a@b",
            "response": "0a",
            "algorithm": "SHA-256",
            "cnonce": "c",
            "qop": "auth",
            "nc": "00000001",
        },
    )
    # RFC 7616 3.4 / RFC 2617 errata: qop and nc are bare in the answer.
    assert str(cr) == (
        'Digest username="u", realm="r", nonce="n", uri="sip:a@b", response="0a", '
        'algorithm=SHA-256, cnonce="c", qop=auth, nc=00000001'
    )


def test_escaped_quotes_and_commas_inside_quoted_strings() -> None:
    value = r'Digest realm="a \"quoted\" realm, with comma", nonce="x\\y", opaque="\z"'
    ch = parse_challenge(value)
    assert ch.params["realm"] == 'a "quoted" realm, with comma'
    assert ch.params["nonce"] == "x\\y"
    assert ch.params["opaque"] == "z"  # a quoted-pair stands for the character itself
    again = parse_challenge(str(ch))
    assert again == ch
    assert str(ch) == r'Digest realm="a \"quoted\" realm, with comma", nonce="x\\y", opaque="z"'


@pytest.mark.parametrize(
    "value",
    [
        'Digest realm="r",nonce="n"',
        'Digest   realm = "r" ,   nonce=\t"n"  ',
        '\tDigest\trealm="r",\tnonce="n"',
        'Digest realm="r", , nonce="n",',
        'digest REALM="r", Nonce="n"',
    ],
)
def test_odd_whitespace_and_case(value: str) -> None:
    ch = parse_challenge(value)
    assert ch.is_digest
    assert ch.params == {"realm": "r", "nonce": "n"}


def test_utf8_in_quoted_string_round_trips() -> None:
    ch = parse_challenge('Digest realm="Tür \u00e4", nonce="n"')
    assert ch.params["realm"] == "Tür \u00e4"
    assert parse_challenge(str(ch)) == ch


def test_scheme_without_params() -> None:
    assert parse_challenge("Foo") == Challenge("Foo", {})
    assert str(Challenge("Foo", {})) == "Foo"
    assert not parse_challenge("Basic realm=x").is_digest


def test_token_typed_param_with_non_token_value_is_quoted() -> None:
    cr = Credentials("Digest", {"algorithm": "bad value", "nc": ""})
    assert str(cr) == 'Digest algorithm="bad value", nc=""'
    assert parse_credentials(str(cr)) == cr


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "Digest realm",
        'Digest realm="unterminated',
        'Digest realm="ends in backslash\\',
        "Digest realm=a b",
        'Digest realm="a", Basic realm="b"',  # two challenges on one line (RFC 8760 2.3)
        "Digest realm=a, realm=b",  # duplicate (RFC 7616 3.3)
        "Digest realm=a, REALM=b",
        "Digest,realm=a",
        "Digest realm=a;nonce=b",
        "Digest realm=, nonce=b",
        "Digest =a",
        'Digest realm="a\r\nb"',
        'Digest realm="a\x01b"',
        'Digest realm="a\\\x00b"',
        'Digest realm="a"x',
        "Digest realm=a\nnonce=b",
        "Dig@st realm=a",
        "Digest abc==",  # token68 is HTTP, not SIP
    ],
)
def test_malformed_raises_sip_parse_error(value: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_challenge(value)
    assert info.value.status is None  # a response: never answered
    with pytest.raises(SipParseError) as info2:
        parse_credentials(value)
    assert info2.value.status == 400  # a request: answer 400


def test_parse_error_says_where() -> None:
    with pytest.raises(SipParseError, match="duplicate auth-param 'realm' at offset 16"):
        parse_challenge("Digest realm=a, realm=b")


def test_trailing_garbage_after_valid_value_is_rejected() -> None:
    good = 'Digest realm="r", nonce="n"'
    assert parse_challenge(good).params["nonce"] == "n"
    for tail in [" x", '"', "\\", " =1", ";"]:
        with pytest.raises(SipParseError):
            parse_challenge(good + tail)


def test_every_prefix_parses_or_raises_cleanly() -> None:
    # Truncated input must never escape as anything but SipParseError.
    for cut in range(len(SIP_CREDENTIALS) + 1):
        with contextlib.suppress(SipParseError):
            parse_credentials(SIP_CREDENTIALS[:cut])


def test_constructor_rejects_unserializable_fields() -> None:
    with pytest.raises(ValueError):
        Challenge("Di gest", {})
    with pytest.raises(ValueError):
        Challenge("Digest", {"Realm": "x"})  # names are stored lower-case
    with pytest.raises(ValueError):
        Credentials("Digest", {"realm": "a\r\nVia: evil"})


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-_.0123456789", min_size=1, max_size=12)
_values = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\x00"),
    max_size=30,
).filter(lambda v: all(ord(c) >= 0x20 or c == "\t" for c in v) and "\x7f" not in v)


@given(st.dictionaries(_names, _values, max_size=8))
def test_round_trip_property(params: dict[str, str]) -> None:
    challenge = Challenge("Digest", params)
    assert parse_challenge(str(challenge)) == challenge
    credentials = Credentials("Digest", params)
    assert parse_credentials(str(credentials)) == credentials
