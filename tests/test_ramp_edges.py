"""The capacity ramp judges its steps by the same edges as `cutover check`
(issue #13, "One judgement"): probes/edges.py is the one definition, used by
probes/ramp.py ``judge`` and by harness.verdicts ``at_most``/``at_least``
(every suite step's evaluate).

The same engine result (one step's figures) goes to both: the stream step's
evaluate (what `cutover check` stores as stream.loss_up, stream.jitter_down,
stream.mos) and the capacity probe's step (step_from_engine + ramp.judge).
On and around each edge, the step passes exactly when none of those checks
fails. Then a whole ramp through capacity.run with the figures on, and just
beyond, the edge at the planned call count: `cutover check`'s capacity.calls
check follows.
"""

from __future__ import annotations

import pytest

from harness import judgement
from harness.profile import load_profile
from probes import capacity as cap
from probes import edges, ramp

LOSS, JITTER, MOS = 1.0, 30.0, 4.0       # the profile's thresholds below
PLANNED = 10

PROFILE = f"""\
site: Edges
planned: {{calls: {PLANNED}, codec: g711, ptime_ms: 20}}
thresholds: {{one_way_delay_ms: 150, jitter_ms: {JITTER}, loss_pct: {LOSS}, mos_min: {MOS}, jitter_buffer_ms: 60}}
circuits:
  - {{name: new, role: new, down_mbps: 100, up_mbps: 100, reflector: '192.0.2.1:862'}}
cutover:
  parallel_run_start: 2026-11-01
"""


@pytest.fixture
def profile(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(PROFILE)
    return load_profile(path)


def engine_result(calls: int, *, loss_up: float = 0.0, jitter_down: float = 2.0, mos: float = 4.37) -> dict:
    """An EngineResult as the engine's to_dict() gives it: the stream probe's
    result and one capacity step's figures alike."""
    return {"probe": "stream", "calls": calls, "codec": "g711", "ptime_ms": 20, "duration_s": 4.0,
            "measured": True, "partial": False, "direction_split": True,
            "packets": {"sent": calls * 200, "received": calls * 200},
            "loss_pct": {"up": loss_up, "down": 0.0, "total": loss_up / 2},
            "jitter_ms": {"up": 1.0, "down": jitter_down},
            "rtt_ms": {"p50": 2.0, "p95": 3.0, "p99": 4.0, "max": 5.0},
            "mos_up": mos, "mos_down": 4.37, "mos": mos,
            "sender": {"lateness_ms": {"p50": 0.01, "p99": 0.1, "max": 0.5}, "rx_dropped": 0, "limited": False}}


# (figure, value) on and around each edge; the hand-set expectation: equal to the limit is within it
EDGES = [
    ("loss_up", 0.0, True), ("loss_up", 0.95, True), ("loss_up", LOSS, True),
    ("loss_up", 1.001, False), ("loss_up", 2.0, False),
    ("jitter_down", 26.0, True), ("jitter_down", JITTER, True), ("jitter_down", 30.01, False),
    ("mos", 4.2, True), ("mos", 4.05, True), ("mos", MOS, True), ("mos", 3.999, False), ("mos", 3.5, False),
]
CHECK_OF = {"loss_up": "stream.loss_up", "jitter_down": "stream.jitter_down", "mos": "stream.mos"}


@pytest.mark.parametrize("figure,value,carries", EDGES, ids=[f"{f}={v}" for f, v, _ in EDGES])
def test_a_ramp_step_and_the_stream_checks_agree_on_the_edge(profile, figure, value, carries):
    raw = engine_result(PLANNED, **{figure: value})
    checks = {c.id: c for c in judgement.evaluate("stream", profile, profile.circuit("new"), raw)}
    check = checks[CHECK_OF[figure]]
    step = ramp.judge(cap.step_from_engine(raw), ramp.Thresholds(mos_min=MOS, loss_pct=LOSS, jitter_ms=JITTER))
    assert step.passed is carries, step.reasons
    assert (check.status != "fail") is carries, check
    # the other figures are well inside: the stream checks of the ramp's figures all pass
    assert all(c.status == "pass" for i, c in checks.items() if i in CHECK_OF.values() and c is not check)
    if not carries:
        assert step.reasons == [{"loss_up": "loss", "jitter_down": "jitter", "mos": "mos"}[figure]]


def test_the_edges_are_one_definition():
    """Equal is within on both sides; the warn bands are the ones harness uses."""
    from harness import verdicts
    assert not edges.above_limit(1.0, 1.0) and edges.above_limit(1.001, 1.0)
    assert not edges.below_minimum(4.0, 4.0) and edges.below_minimum(3.999, 4.0)
    assert verdicts.WARN_BAND_PCT == edges.WARN_BAND_PCT == 10.0
    assert judgement.MOS_WARN_BAND_PCT == edges.MOS_WARN_BAND_PCT == 2.5
    # 4.0 -> warn below 4.1 (4.0 x 1.025 = 4.1); 30 ms -> warn above 27 ms (30 x 0.9)
    assert edges.near_minimum(4.09, 4.0, 2.5) and not edges.near_minimum(4.1, 4.0, 2.5)
    assert edges.near_limit(27.01, 30.0) and not edges.near_limit(27.0, 30.0)


def _runner(edge_calls: int, loss_at_edge: float):
    """A path that carries everything below ``edge_calls`` loss-free and shows
    ``loss_at_edge`` (upstream) from ``edge_calls`` on."""
    def run(calls, duration_s, stop):
        return cap.step_from_engine(engine_result(calls, loss_up=loss_at_edge if calls >= edge_calls else 0.0))
    return run


@pytest.mark.parametrize("loss_at_plan,max_calls,status", [
    (LOSS, PLANNED, "pass"),          # on the edge at the plan: the step carries it, so does the check
    (1.001, PLANNED - 1, "fail"),     # just beyond: the step at the plan fails, 9 < 10 planned
])
def test_a_ramp_on_the_edge_and_cutover_checks_capacity_check_agree(profile, loss_at_plan, max_calls, status):
    circuit = profile.circuit("new")
    from harness.suite import capacity as capacity_step
    cfg = capacity_step.config_for(profile, circuit, quick=True, max_calls=PLANNED)
    cfg.settle_s = 0
    res = cap.run(cfg, step_runner=_runner(PLANNED, loss_at_plan)).to_dict()
    assert res["max_calls"] == max_calls
    (check,) = judgement.evaluate("capacity", profile, circuit, res)
    assert check.id == "capacity.calls" and check.status == status, check
    # the stream check of the step at the plan says the same about the same figures
    raw = engine_result(PLANNED, loss_up=loss_at_plan)
    (loss_check,) = [c for c in judgement.evaluate("stream", profile, circuit, raw) if c.id == "stream.loss_up"]
    assert (loss_check.status == "fail") is (status == "fail")
