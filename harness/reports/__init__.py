"""Readiness reports over the stored history: Markdown, one self-contained
HTML file with inline SVG charts, JSON, JUnit XML, and a PDF of the HTML
(printed by headless Chromium, :mod:`harness.reports.pdf`).

Measure, aggregate and present are separate (flent's lesson): the store holds
runs, :mod:`harness.history` and :mod:`harness.gate` aggregate, and each
module here only renders a :class:`Report`.

``write_reports`` is what ``cutover report`` and ``cutover check --report-dir``
call.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from harness import __version__, gate, history
from harness.reports import common
from harness.verdicts import overall_verdict

UTC = dt.timezone.utc
FORMATS = ("md", "html", "json", "junit", "pdf")
DEFAULT_FORMATS = ("md", "html", "json", "junit")      # pdf needs Chromium: asked for by name
FILE_NAMES = {"md": "report.md", "html": "report.html", "json": "report.json", "junit": "junit.xml",
              "pdf": "report.pdf"}
DEFAULT_WINDOW = dt.timedelta(days=7)
SHARED_READ_SLACK = dt.timedelta(days=2)


@dataclass
class Report:
    profile: object
    site: str
    since: dt.datetime
    until: dt.datetime
    generated_at: dt.datetime
    analysis: history.HistoryAnalysis
    gate: gate.GateDecision | None
    run_id: int | None                    # the run the JUnit file describes (None: latest per circuit)
    junit_checks: dict[str, list] = field(default_factory=dict)     # circuit -> checks
    junit_run_at: dict[str, dt.datetime] = field(default_factory=dict)
    tool_version: str = __version__
    in_progress: list = field(default_factory=list)   # the unfinished latest run, left out of every figure
    drills: list[dict] = field(default_factory=list)  # every stored failover drill up to now, oldest first
    scorecard: list = field(default_factory=list)   # harness.contract.Scorecard per circuit (reports.provider)
    claims: list = field(default_factory=list)      # outages with their claim state (reports.provider)

    @property
    def verdict(self) -> str:
        """Worst of the circuits' latest verdicts (the JUnit run's, when given)."""
        if self.run_id is not None and self.junit_checks:
            from harness.verdicts import circuit_verdict
            return overall_verdict(circuit_verdict(c) for c in self.junit_checks.values())
        vs = [c.latest_verdict for c in self.analysis.circuits.values() if c.latest_verdict]
        return overall_verdict(vs)

    def to_dict(self, with_series: bool = False) -> dict:
        a = self.analysis
        return {
            "site": self.site, "generated_at": history.iso(self.generated_at),
            "since": history.iso(self.since), "until": history.iso(self.until),
            "tool_version": self.tool_version, "verdict": self.verdict, "run_id": self.run_id,
            "runs": a.runs,
            "circuits": {n: c.to_dict(with_series=with_series) for n, c in a.circuits.items()},
            "comparison": a.comparison(),
            "outages": [o.to_dict() for o in a.all_outages()],
            "gate": self.gate.to_dict() if self.gate else None,
            "summary": common.summary(self),
            "in_progress": [{"run_id": r.id, "started_at": history.iso(r.started_at)} for r in self.in_progress],
            "platforms": {row["platform"]: {"title": row["title"], "planned": row["planned"],
                                            "circuits": {n: (s.to_dict() if s else None)
                                                         for n, s in row["circuits"].items()}}
                          for row in common.platform_table(self)},
            "drills": [{**d, "at": history.iso(d["at"])} for d in self.drills],
            "scorecard": [c.to_dict() for c in self.scorecard],
            "claims": list(self.claims),
        }


def build_report(profile, store, since: dt.datetime | None = None, now: dt.datetime | None = None,
                 run_id: int | None = None) -> Report:
    """Read the window [since, now] and analyse it; the gate reads its own
    (longer, but cheap: failing checks and capacity only) window."""
    now = now or dt.datetime.now(UTC)
    since = since or now - DEFAULT_WINDOW
    until = now + dt.timedelta(microseconds=1)          # the store's ``until`` is exclusive
    gate_since = gate.window_start(profile, now)
    # When the gate's window (the parallel run) starts at most a couple of days
    # before the report's, one read serves both; otherwise the gate reads its
    # own, cheaper one (new circuits' failing checks and capacity only).
    shared = since - SHARED_READ_SLACK <= gate_since
    first = min(since, gate_since) if shared else since
    read = history.load_runs(store, profile.site, first, until)
    read_series = history.load_series(store, profile.site, first, until)
    gate_read, gate_read_series = read, read_series      # the gate judges what the store holds
    in_progress = history.unfinished_latest(read, now)
    if in_progress:            # read again up to its start: the latest checks are the run before it
        cut = in_progress[0].started_at
        read = history.load_runs(store, profile.site, first, cut)
        if read_series is not None:
            read_series = {c: {k: [p for p in pts if p[0] < cut] for k, pts in m.items()}
                           for c, m in read_series.items()}
    runs, series = _from(read, read_series, since)
    analysis = history.analyze(runs, profile, since=since, now=now, series=series)
    if any(o.starts_before_window for ch in analysis.circuits.values() for o in ch.outages):
        # an outage was already under way when the window opened: find its true
        # start in the runs before (verdicts and failing checks only; rare, so paid only then)
        back = min(since - dt.timedelta(days=30), gate.window_start(profile, now))
        earlier = store.runs(profile.site, since=back, until=since, checks="failing")
        analysis = history.analyze(runs, profile, since=since, now=now, series=series,
                                   outage_runs=earlier + runs)
    from harness.suite.failover import drill_summaries
    drills = drill_summaries(store.runs(profile.site, until=until, kind="drill"))
    if shared:     # the same inputs as gate.decide: the report's gate is `cutover gate`'s
        gate_runs, gate_series = _from(gate_read, gate_read_series, gate_since)
        decision = gate.evaluate(profile, gate_runs, store.signoffs(profile.site, as_of=now), now,
                                 series=gate_series, drills=[d for d in drills if d["at"] >= gate_since])
    else:
        decision = gate.decide(profile, store, now=now)
    junit_checks: dict[str, list] = {}
    junit_at: dict[str, dt.datetime] = {}
    the_run = store.run(run_id) if run_id is not None else None
    if the_run is not None:
        for name, rec in the_run.circuits.items():
            junit_checks[name] = list(rec.checks)
            junit_at[name] = the_run.started_at
    else:
        run_id = None
        for name, ch in analysis.circuits.items():
            if ch.latest_at is not None:
                junit_checks[name] = list(ch.latest_checks)
                junit_at[name] = ch.latest_at
    from harness.reports import provider
    return Report(profile=profile, site=profile.site, since=since, until=now, generated_at=now,
                  analysis=analysis, gate=decision, run_id=run_id, junit_checks=junit_checks,
                  junit_run_at=junit_at, in_progress=in_progress, drills=drills,
                  scorecard=provider.build(profile, store, analysis, since, now),
                  claims=provider.claim_rows(profile, store, analysis, now))


def _from(runs, series, since: dt.datetime):
    """The runs and metric series from ``since`` on (both oldest first)."""
    if runs and runs[0].started_at >= since:
        return runs, series
    runs = [r for r in runs if r.started_at >= since]
    if series is not None:
        series = {c: {k: [p for p in pts if p[0] >= since] for k, pts in m.items()} for c, m in series.items()}
    return runs, series


def parse_formats(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"md,html"`` -> ("md", "html"); ``all`` is every format. ValueError names the bad one."""
    items = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text)]
    items = [p for p in items if p]
    if not items:
        raise ValueError(f"no report format given; expected some of {','.join(FORMATS)}")
    out: list[str] = []
    for p in items:
        if p == "all":
            out.extend(f for f in DEFAULT_FORMATS if f not in out)
            continue
        p = {"markdown": "md", "xml": "junit"}.get(p, p)
        if p not in FORMATS:
            from probes.names import unknown_name
            raise ValueError(unknown_name("report format", p, FORMATS, lead="unknown") + " (or all)")
        if p not in out:
            out.append(p)
    return tuple(out)


def render(report: Report, fmt: str) -> str:
    if fmt == "md":
        from harness.reports.markdown import render as r
    elif fmt == "html":
        from harness.reports.html import render as r
    elif fmt == "json":
        from harness.reports.json_report import render as r
    elif fmt == "junit":
        from harness.reports.junit import render as r
    else:
        raise ValueError(f"unknown report format {fmt!r}")
    return r(report)


def _atomic_write(path: Path, text: str) -> None:
    """tmp + rename: a reader (a web server, CI) never sees half a report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_reports(profile, store, out_dir, formats=DEFAULT_FORMATS, since: dt.datetime | None = None,
                  now: dt.datetime | None = None, run_id: int | None = None,
                  report: Report | None = None) -> list[Path]:
    """Write the requested formats into ``out_dir`` (created if needed) and
    return the paths, in the order of ``formats``."""
    formats = parse_formats(formats)
    report = report or build_report(profile, store, since=since, now=now, run_id=run_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = out / FILE_NAMES[fmt]
        if fmt == "pdf":
            from harness.reports.pdf import write_pdf
            write_pdf(render(report, "html"), path)
        else:
            _atomic_write(path, render(report, fmt))
        paths.append(path)
    return paths
