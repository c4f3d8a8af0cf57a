"""Namespace topologies: forwarding, shaping and teardown do what they claim."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import ROOT, needs_root
from tests.lab import (Impairment, Lab, impairment_relay, iperf3_client, iperf3_server,
                       list_namespaces_with, sweep_stale, udp_echo)
from tests.lab.peers import peer_unavailable_reason

pytestmark = [pytest.mark.lab, needs_root]


def _tx_packets(lab: Lab, node: str, peer: str) -> int:
    out = lab.run(node, ["ip", "-j", "-s", "link", "show", lab.dev(node, peer)]).stdout
    return json.loads(out)[0]["stats64"]["tx"]["packets"]


def test_three_namespace_chain_pings_end_to_end_through_the_router(lab):
    lab.chain(["client", "router", "server"])
    before = _tx_packets(lab, "router", "server"), _tx_packets(lab, "router", "client")
    there = lab.ping("client", lab.addr("server"), count=3)
    back = lab.ping("server", lab.addr("client"), count=3)
    after = _tx_packets(lab, "router", "server"), _tx_packets(lab, "router", "client")
    assert all(r is not None and r < 50 for r in there + back), (there, back)
    # 3 requests + 3 replies crossed the router each way
    assert after[0] - before[0] >= 6 and after[1] - before[1] >= 6
    assert lab.addr("client").startswith("198.18.") and lab.addr("server").startswith("198.18.")


TTL_PROBE = textwrap.dedent("""
    import json, sys, ping3
    ping3.EXCEPTIONS = True
    out = []
    for ttl in range(1, 6):
        try:
            ping3.ping(sys.argv[1], ttl=ttl, timeout=1, seq=ttl)
            out.append(["reply", sys.argv[1]])
        except ping3.errors.TimeToLiveExpired as exc:
            out.append(["expired", exc.ip_header["src_addr"]])
        except Exception as exc:
            out.append(["error", repr(exc)])
    print(json.dumps(out))
""")


def test_three_router_chain_expires_ttl_at_each_router_in_order(lab):
    # The topology helper G's traceroute test uses: TTL k expires at router k,
    # and the ICMP time-exceeded comes from its address on the client side.
    lab.chain(["client", "r1", "r2", "r3", "server"])
    cp = lab.run("client", [sys.executable, "-c", TTL_PROBE, lab.addr("server")], timeout=30)
    hops = json.loads(cp.stdout)
    assert hops[:4] == [["expired", lab.addr("r1", "client")], ["expired", lab.addr("r2", "r1")],
                        ["expired", lab.addr("r3", "r2")], ["reply", lab.addr("server")]]
    assert lab.ping("server", lab.addr("client"), count=2) != [None, None]


def test_mtu_is_set_on_both_ends_of_a_link(lab):
    lab.chain(["client", "router", "server"])
    lab.set_mtu("router", "to-server", 1400)    # interface name or neighbour name
    for node, peer in (("router", "server"), ("server", "router")):
        info = json.loads(lab.run(node, ["ip", "-j", "link", "show", lab.dev(node, peer)]).stdout)[0]
        assert info["mtu"] == 1400
    info = json.loads(lab.run("router", ["ip", "-j", "link", "show", lab.dev("router", "client")]).stdout)[0]
    assert info["mtu"] == 1500


TOS_RECEIVER = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], 0))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    s.settimeout(5)
    print(s.getsockname()[1], flush=True)
    tos = []
    for _ in range(2):
        _d, anc, _f, _a = s.recvmsg(64, 64)
        tos += [c[0] for _l, t, c in anc if t == socket.IP_TOS]
    print(tos, flush=True)
""")
TOS_SENDER = ("import socket, sys; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              "s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0xB8); "
              "[s.sendto(b'ef', (sys.argv[1], int(sys.argv[2]))) for _ in range(2)]")


