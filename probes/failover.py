"""Failover drill: N emulated calls kept running while the primary line fails.

Why: sites rarely move to one line. The new design is a primary circuit and a
backup behind an SD-WAN box or a router with failover, and "backup failover
tested" is usually signed off by pulling a cable and listening to one call.
What a call suffers is a silent gap, and sometimes a new public address (a
new NAT binding) that drops every call and phone registration. This probe
measures that: it runs the stream engine (probes/engine/core.py) for the whole
drill, lets the replies stop for as long as the drill lasts (the engine's
``max_silence_s``), and reads the run afterwards:

* every **interruption** (a round-trip silence of at least 100 ms in a call,
  merged across calls; probes/voice/losstime.py): start (UTC), duration, per
  direction the longest silence and the packets lost, and whether the calls
  came back from a **different source address or port**. Two kinds of
  evidence: the RFC 8972 Location TLV, in which a reflector that supports it
  (ours does) writes our source address and port as they arrived, after any
  NAT (both addresses are then named); and the reflector's session restart
  (its numbering starts again when our packets arrive from a new address or
  port, or when the reflector itself restarted);
* **RTT and TTL before and after** (the path changed: a 4G backup adds delay,
  a different route changes the hop count), MOS **before / during / after**
  (during: the 15 s around the interruptions, as a caller lives through it);
* **recovered**: replies flow again after the last interruption;
  **recovery_s**: from the start of the first interruption until the first
  second of the drill from which MOS stays within 0.1 of its pre-failover
  level (None when it never does: the backup is worse than the primary);
* a trigger: ``trigger`` (a shell command) runs ``trigger_at_s`` seconds into
  the drill, e.g. one that shuts the primary's interface, for unattended
  drills; without it the engineer pulls the cable while the drill runs.

The verdict (gap against ``cutover.failover_max_gap_ms``) is judged in
harness/suite/failover.py, not here.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from probes.voice import emodel, losstime
from probes.wire import stamp
from probes.addr import dscp_value
from probes.result import BadInput
from probes.engine.core import MAX_PACKETS_PER_RUN, Engine, EngineConfig, check_call_basics
from probes.engine.run import Run
from probes.engine.analysis import NS_PER_NTP, reached
from probes.events import Emitter, ProgressCallback

RECOVERY_MOS_TOLERANCE = 0.1     # "back to its pre-failover level": within 0.1 MOS
RECOVERY_BIN_S = 1.0             # quality is followed second by second after the gap
RECOVERY_STABLE_BINS = 3         # ... and must hold for 3 s (or to the end of the drill)
DURING_WINDOW_S = 15.0           # MOS "during": the 15 s around the interruptions
TRIGGER_TIMEOUT_S = 60.0         # a trigger command that hangs is killed after this


@dataclass
class FailoverConfig:
    target: str                          # HOST:PORT of a STAMP reflector behind the line(s)
    calls: int = 3
    duration_s: float = 60.0
    codec: str = "g711"
    ptime_ms: int = 20
    dscp: int | str | None = "ef"
    key_file: str | None = None
    key: bytes | None = None
    source: str | None = None
    interface: str | None = None
    jitter_buffer_ms: float = 60.0
    timeout_s: float = 3.0               # no reply at all at the start for this long: not measured
    trigger: str | None = None           # shell command run trigger_at_s into the drill
    trigger_at_s: float | None = None


@dataclass
class FailoverResult:
    target: str
    calls: int
    codec: str
    ptime_ms: int
    duration_s: float
    interruptions: list[dict] = field(default_factory=list)
    max_gap_ms: dict[str, float | None] = field(default_factory=dict)
    source_changed: bool = False
    recovered: bool | None = None
    recovery_s: float | None = None
    mos_before: float | None = None
    mos_during: float | None = None
    mos_after: float | None = None
    rtt_ms_before: float | None = None
    rtt_ms_after: float | None = None
    ttl_before: int | None = None
    ttl_after: int | None = None
    source_addresses: list[dict] = field(default_factory=list)   # as the far end saw us (Location TLV)
    trigger: dict[str, Any] | None = None
    stream: dict[str, Any] = field(default_factory=dict)   # the engine's full result (loss in time...)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    partial: bool = False
    measured: bool = False

    def to_dict(self) -> dict:
        return {"probe": "failover", "target": self.target, "calls": self.calls, "codec": self.codec,
                "ptime_ms": self.ptime_ms, "duration_s": self.duration_s,
                "interruptions": self.interruptions, "max_gap_ms": self.max_gap_ms,
                "source_changed": self.source_changed, "recovered": self.recovered,
                "recovery_s": self.recovery_s, "mos_before": self.mos_before,
                "mos_during": self.mos_during, "mos_after": self.mos_after,
                "rtt_ms_before": self.rtt_ms_before, "rtt_ms_after": self.rtt_ms_after,
                "ttl_before": self.ttl_before, "ttl_after": self.ttl_after,
                "source_addresses": self.source_addresses, "trigger": self.trigger,
                "stream": self.stream, "notes": self.notes, "errors": self.errors,
                "gaps": self.gaps, "partial": self.partial, "measured": self.measured}


def validate(config: FailoverConfig) -> EngineConfig:
    """Check arguments; a BadInput (probes.result) naming the config field for bad input."""
    codec = check_call_basics(config.target, config.codec, config.ptime_ms)
    if not 5 <= config.duration_s <= 3600:
        raise BadInput(f"duration_s {config.duration_s:g}: a drill lasts 5-3600 s", field="duration_s")
    if not 1 <= config.calls <= 1000:
        raise BadInput(f"calls {config.calls}: expected 1-1000", field="calls")
    if config.calls * round(config.duration_s * 1000 / config.ptime_ms) > MAX_PACKETS_PER_RUN:
        raise BadInput(f"calls {config.calls}: {config.calls} calls x {config.duration_s:g} s: too many "
                       "packets for one drill (fewer calls or a shorter drill)", field="calls")
    if (config.trigger is None) != (config.trigger_at_s is None):
        missing = "trigger_at_s" if config.trigger_at_s is None else "trigger"
        raise BadInput(f"{missing}: the trigger command and the time to run it go together", field=missing)
    if config.trigger_at_s is not None and not 0 <= config.trigger_at_s < config.duration_s:
        raise BadInput(f"trigger_at_s {config.trigger_at_s:g}: must fall within the "
                       f"{config.duration_s:g} s drill", field="trigger_at_s")
    if config.jitter_buffer_ms < 0:
        raise BadInput(f"jitter_buffer_ms {config.jitter_buffer_ms:g}: expected >= 0 ms", field="jitter_buffer_ms")
    if config.timeout_s <= 0:
        raise BadInput(f"timeout_s {config.timeout_s:g}: expected > 0 s", field="timeout_s")
    key = stamp.config_key(config.key, config.key_file)
    return EngineConfig(target=config.target, codec=codec.name, ptime_ms=config.ptime_ms,
                        dscp=None if config.dscp is None else dscp_value(config.dscp), key=key,
                        source=config.source, interface=config.interface,
                        jitter_buffer_ms=config.jitter_buffer_ms, timeout_s=config.timeout_s,
                        max_silence_s=config.duration_s, ttl=True, location=True)


class _Trigger:
    """Runs the trigger command once, ``at_s`` after start(), in its own thread."""

    def __init__(self, command: str, at_s: float) -> None:
        self.command, self.at_s = command, at_s
        self.cancel = threading.Event()          # the drill ended (or was stopped) first
        self.info: dict[str, Any] = {"command": command, "at_s": at_s, "started": None,
                                     "exit_code": None, "output": ""}
        self._t = threading.Thread(target=self._go, daemon=True)

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._t.start()

    def _go(self) -> None:
        if self.cancel.wait(max(0.0, self._t0 + self.at_s - time.monotonic())):
            return
        self.info["started"] = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        try:
            # the engineer's own command line (e.g. "ssh r1 'interface ge0 shutdown'")
            p = subprocess.run(self.command, shell=True, capture_output=True, text=True,
                               timeout=TRIGGER_TIMEOUT_S)
            self.info["exit_code"] = p.returncode
            self.info["output"] = (p.stdout + p.stderr)[-500:]
        except subprocess.TimeoutExpired:
            self.info["exit_code"] = None
            self.info["output"] = f"killed after {TRIGGER_TIMEOUT_S:g} s"

    def join(self, timeout_s: float) -> dict[str, Any]:
        self.cancel.set()
        self._t.join(timeout_s)
        return self.info


def run(config: FailoverConfig, progress: ProgressCallback | None = None,
        stop: threading.Event | None = None) -> FailoverResult:
    """Run one drill. Raises ValueError only for bad arguments."""
    eng_cfg = validate(config)
    stop = stop or threading.Event()
    emit = Emitter("failover", progress)
    emit("start", f"{config.calls} x {eng_cfg.codec}/{config.ptime_ms} ms to {config.target} for "
                  f"{config.duration_s:g} s: take the primary down now"
                  + (f" (trigger at {config.trigger_at_s:g} s)" if config.trigger else ""))

    def relay(ev):
        emit(ev.kind, ev.message, ev.fraction, **ev.data)

    trigger = _Trigger(config.trigger, config.trigger_at_s or 0.0) if config.trigger else None
    if trigger:
        trigger.start()
    engine = Engine(eng_cfg)
    res, rec = engine.run_detailed(config.calls, config.duration_s, progress=relay, stop=stop)
    out = FailoverResult(target=res.target, calls=config.calls, codec=res.codec, ptime_ms=res.ptime_ms,
                         duration_s=res.duration_s, stream=res.to_dict(), errors=list(res.errors), gaps=list(res.gaps),
                         partial=res.partial, measured=res.measured)
    if trigger:
        out.trigger = trigger.join(TRIGGER_TIMEOUT_S + 5)
        if out.trigger["started"] is None:
            out.notes.append("the trigger did not run (the drill ended first)")
        elif out.trigger["exit_code"] != 0:
            out.notes.append(f"the trigger command exited with {out.trigger['exit_code']}: "
                             f"{out.trigger['output'].strip()[-200:]}")
    if not res.measured or rec is None:
        emit("done", "not measured")
        return out
    out.source_addresses = res.source_addresses
    drill_figures(out, res.interruptions, res.max_gap_ms, rec)
    out.notes.extend(res.notes)
    emit("done", f"{len(out.interruptions)} interruption(s), longest {out.max_gap_ms.get('rtt') or 0:.0f} ms")
    return out


# ---------------------------------------------------------------- analysis of the run

@dataclass
class _Segment:
    rtt_ms: float | None
    mos: float | None
    ttl: int | None


def _segment(rec: Run, lo: int, hi: int, reach: list[list[bool]] | None) -> _Segment:
    """RTT, MOS (worse direction) and the usual reply TTL of positions [lo, hi)."""
    calls = rec.calls
    lo, hi = max(0, lo), min(rec.sent, hi)
    rx, tx, t2, t3 = rec.rx, rec.tx, rec.t2, rec.t3
    got = [j for j in range(lo, hi) if rx[j]]
    n = hi - lo
    if n <= 0 or not got:
        return _Segment(None, None if n <= 0 else emodel.mos_from_r(0.0), None)
    rtts = [((rx[j] - tx[j]) - (t3[j] - t2[j]) * NS_PER_NTP) * 1e-6 for j in got]
    rtt = sum(rtts) / len(rtts)
    if reach is not None:
        sent_d = reached_d = lost_d = 0
        for j in range(lo, hi):
            r = reach[j % calls][j // calls]
            sent_d += 1
            if r:
                reached_d += 1
                lost_d += not rx[j]
        loss = {"up": 100.0 * (sent_d - reached_d) / sent_d,
                "down": 100.0 * lost_d / reached_d if reached_d else 0.0}
    else:
        half = 50.0 * (n - len(got)) / n
        loss = {"up": half, "down": half}
    pats = [[not rx[j] for j in range(lo + ((c - lo) % calls), hi, calls)] for c in range(calls)]
    br = emodel.burst_ratio_for_model(losstime.burst_ratio(pats))
    mos = min(emodel.score(rec.codec, rtt / 2, loss[d], jitter_buffer_ms=rec.jitter_buffer_ms,
                           ptime_ms=rec.ptime_ms, burst_ratio=br).mos for d in ("up", "down"))
    ttl = None
    if rec.ttl is not None:
        counts: dict[int, int] = {}
        for j in got:
            v = rec.ttl[j]
            if v >= 0:
                counts[v] = counts.get(v, 0) + 1
        ttl = max(counts, key=counts.__getitem__) if counts else None
    return _Segment(rtt, mos, ttl)


def drill_figures(out: FailoverResult, interruptions: list[dict], max_gap_ms: dict, rec: Run) -> None:
    """Before / during / after, recovery and source change from one engine run."""
    calls, sent = rec.calls, rec.sent
    per_s = round(1000 / rec.ptime_ms * calls)           # schedule positions per second
    reach, _restarts = reached(rec)
    out.max_gap_ms = dict(max_gap_ms)
    its = losstime.interruptions([[not r for r in rec.rx[c:sent:calls]] for c in range(calls)],
                                 rec.ptime_ms)
    out.interruptions = interruptions
    out.source_changed = any(i.get("source_changed") for i in interruptions)
    if not its:
        whole = _segment(rec, 0, sent, reach)
        out.mos_before, out.rtt_ms_before, out.ttl_before = whole.mos, whole.rtt_ms, whole.ttl
        out.recovered = None
        out.notes.append("no interruption during the drill: the calls never went silent for "
                         f"{losstime.INTERRUPTION_MIN_MS:g} ms or more (was the primary taken down?)")
        return
    first, last = its[0], its[-1]
    before = _segment(rec, 0, first.start_j, reach)
    out.mos_before, out.rtt_ms_before, out.ttl_before = before.mos, before.rtt_ms, before.ttl
    mid = (first.start_j + last.end_j) // 2
    half = round(DURING_WINDOW_S * per_s / 2)
    out.mos_during = _segment(rec, mid - half, mid + half, reach).mos
    resume = last.end_j + 1
    out.recovered = any(rec.rx[j] for j in range(resume, sent))
    if not out.recovered:
        out.notes.append("the calls did not come back before the drill ended")
        return
    # recovery: the first second after the gap from which MOS holds within the tolerance
    bins = list(range(resume, sent, per_s))
    ok = [(before.mos is not None and (s := _segment(rec, b, b + per_s, reach).mos) is not None
           and s >= before.mos - RECOVERY_MOS_TOLERANCE) for b in bins]
    back = None
    for i in range(len(bins)):
        if all(ok[i:i + RECOVERY_STABLE_BINS]):
            back = bins[i]
            break
    after_from = back if back is not None else resume
    after = _segment(rec, after_from, sent, reach)
    out.mos_after, out.rtt_ms_after, out.ttl_after = after.mos, after.rtt_ms, after.ttl
    if back is not None:
        out.recovery_s = round((back - first.start_j) * rec.interval_ns / 1e9, 3)
    else:
        out.notes.append(f"quality did not return to its pre-failover level (MOS after "
                         f"{after.mos:.2f} vs {before.mos:.2f} before)" if after.mos is not None
                         and before.mos is not None else "quality after the failover was not measured")
    named = [i for i in interruptions if i.get("address_before")]
    if named:
        out.notes.append(f"after the failover your public address changed from {named[0]['address_before']} "
                         f"to {named[-1]['address_after']}: calls in progress drop and phones must "
                         "re-register")
    elif out.source_changed:
        out.notes.append("after the failover the far end saw the calls in a new session (a new "
                         "source address or port: a NAT rebinding, or the reflector restarted): "
                         "calls in progress drop and phones must re-register")
    out.interruptions = [dict(i, at_s=round((it.start_j) * rec.interval_ns / 1e9, 3))
                         for i, it in zip(interruptions, its)]
