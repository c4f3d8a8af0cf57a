"""Helpers for the bandwidth tests: a far-end reflector process, Mini servers, the CLI in a namespace.

The reflector runs as its own process (``cutover reflector``: STAMP on UDP and
the bandwidth service on TCP, same port), so a test can kill it mid-transfer
by PID, exactly as a crash at the far end would look.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def wait_port(host: str, port: int, timeout_s: float = 10.0, netns_exec: list[str] | None = None) -> None:
    """Wait until TCP host:port accepts (probed from inside the namespace when given)."""
    deadline = time.monotonic() + timeout_s
    code = ("import socket,sys; s=socket.create_connection((sys.argv[1], int(sys.argv[2])), 1); s.close()")
    while time.monotonic() < deadline:
        argv = (netns_exec or []) + [sys.executable, "-c", code, host, str(port)]
        if subprocess.run(argv, capture_output=True, timeout=10).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listening on {host}:{port} after {timeout_s} s")


def start_reflector(lab, node: str | None, host: str, port: int, key_file: str | None = None
                    ) -> subprocess.Popen:
    """A reflector process on host:port (in ``node``'s namespace; None: this one)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    hp = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    argv = [sys.executable, "-m", "harness", "reflector", "--listen", hp]
    if key_file:
        argv += ["--key-file", key_file]
    if lab is not None:
        # its per-session lines go nowhere: an unread pipe could fill and stall it
        proc = lab.popen(node, argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(host, port, netns_exec=["ip", "netns", "exec", lab.ns(node)])
    else:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        wait_port(host, port)
    return proc


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP right now (loopback tests)."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind((host, 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind((host, port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise RuntimeError("no free port")


def start_miniserver(lab, node: str, host: str, refuse_post: bool = False) -> tuple[subprocess.Popen, int]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "tests.lab.miniserver", "--listen", f"{host}:0", "--max-seconds", "120"]
    if refuse_post:
        argv.append("--refuse-post")
    proc = lab.popen(node, argv, env=env, cwd=ROOT, stdin=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 10)
    line = proc.stdout.readline() if ready else ""
    if not line:
        raise RuntimeError(f"miniserver did not start: {proc.stderr.read() if proc.poll() is not None else ''}")
    return proc, int(json.loads(line)["listen"][1])


def cli_argv(lab, node: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", lab.ns(node), sys.executable, "-m", "harness", *args]


def run_cli_in(lab, node: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("CUTOVER_DEBUG", None)
    return subprocess.run(cli_argv(lab, node, *args), capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)
