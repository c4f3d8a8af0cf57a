"""Userspace UDP impairment relay for the test lab.

Clients send to the relay's listen address; the relay forwards each datagram to
one upstream address from a per-client socket (so every client flow keeps its own
5-tuple at the upstream) and relays the upstream's replies back to that client.

Per direction (``up`` = client -> upstream, ``down`` = upstream -> client):

* fixed delay ``delay_ms`` plus uniform jitter: each packet's delay is drawn
  independently, uniform in [delay - jitter, delay + jitter] (clamped at 0).
  For independent uniform delays the mean |IPDV| between consecutive packets is
  E|X - Y| = 2 * jitter / 3 (6.67 ms for +/-10 ms). Jitter wider than the packet
  interval reorders packets, as a real jittery path would.
* random loss ``loss_pct`` (Bernoulli per packet),
* reordering ``reorder_pct``: the packet is held back ``reorder_gap_ms`` more so
  later packets overtake it,
* duplication ``dup_pct``: an extra copy is sent right after the original.
* Gilbert-Elliott loss ``ge_p``, ``ge_r`` (probabilities per packet, 0-1): a
  two-state chain moves good -> bad with probability p and bad -> good with
  probability r before each packet; every packet in the bad state is lost.
  Mean loss p / (p + r), mean burst 1 / r packets, and the G.107 burst ratio
  of the pattern is 1 / (p + r) (random loss of the same mean gives 1).

Path events, both directions at once (commands below): ``blackout MS`` drops
everything for MS ms from now (a line that fails); ``blackout MS rebind`` also
gives every client a new upstream socket when it ends, so the far end sees the
same flows come back from new source ports (what a NAT rebinding after a
failover looks like).

Randomness comes from one seeded ``random.Random`` per direction, so a run with
the same seed and the same packet sequence makes the same decisions.

Timing: the loop waits with ``select()`` whose timeout is the next due time from
a heap (``select`` uses high-resolution kernel timers, microsecond granularity;
epoll's millisecond timeouts would add a bias, docs/lab.md, "What this kind of machine does"). The sockets
themselves sit in an epoll set whose one fd is in the select() set, so the
number of client flows is not limited by select's FD_SETSIZE (1024). The relay
runs as its own process (``python -m tests.lab.relay``) so the test process's
GIL cannot delay deliveries.

DSCP: the TOS byte (IPv4, ``IP_RECVTOS``) or traffic class (IPv6,
``IPV6_RECVTCLASS``) of each received datagram is read and set on the outgoing
copy, so DSCP marking survives the relay (``--no-preserve-tos`` turns this off
and the relay then sends with TOS 0).

Control protocol (line based, on stdin/stdout):

* at start the relay prints ``{"event": "ready", "listen": [host, port]}``;
* ``stats`` -> one JSON line with per-direction counters;
* ``config {"up": {...}, "down": {...}}`` -> change impairments on the fly;
* ``blackout MS`` / ``blackout MS rebind`` -> a path event (above);
* ``quit`` (or EOF on stdin, i.e. the parent died) -> final stats line, exit.

The relay also exits after ``--max-seconds`` so it can never outlive a test.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import random
import resource
import select
import socket
import struct
import sys
import time
from dataclasses import asdict, dataclass, field

try:
    from .rt import set_realtime
except ImportError:  # run as a script
    from tests.lab.rt import set_realtime

MAX_DATAGRAM = 65535
MAX_CLIENTS = 8192          # bounds memory: one upstream socket per client flow
DRAIN_BATCH = 256           # datagrams read per socket per wakeup, keeps the loop fair
MAX_PENDING = 200_000       # bounds the delay heap (packets in flight)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("@qq")


@dataclass
class Impairment:
    """Impairment of one direction. All zero = a transparent relay."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss_pct: float = 0.0
    reorder_pct: float = 0.0
    reorder_gap_ms: float = 5.0
    dup_pct: float = 0.0
    ge_p: float = 0.0           # Gilbert-Elliott: P(good -> bad) per packet
    ge_r: float = 0.0           # Gilbert-Elliott: P(bad -> good) per packet

    def validate(self) -> "Impairment":
        for name, value in asdict(self).items():
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        for name in ("loss_pct", "reorder_pct", "dup_pct"):
            if getattr(self, name) > 100:
                raise ValueError(f"{name} must be <= 100")
        if self.ge_p > 1 or self.ge_r > 1 or (self.ge_p > 0 and self.ge_r == 0):
            raise ValueError("ge_p and ge_r are probabilities (0-1); ge_r must be > 0 with ge_p")
        return self

    @classmethod
    def from_dict(cls, data: dict) -> "Impairment":
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown impairment keys: {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in data.items()}).validate()

    @classmethod
    def parse(cls, text: str) -> "Impairment":
        """``delay_ms=40,jitter_ms=10,loss_pct=2`` (empty string = none)."""
        data = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, _, value = part.partition("=")
            data[key.strip()] = value
        return cls.from_dict(data)


