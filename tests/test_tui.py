"""Pilot tests of the cutover board: every interaction, against a real store."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from harness import gate
from harness.profile import load_profile
from harness.store import Store
from harness.tui.app import BoardApp
from harness.tui.screens.help import HelpScreen
from harness.tui.screens.signoff import SignoffScreen
from harness.tui.widgets.checklist import ChecklistTable
from harness.tui.widgets.outages import OutageTable
from tests.conftest import ROOT
from tests.tui_support import BACKUP_DOWN, END, NOW, OLD_FAIL, RUNS, board_history, type_text, wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio]


@pytest.fixture(scope="module")
def _history_template(tmp_path_factory):
    return board_history(tmp_path_factory.mktemp("board") / "site")


@pytest.fixture
def history(_history_template, tmp_path):
    """A private copy per test: tests write sign-offs and runs into it."""
    fx = _history_template
    shutil.copy(fx.profile_path, tmp_path / "site.yaml")
    shutil.copy(fx.db_path, tmp_path / "history.sqlite")   # closed by the generator: no WAL left behind
    return dataclasses.replace(fx, profile_path=tmp_path / "site.yaml", db_path=tmp_path / "history.sqlite")


def _app(fx, **kw) -> BoardApp:
    kw.setdefault("poll_s", 0)
    return BoardApp(load_profile(fx.profile_path), fx.db_path, now=NOW, **kw)


def _circuit(app, name):
    return next(c for c in app.data.circuits if c.name == name)


async def _cursor_to(pilot, app, item_id: str) -> None:
    table = app.screen.query_one(ChecklistTable)
    table.focus()
    index = [r.id for r in app.data.checklist].index(item_id)
    table.move_cursor(row=index)
    await pilot.pause()
    assert app.screen.current_item().id == item_id


async def test_board_shows_the_fixture_history(history):
    app = _app(history)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        h = app.data.header
        assert h.decision == "NO-GO"
        # two days of runs in a parallel run begun 20 days ago: thin evidence blocks first (one whole
        # day measured: the gate counts covered days), then the three unsigned manual items
        assert h.blocking[0].startswith("measured 1 of 14 required days on new (parallel run at day 20;")
        assert h.blocking[1] == "checklist item 'voice-vlan' (Voice VLAN configured and tagged) is not signed off"
        assert len(h.blocking) == 4
        assert h.days_in == 1 and h.min_days == 14
        # every run of every circuit is in the window; backup's last 3 runs failed, old's 3 planted ones
        new, old, backup = _circuit(app, "new"), _circuit(app, "old"), _circuit(app, "backup")
        assert (new.runs, new.passed) == (RUNS, RUNS)
        assert (old.runs, old.passed) == (RUNS, RUNS - len(OLD_FAIL))
        assert (backup.runs, backup.passed, backup.verdict) == (RUNS, RUNS - len(BACKUP_DOWN), "NO-GO")
        assert new.verdict in ("GO", "WARN")
        assert "127.0.0.1:8620 did not answer" in backup.problems[0]
        # outage log: backup's ongoing outage first, then old's, with claim = end + 24 h
        rows = app.data.outages
        assert [(r.circuit, r.end is None) for r in rows] == [("backup", True), ("old", False)]
        old_start = history.time_of(OLD_FAIL[0])
        old_end = history.time_of(OLD_FAIL[-1] + 1)          # the first passing run after it
        assert (rows[1].start, rows[1].end, rows[1].claim_by) == (old_start, old_end,
                                                                 old_end + dt.timedelta(hours=24))
        assert app.screen.query_one(OutageTable).row_count == 2
        # rendered text of the panels (what the user sees)
        panel = app.screen.panel("backup")
        assert "NO-GO" in str(panel.render()) and "did not answer" in str(panel.render())


async def test_navigation_between_circuits_panels_and_screens(history):
    app = _app(history)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        main = app.screen
        assert main.selected_circuit == "new"            # starts on the new circuit
        await pilot.press("right")
        assert main.selected_circuit == "backup"
        await pilot.press("right")
        assert main.selected_circuit == "old"            # wraps around
        await pilot.press("2")
        assert main.selected_circuit == "new" and main.panel("new").has_class("-selected")
        assert not main.panel("old").has_class("-selected")
        assert isinstance(app.focused, ChecklistTable)   # selecting a circuit leaves the focus alone
        await pilot.press("tab")                         # tab reaches a panel; focusing it selects it
        assert type(app.focused).__name__ == "CircuitPanel"
        assert main.selected_circuit == app.focused.circuit_name
        await pilot.press("c")                           # back to the checklist
        assert isinstance(app.focused, ChecklistTable)
        # narrow terminal: o swaps the checklist for the outage log and back
        assert main.has_class("-narrow")
        await pilot.press("o")
        assert main.has_class("-show-outages") and isinstance(app.focused, OutageTable)
        assert main.query_one("#checklist-box").display is False
        await pilot.press("o")
        assert not main.has_class("-show-outages") and isinstance(app.focused, ChecklistTable)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert app.screen is main
        # the footer still lists the keys after focus moves and a screen came and went
        keys = {str(k.key) for k in main.query("FooterKey")}
        assert {"r", "a", "s", "x", "o", "question_mark", "q"} <= keys, keys
        await pilot.press("q")
    assert app.return_code == 0


async def test_wide_terminal_shows_checklist_and_outages_side_by_side(history):
    app = _app(history)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        main = app.screen
        assert not main.has_class("-narrow")
        assert main.query_one("#outage-box").region.width > 0 and main.query_one("#checklist-box").region.width > 0
        await pilot.press("o")
        assert isinstance(app.focused, OutageTable)


async def test_signoff_with_name_and_note_persists_and_the_gate_sees_it(history):
    app = _app(history)
    async with app.run_test(size=(100, 30)) as pilot:
        await _cursor_to(pilot, app, "voice-vlan")
        await pilot.press("s")
        assert isinstance(app.screen, SignoffScreen)
        await type_text(pilot, "Ann Engineer")
        await pilot.press("enter")                 # to the note
        await type_text(pilot, "VLAN 20 tagged on all access ports")
        await pilot.press("enter")                 # submit
        await pilot.pause()
        assert not isinstance(app.screen, SignoffScreen)
        row = next(r for r in app.data.checklist if r.id == "voice-vlan")
        assert (row.status, row.by, row.note) == ("signed off", "Ann Engineer", "VLAN 20 tagged on all access ports")
        assert len(app.data.header.blocking) == 3   # + thin evidence (measured 1 of 14 days)
        # the signed item moved to the done group; the next open item is under the cursor
        assert app.screen.current_item().id == "failover"
        board_blocking = list(app.data.header.blocking)
    # persisted in the audit trail, read by another connection
    with Store(history.db_path) as store:
        rec = store.signoffs("Harbour Street office")["voice-vlan"]
        assert (rec.by, rec.note, rec.revoked) == ("Ann Engineer", "VLAN 20 tagged on all access ports", False)
        decision = gate.decide(load_profile(history.profile_path), store, now=NOW)
    item = next(i for i in decision.items if i.id == "checklist:voice-vlan")
    assert item.status == "ok" and item.by == "Ann Engineer"
    # and by `cutover gate --json` in its own process
    cli = subprocess.run([sys.executable, "-m", "harness", "gate", str(history.profile_path), "--db",
                          str(history.db_path), "--as-of", NOW.isoformat(), "--json"],
                         capture_output=True, text=True, timeout=60, cwd=ROOT)
    out = json.loads(cli.stdout)
    assert out["decision"] == "NO-GO"
    assert out["blocking"] == board_blocking          # the board and the gate say the same thing
    assert not any("voice-vlan" in b for b in out["blocking"]), out["blocking"]
    assert [b for b in out["blocking"] if "checklist item" in b] == [
        "checklist item 'failover' (Backup line failover tested) is not signed off",
        "checklist item 'porting' (Numbers ported to the new provider) is not signed off"]


async def test_revoke_from_the_keyboard(history):
    with Store(history.db_path) as store:
        # made before the board's clock: a board as of NOW shows what was known then
        store.signoff("Harbour Street office", "porting", "Bob", "48 DDIs ported", at=NOW - dt.timedelta(hours=1))
    app = _app(history)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert next(r for r in app.data.checklist if r.id == "porting").status == "signed off"
        await _cursor_to(pilot, app, "porting")
        await pilot.press("x")
        assert isinstance(app.screen, SignoffScreen) and app.screen.revoke
        await type_text(pilot, "Carol")
        await pilot.press("enter")
        await type_text(pilot, "two numbers still at the old carrier")
        await pilot.press("enter")
        await pilot.pause()
        row = next(r for r in app.data.checklist if r.id == "porting")
        assert (row.status, row.ok, row.by) == ("revoked", False, "Carol")
    with Store(history.db_path) as store:
        trail = [(s.item, s.by, s.revoked) for s in store.signoff_history("Harbour Street office")]
    assert trail == [("porting", "Bob", False), ("porting", "Carol", True)]


async def test_signoff_needs_a_name_and_cancel_writes_nothing(history):
    app = _app(history)
    async with app.run_test(size=(100, 30)) as pilot:
        await _cursor_to(pilot, app, "failover")
        await pilot.press("s")
        await pilot.press("enter", "enter")        # empty name, empty note
        assert isinstance(app.screen, SignoffScreen)
        assert "name is needed" in str(app.screen.query_one("#error").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, SignoffScreen)
        # an automatic item cannot be signed off, and an unsigned one cannot be revoked
        await _cursor_to(pilot, app, "parallel-run")
        await pilot.press("s")
        assert not isinstance(app.screen, SignoffScreen)
        await _cursor_to(pilot, app, "failover")
        await pilot.press("x")
        assert not isinstance(app.screen, SignoffScreen)
    with Store(history.db_path) as store:
        assert store.signoff_history("Harbour Street office") == []


WRITER = textwrap.dedent("""
    import datetime as dt, sys
    from harness.store import Store
    from harness.verdicts import error
    db, at = sys.argv[1], dt.datetime.fromisoformat(sys.argv[2])
    with Store(db) as s:
        run = s.begin_run("Harbour Street office", {}, "test-writer", started_at=at)
        s.add_circuit_result(run, "new", "NO-GO",
                             [error("stream.reachable", "reflector 127.0.0.1:8620 did not answer (writer)",
                                    cause="network")],
                             {"stream": {"measured": False, "errors": ["down"]}})
        run = s.finish_run(run, "NO-GO", finished_at=at)
