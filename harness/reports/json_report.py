"""The JSON report: the same content as the Markdown/HTML, for tools.

Keys (more may be added, none renamed): ``site``, ``generated_at``, ``since``,
``until``, ``verdict``, ``run_id``, ``runs``, ``circuits`` (name -> runs,
passed, pass_pct, latest_verdict, latest_checks, metrics with latest / min /
mean / max / p95 / slope_per_day / trend, daily pass rates, outages),
``comparison`` (old vs new per metric), ``outages`` (every circuit, most
urgent first, with ``claim_by``), ``gate`` (as ``cutover gate --json``),
``summary`` (the plain-language sentences the Markdown and HTML open with),
``in_progress`` (the unfinished latest run left out of every figure),
``platforms`` (platform -> title, planned, circuit -> {meets, score, passed,
total, failed} or null) and ``drills`` (every stored failover drill).
Times are ISO 8601 UTC with a ``Z``.
"""

from __future__ import annotations

import json

from probes.result import clean


def render(report) -> str:
    return json.dumps(clean(report.to_dict()), indent=2, default=str) + "\n"
