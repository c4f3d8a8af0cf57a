"""A small SIP user agent for test calls: messages, digest auth, transport,
REGISTER, INVITE/ACK/CANCEL/BYE as caller, and auto-answer as callee.

Why our own and not a softphone: we need the timestamps of every step
(INVITE -> 100 -> 180/183 -> 200), the exact text the far end sent back (Via
received/rport, the Contact the registrar stored, the SDP c= address) and
two UAs in one process (call yourself: out through the trunk, back in on the
second account), none of which a softphone reports.

Scope, deliberately: every request goes to one first hop (the outbound proxy,
else the registrar, else the called URI's server, found by RFC 3263) and the
first hop loose-routes in-dialog requests; that is how trunk UAs configured
with an outbound proxy behave. UDP retransmits per RFC 3261 §17 (T1 500 ms,
doubling, T2 4 s for non-INVITE, INVITE until a provisional). Session timers
(RFC 4028) and re-INVITE/UPDATE from the far end are answered 200 with our
SDP; calls are short, so we never need to refresh ourselves.

Digest (RFC 3261 §22, RFC 8760 for SHA-256 and SHA-512/256, qop=auth per
RFC 7616 §3.4.1)::

    HA1 = H(username ":" realm ":" password)
    HA2 = H(method ":" digest-uri)
    response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)   (qop=auth)
    response = H(HA1 ":" nonce ":" HA2)                              (no qop, RFC 2069)

When a server offers several challenges (RFC 8760 §2.4: one per algorithm)
we answer the strongest we know: SHA-512-256, then SHA-256, then MD5.
"""

from __future__ import annotations

import hashlib
import queue
import re
import secrets
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from probes.addr import bind_to_circuit
from probes.result import is_local
from probes.rtp import RtpSession, Sdp, build_sdp, choose, parse_sdp
from probes.wire.sip_message import COMPACT, HeaderAccess, message_length, parse_via
from probes.sip_resolve import Target
from probes.sipaccount import Account

T1_S = 0.5
T2_S = 4.0
TIMER_B_S = 64 * T1_S
USER_AGENT = "cutover-call"


class SipError(Exception):
    """A transport failure: the outcome (timeout | refused | error) and a cause people read;
    ``local`` when the cause is ours (probes.result.is_local), not the path's."""

    def __init__(self, outcome: str, message: str, local: bool = False) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.local = local


# ---- messages ------------------------------------------------------------------------------

@dataclass
class SipMsg(HeaderAccess):
    method: str | None                  # requests
    uri: str | None
    status: int | None                  # responses
    reason: str
    headers: list[tuple[str, str]]      # (lower-case long name, value)
    body: bytes = b""
    source: tuple[str, int] | None = None

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def raw_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]

    @property
    def call_id(self) -> str:
        return (self.get("call-id") or "").strip()

    @property
    def cseq(self) -> tuple[int, str]:
        m = re.match(r"\s*(\d+)\s+(\S+)", self.get("cseq") or "")
        return (int(m.group(1)), m.group(2).upper()) if m else (-1, "")

    def tag(self, header: str) -> str | None:
        m = re.search(r";\s*tag=([^;>\s]+)", self.get(header) or "")
        return m.group(1) if m else None


def parse_message(data: bytes, source: tuple[str, int] | None = None) -> SipMsg | None:
    """A request or response; None for anything that is not SIP (keep-alive CRLF, junk)."""
    head, _sep, body = data.partition(b"\r\n\r\n")
    text = head.decode("utf-8", "replace").replace("\r\n", "\n")
    lines = text.lstrip("\n").split("\n")
    first = lines[0].strip()
    m = re.match(r"^SIP/2\.0\s+(\d{3})\s*(.*)$", first)
    r = re.match(r"^([A-Z]+)\s+(\S+)\s+SIP/2\.0$", first)
    if not m and not r:
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if sep:
            name = name.strip().lower()
            headers.append((COMPACT.get(name, name), value.strip()))
    if m:
        return SipMsg(None, None, int(m.group(1)), m.group(2).strip(), headers, body, source)
    if r is None:
        return None
    return SipMsg(r.group(1), r.group(2), None, "", headers, body, source)


