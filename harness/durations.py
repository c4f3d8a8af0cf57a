"""Durations as users type them: ``90s``, ``15m``, ``24h``, ``7d``, ``2w``.

Parsed in one place so `cutover report --since`, `cutover schedule --every`
and the gate agree on what ``7d`` means. Compound forms (``1h30m``) are
accepted; a bare number is refused because "15" could be seconds or minutes.
"""

from __future__ import annotations

import datetime as dt
import re

_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
EXPECTED = "expected a duration like 90s, 15m, 24h, 7d or 2w"


def parse_duration(text: str) -> dt.timedelta:
    """``"7d"`` -> ``timedelta(days=7)``. Raises ValueError with what was expected."""
    s = (text or "").strip().lower().replace(" ", "")
    if not s:
        raise ValueError(f"empty duration; {EXPECTED}")
    pos, seconds = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise ValueError(f"{text!r} is not a duration; {EXPECTED}")
    if seconds <= 0:
        raise ValueError(f"{text!r} is zero; {EXPECTED}")
    return dt.timedelta(seconds=seconds)


def format_duration(delta: dt.timedelta, exact: bool = False) -> str:
    """Short human form: ``2d 3h``, ``4h 10m``, ``35m``, ``20s``; with
    ``exact`` every unit that is not zero (``1m 30s`` for 90 s)."""
    total = int(round(delta.total_seconds()))
    if total < 0:
        return "-" + format_duration(-delta, exact)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if exact:
        parts = [f"{v}{u}" for v, u in ((days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")) if v]
        return " ".join(parts) or "0s"
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{seconds}s"
