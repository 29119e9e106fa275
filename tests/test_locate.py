"""RFC 3263 locator (pure): driven by a fake resolver that answers from a dict zone."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable

import pytest

from sipstack.dns_wire import (
    AAAAData,
    AData,
    CNAMEData,
    Message,
    NAPTRData,
    Question,
    RCode,
    Record,
    RType,
    SOAData,
    SRVData,
    make_flags,
)
from sipstack.locate import (
    DnsCache,
    DnsError,
    DnsNameNotFound,
    DnsServerFailure,
    DnsTimeout,
    FailureReason,
    LocateError,
    LocatorState,
    ServerLocator,
    Target,
    TargetList,
    order_srv,
    sent_by_locator,
)

SOA = Record("example.com", RType.SOA, 300, SOAData("ns", "h", 1, 2, 3, 4, 60))


class FakeDns:
    """Answers questions from records, like a recursive resolver would."""

    def __init__(self, records: Iterable[Record] = (), *, glue: bool = False) -> None:
        self.records = list(records)
        self.glue = glue
        self.asked: list[tuple[str, str]] = []
        self.errors: dict[tuple[str, int], DnsError] = {}
        self.rcodes: dict[tuple[str, int], int] = {}
        self.flatten_cname = True

    def answer(self, question: Question) -> Message | DnsError:
        name = question.name.lower()
        self.asked.append((name, RType(question.rtype).name))
        key = (name, question.rtype)
        if key in self.errors:
            return self.errors[key]
        flags = make_flags(response=True, rcode=self.rcodes.get(key, RCode.NOERROR))
        if key in self.rcodes:
            return Message(1, flags, (question,))
        owned = [r for r in self.records if r.name == name]
        if not owned:
            flags = make_flags(response=True, rcode=RCode.NXDOMAIN)
            return Message(1, flags, (question,), (), (SOA,))
        answers: list[Record] = []
        current = name
        for _ in range(8):
            matching = [r for r in self.records if r.name == current and r.rtype == question.rtype]
            if matching:
                answers += matching
                break
            alias = next(
                (r for r in self.records if r.name == current and r.rtype == RType.CNAME), None
            )
            if alias is None or not isinstance(alias.data, CNAMEData):
                break
            answers.append(alias)
            if not self.flatten_cname:
                break
            current = alias.data.target
        additional: list[Record] = []
        if self.glue and question.rtype == RType.SRV:
            targets = {r.data.target for r in answers if isinstance(r.data, SRVData)}
            additional = [
                r for r in self.records if r.name in targets and r.rtype in (RType.A, RType.AAAA)
            ]
        authority = () if answers else (SOA,)
        return Message(1, flags, (question,), tuple(answers), authority, tuple(additional))

    def drive(self, locator: ServerLocator, now: float = 0.0) -> list[Target]:
        """Answer everything the locator asks, oldest first, until it is done."""
        for _ in range(100):
            if locator.done:
                return locator.result()
            pending: list[Question] = []
            while (question := locator.next_query()) is not None:
                pending.append(question)
            assert pending, "locator is stuck: not done and asks nothing"
            for question in pending:
                locator.receive_answer(question, self.answer(question), now)
        raise AssertionError("locator did not finish")


def a(name: str, address: str, ttl: int = 300) -> Record:
    return Record(name, RType.A, ttl, AData(address))


def aaaa(name: str, address: str, ttl: int = 300) -> Record:
    return Record(name, RType.AAAA, ttl, AAAAData(address))


def srv(name: str, priority: int, weight: int, port: int, target: str, ttl: int = 300) -> Record:
    return Record(name, RType.SRV, ttl, SRVData(priority, weight, port, target))


def naptr(order: int, pref: int, service: str, replacement: str, flags: str = "s") -> Record:
    data = NAPTRData(order, pref, flags, service, "", replacement)
    return Record("example.com", RType.NAPTR, 300, data)


def locator(host: str = "example.com", port: int | None = None, transport: str | None = None,
            secure: bool = False, **kwargs: object) -> ServerLocator:  # fmt: skip
    kwargs.setdefault("now", 0.0)
    kwargs.setdefault("rng", random.Random(1))
    return ServerLocator(host, port, transport, secure, **kwargs)  # type: ignore[arg-type]


FULL_ZONE = [
    naptr(30, 10, "SIP+D2U", "_sip._udp.example.com"),
    naptr(10, 10, "SIPS+D2T", "_sips._tcp.example.com"),
    naptr(20, 10, "SIP+D2T", "_sip._tcp.example.com"),
    naptr(5, 10, "SIP+D2S", "_sip._sctp.example.com"),  # SCTP: not ours, skipped
    srv("_sips._tcp.example.com", 0, 0, 5061, "tls.example.com"),
    srv("_sip._tcp.example.com", 0, 0, 5070, "tcp.example.com"),
    srv("_sip._udp.example.com", 0, 0, 5080, "udp.example.com"),
    srv("_sip._sctp.example.com", 0, 0, 5090, "sctp.example.com"),
    a("tls.example.com", "192.0.2.1"),
    a("tcp.example.com", "192.0.2.2"),
    aaaa("tcp.example.com", "2001:db8::2"),
    a("udp.example.com", "192.0.2.3"),
    a("sctp.example.com", "192.0.2.4"),
    a("example.com", "192.0.2.99"),
]


class TestRfc3263Section4:
    def test_naptr_srv_address_chain_in_naptr_order(self) -> None:
        dns = FakeDns(FULL_ZONE)
        targets = dns.drive(locator())
        assert targets == [
            Target("tls", "192.0.2.1", 5061, "example.com"),
            Target("tcp", "192.0.2.2", 5070, "example.com"),
            Target("tcp", "2001:db8::2", 5070, "example.com"),
            Target("udp", "192.0.2.3", 5080, "example.com"),
        ]
        assert dns.asked[0] == ("example.com", "NAPTR")
        assert ("_sip._sctp.example.com", "SRV") not in dns.asked
        assert ("example.com", "A") not in dns.asked

    def test_sips_keeps_only_sips_services(self) -> None:
        dns = FakeDns(FULL_ZONE)
        targets = dns.drive(locator(secure=True))
        assert targets == [Target("tls", "192.0.2.1", 5061, "example.com")]
        assert ("_sip._tcp.example.com", "SRV") not in dns.asked

    def test_naptr_filtered_by_supported_transports(self) -> None:
        dns = FakeDns(FULL_ZONE)
        targets = dns.drive(locator(supported_transports=("udp",)))
        assert targets == [Target("udp", "192.0.2.3", 5080, "example.com")]

    def test_naptr_with_non_s_flag_or_empty_replacement_is_skipped(self) -> None:
        zone = [
            naptr(10, 10, "SIP+D2U", "_sip._udp.example.com", flags="a"),
            naptr(20, 10, "SIP+D2T", ""),
            srv("_sip._udp.example.com", 0, 0, 5080, "udp.example.com"),
            a("udp.example.com", "192.0.2.3"),
        ]
        dns = FakeDns(zone)
        # no usable NAPTR: SRV for each supported transport, in our order
        targets = dns.drive(locator())
        assert [q for q in dns.asked if q[1] == "SRV"] == [
            ("_sips._tcp.example.com", "SRV"),
            ("_sip._tcp.example.com", "SRV"),
            ("_sip._udp.example.com", "SRV"),
        ]
        assert targets == [Target("udp", "192.0.2.3", 5080, "example.com")]

    def test_no_naptr_srv_per_transport_in_preference_order(self) -> None:
        zone = [r for r in FULL_ZONE if r.rtype != RType.NAPTR]
        dns = FakeDns(zone)
        targets = dns.drive(locator(supported_transports=("udp", "tcp")))
        assert [t.transport for t in targets] == ["udp", "tcp", "tcp"]
        assert ("_sips._tcp.example.com", "SRV") not in dns.asked

    def test_srv_queries_are_outstanding_together(self) -> None:
        loc = locator()
        naptr_q = loc.next_query()
        assert naptr_q == Question("example.com", RType.NAPTR)
        loc.receive_answer(naptr_q, FakeDns([a("example.com", "192.0.2.9")]).answer(naptr_q), 0)
        batch = [loc.next_query() for _ in range(3)]
        assert loc.state is LocatorState.SRV
        assert {q.name for q in batch if q} == {
            "_sips._tcp.example.com",
            "_sip._tcp.example.com",
            "_sip._udp.example.com",
        }
        assert loc.next_query() is None

    def test_nothing_but_an_a_record_gives_default_udp_5060(self) -> None:
        dns = FakeDns([a("example.com", "192.0.2.99")])
        assert dns.drive(locator()) == [Target("udp", "192.0.2.99", 5060, "example.com")]

    def test_sips_default_is_tls_5061(self) -> None:
        dns = FakeDns([a("example.com", "192.0.2.99")])
        assert dns.drive(locator(secure=True)) == [Target("tls", "192.0.2.99", 5061, "example.com")]

    def test_explicit_port_skips_naptr_and_srv(self) -> None:
        dns = FakeDns(FULL_ZONE)
        targets = dns.drive(locator(port=5099))
        assert dns.asked == [("example.com", "A"), ("example.com", "AAAA")]
        assert targets == [Target("udp", "192.0.2.99", 5099, "example.com")]

    def test_explicit_port_with_transport(self) -> None:
        dns = FakeDns(FULL_ZONE)
        assert dns.drive(locator(port=5099, transport="TCP")) == [
            Target("tcp", "192.0.2.99", 5099, "example.com")
        ]

    def test_transport_param_asks_only_that_srv(self) -> None:
        dns = FakeDns(FULL_ZONE)
        targets = dns.drive(locator(transport="tcp"))
        assert dns.asked[0] == ("_sip._tcp.example.com", "SRV")
        assert ("example.com", "NAPTR") not in dns.asked
        assert [t.address for t in targets] == ["192.0.2.2", "2001:db8::2"]

    def test_transport_tls_on_sip_uri_uses_sips_srv(self) -> None:
        dns = FakeDns(FULL_ZONE)
        targets = dns.drive(locator(transport="tls"))
        assert dns.asked[0] == ("_sips._tcp.example.com", "SRV")
        assert targets == [Target("tls", "192.0.2.1", 5061, "example.com")]

    def test_transport_param_without_srv_falls_back_to_a_with_default_port(self) -> None:
        dns = FakeDns([a("example.com", "192.0.2.99")])
        assert dns.drive(locator(transport="tls")) == [
            Target("tls", "192.0.2.99", 5061, "example.com")
        ]

    @pytest.mark.parametrize(
        ("host", "port", "transport", "secure", "expected"),
        [
            ("192.0.2.7", None, None, False, Target("udp", "192.0.2.7", 5060, "192.0.2.7")),
            ("192.0.2.7", 5070, "tcp", False, Target("tcp", "192.0.2.7", 5070, "192.0.2.7")),
            ("192.0.2.7", None, None, True, Target("tls", "192.0.2.7", 5061, "192.0.2.7")),
            ("[2001:DB8::7]", None, None, False, Target("udp", "2001:db8::7", 5060, "2001:db8::7")),
            ("2001:db8::7", 5090, "tls", False, Target("tls", "2001:db8::7", 5090, "2001:db8::7")),
        ],
    )
    def test_numeric_hosts_need_no_dns(
        self, host: str, port: int | None, transport: str | None, secure: bool, expected: Target
    ) -> None:
        loc = locator(host, port, transport, secure)
        assert loc.done and loc.next_query() is None
        assert loc.result() == [expected]

    def test_hosts_table_bypasses_dns(self) -> None:
        loc = locator("PBX.lan", hosts={"pbx.lan": ("fd00::5", "10.0.0.5")})
        assert loc.done
        assert loc.result() == [
            Target("udp", "10.0.0.5", 5060, "pbx.lan"),
            Target("udp", "fd00::5", 5060, "pbx.lan"),
        ]

    def test_srv_target_in_hosts_table_is_not_looked_up(self) -> None:
        dns = FakeDns([srv("_sip._udp.example.com", 0, 0, 5062, "pbx.lan")])
        targets = dns.drive(locator(transport="udp", hosts={"pbx.lan": ("10.0.0.5",)}))
        assert targets == [Target("udp", "10.0.0.5", 5062, "example.com")]
        assert not any(name == "pbx.lan" for name, _ in dns.asked)

    def test_ip_versions_select_and_order_families(self) -> None:
        zone = [a("h.example.com", "192.0.2.1"), aaaa("h.example.com", "2001:db8::1")]
        dns = FakeDns(zone)
        targets = dns.drive(locator("h.example.com", 5060, ip_versions=(6, 4)))
        assert [t.address for t in targets] == ["2001:db8::1", "192.0.2.1"]
        dns = FakeDns(zone)
        targets = dns.drive(locator("h.example.com", 5060, ip_versions=(6,)))
        assert dns.asked == [("h.example.com", "AAAA")]
        assert [t.address for t in targets] == ["2001:db8::1"]

    def test_duplicate_targets_are_dropped(self) -> None:
        zone = [
            srv("_sip._udp.example.com", 0, 0, 5060, "x.example.com"),
            srv("_sip._udp.example.com", 1, 0, 5060, "y.example.com"),
            a("x.example.com", "192.0.2.1"),
            a("y.example.com", "192.0.2.1"),
        ]
        assert FakeDns(zone).drive(locator(transport="udp")) == [
            Target("udp", "192.0.2.1", 5060, "example.com")
        ]


class TestAnswers:
    def test_cname_in_answer_is_followed(self) -> None:
        zone = [
            srv("_sip._udp.example.com", 0, 0, 5060, "alias.example.com"),
            Record("alias.example.com", RType.CNAME, 300, CNAMEData("real.example.net")),
            a("real.example.net", "192.0.2.50"),
        ]
        dns = FakeDns(zone)
        assert dns.drive(locator(transport="udp", ip_versions=(4,))) == [
            Target("udp", "192.0.2.50", 5060, "example.com")
        ]
        assert ("real.example.net", "A") not in dns.asked  # the chain was in the answer

    def test_cname_without_data_is_chased(self) -> None:
        zone = [
            Record("alias.example.com", RType.CNAME, 300, CNAMEData("real.example.net")),
            a("real.example.net", "192.0.2.50"),
        ]
        dns = FakeDns(zone)
        dns.flatten_cname = False
        targets = dns.drive(locator("alias.example.com", 5060, ip_versions=(4,)))
        assert dns.asked == [("alias.example.com", "A"), ("real.example.net", "A")]
        assert [t.address for t in targets] == ["192.0.2.50"]

    def test_cname_loop_ends(self) -> None:
        zone = [
            Record("x.example.com", RType.CNAME, 300, CNAMEData("y.example.com")),
            Record("y.example.com", RType.CNAME, 300, CNAMEData("x.example.com")),
        ]
        dns = FakeDns(zone)
        dns.flatten_cname = False
        loc = locator("x.example.com", 5060, ip_versions=(4,))
        assert dns.drive(loc) == []
        assert len(dns.asked) <= 10
        assert isinstance(loc.error, LocateError)

    def test_srv_glue_in_additional_section_saves_queries(self) -> None:
        zone = [
            srv("_sip._udp.example.com", 0, 0, 5060, "pbx.example.com"),
            a("pbx.example.com", "192.0.2.8"),
            aaaa("pbx.example.com", "2001:db8::8"),
        ]
        dns = FakeDns(zone, glue=True)
        targets = dns.drive(locator(transport="udp"))
        assert dns.asked == [("_sip._udp.example.com", "SRV")]
        assert [t.address for t in targets] == ["192.0.2.8", "2001:db8::8"]

    def test_unrelated_additional_records_are_not_trusted(self) -> None:
        cache = DnsCache()
        loc = locator(transport="udp", cache=cache)
        question = loc.next_query()
        assert question is not None
        message = Message(
            1,
            make_flags(response=True),
            (question,),
            (srv("_sip._udp.example.com", 0, 0, 5060, "pbx.example.com"),),
            (),
            (a("pbx.example.com", "192.0.2.8"), a("bank.example.org", "203.0.113.66")),
        )
        loc.receive_answer(question, message, 0.0)
        assert cache.get("pbx.example.com", RType.A, 0.0) is not None
        assert cache.get("bank.example.org", RType.A, 0.0) is None

    def test_all_timeouts_give_locate_error_with_causes(self) -> None:
        loc = locator()
        for _ in range(10):
            if loc.done:
                break
            while (q := loc.next_query()) is not None:
                loc.receive_answer(q, DnsTimeout("no answer", q.name, q.rtype), 0.0)
        assert loc.done and loc.result() == []
        error = loc.error
        assert isinstance(error, LocateError) and error.host == "example.com"
        assert all(isinstance(c, DnsTimeout) for c in error.causes)
        assert ("example.com", RType.A) in {(c.name, c.rtype) for c in error.causes}

    def test_servfail_on_naptr_still_tries_srv(self) -> None:
        dns = FakeDns(FULL_ZONE)
        dns.rcodes[("example.com", RType.NAPTR)] = RCode.SERVFAIL
        targets = dns.drive(locator(supported_transports=("udp",)))
        assert targets == [Target("udp", "192.0.2.3", 5080, "example.com")]

    def test_nxdomain_error_kind(self) -> None:
        loc = locator("nowhere.example.com", 5060, ip_versions=(4,))
        assert FakeDns().drive(loc) == []
        assert loc.error is not None
        assert [type(c) for c in loc.error.causes] == [DnsNameNotFound]

    def test_srv_dot_target_means_no_service(self) -> None:
        zone = [srv("_sip._udp.example.com", 0, 0, 0, ""), a("example.com", "192.0.2.99")]
        assert FakeDns(zone).drive(locator(transport="udp")) == [
            Target("udp", "192.0.2.99", 5060, "example.com")
        ]

    def test_unknown_question_is_caller_error(self) -> None:
        loc = locator()
        with pytest.raises(ValueError, match="outstanding"):
            loc.receive_answer(Question("other.example", RType.A), DnsTimeout("x", "y", 1), 0.0)
        with pytest.raises(RuntimeError):
            loc.result()

    @pytest.mark.parametrize(
        ("transport", "secure", "supported"),
        [
            ("udp", True, ("udp", "tls")),
            ("sctp", False, ("udp",)),
            ("tcp", False, ("udp",)),
            (None, True, ("udp", "tcp")),
        ],
    )
    def test_bad_arguments_raise(
        self, transport: str | None, secure: bool, supported: tuple[str, ...]
    ) -> None:
        with pytest.raises(ValueError):
            locator(transport=transport, secure=secure, supported_transports=supported)

    def test_sips_with_transport_tcp_means_tls(self) -> None:
        loc = locator("192.0.2.1", transport="tcp", secure=True)
        assert loc.result() == [Target("tls", "192.0.2.1", 5061, "192.0.2.1")]


class TestSrvOrdering:
    RECORDS = [
        SRVData(20, 0, 1, "backup.example.com"),
        SRVData(10, 60, 1, "big.example.com"),
        SRVData(10, 30, 1, "mid.example.com"),
        SRVData(10, 10, 1, "small.example.com"),
        SRVData(10, 0, 1, "zero.example.com"),
    ]

    def test_priority_always_wins(self) -> None:
        for seed in range(50):
            ordered = order_srv(self.RECORDS, random.Random(seed))
            assert [r.priority for r in ordered] == [10, 10, 10, 10, 20]

    def test_seeded_rng_is_reproducible(self) -> None:
        first = order_srv(self.RECORDS, random.Random(42))
        assert order_srv(self.RECORDS, random.Random(42)) == first

    def test_running_sum_selection_exactly(self) -> None:
        class Scripted(random.Random):
            def __init__(self, picks: list[int]) -> None:
                super().__init__(0)
                self.picks = picks
                self.bounds: list[int] = []

            def randint(self, a: int, b: int) -> int:
                self.bounds.append(b)
                return self.picks.pop(0)

        # weight-0 first: [zero(0), big(60), mid(30), small(10)]; sums 0, 60, 90, 100
        rng = Scripted([61, 0, 35, 0, 0])
        ordered = order_srv(self.RECORDS, rng)
        assert [r.target.split(".")[0] for r in ordered] == [
            "mid",  # 61 -> first running sum >= 61 is 90 (mid)
            "zero",  # 0 -> zero's running sum 0 >= 0
            "big",  # of big(60), small(10): 35 -> 60
            "small",
            "backup",
        ]
        assert rng.bounds == [100, 70, 70, 10, 0]

    def test_weights_shape_the_distribution(self) -> None:
        rng = random.Random(7)
        firsts = Counter(order_srv(self.RECORDS[1:4], rng)[0].target for _ in range(3000))
        share = {name.split(".")[0]: count / 3000 for name, count in firsts.items()}
        assert share["big"] == pytest.approx(0.6, abs=0.05)
        assert share["mid"] == pytest.approx(0.3, abs=0.05)
        assert share["small"] == pytest.approx(0.1, abs=0.04)

    def test_locator_expands_every_srv_target_in_order(self) -> None:
        zone = [
            srv("_sip._udp.example.com", 10, 1, 5060, "a.example.com"),
            srv("_sip._udp.example.com", 5, 1, 5062, "b.example.com"),
            a("a.example.com", "192.0.2.1"),
            a("a.example.com", "192.0.2.11"),
            a("b.example.com", "192.0.2.2"),
        ]
        targets = FakeDns(zone).drive(locator(transport="udp"))
        assert [(t.address, t.port) for t in targets] == [
            ("192.0.2.2", 5062),
            ("192.0.2.1", 5060),
            ("192.0.2.11", 5060),
        ]


class TestCache:
    def test_positive_answers_live_for_their_ttl(self) -> None:
        zone = [
            srv("_sip._udp.example.com", 0, 0, 5060, "pbx.example.com", ttl=120),
            a("pbx.example.com", "192.0.2.8", ttl=60),
        ]
        cache = DnsCache()
        dns = FakeDns(zone)
        expected = [Target("udp", "192.0.2.8", 5060, "example.com")]
        assert dns.drive(locator(transport="udp", cache=cache, ip_versions=(4,)), now=0) == expected
        dns.asked.clear()
        loc = locator(transport="udp", cache=cache, ip_versions=(4,), now=59.0)
        assert loc.done and loc.result() == expected  # all from the cache, no question
        loc = locator(transport="udp", cache=cache, ip_versions=(4,), now=60.0)
        assert dns.drive(loc, now=60.0) == expected
        assert dns.asked == [("pbx.example.com", "A")]  # the A expired, the SRV did not

    def test_negative_answers_are_cached_briefly(self) -> None:
        cache = DnsCache(negative_ttl=30.0)  # the SOA says 60; the cap wins
        dns = FakeDns()
        dns.drive(locator("gone.example.com", 5060, cache=cache, ip_versions=(4,)), now=0)
        loc = locator("gone.example.com", 5060, cache=cache, ip_versions=(4,), now=29.9)
        assert loc.done and loc.result() == []
        assert cache.get("gone.example.com", RType.A, 29.9) is not None
        assert cache.get("gone.example.com", RType.A, 29.9).nxdomain  # type: ignore[union-attr]
        assert cache.get("gone.example.com", RType.A, 30.0) is None

    def test_negative_answer_without_soa_is_not_cached(self) -> None:
        cache = DnsCache()
        loc = locator("gone.example.com", 5060, cache=cache, ip_versions=(4,))
        question = loc.next_query()
        assert question is not None
        nxdomain = Message(1, make_flags(response=True, rcode=RCode.NXDOMAIN), (question,))
        loc.receive_answer(question, nxdomain, 0.0)
        assert len(cache) == 0

    def test_errors_are_not_cached(self) -> None:
        cache = DnsCache()
        loc = locator("h.example.com", 5060, cache=cache, ip_versions=(4,))
        question = loc.next_query()
        assert question is not None
        loc.receive_answer(question, DnsServerFailure("x", question.name, question.rtype), 0.0)
        assert len(cache) == 0

    def test_ttl_cap_zero_ttl_and_eviction(self) -> None:
        cache = DnsCache(max_entries=2, max_ttl=100.0)
        cache.put("a", RType.A, [a("a", "192.0.2.1", ttl=999999)], 999999, now=0.0)
        assert cache.get("a", RType.A, 99.0) is not None
        assert cache.get("a", RType.A, 100.0) is None
        cache.put("zero", RType.A, [a("zero", "192.0.2.1")], 0, now=0.0)
        assert len(cache) == 0
        for index, name in enumerate(["x", "y", "z"]):
            cache.put(name, RType.A, [a(name, "192.0.2.1")], 50, now=float(index))
        assert len(cache) == 2
        assert cache.get("x", RType.A, 3.0) is None  # the oldest went
        assert cache.get("Z.", RType.A, 3.0) is not None  # keys are case/dot-insensitive


class TestSentBy:
    def test_domain_without_port_uses_srv_for_via_transport(self) -> None:
        dns = FakeDns(FULL_ZONE)
        loc = sent_by_locator("example.com", None, "TCP", now=0.0, rng=random.Random(1))
        targets = dns.drive(loc)
        assert dns.asked[0] == ("_sip._tcp.example.com", "SRV")
        assert [t.port for t in targets] == [5070, 5070]

    def test_domain_with_port_is_a_lookup(self) -> None:
        dns = FakeDns(FULL_ZONE)
        loc = sent_by_locator("example.com", 5099, "udp", now=0.0, ip_versions=(4,))
        assert dns.drive(loc) == [Target("udp", "192.0.2.99", 5099, "example.com")]
        assert dns.asked == [("example.com", "A")]

    def test_tls_via_uses_sips_service(self) -> None:
        dns = FakeDns(FULL_ZONE)
        dns.drive(sent_by_locator("example.com", None, "TLS", now=0.0))
        assert dns.asked[0] == ("_sips._tcp.example.com", "SRV")


class TestTargetList:
    T1 = Target("udp", "192.0.2.1", 5060, "example.com")
    T2 = Target("udp", "192.0.2.2", 5060, "example.com")
    T3 = Target("tcp", "192.0.2.2", 5060, "example.com")

    def test_walks_in_order_until_exhausted(self) -> None:
        targets = TargetList([self.T1, self.T2, self.T3])
        assert targets.current == self.T1 and len(targets) == 3
        assert targets.failed(self.T1, FailureReason.TIMEOUT) == self.T2
        assert targets.failed(self.T2, FailureReason.SERVICE_UNAVAILABLE) == self.T3
        assert not targets.exhausted
        assert targets.failed(self.T3, FailureReason.TRANSPORT_ERROR) is None
        assert targets.exhausted and targets.current is None
        assert targets.failures == (
            (self.T1, FailureReason.TIMEOUT),
            (self.T2, FailureReason.SERVICE_UNAVAILABLE),
            (self.T3, FailureReason.TRANSPORT_ERROR),
        )

    def test_stale_failure_report_is_ignored(self) -> None:
        targets = TargetList([self.T1, self.T2, self.T3])
        targets.failed(self.T1, FailureReason.TIMEOUT)
        # a late timeout for T1 must not skip T2
        assert targets.failed(self.T1, FailureReason.TIMEOUT) == self.T2
        assert len(targets.failures) == 1

    def test_empty(self) -> None:
        targets = TargetList([])
        assert targets.exhausted and targets.current is None
