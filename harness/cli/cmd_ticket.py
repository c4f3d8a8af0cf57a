"""`cutover ticket`: fault tickets with the provider, judged against the
circuit's contract, with post-fix verification (docs/provider.md)."""

from __future__ import annotations

import datetime as dt
import getpass
import os

import click

from harness.cli.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNMEASURED, die, emit_json, err, json_option, \
    load_profile_or_exit, out
from harness.cli.history_common import as_of_option, db_option, db_path, open_store, parse_time
from probes.names import unknown_name

UTC = dt.timezone.utc

at_option = click.option("--at", "at", default=None, metavar="TIME",
                         help="When it happened (ISO 8601, no zone = UTC), for what happened earlier. "
                              "Default: now.")
note_option = click.option("--note", default="", metavar="TEXT",
                           help="What was said or done (kept in the audit trail).")
by_option = click.option("--by", "by", default=None, metavar="NAME",
                         help="Who records it (default: your login name).")


def _who(by: str | None) -> str:
    name = (by or "").strip() or os.environ.get("USER", "").strip()
    if not name:
        try:
            name = getpass.getuser()
        except (KeyError, OSError):
            name = ""
    if not name:
        die(EXIT_BAD_INPUT, "--by NAME is required: who records the change (no login name found)")
    return name


def _when(at: str | None) -> dt.datetime:
    return parse_time(at, "--at") if at else dt.datetime.now(UTC)


@click.group("ticket", help="""Fault tickets with the provider, held to the circuit's contract.

\b
A ticket belongs to a circuit, has the provider's reference (--ref) and a
class (--severity) from the circuit's `contract:` in the profile, e.g.
  contract: {response_hours: {P1: 1, P2: 4}, resolve_hours: {P1: 4, P2: 8}}
Its first response and its resolution are judged against the class's hours;
a breach is named ("P2 ticket NW-4411: first response after 6 h 12 min,
contract 4 h"). Every change is an audit-trail entry (who, when, what).
Resolving runs the circuit's checks (post-fix verification).

\b
Example:
  cutover ticket open site.yaml --circuit new --severity P2 --ref NW-4411 \\
      --outage new-20261112T0200Z --note "no sync since 02:00"
  cutover ticket update site.yaml 1 --responded --at 2026-11-12T08:12Z
  cutover ticket update site.yaml 1 --resolved --note "card swapped"
  cutover ticket list site.yaml --open

Exit codes: 0 done, 1 (update --resolved) the verification run failed,
2 bad input (unknown circuit, class or ticket), 3 database unreachable.""")
def command() -> None:
    pass


@command.command("open", help="""Open a fault ticket (record one raised with the provider).

\b
Example:
  cutover ticket open site.yaml --circuit new --severity P2 --ref NW-4411""")
@click.argument("profile", metavar="PROFILE")
@click.option("--circuit", default=None, metavar="NAME", help="The circuit at fault (required).")
@click.option("--severity", default=None, metavar="CLASS",
              help="A class of the circuit's contract: P1, P2, ... (required).")
@click.option("--ref", default=None, metavar="REF", help="The provider's ticket reference (required).")
@click.option("--outage", "outage_id", default=None, metavar="ID",
              help="The outage this ticket is about (an id from `cutover report`).")
