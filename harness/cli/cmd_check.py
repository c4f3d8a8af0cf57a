"""`cutover check`: not built yet (issue #6)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command(help="""Run the readiness suite on every circuit, store the run, print the verdict.

\b
Example:
  cutover check site.yaml --circuit new --report-dir reports/""")
@click.argument("profile", metavar="PROFILE")
@click.option("--circuit", default=None)
@click.option("--report-dir", default=None)
@json_option
def command(profile, circuit, report_dir, as_json):
    not_built("check", 6)
