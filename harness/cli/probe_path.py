"""`cutover probe path`: not built yet (issue #8)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command("path", help="""Traceroute with per-hop RTT and loss, path MTU, where DSCP marking is lost.

\b
Example:
  cutover probe path 192.0.2.10""")
@click.argument("target")
@json_option
def command(target, as_json):
    not_built("probe path", 8)
