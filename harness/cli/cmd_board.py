"""`cutover board`: not built yet (issue #7)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command(help="""The cutover board: a terminal UI that tracks the parallel run.

\b
Example:
  cutover board site.yaml""")
@click.argument("profile", metavar="PROFILE")
def command(profile):
    not_built("board", 7)
