"""`cutover analyze`: not built yet (issue #8)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command(help="""RTP streams in a capture (pcap/pcapng): per-stream jitter, loss, MOS.

\b
Example:
  cutover analyze calls.pcap --json""")
@click.argument("capture", metavar="FILE.pcap")
@json_option
def command(capture, as_json):
    not_built("analyze", 8)
