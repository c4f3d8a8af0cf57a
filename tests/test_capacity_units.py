"""Capacity: pure helpers, the suite step's evaluation, the CLI's sentence and exit codes,
and bad input at the CLI. No network."""

from __future__ import annotations

import json

import pytest

from harness.cli.common import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, EXIT_UNMEASURED
from harness.cli.probe_capacity import exit_code, summary
from harness.profile import load_profile_text
from harness.suite import capacity as step
from probes import capacity as cap
from tests.conftest import FIXTURES

PROFILE = """
site: Unit site
planned: {calls: 60, codec: g711, ptime_ms: 20}
thresholds: {mos_min: 4.1, loss_pct: 0.5, jitter_ms: 20, jitter_buffer_ms: 40}
circuits:
  - {name: old, role: old, down_mbps: 100, up_mbps: 20, reflector: "198.51.100.7:862", source: 192.0.2.10}
  - {name: new, role: new, down_mbps: 200, up_mbps: 50, reflector: "203.0.113.20:862"}
"""


def raw(max_calls, limit="loss", planned=60, first_fail=None, measured=True, partial=False, errors=()):
    return {"probe": "capacity", "codec": "g711", "max_calls": max_calls, "limit": limit,
            "planned_calls": planned, "first_fail_calls": first_fail if first_fail else max_calls + 1,
            "margin_pct": cap.margin_pct(max_calls, planned), "ceiling": 500,
            "ceiling_source": "contract", "measured": measured, "partial": partial,
            "errors": list(errors), "steps": []}


def test_offered_load_per_call_matches_the_planning_figure():
    # G.711/20 ms: 172 B UDP payload + 8 UDP + 20 IPv4 + 18 Ethernet = 218 B x 50/s = 87.2 kbit/s
    assert cap.emulated_payload_b("g711", 20) == 172
    assert cap.offered_kbps_per_call(172, 20) == pytest.approx(87.2)
    assert cap.offered_kbps_per_call(172, 20, ipv6=True) == pytest.approx(95.2)
    # G.729's RTP packet (12 + 20 B) is smaller than the smallest STAMP packet (44 B)
    assert cap.emulated_payload_b("g729", 20) == 44
    assert cap.offered_kbps_per_call(44, 20) == pytest.approx((44 + 46) * 8 * 50 / 1000)


def test_ceiling_and_start_choice():
    assert cap.choose_ceiling(200, 300) == (200, "max_calls")
    assert cap.choose_ceiling(None, 300) == (300, "contract")
    assert cap.choose_ceiling(None, None) == (cap.DEFAULT_CEILING, "default")
    assert cap.choose_start(60, 300) == 60
    assert cap.choose_start(60, 40) == 40
    assert cap.choose_start(None, 300) == cap.DEFAULT_START


def test_margin():
    assert cap.margin_pct(84, 60) == pytest.approx(40.0)
    assert cap.margin_pct(30, 60) == pytest.approx(-50.0)
    assert cap.margin_pct(30, None) is None


def test_config_from_profile_uses_circuit_and_thresholds(tmp_path):
    p = load_profile_text(PROFILE)
    old = p.circuit("old")
    cfg = step.config_for(p, old, quick=True)
    assert cfg.target == "198.51.100.7:862" and cfg.source == "192.0.2.10"
    assert cfg.preset == "quick" and cfg.planned_calls == 60
    assert (cfg.thresholds.mos_min, cfg.thresholds.loss_pct, cfg.thresholds.jitter_ms) == (4.1, 0.5, 20)
    assert cfg.jitter_buffer_ms == 40
    # ceiling: the weaker direction of the contract (20 Mbit/s) as voice alone:
    # floor(20 000 / 87.2) = 229 calls
    assert cfg.contract_calls == 229
    assert step.config_for(p, p.circuit("new"), quick=False).contract_calls == 573   # 50 000 / 87.2
    assert step.applies(p, old)


def test_suite_ceiling_is_twice_the_plan_or_the_contract():
    p = load_profile_text(PROFILE)
    assert step.suite_ceiling(p, p.circuit("old")) == 120                 # 2 x 60 < 229
    small = load_profile_text(PROFILE.replace("up_mbps: 20", "up_mbps: 8"))
    assert step.suite_ceiling(small, small.circuit("old")) == 91          # floor(8000 / 87.2)


def test_contract_ceiling_never_below_planned():
    p = load_profile_text(PROFILE.replace("up_mbps: 20", "up_mbps: 1"))
    assert step.contract_calls(p, p.circuit("old")) == 60


