"""speedtest-cli backends: speedtest.net (Ookla) servers and self-hosted Speedtest Mini.

Uses speedtest-cli's Python API (``import speedtest``) with three fixes that
matter for a measurement we report:

* **Offline configuration for Mini.** ``speedtest.Speedtest()`` downloads
  www.speedtest.net/speedtest-config.php before anything else, even in mini
  mode, and fails where speedtest.net is unreachable (exactly the networks a
  self-hosted Mini server is for). :class:`_Speedtest` supplies speedtest.net's
  usual configuration values itself when ``offline=True``.
* **No made-up uploads.** speedtest-cli's uploader counts the bytes it *read
  from its own buffer*, and swallows HTTP errors: a server that answers POST
  with 405 still yields an upload "speed". We wrap the HTTP opener, record
  every request's outcome, and report ``up_mbps`` null with the cause unless
  at least one upload was confirmed by the server (HTTP 200, ``size=N``).
  Downloads are checked the same way.
* **Bounded in time.** Everything runs in a worker thread; a DNS lookup or a
  connect that hangs cannot keep the probe past its timeout.

Throughput: speedtest-cli's own figure is bytes / (stop - start) from the
first request to the last thread's end, slow start and the setup of every
HTTP request included, and for uploads it counts bytes still sitting in
socket buffers at the cut-off. We count payload bytes as they are read from
responses (download) or handed to the sockets (upload) on a timeline, and
report the rate over ``[start + omit_s, last byte]`` as the reflector backend
and iperf3 -O do (for uploads the send-buffer backlog is then the same at both
ends of the window and cancels). speedtest-cli's own figures are kept beside
(``speedtest_cli``). Each direction runs ``omit_s + duration_s``.
"""

from __future__ import annotations

import fcntl
import io
import termios
import math
import socket
import struct
import threading
import time
import urllib.error
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlparse

from probes.bwclient import window_mbps
from probes.result import is_local

DOWNLOAD_SIZES = [350, 500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000]
UPLOAD_SIZES = [32768, 65536, 131072, 262144, 524288, 1048576, 7340032]


def offline_config(duration_s: float, threads: int) -> dict:
    """speedtest.net's usual settings (ratio 5, 50 upload chunks, 4 per URL), no network."""
    ratio, upload_max = 5, 50
    up = UPLOAD_SIZES[ratio - 1:]
    count = int(math.ceil(upload_max / len(up)))
    length = max(1, int(round(duration_s)))
    return {"client": {"ip": "", "lat": "0", "lon": "0", "isp": "", "isprating": "", "country": ""},
            "ignore_servers": [], "sizes": {"upload": up, "download": list(DOWNLOAD_SIZES)},
            "counts": {"upload": count, "download": 4},
            "threads": {"upload": threads, "download": 2 * threads},
            "length": {"upload": length, "download": length},
            "upload_max": count * len(up)}


def interface_address(interface: str) -> str:
    """IPv4 address of ``interface`` (speedtest-cli can only bind by address)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(s.fileno(), 0x8915,  # SIOCGIFADDR
                             struct.pack("256s", interface.encode()[:15]))
    except OSError as exc:
        raise OSError(exc.errno, f"interface {interface!r} has no IPv4 address: {exc.strerror}") from None
    finally:
        s.close()
    return socket.inet_ntoa(packed[20:24])


@dataclass
class RequestLog:
    """What actually happened to speedtest-cli's HTTP requests."""
    upload_ok: int = 0
    upload_confirmed_b: int = 0
    upload_errors: list[str] = field(default_factory=list)
    download_ok: int = 0
    download_errors: list[str] = field(default_factory=list)
    # re-entrant: an abandoned body generator can be finalised by the garbage collector
    # (GeneratorExit -> up_sent) while this very thread is inside up_sent holding the lock
    lock: threading.RLock = field(default_factory=threading.RLock)
    # (t_s, cumulative payload bytes): read from responses / handed to sockets
    down_timeline: list[tuple[float, int]] = field(default_factory=list)
    up_timeline: list[tuple[float, int]] = field(default_factory=list)
    _down_b: int = 0

    # uploads: bytes the server's TCP acknowledged = handed to the socket - SIOCOUTQ
    _up_entries: list = field(default_factory=list)   # [sock, handed, final delivered | None]
    _up_last_poll: float = 0.0

    def up_open(self, sock) -> list:
        entry = [sock, 0, None]
        with self.lock:
            self._up_entries.append(entry)
        return entry

    def up_sent(self, entry: list, n: int, final: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            entry[1] += n
            if final and entry[2] is None:
                # the body stops here (time limit or error); what is still queued is discarded
                entry[2] = max(0, entry[1] - _outq(entry[0]))
            if final or now - self._up_last_poll >= 0.01:
                self._up_last_poll = now
                total = 0
                for e in self._up_entries:
                    if e[2] is None:
                        try:
                            total += e[1] - _outq(e[0])
                            continue
                        except OSError:          # closed after its response: all delivered
                            e[2] = e[1]
                    total += e[2]
                tl = self.up_timeline
                if not tl:
                    # starts with the first byte: speedtest-cli prepares its upload buffers
                    # (up to 150 MB) before its clock starts, and so do we
                    tl.append((now, 0))
                tl.append((now, max(total, tl[-1][1])))

    def count_down(self, n: int) -> None:
        """Payload bytes read from a download response."""
        if n <= 0:
            return
        now = time.monotonic()
        with self.lock:
            self._down_b += n
            tl, total = self.down_timeline, self._down_b
            if not tl:
                tl.append((now, 0))      # the timeline starts with the first byte
            # samples at least 10 ms apart, the newest always carrying the latest count
            if len(tl) >= 2 and now - tl[-2][0] < 0.01:
                tl[-1] = (now, total)
            else:
                tl.append((now, total))


def _outq(sock) -> int:
    """Bytes in a TCP socket's send queue not yet acknowledged (SIOCOUTQ)."""
    if sock is None or sock.fileno() < 0:
        raise OSError("closed")
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]


