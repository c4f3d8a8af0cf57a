"""RFC 3263 resolution order with dnspython answers built in memory (no DNS traffic)."""

from __future__ import annotations

import random
from collections import Counter

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import pytest

from probes import sip
from probes.wire.sip_message import parse_uri
from probes.sip_resolve import DnsPythonLookup, resolve, srv_order


class StubResolver:
    """dns.resolver.Resolver look-alike: answers from a dict, records every question."""

    def __init__(self, zone: dict[tuple[str, str], list[str]]):
        self.zone = {(n.rstrip(".").lower(), t): v for (n, t), v in zone.items()}
        self.asked: list[tuple[str, str]] = []

    def resolve(self, name, rdtype):
        key = (str(name).rstrip(".").lower(), rdtype)
        self.asked.append(key)
        if key not in self.zone:
            raise dns.resolver.NXDOMAIN()
        rdt = dns.rdatatype.from_text(rdtype)
        return [dns.rdata.from_text(dns.rdataclass.IN, rdt, text) for text in self.zone[key]]


ZONE = {
    ("carrier.example", "NAPTR"): [
        '20 10 "s" "SIP+D2U" "" _sip._udp.carrier.example.',
        '10 10 "s" "SIP+D2T" "" _sip._tcp.carrier.example.',
        '10 20 "s" "SIPS+D2T" "" _sips._tcp.carrier.example.',
        '5 10 "u" "E2U+sip" "!^.*$!sip:x@y!" .',          # not an "s" record: ignored
    ],
    ("_sip._tcp.carrier.example", "SRV"): ["20 0 5080 sbc2.carrier.example.",
                                           "10 0 5070 sbc1.carrier.example."],
    ("_sip._udp.carrier.example", "SRV"): ["10 0 5060 sbc3.carrier.example."],
    ("_sips._tcp.carrier.example", "SRV"): ["10 0 5061 sbc1.carrier.example."],
    ("sbc1.carrier.example", "A"): ["192.0.2.1"],
    ("sbc1.carrier.example", "AAAA"): ["2001:db8::1"],
    ("sbc2.carrier.example", "A"): ["192.0.2.2"],
    ("sbc3.carrier.example", "A"): ["192.0.2.3"],
    ("carrier.example", "A"): ["192.0.2.100"],
    # SRV only, no NAPTR
    ("_sip._udp.srvonly.example", "SRV"): ["10 0 5062 u.srvonly.example."],
    ("_sip._tcp.srvonly.example", "SRV"): ["10 0 5063 t.srvonly.example."],
    ("u.srvonly.example", "A"): ["198.51.100.1"],
    ("t.srvonly.example", "A"): ["198.51.100.2"],
    # nothing but an address
    ("plain.example", "A"): ["203.0.113.5"],
    # a domain that says "no SIP over TCP here"
    ("_sip._tcp.nosip.example", "SRV"): ["0 0 0 ."],
}


def targets(uri, transport=None, zone=ZONE):
    stub = StubResolver(zone)
    res = resolve(parse_uri(uri), DnsPythonLookup(stub), transport, rng=random.Random(1))
    return [(t.transport, t.host, t.port, t.address) for t in res.targets], stub.asked, res


def test_naptr_order_then_preference_then_srv_priority():
    got, asked, res = targets("sip:carrier.example")
    assert got == [("tcp", "sbc1.carrier.example", 5070, "2001:db8::1"),
                   ("tcp", "sbc1.carrier.example", 5070, "192.0.2.1"),
                   ("tcp", "sbc2.carrier.example", 5080, "192.0.2.2"),
                   ("tls", "sbc1.carrier.example", 5061, "2001:db8::1"),
                   ("tls", "sbc1.carrier.example", 5061, "192.0.2.1"),
                   ("udp", "sbc3.carrier.example", 5060, "192.0.2.3")]
    assert asked[0] == ("carrier.example", "NAPTR")
    assert any("NAPTR carrier.example" in s for s in res.steps)


