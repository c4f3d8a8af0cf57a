"""Run now from the board: the real runner (harness.runner.run_check) in a
worker thread, against a real STAMP reflector started by the test, and
against a circuit whose reflector is down."""

from __future__ import annotations

import socket
import textwrap

import pytest

from harness import runner, suite
from harness.profile import load_profile
from harness.store import Store
from harness.tui.app import BoardApp
from harness.tui.runs import RunRequest, default_runner
from harness.verdicts import fmt
from probes.reflector import StampReflector
from tests.tui_support import wait_until

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio]

SITE = "Run-now lab"


def _closed_udp_port() -> int:
    """A loopback UDP port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def reflector():
    r = StampReflector("127.0.0.1:0").start()
    try:
        yield r
    finally:
        r.stop()


@pytest.fixture
def lab(tmp_path, reflector):
    port = reflector.address[1]
    down = _closed_udp_port()
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(f"""\
        site: {SITE}
        planned: {{calls: 5, codec: g711, ptime_ms: 20}}
        circuits:
          - {{name: old, role: old, down_mbps: 20, up_mbps: 20, reflector: "127.0.0.1:{down}"}}
          - {{name: new, role: new, down_mbps: 100, up_mbps: 50, reflector: "127.0.0.1:{port}"}}
        cutover:
          parallel_run_start: 2026-11-01
          checklist: [{{id: porting, title: Numbers ported}}]
        """))
    return load_profile(path), tmp_path / "history.sqlite", down


def stream_only(request: RunRequest):
    """The real runner and stream probe, the other steps left out to keep the test short."""
    def progress(circuit, step, fraction, message):
        request.progress(circuit, f"{step} {message}")
    return runner.run_check(request.profile, store=request.store, circuits=request.circuits, quick=True,
                            progress=progress, stop=request.stop,
                            steps=[s for s in suite.steps() if s.NAME == "stream"])


async def test_run_now_measures_the_selected_circuit_and_updates_its_panel(lab):
    profile, db, _ = lab
    app = BoardApp(profile, db, poll_s=0, runner=stream_only)
    seen: list[str] = []
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert app.screen.selected_circuit == "new"
        assert app.data.circuits[1].verdict is None          # never measured
        await pilot.press("r")
        panel = app.screen.panel("new")
        # the UI stays responsive while the probe runs in its worker: a key is handled meanwhile
        await pilot.press("o")
        assert app.running == ["new"] and type(app.focused).__name__ == "OutageTable"

        def finished():
            if panel.running:
                seen.append(panel.running)
            return not app.running and app.data.circuits[1].runs == 1
        assert await wait_until(pilot, finished, timeout_s=60, step_s=0.05)
        # live progress reached the panel
        assert any("stream" in s for s in seen), seen
    with Store(db) as store:
        runs = store.runs(SITE)
        assert len(runs) == 1 and list(runs[0].circuits) == ["new"]
        rec = runs[0].circuits["new"]
        stream = dict(rec.raw)["stream"]
    assert stream["packets"]["received"] > 0
    view = app.data.circuits[1]
    assert view.verdict == rec.verdict
    rtt = next(m for m in view.metrics if m.key == "rtt_ms")
    assert rtt.text == f"{fmt(stream['rtt_ms']['p50'])} ms"
    mos = next(m for m in view.metrics if m.key == "mos")
    assert mos.text == fmt(stream["mos"])


async def test_run_now_with_the_reflector_down_shows_the_cause(lab):
    profile, db, down = lab
    app = BoardApp(profile, db, poll_s=0, runner=default_runner, quick_runs=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("1")                      # select old
        assert app.screen.selected_circuit == "old"
        await pilot.press("r")
        assert await wait_until(pilot, lambda: not app.running and app.data.circuits[0].runs == 1,
                                timeout_s=90)
        old = app.data.circuits[0]
        assert old.verdict == "NO-GO"
        assert any(f"127.0.0.1:{down}" in p and "down" in p for p in old.problems), old.problems
        assert f"127.0.0.1:{down}" in str(app.screen.panel("old").render())
        assert app.data.circuits[1].runs == 0        # only the selected circuit ran
    with Store(db) as store:
        rec = store.runs(SITE)[0].circuits["old"]
    assert rec.verdict == "NO-GO"


async def test_a_second_run_is_refused_while_one_is_running(lab):
    profile, db, _ = lab
    import threading
    release = threading.Event()
    calls = []

    def slow(request: RunRequest):
        calls.append(list(request.circuits))
        release.wait(10)

    app = BoardApp(profile, db, poll_s=0, runner=slow)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("a")
        await pilot.pause(0.2)
        assert app.running == ["old", "new"]
        assert app.screen.panel("old").running == "queued"
        await pilot.press("r")                      # refused: one run at a time
        release.set()
        assert await wait_until(pilot, lambda: not app.running, timeout_s=10)
    assert calls == [["old", "new"]]


async def test_a_store_fault_in_run_now_is_said_as_such_and_a_bug_as_ours(lab, tmp_path, monkeypatch):
    """The board keeps running either way, but says which it was: a history that
    cannot be written (the database's fault, in its words), or a bug of ours (an
    internal error with its traceback file, as `cutover` exits 70), never the one
    shown as the other."""
    from harness.store import StoreWriteError
    profile, db, _ = lab
    crashes = tmp_path / "crashes"
    monkeypatch.setenv(runner.CRASH_DIR_ENV, str(crashes))
    raised = iter([StoreWriteError(db, "disk full", "database or disk is full"), ZeroDivisionError("division by zero")])

    def failing(request: RunRequest):
        raise next(raised)

    app = BoardApp(profile, db, poll_s=0, runner=failing)

    def failures() -> list[str]:
        return [n.message for n in app._notifications if n.message.startswith("run failed")]

    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("r")
        assert await wait_until(pilot, lambda: len(failures()) == 1 and not app.running)
        assert "StoreWriteError" in failures()[0] and "disk full" in failures()[0]
        assert "internal error" not in failures()[0] and not crashes.exists()
        await pilot.press("r")
        assert await wait_until(pilot, lambda: len(failures()) == 2 and not app.running)
        bug = failures()[1]
        assert "internal error: ZeroDivisionError: division by zero (a bug in cutover, not a network fault" in bug
        files = list(crashes.glob("crash-*.txt"))
        assert len(files) == 1 and str(files[0]) in bug
        assert "board: run now" in files[0].read_text() and "ZeroDivisionError" in files[0].read_text()
        assert app.is_running                                 # the board is still up
