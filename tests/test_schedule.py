"""`cutover schedule`: real scheduler subprocesses running real `cutover check`
children; tests/pause_in_write.py makes a child hang inside a write
transaction, so timeouts and kill -9 land mid-write."""

import datetime as dt
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from click.testing import CliRunner

from harness import schedule as S
from harness.cli import cli as cli_group
from harness.store import Store
from tests import pause_in_write
from tests.conftest import ROOT, run_cli
from tests.harness_procs import ReflectorProc, closed_udp_port, demo_profile

UTC = dt.timezone.utc


def _dead_profile(tmp_path: Path) -> Path:
    """Both reflectors down: each check takes ~1 s (Python start + preflight)."""
    return demo_profile(tmp_path / "demo.yaml", closed_udp_port(), closed_udp_port())


def _start(args, env=None):
    full = dict(os.environ)
    full.pop("CUTOVER_DEBUG", None)
    full.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "harness", "schedule", *args], cwd=ROOT, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc, timeout_s=60.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"scheduler ended early: {proc.stderr.read()}")
        time.sleep(0.05)
    assert path.exists(), "the child never paused inside its write"
    time.sleep(0.1)
    return int(path.read_text())


def _measuring_child(pid: int) -> bool:
    """The scheduler ``pid`` has a `cutover check` child that holds a socket
    (the reflector preflight or the stream: it is measuring)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return False
    for child in children:
        try:
            fds = list(Path(f"/proc/{child}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd).startswith("socket:"):
                    return True
            except OSError:
                continue
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def _finish(proc, timeout_s=60):
    try:
        out, err = proc.communicate(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    return out, err


# ---------------------------------------------------------------- pure parts

def test_every_slots_skip_missed_ones():
    e = S.Every(dt.timedelta(minutes=15))
    t0 = dt.datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
    assert e.next_after(t0, first=True) == t0
    assert e.next_after(t0 + dt.timedelta(minutes=3)) == t0 + dt.timedelta(minutes=15)
    assert e.next_after(t0 + dt.timedelta(minutes=15)) == t0 + dt.timedelta(minutes=15)
    # a run that took 40 minutes: the 08:15 and 08:30 slots are gone, next is 08:45
    assert e.next_after(t0 + dt.timedelta(minutes=40)) == t0 + dt.timedelta(minutes=45)


def test_cron_next():
    c = S.Cron("*/5 7-19 * * 1-5")
    sat = dt.datetime(2026, 11, 21, 12, 1, tzinfo=UTC)           # a Saturday
    assert c.next_after(sat) == dt.datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match="not a valid cron"):
        S.Cron("every five minutes")


def test_translations():
    assert S.cron_to_oncalendar("*/15 * * * *") == "*-*-* *:0/15:00"
    assert S.cron_to_oncalendar("30 2 * * 0") == "Sun *-*-* 02:30:00"
    assert S.cron_to_oncalendar("*/5 7-19 * * 1-5") == "Mon..Fri *-*-* 7..19:0/5:00"
    with pytest.raises(ValueError):
        S.cron_to_oncalendar("0 0 1 * 1")          # cron ORs these, systemd ANDs them
    assert S.every_to_cron(dt.timedelta(minutes=15)) == "*/15 * * * *"
    assert S.every_to_cron(dt.timedelta(hours=2)) == "0 */2 * * *"
    with pytest.raises(ValueError):
        S.every_to_cron(dt.timedelta(minutes=7))


# ---------------------------------------------------------------- real processes

def test_max_runs_runs_n_checks(tmp_path):
    db = tmp_path / "h.sqlite"
    r = run_cli("schedule", str(_dead_profile(tmp_path)), "--every", "0.2s", "--max-runs", "3",
                "--db", str(db), "--step", "stream", timeout=120)
    assert r.returncode == 0, r.stderr
    runs = Store(db).runs("Demo site (loopback)")
    assert [x.id for x in runs] == [1, 2, 3]
    assert all(x.complete and x.verdict == "NO-GO" for x in runs)
    assert all("is down" in x.circuits["old"].checks[0].reason for x in runs)
    assert "stopped after 3 run(s)" in r.stderr
    # one log line per run, with the verdict
    assert sum(1 for line in r.stderr.splitlines() if ": NO-GO in " in line) == 3


def test_hanging_run_killed_at_timeout_recorded_and_schedule_continues(tmp_path):
    db, marker = tmp_path / "h.sqlite", tmp_path / "paused"
    proc = _start([str(_dead_profile(tmp_path)), "--every", "0.2s", "--max-runs", "3", "--timeout", "3s",
                   "--db", str(db), "--step", "stream"], env=pause_in_write.env(2, marker))
    child = _wait_for(marker, proc)
    _out, err = _finish(proc, 90)
    assert proc.returncode == 0, err
    assert not _pid_alive(child)
    runs = Store(db).runs("Demo site (loopback)")
    assert [x.id for x in runs] == [1, 2, 3] and all(x.complete for x in runs)
    hung = runs[1]
    assert hung.verdict == "NO-GO" and set(hung.circuits) == {"old", "new"}
    for c in hung.circuits.values():     # the paused run was rolled back whole; the scheduler recorded why
        (ck,) = c.checks
        assert ck.id == "schedule.timeout" and ck.status == "error" and "3 s timeout" in ck.reason
        assert ck.cause == "internal_error"  # a probe hung past every bound: our bug, never an outage
    assert runs[2].circuits["old"].checks[0].id == "stream.measured"    # the schedule went on
    assert "killed at the 3 s timeout" in err


def test_kill_9_of_scheduler_mid_write_keeps_earlier_runs(tmp_path):
    db, marker = tmp_path / "h.sqlite", tmp_path / "paused"
    # TMPDIR: the scheduler killed with -9 cannot remove its run's temporary folder
    proc = _start([str(_dead_profile(tmp_path)), "--every", "0.2s", "--db", str(db), "--step", "stream"],
                  env={**pause_in_write.env(2, marker), "TMPDIR": str(tmp_path)})
    try:
        child = _wait_for(marker, proc)
        assert _pid_alive(child)
        # the child holds an open write transaction right now: the write lock is taken
        probe = sqlite3.connect(db, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            probe.execute("BEGIN IMMEDIATE")
        probe.close()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 10
        while _pid_alive(child) and time.monotonic() < deadline:   # PDEATHSIG takes the child down too
            time.sleep(0.05)
        assert not _pid_alive(child)
    finally:
        _finish(proc, 10)
    raw = sqlite3.connect(db)
    assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()
    st = Store(db)
    runs = st.runs("Demo site (loopback)")
    assert [x.id for x in runs] == [1]          # run 2 was one transaction in flight: nothing of it remains
    first = runs[0]
    assert first.complete and first.verdict == "NO-GO" and set(first.circuits) == {"old", "new"}
    assert all(c.checks[0].id == "stream.measured" and "is down" in c.checks[0].reason
               for c in first.circuits.values())
    for table in ("circuit_results", "checks", "raw_results"):
        assert st._db.execute(f"SELECT count(*) FROM {table} WHERE run_id <> 1").fetchone()[0] == 0


def test_sigterm_kills_a_hung_run_after_the_grace_period(tmp_path):
    db, marker = tmp_path / "h.sqlite", tmp_path / "paused"
    proc = _start([str(_dead_profile(tmp_path)), "--every", "1s", "--grace", "1s", "--db", str(db),
                   "--step", "stream"], env=pause_in_write.env(1, marker))
    child = _wait_for(marker, proc)
    proc.send_signal(signal.SIGTERM)
    _out, err = _finish(proc, 30)
    assert proc.returncode == 0, err
    assert not _pid_alive(child)
    assert "SIGTERM: no new runs" in err and "stopped after 1 run(s)" in err
    (run,) = Store(db).runs("Demo site (loopback)")
    assert run.complete and run.verdict == "NO-GO"
    assert "killed after the stop grace period" in run.circuits["old"].checks[0].reason


def test_sigterm_lets_the_current_run_finish(tmp_path):
    """A real stream against a real reflector: SIGTERM mid-stream stops the
    probe early; the run is stored (as an interrupted, not a GO, result) and
    the scheduler exits well inside the grace period."""
    refl = ReflectorProc(tmp_path / "reflector.log")
    try:
        db = tmp_path / "h.sqlite"
        prof = demo_profile(tmp_path / "demo.yaml", refl.port, refl.port)
        proc = _start([str(prof), "--every", "1m", "--db", str(db), "--step", "stream", "--circuit", "new"])
        deadline = time.monotonic() + 30     # a run is stored only at its end: wait for the child to measure
        while time.monotonic() < deadline and not _measuring_child(proc.pid):
            time.sleep(0.1)
        assert _measuring_child(proc.pid), "the scheduler's check never opened a socket"
        time.sleep(1.5)                      # inside the 20 s stream
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = _finish(proc, 40)
        took = time.monotonic() - t0
    finally:
        refl.stop()
    assert proc.returncode == 0, err
    assert took < 15, err                   # well before the 20 s stream would have ended
    (run,) = Store(db).runs("Demo site (loopback)")
    assert run.complete and run.verdict == "NO-GO"
    ids = {c.id: c for c in run.circuits["new"].checks}
    assert "stream.complete" in ids and ids["stream.complete"].status == "error"
    # stopped by us: whatever did not pass is a measurement gap, never the carrier's outage
    assert all(c.cause == "measurement_gap" for c in ids.values() if c.status != "pass")
    assert "killed" not in err


def test_print_systemd_and_cron(tmp_path):
    prof = _dead_profile(tmp_path)
    r = run_cli("schedule", str(prof), "--every", "15m", "--print-systemd", "--quick", "--db", str(tmp_path / "h"))
    assert r.returncode == 0, r.stderr
    text = r.stdout
    svc = text.split("# /etc/systemd/system/")[1]
    tim = text.split("# /etc/systemd/system/")[2]
    svc_name, svc_body = svc.split("\n", 1)
    tim_name, tim_body = tim.split("\n", 1)
    tim_body = tim_body.split("# then:")[0]
    assert svc_name == "cutover-demo-site-loopback.service" and tim_name == "cutover-demo-site-loopback.timer"
    assert "Type=oneshot" in svc_body and "OnUnitActiveSec=900s" in tim_body
    assert "check " + str(prof.resolve()) in svc_body and "--quick" in svc_body
    if shutil.which("systemd-analyze"):
        d = tmp_path / "units"
        d.mkdir()
        (d / svc_name).write_text(svc_body)
        (d / tim_name).write_text(tim_body)
        v = subprocess.run(["systemd-analyze", "verify", str(d / svc_name), str(d / tim_name)],
                           capture_output=True, text=True, timeout=60)
        assert v.returncode == 0, v.stderr
        assert str(d) not in v.stderr, v.stderr      # no complaint about our units
    r = run_cli("schedule", str(prof), "--cron", "*/5 7-19 * * 1-5", "--print-cron", "--db", str(tmp_path / "h"))
    assert r.returncode == 0, r.stderr
    fields = r.stdout.strip().split()
    assert fields[:5] == ["*/5", "7-19", "*", "*", "1-5"]
    assert fields[5:8] == ["flock", "-n", "/tmp/cutover-demo-site-loopback.lock"]
    assert fields[8:12] == ["timeout", "-k", "30", "900"]
    assert r.stdout.rstrip().endswith("2>&1 >/dev/null | logger -t cutover-demo-site-loopback -p user.warning")


def test_print_systemd_runs_as_a_user_with_only_the_capabilities_needed(tmp_path):
    prof = _dead_profile(tmp_path)
    r = run_cli("schedule", str(prof), "--every", "15m", "--print-systemd", "--user", "voip",
                "--db", str(tmp_path / "h"))
    assert r.returncode == 0, r.stderr
    service = r.stdout.split("# /etc/systemd/system/")[1]
    assert "\nUser=voip\n" in service
    assert "\nAmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN\n" in service
    assert "\nCapabilityBoundingSet=CAP_NET_RAW CAP_NET_ADMIN\n" in service
    assert "\nNoNewPrivileges=yes\n" in service
    # without --user: never root
    r = run_cli("schedule", str(prof), "--every", "15m", "--print-systemd", "--db", str(tmp_path / "h"))
    assert "\nUser=" in r.stdout and "User=root" not in r.stdout


def test_cron_line_sends_errors_to_syslog_and_drops_the_table(tmp_path):
    """Run the printed line's command through sh with `logger` replaced by a
    file: a broken profile's error must arrive there (it went to /dev/null)."""
    prof = _dead_profile(tmp_path)
    r = run_cli("schedule", str(prof), "--every", "15m", "--print-cron", "--db", str(tmp_path / "h"))
    line = r.stdout.strip()
    command = line.split(None, 5)[5]                       # after the 5 time fields
    prof.write_text("site: [unclosed\n")                   # the profile breaks after the line was installed
    logged = tmp_path / "syslog"
    command = command.replace("| logger -t cutover-demo-site-loopback -p user.warning", f"| cat > {logged}")
    subprocess.run(["sh", "-c", command], timeout=120, cwd=tmp_path)
    text = logged.read_text()
    assert f"cutover: {prof}:" in text and "YAML syntax error" in text


def test_every_describes_the_exact_interval():
    assert S.Every(dt.timedelta(seconds=90)).describe() == "every 1m 30s"
    assert S.Every(dt.timedelta(minutes=15)).describe() == "every 15m"
    assert S.Every(dt.timedelta(hours=1, seconds=5)).describe() == "every 1h 5s"


@pytest.mark.parametrize("args, message", [
    (["--every", "15m", "--cron", "* * * * *"], "exactly one of"),
    ([], "exactly one of"),
    (["--cron", "61 * * * *"], "not a valid cron"),
    (["--every", "soon"], "--every:"),
    (["--every", "7m", "--print-cron"], "divide an hour"),
    (["--every", "1m", "--max-runs", "0"], "--max-runs 0"),
])
def test_bad_input(tmp_path, args, message):
    # in-process (click's runner): argument checks need no subprocess
    r = CliRunner().invoke(cli_group, ["schedule", str(_dead_profile(tmp_path)), *args])
    assert isinstance(r.exception, SystemExit), r.exception
    assert r.exit_code == 2 and message in r.stderr
