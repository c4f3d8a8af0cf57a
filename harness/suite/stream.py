"""Suite step: a voice-like STAMP stream (the planned codec and ptime)
against the circuit's reflector, marked EF.

Checks (thresholds from the profile):

- ``stream.mos``: MOS (worse direction) >= ``mos_min``; warn band 2.5 %
  (4.0 -> 4.0..4.1), because the MOS scale is short: the generic 10 % would
  flag every call below 4.4, i.e. nearly every G.711 call.
- ``stream.jitter_up`` / ``stream.jitter_down``: RFC 3550 jitter <= ``jitter_ms``.
- ``stream.loss_up`` / ``stream.loss_down``: loss <= ``loss_pct`` (``stream.loss``,
  total, when the reflector cannot split directions, with the reason saying so).
- ``stream.delay``: one-way delay, taken as RTT p95 / 2, <= ``one_way_delay_ms``.
- ``stream.dscp``: EF marking arrived at the reflector; ``warn`` (not fail)
  when it was re-marked: calls still work on an idle link, but lose priority
  when it is busy.
- ``stream.platform.<platform>.<requirement>``: the published requirements of
  each call platform the profile names (``planned.platforms``), from
  :mod:`harness.platforms`.
- ``stream.sender``: ``warn`` when the measuring machine itself fell behind
  (send lateness p99 > max(1 ms, ptime / calls), harness.judgement, or
  kernel drops): the figures may blame the network for the sender.
"""

from __future__ import annotations

from harness import judgement, platforms
from harness.suite import not_measured, partial_check
from harness.verdicts import GAP, Check, at_least, at_most, expect, fmt

NAME = "stream"
PROBE = "probes.stream"

QUICK_DURATION_S = 4.0
FULL_DURATION_S = 20.0
DSCP_EF = 46
MOS_WARN_BAND_PCT = judgement.MOS_WARN_BAND_PCT


def applies(profile, circuit) -> bool:
    return bool(circuit.reflector)


def measure(profile, circuit, *, quick: bool, progress=None, stop=None) -> dict:
    from harness.binding import bind
    from probes import stream
    cfg = bind("stream", profile, circuit, duration_s=QUICK_DURATION_S if quick else FULL_DURATION_S,
               calls=1, dscp=DSCP_EF)
    return stream.run(cfg, progress, stop).to_dict()


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _dir(d, key):
    return _num(d.get(key)) if isinstance(d, dict) else None


def evaluate(profile, circuit, raw: dict) -> list[Check]:
    bad = not_measured(NAME, raw)
    if bad:
        return bad
    th = profile.thresholds
    out = [at_least("stream.mos", "MOS", _num(raw.get("mos")), th.mos_min, "",
                    context="minimum", warn_band_pct=MOS_WARN_BAND_PCT)]
    jit = raw.get("jitter_ms") or {}
    loss = raw.get("loss_pct") or {}
    split = raw.get("direction_split", True) is not False
    if split:
        out.append(at_most("stream.jitter_up", "upstream jitter", _dir(jit, "up"), th.jitter_ms, "ms"))
        out.append(at_most("stream.jitter_down", "downstream jitter", _dir(jit, "down"), th.jitter_ms, "ms"))
        out.append(at_most("stream.loss_up", "upstream loss", _dir(loss, "up"), th.loss_pct, "%"))
        out.append(at_most("stream.loss_down", "downstream loss", _dir(loss, "down"), th.loss_pct, "%"))
    else:
        # a stateless reflector: directions cannot be told apart; never guess
        j = _dir(jit, "rtt") if _dir(jit, "rtt") is not None else max(
            (v for v in (_dir(jit, "up"), _dir(jit, "down")) if v is not None), default=None)
        out.append(at_most("stream.jitter", "jitter (round trip, reflector cannot split directions)",
                           j, th.jitter_ms, "ms"))
        out.append(at_most("stream.loss", "round-trip loss (reflector cannot split directions)",
                           _dir(loss, "total"), th.loss_pct, "%"))
    out.append(at_most("stream.delay", f"one-way delay (RTT {judgement.ONE_WAY_DELAY_RTT_STAT} / 2)",
                       judgement.one_way_delay_ms(raw.get("rtt_ms")),
                       th.one_way_delay_ms, "ms", context="limit (ITU-T G.114)"))
    dscp = raw.get("dscp")
    if isinstance(dscp, dict) and dscp.get("preserved") is not None:
        sent, got = dscp.get("sent"), dscp.get("received")
        if dscp["preserved"]:
            out.append(expect("stream.dscp", True, got, sent, f"DSCP {sent} arrived unchanged at the reflector"))
        else:
            out.append(expect("stream.dscp", False, got, sent,
                              f"DSCP {sent} sent, {got} arrived: the path re-marks voice, "
                              "so calls lose priority when the link is busy", bad_status="warn"))
    sender = raw.get("sender") or {}
    late = _dir(sender.get("lateness_ms") or {}, "p99")
    dropped = _num(sender.get("rx_dropped")) or 0
    limited = sender.get("limited")
    if limited is None:   # a probe that does not judge itself: the same rule as the engine's
        limit = judgement.sender_lateness_limit_ms(_num(raw.get("ptime_ms")) or profile.planned.ptime_ms,
                                                   int(_num(raw.get("calls")) or 1))
        limited = (late is not None and late > limit) or dropped > 0
    if limited:
        why = sender.get("reason") or (f"send lateness p99 {fmt(late)} ms, {int(dropped)} replies "
                                       "dropped by our kernel")
        out.append(expect("stream.sender", False, late, "sender keeps pace",
                          f"the measuring machine fell behind ({why}): the figures may blame the path "
                          "for our own load", bad_status="warn", cause=GAP))
    out += platforms.evaluate(profile.planned.platforms, raw)
    return out + partial_check(NAME, raw)
