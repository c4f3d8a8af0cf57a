"""One judgement (issue #13): a result on or around a threshold edge gets the
same status everywhere it is shown.

For each row, one probe result is placed on or beside an edge (delay, jitter,
loss per direction, MOS with its warn band, bandwidth, capacity, sender
health, a stateless reflector). Then, for that one result:

- the exit code of `cutover probe <probe> --profile` (the probe's run
  replaced by the result; everything after it is the real command),
- the status in `cutover check --json` (the step's measure replaced by the
  result; the run is stored in a real database),
- the status the board shows (harness.tui.loader over that database),
- the status in every report format (JSON, Markdown, HTML, JUnit),
- the Prometheus value (cutover_check_status)

must all agree with the status computed by hand in the row. Thresholds:
one-way delay 150 ms, jitter 30 ms, loss 1 %, MOS 4.0; warn band 10 % (2.5 %
for MOS) on the good side of each threshold.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

import pytest
from click.testing import CliRunner

from harness.cli import cli as cli_group
from harness.escape import markdown_text
from harness.exporter import STATUS_VALUE, render
from harness.planning import plan_profile
from harness.profile import load_profile
from harness.reports import write_reports
from harness.store import Store
from harness.tui.loader import load_board
from harness.tui.model import METRIC_CHECKS

PROFILE = """\
site: Edge lab
planned: {calls: 20, codec: g711, ptime_ms: 20, other_mbps: 5, headroom_pct: 20}
thresholds: {one_way_delay_ms: 150, jitter_ms: 30, loss_pct: 1.0, mos_min: 4.0, jitter_buffer_ms: 60}
circuits:
  - {name: new, role: new, down_mbps: 10, up_mbps: 40, reflector: "127.0.0.1:9"}
cutover:
  parallel_run_start: 2026-11-01
