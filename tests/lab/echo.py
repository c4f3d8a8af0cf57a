"""A plain UDP echo server as its own process (reference endpoint for lab tests).

``python -m tests.lab.echo --listen 127.0.0.1:0 --max-seconds 60`` prints
``{"event": "ready", "listen": [host, port]}`` then echoes every datagram back
to its sender until ``--max-seconds`` or EOF on stdin. Runs in its own process so
the pytest process's GIL does not delay the echoes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.lab.echo")
    p.add_argument("--listen", default="127.0.0.1:0")
    p.add_argument("--max-seconds", type=float, default=120.0)
    args = p.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((host, int(port)))
    s.setblocking(False)
    print(json.dumps({"event": "ready", "listen": list(s.getsockname()[:2]), "pid": os.getpid()}), flush=True)
    end = time.monotonic() + args.max_seconds
    echoed = 0
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([s, sys.stdin], [], [], left)
        if sys.stdin in ready and not os.read(sys.stdin.fileno(), 4096):
            break
        if s in ready:
            for _ in range(256):
                try:
                    data, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                with contextlib.suppress(OSError):
                    s.sendto(data, addr)
                    echoed += 1
    print(json.dumps({"event": "final", "echoed": echoed}), flush=True)
    return 0


@contextlib.contextmanager
def udp_echo(listen: str = "127.0.0.1:0", netns: str | None = None,
             max_seconds: float = 120.0) -> Iterator[tuple[str, int]]:
    """Run an echo server process; yields its (host, port)."""
    argv = [sys.executable, "-m", "tests.lab.echo", "--listen", listen, "--max-seconds", str(max_seconds)]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        line = proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError("echo server did not start")
        info = json.loads(line)
        yield info["listen"][0], int(info["listen"][1])
    finally:
        with contextlib.suppress(Exception):
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        proc.stdout.close()


if __name__ == "__main__":
    sys.exit(main())
