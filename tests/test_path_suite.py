"""The `path` suite step: evaluate() on probe JSON (pure), and the not-root case."""

from __future__ import annotations

from harness.suite import path as step
from tests.test_sip_suite import profile_with_sip


def by_id(checks):
    return {c.id: c for c in checks}


HOPS = [{"ttl": 1, "address": "10.0.0.1", "rtt_ms": 1.0, "loss_pct": 0, "dscp": 46},
        {"ttl": 2, "address": "10.0.1.1", "rtt_ms": 2.0, "loss_pct": 0, "dscp": 0},
        {"ttl": 3, "address": "10.0.2.2", "rtt_ms": 3.0, "loss_pct": 0, "dscp": None}]


def test_applies_with_ping_or_reflector(tmp_path):
    p, c = profile_with_sip(tmp_path, None)
    assert step.applies(p, c) and step.target(c) == "127.0.0.1"


def test_evaluate_remarked_dscp_and_small_mtu(tmp_path):
    p, c = profile_with_sip(tmp_path, None)
    raw = {"measured": True, "reached": True, "hops": HOPS, "dscp_sent": 46, "path_mtu": 1280,
           "mtu_limited_at": "10.0.1.1",
           "dscp_changed_at": {"ttl": 2, "address": "10.0.1.1", "dscp_sent": 46, "dscp_seen": 0,
                               "last_intact_ttl": 1}}
    ch = by_id(step.evaluate(p, c, raw))
    assert ch["path.dscp"].status == "warn" and "at hop 2 (10.0.1.1)" in ch["path.dscp"].reason
    assert ch["path.mtu"].status == "fail" and ch["path.mtu"].margin == -20
    assert "path.reached" not in ch


def test_evaluate_clean_path(tmp_path):
    p, c = profile_with_sip(tmp_path, None)
    hops = [dict(h, dscp=46 if h["dscp"] is not None else None) for h in HOPS]
    ch = by_id(step.evaluate(p, c, {"measured": True, "reached": True, "hops": hops, "dscp_sent": 46,
                                    "path_mtu": 1500, "dscp_changed_at": None}))
    assert {k: v.status for k, v in ch.items()} == {"path.dscp": "pass", "path.mtu": "pass"}


def test_not_root_is_a_warning_not_an_error(tmp_path, monkeypatch):
    from probes import path
    monkeypatch.setattr(path, "raw_sockets_allowed", lambda: False)
    p, c = profile_with_sip(tmp_path, None)
    raw = step.measure(p, c, quick=True)
    checks = step.evaluate(p, c, raw)
    assert [(x.id, x.status) for x in checks] == [("path.trace", "warn")]
