"""Call-platform requirements (harness/platforms.py): the published table, the
checks, the verdict sentence and the 0..100 score, against hand calculations."""

import pytest

from harness import platforms
from harness.platforms import PLATFORMS, evaluate, summarize
from harness.verdicts import circuit_verdict


def stream_raw(*, rtt_p95=50.0, loss=(0.0, 0.0), jitter=(2.0, 2.0), w15_loss=(0.0, 0.0),
               w15_jitter=(2.0, 2.0), w200_loss=(0.0, 0.0), reorder=0.0):
    """A stream result as `probe stream --json` gives it (only the keys platforms read)."""
    def d(pair):
        return {"up": pair[0], "down": pair[1]}
    return {"rtt_ms": {"p95": rtt_p95}, "loss_pct": d(loss), "jitter_ms": d(jitter),
            "reorder_pct": reorder,
            "worst_window": {"15s": {"loss_pct": d(w15_loss), "jitter_ms": d(w15_jitter)},
                             "200ms": {"loss_pct": d(w200_loss)}}}


def test_table_is_the_published_one():
    # Teams, client to Microsoft edge: < 50 ms one way, < 100 ms RTT, < 1 % loss in any 15 s,
    # < 30 ms jitter in any 15 s, < 10 % loss in any 200 ms, < 0.05 % reorder
    t = {r.key: r.limit for r in PLATFORMS["teams"].requirements}
    assert t == {"latency": 50, "rtt": 100, "loss_15s": 1.0, "jitter_15s": 30, "loss_200ms": 10.0,
                 "reorder": 0.05}
    e = {r.key: r.limit for r in PLATFORMS["teams-edge"].requirements}
    assert e == {"latency": 30, "rtt": 60, "loss_15s": 0.1, "jitter_15s": 15, "loss_200ms": 1.0,
                 "reorder": 0.01}
    for p in PLATFORMS.values():
        assert p.source and p.segment and p.requirements
    assert {"teams", "teams-edge", "zoom", "webex"} <= set(PLATFORMS)


def test_clean_path_meets_teams_both_segments():
    # 25 ms each way -> RTT 50: inside client-to-edge (100) and customer-edge (60)
    cs = evaluate(["teams", "teams-edge"], stream_raw(rtt_p95=50.0))
    s = summarize(cs)
    assert s["teams"].meets and s["teams"].passed == 6 and s["teams"].total == 6
    assert s["teams-edge"].meets
    assert s["teams"].sentence("new") == "new: meets Microsoft Teams (client to Microsoft edge): 6 of 6"


def test_window_loss_fails_teams_while_mean_loss_passes_the_plain_threshold():
    # a 300 ms outage in 60 s: 0.5 % overall, 2 % in the worst 15 s window (15 of 750 packets)
    raw = stream_raw(loss=(0.5, 0.5), w15_loss=(2.0, 2.0), w200_loss=(100.0, 100.0))
    cs = {c.id: c for c in evaluate(["teams"], raw)}
    assert cs["stream.platform.teams.loss_15s"].status == "fail"
    assert "2 % > 1 %" in cs["stream.platform.teams.loss_15s"].reason
    assert cs["stream.platform.teams.loss_200ms"].status == "fail"
    s = summarize(list(cs.values()))["teams"]
    assert not s.meets and s.sentence("new").startswith("new: fails 2 of 6 requirements")
    assert circuit_verdict(cs.values()) == "NO-GO"


def test_customer_edge_loss_limit_named():
    # 0.5 % random loss each way: 15 s window ~0.5 % -> fails teams-edge (0.1 %), meets teams (1 %)
    raw = stream_raw(rtt_p95=50, loss=(0.5, 0.5), w15_loss=(0.5, 0.6), w200_loss=(10.0, 10.0))
    s = summarize(evaluate(["teams", "teams-edge"], raw))
    assert s["teams"].meets
    assert not s["teams-edge"].meets
    failed = {f["requirement"]: f["reason"] for f in s["teams-edge"].failed}
    assert "0.6 % > 0.1 %" in failed["loss_15s"]
    # one packet of ten in a 200 ms window is 10 %: within Teams' reading, not the edge's 1 %
    assert "loss_200ms" in failed


def test_rtt_fails_at_60ms_each_way():
    s = summarize(evaluate(["teams"], stream_raw(rtt_p95=120.0)))["teams"]
    assert not s.meets
    assert {f["requirement"] for f in s.failed} == {"latency", "rtt"}


def test_score_hand_computed():
    # score = 100 (1 - measured / (2 limit)); the platform's is the worst requirement's.
    # teams: latency 26/50 -> 74; rtt 52/100 -> 74; loss_15s 0.25/1 -> 87.5; jitter 6/30 -> 90;
    # 200 ms 0 -> 100; reorder 0.01/0.05 -> 90  => 74
    raw = stream_raw(rtt_p95=52.0, w15_loss=(0.25, 0.0), w15_jitter=(6.0, 1.0), reorder=0.01)
    s = summarize(evaluate(["teams"], raw))["teams"]
    assert s.score == pytest.approx(74.0)
    req = {r.key: r for r in PLATFORMS["teams"].requirements}
    assert req["loss_15s"].score(1.0) == 50.0          # exactly at the limit
    assert req["loss_15s"].score(2.5) == 0.0           # beyond twice the limit
    assert req["reorder"].score(0.0) == 100.0


def test_missing_window_figures_are_not_a_pass():
    raw = stream_raw()
    del raw["worst_window"]
    s = summarize(evaluate(["teams"], raw))["teams"]
    assert not s.meets
    assert {f["requirement"] for f in s.failed} == {"loss_15s", "jitter_15s", "loss_200ms"}
    assert all(f["status"] == "error" for f in s.failed)


def test_profile_validates_platform_names():
    from pydantic import ValidationError

    from harness.profile import Planned
    assert Planned(calls=4, platforms=["Teams", "zoom", "teams"]).platforms == ["teams", "zoom"]
    with pytest.raises(ValidationError, match="unknown platform 'skype'"):
        Planned(calls=4, platforms=["skype"])


def test_docs_table_matches_code():
    from pathlib import Path
    doc = (Path(__file__).parent.parent / "docs" / "platforms.md").read_text()
    for name, label, limit, _source in platforms.table_rows():
        assert f"| {name} | {label} | {limit} |" in doc
