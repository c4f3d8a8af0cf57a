"""Suite step: the path to the circuit's far end (traceroute, MTU, DSCP).

Target: the circuit's ``ping:`` host, else its reflector's host. ICMP echo
probes marked EF, a few rounds, bounded to 30 s (quick) / 60 s.

Checks:

- ``path.dscp``: EF survived every hop that quoted it back; ``warn`` naming
  the first hop that re-marked or bleached it (calls work on an idle link but
  lose priority when it is busy; ``stream.dscp`` measures the end result).
- ``path.mtu``: path MTU >= 1300 bytes: RFC 3261 §18.1.1 sends SIP over UDP
  only below MTU - 200, so a smaller path MTU fragments ordinary INVITEs.
- ``path.reached``: ``warn`` when the destination did not answer the probes
  (it may simply filter them; the hops are still shown).
Not root (raw sockets needed): one ``warn`` check saying so, not an error,
so a non-root run is not NO-GO for a measurement it could not attempt.
"""

from __future__ import annotations

from harness.suite import not_measured, partial_check
from harness.verdicts import GAP, Check, at_least, expect

NAME = "path"
PROBE = "probes.path"

SIP_UDP_MIN_MTU = 1300


def target(circuit) -> str | None:
    return circuit.ping_target


def applies(profile, circuit) -> bool:
    return target(circuit) is not None


def measure(profile, circuit, *, quick: bool, progress=None, stop=None) -> dict:
    from probes import path
    host = target(circuit)
    assert host is not None     # the runner measures only where applies()
    cfg = path.PathConfig(target=host, proto="icmp", rounds=2 if quick else 3, dscp="ef",
                          max_wall_s=30.0 if quick else 60.0, source=circuit.source,
                          interface=circuit.interface)
    return path.run(cfg, progress, stop).to_dict()


def evaluate(profile, circuit, raw: dict) -> list[Check]:
    errors = " ".join(str(e) for e in raw.get("errors") or [])
    if raw.get("measured") is False and "needs root" in errors:
        return [Check("path.trace", "warn", None, "root", "", None,
                      "path not traced: needs root (raw sockets); run cutover check as root", GAP)]
    bad = not_measured(NAME, raw)
    if bad:
        return bad
    checks: list[Check] = []
    ch = raw.get("dscp_changed_at")
    quoted = [h for h in raw.get("hops") or [] if h.get("dscp") is not None]
    if ch:
        checks.append(expect("path.dscp", False, ch.get("dscp_seen"), raw.get("dscp_sent", 46),
                             f"DSCP {ch.get('dscp_sent')} re-marked to {ch.get('dscp_seen')} at hop "
                             f"{ch.get('ttl')} ({ch.get('address')})", bad_status="warn"))
    elif quoted:
        checks.append(expect("path.dscp", True, raw.get("dscp_sent", 46), raw.get("dscp_sent", 46),
                             f"DSCP {raw.get('dscp_sent', 46)} intact on all {len(quoted)} hops that quoted it"))
    if raw.get("path_mtu") is not None:
        where = f" (limited at {raw['mtu_limited_at']})" if raw.get("mtu_limited_at") else ""
        checks.append(at_least("path.mtu", f"path MTU{where}", raw["path_mtu"], SIP_UDP_MIN_MTU, "bytes",
                               context="for SIP over UDP without fragmentation", warn_band_pct=0))
    if not raw.get("reached"):
        checks.append(expect("path.reached", False, False, True,
                             f"{raw.get('address') or raw.get('target')} did not answer the trace "
                             f"({len(raw.get('hops') or [])} hops seen)", bad_status="warn"))
    return checks + partial_check(NAME, raw)