@note_option
@at_option
@by_option
@db_option
@json_option
def open_(profile, circuit, severity, ref, outage_id, note, at, by, db, as_json):
    from harness import tickets
    prof = load_profile_or_exit(profile)
    names = [c.name for c in prof.circuits]
    if circuit is None:
        die(EXIT_BAD_INPUT, f"--circuit NAME is required; circuits: {', '.join(names)}")
    if circuit not in names:
        die(EXIT_BAD_INPUT, f"{profile}: {unknown_name('circuit', circuit, names)}")
    for flag, value in (("--severity CLASS", severity), ("--ref REF", ref)):
        if value is None:
            die(EXIT_BAD_INPUT, f"{flag} is required (see 'cutover ticket open --help')")
    classes = prof.circuit(circuit).contract.classes()
    if not classes:
        die(EXIT_BAD_INPUT, f"{profile}: circuit {circuit!r} has no contract classes; add "
                            "contract.response_hours (e.g. {P1: 1, P2: 4}) to the circuit")
    if severity not in classes:
        die(EXIT_BAD_INPUT,
            f"--severity: {unknown_name('fault class', severity, classes, plural='fault classes')}")
    if not ref.strip():
        die(EXIT_BAD_INPUT, "--ref: the provider's reference must not be empty")
    if outage_id is not None:
        from harness.claims import parse_outage_id
        try:
            outage_circuit, _start = parse_outage_id(outage_id)
        except ValueError as exc:
            die(EXIT_BAD_INPUT, f"--outage: {exc}")
        if outage_circuit != circuit:
            die(EXIT_BAD_INPUT, f"--outage {outage_id} is an outage of circuit {outage_circuit!r}, "
                                f"not of {circuit!r}")
    when, who = _when(at), _who(by)
    store = open_store(db_path(prof, db))
    rec = store.open_ticket(prof.site, circuit, ref.strip(), severity, by=who, at=when,
                            outage_id=outage_id, note=note)
    now = max(dt.datetime.now(UTC), when)
    j = tickets.judge(store, prof, rec, now)
    if as_json:
        emit_json({"ticket": j.to_dict(), "db": str(store.location)})
    else:
        out(f"ticket {rec.id}: {severity} {rec.ref} on {circuit}, opened {rec.opened_at:%Y-%m-%d %H:%M} UTC"
            + (f" (outage {outage_id})" if outage_id else ""))
    raise SystemExit(EXIT_OK)


@command.command("update", help="""Record the provider's response, the fix, or closing a ticket.

\b
--resolved runs the circuit's checks (--verify, the default when the circuit
has a reflector) and records the result on the ticket. The fix counts as
verified when that run passes and the scheduled runs of the next
contract.verify_hours (default 4) pass too.

\b
Example:
  cutover ticket update site.yaml 1 --responded --at 2026-11-12T08:12Z --note "engineer sent"
  cutover ticket update site.yaml 1 --resolved --note "line card swapped"
  cutover ticket update site.yaml 1 --closed""")
@click.argument("profile", metavar="PROFILE")
@click.argument("ticket_arg", metavar="TICKET")
@click.option("--responded", "what", flag_value="responded", help="The provider's first response.")
@click.option("--resolved", "what", flag_value="resolved", help="The provider reports the fault fixed.")
@click.option("--closed", "what", flag_value="closed", help="Close the ticket.")
@click.option("--verify/--no-verify", default=None,
              help="Run the circuit's checks on --resolved (default: when the circuit has a reflector).")
@click.option("--quick", is_flag=True, help="Short probes for the verification run.")
@click.option("--step", "only_steps", multiple=True, metavar="NAME",
              help="Only this step in the verification run (repeatable).")
