"""E-model against the worked values of docs/contract.md §4, computed by hand.

G.711 + PLC (Ie 0, Bpl 25.1), BurstR 1:
  d = 80, Ppl 0:  Id = 1.92, Ie,eff = 0          -> R = 91.28, MOS 4.369
  d = 120, Ppl 2: Id = 2.88, Ie,eff = 190/27.1   -> R = 83.31, MOS 4.14
  d = 100, Ppl 1: Id = 2.40, Ie,eff = 95/26.1    -> R = 87.16, MOS 4.26
  d = 0:          R = 93.2                       -> MOS 4.409 (the ceiling)
"""

import pytest

from probes.voice import emodel
from probes.voice.codecs import get_codec


def test_unimpaired_g711():
    s = emodel.score("g711", one_way_ms=0, ppl_pct=0, jitter_buffer_ms=60, ptime_ms=20)
    assert s.d_ms == 80
    assert s.r_factor == pytest.approx(91.28, abs=0.005)
    assert round(s.mos, 2) == 4.37


def test_forty_ms_two_pct():
    s = emodel.score("g711", one_way_ms=40, ppl_pct=2)
    assert s.r_factor == pytest.approx(93.2 - 2.88 - 190 / 27.1, abs=1e-9)
    assert round(s.r_factor, 1) == 83.3 and round(s.mos, 2) == 4.14


def test_d100_one_pct():
    r = emodel.r_factor(100, 1, 0, 25.1)
    assert round(r, 1) == 87.2
    assert round(emodel.mos_from_r(r), 2) == 4.26


def test_ceiling_and_clamps():
    assert round(emodel.max_mos("g711"), 2) == 4.41
    assert emodel.mos_from_r(-5) == 1.0
    assert emodel.mos_from_r(120) == 4.5


def test_delay_knee():
    # above 177.3 ms the 0.11 term applies: d = 277.3 -> 0.024*277.3 + 0.11*100
    assert emodel.delay_impairment(277.3) == pytest.approx(0.024 * 277.3 + 11.0)
    assert emodel.delay_impairment(177.3) == pytest.approx(0.024 * 177.3)


def test_g729_and_no_plc_contrast():
    # G.729A: Ie 11; at 1 % loss Ie,eff = 11 + 84 * 1 / (1 + 19) = 15.2
    assert emodel.effective_equipment_impairment(11, 19, 1) == pytest.approx(15.2)
    # G.711 without PLC (Bpl 4.3, G.113 App. I) loses about half a MOS point at 1 %, d = 80 ms:
    # Ie,eff 95/(1 + 25.1) = 3.64 -> R 87.64, MOS 4.28; 95/(1 + 4.3) = 17.92 -> R 73.36, MOS 3.75
    with_plc = emodel.mos_from_r(emodel.r_factor(80, 1, 0, 25.1))
    without = emodel.mos_from_r(emodel.r_factor(80, 1, 0, 4.3))
    assert 0.4 < with_plc - without < 0.6


def test_codec_table():
    assert get_codec("PCMU").name == "g711"
    assert get_codec("g711").rtp_bytes(20) == 172
    assert get_codec("g729").ie == 11
    with pytest.raises(KeyError):
        get_codec("g999")


# ---- wideband: G.107.1 for G.722 and Opus -------------------------------------------
# Hand calculations (G.722: Ie,WB 13, Bpl 25.1; R_WB = 129 - 1.29 Id - Ie,eff,WB;
# MOS = G.107 formula at R_WB / 1.29):
#   d = 80,  Ppl 0:  Id 1.92 -> 2.4768;  Ie,eff 13                   -> R 113.5232, R/1.29 88.0025, MOS 4.287
#   d = 120, Ppl 2:  Id 2.88 -> 3.7152;  Ie,eff 13 + 116*2/27.1 = 21.5609 -> R 103.7239, MOS 4.039
#   d = 277.3, Ppl 1: Id 0.024*277.3 + 11 = 17.6552 -> 22.7752; Ie,eff 13 + 116/26.1 = 17.4444
#                                                                      -> R 88.7803, MOS 3.541
#   d = 80,  Ppl 2, BurstR 2: Ie,eff 13 + 116*2/(1 + 25.1) = 21.8889  -> R 104.6343, MOS 4.065

WB_CASES = [
    # one_way_ms, ppl, burst_ratio, R_WB, MOS
    (0.0, 0.0, 1.0, 113.5232, 4.287),
    (40.0, 2.0, 1.0, 103.7239, 4.039),
    (197.3, 1.0, 1.0, 88.7803, 3.541),
    (0.0, 2.0, 2.0, 104.6343, 4.065),
]


@pytest.mark.parametrize("one_way,ppl,burst,r_wb,mos", WB_CASES)
def test_g722_scored_by_g107_1(one_way, ppl, burst, r_wb, mos):
    s = emodel.score("g722", one_way_ms=one_way, ppl_pct=ppl, jitter_buffer_ms=60, ptime_ms=20,
                     burst_ratio=burst)
    assert s.emodel == "G.107.1" and s.r_scale == 129
    assert s.r_factor == pytest.approx(r_wb, abs=1e-3)
    assert s.mos == pytest.approx(mos, abs=1e-3)


def test_g722_provisional_only_under_loss():
    # Ie,WB of G.722 is published (G.113 App. IV); its Bpl is not: only lossy scores lean on it
    clean = emodel.score("g722", 10, 0)
    lossy = emodel.score("g722", 10, 0.5)
    assert not clean.provisional and clean.note == ""
    assert lossy.provisional and "Bpl" in lossy.note


def test_opus_always_provisional():
    s = emodel.score("opus", 10, 0)
    assert s.emodel == "G.107.1" and s.provisional and "Opus" in s.note


def test_narrowband_stays_g107():
    s = emodel.score("g711", 0, 0)
    assert s.emodel == "G.107" and s.r_scale == 100 and not s.provisional
    assert emodel.score("g729", 0, 0).emodel == "G.107"


def test_wideband_scale_relations():
    # a perfect wideband connection is R 129 -> 100 on the G.107 scale -> MOS 4.5
    assert emodel.mos_from_r_wb(129) == 4.5
    # the loss term tends to 129 - Ie,WB as Ppl grows: R stays above 0 - delay only
    assert emodel.effective_equipment_impairment_wb(13, 25.1, 100) == pytest.approx(13 + 116 * 100 / 125.1)
    # G.722's ceiling (d = 0): R 116, MOS at 116 / 1.29
    assert emodel.max_mos("g722") == pytest.approx(emodel.mos_from_r(116 / 1.29))
