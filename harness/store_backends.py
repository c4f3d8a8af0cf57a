"""The two database engines under :mod:`harness.store`: SQLite (one site, an
embedded file) and PostgreSQL (the fleet: many probes writing to one server).

Why a backend layer this thin: the store writes its SQL once, in the dialect
both engines share (SQLite 3.35+ reads ``INSERT ... ON CONFLICT DO NOTHING``
and ``RETURNING``, as PostgreSQL does). What differs is confined here:

=====================  ==============================  =============================
                       SQLite                          PostgreSQL
=====================  ==============================  =============================
placeholders           ``?``                           ``%s`` (translated, cached)
``INTEGER PRIMARY KEY``  rowid alias                   ``BIGINT GENERATED ... IDENTITY``
``INTEGER`` / ``REAL``   as written                    ``BIGINT`` / ``DOUBLE PRECISION``
``WITHOUT ROWID``        clustered table               dropped (a plain heap + PK index)
write transaction      ``BEGIN IMMEDIATE`` (file lock) ``BEGIN`` (row-level MVCC)
read snapshot          ``BEGIN`` (WAL snapshot)        ``REPEATABLE READ READ ONLY``
migration lock         ``BEGIN IMMEDIATE``             ``pg_advisory_xact_lock``
JSON number at a path  ``json_extract(col, '$.a.b')``  ``(col::jsonb #> '{a,b}')::float8``
bulk insert            ``executemany``                 ``COPY ... FROM STDIN``
=====================  ==============================  =============================

A database is named by a path (SQLite) or a URL (``postgresql://`` or
``postgres://``, PostgreSQL); :func:`parse_location` decides, and a URL is
never taken for a path. Credentials stay with libpq: the password may be in
the URL, in a password file (``?passfile=`` or ``$PGPASSFILE``), in
``~/.pgpass`` or ``$PGPASSWORD``; :func:`mask_url` hides it wherever the
location is shown, and nothing here stores it.

Timestamps are fixed-width UTC text on both engines (the store's format), so
text order is time order and one SQL reads both.
"""

from __future__ import annotations

import os
import re
import sqlite3
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

PG_SCHEMES = ("postgresql", "postgres")
# Any 'word://' is a URL, never a path: `--db mysql://x` is an error, not a folder named "mysql:".
_URL_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_MIGRATION_LOCK_KEY = 0x6375746F   # "cuto": one migrator at a time per PostgreSQL database


class LocationError(ValueError):
    """A database location that is neither a usable path nor a supported URL (exit 2)."""


class ConnectError(Exception):
    """The database server could not be reached or refused us (exit 3).
    ``detail``: the driver's first line; ``driver_error``: its exception."""

    def __init__(self, message: str, detail: str = "", driver_error: BaseException | None = None) -> None:
        super().__init__(message)
        self.detail = detail or message
        self.driver_error = driver_error


@dataclass(frozen=True)
class Location:
    kind: str                 # "sqlite" | "postgresql"
    target: str               # the path, or the URL as given (with its password, if any)

    @property
    def display(self) -> str:
        return mask_url(self.target) if self.kind == "postgresql" else self.target

    def __str__(self) -> str:      # never shows a password
        return self.display

    def exists(self) -> bool:
        """An SQLite file exists; a server database is asked when opened."""
        return self.kind == "postgresql" or Path(self.target).exists()

    def split_password(self) -> tuple[str, str | None]:
        """(the location without a password in it, the password or None): a
        child process gets the first as ``--db`` and the second as
        ``$PGPASSWORD``, so no command line or unit file carries a secret."""
        if self.kind != "postgresql":
            return self.target, None
        parts = urllib.parse.urlsplit(self.target)
        if parts.password is None:
            return self.target, None
        host = parts.netloc.rsplit("@", 1)[1]
        user = parts.netloc.rsplit("@", 1)[0].split(":", 1)[0]
        bare = urllib.parse.urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))
        return bare, urllib.parse.unquote(parts.password)


def is_url(text: str | os.PathLike) -> bool:
    return isinstance(text, str) and bool(_URL_RE.match(text.strip()))


def parse_location(value: "str | os.PathLike | Location") -> Location:
    """A path or a ``postgresql://`` URL. Other URL schemes are refused."""
    if isinstance(value, Location):
        return value
    if is_url(value):
        text = str(value).strip()
        scheme = text.split("://", 1)[0].lower()
        if scheme not in PG_SCHEMES:
            raise LocationError(f"{mask_url(text)}: unsupported database URL scheme {scheme!r} "
                                "(use a file path for SQLite or postgresql://user@host/db)")
        parts = urllib.parse.urlsplit(text)
        if not parts.path.strip("/") and "dbname=" not in parts.query:
            raise LocationError(f"{mask_url(text)}: the URL names no database "
                                "(postgresql://user@host[:port]/DATABASE[?sslmode=...])")
        try:
            _ = parts.port           # parsing it raises on a bad port
        except ValueError as exc:
            raise LocationError(f"{mask_url(text)}: {exc}") from None
        return Location("postgresql", text)
    return Location("sqlite", str(Path(value).expanduser()))


