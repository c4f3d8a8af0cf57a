"""Runs the readiness suite on each circuit, stores the run, returns verdicts.

Flow per run: ``store.begin_run`` (nothing written yet) -> for each
circuit, in profile order: a reflector preflight, then every applicable step
(measure -> evaluate), then ``store.add_circuit_result`` (held in memory) ->
``store.finish_run``, which writes the whole run in one transaction and
allocates its id: a run killed before that leaves nothing in the history.

Circuits are measured one after the other, never at once: they share the
measuring machine's CPU and, often, its uplink switch; parallel runs would
measure each other.

Nothing a probe does can crash the run: an exception in ``measure`` or
``evaluate``, ``measured: false`` or a dead reflector all become ``error``
checks carrying the reason, so that circuit is NO-GO and the others are still
measured. Each such check carries a cause class (harness.verdicts):

- a :class:`probes.result.ProbeError` (bad key file, no permission, missing
  tool) or an ``OSError`` while setting up (our socket, our interface) is a
  ``measurement_gap``;
- any other exception in a step is a bug of ours: ``internal_error``, its
  traceback written to a file (:func:`write_traceback`); `cutover check` then
  exits 70;
- a reflector that does not answer is the ``network``, unless every circuit
  of the run that uses the same far end lost it at once: then it is the far
  end, not the carriers (one far-end gap, :func:`correlate_far_end`);
- a step module that cannot be loaded is a ``measurement_gap`` named in the
  verdict, so a build missing a step is never GO.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from harness import __version__, platforms, suite
from harness.verdicts import (GAP, INTERNAL, NETWORK, Check, cause_of, circuit_verdict, error,
                              overall_verdict, with_cause)
from probes.events import ProbeEvent
from probes.result import ProbeError

UTC = dt.timezone.utc

# `cutover check --json`, per check (docs/contract.md §5, plus ``cause``); the unit is part of the reason
CHECK_KEYS = ("id", "status", "measured", "required", "margin", "reason", "cause")

# Where tracebacks of our own bugs go (one file each): $CUTOVER_CRASH_DIR, else
# ~/.local/state/cutover/crashes, else the temp folder.
CRASH_DIR_ENV = "CUTOVER_CRASH_DIR"

# progress(circuit, step, fraction or None, message)
RunProgress = Callable[[str, str, "float | None", str], None]


@dataclass
class CircuitOutcome:
    name: str
    verdict: str
    checks: list[Check]
    raw: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)   # step -> why it did not run
    far_end: str | None = None          # the reflector "host:port" the reflector steps talk to
    far_end_down: bool = False          # the preflight found it not answering (network cause)
    tracebacks: dict[str, str] = field(default_factory=dict)   # step -> traceback file (our bugs)

    @property
    def internal_error(self) -> bool:
        return any(c.cause == INTERNAL for c in self.checks)

    def to_dict(self) -> dict:
        """The contract keys (docs/contract.md §5, check), plus ``cause``, and
        ``platforms`` when the profile names call platforms: name -> {meets, score, failed}."""
        out: dict[str, object] = {"verdict": self.verdict,
               "checks": [{k: v for k, v in c.to_dict().items() if k in CHECK_KEYS} for c in self.checks]}
        summaries = platforms.summarize(self.checks)
        if summaries:
            out["platforms"] = {n: s.to_dict() for n, s in summaries.items()}
        return out


@dataclass
class RunOutcome:
    site: str
    run_id: int | None
    verdict: str
    circuits: dict[str, CircuitOutcome]
    started_at: dt.datetime
    finished_at: dt.datetime
    # the store refused a write (disk full, read-only, locked): the StoreWriteError; the
    # results are all here, the caller keeps them elsewhere (cutover check: a fallback file)
    store_error: Exception | None = None
    far_end_gaps: list[dict] = field(default_factory=list)   # [{far_end, circuits, reason}]

    @property
    def nothing_measured(self) -> bool:
        """True when every check of every circuit is an error (exit 3)."""
        checks = [c for co in self.circuits.values() for c in co.checks]
        return all(c.status == "error" for c in checks)

    @property
    def internal_error(self) -> bool:
        """A bug of ours interrupted a step (exit 70)."""
        return any(co.internal_error for co in self.circuits.values())

    def to_dict(self) -> dict:
        """The `cutover check --json` object: the contract keys, plus
        ``internal_error`` and ``far_end_gaps``."""
        return {"verdict": self.verdict,
                "circuits": {n: co.to_dict() for n, co in self.circuits.items()},
                "run_id": self.run_id, "internal_error": self.internal_error,
                "far_end_gaps": list(self.far_end_gaps)}


# ---------------------------------------------------------------- cause classes of exceptions

def crash_dir() -> Path:
    if os.environ.get(CRASH_DIR_ENV):
        return Path(os.environ[CRASH_DIR_ENV])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "cutover" / "crashes"


def write_traceback(exc: BaseException, context: str) -> str:
    """Write the traceback of one of our bugs to its own file; return the path.
    Falls back to the temp folder when the crash folder is not writable."""
    text = (f"cutover {__version__}: internal error in {context}\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    stamp = dt.datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    for folder in (crash_dir(), Path(tempfile.gettempdir()) / "cutover-crashes"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, path = tempfile.mkstemp(prefix=f"crash-{stamp}-", suffix=".txt", dir=folder)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
            return path
        except OSError:
            continue
    return "(nowhere: no writable folder)"


def exception_check(check_id: str, step: str, exc: BaseException, context: str) -> tuple[Check, str | None]:
    """The check for an exception raised by a step, and the traceback file
    when it is a bug of ours. ProbeError and OSError: our side could not
    measure (a gap). Anything else: internal error."""
    if isinstance(exc, ProbeError):
        return error(check_id, f"{step} could not measure: {exc}", cause=GAP), None
    if isinstance(exc, OSError):
        return error(check_id, f"{step} could not measure on this machine: {exc.strerror or exc}", cause=GAP), None
    path = write_traceback(exc, context)
    return error(check_id, f"internal error in cutover ({step}): {type(exc).__name__}: {exc}; this is a bug "
                           f"in cutover, not a network fault; traceback in {path}", cause=INTERNAL), path


# ---------------------------------------------------------------- reflector preflight

def reflector_problem(circuit, key: bytes | None, *, tries: int = 3, timeout_s: float = 0.7) -> str | None:
    """None if the circuit's STAMP reflector answers, else the cause.

    A few STAMP test packets before the real steps: a dead reflector then
    costs about two seconds and one clear reason, instead of three probes
    each timing out on their own. A socket error that is ours
    (probes.result.is_local: a source address not on this machine, our
    interface down) is raised, not returned: it is a gap, not a dead far end."""
    from probes.wire import stamp
    from probes.addr import bind_to_circuit, resolve
    from probes.result import is_local
    hp = circuit.reflector_hostport
    where = f"reflector {hp}"
    try:
        family, sockaddr = resolve(hp.host, hp.port, socket.SOCK_DGRAM, circuit.source)
    except OSError as exc:
        return f"{where}: {exc}"
    auth_failed = False
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            bind_to_circuit(sock, circuit.source, circuit.interface)
            sock.connect(sockaddr)
        except OSError as exc:
            if is_local(exc):
                raise
            return f"{where}: {exc.strerror or exc}"
        sock.settimeout(timeout_s)
        for seq in range(tries):
            pkt = stamp.SenderPacket(seq=seq, timestamp=stamp.ntp_from_unix(time.time()), ssid=0x7E57)
            try:
                sock.send(stamp.encode_sender(pkt, key))
                deadline = time.monotonic() + timeout_s
                while time.monotonic() < deadline:
                    data = sock.recv(4096)
                    try:
                        stamp.decode_reflector(data, key)
                        return None
                    except stamp.StampAuthError:
                        auth_failed = True
                    except stamp.StampDecodeError:
                        pass
            except ConnectionRefusedError:
                return f"{where} is down: nothing listens on UDP port {hp.port} (ICMP port unreachable)"
            except socket.timeout:
                continue
            except OSError as exc:
                if is_local(exc):
                    raise
                return f"{where}: {exc.strerror or exc}"
    if auth_failed:
        return f"{where} answers, but its replies fail authentication: check the circuit's key_file"
    return f"{where} does not answer ({tries} STAMP packets, no reply within {timeout_s * tries:g} s)"


# ---------------------------------------------------------------- the run

def _key(profile, circuit) -> bytes | None:
    from harness.binding import circuit_key
    return circuit_key(profile, circuit)


def measure_circuit(profile, circuit, *, quick: bool = False, progress: RunProgress | None = None,
                    stop: threading.Event | None = None, steps=None) -> CircuitOutcome:
    """All applicable steps on one circuit. Never raises for probe trouble."""
    progress = progress or (lambda *a: None)
    skipped = {}
    checks: list[Check] = []
    if steps is None:   # the full suite: a step this build cannot load is a gap in the evidence
        steps = suite.steps()
        skipped = dict(suite.unavailable())
        for name, why in skipped.items():
            checks.append(error(f"{name}.available", f"step {name} {why}: no evidence for it in this run",
                                cause=GAP))
    raw: dict[str, dict] = {}
    tracebacks: dict[str, str] = {}
    reflector_down: str | None = None
    down_cause = NETWORK
    far_end_down = False
    if circuit.reflector and any(s.NAME in suite.NEEDS_REFLECTOR and s.applies(profile, circuit) for s in steps):
        progress(circuit.name, "preflight", None, f"is reflector {circuit.reflector} answering?")
        try:
            reflector_down = reflector_problem(circuit, _key(profile, circuit))
            # replies that fail authentication: our key, not their circuit
            if reflector_down and "fail authentication" in reflector_down:
                down_cause = GAP
            far_end_down = reflector_down is not None and down_cause == NETWORK
        except (ProbeError, OSError) as exc:   # a broken key file, our socket: a gap, not a crash
            reflector_down, down_cause = f"reflector {circuit.reflector}: {exc}", GAP
        if reflector_down:
            progress(circuit.name, "preflight", None, reflector_down)
    for step in steps:
        name = step.NAME
        if not step.applies(profile, circuit):
            skipped[name] = "does not apply to this circuit (no target configured)"
            continue
        if stop is not None and stop.is_set():
            checks.append(error(f"{name}.measured", f"{name}: run stopped before this step", cause=GAP))
            continue
        if reflector_down and name in suite.NEEDS_REFLECTOR:
            checks.append(error(f"{name}.measured", f"{name}: {reflector_down}", cause=down_cause))
            continue
        progress(circuit.name, name, 0.0, "starting")

        def on_event(ev: ProbeEvent, _name=name) -> None:
            if ev.kind in ("progress", "warning", "start") or ev.message:
                msg = ev.message if ev.kind != "warning" else f"warning: {ev.message}"
                progress(circuit.name, _name, ev.fraction, msg)

        try:
            result = step.measure(profile, circuit, quick=quick, progress=on_event, stop=stop)
        except Exception as exc:   # noqa: BLE001 - classified: gap (ProbeError/OSError) or our bug (exit 70)
            check, path = exception_check(f"{name}.measured", name, exc, f"step {name} of circuit {circuit.name}")
            checks.append(check)
            if path:
                tracebacks[name] = path
            progress(circuit.name, name, 1.0, "error")
            continue
        raw[name] = result
        try:
            got = step.evaluate(profile, circuit, result)
        except Exception as exc:   # noqa: BLE001 - evaluate is pure: any exception is our bug
            path = write_traceback(exc, f"evaluating step {name} of circuit {circuit.name}")
            tracebacks[name] = path
            got = [error(f"{name}.evaluate", f"internal error in cutover ({name}): could not evaluate the "
                                             f"result: {type(exc).__name__}: {exc}; this is a bug in cutover, "
                                             f"not a network fault; traceback in {path}", cause=INTERNAL)]
        if stop is not None and stop.is_set() and isinstance(result, dict) and result.get("partial"):
            # we stopped this step (SIGTERM, Ctrl-C, the scheduler's deadline): its figures are
            # truncated (packets in flight count as lost), evidence of nothing about the circuit
            got = [c if c.status == "pass" else
                   with_cause(c, GAP, f"stopped by us before the step ended, not evidence: {c.reason}")
                   for c in got]
        checks.extend(got)
        worst = circuit_verdict(got)
        progress(circuit.name, name, 1.0, f"done ({worst if got else 'no checks'})")
    if not checks:
        checks.append(error("suite.measured", "no step could measure this circuit: configure a reflector "
                                              "(or ping/sip) for it"))
    hp = circuit.reflector_hostport
    return CircuitOutcome(circuit.name, circuit_verdict(checks), checks, raw, skipped,
                          far_end=str(hp) if hp else None, far_end_down=far_end_down, tracebacks=tracebacks)


def _far_end_steps(profile, co: CircuitOutcome) -> set[str]:
    """Steps whose target is the far end: the reflector's steps, and latency
    and path when they aim at the reflector's host (no ``ping:`` of their own)."""
    out = set(suite.NEEDS_REFLECTOR)
    try:
        circuit = profile.circuit(co.name)
    except KeyError:
        return out
    if not circuit.ping:
        out |= {"latency", "path"}
    return out