def _bytes(start: str, headers: list[tuple[str, str]], body: bytes, content_type: str | None) -> bytes:
    lines = [start] + [f"{k}: {v}" for k, v in headers]
    if body:
        lines.append(f"Content-Type: {content_type or 'application/sdp'}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def build_response(req: SipMsg, status: int, reason: str, to_tag: str | None = None,
                   extra: list[tuple[str, str]] | None = None, body: bytes = b"") -> bytes:
    """A response copying Via (all, in order), From, To (+ our tag), Call-ID and CSeq (§8.2.6)."""
    headers = [("Via", v) for v in req.raw_all("via")]
    to = req.get("to") or ""
    if to_tag and ";tag=" not in to.replace(" ", "") and status > 100:
        to += f";tag={to_tag}"
    headers += [("From", req.get("from") or ""), ("To", to), ("Call-ID", req.call_id),
                ("CSeq", req.get("cseq") or ""), ("Server", USER_AGENT)]
    headers += extra or []
    return _bytes(f"SIP/2.0 {status} {reason}", headers, body, None)


# ---- digest authentication -------------------------------------------------------------------

HASHES: dict[str, Callable[[bytes], "hashlib._Hash"]] = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
if "sha512_256" in hashlib.algorithms_available:     # OpenSSL builds without it answer SHA-256 instead
    HASHES["SHA-512-256"] = lambda b: hashlib.new("sha512_256", b)
PREFERENCE = ("SHA-512-256", "SHA-256", "MD5")


@dataclass
class Challenge:
    header: str                 # www-authenticate | proxy-authenticate
    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: list[str] = field(default_factory=list)
    opaque: str | None = None
    stale: bool = False


