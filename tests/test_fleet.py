"""`cutover fleet`: the pure rules (phase, quiet probe, attention order) and
three real sites' schedulers writing to one PostgreSQL server at once, one
of them killed with SIGKILL in the middle of its writes several times."""

import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from harness import fleet, gate
from harness.profile import load_profile
from harness.store import Store
from tests.conftest import ROOT, run_cli
from tests.fixtures.history import FIXED_END, cached_history
from tests.harness_procs import closed_udp_port, demo_profile

UTC = dt.timezone.utc
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------- pure rules

def _decision(decision="NO-GO", start=dt.date(2026, 11, 11), min_days=14):
    today = NOW.date()
    return gate.GateDecision(
        site="s", decision=decision, blocking=[] if decision == "GO" else ["x"], items=[], today=today,
        parallel_run_start=start, parallel_days=(today - start).days if start else None,
        min_parallel_days=min_days, parallel_complete_on=None, proven_on=today, notice_by=today,
        disconnect_on=today + dt.timedelta(days=30), overlap_days=30, termination_notice_days=30)


def test_phase_of():
    assert fleet.phase_of(_decision(), terminated=False) == ("parallel", "day 9 of 14")   # 20 - 11 Nov
    assert fleet.phase_of(_decision(start=dt.date(2026, 12, 1)), False) == \
        ("before", "parallel run starts 2026-12-01")
    assert fleet.phase_of(_decision(start=None), False) == ("before", "parallel run not scheduled")
    assert fleet.phase_of(_decision("GO"), False)[0] == "ready"
    assert fleet.phase_of(_decision("GO"), True)[0] == "terminated"


def test_quiet_threshold_is_three_usual_intervals():
    t = [NOW - dt.timedelta(minutes=15 * i) for i in range(6)]          # every 15 min
    assert fleet.quiet_threshold(t) == dt.timedelta(minutes=45)
    t5 = [NOW - dt.timedelta(minutes=5 * i) for i in range(6)]          # 3 x 5 min < 30 min floor
    assert fleet.quiet_threshold(t5) == dt.timedelta(minutes=30)
    assert fleet.quiet_threshold(t[:2]) == dt.timedelta(hours=1)        # one gap: cannot tell
    assert fleet.quiet_threshold(t, dt.timedelta(hours=6)) == dt.timedelta(hours=6)


def _status(name, **kw):
    base = dict(site=name, phase="parallel", phase_detail="", decision="NO-GO", first_blocking=None, blocking=1,
                notice_by=NOW.date() + dt.timedelta(days=20), disconnect_on=None, open_outages=[],
                nearest_claim_by=None, last_run_at=NOW, last_run_age_s=60, quiet=False, quiet_after_s=1800)
    base.update(kw)
    st = fleet.SiteStatus(**base)
    st.attention_rank = fleet.attention(st, NOW)
    return st


def test_attention_order():
    sites = [_status("terminated", phase="terminated", decision="NO-GO"),
             _status("before", phase="before"),
             _status("ready", decision="GO", phase="ready"),
             _status("nogo"),
             _status("notice-soon", notice_by=NOW.date() + dt.timedelta(days=3)),
             _status("quiet", quiet=True, last_run_age_s=7200),
             _status("claim-later", nearest_claim_by=NOW + dt.timedelta(hours=30)),
             _status("claim-soon", nearest_claim_by=NOW + dt.timedelta(hours=5)),
             _status("outage", open_outages=["x"])]
    ordered = sorted(sites, key=lambda s: fleet.sort_key(s, NOW))
    # within rank 5 the nearest deadline first: claim-later's claim (21 Nov) before nogo's notice (10 Dec)
    assert [s.site for s in ordered] == ["outage", "claim-soon", "quiet", "notice-soon", "claim-later",
                                         "nogo", "ready", "before", "terminated"]
    assert [s.attention_rank for s in ordered] == [1, 2, 3, 4, 5, 5, 6, 7, 8]


