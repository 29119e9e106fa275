"""PIDF/RPID documents: building, parsing, round trips and hostile XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sipstack.pidf import (
    NS_DM,
    NS_PIDF,
    NS_RPID,
    RPID_ACTIVITIES,
    PidfError,
    PresenceStatus,
    build_pidf,
    build_status,
    parse_pidf,
)

ALICE = "sip:alice@example.com"


def q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


# -- building ------------------------------------------------------------------------


def test_build_uses_the_three_namespaces_and_rpid_person() -> None:
    doc = build_pidf(ALICE, True, "At the door", "away", "pers1", "tup1")
    root = ET.fromstring(doc)  # trusted: our own output
    assert root.tag == q(NS_PIDF, "presence")
    assert root.get("entity") == ALICE
    tup = root.find(q(NS_PIDF, "tuple"))
    assert tup is not None and tup.get("id") == "tup1"
    basic = root.find(f"{q(NS_PIDF, 'tuple')}/{q(NS_PIDF, 'status')}/{q(NS_PIDF, 'basic')}")
    assert basic is not None and basic.text == "open"
    person = root.find(q(NS_DM, "person"))
    assert person is not None and person.get("id") == "pers1"
    acts = person.find(q(NS_RPID, "activities"))
    assert acts is not None and [a.tag for a in acts] == [q(NS_RPID, "away")]
    note = person.find(q(NS_DM, "note"))
    assert note is not None and note.text == "At the door"
    assert doc.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')


def test_closed_without_activity_has_no_person() -> None:
    doc = build_pidf(ALICE, False, tuple_id="t9")
    root = ET.fromstring(doc)
    assert root.find(q(NS_DM, "person")) is None
    info = parse_pidf(doc)
    assert info.basic_open is False
    assert info.activities == ()
    assert info.note is None
    assert info.tuples[0].id == "t9"


def test_person_id_defaults_from_tuple_id() -> None:
    info = parse_pidf(build_pidf(ALICE, True, None, "busy", None, "abc"))
    assert info.person_id == "pabc"
    assert info.activities == ("busy",)


@pytest.mark.parametrize("activity", sorted(RPID_ACTIVITIES))
def test_every_rpid_activity_round_trips(activity: str) -> None:
    info = parse_pidf(build_pidf(ALICE, True, None, activity, "p1", "t1"))
    assert info.activities == (activity,)


def test_note_is_escaped_and_round_trips_exactly() -> None:
    note = 'Back <soon> & "maybe" \u00e9t\u00e9 \u2603 \U0001f6aa'
    doc = build_pidf(ALICE, True, note, "on-the-phone", "p", "t")
    assert b"<soon>" not in doc
    assert note.encode() not in doc  # escaped, not raw
    info = parse_pidf(doc)
    assert info.note == note
    assert info.notes == (note,)  # tuple and person carry it; reported once
    assert info.tuples[0].notes == (note,)


def test_characters_xml_cannot_carry_are_replaced() -> None:
    info = parse_pidf(build_pidf(ALICE, True, "a\x00b\x1bc\ufffed", tuple_id="t"))
    assert info.note == "a\ufffdb\ufffdc\ufffdd"


def test_entity_attribute_is_escaped() -> None:
    odd = 'sip:a"b&c@example.com'
    assert parse_pidf(build_pidf(odd, True, tuple_id="t")).entity == odd


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"activity": "napping"}, "activity"),
        ({"tuple_id": "1abc"}, "tuple id"),
        ({"tuple_id": 'a"b'}, "tuple id"),
        ({"activity": "away", "person_id": "has space"}, "person id"),
    ],
)
def test_caller_mistakes_raise_value_error(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_pidf(ALICE, True, **kwargs)


def test_build_status_matches_build_pidf() -> None:
    status = PresenceStatus(online=False, note="out", activity="away", person_id="me")
    assert build_status(ALICE, status, "t1") == build_pidf(ALICE, False, "out", "away", "me", "t1")


@given(st.text(max_size=200))
def test_any_note_round_trips(note: str) -> None:
    info = parse_pidf(build_pidf(ALICE, True, note, "away", "p", "t"))
    expected = "".join(
        "\ufffd"
        if (ord(c) < 0x20 and c not in "\t\n\r")
        or 0xD800 <= ord(c) <= 0xDFFF
        or c in "\ufffe\uffff"
        else c
        for c in note
    )
    # XML normalises CR/CRLF to LF (XML 1.0 section 2.11); the parser strips ends.
    expected = expected.replace("\r\n", "\n").replace("\r", "\n").strip()
    assert info.note == (expected or None)


# -- parsing other implementations' documents ----------------------------------------

FOREIGN = b"""<?xml version='1.0' encoding='UTF-8'?>
<p:presence xmlns:p='urn:ietf:params:xml:ns:pidf'
  xmlns:pdm='urn:ietf:params:xml:ns:pidf:data-model'
  xmlns:r='urn:ietf:params:xml:ns:pidf:rpid'
  xmlns:c='urn:ietf:params:xml:ns:pidf:cipid'
  xmlns:x='urn:example:unknown'
  entity='pres:bob@example.org'>
  <p:tuple id='a1'>
    <p:status><p:basic>closed</p:basic><x:mood>grumpy</x:mood></p:status>
    <p:contact priority='0.8'>sip:bob@192.0.2.7</p:contact>
    <p:note xml:lang='en'>desk</p:note>
  </p:tuple>
  <p:tuple id='a2'>
    <p:status><p:basic>open</p:basic></p:status>
  </p:tuple>
  <pdm:person id='b'>
    <r:activities><r:meeting/><r:other>fixing the door</r:other></r:activities>
    <c:homepage>http://example.org</c:homepage>
    <pdm:note>In a meeting</pdm:note>
  </pdm:person>
  <x:ignored mustUnderstand='false'/>
  <p:note>presence-level</p:note>
