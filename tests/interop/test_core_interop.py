"""The SIP core against real Kamailio and SIPp on 127.0.0.1 (issue 2 interop).

Transactions over UDP, TCP and TLS; retransmission to a SIPp that ignores the
first request; 401 challenges answered with each algorithm Kamailio offers;
RFC 3263 failover from a SIPp that never answers (or answers 503) to Kamailio.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sipstack.digest import CredentialInfo, DigestAuthenticator
from sipstack.endpoint import Endpoint, RequestFailure
from sipstack.ids import IdGenerator
from sipstack.loop import Loop
from sipstack.message import Request, Response
from sipstack.resolver import Resolver
from sipstack.timers import TimerConfig
from sipstack.tls import client_context
from sipstack.uri import parse_uri
from tests.dnsserver import DnsTestServer

pytestmark = pytest.mark.interop

FAST = TimerConfig(t1=0.1, t2=0.8, t4=1.0)  # Timer F = 6.4 s


def endpoint(loop: Loop, *, ca: str | None = None, resolver: Resolver | None = None) -> Endpoint:
    ep = Endpoint(loop, on_request=lambda inc: None, timers=FAST, resolver=resolver)
    ep.transports.add_udp("127.0.0.1", 0)
    ep.transports.add_tcp("127.0.0.1", 0, listen=False)
    if ca is not None:
        ep.transports.add_tls("127.0.0.1", 0, client_context=client_context(ca))
    return ep


def request(method: str, ruri: str, aor: str, ids: IdGenerator, cseq: int = 1) -> Request:
    req = Request(method, parse_uri(ruri))
    h = req.headers
    h.add("Via", f"SIP/2.0/UDP placeholder;branch={ids.branch()}")
    h.add("Max-Forwards", "70")
    h.add("From", f"<{aor}>;tag={ids.tag()}")
    h.add("To", f"<{aor}>")
    h.add("Call-ID", ids.call_id())
    h.add("CSeq", f"{cseq} {method}")
    return req


def transact(loop: Loop, ep: Endpoint, req: Request, timeout: float = 15) -> Response:
    finals: list[Response | RequestFailure] = []

    def on_response(r: Response) -> None:
        if r.status >= 200:
            finals.append(r)

    ep.send_request(req, on_response, finals.append)
    assert loop.run_until(lambda: bool(finals), timeout=timeout), "no final answer"
    result = finals[0]
    assert isinstance(result, Response), f"request failed: {result}"
    return result


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_options_transaction_with_kamailio(
    loop: Loop, kamailio_server: Callable[..., Any], transport: str
) -> None:
    kam = kamailio_server(tls=transport == "tls")
    ep = endpoint(loop, ca=str(kam.ca_cert) if kam.ca_cert else None)
    ids = IdGenerator()
    target = kam.uri(transport=transport)
    resp = transact(loop, ep, request("OPTIONS", target, "sip:probe@test.local", ids))
    assert resp.status == 200
    ep.close()


def test_udp_retransmission_to_sipp_that_ignores_the_first_request(
    loop: Loop, sipp: Callable[..., Any]
) -> None:
    uas = sipp("uas_options_ignore_first")
    ep = endpoint(loop)
    host, port = uas.address
    resp = transact(loop, ep, request("OPTIONS", f"sip:svc@{host}:{port}", "sip:a@b.c",
                                      IdGenerator()))
    assert resp.status == 200
    assert uas.wait() == 0
    assert len(uas.received("OPTIONS")) == 2  # the original and our retransmission
    ep.close()


@pytest.mark.parametrize(("algorithm", "qop"), [("MD5", "auth"), ("SHA-256", "auth"),
                                                ("", None), ("SHA-256", None)])
def test_register_challenge_answered_with_each_algorithm(
    loop: Loop, kamailio_server: Callable[..., Any], algorithm: str, qop: str | None
) -> None:
    kam = kamailio_server({"alice": "wonderland"}, algorithm=algorithm, qop=qop)
    ep = endpoint(loop)
    ids = IdGenerator()
    auth = DigestAuthenticator([CredentialInfo("*", "alice", "wonderland")], ids)
    aor = "sip:alice@test.local"
    req = request("REGISTER", f"sip:{kam.host}:{kam.port}", aor, ids)
    req.headers.add("Contact", "<sip:alice@127.0.0.1:5999>;expires=60")
    first = transact(loop, ep, req)
    assert first.status == 401
    challenge = first.www_authenticate[0]
    assert (challenge.params.get("algorithm") or "") == algorithm
    auth.handle_challenge(req, first)
    retry = req.copy()
    retry.headers.set("CSeq", "2 REGISTER")
    auth.authorize(retry)
    assert transact(loop, ep, retry).status == 200
    contacts = kam.registrations().get("alice", [])  # usrloc without domains
    assert [c.uri for c in contacts] == ["sip:alice@127.0.0.1:5999"]
    ep.close()


@pytest.mark.parametrize("scenario", ["uas_silent", "uas_503"])
def test_srv_failover_from_a_broken_sipp_to_kamailio(
    loop: Loop, kamailio_server: Callable[..., Any], sipp: Callable[..., Any], scenario: str
) -> None:
    """RFC 3263 4.3: time-out or 503 at the first SRV target, success at the second."""
    kam = kamailio_server()
    broken = sipp(scenario, timeout=30)
    zone = (
        f"_sip._udp.voip.test. 60 IN SRV 10 0 {broken.address[1]} a.voip.test.\n"
        f"_sip._udp.voip.test. 60 IN SRV 20 0 {kam.port} b.voip.test.\n"
        "a.voip.test. 60 IN A 127.0.0.1\nb.voip.test. 60 IN A 127.0.0.1\n"
    )
    with DnsTestServer(zone) as dns:
        resolver = Resolver(loop, nameservers=[dns.address], resolv_conf=None,
                            hosts_file=None, supported_transports=("udp",))
        ep = endpoint(loop, resolver=resolver)
        req = request("OPTIONS", f"sip:{kam.host}:{kam.port}", "sip:a@voip.test", IdGenerator())
        req.headers.set("Route", "<sip:voip.test;lr>")
        resp = transact(loop, ep, req, timeout=20)
        assert resp.status == 200
        assert broken.received("OPTIONS"), "the first target was never tried"
        ep.close()
