"""Reflector-side TCP bandwidth service and Speedtest Mini-compatible endpoint.

`cutover reflector` listens with this service on TCP on the same port number
as its STAMP reflector on UDP. One listening socket serves two protocols; the
first bytes a client sends decide which (the client always speaks first):

* ``CUTB`` ... : our own bandwidth protocol, below.
* ``GET `` / ``POST`` / ``HEAD``: a Speedtest Mini-compatible HTTP endpoint,
  so that ``speedtest-cli --mini http://reflector:PORT/`` works against it with
  no other software at the far end (see :func:`_serve_http`).

Bandwidth protocol (version 1), one TCP connection per stream; all integers
big-endian::

    client -> server  HELLO (48 bytes)
     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
    |                      magic "CUTB"                             |
    +---------------+---------------+---------------+---------------+
    |  version = 1  | direction     | stream index  | stream count  |
    +---------------+---------------+---------------+---------------+
    |                     duration (ms)                             |
    +---------------------------------------------------------------+
    |                session token (16 bytes, random per test)      |
    +---------------------------------------------------------------+
    |     congestion control name (16 bytes ASCII, NUL padded)      |
    +---------------------------------------------------------------+
    |                     reserved (0)                              |
    +---------------------------------------------------------------+

    server -> client  REPLY (28 bytes)
    +---------------------------------------------------------------+
    |                      magic "CUTB"                             |
    +---------------+---------------+---------------+---------------+
    |  version = 1  |    status     |    flags      |   reserved    |
    +---------------+---------------+---------------+---------------+
    |                  granted duration (ms)                        |
    +---------------------------------------------------------------+
    |                 nonce (16 bytes)                              |
    +---------------------------------------------------------------+

direction: 1 = down (server sends), 2 = up (client sends). status: see
``STATUS_*``. flags bit 0: the requested congestion control was applied to
the server's socket. A keyed service answers the first HELLO with status
``AUTH_REQUIRED`` and a fresh nonce; the client then sends 32 bytes
HMAC-SHA-256(key, "cutover-bw1" || nonce || HELLO) and gets a second REPLY
(``OK`` or ``AUTH_FAILED``). The key is the STAMP pre-shared key.

Data phase. down: the server sends payload until the granted duration has
passed (its own clock), then closes. up: the client sends payload for its
duration and then half-closes (SHUT_WR); meanwhile the server writes 16-byte
REPORT records ``(server monotonic ns u64, cumulative payload bytes u64)``
about every 100 ms and a last one at end of data, then closes. The upload
figure is therefore the receiver's count, like iperf3's "receiver" line.

Limits (server side, so a reflector on the internet cannot be abused): the
duration is capped (``max_duration_s``), at most ``max_sessions`` sessions
(distinct tokens) run at once and at most ``max_streams`` streams per session;
an idle or silent client is dropped after ``io_timeout_s``. A data phase never
outlives the granted duration plus a short grace period. A keyed service
answers HTTP with 403 (speedtest-cli cannot prove the key).

Slow clients (slowloris: 32 connections sending one byte every 8 s used to fill
the HTTP limit and get every real request a 503). Every connection has a
*deadline* for its whole opening, not a per-recv timeout: the HTTP request
head, or the HELLO and MAC, must be complete within ``head_timeout_s``
(default 5 s) of the accept, else the connection is answered 408 (HTTP) or
closed. The HTTP limit (``max_http``) counts only requests whose head is
complete, so connections still trickling their head never take a real
client's place; they are bounded separately: at most ``max_per_source``
connections at once from one address (an IPv6 /64 counts as one) (more are closed at accept) and at most
``max_conns`` in all, where a new connection pushes out the oldest one still
in its opening. A request body (upload) must be complete within
``max_duration_s + head_timeout_s``, and so must a download (a slow reader).
HTTP/1.1 is parsed by h11 (head at most
16 KiB, else 431), one request per connection.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import cast

import h11

MAGIC = b"CUTB"
VERSION = 1
DOWN, UP = 1, 2
HELLO_FMT = "!4sBBBBI16s16s4s"
HELLO_LEN = struct.calcsize(HELLO_FMT)       # 48
REPLY_FMT = "!4sBBBBI16s"
REPLY_LEN = struct.calcsize(REPLY_FMT)       # 28
REPORT_FMT = "!QQ"
REPORT_LEN = struct.calcsize(REPORT_FMT)     # 16
MAC_LEN = 32
MAC_LABEL = b"cutover-bw1"

STATUS_OK = 0
STATUS_AUTH_REQUIRED = 1
STATUS_AUTH_FAILED = 2
STATUS_BAD_HELLO = 3
STATUS_BUSY = 4
STATUS_BAD_VERSION = 5
STATUS_TEXT = {STATUS_OK: "ok", STATUS_AUTH_REQUIRED: "authentication required",
               STATUS_AUTH_FAILED: "authentication failed (wrong key)",
               STATUS_BAD_HELLO: "malformed request", STATUS_BUSY: "reflector busy (session limit)",
               STATUS_BAD_VERSION: "unsupported protocol version"}
FLAG_CC_APPLIED = 0x01

REPORT_INTERVAL_S = 0.1
CHUNK_B = 128 * 1024
HTTP_METHODS = (b"GET ", b"POST", b"HEAD")
HEAD_MAX_B = 16384           # largest HTTP request head accepted
HEAD_READ_B = 4096


class ProtocolError(ValueError):
    """Bytes that are not a valid message of this protocol."""


@dataclass(frozen=True)
class Hello:
    direction: int
    stream_index: int
    stream_count: int
    duration_ms: int
    token: bytes
    congestion: str = ""
    version: int = VERSION

    def pack(self) -> bytes:
        cc = self.congestion.encode("ascii")[:16]
        return struct.pack(HELLO_FMT, MAGIC, self.version, self.direction, self.stream_index,
                           self.stream_count, self.duration_ms, self.token.ljust(16, b"\0")[:16],
                           cc.ljust(16, b"\0"), b"\0" * 4)

    @classmethod
    def unpack(cls, data: bytes) -> "Hello":
        if len(data) != HELLO_LEN:
            raise ProtocolError(f"hello is {len(data)} bytes, expected {HELLO_LEN}")
        magic, ver, direction, idx, count, dur, token, cc, _ = struct.unpack(HELLO_FMT, data)
        if magic != MAGIC:
            raise ProtocolError("bad magic")
        if direction not in (DOWN, UP):
            raise ProtocolError(f"bad direction {direction}")
        if count == 0 or idx >= count:
            raise ProtocolError(f"stream index {idx} outside count {count}")
        try:
            cc_name = cc.rstrip(b"\0").decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError("congestion control name is not ASCII") from None
        return cls(direction, idx, count, dur, token, cc_name, ver)


@dataclass(frozen=True)
class Reply:
    status: int
    granted_ms: int = 0
    nonce: bytes = b"\0" * 16
    flags: int = 0

    def pack(self) -> bytes:
        return struct.pack(REPLY_FMT, MAGIC, VERSION, self.status, self.flags, 0,
                           self.granted_ms, self.nonce)

    @classmethod
    def unpack(cls, data: bytes) -> "Reply":
        if len(data) != REPLY_LEN:
            raise ProtocolError(f"reply is {len(data)} bytes, expected {REPLY_LEN}")
        magic, _ver, status, flags, _r, granted, nonce = struct.unpack(REPLY_FMT, data)
        if magic != MAGIC:
            raise ProtocolError("not a cutover bandwidth service (bad magic)")
        return cls(status, granted, nonce, flags)


def auth_mac(key: bytes, nonce: bytes, hello: bytes) -> bytes:
    """The client's proof of the pre-shared key for one connection."""
    return hmac.new(key, MAC_LABEL + nonce + hello, hashlib.sha256).digest()