def correlate_far_end(profile, outcomes: dict[str, CircuitOutcome]) -> list[dict]:
    """When every circuit of the run that talks to one far end found it not
    answering (two circuits or more), the far end is down, not the carriers:
    their network-caused problems with that far end become one far-end
    measurement gap. Changes the outcomes in place; returns the gaps.

    With a single circuit on a far end nothing can be told apart: its
    unreachable far end stays the network's (and may open an outage)."""
    groups: dict[str, list[CircuitOutcome]] = {}
    for co in outcomes.values():
        if co.far_end:
            groups.setdefault(co.far_end, []).append(co)
    gaps = []
    for far_end, cos in groups.items():
        if len(cos) < 2 or not all(co.far_end_down for co in cos):
            continue
        names = [co.name for co in cos]
        why = (f"far end {far_end} did not answer on any circuit ({', '.join(names)}) in this run: "
               "a gap in the evidence, not a carrier outage")
        short = f"far end down on every circuit ({', '.join(names)}), not the carrier"
        for co in cos:
            steps = _far_end_steps(profile, co)
            co.checks = [with_cause(c, GAP, f"{short}: {c.reason}")
                         if cause_of(c) == NETWORK and c.step in steps else c for c in co.checks]
            co.verdict = circuit_verdict(co.checks)
        gaps.append({"far_end": far_end, "circuits": names, "reason": why})
    return gaps


