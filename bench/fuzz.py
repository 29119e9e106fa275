"""Mutation fuzzing of every byte-level input of the device: SIP, RTP/RTCP and SDP.

Run from the repository root (issue 8, "bad input everywhere")::

    nice .venv/bin/python bench/fuzz.py --count 1000000 --media-count 200000 --seed 1

Valid seeds (the ``tests/data`` corpus, the RFC 4475/5118 vectors, INVITE,
REGISTER and 200 OK with SDP, RTP/RTCP packets built by ``sipstack``) are
mutated: bit flips, byte insert/delete, truncation, header duplication, huge
values, CRLF games, numeric overflow in Content-Length/CSeq/Max-Forwards/
Expires, unicode. Each mutant goes through the *real* receive path:

* **SIP**: a datagram from a client socket on 127.0.0.1 to the UDP transport
  of a :class:`~sipstack.useragent.UserAgent` with a local account and a
  :class:`~sipstack.calls.CallManager` that answers calls; the transport reads
  it from its socket in the loop's reader callback, parses, stamps the Via,
  and the endpoint, transaction layer, UA and call layer handle it. What the
  UA sends is captured at the transport's ``send`` (nothing leaves the process
  but the fuzzed datagrams themselves, so a mutated Via cannot aim our answers
  at another program's port) and checked: every response parses, answers an
  unparsable request only with 4xx/5xx, and a parsed request only with a
  response of the same Call-ID and CSeq method.
* **RTP/RTCP**: datagrams to the RTP and RTCP sockets of a
  :class:`~sipstack.media_session.MediaSession` in a PCMU call with
  telephone-event, read by the loop and by the per-tick ``read()``: RTP
  session, RTCP parser, jitter buffer, DTMF receiver, decoder.
* **SDP**: ``parse_sdp``, then our answer to it as an offer
  (``create_answer``), and ``process_answer`` of it as the answer to our offer.

Any exception that escapes into the loop (the loop logs it from
``sipstack.loop``), or out of the SDP functions other than their documented
peer-fault errors, is a crash: it is printed with the input that caused it and
the exit status is 1. The clock is fake (the loop's ``clock`` argument), so
transactions and calls time out by jumping it, not by waiting.

``tests/robustness/test_fuzz.py`` runs the same harness with a smaller count.
"""

from __future__ import annotations

import argparse
import collections
import logging
import random
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sipstack.call_events import IncomingCall  # noqa: E402
from sipstack.calls import CallManager  # noqa: E402
from sipstack.codecs import default_registry  # noqa: E402
from sipstack.errors import SipParseError  # noqa: E402
from sipstack.ids import IdGenerator  # noqa: E402
from sipstack.loop import Loop  # noqa: E402
from sipstack.media_session import MediaSession, RtpPortAllocator  # noqa: E402
from sipstack.message import Request, Response, parse_message  # noqa: E402
from sipstack.offer_answer import (  # noqa: E402
    CodecSpec,
    LocalMedia,
    OfferAnswerError,
    create_answer,
    create_offer,
    process_answer,
)
from sipstack.rtcp import (  # noqa: E402
    Bye,
    ReceiverReport,
    ReportBlock,
    SenderReport,
    SourceDescription,
    UnknownRtcp,
    build_compound,
)
from sipstack.rtp import build_rtp  # noqa: E402
from sipstack.sdp import SdpParseError, parse_sdp  # noqa: E402
from sipstack.transport_base import Destination  # noqa: E402
from sipstack.useragent import UserAgent  # noqa: E402

DATA = ROOT / "tests" / "data"
HOST = "127.0.0.1"
MAX_UDP = 65507  # the largest IPv4 UDP payload: longer mutants are cut there

# -- seeds ---------------------------------------------------------------------------------

