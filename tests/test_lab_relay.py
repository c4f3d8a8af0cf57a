"""The impairment relay lands its configured impairments.

Measured with plain sockets (no project probe): kernel receive timestamps
(SO_TIMESTAMPNS) on a sink socket against the send time stamped in the payload
give one-way delay on one clock; an echo process in its own process gives RTT.
"""

from __future__ import annotations

import socket
import statistics
import struct
import sys
import time

import pytest

from tests.lab import Impairment, impairment_relay, udp_echo
from tests.lab.rt import realtime

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
PKT = struct.Struct("!Id")  # sequence number, send time (CLOCK_REALTIME, like the kernel stamp)


def _sink(family=socket.AF_INET, host="127.0.0.1"):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    return s


def _paced_send(sock, dest, count, interval_s):
    """Send count stamped packets at interval_s (sleep most of the gap, then spin briefly)."""
    with realtime():   # a paced sender parked by the scheduler would skew the stamps
        _send_loop(sock, dest, count, interval_s)


def _send_loop(sock, dest, count, interval_s):
    t0 = time.monotonic()
    for i in range(count):
        due = t0 + i * interval_s
        while (gap := due - time.monotonic()) > 0:
            if gap > 0.0003:
                time.sleep(gap - 0.0002)
        sock.sendto(PKT.pack(i, time.time()) + b"\0" * 160, dest)


def _drain_oneway(sink) -> tuple[dict[int, float], list[int]]:
    """Read everything queued on sink: {seq: one-way delay ms}, arrival order of seqs."""
    sink.setblocking(False)
    delays, order = {}, []
    for _ in range(1_000_000):
        try:
            data, anc, _flags, _addr = sink.recvmsg(2048, 256)
        except BlockingIOError:
            break
        seq, sent = PKT.unpack_from(data)
        rx = None
        for _lvl, typ, cdata in anc:
            if typ == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", cdata[:16])
                rx = sec + nsec * 1e-9
        assert rx is not None, "no kernel receive timestamp"
        order.append(seq)
        delays.setdefault(seq, (rx - sent) * 1000.0)
    return delays, order


def _median_rtt_ms(dest, count=200, family=socket.AF_INET, interval_s=0.005) -> float:
    """Median RTT of count echoes, pipelined: send time in the payload, kernel
    receive timestamp on return (so the probe's own scheduling does not count)."""
    c = socket.socket(family, socket.SOCK_DGRAM)
    c.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    c.setblocking(False)
    rtts = {}
    try:
        with realtime():
            for i in range(count):
                c.sendto(PKT.pack(i, time.time()), dest)
                time.sleep(interval_s)
        deadline = time.monotonic() + 3
        while len(rtts) < count and time.monotonic() < deadline:
            d, _ = _drain_oneway(c)   # one-way from our send stamp to our receive = RTT
            rtts.update(d)
            time.sleep(0.01)
    finally:
        c.close()
    assert len(rtts) == count
    return statistics.median(rtts.values())


