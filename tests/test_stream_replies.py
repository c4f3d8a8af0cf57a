"""Replies that arrive but are not what a STAMP reflector sends (issue #15).

Two small responders written here, on real loopback sockets:

* a TWAMP-Light responder answering with the RFC 5357 reply cut to 38 octets
  (no trailing MBZ and Sender TTL octets), leaving the SSID field zero (MBZ in
  RFC 5357) and numbering replies itself; it drops every 10th request, so the
  per-direction split it allows is checked against a known count;
* a responder answering every request with 12 octets of garbage.

Layout of the 38-octet reply (RFC 5357 §4.2.1, unauthenticated)::

     0 | Sequence Number (4) | Timestamp T3 (8) | Error Estimate (2) | MBZ (2)
    16 | Receive Timestamp T2 (8) | Sender Sequence Number (4)
    28 | Sender Timestamp T1 (8) | Sender Error Estimate (2)            = 38
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import pytest

from probes import stream
from probes.wire import stamp
from tests.conftest import run_cli

REPLY38 = struct.Struct(">IQHHQIQH")
assert REPLY38.size == 38


class Responder:
    """UDP responder on loopback; ``answer(request, count) -> bytes | None``."""

    def __init__(self, answer):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.answer = answer
        self.count = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._serve, daemon=True)
        self._t.start()

    @property
    def target(self) -> str:
        return "127.0.0.1:%d" % self.sock.getsockname()[1]

    def _serve(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            reply = self.answer(data, self)
            if reply is not None:
                self.sock.sendto(reply, addr)

    def close(self):
        self._stop.set()
        self._t.join(2)
        self.sock.close()


def twamp_light_38(data: bytes, r: Responder) -> bytes | None:
    seq, t1, ee, _ssid = stamp.SENDER_HDR.unpack_from(data, 0)
    if seq % 10 == 0:
        return None                      # "lost upstream": never numbered
    now = stamp.ntp_from_ns(time.time_ns())
    reply = REPLY38.pack(r.count, now, ee, 0, now, seq, t1, ee)
    r.count += 1
    return reply


@pytest.fixture
def responder():
    made = []

    def make(answer):
        made.append(Responder(answer))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_38_octet_twamp_light_replies_are_measured_with_a_note(responder):
    r = responder(twamp_light_38)
    res = stream.run(stream.StreamConfig(target=r.target, duration_s=2.0, timeout_s=2.0))
    # 100 sent; seq 10, 20, ... 100 never answered: 90 replies, numbered 0..89 by the responder
    assert res.measured and not res.errors
    assert res.packets == {"sent": 100, "reflected": 90, "received": 90}
    assert res.direction_split is True
    assert res.loss_pct["up"] == pytest.approx(10.0) and res.loss_pct["down"] == pytest.approx(0.0)
    assert res.replies == {"used": 90, "short": 90, "unusable": 0}
    assert 0 < res.rtt_ms["mean"] < 100 and res.jitter_ms["up"] >= 0 and res.jitter_ms["down"] >= 0
    assert res.mos is not None
    notes = " ".join(res.notes)
    assert "38-octet TWAMP-Light replies" in notes and "no Sender TTL" in notes
    assert "Session-Sender Identifier zero" in notes
    assert res.dscp["received"] is None          # no Class of Service TLV came back


def test_garbage_replies_are_named_not_no_reply(responder):
    r = responder(lambda data, _r: b"HELLO-WORLD!")
    res = stream.run(stream.StreamConfig(target=r.target, duration_s=2.0, timeout_s=1.0))
    assert not res.measured
    assert len(res.errors) == 1
    err = res.errors[0]
    assert "no reply" not in err
    assert "not a STAMP or TWAMP-Light reply" in err and "12 octets" in err
    assert b"HELLO-WORLD!"[:12].hex() in err
    assert res.replies["used"] == 0 and res.replies["unusable"] >= 1


def test_cli_garbage_responder_exit_3_with_the_cause(responder):
    r = responder(lambda data, _r: b"\x00" * 20)
    p = run_cli("probe", "stream", r.target, "--duration", "2", "--timeout", "1", "--json", timeout=60)
    assert p.returncode == 3 and "Traceback" not in p.stderr
    d = json.loads(p.stdout)
    assert "20 octets" in d["errors"][0] and "no reply" not in d["errors"][0]


def test_short_replies_decode_and_shorter_ones_do_not():
    # the one-packet users (latency --method udp, the suite's reflector check, loaded latency)
    # decode replies through stamp.decode_reflector: 38 octets are enough
    t1 = stamp.ntp_from_ns(time.time_ns())
    rp = stamp.decode_reflector(REPLY38.pack(7, t1 + 2, 0x1601, 0, t1 + 1, 3, t1, 0x1601))
    assert (rp.seq, rp.sender_seq, rp.sender_timestamp, rp.receive_timestamp, rp.timestamp) == \
        (7, 3, t1, t1 + 1, t1 + 2)
    assert rp.sender_ttl == 0 and rp.tlvs == []
    with pytest.raises(stamp.StampDecodeError):
        stamp.decode_reflector(bytes(37))


def test_latency_probe_measures_a_38_octet_responder(responder):
    from probes import latency
    r = responder(twamp_light_38)
    res = latency.run(latency.LatencyConfig(target=r.target, method="udp", count=5, interval_s=0.05))
    assert res.measured and res.method == "udp"
    assert res.received >= 4            # seq 0..4 sent; the responder drops none of those (seq % 10)
