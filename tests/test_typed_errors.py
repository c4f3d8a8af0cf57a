"""Typed probe errors (issue #13, "Typed errors"): every probe's validation
raises a ProbeError subclass (probes/result.py) naming a field of its Config
dataclass, never a CLI flag; a command shows its own flag for that field
(harness.cli.common.flags_of + harness.binding.cli_message), the suite and the
pytest plugin the field.

Each case below is a bad value a user could give: the probe's own
``validate`` must refuse it before anything is sent, and the same value given
on the command line must exit 2 with the command's flag in the one-line cause.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.binding import config_class
from harness.cli import cli as cli_group
from probes import analyze, bandwidth, call, capacity, failover, latency, path, sip, stream
from probes.result import AddressError, BadInput, KeyFileError, ProbeError
from probes.wire.sip_message import SipUriError
from probes.sipaccount import Account

MODULES = {"stream": stream, "latency": latency, "bandwidth": bandwidth, "capacity": capacity, "sip": sip,
           "path": path, "failover": failover, "call": call, "analyze": analyze}


def validate(probe: str, cfg) -> None:
    """The probe's own validation (bandwidth's is a method of its Config)."""
    if probe == "bandwidth":
        cfg.validate()
    else:
        MODULES[probe].validate(cfg)


def _account() -> Account:
    return Account(username="alice", domain="sip.carrier.example", _password="pw")


def _empty_key(tmp: Path) -> str:
    key = tmp / "empty.key"
    key.write_text("")
    key.chmod(0o600)
    return str(key)


def _account_file(tmp: Path) -> str:
    acc = tmp / "alice.yaml"
    acc.write_text("username: alice\npassword: pw\ndomain: sip.carrier.example\n")
    acc.chmod(0o600)
    return str(acc)


# (probe, config kwargs (a function of tmp_path for files), error class, field, what the message
#  says after the field, CLI args (None: no flag for it), what the CLI's cause starts with)
CASES = [
    ("stream", {"target": "127.0.0.1:9", "duration_s": -1}, BadInput, "duration_s",
     " -1: expected more than 0 s", ["probe", "stream", "127.0.0.1:9", "--duration", "-1"], "--duration -1: "),
    ("stream", {"target": "127.0.0.1:9", "ptime_ms": 25}, BadInput, "ptime_ms",
     " 25: g711 is used with", ["probe", "stream", "127.0.0.1:9", "--ptime", "25"], "--ptime 25: "),
    ("stream", {"target": "127.0.0.1:9", "calls": 0}, BadInput, "calls",
     " 0: expected 1-10000", ["probe", "stream", "127.0.0.1:9", "--calls", "0"], "--calls 0: "),
    ("stream", {"target": "127.0.0.1:9", "jitter_buffer_ms": -5}, BadInput, "jitter_buffer_ms",
     " -5: expected >= 0 ms", ["probe", "stream", "127.0.0.1:9", "--jitter-buffer-ms", "-5"],
     "--jitter-buffer-ms -5: "),
    ("stream", {"target": "127.0.0.1:99999"}, AddressError, "target",
     ": '127.0.0.1:99999': port 99999 out of range", ["probe", "stream", "127.0.0.1:99999"], "HOST:PORT: "),
    ("stream", {"target": "127.0.0.1:9", "dscp": "fast"}, BadInput, "dscp",
     ": DSCP 'fast'", ["probe", "stream", "127.0.0.1:9", "--dscp", "fast"], "--dscp: DSCP 'fast'"),
    ("stream", lambda tmp: {"target": "127.0.0.1:9", "key_file": _empty_key(tmp)}, KeyFileError, "key_file",
     ": key file ", lambda tmp: ["probe", "stream", "127.0.0.1:9", "--key-file", _empty_key(tmp)],
     "--key-file: key file "),
    ("latency", {"target": "127.0.0.1", "count": 0}, BadInput, "count",
     " 0: expected 1-100000", ["probe", "latency", "127.0.0.1", "--count", "0"], "--count 0: "),
    ("latency", {"target": "127.0.0.1", "interval_s": -1}, BadInput, "interval_s",
     " -1: expected 0-3600 s", ["probe", "latency", "127.0.0.1", "--interval", "-1"], "--interval -1: "),
    ("latency", {"target": "127.0.0.1", "timeout_s": 0}, BadInput, "timeout_s",
     " 0: expected more than 0 s", ["probe", "latency", "127.0.0.1", "--timeout", "0"], "--timeout 0: "),
    ("latency", {"target": "127.0.0.1", "port": 70000}, BadInput, "port",
     " 70000: expected 1-65535", ["probe", "latency", "127.0.0.1", "--port", "70000"], "--port 70000: "),
    ("latency", {"target": "127.0.0.1", "method": "carrier-pigeon"}, BadInput, "method",
     " 'carrier-pigeon': expected one of", None, None),
    ("bandwidth", {"target": "127.0.0.1:9", "streams": 0}, BadInput, "streams",
     " 0: expected 1 to 16", ["probe", "bandwidth", "--reflector", "127.0.0.1:9", "--streams", "0"],
     "--streams 0: "),
    ("bandwidth", {"target": "127.0.0.1:9", "duration_s": 0.1}, BadInput, "duration_s",
     " 0.1: expected 0.5 to 300 seconds",
     ["probe", "bandwidth", "--reflector", "127.0.0.1:9", "--duration", "0.1"], "--duration 0.1: "),
    ("bandwidth", {"target": "127.0.0.1:99999"}, AddressError, "target",
     ": '127.0.0.1:99999'", ["probe", "bandwidth", "--reflector", "127.0.0.1:99999"], "--reflector: "),
    ("bandwidth", {"target": "127.0.0.1:9", "idle_s": -1}, BadInput, "idle_s",
     " -1: expected 0 to 60 seconds", ["probe", "bandwidth", "--reflector", "127.0.0.1:9", "--idle", "-1"],
     "--idle -1: "),
    ("bandwidth", {"target": "127.0.0.1:9", "latency_interval_ms": 0}, BadInput, "latency_interval_ms",
     " 0: expected 1 to 1000 ms", None, None),
    ("bandwidth", {"backend": "mini", "mini_url": "ftp://x"}, BadInput, "mini_url",
     " 'ftp://x': expected a URL", ["probe", "bandwidth", "--mini", "ftp://x"], "--mini 'ftp://x': "),
    ("capacity", {"target": "127.0.0.1:9", "max_calls": 0}, BadInput, "max_calls",
     " 0: expected 1 to 60000", ["probe", "capacity", "127.0.0.1:9", "--max-calls", "0"], "--max-calls 0: "),
    ("capacity", {"target": "127.0.0.1:9", "step_s": 0.1}, BadInput, "step_s",
     " 0.1: expected 0.5 to 600 seconds", ["probe", "capacity", "127.0.0.1:9", "--step", "0.1"], "--step 0.1: "),
    ("capacity", {"target": "127.0.0.1:9", "codec": "gsm"}, BadInput, "codec",
     ": unknown codec 'gsm'", ["probe", "capacity", "127.0.0.1:9", "--codec", "gsm"], "--codec: unknown codec"),
    ("capacity", {"target": "127.0.0.1:99999"}, AddressError, "target",
     ": '127.0.0.1:99999'", ["probe", "capacity", "127.0.0.1:99999"], "HOST:PORT: "),
    ("sip", {"uri": "http://sip.example"}, SipUriError, "uri",
     ": 'http://sip.example': scheme must be sip: or sips:", ["probe", "sip", "http://sip.example"], "URI: "),
    ("sip", {"uri": "sip:sip.example", "timeout_s": 0}, BadInput, "timeout_s",
     " 0: expected > 0 s", ["probe", "sip", "sip:sip.example", "--timeout", "0"], "--timeout 0: "),
    ("sip", {"uri": "sip:sip.example", "transport": "sctp"}, BadInput, "transport",
     " 'sctp': expected udp, tcp or tls", None, None),
    ("path", {"target": "127.0.0.1", "rounds": 0}, BadInput, "rounds",
     " 0: expected 1-20", ["probe", "path", "127.0.0.1", "--rounds", "0"], "--rounds 0: "),
    ("path", {"target": "127.0.0.1", "max_ttl": 99}, BadInput, "max_ttl",
     " 99: expected 1-64", ["probe", "path", "127.0.0.1", "--max-ttl", "99"], "--max-ttl 99: "),
    ("path", {"target": "127.0.0.1", "max_wall_s": 0}, BadInput, "max_wall_s",
     " 0: expected > 0 s", ["probe", "path", "127.0.0.1", "--max-wall", "0"], "--max-wall 0: "),
    ("path", {"target": "127.0.0.1", "interface": "nosuchif0"}, BadInput, "interface",
     " 'nosuchif0': no such interface here", ["probe", "path", "127.0.0.1", "--interface", "nosuchif0"],
     "--interface 'nosuchif0': "),
    ("failover", {"target": "127.0.0.1:9", "duration_s": 2}, BadInput, "duration_s",
     " 2: a drill lasts 5-3600 s", ["probe", "failover", "127.0.0.1:9", "--duration", "2"], "--duration 2: "),
    ("failover", {"target": "127.0.0.1:9", "calls": 0}, BadInput, "calls",
     " 0: expected 1-1000", ["probe", "failover", "127.0.0.1:9", "--calls", "0"], "--calls 0: "),
    ("failover", {"target": "127.0.0.1:9", "trigger": "true"}, BadInput, "trigger_at_s",
     ": the trigger command and the time to run it go together",
     ["probe", "failover", "127.0.0.1:9", "--trigger", "true"], "--trigger-at: the trigger command"),
    ("call", {"account": _account(), "uri": "sip:echo@sip.carrier.example", "duration_s": 0}, BadInput,
     "duration_s", " 0: expected more than 0 s",
     lambda tmp: ["probe", "call", "sip:echo@sip.carrier.example", "--account", _account_file(tmp),
                  "--duration", "0"], "--duration 0: "),
    ("call", {"account": _account(), "uri": "sip:echo@sip.carrier.example", "ring_timeout_s": 0}, BadInput,
     "ring_timeout_s", " 0: expected > 0 s",
     lambda tmp: ["probe", "call", "sip:echo@sip.carrier.example", "--account", _account_file(tmp),
                  "--ring-timeout", "0"], "--ring-timeout 0: "),
    ("call", {"account": _account(), "uri": "sip:echo@sip.carrier.example", "ptime_ms": 25}, BadInput,
     "ptime_ms", " 25: g711 is used with",
     lambda tmp: ["probe", "call", "sip:echo@sip.carrier.example", "--account", _account_file(tmp),
                  "--ptime", "25"], "--ptime 25: "),
    ("call", {"account": _account(), "uri": "<echo>"}, SipUriError, "uri", ": '<echo>': expected a SIP URI",
     None, None),
    ("analyze", {"path": "x.pcap", "jitter_buffer_ms": -1}, BadInput, "jitter_buffer_ms",
     " -1: expected 0-10000 ms", ["analyze", "x.pcap", "--jitter-buffer-ms", "-1"], "--jitter-buffer-ms -1: "),
    ("analyze", {"path": "x.pcap", "one_way_ms": -1}, BadInput, "one_way_ms",
     " -1: expected 0-10000 ms", ["analyze", "x.pcap", "--one-way-ms", "-1"], "--one-way-ms -1: "),
    ("analyze", {"path": "x.pcap", "min_packets": 0}, BadInput, "min_packets",
     " 0: expected at least 1", None, None),
]
IDS = [f"{c[0]}-{c[3]}-{i}" for i, c in enumerate(CASES)]
FLAG = re.compile(r"(?<![\w-])--[a-z]")   # a CLI flag, as a user would read it


def _given(value, tmp_path):
    return value(tmp_path) if callable(value) else value


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_validate_raises_a_typed_error_naming_a_config_field(case, tmp_path):
    probe, kwargs, cls, field, says, _args, _flag = case
    config = config_class(MODULES[probe])
    with pytest.raises(ProbeError) as info:
        validate(probe, config(**_given(kwargs, tmp_path)))
    exc = info.value
    assert type(exc) is cls, (type(exc), str(exc))
    assert isinstance(exc, BadInput) and isinstance(exc, ValueError)   # exit 2; old callers still catch it
    assert exc.field == field
    assert field in {f.name for f in dataclasses.fields(config)}, f"{field} is not a field of {config.__name__}"
    msg = str(exc)
    # the message starts with the field, then what is wrong, and names no flag the caller never passed
    assert msg.startswith(field + says), msg
    assert not FLAG.search(msg), msg


@pytest.mark.parametrize("case", [c for c in CASES if c[5] is not None],
                         ids=[i for i, c in zip(IDS, CASES) if c[5] is not None])
def test_the_cli_names_its_flag_for_the_same_field(case, tmp_path):
    probe, _kwargs, _cls, field, says, args, flag = case
    r = CliRunner().invoke(cli_group, _given(args, tmp_path))
    assert r.exit_code == 2, (r.exit_code, r.output, r.stderr)
    (line,) = r.stderr.strip().splitlines()[-1:]
    # the probe's message with the field swapped for the command's flag
    assert line.startswith("cutover: " + flag), line
    assert says.strip(": ") in line, line
    assert not line[len("cutover: "):].startswith(field), line
    assert "Traceback" not in r.output + r.stderr


def test_every_probe_has_a_validate_covered_here():
    """A new probe (or a probe losing its validate) shows up here."""
    from harness.binding import PROBES
    assert set(PROBES) | {"analyze", "call"} == set(MODULES)
    covered = {c[0] for c in CASES}
    assert covered == set(MODULES)
    for name, module in MODULES.items():
        cfg = config_class(module)
        assert callable(getattr(module, "validate", None)) or callable(getattr(cfg, "validate", None)), name


def test_the_suite_names_the_field_and_it_is_a_measurement_gap(tmp_path, monkeypatch):
    """`cutover check` runs the real latency step with a count of 0: the check's
    reason names the config field (count), never the flag (--count), and our
    bad value is a measurement gap, not the carrier's outage nor a crash."""
    from harness import runner
    from harness.profile import load_profile
    from harness.suite import latency as latency_step
    prof = tmp_path / "site.yaml"
    prof.write_text("site: Typed\nplanned: {calls: 4, codec: g711, ptime_ms: 20}\ncircuits:\n"
                    "  - {name: new, role: new, down_mbps: 10, up_mbps: 10, ping: 127.0.0.1}\n"
                    "cutover:\n  parallel_run_start: 2026-11-01\n")
    profile = load_profile(prof)
    monkeypatch.setattr(latency_step, "QUICK", {"count": 0, "interval_s": 0.1})
    outcome = runner.measure_circuit(profile, profile.circuit("new"), quick=True, steps=[latency_step])
    (check,) = [c for c in outcome.checks if c.id == "latency.measured"]
    assert check.status == "error" and check.cause == "measurement_gap"
    assert "count 0: expected 1-100000" in check.reason and "--count" not in check.reason


