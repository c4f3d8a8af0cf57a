"""`cutover probe path`: pure parts (hop aggregation, DSCP change, MTU search) unit-tested,
then real traceroutes through helper B's namespace chain with three routers, one of
which re-marks DSCP and/or has a lower MTU."""

from __future__ import annotations

import json
import os
import struct
import threading

import pytest

from probes import path
from probes.path import Hop, MtuProbe, Reply, aggregate, dscp_change, search_mtu
from tests.conftest import admin_tool_reason, needs_root


# ---- pure parts ---------------------------------------------------------------------------

def test_aggregate_median_loss_and_quoted_dscp():
    replies = [Reply(1, "10.0.0.1", 1.0, "time-exceeded", 46), Reply(1, "10.0.0.1", 3.0, "time-exceeded", 46),
               Reply(1, "10.0.0.1", 2.0, "time-exceeded", 46),
               Reply(2, "10.0.1.1", 5.0, "time-exceeded", 0), Reply(2), Reply(2, "10.0.1.9", 7.0, "time-exceeded", 0),
               Reply(3), Reply(3), Reply(3)]
    h = aggregate(replies, rounds=3)
    assert [(x.ttl, x.address, x.rtt_ms, round(x.loss_pct, 2), x.dscp) for x in h] == \
        [(1, "10.0.0.1", 2.0, 0.0, 46), (2, "10.0.1.1", 6.0, 33.33, 0), (3, None, None, 100.0, None)]
    assert h[1].addresses == ["10.0.1.1", "10.0.1.9"]   # ECMP: both seen, the first reported


def test_dscp_change_names_first_differing_hop_and_skips_silent_ones():
    hops = [Hop(1, "a", 1, 0, 46), Hop(2, None, None, 100, None), Hop(3, "c", 1, 0, 0), Hop(4, "d", 1, 0, 0)]
    assert dscp_change(hops, 46) == {"ttl": 3, "address": "c", "dscp_sent": 46, "dscp_seen": 0,
                                     "last_intact_ttl": 1}
    assert dscp_change([Hop(1, "a", 1, 0, 46), Hop(2, "b", 1, 0, None)], 46) is None


def fake_path(mtu: int, icmp: bool = True, router: str = "r2", lose: set[int] = frozenset()):
    sizes: list[int] = []

    def probe(size: int) -> MtuProbe:
        sizes.append(size)
        if size in lose and sizes.count(size) == 1:
            return MtuProbe("none")          # one lost probe, the retry gets through
        if size <= mtu:
            return MtuProbe("ok")
        return MtuProbe("too-big", mtu, router) if icmp else MtuProbe("none")
    return probe, sizes


def test_mtu_from_frag_needed_is_verified():
    probe, sizes = fake_path(1400)
    assert search_mtu(probe, 1500) == (1400, "r2", "icmp-frag-needed")
    assert sizes == [1500, 1400]


def test_mtu_by_binary_search_when_icmp_filtered():
    for mtu in (68, 576, 1280, 1397, 1499):
        probe, sizes = fake_path(mtu, icmp=False)
        got, router, method = search_mtu(probe, 1500, max_steps=40)
        assert (got, router, method) == (mtu, None, "probing")
        assert len(sizes) <= 2 * 11 + 2     # log2(1433) ~ 11 steps, each silence tried twice


def test_mtu_full_interface_and_lost_probe_retried():
    probe, sizes = fake_path(1500, lose={1500})
    assert search_mtu(probe, 1500) == (1500, None, "interface")
    assert sizes == [1500, 1500]


def test_mtu_nothing_passes():
    probe, _ = fake_path(0, icmp=False)
    assert search_mtu(probe, 1500, max_steps=40)[0] is None


def test_not_root_is_could_not_measure(monkeypatch):
    monkeypatch.setattr(path, "raw_sockets_allowed", lambda: False)
    r = path.run(path.PathConfig("127.0.0.1"))
    assert not r.measured and "needs root" in r.errors[0]


