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
""")
@click.argument("profile", metavar="PROFILE")
@click.argument("item", metavar="ITEM")
@click.option("--by", "by", default=None, metavar="NAME", help="Who signs off (required).")
@click.option("--note", default="", metavar="TEXT", help="Evidence, ticket number, remarks.")
@click.option("--revoke", is_flag=True, help="Withdraw the sign-off (kept in the audit trail).")
@db_option
@json_option
def command(profile, item, by, note, revoke, db, as_json):
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
    store = open_store(db_path(prof, db))
    rec = store.signoff(prof.site, item, by.strip(), note=note, revoke=revoke)
    from harness import fleet
    if store.latest_runs(prof.site, 1):        # the fleet's summary of the site follows the sign-off
        fleet.refresh(store, prof.site, rec.at)
    title = titles[item]
    if as_json:
        emit_json({"site": prof.site, "item": rec.item, "title": title, "by": rec.by, "note": rec.note,
                   "at": rec.at.isoformat().replace("+00:00", "Z"), "revoked": rec.revoked,
                   "db": str(store.location)})
    else:
        what = "revoked" if rec.revoked else "signed off"
        out(f"{item} ({title}): {what} by {rec.by} at {rec.at:%Y-%m-%d %H:%M} UTC"
                   + (f": {rec.note}" if rec.note else ""))
    raise SystemExit(EXIT_OK)
