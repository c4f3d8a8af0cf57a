"""Network namespaces joined by veth pairs: real multi-hop paths for tests.

    with Lab() as lab:                       # or the `lab` pytest fixture
        lab.chain(["client", "router", "server"])
        lab.shape("router", "server", rate_mbit=20, queue="deep")   # router egress -> server
        lab.shape("router", "client", rate_mbit=20, queue="deep")   # router egress -> client
        srv = lab.popen("server", ["iperf3", "-s"])
        lab.run("client", ["ping", "-c", "1", lab.addr("server")])

Layout of ``chain([n0, n1, ..., nk])``: link i joins n(i) and n(i+1) on
198.18.i.0/24 (n(i) = .1, n(i+1) = .2) and 2001:2:0:i::/64 (::1, ::2); the interface in n(i) towards n(i+1) is
named ``to-<n(i+1)>`` (and vice versa), so ``lab.dev("router", "server")`` is
``to-server``. The end nodes route by default route; middle nodes are routers
(IP forwarding on, static routes to every non-adjacent subnet), so every packet
crosses every router in both directions. ICMP rate limiting is off in every
namespace so traceroutes and port-unreachable probes are answered every time.

Namespace names are ``cutl<6 hex>-<node>``, unique per Lab. Teardown (``close``,
the fixture finaliser, and an atexit net) kills the processes started with
``popen`` by PID and deletes the namespaces (which removes their veths and
qdiscs). ``sweep_stale()`` deletes namespaces of earlier runs whose creator
process is dead (recorded in a registry file), never those of live runs.
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import weakref
from pathlib import Path

PREFIX = "cutl"                     # namespaces of this lab: cutl<6 hex>-<node>
REGISTRY = Path("/tmp/cutover-lab")  # <run id>.json: creator pid, start time, namespaces
NET_BASE = ipaddress.ip_network("198.18.0.0/15")      # RFC 2544 benchmarking range
NET6_BASE = ipaddress.ip_network("2001:2::/48")       # RFC 5180 benchmarking range (IPv6)
CMD_TIMEOUT_S = 30.0

QUEUES_MS = {"shallow": 5.0, "default": 50.0, "deep": 500.0}

_open_labs: "weakref.WeakSet[Lab]" = weakref.WeakSet()


class LabError(RuntimeError):
    pass


def lab_unavailable_reason() -> str | None:
    """Why namespaces cannot be built here (None = they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"'{tool}' not installed (iproute2; run scripts/sysdeps.sh)"
    return None


def _sh(argv: list[str], check: bool = True, timeout: float = CMD_TIMEOUT_S,
        input: str | None = None) -> subprocess.CompletedProcess:
    try:
        cp = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:.0f} s: {' '.join(argv)}") from exc
    if check and cp.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({cp.returncode}): {cp.stderr.strip()}")
    return cp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    cp = _sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]


def list_namespaces_with(prefix: str) -> list[str]:
    """Namespaces whose name starts with prefix (e.g. a Lab's run_id)."""
    return [ns for ns in list_namespaces() if ns.startswith(prefix)]


def sweep_stale(before: float | None = None) -> list[str]:
    """Delete this lab's namespaces left by earlier runs whose creator PID is dead.

    Only namespaces recorded in the registry with a dead creator and a start time
    before ``before`` (default: now) are removed; namespaces of live runs (other
    helpers' tests running concurrently) are left alone. Returns the names deleted.
    """
    before = time.time() if before is None else before
    removed: list[str] = []
    if not REGISTRY.is_dir():
        return removed
    present = set(list_namespaces())
    for entry in REGISTRY.glob(f"{PREFIX}*.json"):
        try:
            info = json.loads(entry.read_text())
            pid, started = int(info["pid"]), float(info["started"])
        except (OSError, ValueError, KeyError):
            continue
        if _pid_alive(pid) or started >= before:
            continue
        for ns in info.get("namespaces", []):
            if ns in present and ns.startswith(PREFIX):
                _sh(["ip", "netns", "del", ns], check=False)
                removed.append(ns)
        with contextlib.suppress(OSError):
            entry.unlink()
    return removed