def test_the_pytest_plugin_names_the_field(pytester):
    """A site check asking a probe for a bad value is told about the config
    field it passed (duration_s), not about a flag of `cutover probe stream`."""
    prof = pytester.path / "site.yaml"
    # TEST-NET-1: never contacted, the value is refused before anything is sent
    prof.write_text("site: Typed\nplanned: {calls: 4, codec: g711, ptime_ms: 20}\ncircuits:\n"
                    "  - {name: new, role: new, down_mbps: 10, up_mbps: 10, reflector: '192.0.2.1:862'}\n"
                    "cutover:\n  parallel_run_start: 2026-11-01\n")
    pytester.makepyfile(test_site="def test_short(probe):\n    probe('stream', duration_s=-1)\n")
    result = pytester.runpytest_subprocess("--cutover-profile", str(prof), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "BadInput: duration_s -1: expected more than 0 s" in text
    assert "--duration" not in text


@pytest.mark.parametrize("probe", ["stream", "failover", "bandwidth"])
def test_an_unusable_key_file_is_key_file_error_naming_the_field_in_every_stamp_probe(probe, tmp_path):
    """The one key reader (probes.wire.stamp.config_key): a missing key file is
    KeyFileError on field key_file in each probe that speaks STAMP, before any
    packet is sent (bandwidth raised a bare InputFileError without the field)."""
    from probes import bandwidth, failover, stream
    from probes.result import KeyFileError
    missing = str(tmp_path / "nope.key")
    config = {"stream": lambda: stream.StreamConfig(target="127.0.0.1:9", duration_s=1, key_file=missing),
              "failover": lambda: failover.FailoverConfig(target="127.0.0.1:9", duration_s=10, key_file=missing),
              "bandwidth": lambda: bandwidth.BandwidthConfig(target="127.0.0.1:9", duration_s=1,
                                                             key_file=missing)}[probe]()
    run = {"stream": stream.run, "failover": failover.run, "bandwidth": bandwidth.run}[probe]
    with pytest.raises(KeyFileError, match="no such file") as exc:
        run(config)
    assert exc.value.field == "key_file" and missing in str(exc.value)
