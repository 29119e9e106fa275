"""SIP transaction timer values (RFC 3261 17 and table 4 of appendix A; RFC 6026).

Every transaction timer derives from three base values: T1 (an RTT estimate),
T2 (the cap on retransmission intervals of non-INVITE requests and INVITE
responses) and T4 (how long a message may linger in the network). They are a
constructor argument of the transaction layer rather than constants so a test,
or a site with a slow uplink, can change them (GUIDE rule 5: timer constants
are passed in).
"""

from __future__ import annotations

from .records import dataclass

__all__ = ["TimerConfig"]


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Base timers T1/T2/T4 (seconds) and every timer derived from them.

    ``trying_delay`` is how long an INVITE server transaction waits for the TU's
    first response before it sends 100 (Trying) itself (RFC 3261 17.2.1: 200 ms).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    trying_delay: float = 0.2

    def __post_init__(self) -> None:
        if self.t1 <= 0 or self.t2 <= 0 or self.t4 <= 0:
            raise ValueError(f"SIP timers must be positive, got {self!r}")
        if self.t2 < self.t1:
            raise ValueError(f"T2 ({self.t2}) must not be shorter than T1 ({self.t1})")
        if self.trying_delay < 0:
            raise ValueError(f"trying_delay must not be negative, got {self.trying_delay}")

    # -- client INVITE (RFC 3261 17.1.1.2, RFC 6026 7.2) ------------------------

    @property
    def timer_a(self) -> float:
        """Initial INVITE retransmission interval (unreliable transports only)."""
        return self.t1

    @property
    def timer_b(self) -> float:
        """INVITE transaction timeout: 64*T1."""
        return 64 * self.t1

    def timer_d(self, reliable: bool) -> float:
        """Wait for response retransmissions after a non-2xx final response.

        RFC 3261 17.1.1.2: at least 32 s on unreliable transports, 0 on reliable.
        """
        return 0.0 if reliable else 32.0

    @property
    def timer_m(self) -> float:
        """RFC 6026 7.2: how long the client absorbs 2xx retransmissions: 64*T1."""
        return 64 * self.t1

    # -- client non-INVITE (RFC 3261 17.1.2.2) ----------------------------------

    @property
    def timer_e(self) -> float:
        """Initial non-INVITE retransmission interval (unreliable transports only)."""
        return self.t1

    @property
    def timer_f(self) -> float:
        """Non-INVITE transaction timeout: 64*T1."""
        return 64 * self.t1

    def timer_k(self, reliable: bool) -> float:
        """Wait for response retransmissions: T4 unreliable, 0 reliable."""
        return 0.0 if reliable else self.t4

    # -- server INVITE (RFC 3261 17.2.1, RFC 6026 7.1) --------------------------

    @property
    def timer_g(self) -> float:
        """Initial final-response retransmission interval (unreliable only)."""
        return self.t1

    @property
    def timer_h(self) -> float:
        """Wait for the ACK to a non-2xx final response: 64*T1."""
        return 64 * self.t1

    def timer_i(self, reliable: bool) -> float:
        """Wait for ACK retransmissions: T4 unreliable, 0 reliable."""
        return 0.0 if reliable else self.t4

    @property
    def timer_l(self) -> float:
        """RFC 6026 7.1: how long the server absorbs INVITE retransmissions after 2xx."""
        return 64 * self.t1

    # -- server non-INVITE (RFC 3261 17.2.2) ------------------------------------

    def timer_j(self, reliable: bool) -> float:
        """Wait for request retransmissions: 64*T1 unreliable, 0 reliable."""
        return 0.0 if reliable else 64 * self.t1
