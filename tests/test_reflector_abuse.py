"""The reflector under abuse (issue #16): a flood of new SSIDs does not evict
running sessions, its log stays bounded, authenticated sessions refuse
replays, and the CLI stops on the first signal while it is flooded.

Floods come from 127.0.0.2-11 (loopback addresses, Linux answers on all of
127/8) in a child process, so the stream measured meanwhile keeps this
process's interpreter to itself."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from probes import reflector as refl_mod
from probes.wire import stamp
from probes.reflector import LOG_LINES_PER_WINDOW, REPLAY_WINDOW, StampReflector, replay_window
from probes.wire.stamp import SenderPacket, decode_reflector, encode_sender
from probes.stream import StreamConfig
from probes.stream import run as run_stream

ROOT = Path(__file__).resolve().parent.parent
KEY = b"abuse-test-key"

# One new SSID per packet from each of n sources, self-clocked: each source sends a
# burst of 8 and reads its 8 replies before the next, so at most 80 flood packets
# wait in the reflector's socket buffer at any time, whatever the machine's load
# (a paced flood outran a stalled reflector on a busy machine, and the kernel then
# dropped the stream's packets with the flood's: loss that would not be the
# reflector's doing). Bounded in count and in time. Prints how many it sent.
FLOOD = r"""
import socket, sys, time
from probes.wire import stamp
port, per_source, n_sources, max_s = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
BURST = 8
socks = []
for k in range(n_sources):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((f"127.0.0.{k + 2}", 0))
    s.settimeout(2.0)
    socks.append(s)
dest, sent, deadline = ("127.0.0.1", port), 0, time.monotonic() + max_s
for base in range(0, per_source, BURST):
    ssids = range(base, min(base + BURST, per_source))
    for s in socks:
        for ssid in ssids:
            s.sendto(stamp.encode_sender(stamp.SenderPacket(1, 0, ssid=ssid)), dest)
            sent += 1
    for s in socks:
        for _ in ssids:
            try:
                s.recv(4096)
            except socket.timeout:
                break
    if time.monotonic() > deadline:
        break
print(sent, flush=True)
"""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_cli_reflector(port: int, log_path: Path, *args: str) -> subprocess.Popen:
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-m", "harness", "reflector", "--listen", f"127.0.0.1:{port}",
                             "--no-tcp", *args], stdout=subprocess.DEVNULL, stderr=log, cwd=ROOT)
    log.close()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    try:
        for _ in range(100):                     # start-up takes seconds on a busy machine
            if proc.poll() is not None:
                raise AssertionError(f"reflector exited: {log_path.read_text()}")
            s.sendto(encode_sender(SenderPacket(1, 0, ssid=65535)), ("127.0.0.1", port))
            try:
                s.recv(4096)
                return proc
            except socket.timeout:
                continue
    finally:
        s.close()
    proc.kill()
    proc.wait()
    raise AssertionError("reflector not answering")


def _stop(proc: subprocess.Popen, sig=signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- the anti-replay window

def test_replay_window_by_hand():
    W = REPLAY_WINDOW
    # 10 answered (window top 10, bit 0): a copy of 10 is refused
    assert replay_window(10, 0b1, 10) == -1
    # 9 arrives late, inside the window: accepted once (bit 1), refused the second time
    assert replay_window(10, 0b1, 9) == 0b11
    assert replay_window(10, 0b11, 9) == -1
    # 12 slides the window by 2: 10 is now bit 2, 12 bit 0
    assert replay_window(10, 0b1, 12) == 0b101
    # the oldest number still inside (top - W + 1) is accepted, the next older one refused
    assert replay_window(10 + W, 0b1, 11) == 0b1 | (1 << (W - 1))
    assert replay_window(10 + W, 0b1, 10) == -1
    # a jump of a whole window or more forgets everything before it
    assert replay_window(10, (1 << W) - 1, 10 + W) == 0b1
    # bits sliding out of the window are dropped (the bitmap stays W bits wide)
    assert replay_window(0, (1 << W) - 1, 1) == (1 << W) - 1


@pytest.mark.parametrize("batch", [True, False])
def test_a_captured_authenticated_packet_is_answered_once(batch):
    """One captured authenticated packet sent 1000 times: 1 reply, 999 refusals,
    counted in the stats, the session's summary and one aggregated log line."""
    logs: list[str] = []
    r = StampReflector("127.0.0.1:0", KEY, batch=batch, on_session_end=logs.append).start()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    try:
        tlvs = stamp.sender_tlvs(172, authenticated=True, dscp=46)
        captured = encode_sender(SenderPacket(5, stamp.ntp_from_ns(time.time_ns()), ssid=77, tlvs=tlvs), KEY)
        for _ in range(1000):
            s.sendto(captured, r.address)
        deadline = time.monotonic() + 10
        while r.stats.received < 1000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.stats.received == 1000
        s.settimeout(0.5)
        replies = []
        while True:
            try:
                replies.append(decode_reflector(s.recv(4096), KEY))
            except socket.timeout:
                break
        assert len(replies) == 1 and replies[0].sender_seq == 5 and replies[0].seq == 0
        assert r.stats.replays_refused == 999 and r.stats.reflected == 1
        # the session goes on: a new number is answered, a late one inside the window once
        s.settimeout(2.0)
        for seq, refl_seq in ((6, 1), (3, 2)):
            s.sendto(encode_sender(SenderPacket(seq, 0, ssid=77, tlvs=tlvs), KEY), r.address)
            rp = decode_reflector(s.recv(4096), KEY)
            assert (rp.sender_seq, rp.seq) == (seq, refl_seq)
        s.sendto(encode_sender(SenderPacket(3, 0, ssid=77, tlvs=tlvs), KEY), r.address)
        s.settimeout(0.3)
        with pytest.raises(socket.timeout):
            s.recv(4096)
        assert r.stats.replays_refused == 1000
    finally:
        r.stop()
        s.close()
    summary = [line for line in logs if line.startswith("session 127.0.0.1:")]
    assert len(summary) == 1 and "3 packets" in summary[0] and "1000 replays refused" in summary[0]
    dropped = [line for line in logs if line.startswith("dropped")]
    assert len(dropped) == 1
    assert dropped[0].startswith("dropped 1,000 packets from 1 source in the last ")
    assert "replayed sender sequence number" in dropped[0] and "127.0.0.1 (1,000)" in dropped[0]


