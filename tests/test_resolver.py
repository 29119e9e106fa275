"""Resolver end to end: a real sipstack Loop against a dnslib DNS server on loopback."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dnslib import RCODE

from sipstack.locate import DnsServerFailure, DnsTimeout, LocateError, Target
from sipstack.loop import Loop
from sipstack.resolver import ResolvConf, Resolver, parse_hosts, parse_resolv_conf
from tests.dnsserver import DnsTestServer

ZONE = textwrap.dedent(
    """
    example.com.            300 IN SOA   ns.example.com. hostmaster.example.com. 1 3600 600 86400 60
    example.com.            300 IN NAPTR 10 10 "s" "SIPS+D2T" "" _sips._tcp.example.com.
    example.com.            300 IN NAPTR 20 10 "s" "SIP+D2U" "" _sip._udp.example.com.
    _sips._tcp.example.com. 300 IN SRV   0 0 5061 tls.example.com.
    _sip._udp.example.com.  300 IN SRV   10 0 5060 backup.example.com.
    _sip._udp.example.com.  300 IN SRV   5 0 5070 primary.example.com.
    tls.example.com.        300 IN A     192.0.2.1
    primary.example.com.    300 IN A     192.0.2.2
    primary.example.com.    300 IN AAAA  2001:db8::2
    backup.example.com.     300 IN A     192.0.2.3
    plain.example.com.      300 IN A     192.0.2.4
    """
)


@pytest.fixture
def loop() -> Iterator[Loop]:
    with Loop() as loop:
        yield loop


@pytest.fixture
def server() -> Iterator[DnsTestServer]:
    with DnsTestServer(ZONE) as server:
        yield server


class Results:
    """Collects callback results and when (loop time) they arrived."""

    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.values: list[Any] = []

    def __call__(self, value: object) -> None:
        self.values.append(value)

    def wait(self, count: int = 1, timeout: float = 5.0) -> list[Any]:
        assert self.loop.run_until(lambda: len(self.values) >= count, timeout), "no callback"
        return self.values


def make_resolver(loop: Loop, *servers: DnsTestServer, **kwargs: Any) -> Resolver:
    kwargs.setdefault("hosts_file", None)
    kwargs.setdefault("timeout", 0.5)
    kwargs.setdefault("attempts", 2)
    return Resolver(loop, [s.address for s in servers], **kwargs)


class TestConfigFiles:
    def test_parse_resolv_conf(self) -> None:
        conf = parse_resolv_conf(
            "# comment\nnameserver 10.0.0.1\nnameserver fe80::1%lo ; scoped\n"
            "nameserver bogus.example\nsearch lan\noptions ndots:2 timeout:3 attempts:9\n"
        )
        assert conf == ResolvConf(("10.0.0.1", "fe80::1%lo"), 3.0, 5)

    def test_parse_hosts(self) -> None:
        hosts = parse_hosts(
            "127.0.0.1 localhost\n10.0.0.5  PBX.lan pbx # the PBX\n"
            "fd00::5 pbx.lan\nnot-an-ip foo\n\n# 10.0.0.9 hidden\n"
        )
        assert hosts == {
            "localhost": ("127.0.0.1",),
            "pbx.lan": ("10.0.0.5", "fd00::5"),
            "pbx": ("10.0.0.5",),
        }

    def test_resolver_reads_resolv_conf_once(self, loop: Loop, tmp_path: Path) -> None:
        conf = tmp_path / "resolv.conf"
        conf.write_text("nameserver 192.0.2.53\nnameserver ::1\noptions timeout:4 attempts:3\n")
        resolver = Resolver(loop, resolv_conf=conf, hosts_file=None)
        conf.write_text("nameserver 198.51.100.1\n")
        assert resolver.nameservers == [("192.0.2.53", 53), ("::1", 53)]
        assert (resolver.timeout, resolver.attempts) == (4.0, 3)

    def test_missing_resolv_conf_means_localhost(self, loop: Loop, tmp_path: Path) -> None:
        resolver = Resolver(loop, resolv_conf=tmp_path / "absent", hosts_file=None)
        assert resolver.nameservers == [("127.0.0.1", 53)]

    def test_named_nameserver_is_a_config_error(self, loop: Loop) -> None:
        with pytest.raises(ValueError, match="numeric"):
            Resolver(loop, ["dns.example.com"], hosts_file=None)


class TestLocate:
    def test_naptr_srv_a_chain(self, loop: Loop, server: DnsTestServer) -> None:
        results = Results(loop)
        resolver = make_resolver(loop, server)
        resolver.locate("example.com", None, None, False, results)
        (targets,) = results.wait()
        assert targets == [
            Target("tls", "192.0.2.1", 5061, "example.com"),
            Target("udp", "192.0.2.2", 5070, "example.com"),
            Target("udp", "2001:db8::2", 5070, "example.com"),
            Target("udp", "192.0.2.3", 5060, "example.com"),
        ]
        asked = server.asked()
        assert asked[0] == ("example.com", "NAPTR")
        assert {("_sips._tcp.example.com", "SRV"), ("_sip._udp.example.com", "SRV")} <= set(asked)
        resolver.close()

    def test_srv_with_two_targets_and_glue(self, loop: Loop, server: DnsTestServer) -> None:
        server.glue = True
        results = Results(loop)
        resolver = make_resolver(loop, server, ip_versions=(4,))
        resolver.locate("example.com", None, "udp", False, results)
        (targets,) = results.wait()
        assert [(t.address, t.port) for t in targets] == [("192.0.2.2", 5070), ("192.0.2.3", 5060)]
        # the addresses came in the additional section: no A queries were needed
        assert server.asked() == [("_sip._udp.example.com", "SRV")]

    def test_second_lookup_comes_from_the_cache(self, loop: Loop, server: DnsTestServer) -> None:
        results = Results(loop)
        resolver = make_resolver(loop, server)
        resolver.locate("example.com", None, None, False, results)
        results.wait(1)
        count = len(server.asked())
        resolver.locate("example.com", None, None, False, results)
        first, second = results.wait(2)
        assert first == second
        assert len(server.asked()) == count

    def test_hosts_file_overrides_dns(
        self, loop: Loop, server: DnsTestServer, tmp_path: Path
    ) -> None:
        hosts = tmp_path / "hosts"
        hosts.write_text("10.9.8.7 plain.example.com\n")
        results = Results(loop)
        resolver = make_resolver(loop, server, hosts_file=hosts)
        resolver.locate("plain.example.com", None, None, False, results)
        resolver.resolve_host("PLAIN.example.com", results)
        assert results.wait(2) == [
            [Target("udp", "10.9.8.7", 5060, "plain.example.com")],
            ["10.9.8.7"],
        ]
        assert server.asked() == []

    def test_numeric_host_is_answered_asynchronously(
        self, loop: Loop, server: DnsTestServer
    ) -> None:
        results = Results(loop)
        resolver = make_resolver(loop, server)
        resolver.locate("2001:db8::9", 5080, "tcp", False, results)
        assert results.values == []  # never called back from inside locate()
        assert results.wait() == [[Target("tcp", "2001:db8::9", 5080, "2001:db8::9")]]
        assert server.asked() == []

    def test_resolve_host(self, loop: Loop, server: DnsTestServer) -> None:
        results = Results(loop)
        resolver = make_resolver(loop, server)
        resolver.resolve_host("primary.example.com", results)
        resolver.resolve_host("missing.example.com", results)
        found, missing = sorted(results.wait(2), key=lambda v: isinstance(v, Exception))
        assert found == ["192.0.2.2", "2001:db8::2"]
        assert isinstance(missing, LocateError) and missing.host == "missing.example.com"

    def test_locate_sent_by(self, loop: Loop, server: DnsTestServer) -> None:
        results = Results(loop)
        resolver = make_resolver(loop, server, ip_versions=(4,))
        resolver.locate_sent_by("example.com", None, "UDP", results)
        (targets,) = results.wait()
        assert [t.address for t in targets] == ["192.0.2.2", "192.0.2.3"]

    def test_no_name_lookup_through_getaddrinfo(
        self, loop: Loop, server: DnsTestServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real = socket.getaddrinfo

        def numeric_only(host: Any, *args: Any, **kwargs: Any) -> Any:
            flags = kwargs.get("flags", args[3] if len(args) > 3 else 0)
            assert flags & socket.AI_NUMERICHOST, f"blocking name lookup of {host!r}"
            return real(host, *args, **kwargs)

        monkeypatch.setattr(socket, "getaddrinfo", numeric_only)
        results = Results(loop)
        resolver = make_resolver(loop, server)
        resolver.locate("example.com", None, None, False, results)
        assert isinstance(results.wait()[0], list)


class TestFailures:
    def test_dropping_nameserver_times_out_after_retries(
        self, loop: Loop, server: DnsTestServer
    ) -> None:
        server.drop = -1
        results = Results(loop)
        resolver = make_resolver(loop, server, timeout=0.1, attempts=3, ip_versions=(4,))
        started = loop.time()
        resolver.locate("plain.example.com", 5060, None, False, results)
        (error,) = results.wait()
        assert isinstance(error, LocateError)
        assert [type(c) for c in error.causes] == [DnsTimeout]
        assert server.asked() == [("plain.example.com", "A")] * 3
        assert loop.time() - started >= 0.3  # three tries of 0.1 s each

    def test_a_dropped_query_is_retried(self, loop: Loop, server: DnsTestServer) -> None:
        server.drop = 1
        results = Results(loop)
        resolver = make_resolver(loop, server, timeout=0.1, ip_versions=(4,))
        resolver.locate("plain.example.com", 5060, None, False, results)
        assert results.wait() == [[Target("udp", "192.0.2.4", 5060, "plain.example.com")]]
        assert server.asked() == [("plain.example.com", "A")] * 2

    def test_second_nameserver_after_a_dead_one(self, loop: Loop, server: DnsTestServer) -> None:
        dead = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dead.bind(("127.0.0.1", 0))
        dead_address = dead.getsockname()
        dead.close()  # ICMP port unreachable -> the next server at once, no timeout
        results = Results(loop)
        resolver = Resolver(
            loop, [dead_address, server.address], hosts_file=None, timeout=5.0, ip_versions=(4,)
        )
        started = loop.time()
        resolver.resolve_host("plain.example.com", results)
        assert results.wait() == [["192.0.2.4"]]
        assert loop.time() - started < 5.0  # did not wait for the timeout

    def test_servfail_moves_to_next_server(self, loop: Loop) -> None:
        with DnsTestServer(ZONE) as failing, DnsTestServer(ZONE) as good:
            failing.rcode_for[("plain.example.com", "A")] = RCODE.SERVFAIL
            results = Results(loop)
            resolver = make_resolver(loop, failing, good, ip_versions=(4,))
            resolver.resolve_host("plain.example.com", results)
            assert results.wait() == [["192.0.2.4"]]
            assert failing.asked() == good.asked() == [("plain.example.com", "A")]

    def test_servfail_everywhere_is_reported(self, loop: Loop, server: DnsTestServer) -> None:
        server.rcode_for[("plain.example.com", "A")] = RCODE.SERVFAIL
        results = Results(loop)
        resolver = make_resolver(loop, server, attempts=1, ip_versions=(4,))
        resolver.resolve_host("plain.example.com", results)
        (error,) = results.wait()
        assert isinstance(error, LocateError)
        (cause,) = error.causes
        assert isinstance(cause, DnsServerFailure) and cause.rcode == RCODE.SERVFAIL

    def test_reply_with_wrong_id_is_ignored(self, loop: Loop, server: DnsTestServer) -> None:
        def wrong_id(reply: bytes) -> bytes:
            # same question, different id, a poisoned address
            forged = bytearray(reply.replace(bytes([192, 0, 2, 4]), bytes([203, 0, 113, 66])))
            forged[0] ^= 0xFF
            return bytes(forged)

        server.decoy = wrong_id
        results = Results(loop)
        resolver = make_resolver(loop, server, ip_versions=(4,))
        resolver.resolve_host("plain.example.com", results)
        assert results.wait() == [["192.0.2.4"]]

    def test_malformed_reply_is_a_server_failure(self, loop: Loop, server: DnsTestServer) -> None:
        server.mangle = lambda reply: reply[:-3]
        results = Results(loop)
        resolver = make_resolver(loop, server, attempts=1, ip_versions=(4,))
        resolver.resolve_host("plain.example.com", results)
        (error,) = results.wait()
        assert isinstance(error, LocateError)
        assert "malformed" in str(error.causes[0])

    def test_ipv6_nameserver(self, loop: Loop) -> None:
        try:
            server = DnsTestServer(ZONE, host="::1")
        except OSError:
            pytest.skip("no IPv6 loopback")
        with server:
            results = Results(loop)
            resolver = make_resolver(loop, server, ip_versions=(6,))
            resolver.resolve_host("primary.example.com", results)
            assert results.wait() == [["2001:db8::2"]]


class TestLoopIntegration:
    def test_loop_stays_responsive_while_a_query_is_pending(
        self, loop: Loop, server: DnsTestServer
    ) -> None:
        server.delay = 0.3
        events: list[str] = []
        resolver = make_resolver(loop, server, timeout=2.0, ip_versions=(4,))
        resolver.resolve_host("plain.example.com", lambda result: events.append(f"dns {result}"))
        loop.call_later(0.05, lambda: events.append("timer"))
        assert loop.run_until(lambda: len(events) == 2, 5.0)
        assert events == ["timer", "dns ['192.0.2.4']"]

    def test_cancel_and_close(self, loop: Loop, server: DnsTestServer) -> None:
        server.delay = 0.1
        results = Results(loop)
        resolver = make_resolver(loop, server, ip_versions=(4,))
        lookup = resolver.resolve_host("plain.example.com", results)
        resolver.resolve_host("backup.example.com", results)
        lookup.cancel()
        lookup.cancel()
        assert results.wait() == [["192.0.2.3"]]
        pending = resolver.resolve_host("primary.example.com", results)
        resolver.close()
        assert pending.cancelled
        loop.run_until(lambda: False, 0.3)  # the reply arrives; nobody is told
        assert results.values == [["192.0.2.3"]]
        with pytest.raises(RuntimeError):
            resolver.resolve_host("plain.example.com", results)

    def test_no_sockets_left_behind(self, loop: Loop, server: DnsTestServer) -> None:
        import os

        before = len(os.listdir("/proc/self/fd"))
        results = Results(loop)
        resolver = make_resolver(loop, server)
        for _ in range(5):
            resolver.locate("example.com", None, None, False, results)
        results.wait(5)
        resolver.close()
        assert len(os.listdir("/proc/self/fd")) == before
