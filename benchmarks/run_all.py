"""Run every benchmark script in this folder (bench_*.py), one after another,
each in its own process with its default arguments, and print their figures.

Usage:
    .venv/bin/python benchmarks/run_all.py [--only NAME[,NAME]] [--timeout S]

Exit status: 0 when every script exited 0, else 1 (the failing ones are listed).
Benchmarks print figures; they do not assert wall-clock speed (docs/lab.md, machine facts).
Run on a quiet machine: other load changes every figure.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="", help="comma-separated script names (e.g. bench_engine)")
    ap.add_argument("--timeout", type=float, default=900.0, help="per script, seconds")
    args = ap.parse_args()
    wanted = {n.strip().removesuffix(".py") for n in args.only.split(",") if n.strip()}
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not wanted or p.stem in wanted)
    if not scripts:
        print("no benchmark scripts matched", file=sys.stderr)
        return 1
    failed: list[str] = []
    for script in scripts:
        print(f"=== {script.name} ===", flush=True)
        t0 = time.monotonic()
        try:
            cp = subprocess.run([sys.executable, str(script)], cwd=HERE.parent, timeout=args.timeout)
            code = cp.returncode
        except subprocess.TimeoutExpired:
            code = None
            print(f"{script.name}: timed out after {args.timeout:g} s", flush=True)
        print(f"=== {script.name}: exit {code}, {time.monotonic() - t0:.0f} s ===\n", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print("failed: " + ", ".join(failed))
        return 1
    print(f"all {len(scripts)} benchmarks ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
