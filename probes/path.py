"""The path to a target: traceroute with per-hop RTT and loss, the path MTU,
and the hop where DSCP marking is lost. Raw packets via scapy (needs root).

Traceroute: ``rounds`` rounds; each sends one probe per TTL 1..N at once
(N = the destination's distance once known, else ``max_ttl``). A probe is
UDP to a high port (each probe its own source port, so answers match one
probe), ICMP echo, or TCP SYN to ``port``. Routers answer with ICMP time
exceeded, the destination with port unreachable / echo reply / SYN-ACK or RST.
Per hop: the responding address (the most frequent if ECMP varies it), the
median RTT and the share of rounds without an answer. ICMP error rate limits
on real routers show up as loss at that hop, not beyond it; read per-hop loss
that does not continue to later hops as "router busy", not as path loss.

DSCP: every probe carries ``dscp`` (EF by default). An ICMP error quotes the
IP header of our probe *as it reached the hop that answered*, so the TOS byte
in the quote is the marking at that hop. ``dscp_changed_at`` is the first hop
whose quote differs from what we sent: the marking was changed by that hop on
ingress or by the previous hop on egress (``last_intact_ttl`` says which hop
still saw it intact). Echo replies and TCP answers quote nothing (dscp null).

Path MTU: DF-flagged probes to the destination; the first at the egress
interface MTU; a "fragmentation needed" answer names the router and its
next-hop MTU, which is verified; without such answers (ICMP filtered) a binary
search on size over replies and silences finds the largest size that passes.

Bounded: rounds x TTLs probes, MTU steps and a wall-clock cap (``max_wall_s``).

Answers: read from raw ICMP sockets and matched to their own probe (below, at
``probe_key``), not through scapy's sndrcv. Its packet socket saw every frame
of the machine: with bulk TCP on loopback beside two runs at once, 127.0.0.1
came out at hops 1-9 and with 60 % loss at hop 1 (issue #15); now each run
names one hop with 0 % loss (tests/test_path.py). Scapy still builds the
probes and parses the answers.

IPv6: hop limit for TTL, the quoted traffic class, ICMPv6 Packet Too Big (IPv6
routers never fragment, so every probe is in effect DF; minimum MTU 1280).
"""

from __future__ import annotations

import fcntl
import os
import socket
import statistics
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from probes.addr import AddressError, ResolveError, dscp_value, resolve
from probes.engine import sockopts
from probes.events import Emitter, ProgressCallback
from probes.result import BadInput, add_error, clean, local_error

MIN_MTU = 68                 # RFC 791: every IPv4 link carries 68 bytes
MIN_MTU_V6 = 1280            # RFC 8200: every IPv6 link carries 1280 bytes
MAX_MTU_STEPS = 16
MAX_PROBE_B = 9216           # largest common jumbo frame
UDP_BASE_PORT = 33434        # classic traceroute destination ports

# What each ``mtu_method`` means, for people reading the figure (CLI and docs say this).
MTU_METHOD_TEXT = {
    "interface": "a DF probe the size of the outgoing interface's MTU reached the destination",
    "icmp-frag-needed": "a router answered 'fragmentation needed' with its next-hop MTU; "
                        "a probe of that size then reached the destination",
    "probing": "no 'fragmentation needed' answers (filtered?): the largest DF probe that got "
               "an answer, found by binary search",
    "capped": f"the interface allows more, but probes stop at {MAX_PROBE_B} bytes (the largest "
              "common jumbo frame; no WAN carries more); that size passed, so this is a lower bound",
}


@dataclass
class PathConfig:
    target: str
    proto: str = "udp"            # udp | icmp | tcp
    port: int | None = None       # tcp: required-ish (default 80); udp: fixed destination port
    rounds: int = 3
    max_ttl: int = 30
    dscp: int | str = "ef"
    timeout_s: float = 1.0        # wait for answers after each round / MTU probe
    mtu: bool = True              # run the path MTU search
    max_wall_s: float = 60.0
    source: str | None = None
    interface: str | None = None


