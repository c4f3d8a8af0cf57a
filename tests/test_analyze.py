"""Capture analysis: pcaps written here with scapy carry planted sequence gaps,
duplicates, reordering, arrival jitter and payload types; the figures must
equal the hand-computed ones, and agree with tshark's `-z rtp,streams`."""

from __future__ import annotations

import json
import random
import re
import shutil
import struct
import subprocess

import pytest

from probes import analyze
from probes.voice import emodel
from probes.wire.pcapread import CaptureError
from tests.conftest import run_cli

T0 = 1_700_000_000.0


def rtp(seq: int, ts: int, ssrc: int, pt: int = 0, payload_b: int = 160) -> bytes:
    return struct.pack("!BBHII", 0x80, pt, seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc) + bytes(payload_b)


def write_capture(path, packets, ng: bool = False) -> None:
    """packets: iterable of (arrival_s, src, sport, dst, dport, payload bytes), written in order
    with scapy's writers. Headers are built by scapy once per flow and payload size (UDP
    checksum from scapy too); building every packet with scapy would take seconds."""
    from scapy.all import IP, UDP, Ether, IPv6, Raw
    from scapy.utils import PcapNgWriter, PcapWriter
    w = PcapNgWriter(str(path)) if ng else PcapWriter(str(path), linktype=1)
    w.linktype = 1
    w.write_header(None)
    cache: dict[tuple, bytes] = {}
    for t, src, sport, dst, dport, data in packets:
        key = (src, sport, dst, dport, len(data), data[:12] if ":" in src else b"")
        head = cache.get(key)
        if head is None:
            ip = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
            # explicit MACs: scapy would otherwise resolve them (slow for unroutable IPv6)
            frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / ip / \
                UDP(sport=sport, dport=dport, chksum=0 if ":" not in src else None) / Raw(data)
            head = cache[key] = bytes(frame)[:-len(data)] if data else bytes(frame)
        raw = head + data
        # pcap takes whole seconds + usec, scapy's pcapng writer only the float seconds
        w.write_packet(raw, sec=t, usec=round((t - int(t)) * 1e6), caplen=len(raw), wirelen=len(raw))
    w.close()


def stream(n, *, ssrc, pt=0, seq0=1000, ptime_s=0.02, clock=8000, drop=(), late=None,
           src="10.0.0.1", sport=40000, dst="10.0.0.2", dport=40002, t0=T0, payload_b=160):
    """A periodic stream: packet i has seq0+i, timestamp i*ptime*clock, arrival t0+i*ptime
    (+ late[i] seconds); indices in ``drop`` are never sent."""
    late = late or {}
    step = round(ptime_s * clock)
    return [(t0 + i * ptime_s + late.get(i, 0.0), src, sport, dst, dport,
             rtp(seq0 + i, 1000 + i * step, ssrc, pt, payload_b))
            for i in range(n) if i not in drop]


def by_ssrc(result):
    return {s.ssrc: s for s in result.streams}


