"""`cutover probe failover`: a failover drill (probes/failover.py), judged by
harness/suite/failover.py, stored in the history as a run of kind "drill"
when it runs for a profile's circuit."""

from __future__ import annotations

import threading

import click

from harness.cli.common import (EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, EXIT_UNMEASURED, StderrProgress,
                                StopOnSignal, circuit_or_exit, die, die_bad_input, emit_json, err, interface_option,
                                json_option, load_profile_or_exit, out, source_option)


def summary_lines(d: dict, checks: list) -> list[str]:
    def f(v, fmt="{:.2f}"):
        return "n/a" if v is None else fmt.format(v)

    lines = [f"failover drill {d['target']}: {d['calls']} x {d['codec']}/{d['ptime_ms']} ms "
             f"for {d['duration_s']:g} s"]
    if d.get("trigger"):
        t = d["trigger"]
        lines.append(f"  trigger     {t['command']!r} at {t['at_s']:g} s: "
                     + (f"ran at {t['started']}, exit {t['exit_code']}" if t.get("started") else "did not run"))
    its = d.get("interruptions") or []
    lines.append(f"  interruptions {len(its)}")
    for i in its:
        dd = i.get("duration_ms_dir") or {}
        lines.append(f"    {i['start']}  {i['duration_ms']:.0f} ms silent ({i['calls']} call(s)); "
                     f"up {f(dd.get('up'), '{:.0f}')} ms / {f(i.get('up_lost'), '{}')} lost, "
                     f"down {f(dd.get('down'), '{:.0f}')} ms / {f(i.get('down_lost'), '{}')} lost"
                     + ("; NEW SESSION at the far end" if i.get("source_changed") else ""))
    lines.append(f"  MOS         before {f(d['mos_before'])}, during {f(d['mos_during'])}, "
                 f"after {f(d['mos_after'])}")
    lines.append(f"  RTT         before {f(d['rtt_ms_before'], '{:.1f}')} ms, "
                 f"after {f(d['rtt_ms_after'], '{:.1f}')} ms;"
                 f" TTL before {f(d['ttl_before'], '{}')}, after {f(d['ttl_after'], '{}')}")
    lines.append(f"  recovered   {d['recovered']}" + (f" (quality back after {d['recovery_s']:.1f} s)"
                                                      if d.get("recovery_s") is not None else ""))
    lines.extend(f"  note: {n}" for n in d.get("notes") or [])
    lines.extend(f"  {c.status.upper():5} {c.reason}" for c in checks)
    return lines


@click.command("failover", help="""Failover drill: keep calls running while the primary line fails.

Runs --calls emulated calls against the reflector for --duration seconds.
Take the primary down while it runs (pull its cable, shut its port) or let
--trigger CMD run a command at --trigger-at seconds for an unattended drill.
Reports every interruption (start, how long the calls were silent per
direction, packets lost, whether the far end saw the calls come back from a
new address or port), RTT and TTL before/after, MOS before/during/after and
how long until quality was back. The verdict compares the longest silence
with the profile's cutover.failover_max_gap_ms (default 1000 ms).

\b
Examples:
  cutover probe failover 192.0.2.10:862 --duration 90
  cutover probe failover --profile site.yaml --circuit new \\
      --trigger "ssh r1 'interface ge-0/0/1 disable'" --trigger-at 30

With --profile the drill is stored in the site's history (kind "drill").
Exit codes: 0 pass or warn (no interruption seen; a new public address),
1 fail (silence longer than allowed, or the calls did not come back),
2 bad input, 3 could not measure.""")
@click.argument("target", metavar="HOST:PORT", required=False)
@click.option("--calls", default=3, show_default=True, type=int, help="Concurrent emulated calls.")
@click.option("--duration", default=60.0, show_default=True, type=float, help="Seconds the drill runs.")
@click.option("--codec", default=None, help="g711 (default, or the profile's), g729, g722, opus.")
@click.option("--ptime", default=None, type=int, help="Packetisation interval in ms (default 20).")
@click.option("--dscp", default="ef", show_default=True, help="DSCP: number or name, or none.")
@click.option("--key-file", default=None, help="STAMP pre-shared key (authenticated mode).")
@click.option("--jitter-buffer-ms", "jitter_buffer", default=None, type=float,
              help="De-jitter buffer in ms for late packets and MOS (default 60, or the profile's).")
@click.option("--trigger", default=None, metavar="CMD",
              help="Shell command that takes the primary down (run once, at --trigger-at).")
@click.option("--trigger-at", default=None, type=float, metavar="S", help="Seconds into the drill to run --trigger.")
@click.option("--max-gap-ms", default=None, type=float,
              help="Longest silence allowed (default: the profile's cutover.failover_max_gap_ms, else 1000).")
