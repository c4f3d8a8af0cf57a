"""The STAMP reflector (probes/reflector/__init__.py) and `cutover reflector`, on loopback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from probes.wire import stamp
from probes.reflector import StampReflector
from probes.wire.stamp import SenderPacket, decode_reflector, encode_sender

KEY = b"reflector-test-key"


@pytest.fixture
def reflector():
    started = []

    def make(listen="127.0.0.1:0", key=None, **kw):
        logs: list[str] = []
        r = StampReflector(listen, key, on_session_end=logs.append, **kw).start()
        r.logs = logs
        started.append(r)
        return r

    yield make
    for r in started:
        r.stop()


def client(family=socket.AF_INET, tos=None):
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    if tos is not None:
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)
    return s


def packet(seq, ssid=1, key=None, size=172, dscp=46):
    tlvs = stamp.sender_tlvs(size, authenticated=key is not None, dscp=dscp)
    return encode_sender(SenderPacket(seq, stamp.ntp_from_ns(time.time_ns()), ssid=ssid, tlvs=tlvs), key)


def exchange(sock, addr, data, key=None):
    sock.sendto(data, addr)
    reply = sock.recv(4096)
    return reply, decode_reflector(reply, key)


def no_reply(sock, timeout=0.3) -> bool:
    sock.settimeout(timeout)
    try:
        sock.recv(4096)
        return False
    except socket.timeout:
        return True


def test_stateful_numbering_per_session_shows_upstream_gaps(reflector):
    r = reflector()
    a, b = client(), client()
    # session (a, ssid 1) sends seq 1, 2, 5 (3 and 4 "lost upstream"); session (b, ssid 1) is separate
    seen = [exchange(a, r.address, packet(s))[1] for s in (1, 2, 5)]
    assert [p.seq for p in seen] == [0, 1, 2]
    assert [p.sender_seq for p in seen] == [1, 2, 5]
    assert exchange(b, r.address, packet(9))[1].seq == 0
    assert exchange(a, r.address, packet(6, ssid=2))[1].seq == 0     # new SSID: new session
    assert r.stats.sessions_started == 3


@pytest.mark.parametrize("key", [None, KEY])
@pytest.mark.parametrize("size", [44, 100, 172, 1400])
def test_reply_is_exactly_as_long_as_the_request(reflector, key, size):
    r = reflector(key=key)
    s = client()
    req = packet(1, key=key, size=max(size, 140 if key else 44), dscp=None)
    reply, _ = exchange(s, r.address, req, key)
    assert len(reply) == len(req)


def test_timestamps_and_dscp_reporting(reflector):
    r = reflector()
    s = client(tos=46 << 2)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_RECVTOS, 1)
    before = time.time_ns()
    s.sendto(packet(1, dscp=34), r.address)          # marked EF, asks for AF41 (34) on the reply
    data, anc, _f, _a = s.recvmsg(4096, 64)
    after = time.time_ns()
    rp = decode_reflector(data)
    assert stamp.ntp_from_ns(before) <= rp.receive_timestamp <= rp.timestamp <= stamp.ntp_from_ns(after)
    dscp1, dscp2, _ecn, _rp = stamp.parse_cos(rp.tlvs[0].value)
    assert (dscp1, dscp2) == (34, 46)                # the reflector saw EF
    tos = [d[0] for lvl, typ, d in anc if lvl == socket.IPPROTO_IP and typ == socket.IP_TOS]
    assert tos == [34 << 2]                          # and marked its reply as asked
    assert rp.sender_ttl == 64                       # Linux default TTL, read from the request


def test_keyed_reflector_answers_only_the_right_key(reflector):
    r = reflector(key=KEY)
    s = client()
    s.sendto(packet(1), r.address)                   # unauthenticated
    assert no_reply(s)
    s.sendto(packet(1, key=b"wrong key"), r.address)
    assert no_reply(s)
    s.settimeout(1.0)
    _, rp = exchange(s, r.address, packet(1, key=KEY), KEY)   # verifies the reply's HMACs too
    assert rp.sender_seq == 1
    assert r.stats.auth_failed == 2 and r.stats.reflected == 1


def test_malformed_packets_are_counted_and_it_keeps_answering(reflector):
    r = reflector()
    s = client()
    for junk in (b"", b"x", bytes(20), bytes(43)):
        s.sendto(junk, r.address)
    assert no_reply(s)
    s.settimeout(1.0)
    assert exchange(s, r.address, packet(1))[1].sender_seq == 1
    assert r.stats.malformed == 4


def test_per_source_rate_limit(reflector):
    r = reflector(max_pps_per_source=50)             # 5 per 100 ms window
    s = client()
    for i in range(40):
        s.sendto(packet(i + 1), r.address)
    got = 0
    while not no_reply(s, 0.3):
        got += 1
    assert 5 <= got < 40
    assert r.stats.rate_limited == 40 - got


def test_session_table_is_bounded_and_sessions_end_with_a_summary(reflector):
    r = reflector(max_sessions=3, session_idle_s=0.3)
    s = client()
    for seq in (1, 2, 3):                            # ssid 9: answered 3 times, established
        exchange(s, r.address, packet(seq, ssid=9))
    for ssid in range(1, 6):
        exchange(s, r.address, packet(1, ssid=ssid))
    assert r.stats.sessions_active <= 3
    # the newcomers took the places of the oldest sessions on probation, never ssid 9's
    evicted = [line for line in r.logs if "evicted" in line]
    assert len(evicted) == 3 and "ssid 1:" in evicted[0] and "ssid 3:" in evicted[2]
    assert r.stats.evicted == 3 and {x["ssid"] for x in r.sessions()} == {9, 4, 5}
    exchange(s, r.address, packet(2, ssid=5))
    time.sleep(0.8)                                  # idle expiry runs every 100 ms
    assert r.stats.sessions_active == 0
    last = [line for line in r.logs if "ssid 5:" in line]
    assert last and "2 packets" in last[0] and "idle" in last[0]


def test_per_source_session_cap(reflector):
    r = reflector(max_sessions_per_source=2)
    s = client()
    exchange(s, r.address, packet(1, ssid=1))
    exchange(s, r.address, packet(1, ssid=2))
    s.sendto(packet(1, ssid=3), r.address)
    assert no_reply(s)
    assert r.stats.session_limited == 1


def test_ipv6(reflector):
    try:
        r = reflector("[::1]:0")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    s = client(socket.AF_INET6)
    _, rp = exchange(s, r.address, packet(3))
    assert rp.sender_seq == 3 and rp.seq == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(junk=st.one_of(st.binary(max_size=600),
                      st.builds(lambda n: packet(1)[:n], st.integers(0, 172)),
                      st.builds(lambda pos, b: (lambda p: p[:pos] + bytes([b]) + p[pos + 1:])(packet(1)),
                                st.integers(0, 171), st.integers(0, 255))))
def test_fuzz_running_reflector(reflector_for_fuzz, junk):
    r, s = reflector_for_fuzz
    s.sendto(junk, r.address)
    s.settimeout(0.05)
    try:
        reply = s.recv(4096)
        assert len(reply) <= len(junk)
    except socket.timeout:
        pass
    # the reflector still answers a well-formed sender
    s.settimeout(1.0)
    good = packet(1, ssid=999)
    s.sendto(good, r.address)
    for _ in range(5):                               # skip a late reply to the junk
        reply = s.recv(4096)
        if len(reply) == len(good) and decode_reflector(reply).ssid == 999:
            break
    else:
        pytest.fail("no reply to a well-formed packet after junk")


@pytest.fixture(scope="module")
def reflector_for_fuzz():
    r = StampReflector("127.0.0.1:0").start()
    s = client()
    yield r, s
    r.stop()
    s.close()
    assert r.stats.received >= r.stats.reflected


# ---------------------------------------------------------------- the CLI

def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cli(*args):
    return subprocess.Popen([sys.executable, "-m", "harness", "reflector", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_answering(addr, proc, key=None, timeout_s=10.0):
    s = client()
    s.settimeout(0.2)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        s.sendto(packet(1, key=key), addr)
        try:
            return decode_reflector(s.recv(4096), key)
        except socket.timeout:
            continue
    raise AssertionError(f"reflector CLI not answering: {proc.poll()}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops_cleanly_on_signals(sig, tmp_path):
    port = _free_udp_port()
    keyf = tmp_path / "k"
    keyf.write_text(KEY.decode() + "\n")
    proc = _start_cli("--listen", f"127.0.0.1:{port}", "--no-tcp", "--key-file", str(keyf))
    try:
        rp = _wait_answering(("127.0.0.1", port), proc, key=KEY)
        assert rp.sender_seq == 1
        proc.send_signal(sig)
        out, errtext = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert "Traceback" not in errtext
    assert "authenticated" in errtext and "session 127.0.0.1:" in errtext and "stopped;" in errtext
    assert out == ""


def test_cli_bad_input_and_busy_port(tmp_path):
    from tests.conftest import run_cli

    r = run_cli("reflector", "--listen", "127.0.0.1:99999", timeout=20)
    assert r.returncode == 2 and "port" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("reflector", "--listen", "127.0.0.1:0", "--key-file", str(tmp_path / "nope"), timeout=20)
    assert r.returncode == 2 and "no such file" in r.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind(("127.0.0.1", 0))
        r = run_cli("reflector", "--listen", f"127.0.0.1:{busy.getsockname()[1]}", "--no-tcp", timeout=20)
    assert r.returncode == 3 and "in use" in r.stderr.lower() and "Traceback" not in r.stderr


def test_wildcard_ipv6_listener_serves_ipv4_too(reflector):
    try:
        r = reflector("[::]:0")
    except OSError as exc:
        pytest.skip(f"no IPv6: {exc}")
    s = client(tos=46 << 2)
    _, rp = exchange(s, ("127.0.0.1", r.address[1]), packet(4))      # v4-mapped on the v6 socket
    assert rp.sender_seq == 4 and stamp.parse_cos(rp.tlvs[0].value)[1] == 46
