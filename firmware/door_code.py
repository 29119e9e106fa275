"""The DTMF door code: digits keyed in a call, matched against ``door_code``.

Only the matching lives here; who may key a code, the relay, the tones and the
deadline that forgets a partial code are the behaviour's
(:mod:`firmware.behaviour`), which feeds the digits of the answered call.
"""

from __future__ import annotations

import enum

__all__ = ["CodeVerdict", "DoorCodeEntry"]


class CodeVerdict(enum.Enum):
    """What one more digit made of the code being keyed."""

    INCOMPLETE = "incomplete"  # fewer digits than the code has: keep listening
    RIGHT = "right"
    WRONG = "wrong"


class DoorCodeEntry:
    """The digits keyed so far in one call, and how many wrong codes it tried.

    A code is judged once it has as many digits as ``door_code`` (no terminator
    key: a door station's caller is told "key the code", not "key the code and
    hash"). ``max_wrong`` wrong codes lock the entry out; the behaviour then
    ends the call, so guessing costs a new call each time.
    """

    def __init__(self, max_wrong: int) -> None:
        self._max_wrong = max_wrong
        self._digits = ""
        self._wrong = 0

    @property
    def wrong_codes(self) -> int:
        """How many wrong codes were keyed since :meth:`reset`."""
        return self._wrong

    @property
    def max_wrong(self) -> int:
        """How many wrong codes lock the entry out."""
        return self._max_wrong

    @property
    def locked_out(self) -> bool:
        """Whether the caller used up their tries."""
        return self._wrong >= self._max_wrong

    def enter(self, digit: str, code: str) -> CodeVerdict:
        """Add ``digit``; judge the code once it is as long as ``code`` (then the
        next digit starts a new code). ``code`` is passed each time so that a
        reloaded config applies to the next digit."""
        self._digits += digit
        if len(self._digits) < len(code):
            return CodeVerdict.INCOMPLETE
        entered, self._digits = self._digits, ""
        import hmac  # here: it loads OpenSSL's libcrypto, only door codes need it

        # Constant-time: how long the answer takes must not tell how many digits were right.
        if hmac.compare_digest(entered.encode(), code.encode()):
            return CodeVerdict.RIGHT
        self._wrong += 1
        return CodeVerdict.WRONG

    def forget_partial(self) -> None:
        """Drop the digits of a code not finished (the caller paused too long)."""
        self._digits = ""

    def reset(self) -> None:
        """Start afresh: a new call was answered."""
        self._digits = ""
        self._wrong = 0
