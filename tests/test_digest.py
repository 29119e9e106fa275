"""Digest authentication, client side: RFC vectors, the authenticator, and a
UAC wired to a small verifying registrar."""

from __future__ import annotations

import hashlib
import logging
import random
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sipstack.auth_header import Challenge, Credentials, parse_challenge, parse_credentials
from sipstack.digest import (
    DEFAULT_PREFERENCE,
    NATIVE_SHA512_256,
    Algorithm,
    AuthenticationError,
    AuthFailure,
    CredentialInfo,
    DataType,
    DigestAuthenticator,
    Qop,
    compute_ha1,
    compute_response,
    hash_username,
    sha512_256_py,
)
from sipstack.headers import NameAddr
from sipstack.ids import IdGenerator
from sipstack.uri import URI, parse_uri

if TYPE_CHECKING:
    from tests.interop.peers.kamailio import KamailioServer

# -- fakes of the sipstack.message surface the authenticator uses --------------


class FakeHeaders:
    """Ordered (name, value) list with the Headers methods digest.py calls."""

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self.items = list(items or [])

    def add(self, name: str, value: str) -> None:
        self.items.append((name, value))

    def remove(self, name: str) -> None:
        self.items = [(n, v) for n, v in self.items if n.lower() != name.lower()]

    def get_all(self, name: str) -> list[str]:
        return [v for n, v in self.items if n.lower() == name.lower()]


@dataclass(frozen=True)
class HttpTarget:
    """An HTTP request target, as in RFC 7616's examples: its host is the server's."""

    path: str
    host: str = "example.org"

    def __str__(self) -> str:
        return self.path


@dataclass
class FakeRequest:
    method: str
    uri_text: str
    body: bytes = b""
    headers: FakeHeaders = field(default_factory=FakeHeaders)

    @property
    def uri(self) -> URI | HttpTarget:
        # RFC 7616's examples are HTTP requests ("/dir/index.html"): no SIP host
        return (
            HttpTarget(self.uri_text) if self.uri_text.startswith("/") else parse_uri(self.uri_text)
        )

    @property
    def routes(self) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in self.headers.get_all("Route")]

    @property
    def authorization(self) -> list[Credentials]:
        return [parse_credentials(v) for v in self.headers.get_all("Authorization")]

    @property
    def proxy_authorization(self) -> list[Credentials]:
        return [parse_credentials(v) for v in self.headers.get_all("Proxy-Authorization")]


@dataclass
class FakeResponse:
    status: int
    www: list[str] = field(default_factory=list)
    proxy: list[str] = field(default_factory=list)

    @property
    def www_authenticate(self) -> list[Challenge]:
        return [parse_challenge(v) for v in self.www]

    @property
    def proxy_authenticate(self) -> list[Challenge]:
        return [parse_challenge(v) for v in self.proxy]


class FixedIds(IdGenerator):
    """Hands out given cnonces, then numbered ones."""

    def __init__(self, *cnonces: str) -> None:
        super().__init__(random.Random(0))
        self._queue = list(cnonces)
        self._count = 0

    def cnonce(self) -> str:
        if self._queue:
            return self._queue.pop(0)
        self._count += 1
        return f"cnonce{self._count}"


def only(request: FakeRequest, name: str = "Authorization") -> dict[str, str]:
    values = request.headers.get_all(name)
    assert len(values) == 1, values
    return parse_credentials(values[0]).params


