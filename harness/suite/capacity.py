"""Suite step: concurrent-call capacity against the planned peak calls.

``config_for`` turns a profile + circuit into a :class:`CapacityConfig` (also
used by ``cutover probe capacity --profile``): the circuit's reflector,
source/interface and key, the planned codec/ptime/calls and the thresholds;
the ramp's ceiling is what the circuit's contract could carry in voice alone
(the weaker direction at line rate, no headroom, no other traffic: the probe
measures voice only), but never below the planned calls, so the question
"does it carry what we plan" always gets an answer.

``evaluate`` is pure: raw capacity JSON + profile -> checks.
"""

from __future__ import annotations

from harness.planning import calls_fitting, per_call_kbps
from harness.suite import not_measured, probe_cause
from harness.verdicts import NETWORK, Check, at_least, error
from probes.capacity import CapacityConfig
from probes.ramp import Thresholds

NAME = "capacity"
PROBE = "probes.capacity"
SUITE_CEILING_FACTOR = 2


def applies(profile, circuit) -> bool:
    return bool(circuit.reflector)


def contract_calls(profile, circuit) -> int:
    """Calls the contract could carry if it carried nothing but voice."""
    pl = profile.planned
    pc = per_call_kbps(pl.codec, pl.ptime_ms, "ethernet", vlan=pl.vlan, ipv6=pl.ipv6, srtp=pl.srtp)
    fit = calls_fitting(min(circuit.down_mbps, circuit.up_mbps), pc, 0.0, 0.0)
    return max(fit, pl.calls)


def load_circuit_key(profile, circuit) -> bytes | None:
    from harness.binding import circuit_key
    return circuit_key(profile, circuit)


def config_for(profile, circuit, *, quick: bool = False, preset: str | None = None,
               target: str | None = None, max_calls: int | None = None) -> CapacityConfig:
    th = profile.thresholds
    return CapacityConfig(
        target=target or circuit.reflector,
        codec=profile.planned.codec, ptime_ms=profile.planned.ptime_ms,
        max_calls=max_calls, planned_calls=profile.planned.calls,
        contract_calls=contract_calls(profile, circuit),
        preset=preset or ("quick" if quick else "default"),
        thresholds=Thresholds(mos_min=th.mos_min, loss_pct=th.loss_pct, jitter_ms=th.jitter_ms),
        jitter_buffer_ms=th.jitter_buffer_ms,
        key=load_circuit_key(profile, circuit),
        source=circuit.source, interface=circuit.interface)


def suite_ceiling(profile, circuit) -> int:
    """The suite's ramp stops at twice the planned calls (or the contract, if lower):
    the verdict only needs "carries the plan, with room", and a scheduled check
    every few minutes must not drive a live circuit into loss each time.
    ``cutover probe capacity`` has no such cap."""
    return min(contract_calls(profile, circuit), SUITE_CEILING_FACTOR * profile.planned.calls)


def measure(profile, circuit, *, quick: bool, progress=None, stop=None) -> dict:
    from probes import capacity
    cfg = config_for(profile, circuit, quick=quick, max_calls=suite_ceiling(profile, circuit))
    return capacity.run(cfg, progress, stop).to_dict()


def evaluate(profile, circuit, raw: dict) -> list[Check]:
    planned = profile.planned.calls
    codec = str(raw.get("codec") or profile.planned.codec).upper().replace("G", "G.", 1)
    cid = "capacity.calls"
    if not raw.get("measured"):
        bad = not_measured(NAME, raw)
        why = (bad[0].cause if bad else None) or NETWORK     # an error check always has its cause
        cause = "; ".join(raw.get("errors") or []) or "capacity not measured"
        return [error(cid, cause, required=planned, unit="calls", cause=why)]
    got = int(raw.get("max_calls") or 0)
    limit = raw.get("limit")
    first_fail = raw.get("first_fail_calls")
    if got < planned and limit == "sender":
        return [error(cid, f"the measuring machine could not emulate more than {got} calls "
                           f"({planned} planned): the path's capacity is unknown, not low",
                      required=planned, unit="calls")]
    if got < planned and raw.get("partial"):
        cause = "; ".join(raw.get("errors") or []) or "ramp did not finish"
        return [error(cid, f"capacity run did not finish below the planned {planned} calls: {cause}",
                      required=planned, unit="calls", cause=probe_cause(raw))]
    if limit == "max_calls" and got >= planned:
        # The ramp reached its ceiling without a failing step: the capacity is
        # at least `got`, not "got, close to the plan". A warn band here would
        # warn on every run of a small circuit whose ceiling is the plan itself.
        return [Check(cid, "pass", got, planned, "calls", got - planned,
                      f"capacity at least {got} calls >= {planned} planned ({codec}; the ramp stopped "
                      "at its ceiling with every step passing)")]
    if limit == "max_calls":
        context = f"planned ({codec}; the ramp stopped at its ceiling, so at least {got})"
    elif limit and first_fail:
        context = f"planned ({codec}; {limit} limit at {first_fail} calls)"
    else:
        context = f"planned ({codec})"
    return [at_least(cid, "capacity", got, planned, "calls", context=context)]
