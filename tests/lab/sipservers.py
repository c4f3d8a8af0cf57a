"""Real SIP peers for the call probe's tests: Kamailio as registrar/proxy with
digest auth, and SIPp as the answering endpoint (with or without RTP echo).

    with sipp_uas(rtp_echo=True) as echo, kamailio(users={"alice": pw, "bob": pw2},
                                                   routes={"echo": echo.address}) as k:
        k.port, k.log   # UDP and TCP on 127.0.0.1:k.port

Kamailio runs in the foreground (-DD -E) with a config written here; the
password table lives only in that config file (a temporary directory, removed
after). Routing by the request-URI user:

    a name in ``routes``          -> relayed to that (host, port) (SIPp)
    a name in ``replies``         -> answered by Kamailio itself with that code
    a name in ``aliases``         -> rewritten to the aliased user, then location lookup
    anything else                 -> location lookup (a registered account), else 404

REGISTER needs WWW digest auth; INVITE from a listed user needs Proxy auth (407).
Processes are ended by PID when the ``with`` ends.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Iterator

from ._lines import LineReader
from .peers import PeerError, free_port

KAMAILIO = "/usr/sbin/kamailio"
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"


def kamailio_unavailable() -> str | None:
    if not os.path.exists(KAMAILIO):
        return "kamailio not installed (run scripts/sysdeps.sh)"
    if shutil.which("sipp") is None:
        return "sipp not installed (run scripts/sysdeps.sh)"
    return None


@dataclass
class Peer:
    proc: subprocess.Popen
    address: tuple[str, int]
    log: list[str]
    workdir: str
    tls_port: int | None = None


def _config(port: int, users: dict[str, str], routes: dict[str, tuple[str, int]],
            replies: dict[str, tuple[int, str]], aliases: dict[str, str], algorithm: str,
            max_expires: int, tls: tuple[str, str, int] | None = None, min_expires: int = 0) -> str:
    pw = "\n".join(f'    if ($fU == "{u}") $var(pw) = "{p}";' for u, p in users.items())
    route_lines = "\n".join(f'  if ($rU == "{u}") {{ $du = "sip:{h}:{p}"; t_relay(); exit; }}'
                            for u, (h, p) in routes.items())
    reply_lines = "\n".join(f'  if ($rU == "{u}") {{ sl_send_reply("{c}", "{r}"); exit; }}'
                            for u, (c, r) in replies.items())
    alias_lines = "\n".join(f'  if ($rU == "{u}") {{ $rU = "{t}"; }}' for u, t in aliases.items())
    tls_lines = "" if tls is None else (
        f'enable_tls=yes\nlisten=tls:127.0.0.1:{tls[2]}\n')
    tls_mod = "" if tls is None else (
        f'loadmodule "tls.so"\nmodparam("tls", "certificate", "{tls[0]}")\n'
        f'modparam("tls", "private_key", "{tls[1]}")\nmodparam("tls", "tls_method", "TLSv1.2+")\n'
        f'modparam("tls", "verify_certificate", 0)\nmodparam("tls", "require_certificate", 0)\n')
    return f"""#!KAMAILIO
{tls_lines}debug=2
log_stderror=yes
log_prefix="{{$mt $rm $ci}} "
children=2
tcp_children=2
listen=udp:127.0.0.1:{port}
listen=tcp:127.0.0.1:{port}
alias="127.0.0.1:{port}"
auto_aliases=no
mpath="{MODULES}"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "auth.so"
loadmodule "kex.so"
loadmodule "corex.so"
{tls_mod}modparam("auth", "algorithm", "{algorithm}")
modparam("auth", "qop", "auth")
modparam("registrar", "max_expires", {max_expires})
modparam("registrar", "min_expires", {min_expires})
modparam("registrar", "min_expires_mode", 1)
modparam("tm", "fr_inv_timer", 60000)

route[CREDS] {{
    $var(pw) = "";
{pw}
}}

