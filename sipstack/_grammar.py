"""RFC 3261 section 25.1 grammar as precompiled regular expressions.

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
"""

from __future__ import annotations

import re

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


def _c(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _dual(name: str) -> re.Pattern[str]:
    # The fast branch fails quickly on unusual input and the full one decides.
    if FAST[name] == FULL[name]:
        return re.compile(FULL[name])
    return re.compile(rf"(?:{FAST[name]})|(?:{FULL[name]})")


# -- compiled matchers ---------------------------------------------------------

TOKEN_RE = _c(TOKEN)
ADDRESS_RE = _dual("address")
ADDRESS_LIST_RE = _dual("address_list")
CONTACT_RE = _dual("contact")
VIA_LIST_RE = _dual("via")
TOKEN_LIST_RE = _dual("token_list")
TOKEN_LIST1_RE = _dual("token_list1")
MEDIA_TYPE_RE = _dual("media_type")
ACCEPT_RE = _dual("accept")
TOKEN_PARAMS_RE = _dual("token_params")
AUTH_RE = _dual("auth")
WARNING_RE = _dual("warning")
CSEQ_RE = _c(rf"([0-9]+){LWS}({TOKEN})")
# 32-bit unsigned decimal (RFC 3261 8.1.1.5 CSeq, 20.19 Expires delta-seconds...),
# leading zeros allowed; the common short form first.
UINT32 = (
    r"(?:[0-9]{1,9}|0*(?:[1-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}"
    r"|4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}"
    r"|42949672[0-8][0-9]|429496729[0-5]|[0-9]{1,9}))"
)
# RFC 3261 20.22: 0-255 hops, leading zeros legal (RFC 4475 3.1.1.1).
MAX_FORWARDS_RE = _c(
    r"(?:[1-9]?[0-9]|1[0-9]{2}|2[0-4][0-9]|25[0-5]|0+(?:[0-9]{1,2}|1[0-9]{2}|2[0-4][0-9]|25[0-5]))"
)
UINT32_RE = _c(UINT32)
CSEQ_CHECK_RE = _c(rf"{UINT32} {TOKEN}|{UINT32}{LWS}{TOKEN}")
DELTA_PARAMS_CHECK_RE = _c(rf"{UINT32}{FAST['params']}|{UINT32}{PARAMS}")
RETRY_AFTER_CHECK_RE = _c(rf"{UINT32}(?:{WS}{COMMENT})?{PARAMS}")
RACK_CHECK_RE = _c(rf"{UINT32}{LWS}{UINT32}{LWS}{TOKEN}")
CALL_ID_RE = _c(rf"{CALL_ID_WORD}(?:@{CALL_ID_WORD}|)")
# RFC 3261 20.17 / 25.1 SIP-date = rfc1123-date, always GMT.
DATE_RE = _c(rf"{_WKDAY}, [0-9]{{2}} {_MONTH} [0-9]{{4}} [0-9]{{2}}:[0-9]{{2}}:[0-9]{{2}} GMT")
TIMESTAMP_RE = _c(r"[0-9]+(?:\.[0-9]*)?(?:[ \t]+[0-9]*(?:\.[0-9]*)?)?")

# RFC 3261 19.1.1 table 1: no URI headers in a Request-URI.
REQUEST_URI_RE = _c(rf"(?i:sips?):{USERINFO}{HOST}(?::{PORT})?{URI_PARAMS}|{TEL_URI}|{OTHER_URI}")
# The usual Request-Line: a plain sip/sips Request-URI and SIP/2.0; a subset
# of REQUEST_LINE_RE + REQUEST_URI_RE, which judge everything else.
FAST_REQUEST_LINE_RE = _c(rf"({TOKEN}) ({F_SIP_URI}) SIP/2\.0")
REQUEST_LINE_RE = _c(rf"({TOKEN}) ([^ \t]+) ((?i:SIP)/[0-9]+\.[0-9]+)")
# Reason-Phrase: anything but control characters (HTAB allowed); may be empty.
FAST_STATUS_LINE_RE = _c(r"SIP/2\.0 ([1-6][0-9][0-9]) ([^\x00-\x08\x0a-\x1f\x7f]*)")
STATUS_LINE_RE = _c(
    r"((?i:SIP)/[0-9]+\.[0-9]+) ([1-6][0-9][0-9])(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?"
)

# A bare NUL outside a quoted-pair (RFC 3261 25.1: only quoted-pair admits %x00).
BARE_NUL_RE = _c(r"(?<!\\)\x00")
UNFOLD_RE = _c(r"[ \t]*\r\n[ \t]+")
# One comma-separated element: quoted strings and <...> may contain commas.
LIST_ITEM_RE = _c(r'(?:"(?:[^"\\]|\\.)*"?|<[^>]*>?|[^,"<]+)+')
