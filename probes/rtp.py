"""RTP media of a test call: the SDP offer/answer, a sender at the codec's real
size and rate, a receiver, and the per-direction figures (RFC 3550, G.107).

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
the MOS of :func:`probes.emodel.score` with Ppl = loss + late, exactly as the
stream probe scores a direction.
"""

from __future__ import annotations

import math
import re
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

from probes import emodel, stats
from probes.codecs import get_codec

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
    body = [f"v=0", f"o=cutover {session_id} {version} IN {ipv} {host}", "s=cutover test call",
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


# ---- the session ---------------------------------------------------------------------------

@dataclass
class Received:
    arrival_ns: int
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
        self.sock = _even_port_socket(local_host, port)
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
        self._threads = [threading.Thread(target=self._recv_loop, args=(duration_s + 2.0,), daemon=True)]
        if send and remote:
            self._threads.append(threading.Thread(target=self._send_loop, args=(duration_s,), daemon=True))
        for t in self._threads:
            t.start()

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
            self.sent_ns.append(time.monotonic_ns())
            try:
                self.sock.sendto(header + self.frames[i % len(self.frames)], self.remote)
            except OSError:
                self.send_errors += 1

    def _recv_loop(self, max_s: float) -> None:
        self.sock.settimeout(0.1)
        end = time.monotonic() + max_s + 3600   # bounded by stop(); the call's own deadline ends it
        while not self._stop.is_set() and time.monotonic() < end:
            try:
                data, src = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                continue
            now = time.monotonic_ns()
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


def _even_port_socket(host: str, port: int | None = None) -> socket.socket:
    """RTP on an even port (RFC 3550 §11), RTCP would be the odd one above; or on ``port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    if port:
        s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            s.bind((host, port))
        except OSError:
            s.close()
            raise
        return s
    for _ in range(50):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((host, 0))
        if s.getsockname()[1] % 2 == 0:
            return s
        s.close()
    raise OSError("no even UDP port free for RTP after 50 tries")


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
                    one_way_source: str | None = None) -> DirectionStats:
    """Figures of one received stream; lists in arrival order.

    Loss: with ``sent`` (we know how many were sent: we sent them, or our other
    account did) 100 (sent - unique received) / sent; else from the sequence span.
    Jitter: RFC 3550 on transit = arrival - timestamp / clock. Late: transit above
    the smallest by more than the de-jitter buffer. MOS: E-model, Ppl = loss + late.
    """
    n = len(arrivals_ms)
    if n == 0:
        return DirectionStats(direction, sent, 0, 100.0 if sent else None, 0.0, None,
                              one_way_ms=one_way_ms, one_way_source=one_way_source)
    ext = unwrap(seqs)
    ts_ext = _unwrap32(timestamps)
    transit = [a - t * 1000.0 / clock_hz for a, t in zip(arrivals_ms, ts_ext)]
    unique = {}
    for s, tr in zip(ext, transit):
        unique.setdefault(s, tr)
    dup = n - len(unique)
    expected = sent if sent else (max(unique) - min(unique) + 1)
    loss = max(0.0, 100.0 * (expected - len(unique)) / expected) if expected else None
    jitter = stats.rfc3550_jitter(transit)
    order = sorted(unique)
    ipdv = stats.summary(stats.abs_ipdv_indexed(order, [unique[s] for s in order]), stats.IPDV_KEYS)
    late = stats.late_count(list(unique.values()), jitter_buffer_ms)
    late_pct = 100.0 * late / len(unique)
    ds = DirectionStats(direction, sent, len(unique), loss, late_pct, jitter, ipdv, one_way_ms,
                        one_way_source, duplicates=dup)
    if one_way_ms is not None and loss is not None:
        s = emodel.score(codec, one_way_ms, min(100.0, loss + late_pct), jitter_buffer_ms=jitter_buffer_ms,
                         ptime_ms=ptime_ms)
        ds.mos, ds.r_factor = s.mos, s.r_factor
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
