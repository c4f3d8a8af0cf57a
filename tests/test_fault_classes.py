"""Who is at fault (issue #13): every non-passing check carries a cause class,
and only the network's problems become outages and SLA-claim deadlines.

Each case goes through `cutover check` (the real CLI, in-process with
CliRunner where a step must be made to raise, else a subprocess) and the
stored history (harness.history over the run the CLI stored).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import history
from harness.cli import cli as cli_group
from harness.profile import load_profile
from harness.store import Store
from tests.conftest import ROOT, needs_root, run_cli
from tests.harness_procs import ReflectorProc, closed_udp_port, demo_profile

PROFILE = """\
site: Fault lab
planned: {{calls: 4, codec: g711, ptime_ms: 20}}
circuits:
{circuits}
cutover:
  parallel_run_start: 2026-11-01
{extra}"""


def ping_only_profile(folder: Path, extra: str = "", key_file: str | None = None) -> Path:
    """Two circuits that only ping loopback (latency and path steps: quick)."""
    circuits = ""
    for name, role in (("old", "old"), ("new", "new")):
        circuits += f"  - {{name: {name}, role: {role}, down_mbps: 10, up_mbps: 10, ping: 127.0.0.1}}\n"
    path = folder / "site.yaml"
    path.write_text(PROFILE.format(circuits=circuits.rstrip("\n"), extra=extra))
    return path


def stored(db: Path, site: str):
    with Store(db) as store:
        return store.runs(site)


def analysis(profile_path: Path, db: Path):
    profile = load_profile(profile_path)
    with Store(db) as store:
        return history.analyze(history.load_runs(store, profile.site), profile)


def test_exception_in_a_step_is_an_internal_error_exit_70(tmp_path, monkeypatch):
    from harness.suite import latency

    def broken(*a, **kw):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'NoneType'")

    monkeypatch.setattr(latency, "measure", broken)
    monkeypatch.setenv("CUTOVER_CRASH_DIR", str(tmp_path / "crashes"))
    prof = ping_only_profile(tmp_path)
    db = tmp_path / "h.sqlite"
    r = CliRunner().invoke(cli_group, ["check", str(prof), "--db", str(db), "--json", "--quiet",
                                       "--report-dir", str(tmp_path / "rep")])
    assert r.exit_code == 70, (r.output, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "a bug in cutover" in lines[0] and "step latency" in lines[0]
    crash = Path(lines[0].split("traceback written to ")[1].split(";")[0])
    assert crash.parent == tmp_path / "crashes" and "TypeError" in crash.read_text()
    assert "Traceback (most recent call last)" in crash.read_text()
    out = json.loads(r.stdout)
    assert out["internal_error"] is True
    for name in ("old", "new"):
        (bug,) = [c for c in out["circuits"][name]["checks"] if c["id"] == "latency.measured"]
        assert bug["status"] == "error" and bug["cause"] == "internal_error"
    # stored as such, and never an outage
    (run,) = stored(db, "Fault lab")
    assert {c.cause for c in run.circuits["new"].checks if c.id == "latency.measured"} == {"internal_error"}
    a = analysis(prof, db)
    assert a.all_outages() == [] and a.circuits["new"].gaps == 1
    # the report lists it
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "internal error in cutover (latency)" in md


def test_site_check_that_raises_is_a_gap_of_that_check(tmp_path):
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "test_site.py").write_text(
        "def test_pbx_reachable(circuit):\n"
        "    raise RuntimeError('pbx inventory file is corrupt')\n"
        "def test_ok(circuit):\n"
        "    assert circuit.name\n")
    prof = ping_only_profile(tmp_path, extra="checks: checks\n")
    db = tmp_path / "h.sqlite"
    r = run_cli("check", str(prof), "--circuit", "new", "--db", str(db), "--json", timeout=240)
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    by_id = {c["id"]: c for c in out["circuits"]["new"]["checks"]}
    raised = by_id["site.test_pbx_reachable"]
    assert raised["status"] == "error" and raised["cause"] == "measurement_gap"
    assert "pbx inventory file is corrupt" in raised["reason"]
    assert by_id["site.test_ok"]["status"] == "pass"
    assert out["internal_error"] is False
    assert analysis(prof, db).all_outages() == []


def test_unreadable_key_file_is_a_gap_not_an_outage(tmp_path, monkeypatch):
    """A key file that is empty when the run begins is refused as bad input (the
    profile check reads it): exit 2, nothing stored. One that becomes unreadable
    after the profile was read (truncated by a key rotation while the run starts)
    is our side's problem during the run: measurement gaps, no outage."""
    prof = demo_profile(tmp_path / "demo.yaml", closed_udp_port(), closed_udp_port())
    key = tmp_path / "site.key"
    key.write_bytes(b"")
    key.chmod(0o600)
    text = prof.read_text().replace("    source: 127.0.0.3", "    source: 127.0.0.3\n    key_file: site.key")
    prof.write_text(text)
    db = tmp_path / "h.sqlite"
    r = run_cli("check", str(prof), "--circuit", "new", "--db", str(db), "--json", timeout=240)
    assert r.returncode == 2 and "key_file" in r.stderr and "is empty" in r.stderr
    assert not db.exists() or stored(db, "Demo site (loopback)") == []

    key.write_bytes(b"a-32-byte-pre-shared-key-0123456")
    from harness.cli import cmd_check
    real = cmd_check.load_profile_or_exit

    def load_then_truncate(path):
        profile = real(path)
        key.write_bytes(b"")          # the file changes under the running check
        return profile

    monkeypatch.setattr(cmd_check, "load_profile_or_exit", load_then_truncate)
    r = CliRunner().invoke(cli_group, ["check", str(prof), "--circuit", "new", "--db", str(db), "--json",
                                       "--quiet"])
    out = json.loads(r.stdout)
    new = out["circuits"]["new"]["checks"]
    keyed = [c for c in new if "key_file" in c["reason"]]
    assert {c["id"] for c in keyed} >= {"stream.measured", "bandwidth.measured", "capacity.measured"}
    assert all(c["status"] == "error" and c["cause"] == "measurement_gap" for c in keyed)
    assert "site.key" in keyed[0]["reason"] and "is empty" in keyed[0]["reason"]
    assert r.exit_code in (1, 3) and out["internal_error"] is False
    key.write_bytes(b"a-32-byte-pre-shared-key-0123456")   # so the profile loads for the analysis
    assert analysis(prof, db).all_outages() == []


