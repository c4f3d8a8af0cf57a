"""SIP reachability: an OPTIONS request over UDP, TCP or TLS.

Flow: parse the URI (probes.wire.sip_message) -> RFC 3263 targets (probes.sip_resolve)
-> try each target in order until one gives a final response. A transport
failure (timeout, refused, TLS handshake) moves on to the next target, as
RFC 3263 §4.3 says; any final response stops.

UDP retransmission is RFC 3261's non-INVITE client transaction (§17.1.2):
Timer E starts at T1 = 500 ms and doubles up to T2 = 4 s (T2 at once after a
provisional response); Timer F = 64*T1 = 32 s ends it, or ``timeout_s`` if
shorter. ``rtt_ms`` runs from the first transmission to the final response;
when a retransmission was needed (``retransmissions`` > 0) it includes the
lost attempt's wait (Karn's ambiguity), so read it with that count.

Outcome (the CLI's exit code): a 2xx -> reachable and willing (0); any other
final response -> reachable but refused, e.g. 403/404/405/503 (1); nothing
answered, connection refused, ICMP unreachable, TLS failure -> not measured (3).
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from probes.addr import bind_to_circuit
from probes.events import Emitter, ProgressCallback
from probes.result import BadInput, clean, is_local, local_error
from probes.wire.sip_message import (AlgVerdict, build_options, compare, cseq_matches, message_length,
                                SipUriError, parse_response, parse_uri)
from probes.sip_resolve import DnsLookup, DnsPythonLookup, Target, resolve

T1_S = 0.5
T2_S = 4.0
TIMER_F_S = 64 * T1_S
MAX_TARGETS = 8             # RFC 3263 lists can be long; a probe tries a bounded number


@dataclass
class SipConfig:
    uri: str
    transport: str | None = None     # force udp | tcp | tls
    timeout_s: float = 8.0           # per target, capped at Timer F
    insecure: bool = False           # TLS: do not verify the certificate
    ca_file: str | None = None       # TLS: trust this CA (PEM) instead of the system store
    source: str | None = None
    interface: str | None = None
    dns: DnsLookup | None = None     # tests inject a stub resolver


@dataclass
class Attempt:
    transport: str
    host: str
    port: int
    address: str
    outcome: str                     # answered | timeout | refused | tls-error | error
    status_code: int | None = None
    reason: str | None = None
    rtt_ms: float | None = None
    retransmissions: int = 0
    provisional: list[int] = field(default_factory=list)
    error: str | None = None


@dataclass
class SipResult:
    target: str
    transport: str | None = None
    address: str | None = None
    status_code: int | None = None
    reason: str | None = None
    rtt_ms: float | None = None
    retransmissions: int = 0
    alg_suspected: bool | None = None
    alg_evidence: list[str] = field(default_factory=list)
    nat_detected: bool | None = None
    public_address: str | None = None
    allow: list[str] = field(default_factory=list)
    supported: list[str] = field(default_factory=list)
    server: str | None = None
    tls: dict | None = None
    targets_tried: list[Attempt] = field(default_factory=list)
    resolution: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    partial: bool = False
    measured: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def to_dict(self) -> dict:
        d = clean(self)
        d["probe"] = "sip"
        d["reachable"] = self.status_code is not None
        return d


class _Failure(Exception):
    """``local``: the cause is ours (probes.result.is_local), not the path's."""

    def __init__(self, outcome: str, message: str, local: bool = False) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.local = local


def validate(config: SipConfig):
    """The parsed URI; bad input -> BadInput (probes.result) naming the config field (exit 2)."""
    try:
        uri = parse_uri(config.uri)
    except SipUriError as exc:
        raise SipUriError(f"uri: {exc}", field="uri") from None
    if config.transport and config.transport not in ("udp", "tcp", "tls"):
        raise BadInput(f"transport {config.transport!r}: expected udp, tcp or tls", field="transport")
    if config.timeout_s <= 0:
        raise BadInput(f"timeout_s {config.timeout_s:g}: expected > 0 s", field="timeout_s")
    if config.ca_file:
        try:
            open(config.ca_file, "rb").close()
        except OSError as exc:
            raise BadInput(f"ca_file {config.ca_file}: {exc.strerror}", field="ca_file") from None
    return uri