# ---------------------------------------------------------------- floods

def test_flood_of_new_ssids_does_not_evict_a_running_stream(tmp_path):
    """80,000 new SSIDs from 10 addresses while a 2-call stream runs: the stream's
    sessions are established and stay (0 % loss, directions split); the table's
    overflow evicts only the flood's own one-packet sessions; the log has a
    bounded number of lines that still account for every session."""
    port = _free_udp_port()
    log_path = tmp_path / "reflector.log"
    proc = _start_cli_reflector(port, log_path)
    flood = None
    try:
        out: dict = {}
        t = threading.Thread(target=lambda: out.update(
            res=run_stream(StreamConfig(target=f"127.0.0.1:{port}", calls=2, duration_s=8.0))))
        t.start()
        time.sleep(1.5)                          # the stream's sessions exist and are established
        flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(port), "8000", "10", "30"],
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT)
        flood_out, _ = flood.communicate(timeout=60)
        t.join(60)
        assert not t.is_alive()
        assert int(flood_out) == 80_000
    finally:
        if flood is not None and flood.poll() is None:
            flood.kill()
            flood.wait()
        _stop(proc)
    res = out["res"]
    assert res.measured, res.errors
    assert res.direction_split is True
    assert res.loss_pct == {"up": 0.0, "down": 0.0, "total": 0.0}, (res.loss_pct, res.errors)
    lines = log_path.read_text().splitlines()
    final = [line for line in lines if "cutover reflector: stopped;" in line]
    assert proc.returncode == 0 and len(final) == 1, lines[-5:]
    started = int(re.search(r"; (\d+) sessions, (\d+) evicted", final[0]).group(1))
    evicted = int(re.search(r"; (\d+) sessions, (\d+) evicted", final[0]).group(2))
    # 80,000 flood sessions, the stream's 2 and the start-up check's 1 (one per source address)
    assert started == 80_000 + 2 + 1
    # the table holds 65,536: the overflow evicted flood sessions, none of the stream's
    assert evicted == started - 65_536
    # each stream session is one session from its first packet to the stop: numbered without
    # a restart (before, the flood evicted both after about 170 packets and their numbering
    # began again at 0), every packet counted: the stream's, plus its tail probe (one, or
    # two when the first one's reply came too late)
    per_call = res.packets["sent"] // 2
    stream_lines = [line for line in lines if re.match(r"\[reflector\] session 127\.0\.0\.1:\d+ ssid \d+: \d{3}", line)]
    assert len(stream_lines) == 2, stream_lines
    for line in stream_lines:
        m = re.search(r": (\d+) packets in .*, sender seq 1-(\d+) \(0 missing upstream\)", line)
        assert m and m.group(1) == m.group(2) and per_call + 1 <= int(m.group(1)) <= per_call + 2, line
        assert line.endswith("; reflector stopped")
    # bounded: a line each for at most 50 established and 50 other sessions per 10 s window,
    # then one line per reason; the test's ~15 s span at most 3 windows (80,003 sessions ended)
    assert len(lines) <= 3 * (2 * LOG_LINES_PER_WINDOW + 10), len(lines)
    single = [line for line in lines if line.startswith("[reflector] session ")]
    counted = 0
    for line in lines:
        m = re.match(r"\[reflector\] ([\d,]+) more sessions from ([\d,]+) sources? ended", line)
        if m:
            counted += int(m.group(1).replace(",", ""))
    assert len(single) + counted == started
    assert any(re.match(r"\[reflector\] [\d,]+ more sessions from 10 sources ended .*evicted for a new session "
                        r"\(session table full\)", line) for line in lines), lines


