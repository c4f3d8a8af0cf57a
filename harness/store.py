"""Run history: an embedded SQLite file (one site) or a central PostgreSQL
database (the fleet), behind one API. This module is the only one that
speaks SQL; :mod:`harness.store_backends` holds what differs between the two
engines (placeholders, a few DDL types, locking, bulk insert).

Why it survives crashes and concurrent readers (SQLite; PostgreSQL gives the
same guarantees through MVCC: readers take a snapshot and never block
writers, a killed writer's open transaction is rolled back by the server):

- WAL journal mode: readers (the TUI, ``cutover report``) never block the
  writer (the scheduler) and see a consistent snapshot; a process killed
  mid-transaction (kill -9) leaves an uncommitted tail in the WAL that SQLite
  discards on the next open, so every earlier run is intact.
- A run is one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``):
  :meth:`Store.begin_run` returns a :class:`PendingRun` that holds the
  circuits' results in memory (a run of 3 circuits is ~600 checks, well under
  a megabyte); :meth:`Store.finish_run` writes the run, its circuits, checks
  and raw results and allocates its id inside that one transaction, then
  returns the id. A process killed mid-run (kill -9, a power cut) leaves
  nothing of that run and every earlier run intact; no reader ever sees a
  half-stored run.
- ``synchronous=NORMAL``: a committed run survives a process crash; a power
  cut may lose the last transactions but never corrupts the file.
- ``busy_timeout``: concurrent writers (a sign-off from the TUI while the
  scheduler stores a run) wait for each other instead of failing.

Schema is versioned (``schema_version``) and upgraded by ordered migrations
in :data:`MIGRATIONS`; never edit a released migration, append a new one.

Times are timezone-aware UTC ``datetime`` in the API and fixed-width ISO 8601
text (``2026-11-22T05:03:18.000000Z``) in the file, so text order is time
order and people can read the file with ``sqlite3``.

Default location: the profile's ``db:`` if set, else ``$CUTOVER_DB``, else
``~/.local/share/cutover/history.sqlite``; ``--db`` overrides all. Each is a
path or a ``postgresql://user@host/db?sslmode=...`` URL (never a path: see
:func:`harness.store_backends.parse_location`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from harness import store_backends
from harness.store_backends import ConnectError, Location, LocationError, parse_location
from harness.verdicts import Check

UTC = dt.timezone.utc
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"

# Ordered migrations: MIGRATIONS[i] upgrades a database from version i to i+1.
MIGRATIONS: list[str] = [
    # 1: runs, per-circuit results, per-check rows, raw probe JSON, profile snapshots
    """
    CREATE TABLE profiles (
        hash TEXT PRIMARY KEY,           -- sha256 of the canonical JSON: identical snapshots stored once
        json TEXT NOT NULL
    );
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        kind TEXT NOT NULL DEFAULT 'check',
        started_at TEXT NOT NULL,
        finished_at TEXT,                -- NULL: the run never finished (process died)
        verdict TEXT,
        tool_version TEXT NOT NULL,
        profile_hash TEXT REFERENCES profiles(hash)
    );
    CREATE INDEX runs_site_started ON runs(site, started_at);
    CREATE TABLE circuit_results (
        run_id INTEGER NOT NULL REFERENCES runs(id),
        circuit TEXT NOT NULL,
        verdict TEXT NOT NULL,
        stored_at TEXT NOT NULL,
        PRIMARY KEY (run_id, circuit)
    );
    CREATE TABLE checks (
        run_id INTEGER NOT NULL,
        circuit TEXT NOT NULL,
        seq INTEGER NOT NULL,            -- order within the circuit, as evaluated
        check_id TEXT NOT NULL,
        status TEXT NOT NULL,
        measured REAL,                   -- numeric measurement (queryable)
        measured_text TEXT,              -- or a text one ("EF -> CS0")
        required REAL,
        required_text TEXT,
        unit TEXT NOT NULL DEFAULT '',
        margin REAL,
        reason TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (run_id, circuit, seq)
    ) WITHOUT ROWID;                     -- clustered by run: reading a window of runs is a range scan
    CREATE INDEX checks_id ON checks(check_id, run_id);
    CREATE INDEX checks_failing ON checks(run_id) WHERE status IN ('fail', 'error');
    CREATE TABLE raw_results (
        run_id INTEGER NOT NULL,
        circuit TEXT NOT NULL,
        probe TEXT NOT NULL,
        json TEXT NOT NULL,
        PRIMARY KEY (run_id, circuit, probe)
    ) WITHOUT ROWID;
    """,
    # 2: the sign-off audit trail (append-only; the current state is the latest row per item)
    """
    CREATE TABLE signoffs (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        item TEXT NOT NULL,
        by_name TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        at TEXT NOT NULL,
        revoked INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX signoffs_site_item ON signoffs(site, item, at);
    """,
    # 3: the cause class of a check that did not pass (network | measurement_gap | internal_error)
    """
    ALTER TABLE checks ADD COLUMN cause TEXT;
    """,
    # 4: the fleet's view of each site as of its latest run or sign-off (harness.fleet):
    # derived, rewritten after every run, so `cutover fleet` reads one row per site
    """
    CREATE TABLE site_status (
        site TEXT PRIMARY KEY,
        evaluated_at TEXT NOT NULL,
        json TEXT NOT NULL
    );
    """,
    # 5: corrections of the sign-off audit trail: a correcting entry names the
    # entry it supersedes (which stays, marked superseded, never updated)
    """
    ALTER TABLE signoffs ADD COLUMN supersedes INTEGER;
    """,
    # 6: fault tickets with the provider, their audit trail, and filed SLA claims (docs/provider.md).
    # tickets holds the current state; every change is also a ticket_events row (never updated).
    """
    CREATE TABLE tickets (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        circuit TEXT NOT NULL,
        ref TEXT NOT NULL,                 -- the provider's reference
        severity TEXT NOT NULL,            -- a class of the circuit's contract
        outage_id TEXT,                    -- harness.history.outage_id, when linked
        opened_at TEXT NOT NULL,
        responded_at TEXT,
        resolved_at TEXT,
        closed_at TEXT,
        verify_run_id INTEGER,             -- the run started by `ticket update --resolved`
        verify_passed INTEGER              -- NULL: not verified at resolution
    );
    CREATE INDEX tickets_site ON tickets(site, opened_at);
    CREATE TABLE ticket_events (
        id INTEGER PRIMARY KEY,
        ticket_id INTEGER NOT NULL REFERENCES tickets(id),
        what TEXT NOT NULL,                -- opened | responded | resolved | closed | verified | note
        at TEXT NOT NULL,                  -- when it happened (--at)
        by_name TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        recorded_at TEXT NOT NULL          -- when it was written down
    );
    CREATE INDEX ticket_events_ticket ON ticket_events(ticket_id, at);
    CREATE TABLE claims (
        id INTEGER PRIMARY KEY,
        site TEXT NOT NULL,
        outage_id TEXT NOT NULL,
        filed_at TEXT NOT NULL,
        by_name TEXT NOT NULL,
        note TEXT NOT NULL DEFAULT '',
        recorded_at TEXT NOT NULL
    );
    CREATE INDEX claims_site ON claims(site, outage_id);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)

