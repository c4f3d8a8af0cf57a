"""Bandwidth through a real shaped path: client - router - server namespaces,
tbf at 20 Mbit/s on both router egresses (tests/lab). Cross-checked against
iperf3 and irtt measuring the same link in the same test. Needs root.

    .venv/bin/python -m pytest tests/test_bandwidth_lab.py -q
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from tests.bwlab import ROOT, cli_argv, run_cli_in, start_miniserver, start_reflector
from tests.conftest import needs_root
from tests.lab.peers import iperf3_client, iperf3_server, irtt_client, irtt_server

pytestmark = [needs_root, pytest.mark.lab]

RATE_MBIT = 20
PORT = 8620        # inside a namespace created for this test: nothing else listens there


def _shaped_lab(lab, queue="default", **kw):
    lab.chain(["client", "router", "server"])
    lab.shape_router("router", RATE_MBIT, queue=queue, **kw)
    return lab.addr("server")


def _json(cp: subprocess.CompletedProcess) -> dict:
    assert cp.stdout.strip(), cp.stderr
    return json.loads(cp.stdout)


def _iperf3_and_cutover(lab, srv) -> tuple[float, float, dict, int]:
    with iperf3_server(ns=lab.ns("server"), host=srv) as ip3:
        ref_down = iperf3_client(ip3.address, duration_s=3, omit_s=1, streams=4, reverse=True,
                                 congestion="cubic", ns=lab.ns("client"))["received_mbps"]
        ref_up = iperf3_client(ip3.address, duration_s=3, omit_s=1, streams=4,
                               congestion="cubic", ns=lab.ns("client"))["received_mbps"]
    cp = run_cli_in(lab, "client", "probe", "bandwidth", "--reflector", f"{srv}:{PORT}", "--duration", "3",
                    "--omit", "1", "--streams", "4", "--congestion", "cubic", "--no-latency", "--json")
    data = _json(cp)
    print(f"iperf3 down {ref_down:.2f} up {ref_up:.2f}; cutover down {data['down_mbps']:.2f} "
          f"up {data['up_mbps']:.2f} Mbit/s")
    return ref_down, ref_up, data, cp.returncode


def _within(a: float | None, b: float, rel: float) -> bool:
    return a is not None and abs(a - b) <= rel * b


def test_reflector_backend_matches_iperf3(lab):
    srv = _shaped_lab(lab)
    start_reflector(lab, "server", srv, PORT)
    ref_down, ref_up, data, code = _iperf3_and_cutover(lab, srv)
    if not (_within(data["down_mbps"], ref_down, 0.05) and _within(data["up_mbps"], ref_up, 0.05)):
        # 2 shared cores: a burst of other work during one tool's turn skews that turn
        # only. Measure both again, once; the bound stays 5 %.
        ref_down, ref_up, data, code = _iperf3_and_cutover(lab, srv)
    assert code == 0, data["errors"]
    # payload through a 20 Mbit/s layer-2 shaper is ~19 Mbit/s: a sanity anchor for both tools
    assert 17 < ref_down < 20.5 and 17 < ref_up < 20.5
    assert data["down_mbps"] == pytest.approx(ref_down, rel=0.05)
    assert data["up_mbps"] == pytest.approx(ref_up, rel=0.05)
    assert data["streams"] == 4 and data["congestion"] == "cubic" and data["partial"] is False


def test_mini_against_reflector_and_separate_server(lab):
    srv = _shaped_lab(lab)
    # speedtest-cli opens a new connection per file. This machine's default congestion
    # control, BBR, overshoots in every connection's startup and makes the others lose
    # ~1 s to timeouts; web servers out there mostly run loss-based cubic. The namespace
    # may pick reno (cubic is not in its allowed list); our client sockets use cubic.
    lab.sysctl("server", "net.ipv4.tcp_congestion_control", "reno")
    start_reflector(lab, "server", srv, PORT)
    _, mini_port = start_miniserver(lab, "server", srv)
    _, refusing_port = start_miniserver(lab, "server", srv, refuse_post=True)
    results = {}
    for name, url, extra in (("reflector", f"http://{srv}:{PORT}/", []),
                             ("miniserver", f"http://{srv}:{mini_port}/", []),
                             ("refusing", f"http://{srv}:{refusing_port}/",
                              ["--direction", "up", "--duration", "1", "--omit", "0.5"])):
        for _attempt in range(2):
            cp = run_cli_in(lab, "client", "probe", "bandwidth", "--mini", url, "--duration", "4",
                            "--streams", "4", "--congestion", "cubic", "--idle", "0.5", "--json", *extra)
            data = _json(cp)
            if name == "refusing" or (_within(data["down_mbps"], RATE_MBIT, 0.10)
                                      and _within(data["up_mbps"], RATE_MBIT, 0.10)):
                break
            # one more run if a burst of other work on the 2 shared cores hit this one
            print(f"{name}: retry after down {data['down_mbps']} up {data['up_mbps']}")
        results[name] = (cp.returncode, data, cp.stderr)
    for name in ("reflector", "miniserver"):
        code, data, err = results[name]
        print(f"{name}: down {data['down_mbps']} up {data['up_mbps']} {data['errors']}")
        assert code == 0, (name, data["errors"], err)
        assert data["down_mbps"] == pytest.approx(RATE_MBIT, rel=0.10), name
        assert data["up_mbps"] == pytest.approx(RATE_MBIT, rel=0.10), name
        assert data["latency_method"] == "icmp" and data["latency_ms"]["idle_p50"] is not None
    code, data, err = results["refusing"]
    print(f"refusing: down {data['down_mbps']} up {data['up_mbps']} {data['errors']}")
    assert data["up_mbps"] is None                              # no made-up upload figure
    assert any("refused the upload" in e and "405" in e for e in data["errors"]), data["errors"]
    assert data["speedtest_cli"]["up_mbps"] > 0     # what speedtest-cli alone would have claimed
    assert code == 3 and data["measured"] is False and "could not measure" in err


def test_speedtest_without_internet_exit_3_within_timeout(lab):
    lab.add_node("offline")        # a namespace with only loopback: no route anywhere
    t0 = time.monotonic()
    cp = run_cli_in(lab, "offline", "probe", "bandwidth", "--speedtest", "--timeout", "5", "--json",
                    timeout=60)
    elapsed = time.monotonic() - t0
    data = _json(cp)
    assert cp.returncode == 3
    assert data["measured"] is False and "speedtest.net" in data["errors"][0]
    assert "Traceback" not in cp.stderr and "could not measure" in cp.stderr
    assert elapsed < 5 * 2 + 10       # setup is bounded by the timeout, not by DNS or TCP defaults


def _loaded_run(lab, srv, queue_args: list[str]) -> tuple[dict, dict]:
    """cutover (cubic, upload) and irtt at the same time, irtt started when the upload starts.

    8 streams: cubic leaves slow start early (HyStart) and then grows slowly; eight
    flows fill a deep queue within the test where four sometimes do not."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with irtt_server(ns=lab.ns("server"), host=srv) as irs:
        proc = subprocess.Popen(cli_argv(lab, "client", "probe", "bandwidth", "--reflector", f"{srv}:{PORT}",
                                         "--direction", "up", "--congestion", "cubic", "--duration", "4",
                                         "--omit", "1", "--streams", "8", "--idle", "1", "--json", "-v",
                                         *queue_args),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        box: dict = {}
        try:
            deadline = time.monotonic() + 20
            line = ""
            while time.monotonic() < deadline and "upload:" not in line:
                line = proc.stderr.readline()
                if not line and proc.poll() is not None:
                    break
            assert "upload:" in line, "the probe never started its upload"
            # the same window as cutover's "up" phase: from the upload start, omit + duration
            t = threading.Thread(target=lambda: box.update(irtt=irtt_client(
                irs.address, interval_ms=20, duration_s=5, ns=lab.ns("client"))))
            t.start()
            out, err = proc.communicate(timeout=60)
            t.join(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    return json.loads(out), box["irtt"]


def test_bufferbloat_deep_queue_rises_and_irtt_agrees(lab):
    srv = _shaped_lab(lab, queue="deep")          # 500 ms of queue at 20 Mbit/s
    start_reflector(lab, "server", srv, PORT)
    data, irtt = _loaded_run(lab, srv, [])
    lat = data["latency_ms"]
    print(f"deep: {data['up_mbps']:.1f} Mbit/s, idle {lat['idle_p50']:.1f} up {lat['up_load_p50']:.1f} ms "
          f"(irtt {irtt['rtt_median_ms']:.1f}); "
          f"{data['bufferbloat']}")
    assert lat["increase_p50"] > 150                # "well over 100 ms"
    assert data["bufferbloat"]["grade"] in ("C", "D", "F")
    assert "uploads" in data["bufferbloat"]["summary"]
    assert lat["up_load_p50"] == pytest.approx(irtt["rtt_median_ms"], rel=0.15)


def test_bufferbloat_shallow_queue_small_rise(lab):
    srv = _shaped_lab(lab, queue="shallow")       # 5 ms of queue
    start_reflector(lab, "server", srv, PORT)
    data, irtt = _loaded_run(lab, srv, [])
    lat = data["latency_ms"]
    print(f"shallow: idle {lat['idle_p50']:.1f} up {lat['up_load_p50']:.1f} ms (irtt {irtt['rtt_median_ms']:.1f}); "
          f"{data['bufferbloat']}")
    assert lat["increase_p50"] < 15
    assert data["bufferbloat"]["grade"] in ("A+", "A")
    assert abs(lat["up_load_p50"] - irtt["rtt_median_ms"]) < 3    # a few ms: compare absolutely
    assert data["up_mbps"] > 15                   # the link was loaded
