"""Turns one engine run's per-packet arrays into the metrics of DESIGN.md §5.

Kept apart from the send/receive loop (probes/engine.py) so the loop stays
small; the formulas themselves live in :mod:`probes.stats`.

Delays per direction carry the unknown offset between our clock and the
reflector's; every figure built from them (IPDV, RFC 3550 jitter, lateness
against the smallest delay) uses differences only, so the offset cancels.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from probes import emodel, stats

if TYPE_CHECKING:  # pragma: no cover
    from probes.engine import Engine, EngineResult, _Run

NTP_PER_NS = 4.294967296          # 2^32 / 1e9
LATE_SEND_FRACTION_LIMIT = 0.001  # > 0.1 % of sends later than one ptime: sender-limited


def analyse(eng: "Engine", res: "EngineResult", run: "_Run", calls: int, per_call: int,
            sent: int, elapsed_s: float) -> None:
    cfg = eng.config
    received = len(run.order)
    res.packets = {"sent": sent, "reflected": None, "received": received}
    res.sender = _sender_health(eng, run, sent, cfg.ptime_ms)
    if sent == 0 or received == 0:
        res.measured = False
        res.loss_pct = stats.loss_pcts(sent, None, received) if sent else {}
        return
    res.measured = True
    mono0, ntp0 = eng._mono0, eng._ntp0
    tx, rx, t2a, t3a, rseq = run.tx, run.rx, run.t2, run.t3, run.rseq
    buffer_ms = cfg.jitter_buffer_ms

    # ---- direction split: stateful reflector with per-session numbering
    split = run.stateful_votes > 0
    reflected = 0
    rtt_all: list[float] = []
    up_all: list[float] = []
    down_all: list[float] = []
    ipdv_up: list[float] = []
    ipdv_down: list[float] = []
    ipdv_rtt: list[float] = []
    jit_up: list[float] = []
    jit_down: list[float] = []
    reordered = 0
    for c in range(calls):
        idx = range(c, sent, calls)
        n_sent_c = len(idx)
        up_by_seq: list[float | None] = []
        down_by_seq: list[float | None] = []
        rtt_by_seq: list[float | None] = []
        arrivals_up: list[tuple[int, float]] = []
        arrivals_down: list[tuple[int, int, float]] = []
        max_rs = -1
        n_rx_c = 0
        for k, j in enumerate(idx):
            r = rx[j]
            if not r:
                up_by_seq.append(None)
                down_by_seq.append(None)
                rtt_by_seq.append(None)
                continue
            n_rx_c += 1
            t2 = t2a[j]
            t3 = t3a[j]
            dwell_ns = (t3 - t2) / NTP_PER_NS
            rtt = ((r - tx[j]) - dwell_ns) / 1e6
            up = ((t2 - ntp0) / NTP_PER_NS - (tx[j] - mono0)) / 1e6
            down = ((r - mono0) - (t3 - ntp0) / NTP_PER_NS) / 1e6
            up_by_seq.append(up)
            down_by_seq.append(down)
            rtt_by_seq.append(rtt)
            arrivals_up.append((t2, up))
            arrivals_down.append((r, k, down))
            if rseq[j] > max_rs:
                max_rs = rseq[j]
        if split:
            refl_c = max_rs + 1
            tail = run.tail_count.get(c)
            if tail is not None:
                # the reflector's own count (tail probe), within what is possible
                refl_c = max(refl_c, min(tail, n_sent_c))
            if not (n_rx_c <= refl_c <= n_sent_c):
                split = False          # numbering is not per session: cannot split
                res.notes.append("reflector sequence numbers are not per session; "
                                 "loss is not split by direction")
            reflected += refl_c
        rtt_all.extend(v for v in rtt_by_seq if v is not None)
        up_all.extend(v for v in up_by_seq if v is not None)
        down_all.extend(v for v in down_by_seq if v is not None)
        ipdv_up.extend(stats.abs_ipdv(up_by_seq))
        ipdv_down.extend(stats.abs_ipdv(down_by_seq))
        ipdv_rtt.extend(stats.abs_ipdv(rtt_by_seq))
        arrivals_up.sort()
        arrivals_down.sort()
        jit_up.append(stats.rfc3550_jitter([u for _, u in arrivals_up]))
        jit_down.append(stats.rfc3550_jitter([d for _, _, d in arrivals_down]))
        reordered += stats.reorder_count(k for _, k, _ in arrivals_down)

    res.direction_split = split
    res.packets["reflected"] = reflected if split else None
    res.loss_pct = stats.loss_pcts(sent, reflected if split else None, received)
    res.rtt_ms = stats.summary(rtt_all)
    res.jitter_ms = {"up": math.fsum(jit_up) / len(jit_up), "down": math.fsum(jit_down) / len(jit_down),
                     "up_max": max(jit_up), "down_max": max(jit_down)}
    res.ipdv_ms = {"up": stats.summary(ipdv_up, stats.IPDV_KEYS),
                   "down": stats.summary(ipdv_down, stats.IPDV_KEYS),
                   "rtt": stats.summary(ipdv_rtt, stats.IPDV_KEYS)}
    res.reorder_pct = 100.0 * reordered / received
    res.duplicates = run.duplicates

    # ---- late packets (beyond the de-jitter buffer), per direction
    late_up = stats.late_count(up_all, buffer_ms)
    late_down = stats.late_count(down_all, buffer_ms)
    floor_up, floor_down = min(up_all), min(down_all)
    late_any = sum(1 for u, d in zip(up_all, down_all)
                   if u - floor_up > buffer_ms or d - floor_down > buffer_ms)
    res.late_pct = 100.0 * late_any / received
    res.late_pct_dir = {"up": 100.0 * late_up / received, "down": 100.0 * late_down / received}

    # ---- MOS per listening direction
    one_way = res.rtt_ms["mean"] / 2.0
    res.one_way_ms = one_way
    if split:
        ppl_up = res.loss_pct["up"] + 100.0 * late_up / max(1, reflected)
        ppl_down = res.loss_pct["down"] + 100.0 * late_down / received
    else:
        half = res.loss_pct["total"] / 2.0
        ppl_up = half + 100.0 * late_up / received
        ppl_down = half + 100.0 * late_down / received
        res.notes.append("stateless reflector: loss not split by direction; MOS uses half the "
                         "total loss per direction")
    s_up = emodel.score(eng.codec, one_way, ppl_up, jitter_buffer_ms=buffer_ms, ptime_ms=cfg.ptime_ms)
    s_down = emodel.score(eng.codec, one_way, ppl_down, jitter_buffer_ms=buffer_ms, ptime_ms=cfg.ptime_ms)
    worse = s_up if s_up.mos <= s_down.mos else s_down
    res.mos_up, res.mos_down = s_up.mos, s_down.mos
    res.mos, res.r_factor = worse.mos, worse.r_factor

    # ---- DSCP: what the reflector saw (CoS TLV) and what came back to us
    if cfg.dscp is not None:
        # the most common value: one re-marking hop would show as a different majority
        seen = max(range(64), key=lambda i: run.dscp2[i]) if any(run.dscp2) else None
        back = max(range(256), key=lambda i: run.tos_down[i]) >> 2 if any(run.tos_down) else None
        res.dscp = {"sent": cfg.dscp, "received": seen,
                    "preserved": (seen == cfg.dscp) if seen is not None else None,
                    "down_received": back}
    else:
        res.dscp = {"sent": None, "received": None, "preserved": None}
    if run.foreign:
        res.notes.append(f"{run.foreign} datagrams that were not replies to this run were ignored")
    res.duration_s = round(elapsed_s, 3)


def _sender_health(eng: "Engine", run: "_Run", sent: int, ptime_ms: int) -> dict:
    t0, interval = eng._t0, eng._interval_ns
    tx = run.tx
    late = sorted((tx[j] - (t0 + int(j * interval))) / 1e6 for j in range(sent))
    health: dict = {"lateness_ms": {}, "rx_dropped": run.rx_dropped, "limited": False, "reason": None,
                    "rx_timestamps": getattr(eng, "_rx_timestamps", None)}
    if late:
        health["lateness_ms"] = {"p50": stats.percentile(late, 50), "p99": stats.percentile(late, 99),
                                 "max": late[-1]}
        reasons = []
        p99 = health["lateness_ms"]["p99"]
        # p99 > 1 ms, but a couple of scheduler hiccups in a short run are not a pattern
        over_1ms = len(late) - _bisect_le(late, 1.0)
        if p99 > 1.0 and over_1ms > 2:
            reasons.append(f"send lateness p99 {p99:.2f} ms > 1 ms")
        very_late = len(late) - _bisect_le(late, ptime_ms)
        if very_late > LATE_SEND_FRACTION_LIMIT * len(late):
            reasons.append(f"{very_late} sends more than one ptime ({ptime_ms} ms) late")
        if run.rx_dropped:
            reasons.append(f"kernel dropped {run.rx_dropped} replies on our receive socket")
        if reasons:
            health["limited"] = True
            health["reason"] = "; ".join(reasons)
    return health


def _bisect_le(sorted_values: list[float], x: float) -> int:
    import bisect
    return bisect.bisect_right(sorted_values, x)
