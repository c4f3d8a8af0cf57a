"""The cutover checklist: automatic items (from the measured history, decided
by harness.gate) and the profile's manual items with their sign-offs."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

from harness.tui.model import ChecklistRow
from harness.tui.widgets.styles import short_time

# When comes right after Status: at 120 columns the checklist shares the screen with
# the outage log (70 columns each), and a When column after By and a long title
# fell outside the pane (issue #15). Titles are cut to TITLE_W for the same reason.
COLUMNS = (("", "mark"), ("Item", "item"), ("Status", "status"), ("When", "when"), ("By", "by"),
           ("Note", "note"))


NOTE_W = 48
TITLE_W = 34


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


class ChecklistTable(DataTable):
    """One row per item, keyed by item id."""

    def __init__(self, rows: list[ChecklistRow], **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._rows: list[ChecklistRow] = []
        self._pending = rows

    def on_mount(self) -> None:
        for label, key in COLUMNS:
            self.add_column(label, key=key)
        self.show_rows(self._pending)

    def show_rows(self, rows: list[ChecklistRow]) -> None:
        """Replace the rows, keeping the cursor at the same position: after a
        sign-off the item moves down to the done group and the next open item
        comes under the cursor, ready for the next sign-off."""
        index = self.cursor_row if self.row_count else 0
        self._rows = list(rows)
        self.clear()
        for r in rows:
            if r.status == "not measured":      # shown, not blocking (harness.gate "info")
                mark, status_style = Text("·", "dim"), "yellow"
            else:
                mark = Text("✓", "bold green") if r.ok else Text("✗", "bold red")
                status_style = "green" if r.ok else ("yellow" if r.status in ("open", "revoked") else "red")
            title = Text(_cut(r.title, TITLE_W), "bold" if r.kind == "manual" else "italic")
            # the note is cut here (the full text is on the detail line under the table): long
            # cells make DataTable re-render wide rows on every focus change
            self.add_row(mark, title, Text(r.status, status_style), short_time(r.at) if r.at else "",
                         r.by or "", _cut(r.note or "", NOTE_W), key=r.id)
        if rows:
            self.move_cursor(row=min(index, len(rows) - 1), animate=False)

    def current_item(self) -> ChecklistRow | None:
        if not self._rows or self.row_count == 0:
            return None
        i = self.cursor_row
        return self._rows[i] if 0 <= i < len(self._rows) else None
