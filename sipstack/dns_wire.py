"""DNS message wire format (RFC 1035 section 4) for the record types SIP needs.

Encodes queries (and, for completeness and tests, whole messages) and decodes
responses: A, AAAA (RFC 3596), CNAME, SOA (for negative-caching TTLs, RFC 2308),
SRV (RFC 2782) and NAPTR (RFC 3403). Other types decode to :class:`UnknownData`.

The decoder parses untrusted bytes from the network. Every read is bounds
checked; a compression pointer must point strictly backwards (RFC 1035 4.1.4
says "a prior occurrence"), which by itself makes a pointer loop impossible;
names are capped at 255 octets (RFC 1035 2.3.4). Anything malformed raises
:class:`DnsFormatError` (the sender's fault), never another exception type and
never an endless loop. Encoding never compresses (it is optional, RFC 1035 4.1.4).
"""

from __future__ import annotations

import enum
import ipaddress
import struct

from .records import dataclass

__all__ = [
    "AAAAData",
    "AData",
    "CNAMEData",
    "DnsFormatError",
    "Message",
    "NAPTRData",
    "OPTData",
    "Question",
    "RCode",
    "RData",
    "RType",
    "Record",
    "SOAData",
    "SRVData",
    "UnknownData",
    "decode_message",
    "encode_message",
    "encode_name",
    "encode_query",
    "make_flags",
]

CLASS_IN = 1
MAX_NAME_LENGTH = 255  # RFC 1035 2.3.4, in wire octets
MAX_LABEL_LENGTH = 63

_HEADER = struct.Struct("!HHHHHH")
_RR_FIXED = struct.Struct("!HHIH")  # type, class, ttl, rdlength
_SRV_FIXED = struct.Struct("!HHH")
_NAPTR_FIXED = struct.Struct("!HH")
_SOA_FIXED = struct.Struct("!IIIII")
_OCTET = struct.Struct("!B")

# Header flag bits (RFC 1035 4.1.1)
_QR = 0x8000
_AA = 0x0400
_TC = 0x0200
_RD = 0x0100
_RA = 0x0080


class DnsFormatError(ValueError):
    """Bytes received from a DNS server are not a valid DNS message (the server's fault)."""


class RType(enum.IntEnum):
    """Resource record types this module knows (IANA DNS parameters)."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    AAAA = 28
    SRV = 33
    NAPTR = 35
    OPT = 41


class RCode(enum.IntEnum):
    """Response codes (RFC 1035 4.1.1)."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5


@dataclass(frozen=True, slots=True)
class Question:
    """A question section entry. ``name`` is dotted text without the trailing dot."""

    name: str
    rtype: int
    rclass: int = CLASS_IN

    def key(self) -> tuple[str, int, int]:
        """Names compare case-insensitively (RFC 1035 2.3.3): the form to match on."""
        return (self.name.lower(), self.rtype, self.rclass)


@dataclass(frozen=True, slots=True)
class AData:
    """An IPv4 address (RFC 1035 3.4.1)."""

    address: str


@dataclass(frozen=True, slots=True)
class AAAAData:
    """An IPv6 address (RFC 3596 2.2), in compressed text form."""

    address: str


@dataclass(frozen=True, slots=True)
class CNAMEData:
    """The canonical name the owner is an alias for (RFC 1035 3.3.1)."""

    target: str


@dataclass(frozen=True, slots=True)
class SOAData:
    """Start of authority; ``minimum`` bounds negative caching (RFC 2308 section 5)."""

    mname: str
    rname: str
    serial: int
    refresh: int
    retry: int
    expire: int
    minimum: int


