"""Capacity ramp (issue #15, "Capacity's false WARN"): the help states each
preset's growth, progress advances by steps, and a ramp that stopped at a
ceiling equal to the plan passes instead of warning on every run."""

from __future__ import annotations

from probes import capacity
from probes.ramp import PRESETS, Step, expected_steps, growth_counts
from tests.conftest import run_cli


def test_growth_counts_match_the_presets():
    # --quick doubles: the sequence a user saw, 40, 80, 160, 320, then the 500 ceiling
    assert growth_counts(40, 500, PRESETS["quick"]) == [40, 80, 160, 320, 500]
    # default x1.5: 40, 60, 90, 135, 203, 305, 458, 500
    assert growth_counts(40, 500, PRESETS["default"]) == [40, 60, 90, 135, 203, 305, 458, 500]
    assert growth_counts(20, 20, PRESETS["default"]) == [20]
    # 5 growth steps, then about log2(500 - 320 = 180) -> 8 bisection steps
    assert expected_steps(40, 500, PRESETS["quick"]) == 5 + 8


def test_help_states_the_growth_of_each_preset():
    r = run_cli("probe", "capacity", "--help")
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert "grows x1.5 (--quick x2, --thorough x1.25)" in text


def test_progress_advances_by_steps(monkeypatch):
    """A ramp where every step passes up to its ceiling: each step's progress
    fraction grows, none jumps past the next step's share."""
    events = []

    def runner(calls, step_s, stop):
        return Step(calls=calls, offered_kbps=0.0, loss_pct=0.0, jitter_ms=1.0, mos=4.37,
                    directions={"up": {"loss_pct": 0.0, "jitter_ms": 1.0, "mos": 4.37},
                                "down": {"loss_pct": 0.0, "jitter_ms": 1.0, "mos": 4.37}},
                    sender={"behind": False, "hiccups": False})

    cfg = capacity.CapacityConfig(target="127.0.0.1:9", preset="quick", start_calls=40, max_calls=500,
                                  step_s=0.5, settle_s=0.0)
    res = capacity.run(cfg, progress=events.append, step_runner=runner)
    assert [s.calls for s in res.steps] == [40, 80, 160, 320, 500] and res.limit == "max_calls"
    fractions = [e.fraction for e in events if e.kind == "progress" and e.message.startswith("step ")]
    assert len(fractions) == 5
    # step k of about 13 starts at (k - 1) / 13
    assert fractions == [k / 13 for k in range(5)]


def test_config_errors_name_the_field_and_the_cli_names_its_flag():
    import pytest
    from harness.binding import cli_message
    from probes.result import BadInput
    with pytest.raises(BadInput) as info:
        capacity.validate(capacity.CapacityConfig(target="127.0.0.1:9", max_calls=0))
    assert str(info.value) == "max_calls 0: expected 1 to 60000" and info.value.field == "max_calls"
    assert cli_message(info.value, {"max_calls": "--max-calls"}) == "--max-calls 0: expected 1 to 60000"
    r = run_cli("probe", "capacity", "127.0.0.1:9", "--step", "0.1")
    assert r.returncode == 2 and "--step 0.1: expected 0.5 to 600 seconds" in r.stderr
