"""Self-tests of the interop harness, using only third-party clients and raw sockets.

They prove that the fixtures start Kamailio and SIPp correctly and that each
SIPp scenario does what its comment says, before any of our SIP stack is
pointed at them. The few raw-socket requests below build SIP by hand on purpose:
they must not depend on the stack under test.
"""

from __future__ import annotations

import hashlib
import re
import socket
import ssl
import subprocess
import uuid
from collections.abc import Callable

import pytest

from .peers import KamailioServer, PortAllocator, SippRun
from .peers.kamailio import parse_ul_dump
from .peers.ports import port_is_free
from .peers.sipp import parse_message_trace

KamailioFactory = Callable[..., KamailioServer]
SippFactory = Callable[..., SippRun]

interop = pytest.mark.interop


# -- small raw SIP helpers (independent of sipstack) -----------------------------


def _request(
    method: str,
    ruri: str,
    local: tuple[str, int],
    *,
    transport: str = "UDP",
    user: str = "probe",
    to_user: str | None = None,
    domain: str = "127.0.0.1",
    call_id: str | None = None,
    cseq: int = 1,
    headers: tuple[str, ...] = (),
    body: str = "",
) -> bytes:
    host, port = local
    text = (
        f"{method} {ruri} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {host}:{port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:{user}@{domain}>;tag={uuid.uuid4().hex[:10]}\r\n"
        f"To: <sip:{to_user or user}@{domain}>\r\n"
        f"Call-ID: {call_id or uuid.uuid4().hex}\r\n"
        f"CSeq: {cseq} {method}\r\n"
        f"Contact: <sip:{user}@{host}:{port};transport={transport.lower()}>\r\n"
        + "".join(f"{h}\r\n" for h in headers)
        + f"Content-Length: {len(body.encode())}\r\n\r\n{body}"
    )
    return text.encode()


def _header(message: bytes, name: str) -> str | None:
    match = re.search(rf"^{name}\s*:\s*(.*?)\r?$", message.decode(), re.MULTILINE | re.IGNORECASE)
    return match.group(1) if match else None


def _status(message: bytes) -> int:
    return int(message.split(b" ", 2)[1])


def _udp_exchange(sock: socket.socket, data: bytes, server: tuple[str, int]) -> bytes:
    """Send one request, return the first final response (skipping 1xx)."""
    sock.sendto(data, server)
    while True:
        reply = sock.recv(65535)
        if reply.startswith(b"SIP/2.0 ") and _status(reply) >= 200:
            return reply


def _digest(
    challenge: str, user: str, password: str, method: str, uri: str
) -> tuple[str, dict[str, str]]:
    """Authorization value for a challenge (RFC 3261 22.4, RFC 7616 3.4.1)."""
    pairs = re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', challenge)
    params = {name: quoted or token for name, quoted, token in pairs}
    algorithm = params.get("algorithm", "MD5")
    hash_name = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]

    def h(text: str) -> str:
        return hashlib.new(hash_name, text.encode()).hexdigest()

    ha1 = h(f"{user}:{params['realm']}:{password}")
    ha2 = h(f"{method}:{uri}")
    fields = {
        "username": f'"{user}"',
        "realm": f'"{params["realm"]}"',
        "nonce": f'"{params["nonce"]}"',
        "uri": f'"{uri}"',
        "algorithm": algorithm,
    }
    if "qop" in params:
        cnonce, nc = uuid.uuid4().hex[:16], "00000001"
        response = h(f"{ha1}:{params['nonce']}:{nc}:{cnonce}:auth:{ha2}")
        fields.update(qop="auth", nc=nc, cnonce=f'"{cnonce}"')
    else:
        response = h(f"{ha1}:{params['nonce']}:{ha2}")
    fields["response"] = f'"{response}"'
    return "Digest " + ", ".join(f"{k}={v}" for k, v in fields.items()), params


