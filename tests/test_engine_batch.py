"""The batched engine and reflector paths: kernel control-data layouts, UDP GSO
send batches, the one-datagram fallback, timer slack, per-source session reuse.

The fast paths read the kernel's ancillary data with one fixed struct per
layout instead of walking it; these tests take the layouts from real sockets
(including the one after the socket's first drop, when SO_RXQ_OVFL rides on
every datagram), so a kernel that orders them differently fails here, not
silently in a measurement.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from probes.engine import mmsg, sockopts
from probes.wire import stamp
from probes.engine.core import Engine, EngineConfig
from probes.reflector import StampReflector

pytestmark = pytest.mark.skipif(not mmsg.available() or mmsg.CMSG_V4_USUAL is None,
                                reason="recvmmsg / 64-bit cmsg layout not available")

TOS = 0xB8   # EF


def _pair(ttl: bool) -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    sockopts.enable_rx_meta(rx, ttl=ttl)
    rx.setblocking(False)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockopts.set_tos(tx, TOS)
    tx.connect(rx.getsockname())
    return rx, tx


def _drain(mm: mmsg.MmsgSocket) -> list[tuple[int, int]]:
    """(datagram length, control length) of everything queued."""
    got = []
    for _ in range(100):
        n = mm.recv()
        if not n:
            break
        lens, clens = mm.lengths()
        got.extend(zip(lens, clens))
    return got


def _force_drops(rx: socket.socket, tx: socket.socket) -> None:
    """Shrink the receive buffer and overrun it, so the socket's drop counter is > 0."""
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 0)       # the kernel's minimum, a few datagrams
    for _ in range(200):
        tx.send(bytes(172))
    assert sockopts.udp_drops(rx) > 0


@pytest.mark.parametrize("ttl", [True, False], ids=["reflector-layout", "engine-layout"])
def test_kernel_cmsg_layouts_before_and_after_the_first_drop(ttl):
    rx, tx = _pair(ttl)
    try:
        mm = mmsg.MmsgSocket(rx, slots=8, buf_b=2048)
        LT = mmsg.level_type
        lt_ts = LT(socket.SOL_SOCKET, sockopts.SO_TIMESTAMPNS)
        lt_ovfl = LT(socket.SOL_SOCKET, sockopts.SO_RXQ_OVFL)
        lt_ttl = LT(socket.IPPROTO_IP, socket.IP_TTL)
        lt_tos = LT(socket.IPPROTO_IP, socket.IP_TOS)
        before_s = time.time()
        tx.send(bytes(172))
        time.sleep(0.05)
        (n, clen), = _drain(mm)
        assert n == 172
        if ttl:
            assert clen == mmsg.CMSG_V4_USUAL_B
            _l1, lt1, sec, _ns, _l2, lt2, hops, _l3, lt3, tos = mmsg.CMSG_V4_USUAL.unpack_from(mm.ctrl, 0)
            assert (lt1, lt2, lt3) == (lt_ts, lt_ttl, lt_tos) and hops == 64
        else:
            assert clen == mmsg.CMSG_TS_TOS_B
            lt1, sec, _ns, lt2, tos = mmsg.CMSG_TS_TOS.unpack_from(mm.ctrl, 0)
            assert (lt1, lt2) == (lt_ts, lt_tos)
        assert tos == TOS and abs(sec - before_s) < 5
        # the same through the generic walk
        wsec, _wns, wtos, wovfl, wttl = mmsg.walk_cmsg(mm.ctrl, 0, clen)
        assert (wsec, wtos, wovfl) == (sec, TOS, -1)
        assert wttl == (64 if ttl else -1)

        _force_drops(rx, tx)
        _drain(mm)
        drops = sockopts.udp_drops(rx)
        tx.send(bytes(172))
        time.sleep(0.05)
        (n, clen), = _drain(mm)
        if ttl:
            assert clen == mmsg.CMSG_V4_USUAL_OVFL_B
            f = mmsg.CMSG_V4_USUAL_OVFL.unpack_from(mm.ctrl, 0)
            assert (f[1], f[5], f[8], f[11]) == (lt_ts, lt_ovfl, lt_ttl, lt_tos)
            assert f[6] == drops and f[9] == 64 and f[12] == TOS
        else:
            assert clen == mmsg.CMSG_TS_OVFL_TOS_B
            f = mmsg.CMSG_TS_OVFL_TOS.unpack_from(mm.ctrl, 0)
            assert (f[0], f[3], f[5]) == (lt_ts, lt_ovfl, lt_tos)
            assert f[4] == drops and f[6] == TOS
        assert mmsg.walk_cmsg(mm.ctrl, 0, clen)[2:4] == (TOS, drops)
    finally:
        rx.close()
        tx.close()