def mask_url(url: str) -> str:
    """The URL with its password (and a ``password=`` query value) replaced by ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparsable database URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{host}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# ---------------------------------------------------------------- SQLite

class SqliteBackend:
    """WAL, synchronous=NORMAL, busy_timeout: see harness.store's docstring."""

    kind = "sqlite"
    Error = sqlite3.Error
    IntegrityError = sqlite3.IntegrityError
    DataError = sqlite3.OperationalError     # json_extract on malformed JSON

    def __init__(self, location: Location, busy_timeout_s: float) -> None:
        self.location = location
        self.path = Path(location.target)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s,
                                        isolation_level=None, check_same_thread=False)
        except (OSError, sqlite3.Error) as exc:
            raise ConnectError(f"{self.path}: cannot open the history database: {exc}") from None
        try:
            self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ConnectError(f"{self.path}: cannot switch to WAL mode (got {mode})")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError:
            self.conn.close()
            raise

    @property
    def in_transaction(self) -> bool:
        return self.conn.in_transaction

    def execute(self, sql: str, args: Sequence[Any] = ()):
        return self.conn.execute(sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sql, rows)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        marks = ", ".join("?" * len(columns))
        self.conn.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def begin_write(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")     # the write lock up front: writers queue, never deadlock

    def begin_read(self) -> None:
        self.conn.execute("BEGIN")

    def begin_migration(self) -> None:
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        self.conn.execute("ROLLBACK")

    def table_exists(self, name: str) -> bool:
        return self.conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                                 (name,)).fetchone() is not None

    def columns(self, table: str) -> list[str]:
        return [r[1] for r in self.conn.execute(f"PRAGMA table_info({table})")]

    def optimize(self) -> None:
        """Refresh the planner's statistics (after a bulk import)."""
        self.conn.execute("PRAGMA optimize")

    def data_version(self) -> int:
        """Moves on other connections' commits only (the store adds its own)."""
        return int(self.conn.execute("PRAGMA data_version").fetchone()[0])

    @staticmethod
    def json_doc(column: str) -> str:
        return column

    @staticmethod
    def json_number(doc: str, path: Sequence[str]) -> str:
        p = f"'$.{'.'.join(path)}'"
        return f"(CASE WHEN json_type({doc}, {p}) IN ('integer', 'real') THEN json_extract({doc}, {p}) END)"

    def close(self) -> None:
        self.conn.close()


# ---------------------------------------------------------------- PostgreSQL

_DDL_RULES = (
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\)\s*WITHOUT ROWID"), ")"),
)


def pg_sql(sql: str) -> str:
    """The store's SQL (SQLite spelling) in PostgreSQL's: types in DDL and
    placeholders. The store's statements hold no ``?`` or ``%`` in literals."""
    out = sql.replace("%", "%%").replace("?", "%s")
    if re.match(r"\s*(CREATE|ALTER)\b", out, re.I):
        for rx, repl in _DDL_RULES:
            out = rx.sub(repl, out)
    return out


