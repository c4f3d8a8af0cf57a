"""`cutover db`: bring a history database to the current schema, and move a
site's local SQLite history into the central (PostgreSQL) database."""

from __future__ import annotations

from pathlib import Path

import click

from harness.cli.common import EXIT_BAD_INPUT, EXIT_OK, die, emit_json, json_option
from harness.cli.history_common import db_path, open_store


@click.group("db", help="""Manage history databases (SQLite files or PostgreSQL).

\b
A database is a path (SQLite) or a URL:
  postgresql://USER@HOST[:PORT]/DBNAME?sslmode=verify-full
The password comes from ~/.pgpass, $PGPASSFILE, ?passfile=PATH, $PGPASSWORD
or the URL itself; it is never printed (shown as ***).

\b
Moving a site onto the central database:
  cutover db migrate --db postgresql://cutover@db.example/cutover
  cutover db import ~/.local/share/cutover/history.sqlite \\
      --into postgresql://cutover@db.example/cutover
  then set `db: postgresql://cutover@db.example/cutover` in the site profile.

Exit codes: 0 done, 2 bad path/URL or unusable database, 3 the server cannot
be reached or refused the credentials.""")
def command() -> None:
    pass


@command.command("migrate", help="""Create the schema, or upgrade it to this cutover's version.

Every command migrates on open as well; this does it ahead of time (for
example before the sites' probes start writing to a new central database),
and says which version the database is at.

\b
Example:
  cutover db migrate --db postgresql://cutover@db.example/cutover""")
@click.option("--db", default=None, metavar="PATH|URL",
              help="Database (default: $CUTOVER_DB, else ~/.local/share/cutover/history.sqlite).")
@json_option
def migrate(db, as_json):
    from harness.store import SCHEMA_VERSION
    loc = db_path(None, db)
    store = open_store(loc)
    version = store.schema_version()
    store.close()
    if as_json:
        emit_json({"db": str(loc), "engine": loc.kind, "schema_version": version,
                   "current": version == SCHEMA_VERSION})
    else:
        click.echo(f"{loc}: schema version {version} ({loc.kind})")
    raise SystemExit(EXIT_OK)


@command.command("import", help="""Copy a site's history (SQLite FILE) into another database.

Runs, per-circuit results, checks, raw probe results, profile snapshots and
the sign-off audit trail are copied. Safe to rerun: a run already in the
target (same site, kind and start time) is not copied again, circuits it
lacks are added, and a run that was incomplete is closed if it finished
since; a second import of the same file adds nothing. One transaction per
site: an interrupted import leaves whole sites, never half of one.

\b
Example:
  cutover db import /var/lib/cutover/history.sqlite --into postgresql://cutover@db.example/cutover
""")
@click.argument("file", metavar="FILE.sqlite")
@click.option("--into", "into", required=True, metavar="URL|PATH", help="Target database (usually PostgreSQL).")
@json_option
def import_(file, into, as_json):
    from harness.store_backends import is_url
    if is_url(file):
        die(EXIT_BAD_INPUT, "FILE must be a local SQLite history file (import from a server with pg_dump)")
    if not Path(file).is_file():
        die(EXIT_BAD_INPUT, f"{file}: no such file")
    src_loc, dst_loc = db_path(None, file), db_path(None, into)
    if src_loc == dst_loc:
        die(EXIT_BAD_INPUT, "FILE and --into are the same database")
    source = open_store(src_loc)
    target = open_store(dst_loc)
    try:
        stats = target.import_from(source)
        from harness import fleet
        for site in stats.sites:             # the fleet's summaries of the sites moved in
            if target.latest_runs(site, 1):
                fleet.refresh(target, site)
    finally:
        source.close()
        target.close()
    if as_json:
        emit_json({"from": str(src_loc), "into": str(dst_loc), **stats.to_dict()})
    else:
        click.echo(f"{file} -> {dst_loc}: {len(stats.sites)} site(s) ({', '.join(stats.sites) or 'none'}); "
                   f"added {stats.runs_added} run(s), {stats.circuits_added} circuit result(s), "
                   f"{stats.checks_added} check(s), {stats.signoffs_added} sign-off(s), "
                   f"{stats.tickets_added} ticket(s), {stats.claims_added} filed claim(s); "
                   f"{stats.runs_completed} run(s) completed")
    raise SystemExit(EXIT_OK)
