"""The test lab: impairment relay, network namespaces, real peers (see README.md).

Names are imported lazily, so ``python -m tests.lab.relay`` (a submodule run as a
program) does not import itself twice through this package.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "Impairment": "relay",
    "RelayProcess": "impair", "impairment_relay": "impair",
    "udp_echo": "echo",
    "Lab": "netns", "LabError": "netns", "lab_unavailable_reason": "netns",
    "list_namespaces_with": "netns", "sweep_stale": "netns",
    "irtt_server": "peers", "irtt_client": "peers", "iperf3_server": "peers",
    "iperf3_client": "peers", "PeerError": "peers", "peer_unavailable_reason": "peers",
    "realtime": "rt", "set_realtime": "rt",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'tests.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
