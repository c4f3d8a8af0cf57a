"""A real test call through the provider's SIP trunk: register, call, carry
audio both ways, measure each direction; and the porting check.

Why: a STAMP stream to our own reflector cannot see what breaks calls at a
cutover: the media of a real call flows to the provider's SBC, so a SIP ALG
rewriting SDP (one-way audio), a trunk refusing the codec, registration
rejected, or several seconds of post-dial delay only show in a call.

Flow: account (probes.sipaccount) -> first hop (outbound proxy, else
registrar, else the called URI; RFC 3263 as ``probe sip``) -> REGISTER with
digest (probes.sipua) -> INVITE with an SDP offer (the profile's codec first,
then alternatives) -> ACK -> RTP both ways for ``duration_s`` (probes.rtp) ->
BYE -> un-REGISTER.

Who measures which direction (``media.mode``):

    self      a second account (``answer_account``) registered by us answers:
              both directions are measured end to end, one-way delay on one clock
    echo      the far end returns our own packets (SSRC and payload match): the
              round trip is measured; one-way delay is half the RTP round trip
    far-end   anything else: far -> cutover is measured (loss from sequence
              numbers); cutover -> far is what the far end's RTCP receiver
              reports say (none: not observable); delay = half the RTCP round
              trip, else half the INVITE -> 100 Trying round trip

Outcome and exit code of the CLI: ``ok`` (0); ``registration-failed``,
``rejected`` (486, 488, 403...), ``no-answer``, ``no-audio``, ``one-way-audio``,
``porting`` (some ported number did not arrive) (1); ``unreachable`` (3).
MOS and post-dial delay are judged against the profile by the suite step
(harness/suite/call.py), not here.

Measured on loopback against Kamailio 5.6 + SIPp 3.6 (tests/test_call_lab.py):
registration 1-7 ms (MD5 and SHA-256, one 401 round), post-dial delay 1-9 ms to
SIPp and 9-90 ms to our own answering account, 150 of 150 packets back from the
echo in 3 s, MOS 4.37 (the E-model at d = 60 ms buffer + 20 ms ptime); through
the impairment relay (40 +/- 10 ms, 2 %) loss equal to the relay's drops, |IPDV|
6.4-6.8 ms against the 6.67 ms expected, one-way 40 ms.
"""

from __future__ import annotations

import ipaddress
import secrets
import statistics
import threading
import time
from dataclasses import dataclass, field

from probes.events import Emitter, ProgressCallback
from probes.result import BadInput, clean, local_error
from probes.rtp import (DYNAMIC_PT, ENCODINGS, DirectionStats, RtpSession, Sdp, build_sdp, direction_from_report,
                        direction_stats, negotiated, offer_encodings)
from probes.wire.sip_message import SipUriError, parse_uri
from probes.sip_resolve import DnsLookup, DnsPythonLookup, resolve
from probes.sipaccount import Account
from probes.voice.codecs import get_codec
from probes.sipua import (AnswerPolicy, Channel, SipError, UserAgent, fmt_hostport, norm_contact, uri_of,
                          via_params)

MAX_TARGETS = 4
SDP_REWRITTEN = "our SDP c="         # how the SDP-rewriting evidence starts (the cause looks for it)


@dataclass
class CallConfig:
    account: Account
    uri: str | None = None                # whom to call (sip:URI, or a number: sip:NUMBER@domain)
    answer_account: Account | None = None   # our second account: answers (call yourself, porting)
    answer_policy: AnswerPolicy | None = None   # how it answers (default: answer after 200 ms, symmetric RTP)
    ported: list[str] = field(default_factory=list)
    codec: str = "g711"
    ptime_ms: int = 20
    duration_s: float = 10.0
    porting_duration_s: float = 2.0
    ring_timeout_s: float = 30.0
    expires_s: int = 300
    jitter_buffer_ms: float = 60.0
    transport: str | None = None
    ca_file: str | None = None            # TLS: trust this CA (PEM) instead of the system store
    insecure: bool = False                # TLS: do not verify the certificate
    timeout_s: float = 8.0
    register_only: bool = False
    source: str | None = None
    interface: str | None = None
    dns: DnsLookup | None = None


