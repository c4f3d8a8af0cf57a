"""Runs as a real unprivileged user, or a skip with the true reason, from
wherever the checkout lives (docs/development.md, "Tests run wherever the
checkout lives")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, needs_root

NEEDS_ROOT: str = needs_root.kwargs["reason"]

NOBODY_UID = NOBODY_GID = 65534


def _first_closed_dir(path: Path) -> Path | None:
    """The first directory on the way to `path` that a user outside its owner
    and group may not enter (for the skip message; the real test is a run)."""
    for d in [*reversed(path.parents), path]:
        if d.is_dir() and not d.stat().st_mode & 0o001:
            return d
    return None


def as_nobody(argv: list[str]) -> list[str]:
    """`argv` run by user nobody with no capabilities: a real unprivileged user
    (no CAP_NET_RAW, ping_group_range applies to its gid). Skips, with the
    reason, when not root, when setpriv is missing, or when nobody cannot reach
    this checkout or its interpreter (a checkout under a 0700 directory such as
    /root: the unprivileged run needs a world-readable clone to be tested)."""
    if os.geteuid() != 0:
        pytest.skip(NEEDS_ROOT)
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) not installed")
    prefix = ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_GID}", "--clear-groups", "--inh-caps=-all"]
    cp = subprocess.run([*prefix, sys.executable, "-c", "import harness.cli, probes"], capture_output=True,
                        text=True, timeout=60, cwd="/", env=dict(os.environ, HOME="/tmp", PYTHONDONTWRITEBYTECODE="1"))
    if cp.returncode != 0:
        closed = _first_closed_dir(ROOT) or _first_closed_dir(Path(sys.executable).parent)
        where = closed or f"{ROOT} ({cp.stderr.strip().splitlines()[-1][:160] if cp.stderr.strip() else cp.returncode})"
        pytest.skip(f"checkout not readable by user nobody: {where}")
    return [*prefix, *argv]
