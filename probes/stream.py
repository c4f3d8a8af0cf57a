"""Voice-stream probe: N emulated calls against a STAMP reflector.

A thin layer over :mod:`probes.engine.core` that follows the probe convention of
docs/internals.md: ``StreamConfig`` in, ``StreamResult`` out (JSON exactly as
docs/contract.md §5, plus a few extra keys), ``run(config, progress, stop)`` never
raising for network trouble.

MOS per listening direction from that direction's loss + late packets and
d = RTT/2 + de-jitter buffer + ptime; ``mos`` is the worse of the two.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from probes.wire import stamp
from probes.addr import dscp_value
from probes.engine.core import MAX_PACKETS_PER_RUN, Engine, EngineConfig, check_call_basics
from probes.engine.run import EngineResult
from probes.events import Emitter, ProgressCallback
from probes.result import AddressError, BadInput


@dataclass
class StreamConfig:
    target: str                          # HOST:PORT of a STAMP reflector
    codec: str = "g711"
    ptime_ms: int = 20
    duration_s: float = 10.0
    calls: int = 1
    dscp: int | str | None = "ef"        # number, PHB name, or None for unmarked
    key_file: str | None = None          # pre-shared key (authenticated mode)
    key: bytes | None = None             # alternatively the key itself
    source: str | None = None
    interface: str | None = None
    jitter_buffer_ms: float = 60.0
    timeout_s: float = 3.0


class StreamResult(EngineResult):
    """Same fields as :class:`probes.engine.core.EngineResult` (see its ``to_dict``)."""


def validate(config: StreamConfig) -> tuple[EngineConfig, bytes | None]:
    """Check arguments; a BadInput (probes.result) naming the config field for bad input."""
    codec = check_call_basics(config.target, config.codec, config.ptime_ms)
    if not 0 < config.duration_s <= 86400:
        raise BadInput(f"duration_s {config.duration_s:g}: expected more than 0 s, at most 86400 s",
                       field="duration_s")
    if not 1 <= config.calls <= 10000:
        raise BadInput(f"calls {config.calls}: expected 1-10000", field="calls")
    packets = config.calls * max(1, round(config.duration_s * 1000 / config.ptime_ms))
    if packets > MAX_PACKETS_PER_RUN:
        raise BadInput(f"calls {config.calls}: {config.calls} calls x {config.duration_s:g} s is {packets} "
                       f"packets; at most {MAX_PACKETS_PER_RUN} per run (fewer calls or a shorter duration)",
                       field="calls")
    if config.jitter_buffer_ms < 0:
        raise BadInput(f"jitter_buffer_ms {config.jitter_buffer_ms:g}: expected >= 0 ms", field="jitter_buffer_ms")
    if config.timeout_s <= 0:
        raise BadInput(f"timeout_s {config.timeout_s:g}: expected > 0 s", field="timeout_s")
    try:
        dscp = None if config.dscp is None else dscp_value(config.dscp)
    except AddressError as exc:
        raise BadInput(f"dscp: {exc}", field="dscp") from None
    key = stamp.config_key(config.key, config.key_file)
    eng = EngineConfig(target=config.target, codec=codec.name, ptime_ms=config.ptime_ms, dscp=dscp,
                       key=key, source=config.source, interface=config.interface,
                       jitter_buffer_ms=config.jitter_buffer_ms, timeout_s=config.timeout_s)
    return eng, key


def run(config: StreamConfig, progress: ProgressCallback | None = None,
        stop: threading.Event | None = None) -> StreamResult:
    """Measure; returns a StreamResult. Raises ValueError only for bad arguments."""
    eng_cfg, _key = validate(config)
    emit = Emitter("stream", progress)
    emit("start", f"{config.calls} x {eng_cfg.codec}/{config.ptime_ms} ms to {config.target} "
                  f"for {config.duration_s:g} s")

    def relay(ev):  # engine progress re-labelled as the stream probe's
        emit(ev.kind, ev.message, ev.fraction, **ev.data)

    res = Engine(eng_cfg).run(calls=config.calls, duration_s=config.duration_s,
                              progress=relay, stop=stop)
    out = StreamResult(**vars(res))
    emit("done", "measured" if out.measured else "not measured")
    return out
