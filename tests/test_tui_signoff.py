"""The sign-off dialog under real typing speed (issue #15): keys sent back to back,
without Pilot's wait-for-idle between them, as a person typing fast in tmux does.

Before the fix, "K. Nurse<Tab>pulled fibre" put everything into the Name field:
Tab reached the dialog only after the following characters had already been
forwarded to the focused Name input.
"""

import dataclasses
import shutil

import pytest
from textual import events

from harness.profile import load_profile
from harness.store import Store
from harness.tui.app import BoardApp
from harness.tui.screens.signoff import SignoffScreen
from harness.tui.widgets.checklist import ChecklistTable
from tests.tui_support import NOW, board_history

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio]
SITE = "Harbour Street office"


@pytest.fixture(scope="module")
def _template(tmp_path_factory):
    return board_history(tmp_path_factory.mktemp("board") / "site")


@pytest.fixture
def history(_template, tmp_path):
    shutil.copy(_template.profile_path, tmp_path / "site.yaml")
    shutil.copy(_template.db_path, tmp_path / "history.sqlite")
    return dataclasses.replace(_template, profile_path=tmp_path / "site.yaml",
                               db_path=tmp_path / "history.sqlite")


def _keys(text: str) -> list[str]:
    return ["space" if ch == " " else ch for ch in text]


async def burst(pilot, keys: list[str]) -> None:
    """Send every key to the driver at once, then let the app catch up."""
    app = pilot.app
    for key in keys:
        char = key if len(key) == 1 else {"space": " "}.get(key)
        ev = events.Key(key, char)
        ev.set_sender(app)
        app._driver.send_message(ev)
    await pilot.pause(0.2)
    await pilot.pause()


async def _open_dialog(pilot, app, item_id: str) -> None:
    table = app.screen.query_one(ChecklistTable)
    table.focus()
    table.move_cursor(row=[r.id for r in app.data.checklist].index(item_id))
    await pilot.pause()


async def test_fast_typing_name_tab_note_lands_in_the_right_fields(history):
    app = BoardApp(load_profile(history.profile_path), history.db_path, now=NOW, poll_s=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await _open_dialog(pilot, app, "failover")
        await pilot.press("s")           # the dialog opens; then the name, Tab and the note
        assert isinstance(app.screen, SignoffScreen)   # follow with no pause at all
        await burst(pilot, [*_keys("K. Nurse"), "tab", *_keys("pulled fibre, calls moved to 4G"),
                            "enter"])
        assert not isinstance(app.screen, SignoffScreen)
    with Store(history.db_path) as store:
        rec = store.signoffs(SITE)["failover"]
    assert (rec.by, rec.note) == ("K. Nurse", "pulled fibre, calls moved to 4G")


async def test_second_dialog_does_not_sign_under_the_previous_name(history):
    app = BoardApp(load_profile(history.profile_path), history.db_path, now=NOW, poll_s=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await _open_dialog(pilot, app, "failover")
        await pilot.press("s")
        await burst(pilot, [*_keys("K. Nurse"), "tab", *_keys("drill ok"), "enter"])
        await _open_dialog(pilot, app, "porting")
        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, SignoffScreen)
        by = dialog.query_one("#by")
        # the name is empty and focused: the next person types their own
        assert by.value == "" and app.focused is by
        assert "K. Nurse" in by.placeholder          # the last name is only a hint
        # a second person typing at once signs as themselves
        await burst(pilot, [*_keys("J. Smith"), "tab", *_keys("48 DDIs"), "enter"])
    with Store(history.db_path) as store:
        rec = store.signoffs(SITE)["porting"]
    assert (rec.by, rec.note) == ("J. Smith", "48 DDIs")


async def test_shift_tab_goes_back_and_enter_in_name_moves_to_note(history):
    app = BoardApp(load_profile(history.profile_path), history.db_path, now=NOW, poll_s=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await _open_dialog(pilot, app, "failover")
        await pilot.press("s")
        await burst(pilot, [*_keys("Ann"), "enter", *_keys("note"), "shift+tab",
                            *_keys(" Lee"), "tab", *_keys(" one"), "enter"])
    with Store(history.db_path) as store:
        rec = store.signoffs(SITE)["failover"]
    assert (rec.by, rec.note) == ("Ann Lee", "note one")


async def test_correcting_an_entry_keeps_the_old_one_superseded(history):
    """e on a signed-off item: the dialog says what it replaces; keys sent without pauses."""
    app = BoardApp(load_profile(history.profile_path), history.db_path, now=NOW, poll_s=0)
    async with app.run_test(size=(100, 30)) as pilot:
        await _open_dialog(pilot, app, "failover")
        await pilot.press("s")
        await burst(pilot, [*_keys("K. Nursepulled fibre"), "enter", "enter"])    # the wrong entry
        await _open_dialog(pilot, app, "voice-vlan")
        await pilot.press("e")                       # nothing to correct: a warning, no dialog
        assert not isinstance(app.screen, SignoffScreen)
        await _open_dialog(pilot, app, "failover")
        await pilot.press("e")
        dialog = app.screen
        assert isinstance(dialog, SignoffScreen) and dialog.correct
        assert "K. Nursepulled fibre" in str(dialog.query_one("#replaces").render())
        await burst(pilot, [*_keys("K. Nurse"), "tab", *_keys("pulled fibre, calls moved to 4G"), "enter"])
        assert not isinstance(app.screen, SignoffScreen)
        row = next(r for r in app.data.checklist if r.id == "failover")
        assert (row.by, row.note, row.status) == ("K. Nurse", "pulled fibre, calls moved to 4G", "signed off")
    with Store(history.db_path) as store:
        trail = [(r.by, r.note, r.superseded_by) for r in store.signoff_history(SITE) if r.item == "failover"]
    assert trail == [("K. Nursepulled fibre", "", "K. Nurse"),
                     ("K. Nurse", "pulled fibre, calls moved to 4G", None)]
