"""`cutover reflector`: the far-end responder.

Services listen together on the same port number and stop together:
the STAMP reflector on UDP (probes.reflector), and the TCP bandwidth service
(added beside it in ``_services``). Each service is an object with
``bind()`` (raises OSError with a cause), ``serve(stop_event)`` (blocks until
the event is set) and a ``name``.
"""

from __future__ import annotations

import threading

import click

from harness.cli.common import load_key_or_exit, EXIT_BAD_INPUT, EXIT_UNMEASURED, StopOnSignal, die, err
from probes.addr import AddressError


def _services(listen: str, key: bytes | None, no_tcp: bool, opts: dict) -> list:
    """Everything `cutover reflector` runs, in start order."""
    from probes.reflector import StampReflector

    services: list = [StampReflector(listen, key, on_session_end=lambda line: err(f"[reflector] {line}"),
                                     **opts)]
    if not no_tcp:
        # TCP bandwidth service + Speedtest Mini endpoint on the same port number
        # (follows the UDP socket's port when --listen asks for port 0)
        from probes.reflector.bwservice import BandwidthService
        from probes.reflector import parse_listen
        hp = parse_listen(listen)
        services.append(BandwidthService(hp.host, hp.port, key=key,
                                         port_from=lambda: services[0].address[1]))
    return services


@click.command("reflector", help="""Far-end responder: STAMP reflector on UDP PORT and bandwidth service on TCP PORT.

Answers any STAMP (RFC 8762/8972) or TWAMP-Light session-sender. Stateful:
numbers its replies per session so the sender sees upstream loss; reports
the DSCP it received (Class of Service TLV). Replies are never larger than
requests. With --key-file only authenticated (HMAC-SHA-256) packets are
answered, each sender sequence number once (replays are refused and
counted). Prints one line per finished session on stderr (at most 50
established and 50 other sessions per 10 s, then one aggregated line per
reason), and one line per reason for packets it refused. Stop with Ctrl-C
or SIGTERM.

\b
Example:
  cutover reflector --listen 0.0.0.0:862 --key-file carrier-b.key
  cutover reflector --listen [::]:8620""")
@click.option("--listen", default="0.0.0.0:862", show_default=True, metavar="HOST:PORT")
@click.option("--key-file", default=None, metavar="FILE",
              help="Pre-shared HMAC key: answer authenticated packets only.")
@click.option("--no-tcp", is_flag=True, help="Run the UDP STAMP reflector only.")
@click.option("--max-sessions", type=int, default=65536, show_default=True,
              help="Session table size. When full, a new session replaces the oldest one "
                   "answered fewer than 3 times; established sessions are never evicted.")
@click.option("--max-pps-per-source", type=int, default=200_000, show_default=True,
              help="Packets per second answered per source address.")
@click.option("--session-idle", type=float, default=30.0, show_default=True,
              help="Seconds without packets after which a session ends.")
def command(listen, key_file, no_tcp, max_sessions, max_pps_per_source, session_idle):
    from probes.reflector import parse_listen

    try:
        parse_listen(listen)
    except AddressError as exc:
        die(EXIT_BAD_INPUT, f"--listen: {exc}")
    if max_sessions < 1 or max_pps_per_source < 1 or session_idle <= 0:
        die(EXIT_BAD_INPUT, "--max-sessions, --max-pps-per-source and --session-idle must be positive")
    key = load_key_or_exit(key_file)
    opts = dict(max_sessions=max_sessions, max_pps_per_source=max_pps_per_source,
                session_idle_s=session_idle)
    services = _services(listen, key, no_tcp, opts)
    for svc in services:
        try:
            svc.bind()
        except OSError as exc:
            die(EXIT_UNMEASURED, exc.strerror or str(exc))
    stop = threading.Event()
    mode = "authenticated (HMAC-SHA-256)" if key else "unauthenticated"
    first = services[0]
    host, port = first.address
    err(f"cutover reflector: STAMP on UDP {host}:{port}, {mode}; Ctrl-C to stop")
    threads = [threading.Thread(target=svc.serve, args=(stop,), daemon=True, name=type(svc).__name__)
               for svc in services[1:]]
    for t in threads:
        t.start()
    try:
        with StopOnSignal(stop, "stopping"):
            first.serve(stop)      # the STAMP loop owns the main thread (signals land here)
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    s = first.stats
    err(f"cutover reflector: stopped; {s.received} received, {s.reflected} reflected, "
        f"{s.malformed} malformed, {s.auth_failed} failed authentication, {s.rate_limited} rate-limited, "
        f"{s.replays_refused} replays refused; {s.sessions_started} sessions, {s.evicted} evicted, "
        f"{s.session_limited + s.table_full} refused")
