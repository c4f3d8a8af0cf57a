"""RTP media of a test call: the SDP offer/answer, a sender at the codec's real
size and rate, a receiver, RTCP reports both ways, and the per-direction figures
(RFC 3550, G.107).

Why a test signal and not silence: a trunk or phone with VAD sends comfort
noise (or nothing) for silence, so a silent test would measure the CN path,
not speech. G.711 carries a real 1004 Hz + 425 Hz two-tone, mu-law or A-law
encoded (peak -6 dBov); G.722/G.729/Opus carry payloads of the codec's exact
size (160/20/60 bytes at 20 ms) filled with the same non-constant pattern, since
encoding those needs a codec library: right size and rate on the wire, not
decodable audio.

RTP header (RFC 3550 §5.1), 12 bytes, network order::

     0                   1                   2                   3
    |V=2|P|X|  CC   |M|     PT      |       sequence number         |
    |                           timestamp                           |
    |           synchronization source (SSRC) identifier            |
    |                    payload (codec frame) ...                  |

Figures per received stream (pure, :func:`direction_stats`): loss from the
sequence numbers (or from the sender's count when we sent it ourselves),
RFC 3550 §6.4.1 jitter from arrival time minus RTP timestamp, |IPDV| between
consecutive sequence numbers, late packets beyond the de-jitter buffer, and
the MOS of :func:`probes.voice.emodel.score` with Ppl = loss + late, exactly as the
stream probe scores a direction.
"""

from __future__ import annotations

import math
import re
import secrets
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from probes.voice import emodel, stats
from probes.voice.codecs import get_codec

RTP_HEADER = struct.Struct("!BBHII")

# SDP encoding name -> (our codec table name, RTP clock, static payload type or None)
ENCODINGS: dict[str, tuple[str, int, int | None]] = {
    "PCMU": ("g711", 8000, 0), "PCMA": ("g711", 8000, 8), "G722": ("g722", 8000, 9),
    "G729": ("g729", 8000, 18), "opus": ("opus", 48000, None),
}
STATIC_PT = {0: "PCMU", 8: "PCMA", 9: "G722", 18: "G729"}
DYNAMIC_PT = {"opus": 111, "telephone-event": 101}
# the profile's codec first, then the alternatives a trunk most likely accepts
OFFER_ORDER = {
    "g711": ("PCMU", "PCMA", "G722", "G729"),
    "g729": ("G729", "PCMU", "PCMA"),
    "g722": ("G722", "PCMU", "PCMA"),
    "opus": ("opus", "G722", "PCMU", "PCMA"),
}


# ---- SDP (RFC 4566, offer/answer RFC 3264) -------------------------------------------------

@dataclass
class Sdp:
    address: str | None                 # c= connection address (media destination)
    port: int | None                    # m=audio port
    payload_types: list[int]            # m=audio formats in preference order
    rtpmap: dict[int, str]              # pt -> encoding name
    ptime_ms: int | None = None
    direction: str = "sendrecv"
    origin_address: str | None = None   # o= address


def encoding_of(sdp: Sdp, pt: int) -> str | None:
    return sdp.rtpmap.get(pt) or STATIC_PT.get(pt)


def offer_encodings(codec: str) -> list[str]:
    return list(OFFER_ORDER[get_codec(codec).name])


def build_sdp(host: str, port: int, encodings: list[str], ptime_ms: int, session_id: int,
              version: int = 1) -> bytes:
    ipv = "IP6" if ":" in host else "IP4"
    pts, lines = [], []
    for enc in encodings:
        _name, clock, static = ENCODINGS[enc]
        pt = static if static is not None else DYNAMIC_PT[enc]
        pts.append(pt)
        lines.append(f"a=rtpmap:{pt} {enc}/{clock}" + ("/2" if enc == "opus" else ""))
    pts.append(DYNAMIC_PT["telephone-event"])
    lines += [f"a=rtpmap:{DYNAMIC_PT['telephone-event']} telephone-event/8000",
              f"a=fmtp:{DYNAMIC_PT['telephone-event']} 0-15", f"a=ptime:{ptime_ms}", "a=sendrecv"]
    body = ["v=0", f"o=cutover {session_id} {version} IN {ipv} {host}", "s=cutover test call",
            f"c=IN {ipv} {host}", "t=0 0", f"m=audio {port} RTP/AVP {' '.join(map(str, pts))}"] + lines
    return ("\r\n".join(body) + "\r\n").encode()


