"""Make a process hang inside one of the store's write transactions, so a test
can kill -9 it (or let a scheduler time it out) mid-write.

The store has no hook for this: the test patches it from outside. `install`
wraps `Store.add_circuit_result` so that, for one run id, the transaction stays
open after its rows are inserted: the process writes its pid to a marker file
and sleeps (bounded: the test kills it long before).

Child processes the test does not start itself (the scheduler's `cutover check`
children) get it through `tests/pause_hook/sitecustomize.py`: put that folder
on PYTHONPATH and set PAUSE_ENV="RUN_ID:MARKER_PATH"; only `check` processes
pause, so the scheduler's own writes (recording a killed run) do not.
"""

from __future__ import annotations

import functools
import os
import time
from contextlib import contextmanager
from pathlib import Path

PAUSE_ENV = "CUTOVER_TEST_PAUSE_IN_WRITE"
HOOK_DIR = Path(__file__).resolve().parent / "pause_hook"
PAUSE_S = 60.0


def env(run_id: int, marker: Path) -> dict[str, str]:
    """Environment for a child that must pause in `run_id`'s write."""
    path = os.pathsep.join(p for p in (str(HOOK_DIR), os.environ.get("PYTHONPATH", "")) if p)
    return {PAUSE_ENV: f"{run_id}:{marker}", "PYTHONPATH": path}


def install(run_id: int, marker: Path) -> None:
    from harness.store import Store

    original = Store.add_circuit_result

    @functools.wraps(original)
    def add_circuit_result(self, rid, *args, **kwargs):
        if rid != run_id:
            return original(self, rid, *args, **kwargs)
        write = self._write

        @contextmanager
        def pausing_write():
            with write() as db:
                yield db                      # the rows are inserted, not yet committed
                Path(marker).write_text(str(os.getpid()))
                time.sleep(PAUSE_S)

        self._write = pausing_write
        try:
            return original(self, rid, *args, **kwargs)
        finally:
            del self._write

    Store.add_circuit_result = add_circuit_result


def install_from_env() -> None:
    spec = os.environ.get(PAUSE_ENV, "")
    want, _, marker = spec.partition(":")
    if want.strip() and marker:
        install(int(want), Path(marker))
