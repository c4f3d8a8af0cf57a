"""The `sip` suite step: evaluate() on probe JSON, and measure() against a live responder."""

from __future__ import annotations

from harness.profile import load_profile
from harness.suite import sip as step


def profile_with_sip(tmp_path, uri: str | None):
    sip_line = f"    sip: \"{uri}\"\n" if uri else ""
    f = tmp_path / "site.yaml"
    f.write_text("site: SIP test\nplanned:\n  calls: 4\n  codec: g711\n  ptime_ms: 20\ncircuits:\n"
                 "  - name: new\n    role: new\n    down_mbps: 100\n    up_mbps: 20\n"
                 f"    ping: 127.0.0.1\n{sip_line}"
                 "cutover:\n  parallel_run_start: 2026-11-01\n")
    p = load_profile(str(f))
    return p, p.circuits[0]


def by_id(checks):
    return {c.id: c for c in checks}


def test_applies_only_with_a_sip_uri(tmp_path):
    assert step.applies(*profile_with_sip(tmp_path, "sip:127.0.0.1:5060"))
    assert not step.applies(*profile_with_sip(tmp_path, None))


def test_evaluate_2xx_refusal_alg_and_unreachable(tmp_path):
    p, c = profile_with_sip(tmp_path, "sip:sbc.example")
    base = {"target": "sip:sbc.example", "address": "192.0.2.1:5060", "transport": "udp",
            "measured": True, "partial": False, "errors": []}
    ok = by_id(step.evaluate(p, c, {**base, "status_code": 200, "reason": "OK", "rtt_ms": 21.4,
                                    "alg_suspected": False, "alg_evidence": []}))
    assert ok["sip.reachable"].status == "pass" and ok["sip.alg"].status == "pass"
    assert "answered OPTIONS with 200 OK in 21 ms" in ok["sip.reachable"].reason
    refused = by_id(step.evaluate(p, c, {**base, "status_code": 403, "reason": "Forbidden",
                                         "alg_suspected": True,
                                         "alg_evidence": ["Via sent-by came back as 203.0.113.9:40000"]}))
    assert refused["sip.reachable"].status == "fail" and "403 Forbidden" in refused["sip.reachable"].reason
    assert refused["sip.alg"].status == "warn" and "203.0.113.9:40000" in refused["sip.alg"].reason
    down = step.evaluate(p, c, {**base, "measured": False, "status_code": None,
                                "errors": ["ICMP port unreachable from 192.0.2.1"]})
    assert [(x.id, x.status) for x in down] == [("sip.measured", "error")]
    assert "port unreachable" in down[0].reason


def test_measure_against_live_responder(tmp_path):
    from tests.test_sip import UdpResponder
    with UdpResponder("alg-via") as srv:
        p, c = profile_with_sip(tmp_path, f"sip:127.0.0.1:{srv.port}")
        raw = step.measure(p, c, quick=True)
    checks = by_id(step.evaluate(p, c, raw))
    assert checks["sip.reachable"].status == "pass" and checks["sip.reachable"].measured == 200
    assert checks["sip.alg"].status == "warn"


def test_malformed_uri_in_profile_is_an_error_check(tmp_path):
    p, c = profile_with_sip(tmp_path, "sip:bad host")
    raw = step.measure(p, c, quick=True)
    checks = step.evaluate(p, c, raw)
    assert checks[0].status == "error" and "not a valid host name" in checks[0].reason