def test_encode_cmsg_writes_the_kernels_layout():
    """recvmsg's parsed list, written back by encode_cmsg, is byte-for-byte the
    layout recvmmsg hands over raw (timestamps aside: two datagrams)."""
    rx, tx = _pair(ttl=True)
    try:
        tx.send(b"a" * 100)
        time.sleep(0.05)
        _n, anc, _f, _a = rx.recvmsg_into([bytearray(2048)], 256)
        ctrl = bytearray(256)
        written = mmsg.encode_cmsg(ctrl, anc)
        mm = mmsg.MmsgSocket(rx, slots=4, buf_b=2048)
        tx.send(b"b" * 100)
        time.sleep(0.05)
        (_n2, clen), = _drain(mm)
        assert written == clen == mmsg.CMSG_V4_USUAL_B
        a = mmsg.CMSG_V4_USUAL.unpack_from(ctrl, 0)
        b = mmsg.CMSG_V4_USUAL.unpack_from(mm.ctrl, 0)
        same = (0, 1, 4, 5, 6, 7, 8, 9)          # all but sec/nsec
        assert [a[i] for i in same] == [b[i] for i in same]
        # a list that does not fit stops at the last whole item
        small = bytearray(40)
        assert mmsg.encode_cmsg(small, anc) == 32          # the 32-byte timestamp only
    finally:
        rx.close()
        tx.close()


def _sender_timestamps(calls: int, duration_s: float) -> tuple[list[int], dict]:
    """Run the engine at a plain UDP socket (no reflector) and return the send
    timestamp (T1) of every STAMP packet that arrived, in arrival order."""
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sockopts.grow_buffers(sink, 32 << 20)
    got: list[int] = []
    done = threading.Event()

    def read():
        sink.settimeout(0.2)
        buf = bytearray(2048)
        while True:
            try:
                n = sink.recv_into(buf)
            except socket.timeout:
                if done.is_set():
                    return
                continue
            if n >= 44:
                got.append(stamp.SENDER_HDR.unpack_from(buf, 0)[1])

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        eng = Engine(EngineConfig(target="127.0.0.1:%d" % sink.getsockname()[1], timeout_s=duration_s + 1))
        res = eng.run(calls=calls, duration_s=duration_s)
    finally:
        done.set()
        t.join(5)
        sink.close()
    assert res.packets["sent"] == calls * round(duration_s * 50)
    assert not res.measured and "no reply" in res.errors[0]
    return got, res.sender


def test_high_rates_leave_in_gso_batches_low_rates_one_by_one():
    """500 calls (25k packets/s, one due every 40 µs): sends go in batches that
    share one send time, so far fewer distinct T1 values than packets. One
    call (one packet per 20 ms): every packet has its own send time."""
    many, _ = _sender_timestamps(500, 0.4)
    assert len(many) >= 0.99 * 500 * 20
    distinct = len(set(many))
    # a batch is at least every due packet of 0.2 ms (5 here); 3 is the floor with wake-up slop
    assert distinct <= len(many) / 3, (distinct, len(many))
    one, sender = _sender_timestamps(1, 0.4)
    # Two packets of one call share a send time only when the first left a whole ptime
    # late (the second was due by then): a stalled machine may merge a pair, and the
    # engine counts every such send in late_sends; an idle one sends all 20 apart.
    assert len(one) == 20 and len(set(one)) >= 20 - sender["late_sends"], (len(set(one)), sender)


