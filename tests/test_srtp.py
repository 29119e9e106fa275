"""SRTP with SDES keys: crypto lines, negotiation by mode, and packet protection.

Two :class:`SrtpContext` objects keyed crosswise stand in for the two ends of a
call; the interop test against baresip lives in tests/interop/test_srtp_baresip.py.
"""

from __future__ import annotations

import base64
import itertools
import struct
from collections.abc import Callable

import pytest

from sipstack.offer_answer import CodecSpec, LocalMedia, create_answer, create_offer
from sipstack.sdp import parse_sdp
from sipstack.srtp import (
    DEFAULT_SUITES,
    CryptoAttribute,
    CryptoAttributeError,
    CryptoSuite,
    KeyParams,
    SecureSignaling,
    SrtpContext,
    SrtpError,
    SrtpFailure,
    SrtpMode,
    SrtpNegotiated,
    SrtpNegotiationError,
    SrtpOffer,
    SrtpPolicy,
    UnsupportedCryptoError,
    generate_crypto,
    parse_crypto,
    srtp_accept_answer,
    srtp_answer,
    srtp_offer,
)

ALL_SUITES = list(CryptoSuite)
TAG_LENGTH = {  # RFC 4568 6.2, RFC 7714 14.2: bytes SRTP appends to an RTP packet
    CryptoSuite.AES_CM_128_HMAC_SHA1_80: 10,
    CryptoSuite.AES_CM_128_HMAC_SHA1_32: 4,
    CryptoSuite.AEAD_AES_128_GCM: 16,
    CryptoSuite.AEAD_AES_256_GCM: 16,
}


def counting_bytes(start: int = 1) -> Callable[[int], bytes]:
    """Deterministic stand-in for secrets.token_bytes: distinct keys on every call."""
    counter = itertools.count(start)

    def token_bytes(n: int) -> bytes:
        seed = next(counter)
        return bytes((seed * 31 + i * 7) % 256 for i in range(n))

    return token_bytes


def rtp(seq: int, ssrc: int = 0x1234ABCD, payload: bytes = b"\xff" * 160, pt: int = 0) -> bytes:
    """A plain RTP packet (RFC 3550 5.1): V=2, no CSRC, timestamp 160 per packet."""
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc) + payload


def rtcp_rr(ssrc: int = 0x1234ABCD) -> bytes:
    """An empty RTCP receiver report (RFC 3550 6.4.2): 8 bytes."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


def pair(suite: CryptoSuite) -> tuple[SrtpContext, SrtpContext]:
    """Alice's and Bob's contexts: each protects with its key, checks with the other's."""
    a = generate_crypto(suite, 1)
    b = generate_crypto(suite, 1)
    return SrtpContext(a, b), SrtpContext(b, a)


# -- crypto attributes --------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_generate_parse_round_trip(suite: CryptoSuite) -> None:
    crypto = generate_crypto(suite, 7)
    text = str(crypto)
    tag, name, key = text.split()
    assert (tag, name) == ("7", suite.value)
    assert key.startswith("inline:")
    assert len(base64.b64decode(key[7:])) == suite.key_salt_length
    parsed = parse_crypto(text)
    assert parsed == crypto
    assert parsed.master_key_salt == crypto.master_key_salt
    assert str(parsed) == text


def test_generated_keys_are_random_and_fresh() -> None:
    keys = {generate_crypto().master_key_salt for _ in range(20)}
    assert len(keys) == 20


def test_rfc4568_example_with_lifetime_and_mki() -> None:
    # RFC 4568 section 9.1 / 6.1 example line.
    line = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:32"
    crypto = parse_crypto(line)
    assert crypto.tag == 1
    assert crypto.suite is CryptoSuite.AES_CM_128_HMAC_SHA1_80
    (key,) = crypto.keys
    assert key.lifetime == 2**20
    assert (key.mki, key.mki_length) == (1, 32)
    assert str(crypto) == line
    with pytest.raises(UnsupportedCryptoError, match="MKI"):
        crypto.check_usable()