@note_option
@at_option
@by_option
@db_option
@json_option
def update(profile, ticket_arg, what, verify, quick, only_steps, note, at, by, db, as_json):
    from harness import suite, tickets
    prof = load_profile_or_exit(profile)
    try:
        ticket_id = int(ticket_arg)
    except ValueError:
        die(EXIT_BAD_INPUT, f"TICKET {ticket_arg!r}: expected a ticket number, as `cutover ticket list` shows")
    if what is None:
        die(EXIT_BAD_INPUT, "say what happened: --responded, --resolved or --closed")
    if verify and what != "resolved":
        die(EXIT_BAD_INPUT, "--verify goes with --resolved")
    when, who = _when(at), _who(by)
    store = open_store(db_path(prof, db))
    rec = store.ticket(prof.site, ticket_id)
    if rec is None:
        known = [str(t.id) for t in store.tickets(prof.site)]
        die(EXIT_BAD_INPUT, f"{unknown_name('ticket', str(ticket_id), known)} for site {prof.site!r}")
    if when < rec.opened_at:
        die(EXIT_BAD_INPUT, f"--at {when:%Y-%m-%d %H:%M} UTC is before the ticket was opened "
                            f"({rec.opened_at:%Y-%m-%d %H:%M} UTC)")
    run_id = passed = None
    if what == "resolved":
        try:
            circuit = prof.circuit(rec.circuit)
        except KeyError:
            circuit = None
        if verify is None:
            verify = bool(circuit is not None and circuit.reflector)
        if verify and circuit is None:
            die(EXIT_BAD_INPUT, f"--verify: circuit {rec.circuit!r} is no longer in {profile}")
        if verify:
            steps = None
            if only_steps:
                unknown = [s for s in only_steps if s not in suite.ORDER]
                if unknown:
                    die(EXIT_BAD_INPUT, f"--step: {unknown_name('step', unknown[0], suite.ORDER)}")
                steps = [m for m in suite.steps() if m.NAME in only_steps]
            from harness.runner import run_check
            from harness.history import PASS_VERDICTS
            if not as_json:
                err(f"cutover: verifying the fix: running the checks of circuit {rec.circuit}"
                    + (" (quick)" if quick else "") + "...")
            outcome = run_check(prof, store=store, circuits=[rec.circuit], quick=quick, steps=steps,
                                kind="partial" if only_steps else "check")
            if outcome.store_error is not None:
                die(EXIT_UNMEASURED, f"the verification run was not stored: {outcome.store_error}")
            run_id = outcome.run_id
            passed = outcome.circuits[rec.circuit].verdict in PASS_VERDICTS
    rec = store.update_ticket(prof.site, ticket_id, what, by=who, at=when, note=note,
                              verify_run_id=run_id, verify_passed=passed)
    j = tickets.judge(store, prof, rec, max(dt.datetime.now(UTC), when))
    if as_json:
        emit_json({"ticket": j.to_dict(), "db": str(store.location)})
    else:
        out(f"ticket {rec.id} ({rec.severity} {rec.ref}): {what} at {when:%Y-%m-%d %H:%M} UTC by {who}")
        for b in (j.response_breach, j.resolution_breach):
            if b is not None:
                out(f"  breach: {b.sentence}")
        if j.ticket.verification:
            out(f"  {j.ticket.verification}")
    raise SystemExit(1 if passed is False else EXIT_OK)


@command.command("list", help="""List the site's tickets with their breaches and verification.

\b
Example:
  cutover ticket list site.yaml --open --json""")
@click.argument("profile", metavar="PROFILE")
@click.option("--open", "only_open", is_flag=True, help="Only tickets not closed.")
@as_of_option
@db_option
@json_option
def list_(profile, only_open, as_of, db, as_json):
    from harness import tickets
    prof = load_profile_or_exit(profile)
    now = _when(as_of)
    path = db_path(prof, db)
    store = open_store(path)
    rows = [j for j in tickets.judged(store, prof, now) if j.open or not only_open]
    if as_json:
        emit_json({"site": prof.site, "as_of": now.isoformat().replace("+00:00", "Z"),
                   "tickets": [j.to_dict() for j in rows]})
        raise SystemExit(EXIT_OK)
    if not rows:
        out(f"{prof.site}: no {'open ' if only_open else ''}tickets")
    for j in rows:
        t = j.ticket
        state = "closed" if t.closed_at else "resolved" if t.resolved_at else \
            "responded" if t.responded_at else "open"
        out(f"{t.id:>4} {t.severity:<4} {t.ref:<16} {t.circuit:<10} {state:<9} opened {t.opened_at:%Y-%m-%d %H:%M}"
            + (f"  outage {t.outage_id}" if t.outage_id else ""))
        for b in (j.response_breach, j.resolution_breach):
            if b is not None:
                out(f"       breach: {b.sentence}")
        if t.verification:
            out(f"       {t.verification}")
    raise SystemExit(EXIT_OK)