_SDP = (
    b"v=0\r\no=- 3912345678 3912345678 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 10042 RTP/AVP 9 0 8 101\r\na=rtpmap:9 G722/8000\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)
_SDP_SRTP = (
    b"v=0\r\no=alice 2890844526 2890844527 IN IP6 ::1\r\ns= \r\nc=IN IP6 ::1\r\n"
    b"b=AS:64\r\nt=0 0\r\nm=audio 49170 RTP/SAVP 0 96 101\r\na=rtpmap:96 opus/48000/2\r\n"
    b"a=fmtp:96 useinbandfec=1\r\na=rtcp:49171 IN IP6 ::1\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 "
    b"inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz|2^20|1:4\r\n"
    b"a=sendonly\r\nm=video 0 RTP/AVP 31\r\nm=audio 49180 RTP/AVP 8\r\na=inactive\r\n"
)
_CLIENT = "{client}"  # replaced with the fuzzing socket's port, so rport answers are ours


def _sip_template(method: str, body: bytes = b"", extra: str = "") -> bytes:
    head = (
        f"{method} sip:door@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:{_CLIENT};branch=z9hG4bK{method.lower()}77;rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Flat 3" <sip:flat3@127.0.0.1>;tag=f00d\r\n'
        "To: <sip:door@127.0.0.1>\r\n"
        f"Call-ID: fuzz-{method.lower()}@127.0.0.1\r\n"
        f"CSeq: 1 {method}\r\n"
        f"Contact: <sip:flat3@127.0.0.1:{_CLIENT}>\r\n"
        f"{extra}"
    )
    if body:
        head += "Content-Type: application/sdp\r\n"
    return head.encode() + b"Content-Length: %d\r\n\r\n" % len(body) + body


def sip_seeds(client_port: int) -> list[bytes]:
    """Valid and conformance-vector SIP messages, Via pointed at ``client_port``."""
    seeds = [
        _sip_template("INVITE", _SDP, "Allow: INVITE, ACK, BYE, CANCEL, OPTIONS\r\n"),
        _sip_template("INVITE", _SDP_SRTP, "Supported: timer\r\nSession-Expires: 90\r\n"),
        _sip_template("REGISTER", extra="Expires: 3600\r\n"),
        _sip_template("OPTIONS", extra="Accept: application/sdp\r\n"),
        _sip_template("MESSAGE", extra="Content-Type: text/plain\r\n")[:-4] + b"\r\n\r\n",
        _sip_template("SUBSCRIBE", extra="Event: presence\r\nExpires: 600\r\n"),
        _sip_template("NOTIFY", extra="Event: dialog\r\nSubscription-State: active\r\n"),
        _sip_template("INFO", extra="Content-Type: application/dtmf-relay\r\n"),
        _sip_template("BYE").replace(b"<sip:door@127.0.0.1>", b"<sip:door@127.0.0.1>;tag=1"),
        _sip_template("CANCEL"),
        b"SIP/2.0 200 OK\r\n"
        + _sip_template("INVITE", _SDP)
        .split(b"\r\n", 1)[1]
        .replace(b"To: <sip:door@127.0.0.1>", b"To: <sip:door@127.0.0.1>;tag=a"),
    ]
    files = sorted(
        [*DATA.glob("corpus/*.sip"), *DATA.glob("rfc4475/*.dat"), *DATA.glob("rfc5118/wire/*.sip")]
    )
    via = re.compile(rb"^(Via|v)\s*:[^\r\n]*", re.I | re.M)
    for path in files:
        raw = path.read_bytes()
        # Top Via to our socket, so answers to requests are recognisably ours.
        raw = via.sub(
            b"Via: SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bKseed;rport" % client_port, raw, count=1
        )
        seeds.append(raw)
    return [s.replace(_CLIENT.encode(), str(client_port).encode()) for s in seeds]


# -- mutations -----------------------------------------------------------------------------

_SPECIAL = b'\r\n\x00 \t:;,"<>@=%\\/[]\xff\xc3'
_HUGE = [
    b"4294967296",
    b"18446744073709551616",
    b"-1",
    b"99999999999999999999999999999999999999",
    b"0x10",
    b"1e9",
    b"\xd9\xa3",  # ARABIC-INDIC DIGIT THREE: int() would take it, SIP must not
    b"\xef\xbc\x91",  # FULLWIDTH DIGIT ONE
    b"",
    b" 1 2",
]
_NUMERIC = [
    b"Content-Length",
    b"l",
    b"CSeq",
    b"Max-Forwards",
    b"Expires",
    b"Min-Expires",
    b"Retry-After",
    b"Session-Expires",
    b"RSeq",
    b"RAck",
]
_UNICODE = ["é", "\u202e", "\ufeff", "\U0001f6aa", "\u0000", "\ud7ff", "ß", "İ"]


def _byte_ops(buf: bytearray, rng: random.Random) -> None:
    op = rng.randrange(7)
    pos = rng.randrange(len(buf)) if buf else 0
    if op == 0 and buf:
        buf[pos] ^= 1 << rng.randrange(8)  # bit flip
    elif op == 1 and buf:
        buf[pos] = rng.randrange(256)
    elif op == 2:
        buf[pos:pos] = bytes(rng.choice(_SPECIAL) for _ in range(rng.randint(1, 4)))
    elif op == 3:
        del buf[pos : pos + rng.randint(1, 16)]
    elif op == 4:
        end = min(len(buf), pos + rng.randint(1, 64))
        buf[pos:pos] = buf[pos:end]
    elif op == 5:
        del buf[pos:]  # truncation
    else:
        buf[pos:pos] = rng.randbytes(rng.randint(1, 8))


def _lines(data: bytes) -> tuple[list[bytes], bytes]:
    head, sep, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n"), body if sep else b""


def _join(lines: list[bytes], body: bytes) -> bytes:
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _sip_structured(data: bytes, rng: random.Random) -> bytes:
    lines, body = _lines(data)
    op = rng.randrange(9)
    if op == 0 and len(lines) > 1:  # header duplication (same or conflicting value)
        i = rng.randrange(1, len(lines))
        dup = lines[i]
        if rng.random() < 0.5:
            dup = re.sub(rb"\d+", lambda _m: str(rng.randrange(10**6)).encode(), dup)
        lines.insert(rng.randrange(1, len(lines) + 1), dup)
    elif op == 1:  # huge or overflowing numeric values
        name = rng.choice(_NUMERIC)
        value = rng.choice(_HUGE)
        if name == b"CSeq":
            value += b" " + rng.choice([b"INVITE", b"REGISTER", b"OPTIONS", b""])
        replaced = False
        for i, line in enumerate(lines[1:], 1):
            if line.split(b":", 1)[0].strip().lower() == name.lower():
                lines[i] = name + b": " + value
                replaced = True
        if not replaced:
            lines.insert(rng.randrange(1, len(lines) + 1), name + b": " + value)
    elif op == 2:  # a huge header value or a huge number of headers
        if rng.random() < 0.5:
            lines.insert(1, b"X-Big: " + b"a" * rng.choice([1000, 8000, 70000]))
        else:
            lines[1:1] = [b"X-H%d: v" % i for i in range(rng.choice([100, 300, 2000]))]
    elif op == 3:  # CRLF games: bare LF, bare CR, folding, blank lines, leading CRLFs
        game = rng.randrange(6)
        joined = _join(lines, body)
        if game == 0:
            return joined.replace(b"\r\n", b"\n")
        if game == 1:
            return joined.replace(b"\r\n", b"\r", rng.randint(1, 5))
        if game == 2:
            return b"\r\n" * rng.randint(1, 4) + joined
        if game == 3 and len(lines) > 2:
            i = rng.randrange(2, len(lines))
            lines[i] = b" " + lines[i]  # continuation line (RFC 3261 7.3.1 folding)
        elif game == 4:
            lines.insert(rng.randrange(1, len(lines) + 1), b"")
        else:
            return joined[: -len(body) - 2] if body else joined[:-2]
    elif op == 4:  # unicode anywhere
        i = rng.randrange(len(lines))
        text = lines[i].decode("utf-8", "surrogateescape")
        pos = rng.randrange(len(text) + 1)
        text = text[:pos] + rng.choice(_UNICODE) + text[pos:]
        lines[i] = text.encode("utf-8", "surrogatepass")
    elif op == 5:  # body shorter or longer than Content-Length
        body = (
            body[: rng.randrange(len(body) + 1)] if rng.random() < 0.5 else body + rng.randbytes(40)
        )
    elif op == 6 and len(lines) > 1:  # drop a header (often a mandatory one)
        del lines[rng.randrange(1, len(lines))]
    elif op == 7:  # mangle the start line
        parts = lines[0].split(b" ")
        i = rng.randrange(len(parts))
        parts[i] = rng.choice(
            [
                b"SIP/3.0",
                b"sip/2.0",
                b"",
                b"INVITE",
                b"<sip:x>",
                b"sip:" + b"a" * 300,
                b"999",
                b"tel:+1",
                b"\x00",
            ]
        )
        lines[0] = b" ".join(parts)
    else:  # header name games: compact forms, case, whitespace before the colon
        if len(lines) > 1:
            i = rng.randrange(1, len(lines))
            name, sep, value = lines[i].partition(b":")
            name = rng.choice([name.upper(), name.lower(), name + b" \t", b"", name + b"\x00"])
            lines[i] = name + sep + value
    return _join(lines, body)


def mutate_sip(data: bytes, rng: random.Random) -> bytes:
    """One SIP mutant: 1-3 structured and/or byte-level mutations of ``data``."""
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5:
            data = _sip_structured(data, rng)
        else:
            buf = bytearray(data)
            _byte_ops(buf, rng)
            data = bytes(buf)
    return data


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """A binary mutant (RTP/RTCP): 1-4 byte-level mutations."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        _byte_ops(buf, rng)
    return bytes(buf)


def mutate_sdp(data: bytes, rng: random.Random) -> bytes:
    """An SDP mutant: line games, number overflow, unicode, or byte mutations."""
    lines = data.split(b"\r\n")
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        if op == 0 and lines:
            i = rng.randrange(len(lines))
            lines[i] = re.sub(
                rb"\d+",
                lambda _m: rng.choice(_HUGE + [b"0", b"65536", b"127", b"128"]),
                lines[i],
                count=1,
            )
        elif op == 1 and lines:
            lines.insert(rng.randrange(len(lines) + 1), lines[rng.randrange(len(lines))])
        elif op == 2 and lines:
            del lines[rng.randrange(len(lines))]
        elif op == 3 and lines:
            i = rng.randrange(len(lines))
            lines[i] = (lines[i].decode("utf-8", "surrogateescape") + rng.choice(_UNICODE)).encode(
                "utf-8", "surrogatepass"
            )
        elif op == 4:
            lines.insert(
                rng.randrange(len(lines) + 1),
                rng.choice(
                    [
                        b"m=audio 0 RTP/AVP",
                        b"a=rtpmap:96",
                        b"a=rtpmap:0 PCMU/0",
                        b"a=rtpmap:101 telephone-event/8000/0",
                        b"a=fmtp:101 15-0,99999999999",
                        b"a=rtcp:70000",
                        b"a=ptime:0",
                        b"a=ptime:-20",
                        b"c=IN IP4 999.1.1.1/127/3",
                        b"c=IN IP6 ::ffff:1.2.3.4",
                        b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:",
                        b"m=audio 1/99999999 RTP/AVP 0",
                        b"m=audio 49170 RTP/AVP " + b" ".join(b"%d" % i for i in range(200)),
                        b"x",
                        b"=",
                    ]
                ),
            )
        else:
            buf = bytearray(b"\r\n".join(lines))
            _byte_ops(buf, rng)
            lines = bytes(buf).split(b"\r\n")
    return b"\r\n".join(lines)


# -- crash detection -----------------------------------------------------------------------


class CrashLog(logging.Handler):
    """Collects every log record that carries an exception, and every ERROR.

    The loop logs a callback's exception with ``log.exception`` on
    ``sipstack.loop`` ("callback ... raised; the loop goes on"); any such record
    during a fuzz run is a crash that the device would have survived only by
    luck. Installed on the root logger for the run.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is not None or record.levelno >= logging.ERROR:
            self.records.append(record)

    def install(self) -> CrashLog:
        """Attach to the root logger (and let ERROR records through to it)."""
        root = logging.getLogger()
        self._saved_level = root.level
        # A root level above WARNING would filter errors out before any handler.
        root.setLevel(min(root.level, logging.WARNING) if root.level else logging.WARNING)
        root.addHandler(self)
        return self

    def uninstall(self) -> None:
        """Detach, restoring the root logger's level."""
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._saved_level)


