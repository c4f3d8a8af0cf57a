"""Concurrent-call capacity: how many simultaneous calls a path carries within
the voice thresholds.

N calls are emulated as N bidirectional STAMP sessions at the codec's packet
size and rate through a reflector, so both directions load the path. Each
call count is held for a few seconds (one *step*) by the stream engine
(:mod:`probes.engine.core`); :mod:`probes.ramp` decides which counts to try (grow
from the planned calls, then bisect near the limit) and judges each step
against the thresholds (MOS, loss, jitter of the worse direction).

Why a step can be "sender": the engine reports its own send-schedule
lateness and kernel receive drops. When the measuring machine fell behind,
loss and jitter in that step are ours, not the network's, so the step fails
with reason ``sender`` and the ramp reports ``limit: "sender"``: the path
carries *at least* ``max_calls``; the machine could not offer more.

Ceiling of the ramp, in order: ``max_calls`` (the user's ``--max-calls``),
else ``contract_calls`` (what the circuit's contract could carry, computed by
the harness from the plan; probes cannot import the harness), else
:data:`DEFAULT_CEILING`. Reaching the ceiling with every step passing gives
``limit: "max_calls"``.

``offered_kbps`` per step is per direction at the Ethernet layer (14 B header +
4 B FCS, as ``cutover plan`` counts a call), computed from the packet the
engine really sends; for codecs whose RTP packet is smaller than a STAMP
packet (G.729: 32 B < 44 B) the emulated call is larger than the real one and
the result says so in ``notes``.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from probes.voice import codecs as C
from probes.addr import AddressError, ResolveError, parse_hostport, resolve
from probes.events import Emitter, ProgressCallback
from probes.ramp import (PRESETS, RampOutcome, Step, Thresholds, expected_steps, judge, late_sends, ramp,
                         sender_state)
from probes.result import BadInput, clean, is_local

DEFAULT_CEILING = 500          # calls, when neither --max-calls nor a contract is known
LOSS_IN_TIME_KEYS = ("max_gap_ms", "burst_ratio", "worst_window", "interruptions", "restarts")
MAX_CALLS = 60_000             # the engine's bound (SSIDs of one run)
DEFAULT_START = 10             # calls, when the planned calls are not known
STAMP_BASE_B = {False: 44, True: 112}   # smallest STAMP sender packet (RFC 8762), unauth/auth
RETRIES_AFTER_STALL = 2        # re-measure a failed step whose sender stalled, at most this often


@dataclass
class CapacityConfig:
    target: str
    codec: str = "g711"
    ptime_ms: int = 20
    max_calls: int | None = None          # --max-calls: hard ceiling
    planned_calls: int | None = None      # the site's planned peak; the ramp starts here
    start_calls: int | None = None        # start the ramp here instead of at the planned calls
    contract_calls: int | None = None     # what the contract could carry: default ceiling
    preset: str = "default"               # quick | default | thorough
    step_s: float | None = None           # override the preset's step duration
    settle_s: float | None = None         # override the preset's pause between steps
    thresholds: Thresholds = field(default_factory=Thresholds)
    jitter_buffer_ms: float = 60.0
    dscp: int = 46
    key: bytes | None = None              # STAMP HMAC key (authenticated mode)
    source: str | None = None
    interface: str | None = None
    timeout_s: float = 2.0                # wait for late replies after each step
    time_budget_s: float | None = None    # whole ramp; default: max_steps x step + slack


@dataclass
class CapacityResult:
    target: str
    codec: str
    ptime_ms: int
    max_calls: int = 0
    limit: str | None = None
    planned_calls: int | None = None
    margin_pct: float | None = None       # (max_calls - planned) / planned
    passed: bool | None = None            # max_calls >= planned_calls (None: nothing planned)
    ceiling: int = 0
    ceiling_source: str = "default"       # max_calls | contract | default
    first_fail_calls: int | None = None
    preset: str = "default"
    step_s: float = 0.0
    per_call_kbps: float = 0.0            # offered per call per direction, Ethernet layer
    packet_b: int = 0                     # UDP payload of one emulated packet
    thresholds: dict[str, float] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    duration_s: float = 0.0
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    partial: bool = False
    measured: bool = False

    def to_dict(self) -> dict[str, Any]:
        return clean({
            "probe": "capacity", "target": self.target, "codec": self.codec,
            # null when nothing was measured: "0 calls" would read as a (terrible) result
            "ptime_ms": self.ptime_ms, "max_calls": self.max_calls if self.measured else None,
            "limit": self.limit,
            "planned_calls": self.planned_calls, "margin_pct": self.margin_pct,
            "pass": self.passed, "ceiling": self.ceiling, "ceiling_source": self.ceiling_source,
            "first_fail_calls": self.first_fail_calls, "preset": self.preset,
            "step_s": self.step_s, "per_call_kbps": self.per_call_kbps, "packet_b": self.packet_b,
            "thresholds": self.thresholds, "steps": [s.to_dict() for s in self.steps],
            "notes": self.notes, "duration_s": self.duration_s, "errors": self.errors,
            "gaps": self.gaps,
            "partial": self.partial, "measured": self.measured,
        })


# ---------------------------------------------------------------- pure helpers

def emulated_payload_b(codec: str, ptime_ms: int, authenticated: bool = False) -> int:
    """UDP payload of one emulated packet: the codec's RTP packet, but never
    smaller than a STAMP packet can be."""
    return max(C.get_codec(codec).rtp_bytes(ptime_ms), STAMP_BASE_B[authenticated])


def offered_kbps_per_call(payload_b: int, ptime_ms: int, ipv6: bool = False) -> float:
    """One emulated call, one direction, at the Ethernet layer (kbit/s)."""
    frame = payload_b + C.UDP_HEADER_B + (C.IPV6_HEADER_B if ipv6 else C.IPV4_HEADER_B) + C.ETHERNET_B
    return frame * 8 * (1000 / ptime_ms) / 1000


def choose_ceiling(max_calls: int | None, contract_calls: int | None) -> tuple[int, str]:
    if max_calls is not None:
        return max_calls, "max_calls"
    if contract_calls is not None and contract_calls >= 1:
        return contract_calls, "contract"
    return DEFAULT_CEILING, "default"


def choose_start(planned_calls: int | None, ceiling: int) -> int:
    """Start at the planned calls: the question is "do we have enough, with room?"."""
    return max(1, min(ceiling, planned_calls or DEFAULT_START))


def margin_pct(max_calls: int, planned_calls: int | None) -> float | None:
    if not planned_calls:
        return None
    return (max_calls - planned_calls) / planned_calls * 100


def worse(a: float | None, b: float | None, higher_is_worse: bool = True) -> float | None:
    vals = [v for v in (a, b) if v is not None]
    if not vals:
        return None
    return max(vals) if higher_is_worse else min(vals)


def validate(cfg: CapacityConfig) -> None:
    """Bad arguments -> BadInput naming the config field (exit 2), before anything is sent."""
    try:
        codec = C.get_codec(cfg.codec)
    except KeyError as exc:
        raise BadInput(f"codec: {exc.args[0]}", field="codec") from None
    # messages name the config field; the CLI shows its flag (harness.binding.cli_message)
    if cfg.ptime_ms not in codec.ptimes_ms:
        raise BadInput(f"ptime_ms {cfg.ptime_ms}: {codec.name} is used with "
                       f"{', '.join(map(str, codec.ptimes_ms))} ms", field="ptime_ms")
    if cfg.max_calls is not None and not 1 <= cfg.max_calls <= MAX_CALLS:
        raise BadInput(f"max_calls {cfg.max_calls}: expected 1 to {MAX_CALLS}", field="max_calls")
    if cfg.start_calls is not None and cfg.start_calls < 1:
        raise BadInput(f"start_calls {cfg.start_calls}: expected at least 1", field="start_calls")
    if cfg.planned_calls is not None and cfg.planned_calls < 1:
        raise BadInput(f"planned_calls {cfg.planned_calls}: expected at least 1", field="planned_calls")
    if cfg.preset not in PRESETS:
        raise BadInput(f"preset {cfg.preset!r}: expected one of {', '.join(PRESETS)}", field="preset")
    if cfg.step_s is not None and not 0.5 <= cfg.step_s <= 600:
        raise BadInput(f"step_s {cfg.step_s}: expected 0.5 to 600 seconds", field="step_s")
    try:
        parse_hostport(cfg.target)
    except AddressError as exc:
        raise AddressError(f"target: {exc}", field="target") from None


# ---------------------------------------------------------------- measuring

StepRunner = Any   # callable(calls, duration_s, stop) -> Step (unjudged), see _EngineSteps


def run(config: CapacityConfig, progress: ProgressCallback | None = None,
        stop: threading.Event | None = None, *, step_runner: StepRunner | None = None) -> CapacityResult:
    """Ramp the call count against ``config.target``; see the module docstring.

    ``step_runner`` replaces the engine (tests); by default each step runs
    :class:`probes.engine.core` for ``step_s`` seconds.
    """
    validate(config)
    emit = Emitter("capacity", progress)
    preset = PRESETS[config.preset]
    step_s = config.step_s or preset.step_s
    settle_s = preset.settle_s if config.settle_s is None else config.settle_s
    codec = C.get_codec(config.codec)
    ceiling, ceiling_source = choose_ceiling(config.max_calls, config.contract_calls)
    start = choose_start(config.start_calls or config.planned_calls, ceiling)
    hp = parse_hostport(config.target)
    res = CapacityResult(target=str(hp), codec=codec.name, ptime_ms=config.ptime_ms,
                         planned_calls=config.planned_calls, ceiling=ceiling,
                         ceiling_source=ceiling_source, preset=preset.name, step_s=step_s,
                         thresholds={"mos_min": config.thresholds.mos_min,
                                     "loss_pct": config.thresholds.loss_pct,
                                     "jitter_ms": config.thresholds.jitter_ms})
    payload_b = emulated_payload_b(codec.name, config.ptime_ms, config.key is not None)
    res.packet_b = payload_b
    if payload_b > codec.rtp_bytes(config.ptime_ms):
        res.notes.append(f"{codec.name}: an emulated packet ({payload_b} B) is larger than the real "
                         f"RTP packet ({codec.rtp_bytes(config.ptime_ms)} B), so the capacity found "
                         "is a lower bound")
    for caveat in codec.score_caveats():
        res.notes.append(f"{codec.name}: MOS (G.107.1) is provisional: {caveat}")
    t0 = time.monotonic()
    try:
        family, sockaddr = resolve(hp.host, hp.port, source=config.source)
    except ResolveError as exc:
        res.errors.append(str(exc))      # a name that does not resolve: DNS, not a gap of ours
        return res
    per_call = offered_kbps_per_call(payload_b, config.ptime_ms, family == socket.AF_INET6)
    on_loopback = _is_loopback(sockaddr[0])
    if on_loopback:
        res.notes.append("the target is on this machine (loopback): there is no network on the "
                         "path, so any loss or delay is the machine's own and is reported as "
                         "limit 'sender'")
    res.per_call_kbps = per_call

    runner = step_runner or _EngineSteps(config, payload_b)
    stop = stop or threading.Event()
    slack_s = config.timeout_s + settle_s + 1.0
    budget_s = config.time_budget_s or preset.max_steps * (step_s + slack_s)
    deadline = t0 + budget_s

    def _measure(calls: int) -> Step:
        try:
            s = runner(calls, step_s, stop)
        except OSError as exc:           # socket trouble is a measurement error, not bad input
            s = Step(calls=calls, offered_kbps=0.0, error=str(exc) or exc.__class__.__name__,
                     local_error=is_local(exc))
        except ValueError as exc:        # the engine refused the step (e.g. too many packets)
            s = Step(calls=calls, offered_kbps=0.0, error=f"engine: {exc}", local_error=True)
        s.offered_kbps = calls * per_call
        if on_loopback:
            s.sender["loopback"] = True
        return judge(s, config.thresholds)

    planned_steps = expected_steps(start, ceiling, preset)

    def one_step(calls: int) -> Step:
        idx = len(res.steps) + 1
        # by steps, not by the time budget (a worst case: progress crawled, then jumped to done)
        emit("progress", f"step {idx} of about {max(idx, planned_steps)}: {calls} calls for {step_s:g} s",
             fraction=min(0.95, (idx - 1) / max(idx, planned_steps)), calls=calls)
        if res.steps and settle_s > 0:
            stop.wait(settle_s)            # let queues drain so steps do not overlap
        if stop.is_set():
            return Step(calls=calls, offered_kbps=calls * per_call, error="stopped before this step",
                        local_error=True)
        s = _measure(calls)
        if stop.is_set():
            # the engine cut the step short: its figures cover part of the step only
            s.error, s.passed, s.reasons, s.local_error = "stopped during this step", False, [], True
            res.steps.append(s)
            return s
        for _ in range(RETRIES_AFTER_STALL):
            tainted = "sender" in s.reasons and s.sender.get("hiccups") and not s.sender.get("behind")
            if s.passed or s.error or not tainted or stop.is_set():
                break
            # A failure during stalls of a busy machine: measure again before blaming anyone.
            emit("warning", f"{calls} calls: {s.sender.get('reason')}; measuring the step again")
            again = _measure(calls)
            again.sender["retried_after"] = s.sender.get("reason")
            s = again
        res.steps.append(s)
        verdict = "pass" if s.passed else ("error: " + s.error if s.error else "FAIL " + ",".join(s.reasons))
        emit("progress", f"{calls} calls: loss {_f(s.loss_pct)} %, jitter {_f(s.jitter_ms)} ms, "
             f"MOS {_f(s.mos)}: {verdict}", calls=calls, passed=s.passed)
        return s

    emit("start", f"capacity {res.target}: {codec.name}/{config.ptime_ms} ms, start {start} calls, "
         f"ceiling {ceiling} ({ceiling_source}), {step_s:g} s steps")
    outcome: RampOutcome = ramp(one_step, start=start, ceiling=ceiling, preset=preset, stop=stop,
                                deadline_ok=lambda: time.monotonic() < deadline)
    close = getattr(runner, "close", None)
    if close:
        close()
    res.steps = outcome.steps
    res.max_calls = outcome.max_calls
    res.limit = outcome.limit
    res.first_fail_calls = outcome.first_fail
    res.errors.extend(outcome.errors)
    res.gaps.extend(outcome.gaps)
    res.partial = outcome.partial
    res.measured = outcome.measured
    res.margin_pct = margin_pct(res.max_calls, config.planned_calls) if res.measured else None
    if res.measured and config.planned_calls:
        res.passed = res.max_calls >= config.planned_calls
    res.duration_s = time.monotonic() - t0
    emit("done", f"{res.max_calls} calls, limit {res.limit}")
    return res


def _is_loopback(host: str) -> bool:
    import ipaddress
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


class _EngineSteps:
    """One :class:`probes.engine.core.Engine` reused for every step; each ``run`` opens a
    fresh socket (a new source port), so each step is a fresh set of reflector
    sessions and a step's late replies cannot leak into the next."""

    def __init__(self, config: CapacityConfig, payload_b: int) -> None:
        from probes.engine.core import Engine, EngineConfig
        self.engine = Engine(EngineConfig(
            target=config.target, codec=config.codec, ptime_ms=config.ptime_ms, dscp=config.dscp,
            key=config.key, source=config.source, interface=config.interface,
            jitter_buffer_ms=config.jitter_buffer_ms, timeout_s=config.timeout_s,
            payload_b=payload_b))

    def __call__(self, calls: int, duration_s: float, stop: threading.Event) -> Step:
        from probes.engine.core import MAX_PACKETS_PER_RUN
        # the engine keeps per-packet state for a run: very large counts get a shorter step
        per_s = calls * 1000 / self.engine.config.ptime_ms
        duration_s = min(duration_s, max(0.5, MAX_PACKETS_PER_RUN / per_s))
        return step_from_engine(self.engine.run(calls, duration_s, None, stop))


