"""History analysis: the outage and SLA-claim log, pass rates, trends, and the
bulk metric loader, over histories written through the real store."""

from __future__ import annotations

import datetime as dt

import pytest

from harness import history
from harness.durations import format_duration, parse_duration
from harness.profile import load_profile
from harness.store import Store
from harness.verdicts import Check
from tests.fixtures.history import FIXED_END, Planted, cached_history, generate

UTC = dt.timezone.utc
NOW = FIXED_END + dt.timedelta(minutes=1)
FIVE = dt.timedelta(minutes=5)


@pytest.fixture(scope="module")
def h30(tmp_path_factory):
    fx = cached_history(tmp_path_factory)
    profile = load_profile(fx.profile_path)
    store = Store(fx.db_path)
    runs = history.load_runs(store, profile.site)
    series = history.load_series(store, profile.site)
    yield fx, profile, store, runs, series
    store.close()


def test_fixture_shape(h30):
    fx, profile, store, runs, _ = h30
    assert fx.runs == 30 * 288 == len(runs) == 8640
    assert fx.end == FIXED_END and runs[-1].started_at == FIXED_END
    assert runs[0].started_at == FIXED_END - 8639 * FIVE
    assert all(set(r.circuits) == {"old", "new", "backup"} for r in runs[:: 97])


def test_outage_log_finds_exactly_the_planted_outages(h30):
    fx, profile, store, runs, series = h30
    a = history.analyze(runs, profile, now=NOW, series=series)
    t0 = fx.start
    # Hand-computed from the plan in tests/fixtures/history.py (DEFAULT_OUTAGES):
    # start = run index * 5 min; end = the first passing run after it; claim = end + 24 h.
    want = {
        ("old", t0 + 1500 * FIVE, t0 + 1512 * FIVE, 12, "unreachable"),
        ("new", t0 + 3000 * FIVE, t0 + 3001 * FIVE, 1, "failed"),           # single failing run
        ("backup", t0 + 4000 * FIVE, t0 + 4006 * FIVE, 6, "failed+unreachable"),
        ("new", t0 + 6000 * FIVE, t0 + 6030 * FIVE, 30, "failed"),
        ("old", t0 + 7000 * FIVE, t0 + 7006 * FIVE, 6, "failed"),
        ("old", t0 + 7007 * FIVE, t0 + 7010 * FIVE, 3, "unreachable"),      # one pass apart: separate
        ("backup", t0 + 8636 * FIVE, None, 4, "unreachable"),               # ongoing at the end
    }
    got = {(o.circuit, o.start, o.end, o.runs, o.kind) for o in a.all_outages()}
    assert got == want
    # and the fixture's own independent expectation agrees
    assert got == {(e.circuit, e.start, e.end, e.runs, e.kind) for e in fx.outages}
    for o in a.all_outages():
        if o.end is None:
            assert o.ongoing and o.claim_by is None
            assert o.duration_s == (NOW - o.start).total_seconds() == 3 * 300 + 60
        else:
            assert o.claim_by == o.end + dt.timedelta(hours=24)
            assert o.duration_s == (o.end - o.start).total_seconds() == o.runs * 300
    # a literal date, computed by hand: fixture start 2026-10-21 12:05 UTC (end - 8639 runs),
    # old outage at index 1500 = +125 h = 2026-10-26 17:05, end +1 h, claim +24 h
    assert t0 == dt.datetime(2026, 10, 21, 12, 5, tzinfo=UTC)
    old1 = next(o for o in a.circuits["old"].outages if o.kind == "unreachable")
    assert old1.start == dt.datetime(2026, 10, 26, 17, 5, tzinfo=UTC)
    assert old1.claim_by == dt.datetime(2026, 10, 27, 18, 5, tzinfo=UTC)
    assert "did not answer" in old1.summary


def test_what_failed_names_the_checks(h30):
    fx, profile, store, runs, series = h30
    a = history.analyze(runs, profile, now=NOW, series=series)
    long_new = next(o for o in a.circuits["new"].outages if o.runs == 30)
    ids = {f.id for f in long_new.failed}
    assert {"stream.loss_up", "stream.loss_down", "stream.mos"} <= ids
    assert all(f.runs == 30 and f.status == "fail" for f in long_new.failed if f.id.startswith("stream.loss"))
    mixed = next(o for o in a.circuits["backup"].outages if o.runs == 6)
    by_id = {f.id: f for f in mixed.failed}
    assert by_id["stream.reachable"].status == "error" and by_id["stream.reachable"].runs == 3
    assert by_id["stream.loss_up"].runs == 3