@dataclass(frozen=True, slots=True)
class SRVData:
    """A service location (RFC 2782). ``target`` "" means the root, i.e. "no service"."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class NAPTRData:
    """A naming authority pointer (RFC 3403 4.1). Text fields are bytes-as-latin-1 strings."""

    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True, slots=True)
class OPTData:
    """The EDNS(0) pseudo-record payload (RFC 6891 6.1.2); options kept raw."""

    options: bytes


@dataclass(frozen=True, slots=True)
class UnknownData:
    """RDATA of a type this module does not interpret (kept raw)."""

    data: bytes


RData = AData | AAAAData | CNAMEData | SOAData | SRVData | NAPTRData | OPTData | UnknownData


@dataclass(frozen=True, slots=True)
class Record:
    """A resource record. For OPT, ``rclass`` is the UDP payload size (RFC 6891)."""

    name: str
    rtype: int
    ttl: int
    data: RData
    rclass: int = CLASS_IN


@dataclass(frozen=True, slots=True)
class Message:
    """A whole DNS message. ``flags`` is the 16-bit header word (QR, opcode, ..., rcode)."""

    id: int
    flags: int
    questions: tuple[Question, ...] = ()
    answers: tuple[Record, ...] = ()
    authorities: tuple[Record, ...] = ()
    additionals: tuple[Record, ...] = ()

    @property
    def is_response(self) -> bool:
        """QR bit."""
        return bool(self.flags & _QR)

    @property
    def opcode(self) -> int:
        """Kind of query; 0 is a standard query."""
        return (self.flags >> 11) & 0xF

    @property
    def authoritative(self) -> bool:
        """AA bit."""
        return bool(self.flags & _AA)

    @property
    def truncated(self) -> bool:
        """TC bit: the answer did not fit the UDP payload (RFC 1035 4.2.1)."""
        return bool(self.flags & _TC)

    @property
    def recursion_desired(self) -> bool:
        """RD bit."""
        return bool(self.flags & _RD)

    @property
    def recursion_available(self) -> bool:
        """RA bit."""
        return bool(self.flags & _RA)

    @property
    def rcode(self) -> int:
        """The 4-bit response code (extended rcodes from OPT are not combined)."""
        return self.flags & 0xF


def make_flags(
    *,
    response: bool = False,
    opcode: int = 0,
    authoritative: bool = False,
    truncated: bool = False,
    recursion_desired: bool = True,
    recursion_available: bool = False,
    rcode: int = 0,
) -> int:
    """Build the header flags word (RFC 1035 4.1.1)."""
    if not 0 <= opcode <= 15 or not 0 <= rcode <= 15:
        raise ValueError("opcode and rcode are 4-bit fields")
    flags = (opcode << 11) | rcode
    if response:
        flags |= _QR
    if authoritative:
        flags |= _AA
    if truncated:
        flags |= _TC
    if recursion_desired:
        flags |= _RD
    if recursion_available:
        flags |= _RA
    return flags


# -- encoding -------------------------------------------------------------------


def encode_name(name: str) -> bytes:
    """Encode a dotted name (trailing dot optional; "" or "." is the root).

    Raises ``ValueError`` for names the caller should never have built: empty
    labels, labels over 63 octets, names over 255 octets, non-ASCII text.
    """
    text = name[:-1] if name.endswith(".") else name
    out = bytearray()
    if text:
        for label in text.split("."):
            raw = label.encode("ascii")  # UnicodeEncodeError is a ValueError
            if not raw:
                raise ValueError(f"empty label in DNS name {name!r}")
            if len(raw) > MAX_LABEL_LENGTH:
                raise ValueError(f"label longer than 63 octets in DNS name {name!r}")
            out.append(len(raw))
            out += raw
    out.append(0)
    if len(out) > MAX_NAME_LENGTH:
        raise ValueError(f"DNS name longer than 255 octets: {name!r}")
    return bytes(out)


def _character_string(text: str) -> bytes:
    raw = text.encode("latin-1")
    if len(raw) > 255:
        raise ValueError("character-string longer than 255 octets")
    return bytes([len(raw)]) + raw


def _encode_rdata(data: RData) -> bytes:
    if isinstance(data, AData):
        return ipaddress.IPv4Address(data.address).packed
    if isinstance(data, AAAAData):
        return ipaddress.IPv6Address(data.address).packed
    if isinstance(data, CNAMEData):
        return encode_name(data.target)
    if isinstance(data, SRVData):
        return _SRV_FIXED.pack(data.priority, data.weight, data.port) + encode_name(data.target)
    if isinstance(data, NAPTRData):
        return (
            _NAPTR_FIXED.pack(data.order, data.preference)
            + _character_string(data.flags)
            + _character_string(data.service)
            + _character_string(data.regexp)
            + encode_name(data.replacement)
        )
    if isinstance(data, SOAData):
        return (
            encode_name(data.mname)
            + encode_name(data.rname)
            + _SOA_FIXED.pack(data.serial, data.refresh, data.retry, data.expire, data.minimum)
        )
    if isinstance(data, OPTData):
        return data.options
    return data.data


def _encode_record(record: Record) -> bytes:
    rdata = _encode_rdata(record.data)
    if len(rdata) > 0xFFFF:
        raise ValueError("RDATA longer than 65535 octets")
    fixed = _RR_FIXED.pack(record.rtype, record.rclass, record.ttl, len(rdata))
    return encode_name(record.name) + fixed + rdata


def encode_message(message: Message) -> bytes:
    """Serialize a whole message without name compression."""
    sections = (message.answers, message.authorities, message.additionals)
    out = bytearray(
        _HEADER.pack(
            message.id,
            message.flags,
            len(message.questions),
            *(len(section) for section in sections),
        )
    )
    for question in message.questions:
        out += encode_name(question.name) + struct.pack("!HH", question.rtype, question.rclass)
    for section in sections:
        for record in section:
            out += _encode_record(record)
    return bytes(out)


def encode_query(
    query_id: int,
    question: Question,
    *,
    recursion_desired: bool = True,
    edns_payload: int | None = 1232,
) -> bytes:
    """A standard query for one question.

    ``edns_payload`` adds an OPT record (RFC 6891) advertising that UDP payload
    size, so SRV answers with several targets are less likely to be truncated;
    1232 is the DNS Flag Day 2020 value that avoids IP fragmentation. ``None``
    sends a plain RFC 1035 query (for servers that answer FORMERR to EDNS).
    """
    if not 0 <= query_id <= 0xFFFF:
        raise ValueError("query id is a 16-bit field")
    additionals: tuple[Record, ...] = ()
    if edns_payload is not None:
        additionals = (Record("", RType.OPT, 0, OPTData(b""), rclass=edns_payload),)
    message = Message(
        id=query_id,
        flags=make_flags(recursion_desired=recursion_desired),
        questions=(question,),
        additionals=additionals,
    )
    return encode_message(message)


# -- decoding -------------------------------------------------------------------


def _label_text(raw: bytes) -> str:
    # RFC 1035 5.1 master-file escapes keep names unambiguous: a label byte that
    # is "." or "\" or not printable ASCII cannot be confused with a separator.
    parts: list[str] = []
    for byte in raw:
        if byte in (0x2E, 0x5C):
            parts.append("\\" + chr(byte))
        elif 0x21 <= byte <= 0x7E:
            parts.append(chr(byte))
        else:
            parts.append(f"\\{byte:03d}")
    return "".join(parts)


class _Reader:
    """Bounds-checked cursor over one message."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def need(self, count: int, what: str) -> None:
        if self.pos + count > len(self.data):
            raise DnsFormatError(
                f"truncated DNS message: {what} needs {count} octets at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left"
            )

    def take(self, count: int, what: str) -> bytes:
        self.need(count, what)
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def unpack(self, fmt: struct.Struct, what: str) -> tuple[int, ...]:
        self.need(fmt.size, what)
        values = fmt.unpack_from(self.data, self.pos)
        self.pos += fmt.size
        return tuple(int(v) for v in values)

    def name(self) -> str:
        """Read a possibly compressed name; leaves ``pos`` after its in-place part."""
        data = self.data
        labels: list[str] = []
        wire_length = 1  # the terminating root label
        pos = self.pos
        resume: int | None = None  # where the caller continues after the first pointer
        while True:
            if pos >= len(data):
                raise DnsFormatError(f"truncated DNS name at offset {pos}")
            length = data[pos]
            kind = length & 0xC0
            if kind == 0xC0:
                if pos + 1 >= len(data):
                    raise DnsFormatError(f"truncated compression pointer at offset {pos}")
                target = ((length & 0x3F) << 8) | data[pos + 1]
                # RFC 1035 4.1.4: a pointer refers to a *prior* occurrence. Requiring
                # target < pos makes every jump go strictly backwards: no loops.
                if target >= pos:
                    raise DnsFormatError(
                        f"compression pointer at offset {pos} does not point backwards"
                    )
                if resume is None:
                    resume = pos + 2
                pos = target
                continue
            if kind != 0:
                # 0x40 / 0x80: extended label types (RFC 6891 obsoleted them).
                raise DnsFormatError(f"unsupported label type {kind:#x} at offset {pos}")
            if length == 0:
                pos += 1
                break
            if pos + 1 + length > len(data):
                raise DnsFormatError(f"truncated DNS label at offset {pos}")
            wire_length += 1 + length
            if wire_length > MAX_NAME_LENGTH:
                raise DnsFormatError("DNS name longer than 255 octets")
            labels.append(_label_text(data[pos + 1 : pos + 1 + length]))
            pos += 1 + length
        self.pos = resume if resume is not None else pos
        return ".".join(labels)

    def character_string(self, what: str) -> str:
        (length,) = self.unpack(_OCTET, what)
        return self.take(length, what).decode("latin-1")


