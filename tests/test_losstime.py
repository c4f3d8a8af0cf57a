"""Loss in time (probes/voice/losstime.py), every figure against a hand calculation."""

from __future__ import annotations

import math
import random

import pytest

from probes.voice import losstime as lt

R, L = False, True


def test_sixty_seconds_with_one_two_second_silence():
    # issue #17: 60 s at 20 ms = 3000 packets; 2 s silent = packets 1000..1099 lost
    pat = [R] * 3000
    for k in range(1000, 1100):
        pat[k] = L
    assert 100 * sum(pat) / len(pat) == pytest.approx(3.333, abs=0.001)       # average 3.3 %
    w15 = lt.window_packets(15_000, 20, 1)
    assert w15 == 750
    ones = [1] * 3000
    assert 100 * lt.worst_ratio([int(x) for x in pat], ones, w15) == pytest.approx(100 * 100 / 750)  # 13.3 %
    assert 100 * lt.worst_ratio([int(x) for x in pat], ones, lt.window_packets(200, 20, 1)) == 100.0
    assert lt.max_gap_ms([pat], 20) == 2000.0
    (it,) = lt.interruptions([pat], 20)
    assert (it.start_j, it.end_j, it.duration_ms, it.call_ids) == (1000, 1099, 2000.0, {0})


def test_runs_and_max_gap():
    assert lt.runs([L, L, R, L, R, R, L, L, L]) == [(0, 2), (3, 1), (6, 3)]
    assert lt.runs([R, R]) == []
    assert lt.max_gap_ms([[R, L, L, R], [L, L, L, R]], 30) == 90.0
    assert lt.max_gap_ms([[R, R]], 20) == 0.0


def test_burst_ratio_by_hand():
    # R R L L R R R L R: received packets with a successor: 0 1 4 5 6 (5), next lost: 1, 6 (2);
    # lost packets with a successor: 2 3 7 (3), next received: 3, 7 (2):
    # p = 2/5, q = 2/3, BurstR = 1 / (0.4 + 0.6667) = 0.9375
    assert lt.burst_ratio([[R, R, L, L, R, R, R, L, R]]) == pytest.approx(1 / (2 / 5 + 2 / 3))
    # transitions are counted per call and summed: two calls R L R and L R R;
    # call 1: R->L (good, to bad), L->R (bad, to good); call 2: L->R (bad, to good), R->R (good)
    # good = 2, good_bad = 1, bad = 2, bad_good = 2: BurstR = 1 / (0.5 + 1) = 0.667
    assert lt.burst_ratio([[R, L, R], [L, R, R]]) == pytest.approx(1 / 1.5)
    assert lt.burst_ratio([[R] * 10]) is None          # no loss
    assert lt.burst_ratio([[L] * 10]) is None          # nothing but loss


def test_burst_ratio_of_a_gilbert_elliott_chain_and_of_random_loss():
    # the estimator against the chain's known value, with the band written out:
    # p_hat ~ Binomial(n_good, p) / n_good, q_hat ~ Binomial(n_bad, r) / n_bad, and by the
    # delta method sd(BurstR) = BurstR^2 * sqrt(p(1-p)/n_good + r(1-r)/n_bad); 4 sd either side
    rng = random.Random(17)
    p, r, n = 0.02, 0.25, 200_000
    pat, bad = [], False
    for _ in range(n):
        bad = (rng.random() >= r) if bad else (rng.random() < p)
        pat.append(bad)
    br = 1 / (p + r)
    n_bad = n * p / (p + r)
    n_good = n - n_bad
    sd = br ** 2 * math.sqrt(p * (1 - p) / n_good + r * (1 - r) / n_bad)
    assert abs(lt.burst_ratio([pat]) - br) < 4 * sd
    # random loss of the same mean: BurstR 1 (q = 1 - p), same band with r = 1 - mean
    mean = p / (p + r)
    pat = [rng.random() < mean for _ in range(n)]
    sd = math.sqrt(mean * (1 - mean) / (n * (1 - mean)) + (1 - mean) * mean / (n * mean))
    assert abs(lt.burst_ratio([pat]) - 1.0) < 4 * sd


def test_rfc3611_bursts_and_gaps_by_hand():
    # 20 received, burst L L R L, 20 received, a lone loss, 20 received (65 packets, 20 ms):
    # one burst of 4 packets with 3 lost (75 %, 80 ms); the lone loss has >= 16 received on
    # both sides: it is in the gap. Gap packets 61 with 1 lost (1.64 %), two gaps (before the
    # burst, after it): mean 61 x 20 / 2 = 610 ms
    pat = [R] * 20 + [L, L, R, L] + [R] * 20 + [L] + [R] * 20
    m = lt.rfc3611([pat], 20)
    assert m == {"gmin": 16, "bursts": 1, "burst_density_pct": 75.0, "burst_duration_ms": 80.0,
                 "gap_density_pct": pytest.approx(100 / 61), "gap_duration_ms": 610.0}
    # Gmin: 15 received between two losses keep them in one burst, 16 separate them
    assert lt.rfc3611([[R] * 20 + [L] + [R] * 15 + [L] + [R] * 20], 20)["bursts"] == 1
    m16 = lt.rfc3611([[R] * 20 + [L] + [R] * 16 + [L] + [R] * 20], 20)
    assert m16["bursts"] == 0 and m16["burst_density_pct"] == 0.0
    assert m16["gap_density_pct"] == pytest.approx(100 * 2 / 58) and m16["gap_duration_ms"] == 58 * 20
    # a 2 s silence is one burst of 100 packets, all lost
    m = lt.rfc3611([[R] * 1000 + [L] * 100 + [R] * 1900], 20)
    assert (m["bursts"], m["burst_density_pct"], m["burst_duration_ms"]) == (1, 100.0, 2000.0)
    assert m["gap_duration_ms"] == 2900 * 20 / 2


