"""`cutover plan` says which direction falls short, by how much, and why an old
circuit "carries 0 calls" (issue #15), against hand figures.

10 G.711/20 ms calls at the Ethernet layer: 87.2 kbit/s each = 0.872 Mbit/s,
+ 1 video call at 1000 kbit/s + 0.5 Mbit/s other = 2.372, x 1.2 headroom
= 2.8464 Mbit/s needed each way.
ADSL 8/1: upstream 1 < 2.846, short by 1.846; 1 / 1.2 = 0.833 usable, less
video 1.0 and other 0.5: nothing left for calls -> 0 of 10.
"""

import subprocess
import sys

from harness.planning import plan

CIRCUITS = [("adsl", "old", "", 8.0, 1.0), ("fibre", "new", "", 100.0, 20.0)]


def _plan():
    return plan(10, "g711", 20, video_calls=1, video_kbps=1000, other_mbps=0.5, headroom_pct=20,
                circuits=CIRCUITS)


def test_shortfall_named_by_direction_and_amount():
    adsl, fibre = _plan().circuits
    assert adsl.why[0] == "upstream 1 Mbit/s < 2.846 Mbit/s needed: short by 1.846 Mbit/s"
    assert not any(w.startswith("downstream") for w in adsl.why)
    assert fibre.why == []


def test_zero_calls_explained_by_what_is_reserved_first():
    adsl = _plan().circuits[0]
    assert adsl.max_calls == 0
    assert adsl.why[1] == ("carries 0 of 10 calls: upstream 1 Mbit/s, of which 20 % headroom leaves "
                           "0.833 Mbit/s, video takes 1.000, other traffic 0.500; 0.000 Mbit/s remain "
                           "for calls at 87.2 kbit/s each")


def test_plan_json_and_text_carry_the_sentences(tmp_path):
    prof = tmp_path / "p.yaml"
    prof.write_text("site: Clinic\nplanned: {calls: 10, codec: g711, video_calls: 1, video_kbps: 1000, "
                    "other_mbps: 0.5, headroom_pct: 20}\ncircuits:\n"
                    "  - {name: adsl, role: old, down_mbps: 8, up_mbps: 1}\n"
                    "  - {name: fibre, role: new, down_mbps: 100, up_mbps: 20}\n")
    import json
    out = subprocess.run([sys.executable, "-m", "harness", "plan", str(prof), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    adsl = json.loads(out.stdout)["circuits"][0]
    assert adsl["why"][0].startswith("upstream 1 Mbit/s < 2.846")
    text = subprocess.run([sys.executable, "-m", "harness", "plan", str(prof)], capture_output=True,
                          text=True, timeout=60, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert "adsl: upstream 1 Mbit/s < 2.846 Mbit/s needed: short by 1.846 Mbit/s" in text.stdout
