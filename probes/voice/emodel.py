"""The E-model, reduced to the terms a packet network changes: ITU-T G.107 for
narrowband codecs, ITU-T G.107.1 (wideband, R up to 129) for G.722 and Opus.

Narrowband (G.107), the scale 0..100:

R = 93.2 - Id - Ie,eff            (default R0 - Is with A = 0)
Id = 0.024 d + 0.11 (d - 177.3) H(d - 177.3)
Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl)
BurstR = 1 / (p + q) from the two-state Markov fit of the measured loss pattern
(probes/voice/losstime.py): 1 for random loss, above 1 when losses come in runs
MOS = 1 + 0.035 R + R (R - 60)(100 - R) 7e-6, clamped to [1, 4.5]

d is the mouth-to-ear delay in ms: one-way network delay + de-jitter buffer +
packetisation. Ppl is the packet loss in percent *as the listener hears it*:
network loss plus packets that arrived too late for the jitter buffer.
Codec constants live in :mod:`probes.voice.codecs`.

Worked values (G.711 + PLC): d = 80, Ppl 0 -> R 91.3, MOS 4.37;
d = 120, Ppl 2 -> R 83.3, MOS 4.14; d = 100, Ppl 1 -> R 87.2, MOS 4.26.

Wideband (G.107.1), the scale 0..129:

R_WB = 129 - Id_WB - Ie,eff,WB
Id_WB = 1.29 * Id                       (the narrowband delay term on the 129 scale)
Ie,eff,WB = Ie,WB + (129 - Ie,WB) * Ppl / (Ppl / BurstR + Bpl)
MOS = the G.107 formula applied to R_WB / 1.29   (G.107.1 Annex A)

129 is G.107.1's ceiling (a perfect wideband connection; G.107's 93.2 is a
perfect narrowband one). The loss term is G.107's with 95 replaced by 129, as
G.107.1 clause 7.5 does. The delay term: G.107.1 keeps G.107's delay
impairments; we carry our reduced narrowband term (0.024 d + ...) onto the
wideband scale by the factor 1.29 that relates the two scales, which is our
reading, stated in docs/measurement.md. Codec constants (Ie,WB, Bpl) and their
sources live in :mod:`probes.voice.codecs`; where no value is published the score
is flagged ``provisional``.

Worked values (G.722, Ie,WB 13, loss-free): d = 80 -> R_WB = 129 - 1.29 * 1.92
- 13 = 113.52, R_WB / 1.29 = 88.0, MOS 4.29. A G.722 MOS is a wideband
listener's rating relative to the best wideband call: compare R with the
ceiling of its own scale (``r_scale``), not MOS across bands.
"""

from __future__ import annotations

from dataclasses import dataclass

from probes.voice.codecs import Codec, get_codec

R_DEFAULT = 93.2          # G.107: a perfect narrowband connection
R_WB_MAX = 129.0          # G.107.1: a perfect wideband connection
WB_SCALE = R_WB_MAX / 100.0   # 1.29, relates the two scales (G.107.1 Annex A)

G107, G107_1 = "G.107", "G.107.1"


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


def effective_equipment_impairment_wb(ie_wb: float, bpl: float, ppl_pct: float,
                                      burst_ratio: float = 1.0) -> float:
    """Ie,eff,WB (G.107.1): the wideband codec impairment grown by loss (Ppl in percent)."""
    ppl = min(max(ppl_pct, 0.0), 100.0)
    if ppl == 0.0:
        return ie_wb
    return ie_wb + (R_WB_MAX - ie_wb) * ppl / (ppl / burst_ratio + bpl)


def r_factor_wb(d_ms: float, ppl_pct: float, ie_wb: float, bpl: float,
                burst_ratio: float = 1.0) -> float:
    """R on the wideband scale 0..129 (G.107.1)."""
    return R_WB_MAX - WB_SCALE * delay_impairment(d_ms) - effective_equipment_impairment_wb(
        ie_wb, bpl, ppl_pct, burst_ratio)


def mos_from_r_wb(r_wb: float) -> float:
    """G.107.1 Annex A: MOS from a wideband R via R / 1.29 and the G.107 formula."""
    return mos_from_r(r_wb / WB_SCALE)


@dataclass(frozen=True)
class Score:
    r_factor: float          # on the model's scale: 0..100 (G.107) or 0..129 (G.107.1)
    mos: float
    d_ms: float
    ppl_pct: float
    emodel: str = G107       # which model scored it: "G.107" or "G.107.1"
    r_scale: float = 100.0   # the top of its R scale
    provisional: bool = False   # a codec constant it needed is not published
    note: str = ""           # why it is provisional, for reports


def score(codec: Codec | str, one_way_ms: float, ppl_pct: float, *,
          jitter_buffer_ms: float = 60.0, ptime_ms: float = 20.0,
          burst_ratio: float = 1.0) -> Score:
    """Score one listening direction of a call, with the model its codec's band needs."""
    c = get_codec(codec) if isinstance(codec, str) else codec
    d = mouth_to_ear_ms(one_way_ms, jitter_buffer_ms, ptime_ms)
    if c.wideband is None:
        r = r_factor(d, ppl_pct, c.ie, c.bpl, burst_ratio)
        return Score(r_factor=r, mos=mos_from_r(r), d_ms=d, ppl_pct=ppl_pct)
    wb = c.wideband
    r = r_factor_wb(d, ppl_pct, wb.ie_wb, wb.bpl, burst_ratio)
    # a missing published constant matters only where it is used: Bpl only under loss
    why = [wb.ie_note] if wb.ie_note else []
    if wb.bpl_note and ppl_pct > 0:
        why.append(wb.bpl_note)
    return Score(r_factor=r, mos=mos_from_r_wb(r), d_ms=d, ppl_pct=ppl_pct, emodel=G107_1,
                 r_scale=R_WB_MAX, provisional=bool(why), note="; ".join(why))


def max_mos(codec: Codec | str) -> float:
    """The ceiling a codec reaches at d = 0 and no loss (4.41 for G.711)."""
    return score(codec, 0.0, 0.0, jitter_buffer_ms=0.0, ptime_ms=0.0).mos