def test_sips_uses_only_sips_naptr():
    got, _, _ = targets("sips:carrier.example")
    assert {g[0] for g in got} == {"tls"} and got[0][2] == 5061


def test_no_naptr_falls_back_to_srv_for_each_transport():
    got, asked, _ = targets("sip:srvonly.example")
    assert got == [("udp", "u.srvonly.example", 5062, "198.51.100.1"),
                   ("tcp", "t.srvonly.example", 5063, "198.51.100.2")]
    assert ("srvonly.example", "NAPTR") in asked and ("_sips._tcp.srvonly.example", "SRV") in asked


def test_no_srv_falls_back_to_address_and_default_port():
    assert targets("sip:plain.example")[0] == [("udp", "plain.example", 5060, "203.0.113.5")]
    assert targets("sips:plain.example")[0] == [("tls", "plain.example", 5061, "203.0.113.5")]


def test_explicit_port_skips_naptr_and_srv():
    got, asked, _ = targets("sip:carrier.example:5099")
    assert got == [("udp", "carrier.example", 5099, "192.0.2.100")]
    assert all(t in ("A", "AAAA") for _, t in asked)


def test_ip_literal_asks_nothing():
    got, asked, _ = targets("sip:192.0.2.50")
    assert got == [("udp", "192.0.2.50", 5060, "192.0.2.50")] and asked == []
    got, asked, _ = targets("sips:[2001:db8::50]")
    assert got == [("tls", "2001:db8::50", 5061, "2001:db8::50")] and asked == []


def test_transport_param_or_option_uses_its_srv_only():
    got, asked, _ = targets("sip:carrier.example;transport=udp")
    assert got == [("udp", "sbc3.carrier.example", 5060, "192.0.2.3")]
    assert ("carrier.example", "NAPTR") not in asked
    got, _, _ = targets("sip:carrier.example", transport="tcp")
    assert [g[2] for g in got] == [5070, 5070, 5080]


def test_srv_dot_means_not_offered():
    got, _, res = targets("sip:nosip.example", transport="tcp")
    assert got == [] and any("not offered" in s for s in res.steps)


def test_srv_weights_rfc2782():
    recs = [(10, 90, 1, "heavy."), (10, 10, 2, "light."), (5, 0, 3, "first."), (20, 50, 4, "last.")]
    rng = random.Random(3)
    firsts = Counter()
    for _ in range(2000):
        order = srv_order(recs, rng)
        assert order[0][3] == "first." and order[-1][3] == "last."   # priority is strict
        firsts[order[1][3]] += 1
    # weight 90 vs 10: chosen first about 90 % of the time (binomial sd ~ 0.7 %)
    assert firsts["heavy."] / 2000 == pytest.approx(0.9, abs=0.03)


def test_run_fails_over_to_next_srv_target(sipp_port_free_udp):
    """End to end with stub DNS: the first SRV target is dead (closed port on 127.0.0.1),
    the second is a live responder: the probe tries both in order and reports each."""
    from tests.test_sip import UdpResponder
    dead = sipp_port_free_udp
    with UdpResponder() as srv:
        zone = {("_sip._udp.lab.example", "SRV"): [f"10 0 {dead} dead.lab.example.",
                                                   f"20 0 {srv.port} live.lab.example."],
                ("dead.lab.example", "A"): ["127.0.0.1"], ("live.lab.example", "A"): ["127.0.0.1"]}
        r = sip.run(sip.SipConfig("sip:lab.example;transport=udp", timeout_s=2,
                                  dns=DnsPythonLookup(StubResolver(zone))))
    assert [(a.host, a.port, a.outcome) for a in r.targets_tried] == \
        [("dead.lab.example", dead, "refused"), ("live.lab.example", srv.port, "answered")]
    assert r.status_code == 200 and r.address == f"127.0.0.1:{srv.port}"


@pytest.fixture
def sipp_port_free_udp():
    from tests.test_sip import free_port
    return free_port()