request_route {{
  if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
  if (has_totag()) {{
    if (is_method("ACK") && !t_check_trans()) {{ t_relay(); exit; }}
    t_relay();
    exit;
  }}
  if (is_method("CANCEL")) {{ if (t_check_trans()) t_relay(); exit; }}
  route(CREDS);
  if (is_method("REGISTER")) {{
    if ($var(pw) == "" || !pv_www_authenticate("$fd", "$var(pw)", "0")) {{ www_challenge("$fd", "0"); exit; }}
    if (!save("location")) sl_reply_error();
    exit;
  }}
  if (is_method("INVITE") && $var(pw) != "") {{
    if (!pv_proxy_authenticate("$fd", "$var(pw)", "0")) {{ proxy_challenge("$fd", "0"); exit; }}
    consume_credentials();
  }}
  xlog("L_INFO", "routing $rm to $rU\\n");
{reply_lines}
{route_lines}
{alias_lines}
  if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
  t_relay();
}}
"""


@contextlib.contextmanager
def kamailio(users: dict[str, str], routes: dict[str, tuple[str, int]] | None = None,
             replies: dict[str, tuple[int, str]] | None = None, aliases: dict[str, str] | None = None,
             algorithm: str = "MD5", max_expires: int = 300, max_seconds: float = 180.0, min_expires: int = 0,
             tls: tuple[str, str] | None = None) -> Iterator[Peer]:
    """``tls``: (certificate PEM, key PEM) adds a TLS listener on ``peer.tls_port``."""
    reason = kamailio_unavailable()
    if reason:
        raise PeerError(reason)
    workdir = tempfile.mkdtemp(prefix="cutover-kamailio-")
    port = free_port("127.0.0.1")
    tls_port = free_port("127.0.0.1", kind=socket.SOCK_STREAM) if tls else None
    cfg = os.path.join(workdir, "kamailio.cfg")
    with open(cfg, "w") as fh:
        fh.write(_config(port, users, routes or {}, replies or {}, aliases or {}, algorithm, max_expires,
                         (tls[0], tls[1], tls_port) if tls else None, min_expires))
    argv = ["timeout", "-s", "KILL", str(int(max_seconds)), KAMAILIO, "-f", cfg, "-DD", "-E", "-Y", workdir,
            "-m", "32", "-M", "4"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log: list[str] = []
    reader = LineReader(proc.stdout.fileno())
    try:
        deadline = time.monotonic() + 10
        ready = False
        while time.monotonic() < deadline and not ready:
            line = reader.readline(0.2)
            if line is not None:
                log.append(line.rstrip())
                continue
            if proc.poll() is not None:
                break
            ready = _udp_answers(port)
        if not ready:
            raise PeerError("kamailio did not start: " + " | ".join(log[-8:]))
        peer = Peer(proc, ("127.0.0.1", port), log, workdir, tls_port)
        yield peer
    finally:
        _end(proc)
        while (line := reader.readline(0.05)) is not None:
            log.append(line.rstrip())
        proc.stdout.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _udp_answers(port: int) -> bool:
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.bind(("127.0.0.1", 0))
        lp = s.getsockname()[1]
        msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bKready\r\n"
               f"From: <sip:ready@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: ready@x\r\n"
               "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        try:
            s.sendto(msg, ("127.0.0.1", port))
            return bool(s.recv(4096))
        except OSError:
            return False


def _udp_bound(port: int) -> bool:
    """SIPp's UAS answers only INVITE: it is up once its port is taken."""
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _end(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)          # our own session: kamailio's children with it
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(timeout=3)


@contextlib.contextmanager
def sipp_uas(rtp_echo: bool = True, max_seconds: float = 180.0) -> Iterator[Peer]:
    """SIPp's built-in UAS (100/180/200, waits for BYE), echoing RTP with ``rtp_echo``."""
    if shutil.which("sipp") is None:
        raise PeerError("sipp not installed (run scripts/sysdeps.sh)")
    workdir = tempfile.mkdtemp(prefix="cutover-sipp-")
    port = free_port("127.0.0.1")
    mport = free_port("127.0.0.1")
    mport -= mport % 2
    argv = ["timeout", "-s", "KILL", str(int(max_seconds)), "sipp", "-sn", "uas", "-i", "127.0.0.1",
            "-p", str(port), "-mi", "127.0.0.1", "-mp", str(mport), "-nostdin", "-trace_err",
            "-error_file", os.path.join(workdir, "err.log")]
    if rtp_echo:
        argv.append("-rtp_echo")
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=workdir)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise PeerError(f"sipp exited: {proc.stderr.read().decode(errors='replace')[-400:]}")
            if _udp_bound(port):
                break
            time.sleep(0.1)
        else:
            raise PeerError("sipp did not start")
        yield Peer(proc, ("127.0.0.1", port), [], workdir)
    finally:
        _end(proc)
        proc.stderr.close()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def sip_alg(upstream: tuple[str, int], rewrite: dict[bytes, bytes], max_seconds: float = 120.0) -> Iterator[Peer]:
    """A SIP ALG in miniature: a UDP relay between one client and ``upstream`` (Kamailio)
    that rewrites the client's SIP on the way out, as a router's ALG rewrites addresses in
    Contact and SDP. Replacements must keep the length (Content-Length stays right), e.g.
    b"127.0.0.1" -> b"127.0.0.2". Replies go back to the client unchanged."""
    import select
    import threading
    for old, new in rewrite.items():
        if len(old) != len(new):
            raise ValueError("rewrites must keep the length")
    front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    front.bind(("127.0.0.1", 0))
    back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    back.bind(("127.0.0.1", 0))
    halt = threading.Event()
    client: list[tuple[str, int]] = []
    log: list[str] = []

    def loop() -> None:
        end = time.monotonic() + max_seconds
        while not halt.is_set() and time.monotonic() < end:
            ready, _, _ = select.select([front, back], [], [], 0.1)
            for s in ready:
                try:
                    data, src = s.recvfrom(65535)
                except OSError:
                    continue
                if s is front:
                    client[:] = [src]
                    for old, new in rewrite.items():
                        if old in data:
                            log.append(f"rewrote {old!r} -> {new!r} in {data.split(b' ', 1)[0].decode()}")
                            data = data.replace(old, new)
                    back.sendto(data, upstream)
                elif client:
                    front.sendto(data, client[0])

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield Peer(None, front.getsockname()[:2], log, "")     # type: ignore[arg-type]
    finally:
        halt.set()
        t.join(timeout=2)
        front.close()
        back.close()
