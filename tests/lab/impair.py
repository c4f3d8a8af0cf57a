"""Start/stop the impairment relay (tests/lab/relay.py) as its own process.

    with impairment_relay(upstream=("127.0.0.1", port),
                          up=Impairment(delay_ms=40, jitter_ms=10, loss_pct=2),
                          down=Impairment(delay_ms=40), seed=1) as relay:
        sock.sendto(b"x", relay.address)
        relay.stats()["up"]["forwarded"]
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Iterator

from ._lines import LineReader
from .relay import Impairment

ROOT = Path(__file__).resolve().parents[2]


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _imp_arg(imp: Impairment) -> str:
    return ",".join(f"{k}={v}" for k, v in asdict(imp).items())


class RelayProcess:
    """A running relay process and its control pipe."""

    def __init__(self, argv: list[str], start_timeout_s: float = 10.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=ROOT, env=env, text=True, bufsize=1)
        self._lines = LineReader(self.proc.stdout.fileno())
        self.final: dict | None = None
        ready = self._read_event(start_timeout_s)
        if ready is None or ready.get("event") != "ready":
            err = self._kill_and_stderr()
            raise RuntimeError(f"relay did not start: {err.strip() or ready}")
        self.address: tuple[str, int] = (ready["listen"][0], int(ready["listen"][1]))
        self.pid: int = self.proc.pid
        self.realtime: bool = bool(ready.get("realtime"))

    def _read_event(self, timeout_s: float) -> dict | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            line = self._lines.readline(max(0.0, deadline - time.monotonic()))
            if line is None:
                return None
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                continue
        return None

    def _kill_and_stderr(self) -> str:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        try:
            _, err = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            err = ""
        return err or ""

    def _command(self, line: str, timeout_s: float = 5.0) -> dict:
        if self.proc.poll() is not None:
            raise RuntimeError(f"relay exited with code {self.proc.returncode}")
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        event = self._read_event(timeout_s)
        if event is None:
            raise RuntimeError(f"relay did not answer {line.split()[0]!r}")
        if event.get("event") == "error":
            raise ValueError(event["error"])
        return event

    def stats(self) -> dict:
        """Counters now: {"up": {...}, "down": {...}, "clients": n, ...}.

        Per direction: received, forwarded (originals sent), dropped,
        duplicated (extra copies sent), reordered, sent (all datagrams put on
        the wire), send_errors, pending (scheduled, not yet sent).
        """
        if self.final is not None:
            return self.final
        event = self._command("stats")
        event.pop("event", None)
        return event

    def wait_idle(self, timeout_s: float = 5.0) -> dict:
        """Poll until nothing is pending in either direction; returns the stats."""
        deadline = time.monotonic() + timeout_s
        st = self.stats()
        while (st["up"]["pending"] or st["down"]["pending"]) and time.monotonic() < deadline:
            time.sleep(0.02)
            st = self.stats()
        return st

    def configure(self, up: Impairment | None = None, down: Impairment | None = None) -> None:
        """Change impairments of a running relay (affects packets received afterwards)."""
        cfg = {}
        if up is not None:
            cfg["up"] = asdict(up)
        if down is not None:
            cfg["down"] = asdict(down)
        self._command("config " + json.dumps(cfg))

    def blackout(self, ms: float, rebind: bool = False) -> None:
        """Drop everything both ways for ``ms`` from now (timed by the relay);
        with ``rebind`` every flow then continues from a new source port."""
        self._command(f"blackout {ms:g}{' rebind' if rebind else ''}")

    def stop(self, timeout_s: float = 5.0) -> dict | None:
        """Ask the relay to quit; returns its final stats. Kills it if it does not."""
        if self.final is not None or self.proc.poll() is not None:
            self._reap()
            return self.final
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            event = self._read_event(timeout_s)
            if event and event.get("event") == "final":
                event.pop("event")
                self.final = event
        except (BrokenPipeError, OSError, ValueError):
            pass
        self._reap(timeout_s)
        return self.final

    def _reap(self, timeout_s: float = 5.0) -> None:
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(Exception):
                stream.close()


def relay_argv(upstream: tuple[str, int], up: Impairment | None = None, down: Impairment | None = None,
               seed: int = 1, listen: tuple[str, int] | None = None, max_seconds: float = 120.0,
               preserve_tos: bool = True, source: str | None = None, netns: str | None = None,
               rt_priority: int = 10) -> list[str]:
    for imp in (up, down):
        if imp is not None:
            imp.validate()   # ValueError here, not a relay that fails to start
    if listen is None:
        listen = ("::1", 0) if ":" in upstream[0] else ("127.0.0.1", 0)
    argv = [sys.executable, "-m", "tests.lab.relay", "--listen", _fmt(*listen),
            "--upstream", _fmt(*upstream), "--up", _imp_arg(up or Impairment()),
            "--down", _imp_arg(down or Impairment()), "--seed", str(seed),
            "--max-seconds", str(max_seconds), "--rt-priority", str(rt_priority)]
    if not preserve_tos:
        argv.append("--no-preserve-tos")
    if source:
        argv += ["--source", source]
    if netns:
        argv = ["ip", "netns", "exec", netns, *argv]
    return argv


@contextlib.contextmanager
def impairment_relay(upstream: tuple[str, int], up: Impairment | None = None,
                     down: Impairment | None = None, seed: int = 1,
                     listen: tuple[str, int] | None = None, max_seconds: float = 120.0,
                     preserve_tos: bool = True, source: str | None = None,
                     netns: str | None = None, rt_priority: int = 10) -> Iterator[RelayProcess]:
    """Run a relay process for the duration of the ``with`` block.

    ``listen`` defaults to an ephemeral port on the loopback of the upstream's
    family. ``netns`` runs the relay inside that network namespace (then give a
    ``listen`` address that exists there). The process is stopped (killed if
    needed) on exit, also when the block raises; ``max_seconds`` bounds its life
    even if this process dies. ``rt_priority``: SCHED_FIFO priority of the relay
    when root (0 = normal scheduling, e.g. for floods far beyond 40k packets/s).
    """
    relay = RelayProcess(relay_argv(upstream, up, down, seed, listen, max_seconds, preserve_tos,
                                    source, netns, rt_priority))
    try:
        yield relay
    finally:
        relay.stop()
