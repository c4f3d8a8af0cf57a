"""Real peers through the lab: irtt agrees with the relay's configuration.

Two independent things are validated at once: the relay lands what it is told,
and our parsing of irtt's JSON (nanoseconds -> ms, per-direction fields) is right.
"""

from __future__ import annotations

import pytest

from tests.lab import Impairment, impairment_relay, irtt_client, irtt_server
from tests.lab.peers import parse_iperf3, parse_irtt, peer_unavailable_reason

UP = Impairment(delay_ms=20, jitter_ms=10, loss_pct=2)     # mean |IPDV| 2*10/3 = 6.667 ms
DOWN = Impairment(delay_ms=20, jitter_ms=5, loss_pct=1)    # mean |IPDV| 2*5/3  = 3.333 ms


@pytest.mark.skipif(peer_unavailable_reason("irtt") is not None, reason="irtt not installed")
def test_irtt_through_the_relay_measures_the_configured_impairments():
    with irtt_server() as srv:
        with impairment_relay(srv.address, up=UP, down=DOWN, seed=5, max_seconds=60) as relay:
            # 3000 packets of 172 bytes (G.711 STAMP size) at 2 ms; irtt skips sends it is
            # late for on a loaded machine ("timer misses"), so at least 2500 are required
            r = irtt_client(relay.address, interval_ms=2, length_bytes=172, duration_s=6, wait_ms=300)
            st = relay.wait_idle()
    assert r["packets_sent"] >= 2500, r["raw"]["stats"].get("timer_misses")
    assert abs(r["ipdv_send_mean_ms"] - 20 / 3) <= 0.5, r["ipdv_send_mean_ms"]
    assert abs(r["ipdv_receive_mean_ms"] - 10 / 3) <= 0.5, r["ipdv_receive_mean_ms"]
    assert abs(r["loss_up_pct"] - 2.0) <= 0.8, r["loss_up_pct"]
    assert abs(r["loss_down_pct"] - 1.0) <= 0.8, r["loss_down_pct"]
    # The RTT is the sum of two symmetric delays centred on 20 ms: median 40 ms + base.
    assert abs(r["rtt_median_ms"] - 40.0) <= 1.5, r["rtt_median_ms"]
    assert r["rtt_min_ms"] >= 40 - 15 - 0.5     # never faster than the smallest configured delays
    # irtt's counts and the relay's counters tell the same story (the relay also
    # carried irtt's open/close handshake packets, retried when a reply is slow or
    # lost: a few more than the test packets, never fewer).
    assert 0 <= st["up"]["forwarded"] - r["server_packets_received"] <= 10
    assert 0 <= st["down"]["forwarded"] - r["packets_received"] <= 10
    up_drop_pct = 100.0 * st["up"]["dropped"] / st["up"]["received"]
    assert abs(up_drop_pct - r["loss_up_pct"]) <= 0.2


def test_parse_irtt_converts_nanoseconds_to_ms():
    doc = {"stats": {"rtt": {"mean": 40_250_000, "median": 40_000_000, "min": 25_000_000, "max": 55_000_000},
                     "ipdv_send": {"mean": 6_666_667, "n": 10}, "ipdv_receive": {"mean": 3_333_333, "n": 10},
                     "upstream_loss_percent": 2.0, "downstream_loss_percent": 1.0,
                     "packets_sent": 100, "packets_received": 97, "server_packets_received": 98}}
    r = parse_irtt(doc)
    assert r["rtt_mean_ms"] == pytest.approx(40.25)
    assert r["ipdv_send_mean_ms"] == pytest.approx(6.666667)
    assert r["ipdv_receive_mean_ms"] == pytest.approx(3.333333)
    assert (r["loss_up_pct"], r["loss_down_pct"]) == (2.0, 1.0)


def test_parse_iperf3_tcp_and_udp_figures():
    tcp = {"start": {"test_start": {"protocol": "TCP"}},
           "end": {"sum_sent": {"bits_per_second": 19.3e6, "retransmits": 4},
                   "sum_received": {"bits_per_second": 19.1e6},
                   "streams": [{"sender": {"mean_rtt": 43000, "max_rtt": 49000}}],
                   "sender_tcp_congestion": "cubic"}}
    r = parse_iperf3(tcp)
    assert (r["received_mbps"], r["sent_mbps"], r["retransmits"]) == (19.1, 19.3, 4)
    assert (r["mean_rtt_ms"], r["max_rtt_ms"], r["congestion"]) == (43.0, 49.0, "cubic")
    udp = {"start": {"test_start": {"protocol": "UDP"}},
           "end": {"sum_sent": {"bits_per_second": 30e6},
                   "sum_received": {"bits_per_second": 19.4e6, "jitter_ms": 0.5, "lost_percent": 35.0,
                                    "lost_packets": 10, "packets": 30}}}
    r = parse_iperf3(udp)
    assert (r["received_mbps"], r["lost_pct"], r["jitter_ms"]) == (19.4, 35.0, 0.5)
    with pytest.raises(Exception, match="unable to connect"):
        parse_iperf3({"error": "unable to connect to server"})
