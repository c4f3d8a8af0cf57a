"""`cutover exporter`: not built yet (issue #6)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command(help="""Serve the latest results in the Prometheus exposition format.

\b
Example:
  cutover exporter site.yaml --listen 0.0.0.0:9862""")
@click.argument("profile", metavar="PROFILE")
@click.option("--listen", default="127.0.0.1:9862", metavar="HOST:PORT")
def command(profile, listen):
    not_built("exporter", 6)