@dataclass
class DirectionStats:
    received: int = 0       # datagrams that entered the relay in this direction
    forwarded: int = 0      # originals sent out (excludes duplicate copies)
    dropped: int = 0        # lost on purpose (loss_pct)
    duplicated: int = 0     # extra copies sent (dup_pct)
    reordered: int = 0      # originals held back by reorder_gap_ms
    send_errors: int = 0    # sendto failures (e.g. upstream port unreachable)
    sent: int = 0           # datagrams put on the wire (originals + copies)
    pending: int = 0        # scheduled, not yet sent (filled in when reported)


@dataclass
class Direction:
    name: str
    imp: Impairment
    rng: random.Random
    stats: DirectionStats = field(default_factory=DirectionStats)
    bad: bool = False           # Gilbert-Elliott state

    def schedule(self, now: float) -> list[tuple[float, bool]]:
        """Decide one packet's fate: list of (send time, is_copy); empty = dropped."""
        imp, rng = self.imp, self.rng
        self.stats.received += 1
        if imp.ge_p > 0:
            # its own draw, only when enabled: seeds of runs without it decide as before
            self.bad = (rng.random() >= imp.ge_r) if self.bad else (rng.random() < imp.ge_p)
            if self.bad:
                self.stats.dropped += 1
                return []
        # Draw all random numbers every time so decisions for packet n do not
        # depend on which impairments are enabled for earlier packets.
        r_loss, r_jit, r_reo, r_dup = rng.random(), rng.random(), rng.random(), rng.random()
        if r_loss * 100.0 < imp.loss_pct:
            self.stats.dropped += 1
            return []
        delay_ms = imp.delay_ms + (2.0 * r_jit - 1.0) * imp.jitter_ms
        if r_reo * 100.0 < imp.reorder_pct:
            delay_ms += imp.reorder_gap_ms
            self.stats.reordered += 1
        due = now + max(0.0, delay_ms) / 1000.0
        if r_dup * 100.0 < imp.dup_pct:
            self.stats.duplicated += 1
            return [(due, False), (due, True)]
        return [(due, False)]


def _tos_sockopts(family: int) -> tuple[int, int, int]:
    """(level, recv option, send option) for the TOS byte / traffic class."""
    if family == socket.AF_INET6:
        return socket.IPPROTO_IPV6, socket.IPV6_RECVTCLASS, socket.IPV6_TCLASS
    return socket.IPPROTO_IP, socket.IP_RECVTOS, socket.IP_TOS


