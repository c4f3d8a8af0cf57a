"""Turns one engine run's per-packet arrays into the metrics of docs/contract.md §4.

Kept apart from the send/receive loop (probes/engine/core.py) so the loop stays
small; the formulas themselves live in :mod:`probes.voice.stats`.

Delays per direction carry the unknown offset between our clock and the
reflector's; every figure built from them (IPDV, RFC 3550 jitter, lateness
against the smallest delay) uses differences only, so the offset cancels.
"""

from __future__ import annotations

import bisect
import math
import operator
from itertools import compress, repeat
from datetime import datetime, timezone
from typing import Any

from probes.voice import emodel, losstime, stats
from probes.wire import stamp
from probes.engine.run import EngineResult, Run
from probes.wire.stamp import SHORT_REPLY_B

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
    tx, rx, t2a, t3a = run.tx, run.rx, run.t2, run.t3
    buffer_ms = run.jitter_buffer_ms

    # ---- direction split: stateful reflector with per-session numbering
    reached_by_call, restarts = reached(run)
    split = reached_by_call is not None
    if run.stateful_votes > 0 and not split:
        res.notes.append("reflector sequence numbers are not per session; loss is not split by direction")
    reflected = sum(sum(r) for r in reached_by_call) if reached_by_call is not None else 0
    jitter_pos: dict[str, tuple[list[float], list[int]]] = {
        d: ([0.0] * sent, [0] * sent) for d in ("up", "down")}
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
        got = [k for k, r in enumerate(rxs) if r]          # sequence index of each received packet
        n_rx_c = len(got)
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
        # |D| of consecutive received packets, filed at the later one's schedule position
        later = [k * calls + c for k in got[1:]]
        for d, vals in (("up", up_v), ("down", down_v)):
            dsum, dcnt = jitter_pos[d]
            losstime.for_each(map(dsum.__setitem__, later, map(abs, map(operator.sub, vals[1:], vals))))
            losstime.for_each(map(dcnt.__setitem__, later, repeat(1)))
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

    # ---- loss in time (probes/voice/losstime.py)
    _loss_in_time(res, run, reached_by_call, restarts, jitter_pos)

    # ---- MOS per listening direction, with that direction's burst ratio (G.107 BurstR)
    one_way = res.rtt_ms["mean"] / 2.0
    res.one_way_ms = one_way
    if split:
        ppl_up = res.loss_pct["up"] + 100.0 * late_up / max(1, reflected)
        ppl_down = res.loss_pct["down"] + 100.0 * late_down / received
        br_up, br_down = res.burst_ratio["up"], res.burst_ratio["down"]
    else:
        half = res.loss_pct["total"] / 2.0
        ppl_up = half + 100.0 * late_up / received
        ppl_down = half + 100.0 * late_down / received
        br_up = br_down = res.burst_ratio["rtt"]
        res.notes.append("stateless reflector: loss not split by direction; MOS uses half the "
                         "total loss per direction")
    s_up = emodel.score(run.codec, one_way, ppl_up, jitter_buffer_ms=buffer_ms, ptime_ms=run.ptime_ms,
                        burst_ratio=emodel.burst_ratio_for_model(br_up))
    s_down = emodel.score(run.codec, one_way, ppl_down, jitter_buffer_ms=buffer_ms, ptime_ms=run.ptime_ms,
                          burst_ratio=emodel.burst_ratio_for_model(br_down))
    worse = s_up if s_up.mos <= s_down.mos else s_down
    res.mos_up, res.mos_down = s_up.mos, s_down.mos
    res.mos, res.r_factor = worse.mos, worse.r_factor
    res.emodel, res.r_scale = worse.emodel, worse.r_scale
    res.mos_provisional = s_up.provisional or s_down.provisional
    res.mos_note = worse.note or s_up.note or s_down.note

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


def reached(run: Run) -> tuple[list[list[bool]] | None, list[tuple[int, int]]]:
    """Which packet of each call reached the far end, from a stateful reflector's
    per-session numbering (losstime.reached_pattern), and the far-end session
    restarts seen as (call, sequence index). None when the reflector copies our
    numbers (stateless) or its numbers are not per session: no direction split."""
    if run.stateful_votes == 0:
        return None, []
    calls, sent, rx, rseq = run.calls, run.sent, run.rx, run.rseq
    out: list[list[bool]] = []
    restarts: list[tuple[int, int]] = []
    for c in range(calls):
        rxs, rseqs = rx[c:sent:calls], rseq[c:sent:calls]
        got = [k for k, r in enumerate(rxs) if r]
        pattern = losstime.reached_pattern(got, [rseqs[k] for k in got], len(rxs), run.tail_count.get(c))
        if pattern is None:
            return None, []
        out.append(pattern[0])
        restarts.extend((c, k) for k in pattern[1])
    return out, restarts


def utc(run: Run, j: int) -> str:
    """When schedule position j was due, as ISO 8601 UTC (ms)."""
    ns = run.wall0 + (run.t0 + int(j * run.interval_ns) - run.mono0)
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds")