# The run kinds `Store.runs` returns by default: the readiness suite's full runs
# and its runs of some steps only (`cutover check --step`); drills are asked for.
SUITE_KINDS = ("check", "partial")

class StoreError(Exception):
    """The database cannot be opened or is newer than this tool (bad input: exit 2)."""


class StoreWriteError(StoreError):
    """A write did not reach the database; ``cause`` says why in words ("disk full",
    "read-only", "locked"...), the message names the database. Every backend maps its
    own errors to this one class, so `cutover check` can keep the run's results
    elsewhere and exit with its documented code instead of an internal error."""

    def __init__(self, path, cause: str, detail: str) -> None:
        self.path, self.cause, self.detail = path, cause, detail
        super().__init__(f"{path}: cannot write the history database: {cause} ({detail})")


class StoreUnavailable(StoreWriteError):
    """The database server cannot be reached or refuses the credentials: a
    reader could not measure (exit 3); `cutover check` measures anyway and
    keeps the run in a fallback file, as for any write that cannot land."""

    def __init__(self, location, message: str) -> None:
        StoreError.__init__(self, message)
        self.path, self.cause, self.detail = location, "database server unreachable", message


@dataclass
class PendingRun:
    """A run being measured: its circuits' results wait here, in memory, until
    :meth:`Store.finish_run` writes them all in one transaction. ``id`` is None
    until then (the database allocates it inside that transaction)."""
    site: str
    kind: str
    started_at: dt.datetime | None
    tool_version: str
    profile_hash: str
    profile_json: str
    circuits: list[tuple] = field(default_factory=list)   # (circuit, verdict, checks, raw, stored_at)
    id: int | None = None


# SQLite primary result codes (the low byte of extended codes) -> the cause in words
_SQLITE_WRITE_CAUSES = {
    13: "disk full",                                         # SQLITE_FULL (ENOSPC on write)
    8: "read-only (file, folder or file system)",            # SQLITE_READONLY
    5: "locked by another process beyond the busy timeout",  # SQLITE_BUSY
    6: "locked by another connection",                       # SQLITE_LOCKED
    10: "disk I/O error (quota exceeded, disk full or failing disk)",   # SQLITE_IOERR
    14: "cannot open a file it needs (journal or WAL: folder not writable?)",  # SQLITE_CANTOPEN
}


def _write_error(location: Location, exc: Exception) -> StoreWriteError | None:
    """The StoreWriteError for a resource fault, None for other errors (bugs stay bugs).
    SQLite reports a full disk as a plain I/O error when it cannot grow its shared-memory
    or WAL file: the file system's own state (no free blocks, mounted read-only) decides.
    PostgreSQL's faults are named by their SQLSTATE (store_backends.pg_write_cause)."""
    if not isinstance(exc, sqlite3.Error):
        pg_cause = store_backends.pg_write_cause(exc)
        return StoreWriteError(location, pg_cause, str(exc).strip()) if pg_cause else None
    path = location.target
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if code is not None else None
    cause = _SQLITE_WRITE_CAUSES.get(primary) if primary is not None else None
    if primary in (10, 13, 14):
        try:
            st = os.statvfs(Path(path).parent)
        except OSError:
            st = None
        if st is not None and st.f_flag & os.ST_RDONLY:
            cause = _SQLITE_WRITE_CAUSES[8]
        elif st is not None and (st.f_bavail == 0 or st.f_favail == 0):
            cause = "disk full"
    return StoreWriteError(location, cause, str(exc)) if cause else None


# ---------------------------------------------------------------- records

@dataclass
class CircuitRecord:
    name: str
    verdict: str
    checks: list[Check]
    raw: Mapping[str, dict]          # probe -> result JSON (loaded on first access)


@dataclass
class RunRecord:
    id: int
    site: str
    started_at: dt.datetime
    finished_at: dt.datetime | None  # None: incomplete (only in databases written before runs were one transaction)
    verdict: str | None
    kind: str
    circuits: dict[str, CircuitRecord] = field(default_factory=dict)
    tool_version: str = ""
    profile_hash: str | None = None

    @property
    def complete(self) -> bool:
        return self.finished_at is not None


@dataclass
class SignoffRecord:
    item: str
    by: str
    note: str
    at: dt.datetime
    revoked: bool
    id: int | None = None
    supersedes: int | None = None          # a correction: the id of the entry it corrects
    superseded_by: str | None = None       # corrected later: who corrected it ...
    superseded_at: dt.datetime | None = None   # ... and when

    @property
    def superseded(self) -> bool:
        return self.superseded_at is not None


@dataclass
class TicketEvent:
    what: str                        # opened | responded | resolved | closed | verified | note
    at: dt.datetime
    by: str
    note: str
    recorded_at: dt.datetime


@dataclass
class TicketRecord:
    id: int
    site: str
    circuit: str
    ref: str
    severity: str
    outage_id: str | None
    opened_at: dt.datetime
    responded_at: dt.datetime | None
    resolved_at: dt.datetime | None
    closed_at: dt.datetime | None
    verify_run_id: int | None
    verify_passed: bool | None
    events: list[TicketEvent] = field(default_factory=list)


@dataclass
class ClaimRecord:
    outage_id: str
    filed_at: dt.datetime
    by: str
    note: str


@dataclass
class ImportStats:
    sites: list[str] = field(default_factory=list)
    runs_added: int = 0
    runs_completed: int = 0          # incomplete in the target, finished in the source
    circuits_added: int = 0
    checks_added: int = 0
    signoffs_added: int = 0
    tickets_added: int = 0
    ticket_events_added: int = 0
    claims_added: int = 0

    def to_dict(self) -> dict:
        return {"sites": self.sites, "runs_added": self.runs_added, "runs_completed": self.runs_completed,
                "circuits_added": self.circuits_added, "checks_added": self.checks_added,
                "signoffs_added": self.signoffs_added, "tickets_added": self.tickets_added,
                "ticket_events_added": self.ticket_events_added, "claims_added": self.claims_added}


# ---------------------------------------------------------------- time helpers

def to_ts(t: dt.datetime | None) -> str:
    """Aware datetime -> fixed-width UTC text. Naive datetimes are refused: a
    local time silently taken as UTC would shift every outage window."""
    if t is None:
        t = dt.datetime.now(UTC)
    if t.tzinfo is None:
        raise ValueError(f"naive datetime {t!r}; pass a timezone-aware (UTC) datetime")
    return t.astimezone(UTC).strftime(_TS_FORMAT)


@overload
def from_ts(s: str) -> dt.datetime: ...
@overload
def from_ts(s: None) -> None: ...
def from_ts(s: str | None) -> dt.datetime | None:
    if s is None:
        return None
    return dt.datetime.fromisoformat(s)   # 3.11+ reads the trailing Z as UTC; C-fast


