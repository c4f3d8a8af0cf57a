"""`cutover probe latency`: not built yet (issue #3)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command("latency", help="""Round-trip latency by ICMP echo, with UDP/TCP fallback.

\b
Example:
  cutover probe latency 192.0.2.10 --count 20 --interval 0.2""")
@click.argument("target")
@click.option("--count", default=10, show_default=True)
@click.option("--interval", default=0.5, show_default=True)
@source_option
@json_option
def command(target, count, interval, source, as_json):
    not_built("probe latency", 3)
