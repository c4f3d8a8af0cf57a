"""Check builders and verdict rules, against hand-computed margins and reasons."""

import pytest

from harness import verdicts as V
from harness.verdicts import Check


def test_at_least_fail_reason_and_margin():
    # 60 G.711 calls at 87.2 kbit/s = 5.232 Mbit/s; 4.1 measured
    c = V.at_least("bandwidth.up", "upstream", 4.1, 5.232, "Mbit/s", context="needed for 60 G.711 calls")
    assert c.status == "fail"
    assert c.margin == pytest.approx(4.1 - 5.232)
    assert c.reason == "upstream 4.1 Mbit/s < 5.23 Mbit/s needed for 60 G.711 calls"


def test_at_least_warn_band_is_ten_percent_above_requirement():
    # band: [5.232, 5.7552) warns
    assert V.at_least("x", "up", 5.232, 5.232, "Mbit/s").status == "warn"
    w = V.at_least("x", "up", 5.7, 5.232, "Mbit/s", context="needed")
    assert w.status == "warn"
    assert w.reason == "up 5.7 Mbit/s is within 10 % of 5.23 Mbit/s needed"
    p = V.at_least("x", "up", 5.76, 5.232, "Mbit/s")
    assert p.status == "pass" and p.margin == pytest.approx(0.528)


def test_at_most_pass_warn_fail():
    # jitter limit 30 ms: warn band (27, 30]
    p = V.at_most("stream.jitter_up", "upstream jitter", 26.0, 30, "ms")
    assert (p.status, p.margin) == ("pass", 4.0)
    assert p.reason == "upstream jitter 26 ms <= 30 ms limit"
    w = V.at_most("stream.jitter_up", "upstream jitter", 28.0, 30, "ms")
    assert (w.status, w.margin) == ("warn", 2.0)
    f = V.at_most("stream.jitter_up", "upstream jitter", 31.5, 30, "ms")
    assert (f.status, f.margin) == ("fail", -1.5)
    assert f.reason == "upstream jitter 31.5 ms > 30 ms limit"


def test_at_most_zero_limit_has_no_warn_band():
    assert V.at_most("loss", "loss", 0.0, 0.0, "%").status == "pass"
    assert V.at_most("loss", "loss", 0.01, 0.0, "%").status == "fail"


def test_custom_warn_band():
    # MOS: 2.5 % band -> 4.0 .. 4.1 warns
    assert V.at_least("stream.mos", "MOS", 4.05, 4.0, warn_band_pct=2.5).status == "warn"
    c = V.at_least("stream.mos", "MOS", 4.2, 4.0, warn_band_pct=2.5, context="minimum")
    assert c.status == "pass" and c.reason == "MOS 4.2 >= 4 minimum"


def test_not_measured_is_error():
    c = V.at_most("stream.rtt", "RTT", None, 300, "ms")
    assert c.status == "error" and c.margin is None and "not measured" in c.reason
    assert V.at_least("x", "y", float("nan"), 1).status == "error"


def test_unknown_status_rejected():
    with pytest.raises(ValueError):
        Check("x", "ok")


def test_verdicts():
    def ck(s):
        return Check("a.b", s)
    assert V.circuit_verdict([ck("pass"), ck("pass")]) == "GO"
    assert V.circuit_verdict([ck("pass"), ck("warn")]) == "WARN"
    assert V.circuit_verdict([ck("warn"), ck("fail")]) == "NO-GO"
    assert V.circuit_verdict([ck("pass"), ck("error")]) == "NO-GO"
    assert V.circuit_verdict([]) == "NO-GO"
    assert V.overall_verdict(["GO", "WARN"]) == "WARN"
    assert V.overall_verdict(["GO", "NO-GO", "WARN"]) == "NO-GO"
    assert V.overall_verdict(["GO", "GO"]) == "GO"
    assert V.overall_verdict([]) == "NO-GO"
    assert [c.status for c in V.blocking([ck("fail"), ck("pass"), ck("error")])] == ["error", "fail"]


def test_fmt():
    assert [V.fmt(x) for x in (4.05, 5.232, 87.2, 150.0, 1234.4, 0.05, 0.0, 3, None, "EF")] == \
        ["4.05", "5.23", "87.2", "150", "1234", "0.05", "0", "3", "n/a", "EF"]


def test_check_dict_round_trip():
    c = V.at_most("latency.rtt", "RTT p95", 12.3456, 300, "ms")
    d = c.to_dict()
    assert set(d) == {"id", "status", "measured", "required", "unit", "margin", "reason", "cause"}
    assert d["measured"] == 12.346
    assert Check.from_dict(d).status == "pass"
