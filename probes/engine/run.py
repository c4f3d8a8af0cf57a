"""One engine run's record: the per-packet arrays the loop fills, the run's
clock mapping and schedule, and the result the analysis makes of them.

Why a module of its own: the loop (:mod:`probes.engine.core`) writes a :class:`Run`
and the analysis (:mod:`probes.engine.analysis`) reads it; both import this
module and neither imports the other. Everything that belongs to one run
lives on its ``Run`` (nothing on the :class:`probes.engine.core.Engine`), so one
engine can run twice at once (two threads, two runs; tested).
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

from probes.voice.codecs import Codec, get_codec


@dataclass
class EngineResult:
    target: str
    codec: str
    ptime_ms: int
    calls: int
    duration_s: float
    payload_b: int
    offered_kbps: float
    direction_split: bool | None = None
    packets: dict[str, int | None] = field(default_factory=dict)   # reflected: None without a split
    loss_pct: dict[str, float] = field(default_factory=dict)
    rtt_ms: dict[str, float] = field(default_factory=dict)
    jitter_ms: dict[str, float] = field(default_factory=dict)
    ipdv_ms: dict[str, dict[str, float]] = field(default_factory=lambda: {"up": {}, "down": {}, "rtt": {}})
    reorder_pct: float = 0.0
    duplicates: int = 0
    late_pct: float = 0.0
    late_pct_dir: dict[str, float] = field(default_factory=dict)
    dscp: dict[str, Any] = field(default_factory=dict)
    mos: float | None = None
    mos_up: float | None = None
    mos_down: float | None = None
    r_factor: float | None = None
    emodel: str | None = None             # "G.107" (narrowband) or "G.107.1" (wideband)
    r_scale: float | None = None          # top of r_factor's scale: 100 or 129
    mos_provisional: bool = False         # a codec constant the score needed is not published
    mos_note: str = ""
    one_way_ms: float | None = None
    sender: dict[str, Any] = field(default_factory=dict)
    # loss in time (probes/voice/losstime.py): per direction "up", "down" and "rtt" (round trip)
    max_gap_ms: dict[str, float | None] = field(default_factory=dict)
    burst_ratio: dict[str, float | None] = field(default_factory=dict)
    bursts: dict[str, dict | None] = field(default_factory=dict)
    worst_window: dict[str, dict] = field(default_factory=dict)
    restarts: list[dict] = field(default_factory=list)      # far-end session restarts seen mid-run
    source_addresses: list[dict] = field(default_factory=list)  # our address as the far end saw it
    interruptions: list[dict] = field(default_factory=list)  # round-trip silences (losstime)
    replies: dict[str, int] = field(default_factory=dict)   # datagrams back: used, short, unusable
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    partial: bool = False
    measured: bool = False

    def to_dict(self) -> dict:
        return {
            "probe": "stream", "target": self.target, "codec": self.codec,
            "ptime_ms": self.ptime_ms, "calls": self.calls, "duration_s": self.duration_s,
            "direction_split": self.direction_split, "packets": self.packets,
            "loss_pct": self.loss_pct, "rtt_ms": self.rtt_ms, "jitter_ms": self.jitter_ms,
            "ipdv_ms": self.ipdv_ms, "reorder_pct": self.reorder_pct,
            "duplicates": self.duplicates, "late_pct": self.late_pct, "dscp": self.dscp,
            "mos": self.mos, "r_factor": self.r_factor, "mos_up": self.mos_up,
            "mos_down": self.mos_down, "emodel": self.emodel, "r_scale": self.r_scale,
            "mos_provisional": self.mos_provisional, "mos_note": self.mos_note,
            "narrowband_approximation": (self.emodel == "G.107" and self.codec is not None
                                         and get_codec(self.codec).wideband is not None),
            "sender": self.sender, "errors": self.errors, "gaps": self.gaps,
            "partial": self.partial, "measured": self.measured,
            "payload_b": self.payload_b, "offered_kbps": self.offered_kbps,
            "late_pct_dir": self.late_pct_dir, "one_way_ms": self.one_way_ms, "notes": self.notes,
            "max_gap_ms": self.max_gap_ms, "burst_ratio": self.burst_ratio, "bursts": self.bursts,
            "worst_window": self.worst_window, "restarts": self.restarts,
            "interruptions": self.interruptions, "replies": self.replies,
            "source_addresses": self.source_addresses,
        }


class Run:
    """One run: per-packet arrays indexed by packet ``j`` (call ``j % calls``,
    number ``j // calls``), the counters the loop keeps, and the constants the
    analysis needs (schedule, clock mapping, codec and buffer)."""

    def __init__(self, calls: int, per_call: int, *, codec: Codec, ptime_ms: int,
                 jitter_buffer_ms: float, dscp: int | None, ttl: bool = False) -> None:
        total = calls * per_call
        self.calls, self.per_call, self.total = calls, per_call, total
        self.codec, self.ptime_ms = codec, ptime_ms
        self.jitter_buffer_ms, self.dscp = jitter_buffer_ms, dscp
        self.interval_ns = ptime_ms * 1_000_000 / calls    # packet j is due at t0 + j * interval_ns
        self.t0 = 0                                       # set by the loop (monotonic ns)
        # one fixed mapping monotonic -> wall clock (NTP) for the whole run, set by the loop
        self.mono0 = self.wall0 = self.ntp0 = 0
        self.rx_timestamps: str | None = None             # "kernel" or "user"
        self.send_mode: str | None = None                 # "gso" or "per-packet"
        self.sent = 0
        self.elapsed_s = 0.0
        self.tx = array("q", bytes(8 * total))       # actual send time, ns (monotonic)
        self.rx = array("q", bytes(8 * total))       # receive time, ns (monotonic); 0 = not received
        self.t2 = array("Q", bytes(8 * total))       # reflector receive timestamp (NTP)
        self.t3 = array("Q", bytes(8 * total))       # reflector transmit timestamp (NTP)
        self.rseq = array("q", [-1]) * total         # reflector sequence number
        self.order = array("q")                       # j in our arrival order
        self.cos = array("i", [-1]) * total          # Class of Service TLV value of the reply; -1 none
        self.tos = array("h", [-1]) * total          # TOS byte the reply arrived with; -1 unknown
        # TTL / hop limit the reply arrived with (-1 unknown), only when asked for
        self.ttl = array("h", [-1]) * total if ttl else None
        self.dscp2 = [0] * 64                         # DSCP the reflector saw (CoS TLV), counts
        self.tos_down = [0] * 256                     # TOS byte of the replies we received
        self.duplicates = 0
        self.foreign = 0                              # datagrams back that are no reply of this run
        self.foreign_sample: tuple[int, bytes] | None = None   # (length, first octets) of the first
        self.short = 0                                # 38-octet TWAMP-Light replies used
        self.no_ssid = 0                              # replies with a zero SSID field (one call: used)
        self.rx_dropped = 0
        self.stateless_votes = 0
        self.stateful_votes = 0
        self.tail_count: dict[int, int] = {}         # call -> reflector's count (tail probe)
        self.locations: list[tuple[int, bytes]] = []  # (j, Location TLV value) at each change

    def note_foreign(self, buf: bytes | bytearray, n: int) -> None:
        """Count one datagram that came back but is no reply to this run (rare path)."""
        if self.foreign_sample is None:
            self.foreign_sample = (n, bytes(buf[:min(n, 16)]))
        self.foreign += 1
