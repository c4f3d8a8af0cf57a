"""Turns one engine run's per-packet arrays into the metrics of DESIGN.md §5.

Kept apart from the send/receive loop (probes/engine.py) so the loop stays
small; the formulas themselves live in :mod:`probes.stats`.

Delays per direction carry the unknown offset between our clock and the
reflector's; every figure built from them (IPDV, RFC 3550 jitter, lateness
against the smallest delay) uses differences only, so the offset cancels.
"""

from __future__ import annotations

import bisect
import math

from probes import emodel, stats
from probes.enginerun import SHORT_REPLY_B, EngineResult, Run

NTP_PER_NS = 4.294967296          # 2^32 / 1e9
NS_PER_NTP = 1e9 / 2 ** 32        # one NTP fraction unit in ns
LATE_SEND_FRACTION_LIMIT = 0.001  # > 0.1 % of sends later than one ptime: sender-limited


def analyse(res: EngineResult, run: Run) -> None:
    """Fill ``res`` from one run's record (reads ``run`` only)."""
    calls, sent = run.calls, run.sent
    received = len(run.order)
    res.packets = {"sent": sent, "reflected": None, "received": received}
    res.sender = _sender_health(run)
    res.replies = {"used": received, "short": run.short, "unusable": run.foreign}
    if sent == 0 or received == 0:
        res.measured = False
        res.loss_pct = stats.loss_pcts(sent, None, received) if sent else {}
        return
    res.measured = True
    mono0, ntp0 = run.mono0, run.ntp0
    tx, rx, t2a, t3a, rseq = run.tx, run.rx, run.t2, run.t3, run.rseq
    buffer_ms = run.jitter_buffer_ms

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
        # this call's packets: every calls-th slot (C-speed slices of the run's arrays)
        rxs = rx[c:sent:calls]
        n_sent_c = len(rxs)
        got = [k for k, r in enumerate(rxs) if r]          # sequence index of each received packet
        n_rx_c = len(got)
        max_rs = max(rseq[c:sent:calls], default=-1)       # lost packets hold -1
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
        if not got:
            continue
        txs, t2s, t3s = tx[c:sent:calls], t2a[c:sent:calls], t3a[c:sent:calls]
        # one-way delays carry the clock offset (cancels in every figure built from them)
        up_v = [((t2s[k] - ntp0) * NS_PER_NTP - (txs[k] - mono0)) * 1e-6 for k in got]
        down_v = [((rxs[k] - mono0) - (t3s[k] - ntp0) * NS_PER_NTP) * 1e-6 for k in got]
        rtt_v = [((rxs[k] - txs[k]) - (t3s[k] - t2s[k]) * NS_PER_NTP) * 1e-6 for k in got]
        rtt_all.extend(rtt_v)
        up_all.extend(up_v)
        down_all.extend(down_v)
        ipdv_up.extend(stats.abs_ipdv_indexed(got, up_v))
        ipdv_down.extend(stats.abs_ipdv_indexed(got, down_v))
        ipdv_rtt.extend(stats.abs_ipdv_indexed(got, rtt_v))
        # RFC 3550 jitter in arrival order: at the reflector (its receive timestamps) and here;
        # usually that is sequence order, checked at C speed before sorting by key
        t2_got = [t2s[k] for k in got]
        rx_got = [rxs[k] for k in got]
        if t2_got == sorted(t2_got):
            jit_up.append(stats.rfc3550_jitter(up_v))
        else:
            jit_up.append(stats.rfc3550_jitter([up_v[i] for i in sorted(range(n_rx_c), key=t2_got.__getitem__)]))
        if rx_got == sorted(rx_got):
            jit_down.append(stats.rfc3550_jitter(down_v))
        else:
            by_rx = sorted(range(n_rx_c), key=rx_got.__getitem__)
            jit_down.append(stats.rfc3550_jitter([down_v[i] for i in by_rx]))
            reordered += stats.reorder_count(got[i] for i in by_rx)

    res.direction_split = split
    res.packets["reflected"] = reflected if split else None
    res.loss_pct = stats.loss_pcts(sent, reflected if split else None, received)
    res.rtt_ms = stats.summary(rtt_all)
    # mean over the calls that got replies (a call with none has no jitter to average)
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
    s_up = emodel.score(run.codec, one_way, ppl_up, jitter_buffer_ms=buffer_ms, ptime_ms=run.ptime_ms)
    s_down = emodel.score(run.codec, one_way, ppl_down, jitter_buffer_ms=buffer_ms, ptime_ms=run.ptime_ms)
    worse = s_up if s_up.mos <= s_down.mos else s_down
    res.mos_up, res.mos_down = s_up.mos, s_down.mos
    res.mos, res.r_factor = worse.mos, worse.r_factor

    # ---- DSCP: what the reflector saw (CoS TLV) and what came back to us
    if run.dscp is not None:
        # the most common value: one re-marking hop would show as a different majority
        seen = max(range(64), key=lambda i: run.dscp2[i]) if any(run.dscp2) else None
        back = max(range(256), key=lambda i: run.tos_down[i]) >> 2 if any(run.tos_down) else None
        res.dscp = {"sent": run.dscp, "received": seen,
                    "preserved": (seen == run.dscp) if seen is not None else None,
                    "down_received": back}
    else:
        res.dscp = {"sent": None, "received": None, "preserved": None}
    if run.short:
        res.notes.append(
            f"{run.short} replies were {SHORT_REPLY_B}-octet TWAMP-Light replies (RFC 5357 without the "
            "trailing MBZ and Sender TTL octets): RTT and per-direction delays measured from their "
            "timestamps; no Sender TTL (hop count) and no Class of Service TLV (DSCP at the far end "
            "unknown)")
    if run.no_ssid:
        res.notes.append(f"{run.no_ssid} replies left the Session-Sender Identifier zero (an RFC 5357 "
                         "responder): used because this run has one call; with more calls they could "
                         "not be told apart")
    if run.foreign:
        res.notes.append(f"{unusable_replies(run)}; ignored")
    res.duration_s = round(run.elapsed_s, 3)