""")


async def test_board_refreshes_when_another_process_writes_a_run(history):
    app = _app(history, poll_s=0.2)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        before = app.reloads
        assert _circuit(app, "new").runs == RUNS and _circuit(app, "new").verdict != "NO-GO"
        at = END + dt.timedelta(minutes=5)
        subprocess.run([sys.executable, "-c", WRITER, str(history.db_path), at.isoformat()], check=True,
                       timeout=60, cwd=ROOT)
        assert await wait_until(pilot, lambda: _circuit(app, "new").runs == RUNS + 1, timeout_s=20)
        assert app.reloads > before
        new = _circuit(app, "new")
        assert new.verdict == "NO-GO" and new.latest_at == at
        assert "(writer)" in new.problems[0]
        assert "(writer)" in str(app.screen.panel("new").render())
        # the gate now blocks on the fresh failure, and the log shows new's ongoing outage first
        assert any("failing run(s) of new" in b for b in app.data.header.blocking)
        assert (app.data.outages[0].circuit, app.data.outages[0].end) in (("new", None), ("backup", None))
        assert any(r.circuit == "new" and r.end is None for r in app.data.outages)


async def test_key_presses_do_not_reload(history):
    """Navigation redraws from memory: no database reads per key."""
    app = _app(history)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        before = app.reloads
        await pilot.press("right", "left", "o", "o", "down", "up", "1", "3")
        assert app.reloads == before


async def test_command_palette_has_an_entry_per_action(history):
    app = _app(history)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in ("Run now: new", "Run all circuits now", "Sign off checklist item", "Revoke sign-off",
                       "Sign off: voice-vlan", "Revoke: porting", "Show outages", "Go to checklist",
                       "Reload", "Help"):
            assert wanted in titles, (wanted, titles)
        # through the palette itself: ctrl+p, type, enter -> the help screen
        await pilot.press("ctrl+p")
        await type_text(pilot, "Help")
        await pilot.pause(0.5)
        await pilot.press("enter")
        assert await wait_until(pilot, lambda: isinstance(app.screen, HelpScreen), timeout_s=5)


async def test_background_open_paints_first_then_fills_in(history):
    """The CLI opens with a placeholder and reads the history in a worker."""
    app = _app(history, background_open=True)
    first = app.data
    assert not first.loaded and first.header.decision == "…"
    assert [c.name for c in first.circuits] == ["old", "new", "backup"] and all(c.loading for c in first.circuits)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await wait_until(pilot, lambda: app.data.loaded, timeout_s=20)
        await pilot.pause()
        assert app.data.header.decision == "NO-GO" and _circuit(app, "new").runs == RUNS
        assert "100.0% pass" in str(app.screen.panel("new").render())
        # the first blocking item: two days of runs are thin evidence for a 14-day parallel run
        assert app.screen.current_item().id == "parallel-run"


async def test_empty_history_and_no_parallel_run_start(tmp_path):
    """A brand-new site: nothing measured, no parallel_run_start. The board says so."""
    site = tmp_path / "site.yaml"
    site.write_text(textwrap.dedent("""\
        site: New site
        planned: {calls: 10}
        circuits:
          - {name: new, role: new, down_mbps: 50, up_mbps: 10, reflector: "127.0.0.1:9"}
        cutover:
          checklist: [{id: porting, title: Numbers ported}]
        """))
    app = BoardApp(load_profile(site), tmp_path / "h.sqlite", now=NOW, poll_s=0)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        h = app.data.header
        assert h.decision == "NO-GO" and h.days_in is None
        assert h.first_blocking == "cutover.parallel_run_start is not set in the profile"
        header_text = str(app.screen.query_one("#header").render())
        assert "parallel run not started" in header_text
        panel_text = str(app.screen.panel("new").render())
        assert "no runs yet" in panel_text and "NO DATA" in panel_text
        assert app.data.outages == [] and app.screen.query_one(OutageTable).row_count == 1   # "no outages"


async def test_signoff_from_the_cli_appears_on_the_open_board(history):
    """`cutover signoff` in another process: the board picks it up by itself.
    (A live clock: the sign-off is made now, and a board as of a past time
    shows only what was known then.)"""
    app = BoardApp(load_profile(history.profile_path), history.db_path, poll_s=0.2)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert next(r for r in app.data.checklist if r.id == "porting").status == "open"
        cli = subprocess.run([sys.executable, "-m", "harness", "signoff", str(history.profile_path), "porting",
                              "--by", "Dan Ops", "--note", "LOA complete", "--db", str(history.db_path)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert cli.returncode == 0, cli.stderr

        def signed():
            row = next(r for r in app.data.checklist if r.id == "porting")
            return row.status == "signed off" and row.by == "Dan Ops" and row.note == "LOA complete"
        assert await wait_until(pilot, signed, timeout_s=20)
        assert not any("'porting'" in b for b in app.data.header.blocking)


async def test_scorecard_screen_and_a_filed_claim(history):
    """p opens the provider scorecard (the report's table); a claim filed with
    `cutover claim --filed` shows as claimed in the outage log and counts as filed."""
    from textual.widgets import DataTable

    from harness.contract import fmt_duration
    from harness.tui.screens.scorecard import ScorecardScreen
    old_start, old_end = history.time_of(OLD_FAIL[0]), history.time_of(OLD_FAIL[-1] + 1)
    old_id = f"old-{old_start:%Y%m%dT%H%MZ}"
    with Store(history.db_path) as st:
        st.file_claim("Harbour Street office", old_id, by="ann", at=old_end + dt.timedelta(hours=1))
    app = _app(history)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        row = next(r for r in app.data.outages if r.circuit == "old")
        assert (row.id, row.claimed) == (old_id, True)
        await pilot.press("p")
        await pilot.pause()
        assert isinstance(app.screen, ScorecardScreen)
        table = app.screen.query_one(DataTable)
        head = [str(c.label) for c in table.columns.values()]
        assert head[1:] == ["old (old): Carrier A (EFM)", "new (new): Carrier B (fibre)",
                            "backup (backup): Carrier C (LTE)"]
        cells = {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)[1:]]
                 for i in range(table.row_count)}
        assert cells["Outages (total down time)"][0] == f"1 ({fmt_duration((old_end - old_start).total_seconds())})"
        assert cells["Outages (total down time)"][1] == "0 (0 min)"
        assert cells["Claims filed / missed"][0] == "1 / 0"
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, ScorecardScreen)
