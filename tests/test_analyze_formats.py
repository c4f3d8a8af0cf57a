"""The capture reader on the formats real captures come in: `tcpdump -i any` (Linux
cooked SLL/SLL2), raw IP, BSD loopback, VLAN-tagged Ethernet, nanosecond and
big-endian pcap. The same planted stream must give the same figures in each."""

from __future__ import annotations

import struct

import pytest

from probes import analyze
from tests.test_analyze import stream


def ip_udp(src: str, sport: int, dst: str, dport: int, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0,
                       bytes(map(int, src.split("."))), bytes(map(int, dst.split(".")))) + udp


LINK = {
    "ethernet-vlan": (1, lambda ip: b"\x02" * 6 + b"\x04" * 6 + b"\x81\x00\x00\x2a" + b"\x08\x00" + ip),
    "sll": (113, lambda ip: struct.pack("!HHH8sH", 0, 1, 6, b"\x02" * 8, 0x0800) + ip),
    "sll2": (276, lambda ip: struct.pack("!HHIHBB8s", 0x0800, 0, 2, 1, 0, 6, b"\x02" * 8) + ip),
    "raw-ip": (101, lambda ip: ip),
    "bsd-loopback": (0, lambda ip: struct.pack("<I", 2) + ip),
}


def write_pcap(path, packets, linktype, wrap, nano=False, big_endian=False):
    e = ">" if big_endian else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    with open(path, "wb") as f:
        f.write(struct.pack(e + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype))
        for t, src, sport, dst, dport, data in packets:
            frame = wrap(ip_udp(src, sport, dst, dport, data))
            sec = int(t)
            frac = round((t - sec) * (1e9 if nano else 1e6))
            f.write(struct.pack(e + "IIII", sec, frac, len(frame), len(frame)) + frame)


PLANTED = stream(80, ssrc=0x99, drop={10, 11}, late={40: 0.006})


def figures(path):
    (s,) = analyze.run(analyze.AnalyzeConfig(str(path))).streams
    return s


@pytest.mark.parametrize("link", sorted(LINK))
@pytest.mark.parametrize("variant", ["usec", "nsec-big-endian"])
def test_link_types_and_pcap_variants(tmp_path, link, variant):
    linktype, wrap = LINK[link]
    f = tmp_path / f"{link}.pcap"
    write_pcap(f, PLANTED, linktype, wrap, nano=variant != "usec", big_endian=variant != "usec")
    s = figures(f)
    assert (s.ssrc, s.src, s.dport, s.packets, s.lost) == (0x99, "10.0.0.1", 40002, 78, 2)
    # 6 ms late then back on time: J peaks at 6/16 + (6 - 6/16)/16 ms
    assert s.max_jitter_ms == pytest.approx(0.375 + 5.625 / 16, abs=1e-3)
    assert s.max_delta_ms == pytest.approx(60.0, abs=1e-3)
