"""Random identifiers for branches, tags, Call-IDs and cnonces.

RFC 3261 8.1.1.7 / 19.3: branch ids start with the magic cookie ``z9hG4bK`` and
must be unique in space and time; tags and Call-IDs need cryptographic
randomness (at least 32 bits). The random source is injectable so tests are
deterministic; by default it is the OS CSPRNG.
"""

from __future__ import annotations

import random

__all__ = ["IdGenerator", "MAGIC_COOKIE"]

MAGIC_COOKIE = "z9hG4bK"


class IdGenerator:
    """Makes protocol identifiers from one random source."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng: random.Random = rng if rng is not None else random.SystemRandom()

    def _hex(self, bits: int) -> str:
        return f"{self._rng.getrandbits(bits):0{bits // 4}x}"

    def branch(self) -> str:
        """A Via branch parameter (RFC 3261 8.1.1.7)."""
        return MAGIC_COOKIE + self._hex(64)

    def tag(self) -> str:
        """A From/To tag (RFC 3261 19.3: at least 32 random bits)."""
        return self._hex(64)

    def call_id(self, host: str | None = None) -> str:
        """A globally unique Call-ID, optionally ``random@host``."""
        token = self._hex(96)
        return f"{token}@{host}" if host else token

    def cnonce(self) -> str:
        """A digest client nonce (RFC 7616 3.4)."""
        return self._hex(64)