@dataclass
class Hop:
    ttl: int
    address: str | None
    rtt_ms: float | None          # median over the rounds that answered
    loss_pct: float
    dscp: int | None              # DSCP quoted back by this hop (most frequent)
    rtt_min_ms: float | None = None
    rtt_max_ms: float | None = None
    addresses: list[str] = field(default_factory=list)
    reply: str | None = None      # time-exceeded | port-unreachable | echo-reply | tcp | unreachable-N
    destination: bool = False


@dataclass
class PathResult:
    target: str
    address: str | None = None
    proto: str = "udp"
    dscp_sent: int = 46
    hops: list[Hop] = field(default_factory=list)
    reached: bool = False
    path_mtu: int | None = None
    mtu_limited_at: str | None = None   # router that sent "fragmentation needed"
    mtu_method: str | None = None       # icmp-frag-needed | probing | interface | capped
    interface_mtu: int | None = None
    dscp_changed_at: dict | None = None
    probes_sent: int = 0
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    partial: bool = False
    measured: bool = False

    def to_dict(self) -> dict:
        d = clean(self)
        d["probe"] = "path"
        return d


# ---- pure parts ---------------------------------------------------------------------------

@dataclass
class Reply:
    """One answered (or not) probe of one round."""
    ttl: int
    address: str | None = None
    rtt_ms: float | None = None
    kind: str | None = None
    quoted_dscp: int | None = None
    destination: bool = False


def aggregate(replies: list[Reply], rounds: int) -> list[Hop]:
    """Per-TTL hops from all rounds' replies (unanswered probes carry address None)."""
    by_ttl: dict[int, list[Reply]] = {}
    for r in replies:
        by_ttl.setdefault(r.ttl, []).append(r)
    hops = []
    for ttl in sorted(by_ttl):
        answered = [r for r in by_ttl[ttl] if r.address is not None]
        addrs = Counter(r.address for r in answered)
        rtts = [r.rtt_ms for r in answered if r.rtt_ms is not None]
        dscps = Counter(r.quoted_dscp for r in answered if r.quoted_dscp is not None)
        kinds = Counter(r.kind for r in answered)
        sent = max(rounds, len(by_ttl[ttl]))
        hops.append(Hop(
            ttl=ttl, address=addrs.most_common(1)[0][0] if addrs else None,
            rtt_ms=statistics.median(rtts) if rtts else None,
            loss_pct=100.0 * (sent - len(answered)) / sent if sent else 0.0,
            dscp=dscps.most_common(1)[0][0] if dscps else None,
            rtt_min_ms=min(rtts) if rtts else None, rtt_max_ms=max(rtts) if rtts else None,
            addresses=sorted(a for a in addrs if a), reply=kinds.most_common(1)[0][0] if kinds else None,
            destination=any(r.destination for r in answered)))
    return hops


def dscp_change(hops: list[Hop], sent: int) -> dict | None:
    """The first hop whose quoted DSCP differs from what we sent, or None."""
    last_intact = 0
    for h in hops:
        if h.dscp is None:
            continue
        if h.dscp != sent:
            return {"ttl": h.ttl, "address": h.address, "dscp_sent": sent, "dscp_seen": h.dscp,
                    "last_intact_ttl": last_intact}
        last_intact = h.ttl
    return None


@dataclass
class MtuProbe:
    kind: str                     # ok | too-big | none
    mtu_hint: int | None = None   # next-hop MTU from "fragmentation needed"
    router: str | None = None


def search_mtu(probe: Callable[[int], MtuProbe], hi: int, lo: int = MIN_MTU,
               max_steps: int = MAX_MTU_STEPS) -> tuple[int | None, str | None, str]:
    """(path MTU, router that limited it, method) by DF probing; pure given ``probe``.

    A silence is retried once (loss is not "too big"); a "too big" with a next-hop MTU
    jumps straight there.
    """
    steps = 0
    limited_at, method = None, "interface"

    def ask(size: int) -> MtuProbe:
        nonlocal steps
        steps += 1
        r = probe(size)
        if r.kind == "none" and steps < max_steps:
            steps += 1
            r = probe(size)
        return r

    good: int | None = None      # largest size seen to pass
    bad = hi + 1                 # smallest size seen not to pass
    size, hinted = hi, None
    while steps < max_steps:
        r = ask(size)
        if r.kind == "ok":
            good = max(good or 0, size)
            if size == hinted:   # the router's next-hop MTU is exact: size + 1 would not pass
                break
        else:
            bad = min(bad, size)
            if r.kind == "too-big":
                limited_at, method = r.router or limited_at, "icmp-frag-needed"
                if r.mtu_hint and lo <= r.mtu_hint < size and (good is None or r.mtu_hint > good):
                    size = hinted = r.mtu_hint
                    continue
            elif method == "interface":
                method = "probing"
        floor = good if good is not None else lo - 1
        if bad - floor <= 1:
            break
        size = (floor + bad) // 2
    if good is not None and good < hi and method == "interface":
        method = "probing"
    return good, limited_at, method