def unusable_replies(run: Run) -> str:
    """The datagrams that came back but are no reply to this run, in words."""
    n_b, head = run.foreign_sample or (0, b"")
    return (f"{run.foreign} datagram{'s' if run.foreign != 1 else ''} came back that "
            f"{'are' if run.foreign != 1 else 'is'} not a STAMP or TWAMP-Light reply to this run's "
            f"packets (the first: {n_b} octets, starting {head.hex() or '-'}; a reply has at least "
            f"{SHORT_REPLY_B} octets and carries our session and sequence number)")


def _sender_health(run: Run) -> dict:
    t0, interval = run.t0, run.interval_ns
    tx = run.tx
    late = [(tx[j] - (t0 + int(j * interval))) / 1e6 for j in range(run.sent)]
    health = sender_health(late, run.rx_dropped, run.ptime_ms, run.calls)
    health["rx_timestamps"] = run.rx_timestamps
    health["send_mode"] = run.send_mode        # "gso" or "per-packet"
    return health


def sender_health(lateness_ms: list[float], rx_dropped: int, ptime_ms: float, calls: int = 1) -> dict:
    """The measuring machine's own health from per-send lateness (actual minus
    planned send time, ms) and the kernel's drops on our socket. ``limited``
    when p99 lateness exceeds max(1 ms, ptime / calls) (and more than two sends
    were that late), more than 0.1 % of sends were later than one ptime, or any
    reply was dropped (pure; tested).

    Why the spacing term: packets carry their actual send time, so lateness
    never enters delay, IPDV or jitter; it matters only when it bunches
    packets into bursts the path then has to queue. A send late by less than
    the gap to the next one (ptime / calls: 20 ms for one G.711 call, 10 µs for
    2000) bunches nothing. At scale the 1 ms floor (issue #5's bound) rules."""
    late = sorted(lateness_ms)
    health: dict = {"lateness_ms": {}, "rx_dropped": rx_dropped, "limited": False, "reason": None}
    if not late:
        return health
    p99 = stats.percentile(late, 99)
    health["lateness_ms"] = {"p50": stats.percentile(late, 50), "p99": p99, "max": late[-1]}
    reasons = []
    # p99 over the limit, but a couple of scheduler hiccups in a short run are not a pattern
    limit_ms = max(1.0, ptime_ms / max(1, calls))
    over_limit = len(late) - bisect.bisect_right(late, limit_ms)
    if p99 > limit_ms and over_limit > 2:
        reasons.append(f"send lateness p99 {p99:.2f} ms > {limit_ms:g} ms")
    very_late = len(late) - bisect.bisect_right(late, ptime_ms)
    health["late_sends"] = very_late          # the number itself, for callers that weigh it (capacity)
    if very_late > LATE_SEND_FRACTION_LIMIT * len(late):
        reasons.append(f"{very_late} sends more than one ptime ({ptime_ms:g} ms) late")
    if rx_dropped:
        reasons.append(f"kernel dropped {rx_dropped} replies on our receive socket")
    if reasons:
        health["limited"] = True
        health["reason"] = "; ".join(reasons)
    return health
