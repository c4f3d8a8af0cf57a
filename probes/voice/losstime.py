"""Loss in time: gaps, bursts, the burst ratio and the worst windows (pure).

Why: averages hide what a caller hears. 2 % loss spread evenly is a fine call
(G.711 packet-loss concealment fills single 20 ms holes); 2 % lost in one
second is a dropped sentence, and a failover that silences every call for
3 s drops calls. The figures here describe *when* packets were lost, from a
loss pattern: one boolean per packet in send order (True = lost), one
pattern per call.

Figures (every one tested against a hand calculation in tests/test_losstime.py):

* **max gap** (``max_gap_ms``): the longest run of consecutive lost packets
  times the packet interval (ptime). A 60 s stream with one 2 s silence at
  20 ms ptime: 100 packets in a row, 2000 ms.
* **RFC 3611 §4.7.2 burst and gap metrics**, Gmin = 16: a *burst* is the
  longest stretch that starts and ends with a lost packet and holds no run
  of Gmin or more received packets; a lone lost packet between runs of at
  least Gmin received ones belongs to the gap (as RFC 3611 Appendix A.2
  counts it, so a burst holds at least two losses). *Gaps* are the stretches
  between bursts (and before the first and after the last). Densities are
  the lost fraction within bursts / gaps (percent); durations are the mean
  length of a burst / gap in ms. Only loss counts here: packets too late for
  the jitter buffer are not in the pattern.
* **burst ratio** (ITU-T G.107 BurstR): the two-state Markov fit of the loss
  pattern: p = P(lost | previous received), q = P(received | previous lost),
  BurstR = 1 / (p + q). Independent (random) loss has q = 1 - p and so
  BurstR = 1; losses that come in runs give BurstR > 1, and the E-model
  (probes/voice/emodel.py) then lowers R for the same average loss. A
  Gilbert-Elliott path with state changes p (good->bad) and r (bad->good)
  that loses every packet in the bad state gives 1 / (p + r). Transitions are
  counted within each call and summed over calls. No loss: undefined (None;
  the E-model uses 1).
* **worst windows**: the highest loss (percent) over every window of 15 s
  and of 200 ms, sliding packet by packet over the run's schedule (all calls
  together: the calls are spread evenly over the ptime, so W consecutive
  packets of the schedule are W x ptime / calls of time), and the highest
  jitter in a 15 s window: the mean |D| of consecutive received packets
  (RFC 3550's D; the running jitter J estimates this mean). UC vendors state
  requirements this way ("loss < 1 % in any 15 s"). A run shorter than the
  window has one window: the whole run.
* **interruptions**: per call, runs of lost packets (round trip) lasting at
  least INTERRUPTION_MIN_MS, merged across calls where they overlap in time.
  Below 100 ms, packet-loss concealment hides a hole (G.711 Appendix I
  conceals up to 60 ms); beyond it a listener hears a dropout.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from collections import deque
from itertools import accumulate, compress, repeat
from operator import not_, sub
from typing import Sequence

GMIN = 16                        # RFC 3611 §4.7.2's recommended Gmin
INTERRUPTION_MIN_MS = 100.0      # shorter silences are concealed (see module doc)
WINDOWS_MS = {"15s": 15_000.0, "200ms": 200.0}


def for_each(it) -> None:
    """Run an iterator for its effects at C speed."""
    deque(it, maxlen=0)


def _as_bytes(lost: Sequence[bool]) -> bytes:
    """The pattern as one octet per packet (0 received, 1 lost): scanned at C speed."""
    return bytes(map(bool, lost))


_RUN = re.compile(b"\x01+")


def runs(lost: Sequence[bool]) -> list[tuple[int, int]]:
    """(first index, length) of every run of consecutive True values."""
    return [(m.start(), m.end() - m.start()) for m in _RUN.finditer(_as_bytes(lost))]


def max_gap_ms(patterns: Sequence[Sequence[bool]], ptime_ms: float) -> float:
    """The longest run of lost packets over all patterns, in ms (0 without loss)."""
    longest = max((n for p in patterns for _s, n in runs(p)), default=0)
    return float(longest * ptime_ms)


@dataclass
class MarkovCounts:
    """Transitions between received (good) and lost (bad) packets."""
    good: int = 0          # received packets followed by another packet
    good_bad: int = 0      # ... of which the next was lost
    bad: int = 0           # lost packets followed by another packet
    bad_good: int = 0      # ... of which the next was received

    def add(self, lost: Sequence[bool]) -> "MarkovCounts":
        b = _as_bytes(lost)
        head = b[:-1]                      # packets followed by another
        n_bad = head.count(1)
        self.bad += n_bad
        self.good += len(head) - n_bad
        self.good_bad += b.count(b"\x00\x01")     # a two-octet pattern cannot overlap itself
        self.bad_good += b.count(b"\x01\x00")
        return self


def burst_ratio(patterns: Sequence[Sequence[bool]]) -> float | None:
    """G.107 BurstR = 1 / (p + q) from the two-state Markov fit (see module doc);
    None when there is no loss (or nothing but loss)."""
    m = MarkovCounts()
    for pat in patterns:
        m.add(pat)
    if not m.good or not m.bad or not m.good_bad:
        return None
    p = m.good_bad / m.good
    q = m.bad_good / m.bad
    if p + q == 0:
        return None
    return 1.0 / (p + q)


def rfc3611(patterns: Sequence[Sequence[bool]], ptime_ms: float, gmin: int = GMIN) -> dict:
    """RFC 3611 burst/gap density (percent) and mean duration (ms) over all patterns."""
    burst_pk = burst_lost = gap_pk = gap_lost = n_bursts = n_gaps = 0
    for pat in patterns:
        n = len(pat)
        if not n:
            continue
        losses = list(compress(range(n), pat))
        # group losses: a new group starts after >= gmin received packets
        groups: list[list[int]] = []
        for i in losses:
            if groups and i - groups[-1][-1] - 1 < gmin:
                groups[-1].append(i)
            else:
                groups.append([i])
        bursts = [(g[0], g[-1]) for g in groups if len(g) >= 2]
        in_burst = sum(b - a + 1 for a, b in bursts)
        lost_in_burst = sum(len(g) for g in groups if len(g) >= 2)
        burst_pk += in_burst
        burst_lost += lost_in_burst
        n_bursts += len(bursts)
        gap_pk += n - in_burst
        gap_lost += len(losses) - lost_in_burst
        # gaps: before the first burst, between bursts, after the last (empty ones don't count)
        edges = [-1] + [x for a, b in bursts for x in (a, b)] + [n]
        n_gaps += sum(1 for k in range(0, len(edges), 2) if edges[k + 1] - edges[k] - 1 > 0)
    return {
        "gmin": gmin,
        "bursts": n_bursts,
        "burst_density_pct": 100.0 * burst_lost / burst_pk if burst_pk else 0.0,
        "burst_duration_ms": burst_pk * ptime_ms / n_bursts if n_bursts else 0.0,
        "gap_density_pct": 100.0 * gap_lost / gap_pk if gap_pk else 0.0,
        "gap_duration_ms": gap_pk * ptime_ms / n_gaps if n_gaps else 0.0,
    }


def worst_ratio(num: Sequence[float], den: Sequence[float] | None, window: int,
                min_den: float = 1.0) -> float | None:
    """max over every ``window`` consecutive positions of sum(num) / sum(den)
    (windows whose den sums below ``min_den`` are skipped; ``den`` None: all
    ones). One window (everything) when there are fewer positions. None when
    no window counts."""
    n = len(num)
    if n == 0:
        return None
    window = max(1, min(window, n))
    # window sums from prefix sums (C-speed map over the lists)
    pn = list(accumulate(num, initial=0))
    if den is None:
        return max(map(sub, pn[window:], pn)) / window
    pd = list(accumulate(den, initial=0))
    wn = list(map(sub, pn[window:], pn))
    wd = list(map(sub, pd[window:], pd))
    lo = max(min_den, 1e-12)
    return max((a / b for a, b in zip(wn, wd) if b >= lo), default=None)


def window_packets(window_ms: float, ptime_ms: float, calls: int) -> int:
    """Positions of the run's schedule (all calls) that one window spans."""
    return max(1, round(window_ms / ptime_ms * calls))


