"""Pure metric functions (docs/contract.md §4). No I/O; every function is unit-tested
against hand-computed sequences in tests/test_stats.py.

Conventions: times in milliseconds (floats); a lost packet is ``None`` in a
per-sequence list; "arrival order" lists contain only received packets.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Percentile ``p`` (0..100) of an ascending list, linear interpolation
    between closest ranks (numpy's default). NaN for an empty list."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    if n == 1:
        return float(sorted_values[0])
    rank = (n - 1) * min(max(p, 0.0), 100.0) / 100.0
    lo = int(math.floor(rank))
    hi = min(lo + 1, n - 1)
    frac = rank - lo
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac)


def summary(values: Iterable[float], keys: tuple[str, ...] = ("min", "mean", "p50", "p95", "p99", "max")
            ) -> dict[str, float]:
    """min/mean/percentiles/max of ``values``; {} when there are none."""
    v = sorted(values)
    if not v:
        return {}
    out: dict[str, float] = {}
    for k in keys:
        if k == "min":
            out[k] = float(v[0])
        elif k == "max":
            out[k] = float(v[-1])
        elif k == "mean":
            out[k] = math.fsum(v) / len(v)
        elif k.startswith("p"):
            out[k] = percentile(v, float(k[1:]))
    return out


IPDV_KEYS = ("mean", "p50", "p95", "max")


def rfc3550_jitter(transit_in_arrival_order: Sequence[float]) -> float:
    """RFC 3550 §6.4.1 interarrival jitter at the end of the sequence.

    ``transit`` is arrival time minus send time of each packet (any constant
    clock offset cancels), listed in arrival order. J += (|D| - J) / 16 where
    D is the difference of consecutive transits. 0.0 with fewer than 2 packets.
    """
    j = 0.0
    prev = None
    for t in transit_in_arrival_order:
        if prev is not None:
            j += (abs(t - prev) - j) / 16.0
        prev = t
    return j


def abs_ipdv(delay_by_seq: Sequence[float | None]) -> list[float]:
    """|IPDV| between consecutive sequence numbers (RFC 3393, irtt): for each
    pair (i-1, i) both received, |delay_i - delay_(i-1)|. Pairs with a loss
    are skipped, not bridged."""
    out = []
    prev = None
    for d in delay_by_seq:
        if d is not None and prev is not None:
            out.append(abs(d - prev))
        prev = d
    return out


def abs_ipdv_indexed(seqs: Sequence[int], values: Sequence[float]) -> list[float]:
    """Same as :func:`abs_ipdv` for received packets only: ``seqs`` (ascending)
    are their sequence numbers, ``values`` their delays; pairs count only when
    the sequence numbers are consecutive."""
    return [abs(values[i] - values[i - 1]) for i in range(1, len(seqs)) if seqs[i] - seqs[i - 1] == 1]


def loss_pcts(sent: int, reflected: int | None, received: int) -> dict[str, float]:
    """loss up/down/total in percent (docs/contract.md §4). Without a reflected count
    (stateless reflector) up and down are NaN."""
    total = 100.0 * (sent - received) / sent if sent else math.nan
    if reflected is None:
        return {"up": math.nan, "down": math.nan, "total": total}
    up = 100.0 * (sent - reflected) / sent if sent else math.nan
    down = 100.0 * (reflected - received) / reflected if reflected else math.nan
    return {"up": up, "down": down, "total": total}


def late_count(delays: Iterable[float], buffer_ms: float) -> int:
    """Packets whose delay, relative to the smallest delay seen, exceeds the
    de-jitter buffer (a phone would play them too late, i.e. drop them)."""
    d = list(delays)
    if not d:
        return 0
    floor = min(d)
    return sum(1 for x in d if x - floor > buffer_ms)


def reorder_count(seq_in_arrival_order: Iterable[int]) -> int:
    """Packets that arrived after a packet with a higher sequence number
    (RFC 4737's "reordered" singleton: seq below the running maximum)."""
    highest = None
    n = 0
    for s in seq_in_arrival_order:
        if highest is not None and s < highest:
            n += 1
        elif highest is None or s > highest:
            highest = s
    return n


def mode(values: Iterable[int]) -> int | None:
    """Most common value (ties: the smaller), None when empty."""
    counts: dict[int, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    if not counts:
        return None
    return min(counts, key=lambda k: (-counts[k], k))
