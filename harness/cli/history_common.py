"""Options and helpers shared by the commands that read the history
(report, gate, signoff, exporter)."""

from __future__ import annotations

import datetime as dt

import click

from harness.cli.common import EXIT_BAD_INPUT, EXIT_UNMEASURED, die
from harness.durations import parse_duration

UTC = dt.timezone.utc

db_option = click.option("--db", default=None, metavar="PATH|URL",
                         help="History database: an SQLite file or postgresql://user@host/db?sslmode=... "
                              "(default: the profile's db:, else $CUTOVER_DB, else "
                              "~/.local/share/cutover/history.sqlite). A server that cannot be reached "
                              "exits 3; a bad path or URL exits 2.")
as_of_option = click.option("--as-of", "as_of", default=None, metavar="TIME",
                            help="Evaluate as of this UTC date/time (ISO 8601), e.g. to reproduce a past "
                                 "decision. Default: now.")


def db_path(profile, db: str | None):
    """The database location (a path or a PostgreSQL URL); a URL of another
    scheme is bad input (exit 2)."""
    from harness.store import StoreError, default_path
    try:
        return default_path(profile, db)
    except StoreError as exc:
        die(EXIT_BAD_INPUT, str(exc))


def open_store(path):
    """Open (creating/migrating if needed) the store. A broken file or URL is
    bad input (exit 2); a database server that cannot be reached or refuses
    the credentials could not be measured against (exit 3)."""
    from harness.store import Store, StoreError, StoreUnavailable
    try:
        return Store(path)
    except StoreUnavailable as exc:
        die(EXIT_UNMEASURED, str(exc))
    except StoreError as exc:
        die(EXIT_BAD_INPUT, str(exc))


def parse_time(text: str, what: str = "--as-of") -> dt.datetime:
    """ISO date or date-time; no zone means UTC."""
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        die(EXIT_BAD_INPUT, f"{what} {text!r}: expected an ISO date or time, e.g. 2026-11-20 or "
                            "2026-11-20T14:00Z")
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def resolve_now(as_of: str | None) -> dt.datetime:
    return parse_time(as_of) if as_of else dt.datetime.now(UTC)


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """``7d`` (a duration back from now) or an ISO date/time."""
    s = text.strip()
    if s[:1].isdigit() and ("-" in s[1:] or "T" in s):
        return parse_time(s, "--since")
    try:
        return now - parse_duration(s)
    except ValueError as exc:
        die(EXIT_BAD_INPUT, f"--since: {exc} (or an ISO date such as 2026-11-01)")
