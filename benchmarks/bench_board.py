"""Benchmark of the cutover board on a 30-day history (issue #7): how long it
takes to open, and how long a key press takes to be handled and redrawn.

History: 30 days x 3 circuits at 5-minute intervals (8640 runs, 25920 circuit
results) written through the real store by tests/fixtures/history.py.

Figures printed:

- data load: harness.tui.loader (store query, gate, history analysis);
- open, in-process: BoardApp() constructed, mounted and first frame drawn
  (Textual headless driver, 80x24 and 160x48), data read before mounting;
  and as the CLI opens it (first frame at once, history read in a worker):
  time to the first frame and until the figures are drawn;
- open, cold, in a real terminal: `cutover board` started in tmux until the
  header is on screen (includes Python start-up and imports), when tmux exists;
- key press: for each navigation key, the CPU time the process spends from the
  key event until it is idle again (handling + layout + render; it includes
  Textual's Pilot bookkeeping, so it is an upper bound), median / p95 / max,
  plus the wall time for reference (Pilot sleeps >= 20 ms per key to detect
  idleness, so wall time is not the redraw time).

Usage:
    .venv/bin/python benchmarks/bench_board.py [--dir DIR] [--repeat N]
Targets (issue #7): open < 2 s, key press < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from harness.profile import load_profile  # noqa: E402
from harness.store import Store  # noqa: E402
from harness.tui.app import BoardApp  # noqa: E402
from harness.tui.loader import load_board  # noqa: E402
from tests.fixtures.history import generate  # noqa: E402

KEYS = ["right", "left", "1", "2", "3", "o", "o", "down", "up", "down", "up"]


def history(folder: Path):
    site = folder / "site.yaml"
    db = folder / "history.sqlite"
    if site.exists() and db.exists():
        print(f"history: reusing {db}")
        return site, db
    t0 = time.perf_counter()
    fx = generate(folder, days=30, interval_min=5)
    print(f"history: {fx.runs} runs x 3 circuits written in {time.perf_counter() - t0:.1f} s to {db}")
    return fx.profile_path, fx.db_path


def bench_load(profile, db, repeat: int) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    times = []
    for _ in range(repeat):
        with Store(db) as store:
            t0 = time.perf_counter()
            data = load_board(profile, store, now)
            times.append(time.perf_counter() - t0)
    runs = sum(c.runs for c in data.circuits)
    print(f"data load ({runs} circuit results, {len(data.outages)} outages): "
          f"median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")


async def _open_and_keys(profile, db, size, repeat: int):
    t0 = time.perf_counter()
    app = BoardApp(profile, db, poll_s=0)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        open_s = time.perf_counter() - t0
        cpu, wall = [], []
        per_key: dict[str, list[float]] = {}
        reloads = app.reloads
        for _ in range(repeat):
            for key in KEYS:
                c0, w0 = time.process_time(), time.perf_counter()
                await pilot.press(key)
                cpu.append(time.process_time() - c0)
                wall.append(time.perf_counter() - w0)
                per_key.setdefault(key, []).append(cpu[-1])
        assert app.reloads == reloads, "a key press reloaded the data"
        # the no-op floor: Pilot's own bookkeeping for a key nobody binds
        floor = []
        for _ in range(repeat * 3):
            c0 = time.process_time()
            await pilot.press("f12")
            floor.append(time.process_time() - c0)
        per_key["(unbound f12)"] = floor
    return open_s, cpu, wall, per_key


def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def _background_open(profile, db, size):
    t0 = time.perf_counter()
    app = BoardApp(profile, db, poll_s=0, background_open=True)
    async with app.run_test(size=size) as pilot:
        await pilot.pause()
        first = time.perf_counter() - t0
        for _ in range(600):
            if app.data.loaded:
                break
            await pilot.pause(0.01)
        await pilot.pause()
        return first, time.perf_counter() - t0


def bench_app(profile, db, repeat: int) -> None:
    first, full = asyncio.run(_background_open(profile, db, (160, 48)))
    print(f"open as the CLI does (background read), in-process 160x48: first frame {first:.2f} s, "
          f"figures drawn {full:.2f} s")
    for size in ((80, 24), (160, 48)):
        open_s, cpu, wall, per_key = asyncio.run(_open_and_keys(profile, db, size, repeat))
        print(f"{size[0]}x{size[1]}: open in-process {open_s:.2f} s; key press ({len(cpu)} presses) "
              f"CPU median {statistics.median(cpu) * 1000:.0f} ms, p95 {_pct(cpu, 0.95) * 1000:.0f} ms, "
              f"max {max(cpu) * 1000:.0f} ms; wall median {statistics.median(wall) * 1000:.0f} ms")
        print("    per key, CPU median: " + ", ".join(
            f"{k} {statistics.median(v) * 1000:.0f} ms" for k, v in per_key.items()))


def bench_cold_start(site: Path, db: Path) -> None:
    if shutil.which("tmux") is None:
        print("cold start: skipped (no tmux; run scripts/sysdeps.sh)")
        return
    session = f"cutbench{uuid.uuid4().hex[:6]}"
    cmd = f"{ROOT}/.venv/bin/cutover board {site} --db {db}; sleep 5"
    t0 = time.perf_counter()
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "48", cmd], check=True)
    try:
        frame_s = shown_s = None
        while time.perf_counter() - t0 < 30:
            pane = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True,
                                  text=True).stdout
            if frame_s is None and "Checklist" in pane:
                frame_s = time.perf_counter() - t0
            if "Checklist" in pane and "% pass" in pane:
                shown_s = time.perf_counter() - t0
                break
            time.sleep(0.02)
        print("cold start in tmux 160x48 (python start-up and imports included): first frame "
              + (f"{frame_s:.2f} s" if frame_s else "not seen")
              + ", figures on screen " + (f"{shown_s:.2f} s" if shown_s else "not after 30 s"))
        subprocess.run(["tmux", "send-keys", "-t", session, "q"])
        time.sleep(0.5)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=None, help="folder for (or with) the 30-day history; default: a temp dir")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_board_"))
    site, db = history(folder)
    profile = load_profile(site)
    bench_load(profile, db, args.repeat)
    bench_app(profile, db, args.repeat)
    bench_cold_start(site, db)
    if not args.dir:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
