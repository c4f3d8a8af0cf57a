"""The site-check plugin, driven through pytest's own pytester, against a real
local reflector; and the site suite step's JUnit parsing and outcome mapping."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

from harness.profile import load_profile
from harness.suite import site as sitechecks
from tests.conftest import FIXTURES

PASSING_AND_FAILING = '''
import pytest
from harness.sitecheck import expect_mos, expect_rtt

def test_stream_meets_mos(circuit, probe, thresholds):
    r = probe("stream", duration_s=1)
    expect_mos(circuit, r, thresholds.mos_min)

def test_impossible_rtt(circuit, probe):
    r = probe("stream", duration_s=1)
    expect_rtt(circuit, r, 0.0)          # nobody has a 0 ms round trip: must fail, readably

@pytest.mark.cutover(circuit="new")
def test_only_on_new(circuit):
    assert circuit.name == "new"

def test_blows_up(circuit):
    raise RuntimeError("site check bug")
'''


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def reflector():
    port = _free_udp_port()
    proc = subprocess.Popen([sys.executable, "-m", "harness", "reflector", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    if proc.poll() is not None:
        pytest.skip(f"reflector did not start: {proc.stderr.read().decode()[-300:]}")
    yield port
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def site_profile(tmp_path, reflector):
    text = (FIXTURES / "profiles" / "valid.yaml").read_text()
    text = text.replace("198.51.100.7:862", f"127.0.0.1:{reflector}").replace(
        "203.0.113.20:862", f"127.0.0.1:{reflector}")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


def test_plugin_runs_site_checks(pytester, site_profile):
    pytester.makepyfile(test_site=PASSING_AND_FAILING)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess("--cutover-profile", str(site_profile), f"--junitxml={junit}",
                                           "-p", "no:cacheprovider")
    # 2 circuits x (mos pass, rtt fail, blows-up) + test_only_on_new once
    result.assert_outcomes(passed=3, failed=4)
    tests = sitechecks.parse_junit(junit.read_text())
    by = {(t["name"]): t for t in tests}
    assert by["test_stream_meets_mos[old]"]["outcome"] == "passed"
    assert by["test_only_on_new[new]"]["outcome"] == "passed"
    assert "test_only_on_new[old]" not in by
    failing = by["test_impossible_rtt[new]"]
    assert failing["outcome"] == "failed"
    assert failing["message"].startswith("AssertionError: new: RTT p50 ")
    assert "> 0 ms" in failing["message"]
    assert by["test_blows_up[old]"]["outcome"] == "error"
    assert "RuntimeError: site check bug" in by["test_blows_up[old]"]["message"]


def test_cutover_circuit_option(pytester, site_profile):
    pytester.makepyfile(test_site="def test_name(circuit):\n    assert circuit.name == 'old'\n")
    result = pytester.runpytest_subprocess("--cutover-profile", str(site_profile), "--cutover-circuit", "old")
    result.assert_outcomes(passed=1)
    result = pytester.runpytest_subprocess("--cutover-profile", str(site_profile), "--cutover-circuit", "nope")
    assert result.ret != 0
    assert "no circuit 'nope'" in result.stderr.str()


def test_bad_profile_is_a_usage_error(pytester):
    pytester.makepyfile(test_site="def test_x(site):\n    pass\n")
    result = pytester.runpytest_subprocess("--cutover-profile",
                                           str(FIXTURES / "profiles" / "bad-unknown-key.yaml"))
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "did you mean 'codec'" in result.stderr.str()


def test_without_profile_site_checks_skip(pytester):
    pytester.makepyfile(test_site="def test_x(site):\n    pass\n")
    result = pytester.runpytest_subprocess("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*needs --cutover-profile*"])


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" tests="4">
<testcase classname="test_site" name="test_ok[new]" time="0.1"/>
<testcase classname="test_site" name="test_mos[new]" time="0.1"><failure message="AssertionError: new: MOS 3.82 &lt; 4.0 (loss up 2.3 %)&#10;assert False">trace</failure></testcase>
<testcase classname="test_site" name="test_bug[new]" time="0.1"><failure message="ZeroDivisionError: division by zero">trace</failure></testcase>
<testcase classname="test_site" name="test_fixture[new]" time="0.1"><error message="failed on setup with &quot;OSError: boom&quot;">trace</error></testcase>
<testcase classname="test_site" name="test_skip[new]" time="0.0"><skipped message="not today"/></testcase>
</testsuite></testsuites>"""  # noqa: E501 (JUnit as pytest writes it: one line per test case)


