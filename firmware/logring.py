"""What the device says about itself: the in-memory log ring, with secrets masked.

``intercom log`` reads the ring, ``intercom log -f`` follows it; the SIP trace
(``intercom trace``) masks its text with :func:`mask_secrets` too, so neither
passwords nor digest responses leave the device.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from firmware.control import ControlConnection
    from sipstack.loop import Loop

__all__ = ["LogRing", "mask_secrets"]

# -- secrets never leave the device ---------------------------------------------------

_SECRET_PATTERNS = (
    # RFC 3261 22.4 / RFC 7616: the digest response proves the password; mask it
    re.compile(r'(\bresponse\s*=\s*)("[^"]*"|[^\s,;]+)', re.I),
    re.compile(
        r'(\b(?:password|passwd|pass|pwd|secret|token)\s*[=:]\s*)("[^"]*"|[^\s,;&>]+)', re.I
    ),
    # RFC 3261 19.1.1: "sip:user:password@host" (deprecated, still seen)
    re.compile(r"(\bsips?:[^:@\s;>]+:)([^@\s;>]+)(?=@)", re.I),
)


def mask_secrets(text: str) -> str:
    """Replace digest responses and anything that looks like a password by ``***``."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + "***", text)
    return text


# -- the log ring ----------------------------------------------------------------------


class LogRing(logging.Handler):
    """The last ``capacity`` log records, for ``intercom log``; live to followers.

    Records logged from other threads (the WAV writer) reach followers through
    the loop, so sockets are only touched on the loop thread.
    """

    def __init__(self, loop: Loop, capacity: int = 1000) -> None:
        super().__init__(logging.INFO)
        self.loop = loop
        self.records: collections.deque[dict[str, Any]] = collections.deque(maxlen=capacity)
        self.followers: list[ControlConnection] = []
        self._thread = threading.get_ident()

    def emit(self, record: logging.LogRecord) -> None:
        """Keep the record (masked) and send it to followers."""
        try:
            item = {
                "time": record.created,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": mask_secrets(record.getMessage()),
            }
        except Exception:
            self.handleError(record)
            return
        if threading.get_ident() == self._thread:
            self._deliver(item)
        else:
            self.loop.call_soon_threadsafe(lambda: self._deliver(item))

    def _deliver(self, item: dict[str, Any]) -> None:
        self.records.append(item)
        for conn in list(self.followers):
            conn.push(item)
