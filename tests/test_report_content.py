"""What a manager reads in a report, against a small planted history whose
figures are known by construction: the plain-language summary, the call
platform table (planted ``stream.platform.*`` checks), the failover drill list,
coverage holes named in text and drawn on the charts, the trend rule, a run
still in progress left out, and no empty headings (Markdown and HTML)."""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser

import pytest

from harness import history
from harness.profile import load_profile
from harness.reports import build_report, render
from harness.store import Store
from harness.verdicts import Check
from tests.fixtures.history import write_profile

UTC = dt.timezone.utc
END = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NOW = END + dt.timedelta(minutes=1)
SINCE = NOW - dt.timedelta(days=3)                      # 2026-11-17 12:01
HOLE = (dt.datetime(2026, 11, 18, 2, 0, tzinfo=UTC), dt.datetime(2026, 11, 19, 9, 0, tzinfo=UTC))
H = dt.timedelta(hours=1)

# old meets Teams: every figure well inside; the worst is jitter 15.6 ms of 30 ms:
# score = 100 * (1 - 15.6 / (2 * 30)) = 74 (harness.platforms.Requirement.score)
OLD_TEAMS = {"latency": 13, "rtt": 26, "loss_15s": 0.26, "jitter_15s": 15.6, "loss_200ms": 2.6, "reorder": 0.013}
# new fails one: loss in the worst 15 s 1.5 % > 1 %: score 100 * (1 - 1.5 / 2) = 25
NEW_TEAMS = {**OLD_TEAMS, "jitter_15s": 3.0, "loss_15s": 1.5}
NEW_FAIL_REASON = "loss in the worst 15 s window 1.5 % > 1 % limit"
LIMITS = {"latency": 50, "rtt": 100, "loss_15s": 1.0, "jitter_15s": 30, "loss_200ms": 10.0, "reorder": 0.05}


def _platform_checks(figures: dict) -> list[Check]:
    out = []
    for key, m in figures.items():
        ok = m <= LIMITS[key]
        out.append(Check(f"stream.platform.teams.{key}", "pass" if ok else "fail", m, LIMITS[key], "",
                         LIMITS[key] - m, f"{key} ok" if ok else NEW_FAIL_REASON))
    return out


def _raw(rtt: float, jitter: float) -> dict:
    return {"stream": {"rtt_ms": {"p50": rtt}, "jitter_ms": {"up": jitter, "down": jitter},
                       "loss_pct": {"up": 0.0, "down": 0.0}, "mos": 4.3}}


MOS_OK = Check("stream.mos", "pass", 4.3, 4.0, "", 0.3, "MOS 4.3 >= 4 minimum")


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("planted")
    path = write_profile(folder, (NOW - dt.timedelta(days=20)).date())
    path.write_text(path.read_text().replace("  other_mbps: 5\n", "  other_mbps: 5\n  platforms: [teams, zoom]\n"))
    profile = load_profile(path)
    store = Store(folder / "history.sqlite")
    t = END - dt.timedelta(days=3) + dt.timedelta(minutes=5)        # 2026-11-17 12:05, hourly to END
    runs = []
    while t <= END:
        if not HOLE[0] <= t < HOLE[1]:
            runs.append(t)
        t += H
    last = runs[-1]
    with store.batch():
        for i, t in enumerate(runs):
            rid = store.begin_run(profile.site, {}, "t", started_at=t)
            capacity = {"capacity": {"max_calls": 40 + i}} if t >= last - 2 * H else {}
            old_checks = [MOS_OK] + (_platform_checks(OLD_TEAMS) if t == last else [])
            new_checks = [MOS_OK] + (_platform_checks(NEW_TEAMS) if t == last else [])
            store.add_circuit_result(rid, "old", "GO", old_checks, {**_raw(30.0, 4.0), **capacity})
            store.add_circuit_result(rid, "new", "GO" if t != last else "NO-GO", new_checks,
                                     {**_raw(20.0, 2.0), **capacity})
            rid = store.finish_run(rid, "GO", finished_at=t + dt.timedelta(seconds=30))
        # a run that started a minute ago and has not finished: not counted. A run is one
        # transaction now; an older cutover committed a run in steps (begun, each circuit,
        # finished), so its database can hold one in progress: written as it did.
        rid = store.begin_run(profile.site, {}, "t", started_at=END + dt.timedelta(seconds=30))
        store.add_circuit_result(rid, "new", "NO-GO",
                                 [Check("stream.mos", "fail", 2.0, 4.0, "", -2.0, "MOS 2 < 4 minimum")],
                                 _raw(900.0, 90.0))
        rid = store.finish_run(rid, "NO-GO")
        store._db.execute("UPDATE runs SET finished_at = NULL, verdict = NULL WHERE id = ?", (rid,))
        # two failover drills on backup: one passed, one failed to recover
        for at, ok in ((dt.datetime(2026, 11, 10, 9, 0, tzinfo=UTC), True),
                       (dt.datetime(2026, 11, 19, 10, 0, tzinfo=UTC), False)):
            rid = store.begin_run(profile.site, {}, "t", started_at=at, kind="drill")
            raw = {"failover": {"max_gap_ms": {"rtt": 640.0 if ok else 4200.0}, "max_gap_ms_allowed": 1000,
                                "interruptions": [{}], "source_changed": True, "recovered": ok,
                                "recovery_s": 2.5 if ok else None, "mos_before": 4.4,
                                "mos_after": 4.3 if ok else None}}
            store.add_circuit_result(rid, "backup", "GO" if ok else "NO-GO", [], raw)
            rid = store.finish_run(rid, "GO" if ok else "NO-GO", finished_at=at + dt.timedelta(minutes=2))
    rep = build_report(profile, store, since=SINCE, now=NOW)
    yield rep, store
    store.close()


