"""`cutover check` runs the profile's site checks after the built-in suite:
passing, failing and crashing checks land in the verdict, the stored run and
the JUnit report with their readable messages."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from harness.store import Store
from tests.conftest import FIXTURES, run_cli
from tests.test_pytest_plugin import reflector  # noqa: F401  (fixture)

CHECKS = '''
from harness.sitecheck import expect_mos, expect_rtt

def test_voice_ok(circuit, probe, thresholds):
    expect_mos(circuit, probe("stream", duration_s=1), thresholds.mos_min)

def test_rtt_impossible(circuit, probe):
    expect_rtt(circuit, probe("stream", duration_s=1), 0.0)

def test_crashes(circuit):
    {}["missing"]
'''


def test_check_runs_site_checks(tmp_path, reflector):  # noqa: F811
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "test_site.py").write_text(CHECKS)
    text = (FIXTURES / "profiles" / "valid.yaml").read_text()
    text = text.replace("198.51.100.7:862", f"127.0.0.1:{reflector}").replace(
        "203.0.113.20:862", f"127.0.0.1:{reflector}") + "checks: ./checks\n"
    (tmp_path / "site.yaml").write_text(text)
    db, reports = tmp_path / "h.sqlite", tmp_path / "reports"
    r = run_cli("check", str(tmp_path / "site.yaml"), "--circuit", "new", "--step", "site",
                "--db", str(db), "--report-dir", str(reports), "--json", timeout=300)
    assert "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    assert r.returncode == 1 and out["verdict"] == "NO-GO"          # a failing site check blocks
    checks = {c["id"]: c for c in out["circuits"]["new"]["checks"]}
    assert checks["site.test_voice_ok"]["status"] == "pass"
    assert checks["site.test_rtt_impossible"]["status"] == "fail"
    assert checks["site.test_rtt_impossible"]["reason"].startswith("new: RTT p50 ")
    assert checks["site.test_crashes"]["status"] == "error"
    assert "KeyError" in checks["site.test_crashes"]["reason"]

    # the stored run has the same checks
    with Store(db) as store:
        run = store.latest_run("Test site")
        stored = {c.id: c.status for c in run.circuits["new"].checks}
    assert stored == {"site.test_voice_ok": "pass", "site.test_rtt_impossible": "fail",
                      "site.test_crashes": "error"}

    # and the JUnit report: one testcase per check, failure message readable
    junit = ET.parse(next(reports.glob("*.xml"))).getroot()
    cases = {c.get("name"): c for c in junit.iter("testcase")}
    failing = [c for name, c in cases.items() if "test_rtt_impossible" in name]
    assert len(failing) == 1
    failure = failing[0].find("failure")
    assert failure is not None and "new: RTT p50" in (failure.get("message") or "")
    crashing = [c for name, c in cases.items() if "test_crashes" in name][0]
    assert crashing.find("error") is not None or crashing.find("failure") is not None
