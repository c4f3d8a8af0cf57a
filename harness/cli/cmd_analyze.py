"""`cutover analyze FILE`: RTP streams in a capture, per-stream loss, jitter, MOS."""

from __future__ import annotations

import sys

import click

from harness.cli.common import (EXIT_FAIL, EXIT_OK, StderrProgress, die_bad_input, emit_json,
                                err, json_option)
from probes import analyze
from probes.result import BadInput


@click.command("analyze", help="""RTP streams in a capture (pcap/pcapng): per-stream jitter, loss, MOS.

\b
RTP is found on any UDP port (version 2, plausible payload type, a steady
SSRC and sequence). Jitter is RFC 3550's, with RTP timestamps and the codec
clock. A capture cannot know the one-way delay: MOS assumes --one-way-ms
(default 0) plus the de-jitter buffer and packetisation.

\b
Exit codes: 0 every stream at or above --mos-min (or no --mos-min),
1 a stream below it or no RTP stream found, 2 unreadable/truncated file.

\b
Example:
  cutover analyze calls.pcap --json""")
@click.argument("capture", metavar="FILE.pcap")
@click.option("--jitter-buffer-ms", default=60.0, show_default=True, type=float,
              help="De-jitter buffer: packets later than this count as lost for MOS.")
@click.option("--one-way-ms", default=0.0, show_default=True, type=float,
              help="Assumed one-way network delay for the MOS (not measurable from a capture).")
@click.option("--mos-min", default=None, type=float, help="Exit 1 when a stream scores below this.")
@click.option("-v", "--verbose", is_flag=True, help="Progress on stderr also with --json.")
@json_option
def command(capture, jitter_buffer_ms, one_way_ms, mos_min, verbose, as_json):
    cfg = analyze.AnalyzeConfig(capture, jitter_buffer_ms=jitter_buffer_ms, one_way_ms=one_way_ms)
    try:
        result = analyze.run(cfg, StderrProgress(enabled=verbose or not as_json))
    except BadInput as exc:   # CaptureError names the file; the others their field
        die_bad_input(exc, path="FILE.pcap")
    failing = [s for s in result.streams if mos_min is not None and s.mos is not None and s.mos < mos_min]
    code = EXIT_OK if result.streams and not failing else EXIT_FAIL
    if as_json:
        emit_json(result.to_dict())
    else:
        _print(result)
        if not result.streams:
            err("cutover: no RTP stream found in the capture")
    sys.exit(code)


def _print(result: analyze.AnalyzeResult) -> None:
    click.echo(f"{result.file}: {result.frames} frames, {result.udp_datagrams} UDP, "
               f"{len(result.streams)} RTP stream(s)")
    if not result.streams:
        return
    click.echo(f"{'SSRC':>10}  {'source -> destination':<44} {'PT':>3} {'codec':<7} {'pkts':>7} "
               f"{'lost':>6} {'loss%':>6} {'dup':>4} {'seqerr':>6} {'jit ms':>7} {'maxjit':>7} "
               f"{'maxΔ ms':>8} {'MOS':>5}")
    for s in result.streams:
        flow = f"{s.src}:{s.sport} -> {s.dst}:{s.dport}"
        mos = f"{s.mos:.2f}" + ("*" if s.mos_codec_assumed else "")
        click.echo(f"0x{s.ssrc:08x}  {flow:<44} {s.payload_type:>3} {s.encoding or s.codec:<7} {s.packets:>7} "
                   f"{s.lost:>6} {s.loss_pct:>6.2f} {s.duplicates:>4} {s.sequence_errors:>6} "
                   f"{s.jitter_ms:>7.2f} {s.max_jitter_ms:>7.2f} {s.max_delta_ms:>8.1f} {mos:>5}")
    if any(s.mos_codec_assumed for s in result.streams):
        click.echo("* dynamic payload type: codec unknown, MOS scored with G.711+PLC constants")
    a = result.assumptions
    click.echo(f"MOS assumes one-way delay {a['one_way_ms']:g} ms and a {a['jitter_buffer_ms']:g} ms "
               "de-jitter buffer (a capture cannot measure one-way delay).")