class Relay:
    def __init__(self, listen: tuple[str, int], upstream: tuple[str, int], up: Impairment,
                 down: Impairment, seed: int = 1, preserve_tos: bool = True,
                 source: str | None = None) -> None:
        self.upstream = socket.getaddrinfo(upstream[0], upstream[1], type=socket.SOCK_DGRAM)[0][4]
        lfam = socket.getaddrinfo(listen[0], listen[1], type=socket.SOCK_DGRAM)[0]
        self.listen_family = lfam[0]
        self.up_family = socket.AF_INET6 if ":" in self.upstream[0] else socket.AF_INET
        self.source = source
        self.preserve_tos = preserve_tos
        self.listen_sock = self._make_sock(self.listen_family)
        self.listen_sock.bind(lfam[4])
        self.ep = select.epoll()
        self.by_fd: dict[int, socket.socket] = {}
        self._watch(self.listen_sock)
        self.up = Direction("up", up, random.Random(f"{seed}-up"))
        self.down = Direction("down", down, random.Random(f"{seed}-down"))
        self.by_client: dict[tuple, socket.socket] = {}
        self.by_sock: dict[socket.socket, tuple] = {}
        self.heap: list = []
        self._seq = 0
        self._tos_sent: dict[socket.socket, int] = {}
        self.rejected_clients = 0
        self.blackout_until = 0.0     # monotonic: drop everything before this (both directions)
        self.rebind_at: float | None = None   # monotonic: new upstream sockets from then on
        # select() wakes up late by a roughly constant amount (0.1-0.2 ms on this
        # machine: hrtimer slack plus scheduling). We learn that lateness (EWMA)
        # and wake up that much early, so packets leave on time on average.
        self.early_s = 0.0

    def _make_sock(self, family: int) -> socket.socket:
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.setblocking(False)
        for opt, size in ((socket.SO_RCVBUF, 4 << 20), (socket.SO_SNDBUF, 4 << 20)):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, size)
            except OSError:
                pass
        if self.preserve_tos:
            level, recv_opt, _ = _tos_sockopts(family)
            s.setsockopt(level, recv_opt, 1)
        # kernel receive timestamps: a packet's delay counts from its arrival, not
        # from when this loop got round to reading it
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        return s

    @property
    def address(self) -> tuple[str, int]:
        return self.listen_sock.getsockname()[:2]

    def _client_sock(self, client: tuple) -> socket.socket | None:
        sock = self.by_client.get(client)
        if sock is None:
            if len(self.by_client) >= MAX_CLIENTS:
                self.rejected_clients += 1
                return None
            try:
                sock = self._make_sock(self.up_family)
                if self.source:
                    sock.bind((self.source, 0))
                sock.connect(self.upstream)
            except OSError:   # out of file descriptors or ports: count it, keep serving others
                self.rejected_clients += 1
                return None
            self._watch(sock)
            self.by_client[client] = sock
            self.by_sock[sock] = client
        return sock

    def _rebind(self) -> None:
        """Forget every client's upstream socket: the next datagram of each flow
        leaves from a new one (a new source port at the far end)."""
        self.rebind_at = None
        for sock in list(self.by_sock):
            self.by_fd.pop(sock.fileno(), None)
            self.ep.unregister(sock.fileno())
            sock.close()
        self.by_client.clear()
        self.by_sock.clear()
        self._tos_sent.clear()

    def blackout(self, ms: float, rebind: bool = False) -> None:
        """Drop everything both ways for ``ms`` from now; then, with ``rebind``,
        every flow continues from a new upstream socket."""
        if not 0 < ms <= 600_000:
            raise ValueError(f"blackout {ms} ms: expected 0-600000")
        self.blackout_until = time.monotonic() + ms / 1000.0
        if rebind:
            self.rebind_at = self.blackout_until

    def _watch(self, sock: socket.socket) -> None:
        self.by_fd[sock.fileno()] = sock
        self.ep.register(sock.fileno(), select.EPOLLIN)

    @staticmethod
    def _ancillary(ancdata) -> tuple[int, float | None]:
        """(TOS byte / traffic class, kernel receive time CLOCK_REALTIME or None)."""
        tos, rx = 0, None
        for level, ctype, data in ancdata:
            if level == socket.SOL_SOCKET and ctype == SO_TIMESTAMPNS and len(data) >= 16:
                sec, nsec = TIMESPEC.unpack_from(data)
                rx = sec + nsec * 1e-9
            elif ctype in (socket.IP_TOS, socket.IPV6_TCLASS) and data and level != socket.SOL_SOCKET:
                tos = data[0] if len(data) == 1 else int.from_bytes(data[:4], sys.byteorder)
        return tos, rx

    def _push(self, direction: Direction, data: bytes, out: socket.socket, dest, tos: int,
              now: float) -> None:
        if now < self.blackout_until:
            direction.stats.dropped += 1
            direction.stats.received += 1
            return
        if len(self.heap) >= MAX_PENDING:
            direction.stats.dropped += 1
            direction.stats.received += 1
            return
        for due, is_copy in direction.schedule(now):
            self._seq += 1
            heapq.heappush(self.heap, (due, self._seq, direction, data, out, dest, tos, is_copy))

    def _read(self, sock: socket.socket) -> None:
        is_listen = sock is self.listen_sock
        # realtime -> monotonic for the kernel timestamps (sampled once per batch)
        mono_minus_real = time.monotonic() - time.time()
        for _ in range(DRAIN_BATCH):
            try:
                data, anc, _flags, addr = sock.recvmsg(MAX_DATAGRAM, 128)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                # ICMP port unreachable from a peer that is not (yet) listening
                return
            now = time.monotonic()
            tos, rx_real = self._ancillary(anc)
            if not self.preserve_tos:
                tos = 0
            if rx_real is not None:
                # never in the future, never more than 1 s back (clock step guard)
                now = min(now, max(now - 1.0, rx_real + mono_minus_real))
            if is_listen:
                if self.rebind_at is not None and now >= self.rebind_at:
                    self._rebind()
                out = self._client_sock(addr)
                if out is not None:
                    self._push(self.up, data, out, None, tos, now)
            else:
                client = self.by_sock.get(sock)
                if client is not None:
                    self._push(self.down, data, self.listen_sock, client, tos, now)

    def _send_due(self) -> None:
        limit = time.monotonic() + self.early_s
        while self.heap and self.heap[0][0] <= limit:
            _due, _seq, direction, data, out, dest, tos, is_copy = heapq.heappop(self.heap)
            if self.preserve_tos and self._tos_sent.get(out) != tos:
                level, _, send_opt = _tos_sockopts(out.family)
                try:
                    out.setsockopt(level, send_opt, tos)
                    self._tos_sent[out] = tos
                except OSError:
                    pass
            try:
                if dest is None:
                    out.send(data)
                else:
                    out.sendto(data, dest)
            except OSError:
                direction.stats.send_errors += 1
                continue
            direction.stats.sent += 1
            if not is_copy:
                direction.stats.forwarded += 1

    def stats(self) -> dict:
        pending = {"up": 0, "down": 0}
        for entry in self.heap:
            pending[entry[2].name] += 1
        out = {}
        for d in (self.up, self.down):
            s = asdict(d.stats)
            s["pending"] = pending[d.name]
            out[d.name] = s
        out["timer_early_ms"] = round(self.early_s * 1000.0, 4)
        out["clients"] = len(self.by_client)
        out["rejected_clients"] = self.rejected_clients
        out["listen"] = list(self.address)
        out["config"] = {"up": asdict(self.up.imp), "down": asdict(self.down.imp)}
        return out

    def configure(self, cfg: dict) -> None:
        if "up" in cfg:
            self.up.imp = Impairment.from_dict(cfg["up"])
        if "down" in cfg:
            self.down.imp = Impairment.from_dict(cfg["down"])

    def close(self) -> None:
        for s in list(self.by_sock) + [self.listen_sock]:
            s.close()
        self.ep.close()

    def serve(self, max_seconds: float, control=None, reply=None) -> None:
        """Run until max_seconds, ``quit`` or EOF on the control stream."""
        end = time.monotonic() + max_seconds
        ctl_buf = b""
        ctl_fd = control.fileno() if control is not None else None
        while True:
            now = time.monotonic()
            if now >= end:
                return
            timeout = end - now
            wake_at = None
            if self.heap:
                wake_at = self.heap[0][0] - self.early_s
                timeout = min(timeout, max(0.0, wake_at - now))
            rlist = [self.ep.fileno()]
            if ctl_fd is not None:
                rlist.append(ctl_fd)
            ready, _, _ = select.select(rlist, [], [], timeout)
            if not ready and wake_at is not None and timeout > 0:
                lateness = min(max(time.monotonic() - wake_at, 0.0), 0.001)
                self.early_s += 0.05 * (lateness - self.early_s)
            # Send what is due first: reading a burst must not delay deliveries.
            self._send_due()
            for r in ready:
                if r == ctl_fd:
                    chunk = os.read(ctl_fd, 65536)
                    if not chunk:
                        return
                    ctl_buf += chunk
                    while b"\n" in ctl_buf:
                        line, ctl_buf = ctl_buf.split(b"\n", 1)
                        if self._command(line.decode().strip(), reply) == "quit":
                            return
                else:
                    for fd, _ev in self.ep.poll(0):
                        self._read(self.by_fd[fd])
            self._send_due()

    def _command(self, line: str, reply) -> str | None:
        cmd, _, arg = line.partition(" ")
        try:
            if cmd == "stats":
                _emit(reply, {"event": "stats", **self.stats()})
            elif cmd == "config":
                self.configure(json.loads(arg))
                _emit(reply, {"event": "config", "ok": True})
            elif cmd == "blackout":
                ms, _, flag = arg.partition(" ")
                if flag.strip() not in ("", "rebind"):
                    raise ValueError(f"blackout MS [rebind], got {arg!r}")
                self.blackout(float(ms), rebind=flag.strip() == "rebind")
                _emit(reply, {"event": "blackout", "ok": True, "ms": float(ms)})
            elif cmd == "quit":
                return "quit"
            elif cmd:
                _emit(reply, {"event": "error", "error": f"unknown command {cmd!r}"})
        except (ValueError, TypeError) as exc:
            _emit(reply, {"event": "error", "error": str(exc)})
        return None


