"""The history store: schema, migrations, WAL, round trips, concurrency, crash safety."""

import datetime as dt
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from harness import store as S
from harness.store import Store, StoreError
from harness.verdicts import Check
from tests import pause_in_write
from tests.conftest import ROOT

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
PROFILE = {"site": "Harbour", "circuits": [{"name": "old"}, {"name": "new"}]}


def _checks(jitter=4.5):
    return [Check("stream.mos", "pass", 4.38, 4.0, "", 0.38, "MOS 4.38 >= 4 minimum"),
            Check("stream.jitter_up", "pass", jitter, 30, "ms", 30 - jitter, "ok"),
            Check("stream.dscp", "warn", "EF -> 0", "EF", "", None, "DSCP lost"),
            Check("stream.split", "pass", True, True, "", None, "split"),
            Check("sip.options", "error", None, None, "", None, "no SIP")]


def _store_run(st, at, verdict="GO", circuits=("old", "new"), site="Harbour"):
    rid = st.begin_run(site, PROFILE, "0.1.0", started_at=at)
    for c in circuits:
        st.add_circuit_result(rid, c, verdict, _checks(), {"stream": {"probe": "stream", "mos": 4.38}})
    rid = st.finish_run(rid, verdict, finished_at=at + dt.timedelta(seconds=40))
    return rid


def test_fresh_database_is_wal_and_current(tmp_path):
    path = tmp_path / "sub" / "h.sqlite"
    st = Store(path)
    assert st.schema_version() == S.SCHEMA_VERSION == 6
    st.close()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"runs", "circuit_results", "checks", "raw_results", "signoffs", "schema_version", "site_status"} <= tables
    idx = raw.execute("SELECT sql FROM sqlite_master WHERE name='runs_site_started'").fetchone()[0]
    assert "site, started_at" in idx


def test_round_trip(db_location):
    st = Store(db_location)
    rid = _store_run(st, T0)
    runs = st.runs("Harbour")
    assert [r.id for r in runs] == [rid]
    r = runs[0]
    assert r.started_at == T0 and r.finished_at == T0 + dt.timedelta(seconds=40)
    assert r.complete and r.verdict == "GO" and r.kind == "check" and r.tool_version == "0.1.0"
    assert set(r.circuits) == {"old", "new"}
    checks = r.circuits["new"].checks
    assert [c.to_dict() for c in checks] == [c.to_dict() for c in _checks()]
    assert checks[1].measured == 4.5 and checks[1].required == 30
    assert checks[2].measured == "EF -> 0" and checks[3].measured is True and checks[4].measured is None
    assert dict(r.circuits["old"].raw) == {"stream": {"probe": "stream", "mos": 4.38}}
    assert st.profile_snapshot(rid) == PROFILE
    assert st.latest_run("Harbour").id == rid
    assert st.latest_run("elsewhere") is None


def test_identical_profile_snapshots_stored_once(db_location):
    st = Store(db_location)
    for i in range(3):
        _store_run(st, T0 + dt.timedelta(minutes=5 * i))
    n = st._db.execute("SELECT count(*) FROM profiles").fetchone()[0]
    assert n == 1


def test_filters(db_location):
    st = Store(db_location)
    ids = [_store_run(st, T0 + dt.timedelta(hours=h)) for h in range(5)]
    other = _store_run(st, T0, circuits=("old",))
    _store_run(st, T0, site="Other")
    assert [r.id for r in st.runs("Harbour", since=T0 + dt.timedelta(hours=1),
                                  until=T0 + dt.timedelta(hours=3))] == ids[1:3]
    new_only = st.runs("Harbour", circuit="new")
    assert other not in [r.id for r in new_only] and len(new_only) == 5
    assert all(set(r.circuits) == {"new"} for r in new_only)
    assert st.sites() == ["Harbour", "Other"]
    series = st.series("Harbour", "stream.jitter_up", since=T0 + dt.timedelta(hours=4))
    assert sorted((t, c, m) for t, c, m, _ in series) == [(T0 + dt.timedelta(hours=4), "new", 4.5),
                                                          (T0 + dt.timedelta(hours=4), "old", 4.5)]


