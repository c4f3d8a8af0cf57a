"""Site profiles: YAML loaded once, at the edge, into typed models.

Every problem is reported with the file, the line and the field, and what was
expected, e.g.::

    site.yaml:7: planned.codek: unknown key (did you mean 'codec'?)

Loading never raises anything but :class:`ProfileError`, and it is bounded
(issue #16): a profile is a regular file of at most 256 KiB (a real one is
1-5 KiB), nested at most 32 levels deep (a real one: 5), expanding to at most
20,000 YAML nodes with its aliases (a real one: a few hundred), with length
limits on every text field. The limits are checked while the YAML is
composed, before any Python object is built, so an alias bomb (9 levels of 9
aliases, 9^9 nodes), 100,000 ``[`` or a 50 MB file is refused in
milliseconds, naming file and line. Every problem found is reported at once:
duplicate keys, field errors and the rules across fields together.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from probes.names import unknown_name
from probes.addr import AddressError, parse_hostport
from probes.voice.codecs import CODECS, get_codec
from probes.inputfile import MAX_ACCOUNT_BYTES, InputFileError, check_secret, read_regular

Overhead = Literal["ip", "ethernet", "wire"]

MAX_PROFILE_BYTES = 256 * 1024
MAX_DEPTH = 32            # nested collections
MAX_NODES = 20_000        # YAML nodes after alias expansion
# text field limits (characters)
NAME_LEN, TEXT_LEN, HOST_LEN, URI_LEN, PATH_LEN = 64, 200, 255, 1024, 4096


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Planned(_Model):
    """The site's planned usage at peak."""
    calls: int = Field(gt=0, description="peak concurrent calls")
    codec: str = Field("g711", max_length=NAME_LEN, description="g711 | g729 | g722 | opus")
    ptime_ms: int = Field(20, gt=0, description="packetisation interval")
    video_calls: int = Field(0, ge=0)
    video_kbps: float = Field(1500, ge=0, description="per video call, per direction")
    other_mbps: float = Field(0, ge=0, description="non-voice traffic at peak, per direction")
    headroom_pct: float = Field(20, ge=0, le=500)
    overhead: Overhead = Field("ethernet", description="layer at which bandwidth is counted")
    vlan: bool = Field(False, description="802.1Q tag on the voice VLAN (+4 B per packet)")
    ipv6: bool = Field(False, description="calls over IPv6 (+20 B per packet)")
    srtp: bool = Field(False, description="SRTP authentication tag (+10 B per packet)")
    platforms: list[str] = Field(default_factory=list, max_length=8,
                                 description="call platforms whose published network requirements "
                                             "the circuits must meet: teams | teams-edge | zoom | webex")

    @field_validator("platforms")
    @classmethod
    def _platforms(cls, v: list[str]) -> list[str]:
        from harness.platforms import PLATFORMS
        out = []
        for name in v:
            key = name.strip().lower()
            if key not in PLATFORMS:
                raise ValueError(f"unknown platform {name!r}; expected one of {', '.join(PLATFORMS)}")
            if key not in out:
                out.append(key)
        return out

    @field_validator("codec")
    @classmethod
    def _codec(cls, v: str) -> str:
        try:
            return get_codec(v).name
        except KeyError:
            raise ValueError(unknown_name("codec", v, CODECS, lead="unknown")) from None


class Thresholds(_Model):
    """Pass/fail limits. Defaults: ITU-T G.114 and common carrier practice."""
    one_way_delay_ms: float = Field(150, gt=0)
    jitter_ms: float = Field(30, gt=0)
    loss_pct: float = Field(1.0, ge=0, le=100)
    mos_min: float = Field(4.0, ge=1, le=4.5)
    jitter_buffer_ms: float = Field(60, ge=0)
    post_dial_delay_ms: float = Field(5000, gt=0, description="test call: INVITE to ringing")


