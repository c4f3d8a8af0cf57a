"""`cutover probe call URI --account FILE`: a real test call through the SIP trunk."""

from __future__ import annotations

import sys
import threading

import click

from harness.cli.common import (EXIT_BAD_INPUT, EXIT_FAIL, EXIT_OK, EXIT_UNMEASURED, StderrProgress,
                                StopOnSignal, bound_probe_options, circuit_or_exit, die, die_bad_input, emit_json,
                                err, load_profile_or_exit, out)
from probes import call
from probes.result import ProbeError
from probes.sipaccount import AccountError, load_account


@click.command("call", help="""A real test call through the provider's SIP trunk.

\b
Registers the account (digest MD5 or SHA-256, RFC 8760), calls URI with an
SDP offer of --codec first and common alternatives, sends RTP at the codec's
real size and rate (a test tone, not silence) for --duration seconds and
reports, per direction, packets, loss, RFC 3550 jitter, |IPDV| and MOS
(the stream probe's E-model); post-dial delay (INVITE to 180/183), answer
time, the negotiated codec; one-way or no audio with the silent direction
and the likely cause; NAT/ALG evidence (Via received/rport, the Contact the
registrar stored, SDP rewriting).

\b
URI is a SIP URI (sip:echo@sip.carrier.example) or a number, dialled as
sip:NUMBER@<account domain>. Call the provider's echo service, or call
yourself: --answer-account registers a second account of the trunk that
cutover answers, and both directions are then measured end to end.

\b
Account file (YAML, keep it mode 0600; the password is never printed):
  username: "4420794600"
  password_file: alice.secret      # or password: "..."
  domain: sip.carrier.example
  registrar: sip:sip.carrier.example      # optional: register first
  outbound_proxy: sip:sbc.carrier.example;transport=tcp   # optional
  transport: udp                   # udp | tcp | tls (--ca FILE for a private CA)

\b
Porting check: --ported NUMBER (repeat) calls each number from --account and
checks that it arrives at --answer-account (registered on the new trunk):
"2 of 3 numbers ring on the new trunk; +442079460018 still rings elsewhere".

\b
Exit codes: 0 registered, connected, audio both ways (and every ported number
arrived); 1 registration refused, call rejected (486, 488...), no answer,
one-way or no audio, a ported number elsewhere; 2 bad option or account file;
3 the SIP server did not answer at all.

\b
Examples:
  cutover probe call sip:echo@sip.carrier.example --account alice.yaml
  cutover probe call --profile site.yaml --circuit new     # the circuit's test_call and accounts
  cutover probe call 4420794600 --account alice.yaml --answer-account bob.yaml --duration 20
  cutover probe call --account old-trunk.yaml --answer-account new-trunk.yaml \\
      --ported +442079460010 --ported +442079460018 --json""")
@click.argument("uri", required=False)
@click.option("--account", "account_file", metavar="FILE", default=None,
              help="Account YAML of the caller (else the circuit's sip_account).")
@click.option("--answer-account", "answer_file", metavar="FILE", default=None,
              help="Second account that cutover registers and answers with (call yourself, porting).")
@click.option("--ported", multiple=True, metavar="NUMBER", help="A ported number to check (repeat).")
@click.option("--codec", default=None, help="Codec offered first: g711, g729, g722, opus (default: the profile's, "
              "else g711).")
@click.option("--ptime", "ptime_ms", type=int, default=None,
              help="Packetisation in ms (default: the profile's, else 20).")
@click.option("--duration", "duration_s", type=float, default=10.0, show_default=True,
              help="Seconds of audio after the answer.")
@click.option("--ring-timeout", "ring_timeout_s", type=float, default=30.0, show_default=True,
              help="Seconds to wait for an answer before CANCEL.")
@click.option("--expires", "expires_s", type=int, default=300, show_default=True,
              help="Registration expiry asked for (s); the server's grant is reported.")
@click.option("--jitter-buffer-ms", "jitter_buffer_ms", type=float, default=None,
              help="De-jitter buffer for late packets and the E-model (default: the profile's, else 60).")
@click.option("--transport", type=click.Choice(["udp", "tcp", "tls"], case_sensitive=False), default=None,
              help="Force a transport (else the account's, the URI's, or DNS).")
@click.option("--ca", "ca_file", metavar="FILE", default=None,
              help="TLS: trust this CA certificate (PEM) instead of the system store.")
@click.option("--insecure", is_flag=True, help="TLS: do not verify the server certificate.")
@click.option("--register-only", is_flag=True, help="Register (and un-register), no call.")
@click.option("--timeout", "timeout_s", type=float, default=8.0, show_default=True,
              help="Seconds to wait for a SIP answer per request.")
