"""Shared by the board tests (tests/test_tui*.py): a small fixture history with
a failing and a passing circuit, written through the real store by the history
fixture generator, and a fixed clock so screens are reproducible."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.fixtures.history import Planted, generate

UTC = dt.timezone.utc
END = dt.datetime(2026, 11, 22, 9, 0, tzinfo=UTC)       # time of the last stored run
NOW = END + dt.timedelta(minutes=10)                      # the board's fixed clock
DAYS = 2
INTERVAL_MIN = 30                                         # 96 runs x 3 circuits
RUNS = DAYS * 24 * 60 // INTERVAL_MIN

# old: one closed outage (3 failing runs); backup: unreachable for its last 3 runs (ongoing);
# new: passes every run -> the gate blocks only on the unsigned manual checklist items.
OUTAGES = (Planted("old", 40, 3, "fail"), Planted("backup", RUNS - 3, 3, "unreachable"))


def board_history(folder: Path):
    """folder/site.yaml + folder/history.sqlite; returns the HistoryFixture."""
    return generate(folder, end=END, days=DAYS, interval_min=INTERVAL_MIN, outages=OUTAGES,
                    parallel_run_start=(END - dt.timedelta(days=20)).date(), min_days=14)


async def type_text(pilot, text: str) -> None:
    await pilot.press(*["space" if ch == " " else ch for ch in text])


async def wait_until(pilot, predicate, timeout_s: float = 30.0, step_s: float = 0.1) -> bool:
    """Let the app run until ``predicate()`` holds (bounded)."""
    loops = int(timeout_s / step_s)
    for _ in range(loops):
        if predicate():
            return True
        await pilot.pause(step_s)
    return predicate()