def test_claim_hours_from_profile(h30):
    fx, profile, store, runs, series = h30
    p48 = profile.model_copy(update={"cutover": profile.cutover.model_copy(update={"sla_claim_hours": 48})})
    a = history.analyze(runs, p48, now=NOW, series=series)
    one = next(o for o in a.circuits["new"].outages if o.runs == 1)
    assert one.claim_by == fx.start + 3001 * FIVE + dt.timedelta(hours=48)


def test_urgency_order_ongoing_first_then_nearest_claim(h30):
    fx, profile, store, runs, series = h30
    out = history.analyze(runs, profile, now=NOW, series=series).all_outages()
    assert out[0].ongoing and out[0].circuit == "backup"
    claims = [o.claim_by for o in out[1:]]
    assert claims == sorted(claims)


def test_pass_rates_and_daily_rates(h30):
    fx, profile, store, runs, series = h30
    a = history.analyze(runs, profile, now=NOW, series=series)
    assert (a.circuits["new"].passed, a.circuits["new"].runs) == (8640 - 31, 8640)
    assert (a.circuits["old"].passed, a.circuits["old"].runs) == (8640 - 21, 8640)
    # the day of old's first outage: count the fixture's runs on that UTC date independently
    day = (fx.start + 1500 * FIVE).date()
    on_day = sum(1 for i in range(fx.runs) if (fx.start + i * FIVE).date() == day)
    rate = next(d for d in a.circuits["old"].daily if d.date == day)
    assert (rate.runs, rate.passed) == (on_day, on_day - 12) == (288, 276)
    assert rate.pass_pct == pytest.approx(100 * 276 / 288)


def test_fast_series_equal_the_per_run_raw_json(tmp_path):
    fx = generate(tmp_path, days=1, interval_min=30, outages=(Planted("new", 5, 2, "unreachable"),),
                  end=FIXED_END)
    profile = load_profile(fx.profile_path)
    with Store(fx.db_path) as store:
        runs = store.runs(profile.site)
        fast = history.load_series(store, profile.site)
        slow = history.analyze(runs, profile, now=NOW)           # reads each run's raw JSON
        quick = history.analyze(runs, profile, now=NOW, series=fast)
    for name in ("old", "new", "backup"):
        for m in history.METRICS:
            s1, s2 = slow.circuits[name].series[m.key], quick.circuits[name].series[m.key]
            assert s1 == s2, (name, m.key)
    assert len(slow.circuits["new"].series["rtt_p50_ms"]) == 48 - 2       # unreachable runs have no value
    # bandwidth hourly (even indices at 30 min), except index 6, which was unreachable
    assert len(slow.circuits["new"].series["down_mbps"]) == 24 - 1
    assert slow.circuits["new"].series["capacity_calls"] == [(fx.start, 120.0)]


# ---------------------------------------------------------------- pure units

class _Run:
    def __init__(self, at, circuits):
        self.started_at, self.circuits = at, circuits


class _Rec:
    def __init__(self, verdict, checks=(), raw=None):
        self.verdict, self.checks, self.raw = verdict, list(checks), raw or {}


T = dt.datetime(2026, 11, 1, tzinfo=UTC)


def _seq(pattern: str, circuit="new"):
    """'ppfpp' -> runs every 5 min; p pass, w warn, f fail, e unreachable, - circuit not measured."""
    out = []
    for i, ch in enumerate(pattern):
        circuits = {}
        if ch == "p":
            circuits[circuit] = _Rec("GO")
        elif ch == "w":
            circuits[circuit] = _Rec("WARN", [Check("stream.mos", "warn", 4.1, 4.0, "", 0.1, "close")])
        elif ch == "f":
            circuits[circuit] = _Rec("NO-GO", [Check("stream.loss_up", "fail", 3.0, 1.0, "%", -2.0, "loss 3 %")])
        elif ch == "e":
            circuits[circuit] = _Rec("NO-GO", [Check("stream", "error", None, None, "", None, "no answer")])
        out.append(_Run(T + i * FIVE, circuits))
    return out


def test_single_failing_run_is_an_outage_of_one_run():
    (o,) = history.outages(_seq("ppfpp"), "new", 24, now=T + dt.timedelta(hours=1))
    assert (o.start, o.end, o.runs, o.kind) == (T + 2 * FIVE, T + 3 * FIVE, 1, "failed")
    assert o.claim_by == T + 3 * FIVE + dt.timedelta(hours=24)


