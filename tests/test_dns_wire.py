"""DNS wire codec: against dnslib-made packets, hand-made ones, and malformed input."""

from __future__ import annotations

import contextlib
import struct

import pytest
from dnslib import AAAA, CNAME, NAPTR, QTYPE, RR, SOA, SRV, A, DNSLabel, DNSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from sipstack.dns_wire import (
    AAAAData,
    AData,
    CNAMEData,
    DnsFormatError,
    Message,
    NAPTRData,
    OPTData,
    Question,
    RCode,
    Record,
    RType,
    SOAData,
    SRVData,
    UnknownData,
    decode_message,
    encode_message,
    encode_name,
    encode_query,
    make_flags,
)


def dnslib_response() -> bytes:
    """A response with every supported type; dnslib compresses the names."""
    request = DNSRecord.question("example.com", "NAPTR")
    request.header.id = 0x1234
    reply = request.reply()
    reply.add_answer(
        RR(
            "example.com",
            QTYPE.NAPTR,
            ttl=300,
            rdata=NAPTR(10, 50, b"s", b"SIPS+D2T", b"", DNSLabel("_sips._tcp.example.com")),
        )
    )
    reply.add_answer(
        RR("_sips._tcp.example.com", QTYPE.SRV, ttl=60, rdata=SRV(1, 20, 5061, "pbx.example.com"))
    )
    reply.add_answer(RR("alias.example.com", QTYPE.CNAME, ttl=30, rdata=CNAME("pbx.example.com")))
    reply.add_auth(
        RR(
            "example.com",
            QTYPE.SOA,
            ttl=900,
            rdata=SOA("ns.example.com", "hostmaster.example.com", (7, 3600, 600, 86400, 45)),
        )
    )
    reply.add_ar(RR("pbx.example.com", QTYPE.A, ttl=120, rdata=A("192.0.2.10")))
    reply.add_ar(RR("pbx.example.com", QTYPE.AAAA, ttl=120, rdata=AAAA("2001:db8::10")))
    return bytes(reply.pack())


class TestDecodeDnslib:
    def test_every_section_and_type(self) -> None:
        msg = decode_message(dnslib_response())
        assert msg.id == 0x1234
        assert msg.is_response and msg.rcode == RCode.NOERROR and not msg.truncated
        assert msg.questions == (Question("example.com", RType.NAPTR),)
        naptr, srv, cname = msg.answers
        assert naptr == Record(
            "example.com",
            RType.NAPTR,
            300,
            NAPTRData(10, 50, "s", "SIPS+D2T", "", "_sips._tcp.example.com"),
        )
        assert srv.data == SRVData(1, 20, 5061, "pbx.example.com") and srv.ttl == 60
        assert cname.data == CNAMEData("pbx.example.com")
        (soa,) = msg.authorities
        assert soa.data == SOAData(
            "ns.example.com", "hostmaster.example.com", 7, 3600, 600, 86400, 45
        )
        assert [r.data for r in msg.additionals] == [
            AData("192.0.2.10"),
            AAAAData("2001:db8::10"),
        ]

    def test_dnslib_really_compressed(self) -> None:
        # Otherwise the test above would not exercise pointer decoding.
        assert b"\xc0\x0c" in dnslib_response()

    def test_nxdomain_rcode(self) -> None:
        reply = DNSRecord.question("nope.example.com", "A").reply()
        reply.header.rcode = 3
        assert decode_message(bytes(reply.pack())).rcode == RCode.NXDOMAIN

    def test_trailing_bytes_are_ignored(self) -> None:
        data = dnslib_response()
        assert decode_message(data + b"\0\0junk") == decode_message(data)