def test_remark_dscp_on_a_router_rewrites_the_tos_byte_downstream(lab):
    lab.chain(["client", "r1", "r2", "server"])
    lab.remark_dscp("r2", "server", 10)   # AF11: TOS byte 10 << 2 = 0x28
    rx = lab.popen("server", [sys.executable, "-c", TOS_RECEIVER, lab.addr("server")], text=True)
    port = rx.stdout.readline().strip()
    lab.run("client", [sys.executable, "-c", TOS_SENDER, lab.addr("server"), port])
    out, _ = rx.communicate(timeout=10)
    assert out.strip() == str([0x28, 0x28])


@pytest.mark.skipif(peer_unavailable_reason("iperf3") is not None, reason="iperf3 not installed")
def test_tbf_on_the_router_shapes_tcp_goodput_to_20_mbit(lab):
    lab.chain(["client", "router", "server"])
    lab.shape_router("router", rate_mbit=20)
    # tbf counts layer-2 bytes: a full TCP segment is 1500 (IP MTU) + 14 (Ethernet) on
    # the wire and carries 1500 - 20 (IP) - 20 (TCP) - 12 (timestamps option) = 1448
    # bytes of application data, so iperf3's goodput is 20 * 1448 / 1514 = 19.128 Mbit/s.
    expected_mbps = 20.0 * 1448 / 1514
    with iperf3_server(ns=lab.ns("server"), host=lab.addr("server")) as srv:
        up = iperf3_client(srv.address, duration_s=2, omit_s=1, congestion="cubic", ns=lab.ns("client"))
        down = iperf3_client(srv.address, duration_s=2, omit_s=1, congestion="cubic", reverse=True,
                             ns=lab.ns("client"))
    for r in (up, down):
        assert r["congestion"] == "cubic"
        assert abs(r["received_mbps"] - expected_mbps) <= 0.05 * expected_mbps, r["received_mbps"]
    # the shaper, not the hosts, set the pace: the router's tbf queued and sent the data
    st = lab.qdisc_stats("router", "server")
    assert st["kind"] == "tbf" and st["bytes"] > 2 * 20e6 / 8 * 0.9


@pytest.mark.skipif(peer_unavailable_reason("iperf3") is not None, reason="iperf3 not installed")
@pytest.mark.parametrize("queue", ["deep", "shallow"])
def test_queue_depth_sets_the_delay_under_tcp_load(lab, queue):
    # A cubic upload fills the router's tbf queue. Shallow: tbf latency 5 ms + burst
    # 4 ms (20e6/8 * 0.004 = 10 kB) bounds the queueing delay near 9 ms. Deep: up to
    # 500 ms of queue, which loss-based cubic keeps filling (bufferbloat).
    lab.chain(["client", "router", "server"])
    lab.shape_router("router", rate_mbit=20, queue=queue)
    with iperf3_server(ns=lab.ns("server"), host=lab.addr("server")) as srv:
        load = lab.popen("client", ["iperf3", "-c", srv.address[0], "-p", srv.address[1], "-t", "3",
                                    "-C", "cubic", "-J"])
        time.sleep(1.5)
        rtts = lab.ping("client", lab.addr("server"), count=4)
        load.wait(timeout=20)
    assert None not in rtts, rtts
    if queue == "shallow":
        assert max(rtts) < 9.0 + 6.0, rtts     # 6 ms margin for the host's own scheduling
    else:
        assert min(rtts) > 50.0, rtts


CRASHING_TEST = textwrap.dedent("""
    import os, sys

    def test_boom(lab):
        lab.chain(["client", "router", "server"])
        proc = lab.popen("server", [sys.executable, "-c", "import time; time.sleep(60)"])
        # a shell whose child outlives it unless the whole group is ended
        shell = lab.popen("client", ["sh", "-c", "sleep 60 & echo $!; wait"], text=True)
        child = shell.stdout.readline().strip()
        with open(os.environ["CUTL_OUT"], "w") as fh:
            fh.write(lab.run_id + " " + str(proc.pid) + " " + child)
        raise RuntimeError("the test fails on purpose")
""")


