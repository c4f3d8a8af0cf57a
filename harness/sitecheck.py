"""Assertion helpers for site checks, with messages a person understands.

    from harness.sitecheck import expect_mos, expect_loss, expect_jitter

    def test_branch_office_voice(circuit, probe, thresholds):
        r = probe("stream", duration_s=5)
        expect_mos(circuit, r, thresholds.mos_min)      # "new: MOS 3.82 < 4.0 (loss up 2.3 %)"

Each helper takes the circuit (or its name) and a probe result (typed result
or its JSON dict) and raises ``AssertionError`` with one readable line.
"""

from __future__ import annotations

from typing import Any


def _d(result: Any) -> dict:
    if isinstance(result, dict):
        return result
    if hasattr(result, "to_dict"):
        return result.to_dict()
    raise TypeError(f"expected a probe result or its JSON dict, got {type(result).__name__}")


def _name(circuit: Any) -> str:
    return getattr(circuit, "name", None) or str(circuit)


def _measured(circuit: Any, r: dict, what: str) -> None:
    if r.get("measured") is False:
        cause = "; ".join(r.get("errors") or ["no result"])
        raise AssertionError(f"{_name(circuit)}: {what} not measured: {cause}")


def _num(x: Any) -> str:
    return "n/a" if x is None else f"{x:.2f}".rstrip("0").rstrip(".")


def expect_mos(circuit: Any, result: Any, minimum: float) -> None:
    r = _d(result)
    _measured(circuit, r, "MOS")
    mos = r.get("mos")
    if mos is None or mos < minimum:
        loss = r.get("loss_pct") or {}
        jit = r.get("jitter_ms") or {}
        detail = ", ".join(f"{k} {_num(v)}{u}" for k, v, u in (
            ("loss up", loss.get("up"), " %"), ("loss down", loss.get("down"), " %"),
            ("jitter up", jit.get("up"), " ms"), ("jitter down", jit.get("down"), " ms")) if v)
        raise AssertionError(f"{_name(circuit)}: MOS {_num(mos)} < {_num(minimum)}"
                             + (f" ({detail})" if detail else ""))


def expect_loss(circuit: Any, result: Any, maximum_pct: float) -> None:
    r = _d(result)
    _measured(circuit, r, "loss")
    loss = r.get("loss_pct") or {}
    worst = [(d, v) for d in ("up", "down", "total") if (v := loss.get(d)) is not None]
    bad = [(d, v) for d, v in worst if v > maximum_pct]
    if bad:
        d, v = max(bad, key=lambda x: x[1])
        raise AssertionError(f"{_name(circuit)}: loss {d} {_num(v)} % > {_num(maximum_pct)} %")


def expect_jitter(circuit: Any, result: Any, maximum_ms: float) -> None:
    r = _d(result)
    _measured(circuit, r, "jitter")
    jit = r.get("jitter_ms") or {}
    bad = [(d, v) for d, v in jit.items() if v is not None and v > maximum_ms]
    if bad:
        d, v = max(bad, key=lambda x: x[1])
        raise AssertionError(f"{_name(circuit)}: jitter {d} {_num(v)} ms > {_num(maximum_ms)} ms")


def expect_rtt(circuit: Any, result: Any, maximum_ms: float, stat: str = "p50") -> None:
    r = _d(result)
    _measured(circuit, r, "RTT")
    rtt = (r.get("rtt_ms") or {}).get(stat)
    if rtt is None or rtt > maximum_ms:
        raise AssertionError(f"{_name(circuit)}: RTT {stat} {_num(rtt)} ms > {_num(maximum_ms)} ms")


def expect_throughput(circuit: Any, result: Any, *, down_mbps: float | None = None,
                      up_mbps: float | None = None) -> None:
    r = _d(result)
    _measured(circuit, r, "throughput")
    for direction, need in (("down", down_mbps), ("up", up_mbps)):
        got = r.get(f"{direction}_mbps")
        if need is not None and (got is None or got < need):
            raise AssertionError(f"{_name(circuit)}: {direction}stream {_num(got)} Mbit/s < "
                                 f"{_num(need)} Mbit/s")


def expect_calls(circuit: Any, result: Any, planned: int) -> None:
    r = _d(result)
    _measured(circuit, r, "capacity")
    got = r.get("max_calls")
    if got is None or got < planned:
        raise AssertionError(f"{_name(circuit)}: carries {got} calls < {planned} planned "
                             f"(limit: {r.get('limit')})")
