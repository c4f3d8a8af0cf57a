"""The provider scorecard (key p): old and new provider side by side over the
parallel run, the same table as the report's (harness.reports.provider):
availability from covered time against the contract, outages and time to
restore, tickets and their breaches, fixes that did not hold, claims."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from harness.tui.model import BoardData


class ScorecardScreen(ModalScreen[None]):
    CSS_PATH = "scorecard.tcss"
    BINDINGS = [Binding("escape,q,p", "close", "Close")]

    def __init__(self, data: BoardData) -> None:
        super().__init__()
        self.head, self.rows, self.breaches = data.scorecard

    def compose(self) -> ComposeResult:
        with Vertical(id="scorecard"):
            yield Static("Provider scorecard over the parallel run (availability: covered time only)",
                         id="scorecard-title")
            yield DataTable(id="scorecard-table", cursor_type="row", zebra_stripes=True)
            lines = [Text(b, "red") for b in self.breaches] or [Text("no breaches, every fix held", "green")]
            yield Static(Text("\n").join(lines), id="scorecard-breaches")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        # plain Text cells: names and notes come from the profile and the store (no Rich markup)
        table.add_columns(*(Text(h) for h in self.head))
        for r in self.rows:
            table.add_row(*(Text(c) for c in r))
        if not self.rows:
            table.add_columns("")
            table.add_row(Text("no circuits"))

    def action_close(self) -> None:
        self.dismiss(None)
