"""Suite step: idle round-trip time and loss to the circuit's far end.

Checks (thresholds from the profile):

- ``latency.rtt``: RTT p95 <= 2 x ``one_way_delay_ms`` (no synchronised
  clocks: one-way delay is taken as RTT/2, docs/contract.md §4). p95, not the
  mean: a call suffers from the slow tail.
- ``latency.loss``: loss <= ``loss_pct``.

The target is the circuit's ``ping:`` host, else its reflector's host. The
probe uses ICMP where permitted and says which fallback it used otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.suite import not_measured, partial_check
from harness.verdicts import Check, at_most

if TYPE_CHECKING:
    import threading

    from harness.profile import Circuit, Profile
    from probes.events import ProgressCallback

NAME = "latency"
PROBE = "probes.latency"

QUICK = {"count": 10, "interval_s": 0.1}
FULL = {"count": 50, "interval_s": 0.2}


def target(circuit: Circuit) -> str | None:
    return circuit.ping_target


def applies(profile: Profile, circuit: Circuit) -> bool:
    return target(circuit) is not None


def measure(profile: Profile, circuit: Circuit, *, quick: bool, progress: ProgressCallback | None = None,
            stop: threading.Event | None = None) -> dict:
    from harness.binding import bind
    from probes import latency   # late: a build without the probe still loads the suite
    knobs = QUICK if quick else FULL
    # where ICMP is not permitted, the UDP fallback speaks STAMP to the reflector itself (port, key)
    cfg = bind("latency", profile, circuit, count=knobs["count"], interval_s=knobs["interval_s"])
    return latency.run(cfg, progress, stop).to_dict()


def _num(v: object) -> float | None:
    if isinstance(v, dict):
        v = v.get("total")
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def evaluate(profile: Profile, circuit: Circuit, raw: dict) -> list[Check]:
    bad = not_measured(NAME, raw)
    if bad:
        return bad
    th = profile.thresholds
    rtt = raw.get("rtt_ms") or {}
    rtt_p95 = _num(rtt.get("p95"))
    if rtt_p95 is None:
        rtt_p95 = _num(rtt.get("max"))
    limit = 2 * th.one_way_delay_ms
    how = f" ({raw['method']})" if raw.get("method") else ""
    checks = [
        at_most("latency.rtt", f"RTT p95{how}", rtt_p95, limit, "ms",
                context=f"limit (2 x {th.one_way_delay_ms:g} ms one-way)"),
        at_most("latency.loss", "packet loss", _num(raw.get("loss_pct")), th.loss_pct, "%", context="limit"),
    ]
    return checks + partial_check(NAME, raw)
