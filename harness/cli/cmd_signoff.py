"""`cutover signoff`: not built yet (issue #6)."""

import click

from harness.cli.common import interface_option, json_option, not_built, source_option  # noqa: F401


@click.command(help="""Sign off (or revoke) a checklist item of the cutover.

\b
Example:
  cutover signoff site.yaml porting --by "A. Engineer" --note "all 48 DDIs ported"
""")
@click.argument("profile", metavar="PROFILE")
@click.argument("item", metavar="ITEM")
@click.option("--by", "by", default=None, metavar="NAME")
@click.option("--note", default="", metavar="TEXT")
@click.option("--revoke", is_flag=True)
def command(profile, item, by, note, revoke):
    not_built("signoff", 6)
