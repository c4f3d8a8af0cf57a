"""STAMP wire format: RFC 8762 (base packets) + RFC 8972 (SSID and TLVs).

Pure encode/decode; no sockets here. Decoding anything malformed, truncated
or failing authentication raises :class:`StampDecodeError` (and only that).

All multi-byte fields are big-endian (network order). Offsets are in bytes.

Session-Sender, unauthenticated (44 bytes + TLVs)::

     0                   1                   2                   3
     0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  0 |                        Sequence Number                        |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
  4 |                     Timestamp (NTP 64-bit)                    |
    |                                                               |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 12 |         Error Estimate        |         SSID (RFC 8972)       |
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 16 |                        MBZ (28 octets)                        |
    ~                                                               ~
    +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
 44 ~                         TLVs (RFC 8972)                       ~

Session-Reflector, unauthenticated (44 bytes + TLVs)::

  0 | Sequence Number (the reflector's own, per session)            |
  4 | Timestamp (transmit, NTP 64-bit)                      8 octets|
 12 | Error Estimate                | SSID                          |
 16 | Receive Timestamp (NTP 64-bit)                        8 octets|
 24 | Session-Sender Sequence Number                                |
 28 | Session-Sender Timestamp                              8 octets|
 36 | Session-Sender Error Estimate | MBZ (2)                       |
 40 | Ses-Sender TTL| MBZ (3)                                       |
 44 ~ TLVs                                                          ~

Session-Sender, authenticated (112 bytes + TLVs)::

  0 | Sequence Number                                               |
  4 | MBZ (12 octets)                                               |
 16 | Timestamp                                             8 octets|
 24 | Error Estimate                | SSID                          |
 28 | MBZ (68 octets)                                               |
 96 | HMAC (16 octets) = HMAC-SHA-256(key, octets 0..95)[:16]       |
112 ~ TLVs                                                          ~

Session-Reflector, authenticated (112 bytes + TLVs)::

  0 | Sequence Number                                               |
  4 | MBZ (12 octets)                                               |
 16 | Timestamp (transmit)                                  8 octets|
 24 | Error Estimate                | SSID                          |
 28 | MBZ (4)                                                       |
 32 | Receive Timestamp                                     8 octets|
 40 | MBZ (8)                                                       |
 48 | Session-Sender Sequence Number                                |
 52 | MBZ (12)                                                      |
 64 | Session-Sender Timestamp                              8 octets|
 72 | Session-Sender Error Estimate | MBZ (6) ...                   |
 80 | Ses-Sender TTL| MBZ (15 octets)                               |
 96 | HMAC (16 octets) = HMAC-SHA-256(key, octets 0..95)[:16]       |
112 ~ TLVs                                                          ~

TLV (RFC 8972 §4)::

    |U|M|I|R|R|R|R|R|     Type      |            Length             |
    ~                     Value (Length octets)                     ~

  Flags: U unrecognized, M malformed, I integrity failed (set by a reflector).
  Types used here: 1 Extra Padding (value: zeros, to reach a codec's packet
  size), 4 Class of Service, 8 HMAC.

Class of Service TLV value (4 octets, RFC 8972 §4.4)::

    |  DSCP1    |  DSCP2    |ECN| RP|          Reserved             |

  DSCP1: the DSCP the sender asks the reflector to use for its reply;
  DSCP2: the DSCP the reflector *received* (filled by the reflector);
  ECN: the ECN the reflector received; RP: reverse path (0 here).

Location TLV (type 2, RFC 8972 §4.2), as sent by the engine for failover drills::

    |       Destination Port        |          Source Port          |
    |U|M|I|R|R|R|R|R| Sub-type = 3  |          Length = 4           |
    |            Source IPv4 Address (16 octets for sub-type 5, IPv6)   |

  The sender sends ports and address zeroed; a reflector that supports it
  writes the UDP ports and the source address of the request *as it arrived*
  (after any NAT), so the sender learns its public address and sees it change
  when a failover moves the calls to another line. Sub-TLVs have the TLV
  layout; sub-types 3 (Source IPv4 Address) and 5 (Source IPv6 Address) are
  used here. A reflector without support reflects it zeroed (no evidence).

HMAC TLV (type 8, 16 octets) is the last TLV in authenticated mode and covers
the Sequence Number field followed by all preceding TLVs (RFC 8972 §4.8).
Timestamps are NTP: 32 bits of seconds since 1900 + 32 bits of fraction.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from probes.result import DecodeError, KeyFileError

UNAUTH_BASE_B = 44
AUTH_BASE_B = 112
HMAC_B = 16
HMAC_COVERED_B = 96          # octets 0..95 of an authenticated base packet
TLV_HEADER_B = 4

TLV_EXTRA_PADDING = 1
TLV_LOCATION = 2
TLV_CLASS_OF_SERVICE = 4
LOC_SUB_SRC_V4 = 3
LOC_SUB_SRC_V6 = 5
LOC_PORTS = struct.Struct(">HH")                     # Destination Port, Source Port
TLV_HMAC = 8
KNOWN_TLVS = {1, 2, 3, 4, 5, 6, 7, 8}
TLV_FLAG_U = 0x80
TLV_FLAG_M = 0x40
TLV_FLAG_I = 0x20

NTP_UNIX_OFFSET_S = 2_208_988_800     # 1900-01-01 to 1970-01-01
NTP_FRAC = 2 ** 32
NTP_OFFSET_FIXED = NTP_UNIX_OFFSET_S << 32     # the Unix epoch as a 64-bit NTP timestamp (fast paths add it)
# Error Estimate: S=0 (not externally synchronised), Z=0 (NTP format),
# Scale 22, Multiplier 1 -> 2^-10 s, about 1 ms (RFC 4656 §4.1.2: Multiplier MUST NOT be 0).
ERROR_ESTIMATE_DEFAULT = 0x1601

# Precompiled layouts shared with the engine and the reflector fast paths.
SENDER_HDR = struct.Struct(">IQHH")                 # seq, ts, errest, ssid (unauth @0)
AUTH_SEQ = struct.Struct(">I")                       # @0
AUTH_TS_EE_SSID = struct.Struct(">QHH")              # @16
REFL_UNAUTH = struct.Struct(">IQHHQIQHHB")           # @0 .. 41
REFL_AUTH_HEAD = struct.Struct(">I12xQHH4xQ8xI12xQH6xB15x")   # @0 .. 96
TLV_HDR = struct.Struct(">BBH")
SHORT_REPLY_B = 38                                   # RFC 5357 reply without MBZ + Sender TTL
REFL_SHORT = struct.Struct(">IQHHQIQH")             # its fields, @0 .. 37
COS_VALUE = struct.Struct(">HH")

# Offsets the reflector reads and writes in place (from the drawings above).
SENDER_SEQ_AT = 0            # Sequence Number, both modes (AUTH_SEQ)
AUTH_TS_AT = 16              # authenticated: Timestamp, Error Estimate, SSID (AUTH_TS_EE_SSID)
REFL_TX_TS_AT = 4            # unauthenticated reply: the reflector's transmit timestamp
REFL_UNAUTH_MBZ_AT = 41      # unauthenticated reply: the 3 MBZ octets after Ses-Sender TTL
HMAC_AT = HMAC_COVERED_B     # authenticated: the base packet's HMAC, octets 96..111

# The request the stream engine sends unauthenticated (sender_tlvs with a DSCP): the
# base packet, a Class of Service TLV, then one Extra Padding TLV to the end. The
# reflector recognises it with one unpack (COS_PAD_TLVS at COS_PAD_AT) and rewrites
# the CoS value without walking the TLVs::
#
#  44 |U|M|I|R|R|R|R|R| Type = 4 (CoS)|          Length = 4           |
#  48 |   DSCP1   |   DSCP2   |ECN| RP|          Reserved             |
#  52 |U|M|I|R|R|R|R|R| Type = 1 (Pad)|   Length = datagram - 56      |
#  56 ~                     Extra Padding (zeros)                     ~
COS_PAD_AT = UNAUTH_BASE_B                              # 44
COS_PAD_TLVS = struct.Struct(">xBHH3xBH")   # CoS type, CoS length, DSCP1|DSCP2|ECN|RP, Pad type, Pad length
COS_VALUE_AT = COS_PAD_AT + TLV_HEADER_B                # 48
PAD_VALUE_AT = COS_VALUE_AT + 4 + TLV_HEADER_B          # 56


class StampDecodeError(DecodeError, ValueError):
    """A datagram is not a valid STAMP packet (malformed, truncated, bad HMAC)."""


class StampAuthError(StampDecodeError):
    """HMAC missing or wrong (authenticated mode)."""


@dataclass
class Tlv:
    type: int
    value: bytes = b""
    flags: int = 0

    def encode(self) -> bytes:
        return TLV_HDR.pack(self.flags, self.type, len(self.value)) + bytes(self.value)


@dataclass
class SenderPacket:
    seq: int
    timestamp: int = 0                  # NTP 64-bit
    error_estimate: int = ERROR_ESTIMATE_DEFAULT
    ssid: int = 0
    tlvs: list[Tlv] = field(default_factory=list)


@dataclass
class ReflectorPacket:
    seq: int
    timestamp: int                      # reflector transmit time, NTP
    error_estimate: int
    ssid: int
    receive_timestamp: int              # reflector receive time, NTP
    sender_seq: int
    sender_timestamp: int
    sender_error_estimate: int
    sender_ttl: int
    tlvs: list[Tlv] = field(default_factory=list)


# ---------------------------------------------------------------- helpers

def ntp_from_unix(t_s: float) -> int:
    """Unix time (s, float) -> NTP 64-bit integer."""
    return int((t_s + NTP_UNIX_OFFSET_S) * NTP_FRAC) & 0xFFFF_FFFF_FFFF_FFFF


def unix_from_ntp(ntp: int) -> float:
    return ntp / NTP_FRAC - NTP_UNIX_OFFSET_S


def ntp_from_ns(t_ns: int) -> int:
    """Unix time in integer ns -> NTP 64-bit (exact: q*2^32 + r*2^32//1e9 in one step)."""
    return ((t_ns * 4294967296) // 1_000_000_000 + NTP_OFFSET_FIXED) & 0xFFFF_FFFF_FFFF_FFFF


def hmac16(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    """HMAC-SHA-256 truncated to 128 bits (RFC 8762 §4.4)."""
    return hmac.new(key, data, hashlib.sha256).digest()[:HMAC_B]


def cos_tlv(dscp1: int, dscp2: int = 0, ecn: int = 0, rp: int = 0) -> Tlv:
    first = ((dscp1 & 0x3F) << 10) | ((dscp2 & 0x3F) << 4) | ((ecn & 3) << 2) | (rp & 3)
    return Tlv(TLV_CLASS_OF_SERVICE, COS_VALUE.pack(first, 0))


def parse_cos(value: bytes) -> tuple[int, int, int, int]:
    """Class of Service value -> (dscp1, dscp2, ecn, rp)."""
    if len(value) < 4:
        raise StampDecodeError(f"Class of Service TLV has {len(value)} octets, expected 4")
    first = (value[0] << 8) | value[1]
    return (first >> 10) & 0x3F, (first >> 4) & 0x3F, (first >> 2) & 3, first & 3


def padding_tlv(total_b: int) -> Tlv:
    """An Extra Padding TLV occupying ``total_b`` octets including its header."""
    if total_b < TLV_HEADER_B:
        raise ValueError(f"padding TLV needs at least {TLV_HEADER_B} octets")
    return Tlv(TLV_EXTRA_PADDING, bytes(total_b - TLV_HEADER_B))


def base_size(authenticated: bool) -> int:
    return AUTH_BASE_B if authenticated else UNAUTH_BASE_B


def location_tlv(ipv6: bool) -> Tlv:
    """A zeroed Location TLV asking for the source port and address (see the drawing)."""
    sub_t, addr_b = (LOC_SUB_SRC_V6, 16) if ipv6 else (LOC_SUB_SRC_V4, 4)
    return Tlv(TLV_LOCATION, bytes(4) + TLV_HDR.pack(0, sub_t, addr_b) + bytes(addr_b))


def fill_location(buf: bytearray, vpos: int, length: int, src: tuple, dst_port: int) -> None:
    """Reflector side: write the ports and the request's source address into the
    Location TLV value at ``buf[vpos:vpos + length]``. A sub-TLV of the other
    address family (or one not understood) stays as it came."""
    if length < 4:
        return
    LOC_PORTS.pack_into(buf, vpos, dst_port & 0xFFFF, src[1] & 0xFFFF)
    pos, end = vpos + 4, vpos + length
    while end - pos >= TLV_HEADER_B:
        _flags, sub_t, sub_len = TLV_HDR.unpack_from(buf, pos)
        v = pos + TLV_HEADER_B
        if v + sub_len > end:
            return
        family = socket.AF_INET6 if ":" in src[0] else socket.AF_INET
        if (sub_t, sub_len, family) in ((LOC_SUB_SRC_V4, 4, socket.AF_INET),
                                        (LOC_SUB_SRC_V6, 16, socket.AF_INET6)):
            buf[v:v + sub_len] = socket.inet_pton(family, src[0].split("%")[0])
        pos = v + sub_len


def parse_location(value: bytes | bytearray | memoryview) -> str | None:
    """Sender side: "ADDR:PORT" (IPv6 as [ADDR]:PORT) of our packets as the
    reflector saw them, from a reflected Location TLV value; None when the
    reflector left it zeroed (no support) or it does not parse."""
    value = bytes(value)
    if len(value) < 4:
        return None
    _dst_port, src_port = LOC_PORTS.unpack_from(value, 0)
    pos = 4
    while len(value) - pos >= TLV_HEADER_B:
        _flags, sub_t, sub_len = TLV_HDR.unpack_from(value, pos)
        v = value[pos + TLV_HEADER_B:pos + TLV_HEADER_B + sub_len]
        if len(v) != sub_len:
            return None
        if (sub_t, sub_len) == (LOC_SUB_SRC_V4, 4) and any(v) and src_port:
            return f"{socket.inet_ntop(socket.AF_INET, v)}:{src_port}"
        if (sub_t, sub_len) == (LOC_SUB_SRC_V6, 16) and any(v) and src_port:
            return f"[{socket.inet_ntop(socket.AF_INET6, v)}]:{src_port}"
        pos += TLV_HEADER_B + sub_len
    return None


def sender_tlvs(payload_b: int, *, authenticated: bool, dscp: int | None,
                location: Tlv | None = None) -> list[Tlv]:
    """TLVs that bring a sender packet to ``payload_b`` octets of UDP payload.

    Class of Service first (when ``dscp`` is given), then the Location TLV
    (when given), then Extra Padding. When
    the codec packet is smaller than the STAMP base packet (+ CoS), the packet
    stays at that minimum: STAMP cannot be smaller (e.g. G.729/20 ms = 32 B).
    The HMAC TLV (authenticated mode) is added by :func:`encode_sender`.
    """
    tlvs: list[Tlv] = []
    size = base_size(authenticated)
    if dscp is not None:
        tlvs.append(cos_tlv(dscp))
        size += TLV_HEADER_B + 4
    if location is not None:
        tlvs.append(location)
        size += TLV_HEADER_B + len(location.value)
    if authenticated:
        size += TLV_HEADER_B + HMAC_B
    room = payload_b - size
    if room >= TLV_HEADER_B:
        tlvs.append(padding_tlv(room))
    return tlvs


def encode_tlvs(tlvs: list[Tlv]) -> bytes:
    return b"".join(t.encode() for t in tlvs)


def parse_tlvs(data: bytes | bytearray | memoryview) -> list[Tlv]:
    """Strictly parse a TLV region; raises StampDecodeError if it doesn't fit."""
    out: list[Tlv] = []
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < TLV_HEADER_B:
            raise StampDecodeError(f"{end - pos} trailing octets: too short for a TLV header")
        flags, typ, length = TLV_HDR.unpack_from(data, pos)
        pos += TLV_HEADER_B
        if pos + length > end:
            raise StampDecodeError(f"TLV type {typ} claims {length} octets, {end - pos} left")
        out.append(Tlv(typ, bytes(data[pos:pos + length]), flags))
        pos += length
    return out


def _tlv_hmac(key: bytes, seq_field: bytes, tlv_bytes: bytes) -> bytes:
    return hmac16(key, seq_field + tlv_bytes)


def _append_hmac_tlv(key: bytes, packet: bytes, base: int) -> bytes:
    tlv_bytes = packet[base:]
    mac = _tlv_hmac(key, packet[0:4], tlv_bytes)
    return packet + TLV_HDR.pack(0, TLV_HMAC, HMAC_B) + mac


def _check_auth(data: bytes, key: bytes) -> list[Tlv]:
    """Verify base HMAC and the HMAC TLV; return the TLVs without the HMAC TLV."""
    if len(data) < AUTH_BASE_B:
        raise StampDecodeError(f"{len(data)} octets: shorter than an authenticated STAMP packet (112)")
    if not hmac.compare_digest(hmac16(key, data[:HMAC_COVERED_B]), data[96:112]):
        raise StampAuthError("HMAC mismatch: wrong key or not an authenticated packet")
    tlvs = parse_tlvs(data[AUTH_BASE_B:])
    if not tlvs:
        return tlvs
    last = tlvs[-1]
    if last.type != TLV_HMAC or len(last.value) != HMAC_B:
        raise StampAuthError("TLVs in authenticated mode without a trailing HMAC TLV")
    covered = data[AUTH_BASE_B:len(data) - TLV_HEADER_B - HMAC_B]
    if not hmac.compare_digest(_tlv_hmac(key, data[0:4], covered), last.value):
        raise StampAuthError("HMAC TLV mismatch")
    return tlvs[:-1]


# ---------------------------------------------------------------- sender packets

def encode_sender(pkt: SenderPacket, key: bytes | None = None) -> bytes:
    tlv_bytes = encode_tlvs(pkt.tlvs)
    if key is None:
        return SENDER_HDR.pack(pkt.seq, pkt.timestamp, pkt.error_estimate, pkt.ssid) + bytes(28) + tlv_bytes
    base = bytearray(AUTH_BASE_B)
    AUTH_SEQ.pack_into(base, 0, pkt.seq)
    AUTH_TS_EE_SSID.pack_into(base, 16, pkt.timestamp, pkt.error_estimate, pkt.ssid)
    base[96:112] = hmac16(key, bytes(base[:HMAC_COVERED_B]))
    out = bytes(base) + tlv_bytes
    return _append_hmac_tlv(key, out, AUTH_BASE_B) if tlv_bytes else out


def decode_sender(data: bytes, key: bytes | None = None) -> SenderPacket:
    data = bytes(data)
    if key is None:
        if len(data) < UNAUTH_BASE_B:
            raise StampDecodeError(f"{len(data)} octets: shorter than a STAMP packet (44)")
        seq, ts, ee, ssid = SENDER_HDR.unpack_from(data, 0)
        return SenderPacket(seq, ts, ee, ssid, parse_tlvs(data[UNAUTH_BASE_B:]))
    tlvs = _check_auth(data, key)
    (seq,) = AUTH_SEQ.unpack_from(data, 0)
    ts, ee, ssid = AUTH_TS_EE_SSID.unpack_from(data, 16)
    return SenderPacket(seq, ts, ee, ssid, tlvs)


# ---------------------------------------------------------------- reflector packets

def encode_reflector(pkt: ReflectorPacket, key: bytes | None = None) -> bytes:
    tlv_bytes = encode_tlvs(pkt.tlvs)
    if key is None:
        head = REFL_UNAUTH.pack(pkt.seq, pkt.timestamp, pkt.error_estimate, pkt.ssid,
                                pkt.receive_timestamp, pkt.sender_seq, pkt.sender_timestamp,
                                pkt.sender_error_estimate, 0, pkt.sender_ttl)
        return head + bytes(3) + tlv_bytes
    base = bytearray(AUTH_BASE_B)
    REFL_AUTH_HEAD.pack_into(base, 0, pkt.seq, pkt.timestamp, pkt.error_estimate, pkt.ssid,
                             pkt.receive_timestamp, pkt.sender_seq, pkt.sender_timestamp,
                             pkt.sender_error_estimate, pkt.sender_ttl)
    base[96:112] = hmac16(key, bytes(base[:HMAC_COVERED_B]))
    out = bytes(base) + tlv_bytes
    return _append_hmac_tlv(key, out, AUTH_BASE_B) if tlv_bytes else out


def decode_reflector(data: bytes, key: bytes | None = None) -> ReflectorPacket:
    """A reflector's reply. Unauthenticated replies of 38-43 octets are RFC 5357
    replies cut after the Sender Error Estimate (some TWAMP-Light responders):
    everything but the Sender TTL (0 here) and TLVs is there, so they decode."""
    data = bytes(data)
    if key is None:
        if SHORT_REPLY_B <= len(data) < UNAUTH_BASE_B:
            (seq, ts, ee, ssid, rts, sseq, sts, see) = REFL_SHORT.unpack_from(data, 0)
            return ReflectorPacket(seq, ts, ee, ssid, rts, sseq, sts, see, 0, [])
        if len(data) < UNAUTH_BASE_B:
            raise StampDecodeError(f"{len(data)} octets: shorter than a STAMP reply "
                                   f"({SHORT_REPLY_B} at least, 44 in full)")
        (seq, ts, ee, ssid, rts, sseq, sts, see, _mbz, ttl) = REFL_UNAUTH.unpack_from(data, 0)
        return ReflectorPacket(seq, ts, ee, ssid, rts, sseq, sts, see, ttl,
                               parse_tlvs(data[UNAUTH_BASE_B:]))
    tlvs = _check_auth(data, key)
    (seq, ts, ee, ssid, rts, sseq, sts, see, ttl) = REFL_AUTH_HEAD.unpack_from(data, 0)
    return ReflectorPacket(seq, ts, ee, ssid, rts, sseq, sts, see, ttl, tlvs)


# ---------------------------------------------------------------- the reflector's core

def reflect(request: bytes | bytearray | memoryview, *, refl_seq: int, rx_ntp: int, tx_ntp: int,
            key: bytes | None = None, dscp_received: int = 0, ecn_received: int = 0,
            ttl: int = 255) -> tuple[bytes, int | None]:
    """Build the reply to one session-sender datagram.

    Returns ``(reply, dscp1)``: the reply (exactly as long as the request) and
    the DSCP the sender asked for in a Class of Service TLV (None if absent).
    Raises StampDecodeError for datagrams too short, or (with ``key``) not
    authenticated with that key. See :func:`reflect_into` for the rules.
    """
    buf = bytearray(request)
    dscp1 = reflect_into(buf, len(buf), refl_seq=refl_seq, rx_ntp=rx_ntp, tx_ntp=tx_ntp, key=key,
                         dscp_received=dscp_received, ecn_received=ecn_received, ttl=ttl)
    return bytes(buf), dscp1


def reflect_into(buf: bytearray, n: int, *, refl_seq: int, rx_ntp: int, tx_ntp: int,
                 key: bytes | None = None, dscp_received: int = 0, ecn_received: int = 0,
                 ttl: int = 255, src: tuple | None = None, local_port: int = 0) -> int | None:
    """Turn the request in ``buf[:n]`` into its reply, in place (the reflector's
    hot path: no allocation for unauthenticated packets). Returns DSCP1 or None.

    The TLV region is reflected: known TLVs as they came (Class of Service
    with DSCP2/ECN filled in, HMAC recomputed), unknown types with the U flag
    set; a region that does not parse as TLVs (e.g. legacy RFC 8762 zero
    padding) is reflected as opaque octets. The reply is never longer than
    the request: it *is* the request's buffer, rewritten.
    """
    if key is None:
        if n < UNAUTH_BASE_B:
            raise StampDecodeError(f"{n} octets: shorter than a STAMP packet (44)")
        seq, ts, ee, ssid = SENDER_HDR.unpack_from(buf, 0)
        base = UNAUTH_BASE_B
        REFL_UNAUTH.pack_into(buf, 0, refl_seq, tx_ntp, ERROR_ESTIMATE_DEFAULT, ssid, rx_ntp,
                              seq, ts, ee, 0, ttl & 0xFF)
        buf[REFL_UNAUTH_MBZ_AT:UNAUTH_BASE_B] = b"\0\0\0"
    else:
        _check_auth(bytes(buf[:n]), key)
        (seq,) = AUTH_SEQ.unpack_from(buf, 0)
        ts, ee, ssid = AUTH_TS_EE_SSID.unpack_from(buf, AUTH_TS_AT)
        base = AUTH_BASE_B
        REFL_AUTH_HEAD.pack_into(buf, 0, refl_seq, tx_ntp, ERROR_ESTIMATE_DEFAULT, ssid, rx_ntp,
                                 seq, ts, ee, ttl & 0xFF)
        buf[HMAC_AT:AUTH_BASE_B] = hmac16(key, bytes(buf[:HMAC_COVERED_B]))
    dscp1 = None
    # Walk the TLVs in place; stop (reflect as opaque) at the first that does not fit.
    pos, hmac_at = base, None
    while n - pos >= TLV_HEADER_B:
        flags, typ, length = TLV_HDR.unpack_from(buf, pos)
        vpos = pos + TLV_HEADER_B
        if vpos + length > n:
            break
        if typ == TLV_CLASS_OF_SERVICE and length >= 4:
            dscp1 = buf[vpos] >> 2
            first = (dscp1 << 10) | ((dscp_received & 0x3F) << 4) | ((ecn_received & 3) << 2)
            COS_VALUE.pack_into(buf, vpos, first, 0)
        elif typ == TLV_LOCATION and src is not None:
            fill_location(buf, vpos, length, src, local_port)     # src: the request's (addr, port)
        elif typ == TLV_HMAC and key is not None and length == HMAC_B:
            hmac_at = pos
        elif typ not in KNOWN_TLVS:
            buf[pos] = flags | TLV_FLAG_U
        pos = vpos + length
    if hmac_at is not None and key is not None:
        buf[hmac_at + TLV_HEADER_B:hmac_at + TLV_HEADER_B + HMAC_B] = _tlv_hmac(
            key, bytes(buf[0:4]), bytes(buf[base:hmac_at]))
    return dscp1


def config_key(key: bytes | None, key_file: str | Path | None) -> bytes | None:
    """The key a probe's config asks for: ``key`` as given, else the content of
    ``key_file``, else None (unauthenticated). A key file that cannot be used
    is KeyFileError naming the config field ``key_file`` (exit 2; the CLI says
    ``--key-file``). The one place every STAMP-speaking probe reads its key."""
    if key is not None or not key_file:
        return key
    try:
        return load_key(key_file)
    except ValueError as exc:   # load_key's documented error: missing, unreadable or empty
        raise KeyFileError(f"key_file: {exc}", field="key_file") from None


def load_key(path: str | Path) -> bytes:
    """Pre-shared HMAC key: the file's content, surrounding whitespace stripped.

    Read through ``probes.inputfile.read_secret``: a regular file of at most
    4 KiB, opened without blocking (a FIFO or /dev/zero is refused at once),
    private to its owner (a warning, an error in strict mode). Raises
    ValueError (``InputFileError``) naming the file and the problem.
    """
    from probes.inputfile import read_secret
    return read_secret(path, "key file")
