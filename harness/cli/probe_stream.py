"""`cutover probe stream`: voice-like isochronous streams against a STAMP reflector."""

from __future__ import annotations

import threading

import click

from harness.cli.common import (StopOnSignal, EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, EXIT_UNMEASURED, StderrProgress,
                                die, die_bad_input, emit_json, err, interface_option, json_option,
                                circuit_or_exit, load_profile_or_exit, option, source_option)


def judge(result: dict, th, ptime_ms: float = 20, platforms: list[str] | tuple[str, ...] = ()
          ) -> tuple[list[str], list]:
    """(reasons of the failing checks, all checks) of a measured stream result,
    through the one evaluator (harness.judgement: the same checks `cutover
    check` stores, e.g. one-way delay = RTT p95 / 2, and the requirements of
    the profile's call platforms)."""
    from types import SimpleNamespace

    from harness import judgement
    profile = SimpleNamespace(thresholds=th, planned=SimpleNamespace(ptime_ms=ptime_ms,
                                                                     platforms=list(platforms)))
    checks = judgement.evaluate("stream", profile, None, result)
    return [c.reason for c in checks if c.status == "fail"], checks


def _sender_may_explain(d: dict, bad: list[str]) -> bool:
    """Could a struggling sender have caused these violations? Loss and jitter yes
    (bursty sends, replies dropped on our socket), and MOS when loss or late packets
    feed it; delay, and MOS on a loss-free run, no."""
    lossy = (d.get("loss_pct") or {}).get("total") or d.get("late_pct")
    return any(("loss" in v or "jitter" in v) or (v.startswith("MOS") and lossy) for v in bad)


def summary_lines(d: dict) -> list[str]:
    p, loss, rtt, jit = d["packets"], d["loss_pct"], d["rtt_ms"], d["jitter_ms"]

    def f(v, fmt="{:.2f}"):
        return "n/a" if v is None else fmt.format(v)

    lines = [f"stream {d['target']}: {d['calls']} x {d['codec']}/{d['ptime_ms']} ms for {d['duration_s']:g} s",
             f"  packets   sent {p['sent']}, reflected {f(p.get('reflected'), '{}')}, received {p['received']}",
             f"  loss      up {f(loss.get('up'))} %, down {f(loss.get('down'))} %, total {f(loss.get('total'))} %"
             + ("" if d["direction_split"] else "  (stateless reflector: no direction split)"),
             f"  rtt       min {f(rtt.get('min'))} / p50 {f(rtt.get('p50'))} / p99 {f(rtt.get('p99'))}"
             f" / max {f(rtt.get('max'))} ms",
             f"  jitter    up {f(jit.get('up'))} ms, down {f(jit.get('down'))} ms (RFC 3550)",
             f"  |ipdv|    up mean {f(d['ipdv_ms']['up'].get('mean'))} ms, "
             f"down mean {f(d['ipdv_ms']['down'].get('mean'))} ms",
             f"  reorder {f(d['reorder_pct'])} %, duplicates {d['duplicates']}, late {f(d['late_pct'])} %"]
    ds = d.get("dscp") or {}
    if ds.get("sent") is not None:
        lines.append(f"  dscp      sent {ds['sent']}, reflector saw {f(ds.get('received'), '{}')}"
                     f" ({'preserved' if ds.get('preserved') else 'NOT preserved'})")
    gap, br = d.get("max_gap_ms") or {}, d.get("burst_ratio") or {}
    ww = d.get("worst_window") or {}
    w15 = (ww.get("15s") or {}).get("loss_pct") or {}
    w200 = (ww.get("200ms") or {}).get("loss_pct") or {}
    if gap:
        lines.append(f"  in time   max gap up {f(gap.get('up'), '{:.0f}')} / down {f(gap.get('down'), '{:.0f}')}"
                     f" / round trip {f(gap.get('rtt'), '{:.0f}')} ms; burst ratio up {f(br.get('up'))},"
                     f" down {f(br.get('down'))} (1 = random)")
        lines.append(f"  worst     15 s loss up {f(w15.get('up'))} %, down {f(w15.get('down'))} %;"
                     f" 200 ms loss up {f(w200.get('up'))} %, down {f(w200.get('down'))} %")
    for it in d.get("interruptions") or []:
        lines.append(f"  silent    {it['start']}: {it['duration_ms']:.0f} ms ({it['calls']} call(s))"
                     + ("; the far end saw a new session" if it.get("source_changed") else ""))
    lines.append(f"  MOS       {f(d['mos'])} (R {f(d['r_factor'], '{:.1f}')}; up {f(d['mos_up'])},"
                 f" down {f(d['mos_down'])})")
    s = d.get("sender") or {}
    lat = s.get("lateness_ms") or {}
    lines.append(f"  sender    lateness p50 {f(lat.get('p50'), '{:.3f}')} / p99 {f(lat.get('p99'), '{:.3f}')} ms,"
                 f" rx dropped {s.get('rx_dropped', 0)}" + ("  LIMITED: " + s["reason"] if s.get("limited") else ""))
    lines.extend(f"  note: {n}" for n in d.get("notes") or [])
    return lines


