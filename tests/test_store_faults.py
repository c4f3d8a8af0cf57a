"""Resource faults say what they are (issue #16): a history database on a real full
file system (a tmpfs mounted for the test), on a read-only one, and locked beyond the
busy timeout. `cutover check` keeps the run's results in a fallback file, prints its
path and exits 74 with the cause in words."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.store import Store, StoreWriteError
from tests.conftest import run_cli
from tests.harness_procs import ReflectorProc, demo_profile

needs_mount = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts a small tmpfs)")


@contextmanager
def small_tmpfs(where: Path, size: str = "1m"):
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(folder: Path) -> None:
    """Write zeros until the file system says ENOSPC (bounded by the tmpfs size)."""
    with open(folder / "filler", "wb", buffering=0) as fh:
        chunk = bytes(4096)
        for _ in range(100_000):
            try:
                fh.write(chunk)
            except OSError as exc:
                assert exc.errno == 28      # ENOSPC
                return
    raise AssertionError("the tmpfs never filled")


def _write_fault(db: Path) -> StoreWriteError:
    """The StoreWriteError of opening ``db`` and storing a run (either step may meet it)."""
    with pytest.raises(StoreWriteError) as info:
        store = Store(db)
        try:
            store.finish_run(store.begin_run("Site", {"site": "Site"}, "test"), "GO")
        finally:
            store.close()
    return info.value


@needs_mount
def test_store_write_on_full_and_read_only_filesystem(tmp_path):
    with small_tmpfs(tmp_path / "mnt") as mnt:
        db = mnt / "h.sqlite"
        Store(db).close()                  # created (schema) while there is room
        held = Store(db)                   # a long-lived connection (the scheduler, the board)
        fill(mnt)
        with pytest.raises(StoreWriteError) as info:   # SQLITE_FULL from the WAL write
            held.finish_run(held.begin_run("Site", {"site": "Site"}, "test"), "GO")
        assert info.value.cause == "disk full" and str(db) in str(info.value)
        assert "cannot rollback" not in str(info.value)
        held.close()
        exc = _write_fault(db)             # a fresh open on the full disk: SQLite says "I/O error"
        assert exc.cause == "disk full", exc
        os.unlink(mnt / "filler")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        exc = _write_fault(db)
        assert exc.cause.startswith("read-only"), exc


def test_store_locked_beyond_the_busy_timeout(tmp_path):
    db = tmp_path / "h.sqlite"
    Store(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")      # another process holds the write lock
    try:
        store = Store(db, busy_timeout_s=0.2)
        with pytest.raises(StoreWriteError) as info:
            store.finish_run(store.begin_run("Site", {"site": "Site"}, "test"), "GO")
        assert info.value.cause.startswith("locked")
        store.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@pytest.fixture(scope="module")
def reflector(tmp_path_factory):
    r = ReflectorProc(tmp_path_factory.mktemp("refl") / "reflector.log")
    yield r
    r.stop()


@needs_mount
@pytest.mark.parametrize("as_json", [True, False])
def test_check_onto_a_full_disk_keeps_the_results(reflector, tmp_path, as_json):
    """Before: exit 3, "internal error: OperationalError: cannot rollback - no transaction
    is active", the measurement lost."""
    prof = demo_profile(tmp_path / "demo.yaml", reflector.port, reflector.port)
    rep = tmp_path / "rep"
    with small_tmpfs(tmp_path / "mnt") as mnt:
        db = mnt / "h.sqlite"
        Store(db).close()
        fill(mnt)
        args = ["check", str(prof), "--quick", "--step", "stream", "--db", str(db), "--report-dir", str(rep)]
        cp = run_cli(*args, *(["--json"] if as_json else []), timeout=180)
    assert cp.returncode == 74, cp.stderr
    assert "disk full" in cp.stderr and "internal error" not in cp.stderr and "Traceback" not in cp.stderr
    saved = Path(cp.stderr.split("the run's results are saved in ")[1].split()[0])
    assert saved.parent == rep and saved.exists()          # the first writable place after the database's
    doc = json.loads(saved.read_text())
    assert set(doc["circuits"]) == {"old", "new"} and doc["database"] == str(db)
    assert "disk full" in doc["store_error"]
    mos = next(c for c in doc["circuits"]["new"]["checks"] if c["id"] == "stream.mos")
    assert 4.0 < mos["measured"] < 4.5          # a real measurement, not a placeholder
    assert doc["raw"]["new"]                   # the probes' raw results too
    if as_json:
        out = json.loads(cp.stdout)
        assert out["not_stored"]["cause"] == "disk full"
        assert out["not_stored"]["results_file"] == str(saved)
        assert out["circuits"] == doc["circuits"]
    else:
        assert "Verdict:" in cp.stdout


@needs_mount
def test_signoff_onto_a_full_disk_says_so(tmp_path):
    """Any command's write (here a sign-off) onto a full disk: exit 74 and "disk full",
    not an internal error."""
    prof = demo_profile(tmp_path / "demo.yaml", 9, 9)
    with small_tmpfs(tmp_path / "mnt") as mnt:
        db = mnt / "h.sqlite"
        held = Store(db)                  # open while there is room (the WAL files exist)
        fill(mnt)
        cp = run_cli("signoff", str(prof), "voice-vlan", "--by", "K. Nurse", "--db", str(db))
        held.close()
    assert cp.returncode == 74, cp.stderr
    assert "disk full" in cp.stderr and "nothing was written" in cp.stderr and "internal error" not in cp.stderr