def _tracking_opener(speedtest_mod, source: str | None, timeout: float, log: RequestLog,
                     congestion: str | None = None):
    """speedtest-cli's opener, with an HTTP connection class that reports upload bytes
    as the server's TCP acknowledges them (and applies ``congestion`` to our sockets)."""

    class _Conn(speedtest_mod.SpeedtestHTTPConnection):
        def connect(self):
            super().connect()
            if congestion:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())

        def _read_readable(self, readable):
            # http.client pulls the body through this generator and sends each chunk
            # before asking for the next one: count a chunk once it has been sent
            entry = log.up_open(self.sock)
            try:
                for chunk in super()._read_readable(readable):
                    yield chunk
                    log.up_sent(entry, len(chunk))
            except BaseException:        # speedtest-cli's time limit, or the server went away
                log.up_sent(entry, 0, final=True)
                raise

    class _Handler(speedtest_mod.SpeedtestHTTPHandler):
        handler_order = 400          # ahead of speedtest-cli's own http handler

        def http_open(self, req):
            return self.do_open(speedtest_mod._build_connection(_Conn, self.source_address, self.timeout), req)

    opener = speedtest_mod.build_opener(source, timeout)
    opener.add_handler(_Handler(source_address=(source, 0) if source else None, timeout=timeout))
    return opener


class _CountingResponse:
    """A response whose read() also counts payload bytes into the log's timeline."""

    def __init__(self, resp, log: RequestLog) -> None:
        self._resp, self._log = resp, log

    def read(self, n=-1):
        data = self._resp.read(n)
        self._log.count_down(len(data))
        return data

    def __getattr__(self, name):
        return getattr(self._resp, name)


class _RecordingOpener:
    """Wraps speedtest-cli's OpenerDirector to see statuses it would swallow."""

    def __init__(self, inner, log: RequestLog) -> None:
        self._inner, self._log = inner, log
        self.addheaders = inner.addheaders

    def open(self, request, *args, **kwargs):
        is_post = getattr(request, "data", None) is not None
        url = request.get_full_url() if hasattr(request, "get_full_url") else str(request)
        path = urlparse(url).path
        try:
            resp = self._inner.open(request, *args, **kwargs)
        except urllib.error.HTTPError as exc:
            self._note(is_post, path, f"HTTP {exc.code} {exc.reason} on {'POST' if is_post else 'GET'} {path}")
            raise
        except Exception as exc:
            if type(exc).__name__ != "SpeedtestUploadTimeout":   # its normal time limit
                reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
                self._note(is_post, path, f"{'POST' if is_post else 'GET'} {path}: {reason}")
            raise
        if not is_post:
            if "/random" in path:
                with self._log.lock:
                    self._log.download_ok += 1
                return _CountingResponse(resp, self._log)
            return resp
        body = resp.read(64)
        resp.close()
        text = body.decode("ascii", "replace").strip()
        if resp.status == 200 and text.startswith("size="):
            with self._log.lock:
                self._log.upload_ok += 1
                try:
                    self._log.upload_confirmed_b += int(text[5:].split()[0])
                except (ValueError, IndexError):
                    pass
        else:
            self._note(True, path, f"POST {path}: unexpected answer {resp.status} {text[:30]!r}")
        return io.BytesIO(body)

    def _note(self, is_post: bool, path: str, text: str) -> None:
        with self._log.lock:
            (self._log.upload_errors if is_post else self._log.download_errors).append(text)


