"""`cutover fleet`: every site of a (central) history database, most urgent first."""

from __future__ import annotations

import click

from harness.cli.common import EXIT_OK, EXIT_UNMEASURED, die, duration_or_exit, emit_json, json_option
from harness.cli.history_common import as_of_option, db_path, open_store, resolve_now


@click.command("fleet", help="""Every site in the database: phase, gate, dates, outages, quiet probes.

\b
For each site with runs in the database (usually the central PostgreSQL one
all probes write to): its phase (before the parallel run, day N of it,
ready, old service terminated), the gate decision and the first thing that
blocks it, the notice-by and disconnect dates, open outages and the nearest
SLA claim deadline, and how long ago its last run started (a probe that
went quiet is flagged). Sorted by what needs attention first: open outage,
claim due within 24 h, quiet probe, notice due within 7 days, NO-GO, ready,
before the parallel run, terminated.

\b
Each site is judged from the profile stored with its latest run. Every
`cutover check` (and `cutover signoff`) keeps the site's judgement in the
database; the fleet reads it and brings the age of the last run to now
(--live judges every site again). Mark a terminated service with
  cutover signoff site.yaml old-service-terminated --by NAME

\b
The same list in the terminal, where Enter opens a site's board:
  cutover board --db postgresql://cutover@db.example/cutover

\b
Examples:
  cutover fleet --db postgresql://cutover@db.example/cutover
  cutover fleet --json | jq '.sites[] | select(.quiet)'

Exit codes: 0 listed, 2 bad --db/--quiet-after, 3 no database there or the
server cannot be reached.""")
@click.option("--db", default=None, metavar="PATH|URL",
              help="History database (default: $CUTOVER_DB, else ~/.local/share/cutover/history.sqlite).")
@click.option("--quiet-after", "quiet_after", default=None, metavar="DURATION",
              help="Flag a probe whose last run is older than this (e.g. 2h). Default: 3x the site's "
                   "usual interval between runs, at least 30m.")
@click.option("--live", is_flag=True,
              help="Judge every site now from its runs instead of reading the summary each run keeps "
                   "(slower: about 0.2 s per site with 30 days of 5-minute runs).")
@as_of_option
@json_option
def command(db, quiet_after, live, as_of, as_json):
    from harness import fleet
    threshold = duration_or_exit("--quiet-after", quiet_after) if quiet_after else None
    now = resolve_now(as_of)
    loc = db_path(None, db)
    if not loc.exists():
        die(EXIT_UNMEASURED, f"no history database at {loc}; pass --db or set $CUTOVER_DB")
    store = open_store(loc)
    # a past --as-of cannot use summaries judged later: fleet() judges those sites again
    sites = fleet.fleet(store, now=now, quiet_after=threshold, live=live)
    store.close()
    if as_json:
        emit_json({"db": str(loc), "evaluated_at": now.isoformat().replace("+00:00", "Z"),
                   "sites": [s.to_dict() for s in sites]})
        raise SystemExit(EXIT_OK)
    if not sites:
        click.echo(f"{loc}: no sites yet")
        raise SystemExit(EXIT_OK)
    from rich.console import Console
    from rich.table import Table
    t = Table(title=f"cutover fleet: {len(sites)} site(s) in {loc}, {now:%Y-%m-%d %H:%M} UTC")
    from harness.escape import rich_text
    for col in fleet.COLUMNS:
        t.add_column(col)
    for s in sites:
        cells = [rich_text(c) for c in fleet.row_cells(s)]
        if s.quiet:
            cells[-1] = f"[bold red]{cells[-1]}[/]"
        t.add_row(*cells)
    Console(width=200).print(t)
    raise SystemExit(EXIT_OK)