@dataclass
class Registration:
    account: str
    registrar: str
    request_uri: str
    ok: bool = False
    status_code: int | None = None
    reason: str | None = None
    time_ms: float | None = None
    expires_s: int | None = None
    algorithm: str | None = None
    auth_rejected: bool = False
    min_expires_s: int | None = None        # the server answered 423 Interval Too Brief asking this
    error: str | None = None


@dataclass
class CallLeg:
    target: str
    status_code: int | None = None
    reason: str | None = None
    trying_ms: float | None = None
    post_dial_delay_ms: float | None = None
    answer_ms: float | None = None
    provisional: list[int] = field(default_factory=list)
    early_media: bool = False
    codec: str | None = None                # our codec table name (g711...)
    encoding: str | None = None             # SDP name (PCMU...)
    ptime_ms: int | None = None
    offered: list[str] = field(default_factory=list)
    connected: bool = False
    talk_s: float | None = None
    ended_by: str | None = None             # cutover | far end
    bye_status: int | None = None
    session_expires: str | None = None
    arrived_at_answer_account: bool | None = None
    error: str | None = None


@dataclass
class Media:
    mode: str | None = None                 # self | echo | far-end
    directions: list[dict] = field(default_factory=list)
    audio: str | None = None                # both-ways | one-way | none | unknown
    silent_direction: str | None = None
    problem: str | None = None
    likely_cause: str | None = None
    local_address: str | None = None
    remote_sdp_address: str | None = None
    remote_rtp_source: str | None = None
    silence_packets: int = 0


@dataclass
class PortedNumber:
    number: str
    arrived: bool = False
    status_code: int | None = None
    reason: str | None = None
    post_dial_delay_ms: float | None = None
    mos_min: float | None = None
    audio: str | None = None
    note: str | None = None


@dataclass
class CallResult:
    target: str | None
    account: dict = field(default_factory=dict)
    transport: str | None = None
    first_hop: str | None = None
    tls: dict | None = None
    registration: Registration | None = None
    answer_registration: Registration | None = None
    call: CallLeg | None = None
    media: Media | None = None
    nat_detected: bool | None = None
    public_address: str | None = None
    alg_suspected: bool | None = None
    nat_evidence: list[str] = field(default_factory=list)
    porting: list[PortedNumber] = field(default_factory=list)
    porting_summary: str | None = None
    outcome: str = "unreachable"
    summary: str = ""
    resolution: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)
    partial: bool = False
    measured: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def to_dict(self) -> dict:
        d = clean(self)
        d["probe"] = "call"
        return d


class _Stop(Exception):
    pass


def _called_uri(text: str, domain: str) -> str:
    """A number or user becomes sip:USER@domain; a SIP URI is checked and kept."""
    t = text.strip()
    if t.lower().startswith(("sip:", "sips:")):
        uri = parse_uri(t)
        if not uri.user:
            raise SipUriError(f"{text!r}: no user part; expected sip:USER@host or a number")
        return t
    if not t or any(c in t for c in " <>;@\"") :
        raise SipUriError(f"{text!r}: expected a SIP URI (sip:echo@sip.carrier.example) or a number")
    return f"sip:{t.replace(' ', '')}@{domain}"


