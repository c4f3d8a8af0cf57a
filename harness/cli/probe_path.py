"""`cutover probe path TARGET`: traceroute, path MTU, where DSCP marking is lost."""

from __future__ import annotations

import sys
import threading

import click

from harness.cli.common import (EXIT_FAIL, EXIT_OK, EXIT_UNMEASURED, StderrProgress,
                                StopOnSignal, bound_config, bound_probe_options, die_bad_input, emit_json)
from probes import path
from probes.result import BadInput


@click.command("path", help="""Traceroute with per-hop RTT and loss, path MTU, where DSCP marking is lost.

\b
Sends TTL-limited probes (UDP to high ports, ICMP echo, or TCP SYN to --port)
marked with --dscp, several rounds; reads the TOS byte each router quotes
back in its ICMP time-exceeded message to name the first hop that changed
the marking. Then finds the path MTU with DF probes. Needs root (raw sockets).

\b
Exit codes: 0 destination reached and DSCP intact; 1 reached but the DSCP
marking was changed on the way; 2 bad argument; 3 destination not reached,
or no permission (not root).

\b
Example:
  sudo cutover probe path 192.0.2.10 --proto icmp --rounds 5
  sudo cutover probe path --profile site.yaml --circuit new""")
@click.argument("target", required=False)
@click.option("--proto", type=click.Choice(["udp", "icmp", "tcp"]), default="udp", show_default=True)
@click.option("--port", type=int, default=None, help="TCP: destination port (default 80); UDP: fixed port.")
@click.option("--rounds", type=int, default=3, show_default=True, help="Probes per hop.")
@click.option("--max-ttl", type=int, default=30, show_default=True)
@click.option("--dscp", default="ef", show_default=True, help="Marking of the probes (name or 0-63).")
@click.option("--timeout", "timeout_s", type=float, default=1.0, show_default=True,
              help="Seconds to wait for answers per round and per MTU probe.")
@click.option("--no-mtu", is_flag=True, help="Skip the path MTU search.")
@click.option("--max-wall", "max_wall_s", type=float, default=60.0, show_default=True,
              help="Hard cap on the whole probe, seconds.")
@bound_probe_options
def command(target, proto, port, rounds, max_ttl, dscp, timeout_s, no_mtu, max_wall_s, verbose,
            profile_path, circuit, source, interface, as_json):
    cfg = bound_config("path", profile_path, circuit, target=target, proto=proto, port=port, rounds=rounds,
                       max_ttl=max_ttl, dscp=dscp, timeout_s=timeout_s, mtu=not no_mtu, max_wall_s=max_wall_s,
                       source=source, interface=interface)
    stop = threading.Event()
    try:
        with StopOnSignal(stop):   # Ctrl-C / SIGTERM: the hops seen so far
            result = path.run(cfg, StderrProgress(enabled=verbose or not as_json), stop)
    except BadInput as exc:
        die_bad_input(exc)
    if not result.measured or not result.reached:
        code = EXIT_UNMEASURED
    else:
        code = EXIT_FAIL if result.dscp_changed_at else EXIT_OK
    if as_json:
        emit_json(result.to_dict())
    else:
        _print(result)
    if code == EXIT_UNMEASURED:
        click.echo(f"cutover: path not measured: {'; '.join(result.errors) or 'no answers'}", err=True)
    sys.exit(code)


def _print(r: path.PathResult) -> None:
    click.echo(f"path to {r.target} ({r.address}), {r.proto.upper()} probes marked DSCP {r.dscp_sent}")
    for h in r.hops:
        rtt = f"{h.rtt_ms:8.2f} ms" if h.rtt_ms is not None else "       *   "
        dscp = "-" if h.dscp is None else str(h.dscp)
        click.echo(f"{h.ttl:3d}  {h.address or '*':<39} {rtt}  loss {h.loss_pct:5.1f}%  dscp {dscp}")
    if r.path_mtu:
        where = f" (limited at {r.mtu_limited_at})" if r.mtu_limited_at else ""
        at_least = "at least " if r.mtu_method == "capped" else ""
        click.echo(f"path MTU: {at_least}{r.path_mtu} bytes{where} [{r.mtu_method}]")
        if r.mtu_method in path.MTU_METHOD_TEXT:
            click.echo(f"  {r.mtu_method}: {path.MTU_METHOD_TEXT[r.mtu_method]}")
    ch = r.dscp_changed_at
    if ch:
        click.echo(f"DSCP changed at hop {ch['ttl']} ({ch['address']}): sent {ch['dscp_sent']}, "
                   f"seen {ch['dscp_seen']} (last intact at hop {ch['last_intact_ttl']})")
    elif any(h.dscp is not None for h in r.hops):
        click.echo(f"DSCP {r.dscp_sent} intact on every hop that quoted it")
