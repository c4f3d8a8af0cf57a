"""The reflector's one loop on its two receive paths (recvmmsg + UDP GSO, and
recvmsg_into through mmsg.OneByOne; probes/engine/mmsg.py): a burst queued before the
reflector starts, so recvmmsg really returns many datagrams at once, must be
answered exactly as the one-by-one path answers it: per-datagram kernel timestamps, received TOS, requested
reply marking, per-session numbering, replies never longer than requests,
malformed datagrams dropped and counted."""

from __future__ import annotations

import socket
import time

import pytest

from probes.engine import mmsg
from probes.wire import stamp
from probes.engine.analysis import sender_health
from probes.reflector import StampReflector
from probes.wire.stamp import SenderPacket, decode_reflector, encode_sender

# four senders, each marked with its own DSCP and asking for another one on the reply
SENDERS = [(0, 46), (10, 34), (46, 0), (34, 10)]      # (DSCP we mark, DSCP1 we ask for)
PER_SENDER = 50                                       # 200 good datagrams in all
JUNK = [b"\x00" * 10, b"\xff" * 27, b"\x01" * 30]     # shorter than any STAMP packet: malformed


def _clients(family):
    host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    socks = []
    for mark, _ask in SENDERS:
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((host, 0))
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_TCLASS, mark << 2)
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, 1)
        else:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, mark << 2)
            s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        s.settimeout(2.0)
        socks.append(s)
    return socks


def _burst(batch: bool, family: int):
    listen = "[::1]:0" if family == socket.AF_INET6 else "127.0.0.1:0"
    r = StampReflector(listen, None, batch=batch)
    r.bind()                                   # bound but not serving: the burst queues up
    clients = _clients(family)
    sent = {}                                  # (client, seq) -> (before ns, after ns, size)
    try:
        # runs of 10 per sender (replies to one peer can leave as one GSO send), senders
        # alternating between runs (the reply marking changes within a batch)
        order = [(c, seq) for run in range(PER_SENDER // 10) for c in range(len(SENDERS))
                 for seq in range(run * 10, run * 10 + 10)]
        for c, seq in order:
            s, (_mark, ask) = clients[c], SENDERS[c]
            size = 172 if seq % 5 else 300                # mixed sizes: GSO groups must split
            tlvs = stamp.sender_tlvs(size, authenticated=False, dscp=ask)
            pkt = encode_sender(SenderPacket(seq, 0, ssid=7, tlvs=tlvs))
            before = time.time_ns()
            s.sendto(pkt, r.address[:2])
            sent[(c, seq)] = (before, time.time_ns(), len(pkt))
            if c == 0 and seq % 20 == 0:
                clients[0].sendto(JUNK[seq // 20], r.address[:2])
        r.start()
        replies = []
        for c, s in enumerate(clients):
            for _ in range(PER_SENDER):
                data, anc, _f, _a = s.recvmsg(4096, 64)
                got = time.time_ns()
                tos = [d[0] for lvl, typ, d in anc if typ in (socket.IP_TOS, 67)]
                replies.append((c, data, tos, got))
        stats = r.stats
        used_batch = isinstance(r._mm, mmsg.MmsgSocket)
        gso_sends = r.gso_sends
    finally:
        r.stop()
        for s in clients:
            s.close()
    return sent, replies, stats, used_batch, gso_sends


@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
@pytest.mark.parametrize("batch", [True, False])
def test_burst_answered_per_datagram(batch, family):
    if batch and not mmsg.available():
        pytest.skip("recvmmsg not available on this system")
    sent, replies, stats, used_batch, gso_sends = _burst(batch, family)
    assert used_batch == batch
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        gso = batch and mmsg.gso_supported(probe)
    if gso:
        assert gso_sends > 0            # some replies left several to a send, yet arrived one by one
    assert len(replies) == len(SENDERS) * PER_SENDER
    seqs = {c: [] for c in range(len(SENDERS))}
    rx_times: dict[int, list] = {}
    for c, data, tos, got in replies:
        rp = decode_reflector(data)
        before, _after, size = sent[(c, rp.sender_seq)]
        assert len(data) == size                               # never longer (nor shorter) than the request
        # this datagram's own kernel receive time: not before our sendto started, and before we
        # got the reply (loopback usually delivers inside sendto, but under load the kernel
        # defers delivery to ksoftirqd, so sendto's end is no bound); transmit time after it
        assert stamp.ntp_from_ns(before) - 5 <= rp.receive_timestamp <= stamp.ntp_from_ns(got) + 5
        assert rp.receive_timestamp <= rp.timestamp <= stamp.ntp_from_ns(got) + 5
        rx_times.setdefault(c, []).append((rp.sender_seq, rp.receive_timestamp))
        dscp1, dscp2, _ecn, _rp = stamp.parse_cos(rp.tlvs[0].value)
        mark, ask = SENDERS[c]
        assert (dscp1, dscp2) == (ask, mark)                   # the TOS this datagram arrived with
        assert tos == [ask << 2]                               # the reply marked as its sender asked
        assert rp.sender_ttl == 64
        seqs[c].append((rp.sender_seq, rp.seq))
    for pairs in seqs.values():
        # each sender is its own session, numbered 0, 1, 2, ... in arrival order
        assert sorted(pairs) == [(k, k) for k in range(PER_SENDER)]
    # per-datagram, not per-batch, timestamps: a batch read of up to 64 datagrams stamped
    # once would repeat values; kernel stamps (ns) are distinct and follow each sender's order
    all_rx = [t for times in rx_times.values() for _, t in times]
    assert len(set(all_rx)) == len(all_rx)
    for times in rx_times.values():
        in_send_order = [t for _, t in sorted(times)]
        assert in_send_order == sorted(in_send_order)
    assert stats.malformed == len(JUNK)
    assert stats.received == len(SENDERS) * PER_SENDER + len(JUNK)
    assert stats.reflected == len(SENDERS) * PER_SENDER
    assert stats.sessions_started == len(SENDERS)


def test_sockaddr_tuple_matches_the_socket_module():
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_DGRAM) as a, socket.socket(family, socket.SOCK_DGRAM) as b:
            a.bind((host, 0))
            b.bind((host, 0))
            b.sendto(b"x", a.getsockname())
            a.settimeout(1.0)
            if not mmsg.available():
                pytest.skip("recvmmsg not available on this system")
            a.setblocking(False)
            mm = mmsg.MmsgSocket(a, slots=4)
            for _ in range(100):
                if mm.recv():
                    break
                time.sleep(0.01)
            assert mmsg.sockaddr_tuple(mm.name(0)) == b.getsockname()
            assert mm.length(0) == 1
            # and back: what OneByOne writes is byte for byte what the kernel wrote
            assert mmsg.sockaddr_raw(b.getsockname(), family) == mm.name(0)


def test_sender_health_counts_sends_later_than_one_ptime():
    # 1000 sends, 3 later than 20 ms: counted as a number, and the reason text unchanged
    h = sender_health([0.01] * 995 + [2.0, 19.9, 20.5, 25.0, 40.0], 0, 20)
    assert h["late_sends"] == 3
    assert h["reason"] == "3 sends more than one ptime (20 ms) late"
    assert sender_health([0.01] * 10, 0, 20)["late_sends"] == 0
    assert "late_sends" not in sender_health([], 0, 20)      # nothing sent: nothing counted