def validate(config: CallConfig) -> None:
    """Bad arguments -> BadInput (probes.result) naming the config field (exit 2)."""
    if config.duration_s <= 0 or config.duration_s > 3600:
        raise BadInput(f"duration_s {config.duration_s:g}: expected more than 0 s, at most 3600 s",
                       field="duration_s")
    if config.ring_timeout_s <= 0:
        raise BadInput(f"ring_timeout_s {config.ring_timeout_s:g}: expected > 0 s", field="ring_timeout_s")
    if config.timeout_s <= 0:
        raise BadInput(f"timeout_s {config.timeout_s:g}: expected > 0 s", field="timeout_s")
    if config.expires_s < 0:
        raise BadInput(f"expires_s {config.expires_s}: expected >= 0 s", field="expires_s")
    if config.jitter_buffer_ms < 0:
        raise BadInput(f"jitter_buffer_ms {config.jitter_buffer_ms:g}: expected >= 0 ms", field="jitter_buffer_ms")
    try:
        codec = get_codec(config.codec)
    except KeyError as exc:                    # names the known codecs
        raise BadInput(f"codec: {exc.args[0]}", field="codec") from None
    if config.ptime_ms not in codec.ptimes_ms:
        raise BadInput(f"ptime_ms {config.ptime_ms}: {codec.name} is used with "
                       f"{', '.join(map(str, codec.ptimes_ms))} ms", field="ptime_ms")
    if config.transport and config.transport not in ("udp", "tcp", "tls"):
        raise BadInput(f"transport {config.transport!r}: expected udp, tcp or tls", field="transport")
    if config.ca_file:
        try:
            open(config.ca_file, "rb").close()
        except OSError as exc:
            raise BadInput(f"ca_file {config.ca_file}: {exc.strerror}", field="ca_file") from None
    if not config.uri and not config.ported and not config.register_only:
        raise BadInput("uri: nothing to do: give a URI to call, ported numbers, or register only", field="uri")
    if config.ported and config.answer_account is None:
        raise BadInput("answer_account: the porting check needs the account registered on the new trunk",
                       field="answer_account")
    try:
        if config.uri:
            _called_uri(config.uri, config.account.domain)
    except SipUriError as exc:
        raise SipUriError(f"uri: {exc}", field="uri") from None
    for n in config.ported:
        try:
            _called_uri(n, config.account.domain)
        except SipUriError as exc:
            raise SipUriError(f"ported: {exc}", field="ported") from None


def _first_hop(account: Account, fallback: str | None) -> str:
    return account.outbound_proxy or account.registrar or fallback or f"sip:{account.domain}"


def _connect(hop: str, config: CallConfig, transport: str | None, result: CallResult) -> Channel:
    uri = parse_uri(hop)
    res = resolve(uri, config.dns or DnsPythonLookup(), transport)
    result.resolution += res.steps
    result.errors += res.errors
    if not res.targets:
        result.gaps += res.gaps               # e.g. no resolver configured here
    last: SipError | None = None
    for target in res.targets[:MAX_TARGETS]:
        try:
            return Channel(target, config.source, config.interface, config.timeout_s, server_name=uri.host,
                           ca_file=config.ca_file, insecure=config.insecure)
        except SipError as exc:
            last = exc
            result.errors.append(f"{fmt_hostport(target.address, target.port)}/{target.transport}: {exc}")
            if exc.local:                     # e.g. a source address not on this machine
                result.gaps.append(result.errors[-1])
    raise last or SipError("error", f"no SIP server found for {uri.host}", bool(res.gaps))


def run(config: CallConfig, progress: ProgressCallback | None = None,
        stop: threading.Event | None = None) -> CallResult:
    validate(config)
    emit = Emitter("call", progress)
    stop = stop or threading.Event()
    acc = config.account
    target = _called_uri(config.uri, acc.domain) if config.uri else None
    result = CallResult(target=target, account=acc.to_dict())
    uas: UserAgent | None = None
    uac: UserAgent | None = None
    try:
        hop = _first_hop(acc, target)
        transport = config.transport or acc.transport
        try:
            ch = _connect(hop, config, transport, result)
        except SipError as exc:
            _sip_error(result, exc)
            return _finish(result, "unreachable")
        result.transport, result.first_hop, result.tls = ch.transport, fmt_hostport(*ch.dest), ch.tls
        media_host = ch.local[0]
        uac = UserAgent(acc, ch, media_host, answer=AnswerPolicy(mode="busy"),
                        warn=lambda m: emit("warning", m))
        if acc.registrar:
            result.registration = _register(uac, acc, config, stop, emit, result)
            if not result.registration.ok:
                result.measured = result.registration.status_code is not None
                result.errors.append(f"registration of {acc.aor}: {result.registration.error}")
                return _finish(result, "registration-failed" if result.registration.status_code else "unreachable")
        if config.answer_account is not None:
            ans = config.answer_account
            ach = _connect(_first_hop(ans, None), config, config.transport or ans.transport, result)
            uas = UserAgent(ans, ach, ach.local[0], answer=config.answer_policy or AnswerPolicy(mode="answer"),
                            warn=lambda m: emit("warning", m))
            if ans.registrar:
                result.answer_registration = _register(uas, ans, config, stop, emit, result)
                if not result.answer_registration.ok:
                    result.measured = result.answer_registration.status_code is not None
                    result.errors.append(f"answering account {ans.aor} did not register: "
                                         f"{result.answer_registration.error}")
                    return _finish(result, "registration-failed" if result.answer_registration.status_code
                                   else "unreachable")
        result.measured = True
        if config.register_only:
            return _finish(result, "ok")
        if target:
            emit("start", f"calling {target}")
            result.call, result.media = _call(uac, uas, target, config, config.duration_s, stop, emit, result)
            if stop.is_set():
                raise _Stop()
            if result.call.status_code is None and not result.call.connected:
                result.measured = result.registration is not None
                return _finish(result, "unreachable" if not result.measured else "no-answer")
        for number in config.ported:
            if stop.is_set():
                raise _Stop()
            assert uas is not None                   # validate(): ported numbers need the answer account
            result.porting.append(_port_check(uac, uas, number, config, stop, emit, result))
        return _finish(result, None)
    except _Stop:
        result.partial = True
        local_error(result, "stopped")
        return _finish(result, None)
    except SipError as exc:
        result.partial = result.measured
        _sip_error(result, exc)
        return _finish(result, None if result.measured else "unreachable")
    finally:
        for ua, reg in ((uac, result.registration), (uas, result.answer_registration)):
            if ua is not None:
                if reg is not None and reg.ok:
                    try:
                        ua.register(reg.request_uri, 0, threading.Event(), timeout_s=2.0)
                    except SipError:
                        pass
                ua.close()