def _subscribe_answer_and_notify(
    sock: socket.socket, server: tuple[str, int]
) -> tuple[bytes, bytes]:
    """Collect the final answer to a SUBSCRIBE and the NOTIFY it triggers (either order)."""
    answer = notify = None
    while answer is None or notify is None:
        msg = sock.recv(65535)
        if msg.startswith(b"SIP/2.0 ") and _status(msg) >= 200:
            answer = msg
        elif msg.startswith(b"NOTIFY "):
            notify = msg
            # RFC 6665 4.1.3: the subscriber answers every NOTIFY
            copied = b"".join(
                line + b"\r\n"
                for line in msg.split(b"\r\n")
                if line.split(b":")[0].lower() in (b"via", b"from", b"to", b"call-id", b"cseq")
            )
            sock.sendto(b"SIP/2.0 200 OK\r\n" + copied + b"Content-Length: 0\r\n\r\n", server)
    return answer, notify


def _sipsak(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    # -H: sipsak otherwise puts the machine's hostname in Via/Contact.
    return subprocess.run(
        ["sipsak", "-H", "127.0.0.1", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- ports and parsers (no peers) -----------------------------------------------


def test_port_allocator_never_repeats_and_ports_are_free() -> None:
    allocator = PortAllocator()
    ports = [allocator.allocate() for _ in range(30)]
    assert len(set(ports)) == 30
    assert all(20000 <= p <= 29999 and port_is_free("127.0.0.1", p) for p in ports)
    small = allocator.allocate(four_digit=True)
    assert 2000 <= small <= 9999
    block = allocator.allocate(count=4)
    assert all(port_is_free("127.0.0.1", p) for p in range(block, block + 4))


def test_port_is_free_sees_a_bound_udp_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        assert not port_is_free("127.0.0.1", sock.getsockname()[1])


def test_parse_ul_dump_reads_contacts_per_aor() -> None:
    text = """{
\tDomains: {
\t\tDomain: {
\t\t\tDomain: location
\t\t\tAoRs: {
\t\t\t\tInfo: {
\t\t\t\t\tAoR: alice
\t\t\t\t\tContacts: {
\t\t\t\t\t\tContact: {
\t\t\t\t\t\t\tAddress: sip:alice@127.0.0.1:5070;transport=tcp
\t\t\t\t\t\t\tExpires: 58
\t\t\t\t\t\t\tQ: -1
\t\t\t\t\t\t\tReceived: sip:127.0.0.1:40001
\t\t\t\t\t\t\tSocket: tcp:127.0.0.1:5060
\t\t\t\t\t\t}
\t\t\t\t\t\tContact: {
\t\t\t\t\t\t\tAddress: sip:alice@10.0.0.2
\t\t\t\t\t\t\tExpires: permanent
\t\t\t\t\t\t\tQ: 0.5
\t\t\t\t\t\t\tReceived: [not set]
\t\t\t\t\t\t}
\t\t\t\t\t}
\t\t\t\t}
\t\t\t}
\t\t\tStats: {
\t\t\t\tRecords: 1
\t\t\t}
\t\t}
\t}
}"""
    regs = parse_ul_dump(text)
    assert list(regs) == ["alice"]
    first, second = regs["alice"]
    assert first.uri == "sip:alice@127.0.0.1:5070;transport=tcp"
    assert (first.expires, first.q, first.received) == (58, None, "sip:127.0.0.1:40001")
    assert first.socket == "tcp:127.0.0.1:5060"
    assert (second.expires, second.q, second.received) == (0, 0.5, None)
    assert "Records" not in first.raw


def test_parse_message_trace_splits_sent_and_received() -> None:
    text = (
        "----------------------------------------------- 2026-01-01 00:00:00.000\n"
        "UDP message received [20] bytes :\n\nOPTIONS sip:x@y SIP/2.0\nCSeq: 1 OPTIONS\n\n"
        "----------------------------------------------- 2026-01-01 00:00:00.100\n"
        "TCP message sent (12 bytes):\n\nSIP/2.0 503 Service Unavailable\nCSeq: 1 OPTIONS\n\n"
    )
    first, second = parse_message_trace(text)
    assert (first.direction, first.transport, first.method_or_status) == (
        "received",
        "UDP",
        "OPTIONS",
    )
    assert (second.direction, second.transport, second.method_or_status) == ("sent", "TCP", "503")
    assert "-----" not in first.text


# -- Kamailio --------------------------------------------------------------------


@interop
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kamailio_answers_options_to_sipsak(
    kamailio_server: KamailioFactory, transport: str
) -> None:
    kam = kamailio_server(four_digit_port=True)
    result = _sipsak("-vv", "-E", transport, "-s", f"sip:127.0.0.1:{kam.port}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SIP/2.0 200 OK" in result.stdout
    assert f"Via: SIP/2.0/{transport.upper()}" in result.stdout


@interop
def test_kamailio_registers_sipsak_with_digest_auth(
    kamailio_server: KamailioFactory,
) -> None:
    kam = kamailio_server({"alice": "secret", "bob": "pw2"}, four_digit_port=True)
    target = f"sip:alice@127.0.0.1:{kam.port}"

    wrong = _sipsak("-U", "-i", "-s", target, "-a", "nope", "-x", "60")
    assert wrong.returncode != 0
    assert "401" in wrong.stdout + wrong.stderr
    unknown = _sipsak("-U", "-i", "-s", f"sip:carol@127.0.0.1:{kam.port}", "-a", "x")
    assert unknown.returncode != 0
    assert "403" in unknown.stdout + unknown.stderr
    assert kam.registrations() == {}

    good = _sipsak("-U", "-i", "-s", target, "-a", "secret", "-x", "60")
    assert good.returncode == 0, good.stdout + good.stderr
    regs = kam.registrations()
    assert list(regs) == ["alice"]
    (contact,) = regs["alice"]
    assert contact.uri.startswith("sip:alice@127.0.0.1:")
    assert 50 <= contact.expires <= 60
    assert contact.user_agent is not None and contact.user_agent.startswith("sipsak")
    assert contact.socket == f"udp:127.0.0.1:{kam.port}"


@interop
def test_kamailio_restart_forgets_registrations_and_keeps_ports(
    kamailio_server: KamailioFactory,
) -> None:
    kam = kamailio_server({"alice": "secret"}, four_digit_port=True)
    target = f"sip:alice@127.0.0.1:{kam.port}"
    assert _sipsak("-U", "-i", "-s", target, "-a", "secret", "-x", "300").returncode == 0
    assert "alice" in kam.registrations()
    first_pid = kam.process.pid if kam.process else None

    kam.restart()

    assert kam.process is not None and kam.process.pid != first_pid
    assert kam.registrations() == {}
    assert _sipsak("-s", f"sip:127.0.0.1:{kam.port}").returncode == 0


@interop
def test_kamailio_challenges_requests_with_407_when_asked(kamailio_server: KamailioFactory) -> None:
    kam = kamailio_server({"alice": "secret"}, challenge_requests=True, algorithm="SHA-256")
    ruri = f"sip:bob@127.0.0.1:{kam.port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        local = sock.getsockname()
        call_id = uuid.uuid4().hex
        first = _udp_exchange(
            sock,
            _request("MESSAGE", ruri, local, user="alice", to_user="bob", call_id=call_id),
            kam.address,
        )
        assert _status(first) == 407
        challenge = _header(first, "Proxy-Authenticate")
        assert challenge is not None and "algorithm=SHA-256" in challenge
        auth, _ = _digest(challenge, "alice", "secret", "MESSAGE", ruri)
        second = _udp_exchange(
            sock,
            _request("MESSAGE", ruri, local, user="alice", to_user="bob", call_id=call_id,
                     cseq=2, headers=(f"Proxy-Authorization: {auth}",)),
            kam.address,
        )  # fmt: skip
    assert _status(second) == 404  # authenticated, but bob is not registered


@interop
def test_kamailio_min_expires_reject_answers_423(kamailio_server: KamailioFactory) -> None:
    kam = kamailio_server(min_expires=60, min_expires_reject=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        data = _request("REGISTER", f"sip:127.0.0.1:{kam.port}", sock.getsockname(),
                        user="alice", headers=("Expires: 5",))  # fmt: skip
        reply = _udp_exchange(sock, data, kam.address)
    assert _status(reply) == 423
    assert _header(reply, "Min-Expires") == "60"
    assert kam.registrations() == {}


@interop
def test_kamailio_nat_option_stores_source_address(kamailio_server: KamailioFactory) -> None:
    kam = kamailio_server(nat=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        local = sock.getsockname()
        # the Contact claims a private address; the packet comes from 127.0.0.1
        data = _request("REGISTER", f"sip:127.0.0.1:{kam.port}", ("10.9.8.7", 5099),
                        user="alice", headers=("Expires: 60",))  # fmt: skip
        reply = _udp_exchange(sock, data, kam.address)
    assert _status(reply) == 200
    (contact,) = kam.registrations()["alice"]
    assert contact.uri == "sip:alice@10.9.8.7:5099;transport=udp"
    assert contact.received == f"sip:127.0.0.1:{local[1]}"


@interop
@pytest.mark.parametrize(
    ("algorithm", "qop"),
    [("MD5", "auth"), ("SHA-256", "auth"), ("MD5", None), ("SHA-256", None), ("", "auth")],
)
def test_kamailio_digest_algorithm_and_qop(
    kamailio_server: KamailioFactory, algorithm: str, qop: str | None
) -> None:
    kam = kamailio_server({"alice": "secret"}, algorithm=algorithm, qop=qop)
    ruri = f"sip:127.0.0.1:{kam.port}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        local = sock.getsockname()
        call_id = uuid.uuid4().hex

        def register(cseq: int, password: str | None, challenge: str | None) -> bytes:
            headers: tuple[str, ...] = ("Expires: 120",)
            if password is not None and challenge is not None:
                auth, _ = _digest(challenge, "alice", password, "REGISTER", ruri)
                headers += (f"Authorization: {auth}",)
            data = _request("REGISTER", ruri, local, user="alice", call_id=call_id, cseq=cseq,
                            headers=headers)  # fmt: skip
            return _udp_exchange(sock, data, kam.address)

        first = register(1, None, None)
        assert _status(first) == 401
        challenge = _header(first, "WWW-Authenticate")
        assert challenge is not None and challenge.startswith("Digest ")
        _, params = _digest(challenge, "alice", "x", "REGISTER", ruri)
        assert params["realm"] == "test.local"
        assert params.get("algorithm") == (algorithm or None)
        assert ("qop" in params) == (qop is not None)

        bad = register(2, "wrong", challenge)
        assert _status(bad) == 401
        good = register(3, "secret", challenge)
        assert _status(good) == 200, good.decode()
    assert [c.expires <= 120 for c in kam.registrations()["alice"]] == [True]


def test_kamailio_rejects_unsupported_algorithm_at_config_time() -> None:
    from .peers import KamailioConfig

    with pytest.raises(ValueError, match="SHA-512-256"):
        KamailioConfig(users={"a": "b"}, algorithm="SHA-512-256")


@interop
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_kamailio_proxies_to_a_registered_sipp_contact(
    kamailio_server: KamailioFactory,
    sipp: SippFactory,
    port_allocator: PortAllocator,
    transport: str,
) -> None:
    kam = kamailio_server({"bob": "pw2"}, four_digit_port=True)
    callee = sipp("uas_answer_200", port=port_allocator.allocate(four_digit=True))
    # sipsak registers bob's contact pointing at the SIPp UAS (lookup + t_relay target)
    reg = _sipsak("-U", "-i", "-s", f"sip:bob@127.0.0.1:{kam.port}", "-a", "pw2",
                  "-C", f"sip:bob@127.0.0.1:{callee.port}", "-x", "60")  # fmt: skip
    assert reg.returncode == 0, reg.stdout + reg.stderr
    assert [c.uri for c in kam.registrations()["bob"]] == [f"sip:bob@127.0.0.1:{callee.port}"]

    caller = sipp("uac_options", remote=kam.address, transport=transport, service="bob")
    assert caller.wait() == 0, caller.describe()
    assert callee.wait() == 0, callee.describe()
    (relayed,) = callee.received("OPTIONS")
    assert relayed.first_line == f"OPTIONS sip:bob@127.0.0.1:{callee.port} SIP/2.0"
    vias = re.findall(r"^Via: (.*)$", relayed.text, re.MULTILINE)
    assert len(vias) == 2 and vias[0].startswith(f"SIP/2.0/UDP 127.0.0.1:{kam.port};branch=")


@interop
def test_kamailio_registers_sipp_uac_over_tcp(
    kamailio_server: KamailioFactory, sipp: SippFactory
) -> None:
    kam = kamailio_server({"alice": "secret"})
    uac = sipp("uac_register_auth", remote=kam.address, transport="tcp",
               keys={"username": "alice", "expires": "90"},
               extra_args=["-au", "alice", "-ap", "secret"])  # fmt: skip
    assert uac.wait() == 0, uac.describe()
    (contact,) = kam.registrations()["alice"]
    assert contact.uri == f"sip:alice@127.0.0.1:{uac.port};transport=TCP"
    assert contact.socket == f"tcp:127.0.0.1:{kam.port}"
    assert 80 <= contact.expires <= 90


@interop
def test_kamailio_tls_handshake_verifies_generated_ca(kamailio_server: KamailioFactory) -> None:
    kam = kamailio_server(tls=True)
    assert kam.tls_port is not None and kam.ca_cert is not None
    context = ssl.create_default_context(cafile=str(kam.ca_cert))
    with (
        socket.create_connection(("127.0.0.1", kam.tls_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        cert = tls.getpeercert()
        assert cert is not None
        assert ("IP Address", "127.0.0.1") in cert.get("subjectAltName", ())
        tls.sendall(_request("OPTIONS", f"sip:127.0.0.1:{kam.tls_port}", tls.getsockname(),
                             transport="TLS"))  # fmt: skip
        reply = tls.recv(65535)
    assert reply.startswith(b"SIP/2.0 200 OK")
    assert "TLS" in (_header(reply, "Via") or "")


@interop
def test_kamailio_tls_rejects_a_client_trusting_another_ca(
    kamailio_server: KamailioFactory, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from .peers import make_certs

    other = make_certs(tmp_path_factory.mktemp("other-ca"))
    kam = kamailio_server(tls=True)
    assert kam.tls_port is not None
    context = ssl.create_default_context(cafile=str(other.ca_cert))
    with (
        socket.create_connection(("127.0.0.1", kam.tls_port), timeout=5) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname="127.0.0.1")


@interop
def test_kamailio_presence_publish_then_subscribe_gets_notify(
    kamailio_server: KamailioFactory,
) -> None:
    kam = kamailio_server(presence=True)
    pidf = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@test.local">'
        '<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
    )
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        local = sock.getsockname()
        publish = _request("PUBLISH", "sip:alice@test.local", local, user="alice",
                           domain="test.local",
                           headers=("Event: presence", "Expires: 60",
                                    "Content-Type: application/pidf+xml"),
                           body=pidf)  # fmt: skip
        published = _udp_exchange(sock, publish, kam.address)
        assert _status(published) == 200, published.decode()
        assert _header(published, "SIP-ETag")

        subscribe = _request("SUBSCRIBE", "sip:alice@test.local", local, user="bob",
                             to_user="alice", domain="test.local",
                             headers=("Event: presence", "Expires: 60",
                                      "Accept: application/pidf+xml"))  # fmt: skip
        sock.sendto(subscribe, kam.address)
        answer, notify = _subscribe_answer_and_notify(sock, kam.address)
        assert _status(answer) in (200, 202), answer.decode()  # RFC 6665: 202 deprecated
        assert (_header(notify, "Subscription-State") or "").startswith("active")
        assert b"<basic>open</basic>" in notify

        # in-dialog unsubscribe (RFC 6665 4.1.2.3) must reach the presence server
        to_tag = re.search(r";tag=([^;>\s]+)", _header(answer, "To") or "")
        contact = re.search(r"<([^>]+)>", _header(answer, "Contact") or "")
        assert to_tag and contact
        unsubscribe = subscribe.decode().replace(
            "SUBSCRIBE sip:alice@test.local", f"SUBSCRIBE {contact.group(1)}", 1
        )
        unsubscribe = re.sub(r"branch=z9hG4bK\w+", f"branch=z9hG4bK{uuid.uuid4().hex}", unsubscribe)
        unsubscribe = unsubscribe.replace("CSeq: 1 SUBSCRIBE", "CSeq: 2 SUBSCRIBE")
        unsubscribe = unsubscribe.replace("Expires: 60", "Expires: 0")
        unsubscribe = unsubscribe.replace(
            "To: <sip:alice@test.local>", f"To: <sip:alice@test.local>;tag={to_tag.group(1)}"
        )
        routes = [f"Route: {rr}" for rr in (_header(answer, "Record-Route") or "").split(",") if rr]
        unsubscribe = unsubscribe.replace(
            "Max-Forwards: 70\r\n", "Max-Forwards: 70\r\n" + "".join(r + "\r\n" for r in routes)
        )
        sock.sendto(unsubscribe.encode(), kam.address)
        answer2, notify2 = _subscribe_answer_and_notify(sock, kam.address)
    assert _status(answer2) == 200, answer2.decode()
    assert (_header(notify2, "Subscription-State") or "").startswith("terminated")


# -- SIPp scenarios, SIPp against SIPp -------------------------------------------


@interop
def test_sipp_uas_ignores_first_options_until_retransmitted(sipp: SippFactory) -> None:
    uas = sipp("uas_options_ignore_first")
    uac = sipp("uac_options", remote=uas.address, service="ping")
    assert uac.wait() == 0, uac.describe()
    assert uas.wait() == 0, uas.describe()
    received = uas.received("OPTIONS")
    assert len(received) == 2
    assert received[0].text == received[1].text  # a true retransmission
    assert len(uas.sent("200")) == 1
    assert len(uac.sent("OPTIONS")) >= 2


@interop
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_uas_register_auth_challenges_then_accepts(sipp: SippFactory, transport: str) -> None:
    keys = {"realm": "example.org", "nonce": "abc123nonce", "granted_expires": "45"}
    uas = sipp("uas_register_auth", transport=transport, keys=keys)
    uac = sipp("uac_register_auth", remote=uas.address, transport=transport,
               keys={"username": "alice", "expires": "3600", "granted_expires": "45"},
               extra_args=["-au", "alice", "-ap", "secret"])  # fmt: skip
    assert uac.wait() == 0, uac.describe()
    assert uas.wait() == 0, uas.describe()
    (challenge,) = uac.received("401")
    assert (
        'WWW-Authenticate: Digest realm="example.org", nonce="abc123nonce", algorithm=MD5, '
        'qop="auth"' in challenge.text
    )
    second = uas.received("REGISTER")[1]
    assert re.search(r"^Authorization: Digest .*qop=auth", second.text, re.MULTILINE)
    (ok,) = uac.received("200")
    assert (
        f"Contact: <sip:alice@127.0.0.1:{uac.port};transport={transport.upper()}>;expires=45"
        in ok.text
    )


@interop
def test_sipp_uas_register_auth_fails_a_retry_without_credentials(sipp: SippFactory) -> None:
    """The UAS checks the retry carries Authorization; a plain UAC must fail it."""
    uas = sipp("uas_register_auth", keys={"algorithm": "SHA-256"}, timeout=5)
    uac = sipp("uac_register", remote=uas.address, timeout=5,
               keys={"granted_expires": "3600"})  # fmt: skip
    assert uac.wait() != 0
    (challenge,) = uac.received("401")
    assert "algorithm=SHA-256" in challenge.text


@interop
def test_sipp_silent_uas_never_answers(sipp: SippFactory) -> None:
    uas = sipp("uas_silent", timeout=30)
    uac = sipp("uac_options", remote=uas.address, timeout=10,
               extra_args=["-recv_timeout", "1600"])  # fmt: skip
    assert uac.wait() != 0  # no answer: the UAC's call fails
    assert len(uac.sent("OPTIONS")) >= 2  # original + retransmissions
    assert uac.received() == []
    # every copy reached the UAS (absorbed as retransmissions) and none was answered
    assert len(uas.received("OPTIONS")) == len(uac.sent("OPTIONS"))
    assert uas.sent() == []
    assert uas.returncode is None  # still holding its port open


@interop
@pytest.mark.parametrize(("transport", "method"), [("udp", "OPTIONS"), ("tcp", "REGISTER")])
def test_sipp_uas_503_with_retry_after(sipp: SippFactory, transport: str, method: str) -> None:
    uas = sipp("uas_503", transport=transport, method=method, keys={"retry_after": "17"})
    uac = sipp("uac_expect_503", remote=uas.address, transport=transport, method=method,
               keys={"retry_after": "17"})  # fmt: skip
    assert uac.wait() == 0, uac.describe()
    assert uas.wait() == 0, uas.describe()
    (reply,) = uac.received("503")
    assert "Retry-After: 17" in reply.text
    assert f"CSeq: 1 {method}" in reply.text


@interop
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_registrar_423_then_200(sipp: SippFactory, transport: str) -> None:
    uas = sipp("uas_register_423", transport=transport, keys={"min_expires": "120"})
    uac = sipp("uac_register", remote=uas.address, transport=transport,
               keys={"expires": "30", "granted_expires": "120"})  # fmt: skip
    assert uac.wait() == 0, uac.describe()
    assert uas.wait() == 0, uas.describe()
    (too_brief,) = uac.received("423")
    assert "Min-Expires: 120" in too_brief.text
    first, retry = uas.received("REGISTER")
    assert "Expires: 30" in first.text and "Expires: 120" in retry.text


@interop
def test_sipp_registrar_grants_shorter_expires(sipp: SippFactory) -> None:
    uas = sipp("uas_register_ok", keys={"granted_expires": "30"})
    uac = sipp("uac_register", remote=uas.address,
               keys={"expires": "3600", "granted_expires": "30"})  # fmt: skip
    assert uac.wait() == 0, uac.describe()
    (ok,) = uac.received("200")
    assert re.search(r"^Contact: <sip:alice@127\.0\.0\.1:\d+;transport=UDP>;expires=30$",
                     ok.text, re.MULTILINE)  # fmt: skip
    assert "Expires:" not in ok.text.replace("expires=", "")


@interop
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_registrar_reports_nat_address_in_via(sipp: SippFactory, transport: str) -> None:
    uas = sipp("uas_register_nat", transport=transport,
               keys={"nat_ip": "192.0.2.33", "nat_port": "40000"})  # fmt: skip
    uac = sipp("uac_register", remote=uas.address, transport=transport,
               keys={"granted_expires": "3600"})  # fmt: skip
    assert uac.wait() == 0, uac.describe()
    (ok,) = uac.received("200")
    via = re.search(r"^Via: (.*)$", ok.text, re.MULTILINE)
    assert via is not None
    assert via.group(1).startswith(f"SIP/2.0/{transport.upper()} 127.0.0.1:{uac.port};branch=")
    assert via.group(1).endswith(";received=192.0.2.33;rport=40000")
    assert f"Contact: <sip:alice@127.0.0.1:{uac.port};" in ok.text