@pytest.mark.parametrize("family,host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_fixed_delay_lands_in_rtt(family, host):
    # 40 ms each way, no jitter: RTT = 80 ms + the unimpaired RTT through the relay.
    listen = f"[{host}]:0" if family == socket.AF_INET6 else f"{host}:0"
    with udp_echo(listen=listen, max_seconds=60) as echo:
        with impairment_relay(echo, max_seconds=60) as plain:
            base_ms = _median_rtt_ms(plain.address, family=family)
        with impairment_relay(echo, up=Impairment(delay_ms=40), down=Impairment(delay_ms=40),
                              max_seconds=60) as relay:
            rtt_ms = _median_rtt_ms(relay.address, count=100, family=family)
            st = relay.stats()
    assert base_ms < 2.0
    assert abs(rtt_ms - (80.0 + base_ms)) <= 1.0, (rtt_ms, base_ms)
    assert st["up"]["forwarded"] == st["up"]["received"] == 100
    assert st["down"]["forwarded"] == st["down"]["received"] == 100


def test_jitter_one_way_ipdv_matches_theory():
    # Independent uniform delays in [30, 50] ms: E|D(i) - D(i-1)| = 2 * 10 / 3 = 6.667 ms,
    # mean delay 40 ms, every delay inside [30, 50] (plus timer error).
    n = 3000
    sink = _sink()
    try:
        with impairment_relay(sink.getsockname(), up=Impairment(delay_ms=40, jitter_ms=10),
                              seed=7, max_seconds=60) as relay:
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            _paced_send(client, relay.address, n, 0.001)
            st = relay.wait_idle()
            client.close()
        delays, _ = _drain_oneway(sink)
    finally:
        sink.close()
    assert len(delays) == n == st["up"]["forwarded"]
    d = [delays[i] for i in range(n)]
    ipdv = statistics.mean(abs(d[i] - d[i - 1]) for i in range(1, n))
    assert abs(ipdv - 20.0 / 3.0) <= 0.5, ipdv
    assert abs(statistics.mean(d) - 40.0) <= 0.5, statistics.mean(d)
    # Every delay is drawn inside [30, 50]; the relay's timer error is ~0.1 ms, but on a
    # shared VM a rare wake-up comes 1-3 ms late (seen even with SCHED_FIFO): 99 % inside.
    inside = sum(30.0 - 0.5 <= x <= 50.0 + 0.5 for x in d) / n
    assert inside >= 0.99, (inside, min(d), max(d))
    assert min(d) >= 30.0 - 0.5, min(d)   # never early: delays are lower-bounded


def test_loss_per_direction_and_counters_agree_with_endpoints():
    # 2 % loss each way over 3000 packets; the endpoints count what arrived and the
    # relay's counters must tell the same story.
    n = 3000
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.setblocking(False)
    for s in (server, client):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    at_server, at_client = set(), set()

    def pump():
        for sock, seen, echo in ((server, at_server, True), (client, at_client, False)):
            for _ in range(10_000):
                try:
                    data, addr = sock.recvfrom(2048)
                except BlockingIOError:
                    break
                seen.add(PKT.unpack_from(data)[0])
                if echo:
                    sock.sendto(data, addr)

    try:
        with impairment_relay(server.getsockname(), up=Impairment(loss_pct=2),
                              down=Impairment(loss_pct=2), seed=3, max_seconds=60) as relay:
            for i in range(n):
                client.sendto(PKT.pack(i, 0.0), relay.address)
                if i % 20 == 0:
                    pump()
                    time.sleep(0.0005)
            deadline = time.monotonic() + 5
            st = relay.stats()
            while time.monotonic() < deadline:
                pump()
                st = relay.stats()
                if st["up"]["pending"] == 0 and st["down"]["pending"] == 0 \
                        and st["down"]["received"] == len(at_server):
                    pump()
                    break
                time.sleep(0.02)
            st = relay.stats()
    finally:
        server.close()
        client.close()
    loss_up_pct = 100.0 * (n - len(at_server)) / n
    loss_down_pct = 100.0 * (len(at_server) - len(at_client)) / len(at_server)
    assert abs(loss_up_pct - 2.0) <= 0.8, loss_up_pct
    assert abs(loss_down_pct - 2.0) <= 0.8, loss_down_pct
    up, down = st["up"], st["down"]
    assert up["received"] == n
    assert up["forwarded"] == len(at_server) and up["dropped"] == n - len(at_server)
    assert down["received"] == len(at_server)
    assert down["forwarded"] == len(at_client) and down["dropped"] == len(at_server) - len(at_client)
    assert at_client <= at_server  # nothing comes back that did not go out


def test_duplication_and_reordering_are_counted_and_seen():
    n = 1000
    sink = _sink()
    try:
        with impairment_relay(sink.getsockname(),
                              up=Impairment(dup_pct=5, reorder_pct=5, reorder_gap_ms=20),
                              seed=11, max_seconds=60) as relay:
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            _paced_send(client, relay.address, n, 0.001)
            st = relay.wait_idle()["up"]
            client.close()
        delays, order = _drain_oneway(sink)
    finally:
        sink.close()
    dups = len(order) - len(set(order))
    # a packet held back 20 ms at a 1 ms interval arrives after a higher sequence number
    late, highest = 0, -1
    for seq in dict.fromkeys(order):  # first copy of each, in arrival order
        if seq < highest:
            late += 1
        highest = max(highest, seq)
    assert len(set(order)) == n
    assert dups == st["duplicated"] > 20          # ~5 % of 1000
    assert late == st["reordered"] > 20
    assert len(order) == st["sent"] == st["forwarded"] + st["duplicated"]


@pytest.mark.parametrize("family,preserve,expected", [
    (socket.AF_INET, True, 0xB8), (socket.AF_INET, False, 0x00),
    (socket.AF_INET6, True, 0xB8), (socket.AF_INET6, False, 0x00)])
def test_tos_byte_is_preserved(family, preserve, expected):
    # DSCP EF (46 << 2 = 0xB8) in the IPv4 TOS byte / IPv6 traffic class
    if family == socket.AF_INET:
        host, level, recv_opt, send_opt = "127.0.0.1", socket.IPPROTO_IP, socket.IP_RECVTOS, socket.IP_TOS
    else:
        host, level, recv_opt, send_opt = "::1", socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, socket.IPV6_TCLASS
    sink = socket.socket(family, socket.SOCK_DGRAM)
    sink.bind((host, 0))
    sink.setsockopt(level, recv_opt, 1)
    sink.settimeout(3)
    try:
        with impairment_relay(sink.getsockname()[:2], preserve_tos=preserve, max_seconds=30) as relay:
            c = socket.socket(family, socket.SOCK_DGRAM)
            c.setsockopt(level, send_opt, 0xB8)
            c.sendto(b"ef", relay.address)
            _data, anc, _f, _a = sink.recvmsg(64, 64)
            c.close()
    finally:
        sink.close()
    tos = [int.from_bytes(d, sys.byteorder) if len(d) == 4 else d[0] for _l, t, d in anc if t == send_opt]
    assert tos == [expected]


def test_relay_is_bounded_in_time_and_rejects_bad_config():
    with impairment_relay(("127.0.0.1", 9), max_seconds=0.5) as relay:
        relay.proc.wait(timeout=5)  # exits by itself
        assert relay.proc.returncode == 0
    with pytest.raises(ValueError, match="delay_ms"):
        with impairment_relay(("127.0.0.1", 9), up=Impairment(delay_ms=-5)):
            pass
    with impairment_relay(("127.0.0.1", 9), max_seconds=10) as relay:
        with pytest.raises(ValueError, match="loss_pct"):
            relay.configure(up=Impairment(loss_pct=-1))
        relay.configure(up=Impairment(delay_ms=5))
        assert relay.stats()["config"]["up"]["delay_ms"] == 5.0


def test_many_client_flows_each_keep_their_own_upstream_socket():
    # More flows than select()'s FD_SETSIZE (1024): the relay watches its sockets with
    # epoll (its fd inside the precise select), so every flow is relayed and answered.
    import resource

    flows = 1500
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < flows + 200:
        pytest.skip(f"open-files hard limit {hard} < {flows + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, flows + 200), hard))
    clients = []
    try:
        with udp_echo(max_seconds=60) as echo:
            with impairment_relay(echo, max_seconds=60) as relay:
                for i in range(flows):
                    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    c.setblocking(False)
                    clients.append(c)
                    c.sendto(PKT.pack(i, 0.0), relay.address)
                    if i % 100 == 99:
                        time.sleep(0.01)   # keep within the echo's receive buffer
                answered = set()
                deadline = time.monotonic() + 10
                while len(answered) < flows and time.monotonic() < deadline:
                    for i, c in enumerate(clients):
                        if i in answered:
                            continue
                        try:
                            data = c.recv(64)
                        except BlockingIOError:
                            continue
                        assert PKT.unpack_from(data)[0] == i   # each reply reaches its own flow
                        answered.add(i)
                    time.sleep(0.01)
                st = relay.stats()
    finally:
        for c in clients:
            c.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert st["clients"] == flows and st["rejected_clients"] == 0
    assert len(answered) == flows