@dataclass
class Finding:
    """One input that broke a rule, with what happened."""

    kind: str  # "sip", "rtp", "sdp"
    data: bytes
    problem: str


@dataclass
class Result:
    """Outcome counts of one fuzz run of one kind."""

    kind: str
    count: int = 0
    seconds: float = 0.0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    findings: list[Finding] = field(default_factory=list)
    #: error responses that echo a bare CR, LF or NUL from the request (see the doc)
    echoed_controls: list[bytes] = field(default_factory=list)

    @property
    def rate(self) -> float:
        """Inputs per second of wall time."""
        return self.count / self.seconds if self.seconds else 0.0


class FakeClock:
    """The loop's clock: moves only when the harness says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- SIP -----------------------------------------------------------------------------------


class SipHarness:
    """A UA with a local account and an answering call manager, fed over real UDP."""

    def __init__(self, seed: int) -> None:
        self.clock = FakeClock()
        self.loop = Loop(clock=self.clock)
        rng = random.Random(seed)
        self.ua = UserAgent(self.loop, ids=IdGenerator(random.Random(seed)), rng=rng)
        tid = self.ua.transport_create("udp", HOST, 0)
        self.ua.acc_add_local(tid)
        self.port = self.ua.endpoint.transports.info(tid).local_port
        self._answers = rng
        self.calls = CallManager(self.ua, on_event=self._on_call_event, max_calls=4)
        # Capture what the UA sends (see the module doc): the transport's own send.
        self.transport = self.ua.endpoint.transports.transport_for(Destination("udp", HOST, 1))
        self.sent: list[tuple[bytes, Destination]] = []
        self.transport.send = self._capture  # type: ignore[method-assign]
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.client.bind((HOST, 0))
        self.client_port = self.client.getsockname()[1]

    def _capture(self, data: bytes, dest: Destination) -> None:
        self.sent.append((data, dest))

    def _on_call_event(self, event: object) -> None:
        if isinstance(event, IncomingCall):
            code = self._answers.choice([180, 200, 200, 486, 603])
            cid = event.call_id

            def answer() -> None:
                if self.calls.call_is_active(cid):
                    self.calls.call_answer(cid, code)

            self.loop.call_soon(answer)

    def feed(self, data: bytes) -> list[tuple[bytes, Destination]]:
        """Send one datagram to the UA, run the loop until it is handled; what it sent."""
        self.sent = []
        stats = self.transport.stats
        before = stats.received
        self.client.sendto(data, (HOST, self.port))
        for _ in range(1000):
            self.loop.run_once(max_wait=0.01)
            if stats.received != before:
                break
        else:
            raise RuntimeError("the UA did not read the datagram within 10 s")
        self.loop.run_once(max_wait=0)  # callbacks it scheduled (answers, pumps)
        self.clock.now += 0.001
        return self.sent

    def expire(self) -> list[tuple[bytes, Destination]]:
        """Hang up, then jump the clock past every transaction timer (64*T1 and more)."""
        self.sent = []
        try:
            self.calls.hangup_all()
        except Exception as exc:  # noqa: BLE001 -- the harness reports, the run goes on
            logging.getLogger("fuzz").error("hangup_all raised: %r", exc, exc_info=True)
        for _ in range(40):
            self.clock.now += 4.0
            self.loop.run_once(max_wait=0)
        return self.sent

    def close(self) -> None:
        """Release the UA, calls and sockets."""
        self.calls.close()
        self.ua.shutdown(timeout=0)
        self.ua.endpoint.close()
        self.client.close()
        self.loop.close()


_STATUS_LINE = re.compile(rb"SIP/2\.0 [45]\d\d [^\r\n]*\r\n")
_HEADER_LINE = re.compile(rb"[A-Za-z-]+: ")
_CONTROL = re.compile(rb"[\r\n\x00]")


def _echo_problem(out: bytes) -> str | None:
    """Why ``out`` is not a well-formed echoing error response, or None if it is."""
    if not _STATUS_LINE.match(out):
        return "no 4xx/5xx status line"
    head, sep, body = out.partition(b"\r\n\r\n")
    if not sep or body:
        return "header section not closed, or a body"
    lines = head.split(b"\r\n")[1:]
    if not all(_HEADER_LINE.match(line) for line in lines):
        return "a line that is not a header"
    names = {line.split(b":", 1)[0].lower() for line in lines}
    if not {b"via", b"cseq", b"content-length"} <= names:
        return "Via, CSeq or Content-Length missing"
    return None


def _check_sip_output(
    data: bytes, sent: list[tuple[bytes, Destination]], result: Result
) -> str | None:
    """Apply the rules to what the UA sent for ``data``; a problem description or None."""
    try:
        parsed: Request | Response | None = parse_message(data)
        error: SipParseError | None = None
    except SipParseError as exc:
        parsed, error = None, exc
    if error is not None:
        result.outcomes["parse error, " + ("answered" if sent else "dropped")] += 1
    elif isinstance(parsed, Response):
        result.outcomes["response (absorbed)"] += 1
    else:
        assert parsed is not None
        result.outcomes[f"request, {'answered' if sent else 'no answer'}"] += 1
    for out, dest in sent:
        try:
            msg = parse_message(out)
        except SipParseError as exc:
            # RFC 3261 8.2.6.2 has the 400 copy From/To/Call-ID/CSeq/Via, so the
            # answer to a request with a malformed one carries it verbatim; it
            # must still be a well-formed error response the sender can match.
            problem = _echo_problem(out) if error is not None else "answer to a parsed request"
            if problem is not None:
                return f"UA sent an unparsable message ({exc.reason}; {problem}): {out[:200]!r}"
            result.outcomes["answer 4xx echoing malformed headers"] += 1
            if _CONTROL.search(out.partition(b"\r\n\r\n")[0].replace(b"\r\n", b"")):
                result.outcomes["answer echoing bare CR/LF/NUL"] += 1
                result.echoed_controls.append(out)
            continue
        if isinstance(msg, Request):
            # A request of ours (NOTIFY for an accepted SUBSCRIBE, RFC 6665
            # 4.2.1) goes to the peer's Contact, wherever that is; only
            # responses must go back where the request came from (every seed's
            # Via is 127.0.0.1 with rport).
            where = "127.0.0.1" if dest.host == HOST else "elsewhere (its Contact)"
            result.outcomes[f"UA sent {msg.method} to {where}"] += 1
            continue
        if dest.host != HOST:
            return f"response sent to {dest.host}:{dest.port}, not back to 127.0.0.1"
        result.outcomes[f"answer {msg.status // 100}xx"] += 1
        if error is not None:
            if not 400 <= msg.status <= 599:
                return f"unparsable request answered {msg.status}"
        elif isinstance(parsed, Request):
            if not 100 <= msg.status <= 699:
                return f"status {msg.status} out of range"
            try:
                same = msg.call_id == parsed.call_id and msg.cseq.seq == parsed.cseq.seq
            except SipParseError:
                same = False
            if not same:
                # A retransmission or request of an earlier dialog (BYE, 2xx
                # retransmit) is legitimate; an answer must still parse fully.
                result.outcomes["answer to an earlier request"] += 1
            elif msg.cseq.method != parsed.cseq.method and parsed.method != "ACK":
                return f"{parsed.method} answered with CSeq method {msg.cseq.method}"
            elif (
                200 <= msg.status < 300
                and parsed.method in ("BYE", "NOTIFY", "INFO")
                and parsed.to.tag
            ):
                # in-dialog requests for dialogs that may exist: allowed
                pass
        else:
            return f"a SIP response provoked response {msg.status}"
    return None


def _sip_inputs(seeds: list[bytes], count: int, rng: random.Random) -> Iterator[bytes]:
    for _ in range(count):
        yield mutate_sip(rng.choice(seeds), rng)[:MAX_UDP]


def run_sip(count: int, seed: int, progress: Callable[[int], None] | None = None) -> Result:
    """Fuzz the UA's SIP receive path with ``count`` mutants."""
    result = Result("sip")
    crashes = CrashLog().install()
    harness = SipHarness(seed)
    rng = random.Random(seed)
    seeds = sip_seeds(harness.client_port)
    start = time.perf_counter()
    try:
        for i, data in enumerate(_sip_inputs(seeds, count, rng), 1):
            seen = len(crashes.records)
            sent = harness.feed(data)
            problem = _check_sip_output(data, sent, result)
            if problem is None and len(crashes.records) > seen:
                problem = "exception in the loop: " + crashes.records[-1].getMessage()
                rec = crashes.records[-1]
                if rec.exc_info and rec.exc_info[1] is not None:
                    problem += f" ({type(rec.exc_info[1]).__name__}: {rec.exc_info[1]})"
            if problem is not None:
                result.findings.append(Finding("sip", data, problem))
            if i % 500 == 0:
                for out, _dest in harness.expire():
                    try:
                        parse_message(out)
                    except SipParseError as exc:
                        result.findings.append(
                            Finding("sip", out, f"UA sent garbage on expiry: {exc}")
                        )
                if len(crashes.records) > seen:
                    result.findings.append(
                        Finding(
                            "sip",
                            b"",
                            "exception while expiring: " + crashes.records[-1].getMessage(),
                        )
                    )
            if progress is not None and i % 10000 == 0:
                progress(i)
        result.count = count
    finally:
        result.seconds = time.perf_counter() - start
        harness.close()
        crashes.uninstall()
    return result