# ---------------------------------------------------------------- a real history

def test_fleet_on_the_30_day_history(tmp_path_factory, pg_url):
    """The fixture's 30 days, imported into PostgreSQL; values hand-derived
    from the fixture: parallel run started on its first day (2026-10-21),
    the backup circuit's planted outage is still open at its end."""
    fx = cached_history(tmp_path_factory)
    assert run_cli("db", "import", str(fx.db_path), "--into", pg_url).returncode == 0
    as_of = (FIXED_END + dt.timedelta(minutes=1)).isoformat()
    r = run_cli("fleet", "--db", pg_url, "--as-of", as_of, "--json")
    assert r.returncode == 0, r.stderr
    (site,) = json.loads(r.stdout)["sites"]
    start = fx.start.date()
    assert site["phase"] == "parallel" and site["phase_detail"] == f"day {(FIXED_END.date() - start).days} of 14"
    want = gate.decide(load_profile(fx.profile_path), Store(fx.db_path), now=FIXED_END + dt.timedelta(minutes=1))
    assert site["decision"] == want.decision and site["first_blocking"] == want.blocking[0]
    assert site["notice_by"] == want.notice_by.isoformat()
    assert site["last_run_at"] == FIXED_END.isoformat().replace("+00:00", "Z") and site["last_run_age_s"] == 60
    assert site["quiet"] is False and site["quiet_after_s"] == 1800     # 5-minute runs: the 30-minute floor
    ongoing = [o for o in fx.outages if o.end is None]
    assert [o["circuit"] for o in site["open_outages"]] == [o.circuit for o in ongoing]
    # two hours later with no new run, the probe is quiet
    later = (FIXED_END + dt.timedelta(hours=2)).isoformat()
    (site,) = json.loads(run_cli("fleet", "--db", pg_url, "--as-of", later, "--json").stdout)["sites"]
    assert site["quiet"] is True and site["last_run_age_s"] == 7200


# ---------------------------------------------------------------- three schedulers, one server

SITES = {"Alpha": 3, "Bravo": -10, "Charlie": 20}   # parallel run started N days ago (negative: not yet)
VICTIM = "Charlie"
KILLS = 3
MAX_ATTEMPTS = 40
SPACING_S = 12                  # between kills: the three write side by side for about a minute


def _profile(tmp_path: Path, site: str, days_ago: int) -> Path:
    start = (dt.datetime.now(UTC).date() - dt.timedelta(days=days_ago)).isoformat()
    p = demo_profile(tmp_path / f"{site}.yaml", closed_udp_port(), closed_udp_port())
    text = p.read_text().replace("site: Demo site (loopback)", f"site: {site}")
    p.write_text(text.replace("parallel_run_start: 2026-11-01", f"parallel_run_start: {start}"))
    return p


def _scheduler(profile: Path, url: str, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    env.pop("CUTOVER_DEBUG", None)
    env["TMPDIR"] = str(log.parent)     # a scheduler killed with -9 leaves its run's temporary folder behind
    return subprocess.Popen([sys.executable, "-m", "harness", "schedule", str(profile), "--every", "0.3s",
                             "--db", url, "--step", "stream"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("a"), start_new_session=True)


def _children(pid: int) -> set[int]:
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.parent.name))
    return out


def _writing_backend(conn, pids: set[int]) -> tuple[int, int] | None:
    """(xid, pid) of an open write transaction held by one of ``pids``
    (pg_stat_activity.application_name is cutover[PID])."""
    for app, xid in conn.execute("SELECT application_name, backend_xid::text FROM pg_stat_activity "
                                 "WHERE backend_xid IS NOT NULL AND application_name LIKE 'cutover[%'"):
        pid = int(app[len("cutover["):-1])
        if pid in pids:
            return int(xid), pid
    return None


