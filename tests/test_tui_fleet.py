"""The board's fleet screen (issue #21): every site of a central database as
`cutover fleet` shows them, most urgent first; Enter opens a site's board with
the profile stored with its latest run, Escape goes back.

Three sites, each a small history written by tests/fixtures/history.py and
imported under its own name into one database (as `cutover db import` does),
with what makes each rank known by construction (harness.fleet.attention):

- Alpha: the backup circuit's last 3 runs unreachable -> an open outage (rank 1);
- Bravo: its last run 3 h before the others, runs every 30 min -> quiet after
  max(3 x 30 min, 30 min) = 90 min; at NOW its last run is 3 h 10 min old (rank 3);
- Charlie: parallel run starting 2026-12-01, after NOW -> "before" (rank 7).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from harness import fleet, gate
from harness.profile import load_profile
from harness.store import Store
from harness.tui.app import BoardApp
from harness.tui.screens.fleet import FleetScreen, FleetTable
from harness.tui.screens.main import MainScreen
from tests.conftest import run_cli
from tests.fixtures.history import FIXED_END, Planted, generate
from tests.test_tui_signoff import burst
from tests.tui_support import wait_until

pytestmark = [pytest.mark.timeout(120)]
NOW = FIXED_END + dt.timedelta(minutes=10)
ORIGINAL = "Harbour Street office"          # the fixture's site, renamed on import


@pytest.fixture(scope="module")
def fleet_db(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet")
    central = Store(root / "fleet.sqlite")
    kw = dict(days=2, interval_min=30, outages=())
    sites = {
        "Alpha": generate(root / "alpha", end=FIXED_END, **{**kw, "outages": (Planted("backup", 93, 3,
                                                                                      "unreachable"),)}),
        "Bravo": generate(root / "bravo", end=FIXED_END - dt.timedelta(hours=3), **kw),
        "Charlie": generate(root / "charlie", end=FIXED_END, parallel_run_start=dt.date(2026, 12, 1), **kw),
    }
    for name, fx in sites.items():
        with Store(fx.db_path) as src:
            central.import_from(src, site_map={ORIGINAL: name})
    # a site whose runs carry no profile snapshot (an old tool version): listed, cannot be opened
    rid = central.begin_run("Delta", {}, "0.0", started_at=FIXED_END)
    rid = central.finish_run(rid, "GO", finished_at=FIXED_END + dt.timedelta(seconds=40))
    central.close()
    return root / "fleet.sqlite", sites


def _rows(app) -> list[list[str]]:
    table = app.screen.query_one(FleetTable)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


@pytest.mark.asyncio
async def test_fleet_lists_every_site_most_urgent_first(fleet_db):
    db, _ = fleet_db
    app = BoardApp(None, db, now=NOW, poll_s=0)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)
        rows = {r[1]: r for r in _rows(app)}
        assert [r[1] for r in _rows(app)] == ["Alpha", "Bravo", "Delta", "Charlie"]
        col = {name: i for i, name in enumerate(fleet.COLUMNS)}
        assert rows["Alpha"][col["#"]] == "1" and rows["Alpha"][col["outages"]] == "backup open"
        assert rows["Bravo"][col["#"]] == "3" and rows["Bravo"][col["last run"]] == "QUIET 3h 10m ago"
        assert rows["Charlie"][col["#"]] == "7"
        assert rows["Charlie"][col["phase"]] == "parallel run starts 2026-12-01"
        assert rows["Alpha"][col["last run"]] == "10m ago"
        assert rows["Delta"][col["gate"]] == "?"
        assert "no profile snapshot" in rows["Delta"][col["first blocking reason"]]
        assert "4 site(s)" in str(app.screen.query_one("#fleet-header").render())
    # the screen and `cutover fleet` say the same thing, row for row
    r = run_cli("fleet", "--db", str(db), "--as-of", NOW.isoformat(), "--json")
    assert r.returncode == 0, r.stderr
    cli = json.loads(r.stdout)["sites"]
    assert [s["site"] for s in cli] == ["Alpha", "Bravo", "Delta", "Charlie"]
    assert [(s["attention_rank"], s["quiet"], s["last_run_age_s"]) for s in cli] == [
        (1, False, 600.0), (3, True, 11400.0), (5, False, 600.0), (7, False, 600.0)]


@pytest.mark.asyncio
async def test_enter_opens_the_sites_board_and_escape_goes_back(fleet_db):
    db, sites = fleet_db
    runs = []
    app = BoardApp(None, db, now=NOW, poll_s=0, runner=runs.append)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await burst(pilot, ["down", "down", "up", "enter"])     # typed fast: Enter acts after the arrows
        assert isinstance(app.screen, MainScreen)
        assert await wait_until(pilot, lambda: app.data is not None and app.data.loaded)
        assert app.profile.site == "Bravo" and app.data.header.site == "Bravo"
        assert [c.name for c in app.data.circuits] == ["old", "new", "backup"]
        # judged by the stored profile: the same as the site's own profile file against the central db
        own = load_profile(sites["Bravo"].profile_path).model_copy(update={"site": "Bravo"})
        with Store(db) as store:
            want = gate.decide(own, store, now=NOW)
        assert app.data.header.decision == want.decision and app.data.header.blocking == want.blocking
        assert app.data.header.notice_by == want.notice_by
        await pilot.press("r")                         # measured by the site's own probe, not from here
        await pilot.pause()
        assert runs == [] and app.running == []
        await pilot.press("escape")
        assert isinstance(app.screen, FleetScreen) and app.profile is None
        assert await wait_until(pilot, lambda: app.reloads >= 2)     # the site's load, then the fleet's
        assert app.screen.current_site() == "Bravo"    # the cursor stays on the site
        # a site without a stored profile cannot be opened: said, and the fleet stays
        table = app.screen.query_one(FleetTable)
        table.move_cursor(row=table.get_row_index("Delta"))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, FleetScreen)


@pytest.mark.asyncio
async def test_a_signoff_made_in_a_site_opened_from_the_fleet(fleet_db, tmp_path):
    """Signed under the site's name in the central database; back on the fleet, the
    site's row follows (its summary is judged again after the sign-off)."""
    import shutil
    db = tmp_path / "fleet.sqlite"
    shutil.copy(fleet_db[0], db)
    app = BoardApp(None, db, now=NOW, poll_s=0)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(FleetTable)
        table.move_cursor(row=table.get_row_index("Charlie"))
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: app.data is not None and app.data.loaded)
        items = [r.id for r in app.data.checklist]
        app.screen.query_one("ChecklistTable").move_cursor(row=items.index("voice-vlan"))
        await pilot.press("s")
        await pilot.press(*"Ana", "tab", *"vlan20", "enter")
        await pilot.pause()
        row = next(r for r in app.data.checklist if r.id == "voice-vlan")
        assert (row.status, row.by) == ("signed off", "Ana")
    with Store(db) as store:
        assert store.signoffs("Charlie")["voice-vlan"].by == "Ana"
        assert "voice-vlan" not in store.signoffs("Alpha")


