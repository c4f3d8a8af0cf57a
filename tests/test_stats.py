"""probes/voice/stats.py against hand-computed small sequences (and one statistical
check of the theory the accuracy tests rely on)."""

from __future__ import annotations

import math
import random

import pytest

from probes.voice import stats


def test_percentile_interpolates_between_ranks():
    assert stats.percentile([1, 2, 3, 4], 50) == 2.5
    assert stats.percentile([1, 2, 3, 4], 0) == 1
    assert stats.percentile([1, 2, 3, 4], 100) == 4
    # rank = 0.95 * 9 = 8.55 -> 9 + 0.55 * (10 - 9)
    assert stats.percentile(list(range(1, 11)), 95) == pytest.approx(9.55)
    assert stats.percentile([7], 99) == 7
    assert math.isnan(stats.percentile([], 50))


def test_summary_keys_and_values():
    s = stats.summary([3, 1, 2, 10])
    assert s["min"] == 1 and s["max"] == 10 and s["mean"] == 4.0 and s["p50"] == 2.5
    assert set(s) == {"min", "mean", "p50", "p95", "p99", "max"}
    assert stats.summary([]) == {}
    assert set(stats.summary([1.0], stats.IPDV_KEYS)) == {"mean", "p50", "p95", "max"}


def test_rfc3550_jitter_by_hand():
    # transits 0, 10, 0, 10 ms: |D| = 10 each time
    # J1 = 10/16 = 0.625; J2 = 0.625 + (10 - 0.625)/16 = 1.2109375; J3 = 1.2109375 + 8.7890625/16
    assert stats.rfc3550_jitter([0, 10, 0, 10]) == pytest.approx(1.76025390625)
    assert stats.rfc3550_jitter([5, 5, 5]) == 0.0
    assert stats.rfc3550_jitter([3]) == 0.0
    # a constant clock offset cancels
    assert stats.rfc3550_jitter([1000, 1010, 1000, 1010]) == pytest.approx(1.76025390625)


def test_abs_ipdv_skips_pairs_with_a_loss():
    assert stats.abs_ipdv([1, 3, None, 4, 2]) == [2, 2]
    assert stats.abs_ipdv([None, None]) == []
    assert stats.abs_ipdv([10.0, 7.5, 7.5]) == [2.5, 0.0]


def test_loss_percentages():
    d = stats.loss_pcts(100, 98, 96)
    assert d["up"] == 2.0
    assert d["down"] == pytest.approx(100 * 2 / 98)
    assert d["total"] == 4.0
    nosplit = stats.loss_pcts(100, None, 90)
    assert math.isnan(nosplit["up"]) and nosplit["total"] == 10.0


def test_late_count_relative_to_smallest_delay():
    # relative delays 0, 2, 65, 61 against a 60 ms buffer: two are late
    assert stats.late_count([10, 12, 75, 71], 60) == 2
    assert stats.late_count([10, 70], 60) == 0          # exactly the buffer is in time
    assert stats.late_count([], 60) == 0


def test_reorder_count():
    assert stats.reorder_count([1, 2, 4, 3, 5]) == 1
    assert stats.reorder_count([3, 1, 2]) == 2
    assert stats.reorder_count([1, 2, 3]) == 0


def test_mode():
    assert stats.mode([46, 46, 0]) == 46
    assert stats.mode([1, 2]) == 1
    assert stats.mode([]) is None


def test_uniform_delay_theory_used_by_the_accuracy_tests():
    # independent delays uniform on [30, 50] ms: E|d_i - d_(i-1)| = (b - a)/3 = 6.67 ms,
    # and the RFC 3550 estimator fluctuates around the same value
    rng = random.Random(7)
    delays = [rng.uniform(30, 50) for _ in range(20000)]
    ipdv = stats.abs_ipdv(delays)
    assert sum(ipdv) / len(ipdv) == pytest.approx(20 / 3, abs=0.15)
    js = []
    for start in range(0, 20000, 2000):
        js.append(stats.rfc3550_jitter(delays[start:start + 2000]))
    assert sum(js) / len(js) == pytest.approx(20 / 3, abs=0.6)


def test_abs_ipdv_indexed_matches_the_per_sequence_form():
    # received seq 0, 1, 3, 4 (2 lost): pairs (0,1) and (3,4) only
    assert stats.abs_ipdv_indexed([0, 1, 3, 4], [1.0, 3.0, 4.0, 2.0]) == [2.0, 2.0]
    assert stats.abs_ipdv_indexed([0, 1, 3, 4], [1.0, 3.0, 4.0, 2.0]) == stats.abs_ipdv([1.0, 3.0, None, 4.0, 2.0])
    assert stats.abs_ipdv_indexed([5], [1.0]) == []
