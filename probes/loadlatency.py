"""RTT samplers for latency under load, and the bufferbloat grade (pure).

While the bandwidth probe loads the line, a sampler measures round-trip time
in the background and files every sample under the current *phase* ("idle",
"down", "up"). Two samplers share one small interface (``start``,
``phase``, ``stop``):

* :class:`StampSampler`: STAMP test packets (probes/wire/stamp.py, authenticated
  when a key is given) to the reflector's UDP port, one every ``interval_s``.
  The reflector's dwell time (transmit minus receive timestamp) is subtracted.
* :class:`IcmpSampler`: ICMP echo via ping3, when there is no reflector
  (speedtest.net and Speedtest Mini servers).

A probe that is not answered within ``timeout_s`` counts as lost in its
phase; it is not given a made-up RTT.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from probes import addr
from probes.voice import losstime
from probes.wire import stamp

# Bufferbloat grades by the rise of RTT under load (ms), the scale the
# widely used Waveform bufferbloat test publishes: A+ < 5, A < 30, B < 60,
# C < 200, D < 400, F beyond.
GRADES = ((5.0, "A+"), (30.0, "A"), (60.0, "B"), (200.0, "C"), (400.0, "D"))


def grade(increase_ms: float | None) -> str | None:
    if increase_ms is None:
        return None
    for limit, letter in GRADES:
        if increase_ms < limit:
            return letter
    return "F"


def grade_sentence(idle_ms: float | None, down_ms: float | None, up_ms: float | None) -> str:
    """One plain-language sentence about what the rise means for a call."""
    if idle_ms is None or (down_ms is None and up_ms is None):
        return "latency under load was not measured"
    rises = {k: v - idle_ms for k, v in (("downloads", down_ms), ("uploads", up_ms)) if v is not None}
    worst = max(rises, key=lambda k: rises[k])
    rise = max(0.0, rises[worst])
    letter = grade(rise)
    if rise < 5:
        return (f"grade {letter}: delay barely changes under load (+{rise:.0f} ms); "
                "calls are unaffected when someone {0}".format(worst))
    tail = ""
    if rise >= 100:
        tail = "; enough to make conversation awkward (ITU-T G.114: keep one-way delay under 150 ms)"
    elif rise >= 30:
        tail = "; noticeable on calls, and jitter buffers must absorb it"
    return f"grade {letter}: a call on this line gains ~{rise:.0f} ms of round-trip delay while someone {worst}{tail}"


def percentile(values: list[float], p: float) -> float | None:
    """Linear-interpolated percentile (numpy's default method); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


@dataclass
class PhaseStats:
    sent: int = 0
    rtts_ms: list[float] = field(default_factory=list)
    lost: list[bool] = field(default_factory=list)   # per probe in send order: True until answered
    interval_ms: float = 0.0                          # the sampler's spacing between probes

    def summary(self) -> dict:
        n = len(self.rtts_ms)
        out: dict[str, Any] = {"sent": self.sent, "received": n,
               "loss_pct": (self.sent - n) * 100 / self.sent if self.sent else None,
               "p50": percentile(self.rtts_ms, 50), "p95": percentile(self.rtts_ms, 95),
               "mean": statistics.fmean(self.rtts_ms) if n else None,
               "min": min(self.rtts_ms) if n else None, "max": max(self.rtts_ms) if n else None}
        if self.lost and self.interval_ms:
            # loss in time (probes/voice/losstime.py), round trip: the sampler cannot split directions
            out["max_gap_ms"] = losstime.max_gap_ms([self.lost], self.interval_ms)
            out["burst_ratio"] = losstime.burst_ratio([self.lost])
            num, den = [int(x) for x in self.lost], [1] * len(self.lost)
            worst: dict[str, dict[str, float | None]] = {}
            for name, ms in losstime.WINDOWS_MS.items():
                v = losstime.worst_ratio(num, den, losstime.window_packets(ms, self.interval_ms, 1))
                worst[name] = {"loss_pct": None if v is None else 100.0 * v}
            out["worst_window"] = worst
        return out


class _Sampler:
    method = "none"

    def __init__(self, interval_s: float, timeout_s: float) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.phases: dict[str, PhaseStats] = {}
        self._phase = "idle"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.error: str | None = None

    def phase(self, name: str) -> None:
        with self._lock:
            self._phase = name
            self.phases.setdefault(name, PhaseStats(interval_ms=self.interval_s * 1000))

    def _record_sent(self) -> tuple[str, int]:
        """(phase, index of this probe in the phase's loss pattern)."""
        with self._lock:
            ph = self._phase
            st = self.phases.setdefault(ph, PhaseStats(interval_ms=self.interval_s * 1000))
            st.sent += 1
            st.lost.append(True)
            return ph, len(st.lost) - 1

    def _record_rtt(self, ph: str, rtt_ms: float, index: int) -> None:
        with self._lock:
            st = self.phases[ph]
            st.rtts_ms.append(rtt_ms)
            st.lost[index] = False

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> dict[str, PhaseStats]:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout_s + 1)
        return self.phases


