"""One judgement: every derived figure defined once, and the one evaluator
that turns a probe's raw result into checks.

Every place that says pass / warn / fail about a measurement goes through
:func:`evaluate` (the suite step's pure ``evaluate``): `cutover check`, the
probe commands with ``--profile``, and, through the stored checks, the board,
the reports, the gate and the Prometheus output (they show the checks a run
stored; they never re-judge). docs/judgement.md gives each definition with
its reason; this module is its code.

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from harness.verdicts import Check
from probes import edges

# One-way delay without synchronised clocks: half the round trip, and the
# round trip's p95, not its mean or median: a call suffers from the slow tail
# (ITU-T G.114 limits are about what the listener hears, and the jitter buffer
# has to absorb the late packets, not the average ones).
ONE_WAY_DELAY_RTT_STAT = "p95"

# Where a figure crosses its threshold, and the warn bands (10 %; MOS 2.5 %
# because the MOS scale is short): probes/edges.py, the one definition, shared
# with the capacity ramp's per-step judgement (probes/ramp.py), which cannot
# import harness.
MOS_WARN_BAND_PCT = edges.MOS_WARN_BAND_PCT
GENERIC_WARN_BAND_PCT = edges.WARN_BAND_PCT


def one_way_delay_ms(rtt_ms: dict[str, Any] | None) -> float | None:
    """One-way delay (ms) from a probe's ``rtt_ms`` statistics: RTT p95 / 2."""
    if not isinstance(rtt_ms, dict):
        return None
    v = rtt_ms.get(ONE_WAY_DELAY_RTT_STAT)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v / 2


def sender_lateness_limit_ms(ptime_ms: float, calls: int) -> float:
    """The measuring machine keeps pace when its send lateness p99 stays at or
    below max(1 ms, ptime / calls): the gap between two sends of the whole
    batch. Later than that, packets of consecutive calls bunch up and the
    path is blamed for our scheduling. (The engine applies the same rule,
    probes/engine/analysis.py ``sender_health``; the suite applies it to results
    of probes that do not judge themselves.)"""
    return max(1.0, ptime_ms / max(1, calls))


def evaluate(step: str, profile, circuit, raw: dict) -> list[Check]:
    """The checks for one step's raw probe result: the one evaluator."""
    import importlib
    module = importlib.import_module(f"harness.suite.{step}")
    return module.evaluate(profile, circuit, raw)


def exit_code(checks: list[Check]) -> int:
    """A probe command's exit code from its checks: 1 when any check failed,
    3 when any could not be measured (error), else 0 (a warn passes, as in
    `cutover check`, where WARN exits 0)."""
    statuses = {c.status for c in checks}
    if "fail" in statuses:
        return 1
    if "error" in statuses:
        return 3
    return 0
