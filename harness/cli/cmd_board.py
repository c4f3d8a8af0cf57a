"""`cutover board`: the Textual TUI that tracks the parallel run (issue #7)."""

from __future__ import annotations

import datetime as dt
import sys

import click

from harness.cli.common import EXIT_BAD_INPUT, EXIT_OK, die, load_profile_or_exit


def _parse_now(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        die(EXIT_BAD_INPUT, f"--now {text!r}: expected an ISO 8601 time such as 2026-11-22T09:00Z")
    return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)


@click.command("board", help="""The cutover board: a terminal UI that tracks the parallel run.

\b
Shows the gate decision and dates, the circuits side by side with sparklines,
the checklist (sign off with s, revoke with x), the outage log; runs checks
on demand (r: selected circuit, a: all) and follows the database as the
scheduler writes. ? shows every key; q quits.

\b
Example:
  cutover board site.yaml
  cutover board site.yaml --db /var/lib/cutover/history.sqlite --since 7d""")
@click.argument("profile", metavar="PROFILE")
@click.option("--db", "db", default=None, metavar="PATH",
              help="History database (default: the profile's db:, else $CUTOVER_DB, "
                   "else ~/.local/share/cutover/history.sqlite).")
@click.option("--since", "since", default=None, metavar="DURATION",
              help="Window of the circuit panels and outage log, e.g. 7d (default: the parallel run).")
@click.option("--now", "now", default=None, metavar="TIME", hidden=True,
              help="Pretend it is TIME (ISO 8601, UTC): demos and reproducible screenshots.")
@click.option("--poll", "poll_s", default=2.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0.2), help="How often to look for writes by other processes.")
def command(profile, db, since, now, poll_s):
    prof = load_profile_or_exit(profile)
    window = None
    if since:
        from harness.durations import parse_duration
        try:
            window = parse_duration(since)
        except ValueError as exc:
            die(EXIT_BAD_INPUT, f"--since: {exc}")
    fixed_now = _parse_now(now)
    from harness.store import Store, StoreError, default_path
    path = default_path(prof, db)
    try:
        Store(path).close()       # open/migrate once here so a bad file is a one-line error, not a crash
    except StoreError as exc:
        die(EXIT_BAD_INPUT, str(exc))
    if not sys.stdout.isatty():
        die(EXIT_BAD_INPUT, "the board needs a terminal (use `cutover gate` or `cutover report` in scripts)")
    from harness.tui.app import BoardApp   # Textual loads only for this command
    app = BoardApp(prof, path, now=fixed_now, window=window, poll_s=poll_s)
    app.run()
    sys.exit(EXIT_OK)
