"""Bind a probe's config to a circuit of a profile.

One place that knows how a circuit's fields (reflector, source, interface,
key_file, ping, sip) and the profile's planned usage and thresholds map onto a
probe's ``<Name>Config``. It fills only the fields the config declares, so a
probe can grow or drop knobs without this module changing.

Used by the suite's steps, the probe commands with ``--profile`` and the
pytest plugin, so all three pick the same circuit (:func:`select_circuit`)
and fill a config the same way (:func:`bind`).

Also the one key-loading path for circuits (:func:`circuit_key`): the suite's
steps, the runner's reflector preflight and the pytest plugin all read a
circuit's ``key_file`` here, and a bad one is a
:class:`probes.result.KeyFileError` naming the circuit's ``key_file`` field.

Errors name config fields (``key_file``, ``ptime_ms``), never CLI flags; a
command maps them to its own flags with :func:`cli_message` and the table
``harness.cli.common.flags_of`` reads from its click options, so a suite or
pytest-plugin user is never told about a flag they did not pass.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from harness.profile import Circuit, Profile

PROBES = ("latency", "stream", "bandwidth", "capacity", "sip", "path", "failover")

def cli_message(exc: Exception, flags: dict[str, str]) -> str:
    """A probe error for the command line: the config field its message starts
    with becomes the command's flag ("ptime_ms: 25 ms ..." -> "--ptime: 25 ms
    ...", "max_calls 0: ..." -> "--max-calls 0: ..."). A message that starts
    with something else names its subject itself (a file, a circuit) and is
    kept. ``flags``: config field -> the command's flag
    (``harness.cli.common.flags_of(command)``)."""
    field = getattr(exc, "field", None)
    msg = str(exc)
    if field and field in flags and msg.startswith((f"{field}:", f"{field} ")):
        return flags[field] + msg[len(field):]
    return msg


def select_circuit(profile: Profile, name: str | None = None) -> Circuit:
    """The circuit to bind: ``name`` when given (KeyError naming the
    circuits otherwise), else the first with role ``new`` (the one being
    proven), else the first of the profile."""
    if name:
        return profile.circuit(name)
    return (profile.circuits_by_role("new") or list(profile.circuits))[0]


def circuit_key(profile: Profile, circuit: Circuit) -> bytes | None:
    """The circuit's STAMP key, or None when it has no ``key_file``.
    Raises KeyFileError (a measurement gap in `cutover check`, exit 2 at a
    probe command) naming the profile field, not a CLI flag."""
    if not circuit.key_file:
        return None
    from probes.result import KeyFileError
    from probes.wire.stamp import load_key
    try:
        return load_key(profile.resolve_path(circuit.key_file))
    except ValueError as exc:   # load_key's documented error: missing, unreadable or empty
        raise KeyFileError(f"circuit {circuit.name}: key_file: {exc}", field="key_file") from None


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
    # latency without a ping host of its own speaks STAMP to the reflector where ICMP is not allowed
    via_reflector = probe != "latency" or (not circuit.ping and hp is not None)
    values: dict[str, Any] = {
        "target": target, "uri": circuit.sip, "reflector": str(hp) if hp else None,
        "source": circuit.source, "interface": circuit.interface,
        "key_file": str(key_path) if key_path else None,
        "codec": planned.codec, "ptime_ms": planned.ptime_ms,
        "jitter_buffer_ms": th.jitter_buffer_ms, "planned_calls": planned.calls,
        "mos_min": th.mos_min, "loss_pct_max": th.loss_pct, "jitter_ms_max": th.jitter_ms,
        # latency's UDP/TCP fallback goes to the reflector's port when the reflector is its target
        "port": hp.port if probe == "latency" and via_reflector and hp else None,
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
    reads_key = probe != "latency" or values.get("port") is not None   # latency: only towards the reflector
    if "key" in names and "key" not in overrides and circuit.key_file and reads_key:
        # a probe that takes the key itself: read it here, once (KeyFileError, a ValueError naming
        # the circuit's key_file: bad input at a command, a measurement gap in `cutover check`),
        # never a silent unkeyed run; the probe does not read the file again
        values["key"] = circuit_key(profile, circuit)
        values.pop("key_file", None)
    values.update(overrides)
    return cls(**values)
