"""Prometheus export: planted values come out in base units, parse with the
prometheus_client parser, atomic .prom files, and the HTTP exporter serves and
shuts down cleanly."""

from __future__ import annotations

import datetime as dt
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness import exporter
from harness.profile import load_profile
from harness.store import Store
from harness.verdicts import Check
from tests.conftest import ROOT
from tests.fixtures.history import write_profile

UTC = dt.timezone.utc
T_OLD = dt.datetime(2026, 11, 20, 11, 0, tzinfo=UTC)
T_NEW = dt.datetime(2026, 11, 20, 11, 30, tzinfo=UTC)
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)

NEW_RAW = {
    "stream": {"probe": "stream", "rtt_ms": {"min": 10.0, "mean": 13.0, "p50": 12.5, "p95": 20.0, "p99": 22.0,
                                             "max": 30.0},
               "jitter_ms": {"up": 3.2, "down": 4.8}, "loss_pct": {"up": 2.0, "down": 0.5, "total": 2.49},
               "mos": 3.9, "mos_up": 3.9, "mos_down": 4.2, "errors": [], "partial": False},
    "bandwidth": {"probe": "bandwidth", "down_mbps": 94.5, "up_mbps": 47.25,
                  "latency_ms": {"idle_p50": 12.0, "down_load_p50": 40.0, "up_load_p50": 25.0, "increase_p50": 28.0}},
    "capacity": {"probe": "capacity", "max_calls": 33, "limit": "mos"},
}
NEW_CHECKS = [
    Check("stream.loss_up", "fail", 2.0, 1.0, "%", -1.0, "upstream loss 2 % > 1 % limit", cause="network"),
    Check("stream.mos", "fail", 3.9, 4.0, "", -0.1, "MOS 3.9 < 4 minimum", cause="network"),
    Check("stream.jitter_up", "pass", 3.2, 30.0, "ms", 26.8, "upstream jitter 3.2 ms <= 30 ms limit"),
    Check("bandwidth.down", "warn", 94.5, 90.0, "Mbit/s", 4.5, "downstream 94.5 Mbit/s is within 10 % of 90",
          cause="network"),
    Check("path.hops", "error", None, None, "", None, "path could not measure: no CAP_NET_RAW",
          cause="measurement_gap"),
]


@pytest.fixture
def site(tmp_path):
    profile = load_profile(write_profile(tmp_path, dt.date(2026, 11, 1)))
    db = tmp_path / "h.sqlite"
    with Store(db) as store:
        # old measured at 11:00; the latest run (11:30) measured only the new circuit
        rid = store.begin_run(profile.site, {}, "test", started_at=T_OLD)
        store.add_circuit_result(rid, "old", "GO", [Check("stream.mos", "pass", 4.3, 4.0, "", 0.3, "ok")],
                                 {"stream": {"rtt_ms": {"p50": 30.0}, "mos": 4.3}})
        rid = store.finish_run(rid, "GO", finished_at=T_OLD + dt.timedelta(seconds=30))
        rid = store.begin_run(profile.site, {}, "test", started_at=T_NEW)
        store.add_circuit_result(rid, "new", "NO-GO", NEW_CHECKS, NEW_RAW)
        rid = store.finish_run(rid, "NO-GO", finished_at=T_NEW + dt.timedelta(seconds=30))
    return profile, db


def _samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _get(samples, name, **labels):
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, (key, sorted(k for k in samples if k[0] == name))
    return samples[key]


def test_planted_values_in_base_units(site):
    profile, db = site
    with Store(db) as store:
        text = exporter.render(profile, store, now=NOW)
    s = _samples(text)
    site_l = {"site": profile.site}
    new = dict(site_l, circuit="new")
    assert _get(s, "cutover_rtt_seconds", **new, probe="stream", stat="p50") == pytest.approx(0.0125)
    assert _get(s, "cutover_rtt_seconds", **new, probe="bandwidth", stat="down_load_p50") == pytest.approx(0.040)
    assert _get(s, "cutover_jitter_seconds", **new, probe="stream", direction="down") == pytest.approx(0.0048)
    assert _get(s, "cutover_loss_ratio", **new, probe="stream", direction="up") == pytest.approx(0.02)
    assert _get(s, "cutover_mos", **new, probe="stream", direction="worst") == pytest.approx(3.9)
    assert _get(s, "cutover_throughput_bits_per_second", **new, probe="bandwidth", direction="up") == 47.25e6
    assert _get(s, "cutover_capacity_calls", **new, probe="capacity") == 33
    assert _get(s, "cutover_check_status", **new, probe="stream", check="stream.loss_up") == 2
    assert _get(s, "cutover_check_status", **new, probe="bandwidth", check="bandwidth.down") == 1
    assert _get(s, "cutover_check_status", **new, probe="stream", check="stream.jitter_up") == 0
    assert _get(s, "cutover_check_status", **new, probe="path", check="path.hops") == 3
    # whose fault each non-passing check was: the carrier's loss and ours (no raw socket)
    causes = {dict(k[1])["check"]: dict(k[1])["cause"] for k in s if k[0] == "cutover_check_cause"
              and dict(k[1])["circuit"] == "new"}
    assert causes == {"stream.loss_up": "network", "stream.mos": "network", "bandwidth.down": "network",
                      "path.hops": "measurement_gap"}
    assert _get(s, "cutover_check_cause", **new, probe="path", check="path.hops", cause="measurement_gap") == 1
    assert _get(s, "cutover_verdict", **new) == 2
    assert _get(s, "cutover_last_run_timestamp_seconds", **new) == T_NEW.timestamp()
    # old's latest result is from the run before (the latest run did not measure it)
    old = dict(site_l, circuit="old")
    assert _get(s, "cutover_verdict", **old) == 0
    assert _get(s, "cutover_rtt_seconds", **old, probe="stream", stat="p50") == pytest.approx(0.030)
    assert _get(s, "cutover_last_run_timestamp_seconds", **old) == T_OLD.timestamp()
    assert _get(s, "cutover_planned_calls", **site_l) == 20
    assert _get(s, "cutover_gate_go", **site_l) == 0
    assert not any(k[1] and dict(k[1]).get("circuit") == "backup" for k in s)   # never measured: absent


