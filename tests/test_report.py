"""Readiness reports over the 30-day history: JUnit (xml.etree and junitparser),
Markdown, JSON and the `cutover report` command."""

from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ET

import pytest

from harness.profile import load_profile
from harness.reports import FILE_NAMES, build_report, parse_formats, write_reports
from harness.store import Store
from tests.conftest import run_cli
from tests.fixtures.history import FIXED_END, cached_history

UTC = dt.timezone.utc
NOW = FIXED_END + dt.timedelta(minutes=1)
SINCE = NOW - dt.timedelta(days=7)
AS_OF = "2026-11-20T12:01Z"


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    fx = cached_history(tmp_path_factory)
    profile = load_profile(fx.profile_path)
    out = tmp_path_factory.mktemp("report")
    with Store(fx.db_path) as store:
        paths = write_reports(profile, store, out, since=SINCE, now=NOW)
        latest = store.latest_run(profile.site)
    return fx, profile, out, paths, latest


def test_all_four_files(written):
    fx, profile, out, paths, latest = written
    assert [p.name for p in paths] == ["report.md", "report.html", "report.json", "junit.xml"]
    assert all(p.stat().st_size > 500 for p in paths)
    assert not list(out.glob(".*tmp"))                    # atomic writes leave no temp files


def test_junit_one_testcase_per_check_of_the_latest_run(written):
    fx, profile, out, paths, latest = written
    root = ET.parse(out / "junit.xml").getroot()
    assert root.tag == "testsuites"
    # independently: the store's latest run has every circuit; its checks are the testcases
    want = {(name, c.id, c.status) for name, rec in latest.circuits.items() for c in rec.checks}
    got = set()
    for suite in root.findall("testsuite"):
        circuit = suite.find("properties/property[@name='circuit']").get("value")
        cases = suite.findall("testcase")
        assert int(suite.get("tests")) == len(cases)
        assert int(suite.get("failures")) == sum(1 for c in cases if c.find("failure") is not None)
        assert int(suite.get("errors")) == sum(1 for c in cases if c.find("error") is not None)
        for case in cases:
            status = ("fail" if case.find("failure") is not None else
                      "error" if case.find("error") is not None else None)
            got.add((circuit, case.get("name"), status))
    assert {(n, i) for n, i, _ in got} == {(n, i) for n, i, _ in want}
    # by hand: the last run (index 8639) has the 6 stream checks on old and new (no hourly
    # bandwidth, no daily capacity at that index) and one error check on backup (ongoing outage)
    assert int(root.get("tests")) == 13 == len(want)
    assert (int(root.get("failures")), int(root.get("errors"))) == (0, 1)
    err = root.find(".//testcase[@name='stream.reachable']/error")
    assert err.get("message") == "reflector 127.0.0.1:8620 did not answer: 0 of 250 packets came back"


def test_junit_reads_in_a_standard_consumer(written):
    junitparser = pytest.importorskip("junitparser")
    fx, profile, out, paths, latest = written
    xml = junitparser.JUnitXml.fromfile(str(out / "junit.xml"))
    cases = [(suite.name, case.name, [type(r).__name__ for r in case.result]) for suite in xml for case in suite]
    assert len(cases) == 13
    assert [c for c in cases if c[2]] == [("Harbour Street office / backup", "stream.reachable", ["Error"])]
    assert all(case.classname.startswith("cutover.Harbour_Street_office.") for suite in xml for case in suite)


def test_junit_for_a_given_run(tmp_path, written):
    fx, profile, out, paths, latest = written
    with Store(fx.db_path) as store:
        first = store.runs(profile.site, until=fx.start + dt.timedelta(minutes=1))[0]
        (p,) = write_reports(profile, store, tmp_path, ("junit",), since=SINCE, now=NOW, run_id=first.id)
    root = ET.parse(p).getroot()
    # run 0: stream (6) + hourly bandwidth (2) + daily capacity (1) per circuit, all passing
    assert int(root.get("tests")) == 27 and root.get("failures") == "0" and root.get("errors") == "0"
    assert root.find("testsuite/properties/property[@name='run_id']").get("value") == str(first.id)


def test_json_report_outages_and_claims(written):
    fx, profile, out, paths, latest = written
    d = json.loads((out / "report.json").read_text())
    assert d["site"] == "Harbour Street office" and d["verdict"] == "NO-GO"
    assert d["since"] == "2026-11-13T12:01:00Z" and d["until"] == "2026-11-20T12:01:00Z"
    iso = lambda t: t.strftime("%Y-%m-%dT%H:%M:%SZ") if t else None  # noqa: E731
    want = {(o.circuit, iso(o.start), iso(o.end), iso(o.end + dt.timedelta(hours=24)) if o.end else None)
            for o in fx.outages if o.start >= SINCE}
    got = {(o["circuit"], o["start"], o["end"], o["claim_by"]) for o in d["outages"]}
    assert got == want and len(got) == 3              # old x2 (11-14) and backup (ongoing) in the last 7 days
    assert d["outages"][0]["ongoing"] is True
    # every outage has a stable id: the circuit and its start to the minute, UTC
    assert {o["id"] for o in d["outages"]} == {f"{o.circuit}-{o.start:%Y%m%dT%H%MZ}"
                                              for o in fx.outages if o.start >= SINCE}
    assert d["gate"]["decision"] == "NO-GO"
    new = d["circuits"]["new"]
    assert new["runs"] == 2016 and new["passed"] == 2016
    assert set(new["metrics"]) >= {"rtt_p50_ms", "jitter_up_ms", "loss_down_pct", "mos", "down_mbps"}
    assert [r["best"] for r in d["comparison"] if r["metric"] == "rtt_p50_ms"] == ["new"]


