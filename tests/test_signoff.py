"""`cutover signoff`: validates the item, appends to the audit trail, and the
gate sees it."""

from __future__ import annotations

import json

import pytest

from harness.profile import load_profile
from harness.store import Store
from tests.conftest import run_cli
from tests.fixtures.history import write_profile

import datetime as dt


@pytest.fixture
def site(tmp_path):
    profile = write_profile(tmp_path, dt.date(2026, 11, 1))
    return profile, tmp_path / "h.sqlite"


def test_signoff_then_revoke_keeps_the_audit_trail(site):
    profile, db = site
    r = run_cli("signoff", str(profile), "porting", "--by", "A. Engineer", "--note", "all 48 DDIs ported",
                "--db", str(db), "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert (d["item"], d["by"], d["note"], d["revoked"]) == ("porting", "A. Engineer", "all 48 DDIs ported", False)
    r = run_cli("signoff", str(profile), "porting", "--by", "B. Checker", "--revoke", "--note", "2 DDIs left",
                "--db", str(db))
    assert r.returncode == 0, r.stderr
    assert "porting (Numbers ported to the new provider): revoked by B. Checker" in r.stdout
    site_name = load_profile(profile).site
    with Store(db) as store:
        trail = store.signoff_history(site_name)
        current = store.signoffs(site_name)
    assert [(s.item, s.by, s.revoked) for s in trail] == [("porting", "A. Engineer", False),
                                                          ("porting", "B. Checker", True)]
    assert current["porting"].revoked and current["porting"].note == "2 DDIs left"


def test_gate_sees_the_signoff(site):
    profile, db = site
    for item in ("voice-vlan", "failover"):
        assert run_cli("signoff", str(profile), item, "--by", "A. Engineer", "--db", str(db)).returncode == 0
    d = json.loads(run_cli("gate", str(profile), "--db", str(db), "--json").stdout)
    items = {i["id"]: i for i in d["items"]}
    assert items["checklist:voice-vlan"]["status"] == "ok" and items["checklist:voice-vlan"]["by"] == "A. Engineer"
    assert items["checklist:porting"]["status"] == "block"
    assert not any("voice-vlan" in b for b in d["blocking"])


def test_unknown_item_did_you_mean(site):
    profile, db = site
    r = run_cli("signoff", str(profile), "portng", "--by", "A. Engineer", "--db", str(db))
    assert r.returncode == 2
    assert "no checklist item 'portng' (did you mean 'porting'?)" in r.stderr
    assert "Traceback" not in r.stderr and not db.exists()


def test_by_is_required(site):
    profile, db = site
    r = run_cli("signoff", str(profile), "porting", "--db", str(db))
    assert r.returncode == 2 and "--by NAME is required" in r.stderr
