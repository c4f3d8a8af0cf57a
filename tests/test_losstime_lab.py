"""Loss in time through a real path: the engine against our reflector through
the impairment relay (tests/lab/relay.py), figures against what the relay was
configured to do and its own counters (issue #17).

* Gilbert-Elliott loss (p, r; every packet lost in the bad state) upstream:
  loss within the chain's band around p / (p + r), burst ratio within the
  estimator's band around 1 / (p + r), MOS equal to the E-model computed by
  hand with that burst ratio; random loss of the same mean: burst ratio
  within its band around 1. Both streams run at once (one thread each).
* A 60 s stream whose path goes silent both ways for 2 s and then comes back
  from a new source port (a NAT rebinding): 3.3 % upstream loss, worst 15 s
  window 13.3 %, max gap 2000 ms within two packet intervals, one
  interruption, the far-end session restart reported, per-direction loss
  still split and equal to the relay's drop counters.
"""

from __future__ import annotations

import math
import threading

import pytest

from probes import stream
from probes.reflector import StampReflector
from tests.lab import Impairment, impairment_relay


@pytest.fixture
def reflector():
    r = StampReflector("127.0.0.1:0").start()
    yield r
    r.stop()


def _run(target: str, duration_s: float, ptime_ms: int, out: dict, name: str) -> None:
    out[name] = stream.run(stream.StreamConfig(target=target, duration_s=duration_s, ptime_ms=ptime_ms,
                                               timeout_s=3.0))


def _mos_by_hand(one_way_ms: float, ppl: float, burst_r: float, ptime_ms: float) -> float:
    """G.107 for G.711 with PLC (Ie 0, Bpl 25.1), 60 ms jitter buffer, d < 177.3 ms."""
    d = one_way_ms + 60 + ptime_ms
    id_ = 0.024 * d
    ie_eff = 0 + (95 - 0) * ppl / (ppl / burst_r + 25.1)
    r = 93.2 - id_ - ie_eff
    return 1 + 0.035 * r + r * (r - 60) * (100 - r) * 7e-6


def test_gilbert_elliott_and_random_loss_burst_ratio(reflector):
    p, r = 0.02, 0.25
    mean = p / (p + r)                               # 0.0741
    ptime, duration = 10, 40.0                       # 4000 packets each
    target = "%s:%d" % reflector.address
    host, port = target.rsplit(":", 1)
    out: dict = {}
    with impairment_relay((host, int(port)), up=Impairment(ge_p=p, ge_r=r), seed=7,
                          max_seconds=120) as ge, \
            impairment_relay((host, int(port)), up=Impairment(loss_pct=100 * mean), seed=7,
                             max_seconds=120) as rnd:
        threads = [threading.Thread(target=_run, args=("%s:%d" % rel.address, duration, ptime, out, name))
                   for name, rel in (("ge", ge), ("random", rnd))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(duration + 30)
    n = 4000
    n_bad = n * mean
    n_good = n - n_bad
    # ---- Gilbert-Elliott: the chain's mean loss has the binomial variance widened by the
    # chain's correlation: var = m(1-m)/n * (1 + lam) / (1 - lam), lam = 1 - p - r
    res = out["ge"]
    assert res.measured and res.direction_split is True and res.packets["sent"] == n
    lam = 1 - p - r
    sd_loss = 100 * math.sqrt(mean * (1 - mean) / n * (1 + lam) / (1 - lam))
    assert abs(res.loss_pct["up"] - 100 * mean) < 4 * sd_loss
    # burst ratio: p_hat and q_hat are binomial proportions over the good / bad packets;
    # delta method: sd(1 / (p + q)) = BurstR^2 * sqrt(p(1-p)/n_good + r(1-r)/n_bad)
    br = 1 / (p + r)                                  # 3.70
    sd_br = br ** 2 * math.sqrt(p * (1 - p) / n_good + r * (1 - r) / n_bad)
    assert abs(res.burst_ratio["up"] - br) < 4 * sd_br
    assert res.burst_ratio["up"] > 2.0                 # and clearly not random
    # MOS up equals the E-model by hand with the measured loss and burst ratio
    assert res.late_pct_dir["up"] == 0
    mos_up = _mos_by_hand(res.rtt_ms["mean"] / 2, res.loss_pct["up"], res.burst_ratio["up"], ptime)
    assert res.mos_up == pytest.approx(mos_up, abs=1e-9)
    # the same loss taken as random would have scored higher: burstiness costs MOS
    assert res.mos_up < _mos_by_hand(res.rtt_ms["mean"] / 2, res.loss_pct["up"], 1.0, ptime) - 0.1
    # RFC 3611: mean burst 1 / r = 4 packets of 10 ms; with Gmin 16 nearby bursts merge
    assert res.bursts["up"]["burst_density_pct"] > 50 and res.bursts["up"]["bursts"] > 10
    # ---- random loss of the same mean: BurstR 1 (q = 1 - m), band from the same formula
    res = out["random"]
    assert res.measured and res.packets["sent"] == n
    assert abs(res.loss_pct["up"] - 100 * mean) < 4 * 100 * math.sqrt(mean * (1 - mean) / n)
    sd_1 = math.sqrt(mean * (1 - mean) / n_good + (1 - mean) * mean / n_bad)
    assert abs(res.burst_ratio["up"] - 1.0) < 4 * sd_1


def test_two_second_silence_with_a_new_source_port(reflector):
    target = "%s:%d" % reflector.address
    host, port = target.rsplit(":", 1)
    out: dict = {}
    with impairment_relay((host, int(port)), max_seconds=150) as relay:
        t = threading.Thread(target=_run, args=("%s:%d" % relay.address, 60.0, 20, out, "s"))
        t.start()
        t.join(29)
        relay.blackout(2000, rebind=True)              # both ways, then new source ports
        t.join(60)
        st = relay.wait_idle()
    res = out["s"]
    assert res.measured and res.packets["sent"] == 3000
    # the far end counted a new session after the silence: reported, and the split holds
    assert res.direction_split is True
    assert len(res.restarts) == 1 and any("restarted its session numbering" in n for n in res.notes)
    # per-direction loss equals what the relay dropped on purpose
    assert res.packets["sent"] - res.packets["reflected"] == st["up"]["dropped"]
    assert res.packets["reflected"] - res.packets["received"] == st["down"]["dropped"]
    lost_up = st["up"]["dropped"]                       # 2 s at 20 ms: 100, give or take one
    assert abs(lost_up - 100) <= 2
    assert res.loss_pct["up"] == pytest.approx(100 * lost_up / 3000)      # ~3.3 %
    assert res.worst_window["15s"]["loss_pct"]["up"] == pytest.approx(100 * lost_up / 750)   # ~13.3 %
    assert res.worst_window["200ms"]["loss_pct"]["up"] == 100.0
    assert abs(res.max_gap_ms["up"] - 2000) <= 2 * 20
    assert abs(res.max_gap_ms["rtt"] - 2000) <= 2 * 20
    (it,) = res.interruptions
    assert abs(it["duration_ms"] - 2000) <= 2 * 20
    assert it["source_changed"] is True and it["up_lost"] == lost_up