def md5(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return hashlib.md5(data).hexdigest()


# -- pure functions: RFC vectors ------------------------------------------------


def test_rfc2617_section_3_5_example() -> None:
    response = compute_response(
        Algorithm.MD5,
        username="Mufasa",
        realm="testrealm@host.com",
        password="Circle Of Life",
        method="GET",
        uri="/dir/index.html",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        qop=Qop.AUTH,
        nc=1,
        cnonce="0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        (Algorithm.MD5, "8ca523f5e9506fed4657c9700eebdbec"),
        (Algorithm.SHA_256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_rfc7616_section_3_9_1_examples(algorithm: Algorithm, expected: str) -> None:
    response = compute_response(
        algorithm,
        username="Mufasa",
        realm="http-auth@example.org",
        password="Circle of Life",
        method="GET",
        uri="/dir/index.html",
        nonce=RFC7616_NONCE,
        qop=Qop.AUTH,
        nc=1,
        cnonce=RFC7616_CNONCE,
    )
    assert response == expected


def test_rfc7616_section_3_9_2_sha512_256_userhash_with_errata_4897() -> None:
    # The published values were made with a pre-standard SHA-512/256; erratum 4897
    # gives these.
    user, realm = "J\u00e4s\u00f8n Doe", "api@example.org"
    assert hash_username(Algorithm.SHA_512_256, user, realm) == (
        "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"
    )
    response = compute_response(
        Algorithm.SHA_512_256,
        username=user,
        realm=realm,
        password="Secret, or not?",
        method="GET",
        uri="/doe.json",
        nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK",
        qop=Qop.AUTH,
        nc=1,
        cnonce="NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v",
    )
    assert response == "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"


def test_sha512_256_fallback_matches_fips_and_hashlib() -> None:
    # FIPS 180-4 example "abc" (NIST CSRC SHA512_256.pdf).
    assert sha512_256_py(b"abc").hex() == (
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    )
    assert sha512_256_py(b"").hex() == (
        "c672b8d1ef56ed28ab87c3622c5114069bdd3ad7b8f9737498d0c01ecef0967a"
    )
    if NATIVE_SHA512_256:
        data = bytes(range(256)) * 3
        # Every padding boundary: 111/112 bytes need one or two blocks.
        for n in [0, 1, 55, 111, 112, 127, 128, 129, 239, 240, 256, 768]:
            assert sha512_256_py(data[:n]) == hashlib.new("sha512_256", data[:n]).digest(), n


def test_fallback_is_used_when_openssl_lacks_sha512_256(monkeypatch: pytest.MonkeyPatch) -> None:
    import sipstack.digest as digest_module

    monkeypatch.setattr(digest_module, "NATIVE_SHA512_256", False)
    assert Algorithm.SHA_512_256.hexdigest(b"abc") == sha512_256_py(b"abc").hex()
    assert compute_ha1(Algorithm.SHA_512_256_SESS, "a", "r", "p") == sha512_256_py(b"a:r:p").hex()


def test_this_machine_sha512_256_support_is_detected() -> None:
    native = "sha512_256" in hashlib.algorithms_available
    assert native == NATIVE_SHA512_256
    assert Algorithm.SHA_512_256.hexdigest(b"abc").startswith("53048e26")


def test_sip_register_md5_matches_rfc3261_formula() -> None:
    # RFC 3261 22.4 / RFC 2617 3.2.2, spelled out independently with hashlib.
    ha1 = md5("alice:atlanta.com:s3cr3t")
    ha2 = md5("REGISTER:sip:atlanta.com")
    want = md5(f"{ha1}:abc123:00000001:0a4f113b:auth:{ha2}")
    got = compute_response(
        Algorithm.MD5,
        username="alice",
        realm="atlanta.com",
        password="s3cr3t",
        method="REGISTER",
        uri="sip:atlanta.com",
        nonce="abc123",
        qop=Qop.AUTH,
        nc=1,
        cnonce="0a4f113b",
    )
    assert got == want


def test_rfc2069_without_qop() -> None:
    ha1 = md5("alice:atlanta.com:s3cr3t")
    ha2 = md5("INVITE:sip:bob@biloxi.com")
    got = compute_response(
        Algorithm.MD5,
        username="alice",
        realm="atlanta.com",
        password="s3cr3t",
        method="INVITE",
        uri="sip:bob@biloxi.com",
        nonce="n0",
    )
    assert got == md5(f"{ha1}:n0:{ha2}")


def test_auth_int_hashes_the_body() -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\n"
    common: dict[str, Any] = dict(
        username="a", realm="r", password="p", method="INVITE", uri="sip:b@r"
    )
    got = compute_response(
        Algorithm.MD5, **common, nonce="n", qop=Qop.AUTH_INT, nc=2, cnonce="c", body=body
    )
    ha2 = md5(f"INVITE:sip:b@r:{md5(body)}")
    assert got == md5(f"{md5('a:r:p')}:n:00000002:c:auth-int:{ha2}")
    other = compute_response(
        Algorithm.MD5, **common, nonce="n", qop=Qop.AUTH_INT, nc=2, cnonce="c", body=body + b"x"
    )
    assert other != got
    # RFC 3261 22.4: an empty body hashes the empty string.
    empty = compute_response(Algorithm.MD5, **common, nonce="n", qop=Qop.AUTH_INT, cnonce="c")
    ha2_empty = md5("INVITE:sip:b@r:d41d8cd98f00b204e9800998ecf8427e")
    assert empty == md5(f"{md5('a:r:p')}:n:00000001:c:auth-int:{ha2_empty}")


@pytest.mark.parametrize("algorithm", [Algorithm.MD5_SESS, Algorithm.SHA_256_SESS])
def test_session_algorithms_bind_ha1_to_nonce_and_cnonce(algorithm: Algorithm) -> None:
    name = algorithm.hash_name

    def h(s: str) -> str:
        return hashlib.new(name, s.encode()).hexdigest()

    ha1 = h(f"{h('a:r:p')}:n:c")
    want = h(f"{ha1}:n:00000001:c:auth:{h('OPTIONS:sip:r')}")
    got = compute_response(
        algorithm,
        username="a",
        realm="r",
        password="p",
        method="OPTIONS",
        uri="sip:r",
        nonce="n",
        qop=Qop.AUTH,
        cnonce="c",
    )
    assert got == want


def test_precomputed_ha1_gives_the_same_answer() -> None:
    args: dict[str, Any] = dict(
        username="a", realm="r", method="BYE", uri="sip:x", nonce="n", cnonce="c"
    )
    for alg in Algorithm:
        ha1 = compute_ha1(alg, "a", "r", "p")
        assert compute_response(alg, **args, ha1=ha1.upper(), qop=Qop.AUTH) == compute_response(
            alg, **args, password="p", qop=Qop.AUTH
        )
    with pytest.raises(ValueError):
        compute_response(Algorithm.MD5, **args)
    with pytest.raises(ValueError):
        compute_response(Algorithm.MD5, **args, password="p", ha1="00")


def test_algorithm_tokens() -> None:
    assert Algorithm.from_token(None) is Algorithm.MD5  # RFC 7616 3.3: default
    assert Algorithm.from_token("sha-256") is Algorithm.SHA_256
    assert Algorithm.from_token("MD5-SESS") is Algorithm.MD5_SESS
    assert Algorithm.from_token("SHA3-256") is None
    assert DEFAULT_PREFERENCE[0] is Algorithm.SHA_512_256


# -- credentials ----------------------------------------------------------------------


def test_credential_repr_hides_the_secret() -> None:
    cred = CredentialInfo("atlanta.com", "alice", "hunter2-secret")
    text = repr(cred)
    assert "hunter2-secret" not in text and "hunter2-secret" not in str(cred)
    assert "alice" in text and "atlanta.com" in text and "<hidden>" in text
    ha1 = compute_ha1(Algorithm.MD5, "alice", "atlanta.com", "pw")
    assert ha1 not in repr(CredentialInfo("atlanta.com", "alice", ha1, DataType.HA1_MD5))


def test_credential_validation() -> None:
    with pytest.raises(ValueError, match="one realm"):
        CredentialInfo("*", "a", "0" * 32, DataType.HA1_MD5)
    with pytest.raises(ValueError, match="32 hex"):
        CredentialInfo("r", "a", "xyz", DataType.HA1_MD5)
    with pytest.raises(ValueError, match="only 'digest'"):
        CredentialInfo("r", "a", "p", scheme="basic")


# -- the authenticator ----------------------------------------------------------------

ALICE = CredentialInfo("atlanta.com", "alice", "s3cr3t")


def register() -> FakeRequest:
    return FakeRequest("REGISTER", "sip:atlanta.com")


def challenge_401(*values: str) -> FakeResponse:
    return FakeResponse(401, www=list(values))


def test_rfc7616_exchange_through_the_authenticator_prefers_sha256() -> None:
    creds = [CredentialInfo("http-auth@example.org", "Mufasa", "Circle of Life")]
    auth = DigestAuthenticator(creds, FixedIds(RFC7616_CNONCE))
    common = f'realm="http-auth@example.org", qop="auth, auth-int", nonce="{RFC7616_NONCE}", '
    common += f'opaque="{RFC7616_OPAQUE}"'
    # RFC 7616 3.9.1 offers SHA-256 first; put MD5 first to show local policy wins.
    resp = challenge_401(f"Digest {common}, algorithm=MD5", f"Digest {common}, algorithm=SHA-256")
    req = FakeRequest("GET", "/dir/index.html")
    auth.handle_challenge(req, resp)
    added = auth.authorize(req)
    assert [h.name for h in added] == ["Authorization"]
    assert req.headers.get_all("Authorization") == [
        'Digest username="Mufasa", realm="http-auth@example.org", '
        f'nonce="{RFC7616_NONCE}", uri="/dir/index.html", '
        'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1", '
        f'algorithm=SHA-256, cnonce="{RFC7616_CNONCE}", qop=auth, nc=00000001, '
        f'opaque="{RFC7616_OPAQUE}"'
    ]
    md5_only = DigestAuthenticator(creds, FixedIds(RFC7616_CNONCE), algorithms=[Algorithm.MD5])
    md5_only.handle_challenge(FakeRequest("GET", "/dir/index.html"), resp)
    assert md5_only.credentials_for("GET", "/dir/index.html")[0].credentials.params["response"] == (
        "8ca523f5e9506fed4657c9700eebdbec"
    )


def test_userhash_rfc7616_3_9_2() -> None:
    creds = [CredentialInfo("api@example.org", "J\u00e4s\u00f8n Doe", "Secret, or not?")]
    chal = (
        'Digest realm="api@example.org", qop="auth", algorithm=SHA-512-256, '
        'nonce="5TsQWLVdgBdmrQ0XsxbDODV+57QdFR34I9HAbC/RVvkK", '
        'opaque="HRPCssKJSGjCrkzDg8OhwpzCiGPChXYjwrI2QmXDnsOS", charset=UTF-8, userhash=true'
    )
    req = FakeRequest("GET", "/doe.json")
    auth = DigestAuthenticator(creds, FixedIds("NTg6RKcb9boFIAS3KrFK9BGeh+iDa/sm6jUMp2wds69v"))
    auth.handle_challenge(req, challenge_401(chal))
    auth.authorize(req)
    p = only(req)
    assert p["username"] == "793263caabb707a56211940d90411ea4a575adeccb7e360aeb624ed06ece9b0b"
    assert p["userhash"] == "true"
    assert p["response"] == "3798d4131c277846293534c3edc11bd8a5e4cdcbff78b05db9d95eeb1cec68a5"
    plain = DigestAuthenticator(creds, FixedIds("c"), use_userhash=False)
    plain.handle_challenge(FakeRequest("GET", "/doe.json"), challenge_401(chal))
    params = plain.credentials_for("GET", "/doe.json")[0].credentials.params
    assert params["username"] == "J\u00e4s\u00f8n Doe" and "userhash" not in params


def test_nc_increments_per_nonce_and_cnonce_is_kept() -> None:
    auth = DigestAuthenticator([ALICE], FixedIds())
    req = register()
    auth.handle_challenge(req, challenge_401('Digest realm="atlanta.com", nonce="n1", qop="auth"'))
    seen = []
    for _ in range(3):
        r = register()
        auth.authorize(r)  # pre-emptive after the first
        seen.append(only(r))
    assert [p["nc"] for p in seen] == ["00000001", "00000002", "00000003"]
    assert {p["cnonce"] for p in seen} == {"cnonce1"}
    assert len({p["response"] for p in seen}) == 3
    # A new nonce starts again at 1 with a new cnonce.
    auth.handle_challenge(
        register(), challenge_401('Digest realm="atlanta.com", nonce="n2", qop="auth", stale=true')
    )
    r = register()
    auth.authorize(r)
    assert (only(r)["nc"], only(r)["cnonce"], only(r)["nonce"]) == ("00000001", "cnonce2", "n2")


def test_stale_challenge_retries_with_new_nonce() -> None:
    auth = DigestAuthenticator([ALICE], FixedIds())
    auth.handle_challenge(register(), challenge_401('Digest realm="atlanta.com", nonce="n1"'))
    first = register()
    auth.authorize(first)
    assert only(first)["nonce"] == "n1" and "nc" not in only(first)  # RFC 2069 mode
    # The server says the nonce (not the password) is the problem.
    stale = challenge_401('Digest realm="atlanta.com", nonce="n2", stale=TRUE')
    auth.handle_challenge(first, stale)
    retry = register()
    auth.authorize(retry)
    assert only(retry)["nonce"] == "n2"
    # stale=true naming the very nonce we used is the server's bug: stop, not loop.
    with pytest.raises(AuthenticationError) as info:
        auth.handle_challenge(
            retry, challenge_401('Digest realm="atlanta.com", nonce="n2", stale=true')
        )
    assert info.value.failure is AuthFailure.BAD_CHALLENGE


def test_wrong_password_is_reported_not_retried() -> None:
    auth = DigestAuthenticator([ALICE], FixedIds())
    req = register()
    auth.handle_challenge(req, challenge_401('Digest realm="atlanta.com", nonce="n1", qop="auth"'))
    auth.authorize(req)
    again = challenge_401('Digest realm="atlanta.com", nonce="n3", qop="auth"')
    with pytest.raises(AuthenticationError) as info:
        auth.handle_challenge(req, again)
    err = info.value
    assert err.failure is AuthFailure.REJECTED
    assert err.realms == ("atlanta.com",)
    assert "our configuration" in str(err) and "alice" in str(err)
    assert "s3cr3t" not in str(err) and "s3cr3t" not in repr(err)
    assert auth.realms == []  # the bad answer is not re-used pre-emptively


def test_wrong_password_without_qop() -> None:
    auth = DigestAuthenticator([ALICE], FixedIds())
    req = register()
    auth.handle_challenge(req, challenge_401('Digest realm="atlanta.com", nonce="n1"'))
    auth.authorize(req)
    with pytest.raises(AuthenticationError) as info:
        auth.handle_challenge(req, challenge_401('Digest realm="atlanta.com", nonce="n9"'))
    assert info.value.failure is AuthFailure.REJECTED


def test_preemptive_nonce_refused_without_stale_gets_one_fresh_try() -> None:
    auth = DigestAuthenticator([ALICE], FixedIds())
    auth.handle_challenge(
        register(), challenge_401('Digest realm="atlanta.com", nonce="n1", qop=auth')
    )
    auth.authorize(register())  # nc=1 used by an earlier request
    later = register()
    auth.authorize(later)  # nc=2: pre-emptive re-use
    fresh = challenge_401('Digest realm="atlanta.com", nonce="n2", qop=auth')
    auth.handle_challenge(later, fresh)  # server forgot n1 silently: not a wrong password
    retry = register()
    auth.authorize(retry)
    assert only(retry)["nc"] == "00000001"
    with pytest.raises(AuthenticationError):
        auth.handle_challenge(
            retry, challenge_401('Digest realm="atlanta.com", nonce="n3", qop=auth')
        )


def test_strongest_algorithm_is_chosen_per_realm() -> None:
    values = [
        'Digest realm="atlanta.com", nonce="a", algorithm=MD5, qop="auth"',
        'Digest realm="atlanta.com", nonce="b", algorithm=SHA3-512, qop="auth"',
        'Digest realm="atlanta.com", nonce="c", algorithm=SHA-512-256, qop="auth"',
        'Digest realm="atlanta.com", nonce="d", algorithm=SHA-256, qop="auth"',
    ]
    for order in (values, values[::-1]):
        auth = DigestAuthenticator([ALICE], FixedIds())
        auth.handle_challenge(register(), challenge_401(*order))
        (header,) = auth.credentials_for("REGISTER", "sip:atlanta.com")
        assert (header.credentials.params["algorithm"], header.credentials.params["nonce"]) == (
            "SHA-512-256",
            "c",
        )
    no_512 = DigestAuthenticator([ALICE], FixedIds(), algorithms=[Algorithm.SHA_256, Algorithm.MD5])
    no_512.handle_challenge(register(), challenge_401(*values))
    assert no_512.credentials_for("REGISTER", "sip:x")[0].credentials.params["nonce"] == "d"


def test_md5_ha1_credential_only_answers_md5() -> None:
    ha1 = compute_ha1(Algorithm.MD5, "alice", "atlanta.com", "s3cr3t")
    auth = DigestAuthenticator(
        [CredentialInfo("atlanta.com", "alice", ha1, DataType.HA1_MD5)], FixedIds("c")
    )
    auth.handle_challenge(
        register(),
        challenge_401(
            'Digest realm="atlanta.com", nonce="x", algorithm=SHA-256, qop="auth"',
            'Digest realm="atlanta.com", nonce="y", algorithm=MD5, qop="auth"',
        ),
    )
    params = auth.credentials_for("REGISTER", "sip:atlanta.com")[0].credentials.params
    assert params["algorithm"] == "MD5"
    assert params["response"] == compute_response(
        Algorithm.MD5, username="alice", realm="atlanta.com", password="s3cr3t",
        method="REGISTER", uri="sip:atlanta.com", nonce="y", qop=Qop.AUTH, cnonce="c",
    )  # fmt: skip


def test_wildcard_realm() -> None:
    exact = CredentialInfo("biloxi.com", "bob", "pw-b")
    anywhere = CredentialInfo("*", "alice", "pw-any")
    auth = DigestAuthenticator([anywhere, exact], FixedIds())
    assert auth.credential_for("biloxi.com") is exact  # exact match beats the wildcard
    assert auth.credential_for("elsewhere") is anywhere
    auth.handle_challenge(register(), challenge_401('Digest realm="elsewhere", nonce="n"'))
    assert auth.credentials_for("REGISTER", "sip:x")[0].credentials.params["username"] == "alice"
    strict = DigestAuthenticator([exact], FixedIds())
    with pytest.raises(AuthenticationError) as info:
        strict.handle_challenge(register(), challenge_401('Digest realm="elsewhere", nonce="n"'))
    assert info.value.failure is AuthFailure.NO_CREDENTIALS
    assert info.value.realms == ("elsewhere",)


def test_407_then_401_in_sequence() -> None:
    creds = [
        CredentialInfo("proxy.net", "alice", "pp"),
        CredentialInfo("atlanta.com", "alice", "rr"),
    ]
    auth = DigestAuthenticator(creds, FixedIds())
    req = FakeRequest("INVITE", "sip:bob@biloxi.com", b"v=0\r\n")
    auth.handle_challenge(
        req, FakeResponse(407, proxy=['Digest realm="proxy.net", nonce="p1", qop="auth"'])
    )
    second = FakeRequest("INVITE", "sip:bob@biloxi.com", b"v=0\r\n")
    auth.authorize(second)
    assert second.headers.get_all("Authorization") == []
    assert only(second, "Proxy-Authorization")["nonce"] == "p1"
    auth.handle_challenge(
        second, challenge_401('Digest realm="atlanta.com", nonce="w1", qop="auth-int"')
    )
    third = FakeRequest("INVITE", "sip:bob@biloxi.com", b"v=0\r\n")
    # Stale copies from the earlier attempt are replaced, not stacked.
    third.headers.add("Proxy-Authorization", 'Digest realm="proxy.net", nonce="old"')
    auth.authorize(third)
    proxy, www = only(third, "Proxy-Authorization"), only(third, "Authorization")
    assert (proxy["realm"], proxy["nc"]) == ("proxy.net", "00000002")
    assert (www["realm"], www["nc"], www["qop"]) == ("atlanta.com", "00000001", "auth-int")
    assert www["response"] == compute_response(
        Algorithm.MD5, username="alice", realm="atlanta.com", password="rr", method="INVITE",
        uri="sip:bob@biloxi.com", nonce="w1", qop=Qop.AUTH_INT, nc=1, cnonce=www["cnonce"],
        body=b"v=0\r\n",
    )  # fmt: skip


def test_forked_response_with_both_challenge_kinds_and_an_unknown_realm() -> None:
    auth = DigestAuthenticator([CredentialInfo("a.net", "u", "p")], FixedIds())
    resp = FakeResponse(
        407,
        www=['Digest realm="a.net", nonce="1"', 'Digest realm="unknown.net", nonce="2"'],
        proxy=['Digest realm="a.net", nonce="3"'],
    )
    auth.handle_challenge(register(), resp)  # unknown.net is skipped, a.net answered twice
    assert auth.realms == [("Authorization", "a.net"), ("Proxy-Authorization", "a.net")]
    auth.forget("a.net")
    assert auth.realms == []


@pytest.mark.parametrize(
    ("values", "failure"),
    [
        (['Basic realm="atlanta.com"'], AuthFailure.UNSUPPORTED),
        (['Digest realm="atlanta.com", nonce="n", qop="auth-conf"'], AuthFailure.UNSUPPORTED),
        (['Digest realm="atlanta.com", nonce="n", algorithm=SHA3-256'], AuthFailure.UNSUPPORTED),
        (['Digest realm="atlanta.com", nonce="n", algorithm=MD5-sess'], AuthFailure.UNSUPPORTED),
        (['Digest realm="atlanta.com"'], AuthFailure.BAD_CHALLENGE),
        (['Digest nonce="n"'], AuthFailure.BAD_CHALLENGE),
        ([], AuthFailure.BAD_CHALLENGE),
    ],
)
def test_unusable_challenges(values: list[str], failure: AuthFailure) -> None:
    auth = DigestAuthenticator([ALICE], FixedIds())
    with pytest.raises(AuthenticationError) as info:
        auth.handle_challenge(register(), challenge_401(*values))
    assert info.value.failure is failure


def test_misuse_raises_value_error() -> None:
    auth = DigestAuthenticator([ALICE], FixedIds())
    with pytest.raises(ValueError):
        auth.handle_challenge(register(), FakeResponse(403))


def test_authorize_without_challenge_leaves_request_alone() -> None:
    auth = DigestAuthenticator([ALICE], FixedIds())
    req = register()
    req.headers.add("Authorization", "Digest username=x")
    assert auth.authorize(req) == []
    assert req.headers.get_all("Authorization") == ["Digest username=x"]


def test_opaque_echoed_only_when_given() -> None:
    auth = DigestAuthenticator([ALICE], FixedIds())
    auth.handle_challenge(
        register(), challenge_401('Digest realm="atlanta.com", nonce="n", opaque=""')
    )
    assert auth.credentials_for("OPTIONS", "sip:a")[0].credentials.params["opaque"] == ""
    auth.handle_challenge(register(), challenge_401('Digest realm="atlanta.com", nonce="m"'))
    assert "opaque" not in auth.credentials_for("OPTIONS", "sip:a")[0].credentials.params


def test_password_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    auth = DigestAuthenticator([ALICE], FixedIds())
    req = register()
    auth.handle_challenge(req, challenge_401('Digest realm="atlanta.com", nonce="n", qop=auth'))
    auth.authorize(req)
    assert "atlanta.com" in caplog.text
    assert "s3cr3t" not in caplog.text


# -- a UAC wired to a verifying registrar --------------------------------------------


class Registrar:
    """A minimal RFC 7616 server: issues nonces, checks answers and strictly rising nc."""

    def __init__(self, users: dict[str, str], realm: str = "atlanta.com") -> None:
        self.users, self.realm = users, realm
        self.nonces: dict[str, int] = {}  # nonce -> highest nc seen
        self._serial = 0

    def new_nonce(self) -> str:
        self._serial += 1
        nonce = f"nonce-{self._serial}"
        self.nonces[nonce] = 0
        return nonce

    def expire_all(self) -> None:
        self.nonces.clear()

    def challenge(self, *, stale: bool = False) -> FakeResponse:
        extra = ", stale=true" if stale else ""
        return challenge_401(
            f'Digest realm="{self.realm}", nonce="{self.new_nonce()}", '
            f'qop="auth,auth-int", algorithm=SHA-256{extra}'
        )

    def handle(self, req: FakeRequest) -> FakeResponse:
        values = req.headers.get_all("Authorization")
        if not values:
            return self.challenge()
        p = parse_credentials(values[0]).params
        if p["nonce"] not in self.nonces:
            return self.challenge(stale=True)
        nc = int(p["nc"], 16)
        expected = compute_response(
            Algorithm.SHA_256, username=p["username"], realm=self.realm,
            password=self.users.get(p["username"], ""), method=req.method, uri=p["uri"],
            nonce=p["nonce"], qop=Qop(p["qop"]), nc=nc, cnonce=p["cnonce"], body=req.body,
        )  # fmt: skip
        if p["response"] != expected or p["uri"] != str(req.uri) or nc <= self.nonces[p["nonce"]]:
            return self.challenge()
        self.nonces[p["nonce"]] = nc
        return FakeResponse(200)


def send(auth: DigestAuthenticator, registrar: Registrar) -> Iterator[int]:
    """Send one REGISTER, answering challenges like a UAC would; yields each status."""
    req = register()
    auth.authorize(req)
    for _ in range(3):
        resp = registrar.handle(req)
        yield resp.status
        if resp.status != 401:
            return
        auth.handle_challenge(req, resp)
        req = register()  # a new CSeq in real life
        auth.authorize(req)
    raise AssertionError("authentication loop")


def test_uac_against_registrar() -> None:
    registrar = Registrar({"alice": "s3cr3t"})
    auth = DigestAuthenticator([ALICE], FixedIds())
    assert list(send(auth, registrar)) == [401, 200]
    assert list(send(auth, registrar)) == [200]  # pre-emptive, nc=2
    assert list(send(auth, registrar)) == [200]
    registrar.expire_all()
    assert list(send(auth, registrar)) == [401, 200]  # stale=true: no error
    wrong = DigestAuthenticator([CredentialInfo("*", "alice", "guess")], FixedIds())
    with pytest.raises(AuthenticationError) as info:
        list(send(wrong, registrar))
    assert info.value.failure is AuthFailure.REJECTED


# -- with the real sipstack.message types ------------------------------------------


def test_with_sipstack_message_bytes_in_bytes_out() -> None:
    from sipstack.message import Request, Response, make_response, parse_message

    wire = (
        b"INVITE sip:bob@biloxi.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds8\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:alice@atlanta.com>;tag=1928301774\r\n"
        b"To: <sip:bob@biloxi.com>\r\n"
        b"Call-ID: a84b4c76e66710\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Content-Type: application/sdp\r\n"
        b"Content-Length: 5\r\n\r\nv=0\r\n"
    )
    invite = parse_message(wire)
    assert isinstance(invite, Request)
    challenge = make_response(invite, 407, to_tag="srv1")
    challenge.headers.add(
        "Proxy-Authenticate",
        'Digest realm="atlanta.com", qop="auth-int", nonce="wf84f1ceczx41ae6cbe5aea9c8e88d359"',
    )
    challenge.headers.add(
        "Proxy-Authenticate",
        'Digest realm="atlanta.com", qop="auth", nonce="n256", algorithm=SHA-256',
    )
    received = parse_message(challenge.to_bytes())
    assert isinstance(received, Response)

    auth = DigestAuthenticator([ALICE], FixedIds("0a4f113b"))
    auth.handle_challenge(invite, received)
    retry = invite.copy()
    retry.headers.set("CSeq", "314160 INVITE")  # the caller's job (RFC 3261 22.2)
    auth.authorize(retry)
    sent = parse_message(retry.to_bytes())
    assert isinstance(sent, Request)
    (creds,) = sent.proxy_authorization
    assert sent.authorization == []
    assert creds.params["algorithm"] == "SHA-256" and creds.params["nonce"] == "n256"
    assert creds.params["uri"] == "sip:bob@biloxi.com"
    assert creds.params["response"] == compute_response(
        Algorithm.SHA_256, username="alice", realm="atlanta.com", password="s3cr3t",
        method="INVITE", uri="sip:bob@biloxi.com", nonce="n256", qop=Qop.AUTH, nc=1,
        cnonce="0a4f113b",
    )  # fmt: skip
    # The server rejecting that exact answer (nc=1) means a wrong password.
    again = make_response(sent, 407, to_tag="srv2")
    again.headers.add("Proxy-Authenticate", 'Digest realm="atlanta.com", nonce="n3", qop=auth')
    with pytest.raises(AuthenticationError):
        auth.handle_challenge(sent, again)


# -- against a real Kamailio 5.6 on 127.0.0.1 ----------------------------------------

KAMAILIO_USERS = {"alice": "s3cr3t"}


class UdpUac:
    """Just enough SIP over UDP to carry REGISTER/MESSAGE and read 401/407 back."""

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5.0)  # a bound on a lost datagram, not a timing assertion
        self.port = self.sock.getsockname()[1]
        self.call_id = f"{random.getrandbits(64):x}@digest-test"
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def send(self, req: FakeRequest, realm: str) -> FakeResponse:
        self.cseq += 1  # RFC 3261 22.2: a re-sent request gets a new CSeq
        user = "alice"
        to_uri = f"sip:{user}@{realm}" if req.method == "REGISTER" else f"sip:bob@{realm}"
        lines = [
            f"{req.method} {req.uri} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};rport;branch=z9hG4bK{self.cseq}x"
            f"{random.getrandbits(32):x}",
            "Max-Forwards: 70",
            f"From: <sip:{user}@{realm}>;tag=digest{self.port}",
            f"To: <{to_uri}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} {req.method}",
            f"Contact: <sip:{user}@127.0.0.1:{self.port}>",
        ]
        if req.method == "REGISTER":
            lines.append("Expires: 60")
        lines += [f"{n}: {v}" for n, v in req.headers.items]
        if req.body:
            lines.append("Content-Type: text/plain")
        lines.append(f"Content-Length: {len(req.body)}")
        self.sock.sendto("\r\n".join(lines).encode() + b"\r\n\r\n" + req.body, self.server)
        while True:
            data = self.sock.recv(65535).decode()
            head = data.split("\r\n\r\n", 1)[0].split("\r\n")
            status = int(head[0].split()[1])
            fields = [line.split(":", 1) for line in head[1:]]
            if f"CSeq: {self.cseq} {req.method}" not in head or status < 200:
                continue
            return FakeResponse(
                status,
                www=[v.strip() for n, v in fields if n.lower() == "www-authenticate"],
                proxy=[v.strip() for n, v in fields if n.lower() == "proxy-authenticate"],
            )


def _kamailio(tmp_path: Path, **config: Any) -> KamailioServer:
    if shutil.which("kamailio") is None:
        pytest.skip("kamailio is not installed")
    from tests.interop.peers.kamailio import KamailioConfig, KamailioServer  # noqa: F811
    from tests.interop.peers.ports import PortAllocator

    server = KamailioServer(
        KamailioConfig(users=KAMAILIO_USERS, **config),
        tmp_path,
        port=PortAllocator().allocate(),
    )
    server.start()
    return server


@pytest.mark.interop
@pytest.mark.parametrize("qop", ["auth", None])
@pytest.mark.parametrize("algorithm", ["", "MD5", "SHA-256"])
def test_register_against_kamailio(tmp_path: Path, algorithm: str, qop: str | None) -> None:
    server = _kamailio(tmp_path, algorithm=algorithm, qop=qop)
    uac = UdpUac(server.address)
    try:
        realm = server.config.realm
        auth = DigestAuthenticator([CredentialInfo(realm, "alice", "s3cr3t")], FixedIds())
        req = FakeRequest("REGISTER", f"sip:{realm}")
        first = uac.send(req, realm)
        assert first.status == 401
        assert first.www_authenticate[0].params.get("algorithm", "MD5") == (algorithm or "MD5")
        auth.handle_challenge(req, first)
        auth.authorize(req)
        assert uac.send(req, realm).status == 200, server.log_text(3000)
        # Pre-emptive: the next REGISTER re-uses the nonce with nc=2 and passes at once.
        again = FakeRequest("REGISTER", f"sip:{realm}")
        auth.authorize(again)
        if qop:
            assert only(again)["nc"] == "00000002"
        assert uac.send(again, realm).status == 200, server.log_text(3000)
        assert "alice" in server.registrations()
    finally:
        uac.close()
        server.stop()


@pytest.mark.interop
def test_wrong_password_and_407_against_kamailio(tmp_path: Path) -> None:
    server = _kamailio(tmp_path, algorithm="SHA-256", challenge_requests=True)
    uac = UdpUac(server.address)
    try:
        realm = server.config.realm
        wrong = DigestAuthenticator([CredentialInfo("*", "alice", "guess")], FixedIds())
        req = FakeRequest("REGISTER", f"sip:{realm}")
        wrong.handle_challenge(req, uac.send(req, realm))
        wrong.authorize(req)
        rejected = uac.send(req, realm)
        assert rejected.status == 401
        with pytest.raises(AuthenticationError) as info:
            wrong.handle_challenge(req, rejected)
        assert info.value.failure is AuthFailure.REJECTED

        auth = DigestAuthenticator([CredentialInfo("*", "alice", "s3cr3t")], FixedIds())
        msg = FakeRequest("MESSAGE", f"sip:bob@{realm}", b"door open")
        challenged = uac.send(msg, realm)
        assert challenged.status == 407 and challenged.proxy_authenticate
        auth.handle_challenge(msg, challenged)
        auth.authorize(msg)
        assert msg.headers.get_all("Authorization") == []
        final = uac.send(msg, realm)
        # Past authentication: bob is not registered, so the proxy answers 404.
        assert final.status not in (401, 407), server.log_text(3000)
        assert final.status == 404
    finally:
        uac.close()
        server.stop()


def test_credentials_only_go_back_to_the_server_that_challenged() -> None:
    """RFC 7616 3.6 / RFC 3261 22.1: a registrar's answer must not reach a watcher."""
    auth = DigestAuthenticator([CredentialInfo("*", "door", "pw")], FixedIds())
    reg = FakeRequest("REGISTER", "sip:registrar.example")
    auth.handle_challenge(reg, challenge_401('Digest realm="example", nonce="n1"'))
    refresh = FakeRequest("REGISTER", "sip:registrar.example")
    assert auth.authorize(refresh) and refresh.headers.get_all("Authorization")
    notify = FakeRequest("NOTIFY", "sip:watcher@192.0.2.7:5060")
    assert auth.authorize(notify) == []
    assert notify.headers.get_all("Authorization") == []
    # a proxy's 407 follows the next hop, whatever the Request-URI
    invite = FakeRequest("INVITE", "sip:bob@biloxi.example")
    invite.headers.add("Route", "<sip:proxy.example;lr>")
    auth.handle_challenge(invite, FakeResponse(407, proxy=['Digest realm="p", nonce="q"']))
    via_proxy = FakeRequest("MESSAGE", "sip:carol@elsewhere.example")
    via_proxy.headers.add("Route", "<sip:proxy.example;lr>")
    auth.authorize(via_proxy)
    assert via_proxy.headers.get_all("Proxy-Authorization")
    assert via_proxy.headers.get_all("Authorization") == []  # not the registrar's