def test_one_datagram_fallback_measures_the_same(tmp_path):
    """batch=False: plain send/recvmsg_into, same loop, same results."""
    r = StampReflector("127.0.0.1:0").start()
    try:
        target = "%s:%d" % r.address
        for batch, mode in ((False, "per-packet"), (True, "gso")):
            res = Engine(EngineConfig(target=target, batch=batch)).run(calls=200, duration_s=0.5)
            assert res.measured and not res.errors, res.errors
            assert res.packets == {"sent": 5000, "reflected": 5000, "received": 5000}
            assert res.sender["send_mode"] == mode and res.sender["rx_timestamps"] == "kernel"
            assert res.direction_split is True and res.loss_pct["total"] == 0.0
            # the reflector saw EF (CoS TLV), and the replies came back EF (our per-datagram TOS)
            assert res.dscp["received"] == 46 and res.dscp["down_received"] == 46, res.dscp
    finally:
        r.stop()


def test_the_engine_restores_the_timer_slack():
    before = mmsg.set_timer_slack(50_000)
    if before is None:
        pytest.skip("prctl not available")
    try:
        r = StampReflector("127.0.0.1:0").start()
        try:
            Engine(EngineConfig(target="%s:%d" % r.address)).run(calls=5, duration_s=0.2)
        finally:
            r.stop()
        assert mmsg.set_timer_slack(50_000) == 50_000
    finally:
        mmsg.set_timer_slack(before)


def _exchange(s: socket.socket, addr: tuple, ssid: int, seq: int = 1) -> bool:
    s.sendto(stamp.encode_sender(stamp.SenderPacket(seq, stamp.ntp_from_ns(time.time_ns()), ssid=ssid)), addr)
    try:
        s.recvfrom(2048)
        return True
    except socket.timeout:
        return False


def test_per_source_cap_reuses_quiet_sessions_refuses_live_ones():
    """A capacity ramp opens thousands of sessions per step from one address.
    At the per-source cap, a new session ends that source's oldest one once it
    has been quiet for source_reuse_idle_s; while all are live, it is refused."""
    logs: list[str] = []
    r = StampReflector("127.0.0.1:0", max_sessions_per_source=2, source_reuse_idle_s=0.3,
                       on_session_end=logs.append).start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.3)
    try:
        assert _exchange(s, r.address, 1) and _exchange(s, r.address, 2)
        assert not _exchange(s, r.address, 3)                  # both live: refused
        assert r.stats.session_limited == 1
        time.sleep(0.5)                                        # both quiet now
        assert _exchange(s, r.address, 4)                      # ends ssid 1, the oldest
        assert r.stats.session_limited == 1
        assert any("ssid 1:" in line and "per-source cap" in line for line in logs), logs
        assert _exchange(s, r.address, 2, seq=2)               # ssid 2 survived: its count goes on
        assert {x["ssid"] for x in r.sessions()} == {2, 4}
    finally:
        s.close()
        r.stop()


def test_keyed_batches_carry_a_valid_hmac_per_datagram():
    """Authenticated mode at a rate that batches (500 calls): every datagram of a
    GSO batch gets its own HMAC (header and TLVs); the keyed reflector accepts all."""
    key = b"k" * 32
    r = StampReflector("127.0.0.1:0", key=key).start()
    try:
        res = Engine(EngineConfig(target="%s:%d" % r.address, key=key)).run(calls=500, duration_s=0.4)
        assert res.sender["send_mode"] == "gso"
        assert res.packets == {"sent": 10000, "reflected": 10000, "received": 10000}, res.errors
        # plus one tail-probe packet per session (the stateful reflector's count, see _tail_probe)
        assert r.stats.auth_failed == 0 and r.stats.received == 10000 + 500
        assert res.dscp["received"] == 46 and res.direction_split is True
    finally:
        r.stop()