def test_lifetime_only_is_usable_and_decimal_lifetime_kept() -> None:
    key = base64.b64encode(bytes(range(30))).decode()
    crypto = parse_crypto(f"2 AES_CM_128_HMAC_SHA1_32 inline:{key}|1000")
    crypto.check_usable()
    assert crypto.keys[0].lifetime == 1000
    assert crypto.master_key_salt == bytes(range(30))


def test_gcm_key_without_padding_is_accepted() -> None:
    material = bytes(range(28))
    text = base64.b64encode(material).decode().rstrip("=")
    crypto = parse_crypto(f"3 AEAD_AES_128_GCM inline:{text}")
    assert crypto.master_key_salt == material


def test_suite_name_is_case_insensitive() -> None:
    key = base64.b64encode(bytes(30)).decode()
    assert parse_crypto(f"1 aes_cm_128_hmac_sha1_80 inline:{key}").suite is (
        CryptoSuite.AES_CM_128_HMAC_SHA1_80
    )


GOOD_KEY = base64.b64encode(bytes(range(30))).decode()


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("1 AES_CM_128_HMAC_SHA1_80", "needs tag"),
        ("x AES_CM_128_HMAC_SHA1_80 inline:" + GOOD_KEY, "tag"),
        ("1234567890 AES_CM_128_HMAC_SHA1_80 inline:" + GOOD_KEY, "tag"),
        ("1 AES_CM_128_HMAC_SHA1_80 " + GOOD_KEY, "inline"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:@@@notbase64@@@", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + GOOD_KEY[:-1] + "*", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:A", "base64"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(29)).decode(), "29 bytes"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(32)).decode(), "needs 30"),
        ("1 AEAD_AES_128_GCM inline:" + GOOD_KEY, "needs 28"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + GOOD_KEY + "|2^20|1:32|9", "too many"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + GOOD_KEY + "|lots", "bad field"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + GOOD_KEY + "|1:999", "MKI length"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + GOOD_KEY + "|2^123456789012", "bad field"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:" + GOOD_KEY + "|1:4|2^20", "bad field"),
    ],
)
def test_malformed_lines_are_rejected_clearly(line: str, match: str) -> None:
    with pytest.raises(CryptoAttributeError, match=match) as info:
        parse_crypto(line)
    assert not isinstance(info.value, UnsupportedCryptoError)


@pytest.mark.parametrize(
    "line",
    [
        "1 F8_128_HMAC_SHA1_80 inline:" + GOOD_KEY,
        "1 AES_CM_128_HMAC_SHA1_80 mikey:" + GOOD_KEY,
    ],
)
def test_unknown_suite_or_key_method_is_unsupported(line: str) -> None:
    with pytest.raises(UnsupportedCryptoError):
        parse_crypto(line)


@pytest.mark.parametrize(
    ("params", "usable"),
    [
        ("WSH=128", True),
        ("FEC_ORDER=FEC_SRTP", True),
        ("KDR=20", False),
        ("UNENCRYPTED_SRTP", False),
        ("UNAUTHENTICATED_SRTP", False),
        ("UNENCRYPTED_SRTCP", False),
        ("WSH=64 UNENCRYPTED_SRTCP", False),
        ("SOMETHING_NEW", False),
    ],
)
def test_session_parameters(params: str, usable: bool) -> None:
    crypto = parse_crypto(f"1 AES_CM_128_HMAC_SHA1_80 inline:{GOOD_KEY} {params}")
    assert crypto.session_params == tuple(params.split())
    assert str(crypto).endswith(params)
    if usable:
        crypto.check_usable()
    else:
        with pytest.raises(UnsupportedCryptoError, match="session parameter"):
            crypto.check_usable()


def test_several_keys_are_parsed_but_unusable() -> None:
    line = f"1 AES_CM_128_HMAC_SHA1_80 inline:{GOOD_KEY}|2^20|1:4;inline:{GOOD_KEY}|2^20|2:4"
    crypto = parse_crypto(line)
    assert [k.mki for k in crypto.keys] == [1, 2]
    with pytest.raises(UnsupportedCryptoError, match="several"):
        crypto.check_usable()