def test_worst_ratio_windows_and_minimum_denominator():
    num = [0, 1, 1, 0, 0, 0]
    den = [1, 1, 1, 1, 1, 1]
    assert lt.worst_ratio(num, den, 2) == 1.0
    assert lt.worst_ratio(num, den, 3) == pytest.approx(2 / 3)
    assert lt.worst_ratio(num, den, 100) == pytest.approx(2 / 6)     # shorter run: one window
    # jitter-style: sums over counts; a window with too few samples is skipped
    assert lt.worst_ratio([9.0, 0, 1.0, 1.0], [1, 0, 1, 1], 2, min_den=2) == 1.0
    assert lt.worst_ratio([], [], 5) is None
    assert lt.window_packets(15_000, 20, 10) == 7500 and lt.window_packets(200, 20, 1) == 10


def test_interruptions_merge_across_calls_and_ignore_short_holes():
    # two calls silent for packets 50..59 (200 ms): one interruption; call 0 also loses
    # 3 packets (60 ms, concealed): not an interruption
    a = [R] * 100
    b = [R] * 100
    for k in range(50, 60):
        a[k] = b[k] = L
    for k in (10, 11, 12):
        a[k] = L
    (it,) = lt.interruptions([a, b], 20)
    assert (it.start_j, it.end_j, it.duration_ms, it.call_ids) == (100, 119, 200.0, {0, 1})
    assert lt.interruptions([[R, L, R]], 20) == []


def test_reached_pattern_from_the_reflectors_numbers():
    T, F = True, False
    # replies to 0 1 3 numbered 0 1 2: the reflector numbered nothing between 1 and 3,
    # so packet 2 never reached it (lost on the way there)
    assert lt.reached_pattern([0, 1, 3], [0, 1, 2], 4) == ([T, T, F, T], [])
    # replies to 0 and 2 numbered 0 and 2: number 1 has no reply: packet 1 reached it, its reply lost
    assert lt.reached_pattern([0, 2], [0, 2], 3) == ([T, T, T], [])
    # reordering on the way there: 2 arrived before 1 (numbers 0 2 1); number 3 has no reply:
    # it reached the reflector after the packet numbered 2 (packet 1), and the first missing
    # packet after packet 1 is 3, so 3 was lost on the way back; 4 numbered 4
    assert lt.reached_pattern([0, 1, 2, 4], [0, 2, 1, 4], 5) == ([T, T, T, T, T], [])
    # more numbered than could have been sent: not a per-session count
    assert lt.reached_pattern([0, 1], [0, 5], 2) is None
    # the same number twice is no session count either
    assert lt.reached_pattern(list(range(10)), [0] * 10, 10) is None
    # tail probe: the reflector counted 4 packets, we got replies to 0 and 1 of 5 sent
    assert lt.reached_pattern([0, 1], [0, 1], 5, tail=4) == ([T, T, T, T, F], [])
    # without the tail, the packets after the last reply count as lost on the way there
    assert lt.reached_pattern([0, 1], [0, 1], 5) == ([T, T, F, F, F], [])


def test_reached_pattern_across_a_far_end_restart():
    T, F = True, False
    # 30 packets numbered 0..29, silence for 30..34, then a new session: 35..39 numbered 0..4
    # (a drop of 29 > REORDER_SLACK): 30..34 never reached the far end
    got = list(range(30)) + list(range(35, 40))
    rs = list(range(30)) + list(range(5))
    reached, restarts = lt.reached_pattern(got, rs, 40)
    assert restarts == [35] and reached == [T] * 30 + [F] * 5 + [T] * 5
    # the new session numbered one packet before our first reply in it (35 is number 1): the
    # last missing packet before it (34) reached it and its reply was lost
    reached, restarts = lt.reached_pattern(got, list(range(30)) + list(range(1, 6)), 40)
    assert restarts == [35] and reached == [T] * 30 + [F] * 4 + [T] * 6
    # a drop within REORDER_SLACK is reordering, not a restart
    assert lt.reached_pattern([0, 1, 2, 3], [0, 3, 1, 2], 4) == ([T] * 4, [])


def test_loaded_latency_phase_reports_loss_in_time():
    # the bandwidth probe's RTT sampler under load: 50 probes at 20 ms, 5 in a row lost
    from probes.loadlatency import PhaseStats
    lost = [False] * 50
    for k in range(20, 25):
        lost[k] = True
    ph = PhaseStats(sent=50, rtts_ms=[10.0] * 45, lost=lost, interval_ms=20.0)
    s = ph.summary()
    assert s["loss_pct"] == 10.0
    assert s["max_gap_ms"] == 100.0                                   # 5 x 20 ms
    assert s["worst_window"]["200ms"]["loss_pct"] == 50.0             # 5 of any 10 consecutive
    assert s["worst_window"]["15s"]["loss_pct"] == 10.0               # 1 s phase: one window
    # one run of 5: 44 received with a successor, 1 followed by a loss; 5 lost with one, 1 by a reply
    assert s["burst_ratio"] == pytest.approx(1 / (1 / 44 + 1 / 5))
    assert "max_gap_ms" not in PhaseStats(5, [10.0] * 5).summary()    # no pattern recorded
