"""The first SIGTERM stops a command (issue #16: a FIFO key made `probe
bandwidth` ignore SIGTERM for 565 s, until a second one).

A probe stuck where it does not watch its stop event (a TCP handshake with
a server that accepted and never answers, a UDP wait) must still end: the
first signal sets ``stop``, and if the probe has not returned a second later,
common.StopOnSignal sends the signal again, which aborts (exit 130). Each
probe here is configured to wait 20-60 s; the test only guards against that
wait (15 s), it does not time the stop.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

GUARD_S = 15


@pytest.fixture
def silent_peers():
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(16)                       # the kernel accepts; nobody ever answers
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))           # datagrams arrive; nobody ever answers
    yield tcp.getsockname()[1], udp.getsockname()[1]
    tcp.close()
    udp.close()


def _started(proc: subprocess.Popen, marker: str | None) -> None:
    """Wait (bounded) until the probe has said it started, so the signal lands mid-probe."""
    if marker is None:
        time.sleep(3.0)
        return
    for _ in range(200):
        line = proc.stderr.readline()
        if not line or marker in line:
            return


@pytest.mark.parametrize("name,argv,marker", [
    ("bandwidth", ["probe", "bandwidth", "--reflector", "127.0.0.1:{tcp}", "--timeout", "60", "--duration", "30"],
     "[bandwidth]"),
    ("sip", ["probe", "sip", "sip:127.0.0.1:{udp}", "--timeout", "30"], "[sip]"),
    # latency says nothing before its first sample (20 s): signal it once it is surely waiting
    ("latency", ["probe", "latency", "127.0.0.1:{udp}", "--method", "udp", "--timeout", "20", "--count", "5"],
     None),
])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_first_signal_stops_a_stuck_probe(silent_peers, name, argv, marker, sig):
    tcp, udp = silent_peers
    argv = [a.format(tcp=tcp, udp=udp) for a in argv]
    proc = subprocess.Popen([sys.executable, "-m", "harness", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        _started(proc, marker)
        time.sleep(0.5)
        proc.send_signal(sig)
        try:
            _out, err = proc.communicate(timeout=GUARD_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"probe {name} ignored the first {sig.name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # 3: stopped and reported what it had; 130: it did not return in time and was aborted
    assert proc.returncode in (3, 130), err
    assert f"cutover: {sig.name}: stopping" in err and "Traceback" not in err
