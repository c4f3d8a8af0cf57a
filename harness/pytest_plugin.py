"""pytest plugin for site checks (issue #9). Registered via the pytest11 entry
point, so it must import cheaply and do nothing unless its options are used."""

from __future__ import annotations


def pytest_addoption(parser):
    group = parser.getgroup("cutover", "cutover site checks")
    group.addoption("--cutover-profile", default=None, metavar="PROFILE",
                    help="site profile for cutover site checks")
    group.addoption("--cutover-circuit", default=None, metavar="NAME",
                    help="run site checks on this circuit only")
    group.addoption("--cutover-db", default=None, metavar="PATH",
                    help="history database for the `history` fixture")
