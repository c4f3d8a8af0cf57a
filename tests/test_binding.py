"""The one mapper from a circuit to a probe's config (harness.binding), its one
key-loading path, and typed probe errors that name config fields."""

from __future__ import annotations

import pytest

from harness.binding import bind, circuit_key, cli_message, select_circuit
from harness.profile import load_profile
from probes.result import BadInput, KeyFileError, ProbeError

PROFILE = """\
site: Bind lab
planned: {{calls: 4, codec: g711, ptime_ms: 20}}
circuits:
  - {{name: adsl, role: old, down_mbps: 10, up_mbps: 1, reflector: "192.0.2.1:862", source: 192.0.2.50}}
  - {{name: fibre, role: new, down_mbps: 100, up_mbps: 100, reflector: "192.0.2.1:862", key_file: {key}}}
  - {{name: lte, role: backup, down_mbps: 20, up_mbps: 5, ping: 192.0.2.9, reflector: "192.0.2.1:862"}}
"""


@pytest.fixture
def profile(tmp_path):
    (tmp_path / "site.key").write_bytes(b"  s3cret-key-material \n")
    (tmp_path / "site.yaml").write_text(PROFILE.format(key="site.key"))
    return load_profile(tmp_path / "site.yaml")


def test_one_default_circuit_rule(profile):
    assert select_circuit(profile).name == "fibre"            # the first with role new
    assert select_circuit(profile, "adsl").name == "adsl"
    with pytest.raises(KeyError, match="no circuit 'fibr'"):
        select_circuit(profile, "fibr")
    no_new = profile.model_copy(update={"circuits": [profile.circuit("adsl"), profile.circuit("lte")]})
    assert select_circuit(no_new).name == "adsl"              # else the first


def test_bind_fills_the_circuit_and_loads_the_key_once(profile):
    cfg = bind("stream", profile, profile.circuit("fibre"), duration_s=4.0, calls=1)
    assert (cfg.target, cfg.codec, cfg.ptime_ms, cfg.duration_s) == ("192.0.2.1:862", "g711", 20, 4.0)
    assert cfg.key == b"s3cret-key-material" and cfg.key_file is None   # stripped, read here only
    adsl = bind("stream", profile, profile.circuit("adsl"))
    assert (adsl.source, adsl.key, adsl.key_file) == ("192.0.2.50", None, None)


def test_latency_reaches_the_reflector_only_without_a_ping_host(profile):
    fibre = bind("latency", profile, profile.circuit("fibre"), count=3)
    assert (fibre.target, fibre.port, fibre.key) == ("192.0.2.1", 862, b"s3cret-key-material")
    lte = bind("latency", profile, profile.circuit("lte"))
    assert (lte.target, lte.port, lte.key) == ("192.0.2.9", None, None)


def test_bad_key_file_is_a_typed_error_naming_the_field(profile, tmp_path):
    (tmp_path / "site.key").write_bytes(b"")
    with pytest.raises(KeyFileError) as info:
        circuit_key(profile, profile.circuit("fibre"))
    exc = info.value
    assert isinstance(exc, BadInput) and isinstance(exc, ProbeError) and isinstance(exc, ValueError)
    assert exc.field == "key_file" and str(exc).startswith("circuit fibre: key_file: ")
    assert "is empty" in str(exc) and "--key-file" not in str(exc)   # suite users never passed a flag
    # the CLI names its own flag for the same field
    flags = {"ptime_ms": "--ptime", "key_file": "--key-file"}
    assert cli_message(BadInput("ptime_ms: 25 ms is not a G.711 ptime", field="ptime_ms"), flags) == \
        "--ptime: 25 ms is not a G.711 ptime"
    assert cli_message(ValueError("plain"), flags) == "plain"
    assert cli_message(exc, flags) == str(exc)   # names its circuit and field itself: kept
    with pytest.raises(KeyFileError):
        bind("stream", profile, profile.circuit("fibre"))
