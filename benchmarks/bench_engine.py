"""Benchmark: the stream engine and the STAMP reflector on loopback.

    .venv/bin/python benchmarks/bench_engine.py [--calls 1000,2000,3000] [--duration 5] [--repeat 3]
                                                [--pin on|off] [--no-iperf3] [--json out.json]

For each number of concurrent G.711/20 ms calls it runs engine steps
against `cutover reflector` (a separate process, as on a real far end) and
prints packets per second each way, self-induced loss, send lateness p50/p99,
the kernel's receive drops, CPU use of the engine and the reflector, and the
CPU time the hypervisor took from this machine meanwhile (steal); then
iperf3's maximum UDP packet rate for the same 172-byte payload on the same
machine, as the reference for what one core can push through loopback.

``--pin on`` (the default) gives each end its own core, as on a site where
the reflector runs on the far end: the engine on CPU 0, the reflector (and
iperf3's server) on the last CPU. ``--pin off`` lets the scheduler place
them; both ends then compete for both cores with the kernel's loopback work.
Each calls value runs ``--repeat`` times: one run is one sample of a noisy
machine, the summary says in how many runs the target held.

Figures depend on the machine and on whatever else runs: run it on an idle
machine. This prints; it asserts nothing (timing claims are not unit tests).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probes.engine.core import Engine, EngineConfig  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def steal_jiffies() -> int:
    """CPU time the hypervisor ran something else while this machine wanted to run
    (/proc/stat "steal", all CPUs): scheduling noise no program here can avoid."""
    with open("/proc/stat") as fh:
        fields = fh.readline().split()
    return int(fields[8]) if len(fields) > 8 else 0


def cpus(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(engine CPUs, reflector CPUs): CPU 0 and the last one when pinning on 2+ CPUs."""
    avail = sorted(os.sched_getaffinity(0))
    if not pin or len(avail) < 2:
        return None, None
    return {avail[0]}, {avail[-1]}


def bench_engine(calls_list: list[int], duration_s: float, repeat: int = 1, pin: bool = True) -> list[dict]:
    port = free_port()
    eng_cpus, refl_cpus = cpus(pin)
    before = os.sched_getaffinity(0)
    refl = subprocess.Popen([sys.executable, "-m", "harness", "reflector", "--listen", f"127.0.0.1:{port}",
                             "--no-tcp"], stderr=subprocess.DEVNULL, cwd=ROOT,
                            preexec_fn=(lambda: os.sched_setaffinity(0, refl_cpus)) if refl_cpus else None)
    if eng_cpus:
        os.sched_setaffinity(0, eng_cpus)
    rows = []
    try:
        # wait until the reflector's socket is bound (its start-up takes seconds on a busy machine;
        # packets sent before that would count as loss)
        for _ in range(100):
            ss = subprocess.run(["ss", "-Huln"], capture_output=True, text=True).stdout
            if f"127.0.0.1:{port} " in ss:
                break
            time.sleep(0.1)
        time.sleep(0.2)
        eng = Engine(EngineConfig(target=f"127.0.0.1:{port}", timeout_s=3.0))
        for calls in [c for c in calls_list for _ in range(repeat)]:
            # CPU sampled between the engine's first and last progress events (~every 0.5 s),
            # i.e. while it sends: the analysis after the run is not the loop's cost
            samples = []

            def on_progress(ev, pid=refl.pid):
                if ev.kind == "progress":
                    samples.append((time.monotonic(), self_cpu_s(), proc_cpu_s(pid)))

            st0 = steal_jiffies()
            res = eng.run(calls=calls, duration_s=duration_s, progress=on_progress)
            steal_pct = 100 * (steal_jiffies() - st0) / CLK_TCK / (res.duration_s or duration_s) / (os.cpu_count() or 1)
            if len(samples) >= 2:
                (t0, c0, r0), (t1, c1, r1) = samples[0], samples[-1]
            else:
                t0 = c0 = r0 = 0.0
                t1, c1, r1 = 1.0, float("nan"), float("nan")
            wall = t1 - t0
            d = res.to_dict()
            lat = d["sender"].get("lateness_ms") or {}
            rows.append({
                "calls": calls, "sent_pps": d["packets"]["sent"] / duration_s,
                "received_pps": d["packets"]["received"] / duration_s,
                "loss_pct": d["loss_pct"].get("total"), "loss_up_pct": d["loss_pct"].get("up"),
                "lateness_p50_ms": lat.get("p50"), "lateness_p99_ms": lat.get("p99"),
                "rx_dropped": d["sender"].get("rx_dropped"), "limited": d["sender"].get("limited"),
                "engine_cpu_pct": 100 * (c1 - c0) / wall, "reflector_cpu_pct": 100 * (r1 - r0) / wall,
                "rtt_p50_ms": d["rtt_ms"].get("p50"), "rx_timestamps": d["sender"].get("rx_timestamps"),
                "send_mode": d["sender"].get("send_mode"), "steal_pct": steal_pct, "pinned": bool(eng_cpus),
            })
            time.sleep(1.0)
    finally:
        os.sched_setaffinity(0, before)
        refl.terminate()
        refl.wait(5)
    return rows


