"""Fleet export: the latest results in the Prometheus text exposition format.

Many sites roll up into one Prometheus/Grafana view: each site either writes
a ``.prom`` file for node_exporter's textfile collector
(``cutover check --prom-file``, via :func:`write_prom_file`) or runs
``cutover exporter --listen ADDR`` (:func:`serve`), and Prometheus
aggregates; or the sites write to one central database and a single
``cutover exporter --db postgresql://...`` (no profile) serves every site
(:func:`render_sites`); docs/grafana/fleet.json charts it.

Metric names carry base units (seconds, ratio, bits per second), as the
Prometheus naming guidelines ask; every sample has ``site`` and ``circuit``
labels. Values come from the latest stored result of each circuit:

==========================================  ===============================================
cutover_rtt_seconds{probe,stat}             RTT statistics (stream: min/mean/p50/p95/p99/max;
                                            bandwidth: idle_p50/down_load_p50/up_load_p50)
cutover_jitter_seconds{probe,direction}     RFC 3550 jitter, up / down
cutover_loss_ratio{probe,direction}         loss 0..1, up / down / total
cutover_mos{probe,direction}                E-model MOS: worst / up / down
cutover_throughput_bits_per_second{probe,direction}  down / up
cutover_capacity_calls{probe}               concurrent calls the path carried
cutover_planned_calls                       the profile's planned peak calls
cutover_check_status{probe,check}           0 pass, 1 warn, 2 fail, 3 error
cutover_check_cause{probe,check,cause}      1 for each check that did not pass, with whose fault
                                            it was: network (the carrier's path), measurement_gap
                                            (our side could not measure), internal_error (our bug)
cutover_verdict                             0 GO, 1 WARN, 2 NO-GO
cutover_last_run_timestamp_seconds          start of the circuit's latest run (Unix time)
cutover_gate_go                             1 when the termination gate says GO (site level)
==========================================  ===============================================

Alert examples: ``cutover_verdict > 1``; ``time() - cutover_last_run_timestamp_seconds > 3600``;
page the carrier only on ``cutover_check_cause{cause="network"}``, the team on the other causes.
The cause is its own family (not a label on ``cutover_check_status``) so the status
series keep the label set dashboards and alerts already select on.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

UTC = dt.timezone.utc
STATUS_VALUE = {"pass": 0, "warn": 1, "fail": 2, "error": 3}
VERDICT_VALUE = {"GO": 0, "WARN": 1, "NO-GO": 2}
LOOKBACK = dt.timedelta(days=7)          # how far back to look for a circuit's latest result
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _num(node: Any, *path: str) -> float | None:
    for part in path:
        node = node.get(part) if isinstance(node, Mapping) else None
        if node is None:
            return None
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        return None
    return float(node)


def _si(value: float, scale: float) -> float:
    """Unit conversion without binary noise (0.117 ms -> 0.000117 s, not 0.00011700000000000001)."""
    return float(f"{value * scale:.12g}")


def latest_per_circuit(profile, store, now: dt.datetime | None = None) -> dict[str, tuple[Any, Any]]:
    """circuit -> (run, circuit_record) of its latest stored result."""
    now = now or dt.datetime.now(UTC)
    out: dict[str, tuple[Any, Any]] = {}
    latest = store.latest_run(profile.site)
    if latest is not None:
        for name, rec in latest.circuits.items():
            out[name] = (latest, rec)
    for c in profile.circuits:
        if c.name in out:
            continue
        # a `check --circuit other` ran last: find this circuit's own latest run
        runs = store.runs(profile.site, since=now - LOOKBACK, circuit=c.name, checks="none")
        if runs:
            full = store.run(runs[-1].id)
            if full is not None and c.name in full.circuits:
                out[c.name] = (full, full.circuits[c.name])
    return out


def _latest_checks(profile, store, name: str, run, rec, now: dt.datetime | None) -> list:
    """The latest result of each check of a circuit (harness.history.latest_checks):
    when its latest run was partial (``check --step``), the other steps' checks
    come from the runs before it, so no check vanishes from the metrics."""
    from harness import history
    if history.is_full(run):
        return list(rec.checks)
    now = now or dt.datetime.now(UTC)
    runs = store.runs(profile.site, since=min(now, run.started_at) - LOOKBACK,
                      until=run.started_at + dt.timedelta(microseconds=1), circuit=name)
    return history.latest_checks([(r, r.circuits[name]) for r in runs if name in r.circuits])


def families(profile, store, now: dt.datetime | None = None, gate_decision=None) -> list[GaugeMetricFamily]:
    """The metric families for the latest results of every circuit."""
    site = profile.site
    base = ["site", "circuit"]
    rtt = GaugeMetricFamily("cutover_rtt_seconds", "Round-trip time statistics", labels=base + ["probe", "stat"])
    jitter = GaugeMetricFamily("cutover_jitter_seconds", "RFC 3550 interarrival jitter",
                               labels=base + ["probe", "direction"])
    loss = GaugeMetricFamily("cutover_loss_ratio", "Packet loss (0..1)", labels=base + ["probe", "direction"])
    mos = GaugeMetricFamily("cutover_mos", "E-model MOS (worst direction, up, down)",
                            labels=base + ["probe", "direction"])
    tput = GaugeMetricFamily("cutover_throughput_bits_per_second", "Application throughput",
                             labels=base + ["probe", "direction"])
    cap = GaugeMetricFamily("cutover_capacity_calls", "Concurrent emulated calls the path carried",
                            labels=base + ["probe"])
    status = GaugeMetricFamily("cutover_check_status", "Latest check status: 0 pass, 1 warn, 2 fail, 3 error",
                               labels=base + ["probe", "check"])
    cause = GaugeMetricFamily("cutover_check_cause", "1 for each check that did not pass, labelled with its cause: "
                              "network, measurement_gap or internal_error", labels=base + ["probe", "check", "cause"])
    verdict = GaugeMetricFamily("cutover_verdict", "Latest circuit verdict: 0 GO, 1 WARN, 2 NO-GO", labels=base)
    last = GaugeMetricFamily("cutover_last_run_timestamp_seconds", "Start of the circuit's latest run",
                             labels=base)
    planned = GaugeMetricFamily("cutover_planned_calls", "Planned peak concurrent calls", labels=["site"])
    planned.add_metric([site], float(profile.planned.calls))

    for name, (run, rec) in latest_per_circuit(profile, store, now).items():
        lab = [site, name]
        raw = rec.raw or {}
        stream = raw.get("stream") if isinstance(raw, Mapping) else None
        for stat in ("min", "mean", "p50", "p95", "p99", "max"):
            for probe in ("stream", "latency"):
                v = _num(raw.get(probe), "rtt_ms", stat)
                if v is not None:
                    rtt.add_metric(lab + [probe, stat], _si(v, 1e-3))
        for stat in ("idle_p50", "down_load_p50", "up_load_p50"):
            v = _num(raw.get("bandwidth"), "latency_ms", stat)
            if v is not None:
                rtt.add_metric(lab + ["bandwidth", stat], _si(v, 1e-3))
        for direction in ("up", "down"):
            v = _num(stream, "jitter_ms", direction)
            if v is not None:
                jitter.add_metric(lab + ["stream", direction], _si(v, 1e-3))
        for direction in ("up", "down", "total"):
            v = _num(stream, "loss_pct", direction)
            if v is not None:
                loss.add_metric(lab + ["stream", direction], _si(v, 1e-2))
        for direction, key in (("worst", "mos"), ("up", "mos_up"), ("down", "mos_down")):
            v = _num(stream, key)
            if v is not None:
                mos.add_metric(lab + ["stream", direction], v)
        for direction in ("down", "up"):
            v = _num(raw.get("bandwidth"), f"{direction}_mbps")
            if v is not None:
                tput.add_metric(lab + ["bandwidth", direction], _si(v, 1e6))
        v = _num(raw.get("capacity"), "max_calls")
        if v is not None:
            cap.add_metric(lab + ["capacity"], v)
        for c in _latest_checks(profile, store, name, run, rec, now):
            status.add_metric(lab + [c.id.split(".", 1)[0], c.id], float(STATUS_VALUE.get(c.status, 3)))
            if c.status != "pass" and c.cause is not None:
                cause.add_metric(lab + [c.id.split(".", 1)[0], c.id, c.cause], 1.0)
        verdict.add_metric(lab, float(VERDICT_VALUE.get(rec.verdict, 2)))
        last.add_metric(lab, run.started_at.timestamp())
    out = [rtt, jitter, loss, mos, tput, cap, planned, status, cause, verdict, last]
    if gate_decision is not None:
        g = GaugeMetricFamily("cutover_gate_go", "1 when the termination gate says GO", labels=["site"])
        g.add_metric([site], 1.0 if gate_decision.decision == "GO" else 0.0)
        out.append(g)
    return out


class _Collector:
    def __init__(self, fams: Callable[[], list]):
        self._fams = fams

    def collect(self):
        yield from self._fams()


def render(profile, store, now: dt.datetime | None = None, with_gate: bool = True) -> str:
    """The exposition text for the latest results."""
    decision = None
    if with_gate:
        from harness.gate import decide
        decision = decide(profile, store, now=now)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(lambda: families(profile, store, now, decision)))
    return generate_latest(registry).decode("utf-8")


def write_prom_file(*args) -> Path:
    """``write_prom_file(path, text)`` writes ``text``;
    ``write_prom_file(profile, store, path)`` renders the latest results first
    (what ``cutover check --prom-file`` calls).

    Atomic (tmp file in the same folder, fsync, rename), so node_exporter's
    textfile collector never reads half a file. The tmp name does not end in
    .prom, which the collector would pick up."""
    if len(args) == 2:
        path, text = args
    elif len(args) == 3:
        profile, store, path = args
        text = render(profile, store)
    else:
        raise TypeError("write_prom_file(path, text) or write_prom_file(profile, store, path)")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    return p


# ---------------------------------------------------------------- HTTP

class _Handler(BaseHTTPRequestHandler):
    server: ExporterServer                # the server it is made for (http.server types it BaseServer)
    server_version = "cutover-exporter"
    timeout = 10                          # a stuck client cannot hold a thread forever

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            from harness.store import StoreError
            try:
                body = self.server.render_metrics().encode("utf-8")
            except StoreError as exc:     # the history cannot be read now (server gone, locked): retried next scrape
                self._send(503, "text/plain; charset=utf-8", f"cutover exporter: {exc}\n".encode())
                return
            except Exception as exc:      # noqa: BLE001 - our bug: a 500 naming its crash file, never a dead exporter
                from harness.runner import write_traceback
                crash = write_traceback(exc, "exporter /metrics")
                self._send(500, "text/plain; charset=utf-8",
                           f"cutover exporter: internal error: {type(exc).__name__}: {exc} (a bug in cutover, "
                           f"not a network fault; traceback written to {crash})\n".encode())
                return
            self._send(200, CONTENT_TYPE, body)
        elif path == "/":
            self._send(200, "text/html; charset=utf-8",
                       b'<html><body><h1>cutover exporter</h1><a href="/metrics">metrics</a></body></html>\n')
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found; try /metrics\n")

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args) -> None:   # quiet: scrapes every 15 s would flood stderr
        pass


class ExporterServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, render_metrics: Callable[[], str]):
        import socket
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)
        self.render_metrics = render_metrics
        self.cutover_state: dict[str, Any] = {}   # make_server's {"store": the open Store or None}


def render_sites(store, now: dt.datetime | None = None, with_gate: bool = True) -> str:
    """The exposition text for every site of the database (a central one):
    each site's figures as :func:`render` gives them for its profile (the one
    stored with its latest run), under one HELP/TYPE per metric, told apart
    by the ``site`` label. A site without a usable stored profile is left out.
    The gate decision is the fleet's (harness.fleet: the summary each run
    keeps, judged again where it is older than the site's latest run), so a
    scrape of 200 sites does not judge 200 gates over weeks of runs."""
    from harness import fleet
    merged: dict[str, GaugeMetricFamily] = {}
    statuses = {st.site: st for st in fleet.fleet(store, now)} if with_gate else {}
    for site in store.sites():
        profile, _why = fleet.site_profile(store, site)
        if profile is None:
            continue
        for fam in families(profile, store, now, statuses.get(site)):
            have = merged.get(fam.name)
            if have is None:
                merged[fam.name] = fam
            else:
                have.samples.extend(fam.samples)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(lambda: list(merged.values())))
    return generate_latest(registry).decode("utf-8")


def make_server(profile, db_path, host: str, port: int) -> ExporterServer:
    """An HTTP server whose /metrics reads the store at each scrape. The store
    is opened on the first scrape after the database exists (the exporter may
    start before the first `cutover check`). ``profile`` None: every site of
    the database (:func:`render_sites`)."""
    from harness.store import Store, StoreError
    lock = threading.Lock()
    state: dict[str, Any] = {"store": None}

    def render_metrics() -> str:
        with lock:
            if state["store"] is None:
                if not db_path.exists():
                    return render_empty(profile) if profile is not None else ""
                state["store"] = Store(db_path)
            try:
                if profile is None:
                    return render_sites(state["store"])
                return render(profile, state["store"])
            except state["store"].Error as exc:   # the engine's own fault, e.g. locked past busy_timeout
                raise StoreError(f"{state['store'].location.display}: cannot read the history: {exc}") from exc

    server = ExporterServer((host, port), render_metrics)
    server.cutover_state = state
    return server


def render_empty(profile) -> str:
    registry = CollectorRegistry(auto_describe=False)
    g = GaugeMetricFamily("cutover_planned_calls", "Planned peak concurrent calls", labels=["site"])
    g.add_metric([profile.site], float(profile.planned.calls))
    registry.register(_Collector(lambda: [g]))
    return generate_latest(registry).decode("utf-8")