def test_write_prom_file_is_atomic_and_parses(site, tmp_path):
    profile, db = site
    target = tmp_path / "textfile" / "cutover.prom"
    with Store(db) as store:
        exporter.write_prom_file(profile, store, target)          # what `check --prom-file` calls
    s = _samples(target.read_text())
    assert _get(s, "cutover_verdict", site=profile.site, circuit="new") == 2
    exporter.write_prom_file(target, "cutover_test 1\n")           # (path, text) form replaces it whole
    assert target.read_text() == "cutover_test 1\n"
    assert [p.name for p in target.parent.iterdir()] == ["cutover.prom"]   # no temp file left behind


def _read_line(stream, deadline: float) -> str:
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([stream], [], [], 0.2)
        if r:
            ch = os.read(stream.fileno(), 1)
            if not ch:
                break
            if ch == b"\n":
                return buf.decode()
            buf += ch
    raise AssertionError(f"no line from the exporter in time: {buf!r}")


def test_exporter_serves_and_stops_cleanly(site):
    profile, db = site
    proc = subprocess.Popen([sys.executable, "-m", "harness", "exporter", str(profile.path), "--db", str(db),
                             "--listen", "127.0.0.1:0", "--max-seconds", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        line = _read_line(proc.stderr, time.monotonic() + 60)
        assert "serving http://127.0.0.1:" in line, line
        url = line.split("serving ", 1)[1].split()[0]
        with urllib.request.urlopen(url, timeout=30) as resp:
            assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            s = _samples(resp.read().decode())
        assert _get(s, "cutover_loss_ratio", site=profile.site, circuit="new", probe="stream",
                    direction="up") == pytest.approx(0.02)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url.replace("/metrics", "/nope"), timeout=30)
        assert e.value.code == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert b"stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_exporter_bad_listen(site):
    profile, db = site
    r = subprocess.run([sys.executable, "-m", "harness", "exporter", str(profile.path), "--listen", "[::1",
                        "--db", str(db)], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "--listen" in r.stderr and "Traceback" not in r.stderr


def test_exporter_before_the_first_run_then_after(tmp_path):
    """Started before any `cutover check`: serves the site-level gauge only, and
    the circuits once the database exists (opened at the first scrape after)."""
    import threading
    profile = load_profile(write_profile(tmp_path, dt.date(2026, 11, 1)))
    db = tmp_path / "later.sqlite"
    server = exporter.make_server(profile, db, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=30) as resp:
            s = _samples(resp.read().decode())
        assert s == {("cutover_planned_calls", (("site", profile.site),)): 20.0}
        assert not db.exists()
        with Store(db) as store:
            rid = store.begin_run(profile.site, {}, "test", started_at=T_NEW)
            store.add_circuit_result(rid, "new", "NO-GO", NEW_CHECKS, NEW_RAW)
            rid = store.finish_run(rid, "NO-GO")
        with urllib.request.urlopen(url, timeout=30) as resp:
            s = _samples(resp.read().decode())
        assert _get(s, "cutover_verdict", site=profile.site, circuit="new") == 2
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        if server.cutover_state["store"] is not None:
            server.cutover_state["store"].close()


def test_a_scrape_that_cannot_read_is_503_and_a_bug_is_500_with_its_crash_file(site, tmp_path, monkeypatch):
    """A locked database is the history's state, not a bug: 503 with the engine's words,
    and the next scrape is served. A bug of ours in one scrape is a 500 that says so
    and names the traceback file (as `cutover` exits 70); the exporter stays up."""
    import sqlite3
    import threading

    from harness import runner
    from harness.store_backends import parse_location
    profile, db = site
    crashes = tmp_path / "crashes"
    monkeypatch.setenv(runner.CRASH_DIR_ENV, str(crashes))
    real = exporter.render
    faults = iter([sqlite3.OperationalError("database is locked"), ZeroDivisionError("division by zero")])

    def render(*args, **kwargs):
        fault = next(faults, None)
        if fault is not None:
            raise fault
        return real(*args, **kwargs)

    monkeypatch.setattr(exporter, "render", render)
    server = exporter.make_server(profile, parse_location(db), "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        with pytest.raises(urllib.error.HTTPError) as locked:
            urllib.request.urlopen(url, timeout=30)
        text = locked.value.read().decode()
        assert locked.value.code == 503 and "database is locked" in text and "internal error" not in text
        assert not crashes.exists()
        with pytest.raises(urllib.error.HTTPError) as bug:
            urllib.request.urlopen(url, timeout=30)
        text = bug.value.read().decode()
        (crash,) = crashes.glob("crash-*.txt")
        assert bug.value.code == 500 and "internal error: ZeroDivisionError: division by zero" in text
        assert str(crash) in text and "ZeroDivisionError" in crash.read_text()
        with urllib.request.urlopen(url, timeout=30) as resp:          # still serving
            assert resp.status == 200 and "cutover_verdict" in resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        t.join(10)