@bound_probe_options
def command(uri, account_file, answer_file, ported, codec, ptime_ms, duration_s, ring_timeout_s, expires_s,
            jitter_buffer_ms, transport, ca_file, insecure, register_only, timeout_s, verbose, profile_path, circuit,
            source, interface, as_json):
    if profile_path is not None:       # the circuit's accounts, call and numbers; the options win
        prof = load_profile_or_exit(profile_path)
        circ = circuit_or_exit(prof, circuit)
        account_file = account_file or (str(prof.resolve_path(circ.sip_account)) if circ.sip_account else None)
        answer_file = answer_file or (str(prof.resolve_path(circ.answer_account)) if circ.answer_account else None)
        uri = uri or circ.test_call
        ported = ported or tuple(circ.ported_numbers)
        codec, ptime_ms = codec or prof.planned.codec, ptime_ms or prof.planned.ptime_ms
        jitter_buffer_ms = prof.thresholds.jitter_buffer_ms if jitter_buffer_ms is None else jitter_buffer_ms
        source, interface = source or circ.source, interface or circ.interface
    elif circuit is not None:
        die(EXIT_BAD_INPUT, "--circuit needs --profile PROFILE")
    if account_file is None:
        die(EXIT_BAD_INPUT, "missing --account FILE (or --profile PROFILE with a circuit's sip_account)")
    codec, ptime_ms = codec or "g711", ptime_ms or 20
    jitter_buffer_ms = 60.0 if jitter_buffer_ms is None else jitter_buffer_ms
    try:
        account = load_account(account_file)
        answer = load_account(answer_file) if answer_file else None
    except AccountError as exc:
        die(EXIT_BAD_INPUT, str(exc))
    cfg = call.CallConfig(account=account, uri=uri, answer_account=answer, ported=list(ported), codec=codec,
                          ptime_ms=ptime_ms, duration_s=duration_s, ring_timeout_s=ring_timeout_s,
                          expires_s=expires_s, jitter_buffer_ms=jitter_buffer_ms,
                          transport=transport.lower() if transport else None, ca_file=ca_file,
                          insecure=insecure, timeout_s=timeout_s,
                          register_only=register_only, source=source, interface=interface)
    stop = threading.Event()
    try:
        with StopOnSignal(stop):
            result = call.run(cfg, StderrProgress(enabled=verbose or not as_json), stop)
    except (ProbeError, ValueError) as exc:
        die_bad_input(exc, answer_account="--answer-account")
    code = EXIT_OK if result.ok else EXIT_UNMEASURED if result.outcome == "unreachable" else EXIT_FAIL
    if result.partial and code == EXIT_OK:
        code = EXIT_UNMEASURED          # stopped halfway: what was measured is printed, not passed
    if as_json:
        emit_json(result.to_dict())
    else:
        _print(result)
    if code == EXIT_UNMEASURED:
        err(f"cutover: {result.summary}" + (" (stopped early)" if result.partial else ""))
    sys.exit(code)


def _f(v, fmt="{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def _print(r: call.CallResult) -> None:
    if r.tls:
        out(f"tls: {r.tls.get('version')} {r.tls.get('cipher')}"
                   + (" (certificate verified)" if r.tls.get("verified") else " (NOT verified: --insecure)"))
    for reg in (r.registration, r.answer_registration):
        if reg is None:
            continue
        if reg.ok:
            out(f"register {reg.account} at {reg.registrar}: {reg.status_code} {reg.reason} in "
                       f"{_f(reg.time_ms)} ms, granted {reg.expires_s} s"
                       + (f" (digest {reg.algorithm})" if reg.algorithm else "")
                       + (f" (423: at least {reg.min_expires_s} s)" if reg.min_expires_s else ""))
        else:
            out(f"register {reg.account} at {reg.registrar}: FAILED: {reg.error}")
    c = r.call
    if c is not None:
        head = f"call {c.target}: {c.status_code or '-'} {c.reason or c.error or ''}".rstrip()
        out(head)
        if c.connected:
            out(f"  post-dial delay {_f(c.post_dial_delay_ms)} ms (INVITE to "
                       f"{'180/183' if any(p in (180, 183) for p in c.provisional) else '200'}), "
                       f"answered after {_f(c.answer_ms)} ms; codec {c.encoding}/{c.ptime_ms} ms "
                       f"(offered {', '.join(c.offered)}); talked {_f(c.talk_s)} s, ended by {c.ended_by}")
        elif c.error:
            out(f"  {c.error}")
    m = r.media
    if m is not None and m.directions:
        out(f"  media ({m.mode}): {m.local_address} <-> {m.remote_sdp_address}")
        for d in m.directions:
            sent = f"{d['packets_received']}/{d['packets_sent']}" if d.get("packets_sent") else \
                f"{d['packets_received']}"
            ipdv = (d.get("ipdv_ms") or {}).get("mean")
            by = f" [{d['measured_by']}]" if d.get("measured_by") not in (None, "cutover") else ""
            out(f"    {d['direction']:<18} packets {sent}, loss {_f(d.get('loss_pct'), '{:.2f}')} %, "
                       f"jitter {_f(d.get('jitter_ms'), '{:.2f}')} ms, |IPDV| {_f(ipdv, '{:.2f}')} ms, "
                       f"MOS {_f(d.get('mos'), '{:.2f}')}{by}")
    if m is not None and m.problem:
        out(f"  AUDIO: {m.problem}")
        if m.likely_cause:
            out(f"  likely cause: {m.likely_cause}")
    if r.nat_evidence:
        out("  NAT/ALG evidence:")
        for e in r.nat_evidence:
            out(f"    - {e}")
    for p in r.porting:
        out(f"  ported {p.number}: {'OK' if p.arrived else 'NOT ON NEW TRUNK'}: {p.note}")
    out(f"{r.outcome.upper()}: {r.summary}")