def raw_sockets_allowed() -> bool:
    """Root or CAP_NET_RAW: try to open the kind of socket the probe needs."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
        return True
    except PermissionError:
        return False
    except OSError:
        return os.geteuid() == 0


def interface_mtu(name: str) -> int | None:
    """SIOCGIFMTU of an interface in this network namespace."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            ifr = struct.pack("16si", name.encode()[:15], 0)
            return struct.unpack("16si", fcntl.ioctl(s.fileno(), 0x8921, ifr))[1]
    except OSError:
        return None


# ---- the probe ---------------------------------------------------------------------------

def validate(config: PathConfig) -> int:
    """The DSCP to send; bad input -> BadInput (probes.result) naming the config field (exit 2)."""
    if config.proto not in ("udp", "icmp", "tcp"):
        raise BadInput(f"proto {config.proto!r}: expected udp, icmp or tcp", field="proto")
    if not 1 <= config.rounds <= 20:
        raise BadInput(f"rounds {config.rounds}: expected 1-20", field="rounds")
    if not 1 <= config.max_ttl <= 64:
        raise BadInput(f"max_ttl {config.max_ttl}: expected 1-64", field="max_ttl")
    if config.port is not None and not 1 <= config.port <= 65535:
        raise BadInput(f"port {config.port}: expected 1-65535", field="port")
    if config.timeout_s <= 0:
        raise BadInput(f"timeout_s {config.timeout_s:g}: expected > 0 s", field="timeout_s")
    if config.max_wall_s <= 0:
        raise BadInput(f"max_wall_s {config.max_wall_s:g}: expected > 0 s", field="max_wall_s")
    if config.interface:
        try:
            socket.if_nametoindex(config.interface)
        except OSError:
            raise BadInput(f"interface {config.interface!r}: no such interface here", field="interface") from None
    try:
        return dscp_value(config.dscp)
    except AddressError as exc:
        raise BadInput(f"dscp: {exc}", field="dscp") from None


def run(config: PathConfig, progress: ProgressCallback | None = None,
        stop: threading.Event | None = None) -> PathResult:
    emit = Emitter("path", progress)
    dscp = validate(config)
    result = PathResult(target=config.target, proto=config.proto, dscp_sent=dscp)
    stop = stop or threading.Event()
    host = config.target.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        _fam, sockaddr = resolve(host, 0, source=config.source)
    except ResolveError as exc:
        result.errors.append(str(exc))
        return result
    except AddressError as exc:
        raise AddressError(f"target: {exc}", field="target") from None
    dst = sockaddr[0]
    result.address = dst
    if not raw_sockets_allowed():
        local_error(result, "probe path needs root (raw sockets for TTL-limited probes and ICMP "
                            "answers): run it as root or with CAP_NET_RAW")
        return result
    t_end = time.monotonic() + config.max_wall_s
    emit("start", f"tracing {dst} with {config.proto.upper()}, DSCP {dscp}")
    try:
        _trace(config, dst, dscp, result, emit, stop, t_end)
        if config.mtu and result.reached and not stop.is_set() and time.monotonic() < t_end:
            emit("start", "path MTU search")
            _mtu(config, dst, dscp, result, t_end)
    except OSError as exc:     # socket trouble mid-way: keep what we have
        add_error(result, exc, f"raw socket error: {exc.strerror or exc}")
        result.partial = bool(result.hops)
    result.measured = bool(result.hops) and any(h.address for h in result.hops)
    result.dscp_changed_at = dscp_change(result.hops, dscp)
    if stop.is_set():
        result.partial = True
        local_error(result, "stopped")
    if not result.reached and result.measured:
        blocked = [h for h in result.hops if h.reply and h.reply.startswith("unreachable")]
        if blocked:
            h = blocked[0]
            code = (h.reply or "").split("-")[1]
            result.errors.append(f"hop {h.ttl} ({h.address}) answered destination unreachable "
                                 f"(ICMP code {code}): filtered or no route")
        else:
            result.errors.append(f"destination {dst} did not answer within {config.max_ttl} hops")
    emit("done", f"{len(result.hops)} hops, path MTU {result.path_mtu}")
    return result