def default_path(profile=None, override: str | os.PathLike | None = None) -> Location:
    """--db, else the profile's db:, else $CUTOVER_DB, else ~/.local/share/cutover/history.sqlite.
    A relative path in the profile is relative to the profile; a URL is kept as
    is. Raises :class:`StoreError` for a URL that is not a PostgreSQL one."""
    try:
        if override:
            return parse_location(override)
        if profile is not None and getattr(profile, "db", None):
            if store_backends.is_url(profile.db):
                return parse_location(profile.db)
            return parse_location(profile.resolve_path(profile.db))
        env = os.environ.get("CUTOVER_DB")
        if env:
            return parse_location(env)
    except LocationError as exc:
        raise StoreError(str(exc)) from None
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return parse_location(Path(base) / "cutover" / "history.sqlite")


def _window(time_col: str, since: dt.datetime | None, until: dt.datetime | None,
            where: list[str], args: list[Any]) -> None:
    """The one [since, until) filter on a run's start time (appended to where/args)."""
    if since is not None:
        where.append(f"{time_col} >= ?")
        args.append(to_ts(since))
    if until is not None:
        where.append(f"{time_col} < ?")
        args.append(to_ts(until))


def _split(v: Any) -> tuple[float | None, str | None]:
    """A value for the (REAL, TEXT) column pair."""
    if v is None:
        return None, None
    if isinstance(v, bool):
        return None, "true" if v else "false"
    if isinstance(v, (int, float)):
        return float(v), None
    return None, str(v)


def _join(num: float | None, text: str | None) -> Any:
    if num is not None:
        return int(num) if num.is_integer() and abs(num) < 2**53 else num
    if text == "true":
        return True
    if text == "false":
        return False
    return text


class _LazyRaw(Mapping):
    """Raw probe JSON of one circuit, read from the database on first access:
    reports over 30 days of history mostly need checks, not the raw blobs."""

    def __init__(self, store: "Store", run_id: int, circuit: str) -> None:
        self._store, self._run_id, self._circuit = store, run_id, circuit
        self._data: dict[str, dict] | None = None

    def _load(self) -> dict[str, dict]:
        if self._data is None:
            self._data = self._store.raw(self._run_id, self._circuit)
        return self._data

    def __getitem__(self, key: str) -> dict:
        return self._load()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._load())

    def __len__(self) -> int:
        return len(self._load())

    def __repr__(self) -> str:
        return f"_LazyRaw(run={self._run_id}, circuit={self._circuit!r})"


# ---------------------------------------------------------------- the store

