"""RFC 4475 (SIP torture tests) and RFC 5118 (IPv6 torture tests) vectors.

The vectors are byte-exact copies of the RFCs' archives (tests/data/rfc4475,
tests/data/rfc5118, each with SHA256SUMS and the manifest). RFC 5118's archive
uses bare LF line ends and some wrong Content-Lengths, so the tests use its
``wire/`` form (CRLF, Content-Length recomputed), which is how the messages
travel; ``test_rfc5118_wire_matches_archive`` checks that the two differ only
in that.
"""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest

from sipstack.errors import SipParseError
from sipstack.message import Request, Response, parse_message

DATA = Path(__file__).parent / "data"


def _manifest(suite: str) -> list[dict[str, str]]:
    with (DATA / suite / "manifest.tsv").open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _vector(suite: str, name: str) -> bytes:
    if suite == "rfc4475":
        return (DATA / suite / f"{name}.dat").read_bytes()
    return (DATA / suite / "wire" / f"{name}.sip").read_bytes()


CASES = [
    (suite, row["name"], row["expected"])
    for suite in ("rfc4475", "rfc5118")
    for row in _manifest(suite)
]


def test_vector_counts_and_checksums() -> None:
    counts: dict[str, int] = {}
    for suite, _, expected in CASES:
        counts[f"{suite}:{expected}"] = counts.get(f"{suite}:{expected}", 0) + 1
    assert counts == {
        "rfc4475:valid": 13,
        "rfc4475:invalid": 19,
        "rfc4475:valid-but-app-reject": 14,
        "rfc4475:parse-or-400": 3,
        "rfc5118:valid": 11,
        "rfc5118:invalid": 1,
    }
    for suite in ("rfc4475", "rfc5118"):
        for line in (DATA / suite / "SHA256SUMS").read_text().splitlines():
            digest, name = line.split()
            assert hashlib.sha256((DATA / suite / name).read_bytes()).hexdigest() == digest, name


def _meaning(msg: Request | Response) -> tuple[object, ...]:
    """What the layers above read: must survive serialize-and-parse unchanged."""
    start = (msg.method, msg.uri) if isinstance(msg, Request) else (msg.status, msg.reason)
    return (
        start,
        [(v.protocol, v.transport, v.host, v.port, v.params) for v in msg.vias],
        msg.from_,
        msg.to,
        msg.call_id,
        msg.cseq,
        msg.contacts,
        msg.contact_star,
        msg.routes,
        msg.record_routes,
        msg.max_forwards,
        msg.expires,
        msg.content_type,
        [(n, v) for n, v in msg.headers if n != "Content-Length"],  # it follows the body
        msg.body,
    )


@pytest.mark.parametrize(
    ("suite", "name", "expected"), CASES, ids=[f"{s}-{n}" for s, n, _ in CASES]
)
def test_vector(suite: str, name: str, expected: str) -> None:
    data = _vector(suite, name)
    if expected == "invalid":
        with pytest.raises(SipParseError) as info:
            parse_message(data)
        is_response = data.startswith(b"SIP/")
        # RFC 3261 8.2.2 / 21.5.6: 505 for a bad version; responses are never answered.
        want = None if is_response else (505 if name == "badvers" else 400)
        assert info.value.status == want, info.value.reason
        return
    if expected == "parse-or-400":
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            assert exc.status == 400
            return
    else:
        msg = parse_message(data)
    again = parse_message(msg.to_bytes())
    assert again == msg
    assert _meaning(again) == _meaning(msg)
    # Trailing bytes after Content-Length are ignored on a datagram.
    if msg.headers.get("Content-Length") is not None:
        assert parse_message(data + b"\r\nJUNK") == msg


def test_parse_or_400_ones_are_rejected_for_the_right_reason() -> None:
    with pytest.raises(SipParseError, match="missing mandatory"):
        parse_message(_vector("rfc4475", "insuf"))
    with pytest.raises(SipParseError, match="more than one"):
        parse_message(_vector("rfc4475", "multi01"))
    with pytest.raises(SipParseError, match="more than one Content-Length"):
        parse_message(_vector("rfc4475", "mcl01"))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("badinv01", "Via"),
        ("clerr", "Content-Length"),
        ("ncl", "Content-Length"),
        ("scalar02", "CSeq|Max-Forwards|Expires"),
        ("scalarlg", "CSeq|Retry-After|Warning"),
        ("quotbal", "To"),
        ("ltgtruri", "request line|Request-URI"),
        ("lwsruri", "request line"),
        ("lwsstart", "request line"),
        ("trws", "request line"),
        ("escruri", "Request-URI"),
        ("baddate", "Date"),
        ("regbadct", "Contact"),
        ("badaspec", "To"),
        ("baddn", "From"),
        ("badvers", "version"),
        ("mismatch01", "CSeq method"),
        ("mismatch02", "CSeq method"),
        ("bigcode", "status line"),
    ],
)
def test_invalid_rejected_for_their_defect(name: str, reason: str) -> None:
    with pytest.raises(SipParseError, match=reason):
        parse_message(_vector("rfc4475", name))


