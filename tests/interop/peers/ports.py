"""Free port allocation on 127.0.0.1 for peers started by the tests.

Ports are drawn at random below the kernel's ephemeral range (32768+ on Linux), so
that they do not collide with the source ports of client sockets, and each is
checked free on both UDP and TCP (a SIP server listens on both with one number).
A port handed out once is never handed out again by the same allocator, so a
peer restarted or left retransmitting cannot confuse the next test.
"""

from __future__ import annotations

import random
import socket

__all__ = ["PortAllocator", "port_is_free"]


def port_is_free(host: str, port: int) -> bool:
    """Return True if ``port`` can be bound on ``host`` for both UDP and TCP right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(family, kind) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


class PortAllocator:
    """Hands out ports free on UDP and TCP, never the same one twice.

    ``low``/``high`` bound the normal range; ``allocate(four_digit=True)`` draws
    from 2000-9999 instead, for sipsak, which truncates 5-digit ports in URIs.
    ``rng`` is injectable so a test of the allocator can be deterministic.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        low: int = 20000,
        high: int = 29999,
        rng: random.Random | None = None,
    ) -> None:
        if not 1024 <= low <= high <= 65535:
            raise ValueError(f"bad port range {low}-{high}")
        self.host = host
        self.low = low
        self.high = high
        self._rng = rng or random.Random()
        self._given: set[int] = set()

    def allocate(self, *, four_digit: bool = False, count: int = 1, attempts: int = 200) -> int:
        """Return a port free on UDP and TCP that this allocator has not given before.

        ``count`` > 1 returns the first of that many consecutive free ports (SIPp's
        ``-mp`` binds media ports p and p+2, RTCP next to them). Raises
        RuntimeError (an environment problem, not a test failure) when nothing
        free is found in ``attempts`` random draws.
        """
        low, high = (2000, 9999) if four_digit else (self.low, self.high)
        for _ in range(attempts):
            first = self._rng.randint(low, high - count + 1)
            block = range(first, first + count)
            if any(port in self._given for port in block):
                continue
            if all(port_is_free(self.host, port) for port in block):
                self._given.update(block)
                return first
        raise RuntimeError(f"no {count} free UDP+TCP port(s) on {self.host} in {low}-{high}")
