"""What every command shares: exit codes, JSON output, errors without
tracebacks, profile loading, and presenting probe progress on stderr."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import click

from harness.profile import Profile, ProfileError, load_profile
from probes.events import ProbeEvent
from probes.result import clean

# Exit codes (DESIGN.md §3): a contract with tools outside the project.
EXIT_OK = 0            # pass / GO
EXIT_FAIL = 1          # measured and failed / NO-GO
EXIT_BAD_INPUT = 2     # usage, profile, file
EXIT_UNMEASURED = 3    # unreachable target, no permission, reflector down

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print exactly one JSON object on stdout; progress goes to stderr.")
source_option = click.option("--source", metavar="ADDR", default=None,
                             help="Source address to bind, so the probe leaves through one circuit.")
interface_option = click.option("--interface", metavar="IFACE", default=None,
                                help="Interface to bind (SO_BINDTODEVICE, needs root).")


def err(message: str) -> None:
    click.echo(message, err=True)


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


def not_built(command: str, issue: int) -> NoReturn:
    die(EXIT_BAD_INPUT, f"'{command}' is not built yet (tracked in issue #{issue})")


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