def test_key_material_stays_out_of_repr() -> None:
    crypto = generate_crypto(token_bytes=lambda n: b"\xab" * n)
    assert "171" not in repr(crypto) and "xab" not in repr(crypto)
    assert "AES_CM_128_HMAC_SHA1_80" in repr(crypto)


def test_misuse_of_constructors_raises() -> None:
    with pytest.raises(ValueError, match="salt"):
        CryptoAttribute(1, CryptoSuite.AEAD_AES_128_GCM, (KeyParams(bytes(16), bytes(14)),))
    with pytest.raises(ValueError, match="tag"):
        generate_crypto(tag=10**9)
    with pytest.raises(ValueError, match="token_bytes"):
        generate_crypto(token_bytes=lambda n: b"short")


# -- packets ------------------------------------------------------------------------


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_two_contexts_talk_both_ways(suite: CryptoSuite) -> None:
    alice, bob = pair(suite)
    for seq in range(100, 110):
        packet = rtp(seq, payload=bytes([seq % 256]) * 160)
        protected = alice.protect_rtp(packet)
        assert len(protected) == len(packet) + TAG_LENGTH[suite]
        assert protected[:12] == packet[:12]  # RFC 3711 3.1: header stays in clear
        assert packet[12:] not in protected  # payload is encrypted
        assert bob.unprotect_rtp(protected) == packet
        reply = rtp(seq, ssrc=0x55, payload=b"\x7f" * 160)
        assert alice.unprotect_rtp(bob.protect_rtp(reply)) == reply


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_rtcp_round_trip(suite: CryptoSuite) -> None:
    alice, bob = pair(suite)
    report = rtcp_rr()
    protected = alice.protect_rtcp(report)
    assert len(protected) > len(report) + 4  # SRTCP index + tag (RFC 3711 3.4)
    assert bob.unprotect_rtcp(protected) == report
    assert alice.unprotect_rtcp(bob.protect_rtcp(rtcp_rr(0x55))) == rtcp_rr(0x55)


@pytest.mark.parametrize("suite", ALL_SUITES)
@pytest.mark.parametrize("offset", [1, 12, 100, -1])  # header, payload, payload, auth tag
def test_tampered_packet_fails_authentication(suite: CryptoSuite, offset: int) -> None:
    alice, bob = pair(suite)
    protected = bytearray(alice.protect_rtp(rtp(1)))
    protected[offset] ^= 0x01
    with pytest.raises(SrtpError) as info:
        bob.unprotect_rtp(bytes(protected))
    assert info.value.failure is SrtpFailure.AUTHENTICATION
    # The context goes on: the next honest packet is accepted.
    assert bob.unprotect_rtp(alice.protect_rtp(rtp(2))) == rtp(2)


def test_tampered_rtcp_fails_authentication() -> None:
    alice, bob = pair(CryptoSuite.AES_CM_128_HMAC_SHA1_32)
    protected = bytearray(alice.protect_rtcp(rtcp_rr()))
    protected[5] ^= 0x80
    with pytest.raises(SrtpError) as info:
        bob.unprotect_rtcp(bytes(protected))
    assert info.value.failure is SrtpFailure.AUTHENTICATION


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_replayed_packet_is_rejected(suite: CryptoSuite) -> None:
    alice, bob = pair(suite)
    first = alice.protect_rtp(rtp(10))
    assert bob.unprotect_rtp(first) == rtp(10)
    with pytest.raises(SrtpError) as info:
        bob.unprotect_rtp(first)
    assert info.value.failure is SrtpFailure.REPLAY


def test_reordering_inside_the_window_is_fine_but_too_old_is_replay() -> None:
    alice, bob = pair(CryptoSuite.AES_CM_128_HMAC_SHA1_80)
    packets = {seq: alice.protect_rtp(rtp(seq)) for seq in range(0, 300)}
    for seq in (1, 3, 2, 5, 4):  # RFC 3711 3.3.2: a late packet inside the window is new
        assert bob.unprotect_rtp(packets[seq]) == rtp(seq)
    assert bob.unprotect_rtp(packets[299]) == rtp(299)
    with pytest.raises(SrtpError) as info:  # 290 behind, outside the 128-packet window
        bob.unprotect_rtp(packets[9])
    assert info.value.failure is SrtpFailure.REPLAY


