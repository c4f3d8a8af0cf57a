"""The capacity ramp and step judgement, driven by deterministic fake networks."""

from __future__ import annotations

import threading

import pytest

from probes.ramp import PRESETS, Step, Thresholds, judge, ramp, resolution_calls

DEFAULT = PRESETS["default"]
TH = Thresholds(mos_min=4.0, loss_pct=1.0, jitter_ms=30.0)


def queue_network(capacity: int, *, sender_max: int | None = None, error_at: set[int] = frozenset()):
    """A fake path: up to ``capacity`` calls clean; beyond, loss grows with the overload
    (as a tbf queue does: excess / offered), and MOS falls with it. The sender itself
    falls behind above ``sender_max``. Records the counts tried."""
    tried: list[int] = []

    def step(n: int) -> Step:
        tried.append(n)
        if n in error_at:
            return Step(calls=n, offered_kbps=n * 87.2, error="no replies from the reflector")
        over = max(0.0, (n - capacity) / n) * 100 if n else 0.0
        s = Step(calls=n, offered_kbps=n * 87.2, loss_pct=over, jitter_ms=1.0,
                 mos=4.37 - 0.1 * over,
                 sender={"limited": sender_max is not None and n > sender_max})
        return judge(s, TH)

    return step, tried


def test_grows_then_bisects_to_the_exact_capacity():
    step, tried = queue_network(84)
    out = ramp(step, start=60, ceiling=200, preset=DEFAULT)
    assert out.max_calls == 84
    assert out.first_fail == 85
    assert out.limit == "loss"
    # grow x1.5 from the planned 60, then bisect between 60 and 90
    assert tried == [60, 90, 75, 82, 86, 84, 85]
    assert [s.passed for s in out.steps] == [True, False, True, True, False, True, False]
    assert not out.partial and out.measured and out.errors == []


@pytest.mark.parametrize("capacity", [0, 1, 2, 7, 23, 59, 60, 61, 84, 149, 299, 300])
@pytest.mark.parametrize("start", [1, 10, 60, 250])
def test_exact_answer_for_any_capacity_and_start(capacity, start):
    step, tried = queue_network(capacity)
    # Independent answer by exhaustive search: the largest count that passes. Above a
    # large capacity it exceeds the capacity itself, because a small overload (1/150 =
    # 0.67 % loss) stays within the 1 % loss threshold: the ramp reports the threshold's
    # answer, not the queue's.
    probe, _ = queue_network(capacity)
    expected = max([n for n in range(1, 301) if probe(n).passed], default=0)
    out = ramp(step, start=start, ceiling=300, preset=DEFAULT)
    assert out.max_calls == expected
    if expected >= 300:
        assert out.limit == "max_calls" and out.first_fail is None
    else:
        assert out.limit == "loss" and out.first_fail == expected + 1
    assert len(tried) == len(set(tried)), "a call count was measured twice"
    assert len(tried) <= DEFAULT.max_steps


def test_ceiling_reached_reports_max_calls():
    step, tried = queue_network(10_000)
    out = ramp(step, start=60, ceiling=100, preset=DEFAULT)
    assert (out.max_calls, out.limit) == (100, "max_calls")
    assert tried == [60, 90, 100]


def test_start_above_ceiling_is_capped():
    step, tried = queue_network(10_000)
    out = ramp(step, start=500, ceiling=40, preset=DEFAULT)
    assert tried == [40] and out.max_calls == 40 and out.limit == "max_calls"


def test_first_step_failing_bisects_downwards():
    step, tried = queue_network(10)
    out = ramp(step, start=60, ceiling=200, preset=DEFAULT)
    assert out.max_calls == 10
    assert tried == [60, 30, 15, 7, 11, 9, 10]


def test_nothing_passes_is_a_measured_zero():
    step, tried = queue_network(0)
    out = ramp(step, start=8, ceiling=100, preset=DEFAULT)
    assert (out.max_calls, out.limit, out.first_fail) == (0, "loss", 1)
    assert tried == [8, 4, 2, 1]
    assert out.measured and not out.partial


