"""`cutover probe sip URI`: SIP OPTIONS over UDP/TCP/TLS with RFC 3263 resolution."""

from __future__ import annotations

import sys
import threading

import click

from harness.cli.common import (EXIT_FAIL, EXIT_OK, EXIT_UNMEASURED, StderrProgress,
                                StopOnSignal, bound_config, bound_probe_options, die_bad_input, emit_json, err, out)
from probes import sip
from probes.result import BadInput


@click.command("sip", help="""SIP OPTIONS over UDP/TCP/TLS with RFC 3263 DNS resolution.

\b
The transport comes from --transport, the URI's transport= parameter, or
DNS (NAPTR, then SRV); an IP address or explicit port skips NAPTR/SRV.
UDP retransmits per RFC 3261 (T1 500 ms doubling, up to --timeout).
Reports the status, round-trip time, the server's Allow/Supported, and
whether our Via/Contact came back rewritten (a SIP ALG on the path).

\b
Exit codes: 0 a 2xx answer; 1 the server answered but refused (4xx/5xx/6xx,
e.g. 403, 404, 503); 2 malformed URI or option; 3 nothing answered,
connection refused, or TLS failed (the cause is printed).

\b
Examples:
  cutover probe sip "sip:sbc.carrier.example;transport=tcp"
  cutover probe sip sips:sbc.carrier.example --ca carrier-ca.pem
  cutover probe sip sip:192.0.2.7:5060 --json
  cutover probe sip --profile site.yaml --circuit new""")
@click.argument("uri", required=False)
@click.option("--transport", type=click.Choice(["udp", "tcp", "tls"], case_sensitive=False),
              default=None, help="Force a transport (else from the URI or DNS).")
@click.option("--timeout", "timeout_s", type=float, default=8.0, show_default=True,
              help="Seconds to wait per target (RFC 3261 Timer F, 32 s, caps it).")
@click.option("--insecure", is_flag=True, help="TLS: do not verify the server certificate.")
@click.option("--ca", "ca_file", metavar="FILE", default=None,
              help="TLS: trust this CA certificate (PEM) instead of the system store.")
@bound_probe_options
def command(uri, transport, timeout_s, insecure, ca_file, verbose, profile_path, circuit, source, interface,
            as_json):
    cfg = bound_config("sip", profile_path, circuit, uri=uri, transport=transport.lower() if transport else None,
                       timeout_s=timeout_s, insecure=insecure or None, ca_file=ca_file, source=source,
                       interface=interface)
    stop = threading.Event()
    try:
        with StopOnSignal(stop, "stopping"):
            result = sip.run(cfg, StderrProgress(enabled=verbose or not as_json), stop)
    except BadInput as exc:
        die_bad_input(exc)
    code = EXIT_OK if result.ok else EXIT_FAIL if result.measured else EXIT_UNMEASURED
    if as_json:
        emit_json(result.to_dict())
    else:
        _print(result)
    if code == EXIT_UNMEASURED:
        cause = result.errors[-1] if result.errors else "no answer"
        err(f"cutover: SIP server not reachable: {cause}")
    sys.exit(code)


def _print(r: sip.SipResult) -> None:
    # reason phrases, Server/Allow headers and ALG evidence come from the far end: `out`
    # shows their control characters instead of sending them to the terminal
    for step in r.resolution:
        out(f"  dns: {step}")
    for a in r.targets_tried:
        what = f"{a.status_code} {a.reason}" if a.status_code else a.error
        rtt = f" in {a.rtt_ms:.1f} ms" if a.rtt_ms is not None else ""
        out(f"  tried {a.transport.upper()} {a.host} -> {a.address}:{a.port}: {what}{rtt}")
    if r.status_code is None:
        return
    assert r.transport is not None     # probes.sip sets it with status_code
    verdict = "OK" if r.ok else "REFUSED"
    out(f"{r.target}: {r.status_code} {r.reason} over {r.transport.upper()} from {r.address}, "
               f"RTT {r.rtt_ms:.1f} ms" + (f" ({r.retransmissions} retransmissions)"
                                           if r.retransmissions else "") + f"  [{verdict}]")
    if r.server:
        out(f"  server: {r.server}")
    if r.allow:
        out(f"  allow: {', '.join(r.allow)}")
    if r.supported:
        out(f"  supported: {', '.join(r.supported)}")
    if r.tls:
        out(f"  tls: {r.tls.get('version')} {r.tls.get('cipher')}"
                   + (" (certificate verified)" if r.tls.get("verified") else " (NOT verified: --insecure)"))
    if r.alg_suspected:
        out("  SIP ALG suspected: headers were rewritten on the path:")
        for e in r.alg_evidence:
            out(f"    - {e}")
    else:
        out("  SIP ALG: none seen (Via and From came back as sent)")
    if r.nat_detected:
        out(f"  NAT: the server saw us as {r.public_address}")
