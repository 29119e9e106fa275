"""RFC 3261 section 25.1 grammar as regular expressions.

Private to the parser. Every pattern here is applied to header values that
have already been unfolded (RFC 3261 7.3.1: a CRLF followed by whitespace is
replaced by one space), so LWS is just ``[ \\t]+`` and SWS ``[ \\t]*``.

Hostile input must not cost more than linear time: no pattern nests two
unbounded repetitions over the same characters, and every repetition ends at
a separator its body cannot match, so a failed match backtracks at most once
per character. Possessive quantifiers and atomic groups would say this more
directly, but CPython 3.11.2 (Debian 12 / Raspberry Pi OS) mis-matches some
possessive group repeats, e.g. ``(?:(?:[a-z.]|%[0-9])++@)?+[a-z.]+`` fails on
``example.com``; so they are not used.

Start-up cost matters on a Pi Zero (compiling a pattern runs Python code in
``re._compiler``, about 1 ms per kilobyte of pattern there), so only the fast
patterns that every message needs are compiled at import. The full grammar,
which only unusual spellings reach, and the grammar of rarely seen headers
are :class:`LazyPattern` objects compiled on first use.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# -- building blocks (RFC 3261 25.1) -------------------------------------------

TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = rf"[{TOKEN_CHARS}]+"
WS = r"[ \t]*"
LWS = r"[ \t]+"
SLASH = rf"{WS}/{WS}"
COLON = rf"{WS}:{WS}"
HEX = r"[0-9A-Fa-f]"
ESCAPED = rf"%{HEX}{HEX}"


def escaped_run(chars: str, *, empty: bool = False) -> str:
    """``*( [chars] / escaped )`` unrolled as ``[chars]*(?:%HH[chars]*)*``.

    The unrolled form is several times faster in CPython's ``re`` than an
    alternation repeated per character, and just as unambiguous.
    """
    run = rf"[{chars}]*(?:{ESCAPED}[{chars}]*)*"
    return run if empty else rf"(?=[{chars}%]){run}"


# qdtext: LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII; quoted-pair excludes CR/LF.
_QDTEXT = r'[^"\\\x00-\x08\x0a-\x1f\x7f]'
_QPAIR = r"\\[\x00-\x09\x0b\x0c\x0e-\x7f]"
QSTRING = rf'"{_QDTEXT}*(?:{_QPAIR}{_QDTEXT}*)*"'
# RFC 3261 25.1 hostname is stricter (a toplabel starts with a letter); we accept
# any LDH label run so that numeric hosts and sloppy DNS names still parse.
HOSTNAME = r"[A-Za-z0-9][A-Za-z0-9\-.]*"
# RFC 5118 4.10: tolerate the ABNF bug (three colons) by not checking the shape.
IPV6REF = r"\[[0-9A-Fa-f:.]+\]"
HOST = rf"(?:{HOSTNAME}|{IPV6REF})"
# 0-65535, leading zeros allowed.
PORT = r"0*(?:[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]|[0-9]{1,4})"

# SIP-URI pieces (RFC 3261 25.1 / 19.1.1).
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
USER = escaped_run(rf"{_UNRESERVED}&=+$,;?/")
PASSWORD = escaped_run(rf"{_UNRESERVED}&=+$,", empty=True)
# In an addr-spec outside <> the URI may not contain ',', ';' or '?' (RFC 3261 20).
USER_NB = escaped_run(rf"{_UNRESERVED}&=+$/")
PASSWORD_NB = escaped_run(rf"{_UNRESERVED}&=+$", empty=True)
_PARAMCHARS = rf"{_UNRESERVED}\[\]/:&+$"
PARAMCHARS = escaped_run(_PARAMCHARS)
URI_PARAMS = rf"(?:;{PARAMCHARS}(?:={PARAMCHARS})?)*"
_HNVCHARS = rf"{_UNRESERVED}\[\]/?:+$"
HNAME = escaped_run(_HNVCHARS)
HVALUE = escaped_run(_HNVCHARS, empty=True)
URI_HEADERS = rf"(?:\?{HNAME}={HVALUE}(?:&{HNAME}={HVALUE})*)?"
# The look-ahead skips the userinfo attempt when no '@' follows (most Route,
# Via-like and registrar URIs), saving a scan and a backtrack.
USERINFO = rf"(?:(?=[^@<>\s]*@){USER}(?::{PASSWORD})?@)?"
USERINFO_NB = rf"(?:(?=[^@<>\s;,?]*@){USER_NB}(?::{PASSWORD_NB})?@)?"
SIP_URI = rf"(?i:sips?):{USERINFO}{HOST}(?::{PORT})?{URI_PARAMS}{URI_HEADERS}"
SIP_URI_NB = rf"(?i:sips?):{USERINFO_NB}{HOST}(?::{PORT})?"
# RFC 3966 telephone-subscriber, leniently: digits, visual separators, hex for local numbers.
TEL_URI = rf"(?i:tel):[0-9A-Fa-f*#+().\-]+{URI_PARAMS}"
TEL_URI_NB = r"(?i:tel):[0-9A-Fa-f*#+().\-]+"
# absoluteURI (RFC 3261 25.1 / RFC 2396) for any other scheme.
_OTHER_SCHEME = r"(?!(?i:sips?|tel):)[A-Za-z][A-Za-z0-9+\-.]*"
OTHER_URI = rf"{_OTHER_SCHEME}:" + escaped_run(rf"{_UNRESERVED};/?:@&=+$,")
OTHER_URI_NB = rf"{_OTHER_SCHEME}:" + escaped_run(rf"{_UNRESERVED}/:@&=+$")
ADDR_SPEC = rf"(?:{SIP_URI}|{TEL_URI}|{OTHER_URI})"
ADDR_SPEC_NB = rf"(?:{SIP_URI_NB}|{TEL_URI_NB}|{OTHER_URI_NB})"

DISPLAY_NAME = rf"(?:{QSTRING}|{TOKEN}(?:{LWS}{TOKEN})*)"
CALL_ID_WORD = r"[A-Za-z0-9\-.!%*_+`'~()<>:\\\"/\[\]?{}]+"
_CTEXT = r"[^()\\\x00-\x08\x0a-\x1f\x7f]"
COMMENT = rf"\({_CTEXT}*(?:{_QPAIR}{_CTEXT}*)*\)"
_WKDAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_MONTH = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"


def _header_grammar(sws: str, lws: str, comma: str, sp: str) -> dict[str, str]:
    """Header value patterns with the given separator whitespace.

    Called twice: with RFC 3261 SWS/LWS (``[ \\t]*`` / ``[ \\t]+``) for the
    full grammar, and with the whitespace most stacks actually send (none,
    one space, ``", "``) for a fast pattern that accepts a subset of it.
    """
    semi, equal, slash, colon = (rf"{sws}{c}{sws}" for c in ";=/:")

    def lst(item: str) -> str:
        return rf"{item}(?:{comma}{item})*"

    # gen-value = token / host / quoted-string; ':' admitted for bare IPv6 in
    # Via received= (RFC 5118 4.5).
    gen_value = rf"(?:[{TOKEN_CHARS}:]+|{IPV6REF}|{QSTRING})"
    params = rf"(?:{semi}{TOKEN}(?:{equal}{gen_value})?)*"
    name_addr = rf"(?:{DISPLAY_NAME}{sp})?<{ADDR_SPEC}>"
    address = rf"(?:{name_addr}|{ADDR_SPEC_NB}){params}"
    via_parm = rf"{TOKEN}{slash}{TOKEN}{slash}{TOKEN}{lws}{HOST}(?:{colon}{PORT})?{params}"
    auth_param = rf"{TOKEN}{equal}(?:{TOKEN}|{QSTRING})"
    return {
        "address": address,
        "address_list": lst(address),
        "contact": rf"\*|{lst(address)}",
        "via": lst(via_parm),
        "token_list": rf"(?:{lst(TOKEN)})?",
        "token_list1": lst(TOKEN),
        "media_type": rf"{TOKEN}{slash}{TOKEN}(?:{semi}{TOKEN}{equal}(?:{TOKEN}|{QSTRING}))*",
        "accept": rf"(?:{lst(rf'{TOKEN}{slash}{TOKEN}{params}')})?",
        "token_params": rf"{TOKEN}{params}",
        # Generic challenge / credentials shape (RFC 3261 25.1 other-challenge);
        # the typed parse lives in sipstack.auth_header.
        "auth": rf"{TOKEN}{lws}{lst(auth_param)}",
        "warning": lst(rf"[0-9]{{3}}{lws}(?:{HOST}(?::{PORT})?|{TOKEN}){lws}{QSTRING}"),
        "params": params,
    }


FULL = _header_grammar(WS, LWS, rf"{WS},{WS}", WS)

# -- the fast subset ---------------------------------------------------------------
# What SIP stacks actually send: no optional whitespace, ", " between list
# items, no escapes in URIs, hostnames rather than IPv6 references, a port of
# at most 5 digits. Each pattern accepts a subset of its FULL counterpart and is
# tried first (see _dual); anything unusual falls through to the full grammar.
# Optional groups are written ``(?:x|)`` rather than ``(?:x)?``: same meaning,
# but CPython's re runs a BRANCH faster than a one-iteration REPEAT.
F_QSTRING = r'"[^"\\\x00-\x1f\x7f]*"'
F_PARAMS = rf"(?:;{TOKEN}(?:=[{TOKEN_CHARS}:]+|={F_QSTRING}|))*"
F_HOST = r"[A-Za-z0-9][A-Za-z0-9.\-]*"
F_PORT = r"(?:[0-9]{1,4}|[1-5][0-9]{4})"
F_USER_CHARS = r"A-Za-z0-9\-_.!~*'()&+$/"
F_PARAM_CHARS = r"A-Za-z0-9\-_.!~*'()\[\]/:&+$"
F_SIP_URI = (
    rf"sips?:(?:[{F_USER_CHARS},]+@|){F_HOST}(?::{F_PORT}|)"
    rf"(?:;[{F_PARAM_CHARS}]+(?:=[{F_PARAM_CHARS}]+|))*"
)
F_SIP_URI_NB = rf"sips?:(?:[{F_USER_CHARS}]+@|){F_HOST}(?::{F_PORT}|)"
F_DISPLAY = rf"(?:{F_QSTRING} ?|[{TOKEN_CHARS}]+(?: [{TOKEN_CHARS}]+)* ?|)"


def _fast_grammar() -> dict[str, str]:
    def lst(item: str) -> str:
        return rf"{item}(?:, ?{item})*"

    address = rf"(?:{F_DISPLAY}<{F_SIP_URI}>|{F_SIP_URI_NB}){F_PARAMS}"
    auth_param = rf"{TOKEN}=(?:{TOKEN}|{F_QSTRING})"
    return {
        "address": address,
        "address_list": lst(address),
        "contact": rf"\*|{lst(address)}",
        "via": lst(rf"SIP/2\.0/[A-Za-z]+ {F_HOST}(?::{F_PORT}|){F_PARAMS}"),
        "token_list": rf"(?:{lst(TOKEN)}|)",
        "token_list1": lst(TOKEN),
        "media_type": rf"{TOKEN}/{TOKEN}(?:;{TOKEN}=(?:{TOKEN}|{F_QSTRING}))*",
        "accept": rf"(?:{lst(rf'{TOKEN}/{TOKEN}{F_PARAMS}')}|)",
        "token_params": rf"{TOKEN}{F_PARAMS}",
        "auth": rf"{TOKEN} {lst(auth_param)}",
        "warning": FULL["warning"],
        "params": F_PARAMS,
    }


FAST = _fast_grammar()
ADDRESS = FULL["address"]
PARAMS = FULL["params"]


class LazyPattern:
    """A regular expression compiled on first use.

    For the full grammar and rare headers: most processes never need them,
    and compiling them all at import cost ~30 ms on a desktop CPU. The only
    state is the compiled pattern itself, a pure function of the source.
    """

    __slots__ = ("source", "_compiled")

    def __init__(self, source: str) -> None:
        self.source = source
        self._compiled: re.Pattern[str] | None = None

    @property
    def compiled(self) -> re.Pattern[str]:
        """The compiled pattern (compiled now if this is the first use)."""
        pattern = self._compiled
        if pattern is None:
            pattern = self._compiled = re.compile(self.source)
        return pattern

    def fullmatch(self, text: str) -> re.Match[str] | None:
        """``re.Pattern.fullmatch`` on the compiled pattern."""
        return self.compiled.fullmatch(text)


def _lazy_dual(name: str) -> LazyPattern:
    # The fast branch fails quickly on unusual input and the full one decides.
    if FAST[name] == FULL[name]:
        return LazyPattern(FULL[name])
    return LazyPattern(rf"(?:{FAST[name]})|(?:{FULL[name]})")


# -- the pieces the transaction and dialog layers read -------------------------------


def _params_strict(name: str, *, quoted: bool = True, capture: bool = False) -> str:
    """F_PARAMS in which parameter ``name`` may only appear as ``;name=token``.

    Any other spelling of that name (``;BRANCH=``, a quoted value, no value)
    fails the pattern, so the full grammar and the dict-building slow path
    decide. After a match, the last exact ``;name=`` holds the value
    ``params[name]`` would (the last one wins in both), which the accessors
    exploit. ``quoted=False`` also refuses quoted values of other parameters,
    so that ``;`` and ``>`` in the parameters are separators only. With
    ``capture``, one group holds that value.
    """
    other_case = "".join(f"[{c.lower()}{c.upper()}]" for c in name)
    value = rf"=[{TOKEN_CHARS}:]+|={F_QSTRING}|" if quoted else rf"=[{TOKEN_CHARS}:]+|"
    name_value = rf"([{TOKEN_CHARS}]+)" if capture else rf"[{TOKEN_CHARS}]+"
    return (
        rf"(?:;{name}={name_value}"
        rf"|;(?!{other_case}(?![{TOKEN_CHARS}])){TOKEN}(?:{value}))*"
    )


# Via and From / To as HEAD_RE accepts them (see HEAD_PIECES).
_VIA_PARM = rf"SIP/2\.0/[A-Za-z]+ {F_HOST}(?::{F_PORT}|){_params_strict('branch', quoted=False)}"
# The first via-parm of a Via value HEAD_RE accepted, or a whole one (Via.parse);
# groups: transport, host, port, params, branch.
VIA_PARM_RE = re.compile(
    rf"SIP/2\.0/([A-Za-z]+) ({F_HOST})(?::({F_PORT})|)"
    rf"((?:;branch=([{TOKEN_CHARS}]+)|;(?![Bb][Rr][Aa][Nn][Cc][Hh](?![{TOKEN_CHARS}])){TOKEN}"
    rf"(?:=[{TOKEN_CHARS}:]+|={F_QSTRING}|))*)"
)
# From / To in the fast spelling; groups: quoted display name (no escapes),
# token display name, URI inside <>, bare URI, header params.
ADDRESS_PARTS_RE = LazyPattern(
    rf'(?:(?:"([^"\\\x00-\x1f\x7f]*)" ?|([{TOKEN_CHARS}]+(?: [{TOKEN_CHARS}]+)*) ?|)'
    rf"<({F_SIP_URI})>|({F_SIP_URI_NB}))({F_PARAMS})"
)

# RFC 3261 20.22: 0-255 hops, leading zeros legal (RFC 4475 3.1.1.1).
MAX_FORWARDS = (
    r"(?:[1-9]?[0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5]|0+(?:[0-9]{1,2}|1[0-9]{2}|2[0-4][0-9]|25[0-5]))"
)
CALL_ID = rf"{CALL_ID_WORD}(?:@{CALL_ID_WORD}|)"
_DATE = rf"{_WKDAY}, [0-9]{{2}} {_MONTH} [0-9]{{4}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} GMT"


# -- the header section in one match ------------------------------------------------
# HEAD_RE checks a whole header section spelled the usual way in one call: each
# line is "Name: value\r\n" with a canonical name and a value in the FAST
# grammar, or an unchecked header (no grammar beyond TEXT-UTF8) with no
# whitespace around its value. One C call instead of a Python loop over the
# lines is the parser's hot path. Its only groups capture the values of the
# first Via and of the single headers (HEAD_CAPTURED), which the transaction
# layer reads; a second single header fails the match (a conditional on its
# group). Capturing the pieces of those values too would cost more than
# splitting them later: inside a repeat, CPython's re copies every set group
# mark at each branch. Anything else (compact or odd-case names of checked
# headers, unusual whitespace, the full grammar, rare headers) fails the
# match, and the line-by-line path, which accepts a superset, decides.

# Checked headers HEAD_RE knows, by canonical name ("|" between names sharing a
# grammar, which keeps the pattern and its compile time small), most frequent
# first; rare ones are left out: their messages take the line-by-line path.
_HEAD_CHECKED = {
    # The first seven: see HEAD_PIECES.
    "Via": "",
    "From": "",
    "To": "",
    "Call-ID": "",
    "CSeq": "",
    "Max-Forwards": "",
    "Content-Length": "",
    "Contact": FAST["contact"],
    "Content-Type": FAST["media_type"],
    "Allow|Supported|Allow-Events": FAST["token_list"],
    "Expires|Min-Expires|RSeq": r"[0-9]{1,9}",
    "Record-Route|Route|P-Asserted-Identity": FAST["address_list"],
    "Authorization|WWW-Authenticate|Proxy-Authorization|Proxy-Authenticate": FAST["auth"],
    "Event|Subscription-State|Content-Disposition": FAST["token_params"],
    "Require|Unsupported|Proxy-Require|Content-Encoding": FAST["token_list1"],
    "Session-Expires|Min-SE": rf"[0-9]{{1,9}}{F_PARAMS}",
    "Accept": FAST["accept"],
    "Date": _DATE,
    "SIP-ETag|SIP-If-Match": TOKEN,
    "Refer-To|Referred-By": FAST["address"],
    # Unchecked but common: cheaper here than through the generic line.
    "User-Agent|Server|Subject|Reason|Organization|Accept-Encoding|Accept-Language"
    "|Alert-Info|Call-Info|Privacy": None,
}
# TEXT-UTF8 with no whitespace around it (written with "|)": see FAST).
_UNCHECKED_VALUE = r"(?:[^\r\n \t](?:[^\r\n]*[^\r\n \t]|)|)"


def _any_case(words: list[str]) -> str:
    """A pattern for any of ``words`` in any letter case, factored into a trie.

    Each level starts with a character class, so a failing alternative costs
    one test (CPython's ``re`` skips a BRANCH alternative on its first IN).
    """
    trie: dict[str, dict[str, object]] = {}
    for word in words:
        node = trie
        for ch in word.lower():
            node = node.setdefault(ch, {})  # type: ignore[assignment]
        node[""] = {}

    def emit(node: Mapping[str, object]) -> str:
        alts = []
        for ch in sorted(node, key=lambda c: c == ""):  # longer names first
            child = node[ch]
            assert isinstance(child, dict)
            if not ch:
                alts.append("")
            elif ch.isalpha():
                alts.append(f"[{ch}{ch.upper()}]{emit(child)}")
            else:
                alts.append(re.escape(ch) + emit(child))
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return emit(trie)


# What HEAD_RE captures, in group order (its first lines, so that no other
# group comes before them): the pieces of the first via-parm (parameters with
# ";branch=" spelled only so), the From / To values and their tags, Call-ID,
# CSeq number and method, Max-Forwards, Content-Length. Each line's first
# group is set once that header was seen: the first Via is captured, a second
# single header fails the match (RFC 3261 7.3.1).
_VIA_FIRST = (
    rf"SIP/2\.0/([A-Za-z]+) ({F_HOST})(?::({F_PORT})|)"
    rf"({_params_strict('branch', quoted=False, capture=True)})"
)
_ADDRESS_TAG = (
    rf"((?:{F_DISPLAY}<{F_SIP_URI}>|{F_SIP_URI_NB})"
    rf"{_params_strict('tag', quoted=False, capture=True)})"
)
HEAD_PIECES = {
    "Via": (rf"(?(1){_VIA_PARM}|{_VIA_FIRST})(?:, ?{_VIA_PARM})*", 5),
    "From": (rf"(?(6)(?!)|{_ADDRESS_TAG})", 2),
    "To": (rf"(?(8)(?!)|{_ADDRESS_TAG})", 2),
    "Call-ID": (rf"(?(10)(?!)|({CALL_ID}))", 1),
    "CSeq": (rf"(?(11)(?!)|([0-9]{{1,9}}) ({TOKEN}))", 2),
    "Max-Forwards": (rf"(?(13)(?!)|({MAX_FORWARDS}))", 1),
    "Content-Length": (r"(?(14)(?!)|([0-9]{1,9}))", 1),
}
HEAD_CAPTURED = tuple(HEAD_PIECES)
# At most this many header lines (the parser's default limit): a longer
# section takes the line-by-line path, which enforces the caller's limit.
HEAD_MAX_FIELDS = 256


def head_re(checked_names: list[str]) -> LazyPattern:
    """HEAD_RE, to be matched from the first header line to the end of the
    header section (its last CRLF included).

    ``checked_names`` are all names (compact forms included) of checked
    headers: the generic line must not take any of them. Compiled on the
    first parse, not at import: the largest pattern here (~15 ms of
    ``re._compiler`` on a desktop CPU), and start-up sends the first REGISTER
    before it has anything to parse (issue 6).
    """
    assert tuple(_HEAD_CHECKED)[: len(HEAD_CAPTURED)] == HEAD_CAPTURED
    lines = []
    for name, value in _HEAD_CHECKED.items():
        if name in HEAD_PIECES:
            value = HEAD_PIECES[name][0]
        elif value is None:
            value = _UNCHECKED_VALUE
        lines.append(f"(?:{name}): (?:{value})" if "|" in name else f"{name}: (?:{value})")
    lines.append(rf"(?!{_any_case(checked_names)}:){TOKEN}: {_UNCHECKED_VALUE}")
    body = "|".join(rf"{line}\r\n" for line in lines)
    return LazyPattern(f"(?:{body}){{0,{HEAD_MAX_FIELDS}}}")


def _c(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


# -- compiled at import: what every message needs --------------------------------------
# (and VIA_PARM_RE above; HEAD_RE is a LazyPattern, compiled by the first parse)

TOKEN_RE = _c(TOKEN)
# The usual Request-Line: a plain sip/sips Request-URI and SIP/2.0; a subset
# of REQUEST_LINE_RE + REQUEST_URI_RE, which judge everything else.
FAST_REQUEST_LINE_RE = _c(rf"({TOKEN}) ({F_SIP_URI}) SIP/2\.0")
# Reason-Phrase: anything but control characters (HTAB allowed); may be empty.
FAST_STATUS_LINE_RE = _c(r"SIP/2\.0 ([1-6][0-9][0-9]) ([^\x00-\x08\x0a-\x1f\x7f]*)")
# A bare NUL outside a quoted-pair (RFC 3261 25.1: only quoted-pair admits %x00).
BARE_NUL_RE = _c(r"(?<!\\)\x00")
UNFOLD_RE = _c(r"[ \t]*\r\n[ \t]+")


# -- compiled on first use: the line-by-line path, the full grammar, rare headers -----

# 32-bit unsigned decimal (RFC 3261 8.1.1.5 CSeq, 20.19 Expires delta-seconds...),
# leading zeros allowed; the common short form first.
UINT32 = (
    r"(?:[0-9]{1,9}|0*(?:[1-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}"
    r"|4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}"
    r"|42949672[0-8][0-9]|429496729[0-5]|[0-9]{1,9}))"
)
VIA_RE = LazyPattern(FAST["via"])
CSEQ_RE = LazyPattern(rf"([0-9]{{1,9}}) ({TOKEN})")
VIA_FULL = _lazy_dual("via")
ADDRESS_FULL = _lazy_dual("address")
ADDRESS_LIST_RE = LazyPattern(FAST["address_list"])
ADDRESS_LIST_FULL = _lazy_dual("address_list")
CONTACT_RE = LazyPattern(FAST["contact"])
CONTACT_FULL = _lazy_dual("contact")
TOKEN_LIST_RE = LazyPattern(FAST["token_list"])
TOKEN_LIST_FULL = _lazy_dual("token_list")
TOKEN_LIST1_RE = LazyPattern(FAST["token_list1"])
TOKEN_LIST1_FULL = _lazy_dual("token_list1")
MEDIA_TYPE_RE = LazyPattern(FAST["media_type"])
MEDIA_TYPE_FULL = _lazy_dual("media_type")
TOKEN_PARAMS_RE = LazyPattern(FAST["token_params"])
TOKEN_PARAMS_FULL = _lazy_dual("token_params")
AUTH_RE = LazyPattern(FAST["auth"])
AUTH_FULL = _lazy_dual("auth")
ACCEPT_RE = _lazy_dual("accept")
WARNING_RE = _lazy_dual("warning")
SHORT_UINT_RE = LazyPattern(r"[0-9]{1,9}")
UINT32_RE = LazyPattern(UINT32)
MAX_FORWARDS_RE = LazyPattern(MAX_FORWARDS)
CALL_ID_RE = LazyPattern(CALL_ID)
CSEQ_FULL = LazyPattern(rf"({UINT32}){LWS}({TOKEN})")
DELTA_PARAMS_RE = LazyPattern(rf"[0-9]{{1,9}}{F_PARAMS}")
DELTA_PARAMS_FULL = LazyPattern(rf"{UINT32}{PARAMS}")
RETRY_AFTER_RE = LazyPattern(rf"{UINT32}(?:{WS}{COMMENT})?{PARAMS}")
RACK_RE = LazyPattern(rf"{UINT32}{LWS}{UINT32}{LWS}{TOKEN}")
# RFC 3261 20.17 / 25.1 SIP-date = rfc1123-date, always GMT.
DATE_RE = LazyPattern(_DATE)
TIMESTAMP_RE = LazyPattern(r"[0-9]+(?:\.[0-9]*)?(?:[ \t]+[0-9]*(?:\.[0-9]*)?)?")
# RFC 3261 19.1.1 table 1: no URI headers in a Request-URI.
REQUEST_URI_RE = LazyPattern(
    rf"(?i:sips?):{USERINFO}{HOST}(?::{PORT})?{URI_PARAMS}|{TEL_URI}|{OTHER_URI}"
)
REQUEST_LINE_RE = LazyPattern(rf"({TOKEN}) ([^ \t]+) ((?i:SIP)/[0-9]+\.[0-9]+)")
STATUS_LINE_RE = LazyPattern(
    r"((?i:SIP)/[0-9]+\.[0-9]+) ([1-6][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?"
)
# One comma-separated element: quoted strings and <...> may contain commas.
LIST_ITEM_RE = LazyPattern(r'(?:"(?:[^"\\]|\\.)*"?|<[^>]*>?|[^,"<]+)+')
