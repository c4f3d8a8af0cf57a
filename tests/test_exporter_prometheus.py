"""A real Prometheus server (Debian package ``prometheus``) scrapes one
`cutover exporter` serving every site of a central PostgreSQL database; the
sites' figures come back through Prometheus' HTTP API, and every query of
the Grafana dashboard (docs/grafana/fleet.json) returns what the database holds."""

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from harness.profile import DEMO_PROFILE, load_profile_text
from harness.store import Store
from harness.verdicts import Check
from tests.conftest import ROOT

UTC = dt.timezone.utc
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DASHBOARD = ROOT / "docs" / "grafana" / "fleet.json"

# site -> (rtt p50 ms, jitter up ms, loss total %, MOS, verdict of every run)
SITES = {"Alpha": (12.5, 1.5, 0.0, 4.41, "GO"), "Bravo": (48.0, 9.0, 2.5, 3.62, "NO-GO"),
         "Charlie": (23.0, 3.0, 0.25, 4.3, "NO-GO")}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _profile(site: str) -> dict:
    text = DEMO_PROFILE.read_text().replace("site: Demo site (loopback)", f"site: {site}")
    start = (dt.datetime.now(UTC).date() - dt.timedelta(days=1)).isoformat()
    text = text.replace("parallel_run_start: 2026-11-01", f"parallel_run_start: {start}")
    text = text.replace("min_parallel_days: 14", "min_parallel_days: 0")
    text = text[:text.index("  checklist:")]            # no manual items: Alpha's gate can say GO
    return load_profile_text(text).model_dump(mode="json")


def _fill(url: str, now: dt.datetime) -> dict[str, float]:
    """Six runs per site, 10 minutes apart, the last 10 minutes ago; returns
    each site's last run start (Unix time)."""
    last = {}
    with Store(url) as st:
        for site, (rtt, jit, loss, mos, verdict) in SITES.items():
            prof = _profile(site)
            for i in range(6):
                t = now - dt.timedelta(minutes=10 * (6 - i))
                rid = st.begin_run(site, prof, "0.1.0", started_at=t)
                for circuit in ("old", "new"):
                    raw = {"stream": {"rtt_ms": {"p50": rtt}, "jitter_ms": {"up": jit, "down": jit / 2},
                                      "loss_pct": {"up": loss, "down": 0.0, "total": loss}, "mos": mos}}
                    st.add_circuit_result(rid, circuit, verdict,
                                          [Check("stream.mos", "pass" if verdict == "GO" else "fail", mos, 4.0,
                                                 "", mos - 4.0, "MOS")], raw)
                rid = st.finish_run(rid, verdict, finished_at=t + dt.timedelta(seconds=30))
                last[site] = t.timestamp()
    return last


def _query(base: str, expr: str) -> list[dict]:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{base}/api/v1/query?{q}", timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def _by(result: list[dict], *labels: str) -> dict:
    return {tuple(r["metric"].get(lab) for lab in labels): float(r["value"][1]) for r in result}


@pytest.fixture
def prometheus_bin():
    if not Path(PROMETHEUS).exists():
        pytest.skip("prometheus is not installed (scripts/sysdeps.sh installs the Debian package)")
    return PROMETHEUS


def test_prometheus_scrapes_every_site_and_the_dashboard_queries_hold(tmp_path, pg_url, prometheus_bin):
    now = dt.datetime.now(UTC).replace(microsecond=0)
    last_run = _fill(pg_url, now)
    exp_port, prom_port = _free_port(), _free_port()
    env = dict(os.environ)
    env.pop("CUTOVER_DEBUG", None)
    exporter = subprocess.Popen([sys.executable, "-m", "harness", "exporter", "--db", pg_url,
                                 "--listen", f"127.0.0.1:{exp_port}", "--max-seconds", "120"],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    data = Path(tempfile.mkdtemp(prefix="cutover-prom-"))
    (data / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: cutover\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exp_port}']}}]\n")
    prom = subprocess.Popen([prometheus_bin, f"--config.file={data / 'prometheus.yml'}",
                             f"--storage.tsdb.path={data / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=(data / "prom.log").open("w"))
    base = f"http://127.0.0.1:{prom_port}"
    try:
        # wait (bounded) until Prometheus has scraped every site at least once
        deadline = time.monotonic() + 90
        verdicts: dict = {}
        while time.monotonic() < deadline:
            assert prom.poll() is None, (data / "prom.log").read_text()[-800:]
            assert exporter.poll() is None, exporter.stderr.read()
            try:
                verdicts = _by(_query(base, "cutover_verdict"), "site", "circuit")
            except OSError:                       # Prometheus still starting
                verdicts = {}
            if len({s for s, _ in verdicts}) == len(SITES):
                break
            time.sleep(0.5)
        assert {s for s, _ in verdicts} == set(SITES), verdicts
        up = _by(_query(base, 'up{job="cutover"}'), "job")
        assert up == {("cutover",): 1.0}

        # a site's figures, back through Prometheus, in base units (ms -> s, % -> ratio)
        assert verdicts[("Bravo", "new")] == 2.0 and verdicts[("Alpha", "old")] == 0.0
        rtt = _by(_query(base, 'cutover_rtt_seconds{site="Bravo",stat="p50"}'), "circuit")
        assert rtt == {("old",): 0.048, ("new",): 0.048}
        loss = _by(_query(base, 'cutover_loss_ratio{site="Bravo",direction="total"}'), "circuit")
        assert loss == {("old",): 0.025, ("new",): 0.025}

        # every query of the Grafana dashboard, as Grafana sends it for the site "Bravo" and for all
        dash = json.loads(DASHBOARD.read_text())
        exprs = {p["title"]: p["targets"][0]["expr"] for p in dash["panels"]}
        assert len(exprs) == 8
        for site_value in ("Bravo", ".*"):
            for title, expr in exprs.items():
                result = _query(base, expr.replace("$site", site_value))
                assert result, f"dashboard panel {title!r} ({expr}) returned nothing"
        one = {t: _by(_query(base, e.replace("$site", "Bravo")), "site", "circuit", "direction")
               for t, e in exprs.items()}
        assert one["Sites whose gate says NO-GO"] == {(None, None, None): 2.0}       # Bravo, Charlie
        assert one["Sites ready (gate GO)"] == {(None, None, None): 1.0}             # Alpha
        assert one["RTT p50"] == {("Bravo", "old", None): 0.048, ("Bravo", "new", None): 0.048}
        assert one["Jitter"] == {("Bravo", c, d): v for c in ("old", "new") for d, v in (("up", 0.009),
                                                                                          ("down", 0.0045))}
        assert one["Loss"] == {("Bravo", "old", "total"): 0.025, ("Bravo", "new", "total"): 0.025}
        assert one["MOS (worst direction)"] == {("Bravo", "old", "worst"): 3.62, ("Bravo", "new", "worst"): 3.62}
        assert one["Circuit verdict (0 GO, 1 WARN, 2 NO-GO)"] == {("Bravo", "old", None): 2.0,
                                                                 ("Bravo", "new", None): 2.0}
        # seconds since the last run: Prometheus' time() minus the stored start (10 minutes before `now`)
        silence = _by(_query(base, exprs["Seconds since each site's last run (quiet probes)"]
                             .replace("$site", ".*")), "site")
        elapsed = time.time() - now.timestamp()
        for site in SITES:
            assert last_run[site] == now.timestamp() - 600
            assert 600 <= silence[(site,)] <= 600 + elapsed + 2
    finally:
        for p in (prom, exporter):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        shutil.rmtree(data, ignore_errors=True)
