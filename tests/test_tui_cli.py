"""`cutover board` as a command: bad input is one line and exit 2, never a traceback."""

from __future__ import annotations

from tests.conftest import FIXTURES, run_cli


def test_missing_profile_is_bad_input():
    r = run_cli("board", "no-such-profile.yaml")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "no-such-profile.yaml" in r.stderr


def test_invalid_profile_names_file_line_and_field():
    r = run_cli("board", str(FIXTURES / "profiles" / "bad-unknown-codec.yaml"))
    assert r.returncode == 2 and "bad-unknown-codec.yaml:" in r.stderr and "Traceback" not in r.stderr


def test_bad_since_and_as_of(tmp_path):
    r = run_cli("board", "profiles/demo.yaml", "--db", str(tmp_path / "h.sqlite"), "--since", "3x")
    assert r.returncode == 2 and "--since" in r.stderr
    r = run_cli("board", "profiles/demo.yaml", "--db", str(tmp_path / "h.sqlite"), "--as-of", "yesterday")
    assert r.returncode == 2 and "--as-of" in r.stderr


def test_not_a_history_database(tmp_path):
    bad = tmp_path / "junk.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    r = run_cli("board", "profiles/demo.yaml", "--db", str(bad))
    assert r.returncode == 2 and "junk.sqlite" in r.stderr and "Traceback" not in r.stderr


def test_without_a_terminal_it_says_so(tmp_path):
    r = run_cli("board", "profiles/demo.yaml", "--db", str(tmp_path / "h.sqlite"))
    assert r.returncode == 2 and "needs a terminal" in r.stderr
