"""The ``cutover`` console script.

Each command lives in its own module below this package and is registered
here; the JSON and exit codes are a contract (docs/contract.md).
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


# command name -> module under harness.cli exposing `command`
COMMANDS = {
    "reflector": "cmd_reflector", "analyze": "cmd_analyze", "plan": "cmd_plan", "profile": "cmd_profile",
    "check": "cmd_check", "schedule": "cmd_schedule", "report": "cmd_report", "gate": "cmd_gate",
    "signoff": "cmd_signoff", "exporter": "cmd_exporter", "board": "cmd_board", "demo": "cmd_demo",
}
PROBES = {
    "latency": "probe_latency", "stream": "probe_stream", "bandwidth": "probe_bandwidth",
    "capacity": "probe_capacity", "sip": "probe_sip", "path": "probe_path", "failover": "probe_failover",
}


@click.group(cls=LazyGroup, lazy=COMMANDS, help=MAIN_HELP,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cutover")
def cli() -> None:
    pass


@cli.command(cls=LazyGroup, lazy=PROBES,
             help="Run one probe against a target. Each prints a readable summary, or JSON with --json.")
def probe() -> None:
    pass


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
