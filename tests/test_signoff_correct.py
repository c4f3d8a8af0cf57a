"""Correcting a sign-off keeps the audit trail, and `gate --as-of` counts only
the sign-offs (and corrections) made by then (issue #15)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from harness import gate
from harness.profile import load_profile
from harness.store import Store
from tests.conftest import run_cli
from tests.fixtures.history import write_profile

UTC = dt.timezone.utc
T0 = dt.datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def test_correction_supersedes_and_keeps_the_old_entry(db_location):
    st = Store(db_location)
    st.signoff("Harbour", "porting", "K. Nursepulled fibre", "", at=T0)
    st.signoff("Harbour", "failover", "Ana", "LTE took over", at=T0)
    fixed = st.correct_signoff("Harbour", "porting", "K. Nurse", "pulled fibre, calls moved to 4G",
                               at=T0 + dt.timedelta(hours=1))
    assert fixed.supersedes is not None and not fixed.revoked
    cur = st.signoffs("Harbour")
    assert (cur["porting"].by, cur["porting"].note) == ("K. Nurse", "pulled fibre, calls moved to 4G")
    assert cur["failover"].by == "Ana"
    hist = [h for h in st.signoff_history("Harbour") if h.item == "porting"]
    assert [(h.by, h.superseded, h.superseded_by, h.superseded_at) for h in hist] == [
        ("K. Nursepulled fibre", True, "K. Nurse", T0 + dt.timedelta(hours=1)),
        ("K. Nurse", False, None, None)]
    # as of before the correction: the wrong entry was the current one, not yet superseded
    before = st.signoff_history("Harbour", as_of=T0 + dt.timedelta(minutes=30))
    assert [(h.item, h.by, h.superseded) for h in before] == [("porting", "K. Nursepulled fibre", False),
                                                             ("failover", "Ana", False)]
    assert st.signoffs("Harbour", as_of=T0 + dt.timedelta(minutes=30))["porting"].by == "K. Nursepulled fibre"
    assert st.signoffs("Harbour", as_of=T0 - dt.timedelta(seconds=1)) == {}
    st.close()


def test_a_revocation_stays_revoked_when_corrected(db_location):
    st = Store(db_location)
    st.signoff("Harbour", "porting", "Ana", at=T0)
    st.signoff("Harbour", "porting", "Ben", "2 DDIs lef", revoke=True, at=T0 + dt.timedelta(hours=1))
    st.correct_signoff("Harbour", "porting", "Ben", "2 DDIs left at Carrier A", at=T0 + dt.timedelta(hours=2))
    cur = st.signoffs("Harbour")["porting"]
    assert cur.revoked and cur.note == "2 DDIs left at Carrier A"
    assert [h.superseded for h in st.signoff_history("Harbour")] == [False, True, False]
    with pytest.raises(ValueError, match="no sign-off to correct"):
        st.correct_signoff("Harbour", "failover", "Ana")
    with pytest.raises(ValueError):
        st.correct_signoff("Harbour", "porting", " ")
    st.close()


def test_import_keeps_what_a_correction_supersedes(tmp_path):
    src, dst = Store(tmp_path / "a.sqlite"), Store(tmp_path / "b.sqlite")
    dst.signoff("Harbour", "failover", "Zed", at=T0)      # ids differ between the two files
    src.signoff("Harbour", "porting", "Ana", "wrong", at=T0)
    src.correct_signoff("Harbour", "porting", "Ana", "right", at=T0 + dt.timedelta(hours=1))
    for _ in range(2):
        dst.import_from(src)
    hist = [(h.item, h.note, h.superseded_by) for h in dst.signoff_history("Harbour")]
    assert hist == [("failover", "", None), ("porting", "wrong", "Ana"), ("porting", "right", None)]
    src.close(), dst.close()


@pytest.fixture
def site(tmp_path):
    profile = write_profile(tmp_path, dt.date(2026, 11, 1))
    return profile, tmp_path / "h.sqlite"


def test_cli_correct(site):
    profile, db = site
    assert run_cli("signoff", str(profile), "porting", "--by", "A. Engineer", "--note", "48 DDIs",
                   "--db", str(db)).returncode == 0
    r = run_cli("signoff", str(profile), "porting", "--correct", "--by", "B. Checker",
                "--note", "46 DDIs, 2 stay", "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["by"], d["note"], d["revoked"], d["corrects"]) == ("B. Checker", "46 DDIs, 2 stay", False, True)
    r = run_cli("signoff", str(profile), "voice-vlan", "--correct", "--by", "B", "--db", str(db))
    assert r.returncode == 2 and "'voice-vlan' has no sign-off to correct" in r.stderr
    r = run_cli("signoff", str(profile), "porting", "--correct", "--revoke", "--by", "B", "--db", str(db))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    with Store(db) as store:
        trail = store.signoff_history(load_profile(profile).site)
    assert [(s.by, s.superseded_by) for s in trail] == [("A. Engineer", "B. Checker"), ("B. Checker", None)]


def test_gate_as_of_counts_only_signoffs_made_by_then(site):
    profile, db = site
    prof = load_profile(profile)
    t = dt.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    with Store(db) as store:
        store.signoff(prof.site, "voice-vlan", "A. Engineer", at=t + dt.timedelta(hours=1))
        for now, status in ((t, "block"), (t + dt.timedelta(hours=2), "ok")):
            items = {i.id: i for i in gate.decide(prof, store, now=now).items}
            assert items["checklist:voice-vlan"].status == status, now
    for as_of, status in ((t, "block"), (t + dt.timedelta(hours=2), "ok")):
        r = run_cli("gate", str(profile), "--db", str(db), "--as-of", as_of.isoformat(), "--json")
        assert r.returncode in (0, 1), r.stderr
        items = {i["id"]: i for i in json.loads(r.stdout)["items"]}
        assert items["checklist:voice-vlan"]["status"] == status, as_of