class TestEncode:
    def test_query_is_understood_by_dnslib(self) -> None:
        wire = encode_query(0xBEEF, Question("_sip._udp.Example.COM", RType.SRV))
        parsed = DNSRecord.parse(wire)
        assert parsed.header.id == 0xBEEF
        assert parsed.header.rd == 1 and parsed.header.qr == 0
        assert str(parsed.q.qname) == "_sip._udp.Example.COM."
        assert parsed.q.qtype == QTYPE.SRV
        (opt,) = parsed.ar  # RFC 6891 OPT advertising our UDP payload size
        assert opt.rtype == QTYPE.OPT and opt.rclass == 1232

    def test_query_without_edns(self) -> None:
        wire = encode_query(1, Question("example.com", RType.A), edns_payload=None)
        assert DNSRecord.parse(wire).ar == []
        assert len(wire) == 12 + len(encode_name("example.com")) + 4

    def test_round_trip_all_types(self) -> None:
        records = (
            Record("a.example", RType.A, 1, AData("192.0.2.1")),
            Record("a.example", RType.AAAA, 2, AAAAData("::1")),
            Record("c.example", RType.CNAME, 3, CNAMEData("a.example")),
            Record("_sip._tcp.example", RType.SRV, 4, SRVData(0, 5, 5060, "a.example")),
            Record("example", RType.NAPTR, 5, NAPTRData(1, 2, "S", "SIP+D2T", "", "x.example")),
            Record("example", 99, 6, UnknownData(b"\x01\x02")),
        )
        soa = Record("example", RType.SOA, 7, SOAData("ns.example", "h.example", 1, 2, 3, 4, 5))
        opt = Record("", RType.OPT, 0, OPTData(b""), rclass=1232)
        message = Message(
            7,
            make_flags(response=True, authoritative=True, rcode=RCode.NXDOMAIN),
            (Question("example", RType.NAPTR),),
            records,
            (soa,),
            (opt,),
        )
        decoded = decode_message(encode_message(message))
        assert decoded == message
        assert decoded.authoritative and decoded.rcode == RCode.NXDOMAIN
        # and dnslib agrees on what we wrote
        theirs = DNSRecord.parse(encode_message(message))
        assert [str(r.rdata) for r in theirs.rr][:2] == ["192.0.2.1", "::1"]

    @pytest.mark.parametrize(
        "name",
        ["a..b", "x" * 64 + ".example", ".".join(["abcdefghi"] * 26), "caf\u00e9.example"],
    )
    def test_encode_name_rejects_bad_names(self, name: str) -> None:
        with pytest.raises(ValueError):
            encode_name(name)

    def test_root_and_trailing_dot(self) -> None:
        assert encode_name("") == encode_name(".") == b"\0"
        assert encode_name("a.b.") == encode_name("a.b") == b"\x01a\x01b\x00"


def header(qd: int = 0, an: int = 0, ns: int = 0, ar: int = 0, flags: int = 0x8180) -> bytes:
    return struct.pack("!HHHHHH", 1, flags, qd, an, ns, ar)


def rr(name: bytes, rtype: int, rdata: bytes, rdlength: int | None = None) -> bytes:
    length = len(rdata) if rdlength is None else rdlength
    return name + struct.pack("!HHIH", rtype, 1, 60, length) + rdata


class TestHandMade:
    def test_compression_pointer_in_srv_target(self) -> None:
        # question "example.com" at offset 12; the SRV target is "pbx" + pointer to it.
        qname = b"\x07example\x03com\x00"
        data = header(qd=1, an=1) + qname + struct.pack("!HH", 33, 1)
        srv = struct.pack("!HHH", 1, 2, 5060) + b"\x03pbx\xc0\x0c"
        data += rr(b"\xc0\x0c", 33, srv)
        (answer,) = decode_message(data).answers
        assert answer.name == "example.com"
        assert answer.data == SRVData(1, 2, 5060, "pbx.example.com")

    def test_ttl_with_top_bit_set_reads_as_zero(self) -> None:
        data = header(an=1) + b"\x01a\x00" + struct.pack("!HHIH", 1, 1, 0x80000001, 4) + bytes(4)
        assert decode_message(data).answers[0].ttl == 0  # RFC 2181 8

    def test_odd_label_bytes_are_escaped(self) -> None:
        data = header(an=1) + rr(b"\x03a.b\x02\x00z\x00", 1, bytes(4))
        assert decode_message(data).answers[0].name == "a\\.b.\\000z"