class _Scapy:
    """scapy's names, imported on first use: the import takes about a second."""
    _loaded = False
    conf: Any
    inet: Any
    inet6: Any
    Raw: Any
    sndrcv: Any
    L3RawSocket: Any
    L3RawSocket6: Any

    @classmethod
    def load(cls) -> "type[_Scapy]":
        if not cls._loaded:
            from scapy.config import conf
            from scapy.layers import inet, inet6
            from scapy.packet import Raw
            from scapy.sendrecv import sndrcv
            from scapy.supersocket import L3RawSocket, L3RawSocket6
            conf.verb = 0
            cls.conf, cls.inet, cls.inet6, cls.Raw, cls.sndrcv = conf, inet, inet6, Raw, sndrcv
            cls.L3RawSocket, cls.L3RawSocket6 = L3RawSocket, L3RawSocket6
            cls._loaded = True
        return cls


# ---- matching answers to probes -------------------------------------------------------------
#
# Answers are read from raw ICMP sockets (and, for --proto tcp, a raw TCP socket
# with a kernel BPF filter on the probed port), never from a packet socket that
# sees every frame of the machine: under the test suite's traffic that sniffer
# dropped answers, and replies to other traceroutes were in its way. Every answer
# is matched to the one probe it answers by a key both carry:
#
#   probe sent                     answer                             key
#   ICMP echo (id, seq)            echo reply, same id and seq        ("icmp", id, seq)
#   any probe                      ICMP error quoting our IP header   from the quoted L4 header:
#                                  (time exceeded, unreachable,         UDP  ("udp", sport, dport)
#                                  frag needed / packet too big)        TCP  ("tcp", sport, dport)
#                                                                       ICMP ("icmp", id, seq)
#   TCP SYN (sport, dport)         SYN-ACK / RST from dport to sport  ("tcp", sport, dport)
#
# The quoted header must also name our destination (a quote of someone else's
# packet to elsewhere is not ours). Source ports are held by a socket of the
# same protocol bound to port 0 for as long as their probes can be answered, so
# the kernel gives no other process the same port (each UDP/TCP probe has its
# own, so the port alone names the probe); the ICMP identifier is the
# process id (pid_max 32768 here, so it is unique among running processes) and
# the sequence number counts the probes of every run in this process.

def probe_key(pkt) -> tuple | None:
    """The matching key of a probe we send (see the table above)."""
    sc = _Scapy.load()
    inet, inet6 = sc.inet, sc.inet6
    if inet.UDP in pkt:
        return ("udp", pkt[inet.UDP].sport, pkt[inet.UDP].dport)
    if inet.TCP in pkt:
        t = pkt[inet.TCP]
        return ("tcp", t.sport, t.dport)
    if inet.ICMP in pkt:
        return ("icmp", pkt[inet.ICMP].id, pkt[inet.ICMP].seq)
    if inet6.ICMPv6EchoRequest in pkt:
        e = pkt[inet6.ICMPv6EchoRequest]
        return ("icmp", e.id, e.seq)
    return None


