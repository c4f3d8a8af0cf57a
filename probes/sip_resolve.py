"""RFC 3263 server location: which transport, host, port and address to try.

    transport   URI transport= or --transport  -> that one
                host is an IP literal or the URI has a port -> UDP (sip:), TLS (sips:)
                else NAPTR (SIP+D2U, SIP+D2T, SIPS+D2T; sips: only SIPS+D2T), by order
                then preference; no usable NAPTR -> SRV _sip._udp, _sip._tcp, _sips._tcp
                (sips: only _sips._tcp); nothing -> UDP (sip:) / TLS (sips:)
    host/port   IP literal or explicit port -> as given (default 5060, 5061 for TLS)
                else the SRV records (priority, then RFC 2782 weighted order); none -> A/AAAA
                of the host at the default port

Every DNS answer goes through :class:`DnsLookup`, so tests feed dnspython answers built in
memory and no DNS traffic leaves the machine.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field
from typing import Any, Protocol

from probes.wire.sip_message import DEFAULT_PORTS, SipUri

NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}


@dataclass(frozen=True)
class Target:
    transport: str          # udp | tcp | tls
    host: str               # the name the address came from (or the IP literal)
    port: int
    address: str            # IP address to connect to
    source: str             # how it was found: "literal", "naptr+srv", "srv", "a/aaaa"


@dataclass
class Resolution:
    targets: list[Target] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)      # what was looked up and found, for people
    errors: list[str] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)   # the errors that are ours (probes.result)


class DnsLookup(Protocol):
    def naptr(self, name: str) -> list[tuple[int, int, str, str, str]]: ...   # order, pref, flags, service, replacement
    def srv(self, name: str) -> list[tuple[int, int, int, str]]: ...          # priority, weight, port, target
    def addresses(self, name: str) -> list[str]: ...


class DnsPythonLookup:
    """NAPTR/SRV through dnspython; addresses through the system resolver (honours
    /etc/hosts) unless ``resolver`` is given, then A/AAAA through it too."""

    def __init__(self, resolver: Any | None = None, lifetime_s: float = 3.0) -> None:
        self._system_addresses = resolver is None
        self.errors: list[str] = []
        self.gaps: list[str] = []      # the errors that are ours (probes.result)
        if resolver is None:
            import dns.resolver
            try:
                resolver = dns.resolver.Resolver()
                resolver.lifetime = lifetime_s
            except dns.resolver.NoResolverConfiguration:
                self.errors.append("no DNS resolver configured (/etc/resolv.conf): NAPTR/SRV skipped")
                self.gaps.append(self.errors[-1])
        self.resolver = resolver

    def _query(self, name: str, rdtype: str) -> list:
        import dns.exception
        import dns.resolver
        if self.resolver is None:
            return []
        try:
            return list(self.resolver.resolve(name, rdtype))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
            self.errors.append(f"DNS {rdtype} {name}: {exc.__class__.__name__}")
            return []

    def naptr(self, name):
        return [(r.order, r.preference, r.flags.decode().lower(), r.service.decode().upper(),
                 r.replacement.to_text()) for r in self._query(name, "NAPTR")]

    def srv(self, name):
        return [(r.priority, r.weight, r.port, r.target.to_text()) for r in self._query(name, "SRV")]

    def addresses(self, name):
        name = name.rstrip(".")
        if self._system_addresses:
            try:
                infos = socket.getaddrinfo(name, None, 0, socket.SOCK_STREAM)
            except socket.gaierror as exc:
                self.errors.append(f"cannot resolve {name}: {exc.strerror}")
                return []
            out: list[str] = []
            for info in infos:
                ip = str(info[4][0])
                if ip not in out:
                    out.append(ip)
            return out
        return [r.address for t in ("AAAA", "A") for r in self._query(name, t)]


def srv_order(records: list[tuple[int, int, int, str]], rng: random.Random) -> list[tuple[int, int, int, str]]:
    """RFC 2782: by priority; within a priority, repeatedly pick by weight (0-weight ones
    first in the running sum, so they are chosen only rarely)."""
    out = []
    for prio in sorted({r[0] for r in records}):
        group = sorted((r for r in records if r[0] == prio), key=lambda r: r[1])
        while group:
            total = sum(r[1] for r in group)
            pick = rng.randint(0, total) if total else 0
            running = 0
            for i, r in enumerate(group):
                running += r[1]
                if running >= pick:
                    out.append(group.pop(i))
                    break
    return out


def resolve(uri: SipUri, dns: DnsLookup, transport: str | None = None,
            rng: random.Random | None = None) -> Resolution:
    """The ordered list of targets to try for ``uri`` (RFC 3263 §4)."""
    rng = rng or random.Random()
    res = Resolution()
    secure = uri.scheme == "sips"
    forced = transport or uri.transport
    if forced and secure and forced != "tls":
        forced = "tls"
        res.steps.append("sips: URI: TLS regardless of the transport asked for")

    def add_host(name: str, port: int, tp: str, how: str) -> None:
        addrs = [name] if uri.host_is_ip and name == uri.host else dns.addresses(name)
        if not addrs:
            res.steps.append(f"{name}: no A/AAAA address")
        for a in addrs:
            res.targets.append(Target(tp, name.rstrip("."), port, a, how))

    def add_srv(name: str, tp: str, how: str) -> bool:
        recs = [r for r in dns.srv(name)]
        if not recs:
            return False
        if len(recs) == 1 and recs[0][3] in (".", ""):
            res.steps.append(f"SRV {name}: '.' (service explicitly not offered)")
            return True
        ordered = srv_order(recs, rng)
        res.steps.append(f"SRV {name}: " + ", ".join(f"{r[3].rstrip('.')}:{r[2]} (prio {r[0]} weight {r[1]})"
                                                     for r in ordered))
        for _prio, _w, port, target in ordered:
            add_host(target, port, tp, how)
        return True

    # explicit port or IP literal: no NAPTR/SRV (RFC 3263 §4.1, §4.2)
    if uri.host_is_ip or uri.port:
        tp = forced or ("tls" if secure else "udp")
        port = uri.port or DEFAULT_PORTS[tp]
        why = "IP address" if uri.host_is_ip else "explicit port"
        res.steps.append(f"{why} in the URI: no NAPTR/SRV lookup; {tp.upper()} to port {port}")
        add_host(uri.host, port, tp, "literal" if uri.host_is_ip else "a/aaaa")
        return _finish(res, dns)

    if forced:
        res.steps.append(f"transport {forced.upper()} given: SRV lookup only")
        if not add_srv(f"{SRV_PREFIX[forced]}.{uri.host}", forced, "srv"):
            res.steps.append(f"no SRV for {SRV_PREFIX[forced]}.{uri.host}: A/AAAA at port {DEFAULT_PORTS[forced]}")
            add_host(uri.host, DEFAULT_PORTS[forced], forced, "a/aaaa")
        return _finish(res, dns)

    wanted = {"SIPS+D2T"} if secure else set(NAPTR_SERVICES)
    naptrs = sorted((r for r in dns.naptr(uri.host) if r[2] == "s" and r[3] in wanted),
                    key=lambda r: (r[0], r[1]))
    if naptrs:
        res.steps.append(f"NAPTR {uri.host}: " + ", ".join(f"{r[3]} -> {r[4].rstrip('.')}" for r in naptrs))
        for _o, _p, _f, service, replacement in naptrs:
            add_srv(replacement, NAPTR_SERVICES[service], "naptr+srv")
        if res.targets:
            return _finish(res, dns)
    else:
        res.steps.append(f"NAPTR {uri.host}: none usable")
    found = False
    for tp in (("tls",) if secure else ("udp", "tcp", "tls")):
        found = add_srv(f"{SRV_PREFIX[tp]}.{uri.host}", tp, "srv") or found
    if not found:
        tp = "tls" if secure else "udp"
        res.steps.append(f"no SRV records: A/AAAA of {uri.host}, {tp.upper()} port {DEFAULT_PORTS[tp]}")
        add_host(uri.host, DEFAULT_PORTS[tp], tp, "a/aaaa")
    return _finish(res, dns)


def _finish(res: Resolution, dns: DnsLookup) -> Resolution:
    res.errors.extend(getattr(dns, "errors", []))
    res.gaps.extend(getattr(dns, "gaps", []))
    return res