def parse_challenge(header: str, value: str) -> Challenge | None:
    m = re.match(r"\s*Digest\s+(.*)$", value, re.I | re.S)
    if not m:
        return None
    params = {k.lower(): (q if q else t) for k, q, t in
              re.findall(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', m.group(1))}
    if "nonce" not in params:
        return None
    return Challenge(header, params.get("realm", ""), params["nonce"],
                     params.get("algorithm", "MD5").upper().replace("SHA-512/256", "SHA-512-256"),
                     [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()],
                     params.get("opaque"), params.get("stale", "").lower() == "true")


def pick_challenge(resp: SipMsg) -> Challenge | None:
    """The strongest digest challenge we can answer, or None (none offered, or only unknown algorithms)."""
    header = "proxy-authenticate" if resp.status == 407 else "www-authenticate"
    found = [c for v in resp.raw_all(header) if (c := parse_challenge(header, v))]
    usable = [c for c in found if c.algorithm.replace("-SESS", "") in HASHES]
    usable.sort(key=lambda c: PREFERENCE.index(c.algorithm.replace("-SESS", "")))
    return usable[0] if usable else None


def digest_response(ch: Challenge, method: str, uri: str, username: str, password: str,
                    cnonce: str, nc: int = 1) -> str:
    """The response= value (hex) of RFC 7616 §3.4.1 for qop=auth or no qop."""
    algo = ch.algorithm.replace("-SESS", "")
    h = lambda s: HASHES[algo](s.encode()).hexdigest()   # noqa: E731
    ha1 = h(f"{username}:{ch.realm}:{password}")
    if ch.algorithm.endswith("-SESS"):
        ha1 = h(f"{ha1}:{ch.nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    if "auth" in ch.qop:
        return h(f"{ha1}:{ch.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return h(f"{ha1}:{ch.nonce}:{ha2}")


def authorization(ch: Challenge, method: str, uri: str, username: str, password: str,
                  cnonce: str | None = None, nc: int = 1) -> tuple[str, str]:
    """(header name, value) answering ``ch``."""
    cnonce = cnonce or secrets.token_hex(8)
    resp = digest_response(ch, method, uri, username, password, cnonce, nc)
    parts = [f'username="{username}"', f'realm="{ch.realm}"', f'nonce="{ch.nonce}"', f'uri="{uri}"',
             f'response="{resp}"', f"algorithm={ch.algorithm}"]
    if "auth" in ch.qop:
        parts += ["qop=auth", f"nc={nc:08x}", f'cnonce="{cnonce}"']
    if ch.opaque is not None:
        parts.append(f'opaque="{ch.opaque}"')
    name = "Proxy-Authorization" if ch.header == "proxy-authenticate" else "Authorization"
    return name, "Digest " + ", ".join(parts)


# ---- transport -------------------------------------------------------------------------------

def fmt_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Channel:
    """One SIP socket toward the first hop: UDP (unconnected, so replies from
    another port arrive too) or TCP (one connection; the server sends its
    requests back over it, RFC 5626 style)."""

    def __init__(self, target: Target, source: str | None = None, interface: str | None = None,
                 connect_timeout_s: float = 5.0, server_name: str | None = None, ca_file: str | None = None,
                 insecure: bool = False) -> None:
        self.target = target
        self.transport = target.transport
        self.dest = (target.address, target.port)
        self.tls: dict | None = None
        family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
        kind = socket.SOCK_DGRAM if self.transport == "udp" else socket.SOCK_STREAM
        self.sock = socket.socket(family, kind)
        self._lock = threading.Lock()
        self._buf = b""
        try:
            bind_to_circuit(self.sock, source, interface)
            if self.transport == "udp":
                if not source:
                    with socket.socket(family, socket.SOCK_DGRAM) as probe:
                        probe.connect(self.dest)
                        self.sock.bind((probe.getsockname()[0], 0))
            else:
                # no Nagle: an ACK then a re-sent INVITE would otherwise wait for the
                # server's delayed ACK (~40 ms of fake post-dial delay, measured)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock.settimeout(connect_timeout_s)
                self.sock.connect(self.dest)
                if self.transport == "tls":
                    self._tls_wrap(server_name or target.host, ca_file, insecure, connect_timeout_s)
                self.sock.settimeout(5.0)       # reads happen only once select() says data is there
        except SipError:
            self.sock.close()
            raise
        except ConnectionRefusedError:
            self.sock.close()
            raise SipError("refused", f"connection refused by {fmt_hostport(*self.dest)}: nothing listens "
                                      f"on TCP port {target.port}") from None
        except socket.timeout:
            self.sock.close()
            raise SipError("timeout", f"{self.transport.upper()} connect to {fmt_hostport(*self.dest)} "
                                      "timed out") from None
        except OSError as exc:
            self.sock.close()
            raise SipError("error", f"cannot reach {fmt_hostport(*self.dest)}: {exc.strerror or exc}",
                           is_local(exc)) from None
        self.local = self.sock.getsockname()[:2]
        self.closed = False

    def _tls_wrap(self, server_name: str, ca_file: str | None, insecure: bool, timeout_s: float) -> None:
        """TLS per RFC 5922: the certificate must name the domain we asked for (the
        hop's URI host), not whatever SRV pointed at."""
        import ipaddress
        ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
        if insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        try:
            ipaddress.ip_address(server_name)
            sni = None
        except ValueError:
            sni = server_name
        try:
            self.sock = ctx.wrap_socket(self.sock, server_hostname=sni or server_name)
        except ssl.SSLCertVerificationError as exc:
            hint = ("pass --ca FILE with the CA that issued it, or --insecure to skip verification"
                    if not ca_file else f"it was not issued by the CA in {ca_file}")
            raise SipError("tls-error", f"TLS certificate of {server_name} not trusted: "
                                        f"{exc.verify_message or exc.reason}; {hint}") from None
        except ssl.SSLError as exc:
            raise SipError("tls-error", f"TLS handshake with {server_name} failed: {exc.reason or exc}") from None
        self.tls = {"version": self.sock.version(), "cipher": (self.sock.cipher() or [None])[0],
                    "verified": not insecure}

    def send(self, data: bytes, dest: tuple[str, int] | None = None) -> None:
        with self._lock:
            try:
                if self.transport == "udp":
                    self.sock.sendto(data, dest or self.dest)
                else:
                    self.sock.sendall(data)
            except ConnectionRefusedError:
                raise SipError("refused", f"ICMP port unreachable from {fmt_hostport(*self.dest)}: "
                                          "nothing listens there") from None
            except OSError as exc:
                raise SipError("error", f"send to {fmt_hostport(*self.dest)} failed: {exc.strerror}",
                               is_local(exc)) from None

    def recv(self, timeout_s: float) -> list[SipMsg]:
        if self.closed:
            time.sleep(timeout_s)
            return []
        # TLS may hold decrypted bytes that select() cannot see
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0
        try:
            ready = pending or select.select([self.sock], [], [], timeout_s)[0]
        except (OSError, ValueError):
            return []
        if not ready:
            return []
        try:
            if self.transport == "udp":
                data, src = self.sock.recvfrom(65535)
                msg = parse_message(data, src[:2])
                return [msg] if msg else []
            with self._lock:                 # one SSL object: never read and write at once
                chunk = self.sock.recv(65535)
        except socket.timeout:
            return []
        except OSError:
            return []
        if not chunk:
            self.closed = True
            return []
        self._buf += chunk
        out = []
        self._buf = self._buf.lstrip(b"\r\n")          # RFC 5626 keep-alives
        while (n := message_length(self._buf)) is not None:
            msg = parse_message(self._buf[:n], self.dest)
            self._buf = self._buf[n:].lstrip(b"\r\n")
            if msg:
                out.append(msg)
        return out

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


# ---- the user agent --------------------------------------------------------------------------

@dataclass
class AnswerPolicy:
    """How our UA answers incoming calls (call yourself, porting check, tests)."""
    mode: str = "answer"             # answer | busy | ring (never answer)
    answer_after_s: float = 0.2      # ringing before 200 (a real post-dial delay to measure)
    send_rtp: bool = True
    media_s: float = 60.0            # cap on media we send; BYE ends it earlier
    encodings: tuple[str, ...] = ("PCMU", "PCMA", "G722", "G729", "opus")
    ptime_ms: int = 20
    media_port: int | None = None                    # RTP on this port (else an even free one)
    sdp_address: tuple[str, int] | None = None       # advertise this in SDP (a media relay / static NAT)
    symmetric_rtp: bool = True                       # send back to where RTP comes from, as SBCs do


@dataclass
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str | None
    local_uri: str
    remote_uri: str
    remote_target: str
    role: str                                    # uac | uas
    cseq: int = 1
    route_set: list[str] = field(default_factory=list)
    media: RtpSession | None = None
    offer: Sdp | None = None                     # the SDP offer as it arrived (uas) / answer (uac)
    local_sdp: bytes = b""
    encoding: str | None = None
    confirmed: bool = False
    ended_by_remote: bool = False
    received_at: float = 0.0                     # monotonic time the INVITE arrived (uas)
    request_uri: str | None = None
    from_header: str | None = None
    to_header: str | None = None
    via_received: dict = field(default_factory=dict)
    ack: bytes | None = None
    final_status: int | None = None
    invite: SipMsg | None = None                 # the INVITE we answer (uas): 487 after CANCEL


class UserAgent:
    """One account on one channel. A thread reads the channel: responses go to
    the waiting client transaction, requests are answered here (auto-answer)."""

    def __init__(self, account: Account, channel: Channel, media_host: str, *,
                 answer: AnswerPolicy | None = None, warn: Callable[[str], None] | None = None) -> None:
        self.account, self.ch = account, channel
        self.media_host = media_host
        self.answer = answer or AnswerPolicy(mode="busy")
        self.warn = warn or (lambda _m: None)
        self.local_host, self.local_port = channel.local
        self.tp = channel.transport
        self.contact_uri = f"sip:{account.username}@{fmt_hostport(self.local_host, self.local_port)}" \
                           + ("" if self.tp == "udp" else f";transport={self.tp}")
        self.dialogs: dict[str, Dialog] = {}
        self.incoming: list[Dialog] = []
        self._waiters: dict[tuple, queue.Queue] = {}
        self._wlock = threading.Lock()
        self._stop = threading.Event()
        self._reg_call_id = f"{secrets.token_hex(10)}@cutover"
        self._reg_cseq = 0
        self._reg_tag = secrets.token_hex(4)
        self._nc: dict[str, int] = {}
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"sipua-{account.username}")
        self._thread.start()

    # -- plumbing

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        for d in list(self.dialogs.values()):
            if d.media:
                d.media.stop()
        self.ch.close()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for msg in self.ch.recv(0.1):
                if msg.is_request:
                    try:
                        self._on_request(msg)
                    except SipError as exc:
                        self.warn(f"could not answer {msg.method}: {exc}")
                else:
                    self._on_response(msg)

    def _on_response(self, msg: SipMsg) -> None:
        num, method = msg.cseq
        with self._wlock:
            q = self._waiters.get((msg.call_id, num, method))
        if q is not None:
            q.put(msg)
            return
        d = self.dialogs.get(msg.call_id)
        if method == "INVITE" and msg.status and 200 <= msg.status < 300 and d and d.ack:
            self.ch.send(d.ack)                  # a retransmitted 200: our ACK got lost

    def _via(self, branch: str) -> str:
        return f"SIP/2.0/{self.tp.upper()} {fmt_hostport(self.local_host, self.local_port)};branch={branch};rport"

    def _auth(self, ch: Challenge, method: str, uri: str) -> tuple[str, str]:
        nc = self._nc.get(ch.nonce, 0) + 1
        self._nc[ch.nonce] = nc
        return authorization(ch, method, uri, self.account.auth_user, self.account.password(), nc=nc)

    def transaction(self, req: bytes, key: tuple, invite: bool, timeout_s: float,
                    stop: threading.Event, on_provisional: Callable[[SipMsg], None] | None = None,
                    give_up_at: float | None = None, on_give_up: Callable[[], None] | None = None
                    ) -> tuple[SipMsg | None, int]:
        """Send and wait for the final response: (response or None on timeout, retransmissions).

        ``give_up_at`` (monotonic): call ``on_give_up`` once then (CANCEL for a ringing INVITE)
        and keep waiting for the final response up to ``timeout_s`` more (8 s at most). ``stop``
        with a request sent and ``on_give_up`` pending: give up at once (the far end stops
        ringing) and wait 2 s for the final answer; otherwise ``stop`` returns at once.
        """
        q: queue.Queue = queue.Queue()
        with self._wlock:
            self._waiters[key] = q
        try:
            start = time.monotonic()
            deadline = start + timeout_s
            interval, next_send, rtx = T1_S, start, -1
            provisional = False
            winding_down = False
            while True:
                now = time.monotonic()
                if on_give_up and rtx >= 0 and ((give_up_at is not None and now >= give_up_at) or stop.is_set()):
                    winding_down = stop.is_set()
                    on_give_up()
                    on_give_up = None
                    deadline = now + (2.0 if winding_down else min(timeout_s, 8.0))
                if now >= deadline or (stop.is_set() and not winding_down):
                    return None, max(rtx, 0)
                if now >= next_send and (rtx < 0 or (self.tp == "udp" and not (invite and provisional))):
                    self.ch.send(req)
                    rtx += 1
                    next_send = now + interval
                    interval = interval * 2 if invite else min(interval * 2, T2_S)
                wait = max(0.01, min(deadline, next_send, give_up_at or deadline, now + 0.2) - time.monotonic())
                try:
                    msg = q.get(timeout=wait)
                except queue.Empty:
                    continue
                if msg.status is not None and msg.status < 200:
                    provisional = True
                    if not invite:
                        interval = T2_S
                    if on_provisional:
                        on_provisional(msg)
                    continue
                return msg, max(rtx, 0)
        finally:
            with self._wlock:
                self._waiters.pop(key, None)

    # -- REGISTER

    def register(self, registrar_uri: str, expires_s: int, stop: threading.Event,
                 timeout_s: float = 8.0) -> "RegisterOutcome":
        out = RegisterOutcome()
        start = time.monotonic()
        auth_hdr: tuple[str, str] | None = None
        tried_nonces: set[str] = set()
        raised_expiry = False
        for _attempt in range(5):
            self._reg_cseq += 1
            branch = "z9hG4bK" + secrets.token_hex(8)
            headers = [("Via", self._via(branch)), ("Max-Forwards", "70"),
                       ("From", f"<{self.account.aor}>;tag={self._reg_tag}"), ("To", f"<{self.account.aor}>"),
                       ("Call-ID", self._reg_call_id), ("CSeq", f"{self._reg_cseq} REGISTER"),
                       ("Contact", f"<{self.contact_uri}>"), ("Expires", str(expires_s)),
                       ("User-Agent", USER_AGENT)]
            if auth_hdr:
                headers.append(auth_hdr)
            req = _bytes(f"REGISTER {registrar_uri} SIP/2.0", headers, b"", None)
            resp, rtx = self.transaction(req, (self._reg_call_id, self._reg_cseq, "REGISTER"), False,
                                         timeout_s, stop)
            out.retransmissions += rtx
            if resp is None:
                out.error = f"no answer to REGISTER within {timeout_s:g} s"
                return out
            out.status, out.reason = resp.status, resp.reason
            out.last = resp
            min_exp = (resp.get("min-expires") or "").strip()
            if resp.status == 423 and min_exp.isdigit() and not raised_expiry and expires_s:
                # RFC 3261 §10.2.8: Interval Too Brief; ask again with the server's minimum
                out.min_expires_s = expires_s = int(min_exp)
                raised_expiry = True
                continue
            if resp.status in (401, 407):
                ch = pick_challenge(resp)
                if ch is None:
                    offered = resp.raw_all("www-authenticate") + resp.raw_all("proxy-authenticate")
                    out.error = (f"{resp.status} {resp.reason}: no digest challenge we can answer "
                                 f"(offered: {', '.join(offered)[:200]})")
                    return out
                if ch.nonce in tried_nonces or (auth_hdr and not ch.stale):
                    out.auth_rejected = True
                    out.error = (f"{resp.status} {resp.reason} after credentials: the server rejected the "
                                 f"username or password for {self.account.aor}")
                    return out
                tried_nonces.add(ch.nonce)
                out.algorithm = ch.algorithm
                auth_hdr = self._auth(ch, "REGISTER", registrar_uri)
                continue
            break
        out.time_ms = (time.monotonic() - start) * 1000
        last = out.last
        if last is not None and out.status and 200 <= out.status < 300:
            out.ok = True
            out.expires_s = granted_expiry(last, self.contact_uri, expires_s)
            out.contacts = last.all("contact")
        elif out.status == 403 and auth_hdr:
            out.auth_rejected = True
            out.error = f"{out.status} {out.reason} after credentials"
        elif out.status:
            out.error = f"{out.status} {out.reason}"
        return out

    # -- INVITE as caller

    def invite(self, target_uri: str, sdp: bytes, stop: threading.Event, ring_timeout_s: float,
               timeout_s: float = TIMER_B_S) -> "InviteOutcome":
        out = InviteOutcome()
        call_id = f"{secrets.token_hex(10)}@cutover"
        tag = secrets.token_hex(4)
        from_hdr = f"<{self.account.aor}>;tag={tag}"
        to_hdr = f"<{target_uri}>"
        auth_hdr = None
        cseq = 0
        start = time.monotonic()
        out.call_id = call_id
        tried = set()
        for _attempt in range(3):
            cseq += 1
            branch = "z9hG4bK" + secrets.token_hex(8)
            headers = [("Via", self._via(branch)), ("Max-Forwards", "70"), ("From", from_hdr), ("To", to_hdr),
                       ("Call-ID", call_id), ("CSeq", f"{cseq} INVITE"), ("Contact", f"<{self.contact_uri}>"),
                       ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"),
                       ("Supported", "timer"), ("User-Agent", USER_AGENT)]
            if auth_hdr:
                headers.append(auth_hdr)
            req = _bytes(f"INVITE {target_uri} SIP/2.0", headers, sdp, None)

            def on_prov(msg: SipMsg) -> None:
                t = (time.monotonic() - start) * 1000
                if msg.status is None:
                    return
                out.provisional.append(msg.status)
                if msg.status == 100 and out.trying_ms is None:
                    out.trying_ms = t
                if msg.status in (180, 183) and out.pdd_ms is None:
                    out.pdd_ms = t
                if msg.status == 183 and msg.body:
                    out.early_media = True

            def cancel(_b=branch, _c=cseq, _h=headers) -> None:
                out.cancelled = True
                cancel_headers = [("Via", self._via(_b)), ("Max-Forwards", "70"), ("From", from_hdr),
                                  ("To", to_hdr), ("Call-ID", call_id), ("CSeq", f"{_c} CANCEL"),
                                  ("User-Agent", USER_AGENT)]
                creq = _bytes(f"CANCEL {target_uri} SIP/2.0", cancel_headers, b"", None)
                # its own event: a CANCEL because we were stopped must still go out
                threading.Thread(target=self.transaction,
                                 args=(creq, (call_id, _c, "CANCEL"), False, 8.0, threading.Event()),
                                 daemon=True).start()

            out.status, out.reason = None, None          # a 407 before is not this attempt's answer
            sent_this = time.monotonic()
            resp, rtx = self.transaction(req, (call_id, cseq, "INVITE"), True, timeout_s, stop, on_prov,
                                         give_up_at=sent_this + ring_timeout_s, on_give_up=cancel)
            out.retransmissions += rtx
            if resp is None:
                out.error = ("no final response to INVITE" if out.provisional
                             else f"no answer to INVITE within {timeout_s:g} s")
                return out
            out.status, out.reason = resp.status, resp.reason
            out.final_ms = (time.monotonic() - start) * 1000
            code = resp.status or 0                  # the transaction hands over responses only
            if code >= 300:
                self._ack_non2xx(target_uri, branch, from_hdr, resp, call_id, cseq)
            if code in (401, 407) and not out.cancelled:
                ch = pick_challenge(resp)
                if ch is None or ch.nonce in tried or (auth_hdr and not ch.stale):
                    out.auth_rejected = ch is not None
                    out.error = f"{resp.status} {resp.reason}" + (" after credentials" if auth_hdr else "")
                    return out
                tried.add(ch.nonce)
                auth_hdr = self._auth(ch, "INVITE", target_uri)
                continue
            break
        else:                                        # three attempts, each challenged
            out.error = f"{out.status} {out.reason} after credentials (stale nonces every time)"
            return out
        out.via_received = via_params(resp)
        if 200 <= code < 300:
            out.answer_ms = out.final_ms
            if out.pdd_ms is None:
                out.pdd_ms = out.final_ms
            remote_target = uri_of(resp.get("contact") or "") or target_uri
            routes = list(reversed(resp.all("record-route")))
            d = Dialog(call_id, tag, resp.tag("to"), self.account.aor, target_uri, remote_target, "uac",
                       cseq=cseq, route_set=routes)
            d.offer = parse_sdp(resp.body) if resp.body else None
            d.local_sdp = sdp
            d.final_status = code
            ack_headers = [("Via", self._via("z9hG4bK" + secrets.token_hex(8))), ("Max-Forwards", "70")]
            ack_headers += [("Route", r) for r in routes]
            ack_headers += [("From", from_hdr), ("To", resp.get("to") or to_hdr), ("Call-ID", call_id),
                            ("CSeq", f"{cseq} ACK"), ("User-Agent", USER_AGENT)]
            d.ack = _bytes(f"ACK {remote_target} SIP/2.0", ack_headers, b"", None)
            d.confirmed = True
            self.dialogs[call_id] = d
            self.ch.send(d.ack)
            out.dialog = d
            out.session_expires = resp.get("session-expires")
        return out

    def _ack_non2xx(self, uri: str, branch: str, from_hdr: str, resp: SipMsg, call_id: str, cseq: int) -> None:
        """ACK for a non-2xx final response: same branch, hop by hop (RFC 3261 §17.1.1.3)."""
        headers = [("Via", self._via(branch)), ("Max-Forwards", "70"), ("From", from_hdr),
                   ("To", resp.get("to") or ""), ("Call-ID", call_id), ("CSeq", f"{cseq} ACK")]
        try:
            self.ch.send(_bytes(f"ACK {uri} SIP/2.0", headers, b"", None))
        except SipError as exc:
            self.warn(f"ACK not sent: {exc}")

    def bye(self, d: Dialog, stop: threading.Event, timeout_s: float = 8.0) -> SipMsg | None:
        if d.ended_by_remote:
            return None
        d.cseq += 1
        branch = "z9hG4bK" + secrets.token_hex(8)
        local = f"<{d.local_uri}>;tag={d.local_tag}"
        remote = f"<{d.remote_uri}>" + (f";tag={d.remote_tag}" if d.remote_tag else "")
        headers = [("Via", self._via(branch)), ("Max-Forwards", "70")] + [("Route", r) for r in d.route_set]
        headers += [("From", local), ("To", remote), ("Call-ID", d.call_id), ("CSeq", f"{d.cseq} BYE"),
                    ("User-Agent", USER_AGENT)]
        req = _bytes(f"BYE {d.remote_target} SIP/2.0", headers, b"", None)
        try:
            resp, _ = self.transaction(req, (d.call_id, d.cseq, "BYE"), False, timeout_s, stop)
        except SipError as exc:
            self.warn(f"BYE failed: {exc}")
            return None
        return resp

    # -- requests from the far end (we are callee, or in-dialog as caller)

    def _on_request(self, req: SipMsg) -> None:
        method = req.method
        d = self.dialogs.get(req.call_id)
        src = req.source
        if method == "ACK":
            if d:
                d.confirmed = True
            return
        if method == "INVITE":
            if d is None:
                self._incoming_invite(req)
                return
            # re-INVITE (session refresh, hold, codec change): keep our media
            sdp = d.local_sdp
            self.ch.send(build_response(req, 200, "OK", d.local_tag,
                                        [("Contact", f"<{self.contact_uri}>")], sdp), src)
            return
        if method == "CANCEL":
            self.ch.send(build_response(req, 200, "OK", d.local_tag if d else None), src)
            if d and not d.confirmed and d.role == "uas":
                d.final_status = 487
                inv = d.invite
                if inv is not None:
                    self.ch.send(build_response(inv, 487, "Request Terminated", d.local_tag), inv.source)
                if d.media:
                    d.media.stop()
            return
        if method == "BYE":
            if d and d.media:
                d.media.send_report()            # our last RTCP report covers the whole call
                d.media.halt_nowait()
            if d:
                d.ended_by_remote = True
            self.ch.send(build_response(req, 200, "OK", d.local_tag if d else None), src)
            return
        if method in ("OPTIONS", "UPDATE", "INFO", "NOTIFY"):
            body = d.local_sdp if (method == "UPDATE" and d and req.body) else b""
            self.ch.send(build_response(req, 200, "OK", d.local_tag if d else secrets.token_hex(4),
                                        [("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO")], body), src)
            return
        self.ch.send(build_response(req, 405, "Method Not Allowed", secrets.token_hex(4)), src)

    def _incoming_invite(self, req: SipMsg) -> None:
        pol = self.answer
        tag = secrets.token_hex(4)
        d = Dialog(req.call_id, tag, req.tag("from"), uri_of(req.get("to") or "") or "",
                   uri_of(req.get("from") or "") or "", uri_of(req.get("contact") or "") or "", "uas")
        d.received_at = time.monotonic()
        d.request_uri, d.from_header, d.to_header = req.uri, req.get("from"), req.get("to")
        d.route_set = req.all("record-route")
        d.invite = req
        self.dialogs[req.call_id] = d
        self.incoming.append(d)
        src = req.source
        self.ch.send(build_response(req, 100, "Trying"), src)
        if pol.mode == "busy":
            d.final_status = 486
            self.ch.send(build_response(req, 486, "Busy Here", tag), src)
            return
        offer = parse_sdp(req.body) if req.body else None
        d.offer = offer
        pick = choose(offer, list(pol.encodings)) if offer else None
        if pick is None or offer is None or not offer.address or not offer.port:
            d.final_status = 488
            self.ch.send(build_response(req, 488, "Not Acceptable Here", tag,
                                        [("Warning", '304 cutover "no common codec"')]), src)
            return
        pt, enc = pick
        d.encoding = enc
        try:
            d.media = RtpSession(self.media_host, enc, pt, offer.ptime_ms or pol.ptime_ms, port=pol.media_port,
                                 symmetric=pol.symmetric_rtp)
        except OSError as exc:
            self.warn(f"no RTP socket for the incoming call: {exc.strerror}")
            d.final_status = 500
            self.ch.send(build_response(req, 500, "Server Internal Error", tag), src)
            return
        adv_host, adv_port = pol.sdp_address or (self.media_host, d.media.port)
        d.local_sdp = build_sdp(adv_host, adv_port, [enc], offer.ptime_ms or pol.ptime_ms, secrets.randbits(31))
        contact = [("Contact", f"<{self.contact_uri}>")] + [("Record-Route", r) for r in req.raw_all("record-route")]
        self.ch.send(build_response(req, 180, "Ringing", tag, contact), src)
        if pol.mode == "ring":
            return
        threading.Thread(target=self._answer_later, args=(req, d, contact), daemon=True).start()

    def _answer_later(self, req: SipMsg, d: Dialog, contact: list) -> None:
        if self._stop.wait(self.answer.answer_after_s) or d.final_status is not None:
            return
        ok = build_response(req, 200, "OK", d.local_tag, contact + [("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")],
                            d.local_sdp)
        d.final_status = 200
        offer, media = d.offer, d.media
        if media is None or offer is None or offer.address is None or offer.port is None:
            return                                   # _incoming_invite answered 488 then
        media.start((offer.address, offer.port), self.answer.media_s, send=self.answer.send_rtp)
        interval, deadline = T1_S, time.monotonic() + TIMER_B_S
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                self.ch.send(ok, req.source)
            except SipError as exc:
                self.warn(f"200 OK not sent: {exc}")
                return
            if self.tp != "udp" or self._stop.wait(0) or d.confirmed:
                return
            if self._wait_for(lambda: d.confirmed or d.ended_by_remote, interval):
                return
            interval = min(interval * 2, T2_S)

    def _wait_for(self, cond: Callable[[], bool], timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if cond():
                return True
            if self._stop.wait(0.02):
                return False
        return cond()


@dataclass
class RegisterOutcome:
    ok: bool = False
    status: int | None = None
    reason: str | None = None
    time_ms: float | None = None
    expires_s: int | None = None
    algorithm: str | None = None
    auth_rejected: bool = False
    retransmissions: int = 0
    min_expires_s: int | None = None         # a 423 asked for at least this
    contacts: list[str] = field(default_factory=list)
    error: str | None = None
    last: SipMsg | None = None


@dataclass
class InviteOutcome:
    call_id: str | None = None
    status: int | None = None
    reason: str | None = None
    trying_ms: float | None = None
    pdd_ms: float | None = None
    answer_ms: float | None = None
    final_ms: float | None = None
    provisional: list[int] = field(default_factory=list)
    early_media: bool = False
    cancelled: bool = False
    auth_rejected: bool = False
    retransmissions: int = 0
    session_expires: str | None = None
    via_received: dict = field(default_factory=dict)
    dialog: Dialog | None = None
    error: str | None = None


def uri_of(header: str) -> str | None:
    m = re.search(r"<([^>]+)>", header)
    if m:
        return m.group(1)
    v = header.split(";")[0].strip()
    return v or None


def via_params(resp: SipMsg) -> dict:
    vias = resp.all("via")
    top = parse_via(vias[0]) if vias else None
    if not top:
        return {}
    return {"sent_by": top.sent_by, "received": top.params.get("received"), "rport": top.params.get("rport")}


def granted_expiry(resp: SipMsg, contact_uri: str, asked_s: int) -> int | None:
    """The expiry the registrar granted for *our* binding (RFC 3261 §10.2.4): the
    ;expires of the Contact matching ours, else the Expires header, else what we asked."""
    ours = norm_contact(contact_uri)
    for c in resp.all("contact"):
        if norm_contact(uri_of(c) or "") == ours:
            m = re.search(r";\s*expires\s*=\s*(\d+)", c.split(">", 1)[-1] if ">" in c else c)
            if m:
                return int(m.group(1))
    e = resp.get("expires")
    if e and e.strip().isdigit():
        return int(e.strip())
    return asked_s if resp.all("contact") else None


def norm_contact(uri: str) -> str:
    return uri.split(";")[0].lower()
