"""The capacity ramp: which call counts to try, and what a step's figures mean.

Pure logic, no I/O: :func:`ramp` drives any ``step(calls) -> Step`` function
(the real one runs the stream engine; tests pass a deterministic fake), and
:func:`judge` turns one step's measured figures into pass/fail with reasons.

The ramp
--------
1. **Grow.** Start at ``start`` (the planned calls when known), capped by
   ``ceiling`` (``--max-calls``, or what the contract could carry). While steps
   pass, multiply the call count by ``growth`` (at least +1) up to the ceiling.
   A pass at the ceiling ends the ramp with ``limit = "max_calls"``.
2. **Bisect.** Once a step fails, the answer lies between the largest passing
   count ``lo`` (0 if none passed yet) and the smallest failing count ``hi``:
   try ``(lo + hi) // 2`` until ``hi - lo <= resolution``. With resolution 1
   the result is exact: ``lo`` passes and ``lo + 1`` fails.
3. **Limit.** ``limit`` names what failed at ``hi``, the failing step next to
   the answer, so it is "what was hit first" as calls went up. Reasons are
   ordered ``sender`` (the measuring machine fell behind: the step says
   nothing about the network), ``loss``, ``jitter``, ``mos``.

Bisection assumes that more calls never measure better than fewer, which holds
for a queue (loss and delay grow with load). Noise near the edge can move the
answer by a call; the ``thorough`` preset uses longer steps to average it out.

A step that could not measure at all (no reply from the reflector) stops the
ramp: the result is partial and the cause is kept, never read as "0 calls".
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from probes import edges

# What stopped the ramp (docs/contract.md §5, capacity `limit`).
LIMITS = ("mos", "loss", "jitter", "max_calls", "sender")
# Order in which simultaneous reasons are reported: a sender-limited step is not a
# network figure at all; loss is the first thing an overloaded queue does.
REASON_ORDER = ("sender", "loss", "jitter", "mos")


@dataclass(frozen=True)
class Preset:
    name: str
    step_s: float            # how long each call count is held
    growth: float            # multiply calls by this while steps pass
    resolution_pct: float    # stop bisecting when hi - lo <= max(1, lo * pct / 100)
    settle_s: float          # pause between steps so queues drain
    max_steps: int           # hard bound on the number of steps


PRESETS: dict[str, Preset] = {
    # About 15-25 s on site: coarse growth, a 5 % answer.
    "quick": Preset("quick", step_s=2.0, growth=2.0, resolution_pct=5.0, settle_s=0.5, max_steps=14),
    # About a minute on site: ~8-12 steps of 4 s, exact to one call.
    "default": Preset("default", step_s=4.0, growth=1.5, resolution_pct=0.0, settle_s=0.5, max_steps=24),
    # Several minutes: longer steps average out noise at the edge.
    "thorough": Preset("thorough", step_s=10.0, growth=1.25, resolution_pct=0.0, settle_s=1.0, max_steps=40),
}


@dataclass(frozen=True)
class Thresholds:
    mos_min: float = 4.0
    loss_pct: float = 1.0
    jitter_ms: float = 30.0


@dataclass
class Step:
    """One call count held for a while: what was measured, and the judgement.

    ``loss_pct``/``jitter_ms``/``mos`` are those of the worse direction (a call
    has a listener at each end); ``directions`` keeps both.
    """
    calls: int
    offered_kbps: float                 # per direction, Ethernet layer (as `cutover plan` counts)
    loss_pct: float | None = None
    jitter_ms: float | None = None
    mos: float | None = None
    passed: bool = False
    reasons: list[str] = field(default_factory=list)   # failed criteria, REASON_ORDER
    directions: dict[str, dict[str, float | None]] = field(default_factory=dict)
    rtt_ms: dict[str, float | None] = field(default_factory=dict)
    sender: dict[str, Any] = field(default_factory=dict)
    packets: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    error: str | None = None            # could not measure this step at all
    local_error: bool = False           # ... and that was our side's fault (not in the JSON)
    # loss in time from the engine (probes/voice/losstime.py): max_gap_ms, burst_ratio, worst_window,
    # interruptions, restarts; reported, not judged here
    loss_in_time: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out: dict[str, Any] = {"calls": self.calls, "offered_kbps": self.offered_kbps,
                               "loss_pct": self.loss_pct, "jitter_ms": self.jitter_ms,
                               "mos": self.mos, "pass": self.passed, "failed": list(self.reasons),
                               "duration_s": self.duration_s}
        if self.directions:
            out["directions"] = self.directions
        if self.rtt_ms:
            out["rtt_ms"] = self.rtt_ms
        if self.packets:
            out["packets"] = self.packets
        if self.sender:
            out["sender"] = self.sender
        if self.error:
            out["error"] = self.error
        out.update(self.loss_in_time)
        return out


def judge(step: Step, thresholds: Thresholds) -> Step:
    """Fill ``passed``/``reasons`` from the measured figures (in place; returns it).

    Sender health (``step.sender``, see :func:`sender_state`): ``behind`` fails the step
    with reason ``sender``; ``hiccups`` adds ``sender`` only to a step that failed.
    A figure exactly at its threshold passes (loss 1.0 % with a 1.0 % limit is
    within it), as the profile's thresholds are limits, not targets: the edges
    are probes/edges.py's, the same that `cutover check` judges stream.loss,
    stream.jitter and stream.mos by (harness.verdicts). A step has no warn
    band: it carries its calls or not. Loss or MOS not measured fails the step
    (no evidence that it carried them); jitter not measured is not judged.
    """
    reasons: list[str] = []
    if step.error:
        step.passed, step.reasons = False, []
        return step
    if step.loss_pct is None or edges.above_limit(step.loss_pct, thresholds.loss_pct):
        reasons.append("loss")
    if step.jitter_ms is not None and edges.above_limit(step.jitter_ms, thresholds.jitter_ms):
        reasons.append("jitter")
    if step.mos is None or edges.below_minimum(step.mos, thresholds.mos_min):
        reasons.append("mos")
    # The sender: "behind" (could not hold its schedule, or dropped replies) makes every
    # figure of the step ours; "hiccups" (a few late sends, a busy machine) only make
    # traffic burstier, which is harsher on the path, so a pass stands, but a failure
    # can no longer be blamed on the network alone.
    # On a loopback target there is no network at all: loss or delay there is the
    # machine's own (the reflector's socket overflowed, the CPU was busy).
    behind = step.sender.get("behind", step.sender.get("limited", False))
    if behind or (reasons and (stalls_could_explain(step, reasons) or step.sender.get("loopback"))):
        reasons.append("sender")
    step.reasons = [r for r in REASON_ORDER if r in reasons]
    step.passed = not step.reasons
    return step


# A sender whose median send is this late is not keeping its schedule at all (a
# busy machine delays a few sends by milliseconds, but not the median one).
SUSTAINED_LATENESS_P50_MS = 1.0


# Stalls shorter than one ptime bunch at most one packet per call together, which
# randomly phased real phones do all the time; stalls longer than a ptime pile up
# more than that (the engine reports such sends and flags itself above 0.1 %).
STALL_FRACTION_LIMIT = 0.001
_STALLS_RE = re.compile(r"(\d+) sends more than one ptime")


def sender_state(sender: dict, ptime_ms: float = 20.0) -> tuple[bool, bool]:
    """(behind, hiccups) from the engine's sender health.

    behind: the kernel dropped replies on our socket (they would read as
    loss), or the median send was more than 1 ms late (the load was not
    offered as planned). hiccups: not behind, but more than 0.1 % of the
    sends were over one ptime late (stalls of a busy machine), which can turn
    into bursts a shallow queue drops. A p99 lateness of a few ms alone is
    neither: it bunches fewer packets than random call phases do.
    """
    late = sender.get("lateness_ms") or {}
    p50 = late.get("p50")
    behind = bool(sender.get("rx_dropped")) or (p50 is not None and p50 > SUSTAINED_LATENESS_P50_MS)
    if behind:
        return True, False
    sent = sender.get("sent") or 0
    return False, late_sends(sender, ptime_ms) > (STALL_FRACTION_LIMIT * sent if sent else 0)


def late_sends(sender: dict, ptime_ms: float = 20.0) -> int:
    """Sends more than one ptime late, from the engine's sender health."""
    late = sender.get("lateness_ms") or {}
    if late.get("max") is not None and late["max"] <= ptime_ms:
        return 0
    if sender.get("late_sends") is not None:
        return int(sender["late_sends"])
    m = _STALLS_RE.search(sender.get("reason") or "")     # the engine names it in its reason
    return int(m.group(1)) if m else 0