def _decode_rdata(reader: _Reader, rtype: int, rdlength: int) -> RData:
    start = reader.pos
    end = start + rdlength
    reader.need(rdlength, "RDATA")
    data: RData
    if rtype == RType.A:
        if rdlength != 4:
            raise DnsFormatError(f"A record RDATA is {rdlength} octets, not 4")
        data = AData(str(ipaddress.IPv4Address(reader.take(4, "A"))))
    elif rtype == RType.AAAA:
        if rdlength != 16:
            raise DnsFormatError(f"AAAA record RDATA is {rdlength} octets, not 16")
        data = AAAAData(str(ipaddress.IPv6Address(reader.take(16, "AAAA"))))
    elif rtype == RType.CNAME:
        data = CNAMEData(reader.name())
    elif rtype == RType.SRV:
        priority, weight, port = reader.unpack(_SRV_FIXED, "SRV")
        data = SRVData(priority, weight, port, reader.name())
    elif rtype == RType.NAPTR:
        order, preference = reader.unpack(_NAPTR_FIXED, "NAPTR")
        flags = reader.character_string("NAPTR flags")
        service = reader.character_string("NAPTR service")
        regexp = reader.character_string("NAPTR regexp")
        data = NAPTRData(order, preference, flags, service, regexp, reader.name())
    elif rtype == RType.SOA:
        mname = reader.name()
        rname = reader.name()
        serial, refresh, retry, expire, minimum = reader.unpack(_SOA_FIXED, "SOA")
        data = SOAData(mname, rname, serial, refresh, retry, expire, minimum)
    elif rtype == RType.OPT:
        data = OPTData(reader.take(rdlength, "OPT"))
    else:
        data = UnknownData(reader.take(rdlength, "RDATA"))
    # Names inside RDATA may point outside it, but what is written in place must
    # fill RDLENGTH exactly: a mismatch means the record boundaries are lies.
    if reader.pos != end:
        raise DnsFormatError(
            f"RDATA of type {rtype} is {reader.pos - start} octets, RDLENGTH says {rdlength}"
        )
    return data


