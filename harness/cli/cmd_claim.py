"""`cutover claim`: the SLA claim pack of one outage (harness.claims)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from harness.cli.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNMEASURED, die, emit_json, json_option, \
    load_profile_or_exit, option, out
from harness.cli.history_common import as_of_option, db_option, db_path, open_store, parse_time, resolve_now
from probes.names import unknown_name

UTC = dt.timezone.utc


@click.command("claim", help="""Write the SLA claim pack of an outage: claim.html and claim.json.

\b
OUTAGE_ID is an id from `cutover report` (e.g. new-20261112T0200Z). The pack
holds the site, circuit and provider, the outage's start, end and duration,
the failing checks that opened it with their figures, the runs just before
and after, the nearest stored path trace, the contract clause, the claim
deadline (end + cutover.sla_claim_hours) and its state (open, claimed,
deadline passed), and the fault ticket linked to the outage. The HTML page is
self-contained (no scripts, no external files): attach it to the claim.
--filed records that the claim was filed with the provider (state: claimed).

\b
Example:
  cutover claim site.yaml new-20261112T0200Z --report-dir claims/
  cutover claim site.yaml new-20261112T0200Z --filed --at 2026-11-12T15:00Z --note "case 881"

Exit codes: 0 written, 2 bad input (unknown outage or circuit, folder not
writable), 3 no history database.""")
@click.argument("profile", metavar="PROFILE")
@click.argument("outage_id", metavar="OUTAGE_ID")
@option("--report-dir", "out_dir", aliases=("--out",), default="cutover-claim", metavar="DIR",
        help="Folder for claim.html and claim.json (created).  [default: ./cutover-claim]")
@click.option("--filed", is_flag=True, help="Record that the claim was filed with the provider.")
@click.option("--at", "at", default=None, metavar="TIME", help="When it was filed (ISO 8601). Default: now.")
@click.option("--by", "by", default=None, metavar="NAME", help="Who filed it (with --filed; default: login name).")
@click.option("--note", default="", metavar="TEXT", help="The provider's case number, remarks (with --filed).")
@db_option
@as_of_option
@json_option
def command(profile, outage_id, out_dir, filed, at, by, note, db, as_of, as_json):
    from harness import claims
    from harness.cli.cmd_ticket import _who
    prof = load_profile_or_exit(profile)
    now = resolve_now(as_of)
    try:
        circuit, _start = claims.parse_outage_id(outage_id)
    except ValueError as exc:
        die(EXIT_BAD_INPUT, str(exc))
    names = [c.name for c in prof.circuits]
    if circuit not in names:
        die(EXIT_BAD_INPUT, f"{profile}: outage {outage_id!r}: {unknown_name('circuit', circuit, names)}")
    path = db_path(prof, db)
    if not path.exists():
        die(EXIT_UNMEASURED, f"no history database at {path}; run `cutover check {profile}` first or pass --db")
    store = open_store(path)
    try:
        pack = claims.build(store, prof, outage_id, now)
    except claims.UnknownOutage as exc:
        die(EXIT_BAD_INPUT, f"{unknown_name('outage', outage_id, exc.known)} in the history of {prof.site!r}")
    if filed:
        when = parse_time(at, "--at") if at else now
        store.file_claim(prof.site, outage_id, by=_who(by), at=when, note=note)
        pack = claims.build(store, prof, outage_id, max(now, when))
    folder = Path(out_dir)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        html, js = folder / "claim.html", folder / "claim.json"
        html.write_text(pack.to_html(), encoding="utf-8")
        js.write_text(pack.to_json(), encoding="utf-8")
    except OSError as exc:
        die(EXIT_BAD_INPUT, f"--report-dir {out_dir}: cannot write the claim pack: {exc.strerror or exc}")
    if as_json:
        emit_json({"claim": pack.to_dict(), "files": [str(html), str(js)]})
    else:
        deadline = "none yet (ongoing)" if pack.claim_by is None else f"{pack.claim_by:%Y-%m-%d %H:%M} UTC"
        out(f"outage {outage_id} on {pack.circuit} ({pack.provider or 'provider not named'}): "
            f"claim {pack.state}, deadline {deadline}")
        out(f"claim pack: {html}")
        out(f"claim pack: {js}")
    raise SystemExit(EXIT_OK)
