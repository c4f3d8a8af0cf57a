"""The stream engine: N emulated calls as N STAMP sessions, from one process.

Shared by ``probe stream``, ``probe capacity`` (one call to :meth:`Engine.run`
per ramp step) and the loaded-latency part of ``probe bandwidth``.

API::

    from probes.engine.core import Engine, EngineConfig
    eng = Engine(EngineConfig(target="192.0.2.10:862", codec="g711", ptime_ms=20,
                              dscp=46, key=None, source=None, interface=None,
                              jitter_buffer_ms=60.0, timeout_s=3.0))
    res = eng.run(calls=60, duration_s=10.0, progress=cb, stop=event)   # -> EngineResult
    res.measured, res.partial, res.errors          # like every probe result
    res.packets == {"sent", "reflected", "received"}
    res.loss_pct == {"up", "down", "total"}        # percent
    res.rtt_ms, res.jitter_ms, res.ipdv_ms, res.mos, res.mos_up, res.mos_down, res.r_factor
    res.sender == {"lateness_ms": {"p50","p99","max"}, "rx_dropped": int,
                   "limited": bool, "reason": str | None}
    res.offered_kbps                               # per direction, UDP payload + IP/UDP headers
    res.to_dict()                                  # the stream JSON keys of docs/contract.md §5

``progress`` gets ``probes.events.ProbeEvent`` (via Emitter "engine"):
``progress`` events about every 0.5 s with ``fraction`` and live ``sent``,
``received`` and ``rtt_ms`` in ``data``. ``stop`` ends the run early
(result ``partial``). ``run`` raises ValueError only for bad arguments;
network trouble becomes ``measured=False`` / ``partial=True`` with ``errors``.

How it works (docs/measurement.md, "Performance", numbers in mind):

- One connected UDP socket; call ``c`` is STAMP session SSID ``base + c``.
  Calls are spread evenly over the ptime, so the whole run is a single
  uniform schedule: packet ``j`` (call ``j % N``, number ``j // N``) is due
  at ``t0 + j * ptime / N``. Lateness = actual minus planned send time,
  recorded per packet.
- Sends come first. Each round sends everything that is due; packets that
  fell due together leave as one UDP GSO sendmsg (up to 64 equal datagrams
  per syscall: ~1 µs each instead of ~4, see probes/engine/mmsg.py), all carrying
  the batch's send time. Above 5000 packets/s a round starts at most every
  BATCH_NS (0.2 ms), so batches are ~20 packets at 2000 calls and p50
  lateness is about half of that. On the wire that is a burst of ~3 KB
  every 0.2 ms; at low rates every packet still leaves on its own schedule.
- Then replies are drained with recvmmsg (64 per syscall) until the queue
  is empty or the next send is due, and the loop sleeps in select() until
  then (timer slack lowered to 1 µs for the run). Nothing spins: the
  engine's CPU is what its work costs, which leaves the reflector and the
  kernel's softirq work room on a small machine.
- Receive times are kernel timestamps (SO_TIMESTAMPNS, per datagram), so a
  reply that waited in the socket buffer while we sent still has its true
  arrival time; kernel drops on our socket come from SO_RXQ_OVFL and the
  UDP drop counter. Bad lateness or drops set ``sender.limited``: the
  figures are then the measuring machine's, not the network's.
- Where recvmmsg or UDP GSO is missing (or ``batch=False``) the same loop
  runs one datagram per syscall.
- Per-run state (per-packet arrays indexed by ``j``, the clock mapping, the
  schedule) lives on a :class:`probes.engine.run.Run`, never on the Engine, so
  one Engine can run twice at once; metrics are computed after the run by
  :func:`probes.engine.analysis.analyse`, which reads the run only.
- Sender sequence numbers start at 1 (RFC 8762 says 0): a stateless
  reflector copies them, a stateful one counts from 0, so the first reply
  tells them apart and per-direction loss is only split when it is real.
"""

from __future__ import annotations

import hmac
import random
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass

from probes.engine import mmsg, sockopts
from probes.wire import stamp
from probes.engine.run import EngineResult, Run
from probes.engine.analysis import analyse, unusable_replies
from probes.addr import bind_to_circuit, parse_hostport, resolve
from probes.voice.codecs import IPV4_HEADER_B, IPV6_HEADER_B, UDP_HEADER_B, Codec, get_codec
from probes.events import Emitter, ProgressCallback
from probes.result import AddressError, BadInput, add_error, is_local, local_error