def _register(ua: UserAgent, acc: Account, config: CallConfig, stop, emit, result) -> Registration:
    registrar = acc.registrar or f"sip:{acc.domain}"
    reg_uri = f"sip:{acc.domain}"          # RFC 3261 §10.2: the Request-URI names the domain
    emit("start", f"REGISTER {acc.aor} at {registrar}")
    out = ua.register(reg_uri, config.expires_s, stop, config.timeout_s)
    reg = Registration(acc.aor, registrar, reg_uri, out.ok, out.status, out.reason, out.time_ms, out.expires_s,
                       out.algorithm, out.auth_rejected, out.min_expires_s, out.error)
    if out.last is not None:
        _nat_evidence(ua, out.last, result, registered_contacts=out.contacts if out.ok else None)
    emit("done" if out.ok else "warning",
         f"registered {acc.aor} for {out.expires_s} s in {out.time_ms:.0f} ms" if out.ok else
         f"registration of {acc.aor} failed: {out.error}")
    return reg


def _nat_evidence(ua: UserAgent, resp, result: CallResult, registered_contacts: list[str] | None = None) -> None:
    via = via_params(resp)
    received, rport = via.get("received"), via.get("rport")
    local_h, local_p = ua.local_host, ua.local_port
    if result.nat_detected is None:
        result.nat_detected = False
    if received and received.strip("[]").lower() != local_h.lower():
        result.nat_detected = True
        result.public_address = fmt_hostport(received.strip("[]"), int(rport) if rport and rport.isdigit() else local_p)
        _add(result, f"the server saw our SIP from {result.public_address}, we sent from "
                     f"{fmt_hostport(local_h, local_p)} (NAT)")
    elif rport and rport.isdigit() and int(rport) != local_p:
        result.nat_detected = True
        result.public_address = fmt_hostport(local_h, int(rport))
        _add(result, f"the server saw our SIP from port {rport}, we sent from {local_p} (NAT)")
    if via.get("sent_by") and via["sent_by"].lower() != fmt_hostport(local_h, local_p).lower():
        result.alg_suspected = True
        _add(result, f"our Via came back as {via['sent_by']}, we sent {fmt_hostport(local_h, local_p)} (SIP ALG)")
    if registered_contacts:
        # the bindings of our user (other devices of the account may be registered too)
        ours = [uri_of(c) or "" for c in registered_contacts
                if (uri_of(c) or "").lower().startswith(f"sip:{ua.account.username.lower()}@")]
        if ours and norm_contact(ua.contact_uri) not in {norm_contact(u) for u in ours}:
            result.alg_suspected = True
            _add(result, f"the registrar stored our Contact as {ours[0]}, we sent {ua.contact_uri} "
                         "(rewritten on the path: a SIP ALG, or the registrar's own NAT fix-up)")
    if result.alg_suspected is None:
        result.alg_suspected = False


