"""Snapshot tests of the board's main screen at 80x24 and 160x48 on the
fixture history (a failing backup circuit, a passing new one), with a fixed
clock so the picture is reproducible. Update after a deliberate change with
``pytest tests/test_tui_snapshots.py --snapshot-update`` and review the SVGs."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from harness.profile import load_profile
from harness.tui.app import BoardApp
from harness.tui.screens.signoff import SignoffScreen
from tests.tui_support import NOW, board_history


@pytest.fixture(scope="module")
def board_fixture(tmp_path_factory):
    return board_history(tmp_path_factory.mktemp("snap") / "site")


def _app(fx) -> BoardApp:
    return BoardApp(load_profile(fx.profile_path), fx.db_path, now=NOW, poll_s=0)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_main_screen(snap_compare, board_fixture, size):
    assert snap_compare(_app(board_fixture), terminal_size=size)


def test_outage_log_on_a_narrow_terminal(snap_compare, board_fixture):
    assert snap_compare(_app(board_fixture), terminal_size=(80, 24), press=["o"])


def test_signoff_dialog(snap_compare, board_fixture):
    async def open_dialog(pilot):
        await pilot.press("s")                   # the first open item
        for _ in range(100):                     # bounded: until the dialog is up
            if isinstance(pilot.app.screen, SignoffScreen):
                break
            await pilot.pause(0.05)
        for field in pilot.app.screen.query(Input):
            field.cursor_blink = False           # a blinking cursor would make the picture random
        await pilot.pause()

    assert snap_compare(_app(board_fixture), terminal_size=(80, 24), run_before=open_dialog)
