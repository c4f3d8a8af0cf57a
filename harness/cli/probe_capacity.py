"""`cutover probe capacity`: the largest number of concurrent emulated calls the
path carries within the voice thresholds."""

from __future__ import annotations

import threading

import click

from harness.cli.common import (load_key_or_exit, EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, EXIT_UNMEASURED, StderrProgress,
                                StopOnSignal,
                                die, die_bad_input, emit_json, err, interface_option, json_option,
                                circuit_or_exit, load_profile_or_exit, source_option)
from harness import judgement
from harness.verdicts import fmt
from probes.addr import dscp_value
from probes.result import ProbeError
from probes.ramp import PRESETS, Thresholds

_GROWTH = (f"x{PRESETS['default'].growth:g} (--quick x{PRESETS['quick'].growth:g}, "
           f"--thorough x{PRESETS['thorough'].growth:g})")


@click.command("capacity", help=f"""Largest number of concurrent emulated calls the path carries within thresholds.

N calls are emulated as N two-way STAMP streams at the codec's packet size and
rate through a reflector. The ramp starts at the planned calls (or 10), grows
{_GROWTH} while steps pass (capped at the ceiling), then bisects to one call. It stops at the first of:
MOS < mos_min, loss > loss_pct, jitter > jitter_ms (worse direction), the
ceiling (--max-calls, else what the contract could carry, else 500), or the
measuring machine falling behind (limit "sender": the path carries at least
that many; this machine could not offer more).

\b
Example:
  cutover probe capacity 192.0.2.10:862 --codec g711 --max-calls 200
  cutover probe capacity --profile site.yaml --circuit new

Exit codes: 0 carries the planned calls (or measured, when none are planned),
1 fewer than planned, 2 bad input, 3 could not measure.""")
@click.argument("target", metavar="[HOST:PORT]", required=False)
@click.option("--codec", default=None, help="Codec to emulate (default: the profile's, else g711).")
@click.option("--ptime", type=int, default=None, help="Packetisation in ms (default: profile's, else 20).")
@click.option("--max-calls", default=None, type=int, help="Ceiling of the ramp.")
@click.option("--planned", "planned_calls", default=None, type=int,
              help="Planned peak calls to compare with (default: the profile's).")
@click.option("--start", "start_calls", default=None, type=int,
              help="First call count of the ramp (default: the planned calls, else 10).")
@click.option("--quick", "preset", flag_value="quick", help="Short steps, coarse answer (~20 s).")
@click.option("--thorough", "preset", flag_value="thorough", help="Long steps, several minutes.")
@click.option("--step", "step_s", type=float, default=None, help="Seconds per step (overrides the preset).")
@click.option("--profile", "profile_path", metavar="PROFILE", default=None,
              help="Take reflector, source/interface, key, codec and thresholds from a circuit.")
@click.option("--circuit", default=None, help="Circuit of the profile (default: the one with role new).")
@click.option("--mos-min", type=float, default=None, help="Default 4.0 (or the profile's).")
@click.option("--loss-pct", type=float, default=None, help="Default 1.0 (or the profile's).")
@click.option("--jitter-ms", type=float, default=None, help="Default 30 (or the profile's).")
@click.option("--dscp", default="ef", show_default=True, help="DSCP of the emulated calls (0-63 or a name).")
@click.option("--key-file", default=None, help="STAMP pre-shared key (authenticated mode).")
@source_option
@interface_option
@click.option("-v", "--verbose", is_flag=True, help="Progress on stderr also with --json.")
@json_option
def command(target, codec, ptime, max_calls, planned_calls, start_calls, preset, step_s, profile_path, circuit,
            mos_min, loss_pct, jitter_ms, dscp, key_file, source, interface, verbose, as_json):
    from probes import capacity
    from probes.capacity import CapacityConfig

    try:
        if profile_path:
            cfg = _from_profile(profile_path, circuit, target, preset, max_calls)
        else:
            if circuit:
                die(EXIT_BAD_INPUT, "--circuit needs --profile")
            if not target:
                die(EXIT_BAD_INPUT, "missing HOST:PORT (or --profile PROFILE --circuit NAME)")
            cfg = CapacityConfig(target=target, preset=preset or "default", max_calls=max_calls)
            if key_file:
                cfg.key = load_key_or_exit(key_file)
        if codec:
            cfg.codec = codec
        if ptime is not None:
            cfg.ptime_ms = ptime
        if planned_calls is not None:
            cfg.planned_calls = planned_calls
        if start_calls is not None:
            cfg.start_calls = start_calls
        if step_s is not None:
            cfg.step_s = step_s
        if source:
            cfg.source = source
        if interface:
            cfg.interface = interface
        th = cfg.thresholds
        cfg.thresholds = Thresholds(mos_min=th.mos_min if mos_min is None else mos_min,
                                    loss_pct=th.loss_pct if loss_pct is None else loss_pct,
                                    jitter_ms=th.jitter_ms if jitter_ms is None else jitter_ms)
        cfg.dscp = dscp_value(dscp)
        capacity.validate(cfg)
    except (ProbeError, ValueError, OSError) as exc:   # ValueError: dscp_value's AddressError
        die_bad_input(exc)

    stop = threading.Event()
    # Ctrl-C / SIGTERM end the ramp cleanly: the steps measured so far are printed (partial).
    with StopOnSignal(stop, "stopping the ramp, reporting the steps measured"):
        try:
            result = capacity.run(cfg, StderrProgress(enabled=verbose or not as_json), stop)
        except ProbeError as exc:
            die_bad_input(exc)
    out = result.to_dict()
    code = exit_code(out)
    out["summary"] = summary(out)
    if as_json:
        emit_json(out)
    else:
        _print_human(out)
    raise SystemExit(code)


