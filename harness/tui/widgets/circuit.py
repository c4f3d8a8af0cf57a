"""One circuit's panel: latest verdict, pass rate over the parallel run, latest
figures coloured by the profile thresholds, and a sparkline per figure over
the trend window that uses whatever width the terminal gives."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from harness.tui.model import CircuitView, level_block, sparkline, time_buckets
from harness.tui.widgets.styles import STATUS_STYLE, short_time, verdict_badge

UNITS = {"rtt_ms": "ms", "jitter_ms": "ms", "loss_pct": "%", "mos": "",
         "down_mbps": "Mbit/s", "up_mbps": "Mbit/s", "max_calls": "calls"}
LABEL_W = 7
MIN_SPARK_W = 3


class CircuitPanel(Widget, can_focus=True):
    """Renders a :class:`CircuitView`; re-rendered only when the view changes
    (a refresh) or the size changes, never by a key press elsewhere."""

    view: reactive[CircuitView | None] = reactive(None, layout=True)
    running: reactive[str] = reactive("")             # live progress of a run-now
    max_problems: reactive[int] = reactive(1, layout=True)   # more when the terminal is tall
    show_daily: reactive[bool] = reactive(False, layout=True)  # daily pass-rate row (tall terminals)

    def __init__(self, view: CircuitView, **kwargs) -> None:
        super().__init__(**kwargs)
        self.circuit_name = view.name
        self.set_reactive(CircuitPanel.view, view)
        self._set_titles(view)

    def _set_titles(self, view: CircuitView) -> None:
        self.border_title = view.name if view.name == view.role else f"{view.name} ({view.role})"
        never = "" if view.latest_at or view.loading else "never measured"
        self.border_subtitle = " · ".join(part for part in (view.provider, never) if part)

    def watch_view(self, view: CircuitView | None) -> None:
        if view is not None:
            self._set_titles(view)

    def get_content_height(self, container, viewport, width: int) -> int:
        """Lines are cut to the width, never wrapped: the height is a line count."""
        v = self.view
        if v is None:
            return 1
        # the problem/progress lines are always reserved so the panels line up
        return 1 + len(v.metrics) + int(self.show_daily) + int(bool(v.platforms)) + self.max_problems

    def render(self) -> Text:
        # Cached: a key press elsewhere (selection, focus) restyles the border and
        # re-renders this panel; recomputing a week of sparklines each time would
        # cost tens of ms. The cache key is everything the text depends on.
        key = (self.content_size.width, self.running, self.max_problems, self.show_daily)
        if key != self._cache_key or self._cache_view is not self.view:
            self._cache_key, self._cache_view, self._cache_text = key, self.view, self._render_text()
        return self._cache_text

    _cache_key: tuple | None = None
    _cache_view: CircuitView | None = None
    _cache_text: Text = Text()

    @staticmethod
    def _spark(v: CircuitView, points, width: int) -> str:
        """On the trend window's time axis when known (gaps show), else one cell per bucket of runs."""
        if v.trend_start is not None and v.trend_end is not None:
            return sparkline(time_buckets(points, v.trend_start, v.trend_end, width), width)
        return sparkline([p[1] for p in points], width)

    def _render_text(self) -> Text:
        v = self.view
        width = max(self.content_size.width, 10)
        if v is None:
            return Text()
        lines: list[Text] = []
        head = Text()
        if v.loading:
            head.append("reading the history…", "dim")
            return Text("\n").join([head] + [Text(f"{m.label:<{LABEL_W}}", "dim") for m in v.metrics])
        badge, style = verdict_badge(v.verdict)
        head.append(badge, style)
        rate = v.pass_rate_pct
        head.append(f" {rate:.1f}% pass" if rate is not None else " no runs yet", "bold")
        measured = f" · {v.measured_pct:.0f}% measured" if v.measured_pct is not None and v.runs else ""
        extras = ((f" of {v.runs} runs", f" · last {short_time(v.latest_at)}", measured) if v.runs
                  else ("  r runs it now",))
        for extra in extras:
            if extra and len(head.plain) + len(extra) <= width:
                head.append(extra, "dim")
        lines.append(head)
        value_w = max((len(m.text.split(" ")[0]) for m in v.metrics), default=4)
        unit_w = 7 if width >= LABEL_W + value_w + 7 + MIN_SPARK_W + 1 else 0
        for m in v.metrics:
            line = Text()
            line.append(f"{m.label:<{LABEL_W}}")
            line.append(f"{m.text.split(' ')[0]:>{value_w}}", STATUS_STYLE.get(m.status, ""))
            if unit_w:
                line.append(f" {UNITS.get(m.key, ''):<{unit_w - 1}}", "dim")
            line.append(" ")
            spark_w = width - len(line.plain)
            if spark_w >= MIN_SPARK_W:
                line.append(self._spark(v, m.points, spark_w), "cyan")
            lines.append(line)
        if self.show_daily:
            line = Text(f"{'Daily':<{LABEL_W}}")
            last = v.daily_pass_pct[-1] if v.daily_pass_pct else None
            ok = "green"
            line.append(f"{(f'{last:.0f}%' if last is not None else '–'):>{value_w}}",
                        "" if last is None else (ok if last >= v.pass_target_pct else "bold red"))
            if unit_w:
                line.append(f" {'pass':<{unit_w - 1}}", "dim")
            line.append(" ")
            room = width - len(line.plain)
            # one cell per day (the latest days when they do not fit), red below the gate's pass rate
            for pct in v.daily_pass_pct[-room:] if room > 0 else []:
                line.append(level_block(pct), ok if pct >= v.pass_target_pct else "bold red")
            lines.append(line)
        if v.platforms:
            style = "red" if "fails" in v.platforms else "dim" if "not measured" in v.platforms else "green"
            lines.append(Text(v.platforms, style))
        if self.running:
            lines.append(Text(f"▶ {self.running}", "bold cyan"))
        elif v.problems or v.holes:
            problems = v.problems + v.holes   # holes in the evidence are named like problems
            shown = problems[:self.max_problems]
            for problem in shown:
                lines.append(Text(f"✗ {problem}", "red"))
            if len(problems) > len(shown):
                lines[-1] = Text(f"✗ (+{len(problems) - len(shown)}) ", "red") + lines[-1][2:]
        for line in lines:
            # cut, never wrap: a long reason must not push the panels out of the screen
            line.truncate(width, overflow="ellipsis")
        return Text("\n").join(lines)
