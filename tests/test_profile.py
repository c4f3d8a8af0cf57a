"""Profile validation: one invalid fixture per rule, each message checked for
file, line, field and what was expected; exit 2 and no traceback at the CLI."""

import json

import pytest

from harness.profile import ProfileError, load_profile, load_profile_text
from tests.conftest import FIXTURES, ROOT

P = FIXTURES / "profiles"

# fixture -> (line, field, words the message must contain)
CASES = {
    "bad-yaml-syntax.yaml": (5, "", "YAML syntax error"),
    "bad-unknown-key.yaml": (4, "planned.codek", "did you mean 'codec'"),
    "bad-wrong-type.yaml": (3, "planned.calls", "expected a whole number, got 'sixty'"),
    "bad-zero-calls.yaml": (3, "planned.calls", "greater than 0"),
    "bad-negative-bandwidth.yaml": (10, "circuits[0].up_mbps", "greater than 0"),
    "bad-unknown-codec.yaml": (4, "planned.codec", "unknown codec 'g999'"),
    "bad-ptime.yaml": (5, "planned.ptime_ms", "not used with ptime 25 ms"),
    "bad-hostport.yaml": (16, "circuits[1].reflector", "port 'port' is not a number"),
    "bad-duplicate-circuit.yaml": (12, "circuits[1].name", "duplicate circuit name 'old'"),
    "bad-no-new-circuit.yaml": (6, "circuits", "no circuit with role: new"),
    "bad-date.yaml": (18, "cutover.parallel_run_start", "expected a date YYYY-MM-DD"),
    "bad-duplicate-checklist.yaml": (22, "cutover.checklist[1].id", "duplicate checklist id 'porting'"),
    "bad-key-file.yaml": (17, "circuits[1].key_file", "no such file"),
    "bad-role.yaml": (13, "circuits[1].role", "'newest' is not allowed"),
    "bad-duplicate-key.yaml": (2, "site", "duplicate key"),
    "bad-empty.yaml": (None, "", "the profile is empty"),
}


def test_valid_profile_loads_with_defaults():
    p = load_profile(P / "valid.yaml")
    assert p.thresholds.one_way_delay_ms == 150
    assert p.thresholds.jitter_buffer_ms == 60
    assert p.cutover.sla_claim_hours == 24
    assert p.circuit("new").role == "new"
    assert str(p.circuit("new").reflector_hostport) == "203.0.113.20:862"


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_rule_has_a_clear_message(name):
    line, field, words = CASES[name]
    with pytest.raises(ProfileError) as exc:
        load_profile(P / name)
    problems = exc.value.problems
    assert len(problems) == 1, [str(p) for p in problems]
    problem = problems[0]
    assert problem.file.endswith(name)
    assert problem.line == line, str(problem)
    assert problem.field == field, str(problem)
    assert words in problem.message, str(problem)


def test_every_fixture_is_covered():
    on_disk = {f.name for f in P.glob("bad-*.yaml")}
    assert on_disk == set(CASES)


@pytest.mark.parametrize("name", ["bad-unknown-key.yaml", "bad-yaml-syntax.yaml", "bad-key-file.yaml"])
def test_cli_exit_2_without_traceback(cli, name):
    r = cli("profile", "validate", str(P / name))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    line, field, words = CASES[name]
    assert f"{name}:{line}" in r.stderr and words in r.stderr


def test_cli_validate_json(cli):
    r = cli("profile", "validate", str(P / "bad-zero-calls.yaml"), "--json")
    assert r.returncode == 2
    data = json.loads(r.stdout)
    assert data["valid"] is False and data["problems"][0]["field"] == "planned.calls"


def test_cli_missing_file(cli):
    r = cli("plan", "does-not-exist.yaml")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "cutover: does-not-exist.yaml: no such file" in r.stderr


def test_shipped_profiles_validate(cli):
    for name in ("demo.yaml", "small-office.yaml", "three-circuits.yaml"):
        r = cli("profile", "validate", f"profiles/{name}")
        assert r.returncode == 0, (name, r.stderr)


def test_ipv6_reflector_and_key_file(tmp_path):
    (tmp_path / "k.key").write_text("secret")
    text = (P / "valid.yaml").read_text().replace(
        "    reflector: 203.0.113.20:862",
        '    reflector: "[2001:db8::7]:862"\n    key_file: k.key')
    f = tmp_path / "site.yaml"
    f.write_text(text)
    p = load_profile(f)
    hp = p.circuit("new").reflector_hostport
    assert (hp.host, hp.port) == ("2001:db8::7", 862)
    assert p.resolve_path(p.circuit("new").key_file) == tmp_path / "k.key"


def test_typo_far_from_any_key_lists_known_keys():
    text = (P / "valid.yaml").read_text().replace("  codec: g711", "  zzzzzz: 1\n  codec: g711")
    with pytest.raises(ProfileError) as exc:
        load_profile_text(text, "x.yaml")
    assert "expected one of: calls, codec" in str(exc.value)