# -- RTP / RTCP ----------------------------------------------------------------------------


def rtp_seeds(ssrc: int, seq: int = 100) -> tuple[list[bytes], list[bytes]]:
    """Valid RTP packets (PCMU, telephone-event, CSRC, extension, padding) and RTCP.

    The RTP ones continue a stream at sequence ``seq`` (timestamp ``seq * 160``),
    so that their mutants pass the receiver's sequence checks and reach the
    jitter buffer and the DTMF receiver.
    """

    def head(first: int, pt: int, n: int) -> bytes:
        s = (seq + n) & 0xFFFF
        return (
            bytes([first, pt])
            + s.to_bytes(2, "big")
            + (s * 160 & 0xFFFFFFFF).to_bytes(4, "big")
            + ssrc.to_bytes(4, "big")
        )

    ts = seq * 160 & 0xFFFFFFFF
    rtp = [
        build_rtp(0, (seq + 1) & 0xFFFF, (ts + 160) & 0xFFFFFFFF, ssrc, b"\xff" * 160),
        build_rtp(101, (seq + 2) & 0xFFFF, ts, ssrc, b"\x05\x0a\x00\xa0", marker=True),
        build_rtp(101, (seq + 3) & 0xFFFF, ts, ssrc, b"\x05\x8a\x03\x20"),
        # three CSRCs (RFC 3550 5.1)
        head(0x83, 0, 4) + b"\0\0\0\1\0\0\0\2\0\0\0\3" + b"\x7f" * 160,
        # header extension (RFC 3550 5.3.1) and padding (5.1)
        head(0x90, 0, 5) + b"\xbe\xde\x00\x01\x10\xaa\x00\x00" + b"\xff" * 160,
        head(0xA0, 0, 6) + b"\xff" * 160 + b"\0\0\0\x04",
    ]
    block = ReportBlock(ssrc, 0, 3, 1234, 10, 0x11112222, 0x100)
    rtcp = [
        build_compound(
            [
                SenderReport(ssrc, 0xE1234567_89ABCDEF, 16000, 10, 1600, (block,)),
                SourceDescription.cname(ssrc, "flat3@127.0.0.1"),
            ]
        ),
        build_compound([ReceiverReport(ssrc, (block, block)), SourceDescription.cname(ssrc, "x")]),
        build_compound([ReceiverReport(ssrc, ()), Bye((ssrc,), "bye")]),
        build_compound([ReceiverReport(ssrc, ()), UnknownRtcp(204, 1, b"name" + b"\0" * 8)]),
    ]
    return rtp, rtcp


