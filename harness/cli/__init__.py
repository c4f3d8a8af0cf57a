"""The ``cutover`` console script.

Each command lives in its own module below this package and is registered
here; the JSON and exit codes are a contract (DESIGN.md §3).
"""

from __future__ import annotations

import os
import sys

import click

from harness import __version__
from harness.cli.common import EXIT_UNMEASURED

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

Exit codes: 0 pass/GO, 1 measured and failed/NO-GO, 2 bad input, 3 could not measure.
"""


@click.group(help=MAIN_HELP, context_settings={"help_option_names": ["-h", "--help"],
                                                "max_content_width": 100})
@click.version_option(__version__, prog_name="cutover")
def cli() -> None:
    pass


@cli.group(help="Run one probe against a target. Each prints a readable summary, or JSON with --json.")
def probe() -> None:
    pass


def _register() -> None:
    from harness.cli import (cmd_analyze, cmd_board, cmd_check, cmd_demo, cmd_exporter, cmd_gate,
                             cmd_plan, cmd_profile, cmd_reflector, cmd_report, cmd_schedule,
                             cmd_signoff, probe_bandwidth, probe_capacity, probe_latency,
                             probe_path, probe_sip, probe_stream)
    for mod in (cmd_reflector, cmd_analyze, cmd_plan, cmd_profile, cmd_check, cmd_schedule,
                cmd_report, cmd_gate, cmd_signoff, cmd_exporter, cmd_board, cmd_demo):
        cli.add_command(mod.command)
    for mod in (probe_latency, probe_stream, probe_bandwidth, probe_capacity, probe_sip, probe_path):
        probe.add_command(mod.command)


_register()


def main() -> None:
    """Entry point: no traceback reaches the user unless CUTOVER_DEBUG=1."""
    try:
        cli(standalone_mode=True)
    except KeyboardInterrupt:
        click.echo("cutover: interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except Exception as exc:  # last line of defence; every known failure has its own message
        if os.environ.get("CUTOVER_DEBUG"):
            raise
        click.echo(f"cutover: internal error: {type(exc).__name__}: {exc} "
                   "(set CUTOVER_DEBUG=1 for a traceback and report it)", err=True)
        sys.exit(EXIT_UNMEASURED)
