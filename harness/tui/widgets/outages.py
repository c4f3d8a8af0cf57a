"""The outage and SLA-claim log, most urgent first (harness.history)."""

from __future__ import annotations

import datetime as dt

from rich.text import Text
from textual.widgets import DataTable

from harness.durations import format_duration
from harness.tui.model import OutageRow
from harness.tui.widgets.styles import short_time

WHAT_W = 60                       # cells are cut: wide rows make DataTable re-render slowly
URGENT = dt.timedelta(hours=6)   # a claim deadline this close is shown in yellow


def human_duration(d: dt.timedelta) -> str:
    """'45m', '3h 20m', '2d 4h' (harness.durations, as the report writes them)."""
    return format_duration(d)


def claim_text(row: OutageRow, now: dt.datetime) -> Text:
    if row.claimed:
        return Text("claimed", "green")
    if row.claim_by is None:
        return Text("ongoing", "bold red")
    left = row.claim_by - now
    if left.total_seconds() < 0:
        return Text(f"{short_time(row.claim_by)} passed", "dim")
    style = "bold yellow" if left <= URGENT else ""
    return Text(f"{short_time(row.claim_by)} ({human_duration(left)} left)", style)


class OutageTable(DataTable):
    def __init__(self, rows: list[OutageRow], now: dt.datetime, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._pending = (rows, now)

    def on_mount(self) -> None:
        for label in ("Outage", "Claim by", "Start", "Duration", "What failed"):
            self.add_column(label)
        self.show_rows(*self._pending)

    def show_rows(self, rows: list[OutageRow], now: dt.datetime) -> None:
        self.clear()
        for r in rows:
            what = r.what if len(r.what) <= WHAT_W else r.what[:WHAT_W - 1] + "…"
            self.add_row(r.id or r.circuit, claim_text(r, now), short_time(r.start),
                         human_duration(r.duration(now)) + ("" if r.end else "+"), what)
        if not rows:
            self.add_row("", Text("no outages in the window", "green"), "", "", "")