class MediaHarness:
    """A PCMU + telephone-event MediaSession on the loop, and a peer socket feeding it."""

    def __init__(self, seed: int) -> None:
        self.clock = FakeClock()
        self.loop = Loop(clock=self.clock)
        self.events: list[object] = []
        self.session = MediaSession(
            self.loop,
            default_registry(),
            host=HOST,
            ports=RtpPortAllocator(42000, 42999),
            on_event=self.events.append,
            rng=random.Random(seed),
            rtcp_interval=0.5,
            kernel_timestamps=False,
        )
        self.peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.peer.bind((HOST, 0))
        self.peer.setblocking(False)
        peer_port = self.peer.getsockname()[1]
        codecs = (CodecSpec("PCMU", 8000),)
        local = LocalMedia(HOST, self.session.local_port, codecs)
        remote = LocalMedia(HOST, peer_port, codecs, rtcp_port=peer_port)
        _answer, negotiated = create_answer(create_offer(remote, 1, 1), local, 2, 1)
        assert negotiated is not None
        self.session.apply(negotiated)
        self.reads = 0

    def feed(self, data: bytes, rtcp: bool) -> None:
        """One datagram to the RTP or RTCP port; one media tick after it."""
        port = self.session.local_rtcp_port if rtcp else self.session.local_port
        self.peer.sendto(data, (HOST, port))
        self.loop.run_once(max_wait=0)
        self.clock.now += 0.02
        self.session.read(self.clock.now)  # the media clock's tick: drains the socket too
        self.session.write(b"\0" * 320, self.clock.now)
        while True:  # what the session sent us (reports, audio): not checked, only drained
            try:
                self.peer.recv(2048)
            except BlockingIOError:
                break

    def close(self) -> None:
        """Close the session, the peer socket and the loop."""
        self.session.close()
        self.peer.close()
        self.loop.close()