class _Shutdown:
    """speedtest-cli polls ``isSet()``; threading.Event spells it is_set()."""

    def __init__(self, ev: threading.Event) -> None:
        self._ev = ev

    def isSet(self) -> bool:  # noqa: N802 (speedtest-cli's name)
        return self._ev.is_set()

    def set(self) -> None:
        self._ev.set()


@dataclass
class SpeedtestOutcome:
    down_mbps: float | None = None
    up_mbps: float | None = None
    ping_ms: float | None = None
    server: dict = field(default_factory=dict)
    host: str | None = None
    bytes_received: int = 0
    bytes_sent: int = 0
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    notes: list[str] = field(default_factory=list)
    did_down: bool = False
    did_up: bool = False
    cli_down_mbps: float | None = None     # speedtest-cli's own figures, for reference
    cli_up_mbps: float | None = None
    window_s: dict = field(default_factory=lambda: {"down": None, "up": None})


def run_speedtest(*, mini_url: str | None, server_id: str | None, duration_s: float, omit_s: float,
                  threads: int, congestion: str | None = None, direction: str, source: str | None, timeout_s: float,
                  stop: threading.Event,
                  on_phase: Callable[[str, str | None], None]) -> SpeedtestOutcome:
    """One speedtest: setup, download, upload. Never raises for network trouble."""
    out = SpeedtestOutcome()
    box: dict = {}

    def work() -> None:
        try:
            _work(out, mini_url, server_id, duration_s, omit_s, threads, congestion, direction, source, timeout_s,
                  stop, on_phase)
        except BaseException as exc:    # anything speedtest-cli raises becomes a cause
            box["exc"] = exc

    worker = threading.Thread(target=work, daemon=True, name="speedtest")
    worker.start()
    # setup (config, servers, latency) + two timed phases + slack for the last requests
    limit = timeout_s * 2 + 2 * (omit_s + duration_s + timeout_s) + 5
    worker.join(timeout=limit)
    if worker.is_alive():
        stop.set()
        out.errors.append(f"speedtest did not finish within {limit:.0f} s")
    elif "exc" in box:
        out.errors.append(_describe(box["exc"], mini_url))
        if isinstance(box["exc"], ImportError) or is_local(box["exc"]):   # speedtest-cli missing, no source
            out.gaps.append(out.errors[-1])
    return out


def _describe(exc: BaseException, mini_url: str | None) -> str:
    name = type(exc).__name__
    if name == "ConfigRetrievalError":
        return ("cannot reach www.speedtest.net to fetch its configuration (no internet on this "
                f"path?): {exc}")
    if name == "SpeedtestMiniConnectFailure":
        return f"cannot connect to the Speedtest Mini server {mini_url}"
    if name == "InvalidSpeedtestMiniServer":
        return f"{mini_url} does not look like a Speedtest Mini server (no upload_extension, no upload.php)"
    if name in ("ServersRetrievalError", "NoMatchedServers", "SpeedtestBestServerFailure"):
        return f"no usable speedtest.net server: {exc or name}"
    text = str(exc) or name
    return f"speedtest failed: {text}"


