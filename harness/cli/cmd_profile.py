"""`cutover profile validate|schema`."""

from __future__ import annotations

import json

import click

from harness.cli.common import EXIT_BAD_INPUT, emit_json, json_option, out, print_problems
from harness.profile import ProfileError, json_schema, load_profile


@click.group("profile", help="Validate a site profile, or print its JSON Schema for editors.")
def command() -> None:
    pass


@command.command("validate", help="""Validate a site profile; every problem names file, line and field.

All problems are reported at once. Limits (docs/cli.md): 256 KiB, 32 levels
of nesting, 20,000 YAML nodes once aliases are expanded; key files must be
regular files of at most 4 KiB, private to their owner (a warning; an error
with `cutover --strict-permissions`).

\b
Example:
  cutover profile validate profiles/demo.yaml""")
@click.argument("profile", metavar="PROFILE")
@json_option
def validate(profile: str, as_json: bool) -> None:
    try:
        p = load_profile(profile)
    except ProfileError as exc:
        if as_json:
            emit_json({"valid": False, "file": profile,
                       "problems": [{"line": pr.line, "field": pr.field, "message": pr.message}
                                    for pr in exc.problems]})
        print_problems(exc.problems)
        raise SystemExit(EXIT_BAD_INPUT) from None
    if as_json:
        emit_json({"valid": True, "file": profile, "site": p.site,
                   "circuits": [c.name for c in p.circuits]})
    else:
        roles = ", ".join(f"{c.name} ({c.role})" for c in p.circuits)
        out(f"{profile}: valid — site {p.site!r}, circuits: {roles}")


@command.command("schema", help="""Print the profile's JSON Schema (for editor completion and validation).

\b
Example:
  cutover profile schema > cutover-profile.schema.json""")
def schema() -> None:
    click.echo(json.dumps(json_schema(), indent=2))