def test_replayed_rtcp_is_rejected() -> None:
    alice, bob = pair(CryptoSuite.AES_CM_128_HMAC_SHA1_80)
    protected = alice.protect_rtcp(rtcp_rr())
    bob.unprotect_rtcp(protected)
    with pytest.raises(SrtpError) as info:
        bob.unprotect_rtcp(protected)
    assert info.value.failure is SrtpFailure.REPLAY


@pytest.mark.parametrize("suite", ALL_SUITES)
def test_wrong_key_fails(suite: CryptoSuite) -> None:
    alice_key, bob_key, mallory_key = (generate_crypto(suite) for _ in range(3))
    alice = SrtpContext(alice_key, bob_key)
    confused = SrtpContext(bob_key, mallory_key)  # expects Mallory's key, gets Alice's
    with pytest.raises(SrtpError) as info:
        confused.unprotect_rtp(alice.protect_rtp(rtp(1)))
    assert info.value.failure is SrtpFailure.AUTHENTICATION
    with pytest.raises(SrtpError) as info:
        confused.unprotect_rtcp(alice.protect_rtcp(rtcp_rr()))
    assert info.value.failure is SrtpFailure.AUTHENTICATION


def test_sequence_rollover_keeps_decrypting() -> None:
    # RFC 3711 3.3.1: the receiver guesses the rollover counter across 65535 -> 0.
    alice, bob = pair(CryptoSuite.AES_CM_128_HMAC_SHA1_80)
    for seq in range(65530, 65546):
        assert bob.unprotect_rtp(alice.protect_rtp(rtp(seq))) == rtp(seq)


def test_new_ssrc_mid_call_is_accepted() -> None:
    alice, bob = pair(CryptoSuite.AES_CM_128_HMAC_SHA1_80)
    assert bob.unprotect_rtp(alice.protect_rtp(rtp(1, ssrc=1))) == rtp(1, ssrc=1)
    assert bob.unprotect_rtp(alice.protect_rtp(rtp(7000, ssrc=2))) == rtp(7000, ssrc=2)


@pytest.mark.parametrize(
    "packet",
    [b"", b"\x80\x00", rtp(1)[:11], b"\x00" + rtp(1)[1:], rtp(1, payload=bytes(2000))],
)
def test_malformed_packets(packet: bytes) -> None:
    alice, bob = pair(CryptoSuite.AES_CM_128_HMAC_SHA1_80)
    with pytest.raises(SrtpError) as info:
        bob.unprotect_rtp(packet)
    assert info.value.failure is SrtpFailure.MALFORMED
    with pytest.raises(SrtpError) as info:
        alice.protect_rtp(packet)
    assert info.value.failure is SrtpFailure.MALFORMED


def test_short_rtcp_is_malformed() -> None:
    alice, bob = pair(CryptoSuite.AES_CM_128_HMAC_SHA1_80)
    with pytest.raises(SrtpError) as info:
        bob.unprotect_rtcp(rtcp_rr()[:7])
    assert info.value.failure is SrtpFailure.MALFORMED


def test_context_takes_raw_lines_and_refuses_mixed_suites() -> None:
    a = generate_crypto(CryptoSuite.AES_CM_128_HMAC_SHA1_80)
    b = generate_crypto(CryptoSuite.AES_CM_128_HMAC_SHA1_80)
    alice, bob = SrtpContext(str(a), str(b)), SrtpContext(b, a)
    assert bob.unprotect_rtp(alice.protect_rtp(rtp(1))) == rtp(1)
    with pytest.raises(ValueError, match="suite"):
        SrtpContext(a, generate_crypto(CryptoSuite.AES_CM_128_HMAC_SHA1_32))
    with pytest.raises(UnsupportedCryptoError):
        SrtpContext(a, f"1 AES_CM_128_HMAC_SHA1_80 inline:{GOOD_KEY}|1:4")


