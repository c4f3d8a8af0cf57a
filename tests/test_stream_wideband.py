"""A G.722 stream on an unimpaired loopback path is scored with the wideband
E-model (issue #18): the JSON names the model and its scale, no narrowband
approximation, and the figures agree with probes.voice.emodel on the measured delay."""

import pytest

from probes import stream
from probes.voice import emodel
from probes.reflector import StampReflector


@pytest.fixture
def reflector():
    r = StampReflector("127.0.0.1:0")
    r.start()
    yield r
    r.stop()


def _run(reflector, codec):
    host, port = reflector.address[:2]
    cfg = stream.StreamConfig(target=f"{host}:{port}", codec=codec, ptime_ms=20, duration_s=2.0, calls=1)
    return stream.run(cfg).to_dict()


def test_g722_scored_by_g107_1(reflector):
    d = _run(reflector, "g722")
    assert d["measured"] and d["loss_pct"]["up"] == 0 and d["loss_pct"]["down"] == 0
    assert d["emodel"] == "G.107.1" and d["r_scale"] == 129
    assert d["narrowband_approximation"] is False
    assert d["mos_provisional"] is False            # loss-free: only Ie,WB (published) is used
    s = emodel.score("g722", d["one_way_ms"], 0.0, jitter_buffer_ms=60, ptime_ms=20)
    assert d["r_factor"] == pytest.approx(s.r_factor, abs=1e-6)
    assert 113 < d["r_factor"] < 113.6                # 129 - 1.29 x 0.024 x (80 + one-way) - 13


def test_opus_says_provisional_and_g711_stays_narrowband(reflector):
    o = _run(reflector, "opus")
    assert o["emodel"] == "G.107.1" and o["mos_provisional"] and "Opus" in o["mos_note"]
    g = _run(reflector, "g711")
    assert g["emodel"] == "G.107" and g["r_scale"] == 100 and not g["mos_provisional"]
