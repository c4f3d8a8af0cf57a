"""Pure parts of the call probe: digest (RFC 7616/2617 examples), challenges,
SIP parsing, SDP offer/answer, G.711 encoding (against Python's audioop where
it exists), per-direction RTP figures by hand, account files, the suite step."""

from __future__ import annotations

import os
import struct
import warnings

import pytest

from harness.profile import load_profile_text
from harness.suite import call as call_step
from probes.voice import emodel
from probes.rtp import (_alaw, _mulaw, build_sdp, choose, direction_stats, negotiated, offer_encodings, parse_sdp,
                        signal_frames, unwrap)
from probes.sipaccount import MAX_ACCOUNT_BYTES, AccountError, load_account
from probes.sipua import (Challenge, authorization, build_response, digest_response, granted_expiry,
                          parse_challenge, parse_message, pick_challenge)

# ---- digest -------------------------------------------------------------------------------

RFC7616 = dict(realm="http-auth@example.org", nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
               cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")


@pytest.mark.parametrize("algorithm,expected", [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),                                     # RFC 7616 §3.9.1
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_digest_rfc7616_examples(algorithm, expected):
    ch = Challenge("www-authenticate", RFC7616["realm"], RFC7616["nonce"], algorithm, ["auth"])
    assert digest_response(ch, "GET", "/dir/index.html", "Mufasa", "Circle of Life", RFC7616["cnonce"]) == expected


def test_digest_rfc2617_example():
    ch = Challenge("www-authenticate", "testrealm@host.com", "dcd98b7102dd2f0e8b11d0f600bfb0c093", "MD5",
                   ["auth", "auth-int"])
    assert digest_response(ch, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", "0a4f113b") == \
        "6629fae49393a05397450978507c4ef1"


def test_strongest_challenge_wins_and_header_names():
    resp = parse_message(
        b"SIP/2.0 407 Proxy Authentication Required\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
        b"Call-ID: x\r\nCSeq: 2 INVITE\r\n"
        b'Proxy-Authenticate: Digest realm="sip.example", nonce="n1", algorithm=MD5, qop="auth"\r\n'
        b'Proxy-Authenticate: Digest realm="sip.example", nonce="n2", algorithm=SHA-256, qop="auth,auth-int", '
        b'opaque="o"\r\nContent-Length: 0\r\n\r\n')
    ch = pick_challenge(resp)
    assert (ch.algorithm, ch.nonce, ch.qop, ch.opaque, ch.header) == ("SHA-256", "n2", ["auth", "auth-int"], "o",
                                                                     "proxy-authenticate")
    name, value = authorization(ch, "INVITE", "sip:bob@sip.example", "alice", "pw", cnonce="c0ffee")
    assert name == "Proxy-Authorization"
    want = digest_response(ch, "INVITE", "sip:bob@sip.example", "alice", "pw", "c0ffee")
    assert f'response="{want}"' in value and "nc=00000001" in value and 'opaque="o"' in value
    assert "pw" not in value.replace(want, "")


def test_unknown_algorithm_only_is_no_challenge():
    assert parse_challenge("www-authenticate", 'Basic realm="x"') is None
    resp = parse_message(b'SIP/2.0 401 Unauthorized\r\nWWW-Authenticate: Digest realm="r", nonce="n", '
                         b'algorithm=SHA-1024\r\nCall-ID: x\r\nCSeq: 1 REGISTER\r\n\r\n')
    assert pick_challenge(resp) is None


# ---- messages -------------------------------------------------------------------------------

INVITE = (b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKa;rport\r\n"
          b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb\r\nf: <sip:alice@x>;tag=abc\r\nt: <sip:bob@x>\r\n"
          b"i: cid@x\r\nCSeq: 7 INVITE\r\nl: 4\r\n\r\nv=0\n")


def test_parse_request_and_build_response():
    req = parse_message(INVITE, ("127.0.0.1", 5070))
    assert req.is_request and req.method == "INVITE" and req.uri == "sip:bob@127.0.0.1"
    assert req.cseq == (7, "INVITE") and req.call_id == "cid@x" and req.tag("from") == "abc"
    assert req.body == b"v=0\n"
    resp = parse_message(build_response(req, 180, "Ringing", to_tag="t1"))
    assert resp.status == 180 and resp.tag("to") == "t1"
    assert resp.raw_all("via") == req.raw_all("via")           # every Via, in order (RFC 3261 §8.2.6.2)
    assert resp.cseq == (7, "INVITE")


def test_granted_expiry_reads_our_contact():
    resp = parse_message(b"SIP/2.0 200 OK\r\nCall-ID: x\r\nCSeq: 2 REGISTER\r\n"
                         b"Contact: <sip:alice@10.0.0.9:5060>;expires=900, <sip:alice@127.0.0.1:40000>;expires=120\r\n"
                         b"Expires: 3600\r\n\r\n")
    assert granted_expiry(resp, "sip:alice@127.0.0.1:40000", 600) == 120
    assert granted_expiry(resp, "sip:alice@127.0.0.1:40001", 600) == 3600


# ---- SDP ----------------------------------------------------------------------------------------

def test_offer_answer():
    offer = build_sdp("192.0.2.10", 40000, offer_encodings("g729"), 20, 1234)
    s = parse_sdp(offer)
    assert (s.address, s.port, s.payload_types, s.ptime_ms) == ("192.0.2.10", 40000, [18, 0, 8, 101], 20)
    assert choose(s, ["PCMA", "PCMU"]) == (0, "PCMU")           # the offer's order decides
    answer = parse_sdp("v=0\r\no=- 1 1 IN IP4 198.51.100.1\r\ns=-\r\nc=IN IP4 10.1.2.3\r\nt=0 0\r\n"
                       "m=audio 5004 RTP/AVP 101 8\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n")
    assert negotiated(answer) == (8, "PCMA")
    assert answer.address == "10.1.2.3" and answer.origin_address == "198.51.100.1"
    opus = parse_sdp(build_sdp("::1", 40002, offer_encodings("opus"), 20, 1))
    assert opus.rtpmap[111] == "opus" and opus.address == "::1"


def test_signal_is_the_codecs_real_size_and_not_silence():
    for enc, size in (("PCMU", 160), ("PCMA", 160), ("G729", 20), ("G722", 160), ("opus", 60)):
        frames = signal_frames(enc, 20)
        assert {len(f) for f in frames} == {size}
        assert all(len(set(f)) > 4 for f in frames)
    assert len(signal_frames("PCMU", 30)[0]) == 240


def test_g711_matches_reference():
    assert [_mulaw(v) for v in (0, 1000, -1000, 32767, -32768)] == [0xFF, 0xCE, 0x4E, 0x80, 0x00]
    assert [_alaw(v) for v in (0, 1000, -1000, 32767, -32768)] == [0xD5, 0xFA, 0x7A, 0xAA, 0x2A]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:                 # Python >= 3.13: the hand values above stand
            return
    vals = range(-32768, 32768, 3)
    assert all(audioop.lin2ulaw(struct.pack("<h", v), 2)[0] == _mulaw(v) for v in vals)
    assert all(audioop.lin2alaw(struct.pack("<h", v), 2)[0] == _alaw(v) for v in vals)


# ---- RTP figures ------------------------------------------------------------------------------

def test_direction_stats_by_hand():
    # 5 sent (seq 10..14, 20 ms apart, 160 ticks at 8 kHz), seq 12 lost; arrivals 100 + 20 i + extra
    seqs = [10, 11, 13, 14]
    ts = [0, 160, 480, 640]
    arr = [100.0, 122.0, 161.0, 180.0]              # transits 100, 102, 101, 100
    d = direction_stats("far->cutover", arr, seqs, ts, 8000, "g711", 20, 1.5, sent=5, one_way_ms=10.0,
                        one_way_source="measured")
    assert d.packets_received == 4 and d.loss_pct == pytest.approx(20.0)
    j = 0.0
    for D in (2, 1, 1):                              # RFC 3550: J += (|D| - J) / 16
        j += (D - j) / 16
    assert d.jitter_ms == pytest.approx(j) == pytest.approx(0.23095703125)
    assert d.ipdv_ms["mean"] == pytest.approx(1.5) and d.ipdv_ms["max"] == pytest.approx(2.0)
    assert d.late_pct == pytest.approx(25.0)         # transit 102 is 2 ms > 1.5 ms buffer above the floor
    s = emodel.score("g711", 10.0, 45.0, jitter_buffer_ms=1.5, ptime_ms=20)
    assert d.mos == pytest.approx(s.mos) and d.r_factor == pytest.approx(s.r_factor)


def test_sequence_wrap_and_span_loss():
    assert unwrap([65534, 65535, 0, 1]) == [65534, 65535, 65536, 65537]
    d = direction_stats("x", [0.0, 20.0, 40.0, 80.0], [65534, 65535, 0, 2], [0, 160, 320, 640], 8000, "g711",
                        20, 60, one_way_ms=5.0)
    assert d.loss_pct == pytest.approx(20.0)          # span 65534..65538 = 5, one missing
    assert d.jitter_ms == 0.0


def test_nothing_received():
    d = direction_stats("far->cutover", [], [], [], 8000, "g711", 20, 60, sent=50)
    assert d.packets_received == 0 and d.loss_pct == 100.0 and d.mos is None


# ---- account files -----------------------------------------------------------------------------

def test_account_password_file_and_no_leak(tmp_path):
    (tmp_path / "pw").write_text("s3cr3t-Value\nignored\n")
    (tmp_path / "pw").chmod(0o600)
    f = tmp_path / "a.yaml"
    f.write_text("username: 4420794600\npassword_file: pw\ndomain: sip.example\nregistrar: sip:reg.example\n"
                 "transport: TCP\n")
    f.chmod(0o600)
    acc = load_account(f)
    assert acc.username == "4420794600" and acc.transport == "tcp" and acc.password() == "s3cr3t-Value"
    assert "s3cr3t" not in repr(acc) and "s3cr3t" not in str(acc.to_dict())


@pytest.mark.parametrize("text,msg", [
    ("username: a\ndomain: d\npassword: x\npassword_file: y\n", "not both"),
    ("username: a\npassword: x\n", "domain: required"),
    ("username: a\ndomain: d\npassword: x\npasword: y\n", "unknown key(s) pasword"),
    ("username: a\ndomain: d\npassword: x\ntransport: sctp\n", "transport"),
    ("username: a\ndomain: d\nregistrar: http://x\n", "registrar"),
    ("password: 'hunter2\n  : [", "YAML syntax error"),
])
def test_bad_account_files(tmp_path, text, msg):
    f = tmp_path / "a.yaml"
    f.write_text(text)
    f.chmod(0o600)
    with pytest.raises(AccountError) as e:
        load_account(f)
    assert msg in str(e.value) and "hunter2" not in str(e.value)


def test_account_file_limits(tmp_path, monkeypatch):
    big = tmp_path / "big.yaml"
    big.write_text("username: a\n# " + "x" * MAX_ACCOUNT_BYTES + "\n")
    big.chmod(0o600)
    with pytest.raises(AccountError, match="the limit is 65,536"):
        load_account(big)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(AccountError, match="FIFO"):                 # refused, never blocks on open()
        load_account(fifo)
    with pytest.raises(AccountError, match="directory"):
        load_account(tmp_path)
    loose = tmp_path / "loose.yaml"
    loose.write_text("username: a\npassword: x\ndomain: d\n")
    loose.chmod(0o644)
    monkeypatch.setenv("CUTOVER_STRICT_PERMISSIONS", "1")
    with pytest.raises(AccountError, match="accessible by group and others"):
        load_account(loose)


# ---- the suite step -----------------------------------------------------------------------------

PROFILE = """site: t
planned: {calls: 2}
thresholds: {mos_min: 4.0, post_dial_delay_ms: 3000}
circuits:
  - {name: new, role: new, down_mbps: 10, up_mbps: 10}
"""


def _raw(**over):
    raw = {"probe": "call", "measured": True, "partial": False, "errors": [],
           "registration": {"ok": True, "account": "sip:a@x", "status_code": 200, "reason": "OK", "expires_s": 300,
                            "time_ms": 12.0},
           "call": {"target": "sip:echo@x", "connected": True, "status_code": 200, "reason": "OK",
                    "post_dial_delay_ms": 3500.0, "encoding": "PCMU", "ptime_ms": 20},
           "media": {"mode": "self", "audio": "one-way",
                     "problem": "no audio from the far end (far end -> cutover silent)",
                     "likely_cause": "SDP c= address 10.0.0.5 is private: a SIP ALG or a misconfigured NAT",
                     "directions": [{"direction": "cutover->far", "packets_received": 100, "mos": 4.37},
                                    {"direction": "far->cutover", "packets_received": 0, "mos": None}]},
           "alg_suspected": False, "nat_evidence": [],
           "porting": [{"number": "+1", "arrived": True}, {"number": "+2", "arrived": False}],
           "porting_summary": "1 of 2 numbers ring on the new trunk; +2 still rings elsewhere"}
    raw.update(over)
    return raw


def test_evaluate():
    prof = load_profile_text(PROFILE)
    checks = {c.id: c for c in call_step.evaluate(prof, prof.circuits[0], _raw())}
    assert checks["call.registered"].status == "pass"
    assert checks["call.connected"].status == "pass"
    assert checks["call.post_dial_delay"].status == "fail" and checks["call.post_dial_delay"].required == 3000
    assert checks["call.audio"].status == "fail" and "10.0.0.5 is private" in checks["call.audio"].reason
    assert checks["call.mos.cutover_to_far"].status == "pass"
    assert "call.mos.far_to_cutover" not in checks              # nothing received: the audio check says so
    assert checks["call.porting"].status == "fail" and checks["call.porting"].measured == "1 of 2"
    assert checks["call.porting"].reason.endswith("+2 still rings elsewhere")


def test_evaluate_registration_refused():
    prof = load_profile_text(PROFILE)
    raw = {"probe": "call", "measured": True, "partial": False, "errors": [], "outcome": "registration-failed",
           "registration": {"ok": False, "account": "sip:a@x", "status_code": 403, "reason": "Forbidden",
                            "error": "403 Forbidden after credentials"}}
    checks = call_step.evaluate(prof, prof.circuits[0], raw)
    assert [(c.id, c.status) for c in checks] == [("call.registered", "fail")]
    assert "403 Forbidden after credentials" in checks[0].reason


def test_profile_fields(tmp_path):
    (tmp_path / "alice.yaml").write_text("username: a\ndomain: d\n")
    (tmp_path / "alice.yaml").chmod(0o600)
    text = PROFILE.replace("up_mbps: 10}", "up_mbps: 10, sip_account: alice.yaml, test_call: echo}")
    prof = load_profile_text(text, path=tmp_path / "site.yaml")
    assert call_step.applies(prof, prof.circuits[0])
    from harness.profile import ProfileError
    with pytest.raises(ProfileError, match="ported_numbers need answer_account"):
        load_profile_text(text.replace("test_call: echo", "ported_numbers: ['+44']"), path=tmp_path / "site.yaml")
    with pytest.raises(ProfileError, match="sip_account: .*nope.yaml: no such file"):
        load_profile_text(text.replace("alice.yaml", "nope.yaml"), path=tmp_path / "site.yaml")


# ---- causes and NAT/ALG evidence ------------------------------------------------------------------

def test_private_sdp_address_is_blamed_on_alg_or_nat():
    from probes.call import CallResult, Media, _cause
    from probes.rtp import Sdp
    res = CallResult(target="sip:echo@x", first_hop="203.0.113.5:5060")
    media = Media(local_address="198.51.100.7:40000")
    assert _cause(Sdp("10.0.0.5", 4000, [0], {}), media, res) == (
        "SDP c= address 10.0.0.5 is private: a SIP ALG or a misconfigured NAT "
        "(the far end advertises an address we cannot reach)")
    assert "hold" in _cause(Sdp("0.0.0.0", 4000, [0], {}), media, res)
    assert "hold" in _cause(Sdp("203.0.113.9", 4000, [0], {}, direction="inactive"), media, res)
    # a private SBC on a private network is no evidence of anything
    res.first_hop = "10.1.1.1:5060"
    assert _cause(Sdp("10.0.0.5", 4000, [0], {}), media, res).startswith("the far end sends no RTP")
    # 100.64/10 (carrier-grade NAT) counts as private too
    res.first_hop = "203.0.113.5:5060"
    assert "100.64.1.2 is private" in _cause(Sdp("100.64.1.2", 4000, [0], {}), media, res)


class _FakeUa:
    """Only the attributes _nat_evidence reads (no sockets: this is the pure comparison)."""
    local_host, local_port = "192.168.1.20", 5060
    contact_uri = "sip:alice@192.168.1.20:5060"

    class account:
        username = "alice"


def test_nat_and_alg_evidence_from_a_register_answer():
    from probes.call import CallResult, _nat_evidence
    resp = parse_message(b"SIP/2.0 200 OK\r\n"
                         b"Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK1;rport=61000;received=198.51.100.7\r\n"
                         b"Call-ID: x\r\nCSeq: 2 REGISTER\r\n"
                         b"Contact: <sip:alice@198.51.100.7:61000>;expires=60\r\n\r\n")
    res = CallResult(target=None)
    _nat_evidence(_FakeUa(), resp, res, registered_contacts=resp.all("contact"))
    assert res.nat_detected is True and res.public_address == "198.51.100.7:61000"
    assert res.alg_suspected is True
    assert any("registrar stored our Contact as sip:alice@198.51.100.7:61000" in e for e in res.nat_evidence)
    # the same answer with our Via and Contact intact: NAT only... and nothing at all without it
    clean = parse_message(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK1;rport=5060\r\n"
                          b"Call-ID: x\r\nCSeq: 2 REGISTER\r\n"
                          b"Contact: <sip:alice@192.168.1.20:5060>;expires=60\r\n\r\n")
    res = CallResult(target=None)
    _nat_evidence(_FakeUa(), clean, res, registered_contacts=clean.all("contact"))
    assert (res.nat_detected, res.alg_suspected, res.nat_evidence) == (False, False, [])


def test_gate_takes_the_latest_porting_check_as_evidence():
    import datetime as dt
    from harness import gate
    from harness.store import CircuitRecord, RunRecord
    utc = dt.timezone.utc
    prof = load_profile_text(PROFILE)      # ported_numbers need account files on disk: set it directly
    prof.circuits[0].ported_numbers = ["+1", "+2"]

    def run(i, day, porting):
        raw = {"call": {"porting": porting, "porting_summary": f"{sum(p['arrived'] for p in porting)} of 2"}}
        at = dt.datetime(2026, 11, day, 12, tzinfo=utc)
        return RunRecord(i, "t", at, at + dt.timedelta(minutes=1), "GO", "check",
                         {"new": CircuitRecord("new", "GO", [], raw)})
    now = dt.datetime(2026, 11, 20, 13, tzinfo=utc)
    runs = [run(1, 18, [{"arrived": True}, {"arrived": False}]), run(2, 20, [{"arrived": True}, {"arrived": True}])]
    item = {i.id: i for i in gate.evaluate(prof, runs, {}, now).items}["porting:new"]
    assert item.status == "ok" and item.detail.startswith("2 of 2 (checked")
    item = {i.id: i for i in gate.evaluate(prof, runs[:1], {}, now).items}["porting:new"]
    assert item.status == "block" and item.detail.startswith("1 of 2")
    item = {i.id: i for i in gate.evaluate(prof, [], {}, now).items}["porting:new"]
    assert item.status == "block" and "not checked" in item.detail


# ---- RTCP ---------------------------------------------------------------------------------------

def test_rtcp_round_trip_rfc3550_example():
    from probes.rtp import rtt_ms_from_report
    # RFC 3550 §6.4.1: A = 0xb710:8000, LSR = 0xb705:2000, DLSR = 0x0005:4000 -> 6.125 s
    assert rtt_ms_from_report(0xB7108000, 0xB7052000, 0x00054000) == 6125.0
    assert rtt_ms_from_report(0xB7108000, 0, 0) is None


def test_rtcp_build_parse_and_report_by_hand():
    from probes.rtp import ReportBlock, build_rtcp, direction_from_report, parse_rtcp, report_block
    # 10 expected (seq 100..109), 108 lost -> cumulative 1, fraction 1/10 * 256 = 25
    seqs = [100, 101, 102, 103, 104, 105, 106, 107, 109]
    arrivals = [i * 0.020 for i in range(8)] + [9 * 0.020]
    ts = [i * 160 for i in range(8)] + [9 * 160]
    block, prev = report_block(0xABCD, seqs, arrivals, ts, 8000, None, lsr=0x12345678, dlsr=65536)
    assert (block.cumulative_lost, block.fraction_lost, block.ext_highest_seq, block.jitter) == (1, 25, 109, 0)
    assert prev == (10, 9)
    pkt = build_rtcp(0x1111, [block], "cutover@test", sender=(1, 2, 3, 4, 5))
    assert len(pkt) % 4 == 0
    (sr,) = parse_rtcp(pkt)
    assert sr["pt"] == 200 and sr["ssrc"] == 0x1111 and sr["ntp_mid32"] == (1 << 16)
    assert sr["blocks"] == [block]
    (rr,) = parse_rtcp(build_rtcp(0x2222, [ReportBlock(1, 0, -2 & 0xFFFFFF, 5, 80)], "x"))
    assert rr["pt"] == 201 and rr["blocks"][0].cumulative_lost == -2        # signed 24 bits
    # our stream as that report saw it: seq0 100, 12 sent, highest 109 -> 10 expected, 9 received
    d = direction_from_report(block, 100, 12, 8000, "g711", 20, 60, one_way_ms=10.0, one_way_source="x")
    assert (d.packets_sent, d.packets_received, d.loss_pct) == (10, 9, pytest.approx(10.0))
    s = emodel.score("g711", 10.0, 10.0, jitter_buffer_ms=60, ptime_ms=20)
    assert d.mos == pytest.approx(s.mos) and d.measured_by == "far end (RTCP)"


def test_sha512_256_is_fips_180_4_when_available():
    import hashlib
    from probes.sipua import HASHES
    if "SHA-512-256" not in HASHES:
        pytest.skip("this OpenSSL has no SHA-512/256")
    assert "sha512_256" in hashlib.algorithms_available
    # FIPS 180-4 example: SHA-512/256("abc")
    assert HASHES["SHA-512-256"](b"abc").hexdigest() == \
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"


def test_in_dialog_reinvite_update_and_bye_are_answered():
    """Session timers (RFC 4028) refresh with re-INVITE or UPDATE: our UA answers 200 with its
    SDP and keeps the media; a BYE from the far end is answered and ends the call. A real UDP
    socket plays the far end (no SIP server needed for in-dialog requests)."""
    import socket
    from probes.sip_resolve import Target
    from probes.sipaccount import Account
    from probes.sipua import Channel, Dialog, UserAgent
    far = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    far.bind(("127.0.0.1", 0))
    far.settimeout(3)
    port = far.getsockname()[1]
    ua = UserAgent(Account("alice", "127.0.0.1", _password="x"),
                   Channel(Target("udp", "127.0.0.1", port, "127.0.0.1", "literal")), "127.0.0.1")
    try:
        sdp = build_sdp("127.0.0.1", 40000, ["PCMU"], 20, 1)
        d = Dialog("cid-1", "ltag", "rtag", "sip:alice@127.0.0.1", "sip:bob@127.0.0.1", "sip:bob@127.0.0.1",
                   "uac", local_sdp=sdp, confirmed=True)
        ua.dialogs["cid-1"] = d
        dest = ua.ch.local

        def request(method, cseq, body=b"", extra=""):
            head = (f"{method} sip:alice@127.0.0.1 SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{cseq}\r\n"
                    f"From: <sip:bob@127.0.0.1>;tag=rtag\r\nTo: <sip:alice@127.0.0.1>;tag=ltag\r\nCall-ID: cid-1\r\n"
                    f"CSeq: {cseq} {method}\r\n{extra}"
                    + ("Content-Type: application/sdp\r\n" if body else "") + f"Content-Length: {len(body)}\r\n\r\n")
            far.sendto(head.encode() + body, dest)
            return parse_message(far.recv(65535))

        offer = build_sdp("127.0.0.1", 41000, ["PCMU"], 20, 2, version=2)
        r = request("INVITE", 10, offer, "Session-Expires: 90;refresher=uas\r\n")
        assert r.status == 200 and r.cseq == (10, "INVITE") and r.body == sdp and r.tag("to") == "ltag"
        r = request("UPDATE", 11, offer, "Session-Expires: 90;refresher=uas\r\n")
        assert r.status == 200 and r.body == sdp
        r = request("OPTIONS", 12)
        assert r.status == 200 and "BYE" in (r.get("allow") or "")
        assert not d.ended_by_remote
        r = request("BYE", 13)
        assert r.status == 200 and d.ended_by_remote
    finally:
        ua.close()
        far.close()