def parse_sdp(body: bytes | str) -> Sdp | None:
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if "m=" not in text:
        return None
    session_c = media_c = origin = None
    port, pts, rtpmap, ptime, direction = None, [], {}, None, "sendrecv"
    in_audio = seen_media = False
    for line in text.replace("\r\n", "\n").split("\n"):
        line = line.strip()
        if len(line) < 2 or line[1] != "=":
            continue
        k, v = line[0], line[2:]
        if k == "o":
            parts = v.split()
            origin = parts[5] if len(parts) >= 6 else None
        elif k == "m":
            seen_media = True
            parts = v.split()
            in_audio = parts[0] == "audio" and port is None
            if in_audio and len(parts) >= 3 and parts[1].isdigit():
                port = int(parts[1])
                pts = [int(x) for x in parts[3:] if x.isdigit()]
        elif k == "c":
            parts = v.split()
            addr = parts[2].split("/")[0] if len(parts) >= 3 else None
            if not seen_media:
                session_c = addr
            elif in_audio:
                media_c = addr
        elif k == "a" and (in_audio or not seen_media):
            m = re.match(r"rtpmap:(\d+)\s+([^/\s]+)/(\d+)", v)
            if m:
                rtpmap[int(m.group(1))] = m.group(2)
            elif v.startswith("ptime:") and v[6:].strip().isdigit():
                ptime = int(v[6:].strip())
            elif v in ("sendrecv", "sendonly", "recvonly", "inactive"):
                direction = v
    return Sdp(media_c or session_c, port, pts, rtpmap, ptime, direction, origin)


def choose(offer: Sdp, supported: list[str]) -> tuple[int, str] | None:
    """The answerer's pick: the first payload type of the offer that we support."""
    for pt in offer.payload_types:
        enc = encoding_of(offer, pt)
        for s in supported:
            if enc and enc.lower() == s.lower():
                return pt, s
    return None


def negotiated(answer: Sdp) -> tuple[int, str] | None:
    """The codec of an answer: its first audio format other than telephone-event."""
    for pt in answer.payload_types:
        enc = encoding_of(answer, pt)
        if enc and enc.lower() != "telephone-event":
            return pt, next((e for e in ENCODINGS if e.lower() == enc.lower()), enc)
    return None


# ---- the test signal ---------------------------------------------------------------------

_SEG_UEND = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_SEG_AEND = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _segment(value: int, table: tuple[int, ...]) -> int:
    for i, end in enumerate(table):
        if value <= end:
            return i
    return len(table)


def _mulaw(sample: int) -> int:
    """G.711 mu-law of a 16-bit linear sample (the ITU/Sun reference g711.c)."""
    v = sample >> 2
    mask = 0xFF
    if v < 0:
        v, mask = -v, 0x7F
    v = min(v, 8159) + (0x84 >> 2)
    seg = _segment(v, _SEG_UEND)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((v >> (seg + 1)) & 0x0F)) ^ mask


def _alaw(sample: int) -> int:
    """G.711 A-law of a 16-bit linear sample (the ITU/Sun reference g711.c)."""
    v = sample >> 3
    if v >= 0:
        mask = 0xD5
    else:
        mask, v = 0x55, -v - 1
    seg = _segment(v, _SEG_AEND)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= ((v >> 1) if seg < 2 else (v >> seg)) & 0x0F
    return aval ^ mask


