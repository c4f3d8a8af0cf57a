"""The test lab: impairment relay, network namespaces, real peers (see README.md)."""

from .relay import Impairment
from .impair import RelayProcess, impairment_relay
from .echo import udp_echo

__all__ = ["Impairment", "RelayProcess", "impairment_relay", "udp_echo"]
