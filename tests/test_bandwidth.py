"""Bandwidth: pure parts (framing, throughput accounting, grading, comparison) and
the TCP service / Mini endpoint on loopback. No root needed; a few seconds."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from harness.bwcompare import compare, compare_direction
from probes import bwclient
from probes.reflector import bwservice as P
from probes import loadlatency as LL
from probes.addr import HostPort
from probes.bandwidth import BandwidthConfig, summarise_latency
from probes.result import ProbeError
from probes.reflector.speedtest_backend import offline_config
from tests.bwlab import ROOT, free_port, start_reflector

# ---------------------------------------------------------------- framing


def test_hello_round_trip_and_layout():
    h = P.Hello(P.UP, 2, 4, 3500, b"T" * 16, "cubic")
    raw = h.pack()
    assert len(raw) == 48 == P.HELLO_LEN
    assert raw[:4] == b"CUTB" and raw[4] == 1 and raw[5] == P.UP and raw[6] == 2 and raw[7] == 4
    assert int.from_bytes(raw[8:12], "big") == 3500
    assert raw[28:33] == b"cubic" and raw[33:44] == b"\0" * 11
    assert P.Hello.unpack(raw) == h


@pytest.mark.parametrize("mutate, why", [
    (lambda b: b"XXXX" + b[4:], "magic"),
    (lambda b: b[:5] + b"\x07" + b[6:], "direction"),
    (lambda b: b[:6] + b"\x04\x04" + b[8:], "index"),
    (lambda b: b[:47], "bytes"),
])
def test_hello_rejects_malformed(mutate, why):
    raw = P.Hello(P.DOWN, 0, 1, 1000, os.urandom(16)).pack()
    with pytest.raises(P.ProtocolError, match=why):
        P.Hello.unpack(mutate(raw))


def test_reply_and_reports():
    r = P.Reply(P.STATUS_AUTH_REQUIRED, 1234, b"N" * 16, P.FLAG_CC_APPLIED)
    assert len(r.pack()) == 28 and P.Reply.unpack(r.pack()) == r
    buf = P.pack_report(10, 20) + P.pack_report(30, 40) + b"\x00\x01"
    recs, rest = P.unpack_reports(buf)
    assert recs == [(10, 20), (30, 40)] and rest == b"\x00\x01"


def test_auth_mac_is_hmac_sha256_over_label_nonce_hello():
    import hashlib
    import hmac
    mac = P.auth_mac(b"k", b"n" * 16, b"h")
    assert mac == hmac.new(b"k", b"cutover-bw1" + b"n" * 16 + b"h", hashlib.sha256).digest()


# ---------------------------------------------------------------- accounting


def test_window_mbps_hand_calculation():
    s1 = [(0.0, 0), (1.0, 1_000_000), (2.0, 2_000_000), (3.0, 3_000_000)]
    s2 = [(0.5, 0), (1.5, 500_000), (3.5, 1_500_000)]
    # window 0.5 .. 3.0 s; s1 gives 2.5e6 B, s2 interpolates 1.25e6 B at 3.0 s
    mbps, window, nbytes = bwclient.window_mbps([s1, s2], omit_s=0.5)
    assert window == pytest.approx(2.5)
    assert nbytes == 3_750_000
    assert mbps == pytest.approx(3.75e6 * 8 / 2.5 / 1e6)  # 12.0


def test_window_mbps_empty_and_too_short():
    assert bwclient.window_mbps([], 1.0)[0] is None
    assert bwclient.window_mbps([[(0.0, 0), (0.5, 100)]], omit_s=1.0)[0] is None


def test_interp_clamps():
    s = [(1.0, 10), (2.0, 30)]
    assert bwclient.interp_bytes(s, 0.0) == 10
    assert bwclient.interp_bytes(s, 1.5) == 20
    assert bwclient.interp_bytes(s, 9.0) == 30


# ---------------------------------------------------------------- grading


@pytest.mark.parametrize("rise, letter", [(0, "A+"), (4.9, "A+"), (5, "A"), (29.9, "A"), (30, "B"),
                                          (59.9, "B"), (60, "C"), (199, "C"), (200, "D"), (399, "D"),
                                          (400, "F"), (1200, "F"), (None, None)])
def test_grade_scale(rise, letter):
    assert LL.grade(rise) == letter


def test_grade_sentence_names_the_worse_direction():
    s = LL.grade_sentence(20.0, 60.0, 260.0)
    assert "~240 ms" in s and "uploads" in s and "grade D" in s and "G.114" in s
    s = LL.grade_sentence(20.0, 22.0, 21.0)
    assert "grade A+" in s and "barely" in s
    assert LL.grade_sentence(None, 5.0, 5.0) == "latency under load was not measured"


def test_summarise_latency_from_samples():
    ph = {"idle": LL.PhaseStats(5, [10, 11, 12, 13, 14]),
          "down": LL.PhaseStats(4, [40, 50, 60]),
          "up": LL.PhaseStats(3, [300, 310, 320])}
    lat, bloat = summarise_latency(ph)
    assert lat["idle_p50"] == 12 and lat["down_load_p50"] == 50 and lat["up_load_p50"] == 310
    assert lat["increase_p50"] == 298 and lat["down_increase_p50"] == 38
    assert lat["phases"]["down"]["loss_pct"] == 25.0
    assert bloat["grade"] == "D"


def test_percentile_matches_numpy_linear():
    assert LL.percentile([1, 2, 3, 4], 50) == 2.5
    assert LL.percentile([1, 2, 3, 4, 5], 95) == pytest.approx(4.8)
    assert LL.percentile([], 50) is None


# ---------------------------------------------------------------- comparison with the profile


def _profile(tmp_path):
    from harness.profile import load_profile
    f = tmp_path / "site.yaml"
    f.write_text("site: T\nplanned:\n  calls: 60\n  codec: g711\n  headroom_pct: 20\n"
                 "circuits:\n  - name: new\n    role: new\n    down_mbps: 100\n    up_mbps: 50\n")
    return load_profile(str(f))


def test_compare_percent_of_contract_and_calls(tmp_path):
    out = compare({"down_mbps": 93.0, "up_mbps": 36.0}, _profile(tmp_path), "new")
    up = out["directions"]["up"]
    assert up["pct_of_contract"] == pytest.approx(72.0)
    assert "72 % of the 50 Mbit/s promised upstream" in up["text"]
    # 60 x 87.2 kbit/s x 1.2 headroom = 6.2784 Mbit/s; 36/1.2 = 30 Mbit/s / 0.0872 = 344 calls
    assert up["required_mbps"] == pytest.approx(6.2784)
    assert up["covers_required"] is True and up["calls_supported"] == 344


def test_compare_below_requirement():
    c = compare_direction("up", 5.0, 50, 6.2784, 87.2, 0.0, 20, 60, "g711")
    assert c.covers_required is False and "is below the 6.3 Mbit/s needed for 60 G711 calls" in c.text
    assert c.calls_supported == 47   # 5/1.2 = 4.1667 Mbit/s / 0.0872 = 47.8


def test_config_validation():
    with pytest.raises(ProbeError, match="^streams 0: expected 1 to 16"):
        BandwidthConfig(target="127.0.0.1:1", streams=0).validate()
    with pytest.raises(ProbeError, match="^direction "):
        BandwidthConfig(target="127.0.0.1:1", direction="sideways").validate()
    with pytest.raises(ValueError):
        BandwidthConfig(target="1.2.3.4:99999").validate()
    with pytest.raises(ProbeError, match="URL"):
        BandwidthConfig(backend="mini", mini_url="ftp://x").validate()


def test_offline_config_is_speedtest_nets_usual():
    c = offline_config(4, 6)
    assert c["sizes"]["upload"] == [524288, 1048576, 7340032]
    assert c["counts"] == {"upload": 17, "download": 4} and c["upload_max"] == 51
    # downloads use twice the threads, as speedtest-cli does (threadcount x 2)
    assert c["threads"] == {"upload": 6, "download": 12} and c["length"]["download"] == 4


# ---------------------------------------------------------------- the service on loopback


@pytest.fixture
def service():
    svc = P.BandwidthService("127.0.0.1", 0).start()
    yield svc
    svc.stop()


def test_upload_receiver_count_equals_bytes_sent(service):
    out = bwclient.transfer(HostPort("127.0.0.1", service.port), "up", 2, 0.6)
    assert not out.errors
    for s in out.streams:
        # after the half-close the server has read everything: its last report = our send count
        assert s.samples[-1][1] == s.sent_bytes > 0
    assert service.stats["bw_received_b"] == sum(s.sent_bytes for s in out.streams)


def test_download_client_count_equals_server_sent(service):
    out = bwclient.transfer(HostPort("127.0.0.1", service.port), "down", 3, 0.6)
    assert not out.errors
    time.sleep(0.2)
    assert sum(s.samples[-1][1] for s in out.streams) == service.stats["bw_sent_b"] > 0


def test_keyed_service_requires_the_key(tmp_path):
    svc = P.BandwidthService("127.0.0.1", 0, key=b"secret").start()
    try:
        hp = HostPort("127.0.0.1", svc.port)
        out = bwclient.transfer(hp, "down", 1, 0.3)
        assert "requires a key" in out.errors[0]
        out = bwclient.transfer(hp, "down", 1, 0.3, key=b"wrong")
        assert "authentication failed" in out.errors[0] and svc.stats["refused_auth"] == 1
        out = bwclient.transfer(hp, "down", 1, 0.3, key=b"secret")
        assert not out.errors and out.streams[0].samples[-1][1] > 0
        c = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=5)
        c.request("GET", "/speedtest/random4000x4000.jpg")
        r = c.getresponse()
        assert r.status == 403 and b"requires a key" in r.read()   # no keyless downloads
        c.close()
    finally:
        svc.stop()


def test_session_and_duration_limits():
    svc = P.BandwidthService("127.0.0.1", 0, max_sessions=1, max_duration_s=0.5).start()
    try:
        hp = HostPort("127.0.0.1", svc.port)
        with socket.create_connection(("127.0.0.1", svc.port)) as a:
            reply = bwclient.handshake(a, P.Hello(P.DOWN, 0, 1, 5000, b"A" * 16), None)
            assert reply.granted_ms == 500           # capped server-side
            with socket.create_connection(("127.0.0.1", svc.port)) as b:
                with pytest.raises(ConnectionError, match="busy"):
                    bwclient.handshake(b, P.Hello(P.DOWN, 0, 1, 1000, b"B" * 16), None)
        deadline = time.monotonic() + 5          # the server notices the hang-ups on its own time
        while svc._sessions and time.monotonic() < deadline:
            time.sleep(0.05)
        out = bwclient.transfer(hp, "down", 1, 5.0)   # asks 5 s, gets 0.5 s
        samples = out.streams[0].samples
        assert not out.errors and samples[-1][0] - samples[0][0] < 2.5   # data stopped at the cap
    finally:
        svc.stop()


def test_garbage_is_dropped(service):
    with socket.create_connection(("127.0.0.1", service.port), timeout=2) as s:
        s.sendall(b"\x16\x03\x01 not our protocol")
        try:
            assert s.recv(100) == b""      # closed without an answer
        except ConnectionResetError:
            pass                           # or reset (unread bytes): dropped either way


def test_mini_endpoint_http(service):
    def req(method, path, body=None):
        c = http.client.HTTPConnection("127.0.0.1", service.port, timeout=5)
        c.request(method, path, body=body, headers={"Content-Length": str(len(body))} if body else {})
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data, r
    st, body, _ = req("GET", "/")
    assert st == 200 and b'upload_extension: "php"' in body
    assert req("GET", "/speedtest/latency.txt?x=1.0")[:2] == (200, b"test=test\n")
    st, body, r = req("GET", "/speedtest/random350x350.jpg?x=12.3")
    assert st == 200 and len(body) == 245388 == int(r.getheader("Content-Length"))
    st, body, _ = req("POST", "/speedtest/upload.php?x=1", body=b"content1=" + b"A" * 99991)
    assert (st, body) == (200, b"size=100000")
    assert req("GET", "/nope")[0] == 404


# ---------------------------------------------------------------- CLI (bad input, faults)


def _cli(*args, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "harness", "probe", "bandwidth", *args],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.parametrize("args, needle", [
    ([], "exactly one backend"),
    (["--reflector", "127.0.0.1:9", "--mini", "http://x/"], "exactly one backend"),
    (["--reflector", "127.0.0.1:9", "--streams", "0"], "--streams"),
    (["--reflector", "127.0.0.1:99999"], "out of range"),
    (["--mini", "ftp://x/"], "expected a URL"),
    (["--reflector", "127.0.0.1:9", "--circuit", "new"], "--circuit needs --profile"),
    (["--reflector", "127.0.0.1:9", "--server", "123"], "needs --speedtest"),
])
def test_cli_bad_input_exit_2(args, needle):
    from click.testing import CliRunner
    from harness.cli import cli
    r = CliRunner().invoke(cli, ["probe", "bandwidth", *args, "--json"])   # click 8.2+: stderr apart
    assert r.exit_code == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_cli_unreachable_exit_3():
    port = free_port()
    cp = _cli("--reflector", f"127.0.0.1:{port}", "--duration", "1", "--idle", "0.2", "--json")
    assert cp.returncode == 3
    data = json.loads(cp.stdout)
    assert data["measured"] is False and "Connection refused" in data["errors"][0]
    assert "Traceback" not in cp.stderr


@pytest.mark.parametrize("direction", ["down", "up"])
def test_reflector_killed_mid_transfer_partial_exit_3(direction):
    port = free_port()
    proc = start_reflector(None, None, "127.0.0.1", port)
    try:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        cli = subprocess.Popen([sys.executable, "-m", "harness", "probe", "bandwidth", "--reflector",
                                f"127.0.0.1:{port}", "--duration", "4", "--omit", "0.3", "--idle", "0.3",
                                "--streams", "2", "--direction", direction, "--json", "-v"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        # kill the far end once the download has run for a while
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline and f"{direction}load:" not in line:
            line = cli.stderr.readline()
        time.sleep(1.5)
        proc.kill()
        out, err = cli.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
    assert cli.returncode == 3, err
    data = json.loads(out)
    assert data["partial"] is True and data["measured"] is True
    other = "up" if direction == "down" else "down"
    assert data[f"{direction}_mbps"] and data[f"{direction}_mbps"] > 0   # what was measured is kept
    assert data[f"{other}_mbps"] is None
    assert any(w in e.lower() for e in data["errors"] for w in ("closed the connection", "reset", "broken pipe")), \
        data["errors"]
    assert 0.5 < data["window_s"][direction] < 3.9     # ended before the planned 4 s
    assert "partial result" in err and "Traceback" not in err


def test_ipv6_service_and_probe():
    svc = P.BandwidthService("::1", 0).start()
    try:
        out = bwclient.transfer(HostPort("::1", svc.port), "up", 1, 0.3)
        assert not out.errors and out.streams[0].samples[-1][1] == out.streams[0].sent_bytes > 0
    finally:
        svc.stop()


def test_cli_profile_comparison_measured_and_failed_exit_1(tmp_path):
    """--profile/--circuit: contract percentage and the planned need; below the need -> exit 1."""
    svc = P.BandwidthService("127.0.0.1", 0).start()
    try:
        f = tmp_path / "site.yaml"
        # other_mbps is set beyond what loopback carries, so the need cannot be met
        f.write_text("site: T\nplanned:\n  calls: 10\n  codec: g711\n  other_mbps: 10000000\n"
                     f"circuits:\n  - name: new\n    role: new\n    down_mbps: 100\n    up_mbps: 50\n"
                     f"    reflector: 127.0.0.1:{svc.port}\n")
        cp = _cli("--profile", str(f), "--duration", "0.5", "--omit", "0.2", "--streams", "1",
                  "--no-latency", "--json")
        assert cp.returncode == 1, cp.stderr
        data = json.loads(cp.stdout)
        comp = data["comparison"]
        assert comp["circuit"] == "new" and data["target"] == f"127.0.0.1:{svc.port}"
        up = comp["directions"]["up"]
        assert up["pct_of_contract"] == pytest.approx(data["up_mbps"] * 100 / 50)
        assert up["covers_required"] is False and "promised upstream" in up["text"]
    finally:
        svc.stop()


def test_mini_backend_on_loopback_counts_what_the_server_got(service):
    """speedtest-cli against the reflector's Mini endpoint, offline: our upload count is what
    the server's TCP acknowledged, so it can't exceed what the server read (+ HTTP headers)."""
    import probes.reflector.speedtest_backend as SB
    logs = []

    class Log(SB.RequestLog):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            logs.append(self)

    orig, SB.RequestLog = SB.RequestLog, Log
    try:
        out = SB.run_speedtest(mini_url=f"http://127.0.0.1:{service.port}/", server_id=None, duration_s=0.5,
                               omit_s=0.2, threads=2, direction="both", source=None, timeout_s=5,
                               stop=__import__("threading").Event(), on_phase=lambda *a: None)
    finally:
        SB.RequestLog = orig
    assert not out.errors, out.errors
    assert out.down_mbps and out.up_mbps and out.ping_ms is not None
    acked = logs[0].up_timeline[-1][1]
    assert 0 < acked <= service.stats["http_received_b"] + 400 * logs[0].upload_ok
    time.sleep(0.3)                  # let the server's threads see the hang-ups
    assert 0 < out.bytes_received <= service.stats["http_sent_b"]


def test_stop_event_ends_early_with_partial_result(service):
    """The scheduler/TUI/Ctrl-C path: stop mid-download -> what was measured, partial, cause."""
    import threading
    from probes.bandwidth import run
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    res = run(BandwidthConfig(target=f"127.0.0.1:{service.port}", duration_s=5, omit_s=0.2, idle_s=0.2,
                              streams=1, latency=False), stop=stop)
    assert res.partial and res.measured and res.down_mbps and res.up_mbps is None
    assert "stopped before the end" in res.errors
    assert res.window_s["down"] < 2.0        # ended at the stop, not after the planned 5 s
