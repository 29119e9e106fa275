"""Where a request goes and what to do when it gets no answer (RFC 3263 4.3).

The types the transaction glue (``sipstack.endpoint``) needs from server
location: a :class:`Target`, the ordered :class:`TargetList` it fails over
along, why a target was given up on, and :class:`LocateError` when there was
none. They live apart from ``sipstack.locate`` (which re-exports them) so that
a device registering to an IP address never imports the DNS wire format and
cache: start-up CPU before the first REGISTER (issue 6).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .records import dataclass

if TYPE_CHECKING:
    from sipstack.dns_cache import DnsError

__all__ = ["FailureReason", "LocateError", "Target", "TargetList"]


@dataclass(frozen=True, slots=True)
class Target:
    """One place to send a request: connect to ``address``:``port`` over ``transport``.

    ``host`` is the domain from the URI (not the SRV target): RFC 5922 4.1 has the
    client match the server certificate (and send SNI) against the SIP domain.
    """

    transport: str
    address: str
    port: int
    host: str


# -- errors -----------------------------------------------------------------------


class LocateError(Exception):
    """No target could be found for ``host``; ``causes`` are the DNS failures seen.

    An empty ``causes`` means every question was answered but none with an
    address (e.g. a name with no A/AAAA records).
    """

    def __init__(self, host: str, causes: Sequence[DnsError] = ()) -> None:
        detail = "; ".join(str(cause) for cause in causes) or "no address records"
        super().__init__(f"cannot locate SIP server for {host}: {detail}")
        self.host = host
        self.causes = tuple(causes)


# -- failover ---------------------------------------------------------------------


class FailureReason(enum.Enum):
    """Why a target was given up on (RFC 3263 4.3)."""

    TIMEOUT = "timeout"  # transaction timeout (Timer B/F)
    TRANSPORT_ERROR = "transport error"  # ICMP unreachable, connection refused/reset, TLS
    SERVICE_UNAVAILABLE = "503"  # a 503 response


class TargetList:
    """Walks located targets in order for failover (RFC 3263 4.3).

    The transport glue sends to :attr:`current`; on a timeout, transport error or
    503 it calls :meth:`failed` with the target it used and gets the next one to
    try with a *new* transaction (new branch), or None when the list is used up.
    A report about a target that is no longer current (a late timeout from an
    earlier attempt) is ignored, so failures are never double-counted.
    """

    def __init__(self, targets: Sequence[Target]) -> None:
        self._targets = tuple(targets)
        self._index = 0
        self._failures: list[tuple[Target, FailureReason]] = []

    def __len__(self) -> int:
        return len(self._targets)

    @property
    def current(self) -> Target | None:
        """The target to use now, or None when all have failed."""
        return self._targets[self._index] if self._index < len(self._targets) else None

    @property
    def exhausted(self) -> bool:
        """True when every target has failed."""
        return self._index >= len(self._targets)

    @property
    def failures(self) -> tuple[tuple[Target, FailureReason], ...]:
        """The targets given up on so far, with why, in order."""
        return tuple(self._failures)

    def failed(self, target: Target, reason: FailureReason) -> Target | None:
        """Record that ``target`` failed; return the next target to try (or None)."""
        if target != self.current:
            return self.current
        self._failures.append((target, reason))
        self._index += 1
        return self.current
