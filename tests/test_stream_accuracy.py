"""Accuracy of the stream probe through an impaired path, checked against the
configured impairment (theory) and against irtt measuring the same path in
the same run (issue #3, "What it must show").

Path: probe -> impairment relay (tests/lab, its own process) -> reflector,
40 +/- 10 ms (uniform) and 2 % loss in each direction.

Theory for independent delays uniform on [a, b] = [30, 50] ms:
- RTT = sum of two such delays: triangular on [60, 100], median 80 ms (+ the
  unimpaired RTT of the relay path, measured first);
- mean |IPDV| of consecutive packets = E|X - Y| = (b - a) / 3 = 6.67 ms;
- RFC 3550 jitter fluctuates around the same 6.67 ms; its band for this test's
  packet counts is computed below by simulating the very same estimator;
- loss 2 % per direction: over 3500 packets the binomial sd is 0.24 pp.

irtt agreement: the probe and irtt each go through their own relay with the
same configuration and the same seed, and both send 3500 packets at 250
packets/s, so both flows get the same sequence of impairment draws (shifted by
irtt's one handshake packet). Their loss figures can then be compared tightly
(0.5 pp) without two independent samples' noise dominating.
"""

from __future__ import annotations

import math
import random
import statistics
import threading

import pytest

from probes import stream
from probes.voice import emodel, stats
from probes.reflector import StampReflector
from tests.lab import Impairment, impairment_relay, irtt_client, irtt_server, peer_unavailable_reason

CALLS = 5
DURATION_S = 14.0               # 5 calls x 50 pps x 14 s = 3500 packets
IRTT_INTERVAL_MS = 4.0          # 250 pps, the probe's aggregate rate: 3500 packets too
PATH = Impairment(delay_ms=40, jitter_ms=10, loss_pct=2)
SEED = 20261122


def jitter_band(calls: int, packets_per_call: int, trials: int = 300, sigmas: float = 4.0) -> tuple[float, float]:
    """Band of the reported jitter (mean over calls of the final RFC 3550 J)
    for iid U(30, 50) ms delays: mean +/- 4 sd over simulated runs."""
    rng = random.Random(1)
    results = []
    for _ in range(trials):
        js = [stats.rfc3550_jitter([rng.uniform(30, 50) for _ in range(packets_per_call)])
              for _ in range(calls)]
        results.append(sum(js) / calls)
    mu, sd = statistics.fmean(results), statistics.stdev(results)
    return mu - sigmas * sd, mu + sigmas * sd