def test_teardown_after_a_failing_test_removes_namespaces_and_processes(tmp_path):
    test_file = tmp_path / "test_crash.py"
    test_file.write_text(CRASHING_TEST)
    out = tmp_path / "out.txt"
    cp = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.lab.fixtures",
                         "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(test_file)],
                        cwd=ROOT, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, CUTL_OUT=str(out), PYTHONPATH=str(ROOT),
                                 PYTEST_DISABLE_PLUGIN_AUTOLOAD="1"))  # fast start
    assert "1 failed" in cp.stdout, cp.stdout[-2000:]
    run_id, pid, child = out.read_text().split()
    assert list_namespaces_with(run_id) == []
    for p in (pid, child):
        assert not _alive(int(p)), p


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that is not ours counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sweep_removes_a_dead_runs_namespaces_but_not_a_live_one(lab):
    lab.chain(["a", "b"])          # a live run: must survive the sweep
    # A creator that dies without cleaning up (SIGKILL: no finaliser, no atexit).
    code = ("import os, signal; from tests.lab import Lab; lab = Lab(); lab.chain(['x', 'y']); "
            "print(lab.run_id, flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    cp = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=60, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    dead_id = cp.stdout.strip()
    assert cp.returncode == -signal.SIGKILL and len(list_namespaces_with(dead_id)) == 2
    removed = sweep_stale(before=time.time() + 1)
    assert {f"{dead_id}-{n}" for n in ("x", "y")} <= set(removed)
    assert list_namespaces_with(dead_id) == []
    assert len(list_namespaces_with(lab.run_id)) == 2


RTT_CLIENT = textwrap.dedent("""
    import socket, statistics, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(2)
    rtts = []
    for i in range(20):
        t = time.perf_counter()
        s.sendto(b"x" * 64, (sys.argv[1], int(sys.argv[2])))
        s.recvfrom(256)
        rtts.append((time.perf_counter() - t) * 1000)
    print(statistics.median(rtts))
""")


def test_relay_runs_inside_the_router_namespace(lab):
    # client -> relay (in router) -> echo (in server): 15 ms up + 5 ms down added
    lab.chain(["client", "router", "server"])
    with udp_echo(listen=f"{lab.addr('server')}:0", netns=lab.ns("server"), max_seconds=30) as echo:
        with impairment_relay(echo, up=Impairment(delay_ms=0), down=Impairment(delay_ms=0),
                              netns=lab.ns("router"), listen=(lab.addr("router", "client"), 0),
                              max_seconds=30) as relay:
            # the same path unimpaired first: two Python endpoints and two namespace hops
            # cost a few tenths of a ms that the configured delay adds to
            argv = [sys.executable, "-c", RTT_CLIENT, *map(str, relay.address)]
            base = float(lab.run("client", argv).stdout)
            relay.configure(up=Impairment(delay_ms=15), down=Impairment(delay_ms=5))
            cp = lab.run("client", argv)
            st = relay.stats()
    assert abs(float(cp.stdout) - (20.0 + base)) <= 1.0, (cp.stdout, base)
    assert st["up"]["forwarded"] == st["down"]["forwarded"] == 40


UDP_ONE = textwrap.dedent("""
    import socket, sys
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.settimeout(2)
    got = 0
    for i in range(5):
        s.sendto(b"v6", (sys.argv[1], int(sys.argv[2])))
        try:
            got += s.recvfrom(64)[0] == b"v6"
        except socket.timeout:
            pass
    print(got)
""")


def test_ipv6_end_to_end_through_two_routers(lab):
    lab.chain(["client", "r1", "r2", "server"])
    assert lab.addr6("server") == "2001:2:0:2::2" and lab.addr6("client") == "2001:2::1"
    with udp_echo(listen=f"[{lab.addr6('server')}]:0", netns=lab.ns("server"), max_seconds=30) as echo:
        cp = lab.run("client", [sys.executable, "-c", UDP_ONE, echo[0], echo[1]])
    assert cp.stdout.strip() == "5"