MAX_PACKETS_PER_RUN = 3_000_000          # ~54 bytes of state per packet: at most ~165 MB
BATCH_NS = 200_000                       # high rates: one send batch per 0.2 ms (see module doc)
TIMER_SLACK_NS = 1_000                   # the kernel's default 50 µs slack would add to lateness
MAX_DRAIN_BATCHES = 2_000                # one drain reads at most 128k replies (bounded loop)



def check_call_basics(target: str, codec_name: str, ptime_ms: int) -> Codec:
    """The checks every engine-driven probe makes first (stream, the failover
    drill): a usable HOST:PORT and a codec used at that ptime. Raises the typed
    errors of probes.result naming the config field; returns the codec."""
    try:
        parse_hostport(target)
    except AddressError as exc:
        raise AddressError(f"target: {exc}", field="target") from None
    try:
        codec = get_codec(codec_name)
    except KeyError as exc:
        raise BadInput(f"codec: {exc.args[0]}", field="codec") from None
    if ptime_ms not in codec.ptimes_ms:
        raise BadInput(f"ptime_ms {ptime_ms}: {codec.name} is used with "
                       f"{', '.join(map(str, codec.ptimes_ms))} ms", field="ptime_ms")
    return codec

@dataclass
class EngineConfig:
    target: str                          # HOST:PORT of a STAMP reflector
    codec: str = "g711"
    ptime_ms: int = 20
    dscp: int | None = 46                # None: no marking and no Class of Service TLV
    key: bytes | None = None             # HMAC key: authenticated mode
    source: str | None = None
    interface: str | None = None
    jitter_buffer_ms: float = 60.0
    timeout_s: float = 3.0               # no reply for this long: reflector down/unreachable
    payload_b: int | None = None         # UDP payload per packet; default: the codec's RTP size
    kernel_timestamps: bool = True
    batch: bool = True                   # recvmmsg + UDP GSO; False: one datagram per syscall
    max_silence_s: float | None = None   # replies may stop this long mid-run (failover drills); None: timeout_s
    ttl: bool = False                    # record each reply's TTL / hop limit (run.ttl; failover drills)
    location: bool = False               # ask for our source address as the far end sees it (RFC 8972
                                         # Location TLV; run.locations records each change; drills)


# The reflector's unauthenticated header, only the fields the loop needs:
# seq, T3, SSID, T2, sender seq; and the same plus the Class of Service value
# (the first TLV's first two value octets, at 48).
_REFL_HEAD = struct.Struct(">IQ2xHQI")
_REFL_HEAD_COS = struct.Struct(">IQ2xHQI20xH")


def _tally(run: Run, calls: int) -> None:
    """Counts the loop leaves for after the run: per reply, whether the
    reflector numbered it itself (stateful) or copied our number (stateless),
    the DSCP it saw (CoS TLV) and the TOS the reply arrived with."""
    rseq, cos, tos = run.rseq, run.cos, run.tos
    dscp2, tos_down = run.dscp2, run.tos_down
    stateless = 0
    for jj in run.order:
        if rseq[jj] == jj // calls + 1:
            stateless += 1
        v = cos[jj]
        if v >= 0:
            dscp2[(v >> 4) & 0x3F] += 1
        t = tos[jj]
        if t >= 0:
            tos_down[t] += 1
    run.stateless_votes = stateless
    run.stateful_votes = len(run.order) - stateless


class _OneByOne:
    """:class:`probes.engine.mmsg.MmsgSocket`'s receive interface on recvmsg_into, one
    datagram per call: where recvmmsg is missing (or ``batch=False``) the
    engine's one reply loop still applies. The ancillary data is written back
    in the kernel's cmsg layout, so the same parser reads it."""

    slots = 1

    def __init__(self, sock: socket.socket, buf_b: int, ctrl_b: int = 256) -> None:
        self._recvmsg_into = sock.recvmsg_into
        self.bufs = [bytearray(buf_b)]
        self.ctrl = bytearray(ctrl_b)
        self.ctrl_b = ctrl_b
        self._lens: tuple = ((), ())

    def recv(self) -> int:
        try:
            n, anc, _flags, _addr = self._recvmsg_into(self.bufs, self.ctrl_b)
        except BlockingIOError:
            self._lens = ((), ())
            return 0
        self._lens = ((n,), (mmsg.encode_cmsg(self.ctrl, anc),))
        return 1

    def lengths(self) -> tuple[tuple, tuple]:
        return self._lens


