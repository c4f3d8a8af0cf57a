"""Benchmark of the history store (harness/store.py).

Figures printed (wall clock, this machine):

- writing one run as `cutover check` does (begin, one commit per circuit,
  finish: 5 transactions for 3 circuits of 12 checks and one raw blob each);
- reading 30 days x 3 circuits at 5-minute intervals (8640 runs) with
  ``runs(checks="all" | "failing" | "none")`` and one metric with ``series()``;
- a reader's latency while another process writes runs continuously (WAL:
  readers never wait for the writer).

Usage:
    .venv/bin/python benchmarks/bench_store.py [--days 30] [--runs-timed 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.store import Store  # noqa: E402
from harness.verdicts import Check  # noqa: E402

UTC = dt.timezone.utc
CIRCUITS = ("old", "new", "backup")
PROFILE = {"site": "Bench", "circuits": [{"name": c} for c in CIRCUITS]}


def _checks(i: int) -> list[Check]:
    out = [Check(f"stream.m{k}", "pass", 1.5 + k, 30.0, "ms", 28.5 - k, "upstream jitter 1.5 ms <= 30 ms limit")
           for k in range(12)]
    if i % 97 == 0:
        out[3] = Check("stream.loss_up", "fail", 3.0, 1.0, "%", -2.0, "upstream loss 3 % > 1 % limit")
    return out


def _write_run(st: Store, t: dt.datetime, i: int) -> None:
    rid = st.begin_run("Bench", PROFILE, "bench", started_at=t)
    for c in CIRCUITS:
        st.add_circuit_result(rid, c, "GO", _checks(i), {"stream": {"mos": 4.37, "rtt_ms": {"p50": 1.0}}},
                              stored_at=t)
    st.finish_run(rid, "GO", finished_at=t + dt.timedelta(seconds=40))


def _writer(path: str, stop_at: float) -> None:
    st = Store(path)
    t = dt.datetime(2027, 1, 1, tzinfo=UTC)
    i = 0
    while time.monotonic() < stop_at:
        _write_run(st, t + dt.timedelta(minutes=5 * i), i)
        i += 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--runs-timed", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "bench.sqlite")
        st = Store(path)
        t0 = dt.datetime(2026, 10, 1, tzinfo=UTC)
        n_runs = args.days * 288

        a = time.perf_counter()
        for i in range(args.runs_timed):
            _write_run(st, t0 + dt.timedelta(minutes=5 * i), i)
        per_run_ms = (time.perf_counter() - a) / args.runs_timed * 1000
        print(f"write one run (3 circuits x 12 checks, 5 transactions): {per_run_ms:.2f} ms")

        a = time.perf_counter()
        with st.batch():
            for i in range(args.runs_timed, n_runs):
                _write_run(st, t0 + dt.timedelta(minutes=5 * i), i)
        print(f"fill to {n_runs} runs in one batch: {time.perf_counter() - a:.1f} s, "
              f"file {Path(path).stat().st_size / 1e6:.0f} MB")

        for mode in ("all", "failing", "none"):
            times = []
            for _ in range(3):
                a = time.perf_counter()
                runs = st.runs("Bench", checks=mode)
                times.append(time.perf_counter() - a)
            n_checks = sum(len(c.checks) for r in runs for c in r.circuits.values())
            print(f"runs(checks={mode!r}): {len(runs)} runs, {n_checks} checks, "
                  f"median {statistics.median(times):.2f} s")
        a = time.perf_counter()
        pts = st.series("Bench", "stream.m3")
        print(f"series('stream.m3'): {len(pts)} points in {time.perf_counter() - a:.3f} s")

        # concurrent reader while another process writes
        stop_at = time.monotonic() + 5
        w = mp.Process(target=_writer, args=(path, stop_at))
        w.start()
        reader = Store(path)
        lat = []
        since = t0 + dt.timedelta(days=args.days - 1)
        until = t0 + dt.timedelta(days=args.days)
        while time.monotonic() < stop_at:
            a = time.perf_counter()
            reader.runs("Bench", since=since, until=until)
            lat.append((time.perf_counter() - a) * 1000)
        w.join(30)
        lat.sort()
        print(f"reader (one day = 288 runs, {len(lat)} reads) while another process writes: "
              f"p50 {lat[len(lat) // 2]:.1f} ms, max {lat[-1]:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
