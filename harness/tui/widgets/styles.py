"""Colours shared by the board's widgets (Rich styles, so snapshots are stable)."""

STATUS_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "error": "bold red",
                "none": "dim"}
VERDICT_STYLE = {"GO": "bold white on dark_green", "WARN": "bold black on yellow",
                 "NO-GO": "bold white on red", None: "bold white on grey37"}


def verdict_badge(verdict: str | None) -> tuple[str, str]:
    """(text, style) of a verdict badge; None means never measured."""
    return (f" {verdict or 'NO DATA'} ", VERDICT_STYLE.get(verdict, VERDICT_STYLE[None]))


def short_time(t) -> str:
    """'11-22 05:00' in UTC, the stored clock (the board states it is UTC in the header)."""
    return t.strftime("%m-%d %H:%M") if t is not None else "–"