class StampSampler(_Sampler):
    """STAMP session-sender at a low rate (default 20 ms), RTT per phase."""

    method = "stamp"

    def __init__(self, target: addr.HostPort, *, key: bytes | None = None, source: str | None = None,
                 interface: str | None = None, interval_s: float = 0.02, timeout_s: float = 2.0) -> None:
        super().__init__(interval_s, timeout_s)
        self.key = key
        family, self.sockaddr = addr.resolve(target.host, target.port, socket.SOCK_DGRAM, source)
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        addr.bind_to_circuit(self.sock, source, interface)
        self.sock.settimeout(0.05)
        self._sent: dict[int, tuple[float, str, int]] = {}   # seq -> (sent at, phase, index in it)
        self._recv_stop = threading.Event()

    def start(self) -> None:
        self.phase("idle")
        self._threads = [threading.Thread(target=self._send_loop, daemon=True, name="rtt-send"),
                         threading.Thread(target=self._recv_loop, daemon=True, name="rtt-recv")]
        for t in self._threads:
            t.start()

    def _send_loop(self) -> None:
        seq = 0
        next_t = time.monotonic()
        while not self._stop.is_set():
            ph, idx = self._record_sent()
            pkt = stamp.SenderPacket(seq, timestamp=stamp.ntp_from_unix(time.time()))
            data = stamp.encode_sender(pkt, self.key)
            with self._lock:
                self._sent[seq] = (time.monotonic(), ph, idx)
            try:
                self.sock.sendto(data, self.sockaddr)
            except OSError as exc:
                self.error = f"cannot send STAMP probes: {exc.strerror or exc}"
            seq += 1
            next_t += self.interval_s
            self._stop.wait(max(0.0, next_t - time.monotonic()))
        # give in-flight replies time to arrive before the receiver stops
        time.sleep(min(self.timeout_s, 1.0))
        self._recv_stop.set()

    def _recv_loop(self) -> None:
        while not self._recv_stop.is_set():
            try:
                data = self.sock.recv(2048)
            except socket.timeout:
                continue
            except OSError:
                time.sleep(0.05)   # e.g. ICMP port unreachable while the reflector restarts
                continue
            now = time.monotonic()
            try:
                pkt = stamp.decode_reflector(data, self.key)
            except stamp.StampDecodeError:
                continue
            with self._lock:
                sent = self._sent.pop(pkt.sender_seq, None)
            if sent is None:
                continue
            t_sent, ph, idx = sent
            rtt_s = now - t_sent
            if rtt_s > self.timeout_s:
                continue       # too late: counted as lost
            dwell_s = (pkt.timestamp - pkt.receive_timestamp) / stamp.NTP_FRAC
            if 0 <= dwell_s < rtt_s:
                rtt_s -= dwell_s
            self._record_rtt(ph, rtt_s * 1000, idx)

    def stop(self) -> dict[str, PhaseStats]:
        phases = super().stop()
        self.sock.close()
        return phases


class IcmpSampler(_Sampler):
    """ICMP echo via ping3 (needs root or net.ipv4.ping_group_range), every 100 ms."""

    method = "icmp"

    def __init__(self, host: str, *, source: str | None = None, interface: str | None = None,
                 interval_s: float = 0.1, timeout_s: float = 2.0) -> None:
        super().__init__(interval_s, timeout_s)
        self.host, self.source, self.interface = host, source, interface

    def start(self) -> None:
        self.phase("idle")
        # several pingers so one slow reply does not stretch the sampling interval
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True, name=f"icmp-{i}")
                         for i in range(3)]
        for t in self._threads:
            t.start()

    def _loop(self, offset: int) -> None:
        import ping3
        ping3.EXCEPTIONS = True
        period = self.interval_s * len(self._threads)
        self._stop.wait(offset * self.interval_s)
        next_t = time.monotonic()
        while not self._stop.is_set():
            ph, idx = self._record_sent()
            try:
                kwargs = {"timeout": self.timeout_s, "unit": "ms"}
                if self.source:
                    kwargs["src_addr"] = self.source
                if self.interface:
                    kwargs["interface"] = self.interface
                rtt = ping3.ping(self.host, **kwargs)
                if rtt is not None and rtt is not False:
                    self._record_rtt(ph, float(rtt), idx)
            except ping3.errors.Timeout:
                pass
            except (OSError, ping3.errors.PingError) as exc:
                self.error = f"ICMP echo to {self.host} failed: {exc}"
            next_t += period
            self._stop.wait(max(0.0, next_t - time.monotonic()))
