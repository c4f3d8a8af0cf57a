"""`cutover report`: not built yet (issue #6)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command(help="""Readiness report over the stored history.

\b
Example:
  cutover report site.yaml --since 7d --format md,html""")
@click.argument("profile", metavar="PROFILE")
@click.option("--since", default="7d", metavar="DURATION")
@click.option("--format", "formats", default="md", metavar="md,html,json,junit")
@json_option
def command(profile, since, formats, as_json):
    not_built("report", 6)
