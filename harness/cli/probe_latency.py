"""`cutover probe latency`: round-trip time by ICMP echo, with UDP/TCP fallback."""

from __future__ import annotations

import threading

import click

from harness.cli.common import (load_key_or_exit, StopOnSignal, EXIT_OK, EXIT_UNMEASURED,
                                StderrProgress, bound_config, circuit_option, die, die_bad_input, emit_json,
                                interface_option, json_option, profile_option, source_option)


@click.command("latency", help="""Round-trip latency by ICMP echo, with UDP/TCP fallback.

ICMP echo via ping3. Where ICMP needs privileges this user lacks, or is
filtered, --method auto falls back to a STAMP packet to UDP PORT (a
reflector) and then to TCP connect timing to PORT (default 862), and says
which method measured. TARGET is a host name, an IP address or HOST:PORT.

\b
Example:
  cutover probe latency 192.0.2.10 --count 20 --interval 0.2
  cutover probe latency 192.0.2.10:862 --method udp
  cutover probe latency --profile site.yaml --circuit old

Exit codes: 0 measured, 2 bad input, 3 no replies (cause in the message and JSON).""")
@click.argument("target", required=False)
@click.option("--count", default=10, show_default=True, type=int)
@click.option("--interval", default=0.5, show_default=True, type=float, help="Seconds between probes.")
@click.option("--timeout", default=1.0, show_default=True, type=float, help="Seconds to wait per probe.")
@click.option("--method", type=click.Choice(["auto", "icmp", "udp", "tcp"]), default="auto",
              show_default=True)
@click.option("--port", type=int, default=None, help="UDP/TCP port for the fallbacks (default 862).")
@click.option("--key-file", default=None, help="STAMP key for --method udp against a keyed reflector.")
@profile_option
@circuit_option
@source_option
@interface_option
@click.option("-v", "--verbose", is_flag=True, help="Progress on stderr also with --json.")
@json_option
def command(target, count, interval, timeout, method, port, key_file, profile_path, circuit, source, interface,
            verbose, as_json):
    from probes import latency
    from probes.result import BadInput

    key = load_key_or_exit(key_file)
    cfg = bound_config("latency", profile_path, circuit, target=target, count=count, interval_s=interval,
                       timeout_s=timeout, source=source, interface=interface, method=method, port=port, key=key)
    target = cfg.target
    try:
        latency.validate(cfg)
    except BadInput as exc:
        die_bad_input(exc)
    progress = StderrProgress(enabled=verbose or not as_json)
    stop = threading.Event()
    # Ctrl-C / SIGTERM end the probe early; what was measured is still reported
    with StopOnSignal(stop):
        res = latency.run(cfg, progress=progress, stop=stop)
    d = res.to_dict()
    if as_json:
        emit_json(d)
    elif res.measured:
        r = d["rtt_ms"]
        click.echo(f"latency {target} ({res.address}) by {res.method}: {res.received}/{res.sent} replies, "
                   f"loss {d['loss_pct']:.1f} %")
        click.echo(f"  rtt min {r['min']:.3f} / p50 {r['p50']:.3f} / mean {r['mean']:.3f} / "
                   f"max {r['max']:.3f} ms")
        if res.fallback_reason:
            click.echo(f"  fallback: {res.fallback_reason}")
    if not res.measured:
        die(EXIT_UNMEASURED, "; ".join(res.errors) or "no replies")
    raise SystemExit(EXIT_OK)
