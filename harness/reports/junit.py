"""JUnit XML: one testcase per check, so CI systems and ticketing tools can
consume go/no-go results.

Shape (what Jenkins, GitLab, Azure DevOps and junitparser read): a
``<testsuites>`` root, one ``<testsuite>`` per circuit (the checks of its
latest run, or of the run given to ``write_reports(run_id=...)``), one
``<testcase name="stream.mos" classname="cutover.<site>.<circuit>">`` per check.
``fail`` -> ``<failure>``, ``error`` (could not measure) -> ``<error>``, both
with the one-line reason as ``message``; ``warn`` passes with the reason in
``<system-out>`` (JUnit has no "passed, but close"). Counts on every suite and
on the root are computed from the cases written.

Every text and attribute passes :func:`harness.escape.xml_text` on the way out
(one pass over the finished tree), so a control character in a name or reason
can never make the file unreadable to a CI system.
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from harness.escape import xml_text
from harness.verdicts import circuit_verdict, fmt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "site"


def _ts(t: dt.datetime) -> str:
    """xs:dateTime without a zone, as the JUnit XSD and most consumers expect (UTC)."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def render(report) -> str:
    root = ET.Element("testsuites", name=f"cutover readiness: {report.site}")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    site_slug = _slug(report.site)
    for circuit, checks in report.junit_checks.items():
        ch = report.analysis.circuits.get(circuit)
        when = report.junit_run_at.get(circuit, report.generated_at)
        suite = ET.SubElement(root, "testsuite", name=f"{report.site} / {circuit}", timestamp=_ts(when),
                              hostname="cutover", time="0")
        props = ET.SubElement(suite, "properties")
        for k, v in (("circuit", circuit), ("role", ch.role if ch else ""), ("verdict", circuit_verdict(checks)),
                     ("run_id", "" if report.run_id is None else str(report.run_id)),
                     ("tool_version", report.tool_version)):
            ET.SubElement(props, "property", name=k, value=str(v))
        counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        for c in checks:
            case = ET.SubElement(suite, "testcase", name=c.id, classname=f"cutover.{site_slug}.{_slug(circuit)}",
                                 time="0")
            detail = (f"measured: {fmt(c.measured)} {c.unit}".rstrip() + "\n"
                      + f"required: {fmt(c.required)} {c.unit}".rstrip() + "\n"
                      + f"margin: {fmt(c.margin)}\nstatus: {c.status}\n")
            counts["tests"] += 1
            if c.status == "fail":
                el = ET.SubElement(case, "failure", message=c.reason or c.id, type="fail")
                el.text = detail
                counts["failures"] += 1
            elif c.status == "error":
                el = ET.SubElement(case, "error", message=c.reason or c.id, type="error")
                el.text = detail
                counts["errors"] += 1
            else:
                out = ET.SubElement(case, "system-out")
                out.text = (f"WARN: {c.reason}" if c.status == "warn" else c.reason) + "\n" + detail
        for k, v in counts.items():
            suite.set(k, str(v))
            totals[k] += v
    for k, v in totals.items():
        root.set(k, str(v))
    root.set("time", "0")
    for el in root.iter():
        if el.text:
            el.text = xml_text(el.text)
        for k, v in el.attrib.items():
            el.set(k, xml_text(v))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
