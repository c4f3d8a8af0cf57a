"""Call-platform requirements: judge a circuit the way Teams, Zoom or Webex will.

A site's calls run on a platform, and the customer's question is "does the new
line meet Microsoft's (or Zoom's) network requirements?". Each platform here is
the set of figures its vendor publishes, with the source, in ONE table
(:data:`PLATFORMS`); docs/platforms.md prints the same table for users.

What our measurement stands for
-------------------------------
cutover measures from the probe machine to the STAMP reflector. Placed where
the phones stand (in the LAN) with the reflector in a data centre near the
platform's edge, that is Teams' *client to Microsoft edge* segment
(``teams``). ``teams-edge`` judges the same figures against the stricter
*customer edge to Microsoft edge* limits: conservative, because our path also
includes the LAN. Put the probe on the customer edge to measure that segment
exactly.

Readings we had to choose
-------------------------
- Every published bound ("< 50 ms") is judged as *at most* the bound: at our
  resolution a figure exactly at the bound cannot be told from one just below.
- Windowed loss at packet granularity: a 200 ms window of 20 ms packets holds
  10 packets, so one lost packet is already 10 %. Teams allows "< 10 % in any
  200 ms" *and* "< 1 % in any 15 s", which permits several scattered losses;
  a strict "< 10 %" would fail on any single loss and make the 15 s figure
  pointless. So a 200 ms window passes with at most ``limit`` % of its packets
  lost: one of ten for Teams, none for the customer-edge 1 %.
- One-way latency is RTT p95 / 2, the one definition of harness.judgement
  (docs/judgement.md) that the stream check uses too.
- Zoom and Webex state "latency" without a direction; we read it as one-way,
  as ITU-T G.114's 150 ms, which their figure matches.

The score (0..100)
------------------
In the manner of the IETF Quality of Outcome draft (draft-ietf-ippm-qoo):
each requirement has a point of optimal performance (score 100) and one of
unacceptable performance (score 0), and the score is the measured figure's
linear position between them. We take optimal = 0 (no delay, no loss, no
jitter) and unacceptable = twice the vendor's limit, so a figure exactly at the
limit scores 50. A platform's score is the worst of its requirements': one
broken requirement breaks the calls.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from harness import judgement
from harness.verdicts import Check, at_most, error, fmt

STEP = "stream"              # platform checks are judged from the stream step's figures
PREFIX = f"{STEP}.platform."


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _worse(d: Any) -> float | None:
    """The worse direction of an {up, down} pair (or the total when not split)."""
    if not isinstance(d, dict):
        return _num(d)
    vals = [v for v in (_num(d.get("up")), _num(d.get("down"))) if v is not None]
    if vals:
        return max(vals)
    return _num(d.get("total"))


def one_way_ms(raw: dict) -> float | None:
    """One-way delay, the one definition (harness.judgement): RTT p95 / 2."""
    return judgement.one_way_delay_ms(raw.get("rtt_ms"))


def rtt_ms(raw: dict) -> float | None:
    """Round-trip time at the same statistic as the one-way delay (p95)."""
    return _num((raw.get("rtt_ms") or {}).get(judgement.ONE_WAY_DELAY_RTT_STAT))


def _window(raw: dict, window: str, metric: str) -> float | None:
    ww = raw.get("worst_window") or {}
    return _worse((ww.get(window) or {}).get(metric))


def loss_15s(raw: dict) -> float | None:
    """Loss in the worst 15 s window, worse direction (%)."""
    return _window(raw, "15s", "loss_pct")


def jitter_15s(raw: dict) -> float | None:
    """RFC 3550 jitter in the worst 15 s window, worse direction (ms)."""
    return _window(raw, "15s", "jitter_ms")


def loss_200ms(raw: dict) -> float | None:
    """Loss in the worst 200 ms window, worse direction (%)."""
    return _window(raw, "200ms", "loss_pct")


def loss_mean(raw: dict) -> float | None:
    """Loss over the whole stream, worse direction (%)."""
    return _worse(raw.get("loss_pct"))


def jitter_mean(raw: dict) -> float | None:
    """RFC 3550 jitter at the end of the stream, worse direction (ms)."""
    return _worse(raw.get("jitter_ms"))


def reorder_pct(raw: dict) -> float | None:
    """Packets that arrived out of order (%)."""
    return _num(raw.get("reorder_pct"))


@dataclass(frozen=True)
class Requirement:
    key: str                                   # "loss_15s"
    label: str                                 # "loss in the worst 15 s window"
    limit: float
    unit: str
    figure: Callable[[dict], float | None]     # the measured figure from a stream result

    def score(self, measured: float) -> float:
        """0..100: 100 at 0, 50 at the limit, 0 at twice the limit or worse."""
        unacceptable = 2 * self.limit
        if unacceptable <= 0:
            return 100.0 if measured <= 0 else 0.0
        return max(0.0, min(100.0, 100.0 * (1 - measured / unacceptable)))


@dataclass(frozen=True)
class Platform:
    name: str              # profile name: "teams"
    title: str             # "Microsoft Teams (client to Microsoft edge)"
    segment: str           # what the figures are for
    source: str            # document, section, date
    requirements: tuple[Requirement, ...]


def _r(key: str, label: str, limit: float, unit: str, figure: Callable[[dict], float | None]) -> Requirement:
    return Requirement(key, label, limit, unit, figure)


_TEAMS_SOURCE = ("Microsoft Learn, 'Prepare your organization's network for Microsoft Teams', "
                 "section 'Network requirements' (media quality and network performance table), "
                 "as transcribed 2026-11")

PLATFORMS: dict[str, Platform] = {p.name: p for p in (
    Platform("teams", "Microsoft Teams (client to Microsoft edge)", "client to Microsoft edge",
             _TEAMS_SOURCE, (
                 _r("latency", "one-way latency", 50, "ms", one_way_ms),
                 _r("rtt", "round-trip time", 100, "ms", rtt_ms),
                 _r("loss_15s", "loss in the worst 15 s window", 1.0, "%", loss_15s),
                 _r("jitter_15s", "jitter in the worst 15 s window", 30, "ms", jitter_15s),
                 _r("loss_200ms", "loss in the worst 200 ms window", 10.0, "%", loss_200ms),
                 _r("reorder", "packet reorder", 0.05, "%", reorder_pct),
             )),
    Platform("teams-edge", "Microsoft Teams (customer edge to Microsoft edge)",
             "customer edge to Microsoft edge", _TEAMS_SOURCE, (
                 _r("latency", "one-way latency", 30, "ms", one_way_ms),
                 _r("rtt", "round-trip time", 60, "ms", rtt_ms),
                 _r("loss_15s", "loss in the worst 15 s window", 0.1, "%", loss_15s),
                 _r("jitter_15s", "jitter in the worst 15 s window", 15, "ms", jitter_15s),
                 _r("loss_200ms", "loss in the worst 200 ms window", 1.0, "%", loss_200ms),
                 _r("reorder", "packet reorder", 0.01, "%", reorder_pct),
             )),
    Platform("zoom", "Zoom Phone", "client to Zoom data centre",
             "Zoom Support, 'Zoom Phone: network requirements' (latency 150 ms or less, jitter "
             "40 ms or less, packet loss 2 % or less), as transcribed 2026-11", (
                 _r("latency", "one-way latency", 150, "ms", one_way_ms),
                 _r("jitter", "jitter", 40, "ms", jitter_mean),
                 _r("loss", "loss", 2.0, "%", loss_mean),
             )),
    Platform("webex", "Webex Calling", "client to Webex data centre",
             "Cisco, 'Webex Calling: network requirements' and the Cisco voice QoS design "
             "guidance it cites (one-way latency 150 ms, jitter 30 ms, loss 1 %), as "
             "transcribed 2026-11", (
                 _r("latency", "one-way latency", 150, "ms", one_way_ms),
                 _r("jitter", "jitter", 30, "ms", jitter_mean),
                 _r("loss", "loss", 1.0, "%", loss_mean),
             )),
)}


def get_platform(name: str) -> Platform:
    """Look up a platform by its profile name; KeyError names the known ones."""
    try:
        return PLATFORMS[name]
    except KeyError:
        raise KeyError(f"unknown platform {name!r}; known: {', '.join(PLATFORMS)}") from None


def check_id(platform: str, requirement: str) -> str:
    return f"{PREFIX}{platform}.{requirement}"


def evaluate(names: list[str] | tuple[str, ...], raw: dict) -> list[Check]:
    """One check per requirement of each named platform, from one stream result."""
    out: list[Check] = []
    for name in names:
        p = get_platform(name)
        for req in p.requirements:
            cid = check_id(p.name, req.key)
            measured = req.figure(raw)
            if measured is None:
                out.append(error(cid, f"{p.title}: {req.label} not measured by this stream",
                                 required=req.limit, unit=req.unit))
                continue
            out.append(at_most(cid, req.label, measured, req.limit, req.unit,
                               context=f"limit for {p.name}"))
    return out


@dataclass
class PlatformSummary:
    """What `cutover check --json` carries per platform: {meets, score, failed}."""
    name: str
    title: str
    meets: bool
    score: float | None            # 0..100, the worst requirement's; None when nothing measured
    passed: int
    total: int
    failed: list[dict]             # [{"requirement", "reason"}] for every requirement not met

    def to_dict(self) -> dict[str, Any]:
        return {"meets": self.meets, "score": None if self.score is None else round(self.score, 1),
                "failed": self.failed, "passed": self.passed, "total": self.total,
                "title": self.title}

    def sentence(self, circuit: str) -> str:
        """'new: meets Microsoft Teams (client to edge): 6 of 6' or 'fails 1 of 6: <reason>'."""
        if self.meets:
            return f"{circuit}: meets {self.title}: {self.passed} of {self.total}"
        why = "; ".join(f["reason"] for f in self.failed)
        return f"{circuit}: fails {len(self.failed)} of {self.total} requirements of {self.title}: {why}"


def summarize(checks: list[Check]) -> dict[str, PlatformSummary]:
    """Platform summaries from stored checks (never from raw figures: one judgement)."""
    by_platform: dict[str, list[Check]] = {}
    for c in checks:
        if c.id.startswith(PREFIX):
            name, _, _req = c.id[len(PREFIX):].rpartition(".")
            by_platform.setdefault(name, []).append(c)
    out = {}
    for name, cs in by_platform.items():
        p = PLATFORMS.get(name)
        reqs = {r.key: r for r in p.requirements} if p else {}
        scores = []
        failed = []
        for c in cs:
            key = c.id.rpartition(".")[2]
            if c.status in ("fail", "error"):
                failed.append({"requirement": key, "reason": c.reason, "status": c.status})
            m = c.measured
            if key in reqs and isinstance(m, (int, float)) and not isinstance(m, bool):
                scores.append(reqs[key].score(float(m)))
        score = min(scores) if scores else None
        out[name] = PlatformSummary(name=name, title=p.title if p else name, meets=not failed,
                                    score=score, passed=len(cs) - len(failed), total=len(cs),
                                    failed=failed)
    return out


def table_rows() -> list[tuple[str, str, str, str]]:
    """(platform, requirement, limit, source) for docs and `--help`."""
    rows = []
    for p in PLATFORMS.values():
        for r in p.requirements:
            rows.append((p.name, r.label, f"<= {fmt(r.limit)} {r.unit}", p.source))
    return rows
