"""Caller patterns: whether a caller's URI is one of ``trusted`` / ``door_code_from``.

One small job with its own rules (RFC 3261 19.1.4 comparison, wildcards), used
by the behaviour for auto-answer and the door code.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

__all__ = ["caller_matches"]


def _address(uri: str) -> str:
    """``"Flat" <sip:Flat@PBX.example.com;transport=tcp>`` -> ``sip:Flat@pbx.example.com``."""
    text = uri.strip()
    if "<" in text and ">" in text:
        text = text[text.index("<") + 1 : text.index(">")]
    scheme, _, rest = text.partition(":")
    user, at, host = rest.rpartition("@")
    user = user.split(":", 1)[0]  # drop a password
    host = re.split(r"[;?]", host, maxsplit=1)[0]
    return f"{scheme.lower()}:{user}{at}{host.lower()}"


def caller_matches(uri: str, patterns: Iterable[str]) -> bool:
    """Whether ``uri`` matches any pattern. ``*`` and ``?`` are wildcards; scheme
    and host compare case-insensitively, the user part exactly (RFC 3261 19.1.4);
    URI parameters and display names are ignored."""
    addr = _address(uri)
    for pattern in patterns:
        norm = re.escape(_address(pattern)).replace(r"\*", ".*").replace(r"\?", ".")
        if re.fullmatch(norm, addr):
            return True
    return False