def _xact_status(conn, xid: int) -> str:
    return conn.execute("SELECT pg_xact_status(%s::text::xid8)", (str(xid),)).fetchone()[0]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_three_schedulers_one_server_one_killed_mid_write(tmp_path, pg_server):
    url = pg_server.url(pg_server.new_database())
    assert run_cli("db", "migrate", "--db", url).returncode == 0
    profiles = {s: _profile(tmp_path, s, d) for s, d in SITES.items()}
    assert run_cli("signoff", str(profiles[VICTIM]), "old-service-terminated", "--by", "Ops",
                   "--db", url).returncode == 0
    logs = {s: tmp_path / f"{s}.log" for s in SITES}
    procs = {s: _scheduler(profiles[s], url, logs[s]) for s in SITES}
    aborted_xids: list[int] = []
    attempts = 0
    watch = psycopg.connect(pg_server.url("postgres"), autocommit=True)
    try:
        deadline = time.monotonic() + 240
        while len(aborted_xids) < KILLS and attempts < MAX_ATTEMPTS and time.monotonic() < deadline:
            victim = procs[VICTIM]
            found = None
            kids, kids_at = set(), 0.0
            poll_until = time.monotonic() + 20
            while found is None and time.monotonic() < poll_until:
                if time.monotonic() - kids_at > 0.1:         # a new `cutover check` child about every second
                    kids, kids_at = _children(victim.pid), time.monotonic()
                found = _writing_backend(watch, kids) if kids else None
                time.sleep(0.001)
            if found is None:
                continue
            attempts += 1
            xid, pid = found
            # Freeze the writer, then make sure its transaction is still open: the
            # SIGKILL that follows lands inside the write, not just after its commit.
            try:
                os.kill(pid, signal.SIGSTOP)
            except ProcessLookupError:
                continue
            time.sleep(0.05)      # a COMMIT already on the wire is processed by now
            if _xact_status(watch, xid) != "in progress":
                os.kill(pid, signal.SIGCONT)
                continue
            os.killpg(victim.pid, signal.SIGKILL)        # the scheduler ...
            os.kill(pid, signal.SIGKILL)                 # ... and its `cutover check` child, mid-write
            victim.wait(10)
            status = "in progress"
            settle = time.monotonic() + 10
            while status == "in progress" and time.monotonic() < settle:   # the server sees the dropped connection
                time.sleep(0.05)
                status = _xact_status(watch, xid)
            assert status == "aborted", status
            aborted_xids.append(xid)
            procs[VICTIM] = _scheduler(profiles[VICTIM], url, logs[VICTIM])
            time.sleep(SPACING_S)       # the restarted scheduler and the others write on meanwhile
        # let every site complete a few more runs after the last kill
        time.sleep(3)
    finally:
        for p in procs.values():
            _stop(p)
        watch.close()
    assert len(aborted_xids) == KILLS, f"only {len(aborted_xids)} kills inside a write in {attempts} attempts"

    st = Store(url)
    # every run a scheduler reported as stored is there, complete, with both circuits and their checks
    for site in SITES:
        reported = [int(m.group(1)) for m in re.finditer(r" run (\d+): NO-GO in ", logs[site].read_text())]
        assert len(reported) >= 2, (site, logs[site].read_text()[-500:])
        runs = {r.id: r for r in st.runs(site)}
        for rid in reported:
            r = runs[rid]
            assert r.site == site and r.complete and r.verdict == "NO-GO"
            assert set(r.circuits) == {"old", "new"}
            # measured, or recorded by the scheduler for a child that stored nothing (stopped while starting)
            assert all(c.checks and c.checks[0].id in ("stream.measured", "schedule.crashed", "schedule.timeout")
                       for c in r.circuits.values()), \
                (site, rid, {n: [(k.id, k.reason) for k in c.checks] for n, c in r.circuits.items()})
        # a run is one transaction: a killed writer leaves no incomplete run, however often it dies
        assert [r.id for r in runs.values() if not r.complete] == []
        assert all(set(r.circuits) == {"old", "new"} for r in runs.values())
    # consistent: no check or raw result without its circuit result, no circuit result without its run
    with psycopg.connect(url) as conn:
        orphans = conn.execute(
            "SELECT (SELECT count(*) FROM checks k WHERE NOT EXISTS (SELECT 1 FROM circuit_results c "
            "        WHERE c.run_id = k.run_id AND c.circuit = k.circuit)) + "
            "       (SELECT count(*) FROM raw_results x WHERE NOT EXISTS (SELECT 1 FROM circuit_results c "
            "        WHERE c.run_id = x.run_id AND c.circuit = x.circuit)) + "
            "       (SELECT count(*) FROM circuit_results c WHERE NOT EXISTS "
            "        (SELECT 1 FROM runs r WHERE r.id = c.run_id))").fetchone()[0]
        empty = conn.execute("SELECT count(*) FROM circuit_results c WHERE NOT EXISTS "
                             "(SELECT 1 FROM checks k WHERE k.run_id = c.run_id AND k.circuit = c.circuit)"
                             ).fetchone()[0]
    assert orphans == 0 and empty == 0

    r = run_cli("fleet", "--db", url, "--json")
    assert r.returncode == 0, r.stderr
    by_site = {s["site"]: s for s in json.loads(r.stdout)["sites"]}
    assert set(by_site) == set(SITES)
    assert (by_site["Alpha"]["phase"], by_site["Alpha"]["phase_detail"]) == ("parallel", "day 3 of 14")
    assert by_site["Bravo"]["phase"] == "before"
    assert by_site["Charlie"]["phase"] == "terminated"
    for s in by_site.values():
        assert s["decision"] == "NO-GO" and not s["quiet"]
        # both reflectors are down, but the schedulers run `--step stream`: partial runs are
        # evidence for their step's latest result only, never outages (docs/judgement.md)
        assert s["open_outages"] == []