class _instance_or_class:
    """``lab.chain([...])`` builds on a Lab; ``Lab.chain([...])`` makes a new Lab first
    (closed again if building fails) - both spellings appear in the briefs."""

    def __init__(self, func) -> None:
        self.func = func
        self.__doc__ = func.__doc__

    def __get__(self, obj, cls):
        if obj is not None:
            return lambda *a, **kw: self.func(obj, *a, **kw)

        def build(*a, **kw):
            lab = cls()
            try:
                return self.func(lab, *a, **kw)
            except BaseException:
                lab.close()
                raise
        return build


class Lab:
    """A set of network namespaces built for one test, torn down at close()."""

    def __init__(self, run_id: str | None = None) -> None:
        reason = lab_unavailable_reason()
        if reason:
            raise LabError(reason)
        self.run_id = run_id or PREFIX + secrets.token_hex(3)
        self.started = time.time()
        self.nodes: dict[str, str] = {}             # node -> namespace name
        self.links: list[tuple[str, str, ipaddress.IPv4Network]] = []
        self.links6: list[ipaddress.IPv6Network] = []
        self.addrs: dict[tuple[str, str], str] = {}  # (node, peer) -> node's address on that link
        self.addrs6: dict[tuple[str, str], str] = {}  # the same for IPv6
        self.procs: list[subprocess.Popen] = []
        self.groups: dict[int, int] = {}             # pid -> process group it leads
        self.closed = False
        _open_labs.add(self)

    # -- naming ---------------------------------------------------------------
    def ns(self, node: str) -> str:
        """Namespace name of a node (``cutl1a2b3c-router``)."""
        try:
            return self.nodes[node]
        except KeyError:
            raise LabError(f"no node {node!r} in this lab (have {sorted(self.nodes)})") from None

    def dev(self, node: str, peer: str) -> str:
        """Interface in ``node`` that leads to ``peer`` (an adjacent node).

        ``peer`` may also be given as that interface's name (``"to-server"``).
        """
        if (node, peer) not in self.addrs and peer.startswith("to-") and (node, peer[3:]) in self.addrs:
            peer = peer[3:]
        if (node, peer) not in self.addrs:
            raise LabError(f"{node!r} and {peer!r} are not adjacent")
        return f"to-{peer}"[:15]

    def addr(self, node: str, peer: str | None = None) -> str:
        """IPv4 address of ``node``: on its link to ``peer``, or its first link."""
        if peer is not None:
            return self.addrs[(node, self.dev(node, peer)[3:])]
        for (n, _p), a in self.addrs.items():
            if n == node:
                return a
        raise LabError(f"no node {node!r} in this lab")

    def addr6(self, node: str, peer: str | None = None) -> str:
        """IPv6 address of ``node`` (2001:2:0:<link>::1 or ::2), like :meth:`addr`."""
        if peer is not None:
            return self.addrs6[(node, self.dev(node, peer)[3:])]
        for (n, _p), a in self.addrs6.items():
            if n == node:
                return a
        raise LabError(f"no node {node!r} in this lab")

    # -- building -------------------------------------------------------------
    def _register(self) -> None:
        REGISTRY.mkdir(parents=True, exist_ok=True)
        (REGISTRY / f"{self.run_id}.json").write_text(json.dumps(
            {"pid": os.getpid(), "started": self.started, "namespaces": list(self.nodes.values())}))

    def add_node(self, node: str) -> str:
        if not node.replace("-", "").replace("_", "").isalnum() or len(node) > 12:
            raise LabError(f"node name {node!r}: use up to 12 letters/digits")
        if node in self.nodes:
            raise LabError(f"node {node!r} exists")
        name = f"{self.run_id}-{node}"
        self.nodes[node] = name
        self._register()   # before creating, so a crash right after leaves a sweepable record
        _sh(["ip", "netns", "add", name])
        self._ip(node, ["link set lo up"])
        # ICMP errors (time exceeded, port unreachable) are rate limited per peer by
        # default (1/s after a burst of 6): a traceroute with several rounds would lose hops.
        # No duplicate address detection (link-local addresses too): otherwise IPv6
        # neighbours stay tentative and the first packets wait ~1 s.
        self.sysctl(node, {"net.ipv4.icmp_ratelimit": 0, "net.ipv6.icmp.ratelimit": 0,
                           "net.ipv6.conf.default.accept_dad": 0, "net.ipv6.conf.all.accept_dad": 0})
        return name

    def _ip(self, node: str, commands: list[str]) -> None:
        """Several ip(8) commands in node's namespace with one process (ip -batch)."""
        _sh(["ip", "-n", self.ns(node), "-batch", "-"], input="\n".join(commands) + "\n")

    def link(self, a: str, b: str, subnet: str | None = None) -> None:
        """veth pair between nodes a and b, a = .1 and b = .2 of the subnet."""
        net = ipaddress.ip_network(subnet) if subnet else \
            ipaddress.ip_network((int(NET_BASE.network_address) + (len(self.links) << 8), 24))
        dev_a, dev_b = f"to-{b}"[:15], f"to-{a}"[:15]
        _sh(["ip", "-n", self.ns(a), "link", "add", dev_a, "type", "veth",
             "peer", "name", dev_b, "netns", self.ns(b)])
        net6 = ipaddress.ip_network((int(NET6_BASE.network_address) + (len(self.links) << 64), 64))
        host_a, host_b = str(net.network_address + 1), str(net.network_address + 2)
        h6_a, h6_b = str(net6.network_address + 1), str(net6.network_address + 2)
        for node, dev, host, h6 in ((a, dev_a, host_a, h6_a), (b, dev_b, host_b, h6_b)):
            # nodad: usable at once instead of after ~1-2 s of duplicate address detection
            self._ip(node, [f"addr add {host}/{net.prefixlen} dev {dev}",
                            f"addr add {h6}/64 dev {dev} nodad", f"link set {dev} up"])
        self.links.append((a, b, net))
        self.links6.append(net6)
        self.addrs[(a, b)], self.addrs[(b, a)] = host_a, host_b
        self.addrs6[(a, b)], self.addrs6[(b, a)] = h6_a, h6_b

    @_instance_or_class
    def chain(self, nodes: list[str]) -> "Lab":
        """Linear path n0 - n1 - ... - nk; middle nodes forward (routers)."""
        if len(nodes) < 2 or len(set(nodes)) != len(nodes):
            raise LabError("chain needs at least two distinct node names")
        for n in nodes:
            self.add_node(n)
        for a, b in zip(nodes, nodes[1:]):
            self.link(a, b)
        k = len(nodes) - 1
        for i, node in enumerate(nodes):
            cmds = []
            # (ip infers the family from the addresses; -4/-6 are not allowed in -batch)
            for addrs, nets in ((self.addrs, [n for _a, _b, n in self.links]),
                                (self.addrs6, self.links6)):
                if i == 0:
                    cmds.append(f"route add default via {addrs[(nodes[1], node)]}")
                elif i == k:
                    cmds.append(f"route add default via {addrs[(nodes[k - 1], node)]}")
                else:
                    # link j joins nodes[j] and nodes[j+1]; node i sits on links i-1 and i
                    for j, net in enumerate(nets):
                        if j < i - 1:
                            cmds.append(f"route add {net} via {addrs[(nodes[i - 1], node)]}")
                        elif j > i:
                            cmds.append(f"route add {net} via {addrs[(nodes[i + 1], node)]}")
            self._ip(node, cmds)
            if 0 < i < k:
                self.sysctl(node, {"net.ipv4.ip_forward": 1, "net.ipv6.conf.all.forwarding": 1})
        self.path = list(nodes)
        self.wait_links_up()
        return self

    def wait_links_up(self, timeout_s: float = 5.0) -> float:
        """Wait until every veth is operationally UP; returns the seconds waited.

        The kernel activates a new link's qdisc (and IPv6 its link-local address)
        from a deferred "linkwatch" event; until then packets are dropped or wait
        ~1 s for neighbour discovery. Raises LabError if not up within timeout_s.
        """
        start = time.monotonic()
        pending = set(self.nodes)
        while pending:
            for node in sorted(pending):
                links = json.loads(_sh(["ip", "-n", self.ns(node), "-j", "link", "show"]).stdout or "[]")
                if all(lk.get("operstate") == "UP" for lk in links if lk.get("ifname") != "lo"):
                    pending.discard(node)
            if pending:
                if time.monotonic() - start > timeout_s:
                    raise LabError(f"links not up after {timeout_s} s in {sorted(pending)}")
                time.sleep(0.02)
        return time.monotonic() - start

    # -- running things -------------------------------------------------------
    def _argv(self, node: str | None, argv: list[str]) -> list[str]:
        return list(argv) if node is None else ["ip", "netns", "exec", self.ns(node), *argv]

    def run(self, node: str | None, argv: list[str], check: bool = True,
            timeout: float = CMD_TIMEOUT_S, input: str | None = None) -> subprocess.CompletedProcess:
        """Run argv inside node's namespace (None = root namespace); raises LabError on failure."""
        return _sh(self._argv(node, [str(a) for a in argv]), check=check, timeout=timeout, input=input)

    def popen(self, node: str | None, argv: list[str], **kwargs) -> subprocess.Popen:
        """Start a process in node's namespace; killed by PID at teardown.

        It leads a new process group (``start_new_session``), so teardown also
        ends the children it started (a shell's commands, a wrapper's child).
        """
        kwargs.setdefault("start_new_session", True)
        kwargs.setdefault("stdout", subprocess.PIPE)
        kwargs.setdefault("stderr", subprocess.PIPE)
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self._argv(node, [str(a) for a in argv]), **kwargs)
        self.procs.append(proc)
        if kwargs["start_new_session"]:
            self.groups[proc.pid] = proc.pid
        return proc

    def ping(self, node: str, target: str, count: int = 3, timeout_s: float = 1.0) -> list[float | None]:
        """ICMP echo RTTs in ms from node to target (None = no reply), via ping3.

        (The Debian image has no ping binary; ping3 is a project dependency.)
        """
        code = ("import json, sys, ping3; ping3.EXCEPTIONS = False; print(json.dumps(["
                "ping3.ping(sys.argv[1], unit='ms', timeout=float(sys.argv[3]), seq=i) or None "
                "for i in range(int(sys.argv[2]))]))")
        cp = self.run(node, [sys.executable, "-c", code, target, count, timeout_s],
                      timeout=count * (timeout_s + 1) + 10)
        return json.loads(cp.stdout.strip().splitlines()[-1])

    def sysctl(self, node: str, key: str | dict, value=None) -> None:
        """Set one sysctl (key, value) or several ({key: value}) inside node's namespace."""
        pairs = key.items() if isinstance(key, dict) else [(key, value)]
        self.run(node, ["sysctl", "-q", "-w", *(f"{k}={v}" for k, v in pairs)])

    def set_mtu(self, node: str, peer: str, mtu: int, both_ends: bool = True) -> None:
        """MTU of the link node<->peer (both ends unless both_ends=False)."""
        peer = self.dev(node, peer)[3:]   # accept "to-<peer>" too
        self.run(node, ["ip", "link", "set", self.dev(node, peer), "mtu", str(mtu)])
        if both_ends:
            self.run(peer, ["ip", "link", "set", self.dev(peer, node), "mtu", str(mtu)])

    def shape(self, node: str, peer: str, rate_mbit: float, queue: str | None = "default",
              limit_bytes: int | None = None, latency_ms: float | None = None,
              burst_bytes: int | None = None) -> str:
        """tbf on node's egress towards peer (put it on a ROUTER: docs/lab.md, machine facts).

        Queue size: ``queue`` "shallow" (5 ms), "default" (50 ms) or "deep"
        (500 ms) of queueing at the rate, or explicit ``latency_ms`` or
        ``limit_bytes``. Burst defaults to 4 ms at the rate (>= 2 full frames).
        The rate counts bytes at layer 2 (IP packet + 14-byte Ethernet header).
        Returns the tc command line used.
        """
        if rate_mbit <= 0:
            raise LabError("rate_mbit must be > 0")
        rate_bps = rate_mbit * 1e6
        burst = burst_bytes or max(int(rate_bps / 8 * 0.004), 2 * 1514 + 100)
        argv = ["tc", "qdisc", "replace", "dev", self.dev(node, peer), "root", "tbf",
                "rate", f"{int(rate_bps)}bit", "burst", str(burst)]
        if limit_bytes is not None:
            argv += ["limit", str(int(limit_bytes))]
        else:
            if latency_ms is None:
                if queue not in QUEUES_MS:
                    raise LabError(f"queue must be one of {sorted(QUEUES_MS)}")
                latency_ms = QUEUES_MS[queue]
            argv += ["latency", f"{latency_ms}ms"]
        self.run(node, argv)
        return " ".join(argv)

    def shape_router(self, router: str, rate_mbit: float, **kw) -> None:
        """Shape every egress of a router (both directions of the path)."""
        for (n, peer) in list(self.addrs):
            if n == router:
                self.shape(router, peer, rate_mbit, **kw)

    def remark_dscp(self, node: str, peer: str, dscp: int) -> None:
        """Re-mark every packet node sends towards peer to ``dscp`` (0 = bleach).

        An iptables mangle rule on the egress (POSTROUTING), as a carrier edge
        that does not trust customer marking would do. Gone with the namespace.
        """
        if not 0 <= dscp <= 63:
            raise LabError("dscp must be 0..63")
        self.run(node, ["iptables", "-t", "mangle", "-A", "POSTROUTING", "-o", self.dev(node, peer),
                        "-j", "DSCP", "--set-dscp", str(dscp)])

    def qdisc_stats(self, node: str, peer: str) -> dict:
        """tc -s -j qdisc of node's interface towards peer (first root qdisc)."""
        cp = self.run(node, ["tc", "-s", "-j", "qdisc", "show", "dev", self.dev(node, peer)])
        data = json.loads(cp.stdout or "[]")
        return data[0] if data else {}

    # -- teardown -------------------------------------------------------------
    def _signal(self, proc: subprocess.Popen, sig: int, group_only: bool = False) -> None:
        """Signal a process we started, or its whole process group if it leads one."""
        pgid = self.groups.get(proc.pid)
        if pgid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)
        elif not group_only:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for proc in self.procs:
            if proc.poll() is None:
                self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + 3
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=3)
            # the group may outlive its leader (children of a shell): end it too
            self._signal(proc, signal.SIGKILL, group_only=True)
            for stream in (proc.stdout, proc.stderr, proc.stdin):
                with contextlib.suppress(Exception):
                    if stream:
                        stream.close()
        errors = []
        for ns in self.nodes.values():
            cp = _sh(["ip", "netns", "del", ns], check=False)
            if cp.returncode != 0 and ns in list_namespaces():
                errors.append(f"{ns}: {cp.stderr.strip()}")
        with contextlib.suppress(OSError):
            (REGISTRY / f"{self.run_id}.json").unlink()
        if errors:
            raise LabError("teardown failed: " + "; ".join(errors))

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    for lab in list(_open_labs):
        with contextlib.suppress(Exception):
            lab.close()
