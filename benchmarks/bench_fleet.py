"""Benchmark of the central PostgreSQL history (issue #21): `cutover fleet`
and one site's 30-day `cutover report` with many sites in one database.

Data: one site's history from tests/fixtures/history.py (3 circuits, 5-minute
runs, planted outages, ~18 checks per run and circuit), written to SQLite and
then copied into PostgreSQL under N site names with the store's own import
(``Store.import_from``, COPY). 200 sites x 30 days = 1.73 M runs, 5.2 M
circuit results, ~32 M checks, 5.2 M raw probe results.

Figures (wall clock, fresh processes: Python start-up and imports included,
as a user runs them; median of --repeat at the full size, one run at the
growth points):

- ``cutover fleet --json`` over every site, at each --steps site count: as
  used (each site's summary kept by its latest `cutover check`, here written
  by ``fleet.refresh`` after the load, timed: that is what each check adds)
  and ``--live`` (every site judged from its runs);
- ``cutover report --since 30d`` (json) of one site, at each site count;
- growth with days: fleet --live and the report at --as-of 7, 15 and 30
  days into the history.

Usage:
    .venv/bin/python benchmarks/bench_fleet.py [--sites 200] [--days 30] [--steps 50,100,200]
        [--db postgresql://...] [--repeat 3]

Without --db a throwaway server is started (initdb/pg_ctl from
/usr/lib/postgresql/15/bin, fsync off: loading speed is not what is measured).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import fleet  # noqa: E402
from harness.store import Store  # noqa: E402
from tests.fixtures.history import FIXED_END, generate  # noqa: E402

TARGET_S = 2.0


def cli(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    env = dict(os.environ)
    env.pop("CUTOVER_DEBUG", None)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, env=env,
                       cwd=ROOT, timeout=1800)
    return time.perf_counter() - t0, r


def median_cli(repeat: int, *args: str) -> tuple[float, subprocess.CompletedProcess]:
    times, last = [], None
    for _ in range(repeat):
        s, last = cli(*args)
        if last.returncode not in (0, 1):
            raise SystemExit(f"cutover {' '.join(args[:2])} failed ({last.returncode}): {last.stderr[-500:]}")
        times.append(s)
    return statistics.median(times), last


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sites", type=int, default=200)
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--steps", default=None, help="site counts to measure at (default: quarter, half, all)")
    ap.add_argument("--db", default=None, help="an existing, empty PostgreSQL database URL")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    steps = sorted({int(x) for x in args.steps.split(",")} if args.steps else
                   {max(1, args.sites // 4), max(1, args.sites // 2), args.sites})
    server = None
    if args.db is None:
        from tests import pgserver
        server, why = pgserver.start_or_reason()
        if server is None:
            raise SystemExit(f"bench_fleet: cannot start PostgreSQL: {why}")
        url = server.url(server.new_database())
    else:
        url = args.db
    work = Path(tempfile.mkdtemp(prefix="cutover-bench-fleet-"))
    try:
        t0 = time.perf_counter()
        fx = generate(work / "src", end=FIXED_END, days=args.days, round_values=True)
        print(f"source: {fx.runs} runs x 3 circuits ({args.days:g} days) in SQLite in "
              f"{time.perf_counter() - t0:.1f} s", flush=True)
        profile_text = fx.profile_path.read_text()
        original = "Harbour Street office"
        as_of = FIXED_END + dt.timedelta(minutes=1)
        site0 = "site-000"
        prof0 = work / "site-000.yaml"
        prof0.write_text(profile_text.replace(f"site: {original}", f"site: {site0}")
                         .replace("db: history.sqlite", ""))
        src = Store(fx.db_path)
        dst = Store(url)
        loaded = 0
        rows = []
        for n in steps:
            names = [f"site-{i:03d}" for i in range(loaded, n)]
            t0 = time.perf_counter()
            for k in range(0, len(names), 10):
                stats = dst.import_from(src, site_map={original: names[k:k + 10]})
                print(f"  loaded {loaded + k + len(names[k:k + 10])} sites "
                      f"({stats.checks_added} checks in the last batch)", flush=True)
            load_s = time.perf_counter() - t0
            loaded = n
            t0 = time.perf_counter()
            for i in range(n):                  # what each site's latest `cutover check` leaves behind
                fleet.refresh(dst, f"site-{i:03d}", as_of)
            refresh_s = time.perf_counter() - t0
            summary_s, r = median_cli(args.repeat, "fleet", "--db", url, "--as-of", as_of.isoformat(), "--json")
            assert len(json.loads(r.stdout)["sites"]) == n
            rows.append((n, "summary", n, summary_s, None))
            print(f"sites={n:4d}: fleet from the summaries {summary_s:6.2f} s (median of {args.repeat}); "
                  f"judging one site after its check {refresh_s / n:.3f} s", flush=True)
            for day in (7, 15, args.days):
                if day > args.days:
                    continue
                at = (fx.start + dt.timedelta(days=day) - dt.timedelta(minutes=4)).isoformat() \
                    if day < args.days else as_of.isoformat()
                rep = args.repeat if (n, day) == (args.sites, args.days) else 1   # growth points: one run each
                fleet_s, r = median_cli(rep, "fleet", "--db", url, "--as-of", at, "--json", "--live")
                n_sites = len(json.loads(r.stdout)["sites"])
                report_s, _ = median_cli(rep, "report", str(prof0), "--db", url, "--as-of", at,
                                         "--since", f"{day:g}d", "--format", "json", "--out", str(work / "r"))
                rows.append((n, day, n_sites, fleet_s, report_s))
                print(f"sites={n:4d} days={day:4g}: fleet --live {fleet_s:6.2f} s ({n_sites} sites listed), "
                      f"one site's report {report_s:5.2f} s   [load of this step {load_s:.0f} s]", flush=True)
        print("\nresults (fresh processes; median of %d at the full size; target %.0f s each)"
              % (args.repeat, TARGET_S))
        print(f"{'sites':>6} {'days':>7} {'fleet s':>8} {'report s':>9}")
        for n, day, _ns, f, r in rows:
            print(f"{n:6d} {day if isinstance(day, str) else f'{day:g} live':>7} {f:8.2f} "
                  f"{'' if r is None else f'{r:9.2f}'}")
        summary = [x for x in rows if x[0] == args.sites and x[1] == "summary"]
        full = [x for x in rows if x[0] == args.sites and x[1] == args.days]
        if summary and full:
            f, fl, r = summary[0][3], full[0][3], full[0][4]
            print(f"\nfleet at {args.sites} sites x {args.days:g} days: {f:.2f} s "
                  f"({'meets' if f <= TARGET_S else 'MISSES'} {TARGET_S:.0f} s; --live {fl:.2f} s); "
                  f"one site's {args.days:g}-day report: {r:.2f} s ({'meets' if r <= TARGET_S else 'MISSES'})")
        print(f"reproduce: .venv/bin/python benchmarks/bench_fleet.py --sites {args.sites} --days {args.days:g} "
              f"--steps {','.join(map(str, steps))} --repeat {args.repeat}")
        src.close()
        dst.close()
    finally:
        if server is not None:
            server.stop()
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
