"""RFC 8972 Location TLV: the far end tells us our source address as it saw it
(after any NAT), so a failover that changes the public address is named.

Layout checked by hand (probes/wire/stamp.py draws it)::

    | Destination Port (2) | Source Port (2) | flags | sub-type 3 | length 4 | IPv4 (4) |
"""

from __future__ import annotations

import time

import pytest

from probes import failover
from probes.wire import stamp
from probes.reflector import StampReflector
from tests.lab import impairment_relay


def test_location_tlv_by_hand():
    tlv = stamp.location_tlv(ipv6=False)
    assert tlv.type == 2 and tlv.value == bytes(4) + b"\x00\x03\x00\x04" + bytes(4)
    assert stamp.location_tlv(ipv6=True).value == bytes(4) + b"\x00\x05\x00\x10" + bytes(16)
    # a reflector on port 862 fills in 198.51.100.7:40112 (0x9cb0), as the request arrived
    buf = bytearray(tlv.value)
    stamp.fill_location(buf, 0, len(buf), ("198.51.100.7", 40112), 862)
    assert bytes(buf) == b"\x03\x5e\x9c\xb0" + b"\x00\x03\x00\x04" + bytes([198, 51, 100, 7])
    assert stamp.parse_location(buf) == "198.51.100.7:40112"
    # IPv6, and a sub-TLV of the other family left as it came
    buf6 = bytearray(stamp.location_tlv(ipv6=True).value)
    stamp.fill_location(buf6, 0, len(buf6), ("2001:db8::7", 5060), 862)
    assert stamp.parse_location(buf6) == "[2001:db8::7]:5060"
    buf4 = bytearray(tlv.value)
    stamp.fill_location(buf4, 0, len(buf4), ("2001:db8::7", 5060), 862)
    assert buf4[8:] == bytes(4) and stamp.parse_location(buf4) is None
    # zeroed (a reflector without support): no evidence
    assert stamp.parse_location(tlv.value) is None


def test_reflect_into_fills_location_in_a_full_request():
    tlvs = stamp.sender_tlvs(172, authenticated=False, dscp=46, location=stamp.location_tlv(False))
    req = stamp.encode_sender(stamp.SenderPacket(1, 0, ssid=7, tlvs=tlvs))
    assert len(req) == 172
    buf = bytearray(req)
    stamp.reflect_into(buf, len(buf), refl_seq=0, rx_ntp=1, tx_ntp=2, src=("192.0.2.1", 4000), local_port=862)
    reply = stamp.decode_reflector(bytes(buf))
    loc = [t for t in reply.tlvs if t.type == stamp.TLV_LOCATION][0]
    assert stamp.parse_location(loc.value) == "192.0.2.1:4000"
    # without the source (a caller that does not know it) the TLV comes back zeroed
    buf = bytearray(req)
    stamp.reflect_into(buf, len(buf), refl_seq=0, rx_ntp=1, tx_ntp=2)
    assert stamp.parse_location([t for t in stamp.decode_reflector(bytes(buf)).tlvs
                                 if t.type == stamp.TLV_LOCATION][0].value) is None


@pytest.fixture
def reflector():
    r = StampReflector("127.0.0.1:0").start()
    yield r
    r.stop()


def test_drill_names_both_addresses_after_a_rebinding(reflector):
    # our reflector answers the Location TLV: the relay's upstream socket is the "public
    # address"; after the blackout the relay continues from new sockets (new ports)
    host, port = reflector.address[:2]
    with impairment_relay((host, port), max_seconds=60) as relay:
        import threading
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", failover.run(failover.FailoverConfig(
            target="%s:%d" % relay.address, calls=2, duration_s=10.0))))
        t.start()
        time.sleep(4)
        relay.blackout(1000, rebind=True)
        t.join(40)
    res = out["r"]
    assert res.measured
    first, second = (a["address"] for a in res.source_addresses)
    assert first.startswith("127.0.0.1:") and second.startswith("127.0.0.1:") and first != second
    (it,) = res.interruptions
    assert it["source_changed"] is True
    assert (it["address_before"], it["address_after"]) == (first, second)
    assert any(f"changed from {first} to {second}" in n for n in res.notes)
    from harness.suite.failover import checks
    src = [c for c in checks(res.to_dict(), 1000) if c.id == "failover.source"][0]
    assert src.status == "warn" and f"from {first} to {second}" in src.reason
