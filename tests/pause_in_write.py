"""Make a process hang inside one of the store's write transactions, so a test
can kill -9 it (or let a scheduler time it out) mid-write.

The store has no hook for this: the test patches it from outside. A run is one
transaction (`Store.finish_run` writes the run and all its circuits and
allocates its id inside it); `install` wraps `Store.finish_run` so that, for
the run that gets one id, the transaction stays open after every row is
inserted: the process writes its pid to a marker file and sleeps (bounded: the
test kills it long before).

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

    original = Store.finish_run

    @functools.wraps(original)
    def finish_run(self, run, *args, **kwargs):
        write = self._write

        @contextmanager
        def pausing_write():
            with write() as db:
                yield db                      # every row of the run is inserted, not yet committed
                if run.id == run_id:
                    Path(marker).write_text(str(os.getpid()))
                    time.sleep(PAUSE_S)

        self._write = pausing_write
        try:
            return original(self, run, *args, **kwargs)
        finally:
            del self._write

    Store.finish_run = finish_run


def install_from_env() -> None:
    spec = os.environ.get(PAUSE_ENV, "")
    want, _, marker = spec.partition(":")
    if want.strip() and marker:
        install(int(want), Path(marker))
