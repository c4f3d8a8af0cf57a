"""The main screen: gate header, circuit panels, checklist and outage log.

All data arrives as one :class:`harness.tui.model.BoardData` from the app;
the screen only distributes it to its widgets, so key presses (navigation,
toggling the outage log) never touch the database."""

from __future__ import annotations

from typing import Protocol, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import DataTable, Static

from harness.tui.model import BoardData, ChecklistRow
from harness.tui.widgets.checklist import ChecklistTable
from harness.tui.widgets.circuit import CircuitPanel
from harness.tui.widgets.footer import BoardFooter
from harness.tui.widgets.header import GateHeader
from harness.tui.widgets.outages import OutageTable

class SignsOff(Protocol):
    """What this screen asks of its app (the board, harness.tui.app.BoardApp),
    named here so the screen need not import the app that imports it."""

    def sign_off_item(self, row: ChecklistRow | None, revoke: bool = False, correct: bool = False) -> None: ...

WIDE_COLUMNS = 120      # from here the checklist and the outage log sit side by side
TALL_ROWS = 40          # from here circuit panels list every blocking problem


class MainScreen(Screen):
    CSS_PATH = "main.tcss"
    AUTO_FOCUS = "ChecklistTable"     # the keys s/x act on it; circuits are selected with 1-9 / arrows

    BINDINGS = [
        Binding("r", "app.run_selected", "Run"),
        Binding("a", "app.run_all", "Run all"),
        Binding("s", "sign_off", "Sign off"),
        Binding("x", "revoke", "Revoke"),
        Binding("e", "correct", "Correct", show=False),
        Binding("o", "toggle_outages", "Outages"),
        Binding("c", "focus_checklist", "Checklist", show=False),
        Binding("p", "scorecard", "Scorecard", show=False),
        # priority: the tables would take left/right for horizontal scrolling; the row under the
        # cursor is shown in full below the checklist instead
        Binding("left", "select_circuit(-1)", "Prev circuit", show=False, priority=True),
        Binding("right", "select_circuit(1)", "Next circuit", show=False, priority=True),
        *(Binding(str(n), f"select_index({n - 1})", f"Circuit {n}", show=False) for n in range(1, 10)),
        Binding("f5", "app.reload", "Reload", show=False),
        Binding("escape", "app.close_site", "Fleet", show=False),   # a site opened from the fleet
        Binding("question_mark", "app.help", "Help", key_display="?"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, data: BoardData) -> None:
        super().__init__()
        self.data = data
        self.selected = self._default_selected(data)

    @staticmethod
    def _default_selected(data: BoardData) -> int:
        """Start on the new circuit: it is the one the parallel run is about."""
        for i, c in enumerate(data.circuits):
            if c.role == "new":
                return i
        return 0

    def compose(self) -> ComposeResult:
        d = self.data
        yield GateHeader(d.header, id="header")
        with Horizontal(id="circuits"):
            for i, c in enumerate(d.circuits):
                yield CircuitPanel(c, id=f"circuit-{i}", classes="-selected" if i == self.selected else "")
        with Horizontal(id="lower"):
            with Vertical(id="checklist-box") as box:
                box.border_title = "Checklist"
                yield ChecklistTable(d.checklist, id="checklist")
                yield Static("", id="detail")
            with Vertical(id="outage-box") as box:
                box.border_title = "Outages and SLA claims"
                yield OutageTable(d.outages, d.header.now, id="outages")
        yield BoardFooter()

    def on_mount(self) -> None:
        self._layout_for(self.size.width, self.size.height)
        self._set_titles()

    def on_resize(self, event) -> None:
        self._layout_for(event.size.width, event.size.height)

    def _layout_for(self, width: int, height: int) -> None:
        self.set_class(width < WIDE_COLUMNS, "-narrow")
        for panel in self.query(CircuitPanel):
            panel.max_problems = 3 if height >= TALL_ROWS else 1
            panel.show_daily = height >= TALL_ROWS

    def _set_titles(self) -> None:
        d = self.data
        box = self.query_one("#outage-box")
        box.border_title = f"Outages and SLA claims ({len(d.outages)})"
        signed = sum(1 for r in d.checklist if r.ok)
        self.query_one("#checklist-box").border_title = f"Checklist ({signed}/{len(d.checklist)} done)"

    # ------------------------------------------------------------ data in

    def show(self, data: BoardData) -> None:
        """New data from the app (refresh, sign-off, finished run)."""
        self.data = data
        self.query_one(GateHeader).view = data.header
        panels = list(self.query(CircuitPanel))
        for panel, view in zip(panels, data.circuits):
            panel.view = view
        self.query_one(ChecklistTable).show_rows(data.checklist)
        self._show_detail()
        self.query_one(OutageTable).show_rows(data.outages, data.header.now)
        self._set_titles()

    def panel(self, name: str) -> CircuitPanel | None:
        for p in self.query(CircuitPanel):
            if p.circuit_name == name:
                return p
        return None

    # ------------------------------------------------------------ navigation

    @property
    def selected_circuit(self) -> str:
        return self.data.circuits[self.selected].name

    def action_select_index(self, index: int) -> None:
        panels = list(self.query(CircuitPanel))
        if not 0 <= index < len(panels):
            return
        panels[self.selected].remove_class("-selected")
        self.selected = index
        panels[index].add_class("-selected")
        # focus stays where it is (the checklist, usually): moving it would restyle
        # both focus-within boxes and their tables on every arrow key

    def action_select_circuit(self, step: int) -> None:
        n = len(self.data.circuits)
        self.action_select_index((self.selected + step) % n)

    def on_descendant_focus(self, event) -> None:
        # focusing a panel (tab, click) also selects it for "Run now"
        widget = event.widget
        if isinstance(widget, CircuitPanel):
            panels = list(self.query(CircuitPanel))
            if widget in panels and panels.index(widget) != self.selected:
                panels[self.selected].remove_class("-selected")
                self.selected = panels.index(widget)
                widget.add_class("-selected")

    def action_focus_checklist(self) -> None:
        self.remove_class("-show-outages")
        self.query_one(ChecklistTable).focus()

    def action_scorecard(self) -> None:
        from harness.tui.screens.scorecard import ScorecardScreen
        self.app.push_screen(ScorecardScreen(self.data))

    def action_toggle_outages(self) -> None:
        if self.has_class("-narrow"):
            self.toggle_class("-show-outages")
            target = OutageTable if self.has_class("-show-outages") else ChecklistTable
            self.query_one(target).focus()
        else:
            table = self.query_one(OutageTable)
            if table.has_focus:
                self.query_one(ChecklistTable).focus()
            else:
                table.focus()

    # ------------------------------------------------------------ sign-off

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if isinstance(event.data_table, ChecklistTable):
            self._show_detail()

    def _show_detail(self) -> None:
        """The item under the cursor in full: what the gate found, or who signed and why."""
        row = self.current_item()
        text = ""
        if row is not None:
            if row.kind == "manual" and row.by:
                when = row.at.strftime("%Y-%m-%d %H:%M UTC") if row.at else ""
                text = f"{row.id}: {row.status} by {row.by} {when}" + (f": {row.note}" if row.note else "") \
                    + "  (e to correct)"
            elif row.kind == "manual":
                text = f"{row.id}: not signed off yet (s to sign off)"
            else:
                text = row.note
        self.query_one("#detail", Static).update(text)

    def _board(self) -> SignsOff:
        return cast(SignsOff, self.app)

    def current_item(self) -> ChecklistRow | None:
        return self.query_one(ChecklistTable).current_item()

    def action_sign_off(self) -> None:
        self._board().sign_off_item(self.current_item(), revoke=False)

    def action_revoke(self) -> None:
        self._board().sign_off_item(self.current_item(), revoke=True)

    def action_correct(self) -> None:
        self._board().sign_off_item(self.current_item(), correct=True)
