"""What every command shares: exit codes, JSON output, errors without
tracebacks, profile and key loading, option spellings, and presenting probe
progress on stderr.

The rules every command follows (docs/cli.md, checked by tests/test_cli_rules.py):

- every message to the user on stderr starts with ``cutover: `` (warnings with
  ``cutover: warning: ``); :func:`die` prints it and exits;
- exit codes: 0 pass/GO, 1 measured and failed/NO-GO, 2 bad input (usage,
  profile, file), 3 could not measure, 70 internal error (a bug), 130 interrupted;
- a name that is looked up (circuit, step, checklist item...) and not found
  is reported by :func:`probes.names.unknown_name` (with "did you mean");
- one spelling per concept (:data:`CANONICAL` in tests/test_cli_rules.py); an
  old spelling stays as a hidden alias (:func:`option` with ``aliases=``);
- every probe takes ``--profile PROFILE --circuit NAME`` (:func:`bound_config`);
- stdout closed early (``| head``) never changes the exit status.
"""

from __future__ import annotations

import datetime as dt
import json
import os
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
EXIT_INTERNAL = 70     # a bug (EX_SOFTWARE): "internal error", CUTOVER_DEBUG=1 for the traceback
EXIT_INTERRUPTED = 130  # SIGINT before anything could be reported


