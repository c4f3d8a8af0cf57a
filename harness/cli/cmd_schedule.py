"""`cutover schedule`: run checks on a schedule until stopped (see harness/schedule.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from harness.cli.common import (EXIT_BAD_INPUT, EXIT_OK, circuit_or_exit, die, duration_or_exit, err,
                                load_profile_or_exit)
from probes.names import unknown_name


@click.command("schedule", help="""Run checks on a schedule until stopped (SIGTERM or Ctrl-C).

\b
Each run is a separate `cutover check` process with a timeout, so a hung or
crashing probe never stops the schedule; it is recorded as NO-GO with the
cause. Runs never overlap: a run that overruns skips the slots it missed.
On SIGTERM no new run starts and the current one gets --grace seconds to
finish (its probes stop early and it stores what it measured), then it is
killed and recorded.

\b
Prefer the OS scheduler? --print-systemd prints a oneshot service and a timer,
--print-cron a crontab line (with flock against overlap and a timeout).

\b
Examples:
  cutover schedule site.yaml --every 15m
  cutover schedule site.yaml --cron '*/5 7-19 * * 1-5' --quick
  cutover schedule site.yaml --every 15m --print-systemd""")
@click.argument("profile", metavar="PROFILE")
@click.option("--every", default=None, metavar="DURATION", help="Run every DURATION (90s, 15m, 1h), first run now.")
@click.option("--cron", default=None, metavar="EXPR", help="Run at the times of a 5-field cron expression (UTC).")
@click.option("--timeout", "timeout_text", default="15m", show_default=True, metavar="DURATION",
              help="Kill a run that takes longer and record it as NO-GO.")
@click.option("--grace", "grace_text", default="30s", show_default=True, metavar="DURATION",
              help="After SIGTERM, how long the current run may take to finish.")
@click.option("--max-runs", type=int, default=None, metavar="N", help="Stop after N runs.")
@click.option("--circuit", "circuits", multiple=True, metavar="NAME", help="Only this circuit (repeatable).")
@click.option("--step", "only_steps", multiple=True, metavar="NAME",
              help="Only this step (repeatable); see `cutover check --help`.")
@click.option("--quick", is_flag=True, help="Short probes.")
@click.option("--db", default=None, metavar="PATH", help="History database (overrides the profile and $CUTOVER_DB).")
@click.option("--report-dir", default=None, metavar="DIR", help="Rewrite the reports after every run.")
@click.option("--prom-file", default=None, metavar="PATH", help="Rewrite a Prometheus textfile after every run.")
@click.option("--print-systemd", is_flag=True, help="Print a systemd service and timer instead of running.")
@click.option("--print-cron", is_flag=True,
              help="Print a crontab line instead of running (errors go to syslog: journalctl -t cutover-SITE).")
@click.option("--user", "unit_user", default=None, metavar="NAME",
              help="With --print-systemd: the user the unit runs as (default: you; 'cutover' if you are "
                   "root or nobody). The unit grants it CAP_NET_RAW and CAP_NET_ADMIN, nothing more.")
def command(profile, every, cron, timeout_text, grace_text, max_runs, circuits, only_steps, quick, db,
            report_dir, prom_file, print_systemd, print_cron, unit_user):
    from harness import schedule as S
    from harness import suite
    from harness.durations import parse_duration
    from harness.cli import history_common

    prof = load_profile_or_exit(profile)
    if bool(every) == bool(cron):
        die(EXIT_BAD_INPUT, "give exactly one of --every DURATION or --cron EXPR")
    try:
        when = S.Every(parse_duration(every)) if every else S.Cron(cron)
    except ValueError as exc:
        die(EXIT_BAD_INPUT, f"--every: {exc}" if every else str(exc))
    timeout = duration_or_exit("--timeout", timeout_text)
    grace_s = duration_or_exit("--grace", grace_text).total_seconds()
    if max_runs is not None and max_runs < 1:
        die(EXIT_BAD_INPUT, f"--max-runs {max_runs}: expected 1 or more")
    for name in circuits:
        circuit_or_exit(prof, name)
    for s in only_steps:
        if s not in suite.ORDER:
            die(EXIT_BAD_INPUT, f"--step: {unknown_name('step', s, suite.ORDER)}")

    check_args: list[str] = []
    for name in circuits:
        check_args += ["--circuit", name]
    for s in only_steps:
        check_args += ["--step", s]
    if quick:
        check_args.append("--quick")
    if report_dir:
        check_args += ["--report-dir", str(Path(report_dir).resolve())]
    if prom_file:
        check_args += ["--prom-file", str(Path(prom_file).resolve())]
    db_path = history_common.db_path(prof, db)
    profile_path = Path(profile).resolve()

    if print_systemd or print_cron:
        try:
            if print_systemd:
                user = unit_user or S.default_unit_user()
                name, service, timer = S.systemd_units(prof, profile_path, db_path, when, timeout, check_args,
                                                       user=user)
                if user == "cutover" and not unit_user:
                    click.echo("# runs as the system user 'cutover': useradd --system --create-home cutover,\n"
                               f"# and let it read {profile_path}"
                               + (f" and write {Path(db_path.target).parent}" if db_path.kind == "sqlite" else ""))
                click.echo(f"# /etc/systemd/system/{name}.service\n{service}\n"
                           f"# /etc/systemd/system/{name}.timer\n{timer}\n"
                           f"# then: systemctl daemon-reload && systemctl enable --now {name}.timer")
            if print_cron:
                click.echo(S.crontab_line(prof, profile_path, db_path, when, timeout, check_args))
        except ValueError as exc:
            die(EXIT_BAD_INPUT, str(exc))
        sys.exit(EXIT_OK)

    # create/migrate the database once here, so a bad --db fails now, not in every run
    history_common.open_store(db_path).close()
    sched = S.Scheduler(prof, profile_path, when, db_path, check_args, timeout=timeout, grace_s=grace_s,
                        max_runs=max_runs, log=err)
    sched.install_signal_handlers()
    sched.run_forever()
    sys.exit(EXIT_OK)
