"""Judging a failover drill (``cutover probe failover``; probes/failover.py).

Not a scheduled step: a drill needs someone (or ``--trigger``) to take the
primary line down while it runs, so ``applies`` is False and ``cutover
check`` never starts one. The drill command and the stored drills use these
checks; this is the one place a drill is judged.

Checks:

- ``failover.gap``: the longest round-trip silence of the calls (``max_gap_ms.rtt``)
  <= ``cutover.failover_max_gap_ms`` (default 1000 ms: a silence up to a second
  is a lost word people talk over; from about 2 s callers ask "are you there?"
  and hang up, and SD-WAN vendors promise sub-second failover). A drill that
  saw no interruption at all is ``warn``: it does not show a failover.
- ``failover.recovered``: the calls came back before the drill ended.
- ``failover.source``: ``warn`` when the far end saw the calls come back in a
  new session (a new public address or port after the failover): calls in
  progress drop and phones must re-register, although the line works.
"""

from __future__ import annotations

from harness.suite import not_measured
from harness.verdicts import Check, at_most, expect

NAME = "failover"
PROBE = "probes.failover"


def applies(profile, circuit) -> bool:
    return False          # run on demand only (see module doc)


def measure(profile, circuit, *, quick: bool, progress=None, stop=None, **overrides) -> dict:
    from harness.binding import bind
    from probes import failover
    cfg = bind("failover", profile, circuit, **overrides)
    return failover.run(cfg, progress, stop).to_dict()


def evaluate(profile, circuit, raw: dict) -> list[Check]:
    return checks(raw, profile.cutover.failover_max_gap_ms)


def checks(raw: dict, max_gap_ms: float) -> list[Check]:
    """Pure: the drill's JSON and the allowed gap -> checks."""
    bad = not_measured(NAME, raw)
    if bad:
        return bad
    out: list[Check] = []
    gap = (raw.get("max_gap_ms") or {}).get("rtt")
    if not raw.get("interruptions"):
        out.append(Check("failover.gap", "warn", gap, max_gap_ms, "ms", None,
                         "no interruption during the drill: it does not show a failover "
                         "(was the primary taken down while it ran?)"))
    else:
        c = at_most("failover.gap", "the calls went silent for", gap, max_gap_ms, "ms",
                    context="allowed (cutover.failover_max_gap_ms)", warn_band_pct=0.0)
        out.append(c)
        out.append(expect("failover.recovered", bool(raw.get("recovered")), raw.get("recovered"), True,
                          "the calls came back after the failover" if raw.get("recovered")
                          else "the calls did not come back before the drill ended"))
        changed = bool(raw.get("source_changed"))
        named = [i for i in raw.get("interruptions") or [] if i.get("address_before")]
        if named:
            why = (f"after the failover your public address changed from {named[0]['address_before']} to "
                   f"{named[-1]['address_after']}: calls in progress drop and phones must re-register")
        elif changed:
            why = ("after the failover the far end saw the calls in a new session (new public address "
                   "or port): calls in progress drop and phones must re-register")
        else:
            why = "the calls came back from the same address and port"
        out.append(expect("failover.source", not changed, changed, False, why, bad_status="warn"))
    return out


# ---------------------------------------------------------------- stored drills as evidence

FAILOVER_ITEM = "failover"      # the checklist item a passing stored drill satisfies
PASSING = ("GO", "WARN")


def drill_summaries(runs) -> list[dict]:
    """Stored drill runs (``store.runs(site, kind="drill")``) -> one dict per
    circuit drilled, oldest first: when, circuit, passed, the longest silence
    and the allowed gap (what a gate item or a report line says)."""
    out = []
    for run in runs:
        for name, rec in run.circuits.items():
            raw = rec.raw.get("failover") or {}
            out.append({"at": run.started_at, "circuit": name, "passed": rec.verdict in PASSING,
                        "verdict": rec.verdict, "max_gap_ms": (raw.get("max_gap_ms") or {}).get("rtt"),
                        "allowed_ms": raw.get("max_gap_ms_allowed"),
                        "interruptions": len(raw.get("interruptions") or []),
                        "source_changed": raw.get("source_changed"), "recovered": raw.get("recovered"),
                        "recovery_s": raw.get("recovery_s"), "mos_before": raw.get("mos_before"),
                        "mos_after": raw.get("mos_after")})
    return out


def drill_sentence(d: dict) -> str:
    gap = "n/a" if d["max_gap_ms"] is None else f"{d['max_gap_ms']:.0f} ms"
    allowed = "" if d["allowed_ms"] is None else f" (allowed {d['allowed_ms']:.0f} ms)"
    when = d["at"].strftime("%Y-%m-%d %H:%M UTC")
    return (f"failover drill on {d['circuit']} {'passed' if d['passed'] else 'FAILED'} on {when}: "
            f"longest silence {gap}{allowed}")

