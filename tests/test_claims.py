"""`cutover claim`: the SLA claim pack of a planted outage, read from a real
store, rendered by headless Chromium, with every user-supplied string escaped."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from harness.store import Store
from tests.conftest import run_cli
from tests.fixtures.history import FIXED_END, Planted, generate
from tests.test_report_html import CHROME_FLAGS, _png_pixels

UTC = dt.timezone.utc
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
EVIL_PROVIDER = "Carrier <script>alert(1)</script> & B"
EVIL_NOTE = "fibre cut <script>document.title='owned'</script>"
# 2 days at 15 min ending FIXED_END (2026-11-20 12:00): run 0 at 2026-11-18 12:15;
# runs 100..103 fail -> outage from 2026-11-19 13:15 to the passing run 104 at 14:15,
# 60 min; claim deadline = end + 24 h = 2026-11-20 14:15.
OUTAGE_ID = "new-20261119T1315Z"
START, END = dt.datetime(2026, 11, 19, 13, 15, tzinfo=UTC), dt.datetime(2026, 11, 19, 14, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    folder = tmp_path_factory.mktemp("claim")
    fx = generate(folder, end=FIXED_END, days=2, interval_min=15, circuits=("old", "new"),
                  outages=(Planted("new", 100, 4, "fail"),), round_values=True)
    text = fx.profile_path.read_text().replace("provider: Carrier B (fibre)", f'provider: "{EVIL_PROVIDER}"')
    text = text.replace("    reflector: 127.0.0.1:8620\n  - name: backup",
                        "    reflector: 127.0.0.1:8620\n    contract: {availability_pct: 99.9, "
                        "response_hours: {P1: 1, P2: 4}, resolve_hours: {P1: 4, P2: 8}}\n  - name: backup")
    fx.profile_path.write_text(text)
    st = Store(fx.db_path)
    # a path trace stored by a partial run 20 min into the outage
    rid = st.begin_run("Harbour Street office", {}, "test", started_at=START + dt.timedelta(minutes=20),
                       kind="partial")
    hops = [{"ttl": 1, "address": "192.0.2.1", "rtt_ms": 0.4, "loss_pct": 0.0},
            {"ttl": 2, "address": "198.51.100.9", "rtt_ms": 3.1, "loss_pct": 100.0}]
    st.add_circuit_result(rid, "new", "NO-GO", [], {"path": {"probe": "path", "hops": hops}})
    rid = st.finish_run(rid, "NO-GO", finished_at=START + dt.timedelta(minutes=21))
    st.open_ticket("Harbour Street office", "new", "NW-4411", "P2", by="ann", at=START + dt.timedelta(minutes=10),
                   outage_id=OUTAGE_ID, note=EVIL_NOTE)
    st.close()
    assert "contract:" in fx.profile_path.read_text()
    return fx


def claim(fx, out, *extra, as_of=FIXED_END + dt.timedelta(minutes=1)):
    return run_cli("claim", str(fx.profile_path), OUTAGE_ID, "--out", str(out), "--db", str(fx.db_path),
                   "--as-of", as_of.isoformat(), "--json", *extra)


def test_claim_json_carries_outage_evidence_deadline(site, tmp_path):
    r = claim(site, tmp_path / "c")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)["claim"]
    written = json.loads((tmp_path / "c" / "claim.json").read_text())
    assert {k: written[k] for k in ("outage", "claim_by", "state", "ticket")} == \
        {k: d[k] for k in ("outage", "claim_by", "state", "ticket")}
    o = d["outage"]
    assert (o["id"], o["start"], o["end"], o["duration_s"]) == \
        (OUTAGE_ID, "2026-11-19T13:15:00Z", "2026-11-19T14:15:00Z", 3600.0)
    assert d["claim_by"] == "2026-11-20T14:15:00Z" and d["state"] == "open"
    assert d["provider"] == EVIL_PROVIDER and d["circuit"] == "new"
    ids = {e["id"] for e in d["evidence"]}
    assert {"stream.loss_up", "stream.loss_down"} <= ids                       # planted: 4-6 % and 3-5 % loss
    loss = next(e for e in d["evidence"] if e["id"] == "stream.loss_up")
    assert loss["at"] == "2026-11-19T13:15:00Z" and 4.0 <= loss["measured"] <= 6.0 and loss["required"] == 1.0
    assert [x["at"] for x in d["runs_before"]] == ["2026-11-19T12:30:00Z", "2026-11-19T12:45:00Z",
                                                  "2026-11-19T13:00:00Z"]
    assert d["runs_after"][0]["at"] == "2026-11-19T14:15:00Z" and d["runs_after"][0]["verdict"] in ("GO", "WARN")
    assert d["path"]["at"] == "2026-11-19T13:35:00Z" and d["path"]["hops"][1]["loss_pct"] == 100.0
    assert d["contract"] == {"sla_claim_hours": 24.0, "availability_pct": 99.9,
                             "response_hours": {"P1": 1.0, "P2": 4.0}, "resolve_hours": {"P1": 4.0, "P2": 8.0}}
    assert d["ticket"]["ref"] == "NW-4411" and d["ticket"]["events"][0]["note"] == EVIL_NOTE


def test_claim_states_deadline_passed_then_claimed(site, tmp_path):
    late = dt.datetime(2026, 11, 20, 14, 16, tzinfo=UTC)       # a minute after the deadline
    r = claim(site, tmp_path / "a", as_of=late)
    assert r.returncode == 0 and json.loads(r.stdout)["claim"]["state"] == "deadline passed"
    r = claim(site, tmp_path / "b", "--filed", "--at", "2026-11-20T09:00Z", "--by", "ann", "--note", "case 881",
              as_of=late)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["claim"]["state"] == "claimed"


@pytest.mark.parametrize("outage, message", [
    ("new-20261119T1300Z", "no outage 'new-20261119T1300Z' (did you mean 'new-20261119T1315Z'?)"),
    ("nwe-20261119T1315Z", "no circuit 'nwe' (did you mean 'new'?)"),
    ("new-yesterday", "expected CIRCUIT-YYYYMMDDTHHMMZ"),
])
def test_claim_bad_id_exit_2(site, tmp_path, outage, message):
    r = run_cli("claim", str(site.profile_path), outage, "--out", str(tmp_path), "--db", str(site.db_path),
                "--as-of", "2026-11-20T12:01Z")
    assert r.returncode == 2 and message in r.stderr and r.stderr.startswith("cutover: "), r.stderr


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)

    def handle_data(self, data):
        self.text.append(data)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (bash scripts/sysdeps.sh installs it)")
def test_claim_html_in_headless_chromium_escapes_everything(site, tmp_path):
    r = claim(site, tmp_path / "c")
    assert r.returncode == 0, r.stderr
    page = tmp_path / "c" / "claim.html"
    markup = page.read_text()
    assert "http://" not in markup and "https://" not in markup and "<script" not in markup
    flags = CHROME_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.resolve().as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    parsed = _Tags()
    parsed.feed(dom.stdout)
    assert "script" not in parsed.tags                                  # the browser built no script element
    text = "".join(parsed.text)
    assert EVIL_PROVIDER in text and EVIL_NOTE in text                  # shown as text, as typed
    assert OUTAGE_ID in text and "2026-11-20T14:15:00Z" in text and "198.51.100.9" in text
    assert "<title>SLA claim: Harbour Street office / new / new-20261119T1315Z</title>" in dom.stdout
    png = tmp_path / "claim.png"
    shot = subprocess.run([CHROMIUM, *flags, f"--screenshot={png}", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    width, height, samples = _png_pixels(png.read_bytes())
    assert (width, height) == (1200, 2000)
    colours = set(samples)
    assert len(colours) > 5                                             # text and the state badge, not blank
    # the state badge in its colour: orange #d9822b while open, green #1e8e3e once claimed
    # (the module's store may hold the filing of test_claim_states_deadline_passed_then_claimed)
    badge = {"open": (0xD9, 0x82, 0x2B), "claimed": (0x1E, 0x8E, 0x3E)}[json.loads(r.stdout)["claim"]["state"]]
    assert badge in colours, f"no {badge} state badge"


def test_report_lists_outage_ids_and_claim_states(site, tmp_path):
    """`cutover report` names each outage by the id `cutover claim` takes, in its
    text and in report.json (outages[].id and claims[])."""
    r = run_cli("report", str(site.profile_path), "--since", "2d", "--db", str(site.db_path), "--as-of",
                "2026-11-20T12:01Z", "--format", "json", "--report-dir", str(tmp_path / "rep"))
    assert r.returncode == 0, r.stderr
    assert f"outage {OUTAGE_ID}: failed, 1h, claim by 2026-11-20 14:15 UTC" in r.stdout
    d = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert [o["id"] for o in d["outages"]] == [OUTAGE_ID]
    assert [c["outage_id"] for c in d["claims"]] == [OUTAGE_ID]
    assert d["claims"][0]["state"] in ("open", "claimed")        # claimed once the states test filed it
    assert d["claims"][0]["ticket"] == "P2 NW-4411"
