"""The engine's own health verdict (probes.engine.analysis.sender_health), by hand."""

from __future__ import annotations

import pytest

from probes.engine.analysis import sender_health


def test_on_time_sender_is_not_limited():
    h = sender_health([0.01] * 990 + [0.5] * 10, 0, 20)
    assert h["limited"] is False and h["reason"] is None
    assert h["lateness_ms"]["p50"] == pytest.approx(0.01) and h["lateness_ms"]["max"] == 0.5


def test_p99_over_one_ms_is_limited_at_scale():
    # 100 calls at 20 ms: a send is due every 0.2 ms, so the 1 ms floor applies;
    # 2 % of 1000 sends 3 ms late: p99 = 3 ms, each late send bunches ~15 packets
    h = sender_health([0.01] * 980 + [3.0] * 20, 0, 20, calls=100)
    assert h["limited"] is True and "p99 3.00 ms > 1 ms" in h["reason"]


def test_lateness_below_the_gap_to_the_next_send_is_harmless():
    # one call at 20 ms: the next packet is 20 ms away, a 3 ms late send bunches
    # nothing and carries its real send time, so the figures are unaffected
    h = sender_health([0.01] * 980 + [3.0] * 20, 0, 20, calls=1)
    assert h["limited"] is False
    # 4 calls: gap 5 ms; 6 ms late sends do bunch packets
    h = sender_health([0.01] * 980 + [6.0] * 20, 0, 20, calls=4)
    assert h["limited"] is True and "p99 6.00 ms > 5 ms" in h["reason"]


def test_two_hiccups_in_a_short_run_are_not_a_pattern():
    # 100 sends, 2 late by 5 ms: p99 is above 1 ms but only two sends were
    h = sender_health([0.01] * 98 + [5.0, 5.0], 0, 20)
    assert h["lateness_ms"]["p99"] > 1.0 and h["limited"] is False


def test_sends_later_than_one_ptime():
    # 2 of 1000 (0.2 % > 0.1 %) more than 20 ms late, p99 still tiny
    h = sender_health([0.01] * 998 + [25.0, 30.0], 0, 20)
    assert h["limited"] is True and "2 sends more than one ptime (20 ms) late" in h["reason"]
    assert "p99" not in h["reason"]


def test_kernel_drops_always_limit():
    h = sender_health([0.01] * 10, 3, 20)
    assert h["limited"] is True and "kernel dropped 3 replies" in h["reason"]


def test_nothing_sent():
    assert sender_health([], 0, 20) == {"lateness_ms": {}, "rx_dropped": 0, "limited": False, "reason": None}
