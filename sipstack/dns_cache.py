"""What DNS look-ups leave behind: a TTL cache of answers, and the failures.

:class:`DnsCache` keeps answers between look-ups so that re-registering every
few minutes does not cost a NAPTR/SRV/A round trip each time; the
:class:`DnsError` family says why a question got no usable answer. Both are
shared by the pure locator (``sipstack.locate``) and its I/O adapter
(``sipstack.resolver``); neither reads a clock: time is an argument.
"""

from __future__ import annotations

from collections.abc import Iterable

from sipstack.dns_wire import Message, Record, RType, SOAData
from sipstack.records import dataclass

__all__ = [
    "CachedAnswer",
    "DnsCache",
    "DnsError",
    "DnsNameNotFound",
    "DnsServerFailure",
    "DnsTimeout",
    "negative_answer_ttl",
]


# -- errors -----------------------------------------------------------------------


class DnsError(Exception):
    """A DNS question got no usable answer (network or server trouble, not the caller's)."""

    def __init__(self, reason: str, name: str, rtype: int) -> None:
        super().__init__(f"{name} {_type_name(rtype)}: {reason}")
        self.reason = reason
        self.name = name
        self.rtype = rtype


class DnsTimeout(DnsError):
    """No nameserver answered within the configured timeout and attempts."""


class DnsServerFailure(DnsError):
    """Every nameserver failed (SERVFAIL, REFUSED, malformed reply...); ``rcode`` if any."""

    def __init__(self, reason: str, name: str, rtype: int, rcode: int | None = None) -> None:
        super().__init__(reason, name, rtype)
        self.rcode = rcode


class DnsNameNotFound(DnsError):
    """NXDOMAIN: the name does not exist (RFC 1035 4.1.1 rcode 3)."""


def _type_name(rtype: int) -> str:
    try:
        return RType(rtype).name
    except ValueError:
        return f"TYPE{rtype}"


# -- cache ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """The answer to one (name, type) question. Empty ``records`` is a negative entry."""

    records: tuple[Record, ...]
    expires: float
    nxdomain: bool = False


class DnsCache:
    """Answers keyed by (name, type), kept for their TTL (RFC 1035 3.2.1).

    Negative answers (NXDOMAIN / no data) are kept for the SOA-derived TTL of
    RFC 2308 section 5, capped at ``negative_ttl`` so a record that appears is
    found soon; without an SOA they are not cached (RFC 2308 5). Positive TTLs
    are capped at ``max_ttl`` so a renumbered PBX is found again within that
    time. At most ``max_entries`` entries: expired ones go first, then the oldest.
    Time is always an argument.
    """

    def __init__(
        self, *, max_entries: int = 512, max_ttl: float = 3600.0, negative_ttl: float = 30.0
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self._entries: dict[tuple[str, int], CachedAnswer] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, name: str, rtype: int, now: float) -> CachedAnswer | None:
        """The live entry for ``(name, rtype)``, or None if absent or expired."""
        key = (name.lower().rstrip("."), rtype)
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= now:
            del self._entries[key]
            return None
        return entry

    def put(
        self,
        name: str,
        rtype: int,
        records: Iterable[Record],
        ttl: float,
        now: float,
        *,
        nxdomain: bool = False,
    ) -> None:
        """Store an answer for ``ttl`` seconds (capped); a TTL of 0 stores nothing."""
        stored = tuple(records)
        ttl = min(ttl, self.max_ttl if stored else self.negative_ttl)
        if ttl <= 0:
            return
        key = (name.lower().rstrip("."), rtype)
        self._entries.pop(key, None)
        if len(self._entries) >= self.max_entries:
            self._evict(now)
        self._entries[key] = CachedAnswer(stored, now + ttl, nxdomain)

    def _evict(self, now: float) -> None:
        for key in [key for key, entry in self._entries.items() if entry.expires <= now]:
            del self._entries[key]
        while len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]  # dicts keep insertion order

    def clear(self) -> None:
        """Forget everything (e.g. after the network interface changed)."""
        self._entries.clear()


def negative_answer_ttl(message: Message) -> float | None:
    """How long a negative answer (NXDOMAIN / no data) may be cached; None: not at all."""
    # RFC 2308 5: the TTL of a negative answer is min(SOA TTL, SOA MINIMUM).
    for record in message.authorities:
        if isinstance(record.data, SOAData):
            return float(min(record.ttl, record.data.minimum))
    return None