def test_schema_is_json_schema(cli):
    r = cli("profile", "schema")
    assert r.returncode == 0
    schema = json.loads(r.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/")
    assert "planned" in schema["properties"] and "circuits" in schema["required"]
    # the schema validates the demo profile the same way the loader does
    import jsonschema
    import yaml
    jsonschema.validate(yaml.safe_load((ROOT / "profiles" / "demo.yaml").read_text()
                                       .replace("2026-11-01", "'2026-11-01'")), schema)
    bad = {"site": "x", "planned": {"calls": 0}, "circuits": []}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_demo_profile_is_the_embedded_one():
    from harness.profile import DEMO_PROFILE
    assert (ROOT / "profiles" / "demo.yaml").read_text() == DEMO_PROFILE.read_text()


def test_every_problem_at_once(tmp_path):
    """Duplicate keys, field errors and the rules across fields in one report,
    not in stages (issue #15: 6 problems, then 3 more after fixing those)."""
    f = tmp_path / "site.yaml"
    f.write_text("site: A\n"                                   # 1
                 "site: B\n"                                   # 2 duplicate key
                 "planned:\n"                                  # 3
                 "  calls: 0\n"                                # 4 not > 0
                 "  codec: g711\n"                             # 5
                 "  ptime_ms: 25\n"                            # 6 not a G.711 ptime
                 "circuits:\n"                                 # 7
                 "  - {name: a, role: old, down_mbps: 10, up_mbps: 10, reflector: 127.0.0.1}\n"   # 8 no port
                 "  - {name: a, role: old, down_mbps: -1, up_mbps: 10}\n")                         # 9
    with pytest.raises(ProfileError) as exc:
        load_profile(f)
    got = {(p.line, p.field) for p in exc.value.problems}
    assert got == {(2, "site"), (4, "planned.calls"), (6, "planned.ptime_ms"), (8, "circuits[0].reflector"),
                   (9, "circuits[1].down_mbps"), (9, "circuits[1].name"), (7, "circuits")}, \
        [str(p) for p in exc.value.problems]
    assert [p.line for p in exc.value.problems] == sorted(p.line for p in exc.value.problems)
    msg = {p.field: p.message for p in exc.value.problems}
    assert "no port" in msg["circuits[0].reflector"] and "duplicate circuit name 'a'" in msg["circuits[1].name"]


def test_yaml_syntax_error_names_where_the_bracket_opened(tmp_path):
    f = tmp_path / "site.yaml"
    f.write_text("site: x\nplanned:\n  calls: [1, 2\n  codec: g711\ncircuits: []\n")
    with pytest.raises(ProfileError) as exc:
        load_profile(f)
    (p,) = exc.value.problems
    assert p.line == 4                                            # where the parser gave up
    assert "gave up at line 4 column 8" in p.message
    assert "flow sequence that opened at line 3 column 10" in p.message   # the unclosed '['


def test_circuit_lookup_suggests(tmp_path):
    p = load_profile(P / "valid.yaml")
    with pytest.raises(KeyError) as exc:
        p.circuit("nwe")
    assert exc.value.args[0] == "no circuit 'nwe' (did you mean 'new'?); circuits: old, new"


def test_bounded_loader_limits_are_exact():
    """One level below each limit loads; the limit refuses (the numbers docs/cli.md states)."""
    from harness import profile as prof
    ok_depth = "x: " + "[" * (prof.MAX_DEPTH - 1) + "]" * (prof.MAX_DEPTH - 1) + "\n"   # + the top mapping
    prof._parse(ok_depth, "f")
    with pytest.raises(ProfileError, match="nested deeper than 32"):
        prof._parse("x: " + "[" * prof.MAX_DEPTH + "]" * prof.MAX_DEPTH + "\n", "f")
    # a: 101 nodes; b: 1 + 100 x 101 = 10,101; the document 10,205: within 20,000. c: [*b, *b]
    # adds 1 + 2 x 10,101 = 20,203 on its own: over
    ten_k = "a: &a [" + ", ".join(["1"] * 100) + "]\nb: [" + ", ".join(["*a"] * 100) + "]\n"
    prof._parse(ten_k, "f")
    with pytest.raises(ProfileError, match="expands to more than 20,000"):
        prof._parse(ten_k.replace("b: [", "b: &b [") + "c: [*b, *b]\n", "f")


def test_anchors_and_merge_keys_still_load():
    """The bounded loader refuses bombs, not aliases: a shared circuit block works."""
    p = load_profile_text("site: S\nplanned: {calls: 4}\ncircuits:\n"
                          "  - &base {name: a, role: old, down_mbps: 10, up_mbps: 5, reflector: '192.0.2.1:862'}\n"
                          "  - <<: *base\n    name: b\n    role: new\n")
    assert [(c.name, c.role, c.up_mbps, c.reflector) for c in p.circuits] == [
        ("a", "old", 5.0, "192.0.2.1:862"), ("b", "new", 5.0, "192.0.2.1:862")]