def test_a_run_is_one_transaction(db_location):
    """Nothing of a run is visible before finish_run, which writes it whole and
    allocates its id; a run never finished (its process died) leaves nothing."""
    st, reader = Store(db_location), Store(db_location)
    done = _store_run(st, T0)
    run = st.begin_run("Harbour", PROFILE, "0.1.0", started_at=T0 + dt.timedelta(minutes=5))
    st.add_circuit_result(run, "old", "NO-GO", _checks(), {"stream": {"mos": 1.0}})
    assert run.id is None
    for who in (st, reader):
        assert [r.id for r in who.runs("Harbour")] == [done] and who.latest_run("Harbour").id == done
        assert who._db.execute("SELECT count(*) FROM circuit_results WHERE run_id <> ?", (done,)).fetchone()[0] == 0
    st.add_circuit_result(run, "new", "GO", _checks(), {})
    rid = st.finish_run(run, "NO-GO", finished_at=T0 + dt.timedelta(minutes=6))
    assert rid == run.id == done + 1
    r = reader.latest_run("Harbour")
    assert r.id == rid and r.complete and r.verdict == "NO-GO" and set(r.circuits) == {"old", "new"}
    assert len(r.circuits["old"].checks) == 5 and dict(r.circuits["old"].raw) == {"stream": {"mos": 1.0}}
    with pytest.raises(ValueError, match="already stored"):
        st.finish_run(run, "GO")
    with pytest.raises(ValueError, match="already stored"):
        st.add_circuit_result(run, "x", "GO", [])


def test_naive_datetime_refused(db_location):
    st = Store(db_location)
    with pytest.raises(ValueError, match="naive"):
        st.begin_run("x", {}, "0", started_at=dt.datetime(2026, 1, 1))


def test_migration_from_previous_version(tmp_path):
    """A version-1 database (before sign-offs existed) with a run in it is
    upgraded in place; the run is intact and sign-offs work."""
    path = tmp_path / "v1.sqlite"
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    raw.execute("INSERT INTO schema_version VALUES (1)")
    for stmt in S._statements(S.MIGRATIONS[0]):
        raw.execute(stmt)
    raw.execute("INSERT INTO runs (id, site, kind, started_at, finished_at, verdict, tool_version) "
                "VALUES (7, 'Harbour', 'check', '2026-11-01T08:00:00.000000Z', "
                "'2026-11-01T08:00:30.000000Z', 'NO-GO', '0.0.9')")
    raw.execute("INSERT INTO circuit_results VALUES (7, 'new', 'NO-GO', '2026-11-01T08:00:30.000000Z')")
    raw.execute("INSERT INTO checks VALUES (7, 'new', 0, 'latency.loss', 'fail', 5.0, NULL, 1.0, NULL, "
                "'%', -4.0, 'loss 5 % > 1 % limit')")
    raw.close()

    st = Store(path)
    assert st.schema_version() == S.SCHEMA_VERSION
    (r,) = st.runs("Harbour")
    assert r.id == 7 and r.verdict == "NO-GO" and r.tool_version == "0.0.9"
    c = r.circuits["new"].checks[0]
    assert (c.id, c.status, c.measured, c.margin, c.reason) == ("latency.loss", "fail", 5, -4.0,
                                                                "loss 5 % > 1 % limit")
    # a check stored before cause classes: no cause stored, read as the network's (as it was then)
    from harness.verdicts import cause_of
    assert c.cause is None and cause_of(c) == "network"
    st.signoff("Harbour", "porting", "Ana")
    assert st.signoffs("Harbour")["porting"].by == "Ana"


def test_migration_from_empty_file(tmp_path):
    path = tmp_path / "empty.sqlite"
    path.touch()
    assert Store(path).schema_version() == S.SCHEMA_VERSION


def test_newer_schema_refused(tmp_path):
    path = tmp_path / "future.sqlite"
    Store(path).close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("UPDATE schema_version SET version = 99")
    raw.close()
    with pytest.raises(StoreError, match="newer"):
        Store(path)


def test_not_a_database(tmp_path):
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="not a usable"):
        Store(path)


