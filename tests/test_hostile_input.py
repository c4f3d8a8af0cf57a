"""Hostile input cannot exhaust, hang or mislead (issue #16, items 1, 2, 8, 9).

Each case runs the real command as a child process under ``resource``
limits set before it starts: 256 MB of address space (200 MB for the data
on top of what the interpreter and its imports map; a plain `profile
validate` runs in under 60 MB) and 2 s of CPU (the kernel ends it with
SIGXCPU beyond that). From outside we check: it was not killed, it exited 2,
its peak RSS (wait4, by a small launcher that forks it) stayed under 200 MB,
and stderr names the file and the
problem. A generous wall-clock guard only catches hangs (a FIFO opened
without O_NONBLOCK waits for a writer forever; it uses no CPU).

What these inputs did before (issue #16): the 9x9 alias bomb passed 3 GB
and was still running at 30 s; 100k ``[`` gave ``internal error:
RecursionError``; a 50 MB comment did not finish in 30 s; ``--key-file
/dev/zero`` grew to 2.7 GB and ended in MemoryError; a FIFO key hung the
probes; ``analyze`` and ``profile validate`` called a directory "no such file".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, ROOT

AS_LIMIT = 256 * 1024 * 1024
CPU_LIMIT_S = 2
RSS_LIMIT_KB = 200 * 1024
HANG_GUARD_S = 30          # only to end a hung child; never a measured figure


# The measured process must not be forked from this (large, long-lived) pytest
# process: the kernel records a process's peak RSS from the memory image it
# execs from, and a child forked from pytest inherits pytest's, 250 MB late in a
# full run. So a small launcher forks the measured child from itself, sets the
# limits, waits for it with wait4 and writes its own child's figures to a file.
LAUNCHER = """
import json, os, resource, sys
result, as_limit, cpu_s, argv = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
pid = os.fork()
if pid == 0:
    resource.setrlimit(resource.RLIMIT_AS, (as_limit, as_limit))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))
    os.execv(sys.executable, [sys.executable, "-m", "harness", *argv])
_, status, usage = os.wait4(pid, 0)
with open(result, "w") as f:
    json.dump({"status": status, "maxrss_kb": usage.ru_maxrss}, f)
