"""STAMP wire format (probes/wire/stamp.py): layouts against RFC 8762/8972 and an
independent implementation (scapy.contrib.stamp), HMAC against the stdlib,
reflection rules, key files, and a hypothesis fuzz of the decoders."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probes.wire import stamp
from probes.wire.stamp import (ReflectorPacket, SenderPacket, StampAuthError, StampDecodeError, Tlv,
                          decode_reflector, decode_sender, encode_reflector, encode_sender)

KEY = b"0123456789abcdef-shared-secret"


def g711_sender(seq=1, ssid=7, key=None, dscp=46):
    tlvs = stamp.sender_tlvs(172, authenticated=key is not None, dscp=dscp)
    return encode_sender(SenderPacket(seq, stamp.ntp_from_unix(1_700_000_000.25), ssid=ssid, tlvs=tlvs), key)


# ---------------------------------------------------------------- layouts

def test_base_sizes_are_the_rfc_ones():
    assert len(encode_sender(SenderPacket(0))) == 44                    # RFC 8762 §4.2.1
    assert len(encode_sender(SenderPacket(0), KEY)) == 112              # RFC 8762 §4.2.2
    r = ReflectorPacket(0, 0, 0, 0, 0, 0, 0, 0, 255)
    assert len(encode_reflector(r)) == 44                               # §4.3.1
    assert len(encode_reflector(r, KEY)) == 112                         # §4.3.2


@pytest.mark.parametrize("key", [None, KEY])
def test_g711_packets_are_172_bytes_of_udp_payload(key):
    # G.711 at 20 ms: 160 B payload + 12 B RTP header (docs/contract.md §3)
    assert len(g711_sender(key=key)) == 172


def test_small_codec_packets_stay_at_the_stamp_minimum():
    # G.729/20 ms is 32 B: STAMP cannot be smaller than its base (+ CoS TLV)
    tlvs = stamp.sender_tlvs(32, authenticated=False, dscp=46)
    assert len(encode_sender(SenderPacket(1, tlvs=tlvs))) == 44 + 8


def test_unauthenticated_sender_field_offsets_by_hand():
    pkt = encode_sender(SenderPacket(0xA1B2C3D4, 0x1122334455667788, 0x8001, 0xBEEF))
    assert pkt[0:4] == bytes.fromhex("a1b2c3d4")
    assert pkt[4:12] == bytes.fromhex("1122334455667788")
    assert pkt[12:14] == bytes.fromhex("8001")
    assert pkt[14:16] == bytes.fromhex("beef")            # RFC 8972 SSID
    assert pkt[16:44] == bytes(28)                       # MBZ


def test_authenticated_sender_field_offsets_and_hmac_by_hand():
    pkt = encode_sender(SenderPacket(5, 0x0102030405060708, 0x1601, 0x00AA), KEY)
    assert pkt[0:4] == struct.pack(">I", 5)
    assert pkt[4:16] == bytes(12)
    assert pkt[16:24] == bytes.fromhex("0102030405060708")
    assert pkt[24:26] == bytes.fromhex("1601")
    assert pkt[26:28] == bytes.fromhex("00aa")
    assert pkt[28:96] == bytes(68)
    # HMAC-SHA-256 truncated to 128 bits over octets 0..95 (RFC 8762 §4.4)
    assert pkt[96:112] == hmac.new(KEY, pkt[:96], hashlib.sha256).digest()[:16]


def test_authenticated_reflector_offsets():
    r = ReflectorPacket(seq=9, timestamp=0xAA, error_estimate=0x1601, ssid=3, receive_timestamp=0xBB,
                        sender_seq=0xCC, sender_timestamp=0xDD, sender_error_estimate=0x8001, sender_ttl=64)
    pkt = encode_reflector(r, KEY)
    assert struct.unpack_from(">I", pkt, 0)[0] == 9
    assert struct.unpack_from(">Q", pkt, 16)[0] == 0xAA
    assert struct.unpack_from(">H", pkt, 26)[0] == 3
    assert struct.unpack_from(">Q", pkt, 32)[0] == 0xBB
    assert struct.unpack_from(">I", pkt, 48)[0] == 0xCC
    assert struct.unpack_from(">Q", pkt, 64)[0] == 0xDD
    assert struct.unpack_from(">H", pkt, 72)[0] == 0x8001
    assert pkt[80] == 64
    assert pkt[96:112] == hmac.new(KEY, pkt[:96], hashlib.sha256).digest()[:16]
    assert decode_reflector(pkt, KEY) == r


def test_ntp_timestamps():
    assert stamp.ntp_from_unix(0.0) == 2_208_988_800 << 32            # 1970 in NTP era 0
    assert stamp.ntp_from_unix(0.5) == (2_208_988_800 << 32) + (1 << 31)
    assert stamp.ntp_from_ns(1_500_000_000) == ((2_208_988_801) << 32) + (1 << 31)
    assert abs(stamp.unix_from_ntp(stamp.ntp_from_unix(1_763_788_800.123456)) - 1_763_788_800.123456) < 1e-6


def test_cos_tlv_bits():
    # DSCP1 = 46 (EF) in the top 6 bits: 101110 << 10 = 0xB800; DSCP2 46 adds 0x2E0 (RFC 8972 §4.4)
    assert stamp.cos_tlv(46).encode() == bytes.fromhex("00040004") + bytes.fromhex("b8000000")
    assert stamp.cos_tlv(46, 46).value == bytes.fromhex("bae00000")
    assert stamp.parse_cos(stamp.cos_tlv(10, 34, 3, 1).value) == (10, 34, 3, 1)


# ---------------------------------------------------------------- independent implementation

def test_our_sender_packet_as_scapy_reads_it():
    from scapy.contrib.stamp import STAMPSessionSenderTestUnauthenticated as ScapySender

    pkt = g711_sender(seq=42, ssid=0x1234)
    s = ScapySender(pkt)
    assert s.seq == 42 and s.ssid == 0x1234
    assert [(t.type, t.len) for t in s.tlv_objects] == [(4, 4), (1, 116)]
    assert bytes(s) == pkt


def test_our_reflection_as_scapy_reads_it():
    from scapy.contrib.stamp import STAMPSessionReflectorTestUnauthenticated as ScapyReflector

    req = g711_sender(seq=42, ssid=0x1234)
    reply, dscp1 = stamp.reflect(req, refl_seq=7, rx_ntp=0x1111, tx_ntp=0x2222, dscp_received=46, ttl=61)
    assert dscp1 == 46
    r = ScapyReflector(reply)
    assert (r.seq, r.ssid, r.seq_sender, r.ttl_sender) == (7, 0x1234, 42, 61)
    assert r.err_estimate_sender.scale == 22 and r.err_estimate_sender.multiplier == 1
    cos = r.tlv_objects[0]
    assert cos.type == 4 and stamp.parse_cos(cos.value)[:2] == (46, 46)


def test_scapy_built_sender_packet_decodes():
    from scapy.contrib.stamp import STAMPSessionSenderTestUnauthenticated as ScapySender

    raw = bytes(ScapySender(seq=3, ssid=99))
    p = decode_sender(raw)
    assert (p.seq, p.ssid, p.tlvs) == (3, 99, [])


# ---------------------------------------------------------------- authentication

def test_authenticated_roundtrip_with_tlvs():
    pkt = g711_sender(key=KEY)
    p = decode_sender(pkt, KEY)
    assert p.seq == 1 and [t.type for t in p.tlvs] == [stamp.TLV_CLASS_OF_SERVICE, stamp.TLV_EXTRA_PADDING]
    # the HMAC TLV (type 8) is last and covers Sequence Number + preceding TLVs (RFC 8972 §4.8)
    tlv_hmac = pkt[-16:]
    assert pkt[-20:-16] == bytes.fromhex("00080010")
    assert tlv_hmac == hmac.new(KEY, pkt[0:4] + pkt[112:-20], hashlib.sha256).digest()[:16]


def test_wrong_key_and_tampering_are_auth_errors():
    pkt = g711_sender(key=KEY)
    with pytest.raises(StampAuthError):
        decode_sender(pkt, b"another key")
    tampered = bytearray(pkt)
    tampered[130] ^= 1                      # inside the padding TLV
    with pytest.raises(StampAuthError):
        decode_sender(bytes(tampered), KEY)
    with pytest.raises(StampAuthError):
        decode_sender(g711_sender(key=None) + bytes(200), KEY)   # unauthenticated packet


def test_keyed_reflection_is_verifiable_and_same_size():
    req = g711_sender(key=KEY)
    reply, _ = stamp.reflect(req, refl_seq=0, rx_ntp=1, tx_ntp=2, key=KEY, dscp_received=10)
    assert len(reply) == len(req)
    r = decode_reflector(reply, KEY)
    assert r.sender_seq == 1 and stamp.parse_cos(r.tlvs[0].value)[1] == 10
    with pytest.raises(StampAuthError):
        stamp.reflect(req, refl_seq=0, rx_ntp=1, tx_ntp=2, key=b"wrong")


# ---------------------------------------------------------------- reflection rules

def test_reflection_moves_sender_fields_and_keeps_size():
    req = encode_sender(SenderPacket(77, 0xDEADBEEF00000001, 0x8001, 5, [stamp.padding_tlv(100)]))
    reply, dscp1 = stamp.reflect(req, refl_seq=3, rx_ntp=10, tx_ntp=11, ttl=255)
    assert dscp1 is None and len(reply) == len(req)
    r = decode_reflector(reply)
    assert (r.seq, r.timestamp, r.receive_timestamp, r.ssid) == (3, 11, 10, 5)
    assert (r.sender_seq, r.sender_timestamp, r.sender_error_estimate, r.sender_ttl) == \
        (77, 0xDEADBEEF00000001, 0x8001, 255)


def test_unknown_tlv_gets_u_flag_and_opaque_tail_is_copied():
    req = encode_sender(SenderPacket(1, tlvs=[Tlv(200, b"abcd")])) + b"\x01\x02"   # 2 stray octets
    reply, _ = stamp.reflect(req, refl_seq=0, rx_ntp=0, tx_ntp=0)
    assert reply[44] == stamp.TLV_FLAG_U and reply[45] == 200 and reply[48:52] == b"abcd"
    assert reply[-2:] == b"\x01\x02" and len(reply) == len(req)


def test_short_datagrams_are_decode_errors():
    for n in (0, 1, 43):
        with pytest.raises(StampDecodeError):
            stamp.reflect(bytes(n), refl_seq=0, rx_ntp=0, tx_ntp=0)
        with pytest.raises(StampDecodeError):
            decode_sender(bytes(n))
    with pytest.raises(StampDecodeError):
        decode_sender(bytes(44) + b"\x00\x01\x00\x09abc")        # TLV claims 9, has 3


def test_sequence_and_ssid_extremes_roundtrip():
    for seq, ssid in ((0, 0), (2 ** 32 - 1, 65535)):
        p = decode_sender(encode_sender(SenderPacket(seq, 2 ** 64 - 1, 0xFFFF, ssid)))
        assert (p.seq, p.ssid, p.timestamp) == (seq, ssid, 2 ** 64 - 1)


# ---------------------------------------------------------------- key files

def test_load_key(tmp_path):
    f = tmp_path / "k"
    f.write_bytes(b"  s3cret\n")
    assert stamp.load_key(f) == b"s3cret"
    (tmp_path / "empty").write_text(" \n")
    with pytest.raises(ValueError, match="empty"):
        stamp.load_key(tmp_path / "empty")
    with pytest.raises(ValueError, match="no such file"):
        stamp.load_key(tmp_path / "missing")
    with pytest.raises(ValueError, match="directory"):
        stamp.load_key(tmp_path)


# ---------------------------------------------------------------- fuzz

VALID = [g711_sender(), g711_sender(key=KEY)]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300),
                 st.builds(lambda i, n: VALID[i][:n], st.integers(0, 1), st.integers(0, 172)),
                 st.builds(lambda i, pos, b: VALID[i][:pos] + bytes([b]) + VALID[i][pos + 1:],
                           st.integers(0, 1), st.integers(0, 171), st.integers(0, 255))),
       st.sampled_from([None, KEY]))
def test_fuzz_decoders_raise_only_decode_errors(data, key):
    for fn in (lambda: decode_sender(data, key), lambda: decode_reflector(data, key)):
        try:
            fn()
        except StampDecodeError:
            pass
    try:
        reply, _ = stamp.reflect(data, refl_seq=1, rx_ntp=2, tx_ntp=3, key=key, dscp_received=63, ttl=300)
    except StampDecodeError:
        return
    assert len(reply) <= len(data)
