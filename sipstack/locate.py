"""Locating SIP servers (RFC 3263) as a pure state machine.

:class:`ServerLocator` turns ``(host, port, transport, secure)`` from a SIP URI
into an ordered list of :class:`Target` s. It never touches a socket or a
clock: it hands out DNS questions (:meth:`ServerLocator.next_query`), is fed
the decoded responses or a :class:`DnsError` (:meth:`ServerLocator.receive_answer`)
and finishes with :meth:`ServerLocator.result`. ``sipstack.resolver`` is the
I/O adapter that runs it on the loop.

The whole list is returned, not just the first hop, because RFC 3263 4.3 asks
the client to fail over to the next SRV target / address on a timeout, a
transport error or a 503: :class:`TargetList` walks it.

The DNS answer cache and the DNS failure types live in ``sipstack.dns_cache``,
:class:`Target`, :class:`TargetList`, :class:`FailureReason` and
:class:`LocateError` in ``sipstack.targets`` (which needs no DNS code, so that
the endpoint imports it without this module); all are re-exported here because
the resolver and callers import them from this module.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from collections.abc import Iterable, Mapping, Sequence

from sipstack.dns_cache import (
    CachedAnswer,
    DnsCache,
    DnsError,
    DnsNameNotFound,
    DnsServerFailure,
    DnsTimeout,
    negative_answer_ttl,
)
from sipstack.dns_wire import (
    AAAAData,
    AData,
    CNAMEData,
    Message,
    NAPTRData,
    Question,
    RCode,
    Record,
    RType,
    SRVData,
)
from sipstack.records import dataclass
from sipstack.targets import FailureReason, LocateError, Target, TargetList

__all__ = [
    "DEFAULT_PORTS",
    "CachedAnswer",
    "DnsCache",
    "DnsError",
    "DnsNameNotFound",
    "DnsServerFailure",
    "DnsTimeout",
    "FailureReason",
    "LocateError",
    "LocatorState",
    "ServerLocator",
    "Target",
    "TargetList",
    "order_srv",
    "sent_by_locator",
]

TRANSPORTS = ("udp", "tcp", "tls")
# RFC 3261 19.1.2: 5060 for sip over UDP/TCP, 5061 for TLS.
DEFAULT_PORTS: Mapping[str, int] = {"udp": 5060, "tcp": 5060, "tls": 5061}
# RFC 3263 4.1 / 4.2: "_sips" names TLS over TCP, also for a sip URI using TLS.
_SRV_PREFIX: Mapping[str, str] = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
# RFC 3263 4.1 (IANA registry): NAPTR service field -> transport. D2S (SCTP) unsupported.
_NAPTR_SERVICES: Mapping[str, str] = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
_ADDRESS_TYPES: Mapping[int, int] = {4: RType.A, 6: RType.AAAA}


def _follow_chain(
    records: Sequence[Record], name: str, rtype: int
) -> tuple[tuple[Record, ...], str, float]:
    """Records of ``rtype`` for ``name`` after CNAMEs in the answer section.

    Returns (records, the name the chain ends at, the smallest TTL along it).
    Looping or overlong chains stop where they are (RFC 1034 3.6.2 loops).
    """
    current = name.lower()
    ttl = float("inf")
    seen = {current}
    while True:
        found = tuple(r for r in records if r.rtype == rtype and r.name.lower() == current)
        if found:
            return found, current, min([ttl, *(r.ttl for r in found)])
        alias = next(
            (r for r in records if r.rtype == RType.CNAME and r.name.lower() == current), None
        )
        if alias is None or not isinstance(alias.data, CNAMEData):
            return (), current, ttl
        ttl = min(ttl, alias.ttl)
        current = alias.data.target.lower()
        if current in seen:
            return (), current, ttl
        seen.add(current)


# -- SRV ordering -----------------------------------------------------------------


def order_srv(records: Iterable[SRVData], rng: random.Random) -> list[SRVData]:
    """Order SRV records per RFC 2782 "Usage rules": priority, then weighted random.

    Records whose target is "." (here ``""``) mean "no service here" and are dropped.
    """
    usable = [r for r in records if r.target not in ("", ".")]
    ordered: list[SRVData] = []
    for priority in sorted({r.priority for r in usable}):
        # RFC 2782: weight-0 records go first so they have a small chance of being
        # picked; then repeatedly pick by running sum against a uniform [0, total].
        group = sorted((r for r in usable if r.priority == priority), key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            threshold = rng.randint(0, total)
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running >= threshold:
                    ordered.append(group.pop(index))
                    break
    return ordered


# -- the locator ------------------------------------------------------------------


class LocatorState(enum.Enum):
    """Which RFC 3263 step the locator is in."""

    NAPTR = "naptr"  # 4.1: which transports does the domain offer?
    SRV = "srv"  # 4.2: which hosts and ports serve those transports?
    ADDRESS = "address"  # 4.2: A/AAAA of each host
    DONE = "done"


@dataclass(frozen=True, slots=True)
class _Hop:
    """A host name still to be turned into addresses."""

    name: str
    port: int
    transport: str


@dataclass(frozen=True, slots=True)
class _Asker:
    """Who is waiting for a question: the original (name, type) and CNAME depth."""

    origin: tuple[str, int]
    depth: int


def _ip_literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class ServerLocator:
    """RFC 3263 section 4 for one URI, as a sans-IO machine.

    Drive it like this::

        while not locator.done:
            for q in iter(locator.next_query, None): send q
            ... locator.receive_answer(q, message_or_dns_error, now)
        targets = locator.result()

    Several questions may be outstanding at once (the SRV look-ups for each
    transport, A and AAAA of each target); answer them in any order.

    ``transport`` is the URI's transport parameter (None if absent); ``secure``
    is True for a sips URI (TLS only, RFC 3261 26.2.2). ``supported_transports``
    are what this client can use, in order of preference when the domain has no
    NAPTR records. ``hosts`` maps lower-case names to addresses (the parsed
    /etc/hosts): a host found there is used as if it were numeric, with no
    NAPTR/SRV step. ``ip_versions`` picks and orders A (4) / AAAA (6) look-ups.
    ``rng`` drives the RFC 2782 weighted choice. Bad arguments raise ``ValueError``.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        transport: str | None = None,
        secure: bool = False,
        *,
        supported_transports: Sequence[str] = ("tls", "tcp", "udp"),
        cache: DnsCache | None = None,
        now: float,
        rng: random.Random | None = None,
        hosts: Mapping[str, Sequence[str]] | None = None,
        ip_versions: Sequence[int] = (4, 6),
        max_cname_depth: int = 8,
    ) -> None:
        host = host.strip()
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
        host = host.lower().rstrip(".")
        if not host:
            raise ValueError("empty host")
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port {port} out of range")
        supported = tuple(t.lower() for t in supported_transports)
        for name in supported:
            if name not in TRANSPORTS:
                raise ValueError(f"unsupported transport {name!r}; choose from {TRANSPORTS}")
        if transport is not None:
            transport = transport.lower()
            if secure and transport == "tcp":
                transport = "tls"  # sips;transport=tcp means TLS over TCP (RFC 3261 26.2.2)
            if transport not in TRANSPORTS:
                raise ValueError(f"unsupported transport {transport!r}")
            if secure and transport != "tls":
                raise ValueError(f"a sips URI cannot use transport {transport!r}")
            if transport not in supported:
                raise ValueError(f"transport {transport!r} is not among {supported}")
        if secure:
            if "tls" not in supported:
                raise ValueError("a sips URI needs TLS, which is not supported here")
            supported = ("tls",)
        if not set(ip_versions) <= {4, 6} or not ip_versions:
            raise ValueError("ip_versions must be a non-empty sequence of 4 and/or 6")

        self.host = host
        self._port = port
        self._transport = transport
        self._secure = secure
        self._supported = supported
        self._cache = cache if cache is not None else DnsCache()
        self._rng = rng if rng is not None else random.Random()
        self._hosts = hosts if hosts is not None else {}
        self._ip_versions = tuple(dict.fromkeys(ip_versions))
        self._max_cname_depth = max_cname_depth

        self._state = LocatorState.NAPTR
        self._unsent: list[Question] = []
        self._waiting: dict[tuple[str, int, int], tuple[Question, list[_Asker]]] = {}
        self._answers: dict[tuple[str, int], tuple[Record, ...]] = {}
        self._errors: list[DnsError] = []
        self._services: list[tuple[str, str]] = []  # (SRV name, transport), in order
        self._hops: list[_Hop] = []
        self._targets: list[Target] = []
        self._start(now)

    # -- public surface ---------------------------------------------------------

    @property
    def state(self) -> LocatorState:
        """The current step."""
        return self._state

    @property
    def done(self) -> bool:
        """True once :meth:`result` is available."""
        return self._state is LocatorState.DONE

    def next_query(self) -> Question | None:
        """The next DNS question to send, or None when nothing new needs asking."""
        return self._unsent.pop(0) if self._unsent else None

    def receive_answer(self, question: Question, answer: Message | DnsError, now: float) -> None:
        """Feed the decoded response to ``question`` (or why there is none).

        The adapter has already matched the response's id and question section.
        Asking about a question that is not outstanding is a caller bug (ValueError).
        """
        entry = self._waiting.pop(question.key(), None)
        if entry is None:
            raise ValueError(f"no outstanding question {question}")
        if question in self._unsent:
            self._unsent.remove(question)
        for asker in entry[1]:
            self._absorb(asker, question, answer, now)
        self._advance(now)

    def result(self) -> list[Target]:
        """The ordered targets (empty when nothing was found; see :attr:`error`)."""
        if not self.done:
            raise RuntimeError("ServerLocator.result() called before it is done")
        return list(self._targets)

    @property
    def error(self) -> LocateError | None:
        """Why the result is empty, once done; None when there are targets."""
        if not self.done or self._targets:
            return None
        return LocateError(self.host, self._errors)

    # -- RFC 3263 steps -----------------------------------------------------------

    def _start(self, now: float) -> None:
        literal = _ip_literal(self.host)
        transport = self._transport or self._default_transport()
        if literal is not None:
            # 4.1/4.2: numeric IP: no DNS; transport from the URI or the default.
            port = self._port or DEFAULT_PORTS[transport]
            self._targets = [Target(transport, literal, port, self.host)]
            self._state = LocatorState.DONE
            return
        if self.host in self._hosts or self._port is not None:
            # 4.2: explicit port -> A/AAAA only. A host in /etc/hosts is treated the
            # same way: the administrator pinned it, DNS is not consulted.
            port = self._port or DEFAULT_PORTS[transport]
            self._begin_address([_Hop(self.host, port, transport)], now)
        elif self._transport is not None:
            # 4.2: transport given but no port: SRV for that transport only.
            self._begin_srv([(self._srv_name(self._transport), self._transport)], now)
        else:
            # 4.1: neither: ask the domain which transports it offers.
            self._state = LocatorState.NAPTR
            self._ask((self.host, RType.NAPTR), self.host, 0, now)
        self._advance(now)

    def _default_transport(self) -> str:
        # 4.1: with nothing else to go on, UDP for sip and TLS for sips; a client
        # without UDP falls back to what it has (TCP first).
        if self._secure:
            return "tls"
        for candidate in ("udp", "tcp", "tls"):
            if candidate in self._supported:
                return candidate
        raise AssertionError("no supported transport")  # constructor guarantees one

    def _srv_name(self, transport: str) -> str:
        return f"{_SRV_PREFIX[transport]}.{self.host}"

    def _advance(self, now: float) -> None:
        # A step is over when nothing is outstanding; cache hits can finish a step
        # at once, so keep going until something must be asked or we are done.
        while not self._waiting and self._state is not LocatorState.DONE:
            if self._state is LocatorState.NAPTR:
                self._begin_srv(self._services_from_naptr(), now)
            elif self._state is LocatorState.SRV:
                self._begin_address(self._hops_from_srv(), now)
            else:
                self._targets = self._targets_from_addresses()
                self._state = LocatorState.DONE

    def _services_from_naptr(self) -> list[tuple[str, str]]:
        rows: list[tuple[int, int, str, str]] = []
        for record in self._answers.get((self.host, RType.NAPTR), ()):
            data = record.data
            if not isinstance(data, NAPTRData):
                continue
            service = data.service.upper()
            transport = _NAPTR_SERVICES.get(service)
            # 4.1: only "s" (SRV follows) records of known D2X services; a sips URI
            # keeps only SIPS services (a sip URI may use SIPS ones); drop what we
            # cannot speak and records with no replacement.
            if data.flags.lower() != "s" or transport is None:
                continue
            if self._secure and not service.startswith("SIPS+"):
                continue
            if transport not in self._supported or not data.replacement:
                continue
            rows.append((data.order, data.preference, data.replacement.lower(), transport))
        rows.sort(key=lambda row: (row[0], row[1]))
        services = list(dict.fromkeys((name, transport) for _, _, name, transport in rows))
        if services:
            # All usable records are kept in order, not only the lowest "order":
            # the later ones are the failover list of 4.3.
            return services
        # 4.1: no (usable) NAPTR: SRV for each transport we support, in our order.
        return [(self._srv_name(t), t) for t in self._supported]

    def _begin_srv(self, services: list[tuple[str, str]], now: float) -> None:
        self._state = LocatorState.SRV
        self._services = services
        for name, _ in services:
            self._ask((name, RType.SRV), name, 0, now)

    def _hops_from_srv(self) -> list[_Hop]:
        hops: list[_Hop] = []
        for name, transport in self._services:
            records = self._answers.get((name, RType.SRV), ())
            srv = [r.data for r in records if isinstance(r.data, SRVData)]
            for data in order_srv(srv, self._rng):
                hops.append(_Hop(data.target.lower().rstrip("."), data.port, transport))
        if hops:
            return hops
        # 4.2: no SRV records: A/AAAA of the domain itself with the default port.
        transport = self._transport or self._default_transport()
        return [_Hop(self.host, self._port or DEFAULT_PORTS[transport], transport)]

    def _begin_address(self, hops: list[_Hop], now: float) -> None:
        self._state = LocatorState.ADDRESS
        self._hops = hops
        for name in dict.fromkeys(hop.name for hop in hops):
            if _ip_literal(name) is not None or name in self._hosts:
                continue
            for version in self._ip_versions:
                rtype = _ADDRESS_TYPES[version]
                self._ask((name, rtype), name, 0, now)

    def _addresses(self, name: str) -> list[str]:
        literal = _ip_literal(name)
        if literal is not None:
            return [literal]
        if name in self._hosts:
            by_version: dict[int, list[str]] = {4: [], 6: []}
            for text in self._hosts[name]:
                literal = _ip_literal(text)
                if literal is not None:
                    by_version[ipaddress.ip_address(literal).version].append(literal)
            return [a for v in self._ip_versions for a in by_version[v]]
        found: list[str] = []
        for version in self._ip_versions:
            for record in self._answers.get((name, _ADDRESS_TYPES[version]), ()):
                if isinstance(record.data, AData | AAAAData):
                    found.append(record.data.address)
        return found

    def _targets_from_addresses(self) -> list[Target]:
        targets: dict[Target, None] = {}
        for hop in self._hops:
            for address in self._addresses(hop.name):
                targets[Target(hop.transport, address, hop.port, self.host)] = None
        return list(targets)

    # -- questions and answers ------------------------------------------------------

    def _ask(self, origin: tuple[str, int], name: str, depth: int, now: float) -> None:
        """Ask ``(name, type)`` on behalf of ``origin``, from the cache if possible."""
        cached = self._cache.get(name, origin[1], now)
        if cached is not None:
            self._answers[origin] = cached.records
            return
        question = Question(name, origin[1])
        entry = self._waiting.get(question.key())
        if entry is None:
            entry = (question, [])
            self._waiting[question.key()] = entry
            self._unsent.append(question)
        entry[1].append(_Asker(origin, depth))

    def _absorb(
        self, asker: _Asker, question: Question, answer: Message | DnsError, now: float
    ) -> None:
        origin = asker.origin
        rtype = question.rtype
        self._answers[origin] = ()
        if isinstance(answer, DnsError):
            self._errors.append(answer)  # not cached: the next attempt may work
            return
        if answer.rcode == RCode.NXDOMAIN:
            ttl = negative_answer_ttl(answer)
            if ttl is not None:
                self._cache.put(origin[0], rtype, (), ttl, now, nxdomain=True)
            self._errors.append(DnsNameNotFound("no such domain", question.name, rtype))
            return
        if answer.rcode != RCode.NOERROR:
            reason = f"server answered {_rcode_name(answer.rcode)}"
            self._errors.append(DnsServerFailure(reason, question.name, rtype, answer.rcode))
            return
        records, final_name, ttl = _follow_chain(answer.answers, question.name, rtype)
        if records:
            self._answers[origin] = records
            self._cache.put(origin[0], rtype, records, ttl, now)
            if rtype == RType.SRV:
                self._cache_glue(records, answer, now)
        elif final_name != question.name.lower() and asker.depth < self._max_cname_depth:
            # RFC 1034 4.3.2 / 5.3.3: the server gave a CNAME without the data; ask
            # for the canonical name ourselves.
            self._ask(origin, final_name, asker.depth + 1, now)
        else:
            ttl = negative_answer_ttl(answer)  # RFC 2308 2.2: NODATA is cached like NXDOMAIN
            if ttl is not None:
                self._cache.put(origin[0], rtype, (), ttl, now)

    def _cache_glue(self, srv: Sequence[Record], answer: Message, now: float) -> None:
        # RFC 2782: servers may put the targets' A/AAAA in the additional section.
        # Only addresses of names this very answer points at are taken (anything
        # else in "additional" is unsolicited and could be a poisoning attempt),
        # and only when no entry exists yet.
        targets = {r.data.target.lower() for r in srv if isinstance(r.data, SRVData)}
        for rtype in (RType.A, RType.AAAA):
            by_name: dict[str, list[Record]] = {}
            for record in answer.additionals:
                if record.rtype == rtype and record.name.lower() in targets:
                    by_name.setdefault(record.name.lower(), []).append(record)
            for name, records in by_name.items():
                if self._cache.get(name, rtype, now) is None:
                    self._cache.put(name, rtype, records, min(r.ttl for r in records), now)


def _rcode_name(rcode: int) -> str:
    try:
        return RCode(rcode).name
    except ValueError:
        return f"RCODE{rcode}"


def sent_by_locator(
    host: str,
    port: int | None,
    transport: str,
    *,
    cache: DnsCache | None = None,
    now: float,
    rng: random.Random | None = None,
    hosts: Mapping[str, Sequence[str]] | None = None,
    ip_versions: Sequence[int] = (4, 6),
) -> ServerLocator:
    """A locator for where to send a response when the Via has no ``received``.

    RFC 3263 section 5 (and RFC 3261 18.2.2): a sent-by with a port (or an IP) is
    used as is via A/AAAA; a bare domain name gets an SRV look-up for the Via's
    transport (``_sips._tcp`` for TLS), falling back to A/AAAA on the default port.
    That is exactly section 4.2 with an explicit transport.
    """
    transport = transport.lower()
    return ServerLocator(
        host,
        port,
        transport,
        secure=False,
        supported_transports=(transport,),
        cache=cache,
        now=now,
        rng=rng,
        hosts=hosts,
        ip_versions=ip_versions,
    )
