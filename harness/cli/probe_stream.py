"""`cutover probe stream`: not built yet (issue #3)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command("stream", help="""Voice-like isochronous stream against any STAMP reflector.

\b
Example:
  cutover probe stream 192.0.2.10:862 --codec g711 --duration 30 --calls 4""")
@click.argument("target", metavar="HOST:PORT")
@click.option("--codec", default="g711", show_default=True)
@click.option("--ptime", default=20, show_default=True)
@click.option("--duration", default=10.0, show_default=True)
@click.option("--calls", default=1, show_default=True)
@click.option("--dscp", default="ef", show_default=True)
@click.option("--key-file", default=None)
@source_option
@interface_option
@json_option
def command(target, codec, ptime, duration, calls, dscp, key_file, source, interface, as_json):
    not_built("probe stream", 3)
