"""Every site of a central history database on one screen: where each
cutover stands, what blocks it, which dates and claim deadlines are near,
and whose probe went quiet; the site that needs attention first comes first.

Each site is judged from its own stored evidence with the same code as
``cutover gate`` (:func:`harness.gate.decide`) and ``cutover report``
(:func:`harness.history.outages`); the profile is the snapshot stored with
the site's latest run, so the fleet needs no profile files.

Phase (``phase``):

- ``terminated``: the old service was terminated: the site's sign-off trail
  holds a current (not revoked) ``old-service-terminated`` entry
  (``cutover signoff site.yaml old-service-terminated --by NAME``).
- ``ready``: the gate says GO (send the notice by ``notice_by``).
- ``parallel``: the parallel run started (``cutover.parallel_run_start`` is
  today or earlier): ``day N of M``.
- ``before``: no parallel run yet (not set, or starts in the future).

A probe is **quiet** when its latest run started longer ago than
``quiet_after`` (``--quiet-after``; default: three times the site's usual
interval between runs, at least 30 minutes, 1 hour when there are too few
runs to tell).

Attention order (:func:`attention`), most urgent first; ties by the
nearest deadline, then by name:

1. an outage is open (the circuit is failing right now), 2. a claim deadline
falls within 24 h, 3. the probe is quiet, 4. the notice must go out within
7 days and the gate is still NO-GO, 5. NO-GO otherwise, 6. ready (GO),
7. before the parallel run, 8. terminated.

Measured (benchmarks/bench_fleet.py, PostgreSQL 15, 2 shared cores): see
docs/fleet.md for the figures and how they grow with sites and days.
"""

from __future__ import annotations

import datetime as dt
import statistics
from dataclasses import dataclass
from typing import TypedDict

from harness import gate, history

UTC = dt.timezone.utc
TERMINATED_ITEM = "old-service-terminated"
CLAIM_SOON = dt.timedelta(hours=24)
NOTICE_SOON = dt.timedelta(days=7)
MIN_QUIET = dt.timedelta(minutes=30)
QUIET_UNKNOWN = dt.timedelta(hours=1)
RECENT_RUNS = 12              # runs that estimate a site's usual interval