def test_cli_as_unprivileged_user_exit_3():
    from tests.conftest import ROOT
    from tests.privilege import as_nobody
    import subprocess
    cp = subprocess.run(as_nobody([str(ROOT / ".venv/bin/cutover"), "probe", "path", "127.0.0.1", "--json"]),
                        capture_output=True, text=True, timeout=60, cwd="/")
    assert cp.returncode == 3, cp.stderr
    assert json.loads(cp.stdout)["measured"] is False
    assert "needs root" in cp.stderr and "Traceback" not in cp.stderr


def test_bad_arguments():
    for cfg in (path.PathConfig("127.0.0.1", proto="sctp"), path.PathConfig("127.0.0.1", rounds=0),
                path.PathConfig("127.0.0.1", dscp="gold"), path.PathConfig("127.0.0.1", max_ttl=99)):
        with pytest.raises(ValueError):
            path.run(cfg)


# ---- the lab ------------------------------------------------------------------------------

def cutover_in(lab, node, *args, timeout=120):
    from tests.conftest import ROOT
    cp = lab.run(node, [str(ROOT / ".venv/bin/cutover"), *args], check=False, timeout=timeout)
    return cp


@pytest.fixture
def chain():
    from tests.lab import Lab, lab_unavailable_reason
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with Lab() as lab:
        lab.chain(["client", "r1", "r2", "r3", "server"])
        yield lab


def router_addrs(lab):
    # each router answers from its address on the link towards the client
    return [lab.addr("r1", "client"), lab.addr("r2", "r1"), lab.addr("r3", "r2"), lab.addr("server", "r3")]


@needs_root
@pytest.mark.lab
def test_clean_path_names_every_hop(chain):
    srv = chain.addr("server")
    cp = cutover_in(chain, "client", "probe", "path", srv, "--rounds", "3", "--json")
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    assert [h["address"] for h in out["hops"]] == router_addrs(chain)
    assert [h["ttl"] for h in out["hops"]] == [1, 2, 3, 4]
    assert all(h["loss_pct"] == 0 and h["rtt_ms"] > 0 for h in out["hops"])
    assert [h["dscp"] for h in out["hops"]] == [46, 46, 46, 46]   # UDP: the server's port unreachable quotes too
    assert out["dscp_changed_at"] is None
    assert (out["path_mtu"], out["mtu_method"]) == (1500, "interface")


@needs_root
@pytest.mark.lab
@pytest.mark.skipif(admin_tool_reason("iptables") is not None, reason=str(admin_tool_reason("iptables")))
@pytest.mark.parametrize("proto", ["udp", "icmp", "tcp"])
def test_remarking_router_and_lower_mtu_found(chain, proto):
    # r2 bleaches DSCP on ingress from r1; the r2 -> r3 link carries only 1400 bytes
    chain.run("r2", ["iptables", "-t", "mangle", "-A", "PREROUTING", "-i", chain.dev("r2", "r1"),
                     "-j", "DSCP", "--set-dscp", "0"])
    chain.set_mtu("r2", "r3", 1400)
    srv = chain.addr("server")
    args = ["probe", "path", srv, "--proto", proto, "--rounds", "2", "--json"]
    if proto == "tcp":
        args += ["--port", "5060"]
    cp = cutover_in(chain, "client", *args)
    assert cp.returncode == 1, cp.stderr            # reached, but the marking was lost
    out = json.loads(cp.stdout)
    assert [h["address"] for h in out["hops"]] == router_addrs(chain)
    assert out["dscp_changed_at"]["ttl"] == 2
    assert out["dscp_changed_at"]["address"] == chain.addr("r2", "r1")
    assert out["dscp_changed_at"]["dscp_seen"] == 0 and out["dscp_changed_at"]["last_intact_ttl"] == 1
    assert [h["dscp"] for h in out["hops"][:3]] == [46, 0, 0]
    assert out["path_mtu"] == 1400
    assert out["mtu_limited_at"] == chain.addr("r2", "r1") and out["mtu_method"] == "icmp-frag-needed"


