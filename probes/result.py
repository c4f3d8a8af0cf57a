"""What every probe result shares.

A probe that fails halfway returns what it measured with ``partial=True`` and
the cause in ``errors``; it does not raise. ``measured=False`` means nothing
usable was measured (exit 3 at the CLI).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any


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