def run_check(profile, *, store=None, circuits: list[str] | None = None, quick: bool = False,
              progress: RunProgress | None = None, stop: threading.Event | None = None,
              steps=None, kind: str = "check", tool_version: str = __version__,
              on_stored: Callable[[int], object] | None = None,
              skipped: dict[str, str] | None = None) -> RunOutcome:
    """Measure the selected circuits (all by default), store the run when a
    store is given, and return the verdicts. ``skipped`` (step -> reason)
    records steps the caller left out on purpose. ``on_stored(run_id)`` is
    called once the run is committed (its id exists only from then on).
    ``circuits`` names must exist
    (KeyError otherwise, checked before anything is measured or stored)."""
    from harness.store import StoreWriteError
    selected = [profile.circuit(n) for n in circuits] if circuits else list(profile.circuits)
    started = dt.datetime.now(UTC)
    run_id = None
    store_error: StoreWriteError | None = None
    pending = None if store is None else store.begin_run(profile.site, profile.model_dump(mode="json"),
                                                         tool_version, started_at=started, kind=kind)
    outcomes: dict[str, CircuitOutcome] = {}
    held: list[CircuitOutcome] = []     # far end down: stored once the other circuits are known
    for circuit in selected:
        co = measure_circuit(profile, circuit, quick=quick, progress=progress, stop=stop, steps=steps)
        co.skipped.update(skipped or {})
        outcomes[circuit.name] = co
        if co.far_end_down:
            held.append(co)
        elif pending is not None:
            store.add_circuit_result(pending, co.name, co.verdict, co.checks, co.raw)
    far_end_gaps = correlate_far_end(profile, outcomes)
    for co in held:
        if pending is not None:
            store.add_circuit_result(pending, co.name, co.verdict, co.checks, co.raw)
    verdict = overall_verdict(co.verdict for co in outcomes.values())
    finished = dt.datetime.now(UTC)
    if pending is not None:
        try:                # the whole run, one transaction: stored entirely or not at all
            run_id = store.finish_run(pending, verdict, finished_at=finished)
        except StoreWriteError as exc:     # measured anyway: the caller keeps the results elsewhere
            store_error = exc
        if on_stored is not None and run_id is not None:
            on_stored(run_id)   # the scheduler learns the run is stored, should this process hang now
    if store is not None and store_error is None:
        from harness import fleet
        try:      # the site's summary for `cutover fleet` (derived: kept best-effort)
            fleet.refresh(store, profile.site, finished)
        except StoreWriteError:
            pass  # the next run, or `cutover fleet` itself, judges the site again
    return RunOutcome(profile.site, run_id, verdict, outcomes, started, finished, store_error, far_end_gaps)
