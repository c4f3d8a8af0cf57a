"""A failover drill through two router paths with NAT, in network namespaces.

    client - edge =(primary)= isp1 ------------- server (reflector)
                  =(backup)=  isp2 - transit --/

The site router ``edge`` masquerades to its address on each uplink, as a
router with two providers does. Mid-drill the drill's own ``--trigger`` takes
the primary uplink down (the kernel then forgets the NAT bindings made on it)
and, a second later, moves the default route to the backup. Measured: one
interruption of about that second, the calls back through the backup, and
``source_changed: true`` with both public addresses named, each the edge's
address on that uplink (from the Location TLV our reflector fills in). The
backup path has one router more, so the replies' TTL drops by one.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import ROOT
from tests.lab.netns import Lab, lab_unavailable_reason

pytestmark = pytest.mark.skipif(lab_unavailable_reason() is not None,
                                reason=lab_unavailable_reason() or "")


def test_failover_to_a_backup_with_another_public_address():
    with Lab() as lab:
        for n in ("client", "edge", "isp1", "isp2", "transit", "server"):
            lab.add_node(n)
        for a, b in (("client", "edge"), ("edge", "isp1"), ("edge", "isp2"), ("isp1", "server"),
                     ("isp2", "transit"), ("transit", "server")):
            lab.link(a, b)
        net = {tuple(sorted((a, b))): n for a, b, n in lab.links}

        def subnet(a, b):
            return str(net[tuple(sorted((a, b)))])

        lab.run("client", ["ip", "route", "add", "default", "via", lab.addr("edge", "client")])
        lab.run("edge", ["ip", "route", "add", "default", "via", lab.addr("isp1", "edge")])
        for uplink in ("isp1", "isp2"):
            lab.run("edge", ["iptables", "-t", "nat", "-A", "POSTROUTING", "-o", lab.dev("edge", uplink),
                             "-j", "MASQUERADE"])
        lab.run("isp1", ["ip", "route", "add", "default", "via", lab.addr("server", "isp1")])
        lab.run("isp2", ["ip", "route", "add", "default", "via", lab.addr("transit", "isp2")])
        lab.run("transit", ["ip", "route", "add", subnet("edge", "isp2"), "via", lab.addr("isp2", "transit")])
        # the reflector's address is on the server's primary-side link: the backup reaches it too
        lab.run("transit", ["ip", "route", "add", subnet("isp1", "server"), "via", lab.addr("server", "transit")])
        lab.run("server", ["ip", "route", "add", subnet("edge", "isp1"), "via", lab.addr("isp1", "server")])
        lab.run("server", ["ip", "route", "add", subnet("edge", "isp2"), "via", lab.addr("transit", "server")])
        for n in ("edge", "isp1", "isp2", "transit"):
            lab.sysctl(n, "net.ipv4.ip_forward", 1)
        lab.wait_links_up()
        server = lab.addr("server", "isp1")
        refl = lab.popen("server", [sys.executable, "-m", "harness", "reflector", "--listen",
                                    f"{server}:8620", "--no-tcp"], cwd=ROOT)
        assert lab.ping("client", server, count=3, timeout_s=2.0)[-1] is not None
        edge = lab.ns("edge")
        trigger = (f"ip netns exec {edge} ip link set {lab.dev('edge', 'isp1')} down; sleep 1; "
                   f"ip netns exec {edge} ip route replace default via {lab.addr('isp2', 'edge')}")
        p = lab.run("client", [sys.executable, "-m", "harness", "probe", "failover", f"{server}:8620",
                               "--duration", "14", "--calls", "2", "--trigger", trigger, "--trigger-at", "5",
                               "--max-gap-ms", "2000", "--json"], check=False, timeout=60)
        assert refl.poll() is None, "reflector died"
    d = json.loads(p.stdout)
    assert d["measured"] and d["trigger"]["exit_code"] == 0
    (it,) = d["interruptions"]
    # the route moved 1 s after the link went down: about 1 s of silence (the sleep, plus
    # the time the two ip commands take)
    assert 1000 - 2 * 20 <= it["duration_ms"] <= 1500
    assert d["recovered"] is True
    primary, backup = lab.addr("edge", "isp1"), lab.addr("edge", "isp2")
    assert it["source_changed"] is True and d["source_changed"] is True
    assert it["address_before"].startswith(primary + ":") and it["address_after"].startswith(backup + ":")
    assert any(f"changed from {it['address_before']} to {it['address_after']}" in n for n in d["notes"])
    # one router more on the way back: the replies arrive with one less TTL
    assert d["ttl_before"] - d["ttl_after"] == 1
    # within the 2000 ms allowed here, but the new public address is a warning (exit 0)
    assert d["verdict"] == "warn" and p.returncode == 0
    (src,) = [c for c in d["checks"] if c["id"] == "failover.source"]
    assert src["status"] == "warn" and primary in src["reason"] and backup in src["reason"]