class TestMalformed:
    def test_every_truncation_of_a_valid_message_is_an_error(self) -> None:
        data = dnslib_response()
        for cut in range(len(data)):
            with pytest.raises(DnsFormatError):
                decode_message(data[:cut])

    def test_pointer_to_itself(self) -> None:
        data = header(qd=1) + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
        with pytest.raises(DnsFormatError, match="backwards"):
            decode_message(data)

    def test_pointer_loop_between_two_names(self) -> None:
        # name at 12 -> pointer to 14, name at 14 -> pointer to 12: one of them is forward
        data = header(qd=2) + b"\xc0\x0e" + b"\xc0\x0c" + struct.pack("!HH", 1, 1) * 2
        with pytest.raises(DnsFormatError):
            decode_message(data)

    def test_pointer_after_label_back_into_itself(self) -> None:
        # "a" then a pointer back to the start of the same name: a cycle if allowed
        data = header(qd=1) + b"\x01a\xc0\x0c" + struct.pack("!HH", 1, 1)
        # the pointer (at 14) targets 12 < 14, so it is "backwards", but following it
        # would read "a" + pointer again forever: the 255-octet cap must stop it.
        with pytest.raises(DnsFormatError, match="255"):
            decode_message(data)

    def test_pointer_past_end(self) -> None:
        with pytest.raises(DnsFormatError):
            decode_message(header(qd=1) + b"\xc0")

    def test_name_longer_than_255(self) -> None:
        name = b"\x3f" + b"x" * 63
        data = header(qd=1) + name * 4 + b"\x00" + struct.pack("!HH", 1, 1)
        with pytest.raises(DnsFormatError, match="255"):
            decode_message(data)

    def test_extended_label_type(self) -> None:
        with pytest.raises(DnsFormatError, match="label type"):
            decode_message(header(qd=1) + b"\x41\x00" + struct.pack("!HH", 1, 1))

    @pytest.mark.parametrize(
        ("rtype", "rdata", "rdlength"),
        [
            (1, bytes(5), None),  # A must be 4 octets
            (28, bytes(4), None),  # AAAA must be 16
            (1, bytes(4), 40),  # RDLENGTH beyond the end of the message
            (33, struct.pack("!HHH", 0, 0, 1) + b"\x00" + b"xx", None),  # SRV shorter than RDLENGTH
            (33, struct.pack("!HHH", 0, 0, 1) + b"\x01a\x00", 3),  # SRV longer than RDLENGTH
            (35, struct.pack("!HH", 1, 1) + b"\x05s", None),  # NAPTR string past RDATA
        ],
    )
    def test_bad_rdata_lengths(self, rtype: int, rdata: bytes, rdlength: int | None) -> None:
        with pytest.raises(DnsFormatError):
            decode_message(header(an=1) + rr(b"\x00", rtype, rdata, rdlength))

    def test_counts_larger_than_the_data(self) -> None:
        with pytest.raises(DnsFormatError):
            decode_message(header(qd=0xFFFF, an=0xFFFF))

    @settings(max_examples=400, deadline=None)
    @given(st.binary(max_size=300))
    def test_random_bytes_raise_only_format_errors(self, data: bytes) -> None:
        with contextlib.suppress(DnsFormatError):
            decode_message(data)

    @settings(max_examples=400, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6))
    def test_mutated_valid_messages_raise_only_format_errors(
        self, edits: list[tuple[int, int]]
    ) -> None:
        data = bytearray(dnslib_response())
        for offset, value in edits:
            data[offset % len(data)] = value
        with contextlib.suppress(DnsFormatError):
            decode_message(bytes(data))
