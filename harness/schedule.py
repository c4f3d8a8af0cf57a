"""`cutover schedule`: run checks until stopped, one child process per run.

Why a child process per run (``python -m harness check ... --json``):
a probe that hangs, leaks or crashes takes down that run only. The
scheduler itself never measures; it starts, times out and records.

Rules:

- Slots: ``--every D`` runs at start, start + D, start + 2D, ...; ``--cron``
  at the expression's times (croniter, UTC). A run that overruns its slot
  makes the scheduler skip the slots it missed (no overlapping runs, no
  burst of catch-up runs afterwards).
- Per-run timeout (default 15 min): the child's process group is killed and
  the run is recorded as NO-GO with a ``schedule.timeout`` error for every
  circuit it had not stored. A child that dies on its own (crash, OOM kill)
  is recorded the same way with its exit status.
- SIGTERM / SIGINT: no new run starts; a run in progress gets SIGTERM (its
  probes stop early and it stores what it measured) and ``--grace`` seconds
  (default 30 s) to finish, after which it is killed and recorded. Exit 0.
- The child gets PR_SET_PDEATHSIG=SIGKILL: if the scheduler itself is
  killed (kill -9, OOM), its run dies with it instead of living on
  unsupervised; the store's transactions keep every earlier run intact.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from harness.verdicts import GAP, INTERNAL, error

if TYPE_CHECKING:
    from harness.profile import Profile
    from harness.store_backends import Location

UTC = dt.timezone.utc
DEFAULT_TIMEOUT = dt.timedelta(minutes=15)
DEFAULT_GRACE_S = 30.0


# ---------------------------------------------------------------- when

class Every:
    def __init__(self, interval: dt.timedelta) -> None:
        if interval.total_seconds() <= 0:
            raise ValueError("the interval must be positive")
        self.interval = interval
        self.anchor: dt.datetime | None = None

    def next_after(self, now: dt.datetime, first: bool = False) -> dt.datetime:
        """The first slot (anchor + k x interval, k >= 1) at or after ``now``;
        the first call sets the anchor and returns it (run at once)."""
        if self.anchor is None or first:
            self.anchor = now
            return now
        step = self.interval.total_seconds()
        k = max(1, math.ceil((now - self.anchor).total_seconds() / step - 1e-9))
        return self.anchor + dt.timedelta(seconds=k * step)

    def describe(self) -> str:
        from harness.durations import format_duration
        s = self.interval.total_seconds()
        return f"every {format_duration(self.interval, exact=True) if s >= 1 else f'{s:g} s'}"


class Cron:
    def __init__(self, expr: str) -> None:
        from croniter import croniter
        if not croniter.is_valid(expr):
            raise ValueError(f"--cron {expr!r} is not a valid cron expression (5 fields: "
                             "minute hour day-of-month month day-of-week, e.g. '*/15 * * * *')")
        self.expr = expr

    def next_after(self, now: dt.datetime, first: bool = False) -> dt.datetime:
        from croniter import croniter
        return croniter(self.expr, now - dt.timedelta(microseconds=1)).get_next(dt.datetime)

    def describe(self) -> str:
        return f"cron '{self.expr}' (UTC)"


# ---------------------------------------------------------------- one run

@dataclass
class RunReport:
    number: int                       # 1, 2, ... in this scheduler's life
    started_at: dt.datetime
    seconds: float
    exit_code: int | None             # None: killed by us
    run_id: int | None
    verdict: str | None
    outcome: str                      # "ok" | "timeout" | "stopped" | "crashed" | "bad-input" | "not-stored"
    message: str = ""


def _pdeathsig() -> None:   # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG = 1
    except OSError:
        pass


@dataclass
class Scheduler:
    profile: "Profile"
    profile_path: Path
    when: "Every | Cron"
    db_path: "Path | Location"       # an SQLite path or a PostgreSQL location
    check_args: list[str] = field(default_factory=list)   # extra `cutover check` options
    timeout: dt.timedelta = DEFAULT_TIMEOUT
    grace_s: float = DEFAULT_GRACE_S
    max_runs: int | None = None
    log: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
    stop: threading.Event = field(default_factory=threading.Event)
    reports: list[RunReport] = field(default_factory=list)
    _child: subprocess.Popen | None = None
    child_env: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.child_env = dict(os.environ)
        self._db_arg, password = db_argument(self.db_path)
        if password is not None:      # the child reads it from its environment, not its command line
            self.child_env["PGPASSWORD"] = password

    def command(self, run_id_file: Path) -> list[str]:
        return [sys.executable, "-m", "harness", "check", str(self.profile_path), "--db", self._db_arg,
                "--json", "--quiet", "--run-id-file", str(run_id_file), *self.check_args]

    # -- signals

    def request_stop(self, signum: int | None = None) -> None:
        """Stop scheduling; pass SIGTERM to a run in progress (it finishes early)."""
        first = not self.stop.is_set()
        self.stop.set()
        child = self._child
        if first:
            name = signal.Signals(signum).name if signum else "stop"
            self.log(f"cutover schedule: {name}: no new runs"
                     + (f"; the current run has {self.grace_s:g} s to finish" if child else ""))
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def install_signal_handlers(self) -> None:
        for s in (signal.SIGTERM, signal.SIGINT):
            signal.signal(s, lambda signum, _f: self.request_stop(signum))

    # -- the loop

    def run_forever(self) -> list[RunReport]:
        now = dt.datetime.now(UTC)
        slot = self.when.next_after(now, first=True)
        self.log(f"cutover schedule: {self.profile.site}: {self.when.describe()}, timeout "
                 f"{self.timeout.total_seconds():g} s, history {self.db_path}")
        while not self.stop.is_set():
            if self.max_runs is not None and len(self.reports) >= self.max_runs:
                break
            wait_s = (slot - dt.datetime.now(UTC)).total_seconds()
            if wait_s > 0 and self.stop.wait(wait_s):
                break
            try:
                report = self.run_once(len(self.reports) + 1)
            except Exception as exc:   # noqa: BLE001 - e.g. fork failed: this run is lost, the schedule is not
                self._child = None
                report = RunReport(len(self.reports) + 1, dt.datetime.now(UTC), 0.0, None, None, None,
                                   "crashed", f"could not run the check: {type(exc).__name__}: {exc}")
            self.reports.append(report)
            self.log(self.describe(report))
            after = dt.datetime.now(UTC)
            nxt = self.when.next_after(after)
            missed = self._missed(slot, nxt)
            if missed and not self.stop.is_set() and (self.max_runs is None or len(self.reports) < self.max_runs):
                self.log(f"cutover schedule: run {report.number} overran: {missed} slot(s) skipped")
            slot = nxt
        self.log(f"cutover schedule: stopped after {len(self.reports)} run(s)")
        return self.reports

    def _missed(self, slot: dt.datetime, nxt: dt.datetime) -> int:
        if isinstance(self.when, Every):
            return max(0, int(round((nxt - slot) / self.when.interval)) - 1)
        return 0

    @staticmethod
    def describe(r: RunReport) -> str:
        stamp = r.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        what = r.verdict or r.outcome
        rid = f"run {r.run_id}" if r.run_id is not None else "no run stored"
        extra = f": {r.message}" if r.message else ""
        return f"{stamp} #{r.number} {rid}: {what} in {r.seconds:.1f} s{extra}"

    def run_once(self, number: int) -> RunReport:
        started = dt.datetime.now(UTC)
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix="cutover-sched-") as tmp:
            rid_file = Path(tmp) / "run_id"
            out_file = Path(tmp) / "stdout.json"
            with open(out_file, "wb") as out:
                self._child = subprocess.Popen(self.command(rid_file), stdout=out, stderr=None,
                                               stdin=subprocess.DEVNULL, start_new_session=True,
                                               env=self.child_env,
                                               preexec_fn=_pdeathsig)
                if self.stop.is_set():       # a signal landed between the checks and the start
                    self.request_stop()
                killed = self._wait(self._child, t0)
                code = self._child.returncode
                self._child = None
            run_id = int(rid_file.read_text()) if rid_file.exists() and rid_file.read_text().strip() else None
            verdict, not_stored = None, None
            try:
                doc = json.loads(out_file.read_text())
                verdict, not_stored = doc.get("verdict"), doc.get("not_stored")
            except (ValueError, OSError, AttributeError):
                pass
        seconds = time.monotonic() - t0
        if killed:
            why = ("killed after the stop grace period" if killed == "stopped"
                   else f"killed at the {self.timeout.total_seconds():g} s timeout: a probe hung")
            # a probe that hangs past every bound is our bug; a run cut short by a stop is a gap
            run_id = self._record_failure(run_id, "schedule.timeout", f"run {why}", started,
                                          cause=INTERNAL if killed == "timeout" else GAP)
            return RunReport(number, started, seconds, None, run_id, "NO-GO", "timeout" if killed == "timeout"
                             else "stopped", why)
        if code == 2:
            return RunReport(number, started, seconds, code, run_id, None, "bad-input",
                             "cutover check refused its input (see above); the schedule continues")
        if verdict is None:
            why = f"cutover check exited with status {code} without a result"
            run_id = self._record_failure(run_id, "schedule.crashed", why, started, cause=INTERNAL)
            return RunReport(number, started, seconds, code, run_id, "NO-GO", "crashed", why)
        if not_stored:       # exit 74: measured, the database refused it, results kept in a file
            return RunReport(number, started, seconds, code, run_id, verdict, "not-stored",
                             f"not stored: {not_stored.get('cause')}; results in {not_stored.get('results_file')}")
        return RunReport(number, started, seconds, code, run_id, verdict,
                         "stopped" if self.stop.is_set() else "ok")

    def _wait(self, child: subprocess.Popen, t0: float) -> str | None:
        """Wait for the child; kill its process group at the timeout or when
        the stop grace period ends. Returns why it was killed, or None."""
        deadline = t0 + self.timeout.total_seconds()
        stop_deadline = None
        while True:
            if self.stop.is_set() and stop_deadline is None:
                stop_deadline = time.monotonic() + self.grace_s
            limit = min(deadline, stop_deadline) if stop_deadline else deadline
            try:
                child.wait(timeout=max(0.0, min(limit - time.monotonic(), 0.2)))
                return None
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() >= limit:
                try:
                    os.killpg(child.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                child.wait(10)
                return "stopped" if stop_deadline and time.monotonic() >= stop_deadline else "timeout"

    def _record_failure(self, run_id: int | None, check_id: str, reason: str, started: dt.datetime,
                        cause: str = GAP) -> int | None:
        """Store a NO-GO run with the cause for a child that left no run (a run
        is one transaction: a child killed before it stored its run left
        nothing), so the history shows the failure instead of a silent gap.
        ``run_id`` is the child's run when it stored one (its `--run-id-file`):
        then there is nothing to add. Returns the run that records the attempt."""
        from harness import __version__
        from harness.store import Store, StoreError
        if run_id is not None:
            return run_id
        try:
            store = Store(self.db_path)
        except StoreError as exc:
            self.log(f"cutover schedule: cannot record the failed run: {exc}")
            return None
        try:
            run = store.begin_run(self.profile.site, self.profile.model_dump(mode="json"), __version__,
                                  started_at=started)
            for c in self._circuits():
                store.add_circuit_result(run, c, "NO-GO", [error(check_id, reason, cause=cause)], {})
            return store.finish_run(run, "NO-GO")
        except StoreError as exc:   # e.g. locked beyond busy_timeout, disk full, server gone
            self.log(f"cutover schedule: cannot record the failed run: {exc}")
            return None
        finally:
            store.close()

    def _circuits(self) -> list[str]:
        chosen = [self.check_args[i + 1] for i, a in enumerate(self.check_args[:-1]) if a == "--circuit"]
        return chosen or [c.name for c in self.profile.circuits]


# ---------------------------------------------------------------- OS scheduler units

def db_argument(db) -> tuple[str, str | None]:
    """(the ``--db`` argument for a child ``cutover check``, the password to
    hand it through ``$PGPASSWORD`` or None). Paths are made absolute."""
    from harness.store_backends import parse_location
    loc = parse_location(db)
    if loc.kind == "sqlite":
        return str(Path(loc.target).resolve()), None
    return loc.split_password()


def check_command_line(profile_path: Path, db_path, check_args: list[str]) -> list[str]:
    """The `cutover check` invocation an OS scheduler runs (absolute paths).
    A password in a database URL is refused: a unit file or crontab would
    store it; use ~/.pgpass or a password file (``?passfile=``) instead."""
    exe = Path(sys.argv[0]).resolve() if Path(sys.argv[0]).name == "cutover" else None
    base = [str(exe)] if exe and exe.exists() else [sys.executable, "-m", "harness"]
    db_arg, password = db_argument(db_path)
    if password is not None:
        raise ValueError("the database URL carries a password, which a unit file or crontab would store: "
                         "put it in ~/.pgpass or a password file (postgresql://user@host/db?passfile=PATH)")
    return [*base, "check", str(profile_path.resolve()), "--db", db_arg, "--quiet", *check_args]


_DOW = {"0": "Sun", "1": "Mon", "2": "Tue", "3": "Wed", "4": "Thu", "5": "Fri", "6": "Sat", "7": "Sun"}


def _cron_field_to_calendar(f: str, dow: bool = False) -> str:
    out = []
    for part in f.split(","):
        if part == "*":
            out.append("*")
            continue
        step = ""
        if "/" in part:
            part, n = part.split("/", 1)
            if not n.isdigit():
                raise ValueError(f"cannot translate {f!r}")
            step = f"/{n}"
            if part == "*":
                part = "0" if not dow else part
        if dow:
            if step:
                raise ValueError("day-of-week steps cannot be expressed in OnCalendar")
            if "-" in part:
                a, b = part.split("-", 1)
                out.append(f"{_DOW[a]}..{_DOW[b]}")
            elif part in _DOW:
                out.append(_DOW[part])
            else:
                raise ValueError(f"cannot translate day of week {part!r}")
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()):
                raise ValueError(f"cannot translate {f!r}")
            if step:
                raise ValueError(f"cannot translate range with step {f!r}")
            out.append(f"{a}..{b}")
        elif part.isdigit():
            out.append(f"{int(part):02d}{step}" if not step else f"{part}{step}")
        else:
            raise ValueError(f"cannot translate {f!r}")
    return ",".join(out)


def cron_to_oncalendar(expr: str) -> str:
    """'*/15 * * * *' -> '*-*-* *:0/15:00'; ValueError for what OnCalendar
    cannot say (the user can then use --every or --print-cron)."""
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"{expr!r}: expected 5 cron fields")
    minute, hour, dom, month, dow = fields
    if any(not c.isdigit() and c not in "*/,-" for c in "".join(fields)):
        raise ValueError(f"{expr!r}: names and special characters are not translated; use numbers")
    if dom != "*" and dow != "*":
        raise ValueError(f"{expr!r}: cron ORs day-of-month and day-of-week, OnCalendar ANDs them")
    date = f"*-{_cron_field_to_calendar(month)}-{_cron_field_to_calendar(dom)}"
    time_ = f"{_cron_field_to_calendar(hour)}:{_cron_field_to_calendar(minute)}:00"
    prefix = f"{_cron_field_to_calendar(dow, dow=True)} " if dow != "*" else ""
    return f"{prefix}{date} {time_}"


def every_to_cron(interval: dt.timedelta) -> str:
    s = int(interval.total_seconds())
    if s != interval.total_seconds() or s < 60 or s % 60:
        raise ValueError("cron counts whole minutes: use an interval of whole minutes (e.g. 15m)")
    m = s // 60
    if m < 60 and 60 % m == 0:
        return f"*/{m} * * * *"
    if m % 60 == 0 and 24 % (m // 60) == 0:
        h = m // 60
        return "0 * * * *" if h == 1 else f"0 */{h} * * *"
    if m == 1440:
        return "0 0 * * *"
    raise ValueError(f"every {m} minutes does not divide an hour or a day evenly; use --cron")


def _unit_name(site: str) -> str:
    slug = "".join(ch if ch.isalnum() else "-" for ch in site.lower()).strip("-")
    while "--" in slug:
        slug = slug.replace("--", "-")
    return f"cutover-{slug or 'site'}"


# What the probes need beyond an ordinary user: raw sockets (ICMP echo, the
# path probe's TTL-limited probes and its ICMP listener) and SO_BINDTODEVICE
# (a circuit's interface:) need CAP_NET_RAW; CAP_NET_ADMIN covers socket
# priorities and marks on the test streams. Nothing else: no root.
PROBE_CAPABILITIES = ("CAP_NET_RAW", "CAP_NET_ADMIN")


def default_unit_user() -> str:
    """Who the unit runs as: the user printing it, unless that is root or nobody
    (then a dedicated system user, created as the unit's comment says)."""
    import getpass
    name = getpass.getuser()
    # root would run the probes with every privilege; nobody is shared by unrelated
    # daemons (systemd warns "Special user nobody configured, this is not safe!")
    return "cutover" if name in ("root", "nobody") else name


def systemd_units(profile, profile_path: Path, db_path: Path, when, timeout: dt.timedelta,
                  check_args: list[str], user: str | None = None) -> tuple[str, str, str]:
    """(unit base name, .service text, .timer text). The timer starts a oneshot
    service; systemd never starts a oneshot that is still active, so runs do
    not overlap, and TimeoutStartSec kills a hung run. It runs as ``user``
    (not root) with only the capabilities the probes need."""
    user = user or default_unit_user()
    caps = " ".join(PROBE_CAPABILITIES)
    name = _unit_name(profile.site)
    cmd = " ".join(shlex.quote(a) for a in check_command_line(profile_path, db_path, check_args))
    service = (f"[Unit]\nDescription=cutover readiness check: {profile.site}\n"
               f"Wants=network-online.target\nAfter=network-online.target\n\n"
               f"[Service]\nType=oneshot\nExecStart={cmd}\n"
               f"User={user}\n"
               f"AmbientCapabilities={caps}\nCapabilityBoundingSet={caps}\nNoNewPrivileges=yes\n"
               f"TimeoutStartSec={int(timeout.total_seconds())}\n"
               # exit 1 (NO-GO) and 3 (unmeasured) are results, not unit failures
               f"SuccessExitStatus=1 3\n")
    if isinstance(when, Every):
        trigger = (f"OnActiveSec=0\nOnUnitActiveSec={int(when.interval.total_seconds())}s\n"
                   f"AccuracySec=1s\n")
    else:
        trigger = f"OnCalendar={cron_to_oncalendar(when.expr)} UTC\nPersistent=false\nAccuracySec=1s\n"
    timer = (f"[Unit]\nDescription=cutover readiness check schedule: {profile.site}\n\n"
             f"[Timer]\n{trigger}Unit={name}.service\n\n[Install]\nWantedBy=timers.target\n")
    return name, service, timer


def crontab_line(profile, profile_path: Path, db_path: Path, when, timeout: dt.timedelta,
                 check_args: list[str]) -> str:
    """One crontab line: flock -n skips a run while the previous one is still
    going; timeout kills a hung one. cron runs in the system time zone.
    stderr (errors: a broken profile, an unwritable database) goes to syslog
    with the unit's name as tag (``journalctl -t cutover-SITE``), so a
    schedule that fails does not fail silently; the verdict table (stdout)
    is dropped: every run is in the history database."""
    expr = when.expr if isinstance(when, Cron) else every_to_cron(when.interval)
    lock = f"/tmp/{_unit_name(profile.site)}.lock"
    cmd = " ".join(shlex.quote(a) for a in check_command_line(profile_path, db_path, check_args))
    tag = _unit_name(profile.site)
    return (f"{expr} flock -n {lock} timeout -k 30 {int(timeout.total_seconds())} {cmd} "
            f"2>&1 >/dev/null | logger -t {tag} -p user.warning")