# -- negotiation --------------------------------------------------------------------


def test_offer_per_mode() -> None:
    assert srtp_offer(SrtpMode.DISABLED) == SrtpOffer("RTP/AVP")
    optional = srtp_offer(SrtpMode.OPTIONAL)
    assert optional.proto == "RTP/AVP"
    assert [(c.tag, c.suite) for c in optional.crypto] == [
        (1, DEFAULT_SUITES[0]),
        (2, DEFAULT_SUITES[1]),
    ]
    mandatory = srtp_offer(SrtpMode.MANDATORY, [CryptoSuite.AEAD_AES_128_GCM])
    assert mandatory.proto == "RTP/SAVP"
    assert [c.suite for c in mandatory.crypto] == [CryptoSuite.AEAD_AES_128_GCM]
    assert mandatory.crypto_lines == (str(mandatory.crypto[0]),)
    with pytest.raises(ValueError):
        srtp_offer(SrtpMode.MANDATORY, [])


# What the offer contains, for the matrix below.
OFFERS: dict[str, tuple[str, list[str]]] = {
    "avp": ("RTP/AVP", []),
    "avp+crypto": ("RTP/AVP", [str(generate_crypto(tag=5))]),
    "avp+bad": ("RTP/AVP", ["5 AES_CM_128_HMAC_SHA1_80 inline:!!"]),
    "savp+crypto": ("RTP/SAVP", [str(generate_crypto(tag=5))]),
    "savp+bad": ("RTP/SAVP", ["5 AES_CM_128_HMAC_SHA1_80 inline:!!"]),
    "savp+unknown": ("RTP/SAVP", ["5 F8_128_HMAC_SHA1_80 inline:" + GOOD_KEY]),
    "savp": ("RTP/SAVP", []),
}


@pytest.mark.parametrize(
    ("mode", "offer", "outcome"),
    [
        (SrtpMode.DISABLED, "avp", "plain"),
        (SrtpMode.DISABLED, "avp+crypto", "plain"),
        (SrtpMode.DISABLED, "savp+crypto", 488),
        (SrtpMode.OPTIONAL, "avp", "plain"),
        (SrtpMode.OPTIONAL, "avp+crypto", "srtp"),
        (SrtpMode.OPTIONAL, "avp+bad", "plain"),
        (SrtpMode.OPTIONAL, "savp+crypto", "srtp"),
        (SrtpMode.OPTIONAL, "savp+bad", 488),
        (SrtpMode.OPTIONAL, "savp+unknown", 488),
        (SrtpMode.OPTIONAL, "savp", 488),
        (SrtpMode.MANDATORY, "avp", 488),
        (SrtpMode.MANDATORY, "avp+crypto", 488),
        (SrtpMode.MANDATORY, "savp+crypto", "srtp"),
        (SrtpMode.MANDATORY, "savp+bad", 488),
        (SrtpMode.MANDATORY, "savp", 488),
    ],
)
def test_answer_matrix(mode: SrtpMode, offer: str, outcome: str | int) -> None:
    proto, lines = OFFERS[offer]
    if isinstance(outcome, int):
        with pytest.raises(SrtpNegotiationError) as info:
            srtp_answer(mode, proto, lines)
        assert info.value.status == outcome
        return
    result = srtp_answer(mode, proto, lines)
    assert result.secure is (outcome == "srtp")
    if result.secure:
        assert result.remote is not None and result.local is not None
        assert str(result.remote) == lines[0]
        assert (result.local.tag, result.local.suite) == (5, result.remote.suite)
        assert result.local.master_key_salt != result.remote.master_key_salt