def run_media(count: int, seed: int) -> Result:
    """Fuzz the RTP and RTCP receive path of a MediaSession with ``count`` mutants."""
    result = Result("rtp/rtcp")
    crashes = CrashLog().install()
    rng = random.Random(seed)
    harness = MediaHarness(seed)
    start = time.perf_counter()
    ssrc = 0x1234ABCD
    rtp, rtcp = rtp_seeds(ssrc)
    seq = 1000
    try:
        for i in range(count):
            seen = len(crashes.records)
            # A valid packet first now and then keeps the source validated, so
            # that mutants of its stream reach the jitter buffer and DTMF.
            if i % 4 == 0:
                seq = (seq + 1) & 0xFFFF
                harness.feed(build_rtp(0, seq, seq * 160 & 0xFFFFFFFF, ssrc, b"\xff" * 160), False)
            is_rtcp = rng.random() < 0.35
            if not is_rtcp and i % 64 == 0:
                rtp = rtp_seeds(ssrc, seq)[0]  # mutants near the stream's sequence
            data = mutate_bytes(rng.choice(rtcp if is_rtcp else rtp), rng)
            # RTCP mutants also go to the RTP port now and then (RFC 5761 muxing)
            to_rtcp_port = is_rtcp and rng.random() < 0.8
            harness.feed(data, to_rtcp_port)
            result.outcomes["rtcp" if is_rtcp else "rtp"] += 1
            if len(crashes.records) > seen:
                rec = crashes.records[-1]
                msg = rec.getMessage()
                if rec.exc_info and rec.exc_info[1] is not None:
                    msg += f" ({type(rec.exc_info[1]).__name__}: {rec.exc_info[1]})"
                result.findings.append(Finding("rtp", data, "exception: " + msg))
        stats = harness.session.stats()
        rtp_stats = stats.rtp
        result.outcomes["media events"] = len(harness.events)
        result.outcomes["dtmf digits received"] = harness.session.dtmf_received
        result.outcomes["unknown payload type"] = harness.session.unknown_payload
        if rtp_stats is not None:
            result.outcomes["stream: packets received"] = rtp_stats.packets_received
            result.outcomes["stream: malformed"] = rtp_stats.malformed
            result.outcomes["stream: rejected"] = rtp_stats.rejected
        result.count = count
    finally:
        result.seconds = time.perf_counter() - start
        harness.close()
        crashes.uninstall()
    return result


