"""Runs the readiness suite on each circuit, stores the run, returns verdicts.

Flow per run: ``store.begin_run`` (committed: the run is visible as
incomplete from here on) -> for each circuit, in profile order: a reflector
preflight, then every applicable step (measure -> evaluate), then
``store.add_circuit_result`` (committed) -> ``store.finish_run``.

Circuits are measured one after the other, never at once: they share the
measuring machine's CPU and, often, its uplink switch; parallel runs would
measure each other.

Nothing a probe does can crash the run: an exception in ``measure`` or
``evaluate``, ``measured: false`` or a dead reflector all become ``error``
checks carrying the cause, so that circuit is NO-GO and the others are still
measured.
"""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from harness import __version__, suite
from harness.verdicts import Check, circuit_verdict, error, overall_verdict
from probes.events import ProbeEvent

UTC = dt.timezone.utc

# `cutover check --json`, per check (docs/contract.md §5); the unit is part of the reason
CHECK_KEYS = ("id", "status", "measured", "required", "margin", "reason")

# progress(circuit, step, fraction or None, message)
RunProgress = Callable[[str, str, "float | None", str], None]


@dataclass
class CircuitOutcome:
    name: str
    verdict: str
    checks: list[Check]
    raw: dict[str, dict] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)   # step -> why it did not run

    def to_dict(self) -> dict:
        """Exactly the contract keys (docs/contract.md §5, check)."""
        return {"verdict": self.verdict,
                "checks": [{k: v for k, v in c.to_dict().items() if k in CHECK_KEYS} for c in self.checks]}


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

    @property
    def nothing_measured(self) -> bool:
        """True when every check of every circuit is an error (exit 3)."""
        checks = [c for co in self.circuits.values() for c in co.checks]
        return all(c.status == "error" for c in checks)

    def to_dict(self) -> dict:
        """The `cutover check --json` object: exactly the contract keys."""
        return {"verdict": self.verdict,
                "circuits": {n: co.to_dict() for n, co in self.circuits.items()},
                "run_id": self.run_id}


# ---------------------------------------------------------------- reflector preflight

def reflector_problem(circuit, key: bytes | None, *, tries: int = 3, timeout_s: float = 0.7) -> str | None:
    """None if the circuit's STAMP reflector answers, else the cause.

    A few STAMP test packets before the real steps: a dead reflector then
    costs about two seconds and one clear reason, instead of three probes
    each timing out on their own."""
    from probes import stamp
    from probes.addr import bind_to_circuit, resolve
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
                return f"{where}: {exc.strerror or exc}"
    if auth_failed:
        return f"{where} answers, but its replies fail authentication: check the circuit's key_file"
    return f"{where} does not answer ({tries} STAMP packets, no reply within {timeout_s * tries:g} s)"


# ---------------------------------------------------------------- the run

def _key(profile, circuit) -> bytes | None:
    if not circuit.key_file:
        return None
    from probes.stamp import load_key
    return load_key(profile.resolve_path(circuit.key_file))