class Store:
    """One connection to the history database; safe to share between threads
    (every operation holds a lock) and across processes (SQLite WAL locking,
    PostgreSQL MVCC)."""

    def __init__(self, location: str | os.PathLike | Location, *, busy_timeout_s: float = 30.0) -> None:
        try:
            self.location = parse_location(location)
        except LocationError as exc:
            raise StoreError(str(exc)) from None
        try:
            self._db = store_backends.connect(self.location, busy_timeout_s)
        except ConnectError as exc:
            if self.location.kind == "postgresql":
                raise StoreUnavailable(self.location, str(exc)) from None
            raise StoreError(str(exc)) from None
        except store_backends.SqliteBackend.Error as exc:
            mapped = _write_error(self.location, exc)    # a full or read-only disk, not a bad file
            if mapped is not None:
                raise mapped from None
            raise StoreError(f"{self.location}: not a usable cutover history database: {exc}") from None
        self.kind = self._db.kind
        self.path: Path | None = self._db.path       # None for a server database
        self.Error = self._db.Error                  # the engine's error base class
        self._busy_timeout_s = busy_timeout_s
        self._lost = False                           # the server dropped us: reconnect before the next use
        self._lock = threading.RLock()
        self._own_writes = 0
        try:
            self._migrate()
        except self._db.Error as exc:
            self._db.close()
            mapped = _write_error(self.location, exc)    # a full or read-only disk, not a bad file
            if mapped is not None:
                raise mapped from None
            raise StoreError(f"{self.location}: not a usable cutover history database: {exc}") from None

    # -- plumbing

    def _reopen_if_lost(self) -> None:
        """A long-lived reader (the board, the exporter, the scheduler) outlives a
        database server restart: after a read or write found the server gone, the
        next use opens a new connection instead of failing on the dead one forever.
        Still unreachable: StoreUnavailable again, and the next use tries again.
        Called with the lock held."""
        if not self._lost:
            return
        try:
            self._db.close()
        except self._db.Error:
            pass                              # the old connection is gone: nothing to close cleanly
        try:
            self._db = store_backends.connect(self.location, self._busy_timeout_s)
        except ConnectError as exc:      # still down: the same words as the read that found it gone
            raise StoreUnavailable(self.location, f"{self.location.display}: database server unreachable: "
                                                  f"cannot connect again ({exc.detail})") from exc.driver_error
        self._lost = False

    def reconnect(self) -> None:
        """Drop this connection and open a new one now: for a second connection of
        the same process that has not used its dead one since the server came back
        (the board's reader, once its poll connection found the server again).
        StoreUnavailable while the server is still down."""
        with self._lock:
            self._lost = True
            self._reopen_if_lost()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[store_backends.Backend]:
        """One write transaction. On SQLite BEGIN IMMEDIATE takes the write
        lock up front so two writers queue on busy_timeout instead of
        deadlocking on upgrade; on PostgreSQL writers of different runs never
        wait for each other."""
        with self._lock:
            if self._db.in_transaction:          # inside batch(): join it
                yield self._db
                return
            self._reopen_if_lost()
            with self._write_faults():
                self._db.begin_write()
                try:
                    yield self._db
                    self._db.commit()
                except BaseException:
                    self._rollback()
                    raise
            self._own_writes += 1

    @contextmanager
    def _write_faults(self) -> Iterator[None]:
        """The engine's resource faults (disk full, read-only, locked, server
        gone) as StoreWriteError."""
        try:
            yield
        except self._db.Error as exc:
            mapped = _write_error(self.location, exc)
            if mapped is None:
                raise
            if self.kind == "postgresql" and store_backends.pg_server_lost(exc) is not None:
                self._lost = True
            raise mapped from exc

    def _rollback(self) -> None:
        """Roll back if a transaction is still open: SQLite itself ends it on some errors
        (SQLITE_FULL), and a second ROLLBACK would hide the real cause."""
        if self._db.in_transaction:
            self._db.rollback()

    @contextmanager
    def _read(self) -> Iterator[store_backends.Backend]:
        """A read transaction: all queries inside see one snapshot. A database
        server lost in the middle is :class:`StoreUnavailable` (exit 3)."""
        with self._lock:
            if self._db.in_transaction:
                yield self._db
                return
            self._reopen_if_lost()
            with self._read_faults():
                self._db.begin_read()
                try:
                    yield self._db
                except BaseException:
                    try:
                        self._rollback()
                    except self._db.Error:
                        pass      # the connection is gone: the error being raised says why
                    raise
                self._db.commit()

    @contextmanager
    def _read_faults(self) -> Iterator[None]:
        """The one place a read's lost server becomes :class:`StoreUnavailable`."""
        try:
            yield
        except self._db.Error as exc:
            cause = store_backends.pg_server_lost(exc) if self.kind == "postgresql" else None
            if cause is None:
                raise
            self._lost = True
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StoreUnavailable(self.location, f"{self.location.display}: database server unreachable: "
                                                  f"{cause} ({detail})") from exc

    @contextmanager
    def batch(self) -> Iterator["Store"]:
        """Group many writes into one transaction (fixtures, imports). Normal
        runs do not use this: each of their writes commits on its own."""
        with self._lock:
            self._reopen_if_lost()
            with self._write_faults():
                self._db.begin_write()
                try:
                    yield self
                    self._db.commit()
                except BaseException:
                    self._rollback()
                    raise
                self._own_writes += 1

    def schema_version(self) -> int:
        with self._lock:
            if not self._db.table_exists("schema_version"):
                return 0
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            return int(row[0]) if row else 0

    def _migrate(self, target: int | None = None) -> None:
        target = SCHEMA_VERSION if target is None else target
        with self._lock:
            # Fast path without the write lock: a reader opening the database
            # while the scheduler is mid-write must not wait for it.
            current = self.schema_version()
            if current > SCHEMA_VERSION:
                raise StoreError(f"{self.location}: database schema version {current} is newer than this "
                                 f"cutover (knows up to {SCHEMA_VERSION}); upgrade cutover")
            if current >= target:
                return
            self._db.begin_migration()   # one migrator at a time across processes
            try:
                self._db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
                row = self._db.execute("SELECT version FROM schema_version").fetchone()
                if row is None:
                    self._db.execute("INSERT INTO schema_version (version) VALUES (0)")
                    current = 0
                else:
                    current = int(row[0])
                if current > SCHEMA_VERSION:
                    raise StoreError(f"{self.location}: database schema version {current} is newer than this "
                                     f"cutover (knows up to {SCHEMA_VERSION}); upgrade cutover")
                for version in range(current, target):
                    for statement in _statements(MIGRATIONS[version]):
                        self._db.execute(statement)
                    self._db.execute("UPDATE schema_version SET version = ?", (version + 1,))
                self._db.commit()
            except BaseException:
                self._db.rollback()
                raise

    def data_version(self, site: str | None = None) -> int:
        """Changes whenever any process (this one included) commits a write.
        The engine's counter may move on other connections' commits only, so
        our own write count is added. With ``site``, on a server database:
        changes when that site's latest runs, sign-offs or filed claims do (a central
        database takes writes from every site every few seconds; the board of
        one site must not reload for each of them)."""
        with self._lock:
            if site is None or self.kind == "sqlite":
                self._reopen_if_lost()
                with self._read_faults():
                    return self._db.data_version() + self._own_writes
            with self._read() as db:
                runs = db.execute("SELECT r.id, r.finished_at, (SELECT count(*) FROM circuit_results c "
                                  "WHERE c.run_id = r.id) FROM runs r WHERE r.site = ? "
                                  "ORDER BY r.started_at DESC, r.id DESC LIMIT 2", (site,)).fetchall()
                signed = db.execute("SELECT max(id) FROM signoffs WHERE site = ?", (site,)).fetchone()
                filed = db.execute("SELECT max(id) FROM claims WHERE site = ?", (site,)).fetchone()  # board: claimed
            return hash((tuple(map(tuple, runs)), tuple(signed or ()), tuple(filed or ()),
                         self._own_writes)) & (2**62 - 1)

    # -- writing a run

    def begin_run(self, site: str, profile_snapshot: dict, tool_version: str,
                  started_at: dt.datetime | None = None, kind: str = "check") -> PendingRun:
        """A run to fill with :meth:`add_circuit_result` and write with
        :meth:`finish_run`. Nothing reaches the database before finish_run."""
        text = json.dumps(profile_snapshot, sort_keys=True, default=str)
        started_at = started_at or dt.datetime.now(UTC)
        to_ts(started_at)                               # a naive time is refused now, not at the end
        return PendingRun(site, kind, started_at, tool_version, hashlib.sha256(text.encode()).hexdigest(), text)

    def add_circuit_result(self, run: PendingRun, circuit: str, verdict: str, checks: list[Check],
                           raw: dict[str, dict] | None = None, *, stored_at: dt.datetime | None = None) -> None:
        """One circuit's result, held with the run until :meth:`finish_run`."""
        if run.id is not None:
            raise ValueError(f"run {run.id} is already stored")
        run.circuits.append((circuit, verdict, list(checks), dict(raw or {}),
                             to_ts(stored_at or dt.datetime.now(UTC))))

    def finish_run(self, run: PendingRun, verdict: str, finished_at: dt.datetime | None = None) -> int:
        """Write the run with all its circuits in ONE transaction; the run's id
        is allocated inside it and returned (also set on ``run.id``)."""
        if run.id is not None:
            raise ValueError(f"run {run.id} is already stored")
        try:
            with self._write() as db:
                db.execute("INSERT INTO profiles (hash, json) VALUES (?, ?) ON CONFLICT DO NOTHING",
                           (run.profile_hash, run.profile_json))
                run_id = int(db.execute(
                    "INSERT INTO runs (site, kind, started_at, tool_version, profile_hash, finished_at, verdict) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (run.site, run.kind, to_ts(run.started_at), run.tool_version, run.profile_hash,
                     to_ts(finished_at), verdict)).fetchall()[0][0])
                db.executemany("INSERT INTO circuit_results (run_id, circuit, verdict, stored_at) "
                               "VALUES (?, ?, ?, ?)", [(run_id, name, cverdict, stored)
                                                       for name, cverdict, _, _, stored in run.circuits])
                rows: list[tuple] = []
                raws: list[tuple] = []
                for circuit, _, checks, raw, _ in run.circuits:
                    for seq, c in enumerate(checks):
                        m, mt = _split(c.measured)
                        r, rt = _split(c.required)
                        rows.append((run_id, circuit, seq, c.id, c.status, m, mt, r, rt, c.unit or "",
                                     None if c.margin is None else float(c.margin), c.reason or "", c.cause))
                    raws.extend((run_id, circuit, probe, json.dumps(data, default=str))
                                for probe, data in raw.items())
                db.executemany("INSERT INTO checks (run_id, circuit, seq, check_id, status, measured, "
                               "measured_text, required, required_text, unit, margin, reason, cause) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                db.executemany("INSERT INTO raw_results (run_id, circuit, probe, json) VALUES (?, ?, ?, ?)", raws)
                run.id = run_id
        except BaseException:
            run.id = None                  # rolled back: not stored
            raise
        return run_id

    # -- reading runs

    def runs(self, site: str, since: dt.datetime | None = None, until: dt.datetime | None = None,
             circuit: str | None = None, *, kind: str | tuple[str, ...] | None = SUITE_KINDS,
             checks: str = "all") -> list[RunRecord]:
        """Runs of ``site`` started in [since, until), oldest first, with their
        circuits and checks (raw JSON loads lazily). With ``circuit``, only runs
        that stored that circuit, and only that circuit in each record.

        ``kind``: one kind or several. Default :data:`SUITE_KINDS`: the suite's
        runs, full ("check") and of some steps only ("partial", `check --step`),
        which harness.history tells apart (only full runs make pass rates,
        outages and coverage; partial ones update their own checks' latest
        result). "drill" (failover drills, `cutover probe failover`) only when
        asked for, or None for every kind.

        ``checks``: "all", "failing" (only fail/error: what an outage log
        needs) or "none" (verdicts only). 30 days of 5-minute runs on three
        circuits hold ~300k checks; "failing"/"none" plus :meth:`series` for
        charts keep a report well under a second."""
        if checks not in ("all", "failing", "none"):
            raise ValueError(f"checks must be 'all', 'failing' or 'none', not {checks!r}")
        where, args = ["site = ?"], [site]
        _window("started_at", since, until, where, args)
        if kind is not None:
            kinds = (kind,) if isinstance(kind, str) else tuple(kind)
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args.extend(kinds)
        run_sql = ("SELECT id, site, started_at, finished_at, verdict, kind, tool_version, profile_hash "
                   f"FROM runs WHERE {' AND '.join(where)}")
        cfilter, cargs = ("AND c.circuit = ?", [circuit]) if circuit else ("", [])
        with self._read() as db:
            runs: dict[int, RunRecord] = {}
            for rid, s, st, fin, v, k, tv, ph in db.execute(run_sql + " ORDER BY started_at, id", args):
                runs[rid] = RunRecord(rid, s, from_ts(st), from_ts(fin), v, k, {}, tv, ph)
            if not runs:
                return []
            sub = f"SELECT id FROM runs WHERE {' AND '.join(where)}"
            for rid, name, verdict in db.execute(
                    f"SELECT c.run_id, c.circuit, c.verdict FROM circuit_results c "
                    f"WHERE c.run_id IN ({sub}) {cfilter}", args + cargs):
                runs[rid].circuits[name] = CircuitRecord(name, verdict, [], _LazyRaw(self, rid, name))
            sfilter = "AND c.status IN ('fail', 'error')" if checks == "failing" else ""
            rows = () if checks == "none" else db.execute(
                f"SELECT c.run_id, c.circuit, c.check_id, c.status, c.measured, c.measured_text, "
                f"c.required, c.required_text, c.unit, c.margin, c.reason, c.cause FROM checks c "
                f"WHERE c.run_id IN ({sub}) {cfilter} {sfilter} ORDER BY c.run_id, c.circuit, c.seq",
                args + cargs)
            for (rid, name, cid, status, m, mt, r, rt, unit, margin, reason, cause) in rows:
                rec = runs[rid].circuits.get(name)
                if rec is not None:
                    rec.checks.append(Check(cid, status, m if mt is None else _join(m, mt),
                                            r if rt is None else _join(r, rt), unit, margin, reason, cause))
        out = list(runs.values())
        if circuit:
            out = [r for r in out if circuit in r.circuits]
        return out

    def run(self, run_id: int) -> RunRecord | None:
        with self._read() as db:
            row = db.execute("SELECT site, started_at FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        start = from_ts(row[1])
        for r in self.runs(row[0], since=start, until=start + dt.timedelta(microseconds=1)):
            if r.id == run_id:
                return r
        return None

    def latest_run(self, site: str, kind: str | tuple[str, ...] = SUITE_KINDS) -> RunRecord | None:
        """The most recently started run of that kind or kinds (complete or not);
        by default the suite's, full or partial (:data:`SUITE_KINDS`)."""
        kinds = (kind,) if isinstance(kind, str) else tuple(kind)
        with self._read() as db:
            row = db.execute(f"SELECT id FROM runs WHERE site = ? AND kind IN ({', '.join('?' * len(kinds))}) "
                             "ORDER BY started_at DESC, id DESC LIMIT 1", (site, *kinds)).fetchone()
        return self.run(row[0]) if row else None

    def raw(self, run_id: int, circuit: str) -> dict[str, dict]:
        with self._read() as db:
            return {probe: json.loads(text) for probe, text in db.execute(
                "SELECT probe, json FROM raw_results WHERE run_id = ? AND circuit = ?", (run_id, circuit))}

    def profile_snapshot(self, run_id: int) -> dict | None:
        with self._read() as db:
            row = db.execute("SELECT p.json FROM runs r JOIN profiles p ON p.hash = r.profile_hash "
                             "WHERE r.id = ?", (run_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def sites(self) -> list[str]:
        """Every site with a run. A skip scan over the (site, started_at)
        index: one probe per site, not a pass over every run (200 sites with
        1.7 million runs: milliseconds instead of a scan)."""
        with self._read() as db:
            return [r[0] for r in db.execute(
                "WITH RECURSIVE s(site) AS (SELECT min(site) FROM runs UNION ALL "
                "SELECT (SELECT min(r.site) FROM runs r WHERE r.site > s.site) FROM s WHERE s.site IS NOT NULL) "
                "SELECT site FROM s WHERE site IS NOT NULL")]

    def latest_runs(self, site: str, limit: int = 1) -> list[RunRecord]:
        """The ``limit`` most recently started runs of ``site`` (newest first),
        without their circuits: what a fleet overview needs (is the probe
        still writing, and how often)."""
        with self._read() as db:
            return [RunRecord(rid, site, from_ts(st), from_ts(fin), v, k, {}, tv, ph)
                    for rid, st, fin, v, k, tv, ph in db.execute(
                        "SELECT id, started_at, finished_at, verdict, kind, tool_version, profile_hash FROM runs "
                        "WHERE site = ? ORDER BY started_at DESC, id DESC LIMIT ?", (site, limit))]

    def series(self, site: str, check_id: str, since: dt.datetime | None = None,
               until: dt.datetime | None = None) -> list[tuple[dt.datetime, str, Any, str]]:
        """(started_at, circuit, measured, status) of one check over time, oldest
        first: a fast path for charts that need no full RunRecords."""
        where, args = ["r.site = ?", "c.check_id = ?"], [site, check_id]
        _window("r.started_at", since, until, where, args)
        with self._read() as db:
            return [(from_ts(st), circ, _join(m, mt), status) for st, circ, m, mt, status in db.execute(
                "SELECT r.started_at, c.circuit, c.measured, c.measured_text, c.status FROM checks c "
                f"JOIN runs r ON r.id = c.run_id WHERE {' AND '.join(where)} ORDER BY r.started_at, r.id",
                args)]

    def json_numbers(self, site: str, paths: Mapping[str, list[tuple[str, ...]]],
                     since: dt.datetime | None = None, until: dt.datetime | None = None
                     ) -> list[tuple[str, str, str, tuple[float | None, ...]]] | None:
        """(started_at text, circuit, probe, (number at each of that probe's
        paths, or None)) from the raw probe JSON over time, oldest first,
        extracted by the engine in one pass over the window (30 days of one
        site: 26k documents). ``paths``: probe -> JSON paths. Only numbers are
        returned (text, booleans and missing paths are None). None when the
        engine cannot read a stored document (a non-standard NaN in old
        JSON): the caller then falls back to the per-run raw JSON."""
        probes = list(paths)
        if not probes:
            return []
        where, args = ["r.site = ?", f"x.probe IN ({', '.join('?' * len(probes))})"], [site, *probes]
        _window("r.started_at", since, until, where, args)
        cols, col_args = [], []
        for probe in probes:
            for p in paths[probe]:
                cols.append(f"CASE WHEN probe = ? THEN {self._db.json_number('j', p)} END")
                col_args.append(probe)
        # MATERIALIZED: each document parsed once, whatever number of paths is read
        sql = (f"WITH q AS MATERIALIZED (SELECT r.started_at AS st, r.id AS rid, x.circuit AS circuit, "
               f"x.probe AS probe, {self._db.json_doc('x.json')} AS j FROM raw_results x "
               f"JOIN runs r ON r.id = x.run_id WHERE {' AND '.join(where)}) "
               f"SELECT st, circuit, probe, {', '.join(cols)} FROM q ORDER BY st, rid")
        offset, spans = 0, {}
        for probe in probes:
            spans[probe] = (offset, offset + len(paths[probe]))
            offset += len(paths[probe])
        try:
            with self._read() as db:
                rows = db.execute(sql, [*args, *col_args]).fetchall()
        except self._db.DataError:
            return None
        return [(row[0], row[1], row[2], tuple(row[3 + spans[row[2]][0]:3 + spans[row[2]][1]])) for row in rows]

    # -- the fleet's per-site summary (derived; see harness.fleet)

    def put_site_status(self, site: str, evaluated_at: dt.datetime, doc: dict) -> None:
        with self._write() as db:
            db.execute("INSERT INTO site_status (site, evaluated_at, json) VALUES (?, ?, ?) "
                       "ON CONFLICT (site) DO UPDATE SET evaluated_at = excluded.evaluated_at, json = excluded.json",
                       (site, to_ts(evaluated_at), json.dumps(doc, default=str)))

    def site_statuses(self) -> dict[str, tuple[dt.datetime, dict]]:
        with self._read() as db:
            return {site: (from_ts(at), json.loads(doc))
                    for site, at, doc in db.execute("SELECT site, evaluated_at, json FROM site_status")}

    def last_signoff_at(self, site: str) -> dt.datetime | None:
        with self._read() as db:
            row = db.execute("SELECT max(at) FROM signoffs WHERE site = ?", (site,)).fetchone()
        return from_ts(row[0]) if row and row[0] else None

    # -- moving a history between databases

    def import_from(self, source: "Store", *, site_map: Mapping[str, str | list[str]] | None = None
                    ) -> "ImportStats":
        """Copy every run, circuit result, check, raw result, profile snapshot
        and sign-off of ``source`` (a site's SQLite file) into this database
        (the central one). Idempotent: a run is the same run when its site,
        kind and start time (to the microsecond) are; what is already there
        is skipped, circuits a run lacks are added, an incomplete run that
        finished since is closed. A rerun therefore adds nothing. One
        transaction per site: an interrupted import leaves whole sites.
        ``site_map`` renames sites on the way (``{"old": "new"}``), or copies
        one into several (``{"demo": ["a", "b"]}``: benchmarks, demo fleets)."""
        stats = ImportStats()
        # every column of checks both schemas have (a column a later migration adds travels too)
        with source._read() as src_db, self._read() as dst_db:
            theirs, ours = src_db.columns("checks"), dst_db.columns("checks")
        check_cols = ["run_id", "circuit"] + [c for c in theirs if c in ours and c not in ("run_id", "circuit")]
        for site in source.sites_with_history():
            dest = (site_map or {}).get(site, site)
            with source._read() as src:
                runs = src.execute("SELECT id, kind, started_at, finished_at, verdict, tool_version, profile_hash "
                                   "FROM runs WHERE site = ? ORDER BY started_at, id", (site,)).fetchall()
                circuits = src.execute("SELECT c.run_id, c.circuit, c.verdict, c.stored_at FROM circuit_results c "
                                       "JOIN runs r ON r.id = c.run_id WHERE r.site = ?", (site,)).fetchall()
                profiles = src.execute("SELECT hash, json FROM profiles WHERE hash IN "
                                       "(SELECT profile_hash FROM runs WHERE site = ?)", (site,)).fetchall()
                signoffs = src.execute("SELECT item, by_name, note, at, revoked, id, supersedes FROM signoffs "
                                       "WHERE site = ? "
                                       "ORDER BY at, id", (site,)).fetchall()
                checks = src.execute(f"SELECT {', '.join('c.' + c for c in check_cols)} "
                                     "FROM checks c JOIN runs r ON r.id = c.run_id WHERE r.site = ?",
                                     (site,)).fetchall()
                raws = src.execute("SELECT x.run_id, x.circuit, x.probe, x.json FROM raw_results x "
                                   "JOIN runs r ON r.id = x.run_id WHERE r.site = ?", (site,)).fetchall()
                provider_rows = (
                    src.execute(f"SELECT {self._TICKET_COLS} FROM tickets WHERE site = ? ORDER BY opened_at, id",
                                (site,)).fetchall(),
                    src.execute("SELECT e.ticket_id, e.what, e.at, e.by_name, e.note, e.recorded_at "
                                "FROM ticket_events e JOIN tickets t ON t.id = e.ticket_id WHERE t.site = ? "
                                "ORDER BY e.at, e.id", (site,)).fetchall(),
                    src.execute("SELECT outage_id, filed_at, by_name, note, recorded_at FROM claims "
                                "WHERE site = ? ORDER BY filed_at, id", (site,)).fetchall())
            for dest_site in [dest] if isinstance(dest, str) else dest:
                self._import_site(dest_site, stats, runs, circuits, profiles, signoffs, check_cols, checks, raws,
                                  provider_rows)
        self._db.optimize()
        return stats

    def _import_site(self, dest_site: str, stats: "ImportStats", runs, circuits, profiles, signoffs,
                     check_cols, checks, raws, provider_rows=((), (), ())) -> None:
        """One site's rows (as read by :meth:`import_from`) into this database, one transaction."""
        with self._write() as db:
            have_runs = {(st, k): (rid, fin) for rid, st, k, fin in db.execute(
                "SELECT id, started_at, kind, finished_at FROM runs WHERE site = ?", (dest_site,))}
            have_circuits = set(db.execute(
                "SELECT c.run_id, c.circuit FROM circuit_results c JOIN runs r ON r.id = c.run_id "
                "WHERE r.site = ?", (dest_site,)).fetchall())
            have_signoffs = {tuple(r[:5]): r[5] for r in db.execute(
                "SELECT item, by_name, note, at, revoked, id FROM signoffs WHERE site = ?", (dest_site,))}
            db.executemany("INSERT INTO profiles (hash, json) VALUES (?, ?) ON CONFLICT DO NOTHING", profiles)
            fresh = [(dest_site, kind, st, fin, verdict, tv, ph)
                     for _rid, kind, st, fin, verdict, tv, ph in runs if (st, kind) not in have_runs]
            db.copy_rows("runs", ("site", "kind", "started_at", "finished_at", "verdict", "tool_version",
                                  "profile_hash"), fresh)
            stats.runs_added += len(fresh)
            if fresh:       # the new rows' ids, by their key
                have_runs = {(st, k): (rid, fin) for rid, st, k, fin in db.execute(
                    "SELECT id, started_at, kind, finished_at FROM runs WHERE site = ?", (dest_site,))}
            idmap: dict[int, int] = {}
            for rid, kind, st, fin, verdict, _tv, _ph in runs:
                have = have_runs[(st, kind)]
                idmap[rid] = have[0]
                if have[1] is None and fin is not None:
                    db.execute("UPDATE runs SET finished_at = ?, verdict = ? WHERE id = ?", (fin, verdict, have[0]))
                    stats.runs_completed += 1
            todo = {(rid, c) for rid, c, _, _ in circuits if (idmap[rid], c) not in have_circuits}
            db.copy_rows("circuit_results", ("run_id", "circuit", "verdict", "stored_at"),
                         [(idmap[rid], c, v, at) for rid, c, v, at in circuits if (rid, c) in todo])
            db.copy_rows("checks", check_cols, [(idmap[r[0]], *r[1:]) for r in checks if (r[0], r[1]) in todo])
            db.copy_rows("raw_results", ("run_id", "circuit", "probe", "json"),
                         [(idmap[r[0]], *r[1:]) for r in raws if (r[0], r[1]) in todo])
            new_signoffs = [so for so in signoffs if tuple(so[:5]) not in have_signoffs]
            db.executemany("INSERT INTO signoffs (site, item, by_name, note, at, revoked) "
                           "VALUES (?, ?, ?, ?, ?, ?)", [(dest_site, *so[:5]) for so in new_signoffs])
            if any(so[6] is not None for so in new_signoffs):     # corrections point at their entry's new id
                have_signoffs = {tuple(r[:5]): r[5] for r in db.execute(
                    "SELECT item, by_name, note, at, revoked, id FROM signoffs WHERE site = ?", (dest_site,))}
                src_key = {so[5]: tuple(so[:5]) for so in signoffs}
                db.executemany("UPDATE signoffs SET supersedes = ? WHERE id = ?",
                               [(have_signoffs[src_key[so[6]]], have_signoffs[tuple(so[:5])])
                                for so in new_signoffs if so[6] in src_key])
            stats.circuits_added += len(todo)
            stats.checks_added += sum((r[0], r[1]) in todo for r in checks)
            stats.signoffs_added += len(new_signoffs)
            self._import_provider_rows(db, dest_site, idmap, stats, *provider_rows)
            stats.sites.append(dest_site)

    @staticmethod
    def _import_provider_rows(db, dest_site: str, idmap: dict[int, int], stats: "ImportStats",
                              tickets, events, claims) -> None:
        """Tickets (the same ticket: circuit, ref and opening time; its state is
        taken from the source, the site's own record), their audit trail and
        filed claims, inside :meth:`_import_site`'s transaction."""
        have = {(c, ref, op): tid for tid, c, ref, op in db.execute(
            "SELECT id, circuit, ref, opened_at FROM tickets WHERE site = ?", (dest_site,))}
        tmap: dict[int, int] = {}
        for tid, _site, circuit, ref, sev, oid, op, rs, rv, cl, vr, vp in tickets:
            state = (sev, oid, rs, rv, cl, idmap.get(vr) if vr is not None else None, vp)
            if (circuit, ref, op) in have:
                tmap[tid] = have[(circuit, ref, op)]
                db.execute("UPDATE tickets SET severity = ?, outage_id = ?, responded_at = ?, resolved_at = ?, "
                           "closed_at = ?, verify_run_id = ?, verify_passed = ? WHERE id = ?", (*state, tmap[tid]))
            else:
                tmap[tid] = db.execute(
                    "INSERT INTO tickets (site, circuit, ref, severity, outage_id, opened_at, responded_at, "
                    "resolved_at, closed_at, verify_run_id, verify_passed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    "RETURNING id", (dest_site, circuit, ref, sev, oid, op, *state[2:])).fetchall()[0][0]
                stats.tickets_added += 1
        seen = set(db.execute("SELECT e.ticket_id, e.what, e.at, e.by_name, e.note FROM ticket_events e "
                              "JOIN tickets t ON t.id = e.ticket_id WHERE t.site = ?", (dest_site,)).fetchall())
        fresh = [(tmap[tid], what, at, by, note, rec) for tid, what, at, by, note, rec in events
                 if (tmap[tid], what, at, by, note) not in seen]
        db.executemany("INSERT INTO ticket_events (ticket_id, what, at, by_name, note, recorded_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", fresh)
        stats.ticket_events_added += len(fresh)
        filed = set(db.execute("SELECT outage_id, filed_at, by_name, note FROM claims WHERE site = ?",
                               (dest_site,)).fetchall())
        new_claims = [c for c in claims if tuple(c[:4]) not in filed]
        db.executemany("INSERT INTO claims (site, outage_id, filed_at, by_name, note, recorded_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", [(dest_site, *c) for c in new_claims])
        stats.claims_added += len(new_claims)

    def sites_with_history(self) -> list[str]:
        """Sites with runs or sign-offs."""
        with self._read() as db:
            return [r[0] for r in db.execute("SELECT site FROM runs UNION SELECT site FROM signoffs ORDER BY 1")]

    # -- sign-offs

    def signoff(self, site: str, item: str, by: str, note: str = "", revoke: bool = False,
                at: dt.datetime | None = None) -> SignoffRecord:
        """Append to the audit trail; nothing is ever updated or deleted."""
        if not by or not by.strip():
            raise ValueError("a sign-off needs the name of who signs (--by)")
        ts = to_ts(at)
        with self._write() as db:
            db.execute("INSERT INTO signoffs (site, item, by_name, note, at, revoked) VALUES (?, ?, ?, ?, ?, ?)",
                       (site, item, by, note or "", ts, 1 if revoke else 0))
        return SignoffRecord(item, by, note or "", from_ts(ts), bool(revoke))

    def correct_signoff(self, site: str, item: str, by: str, note: str = "",
                        at: dt.datetime | None = None) -> SignoffRecord:
        """Correct the item's current entry (a wrong name or note): a new entry
        with the same state (signed off or revoked) that supersedes it. The old
        entry stays in the trail, marked superseded by ``by`` at ``at``.
        ValueError when the item has no entry to correct."""
        if not by or not by.strip():
            raise ValueError("a correction needs the name of who corrects (--by)")
        ts = to_ts(at)
        with self._write() as db:
            row = db.execute("SELECT id, revoked FROM signoffs WHERE site = ? AND item = ? AND at <= ? "
                             "ORDER BY at DESC, id DESC LIMIT 1", (site, item, ts)).fetchone()
            if row is None:
                raise ValueError(f"'{item}' has no sign-off to correct")
            db.execute("INSERT INTO signoffs (site, item, by_name, note, at, revoked, supersedes) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)", (site, item, by, note or "", ts, row[1], row[0]))
        return SignoffRecord(item, by, note or "", from_ts(ts), bool(row[1]), supersedes=row[0])

    def signoff_history(self, site: str, as_of: dt.datetime | None = None) -> list[SignoffRecord]:
        """The whole trail in time order (``as_of``: only the entries made by
        then); an entry corrected by then carries who corrected it and when."""
        sql = "SELECT id, item, by_name, note, at, revoked, supersedes FROM signoffs WHERE site = ?"
        args: tuple = (site,)
        if as_of is not None:
            sql, args = sql + " AND at <= ?", (site, to_ts(as_of))
        with self._read() as db:
            rows = db.execute(sql + " ORDER BY at, id", args).fetchall()
        out = [SignoffRecord(item, by, note, from_ts(at), bool(rev), id=rid, supersedes=sup)
               for rid, item, by, note, at, rev, sup in rows]
        by_id = {r.id: r for r in out}
        for r in out:
            old = by_id.get(r.supersedes) if r.supersedes is not None else None
            if old is not None:
                old.superseded_by, old.superseded_at = r.by, r.at
        return out

    def signoffs(self, site: str, as_of: dt.datetime | None = None) -> dict[str, SignoffRecord]:
        """Current state per item (as of ``as_of``: what was known then): its
        latest entry, a correction or a revocation included (callers treat
        ``revoked`` as not signed)."""
        out: dict[str, SignoffRecord] = {}
        for rec in self.signoff_history(site, as_of):
            if not rec.superseded:
                out[rec.item] = rec
        return out

    # -- fault tickets and SLA claims (harness.contract judges them)

    _TICKET_COLS = ("id, site, circuit, ref, severity, outage_id, opened_at, responded_at, resolved_at, "
                    "closed_at, verify_run_id, verify_passed")

    def open_ticket(self, site: str, circuit: str, ref: str, severity: str, *, by: str,
                    at: dt.datetime | None = None, outage_id: str | None = None, note: str = "") -> TicketRecord:
        """A new ticket and its first audit-trail entry, in one transaction."""
        if not by or not by.strip():
            raise ValueError("a ticket change needs the name of who makes it (--by)")
        ts, now = to_ts(at), to_ts(None)
        with self._write() as db:
            tid = db.execute("INSERT INTO tickets (site, circuit, ref, severity, outage_id, opened_at) "
                             "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                             (site, circuit, ref, severity, outage_id, ts)).fetchall()[0][0]
            db.execute("INSERT INTO ticket_events (ticket_id, what, at, by_name, note, recorded_at) "
                       "VALUES (?, 'opened', ?, ?, ?, ?)", (tid, ts, by, note or "", now))
        rec = self.ticket(site, tid)
        assert rec is not None
        return rec

    def update_ticket(self, site: str, ticket_id: int, what: str, *, by: str, at: dt.datetime | None = None,
                      note: str = "", verify_run_id: int | None = None,
                      verify_passed: bool | None = None) -> TicketRecord:
        """Record a step (responded | resolved | closed | verified | note) and its
        audit-trail entry. The first response and the resolution keep their first
        time (a second --responded is only a trail entry); a resolution clears the
        earlier verification, so a reopened fault is verified afresh."""
        if what not in ("responded", "resolved", "closed", "verified", "note"):
            raise ValueError(f"unknown ticket change {what!r}")
        if not by or not by.strip():
            raise ValueError("a ticket change needs the name of who makes it (--by)")
        ts, now = to_ts(at), to_ts(None)
        with self._write() as db:
            if db.execute("SELECT id FROM tickets WHERE site = ? AND id = ?", (site, ticket_id)).fetchone() is None:
                raise KeyError(ticket_id)
            if what in ("responded", "closed"):
                db.execute(f"UPDATE tickets SET {what}_at = coalesce({what}_at, ?) WHERE id = ?", (ts, ticket_id))
            elif what == "resolved":
                db.execute("UPDATE tickets SET resolved_at = ?, verify_run_id = NULL, verify_passed = NULL "
                           "WHERE id = ?", (ts, ticket_id))
            if what == "verified" or (what == "resolved" and verify_passed is not None):
                db.execute("UPDATE tickets SET verify_run_id = ?, verify_passed = ? WHERE id = ?",
                           (verify_run_id, None if verify_passed is None else int(verify_passed), ticket_id))
            db.execute("INSERT INTO ticket_events (ticket_id, what, at, by_name, note, recorded_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (ticket_id, what, ts, by, note or "", now))
        rec = self.ticket(site, ticket_id)
        assert rec is not None
        return rec

    def tickets(self, site: str, circuit: str | None = None) -> list[TicketRecord]:
        """The site's tickets, oldest first, each with its audit trail."""
        where, args = ["site = ?"], [site]
        if circuit is not None:
            where.append("circuit = ?")
            args.append(circuit)
        with self._read() as db:
            rows = db.execute(f"SELECT {self._TICKET_COLS} FROM tickets WHERE {' AND '.join(where)} "
                              "ORDER BY opened_at, id", args).fetchall()
            events: dict[int, list[TicketEvent]] = {}
            for tid, what, at, by, note, rec_at in db.execute(
                    "SELECT e.ticket_id, e.what, e.at, e.by_name, e.note, e.recorded_at FROM ticket_events e "
                    "JOIN tickets t ON t.id = e.ticket_id WHERE t.site = ? ORDER BY e.at, e.id", (site,)):
                events.setdefault(tid, []).append(TicketEvent(what, from_ts(at), by, note, from_ts(rec_at)))
        return [TicketRecord(tid, s, c, ref, sev, oid, from_ts(op), from_ts(rs), from_ts(rv), from_ts(cl),
                             vr, None if vp is None else bool(vp), events.get(tid, []))
                for tid, s, c, ref, sev, oid, op, rs, rv, cl, vr, vp in rows]

    def ticket(self, site: str, ticket_id: int) -> TicketRecord | None:
        return next((t for t in self.tickets(site) if t.id == ticket_id), None)

    def file_claim(self, site: str, outage_id: str, *, by: str, at: dt.datetime | None = None,
                   note: str = "") -> ClaimRecord:
        """Record that the outage's SLA claim was filed with the provider (append-only)."""
        if not by or not by.strip():
            raise ValueError("a filed claim needs the name of who filed it (--by)")
        ts = to_ts(at)
        with self._write() as db:
            db.execute("INSERT INTO claims (site, outage_id, filed_at, by_name, note, recorded_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (site, outage_id, ts, by, note or "", to_ts(None)))
        return ClaimRecord(outage_id, from_ts(ts), by, note or "")

    def claims(self, site: str) -> dict[str, ClaimRecord]:
        """The first filing of each outage's claim."""
        out: dict[str, ClaimRecord] = {}
        with self._read() as db:
            for oid, at, by, note in db.execute("SELECT outage_id, filed_at, by_name, note FROM claims "
                                                "WHERE site = ? ORDER BY filed_at, id", (site,)):
                out.setdefault(oid, ClaimRecord(oid, from_ts(at), by, note))
        return out


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (our migrations hold no
    semicolons inside literals). executescript() would COMMIT our transaction."""
    out, buf = [], []
    for line in script.splitlines():
        line = line.split("--", 1)[0]
        buf.append(line)
        if line.rstrip().endswith(";"):
            stmt = "\n".join(buf).strip()
            if stmt.strip(";").strip():
                out.append(stmt)
            buf = []
    rest = "\n".join(buf).strip()
    if rest:
        out.append(rest)
    return out