def test_in_progress_run_is_not_counted(planted):
    rep, store = planted
    n_finished = len([r for r in store.runs(rep.site, since=SINCE) if r.complete])
    assert rep.analysis.runs == n_finished == 3 * 24 - 31 + 0     # 72 hourly slots, the 31-hour hole
    assert [r.finished_at for r in rep.in_progress] == [None]
    new = rep.analysis.circuits["new"]
    assert new.latest_verdict == "NO-GO" and new.latest_at == END - dt.timedelta(minutes=55)
    assert max(v for _, v in new.series["rtt_p50_ms"]) == 20.0          # its 900 ms is not drawn
    assert "has not finished and is not counted" in render(rep, "md").split("\n")[2]
    assert json.loads(render(rep, "json"))["in_progress"][0]["started_at"] == "2026-11-20T12:00:30Z"


def test_summary_sentences(planted):
    rep, _ = planted
    s = rep.to_dict()["summary"]
    text = " ".join(s)
    assert "Not ready: new failed its latest check." in s
    assert "'Voice VLAN configured and tagged' is not signed off" in text
    assert "check" not in text.replace("latest check", "").replace("checklist", "")   # no check ids
    assert "stream." not in text
    g = rep.gate
    # the parallel run started 20 days ago; no day of the planted history holds 18 measured hours
    assert "Parallel run: day 20, 0 of the 14 required days fully measured." in text
    assert (f"the termination notice must go out by {g.notice_by.isoformat()} for the old service to be "
            f"disconnected on {g.disconnect_on.isoformat()}") in text
    # coverage by hand: 2026-11-17 12:00 .. 11-20 12:00 -> 72 whole hours (the hour in progress
    # holds only the unfinished run: not counted); 31 of them in the hole: 41 / 72 = 56.9 %
    assert "old 56.9 % of 72 hours (longest hole: no measurements 2026-11-18 02:00 to 2026-11-19 09:00 UTC)" in text
    assert ("Microsoft Teams (client to Microsoft edge): old meets it (6 of 6), new does not (1 of 6 requirements "
            f"missed: {NEW_FAIL_REASON}), backup not measured.") in s
    assert "Zoom Phone: old not measured, new not measured, backup not measured." in s
    assert any(x.startswith("Last failover drill: backup FAILED on 2026-11-19 10:00 UTC") for x in s)
    md = render(rep, "md")
    assert md.index("## Summary") < md.index("## Termination gate")
    assert "Not ready: new failed its latest check." in md


