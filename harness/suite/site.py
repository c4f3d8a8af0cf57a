"""Suite step: the site's own checks, written as pytest tests (profile ``checks:``).

They run in a child pytest process per circuit (``--cutover-circuit``), so a
check that hangs, crashes or leaks state cannot take ``cutover check`` down;
outcomes come back through pytest's JUnit XML and become checks
``site.<test name>`` in the verdict, the store and every report.

Outcome mapping: passed -> pass; a failed assertion -> fail (with the
assertion's message as the reason, cause ``network``); any other exception in
the test or in a fixture -> error with cause ``measurement_gap`` (the check
could not reach its assertion: no outage); skipped tests are left out (a skip
is not evidence).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from harness.verdicts import GAP, NETWORK, Check
from probes.events import Emitter

NAME = "site"
TIMEOUT_S = 900.0          # whole site-check run per circuit
QUICK_TIMEOUT_S = 300.0


def applies(profile, circuit) -> bool:
    return bool(profile.checks)


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return ""


def parse_junit(xml_text: str) -> list[dict]:
    """pytest JUnit XML -> [{name, classname, outcome, message, type}]."""
    root = ET.fromstring(xml_text)
    tests = []
    for case in root.iter("testcase"):
        outcome, message, etype = "passed", "", ""
        for child in case:
            if child.tag in ("failure", "error"):
                message = child.get("message") or _first_line(child.text)
                etype = child.get("type") or ""
                if child.tag == "error":
                    outcome = "error"
                else:
                    # pytest writes the exception as "Type: text" in the message
                    head = message.split(":", 1)[0].strip()
                    outcome = "failed" if head == "AssertionError" or etype.endswith("AssertionError") \
                        else "error"
            elif child.tag == "skipped":
                outcome, message = "skipped", child.get("message") or ""
        tests.append({"name": case.get("name", "?"), "classname": case.get("classname", ""),
                      "outcome": outcome, "message": message, "type": etype})
    return tests


def measure(profile, circuit, *, quick: bool = False, progress=None, stop=None) -> dict:
    folder = profile.resolve_path(profile.checks)
    raw: dict = {"probe": "site", "checks_dir": str(folder), "circuit": circuit.name, "tests": [],
                 "errors": [], "partial": False, "measured": False}
    if not folder.exists():
        raw["errors"].append(f"site checks folder not found: {folder}")
        return raw
    with tempfile.TemporaryDirectory(prefix="cutover-site-") as tmp:
        junit = Path(tmp) / "junit.xml"
        argv = [sys.executable, "-m", "pytest", str(folder), "--cutover-profile", str(profile.path),
                "--cutover-circuit", circuit.name, f"--junitxml={junit}", "-q", "-p", "no:cacheprovider",
                "-o", "addopts=", "-o", "junit_family=xunit2", "--rootdir", str(folder)]
        if quick:
            argv += ["-m", "not slow"]
        timeout = QUICK_TIMEOUT_S if quick else TIMEOUT_S
        Emitter(NAME, progress)("start", f"site checks in {folder}")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                cwd=str(folder), start_new_session=True)
        deadline = time.monotonic() + timeout
        output = ""
        try:
            while True:
                try:
                    output, _ = proc.communicate(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if time.monotonic() > deadline or (stop is not None and stop.is_set()):
                        why = "stopped" if stop is not None and stop.is_set() else f"timed out after {timeout:.0f} s"
                        raw["errors"].append(f"site checks {why}")
                        raw["partial"] = True
                        os.killpg(proc.pid, signal.SIGKILL)   # our own child's process group
                        output, _ = proc.communicate()
                        break
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        raw["exit_code"] = proc.returncode
        raw["output_tail"] = output[-2000:]
        if junit.exists():
            try:
                raw["tests"] = parse_junit(junit.read_text())
                raw["measured"] = True
            except ET.ParseError as exc:
                raw["errors"].append(f"unreadable JUnit from site checks: {exc}")
        # pytest exit codes: 0 ok, 1 some failed, 5 none collected; anything else means it did not run properly
        if proc.returncode not in (0, 1, 5) and not raw["partial"]:
            raw["errors"].append(f"pytest exited {proc.returncode}: {_first_line(output[-500:]) or 'no output'}")
    return raw


def evaluate(profile, circuit, raw: dict) -> list[Check]:
    checks: list[Check] = []
    for t in raw.get("tests", []):
        name = t["name"].split("[", 1)[0]
        cid = f"site.{name}"
        if t["outcome"] == "passed":
            checks.append(Check(cid, "pass", "passed", "pass", reason=f"site check {name} passed"))
        elif t["outcome"] == "failed":
            msg = t["message"].removeprefix("AssertionError:").strip() or "assertion failed"
            checks.append(Check(cid, "fail", "failed", "pass", reason=_first_line(msg), cause=NETWORK))
        elif t["outcome"] == "error":
            # the site's own check could not run to its assertion: not the carrier's outage
            checks.append(Check(cid, "error", "error", "pass",
                                reason=f"site check raised {_first_line(t['message']) or 'an error'}", cause=GAP))
    for e in raw.get("errors", []):
        checks.append(Check("site.run", "error", None, "pass", reason=e, cause=GAP))
    return checks
