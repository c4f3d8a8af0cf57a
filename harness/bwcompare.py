"""Bandwidth measured vs contracted and vs needed for the planned calls. Pure.

Kept in harness/ because it reads the profile and planning math; probes never
import harness. Used by `cutover probe bandwidth --profile P --circuit C` and
available to the readiness suite.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.planning import calls_fitting, plan_profile


@dataclass
class DirectionComparison:
    direction: str                 # "down" | "up"
    measured_mbps: float | None
    contract_mbps: float
    pct_of_contract: float | None
    required_mbps: float
    covers_required: bool | None
    calls_supported: int | None    # planned-codec calls the measured rate carries beside video/other
    text: str


_WORD = {"down": "downstream", "up": "upstream"}


def compare_direction(direction: str, measured_mbps: float | None, contract_mbps: float,
                      required_mbps: float, per_call_kbps: float, fixed_mbps: float,
                      headroom_pct: float, calls_planned: int, codec: str) -> DirectionComparison:
    word = _WORD[direction]
    if measured_mbps is None:
        return DirectionComparison(direction, None, contract_mbps, None, required_mbps, None, None,
                                   f"{word} not measured (contract {contract_mbps:g} Mbit/s, "
                                   f"{required_mbps:.1f} Mbit/s needed)")
    pct = measured_mbps * 100 / contract_mbps
    covers = measured_mbps >= required_mbps - 1e-9
    calls = calls_fitting(measured_mbps, per_call_kbps, fixed_mbps, headroom_pct)
    verdict = "covers" if covers else "is below"
    text = (f"{word} {measured_mbps:.1f} Mbit/s: {pct:.0f} % of the {contract_mbps:g} Mbit/s promised "
            f"{word}; {verdict} the {required_mbps:.1f} Mbit/s needed for {calls_planned} "
            f"{codec.upper()} calls (carries {calls})")
    return DirectionComparison(direction, measured_mbps, contract_mbps, pct, required_mbps, covers,
                               calls, text)


def compare(result: dict, profile, circuit_name: str) -> dict:
    """Comparison block for a bandwidth result dict and one profile circuit."""
    circuit = profile.circuit(circuit_name)
    pl = plan_profile(profile)
    fixed = pl.video_mbps + pl.other_mbps
    out = {"circuit": circuit.name, "codec": pl.codec, "planned_calls": pl.calls,
           "per_call_kbps": pl.per_call_kbps, "directions": {}}
    lines = []
    for d, contract, required in (("down", circuit.down_mbps, pl.required_down_mbps),
                                  ("up", circuit.up_mbps, pl.required_up_mbps)):
        c = compare_direction(d, result.get(f"{d}_mbps"), contract, required, pl.per_call_kbps, fixed,
                              pl.headroom_pct, pl.calls, pl.codec)
        out["directions"][d] = c.__dict__
        lines.append(c.text)
    out["summary"] = lines
    return out