@dataclass
class Interruption:
    start_j: int                 # first lost position in the run's schedule (all calls)
    end_j: int                   # last lost position
    duration_ms: float           # the longest per-call silence in it
    call_ids: set[int]           # calls that fell silent


def interruptions(patterns: Sequence[Sequence[bool]], ptime_ms: float,
                  min_ms: float = INTERRUPTION_MIN_MS) -> list[Interruption]:
    """Silences of at least ``min_ms`` (per call, round trip), merged across calls
    where they overlap. ``patterns[c][k]`` is call c's packet k, which sits at
    position j = k * calls + c of the schedule."""
    calls = len(patterns)
    spans: list[tuple[int, int, float]] = []
    for c, pat in enumerate(patterns):
        for k, n in runs(pat):
            if n * ptime_ms >= min_ms:
                spans.append((k * calls + c, (k + n - 1) * calls + c, n * ptime_ms))
    spans.sort()
    out: list[Interruption] = []
    for a, b, ms in spans:
        if out and a <= out[-1].end_j + calls:        # overlaps (within one round of the schedule)
            last = out[-1]
            last.end_j = max(last.end_j, b)
            last.duration_ms = max(last.duration_ms, ms)
            last.call_ids.add(a % calls)
        else:
            out.append(Interruption(a, b, ms, {a % calls}))
    return out