def pack_report(t_ns: int, total_bytes: int) -> bytes:
    return struct.pack(REPORT_FMT, t_ns, total_bytes)


def unpack_reports(buf: bytes) -> tuple[list[tuple[int, int]], bytes]:
    """Whole REPORT records in ``buf`` and the incomplete remainder."""
    n = len(buf) // REPORT_LEN
    recs = [struct.unpack_from(REPORT_FMT, buf, i * REPORT_LEN) for i in range(n)]
    return recs, buf[n * REPORT_LEN:]


def set_congestion(sock: socket.socket, name: str) -> bool:
    """TCP_CONGESTION on one socket; False when the kernel refuses (module/permission)."""
    if not name:
        return False
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, name.encode())
        return True
    except OSError:
        return False


def recv_exact(sock: socket.socket, n: int, deadline: float | None = None) -> bytes:
    """``n`` bytes; with ``deadline`` (time.monotonic()) all of them by then, however
    they trickle in (socket.timeout once it has passed)."""
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            sock.settimeout(_left(deadline))
        try:
            chunk = sock.recv(n - len(buf))
        except socket.timeout:
            if deadline is None:
                raise
            raise socket.timeout(DEADLINE_TEXT) from None
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


DEADLINE_TEXT = "timed out: the deadline for the whole exchange passed"


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise socket.timeout(DEADLINE_TEXT)
    return left


