"""The CLI contract of docs/contract.md §1: every command exists under its name and
its --help teaches with an example."""

import pytest
from click.testing import CliRunner

from harness.cli import cli

COMMANDS = [
    ["reflector"], ["probe", "latency"], ["probe", "stream"], ["probe", "bandwidth"], ["probe", "capacity"],
    ["probe", "sip"], ["probe", "path"], ["probe", "call"], ["analyze"], ["plan"], ["profile", "validate"],
    ["profile", "schema"],
    ["check"], ["schedule"], ["report"], ["gate"], ["board"], ["signoff"], ["exporter"], ["demo"],
    ["fleet"], ["db", "migrate"], ["db", "import"],
]


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_has_an_example(argv):
    r = CliRunner().invoke(cli, [*argv, "--help"])
    assert r.exit_code == 0, r.output
    assert "Example" in r.output and f"cutover {' '.join(argv)}" in r.output


@pytest.mark.parametrize("argv", [c for c in COMMANDS if c[0] in ("probe", "analyze", "plan", "check",
                                                                  "report", "gate", "fleet")],
                         ids=lambda a: " ".join(a))
def test_measuring_and_deciding_commands_take_json(argv):
    r = CliRunner().invoke(cli, [*argv, "--help"])
    assert "--json" in r.output


def test_unknown_command_is_usage_error():
    r = CliRunner().invoke(cli, ["frobnicate"])
    assert r.exit_code == 2
