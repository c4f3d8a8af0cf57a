"""`cutover db migrate` and `cutover db import`: a site's 30-day SQLite
history moved into PostgreSQL reads back as the same report, and a second
import adds nothing."""

import json

import psycopg

from harness import store as S
from harness.store import Store
from tests.conftest import run_cli
from tests.fixtures.history import FIXED_END, cached_history

AS_OF = (FIXED_END.replace(minute=1)).isoformat()


def _counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("runs", "circuit_results", "checks", "raw_results", "signoffs", "profiles")}


def test_migrate_creates_the_schema(pg_url):
    r = run_cli("db", "migrate", "--db", pg_url, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["engine"] == "postgresql" and d["schema_version"] == S.SCHEMA_VERSION and d["current"]
    assert _counts(pg_url)["runs"] == 0


def test_import_30_days_gives_the_same_report(tmp_path_factory, tmp_path, pg_url):
    fx = cached_history(tmp_path_factory)
    # a sign-off in the site's file travels too
    with Store(fx.db_path) as local:
        local.signoff("Harbour Street office", "porting", "Ana", "48 DDIs", at=FIXED_END)
        local_runs = len(local.runs("Harbour Street office", checks="none"))
    assert local_runs == fx.runs == 8640

    r = run_cli("db", "import", str(fx.db_path), "--into", pg_url, "--json")
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["runs_added"] == 8640 and first["circuits_added"] == 8640 * 3
    assert first["signoffs_added"] == 1
    counts = _counts(pg_url)
    assert counts["runs"] == 8640 and counts["circuit_results"] == 8640 * 3
    assert counts["checks"] == first["checks_added"] > 8640 * 3
    # every raw probe result, byte for byte
    with Store(fx.db_path) as local:
        want = local._db.execute("SELECT count(*), sum(length(json)) FROM raw_results").fetchone()
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*), sum(length(json)) FROM raw_results").fetchone() == want

    reports = {}
    for name, db in (("sqlite", str(fx.db_path)), ("postgresql", pg_url)):
        out = tmp_path / name
        r = run_cli("report", str(fx.profile_path), "--db", db, "--as-of", AS_OF, "--since", "30d",
                    "--format", "json,md", "--out", str(out), "--json")
        assert r.returncode == 0, r.stderr
        summary = json.loads(r.stdout)
        summary.pop("files", None)
        summary.pop("db", None)
        reports[name] = (summary, json.loads((out / "report.json").read_text()),
                         (out / "report.md").read_text())
    assert reports["postgresql"][0] == reports["sqlite"][0]
    assert reports["postgresql"][1] == reports["sqlite"][1]
    assert reports["postgresql"][2] == reports["sqlite"][2]
    rep = reports["postgresql"][1]
    assert rep["outages"], "the fixture plants outages; an empty log would compare equal trivially"

    gates = [json.loads(run_cli("gate", str(fx.profile_path), "--db", db, "--as-of", AS_OF, "--json").stdout)
             for db in (str(fx.db_path), pg_url)]
    for g in gates:
        g.pop("db")
    assert gates[0] == gates[1]

    # a second import adds nothing
    r = run_cli("db", "import", str(fx.db_path), "--into", pg_url, "--json")
    assert r.returncode == 0, r.stderr
    again = json.loads(r.stdout)
    assert (again["runs_added"], again["circuits_added"], again["checks_added"], again["signoffs_added"],
            again["runs_completed"]) == (0, 0, 0, 0, 0)
    assert _counts(pg_url) == counts


def test_import_completes_a_run_that_finished_since(tmp_path, pg_url):
    """A run still open at the first import is closed by the second, and its
    late circuit added; nothing is duplicated. Runs are one transaction now, so
    only a history written by an older cutover (a run committed in steps) holds
    an open run: the test writes one as that version did."""
    import datetime as dt
    import sqlite3

    from harness.store import to_ts
    src = tmp_path / "site.sqlite"
    t = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    Store(src).close()
    with sqlite3.connect(src) as raw:          # begun, one circuit committed, not finished
        raw.execute("INSERT INTO profiles (hash, json) VALUES ('h', '{\"site\": \"A\"}')")
        raw.execute("INSERT INTO runs (id, site, kind, started_at, tool_version, profile_hash) "
                    "VALUES (1, 'A', 'check', ?, '0.1', 'h')", (to_ts(t),))
        raw.execute("INSERT INTO circuit_results (run_id, circuit, verdict, stored_at) VALUES (1, 'new', 'GO', ?)",
                    (to_ts(t),))
    assert json.loads(run_cli("db", "import", str(src), "--into", pg_url, "--json").stdout)["runs_added"] == 1
    with sqlite3.connect(src) as raw:          # ... and finished since
        raw.execute("INSERT INTO circuit_results (run_id, circuit, verdict, stored_at) VALUES (1, 'old', 'GO', ?)",
                    (to_ts(t),))
        raw.execute("UPDATE runs SET finished_at = ?, verdict = 'GO' WHERE id = 1", (to_ts(t),))
    d = json.loads(run_cli("db", "import", str(src), "--into", pg_url, "--json").stdout)
    assert (d["runs_added"], d["runs_completed"], d["circuits_added"]) == (0, 1, 1)
    (run,) = Store(pg_url).runs("A")
    assert run.complete and run.verdict == "GO" and set(run.circuits) == {"new", "old"}


def test_import_bad_input(tmp_path, pg_url):
    r = run_cli("db", "import", str(tmp_path / "missing.sqlite"), "--into", pg_url)
    assert r.returncode == 2 and "no such file" in r.stderr
    r = run_cli("db", "import", pg_url, "--into", pg_url)
    assert r.returncode == 2 and "local SQLite history file" in r.stderr