def test_defects_in_headers_nobody_reads_are_still_caught() -> None:
    # baddate's only defect is its Date; scalarlg's Warning and Retry-After.
    data = _vector("rfc4475", "baddate")
    assert parse_message(data.replace(b"16:00:00 EST", b"16:00:00 GMT")).method == "INVITE"
    lg = _vector("rfc4475", "scalarlg").replace(b"9292394834772304023312", b"929239")
    with pytest.raises(SipParseError, match="Retry-After"):
        parse_message(lg)
    lg = lg.replace(b"949302838503028349304023988", b"94930")
    with pytest.raises(SipParseError, match="Warning"):
        parse_message(lg)
    assert parse_message(lg.replace(b"1812 overture", b"181 overture")).status == 503


def test_selected_valid_vectors_mean_what_the_rfc_says() -> None:
    wsinv = parse_message(_vector("rfc4475", "wsinv"))
    assert isinstance(wsinv, Request)
    assert wsinv.to.tag == "1918181833n"
    assert wsinv.from_.display_name == 'J Rosenberg \\"' and wsinv.from_.tag == "98asjd8"
    assert wsinv.max_forwards == 68 and wsinv.cseq.seq == 9
    assert [v.host for v in wsinv.vias] == ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    assert wsinv.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert wsinv.headers.get("Subject") == ""
    assert wsinv.contacts[0].display_name == 'Quoted string ""'
    assert wsinv.contacts[0].params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(wsinv.body) == 150

    dbl = parse_message(_vector("rfc4475", "dblreq"))
    assert isinstance(dbl, Request) and dbl.method == "REGISTER" and dbl.body == b""

    esc02 = parse_message(_vector("rfc4475", "esc02"))
    assert isinstance(esc02, Request) and esc02.method == "RE%47IST%45R"
    assert [str(c.uri) for c in esc02.contacts] == [
        "sip:alias1@host1.example.com",
        "sip:alias3@host3.example.com",
    ]
    assert esc02.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"

    intmeth = parse_message(_vector("rfc4475", "intmeth"))
    assert intmeth.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"

    unreason = parse_message(_vector("rfc4475", "unreason"))
    assert isinstance(unreason, Response) and unreason.reason.startswith("= 2**3 * 5**2 но")

    noreason = parse_message(_vector("rfc4475", "noreason"))
    assert isinstance(noreason, Response) and noreason.reason == ""

    longreq = parse_message(_vector("rfc4475", "longreq"))
    assert len(longreq.vias) == 34 and len(longreq.call_id) > 100

    mpart = parse_message(_vector("rfc4475", "mpart01"))
    assert (
        len(mpart.body) == 553 and mpart.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"
    )

    cparam01 = parse_message(_vector("rfc4475", "cparam01"))
    assert cparam01.contacts[0].params == {"unknownparam": None}
    cparam02 = parse_message(_vector("rfc4475", "cparam02"))
    assert cparam02.contacts[0].uri.params == {"unknownparam": None}

    unkscm = parse_message(_vector("rfc4475", "unkscm"))
    assert isinstance(unkscm, Request) and unkscm.uri.scheme == "nobodyknowsthisscheme"

    inv2543 = parse_message(_vector("rfc4475", "inv2543"))
    assert inv2543.top_via.branch is None and inv2543.max_forwards is None
    assert inv2543.body.startswith(b"v=0")


def test_rfc5118_semantics() -> None:
    good = parse_message(_vector("rfc5118", "ipv6-good"))
    assert isinstance(good, Request) and good.uri.host == "2001:db8::10"
    assert good.top_via.host == "2001:db8::9:1"
    amb = parse_message(_vector("rfc5118", "port-ambiguous"))
    assert isinstance(amb, Request) and (amb.uri.host, amb.uri.port) == ("2001:db8::10:5070", None)
    unamb = parse_message(_vector("rfc5118", "port-unambiguous"))
    assert isinstance(unamb, Request) and (unamb.uri.host, unamb.uri.port) == ("2001:db8::10", 5070)
    for name in ("via-received-param-with-delim", "via-received-param-no-delim"):
        assert parse_message(_vector("rfc5118", name)).top_via.received == "2001:db8::9:255"
    mapped = parse_message(_vector("rfc5118", "ipv4-mapped-ipv6"))
    assert mapped.top_via.sent_by == ("::ffff:192.0.2.10", 19823)


def test_rfc5118_wire_matches_archive() -> None:
    def lines(data: bytes, eol: bytes) -> list[bytes]:
        kept = [ln for ln in data.split(eol) if not ln.lower().startswith(b"content-length")]
        while kept and not kept[-1]:
            kept.pop()
        return kept

    for row in _manifest("rfc5118"):
        archive = (DATA / "rfc5118" / row["name"]).read_bytes()
        assert b"\r\n" not in archive
        assert lines(archive, b"\n") == lines(_vector("rfc5118", row["name"]), b"\r\n"), row["name"]