@dataclass
class SiteStatus:
    site: str
    phase: str                           # before | parallel | ready | terminated | unknown
    phase_detail: str                    # "day 9 of 14", "GO since 2026-11-20", ...
    decision: str | None                 # GO | NO-GO (None: no usable profile snapshot)
    first_blocking: str | None
    blocking: int
    notice_by: dt.date | None
    disconnect_on: dt.date | None
    open_outages: list[dict]             # history.Outage.to_dict() of each open outage
    nearest_claim_by: dt.datetime | None
    last_run_at: dt.datetime | None
    last_run_age_s: float | None
    quiet: bool
    quiet_after_s: float
    attention_rank: int = 0
    error: str | None = None             # why the site could not be judged

    def to_dict(self) -> dict:
        return {
            "site": self.site, "phase": self.phase, "phase_detail": self.phase_detail,
            "attention_rank": self.attention_rank, "decision": self.decision,
            "first_blocking": self.first_blocking, "blocking": self.blocking,
            "notice_by": self.notice_by.isoformat() if self.notice_by else None,
            "disconnect_on": self.disconnect_on.isoformat() if self.disconnect_on else None,
            "open_outages": self.open_outages,
            "nearest_claim_by": _iso(self.nearest_claim_by),
            "last_run_at": _iso(self.last_run_at),
            "last_run_age_s": None if self.last_run_age_s is None else round(self.last_run_age_s, 1),
            "quiet": self.quiet, "quiet_after_s": self.quiet_after_s, "error": self.error,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SiteStatus":
        def day(v):
            return dt.date.fromisoformat(v) if v else None

        def when(v):
            return dt.datetime.fromisoformat(v) if v else None
        return cls(site=d["site"], phase=d["phase"], phase_detail=d["phase_detail"], decision=d["decision"],
                   first_blocking=d["first_blocking"], blocking=d["blocking"], notice_by=day(d["notice_by"]),
                   disconnect_on=day(d["disconnect_on"]), open_outages=d["open_outages"],
                   nearest_claim_by=when(d["nearest_claim_by"]), last_run_at=when(d["last_run_at"]),
                   last_run_age_s=d["last_run_age_s"], quiet=d["quiet"], quiet_after_s=d["quiet_after_s"],
                   attention_rank=d["attention_rank"], error=d["error"])


def _iso(t: dt.datetime | None) -> str | None:
    return None if t is None else t.astimezone(UTC).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- pure rules

def phase_of(decision: gate.GateDecision, terminated: bool) -> tuple[str, str]:
    if terminated:
        return "terminated", "old service terminated"
    if decision.decision == gate.GO:
        return "ready", (f"GO: notice by {decision.notice_by.isoformat()}, "
                         f"disconnect {decision.disconnect_on.isoformat()}")
    start, days = decision.parallel_run_start, decision.parallel_days
    if start is None or days is None or days < 0:
        return "before", (f"parallel run starts {start.isoformat()}" if start else "parallel run not scheduled")
    return "parallel", f"day {days} of {decision.min_parallel_days}"


def usual_interval(starts: list[dt.datetime]) -> dt.timedelta | None:
    """Median gap between consecutive run starts (newest first or not)."""
    ordered = sorted(starts)
    gaps = [(b - a).total_seconds() for a, b in zip(ordered, ordered[1:]) if b > a]
    if len(gaps) < 2:
        return None
    return dt.timedelta(seconds=statistics.median(gaps))


def quiet_threshold(starts: list[dt.datetime], override: dt.timedelta | None = None) -> dt.timedelta:
    if override is not None:
        return override
    usual = usual_interval(starts)
    return QUIET_UNKNOWN if usual is None else max(3 * usual, MIN_QUIET)


def attention(st: SiteStatus, now: dt.datetime) -> int:
    """The rank of the module doc (1 = most urgent)."""
    if st.open_outages:
        return 1
    if st.nearest_claim_by is not None and st.nearest_claim_by - now <= CLAIM_SOON:
        return 2
    if st.quiet:
        return 3
    if st.phase == "terminated":
        return 8
    if st.decision == gate.NO_GO and st.notice_by is not None and st.notice_by - now.date() <= NOTICE_SOON \
            and st.phase == "parallel":
        return 4
    if st.phase == "before":
        return 7
    if st.decision == gate.NO_GO or st.decision is None:
        return 5
    return 6


def sort_key(st: SiteStatus, now: dt.datetime) -> tuple:
    far = dt.datetime.max.replace(tzinfo=UTC)
    deadlines = [d for d in (st.nearest_claim_by,
                             dt.datetime.combine(st.notice_by, dt.time(), UTC) if st.notice_by else None) if d]
    return (st.attention_rank, min(deadlines, default=far), st.site)


# ---------------------------------------------------------------- one row per site (CLI table, board)

COLUMNS = ("#", "site", "phase", "gate", "first blocking reason", "notice by", "disconnect",
           "outages", "next claim by", "last run")


def row_cells(st: SiteStatus) -> list[str]:
    """The cells of ``COLUMNS`` for one site, as text (`cutover fleet` and the
    board's fleet screen show the same row)."""
    from harness.durations import format_duration
    last = "never" if st.last_run_age_s is None else \
        format_duration(dt.timedelta(seconds=int(st.last_run_age_s))) + " ago"
    if st.quiet:
        last = f"QUIET {last}"
    return [str(st.attention_rank), st.site,
            {"parallel": f"parallel {st.phase_detail}", "unknown": "unknown"}.get(st.phase, st.phase_detail),
            st.decision or "?", st.first_blocking or st.error or "",
            st.notice_by.isoformat() if st.notice_by else "",
            st.disconnect_on.isoformat() if st.disconnect_on else "",
            ", ".join(f"{o['circuit']} open" for o in st.open_outages),
            f"{st.nearest_claim_by:%Y-%m-%d %H:%M}" if st.nearest_claim_by else "", last]


# ---------------------------------------------------------------- reading the store

def site_profile(store, site: str, run_id: int | None = None):
    """(the profile stored with the site's latest run (or ``run_id``), None) or
    (None, why not): a central database holds no profile files."""
    from pydantic import ValidationError

    from harness.profile import Profile
    if run_id is None:
        latest = store.latest_runs(site, 1)
        if not latest:
            return None, "no runs"
        run_id = latest[0].id
    snapshot = store.profile_snapshot(run_id)
    if not snapshot:
        return None, "no profile snapshot stored with the latest run"
    try:
        # judged under the site's name in the database (an import may have renamed it)
        return Profile.model_validate({**snapshot, "site": site}), None
    except ValidationError as exc:
        return None, f"stored profile snapshot is not valid for this cutover: {exc.errors()[0]['msg']}"


class _RunAge(TypedDict):
    """The fields of :class:`SiteStatus` known before the profile is judged."""
    site: str
    last_run_at: dt.datetime | None
    last_run_age_s: float | None
    quiet: bool
    quiet_after_s: float


def site_status(store, site: str, now: dt.datetime, quiet_after: dt.timedelta | None = None) -> SiteStatus:
    recent = store.latest_runs(site, RECENT_RUNS)
    last = recent[0] if recent else None
    threshold = quiet_threshold([r.started_at for r in recent], quiet_after)
    age = (now - last.started_at).total_seconds() if last else None
    quiet = age is not None and age > threshold.total_seconds()
    base = _RunAge(site=site, last_run_at=last.started_at if last else None, last_run_age_s=age, quiet=quiet,
                   quiet_after_s=threshold.total_seconds())
    profile, why = site_profile(store, site, last.id) if last else (None, "no runs")
    if profile is None:
        st = SiteStatus(phase="unknown", phase_detail=why, decision=None, first_blocking=None, blocking=0,
                        notice_by=None, disconnect_on=None, open_outages=[], nearest_claim_by=None,
                        error=why, **base)
        st.attention_rank = attention(st, now)
        return st

    decision = gate.decide(profile, store, now=now)
    signed = store.signoffs(site).get(TERMINATED_ITEM)
    phase, detail = phase_of(decision, signed is not None and not signed.revoked)
    # Outages of the last claim period (+24 h): the open ones and the claims still to file.
    hours = profile.cutover.sla_claim_hours
    since = now - dt.timedelta(hours=hours) - CLAIM_SOON
    runs = store.runs(site, since=since, until=now + dt.timedelta(microseconds=1), checks="failing")
    open_outages, claims = [], []
    for name in sorted({c for r in runs for c in r.circuits}):
        for o in history.outages(runs, name, hours, now):
            if o.end is None:
                open_outages.append(o.to_dict())
            elif o.claim_by is not None and o.claim_by > now:
                claims.append(o.claim_by)
    st = SiteStatus(phase=phase, phase_detail=detail, decision=decision.decision,
                    first_blocking=decision.blocking[0] if decision.blocking else None,
                    blocking=len(decision.blocking), notice_by=decision.notice_by,
                    disconnect_on=decision.disconnect_on, open_outages=open_outages,
                    nearest_claim_by=min(claims, default=None), **base)
    st.attention_rank = attention(st, now)
    return st


def refresh(store, site: str, now: dt.datetime | None = None) -> SiteStatus:
    """Judge ``site`` now and keep the result in the store's per-site summary:
    `cutover check` calls this after storing a run (and `cutover signoff` after
    a sign-off), so `cutover fleet` reads one row per site instead of judging
    weeks of runs of every site (200 sites x 30 days: ~0.2 s per site)."""
    now = now or dt.datetime.now(UTC)
    st = site_status(store, site, now)
    store.put_site_status(site, now, st.to_dict())
    return st


def _aged(st: SiteStatus, recent: list, now: dt.datetime, quiet_after: dt.timedelta | None) -> SiteStatus:
    """A summary judged earlier, with what depends on the clock brought to ``now``."""
    threshold = quiet_threshold([r.started_at for r in recent], quiet_after)
    st.last_run_age_s = (now - st.last_run_at).total_seconds() if st.last_run_at else None
    st.quiet_after_s = threshold.total_seconds()
    st.quiet = st.last_run_age_s is not None and st.last_run_age_s > st.quiet_after_s
    for o in st.open_outages:        # an ongoing outage lasts until now (harness.history)
        if o.get("ongoing") and o.get("start"):
            o["duration_s"] = round((now - dt.datetime.fromisoformat(o["start"])).total_seconds(), 1)
    st.attention_rank = attention(st, now)
    return st


def fleet(store, now: dt.datetime | None = None, quiet_after: dt.timedelta | None = None,
          live: bool = False) -> list[SiteStatus]:
    """Every site of the database, most urgent first.

    A site whose stored summary was judged after its latest run started and
    after its latest sign-off is taken from the summary (its gate, dates and
    outages as of that run; the age of the last run and the quiet flag at
    ``now``); any other site is judged now and its summary written back.
    ``live`` (and any ``now`` before a summary) judges every site now."""
    from harness.store import StoreWriteError
    now = now or dt.datetime.now(UTC)
    cached = {} if live else store.site_statuses()
    out = []
    for site in store.sites():
        recent = store.latest_runs(site, RECENT_RUNS)
        have = cached.get(site)
        if (have is not None and recent and recent[0].started_at <= have[0] <= now
                and (store.last_signoff_at(site) or have[0]) <= have[0]):     # fresh
            out.append(_aged(SiteStatus.from_dict(have[1]), recent, now, quiet_after))
            continue
        st = site_status(store, site, now, quiet_after)
        if not live and (have is None or have[0] < now):     # never replace a newer summary (--as-of)
            try:
                store.put_site_status(site, now, st.to_dict())
            except StoreWriteError:      # a read-only account: judged, not kept
                pass
        out.append(st)
    return sorted(out, key=lambda s: sort_key(s, now))