def test_platform_table_markdown_html_json(planted):
    rep, _ = planted
    md = render(rep, "md")
    row = next(line for line in md.splitlines() if line.startswith("| Microsoft Teams"))
    assert row == ("| Microsoft Teams (client to Microsoft edge) | meets 6 of 6, score 74 | "
                   f"fails 1 of 6, score 25: {NEW_FAIL_REASON.replace('>', '&gt;')} | not measured |")
    assert "| Zoom Phone | not measured | not measured | not measured |" in md
    html = render(rep, "html")
    assert f"fails 1 of 6, score 25: {NEW_FAIL_REASON.replace('>', '&gt;')}" in html and 'id="platforms"' in html
    j = json.loads(render(rep, "json"))["platforms"]
    assert j["teams"]["circuits"]["old"] == {"meets": True, "score": 74.0, "failed": [], "passed": 6, "total": 6,
                                             "title": "Microsoft Teams (client to Microsoft edge)"}
    assert j["teams"]["circuits"]["new"]["failed"] == [{"requirement": "loss_15s", "reason": NEW_FAIL_REASON,
                                                        "status": "fail"}]
    assert j["teams"]["circuits"]["backup"] is None and j["zoom"]["planned"] is True


def test_drill_list(planted):
    rep, _ = planted
    md = render(rep, "md")
    rows = [line for line in md.splitlines() if line.startswith("| 2026-11-") and "| backup |" in line]
    assert rows == ["| 2026-11-10 09:00 UTC | backup | GO | 640 ms (allowed 1000) | yes | yes | 2.5 s | 4.4 / 4.3 |",
                    "| 2026-11-19 10:00 UTC | backup | NO-GO | 4200 ms (allowed 1000) | yes | NO | - | 4.4 / - |"]
    drills = json.loads(render(rep, "json"))["drills"]
    assert [(d["at"], d["recovered"], d["max_gap_ms"]) for d in drills] == [
        ("2026-11-10T09:00:00Z", True, 640.0), ("2026-11-19T10:00:00Z", False, 4200.0)]


def test_holes_named_and_drawn(planted):
    rep, _ = planted
    md = render(rep, "md")
    assert "no measurements 2026-11-18 02:00 to 2026-11-19 09:00 UTC" in md
    html = render(rep, "html")
    svgs = re.findall(r'<svg class="chart" data-metric="([a-z-]+)".*?</svg>', html)
    assert svgs[:2] == ["latency", "jitter-up"]
    latency = re.search(r'<svg class="chart" data-metric="latency".*?</svg>', html).group(0)
    gaps = re.findall(r'<rect class="gap" x="([\d.]+)" y="\d+" width="([\d.]+)"[^>]*><title>([^<]*)</title>', latency)
    # the hole on both circuits, each shaded once, its span named in the title
    assert [g[2] for g in gaps] == ["old: no measurements 2026-11-18 02:00 to 2026-11-19 09:00 UTC",
                                    "new: no measurements 2026-11-18 02:00 to 2026-11-19 09:00 UTC"]
    # x axis = the window: plot 52..548 px over 3 days; the hole starts 13 h 59 min after SINCE
    # (52 + 496 * 839 / 4320 = 148.3) and lasts 31 h (496 * 31 / 72 = 213.6 px)
    assert float(gaps[0][0]) == pytest.approx(148.3, abs=0.1)
    assert float(gaps[0][1]) == pytest.approx(213.6, abs=0.1)
    # one chart per metric, one line per circuit measured
    lines = re.findall(r'<polyline class="series" data-series="([^"]+)"', latency)
    assert lines == ["old", "new", "backup"]
    assert 'data-points="0"' in latency                              # backup: nothing measured, no points


def test_trend_rule(planted):
    m = history.METRIC_BY_KEY["rtt_p50_ms"]
    t0 = END
    few = history.summarize(m, [(t0, 10.0), (t0 + dt.timedelta(minutes=2), 10.5), (t0 + dt.timedelta(minutes=5), 11.0)])
    # 3 samples over 5 min once read "worse (+288 ms/day)": now no trend and no slope
    assert few.trend is None and few.slope_per_day is None and few.span_hours == pytest.approx(5 / 60)
    short = history.summarize(m, [(t0 + dt.timedelta(hours=h), 10.0 + h) for h in range(10)])   # 9 h
    assert short.trend is None
    enough = history.summarize(m, [(t0 + dt.timedelta(hours=8 * k), 10.0 + k) for k in range(4)])  # 24 h
    assert enough.trend == "worse" and enough.slope_per_day == pytest.approx(3.0)
    rep, _ = planted
    md = render(rep, "md")
    # capacity was measured in the last 3 runs only (2 h apart)
    row = next(line for line in md.splitlines() if line.startswith("| old | Capacity |"))
    assert row.endswith("| too little data (3 samples over 2h; a trend needs 4 over 24 h) |")


