"""`cutover probe sip` against real peers on loopback: sipp as UAS (UDP, TCP),
Python responders for TLS (certificates made here with openssl), for
retransmission timing and for an ALG that rewrites Via/Contact."""

from __future__ import annotations

import json
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import pytest

from probes import sip
from probes.wire.sip_message import SipUriError, parse_uri
from tests.conftest import FIXTURES, run_cli

SIPP = shutil.which("sipp")
needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp not installed (bash scripts/sysdeps.sh)")
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


def free_port(kind=socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int, proto: str) -> bool:
    out = subprocess.run(["ss", "-Hln" + ("u" if proto == "udp" else "t"), f"sport = :{port}"],
                         capture_output=True, text=True).stdout
    return bool(out.strip())


@pytest.fixture
def sipp_uas(tmp_path):
    """Start sipp answering OPTIONS on a free loopback port; yields (port, proc)."""
    procs = []

    def start(transport: str = "udp", scenario: str | None = None):
        for _ in range(5):     # the free port may be taken between probe and bind: retry
            port = free_port(socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM)
            args = [SIPP, "-i", "127.0.0.1", "-p", str(port), "-nostdin", "-t",
                    "u1" if transport == "udp" else "t1", "-timeout", "60s"]
            args += ["-sf", scenario] if scenario else ["-sn", "uas", "-aa"]
            p = subprocess.Popen(args, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(p)
            for _ in range(50):
                if listening(port, transport) or p.poll() is not None:
                    break
                time.sleep(0.1)
            if p.poll() is None and listening(port, transport):
                return port, p
        pytest.fail("sipp did not start")

    yield start
    for p in procs:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


@needs_sipp
@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_uas_answers_200(sipp_uas, transport):
    port, _ = sipp_uas(transport)
    p = run_cli("probe", "sip", f"sip:127.0.0.1:{port};transport={transport}", "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert (out["status_code"], out["transport"], out["target"]) == \
        (200, transport, f"sip:127.0.0.1:{port};transport={transport}")
    assert 0 < out["rtt_ms"] < 1000
    assert out["alg_suspected"] is False and out["retransmissions"] == 0


@needs_sipp
def test_sipp_scenario_allow_supported_and_contact_intact(sipp_uas):
    # the scenario echoes our Via, From and Contact unchanged and announces Allow/Supported
    port, _ = sipp_uas("udp", str(FIXTURES / "sip" / "options-uas.xml"))
    r = sip.run(sip.SipConfig(f"sip:127.0.0.1:{port}", timeout_s=3))
    assert r.status_code == 200 and r.measured
    assert r.allow == ["INVITE", "ACK", "CANCEL", "BYE", "OPTIONS"]
    assert r.supported == ["replaces", "timer"]
    assert r.server == "sipp-cutover-test"
    assert r.alg_suspected is False and r.alg_evidence == [] and r.nat_detected is False


def test_closed_ports_fail_with_cause():
    port = free_port()
    p = run_cli("probe", "sip", f"sip:127.0.0.1:{port}", "--json", "--timeout", "3")
    assert p.returncode == 3
    out = json.loads(p.stdout)
    assert out["status_code"] is None and out["targets_tried"][0]["outcome"] == "refused"
    assert "nothing listens on UDP port" in p.stderr
    tport = free_port(socket.SOCK_STREAM)
    p = run_cli("probe", "sip", f"sip:127.0.0.1:{tport}", "--transport", "tcp")
    assert p.returncode == 3 and "connection refused" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.parametrize("uri", ["sip:", "sip:bad host", "http://x.example", "sip:1.2.3.999",
                                 "sip:h.example:99999", "sips:h.example;transport=udp",
                                 "sip:[2001:db8::1", "sip:h.example;transport=sctp", "sip:@h.example"])
def test_malformed_uri_rejected(uri):
    with pytest.raises(SipUriError) as exc:
        parse_uri(uri)
    assert uri.split(";")[0] in str(exc.value)


def test_malformed_uri_cli_exit_2():
    p = run_cli("probe", "sip", "sip:bad host", "--json")
    assert p.returncode == 2 and p.stdout == "" and "Traceback" not in p.stderr
    assert "'bad host' is not a valid host name" in p.stderr


def test_uri_forms():
    u = parse_uri("sips:alice@[2001:db8::7]:5071;transport=tcp;lr")
    assert (u.scheme, u.user, u.host, u.port, u.transport, u.host_is_ip) == \
        ("sips", "alice", "2001:db8::7", 5071, "tcp", True)
    u = parse_uri("sbc.carrier-b.example")
    assert (u.scheme, u.host, u.port, u.transport, u.host_is_ip) == ("sip", "sbc.carrier-b.example", None, None, False)


# ---- Python responders ------------------------------------------------------------------

def answer(request: bytes, mode: str = "plain", peer=None) -> bytes | None:
    """A 200 OK for an OPTIONS, echoing headers as a server does (received/rport added).
    mode "alg-via": the Via sent-by and Contact are rewritten to a public address, as a SIP
    ALG does on the way out without restoring them; "alg-contact": only the echoed Contact."""
    text = request.decode()
    if not text.startswith("OPTIONS "):
        return None
    h = {}
    for line in text.split("\r\n")[1:]:
        k, _, v = line.partition(":")
        h.setdefault(k.strip().lower(), v.strip())
    via, contact = h["via"], h["contact"]
    if mode in ("alg-via",):
        via = re.sub(r"^(SIP/2.0/\w+) [^;]+", r"\1 203.0.113.9:40000", via)
    if mode in ("alg-via", "alg-contact"):
        contact = re.sub(r"@[^;>]+", "@203.0.113.9:40000", contact)
    if mode == "nat":     # the server saw us from a NAT's public address
        peer = ("198.51.100.77", 40000)
    if peer:
        via = via.replace(";rport", f";received={peer[0]};rport={peer[1]}")
    status = "403 Forbidden" if mode == "403" else "100 Trying" if mode == "100" else "200 OK"
    lines = [f"SIP/2.0 {status}", f"Via: {via}", f"From: {h['from']}", f"To: {h['to']};tag=42",
             f"Call-ID: {h['call-id']}", f"CSeq: {h['cseq']}", f"Contact: {contact}",
             "Allow: OPTIONS, INVITE", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


class UdpResponder(threading.Thread):
    def __init__(self, mode="plain", drop_first=0, silent=False, other_port=False, host="127.0.0.1"):
        super().__init__(daemon=True)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        # answers from a second socket (another source port), as some SBCs do
        self.out = socket.socket(family, socket.SOCK_DGRAM) if other_port else self.sock
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.mode, self.drop_first, self.silent = mode, drop_first, silent
        self.arrivals: list[float] = []
        self.peers: list[str] = []
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            self.arrivals.append(time.monotonic())
            self.peers.append(peer[0])
            if self.silent or len(self.arrivals) <= self.drop_first:
                continue
            if self.mode == "trying":   # a provisional answer first, the final one later
                self.out.sendto(answer(data, "100", peer), peer)
                time.sleep(0.3)
            resp = answer(data, "plain" if self.mode == "trying" else self.mode, peer)
            if resp:
                self.out.sendto(resp, peer)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.join(2)
        self.sock.close()
        self.out.close()


@pytest.mark.parametrize("mode,evidence", [("alg-via", "Via sent-by came back as 203.0.113.9:40000"),
                                           ("alg-contact", "our Contact came back as")])
def test_rewritten_via_or_contact_means_alg(mode, evidence):
    with UdpResponder(mode) as srv:
        r = sip.run(sip.SipConfig(f"sip:127.0.0.1:{srv.port}", timeout_s=3))
    assert r.status_code == 200
    assert r.alg_suspected is True
    assert any(evidence in e for e in r.alg_evidence), r.alg_evidence
    assert r.nat_detected is False   # received/rport equal our socket: no NAT, only rewriting


def test_nat_is_reported_but_is_not_an_alg():
    with UdpResponder("nat") as srv:
        r = sip.run(sip.SipConfig(f"sip:127.0.0.1:{srv.port}", timeout_s=2))
    assert (r.status_code, r.nat_detected, r.public_address) == (200, True, "198.51.100.77:40000")
    assert r.alg_suspected is False


def test_plain_responder_no_alg():
    with UdpResponder("plain") as srv:
        r = sip.run(sip.SipConfig(f"sip:127.0.0.1:{srv.port}", timeout_s=3))
    assert (r.status_code, r.alg_suspected, r.allow) == (200, False, ["OPTIONS", "INVITE"])


@pytest.mark.parametrize("host,other_port", [("127.0.0.1", True), ("::1", False)])
def test_answer_from_other_port_and_ipv6(host, other_port):
    with UdpResponder(other_port=other_port, host=host) as srv:
        r = sip.run(sip.SipConfig(f"sip:[{host}]:{srv.port}" if ":" in host else f"sip:{host}:{srv.port}",
                                  timeout_s=2))
    assert (r.status_code, r.retransmissions, r.alg_suspected) == (200, 0, False)


def test_refusal_is_exit_1_and_provisional_is_not_final():
    with UdpResponder("403") as srv:
        p = run_cli("probe", "sip", f"sip:127.0.0.1:{srv.port}", "--json", "--timeout", "2")
    assert p.returncode == 1, p.stderr
    out = json.loads(p.stdout)
    assert (out["status_code"], out["reason"], out["reachable"]) == (403, "Forbidden", True)
    with UdpResponder("trying") as srv:
        r = sip.run(sip.SipConfig(f"sip:127.0.0.1:{srv.port}", timeout_s=2))
    assert r.status_code == 200 and r.targets_tried[0].provisional == [100]
    assert r.rtt_ms >= 300 and r.retransmissions == 0


def test_source_address_is_honoured():
    with UdpResponder() as srv:
        r = sip.run(sip.SipConfig(f"sip:127.0.0.1:{srv.port}", source="127.0.0.2", timeout_s=2))
        peers = list(srv.peers)
    assert r.status_code == 200 and peers == ["127.0.0.2"]
    assert r.nat_detected is False and r.alg_suspected is False   # Via said 127.0.0.2 too


def test_udp_retransmission_follows_timer_e():
    # drop the first two requests: transmissions at 0, T1 = 0.5 s, then 0.5 + 2*T1 = 1.5 s
    with UdpResponder(drop_first=2) as srv:
        r = sip.run(sip.SipConfig(f"sip:127.0.0.1:{srv.port}", timeout_s=5))
        arrivals = list(srv.arrivals)
    assert r.status_code == 200 and r.retransmissions == 2
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert len(gaps) == 2
    assert gaps[0] == pytest.approx(0.5, abs=0.1) and gaps[1] == pytest.approx(1.0, abs=0.1)
    assert r.rtt_ms == pytest.approx(1500, abs=150)


def test_silent_server_times_out_within_timeout():
    with UdpResponder(silent=True) as srv:
        t0 = time.monotonic()
        r = sip.run(sip.SipConfig(f"sip:127.0.0.1:{srv.port}", timeout_s=2.0))
        took = time.monotonic() - t0
        n = len(srv.arrivals)
    assert not r.measured and r.targets_tried[0].outcome == "timeout"
    assert n == 3                      # 0, 0.5, 1.5 s; the next (3.5 s) is past the 2 s timeout
    assert took < 3.0
    assert "no answer over UDP within 2 s" in r.errors[-1]


# ---- TLS ------------------------------------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A test CA, a server certificate it signed for 127.0.0.1, and a self-signed one."""
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=cutover test CA", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
            "-subj", "/CN=sbc.test", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:sbc.test\n")
    openssl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf", cwd=d)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "self.key", "-out", "self.pem",
            "-days", "2", "-subj", "/CN=self-signed sbc", "-addext", "subjectAltName=IP:127.0.0.1", cwd=d)
    return d


class TlsResponder(threading.Thread):
    def __init__(self, cert: Path, key: Path):
        super().__init__(daemon=True)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(8)
        self.lsock.settimeout(0.2)
        self.port = self.lsock.getsockname()[1]
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                raw, peer = self.lsock.accept()
            except socket.timeout:
                continue
            try:
                raw.settimeout(3)
                with self.ctx.wrap_socket(raw, server_side=True) as conn:
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        buf += chunk
                    resp = answer(buf, "plain", peer)
                    if resp:
                        conn.sendall(resp)
            except (ssl.SSLError, OSError):
                raw.close()   # the client refused our certificate: expected in some tests

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.join(2)
        self.lsock.close()


@needs_openssl
def test_tls_self_signed_reported_then_insecure_succeeds(certs):
    with TlsResponder(certs / "self.pem", certs / "self.key") as srv:
        uri = f"sips:127.0.0.1:{srv.port}"
        p = run_cli("probe", "sip", uri, "--json", "--timeout", "3")
        assert p.returncode == 3
        out = json.loads(p.stdout)
        assert out["targets_tried"][0]["outcome"] == "tls-error"
        assert "not trusted: self-signed certificate" in p.stderr and "--insecure" in p.stderr
        p = run_cli("probe", "sip", uri, "--json", "--insecure", "--timeout", "3")
        assert p.returncode == 0, p.stderr
        out = json.loads(p.stdout)
        assert (out["status_code"], out["transport"], out["tls"]["verified"]) == (200, "tls", False)
        # the self-signed certificate is its own CA: trusting it explicitly also works
        p = run_cli("probe", "sip", uri, "--ca", str(certs / "self.pem"), "--timeout", "3")
        assert p.returncode == 0, p.stderr


@needs_openssl
def test_tls_with_test_ca(certs):
    with TlsResponder(certs / "srv.pem", certs / "srv.key") as srv:
        r = sip.run(sip.SipConfig(f"sips:127.0.0.1:{srv.port}", ca_file=str(certs / "ca.pem"), timeout_s=3))
        assert r.status_code == 200 and r.tls["verified"] is True
        assert "cutover test CA" in r.tls["issuer"] and r.alg_suspected is False
        # without the CA: unknown issuer, spelled out
        r = sip.run(sip.SipConfig(f"sips:127.0.0.1:{srv.port}", timeout_s=3))
        assert not r.measured and "unable to get local issuer certificate" in r.errors[-1]
        # a CA that did not issue it
        r = sip.run(sip.SipConfig(f"sips:127.0.0.1:{srv.port}", ca_file=str(certs / "self.pem"),
                                  timeout_s=3))
        assert not r.measured and "not issued by the CA in" in r.errors[-1]