def _add(result: CallResult, text: str) -> None:
    if text not in result.nat_evidence:
        result.nat_evidence.append(text)


def _call(uac: UserAgent, uas: UserAgent | None, target: str, config: CallConfig, duration_s: float,
          stop, emit, result: CallResult) -> tuple[CallLeg, Media | None]:
    leg = CallLeg(target)
    leg.offered = offer_encodings(config.codec)
    first = leg.offered[0]
    static = ENCODINGS[first][2]
    pt0 = static if static is not None else DYNAMIC_PT[first]
    rtp = RtpSession(uac.media_host, first, pt0, config.ptime_ms)
    sdp = build_sdp(uac.media_host, rtp.port, leg.offered, config.ptime_ms, secrets.randbits(31))
    before = len(uas.incoming) if uas else 0
    try:
        out = uac.invite(target, sdp, stop, config.ring_timeout_s,
                         timeout_s=max(config.timeout_s, config.ring_timeout_s + 8))
    except SipError:
        rtp.stop()
        raise
    leg.status_code, leg.reason = out.status, out.reason
    leg.trying_ms, leg.post_dial_delay_ms, leg.answer_ms = out.trying_ms, out.pdd_ms, out.answer_ms
    leg.provisional, leg.early_media, leg.session_expires = out.provisional, out.early_media, out.session_expires
    leg.error = out.error
    if out.cancelled and out.status in (None, 487):
        leg.error = f"no answer within {config.ring_timeout_s:g} s (rang: {180 in out.provisional}); cancelled"
    incoming = uas.incoming[before:] if uas else []
    leg.arrived_at_answer_account = bool(incoming) if uas else None
    if out.dialog is None:
        rtp.stop()
        if not out.provisional and out.status is None:
            leg.error = leg.error or "no answer"
        emit("warning", f"call to {target}: " + (f"{out.status} {out.reason}" if out.status else str(leg.error)))
        return leg, None
    d = out.dialog
    leg.connected = True
    answer = d.offer
    pick = negotiated(answer) if answer else None
    media = Media(local_address=fmt_hostport(uac.media_host, rtp.port))
    if answer is None or pick is None or not answer.address or not answer.port:
        leg.error = "the 200 OK carried no usable SDP answer"
        rtp.stop()
        uac.bye(d, threading.Event())
        return leg, media
    pt, enc = pick
    leg.encoding, leg.codec = enc, ENCODINGS[enc][0] if enc in ENCODINGS else None
    leg.ptime_ms = answer.ptime_ms or config.ptime_ms
    if enc not in ENCODINGS:
        leg.error = f"the far end chose {enc}, which cutover cannot send"
        rtp.stop()
        uac.bye(d, threading.Event())
        return leg, media
    rtp.configure(enc, pt, leg.ptime_ms)
    media.remote_sdp_address = fmt_hostport(answer.address, answer.port)
    emit("progress", f"connected: {enc}/{leg.ptime_ms} ms, media to {media.remote_sdp_address}")
    rtp.start((answer.address, answer.port), duration_s)
    t0 = time.monotonic()
    callee = incoming[-1] if incoming else None
    while time.monotonic() - t0 < duration_s + 0.3:
        if stop.is_set() or d.ended_by_remote:
            break
        time.sleep(0.05)
    leg.talk_s = time.monotonic() - t0
    rtp.halt_sending()
    if callee and callee.media:
        callee.media.halt_sending()            # our own far end: its count is then exact
    time.sleep(0.3)                            # the last packets in flight
    if d.ended_by_remote:
        leg.ended_by = "far end"
    else:
        leg.ended_by = "cutover"
        # a fresh event: even a stopped probe hangs up (2 s then), the trunk must not keep the call
        bye = uac.bye(d, threading.Event(), timeout_s=2.0 if stop.is_set() else 8.0)
        leg.bye_status = bye.status if bye else None
    rtp.stop()
    if callee and callee.media:
        time.sleep(0.1)
        callee.media.stop()
    _media_figures(media, rtp, answer, callee, leg, config, result, uac)
    return leg, media                          # a stopped call keeps its figures; run() marks it partial


