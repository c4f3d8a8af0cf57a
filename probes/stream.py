"""Voice-stream probe: N emulated calls against a STAMP reflector.

A thin layer over :mod:`probes.engine` that follows the probe convention of
docs/internals.md: ``StreamConfig`` in, ``StreamResult`` out (JSON exactly as
docs/contract.md §5, plus a few extra keys), ``run(config, progress, stop)`` never
raising for network trouble.

MOS per listening direction from that direction's loss + late packets and
d = RTT/2 + de-jitter buffer + ptime; ``mos`` is the worse of the two.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from probes import stamp
from probes.addr import dscp_value, parse_hostport
from probes.codecs import get_codec
from probes.engine import MAX_PACKETS_PER_RUN, Engine, EngineConfig
from probes.enginerun import EngineResult
from probes.events import Emitter, ProgressCallback


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
    """Same fields as :class:`probes.engine.EngineResult` (see its ``to_dict``)."""


def validate(config: StreamConfig) -> tuple[EngineConfig, bytes | None]:
    """Check arguments; ValueError with a one-line message for bad input."""
    parse_hostport(config.target)
    try:
        codec = get_codec(config.codec)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    if config.ptime_ms not in codec.ptimes_ms:
        raise ValueError(f"ptime {config.ptime_ms} ms: {codec.name} is used with "
                         f"{', '.join(map(str, codec.ptimes_ms))} ms")
    if not 0 < config.duration_s <= 86400:
        raise ValueError(f"duration {config.duration_s} s: expected more than 0 s")
    if not 1 <= config.calls <= 10000:
        raise ValueError(f"calls {config.calls}: expected 1-10000")
    packets = config.calls * max(1, round(config.duration_s * 1000 / config.ptime_ms))
    if packets > MAX_PACKETS_PER_RUN:
        raise ValueError(f"{config.calls} calls x {config.duration_s:g} s is {packets} packets; at most "
                         f"{MAX_PACKETS_PER_RUN} per run (fewer calls or a shorter duration)")
    if config.jitter_buffer_ms < 0:
        raise ValueError("jitter buffer must be >= 0 ms")
    if config.timeout_s <= 0:
        raise ValueError("timeout must be > 0 s")
    dscp = None if config.dscp is None else dscp_value(config.dscp)
    key = config.key
    if key is None and config.key_file:
        key = stamp.load_key(config.key_file)
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
