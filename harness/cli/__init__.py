"""The ``cutover`` console script.

Each command lives in its own module below this package and is registered
here; the JSON and exit codes are a contract (docs/contract.md).
"""

from __future__ import annotations

import os
import sys

import click

from harness import __version__
from harness.cli.common import (EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_NOT_STORED, EXIT_UNMEASURED, err,
                                 guard_broken_pipes)

MAIN_HELP = """Network-readiness and VoIP cutover test harness.

\b
Typical flow for a site moving providers:
  cutover profile validate site.yaml     check the site profile
  cutover plan site.yaml                 bandwidth the planned calls need
  cutover reflector --listen 0.0.0.0:862 far end (or use a carrier's STAMP reflector)
  cutover check site.yaml                measure every circuit, GO / NO-GO
  cutover schedule site.yaml --every 15m the parallel run, day after day
  cutover report site.yaml --since 7d    readiness report with outages
  cutover gate site.yaml                 may the old service be terminated?
  cutover board site.yaml                the cutover board (terminal UI)
  cutover fleet --db postgresql://...    every site of a central database

Exit codes: 0 pass/GO, 1 measured and failed/NO-GO, 2 bad input, 3 could not measure,
70 internal error (a bug: please report it), 130 interrupted.
"""


class LazyGroup(click.Group):
    """A group whose commands are imported only when used: `cutover plan` does
    not pay for importing the TUI, scapy wrappers or the report renderers."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib
            return importlib.import_module(f"harness.cli.{self.lazy[name]}").command
        return super().get_command(ctx, name)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            from probes.names import unknown_name
            raise click.UsageError(unknown_name("command", name, self.list_commands(ctx)), ctx)
        return super().resolve_command(ctx, args)


# command name -> module under harness.cli exposing `command`
COMMANDS = {
    "reflector": "cmd_reflector", "analyze": "cmd_analyze", "plan": "cmd_plan", "profile": "cmd_profile",
    "check": "cmd_check", "schedule": "cmd_schedule", "report": "cmd_report", "gate": "cmd_gate",
    "signoff": "cmd_signoff", "exporter": "cmd_exporter", "board": "cmd_board", "demo": "cmd_demo",
    "db": "cmd_db", "fleet": "cmd_fleet", "ticket": "cmd_ticket", "claim": "cmd_claim",
}
PROBES = {
    "latency": "probe_latency", "stream": "probe_stream", "bandwidth": "probe_bandwidth",
    "capacity": "probe_capacity", "sip": "probe_sip", "path": "probe_path", "failover": "probe_failover",
    "call": "probe_call",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, help=MAIN_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cutover")
@click.option("--strict-permissions", is_flag=True, envvar="CUTOVER_STRICT_PERMISSIONS",
              help="Refuse key and account files that group or others may read (as ssh does); "
                   "default: a warning. Also $CUTOVER_STRICT_PERMISSIONS=1.")
def cli(strict_permissions: bool) -> None:
    from harness.cli.common import warn
    from probes import inputfile
    if strict_permissions:   # children (cutover schedule's checks) inherit it
        os.environ[inputfile.STRICT_ENV] = "1"
    # without the flag the environment decides (the policy is process-wide: an in-process
    # call must not pin it for later ones)
    inputfile.set_policy(strict=True if strict_permissions else None, warn=warn)


@cli.command(cls=LazyGroup, lazy=PROBES,
             help="Run one probe against a target. Each prints a readable summary, or JSON with --json.")
def probe() -> None:
    pass


def main() -> None:
    """Entry point: one error style (``cutover: ...``, docs/cli.md), the
    documented exit codes, and no traceback on the terminal unless
    CUTOVER_DEBUG=1 (a bug's traceback goes to a file, harness.runner.write_traceback)."""
    guard_broken_pipes()
    try:
        rv = cli.main(standalone_mode=False, prog_name="cutover")
    except click.exceptions.NoArgsIsHelpError as exc:   # bare `cutover` / `cutover probe`: the help
        exc.show()
        sys.exit(exc.exit_code)
    except click.ClickException as exc:   # usage: unknown option, bad value, missing argument
        sys.exit(_usage_error(exc))
    except (click.exceptions.Abort, KeyboardInterrupt):
        err("cutover: interrupted")
        sys.exit(EXIT_INTERRUPTED)
    except SystemExit:
        raise
    except Exception as exc:  # last line of defence; every known failure has its own message
        from harness.store import StoreUnavailable, StoreWriteError
        if isinstance(exc, StoreUnavailable):  # the database server went away in the middle of a command
            err(f"cutover: {exc}")
            sys.exit(EXIT_UNMEASURED)
        if isinstance(exc, StoreWriteError):   # any command's write onto a full/read-only/locked database
            err(f"cutover: {exc}; nothing was written")
            sys.exit(EXIT_NOT_STORED)
        if os.environ.get("CUTOVER_DEBUG"):
            raise
        from harness.runner import write_traceback
        path = write_traceback(exc, " ".join(sys.argv[1:3]) or "cutover")
        err(f"cutover: internal error: {type(exc).__name__}: {exc} (a bug in cutover, not a network fault; "
            f"traceback written to {path}; please report it)")
        sys.exit(EXIT_INTERNAL)
    sys.exit(rv if isinstance(rv, int) else 0)


def _usage_error(exc: click.ClickException) -> int:
    """click's usage errors in the one style:
    ``cutover: probe stream: no such option '--jiter' (did you mean '--jitter-buffer-ms'?)``."""
    message = exc.format_message().rstrip(".")
    ctx = getattr(exc, "ctx", None)
    where = ""
    if ctx is not None:
        where = ctx.command_path.removeprefix("cutover").strip()
        message += f" (see 'cutover{' ' + where if where else ''} --help')"
    err(f"cutover: {where + ': ' if where else ''}{message[:1].lower()}{message[1:]}")
    return exc.exit_code
