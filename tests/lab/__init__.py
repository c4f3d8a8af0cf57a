"""The test lab: impairment relay, network namespaces, real peers (see README.md)."""

from .echo import udp_echo
from .impair import RelayProcess, impairment_relay
from .netns import Lab, LabError, lab_unavailable_reason, list_namespaces_with, sweep_stale
from .peers import (PeerError, iperf3_client, iperf3_server, irtt_client, irtt_server,
                    peer_unavailable_reason)
from .relay import Impairment

__all__ = ["Impairment", "RelayProcess", "impairment_relay", "udp_echo", "Lab", "LabError",
           "lab_unavailable_reason", "list_namespaces_with", "sweep_stale", "irtt_server", "irtt_client", "iperf3_server",
           "iperf3_client", "PeerError", "peer_unavailable_reason"]