@needs_root
def test_no_icmp_permission_is_a_gap_not_an_outage(tmp_path):
    """Root without CAP_NET_RAW (setpriv drops it from the bounding set): no raw
    ICMP socket, so the path step cannot trace and latency falls back."""
    prof = ping_only_profile(tmp_path)
    db = tmp_path / "h.sqlite"
    env = dict(os.environ)
    env.pop("CUTOVER_DEBUG", None)
    r = subprocess.run(["setpriv", "--bounding-set=-net_raw", "--inh-caps=-net_raw", sys.executable, "-m",
                        "harness", "check", str(prof), "--circuit", "new", "--db", str(db), "--json"],
                       capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    out = json.loads(r.stdout)
    checks = {c["id"]: c for c in out["circuits"]["new"]["checks"]}
    assert checks["path.trace"]["status"] == "warn" and checks["path.trace"]["cause"] == "measurement_gap"
    assert checks["latency.rtt"]["status"] == "pass"          # measured by the fallback
    assert r.returncode == 0, r.stderr
    assert analysis(prof, db).all_outages() == []


@pytest.fixture
def reflector(tmp_path):
    r = ReflectorProc(tmp_path / "reflector.log")
    yield r
    r.stop()


def test_shared_reflector_down_for_every_circuit_is_one_far_end_gap(tmp_path, reflector):
    prof = demo_profile(tmp_path / "demo.yaml", reflector.port, reflector.port)
    db = tmp_path / "h.sqlite"
    reflector.stop()           # the far end stops for every circuit at once
    r = run_cli("check", str(prof), "--quick", "--db", str(db), "--json", timeout=300)
    out = json.loads(r.stdout)
    (gap,) = out["far_end_gaps"]
    assert gap["far_end"] == f"127.0.0.1:{reflector.port}" and gap["circuits"] == ["old", "new"]
    for name in ("old", "new"):
        far = [c for c in out["circuits"][name]["checks"] if c["id"].split(".")[0] in
               ("stream", "bandwidth", "capacity")]
        assert far and all(c["cause"] == "measurement_gap" for c in far)
        assert all(c["reason"].startswith("far end down on every circuit (old, new), not the carrier: ")
                   for c in far)
    a = analysis(prof, db)
    assert a.all_outages() == []                                # no carrier outage


@needs_root
def test_one_circuits_path_dead_other_reaches_the_reflector_is_its_outage(tmp_path, lab):
    """In a namespace of our own: a reflector on its loopback, circuits from
    127.0.0.2 (old) and 127.0.0.3 (new); an iptables rule drops new's packets
    to the reflector, so only new loses the far end: an outage of new with a
    claim deadline, none for old."""
    lab.chain(["site", "isp"])
    cutover = [sys.executable, "-m", "harness"]
    lab.run("site", ["ip", "link", "set", "lo", "up"])
    lab.popen("site", [*cutover, "reflector", "--listen", "127.0.0.1:8620"], cwd=str(ROOT))
    prof = demo_profile(tmp_path / "demo.yaml", 8620, 8620)
    db = tmp_path / "h.sqlite"
    argv = [*cutover, "check", str(prof), "--quick", "--db", str(db), "--json"]   # full runs: outages count them
    first = lab.run("site", argv, check=False, timeout=300)
    assert first.returncode in (0, 1), first.stderr
    lab.run("site", ["iptables", "-A", "INPUT", "-i", "lo", "-s", "127.0.0.3", "-p", "udp", "--dport", "8620",
                     "-j", "DROP"])
    second = lab.run("site", argv, check=False, timeout=300)
    out = json.loads(second.stdout)
    assert out["far_end_gaps"] == []
    new = [c for c in out["circuits"]["new"]["checks"] if c["id"].startswith("stream")]
    assert new and all(c["cause"] == "network" for c in new)
    lab.run("site", ["iptables", "-D", "INPUT", "-i", "lo", "-s", "127.0.0.3", "-p", "udp", "--dport", "8620",
                     "-j", "DROP"])
    third = lab.run("site", argv, check=False, timeout=300)
    assert third.returncode in (0, 1), third.stderr
    a = analysis(prof, db)
    runs = stored(db, "Demo site (loopback)")
    outcomes = {n: [history.outcome(r.circuits[n]) for r in runs] for n in ("old", "new")}
    why = f"outcomes {outcomes}; outages {[o.to_dict() for o in a.all_outages()]}"
    # run 2: new lost the far end (network), old reached the same reflector
    assert outcomes["new"][1] in ("unreachable", "fail"), why
    old2 = runs[1].circuits["old"].checks
    assert not [c for c in old2 if c.step == "stream" and c.status in ("fail", "error")], why
    (o,) = [o for o in a.all_outages() if o.circuit == "new" and o.start <= runs[1].started_at
            and (o.end is None or o.end > runs[1].started_at)]
    assert any(e.startswith("stream.") for e in o.evidence), why
    assert not [x for x in a.all_outages() if x.circuit == "old" and x.opened_by_run == runs[1].id], why
    assert o.end is None or o.claim_by == o.end + dt.timedelta(hours=24)
    if outcomes["new"] == ["pass", outcomes["new"][1], "pass"]:   # the usual case on an idle machine
        assert o.start == runs[1].started_at and o.end == runs[2].started_at and o.opened_by_run == runs[1].id
        assert o.claim_by == o.end + dt.timedelta(hours=24)


def test_a_step_module_that_cannot_load_is_a_named_gap_never_go(tmp_path, monkeypatch):
    """A suite step whose module is missing from the build (here: a name in the
    suite's ORDER with no module behind it) is a measurement gap named in the
    verdict: the circuit cannot be GO, whatever the other steps measured."""
    from harness import suite
    monkeypatch.setattr(suite, "ORDER", (*suite.ORDER, "voicemail"))
    monkeypatch.setattr(suite, "_cache", None)
    prof = ping_only_profile(tmp_path)
    db = tmp_path / "h.sqlite"
    r = CliRunner().invoke(cli_group, ["check", str(prof), "--circuit", "new", "--db", str(db), "--json",
                                       "--quiet"])
    out = json.loads(r.stdout)
    new = out["circuits"]["new"]
    (gap,) = [c for c in new["checks"] if c["id"] == "voicemail.available"]
    assert gap["status"] == "error" and gap["cause"] == "measurement_gap"
    assert "step voicemail" in gap["reason"] and "harness.suite.voicemail" in gap["reason"]
    assert new["verdict"] != "GO" and out["verdict"] != "GO" and r.exit_code == 1
    assert any(c["id"] == "latency.rtt" and c["status"] == "pass" for c in new["checks"])


def test_a_bug_outside_the_steps_exits_70_with_one_line(tmp_path, monkeypatch, capsys):
    """An exception after the steps (here: in the far-end correlation) is also ours:
    the entry point exits 70 with one line naming the traceback file, no Python
    traceback on the terminal."""
    from harness.cli import main

    def broken(*a, **kw):
        raise KeyError("far_end")

    monkeypatch.setattr("harness.runner.correlate_far_end", broken)
    monkeypatch.setenv("CUTOVER_CRASH_DIR", str(tmp_path / "crashes"))
    monkeypatch.delenv("CUTOVER_DEBUG", raising=False)
    prof = ping_only_profile(tmp_path)
    monkeypatch.setattr(sys, "argv", ["cutover", "check", str(prof), "--circuit", "new", "--step", "latency",
                                      "--db", str(tmp_path / "h.sqlite"), "--quiet"])
    monkeypatch.setattr(sys, "stdout", sys.stdout)   # undo main()'s EPIPE guard after the test
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 70
    (line,) = err.strip().splitlines()
    assert "a bug in cutover" in line and "KeyError" in line and str(tmp_path / "crashes") in line
    crash = Path(line.split("traceback written to ")[1].split(";")[0])
    assert "Traceback (most recent call last)" in crash.read_text() and "correlate_far_end" not in line
    assert "Traceback" not in err