def answer_key(rcv, dst: str) -> tuple | None:
    """The key of the probe an answer answers, None when it answers none of ours to ``dst``."""
    sc = _Scapy.load()
    inet, inet6 = sc.inet, sc.inet6
    if inet.IPerror in rcv or inet6.IPerror6 in rcv:        # an ICMP error quoting a packet
        quoted = rcv[inet.IPerror] if inet.IPerror in rcv else rcv[inet6.IPerror6]
        if quoted.dst != dst:
            return None
        if inet.UDPerror in rcv:
            u = rcv[inet.UDPerror]
            return ("udp", u.sport, u.dport)
        if inet.TCPerror in rcv:
            t = rcv[inet.TCPerror]
            return ("tcp", t.sport, t.dport)
        if inet.ICMPerror in rcv:
            e = rcv[inet.ICMPerror]
            return ("icmp", e.id, e.seq) if e.type == 8 else None
        if inet6.ICMPv6EchoRequest in rcv:            # quoted echo request (scapy: no *error class)
            e = rcv[inet6.ICMPv6EchoRequest]
            return ("icmp", e.id, e.seq)
        return None
    src = rcv[inet.IP].src if inet.IP in rcv else rcv[inet6.IPv6].src if inet6.IPv6 in rcv else None
    if src != dst:
        return None
    if inet.ICMP in rcv and rcv[inet.ICMP].type == 0:
        return ("icmp", rcv[inet.ICMP].id, rcv[inet.ICMP].seq)
    if inet6.ICMPv6EchoReply in rcv:
        e = rcv[inet6.ICMPv6EchoReply]
        return ("icmp", e.id, e.seq)
    if inet.TCP in rcv:
        t = rcv[inet.TCP]
        return ("tcp", t.dport, t.sport)
    return None


_seq_lock = threading.Lock()
_seq_next = 0


def _reserve_seq(n: int) -> int:
    """The first of ``n`` probe numbers no other run in this process uses (ICMP echo
    sequence numbers: runs in one process share its identifier, e.g. the board probing
    two circuits at once)."""
    global _seq_next
    with _seq_lock:
        start = _seq_next
        _seq_next = (_seq_next + n) % 0x10000
        return start


SO_ATTACH_FILTER = 26
_BPF_LDX_MSH, _BPF_LDH_IND, _BPF_LDH_ABS, _BPF_JEQ, _BPF_RET = 0xB1, 0x48, 0x28, 0x15, 0x06


