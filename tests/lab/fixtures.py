"""pytest fixtures of the lab (registered by tests/conftest.py: pytest_plugins).

``lab``: an empty :class:`tests.lab.netns.Lab` (build with ``lab.chain([...])``),
torn down after the test whatever happens; skips with the reason when the lab
cannot be built here (not root, iproute2 missing). The first use in a session
sweeps namespaces left by earlier, dead runs.
"""

from __future__ import annotations

import time

import pytest

from .netns import Lab, lab_unavailable_reason, sweep_stale

_SESSION_START = time.time()


@pytest.fixture(scope="session")
def _lab_sweep() -> None:
    if lab_unavailable_reason() is None:
        sweep_stale(before=_SESSION_START)


@pytest.fixture
def lab(_lab_sweep):
    reason = lab_unavailable_reason()
    if reason:
        pytest.skip(reason)
    the_lab = Lab()
    try:
        yield the_lab
    finally:
        the_lab.close()
