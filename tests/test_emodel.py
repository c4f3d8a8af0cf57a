"""E-model against the worked values of docs/contract.md §4, computed by hand.

G.711 + PLC (Ie 0, Bpl 25.1), BurstR 1:
  d = 80, Ppl 0:  Id = 1.92, Ie,eff = 0          -> R = 91.28, MOS 4.369
  d = 120, Ppl 2: Id = 2.88, Ie,eff = 190/27.1   -> R = 83.31, MOS 4.14
  d = 100, Ppl 1: Id = 2.40, Ie,eff = 95/26.1    -> R = 87.16, MOS 4.26
  d = 0:          R = 93.2                       -> MOS 4.409 (the ceiling)
"""

import pytest

from probes import emodel
from probes.codecs import get_codec


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
