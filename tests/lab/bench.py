"""Relay throughput figures: ``python -m tests.lab.bench [--rates 2000,5000,10000,20000]``.

Sends 172-byte datagrams at each rate for --seconds through a relay (40 +/- 10 ms,
no loss) to a sink and prints, per rate, what arrived, the relay's own losses
(none are configured, so any shortfall is the relay or the host) and the one-way
delay error (kernel receive timestamps). A figure, not a test: the machine is shared.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import struct
import time

from .impair import impairment_relay
from .relay import Impairment
from .rt import realtime

PKT = struct.Struct("!Id")
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


def run_rate(rate_pps: int, seconds: float) -> dict:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sink.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 64 << 20)
    sink.setblocking(False)
    n = int(rate_pps * seconds)
    delays = []

    def drain():
        for _ in range(100_000):
            try:
                data, anc, _f, _a = sink.recvmsg(256, 256)
            except BlockingIOError:
                return
            _seq, sent = PKT.unpack_from(data)
            for _l, t, c in anc:
                if t == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", c[:16])
                    delays.append((sec + nsec * 1e-9 - sent) * 1000.0)

    with impairment_relay(sink.getsockname(), up=Impairment(delay_ms=40, jitter_ms=10),
                          max_seconds=seconds + 30) as relay:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pad = b"\0" * (172 - PKT.size)
        t0 = time.monotonic()
        with realtime():
            # paced in 1 ms batches (sleeping, not spinning: the machine is shared)
            for i in range(n):
                due = t0 + i / rate_pps
                if due - time.monotonic() > 0.001:
                    time.sleep(due - time.monotonic())
                c.sendto(PKT.pack(i, time.time()) + pad, relay.address)
                if i % 500 == 0:
                    drain()
        st = relay.wait_idle(10)
        time.sleep(0.1)
        drain()
    sink.close()
    return {"rate_pps": rate_pps, "sent": n, "relay_received": st["up"]["received"],
            "relay_forwarded": st["up"]["forwarded"], "arrived": len(delays),
            "mean_delay_ms": statistics.mean(delays) if delays else None,
            "p99_delay_ms": sorted(delays)[int(0.99 * len(delays))] if delays else None}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m tests.lab.bench")
    p.add_argument("--rates", default="2000,5000,10000,20000")
    p.add_argument("--seconds", type=float, default=2.0)
    args = p.parse_args()
    print("relay 40 +/- 10 ms, 172-byte datagrams; expected mean delay 40 ms, p99 <= 49.8 ms")
    for rate in (int(r) for r in args.rates.split(",")):
        r = run_rate(rate, args.seconds)
        print(f"{r['rate_pps']:>6} pps: sent {r['sent']}, relay got {r['relay_received']}, "
              f"forwarded {r['relay_forwarded']}, arrived {r['arrived']}, "
              f"mean delay {r['mean_delay_ms']:.3f} ms, p99 {r['p99_delay_ms']:.3f} ms")


if __name__ == "__main__":
    main()