def measure_circuit(profile, circuit, *, quick: bool = False, progress: RunProgress | None = None,
                    stop: threading.Event | None = None, steps=None) -> CircuitOutcome:
    """All applicable steps on one circuit. Never raises for probe trouble."""
    progress = progress or (lambda *a: None)
    skipped = {}
    if steps is None:   # the full suite: say which steps this build lacks
        steps = suite.steps()
        skipped = dict(suite.unavailable())
    checks: list[Check] = []
    raw: dict[str, dict] = {}
    reflector_down: str | None = None
    if circuit.reflector and any(s.NAME in suite.NEEDS_REFLECTOR and s.applies(profile, circuit) for s in steps):
        progress(circuit.name, "preflight", None, f"is reflector {circuit.reflector} answering?")
        try:
            reflector_down = reflector_problem(circuit, _key(profile, circuit))
        except Exception as exc:   # noqa: BLE001 - a broken key file etc. is a result, not a crash
            reflector_down = f"reflector {circuit.reflector}: {type(exc).__name__}: {exc}"
        if reflector_down:
            progress(circuit.name, "preflight", None, reflector_down)
    for step in steps:
        name = step.NAME
        if not step.applies(profile, circuit):
            skipped[name] = "does not apply to this circuit (no target configured)"
            continue
        if stop is not None and stop.is_set():
            checks.append(error(f"{name}.measured", f"{name}: run stopped before this step"))
            continue
        if reflector_down and name in suite.NEEDS_REFLECTOR:
            checks.append(error(f"{name}.measured", f"{name}: {reflector_down}"))
            continue
        progress(circuit.name, name, 0.0, "starting")

        def on_event(ev: ProbeEvent, _name=name) -> None:
            if ev.kind in ("progress", "warning", "start") or ev.message:
                msg = ev.message if ev.kind != "warning" else f"warning: {ev.message}"
                progress(circuit.name, _name, ev.fraction, msg)

        try:
            result = step.measure(profile, circuit, quick=quick, progress=on_event, stop=stop)
        except Exception as exc:   # noqa: BLE001 - probe failure is a result
            checks.append(error(f"{name}.measured", f"{name} could not run: {type(exc).__name__}: {exc}"))
            progress(circuit.name, name, 1.0, "error")
            continue
        raw[name] = result
        try:
            got = step.evaluate(profile, circuit, result)
        except Exception as exc:   # noqa: BLE001
            got = [error(f"{name}.evaluate", f"{name}: could not evaluate the result: "
                                             f"{type(exc).__name__}: {exc}")]
        checks.extend(got)
        worst = circuit_verdict(got)
        progress(circuit.name, name, 1.0, f"done ({worst if got else 'no checks'})")
    if not checks:
        checks.append(error("suite.measured", "no step could measure this circuit: configure a reflector "
                                              "(or ping/sip) for it"))
    return CircuitOutcome(circuit.name, circuit_verdict(checks), checks, raw, skipped)


def run_check(profile, *, store=None, circuits: list[str] | None = None, quick: bool = False,
              progress: RunProgress | None = None, stop: threading.Event | None = None,
              steps=None, kind: str = "check", tool_version: str = __version__,
              on_begin: Callable[[int], None] | None = None,
              skipped: dict[str, str] | None = None) -> RunOutcome:
    """Measure the selected circuits (all by default), store the run when a
    store is given, and return the verdicts. ``skipped`` (step -> reason)
    records steps the caller left out on purpose. ``circuits`` names must exist
    (KeyError otherwise, checked before anything is measured or stored)."""
    from harness.store import StoreWriteError
    selected = [profile.circuit(n) for n in circuits] if circuits else list(profile.circuits)
    started = dt.datetime.now(UTC)
    run_id = None
    store_error: StoreWriteError | None = None
    if store is not None:
        try:
            run_id = store.begin_run(profile.site, profile.model_dump(mode="json"), tool_version,
                                     started_at=started, kind=kind)
        except StoreWriteError as exc:     # measure anyway: the results go elsewhere
            store, store_error = None, exc
        if on_begin is not None and run_id is not None:
            on_begin(run_id)    # the scheduler learns which run to close if this process hangs
    outcomes: dict[str, CircuitOutcome] = {}
    for circuit in selected:
        co = measure_circuit(profile, circuit, quick=quick, progress=progress, stop=stop, steps=steps)
        co.skipped.update(skipped or {})
        outcomes[circuit.name] = co
        if store is not None:
            try:
                store.add_circuit_result(run_id, co.name, co.verdict, co.checks, co.raw)
            except StoreWriteError as exc:
                store, store_error = None, exc
    verdict = overall_verdict(co.verdict for co in outcomes.values())
    finished = dt.datetime.now(UTC)
    if store is not None:
        try:
            store.finish_run(run_id, verdict, finished_at=finished)
        except StoreWriteError as exc:
            store_error = exc
    if store is not None and store_error is None:
        from harness import fleet
        try:      # the site's summary for `cutover fleet` (derived: kept best-effort)
            fleet.refresh(store, profile.site, finished)
        except StoreWriteError:
            pass  # the next run, or `cutover fleet` itself, judges the site again
    return RunOutcome(profile.site, run_id, verdict, outcomes, started, finished, store_error)
