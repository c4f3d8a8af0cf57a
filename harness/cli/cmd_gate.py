"""`cutover gate`: the go/no-go decision for terminating the old service."""

from __future__ import annotations

import click

from harness.cli.common import EXIT_FAIL, EXIT_OK, emit_json, json_option, load_profile_or_exit, out
from harness.cli.history_common import as_of_option, db_option, db_path, open_store, resolve_now

MARK = {"ok": "ok", "block": "BLOCKS", "info": "info"}


@click.command("gate", help="""The go/no-go decision for terminating the old service.

\b
GO when: the parallel run has lasted min_parallel_days; each new circuit
passed >= pass_rate_pct of its runs since the parallel run started and had no
failing run in the last 24 h; capacity (when measured) carries the planned
calls; every checklist item is signed off (cutover signoff).
Dates: notice_by (last day to send the termination notice), disconnect_on
(earliest disconnect of the old service) and the overlap it leaves.
Exit 0 GO, 1 NO-GO.

\b
Example:
  cutover gate site.yaml --json""")
@click.argument("profile", metavar="PROFILE")
@db_option
@as_of_option
@json_option
def command(profile, db, as_of, as_json):
    from harness import gate
    prof = load_profile_or_exit(profile)
    now = resolve_now(as_of)
    path = db_path(prof, db)
    if path.exists():
        decision = gate.decide(prof, open_store(path), now=now)
    else:
        # no history yet: still show the dates and everything that blocks
        decision = gate.evaluate(prof, [], {}, now)
    if as_json:
        d = decision.to_dict()
        d["db"] = str(path)
        emit_json(d)
    else:
        _print(decision, path if path.exists() else None)
    raise SystemExit(EXIT_OK if decision.decision == "GO" else EXIT_FAIL)


def _print(d, path) -> None:
    echo = out     # names and notes from people: escape sequences shown, not sent
    echo(f"Termination gate for {d.site}: {d.decision}")
    if d.parallel_run_start:
        # days that count are covered days (measured), not calendar days (docs/judgement.md)
        measured = f"measured {d.covered_days} of {d.min_parallel_days} days, " if d.covered_days is not None else ""
        complete = (f"complete on {d.parallel_complete_on}" if d.parallel_complete_on
                    else f"complete on {d.proven_on} at the earliest")
        echo(f"  parallel run   {measured}day {max(d.parallel_days, 0)} since {d.parallel_run_start} ({complete})")
    echo(f"  notice by      {d.notice_by}  ({_days(d.days_to_notice)}; "
         f"{d.termination_notice_days} days' notice)")
    echo(f"  disconnect on  {d.disconnect_on}  ({_days(d.days_to_disconnect)}; "
         f"overlap {d.overlap_days} days after {d.proven_on})")
    if path is None:
        echo("  (no history database yet: run `cutover check` or `cutover schedule`)")
    echo("")
    width = max(len(i.title) for i in d.items) if d.items else 10
    for i in d.items:
        who = f"  [{i.by}{': ' + i.note if i.note else ''}]" if i.by and i.status == "ok" else ""
        echo(f"  {MARK.get(i.status, i.status):<6}  {i.title:<{width}}  {i.detail}{who}")
    if d.blocking:
        echo("")
        echo(f"What blocks termination ({len(d.blocking)}):")
        for b in d.blocking:
            echo(f"  - {b}")


def _days(n: int) -> str:
    if n == 0:
        return "today"
    return f"in {n} days" if n > 0 else f"{-n} days ago"
