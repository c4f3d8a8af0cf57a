"""Linux socket options the reflector and the stream engine share.

Python's socket module lacks some Linux constants (SO_TIMESTAMPNS,
SO_RXQ_OVFL, IP_RECVTTL, SO_RCVBUFFORCE); their values are fixed by the Linux
ABI (asm-generic/socket.h, linux/in.h) on every architecture we target.
Everything here degrades gracefully: an option the kernel refuses is skipped.
"""

from __future__ import annotations

import socket

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
IP_RECVTOS = getattr(socket, "IP_RECVTOS", 13)
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
IPV6_RECVTCLASS = getattr(socket, "IPV6_RECVTCLASS", 66)
IPV6_TCLASS = getattr(socket, "IPV6_TCLASS", 67)
IPV6_RECVHOPLIMIT = getattr(socket, "IPV6_RECVHOPLIMIT", 51)
IPV6_HOPLIMIT = getattr(socket, "IPV6_HOPLIMIT", 52)


def _try(sock: socket.socket, level: int, opt: int, value: int) -> bool:
    try:
        sock.setsockopt(level, opt, value)
        return True
    except OSError:
        return False


def grow_buffers(sock: socket.socket, size_b: int) -> None:
    """Ask for large socket buffers; root may exceed net.core.[rw]mem_max (…BUFFORCE)."""
    for force, plain in ((SO_RCVBUFFORCE, socket.SO_RCVBUF), (SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        if not _try(sock, socket.SOL_SOCKET, force, size_b):
            _try(sock, socket.SOL_SOCKET, plain, size_b)


def enable_rx_meta(sock: socket.socket, *, timestamps: bool = True, tos: bool = True,
                   ttl: bool = True, overflow: bool = True) -> dict[str, bool]:
    """Turn on the ancillary data we read: kernel receive time, TOS/TCLASS, TTL, drops."""
    fam = sock.family
    got = {}
    if timestamps:
        got["timestamps"] = _try(sock, socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    if overflow:
        got["overflow"] = _try(sock, socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
    if tos:
        ok4 = _try(sock, socket.IPPROTO_IP, IP_RECVTOS, 1)   # also covers v4-mapped on v6 sockets
        ok6 = _try(sock, socket.IPPROTO_IPV6, IPV6_RECVTCLASS, 1) if fam == socket.AF_INET6 else False
        got["tos"] = ok4 or ok6
    if ttl:
        ok4 = _try(sock, socket.IPPROTO_IP, IP_RECVTTL, 1)
        ok6 = _try(sock, socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1) if fam == socket.AF_INET6 else False
        got["ttl"] = ok4 or ok6
    return got


def set_tos(sock: socket.socket, tos: int) -> None:
    """Mark outgoing packets (DSCP << 2). IPv6 sockets set TCLASS and, for v4-mapped peers, TOS."""
    if sock.family == socket.AF_INET6:
        _try(sock, socket.IPPROTO_IPV6, IPV6_TCLASS, tos)
        _try(sock, socket.IPPROTO_IP, socket.IP_TOS, tos)
    else:
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, tos)


def udp_drops(sock: socket.socket) -> int | None:
    """Datagrams the kernel dropped on this UDP socket (full receive buffer),
    from /proc/net/udp{,6} matched by the socket's inode; None if unavailable.
    Used where reading SO_RXQ_OVFL per packet would cost too much."""
    import os
    try:
        inode = str(os.fstat(sock.fileno()).st_ino)
    except OSError:
        return None
    for path in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(path) as fh:
                next(fh, None)
                for line in fh:
                    cols = line.split()
                    if len(cols) >= 13 and cols[9] == inode:
                        return int(cols[-1])
        except (OSError, ValueError):
            continue
    return None