def test_answer_takes_first_acceptable_offered_line() -> None:
    lines = [
        "1 AES_256_CM_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(46)).decode(),
        "2 AEAD_AES_128_GCM inline:" + base64.b64encode(bytes(28)).decode(),
        f"3 AES_CM_128_HMAC_SHA1_80 inline:{GOOD_KEY}|2^20|1:4",  # MKI: not usable
        f"4 AES_CM_128_HMAC_SHA1_32 inline:{GOOD_KEY}",
        f"5 AES_CM_128_HMAC_SHA1_80 inline:{GOOD_KEY}",
    ]
    # GCM not enabled by default: tag 4 is the first we can do.
    result = srtp_answer(SrtpMode.MANDATORY, "RTP/SAVP", lines)
    assert result.local is not None and result.local.tag == 4
    assert result.local.suite is CryptoSuite.AES_CM_128_HMAC_SHA1_32
    with_gcm = srtp_answer(SrtpMode.MANDATORY, "RTP/SAVP", lines, list(CryptoSuite))
    assert with_gcm.local is not None and with_gcm.local.tag == 2


def test_answer_rejection_explains_each_line() -> None:
    with pytest.raises(SrtpNegotiationError, match="not base64.*not supported"):
        srtp_answer(
            SrtpMode.MANDATORY,
            "RTP/SAVP",
            ["1 AES_CM_128_HMAC_SHA1_80 inline:!!", "2 F8_128_HMAC_SHA1_80 inline:" + GOOD_KEY],
        )


def test_answer_refuses_other_profiles() -> None:
    with pytest.raises(SrtpNegotiationError, match="UDP/TLS/RTP/SAVPF"):
        srtp_answer(SrtpMode.OPTIONAL, "UDP/TLS/RTP/SAVPF", [])


def _answer_lines(offer: SrtpOffer, tag: int, suite: CryptoSuite | None = None) -> list[str]:
    chosen = next(c for c in offer.crypto if c.tag == tag)
    return [str(generate_crypto(suite or chosen.suite, tag))]


@pytest.mark.parametrize(
    ("mode", "answer", "outcome"),
    [
        (SrtpMode.DISABLED, ("RTP/AVP", None), "plain"),
        (SrtpMode.DISABLED, ("RTP/SAVP", 1), "error"),
        (SrtpMode.OPTIONAL, ("RTP/AVP", None), "plain"),
        (SrtpMode.OPTIONAL, ("RTP/AVP", 2), "srtp"),
        (SrtpMode.OPTIONAL, ("RTP/AVP", "wrong-tag"), "error"),
        (SrtpMode.OPTIONAL, ("RTP/AVP", "wrong-suite"), "error"),
        (SrtpMode.OPTIONAL, ("RTP/AVP", "two"), "error"),
        (SrtpMode.OPTIONAL, ("RTP/AVP", "bad"), "error"),
        (SrtpMode.MANDATORY, ("RTP/SAVP", 1), "srtp"),
        (SrtpMode.MANDATORY, ("RTP/SAVP", None), "error"),
        (SrtpMode.MANDATORY, ("RTP/SAVP", "bad"), "error"),
    ],
)
def test_accept_answer_matrix(
    mode: SrtpMode, answer: tuple[str, int | str | None], outcome: str
) -> None:
    offer = srtp_offer(mode)
    proto, kind = answer
    if kind is None:
        lines: list[str] = []
    elif isinstance(kind, int):
        lines = _answer_lines(offer, kind) if offer.crypto else [str(generate_crypto(tag=kind))]
    elif kind == "wrong-tag":
        lines = [str(generate_crypto(tag=9))]
    elif kind == "wrong-suite":
        lines = _answer_lines(offer, 1, CryptoSuite.AES_CM_128_HMAC_SHA1_32)
    elif kind == "two":
        lines = _answer_lines(offer, 1) + _answer_lines(offer, 2)
    else:
        lines = ["1 AES_CM_128_HMAC_SHA1_80 inline:" + base64.b64encode(bytes(12)).decode()]
    if outcome == "error":
        with pytest.raises(SrtpNegotiationError) as info:
            srtp_accept_answer(mode, offer, proto, lines)
        assert info.value.status is None  # the peer's answer is at fault: end the call
        return
    result = srtp_accept_answer(mode, offer, proto, lines)
    assert result.secure is (outcome == "srtp")
    if result.secure:
        assert result.local is not None and result.remote is not None
        assert result.local.tag == result.remote.tag
        assert result.local in offer.crypto