</p:presence>
"""


def test_foreign_prefixes_several_tuples_and_unknown_extensions() -> None:
    info = parse_pidf(FOREIGN)
    assert info.entity == "pres:bob@example.org"
    assert [(t.id, t.basic_open) for t in info.tuples] == [("a1", False), ("a2", True)]
    assert info.basic_open is True  # one open tuple is enough
    assert info.tuples[0].contact == "sip:bob@192.0.2.7"
    assert info.activities == ("meeting", "other")
    assert info.notes == ("In a meeting", "desk", "presence-level")
    assert info.person_id == "b"


def test_no_basic_anywhere_gives_none() -> None:
    doc = (
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">'
        b'<tuple id="x"><status/></tuple></presence>'
    )
    assert parse_pidf(doc).basic_open is None


def test_utf16_document_is_accepted() -> None:
    text = build_pidf(ALICE, True, "h\u00e9", tuple_id="t").decode()
    doc = text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    assert parse_pidf(doc).note == "h\u00e9"


# -- hostile and malformed input ---------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">
 <tuple id="t"><status><basic>open</basic></status><note>&lol4;</note></tuple>
</presence>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">
 <tuple id="t"><status><basic>open</basic></status><note>&xxe;</note></tuple>
</presence>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE presence SYSTEM "http://127.0.0.1:9/evil.dtd">
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"/>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE p [<!ENTITY % pe SYSTEM "file:///etc/passwd"> %pe;]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"/>"""

UNDECLARED_ENTITY = b"""<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">
<note>&nope;</note></presence>"""


@pytest.mark.parametrize(
    "doc",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity"],
)
def test_doctype_and_entities_are_refused(doc: bytes) -> None:
    with pytest.raises(PidfError, match="DOCTYPE"):
        parse_pidf(doc)


def test_doctype_hidden_in_utf16_is_refused() -> None:
    doc = BILLION_LAUGHS.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
    with pytest.raises(PidfError, match="DOCTYPE"):
        parse_pidf(doc.encode("utf-16"))


def test_undeclared_entity_is_malformed() -> None:
    with pytest.raises(PidfError, match="not well-formed"):
        parse_pidf(UNDECLARED_ENTITY)


def test_oversized_document_is_refused_before_parsing() -> None:
    doc = build_pidf(ALICE, True, "x" * 70000, tuple_id="t")
    with pytest.raises(PidfError, match="exceeds 65536"):
        parse_pidf(doc)
    assert parse_pidf(doc, max_size=200000).note == "x" * 70000


def test_deep_nesting_is_refused() -> None:
    inner = b"<a>" * 100 + b"</a>" * 100
    doc = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">' + inner
    doc += b"</presence>"
    with pytest.raises(PidfError, match="deeper"):
        parse_pidf(doc)


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        (b"", "not well-formed"),
        (b"not xml at all", "not well-formed"),
        (b'<presence entity="sip:a@b"/>', "not PIDF"),  # no namespace
        (b'<x:presence xmlns:x="urn:other" entity="sip:a@b"/>', "not PIDF"),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>', "entity"),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="s"><tuple/></presence>', "id"),
        (
            b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="s"><tuple id="t">'
            b"<status><basic>maybe</basic></status></tuple></presence>",
            "neither open nor closed",
        ),
        (
            b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:x="urn:x" entity="s">'
            b'<x:vital mustUnderstand="true"/></presence>',
            "extension",
        ),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="s"/>trailing', "not well-formed"),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="s"/><presence/>', "not well"),
    ],
)
def test_malformed_documents_raise_pidf_error(doc: bytes, match: str) -> None:
    with pytest.raises(PidfError, match=match):
        parse_pidf(doc)


def test_every_truncation_of_a_document_is_rejected() -> None:
    doc = build_pidf(ALICE, True, "note", "away", "p", "t")
    end = doc.rstrip().rfind(b"</presence>")
    for cut in range(end + len(b"</presence")):
        with pytest.raises(PidfError):
            parse_pidf(doc[:cut])
    assert parse_pidf(doc[: end + len(b"</presence>")]).note == "note"


def test_pidf_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        parse_pidf(b"<")
