"""`cutover check`: run the readiness suite on every circuit, store the run,
print the verdict (and write reports / Prometheus file on request).

Exit codes: 0 GO or WARN (a warning is worth reading, not a reason to stop a
script), 1 NO-GO, 2 bad input, 3 nothing could be measured at all (every
check of every circuit is an error: no network, every reflector down), 70 a
bug in cutover interrupted a step (the run is stored with the step's check
as an ``internal_error``; stderr says where the traceback was written).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from harness.cli.common import (StopOnSignal, EXIT_BAD_INPUT, EXIT_FAIL, EXIT_INTERNAL, EXIT_NOT_STORED, EXIT_OK,
                                EXIT_UNMEASURED, circuit_or_exit, die, emit_json, err,
                                json_option, load_profile_or_exit, out)
from harness.escape import rich_text
from probes.names import unknown_name

if TYPE_CHECKING:
    from rich.progress import TaskID

    from harness.runner import RunOutcome

def _suite_order() -> tuple[str, ...]:
    from harness.suite import ORDER   # cheap: step modules load only when the suite runs
    return ORDER


STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "error": "red bold"}
CAUSE_LABEL = {"network": "network", "measurement_gap": "gap", "internal_error": "bug"}
VERDICT_STYLE = {"GO": "bold green", "WARN": "bold yellow", "NO-GO": "bold red"}


# ---------------------------------------------------------------- progress on stderr

class CheckProgress:
    """Which probe runs on which circuit: a rich live display on a terminal,
    short lines otherwise (logs, CI, the scheduler's child runs)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._live = None
        self._tasks: dict[str, TaskID] = {}
        if enabled and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
            self._live = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                  TimeElapsedColumn(), console=Console(stderr=True), transient=False)

    def __enter__(self) -> "CheckProgress":
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.stop()

    def __call__(self, circuit: str, step: str, fraction: float | None, message: str) -> None:
        if not self.enabled:
            return
        if self._live is not None:
            task = self._tasks.get(circuit)
            if task is None:
                task = self._tasks[circuit] = self._live.add_task(circuit, total=1.0)
            desc = f"[bold]{rich_text(circuit)}[/] {step}: {rich_text(message)}"
            self._live.update(task, description=desc, completed=fraction if fraction is not None else None)
            return
        # plain lines: phase boundaries, warnings and problems only, so logs stay short
        if fraction in (0.0, 1.0) or step == "preflight" or message.startswith("warning"):
            err(f"[{circuit}] {step}: {message}")


# ---------------------------------------------------------------- presenting the verdict

def print_table(outcome) -> None:
    from rich.console import Console
    from rich.table import Table
    console = Console(file=sys.stdout, width=None if sys.stdout.isatty() else 140)
    # names, reasons and ids come from data: rich_text shows their control characters and
    # keeps their brackets from being read as Rich markup
    table = Table(title=f"{rich_text(outcome.site)}: readiness check (run {outcome.run_id})", show_lines=False)
    for col in ("circuit", "check", "status", "reason"):
        table.add_column(col, overflow="fold")
    for name, co in outcome.circuits.items():
        for c in co.checks:
            status = f"[{STATUS_STYLE[c.status]}]{c.status}[/]"
            if c.status != "pass" and c.cause and c.cause != "network":
                status += f" [dim]({CAUSE_LABEL[c.cause]})[/]"
            table.add_row(rich_text(name), rich_text(c.id), status, rich_text(c.reason))
    console.print(table)
    for name, co in outcome.circuits.items():
        line = f"  {rich_text(name)}: [{VERDICT_STYLE[co.verdict]}]{co.verdict}[/]"
        blocking = [c for c in co.checks if c.status in ("fail", "error")]
        if blocking:
            line += " - " + "; ".join(rich_text(c.reason) for c in blocking[:3])
            if len(blocking) > 3:
                line += f" (+{len(blocking) - 3} more)"
        console.print(line, highlight=False)
    skipped = {s: why for co in outcome.circuits.values() for s, why in co.skipped.items()
               if not why.startswith("does not apply")}
    for s, why in skipped.items():
        console.print(f"  [dim]step {s}: {rich_text(why)}[/]", highlight=False)
    for gap in outcome.far_end_gaps:
        console.print(f"  far-end gap: {rich_text(gap['reason'])}", highlight=False)
    console.print(f"Verdict: [{VERDICT_STYLE[outcome.verdict]}]{outcome.verdict}[/]", highlight=False)


def exit_code(outcome) -> int:
    if outcome.internal_error:
        return EXIT_INTERNAL
    if outcome.store_error is not None and not outcome.nothing_measured:
        return EXIT_NOT_STORED
    if outcome.nothing_measured:
        return EXIT_UNMEASURED
    return EXIT_FAIL if outcome.verdict == "NO-GO" else EXIT_OK


# ---------------------------------------------------------------- the command body (shared with demo)