class PostgresBackend:
    """psycopg 3, autocommit off by hand: the store issues BEGIN/COMMIT itself
    so its transaction boundaries are the same on both engines."""

    kind = "postgresql"

    def __init__(self, location: Location, busy_timeout_s: float) -> None:
        try:
            import psycopg
        except ImportError as exc:   # a broken install, not the user's input
            raise ConnectError(f"{location.display}: the PostgreSQL driver is not installed "
                               f"(pip install 'psycopg[binary]'): {exc}") from None
        self._psycopg = psycopg
        self.Error = psycopg.Error
        self.IntegrityError = psycopg.IntegrityError
        self.DataError = psycopg.errors.InvalidTextRepresentation   # ::jsonb of a NaN
        self.location = location
        self.path = None
        self._sql: dict[str, str] = {}
        try:
            self.conn = psycopg.connect(location.target, autocommit=True,
                                        connect_timeout=max(1, int(min(busy_timeout_s, 10))),
                                        # the DBA sees which probe process holds what (pg_stat_activity)
                                        application_name=f"cutover[{os.getpid()}]")
        except psycopg.Error as exc:
            # libpq's message names host/port/user, never the password.
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConnectError(f"{location.display}: cannot connect to PostgreSQL: {detail}", detail, exc) from None
        # A writer waits for a lock at most this long (a sign-off while a run
        # commits); readers never wait (MVCC snapshots).
        self.conn.execute(f"SET lock_timeout = {int(busy_timeout_s * 1000)}")

    def _q(self, sql: str) -> str:
        q = self._sql.get(sql)
        if q is None:
            q = self._sql[sql] = pg_sql(sql)
        return q

    @property
    def in_transaction(self) -> bool:
        status = self.conn.info.transaction_status
        ts = self._psycopg.pq.TransactionStatus
        return status in (ts.INTRANS, ts.INERROR, ts.ACTIVE)

    def execute(self, sql: str, args: Sequence[Any] = ()):
        return _Result(self.conn.execute(self._q(sql), tuple(args) if args else None, prepare=False))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            with self.conn.cursor() as cur:
                cur.executemany(self._q(sql), rows)

    def copy_rows(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """COPY: ~10x executemany for the bulk paths (import, benchmark fixtures)."""
        if not rows:
            return
        with self.conn.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)

    def begin_write(self) -> None:
        self.conn.execute("BEGIN")

    def begin_read(self) -> None:
        self.conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")

    def begin_migration(self) -> None:
        self.conn.execute("BEGIN")
        self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK_KEY,))

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        if not self.conn.closed:
            self.conn.execute("ROLLBACK")

    def table_exists(self, name: str) -> bool:
        row = self.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
        return bool(row and row[0])

    def columns(self, table: str) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
            "AND table_schema = current_schema() ORDER BY ordinal_position", (table,)).fetchall()]

    def optimize(self) -> None:
        """Refresh the planner's statistics (after a bulk import: without them
        the first queries may plan for empty tables)."""
        self.conn.execute("ANALYZE")

    def data_version(self) -> int:
        """The cluster's next transaction id: moves whenever anyone commits a
        write (over-approximates, which only costs the board a refresh)."""
        row = self.conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint").fetchone()
        assert row is not None                   # one row, always
        return int(row[0])

    @staticmethod
    def json_doc(column: str) -> str:
        return f"({column})::jsonb"

    @staticmethod
    def json_number(doc: str, path: Sequence[str]) -> str:
        p = f"'{{{','.join(path)}}}'"
        return f"(CASE WHEN jsonb_typeof({doc} #> {p}) = 'number' THEN ({doc} #> {p})::float8 END)"

    def close(self) -> None:
        self.conn.close()


# SQLSTATEs of faults a write can meet on a server that are not bugs -> the cause in words
_PG_WRITE_CAUSES = {
    "53100": "disk full (on the database server)",
    "53200": "out of memory (on the database server)",
    "53300": "too many connections to the database server",
    "25006": "read-only (the server is a standby or refuses writes)",
    "55P03": "locked by another connection beyond the lock timeout",
    "57P01": "the database server shut down",
    "57P02": "the database server crashed",
    "57P03": "the database server is not accepting connections",
    "40001": "conflict with another writer",
    "40P01": "deadlock with another writer",
    "42501": "permission denied (a read-only account?)",
}


def pg_write_cause(exc: Exception) -> str | None:
    """The cause in words of a psycopg error that is a resource fault, else None."""
    state = getattr(exc, "sqlstate", None)
    if state in _PG_WRITE_CAUSES:
        return _PG_WRITE_CAUSES[state]
    if state is not None and state.startswith("08"):
        return "connection to the database server lost"
    try:
        import psycopg
    except ImportError:
        return None
    if state is None and isinstance(exc, psycopg.OperationalError):   # the socket closed under us
        return "connection to the database server lost"
    return None


def pg_server_lost(exc: Exception) -> str | None:
    """The cause in words when a psycopg error means the server went away
    (shut down, crashed, the connection dropped), else None."""
    state = getattr(exc, "sqlstate", None)
    if state in ("57P01", "57P02", "57P03") or (state is not None and state.startswith("08")) or (
            state is None and type(exc).__name__ == "OperationalError"):
        return pg_write_cause(exc)
    return None


class _Result:
    """A psycopg cursor whose iteration fetches every row at once: iterating
    the cursor itself costs a call per row (30 days of one site: 26k rows,
    ~0.2 s of the fleet's time per site)."""

    __slots__ = ("_cur",)

    def __init__(self, cur) -> None:
        self._cur = cur

    def __iter__(self):
        return iter(self._cur.fetchall() if self._cur.description is not None else ())

    def fetchone(self):
        return self._cur.fetchone()

    def fetchall(self):
        return self._cur.fetchall()

    @property
    def rowcount(self) -> int:
        return self._cur.rowcount


def connect(location: Location, busy_timeout_s: float):
    if location.kind == "postgresql":
        return PostgresBackend(location, busy_timeout_s)
    return SqliteBackend(location, busy_timeout_s)


Backend = SqliteBackend | PostgresBackend
