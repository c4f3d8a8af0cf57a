"""Addresses: HOST:PORT parsing (IPv4, [IPv6]:port, names), resolution and
binding a socket to a circuit's source address or interface.

Every probe takes targets through here so that IPv6 and source binding work
the same everywhere.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

# The probe error hierarchy's (probes/result.py): AddressError, a malformed
# address given by the user (bad input, exit 2), raised here without a field (a
# probe's validate re-raises it naming its config field, "target"); ResolveError,
# a well-formed name that does not resolve (an OSError: could not measure, exit 3)
from probes.result import AddressError, ResolveError

STAMP_PORT = 862


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def _valid_hostname(host: str) -> bool:
    if not host or len(host) > 253:
        return False
    labels = host.rstrip(".").split(".")
    return all(label and len(label) <= 63 and label[0] != "-" and label[-1] != "-"
               and all(ch.isalnum() or ch in "-_" for ch in label) for label in labels)


def parse_hostport(text: str, default_port: int | None = STAMP_PORT) -> HostPort:
    """Parse ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6.

    Raises AddressError with a message saying what was expected.
    """
    s = (text or "").strip()
    expected = "expected HOST:PORT, e.g. 192.0.2.10:862 or [2001:db8::7]:862"
    if not s:
        raise AddressError(f"empty address; {expected}")
    host, port_text = s, None
    if s.startswith("["):
        end = s.find("]")
        if end < 0:
            raise AddressError(f"{text!r}: missing ']'; {expected}")
        host, rest = s[1:end], s[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise AddressError(f"{text!r}: junk after ']'; {expected}")
            port_text = rest[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise AddressError(f"{text!r}: {host!r} is not an IPv6 address; {expected}") from None
    elif s.count(":") > 1:
        try:  # a bare IPv6 address without a port
            ipaddress.IPv6Address(s)
        except ValueError:
            raise AddressError(f"{text!r}: put IPv6 addresses in brackets; {expected}") from None
        host = s
    elif ":" in s:
        host, port_text = s.rsplit(":", 1)
    if port_text is None:
        if default_port is None:
            raise AddressError(f"{text!r}: no port; {expected}")
        port = default_port
    else:
        if not port_text.isdigit():
            raise AddressError(f"{text!r}: port {port_text!r} is not a number; {expected}")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise AddressError(f"{text!r}: port {port} out of range 1-65535")
    if ":" not in host:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            if host.replace(".", "").isdigit() or not _valid_hostname(host):
                raise AddressError(f"{text!r}: {host!r} is neither an IP address nor a host name") from None
    return HostPort(host, port)


def resolve(host: str, port: int, sock_type: int = socket.SOCK_DGRAM,
            source: str | None = None) -> tuple[int, tuple]:
    """Resolve to (family, sockaddr); prefer the family of ``source`` if given."""
    family = socket.AF_UNSPEC
    if source:
        family = socket.AF_INET6 if ":" in source else socket.AF_INET
    try:
        infos = socket.getaddrinfo(host, port, family, sock_type)
    except socket.gaierror as exc:
        raise ResolveError(f"cannot resolve {host!r}: {exc.strerror}") from None
    if not infos:
        raise ResolveError(f"cannot resolve {host!r}")
    fam, _, _, _, sockaddr = infos[0]
    return fam, sockaddr


def bind_to_circuit(sock: socket.socket, source: str | None = None,
                    interface: str | None = None, port: int = 0) -> None:
    """Make ``sock`` leave through one circuit: source address and/or device.

    SO_BINDTODEVICE needs CAP_NET_RAW (root); the error says so.
    """
    if interface:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE,
                            interface.encode() + b"\0")
        except PermissionError:
            raise PermissionError(f"binding to interface {interface!r} needs root "
                                  "(CAP_NET_RAW); use --source ADDRESS instead") from None
        except OSError as exc:
            raise OSError(exc.errno, f"cannot bind to interface {interface!r}: {exc.strerror}") from None
    if source:
        try:
            sock.bind((source, port))
        except OSError as exc:
            raise OSError(exc.errno, f"cannot bind to source address {source}: {exc.strerror}") from None


def dscp_value(text: str | int) -> int:
    """DSCP from a number (0-63) or a PHB name (ef, af41, cs5, be)."""
    if isinstance(text, int):
        value = text
    else:
        t = str(text).strip().lower()
        names = {"be": 0, "default": 0, "ef": 46, "va": 44}
        if t in names:
            value = names[t]
        elif t.startswith("cs") and t[2:].isdigit():
            value = int(t[2:]) * 8
        elif t.startswith("af") and len(t) == 4 and t[2:].isdigit():
            value = int(t[2]) * 8 + int(t[3]) * 2
        elif t.isdigit():
            value = int(t)
        else:
            from probes.names import did_you_mean
            known = [*names, *(f"cs{i}" for i in range(8)), *(f"af{c}{d}" for c in "1234" for d in "123")]
            guess = did_you_mean(t, known)
            raise AddressError(f"DSCP {text!r}: " + (f"did you mean {guess!r}? " if guess else "")
                               + "expected 0-63 or a name like ef, af41, cs5")
    if not 0 <= value <= 63:
        raise AddressError(f"DSCP {value}: expected 0-63")
    return value