def open_store(profile, db: str | None):
    """The history database; a resource fault (disk full, read-only, server
    unreachable) is raised as StoreWriteError for the caller to measure anyway,
    other problems (a broken file, a bad URL) exit 2."""
    from harness.cli.history_common import db_path
    from harness.store import Store, StoreError, StoreWriteError
    path = db_path(profile, db)
    try:
        return Store(path)
    except StoreWriteError:
        raise
    except StoreError as exc:
        die(EXIT_BAD_INPUT, str(exc))


def write_reports(profile, store, report_dir: str, run_id: int) -> list[Path]:
    from harness.reports import write_reports as _write
    try:
        return _write(profile, store, report_dir, run_id=run_id)
    except OSError as exc:   # the run is stored; a full disk or bad folder must not hide the verdict
        err(f"cutover: cannot write reports to {report_dir}: {exc.strerror or exc}; the run is stored")
        return []


def write_prom(profile, store, prom_file: str) -> bool:
    from harness.exporter import write_prom_file
    try:
        write_prom_file(profile, store, prom_file)
    except OSError as exc:
        err(f"cutover: cannot write {prom_file}: {exc.strerror or exc}; the run is stored")
        return False
    return True


def unstored_document(outcome, db_path) -> dict:
    """Everything a run measured, for the fallback file when the database refused it."""
    return {"cutover_unstored_run": 1, "site": outcome.site, "database": str(db_path),
            "store_error": str(outcome.store_error), "started_at": outcome.started_at.isoformat(),
            "finished_at": outcome.finished_at.isoformat(), **outcome.to_dict(),
            "raw": {n: co.raw for n, co in outcome.circuits.items()}}


def save_unstored(outcome, db_path, report_dir: str | None) -> Path | None:
    """Write the run to the first folder that takes it: beside the database, the report
    folder, the current folder, the temporary folder. A full disk often still leaves one."""
    import json
    import os
    import tempfile
    text = json.dumps(unstored_document(outcome, db_path), indent=2, default=str)
    local = db_path.kind == "sqlite"        # a server database has no folder to write beside
    base = Path(db_path.target).name if local else "cutover-central-db"
    name = f"{base}.unstored-run-{outcome.started_at:%Y%m%dT%H%M%SZ}-{os.getpid()}.json"
    folders = ([Path(db_path.target).parent] if local else []) + ([Path(report_dir)] if report_dir else []) + \
        [Path.cwd(), Path(tempfile.gettempdir())]
    for folder in dict.fromkeys(f.resolve() for f in folders):
        target = folder / name
        try:
            if report_dir and folder == Path(report_dir).resolve():
                folder.mkdir(parents=True, exist_ok=True)      # --report-dir may not exist yet
            with open(target, "x", encoding="utf-8") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            return target
        except OSError as exc:
            err(f"cutover: cannot save the results in {folder}: {exc.strerror or exc}")
            try:
                target.unlink()          # a partial file (the disk filled under it) is no result
            except OSError:
                pass
    return None


