"""SIP text: URI parsing, the OPTIONS request, response parsing and the
comparison that reveals a SIP ALG (RFC 3261 §19.1, §20, RFC 3581).

Pure functions, no I/O: fully unit-testable.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field

from probes.result import BadInput

DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}
TRANSPORTS = ("udp", "tcp", "tls")
COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
           "k": "supported", "c": "content-type", "s": "subject", "e": "content-encoding"}


class SipUriError(BadInput):
    """A malformed SIP URI (bad input, exit 2)."""


@dataclass(frozen=True)
class SipUri:
    scheme: str                 # "sip" or "sips"
    user: str | None
    host: str                   # IPv6 without brackets
    port: int | None
    params: dict[str, str]

    @property
    def host_is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
            return True
        except ValueError:
            return False

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    def hostport(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}" if self.port else h

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in self.params.items())
        return f"{self.scheme}:{user}{self.hostport()}{params}"


_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?$")


def parse_uri(text: str) -> SipUri:
    """Parse ``sip:[user@]host[:port][;params]`` (or ``sips:``; a bare host is taken as sip:)."""
    expected = "expected a SIP URI like sip:sbc.example.net, sips:sbc.example.net:5061 or sip:192.0.2.7;transport=tcp"
    s = (text or "").strip()
    if not s:
        raise SipUriError(f"empty SIP URI; {expected}")
    m = re.match(r"^(sips?):(.*)$", s, re.I)
    if m:
        scheme, rest = m.group(1).lower(), m.group(2)
    elif re.match(r"^[a-z][a-z0-9+.-]*:(?!\d)", s, re.I) and not s.startswith("["):
        raise SipUriError(f"{text!r}: scheme must be sip: or sips:; {expected}")
    else:
        scheme, rest = "sip", s
    rest = rest.split("?", 1)[0]                  # URI headers are not for OPTIONS probing
    hostpart, *param_parts = rest.split(";")
    user = None
    if "@" in hostpart:
        user, hostpart = hostpart.rsplit("@", 1)
        if not user:
            raise SipUriError(f"{text!r}: empty user part before '@'")
    port = None
    if hostpart.startswith("["):
        end = hostpart.find("]")
        if end < 0:
            raise SipUriError(f"{text!r}: missing ']' after IPv6 address")
        host, tail = hostpart[1:end], hostpart[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise SipUriError(f"{text!r}: {host!r} is not an IPv6 address") from None
        if tail:
            if not tail.startswith(":"):
                raise SipUriError(f"{text!r}: junk after ']'")
            port = _port(tail[1:], text)
    else:
        host = hostpart
        if host.count(":") == 1:
            host, ptext = host.split(":")
            port = _port(ptext, text)
        elif ":" in host:
            raise SipUriError(f"{text!r}: put an IPv6 address in brackets, e.g. sip:[2001:db8::7]")
        if not host:
            raise SipUriError(f"{text!r}: no host; {expected}")
        if re.fullmatch(r"[\d.]+", host):
            try:
                ipaddress.IPv4Address(host)
            except ValueError:
                raise SipUriError(f"{text!r}: {host!r} is not a valid IPv4 address") from None
        elif not _HOSTNAME.match(host):
            raise SipUriError(f"{text!r}: {host!r} is not a valid host name; {expected}")
    params: dict[str, str] = {}
    for p in param_parts:
        if not p:
            continue
        k, _, v = p.partition("=")
        params[k.strip().lower()] = v.strip()
    t = params.get("transport", "").lower()
    if "transport" in params and t not in TRANSPORTS:   # transport= (empty) too: no DNS for a typo
        raise SipUriError(f"{text!r}: transport={t!r}; expected one of {', '.join(TRANSPORTS)}")
    if scheme == "sips" and t == "udp":
        raise SipUriError(f"{text!r}: sips: needs TLS; transport=udp contradicts it")
    return SipUri(scheme, user, host, port, params)


def _port(ptext: str, text: str) -> int:
    if not ptext.isdigit() or not 1 <= int(ptext) <= 65535:
        raise SipUriError(f"{text!r}: port {ptext!r} is not a number 1-65535")
    return int(ptext)


# ---- the request ---------------------------------------------------------------------------

@dataclass
class OptionsRequest:
    text: bytes
    branch: str
    call_id: str
    from_tag: str
    via_sent_by: str            # host:port as we wrote it
    via_transport: str          # UDP / TCP / TLS
    contact_user: str
    contact_hostport: str


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_options(uri: SipUri, transport: str, local_host: str, local_port: int,
                  user_agent: str = "cutover") -> OptionsRequest:
    """An OPTIONS request (RFC 3261 §11) with a unique branch, tag and Call-ID."""
    branch = "z9hG4bK" + secrets.token_hex(8)    # RFC 3261 magic cookie
    tag = secrets.token_hex(4)
    call_id = f"{secrets.token_hex(10)}@cutover"
    contact_user = f"cutover-{secrets.token_hex(3)}"
    sent_by = _hostport(local_host, local_port)
    vt = transport.upper()
    scheme = "sips" if transport == "tls" else "sip"
    target = f"{uri.scheme}:{uri.hostport()}"
    lines = [
        f"OPTIONS {target} SIP/2.0",
        f"Via: SIP/2.0/{vt} {sent_by};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <{scheme}:cutover@{_hostport(local_host, local_port).rsplit(':', 1)[0]}>;tag={tag}",
        f"To: <{target}>",
        f"Call-ID: {call_id}",
        "CSeq: 1 OPTIONS",
        f"Contact: <{scheme}:{contact_user}@{sent_by};transport={transport}>",
        "Accept: application/sdp",
        f"User-Agent: {user_agent}",
        "Content-Length: 0",
        "", ""]
    return OptionsRequest("\r\n".join(lines).encode(), branch, call_id, tag, sent_by, vt,
                          contact_user, sent_by)


# ---- responses -----------------------------------------------------------------------------

class HeaderAccess:
    """Header look-ups over ``self.headers`` ((lower-case long name, value) pairs),
    shared by every parsed SIP message (this module's responses, probes.sipua's
    requests and responses)."""

    headers: list[tuple[str, str]]

    def get(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated lists split (Via, Allow, Supported)."""
        out = []
        for k, v in self.headers:
            if k == name:
                out += [p.strip() for p in _split_commas(v) if p.strip()]
        return out


