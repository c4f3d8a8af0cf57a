"""Options and helpers shared by the commands that read the history
(report, gate, signoff, exporter)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import click

from harness.cli.common import EXIT_BAD_INPUT, die
from harness.durations import parse_duration

UTC = dt.timezone.utc

db_option = click.option("--db", default=None, metavar="PATH",
                         help="History database (default: the profile's db:, else $CUTOVER_DB, "
                              "else ~/.local/share/cutover/history.sqlite).")
as_of_option = click.option("--as-of", "as_of", default=None, metavar="TIME",
                            help="Evaluate as of this UTC date/time (ISO 8601), e.g. to reproduce a past "
                                 "decision. Default: now.")


def db_path(profile, db: str | None) -> Path:
    from harness.store import default_path
    return default_path(profile, db)


def open_store(path: Path):
    """Open (creating if needed) the store; a broken file is bad input (exit 2)."""
    from harness.store import Store, StoreError
    try:
        return Store(path)
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