def test_evaluate_pass_fail_and_error():
    p = load_profile_text(PROFILE)
    c = p.circuit("new")
    (ok,) = step.evaluate(p, c, raw(84))
    assert (ok.id, ok.status, ok.measured, ok.required, ok.margin) == ("capacity.calls", "pass", 84, 60, 24)
    assert ok.reason == "capacity 84 calls >= 60 calls planned (G.711; loss limit at 85 calls)"
    (warn,) = step.evaluate(p, c, raw(63))
    assert warn.status == "warn"            # within 10 % above the plan
    (bad,) = step.evaluate(p, c, raw(41))
    assert bad.status == "fail" and bad.margin == -19 and "41 calls < 60 calls" in bad.reason
    (err,) = step.evaluate(p, c, raw(0, limit=None, measured=False, partial=True,
                                     errors=["60 calls: no replies from the reflector"]))
    assert err.status == "error" and "no replies" in err.reason
    (sender,) = step.evaluate(p, c, raw(40, limit="sender"))
    assert sender.status == "error" and "measuring machine" in sender.reason
    (ceiling,) = step.evaluate(p, c, raw(229, limit="max_calls", first_fail=None))
    assert ceiling.status == "pass" and "at least 229" in ceiling.reason


def test_sentence_and_exit_codes():
    r = raw(84)
    assert summary(r) == "carries 84 calls, 60 planned: PASS (40 % margin; loss limit at 85 calls)"
    assert exit_code(r) == EXIT_OK
    r = raw(45, limit="mos")
    assert summary(r).startswith("carries 45 calls, 60 planned: FAIL (-25 % margin")
    assert exit_code(r) == EXIT_FAIL
    r = raw(40, limit="sender")
    assert "measuring machine, not the network" in summary(r)
    assert summary(r).startswith("carries at least 40 calls")
    assert exit_code(r) == EXIT_UNMEASURED
    r = raw(0, measured=False, errors=["no replies"])
    assert exit_code(r) == EXIT_UNMEASURED and "could not measure" in summary(r)
    r = raw(120, planned=None, limit="max_calls")
    r["ceiling_source"], r["ceiling"] = "max_calls", 120
    assert summary(r) == "carries at least 120 calls (passed at the ramp's ceiling, --max-calls 120)"
    r["ceiling_source"], r["ceiling"] = "contract", 120
    r["planned_calls"] = 60
    r["margin_pct"] = 100.0
    assert summary(r) == ("carries at least 120 calls, 60 planned: PASS (100 % margin; passed at the "
                          "ramp's ceiling, the 120 calls the contract carries)")
    assert exit_code(r) == EXIT_OK


@pytest.mark.parametrize("args, words", [
    ([], "missing HOST:PORT"),
    (["127.0.0.1:9", "--codec", "g999"], "unknown codec"),
    (["127.0.0.1:9", "--max-calls", "0"], "--max-calls 0"),
    (["127.0.0.1:9", "--max-calls", "100000"], "expected 1 to 60000"),
    (["127.0.0.1:9", "--ptime", "25"], "--ptime 25"),
    (["127.0.0.1:99999"], "out of range"),
    (["127.0.0.1:9", "--dscp", "zz"], "DSCP"),
    (["127.0.0.1:9", "--circuit", "new"], "--circuit needs --profile"),
    (["127.0.0.1:9", "--key-file", "/nonexistent/key"], "key"),
])
def test_bad_input_exit_2_without_traceback(args, words):
    from click.testing import CliRunner

    from harness.cli import cli as main
    r = CliRunner().invoke(main, ["probe", "capacity", *args, "--json"])   # in-process: fast
    assert r.exit_code == EXIT_BAD_INPUT, (r.output, r.exception)
    assert words.lower() in r.stderr.lower()
    assert r.stdout == ""
    assert r.exception is None or isinstance(r.exception, SystemExit)   # no traceback


def test_bad_input_through_the_real_console_script(cli):
    r = cli("probe", "capacity", "127.0.0.1:9", "--codec", "g999", "--json")
    assert r.returncode == EXIT_BAD_INPUT and "unknown codec" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_bad_profile_and_circuit():
    from click.testing import CliRunner

    from harness.cli import cli as main
    r = CliRunner().invoke(main, ["probe", "capacity", "--profile", str(FIXTURES / "profiles" / "bad-ptime.yaml")])
    assert r.exit_code == EXIT_BAD_INPUT and "ptime_ms" in r.stderr
    assert r.exception is None or isinstance(r.exception, SystemExit)
    r = CliRunner().invoke(main, ["probe", "capacity", "--profile", str(FIXTURES / "profiles" / "valid.yaml"),
                                  "--circuit", "nope"])
    assert r.exit_code == EXIT_BAD_INPUT and "no circuit 'nope'" in r.stderr


