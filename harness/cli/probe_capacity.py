"""`cutover probe capacity`: not built yet (issue #5)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command("capacity", help="""Largest number of concurrent emulated calls the path carries within thresholds.

\b
Example:
  cutover probe capacity 192.0.2.10:862 --codec g711 --max-calls 200""")
@click.argument("target", metavar="HOST:PORT", required=False)
@click.option("--codec", default="g711", show_default=True)
@click.option("--max-calls", default=None, type=int)
@json_option
def command(target, codec, max_calls, as_json):
    not_built("probe capacity", 5)
