"""What every probe result shares.

A probe that fails halfway returns what it measured with ``partial=True`` and
the cause in ``errors``; it does not raise. ``measured=False`` means nothing
usable was measured (exit 3 at the CLI).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


class ProbeError(Exception):
    """Raised only for bad arguments detected before measuring (exit 2)."""


def clean(value: Any) -> Any:
    """dataclasses -> JSON-ready dicts; NaN/inf -> None; floats rounded to 0.001."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: clean(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return round(value, 3)
    return value
