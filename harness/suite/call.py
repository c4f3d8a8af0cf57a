"""Suite step: a real test call through the trunk (and the porting check).

Runs when a circuit names ``sip_account`` and ``test_call`` (the URI or
number to dial: the provider's echo service, or the circuit's
``answer_account`` to call yourself) and/or ``ported_numbers``.

Checks:

- ``call.registered``: the account registered (the server's reason if not).
- ``call.connected``: the test call was answered (486/488/no answer fail with
  the code and reason).
- ``call.audio``: audio both ways; one-way or none fails naming the silent
  direction and the likely cause (private SDP address => SIP ALG/NAT).
- ``call.mos.<direction>``: MOS per measured direction >= ``thresholds.mos_min``.
- ``call.post_dial_delay``: INVITE to ringing <= ``thresholds.post_dial_delay_ms``.
- ``call.alg``: ``warn`` when our Via/Contact/SDP came back rewritten.
- ``call.porting``: every ported number arrives at the answer account
  ("2 of 3 numbers ring on the new trunk; +442079460018 still rings elsewhere").
"""

from __future__ import annotations

from harness import judgement
from harness.suite import not_measured, partial_check
from harness.verdicts import Check, at_least, at_most, error, expect

NAME = "call"
PROBE = "probes.call"

QUICK_DURATION_S = 4.0
FULL_DURATION_S = 15.0
MOS_WARN_BAND_PCT = judgement.MOS_WARN_BAND_PCT   # the one MOS warn band (probes/edges.py)


def applies(profile, circuit) -> bool:
    return bool(circuit.sip_account and (circuit.test_call or circuit.ported_numbers))


def measure(profile, circuit, *, quick: bool, progress=None, stop=None) -> dict:
    from probes import call
    from probes.sipaccount import AccountError, load_account
    try:
        account = load_account(profile.resolve_path(circuit.sip_account))
        answer = load_account(profile.resolve_path(circuit.answer_account)) if circuit.answer_account else None
    except AccountError as exc:
        return {"probe": "call", "measured": False, "partial": False, "errors": [str(exc)],
                "gaps": [str(exc)]}           # our account file: never the carrier's
    pl, th = profile.planned, profile.thresholds
    cfg = call.CallConfig(account=account, uri=circuit.test_call, answer_account=answer,
                          ported=list(circuit.ported_numbers), codec=pl.codec, ptime_ms=pl.ptime_ms,
                          duration_s=QUICK_DURATION_S if quick else FULL_DURATION_S,
                          porting_duration_s=2.0, ring_timeout_s=20.0 if quick else 30.0,
                          jitter_buffer_ms=th.jitter_buffer_ms, source=circuit.source, interface=circuit.interface)
    try:
        return call.run(cfg, progress, stop).to_dict()
    except (ValueError, KeyError) as exc:
        why = f"test call in the profile: {exc}"
        return {"probe": "call", "measured": False, "partial": False, "errors": [why], "gaps": [why]}


def evaluate(profile, circuit, raw: dict) -> list[Check]:
    th = profile.thresholds
    out: list[Check] = []
    for key, who in (("registration", "account"), ("answer_registration", "answer account")):
        reg = raw.get(key)
        if isinstance(reg, dict):
            ok = bool(reg.get("ok"))
            out.append(expect("call.registered" if key == "registration" else "call.answer_registered", ok,
                              f"{reg.get('status_code')} {reg.get('reason')}", "2xx",
                              f"{who} {reg.get('account')} registered for {reg.get('expires_s')} s "
                              f"in {reg.get('time_ms') or 0:.0f} ms" if ok else
                              f"{who} {reg.get('account')} did not register: {reg.get('error')}"))
    bad = not_measured(NAME, raw)
    if bad:
        return out + bad
    c = raw.get("call")
    if isinstance(c, dict):
        connected = bool(c.get("connected"))
        out.append(expect("call.connected", connected, f"{c.get('status_code')} {c.get('reason')}", "2xx",
                          f"call to {c.get('target')} answered ({c.get('encoding')}/{c.get('ptime_ms')} ms)"
                          if connected else
                          f"call to {c.get('target')} failed: " +
                          (f"{c.get('status_code')} {c.get('reason')}" if c.get("status_code") else
                           str(c.get("error") or "no answer"))))
        pdd = c.get("post_dial_delay_ms")
        if connected or pdd is not None:
            out.append(at_most("call.post_dial_delay", "post-dial delay", pdd, th.post_dial_delay_ms, "ms"))
    m = raw.get("media")
    if isinstance(m, dict) and m.get("audio"):
        audio = m["audio"]
        ok = audio in ("both-ways", "unknown")
        reason = (f"audio both ways ({m.get('mode')})" if audio == "both-ways" else
                  "audio from the far end; the other direction is not observable (no echo, no answer account)"
                  if audio == "unknown" else
                  f"{m.get('problem')}" + (f"; likely cause: {m.get('likely_cause')}" if m.get("likely_cause") else ""))
        out.append(expect("call.audio", ok, audio, "both-ways", reason))
        for d in m.get("directions") or []:
            name = str(d.get("direction", "?")).split(" ")[0].replace("->", "_to_")
            if d.get("packets_received"):
                out.append(at_least(f"call.mos.{name}", f"MOS {d.get('direction')}", d.get("mos"), th.mos_min, "",
                                    context="minimum", warn_band_pct=MOS_WARN_BAND_PCT))
    elif isinstance(c, dict) and c.get("connected"):
        out.append(error("call.audio", f"no media measured: {c.get('error') or 'no SDP answer'}"))
    if raw.get("alg_suspected") is not None:
        alg = bool(raw.get("alg_suspected"))
        ev = "; ".join(raw.get("nat_evidence") or [])
        out.append(expect("call.alg", not alg, "rewritten" if alg else "intact", "intact",
                          f"SIP ALG suspected: {ev}" if alg else "SIP headers and SDP came back as sent",
                          bad_status="warn"))
    porting = raw.get("porting") or []
    if porting:
        n = sum(1 for p in porting if p.get("arrived"))
        out.append(expect("call.porting", n == len(porting), f"{n} of {len(porting)}", f"{len(porting)} of "
                          f"{len(porting)}", raw.get("porting_summary") or ""))
    return out + partial_check(NAME, raw)
