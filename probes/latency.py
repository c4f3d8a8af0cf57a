"""Latency probe: round-trip time by ICMP echo, with UDP and TCP fallbacks.

Methods (``method`` in the result says which one measured):

- ``icmp``: ICMP echo via ping3 (raw socket as root, or an unprivileged ICMP
  datagram socket where ``net.ipv4.ping_group_range`` allows it).
- ``udp``: one STAMP packet per sample to HOST:PORT (default 862) and its
  reflection; RTT with the reflector's dwell time removed. Works against
  ``cutover reflector`` or any STAMP/TWAMP-Light reflector.
- ``tcp``: time of a TCP handshake to HOST:PORT (default 862, where
  ``cutover reflector`` runs its TCP service). A refused connection (RST)
  still measures a round trip and counts as a reply.

``auto`` (default) tries ICMP; when ICMP needs privileges we lack, or every
echo times out (filtered), it falls back to UDP, then TCP, and records why in
``fallback_reason``. ping3's failure modes (None = timeout, False = error,
PermissionError, OSError for no route) become results with causes.
"""

from __future__ import annotations

import errno
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from probes.wire import stamp
from probes.voice import stats
from probes.addr import STAMP_PORT, AddressError, ResolveError, bind_to_circuit, parse_hostport, resolve
from probes.events import Emitter, ProgressCallback
from probes.result import BadInput, clean, is_local, local_error

METHODS = ("auto", "icmp", "udp", "tcp")
AUTO_GIVE_UP = 3          # auto: after this many timeouts in a row from the start, try the next method


@dataclass
class LatencyConfig:
    target: str                       # host, IP, or HOST:PORT (port used by udp/tcp)
    count: int = 10
    interval_s: float = 0.5
    timeout_s: float = 1.0            # per sample
    source: str | None = None
    interface: str | None = None
    method: str = "auto"
    port: int | None = None           # udp/tcp port (default: the target's, else 862)
    key: bytes | None = None          # STAMP key for the udp method against a keyed reflector


@dataclass
class LatencyResult:
    target: str
    address: str | None = None
    method: str | None = None
    count: int = 0
    sent: int = 0
    received: int = 0
    loss_pct: float | None = None
    rtt_ms: dict[str, float] = field(default_factory=dict)
    ipdv_ms: dict[str, float] = field(default_factory=dict)
    samples_ms: list[float | None] = field(default_factory=list)
    fallback_reason: str | None = None
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    partial: bool = False
    measured: bool = False

    def to_dict(self) -> dict[str, Any]:
        d = clean(self)
        d = {"probe": "latency", **d}
        return d


class _Fatal(Exception):
    """This method cannot work here (permission, no route); try the next.
    ``local``: the cause is ours (no permission, a source address not here),
    not the path's (probes.result.is_local)."""

    def __init__(self, message: str, local: bool = False) -> None:
        super().__init__(message)
        self.local = local


def _parse_target(text: str) -> tuple[str, int | None]:
    """host | IP | [v6] | bare v6 -> (host, None); HOST:PORT | [v6]:PORT -> (host, port)."""
    t = (text or "").strip()
    if not t:
        raise AddressError("empty target; expected a host name, an IP address or HOST:PORT")
    if "]:" in t or (t.count(":") == 1 and not t.startswith("[")):
        hp = parse_hostport(t)
        return hp.host, hp.port
    return parse_hostport(t).host, None


def validate(config: LatencyConfig) -> tuple[str, int | None]:
    """Check arguments; a BadInput (probes.result) naming the config field for bad input."""
    try:
        host, port = _parse_target(config.target)
    except AddressError as exc:
        raise AddressError(f"target: {exc}", field="target") from None
    if config.method not in METHODS:
        raise BadInput(f"method {config.method!r}: expected one of {', '.join(METHODS)}", field="method")
    if not 1 <= config.count <= 100000:
        raise BadInput(f"count {config.count}: expected 1-100000", field="count")
    if not 0 <= config.interval_s <= 3600:
        raise BadInput(f"interval_s {config.interval_s:g}: expected 0-3600 s", field="interval_s")
    if not 0 < config.timeout_s <= 60:
        raise BadInput(f"timeout_s {config.timeout_s:g}: expected more than 0 s, at most 60 s", field="timeout_s")
    if config.port is not None and not 1 <= config.port <= 65535:
        raise BadInput(f"port {config.port}: expected 1-65535", field="port")
    return host, config.port or port