def _attach_port_filter(sock: socket.socket, port: int, v6: bool) -> None:
    """Classic BPF: let only TCP segments from source port ``port`` reach this raw socket,
    so a busy machine's other TCP traffic never queues in front of our answers. An IPv4
    raw socket sees the IP header first (its length from IHL), an IPv6 one the TCP header."""
    import ctypes
    load = [(_BPF_LDH_ABS, 0, 0, 0)] if v6 else [(_BPF_LDX_MSH, 0, 0, 0), (_BPF_LDH_IND, 0, 0, 0)]
    prog = load + [(_BPF_JEQ, 0, 1, port), (_BPF_RET, 0, 0, 0x40000), (_BPF_RET, 0, 0, 0)]
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in prog))
    fprog = struct.pack("HL", len(prog), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class _Prober:
    """Raw sockets for one run: one to send our built packets, one or two to read answers."""

    def __init__(self, config: PathConfig, dst: str) -> None:
        self.v6 = ":" in dst
        self.dst = dst
        fam = socket.AF_INET6 if self.v6 else socket.AF_INET
        self.out = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_RAW)
        self.ins: list[socket.socket] = []
        self.held: list[socket.socket] = []      # sockets holding our source ports
        try:
            if config.interface:   # leave through this circuit's interface, as other probes do
                self.out.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                                    config.interface.encode() + b"\0")
            icmp = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if self.v6 else socket.IPPROTO_ICMP)
            self.ins.append(icmp)
            if config.proto == "tcp":
                tcp = socket.socket(fam, socket.SOCK_RAW, socket.IPPROTO_TCP)
                _attach_port_filter(tcp, config.port or 80, self.v6)
                self.ins.append(tcp)
            for s in self.ins:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                s.setsockopt(socket.SOL_SOCKET, sockopts.SO_TIMESTAMPNS, 1)
                s.setblocking(False)
        except OSError:
            self.close()
            raise

    def hold_port(self, proto: str) -> int:
        """A source port no other socket on this machine has while we probe with it."""
        kind = socket.SOCK_DGRAM if proto == "udp" else socket.SOCK_STREAM
        s = socket.socket(socket.AF_INET6 if self.v6 else socket.AF_INET, kind)
        s.bind(("::" if self.v6 else "0.0.0.0", 0))
        self.held.append(s)
        return s.getsockname()[1]

    def release_ports(self) -> None:
        for s in self.held:
            s.close()
        self.held = []

    def exchange(self, pkts: list, timeout_s: float) -> tuple[list, list]:
        """Send ``pkts``; ([(probe, answer, rtt_ms)], [unanswered probes]) after every probe
        was answered or ``timeout_s`` passed since the last send. Others' packets are skipped."""
        import select
        pending: dict[tuple, tuple] = {}
        for p in pkts:
            raw = bytes(p)
            t = time.time()
            self.out.sendto(raw, (self.dst, 0))
            key = probe_key(p)
            if key is None:
                raise ValueError(f"no matching key for probe {p.summary()}")
            pending[key] = (p, t)
        answered = []
        deadline = time.monotonic() + timeout_s
        while pending:
            left = deadline - time.monotonic()
            # past the deadline, still read what the kernel already queued (a busy machine
            # may not have run us while the answers arrived)
            ready, _, _ = select.select(self.ins, [], [], max(0.0, left))
            if not ready and left <= 0:
                break
            for s in ready:
                for _ in range(256):            # drain, bounded
                    try:
                        data, anc, _flags, addr = s.recvmsg(65535, 64)
                    except BlockingIOError:
                        break
                    if not self._may_answer(data, s):
                        continue
                    rcv = self._parse(data, addr, s)
                    key = answer_key(rcv, self.dst)
                    hit = pending.pop(key, None) if key else None
                    if hit:
                        answered.append((hit[0], rcv, (_rx_time(anc) - hit[1]) * 1000.0))
        return answered, [p for p, _t in pending.values()]

    def _may_answer(self, data: bytes, sock: socket.socket) -> bool:
        """Cheap first look: ICMP types that can answer a probe (echo reply, destination
        unreachable, time exceeded, packet too big); others' echo requests and the like
        are skipped before scapy parses anything."""
        if sock.proto == socket.IPPROTO_TCP:
            return True
        off = 0 if self.v6 else (data[0] & 0x0F) * 4 if data else 0
        if len(data) <= off:
            return False
        return data[off] in ((1, 2, 3, 129) if self.v6 else (0, 3, 11))

    def _parse(self, data: bytes, addr, sock: socket.socket):
        sc = _Scapy.load()
        if not self.v6:
            return sc.inet.IP(data)
        # an IPv6 raw socket gets no IP header: put one back so the answer parses as sent
        nh = 6 if sock.proto == socket.IPPROTO_TCP else 58
        return sc.inet6.IPv6(bytes(sc.inet6.IPv6(src=addr[0], dst=self.dst, nh=nh, plen=len(data))) + data)

    def close(self) -> None:
        self.release_ports()
        for s in [self.out, *self.ins]:
            s.close()

    def __enter__(self) -> "_Prober":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _rx_time(ancdata) -> float:
    """Kernel receive time (sockopts.SO_TIMESTAMPNS), else now."""
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == sockopts.SO_TIMESTAMPNS and len(data) >= 16:
            sec, nsec = struct.unpack("qq", data[:16])
            return sec + nsec / 1e9
    return time.time()