@needs_root
@pytest.mark.lab
@pytest.mark.skipif(admin_tool_reason("iptables") is not None, reason=str(admin_tool_reason("iptables")))
def test_mtu_found_by_probing_when_frag_needed_is_filtered(chain):
    chain.set_mtu("r3", "server", 1350)
    chain.run("r3", ["iptables", "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed",
                     "-j", "DROP"])
    cp = cutover_in(chain, "client", "probe", "path", chain.addr("server"), "--proto", "icmp",
                    "--rounds", "1", "--timeout", "0.3", "--json")
    assert cp.returncode == 0, cp.stderr
    out = json.loads(cp.stdout)
    assert (out["path_mtu"], out["mtu_method"], out["mtu_limited_at"]) == (1350, "probing", None)


def test_classify_reads_the_quoted_tos_byte():
    # ICMP answers built as routers send them; the quoted header carries the TOS as it arrived
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import (ICMPv6DestUnreach, ICMPv6EchoReply, ICMPv6PacketTooBig,
                                    ICMPv6TimeExceeded, IPv6)

    def icmp(src, type_, code, tos, **kw):
        quoted = IP(src="10.0.0.9", dst="10.9.9.9", ttl=1, tos=tos) / UDP(sport=40000, dport=33434)
        return IP(bytes(IP(src=src, dst="10.0.0.9") / ICMP(type=type_, code=code, **kw) / bytes(quoted)[:28]))

    cls = lambda p, dst="10.9.9.9": path._classify(p, dst)   # noqa: E731
    assert cls(icmp("10.0.1.1", 11, 0, 0xB8)) == ("time-exceeded", 46, False, None)
    assert cls(icmp("10.0.2.1", 11, 0, 0x01)) == ("time-exceeded", 0, False, None)     # ECN bits ignored
    assert cls(icmp("10.9.9.9", 3, 3, 0xA0)) == ("port-unreachable", 40, True, None)   # CS5 at the destination
    assert cls(icmp("10.0.1.1", 3, 4, 0xB8, nexthopmtu=1400)) == ("frag-needed", 46, False, 1400)
    assert cls(IP(bytes(IP(src="10.9.9.9", dst="10.0.0.9") / ICMP(type=0))))[:3] == ("echo-reply", None, True)
    assert cls(IP(bytes(IP(src="10.9.9.9", dst="10.0.0.9") / TCP(flags="SA"))))[:3] == ("tcp", None, True)
    # IPv6: the traffic class of the quoted header
    q6 = bytes(IPv6(src="fd00::9", dst="fd00:9::9", hlim=1, tc=0xB8) / UDP(sport=40000, dport=33434))
    v6 = lambda src, layer: IPv6(bytes(IPv6(src=src, dst="fd00::9") / layer / q6))   # noqa: E731
    assert cls(v6("fd00:1::1", ICMPv6TimeExceeded()), "fd00:9::9") == ("time-exceeded", 46, False, None)
    assert cls(v6("fd00:9::9", ICMPv6DestUnreach(code=4)), "fd00:9::9") == ("port-unreachable", 46, True, None)
    assert cls(v6("fd00:1::1", ICMPv6PacketTooBig(mtu=1400)), "fd00:9::9") == ("frag-needed", 46, False, 1400)
    echo6 = IPv6(bytes(IPv6(src="fd00:9::9", dst="fd00::9") / ICMPv6EchoReply()))
    assert cls(echo6, "fd00:9::9")[:3] == ("echo-reply", None, True)


def add_ipv6(lab) -> None:
    """IPv6 on the chain: link i gets fd00:c0:i::/64, node i = ::1, node i+1 = ::2; routes as
    for IPv4 (the lab builds IPv4 only); no DAD delay; ICMPv6 errors not rate limited."""
    nodes, k = lab.path, len(lab.path) - 1
    for i, (a, b, _net) in enumerate(lab.links):
        for node, peer, host in ((a, b, 1), (b, a, 2)):
            lab.run(node, ["ip", "-6", "addr", "add", f"fd00:c0:{i}::{host}/64", "dev", lab.dev(node, peer),
                           "nodad"])
    for i, node in enumerate(nodes):
        lab.sysctl(node, "net.ipv6.icmp.ratelimit", 0)
        if i == 0:
            lab.run(node, ["ip", "-6", "route", "replace", "default", "via", "fd00:c0:0::2"])
        elif i == k:
            lab.run(node, ["ip", "-6", "route", "replace", "default", "via", f"fd00:c0:{k - 1}::1"])
        else:
            lab.sysctl(node, "net.ipv6.conf.all.forwarding", 1)
            for j in range(len(lab.links)):
                if j < i - 1:
                    lab.run(node, ["ip", "-6", "route", "replace", f"fd00:c0:{j}::/64", "via", f"fd00:c0:{i - 1}::1"])
                elif j > i:
                    lab.run(node, ["ip", "-6", "route", "replace", f"fd00:c0:{j}::/64", "via", f"fd00:c0:{i}::2"])


