"""What every probe result shares.

A probe that fails halfway returns what it measured with ``partial=True`` and
the cause in ``errors``; it does not raise. ``measured=False`` means nothing
usable was measured (exit 3 at the CLI).

Whose fault an error is, is said where it is known, typed: every result with
``errors`` also has ``gaps``, the subset of ``errors`` that are *ours* (no
permission, a missing tool, our interface down or without the source address,
the engine fell behind, stopped on request). A probe records such an error with
:func:`local_error` (or :func:`add_error`, which asks :func:`is_local` about an
exception); every other error (the far end did not answer, refused, timed out
while we could send) is the network's. ``cutover check`` reads ``gaps`` for the
cause class (harness.suite.probe_cause): a changed wording can no longer move a
fault of ours onto the carrier.
"""

from __future__ import annotations

import dataclasses
import errno
import math
from typing import Any, Protocol


class ProbeError(Exception):
    """Base of every error a probe raises on purpose. ``run`` never raises for
    network trouble (that is a result); it raises these for problems on our
    side, found before or while measuring::

        ProbeError                      a probe could not be set up or could not measure
        |-- BadInput (ValueError)       a config value is wrong (exit 2)       field: "ptime_ms"
        |   |-- AddressError            "host:port" does not parse             field: "target"
        |   |                           (probes.addr raises it; validate adds the field)
        |   |-- KeyFileError            key file missing, unreadable or empty  field: "key_file"
        |   |-- InputFileError          a file we were given cannot be used    (probes.inputfile)
        |   |-- SipUriError             a malformed SIP URI                    field: "uri"
        |   |-- AccountError            a bad SIP account file                 (probes.sipaccount)
        |   `-- CaptureError            not a readable pcap/pcapng             field: "path"
        |-- ResolveError (OSError)      a host name does not resolve: a result's error (exit 3)
        |-- DecodeError                 bytes that are not what we expect
        |   `-- StampDecodeError        (ValueError) a datagram that is not STAMP (probes.wire.stamp)
        `-- MeasurementError            our side cannot measure: no permission, missing
                                        tool, local interface down (exit 3)

    A message starts with the field it names, then the value, then what was
    expected ("duration_s -1: expected more than 0 s"), so it reads on its own
    in a suite's check and the CLI can swap the field for its flag.

    ``field`` names the config field (``StreamConfig.ptime_ms``), never a CLI
    flag: the CLI maps fields to its own flags (``harness.binding.cli_message``
    with the table ``harness.cli.common.flags_of`` reads from the command's
    click options), so users of the suite and the pytest plugin are not
    told about flags they never passed. In ``cutover check`` every
    ProbeError is a *measurement gap* (docs/judgement.md): our side could not
    measure, which is never the carrier's outage. Any other exception in a
    step is a bug of ours (exit 70).
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BadInput(ProbeError, ValueError):
    """A config value is wrong; a ValueError so older callers still catch it."""


class AddressError(BadInput):
    """A target or source address does not parse."""


class KeyFileError(BadInput):
    """The STAMP key file is missing, unreadable or empty."""


class ResolveError(ProbeError, OSError):
    """A well-formed host name that does not resolve (probes.addr.resolve). An
    OSError, as a failed lookup is: a probe reports it in its result's
    ``errors`` (could not measure, exit 3), it is not bad input."""


class DecodeError(ProbeError):
    """Bytes that are not what the probe expects (a reply; stamp.StampDecodeError)."""


class MeasurementError(ProbeError):
    """Our side cannot measure: no permission, a missing tool, a local
    interface down. Never the circuit's fault."""


# errno values of an OSError that say *our* side cannot send: no permission,
# a source address not on this machine or already in use, our interface down or
# gone, our buffers or descriptors exhausted. ENETUNREACH / EHOSTUNREACH /
# ECONNREFUSED are not here: they are what the path or the far end answered.
LOCAL_ERRNOS = frozenset({errno.EPERM, errno.EACCES, errno.EADDRNOTAVAIL, errno.EADDRINUSE,
                          errno.ENETDOWN, errno.ENODEV, errno.ENXIO, errno.ENOBUFS, errno.ENOMEM,
                          errno.EMFILE, errno.ENFILE})


class HasGaps(Protocol):
    """A probe result: ``errors`` (every cause) and ``gaps`` (the ones of ours)."""
    errors: list[str]
    gaps: list[str]


def is_local(exc: BaseException) -> bool:
    """True when ``exc`` is a fault of our side (a MeasurementError, a
    PermissionError, an OSError whose errno is in LOCAL_ERRNOS); a failed
    name lookup (ResolveError) and everything the far end answered are not."""
    if isinstance(exc, (MeasurementError, PermissionError)):
        return True
    if isinstance(exc, ResolveError):
        return False
    return isinstance(exc, OSError) and exc.errno in LOCAL_ERRNOS


def local_error(result: HasGaps, message: str) -> None:
    """Record an error of ours: in ``errors`` (every cause) and in ``gaps``."""
    result.errors.append(message)
    result.gaps.append(message)


def add_error(result: HasGaps, exc: BaseException, message: str | None = None) -> None:
    """Record ``exc`` (as ``message``, default its text) in ``errors``, and in
    ``gaps`` too when :func:`is_local` says it is ours."""
    text = message if message is not None else (str(exc) or exc.__class__.__name__)
    if is_local(exc):
        local_error(result, text)
    else:
        result.errors.append(text)


def clean(value: Any) -> Any:
    """dataclasses -> JSON-ready dicts; NaN/inf -> None; floats rounded to 0.001."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: clean(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return None
        return round(value, 3)
    return value
