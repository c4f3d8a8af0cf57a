"""A separate, minimal Speedtest Mini-compatible HTTP server for tests.

Independent of cutover's reflector (built on the stdlib's http.server), so a
test can show that ``cutover probe bandwidth --mini`` works against "some
other" Mini server, and that a server which refuses POST uploads does not
produce an upload figure.

    python -m tests.lab.miniserver --listen 198.18.1.2:0 [--refuse-post] [--max-seconds 120]

prints one JSON line ``{"event": "ready", "listen": [host, port]}`` on stdout
when it accepts connections, and exits after --max-seconds or when stdin
closes (the test died).

Layout served (what speedtest.net's Mini package contains and speedtest-cli uses):
``/speedtest/index.html`` naming ``upload_extension: "php"``,
``/speedtest/latency.txt`` -> ``test=test``, ``/speedtest/randomNxN.jpg``,
``POST /speedtest/upload.php`` -> ``size=<bytes received>``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import socket

SIZES = {350: 245388, 500: 505544, 750: 1118012, 1000: 1986284, 1500: 4468241,
         2000: 7907740, 2500: 12407926, 3000: 17816816, 3500: 24262167, 4000: 31625365}
BLOCK = os.urandom(1 << 16)
INDEX = (b'<html><head><script>var upload_extension = "php"; // upload_extension: "php"</script></head>'
         b'<body>mini</body></html>')


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    refuse_post = False
    # headers and body go out as separate writes; without TCP_NODELAY, Nagle + the
    # client's delayed ACK stall every small answer ~40 ms (real web servers avoid it too)
    disable_nagle_algorithm = True

    def log_message(self, *args) -> None:   # quiet: stdout carries the ready line only
        pass

    def _send(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        if path in ("/", "/speedtest", "/speedtest/", "/speedtest/index.html"):
            self._send(200, INDEX, "text/html")
        elif path == "/speedtest/latency.txt":
            self._send(200, b"test=test\n")
        elif path == "/speedtest/upload.php":
            self._send(200, b"size=0")
        elif (m := re.fullmatch(r"/speedtest/random(\d+)x\d+\.jpg", path)) and int(m.group(1)) in SIZES:
            size = SIZES[int(m.group(1))]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(size))
            self.send_header("Connection", "close")
            self.end_headers()
            left = size
            try:
                while left > 0:
                    n = min(left, len(BLOCK))
                    self.wfile.write(BLOCK[:n])
                    left -= n
            except OSError:
                pass
            self.close_connection = True
        else:
            self._send(404, b"not found\n")

    def do_POST(self) -> None:  # noqa: N802
        if self.refuse_post:
            # like a static web host: the upload script does not exist for POST
            self._send(405, b"method not allowed\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        got = 0
        try:
            while got < length:
                chunk = self.rfile.read(min(1 << 16, length - got))
                if not chunk:
                    break
                got += len(chunk)
        except OSError:
            return
        self._send(200, f"size={got}".encode())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--refuse-post", action="store_true")
    ap.add_argument("--max-seconds", type=float, default=120.0)
    args = ap.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

    handler = type("H", (Handler,), {"refuse_post": args.refuse_post})
    server = Server((host, int(port)), handler)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
    print(json.dumps({"event": "ready", "listen": list(server.server_address[:2])}), flush=True)
    stop.wait(args.max_seconds)
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
