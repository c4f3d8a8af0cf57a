"""Capture analysis: the RTP streams in a pcap/pcapng file, per-stream loss,
RFC 3550 jitter and a MOS by the same E-model as the live probes.

The file is streamed packet by packet (:mod:`probes.wire.pcapread`); memory grows
with the number of streams, not with the file.

RTP detection (no signalling needed, so any UDP port works): a datagram is a
candidate when it has version 2, a payload type outside the RTCP range
(72-76 once the marker bit is masked off) and room for its CSRC list. A
candidate stream (5-tuple + SSRC) is confirmed once ``PROBATION`` packets in a
row advanced the sequence number by 1-3, as RFC 3550 A.1's probation does;
unconfirmed candidates are not reported.

Per stream (RFC 3550 A.1/A.3/A.8):
  - extended highest sequence number with cycle counting, so a 16-bit wrap
    is not mistaken for loss;
  - ``lost`` = expected - received, expected = highest - first + 1 and
    received counting each sequence number once (duplicates are reported
    separately, not subtracted from loss);
  - ``jitter_ms``: J += (|D| - J)/16 with D the difference in transit time
    (arrival in codec clock units minus RTP timestamp) of consecutive packets
    in arrival order; the final value, ``max_jitter_ms`` the largest value J
    reached, as Wireshark's RTP stream statistics report them;
  - ``max_delta_ms``: the largest gap between consecutive arrivals.
The codec clock comes from the call's SDP when the capture holds it (SIP over
UDP: ``a=rtpmap`` for the media address/port), else from the static payload
type (probes.voice.codecs: PCMU 0, PCMA 8, G722 9, G729 18 of RFC 3551; ``encoding``
names which, since PCMU and PCMA share one codec entry). A dynamic payload type (96-127) without SDP has codec
``unknown`` and a clock inferred from RTP timestamp advance over capture time,
snapped to a standard rate (``clock_inferred: true``). Packets of another
payload type in the stream (RFC 4733 DTMF, comfort noise) count for sequence
and loss, not for jitter: their timestamps do not follow the audio clock.

MOS: a capture cannot know the one-way network delay (it needs both ends'
clocks), so the score assumes ``one_way_ms`` (default 0: the score then shows
what jitter and loss alone cost) plus the de-jitter buffer and packetisation
delay, as docs/contract.md §4 defines d. Ppl is network loss plus packets that
arrived later than the de-jitter buffer allows relative to the earliest
transit seen so far (a phone would drop those). Unknown codecs are scored with
G.711+PLC constants (``mos_codec_assumed``).
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from probes.voice import emodel
from probes.voice.codecs import CODECS, codec_for_payload_type, encoding_for_payload_type
from probes.events import Emitter, ProgressCallback
from probes.wire.pcapread import CaptureError, UdpDatagram, open_capture, read_frames, udp_datagrams
from probes.result import BadInput, clean, local_error

PROBATION = 4              # consecutive in-order packets that confirm a stream
MAX_DROPOUT = 3000         # RFC 3550 A.1
MAX_MISORDER = 100
DUP_WINDOW = 512           # a copy arriving more than this many packets late counts as reordered
SEQ_MOD = 1 << 16
MAX_CANDIDATES = 5000      # unconfirmed candidates kept (random UDP looks like RTP once)
CLOCK_SAMPLE = 50          # packets buffered to infer a dynamic payload type's clock
STANDARD_CLOCKS_HZ = (8000, 16000, 24000, 32000, 44100, 48000, 90000)
RTCP_PT = range(72, 77)    # RTCP packet types 200-204 with the marker bit masked off
SDP_CODECS = {"pcmu": "g711", "pcma": "g711", "g729": "g729", "g722": "g722", "opus": "opus"}
SIP_START = re.compile(rb"^(SIP/2\.0 \d{3}|[A-Z]{3,10} sips?:)")


@dataclass
class AnalyzeConfig:
    path: str
    jitter_buffer_ms: float = 60.0
    one_way_ms: float = 0.0
    min_packets: int = PROBATION


@dataclass
class RtpStream:
    src: str
    sport: int
    dst: str
    dport: int
    ssrc: int
    payload_type: int
    codec: str
    clock_hz: int | None
    clock_inferred: bool
    ptime_ms: float | None
    packets: int
    expected: int
    lost: int
    loss_pct: float
    duplicates: int
    reordered: int
    sequence_errors: int
    jitter_ms: float
    mean_jitter_ms: float
    max_jitter_ms: float
    max_delta_ms: float
    late: int
    late_pct: float
    start_s: float
    duration_s: float
    mos: float | None
    r_factor: float | None
    mos_codec_assumed: str | None = None
    lost_rfc3550: int = 0                # expected - all received (duplicates make it smaller, even < 0)
    codec_source: str = "static-pt"      # static-pt | sdp | unknown
    other_pt_packets: int = 0            # e.g. RFC 4733 DTMF events inside the stream
    encoding: str | None = None          # RFC 3551 / SDP encoding name: PCMU, PCMA, G722, G729...
    emodel: str = "G.107"                # the model that scored it: G.107 or G.107.1 (wideband)
    r_scale: float = 100.0               # top of r_factor's scale
    mos_provisional: bool = False        # a codec constant the score needed is not published


@dataclass
class AnalyzeResult:
    file: str
    streams: list[RtpStream] = field(default_factory=list)
    frames: int = 0
    udp_datagrams: int = 0
    assumptions: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    partial: bool = False
    measured: bool = True

    def to_dict(self) -> dict:
        d = clean(self)
        d["probe"] = "analyze"
        d["ssrcs"] = [f"0x{s.ssrc:08x}" for s in self.streams]
        return d


class _Tracker:
    """Sequence, jitter and timing state of one candidate stream."""

    def __init__(self, d: UdpDatagram, ssrc: int, pt: int, seq: int,
                 sdp: dict[int, tuple[str, int]] | None = None) -> None:
        self.d = d
        self.ssrc = ssrc
        self.pt = pt
        codec = codec_for_payload_type(pt)
        self.codec = codec.name if codec else "unknown"
        self.clock_hz: int | None = codec.clock_hz if codec else None
        self.codec_source = "static-pt" if codec else "unknown"
        self.encoding = encoding_for_payload_type(pt)
        if sdp and pt in sdp:            # the call's own SDP names the codec and its clock
            name, clock = sdp[pt]
            n = name.lower()
            self.encoding = name.upper()
            self.codec = SDP_CODECS.get(n, n if n in CODECS else "unknown")
            self.clock_hz, self.codec_source = clock, "sdp"
        self.clock_inferred = False
        self.other_pt = 0                # packets of another payload type (DTMF events, CN)
        self.confirmed = False
        self.probation = 1
        # RFC 3550 A.1 sequence state
        self.base_seq = seq
        self.max_seq = seq
        self.cycles = 0
        self.bad_seq = SEQ_MOD + 1
        self.packets = 0
        self.duplicates = 0
        self.reordered = 0
        self.seq_errors = 0
        self.seen: set[int] = set()
        # timing
        self.first_arrival = d.time_s
        self.last_arrival = d.time_s
        self.max_delta_s = 0.0
        self.ts_deltas: Counter[int] = Counter()
        self.last_ts: int | None = None
        self.ts_unwrapped = 0
        self.pending: list[tuple[float, int]] = []   # (arrival, unwrapped ts) until the clock is known
        # jitter (in timestamp units) and late packets
        self.prev_transit: float | None = None
        self.jitter = 0.0
        self.jitter_sum = 0.0
        self.jitter_n = 0
        self.max_jitter = 0.0
        self.min_transit_ms: float | None = None
        self.late = 0

    # --- sequence numbers (RFC 3550 A.1, extended to flag duplicates and reordering)
    def _ext(self, seq: int) -> int | None:
        """Extended sequence number of ``seq``, or None when it is a wild jump."""
        udelta = (seq - self.max_seq) % SEQ_MOD
        ext_max = self.cycles + self.max_seq
        if udelta == 0:
            return ext_max
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += SEQ_MOD
            self.max_seq = seq
            return self.cycles + seq
        if udelta <= SEQ_MOD - MAX_MISORDER:
            # a very large jump: per A.1 accept it only if the next packet follows it
            if seq == self.bad_seq:
                self.base_seq, self.max_seq, self.cycles = seq, seq, 0
                self.seen.clear()
                self.packets = self.duplicates = 0
                self.bad_seq = SEQ_MOD + 1
                return seq
            self.bad_seq = (seq + 1) % SEQ_MOD
            return None
        return ext_max - (SEQ_MOD - udelta)   # a little behind: reordered or duplicate

    def add(self, d: UdpDatagram, seq: int, ts: int, pt: int) -> None:
        ext_before = self.cycles + self.max_seq
        ext = self._ext(seq) if self.packets else self.cycles + seq
        if ext is None:
            self.seq_errors += 1
            self.probation = 0
            return
        self.packets += 1
        if ext in self.seen:
            self.duplicates += 1
        else:
            self.seen.add(ext)
            if self.packets > 1 and ext != ext_before + 1:
                self.seq_errors += 1
                if ext < ext_before:
                    self.reordered += 1
        if len(self.seen) > 1024:   # only recent numbers can still come back as duplicates
            floor = self.cycles + self.max_seq - DUP_WINDOW
            self.seen = {s for s in self.seen if s >= floor}
        if not self.confirmed and self.packets > 1:
            self.probation = self.probation + 1 if 1 <= ext - ext_before <= 3 else 1
            if self.probation >= PROBATION:
                self.confirmed = True

        # timing
        if self.packets > 1:
            self.max_delta_s = max(self.max_delta_s, d.time_s - self.last_arrival)
        self.last_arrival = d.time_s
        if pt != self.pt:
            # RFC 4733 events and comfort noise share the SSRC and sequence numbers but
            # their timestamps do not advance with the audio clock: keep them out of jitter
            self.other_pt += 1
            return
        if self.last_ts is not None:
            step = ((ts - self.last_ts + (1 << 31)) % (1 << 32)) - (1 << 31)   # signed wrap
            self.ts_unwrapped += step
            if ext == ext_before + 1 and 0 < step and len(self.ts_deltas) < 64:
                self.ts_deltas[step] += 1
        self.last_ts = ts
        if self.clock_hz is None:
            self.pending.append((d.time_s, self.ts_unwrapped))
            if len(self.pending) >= CLOCK_SAMPLE:
                self._infer_clock()
        else:
            self._jitter(d.time_s, self.ts_unwrapped)

    def _infer_clock(self) -> None:
        (t0, ts0), (t1, ts1) = self.pending[0], self.pending[-1]
        rate = (ts1 - ts0) / (t1 - t0) if t1 > t0 else 0.0
        self.clock_hz = min(STANDARD_CLOCKS_HZ, key=lambda c: abs(c - rate)) if rate > 0 else 8000
        self.clock_inferred = True
        for arrival, ts in self.pending:
            self._jitter(arrival, ts)
        self.pending = []

    def _jitter(self, arrival_s: float, ts: int) -> None:
        assert self.clock_hz is not None            # fixed by the first packets (above)
        # timestamp units (RFC 3550 A.8); arrival relative to the first packet keeps
        # float precision (epoch seconds x 90 kHz would lose sub-microsecond detail)
        transit = (arrival_s - self.first_arrival) * self.clock_hz - ts
        if self.prev_transit is not None:
            self.jitter += (abs(transit - self.prev_transit) - self.jitter) / 16.0
            self.max_jitter = max(self.max_jitter, self.jitter)
            self.jitter_sum += self.jitter
            self.jitter_n += 1
        self.prev_transit = transit
        transit_ms = transit * 1000.0 / self.clock_hz
        if self.min_transit_ms is None or transit_ms < self.min_transit_ms:
            self.min_transit_ms = transit_ms
        elif transit_ms - self.min_transit_ms > self._buffer_ms:
            self.late += 1

    _buffer_ms = 60.0

    def result(self, cfg: AnalyzeConfig) -> RtpStream:
        if self.pending:
            self._infer_clock()
        clock = self.clock_hz or 8000
        to_ms = 1000.0 / clock
        expected = self.cycles + self.max_seq - self.base_seq + 1
        unique = self.packets - self.duplicates
        lost = max(0, expected - unique)
        loss_pct = 100.0 * lost / expected if expected else 0.0
        late_pct = 100.0 * self.late / unique if unique else 0.0
        ptime_ms = None
        if self.ts_deltas:
            ptime_ms = round(self.ts_deltas.most_common(1)[0][0] * to_ms, 3)
        codec = CODECS.get(self.codec)
        assumed = None
        if codec is None:
            codec, assumed = CODECS["g711"], "g711"
        s = emodel.score(codec, cfg.one_way_ms, min(100.0, loss_pct + late_pct),
                         jitter_buffer_ms=cfg.jitter_buffer_ms, ptime_ms=ptime_ms or 20.0)
        return RtpStream(
            src=self.d.src, sport=self.d.sport, dst=self.d.dst, dport=self.d.dport,
            ssrc=self.ssrc, payload_type=self.pt, codec=self.codec, clock_hz=clock,
            clock_inferred=self.clock_inferred, ptime_ms=ptime_ms, packets=self.packets,
            expected=expected, lost=lost, loss_pct=loss_pct, duplicates=self.duplicates,
            reordered=self.reordered, sequence_errors=self.seq_errors,
            jitter_ms=self.jitter * to_ms,
            mean_jitter_ms=(self.jitter_sum / self.jitter_n * to_ms) if self.jitter_n else 0.0,
            max_jitter_ms=self.max_jitter * to_ms, max_delta_ms=self.max_delta_s * 1000.0,
            late=self.late, late_pct=late_pct, start_s=self.first_arrival,
            duration_s=self.last_arrival - self.first_arrival,
            mos=s.mos, r_factor=s.r_factor, mos_codec_assumed=assumed,
            emodel=s.emodel, r_scale=s.r_scale, mos_provisional=s.provisional,
            codec_source=self.codec_source, other_pt_packets=self.other_pt, encoding=self.encoding,
            lost_rfc3550=expected - self.packets)


def parse_rtp(payload: bytes) -> tuple[int, int, int, int] | None:
    """(payload_type, seq, timestamp, ssrc) if the bytes can be an RTP packet."""
    if len(payload) < 12 or payload[0] >> 6 != 2:
        return None
    pt = payload[1] & 0x7F
    if pt in RTCP_PT or 12 + 4 * (payload[0] & 0x0F) > len(payload):
        return None
    seq = int.from_bytes(payload[2:4], "big")
    ts = int.from_bytes(payload[4:8], "big")
    ssrc = int.from_bytes(payload[8:12], "big")
    return pt, seq, ts, ssrc


def validate(config: AnalyzeConfig) -> None:
    """Bad arguments -> BadInput (probes.result) naming the config field (exit 2);
    the file itself is checked when it is opened (CaptureError, field ``path``)."""
    if not config.path:
        raise CaptureError("path: no capture file given")
    if not 0 <= config.jitter_buffer_ms <= 10000:
        raise BadInput(f"jitter_buffer_ms {config.jitter_buffer_ms:g}: expected 0-10000 ms", field="jitter_buffer_ms")
    if not 0 <= config.one_way_ms <= 10000:
        raise BadInput(f"one_way_ms {config.one_way_ms:g}: expected 0-10000 ms", field="one_way_ms")
    if config.min_packets < 1:
        raise BadInput(f"min_packets {config.min_packets}: expected at least 1", field="min_packets")


def run(config: AnalyzeConfig, progress: ProgressCallback | None = None,
        stop: threading.Event | None = None) -> AnalyzeResult:
    """Analyse a capture. Raises BadInput (:func:`validate`; CaptureError for unreadable files)."""
    validate(config)
    emit = Emitter("analyze", progress)
    capture = open_capture(config.path)      # CaptureError: missing, folder, FIFO, device
    result = AnalyzeResult(file=config.path, assumptions={
        "one_way_ms": config.one_way_ms, "jitter_buffer_ms": config.jitter_buffer_ms,
        "note": "one-way delay is unknown in a capture; MOS assumes one_way_ms plus the "
                "de-jitter buffer and packetisation"})
    trackers: dict[tuple, _Tracker] = {}
    sdp_media: dict[tuple[str, int], dict[int, tuple[str, int]]] = {}   # (addr, port) -> rtpmap
    size = max(1, os.fstat(capture.fileno()).st_size)
    emit("start", f"reading {config.path}")
    try:
        with capture as f:
            frames = read_frames(f, config.path)

            def counted():
                for fr in frames:
                    result.frames += 1
                    yield fr

            for n, d in enumerate(udp_datagrams(counted()), 1):
                result.udp_datagrams += 1
                if stop is not None and stop.is_set():
                    result.partial = True
                    local_error(result, "stopped before the end of the file")
                    break
                if n % 50000 == 0:
                    emit("progress", f"{n} UDP datagrams", fraction=min(1.0, f.tell() / size))
                if SIP_START.match(d.payload):
                    learn_sdp(d.payload, sdp_media)
                    continue
                rtp = parse_rtp(d.payload)
                if rtp is None:
                    continue
                pt, seq, ts, ssrc = rtp
                key = (d.src, d.sport, d.dst, d.dport, ssrc)
                tr = trackers.get(key)
                if tr is None:
                    if len(trackers) >= MAX_CANDIDATES:
                        _evict_unconfirmed(trackers)
                    sdp = sdp_media.get((d.dst, d.dport)) or sdp_media.get((d.src, d.sport))
                    tr = trackers[key] = _Tracker(d, ssrc, pt, seq, sdp)
                    tr._buffer_ms = config.jitter_buffer_ms
                tr.add(d, seq, ts, pt)
    except OSError as exc:
        raise CaptureError(f"{config.path}: {exc.strerror or exc}") from None
    result.streams = [t.result(config) for t in trackers.values()
                      if t.confirmed and t.packets >= config.min_packets]
    result.streams.sort(key=lambda s: (s.start_s, s.ssrc))
    emit("done", f"{len(result.streams)} RTP stream(s) in {result.frames} frames")
    return result


def learn_sdp(message: bytes, media: dict[tuple[str, int], dict[int, tuple[str, int]]]) -> None:
    """From a SIP message with an SDP body: where each audio stream is received and what its
    payload types mean (RFC 4566 c=/m=/a=rtpmap), so dynamic payload types get a codec."""
    if len(media) > 10_000:
        media.clear()
    head, sep, body = message.partition(b"\r\n\r\n")
    if not sep or b"m=audio" not in body:
        return
    session_addr, port, addr, pts, rtpmap = None, None, None, [], {}
    in_audio = False
    for raw in body.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if line.startswith("m="):
            in_audio = line.startswith("m=audio")
            if in_audio:
                parts = line[2:].split()
                if len(parts) >= 4 and parts[1].isdigit():
                    port = int(parts[1])
                    pts = [int(p) for p in parts[3:] if p.isdigit()]
        elif line.startswith("c=IN IP"):
            a = line.split()[-1].split("/")[0]
            if port is None:
                session_addr = a
            elif in_audio:
                addr = a
        elif in_audio and line.startswith("a=rtpmap:"):
            pt_text, _, enc = line[9:].partition(" ")
            name, _, rest = enc.partition("/")
            clock = rest.split("/")[0]
            if pt_text.isdigit() and clock.isdigit():
                rtpmap[int(pt_text)] = (name, int(clock))
    where = addr or session_addr
    if port and where:
        for pt in pts:
            c = codec_for_payload_type(pt)
            if pt not in rtpmap and c:
                rtpmap[pt] = (c.name, c.clock_hz)
        media[(where, port)] = rtpmap


def _evict_unconfirmed(trackers: dict[tuple, _Tracker]) -> None:
    """Drop the oldest half of the unconfirmed candidates (bounded memory)."""
    stale = [k for k, t in trackers.items() if not t.confirmed]
    for k in stale[: max(1, len(stale) // 2)]:
        del trackers[k]