@needs_root
@pytest.mark.lab
@pytest.mark.skipif(admin_tool_reason("ip6tables") is not None, reason=str(admin_tool_reason("ip6tables")))
def test_ipv6_hops_remarking_and_packet_too_big(chain):
    add_ipv6(chain)
    chain.run("r2", ["ip6tables", "-t", "mangle", "-A", "PREROUTING", "-i", chain.dev("r2", "r1"),
                     "-j", "DSCP", "--set-dscp", "0"])
    chain.set_mtu("r2", "r3", 1400)
    cp = cutover_in(chain, "client", "probe", "path", "fd00:c0:3::2", "--rounds", "2", "--json")
    assert cp.returncode == 1, cp.stderr
    out = json.loads(cp.stdout)
    assert [h["address"] for h in out["hops"]] == ["fd00:c0::2", "fd00:c0:1::2", "fd00:c0:2::2", "fd00:c0:3::2"]
    assert [h["dscp"] for h in out["hops"]] == [46, 0, 0, 0]
    assert out["dscp_changed_at"]["ttl"] == 2 and out["dscp_changed_at"]["address"] == "fd00:c0:1::2"
    assert (out["path_mtu"], out["mtu_limited_at"], out["mtu_method"]) == (1400, "fd00:c0:1::2", "icmp-frag-needed")


@needs_root
@pytest.mark.lab
@pytest.mark.skipif(admin_tool_reason("iptables") is not None, reason=str(admin_tool_reason("iptables")))
def test_filtering_router_is_named(chain):
    # r2 rejects forwarded UDP with "administratively prohibited": not reached, exit 3, hop named
    chain.run("r2", ["iptables", "-A", "FORWARD", "-p", "udp", "-j", "REJECT", "--reject-with",
                     "icmp-admin-prohibited"])
    cp = cutover_in(chain, "client", "probe", "path", chain.addr("server"), "--rounds", "1", "--json")
    assert cp.returncode == 3
    out = json.loads(cp.stdout)
    assert out["reached"] is False and out["path_mtu"] is None
    # TTL 2 expires at r2 (before its FORWARD chain); TTL 3 passes that check and is rejected
    r2 = chain.addr("r2", "r1")
    assert [h["address"] for h in out["hops"]] == [chain.addr("r1", "client"), r2, r2]
    assert out["hops"][2]["reply"] == "unreachable-13"
    assert f"hop 3 ({r2}) answered destination unreachable (ICMP code 13)" in cp.stderr


# ---- answers matched to their own probes ---------------------------------------------------