def source_key(address: str) -> str:
    """What the per-source limit counts by: the IPv4 address, or the IPv6 /64 (one
    subscriber's prefix: its 2^64 addresses are one source)."""
    if ":" in address and not address.startswith("::ffff:"):
        return str(ipaddress.IPv6Network(f"{address.split('%')[0]}/64", strict=False))
    return address.removeprefix("::ffff:")


class SlowClient(Exception):
    """The client did not complete its request head / handshake within the deadline."""


# Speedtest Mini: the file names and sizes speedtest.net's mini servers carry
# (randomNxN.jpg). speedtest-cli asks for these ten; any other N is served
# with a size proportional to N*N so the relationship stays plausible.
MINI_SIZES_B = {350: 245388, 500: 505544, 750: 1118012, 1000: 1986284, 1500: 4468241,
                2000: 7907740, 2500: 12407926, 3000: 17816816, 3500: 24262167, 4000: 31625365}
MINI_MAX_UPLOAD_B = 64 * 1024 * 1024
MINI_INDEX = (b"<!DOCTYPE html>\n<html><head><title>Speedtest Mini (cutover reflector)</title>\n"
              b"<script>var upload_extension: \"php\";</script>\n"
              b"<!-- upload_extension: \"php\" -->\n</head>\n"
              b"<body><p>Speedtest Mini-compatible endpoint of a cutover reflector. "
              b"Use: speedtest-cli --mini http://HOST:PORT/</p></body></html>\n")
_RANDOM_RE = re.compile(rb"^/(?:speedtest/)?random(\d{1,5})x\d{1,5}\.jpg$")


def mini_size_for(n: int) -> int:
    return MINI_SIZES_B.get(n, min(40_000_000, max(1024, int(n * n * 1.98))))


class _Session:
    def __init__(self, count: int) -> None:
        self.count = count
        self.active = 0