def test_signoffs_audit_trail(db_location):
    st = Store(db_location)
    st.signoff("Harbour", "porting", "Ana", "ported 12 numbers", at=T0)
    st.signoff("Harbour", "porting", "Ben", "numbers 14-16 still on old", revoke=True,
               at=T0 + dt.timedelta(hours=1))
    st.signoff("Harbour", "failover", "Ana", at=T0 + dt.timedelta(hours=2))
    st.signoff("Other", "failover", "Zed", at=T0)
    cur = st.signoffs("Harbour")
    assert cur["porting"].revoked and cur["porting"].by == "Ben"
    assert not cur["failover"].revoked and cur["failover"].at == T0 + dt.timedelta(hours=2)
    hist = st.signoff_history("Harbour")
    assert [(h.item, h.by, h.revoked) for h in hist] == [("porting", "Ana", False), ("porting", "Ben", True),
                                                         ("failover", "Ana", False)]
    with pytest.raises(ValueError):
        st.signoff("Harbour", "x", " ")


def test_reader_not_blocked_by_writer_mid_transaction(db_location):
    """A second connection reads (and even opens the database) while a writer
    holds an open write transaction; it sees the last committed state."""
    path = db_location
    writer = Store(path)
    first = _store_run(writer, T0)
    reader = Store(path, busy_timeout_s=1.0)
    v0 = reader.data_version()
    in_tx, release = threading.Event(), threading.Event()

    def write():
        with writer.batch():
            _store_run(writer, T0 + dt.timedelta(minutes=5))
            in_tx.set()
            release.wait(10)

    t = threading.Thread(target=write)
    t.start()
    try:
        assert in_tx.wait(10)
        t0 = time.monotonic()
        assert [r.id for r in reader.runs("Harbour")] == [first]
        late = Store(path, busy_timeout_s=1.0)       # opening must not need the write lock
        assert [r.id for r in late.runs("Harbour")] == [first]
        if not path.startswith("postgresql:"):     # (PostgreSQL: a wait would raise at lock_timeout = 1 s)
            assert time.monotonic() - t0 < 0.9      # i.e. nobody waited on busy_timeout
        assert reader.data_version() == v0
    finally:
        release.set()
        t.join(10)
    assert len(reader.runs("Harbour")) == 2
    assert reader.data_version() != v0
    # our own writes move it too (the TUI signs off through its own connection)
    v1 = reader.data_version()
    reader.signoff("Harbour", "x", "me")
    assert reader.data_version() != v1


_CRASH_CHILD = r"""
import datetime as dt, sys
from tests.pause_in_write import install_from_env
install_from_env()
from harness.store import Store
from harness.verdicts import Check
st = Store(sys.argv[1])
t = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
for i in range(3):
    rid = st.begin_run("Harbour", {"site": "Harbour"}, "0.1.0", started_at=t + dt.timedelta(minutes=5 * i))
    for c in ("old", "new"):
        st.add_circuit_result(rid, c, "GO", [Check("latency.rtt", "pass", 1.5, 300, "ms", 298.5, "ok")] * 50,
                              {"latency": {"x": "y" * 5000}})
    rid = st.finish_run(rid, "GO")
"""


