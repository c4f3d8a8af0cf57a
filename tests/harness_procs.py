"""Test helpers for the harness tests: a real `cutover reflector` child process
on an ephemeral loopback port, and the demo profile pointed at it."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from harness.profile import DEMO_PROFILE

ROOT = Path(__file__).resolve().parent.parent


class ReflectorProc:
    """`python -m harness reflector --listen 127.0.0.1:0`; the port is read
    from its start line. Stopped by PID (terminate, then kill)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "harness", "reflector", "--listen", "127.0.0.1:0"],
                                     stdout=subprocess.DEVNULL, stderr=open(log, "w"), cwd=ROOT)
        self.port = None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = re.search(r"UDP 127\.0\.0\.1:(\d+)", log.read_text())
            if m:
                self.port = int(m.group(1))
                break
            time.sleep(0.05)
        if self.port is None:
            self.stop()
            raise RuntimeError(f"reflector did not start: {log.read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def closed_udp_port() -> int:
    """A loopback UDP port nobody listens on (bound, then released)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def demo_profile(path: Path, old_port: int, new_port: int, extra: str = "") -> Path:
    text = DEMO_PROFILE.read_text()
    old_i = text.index("- name: old")
    new_i = text.index("- name: new")
    head, old, new = text[:old_i], text[old_i:new_i], text[new_i:]
    old = old.replace("127.0.0.1:8620", f"127.0.0.1:{old_port}")
    new = new.replace("127.0.0.1:8620", f"127.0.0.1:{new_port}")
    path.write_text(head + old + new + extra)
    return path