class BandwidthService:
    """TCP bandwidth service + Speedtest Mini endpoint. ``start()`` runs it in threads.

    ``port=0`` picks a free port (see :attr:`port` after ``start``);
    ``port_from`` (a callable returning a port) takes the number another
    service bound, so that TCP follows the STAMP reflector's UDP port 0.
    For `cutover reflector`: ``bind()``, ``serve(stop_event)``, ``name``.
    """

    name = "bandwidth service (TCP)"

    def __init__(self, host: str = "0.0.0.0", port: int = 862, *, key: bytes | None = None,
                 max_duration_s: float = 60.0, max_sessions: int = 4, max_streams: int = 16,
                 max_http: int = 32, io_timeout_s: float = 10.0, http: bool = True,
                 port_from=None, head_timeout_s: float = 5.0, max_per_source: int = 32,
                 max_conns: int = 256) -> None:
        self.host, self._port = host, port
        self._port_from = port_from
        self.key = key or None
        self.max_duration_s = max_duration_s
        self.max_sessions = max_sessions
        self.max_streams = max_streams
        self.max_http = max_http
        self.io_timeout_s = io_timeout_s
        self.head_timeout_s = head_timeout_s
        self.max_per_source = max_per_source
        self.max_conns = max_conns
        self.http = http
        self._lock = threading.Lock()
        self._sessions: dict[bytes, _Session] = {}
        self._http_active = 0
        self._per_source: Counter[str] = Counter()
        self._conns = 0
        self._opening: dict[socket.socket, float] = {}   # connections still in their opening
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._payload = memoryview(os.urandom(CHUNK_B))
        # random (incompressible) payload, sent repeatedly
        self.stats = {"bw_sent_b": 0, "bw_received_b": 0, "http_sent_b": 0, "http_received_b": 0,
                      "refused_busy": 0, "refused_auth": 0, "refused_source": 0, "dropped_slow": 0,
                      "evicted_opening": 0}

    @property
    def port(self) -> int:
        return self._sock.getsockname()[1] if self._sock else self._port

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def bind(self) -> None:
        if self._port == 0 and self._port_from is not None:
            self._port = int(self._port_from())
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and self.host in ("::", ""):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # dual stack on [::]
        try:
            sock.bind((self.host, self._port))
            sock.listen(64)
        except OSError as exc:
            sock.close()
            raise OSError(exc.errno, f"cannot listen on TCP {self.host}:{self._port}: {exc.strerror}") from None
        sock.settimeout(0.2)   # so the accept loop notices stop()
        self._sock = sock

    def start(self) -> "BandwidthService":
        if self._sock is None:
            self.bind()
        self._thread = threading.Thread(target=self.serve_forever, name="bwservice", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        if self._sock:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "BandwidthService":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve(self, stop: threading.Event) -> None:
        """Serve until ``stop`` is set (the way `cutover reflector` runs its services)."""
        def relay_stop() -> None:
            stop.wait()
            self._stop.set()

        watcher = threading.Thread(target=relay_stop, daemon=True)
        watcher.start()
        try:
            self.serve_forever()
        finally:
            if self._sock:
                self._sock.close()
                self._sock = None

    def serve_forever(self) -> None:
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                time.sleep(0.05)
                continue
            source = source_key(peer[0])
            if not self._admit_conn(conn, source):
                conn.close()
                continue
            threading.Thread(target=self._handle, args=(conn, source), daemon=True,
                             name="bwservice-conn").start()

    # ------------------------------------------------------------------ per connection
    def _admit_conn(self, conn: socket.socket, source: str) -> bool:
        """Per-source and total connection limits, checked at accept."""
        victim = None
        with self._lock:
            if self._per_source[source] >= self.max_per_source:
                self.stats["refused_source"] += 1
                return False
            if self._conns >= self.max_conns:
                if not self._opening:
                    self.stats["refused_busy"] += 1
                    return False
                # the oldest connection still sending its opening makes room
                victim = min(self._opening, key=self._opening.__getitem__)
                del self._opening[victim]
                self.stats["evicted_opening"] += 1
            self._per_source[source] += 1
            self._conns += 1
            self._opening[conn] = time.monotonic()
        if victim is not None:
            try:
                victim.shutdown(socket.SHUT_RDWR)     # its thread's recv returns and it ends
            except OSError:
                pass
        return True

    def _opened(self, conn: socket.socket) -> None:
        """The opening (HTTP head, HELLO + MAC) is complete: no longer evictable."""
        with self._lock:
            self._opening.pop(conn, None)

    def _handle(self, conn: socket.socket, source: str) -> None:
        deadline = time.monotonic() + self.head_timeout_s
        try:
            head = recv_exact(conn, 4, deadline)
            if head == MAGIC:
                self._serve_bw(conn, head, deadline)
            elif self.http and head in HTTP_METHODS:
                self._serve_http(conn, head, deadline)
        except (socket.timeout, SlowClient):
            self._count("dropped_slow", 1)
        except (OSError, ProtocolError):
            pass  # a client that vanished or spoke garbage costs us nothing more
        finally:
            with self._lock:
                self._opening.pop(conn, None)
                self._conns -= 1
                self._per_source[source] -= 1
                if self._per_source[source] <= 0:
                    del self._per_source[source]
            try:
                conn.close()
            except OSError:
                pass

    def _serve_bw(self, conn: socket.socket, head: bytes, deadline: float) -> None:
        raw = head + recv_exact(conn, HELLO_LEN - len(head), deadline)
        conn.settimeout(self.io_timeout_s)
        try:
            hello = Hello.unpack(raw)
        except ProtocolError:
            conn.sendall(Reply(STATUS_BAD_HELLO).pack())
            return
        if hello.version != VERSION:
            conn.sendall(Reply(STATUS_BAD_VERSION).pack())
            return
        if self.key:
            nonce = os.urandom(16)
            conn.sendall(Reply(STATUS_AUTH_REQUIRED, nonce=nonce).pack())
            mac = recv_exact(conn, MAC_LEN, deadline)
            conn.settimeout(self.io_timeout_s)
            if not hmac.compare_digest(mac, auth_mac(self.key, nonce, raw)):
                self._count("refused_auth", 1)
                conn.sendall(Reply(STATUS_AUTH_FAILED).pack())
                return
        self._opened(conn)
        if not self._admit(hello):
            self._count("refused_busy", 1)
            conn.sendall(Reply(STATUS_BUSY).pack())
            return
        try:
            granted_ms = int(min(hello.duration_ms, self.max_duration_s * 1000))
            applied = set_congestion(conn, hello.congestion) if hello.congestion else False
            conn.sendall(Reply(STATUS_OK, granted_ms, flags=FLAG_CC_APPLIED if applied else 0).pack())
            if hello.direction == DOWN:
                self._send_for(conn, granted_ms / 1000)
            else:
                self._receive_for(conn, granted_ms / 1000)
        finally:
            self._release(hello.token)

    def _admit(self, hello: Hello) -> bool:
        with self._lock:
            sess = self._sessions.get(hello.token)
            if sess is None:
                if len(self._sessions) >= self.max_sessions or hello.stream_count > self.max_streams:
                    return False
                sess = self._sessions[hello.token] = _Session(hello.stream_count)
            if sess.active >= min(sess.count, self.max_streams):
                return False
            sess.active += 1
            return True

    def _count(self, name: str, n: int) -> None:
        with self._lock:
            self.stats[name] += n

    def _release(self, token: bytes) -> None:
        with self._lock:
            sess = self._sessions.get(token)
            if sess:
                sess.active -= 1
                if sess.active <= 0:
                    del self._sessions[token]

    def _send_for(self, conn: socket.socket, duration_s: float) -> None:
        end = time.monotonic() + duration_s
        payload = self._payload
        conn.settimeout(min(self.io_timeout_s, 2.0))
        sent = 0
        try:
            while time.monotonic() < end and not self._stop.is_set():
                try:
                    sent += conn.send(payload)
                except socket.timeout:
                    continue       # receiver stalled; keep trying until the deadline
        finally:
            self._count("bw_sent_b", sent)
        conn.shutdown(socket.SHUT_WR)
        # drain until the client closes so the last bytes are not reset away
        conn.settimeout(1.0)
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass

    def _receive_for(self, conn: socket.socket, duration_s: float) -> None:
        # the client stops at duration; allow a grace period for queued data to drain
        hard_end = time.monotonic() + duration_s + 5.0
        buf = bytearray(CHUNK_B)
        total = 0
        next_report = time.monotonic() + REPORT_INTERVAL_S
        conn.settimeout(0.1)
        conn.sendall(pack_report(time.monotonic_ns(), 0))   # t0: the clock the client will use
        while not self._stop.is_set():
            now = time.monotonic()
            if now > hard_end:
                break
            try:
                n = conn.recv_into(buf)
            except socket.timeout:
                n = -1
            if n == 0:
                break
            if n > 0:
                total += n
            now = time.monotonic()
            if now >= next_report:
                conn.sendall(pack_report(time.monotonic_ns(), total))
                next_report = now + REPORT_INTERVAL_S
        self._count("bw_received_b", total)
        conn.sendall(pack_report(time.monotonic_ns(), total))
        conn.shutdown(socket.SHUT_WR)

    # ------------------------------------------------------------------ Speedtest Mini
    def _serve_http(self, conn: socket.socket, head: bytes, deadline: float) -> None:
        """Enough of a Speedtest Mini server for speedtest-cli's --mini mode, one request
        per connection, parsed by h11.

        GET / (index naming upload_extension "php"), GET /speedtest/latency.txt
        ("test=test"), GET [/speedtest]/randomNxN.jpg (incompressible bytes of
        the mini file sizes), POST /speedtest/upload.php (body read and counted,
        answer "size=N"), GET /speedtest/upload.php ("size=0", the probe
        speedtest-cli uses to detect the extension).
        """
        # the head is read 4 KiB at a time and h11 refuses an incomplete one beyond 12 KiB,
        # so no head over 16 KiB is ever accepted (431)
        h = h11.Connection(h11.SERVER, max_incomplete_event_size=HEAD_MAX_B - HEAD_READ_B)
        h.receive_data(head)
        try:
            req = self._next_event(conn, h, deadline, HEAD_READ_B)
        except h11.RemoteProtocolError as exc:
            _respond(conn, h, exc.error_status_hint, b"bad request\n"
                     if exc.error_status_hint != 431 else b"headers too large\n")
            return
        if not isinstance(req, h11.Request):
            return                       # closed before a whole request head
        self._opened(conn)
        conn.settimeout(self.io_timeout_s)
        if self.key:
            # a keyed reflector serves keyed clients only; speedtest-cli cannot
            # prove the key, so the Mini endpoint says why it is closed
            _respond(conn, h, 403, b"this cutover reflector requires a key: use "
                                   b"cutover probe bandwidth --reflector HOST:PORT --key-file F\n")
            return
        with self._lock:
            busy = self._http_active >= self.max_http
            if not busy:
                self._http_active += 1
        if busy:
            _respond(conn, h, 503, b"busy\n")
            return
        try:
            self._http_request(conn, h, req)
        finally:
            with self._lock:
                self._http_active -= 1

    def _next_event(self, conn: socket.socket, h: h11.Connection, deadline: float, read_b: int = CHUNK_B):
        """h11's next event, reading ``read_b`` at a time from the socket until ``deadline``."""
        while not self._stop.is_set():
            ev = h.next_event()
            if ev is not h11.NEED_DATA:
                return ev
            conn.settimeout(min(_left(deadline), 0.5))
            try:
                data = conn.recv(read_b)
            except socket.timeout:
                continue                 # recheck stop and the deadline
            h.receive_data(data)         # b"": the client closed (h11 then says so)
        raise SlowClient("stopping")

    def _http_request(self, conn: socket.socket, h: h11.Connection, req: h11.Request) -> None:
        method = req.method
        path = req.target.split(b"?", 1)[0]
        head_only = method == b"HEAD"
        if method == b"POST":
            if path.rstrip(b"/").split(b"/")[-1] != b"upload.php":
                _respond(conn, h, 404, b"not found\n")
                return
            length = next((v for k, v in req.headers if k == b"content-length"), None)
            if length is None or int(length) > MINI_MAX_UPLOAD_B:
                _respond(conn, h, 411, b"content-length required (max 64 MiB)\n")
                return
            if h.they_are_waiting_for_100_continue:    # curl asks before a large body
                conn.sendall(h.send(h11.InformationalResponse(status_code=100, headers=[])))
            got = 0
            deadline = time.monotonic() + self.max_duration_s + self.head_timeout_s
            try:
                while True:
                    ev = self._next_event(conn, h, deadline)
                    if isinstance(ev, h11.Data):
                        got += len(ev.data)
                    elif isinstance(ev, h11.EndOfMessage):
                        break
                    else:
                        return           # client gave up (speedtest-cli stops at its time limit)
            except (socket.timeout, SlowClient, h11.RemoteProtocolError):
                return
            finally:
                self._count("http_received_b", got)
            _respond(conn, h, 200, b"size=%d" % got)
            return
        if method not in (b"GET", b"HEAD"):
            _respond(conn, h, 405, b"method not allowed\n")
            return
        if path in (b"/", b"/index.html", b"/speedtest", b"/speedtest/", b"/mini", b"/mini/"):
            _respond(conn, h, 200, MINI_INDEX, "text/html", head_only)
        elif path in (b"/speedtest/latency.txt", b"/latency.txt"):
            _respond(conn, h, 200, b"test=test\n", head_only=head_only)
        elif path in (b"/speedtest/upload.php", b"/upload.php"):
            _respond(conn, h, 200, b"size=0", head_only=head_only)
        elif (m := _RANDOM_RE.match(path)):
            size = mini_size_for(int(m.group(1)))
            conn.sendall(h.send(h11.Response(status_code=200, headers=_headers(size, "image/jpeg"),
                                             reason=_REASONS[200])))
            if not head_only:
                self._send_bytes(conn, h, size)
        else:
            _respond(conn, h, 404, b"not found\n", head_only=head_only)

    def _send_bytes(self, conn: socket.socket, h: h11.Connection, size: int) -> None:
        left = size
        payload = self._payload
        # a reader that takes a byte now and then (slow read) keeps its slot no longer
        # than an upload may: the duration cap plus the opening's allowance
        deadline = time.monotonic() + self.max_duration_s + self.head_timeout_s
        try:
            while left > 0 and not self._stop.is_set() and time.monotonic() < deadline:
                # h11 frames the body (Content-Length: the bytes pass through as they are)
                chunk = cast(bytes, payload[:min(left, len(payload))])     # a memoryview: no copy
                for piece in h.send_with_data_passthrough(h11.Data(data=chunk)) or []:
                    view = memoryview(piece)
                    while view:
                        n = conn.send(view)
                        view = view[n:]
                        left -= n
        finally:          # speedtest-cli hangs up mid-file at its time limit
            self._count("http_sent_b", size - left)
        if left == 0:             # cut short (stop, deadline): the close ends it, not EndOfMessage
            conn.sendall(h.send(h11.EndOfMessage()))


_REASONS = {200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found",
            405: b"Method Not Allowed", 411: b"Length Required", 431: b"Request Header Fields Too Large",
            503: b"Service Unavailable"}


def _headers(length: int, ctype: str = "text/plain") -> list[tuple[str, str]]:
    return [("Content-Type", ctype), ("Content-Length", str(length)), ("Cache-Control", "no-cache"),
            ("Connection", "close"), ("Server", "cutover-reflector")]


def _respond(conn: socket.socket, h: h11.Connection, status: int, body: bytes,
             ctype: str = "text/plain", head_only: bool = False) -> None:
    """A whole response through h11 (``head_only``: the answer to HEAD, without the body)."""
    if h.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    try:
        out = h.send(h11.Response(status_code=status, headers=_headers(len(body), ctype),
                                  reason=_REASONS.get(status, b"Error")))
        if body and not head_only:
            out += h.send(h11.Data(data=body))
        out += h.send(h11.EndOfMessage())
    except h11.LocalProtocolError:
        return
    conn.sendall(out)