def stalls_could_explain(step: Step, reasons: list[str]) -> bool:
    """Could the sender's stalls account for this step's failure (``reasons``)?

    A stall bunches the packets due during it; each packet it delays by more
    than a ptime is counted (``late_sends``), so a run with V such packets had
    at most V stalls, each bunching at most V + calls packets: at most
    V * (calls + 1) packets can have been lost to our own bursts. Loss beyond
    that is the path's, whatever the stalls did.
    """
    if not step.sender.get("hiccups"):
        return False
    sent = int((step.packets or {}).get("sent") or 0)
    if "loss" not in reasons or step.loss_pct is None or not sent:
        return True
    lost = step.loss_pct / 100 * sent
    return lost <= int(step.sender.get("late_sends") or 0) * (step.calls + 1)


def growth_counts(start: int, ceiling: int, preset: Preset) -> list[int]:
    """The call counts of the growth phase when every step passes: start,
    then x ``growth`` (at least +1) up to the ceiling. quick from 40 to 500:
    40, 80, 160, 320, 500."""
    n, out = max(1, start), []
    for _ in range(preset.max_steps):
        out.append(n)
        if n >= ceiling:
            break
        n = min(ceiling, max(n + 1, math.ceil(n * preset.growth)))
    return out


def expected_steps(start: int, ceiling: int, preset: Preset) -> int:
    """About how many steps a ramp takes, for progress: the growth phase plus
    the bisection of the last doubling-sized gap (log2 of it, at least 1)."""
    counts = growth_counts(start, ceiling, preset)
    gap = counts[-1] - counts[-2] if len(counts) > 1 else 1
    return len(counts) + max(1, math.ceil(math.log2(max(2, gap))))


