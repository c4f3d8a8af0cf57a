"""The reflector's TCP service under abuse (issue #16): slow clients that trickle their
request head (slowloris) or their HELLO, too many connections from one address, and
stopping on the first SIGTERM. Loopback only; slow clients come from other 127/8
source addresses so the per-source limit can tell them apart from the real client."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from probes import bwclient
from probes.reflector import bwservice as P
from probes.addr import HostPort
from tests.bwlab import ROOT, free_port


def _slowloris(port: int, sources: list[str], per_source: int, stop: threading.Event,
               sent_heads: list[int]) -> None:
    """``per_source`` connections from each source address, each sending a request head one
    byte a second (never finishing it); a connection the server closes is reopened. Bounded:
    at most 60 s and 2000 connections."""
    head = b"GET /speedtest/latency.txt HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    conns: list[tuple[socket.socket, int]] = []

    def connect(src: str) -> list[tuple[socket.socket, int]]:
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", port))
        except OSError:
            s.close()
            return []
        s.setblocking(False)
        sent_heads[0] += 1
        return [(s, 0)]

    end = time.monotonic() + 60
    for src in sources:
        for _ in range(per_source):
            conns += connect(src)
    try:
        while not stop.is_set() and time.monotonic() < end and sent_heads[0] < 2000:
            alive = []
            for s, i in conns:
                try:
                    s.send(head[i % len(head):i % len(head) + 1])
                    alive.append((s, i + 1))
                except OSError:                  # the server gave up on this one: come back
                    src = s.getsockname()[0]
                    s.close()
                    alive += connect(src)
            conns[:] = alive
            stop.wait(1.0)
    finally:
        for s, _ in conns:
            s.close()


@pytest.fixture
def slow_service():
    svc = P.BandwidthService("127.0.0.1", 0, head_timeout_s=2.0).start()
    yield svc
    svc.stop()


def test_slowloris_beyond_the_http_limit_does_not_stop_a_real_mini_test(slow_service):
    """40 slow connections (more than the 32 HTTP requests served at once) from four
    addresses trickle request heads; speedtest-cli's Mini download and upload and our own
    bandwidth client still complete against the same port."""
    import probes.reflector.speedtest_backend as SB
    svc = slow_service
    stop = threading.Event()
    opened = [0]
    sources = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    t = threading.Thread(target=_slowloris, args=(svc.port, sources, 10, stop, opened), daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 10
        while svc._conns < 40 and time.monotonic() < deadline:   # all 40 are in before we start
            time.sleep(0.05)
        assert svc._conns >= 40 > svc.max_http
        out = SB.run_speedtest(mini_url=f"http://127.0.0.1:{svc.port}/", server_id=None, duration_s=1.0,
                               omit_s=0.2, threads=2, direction="both", source=None, timeout_s=5,
                               stop=threading.Event(), on_phase=lambda *a: None)
        assert not out.errors, out.errors
        assert out.down_mbps and out.up_mbps and out.ping_ms is not None
        print(f"beside 40 slow connections: Mini down {out.down_mbps:.0f} Mbit/s, "
              f"up {out.up_mbps:.0f} Mbit/s, ping {out.ping_ms:.1f} ms")
        bw = bwclient.transfer(HostPort("127.0.0.1", svc.port), "down", 2, 0.5)
        assert not bw.errors and all(s.samples[-1][1] > 0 for s in bw.streams)
        deadline = time.monotonic() + 15       # let the slow ones reach their 2 s deadline
        while svc.stats["dropped_slow"] < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        t.join(timeout=10)
    # the slow ones were dropped at their deadline, not kept alive byte by byte
    assert svc.stats["dropped_slow"] >= 40


def test_trickled_hello_is_dropped_at_the_handshake_deadline(slow_service):
    """The bandwidth protocol's HELLO one byte every 0.25 s (48 bytes: 12 s) is cut off at
    the 2 s deadline, not kept alive by every byte restarting a per-recv timeout."""
    hello = P.Hello(P.DOWN, 0, 1, 1000, os.urandom(16)).pack()
    sent = 0
    with socket.create_connection(("127.0.0.1", slow_service.port), timeout=5) as s:
        try:
            for i in range(len(hello)):
                s.sendall(hello[i:i + 1])
                sent += 1
                time.sleep(0.25)
            reply = s.recv(100)
        except (BrokenPipeError, ConnectionResetError):
            reply = b""
    assert reply == b"" and sent < len(hello)
    assert slow_service.stats["dropped_slow"] == 1


def test_per_source_connection_limit():
    """One address gets at most max_per_source connections at once; others are unaffected."""
    svc = P.BandwidthService("127.0.0.1", 0, max_per_source=4, head_timeout_s=30).start()
    socks = []
    try:
        for _ in range(6):
            s = socket.socket()
            s.bind(("127.0.0.7", 0))
            s.connect(("127.0.0.1", svc.port))
            socks.append(s)
        closed = 0
        for s in socks:
            s.settimeout(1)
            try:
                closed += s.recv(1) == b""
            except socket.timeout:
                pass                      # held open: one of the four admitted
            except ConnectionResetError:
                closed += 1
        assert closed == 2 and svc.stats["refused_source"] == 2
        out = bwclient.transfer(HostPort("127.0.0.1", svc.port), "up", 1, 0.3)   # another address
        assert not out.errors
    finally:
        for s in socks:
            s.close()
        svc.stop()


def test_http_through_h11_head_limits_and_errors():
    """h11 parses: an oversized head is 431, a malformed request line 400, HEAD has no body."""
    import http.client
    svc = P.BandwidthService("127.0.0.1", 0).start()
    try:
        with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 431 ")
        with socket.create_connection(("127.0.0.1", svc.port), timeout=5) as s:
            s.sendall(b"GET  /\x00 HTTP/1.1\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400 ")
        c = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
        c.request("HEAD", "/speedtest/random500x500.jpg")
        r = c.getresponse()
        assert r.status == 200 and int(r.getheader("Content-Length")) == 505544 and r.read() == b""
        c.close()
    finally:
        svc.stop()


def test_reflector_stops_on_the_first_sigterm_with_clients_connected():
    """`cutover reflector` with a download running and slow clients connected ends on one
    SIGTERM (no second signal), printing its summary."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "reflector", "--listen", f"127.0.0.1:{port}"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    slow = []
    try:
        from tests.bwlab import wait_port
        wait_port("127.0.0.1", port)
        for _ in range(5):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\n")
            slow.append(s)
        result = {}
        t = threading.Thread(target=lambda: result.setdefault(
            "out", bwclient.transfer(HostPort("127.0.0.1", port), "down", 1, 20.0)), daemon=True)
        t.start()
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        took = time.monotonic() - t0
        err = proc.stderr.read()
        print(f"reflector stopped {took:.2f} s after SIGTERM")
        assert proc.returncode == 0 and "stopped" in err
        t.join(timeout=10)
        assert result["out"].streams[0].samples[-1][1] > 0     # the download had run
    finally:
        for s in slow:
            s.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_client_handshake_has_a_deadline_against_a_trickling_far_end():
    """Our client against a far end that answers one byte every 0.2 s (a 28-byte REPLY
    would take 5.6 s): the handshake ends at its 1 s deadline, not at the last byte."""
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    sent = [0]

    def trickle():
        conn, _ = srv.accept()
        with conn:
            conn.recv(P.HELLO_LEN)
            reply = P.Reply(P.STATUS_OK, 1000).pack()
            for i in range(len(reply)):
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(reply[i:i + 1])
                except OSError:
                    return
                sent[0] += 1

    t = threading.Thread(target=trickle, daemon=True)
    t.start()
    try:
        with socket.create_connection(srv.getsockname(), timeout=5) as s:
            with pytest.raises(socket.timeout, match="deadline"):
                bwclient.handshake(s, P.Hello(P.DOWN, 0, 1, 1000, b"T" * 16), None, timeout_s=1.0)
        assert 0 < sent[0] < P.REPLY_LEN
    finally:
        stop.set()
        t.join(timeout=5)
        srv.close()