@dataclass
class SipResponse(HeaderAccess):
    status_code: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)   # (lower-case long name, value)
    raw: str = ""


def _split_commas(value: str) -> list[str]:
    parts, depth, cur, quoted = [], 0, "", False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif ch == "<" and not quoted:
            depth += 1
        elif ch == ">" and not quoted:
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def parse_response(data: bytes) -> SipResponse | None:
    """A SIP response (status line + headers), or None for anything else."""
    text = data.decode("utf-8", "replace")
    head = text.split("\r\n\r\n", 1)[0].replace("\r\n", "\n")
    lines = head.split("\n")
    m = re.match(r"^SIP/2\.0\s+(\d{3})\s*(.*)$", lines[0].strip())
    if not m:
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:     # header folding
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name = name.strip().lower()
        headers.append((COMPACT.get(name, name), value.strip()))
    return SipResponse(int(m.group(1)), m.group(2).strip(), headers, text)


def message_length(buf: bytes) -> int | None:
    """Bytes of the first complete message in a stream buffer, None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    m = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", buf[:end])
    body = int(m.group(1)) if m else 0
    total = end + 4 + body
    return total if len(buf) >= total else None


def cseq_matches(resp: SipResponse, req: OptionsRequest) -> bool:
    """Our transaction: same Call-ID and CSeq 1 OPTIONS (RFC 3261 §17.1.3 falls back to these
    because an ALG might have rewritten the Via branch)."""
    return (resp.get("call-id") or "").strip() == req.call_id and \
        re.sub(r"\s+", " ", (resp.get("cseq") or "").strip()).upper() == "1 OPTIONS"


# ---- SIP ALG and NAT evidence --------------------------------------------------------------

@dataclass
class ViaInfo:
    transport: str
    sent_by: str
    params: dict[str, str]


def parse_via(value: str) -> ViaInfo | None:
    m = re.match(r"^\s*SIP\s*/\s*2\.0\s*/\s*(\w+)\s+([^;\s]+)\s*(.*)$", value, re.I)
    if not m:
        return None
    params = {}
    for p in m.group(3).split(";"):
        if p.strip():
            k, _, v = p.strip().partition("=")
            params[k.lower()] = v
    return ViaInfo(m.group(1).upper(), m.group(2), params)


@dataclass
class AlgVerdict:
    alg_suspected: bool
    evidence: list[str]
    nat_detected: bool
    public_address: str | None


def _split_hostport(sent_by: str) -> tuple[str, str | None]:
    if sent_by.startswith("["):
        host, _, rest = sent_by[1:].partition("]")
        return host.lower(), rest[1:] if rest.startswith(":") else None
    host, _, port = sent_by.partition(":")
    return host.lower(), port or None


def compare(req: OptionsRequest, resp: SipResponse, local_host: str, local_port: int) -> AlgVerdict:
    """What came back versus what we sent.

    A response must carry our Via exactly as sent, plus only ``received``/``rport`` (RFC 3261
    §18.2.1, RFC 3581). A changed sent-by, transport or branch, an extra Via, a changed From
    tag, or our Contact echoed back with another address means something on the path edits
    SIP headers: a SIP ALG. ``received``/``rport`` differing from our socket only means NAT.
    """
    evidence: list[str] = []
    vias = resp.all("via")
    if not vias:
        evidence.append("response has no Via header (we sent one)")
    else:
        if len(vias) > 1:
            evidence.append(f"response carries {len(vias)} Via headers, we sent 1")
        top = parse_via(vias[0])
        if top is None:
            evidence.append(f"unparseable Via in response: {vias[0]!r}")
        else:
            if top.transport != req.via_transport:
                evidence.append(f"Via transport came back as {top.transport}, we sent {req.via_transport}")
            if _split_hostport(top.sent_by) != _split_hostport(req.via_sent_by):
                evidence.append(f"Via sent-by came back as {top.sent_by}, we sent {req.via_sent_by}")
            if top.params.get("branch") != req.branch:
                evidence.append(f"Via branch came back as {top.params.get('branch')}, we sent {req.branch}")
    m = re.search(r";\s*tag=([^;>\s]+)", resp.get("from") or "")
    if not m or m.group(1) != req.from_tag:
        evidence.append(f"From tag came back as {m.group(1) if m else None}, we sent {req.from_tag}")
    # our Contact echoed anywhere in the response with another address
    for hp in re.findall(re.escape(req.contact_user) + r"@(\[[^\]]+\]:?\d*|[^;>\s,]+)", resp.raw):
        if _split_hostport(hp) != _split_hostport(req.contact_hostport):
            evidence.append(f"our Contact came back as {req.contact_user}@{hp}, we sent "
                            f"{req.contact_user}@{req.contact_hostport}")
            break
    nat, public = False, None
    top = parse_via(vias[0]) if vias else None
    if top is not None:
        received = top.params.get("received")
        rport = top.params.get("rport")
        if received and received.strip("[]").lower() != local_host.lower():
            nat, public = True, received
        if rport and rport.isdigit() and int(rport) != local_port:
            nat = True
            public = _hostport((received or local_host).strip("[]"), int(rport))
        elif nat and public:
            public = _hostport(public.strip("[]"), local_port)
    return AlgVerdict(bool(evidence), evidence, nat, public)
