"""Where a figure crosses its threshold: the one definition of the edges.

Every pass / warn / fail in cutover is decided here: the check builders of
harness/verdicts.py (``at_most``, ``at_least``), which every suite step's
``evaluate`` uses and harness/judgement.py names the one evaluator of, and
the capacity ramp's per-step judgement (probes/ramp.py ``judge``). So a ramp
step with 1.0 % loss against a 1.0 % limit passes, exactly as ``stream.loss_up``
at 1.0 % is within its limit in `cutover check` (there: a warn, inside the
band); at 1.001 % both fail. tests/test_ramp_edges.py holds the two to the
same edges.

It lives in probes because probes never import harness
(tests/test_architecture.py) and the ramp judges its steps while it runs.

The rules (docs/judgement.md):

- thresholds are limits, not targets: a figure **equal** to its limit is
  within it (``loss <= loss_pct``, ``MOS >= mos_min``);
- warn band: within :data:`WARN_BAND_PCT` (10 %) of the limit on the good
  side warns, MOS within :data:`MOS_WARN_BAND_PCT` (2.5 %: 4.0 -> warn below
  4.1, because the MOS scale is short). The ramp has no warn: a step carries
  its calls or not.

Pure: no I/O.
"""

from __future__ import annotations

# Everything warns within 10 % of its threshold, on the good side.
WARN_BAND_PCT = 10.0

# MOS warns within 2.5 % (4.0 -> warn below 4.1): the MOS scale is short, the
# generic 10 % would warn on nearly every G.711 call (4.4 is about the best).
MOS_WARN_BAND_PCT = 2.5


def above_limit(measured: float, limit: float) -> bool:
    """Lower is better (loss, jitter, delay): beyond the limit fails; equal is within."""
    return measured > limit


def below_minimum(measured: float, minimum: float) -> bool:
    """Higher is better (MOS, throughput, calls): short of the minimum fails; equal meets it."""
    return measured < minimum


def near_limit(measured: float, limit: float, band_pct: float = WARN_BAND_PCT) -> bool:
    """Within the limit but inside the warn band below it (``limit * (1 - band)``,
    exclusive); a limit of 0 has no band."""
    return measured > limit * (1 - band_pct / 100)


def near_minimum(measured: float, minimum: float, band_pct: float = WARN_BAND_PCT) -> bool:
    """Meeting the minimum but inside the warn band above it (``minimum * (1 + band)``, exclusive)."""
    return measured < minimum * (1 + band_pct / 100)