@click.option("--timeout", default=3.0, show_default=True, type=float,
              help="Seconds without any reply at the start before giving up.")
@click.option("--profile", "profile_path", default=None, metavar="PROFILE",
              help="Take reflector, source/interface, key, codec and threshold from a circuit.")
@click.option("--circuit", default=None, help="Circuit of the profile (default: the one with role new).")
@click.option("--db", default=None, help="History database (default: the profile's, $CUTOVER_DB, ~/.local/share).")
@click.option("--no-store", is_flag=True, help="Do not store the drill in the history.")
@source_option
@interface_option
@click.option("-v", "--verbose", is_flag=True, help="Progress on stderr also with --json.")
@json_option
def command(target, calls, duration, codec, ptime, dscp, key_file, jitter_buffer, trigger, trigger_at, max_gap_ms,
            timeout, profile_path, circuit, db, no_store, source, interface, verbose, as_json):
    from harness.profile import Cutover
    from harness.suite import failover as judge
    from probes import failover

    overrides = {"calls": calls, "duration_s": duration, "dscp": None if str(dscp).lower() in ("none", "off")
                 else dscp, "trigger": trigger, "trigger_at_s": trigger_at, "timeout_s": timeout}
    for k, v in (("codec", codec), ("ptime_ms", ptime), ("key_file", key_file), ("source", source),
                 ("interface", interface), ("target", target), ("jitter_buffer_ms", jitter_buffer)):
        if v is not None:
            overrides[k] = v
    limit = Cutover().failover_max_gap_ms
    prof = circ = None
    try:
        if profile_path:
            from harness.binding import bind
            prof = load_profile_or_exit(profile_path)
            circ = circuit_or_exit(prof, circuit)
            if not (target or circ.reflector):
                die(EXIT_BAD_INPUT, f"circuit {circ.name!r} has no reflector; give HOST:PORT")
            limit = prof.cutover.failover_max_gap_ms
            cfg = bind("failover", prof, circ, **overrides)
        else:
            if circuit:
                die(EXIT_BAD_INPUT, "--circuit needs --profile PROFILE")
            if not target:
                die(EXIT_BAD_INPUT, "missing HOST:PORT (or --profile PROFILE)")
            cfg = failover.FailoverConfig(**overrides)
        failover.validate(cfg)
    except ValueError as exc:   # BadInput (a ValueError), the circuit's KeyFileError
        die_bad_input(exc)
    if max_gap_ms is not None:
        if max_gap_ms <= 0:
            die(EXIT_BAD_INPUT, "--max-gap-ms must be > 0")
        limit = max_gap_ms
    stop = threading.Event()
    progress = StderrProgress(enabled=verbose or not as_json)
    with StopOnSignal(stop):
        res = failover.run(cfg, progress=progress, stop=stop)
    d = res.to_dict()
    checks = judge.checks(d, limit)
    d["max_gap_ms_allowed"] = limit
    d["checks"] = [c.to_dict() for c in checks]
    statuses = {c.status for c in checks}
    verdict = ("unmeasured" if not res.measured or res.partial else
               "fail" if statuses & {"fail", "error"} else "warn" if "warn" in statuses else "pass")
    d["verdict"] = verdict
    if prof is not None and circ is not None and not no_store and res.measured:
        d["stored_run"] = _store(prof, db, circ.name, checks, d)
    if as_json:
        emit_json(d)
    else:
        for line in summary_lines(d, checks):
            out(line)
    if verdict == "unmeasured":
        die(EXIT_UNMEASURED, "; ".join(res.errors) or "nothing measured")
    for e in res.errors:
        err(f"cutover: {e}")
    if not as_json:
        out(verdict.upper())
    raise SystemExit(EXIT_FAIL if verdict == "fail" else EXIT_OK)


def _store(profile, db, circuit: str, checks: list, raw: dict) -> int:
    """The drill as a run of kind "drill" in the site's history; returns its id."""
    from harness import __version__
    from harness.store import Store, StoreError, default_path
    from harness.verdicts import circuit_verdict
    try:
        store = Store(default_path(profile, db))
    except StoreError as exc:
        die(EXIT_BAD_INPUT, str(exc))
    try:
        run = store.begin_run(profile.site, profile.model_dump(mode="json"), __version__, kind="drill")
        stored = circuit_verdict(checks)
        store.add_circuit_result(run, circuit, stored, checks, {"failover": raw})
        run_id = store.finish_run(run, stored)
    finally:
        store.close()
    return run_id