def test_fleet_reads_the_summary_each_run_keeps(tmp_path_factory, pg_url):
    """`cutover check` (here: fleet.refresh after the import) keeps each site's
    judgement; the fleet reads it while it is newer than the site's latest run
    and sign-off, and judges the site again once it is not."""
    from harness import fleet as F
    fx = cached_history(tmp_path_factory)
    st = Store(pg_url)
    st.import_from(Store(fx.db_path))
    site = "Harbour Street office"
    at = FIXED_END + dt.timedelta(minutes=1)
    judged = F.refresh(st, site, at)
    later = at + dt.timedelta(minutes=10)
    (cached,) = F.fleet(st, now=later)
    (live,) = F.fleet(st, now=later, live=True)
    assert cached.to_dict() == live.to_dict()                       # the same judgement either way
    assert cached.last_run_age_s == 11 * 60 == live.last_run_age_s  # the clock-dependent part brought to now
    # it really is the summary that is read: a doctored one shows, --live ignores it
    doctored = dict(judged.to_dict(), phase_detail="from the summary")
    st.put_site_status(site, at, doctored)
    assert F.fleet(st, now=later)[0].phase_detail == "from the summary"
    assert F.fleet(st, now=later, live=True)[0].phase_detail == live.phase_detail
    # a run newer than the summary: judged again (and the summary rewritten)
    rid = st.begin_run(site, st.profile_snapshot(st.latest_runs(site)[0].id), "0.1", started_at=later)
    rid = st.finish_run(rid, "NO-GO", finished_at=later)
    (again,) = F.fleet(st, now=later + dt.timedelta(minutes=1))
    assert again.phase_detail == live.phase_detail and again.last_run_age_s == 60
    assert st.site_statuses()[site][0] == later + dt.timedelta(minutes=1)
    # and a sign-off newer than the summary too
    st.signoff(site, "voice-vlan", "Ana", at=later + dt.timedelta(minutes=2))
    st.put_site_status(site, later + dt.timedelta(minutes=1), doctored)
    assert F.fleet(st, now=later + dt.timedelta(minutes=3))[0].phase_detail == live.phase_detail