def _decode_record(reader: _Reader) -> Record:
    name = reader.name()
    rtype, rclass, ttl, rdlength = reader.unpack(_RR_FIXED, "resource record")
    # RFC 2181 8: a TTL with the top bit set is treated as zero.
    if ttl & 0x80000000:
        ttl = 0
    data = _decode_rdata(reader, rtype, rdlength)
    return Record(name, rtype, ttl, data, rclass)


def decode_message(data: bytes) -> Message:
    """Parse a DNS message; raises :class:`DnsFormatError` on anything malformed.

    Octets after the last record are ignored (some middleboxes pad datagrams).
    """
    reader = _Reader(bytes(data))
    msg_id, flags, qdcount, ancount, nscount, arcount = reader.unpack(_HEADER, "header")
    try:
        questions: list[Question] = []
        for _ in range(qdcount):
            name = reader.name()
            rtype, rclass = reader.unpack(_NAPTR_FIXED, "question")
            questions.append(Question(name, rtype, rclass))
        sections: list[tuple[Record, ...]] = []
        for count in (ancount, nscount, arcount):
            sections.append(tuple(_decode_record(reader) for _ in range(count)))
    except DnsFormatError:
        raise
    except ValueError as exc:  # e.g. ipaddress on impossible input: still the sender's fault
        raise DnsFormatError(f"invalid DNS message: {exc}") from exc
    return Message(msg_id, flags, tuple(questions), sections[0], sections[1], sections[2])