def test_full_table_evicts_the_oldest_opening_not_the_new_client():
    """All max_conns places taken by clients that never finish their opening: a new
    client pushes out the oldest of them and is served; the others stay."""
    import http.client
    svc = P.BandwidthService("127.0.0.1", 0, max_conns=6, head_timeout_s=30).start()
    slow = []
    try:
        for _ in range(6):
            s = socket.create_connection(("127.0.0.1", svc.port), timeout=5)
            s.sendall(b"GET / HTTP/1.1\r\n")
            slow.append(s)
        deadline = time.monotonic() + 5
        while svc._conns < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        c = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
        c.request("GET", "/speedtest/latency.txt")
        r = c.getresponse()
        assert (r.status, r.read()) == (200, b"test=test\n")
        c.close()
        assert svc.stats["evicted_opening"] == 1
        slow[0].settimeout(5)
        assert slow[0].recv(10) == b""                 # the oldest was closed
        for s in slow[1:]:
            s.settimeout(0.2)
            with pytest.raises(socket.timeout):        # the younger ones are still waiting
                s.recv(10)
    finally:
        for s in slow:
            s.close()
        svc.stop()


def test_source_key_counts_an_ipv6_64_as_one_source():
    assert P.source_key("2001:db8:1:2:aaaa::1") == P.source_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert P.source_key("2001:db8:1:3::1") != P.source_key("2001:db8:1:2::1")
    assert P.source_key("::ffff:192.0.2.7") == P.source_key("192.0.2.7") == "192.0.2.7"


