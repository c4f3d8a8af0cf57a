"""`cutover check` end to end: the real CLI in a subprocess against a real
`cutover reflector` child process on loopback (the demo profile's circuits,
sources 127.0.0.2 and 127.0.0.3)."""

import json
import sqlite3
import xml.etree.ElementTree as ET

import pytest

from click.testing import CliRunner

from harness.cli import cli as cli_group
from tests.conftest import ROOT, run_cli
from tests.harness_procs import ReflectorProc, closed_udp_port, demo_profile

CONTRACT_CHECK_KEYS = {"id", "status", "measured", "required", "margin", "reason", "cause"}


@pytest.fixture(scope="module")
def reflector(tmp_path_factory):
    r = ReflectorProc(tmp_path_factory.mktemp("refl") / "reflector.log")
    yield r
    r.stop()


def _only_sender_warnings(circuit: dict) -> bool:
    """On a busy shared CI machine the stream probe may honestly warn that the
    *sender* fell behind; anything else must pass."""
    return all(c["status"] == "pass" or (c["status"] == "warn" and c["id"] == "stream.sender")
               for c in circuit["checks"])


def test_check_go_json_contract_reports_and_history(reflector, tmp_path):
    prof = demo_profile(tmp_path / "demo.yaml", reflector.port, reflector.port)
    db = tmp_path / "h.sqlite"
    prom = tmp_path / "cutover.prom"
    r = run_cli("check", str(prof), "--quick", "--step", "stream", "--db", str(db),
                "--report-dir", str(tmp_path / "rep"), "--prom-file", str(prom), "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)                      # exactly one JSON object on stdout
    assert set(out) == {"verdict", "circuits", "run_id", "internal_error", "far_end_gaps"}
    assert out["internal_error"] is False and out["far_end_gaps"] == []
    assert set(out["circuits"]) == {"old", "new"}
    for c in out["circuits"].values():
        assert set(c) == {"verdict", "checks"}
        assert all(set(ck) == CONTRACT_CHECK_KEYS for ck in c["checks"])
        ids = {ck["id"] for ck in c["checks"]}
        assert {"stream.mos", "stream.loss_up", "stream.loss_down", "stream.jitter_up", "stream.delay"} <= ids
        assert _only_sender_warnings(c), c
        assert c["verdict"] in ("GO", "WARN")
        mos = next(ck for ck in c["checks"] if ck["id"] == "stream.mos")
        assert 4.3 <= mos["measured"] <= 4.42        # unimpaired loopback, G.711: 4.37 (docs/contract.md §4)
    assert out["verdict"] in ("GO", "WARN")
    # the run is in the database with the same checks
    raw = sqlite3.connect(db)
    n = raw.execute("SELECT count(*) FROM checks WHERE run_id = ?", (out["run_id"],)).fetchone()[0]
    assert n == sum(len(c["checks"]) for c in out["circuits"].values())
    assert raw.execute("SELECT verdict FROM runs WHERE id = ?", (out["run_id"],)).fetchone()[0] == out["verdict"]
    # reports (helper D2's writer) and the Prometheus file
    junit = ET.parse(tmp_path / "rep" / "junit.xml").getroot()
    assert len(junit.findall(".//testcase")) >= n
    assert (tmp_path / "rep" / "report.html").stat().st_size > 0
    assert "cutover_" in prom.read_text()


def test_one_reflector_down_no_go_for_it_other_measured(reflector, tmp_path):
    prof = demo_profile(tmp_path / "demo.yaml", closed_udp_port(), reflector.port)
    r = run_cli("check", str(prof), "--quick", "--step", "stream", "--db", str(tmp_path / "h.sqlite"), "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    old, new = out["circuits"]["old"], out["circuits"]["new"]
    assert out["verdict"] == "NO-GO" and old["verdict"] == "NO-GO"
    (err,) = old["checks"]
    assert err["status"] == "error" and "is down: nothing listens on UDP port" in err["reason"]
    assert _only_sender_warnings(new)
    assert any(c["id"] == "stream.mos" and c["status"] == "pass" for c in new["checks"])


def test_table_output_and_nothing_measured_exit_3(tmp_path):
    prof = demo_profile(tmp_path / "demo.yaml", closed_udp_port(), closed_udp_port())
    r = run_cli("check", str(prof), "--quick", "--step", "stream", "--db", str(tmp_path / "h.sqlite"))
    assert r.returncode == 3, r.stderr
    assert "Verdict: NO-GO" in r.stdout and "is down" in r.stdout
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--circuit", "nope"], "no circuit 'nope'"),
    (["--step", "dns"], "--step: no step 'dns'"),
    (["--report-dir", "pyproject.toml"], "exists and is not a folder"),
    (["--prom-file", "/nonexistent-dir/x.prom"], "does not exist"),
])
def test_bad_input_exit_2(tmp_path, args, message, monkeypatch):
    # in-process (click's runner): argument checks need no subprocess
    monkeypatch.chdir(ROOT)
    prof = demo_profile(tmp_path / "demo.yaml", 9, 9)
    r = CliRunner().invoke(cli_group, ["check", str(prof), "--db", str(tmp_path / "h.sqlite"), *args])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.exception
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_bad_profile_and_bad_db_exit_2(tmp_path):
    r = run_cli("check", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "no such file" in r.stderr
    prof = demo_profile(tmp_path / "demo.yaml", 9, 9)
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"not a database" * 200)
    r = run_cli("check", str(prof), "--db", str(junk))
    assert r.returncode == 2 and "not a usable cutover history database" in r.stderr
