"""What every command shares: exit codes, JSON output, errors without
tracebacks, profile loading, and presenting probe progress on stderr."""

from __future__ import annotations

import json
import signal
import sys
import threading
from typing import Any, NoReturn

import click

from harness.escape import terminal_text
from harness.profile import Profile, ProfileError, load_profile
from probes.events import ProbeEvent
from probes.result import clean

# Exit codes (docs/contract.md §2): a contract with tools outside the project.
EXIT_OK = 0            # pass / GO
EXIT_FAIL = 1          # measured and failed / NO-GO
EXIT_BAD_INPUT = 2     # usage, profile, file
EXIT_UNMEASURED = 3    # unreachable target, no permission, reflector down
EXIT_NOT_STORED = 74   # measured, but the history database refused the write (disk full,
                       # read-only, locked): results in a fallback file (sysexits EX_IOERR)

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print exactly one JSON object on stdout; progress goes to stderr.")
source_option = click.option("--source", metavar="ADDR", default=None,
                             help="Source address to bind, so the probe leaves through one circuit.")
interface_option = click.option("--interface", metavar="IFACE", default=None,
                                help="Interface to bind (SO_BINDTODEVICE, needs root).")


def err(message: str) -> None:
    """A line on stderr; control characters and escape sequences from data are shown, not sent."""
    click.echo(terminal_text(message, keep_lines=True), err=True)


def out(message: str = "") -> None:
    """A line on stdout for people (not --json); data's control characters are shown, not sent."""
    click.echo(terminal_text(message, keep_lines=True))


def die(code: int, message: str) -> NoReturn:
    """Print a one-line cause on stderr and exit with ``code``."""
    err(f"cutover: {message}")
    sys.exit(code)


def emit_json(obj: Any) -> None:
    """The single JSON object on stdout for --json."""
    click.echo(json.dumps(clean(obj), indent=2, sort_keys=False, default=str))


def load_profile_or_exit(path: str) -> Profile:
    try:
        return load_profile(path)
    except ProfileError as exc:
        for problem in exc.problems:
            err(str(problem))
        sys.exit(EXIT_BAD_INPUT)


class StderrProgress:
    """Turns ProbeEvents into short lines on stderr (quiet with --json unless -v)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._last_fraction: dict[str, float] = {}

    def __call__(self, event: ProbeEvent) -> None:
        if not self.enabled:
            return
        if event.kind == "progress" and event.fraction is not None:
            # print at most every 10 % so logs stay pasteable
            last = self._last_fraction.get(event.probe, -1.0)
            if event.fraction - last < 0.1 and event.fraction < 1.0:
                return
            self._last_fraction[event.probe] = event.fraction
            err(f"[{event.probe}] {event.fraction * 100:3.0f}% {event.message}".rstrip())
        elif event.kind == "warning":
            err(f"[{event.probe}] warning: {event.message}")
        elif event.message:
            err(f"[{event.probe}] {event.message}")


def load_key_or_exit(key_file: str | None) -> bytes | None:
    """The STAMP pre-shared key from --key-file, or exit 2 naming the problem."""
    if not key_file:
        return None
    from probes.stamp import load_key
    try:
        return load_key(key_file)
    except (ValueError, OSError) as exc:
        die(EXIT_BAD_INPUT, f"--key-file: {exc}")


class StopOnSignal:
    """SIGTERM/SIGINT set ``stop`` so probes end early and what was measured is
    still reported or stored (the scheduler relies on this for its grace
    period); a second signal aborts at once."""

    def __init__(self, stop: threading.Event, what: str = "stopping, reporting what was measured") -> None:
        self.stop = stop
        self.what = what
        self._old: dict = {}

    def _handler(self, signum, _frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        err(f"cutover: {signal.Signals(signum).name}: {self.what}")
        self.stop.set()

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
