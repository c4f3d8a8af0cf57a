"""STAMP session-reflector (RFC 8762 stateful mode, RFC 8972 TLVs).

Usage from code and tests::

    r = StampReflector("127.0.0.1:0", key=None, on_session_end=print)
    r.start()                # binds, serves in a daemon thread
    host, port = r.address
    ...
    r.stop()                 # ends every session (summary lines), closes the socket

The CLI runs :meth:`serve` in the main thread until a stop event is set.

Behaviour:

- Stateful: each session (source address, source port, SSID) gets its own
  reply sequence numbers 0, 1, 2, ... so a sender sees upstream loss as a gap
  between its own and our numbers.
- Receive timestamps come from the kernel (SO_TIMESTAMPNS) when available,
  transmit timestamps are taken right before sending. The DSCP/ECN we
  received (IP_RECVTOS / IPV6_RECVTCLASS) goes into the Class of Service TLV
  and the reply is marked with the DSCP the sender asked for (DSCP1).
- Replies are exactly as long as their requests (no amplification).
- With a key, only packets carrying a valid HMAC are answered, and each
  sender sequence number once per session: a sliding window of the last
  REPLAY_WINDOW (1024) numbers per session, as IPsec's anti-replay window
  (RFC 4303 §3.4.3); a copy of an answered packet, or one older than the
  window, is refused and counted (``stats.replays_refused``, the session's
  summary line, the aggregated log). The window is per session: a captured
  packet sent from another address or port opens a new session (answered
  once there, and subject to the quotas below). Without a key anyone can
  forge packets, so there is nothing for a window to protect.

Protection against floods (issue #16: 80 000 new SSIDs from 10 addresses
used to evict a running 2-call stream, which then saw 2.7 % loss and
concluded "stateless reflector"):

- A session is *on probation* until it has been answered PROVEN_PACKETS (3)
  times, then *established*. A real call sends every ptime (10-60 ms), so it
  is established within about 0.1 s; a flood of one packet per SSID never is.
- When the session table (``max_sessions``) is full, a newcomer takes the
  place of the oldest session still on probation. Established sessions are
  never evicted for a newcomer: when every session in the table is
  established, the newcomer is refused (``stats.table_full``) until one
  ends by idle expiry (``session_idle_s``). So a flood can only churn its
  own one-packet sessions, and a new real session survives unless 65 536
  newer sessions arrive within its first three packets.
- Per source address at most ``max_sessions_per_source`` sessions (8192): at
  the cap a new session ends the source's oldest one if that has been quiet
  for ``source_reuse_idle_s`` (a capacity ramp's finished step), else it is
  refused (``stats.session_limited``). A per-source packet rate cap
  (``max_pps_per_source``). Malformed packets are counted and dropped.
- The log is bounded: a line per ended session for the first
  LOG_LINES_PER_WINDOW (50) established sessions and the first 50 on
  probation per LOG_WINDOW_S (10 s), so a flood cannot crowd out the real
  sessions' lines; after that one line per reason for the rest ("14,464 more
  sessions from 10 sources ended in the last 10 s ..."); refused packets never get a line each, one line per reason and
  window ("dropped 80,000 packets from 10 sources in the last 10 s: session
  table full ...; most from 127.0.0.2 (8,000), ..."). Sources are tracked up
  to MAX_TALLY_SOURCES per reason, so the tally's memory is bounded too.

One reply loop (:meth:`StampReflector._drain`) for both receive paths: on
Linux recvmmsg with up to 64 datagrams per call and replies to one peer sent
as one UDP GSO datagram train (probes/engine/mmsg.py), elsewhere (or ``batch=False``)
recvmsg_into through mmsg.OneByOne, which fills the same slots. Measured
(thread CPU per reply, benchmarks/bench_reflector.py, 2-core VM under other
load): batched 3.6-3.9 us on a queued burst (3.9 before the merge of the two
loops), 5-6.6 us under the stream engine's 50 000 requests/s; keyed 16.7 us
(HMAC-SHA-256 twice; the replay window adds about 0.6 us); one-by-one 11.2 us
(8.4 us when it had a loop of its own: the adapter writes the ancillary data
back in the kernel's layout, ~1 us, so that one parser reads both paths).
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from probes.engine import mmsg, sockopts
from probes.wire import stamp
from probes.addr import HostPort, parse_hostport

SessionKey = tuple  # (address tuple, ssid)
_U64_BE = struct.Struct(">Q")   # a reply's transmit timestamp, written right before the send
_REFL_UNAUTH_MBZ = struct.Struct(stamp.REFL_UNAUTH.format + "3x")   # octets 0..43, MBZ zeroed

# the cmsg level|type words the loop's one-unpack layouts compare (computed once: each
# level_type is a pack and an unpack, and _drain runs per wake-up)
_LEVEL_TYPES = (mmsg.level_type(socket.SOL_SOCKET, sockopts.SO_TIMESTAMPNS),
                mmsg.level_type(socket.SOL_SOCKET, sockopts.SO_RXQ_OVFL),
                mmsg.level_type(socket.IPPROTO_IP, socket.IP_TTL),
                mmsg.level_type(socket.IPPROTO_IP, socket.IP_TOS))

PROVEN_PACKETS = 3          # answered this often, a session is established: no newcomer evicts it
REPLAY_WINDOW = 1024        # sender sequence numbers remembered per authenticated session
_WINDOW_MASK = (1 << REPLAY_WINDOW) - 1
LOG_WINDOW_S = 10.0         # aggregated log lines at most this often
LOG_LINES_PER_WINDOW = 50   # session summary lines per window before they are aggregated
MAX_TALLY_SOURCES = 1024    # distinct sources remembered per reason and window

# why a packet was not answered (one aggregated log line per reason and window)
R_RATE = "over the per-source packet rate cap"
R_MALFORMED = "malformed (not a STAMP packet of this mode)"
R_AUTH = "failed authentication"
R_REPLAY = "replayed sender sequence number (authenticated session)"
R_SOURCE_CAP = "new session refused: the source is at its session cap and its sessions are live"
R_TABLE_FULL = "session table full (every session established): new session refused"


@dataclass
class ReflectorStats:
    received: int = 0
    reflected: int = 0
    malformed: int = 0
    auth_failed: int = 0
    rate_limited: int = 0
    session_limited: int = 0       # new sessions refused at the per-source cap
    table_full: int = 0            # new sessions refused: the table is full of established sessions
    evicted: int = 0               # sessions on probation ended to make room for a newcomer
    replays_refused: int = 0       # authenticated packets whose sender seq was already answered
    sessions_started: int = 0
    sessions_active: int = 0
    kernel_drops: int = 0


class _Session:
    __slots__ = ("next_seq", "first_s", "last_ns", "min_seq", "max_seq", "dscp", "addr", "ssid",
                 "seen", "replays")

    def __init__(self, addr: tuple, ssid: int, now_ns: int, seq: int) -> None:
        self.addr, self.ssid = addr, ssid
        self.next_seq = 0
        self.first_s = now_ns / 1e9
        self.last_ns = now_ns              # wall clock: cheaper than a second clock read per packet
        self.min_seq = self.max_seq = seq
        self.dscp = -1
        self.seen = 1                      # replay window: bit k = sender seq max_seq - k answered
        self.replays = 0


def replay_window(top: int, seen: int, seq: int) -> int:
    """The anti-replay window after sender sequence number ``seq`` arrives, or
    -1 to refuse it. ``top`` is the highest number answered so far and bit k
    of ``seen`` says whether ``top - k`` was answered (RFC 4303 §3.4.3, with
    REPLAY_WINDOW bits): a higher number slides the window, one inside it is
    accepted once, one below it is refused."""
    if seq > top:
        shift = seq - top
        return ((seen << shift) | 1) & _WINDOW_MASK if shift < REPLAY_WINDOW else 1
    d = top - seq
    if d >= REPLAY_WINDOW or (seen >> d) & 1:
        return -1
    return seen | (1 << d)


class _Tally:
    """Counts per reason and source address for one aggregated log line per
    reason and window; at most MAX_TALLY_SOURCES sources per reason."""

    def __init__(self) -> None:
        self._by_reason: dict[str, list] = {}    # reason -> [count, {source: count}, more sources?]

    def add(self, reason: str, src: str) -> None:
        e = self._by_reason.get(reason)
        if e is None:
            e = self._by_reason[reason] = [0, {}, False]
        e[0] += 1
        srcs = e[1]
        c = srcs.get(src)
        if c is not None:
            srcs[src] = c + 1
        elif len(srcs) < MAX_TALLY_SOURCES:
            srcs[src] = 1
        else:
            e[2] = True

    def take(self) -> list[tuple[str, int, dict[str, int], bool]]:
        """(reason, count, {source: count}, more sources than listed) per reason; starts afresh."""
        out = [(reason, e[0], e[1], e[2]) for reason, e in self._by_reason.items()]
        self._by_reason = {}
        return out


def _sources(srcs: dict[str, int], more: bool) -> str:
    n = len(srcs)
    return f"{n:,}{'+' if more else ''} source{'' if n == 1 and not more else 's'}"


def _top(srcs: dict[str, int], k: int = 3) -> str:
    best = sorted(srcs.items(), key=lambda kv: -kv[1])[:k]
    return ", ".join(f"{_fmt_host(host)} ({n:,})" for host, n in best)


def _fmt_host(host: str) -> str:
    if host.startswith("::ffff:"):
        host = host[7:]
    return f"[{host}]" if ":" in host else host


def _fmt_addr(addr: tuple) -> str:
    return f"{_fmt_host(addr[0])}:{addr[1]}"


def session_summary(s: _Session, reason: str) -> str:
    span = max(0.0, s.last_ns / 1e9 - s.first_s)
    expected = s.max_seq - s.min_seq + 1
    missing = max(0, expected - s.next_seq)
    dscp = f", DSCP {s.dscp}" if s.dscp >= 0 else ""
    replays = f", {s.replays} replays refused" if s.replays else ""
    return (f"session {_fmt_addr(s.addr)} ssid {s.ssid}: {s.next_seq} packets in {span:.1f} s, "
            f"sender seq {s.min_seq}-{s.max_seq} ({missing} missing upstream){dscp}{replays}; {reason}")

def parse_listen(text: str) -> HostPort:
    """HOST:PORT to listen on; unlike a target, port 0 (any free port) is allowed."""
    t = text.strip()
    if t.endswith(":0") and not t.endswith("::0"):
        hp = parse_hostport(t[:-2] + ":1")
        return HostPort(hp.host, 0)
    return parse_hostport(t)


class StampReflector:
    """A STAMP reflector on one UDP socket. See the module docstring."""

    def __init__(self, listen: str | HostPort = "0.0.0.0:862", key: bytes | None = None, *,
                 max_sessions: int = 65536, max_sessions_per_source: int = 8192,
                 max_pps_per_source: int = 200_000, session_idle_s: float = 30.0,
                 source_reuse_idle_s: float = 0.25,
                 on_session_end: Callable[[str], None] | None = None, batch: bool = True) -> None:
        self.listen = parse_listen(listen) if isinstance(listen, str) else listen
        self.key = key
        self.max_sessions = max_sessions
        self.max_sessions_per_source = max_sessions_per_source
        self.max_pps_per_source = max_pps_per_source
        self.session_idle_s = session_idle_s
        # at the per-source cap, a new session ends that source's oldest one if it has been
        # quiet this long (a live call sends every ptime: 10-60 ms)
        self.source_reuse_idle_s = source_reuse_idle_s
        # where log lines go: session summaries, and the window's aggregated lines
        self.on_session_end = on_session_end
        self.stats = ReflectorStats()
        self._sessions: dict[SessionKey, _Session] = {}   # insertion order = age
        # sessions answered fewer than PROVEN_PACKETS times, oldest first: the ones a
        # newcomer may evict (OrderedDict: taking the oldest is O(1); a dict's first key
        # after many deletions at its front is a scan, 15 us per eviction at 65 536)
        self._probation: OrderedDict[SessionKey, None] = OrderedDict()
        self._per_source: dict[str, int] = {}        # packets in the current 100 ms window
        # active sessions per source address, oldest first
        self._src_sessions: dict[str, OrderedDict[SessionKey, None]] = {}
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._tos_now = -1
        self.rx_features: dict[str, bool] = {}
        self.batch = batch                          # use recvmmsg and UDP GSO when the OS has them
        self._mm: mmsg.MmsgSocket | mmsg.OneByOne | None = None
        self._addr_cache: dict[bytes, tuple] = {}   # raw sockaddr -> Python address tuple
        self._gso = False                           # send equal replies to one peer as one UDP GSO
        self._gso_failures = 0
        self._window_end = 0.0                      # end of the current 100 ms rate window
        self.gso_sends = 0                          # sendmsg calls that carried several replies
        self._drops = _Tally()                      # packets not answered, this log window
        self._quiet_ends = _Tally()                 # sessions ended past the line budget
        self._log_t0 = time.monotonic()             # start of the log window
        self._log_lines = [0, 0]                    # session lines in this window: [probation, established]
        self._kernel_drops_logged = 0
        self._local_port = 0                        # the socket's, once bound (Location TLV)

    # ------------------------------------------------------------ lifecycle
    def bind(self) -> tuple:
        """Create and bind the socket (raises OSError with the cause, e.g. port in use)."""
        host = self.listen.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if family == socket.AF_INET and not host.replace(".", "").isdigit():
            try:
                info = socket.getaddrinfo(host, self.listen.port, 0, socket.SOCK_DGRAM)[0]
            except socket.gaierror as exc:
                raise OSError(exc.errno, f"cannot resolve listen address {host!r}: {exc.strerror}") from None
            family, host = info[0], str(info[4][0])
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if family == socket.AF_INET6:
            # "[::]" serves IPv4 too (v4-mapped), as users expect from a wildcard
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        try:
            sock.bind((host, self.listen.port))
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on UDP {self.listen}: {exc.strerror}") from None
        # ~300 ms of 100k packets/s: rides out scheduling hiccups (root may exceed rmem_max)
        sockopts.grow_buffers(sock, 32 << 20)
        self.rx_features = sockopts.enable_rx_meta(sock)
        sock.setblocking(False)
        self._sock = sock
        return sock.getsockname()

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise RuntimeError("reflector not bound")
        name = self._sock.getsockname()
        return name[0], name[1]

    def start(self) -> "StampReflector":
        """Bind and serve in a daemon thread (for tests and embedding)."""
        if self._sock is None:
            self.bind()
        self._stop.clear()
        self._thread = threading.Thread(target=self.serve, args=(self._stop,),
                                        name="stamp-reflector", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        elif self._sock is not None:
            self._close()

    def _close(self) -> None:
        for key in list(self._sessions):
            self._end(key, "reflector stopped")
        self._flush_log(time.monotonic())
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ------------------------------------------------------------ serving
    def serve(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; closes the socket on return."""
        if self._sock is None:
            self.bind()
        sock = self._sock
        assert sock is not None                  # bind() opened it
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        self._mm, self._gso = None, False
        if self.batch and mmsg.available():
            try:
                self._mm = mmsg.MmsgSocket(sock)
                self._gso = mmsg.gso_supported(sock)
            except OSError:
                self._mm = None
        if self._mm is None:
            self._mm = mmsg.OneByOne(sock)
        self._local_port = sock.getsockname()[1]
        now = time.monotonic()
        next_housekeeping = now + 0.1
        next_expiry = now + min(1.0, self.session_idle_s / 3)
        self._log_t0 = now
        try:
            while not stop.is_set():
                poller.poll(100)
                self._drain(sock)
                now = time.monotonic()
                if now >= next_housekeeping:
                    next_housekeeping = now + 0.1
                    if now >= next_expiry:
                        self._expire(now)
                        next_expiry = now + min(1.0, self.session_idle_s / 3)
                    if now >= self._log_t0 + LOG_WINDOW_S:
                        self._flush_log(now)
        finally:
            self._close()

    def _drain(self, sock: socket.socket) -> None:
        """Answer everything queued (bounded: at most 20 000 datagrams per wake-up).

        One loop for both receive paths: ``self._mm`` is an mmsg.MmsgSocket
        (recvmmsg, up to 64 datagrams per call) or an mmsg.OneByOne
        (recvmsg_into, one per call), read through the same slots. Per datagram,
        in this order: source address, rate cap, ancillary data, size, the
        reply built in place (the engine's usual Class of Service + Extra
        Padding request is rewritten inline, anything else goes through
        stamp.reflect_into), session, replay window (keyed), reply marking.
        Replies are queued, grouped by destination and size, and each group
        leaves as one UDP GSO sendmsg where the kernel has it (see
        probes/engine/mmsg.py for why), else one sendto each. The queue is flushed
        before the socket's TOS changes, so each reply keeps the marking its
        sender asked for. Unauthenticated replies get their transmit timestamp
        written right before the send (it is not covered by an HMAC), so
        batching does not hide the time a reply waited; keyed replies keep the
        time they were built (the HMAC covers it). The receive-side clock
        (session times, and the receive time when the kernel gave none) is
        read once per recv call.
        """
        mm = self._mm
        assert mm is not None                    # serve() set it up
        recv, lengths = mm.recv, mm.lengths
        names, ctrl, slot_bufs, slot_views = mm.names, mm.ctrl, mm.bufs, mm.views
        NAME_B, ctrl_b, slots = mmsg.NAME_B, mm.ctrl_b, mm.slots
        name_b = 16 if sock.family == socket.AF_INET else 28      # sockaddr_in / sockaddr_in6
        walk_cmsg = mmsg.walk_cmsg
        v4_usual, v4_usual_ovfl = mmsg.CMSG_V4_USUAL, mmsg.CMSG_V4_USUAL_OVFL
        if v4_usual is not None and v4_usual_ovfl is not None:
            usual, USUAL_B = v4_usual.unpack_from, mmsg.CMSG_V4_USUAL_B
            usual_ovfl, USUAL_OVFL_B = v4_usual_ovfl.unpack_from, mmsg.CMSG_V4_USUAL_OVFL_B
        else:                 # another cmsg alignment: every datagram takes the generic walk
            usual = usual_ovfl = struct.Struct("").unpack_from
            USUAL_B = USUAL_OVFL_B = -1
        addr_cache = self._addr_cache
        sockaddr_tuple = mmsg.sockaddr_tuple
        key = self.key
        base_b = stamp.AUTH_BASE_B if key is not None else stamp.UNAUTH_BASE_B
        stats = self.stats
        sessions = self._sessions
        probation = self._probation
        PROVEN = PROVEN_PACKETS
        drop = self._drops.add
        per_source = self._per_source
        window_cap = max(1, self.max_pps_per_source // 10)
        reflect_into = stamp.reflect_into
        local_port = self._local_port           # for the Location TLV (RFC 8972 §4.2)
        DecodeError = stamp.StampDecodeError
        AuthError = stamp.StampAuthError
        sender_unpack = stamp.SENDER_HDR.unpack_from
        auth_seq = stamp.AUTH_SEQ.unpack_from
        auth_ts_ee_ssid = stamp.AUTH_TS_EE_SSID.unpack_from
        SEQ_AT, AUTH_TS_AT = stamp.SENDER_SEQ_AT, stamp.AUTH_TS_AT
        cos_pad = stamp.COS_PAD_TLVS.unpack_from
        COS_PAD_AT, COS_VALUE_AT, PAD_VALUE_AT = stamp.COS_PAD_AT, stamp.COS_VALUE_AT, stamp.PAD_VALUE_AT
        COS, PAD = stamp.TLV_CLASS_OF_SERVICE, stamp.TLV_EXTRA_PADDING
        refl_pack_mbz = _REFL_UNAUTH_MBZ.pack_into    # header and its 3 MBZ octets in one call
        cos_pack = stamp.COS_VALUE.pack_into
        tx_pack = _U64_BE.pack_into
        TX_AT = stamp.REFL_TX_TS_AT
        EE = stamp.ERROR_ESTIMATE_DEFAULT
        NTP_OFF = stamp.NTP_OFFSET_FIXED
        MASK = 0xFFFF_FFFF_FFFF_FFFF
        time_ns = time.time_ns
        LT_TS, LT_OVFL, LT_TTL, LT_TOS = _LEVEL_TYPES
        tos_now = self._tos_now
        roll_window = self._roll_rate_window
        sendto, sendmsg = sock.sendto, sock.sendmsg
        gso_anc = mmsg.gso_ancillary
        pending: list[int] = []          # slots whose replies are queued
        no_name = bytes(name_b + 1)      # longer than any name: matches none
        raw = no_name
        addr: tuple = ()                 # the address of `raw`, set before use (no_name matches no name)
        # replies grouped by (destination, size): one UDP GSO sendmsg per group
        groups: list[tuple[tuple, int, list]] = []
        g_views: list[memoryview] = []
        g_raw, g_n, g_max = b"", -1, 1

        def flush() -> None:
            if key is None:
                tx = ((time_ns() * 4294967296) // 1_000_000_000 + NTP_OFF) & MASK
                for j in pending:
                    tx_pack(slot_bufs[j], TX_AT, tx)
            stats.reflected += len(pending)   # counted before sending, so readers never lag the reply
            pending.clear()
            for g_addr, size_b, views in groups:
                if len(views) > 1:
                    try:
                        sendmsg(views, gso_anc(size_b), 0, g_addr)
                        self.gso_sends += 1
                        continue
                    except OSError:
                        # e.g. larger than the path MTU, or no checksum offload: one by one
                        self._gso_failures += 1
                        if self._gso_failures > 3:
                            self._gso = False
                for v in views:
                    try:
                        sendto(v, g_addr)
                    except OSError:
                        stats.reflected -= 1
            groups.clear()

        # the rate window rolls by the clock, checked once per 64 datagrams or fewer
        roll_mask = 0 if slots >= 64 else 63
        for k in range(max(1, 20000 // slots)):   # bounded: housekeeping at least every 20k packets
            try:
                count = recv()
            except OSError:
                # e.g. an ICMP error queued for a previous reply; nothing to answer
                continue
            if not count:
                break
            now_ns = time_ns()
            if not k & roll_mask:
                roll_window()
            lens, clens = lengths()
            stats.received += count
            for i in range(count):
                n = lens[i]
                nbase = i * NAME_B
                # same source as the datagram before (the usual case): compared in place, no copy
                if not names.startswith(raw, nbase, nbase + name_b):
                    raw = bytes(names[nbase:nbase + name_b])
                    cached = addr_cache.get(raw)
                    if cached is None:
                        if len(addr_cache) >= 65536:
                            addr_cache.clear()
                        try:
                            cached = addr_cache[raw] = sockaddr_tuple(raw)
                        except ValueError:
                            raw = no_name
                            continue
                    addr = cached
                src = addr[0]
                n_src = per_source.get(src, 0) + 1
                per_source[src] = n_src
                if n_src > window_cap:
                    stats.rate_limited += 1
                    drop(R_RATE, src)
                    continue
                co = i * ctrl_b
                clen_all = clens[i]
                walk = True
                if clen_all == USUAL_B:
                    _l1, lt1, sec, nsec, _l2, lt2, ttl, _l3, lt3, tos = usual(ctrl, co)
                    if lt1 == LT_TS and lt2 == LT_TTL and lt3 == LT_TOS:
                        rx_ntp = (((sec << 32) + ((nsec << 32) // 1_000_000_000)) + NTP_OFF) & MASK
                        ttl &= 0xFF
                        walk = False
                elif clen_all == USUAL_OVFL_B:
                    # after the socket's first drop its counter rides on every datagram
                    _l1, lt1, sec, nsec, _l2, lt2, drops, _l3, lt3, ttl, _l4, lt4, tos = usual_ovfl(ctrl, co)
                    if lt1 == LT_TS and lt2 == LT_OVFL and lt3 == LT_TTL and lt4 == LT_TOS:
                        rx_ntp = (((sec << 32) + ((nsec << 32) // 1_000_000_000)) + NTP_OFF) & MASK
                        ttl &= 0xFF
                        stats.kernel_drops = drops
                        walk = False
                if walk:
                    # the generic walk: IPv6, or options we did not expect
                    sec, nsec, tos, drops, ttl = walk_cmsg(ctrl, co, clen_all)
                    if drops >= 0:
                        stats.kernel_drops = drops
                    if ttl < 0:
                        ttl = 255
                    if sec:
                        rx_ntp = (((sec << 32) + ((nsec << 32) // 1_000_000_000)) + NTP_OFF) & MASK
                    else:          # no kernel timestamp: the clock read after recv
                        rx_ntp = ((now_ns * 4294967296) // 1_000_000_000 + NTP_OFF) & MASK
                if n < base_b:
                    stats.malformed += 1
                    drop(R_MALFORMED, src)
                    continue
                buf = slot_bufs[i]
                dscp_rx = (tos >> 2) if tos >= 0 else 0
                if key is None:
                    seq, ts, ee, ssid = sender_unpack(buf, SEQ_AT)
                    skey = (addr, ssid)
                    sess = sessions.get(skey)
                    # the engine's request: Class of Service, then one Extra Padding TLV to the end
                    # (for n < PAD_VALUE_AT the unpack reads stale octets, and the length test fails)
                    c_type, c_len, c_first, p_type, p_len = cos_pad(buf, COS_PAD_AT)
                    if c_type == COS and c_len == 4 and p_type == PAD and PAD_VALUE_AT + p_len == n:
                        dscp1 = c_first >> 10
                        cos_pack(buf, COS_VALUE_AT,
                                 (dscp1 << 10) | (dscp_rx << 4) | ((tos & 3) << 2 if tos >= 0 else 0), 0)
                        # transmit timestamp (0 here) is written by flush() right before sending
                        refl_pack_mbz(buf, 0, sess.next_seq if sess is not None else 0, 0, EE, ssid, rx_ntp,
                                      seq, ts, ee, 0, ttl & 0xFF)
                    else:
                        try:
                            # transmit timestamp written by flush(), as above
                            dscp1 = reflect_into(buf, n, refl_seq=sess.next_seq if sess is not None else 0,
                                                 rx_ntp=rx_ntp, tx_ntp=0, dscp_received=dscp_rx,
                                                 ecn_received=(tos & 3) if tos >= 0 else 0, ttl=ttl,
                                                 src=addr, local_port=local_port)
                        except DecodeError:
                            stats.malformed += 1
                            drop(R_MALFORMED, src)
                            continue
                else:
                    (seq,) = auth_seq(buf, SEQ_AT)
                    ssid = auth_ts_ee_ssid(buf, AUTH_TS_AT)[2]
                    skey = (addr, ssid)
                    sess = sessions.get(skey)
                    try:
                        dscp1 = reflect_into(buf, n, refl_seq=sess.next_seq if sess is not None else 0,
                                             rx_ntp=rx_ntp, tx_ntp=stamp.ntp_from_ns(time_ns()), key=key,
                                             dscp_received=dscp_rx,
                                             ecn_received=(tos & 3) if tos >= 0 else 0, ttl=ttl,
                                             src=addr, local_port=local_port)
                    except AuthError:
                        stats.auth_failed += 1
                        drop(R_AUTH, src)
                        continue
                    except DecodeError:
                        stats.malformed += 1
                        drop(R_MALFORMED, src)
                        continue
                    if sess is not None:
                        # authenticated: each sender sequence number is answered once (the HMAC
                        # proved the number; a copy of the packet proves nothing new)
                        seen = replay_window(sess.max_seq, sess.seen, seq)
                        if seen < 0:
                            sess.replays += 1
                            stats.replays_refused += 1
                            drop(R_REPLAY, src)
                            continue
                        sess.seen = seen
                if sess is None:
                    sess = self._new_session(skey, addr, ssid, now_ns, seq)
                    if sess is None:
                        continue
                sess.next_seq += 1
                if sess.next_seq == PROVEN:
                    del probation[skey]          # established: no newcomer evicts it now
                sess.last_ns = now_ns
                if seq > sess.max_seq:
                    sess.max_seq = seq
                elif seq < sess.min_seq:
                    sess.min_seq = seq
                sess.dscp = dscp_rx if tos >= 0 else -1
                want_tos = (dscp1 << 2) if dscp1 is not None else 0
                if want_tos != tos_now:
                    if pending:
                        flush()           # replies already queued keep the marking they asked for
                        g_n = -1
                    try:
                        sockopts.set_tos(sock, want_tos)
                        tos_now = want_tos
                    except OSError:
                        pass
                pending.append(i)
                if n == g_n and len(g_views) < g_max and raw == g_raw:
                    g_views.append(slot_views[i][:n])
                else:
                    g_raw, g_n, g_views = raw, n, [slot_views[i][:n]]
                    g_max = min(mmsg.GSO_MAX_SEGMENTS, mmsg.GSO_MAX_PAYLOAD_B // n) if self._gso else 1
                    groups.append((addr, n, g_views))
            if pending:
                flush()
                g_n = -1
            if count < slots:
                break             # the queue is (almost surely) empty: back to poll, no EAGAIN call
        self._tos_now = tos_now

    # ------------------------------------------------------------ sessions
    def _new_session(self, skey: SessionKey, addr: tuple, ssid: int, now_ns: int,
                     seq: int) -> _Session | None:
        """A session for a newcomer, or None (refused, counted). See the module
        docstring for who makes room and who is refused."""
        src = addr[0]
        mine = self._src_sessions.get(src)
        if mine is not None and len(mine) >= self.max_sessions_per_source:
            # The source's oldest session makes room if it has gone quiet: a capacity
            # ramp opens thousands of sessions per step from one address, and the
            # previous step's sessions are done but not yet idle-expired. A source
            # whose sessions are all still live gets no more (the cap's purpose).
            oldest = next(iter(mine))
            old = self._sessions.get(oldest)
            if old is not None and old.last_ns > now_ns - int(self.source_reuse_idle_s * 1e9):
                self.stats.session_limited += 1
                self._drops.add(R_SOURCE_CAP, src)
                return None
            self._end(oldest, "ended for a newer session from the same source (per-source cap)")
        while len(self._sessions) >= self.max_sessions:
            if not self._probation:
                # every session in the table is established: they stay, the newcomer waits
                # for one to end (idle expiry)
                self.stats.table_full += 1
                self._drops.add(R_TABLE_FULL, src)
                return None
            self.stats.evicted += 1
            self._end(next(iter(self._probation)), "evicted for a new session (session table full)")
        sess = _Session(addr, ssid, now_ns, seq)
        self._sessions[skey] = sess
        self._probation[skey] = None
        self._src_sessions.setdefault(src, OrderedDict())[skey] = None
        self.stats.sessions_started += 1
        self.stats.sessions_active = len(self._sessions)
        return sess

    def _roll_rate_window(self) -> None:
        """Start a new 100 ms per-source rate window when the clock says so.
        The loop calls it at least every 64 datagrams, so a backlog drained
        after a stall is spread over the windows it arrived in instead of
        counted against one and dropped."""
        mono = time.monotonic()
        if mono >= self._window_end:
            self._per_source.clear()
            self._window_end = mono + 0.1

    def _expire(self, now: float) -> None:
        """End sessions idle longer than session_idle_s (a scan; runs a few times a second)."""
        limit_ns = time.time_ns() - int(self.session_idle_s * 1e9)
        for skey in [k for k, sess in self._sessions.items() if sess.last_ns <= limit_ns]:
            self._end(skey, f"idle {self.session_idle_s:g} s")

    def _end(self, skey: SessionKey, reason: str) -> None:
        sess = self._sessions.pop(skey, None)
        self.stats.sessions_active = len(self._sessions)
        if sess is None:
            return
        self._probation.pop(skey, None)
        src = sess.addr[0]
        mine = self._src_sessions.get(src)
        if mine is not None:
            mine.pop(skey, None)
            if not mine:
                del self._src_sessions[src]
        if self.on_session_end is None:
            return
        # established sessions and those on probation have a line budget each, so a
        # flood's sessions cannot use up the lines of the real ones
        established = sess.next_seq >= PROVEN_PACKETS
        if self._log_lines[established] < LOG_LINES_PER_WINDOW:
            self._log_lines[established] += 1
            self._log(session_summary(sess, reason))
        else:
            self._quiet_ends.add(reason, src)

    # ------------------------------------------------------------ the log
    def _log(self, line: str) -> None:
        if self.on_session_end is None:
            return
        try:
            self.on_session_end(line)
        except (OSError, ValueError):   # a broken log sink (closed stderr) must not stop the reflector
            pass

    def _flush_log(self, now: float) -> None:
        """The window's aggregated lines: packets dropped per reason, sessions
        that ended without a line of their own, the kernel's drops; then a new
        window with a fresh line budget."""
        secs = f"{now - self._log_t0:.0f}"
        if self.on_session_end is not None:
            for reason, count, srcs, more in self._drops.take():
                self._log(f"dropped {count:,} packets from {_sources(srcs, more)} in the last {secs} s: "
                          f"{reason}; most from {_top(srcs)}")
            for reason, count, srcs, more in self._quiet_ends.take():
                self._log(f"{count:,} more sessions from {_sources(srcs, more)} ended in the last {secs} s "
                          f"(a line each only for the first {LOG_LINES_PER_WINDOW} established and "
                          f"{LOG_LINES_PER_WINDOW} other sessions per {LOG_WINDOW_S:g} s): {reason}")
            k = self.stats.kernel_drops
            if k > self._kernel_drops_logged:
                self._log(f"the kernel dropped {k - self._kernel_drops_logged:,} datagrams in the last "
                          f"{secs} s (receive buffer full: the reflector could not keep up)")
                self._kernel_drops_logged = k
        self._log_t0 = now
        self._log_lines = [0, 0]

    def sessions(self) -> list[dict]:
        """Snapshot of active sessions (for tests and status)."""
        return [{"peer": _fmt_addr(s.addr), "ssid": s.ssid, "packets": s.next_seq,
                 "dscp": s.dscp, "established": s.next_seq >= PROVEN_PACKETS}
                for s in list(self._sessions.values())]
