"""The endpoint over real UDP/TCP sockets: transactions, retransmission, RFC 3263 failover.

Peers here are our own endpoints or raw sockets that misbehave on purpose (ignore a
request, never answer, answer 503); the DNS server is tests/dnsserver.py on 127.0.0.1.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from sipstack.endpoint import Endpoint, IncomingRequest, RequestFailure
from sipstack.loop import Loop
from sipstack.message import Request, Response, make_response, parse_message
from sipstack.resolver import Resolver
from sipstack.timers import TimerConfig
from sipstack.uri import parse_uri
from tests.dnsserver import DnsTestServer

FAST = TimerConfig(t1=0.05, t2=0.4, t4=0.5)  # Timer F = 3.2 s


def options(target: str) -> Request:
    raw = (
        f"OPTIONS {target} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP placeholder;branch=z9hG4bKtemplate\r\n"
        "Max-Forwards: 70\r\nFrom: <sip:alice@example.com>;tag=a1\r\n"
        f"To: <{target}>\r\nCall-ID: ep-test@example.com\r\nCSeq: 1 OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw.encode())
    assert isinstance(msg, Request)
    return msg


class Result:
    def __init__(self) -> None:
        self.responses: list[Response] = []
        self.failures: list[RequestFailure] = []

    @property
    def done(self) -> bool:
        return bool(self.failures) or any(r.status >= 200 for r in self.responses)


@pytest.fixture
def loop() -> Iterator[Loop]:
    with Loop() as lp:
        yield lp


def answering_endpoint(loop: Loop, status: int = 200, transport: str = "udp") -> Endpoint:
    def on_request(inc: IncomingRequest) -> None:
        ep.respond(inc, make_response(inc.request, status))

    ep = Endpoint(loop, on_request=on_request, timers=FAST)
    if transport == "udp":
        ep.transports.add_udp("127.0.0.1", 0)
    else:
        ep.transports.add_tcp("127.0.0.1", 0)
    return ep


def client(loop: Loop, resolver: Resolver | None = None) -> Endpoint:
    ep = Endpoint(loop, on_request=lambda inc: None, timers=FAST, resolver=resolver)
    ep.transports.add_udp("127.0.0.1", 0)
    ep.transports.add_tcp("127.0.0.1", 0, listen=False)
    return ep


def send(loop: Loop, ep: Endpoint, req: Request, timeout: float = 10.0) -> Result:
    res = Result()
    ep.send_request(req, res.responses.append, res.failures.append)
    assert loop.run_until(lambda: res.done, timeout=timeout)
    return res


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_request_and_response_between_two_endpoints(loop: Loop, transport: str) -> None:
    server = answering_endpoint(loop, 200, transport)
    port = server.transports.info(0).local_port
    c = client(loop)
    res = send(loop, c, options(f"sip:bob@127.0.0.1:{port};transport={transport}"))
    assert [r.status for r in res.responses] == [200]
    c.close()
    server.close()


def test_retransmits_to_a_peer_that_ignores_the_first_request(loop: Loop) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        seen: list[bytes] = []

        def on_datagram() -> None:
            data, addr = peer.recvfrom(65535)
            seen.append(data)
            if len(seen) == 2:  # ignore the first copy, answer the retransmission
                req = parse_message(data)
                assert isinstance(req, Request)
                peer.sendto(make_response(req, 200).to_bytes(), addr)

        loop.add_reader(peer, on_datagram)
        c = client(loop)
        res = send(loop, c, options(f"sip:bob@127.0.0.1:{peer.getsockname()[1]}"))
        loop.remove_reader(peer)
        assert [r.status for r in res.responses] == [200]
        assert len(seen) == 2 and seen[0] == seen[1]  # a true retransmission
        c.close()


def test_silent_server_gives_408(loop: Loop) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as black_hole:
        black_hole.bind(("127.0.0.1", 0))
        c = client(loop)
        res = send(loop, c, options(f"sip:bob@127.0.0.1:{black_hole.getsockname()[1]}"))
        assert res.responses == []
        assert res.failures[0].status == 408
        c.close()


def test_unresolvable_name_without_resolver_fails_cleanly(loop: Loop) -> None:
    c = client(loop)
    res = send(loop, c, options("sip:bob@nowhere.invalid"))
    assert res.failures and res.failures[0].status == 503
    c.close()


def _srv_zone(first_port: int, second_port: int) -> str:
    return (
        f"_sip._udp.example.test. 60 IN SRV 10 0 {first_port} sip1.example.test.\n"
        f"_sip._udp.example.test. 60 IN SRV 20 0 {second_port} sip2.example.test.\n"
        "sip1.example.test. 60 IN A 127.0.0.1\n"
        "sip2.example.test. 60 IN A 127.0.0.1\n"
    )


@pytest.mark.parametrize("failure", ["silent", "503"])
def test_srv_failover_to_the_next_target(loop: Loop, failure: str) -> None:
    """RFC 3263 4.3: a timeout or a 503 from the first SRV target moves to the second."""
    good = answering_endpoint(loop, 200)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        bad = answering_endpoint(loop, 503) if failure == "503" else None
        first = bad.transports.info(0).local_port if bad else silent.getsockname()[1]
        zone = _srv_zone(first, good.transports.info(0).local_port)
        with DnsTestServer(zone) as dns:
            resolver = Resolver(loop, nameservers=[dns.address], hosts_file=None, resolv_conf=None)
            c = client(loop, resolver)
            req = options("sip:bob@example.test")
            req.headers.set("Route", "<sip:example.test;lr>")
            res = send(loop, c, options("sip:bob@example.test"))
            assert [r.status for r in res.responses] == [200]
            assert ("_sip._udp.example.test", "SRV") in dns.asked()
            c.close()
        if bad is not None:
            bad.close()
    good.close()


def test_next_hop_is_the_first_route() -> None:
    req = options("sip:bob@example.test")
    req.headers.set("Route", "<sip:proxy.example.test:5070;lr>")
    assert Endpoint.next_hop(req) == parse_uri("sip:proxy.example.test:5070;lr")


def test_next_hop_with_a_strict_router_is_the_request_uri() -> None:
    req = options("sip:strict-proxy.example.test")
    req.headers.set("Route", "<sip:bob@example.test>")  # no ;lr: a strict route set
    assert Endpoint.next_hop(req) == parse_uri("sip:strict-proxy.example.test")


def test_cancel_before_the_server_is_located_still_cancels(loop: Loop) -> None:
    """cancel() right after send_request (no target yet) must CANCEL once a 1xx arrives."""
    seen: list[str] = []

    def on_request(inc: IncomingRequest) -> None:
        seen.append(inc.request.method)
        if inc.request.method == "INVITE":
            server.respond(inc, make_response(inc.request, 180, to_tag="s1"))
        else:
            server.respond(inc, make_response(inc.request, 200))

    server = Endpoint(loop, on_request=on_request, timers=FAST)
    server.transports.add_udp("127.0.0.1", 0)
    port = server.transports.info(0).local_port
    c = client(loop)
    invite = options(f"sip:bob@127.0.0.1:{port}")
    invite.method = "INVITE"
    invite.headers.set("CSeq", "1 INVITE")
    res = Result()
    out = c.send_request(invite, res.responses.append, res.failures.append)
    c.cancel(out)  # the target is not known yet: nothing has been sent
    assert loop.run_until(lambda: "CANCEL" in seen, timeout=5)
    c.close()
    server.close()
