"""Client side of the reflector's TCP bandwidth protocol (see probes/reflector/bwservice.py).

:func:`transfer` runs N parallel TCP streams in one direction for a fixed time
and returns, per stream, a series of ``(t_s, cumulative_payload_bytes)``
samples taken at the receiver: the client for download, the server's REPORT
records for upload. :func:`window_mbps` (pure) turns those series into
application-payload throughput, 10^6 bit/s, over a window that leaves out the
first ``omit_s`` seconds of TCP slow start, as ``iperf3 --omit`` does.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field

from probes import addr
from probes.reflector import bwservice as P
from probes.result import is_local

SAMPLE_EVERY_S = 0.01          # receiver-side sampling of the byte counter
CONNECT_TIMEOUT_S = 5.0
HANDSHAKE_TIMEOUT_S = 10.0     # the whole handshake, not per recv


class BandwidthAuthError(RuntimeError):
    """The service refused us for a reason the user must fix (key, version)."""


@dataclass
class StreamOutcome:
    index: int
    samples: list[tuple[float, int]] = field(default_factory=list)   # (t_s, cumulative bytes)
    sent_bytes: int = 0
    error: str | None = None
    local: bool = False                  # the error is ours (probes.result.is_local), not the path's
    cc_applied: bool | None = None


@dataclass
class TransferOutcome:
    direction: str
    streams: list[StreamOutcome]
    planned_s: float
    stopped: bool = False

    @property
    def errors(self) -> list[str]:
        seen, out = set(), []
        for s in self.streams:
            if s.error and s.error not in seen:
                seen.add(s.error)
                out.append(s.error)
        return out

    @property
    def gaps(self) -> list[str]:
        """The errors that are ours (a source address not here, a key the
        reflector refuses, a congestion control we may not use)."""
        return [e for e in self.errors if any(s.local and s.error == e for s in self.streams)]


def interp_bytes(samples: list[tuple[float, int]], t: float) -> float:
    """Cumulative bytes at time ``t`` by linear interpolation (clamped at the ends)."""
    if not samples:
        return 0.0
    if t <= samples[0][0]:
        return float(samples[0][1])
    if t >= samples[-1][0]:
        return float(samples[-1][1])
    lo, hi = 0, len(samples) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if samples[mid][0] <= t:
            lo = mid
        else:
            hi = mid
    (t0, b0), (t1, b1) = samples[lo], samples[hi]
    return b0 + (b1 - b0) * (t - t0) / (t1 - t0) if t1 > t0 else float(b1)


def window_mbps(series: list[list[tuple[float, int]]], omit_s: float = 0.0
                ) -> tuple[float | None, float, int]:
    """Aggregate payload throughput of parallel streams over their common window.

    The window starts ``omit_s`` after the earliest stream start and ends when
    the first stream stopped delivering (so every stream is counted over the
    same interval). Returns (mbps or None if the window is empty, window_s, bytes).
    """
    series = [s for s in series if len(s) >= 2]
    if not series:
        return None, 0.0, 0
    t0 = min(s[0][0] for s in series) + omit_s
    t1 = min(s[-1][0] for s in series)
    if t1 - t0 <= 0.05:
        return None, max(0.0, t1 - t0), 0
    total = sum(interp_bytes(s, t1) - interp_bytes(s, t0) for s in series)
    return total * 8 / (t1 - t0) / 1e6, t1 - t0, int(total)


def _connect(target: addr.HostPort, source: str | None, interface: str | None,
             congestion: str | None) -> socket.socket:
    family, sockaddr = addr.resolve(target.host, target.port, socket.SOCK_STREAM, source)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        addr.bind_to_circuit(sock, source, interface)
        if congestion and not P.set_congestion(sock, congestion):
            raise PermissionError(f"congestion control {congestion!r} is not available "
                                  "(check tcp_available_congestion_control; non-root users get "
                                  "only tcp_allowed_congestion_control)")
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


def handshake(sock: socket.socket, hello: P.Hello, key: bytes | None,
              timeout_s: float = HANDSHAKE_TIMEOUT_S) -> P.Reply:
    """HELLO, (key proof,) REPLY; all of it within ``timeout_s``, however slowly a far end
    that is not a cutover reflector trickles its bytes."""
    deadline = time.monotonic() + timeout_s
    raw = hello.pack()
    sock.sendall(raw)
    reply = P.Reply.unpack(P.recv_exact(sock, P.REPLY_LEN, deadline))
    if reply.status == P.STATUS_AUTH_REQUIRED:
        if not key:
            raise BandwidthAuthError("the reflector requires a key (give --key-file)")
        sock.sendall(P.auth_mac(key, reply.nonce, raw))
        reply = P.Reply.unpack(P.recv_exact(sock, P.REPLY_LEN, deadline))
    if reply.status != P.STATUS_OK:
        text = P.STATUS_TEXT.get(reply.status, f"status {reply.status}")
        if reply.status in (P.STATUS_AUTH_FAILED, P.STATUS_BAD_VERSION):
            raise BandwidthAuthError(f"reflector refused the test: {text}")
        raise ConnectionError(f"reflector refused the test: {text}")
    return reply


def _run_stream(out: StreamOutcome, target: addr.HostPort, direction: int, count: int,
                duration_s: float, token: bytes, key: bytes | None, source: str | None,
                interface: str | None, congestion: str | None, stop: threading.Event,
                timeout_s: float) -> None:
    where = f"stream {out.index + 1}"
    try:
        sock = _connect(target, source, interface, congestion if direction == P.UP else None)
    except (OSError, addr.ResolveError) as exc:
        out.error = f"cannot connect to {target}: {exc.strerror if isinstance(exc, OSError) and exc.strerror else exc}"
        out.local = is_local(exc)
        return
    start = time.monotonic()
    try:
        hello = P.Hello(direction, out.index, count, int(duration_s * 1000), token,
                        congestion or "")
        reply = handshake(sock, hello, key)
        out.cc_applied = bool(reply.flags & P.FLAG_CC_APPLIED) if congestion else None
        granted_s = reply.granted_ms / 1000
        if direction == P.DOWN:
            _receive(sock, out, granted_s, stop, timeout_s, where)
        else:
            _send(sock, out, granted_s, stop, timeout_s, where)
    except BandwidthAuthError as exc:
        out.error, out.local = str(exc), True       # our key or version: ours to fix, not the path
    except (OSError, ConnectionError, P.ProtocolError) as exc:
        elapsed = time.monotonic() - start
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        out.error = f"{where}: {reason} after {elapsed:.1f} s of {duration_s:.1f} s"
        out.local = is_local(exc)
    finally:
        sock.close()


def _receive(sock: socket.socket, out: StreamOutcome, granted_s: float, stop: threading.Event,
             timeout_s: float, where: str) -> None:
    buf = bytearray(P.CHUNK_B)
    total = 0
    t_start = time.monotonic()
    out.samples.append((t_start, 0))
    last = t_start
    sock.settimeout(min(timeout_s, 5.0))
    while not stop.is_set():
        n = sock.recv_into(buf)
        now = time.monotonic()
        if n == 0:
            if now - t_start < granted_s - 0.25:     # the server stops only at its deadline
                out.error = (f"{where}: the reflector closed the connection after "
                             f"{now - t_start:.1f} s of {granted_s:.1f} s")
            break
        total += n
        if now - last >= SAMPLE_EVERY_S:
            out.samples.append((now, total))
            last = now
        if now - t_start > granted_s + timeout_s:
            break
    out.samples.append((time.monotonic(), total))


def _send(sock: socket.socket, out: StreamOutcome, granted_s: float, stop: threading.Event,
          timeout_s: float, where: str) -> None:
    """Send for granted_s while a second thread collects the server's REPORTs."""
    reader_done = threading.Event()
    report_err: list[str] = []

    def read_reports() -> None:
        pending = b""
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                recs, pending = P.unpack_reports(pending + chunk)
                out.samples.extend((t_ns / 1e9, b) for t_ns, b in recs)
        except OSError as exc:
            report_err.append(exc.strerror or str(exc))
        finally:
            reader_done.set()

    sock.settimeout(min(timeout_s, 5.0))
    reader = threading.Thread(target=read_reports, daemon=True)
    reader.start()
    payload = memoryview(os.urandom(P.CHUNK_B))
    t_start = time.monotonic()
    end = t_start + granted_s
    while time.monotonic() < end and not stop.is_set():
        if reader_done.is_set():       # server went away while we were sending
            raise ConnectionError(report_err[0] if report_err else "the reflector closed the connection")
        try:
            out.sent_bytes += sock.send(payload)
        except socket.timeout:
            continue
    sock.shutdown(socket.SHUT_WR)
    # the server's last REPORT arrives once the queue has drained
    reader.join(timeout=granted_s + timeout_s)
    if report_err:
        raise ConnectionError(report_err[0])
    if not out.samples or out.samples[-1][1] == 0:
        raise ConnectionError("no upload reports from the reflector")


def transfer(target: addr.HostPort, direction: str, streams: int, duration_s: float, *,
             key: bytes | None = None, source: str | None = None, interface: str | None = None,
             congestion: str | None = None, stop: threading.Event | None = None,
             timeout_s: float = 10.0) -> TransferOutcome:
    """Run ``streams`` parallel connections in ``direction`` ("down"/"up") for ``duration_s``."""
    stop = stop or threading.Event()
    token = os.urandom(16)
    dir_code = P.DOWN if direction == "down" else P.UP
    outs = [StreamOutcome(i) for i in range(streams)]
    threads = [threading.Thread(target=_run_stream, daemon=True, name=f"bw-{direction}-{i}",
                                args=(outs[i], target, dir_code, streams, duration_s, token, key,
                                      source, interface, congestion, stop, timeout_s))
               for i in range(streams)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + duration_s + 2 * timeout_s + 5
    for t in threads:
        t.join(timeout=max(0.1, deadline - time.monotonic()))
    for o, t in zip(outs, threads):
        if t.is_alive() and not o.error:
            o.error = f"stream {o.index + 1}: did not finish in time"
    return TransferOutcome(direction, outs, duration_s, stopped=stop.is_set())