"""
EXIT = {"pass": 0, "warn": 0, "fail": 1, "error": 3}


def stream_raw(**over) -> dict:
    """A clean stream result (every figure well inside its threshold)."""
    raw = {"probe": "stream", "measured": True, "partial": False, "errors": [], "target": "127.0.0.1:9",
           "codec": "g711", "ptime_ms": 20, "calls": 1, "direction_split": True,
           "mos": 4.37, "jitter_ms": {"up": 2.0, "down": 2.0}, "loss_pct": {"up": 0.0, "down": 0.0, "total": 0.0},
           "rtt_ms": {"min": 10.0, "mean": 20.0, "p50": 20.0, "p95": 40.0, "p99": 45.0, "max": 50.0},
           "dscp": {"sent": 46, "received": 46, "preserved": True},
           "sender": {"lateness_ms": {"p50": 0.05, "p99": 0.2}, "rx_dropped": 0, "limited": False, "reason": None},
           "packets": {"sent": 1000, "received": 1000}}
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(raw.get(k), dict):
            raw[k] = {**raw[k], **v}
        else:
            raw[k] = v
    return raw


def capacity_raw(max_calls: int, limit: str | None, **over) -> dict:
    raw = {"probe": "capacity", "measured": True, "partial": False, "errors": [], "codec": "g711",
           "max_calls": max_calls, "planned_calls": 20, "limit": limit,
           "first_fail_calls": None if limit in (None, "max_calls", "sender") else max_calls + 1,
           "margin_pct": 100.0 * (max_calls - 20) / 20, "ceiling": 40, "ceiling_source": "contract", "steps": []}
    raw.update(over)
    return raw


def bandwidth_raw(down: float, up: float) -> dict:
    return {"probe": "bandwidth", "measured": True, "partial": False, "errors": [], "down_mbps": down,
            "up_mbps": up, "latency_ms": {}}


@dataclass
class Row:
    name: str
    step: str
    raw: dict
    check: str                 # the check on the edge
    want: str                  # pass | warn | fail | error (hand-computed)
    board: str | None = None   # the board figure it colours (None: not on the board)
    extra: dict = field(default_factory=dict)


def _required():
    plan = plan_profile(_profile_obj())
    return round(plan.required_down_mbps, 3), round(plan.required_up_mbps, 3)


_PROFILE_CACHE: dict = {}


def _profile_obj():
    if "p" not in _PROFILE_CACHE:
        import tempfile
        from pathlib import Path
        d = Path(tempfile.mkdtemp(prefix="cutover-edge-"))
        (d / "site.yaml").write_text(PROFILE)
        _PROFILE_CACHE["p"] = load_profile(d / "site.yaml")
    return _PROFILE_CACHE["p"]


def rows() -> list[Row]:
    req_down, req_up = _required()
    return [
        # MOS >= 4.0; warn below 4.0 x 1.025 = 4.1
        Row("mos on the minimum", "stream", stream_raw(mos=4.0), "stream.mos", "warn", "mos"),
        Row("mos just below", "stream", stream_raw(mos=3.99), "stream.mos", "fail", "mos"),
        Row("mos at the band's top", "stream", stream_raw(mos=4.1), "stream.mos", "pass", "mos"),
        Row("mos inside the band", "stream", stream_raw(mos=4.09), "stream.mos", "warn", "mos"),
        # jitter <= 30; warn above 27
        Row("jitter down on the limit", "stream", stream_raw(jitter_ms={"down": 30.0}), "stream.jitter_down",
            "warn", "jitter_ms"),
        Row("jitter down just over", "stream", stream_raw(jitter_ms={"down": 30.01}), "stream.jitter_down",
            "fail", "jitter_ms"),
        Row("jitter up in the band", "stream", stream_raw(jitter_ms={"up": 27.5}), "stream.jitter_up", "warn",
            "jitter_ms"),
        Row("jitter up below the band", "stream", stream_raw(jitter_ms={"up": 26.9}), "stream.jitter_up", "pass",
            "jitter_ms"),
        # loss <= 1 %; warn above 0.9 %
        Row("loss up on the limit", "stream", stream_raw(loss_pct={"up": 1.0, "total": 0.5}), "stream.loss_up",
            "warn", "loss_pct"),
        Row("loss up just over", "stream", stream_raw(loss_pct={"up": 1.01, "total": 0.5}), "stream.loss_up",
            "fail", "loss_pct"),
        Row("loss down in the band", "stream", stream_raw(loss_pct={"down": 0.95, "total": 0.5}),
            "stream.loss_down", "warn", "loss_pct"),
        Row("loss down clean", "stream", stream_raw(loss_pct={"down": 0.5, "total": 0.25}), "stream.loss_down",
            "pass", "loss_pct"),
        # one-way delay = RTT p95 / 2 <= 150; warn above 135. A low mean / p50 does not hide the tail.
        Row("delay on the limit", "stream", stream_raw(rtt_ms={"p95": 300.0, "p99": 310.0, "max": 320.0}),
            "stream.delay", "warn", "rtt_ms"),
        Row("delay over, mean and p50 low", "stream",
            stream_raw(rtt_ms={"mean": 120.0, "p50": 100.0, "p95": 300.2, "p99": 310.0, "max": 320.0}),
            "stream.delay", "fail", "rtt_ms"),
        Row("delay below the band", "stream", stream_raw(rtt_ms={"p95": 260.0, "p99": 265.0, "max": 270.0}),
            "stream.delay", "pass", "rtt_ms"),
        # a stateless reflector: round-trip figures only
        Row("stateless loss over", "stream",
            stream_raw(direction_split=False, loss_pct={"up": None, "down": None, "total": 1.2},
                       jitter_ms={"up": None, "down": None, "rtt": 3.0}), "stream.loss", "fail", "loss_pct"),
        Row("stateless jitter in the band", "stream",
            stream_raw(direction_split=False, loss_pct={"up": None, "down": None, "total": 0.0},
                       jitter_ms={"up": None, "down": None, "rtt": 29.0}), "stream.jitter", "warn", "jitter_ms"),
        # sender health, for a probe that does not judge itself: p99 lateness > max(1 ms, 20 ms / 1 call)
        Row("sender over its limit", "stream",
            stream_raw(sender={"lateness_ms": {"p99": 20.5}, "limited": None, "rx_dropped": 0}),
            "stream.sender", "warn"),
        Row("sender on its limit", "stream",
            stream_raw(sender={"lateness_ms": {"p99": 20.0}, "limited": None, "rx_dropped": 0}),
            "stream.sender", "absent"),
        # capacity >= 20 planned; warn below 22; a ramp stopped at its ceiling is "at least"
        Row("capacity on the plan", "capacity", capacity_raw(20, "loss"), "capacity.calls", "warn", "max_calls"),
        Row("capacity below the plan", "capacity", capacity_raw(19, "loss"), "capacity.calls", "fail",
            "max_calls"),
        Row("capacity above the band", "capacity", capacity_raw(22, "jitter"), "capacity.calls", "pass",
            "max_calls"),
        Row("capacity ceiling = plan", "capacity", capacity_raw(20, "max_calls", ceiling=20), "capacity.calls",
            "pass", "max_calls"),
        Row("capacity sender-limited", "capacity", capacity_raw(12, "sender"), "capacity.calls", "error",
            "max_calls"),
        # bandwidth >= what the plan needs; warn below x 1.1
        # (contract 10 / 40 Mbit/s: its 80 % floors, 8 and 32, pass in every row)
        Row("bandwidth down on the need", "bandwidth", bandwidth_raw(req_down, 35.0), "bandwidth.down", "warn",
            "down_mbps"),
        Row("bandwidth down short", "bandwidth", bandwidth_raw(round(req_down - 0.01, 3), 35.0),
            "bandwidth.down", "fail", "down_mbps"),
        Row("bandwidth up with room", "bandwidth", bandwidth_raw(9.5, 35.0), "bandwidth.up", "pass", "up_mbps"),
    ]


ROWS = rows()


class _Result:
    def __init__(self, raw: dict) -> None:
        self._raw = raw
        self.measured = raw["measured"]
        self.partial = raw["partial"]
        self.errors = list(raw["errors"])

    def to_dict(self) -> dict:
        return json.loads(json.dumps(self._raw))


PROBE_RUN = {"stream": "probes.stream", "capacity": "probes.capacity", "bandwidth": "probes.bandwidth"}


def _probe_exit(monkeypatch, row: Row, prof) -> int:
    import importlib
    mod = importlib.import_module(PROBE_RUN[row.step])
    monkeypatch.setattr(mod, "run", lambda cfg, progress=None, stop=None: _Result(row.raw))
    r = CliRunner().invoke(cli_group, ["probe", row.step, "--profile", str(prof), "--circuit", "new", "--json"])
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code


def _check_json(monkeypatch, row: Row, prof, db) -> dict:
    import importlib
    step = importlib.import_module(f"harness.suite.{row.step}")
    monkeypatch.setattr(step, "measure", lambda *a, **kw: json.loads(json.dumps(row.raw)))
    monkeypatch.setattr("harness.runner.reflector_problem", lambda *a, **kw: None)
    r = CliRunner().invoke(cli_group, ["check", str(prof), "--step", row.step, "--db", str(db), "--json",
                                       "--quiet"])
    assert r.exit_code in (0, 1, 3), (r.exit_code, r.stderr, r.exception)
    return json.loads(r.stdout)


def _status_in(checks: list[dict], cid: str) -> str:
    found = [c["status"] for c in checks if c["id"] == cid]
    return found[0] if found else "absent"


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_one_status_everywhere(row: Row, tmp_path, monkeypatch):
    prof = tmp_path / "site.yaml"
    prof.write_text(PROFILE)
    db = tmp_path / "h.sqlite"
    profile = load_profile(prof)

    # the probe command with --profile
    code = _probe_exit(monkeypatch, row, prof)
    if row.want != "absent":
        assert code == EXIT[row.want], f"probe {row.step} exit {code}"
    else:
        assert code == 0

    # cutover check --json (stored in db)
    out = _check_json(monkeypatch, row, prof, db)
    checks = out["circuits"]["new"]["checks"]
    assert _status_in(checks, row.check) == row.want
    others = [c for c in checks if c["id"] != row.check]
    assert all(c["status"] == "pass" for c in others), others       # the row moves one check only

    now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)
    with Store(db) as store:
        # the board: the stored status, never re-judged
        if row.board:
            board = load_board(profile, store, now)
            (circuit,) = board.circuits
            fig = next(m for m in circuit.metrics if m.key == row.board)
            assert row.check in METRIC_CHECKS[row.board]
            assert fig.status == row.want, fig
        # every report format
        write_reports(profile, store, tmp_path / "rep", now=now)
        # the exporter
        prom = render(profile, store, now=now, with_gate=False)
    rep = tmp_path / "rep"
    report = json.loads((rep / "report.json").read_text())
    latest = report["circuits"]["new"]["latest_checks"] if isinstance(report["circuits"], dict) else \
        next(c for c in report["circuits"] if c["name"] == "new")["latest_checks"]
    assert _status_in(latest, row.check) == row.want
    md = (rep / "report.md").read_text()
    md_rows = [line for line in md.splitlines() if line.startswith(f"| {markdown_text(row.check)} |")]
    html = (rep / "report.html").read_text()
    html_rows = re.findall(rf"<tr><td>{re.escape(row.check)}</td><td>(.*?)</td>", html)
    junit = ET.parse(rep / "junit.xml").getroot()
    cases = [c for c in junit.iter("testcase") if c.get("name") == row.check]
    metric = re.findall(rf'cutover_check_status{{[^}}]*check="{re.escape(row.check)}"[^}}]*}} (\S+)', prom)
    if row.want == "absent":
        assert not md_rows and not html_rows and not cases and not metric
        return
    assert len(md_rows) == 1 and md_rows[0].split("|")[2].strip().split(" ")[0] == row.want.upper()
    assert len(html_rows) == 1 and re.search(rf">{row.want.upper()}<|>{row.want}<", html_rows[0]), html_rows
    (case,) = cases
    junit_status = ("fail" if case.find("failure") is not None else
                    "error" if case.find("error") is not None else None)
    text = "".join(case.itertext())
    assert f"status: {row.want}" in text
    assert junit_status == (row.want if row.want in ("fail", "error") else None)
    assert [float(v) for v in metric] == [float(STATUS_VALUE[row.want])]
    # whose fault: the stored check's cause, and the exporter's, are one (none for a pass)
    stored_cause = next(c["cause"] for c in checks if c["id"] == row.check)
    assert (stored_cause is None) == (row.want == "pass")
    causes = [dict(re.findall(r'(\w+)="([^"]*)"', labels))["cause"]
              for labels in re.findall(r"cutover_check_cause\{([^}]*)\}", prom)
              if f'check="{row.check}"' in labels]
    assert causes == ([] if stored_cause is None else [stored_cause]), (causes, stored_cause)


def test_the_table_covers_every_edge():
    """At least 20 results, and every kind of edge the issue names is in the table."""
    assert len(ROWS) >= 20
    ids = {r.check for r in ROWS}
    assert {"stream.mos", "stream.jitter_up", "stream.jitter_down", "stream.loss_up", "stream.loss_down",
            "stream.delay", "stream.loss", "stream.jitter", "stream.sender", "capacity.calls",
            "bandwidth.down", "bandwidth.up"} <= ids
    for r in ROWS:   # each status of each edge is on the side the hand computation says
        assert r.want in ("pass", "warn", "fail", "error", "absent")


def test_sender_limit_is_one_definition():
    """max(1 ms, ptime / calls): the suite's rule equals the engine's (probes/engine/analysis.py)."""
    from harness.judgement import sender_lateness_limit_ms
    from probes.engine import analysis as enginestats
    assert sender_lateness_limit_ms(20, 1) == 20.0
    assert sender_lateness_limit_ms(20, 40) == 1.0           # 0.5 ms -> at least 1 ms
    assert sender_lateness_limit_ms(20, 10) == 2.0
    import inspect
    assert "max(1.0, ptime_ms / max(1, calls))" in inspect.getsource(enginestats)