@pytest.mark.slow
def test_stream_through_impaired_relay_matches_theory_and_irtt():
    irtt_reason = peer_unavailable_reason("irtt")
    if irtt_reason:
        pytest.skip(irtt_reason)
    refl = StampReflector("127.0.0.1:0").start()
    try:
        host, port = refl.address
        # unimpaired RTT through the relay, the base the 80 ms add to
        with impairment_relay(upstream=(host, port), max_seconds=30) as clean_relay:
            base = stream.run(stream.StreamConfig(target="%s:%d" % clean_relay.address, calls=2,
                                                  duration_s=1.0))
        assert base.measured and base.loss_pct["total"] == 0
        base_rtt_ms = base.rtt_ms["p50"]

        with irtt_server() as irtt_srv, \
                impairment_relay(upstream=(host, port), up=PATH, down=PATH, seed=SEED,
                                 max_seconds=90) as relay_a, \
                impairment_relay(upstream=irtt_srv.address, up=PATH, down=PATH, seed=SEED,
                                 max_seconds=90) as relay_b:
            irtt_out: dict = {}

            def run_irtt():
                try:
                    irtt_out["r"] = irtt_client(relay_b.address, interval_ms=IRTT_INTERVAL_MS,
                                                length_bytes=172, duration_s=DURATION_S, wait_ms=600)
                except Exception as exc:          # reported below, in the test's thread
                    irtt_out["error"] = exc

            t = threading.Thread(target=run_irtt)
            t.start()
            res = stream.run(stream.StreamConfig(target="%s:%d" % relay_a.address, calls=CALLS,
                                                 duration_s=DURATION_S, timeout_s=3.0))
            t.join(DURATION_S + 30)
            relay_stats = relay_a.wait_idle()
        assert "error" not in irtt_out, irtt_out.get("error")
        ir = irtt_out["r"]
    finally:
        refl.stop()

    assert res.measured and not res.partial, res.errors
    assert res.packets["sent"] >= 3000 and res.direction_split
    # the relay's own counters are the ground truth for loss per direction
    assert res.packets["sent"] - res.packets["reflected"] == relay_stats["up"]["dropped"]
    assert res.packets["reflected"] - res.packets["received"] == relay_stats["down"]["dropped"]

    # RTT p50 within 1.5 ms of 80 ms + the unimpaired RTT
    assert res.rtt_ms["p50"] == pytest.approx(80.0 + base_rtt_ms, abs=1.5)
    # mean |IPDV| per direction within 0.5 ms of 6.67 ms
    for direction in ("up", "down"):
        assert res.ipdv_ms[direction]["mean"] == pytest.approx(20 / 3, abs=0.5), direction
    # RFC 3550 jitter within its statistical band
    lo, hi = jitter_band(CALLS, res.packets["sent"] // CALLS)
    for direction in ("up", "down"):
        assert lo <= res.jitter_ms[direction] <= hi, (direction, res.jitter_ms[direction], lo, hi)
    # loss per direction within 0.8 pp of 2 %
    assert res.loss_pct["up"] == pytest.approx(2.0, abs=0.8)
    assert res.loss_pct["down"] == pytest.approx(2.0, abs=0.8)
    # MOS is the E-model applied to the measured inputs (no packet is later than the buffer)
    assert res.late_pct == 0
    one_way = res.rtt_ms["mean"] / 2
    # random loss: burst ratio 1 within the Markov fit's band (tests/test_losstime.py writes it
    # out: sd = sqrt(m(1-m)/n_good + (1-m)m/n_bad)), and the E-model is given what was measured
    m, n = 0.02, res.packets["sent"]
    sd = math.sqrt(m * (1 - m) / (n * (1 - m)) + (1 - m) * m / (n * m))
    for direction in ("up", "down"):
        assert abs(res.burst_ratio[direction] - 1.0) < 4 * sd, (direction, res.burst_ratio)
    up = emodel.score("g711", one_way, res.loss_pct["up"], jitter_buffer_ms=60, ptime_ms=20,
                      burst_ratio=emodel.burst_ratio_for_model(res.burst_ratio["up"]))
    down = emodel.score("g711", one_way, res.loss_pct["down"], jitter_buffer_ms=60, ptime_ms=20,
                        burst_ratio=emodel.burst_ratio_for_model(res.burst_ratio["down"]))
    assert res.mos == pytest.approx(min(up.mos, down.mos), abs=1e-9)
    assert res.mos == pytest.approx(4.14, abs=0.05)      # docs/contract.md §4 worked value (d = 120, 2 %)
    assert res.dscp["preserved"] is True

    # irtt on the same path: per-direction mean |IPDV| within 10 %, loss within 0.5 pp
    assert res.ipdv_ms["up"]["mean"] == pytest.approx(ir["ipdv_send_mean_ms"], rel=0.10)
    assert res.ipdv_ms["down"]["mean"] == pytest.approx(ir["ipdv_receive_mean_ms"], rel=0.10)
    assert res.loss_pct["up"] == pytest.approx(ir["loss_up_pct"], abs=0.5)
    assert res.loss_pct["down"] == pytest.approx(ir["loss_down_pct"], abs=0.5)
    print(f"\ncutover: rtt p50 {res.rtt_ms['p50']:.2f} ms (base {base_rtt_ms:.3f}), ipdv up/down "
          f"{res.ipdv_ms['up']['mean']:.2f}/{res.ipdv_ms['down']['mean']:.2f} ms, jitter "
          f"{res.jitter_ms['up']:.2f}/{res.jitter_ms['down']:.2f} ms (band {lo:.2f}-{hi:.2f}), loss "
          f"{res.loss_pct['up']:.2f}/{res.loss_pct['down']:.2f} %, MOS {res.mos:.3f}")
    print(f"irtt:    ipdv up/down {ir['ipdv_send_mean_ms']:.2f}/{ir['ipdv_receive_mean_ms']:.2f} ms, loss "
          f"{ir['loss_up_pct']:.2f}/{ir['loss_down_pct']:.2f} %, rtt median {ir['rtt_median_ms']:.2f} ms")
