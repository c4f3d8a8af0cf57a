"""The Markdown report: for tickets, wikis and e-mail. Same sections as the HTML.

Every value from data (site and circuit names, notes, reasons, table cells) goes
through :func:`harness.escape.markdown_text`: no raw HTML or Markdown markup
from a name reaches a viewer that renders it."""

from __future__ import annotations

from harness.escape import markdown_text
from harness.history import METRIC_BY_KEY
from harness.reports.common import (DRILL_HEAD, LATEST_COLUMNS, claim_text, coverage_line, daily_rows, drill_row,
                                    dur, holes_text, latest_cell, outage_end, parallel_text, pct, platform_cell,
                                    platform_table, runs_line, status_cause, summary, trend_text, what_failed, when)
from harness.verdicts import fmt


def _cell(text) -> str:
    return markdown_text(str(text))


def _table(head: list[str], rows: list[list]) -> list[str]:
    out = ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out


def render(report) -> str:
    a, g, p = report.analysis, report.gate, report.profile
    hours = p.cutover.sla_claim_hours
    md = markdown_text
    L: list[str] = [f"# Readiness report: {md(report.site)}", ""]
    L.append(f"Window {when(report.since)} to {when(report.until)}, {md(runs_line(report))}. "
             f"Generated {when(report.generated_at)} by cutover {report.tool_version}.")
    L += ["", f"**Latest verdict: {report.verdict}**", ""]
    L += ["## Summary", ""]
    for line in summary(report):
        L += [md(line), ""]

    if g is not None:
        L += [f"## Termination gate: {g.decision}", ""]
        L.append(f"- Parallel run: {parallel_text(g)}")
        L.append(f"- Termination notice by: **{g.notice_by.isoformat()}** "
                 f"({g.termination_notice_days} days' notice)")
        L.append(f"- Old service disconnect on: **{g.disconnect_on.isoformat()}** "
                 f"(overlap {g.overlap_days} days after {g.proven_on.isoformat()})")
        if g.blocking:
            L += ["", "What blocks termination:", ""] + [f"- {md(b)}" for b in g.blocking]
        L += [""] + _table(["Item", "Status", "Detail", "Signed by", "Note"],
                           [[i.title, i.status, i.detail, i.by or "", i.note] for i in g.items]) + [""]

    L += ["## Circuits: latest values", ""]
    head = ["Circuit", "Role", "Latest", "At", "Pass rate", "Outages"] + [c for c, _ in LATEST_COLUMNS]
    rows = []
    for ch in a.circuits.values():
        rows.append([ch.name, ch.role, ch.latest_verdict or "-", when(ch.latest_at),
                     f"{pct(ch.pass_pct)} ({ch.passed}/{ch.runs})", len(ch.outages)]
                    + [latest_cell(ch, keys) for _, keys in LATEST_COLUMNS])
    L += _table(head, rows) + [""]
    L += ["Evidence coverage (pass rates count measured runs; a gap is not a pass):", ""]
    L += [f"- {md(coverage_line(ch))}" for ch in a.circuits.values()] + [""]
    for ch in a.circuits.values():
        holes = holes_text(ch)
        if len(holes) > 3:
            L += [f"Every hole of {md(ch.name)}: " + "; ".join(md(h) for h in holes) + ".", ""]

    plat = platform_table(report)
    if plat:
        names = list(a.circuits)
        L += ["## Call platforms (latest measurement)", ""]
        L += _table(["Platform"] + [f"{n} ({a.circuits[n].role})" for n in names],
                    [[row["title"]] + [platform_cell(row["circuits"][n]) for n in names] for row in plat]) + [""]

    comparison = a.comparison()
    if comparison and len(a.circuits) > 1:
        names = list(a.circuits)
        L += ["## Old vs new (mean over the window / latest)", ""]
        rows = []
        for row in comparison:
            cells = [f"{fmt(row['circuits'][n]['mean'])} / {fmt(row['circuits'][n]['latest'])}"
                     if n in row["circuits"] else "-" for n in names]
            unit = f" ({row['unit']})" if row["unit"] else ""
            rows.append([row["label"] + unit] + cells + [row["best"] or "-"])
        L += _table(["Metric"] + [f"{n} ({a.circuits[n].role})" for n in names] + ["Better"], rows) + [""]

    L += ["## Trends over the window", ""]
    rows = []
    for ch in a.circuits.values():
        for key, s in ch.metrics.items():
            if s.count:
                unit = f" {s.unit}" if s.unit else ""
                rows.append([ch.name, METRIC_BY_KEY[key].label, s.count, f"{fmt(s.min)}{unit}",
                             f"{fmt(s.mean)}{unit}", f"{fmt(s.p95)}{unit}", f"{fmt(s.max)}{unit}", trend_text(s)])
    L += (_table(["Circuit", "Metric", "Samples", "Min", "Mean", "p95", "Max", "Trend"], rows)
          if rows else ["No measurements in this window."]) + [""]

    L += ["## Daily pass rate", ""]
    rows = daily_rows(a)
    L += (_table(["Date (UTC)"] + list(a.circuits), rows) if rows else ["No runs in this window."]) + [""]

    outages = a.all_outages()
    L += ["## Outage and SLA breach log", ""]
    if outages:
        L.append(f"Claim deadline = end of the outage + {fmt(hours)} h (profile `cutover.sla_claim_hours`). "
                 "Most urgent first. The claim pack of one: `cutover claim PROFILE OUTAGE`.")
        L.append("")
        L += _table(["Outage", "Circuit", "Start", "End", "Duration", "Runs", "Kind", "What failed", "Claim by"],
                    [[o.id, o.circuit, when(o.start) + (" (or earlier)" if o.starts_before_window else ""),
                      outage_end(o), dur(o.duration_s), o.runs, o.kind, what_failed(o), claim_text(o, hours)]
                     for o in outages])
    else:
        L.append("No outages in this window.")
    L.append("")

    L += ["## Failover drills", ""]
    if report.drills:
        L += _table(DRILL_HEAD, [drill_row(d) for d in report.drills]) + [""]
    else:
        L += ["No failover drill stored yet (`cutover probe failover --profile`).", ""]

    L += ["## Latest checks", ""]
    if not report.junit_checks:
        L += ["No circuit has been measured in this window.", ""]
    for circuit, checks in report.junit_checks.items():
        L += [f"### {md(circuit)} ({when(report.junit_run_at.get(circuit))})", ""]
        L += _table(["Check", "Status", "Measured", "Required", "Margin", "Reason"],
                    [[c.id, c.status.upper() + status_cause(c), f"{fmt(c.measured)} {c.unit}".strip(),
                      f"{fmt(c.required)} {c.unit}".strip(), fmt(c.margin), c.reason] for c in checks]) + [""]
    from harness.reports.provider import markdown_section   # the provider scorecard (its own module)
    L += ["", markdown_section(report)]
    return "\n".join(L).rstrip() + "\n"
