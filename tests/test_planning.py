"""Planning figures against hand calculations and published tables.

Hand calculation for G.711/20 ms: payload 64 kbit/s x 20 ms / 8 = 160 B;
+ RTP 12 + UDP 8 + IPv4 20 = 200 B; x 8 bit x 50 packets/s = 80.0 kbit/s at IP;
+ Ethernet 18 = 218 B -> 87.2; + preamble/IFG 20 = 238 B -> 95.2.
"""

import pytest

from harness.planning import calls_fitting, packet_bytes, per_call_kbps, plan, plan_profile
from harness.profile import load_profile
from tests.conftest import FIXTURES


@pytest.mark.parametrize("codec,ptime,layer,expected", [
    ("g711", 20, "ip", 80.0), ("g711", 20, "ethernet", 87.2), ("g711", 20, "wire", 95.2),
    ("g729", 20, "ip", 24.0), ("g729", 20, "ethernet", 31.2), ("g729", 20, "wire", 39.2),
    # Opus 24 kbit/s, 60 B payload + 40 B IP/UDP/RTP = 100 B x 8 x 50/s -> 40.0; 118 B -> 47.2; 138 B -> 55.2
    ("opus", 20, "ip", 40.0), ("opus", 20, "ethernet", 47.2), ("opus", 20, "wire", 55.2),
    # G.711/30 ms: 240 + 40 = 280 B x 8 x 33.33/s = 74.67 kbit/s; + 18 B -> 79.47
    ("g711", 30, "ip", 280 * 8 / 30), ("g711", 30, "ethernet", 298 * 8 / 30),
    # G.711/40 ms: 320 + 40 = 360 B x 8 x 25/s = 72.0; + 18 -> 75.6
    ("g711", 40, "ip", 72.0), ("g711", 40, "ethernet", 75.6),
    # G.729/40 ms: 40 + 40 = 80 B x 8 x 25 = 16.0
    ("g729", 40, "ip", 16.0),
    # G.711/10 ms: 80 + 40 = 120 B x 8 x 100 = 96.0
    ("g711", 10, "ip", 96.0),
    # G.722 has G.711's 64 kbit/s payload rate
    ("g722", 20, "ethernet", 87.2),
])
def test_per_call_kbps(codec, ptime, layer, expected):
    assert per_call_kbps(codec, ptime, layer) == pytest.approx(expected, abs=1e-9)


def test_adders():
    # VLAN: +4 B x 8 x 50 = +1.6 kbit/s; IPv6: +20 B -> +8.0; SRTP: +10 B -> +4.0
    assert per_call_kbps("g711", 20, "ethernet", vlan=True) == pytest.approx(88.8)
    assert per_call_kbps("g711", 20, "ethernet", ipv6=True) == pytest.approx(95.2)
    assert per_call_kbps("g711", 20, "ip", srtp=True) == pytest.approx(84.0)
    # a VLAN tag does not exist at the IP layer
    assert per_call_kbps("g711", 20, "ip", vlan=True) == pytest.approx(80.0)
    assert packet_bytes("g711", 20, "wire", vlan=True, ipv6=True) == 238 + 4 + 20


def test_sixty_g711_calls():
    p = plan(60, "g711", 20)
    assert p.voice_mbps == pytest.approx(5.232)
    assert p.required_up_mbps == pytest.approx(5.232)
    assert p.required_down_mbps == pytest.approx(5.232)


def test_required_with_video_other_and_headroom():
    # (60 x 87.2 kbit/s + 4 x 1500 kbit/s + 20 Mbit/s) x 1.2 = (5.232 + 6 + 20) x 1.2 = 37.4784
    p = plan(60, "g711", 20, video_calls=4, video_kbps=1500, other_mbps=20, headroom_pct=20,
             circuits=[("old", "old", "A", 100, 20), ("new", "new", "B", 200, 50)])
    assert p.required_up_mbps == pytest.approx(37.4784)
    old, new = p.circuits
    assert old.covers_down and not old.covers_up and not old.covers
    assert new.covers
    # new, upstream 50 Mbit/s: 50 / 1.2 - 26 = 15.6667 Mbit/s -> floor(15666.7 / 87.2) = 179 calls
    assert new.max_calls_up == 179
    # old, upstream 20: 20 / 1.2 - 26 < 0 -> no calls
    assert old.max_calls == 0


def test_calls_fitting_is_inverse_of_required():
    # exactly 60 calls fit in 5.232 Mbit/s without headroom; one more kbit/s short does not
    assert calls_fitting(5.232, 87.2, 0, 0) == 60
    assert calls_fitting(5.231, 87.2, 0, 0) == 59


def test_plan_profile_uses_profile_fields():
    p = plan_profile(load_profile(FIXTURES / "profiles" / "valid.yaml"))
    assert p.per_call_kbps == pytest.approx(87.2)
    assert p.required_up_mbps == pytest.approx(5.232 * 1.2)  # default headroom 20 %
    assert [c.name for c in p.circuits] == ["old", "new"]


def test_plan_cli_json(cli):
    r = cli("plan", str(FIXTURES / "profiles" / "valid.yaml"), "--json")
    assert r.returncode == 0, r.stderr
    import json
    data = json.loads(r.stdout)
    assert data["per_call_kbps"] == pytest.approx(87.2)
    assert data["voice_mbps"] == pytest.approx(5.232)
    assert data["required_up_mbps"] == pytest.approx(6.278, abs=0.001)
    assert data["circuits"][1]["covers"] is True


def test_plan_cli_wire_overhead(cli):
    import json
    r = cli("plan", str(FIXTURES / "profiles" / "valid.yaml"), "--json", "--overhead", "wire")
    assert json.loads(r.stdout)["per_call_kbps"] == pytest.approx(95.2)


def test_plan_cli_table(cli):
    r = cli("plan", "profiles/three-circuits.yaml")
    assert r.returncode == 0, r.stderr
    assert "88.8 kbit/s" in r.stdout  # G.711 + VLAN tag at Ethernet
    assert "backup" in r.stdout
