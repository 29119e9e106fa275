"""A small authoritative-and-recursive-looking DNS server for tests (dnslib based).

Serves the zone-file records a test gives it on 127.0.0.1 (or ::1), on a free
UDP port, from a thread inside the test process. Knobs a test can turn while it
runs: ``drop`` (number of queries to swallow, -1 for all), ``delay`` (seconds
before each answer), ``rcode_for`` ((name, type) -> forced rcode), ``glue``
(put SRV targets' addresses in the additional section) and ``follow_cname``
(complete CNAME chains the way a recursive resolver does), ``mangle`` (rewrite
each reply's bytes) and ``decoy`` (make an extra datagram, e.g. a reply with a
wrong id, sent just before each real reply). ``queries`` records
what was asked, as ``(name, type)`` with the name lower-cased and dot-less.
"""

from __future__ import annotations

import contextlib
import heapq
import select
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType

from dnslib import QTYPE, RCODE, RR, DNSRecord

__all__ = ["DnsTestServer"]


class DnsTestServer:
    """Answers DNS queries from zone text; see the module docstring for the knobs."""

    def __init__(
        self,
        zone: str = "",
        *,
        host: str = "127.0.0.1",
        glue: bool = False,
        follow_cname: bool = True,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self.address: tuple[str, int] = (host, self._sock.getsockname()[1])
        self.records: list[RR] = []
        self.set_zone(zone)
        self.glue = glue
        self.follow_cname = follow_cname
        self.drop = 0
        self.delay = 0.0
        self.rcode_for: dict[tuple[str, str], int] = {}
        self.mangle: Callable[[bytes], bytes] | None = None
        self.decoy: Callable[[bytes], bytes] | None = None
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-test-server", daemon=True)

    # -- lifecycle -----------------------------------------------------------------

    def set_zone(self, zone: str) -> None:
        """Replace the served records with those of ``zone`` (zone-file syntax)."""
        self.records = list(RR.fromZone(zone)) if zone.strip() else []

    def start(self) -> DnsTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> DnsTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def asked(self) -> list[tuple[str, str]]:
        """A copy of the queries received so far."""
        with self._lock:
            return list(self.queries)

    # -- serving -------------------------------------------------------------------

    def _serve(self) -> None:
        pending: list[tuple[float, int, bytes, tuple[str, int]]] = []
        seq = 0
        while not self._stop.is_set():
            wait = 0.05
            if pending:
                wait = max(0.0, min(wait, pending[0][0] - time.monotonic()))
            readable, _, _ = select.select([self._sock], [], [], wait)
            now = time.monotonic()
            while pending and pending[0][0] <= now:
                _, _, reply, peer = heapq.heappop(pending)
                self._send(reply, peer)
            if not readable:
                continue
            data, peer = self._sock.recvfrom(65535)
            handled = self._handle(data)
            if handled is None:
                continue
            reply = handled
            if self.decoy is not None:
                self._send(self.decoy(reply), peer)
            if self.mangle is not None:
                reply = self.mangle(reply)
            if self.delay > 0:
                seq += 1
                heapq.heappush(pending, (now + self.delay, seq, reply, peer))
            else:
                self._send(reply, peer)

    def _send(self, reply: bytes, peer: tuple[str, int]) -> None:
        # the client may have given up and closed its socket: fine for a test server
        with contextlib.suppress(OSError):
            self._sock.sendto(reply, peer)

    def _handle(self, data: bytes) -> bytes | None:
        try:
            request = DNSRecord.parse(data)
        except Exception:  # noqa: BLE001 - a test server shrugs off garbage
            return None
        question = request.q
        qname = str(question.qname).rstrip(".").lower()
        qtype = QTYPE[question.qtype]
        with self._lock:
            self.queries.append((qname, qtype))
        if self.drop:
            if self.drop > 0:
                self.drop -= 1
            return None
        reply = request.reply()
        forced = self.rcode_for.get((qname, qtype))
        if forced is not None:
            reply.header.rcode = forced
            return bytes(reply.pack())
        owned = [r for r in self.records if _name(r) == qname]
        if not owned:
            reply.header.rcode = RCODE.NXDOMAIN
            self._add_soa(reply)
            return bytes(reply.pack())
        current = qname
        for _ in range(8):
            answers = [r for r in self.records if _name(r) == current]
            matching = [r for r in answers if r.rtype == question.qtype]
            if matching:
                for record in matching:
                    reply.add_answer(record)
                break
            alias = next((r for r in answers if r.rtype == QTYPE.CNAME), None)
            if alias is None:
                break
            reply.add_answer(alias)
            if not self.follow_cname:
                break
            current = str(alias.rdata.label).rstrip(".").lower()
        if not reply.rr:
            self._add_soa(reply)  # NODATA (RFC 2308 2.2)
        if self.glue and question.qtype == QTYPE.SRV:
            for record in list(reply.rr):
                if record.rtype != QTYPE.SRV:
                    continue
                target = str(record.rdata.target).rstrip(".").lower()
                for extra in self.records:
                    if _name(extra) == target and extra.rtype in (QTYPE.A, QTYPE.AAAA):
                        reply.add_ar(extra)
        return bytes(reply.pack())

    def _add_soa(self, reply: DNSRecord) -> None:
        soa = next((r for r in self.records if r.rtype == QTYPE.SOA), None)
        if soa is not None:
            reply.add_auth(soa)


def _name(record: RR) -> str:
    return str(record.rname).rstrip(".").lower()
