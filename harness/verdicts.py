"""Checks and verdicts: a measurement against a requirement, and what it means.

A :class:`Check` records the measured value, the requirement, the margin
(signed so that positive is good, whichever way the requirement points) and a
one-line reason a person understands, e.g.::

    upstream 4.1 Mbit/s < 5.2 Mbit/s needed for 20 G.711 calls

Status order: ``pass < warn < fail < error``.

Warn band: a measurement that meets its requirement but lies within
:data:`WARN_BAND_PCT` (10 %) of the threshold, on the good side, is ``warn``:
it passes today but has no room to spare (a MOS of 4.05 against 4.0, 28 ms of
jitter against 30 ms). Steps may pass their own band (e.g. bandwidth against
the contract).

Verdicts: a circuit is ``GO`` when every check passes, ``WARN`` when the worst
is a warn, ``NO-GO`` when any check failed or could not be measured (error),
and ``NO-GO`` when it has no checks at all (no evidence is not a GO). The
overall verdict is the worst of the circuits'.

Cause classes: every check that does not pass says *whose* problem it is
(``cause``), because only the carrier's problems may become outages and SLA
claims (docs/judgement.md):

- ``network``: the circuit failed to deliver (loss, delay, jitter, too little
  throughput, unreachable while our side was sound).
- ``measurement_gap``: our side could not measure (no permission, bad or
  missing key file, missing tool, the measuring machine fell behind, the far
  end down on every circuit at once). A gap is never a pass and never an outage.
- ``internal_error``: an exception that is a bug in cutover (`cutover check`
  exits 70).

Checks stored before cause classes existed have ``cause = None``;
:func:`cause_of` reads them as ``network`` (what they were treated as then).

Pure: no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from probes import edges

STATUSES = ("pass", "warn", "fail", "error")
_RANK = {s: i for i, s in enumerate(STATUSES)}

GO, WARN, NO_GO = "GO", "WARN", "NO-GO"
VERDICTS = (GO, WARN, NO_GO)
_VRANK = {v: i for i, v in enumerate(VERDICTS)}

WARN_BAND_PCT = edges.WARN_BAND_PCT   # the edges themselves: probes/edges.py (shared with the ramp)

NETWORK, GAP, INTERNAL = "network", "measurement_gap", "internal_error"
CAUSES = (NETWORK, GAP, INTERNAL)

Value = float | int | str | bool | None


@dataclass(slots=True)
class Check:
    id: str                   # "<step>.<metric>", e.g. "stream.mos"
    status: str               # pass | warn | fail | error
    measured: Value = None    # number or text; None when not measured
    required: Value = None    # number or text
    unit: str = ""            # "ms", "%", "Mbit/s", "" (MOS)
    margin: float | None = None  # measured minus required, signed so positive is good
    reason: str = ""
    cause: str | None = None  # network | measurement_gap | internal_error (None when it passed)

    def __post_init__(self) -> None:
        if self.status not in _RANK:
            raise ValueError(f"unknown check status {self.status!r}; expected one of {', '.join(STATUSES)}")
        if self.cause is not None and self.cause not in CAUSES:
            raise ValueError(f"unknown check cause {self.cause!r}; expected one of {', '.join(CAUSES)}")

    @property
    def step(self) -> str:
        return self.id.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "measured": _jsonable(self.measured),
                "required": _jsonable(self.required), "unit": self.unit,
                "margin": _jsonable(self.margin), "reason": self.reason, "cause": self.cause}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Check":
        return cls(id=d["id"], status=d["status"], measured=d.get("measured"),
                   required=d.get("required"), unit=d.get("unit", ""), margin=d.get("margin"),
                   reason=d.get("reason", ""), cause=d.get("cause"))


def cause_of(check: Check) -> str | None:
    """The cause class of a check: None when it passed; checks stored before
    cause classes existed (cause None) count as ``network``."""
    if check.status == "pass":
        return None
    return check.cause or NETWORK


def with_cause(check: Check, cause: str, reason: str | None = None) -> Check:
    """The same check, attributed to ``cause`` (and optionally re-worded)."""
    return Check(check.id, check.status, check.measured, check.required, check.unit, check.margin,
                 check.reason if reason is None else reason, cause)


def _jsonable(v: Value) -> Value:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return None
        return round(v, 3)
    return v


# ---------------------------------------------------------------- formatting

def fmt(x: Value) -> str:
    """A number with about three significant digits, never in exponent form:
    4.05, 5.23, 87.2, 150, 1234, 0.05."""
    if x is None:
        return "n/a"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if isinstance(x, int):
        return str(x)
    if math.isnan(x) or math.isinf(x):
        return "n/a"
    if x == 0:
        return "0"
    decimals = max(0, 2 - int(math.floor(math.log10(abs(x)))))
    s = f"{x:.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _q(x: Value, unit: str) -> str:
    """Quantity with unit: '4.1 Mbit/s', '2 %', '4.05' (no unit for MOS)."""
    s = fmt(x)
    if not unit:
        return s
    return f"{s} {unit}"


def _tail(context: str) -> str:
    return f" {context}" if context else ""


# ---------------------------------------------------------------- check builders

def at_least(id: str, label: str, measured: float | None, required: float, unit: str = "", *,
             context: str = "needed", warn_band_pct: float = WARN_BAND_PCT) -> Check:
    """Higher is better (MOS, throughput). ``context`` completes the reason:
    'needed for 20 G.711 calls', 'minimum'.

    pass:  measured >= required * (1 + band)
    warn:  required <= measured < required * (1 + band)
    fail:  measured < required
    """
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return error(id, f"{label}: not measured", required=required, unit=unit)
    margin = measured - required
    if edges.below_minimum(measured, required):
        status = "fail"
        reason = f"{label} {_q(measured, unit)} < {_q(required, unit)}{_tail(context)}"
    elif edges.near_minimum(measured, required, warn_band_pct):
        status = "warn"
        reason = (f"{label} {_q(measured, unit)} is within {fmt(warn_band_pct)} % of "
                  f"{_q(required, unit)}{_tail(context)}")
    else:
        status = "pass"
        reason = f"{label} {_q(measured, unit)} >= {_q(required, unit)}{_tail(context)}"
    return Check(id, status, measured, required, unit, margin, reason, None if status == "pass" else NETWORK)


def at_most(id: str, label: str, measured: float | None, limit: float, unit: str = "", *,
            context: str = "limit", warn_band_pct: float = WARN_BAND_PCT) -> Check:
    """Lower is better (delay, jitter, loss). Margin = limit - measured.

    pass:  measured <= limit * (1 - band)
    warn:  limit * (1 - band) < measured <= limit
    fail:  measured > limit

    With a limit of 0 (e.g. 'no loss allowed') any measured 0 passes and the
    warn band is empty.
    """
    if measured is None or (isinstance(measured, float) and math.isnan(measured)):
        return error(id, f"{label}: not measured", required=limit, unit=unit)
    margin = limit - measured
    if edges.above_limit(measured, limit):
        status = "fail"
        reason = f"{label} {_q(measured, unit)} > {_q(limit, unit)}{_tail(context)}"
    elif edges.near_limit(measured, limit, warn_band_pct):
        status = "warn"
        reason = (f"{label} {_q(measured, unit)} is within {fmt(warn_band_pct)} % of the "
                  f"{_q(limit, unit)}{_tail(context)}")
    else:
        status = "pass"
        reason = f"{label} {_q(measured, unit)} <= {_q(limit, unit)}{_tail(context)}"
    return Check(id, status, measured, limit, unit, margin, reason, None if status == "pass" else NETWORK)


def expect(id: str, ok: bool, measured: Value, required: Value, reason: str, *,
           bad_status: str = "fail", cause: str = NETWORK) -> Check:
    """A yes/no check (DSCP preserved, direction split available)."""
    return Check(id, "pass" if ok else bad_status, measured, required, "", None, reason,
                 None if ok else cause)


def error(id: str, reason: str, *, required: Value = None, unit: str = "", cause: str = GAP) -> Check:
    """Could not measure: ``reason`` says why. By default our side could not
    measure (a measurement gap); pass ``cause=NETWORK`` when the circuit did
    not deliver (far end unreachable while our side was sound)."""
    return Check(id, "error", None, required, unit, None, reason, cause)


# ---------------------------------------------------------------- verdicts

def worst_status(statuses: Iterable[str]) -> str | None:
    ranked = [_RANK[s] for s in statuses]
    return STATUSES[max(ranked)] if ranked else None


def circuit_verdict(checks: Iterable[Check]) -> str:
    """GO if all pass; WARN if the worst is warn; NO-GO on any fail/error or no checks."""
    w = worst_status(c.status for c in checks)
    if w is None or w in ("fail", "error"):
        return NO_GO
    return WARN if w == "warn" else GO


def overall_verdict(verdicts: Iterable[str]) -> str:
    """Worst of the circuits' verdicts; NO-GO when there are none."""
    ranked = [_VRANK[v] for v in verdicts]
    return VERDICTS[max(ranked)] if ranked else NO_GO


def blocking(checks: Iterable[Check]) -> list[Check]:
    """The checks that make a circuit NO-GO (fail and error), worst first."""
    return sorted((c for c in checks if c.status in ("fail", "error")),
                  key=lambda c: -_RANK[c.status])
