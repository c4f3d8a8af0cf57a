"""The HTML report: ONE self-contained file (inline CSS, inline SVG charts, no
scripts, no external URLs) that opens offline in any browser.

Per circuit: latency, jitter, loss and throughput over the window, with the
profile's limits as dashed lines and outages shaded red.
"""

from __future__ import annotations

import datetime as dt
from html import escape

from harness.history import METRIC_BY_KEY
from harness.reports.charts import Series, line_chart
from harness.reports.common import (LATEST_COLUMNS, claim_text, coverage_line, daily_rows, dur, latest_cell,
                                    outage_end, pct, status_cause, trend_text, what_failed, when)
from harness.verdicts import fmt

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d232a;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}.meta{color:#5b6570}
table{border-collapse:collapse;margin:6px 0 12px;width:100%}
th,td{border:1px solid #dfe3e8;padding:4px 7px;text-align:left;vertical-align:top}
th{background:#f3f5f7;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;white-space:nowrap;padding:2px 9px;border-radius:10px;font-weight:700;color:#fff}
.GO,.ok,.pass{background:#1e8e3e}.WARN,.warn,.info{background:#d9822b}.NO-GO,.block,.fail,.error{background:#c5221f}
.none{background:#8a939c}
.charts{display:flex;flex-wrap:wrap;gap:10px}
svg.chart{background:#fff;border:1px solid #e3e7eb;border-radius:4px}
svg .ct{font-size:12px;font-weight:600;fill:#1d232a}svg .tick{font-size:10px;fill:#5b6570}
svg .lg{font-size:10px;font-weight:600}svg .na{font-size:12px;fill:#8a939c}
svg .grid{stroke:#eef1f4;stroke-width:1}svg .limit{stroke:#888;stroke-dasharray:5 4;stroke-width:1}
svg .outage{fill:#c5221f;fill-opacity:.16}
.bar{display:inline-block;height:9px;background:#1e8e3e;vertical-align:middle;margin-right:6px}
ul.blocking li{color:#8c1815}
"""


def _badge(text: str) -> str:
    return f'<span class="badge {escape(text)}">{escape(text)}</span>'


def _table(head: list[str], rows: list[list[str]], num_cols: tuple[int, ...] = ()) -> str:
    """Cells are already-escaped HTML."""
    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in num_cols else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def _chart_start(report):
    """The window's start, or shortly before the first run when the history is
    younger than the window (a first `check --report-dir`): no empty week."""
    firsts = [pts[0][0] for ch in report.analysis.circuits.values() for pts in ch.series.values() if pts]
    if not firsts:
        return report.since
    first = min(firsts)
    margin = max((report.until - first) * 0.05, dt.timedelta(minutes=30))
    return max(report.since, first - margin)


def _charts(report, ch) -> str:
    th = report.profile.thresholds
    shade = [(o.start, o.end or report.until) for o in ch.outages]
    common = dict(start=_chart_start(report), end=report.until, shade=shade)
    s = ch.series

    def attrs(metric: str) -> dict[str, str]:
        return {"circuit": ch.name, "metric": metric}

    charts = [
        line_chart(f"{ch.name}: latency (RTT p50)", "ms", [Series("RTT p50", s.get("rtt_p50_ms", []))],
                   limit=2 * th.one_way_delay_ms, limit_label="RTT limit", data_attrs=attrs("latency"), **common),
        line_chart(f"{ch.name}: jitter", "ms", [Series("up", s.get("jitter_up_ms", [])),
                                               Series("down", s.get("jitter_down_ms", []))],
                   limit=th.jitter_ms, data_attrs=attrs("jitter"), **common),
        line_chart(f"{ch.name}: loss", "%", [Series("up", s.get("loss_up_pct", [])),
                                            Series("down", s.get("loss_down_pct", []))],
                   limit=th.loss_pct, data_attrs=attrs("loss"), **common),
        line_chart(f"{ch.name}: throughput", "Mbit/s", [Series("down", s.get("down_mbps", [])),
                                                       Series("up", s.get("up_mbps", []))],
                   worst_is_high=False, data_attrs=attrs("throughput"), **common),
    ]
    return '<div class="charts">' + "".join(charts) + "</div>"


def render(report) -> str:
    a, g, p = report.analysis, report.gate, report.profile
    hours = p.cutover.sla_claim_hours
    e = escape
    out: list[str] = ['<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
                      f"<title>Readiness report: {e(report.site)}</title>",
                      '<meta name="viewport" content="width=device-width,initial-scale=1">',
                      f"<style>{CSS}</style></head><body>"]
    out.append(f"<h1>Readiness report: {e(report.site)} {_badge(report.verdict)}</h1>")
    out.append(f'<p class="meta">Window {e(when(report.since))} to {e(when(report.until))}, '
               f'{a.runs} run{"" if a.runs == 1 else "s"}. '
               f"Generated {e(when(report.generated_at))} by cutover {e(report.tool_version)}.</p>")

    if g is not None:
        out.append(f'<h2 id="gate">Termination gate {_badge(g.decision)}</h2>')
        out.append(f"<p>Parallel run: day {g.parallel_days if g.parallel_days is not None else '-'} of "
                   f"{g.min_parallel_days}. Termination notice by <b>{g.notice_by.isoformat()}</b> "
                   f"({g.termination_notice_days} days' notice); old service disconnect on "
                   f"<b>{g.disconnect_on.isoformat()}</b>, an overlap of {g.overlap_days} days after "
                   f"{g.proven_on.isoformat()}.</p>")
        if g.blocking:
            out.append('<p>What blocks termination:</p><ul class="blocking">'
                       + "".join(f"<li>{e(b)}</li>" for b in g.blocking) + "</ul>")
        out.append(_table(["Item", "Status", "Detail", "Signed by", "Note"],
                          [[e(i.title), _badge(i.status), e(i.detail), e(i.by or ""), e(i.note)] for i in g.items]))

    out.append('<h2 id="circuits">Circuits: latest values</h2>')
    rows = []
    for ch in a.circuits.values():
        rate = ch.pass_pct
        bar = f'<span class="bar" style="width:{max(0, min(100, rate or 0)) * 0.6:.0f}px"></span>' if rate else ""
        rows.append([e(ch.name), e(ch.role), _badge(ch.latest_verdict or "none"), e(when(ch.latest_at)),
                     f"{bar}{e(pct(rate))} ({ch.passed}/{ch.runs})", str(len(ch.outages))]
                    + [e(latest_cell(ch, keys)) for _, keys in LATEST_COLUMNS])
    out.append(_table(["Circuit", "Role", "Latest", "At", "Pass rate", "Outages"] + [c for c, _ in LATEST_COLUMNS],
                      rows, num_cols=tuple(range(5, 6 + len(LATEST_COLUMNS)))))
    out.append('<p class="meta" id="coverage">Evidence coverage (pass rates count measured runs; a gap is '
               'not a pass):<br>' + "<br>".join(e(coverage_line(ch)) for ch in a.circuits.values()) + "</p>")

    out.append('<h2 id="charts">Over time</h2><p class="meta">Each point is the worst value in its time '
               "bucket; dashed lines are the profile's limits; red bands are outages.</p>")
    for ch in a.circuits.values():
        out.append(f"<h3>{e(ch.name)} ({e(ch.role)}{', ' + e(ch.provider) if ch.provider else ''})</h3>")
        out.append(_charts(report, ch))

    comparison = a.comparison()
    if comparison and len(a.circuits) > 1:
        names = list(a.circuits)
        out.append('<h2 id="compare">Old vs new <span class="meta">(mean over the window / latest)</span></h2>')
        rows = []
        for row in comparison:
            cells = [e(f"{fmt(row['circuits'][n]['mean'])} / {fmt(row['circuits'][n]['latest'])}")
                     if n in row["circuits"] else "-" for n in names]
            unit = f" ({row['unit']})" if row["unit"] else ""
            rows.append([e(row["label"] + unit)] + cells + [e(row["best"] or "-")])
        out.append(_table(["Metric"] + [f"{n} ({a.circuits[n].role})" for n in names] + ["Better"], rows,
                          num_cols=tuple(range(1, 1 + len(names)))))

    out.append('<h2 id="trends">Trends over the window</h2>')
    rows = []
    for ch in a.circuits.values():
        for key, s in ch.metrics.items():
            if s.count:
                rows.append([e(ch.name), e(METRIC_BY_KEY[key].label + (f" ({s.unit})" if s.unit else "")),
                             str(s.count), fmt(s.min), fmt(s.mean), fmt(s.p95), fmt(s.max), e(trend_text(s))])
    out.append(_table(["Circuit", "Metric", "Samples", "Min", "Mean", "p95", "Max", "Trend"], rows,
                      num_cols=(2, 3, 4, 5, 6)) if rows else "<p>No measurements in this window.</p>")

    out.append('<h2 id="daily">Daily pass rate</h2>')
    rows = [[e(cell) for cell in row] for row in daily_rows(a)]
    out.append(_table(["Date (UTC)"] + list(a.circuits), rows, num_cols=tuple(range(1, 1 + len(a.circuits))))
               if rows else "<p>No runs in this window.</p>")

    outages = a.all_outages()
    out.append('<h2 id="outages">Outage and SLA breach log</h2>')
    if outages:
        out.append(f'<p class="meta">Claim deadline = end of the outage + {fmt(hours)} h '
                   "(profile cutover.sla_claim_hours). Most urgent first.</p>")
        out.append(_table(["Circuit", "Start", "End", "Duration", "Runs", "Kind", "What failed", "Claim by"],
                          [[e(o.circuit), e(when(o.start) + (" (or earlier)" if o.starts_before_window else "")),
                            e(outage_end(o)), e(dur(o.duration_s)), str(o.runs), e(o.kind), e(what_failed(o)),
                            e(claim_text(o, hours))] for o in outages], num_cols=(4,)))
    else:
        out.append("<p>No outages in this window.</p>")

    out.append('<h2 id="checks">Latest checks</h2>')
    for circuit, checks in report.junit_checks.items():
        out.append(f"<h3>{e(circuit)} <span class=\"meta\">{e(when(report.junit_run_at.get(circuit)))}</span></h3>")
        out.append(_table(["Check", "Status", "Measured", "Required", "Margin", "Reason"],
                          [[e(c.id), _badge(c.status) + e(status_cause(c)), e(f"{fmt(c.measured)} {c.unit}".strip()),
                            e(f"{fmt(c.required)} {c.unit}".strip()), e(fmt(c.margin)), e(c.reason)]
                           for c in checks], num_cols=(2, 3, 4)))
    from harness.reports.provider import html_section   # the provider scorecard (its own module)
    out.append(html_section(report))
    out.append("</body></html>\n")
    return "\n".join(out)