def bench_iperf3(duration_s: float, pin: bool = True) -> dict | None:
    if not shutil.which("iperf3"):
        return None
    port = free_port(socket.SOCK_STREAM)
    eng_cpus, refl_cpus = cpus(pin)
    # the same placement as the engine run: sender on the engine's core, server on the reflector's
    srv_aff = ["-A", str(min(refl_cpus))] if refl_cpus else []
    cli_aff = ["-A", str(min(eng_cpus))] if eng_cpus else []
    srv = subprocess.Popen(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(port), *srv_aff],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        cp = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-u", "-b", "0", "-l", "172",
                             "-t", str(int(duration_s)), "--json", *cli_aff], capture_output=True, text=True,
                            timeout=duration_s + 20)
        doc = json.loads(cp.stdout)
        end = doc["end"]["sum"]
        cpu = doc["end"].get("cpu_utilization_percent") or {}
        # what the receiving iperf3 took in, and both CPU figures (% of the machine, per iperf3)
        received = end["packets"] - (end.get("lost_packets") or 0)
        return {"packets_per_s": end["packets"] / end["seconds"], "lost_pct": end.get("lost_percent"),
                "received_pps": received / end["seconds"], "sender_cpu_pct": cpu.get("host_total"),
                "receiver_cpu_pct": cpu.get("remote_total")}
    except (subprocess.SubprocessError, ValueError, KeyError) as exc:
        return {"error": str(exc)}
    finally:
        srv.kill()
        srv.wait()


STEAL_QUIET_PCT = 1.0      # a run the hypervisor left alone: under 1 % of CPU time stolen


def why_failed(r: dict) -> str:
    """Name what limited a failing run. Loss on loopback is a process that could not
    keep up (the reflector at a full core drops requests); lateness without loss is
    the engine's own core: its CPU, or the hypervisor taking the core away."""
    ncpu = os.cpu_count() or 1
    if (r["loss_pct"] or 0) > 0 or r["rx_dropped"]:
        for who, key in (("the reflector", "reflector_cpu_pct"), ("the engine", "engine_cpu_pct")):
            if r[key] == r[key] and r[key] >= 90:
                return f"{who} at {r[key]:.0f} % of a core (requests or replies dropped)"
        both = r["engine_cpu_pct"] + r["reflector_cpu_pct"]
        if both >= 75 * ncpu:
            return (f"the engine and the reflector together at {both:.0f} % of {ncpu} cores "
                    "(plus the kernel's loopback work)")
    if r["engine_cpu_pct"] == r["engine_cpu_pct"] and r["engine_cpu_pct"] >= 90:
        return f"the engine at {r['engine_cpu_pct']:.0f} % of its core"
    if r["steal_pct"] >= STEAL_QUIET_PCT:
        return (f"the hypervisor: {r['steal_pct']:.1f} % of CPU time stolen during the run "
                "(the engine's core stalled; sends due meanwhile went late)")
    return "other load on this machine (neither process at a full core, no steal)"


