"""pytest plugin for site checks: readiness checks written as plain pytest tests.

Registered through the ``pytest11`` entry point, so it is active in any pytest
run once cutover is installed, and does nothing until ``--cutover-profile`` is
given::

    pytest --cutover-profile site.yaml [--cutover-circuit new] [--cutover-db PATH] checks/

Fixtures:
  ``site``        the validated :class:`harness.profile.Profile`
  ``circuit``     one circuit; tests using it are parametrized over the profile's
                  circuits (or the one chosen with --cutover-circuit, or the
                  ones named by ``@pytest.mark.cutover(circuit=...)``)
  ``probe``       ``probe("stream", duration_s=5)`` runs a probe bound to the
                  circuit's reflector, source/interface, key and codec and
                  returns its typed result
  ``thresholds``  the profile's thresholds
  ``history``     read access to stored runs (:class:`harness.store.Store`)

Markers: ``@pytest.mark.cutover(circuit="new")`` (or ``circuits=[...]``,
``role="new"``) restricts a check to circuits; ``@pytest.mark.slow`` marks a long
probe (``cutover check --quick`` deselects them).
"""

from __future__ import annotations

import pytest

_OPT_PROFILE = "--cutover-profile"


def pytest_addoption(parser):
    group = parser.getgroup("cutover", "cutover site checks")
    group.addoption(_OPT_PROFILE, default=None, metavar="PROFILE",
                    help="site profile for cutover site checks")
    group.addoption("--cutover-circuit", default=None, metavar="NAME",
                    help="run site checks on this circuit only")
    group.addoption("--cutover-db", default=None, metavar="PATH",
                    help="history database for the `history` fixture")


def pytest_configure(config):
    config.addinivalue_line("markers", "cutover(circuit=None, circuits=None, role=None): "
                                       "run this site check only on the named circuit(s) or role")
    config.addinivalue_line("markers", "slow: a long probe; deselected by `cutover check --quick`")
    _profile(config)   # a bad profile or circuit is a usage error (exit 4), reported before collection


def _profile(config):
    cached = getattr(config, "_cutover_profile", None)
    if cached is not None:
        return cached
    path = config.getoption(_OPT_PROFILE)
    if not path:
        return None
    from harness.profile import ProfileError, load_profile
    try:
        profile = load_profile(path)
    except ProfileError as exc:
        raise pytest.UsageError(f"cutover: bad profile:\n{exc}") from None
    chosen = config.getoption("--cutover-circuit")
    if chosen and chosen not in {c.name for c in profile.circuits}:
        raise pytest.UsageError(f"cutover: no circuit {chosen!r} in {path}; circuits: "
                                + ", ".join(c.name for c in profile.circuits))
    config._cutover_profile = profile
    return profile


def _selected_circuits(config, marker):
    profile = _profile(config)
    circuits = list(profile.circuits)
    chosen = config.getoption("--cutover-circuit")
    if chosen:
        circuits = [c for c in circuits if c.name == chosen]
    if marker is not None:
        names = marker.kwargs.get("circuits") or ([marker.kwargs["circuit"]] if marker.kwargs.get("circuit")
                                                   else list(marker.args))
        role = marker.kwargs.get("role")
        if names:
            circuits = [c for c in circuits if c.name in names]
        if role:
            circuits = [c for c in circuits if c.role == role]
    return circuits


def pytest_generate_tests(metafunc):
    if "circuit" not in metafunc.fixturenames or _profile(metafunc.config) is None:
        return
    circuits = _selected_circuits(metafunc.config, metafunc.definition.get_closest_marker("cutover"))
    if not circuits:
        # nothing to run it on: one skipped instance saying why, rather than a silent vanish
        metafunc.parametrize("circuit", [pytest.param(None, marks=pytest.mark.skip(
            reason="no circuit of the profile matches this check's cutover marker / --cutover-circuit"))],
            ids=["no-circuit"])
        return
    metafunc.parametrize("circuit", circuits, ids=[c.name for c in circuits])


def _need_profile(request):
    profile = _profile(request.config)
    if profile is None:
        pytest.skip("site check needs --cutover-profile PROFILE")
    return profile


@pytest.fixture(scope="session")
def site(request):
    """The validated site profile."""
    return _need_profile(request)


@pytest.fixture
def circuit(request):
    """Replaced by parametrization when --cutover-profile is given."""
    _need_profile(request)
    pytest.skip("no circuit selected")


@pytest.fixture
def thresholds(site):
    return site.thresholds


@pytest.fixture
def probe(site, circuit):
    """``probe(name, **config_overrides)`` -> the probe's typed result, bound to the circuit."""
    from harness.binding import bind, probe_module

    def run(name: str, **overrides):
        config = bind(name, site, circuit, **overrides)
        return probe_module(name).run(config)
    return run


@pytest.fixture(scope="session")
def history(request, site):
    """Read access to the stored runs of this site."""
    from harness.store import Store, default_path
    path = default_path(site, request.config.getoption("--cutover-db"))
    if not path.exists():
        pytest.skip(f"no history database at {path}")
    store = Store(path)
    yield store
    store.close()


def _loopback_reflectors(profile, circuits) -> set[tuple[str, int]]:
    import ipaddress
    out = set()
    for c in circuits:
        hp = c.reflector_hostport
        if hp is None:
            continue
        try:
            if ipaddress.ip_address(hp.host).is_loopback:
                out.add((hp.host, hp.port))
        except ValueError:
            continue
    return out


def _port_free(host: str, port: int) -> bool:
    import socket
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="session", autouse=True)
def _cutover_local_reflector(request):
    """Convenience for loopback profiles (the demo): when a circuit's reflector
    is a loopback address and nothing listens there, start `cutover reflector`
    for the session and stop it (by its PID) afterwards. Never for other addresses."""
    profile = _profile(request.config)
    if profile is None:
        yield
        return
    import subprocess
    import sys
    import time
    started = []
    for host, port in sorted(_loopback_reflectors(profile, _selected_circuits(request.config, None))):
        if not _port_free(host, port):
            continue
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        proc = subprocess.Popen([sys.executable, "-m", "harness", "reflector", "--listen", listen],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(proc)
        deadline = time.monotonic() + 10
        while _port_free(host, port) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
    try:
        yield
    finally:
        for proc in started:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
