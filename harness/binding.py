"""Bind a probe's config to a circuit of a profile.

One place that knows how a circuit's fields (reflector, source, interface,
key_file, ping, sip) and the profile's planned usage and thresholds map onto a
probe's ``<Name>Config``. It fills only the fields the config declares, so a
probe can grow or drop knobs without this module changing.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from harness.profile import Circuit, Profile

PROBES = ("latency", "stream", "bandwidth", "capacity", "sip", "path", "failover")


def probe_module(name: str):
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; expected one of {', '.join(PROBES)}")
    return importlib.import_module(f"probes.{name}")


def config_class(module) -> type:
    for attr in dir(module):
        obj = getattr(module, attr)
        if isinstance(obj, type) and attr.endswith("Config") and dataclasses.is_dataclass(obj) \
                and obj.__module__ == module.__name__:
            return obj
    raise LookupError(f"{module.__name__} has no *Config dataclass")


def circuit_values(profile: Profile, circuit: Circuit, probe: str) -> dict[str, Any]:
    """Everything a probe might take from the circuit and the profile."""
    planned, th = profile.planned, profile.thresholds
    hp = circuit.reflector_hostport
    ping_target = circuit.ping_target
    target: str | None
    if probe == "latency":
        target = ping_target
    elif probe == "sip":
        target = circuit.sip
    elif probe == "path":
        target = ping_target
    else:
        target = str(hp) if hp else None
    key_path = profile.resolve_path(circuit.key_file) if circuit.key_file else None
    values: dict[str, Any] = {
        "target": target, "uri": circuit.sip, "reflector": str(hp) if hp else None,
        "source": circuit.source, "interface": circuit.interface,
        "key_file": str(key_path) if key_path else None,
        # latency's UDP/TCP fallback goes to the reflector's port, as the suite's latency step does
        "port": hp.port if hp and probe == "latency" else None,
        "codec": planned.codec, "ptime_ms": planned.ptime_ms,
        "jitter_buffer_ms": th.jitter_buffer_ms, "planned_calls": planned.calls,
        "mos_min": th.mos_min, "loss_pct_max": th.loss_pct, "jitter_ms_max": th.jitter_ms,
    }
    return values


def bind(probe: str, profile: Profile, circuit: Circuit, **overrides: Any):
    """The probe's Config for this circuit; ``overrides`` win over the profile."""
    module = probe_module(probe)
    cls = config_class(module)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(overrides) - names
    if unknown:
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}; "
                        f"fields: {', '.join(sorted(names))}")
    values = {k: v for k, v in circuit_values(profile, circuit, probe).items()
              if k in names and v is not None}
    if "key" in names and "key" not in overrides and circuit.key_file:
        # a probe that takes the key itself: read it here, so a bad key file is bad input
        # (ValueError naming the file and the problem), never a silent unkeyed run
        from probes.stamp import load_key
        values["key"] = load_key(profile.resolve_path(circuit.key_file))
    values.update(overrides)
    return cls(**values)
