"""Sign off (or revoke) one checklist item: who and a note, like
``cutover signoff PROFILE ITEM --by NAME --note TEXT [--revoke]``."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from harness.tui.model import ChecklistRow


class SignoffScreen(ModalScreen[tuple[str, str] | None]):
    """Returns (by, note), or None when cancelled."""

    CSS_PATH = "signoff.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, item: ChecklistRow, revoke: bool = False, default_by: str = "") -> None:
        super().__init__()
        self.item = item
        self.revoke = revoke
        self.default_by = default_by

    def compose(self) -> ComposeResult:
        verb = "Revoke the sign-off of" if self.revoke else "Sign off"
        with Vertical(id="dialog", classes="-revoke" if self.revoke else "") as dialog:
            dialog.border_title = f"{verb} {self.item.id}"
            yield Label(self.item.title, id="item-title")
            yield Label("Name (recorded in the audit trail)")
            yield Input(value=self.default_by, placeholder="e.g. A. Engineer", id="by")
            yield Label("Note" + (" (why it is revoked)" if self.revoke else " (evidence, ticket)"))
            yield Input(placeholder="optional", id="note")
            yield Label("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Revoke" if self.revoke else "Sign off", id="ok",
                             variant="error" if self.revoke else "success")

    def on_mount(self) -> None:
        self.query_one("#by" if not self.default_by else "#note", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "by":
            self.query_one("#note", Input).focus()
        else:
            self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _submit(self) -> None:
        by = self.query_one("#by", Input).value.strip()
        note = self.query_one("#note", Input).value.strip()
        if not by:
            # the audit trail needs a name, as `cutover signoff --by` does
            self.query_one("#error", Label).update("A name is needed: who signs this off?")
            self.query_one("#by", Input).focus()
            return
        self.dismiss((by, note))