def test_outcomes_become_checks():
    profile = load_profile(FIXTURES / "profiles" / "valid.yaml")
    raw = {"tests": sitechecks.parse_junit(JUNIT), "errors": []}
    checks = sitechecks.evaluate(profile, profile.circuit("new"), raw)
    got = {c.id: (c.status, c.reason) for c in checks}
    assert got["site.test_ok"][0] == "pass"
    assert got["site.test_mos"] == ("fail", "new: MOS 3.82 < 4.0 (loss up 2.3 %)")
    assert got["site.test_bug"][0] == "error" and "ZeroDivisionError" in got["site.test_bug"][1]
    assert got["site.test_fixture"][0] == "error" and "OSError: boom" in got["site.test_fixture"][1]
    assert "site.test_skip" not in got          # a skip is not evidence either way
    ET.fromstring(JUNIT)


def test_missing_checks_folder_is_an_error_check(tmp_path):
    text = (FIXTURES / "profiles" / "valid.yaml").read_text() + "checks: ./nowhere\n"
    (tmp_path / "site.yaml").write_text(text)
    profile = load_profile(tmp_path / "site.yaml")
    raw = sitechecks.measure(profile, profile.circuit("new"))
    checks = sitechecks.evaluate(profile, profile.circuit("new"), raw)
    assert [c.status for c in checks] == ["error"]
    assert "site checks folder not found" in checks[0].reason


def test_sitecheck_messages():
    from harness.sitecheck import expect_calls, expect_jitter, expect_loss, expect_mos
    r = {"mos": 3.82, "loss_pct": {"up": 2.3, "down": 0.0, "total": 2.3}, "jitter_ms": {"up": 4.0, "down": 31.5},
         "measured": True}
    with pytest.raises(AssertionError,
                       match=r"^new: MOS 3.82 < 4 \(loss up 2.3 %, jitter up 4 ms, jitter down 31.5 ms\)$"):
        expect_mos("new", r, 4.0)
    with pytest.raises(AssertionError, match=r"^new: loss up 2.3 % > 1 %$"):
        expect_loss("new", r, 1.0)
    with pytest.raises(AssertionError, match=r"^new: jitter down 31.5 ms > 30 ms$"):
        expect_jitter("new", r, 30)
    with pytest.raises(AssertionError, match="not measured: reflector down"):
        expect_mos("new", {"measured": False, "errors": ["reflector down"]}, 4.0)
    with pytest.raises(AssertionError, match=r"carries 40 calls < 60 planned \(limit: loss\)"):
        expect_calls("new", {"max_calls": 40, "limit": "loss"}, 60)
    expect_mos("new", {"mos": 4.3}, 4.0)   # no exception when good


def test_shipped_examples_on_demo_profile():
    """The README's command, as a new user runs it after the quick start: the
    plugin starts a loopback reflector itself (demo reflector 127.0.0.1:8620)."""
    from tests.conftest import ROOT
    if not _port_is_free("127.0.0.1", 8620):
        pytest.skip("127.0.0.1:8620 is in use (a demo reflector is running)")
    r = subprocess.run([sys.executable, "-m", "pytest", "--cutover-profile", "profiles/demo.yaml",
                        "profiles/checks/", "-q", "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    # 2 circuits x voice quality + the latency check on the new circuit only
    assert "3 passed" in r.stdout
    assert _port_is_free("127.0.0.1", 8620)     # the reflector it started is gone again


def _port_is_free(host: str, port: int) -> bool:
    from harness.pytest_plugin import _port_free
    return _port_free(host, port)