def test_sender_limit_is_named_not_read_as_network_loss():
    # The network would carry 10 000 calls but the machine falls behind above 1 500.
    step, _ = queue_network(10_000, sender_max=1500)
    out = ramp(step, start=1000, ceiling=5000, preset=DEFAULT)
    assert out.max_calls == 1500
    assert out.limit == "sender"


def test_sender_reason_wins_over_simultaneous_loss():
    s = judge(Step(calls=3000, offered_kbps=1.0, loss_pct=5.0, jitter_ms=50.0, mos=3.0,
                   sender={"limited": True}), TH)
    assert s.reasons == ["sender", "loss", "jitter", "mos"]
    assert not s.passed


def test_unmeasurable_first_step_is_not_a_result():
    step, tried = queue_network(84, error_at={60})
    out = ramp(step, start=60, ceiling=200, preset=DEFAULT)
    assert not out.measured and out.partial
    assert tried == [60]
    assert "no replies" in out.errors[0]


def test_error_mid_ramp_keeps_what_was_measured():
    step, tried = queue_network(84, error_at={75})
    out = ramp(step, start=60, ceiling=200, preset=DEFAULT)
    assert out.measured and out.partial
    assert out.max_calls == 60 and out.first_fail == 90 and out.limit == "loss"
    assert tried == [60, 90, 75]


def test_stop_event_ends_early_and_partial():
    stop = threading.Event()
    base, tried = queue_network(84)

    def step(n):
        s = base(n)
        if len(tried) == 2:
            stop.set()
        return s

    out = ramp(step, start=60, ceiling=200, preset=DEFAULT, stop=stop)
    assert tried == [60, 90] and out.partial and out.max_calls == 60
    assert "stopped" in out.errors[0]


def test_time_budget_ends_early():
    step, tried = queue_network(84)
    budget = iter([True, True, True, False])
    out = ramp(step, start=60, ceiling=200, preset=DEFAULT, deadline_ok=lambda: next(budget))
    assert tried == [60, 90, 75] and out.partial and out.max_calls == 75


def test_step_bound_is_honoured():
    step, tried = queue_network(10_000)
    out = ramp(step, start=1, ceiling=10**9, preset=PRESETS["quick"])
    assert len(tried) == PRESETS["quick"].max_steps
    assert out.partial and "step limit" in out.errors[0]
    assert tried[:4] == [1, 2, 4, 8]


def test_quick_preset_stops_within_five_percent():
    step, tried = queue_network(400)
    out = ramp(step, start=60, ceiling=2000, preset=PRESETS["quick"])
    assert 400 - resolution_calls(400, PRESETS["quick"]) <= out.max_calls <= 400
    assert out.first_fail - out.max_calls <= max(1, int(out.max_calls * 0.05))
    assert len(tried) < 10


def test_judge_thresholds_are_inclusive_limits():
    at_limit = judge(Step(calls=1, offered_kbps=87.2, loss_pct=1.0, jitter_ms=30.0, mos=4.0), TH)
    assert at_limit.passed and at_limit.reasons == []
    over = judge(Step(calls=1, offered_kbps=87.2, loss_pct=1.01, jitter_ms=30.0, mos=4.0), TH)
    assert over.reasons == ["loss"]
    mos_only = judge(Step(calls=1, offered_kbps=87.2, loss_pct=0.0, jitter_ms=1.0, mos=3.99), TH)
    assert mos_only.reasons == ["mos"]
    jitter_only = judge(Step(calls=1, offered_kbps=87.2, loss_pct=0.0, jitter_ms=30.5, mos=4.3), TH)
    assert jitter_only.reasons == ["jitter"]


def test_step_json_keys():
    d = judge(Step(calls=5, offered_kbps=436.0, loss_pct=0.0, jitter_ms=0.2, mos=4.37), TH).to_dict()
    for key in ("calls", "offered_kbps", "loss_pct", "jitter_ms", "mos", "pass"):
        assert key in d
    assert d["pass"] is True


def test_bad_arguments():
    step, _ = queue_network(10)
    with pytest.raises(ValueError):
        ramp(step, start=0, ceiling=10, preset=DEFAULT)
    with pytest.raises(ValueError):
        ramp(step, start=1, ceiling=0, preset=DEFAULT)


