"""The HTML report: ONE self-contained file (inline CSS, inline SVG charts, no
scripts, no external URLs) that opens offline in any browser.

It opens with the plain-language summary (harness.reports.common.summary),
then one chart per metric with a line per circuit (old, new and backup on the
same axes), the profile's limit dashed, outages shaded red and hours without
any measurement shaded grey; the daily pass rate is a bar chart.
"""

from __future__ import annotations

from html import escape

from harness.history import METRIC_BY_KEY
from harness.reports.charts import Series, bar_chart, line_chart
from harness.reports.common import (DRILL_HEAD, LATEST_COLUMNS, circuit_colours, claim_text, coverage_line,
                                    daily_rows, drill_row, dur, holes_text, latest_cell, outage_end, parallel_text,
                                    pct, platform_cell, platform_table, runs_line, status_cause, summary, trend_text,
                                    what_failed, when)
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
svg .outage{fill:#c5221f;fill-opacity:.16}svg .gap{fill:#8a939c;fill-opacity:.22}
section.summary{background:#f3f7fb;border:1px solid #c9d6e3;border-left:6px solid #1f77b4;border-radius:4px;
padding:8px 16px;margin:12px 0 18px}section.summary p{margin:6px 0;font-size:15px}
table.platforms td{white-space:normal}
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


# (metric key, chart id, limit from the profile's thresholds or None, worst_is_high)
CHART_METRICS = (
    ("rtt_p50_ms", "latency", lambda th: 2 * th.one_way_delay_ms, True),
    ("jitter_up_ms", "jitter-up", lambda th: th.jitter_ms, True),
    ("jitter_down_ms", "jitter-down", lambda th: th.jitter_ms, True),
    ("loss_up_pct", "loss-up", lambda th: th.loss_pct, True),
    ("loss_down_pct", "loss-down", lambda th: th.loss_pct, True),
    ("mos", "mos", lambda th: th.mos_min, False),
    ("down_mbps", "throughput-down", None, False),
    ("up_mbps", "throughput-up", None, False),
    ("capacity_calls", "capacity", None, False),
)


def _gaps(report) -> list[tuple]:
    """Hours no circuit was measured (the intersection of the circuits' holes
    would hide a circuit's own hole; the union shades each circuit's: a grey
    band says 'some circuit has no measurement here', its title names which)."""
    out = []
    for ch in report.analysis.circuits.values():
        cov = ch.coverage
        if cov is None or not cov.measured:      # never measured: its empty line says so, no grey wash
            continue
        for h in cov.holes:
            out.append((h.start, h.end, f"{ch.name}: {h.describe()}"))
    return out


def _charts(report) -> str:
    """One chart per metric, one line per circuit, the limit dashed; metrics
    no circuit measured in the window are left out (the legend says which)."""
    a, th = report.analysis, report.profile.thresholds
    colours = circuit_colours(a)
    shade = [(o.start, o.end or report.until, f"{ch.name}: outage {when(o.start)} to {outage_end(o)}")
             for ch in a.circuits.values() for o in ch.outages]
    gaps = _gaps(report)
    charts, missing = [], []
    for key, css, limit, worst_high in CHART_METRICS:
        m = METRIC_BY_KEY[key]
        series = [Series(n, ch.series.get(key, []), colours[n]) for n, ch in a.circuits.items()]
        if not any(s.points for s in series):
            missing.append(m.label)
            continue
        charts.append(line_chart(m.label, m.unit, series, start=report.since, end=report.until,
                                 limit=limit(th) if limit else None, limit_label="limit",
                                 worst_is_high=worst_high, shade=shade, gaps=gaps,
                                 data_attrs={"metric": css}))
    note = f'<p class="meta">Not measured in this window: {escape(", ".join(missing))}.</p>' if missing else ""
    return '<div class="charts">' + "".join(charts) + "</div>" + note


def _daily_chart(report) -> str:
    a = report.analysis
    colours = circuit_colours(a)
    days = sorted({d.date for ch in a.circuits.values() for d in ch.daily})
    groups = [(n, colours[n], {d.date: d.pass_pct for d in ch.daily}) for n, ch in a.circuits.items()]
    return bar_chart("Daily pass rate", days, groups, target=report.profile.cutover.pass_rate_pct,
                     data_attrs={"metric": "daily-pass-rate"})


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
               f'{e(runs_line(report))}. '
               f"Generated {e(when(report.generated_at))} by cutover {e(report.tool_version)}.</p>")
    out.append('<section class="summary" id="summary"><h2>Summary</h2>'
               + "".join(f"<p>{e(line)}</p>" for line in summary(report)) + "</section>")

    if g is not None:
        out.append(f'<h2 id="gate">Termination gate {_badge(g.decision)}</h2>')
        out.append(f"<p>Parallel run: {e(parallel_text(g))}. Termination notice by <b>{g.notice_by.isoformat()}</b> "
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
    for ch in a.circuits.values():
        holes = holes_text(ch)
        if len(holes) > 3:
            out.append(f'<p class="meta">Every hole of {e(ch.name)}: {e("; ".join(holes))}.</p>')

    plat = platform_table(report)
    if plat:
        names = list(a.circuits)
        out.append('<h2 id="platforms">Call platforms <span class="meta">(latest measurement)</span></h2>')
        out.append(_table(["Platform"] + [f"{n} ({a.circuits[n].role})" for n in names],
                          [[e(row["title"])] + [_platform_html(row["circuits"][n]) for n in names] for row in plat])
                   .replace("<table>", '<table class="platforms">', 1))

    out.append('<h2 id="charts">Over time</h2><p class="meta">One chart per metric, one line per circuit; each '
               "point is the worst value in its time bucket; dashed lines are the profile's limits; red bands "
               "are outages, grey bands hours without measurements (hover for the span).</p>")
    out.append(_charts(report))

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
    if rows:
        out.append(_daily_chart(report))
        out.append(_table(["Date (UTC)"] + list(a.circuits), rows, num_cols=tuple(range(1, 1 + len(a.circuits)))))
    else:
        out.append("<p>No runs in this window.</p>")

    outages = a.all_outages()
    out.append('<h2 id="outages">Outage and SLA breach log</h2>')
    if outages:
        out.append(f'<p class="meta">Claim deadline = end of the outage + {fmt(hours)} h '
                   "(profile cutover.sla_claim_hours). Most urgent first. The claim pack of one: "
                   "<code>cutover claim PROFILE OUTAGE</code>.</p>")
        out.append(_table(["Outage", "Circuit", "Start", "End", "Duration", "Runs", "Kind", "What failed",
                           "Claim by"],
                          [[f"<code>{e(o.id)}</code>", e(o.circuit),
                            e(when(o.start) + (" (or earlier)" if o.starts_before_window else "")),
                            e(outage_end(o)), e(dur(o.duration_s)), str(o.runs), e(o.kind), e(what_failed(o)),
                            e(claim_text(o, hours))] for o in outages], num_cols=(5,)))
    else:
        out.append("<p>No outages in this window.</p>")

    out.append('<h2 id="drills">Failover drills</h2>')
    if report.drills:
        out.append(_table(DRILL_HEAD, [[e(c) for c in drill_row(d)] for d in report.drills]))
    else:
        out.append("<p>No failover drill stored yet (cutover probe failover --profile).</p>")

    out.append('<h2 id="checks">Latest checks</h2>')
    if not report.junit_checks:
        out.append("<p>No circuit has been measured in this window.</p>")
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


def _platform_html(s) -> str:
    text = escape(platform_cell(s))
    if s is None:
        return f'<span class="meta">{text}</span>'
    return _badge("pass" if s.meets else "fail").replace(">pass<", ">meets<").replace(">fail<", ">fails<") + \
        " " + text