def ok_row(r: dict) -> bool:
    """Issue #5's target: zero self-induced loss, lateness p99 < 1 ms, no reply dropped."""
    return bool((r["loss_pct"] or 0.0) == 0 and (r["lateness_p99_ms"] or 0) < 1.0 and not r["rx_dropped"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", default="1000,2000,3000")
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per calls value (default 3)")
    ap.add_argument("--pin", choices=("on", "off"), default="on",
                    help="engine and reflector on cores of their own (default on)")
    ap.add_argument("--no-iperf3", action="store_true")
    ap.add_argument("--json", metavar="FILE", default=None, help="also write the figures as JSON")
    a = ap.parse_args()
    calls = [int(x) for x in a.calls.split(",")]
    repeat = max(1, min(a.repeat, 20))
    pin = a.pin == "on"
    eng_cpus, refl_cpus = cpus(pin)
    where = (f"engine on CPU {min(eng_cpus)}, reflector on CPU {min(refl_cpus)}" if eng_cpus
             else "not pinned")
    print(f"# engine + reflector on loopback, G.711/20 ms (172 B), {a.duration:g} s per run, "
          f"{os.cpu_count()} CPUs ({where}), load {os.getloadavg()[0]:.2f}")
    print(f"# reproduce: .venv/bin/python benchmarks/bench_engine.py --calls {a.calls} --duration {a.duration:g} "
          f"--repeat {repeat} --pin {a.pin}")
    hdr = ("calls", "up pkt/s", "down pkt/s", "loss%", "late p50", "late p99", "rx drop", "engine cpu%",
           "refl cpu%", "steal%", "ok")
    print("{:>6} {:>9} {:>10} {:>7} {:>9} {:>9} {:>8} {:>11} {:>9} {:>7} {:>4}".format(*hdr))
    rows = bench_engine(calls, a.duration, repeat, pin)
    for r in rows:
        r["ok"] = ok_row(r)
        print("{:>6} {:>9.0f} {:>10.0f} {:>7.3f} {:>9.3f} {:>9.3f} {:>8} {:>11.0f} {:>9.0f} {:>7.1f} {:>4}".format(
            r["calls"], r["sent_pps"], r["received_pps"], r["loss_pct"] or 0.0, r["lateness_p50_ms"] or 0,
            r["lateness_p99_ms"] or 0, r["rx_dropped"], r["engine_cpu_pct"], r["reflector_cpu_pct"],
            r["steal_pct"], "yes" if r["ok"] else "no"))
    print("# per calls value: runs meeting the target (zero loss, lateness p99 < 1 ms, no drops), "
          "median p99")
    for c in calls:
        mine = [r for r in rows if r["calls"] == c]
        p99s = sorted(r["lateness_p99_ms"] or 0 for r in mine)
        print(f"#   {c:>6} calls: {sum(r['ok'] for r in mine)}/{len(mine)} runs, "
              f"median lateness p99 {p99s[len(p99s) // 2]:.2f} ms, max loss "
              f"{max(r['loss_pct'] or 0 for r in mine):.3f} %")
    ok = [c for c in calls if all(r["ok"] for r in rows if r["calls"] == c)]
    print(f"# ceiling reached: {max(ok) if ok else 0} calls met the target in every run")
    quiet = [r for r in rows if r["steal_pct"] < STEAL_QUIET_PCT]
    if len(quiet) < len(rows):
        print(f"# runs with the hypervisor taking < {STEAL_QUIET_PCT:g} % of CPU time: "
              + (", ".join(f"{c} calls {sum(r['ok'] for r in quiet if r['calls'] == c)}/"
                           f"{sum(1 for r in quiet if r['calls'] == c)}" for c in calls)))
    bad = [r for r in rows if not r["ok"]]
    for first in sorted(bad, key=lambda r: r["calls"])[:1]:
        print(f"# first failing run: {first['calls']} calls (loss {first['loss_pct'] or 0:.3f} %, "
              f"lateness p99 {first['lateness_p99_ms'] or 0:.2f} ms, rx drops {first['rx_dropped']}): "
              f"limited by {why_failed(first)}")
    ip = None if a.no_iperf3 else bench_iperf3(a.duration, pin)
    if ip and "packets_per_s" in ip:
        print(f"# iperf3 -u -b 0 -l 172 on the same loopback: {ip['packets_per_s']:.0f} packets/s sent, "
              f"{ip['received_pps']:.0f} received (loss {ip['lost_pct']:.2f} %; CPU sender "
              f"{ip['sender_cpu_pct'] or 0:.0f} %, receiver {ip['receiver_cpu_pct'] or 0:.0f} %)")
    elif ip:
        print(f"# iperf3 failed: {ip['error']}")
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "iperf3": ip, "duration_s": a.duration,
                                            "pinned": pin, "load": os.getloadavg()[0]}, indent=2))


if __name__ == "__main__":
    main()
