"""`cutover board`: the Textual TUI that tracks the parallel run (issue #7)."""

from __future__ import annotations

import sys

import click

from harness.cli.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNMEASURED, die, duration_or_exit, load_profile_or_exit
from harness.cli.history_common import as_of_option, db_option, db_path, open_store, parse_time


@click.command("board", help="""The cutover board: a terminal UI that tracks the parallel run.

\b
Shows the gate decision and dates, the circuits side by side with sparklines,
the checklist (sign off with s, revoke with x), the outage log; runs checks
on demand (r: selected circuit, a: all) and follows the database as the
scheduler writes. ? shows every key; q quits.

\b
Without PROFILE: the fleet, every site of the database (as `cutover fleet`
shows them, most urgent first); Enter opens a site's board, judged by the
profile stored with its latest run; Escape goes back. Sites opened from the
fleet are measured by their own probes: run now is off there.

\b
Example:
  cutover board site.yaml
  cutover board site.yaml --db /var/lib/cutover/history.sqlite --since 7d
  cutover board --db postgresql://cutover@db.example/cutover      # the fleet""")
@click.argument("profile", metavar="[PROFILE]", required=False)
@db_option
@click.option("--since", "since", default=None, metavar="DURATION",
              help="Window of the sparklines, e.g. 24h or 14d (default: 7d). Pass rates, the outage "
                   "log and the gate always cover the parallel run.")
@as_of_option
@click.option("--quick", "quick", is_flag=True,
              help="Run now (r, a) uses the short suite of `cutover check --quick`.")
@click.option("--poll", "poll_s", default=2.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0.2), help="How often to look for writes by other processes.")
def command(profile, db, since, as_of, quick, poll_s):
    prof = load_profile_or_exit(profile) if profile else None
    window = duration_or_exit("--since", since) if since else None
    fixed_now = parse_time(as_of) if as_of else None     # a frozen clock: demos, reproducing a day
    path = db_path(prof, db)
    if prof is None and not path.exists():
        die(EXIT_UNMEASURED, f"no history database at {path}; pass --db or set $CUTOVER_DB")
    open_store(path).close()      # open/migrate once here so a bad file is a one-line error, not a crash
    if not sys.stdout.isatty():
        die(EXIT_BAD_INPUT, "the board needs a terminal (use `cutover gate` or `cutover report` in scripts)")
    from harness.tui.app import BoardApp   # Textual loads only for this command
    app = BoardApp(prof, path, now=fixed_now, window=window, poll_s=poll_s, quick_runs=quick,
                   background_open=True, signoffs_allowed=fixed_now is None)
    app.run()
    sys.exit(EXIT_OK)
