"""ITU-T G.107 E-model, reduced to the terms a packet network changes.

R = 93.2 - Id - Ie,eff            (default R0 - Is with A = 0)
Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)
Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)
BurstR = 1 / (p + q) from the two-state Markov fit of the measured loss pattern
(probes/losstime.py): 1 for random loss, above 1 when losses come in runs
MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6, clamped to [1, 4.5]

d is the mouth-to-ear delay in ms: one-way network delay + de-jitter buffer +
packetisation. Ppl is the packet loss in percent *as the listener hears it*:
network loss plus packets that arrived too late for the jitter buffer.
Codec constants live in :mod:`probes.codecs`.

Worked values (G.711 + PLC): d = 80, Ppl 0 -> R 91.3, MOS 4.37;
d = 120, Ppl 2 -> R 83.3, MOS 4.14; d = 100, Ppl 1 -> R 87.2, MOS 4.26.
"""

from __future__ import annotations

from dataclasses import dataclass

from probes.codecs import Codec, get_codec

R_DEFAULT = 93.2


def delay_impairment(d_ms: float) -> float:
    """Id from mouth-to-ear delay (ms)."""
    d = max(0.0, d_ms)
    extra = 0.11 * (d - 177.3) if d > 177.3 else 0.0
    return 0.024 * d + extra


def effective_equipment_impairment(ie: float, bpl: float, ppl_pct: float,
                                   burst_ratio: float = 1.0) -> float:
    """Ie,eff: codec impairment grown by packet loss (Ppl in percent)."""
    ppl = min(max(ppl_pct, 0.0), 100.0)
    if ppl == 0.0:
        return ie
    return ie + (95.0 - ie) * ppl / (ppl / burst_ratio + bpl)


def burst_ratio_for_model(measured: float | None) -> float:
    """The BurstR the E-model is given for a measured burst ratio: G.107 defines
    BurstR = 1 for random loss and > 1 for bursty loss; no loss (None) and
    patterns more regular than random (< 1, e.g. every 10th packet) count as 1."""
    return 1.0 if measured is None or measured < 1.0 else measured


def r_factor(d_ms: float, ppl_pct: float, ie: float, bpl: float,
             burst_ratio: float = 1.0) -> float:
    return R_DEFAULT - delay_impairment(d_ms) - effective_equipment_impairment(
        ie, bpl, ppl_pct, burst_ratio)


def mos_from_r(r: float) -> float:
    """G.107 Annex B mapping from R to MOS-CQE, clamped to [1, 4.5]."""
    if r <= 0:
        return 1.0
    if r >= 100:
        return 4.5
    mos = 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6
    return min(4.5, max(1.0, mos))


def mouth_to_ear_ms(one_way_ms: float, jitter_buffer_ms: float, ptime_ms: float) -> float:
    """d for the E-model: network one-way delay + de-jitter buffer + packetisation."""
    return one_way_ms + jitter_buffer_ms + ptime_ms


@dataclass(frozen=True)
class Score:
    r_factor: float
    mos: float
    d_ms: float
    ppl_pct: float


def score(codec: Codec | str, one_way_ms: float, ppl_pct: float, *,
          jitter_buffer_ms: float = 60.0, ptime_ms: float = 20.0,
          burst_ratio: float = 1.0) -> Score:
    """Score one listening direction of a call."""
    c = get_codec(codec) if isinstance(codec, str) else codec
    d = mouth_to_ear_ms(one_way_ms, jitter_buffer_ms, ptime_ms)
    r = r_factor(d, ppl_pct, c.ie, c.bpl, burst_ratio)
    return Score(r_factor=r, mos=mos_from_r(r), d_ms=d, ppl_pct=ppl_pct)


def max_mos(codec: Codec | str) -> float:
    """The ceiling a codec reaches at d = 0 and no loss (4.41 for G.711)."""
    c = get_codec(codec) if isinstance(codec, str) else codec
    return mos_from_r(r_factor(0.0, 0.0, c.ie, c.bpl))