def test_planted_loss_delay_spike_and_payload_types(tmp_path):
    # A: G.711, 200 packets, 3 lost (50, 51, 120), packet 10 arrives 10 ms late.
    a = stream(200, ssrc=0xA, pt=0, drop={50, 51, 120}, late={10: 0.010})
    # B: G.729 (PT 18) on another port pair, perfectly periodic.
    b = stream(100, ssrc=0xB, pt=18, sport=41000, dport=41002, payload_b=20)
    f = tmp_path / "planted.pcap"
    write_capture(f, sorted(a + b))
    r = analyze.run(analyze.AnalyzeConfig(str(f)))
    s = by_ssrc(r)
    assert set(s) == {0xA, 0xB}
    A, B = s[0xA], s[0xB]
    assert (A.payload_type, A.codec, A.clock_hz, A.ptime_ms) == (0, "g711", 8000, 20.0)
    assert (B.payload_type, B.codec) == (18, "g729")
    assert (A.packets, A.expected, A.lost) == (197, 200, 3)
    assert A.loss_pct == pytest.approx(1.5)
    assert A.sequence_errors == 2 and A.duplicates == 0 and A.reordered == 0
    # Jitter by hand (RFC 3550 A.8): packet 10 late by 10 ms -> |D| = 10, J = 10/16;
    # packet 11 back on time -> |D| = 10 again, J = 0.625 + (10 - 0.625)/16 = 1.2109375 ms,
    # then J decays by 15/16 for each later packet (its |D| is 0)
    assert A.max_jitter_ms == pytest.approx(1.2109375, abs=1e-3)
    after = len([i for i in range(12, 200) if i not in {50, 51, 120}])
    assert A.jitter_ms == pytest.approx(1.2109375 * (15 / 16) ** after, abs=1e-4)
    # the largest arrival gap: the two lost packets 50, 51 leave 60 ms between 49 and 52
    assert A.max_delta_ms == pytest.approx(60.0, abs=1e-3)
    # MOS: d = 0 + 60 buffer + 20 ptime = 80 ms, Ppl 1.5 % (no late packets)
    r_hand = 93.2 - 0.024 * 80 - 95 * 1.5 / (1.5 + 25.1)
    assert A.r_factor == pytest.approx(r_hand, abs=1e-6)
    assert A.mos == pytest.approx(emodel.mos_from_r(r_hand))
    assert (B.packets, B.lost) == (100, 0)
    assert B.max_jitter_ms == pytest.approx(0.0, abs=1e-3)   # pcap stores microseconds
    assert B.max_delta_ms == pytest.approx(20.0, abs=1e-3)
    # G.729: Ie 11 at d = 80 ms
    assert B.r_factor == pytest.approx(93.2 - 1.92 - 11, abs=1e-6)


def test_duplicates_reordering_and_sequence_wrap(tmp_path):
    pk = stream(300, ssrc=0xC, seq0=65400)          # wraps 65535 -> 0 after 136 packets
    pk.insert(31, pk[30])                           # packet 30 duplicated
    pk[61], pk[62] = pk[62], pk[61]                 # 60 and 61 swapped on the wire
    f = tmp_path / "dup.pcap"
    write_capture(f, pk)
    C = by_ssrc(analyze.run(analyze.AnalyzeConfig(str(f))))[0xC]
    assert (C.packets, C.expected, C.lost) == (301, 300, 0)
    assert C.duplicates == 1 and C.reordered == 1
    assert C.lost_rfc3550 == -1      # RFC 3550 A.3 counts the duplicate as received
    if shutil.which("tshark"):
        t = tshark_streams(f, [40000])[0xC]
        assert (t["packets"], t["lost"]) == (C.packets, C.lost_rfc3550)   # Wireshark counts as A.3 does


def test_late_packets_count_against_mos(tmp_path):
    # one packet 80 ms late with a 60 ms buffer: a phone plays it as lost
    f = tmp_path / "late.pcap"
    write_capture(f, stream(100, ssrc=0xD, late={40: 0.080}))
    D = by_ssrc(analyze.run(analyze.AnalyzeConfig(str(f), jitter_buffer_ms=60)))[0xD]
    assert (D.lost, D.late) == (0, 1)
    assert D.late_pct == pytest.approx(1.0)
    assert D.r_factor == pytest.approx(93.2 - 1.92 - 95 * 1.0 / (1.0 + 25.1), abs=1e-6)


def test_dynamic_payload_type_infers_clock_and_ptime(tmp_path):
    # Opus-like: PT 111, 48 kHz clock, 20 ms -> 960 timestamp units per packet; IPv6, pcapng
    pk = stream(120, ssrc=0xE, pt=111, clock=48000, src="2001:db8::1", dst="2001:db8::2",
                late={60: 0.004})
    f = tmp_path / "opus.pcapng"
    write_capture(f, pk, ng=True)
    E = by_ssrc(analyze.run(analyze.AnalyzeConfig(str(f))))[0xE]
    assert (E.codec, E.clock_hz, E.clock_inferred, E.ptime_ms) == ("unknown", 48000, True, 20.0)
    assert E.mos_codec_assumed == "g711"
    assert E.src == "2001:db8::1" and E.packets == 120
    # 4 ms late then back: J peaks at 4/16 + (4 - 4/16)/16 ms
    assert E.max_jitter_ms == pytest.approx(0.25 + 3.75 / 16, abs=1e-3)