def test_table_full_of_established_sessions_refuses_newcomers_with_one_line():
    """When every session in the table is established, a flood of new SSIDs is
    refused (not answered, counted) and logged as one line per window."""
    logs: list[str] = []
    r = StampReflector("127.0.0.1:0", max_sessions=20, on_session_end=logs.append).start()
    real = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    real.settimeout(2.0)
    floods = []
    try:
        for ssid in range(20):                   # 20 sessions, answered 3 times each: established
            for seq in (1, 2, 3):
                real.sendto(encode_sender(SenderPacket(seq, 0, ssid=ssid)), r.address)
                assert decode_reflector(real.recv(4096)).seq == seq - 1
        for k in range(10):
            f = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            f.bind((f"127.0.0.{k + 2}", 0))
            floods.append(f)
        for ssid in range(500):                  # 5,000 new SSIDs from 10 sources
            for f in floods:
                f.sendto(encode_sender(SenderPacket(1, 0, ssid=ssid)), r.address)
        deadline = time.monotonic() + 10
        while r.stats.received < 60 + 5000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert r.stats.table_full == 5000 and r.stats.evicted == 0 and r.stats.reflected == 60
        for f in floods:                         # nothing answered
            f.settimeout(0.05)
            with pytest.raises(socket.timeout):
                f.recv(4096)
        # the real sessions go on, numbered where they were
        real.sendto(encode_sender(SenderPacket(4, 0, ssid=7)), r.address)
        assert decode_reflector(real.recv(4096)).seq == 3
    finally:
        r.stop()
        real.close()
        for f in floods:
            f.close()
    dropped = [line for line in logs if line.startswith("dropped")]
    assert len(dropped) == 1, logs
    assert dropped[0].startswith("dropped 5,000 packets from 10 sources in the last ")
    assert "session table full" in dropped[0] and "127.0.0.2 (500)" in dropped[0]
    assert len(logs) == 1 + 20                    # plus the 20 real sessions' own lines at stop


def test_log_tally_is_bounded_in_sources(monkeypatch):
    """More sources than the tally remembers: the count stays exact, the source
    list stops growing and says so."""
    monkeypatch.setattr(refl_mod, "MAX_TALLY_SOURCES", 3)
    t = refl_mod._Tally()
    for k in range(10):
        t.add("why", f"192.0.2.{k}")
    t.add("why", "192.0.2.0")
    [(reason, count, srcs, more)] = t.take()
    assert (reason, count, more) == ("why", 11, True)
    assert srcs == {"192.0.2.0": 2, "192.0.2.1": 1, "192.0.2.2": 1}
    assert refl_mod._sources(srcs, more) == "3+ sources" and t.take() == []


# ---------------------------------------------------------------- signals under load

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_stops_on_the_first_signal_while_flooded(sig, tmp_path):
    """Flooded with new SSIDs (a full table to end at stop), the reflector stops on
    the first SIGTERM/SIGINT: exit 0, the summary line, no second signal needed."""
    port = _free_udp_port()
    log_path = tmp_path / "reflector.log"
    proc = _start_cli_reflector(port, log_path)
    flood = subprocess.Popen([sys.executable, "-c", FLOOD, str(port), "20000", "10", "20"],
                             stdout=subprocess.DEVNULL, cwd=ROOT)
    try:
        time.sleep(3.0)                          # tens of thousands of sessions by now
        t0 = time.monotonic()
        proc.send_signal(sig)
        proc.wait(timeout=5)                     # the first signal suffices (measured: see docs)
        stop_s = time.monotonic() - t0
    finally:
        flood.kill()
        flood.wait()
        _stop(proc, signal.SIGKILL)
    text = log_path.read_text()
    assert proc.returncode == 0 and "Traceback" not in text
    final = re.search(r"stopped; (\d+) received.*; (\d+) sessions", text)
    assert final and int(final.group(2)) > 10_000, text[-500:]
    print(f"stopped {stop_s:.2f} s after {signal.Signals(sig).name} with {final.group(2)} sessions")