@pytest.mark.parametrize("mode", [SrtpMode.OPTIONAL, SrtpMode.MANDATORY])
def test_full_exchange_through_sdp_gives_working_contexts(mode: SrtpMode) -> None:
    """Offer -> SDP -> answer -> SDP -> accept; then media flows both ways."""
    offerer = srtp_offer(mode, token_bytes=counting_bytes(1))
    codecs = [CodecSpec("PCMU", 8000)]
    ours = LocalMedia("127.0.0.1", 4000, codecs, crypto=offerer.crypto_lines)
    offer_sdp = parse_sdp(create_offer(ours, 1, 1).to_bytes())
    offered = offer_sdp.media[0]
    # offer_answer writes RTP/SAVP whenever crypto is given; see the report.
    assert offered.proto == "RTP/SAVP"
    answerer = srtp_answer(mode, offered.proto, offered.crypto, token_bytes=counting_bytes(50))
    assert answerer.local is not None
    theirs = LocalMedia("127.0.0.1", 5000, codecs, crypto=[str(answerer.local)])
    answer_sdp, negotiated = create_answer(offer_sdp, theirs, 2, 1)
    assert negotiated is not None and negotiated.remote_crypto == offerer.crypto_lines[0]
    answered = parse_sdp(answer_sdp.to_bytes()).media[0]
    result = srtp_accept_answer(mode, offerer, answered.proto, answered.crypto)
    assert result.secure and answerer.secure
    a, b = result.context(), answerer.context()
    assert b.unprotect_rtp(a.protect_rtp(rtp(1))) == rtp(1)
    assert a.unprotect_rtp(b.protect_rtp(rtp(9, ssrc=9))) == rtp(9, ssrc=9)


def test_plain_outcome_has_no_context() -> None:
    with pytest.raises(ValueError, match="plain"):
        SrtpNegotiated().context()


@pytest.mark.parametrize(
    ("mode", "signaling", "tls", "sips", "expected"),
    [
        (SrtpMode.DISABLED, SecureSignaling.SIPS, False, False, SrtpMode.DISABLED),
        (SrtpMode.OPTIONAL, SecureSignaling.TLS, True, False, SrtpMode.OPTIONAL),
        # PJSUA (pjsua_media.c) refuses OPTIONAL too: no keys in clear, 488.
        (SrtpMode.OPTIONAL, SecureSignaling.TLS, False, False, None),
        (SrtpMode.OPTIONAL, SecureSignaling.SIPS, True, False, None),
        (SrtpMode.OPTIONAL, SecureSignaling.SIPS, True, True, SrtpMode.OPTIONAL),
        (SrtpMode.OPTIONAL, SecureSignaling.NONE, False, False, SrtpMode.OPTIONAL),
        (SrtpMode.MANDATORY, SecureSignaling.TLS, True, False, SrtpMode.MANDATORY),
        (SrtpMode.MANDATORY, SecureSignaling.TLS, False, False, None),
        (SrtpMode.MANDATORY, SecureSignaling.SIPS, True, False, None),
        (SrtpMode.MANDATORY, SecureSignaling.NONE, False, False, SrtpMode.MANDATORY),
    ],
)
def test_secure_signaling(
    mode: SrtpMode, signaling: SecureSignaling, tls: bool, sips: bool, expected: SrtpMode | None
) -> None:
    policy = SrtpPolicy(mode, signaling)
    if expected is None:
        with pytest.raises(SrtpNegotiationError, match="not secure") as info:
            policy.mode_for_call(tls=tls, sips=sips)
        assert info.value.status == 488
        assert f"srtp_secure_signaling={signaling.value}" in info.value.reason
    else:
        assert policy.mode_for_call(tls=tls, sips=sips) is expected


def test_policy_defaults_follow_pjsua() -> None:
    policy = SrtpPolicy()
    assert policy.mode is SrtpMode.DISABLED
    assert policy.secure_signaling is SecureSignaling.TLS  # PJSUA srtp_secure_signaling=1
    assert policy.suites == DEFAULT_SUITES
    with pytest.raises(ValueError):
        SrtpPolicy(SrtpMode.OPTIONAL, suites=())
