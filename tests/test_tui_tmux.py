"""Smoke test as a new user would start the board: `cutover board
profiles/demo.yaml` in a real terminal (tmux), with a fresh home directory
(no history yet). It must render, survive every key of its footer without a
traceback, and quit with q."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid

import pytest

from harness.tui.screens.main import MainScreen
from tests.conftest import ROOT

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux missing: run scripts/sysdeps.sh")]

# footer keys as tmux names them (MainScreen.BINDINGS with show=True, plus the palette)
TMUX_KEYS = {"question_mark": "?", "f5": "F5"}
FOOTER = [TMUX_KEYS.get(b.key, b.key) for b in MainScreen.BINDINGS if b.show and b.key != "q"] + ["C-p"]
CLOSE_AFTER = {"?": "Escape", "C-p": "Escape"}   # keys that open a screen; closed again before the next


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=20).stdout


def _screen(session: str) -> str:
    return _tmux("capture-pane", "-p", "-t", session)


def _wait_for(session: str, text: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    shown = ""
    while time.monotonic() < deadline:
        shown = _screen(session)
        if text in shown:
            return shown
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not on screen after {timeout_s} s:\n{shown}")


def test_board_in_tmux_as_a_new_user(tmp_path):
    session = f"cut{uuid.uuid4().hex[:6]}"
    home = tmp_path / "home"
    home.mkdir()
    log = tmp_path / "stderr.txt"
    env = " ".join(f"{k}={v}" for k, v in {"HOME": home, "TERM": "xterm-256color", "COLORTERM": "truecolor"}.items())
    # Textual draws on stderr's terminal, so stderr cannot be redirected; a traceback would be on screen
    cmd = (f"cd {ROOT} && env -u CUTOVER_DB {env} {ROOT}/.venv/bin/cutover board profiles/demo.yaml; "
           f"echo EXIT=$? > {log}; sleep 30")
    if not os.path.exists(f"{ROOT}/.venv/bin/cutover"):
        pytest.skip("the cutover console script is not installed in .venv")
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", cmd], check=True, timeout=20)
    try:
        _wait_for(session, "Demo site (loopback)", 30)        # first frame (history still being read)
        first = _wait_for(session, "NO-GO", 30)                # then the gate decision and the figures
        assert "Checklist" in first and "q Quit" in first and "no runs yet" in first
        for key in FOOTER:
            _tmux("send-keys", "-t", session, key)
            time.sleep(1.0)
            shown = _screen(session)
            assert "Traceback" not in shown, (key, shown)
            if key == "?":
                shown = _wait_for(session, "Tracks the parallel run", 15)    # the help screen
                assert "| key |" not in shown                                # its table is rendered
            if key in CLOSE_AFTER:
                _tmux("send-keys", "-t", session, CLOSE_AFTER[key])
                time.sleep(0.7)
        assert "q Quit" in _screen(session)                    # the footer survived every key
        # r started a real check of the new circuit (loopback demo); quitting mid-run stops it cleanly
        _tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not log.exists():
            time.sleep(0.3)
        assert log.exists(), _screen(session)
        assert log.read_text().strip() == "EXIT=0"
        after = _screen(session)
        assert "Traceback" not in after, after
        # the fresh home got its history database at the documented default place
        assert (home / ".local" / "share" / "cutover" / "history.sqlite").exists()
    finally:
        _tmux("kill-session", "-t", session)
