"""`cutover analyze` on a large capture: packets/s and peak memory (issue #8:
large captures are streamed, not loaded whole).

Writes a pcap of N concurrent G.711 calls (one RTP stream each direction, 50
packets/s, 1 % random loss, +/-2 ms arrival jitter) plus 10 % non-RTP UDP,
then times probes.analyze.run over it in a fresh process and reports its peak
RSS. The capture is written with struct (scapy would take minutes for a
million packets). Prints figures; asserts nothing about speed.

    .venv/bin/python benchmarks/bench_analyze.py [--calls 100] [--seconds 60] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import struct
import subprocess
import sys
import tempfile
import time


def write_capture(path: str, calls: int, seconds: float, seed: int = 1) -> int:
    rnd = random.Random(seed)
    n = 0
    streams = 2 * calls
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(int(seconds * 50)):
            for s in range(streams):
                if rnd.random() < 0.01:
                    continue
                t = 1_700_000_000 + i * 0.02 + rnd.uniform(-0.002, 0.002) + s * 1e-5
                rtp = struct.pack("!BBHII", 0x80, 0, (i + s * 100) & 0xFFFF, i * 160, 0x1000 + s) + bytes(160)
                frames = [_frame(s, rtp)]
                if rnd.random() < 0.1:
                    frames.append(_frame(10_000 + s, bytes(rnd.getrandbits(8) for _ in range(48))))
                for fr in frames:
                    sec = int(t)
                    f.write(struct.pack("<IIII", sec, int((t - sec) * 1e6), len(fr), len(fr)) + fr)
                    n += 1
    return n


def _frame(s: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 20000 + 2 * (s % 20000), 30000 + 2 * (s % 10000), 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                     bytes([10, 0, s >> 8 & 255, s & 255]), bytes([10, 1, 0, 1]))
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + udp


CHILD = """
import json, resource, sys, time
from probes import analyze
t0 = time.perf_counter()
r = analyze.run(analyze.AnalyzeConfig(sys.argv[1]))
dt = time.perf_counter() - t0
print(json.dumps({"seconds": dt, "frames": r.frames, "streams": len(r.streams),
                  "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "loss_pct_mean": sum(s.loss_pct for s in r.streams) / max(1, len(r.streams))}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--keep", action="store_true", help="keep the generated capture")
    args = ap.parse_args()
    fd, path = tempfile.mkstemp(suffix=".pcap")
    os.close(fd)
    try:
        t0 = time.perf_counter()
        n = write_capture(path, args.calls, args.seconds)
        size_mb = os.path.getsize(path) / 1e6
        print(f"capture: {n} frames, {size_mb:.0f} MB, {2 * args.calls} RTP streams "
              f"(written in {time.perf_counter() - t0:.1f} s)")
        cp = subprocess.run([sys.executable, "-c", CHILD, path], capture_output=True, text=True,
                            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if cp.returncode != 0:
            print(cp.stderr, file=sys.stderr)
            return 1
        r = json.loads(cp.stdout)
        print(f"analyze: {r['seconds']:.1f} s, {r['frames'] / r['seconds']:,.0f} frames/s, "
              f"{size_mb / r['seconds']:.1f} MB/s, peak RSS {r['rss_mb']:.0f} MB, "
              f"{r['streams']} streams found, mean loss {r['loss_pct_mean']:.2f} % (planted 1 %)")
    finally:
        if args.keep:
            print(f"kept {path}")
        else:
            os.unlink(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