def test_markdown_has_the_log_with_claim_deadlines(written):
    fx, profile, out, paths, latest = written
    md = (out / "report.md").read_text()
    for section in ("## Termination gate: NO-GO", "## Circuits: latest values", "## Old vs new",
                    "## Trends over the window", "## Daily pass rate", "## Outage and SLA breach log",
                    "## Latest checks"):
        assert section in md
    # old's failing episode at run 7000: 2026-11-14 19:25 to 19:55, claim by 11-15 19:55
    # each row starts with the outage's id, the one `cutover claim` takes
    assert "| old-20261114T1925Z | old | 2026-11-14 19:25 UTC | 2026-11-14 19:55 UTC | 30m | 6 | failed |" in md
    assert "| 2026-11-15 19:55 UTC |" in md
    assert "| backup-20261120T1145Z | backup | 2026-11-20 11:45 UTC | ongoing | 16m | 4 | unreachable |" in md


def test_parse_formats():
    assert parse_formats("md,html") == ("md", "html")
    assert parse_formats("all") == ("md", "html", "json", "junit")
    assert parse_formats(" JSON , xml ") == ("json", "junit")
    with pytest.raises(ValueError, match="unknown report format 'docx'"):
        parse_formats("md,docx")


# ---------------------------------------------------------------- CLI

def test_cli_report_json(tmp_path_factory, tmp_path):
    fx = cached_history(tmp_path_factory)
    r = run_cli("report", str(fx.profile_path), "--db", str(fx.db_path), "--as-of", AS_OF, "--since", "24h",
                "--format", "md,junit", "--out", str(tmp_path / "r"), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [p.rsplit("/", 1)[1] for p in d["files"]] == [FILE_NAMES["md"], FILE_NAMES["junit"]]
    assert d["runs"] == 288 and d["since"] == "2026-11-19T12:01:00Z"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["junit.xml", "report.md"]


@pytest.mark.parametrize("args,code,msg", [
    (["--since", "7x"], 2, "--since: '7x' is not a duration"),
    (["--format", "docx"], 2, "--format: unknown report format 'docx'"),
    (["--db", "/nonexistent/h.sqlite"], 3, "no history database at /nonexistent/h.sqlite"),
    (["--since", "1h", "--as-of", "2020-01-01"], 3, "no runs of site 'Harbour Street office'"),
])
def test_cli_report_bad_input(tmp_path_factory, tmp_path, args, code, msg):
    fx = cached_history(tmp_path_factory)
    if "--db" not in args:
        args = args + ["--db", str(fx.db_path)]
    r = run_cli("report", str(fx.profile_path), "--out", str(tmp_path / "r"), *args)
    assert r.returncode == code, r.stderr
    assert msg in r.stderr and "Traceback" not in r.stderr


def test_build_report_reads_failing_checks_and_the_latest_run_in_full(written):
    """The report's read (history.load_runs) holds only failing checks, except the
    latest run of each circuit, which is complete (the "latest checks" table)."""
    from harness import history
    fx, profile, out, paths, latest = written
    with Store(fx.db_path) as store:
        runs = history.load_runs(store, profile.site, since=SINCE)
    assert len(runs) == 2016
    for run in runs[:-1]:
        for rec in run.circuits.values():
            assert all(c.status in ("fail", "error") for c in rec.checks)
            assert bool(rec.checks) == (rec.verdict == "NO-GO")
    last = runs[-1]
    assert {n: len(r.checks) for n, r in last.circuits.items()} == {"old": 6, "new": 6, "backup": 1}
    assert {c.status for c in last.circuits["new"].checks} <= {"pass", "warn"}


def test_outage_straddling_the_window_start_keeps_its_true_start(written):
    fx, profile, out, paths, latest = written
    five = dt.timedelta(minutes=5)
    since = fx.start + 6010 * five + dt.timedelta(seconds=1)   # inside new's 30-run outage (runs 6000-6029)
    with Store(fx.db_path) as store:
        rep = build_report(profile, store, since=since, now=NOW)
    o = rep.analysis.circuits["new"].outages[0]
    assert (o.start, o.end, o.runs, o.starts_before_window) == (fx.start + 6000 * five, fx.start + 6030 * five,
                                                                30, False)
    assert o.claim_by == fx.start + 6030 * five + dt.timedelta(hours=24)


def test_summary_on_a_go(tmp_path, tmp_path_factory):
    """With every checklist item signed off the 30-day history's gate says GO: the summary
    says the new service is ready and gives the dates as the gate computed them."""
    import shutil
    fx = cached_history(tmp_path_factory)
    profile = load_profile(fx.profile_path)
    db = tmp_path / "history.sqlite"
    shutil.copy(fx.db_path, db)                      # the shared fixture stays unsigned
    with Store(db) as store:
        for item in ("voice-vlan", "failover", "porting"):
            store.signoff(profile.site, item, "Dana Lead", at=NOW - dt.timedelta(hours=1))
        rep = build_report(profile, store, since=SINCE, now=NOW)
    assert rep.gate.decision == "GO"
    s = rep.to_dict()["summary"]
    assert s[0] == "The new service is ready: every condition for terminating the old service holds."
    assert not any("cannot be terminated" in x for x in s)
    g = rep.gate
    assert (f"The new service was proven on {g.proven_on.isoformat()}; the termination notice "
            f"must go out by {g.notice_by.isoformat()} for the old service to be disconnected on "
            f"{g.disconnect_on.isoformat()}.") in " ".join(s)
