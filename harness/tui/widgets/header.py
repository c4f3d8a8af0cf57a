"""The board's header: where the parallel run stands and whether the old
service may be terminated (the gate decision and what blocks it first)."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from harness.tui.model import HeaderView

DECISION_STYLE = {"GO": "bold white on dark_green", "NO-GO": "bold white on red"}


class GateHeader(Widget):
    view: reactive[HeaderView | None] = reactive(None, layout=True)

    def __init__(self, view: HeaderView, **kwargs) -> None:
        super().__init__(**kwargs)
        self.set_reactive(GateHeader.view, view)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(self._lines(width))

    def render(self) -> Text:
        return Text("\n").join(self._lines(max(self.content_size.width, 20)))

    def _lines(self, width: int) -> list[Text]:
        h = self.view
        if h is None:
            return [Text()]
        where = Text(h.site, "bold")
        run = Text()
        if h.days_in is None:
            run.append("parallel run not started")
        else:
            run.append("measured ")
            run.append(str(h.days_in), "green" if h.days_in >= h.min_days else "yellow")
            run.append(f" of ≥{h.min_days} days")
        dates = Text("notice by ")
        dates.append(h.notice_by.isoformat() if h.notice_by else "–", "bold")
        dates.append("  disconnect ")
        if h.disconnect_on:
            dates.append(h.disconnect_on.isoformat(), "bold")
            days = h.days_to_disconnect
            if days is not None:     # set with disconnect_on
                dates.append(f" (in {days} d)" if days >= 0 else f" ({-days} d ago)")
        else:
            dates.append("–")
        sep = Text("  │  ", "dim")
        one_line = where + sep + run + sep + dates
        if h.decision == "…":              # placeholder while the first read runs (loader.placeholder)
            lines = [where]
        elif len(one_line.plain) <= width:
            lines = [one_line]
        else:
            lines = [where + sep + run, dates]
        gate = Text()
        gate.append(f" {h.decision} ", DECISION_STYLE.get(h.decision, "bold white on grey37"))
        clock = Text("  " + h.now.strftime("%Y-%m-%d %H:%M UTC"), "dim")
        if h.blocking:
            more = f" (+{len(h.blocking) - 1})" if len(h.blocking) > 1 else ""
            reason = Text(f" {h.first_blocking}", "red")
            room = width - len(gate.plain) - len(more) - len(clock.plain)
            reason.truncate(max(room, 10), overflow="ellipsis")
            gate.append_text(reason)
            gate.append(more, "dim")
        else:
            gate.append(" the old service may be terminated", "green")
        gate.append_text(clock)
        lines.append(gate)
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        return lines