REORDER_SLACK = 16    # a reflector's numbers may fall this far below their running maximum by reordering


def reached_pattern(got: Sequence[int], rseq: Sequence[int], n_sent: int,
                    tail: int | None = None) -> tuple[list[bool], list[int]] | None:
    """Which of one call's packets reached a stateful reflector, from its own
    numbering. ``got``: sequence indexes (0-based, ascending) of the replies we
    received; ``rseq``: the reflector's number on each; ``tail``: its count of
    the session's packets, if a tail probe learnt it.

    The reflector numbers what reaches it 0, 1, 2, ... in its arrival order, so
    a session numbered max + 1 packets (the tail probe may know more); the
    numbers without a reply are packets that reached it and whose replies were
    lost on the way back, the others were lost on the way there. A missing
    number h is placed on the first unplaced missing packet after the one
    numbered h - 1 (below every reply's number: the last missing packets before
    the first reply), so the count is exact and the place follows the
    reflector's order even when the path reorders packets.

    A number more than REORDER_SLACK below the running maximum is a far-end
    session *restart* (a NAT rebinding gives the reflector a new session that
    counts from 0, as does a restarted reflector): accounting continues in the
    new session. Returns (reached per packet, indexes of the first reply of
    each new session), or None when the numbers cannot be a per-session count
    (more numbered than sent, the same number twice, or restarts all the time).
    """
    reached = [False] * n_sent
    for_each(map(reached.__setitem__, got, repeat(True)))
    # sessions: split where a number falls more than REORDER_SLACK below the running maximum
    sessions: list[list[tuple[int, int]]] = []
    restarts: list[int] = []
    pairs = list(zip(got, rseq))
    while pairs:
        tops = list(accumulate((rs for _k, rs in pairs), max))
        cut = next((i for i in range(1, len(pairs)) if pairs[i][1] < tops[i - 1] - REORDER_SLACK), None)
        if cut is None:
            sessions.append(pairs)
            break
        sessions.append(pairs[:cut])
        restarts.append(pairs[cut][0])
        pairs = pairs[cut:]
        if len(restarts) > max(3, len(got) // 100):
            return None          # numbers that keep falling are no session count
    for si, sess in enumerate(sessions):
        lo = sessions[si - 1][-1][0] if si else -1                  # region between the neighbours'
        hi = sessions[si + 1][0][0] if si + 1 < len(sessions) else n_sent   # replies (exclusive)
        numbers = {rs for _k, rs in sess}
        if len(numbers) < len(sess):
            return None
        free = list(compress(range(lo + 1, hi), map(not_, reached[lo + 1:hi])))
        count = max(numbers) + 1
        if tail is not None and si == len(sessions) - 1:
            count = max(count, min(tail, len(numbers) + len(free)))
        if count == len(numbers):
            continue                                                 # every number has its reply
        holes = sorted(set(range(count)) - numbers)
        if len(holes) > len(free):
            return None
        by_rs = sorted((rs, k) for k, rs in sess)
        first_k = min(sess, key=lambda e: e[1])[0]                  # the reply numbered lowest
        used: set[int] = set()
        j = -1                                                       # by_rs[j]: largest rs < hole
        for h in holes:
            while j + 1 < len(by_rs) and by_rs[j + 1][0] < h:
                j += 1
            pick = None
            if j >= 0:
                after = by_rs[j][1]
                pick = next((k for k in free[bisect.bisect_right(free, after):] if k not in used), None)
            else:
                pick = next((k for k in reversed(free[:bisect.bisect_left(free, first_k)]) if k not in used),
                            None)
            if pick is None:
                pick = next(k for k in free if k not in used)
            used.add(pick)
            reached[pick] = True
    return reached, restarts