# -- SDP -----------------------------------------------------------------------------------


def sdp_seeds() -> list[bytes]:
    """SDP bodies: ours, the corpus's, SRTP/IPv6/multi-stream."""
    ours = create_offer(
        LocalMedia(HOST, 40000, (CodecSpec("PCMU", 8000), CodecSpec("G722", 8000)), crypto=None),
        1,
        1,
    ).to_bytes()
    seeds = [ours, _SDP, _SDP_SRTP]
    for path in sorted(DATA.glob("corpus/*.sip")):
        body = path.read_bytes().partition(b"\r\n\r\n")[2]
        if body.startswith(b"v=0"):
            seeds.append(body)
    return seeds


def run_sdp(count: int, seed: int) -> Result:
    """Fuzz parse_sdp, create_answer and process_answer with ``count`` mutants."""
    result = Result("sdp")
    rng = random.Random(seed)
    seeds = sdp_seeds()
    codecs = (CodecSpec("PCMU", 8000), CodecSpec("PCMA", 8000), CodecSpec("G722", 8000))
    local = LocalMedia(HOST, 40000, codecs)
    srtp = LocalMedia(
        HOST,
        40000,
        codecs,
        crypto=("1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz",),
    )
    our_offer = create_offer(local, 7, 1)
    start = time.perf_counter()
    try:
        for _ in range(count):
            data = mutate_sdp(rng.choice(seeds), rng)
            problem = _sdp_one(data, srtp if b"SAVP" in data else local, our_offer, result)
            if problem is not None:
                result.findings.append(Finding("sdp", data, problem))
        result.count = count
    finally:
        result.seconds = time.perf_counter() - start
    return result