def resolution_calls(lo: int, preset: Preset) -> int:
    """Bisection stops when the bracket is this narrow."""
    return max(1, int(lo * preset.resolution_pct / 100))


@dataclass
class RampOutcome:
    max_calls: int                      # largest count that passed (0: none did)
    limit: str | None                   # LIMITS, or None when the ramp ended without an answer
    steps: list[Step]
    first_fail: int | None              # smallest count that failed (None: none failed)
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    partial: bool = False
    measured: bool = True


StepFn = Callable[[int], Step]


def ramp(step: StepFn, *, start: int, ceiling: int, preset: Preset,
         stop: threading.Event | None = None,
         deadline_ok: Callable[[], bool] | None = None) -> RampOutcome:
    """Grow from ``start`` to ``ceiling``, then bisect near the limit.

    ``step(calls)`` measures and judges one call count. ``deadline_ok()`` (time
    budget) and ``stop`` end the ramp early with a partial result.
    """
    if ceiling < 1:
        raise ValueError("the call ceiling must be at least 1")
    if start < 1:
        raise ValueError("the starting call count must be at least 1")
    n = min(start, ceiling)
    lo, hi = 0, None
    hi_step: Step | None = None
    steps: list[Step] = []
    errors: list[str] = []
    gaps: list[str] = []                 # the errors that are ours (probes.result)
    partial = False
    limit: str | None = None

    for _ in range(preset.max_steps):
        if stop is not None and stop.is_set():
            errors.append("stopped before the ramp finished")
            gaps.append(errors[-1])
            partial = True
            break
        if deadline_ok is not None and not deadline_ok():
            errors.append("time budget used up before the ramp finished")   # our budget, not the path
            gaps.append(errors[-1])
            partial = True
            break
        s = step(n)
        steps.append(s)
        if s.error:
            errors.append(f"{n} calls: {s.error}")
            if s.local_error:
                gaps.append(errors[-1])
            partial = True
            break
        if s.passed:
            lo = max(lo, n)
        elif hi is None or n < hi:
            hi, hi_step = n, s
        if hi is None:                       # still growing
            if n >= ceiling:
                limit = "max_calls"
                break
            n = min(ceiling, max(n + 1, math.ceil(n * preset.growth)))
            continue
        if hi - lo <= resolution_calls(lo, preset):
            limit = hi_step.reasons[0] if hi_step and hi_step.reasons else None
            break
        n = (lo + hi) // 2
    else:
        errors.append(f"step limit ({preset.max_steps}) reached before the ramp converged")
        gaps.append(errors[-1])         # our preset's limit, not the path's
        partial = True

    if partial and hi_step is not None and limit is None:
        # Keep what the steps so far say: the bracket's failing side is still evidence.
        limit = hi_step.reasons[0] if hi_step.reasons else None
    measured = any(not s.error for s in steps)
    return RampOutcome(max_calls=lo, limit=limit, steps=steps, first_fail=hi,
                       errors=errors, gaps=gaps, partial=partial, measured=measured)
