"""The readiness suite: one module per step, run in this order per circuit.

Each step module (docs/internals.md §3) has ``NAME``, ``applies(profile,
circuit)``, ``measure(profile, circuit, *, quick, progress, stop) -> dict``
and the pure ``evaluate(profile, circuit, raw) -> list[Check]``.

Steps are imported by name, defensively: a step whose module (or the probe it
drives) is not part of this build is listed in :func:`unavailable` with the
reason, and the suite runs without it, but never silently: the runner records
a ``<step>.available`` error check with cause ``measurement_gap`` naming the
step, so such a circuit cannot be GO. Helpers drop new step modules in here
without touching this file as long as their name is in :data:`ORDER`.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from harness.verdicts import GAP, NETWORK, Check, error

ORDER = ("latency", "stream", "bandwidth", "capacity", "sip", "call", "path", "site")

# Steps that talk to the circuit's STAMP reflector (and its TCP bandwidth
# service on the same port): the runner checks once that it answers.
NEEDS_REFLECTOR = frozenset({"stream", "bandwidth", "capacity"})

_REQUIRED = ("NAME", "applies", "measure", "evaluate")

# Steps whose probe needs raw sockets (root or CAP_NET_RAW); a step module can
# say so itself with NEEDS_RAW_SOCKETS = True/False.
_RAW_SOCKET_STEPS = frozenset({"path"})


def needs_raw_sockets(step: ModuleType) -> bool:
    return bool(getattr(step, "NEEDS_RAW_SOCKETS", step.NAME in _RAW_SOCKET_STEPS))


def raw_sockets_allowed() -> bool:
    """Can this process open a raw ICMP socket (root or CAP_NET_RAW)?"""
    import socket
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        return True
    except OSError:
        return False


def _load() -> tuple[list[ModuleType], dict[str, str]]:
    steps, missing = [], {}
    for name in ORDER:
        try:
            mod = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            # the step module itself, or the probe it drives, is not built yet
            missing[name] = f"not available in this build ({exc.name} missing)"
            continue
        except ImportError as exc:
            missing[name] = f"cannot be loaded: {exc}"
            continue
        probe = getattr(mod, "PROBE", None)   # steps that import their probe late name it here
        if probe and importlib.util.find_spec(probe) is None:
            missing[name] = f"not available in this build ({probe} missing)"
            continue
        absent = [a for a in _REQUIRED if not hasattr(mod, a)]
        if absent:
            missing[name] = f"incomplete step module (no {', '.join(absent)})"
            continue
        steps.append(mod)
    return steps, missing


_cache: tuple[list[ModuleType], dict[str, str]] | None = None


def steps() -> list[ModuleType]:
    """Available step modules in suite order."""
    global _cache
    if _cache is None:
        _cache = _load()
    return list(_cache[0])


def unavailable() -> dict[str, str]:
    """Step name -> why it is not in this build."""
    global _cache
    if _cache is None:
        _cache = _load()
    return dict(_cache[1])


# ---------------------------------------------------------------- shared by the steps

# Words in a probe's error text that meant *our* side could not measure, read
# only for results stored before probes said so themselves (no "gaps" key).
_LOCAL_CAUSES = ("permission", "not permitted", "needs root", "cap_net_raw", "not installed",
                 "no such device", "cannot assign requested address", "network is down",
                 "fell behind", "stopped by the user", "run stopped")


def probe_cause(raw: dict) -> str:
    """Cause class of a probe that could not (fully) measure, the one place it
    is decided. The probe says it, typed (probes/result.py): ``gaps`` holds
    the errors that are ours (no permission, missing tool, our interface down
    or without the source address, stopped on request), so a non-empty
    ``gaps`` is a measurement gap and an empty one the network (the far end
    did not answer while we could send), whatever the errors' wording.

    Only a raw stored before probes had ``gaps`` (no such key) falls back to
    the words of its errors (_LOCAL_CAUSES)."""
    if "gaps" in raw:
        return GAP if raw.get("gaps") else NETWORK
    text = " ".join(str(e) for e in raw.get("errors") or []).lower()
    return GAP if any(w in text for w in _LOCAL_CAUSES) else NETWORK


def not_measured(step: str, raw: dict) -> list[Check] | None:
    """One error check when the probe measured nothing usable, else None.
    The reason is the probe's own error text; the cause class from
    :func:`probe_cause`."""
    if raw.get("measured", True) is False:
        cause = "; ".join(str(e) for e in raw.get("errors") or []) or "nothing measured"
        return [error(f"{step}.measured", f"{step}: {cause}", cause=probe_cause(raw))]
    return None


def partial_check(step: str, raw: dict) -> list[Check]:
    """A run that measured something and then failed (reflector died halfway)
    is evidence of trouble: an error check beside the figures it did get."""
    if raw.get("partial"):
        cause = "; ".join(str(e) for e in raw.get("errors") or []) or "stopped early"
        return [error(f"{step}.complete", f"{step} stopped early: {cause}", cause=probe_cause(raw))]
    return []


def codec_label(codec: str) -> str:
    """'g711' -> 'G.711', 'opus' -> 'Opus' (for reasons people read)."""
    c = codec.lower()
    if c.startswith("g") and c[1:].isdigit():
        return f"G.{c[1:]}"
    return c.capitalize()