def _rtt_ms(rtp: RtpSession) -> float | None:
    rtts = []
    for r in rtp.received:
        if r.echoed:
            i = (r.seq - rtp.seq0) & 0xFFFF
            if i < len(rtp.sent_ns):
                rtts.append((r.arrival_ns - rtp.sent_ns[i]) / 1e6)
    return statistics.median(rtts) if rtts else None


def _one_way(rx_session: RtpSession, tx_session: RtpSession) -> float | None:
    """Both ends in this process: arrival minus send on one clock (median)."""
    d = []
    for r in rx_session.received:
        if r.ssrc == tx_session.ssrc:
            i = (r.seq - tx_session.seq0) & 0xFFFF
            if i < len(tx_session.sent_ns):
                d.append((r.arrival_ns - tx_session.sent_ns[i]) / 1e6)
    return statistics.median(d) if d else None


def _delays(rx: RtpSession, tx: RtpSession) -> list[float]:
    """Per packet of ``tx``'s stream at ``rx`` (arrival order): arrival minus actual send time."""
    out = []
    for r in rx.received:
        if r.ssrc == tx.ssrc:
            i = (r.seq - tx.seq0) & 0xFFFF
            out.append((r.arrival_ns - tx.sent_ns[i]) / 1e6 if i < len(tx.sent_ns) else float("nan"))
    return out


def _stream(session: RtpSession, ssrc: int | None = None):
    pkts = session.received
    if ssrc is None and pkts:
        counts: dict[int, int] = {}
        for p in pkts:
            counts[p.ssrc] = counts.get(p.ssrc, 0) + 1
        ssrc = max(counts, key=lambda k: counts[k])
    sel = [p for p in pkts if p.ssrc == ssrc]
    return [p.arrival_ns / 1e6 for p in sel], [p.seq for p in sel], [p.timestamp for p in sel]


# addresses a far end can advertise but nobody outside its LAN can reach: RFC 1918, RFC 6598
# carrier-grade NAT, IPv6 ULA and link-local (ipaddress' is_private would also flag the
# documentation ranges, which stand in for public addresses in examples and tests)
UNREACHABLE_NETS = tuple(ipaddress.ip_network(n) for n in (
    "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10"))