def fake_runner(capacity: int, hiccup_once: set[int] = frozenset()):
    """Engine stand-in returning EngineResult-shaped dicts for a path of ``capacity`` calls."""
    calls_seen: list[int] = []

    def runner(calls, duration_s, stop):
        calls_seen.append(calls)
        over = max(0.0, (calls - capacity) / calls * 100)
        hiccup = calls in hiccup_once and calls_seen.count(calls) == 1
        d = {"calls": calls, "duration_s": duration_s, "measured": True, "partial": False,
             "direction_split": True, "packets": {"sent": calls * 50, "received": calls * 50},
             "loss_pct": {"up": over, "down": 0.0, "total": over}, "jitter_ms": {"up": 0.5, "down": 0.2},
             "rtt_ms": {"p50": 1.0}, "mos_up": 4.37 - over / 10, "mos_down": 4.37, "mos": 4.37 - over / 10,
             "sender": {"lateness_ms": {"p50": 0.01, "p99": 24.0 if hiccup else 0.1,
                                        "max": 30.0 if hiccup else 0.5},
                        "rx_dropped": 0, "limited": hiccup,
                        "reason": "send lateness p99 24.00 ms > 1 ms; 80 sends more than one ptime "
                                  "(20 ms) late" if hiccup else None}}
        if hiccup:
            d["loss_pct"]["up"] = 3.0       # a failure that coincides with the hiccup
        return cap.step_from_engine(d)

    return runner, calls_seen


def test_run_with_a_fake_engine_gives_the_contract_json():
    runner, seen = fake_runner(84)
    cfg = cap.CapacityConfig(target="192.0.2.1:862", planned_calls=60, contract_calls=229, settle_s=0)
    cfg.time_budget_s = 60
    res = cap.run(cfg, step_runner=runner)
    d = res.to_dict()
    assert (d["max_calls"], d["limit"], d["planned_calls"], d["pass"]) == (84, "loss", 60, True)
    assert d["margin_pct"] == 40.0 and d["ceiling"] == 229 and d["ceiling_source"] == "contract"
    assert d["measured"] and not d["partial"] and d["errors"] == []
    first = d["steps"][0]
    assert first["calls"] == 60 and first["offered_kbps"] == pytest.approx(60 * 87.2)
    assert first["directions"]["up"]["loss_pct"] == 0.0 and first["pass"] is True
    assert json.loads(json.dumps(d)) == d


def test_a_failure_during_a_hiccup_is_measured_again():
    runner, seen = fake_runner(84, hiccup_once={75})
    res = cap.run(cap.CapacityConfig(target="192.0.2.1:862", planned_calls=60, max_calls=200, settle_s=0),
                  step_runner=runner)
    assert seen.count(75) == 2                 # the hiccup step was repeated ...
    assert res.max_calls == 84 and res.limit == "loss"   # ... and the answer is unchanged
    step75 = next(s for s in res.steps if s.calls == 75)
    assert step75.passed and "lateness" in step75.sender["retried_after"]


def test_loss_on_a_loopback_target_is_the_machines_own():
    # (the fake engine sends nothing: the targets are only resolved)
    runner, _ = fake_runner(84)
    res = cap.run(cap.CapacityConfig(target="127.0.0.1:862", planned_calls=60, max_calls=200,
                                     settle_s=0), step_runner=runner)
    assert res.max_calls == 84 and res.limit == "sender"
    assert any("loopback" in n for n in res.notes)
    failing = [s for s in res.steps if not s.passed]
    assert failing and all(s.reasons[0] == "sender" for s in failing)


def test_stop_during_a_step_keeps_earlier_steps_and_is_partial():
    import threading
    stop = threading.Event()
    base, seen = fake_runner(84)

    def runner(calls, duration_s, stop_event):
        s = base(calls, duration_s, stop_event)
        if len(seen) == 2:
            stop.set()               # Ctrl-C arrives while the second step runs
        return s

    res = cap.run(cap.CapacityConfig(target="192.0.2.1:862", planned_calls=60, max_calls=200, settle_s=0),
                  stop=stop, step_runner=runner)
    assert seen == [60, 90]
    assert res.partial and res.measured and res.max_calls == 60
    assert res.steps[-1].error == "stopped during this step"
    assert any("stopped" in e for e in res.errors)
