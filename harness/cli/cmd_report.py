"""`cutover report`: readiness report over the stored history."""

from __future__ import annotations

import click

from harness.cli.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNMEASURED, die, emit_json, json_option, \
    load_profile_or_exit, option, out
from harness.cli.history_common import as_of_option, db_option, db_path, open_store, parse_since, resolve_now


@click.command("report", help="""Readiness report over the stored history.

\b
Per circuit and metric: latest values, trends over the window, daily pass
rates, old vs new side by side, the outage and SLA breach log with claim
deadlines, and the termination gate. Formats: md (Markdown), html (one
self-contained file with charts, opens offline), json, junit (one testcase
per check of the latest run of each circuit), pdf (the HTML printed by
headless Chromium, for email attachments; asked for by name).

\b
Example:
  cutover report site.yaml --since 7d --format md,html --report-dir reports/""")
@click.argument("profile", metavar="PROFILE")
@click.option("--since", default="7d", metavar="DURATION",
              help="Window: a duration back from now (15m, 24h, 7d, 2w) or an ISO date.  [default: 7d]")
@click.option("--format", "formats", default="md,html,json,junit", metavar="md,html,json,junit,pdf",
              help="Comma-separated formats; 'all' is md,html,json,junit.  [default: all]")
@option("--report-dir", "out_dir", aliases=("--out",), default="cutover-report", metavar="DIR",
        help="Folder for the report files (created).  [default: ./cutover-report]")
@db_option
@as_of_option
@json_option
def command(profile, since, formats, out_dir, db, as_of, as_json):
    from harness.reports import build_report, parse_formats, write_reports
    from harness.reports.common import dur
    prof = load_profile_or_exit(profile)
    try:
        fmts = parse_formats(formats)
    except ValueError as exc:
        die(EXIT_BAD_INPUT, f"--format: {exc}")
    now = resolve_now(as_of)
    start = parse_since(since, now)
    if start >= now:
        die(EXIT_BAD_INPUT, f"--since {since!r} is not before {now.isoformat()}")
    path = db_path(prof, db)
    if not path.exists():
        die(EXIT_UNMEASURED, f"no history database at {path}; run `cutover check {profile}` first or pass --db")
    store = open_store(path)
    report = build_report(prof, store, since=start, now=now)
    if report.analysis.runs == 0:
        die(EXIT_UNMEASURED, f"no runs of site {prof.site!r} in {path} since {start.isoformat()}; "
                             "widen --since or run `cutover check` first")
    from harness.reports.pdf import PdfError
    try:
        paths = write_reports(prof, store, out_dir, fmts, report=report)
    except OSError as exc:
        die(EXIT_BAD_INPUT, f"--report-dir {out_dir}: cannot write the report: {exc}")
    except PdfError as exc:
        die(EXIT_BAD_INPUT, f"--format pdf: {exc}")
    outages = report.analysis.all_outages()
    if as_json:
        d = report.to_dict()
        d["files"] = [str(p) for p in paths]
        d["db"] = str(path)
        emit_json(d)
    else:
        a = report.analysis
        out(f"{prof.site}: {a.runs} runs from {start:%Y-%m-%d %H:%M} to {now:%Y-%m-%d %H:%M} UTC; "
                   f"latest verdict {report.verdict}")
        for ch in a.circuits.values():
            rate = "-" if ch.pass_pct is None else f"{ch.pass_pct:.1f} %"
            out(f"  {ch.name:<12} {ch.role:<7} pass rate {rate:>8}  outages {len(ch.outages)}"
                       f"  latest {ch.latest_verdict or '-'}")
        ongoing = [o for o in outages if o.ongoing]
        if ongoing:
            out(f"  ongoing outage(s): {', '.join(o.circuit for o in ongoing)}")
        for o in outages:
            claim = "ongoing" if o.claim_by is None else f"claim by {o.claim_by:%Y-%m-%d %H:%M} UTC"
            out(f"  outage {o.id}: {o.kind}, {dur(o.duration_s)}, {claim}")
        if report.gate:
            out(f"termination gate: {report.gate.decision}"
                       + (f" ({len(report.gate.blocking)} blocking)" if report.gate.blocking else ""))
        for p in paths:
            out(f"report: {p}")
    raise SystemExit(EXIT_OK)