def test_warn_passes_and_unmeasured_runs_do_not_split_or_end_an_outage():
    runs = _seq("pwf-fepw")
    (o,) = history.outages(runs, "new", 12, now=T + dt.timedelta(hours=1))
    # f at 2, not measured at 3, f at 4, e at 5, pass at 6
    assert (o.start, o.end, o.runs, o.kind) == (T + 2 * FIVE, T + 6 * FIVE, 3, "failed+unreachable")
    assert o.claim_by == T + 6 * FIVE + dt.timedelta(hours=12)
    assert history.pass_rate(runs, "new") == (4, 7)


def test_outage_at_the_start_of_the_window_is_flagged():
    (o,) = history.outages(_seq("eep"), "new", 24, now=T + dt.timedelta(hours=1))
    assert o.starts_before_window and o.kind == "unreachable"


def test_summarize_slope_and_trend_by_hand():
    m = history.METRIC_BY_KEY["rtt_p50_ms"]
    pts = [(T + dt.timedelta(days=d), 10.0 + 2 * d) for d in range(4)]      # 10, 12, 14, 16 ms
    s = history.summarize(m, pts)
    assert (s.count, s.min, s.max, s.mean, s.latest) == (4, 10.0, 16.0, 13.0, 16.0)
    assert s.slope_per_day == pytest.approx(2.0)
    assert s.trend == "worse"                                 # rising RTT is worse
    mos = history.summarize(history.METRIC_BY_KEY["mos"], [(t, 5 - v / 10) for t, v in pts])
    assert mos.slope_per_day == pytest.approx(-0.2) and mos.trend == "worse"
    flat = history.summarize(m, [(T + dt.timedelta(days=d), 10.0 + (d % 2) * 0.01) for d in range(6)])
    assert flat.trend == "steady"


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("15m", 900), ("24h", 86400), ("7d", 604800),
                                          ("2w", 1209600), ("1h30m", 5400), (" 7D ", 604800), ("0.5h", 1800)])
def test_parse_duration(text, seconds):
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "7", "7x", "d7", "-7d", "0m", "7d junk"])
def test_parse_duration_rejects(text):
    with pytest.raises(ValueError, match="expected a duration like"):
        parse_duration(text)


def test_format_duration():
    assert format_duration(dt.timedelta(seconds=3600 + 600)) == "1h 10m"
    assert format_duration(dt.timedelta(days=2, hours=3)) == "2d 3h"
    assert format_duration(dt.timedelta(minutes=5)) == "5m"


def test_outage_that_began_before_the_window_keeps_its_true_start():
    runs = _seq("ppfffpp")                       # outage from run 2 to run 5
    since = T + 3 * FIVE + dt.timedelta(seconds=1)
    shown = [r for r in runs if r.started_at >= since]
    now = T + dt.timedelta(hours=1)

    class P:  # the parts of a profile analyze reads
        class cutover:
            sla_claim_hours = 24
        circuits = []

        @staticmethod
        def circuit(name):
            raise KeyError(name)

    clipped = history.analyze(shown, P, since=since, now=now).circuits["new"].outages
    assert [(o.start, o.starts_before_window) for o in clipped] == [(T + 4 * FIVE, True)]
    full = history.analyze(shown, P, since=since, now=now, outage_runs=runs).circuits["new"].outages
    assert [(o.start, o.end, o.runs) for o in full] == [(T + 2 * FIVE, T + 5 * FIVE, 3)]
    # an outage that ended before the window is not in it
    assert history.analyze(_seq("pfppppp")[3:], P, since=T + 3 * FIVE, now=now,
                           outage_runs=_seq("pfppppp")).circuits["new"].outages == []


def test_comparison_names_no_winner_the_report_cannot_show():
    """MOS 4.3695 vs 4.3694 prints as 4.37 vs 4.37: no "better" column entry;
    4.37 vs 4.30 names the higher one, and lower wins for RTT."""
    import datetime as _dt

    from harness.history import analyze
    from harness.profile import load_profile
    from tests.conftest import FIXTURES
    profile = load_profile(FIXTURES / "profiles" / "valid.yaml")
    t = _dt.datetime(2026, 11, 20, tzinfo=_dt.timezone.utc)

    def best(metric, old, new):
        series = {"old": {metric: [(t, old)]}, "new": {metric: [(t, new)]}}
        a = analyze([], profile, since=t - _dt.timedelta(days=1), now=t + _dt.timedelta(hours=1), series=series)
        return next(r for r in a.comparison() if r["metric"] == metric)["best"]

    assert best("mos", 4.3695, 4.3694) is None
    assert best("mos", 4.37, 4.30) == "old"
    assert best("rtt_p50_ms", 12.0, 9.5) == "new"
