"""`cutover reflector`: not built yet (issue #3)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command(help="""Far-end responder: STAMP reflector on UDP PORT and bandwidth service on TCP PORT.

\b
Example:
  cutover reflector --listen 0.0.0.0:862 --key-file carrier-b.key""")
@click.option("--listen", default="0.0.0.0:862", show_default=True, metavar="HOST:PORT")
@click.option("--key-file", type=click.Path(dir_okay=False), default=None)
def command(listen, key_file):
    not_built("reflector", 3)