def _work(out: SpeedtestOutcome, mini_url, server_id, duration_s, omit_s, threads, congestion, direction, source,
          timeout_s, stop, on_phase) -> None:
    import speedtest

    class _Speedtest(speedtest.Speedtest):
        def __init__(self, *a, offline_config: dict | None = None, **kw):
            self._offline = offline_config
            super().__init__(*a, **kw)

        def get_config(self):
            if self._offline is None:
                return super().get_config()
            self.config.update(self._offline)
            self.lat_lon = (0.0, 0.0)
            return self.config

    # speedtest-cli polls its worker threads with join(timeout=0.001) in tight loops (three
    # threads waking 1000 times a second). A join that waits up to 20 ms still returns the
    # moment the thread ends, and leaves the CPU to the transfer on a busy machine.
    speedtest.thread_is_alive = _patient_is_alive
    log = RequestLog()
    shutdown = _Shutdown(stop)
    length_s = omit_s + duration_s          # speedtest-cli compares it as a float
    cfg = offline_config(length_s, threads) if mini_url else None
    st = _Speedtest(source_address=source, timeout=max(1, int(round(timeout_s))),
                    shutdown_event=shutdown, offline_config=cfg)
    st._opener = _RecordingOpener(_tracking_opener(speedtest, source, max(1, int(round(timeout_s))), log,
                                                   congestion),
                                  log)
    st.results._opener = st._opener
    st.config["length"] = {"upload": length_s, "download": length_s}
    # speedtest-cli's own rule: twice the thread count for downloads (each file is a new
    # connection; more of them keep the link busy across request gaps). Uploads stay at
    # ``threads``: their SYNs queue behind the upload itself and a full queue drops them.
    st.config["threads"] = {"upload": threads, "download": 2 * threads}
    if mini_url:
        st.get_best_server(st.set_mini_server(mini_url))
    else:
        st.get_servers([int(server_id)] if server_id else [])
        st.get_best_server()
    best = st.best
    out.server = {k: best.get(k) for k in ("id", "sponsor", "name", "country", "host", "url", "latency")}
    out.host = urlparse(best.get("url", "")).hostname
    out.ping_ms = st.results.ping if st.results.ping and st.results.ping < 3600 else None
    if out.ping_ms is None:
        raise RuntimeError(f"the server did not answer latency.txt ({best.get('url')})")
    if direction in ("down", "both") and not stop.is_set():
        on_phase("down", out.host)
        bps = st.download(threads=2 * threads)
        out.did_down = True
        out.bytes_received = int(st.results.bytes_received)
        out.cli_down_mbps = bps / 1e6
        mbps, out.window_s["down"] = _window(log.down_timeline, omit_s, "download", out)
        if log.download_ok and st.results.bytes_received > 0 and mbps is not None:
            out.down_mbps = mbps
        else:
            cause = log.download_errors[0] if log.download_errors else "no data received"
            out.errors.append(f"download not measured: {cause}")
        if log.download_errors and out.down_mbps is not None:
            out.notes.append(f"{len(log.download_errors)} download request(s) failed, e.g. {log.download_errors[0]}")
    if direction in ("up", "both") and not stop.is_set():
        on_phase("up", out.host)
        # buffers built per request, not all 150 MB up front (small field machines)
        bps = st.upload(threads=threads, pre_allocate=False)
        out.did_up = True
        out.bytes_sent = int(st.results.bytes_sent)
        out.cli_up_mbps = bps / 1e6
        mbps, out.window_s["up"] = _window(log.up_timeline, omit_s, "upload", out)
        if log.upload_ok and not log.upload_errors:
            out.up_mbps = mbps
        elif log.upload_ok:
            out.up_mbps = mbps
            out.notes.append(f"{len(log.upload_errors)} upload request(s) failed, e.g. {log.upload_errors[0]}")
        elif log.upload_errors:
            cause = log.upload_errors[0]
            if not any(e.startswith("HTTP ") for e in log.upload_errors):
                # a server that refuses early closes the connection under the body (EPIPE,
                # reset); a tiny POST lets it answer, so we can name the real cause
                cause = _diagnose_post(st._opener._inner, best.get("url", ""), speedtest) or cause
            out.errors.append("upload not measured: the server refused the upload "
                              f"({cause}); speedtest-cli would have reported "
                              f"{bps / 1e6:.1f} Mbit/s from bytes it never delivered")
        else:
            out.errors.append("upload not measured: no upload was confirmed by the server "
                              "within the test time")
    on_phase("done", out.host)


def _diagnose_post(opener, url: str, speedtest_mod) -> str | None:
    """Status of one tiny POST to the upload URL, e.g. 'HTTP 405 Method Not Allowed on POST ...'."""
    try:
        resp = opener.open(speedtest_mod.build_request(url, b"content1=x", headers={"Content-length": "10"}))
        body = resp.read(64).decode("ascii", "replace").strip()
        resp.close()
        return f"POST {urlparse(url).path} answered {resp.status} {body[:30]!r}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason} on POST {urlparse(url).path}"
    except Exception:   # still nothing better than the first error
        return None


def _window(timeline: list, omit_s: float, what: str, out: SpeedtestOutcome) -> tuple[float | None, float]:
    mbps, window, _ = window_mbps([timeline], omit_s)
    if mbps is None and len(timeline) >= 2:
        # speedtest-cli ran out of files before the slow-start allowance ended (a fast path)
        mbps, window, _ = window_mbps([timeline], 0.0)
        if mbps is not None:
            out.notes.append(f"{what}: speedtest-cli's files were done within {window:.2f} s, "
                             "so the figure includes slow start")
    return mbps, window


def _patient_is_alive(thread: threading.Thread) -> bool:
    thread.join(0.02)
    return thread.is_alive()