def test_sender_state_behind_versus_hiccups():
    from probes.ramp import sender_state
    calm = {"lateness_ms": {"p50": 0.01, "p99": 0.3, "max": 0.9}, "rx_dropped": 0, "limited": False}
    assert sender_state(calm) == (False, False)
    # p99 of a few ms, nothing a ptime late: bunches less than random call phases do
    busy = {"lateness_ms": {"p50": 0.02, "p99": 4.3, "max": 9.0}, "rx_dropped": 0, "limited": True,
            "reason": "send lateness p99 4.30 ms > 1 ms", "sent": 3600}
    assert sender_state(busy) == (False, False)
    stalls = {"lateness_ms": {"p50": 0.06, "p99": 19.9, "max": 34.9}, "rx_dropped": 0, "limited": True,
              "reason": "send lateness p99 19.85 ms > 1 ms; 36 sends more than one ptime (20 ms) late",
              "sent": 3600}
    assert sender_state(stalls) == (False, True)
    few = dict(stalls, reason="send lateness p99 1.2 ms > 1 ms; 3 sends more than one ptime (20 ms) late")
    assert sender_state(few) == (False, False)         # 3 of 3600 is under 0.1 %
    assert sender_state(dict(stalls, late_sends=36, reason="")) == (False, True)
    behind = {"lateness_ms": {"p50": 605.0, "p99": 891.0, "max": 905.0}, "rx_dropped": 0, "limited": True}
    assert sender_state(behind) == (True, False)
    dropped = {"lateness_ms": {"p50": 0.01, "p99": 0.2, "max": 0.5}, "rx_dropped": 3, "limited": True}
    assert sender_state(dropped) == (True, False)


def test_hiccups_do_not_fail_a_passing_step_but_taint_a_failing_one():
    clean_net = dict(calls=20, offered_kbps=1744.0, loss_pct=0.0, jitter_ms=0.1, mos=4.37,
                     packets={"sent": 4000})
    stalls = {"behind": False, "hiccups": True, "late_sends": 10}
    s = judge(Step(**clean_net, sender=stalls), TH)
    assert s.passed
    # 2 % of 4000 = 80 lost <= 10 late sends x (20 + 1) = 210 our bursts could explain
    lossy = dict(clean_net, loss_pct=2.0)
    s = judge(Step(**lossy, sender=stalls), TH)
    assert s.reasons == ["sender", "loss"]
    s = judge(Step(**lossy, sender={"behind": False, "hiccups": False}), TH)
    assert s.reasons == ["loss"]
    s = judge(Step(**clean_net, sender={"behind": True, "hiccups": False}), TH)
    assert s.reasons == ["sender"] and not s.passed


def test_loss_beyond_what_stalls_can_explain_is_the_paths():
    # 21.7 % of 6000 = 1302 lost > 27 late sends x (30 + 1) = 837: the path's loss
    s = judge(Step(calls=30, offered_kbps=2616.0, loss_pct=21.7, jitter_ms=1.5, mos=2.4,
                   packets={"sent": 6000}, sender={"behind": False, "hiccups": True, "late_sends": 27}), TH)
    assert s.reasons == ["loss", "mos"]
    # the same failure with 50 late sends (bound 1550) may be ours
    s = judge(Step(calls=30, offered_kbps=2616.0, loss_pct=21.7, jitter_ms=1.5, mos=2.4,
                   packets={"sent": 6000}, sender={"behind": False, "hiccups": True, "late_sends": 50}), TH)
    assert s.reasons[0] == "sender"


def test_loopback_failure_is_the_senders():
    s = judge(Step(calls=9, offered_kbps=1.0, loss_pct=3.0, jitter_ms=0.1, mos=4.2,
                   sender={"behind": False, "hiccups": False, "loopback": True}), TH)
    assert s.reasons == ["sender", "loss"]
    ok = judge(Step(calls=9, offered_kbps=1.0, loss_pct=0.0, jitter_ms=0.1, mos=4.37,
                    sender={"behind": False, "hiccups": False, "loopback": True}), TH)
    assert ok.passed
