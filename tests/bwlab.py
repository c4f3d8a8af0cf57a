"""Helpers for the bandwidth tests: a far-end reflector process, Mini servers, irtt/iperf3 runs.

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

# Fallback used only while `cutover reflector` is not wired up: the same two
# services in one process, announced the same way (ready once both listen).
_FALLBACK = r"""
import sys, threading, time
from probes.bwservice import BandwidthService
from probes.reflector import StampReflector
host, port = sys.argv[1], int(sys.argv[2])
key = open(sys.argv[3], 'rb').read().strip() if len(sys.argv) > 3 else None
bw = BandwidthService(host, port, key=key).start()
r = StampReflector(f"[{host}]:{bw.port}" if ":" in host else f"{host}:{bw.port}", key=key).start()
print("ready", bw.port, flush=True)
time.sleep(float(120))
"""


def _reflector_cli_built() -> bool:
    text = (ROOT / "harness" / "cli" / "cmd_reflector.py").read_text()
    return "not_built(" not in text and "bwservice" in text


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
    if _reflector_cli_built():
        hp = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        argv = [sys.executable, "-m", "harness", "reflector", "--listen", hp]
        if key_file:
            argv += ["--key-file", key_file]
    else:
        argv = [sys.executable, "-c", _FALLBACK, host, str(port)] + ([key_file] if key_file else [])
    if lab is not None:
        proc = lab.popen(node, argv, env=env, cwd=ROOT)
        wait_port(host, port, netns_exec=["ip", "netns", "exec", lab.ns(node)])
    else:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
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


def iperf3_mbps(lab, client: str, server_host: str, port: int, *, reverse: bool, seconds: float,
                omit: float, streams: int, congestion: str | None = None) -> float:
    """iperf3's receiver-side payload rate (sum_received) in 10^6 bit/s."""
    argv = ["iperf3", "-c", server_host, "-p", str(port), "-t", str(seconds), "-O", str(omit),
            "-P", str(streams), "-J"]
    if reverse:
        argv.append("-R")
    if congestion:
        argv += ["-C", congestion]
    cp = lab.run(client, argv, timeout=seconds + omit + 30)
    data = json.loads(cp.stdout)
    return data["end"]["sum_received"]["bits_per_second"] / 1e6
