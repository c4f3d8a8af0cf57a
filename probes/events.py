"""Progress reporting: probes and the harness engine emit events, the CLI and
TUI subscribe. Nothing in ``probes`` prints.

A callback receives :class:`ProbeEvent` objects. ``kind`` is one of
``start`` (a phase begins), ``progress`` (``fraction`` 0..1 of the phase done,
``data`` carries live figures), ``warning`` (something the user should know,
measurement continues), ``done`` (phase finished).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class ProbeEvent:
    probe: str
    kind: str
    message: str = ""
    fraction: float | None = None
    data: dict[str, Any] = field(default_factory=dict)


ProgressCallback = Callable[[ProbeEvent], None]


def null_progress(_event: ProbeEvent) -> None:
    """Default callback: discard events."""


class Emitter:
    """Small helper a probe holds to emit events under its own name."""

    def __init__(self, probe: str, callback: ProgressCallback | None = None) -> None:
        self.probe = probe
        self.callback = callback or null_progress

    def __call__(self, kind: str, message: str = "", fraction: float | None = None,
                 **data: Any) -> None:
        try:
            self.callback(ProbeEvent(self.probe, kind, message, fraction, dict(data)))
        except Exception:  # a broken subscriber must never break a measurement
            pass