# ---------------------------------------------------------------- one sample per method

def _icmp_sample(ip: str, cfg: LatencyConfig, seq: int) -> float | None:
    import ping3
    try:
        r = ping3.ping(ip, timeout=cfg.timeout_s, unit="ms", src_addr=cfg.source or "",
                       interface=cfg.interface or "", seq=seq & 0xFFFF)
    except PermissionError:
        raise _Fatal("ICMP needs root or net.ipv4.ping_group_range including this user", local=True) from None
    except OSError as exc:
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL):
            raise _Fatal(f"ICMP: {exc.strerror}", local=is_local(exc)) from None
        raise _Fatal(f"ICMP failed: {exc.strerror or exc}", local=is_local(exc)) from None
    if r is None:
        return None                       # timeout
    if r is False:
        raise _Fatal("ICMP error (host unreachable or unknown)")
    return float(r)


class _UdpStamp:
    STOP_POLL_S = 0.1     # a reply wait notices the stop event this often (SIGTERM: stop within a second)

    def __init__(self, ip: str, port: int, family: int, cfg: LatencyConfig,
                 stop: threading.Event | None = None) -> None:
        self.cfg = cfg
        self.stop = stop or threading.Event()
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            bind_to_circuit(self.sock, cfg.source, cfg.interface)
            self.sock.connect((ip, port))
        except OSError as exc:
            self.sock.close()
            raise _Fatal(f"UDP: {exc.strerror or exc}", local=is_local(exc)) from None
        self.refused = False

    def sample(self, seq: int) -> float | None:
        cfg = self.cfg
        pkt = stamp.encode_sender(stamp.SenderPacket(seq + 1, stamp.ntp_from_ns(time.time_ns()), ssid=0),
                                  cfg.key)
        t0 = time.perf_counter_ns()
        try:
            self.sock.send(pkt)
        except ConnectionRefusedError:
            self.refused = True
            return None
        except OSError as exc:
            raise _Fatal(f"UDP: {exc.strerror or exc}", local=is_local(exc)) from None
        deadline = t0 + int(cfg.timeout_s * 1e9)
        while True:
            left = (deadline - time.perf_counter_ns()) / 1e9
            if left <= 0:
                return None
            self.sock.settimeout(min(left, self.STOP_POLL_S))
            try:
                data = self.sock.recv(2048)
            except socket.timeout:
                if self.stop.is_set():
                    return None
                continue
            except ConnectionRefusedError:
                self.refused = True
                return None
            except OSError:
                return None
            t1 = time.perf_counter_ns()
            try:
                rp = stamp.decode_reflector(data, cfg.key)
            except stamp.StampDecodeError:
                continue
            if rp.sender_seq != seq + 1:
                continue                   # a late reply to an earlier sample
            dwell_ns = max(0, (rp.timestamp - rp.receive_timestamp)) * 1e9 / 2 ** 32
            if dwell_ns > (t1 - t0):
                dwell_ns = 0               # reflector clock nonsense: do not subtract
            return (t1 - t0 - dwell_ns) / 1e6

    def close(self) -> None:
        self.sock.close()


def _tcp_sample(ip: str, port: int, family: int, cfg: LatencyConfig) -> float | None:
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        bind_to_circuit(s, cfg.source, cfg.interface)
        s.settimeout(cfg.timeout_s)
        t0 = time.perf_counter_ns()
        try:
            s.connect((ip, port))
        except ConnectionRefusedError:
            pass                           # the RST came back: that is a round trip too
        except socket.timeout:
            return None
        except OSError as exc:
            if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
                raise _Fatal(f"TCP: {exc.strerror}") from None
            return None
        return (time.perf_counter_ns() - t0) / 1e6
    except _Fatal:
        raise
    except OSError as exc:
        raise _Fatal(f"TCP: {exc.strerror or exc}", local=is_local(exc)) from None
    finally:
        s.close()


