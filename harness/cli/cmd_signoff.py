"""`cutover signoff`: sign off (or revoke) a checklist item, with an audit trail."""

from __future__ import annotations

import click

from harness.cli.common import EXIT_BAD_INPUT, EXIT_OK, die, emit_json, json_option, load_profile_or_exit, out
from harness.cli.history_common import db_option, db_path, open_store
from probes.names import unknown_name


@click.command("signoff", help="""Sign off (or revoke) a checklist item of the cutover.

\b
ITEM is an id from the profile's cutover.checklist, or
old-service-terminated (the fleet shows the site as terminated). Every sign-off and
revocation is appended to the history database's audit trail (who, when,
note); `cutover gate` and the board read the latest entry per item.

\b
Example:
  cutover signoff site.yaml porting --by "A. Engineer" --note "all 48 DDIs ported"
  cutover signoff site.yaml porting --by "A. Engineer" --revoke --note "2 DDIs still at Carrier A"

\b
A wrong entry (a name or note typed wrong) is corrected, not erased:
  cutover signoff site.yaml porting --correct --by "A. Engineer" --note "all 48 DDIs ported (ticket 4711)"
adds an entry with the same state (signed off or revoked) that supersedes the
item's current one; the old entry stays in the trail, marked superseded by
who corrected it and when. To undo a sign-off, revoke it.
""")
@click.argument("profile", metavar="PROFILE")
@click.argument("item", metavar="ITEM")
@click.option("--by", "by", default=None, metavar="NAME", help="Who signs off (required).")
@click.option("--note", default="", metavar="TEXT", help="Evidence, ticket number, remarks.")
@click.option("--revoke", is_flag=True, help="Withdraw the sign-off (kept in the audit trail).")
@click.option("--correct", is_flag=True,
              help="Correct the item's current entry (name, note): the old one stays, marked superseded.")
@db_option
@json_option
def command(profile, item, by, note, revoke, correct, db, as_json):
    from harness.fleet import TERMINATED_ITEM
    prof = load_profile_or_exit(profile)
    titles = {i.id: i.title for i in prof.cutover.checklist}
    titles.setdefault(TERMINATED_ITEM, "Old service terminated")   # the fleet's phase, not a gate item
    ids = [i.id for i in prof.cutover.checklist]
    if item not in titles:
        die(EXIT_BAD_INPUT, f"{profile}: {unknown_name('checklist item', item, ids)}"
            + ("" if ids else " (add them under cutover.checklist)"))
    if not by or not by.strip():
        die(EXIT_BAD_INPUT, "--by NAME is required: who signs off (or revokes)")
    if correct and revoke:
        die(EXIT_BAD_INPUT, "--correct keeps the entry's state; to withdraw a sign-off use --revoke alone")
    store = open_store(db_path(prof, db))
    if correct:
        try:
            rec = store.correct_signoff(prof.site, item, by.strip(), note=note)
        except ValueError as exc:
            die(EXIT_BAD_INPUT, f"{exc} (sign it off first)")
    else:
        rec = store.signoff(prof.site, item, by.strip(), note=note, revoke=revoke)
    from harness import fleet
    if store.latest_runs(prof.site, 1):        # the fleet's summary of the site follows the sign-off
        fleet.refresh(store, prof.site, rec.at)
    title = titles[item]
    if as_json:
        emit_json({"site": prof.site, "item": rec.item, "title": title, "by": rec.by, "note": rec.note,
                   "at": rec.at.isoformat().replace("+00:00", "Z"), "revoked": rec.revoked,
                   "corrects": rec.supersedes is not None, "db": str(store.location)})
    else:
        what = "revoked" if rec.revoked else "signed off"
        if rec.supersedes is not None:
            what = f"corrected ({what})"
        out(f"{item} ({title}): {what} by {rec.by} at {rec.at:%Y-%m-%d %H:%M} UTC"
                   + (f": {rec.note}" if rec.note else ""))
    raise SystemExit(EXIT_OK)
