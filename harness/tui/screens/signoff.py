"""Sign off (or revoke, or correct) one checklist item: who and a note, like
``cutover signoff PROFILE ITEM --by NAME --note TEXT [--revoke | --correct]``.
A correction shows the entry it supersedes; that entry stays in the trail.

Two rules keep the audit trail honest:

- **Keys land where they were typed.** Tab, Shift+Tab and Enter move between
  the fields through *priority* bindings, which the app runs before it forwards
  the next key, and the focus moves synchronously (``Screen.set_focus``). With
  the default Tab handling the key bubbled up from the Name input only after the
  following characters had been forwarded to it: typing "K. Nurse<Tab>pulled
  fibre" quickly stored the whole line as the name. Each input processes its
  keys in its own queue, so Enter submits only after both inputs have drained
  theirs (``call_later`` on each), never from half-typed fields.
- **Nobody signs under someone else's name.** The Name field opens empty and
  focused every time; the previous signer is only a placeholder hint.
"""

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
    BINDINGS = [Binding("escape", "cancel", "Cancel"),
                Binding("tab", "next_field", "Next field", show=False, priority=True),
                Binding("shift+tab", "previous_field", "Previous field", show=False, priority=True),
                Binding("enter", "enter", "Next / submit", show=False, priority=True)]
    FIELDS = ("#by", "#note", "#cancel", "#ok")

    def __init__(self, item: ChecklistRow, revoke: bool = False, last_by: str = "",
                 correct: bool = False) -> None:
        super().__init__()
        self.item = item
        self.revoke = revoke
        self.correct = correct
        self.last_by = last_by

    def compose(self) -> ComposeResult:
        verb = "Correct the entry of" if self.correct else "Revoke the sign-off of" if self.revoke else "Sign off"
        with Vertical(id="dialog", classes="-revoke" if self.revoke else "") as dialog:
            dialog.border_title = f"{verb} {self.item.id}"
            yield Label(self.item.title, id="item-title")
            if self.correct:
                when = f"{self.item.at:%Y-%m-%d %H:%M} UTC" if self.item.at else ""
                yield Label(f"Replaces: {self.item.status} by {self.item.by} {when}"
                            + (f": {self.item.note}" if self.item.note else "")
                            + " (kept in the trail, marked superseded)", id="replaces")
            yield Label("Name (recorded in the audit trail)")
            hint = f"your name (last entry: {self.last_by})" if self.last_by else "e.g. A. Engineer"
            yield Input(placeholder=hint, id="by", select_on_focus=False)
            yield Label("Note" + (" (why it is revoked)" if self.revoke else " (evidence, ticket)"))
            yield Input(placeholder="optional", id="note", select_on_focus=False)
            yield Label("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Correct" if self.correct else "Revoke" if self.revoke else "Sign off", id="ok",
                             variant="error" if self.revoke else "success")

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#by", Input))

    def _move(self, step: int) -> None:
        widgets = [self.query_one(sel) for sel in self.FIELDS]
        current = widgets.index(self.focused) if self.focused in widgets else -1
        self.set_focus(widgets[(current + step) % len(widgets)])

    def action_next_field(self) -> None:
        self._move(+1)

    def action_previous_field(self) -> None:
        self._move(-1)

    def action_enter(self) -> None:
        """Enter: Name -> Note, Note -> submit, on a button -> press it."""
        focused = self.focused
        if isinstance(focused, Button):
            if focused.id == "ok":
                self._after_typing(self._submit)
            else:
                self.dismiss(None)
        elif focused is not None and focused.id == "by":
            self.set_focus(self.query_one("#note", Input))
        else:
            self._after_typing(self._submit)

    def _after_typing(self, callback) -> None:
        """Run ``callback`` once both inputs have processed every key queued to them."""
        by, note = self.query_one("#by", Input), self.query_one("#note", Input)
        by.call_later(lambda: note.call_later(callback))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._after_typing(self._submit)
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
            self.set_focus(self.query_one("#by", Input))
            return
        self.dismiss((by, note))