def test_kill_9_mid_write_keeps_earlier_runs(tmp_path, db_location):
    """kill -9 while run 3's transaction is open (the hook pauses inside it,
    after all its rows were inserted): the database opens clean, runs 1-2 are
    complete and run 3 left nothing (a run is one transaction)."""
    path = db_location
    marker = tmp_path / "paused"
    env = dict(os.environ, **pause_in_write.env(3, marker))
    proc = subprocess.Popen([sys.executable, "-c", _CRASH_CHILD, str(path)], env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert marker.exists(), "child never reached the pause inside the write"
        assert int(marker.read_text()) == proc.pid
        if not path.startswith("postgresql:"):   # the uncommitted rows really are in the WAL file right now
            assert (tmp_path / "h.sqlite-wal").stat().st_size > 0
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    if not path.startswith("postgresql:"):
        raw = sqlite3.connect(path)
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        raw.close()
    st = Store(path)
    runs = st.runs("Harbour")
    assert [r.id for r in runs] == [1, 2]
    for r in runs[:2]:
        assert r.complete and r.verdict == "GO" and set(r.circuits) == {"old", "new"}
        assert all(len(c.checks) == 50 for c in r.circuits.values())
        assert len(r.circuits["new"].raw["latency"]["x"]) == 5000
    for table in ("circuit_results", "checks", "raw_results"):
        assert st._db.execute(f"SELECT count(*) FROM {table} WHERE run_id > 2").fetchone()[0] == 0
    # and the database keeps working after the crash
    _store_run(st, T0 + dt.timedelta(days=1))
    assert len(st.runs("Harbour")) == 3 and st.runs("Harbour")[2].complete


def test_default_path(tmp_path, monkeypatch):
    monkeypatch.delenv("CUTOVER_DB", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert S.default_path().target == str(tmp_path / ".local/share/cutover/history.sqlite")
    monkeypatch.setenv("CUTOVER_DB", str(tmp_path / "env.sqlite"))
    assert S.default_path().target == str(tmp_path / "env.sqlite")
    assert S.default_path(override=str(tmp_path / "cli.sqlite")).target == str(tmp_path / "cli.sqlite")
    url = "postgresql://probe:pw@db.example:5433/cutover?sslmode=require"
    monkeypatch.setenv("CUTOVER_DB", url)
    loc = S.default_path()
    assert (loc.kind, loc.target) == ("postgresql", url)
    assert str(loc) == "postgresql://probe:***@db.example:5433/cutover?sslmode=require"
    with pytest.raises(StoreError, match="unsupported database URL scheme 'mysql'"):
        S.default_path(override="mysql://x@h/db")
    with pytest.raises(StoreError, match="names no database"):
        S.default_path(override="postgresql://x@h")
    from harness.profile import load_profile_text
    prof = load_profile_text("site: s\nplanned: {calls: 1}\ndb: hist/site.sqlite\ncircuits:\n"
                             "  - {name: n, role: new, down_mbps: 1, up_mbps: 1}\n",
                             path=tmp_path / "p" / "site.yaml")
    assert S.default_path(prof).target == str(tmp_path / "p" / "hist/site.sqlite")
    prof.db = url
    assert S.default_path(prof).target == url       # a URL in db: is not relative to the profile


def test_cause_class_round_trips(db_location):
    from harness.verdicts import Check
    st = Store(db_location)
    rid = st.begin_run("Harbour", {}, "t")
    checks = [Check("stream.mos", "pass", 4.3, 4.0, "", 0.3, "ok"),
              Check("stream.measured", "error", None, None, "", None, "key file missing", "measurement_gap"),
              Check("latency.loss", "fail", 5.0, 1.0, "%", -4.0, "loss", "network"),
              Check("bandwidth.measured", "error", None, None, "", None, "bug", "internal_error")]
    st.add_circuit_result(rid, "new", "NO-GO", checks)
    rid = st.finish_run(rid, "NO-GO")
    (r,) = st.runs("Harbour")
    assert [c.cause for c in r.circuits["new"].checks] == [None, "measurement_gap", "network", "internal_error"]
    (r,) = st.runs("Harbour", checks="failing")
    assert [c.cause for c in r.circuits["new"].checks] == ["measurement_gap", "network", "internal_error"]


def test_sites_and_latest_runs(db_location):
    st = Store(db_location)
    assert st.sites() == []
    for i, site in enumerate(["b", "a", "c", "a"]):
        _store_run(st, T0 + dt.timedelta(minutes=5 * i), site=site, circuits=("new",))
    assert st.sites() == ["a", "b", "c"]
    latest = st.latest_runs("a", 5)
    assert [r.started_at for r in latest] == [T0 + dt.timedelta(minutes=15), T0 + dt.timedelta(minutes=5)]
    assert latest[0].complete and latest[0].circuits == {}
    assert st.latest_runs("nowhere") == []


def test_json_numbers_reads_paths_in_the_raw_json(db_location):
    """The database's own JSON functions, same answers on both engines:
    numbers as numbers; text, booleans and missing paths as None."""
    st = Store(db_location)
    for i, (p50, note) in enumerate([(12.5, "ok"), (14, True)]):
        rid = st.begin_run("Harbour", PROFILE, "0.1.0", started_at=T0 + dt.timedelta(minutes=5 * i))
        st.add_circuit_result(rid, "new", "GO", [], {"stream": {"rtt_ms": {"p50": p50}, "note": note},
                                                     "latency": {"rtt_ms": {"p50": 99}}, "sip": {"x": 1}})
        rid = st.finish_run(rid, "GO")
    rows = st.json_numbers("Harbour", {"stream": [("rtt_ms", "p50"), ("note",), ("absent", "x")],
                                       "latency": [("rtt_ms", "p50")]},
                           since=T0, until=T0 + dt.timedelta(hours=1))
    assert sorted((st_, c, p, v) for st_, c, p, v in rows) == [
        (S.to_ts(T0), "new", "latency", (99,)), (S.to_ts(T0), "new", "stream", (12.5, None, None)),
        (S.to_ts(T0 + dt.timedelta(minutes=5)), "new", "latency", (99,)),
        (S.to_ts(T0 + dt.timedelta(minutes=5)), "new", "stream", (14, None, None))]
    assert st.json_numbers("Harbour", {"stream": [("rtt_ms", "p50")]}, since=T0 + dt.timedelta(minutes=1)) == \
        [(S.to_ts(T0 + dt.timedelta(minutes=5)), "new", "stream", (14,))]


def test_import_between_engines_is_idempotent(tmp_path, db_location):
    src = Store(tmp_path / "site.sqlite")
    ids = [_store_run(src, T0 + dt.timedelta(minutes=5 * i)) for i in range(3)]
    src.signoff("Harbour", "porting", "Ana", "ok", at=T0)
    dst = Store(db_location)
    first = dst.import_from(src)
    assert (first.runs_added, first.circuits_added, first.checks_added, first.signoffs_added) == (3, 6, 30, 1)
    again = dst.import_from(src)
    assert (again.runs_added, again.circuits_added, again.checks_added, again.signoffs_added) == (0, 0, 0, 0)
    got = dst.runs("Harbour")
    want = src.runs("Harbour")
    assert len(got) == len(ids) == 3
    for g, w in zip(got, want):
        assert (g.started_at, g.finished_at, g.verdict, g.profile_hash) == (w.started_at, w.finished_at,
                                                                           w.verdict, w.profile_hash)
        for name in ("old", "new"):
            assert [c.to_dict() for c in g.circuits[name].checks] == [c.to_dict() for c in w.circuits[name].checks]
            assert dict(g.circuits[name].raw) == dict(w.circuits[name].raw)
    assert dst.profile_snapshot(got[0].id) == PROFILE
    assert dst.signoffs("Harbour")["porting"].note == "ok"
    # copied into two more site names: independent copies
    dst.import_from(src, site_map={"Harbour": ["H2", "H3"]})
    assert dst.sites() == ["H2", "H3", "Harbour"] and len(dst.runs("H3")) == 3


def test_data_version_of_one_site(db_location):
    """The board polls data_version(site): any write of that site (another
    process's run or sign-off) moves it; on a server database
    another site's writes do not (a central database takes them every second)."""
    st, other = Store(db_location), Store(db_location)
    _store_run(st, T0, site="A")
    v = st.data_version("A")
    _store_run(other, T0, site="B")
    if db_location.startswith("postgresql:"):
        assert st.data_version("A") == v
    run = other.begin_run("A", PROFILE, "0.1.0", started_at=T0 + dt.timedelta(minutes=5))
    other.add_circuit_result(run, "new", "GO", _checks(), {})
    if db_location.startswith("postgresql:"):
        assert st.data_version("A") == v      # a run being measured is not written yet
    versions = [v]
    other.finish_run(run, "GO")
    versions.append(st.data_version("A"))
    other.signoff("A", "porting", "Ana")
    versions.append(st.data_version("A"))
    assert len(set(versions)) == 3


def test_import_carries_a_column_a_later_migration_adds(tmp_path, db_location):
    """Import copies every column of checks both databases have, so a column
    a later migration adds (a check's cause, say) is not dropped on the way."""
    src = Store(tmp_path / "site.sqlite")
    _store_run(src, T0)
    src._db.execute("ALTER TABLE checks ADD COLUMN extra_tag TEXT")
    src._db.execute("UPDATE checks SET extra_tag = 'network' WHERE status = 'error'")
    dst = Store(db_location)
    dst._db.execute("ALTER TABLE checks ADD COLUMN extra_tag TEXT")
    assert dst.import_from(src).checks_added == 10
    assert dst._db.execute("SELECT count(*) FROM checks WHERE extra_tag = 'network'").fetchone()[0] == 2
