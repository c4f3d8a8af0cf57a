"""`cutover probe sip`: not built yet (issue #8)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command("sip", help="""SIP OPTIONS over UDP/TCP/TLS with RFC 3263 DNS resolution.

\b
Example:
  cutover probe sip "sip:sbc.carrier.example;transport=tcp"
""")
@click.argument("uri")
@json_option
def command(uri, as_json):
    not_built("probe sip", 8)