@click.command("stream", help="""Voice-like isochronous stream against any STAMP reflector.

Emulates --calls concurrent calls, each a STAMP session at the codec's packet
size and ptime, and reports per direction: loss, RFC 3550 jitter, |IPDV|,
RTT (reflector dwell removed), late packets against the de-jitter buffer,
whether the DSCP marking survived, and MOS (E-model, worse direction).

\b
Example:
  cutover probe stream 192.0.2.10:862 --codec g711 --duration 30 --calls 4
  cutover probe stream --profile site.yaml --circuit new --json

Exit codes: 0 within thresholds (profile's, else defaults: MOS >= 4.0,
loss <= 1 %, jitter <= 30 ms, one-way delay <= 150 ms), 1 beyond them,
2 bad input, 3 could not measure.""")
@click.argument("target", metavar="HOST:PORT", required=False)
@click.option("--codec", default=None, help="g711 (default), g729, g722, opus.")
@click.option("--ptime", default=None, type=int, help="Packetisation interval in ms (default 20).")
@click.option("--duration", default=10.0, show_default=True, type=float, help="Seconds.")
@click.option("--calls", default=1, show_default=True, type=int, help="Concurrent emulated calls.")
@click.option("--dscp", default="ef", show_default=True,
              help="DSCP: number or name (ef, af41, cs5, be), or none for unmarked.")
@click.option("--key-file", default=None, help="STAMP pre-shared key (authenticated mode).")
@option("--jitter-buffer-ms", "jitter_buffer", aliases=("--jitter-buffer",), default=None, type=float,
        help="De-jitter buffer in ms for late packets and MOS (default 60, or the profile's).")
@click.option("--timeout", default=3.0, show_default=True, type=float,
              help="Seconds without any reply before giving up.")
@click.option("--profile", "profile_path", default=None, metavar="PROFILE",
              help="Take reflector, source/interface, key, codec and thresholds from a circuit.")
@click.option("--circuit", default=None, help="Circuit of the profile (default: the one with role new).")
@source_option
@interface_option
@click.option("-v", "--verbose", is_flag=True, help="Progress on stderr also with --json.")
@json_option
def command(target, codec, ptime, duration, calls, dscp, key_file, jitter_buffer, timeout, profile_path,
            circuit, source, interface, verbose, as_json):
    from harness.profile import Thresholds
    from probes import stream
    from probes.result import BadInput

    thresholds = Thresholds()
    platforms: list[str] = []
    if profile_path:
        prof = load_profile_or_exit(profile_path)
        thresholds = prof.thresholds
        platforms = prof.planned.platforms
        circ = circuit_or_exit(prof, circuit)
        target = target or circ.reflector
        if not target:
            die(EXIT_BAD_INPUT, f"circuit {circ.name} has no reflector; give HOST:PORT")
        source = source or circ.source
        interface = interface or circ.interface
        if key_file is None and circ.key_file:
            key_file = str(prof.resolve_path(circ.key_file))
        codec = codec or prof.planned.codec
        ptime = ptime or prof.planned.ptime_ms
    elif circuit:
        die(EXIT_BAD_INPUT, "--circuit needs --profile")
    if not target:
        die(EXIT_BAD_INPUT, "missing HOST:PORT (or --profile PROFILE)")
    cfg = stream.StreamConfig(target=target, codec=codec or "g711", ptime_ms=ptime or 20,
                              duration_s=duration, calls=calls,
                              dscp=None if str(dscp).lower() in ("none", "off") else dscp,
                              key_file=key_file, source=source, interface=interface,
                              jitter_buffer_ms=(jitter_buffer if jitter_buffer is not None
                                                else thresholds.jitter_buffer_ms),
                              timeout_s=timeout)
    try:
        stream.validate(cfg)
    except BadInput as exc:
        die_bad_input(exc)
    stop = threading.Event()
    progress = StderrProgress(enabled=verbose or not as_json)
    # Ctrl-C / SIGTERM end the probe early; what was measured is still reported
    with StopOnSignal(stop):
        res = stream.run(cfg, progress=progress, stop=stop)
    d = res.to_dict()
    if not res.measured:
        d["verdict"] = "unmeasured"
        if as_json:
            emit_json(d)
        die(EXIT_UNMEASURED, "; ".join(res.errors) or "nothing measured")
    if res.partial:
        # the reflector died, the path broke, or the user stopped us mid-test:
        # what we have is reported, but it is not a verdict
        d["verdict"] = "unmeasured"
        if as_json:
            emit_json(d)
        else:
            for line in summary_lines(d):
                click.echo(line)
        die(EXIT_UNMEASURED, "partial measurement: " + "; ".join(res.errors))
    bad, checks = judge(d, thresholds, cfg.ptime_ms, platforms)
    limited = bool(d["sender"].get("limited"))
    d["verdict"] = "fail" if bad else "pass"
    d["violations"] = bad
    d["checks"] = [c.to_dict() for c in checks]
    if as_json:
        emit_json(d)
    else:
        for line in summary_lines(d):
            click.echo(line)
    for e in res.errors:
        err(f"cutover: {e}")
    if bad and limited and _sender_may_explain(d, bad):
        # loss or jitter may be ours (late, bursty sends; replies dropped on our socket),
        # not the network's: do not call it a network failure
        die(EXIT_UNMEASURED, "beyond thresholds but the measuring machine was the limit: "
                             + d["sender"]["reason"])
    if bad:
        if not as_json:
            click.echo("FAIL: " + "; ".join(bad))
        return _exit(EXIT_FAIL)
    if not as_json:
        click.echo("PASS")
    return _exit(EXIT_OK)


def _exit(code: int):
    raise SystemExit(code)