def sip_invite_with_sdp(media_ip: str, media_port: int) -> bytes:
    sdp = (f"v=0\r\no=- 1 1 IN IP4 {media_ip}\r\ns=-\r\nc=IN IP4 {media_ip}\r\nt=0 0\r\n"
           f"m=audio {media_port} RTP/AVP 111 0 101\r\na=rtpmap:111 opus/48000/2\r\n"
           "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n")
    return ("INVITE sip:bob@10.0.0.2 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n"
            "Call-ID: 1@x\r\nCSeq: 1 INVITE\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: {len(sdp)}\r\n\r\n{sdp}").encode()


def test_sdp_names_dynamic_codec_and_dtmf_events_stay_out_of_jitter(tmp_path):
    # the callee announces opus as PT 111 at 10.0.0.2:40002; the caller's stream carries
    # RFC 4733 DTMF (PT 101, same SSRC, frozen timestamp) in the middle
    invite = (T0 - 1, "10.0.0.1", 5060, "10.0.0.2", 5060, sip_invite_with_sdp("10.0.0.2", 40002))
    # audio packets 50-54 are replaced by five DTMF event packets (same SSRC, sequence 1050-1054,
    # timestamp frozen at the event start), as a phone sends them while a key is held
    audio = stream(100, ssrc=0x51, pt=111, clock=48000, drop=set(range(50, 55)), late={20: 0.008})
    dtmf = [(T0 + (50 + k) * 0.02, "10.0.0.1", 40000, "10.0.0.2", 40002,
             rtp(1050 + k, 1000 + 50 * 960, 0x51, pt=101, payload_b=4)) for k in range(5)]
    f = tmp_path / "call.pcap"
    write_capture(f, sorted([invite] + audio + dtmf))
    s = by_ssrc(analyze.run(analyze.AnalyzeConfig(str(f))))[0x51]
    assert (s.codec, s.codec_source, s.clock_hz, s.clock_inferred, s.ptime_ms) == ("opus", "sdp", 48000, False, 20.0)
    assert s.mos_codec_assumed is None
    assert (s.packets, s.lost, s.other_pt_packets, s.sequence_errors) == (100, 0, 5, 0)
    # only packet 20's 8 ms spike: J peaks at 8/16 + (8 - 8/16)/16 ms; DTMF timestamps ignored
    assert s.max_jitter_ms == pytest.approx(0.5 + 7.5 / 16, abs=2e-3)


def test_learn_sdp_media_and_static_types():
    media = {}
    analyze.learn_sdp(sip_invite_with_sdp("192.0.2.5", 30000), media)
    assert media == {("192.0.2.5", 30000): {111: ("opus", 48000), 101: ("telephone-event", 8000),
                                            0: ("g711", 8000)}}


def test_non_rtp_udp_and_rtcp_are_not_streams(tmp_path):
    rnd = random.Random(7)
    noise = [(T0 + i * 0.01, "10.0.0.9", 53, "10.0.0.1", 5353, bytes(rnd.getrandbits(8) for _ in range(40)))
             for i in range(300)]
    # RTCP sender reports: version 2, PT 200 -> looks like PT 72 with the marker bit
    rtcp = [(T0 + i, "10.0.0.1", 40001, "10.0.0.2", 40003,
             struct.pack("!BBHI", 0x80, 200, 6, 0xA) + bytes(20)) for i in range(10)]
    f = tmp_path / "noise.pcap"
    write_capture(f, sorted(noise + rtcp + stream(50, ssrc=0xF)))
    r = analyze.run(analyze.AnalyzeConfig(str(f)))
    assert [s.ssrc for s in r.streams] == [0xF]
    assert r.udp_datagrams == 360


def test_candidate_table_stays_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(analyze, "MAX_CANDIDATES", 20)
    # 200 one-packet "streams" (random SSRCs), then a real one: memory stays bounded, RTP still found
    junk = [(T0 + i * 0.001, "10.0.0.3", 1000 + i, "10.0.0.4", 2000, rtp(i, i, 0x1000 + i))
            for i in range(200)]
    f = tmp_path / "many.pcap"
    write_capture(f, junk + stream(30, ssrc=0x77, t0=T0 + 1))
    r = analyze.run(analyze.AnalyzeConfig(str(f)))
    assert [s.ssrc for s in r.streams] == [0x77]


@pytest.fixture
def good_pcap(tmp_path):
    f = tmp_path / "good.pcap"
    write_capture(f, stream(60, ssrc=0x42, drop={5}))
    return f