def test_upload_with_expect_100_continue_by_curl():
    """curl sends `Expect: 100-continue` before a body over 1 MiB and waits for the 100;
    h11 tells us, we answer 100, and the upload is counted (size=N)."""
    import shutil
    if shutil.which("curl") is None:
        pytest.skip("curl not installed")
    svc = P.BandwidthService("127.0.0.1", 0).start()
    try:
        body = os.urandom(3 * 1024 * 1024)
        # curl waits up to 15 s for the 100 and gives up at 10 s: only the 100 lets it finish
        cp = subprocess.run(["curl", "-sS", "--max-time", "10", "-H", "Expect: 100-continue",
                             "--expect100-timeout", "15", "--data-binary", "@-",
                             f"http://127.0.0.1:{svc.port}/speedtest/upload.php"],
                            input=body, capture_output=True, timeout=30)
        assert cp.returncode == 0, cp.stderr
        assert cp.stdout == b"size=%d" % len(body)
    finally:
        svc.stop()


def test_slow_reader_of_a_download_is_cut_at_the_deadline():
    """A client that asks for the 31 MB file and reads 4 KiB every 0.1 s (it would take
    over 10 minutes) is given up on at max_duration_s + head_timeout_s (here 1 + 1 s): the
    server stops sending having handed over only what the socket buffers took."""
    svc = P.BandwidthService("127.0.0.1", 0, max_duration_s=1.0, head_timeout_s=1.0).start()
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect(("127.0.0.1", svc.port))
        s.settimeout(10)
        s.sendall(b"GET /speedtest/random4000x4000.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        got = 0
        for _ in range(300):                   # bounded: 30 s at most
            got += len(s.recv(4096))
            if svc.stats["http_sent_b"]:       # counted when the server stops sending
                break
            time.sleep(0.1)
        size = P.MINI_SIZES_B[4000]
        assert 0 < got and 0 < svc.stats["http_sent_b"] < size // 2
    finally:
        s.close()
        svc.stop()
