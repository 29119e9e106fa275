"""Account matching, one test per rule of PJSUA's find_for_outgoing / find_for_incoming."""

from __future__ import annotations

from sipstack.account_match import AccountView, find_for_incoming, find_for_outgoing
from sipstack.uri import parse_uri

DEFAULT = 7


def acc(
    i: int,
    domain: str,
    *,
    port: int = 0,
    user: str | None = "u",
    prio: int = 0,
    route: bool = False,
    transport: str | None = None,
) -> AccountView:
    return AccountView(i, prio, domain, port, user, route, transport)


def test_outgoing_tel_uses_first_account_with_route_set_by_priority() -> None:
    accs = [acc(0, "a.com"), acc(1, "b.com", route=True), acc(2, "c.com", route=True, prio=5)]
    assert find_for_outgoing(accs, parse_uri("tel:+4930123"), DEFAULT) == 2


def test_outgoing_tel_without_any_route_set_gives_default() -> None:
    assert find_for_outgoing([acc(0, "a.com")], parse_uri("tel:+4930123"), DEFAULT) == DEFAULT


def test_outgoing_domain_and_port_beats_domain_only() -> None:
    accs = [acc(0, "a.com"), acc(1, "a.com", port=5070)]
    assert find_for_outgoing(accs, parse_uri("sip:x@a.com:5070"), DEFAULT) == 1
    assert find_for_outgoing(accs, parse_uri("sip:x@a.com"), DEFAULT) == 0  # port 0 == absent


def test_outgoing_domain_only_in_priority_order() -> None:
    accs = [acc(0, "a.com", port=1), acc(1, "A.com", port=2, prio=3)]
    assert find_for_outgoing(accs, parse_uri("sip:x@a.com:9999"), DEFAULT) == 1


def test_outgoing_no_domain_match_gives_default() -> None:
    assert find_for_outgoing([acc(0, "a.com")], parse_uri("sip:x@b.com"), DEFAULT) == DEFAULT


def test_incoming_scores_user_over_request_uri_user() -> None:
    accs = [acc(0, "a.com", user="bob"), acc(1, "a.com", user="alice")]
    to = parse_uri("sip:alice@a.com")
    ruri = parse_uri("sip:bob@10.0.0.1")
    # account 1: 8+4+2 = 14 beats account 0: 8+4+1 = 13
    assert find_for_incoming(accs, to, ruri, "udp", DEFAULT) == 1


def test_incoming_bound_transport_must_match() -> None:
    accs = [acc(0, "a.com", user="alice", transport="tcp"), acc(1, "b.com", user=None)]
    to = parse_uri("sip:alice@a.com")
    # account 0: 0+4+2+0 = 6 (bound to TCP, request came over UDP); account 1: 8
    assert find_for_incoming(accs, to, to, "udp", DEFAULT) == 1
    assert find_for_incoming(accs, to, to, "tcp", DEFAULT) == 0


def test_incoming_tie_goes_to_higher_priority() -> None:
    accs = [acc(0, "a.com"), acc(1, "a.com", prio=2)]
    to = parse_uri("sip:zed@a.com")
    assert find_for_incoming(accs, to, to, "udp", DEFAULT) == 1


def test_incoming_uses_request_uri_when_to_is_not_sip() -> None:
    accs = [
        acc(0, "a.com", user="alice", transport="tcp"),
        acc(1, "b.com", user="bob", transport="tcp"),
    ]
    assert (
        find_for_incoming(accs, parse_uri("tel:+123"), parse_uri("sip:bob@b.com"), "udp", DEFAULT)
        == 1
    )


def test_incoming_nothing_sip_or_no_score_gives_default() -> None:
    accs = [acc(0, "a.com", transport="tcp")]
    assert (
        find_for_incoming(accs, parse_uri("tel:+1"), parse_uri("tel:+1"), "udp", DEFAULT) == DEFAULT
    )
    assert find_for_incoming(accs, parse_uri("sip:x@z.com"), None, "udp", DEFAULT) == DEFAULT