def step_from_engine(r) -> Step:
    """An EngineResult (or its to_dict()) -> an unjudged Step.

    Worse direction for loss, jitter and MOS (a call has a listener at each
    end). Without a direction split, half the total loss per direction
    (docs/contract.md §4). A run that did not complete (reflector went silent,
    stopped) is a step error, never a network figure.
    """
    d = r if isinstance(r, dict) else r.to_dict()
    calls = int(d.get("calls") or 0)
    step = Step(calls=calls, offered_kbps=0.0, duration_s=float(d.get("duration_s") or 0.0))
    step.sender = dict(d.get("sender") or {})
    step.sender.setdefault("sent", step.packets.get("sent") or 0)
    ptime_ms = d.get("ptime_ms") or 20
    step.sender["late_sends"] = late_sends(step.sender, ptime_ms)
    step.sender["behind"], step.sender["hiccups"] = sender_state(step.sender, ptime_ms)
    step.packets = dict(d.get("packets") or {})
    rtt = d.get("rtt_ms") or {}
    step.rtt_ms = {k: rtt.get(k) for k in ("p50", "p99", "max") if k in rtt}
    if not d.get("measured") or d.get("partial"):
        step.error = "; ".join(d.get("errors") or []) or "no usable replies"
        step.local_error = bool(d.get("gaps"))
        return step
    loss = d.get("loss_pct") or {}
    if d.get("direction_split") is False:
        up = down = (loss.get("total") or 0.0) / 2
    else:
        up, down = loss.get("up"), loss.get("down")
    jit = d.get("jitter_ms") or {}
    step.directions = {
        "up": {"loss_pct": up, "jitter_ms": jit.get("up"), "mos": d.get("mos_up")},
        "down": {"loss_pct": down, "jitter_ms": jit.get("down"), "mos": d.get("mos_down")},
    }
    step.loss_pct = worse(up, down)
    step.loss_in_time = {k: d[k] for k in LOSS_IN_TIME_KEYS if d.get(k) is not None}
    step.jitter_ms = worse(jit.get("up"), jit.get("down"))
    step.mos = d.get("mos") if d.get("mos") is not None else worse(d.get("mos_up"), d.get("mos_down"),
                                                                 higher_is_worse=False)
    return step
