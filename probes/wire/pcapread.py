"""A small streaming reader for pcap and pcapng capture files, down to UDP.

Why not scapy: ``rdpcap`` loads the whole file, and scapy's readers build a
full packet object per frame (slow) and silently stop at a truncated record.
Capture analysis only needs timestamp + UDP 5-tuple + payload, and must say
exactly where a file is broken, so we read the two formats ourselves.

pcap (libpcap):   24-byte global header (magic a1b2c3d4 = microseconds,
                  a1b23c4d = nanoseconds, either byte order), then records of
                  16-byte header (ts_sec, ts_frac, incl_len, orig_len) + data.
pcapng:           blocks of (type u32, total_length u32, body, total_length u32);
                  SHB 0x0a0d0d0a (byte-order magic 1a2b3c4d), IDB 1 (linktype,
                  options incl. if_tsresol), EPB 6, SPB 3, obsolete PB 2.

Link types decoded: Ethernet (1, with 802.1Q/QinQ tags), raw IP (101, 228,
229), Linux cooked SLL (113) and SLL2 (276), BSD loopback (0, 108).
"""

from __future__ import annotations

import os
import socket
import struct
from typing import BinaryIO, Iterator, NamedTuple

from probes.inputfile import InputFileError, open_regular
from probes.result import BadInput

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6), b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9), b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
PCAPNG_SHB = 0x0A0D0D0A
MAX_RECORD_B = 256 * 1024 * 1024   # a record larger than this means a corrupt length field


class CaptureError(BadInput):
    """The file is not a readable pcap/pcapng (bad input, exit 2); the
    analyzer's ``path`` field."""

    def __init__(self, message: str, *, field: str | None = "path") -> None:
        super().__init__(message, field=field)


def open_capture(path: str) -> BinaryIO:
    """``path`` opened for reading if it is a regular file; CaptureError naming the
    problem otherwise. Opened by probes.inputfile without blocking (a FIFO would wait
    for a writer forever) and checked on the open file, so a name swapped after a
    check is caught too."""
    try:
        fd, _st = open_regular(path, "capture")
    except InputFileError as exc:
        raise CaptureError(str(exc)) from None
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


class UdpDatagram(NamedTuple):   # a NamedTuple: millions are made, dataclass init is slower
    time_s: float          # capture timestamp, seconds since the epoch
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


def read_frames(f: BinaryIO, name: str = "capture") -> Iterator[tuple[float, int, bytes]]:
    """Yield (timestamp_s, linktype, frame bytes) one record at a time."""
    head = f.read(4)
    if len(head) < 4:
        raise CaptureError(f"{name}: empty or too short to be a capture file")
    if head in PCAP_MAGICS:
        yield from _read_pcap(f, name, head)
    elif struct.unpack("<I", head)[0] == PCAPNG_SHB:
        yield from _read_pcapng(f, name, head)
    else:
        raise CaptureError(f"{name}: not a pcap or pcapng file (magic {head.hex()})")


