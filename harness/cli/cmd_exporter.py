"""`cutover exporter`: serve the latest results in the Prometheus exposition format."""

from __future__ import annotations

import threading
import time

import click

from harness.cli.common import EXIT_BAD_INPUT, EXIT_OK, StopOnSignal, die, err, load_profile_or_exit
from harness.cli.history_common import db_option, db_path
from probes.addr import AddressError, parse_hostport


@click.command("exporter", help="""Serve the latest results in the Prometheus exposition format.

\b
GET /metrics reads the history database at each scrape (metric names and
labels: see docs/reports.md). For node_exporter's textfile collector use
`cutover check --prom-file PATH` instead. Runs until SIGTERM/SIGINT, then
shuts down cleanly (exit 0). Port 0 picks a free port (printed on stderr).

\b
Without PROFILE, every site of the database is served (a central
PostgreSQL one that many sites' probes write to), each with its `site`
label and judged by the profile stored with its latest run.

\b
Examples:
  cutover exporter site.yaml --listen 0.0.0.0:9862
  cutover exporter --db postgresql://cutover@db.example/cutover --listen 0.0.0.0:9862""")
@click.argument("profile", metavar="[PROFILE]", required=False)
@click.option("--listen", default="127.0.0.1:9862", metavar="HOST:PORT", show_default=True)
@click.option("--max-seconds", type=click.FloatRange(min=0), default=None, metavar="S",
              help="Stop after S seconds (tests, one-off scrapes). Default: run until stopped.")
@db_option
def command(profile: str, listen: str, max_seconds: float | None, db: str | None) -> None:
    from harness.exporter import make_server
    prof = load_profile_or_exit(profile) if profile else None
    text = listen.strip()
    ephemeral = text.endswith(":0")          # port 0: the kernel picks a free port (tests, ad-hoc use)
    try:
        hp = parse_hostport(text[:-2] + ":1" if ephemeral else text, default_port=9862)
    except AddressError as exc:
        die(EXIT_BAD_INPUT, f"--listen: {exc}")
    path = db_path(prof, db)
    try:
        server = make_server(prof, path, hp.host, 0 if ephemeral else hp.port)
    except OSError as exc:
        die(EXIT_BAD_INPUT, f"--listen {listen}: cannot listen: {exc.strerror or exc}")
    host, port = server.server_address[:2]
    assert isinstance(host, str)      # an AF_INET/AF_INET6 address (bytes only for AF_UNIX)
    shown = f"[{host}]" if ":" in host else host
    what = f"site {prof.site!r}" if prof else "every site"
    err(f"cutover exporter: serving http://{shown}:{port}/metrics for {what} from {path}")
    stop = threading.Event()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    try:
        with StopOnSignal(stop, "stopping"):
            while not stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                stop.wait(0.2)
    finally:
        server.shutdown()           # returns once serve_forever has stopped
        server.server_close()
        thread.join(timeout=5)
        store = server.cutover_state.get("store")
        if store is not None:
            store.close()
    err("cutover exporter: stopped")
    raise SystemExit(EXIT_OK)
