"""Real-time scheduling for lab timing (root only; a no-op elsewhere).

The machine is shared by parallel test runs: a relay or a paced sender that
the scheduler parks for a few milliseconds would add delay the test did not
configure. SCHED_FIFO (a low real-time priority) lets the lab's own processes
run as soon as their timer fires; they sleep in select()/sleep between packets,
so they do not starve anything (and the kernel's RT throttling caps them at 95 %).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

LAB_RT_PRIORITY = 10


def set_realtime(priority: int = LAB_RT_PRIORITY, pid: int = 0) -> bool:
    """SCHED_FIFO at priority for pid (0 = calling thread); False when not permitted."""
    try:
        os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(priority))
        return True
    except (PermissionError, OSError, AttributeError):
        return False


@contextlib.contextmanager
def realtime(priority: int = LAB_RT_PRIORITY) -> Iterator[bool]:
    """Run the calling thread with SCHED_FIFO inside the block, then restore."""
    try:
        old_policy, old_param = os.sched_getscheduler(0), os.sched_getparam(0)
    except (OSError, AttributeError):
        yield False
        return
    ok = set_realtime(priority)
    try:
        yield ok
    finally:
        if ok:
            with contextlib.suppress(OSError):
                os.sched_setscheduler(0, old_policy, old_param)