def _read_exact(f: BinaryIO, n: int, name: str, what: str, offset: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise CaptureError(f"{name}: truncated {what} at byte {offset} "
                           f"(needed {n} bytes, file has {len(data)})")
    return data


def _read_pcap(f: BinaryIO, name: str, magic: bytes) -> Iterator[tuple[float, int, bytes]]:
    endian, tick = PCAP_MAGICS[magic]
    rest = _read_exact(f, 20, name, "pcap global header", 4)
    _vmaj, _vmin, _zone, _sigfigs, _snaplen, linktype = struct.unpack(endian + "HHiIII", rest)
    linktype &= 0xFFFF   # upper bits may carry FCS info
    offset = 24
    rec = struct.Struct(endian + "IIII")
    while True:
        hdr = f.read(16)
        if not hdr:
            return
        if len(hdr) < 16:
            raise CaptureError(f"{name}: truncated record header at byte {offset}")
        ts_sec, ts_frac, incl_len, _orig = rec.unpack(hdr)
        if incl_len > MAX_RECORD_B:
            raise CaptureError(f"{name}: corrupt record at byte {offset} (length {incl_len})")
        data = _read_exact(f, incl_len, name, "packet record", offset)
        offset += 16 + incl_len
        yield ts_sec + ts_frac * tick, linktype, data


def _read_pcapng(f: BinaryIO, name: str, first: bytes) -> Iterator[tuple[float, int, bytes]]:
    endian = "<"
    interfaces: list[tuple[int, float]] = []   # (linktype, seconds per tick)
    offset = 0
    pending = first
    while True:
        head = pending + f.read(8 - len(pending))
        pending = b""
        if not head:
            return
        if len(head) < 8:
            raise CaptureError(f"{name}: truncated block header at byte {offset}")
        btype_le = struct.unpack("<I", head[:4])[0]
        if btype_le == PCAPNG_SHB:
            # the byte-order magic right after the length decides the endianness
            bom = _read_exact(f, 4, name, "section header", offset + 8)
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise CaptureError(f"{name}: bad pcapng byte-order magic at byte {offset + 8}")
            total = struct.unpack(endian + "I", head[4:8])[0]
            if total < 28 or total % 4 or total > MAX_RECORD_B:
                raise CaptureError(f"{name}: corrupt section header at byte {offset}")
            _read_exact(f, total - 12, name, "section header", offset + 12)
            interfaces = []   # interface ids are per section
            offset += total
            continue
        btype, total = struct.unpack(endian + "II", head)
        if total < 12 or total % 4 or total > MAX_RECORD_B:
            raise CaptureError(f"{name}: corrupt block length {total} at byte {offset}")
        body = _read_exact(f, total - 8, name, f"block type {btype}", offset + 8)[:-4]
        block_at = offset
        offset += total
        if btype == 1:      # Interface Description Block
            if len(body) < 8:
                raise CaptureError(f"{name}: short interface block at byte {block_at}")
            linktype = struct.unpack(endian + "H", body[:2])[0]
            interfaces.append((linktype, _tsresol(body[8:], endian)))
        elif btype in (6, 2):   # Enhanced Packet Block / obsolete Packet Block
            if len(body) < 20:
                raise CaptureError(f"{name}: short packet block at byte {block_at}")
            if btype == 6:
                iface, ts_hi, ts_lo, cap_len, _orig = struct.unpack(endian + "IIIII", body[:20])
            else:
                iface, _drops, ts_hi, ts_lo, cap_len, _orig = struct.unpack(endian + "HHIIII", body[:20])
            if iface >= len(interfaces):
                raise CaptureError(f"{name}: packet at byte {block_at} names undefined interface {iface}")
            if 20 + cap_len > len(body):
                raise CaptureError(f"{name}: packet block at byte {block_at} is shorter than its data")
            linktype, tick = interfaces[iface]
            yield ((ts_hi << 32) | ts_lo) * tick, linktype, body[20:20 + cap_len]
        elif btype == 3:    # Simple Packet Block: no timestamp, interface 0
            if not interfaces:
                raise CaptureError(f"{name}: simple packet block at byte {block_at} before any interface")
            yield 0.0, interfaces[0][0], body[4:]
        # other blocks (name resolution, statistics, custom) carry nothing we need


def _tsresol(options: bytes, endian: str) -> float:
    """if_tsresol (option 9): 10^-n or 2^-n seconds per tick; default microseconds."""
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack(endian + "HH", options[pos:pos + 4])
        if code == 0:
            break
        if code == 9 and length >= 1:
            v = options[pos + 4]
            return 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
        pos += 4 + ((length + 3) & ~3)
    return 1e-6


def udp_datagrams(frames: Iterator[tuple[float, int, bytes]]) -> Iterator[UdpDatagram]:
    """Keep the UDP datagrams (IPv4 first fragments unfragmented, IPv6) of each frame."""
    for ts, linktype, frame in frames:
        ip = _ip_payload(linktype, frame)
        if ip is None:
            continue
        d = _udp(ts, ip)
        if d is not None:
            yield d


def _ip_payload(linktype: int, frame: bytes) -> bytes | None:
    if linktype == 1:   # Ethernet
        pos, etype = 12, None
        while pos + 2 <= len(frame):
            etype = struct.unpack("!H", frame[pos:pos + 2])[0]
            if etype in (0x8100, 0x88A8, 0x9100):   # VLAN tags, possibly stacked
                pos += 4
                continue
            pos += 2
            break
        return frame[pos:] if etype in (0x0800, 0x86DD) else None
    if linktype in (101, 228, 229):
        return frame
    if linktype == 113:   # Linux cooked v1: 16-byte header, protocol at 14
        return frame[16:] if len(frame) >= 16 and frame[14:16] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype == 276:   # Linux cooked v2: 20-byte header, protocol first
        return frame[20:] if len(frame) >= 20 and frame[0:2] in (b"\x08\x00", b"\x86\xdd") else None
    if linktype in (0, 108):   # BSD loopback: 4-byte address family
        return frame[4:]
    return None


def _udp(ts: float, ip: bytes) -> UdpDatagram | None:
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4:
        if len(ip) < 20:
            return None
        ihl = (ip[0] & 0x0F) * 4
        frag = struct.unpack("!H", ip[6:8])[0]
        if ip[9] != 17 or frag & 0x3FFF:   # not UDP, or a fragment (offset or MF set)
            return None
        src, dst = _addr(socket.AF_INET, ip[12:16]), _addr(socket.AF_INET, ip[16:20])
        total = struct.unpack("!H", ip[2:4])[0]
        seg = ip[ihl:total] if total >= ihl else ip[ihl:]
    elif version == 6:
        if len(ip) < 40:
            return None
        nxt, pos = ip[6], 40
        # skip the common extension headers (hop-by-hop, routing, destination options)
        for _ in range(8):
            if nxt in (0, 43, 60) and pos + 2 <= len(ip):
                nxt, pos = ip[pos], pos + (ip[pos + 1] + 1) * 8
            else:
                break
        if nxt != 17:
            return None
        src, dst = _addr(socket.AF_INET6, ip[8:24]), _addr(socket.AF_INET6, ip[24:40])
        seg = ip[pos:]
    else:
        return None
    if len(seg) < 8:
        return None
    sport, dport, ulen = struct.unpack("!HHH", seg[:6])
    payload = seg[8:ulen] if 8 <= ulen <= len(seg) else seg[8:]
    return UdpDatagram(ts, src, sport, dst, dport, payload)


_ADDRS: dict[bytes, str] = {}


def _addr(family: int, raw: bytes) -> str:
    """Text form of an address, cached: a capture holds few addresses, many packets."""
    text = _ADDRS.get(raw)
    if text is None:
        if len(_ADDRS) > 100_000:
            _ADDRS.clear()
        text = _ADDRS[raw] = socket.inet_ntop(family, raw)
    return text
