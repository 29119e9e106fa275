"""Non-blocking DNS on the event loop: runs :class:`~sipstack.locate.ServerLocator`.

The resolver owns the I/O that the pure locator must not do: UDP sockets
registered with :meth:`Loop.add_reader`, timeouts and retries with
:meth:`Loop.call_later`, the nameserver list from ``/etc/resolv.conf`` and the
static names of ``/etc/hosts``. Both files are read once, at construction
(start-up), never from a loop callback. Nothing here calls
``socket.getaddrinfo`` on a name: the only ``getaddrinfo`` use is with
``AI_NUMERICHOST`` on nameserver addresses, which never does a look-up.

Each query gets a fresh connected UDP socket, so its source port is chosen by
the kernel at random, and a random 16-bit id: both make blind spoofing harder
(RFC 5452 9.1, 9.2); connecting also makes the kernel drop datagrams from
anyone but the nameserver and report ICMP port-unreachable as an error.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import os
import random
import socket
from collections.abc import Callable, Sequence

from sipstack.dns_wire import (
    DnsFormatError,
    Message,
    Question,
    RCode,
    decode_message,
    encode_query,
)
from sipstack.locate import (
    DnsCache,
    DnsError,
    DnsServerFailure,
    DnsTimeout,
    LocateError,
    ServerLocator,
    Target,
    sent_by_locator,
)
from sipstack.loop import Loop, TimerHandle
from sipstack.records import dataclass

__all__ = [
    "Lookup",
    "ResolvConf",
    "Resolver",
    "parse_hosts",
    "parse_resolv_conf",
]

log = logging.getLogger(__name__)

DNS_PORT = 53
# glibc resolv.h: RES_TIMEOUT 5 s, RES_DFLRETRY 2, and its caps RES_MAXRETRANS 30 s
# / RES_MAXRETRY 5. Our default timeout is shorter: a phone waiting 5 s per try
# for a dead nameserver feels broken, and SIP's Timer B (32 s) bounds it all.
DEFAULT_TIMEOUT = 2.0
DEFAULT_ATTEMPTS = 2
_MAX_TIMEOUT = 30.0
_MAX_ATTEMPTS = 5
_MAX_DATAGRAM = 65535

TargetsCallback = Callable[[list[Target] | LocateError], object]
AddressesCallback = Callable[[list[str] | LocateError], object]


# -- configuration files (pure parsing) ---------------------------------------------


@dataclass(frozen=True, slots=True)
class ResolvConf:
    """What we use from resolv.conf(5): nameservers and the timeout/attempts options."""

    nameservers: tuple[str, ...] = ()
    timeout: float | None = None
    attempts: int | None = None


def _numeric(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def parse_resolv_conf(text: str) -> ResolvConf:
    """Parse resolv.conf(5) text; lines we do not understand are ignored, as glibc does."""
    nameservers: list[str] = []
    timeout: float | None = None
    attempts: int | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].split(";", 1)[0].strip()
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            address = _numeric(fields[1])
            if address is None:
                log.warning("resolv.conf: ignoring non-numeric nameserver %r", fields[1])
            else:
                nameservers.append(address)
        elif fields and fields[0] == "options":
            for option in fields[1:]:
                name, _, value = option.partition(":")
                if not value.isdigit():
                    continue
                if name == "timeout":
                    timeout = float(min(max(int(value), 1), _MAX_TIMEOUT))
                elif name == "attempts":
                    attempts = min(max(int(value), 1), _MAX_ATTEMPTS)
    return ResolvConf(tuple(nameservers), timeout, attempts)


def parse_hosts(text: str) -> dict[str, tuple[str, ...]]:
    """Parse hosts(5) text into lower-case name -> addresses, in file order."""
    table: dict[str, list[str]] = {}
    for raw in text.splitlines():
        fields = raw.split("#", 1)[0].split()
        if len(fields) < 2:
            continue
        address = _numeric(fields[0])
        if address is None:
            continue
        for name in fields[1:]:
            addresses = table.setdefault(name.lower().rstrip("."), [])
            if address not in addresses:
                addresses.append(address)
    return {name: tuple(addresses) for name, addresses in table.items()}


def _read_text(path: str | os.PathLike[str] | None, what: str) -> str:
    if path is None:
        return ""
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read()
    except FileNotFoundError:
        return ""
    except OSError as exc:
        log.warning("cannot read %s %s: %s", what, path, exc)
        return ""


def _sockaddr(server: str | tuple[str, int]) -> tuple[int, tuple[object, ...]]:
    host, port = (server, DNS_PORT) if isinstance(server, str) else server
    # AI_NUMERICHOST: parse only (and get an IPv6 scope id right); never a look-up.
    # The host goes in as bytes: a str would be IDNA-encoded first, which imports
    # encodings.idna, stringprep and unicodedata (~0.35 MiB) for an IP literal.
    try:
        info = socket.getaddrinfo(
            host.encode("ascii"), port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST
        )
    except (socket.gaierror, UnicodeEncodeError) as exc:
        raise ValueError(f"nameserver {host!r} is not a numeric IP address") from exc
    family, _, _, _, sockaddr = info[0]
    return int(family), tuple(sockaddr)


# -- one DNS question on the wire ----------------------------------------------------


class _Query:
    """A question being asked: tries each nameserver in turn, ``attempts`` rounds."""

    def __init__(
        self,
        resolver: Resolver,
        question: Question,
        on_done: Callable[[Message | DnsError], None],
    ) -> None:
        self.resolver = resolver
        self.question = question
        self.on_done = on_done
        self.tries = 0  # tries started so far
        self.query_id = 0
        self.edns = resolver.edns_payload is not None
        self.sock: socket.socket | None = None
        self.timer: TimerHandle | None = None
        self.failure: DnsError | None = None
        self.finished = False

    # Resolver calls start() once; everything after runs from loop callbacks.
    def start(self) -> None:
        self._send_next()

    def cancel(self) -> None:
        self.finished = True
        self._release()

    def _release(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock is not None:
            self.resolver.loop.remove_reader(self.sock)
            self.sock.close()
            self.sock = None

    def _finish(self, result: Message | DnsError) -> None:
        self.finished = True
        self._release()
        self.on_done(result)

    def _send_next(self, *, same_server: bool = False) -> None:
        """Start the next try; after the last one, report the failure."""
        servers = self.resolver.servers
        while True:
            if not same_server:
                if self.tries >= len(servers) * self.resolver.attempts:
                    self._finish(self.failure or DnsTimeout("no nameservers", *self._q()))
                    return
                self.tries += 1
            same_server = False
            # glibc order: every server once per round, ``attempts`` rounds.
            family, sockaddr = servers[(self.tries - 1) % len(servers)]
            try:
                self._transmit(family, sockaddr)
                return
            except OSError as exc:  # no route, network down: try the next server
                self._release()
                self.failure = DnsServerFailure(f"cannot send to {sockaddr[0]}: {exc}", *self._q())

    def _q(self) -> tuple[str, int]:
        return self.question.name, self.question.rtype

    def _transmit(self, family: int, sockaddr: tuple[object, ...]) -> None:
        self._release()
        sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock = sock
        sock.setblocking(False)
        sock.connect(sockaddr)
        # RFC 5452 9.2: an unpredictable ID. os.urandom is what secrets.randbits
        # reads; importing secrets would load hmac and OpenSSL's libcrypto.
        self.query_id = int.from_bytes(os.urandom(2), "big")
        payload = self.resolver.edns_payload if self.edns else None
        sock.send(encode_query(self.query_id, self.question, edns_payload=payload))
        self.resolver.loop.add_reader(sock, self._on_readable)
        self.timer = self.resolver.loop.call_later(self.resolver.timeout, self._on_timeout)

    def _on_timeout(self) -> None:
        self.timer = None
        if self.finished:
            return
        if not isinstance(self.failure, DnsServerFailure):
            self.failure = DnsTimeout("no answer from any nameserver", *self._q())
        self._send_next()

    def _on_readable(self) -> None:
        while not self.finished and self.sock is not None:
            try:
                data = self.sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ICMP port unreachable: nobody serves DNS there
                self.failure = DnsServerFailure(f"nameserver unreachable: {exc}", *self._q())
                self._send_next()
                return
            self._on_datagram(data)

    def _on_datagram(self, data: bytes) -> None:
        if len(data) < 2 or int.from_bytes(data[:2], "big") != self.query_id:
            return  # not ours (late reply to an earlier try, or spoofing): ignore
        try:
            message = decode_message(data)
        except DnsFormatError as exc:
            log.info("malformed DNS reply for %s: %s", self.question, exc)
            self.failure = DnsServerFailure(f"malformed reply: {exc}", *self._q())
            self._send_next()
            return
        if not message.is_response or [q.key() for q in message.questions] != [self.question.key()]:
            return  # RFC 5452 9.1: the question must match too
        rcode = message.rcode
        if rcode == RCode.FORMERR and self.edns:
            # A server from before RFC 6891 may reject the OPT record: ask it again plainly.
            self.edns = False
            self._send_next(same_server=True)
            return
        if rcode not in (RCode.NOERROR, RCode.NXDOMAIN):
            self.failure = DnsServerFailure(
                f"nameserver answered rcode {rcode}", *self._q(), rcode=rcode
            )
            self._send_next()
            return
        if message.truncated and not message.answers:
            # RFC 1035 4.2.1 says retry over TCP; we do not (yet). What a truncated
            # reply carries is still usable, an empty one is a failure.
            self.failure = DnsServerFailure("truncated reply; DNS over TCP unsupported", *self._q())
            self._send_next()
            return
        self._finish(message)


# -- the adapter ---------------------------------------------------------------------


class Lookup:
    """Handle for a running :meth:`Resolver.locate` / :meth:`Resolver.resolve_host`."""

    def __init__(self, resolver: Resolver, locator: ServerLocator) -> None:
        self._resolver = resolver
        self.locator = locator
        self._queries: dict[tuple[str, int, int], _Query] = {}
        self.cancelled = False
        self.finished = False

    def cancel(self) -> None:
        """Stop asking; the callback will not be called. Safe to call more than once."""
        if self.cancelled:
            return
        self.cancelled = True
        for query in self._queries.values():
            query.cancel()
        self._queries.clear()
        self._resolver._forget(self)


class Resolver:
    """Locates SIP servers and resolves host names on a :class:`Loop`, never blocking it.

    ``nameservers`` overrides resolv.conf: IP strings or ``(ip, port)`` tuples,
    IPv4 and IPv6 alike. Otherwise the ``nameserver`` lines of ``resolv_conf``
    are used (127.0.0.1 if there are none, as glibc does); ``timeout`` (per try)
    and ``attempts`` (rounds over all servers) default to that file's
    ``options``, then to 2 s and 2. ``hosts_file`` (None to skip) names hosts
    that bypass DNS. ``cache`` is shared by all look-ups (one per resolver if not
    given). ``rng`` drives SRV weighted selection; query ids always come from
    the OS CSPRNG.

    Callbacks run on the loop, never synchronously inside the call that started
    them, and get either a non-empty list or a :class:`LocateError` (never an
    empty list).
    """

    def __init__(
        self,
        loop: Loop,
        nameservers: Sequence[str | tuple[str, int]] | None = None,
        resolv_conf: str | os.PathLike[str] | None = "/etc/resolv.conf",
        hosts_file: str | os.PathLike[str] | None = "/etc/hosts",
        timeout: float | None = None,
        attempts: int | None = None,
        *,
        cache: DnsCache | None = None,
        rng: random.Random | None = None,
        supported_transports: Sequence[str] = ("tls", "tcp", "udp"),
        ip_versions: Sequence[int] = (4, 6),
        edns_payload: int | None = 1232,
    ) -> None:
        self.loop = loop
        conf = parse_resolv_conf(_read_text(resolv_conf, "resolv.conf"))
        if nameservers is None:
            nameservers = conf.nameservers or ("127.0.0.1",)
        if not nameservers:
            raise ValueError("at least one nameserver is needed")
        self.servers = [_sockaddr(server) for server in nameservers]
        self.timeout = timeout if timeout is not None else conf.timeout or DEFAULT_TIMEOUT
        self.attempts = attempts if attempts is not None else conf.attempts or DEFAULT_ATTEMPTS
        if self.timeout <= 0 or self.attempts < 1:
            raise ValueError("timeout must be positive and attempts at least 1")
        self.hosts = parse_hosts(_read_text(hosts_file, "hosts file"))
        self.cache = cache if cache is not None else DnsCache()
        self.edns_payload = edns_payload
        self._rng = rng if rng is not None else random.Random()
        self._supported = tuple(supported_transports)
        self._ip_versions = tuple(ip_versions)
        self._lookups: set[Lookup] = set()
        self._closed = False

    @property
    def nameservers(self) -> list[tuple[str, int]]:
        """The nameservers in use, as (address, port)."""
        return [(str(addr[0]), int(str(addr[1]))) for _, addr in self.servers]

    def locate(
        self,
        host: str,
        port: int | None,
        transport: str | None,
        secure: bool,
        callback: TargetsCallback,
    ) -> Lookup:
        """RFC 3263 section 4 for a URI's host/port/transport param/sips-ness.

        ``callback(targets)`` gets the ordered failover list (walk it with
        :class:`~sipstack.locate.TargetList`) or a :class:`LocateError`.
        Invalid arguments (sips with UDP, unknown transport) raise ``ValueError`` here.
        """
        locator = ServerLocator(
            host,
            port,
            transport,
            secure,
            supported_transports=self._supported,
            cache=self.cache,
            now=self.loop.time(),
            rng=self._rng,
            hosts=self.hosts,
            ip_versions=self._ip_versions,
        )
        return self._run(locator, callback)

    def locate_sent_by(
        self, host: str, port: int | None, transport: str, callback: TargetsCallback
    ) -> Lookup:
        """Where to send a response (RFC 3263 section 5) when Via has no ``received``."""
        locator = sent_by_locator(
            host,
            port,
            transport,
            cache=self.cache,
            now=self.loop.time(),
            rng=self._rng,
            hosts=self.hosts,
            ip_versions=self._ip_versions,
        )
        return self._run(locator, callback)

    def resolve_host(self, host: str, callback: AddressesCallback) -> Lookup:
        """A/AAAA (or /etc/hosts, or the literal itself) for ``host``; no NAPTR/SRV.

        ``callback`` gets the addresses in ``ip_versions`` order or a LocateError.
        """
        # An explicit port is exactly "A/AAAA only" in RFC 3263 4.2; it is dropped again.
        locator = ServerLocator(
            host,
            DNS_PORT,
            "udp",
            supported_transports=("udp",),
            cache=self.cache,
            now=self.loop.time(),
            hosts=self.hosts,
            ip_versions=self._ip_versions,
        )

        def addresses(result: list[Target] | LocateError) -> None:
            if isinstance(result, LocateError):
                callback(result)
            else:
                callback(list(dict.fromkeys(target.address for target in result)))

        return self._run(locator, addresses)

    def close(self) -> None:
        """Cancel every look-up (their callbacks never run) and close the sockets."""
        self._closed = True
        for lookup in list(self._lookups):
            lookup.cancel()

    def __enter__(self) -> Resolver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- driving the locator ------------------------------------------------------------

    def _run(self, locator: ServerLocator, deliver: TargetsCallback) -> Lookup:
        if self._closed:
            raise RuntimeError("Resolver is closed")
        lookup = Lookup(self, locator)
        self._lookups.add(lookup)
        self._pump(lookup, deliver)
        return lookup

    def _forget(self, lookup: Lookup) -> None:
        self._lookups.discard(lookup)

    def _pump(self, lookup: Lookup, deliver: TargetsCallback) -> None:
        locator = lookup.locator
        if locator.done:
            lookup.finished = True
            self._lookups.discard(lookup)
            error = locator.error
            result: list[Target] | LocateError = error if error is not None else locator.result()

            def report() -> None:
                if not lookup.cancelled:
                    deliver(result)

            self.loop.call_soon(report)
            return
        while (question := locator.next_query()) is not None:
            on_done = functools.partial(self._on_answer, lookup, question, deliver=deliver)
            query = _Query(self, question, on_done)
            lookup._queries[question.key()] = query
            query.start()

    def _on_answer(
        self,
        lookup: Lookup,
        question: Question,
        answer: Message | DnsError,
        *,
        deliver: TargetsCallback,
    ) -> None:
        lookup._queries.pop(question.key(), None)
        if lookup.cancelled:
            return
        lookup.locator.receive_answer(question, answer, self.loop.time())
        self._pump(lookup, deliver)
