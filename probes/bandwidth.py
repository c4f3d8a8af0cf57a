"""Bandwidth probe: throughput down and up, and latency under load.

Backends:

* ``reflector``: our TCP service on a cutover reflector (probes/reflector/bwservice.py),
  N parallel streams per direction, payload counted at the receiver, the
  first ``omit_s`` seconds of TCP slow start left out (like ``iperf3 -O``).
  ``congestion`` sets TCP_CONGESTION on every data socket, ours (upload) and
  the reflector's (download): the default BBR keeps queues short and hides the
  bufferbloat a loss-based sender (cubic, reno: most phones, PCs, servers)
  runs into.
* ``speedtest``: speedtest.net servers through speedtest-cli's Python API.
* ``mini``: a self-hosted Speedtest Mini server (or a cutover reflector's
  built-in Mini endpoint), without speedtest.net (probes/reflector/speedtest_backend.py).

Latency under load: a sampler (probes/loadlatency.py: STAMP to the
reflector, or ICMP to the speedtest server) runs throughout and files RTTs
under idle / down / up. ``increase_p50`` is the larger of the two rises of the
median RTT over idle, graded A+..F with one plain sentence.

Failure semantics: a stream that breaks (reflector killed, reset, timeout)
ends that direction; what was measured before is kept, ``partial`` is set and
the cause is in ``errors``. ``measured`` is False when no direction produced
a figure.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from probes import addr
from probes import bwclient
from probes import loadlatency as LL
from probes.events import Emitter, ProgressCallback
from probes.result import AddressError, BadInput, add_error, clean, local_error

BACKENDS = ("reflector", "speedtest", "mini")
DIRECTIONS = ("down", "up", "both")


@dataclass
class BandwidthConfig:
    backend: str = "reflector"
    target: str | None = None            # reflector HOST:PORT
    mini_url: str | None = None
    server_id: str | None = None         # speedtest.net server id
    duration_s: float = 10.0             # measured time per direction (after omit_s)
    streams: int = 4
    direction: str = "both"
    congestion: str | None = None        # e.g. "cubic", "reno"; None: system default
    omit_s: float = 1.0                  # slow start left out (reflector backend)
    idle_s: float = 2.0                  # idle RTT sampling before the load
    latency: bool = True
    latency_interval_ms: float = 20.0
    key_file: str | None = None
    source: str | None = None
    interface: str | None = None
    timeout_s: float = 10.0

    def validate(self) -> None:
        """Bad input -> BadInput (probes.result) naming the config field (exit 2)."""
        if self.backend not in BACKENDS:
            raise BadInput(f"backend {self.backend!r}: expected one of {', '.join(BACKENDS)}", field="backend")
        if self.direction not in DIRECTIONS:
            raise BadInput(f"direction {self.direction!r}: expected down, up or both", field="direction")
        if not 0.5 <= self.duration_s <= 300:
            raise BadInput(f"duration_s {self.duration_s:g}: expected 0.5 to 300 seconds", field="duration_s")
        if not 1 <= self.streams <= 16:
            raise BadInput(f"streams {self.streams}: expected 1 to 16", field="streams")
        if not 0 <= self.omit_s <= 30:
            raise BadInput(f"omit_s {self.omit_s:g}: expected 0 to 30 seconds", field="omit_s")
        if self.timeout_s <= 0:
            raise BadInput(f"timeout_s {self.timeout_s:g}: expected a positive number of seconds",
                           field="timeout_s")
        # the latency-under-load sampler (probes/loadlatency.py) takes these two
        if not 0 <= self.idle_s <= 60:
            raise BadInput(f"idle_s {self.idle_s:g}: expected 0 to 60 seconds", field="idle_s")
        if not 1 <= self.latency_interval_ms <= 1000:
            raise BadInput(f"latency_interval_ms {self.latency_interval_ms:g}: expected 1 to 1000 ms",
                           field="latency_interval_ms")
        if self.backend == "reflector":
            if not self.target:
                raise BadInput("target: a reflector HOST:PORT is required for the reflector backend",
                               field="target")
            try:
                addr.parse_hostport(self.target)
            except AddressError as exc:
                raise AddressError(f"target: {exc}", field="target") from None
        if self.backend == "mini":
            if not self.mini_url or not self.mini_url.startswith(("http://", "https://")):
                raise BadInput(f"mini_url {self.mini_url!r}: expected a URL like http://host:port/",
                               field="mini_url")
        if self.server_id is not None and not str(self.server_id).isdigit():
            raise BadInput(f"server_id {self.server_id!r}: expected a numeric speedtest.net server id",
                           field="server_id")


@dataclass
class BandwidthResult:
    backend: str
    target: str | None
    down_mbps: float | None = None
    up_mbps: float | None = None
    streams: int = 0
    duration_s: float = 0.0
    omit_s: float = 0.0
    direction: str = "both"
    congestion: str | None = None
    latency_ms: dict = field(default_factory=lambda: {
        "idle_p50": None, "down_load_p50": None, "up_load_p50": None, "increase_p50": None})
    latency_method: str | None = None
    bufferbloat: dict = field(default_factory=lambda: {"grade": None, "summary": "latency under load was not measured"})
    bytes: dict = field(default_factory=lambda: {"down": 0, "up": 0})
    window_s: dict = field(default_factory=lambda: {"down": None, "up": None})
    server: dict | None = None
    speedtest_cli: dict | None = None      # speedtest-cli's own figures (speedtest/mini backends)
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    partial: bool = False
    measured: bool = False
    probe: str = "bandwidth"

    def to_dict(self) -> dict:
        d = clean(self)
        for key in ("server", "speedtest_cli"):
            if getattr(self, key) is None:
                d.pop(key)
        return d


def summarise_latency(phases: dict[str, LL.PhaseStats]) -> tuple[dict, dict]:
    """(latency_ms, bufferbloat) from per-phase RTT samples. Pure."""
    s = {k: v.summary() for k, v in phases.items()}
    idle = s.get("idle", {}).get("p50")
    down = s.get("down", {}).get("p50")
    up = s.get("up", {}).get("p50")
    rises = [v - idle for v in (down, up) if v is not None and idle is not None]
    inc = max(rises) if rises else None
    lat = {"idle_p50": idle, "down_load_p50": down, "up_load_p50": up, "increase_p50": inc,
           "down_increase_p50": down - idle if down is not None and idle is not None else None,
           "up_increase_p50": up - idle if up is not None and idle is not None else None,
           "phases": s}
    bloat = {"grade": LL.grade(max(0.0, inc) if inc is not None else None),
             "summary": LL.grade_sentence(idle, down, up)}
    return lat, bloat


def run(config: BandwidthConfig, progress: ProgressCallback | None = None,
        stop: threading.Event | None = None) -> BandwidthResult:
    config.validate()
    stop = stop or threading.Event()
    emit = Emitter("bandwidth", progress)
    res = BandwidthResult(backend=config.backend,
                          target=config.target if config.backend == "reflector" else config.mini_url,
                          streams=config.streams, duration_s=config.duration_s,
                          omit_s=config.omit_s,
                          direction=config.direction, congestion=config.congestion)
    from probes.wire.stamp import config_key
    key = config_key(None, config.key_file)      # KeyFileError: bad input (exit 2)
    if config.backend == "reflector":
        _run_reflector(config, res, key, emit, stop)
    else:
        _run_speedtest(config, res, emit, stop)
    res.measured = res.down_mbps is not None or res.up_mbps is not None
    wanted = {"down": ["down"], "up": ["up"], "both": ["down", "up"]}[config.direction]
    missing = [d for d in wanted if getattr(res, f"{d}_mbps") is None]
    res.partial = res.measured and (bool(missing) or stop.is_set() or bool(res.errors))
    if stop.is_set() and "stopped before the end" not in " ".join(res.errors):
        local_error(res, "stopped before the end")
    emit("done", _summary_line(res))
    return res


def _summary_line(res: BandwidthResult) -> str:
    f = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
    return f"down {f(res.down_mbps)} Mbit/s, up {f(res.up_mbps)} Mbit/s"


def _start_sampler(sampler, res: BandwidthResult, emit: Emitter, idle_s: float,
                   stop: threading.Event):
    try:
        sampler.start()
    except OSError as exc:
        res.notes.append(f"latency under load not measured: {exc.strerror or exc}")
        return None
    res.latency_method = sampler.method
    emit("start", f"idle latency ({idle_s:g} s)")
    stop.wait(idle_s)
    return sampler


def _finish_sampler(sampler, res: BandwidthResult) -> None:
    if sampler is None:
        return
    phases = sampler.stop()
    res.latency_ms, res.bufferbloat = summarise_latency(phases)
    if sampler.error:
        res.notes.append(sampler.error)
    idle = phases.get("idle")
    if idle is not None and idle.sent and not idle.rtts_ms:
        res.notes.append(f"no {sampler.method.upper()} replies while idle: latency under load not measured "
                         "(reflector without STAMP, firewall, or ICMP filtered)")


def _run_reflector(config: BandwidthConfig, res: BandwidthResult, key: bytes | None,
                   emit: Emitter, stop: threading.Event) -> None:
    assert config.target is not None          # validate(): the reflector backend needs one
    target = addr.parse_hostport(config.target)
    sampler = None
    if config.latency:
        try:
            sampler = LL.StampSampler(target, key=key, source=config.source, interface=config.interface,
                                      interval_s=config.latency_interval_ms / 1000)
        except addr.ResolveError as exc:
            res.errors.append(str(exc))        # nothing else will work either
            return
        except OSError as exc:
            res.notes.append(f"latency under load not measured: {exc.strerror or exc}")
        if sampler is not None:
            sampler = _start_sampler(sampler, res, emit, config.idle_s, stop)
    try:
        for direction in ("down", "up"):
            if config.direction not in (direction, "both") or stop.is_set():
                continue
            if sampler:
                sampler.phase(direction)
            emit("start", f"{direction}load: {config.streams} TCP stream(s), "
                          f"{config.omit_s + config.duration_s:.0f} s")
            ticker = _Ticker(emit, direction, config.omit_s + config.duration_s, stop)
            out = bwclient.transfer(target, direction, config.streams, config.omit_s + config.duration_s,
                                    key=key, source=config.source, interface=config.interface,
                                    congestion=config.congestion, stop=stop, timeout_s=config.timeout_s)
            ticker.done()
            if sampler:
                sampler.phase(f"after_{direction}")     # drain time is not "under load"
            mbps, window, nbytes = bwclient.window_mbps([s.samples for s in out.streams], config.omit_s)
            res.bytes[direction] = nbytes
            res.window_s[direction] = window
            res.errors.extend(out.errors)
            res.gaps.extend(out.gaps)
            if direction == "down" and config.congestion and any(s.cc_applied is False for s in out.streams):
                res.notes.append(f"the reflector could not apply congestion control {config.congestion!r} "
                                 "to its sending sockets; download used its default")
            if mbps is not None:
                setattr(res, f"{direction}_mbps", mbps)
                if out.errors:
                    res.notes.append(f"{direction}: figure covers only {window:.1f} s before the failure")
            emit("progress", f"{direction} {mbps if mbps is not None else float('nan'):.1f} Mbit/s",
                 fraction=1.0, direction=direction, mbps=mbps)
            if out.errors and all(s.error for s in out.streams) and not any(len(s.samples) > 1 for s in out.streams):
                break        # nothing works (refused, key, unreachable): do not try the other way
            if any("reflector" in e and "closed" in e for e in out.errors):
                break        # the reflector went away mid-test
            if sampler and not stop.is_set():
                stop.wait(min(1.0, config.idle_s))   # let the queue drain between directions
    finally:
        _finish_sampler(sampler, res)


class _Ticker:
    """Progress events once a second during a timed transfer."""

    def __init__(self, emit: Emitter, label: str, total_s: float, stop: threading.Event) -> None:
        self._done = threading.Event()
        self._t = threading.Thread(target=self._run, args=(emit, label, total_s, stop), daemon=True)
        self._t.start()

    def _run(self, emit, label, total_s, stop) -> None:
        t0 = time.monotonic()
        while not self._done.wait(1.0) and not stop.is_set():
            frac = min(0.99, (time.monotonic() - t0) / max(total_s, 0.1))
            emit("progress", label, fraction=frac)

    def done(self) -> None:
        self._done.set()


def _run_speedtest(config: BandwidthConfig, res: BandwidthResult, emit: Emitter,
                   stop: threading.Event) -> None:
    from probes.reflector import speedtest_backend as SB
    source = config.source
    if config.interface and not source:
        try:
            source = SB.interface_address(config.interface)
        except OSError as exc:              # our interface has no address: a gap
            add_error(res, exc, str(exc.strerror or exc))
            return
    sampler_box: dict = {}

    def on_phase(name: str, host: str | None) -> None:
        # runs in speedtest's worker thread; the server (hence the ICMP target)
        # is known only now, after speedtest-cli picked it
        if name in ("down", "up"):
            emit("start", f"{name}load via speedtest-cli ({config.duration_s:.0f} s)")
            if "s" not in sampler_box and config.latency and host:
                sampler_box["s"] = _start_sampler(
                    LL.IcmpSampler(host, source=source, interface=config.interface),
                    res, emit, config.idle_s, stop)
        if sampler_box.get("s"):
            sampler_box["s"].phase(name)

    emit("start", "speedtest: " + (f"Speedtest Mini {config.mini_url}" if config.backend == "mini"
                                   else "speedtest.net configuration and servers"))
    out = SB.run_speedtest(mini_url=config.mini_url if config.backend == "mini" else None,
                           server_id=config.server_id, duration_s=config.duration_s,
                           omit_s=config.omit_s, threads=config.streams, congestion=config.congestion,
                           direction=config.direction, source=source,
                           timeout_s=config.timeout_s, stop=stop, on_phase=on_phase)
    _finish_sampler(sampler_box.get("s"), res)
    res.down_mbps, res.up_mbps = out.down_mbps, out.up_mbps
    res.bytes = {"down": out.bytes_received, "up": out.bytes_sent}
    res.window_s = dict(out.window_s)
    res.speedtest_cli = {"down_mbps": out.cli_down_mbps, "up_mbps": out.cli_up_mbps,
                         "ping_ms": out.ping_ms}
    res.server = out.server or None
    res.errors.extend(out.errors)
    res.gaps.extend(out.gaps)
    res.notes.extend(out.notes)