def test_fleet_screen_snapshot(snap_compare, fleet_db):
    db, _ = fleet_db
    assert snap_compare(BoardApp(None, db, now=NOW, poll_s=0), terminal_size=(160, 16))


def test_board_without_profile_needs_a_database(tmp_path):
    r = run_cli("board", "--db", str(tmp_path / "none.sqlite"))
    assert r.returncode == 3 and "no history database" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.asyncio
async def test_the_fleet_follows_the_database(fleet_db, tmp_path):
    """Bravo's probe comes back (a run written by another connection): the poll
    reloads the fleet and Bravo is no longer quiet (its last run 5 min old)."""
    import shutil
    db = tmp_path / "fleet.sqlite"
    shutil.copy(fleet_db[0], db)
    clock = [NOW]
    app = BoardApp(None, db, now=lambda: clock[0], poll_s=0.2)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.pause()
        assert next(r for r in _rows(app) if r[1] == "Bravo")[-1] == "QUIET 3h 10m ago"
        clock[0] = NOW + dt.timedelta(minutes=20)
        with Store(db) as store:
            snapshot = store.profile_snapshot(store.latest_runs("Bravo", 1)[0].id)
            rid = store.begin_run("Bravo", snapshot, "0.1", started_at=NOW + dt.timedelta(minutes=15))
            rid = store.finish_run(rid, "NO-GO", finished_at=NOW + dt.timedelta(minutes=15, seconds=40))
        assert await wait_until(pilot, lambda: next(r for r in _rows(app) if r[1] == "Bravo")[-1] == "5m ago",
                                timeout_s=20)
        assert [r[1] for r in _rows(app)][0] == "Alpha"      # the open outage still comes first


@pytest.mark.asyncio
async def test_the_cli_way_first_frame_then_the_list(fleet_db):
    """`cutover board --db` opens at once and reads the fleet in the background."""
    app = BoardApp(None, fleet_db[0], now=NOW, poll_s=0, background_open=True)
    async with app.run_test(size=(160, 30)) as pilot:
        assert isinstance(app.screen, FleetScreen)
        assert await wait_until(pilot, lambda: len(_rows(app)) == 4, timeout_s=20)
        assert [r[1] for r in _rows(app)] == ["Alpha", "Bravo", "Delta", "Charlie"]


@pytest.mark.asyncio
async def test_the_fleet_of_a_postgresql_database(fleet_db, pg_url):
    """The same fleet imported into a real PostgreSQL server: same rows, same order,
    and a site's board opens from it."""
    with Store(pg_url) as central, Store(fleet_db[0]) as src:
        central.import_from(src)
    app = BoardApp(None, pg_url, now=NOW, poll_s=0)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.pause()
        assert [r[1] for r in _rows(app)] == ["Alpha", "Bravo", "Delta", "Charlie"]
        assert "postgresql://" in str(app.screen.query_one("#fleet-header").render())
        await burst(pilot, ["down", "enter"])
        assert await wait_until(pilot, lambda: app.data is not None and app.data.loaded)
        assert app.data.header.site == "Bravo" and [c.name for c in app.data.circuits] == ["old", "new", "backup"]
