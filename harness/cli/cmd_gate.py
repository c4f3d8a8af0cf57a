"""`cutover gate`: not built yet (issue #6)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command(help="""The go/no-go decision for terminating the old service.

\b
Example:
  cutover gate site.yaml --json""")
@click.argument("profile", metavar="PROFILE")
@json_option
def command(profile, as_json):
    not_built("gate", 6)