def run(config: SipConfig, progress: ProgressCallback | None = None,
        stop: threading.Event | None = None) -> SipResult:
    """Probe one SIP URI. Raises BadInput (:func:`validate`) only for a malformed URI/option."""
    emit = Emitter("sip", progress)
    uri = validate(config)
    result = SipResult(target=str(uri))
    stop = stop or threading.Event()
    res = resolve(uri, config.dns or DnsPythonLookup(), config.transport)
    result.resolution, result.errors = res.steps, list(res.errors)
    if not res.targets:
        result.gaps = list(res.gaps)          # e.g. no resolver configured here
        if res.gaps:
            local_error(result, f"no SIP server found for {uri.host}")
        else:
            result.errors.append(f"no SIP server found for {uri.host}")
        return result
    timeout_s = max(0.1, min(config.timeout_s, TIMER_F_S))
    for target in res.targets[:MAX_TARGETS]:
        if stop.is_set():
            result.partial = True
            local_error(result, "stopped")
            break
        emit("start", f"OPTIONS to {target.address}:{target.port} over {target.transport.upper()}")
        attempt = Attempt(target.transport, target.host, target.port, target.address, "error")
        result.targets_tried.append(attempt)
        try:
            resp, req, local, rtt_s, rtx, prov, tls = _transact(uri, target, config, timeout_s, stop)
        except _Failure as exc:
            attempt.outcome, attempt.error = exc.outcome, str(exc)
            result.errors.append(f"{target.address}:{target.port}/{target.transport}: {exc}")
            if exc.local:            # e.g. a source address not on this machine
                result.gaps.append(result.errors[-1])
            emit("warning", str(exc))
            continue
        attempt.outcome, attempt.status_code, attempt.reason = "answered", resp.status_code, resp.reason
        attempt.rtt_ms, attempt.retransmissions, attempt.provisional = rtt_s * 1000, rtx, prov
        verdict: AlgVerdict = compare(req, resp, *local)
        result.transport, result.address = target.transport, _fmt(target.address, target.port)
        result.status_code, result.reason = resp.status_code, resp.reason
        result.rtt_ms, result.retransmissions = rtt_s * 1000, rtx
        result.alg_suspected, result.alg_evidence = verdict.alg_suspected, verdict.evidence
        result.nat_detected, result.public_address = verdict.nat_detected, verdict.public_address
        result.allow = [a.upper() for a in resp.all("allow")]
        result.supported = resp.all("supported")
        result.server = resp.get("server") or resp.get("user-agent")
        result.tls = tls
        result.measured = True
        emit("done", f"{resp.status_code} {resp.reason} in {rtt_s * 1000:.1f} ms")
        break
    if not result.measured and result.targets_tried:
        result.transport = result.targets_tried[0].transport
    return result


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _socket(target: Target, kind: int, config: SipConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    sock = socket.socket(family, kind)
    try:
        bind_to_circuit(sock, config.source, config.interface)
    except OSError as exc:
        sock.close()
        raise _Failure("error", str(exc), is_local(exc)) from None
    return sock


def _transact(uri, target: Target, config: SipConfig, timeout_s: float, stop: threading.Event):
    if target.transport == "udp":
        return _udp(uri, target, config, timeout_s, stop)
    return _stream(uri, target, config, timeout_s, stop)


def _route_source(target: Target) -> str:
    """The local address the kernel routes ``target`` from (a connect() sends nothing)."""
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect((target.address, target.port))
        return probe.getsockname()[0]


def _udp(uri, target, config, timeout_s, stop):
    # Unconnected, so an answer from another port of the server (RFC 3261 §18.2.2 allows
    # it; some SBCs answer from a different socket) is still received; IP_RECVERR makes
    # ICMP port unreachable surface as ECONNREFUSED all the same.
    sock = _socket(target, socket.SOCK_DGRAM, config)
    try:
        v6 = ":" in target.address
        try:
            if v6:
                sock.setsockopt(socket.IPPROTO_IPV6, getattr(socket, "IPV6_RECVERR", 25), 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_RECVERR", 11), 1)   # Linux values
            if not config.source:
                sock.bind((_route_source(target), 0))
        except OSError as exc:
            raise _Failure("error", f"cannot send to {target.address}: {exc.strerror}", is_local(exc)) from None
        local = sock.getsockname()[:2]
        dest = (target.address, target.port)
        req = build_options(uri, "udp", local[0], local[1])
        start = time.monotonic()
        deadline = start + timeout_s
        interval, next_send, rtx, prov = T1_S, start, -1, []
        while True:
            now = time.monotonic()
            if now >= deadline or stop.is_set():
                raise _Failure("timeout", f"no answer over UDP within {timeout_s:g} s "
                                          f"({rtx + 1} transmissions, RFC 3261 Timer E/F)")
            if now >= next_send:
                try:
                    sock.sendto(req.text, dest)
                except ConnectionRefusedError:
                    raise _Failure("refused", _refused_udp(target)) from None
                except OSError as exc:
                    raise _Failure("error", f"send failed: {exc.strerror}", is_local(exc)) from None
                rtx += 1
                next_send = now + interval
                interval = min(interval * 2, T2_S)
            wait = max(0.0, min(next_send, deadline, now + 0.2) - time.monotonic())
            ready, _, _ = select.select([sock], [], [], wait)
            if not ready:
                continue
            try:
                data, _peer = sock.recvfrom(65535)
            except ConnectionRefusedError:
                raise _Failure("refused", _refused_udp(target)) from None
            except OSError as exc:
                raise _Failure("error", f"receive failed: {exc.strerror}", is_local(exc)) from None
            resp = parse_response(data)
            if resp is None or not cseq_matches(resp, req):
                continue   # stray traffic or another transaction
            if resp.status_code < 200:
                prov.append(resp.status_code)
                interval = T2_S          # §17.1.2.2: after a provisional, retransmit every T2
                next_send = min(next_send, time.monotonic() + T2_S)
                continue
            return resp, req, local, time.monotonic() - start, rtx, prov, None
    finally:
        sock.close()


def _refused_udp(target: Target) -> str:
    return (f"ICMP port unreachable from {target.address}: nothing listens on UDP port "
            f"{target.port}")


def _stream(uri, target, config, timeout_s, stop):
    sock = _socket(target, socket.SOCK_STREAM, config)
    start = time.monotonic()
    deadline = start + timeout_s
    tls_info = None
    conn: socket.socket = sock
    try:
        sock.settimeout(timeout_s)
        try:
            sock.connect((target.address, target.port))
        except ConnectionRefusedError:
            raise _Failure("refused", f"connection refused by {target.address}: nothing listens on "
                                      f"TCP port {target.port}") from None
        except socket.timeout:
            raise _Failure("timeout", f"TCP connect to {_fmt(target.address, target.port)} timed out "
                                      f"after {timeout_s:g} s") from None
        except OSError as exc:
            raise _Failure("error", f"TCP connect to {_fmt(target.address, target.port)}: "
                                    f"{exc.strerror}", is_local(exc)) from None
        if target.transport == "tls":
            conn, tls_info = _tls_wrap(sock, uri, config, max(0.1, deadline - time.monotonic()))
        local = conn.getsockname()[:2]
        req = build_options(uri, target.transport, local[0], local[1])
        conn.sendall(req.text)
        buf = b""
        prov = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or stop.is_set():
                raise _Failure("timeout", f"no SIP answer over {target.transport.upper()} within "
                                          f"{timeout_s:g} s (connection open)")
            conn.settimeout(min(left, 0.5))
            try:
                chunk = conn.recv(65535)
            except socket.timeout:
                continue
            except (ssl.SSLError, OSError) as exc:
                raise _Failure("error", f"connection failed while waiting: {exc}") from None
            if not chunk:
                raise _Failure("error", f"{_fmt(target.address, target.port)} closed the connection "
                                        "without a SIP response")
            buf += chunk
            while (n := message_length(buf)) is not None:
                msg, buf = buf[:n], buf[n:]
                resp = parse_response(msg)
                if resp is None or not cseq_matches(resp, req):
                    continue
                if resp.status_code < 200:
                    prov.append(resp.status_code)
                    continue
                return resp, req, local, time.monotonic() - start, 0, prov, tls_info
            if len(buf) > 1 << 20:
                raise _Failure("error", "more than 1 MiB without a complete SIP message")
    finally:
        conn.close()


def _tls_wrap(sock, uri, config: SipConfig, timeout_s: float):
    """TLS per RFC 5922: verify the certificate against the URI's domain (not the SRV target)."""
    ctx = ssl.create_default_context(cafile=config.ca_file) if config.ca_file else ssl.create_default_context()
    if config.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    server_name = None if uri.host_is_ip else uri.host
    sock.settimeout(timeout_s)
    try:
        conn = ctx.wrap_socket(sock, server_hostname=server_name or uri.host)
    except ssl.SSLCertVerificationError as exc:
        hint = ("pass --ca FILE with the CA that issued it, or --insecure to skip verification"
                if not config.ca_file else f"it was not issued by the CA in {config.ca_file}")
        raise _Failure("tls-error", f"TLS certificate of {uri.host} not trusted: "
                                    f"{exc.verify_message or exc.reason}; {hint}") from None
    except ssl.SSLError as exc:
        raise _Failure("tls-error", f"TLS handshake with {uri.host} failed: {exc.reason or exc}") from None
    except socket.timeout:
        raise _Failure("timeout", f"TLS handshake with {uri.host} timed out") from None
    except OSError as exc:
        raise _Failure("tls-error", f"TLS handshake with {uri.host} failed: {exc.strerror or exc}") from None
    cert = conn.getpeercert() if not config.insecure else None
    info: dict[str, Any] = {"version": conn.version(), "cipher": (conn.cipher() or [None])[0],
            "verified": not config.insecure}
    if cert:
        info["subject"] = ", ".join("=".join(x) for rdn in cert.get("subject", ()) for x in rdn)
        info["issuer"] = ", ".join("=".join(x) for rdn in cert.get("issuer", ()) for x in rdn)
        info["not_after"] = cert.get("notAfter")
    return conn, info