def _from_profile(path, circuit_name, target, preset, max_calls):
    from harness.suite.capacity import config_for
    profile = load_profile_or_exit(path)
    circ = circuit_or_exit(profile, circuit_name)
    if not (target or circ.reflector):
        die(EXIT_BAD_INPUT, f"circuit {circ.name!r} has no reflector; give HOST:PORT or set circuits[].reflector")
    return config_for(profile, circ, preset=preset or "default", target=target, max_calls=max_calls)


def exit_code(out: dict) -> int:
    """0 carries the planned calls (or measured, none planned); 1 fewer than planned;
    3 nothing measured, or below plan but the cause was the sender or an unfinished run."""
    if not out.get("measured"):
        return EXIT_UNMEASURED
    planned = out.get("planned_calls")
    if not planned:
        return EXIT_OK if not out.get("partial") else EXIT_UNMEASURED
    return judgement.exit_code(capacity_checks(out))


def capacity_checks(out: dict) -> list:
    """The `capacity.calls` check `cutover check` would store for this result
    (harness.judgement: one evaluator)."""
    from types import SimpleNamespace
    profile = SimpleNamespace(planned=SimpleNamespace(calls=out["planned_calls"], codec=out.get("codec") or "g711"))
    return judgement.evaluate("capacity", profile, None, out)


def summary(out: dict) -> str:
    """One line: 'carries 84 calls, 60 planned: PASS (40 % margin)'."""
    if not out.get("measured"):
        return "could not measure: " + ("; ".join(out.get("errors") or []) or "no result")
    n, planned, limit = out["max_calls"], out.get("planned_calls"), out.get("limit")
    at_least = limit in ("max_calls", "sender") or out.get("partial")
    carries = f"carries {'at least ' if at_least else ''}{n} call{'s' if n != 1 else ''}"
    if limit == "max_calls":
        ceiling, source = out.get("ceiling"), out.get("ceiling_source") or ""
        why = {"max_calls": f"passed at the ramp's ceiling, --max-calls {ceiling}",
               "contract": f"passed at the ramp's ceiling, the {ceiling} calls the contract carries"
               }.get(source, f"passed at the ramp's default ceiling of {ceiling}; --max-calls goes further")
    elif limit == "sender":
        why = "the measuring machine, not the network, was the limit"
    elif limit:
        why = f"{limit} limit at {out.get('first_fail_calls')} calls"
    else:
        why = "ramp did not finish"
    if not planned:
        return f"{carries} ({why})"
    code = exit_code(out)
    verdict = {EXIT_OK: "PASS", EXIT_FAIL: "FAIL"}.get(code, "UNKNOWN")
    margin = out.get("margin_pct")
    assert margin is not None     # measured, with planned calls (probes.capacity.margin_pct)
    return f"{carries}, {planned} planned: {verdict} ({fmt(round(margin))} % margin; {why})"


def _print_human(out: dict) -> None:
    click.echo(f"capacity {out['target']}  {out['codec']}/{out['ptime_ms']} ms  "
               f"{fmt(out['per_call_kbps'])} kbit/s per call per direction (Ethernet)")
    click.echo(f"{'calls':>6} {'offered':>12} {'loss':>8} {'jitter':>9} {'mos':>5}  result")
    for s in out["steps"]:
        if s.get("error"):
            click.echo(f"{s['calls']:>6} {'':>12} {'':>8} {'':>9} {'':>5}  error: {s['error']}")
            continue
        offered = f"{fmt(s['offered_kbps'] / 1000)} Mbit/s"
        loss = f"{fmt(s['loss_pct'])} %" if s["loss_pct"] is not None else "n/a"
        jit = f"{fmt(s['jitter_ms'])} ms" if s["jitter_ms"] is not None else "n/a"
        mos = fmt(s["mos"]) if s["mos"] is not None else "n/a"
        res = "pass" if s["pass"] else "FAIL " + ",".join(s.get("failed") or [])
        click.echo(f"{s['calls']:>6} {offered:>12} {loss:>8} {jit:>9} {mos:>5}  {res}")
    for note in out.get("notes") or []:
        click.echo(f"note: {note}")
    for e in out.get("errors") or []:
        err(f"cutover: {e}")
    click.echo(out["summary"])