class Engine:
    """Runs N concurrent emulated calls against one reflector. See module doc."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.codec = get_codec(config.codec)          # KeyError -> caller turns into bad input
        if config.ptime_ms <= 0 or config.ptime_ms > 1000:
            raise ValueError(f"ptime {config.ptime_ms} ms: expected 1-1000")
        self.hostport = parse_hostport(config.target)
        self.auth = config.key is not None
        self.base_b = stamp.base_size(self.auth)
        want = config.payload_b or self.codec.rtp_bytes(config.ptime_ms)
        loc = stamp.location_tlv(":" in self.hostport.host) if config.location else None
        self.tlvs = stamp.sender_tlvs(want, authenticated=self.auth, dscp=config.dscp, location=loc)
        # where the reflected Location TLV's value sits (after the CoS TLV, if any)
        self.loc_span = None
        if loc is not None:
            at = self.base_b + (stamp.TLV_HEADER_B + 4 if config.dscp is not None else 0) + stamp.TLV_HEADER_B
            self.loc_span = (at, at + len(loc.value))
        template = stamp.encode_sender(stamp.SenderPacket(0, 0, ssid=0, tlvs=self.tlvs), config.key)
        self.template = template
        self.payload_b = len(template)

    # ------------------------------------------------------------------ public
    def run(self, calls: int, duration_s: float, progress: ProgressCallback | None = None,
            stop: threading.Event | None = None) -> EngineResult:
        return self.run_detailed(calls, duration_s, progress, stop)[0]

    def run_detailed(self, calls: int, duration_s: float, progress: ProgressCallback | None = None,
                     stop: threading.Event | None = None) -> tuple[EngineResult, Run | None]:
        """Like :meth:`run`, also returning the run's record (None when nothing was
        sent) for analyses over parts of the run (the failover drill)."""
        cfg = self.config
        if calls < 1 or calls > 60000:
            raise ValueError(f"calls {calls}: expected 1-60000")
        if not (0 < duration_s <= 24 * 3600):
            raise ValueError(f"duration {duration_s} s: expected > 0")
        per_call = max(1, int(round(duration_s * 1000 / cfg.ptime_ms)))
        total = per_call * calls
        if total > MAX_PACKETS_PER_RUN:
            raise ValueError(f"{calls} calls x {duration_s:g} s is {total} packets; at most "
                             f"{MAX_PACKETS_PER_RUN} per run (shorten the duration)")
        emit = Emitter("engine", progress)
        stop = stop or threading.Event()
        res = self._empty_result(calls, duration_s)
        try:
            family, sockaddr = resolve(self.hostport.host, self.hostport.port, source=cfg.source)
        except OSError as exc:
            add_error(res, exc)
            return res, None
        try:
            sock = self._open_socket(family, sockaddr)
        except OSError as exc:          # e.g. a source address not on this machine: a gap
            add_error(res, exc, exc.strerror or str(exc))
            return res, None
        run = Run(calls, per_call, codec=self.codec, ptime_ms=cfg.ptime_ms,
                  jitter_buffer_ms=cfg.jitter_buffer_ms, dscp=cfg.dscp, ttl=cfg.ttl)
        try:
            errors, gaps, aborted = self._loop(sock, run, emit, stop)
        finally:
            sock.close()
        res.errors.extend(errors)
        res.gaps.extend(gaps)
        analyse(res, run)
        if aborted and res.measured:
            res.partial = True
        if stop.is_set() and res.measured:
            res.partial = True
            local_error(res, "stopped early")
        return res, run

    # ------------------------------------------------------------------ setup
    def _empty_result(self, calls: int, duration_s: float) -> EngineResult:
        cfg = self.config
        ip_b = IPV6_HEADER_B if ":" in self.hostport.host else IPV4_HEADER_B
        kbps = calls * (self.payload_b + UDP_HEADER_B + ip_b) * 8 * (1000 / cfg.ptime_ms) / 1000
        return EngineResult(target=str(self.hostport), codec=self.codec.name, ptime_ms=cfg.ptime_ms,
                            calls=calls, duration_s=duration_s, payload_b=self.payload_b,
                            offered_kbps=kbps)

    def _open_socket(self, family: int, sockaddr: tuple) -> socket.socket:
        cfg = self.config
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            bind_to_circuit(sock, cfg.source, cfg.interface)
            sockopts.grow_buffers(sock, 32 << 20)     # replies queue here while we send
            sockopts.enable_rx_meta(sock, timestamps=cfg.kernel_timestamps, ttl=cfg.ttl)
            if cfg.dscp is not None:
                sockopts.set_tos(sock, cfg.dscp << 2)
            sock.connect(sockaddr)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    # ------------------------------------------------------------------ the loop
    def _loop(self, sock: socket.socket, run: Run, emit: Emitter,
              stop: threading.Event) -> tuple[list[str], list[str], bool]:
        """Send and receive; fills ``run``. Returns (errors, gaps: the errors
        that are ours, aborted)."""
        cfg = self.config
        key = cfg.key or b""             # used only when auth (a key was given)
        auth = self.auth
        calls, per_call, total = run.calls, run.per_call, run.total
        interval_ns = run.interval_ns
        ssid_base = random.randint(1, max(1, 65535 - calls))
        ssid_end = ssid_base + calls
        size_b = len(self.template)
        # ---- send side: packets that fall due together leave as one UDP GSO sendmsg
        gso = cfg.batch and mmsg.gso_supported(sock)
        g_max = min(mmsg.GSO_MAX_SEGMENTS, mmsg.GSO_MAX_PAYLOAD_B // size_b) if gso else 1
        sbuf = bytearray(self.template * max(1, g_max))
        sview = memoryview(sbuf)
        gso_anc = mmsg.gso_ancillary(size_b)
        send, sendmsg = sock.send, sock.sendmsg
        # at high rates wake at most every BATCH_NS: what fell due meanwhile is one batch
        batch_ns = BATCH_NS if gso else 0
        # ---- receive side: recvmmsg with each reply's kernel timestamp and TOS
        rx_b = max(2048, size_b + 256)
        try:
            mm = mmsg.MmsgSocket(sock, slots=64, buf_b=rx_b) if cfg.batch else _OneByOne(sock, rx_b)
        except OSError:
            mm = _OneByOne(sock, rx_b)
        run.rx_timestamps = "kernel" if cfg.kernel_timestamps else "user"
        run.send_mode = "gso" if gso else "per-packet"
        recv, lengths = mm.recv, mm.lengths
        rbufs, ctrl, ctrl_b, slots = mm.bufs, mm.ctrl, mm.ctrl_b, mm.slots
        ts_tos, ts_ovfl_tos = mmsg.CMSG_TS_TOS, mmsg.CMSG_TS_OVFL_TOS
        if ts_tos is not None and ts_ovfl_tos is not None:
            usual, USUAL_B = ts_tos.unpack_from, mmsg.CMSG_TS_TOS_B
            usual_ovfl, USUAL_OVFL_B = ts_ovfl_tos.unpack_from, mmsg.CMSG_TS_OVFL_TOS_B
        else:
            # layouts unknown on this platform: no length is -1, every datagram takes the walk
            usual = usual_ovfl = struct.Struct("").unpack_from
            USUAL_B = USUAL_OVFL_B = -1
        LT_OVFL = mmsg.level_type(socket.SOL_SOCKET, sockopts.SO_RXQ_OVFL)
        LT_TS = mmsg.level_type(socket.SOL_SOCKET, sockopts.SO_TIMESTAMPNS)
        LT_TOS = mmsg.level_type(socket.IPPROTO_IP, socket.IP_TOS)
        walk = mmsg.walk_cmsg
        pack_hdr = stamp.SENDER_HDR.pack_into
        pack_seq = stamp.AUTH_SEQ.pack_into
        pack_ts = stamp.AUTH_TS_EE_SSID.pack_into
        ee = stamp.ERROR_ESTIMATE_DEFAULT
        # authenticated packets with TLVs carry a second HMAC over the TLVs (RFC 8972)
        tlv_hmac_at = size_b - stamp.HMAC_B if (auth and size_b > stamp.AUTH_BASE_B) else None
        digest = hmac.digest
        refl_unpack = stamp.REFL_AUTH_HEAD.unpack_from
        refl_head = _REFL_HEAD.unpack_from
        short_b = stamp.SHORT_REPLY_B      # RFC 5357 reply without the trailing MBZ and Sender TTL
        refl_cos = _REFL_HEAD_COS.unpack_from
        base_b = self.base_b
        cos_at = base_b + stamp.TLV_HEADER_B if cfg.dscp is not None else 0
        cos_end = cos_at + 2 if cfg.dscp is not None else 1 << 30      # never, without a CoS TLV
        perf = time.perf_counter_ns
        # one fixed mapping monotonic -> wall (NTP) for the whole run
        mono0 = perf()
        wall0 = time.time_ns()
        mono0 = (mono0 + perf()) // 2
        ntp0 = stamp.ntp_from_ns(wall0)
        ntp_per_ns = 4.294967296       # 2^32 / 1e9
        run.mono0, run.wall0, run.ntp0 = mono0, wall0, ntp0
        tx, rx, t2a, t3a, rseqa, order = run.tx, run.rx, run.t2, run.t3, run.rseq, run.order
        cosa, tosa = run.cos, run.tos
        errors: list[str] = []
        gaps: list[str] = []             # the errors that are ours (probes.result)
        aborted = False
        t0 = perf() + 5_000_000          # 5 ms to get going
        timeout_ns = int(cfg.timeout_s * 1e9)
        silence_ns = int((cfg.max_silence_s if cfg.max_silence_s is not None else cfg.timeout_s) * 1e9)
        ttla = run.ttl
        loc_at, loc_end = self.loc_span or (None, 0)
        locs = run.locations
        last_loc = b""
        j = 0
        received = 0
        last_seen = 0                    # when a recv last returned datagrams (liveness)
        next_progress = t0 + 500_000_000
        max_rtt_ns = 0
        refused = False
        fileno = sock.fileno()
        old_slack = mmsg.set_timer_slack(TIMER_SLACK_NS)
        try:
            while True:
                now = perf()
                # ---- send everything that is due, in batches of up to g_max
                due = min(total, int((now - t0) // interval_ns) + 1) if now >= t0 else 0
                while j < due:
                    nb = min(due - j, g_max)
                    t_send = perf()
                    ntp = ntp0 + int((t_send - mono0) * ntp_per_ns)
                    off = 0
                    for jj in range(j, j + nb):
                        k = jj // calls + 1
                        ssid = ssid_base + jj % calls
                        if auth:
                            pack_seq(sbuf, off, k)
                            pack_ts(sbuf, off + 16, ntp, ee, ssid)
                            sbuf[off + 96:off + 112] = digest(key, sview[off:off + 96], "sha256")[:16]
                            if tlv_hmac_at is not None:
                                h_at = off + tlv_hmac_at
                                sbuf[h_at:h_at + 16] = digest(
                                    key, bytes(sview[off:off + 4]) + bytes(sview[off + 112:h_at - 4]),
                                    "sha256")[:16]
                        else:
                            pack_hdr(sbuf, off, k, ntp, ee, ssid)
                        off += size_b
                    try:
                        if nb > 1:
                            sendmsg((sview[:off],), gso_anc)
                        else:
                            send(sview[:size_b])
                    except BlockingIOError:
                        break             # socket buffer full: the sender is the bottleneck; next round
                    except ConnectionRefusedError:
                        refused = True    # an ICMP error for an earlier packet; this one counts as sent
                    except OSError as exc:
                        if nb > 1:
                            # e.g. no checksum offload or an MTU below the batch: one by one from now
                            g_max, batch_ns = 1, 0
                            run.send_mode = "per-packet"
                            continue
                        errors.append(f"send failed: {exc.strerror or exc}")
                        if is_local(exc):   # our interface down, our buffers: not the path
                            gaps.append(errors[-1])
                        aborted = True
                        break
                    for jj in range(j, j + nb):
                        tx[jj] = t_send
                    j += nb
                if aborted:
                    break
                # ---- drain replies: up to 64 per recvmmsg, until the queue is empty or the
                # next send is due. Sends come first: replies keep their kernel timestamps
                # while they wait in the 32 MB buffer, a late send is lateness for good.
                # At high rates the next send waits at least BATCH_NS after this round's.
                wake = max(t0 + int(j * interval_ns), now + batch_ns) if j < total else now + 10_000_000
                for _ in range(MAX_DRAIN_BATCHES):
                    try:
                        count = recv()
                    except ConnectionRefusedError:
                        refused = True
                        continue
                    except OSError:
                        continue
                    if not count:
                        break
                    t_user = last_seen = perf()
                    lens, clens = lengths()
                    for i in range(count):
                        n = lens[i]
                        rbuf = rbufs[i]
                        # only what the loop needs now is read here; votes, DSCP and TOS counts
                        # are tallied after the run from the stored values (_tally)
                        if auth:
                            if n < base_b or not hmac.compare_digest(digest(key, rbuf[:96], "sha256")[:16],
                                                                     rbuf[96:112]):
                                run.note_foreign(rbuf, n)
                                continue
                            rs, t3, _ee, ssid, t2, ss, _st, _see, _ttl = refl_unpack(rbuf, 0)
                            cosv = (rbuf[cos_at] << 8 | rbuf[cos_at + 1]) if n >= cos_end else -1
                        elif n >= cos_end:
                            rs, t3, ssid, t2, ss, cosv = refl_cos(rbuf, 0)
                        elif n >= base_b:
                            rs, t3, ssid, t2, ss = refl_head(rbuf, 0)
                            cosv = -1
                        elif n >= short_b:
                            # an RFC 5357 reply cut after the Sender Error Estimate (some
                            # TWAMP-Light responders): both sequence numbers and all three
                            # timestamps are there; no TTL, no TLVs
                            rs, t3, ssid, t2, ss = refl_head(rbuf, 0)
                            cosv = -1
                            run.short += 1
                        else:
                            run.note_foreign(rbuf, n)
                            continue
                        if not (ssid_base <= ssid < ssid_end) or not (1 <= ss <= per_call):
                            if ssid == 0 and calls == 1 and 1 <= ss <= per_call:
                                ssid = ssid_base          # a responder that leaves the SSID field zero
                                run.no_ssid += 1
                            else:
                                run.note_foreign(rbuf, n)
                                continue
                        jj = (ss - 1) * calls + (ssid - ssid_base)
                        if rx[jj]:
                            run.duplicates += 1
                            continue
                        co = i * ctrl_b
                        clen = clens[i]
                        fast = False
                        if clen == USUAL_B:
                            lt1, sec, nsec, lt2, tos = usual(ctrl, co)
                            fast = lt1 == LT_TS and lt2 == LT_TOS
                        elif clen == USUAL_OVFL_B:
                            # once the socket dropped anything, its drop counter rides on every datagram
                            lt1, sec, nsec, lt2, ovfl, lt3, tos = usual_ovfl(ctrl, co)
                            fast = lt1 == LT_TS and lt2 == LT_OVFL and lt3 == LT_TOS
                            if fast:
                                run.rx_dropped = ovfl
                        if not fast:
                            # IPv6 TCLASS, no kernel timestamp, or options we did not expect
                            sec, nsec, tos, ovfl, ttl = walk(ctrl, co, clen)
                            if ovfl >= 0:
                                run.rx_dropped = ovfl
                            if ttla is not None:
                                ttla[jj] = ttl
                        # kernel wall-clock receive time mapped to our monotonic clock
                        rx[jj] = mono0 + (sec * 1_000_000_000 + nsec - wall0) if sec else t_user
                        t2a[jj] = t2
                        t3a[jj] = t3
                        rseqa[jj] = rs
                        cosa[jj] = cosv
                        tosa[jj] = tos
                        order.append(jj)
                        if loc_at is not None and n >= loc_end:
                            # our source as the far end saw it: kept only when it changes
                            v = bytes(rbuf[loc_at:loc_end])
                            if v != last_loc:
                                last_loc = v
                                locs.append((jj, v))
                    if len(order) > received:
                        received = len(order)
                        # the newest reply's RTT stands for the batch (grace period, progress)
                        last = order[-1]
                        rtt = rx[last] - tx[last]
                        if rtt > max_rtt_ns:
                            max_rtt_ns = rtt
                    if count < slots or t_user >= wake:
                        break             # the queue is (almost surely) empty, or a send is due
                now = perf()
                # ---- faults: nothing at all, or replies stopped
                if received == 0 and now - t0 > timeout_ns:
                    errors.append(self._no_reply_cause(refused, run))
                    aborted = True
                    break
                if received and j < total and now - last_seen > silence_ns + max_rtt_ns:
                    errors.append(f"reflector stopped answering after "
                                  f"{(last_seen - t0) / 1e9:.1f} s{' (port unreachable)' if refused else ''}"
                                  + (f"; {unusable_replies(run)}" if run.foreign else ""))
                    aborted = True
                    break
                if stop.is_set():
                    break
                if now >= next_progress:
                    next_progress = now + 500_000_000
                    emit("progress", f"{received}/{j} replies", fraction=min(1.0, j / total),
                         sent=j, received=received, rtt_ms=max_rtt_ns / 1e6)
                if j >= total:
                    # grace period for the last replies: twice the worst RTT seen, within the timeout
                    grace = min(timeout_ns, max(300_000_000, 2 * max_rtt_ns + 100_000_000))
                    if received >= total or now - tx[total - 1] > grace:
                        break
                    select.select([fileno], [], [], 0.01)
                    continue
                # ---- sleep until the next send is due. Replies need no wake-up: their kernel
                # timestamps say when they came, and they wait in the 32 MB buffer.
                wait_ns = wake - perf()
                if wait_ns > 0:
                    select.select((), (), (), wait_ns / 1e9)
        finally:
            mmsg.set_timer_slack(old_slack)
        if received == 0 and not aborted:
            errors.append(self._no_reply_cause(refused, run))
        drops = sockopts.udp_drops(sock)
        if drops and drops > run.rx_dropped:
            run.rx_dropped = drops
        run.elapsed_s = (perf() - t0) / 1e9
        run.t0, run.sent = t0, j
        _tally(run, calls)
        if not aborted and run.stateful_votes and not stop.is_set():
            self._tail_probe(sock, run, calls, per_call, ssid_base, max_rtt_ns)
        return errors, gaps, aborted

    def _tail_probe(self, sock: socket.socket, run: Run, calls: int, per_call: int, ssid_base: int,
                    max_rtt_ns: int) -> None:
        """Learn how many packets each session's reflector counted.

        A stateful reflector's numbering shows upstream loss only up to the last
        reply we received; whether the packets after it were lost up or down is
        unknown. One extra packet per session (sender seq per_call + 1), sent
        after every stream reply is in, comes back carrying the reflector's count
        (its sequence number). Unanswered sessions get one more try
        (seq per_call + 2). Results go to ``run.tail_count`` (call -> count).
        """
        cfg = self.config
        # both attempts together stay within one timeout, so run() ends within
        # duration + grace (<= timeout) + this (<= timeout)
        wait_s = min(cfg.timeout_s / 2, max(0.2, 3 * max_rtt_ns / 1e9 + 0.05))
        unpack = (stamp.REFL_AUTH_HEAD if self.auth else stamp.REFL_UNAUTH).unpack_from
        rbuf = bytearray(65536)
        pending = set(range(calls))
        for attempt in (1, 2):
            seq = per_call + attempt
            for c in sorted(pending):
                pkt = stamp.encode_sender(stamp.SenderPacket(seq, stamp.ntp_from_ns(time.time_ns()),
                                                             ssid=ssid_base + c, tlvs=self.tlvs), cfg.key)
                try:
                    sock.send(pkt)
                except OSError:
                    pass
            deadline = time.monotonic() + wait_s
            while pending and time.monotonic() < deadline:
                ready, _, _ = select.select([sock], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    break
                for _ in range(10000):
                    try:
                        n = sock.recv_into(rbuf)
                    except BlockingIOError:
                        break
                    except OSError:
                        continue
                    if n < self.base_b:
                        continue
                    fields = unpack(rbuf, 0)
                    rs, ssid, ss = fields[0], fields[3], fields[5]
                    c = ssid - ssid_base
                    if ss == seq and c in pending:
                        # attempt 2: if attempt 1 reached the reflector but its reply was
                        # lost, rs counts it too; the clamp in the analysis bounds that
                        run.tail_count[c] = rs
                        pending.discard(c)
            if not pending:
                break

    def _no_reply_cause(self, refused: bool, run: Run) -> str:
        hp = self.hostport
        if run.foreign:
            # datagrams came back: say so, never "no reply"
            return f"{unusable_replies(run)} from {hp}; none could be used"
        if refused:
            return f"no STAMP reflector at {hp} (UDP port unreachable / connection refused)"
        keyed = " or the key is wrong" if self.auth else \
            " (or the reflector requires authentication: use --key-file)"
        return (f"no reply from {hp} within {self.config.timeout_s:g} s: reflector down, "
                f"unreachable or filtered{keyed}")