# ---------------------------------------------------------------- the probe

def run(config: LatencyConfig, progress: ProgressCallback | None = None,
        stop: threading.Event | None = None) -> LatencyResult:
    host, port = validate(config)
    port = port or STAMP_PORT
    emit = Emitter("latency", progress)
    stop = stop or threading.Event()
    res = LatencyResult(target=config.target, count=config.count)
    try:
        family, sockaddr = resolve(host, port, source=config.source)
    except ResolveError as exc:
        res.errors.append(str(exc))
        return res
    ip = sockaddr[0]
    res.address = ip
    order = ["icmp", "udp", "tcp"] if config.method == "auto" else [config.method]
    reasons: list[str] = []
    # A method that failed on our side (no ICMP permission) is a gap only when
    # every method tried failed on our side: once one could send and got no
    # answer, the silence is the path's.
    all_local = True
    for method in order:
        samples, why, local = _run_method(method, ip, port, family, config, emit, stop)
        all_local = all_local and local
        replies = sum(1 for s in samples if s is not None)
        if replies or method == order[-1] or stop.is_set():
            res.method = method
            res.samples_ms = samples
            if why:
                res.errors.append(why)
            break
        reasons.append(f"{method}: {why or 'no replies'}")
        emit("warning", f"{method} gave no replies ({why or 'all timed out'}); trying the next method")
    if reasons:
        res.fallback_reason = "; ".join(reasons)
        if not any(s is not None for s in res.samples_ms):
            res.errors[:0] = reasons
    if all_local and res.errors:
        res.gaps = list(res.errors)
    if stop.is_set() and len(res.samples_ms) < config.count:
        local_error(res, "stopped before the last sample")
    got = [s for s in res.samples_ms if s is not None]
    res.sent = len(res.samples_ms)
    res.received = len(got)
    if res.sent:
        res.loss_pct = 100.0 * (res.sent - res.received) / res.sent
    if got:
        res.measured = True
        res.rtt_ms = stats.summary(got)
        res.ipdv_ms = stats.summary(stats.abs_ipdv(res.samples_ms), stats.IPDV_KEYS)
        res.partial = res.sent < config.count
    elif not res.errors:
        res.errors.append(f"no reply from {host} ({res.method}) within {config.timeout_s:g} s")
    emit("done", f"{res.method}: {res.received}/{res.sent} replies")
    return res


def _run_method(method: str, ip: str, port: int, family: int, cfg: LatencyConfig, emit: Emitter,
                stop: threading.Event) -> tuple[list[float | None], str | None, bool]:
    """(samples, why the method gave up or None, whether that cause is ours)."""
    samples: list[float | None] = []
    udp: _UdpStamp | None = None
    try:
        sample: Callable[[int], float | None]
        if method == "udp":
            udp = _UdpStamp(ip, port, family, cfg, stop)
            sample = udp.sample
        else:
            sample = {
                "icmp": lambda i: _icmp_sample(ip, cfg, i),
                "tcp": lambda i: _tcp_sample(ip, port, family, cfg),
            }[method]
        for i in range(cfg.count):
            if stop.is_set():
                break
            t_start = time.monotonic()
            samples.append(sample(i))
            emit("progress", f"{method} {i + 1}/{cfg.count}", fraction=(i + 1) / cfg.count)
            if cfg.method == "auto" and method != "tcp" and len(samples) == AUTO_GIVE_UP \
                    and all(x is None for x in samples) and cfg.count > AUTO_GIVE_UP:
                # filtered: don't spend count x timeout before trying the next method
                return samples, f"first {AUTO_GIVE_UP} {method.upper()} probes timed out", False
            if method != "icmp" and udp is not None and udp.refused and not any(
                    s is not None for s in samples):
                return samples, f"UDP port {port} unreachable (no reflector)", False
            if i + 1 < cfg.count:
                left = cfg.interval_s - (time.monotonic() - t_start)
                if left > 0:
                    stop.wait(left)
        return samples, None, stop.is_set()
    except _Fatal as exc:
        return samples, str(exc), exc.local
    finally:
        if udp is not None:
            udp.close()