def _loss_in_time(res: EngineResult, run: Run, reached: list[list[bool]] | None,
                  restarts: list[tuple[int, int]],
                  jitter_pos: dict[str, tuple[list[float], list[int]]]) -> None:
    """Gaps, bursts, burst ratio, worst windows, interruptions and far-end
    restarts, per direction ("up", "down") where the reflector's numbering
    splits loss, and round trip ("rtt") always. See probes/voice/losstime.py."""
    calls, sent, ptime = run.calls, run.sent, run.ptime_ms
    rx = run.rx
    rtt_lost = [list(map(operator.not_, rx[c:sent:calls])) for c in range(calls)]
    pats: dict[str, list[list[bool]] | None] = {"up": None, "down": None, "rtt": rtt_lost}
    if reached is not None:
        pats["up"] = [list(map(operator.not_, r)) for r in reached]
        # lost on the way back, by schedule position (False where nothing went back)
        pats["down"] = [list(map(operator.and_, r, rl)) for r, rl in zip(reached, rtt_lost)]
    res.max_gap_ms = {d: (losstime.max_gap_ms(p, ptime) if p is not None else None) for d, p in pats.items()}
    # burst ratio and RFC 3611 over each direction's own stream (down: the packets that
    # reached the far end, in order; a packet lost on the way there is not in it)
    down_stream = None if reached is None else [list(compress(rl, r)) for r, rl in zip(reached, rtt_lost)]
    streams = {"up": pats["up"], "down": down_stream, "rtt": rtt_lost}
    res.burst_ratio = {d: (losstime.burst_ratio(p) if p is not None else None) for d, p in streams.items()}
    res.bursts = {d: (losstime.rfc3611(p, ptime) if p is not None else None) for d, p in streams.items()}

    # ---- worst windows over the run's schedule (all calls)
    def by_position(patterns: list[list[bool]]) -> list[int]:
        out = [0] * sent
        for c, p in enumerate(patterns):
            out[c:sent:calls] = list(map(int, p))
        return out

    num = {d: by_position(p) for d, p in pats.items() if p is not None}
    den: dict[str, list[int] | None] = {"up": None, "rtt": None}       # None: every position counts
    if reached is not None:
        den["down"] = by_position(reached)
    worst: dict[str, dict] = {}
    for name, ms in losstime.WINDOWS_MS.items():
        w = losstime.window_packets(ms, ptime, calls)
        loss = {}
        for d in ("up", "down", "rtt"):
            v = losstime.worst_ratio(num[d], den[d], w) if d in num else None
            loss[d] = None if v is None else 100.0 * v
        worst[name] = {"loss_pct": loss}
    w15 = losstime.window_packets(losstime.WINDOWS_MS["15s"], ptime, calls)
    worst["15s"]["jitter_ms"] = {
        d: losstime.worst_ratio(jitter_pos[d][0], jitter_pos[d][1], w15, min_den=max(2, w15 // 4))
        for d in ("up", "down")}
    res.worst_window = worst

    # ---- far-end session restarts (the reflector's numbering went back to 0)
    res.restarts = [{"call": c, "seq": k + 1, "at": utc(run, k * calls + c)} for c, k in sorted(restarts)]
    if restarts:
        first = res.restarts[0]
        res.notes.append(f"the far end restarted its session numbering ({len(restarts)} time"
                         f"{'s' if len(restarts) != 1 else ''}, first at {first['at']}, call "
                         f"{first['call']}): a NAT rebinding or a reflector restart; per-direction "
                         "accounting continues across it")

    # ---- our source address as the far end saw it (RFC 8972 Location TLV), at each change
    changes: list[int] = []          # positions where the address changed
    for j, raw in sorted(run.locations):
        addr = stamp.parse_location(raw)
        if addr is None or (res.source_addresses and res.source_addresses[-1]["address"] == addr):
            continue
        if res.source_addresses:
            changes.append(j)
        res.source_addresses.append({"address": addr, "from": utc(run, j)})
    if changes:
        res.notes.append("the far end saw our packets come from "
                         + " then ".join(a["address"] for a in res.source_addresses)
                         + ": the public address or port changed during the run")

    # ---- interruptions: round-trip silences of at least INTERRUPTION_MIN_MS
    restart_pos = sorted(k * calls + c for c, k in restarts)
    out = []
    for it in losstime.interruptions(rtt_lost, ptime):
        lo, hi = it.start_j, it.end_j
        entry: dict[str, Any] = {"start": utc(run, lo), "duration_ms": it.duration_ms, "calls": len(it.call_ids),
                 "up_lost": None, "down_lost": None, "duration_ms_dir": {"up": None, "down": None},
                 "source_changed": None}
        if reached is not None:
            up, down = num["up"], num["down"]
            entry["up_lost"] = sum(up[lo:hi + 1])
            entry["down_lost"] = sum(down[lo:hi + 1])
            for d in ("up", "down"):
                longest = 0
                for c, p in enumerate(pats[d] or []):
                    for k, n in losstime.runs(p):
                        if lo - calls <= k * calls + c <= hi:
                            longest = max(longest, n)
                entry["duration_ms_dir"][d] = longest * ptime
            # a restart on the first replies after the silence: the far end saw a new session
            entry["source_changed"] = any(lo < j <= hi + 2 * calls for j in restart_pos)
        moved = [i for i, j in enumerate(changes) if lo - 2 * calls < j <= hi + 2 * calls]
        if moved:
            # the address itself changed across the silence (Location TLV): name both
            entry["source_changed"] = True
            entry["address_before"] = res.source_addresses[moved[0]]["address"]
            entry["address_after"] = res.source_addresses[moved[-1] + 1]["address"]
        out.append(entry)
    res.interruptions = out


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
