"""`cutover schedule`: not built yet (issue #6)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command(help="""Run checks on a schedule until stopped.

\b
Example:
  cutover schedule site.yaml --every 15m""")
@click.argument("profile", metavar="PROFILE")
@click.option("--every", default=None, metavar="DURATION")
@click.option("--cron", default=None, metavar="EXPR")
def command(profile, every, cron):
    not_built("schedule", 6)
