"""`cutover probe bandwidth`: not built yet (issue #4)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command("bandwidth", help="""Throughput down and up, and latency under load.

\b
Example:
  cutover probe bandwidth --reflector 192.0.2.10:862 --duration 10 --streams 4""")
@click.option("--reflector", default=None, metavar="HOST:PORT")
@click.option("--speedtest", is_flag=True)
@click.option("--server", default=None)
@click.option("--mini", default=None, metavar="URL")
@click.option("--duration", default=10.0, show_default=True)
@click.option("--streams", default=4, show_default=True)
@source_option
@interface_option
@json_option
def command(reflector, speedtest, server, mini, duration, streams, source, interface, as_json):
    not_built("probe bandwidth", 4)
