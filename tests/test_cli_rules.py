"""The rules of docs/cli.md, checked on every command (found by walking the
click tree, so a command added tomorrow is checked too): one spelling per
concept, the --profile/--circuit binding on every probe, one error style with
the documented exit codes, and a closed stdout that does not change the exit
status."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import click
import pytest

from harness.cli import cli, main
from harness.cli.common import _AliasedOption
from tests.conftest import FIXTURES, ROOT

VALID = FIXTURES / "profiles" / "valid.yaml"

# concept -> (the one spelling, spellings that must not be visible anywhere)
CANONICAL = {
    "report folder": ("--report-dir", {"--out", "--output", "--outdir", "--out-dir", "--reports"}),
    "de-jitter buffer": ("--jitter-buffer-ms", {"--jitter-buffer", "--jb", "--buffer-ms"}),
    "STAMP key": ("--key-file", {"--key", "--keyfile", "--psk"}),
    "history database": ("--db", {"--database", "--db-path", "--history"}),
    "JSON output": ("--json", {"--as-json", "--format-json"}),
    "circuit": ("--circuit", {"--circuits", "--circ"}),
    "profile of a probe": ("--profile", {"--site", "--profile-path"}),
    "verbose": ("--verbose", {"--debug-progress"}),
}
UNIT_SUFFIXES = ("-ms", "-s", "-seconds", "-mbps", "-pct")


def walk(group: click.Group = cli, path: tuple[str, ...] = ()):
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if isinstance(cmd, click.Group):
            yield from walk(cmd, path + (name,))
        else:
            yield path + (name,), cmd


COMMANDS = list(walk())
IDS = [" ".join(p) for p, _ in COMMANDS]


def visible_options(cmd: click.Command) -> set[str]:
    out: set[str] = set()
    for p in cmd.params:
        if isinstance(p, click.Option) and not p.hidden:
            hidden = set(getattr(p, "hidden_aliases", ()))
            out |= {o for o in p.opts + p.secondary_opts if o.startswith("--") and o not in hidden}
    return out


def test_the_walk_finds_every_command():
    names = set(IDS)
    assert {"probe stream", "probe path", "report", "check", "exporter", "profile validate"} <= names
    assert len(names) >= 19


@pytest.mark.parametrize("concept", sorted(CANONICAL))
def test_one_spelling_per_concept(concept):
    canonical, others = CANONICAL[concept]
    users = [name for (path, cmd), name in zip(COMMANDS, IDS) if canonical in visible_options(cmd)]
    assert users, f"{canonical} is used by no command: the table is out of date"
    offenders = {name: sorted(visible_options(cmd) & others) for (path, cmd), name in zip(COMMANDS, IDS)
                 if visible_options(cmd) & others}
    assert not offenders, f"{concept} must be spelled {canonical}: {offenders}"


def test_no_two_spellings_differing_only_by_unit():
    """--jitter-buffer and --jitter-buffer-ms on two commands: one concept, two names."""
    stems: dict[str, set[str]] = {}
    for _path, cmd in COMMANDS:
        for opt in visible_options(cmd):
            stem = opt
            for suffix in UNIT_SUFFIXES:
                if stem.endswith(suffix) and len(stem) > len(suffix) + 3:
                    stem = stem[:-len(suffix)]
                    break
            stems.setdefault(stem, set()).add(opt)
    clashes = {stem: sorted(opts) for stem, opts in stems.items() if len(opts) > 1}
    assert not clashes, clashes


def test_old_spellings_parse_and_are_hidden():
    ctx = click.Context(cli)
    stream = cli.get_command(ctx, "probe").get_command(ctx, "stream")
    c = stream.make_context("stream", ["--jitter-buffer", "80", "192.0.2.1:862"])
    assert c.params["jitter_buffer"] == 80.0
    c = stream.make_context("stream", ["--jitter-buffer-ms", "70", "192.0.2.1:862"])
    assert c.params["jitter_buffer"] == 70.0
    report = cli.get_command(ctx, "report")
    assert report.make_context("report", ["p.yaml", "--out", "r1"]).params["out_dir"] == "r1"
    for cmd, old, new in ((stream, "--jitter-buffer", "--jitter-buffer-ms"), (report, "--out", "--report-dir")):
        text = cmd.get_help(click.Context(cmd, info_name=cmd.name))
        assert new in text and not re.search(rf"{old}(?![-\w])", text), text
        assert any(isinstance(p, _AliasedOption) and old in p.hidden_aliases for p in cmd.params)


@pytest.mark.parametrize("path,cmd", [(p, c) for p, c in COMMANDS if p[0] == "probe"],
                         ids=[i for i in IDS if i.startswith("probe ")])
def test_every_probe_binds_to_a_circuit(path, cmd):
    assert {"--profile", "--circuit"} <= visible_options(cmd)


# ---------------------------------------------------------------- one error style, documented codes

def run_main(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """The console script in-process (its error handling is the thing tested)."""
    monkeypatch.setattr(sys, "argv", ["cutover", *argv])
    monkeypatch.setattr(sys, "stdout", sys.stdout)   # undo main()'s EPIPE guard after the test
    monkeypatch.setattr(sys, "stderr", sys.stderr)
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 0), out, err


def assert_style(err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "an error must say something on stderr"
    assert all(line.startswith("cutover: ") for line in lines), err
    assert "Traceback" not in err


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=IDS)
def test_unknown_option_is_a_usage_error_in_the_one_style(monkeypatch, capsys, path):
    code, out, err = run_main(monkeypatch, capsys, *path, "--no-such-option")
    assert code == 2
    assert_style(err)
    assert f"{' '.join(path)}: no such option '--no-such-option'" in err


def _takes_profile(cmd: click.Command) -> str | None:
    for p in cmd.params:
        if isinstance(p, click.Argument) and p.name == "profile":
            return "argument"
        if isinstance(p, click.Option) and "--profile" in p.opts:
            return "option"
    return None


def _arguments(cmd: click.Command, profile: str) -> list[str]:
    """Positional arguments: the profile where it goes, a placeholder for any other required one."""
    out = []
    for p in cmd.params:
        if isinstance(p, click.Argument):
            if p.name == "profile":
                out.append(profile)
            elif p.required:
                out.append("placeholder")
    return out


PROFILE_COMMANDS = [(p, c) for p, c in COMMANDS if _takes_profile(c)]


@pytest.mark.parametrize("path,cmd", PROFILE_COMMANDS, ids=[" ".join(p) for p, _ in PROFILE_COMMANDS])
def test_missing_profile_names_the_file(monkeypatch, capsys, tmp_path, path, cmd):
    missing = str(tmp_path / "missing.yaml")
    argv = [*path, *_arguments(cmd, missing)]
    if _takes_profile(cmd) == "option":
        argv += ["--profile", missing]
    code, _out, err = run_main(monkeypatch, capsys, *argv)
    assert code == 2
    assert_style(err)
    assert f"cutover: {missing}: no such file" in err


CIRCUIT_COMMANDS = [(p, c) for p, c in PROFILE_COMMANDS if "--circuit" in visible_options(c)]


@pytest.mark.parametrize("path,cmd", CIRCUIT_COMMANDS, ids=[" ".join(p) for p, _ in CIRCUIT_COMMANDS])
def test_circuit_typo_gets_did_you_mean(monkeypatch, capsys, path, cmd):
    argv = [*path, *_arguments(cmd, str(VALID))]
    if _takes_profile(cmd) == "option":
        argv += ["--profile", str(VALID)]
    if path == ("schedule",):
        argv += ["--every", "15m"]
    code, _out, err = run_main(monkeypatch, capsys, *argv, "--circuit", "nwe")
    assert code == 2
    assert_style(err)
    assert "no circuit 'nwe' (did you mean 'new'?); circuits: old, new" in err


@pytest.mark.parametrize("argv,words", [
    (["check", str(VALID), "--step", "strem"], "--step: no step 'strem' (did you mean 'stream'?)"),
    (["schedule", str(VALID), "--every", "15m", "--step", "latncy"], "no step 'latncy' (did you mean 'latency'?)"),
    (["signoff", str(VALID), "portng", "--by", "x"], "no checklist item 'portng' (did you mean 'porting'?)"),
    (["probe", "strem"], "no command 'strem' (did you mean 'stream'?)"),
    (["chek"], "no command 'chek' (did you mean 'check'?)"),
])
def test_names_looked_up_get_did_you_mean(monkeypatch, capsys, argv, words):
    code, _out, err = run_main(monkeypatch, capsys, *argv)
    assert code == 2
    assert_style(err)
    assert words in err


KEY_COMMANDS = [(p, c) for p, c in COMMANDS if "--key-file" in visible_options(c)]


@pytest.mark.parametrize("path,cmd", KEY_COMMANDS, ids=[" ".join(p) for p, _ in KEY_COMMANDS])
def test_unusable_key_file_is_bad_input(monkeypatch, capsys, tmp_path, path, cmd):
    # a target that passes every other check, so the key file is what fails (a new probe: HOST:PORT)
    target = {"latency": ["127.0.0.1:9", "--method", "udp"], "bandwidth": ["--reflector", "127.0.0.1:9"],
              "reflector": ["--listen", "127.0.0.1:0"]}.get(path[-1], ["127.0.0.1:9"])
    code, _out, err = run_main(monkeypatch, capsys, *path, *target, "--key-file", str(tmp_path))
    assert code == 2
    assert_style(err)
    assert f"key file {tmp_path}: is a directory; expected a regular file" in err


def test_malformed_sip_uri_exits_2_without_dns(monkeypatch, capsys):
    looked_up = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: looked_up.append(a) or [])
    import dns.resolver
    monkeypatch.setattr(dns.resolver.Resolver, "resolve", lambda self, *a, **k: looked_up.append(a))
    for uri in ("sip:exa mple.com", "sip:host;transport=", "sip:host;transport=sctp", "http://sbc.example",
                "sip:300.1.1.1", "sip:"):
        code, _out, err = run_main(monkeypatch, capsys, "probe", "sip", uri)
        assert code == 2, (uri, err)
        assert_style(err)
        assert repr(uri) in err
    assert looked_up == []


def test_analyze_names_a_directory_and_a_fifo(monkeypatch, capsys, tmp_path):
    import os
    fifo = tmp_path / "capture.pcap"
    os.mkfifo(fifo)
    for path, words in ((tmp_path, "is a directory"), (fifo, "is a FIFO"), (tmp_path / "nope.pcap", "no such file")):
        code, _out, err = run_main(monkeypatch, capsys, "analyze", str(path))
        assert code == 2
        assert_style(err)
        assert f"capture {path}: {words}" in err


def test_internal_error_is_70_with_the_cause(monkeypatch, capsys):
    import harness.cli.cmd_plan as cmd_plan

    def broken(*a, **k):
        raise RuntimeError("boom")
    monkeypatch.delenv("CUTOVER_DEBUG", raising=False)
    monkeypatch.setattr(cmd_plan, "plan_profile", broken)
    code, _out, err = run_main(monkeypatch, capsys, "plan", str(VALID))
    assert code == 70
    assert_style(err)
    assert "internal error: RuntimeError: boom" in err


# ---------------------------------------------------------------- a closed stdout

@pytest.mark.parametrize("argv,status", [
    (["profile", "schema"], 0),                        # long output, success
    (["gate", str(VALID), "--db", "{tmp}/none.sqlite"], 1),   # NO-GO (no history), several lines
])
def test_closed_stdout_keeps_the_real_exit_status(tmp_path, argv, status):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    full = subprocess.run([sys.executable, "-m", "harness", *argv], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert full.returncode == status and full.stdout.count("\n") > 3
    # `| head -0`: the reader is gone before the first write, so every write meets EPIPE
    # (reading a line first would let small outputs fit in the pipe buffer and never break)
    proc = subprocess.Popen([sys.executable, "-m", "harness", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == status, err
    assert err == ""


# ---------------------------------------------------------------- the binding of latency, sip and path

def test_latency_bound_to_a_circuit_measures_through_its_reflector(tmp_path):
    """--profile/--circuit gives latency the circuit's host, source and the
    reflector's port for the UDP method: replies prove the port came from the
    profile (the default 862 has no reflector)."""
    from tests.harness_procs import ReflectorProc, closed_udp_port, demo_profile
    refl = ReflectorProc(tmp_path / "refl.log")
    try:
        prof = demo_profile(tmp_path / "site.yaml", closed_udp_port(), refl.port)
        r = subprocess.run([sys.executable, "-m", "harness", "probe", "latency", "--profile", str(prof),
                            "--circuit", "new", "--method", "udp", "--count", "3", "--interval", "0.05",
                            "--json"], capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 0, r.stderr
        import json
        d = json.loads(r.stdout)
        assert d["method"] == "udp" and d["received"] == 3 and d["target"] == "127.0.0.1"
        # the old circuit's reflector port is closed: measured nothing, and says so
        r = subprocess.run([sys.executable, "-m", "harness", "probe", "latency", "--profile", str(prof),
                            "--circuit", "old", "--method", "udp", "--count", "2", "--interval", "0.05"],
                           capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert r.returncode == 3 and "cutover: " in r.stderr
    finally:
        refl.stop()


def test_bound_config_command_line_wins(monkeypatch, capsys):
    from harness.cli.common import bound_config
    cfg = bound_config("path", str(VALID), "old", rounds=5, target=None)
    assert cfg.target == "198.51.100.7" and cfg.rounds == 5          # the old circuit's reflector host
    cfg = bound_config("path", str(VALID), "old", target="192.0.2.99")
    assert cfg.target == "192.0.2.99"
    cfg = bound_config("sip", str(VALID), None, uri="sip:192.0.2.7")   # valid.yaml's circuits have no sip:
    assert cfg.uri == "sip:192.0.2.7"
    with pytest.raises(SystemExit):
        bound_config("sip", str(VALID), None)
    assert "gives no URI for probe sip; give it on the command line" in capsys.readouterr().err
