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
- With a key, only packets carrying a valid HMAC are answered.
- Protection: a per-source packet rate cap, a per-source session cap (at
  the cap a new session ends the source's oldest one if that has been quiet
  for source_reuse_idle_s, else it is refused), and a bounded session table
  (when full, the oldest session ends first; idle sessions expire).
  Malformed packets are counted and dropped.
- Tight synchronous loop that drains the socket after each wake-up. On Linux
  the batched path (probes/mmsg.py: recvmmsg, replies to one peer as one UDP
  GSO send) answers about 130k packets/s on one core (7.2 us per reply); the
  per-packet path (recvmsg_into + sendto, 12.5 us) is the fallback.
"""

from __future__ import annotations

import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable

from probes import mmsg, sockopts, stamp
from probes.addr import HostPort, parse_hostport

SessionKey = tuple  # (address tuple, ssid)
_U64_BE = struct.Struct(">Q")   # a reply's transmit timestamp, written right before the send
_REFL_UNAUTH_MBZ = struct.Struct(stamp.REFL_UNAUTH.format + "3x")   # octets 0..43, MBZ zeroed


@dataclass
class ReflectorStats:
    received: int = 0
    reflected: int = 0
    malformed: int = 0
    auth_failed: int = 0
    rate_limited: int = 0
    session_limited: int = 0
    sessions_started: int = 0
    sessions_active: int = 0
    kernel_drops: int = 0


class _Session:
    __slots__ = ("next_seq", "first_s", "last_ns", "min_seq", "max_seq", "dscp", "addr", "ssid")

    def __init__(self, addr: tuple, ssid: int, now: float, seq: int) -> None:
        self.addr, self.ssid = addr, ssid
        self.next_seq = 0
        self.first_s = now
        self.last_ns = time.time_ns()      # wall clock: cheaper than a second clock read per packet
        self.min_seq = self.max_seq = seq
        self.dscp = -1


def _fmt_addr(addr: tuple) -> str:
    host = addr[0]
    if host.startswith("::ffff:"):
        host = host[7:]
    return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"


def session_summary(s: _Session, reason: str) -> str:
    span = max(0.0, s.last_ns / 1e9 - s.first_s)
    expected = s.max_seq - s.min_seq + 1
    missing = max(0, expected - s.next_seq)
    dscp = f", DSCP {s.dscp}" if s.dscp >= 0 else ""
    return (f"session {_fmt_addr(s.addr)} ssid {s.ssid}: {s.next_seq} packets in {span:.1f} s, "
            f"sender seq {s.min_seq}-{s.max_seq} ({missing} missing upstream){dscp}; {reason}")


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
        self.on_session_end = on_session_end
        self.stats = ReflectorStats()
        self._sessions: dict[SessionKey, _Session] = {}   # insertion order = age
        self._per_source: dict[str, int] = {}        # packets in the current 100 ms window
        # active sessions per source address, oldest first (dicts keep insertion order)
        self._src_sessions: dict[str, dict[SessionKey, None]] = {}
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._tos_now = -1
        self._buf = bytearray(65536)
        self.rx_features: dict[str, bool] = {}
        self.batch = batch                          # use recvmmsg/sendmmsg when the OS has them
        self._mm: mmsg.MmsgSocket | None = None
        self._addr_cache: dict[bytes, tuple] = {}   # raw sockaddr -> Python address tuple
        self._gso = False                           # send equal replies to one peer as one UDP GSO
        self._gso_failures = 0
        self._window_end = 0.0                      # end of the current 100 ms rate window
        self.gso_sends = 0                          # sendmsg calls that carried several replies

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
            family, host = info[0], info[4][0]
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
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # ------------------------------------------------------------ serving
    def serve(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set; closes the socket on return."""
        if self._sock is None:
            self.bind()
        sock = self._sock
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        drain = self._drain
        if self.batch and mmsg.available():
            try:
                self._mm = mmsg.MmsgSocket(sock)
                self._gso = self.batch and mmsg.gso_supported(sock)
                drain = self._drain_batch
            except OSError:
                self._mm = None
        next_housekeeping = time.monotonic() + 0.1
        next_expiry = time.monotonic() + min(1.0, self.session_idle_s / 3)
        try:
            while not stop.is_set():
                poller.poll(100)
                drain(sock)
                now = time.monotonic()
                if now >= next_housekeeping:
                    next_housekeeping = now + 0.1
                    if now >= next_expiry:
                        self._expire(now)
                        next_expiry = now + min(1.0, self.session_idle_s / 3)
        finally:
            self._close()

    def _drain(self, sock: socket.socket) -> None:
        """Answer everything queued, until EAGAIN, bounded per wake-up.

        The hot path: one recvmsg_into into a preallocated buffer, the reply
        built in place in that buffer, one sendto of a memoryview of it.
        Unauthenticated packets whose TLVs are the common Class of Service +
        Extra Padding pair are rewritten inline (what stamp.reflect_into would
        do, without the call); everything else goes through stamp.reflect_into.
        """
        recvmsg_into = sock.recvmsg_into
        sendto = sock.sendto
        key = self.key
        stats = self.stats
        sessions = self._sessions
        per_source = self._per_source
        window_cap = max(1, self.max_pps_per_source // 10)
        anc_b = sockopts.ANC_BUF_B
        reflect_into = stamp.reflect_into
        local_port = sock.getsockname()[1]      # for the Location TLV (RFC 8972 §4.2)
        DecodeError = stamp.StampDecodeError
        AuthError = stamp.StampAuthError
        sender_unpack = stamp.SENDER_HDR.unpack_from
        refl_pack = stamp.REFL_UNAUTH.pack_into
        cos_pack = stamp.COS_VALUE.pack_into
        timespec = sockopts._TIMESPEC.unpack_from
        EE = stamp.ERROR_ESTIMATE_DEFAULT
        NTP_OFF = stamp._NTP_OFFSET_FIXED
        MASK = 0xFFFF_FFFF_FFFF_FFFF
        time_ns = time.time_ns
        buf = self._buf
        bufs = [buf]
        view = memoryview(buf)
        SOL_SOCKET, IPPROTO_IP, IPPROTO_IPV6 = socket.SOL_SOCKET, socket.IPPROTO_IP, socket.IPPROTO_IPV6
        TS, OVFL, IP_TOS, IP_TTL = sockopts.SO_TIMESTAMPNS, sockopts.SO_RXQ_OVFL, socket.IP_TOS, socket.IP_TTL
        TCLASS, HOPLIMIT = sockopts.IPV6_TCLASS, sockopts.IPV6_HOPLIMIT
        tos_now = self._tos_now
        roll_window = self._roll_rate_window
        for i in range(20000):        # bounded: housekeeping runs at least every 20k packets
            if not i & 63:
                roll_window()
            try:
                n, anc, _flags, addr = recvmsg_into(bufs, anc_b)
            except BlockingIOError:
                break
            except OSError:
                # e.g. an ICMP error queued for a previous reply; nothing to answer
                continue
            stats.received += 1
            src = addr[0]
            n_src = per_source.get(src, 0) + 1
            per_source[src] = n_src
            if n_src > window_cap:
                stats.rate_limited += 1
                continue
            rx_ns, tos, ttl = 0, -1, 255
            for level, typ, data in anc:
                if level == SOL_SOCKET:
                    if typ == TS:
                        sec, nsec = timespec(data)
                        rx_ns = sec * 1_000_000_000 + nsec
                    elif typ == OVFL:
                        stats.kernel_drops = int.from_bytes(data[0:4], "little")
                elif level == IPPROTO_IP:
                    if typ == IP_TOS:
                        tos = data[0]
                    elif typ == IP_TTL:
                        ttl = data[0]
                elif level == IPPROTO_IPV6:
                    if typ == TCLASS:
                        tos = data[0]
                    elif typ == HOPLIMIT:
                        ttl = data[0]
            if n < 28:
                stats.malformed += 1
                continue
            now_ns = time_ns()
            dscp_rx = (tos >> 2) if tos >= 0 else 0
            if key is None and n >= 44:
                seq, ts, ee, ssid = sender_unpack(buf, 0)
                skey = (addr, ssid)
                sess = sessions.get(skey)
                # Class of Service TLV first, then one Extra Padding TLV filling the rest
                if n >= 56 and buf[45] == 4 and buf[46] == 0 and buf[47] == 4 and buf[53] == 1 \
                        and 56 + ((buf[54] << 8) | buf[55]) == n:
                    dscp1 = buf[48] >> 2
                    cos_pack(buf, 48, (dscp1 << 10) | (dscp_rx << 4) | ((tos & 3) << 2 if tos >= 0 else 0), 0)
                    refl_pack(buf, 0, sess.next_seq if sess is not None else 0,
                              ((now_ns * 4294967296) // 1_000_000_000 + NTP_OFF) & MASK, EE, ssid,
                              (((rx_ns or now_ns) * 4294967296) // 1_000_000_000 + NTP_OFF) & MASK,
                              seq, ts, ee, 0, ttl & 0xFF)
                    buf[41] = buf[42] = buf[43] = 0
                else:
                    dscp1 = reflect_into(buf, n, refl_seq=sess.next_seq if sess is not None else 0,
                                         rx_ntp=stamp.ntp_from_ns(rx_ns or now_ns),
                                         tx_ntp=stamp.ntp_from_ns(now_ns), dscp_received=dscp_rx,
                                         ecn_received=(tos & 3) if tos >= 0 else 0, ttl=ttl,
                                         src=addr, local_port=local_port)
                sender_seq = seq
            else:
                ssid = ((buf[26] << 8) | buf[27]) if key is not None else ((buf[14] << 8) | buf[15])
                skey = (addr, ssid)
                sess = sessions.get(skey)
                sender_seq = (buf[0] << 24) | (buf[1] << 16) | (buf[2] << 8) | buf[3]
                try:
                    dscp1 = reflect_into(buf, n, refl_seq=sess.next_seq if sess is not None else 0,
                                         rx_ntp=stamp.ntp_from_ns(rx_ns or now_ns),
                                         tx_ntp=stamp.ntp_from_ns(now_ns), key=key, dscp_received=dscp_rx,
                                         ecn_received=(tos & 3) if tos >= 0 else 0, ttl=ttl,
                                         src=addr, local_port=local_port)
                except AuthError:
                    stats.auth_failed += 1
                    continue
                except DecodeError:
                    stats.malformed += 1
                    continue
            if sess is None:
                sess = self._new_session(skey, addr, ssid, now_ns / 1e9, sender_seq)
                if sess is None:
                    continue
            sess.next_seq += 1
            sess.last_ns = now_ns
            if sender_seq > sess.max_seq:
                sess.max_seq = sender_seq
            elif sender_seq < sess.min_seq:
                sess.min_seq = sender_seq
            sess.dscp = dscp_rx if tos >= 0 else -1
            want_tos = (dscp1 << 2) if dscp1 is not None else 0
            if want_tos != tos_now:
                try:
                    sockopts.set_tos(sock, want_tos)
                    tos_now = want_tos
                except OSError:
                    pass
            stats.reflected += 1          # counted before sending, so readers never lag the reply
            try:
                sendto(view[:n], addr)
            except OSError:
                stats.reflected -= 1
        self._tos_now = tos_now

    def _drain_batch(self, sock: socket.socket) -> None:
        """What :meth:`_drain` does, for up to 64 datagrams per recvmmsg.

        Per datagram the same decisions in the same order (rate cap, ancillary
        data, malformed, inline rewrite or stamp.reflect_into, session, DSCP),
        read from the batch's preallocated slots instead of recvmsg_into's
        tuples. Replies are queued, grouped by destination and size, and each
        group leaves as one UDP GSO sendmsg (see probes/mmsg.py for why). The
        queue is flushed before the socket's TOS changes, so each reply keeps
        the marking its sender asked for. Unauthenticated replies get their
        transmit timestamp written right before the send (it is not covered
        by an HMAC), so batching does not hide the time a reply waited; keyed
        replies keep the time they were built (the HMAC covers it). The
        batch's receive-side clock (session times, and the receive time when
        the kernel gave none) is read once per recvmmsg.
        """
        mm = self._mm
        recv, lengths = mm.recv, mm.lengths
        names, ctrl, slot_bufs, slot_views = mm.names, mm.ctrl, mm.bufs, mm.views
        NAME_B, ctrl_b, slots = mmsg.NAME_B, mm.ctrl_b, mm.slots
        name_b = 16 if sock.family == socket.AF_INET else 28      # sockaddr_in / sockaddr_in6
        walk_cmsg = mmsg.walk_cmsg
        usual = mmsg.CMSG_V4_USUAL.unpack_from if mmsg.CMSG_V4_USUAL is not None else None
        USUAL_B = mmsg.CMSG_V4_USUAL_B if usual is not None else -1
        usual_ovfl = mmsg.CMSG_V4_USUAL_OVFL.unpack_from if usual is not None else None
        USUAL_OVFL_B = mmsg.CMSG_V4_USUAL_OVFL_B if usual is not None else -1
        addr_cache = self._addr_cache
        sockaddr_tuple = mmsg.sockaddr_tuple
        key = self.key
        stats = self.stats
        sessions = self._sessions
        per_source = self._per_source
        window_cap = max(1, self.max_pps_per_source // 10)
        reflect_into = stamp.reflect_into
        local_port = sock.getsockname()[1]      # for the Location TLV (RFC 8972 §4.2)
        DecodeError = stamp.StampDecodeError
        AuthError = stamp.StampAuthError
        sender_unpack = stamp.SENDER_HDR.unpack_from
        refl_pack_mbz = _REFL_UNAUTH_MBZ.pack_into    # header and its 3 MBZ octets in one call
        cos_pack = stamp.COS_VALUE.pack_into
        tx_pack = _U64_BE.pack_into
        EE = stamp.ERROR_ESTIMATE_DEFAULT
        NTP_OFF = stamp._NTP_OFFSET_FIXED
        MASK = 0xFFFF_FFFF_FFFF_FFFF
        time_ns = time.time_ns
        SOL_SOCKET, IPPROTO_IP = socket.SOL_SOCKET, socket.IPPROTO_IP
        TS, OVFL, IP_TOS, IP_TTL = sockopts.SO_TIMESTAMPNS, sockopts.SO_RXQ_OVFL, socket.IP_TOS, socket.IP_TTL
        LT_OVFL = mmsg.level_type(SOL_SOCKET, OVFL)
        LT_TS, LT_TTL, LT_TOS = (mmsg.level_type(SOL_SOCKET, TS), mmsg.level_type(IPPROTO_IP, IP_TTL),
                                 mmsg.level_type(IPPROTO_IP, IP_TOS))
        tos_now = self._tos_now
        roll_window = self._roll_rate_window
        sendto, sendmsg = sock.sendto, sock.sendmsg
        gso_anc = mmsg.gso_ancillary
        pending: list[int] = []          # slots whose replies are queued
        no_name = bytes(name_b + 1)      # longer than any name: matches none
        raw, addr = no_name, None
        # replies grouped by (destination, size): one UDP GSO sendmsg per group
        groups: list[tuple[tuple, int, list]] = []
        g_raw, g_n, g_views, g_max = b"", -1, [], 1

        def flush() -> None:
            if key is None:
                tx = ((time_ns() * 4294967296) // 1_000_000_000 + NTP_OFF) & MASK
                for j in pending:
                    tx_pack(slot_bufs[j], 4, tx)
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

        for _ in range(max(1, 20000 // mm.slots)):   # bounded: housekeeping at least every 20k packets
            try:
                count = recv()
            except OSError:
                # e.g. an ICMP error queued for a previous reply; nothing to answer
                continue
            if not count:
                break
            now_ns = time_ns()
            now_ntp = ((now_ns * 4294967296) // 1_000_000_000 + NTP_OFF) & MASK
            roll_window()
            lens, clens = lengths()
            stats.received += count
            for i in range(count):
                n = lens[i]
                nbase = i * NAME_B
                # same source as the datagram before (the usual case): compared in place, no copy
                if not names.startswith(raw, nbase, nbase + name_b):
                    raw = bytes(names[nbase:nbase + name_b])
                    addr = addr_cache.get(raw)
                    if addr is None:
                        if len(addr_cache) >= 65536:
                            addr_cache.clear()
                        try:
                            addr = addr_cache[raw] = sockaddr_tuple(raw)
                        except ValueError:
                            raw = no_name
                            continue
                src = addr[0]
                n_src = per_source.get(src, 0) + 1
                per_source[src] = n_src
                if n_src > window_cap:
                    stats.rate_limited += 1
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
                    rx_ns = sec * 1_000_000_000 + nsec if sec else 0
                    if drops >= 0:
                        stats.kernel_drops = drops
                    if ttl < 0:
                        ttl = 255
                    rx_ntp = ((rx_ns * 4294967296) // 1_000_000_000 + NTP_OFF) & MASK if rx_ns else now_ntp
                if n < 28:
                    stats.malformed += 1
                    continue
                buf = slot_bufs[i]
                dscp_rx = (tos >> 2) if tos >= 0 else 0
                if key is None and n >= 44:
                    seq, ts, ee, ssid = sender_unpack(buf, 0)
                    skey = (addr, ssid)
                    sess = sessions.get(skey)
                    # Class of Service TLV first, then one Extra Padding TLV filling the rest
                    if n >= 56 and buf[45] == 4 and buf[46] == 0 and buf[47] == 4 and buf[53] == 1 \
                            and 56 + ((buf[54] << 8) | buf[55]) == n:
                        dscp1 = buf[48] >> 2
                        cos_pack(buf, 48, (dscp1 << 10) | (dscp_rx << 4) | ((tos & 3) << 2 if tos >= 0 else 0), 0)
                        # transmit timestamp (0 here) is written by flush() right before sending
                        refl_pack_mbz(buf, 0, sess.next_seq if sess is not None else 0, 0, EE, ssid, rx_ntp,
                                      seq, ts, ee, 0, ttl & 0xFF)
                    else:
                        try:
                            dscp1 = reflect_into(buf, n, refl_seq=sess.next_seq if sess is not None else 0,
                                                 rx_ntp=rx_ntp, tx_ntp=now_ntp, dscp_received=dscp_rx,
                                                 ecn_received=(tos & 3) if tos >= 0 else 0, ttl=ttl,
                                                 src=addr, local_port=local_port)
                        except DecodeError:
                            stats.malformed += 1
                            continue
                    sender_seq = seq
                else:
                    ssid = ((buf[26] << 8) | buf[27]) if key is not None else ((buf[14] << 8) | buf[15])
                    skey = (addr, ssid)
                    sess = sessions.get(skey)
                    sender_seq = (buf[0] << 24) | (buf[1] << 16) | (buf[2] << 8) | buf[3]
                    try:
                        dscp1 = reflect_into(buf, n, refl_seq=sess.next_seq if sess is not None else 0,
                                             rx_ntp=rx_ntp, tx_ntp=stamp.ntp_from_ns(time_ns()), key=key,
                                             dscp_received=dscp_rx,
                                             ecn_received=(tos & 3) if tos >= 0 else 0, ttl=ttl,
                                             src=addr, local_port=local_port)
                    except AuthError:
                        stats.auth_failed += 1
                        continue
                    except DecodeError:
                        stats.malformed += 1
                        continue
                if sess is None:
                    sess = self._new_session(skey, addr, ssid, now_ns / 1e9, sender_seq)
                    if sess is None:
                        continue
                sess.next_seq += 1
                sess.last_ns = now_ns
                if sender_seq > sess.max_seq:
                    sess.max_seq = sender_seq
                elif sender_seq < sess.min_seq:
                    sess.min_seq = sender_seq
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

    def _new_session(self, skey: SessionKey, addr: tuple, ssid: int, now: float,
                     seq: int) -> _Session | None:
        src = addr[0]
        mine = self._src_sessions.get(src)
        if mine is not None and len(mine) >= self.max_sessions_per_source:
            # The source's oldest session makes room if it has gone quiet: a capacity
            # ramp opens thousands of sessions per step from one address, and the
            # previous step's sessions are done but not yet idle-expired. A source
            # whose sessions are all still live gets no more (the cap's purpose).
            oldest = next(iter(mine))
            old = self._sessions.get(oldest)
            if old is not None and old.last_ns > time.time_ns() - int(self.source_reuse_idle_s * 1e9):
                self.stats.session_limited += 1
                return None
            self._end(oldest, "ended for a newer session from the same source (per-source cap)")
        while len(self._sessions) >= self.max_sessions:
            self._end(next(iter(self._sessions)), "evicted (session table full)")
        sess = _Session(addr, ssid, now, seq)
        self._sessions[skey] = sess
        self._src_sessions.setdefault(src, {})[skey] = None
        self.stats.sessions_started += 1
        self.stats.sessions_active = len(self._sessions)
        return sess

    def _roll_rate_window(self) -> None:
        """Start a new 100 ms per-source rate window when the clock says so.
        Both drain paths call it while they read (the per-packet one every 64
        datagrams), so a backlog drained after a stall is spread over the
        windows it arrived in instead of counted against one and dropped."""
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
        if sess is not None:
            src = sess.addr[0]
            mine = self._src_sessions.get(src)
            if mine is not None:
                mine.pop(skey, None)
                if not mine:
                    del self._src_sessions[src]
        if sess is not None and self.on_session_end is not None:
            try:
                self.on_session_end(session_summary(sess, reason))
            except Exception:   # a broken log sink must not stop the reflector
                pass

    def sessions(self) -> list[dict]:
        """Snapshot of active sessions (for tests and status)."""
        return [{"peer": _fmt_addr(s.addr), "ssid": s.ssid, "packets": s.next_seq,
                 "dscp": s.dscp} for s in list(self._sessions.values())]
