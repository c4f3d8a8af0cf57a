"""`cutover probe bandwidth`: throughput down and up, and latency under load."""

from __future__ import annotations

import threading

import click

from harness.cli.common import (StopOnSignal, EXIT_BAD_INPUT, EXIT_OK, EXIT_UNMEASURED, StderrProgress,
                                die, die_bad_input, emit_json, err, interface_option, json_option,
                                circuit_or_exit, load_key_or_exit, load_profile_or_exit, source_option)


@click.command("bandwidth", help="""Throughput down and up, and latency under load.

\b
Backends (choose one):
  --reflector HOST:PORT  a cutover reflector's TCP bandwidth service (same port as STAMP)
  --speedtest            speedtest.net through speedtest-cli (needs internet)
  --mini URL             a self-hosted Speedtest Mini server, or a cutover reflector's
                         built-in one (http://reflector:PORT/); works offline

\b
Example:
  cutover probe bandwidth --reflector 192.0.2.10:862 --duration 10 --streams 4
  cutover probe bandwidth --reflector 192.0.2.10:862 --congestion cubic --direction up
  cutover probe bandwidth --mini http://192.0.2.10:862/ --profile site.yaml --circuit new

Throughput is application payload in Mbit/s (10^6 bit/s), as iperf3 counts it;
the reflector backend leaves out the first --omit seconds of TCP slow start.
While the line is loaded, STAMP (reflector) or ICMP (speedtest) measures the
round-trip time; the rise over idle is graded A+..F (bufferbloat). Use
--congestion cubic to see what loss-based senders suffer (BBR hides queues).

Exit codes: 0 measured, 1 below what the profile's planned calls need,
2 bad input, 3 could not measure (or only partly: cause in the message/JSON).""")
@click.option("--reflector", default=None, metavar="HOST:PORT")
@click.option("--speedtest", is_flag=True, help="Use speedtest.net servers (speedtest-cli).")
@click.option("--server", default=None, metavar="ID", help="speedtest.net server id (with --speedtest).")
@click.option("--mini", default=None, metavar="URL", help="Speedtest Mini server URL.")
@click.option("--duration", default=10.0, show_default=True, type=float,
              help="Seconds measured per direction.")
@click.option("--streams", default=4, show_default=True, type=int,
              help="Parallel TCP streams (speedtest/mini: HTTP threads; each request is a new "
                   "connection, whose SYN a full queue may drop, so more is not always faster).")
@click.option("--direction", type=click.Choice(["down", "up", "both"]), default="both", show_default=True)
@click.option("--congestion", default=None, metavar="ALGO",
              help="TCP congestion control for the test streams, e.g. cubic or reno.")
@click.option("--omit", "omit_s", default=1.0, show_default=True, type=float,
              help="Seconds of slow start left out (reflector backend), like iperf3 -O.")
@click.option("--idle", "idle_s", default=2.0, show_default=True, type=float,
              help="Seconds of idle latency sampling before the load.")
@click.option("--no-latency", is_flag=True, help="Skip latency under load.")
@click.option("--key-file", default=None, metavar="FILE",
              help="Pre-shared key of a keyed reflector (as for STAMP).")
@click.option("--timeout", "timeout_s", default=10.0, show_default=True, type=float,
              help="Seconds to wait for connections and setup.")
@click.option("--profile", "profile_path", default=None, metavar="PROFILE",
              help="Compare with this site profile (contract and planned calls).")
