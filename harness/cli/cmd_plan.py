"""`cutover plan PROFILE`: bandwidth the planned usage needs, per circuit."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

from harness.cli.common import emit_json, json_option, load_profile_or_exit
from harness.escape import rich_text
from harness.planning import LAYERS, plan_profile

if TYPE_CHECKING:
    from harness.profile import Overhead


@click.command("plan", help="""Bandwidth the planned usage needs, per circuit and direction, and what each
contract covers.

\b
Example:
  cutover plan profiles/demo.yaml
  cutover plan site.yaml --overhead wire --json

Per-call figures follow the codec's packet size plus RTP/UDP/IP headers and the
layer chosen (ip, ethernet, wire); the profile's vlan/ipv6/srtp flags add theirs.""")
@click.argument("profile", metavar="PROFILE")
@click.option("--overhead", type=click.Choice(LAYERS), default=None,
              help="Layer to count at (default: the profile's planned.overhead, else ethernet).")
@json_option
def command(profile: str, overhead: Overhead | None, as_json: bool) -> None:   # click.Choice(LAYERS)
    p = load_profile_or_exit(profile)
    if overhead:
        p.planned.overhead = overhead
    pl = plan_profile(p)
    if as_json:
        emit_json({"site": p.site, **pl.__dict__})
        return
    out = Console()
    planned = p.planned
    out.print(f"[bold]{rich_text(p.site)}[/bold]: {planned.calls} {pl.codec.upper()} calls at {pl.ptime_ms} ms, "
              f"{planned.video_calls} video x {planned.video_kbps:g} kbit/s, "
              f"{planned.other_mbps:g} Mbit/s other, {planned.headroom_pct:g} % headroom")
    out.print(f"One call, one direction: {pl.per_call_kbps:.1f} kbit/s at the {pl.overhead} layer "
              f"({pl.packet_bytes} B x {1000 / pl.ptime_ms:g} packets/s)")
    out.print(f"Voice {pl.voice_mbps:.3f} Mbit/s + video {pl.video_mbps:.3f} + other {pl.other_mbps:.3f}, "
              f"with headroom: [bold]{pl.required_up_mbps:.3f} Mbit/s needed each way[/bold]")
    table = Table(show_edge=False)
    for col in ("circuit", "role", "provider", "down (contract)", "up (contract)", "covers", "calls it carries"):
        table.add_column(col)
    for c in pl.circuits:
        ok = "[green]yes[/green]" if c.covers else "[red]NO[/red]"
        table.add_row(rich_text(c.name), c.role, rich_text(c.provider or ""), f"{c.contract_down_mbps:g} Mbit/s",
                      f"{c.contract_up_mbps:g} Mbit/s", ok, str(c.max_calls))
    out.print(table)
    for c in pl.circuits:
        for line in c.why:
            out.print(f"{c.name}: {line}")
    for note in pl.notes:
        out.print(f"note: {rich_text(note)}")
