"""Suite step: the provider's SBC answers SIP OPTIONS, and SIP arrives unmangled.

Checks:

- ``sip.reachable``: a 2xx answer to OPTIONS (the transport from the URI or
  RFC 3263 DNS). Another final response (403, 404, 503...) fails with the
  code and reason: the SBC is there but refuses us (often an IP allow-list
  that does not yet include the new circuit's address). No answer at all is
  an error check with the cause (timeout, refused, TLS certificate).
- ``sip.alg``: ``warn`` when our Via/Contact/From came back rewritten (a SIP
  ALG on the path: a classic cause of one-way audio and dropped
  registrations; disable it on the router). A warning, not a failure, because
  this is evidence of header editing, not a measured call failure.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.suite import not_measured, partial_check
from harness.verdicts import Check, expect

if TYPE_CHECKING:
    import threading

    from harness.profile import Circuit, Profile
    from probes.events import ProgressCallback

NAME = "sip"
PROBE = "probes.sip"

QUICK_TIMEOUT_S = 4.0
FULL_TIMEOUT_S = 8.0


def applies(profile: Profile, circuit: Circuit) -> bool:
    return bool(circuit.sip)


def measure(profile: Profile, circuit: Circuit, *, quick: bool, progress: ProgressCallback | None = None,
            stop: threading.Event | None = None) -> dict:
    from probes import sip
    assert circuit.sip is not None     # the runner measures only where applies()
    cfg = sip.SipConfig(uri=circuit.sip, timeout_s=QUICK_TIMEOUT_S if quick else FULL_TIMEOUT_S,
                        source=circuit.source, interface=circuit.interface)
    try:
        return sip.run(cfg, progress, stop).to_dict()
    except ValueError as exc:    # the profile only checks the scheme; the probe parses the rest
        why = f"SIP URI in the profile: {exc}"     # ours to fix: never the carrier's
        return {"probe": "sip", "target": circuit.sip, "measured": False, "partial": False,
                "errors": [why], "gaps": [why]}


def evaluate(profile: Profile, circuit: Circuit, raw: dict) -> list[Check]:
    bad = not_measured(NAME, raw)
    if bad:
        return bad
    code, reason = raw.get("status_code"), raw.get("reason") or ""
    transport = (raw.get("transport") or "").upper()
    rtt = raw.get("rtt_ms")
    rtt_text = f" in {rtt:.0f} ms" if isinstance(rtt, (int, float)) else ""
    ok = isinstance(code, int) and 200 <= code < 300
    where = f"{raw.get('target')} ({raw.get('address')}, {transport})"
    checks = [expect("sip.reachable", ok, code, "2xx",
                     f"SBC {where} answered OPTIONS with {code} {reason}{rtt_text}" if ok else
                     f"SBC {where} refused OPTIONS: {code} {reason} (reachable, but not accepting us)")]
    if raw.get("alg_suspected") is not None:
        alg = bool(raw.get("alg_suspected"))
        evidence = "; ".join(raw.get("alg_evidence") or [])
        checks.append(expect("sip.alg", not alg, "rewritten" if alg else "intact", "intact",
                             f"SIP ALG suspected: {evidence}" if alg else
                             "SIP headers came back as sent (no ALG seen)", bad_status="warn"))
    return checks + partial_check(NAME, raw)