class _AliasedOption(click.Option):
    """An option whose further names are old spellings: accepted, not shown in --help."""

    def __init__(self, *args, hidden_aliases: tuple[str, ...] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_help_record(self, ctx):
        opts = self.opts
        self.opts = [o for o in opts if o not in self.hidden_aliases]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = opts


def option(*decls: str, aliases: tuple[str, ...] = (), **kwargs):
    """``click.option`` whose ``aliases`` (old spellings) keep working, hidden from --help."""
    if not aliases:
        return click.option(*decls, **kwargs)
    names = [d for d in decls if d.startswith("-")]
    dest = [d for d in decls if not d.startswith("-")]
    return click.option(*names, *aliases, *dest, cls=_AliasedOption, hidden_aliases=tuple(aliases), **kwargs)


json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print exactly one JSON object on stdout; progress goes to stderr.")
source_option = click.option("--source", metavar="ADDR", default=None,
                             help="Source address to bind, so the probe leaves through one circuit.")
interface_option = click.option("--interface", metavar="IFACE", default=None,
                                help="Interface to bind (SO_BINDTODEVICE, needs root).")


profile_option = click.option("--profile", "profile_path", default=None, metavar="PROFILE",
                              help="Take target, source/interface, key and thresholds from a circuit of "
                                   "this site profile.")
circuit_option = click.option("--circuit", default=None, metavar="NAME",
                              help="Circuit of --profile (default: the one with role new).")
verbose_option = click.option("-v", "--verbose", is_flag=True, help="Progress on stderr also with --json.")


def bound_probe_options(f):
    """The options every probe bound to a circuit ends with, in one order:
    -v/--verbose, --profile, --circuit, --source, --interface, --json."""
    for opt in (json_option, interface_option, source_option, circuit_option, profile_option, verbose_option):
        f = opt(f)
    return f


def err(message: str) -> None:
    """A line on stderr; control characters and escape sequences from data are shown, not sent."""
    click.echo(terminal_text(message, keep_lines=True), err=True)


def out(message: str = "") -> None:
    """One line on stdout for people (not --json); control characters are shown, not sent,
    newlines included (a name with a newline cannot print a line of its own)."""
    click.echo(terminal_text(message))


def warn(message: str) -> None:
    """A warning: worth reading, not a reason to stop."""
    err(f"cutover: warning: {message}")


def die(code: int, message: str) -> NoReturn:
    """Print a one-line cause on stderr and exit with ``code``."""
    err(f"cutover: {message}")
    sys.exit(code)


# config-field units a command's option may leave out: duration_s -> --duration
UNIT_SUFFIXES = ("_s", "_ms", "_pct", "_mbps", "_kbps", "_b")


def flags_of(command: click.Command) -> dict[str, str]:
    """Config field -> this command's spelling of it, read from its click
    parameters (no table to keep in step): the parameter named like the field
    (``calls`` -> ``--calls``, ``key_file`` -> ``--key-file``, the ``target``
    argument -> ``HOST:PORT``), else named like the field without its unit
    (``duration_s`` -> ``duration`` -> ``--duration``, ``ptime_ms`` ->
    ``--ptime``). A field a command has no flag for stays the field's name."""
    by_name: dict[str, str] = {}
    for param in command.params:
        if isinstance(param, click.Argument):
            by_name[param.name] = (param.metavar or param.name.upper()).strip("[]")   # [HOST:PORT]: optional
        elif isinstance(param, click.Option) and not param.hidden \
                and not (param.is_flag and not param.is_bool_flag):   # --quick/--thorough: one value each
            longs = [o for o in param.opts if o.startswith("--")]
            by_name[param.name] = (longs or param.opts)[0]
    flags = dict(by_name)
    for name, flag in by_name.items():
        for unit in UNIT_SUFFIXES:
            flags.setdefault(name + unit, flag)
    flags.setdefault("key", flags.get("key_file", "key"))   # the key itself comes from --key-file
    return flags


def duration_or_exit(flag: str, text: str) -> dt.timedelta:
    """A duration option (``90s``, ``15m``, ``2h``, ``7d``): parsed, or exit 2
    with ``cutover: --flag: why``, the one wording every command uses."""
    from harness.durations import parse_duration
    try:
        return parse_duration(text)
    except ValueError as exc:
        die(EXIT_BAD_INPUT, f"{flag}: {exc}")


def die_bad_input(exc: Exception, **spelled: str) -> NoReturn:
    """Exit 2 with a probe's bad-input error, its config field shown as this
    command's flag ("duration_s -1: ..." -> "--duration -1: ...";
    harness.binding.cli_message). ``spelled``: the fields whose option is not
    named after them (bandwidth: ``target="--reflector"``)."""
    from harness.binding import cli_message
    ctx = click.get_current_context(silent=True)
    flags = {**(flags_of(ctx.command) if ctx is not None else {}), **spelled}
    die(EXIT_BAD_INPUT, cli_message(exc, flags))


def print_problems(problems) -> None:
    """Profile problems, one per line, in the one error style."""
    for problem in problems:
        err(f"cutover: {problem}")


def emit_json(obj: Any) -> None:
    """The single JSON object on stdout for --json."""
    click.echo(json.dumps(clean(obj), indent=2, sort_keys=False, default=str))


def load_profile_or_exit(path: str) -> Profile:
    try:
        return load_profile(path)
    except ProfileError as exc:
        print_problems(exc.problems)
        sys.exit(EXIT_BAD_INPUT)


def circuit_or_exit(profile: Profile, name: str | None):
    """The named circuit, else the first with role new (harness.binding.select_circuit,
    the one rule); exit 2 naming the circuits."""
    from harness.binding import select_circuit
    try:
        return select_circuit(profile, name)
    except KeyError as exc:
        die(EXIT_BAD_INPUT, f"{profile.path or 'profile'}: {exc.args[0]}")


def bound_config(probe: str, profile_path: str | None, circuit: str | None, **given):
    """A probe's Config from ``--profile/--circuit`` (through harness.binding)
    with the options given on the command line winning (``None`` = not given).
    Without --profile, only the options given. Exits 2 on bad input."""
    import dataclasses
    from harness import binding
    given = {k: v for k, v in given.items() if v is not None}
    cls = binding.config_class(binding.probe_module(probe))
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if profile_path is None:
        if circuit is not None:
            die(EXIT_BAD_INPUT, "--circuit needs --profile PROFILE")
        missing = [n for n in required if n not in given]
        if missing:
            die(EXIT_BAD_INPUT, f"missing {missing[0].upper()} (or --profile PROFILE --circuit NAME)")
        return cls(**given)
    profile = load_profile_or_exit(profile_path)
    circ = circuit_or_exit(profile, circuit)
    values = binding.circuit_values(profile, circ, probe)
    missing = [n for n in required if n not in given and values.get(n) is None]
    if missing:
        die(EXIT_BAD_INPUT, f"circuit {circ.name!r} of {profile_path} gives no {missing[0].upper()} "
                            f"for probe {probe}; give it on the command line")
    try:
        return binding.bind(probe, profile, circ, **given)
    except ValueError as exc:   # the circuit's key file (InputFileError names it)
        die(EXIT_BAD_INPUT, f"circuit {circ.name}: {exc}")


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
    from probes.wire.stamp import load_key
    try:
        return load_key(key_file)
    except ValueError as exc:   # InputFileError names the file and the problem
        die(EXIT_BAD_INPUT, f"--key-file: {exc}")


class _PipeSafe:
    """stdout/stderr that survive the reader going away (``cutover gate | head -1``):
    the first EPIPE points the descriptor at /dev/null and the command carries on
    to its real exit status, instead of click's silent exit 1."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.broken = False

    def _to_devnull(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError):   # no descriptor (an in-memory stream): just stop writing
            pass

    def write(self, text):
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._to_devnull()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._to_devnull()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def guard_broken_pipes() -> None:
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is not None and not isinstance(stream, _PipeSafe):
            setattr(sys, name, _PipeSafe(stream))


class StopOnSignal:
    """SIGTERM/SIGINT set ``stop`` so probes end early and what was measured is
    still reported or stored (the scheduler relies on this for its grace
    period); a second signal aborts at once, and so does the first one's
    deadline: a probe stuck somewhere that does not watch ``stop`` (a TCP
    connect, a DNS lookup) cannot make the command ignore the signal."""

    def __init__(self, stop: threading.Event, what: str = "stopping, reporting what was measured",
                 deadline_s: float = 1.0) -> None:
        self.stop = stop
        self.what = what
        self.deadline_s = deadline_s
        self._old: dict = {}
        self._timer: threading.Timer | None = None

    def _handler(self, signum, _frame) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        err(f"cutover: {signal.Signals(signum).name}: {self.what}")
        self.stop.set()
        # not done by the deadline: the same signal again, which aborts (exit 130)
        self._timer = threading.Timer(self.deadline_s, os.kill, (os.getpid(), signum))
        self._timer.daemon = True
        self._timer.start()

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for s, h in self._old.items():
            signal.signal(s, h)
