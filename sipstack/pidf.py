"""PIDF presence documents (RFC 3863) with the RPID person extension (RFC 4480).

Two pure functions: :func:`build_pidf` writes the document a notifier sends in
NOTIFY and a publisher sends in PUBLISH; :func:`parse_pidf` reads one a peer
sent. Documents are built as text rather than with ``ElementTree`` because
``ElementTree.register_namespace`` mutates a process-wide registry (GUIDE: no
module-level mutable state) and because we want exactly the prefixes other
user agents (PJSIP, baresip, Kamailio's presence_xml) expect.

Parsing treats the body as hostile: it is size-bounded, a DOCTYPE (hence any
entity declaration: billion laughs, external entities) is refused outright, and
expat is driven directly so no entity is ever resolved.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NoReturn

from sipstack.errors import SipStackError
from sipstack.records import dataclass

if TYPE_CHECKING:
    # parsing imports these (ElementTree and expat, ~0.7 MiB): every account has a
    # presence notifier, few devices ever receive a PIDF body
    import xml.etree.ElementTree as ET

__all__ = [
    "CONTENT_TYPE",
    "MAX_PIDF_SIZE",
    "NS_DM",
    "NS_PIDF",
    "NS_RPID",
    "RPID_ACTIVITIES",
    "PidfError",
    "PresenceInfo",
    "PresenceStatus",
    "TupleInfo",
    "build_pidf",
    "build_status",
    "parse_pidf",
]

NS_PIDF = "urn:ietf:params:xml:ns:pidf"
NS_DM = "urn:ietf:params:xml:ns:pidf:data-model"  # RFC 4479
NS_RPID = "urn:ietf:params:xml:ns:pidf:rpid"  # RFC 4480
CONTENT_TYPE = "application/pidf+xml"  # RFC 3863 section 7 / RFC 3856 section 6.7

#: Upper bound of a document we parse; a presence document is a few hundred bytes.
MAX_PIDF_SIZE = 65536
_MAX_DEPTH = 32

#: RFC 4480 section 3.2 activity element names (``other`` carries free text).
RPID_ACTIVITIES = frozenset(
    {
        "appointment", "away", "breakfast", "busy", "dinner", "holiday", "in-transit",
        "looking-for-work", "meal", "meeting", "on-the-phone", "performance",
        "permanent-absence", "playing", "presentation", "shopping", "sleeping",
        "spectator", "steering", "travel", "tv", "unknown", "vacation", "working",
        "worship",
    }
)  # fmt: skip

# XML 1.0 section 2.3 Name restricted to ASCII NCName: tuple/person ids are xs:ID.
_NCNAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9._-]*")
# XML 1.0 section 2.2: characters that may not appear in a document at all.
_XML_INVALID_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class PidfError(SipStackError, ValueError):
    """A peer's presence document is malformed, hostile or not PIDF (the peer's fault)."""


@dataclass(frozen=True, slots=True)
class PresenceStatus:
    """What we tell watchers: the PJSUA ``online status`` plus the RPID element.

    ``activity`` is an RFC 4480 activity name (``away``, ``busy``,
    ``on-the-phone``, ``unknown``...); ``person_id`` is the RPID element id
    (PJSUA's ``pjrpid_element.id``), generated from the tuple id when None.
    """

    online: bool
    note: str | None = None
    activity: str | None = None
    person_id: str | None = None


@dataclass(frozen=True, slots=True)
class TupleInfo:
    """One ``<tuple>`` of a parsed document."""

    id: str
    basic_open: bool | None
    contact: str | None
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PresenceInfo:
    """A parsed PIDF document, reduced to what a phone shows.

    ``activities`` are RPID activity names from every person element (the text
    of an ``<rpid:other>`` element is reported as ``other``); ``notes`` are the
    person notes first, then tuple notes, then presence-level notes.
    """

    entity: str
    tuples: tuple[TupleInfo, ...]
    activities: tuple[str, ...]
    notes: tuple[str, ...]
    person_id: str | None = None

    @property
    def basic_open(self) -> bool | None:
        """True if any tuple is open, False if all stated ones are closed, None if none says."""
        states = [t.basic_open for t in self.tuples if t.basic_open is not None]
        if not states:
            return None
        return any(states)

    @property
    def note(self) -> str | None:
        """The most specific note (person before tuple before presence), or None."""
        return self.notes[0] if self.notes else None


# -- building ---------------------------------------------------------------------------


def _text(value: str) -> str:
    """Escape character data; characters XML cannot carry become U+FFFD."""
    value = _XML_INVALID_RE.sub("\ufffd", value)
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(value: str) -> str:
    return _text(value).replace('"', "&quot;").replace("\r", "&#13;").replace("\n", "&#10;")


def _check_id(value: str, what: str) -> str:
    if not _NCNAME_RE.fullmatch(value):
        raise ValueError(f"PIDF {what} {value!r} is not an XML ID (letter or '_' first)")
    return value


def build_pidf(
    entity_uri: str,
    basic_open: bool,
    note: str | None = None,
    activity: str | None = None,
    person_id: str | None = None,
    tuple_id: str = "t0",
    contact: str | None = None,
) -> bytes:
    """A UTF-8 PIDF document with one tuple and, when an activity is given, an RPID person.

    ``entity_uri`` is the presentity (the account URI, RFC 3863 section 4.1.1).
    The note goes in the tuple (read by plain PIDF watchers) and, with an
    activity, in the person too (RFC 4479 section 3.3 puts notes about the
    human there). ``activity`` must be one of :data:`RPID_ACTIVITIES`; ids must
    be XML IDs. Raises ``ValueError`` for either mistake (the caller's).
    """
    if activity is not None and activity not in RPID_ACTIVITIES:
        raise ValueError(f"RPID activity {activity!r} is not one of RFC 4480 section 3.2")
    _check_id(tuple_id, "tuple id")
    if activity is not None or person_id is not None:
        person = _check_id(person_id if person_id is not None else f"p{tuple_id}", "person id")
    else:
        person = None
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<presence xmlns="{NS_PIDF}" xmlns:dm="{NS_DM}" xmlns:rpid="{NS_RPID}"'
        f' entity="{_attr(entity_uri)}">',
        f' <tuple id="{tuple_id}">',
        # RFC 3863 section 4.1.4: basic is "open" or "closed".
        f"  <status><basic>{'open' if basic_open else 'closed'}</basic></status>",
    ]
    if contact is not None:
        lines.append(f"  <contact>{_text(contact)}</contact>")
    if note is not None:
        lines.append(f"  <note>{_text(note)}</note>")
    lines.append(" </tuple>")
    if person is not None:
        lines.append(f' <dm:person id="{person}">')
        if activity is not None:
            lines.append(f"  <rpid:activities><rpid:{activity}/></rpid:activities>")
        if note is not None:
            lines.append(f"  <dm:note>{_text(note)}</dm:note>")
        lines.append(" </dm:person>")
    lines.append("</presence>")
    return ("\n".join(lines) + "\n").encode("utf-8")


def build_status(entity_uri: str, status: PresenceStatus, tuple_id: str) -> bytes:
    """:func:`build_pidf` for a :class:`PresenceStatus`."""
    return build_pidf(
        entity_uri,
        status.online,
        note=status.note,
        activity=status.activity,
        person_id=status.person_id,
        tuple_id=tuple_id,
    )


# -- parsing ---------------------------------------------------------------------------


def _refuse_doctype(*_args: object) -> None:
    # No DTD means no entity declarations: no billion laughs, no external entities.
    raise PidfError("PIDF document has a DOCTYPE (entities are not accepted)")


def _refuse_entity(*_args: object) -> NoReturn:
    raise PidfError("PIDF document declares or references an external entity")


def _to_tree(body: bytes, max_size: int) -> ET.Element:
    """Parse ``body`` with expat into an ElementTree, refusing DTDs and entities."""
    import xml.etree.ElementTree as ET
    from xml.parsers import expat

    if len(body) > max_size:
        raise PidfError(f"PIDF document of {len(body)} bytes exceeds {max_size}")
    builder = ET.TreeBuilder()
    depth = 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth > _MAX_DEPTH:
            raise PidfError(f"PIDF document nests deeper than {_MAX_DEPTH} elements")
        builder.start(_clark(name), {_clark(k): v for k, v in attrs.items()})

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1
        builder.end(_clark(name))

    # namespace_separator makes expat resolve prefixes: names arrive as "uri local".
    parser = expat.ParserCreate(namespace_separator=" ")
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_doctype
    parser.EntityDeclHandler = _refuse_entity
    parser.UnparsedEntityDeclHandler = _refuse_entity
    parser.ExternalEntityRefHandler = _refuse_entity
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise PidfError(f"PIDF document is not well-formed XML: {exc}") from None
    try:
        return builder.close()
    except AssertionError:  # pragma: no cover - expat guarantees balance
        raise PidfError("PIDF document is not well-formed XML") from None


def _clark(name: str) -> str:
    uri, sep, local = name.rpartition(" ")
    return f"{{{uri}}}{local}" if sep else local


def _q(ns: str, local: str) -> str:
    return f"{{{ns}}}{local}"


_KNOWN_NS = (NS_PIDF, NS_DM, NS_RPID)


def _check_must_understand(element: ET.Element) -> None:
    """RFC 3863 section 4.3.2: an unknown extension flagged mustUnderstand voids the document."""
    for child in element.iter():
        ns = child.tag[1:].partition("}")[0] if child.tag.startswith("{") else ""
        flag = child.get(_q(NS_PIDF, "mustUnderstand"), child.get("mustUnderstand"))
        if ns not in _KNOWN_NS and flag in ("true", "1"):
            raise PidfError(f"PIDF document requires an extension we do not know: {child.tag}")


def _notes(element: ET.Element, tag: str) -> list[str]:
    return [(n.text or "").strip() for n in element.findall(tag) if (n.text or "").strip()]


def parse_pidf(body: bytes, max_size: int = MAX_PIDF_SIZE) -> PresenceInfo:
    """Read a PIDF document (RFC 3863) with RPID person elements (RFC 4480).

    Raises :class:`PidfError` when the body is larger than ``max_size``, not
    well-formed, carries a DOCTYPE or entity declaration, is not a PIDF
    ``<presence>`` with an ``entity``, or has a ``<basic>`` other than
    open/closed. Unknown elements are skipped unless marked mustUnderstand.
    """
    root = _to_tree(body, max_size)
    if root.tag != _q(NS_PIDF, "presence"):
        raise PidfError(f"root element is {root.tag!r}, not PIDF presence")
    entity = root.get("entity")
    if not entity:
        raise PidfError("PIDF presence element has no entity attribute (RFC 3863 4.1.1)")
    _check_must_understand(root)

    tuples = []
    for t in root.findall(_q(NS_PIDF, "tuple")):
        tuple_id = t.get("id")
        if not tuple_id:
            raise PidfError("PIDF tuple without an id (RFC 3863 4.1.2)")
        basic_el = t.find(f"{_q(NS_PIDF, 'status')}/{_q(NS_PIDF, 'basic')}")
        basic: bool | None = None
        if basic_el is not None:
            word = (basic_el.text or "").strip()
            if word not in ("open", "closed"):
                raise PidfError(f"PIDF basic status {word[:20]!r} is neither open nor closed")
            basic = word == "open"
        contact_el = t.find(_q(NS_PIDF, "contact"))
        contact = (contact_el.text or "").strip() or None if contact_el is not None else None
        tuples.append(TupleInfo(tuple_id, basic, contact, tuple(_notes(t, _q(NS_PIDF, "note")))))

    activities: list[str] = []
    person_notes: list[str] = []
    person_id: str | None = None
    for person in root.findall(_q(NS_DM, "person")):
        person_id = person_id or person.get("id")
        for acts in person.findall(_q(NS_RPID, "activities")):
            for act in acts:
                if act.tag.startswith(f"{{{NS_RPID}}}"):
                    activities.append(act.tag.partition("}")[2])
        person_notes += _notes(person, _q(NS_DM, "note"))

    notes = person_notes + [n for t in tuples for n in t.notes]
    notes += _notes(root, _q(NS_PIDF, "note"))
    # build_pidf repeats the note in tuple and person: report each text once.
    unique = tuple(dict.fromkeys(notes))
    return PresenceInfo(entity, tuple(tuples), tuple(activities), unique, person_id)
