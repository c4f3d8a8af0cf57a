"""Suite step: throughput down and up against the circuit's bandwidth
service (the reflector's TCP port), and latency under load.

Checks:

- ``bandwidth.down`` / ``bandwidth.up``: measured throughput >= what the plan
  needs (``harness.planning``: calls x per-call rate + video + other traffic,
  with headroom) -> fail below it; 10 % warn band above it.
- ``bandwidth.down_contract`` / ``bandwidth.up_contract``: measured >= 80 % of
  the contract, else ``warn`` (never fail: the plan, not the brochure,
  decides whether calls work; but the gap is worth a call to the provider).
  Note: a single TCP test from one machine can understate a fast circuit.
- ``bandwidth.loaded_rtt``: RTT p50 under load (worse direction) <= 2 x
  ``one_way_delay_ms``.
- ``bandwidth.latency_increase``: the rise of RTT p50 under load <= the
  de-jitter buffer (``jitter_buffer_ms``): a queue that grows by more than the
  buffer holds turns into late packets, i.e. loss, for every call while the
  link is busy (bufferbloat).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.planning import plan_profile
from harness.suite import codec_label, not_measured, partial_check
from harness.verdicts import NETWORK, Check, at_least, at_most, fmt

if TYPE_CHECKING:
    import threading

    from harness.profile import Circuit, Profile
    from probes.events import ProgressCallback

NAME = "bandwidth"
PROBE = "probes.bandwidth"

QUICK = {"duration_s": 1.5, "streams": 2, "omit_s": 0.5, "idle_s": 0.5}
FULL = {"duration_s": 8.0, "streams": 4, "omit_s": 1.0, "idle_s": 2.0}
CONTRACT_WARN_FRACTION = 0.8


def applies(profile: Profile, circuit: Circuit) -> bool:
    return bool(circuit.reflector)


def measure(profile: Profile, circuit: Circuit, *, quick: bool, progress: ProgressCallback | None = None,
            stop: threading.Event | None = None) -> dict:
    from harness.binding import bind
    from probes import bandwidth
    cfg = bind("bandwidth", profile, circuit, backend="reflector", **(QUICK if quick else FULL))
    return bandwidth.run(cfg, progress, stop).to_dict()


def _num(v: object) -> float | None:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def plan_context(profile: Profile) -> str:
    """'needed for 20 G.711 calls, 1 video call and 5 Mbit/s other traffic (+20 %)'."""
    pl = profile.planned
    parts = [f"{pl.calls} {codec_label(pl.codec)} calls"]
    if pl.video_calls:
        parts.append(f"{pl.video_calls} video call{'s' if pl.video_calls != 1 else ''}")
    if pl.other_mbps:
        parts.append(f"{fmt(float(pl.other_mbps))} Mbit/s other traffic")
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    if pl.headroom_pct:
        text += f" (+{fmt(float(pl.headroom_pct))} % headroom)"
    return "needed for " + text


def _contract(id_: str, label: str, measured: float | None, contract_mbps: float) -> Check | None:
    if measured is None:
        return None
    floor = CONTRACT_WARN_FRACTION * contract_mbps
    pct = f"{CONTRACT_WARN_FRACTION * 100:g} %"
    if measured >= floor:
        return Check(id_, "pass", measured, floor, "Mbit/s", measured - floor,
                     f"{label} {fmt(measured)} Mbit/s >= {pct} of the {fmt(contract_mbps)} Mbit/s contract")
    return Check(id_, "warn", measured, floor, "Mbit/s", measured - floor,
                 f"{label} {fmt(measured)} Mbit/s < {pct} of the {fmt(contract_mbps)} Mbit/s contract", NETWORK)


def evaluate(profile: Profile, circuit: Circuit, raw: dict) -> list[Check]:
    bad = not_measured(NAME, raw)
    if bad:
        return bad
    th = profile.thresholds
    plan = plan_profile(profile)
    need = plan_context(profile)
    down, up = _num(raw.get("down_mbps")), _num(raw.get("up_mbps"))
    out = [at_least("bandwidth.down", "downstream", down, round(plan.required_down_mbps, 3), "Mbit/s",
                    context=need),
           at_least("bandwidth.up", "upstream", up, round(plan.required_up_mbps, 3), "Mbit/s", context=need)]
    for c in (_contract("bandwidth.down_contract", "downstream", down, circuit.down_mbps),
              _contract("bandwidth.up_contract", "upstream", up, circuit.up_mbps)):
        if c is not None:
            out.append(c)
    lat = raw.get("latency_ms") or {}
    loaded = [v for v in (_num(lat.get("down_load_p50")), _num(lat.get("up_load_p50"))) if v is not None]
    if loaded:
        out.append(at_most("bandwidth.loaded_rtt", "RTT p50 under load", max(loaded),
                           2 * th.one_way_delay_ms, "ms",
                           context=f"limit (2 x {th.one_way_delay_ms:g} ms one-way)"))
    inc = _num(lat.get("increase_p50"))
    if inc is not None:
        out.append(at_most("bandwidth.latency_increase", "latency rise under load", inc,
                           th.jitter_buffer_ms, "ms", context="the de-jitter buffer absorbs"))
    return out + partial_check(NAME, raw)
