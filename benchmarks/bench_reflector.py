"""Benchmark: the STAMP reflector's reply loop, CPU per reply.

    .venv/bin/python benchmarks/bench_reflector.py [--requests 20000] [--sessions 500] [--rounds 5]

A burst of G.711-sized requests (172 B, Class of Service + Extra Padding, as the
stream engine sends them; 200 B in authenticated mode) from one client socket
is queued on a bound reflector socket, then the reflector's one loop
(StampReflector._drain) answers it, called directly in this thread: no serve
thread, no poll, no client reading. The figure is this thread's CPU time per
reply (time.thread_time), for each receive path (recvmmsg + UDP GSO, and
recvmsg_into through mmsg.OneByOne) with and without a key. It is the
loop's best case (full batches, few sessions); bench_engine.py measures the
reflector under a real engine's load. The minimum over the rounds is the
figure least disturbed by other load.

Figures depend on the machine and on whatever else runs: run it on an idle
machine. This prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probes.engine import mmsg  # noqa: E402
from probes.wire import stamp  # noqa: E402
from probes.reflector import StampReflector  # noqa: E402


def per_reply_us(batch: bool, key: bytes | None, requests: int, sessions: int, rounds: int) -> list[float]:
    r = StampReflector("127.0.0.1:0", key, batch=batch)
    r.bind()
    sock = r._sock
    if batch and mmsg.available():
        r._mm, r._gso = mmsg.MmsgSocket(sock), mmsg.gso_supported(sock)
    else:
        r._mm = mmsg.OneByOne(sock)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    tlvs = stamp.sender_tlvs(172 if key is None else 200, authenticated=key is not None, dscp=46)
    out = []
    try:
        for rnd in range(rounds):
            # fresh sender sequence numbers each round (a keyed session answers each once)
            pkts = [stamp.encode_sender(stamp.SenderPacket(rnd * requests + k // sessions + 1, 0,
                                                           ssid=k % sessions + 1, tlvs=tlvs), key)
                    for k in range(requests)]
            for p in pkts:
                client.sendto(p, r.address)
            r0 = r.stats.reflected
            t0 = time.thread_time()
            for _ in range(1000):              # bounded; each call answers up to 20 000
                before = r.stats.reflected
                r._drain(sock)
                if r.stats.reflected == before:
                    break
            t1 = time.thread_time()
            done = r.stats.reflected - r0
            out.append((t1 - t0) / max(1, done) * 1e6)
            if done != requests:
                print(f"# round {rnd}: {done} of {requests} answered (kernel drops? raise net.core.rmem_max)")
    finally:
        client.close()
        r.stop()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=20000, help="requests queued per round")
    ap.add_argument("--sessions", type=int, default=500, help="sessions (SSIDs) they belong to")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the last one)")
    a = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {a.cpu if a.cpu is not None else cpus[-1]})
    print(f"# reflector reply loop, {a.requests} queued requests from {a.sessions} sessions, {a.rounds} rounds, "
          f"load {os.getloadavg()[0]:.2f}")
    print(f"# reproduce: .venv/bin/python benchmarks/bench_reflector.py --requests {a.requests} "
          f"--sessions {a.sessions} --rounds {a.rounds}")
    print(f"{'receive path':<28} {'key':<5} {'us/reply min':>12} {'median':>8}   per round")
    paths = [(True, "recvmmsg + UDP GSO"), (False, "recvmsg_into (OneByOne)")] if mmsg.available() \
        else [(False, "recvmsg_into (OneByOne)")]
    for batch, name in paths:
        for key in (None, b"bench-key"):
            us = per_reply_us(batch, key, a.requests, a.sessions, a.rounds)
            med = sorted(us)[len(us) // 2]
            print(f"{name:<28} {'yes' if key else 'no':<5} {min(us):>12.2f} {med:>8.2f}   "
                  + " ".join(f"{x:.2f}" for x in us))


if __name__ == "__main__":
    main()
