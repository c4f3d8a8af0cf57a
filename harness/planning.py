"""Planning math: what bandwidth the planned usage needs, and what a contract
can carry. Pure functions, no I/O.

Per-call bandwidth, one direction:
    bytes/packet = codec payload + RTP 12 + UDP 8 + IP (20 v4 / 40 v6)
                   [+ SRTP tag 10] [+ Ethernet 18 [+ VLAN 4] [+ preamble/gap 20]]
    kbit/s = bytes/packet * 8 * (1000 / ptime_ms) / 1000
G.711/20 ms: 200 B at IP = 80.0 kbit/s, 218 B Ethernet = 87.2, 238 B wire = 95.2.

Required per direction = (calls x per-call + video + other) x (1 + headroom).
Calls a contract carries = floor((contract / (1 + headroom) - video - other) / per-call):
the same budget read backwards, so "does it cover" and "how many calls" agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from probes.voice import codecs as C

LAYERS = ("ip", "ethernet", "wire")


def packet_bytes(codec: str, ptime_ms: int, layer: str = "ethernet", *, vlan: bool = False,
                 ipv6: bool = False, srtp: bool = False) -> int:
    """Bytes one voice packet occupies at ``layer``."""
    if layer not in LAYERS:
        raise ValueError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
    c = C.get_codec(codec)
    size = c.payload_bytes(ptime_ms) + C.RTP_HEADER_B + C.UDP_HEADER_B
    size += C.IPV6_HEADER_B if ipv6 else C.IPV4_HEADER_B
    if srtp:
        size += C.SRTP_AUTH_TAG_B
    if layer in ("ethernet", "wire"):
        size += C.ETHERNET_B + (C.VLAN_TAG_B if vlan else 0)
    if layer == "wire":
        size += C.WIRE_EXTRA_B
    return size


def per_call_kbps(codec: str, ptime_ms: int, layer: str = "ethernet", **adders: bool) -> float:
    """One call, one direction, in kbit/s (10^3 bit/s)."""
    if ptime_ms <= 0:
        raise ValueError("ptime_ms must be positive")
    return packet_bytes(codec, ptime_ms, layer, **adders) * 8 * (1000 / ptime_ms) / 1000


@dataclass
class CircuitPlan:
    name: str
    role: str
    provider: str
    contract_down_mbps: float
    contract_up_mbps: float
    covers_down: bool
    covers_up: bool
    covers: bool
    margin_down_mbps: float
    margin_up_mbps: float
    max_calls: int            # calls the weaker direction of the contract carries
    max_calls_down: int
    max_calls_up: int
    why: list[str] = field(default_factory=list)   # which direction falls short, by how much, and why


def explain(c: CircuitPlan, p: "Plan") -> list[str]:
    """Plain sentences: which direction falls short and by how much, and why a
    circuit carries fewer calls than planned (what is reserved before calls)."""
    out = []
    for label, contract, ok, margin in (("downstream", c.contract_down_mbps, c.covers_down, c.margin_down_mbps),
                                        ("upstream", c.contract_up_mbps, c.covers_up, c.margin_up_mbps)):
        if not ok:
            out.append(f"{label} {contract:g} Mbit/s < {p.required_up_mbps:.3f} Mbit/s needed: "
                       f"short by {-margin:.3f} Mbit/s")
    if c.max_calls < p.calls:
        weak = "upstream" if c.max_calls_up <= c.max_calls_down else "downstream"
        contract = c.contract_up_mbps if weak == "upstream" else c.contract_down_mbps
        usable = contract / (1 + p.headroom_pct / 100)
        fixed = p.video_mbps + p.other_mbps
        reserved = []
        if p.headroom_pct:
            reserved.append(f"{p.headroom_pct:g} % headroom leaves {usable:.3f} Mbit/s")
        if p.video_mbps:
            reserved.append(f"video takes {p.video_mbps:.3f}")
        if p.other_mbps:
            reserved.append(f"other traffic {p.other_mbps:.3f}")
        left = max(0.0, usable - fixed)
        head = f"carries {c.max_calls} of {p.calls} calls: {weak} {contract:g} Mbit/s"
        if reserved:
            head += ", of which " + ", ".join(reserved)
        out.append(f"{head}; {left:.3f} Mbit/s remain for calls at {p.per_call_kbps:.1f} kbit/s each")
    return out


@dataclass
class Plan:
    codec: str
    ptime_ms: int
    overhead: str
    calls: int
    per_call_kbps: float
    packet_bytes: int
    voice_mbps: float
    video_mbps: float
    other_mbps: float
    headroom_pct: float
    required_up_mbps: float
    required_down_mbps: float
    circuits: list[CircuitPlan] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def calls_fitting(contract_mbps: float, per_call_kbps_: float, fixed_mbps: float,
                  headroom_pct: float) -> int:
    """Calls that fit in ``contract_mbps`` beside ``fixed_mbps`` with headroom."""
    budget = contract_mbps / (1 + headroom_pct / 100) - fixed_mbps
    if budget <= 0 or per_call_kbps_ <= 0:
        return 0
    # small epsilon so an exact fit (e.g. 5.232 / 0.0872 = 60) is not lost to rounding
    return int(math.floor(budget * 1000 / per_call_kbps_ + 1e-9))


def plan(calls: int, codec: str, ptime_ms: int, *, layer: str = "ethernet", video_calls: int = 0,
         video_kbps: float = 0.0, other_mbps: float = 0.0, headroom_pct: float = 0.0,
         vlan: bool = False, ipv6: bool = False, srtp: bool = False,
         circuits: Sequence[tuple[str, str, str, float, float]] = ()) -> Plan:
    """Required bandwidth per direction; circuits as (name, role, provider, down, up)."""
    adders = dict(vlan=vlan, ipv6=ipv6, srtp=srtp)
    pc = per_call_kbps(codec, ptime_ms, layer, **adders)
    voice = calls * pc / 1000
    video = video_calls * video_kbps / 1000
    factor = 1 + headroom_pct / 100
    required = (voice + video + other_mbps) * factor
    out = Plan(codec=C.get_codec(codec).name, ptime_ms=ptime_ms, overhead=layer, calls=calls,
               per_call_kbps=pc, packet_bytes=packet_bytes(codec, ptime_ms, layer, **adders),
               voice_mbps=voice, video_mbps=video, other_mbps=other_mbps, headroom_pct=headroom_pct,
               required_up_mbps=required, required_down_mbps=required)
    for caveat in C.get_codec(codec).score_caveats():
        out.notes.append(f"{codec}: quality scores (G.107.1) are provisional: {caveat}")
    for name, role, provider, down, up in circuits:
        fixed = video + other_mbps
        md = calls_fitting(down, pc, fixed, headroom_pct)
        mu = calls_fitting(up, pc, fixed, headroom_pct)
        out.circuits.append(CircuitPlan(
            name=name, role=role, provider=provider, contract_down_mbps=down, contract_up_mbps=up,
            covers_down=down >= required - 1e-9, covers_up=up >= required - 1e-9,
            covers=down >= required - 1e-9 and up >= required - 1e-9,
            margin_down_mbps=down - required, margin_up_mbps=up - required,
            max_calls=min(md, mu), max_calls_down=md, max_calls_up=mu))
    for c in out.circuits:
        c.why = explain(c, out)
    return out


def plan_profile(profile) -> Plan:
    """Plan for a validated :class:`harness.profile.Profile`."""
    pl = profile.planned
    return plan(pl.calls, pl.codec, pl.ptime_ms, layer=pl.overhead, video_calls=pl.video_calls,
                video_kbps=pl.video_kbps, other_mbps=pl.other_mbps, headroom_pct=pl.headroom_pct,
                vlan=pl.vlan, ipv6=pl.ipv6, srtp=pl.srtp,
                circuits=[(c.name, c.role, c.provider, c.down_mbps, c.up_mbps) for c in profile.circuits])