class Contract(_Model):
    """The circuit's support contract: availability and the response/resolution
    hours per fault class (the class names are the user's: P1, critical, ...)."""
    availability_pct: float | None = Field(None, gt=0, le=100, description="contracted availability")
    response_hours: dict[str, float] = Field(default_factory=dict, max_length=16,
                                             description="class -> hours to the first response")
    resolve_hours: dict[str, float] = Field(default_factory=dict, max_length=16,
                                            description="class -> hours to resolution")
    verify_hours: float = Field(4, gt=0, le=24 * 14,
                                description="hours of scheduled runs that must pass after a fix")

    @field_validator("response_hours", "resolve_hours")
    @classmethod
    def _hours(cls, v: dict[str, float]) -> dict[str, float]:
        for name, hours in v.items():
            if not name or len(name) > 32:
                raise ValueError(f"fault class {name!r}: use 1 to 32 characters")
            if not hours > 0:
                raise ValueError(f"fault class {name}: hours must be > 0, got {hours}")
        return v

    def terms(self):
        from harness.contract import Terms
        return Terms(self.availability_pct, dict(self.response_hours), dict(self.resolve_hours))

    def classes(self) -> list[str]:
        return list(dict.fromkeys([*self.response_hours, *self.resolve_hours]))


class Circuit(_Model):
    name: str = Field(min_length=1, max_length=NAME_LEN)
    role: Literal["old", "new", "backup"]
    provider: str = Field("", max_length=TEXT_LEN)
    down_mbps: float = Field(gt=0, description="what the contract promises downstream")
    up_mbps: float = Field(gt=0, description="what the contract promises upstream")
    reflector: str | None = Field(None, max_length=HOST_LEN + 8,
                                  description="HOST:PORT of a STAMP reflector at the far end")
    ping: str | None = Field(None, max_length=HOST_LEN,
                             description="host for the latency probe (default: reflector host)")
    sip: str | None = Field(None, max_length=URI_LEN, description="SIP URI of the provider's SBC")
    source: str | None = Field(None, max_length=64, description="source address that leaves through this circuit")
    interface: str | None = Field(None, max_length=15,  # IFNAMSIZ - 1
                                  description="interface that leaves through this circuit")
    key_file: str | None = Field(None, max_length=PATH_LEN,
                                 description="STAMP pre-shared key (relative to the profile)")
    sip_account: str | None = Field(None, max_length=PATH_LEN,
                                    description="account YAML for test calls (relative to the profile)")
    test_call: str | None = Field(None, max_length=URI_LEN,
                                  description="URI or number the call step dials (echo, or answer_account)")
    answer_account: str | None = Field(None, max_length=PATH_LEN,
                                       description="second account cutover answers with (relative)")
    ported_numbers: list[str] = Field(default_factory=list, max_length=1000,
                                      description="numbers that must ring on answer_account")
    contract: Contract = Field(default_factory=Contract, description="the provider's support contract")

    @field_validator("reflector")
    @classmethod
    def _reflector(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(parse_hostport(str(v), default_port=None))
        except AddressError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ValueError(f"{v!r} is not an IP address; expected e.g. 192.0.2.10") from None

    @field_validator("sip")
    @classmethod
    def _sip(cls, v: str | None) -> str | None:
        if v is not None and not (v.startswith("sip:") or v.startswith("sips:")):
            raise ValueError(f"{v!r} is not a SIP URI; expected sip:host[:port][;transport=udp|tcp|tls] or sips:host")
        return v

    @property
    def reflector_hostport(self):
        return parse_hostport(self.reflector) if self.reflector else None

    @property
    def ping_target(self) -> str | None:
        """Host for latency and path probes: ``ping:``, else the reflector's host."""
        if self.ping:
            return self.ping
        hp = self.reflector_hostport
        return hp.host if hp else None


class ChecklistItem(_Model):
    id: str = Field(min_length=1, max_length=NAME_LEN, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str = Field(min_length=1, max_length=TEXT_LEN * 5)


class Cutover(_Model):
    parallel_run_start: dt.date | None = None
    min_parallel_days: int = Field(14, ge=0)
    termination_notice_days: int = Field(30, ge=0)
    overlap_days: int = Field(30, ge=0)
    pass_rate_pct: float = Field(95, ge=0, le=100)
    sla_claim_hours: float = Field(24, gt=0)
    # a day counts toward min_parallel_days when at least this many of its hours
    # hold a full measurement (docs/judgement.md, "Evidence coverage")
    coverage_min_hours_per_day: int = Field(18, ge=1, le=24)
    checklist: list[ChecklistItem] = Field(default_factory=list)
    # longest silence a failover drill may cause (docs/failover.md: at 1 s a lost word is talked
    # over; from ~2 s callers ask "are you there?" and hang up)
    failover_max_gap_ms: float = Field(1000, gt=0)


class Profile(_Model):
    site: str = Field(min_length=1, max_length=TEXT_LEN)
    planned: Planned
    thresholds: Thresholds = Field(default_factory=Thresholds)
    circuits: list[Circuit] = Field(min_length=1)
    cutover: Cutover = Field(default_factory=Cutover)
    db: str | None = Field(None, max_length=PATH_LEN,
                           description="history database: an SQLite path (relative to the profile) or a "
                                       "postgresql://user@host/db URL (docs/fleet.md)")
    checks: str | None = Field(None, max_length=PATH_LEN,
                               description="folder of pytest site checks (relative to the profile)")

    # Set by the loader, not part of the YAML.
    _path: Path | None = None

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path:
        return self._path.parent if self._path else Path.cwd()

    @overload
    def resolve_path(self, value: str) -> Path: ...
    @overload
    def resolve_path(self, value: None) -> None: ...
    @overload
    def resolve_path(self, value: str | None) -> Path | None: ...

    def resolve_path(self, value: str | None) -> Path | None:
        """A path from the profile, relative to the profile's folder."""
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else self.base_dir / p

    def circuit(self, name: str) -> Circuit:
        for c in self.circuits:
            if c.name == name:
                return c
        raise KeyError(unknown_name("circuit", name, [c.name for c in self.circuits]))

    def circuits_by_role(self, role: str) -> list[Circuit]:
        return [c for c in self.circuits if c.role == role]


# ---------------------------------------------------------------- errors

@dataclass
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class ProfileError(Exception):
    """One or more problems in a profile; str() gives one line per problem."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _field_name(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


# ---------------------------------------------------------------- YAML with lines

class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps timestamps as text, so pydantic parses dates and a
    bad date (2026-13-45) becomes a field error instead of a YAML crash; and
    that bounds what a hostile file can cost while it is composed (depth,
    nodes after alias expansion), before the constructor builds anything."""

    def __init__(self, stream) -> None:
        super().__init__(stream)
        self._depth = 0
        self._weight: dict[int, int] = {}   # id(node) -> nodes it stands for, aliases expanded

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._weight:
                raise _LimitError(event.start_mark, f"alias *{event.anchor} refers to a node that "
                                                    "contains it (a cycle)")
            return super().compose_node(parent, index)
        event = self.peek_event()
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise _LimitError(event.start_mark, f"nested deeper than {MAX_DEPTH} levels "
                                                "(a profile needs about 5); refused")
        node = super().compose_node(parent, index)
        assert node is not None    # PyYAML's Composer returns a node or raises; its stubs say Node | None
        self._depth -= 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        weight = 1 + sum(self._weight[id(c)] for c in children)
        if weight > MAX_NODES:
            raise _LimitError(node.start_mark, f"expands to more than {MAX_NODES:,} values "
                                               "(aliases repeating aliases?); refused")
        self._weight[id(node)] = weight
        return node


# ignore: types-PyYAML wants a function of a Loader; SafeConstructor's method (self: SafeConstructor) is one
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_str)  # type: ignore[type-var]


class _LimitError(yaml.YAMLError):
    def __init__(self, mark, message: str) -> None:
        super().__init__(message)
        self.mark, self.message = mark, message


def _parse(text: str, file: str) -> tuple[dict, list, Any]:
    """(line of every key path, duplicate-key problems, Python data), or
    ProfileError naming the line. Lines are taken before construction, which
    rewrites merge keys (``<<: *base``) in the node tree."""
    if len(text) > MAX_PROFILE_BYTES:
        raise ProfileError([Problem(file, None, "", f"is {len(text):,} characters; the limit is "
                                                    f"{MAX_PROFILE_BYTES:,} (a profile is a few KiB)")])
    loader = _Loader(text)
    lines: dict = {}
    problems: list[Problem] = []
    try:
        node = loader.get_single_node()
        if node is not None:
            _line_map(node, (), lines, problems, file)
        data = loader.construct_document(node) if node is not None else None
    except _LimitError as exc:
        raise ProfileError([Problem(file, exc.mark.line + 1, "", exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        raise ProfileError([_syntax_problem(exc, file)]) from None
    except yaml.YAMLError as exc:
        raise ProfileError([Problem(file, None, "", f"YAML syntax error: {exc}")]) from None
    finally:
        loader.dispose()
    return lines, problems, data


def _syntax_problem(exc: yaml.MarkedYAMLError, file: str) -> Problem:
    """Where the parser gave up (the line), and where the construct it was in
    opened ("while parsing a flow sequence" at the unclosed '[')."""
    gave_up, opened = exc.problem_mark, exc.context_mark
    mark = gave_up or opened
    what = exc.problem or "not valid YAML"
    if gave_up and opened and (opened.line, opened.column) != (gave_up.line, gave_up.column):
        context = (exc.context or "in a construct").removeprefix("while ")
        what += (f"; gave up at line {gave_up.line + 1} column {gave_up.column + 1}, "
                 f"{context} that opened at line {opened.line + 1} column {opened.column + 1}")
    return Problem(file, mark.line + 1 if mark else None, "", f"YAML syntax error: {what}")


def _line_map(node: yaml.Node, path: tuple, lines: dict, problems: list, file: str) -> None:
    """Record the 1-based line of every key/item path; flag duplicate keys."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                problems.append(Problem(file, key_node.start_mark.line + 1,
                                        _field_name(path + (key,)), "duplicate key"))
            seen.add(key)
            lines[path + (key,)] = key_node.start_mark.line + 1
            _line_map(value_node, path + (key,), lines, problems, file)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[path + (i,)] = item.start_mark.line + 1
            _line_map(item, path + (i,), lines, problems, file)


def _line_for(lines: dict, loc: tuple) -> int | None:
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


_TYPE_WORDS = {
    "int_type": "a whole number", "int_parsing": "a whole number", "int_from_float": "a whole number",
    "float_type": "a number", "float_parsing": "a number", "bool_type": "true or false",
    "bool_parsing": "true or false", "string_type": "text", "list_type": "a list",
    "dict_type": "a mapping (key: value lines)", "model_type": "a mapping (key: value lines)",
    "date_type": "a date YYYY-MM-DD", "date_parsing": "a date YYYY-MM-DD",
    "date_from_datetime_parsing": "a date YYYY-MM-DD", "date_from_datetime_inexact": "a date YYYY-MM-DD",
}


def _model_for(loc: tuple) -> type[BaseModel] | None:
    """The model class that owns the last key of ``loc`` (for did-you-mean)."""
    model: Any = Profile
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        ann = field.annotation
        args = getattr(ann, "__args__", None)
        inner = args[0] if args else ann
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
        else:
            return None
    return model


def _explain(err: ErrorDetails) -> str:
    etype, loc, given = err["type"], err["loc"], err["input"]
    if etype == "extra_forbidden":
        model = _model_for(tuple(loc))
        hint = ""
        if model is not None:
            close = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1, cutoff=0.6)
            known = ", ".join(model.model_fields)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (expected one of: {known})"
        return f"unknown key{hint}"
    if etype == "missing":
        return "required field is missing"
    if etype in _TYPE_WORDS:
        return f"expected {_TYPE_WORDS[etype]}, got {given!r}"
    if etype == "literal_error":
        return f"{given!r} is not allowed; expected {err['ctx']['expected']}"
    if etype in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        ctx = err.get("ctx", {})
        bound = next(iter(ctx.values()), "?")
        word = {"greater_than": "greater than", "greater_than_equal": "at least",
                "less_than": "less than", "less_than_equal": "at most"}[etype]
        return f"got {given!r}; expected a value {word} {bound}"
    if etype == "too_short":
        return "must not be empty"
    if etype == "string_too_long":
        return f"too long ({len(given):,} characters); at most {err['ctx']['max_length']}"
    if etype == "string_pattern_mismatch":
        return f"{given!r} is not a valid id; use letters, digits, '-', '_' or '.'"
    if etype == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    return str(err["msg"])


def _semantic_checks(data: dict, file: str, lines: dict, base_dir: Path) -> list[Problem]:
    """Rules that span fields; each names the field to fix. They read the raw
    data, so they run even when some fields failed validation and every
    problem is reported at once; a value of the wrong type is left to the
    field errors."""
    out: list[Problem] = []

    def add(loc: tuple, msg: str) -> None:
        out.append(Problem(file, _line_for(lines, loc), _field_name(loc), msg))

    def items(value) -> list[tuple[int, dict]]:
        return [(i, x) for i, x in enumerate(value) if isinstance(x, dict)] if isinstance(value, list) else []

    planned = raw if isinstance(raw := data.get("planned"), dict) else {}
    try:
        codec = get_codec(str(planned.get("codec", "g711")))
    except KeyError:
        codec = None
    ptime = planned.get("ptime_ms", 20)
    if codec is not None and isinstance(ptime, int) and ptime > 0 and ptime not in codec.ptimes_ms:
        add(("planned", "ptime_ms"), f"{codec.name} is not used with ptime {ptime} ms; "
            f"expected one of {', '.join(map(str, codec.ptimes_ms))}")
    circuits = items(data.get("circuits"))
    seen: dict[str, int] = {}
    for i, c in circuits:
        name = c.get("name")
        if isinstance(name, str):
            if name in seen:
                add(("circuits", i, "name"), f"duplicate circuit name {name!r} (also circuits[{seen[name]}])")
            seen.setdefault(name, i)
        key_file = c.get("key_file")
        if isinstance(key_file, str) and key_file and len(key_file) <= PATH_LEN:
            kp = Path(key_file).expanduser()
            kp = kp if kp.is_absolute() else base_dir / kp
            try:
                check_secret(kp)
            except InputFileError as exc:
                add(("circuits", i, "key_file"), f"{kp}: {exc.problem}")
        for key in ("sip_account", "answer_account"):
            af = c.get(key)
            if isinstance(af, str) and af and len(af) <= PATH_LEN:
                ap = Path(af).expanduser()
                ap = ap if ap.is_absolute() else base_dir / ap
                try:
                    check_secret(ap, "account file", MAX_ACCOUNT_BYTES)
                except InputFileError as exc:
                    add(("circuits", i, key), f"{ap}: {exc.problem}")
        if (c.get("test_call") or c.get("ported_numbers")) and not c.get("sip_account"):
            add(("circuits", i, "sip_account"), "test_call/ported_numbers need sip_account (the caller)")
        if c.get("ported_numbers") and not c.get("answer_account"):
            add(("circuits", i, "answer_account"), "ported_numbers need answer_account (registered on the new trunk)")
    roles = [c.get("role") for _, c in circuits]
    if circuits and all(r in ("old", "new", "backup") for r in roles) and "new" not in roles:
        add(("circuits",), "no circuit with role: new; the profile must describe the new service")
    cutover = raw if isinstance(raw := data.get("cutover"), dict) else {}
    ids: dict[str, int] = {}
    for i, item in items(cutover.get("checklist")):
        item_id = item.get("id")
        if isinstance(item_id, str):
            if item_id in ids:
                add(("cutover", "checklist", i, "id"), f"duplicate checklist id {item_id!r}")
            ids.setdefault(item_id, i)
    return out


def load_profile_text(text: str, file: str = "<profile>", path: Path | None = None) -> Profile:
    lines, problems, data = _parse(text, file)
    if data is None:
        raise ProfileError([Problem(file, None, "", "the profile is empty; expected site:, planned:, circuits:")])
    if not isinstance(data, dict):
        raise ProfileError([Problem(file, 1, "", "expected a mapping at the top (site:, planned:, circuits:)")])
    profile = None
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        problems += [Problem(file, _line_for(lines, tuple(e["loc"])), _field_name(tuple(e["loc"])), _explain(e))
                     for e in exc.errors()]
    problems += _semantic_checks(data, file, lines, path.parent if path else Path.cwd())
    if problems:
        raise ProfileError(sorted(problems, key=lambda pr: (pr.line or 0, pr.field)))
    assert profile is not None
    profile._path = path
    return profile


def load_profile(path: str | Path) -> Profile:
    """Load and validate a profile file. Raises ProfileError only."""
    p = Path(path)
    try:
        raw = read_regular(p, "profile", MAX_PROFILE_BYTES)
    except InputFileError as exc:
        raise ProfileError([Problem(str(p), None, "", exc.problem)]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError([Problem(str(p), None, "", f"not UTF-8 text (byte {exc.start})")]) from None
    return load_profile_text(text, str(p), p.resolve())


DEMO_PROFILE = Path(__file__).parent / "data" / "demo.yaml"


def json_schema() -> dict:
    schema = Profile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cutover site profile"
    return schema
