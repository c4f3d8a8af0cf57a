""""Run now" from the board: the bridge between the board's worker thread and
harness.runner.run_check (the same code path as ``cutover check``: the run is
stored like any scheduled run, so the gate and reports count it).

The runner is called in a Textual worker thread; it reports progress through
``RunRequest.progress(circuit, text)`` (the app forwards it to the UI thread)
and stops early when ``RunRequest.stop`` is set (the board quits)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class RunRequest:
    profile: Any
    circuits: list[str]
    store: Any                              # harness.store.Store (thread-safe)
    progress: Callable[[str, str], None]    # (circuit, one short line)
    stop: threading.Event
    quick: bool = False


def progress_text(step: str, fraction: float | None, message: str) -> str:
    """One short line for a circuit panel: 'stream  40% 1500 packets'."""
    pct = f" {fraction * 100:3.0f}%" if fraction is not None else ""
    return f"{step}{pct} {message or ''}".strip()


def default_runner(request: RunRequest) -> Any:
    """Run the readiness suite for the requested circuits and store the run."""
    from harness import runner   # imported late: the board opens without the probe modules

    def progress(circuit: str, step: str, fraction: float | None, message: str) -> None:
        request.progress(circuit, progress_text(step, fraction, message))

    return runner.run_check(request.profile, store=request.store, circuits=request.circuits,
                            quick=request.quick, progress=progress, stop=request.stop)
