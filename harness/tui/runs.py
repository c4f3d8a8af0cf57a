""""Run now" from the board: the bridge between the board's worker thread and
harness.runner (the same code path as ``cutover check``).

The runner is called in a Textual worker thread; it reports progress through
``RunRequest.progress(circuit, text)`` (the app forwards it to the UI thread)
and stops early when ``RunRequest.stop`` is set (the board quits)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable


@dataclass
class RunRequest:
    profile: Any
    circuits: list[str]
    db_path: Path | str
    progress: Callable[[str, str], None]    # (circuit, one short line)
    stop: threading.Event


def progress_text(event: Any) -> str:
    """One short line for a circuit panel from a probes.events.ProbeEvent."""
    probe = getattr(event, "probe", "") or ""
    fraction = getattr(event, "fraction", None)
    message = getattr(event, "message", "") or ""
    pct = f" {fraction * 100:3.0f}%" if fraction is not None else ""
    return f"{probe}{pct} {message}".strip()


def default_runner(request: RunRequest) -> None:
    """Run the readiness suite for the requested circuits and store the run."""
    from harness import runner   # imported late: the board opens without probe modules loaded

    current = {"circuit": request.circuits[0] if request.circuits else ""}

    def progress(event: Any) -> None:
        circuit = getattr(event, "circuit", None) or (getattr(event, "data", {}) or {}).get("circuit")
        if circuit:
            current["circuit"] = circuit
        request.progress(current["circuit"], progress_text(event))

    runner.run_for_board(request.profile, request.circuits, request.db_path, progress, request.stop)
