"""The help screen: what the board shows and every key."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# cutover board

Tracks the parallel run until the old service can be terminated.

**Header**: site, day of the parallel run / minimum days, the last day the
termination notice can be sent, the disconnect date, and the gate decision
(`cutover gate`) with the first thing that blocks it.

**Circuits**: latest RTT, jitter and loss (worse direction), MOS, throughput
against the contract, capacity against the planned calls, coloured by the
profile's thresholds (yellow: within 10 % of the limit, 2.5 % for MOS);
sparklines over the last 7 days (`--since`) on a time axis, blank where
nothing was measured; pass rate over the parallel run.

**Checklist**: automatic items from the measurements, manual items from the
profile. Sign-offs go into the same audit trail as `cutover signoff`.

**Outages**: each failing or unreachable episode by its id (`cutover claim
PROFILE ID`), ongoing ones first, then by SLA claim deadline; "claimed" once
the claim is filed.

| key | action |
|---|---|
| `r` | run the selected circuit's checks now |
| `a` | run all circuits now |
| `s` | sign off the checklist item under the cursor |
| `x` | revoke the sign-off under the cursor |
| `e` | correct the entry under the cursor (a wrong name or note; the old entry stays, marked superseded) |
| `escape` | back to the fleet (a site opened from `cutover board` without a profile) |
| `o` | show the outage log (toggles on narrow terminals) |
| `c` | go to the checklist |
| `p` | the provider scorecard: old and new side by side (as in `cutover report`) |
| `←` `→` `1`…`9` | select a circuit |
| `tab` | next panel |
| `f5` | reload from the database (it also reloads by itself when another process writes) |
| `ctrl+p` | command palette |
| `?` | this help |
| `q` | quit |
"""


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Markdown(HELP)

    def action_close(self) -> None:
        self.dismiss(None)