def _probe_packet(config: PathConfig, dst: str, dscp: int, ttl: int, index: int, size: int | None = None,
                  df: bool = False, sport: int = 0):
    """One probe; ``sport`` (UDP/TCP) is a port the caller holds (``_Prober.hold_port``)."""
    sc = _Scapy.load()
    inet, inet6 = sc.inet, sc.inet6
    v6 = ":" in dst
    if v6:   # IPv6 routers never fragment: every packet is "DF"
        ip = inet6.IPv6(dst=dst, hlim=ttl, tc=dscp << 2)
    else:
        ip = inet.IP(dst=dst, ttl=ttl, tos=dscp << 2, flags="DF" if df else 0)
    if config.source:
        ip.src = config.source
    ip_b = 40 if v6 else 20
    if config.proto == "udp":
        l4, l4_b = inet.UDP(sport=sport, dport=config.port or (UDP_BASE_PORT + index % 1000)), 8
    elif config.proto == "tcp":
        l4, l4_b = inet.TCP(sport=sport, dport=config.port or 80, flags="S", seq=index), 20
    elif v6:
        l4, l4_b = inet6.ICMPv6EchoRequest(id=os.getpid() & 0xFFFF, seq=index & 0xFFFF), 8
    else:
        l4, l4_b = inet.ICMP(type=8, id=os.getpid() & 0xFFFF, seq=index & 0xFFFF), 8
    pad = b"\x00" * (size - ip_b - l4_b) if size is not None and size > ip_b + l4_b else b""
    if pad and v6 and config.proto == "icmp":
        l4.data = pad    # scapy matches an ICMPv6 echo reply on its data field
        return ip / l4
    pkt = ip / l4
    return pkt / sc.Raw(pad) if pad else pkt


def _classify(rcv, dst: str) -> tuple[str, int | None, bool, int | None]:
    """(kind, quoted DSCP, is the destination, next-hop MTU) of an answer, IPv4 or IPv6."""
    sc = _Scapy.load()
    inet, inet6 = sc.inet, sc.inet6
    if inet.IP in rcv:
        src = rcv[inet.IP].src
        if inet.ICMP in rcv:
            icmp = rcv[inet.ICMP]
            quoted = rcv[inet.IPerror].tos >> 2 if inet.IPerror in rcv else None
            if icmp.type == 11:
                return "time-exceeded", quoted, False, None
            if icmp.type == 0:
                return "echo-reply", None, True, None
            if icmp.type == 3:
                if icmp.code == 3:
                    return "port-unreachable", quoted, src == dst, None
                if icmp.code == 4:
                    return "frag-needed", quoted, False, int(icmp.nexthopmtu) or None
                return f"unreachable-{icmp.code}", quoted, src == dst, None
            return f"icmp-{icmp.type}", quoted, False, None
    elif inet6.IPv6 in rcv:
        src = rcv[inet6.IPv6].src
        quoted = rcv[inet6.IPerror6].tc >> 2 if inet6.IPerror6 in rcv else None
        if inet6.ICMPv6TimeExceeded in rcv:
            return "time-exceeded", quoted, False, None
        if inet6.ICMPv6EchoReply in rcv:
            return "echo-reply", None, True, None
        if inet6.ICMPv6PacketTooBig in rcv:
            return "frag-needed", quoted, False, int(rcv[inet6.ICMPv6PacketTooBig].mtu) or None
        if inet6.ICMPv6DestUnreach in rcv:
            code = rcv[inet6.ICMPv6DestUnreach].code
            if code == 4:
                return "port-unreachable", quoted, src == dst, None
            return f"unreachable-{code}", quoted, src == dst, None
    else:
        return "other", None, False, None
    if inet.TCP in rcv and inet.TCPerror not in rcv:
        return "tcp", None, True, None
    return "other", None, False, None


def _addr_ttl(pkt) -> tuple[str, int]:
    sc = _Scapy.load()
    if sc.inet.IP in pkt:
        return pkt[sc.inet.IP].src, pkt[sc.inet.IP].ttl
    return pkt[sc.inet6.IPv6].src, pkt[sc.inet6.IPv6].hlim


FIRST_ROUND_BATCH = 8     # TTLs sent at once while the destination's distance is unknown


