"""The fleet screen: every site of a (central) database, most urgent first,
as `cutover fleet` shows them; Enter opens the site's board.

The rows come from :func:`harness.fleet.fleet` (the summary each run keeps,
the age of the last run brought to now) and are drawn with
:func:`harness.fleet.row_cells`, the cells of `cutover fleet`'s table, so the
screen and the command cannot disagree. The screen never reads the
database: the app hands it a new list (poll, f5, back from a site)."""

from __future__ import annotations

import datetime as dt

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.screen import Screen
from textual.widgets import DataTable, Static

from harness import fleet
from harness.tui.widgets.footer import BoardFooter

# attention ranks (harness.fleet.attention) drawn in red / yellow: open outage,
# claim due within 24 h, quiet probe / notice due within 7 days
URGENT, SOON = {1, 2, 3}, {4}
WIDTHS = {"phase": 30, "first blocking reason": 28}


def _styled(st: fleet.SiteStatus) -> list[Text]:
    cells = [Text(c) for c in fleet.row_cells(st)]
    col = {name: i for i, name in enumerate(fleet.COLUMNS)}
    if st.attention_rank in URGENT:
        cells[col["#"]].stylize("bold red")
    elif st.attention_rank in SOON:
        cells[col["#"]].stylize("bold yellow")
    cells[col["site"]].stylize("bold")
    cells[col["gate"]].stylize({"GO": "bold green", "NO-GO": "bold red"}.get(st.decision or "", "dim"))
    if st.open_outages:
        cells[col["outages"]].stylize("red")
    if st.quiet:
        cells[col["last run"]].stylize("bold red")
    return cells


class FleetTable(DataTable):
    """One row per site; the row key is the site's name.

    Enter is the table's own (RowSelected, which the screen turns into "open
    the site"), not a priority binding of the screen: a priority binding runs
    as the key arrives, before the arrow keys typed just before it have moved
    the cursor (Down Down Enter typed fast opened the first site)."""

    BINDINGS = [Binding("enter", "select_cursor", "Open site")]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        for name in fleet.COLUMNS:     # the long ones cut: the line below the table shows them in full
            self.add_column(name, key=name, width=WIDTHS.get(name))

    def show_sites(self, sites: list[fleet.SiteStatus]) -> None:
        keep = self.current_site()
        self.clear()
        for st in sites:
            self.add_row(*_styled(st), key=st.site)
        if keep is not None and keep in {s.site for s in sites}:
            self.move_cursor(row=self.get_row_index(keep))

    def current_site(self) -> str | None:
        if not self.row_count:
            return None
        key, _ = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0))
        return key.value


class FleetScreen(Screen):
    CSS_PATH = "fleet.tcss"
    AUTO_FOCUS = "FleetTable"
    BINDINGS = [
        Binding("f5", "app.reload", "Reload"),
        Binding("question_mark", "app.help", "Help", key_display="?"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, sites: list[fleet.SiteStatus], now: dt.datetime, where: str) -> None:
        super().__init__()
        self.sites = sites
        self.now = now
        self.where = where

    def compose(self) -> ComposeResult:
        yield Static("", id="fleet-header")
        yield FleetTable(id="fleet")
        yield Static("", id="fleet-detail")
        yield BoardFooter()

    def on_mount(self) -> None:
        self.show(self.sites, self.now)

    def show(self, sites: list[fleet.SiteStatus], now: dt.datetime) -> None:
        self.sites, self.now = sites, now
        urgent = sum(1 for s in sites if s.attention_rank in URGENT)
        quiet = sum(1 for s in sites if s.quiet)
        header = Text.assemble((f" {len(sites)} site(s)", "bold"), f" in {self.where}  │  ",
                               (f"{urgent} need attention", "bold red" if urgent else ""),
                               f", {quiet} quiet  │  {now:%Y-%m-%d %H:%M} UTC")
        self.query_one("#fleet-header", Static).update(header)
        self.query_one(FleetTable).show_sites(sites)
        self._show_detail()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        """The site under the cursor in full: its first blocking reason is often cut."""
        site = self.current_site()
        st = next((s for s in self.sites if s.site == site), None)
        text = "no sites in this database yet" if st is None else \
            f"{st.site}: {st.first_blocking or st.error or st.phase_detail}" + \
            (f" (+{st.blocking - 1} more)" if st.blocking > 1 else "") + "  (Enter: open its board)"
        self.query_one("#fleet-detail", Static).update(Text(text))

    def current_site(self) -> str | None:
        return self.query_one(FleetTable).current_site()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if isinstance(event.data_table, FleetTable) and event.row_key.value is not None:
            self.app.open_site(event.row_key.value)  # type: ignore[attr-defined]   # BoardApp