def _private(addr: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((addr or "").strip("[]"))
    except ValueError:
        return False
    return any(ip.version == n.version and ip in n for n in UNREACHABLE_NETS)


def _media_figures(media: Media, rtp: RtpSession, answer: Sdp, callee, leg: CallLeg, config: CallConfig,
                   result: CallResult, uac: UserAgent) -> None:
    codec, ptime, enc, jb = leg.codec, leg.ptime_ms, leg.encoding, config.jitter_buffer_ms
    assert codec is not None and ptime is not None and enc is not None     # _call set them before media
    clock = ENCODINGS[enc][1]
    media.silence_packets = rtp.silent_payloads
    if rtp.first_source:
        media.remote_rtp_source = fmt_hostport(*rtp.first_source)
        if (rtp.first_source[0], rtp.first_source[1]) != (answer.address, answer.port):
            _add(result, f"the far end's RTP came from {media.remote_rtp_source}, its SDP said "
                         f"{media.remote_sdp_address} (NAT or a media relay between)")
    echoed = sum(1 for r in rtp.received if r.echoed)
    sent_us = len(rtp.sent_ns)
    dirs = []
    if callee is not None and callee.media is not None:
        media.mode = "self"
        # what our offer looked like on arrival at the answering account
        if callee.offer and callee.offer.address != uac.media_host:
            _add(result, f"{SDP_REWRITTEN} {uac.media_host} arrived as {callee.offer.address} "
                         "(an SBC anchoring media, or a SIP ALG rewriting SDP)")
        a, s, t = _stream(callee.media, rtp.ssrc)
        up = direction_stats("cutover->far", a, s, t, clock, codec, ptime, jb, sent=sent_us,
                             one_way_ms=_one_way(callee.media, rtp), one_way_source="measured",
                             measured_by="answer account", delays_ms=_delays(callee.media, rtp))
        a, s, t = _stream(rtp, callee.media.ssrc)
        down = direction_stats("far->cutover", a, s, t, clock, codec, ptime, jb,
                               sent=len(callee.media.sent_ns) or None,
                               one_way_ms=_one_way(rtp, callee.media), one_way_source="measured",
                               delays_ms=_delays(rtp, callee.media))
        dirs = [up, down]
        heard_far, heard_us = down.packets_received > 0, up.packets_received > 0
    elif echoed and echoed >= len(rtp.received) / 2:
        media.mode = "echo"
        rtt = _rtt_ms(rtp)
        a, s, t = _stream(rtp, rtp.ssrc)
        rt = direction_stats("round trip (echo)", a, s, t, clock, codec, ptime, jb, sent=sent_us,
                             one_way_ms=rtt / 2 if rtt is not None else None, one_way_source="half-rtt-echo",
                             delays_ms=_delays(rtp, rtp))
        dirs = [rt]
        heard_far = heard_us = rt.packets_received > 0
    else:
        media.mode = "far-end" if rtp.received or not callee else "self"
        a, s, t = _stream(rtp)
        rtt = next((r for _at, r, _b in reversed(rtp.reports) if r is not None), None)
        if rtt is not None:
            ow, ow_source = rtt / 2, "half-rtt-rtcp"
        elif leg.trying_ms is not None:
            ow, ow_source = leg.trying_ms / 2, "half-sip-rtt"
        else:
            ow, ow_source = None, None
        down = direction_stats("far->cutover", a, s, t, clock, codec, ptime, jb, one_way_ms=ow,
                               one_way_source=ow_source)
        if not rtp.received:
            down.loss_pct = None
        dirs = [down]
        heard_far, heard_us = down.packets_received > 0, None
        if rtp.reports:                          # the far end's RTCP says what it got from us
            up = direction_from_report(rtp.reports[-1][2], rtp.seq0, sent_us, clock, codec, ptime, jb, ow, ow_source)
            dirs.insert(0, up)
            heard_us = up.packets_received > 0
        elif rtp.rtcp_packets_received:          # it reports, but never on us: it hears nothing from us
            dirs.insert(0, DirectionStats("cutover->far", sent_us, 0, 100.0, 0.0, None,
                                          measured_by="far end (RTCP)"))
            heard_us = False
    media.directions = [clean(x) for x in dirs]
    if heard_far and heard_us is not False:
        media.audio = "both-ways" if heard_us else "unknown"
        if heard_us is None:
            media.problem = None
        return
    cause = _cause(answer, media, result, "cutover->far" if heard_far else "far->cutover")
    if not heard_far and heard_us is False:
        media.audio, media.silent_direction = "none", "both"
        media.problem = "no audio in either direction"
    elif not heard_far:
        media.audio, media.silent_direction = ("none" if media.mode == "echo" else "one-way"), "far->cutover"
        if media.mode == "echo":
            media.problem = (f"no audio from the far end: nothing came back from {media.remote_sdp_address} "
                             "(our RTP may not reach it, or its RTP does not reach us)")
        else:
            media.problem = (f"no audio from the far end (far end -> cutover silent): no RTP arrived at "
                             f"{media.local_address} from {media.remote_sdp_address}")
    else:
        media.audio, media.silent_direction = "one-way", "cutover->far"
        media.problem = (f"no audio toward the far end (cutover -> far end silent): our RTP to "
                         f"{media.remote_sdp_address} did not arrive")
    media.likely_cause = cause


def _cause(answer: Sdp, media: Media, result: CallResult, silent: str = "far->cutover") -> str:
    """The likely cause of a silent direction, most specific evidence first."""
    if answer.address in ("0.0.0.0", "::") or answer.direction in ("sendonly", "inactive"):
        return f"the far end's SDP puts the call on hold ({answer.direction}, c= {answer.address})"
    if _private(answer.address) and not _private((result.first_hop or "").rsplit(":", 1)[0].strip("[]")):
        return (f"SDP c= address {answer.address} is private: a SIP ALG or a misconfigured NAT "
                "(the far end advertises an address we cannot reach)")
    rewritten = [e for e in result.nat_evidence if e.startswith(SDP_REWRITTEN)]
    if rewritten:
        return f"{rewritten[0]}: a SIP ALG rewriting SDP"
    if silent == "cutover->far":
        return (f"our RTP to {media.remote_sdp_address} (the far end's SDP) does not arrive: a firewall "
                "dropping outbound UDP, or an SDP address that is not where the far end listens")
    return ("the far end sends no RTP, or a firewall/NAT drops it: check that UDP to "
            f"{media.local_address} is allowed in and that the far end really sends")


def _port_check(uac: UserAgent, uas: UserAgent, number: str, config: CallConfig, stop, emit,
                result: CallResult) -> PortedNumber:
    target = _called_uri(number, config.account.domain)
    emit("start", f"porting: calling {number}")
    leg, media = _call(uac, uas, target, config, config.porting_duration_s, stop, emit, result)
    if stop.is_set():
        raise _Stop()
    p = PortedNumber(number, bool(leg.arrived_at_answer_account), leg.status_code, leg.reason,
                     leg.post_dial_delay_ms)
    if media and media.directions:
        mos = [float(d["mos"]) for d in media.directions if d.get("mos") is not None]
        p.mos_min = min(mos) if mos else None
        p.audio = media.audio
    if p.arrived:
        p.note = f"rings on the new trunk ({uas.account.aor})"
    elif leg.connected:
        p.note = (f"answered elsewhere ({leg.status_code} {leg.reason}): still routed to the old trunk "
                  "or another destination")
    elif leg.status_code:
        p.note = f"did not arrive: {leg.status_code} {leg.reason}"
    else:
        p.note = f"did not arrive: {leg.error or 'no answer'}"
    return p


def _sip_error(result: CallResult, exc: SipError) -> None:
    """A transport failure into the result: a gap when the cause is ours."""
    if exc.local:
        local_error(result, str(exc))
    else:
        result.errors.append(str(exc))


def _finish(result: CallResult, outcome: str | None) -> CallResult:
    if outcome is None:
        outcome = "ok"
        call, media = result.call, result.media
        if call is not None:
            if not call.connected:
                outcome = "no-answer" if (call.status_code in (None, 408, 480, 487)) else "rejected"
            elif media is None or media.audio is None:
                outcome = "no-audio"
            elif media.audio == "none":
                outcome = "no-audio"
            elif media.audio == "one-way":
                outcome = "one-way-audio"
        if outcome == "ok" and result.porting and not all(p.arrived for p in result.porting):
            outcome = "porting"
        if result.partial and outcome == "ok":
            outcome = "unreachable" if not result.measured else outcome
    result.outcome = outcome
    if result.porting:
        n = sum(p.arrived for p in result.porting)
        missing = [p.number for p in result.porting if not p.arrived]
        result.porting_summary = (f"{n} of {len(result.porting)} numbers ring on the new trunk"
                                  + (f"; {', '.join(missing)} "
                                     f"{'still rings' if len(missing) == 1 else 'still ring'} elsewhere"
                                     if missing else ""))
    result.summary = _summary(result)
    return result


def _summary(r: CallResult) -> str:
    if r.outcome == "registration-failed":
        reg = r.registration if r.registration and not r.registration.ok else r.answer_registration
        return f"registration failed: {reg.error if reg else 'unknown'}"
    if r.outcome == "unreachable":
        return "could not measure: " + ("; ".join(r.errors) or "no answer")
    parts = []
    if r.call:
        c = r.call
        if c.connected:
            parts.append(f"call connected ({c.encoding}, post-dial delay {c.post_dial_delay_ms:.0f} ms)"
                         if c.post_dial_delay_ms is not None else f"call connected ({c.encoding})")
        elif c.status_code:
            parts.append(f"call failed: {c.status_code} {c.reason}")
        else:
            parts.append(f"call failed: {c.error}")
    if r.media:
        if r.media.problem:
            parts.append(r.media.problem + (f"; likely cause: {r.media.likely_cause}" if r.media.likely_cause else ""))
        elif r.media.audio:
            mos = [float(d["mos"]) for d in r.media.directions if d.get("mos") is not None]
            parts.append(f"audio {r.media.audio}" + (f", MOS {min(mos):.2f}" if mos else ""))
    if r.porting_summary:
        parts.append(r.porting_summary)
    if not parts and r.registration:
        parts.append(f"registered for {r.registration.expires_s} s")
    return "; ".join(parts)