def signal_frames(encoding: str, ptime_ms: int, frames: int = 50) -> list[bytes]:
    """``frames`` payloads of the test signal (they repeat): a 1004 Hz + 425 Hz
    two-tone at 8 kHz for G.711, the same bytes cut to the codec's size otherwise."""
    codec = get_codec(ENCODINGS[encoding][0])
    size = codec.payload_bytes(ptime_ms)
    per = 8 * ptime_ms
    enc = _alaw if encoding == "PCMA" else _mulaw
    out = []
    for f in range(frames):
        samples = [int(8000 * (math.sin(2 * math.pi * 1004 * n / 8000) + math.sin(2 * math.pi * 425 * n / 8000)))
                   for n in range(f * per, (f + 1) * per)]
        payload = bytes(enc(s) for s in samples)
        out.append((payload * (size // len(payload) + 1))[:size])
    return out


def is_silence(payload: bytes, encoding: str) -> bool:
    """All-zero-amplitude G.711 (0xFF mu-law, 0xD5 A-law) or a constant byte."""
    return len(set(payload)) <= 1


# ---- RTCP (RFC 3550 §6.4): what the far end says it received from us ----------------------
#
# SR (PT 200) / RR (PT 201), then SDES (PT 202) with our CNAME, in one compound packet:
#
#   |V=2|P|   RC    |   PT=200/201  |             length (32-bit words - 1)          |
#   |                         SSRC of sender                                          |
#   |  SR only: NTP timestamp (64 bits) | RTP timestamp | packet count | octet count   |
#   report block, 24 bytes, one per source heard:
#   |                 SSRC of the source reported on                                  |
#   | fraction lost |       cumulative number of packets lost (24 bits)               |
#   |           extended highest sequence number received                             |
#   |                      interarrival jitter (timestamp units)                      |
#   |                 last SR (LSR: middle 32 bits of its NTP time)                   |
#   |                 delay since last SR (DLSR, 1/65536 s)                           |
#
# Round trip from a report: RTT = A - LSR - DLSR, A = arrival time's middle 32 NTP bits
# (RFC 3550 §6.4.1's example: A 0xb7108000, LSR 0xb7052000, DLSR 0x00054000 -> 6.125 s).

RTCP_INTERVAL_S = 2.5           # RFC 3550 §6.2: the first report after half the 5 s minimum
NTP_UNIX_OFFSET_S = 2208988800
_REPORT = struct.Struct("!IIIIII")


@dataclass
class ReportBlock:
    ssrc: int
    fraction_lost: int              # 0..255 = lost share since the previous report * 256
    cumulative_lost: int
    ext_highest_seq: int
    jitter: int                     # RTP timestamp units
    lsr: int = 0
    dlsr: int = 0


def ntp_now() -> tuple[int, int]:
    t = time.time() + NTP_UNIX_OFFSET_S
    sec = int(t)
    return sec & 0xFFFFFFFF, int((t - sec) * 2 ** 32) & 0xFFFFFFFF


def ntp_mid32(sec: int, frac: int) -> int:
    return ((sec & 0xFFFF) << 16) | (frac >> 16)


def rtt_ms_from_report(arrival_mid32: int, lsr: int, dlsr: int) -> float | None:
    """RFC 3550 §6.4.1: A - LSR - DLSR in 1/65536 s; None without an SR to refer to."""
    if lsr == 0:
        return None
    return ((arrival_mid32 - lsr - dlsr) & 0xFFFFFFFF) * 1000.0 / 65536


def build_rtcp(ssrc: int, blocks: list[ReportBlock], cname: str,
               sender: tuple[int, int, int, int, int] | None = None) -> bytes:
    """A compound SR (``sender`` = ntp sec, ntp frac, rtp ts, packets, octets) or RR, plus SDES CNAME."""
    body = b"".join(struct.pack("!I", b.ssrc) + struct.pack("!I", ((b.fraction_lost & 0xFF) << 24)
                                                             | (b.cumulative_lost & 0xFFFFFF))
                    + struct.pack("!IIII", b.ext_highest_seq & 0xFFFFFFFF, b.jitter & 0xFFFFFFFF,
                                  b.lsr & 0xFFFFFFFF, b.dlsr & 0xFFFFFFFF) for b in blocks[:31])
    n = min(len(blocks), 31)
    if sender is not None:
        head = struct.pack("!IIIIII", ssrc, *[x & 0xFFFFFFFF for x in sender])
        pt = 200
    else:
        head = struct.pack("!I", ssrc)
        pt = 201
    report = head + body
    first = struct.pack("!BBH", 0x80 | n, pt, (len(report) + 4) // 4 - 1) + report
    item = bytes([1, len(cname.encode()[:255])]) + cname.encode()[:255]
    chunk = struct.pack("!I", ssrc) + item + b"\0"
    chunk += b"\0" * (-len(chunk) % 4)
    sdes = struct.pack("!BBH", 0x81, 202, (len(chunk) + 4) // 4 - 1) + chunk
    return first + sdes


def parse_rtcp(data: bytes) -> list[dict]:
    """The SR/RR packets of a compound RTCP packet: {pt, ssrc, ntp_mid32 (SR), blocks}."""
    out, off = [], 0
    while off + 8 <= len(data):
        b0, pt, length = struct.unpack_from("!BBH", data, off)
        size = (length + 1) * 4
        if b0 >> 6 != 2 or off + size > len(data):
            break
        if pt in (200, 201):
            ssrc = struct.unpack_from("!I", data, off + 4)[0]
            pos, item = off + 8, {"pt": pt, "ssrc": ssrc, "blocks": []}
            if pt == 200 and pos + 20 <= off + size:
                sec, frac = struct.unpack_from("!II", data, pos)
                item["ntp_mid32"] = ntp_mid32(sec, frac)
                pos += 20
            for _ in range(b0 & 0x1F):
                if pos + 24 > off + size:
                    break
                src, lost_word, ext, jit, lsr, dlsr = _REPORT.unpack_from(data, pos)
                cum = lost_word & 0xFFFFFF
                if cum & 0x800000:
                    cum -= 0x1000000                 # signed 24-bit (duplicates can make it negative)
                item["blocks"].append(ReportBlock(src, lost_word >> 24, cum, ext, jit, lsr, dlsr))
                pos += 24
            out.append(item)
        off += size
    return out


def report_block(ssrc: int, seqs: list[int], arrivals_s: list[float], timestamps: list[int], clock_hz: int,
                 prev: tuple[int, int] | None, lsr: int = 0, dlsr: int = 0) -> tuple[ReportBlock, tuple[int, int]]:
    """Our report on one source (RFC 3550 A.3): from its packets in arrival order.
    ``prev`` = (expected, received) at the previous report, for the fraction lost."""
    ext = unwrap(seqs)
    base, high = min(ext), max(ext)
    expected, received = high - base + 1, len(set(ext))
    lost = expected - received
    e_int = expected - (prev[0] if prev else 0)
    r_int = received - (prev[1] if prev else 0)
    fraction = (((e_int - r_int) << 8) // e_int) if e_int > 0 and e_int > r_int else 0
    transit = [a * clock_hz - t for a, t in zip(arrivals_s, _unwrap32(timestamps))]
    jitter = int(stats.rfc3550_jitter(transit))
    return ReportBlock(ssrc, fraction, lost, high, jitter, lsr, dlsr), (expected, received)


# ---- the session ---------------------------------------------------------------------------

@dataclass
class Received:
    arrival_ns: int              # CLOCK_REALTIME, the kernel's receive time (sends use time.time_ns())
    seq: int
    timestamp: int
    ssrc: int
    payload_type: int
    size: int
    echoed: bool                 # our own SSRC and payload came back


class RtpSession:
    """One RTP socket: sends the test signal to the far end's SDP address every
    ptime (absolute schedule, so a late wake-up does not drift the stream) and
    records every packet that arrives, from any source (the first source is
    kept: an address different from the SDP's is NAT evidence)."""

    def __init__(self, local_host: str, encoding: str, payload_type: int, ptime_ms: int,
                 port: int | None = None, symmetric: bool = False) -> None:
        self.configure(encoding, payload_type, ptime_ms)
        self.sock, self.rtcp_sock = _rtp_rtcp_sockets(local_host, port)
        # symmetric RTP (RFC 4961, what SBCs do for NAT): once RTP arrives, send back to its source
        self.symmetric = symmetric
        self.latched_to: tuple[str, int] | None = None
        self.local = self.sock.getsockname()[:2]
        self.ssrc = secrets.randbits(32)
        self.seq0, self.ts0 = secrets.randbits(16), secrets.randbits(32)
        self.remote: tuple[str, int] | None = None
        self.sent_ns: list[int] = []
        self.received: list[Received] = []
        self.first_source: tuple[str, int] | None = None
        self.send_errors = 0
        self.silent_payloads = 0
        self._stop = threading.Event()
        self._halt = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.rtcp_remote: tuple[str, int] | None = None
        self.reports: list[tuple[float, float | None, ReportBlock]] = []   # (monotonic, rtt_ms, block on us)
        self.rtcp_packets_received = 0
        self.rtcp_sent = 0
        self._last_sr: dict[int, tuple[int, float]] = {}     # ssrc -> (LSR, monotonic arrival)
        self._prev_report: dict[int, tuple[int, int]] = {}
        self.cname = f"cutover-{self.ssrc:08x}@{local_host}"

    def configure(self, encoding: str, payload_type: int, ptime_ms: int) -> None:
        """The codec the answer chose (the socket, and so the SDP port, stay)."""
        self.encoding, self.payload_type, self.ptime_ms = encoding, payload_type, ptime_ms
        self.codec = get_codec(ENCODINGS[encoding][0])
        self.clock_hz = ENCODINGS[encoding][1]
        self.frames = signal_frames(encoding, ptime_ms)

    @property
    def port(self) -> int:
        return self.local[1]

    def start(self, remote: tuple[str, int] | None, duration_s: float, send: bool = True) -> None:
        self.remote = remote
        self.rtcp_remote = (remote[0], remote[1] + 1) if remote else None      # RFC 3550 §11: port + 1
        self._threads = [threading.Thread(target=self._recv_loop, args=(duration_s + 2.0,), daemon=True)]
        if send and remote:
            self._threads.append(threading.Thread(target=self._send_loop, args=(duration_s,), daemon=True))
        if self.rtcp_sock is not None:
            self._threads.append(threading.Thread(target=self._rtcp_loop, daemon=True))
        for t in self._threads:
            t.start()

    def send_report(self) -> None:
        """One SR (while we send) or RR, with a block on the source we hear most."""
        if self.rtcp_sock is None or self.rtcp_remote is None:
            return
        blocks = []
        pkts = list(self.received)
        if pkts:
            counts: dict[int, int] = {}
            for p in pkts:
                counts[p.ssrc] = counts.get(p.ssrc, 0) + 1
            src = max(counts, key=lambda k: counts[k])
            sel = [p for p in pkts if p.ssrc == src]
            lsr, at = self._last_sr.get(src, (0, 0.0))
            dlsr = int((time.monotonic() - at) * 65536) if lsr else 0
            block, self._prev_report[src] = report_block(
                src, [p.seq for p in sel], [p.arrival_ns / 1e9 for p in sel], [p.timestamp for p in sel],
                self.clock_hz, self._prev_report.get(src), lsr, dlsr)
            blocks.append(block)
        sender = None
        if self.sent_ns:
            sec, frac = ntp_now()
            n = len(self.sent_ns)
            sender = (sec, frac, self.ts0 + n * self.clock_hz * self.ptime_ms // 1000, n,
                      n * len(self.frames[0]))
        try:
            self.rtcp_sock.sendto(build_rtcp(self.ssrc, blocks, self.cname, sender), self.rtcp_remote)
            self.rtcp_sent += 1
        except OSError:
            pass

    def _rtcp_loop(self) -> None:
        sock = self.rtcp_sock
        if sock is None:
            return
        next_report = time.monotonic() + RTCP_INTERVAL_S
        while True:
            stopping = self._stop.is_set()
            now = time.monotonic()
            if now >= next_report and not stopping:
                self.send_report()
                next_report = now + RTCP_INTERVAL_S
            try:
                ready, _, _ = select.select([sock], [], [], 0 if stopping else min(0.1, max(0.0, next_report - now)))
            except (OSError, ValueError):
                return
            if not ready:
                if stopping:
                    return                        # drained: a last report that came with BYE is kept
                continue
            try:
                data, _src = sock.recvfrom(2048)
            except OSError:
                return
            self._on_rtcp(data)

    def _on_rtcp(self, data: bytes) -> None:
        arrival = time.monotonic()
        mid = ntp_mid32(*ntp_now())
        for item in parse_rtcp(data):
            self.rtcp_packets_received += 1
            if "ntp_mid32" in item:
                self._last_sr[item["ssrc"]] = (item["ntp_mid32"], arrival)
            for b in item["blocks"]:
                if b.ssrc == self.ssrc:
                    self.reports.append((arrival, rtt_ms_from_report(mid, b.lsr, b.dlsr), b))

    def halt_nowait(self) -> None:
        self._halt.set()

    def halt_sending(self) -> None:
        """Stop sending, keep receiving (the end of a call measured on both sides)."""
        self._halt.set()
        self.wait_sent(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._halt.set()
        for t in self._threads:
            t.join(timeout=3.0)
        self.sock.close()
        if self.rtcp_sock is not None:
            self.rtcp_sock.close()

    def wait_sent(self, timeout_s: float) -> None:
        if len(self._threads) > 1:
            self._threads[1].join(timeout=timeout_s)

    def _send_loop(self, duration_s: float) -> None:
        n = max(1, int(round(duration_s * 1000 / self.ptime_ms)))
        step_ns = self.ptime_ms * 1_000_000
        samples = self.clock_hz * self.ptime_ms // 1000
        seq0, ts0 = self.seq0, self.ts0
        t0 = time.monotonic_ns()
        for i in range(n):
            if self._halt.is_set():
                break
            due = t0 + i * step_ns
            wait = (due - time.monotonic_ns()) / 1e9
            if wait > 0 and self._halt.wait(wait):
                break
            header = RTP_HEADER.pack(0x80, (0x80 if i == 0 else 0) | self.payload_type, (seq0 + i) & 0xFFFF,
                                     (ts0 + i * samples) & 0xFFFFFFFF, self.ssrc)
            self.sent_ns.append(time.time_ns())       # the kernel stamps arrivals in CLOCK_REALTIME
            dest = self.remote                     # may change once (symmetric RTP latching)
            if dest is None:
                break
            try:
                self.sock.sendto(header + self.frames[i % len(self.frames)], dest)
            except OSError:
                self.send_errors += 1

    def _recv_loop(self, max_s: float) -> None:
        self.sock.settimeout(0.1)
        try:        # the kernel's arrival time: a receive thread that wakes late adds no jitter
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        except OSError:
            pass
        end = time.monotonic() + max_s + 30     # stop() ends it; this bounds a forgotten session
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                data, anc, _flags, src = self.sock.recvmsg(2048, 64)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                continue
            now = _kernel_time_ns(anc)
            if len(data) < 12 or data[0] >> 6 != 2:
                continue
            _b0, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
            payload = data[12:]
            echoed = ssrc == self.ssrc and payload in self.frames
            if is_silence(payload, self.encoding):
                self.silent_payloads += 1
            if self.first_source is None:
                self.first_source = src[:2]
                if self.symmetric and self.remote and src[:2] != tuple(self.remote):
                    self.latched_to = self.remote = src[:2]
            self.received.append(Received(now, seq, ts, ssrc, b1 & 0x7F, len(data), echoed))


SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_TIMESPEC = struct.Struct("@qq")


def _kernel_time_ns(ancdata) -> int:
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            sec, nsec = _TIMESPEC.unpack_from(data)
            return sec * 1_000_000_000 + nsec
    return time.time_ns()


def _rtp_rtcp_sockets(host: str, port: int | None = None) -> tuple[socket.socket, socket.socket | None]:
    """RTP on an even port (RFC 3550 §11) and RTCP on the odd one above; with ``port``
    given, RTP there and RTCP on port + 1 if it is free (else no RTCP)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            rtp.bind((host, port))
        except OSError:
            rtp.close()
            raise
        return rtp, _bind_or_none(family, host, port + 1)
    for _ in range(50):
        rtp = socket.socket(family, socket.SOCK_DGRAM)
        rtp.bind((host, 0))
        p = rtp.getsockname()[1]
        if p % 2 == 0 and p < 65535:
            rtcp = _bind_or_none(family, host, p + 1)
            if rtcp is not None:
                return rtp, rtcp
        rtp.close()
    raise OSError("no free even/odd UDP port pair for RTP/RTCP after 50 tries")


def _bind_or_none(family: int, host: str, port: int) -> socket.socket | None:
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
        return s
    except OSError:
        s.close()
        return None


# ---- figures per direction (pure) ----------------------------------------------------------

@dataclass
class DirectionStats:
    direction: str                       # "cutover->far" | "far->cutover" | "round trip (echo)"
    packets_sent: int | None
    packets_received: int
    loss_pct: float | None
    late_pct: float
    jitter_ms: float | None
    ipdv_ms: dict = field(default_factory=dict)
    one_way_ms: float | None = None
    one_way_source: str | None = None    # measured | half-rtt-echo | half-sip-rtt
    mos: float | None = None
    r_factor: float | None = None
    duplicates: int = 0
    measured_by: str = "cutover"         # cutover | answer account | far end (RTCP)


def unwrap(seqs: list[int]) -> list[int]:
    """16-bit RTP sequence numbers extended across wrap-around (RFC 3550 A.1), arrival order."""
    out, cycles, prev = [], 0, None
    for s in seqs:
        if prev is not None:
            if s < prev and prev - s > 0x8000:
                cycles += 0x10000
            elif s > prev and s - prev > 0x8000:
                cycles -= 0x10000     # a late packet from before the wrap
        out.append(s + cycles)
        prev = s
    return out


def direction_stats(direction: str, arrivals_ms: list[float], seqs: list[int], timestamps: list[int],
                    clock_hz: int, codec: str, ptime_ms: int, jitter_buffer_ms: float,
                    sent: int | None = None, one_way_ms: float | None = None,
                    one_way_source: str | None = None, measured_by: str = "cutover",
                    delays_ms: list[float] | None = None) -> DirectionStats:
    """Figures of one received stream; lists in arrival order.

    Loss: with ``sent`` (we know how many were sent: we sent them, or our other
    account did) 100 (sent - unique received) / sent; else from the sequence span.
    Jitter: RFC 3550 on transit = arrival - timestamp / clock. Late: transit above
    the smallest by more than the de-jitter buffer. MOS: E-model, Ppl = loss + late.
    ``delays_ms`` (arrival minus the actual send time, when the sender's clock is ours:
    our answering account, an echo) replace the transit for |IPDV| and late packets, so
    the sender's own scheduling noise is not counted as network jitter.
    """
    n = len(arrivals_ms)
    if n == 0:
        return DirectionStats(direction, sent, 0, 100.0 if sent else None, 0.0, None,
                              one_way_ms=one_way_ms, one_way_source=one_way_source, measured_by=measured_by)
    ext = unwrap(seqs)
    ts_ext = _unwrap32(timestamps)
    transit = [a - t * 1000.0 / clock_hz for a, t in zip(arrivals_ms, ts_ext)]
    unique: dict[int, float] = {}
    for seq, tr in zip(ext, delays_ms if delays_ms is not None else transit):
        unique.setdefault(seq, tr)
    dup = n - len(unique)
    expected = sent if sent else (max(unique) - min(unique) + 1)
    loss = max(0.0, 100.0 * (expected - len(unique)) / expected) if expected else None
    jitter = stats.rfc3550_jitter(transit)
    order = sorted(unique)
    ipdv = stats.summary(stats.abs_ipdv_indexed(order, [unique[q] for q in order]), stats.IPDV_KEYS)
    late = stats.late_count(list(unique.values()), jitter_buffer_ms)
    late_pct = 100.0 * late / len(unique)
    ds = DirectionStats(direction, sent, len(unique), loss, late_pct, jitter, ipdv, one_way_ms,
                        one_way_source, duplicates=dup, measured_by=measured_by)
    if one_way_ms is not None and loss is not None:
        score = emodel.score(codec, one_way_ms, min(100.0, loss + late_pct), jitter_buffer_ms=jitter_buffer_ms,
                             ptime_ms=ptime_ms)
        ds.mos, ds.r_factor = score.mos, score.r_factor
    return ds


def _unwrap32(ts: list[int]) -> list[int]:
    out, cycles, prev = [], 0, None
    for t in ts:
        if prev is not None:
            if t < prev and prev - t > 0x80000000:
                cycles += 0x100000000
            elif t > prev and t - prev > 0x80000000:
                cycles -= 0x100000000
        out.append(t + cycles)
        prev = t
    return out


def direction_from_report(block: ReportBlock, seq0: int, sent: int, clock_hz: int, codec: str, ptime_ms: int,
                          jitter_buffer_ms: float, one_way_ms: float | None,
                          one_way_source: str | None) -> DirectionStats:
    """cutover -> far as the far end's RTCP report describes it: our packets up to its
    highest sequence number, minus its cumulative lost; its RFC 3550 jitter. |IPDV| and
    late packets are not in a report (late counted 0)."""
    expected = min(sent, ((block.ext_highest_seq - seq0) & 0xFFFFFFFF) + 1) if sent else 0
    received = max(0, expected - max(0, block.cumulative_lost))
    loss = 100.0 * (expected - received) / expected if expected else None
    ds = DirectionStats("cutover->far", expected, received, loss, 0.0, block.jitter * 1000.0 / clock_hz, {},
                        one_way_ms, one_way_source, measured_by="far end (RTCP)")
    if one_way_ms is not None and loss is not None:
        s = emodel.score(codec, one_way_ms, loss, jitter_buffer_ms=jitter_buffer_ms, ptime_ms=ptime_ms)
        ds.mos, ds.r_factor = s.mos, s.r_factor
    return ds