def _trace(config, dst, dscp, result: PathResult, emit, stop, t_end) -> None:
    replies: list[Reply] = []
    dest_ttl: int | None = None
    index = _reserve_seq(config.rounds * config.max_ttl)
    with _Prober(config, dst) as prober:
        for rnd in range(config.rounds):
            if stop.is_set() or time.monotonic() > t_end:
                result.partial = True
                break
            # until the distance is known, TTLs go out in batches of 8: a near destination
            # then answers 8 probes, not max_ttl of them (every host limits the ICMP errors
            # it sends, 50 at once by default on Linux, shared by all processes)
            lo = 1
            while lo <= (dest_ttl or config.max_ttl):
                hi = dest_ttl or min(config.max_ttl, lo + FIRST_ROUND_BATCH - 1)
                pkts = []
                for ttl in range(lo, hi + 1):
                    sport = prober.hold_port(config.proto) if config.proto != "icmp" else 0
                    pkts.append(_probe_packet(config, dst, dscp, ttl, index, sport=sport))
                    index += 1
                ans, unans = prober.exchange(pkts, config.timeout_s)
                prober.release_ports()
                result.probes_sent += len(pkts)
                for snd, rcv, rtt_ms in ans:
                    kind, quoted, is_dst, _mtu_hint = _classify(rcv, dst)
                    src = _addr_ttl(rcv)[0]
                    replies.append(Reply(_addr_ttl(snd)[1], src, rtt_ms, kind, quoted, is_dst or src == dst))
                for snd in unans:
                    replies.append(Reply(_addr_ttl(snd)[1]))
                if dest_ttl is None:
                    reached = [r.ttl for r in replies if r.destination]
                    stops = [r.ttl for r in replies if r.kind and r.kind.startswith("unreachable")]
                    if reached or stops:
                        dest_ttl = min(reached + stops)
                if stop.is_set() or time.monotonic() > t_end:
                    break
                lo = hi + 1
            emit("progress", f"round {rnd + 1}/{config.rounds}", fraction=(rnd + 1) / config.rounds)
    if dest_ttl is not None:
        replies = [r for r in replies if r.ttl <= dest_ttl]
        result.reached = any(r.destination for r in replies)
    else:
        # never reached: drop the silent tail beyond the last hop that answered
        answered = [r.ttl for r in replies if r.address]
        last = max(answered) if answered else 0
        replies = [r for r in replies if r.ttl <= min(config.max_ttl, last + 1)]
    result.hops = aggregate(replies, config.rounds)


def _mtu(config, dst, dscp, result: PathResult, t_end) -> None:
    sc = _Scapy.load()
    v6 = ":" in dst
    try:
        iface = config.interface or (sc.conf.route6.route(dst)[0] if v6 else sc.conf.route.route(dst)[0])
    except Exception:   # scapy's route table can fail on odd setups; fall back to 1500
        iface = None
    if not isinstance(iface, str):
        iface = getattr(iface, "name", None)
    hi = interface_mtu(iface) if iface else None
    result.interface_mtu = hi
    # probe at most a jumbo frame: larger raw packets (loopback's 65536 MTU) are not
    # reliably sent and received through scapy's sockets, and no WAN carries them
    hi = min(hi or 1500, MAX_PROBE_B)
    counter = [_reserve_seq(MAX_MTU_STEPS + 1)]

    def probe(size: int) -> MtuProbe:
        if time.monotonic() > t_end:
            return MtuProbe("none")
        counter[0] += 1
        sport = prober.hold_port(config.proto) if config.proto != "icmp" else 0
        pkt = _probe_packet(config, dst, dscp, 64, counter[0], size=size, df=True, sport=sport)
        try:
            ans, _ = prober.exchange([pkt], config.timeout_s)
        except OSError:      # EMSGSIZE: larger than the local interface allows
            return MtuProbe("too-big")
        finally:
            prober.release_ports()
        result.probes_sent += 1
        for _snd, rcv, _rtt in ans:
            kind, _q, is_dst, hint = _classify(rcv, dst)
            if kind == "frag-needed":
                return MtuProbe("too-big", hint, _addr_ttl(rcv)[0])
            if is_dst or _addr_ttl(rcv)[0] == dst:
                return MtuProbe("ok")
        return MtuProbe("none")

    with _Prober(config, dst) as prober:
        mtu, router, method = search_mtu(probe, hi, lo=MIN_MTU_V6 if v6 else MIN_MTU)
    if mtu == MAX_PROBE_B and (result.interface_mtu or 0) > MAX_PROBE_B:
        method = "capped"            # the path carries at least this much; we did not try more
    result.path_mtu, result.mtu_limited_at, result.mtu_method = mtu, router, method
    if mtu is None:
        result.errors.append("path MTU unknown: no DF probe got an answer")
