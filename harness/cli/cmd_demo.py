"""`cutover demo`: not built yet (issue #6)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command(help="""Run the whole job on the embedded loopback demo profile: a local reflector, a check, a report.

\b
Example:
  cutover demo --report-dir cutover-demo""")
@click.option("--report-dir", default="cutover-demo")
def command(report_dir):
    not_built("demo", 6)
