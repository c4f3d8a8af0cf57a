"""The PostgreSQL side of the store: migrations on a server, credentials,
errors a user can act on (exit codes), and concurrent writers. The contract
shared with SQLite is in test_store.py (parametrized over both engines)."""

import datetime as dt
import json
import threading

import psycopg
import pytest

from harness import store as S
from harness.store import Store, StoreError, StoreUnavailable, StoreWriteError
from harness.verdicts import Check
from tests.conftest import run_cli
from tests.pgserver import PASSWORD, PASSWORD_USER

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
PROFILE_YAML = """site: Harbour
planned: {calls: 4}
circuits:
  - {name: new, role: new, down_mbps: 10, up_mbps: 10}
cutover:
  checklist:
    - {id: porting, title: Numbers ported}
"""


def _run(st, at, site="Harbour", verdict="GO"):
    rid = st.begin_run(site, {"site": site}, "0.1.0", started_at=at)
    st.add_circuit_result(rid, "new", verdict, [Check("latency.rtt", "pass", 12.5, 150, "ms", 137.5, "ok")],
                          {"latency": {"rtt_ms": {"p50": 12.5}}})
    rid = st.finish_run(rid, verdict, finished_at=at + dt.timedelta(seconds=30))
    return rid


def test_schema_on_postgresql(pg_url):
    st = Store(pg_url)
    assert st.kind == "postgresql" and st.path is None
    assert st.schema_version() == S.SCHEMA_VERSION
    with psycopg.connect(pg_url) as conn:
        cols = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_name = 'checks'").fetchall())
        ident = conn.execute("SELECT is_identity FROM information_schema.columns "
                             "WHERE table_name = 'runs' AND column_name = 'id'").fetchone()[0]
        idx = {r[0] for r in conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'checks'")}
    assert cols["measured"] == "double precision" and cols["run_id"] == "bigint" and cols["reason"] == "text"
    assert ident == "YES"
    assert {"checks_id", "checks_failing"} <= idx


def test_migration_from_version_1_on_postgresql(pg_url):
    """A server database at version 1 (before sign-offs) is upgraded in place."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (1)")
        for stmt in S._statements(S.MIGRATIONS[0]):
            conn.execute(S.store_backends.pg_sql(stmt))
        conn.execute("INSERT INTO runs (id, site, kind, started_at, finished_at, verdict, tool_version) "
                     "VALUES (7, 'Harbour', 'check', '2026-11-01T08:00:00.000000Z', "
                     "'2026-11-01T08:00:30.000000Z', 'NO-GO', '0.0.9')")
    st = Store(pg_url)
    assert st.schema_version() == S.SCHEMA_VERSION
    assert [r.id for r in st.runs("Harbour")] == [7]
    st.signoff("Harbour", "porting", "Ana")
    assert st.signoffs("Harbour")["porting"].by == "Ana"


def test_newer_schema_refused_on_postgresql(pg_url):
    Store(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = 99")
    with pytest.raises(StoreError, match="newer"):
        Store(pg_url)


def test_concurrent_first_open_migrates_once(pg_url):
    """Eight processes' worth of first opens at once: the advisory lock lets
    one migrate; nobody fails on 'relation already exists'."""
    errors: list[BaseException] = []

    def open_it():
        try:
            Store(pg_url).close()
        except BaseException as exc:      # collected and asserted below
            errors.append(exc)
    threads = [threading.Thread(target=open_it) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*), max(version) FROM schema_version").fetchone() == (1, S.SCHEMA_VERSION)


def test_password_from_url_tcp_and_masked(pg_server):
    db = pg_server.new_database(owner=PASSWORD_USER)
    url = pg_server.tcp_url(db)
    st = Store(url)
    _run(st, T0)
    assert str(st.location) == f"postgresql://{PASSWORD_USER}:***@127.0.0.1:{pg_server.port}/{db}?sslmode=disable"
    assert PASSWORD not in repr(st.location.display)
    # the password is not in anything stored
    with psycopg.connect(url) as conn:
        dump = str(conn.execute("SELECT * FROM runs").fetchall())
        dump += str(conn.execute("SELECT * FROM profiles").fetchall())
    assert PASSWORD not in dump


def test_password_from_pgpass_file(pg_server, tmp_path, monkeypatch):
    db = pg_server.new_database(owner=PASSWORD_USER)
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg_server.port}:{db}:{PASSWORD_USER}:{PASSWORD}\n")
    passfile.chmod(0o600)
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    url = pg_server.tcp_url(db, password=None)
    _run(Store(url), T0)
    assert len(Store(url).runs("Harbour")) == 1
    # and ?passfile= in the URL (libpq's own parameter)
    monkeypatch.delenv("PGPASSFILE")
    assert len(Store(url + f"&passfile={passfile}").runs("Harbour")) == 1


def test_wrong_password_and_unreachable_server_are_clear_errors(pg_server):
    db = pg_server.new_database(owner=PASSWORD_USER)
    with pytest.raises(StoreUnavailable, match="password authentication failed") as exc:
        Store(pg_server.tcp_url(db, password="wrong-one"))
    assert "wrong-one" not in str(exc.value) and "***" in str(exc.value)
    with pytest.raises(StoreUnavailable, match="cannot connect to PostgreSQL"):
        Store("postgresql://nobody@127.0.0.1:1/cutover?connect_timeout=2", busy_timeout_s=2)


def test_cli_db_url_is_never_a_path(tmp_path, pg_server):
    """`--db postgresql://...` once created an SQLite file under a folder
    named 'postgresql:'. Now: a server that is down exits 3, a foreign URL
    scheme exits 2, a working URL stores there; no folder appears."""
    prof = tmp_path / "site.yaml"
    prof.write_text(PROFILE_YAML)
    down = "postgresql://cutover:topsecret@127.0.0.1:1/cutover?connect_timeout=2"
    r = run_cli("gate", str(prof), "--db", down, "--json", cwd=tmp_path)
    assert r.returncode == 3, r.stderr
    assert "cannot connect to PostgreSQL" in r.stderr and "topsecret" not in r.stderr + r.stdout
    assert "Traceback" not in r.stderr
    r = run_cli("gate", str(prof), "--db", "mysql://u@h/db", "--json", cwd=tmp_path)
    assert r.returncode == 2 and "unsupported database URL scheme" in r.stderr
    assert not any(p.name.endswith(":") for p in tmp_path.iterdir())
    url = pg_server.url(pg_server.new_database())
    r = run_cli("signoff", str(prof), "porting", "--by", "Ana", "--db", url, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Store(url).signoffs("Harbour")["porting"].by == "Ana"


def test_writers_do_not_wait_for_each_other(pg_url):
    """Two sites' writers with open transactions at once (SQLite would queue
    the second on its file lock); a reader sees neither until they commit."""
    # b gives up on any lock after 1 s: were it queued behind a, it would raise
    a, b, reader = Store(pg_url), Store(pg_url, busy_timeout_s=1), Store(pg_url)
    in_a, release = threading.Event(), threading.Event()

    def hold():
        with a.batch():
            _run(a, T0, site="A")
            in_a.set()
            release.wait(10)
    t = threading.Thread(target=hold)
    t.start()
    try:
        assert in_a.wait(10)
        _run(b, T0, site="B")                    # commits while A's transaction is open
        assert reader.sites() == ["B"]
    finally:
        release.set()
        t.join(10)
    assert reader.sites() == ["A", "B"]


def test_check_with_the_server_down_keeps_the_run_in_a_file(tmp_path):
    """The central database unreachable mid-parallel-run: `cutover check`
    measures anyway and keeps the run in a fallback file (as for a full
    disk), the password appears nowhere."""
    from harness.profile import DEMO_PROFILE
    from tests.harness_procs import closed_udp_port, demo_profile
    prof = demo_profile(tmp_path / "site.yaml", closed_udp_port(), closed_udp_port())
    assert DEMO_PROFILE.exists()
    url = "postgresql://probe:topsecret@127.0.0.1:1/cutover?connect_timeout=2"
    r = run_cli("check", str(prof), "--db", url, "--step", "stream", "--quiet", "--json", cwd=tmp_path)
    assert r.returncode == 3, r.stderr          # both reflectors down: nothing measured
    assert "cannot connect to PostgreSQL" in r.stderr and "the run's results are saved in" in r.stderr
    (saved,) = tmp_path.glob("cutover-central-db.unstored-run-*.json")
    doc = json.loads(saved.read_text())
    assert doc["site"] == "Demo site (loopback)" and set(doc["raw"]) == {"old", "new"}
    assert doc["database"] == "postgresql://probe:***@127.0.0.1:1/cutover?connect_timeout=2"
    assert "topsecret" not in r.stdout + r.stderr + saved.read_text()
    assert json.loads(r.stdout)["not_stored"]["cause"] == "database server unreachable"


def test_schedule_hands_the_password_to_its_children_by_environment(tmp_path, pg_server):
    """A URL with a password: the `cutover check` children get it in
    $PGPASSWORD, not on their command line (visible in ps); a systemd unit or
    crontab line that would store it is refused (exit 2)."""
    from harness import schedule as S
    from harness.profile import load_profile
    from harness.store_backends import parse_location
    from tests.harness_procs import closed_udp_port, demo_profile
    prof_path = demo_profile(tmp_path / "site.yaml", closed_udp_port(), closed_udp_port())
    db = pg_server.new_database(owner=PASSWORD_USER)
    url = pg_server.tcp_url(db)
    sched = S.Scheduler(load_profile(prof_path), prof_path, S.Every(dt.timedelta(seconds=1)), parse_location(url))
    cmd = sched.command(tmp_path / "rid")
    assert PASSWORD not in " ".join(cmd) and sched.child_env["PGPASSWORD"] == PASSWORD
    assert cmd[cmd.index("--db") + 1] == url.replace(f":{PASSWORD}@", "@")
    r = run_cli("schedule", str(prof_path), "--every", "0.2s", "--max-runs", "1", "--db", url, "--step", "stream",
                env={"PGPASSWORD": ""}, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert PASSWORD not in r.stderr + r.stdout
    (run,) = Store(url).runs("Demo site (loopback)")     # the child authenticated and stored its run
    assert run.complete and set(run.circuits) == {"old", "new"}
    r = run_cli("schedule", str(prof_path), "--every", "15m", "--db", url, "--print-systemd", cwd=tmp_path)
    assert r.returncode == 2 and "~/.pgpass" in r.stderr and PASSWORD not in r.stdout + r.stderr


@pytest.fixture(scope="module")
def own_server():
    """A private server this module may stop and start (the session's is shared)."""
    from tests import pgserver
    srv, reason = pgserver.start_or_reason()
    if srv is None:
        pytest.skip(reason)
    yield srv
    srv.stop()


def test_server_lost_during_a_read_is_store_unavailable(own_server):
    """The server stops between open and read: every read says so as
    StoreUnavailable (a reader could not measure), never a raw driver error."""
    url = own_server.url(own_server.new_database())
    st = Store(url)
    _run(st, T0)
    own_server.halt()
    try:
        for read in (lambda: st.runs("Harbour"), lambda: st.latest_run("Harbour"), st.sites,
                     lambda: st.data_version(), lambda: st.data_version("Harbour")):
            with pytest.raises(StoreUnavailable, match="database server unreachable") as exc:
                read()
            assert isinstance(exc.value.__cause__, psycopg.OperationalError)
    finally:
        own_server.resume()
    # the same Store outlives the restart (as the board, the exporter and the scheduler
    # hold theirs): the next use opens a new connection instead of failing forever
    assert [r.verdict for r in st.runs("Harbour")] == ["GO"]              # nothing lost
    # and a write that meets the server gone, then one after it is back
    own_server.halt()
    try:
        with pytest.raises(StoreWriteError, match="connection to the database server lost"):
            _run(st, T0 + dt.timedelta(hours=1))
    finally:
        own_server.resume()
    _run(st, T0 + dt.timedelta(hours=2))
    st.close()
    assert [r.started_at for r in Store(url).runs("Harbour")] == [T0, T0 + dt.timedelta(hours=2)]


@pytest.mark.parametrize("command", [["fleet", "--json"], ["report", "PROFILE", "--json"],
                                     ["gate", "PROFILE", "--json"]])
def test_cli_read_when_the_server_stops_mid_command_exits_3(own_server, tmp_path, monkeypatch, capsys, command):
    """`cutover fleet/report/gate` open the database, then the server stops
    (pg_ctl stop -m immediate) before they read: a one-line error and exit 3,
    as for a server refused at open; no traceback, no internal error."""
    from harness import cli as C
    url = own_server.url(own_server.new_database())
    prof = tmp_path / "site.yaml"
    prof.write_text(PROFILE_YAML)
    with Store(url) as st:
        _run(st, T0)
    opened = []
    original = Store.__init__

    def open_then_lose_the_server(self, *args, **kwargs):
        original(self, *args, **kwargs)
        if not opened:
            opened.append(self)
            own_server.halt()

    monkeypatch.setattr(Store, "__init__", open_then_lose_the_server)
    monkeypatch.setattr("sys.argv", ["cutover", *[str(prof) if a == "PROFILE" else a for a in command],
                                     "--db", url])
    try:
        with pytest.raises(SystemExit) as exc:
            C.main()
    finally:
        own_server.resume()
    out, err = capsys.readouterr()
    assert opened and exc.value.code == 3, err
    assert "database server unreachable" in err and "internal error" not in err and "Traceback" not in err
    assert out == ""


def test_exporter_scrape_when_the_server_stops_is_503_then_recovers(own_server):
    """A scrape while the server is down is a 503 naming the cause; the exporter
    reconnects on the next scrape once the server is back."""
    import urllib.error
    import urllib.request

    from harness.exporter import make_server
    from harness.store_backends import parse_location
    from harness.profile import load_profile_text
    url = own_server.url(own_server.new_database())
    with Store(url) as st:     # a run with the site's full profile: the exporter serves the sites it knows
        run = st.begin_run("Harbour", load_profile_text(PROFILE_YAML).model_dump(mode="json"), "0.1.0",
                           started_at=T0)
        st.add_circuit_result(run, "new", "GO", [Check("latency.rtt", "pass", 12.5, 150, "ms", 137.5, "ok")])
        st.finish_run(run, "GO", finished_at=T0 + dt.timedelta(seconds=30))
    server = make_server(None, parse_location(url), "127.0.0.1", 0)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    metrics = f"http://127.0.0.1:{server.server_address[1]}/metrics"
    try:
        with urllib.request.urlopen(metrics, timeout=30) as resp:
            assert resp.status == 200 and 'site="Harbour"' in resp.read().decode()
        own_server.halt()
        try:
            with pytest.raises(urllib.error.HTTPError) as exc:
                urllib.request.urlopen(metrics, timeout=30)
            assert exc.value.code == 503 and "database server unreachable" in exc.value.read().decode()
        finally:
            own_server.resume()
        with urllib.request.urlopen(metrics, timeout=30) as resp:
            assert resp.status == 200 and 'site="Harbour"' in resp.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        t.join(10)


@pytest.mark.asyncio
@pytest.mark.timeout(120)
async def test_board_when_the_server_stops_says_so_once_and_keeps_running(own_server):
    """The fleet board polls a database whose server stops: one notification
    naming the cause (not one per poll), the last list stays on screen, and a
    reload says it again instead of crashing the board."""
    from harness.profile import load_profile_text
    from harness.tui.app import BoardApp
    from harness.tui.screens.fleet import FleetScreen, FleetTable
    from tests.tui_support import wait_until
    url = own_server.url(own_server.new_database())
    with Store(url) as st:
        run = st.begin_run("Harbour", load_profile_text(PROFILE_YAML).model_dump(mode="json"), "0.1.0",
                           started_at=T0)
        st.add_circuit_result(run, "new", "GO", [Check("latency.rtt", "pass", 12.5, 150, "ms", 137.5, "ok")])
        st.finish_run(run, "GO", finished_at=T0 + dt.timedelta(seconds=30))
    app = BoardApp(None, url, now=lambda: T0 + dt.timedelta(minutes=5), poll_s=0)

    said: list[str] = []          # every notification, kept (Textual's own expire after seconds)
    notify = app.notify

    def record(message, **kwargs):
        said.append(message)
        return notify(message, **kwargs)

    app.notify = record

    def unreachable() -> list[str]:
        return [m for m in said if "database server unreachable" in m]

    try:
        async with app.run_test(size=(160, 30)) as pilot:
            assert await wait_until(pilot, lambda: isinstance(app.screen, FleetScreen)
                                    and app.screen.query_one(FleetTable).row_count == 1)
            own_server.halt()
            for _ in range(3):
                app._poll()
                await pilot.pause()
            assert len(unreachable()) == 1
            app.reload_in_background()        # what a refresh (a new version, a stale screen) calls
            assert await wait_until(pilot, lambda: len(unreachable()) == 2)
            assert app.is_running and app.screen.query_one(FleetTable).row_count == 1
            # the server comes back and another site writes meanwhile: the board's own
            # connections were dropped, the next poll opens new ones and shows both sites
            own_server.resume()
            with Store(url) as st:
                run = st.begin_run("Quay", load_profile_text(PROFILE_YAML).model_dump(mode="json"), "0.1.0",
                                   started_at=T0)
                st.add_circuit_result(run, "new", "GO", [Check("latency.rtt", "pass", 11.0, 150, "ms", 139, "ok")])
                st.finish_run(run, "GO", finished_at=T0 + dt.timedelta(seconds=30))
            app._poll()
            await pilot.pause()
            assert said.count("the history database is reachable again") == 1
            assert await wait_until(pilot, lambda: app.screen.query_one(FleetTable).row_count == 2)
            assert len(unreachable()) == 2                 # nothing failed after the server came back
    finally:
        if not own_server.started:
            own_server.resume()