def _emit(stream, obj: dict) -> None:
    if stream is not None:
        stream.write(json.dumps(obj) + "\n")
        stream.flush()


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.relay", description=__doc__.split("\n")[0])
    p.add_argument("--listen", type=_hostport, default=("127.0.0.1", 0),
                   help="HOST:PORT to listen on ([::1]:0 for IPv6); port 0 = ephemeral")
    p.add_argument("--upstream", type=_hostport, required=True, help="HOST:PORT to forward to")
    p.add_argument("--up", type=Impairment.parse, default=Impairment(),
                   help="client->upstream impairment, e.g. delay_ms=40,jitter_ms=10,loss_pct=2")
    p.add_argument("--down", type=Impairment.parse, default=Impairment(), help="upstream->client impairment")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--source", default=None, help="source address for the upstream sockets")
    p.add_argument("--max-seconds", type=float, default=120.0, help="hard lifetime limit")
    p.add_argument("--no-preserve-tos", dest="preserve_tos", action="store_false")
    p.add_argument("--stats-file", default=None, help="write final stats JSON here at exit")
    p.add_argument("--no-control", action="store_true", help="do not read commands from stdin")
    p.add_argument("--rt-priority", type=int, default=10,
                   help="SCHED_FIFO priority when permitted (0 = normal scheduling)")
    args = p.parse_args(argv)
    # one socket per client flow: allow as many open files as the hard limit does
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = MAX_CLIENTS + 64 if hard == resource.RLIM_INFINITY else min(hard, MAX_CLIENTS + 64)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    # A relay parked by the scheduler on a busy machine would add delay nobody
    # configured: run it real-time when we may (root). It sleeps in select().
    realtime = args.rt_priority > 0 and set_realtime(args.rt_priority)
    relay = Relay(args.listen, args.upstream, args.up, args.down, seed=args.seed,
                  preserve_tos=args.preserve_tos, source=args.source)
    _emit(sys.stdout, {"event": "ready", "listen": list(relay.address), "pid": os.getpid(),
                       "realtime": realtime})
    try:
        relay.serve(args.max_seconds, control=None if args.no_control else sys.stdin, reply=sys.stdout)
    except KeyboardInterrupt:
        pass
    finally:
        final = relay.stats()
        if args.stats_file:
            with open(args.stats_file, "w") as fh:
                json.dump(final, fh)
        try:
            _emit(sys.stdout, {"event": "final", **final})
        except (BrokenPipeError, ValueError):
            pass
        relay.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