def test_answer_key_matches_only_our_own_probes():
    """Each answer maps to the key of the probe it quotes; others' packets map to None or to
    a key none of our probes has (other ports, other identifiers, other destinations)."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6TimeExceeded, IPv6
    cfg = path.PathConfig("10.9.9.9", proto="udp")
    probe = path._probe_packet(cfg, "10.9.9.9", 46, 3, 7, sport=41000)
    assert path.probe_key(probe) == ("udp", 41000, 33434 + 7)

    def err(quoted, src="10.0.1.1"):
        return IP(bytes(IP(src=src, dst="10.0.0.9") / ICMP(type=11) / bytes(quoted)[:28]))
    assert path.answer_key(err(probe), "10.9.9.9") == path.probe_key(probe)
    other = IP(src="10.0.0.9", dst="10.9.9.9", ttl=1) / UDP(sport=41001, dport=33441)   # another traceroute
    assert path.answer_key(err(other), "10.9.9.9") == ("udp", 41001, 33441) != path.probe_key(probe)
    elsewhere = IP(src="10.0.0.9", dst="10.8.8.8", ttl=1) / UDP(sport=41000, dport=33441)
    assert path.answer_key(err(elsewhere), "10.9.9.9") is None          # a quote of a packet to elsewhere
    # ICMP echo: identifier and sequence, from the destination only
    icfg = path.PathConfig("10.9.9.9", proto="icmp")
    echo = path._probe_packet(icfg, "10.9.9.9", 46, 2, 12)
    reply = IP(bytes(IP(src="10.9.9.9", dst="10.0.0.9") / ICMP(type=0, id=echo[ICMP].id, seq=12)))
    assert path.answer_key(reply, "10.9.9.9") == path.probe_key(echo) == ("icmp", os.getpid() & 0xFFFF, 12)
    foreign = IP(bytes(IP(src="10.9.9.9", dst="10.0.0.9") / ICMP(type=0, id=(os.getpid() + 1) & 0xFFFF, seq=12)))
    assert path.answer_key(foreign, "10.9.9.9") != path.probe_key(echo)
    assert path.answer_key(IP(bytes(IP(src="10.9.9.9", dst="10.0.0.9") / ICMP(type=8, id=1))), "10.9.9.9") is None
    assert path.answer_key(err(echo), "10.9.9.9") == path.probe_key(echo)   # time exceeded quoting the echo
    # TCP: SYN-ACK / RST from the probed port to our held source port
    tcfg = path.PathConfig("10.9.9.9", proto="tcp", port=5060)
    syn = path._probe_packet(tcfg, "10.9.9.9", 46, 4, 3, sport=42000)
    rst = IP(bytes(IP(src="10.9.9.9", dst="10.0.0.9") / TCP(sport=5060, dport=42000, flags="RA", ack=4)))
    assert path.answer_key(rst, "10.9.9.9") == path.probe_key(syn) == ("tcp", 42000, 5060)
    assert path.answer_key(err(syn), "10.9.9.9") == ("tcp", 42000, 5060)
    # IPv6 echo and a time exceeded quoting it
    e6 = path._probe_packet(icfg, "fd00:9::9", 46, 2, 5)
    r6 = IPv6(bytes(IPv6(src="fd00:9::9", dst="fd00::9") / ICMPv6EchoReply(id=e6[ICMPv6EchoRequest].id, seq=5)))
    assert path.answer_key(r6, "fd00:9::9") == path.probe_key(e6) == ("icmp", os.getpid() & 0xFFFF, 5)
    te6 = IPv6(bytes(IPv6(src="fd00:1::1", dst="fd00::9") / ICMPv6TimeExceeded() / bytes(e6)))
    assert path.answer_key(te6, "fd00:9::9") == path.probe_key(e6)


def _bulk_tcp(stop) -> None:
    """The test suite's traffic: a TCP bulk transfer on loopback (tens of thousands of
    frames a second that a packet socket sniffing every frame has to look at)."""
    import socket as S
    import time
    srv = S.create_server(("127.0.0.1", 0))
    cli = S.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    sink = threading.Thread(target=lambda: [None for _ in iter(lambda: conn.recv(1 << 16), b"")], daemon=True)
    sink.start()
    chunk = bytes(1 << 16)
    end = time.monotonic() + 90
    try:
        while not stop.is_set() and time.monotonic() < end:
            cli.sendall(chunk)
    finally:
        cli.close()
        sink.join(timeout=5)
        conn.close()
        srv.close()


def _noise(stop, port_base: int = 47000) -> None:
    """Another traceroute and ping on the same machine, as the issue saw them: ICMP echo
    requests with a foreign identifier and TTL-limited UDP to closed ports on loopback
    (about 100 packets a second: under the kernel's ICMP error budget of 1000/s)."""
    import socket as S
    import time
    icmp = S.socket(S.AF_INET, S.SOCK_RAW, S.IPPROTO_ICMP)
    udp = S.socket(S.AF_INET, S.SOCK_DGRAM)
    try:
        seq = 0
        while not stop.is_set() and seq < 3000:
            body = struct.pack("!BBHHH", 8, 0, 0, 0x7777, seq & 0xFFFF) + b"noise"
            csum = _inet_checksum(body)
            icmp.sendto(body[:2] + struct.pack("!H", csum) + body[4:], ("127.0.0.1", 0))
            udp.setsockopt(S.IPPROTO_IP, S.IP_TTL, 1 + seq % 30)
            udp.sendto(b"x", ("127.0.0.1", port_base + seq % 100))
            seq += 1
            time.sleep(0.01)
    finally:
        icmp.close()
        udp.close()


def _inet_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


@needs_root
@pytest.mark.parametrize("proto", ["icmp", "udp", "tcp"])
def test_two_path_probes_at_once_each_see_their_own_answers(proto):
    """Issue #15: with another traceroute on the machine, 127.0.0.1 showed at hops 1-9 with
    20 % loss. Two `probe path` runs at once, with ping/traceroute noise besides: each
    reports exactly one hop, 127.0.0.1, answered in every round (0 % loss)."""
    import subprocess
    import sys
    from tests.conftest import ROOT
    stop = threading.Event()
    noise = [threading.Thread(target=f, args=(stop,), daemon=True) for f in (_noise, _bulk_tcp)]
    for t in noise:
        t.start()
    args = [sys.executable, "-m", "harness", "probe", "path", "127.0.0.1", "--proto", proto,
            "--rounds", "5", "--no-mtu", "--json"] + (["--port", "9"] if proto == "tcp" else [])
    procs = [subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        outs = [p.communicate(timeout=90) for p in procs]
    finally:
        stop.set()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for t in noise:
            t.join(timeout=5)
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        data = json.loads(out)
        assert [(h["ttl"], h["address"], h["loss_pct"], h["destination"]) for h in data["hops"]] == \
            [(1, "127.0.0.1", 0.0, True)], data["hops"]
        assert data["reached"] is True


@needs_root
@pytest.mark.lab
@pytest.mark.parametrize("procs", [("udp", "udp"), ("icmp", "udp"), ("tcp", "icmp")])
def test_two_path_probes_at_once_through_routers(chain, procs):
    """Two traceroutes at once from one namespace through three routers: each names the
    four hops in order, every round answered (0 % loss), no hop borrowed from the other."""
    from tests.conftest import ROOT
    srv = chain.addr("server")
    runs = []
    for proto in procs:
        args = [str(ROOT / ".venv/bin/cutover"), "probe", "path", srv, "--proto", proto, "--rounds", "5",
                "--no-mtu", "--json"] + (["--port", "5060"] if proto == "tcp" else [])
        runs.append(chain.popen("client", args))
    outs = [p.communicate(timeout=90) for p in runs]
    for p, (out, err) in zip(runs, outs):
        assert p.returncode == 0, err
        data = json.loads(out)
        assert [h["address"] for h in data["hops"]] == router_addrs(chain), data["hops"]
        assert all(h["loss_pct"] == 0 for h in data["hops"]), data["hops"]
        assert data["reached"] is True


@needs_root
def test_capped_mtu_on_loopback_is_explained():
    """Loopback's MTU is 65536; probes stop at 9216 bytes, so the figure is a lower bound
    and the output says so (issue #15: "[capped]" was never explained)."""
    from tests.conftest import run_cli
    cp = run_cli("probe", "path", "127.0.0.1", "--rounds", "1")
    assert cp.returncode == 0, cp.stderr
    assert "path MTU: at least 9216 bytes [capped]" in cp.stdout
    assert "capped: the interface allows more, but probes stop at 9216 bytes" in cp.stdout
    assert "lower bound" in cp.stdout
    data = json.loads(run_cli("probe", "path", "127.0.0.1", "--rounds", "1", "--json").stdout)
    assert (data["path_mtu"], data["mtu_method"], data["interface_mtu"]) == (9216, "capped", 65536)