def _sdp_one(data: bytes, local: LocalMedia, our_offer: object, result: Result) -> str | None:
    try:
        desc = parse_sdp(data)
    except SdpParseError:
        result.outcomes["parse error"] += 1
        return None
    except Exception as exc:  # noqa: BLE001 -- the point: anything else is a crash
        return f"parse_sdp raised {type(exc).__name__}: {exc}"
    try:
        again = parse_sdp(desc.to_bytes())
    except Exception as exc:  # noqa: BLE001
        return f"our serialization of a parsed SDP does not parse: {type(exc).__name__}: {exc}"
    if len(again.media) != len(desc.media):
        return "round trip changed the number of m= lines"
    try:
        _answer, negotiated = create_answer(desc, local, 9, 1)
        result.outcomes["offer answered" if negotiated else "offer refused (488)"] += 1
    except OfferAnswerError:
        result.outcomes["offer error"] += 1
    except Exception as exc:  # noqa: BLE001
        return f"create_answer raised {type(exc).__name__}: {exc}"
    try:
        got = process_answer(our_offer, desc)  # type: ignore[arg-type]
        result.outcomes["answer accepted" if got else "answer refused audio"] += 1
    except OfferAnswerError:
        result.outcomes["answer error"] += 1
    except Exception as exc:  # noqa: BLE001
        return f"process_answer raised {type(exc).__name__}: {exc}"
    return None


# -- command line --------------------------------------------------------------------------


def report(result: Result) -> str:
    """Human-readable summary of one run."""
    lines = [
        f"{result.kind}: {result.count:,} inputs in {result.seconds:.1f} s "
        f"({result.rate:,.0f}/s), {len(result.findings)} findings"
    ]
    for name, n in sorted(result.outcomes.items()):
        lines.append(f"  {name:<40} {n:>10,}")
    for finding in result.findings[:20]:
        lines.append(f"  FINDING {finding.problem}\n    input {finding.data[:300]!r}")
    return "\n".join(lines)


def main() -> int:
    """Run the fuzzers; exit status 1 if anything broke a rule."""
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--count", type=int, default=20000, help="SIP messages")
    ap.add_argument(
        "--media-count",
        type=int,
        default=None,
        help="RTP/RTCP packets and SDP bodies each (default: --count)",
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", choices=("sip", "rtp", "sdp"), default=None)
    args = ap.parse_args()
    # No stderr handler: crashes are collected by CrashLog and reported below,
    # the rate-limited warnings about bad messages are not printed.
    logging.getLogger().addHandler(logging.NullHandler())
    media = args.media_count if args.media_count is not None else args.count
    print(
        f"bench/fuzz.py --count {args.count} --media-count {media} --seed {args.seed}", flush=True
    )
    results = []
    if args.only in (None, "sip"):
        results.append(run_sip(args.count, args.seed, lambda i: print(f"  sip {i:,}", flush=True)))
        print(report(results[-1]), flush=True)
    if args.only in (None, "rtp"):
        results.append(run_media(media, args.seed))
        print(report(results[-1]), flush=True)
    if args.only in (None, "sdp"):
        results.append(run_sdp(media, args.seed))
        print(report(results[-1]), flush=True)
    return 1 if any(r.findings for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
