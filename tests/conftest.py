"""Shared test helpers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
pytest_plugins = ["tests.lab.fixtures"]  # the `lab` namespace fixture (tests/lab/README.md)


def run_cli(*args: str, timeout: float = 120, env: dict | None = None,
            cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """Run the real console entry point in a subprocess (as a user would)."""
    full_env = dict(os.environ)
    full_env.pop("CUTOVER_DEBUG", None)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd or ROOT)


@pytest.fixture
def cli():
    return run_cli


def is_root() -> bool:
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces, raw sockets)")


def admin_tool_reason(tool: str) -> str | None:
    """Why a root-only tool (iptables, ip6tables) cannot be used, None if it can:
    "needs root" first, since a non-root PATH lacks /usr/sbin and which() alone
    would wrongly say the tool is not installed."""
    if os.geteuid() != 0:
        return f"needs root ({tool} rules in network namespaces)"
    if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
        return f"{tool} not installed (scripts/sysdeps.sh)"
    return None


# ---------------------------------------------------------------- the store on both engines

@pytest.fixture(scope="session")
def pg_server():
    """One real PostgreSQL server for the session (tests/pgserver.py); skips
    with the reason where PostgreSQL cannot be run."""
    from tests import pgserver
    srv, reason = pgserver.start_or_reason()
    if srv is None:
        pytest.skip(reason)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def pg_url(pg_server):
    """A fresh, empty PostgreSQL database (URL over the server's private socket)."""
    return pg_server.url(pg_server.new_database())


@pytest.fixture(params=["sqlite", "postgresql"])
def db_location(request, tmp_path):
    """The same store contract on both engines: an SQLite path or a fresh PostgreSQL URL."""
    if request.param == "sqlite":
        return str(tmp_path / "h.sqlite")
    return request.getfixturevalue("pg_url")
