"""Real peers for cross-checking: irtt and iperf3 (Debian packages, scripts/sysdeps.sh).

    with irtt_server() as srv:                       # or irtt_server(ns=lab.ns("server"), host=...)
        r = irtt_client(srv.address, interval_ms=20, length_bytes=172, duration_s=3)
        r["ipdv_send_mean_ms"], r["loss_up_pct"], r["rtt_median_ms"]

    with iperf3_server(ns=lab.ns("server"), host=lab.addr("server")) as srv:
        r = iperf3_client(srv.address, duration_s=3, ns=lab.ns("client"), congestion="cubic")
        r["received_mbps"]

Every process is bounded: servers are killed by PID when the ``with`` ends
(and have a lifetime limit of their own), clients run under a timeout.
``ns`` is a namespace *name* (``lab.ns("server")``); None = the current namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Iterator

from ._lines import LineReader

NS_TO_MS = 1e-6


class PeerError(RuntimeError):
    pass


def peer_unavailable_reason(tool: str) -> str | None:
    if shutil.which(tool) is None:
        return f"{tool} not installed (run scripts/sysdeps.sh)"
    return None


def _rt_preexec() -> None:
    # Measuring peers get a higher CPU share when permitted (root): on a shared,
    # loaded machine irtt otherwise skips sends it is late for. Not SCHED_FIFO:
    # the Go runtime's spinning threads at real-time priority can starve the
    # relay and hang the test on 2 cores (seen).
    try:
        os.nice(-10)
    except OSError:
        pass


def _in_ns(ns: str | None, argv: list[str]) -> list[str]:
    return argv if ns is None else ["ip", "netns", "exec", ns, *argv]


def free_port(host: str = "127.0.0.1", ns: str | None = None, kind: int = socket.SOCK_DGRAM) -> int:
    """An unused port on host (in ns). Inside a fresh namespace nothing else binds."""
    if ns is not None:
        # a fresh test namespace has no other listeners: any high port is free
        return random.randint(20000, 39999)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class PeerServer:
    proc: subprocess.Popen
    address: tuple[str, int]
    log: list[str]


@contextlib.contextmanager
def _server(argv: list[str], ready_text: str, address: tuple[str, int],
            start_timeout_s: float = 10.0, realtime: bool = False) -> Iterator[PeerServer]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=_rt_preexec if realtime else None)
    log: list[str] = []
    reader = LineReader(proc.stdout.fileno())
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            line = reader.readline(max(0.0, deadline - time.monotonic()))
            if line is not None:
                log.append(line.rstrip())
                if ready_text in line:
                    break
                continue
            raise PeerError(f"server did not start ({' '.join(argv)}): " + " | ".join(log[-5:]))
        yield PeerServer(proc, address, log)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=3)
        proc.stdout.close()


# -- irtt ---------------------------------------------------------------------

@contextlib.contextmanager
def irtt_server(ns: str | None = None, host: str = "127.0.0.1", port: int | None = None,
                max_seconds: float = 120.0) -> Iterator[PeerServer]:
    """irtt server on host:port (free port if None); ``.address`` = (host, port)."""
    reason = peer_unavailable_reason("irtt")
    if reason:
        raise PeerError(reason)
    port = port or free_port(host, ns)
    argv = _in_ns(ns, ["timeout", "-s", "KILL", str(int(max_seconds)), "irtt", "server",
                       "-b", _fmt(host, port), "-i", "0", "--fill=rand", "--allow-fills=*"])
    with _server(argv, "ListenerStart", (host, port), realtime=True) as srv:
        yield srv


def _stat_ms(stats: dict, key: str, field: str) -> float | None:
    value = (stats.get(key) or {}).get(field)
    return None if value is None else value * NS_TO_MS


def parse_irtt(doc: dict) -> dict:
    """Flatten irtt's JSON (durations in nanoseconds) into ms / percent figures.

    irtt reports every duration in integer nanoseconds: ``*_ms = ns * 1e-6``.
    ``ipdv_send``/``ipdv_receive`` are irtt's per-direction IPDV statistics,
    computed from the absolute difference of one-way delays of consecutive
    packets (client->server = send = "up", server->client = receive = "down");
    their ``mean`` is the mean |IPDV|. One-way delays mix two clocks, but IPDV
    cancels the offset. Loss: ``upstream_loss_percent`` (server counted what it
    received) and ``downstream_loss_percent``.
    """
    s = doc["stats"]
    return {
        "packets_sent": s.get("packets_sent"),
        "packets_received": s.get("packets_received"),
        "server_packets_received": s.get("server_packets_received"),
        "duplicates": s.get("duplicates"),
        "late_packets": s.get("late_packets"),
        "loss_pct": s.get("packet_loss_percent"),
        "loss_up_pct": s.get("upstream_loss_percent"),
        "loss_down_pct": s.get("downstream_loss_percent"),
        "rtt_mean_ms": _stat_ms(s, "rtt", "mean"),
        "rtt_median_ms": _stat_ms(s, "rtt", "median"),
        "rtt_min_ms": _stat_ms(s, "rtt", "min"),
        "rtt_max_ms": _stat_ms(s, "rtt", "max"),
        "rtt_stddev_ms": _stat_ms(s, "rtt", "stddev"),
        "send_delay_mean_ms": _stat_ms(s, "send_delay", "mean"),
        "receive_delay_mean_ms": _stat_ms(s, "receive_delay", "mean"),
        "ipdv_send_mean_ms": _stat_ms(s, "ipdv_send", "mean"),
        "ipdv_receive_mean_ms": _stat_ms(s, "ipdv_receive", "mean"),
        "ipdv_round_trip_mean_ms": _stat_ms(s, "ipdv_round_trip", "mean"),
        "ipdv_send_n": (s.get("ipdv_send") or {}).get("n"),
        "ipdv_receive_n": (s.get("ipdv_receive") or {}).get("n"),
        "raw": doc,
    }


def irtt_client(target: tuple[str, int], interval_ms: float = 20, length_bytes: int = 172,
                duration_s: float = 3, ns: str | None = None, dscp: int = 0,
                wait_ms: float = 500, extra: list[str] | None = None, realtime: bool = True) -> dict:
    """Run an irtt test and return :func:`parse_irtt` of its JSON output.

    ``length_bytes`` is irtt's packet length including its headers (UDP payload).
    Waits ``wait_ms`` after the last send for late replies. ``realtime``: run irtt
    at nice -10 (root only) so its send timer is kept on a loaded machine.
    """
    reason = peer_unavailable_reason("irtt")
    if reason:
        raise PeerError(reason)
    with tempfile.TemporaryDirectory(prefix="cutl-irtt-") as tmp:
        out = os.path.join(tmp, "irtt.json")
        argv = _in_ns(ns, ["irtt", "client", "-i", f"{interval_ms}ms", "-l", str(length_bytes),
                           "-d", f"{duration_s}s", f"--wait={wait_ms}ms", "--fill=rand", "-Q",
                           f"--dscp={dscp}", "--timeouts=500ms,1s,2s", "-o", out,
                           *(extra or []), _fmt(*target)])
        try:
            cp = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + wait_ms / 1000 + 20,
                                preexec_fn=_rt_preexec if realtime else None)
        except subprocess.TimeoutExpired as exc:
            raise PeerError(f"irtt client timed out: {' '.join(argv)}") from exc
        if cp.returncode != 0 or not os.path.exists(out):
            raise PeerError(f"irtt client failed ({cp.returncode}): {cp.stderr.strip()[-300:]}")
        with open(out) as fh:
            return parse_irtt(json.load(fh))


# -- iperf3 -------------------------------------------------------------------

@contextlib.contextmanager
def iperf3_server(ns: str | None = None, host: str = "127.0.0.1", port: int | None = None,
                  max_seconds: float = 120.0) -> Iterator[PeerServer]:
    """iperf3 server (serves several tests one after the other); ``.address`` = (host, port)."""
    reason = peer_unavailable_reason("iperf3")
    if reason:
        raise PeerError(reason)
    port = port or free_port(host, ns, socket.SOCK_STREAM)
    argv = _in_ns(ns, ["timeout", "-s", "KILL", str(int(max_seconds)), "iperf3", "-s", "-B", host,
                       "-p", str(port), "--forceflush"])
    with _server(argv, "Server listening", (host, port)) as srv:
        yield srv


def parse_iperf3(doc: dict) -> dict:
    """Flatten iperf3 -J output. Rates are application payload (goodput), Mbit/s = bps / 1e6."""
    if doc.get("error"):
        raise PeerError(f"iperf3: {doc['error']}")
    end = doc.get("end", {})
    protocol = doc.get("start", {}).get("test_start", {}).get("protocol", "TCP")
    out: dict = {"raw": doc, "protocol": protocol}
    out["sent_mbps"] = end.get("sum_sent", {}).get("bits_per_second", 0) / 1e6
    out["received_mbps"] = end.get("sum_received", end.get("sum", {})).get("bits_per_second", 0) / 1e6
    if protocol == "TCP":
        out["retransmits"] = end.get("sum_sent", {}).get("retransmits")
        senders = [s.get("sender", {}) for s in end.get("streams") or []]
        rtts = [s["mean_rtt"] for s in senders if s.get("mean_rtt")]
        # iperf3 reports TCP RTT in microseconds (only on the side that sends)
        out["mean_rtt_ms"] = (sum(rtts) / len(rtts) / 1000.0) if rtts else None
        out["max_rtt_ms"] = max((s.get("max_rtt", 0) for s in senders), default=0) / 1000.0 or None
    else:
        r = end.get("sum_received", end.get("sum", {}))
        out["jitter_ms"] = r.get("jitter_ms")
        out["lost_pct"] = r.get("lost_percent")
        out["lost_packets"] = r.get("lost_packets")
        out["packets"] = r.get("packets")
    out["congestion"] = end.get("sender_tcp_congestion")
    return out


def iperf3_client(target: tuple[str, int], duration_s: float = 3, reverse: bool = False,
                  udp: bool = False, rate_mbit: float | None = None, congestion: str | None = "cubic",
                  streams: int = 1, omit_s: float = 1, length_bytes: int | None = None,
                  ns: str | None = None, extra: list[str] | None = None) -> dict:
    """Run one iperf3 test (JSON) and return :func:`parse_iperf3` of it.

    ``reverse``: server sends (download). ``omit_s`` skips TCP slow start in the
    figures. ``congestion`` sets TCP_CONGESTION per socket (``-C``; cubic is
    allowed for root even where the namespace sysctl list is limited; the default
    BBR hides bufferbloat, docs/lab.md, "What this kind of machine does"). ``udp`` needs ``rate_mbit``.
    """
    reason = peer_unavailable_reason("iperf3")
    if reason:
        raise PeerError(reason)
    argv = ["iperf3", "-c", target[0], "-p", str(target[1]), "-t", str(duration_s), "-J",
            "-P", str(streams)]
    if omit_s:
        argv += ["-O", str(omit_s)]
    if reverse:
        argv.append("-R")
    if udp:
        argv += ["-u", "-b", f"{rate_mbit or 1}M"]
    elif congestion:
        argv += ["-C", congestion]
    if length_bytes:
        argv += ["-l", str(length_bytes)]
    argv = _in_ns(ns, argv + list(extra or []))
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + omit_s + 20)
    except subprocess.TimeoutExpired as exc:
        raise PeerError(f"iperf3 client timed out: {' '.join(argv)}") from exc
    try:
        doc = json.loads(cp.stdout)
    except json.JSONDecodeError as exc:
        raise PeerError(f"iperf3 client failed ({cp.returncode}): {cp.stderr.strip()[-300:]}") from exc
    return parse_iperf3(doc)
