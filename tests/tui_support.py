"""Shared by the board tests (tests/test_tui*.py): a small parallel-run history
with a failing and a passing circuit, written through the real store, and a
fixed clock so screens are reproducible.

The values are deterministic functions of the run index (no RNG, no shared
generator), so the snapshot SVGs change only when the board changes.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

from harness import verdicts as V
from harness.profile import load_profile
from harness.store import Store

UTC = dt.timezone.utc
END = dt.datetime(2026, 11, 22, 9, 0, tzinfo=UTC)       # time of the last stored run
NOW = END + dt.timedelta(minutes=10)                      # the board's fixed clock
INTERVAL = dt.timedelta(minutes=30)
RUNS = 96                                                 # 2 days x 3 circuits
SITE = "Harbour Street office"

PROFILE = """\
site: Harbour Street office
planned: {{calls: 20, codec: g711, ptime_ms: 20, other_mbps: 5}}
circuits:
  - {{name: old, role: old, provider: Carrier A (EFM), down_mbps: 20, up_mbps: 20, reflector: "127.0.0.1:8620"}}
  - {{name: new, role: new, provider: Carrier B (fibre), down_mbps: 100, up_mbps: 50, reflector: "127.0.0.1:8620"}}
  - {{name: backup, role: backup, provider: Carrier C (LTE), down_mbps: 30, up_mbps: 10, reflector: "127.0.0.1:8620"}}
cutover:
  parallel_run_start: {start}
  min_parallel_days: 14
  pass_rate_pct: 95
  sla_claim_hours: 24
  checklist:
    - {{id: voice-vlan, title: Voice VLAN configured and tagged}}
    - {{id: failover, title: Backup line failover tested}}
    - {{id: porting, title: Numbers ported to the new provider}}
"""

# per circuit: RTT p50 ms, jitter ms, loss %, down/up Mbit/s, capacity in calls
BASE = {"old": (24.0, 3.0, 0.05, 18.0, 17.5, 48), "new": (8.0, 1.0, 0.01, 92.0, 46.0, 120),
        "backup": (45.0, 9.0, 0.2, 24.0, 7.8, 26)}
OLD_FAIL = range(40, 43)                 # old: 3 runs with heavy loss -> one closed outage
BACKUP_DOWN = range(RUNS - 3, RUNS)      # backup: reflector down for the last 3 runs -> ongoing


@dataclass
class BoardHistory:
    profile_path: Path
    db_path: Path
    start: dt.datetime                   # time of run 0
    interval: dt.timedelta = INTERVAL

    def time_of(self, index: int) -> dt.datetime:
        return self.start + index * self.interval


def _result(profile, name: str, i: int):
    th = profile.thresholds
    if name == "backup" and i in BACKUP_DOWN:
        cause = "reflector 127.0.0.1:8620 did not answer: 0 of 250 packets came back"
        return (V.NO_GO, [V.error("stream.reachable", cause, cause=V.NETWORK)],
                {"stream": {"measured": False, "errors": [cause]}})
    rtt0, jit0, loss0, down0, up0, cap = BASE[name]
    wave = math.sin(i / 7.0)                         # a slow daily-ish swing
    rtt = round(rtt0 * (1 + 0.2 * wave), 2)
    jit = round(jit0 * (1 + 0.3 * math.cos(i / 5.0)), 2)
    loss = round(loss0 * (1 + math.sin(i / 3.0)), 3)
    if name == "old" and i in OLD_FAIL:
        loss = 4.5
    mos = round(4.39 - 0.0004 * rtt - 0.3 * loss, 2)
    stream = {"probe": "stream", "rtt_ms": {"p50": rtt}, "jitter_ms": {"up": jit, "down": round(jit * 0.9, 2)},
              "loss_pct": {"up": loss, "down": round(loss / 2, 3), "total": round(loss * 1.5, 3)}, "mos": mos}
    raw = {"stream": stream}
    checks = [V.at_most("stream.delay", "one-way delay", rtt / 2, th.one_way_delay_ms, "ms"),
              V.at_most("stream.jitter_up", "upstream jitter", jit, th.jitter_ms, "ms"),
              V.at_most("stream.loss_up", "upstream loss", loss, th.loss_pct, "%"),
              V.at_least("stream.mos", "MOS", mos, th.mos_min, context="minimum", warn_band_pct=2.5)]
    if i % 2 == 0:                                   # bandwidth every hour
        down, up = round(down0 * (1 - 0.05 * wave), 1), round(up0 * (1 - 0.05 * wave), 2)
        raw["bandwidth"] = {"probe": "bandwidth", "down_mbps": down, "up_mbps": up}
    if i % 48 == 0:                                  # capacity once a day
        raw["capacity"] = {"probe": "capacity", "max_calls": cap}
        checks.append(V.at_least("capacity.calls", "capacity", cap, profile.planned.calls, "calls",
                                 context="planned", warn_band_pct=0))
    return V.circuit_verdict(checks), checks, raw


def board_history(folder: Path) -> BoardHistory:
    """folder/site.yaml + folder/history.sqlite: RUNS runs of 3 circuits ending at END."""
    folder.mkdir(parents=True, exist_ok=True)
    start = END - (RUNS - 1) * INTERVAL
    path = folder / "site.yaml"
    path.write_text(PROFILE.format(start=(END - dt.timedelta(days=20)).date().isoformat()))
    profile = load_profile(path)
    db = folder / "history.sqlite"
    with Store(db) as store, store.batch():
        for i in range(RUNS):
            t = start + i * INTERVAL
            run = store.begin_run(SITE, {"site": SITE}, "tui-test", started_at=t)
            verdicts = []
            for name in ("old", "new", "backup"):
                verdict, checks, raw = _result(profile, name, i)
                store.add_circuit_result(run, name, verdict, checks, raw, stored_at=t)
                verdicts.append(verdict)
            run = store.finish_run(run, V.overall_verdict(verdicts), finished_at=t + dt.timedelta(seconds=30))
    return BoardHistory(path, db, start)


async def type_text(pilot, text: str) -> None:
    await pilot.press(*["space" if ch == " " else ch for ch in text])


async def wait_until(pilot, predicate, timeout_s: float = 30.0, step_s: float = 0.1) -> bool:
    """Let the app run until ``predicate()`` holds (bounded)."""
    for _ in range(int(timeout_s / step_s)):
        if predicate():
            return True
        await pilot.pause(step_s)
    return predicate()
