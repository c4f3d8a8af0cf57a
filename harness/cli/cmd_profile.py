"""`cutover profile validate|schema`."""

from __future__ import annotations

import json

import click

from harness.cli.common import EXIT_BAD_INPUT, emit_json, err, json_option, out
from harness.profile import ProfileError, json_schema, load_profile


@click.group("profile", help="Validate a site profile, or print its JSON Schema for editors.")
def command() -> None:
    pass


@command.command("validate", help="""Validate a site profile; every problem names file, line and field.

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
        for problem in exc.problems:
            err(str(problem))
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