def execute(profile, *, circuits: tuple[str, ...] = (), quick: bool = False, db: str | None = None,
            report_dir: str | None = None, prom_file: str | None = None, as_json: bool = False,
            store=None, quiet: bool = False, only_steps: tuple[str, ...] = (),
            run_id_file: str | None = None, steps=None,
            skipped: dict[str, str] | None = None) -> tuple[int, RunOutcome, list[Path]]:
    """Run, store, present. Returns (exit code, RunOutcome, report paths)."""
    from harness import suite
    from harness.runner import run_check
    if only_steps:
        unknown = [s for s in only_steps if s not in suite.ORDER]
        if unknown:
            die(EXIT_BAD_INPUT, f"--step: {unknown_name('step', unknown[0], suite.ORDER)}")
        missing = [s for s in only_steps if s in suite.unavailable()]
        if missing:
            die(EXIT_BAD_INPUT, f"--step {missing[0]}: {suite.unavailable()[missing[0]]}")
        steps = [m for m in suite.steps() if m.NAME in only_steps]
    for name in circuits:
        circuit_or_exit(profile, name)
    # refuse unusable output paths before spending minutes measuring
    if report_dir and Path(report_dir).exists() and not Path(report_dir).is_dir():
        die(EXIT_BAD_INPUT, f"--report-dir {report_dir}: exists and is not a folder")
    if prom_file and not Path(prom_file).resolve().parent.is_dir():
        die(EXIT_BAD_INPUT, f"--prom-file {prom_file}: folder {Path(prom_file).resolve().parent} does not exist")
    from harness.store import StoreWriteError, default_path
    open_error = None
    if store is None:
        try:
            store = open_store(profile, db)
        except StoreWriteError as exc:      # measure anyway; the results go to a fallback file
            open_error = exc
    db_file = store.location if store is not None else default_path(profile, db)
    stop = threading.Event()
    # the probes stop at once; storing what they measured takes well under the 5 s deadline
    with StopOnSignal(stop, "stopping the probes, storing what was measured", deadline_s=5.0), \
            CheckProgress(enabled=not quiet) as progress:
        # a run of some steps only is evidence for those steps only (harness.history: PARTIAL_KIND)
        outcome = run_check(profile, store=store, circuits=list(circuits) or None, quick=quick,
                            progress=progress, stop=stop, steps=steps, skipped=skipped,
                            kind="partial" if only_steps else "check",
                            on_stored=(lambda rid: Path(run_id_file).write_text(str(rid))) if run_id_file else None)
    if open_error is not None:
        outcome.store_error = open_error
    paths: list[Path] = []
    saved = None
    if outcome.store_error is not None:
        # the measurement is not lost with the database: a fallback file, its path printed
        saved = save_unstored(outcome, db_file, report_dir)
        where = f"the run's results are saved in {saved}" if saved else \
            "and no fallback file could be written either (see above); the results follow on stdout"
        err(f"cutover: {outcome.store_error}; {where}")
        if report_dir or prom_file:
            err("cutover: reports and --prom-file are made from the database: not written")
    else:
        if report_dir:
            assert outcome.run_id is not None   # no store_error: the run was stored
            paths = write_reports(profile, store, report_dir, outcome.run_id)
        if prom_file:
            write_prom(profile, store, prom_file)
    if as_json:   # stdout: exactly the contract object; where things went is on stderr
        if not quiet and outcome.store_error is None:
            err(f"stored as run {outcome.run_id} in {store.location}")
            for p in paths:
                err(f"report: {p}")
        d = outcome.to_dict()
        if outcome.store_error is not None:
            d["not_stored"] = {"cause": getattr(outcome.store_error, "cause", None),
                               "error": str(outcome.store_error), "results_file": str(saved) if saved else None}
        emit_json(d)
    elif outcome.store_error is not None:
        print_table(outcome)
        if saved is None:
            emit_json(unstored_document(outcome, db_file))
    else:
        print_table(outcome)
        out(f"history: run {outcome.run_id} in {store.location}")
        for p in paths:
            out(f"report: {p}")
    bugs = [(name, step, path) for name, co in outcome.circuits.items() for step, path in co.tracebacks.items()]
    if bugs:   # one line, whatever the output format
        name, step, path = bugs[0]
        more = f" (and {len(bugs) - 1} more step(s), each with its own file)" if len(bugs) > 1 else ""
        stored = f"; run {outcome.run_id} is stored" if outcome.store_error is None else ""
        err(f"cutover: internal error: a bug in cutover (not a network fault) in step {step} of circuit "
            f"{name}{more}; traceback written to {path}{stored}")
    return exit_code(outcome), outcome, paths


@click.command("check", help="""Run the readiness suite on every circuit, store the run, print the verdict.

\b
Each circuit is measured through its own source address or interface:
latency, a voice stream, bandwidth with latency under load, capacity (and SIP
and path where built). Every check records measured value, requirement,
margin and a one-line reason.

\b
History: stored in --db, else the profile's db:, else $CUTOVER_DB, else
~/.local/share/cutover/history.sqlite.

\b
Exit codes: 0 GO or WARN, 1 NO-GO, 2 bad input, 3 nothing could be measured,
70 internal error (a bug in cutover; the traceback file is named on stderr),
74 measured but the history database refused the run (disk full, read-only,
locked): the cause is on stderr and the results are in a fallback file whose
path is printed (beside the database, else --report-dir, the current folder
or the temporary folder).

\b
Example:
  cutover check site.yaml --circuit new --report-dir reports/""")
@click.argument("profile", metavar="PROFILE")
@click.option("--circuit", "circuits", multiple=True, metavar="NAME",
              help="Only this circuit (repeatable). Default: all.")
@click.option("--report-dir", default=None, metavar="DIR",
              help="Also write report.md, report.html, report.json and junit.xml here.")
@click.option("--quick", is_flag=True, help="Short probes (about 15 s per circuit) for a first look on site.")
@click.option("--db", default=None, metavar="PATH", help="History database (overrides the profile and $CUTOVER_DB).")
@click.option("--prom-file", default=None, metavar="PATH",
              help="Write the latest results in Prometheus text format (node_exporter textfile collector).")
@click.option("--step", "only_steps", multiple=True, metavar="NAME",
              help=f"Only this step (repeatable): {', '.join(_suite_order())}.")
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr.")
@click.option("--run-id-file", default=None, hidden=True,
              help="Write the run id here once the run is stored (used by `cutover schedule`).")
@json_option
def command(profile, circuits, report_dir, quick, db, prom_file, only_steps, quiet, run_id_file, as_json):
    prof = load_profile_or_exit(profile)
    # a bug of ours outside the steps: the entry point (harness.cli.main) exits 70 with its traceback file
    code, _outcome, _paths = execute(prof, circuits=circuits, quick=quick, db=db, report_dir=report_dir,
                                     prom_file=prom_file, as_json=as_json, quiet=quiet,
                                     only_steps=only_steps, run_id_file=run_id_file)
    sys.exit(code)