class _Headings(HTMLParser):
    def __init__(self):
        super().__init__()
        self.seq: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.seq.append(("start", tag))

    def handle_data(self, data):
        if data.strip():
            self.seq.append(("text", data.strip()))


def _empty_md_sections(md: str) -> list[str]:
    lines = md.splitlines()
    heads = [i for i, line in enumerate(lines) if line.startswith("#")]
    empty = []
    for i, j in zip(heads, heads[1:] + [len(lines)]):
        if not any(line.strip() for line in lines[i + 1:j]) and not lines[j if j < len(lines) else i].startswith("###"):
            empty.append(lines[i])
    return empty


@pytest.mark.parametrize("window", [dt.timedelta(days=3), dt.timedelta(minutes=20)])
def test_no_empty_headings(planted, window):
    rep, store = planted
    small = build_report(rep.profile, store, since=NOW - window, now=NOW)
    for r in (rep, small):
        md = render(r, "md")
        assert _empty_md_sections(md) == [], _empty_md_sections(md)
        p = _Headings()
        p.feed(render(r, "html"))
        for k, (kind, tag) in enumerate(p.seq):
            if kind == "start" and tag == "h2":
                following = [x for x in p.seq[k + 1:] if x != ("start", "span")]
                # the heading's own text, then something that is not the next heading
                nxt = next(x for x in following[1:] if x[0] == "start" or x[0] == "text")
                assert nxt != ("start", "h2"), p.seq[k:k + 4]


def test_window_axis_labels_are_days():
    from harness.reports.charts import time_ticks
    week = time_ticks(dt.datetime(2026, 11, 13, 12, 1, tzinfo=UTC), dt.datetime(2026, 11, 20, 12, 1, tzinfo=UTC))
    assert [label for _, label, _ in week] == ["11-14", "11-15", "11-16", "11-17", "11-18", "11-19", "11-20"]
    month = time_ticks(dt.datetime(2026, 10, 21, 12, 1, tzinfo=UTC), dt.datetime(2026, 11, 20, 12, 1, tzinfo=UTC))
    assert [label for _, label, _ in month] == ["10-22", "10-27", "11-01", "11-06", "11-11", "11-16"]  # every 5th day


def test_only_the_unfinished_latest_run_is_left_out():
    """A run whose process died (unfinished, later runs after it) stays evidence; the
    latest unfinished one is in progress; with --as-of, one that finished after the
    report's time was still running then."""
    from harness.history import unfinished_latest as _unfinished_latest
    from harness.store import RunRecord
    t = END - 3 * H

    def run(i, fin):
        return RunRecord(i, "s", t + i * H, fin, "GO", "check")

    died = [run(0, None), run(1, t + H + dt.timedelta(seconds=30))]
    assert _unfinished_latest(died, NOW) == []
    running = died + [run(2, None)]
    assert [r.id for r in _unfinished_latest(running, NOW)] == [2]
    later = died + [run(2, t + 2 * H + dt.timedelta(seconds=30))]
    assert [r.id for r in _unfinished_latest(later, t + 2 * H + dt.timedelta(seconds=10))] == [2]
    assert _unfinished_latest(later, NOW) == []


@pytest.mark.parametrize("days", [3, 19])
def test_the_reports_gate_is_cutover_gates(planted, days):
    """Whether the report shares its read with the gate (a window reaching back to the
    parallel run: 19 days) or the gate reads its own (3 days), the report's gate is
    `cutover gate`'s: the in-progress run's stored circuit and the stored drills included."""
    from harness import gate
    rep, store = planted
    r = build_report(rep.profile, store, since=NOW - dt.timedelta(days=days), now=NOW)
    want = gate.decide(rep.profile, store, now=NOW).to_dict()
    assert r.gate.to_dict() == want
    assert any("failover drill on backup FAILED" in b for b in want["blocking"])
