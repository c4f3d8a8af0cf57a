"""One message for a name that is looked up and not found (a circuit, a step,
a checklist item, a command, a codec, a report format), so every command and
probe says it the same way: what was asked for, the closest known name, and the known names::

    no circuit 'fibr' (did you mean 'fibre'?); circuits: adsl, fibre
"""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name: str, known: Iterable[str]) -> str | None:
    """The closest known name, if any is close enough to be a typo."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return close[0] if close else None


def unknown_name(kind: str, name: str, known: Iterable[str], plural: str | None = None,
                 lead: str = "no") -> str:
    """``no circuit 'fibr' (did you mean 'fibre'?); circuits: adsl, fibre``
    (``lead="unknown"``: ``unknown codec 'g71' (did you mean 'g711'?); codecs: ...``)."""
    known = [str(k) for k in known]
    guess = did_you_mean(name, known)
    text = f"{lead} {kind} {name!r}"
    if guess:
        text += f" (did you mean {guess!r}?)"
    plural = plural or f"{kind}s"
    return text + (f"; {plural}: {', '.join(known)}" if known else f"; there are no {plural}")