@click.option("--circuit", default=None, metavar="NAME", help="Circuit of --profile (default: the new one).")
@source_option
@interface_option
@json_option
@click.option("-v", "--verbose", is_flag=True, help="Progress on stderr even with --json.")
def command(reflector, speedtest, server, mini, duration, streams, direction, congestion, omit_s, idle_s,
            no_latency, key_file, timeout_s, profile_path, circuit, source, interface, as_json, verbose):
    from probes import bandwidth as B
    from probes.result import ProbeError

    chosen = [name for name, on in (("--reflector", reflector), ("--speedtest", speedtest), ("--mini", mini))
              if on]
    profile = circ = None
    if profile_path:
        profile = load_profile_or_exit(profile_path)
        circ = circuit_or_exit(profile, circuit)
        if not chosen and circ.reflector:
            reflector, chosen = circ.reflector, ["--reflector"]
        source = source or circ.source
        interface = interface or circ.interface
        if not key_file and circ.key_file:
            key_file = str(profile.resolve_path(circ.key_file))
    elif circuit:
        die(EXIT_BAD_INPUT, "--circuit needs --profile")
    if len(chosen) != 1:
        die(EXIT_BAD_INPUT, "choose exactly one backend: --reflector HOST:PORT, --speedtest or --mini URL"
            + (f" (got {', '.join(chosen)})" if chosen else ""))
    if server and not speedtest:
        die(EXIT_BAD_INPUT, "--server is a speedtest.net server id; it needs --speedtest")
    if key_file:
        load_key_or_exit(key_file)   # a bad key file is bad input before anything is sent
    backend = {"--reflector": "reflector", "--speedtest": "speedtest", "--mini": "mini"}[chosen[0]]
    cfg = B.BandwidthConfig(backend=backend, target=reflector, mini_url=mini, server_id=server,
                            duration_s=duration, streams=streams, direction=direction,
                            congestion=congestion, omit_s=omit_s, idle_s=idle_s, latency=not no_latency,
                            key_file=key_file, source=source, interface=interface, timeout_s=timeout_s)
    # the fields whose option is not named after them
    spelled = {"target": "--reflector", "mini_url": "--mini", "server_id": "--server"}
    try:
        cfg.validate()
    except ProbeError as exc:
        die_bad_input(exc, **spelled)

    stop = threading.Event()
    try:
        with StopOnSignal(stop):   # Ctrl-C / SIGTERM: partial result
            result = B.run(cfg, StderrProgress(enabled=verbose or not as_json), stop)
    except ProbeError as exc:
        die_bad_input(exc, **spelled)
    data = result.to_dict()
    checks = None
    if profile is not None and circ is not None:
        from harness import judgement
        from harness.bwcompare import compare
        data["comparison"] = compare(data, profile, circ.name)
        # the verdict is the one `cutover check` stores for this result (harness.judgement)
        checks = judgement.evaluate("bandwidth", profile, circ, data)
        data["checks"] = [c.to_dict() for c in checks]

    if not result.measured or result.partial:
        code = EXIT_UNMEASURED
    elif checks is not None:
        code = judgement.exit_code(checks)
    else:
        code = EXIT_OK
    data["exit_code"] = code
    if as_json:
        emit_json(data)
    else:
        _print_summary(data)
    if code == EXIT_UNMEASURED:
        cause = "; ".join(result.errors) or "nothing measured"
        err(f"cutover: {'partial result: ' if result.measured else 'could not measure: '}{cause}")
    raise SystemExit(code)


def _print_summary(d: dict) -> None:
    f = lambda v, unit="": "-" if v is None else f"{v:.1f}{unit}"  # noqa: E731
    target = d.get("target") or (d.get("server") or {}).get("sponsor") or "speedtest.net"
    click.echo(f"bandwidth via {d['backend']} {target}: {d['streams']} stream(s), "
               f"{d['duration_s']:g} s per direction"
               + (f", congestion control {d['congestion']}" if d.get("congestion") else ""))
    click.echo(f"  down {f(d['down_mbps'], ' Mbit/s')}   up {f(d['up_mbps'], ' Mbit/s')}")
    lat = d["latency_ms"]
    if d.get("latency_method"):
        click.echo(f"  RTT p50 ({d['latency_method']}): idle {f(lat['idle_p50'], ' ms')}, "
                   f"downloading {f(lat['down_load_p50'], ' ms')}, uploading {f(lat['up_load_p50'], ' ms')}")
    click.echo(f"  bufferbloat: {d['bufferbloat']['summary']}")
    for line in (d.get("comparison") or {}).get("summary", []):
        click.echo(f"  {line}")
    for note in d.get("notes", []):
        click.echo(f"  note: {note}")
    for e in d.get("errors", []):
        click.echo(f"  error: {e}")
