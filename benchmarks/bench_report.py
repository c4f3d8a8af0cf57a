"""Benchmark of `cutover report` on a 30-day history (issue #6: under 2 s).

History: 30 days x 3 circuits at 5-minute intervals (8640 runs, 25920 circuit
results, ~200k checks) written through the real store by
tests/fixtures/history.py.

Figures printed (median of --repeat runs, wall clock):

- in-process, per stage: reading runs (failing checks + latest run in full),
  metric series (one json_extract pass), analysis, gate, rendering each format;
- end to end: the `cutover report` command in a fresh process (Python start-up
  and imports included), for --since 7d (the default) and --since 30d (all of
  it), all four formats;
- `cutover gate` in a fresh process.

Usage:
    .venv/bin/python benchmarks/bench_report.py [--dir DIR] [--repeat 3]

With --dir, the history in DIR (site.yaml + history.sqlite) is reused or made
there; otherwise a temporary one is generated (~10 s).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import gate, history  # noqa: E402
from harness.profile import load_profile  # noqa: E402
from harness.reports import build_report, render  # noqa: E402
from harness.store import Store  # noqa: E402
from tests.fixtures.history import FIXED_END, generate  # noqa: E402

AS_OF = FIXED_END + dt.timedelta(minutes=1)


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dir", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="cutover-bench-"))
    if not (folder / "history.sqlite").exists():
        t0 = time.perf_counter()
        generate(folder, end=FIXED_END, round_values=True)
        print(f"generated 30 d x 3 circuits x 5 min (8640 runs) in {time.perf_counter() - t0:.1f} s -> {folder}")
    profile = load_profile(folder / "site.yaml")
    db = folder / "history.sqlite"
    n = args.repeat
    print(f"history: {db} ({db.stat().st_size / 1e6:.0f} MB); median of {n} runs")

    with Store(db) as store:
        for days in (7, 30):
            since = AS_OF - dt.timedelta(days=days)
            until = AS_OF + dt.timedelta(microseconds=1)
            t_runs, runs = timed(lambda: history.load_runs(store, profile.site, since, until), n)
            t_series, series = timed(lambda: history.load_series(store, profile.site, since, until), n)
            t_an, analysis = timed(lambda: history.analyze(runs, profile, since=since, now=AS_OF, series=series), n)
            t_gate, _ = timed(lambda: gate.decide(profile, store, now=AS_OF), n)
            t_all, rep = timed(lambda: build_report(profile, store, since=since, now=AS_OF), n)
            renders = {fmt: timed(lambda: render(rep, fmt), n)[0] for fmt in ("md", "html", "json", "junit")}
            print(f"\nin-process, --since {days}d ({len(runs)} runs):")
            print(f"  load runs {t_runs:.3f} s | series {t_series:.3f} s | analyze {t_an:.3f} s | "
                  f"gate {t_gate:.3f} s | build_report total {t_all:.3f} s")
            print("  render " + " | ".join(f"{k} {v:.3f} s" for k, v in renders.items()))

    print("\nend to end (fresh process, all four formats):")
    for since in ("7d", "30d"):
        out = folder / f"out-{since}"
        cmd = [sys.executable, "-m", "harness", "report", str(folder / "site.yaml"), "--db", str(db),
               "--since", since, "--as-of", AS_OF.isoformat(), "--report-dir", str(out)]
        t, r = timed(lambda: subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT), n)
        ok = "ok" if r.returncode == 0 else f"exit {r.returncode}: {r.stderr.strip()[:200]}"
        print(f"  cutover report --since {since:<4} {t:.2f} s  ({ok}; target < 2 s)")
    cmd = [sys.executable, "-m", "harness", "gate", str(folder / "site.yaml"), "--db", str(db),
           "--as-of", AS_OF.isoformat()]
    t, r = timed(lambda: subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT), n)
    print(f"  cutover gate                {t:.2f} s  (exit {r.returncode})")
    t, r = timed(lambda: subprocess.run([sys.executable, "-c", "import harness.cli"], cwd=ROOT), n)
    print(f"  (python start-up + CLI imports alone: {t:.2f} s)")
    print(f"\nreproduce: .venv/bin/python benchmarks/bench_report.py --dir {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
