"""The board's view models (harness.tui.model / loader): pure, no terminal."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from harness.gate import GateItem
from harness.profile import Profile
from harness.tui import loader
from harness.tui.model import (SPARK_BLOCKS, HeaderView, level_block, metric_views, outage_rows, sparkline,
                               time_buckets)
from harness.tui.widgets.outages import claim_text, human_duration

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _profile(**cut) -> Profile:
    return Profile.model_validate({
        "site": "Test", "planned": {"calls": 20, "codec": "g711", "ptime_ms": 20, "other_mbps": 5,
                                    "headroom_pct": 20},
        "thresholds": {"one_way_delay_ms": 150, "jitter_ms": 30, "loss_pct": 1.0, "mos_min": 4.0},
        "circuits": [{"name": "new", "role": "new", "down_mbps": 100, "up_mbps": 50}],
        "cutover": {"parallel_run_start": "2026-11-01", **cut}})


def test_sparkline_scales_min_to_lowest_and_max_to_highest_block():
    assert sparkline([0, 7, 14], 3) == SPARK_BLOCKS[0] + SPARK_BLOCKS[4] + SPARK_BLOCKS[7]
    # 7/14 of the way is level round(3.5)=4 -> "▅"


def test_sparkline_buckets_are_means_and_gaps_are_spaces():
    # 6 values in 3 cells: means 1, 5, 9 -> levels 0, round(3.5)=4, 7
    assert sparkline([0, 2, 4, 6, 8, 10], 3) == "▁▅█"
    assert sparkline([1.0, None, 3.0], 3) == "▁ █"
    assert sparkline([5, 5, 5], 10) == "▁▁▁"        # never wider than the data, flat on the floor
    assert sparkline([], 5) == "" and sparkline([1, 2], 0) == ""


def test_metric_colours_are_the_stored_checks_never_rejudged():
    """The board shows the status a run stored (harness.judgement decided it),
    even where the figure it draws would look fine or bad on its own."""
    from harness.verdicts import Check
    p = _profile()
    c = p.circuits[0]
    latest = {"rtt_ms": 280.0, "jitter_ms": 31.0, "loss_pct": 0.5, "mos": 4.08, "down_mbps": 8.0,
              "up_mbps": 8.5, "max_calls": 20.0}
    checks = [Check("stream.delay", "warn", 140.0, 150.0, "ms", 10.0, "one-way delay 140 ms is within 10 %"),
              Check("stream.jitter_up", "pass", 5.0, 30.0, "ms", 25.0, "ok"),
              Check("stream.jitter_down", "fail", 31.0, 30.0, "ms", -1.0, "downstream jitter 31 ms > 30 ms",
                    "network"),
              Check("stream.loss_up", "pass", 0.5, 1.0, "%", 0.5, "ok"),
              Check("stream.mos", "warn", 4.08, 4.0, "", 0.08, "MOS 4.08 is within 2.5 % of 4.0"),
              Check("bandwidth.down", "fail", 8.0, 8.09, "Mbit/s", -0.09, "downstream short", "network"),
              Check("bandwidth.up", "warn", 8.5, 8.09, "Mbit/s", 0.41, "upstream close"),
              Check("capacity.calls", "pass", 20, 20, "calls", 0, "capacity at least 20 calls")]
    views = {m.key: m for m in metric_views(p, c, latest, {}, (8.0928, 8.0928), checks)}
    assert {k: v.status for k, v in views.items()} == {
        "rtt_ms": "warn", "jitter_ms": "fail", "loss_pct": "pass", "mos": "warn",
        "down_mbps": "fail", "up_mbps": "warn", "max_calls": "pass"}
    assert views["jitter_ms"].reason == "downstream jitter 31 ms > 30 ms"
    assert views["down_mbps"].text == "8/100 Mbit/s"
    assert views["max_calls"].text == "20/20"
    # a step that could not measure colours each of its figures as an error
    gap = [Check("stream.measured", "error", None, None, "", None, "stream: key file empty", "measurement_gap")]
    views = {m.key: m for m in metric_views(p, c, latest, {}, (8.0928, 8.0928), gap)}
    assert views["mos"].status == "error" and views["down_mbps"].status == "none"
    # no stored check: nothing to colour, whatever the figure
    none = metric_views(p, c, latest, {}, (8.0928, 8.0928))
    assert all(m.status == "none" for m in none)


def test_outage_rows_ongoing_first_then_nearest_claim_deadline():
    def o(circuit, start_h, end_h, claim_h):
        return SimpleNamespace(circuit=circuit, start=T0 + dt.timedelta(hours=start_h),
                               end=None if end_h is None else T0 + dt.timedelta(hours=end_h),
                               claim_by=None if claim_h is None else T0 + dt.timedelta(hours=claim_h),
                               failed=[], kind="unreachable")
    rows = outage_rows([o("old", 0, 1, 25), o("new", 5, 6, 30), o("backup", 7, None, None), o("new", 2, 3, 27)])
    assert [(r.circuit, r.start.hour) for r in rows] == [("backup", 19), ("old", 12), ("new", 14), ("new", 17)]
    assert rows[0].what == "unreachable"


def test_claim_deadline_text():
    row = outage_rows([SimpleNamespace(circuit="new", start=T0, end=T0 + dt.timedelta(hours=1),
                                       claim_by=T0 + dt.timedelta(hours=25), failed=[], kind="failed")])[0]
    assert str(claim_text(row, T0 + dt.timedelta(hours=20))) == "11-21 13:00 (5h left)"
    assert str(claim_text(row, T0 + dt.timedelta(hours=26))) == "11-21 13:00 passed"
    assert human_duration(dt.timedelta(hours=50, minutes=5)) == "2d 2h"


def test_outage_rows_carry_the_id_and_a_filed_claim():
    from harness.history import Outage
    mk = lambda c, h: Outage(circuit=c, start=T0 + dt.timedelta(hours=h), end=T0 + dt.timedelta(hours=h + 1),  # noqa: E731
                             duration_s=3600, ongoing=False, runs=4, kind="failed", failed=[],
                             claim_by=T0 + dt.timedelta(hours=h + 25), last_failing_at=T0)
    rows = outage_rows([mk("new", 0), mk("old", 2)], claimed={f"old-{T0 + dt.timedelta(hours=2):%Y%m%dT%H%MZ}"})
    assert [(r.id, r.claimed) for r in rows] == [("new-20261120T1200Z", False), ("old-20261120T1400Z", True)]
    # claimed wins over a deadline that has passed since
    assert str(claim_text(rows[1], T0 + dt.timedelta(hours=40))) == "claimed"
    assert str(claim_text(rows[0], T0 + dt.timedelta(hours=40))) == "11-21 13:00 passed"


def test_checklist_rows_from_gate_items():
    at = T0
    decision = SimpleNamespace(items=[
        GateItem("pass-rate:new", "New circuit new passed >= 95 % of runs", "auto", "block",
                 "circuit new passed 90 % of runs"),
        GateItem("capacity:new", "Capacity", "auto", "info", "not measured"),
        GateItem("checklist:porting", "Numbers ported", "manual", "ok", "signed off", by="Ann", at=at,
                 note="all 48 DDIs"),
        GateItem("checklist:vlan", "Voice VLAN", "manual", "block", "revoked", by="Bob", at=at),
        GateItem("checklist:notice", "Notice sent", "manual", "block", "not signed off"),
    ])
    rows = loader.checklist_rows(decision)
    # what blocks first, each group in the gate's order
    assert [(r.id, r.kind, r.ok, r.status) for r in rows] == [
        ("pass-rate:new", "auto", False, "blocking"), ("vlan", "manual", False, "revoked"),
        ("notice", "manual", False, "open"), ("capacity:new", "auto", True, "not measured"),
        ("porting", "manual", True, "signed off")]
    assert rows[4].by == "Ann" and rows[4].note == "all 48 DDIs"


def test_windows_parallel_run_for_the_gate_and_7_days_for_trends():
    p = _profile()
    now = dt.datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
    assert loader.gate_window_start(p, now) == dt.datetime(2026, 11, 1, tzinfo=UTC)
    no_start = _profile(parallel_run_start=None, min_parallel_days=14)
    assert loader.gate_window_start(no_start, now) == dt.datetime(2026, 11, 8, 9, 0, tzinfo=UTC)
    assert loader.trend_start(now) == dt.datetime(2026, 11, 15, 9, 0, tzinfo=UTC)
    assert loader.trend_start(now, dt.timedelta(days=1)) == dt.datetime(2026, 11, 21, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize("disconnect, today, expected", [
    (dt.date(2026, 12, 22), dt.date(2026, 11, 22), 30), (dt.date(2026, 11, 20), dt.date(2026, 11, 22), -2)])
def test_days_to_disconnect(disconnect, today, expected):
    h = HeaderView("s", dt.datetime.combine(today, dt.time(10), UTC), 21, 14, None, disconnect, "GO", [])
    assert h.days_to_disconnect == expected


def test_level_block_is_absolute():
    assert level_block(0) == "▁" and level_block(100) == "█" and level_block(50) == SPARK_BLOCKS[4]
    assert level_block(150) == "█" and level_block(-3) == "▁"


def test_time_buckets_keep_gaps_on_the_time_axis():
    t = lambda h: T0 + dt.timedelta(hours=h)           # noqa: E731
    # 4 cells of 1 h over [0 h, 4 h): points at 0.0/0.5 h (mean 2), none in the 2nd hour (reflector down),
    # 2.2 h -> cell 2, 3.9 h and exactly 4 h (the end) -> the last cell
    cells = time_buckets([(t(0), 1.0), (t(0.5), 3.0), (t(2.2), 5.0), (t(3.9), 6.0), (t(4), 8.0)], t(0), t(4), 4)
    assert cells == [2.0, None, 5.0, 7.0]
    assert sparkline(cells, 4) == "▁ ▅█"                  # levels: (2,5,7) -> 0, round(4.2)=4, 7
    assert time_buckets([(t(5), 1.0)], t(0), t(4), 4) == [None] * 4     # outside the window: ignored
    assert time_buckets([], t(0), t(4), 0) == [] and time_buckets([], t(4), t(0), 3) == []