def test_cli_json_contract(good_pcap):
    p = run_cli("analyze", str(good_pcap), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    s = out["streams"][0]
    for key in ("ssrc", "payload_type", "codec", "packets", "lost", "loss_pct", "jitter_ms",
                "max_jitter_ms", "max_delta_ms", "mos"):
        assert key in s
    assert (s["ssrc"], s["packets"], s["lost"]) == (0x42, 59, 1)
    assert run_cli("analyze", str(good_pcap), "--mos-min", "4.5").returncode == 1


@pytest.mark.parametrize("cut", [10, 30, 100, -7])
def test_truncated_capture_is_capture_error(good_pcap, tmp_path, cut):
    bad = tmp_path / "cut.pcap"
    bad.write_bytes(good_pcap.read_bytes()[:cut])
    with pytest.raises(CaptureError, match="truncated|too short"):
        analyze.run(analyze.AnalyzeConfig(str(bad)))


def test_malformed_files_are_capture_errors(tmp_path):
    garbage = tmp_path / "notes.pcap"
    garbage.write_text("this is not a capture\n")
    bad_len = tmp_path / "badlen.pcap"
    hdr = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    bad_len.write_bytes(hdr + struct.pack("<IIII", 0, 0, 0xFFFFFFF0, 60))
    bad_ng = tmp_path / "bad.pcapng"
    bad_ng.write_bytes(struct.pack("<II", 0x0A0D0D0A, 28) + b"\x00" * 20)
    for f, words in ((garbage, "not a pcap"), (bad_len, "corrupt"), (bad_ng, "byte-order"),
                     (tmp_path / "missing.pcap", "no such file")):
        with pytest.raises(CaptureError, match=words):
            analyze.run(analyze.AnalyzeConfig(str(f)))


def test_cli_bad_files_exit_2_without_traceback(good_pcap, tmp_path):
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(good_pcap.read_bytes()[:-7])
    garbage = tmp_path / "notes.pcap"
    garbage.write_text("this is not a capture\n")
    for f, words in ((cut, "truncated packet record at byte"), (garbage, "not a pcap or pcapng file")):
        p = run_cli("analyze", str(f), "--json")
        assert p.returncode == 2, p.stderr
        assert p.stdout == "" and "Traceback" not in p.stderr and words in p.stderr


# ---- agreement with tshark ---------------------------------------------------------------

def tshark_streams(path, ports):
    args = ["tshark", "-r", str(path), "-q", "-z", "rtp,streams"]
    for port in ports:
        args[3:3] = ["-d", f"udp.port=={port},rtp"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
    rows = {}
    # ... SSRC  Payload  Pkts  Lost (x%)  MinDelta MeanDelta MaxDelta MinJit MeanJit MaxJit [X]
    num = r"\s+(-?[\d.]+)"   # min delta is negative when packets arrive reordered
    pat = re.compile(r"\s(0x[0-9a-fA-F]{8})\s+\S+\s+(\d+)\s+(-?\d+) \([^)]*\)" + num * 6)
    for line in out.splitlines():
        m = pat.search(line)
        if m:
            rows[int(m.group(1), 16)] = {"packets": int(m.group(2)), "lost": int(m.group(3)),
                                         "max_delta_ms": float(m.group(6)),
                                         "mean_jitter_ms": float(m.group(8)),
                                         "max_jitter_ms": float(m.group(9))}
    return rows


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed (scripts/sysdeps.sh)")
@pytest.mark.parametrize("ng", [False, True])
def test_agrees_with_tshark(tmp_path, ng):
    rnd = random.Random(42)
    flows = []
    for k, (pt, clock, ptime, n, payload_b) in enumerate([(0, 8000, 0.02, 600, 160),
                                                          (8, 8000, 0.03, 400, 240),
                                                          (18, 8000, 0.02, 500, 20)]):
        drop = set(rnd.sample(range(1, n - 1), 6 + 3 * k))
        late = {i: rnd.uniform(0, 0.004 + 0.006 * k) for i in range(n)}   # uniform arrival jitter
        flows += stream(n, ssrc=0x5000 + k, pt=pt, clock=clock, ptime_s=ptime, drop=drop, late=late,
                        sport=30000 + 2 * k, dport=32000 + 2 * k, payload_b=payload_b)
    f = tmp_path / ("mixed.pcapng" if ng else "mixed.pcap")
    write_capture(f, sorted(flows), ng=ng)
    ours = by_ssrc(analyze.run(analyze.AnalyzeConfig(str(f))))
    theirs = tshark_streams(f, [30000, 30002, 30004])
    assert set(theirs) == set(ours) == {0x5000, 0x5001, 0x5002}
    for ssrc, t in theirs.items():
        o = ours[ssrc]
        assert o.packets == t["packets"]
        assert o.lost == t["lost"] and o.lost > 0
        assert o.max_jitter_ms == pytest.approx(t["max_jitter_ms"], rel=0.01)
        assert o.mean_jitter_ms == pytest.approx(t["mean_jitter_ms"], rel=0.01)
        assert o.max_delta_ms == pytest.approx(t["max_delta_ms"], rel=0.01)


# ---- static payload types of RFC 3551 ------------------------------------------------------

def test_static_payload_types_pcmu_pcma_g722_g729_are_all_named(tmp_path):
    """Issue #15: PT 8 (PCMA, the usual codec in Europe) showed as "unknown". Every static
    type the codec table covers is named, by `analyze --json` and in the text table; the
    names are RFC 3551 table 4's (and tshark's decoding of the same file agrees)."""
    want = {0: ("PCMU", "g711"), 8: ("PCMA", "g711"), 9: ("G722", "g722"), 18: ("G729", "g729")}
    flows = []
    for k, pt in enumerate(want):
        flows += stream(100, ssrc=0x7000 + k, pt=pt, sport=34000 + 2 * k, dport=36000 + 2 * k,
                        payload_b=20 if pt == 18 else 160)
    f = tmp_path / "four-codecs.pcap"
    write_capture(f, sorted(flows))
    p = run_cli("analyze", str(f), "--json")
    assert p.returncode == 0, p.stderr
    got = {s["payload_type"]: (s["encoding"], s["codec"], s["codec_source"], s["mos_codec_assumed"])
           for s in json.loads(p.stdout)["streams"]}
    assert got == {pt: (enc, codec, "static-pt", None) for pt, (enc, codec) in want.items()}
    # the same scoring as the stream probe: G.722 on the wideband scale (issue #18)
    models = {s["payload_type"]: (s["emodel"], s["r_scale"]) for s in json.loads(p.stdout)["streams"]}
    assert models == {0: ("G.107", 100), 8: ("G.107", 100), 9: ("G.107.1", 129), 18: ("G.107", 100)}
    text = run_cli("analyze", str(f))
    assert text.returncode == 0, text.stderr
    for k, (pt, (enc, _)) in enumerate(want.items()):
        row = next(line for line in text.stdout.splitlines() if line.startswith(f"0x{0x7000 + k:08x}"))
        assert re.search(rf"\s{pt}\s+{enc}\s", row), row
    assert "unknown" not in text.stdout and "dynamic payload type" not in text.stdout
    if shutil.which("tshark"):
        args = ["tshark", "-r", str(f), "-q", "-z", "rtp,streams"]
        for k in range(4):
            args[3:3] = ["-d", f"udp.port=={34000 + 2 * k},rtp"]
        out = subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
        # tshark names the same four: g711U, g711A, g722, g729
        for name in ("g711U", "g711A", "g722", "g729"):
            assert name in out, out


def test_folder_fifo_and_device_are_named_not_no_such_file(tmp_path):
    """Issue #16 item 9: a folder, a FIFO (opening it must not wait for a writer) and a
    device each get their own message and exit 2; a missing file is still "no such file"."""
    import os
    fifo = tmp_path / "capture.fifo"
    os.mkfifo(fifo)
    (tmp_path / "dir.pcap").mkdir()
    cases = [(tmp_path / "dir.pcap", "is a directory"), (fifo, "is a FIFO"), ("/dev/zero", "is a character device"),
             (tmp_path / "missing.pcap", "no such file")]
    for path, words in cases:
        p = run_cli("analyze", str(path), timeout=20)
        assert p.returncode == 2, (path, p.stderr)
        assert f"{path}: {words}" in p.stderr and "Traceback" not in p.stderr and p.stdout == ""
