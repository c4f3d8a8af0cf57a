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
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass

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


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


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
                 port_from=None) -> None:
        self.host, self._port = host, port
        self._port_from = port_from
        self.key = key or None
        self.max_duration_s = max_duration_s
        self.max_sessions = max_sessions
        self.max_streams = max_streams
        self.max_http = max_http
        self.io_timeout_s = io_timeout_s
        self.http = http
        self._lock = threading.Lock()
        self._sessions: dict[bytes, _Session] = {}
        self._http_active = 0
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._payload = memoryview(os.urandom(CHUNK_B))
        # random (incompressible) payload, sent repeatedly
        self.stats = {"bw_sent_b": 0, "bw_received_b": 0, "http_sent_b": 0, "http_received_b": 0,
                      "refused_busy": 0, "refused_auth": 0}

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
            threading.Thread(target=self._handle, args=(conn, peer), daemon=True,
                             name="bwservice-conn").start()

    # ------------------------------------------------------------------ per connection
    def _handle(self, conn: socket.socket, peer) -> None:
        try:
            conn.settimeout(self.io_timeout_s)
            head = conn.recv(4, socket.MSG_PEEK)
            if head == MAGIC:
                self._serve_bw(conn)
            elif self.http and head in HTTP_METHODS:
                if self.key:
                    # a keyed reflector serves keyed clients only; speedtest-cli cannot
                    # prove the key, so the Mini endpoint says why it is closed
                    _http_reply(conn, 403, b"this cutover reflector requires a key: use "
                                           b"cutover probe bandwidth --reflector HOST:PORT --key-file F\n")
                else:
                    self._serve_http(conn)
        except (OSError, ProtocolError):
            pass  # a client that vanished or spoke garbage costs us nothing more
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def _serve_bw(self, conn: socket.socket) -> None:
        raw = recv_exact(conn, HELLO_LEN)
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
            mac = recv_exact(conn, MAC_LEN)
            if not hmac.compare_digest(mac, auth_mac(self.key, nonce, raw)):
                self._count("refused_auth", 1)
                conn.sendall(Reply(STATUS_AUTH_FAILED).pack())
                return
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
    def _serve_http(self, conn: socket.socket) -> None:
        """Just enough HTTP/1.1 for speedtest-cli's --mini mode: one request per connection.

        GET / (index naming upload_extension "php"), GET /speedtest/latency.txt
        ("test=test"), GET [/speedtest]/randomNxN.jpg (incompressible bytes of
        the mini file sizes), POST /speedtest/upload.php (body read and counted,
        answer "size=N"), GET /speedtest/upload.php ("size=0", the probe
        speedtest-cli uses to detect the extension).
        """
        with self._lock:
            if self._http_active >= self.max_http:
                busy = True
            else:
                busy = False
                self._http_active += 1
        if busy:
            _http_reply(conn, 503, b"busy\n")
            return
        try:
            self._http_request(conn)
        finally:
            with self._lock:
                self._http_active -= 1

    def _http_request(self, conn: socket.socket) -> None:
        head = bytearray()
        while b"\r\n\r\n" not in head:
            chunk = conn.recv(4096)
            if not chunk:
                return
            head += chunk
            if len(head) > 16384:
                _http_reply(conn, 431, b"headers too large\n")
                return
        header_blob, _, body_start = bytes(head).partition(b"\r\n\r\n")
        lines = header_blob.split(b"\r\n")
        try:
            method, target, _proto = lines[0].split(b" ", 2)
        except ValueError:
            _http_reply(conn, 400, b"bad request line\n")
            return
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        path = target.split(b"?", 1)[0]
        if method == b"POST":
            if path.rstrip(b"/").split(b"/")[-1] != b"upload.php":
                _http_reply(conn, 404, b"not found\n")
                return
            try:
                length = int(headers.get(b"content-length", b"-1"))
            except ValueError:
                length = -1
            if not 0 <= length <= MINI_MAX_UPLOAD_B:
                _http_reply(conn, 411, b"content-length required (max 64 MiB)\n")
                return
            got = len(body_start)
            buf = bytearray(CHUNK_B)
            try:
                while got < length and not self._stop.is_set():
                    n = conn.recv_into(buf, min(CHUNK_B, length - got))
                    if n == 0:
                        return     # client gave up (speedtest-cli stops at its time limit)
                    got += n
            finally:
                self._count("http_received_b", got)
            _http_reply(conn, 200, b"size=%d" % got)
            return
        if method not in (b"GET", b"HEAD"):
            _http_reply(conn, 405, b"method not allowed\n")
            return
        head_only = method == b"HEAD"
        if path in (b"/", b"/index.html", b"/speedtest", b"/speedtest/", b"/mini", b"/mini/"):
            _http_reply(conn, 200, MINI_INDEX, "text/html", head_only)
        elif path in (b"/speedtest/latency.txt", b"/latency.txt"):
            _http_reply(conn, 200, b"test=test\n", head_only=head_only)
        elif path in (b"/speedtest/upload.php", b"/upload.php"):
            _http_reply(conn, 200, b"size=0", head_only=head_only)
        elif (m := _RANDOM_RE.match(path)):
            size = mini_size_for(int(m.group(1)))
            conn.sendall(_http_head(200, size, "image/jpeg"))
            if not head_only:
                self._send_bytes(conn, size)
        else:
            _http_reply(conn, 404, b"not found\n", head_only=head_only)

    def _send_bytes(self, conn: socket.socket, size: int) -> None:
        left = size
        payload = self._payload
        try:
            while left > 0 and not self._stop.is_set():
                n = conn.send(payload[:min(left, len(payload))])
                left -= n
        finally:          # speedtest-cli hangs up mid-file at its time limit
            self._count("http_sent_b", size - left)


_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 431: "Request Header Fields Too Large",
            503: "Service Unavailable"}


def _http_head(status: int, length: int, ctype: str = "text/plain") -> bytes:
    return (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {length}\r\nCache-Control: no-cache\r\nConnection: close\r\n"
            "Server: cutover-reflector\r\n\r\n").encode()


def _http_reply(conn: socket.socket, status: int, body: bytes, ctype: str = "text/plain",
                head_only: bool = False) -> None:
    conn.sendall(_http_head(status, len(body), ctype) + (b"" if head_only else body))