"""


def run_limited(tmp_path: Path, *argv: str) -> tuple[int, str, int]:
    """(exit code, stderr, peak RSS in KiB) of ``cutover argv`` under the limits."""
    out, err, result = tmp_path / "child.out", tmp_path / "child.err", tmp_path / "child.json"
    result.unlink(missing_ok=True)
    with open(out, "wb") as fo, open(err, "wb") as fe:
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(result), str(AS_LIMIT), str(CPU_LIMIT_S),
                                 *argv], stdin=subprocess.DEVNULL, stdout=fo, stderr=fe, cwd=ROOT,
                                start_new_session=True)
    try:
        proc.wait(timeout=HANG_GUARD_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)     # the launcher's session: it and the measured child
        proc.wait()
        pytest.fail(f"cutover {' '.join(argv)} hung (no exit within {HANG_GUARD_S} s)")
    import json
    figures = json.loads(result.read_text())
    status = figures["status"]
    text = err.read_text(errors="replace")
    if os.WIFSIGNALED(status):
        sig = signal.Signals(os.WTERMSIG(status)).name
        pytest.fail(f"cutover {' '.join(argv)} killed by {sig} "
                    f"({'CPU limit' if sig == 'SIGXCPU' else 'memory or other limit'}): {text[-500:]}")
    return os.WEXITSTATUS(status), text, figures["maxrss_kb"]


def assert_refused(tmp_path: Path, argv: list[str], path: Path | str, words: str) -> str:
    code, err, rss_kb = run_limited(tmp_path, *argv)
    assert code == 2, err
    assert rss_kb < RSS_LIMIT_KB, f"peak RSS {rss_kb / 1024:.0f} MB"
    assert str(path) in err and words in err, err
    assert "Traceback" not in err and "internal error" not in err
    return err


# ---------------------------------------------------------------- the files

@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hostile")
    files: dict[str, Path] = {}
    # 9 levels of 9 aliases: 9^9 = 387,420,489 strings once expanded
    bomb = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    bomb += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)]
    files["bomb"] = d / "bomb.yaml"
    files["bomb"].write_text("\n".join(bomb) + "\n")
    # the same spliced into a real profile (under a key the schema does not know)
    files["spliced"] = d / "spliced.yaml"
    files["spliced"].write_text((FIXTURES / "profiles" / "valid.yaml").read_text() + "x-defaults:\n"
                                + "".join(f"  {line}\n" for line in bomb))
    files["brackets"] = d / "brackets.yaml"
    files["brackets"].write_text("site: " + "[" * 100_000 + "\n")
    files["flow_maps"] = d / "flow-maps.yaml"
    files["flow_maps"].write_text("site: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n")
    files["block_maps"] = d / "block-maps.yaml"
    with open(files["block_maps"], "w") as f:
        for level in range(5000):
            f.write(" " * level + "a:\n")
    files["comment"] = d / "comment.yaml"
    with open(files["comment"], "w") as f:
        f.write("# ")
        for _ in range(50):
            f.write("x" * (1024 * 1024))
        f.write("\nsite: x\n")
    files["string20"] = d / "string.yaml"
    with open(files["string20"], "w") as f:
        f.write("site: ")
        for _ in range(20):
            f.write("x" * (1024 * 1024))
        f.write("\n")
    files["fifo"] = d / "pipe"
    os.mkfifo(files["fifo"])
    files["dir"] = d / "folder"
    files["dir"].mkdir()
    files["key644"] = d / "key644"
    files["key644"].write_text("s3cret-key\n")
    files["key644"].chmod(0o644)
    return files


@pytest.mark.parametrize("name,words", [
    ("bomb", "expands to more than 20,000 values"),
    ("spliced", "expands to more than 20,000 values"),
    ("brackets", "nested deeper than 32 levels"),
    ("flow_maps", "nested deeper than 32 levels"),
    ("block_maps", "the limit is 262,144"),       # 5k indented levels are 12 MB: refused by size
    ("comment", "is 52,428,811 bytes; the limit is 262,144"),
    ("string20", "is 20,971,527 bytes; the limit is 262,144"),
])
def test_profile_bombs_are_refused(tmp_path, hostile, name, words):
    assert_refused(tmp_path, ["profile", "validate", str(hostile[name])], hostile[name], words)


def test_alias_bomb_names_the_line(tmp_path, hostile):
    err = assert_refused(tmp_path, ["check", str(hostile["spliced"])], hostile["spliced"], "expands")
    lines = len((FIXTURES / "profiles" / "valid.yaml").read_text().splitlines())
    # refused at the first alias level that crosses 20,000 nodes: a4 (9^5 = 59,049), line 5 of the bomb
    assert f"{hostile['spliced']}:{lines + 1 + 5}:" in err, err


def test_long_string_within_the_size_limit_is_refused_by_its_field(tmp_path):
    prof = tmp_path / "site.yaml"
    prof.write_text((FIXTURES / "profiles" / "valid.yaml").read_text().replace(
        "site: Test site", "site: " + "x" * 200_000))
    assert_refused(tmp_path, ["profile", "validate", str(prof)], prof,
                   "site: too long (200,000 characters); at most 200")


@pytest.mark.parametrize("kind,words", [("/dev/zero", "is a character device"), ("fifo", "is a FIFO"),
                                        ("dir", "is a directory")])
def test_profile_that_is_not_a_file(tmp_path, hostile, kind, words):
    path = Path(kind) if kind.startswith("/") else hostile[kind]
    assert_refused(tmp_path, ["profile", "validate", str(path)], path, words)


KEY_COMMANDS = {
    "probe stream": ["probe", "stream", "127.0.0.1:9", "--duration", "1"],
    "probe bandwidth": ["probe", "bandwidth", "--reflector", "127.0.0.1:9", "--duration", "1"],
    "reflector": ["reflector", "--listen", "127.0.0.1:0"],
}


@pytest.mark.parametrize("command", sorted(KEY_COMMANDS))
@pytest.mark.parametrize("kind,words", [("/dev/zero", "is a character device"), ("fifo", "is a FIFO"),
                                        ("dir", "is a directory")])
def test_key_file_that_is_not_a_file(tmp_path, hostile, command, kind, words):
    path = Path(kind) if kind.startswith("/") else hostile[kind]
    assert_refused(tmp_path, [*KEY_COMMANDS[command], "--key-file", str(path)], path, f"key file {path}: {words}")


@pytest.mark.parametrize("kind,words", [("/dev/zero", "is a character device"), ("fifo", "is a FIFO"),
                                        ("dir", "is a directory")])
def test_key_file_of_a_profile_that_is_not_a_file(tmp_path, hostile, kind, words):
    path = Path(kind) if kind.startswith("/") else hostile[kind]
    prof = tmp_path / "site.yaml"
    prof.write_text((FIXTURES / "profiles" / "valid.yaml").read_text().replace(
        "    reflector: 203.0.113.20:862", f"    reflector: 203.0.113.20:862\n    key_file: {path}"))
    err = assert_refused(tmp_path, ["profile", "validate", str(prof)], path, words)
    assert "circuits[1].key_file" in err


@pytest.mark.parametrize("kind,words", [("/dev/zero", "is a character device"), ("fifo", "is a FIFO"),
                                        ("dir", "is a directory")])
def test_capture_that_is_not_a_file(tmp_path, hostile, kind, words):
    path = Path(kind) if kind.startswith("/") else hostile[kind]
    assert_refused(tmp_path, ["analyze", str(path)], path, f"capture {path}: {words}")


def test_key_readable_by_others_warns_and_strict_refuses(tmp_path, hostile):
    key = hostile["key644"]
    argv = ["probe", "stream", "127.0.0.1:9", "--duration", "1", "--timeout", "1", "--key-file", str(key)]
    code, err, rss_kb = run_limited(tmp_path, *argv)
    assert code == 3, err            # measured nothing (no reflector on port 9): the key was accepted
    assert f"cutover: warning: key file {key}: is accessible by group and others (mode 0644)" in err
    assert f"chmod 600 {key}" in err
    code, err, rss_kb = run_limited(tmp_path, "--strict-permissions", *argv)
    assert code == 2 and rss_kb < RSS_LIMIT_KB
    assert f"key file {key}: is accessible by group and others (mode 0644)" in err and "strict" in err
    key.chmod(0o600)
    try:
        code, err, _ = run_limited(tmp_path, "--strict-permissions", *argv)
        assert code == 3 and "warning" not in err and "key file" not in err, err
    finally:
        key.chmod(0o644)


def test_oversized_key_file(tmp_path):
    key = tmp_path / "big.key"
    key.write_bytes(b"k" * 5000)
    key.chmod(0o600)
    assert_refused(tmp_path, ["probe", "stream", "127.0.0.1:9", "--key-file", str(key)], key,
                   "is 5,000 bytes; the limit is 4,096")


def test_without_the_cli_a_loose_key_is_a_python_warning_not_a_print(tmp_path, monkeypatch, capsys):
    """probes print nothing: outside the CLI (the suite, the pytest plugin, an
    embedding program) the permission warning is a PermissionWarning through
    Python's warnings, once per file; the CLI's `cutover: warning:` line is its own."""
    from probes import inputfile
    key = tmp_path / "loose.key"
    key.write_text("secret\n")
    key.chmod(0o644)
    monkeypatch.setattr(inputfile, "_warn", inputfile._python_warning)
    monkeypatch.setattr(inputfile, "_warned", set())
    monkeypatch.setattr(inputfile, "_strict", False)
    with pytest.warns(inputfile.PermissionWarning, match=r"is accessible by group and others \(mode 0644\)"):
        assert inputfile.read_secret(key, "key file") == b"secret"
    assert capsys.readouterr().err == ""
