"""Site profiles: YAML loaded once, at the edge, into typed models.

Every problem is reported with the file, the line and the field, and what was
expected, e.g.::

    site.yaml:7: planned.codek: unknown key (did you mean 'codec'?)

Loading never raises anything but :class:`ProfileError`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from probes.addr import AddressError, parse_hostport
from probes.codecs import CODECS, get_codec

Overhead = Literal["ip", "ethernet", "wire"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class Planned(_Model):
    """The site's planned usage at peak."""
    calls: int = Field(gt=0, description="peak concurrent calls")
    codec: str = Field("g711", description="g711 | g729 | g722 | opus")
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
            raise ValueError(f"unknown codec {v!r}; expected one of {', '.join(CODECS)}") from None


class Thresholds(_Model):
    """Pass/fail limits. Defaults: ITU-T G.114 and common carrier practice."""
    one_way_delay_ms: float = Field(150, gt=0)
    jitter_ms: float = Field(30, gt=0)
    loss_pct: float = Field(1.0, ge=0, le=100)
    mos_min: float = Field(4.0, ge=1, le=4.5)
    jitter_buffer_ms: float = Field(60, ge=0)


class Contract(_Model):
    """The circuit's support contract: availability and the response/resolution
    hours per fault class (the class names are the user's: P1, critical, ...)."""
    availability_pct: float | None = Field(None, gt=0, le=100, description="contracted availability")
    response_hours: dict[str, float] = Field(default_factory=dict, max_length=16,
                                             description="class -> hours to the first response")
    resolve_hours: dict[str, float] = Field(default_factory=dict, max_length=16,
                                            description="class -> hours to resolution")

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
    name: str = Field(min_length=1)
    role: Literal["old", "new", "backup"]
    provider: str = ""
    down_mbps: float = Field(gt=0, description="what the contract promises downstream")
    up_mbps: float = Field(gt=0, description="what the contract promises upstream")
    reflector: str | None = Field(None, description="HOST:PORT of a STAMP reflector at the far end")
    ping: str | None = Field(None, description="host for the latency probe (default: reflector host)")
    sip: str | None = Field(None, description="SIP URI of the provider's SBC")
    source: str | None = Field(None, description="source address that leaves through this circuit")
    interface: str | None = Field(None, description="interface that leaves through this circuit")
    key_file: str | None = Field(None, description="STAMP pre-shared key (relative to the profile)")
    contract: Contract = Field(default_factory=Contract, description="the provider's support contract")

    @field_validator("reflector")
    @classmethod
    def _reflector(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            return str(parse_hostport(str(v)))
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
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    title: str = Field(min_length=1)


class Cutover(_Model):
    parallel_run_start: dt.date | None = None
    min_parallel_days: int = Field(14, ge=0)
    termination_notice_days: int = Field(30, ge=0)
    overlap_days: int = Field(30, ge=0)
    pass_rate_pct: float = Field(95, ge=0, le=100)
    sla_claim_hours: float = Field(24, gt=0)
    checklist: list[ChecklistItem] = Field(default_factory=list)
    # longest silence a failover drill may cause (docs/failover.md: at 1 s a lost word is talked
    # over; from ~2 s callers ask "are you there?" and hang up)
    failover_max_gap_ms: float = Field(1000, gt=0)


class Profile(_Model):
    site: str = Field(min_length=1)
    planned: Planned
    thresholds: Thresholds = Field(default_factory=Thresholds)
    circuits: list[Circuit] = Field(min_length=1)
    cutover: Cutover = Field(default_factory=Cutover)
    db: str | None = Field(None, description="SQLite history path (relative to the profile)")
    checks: str | None = Field(None, description="folder of pytest site checks (relative to the profile)")

    # Set by the loader, not part of the YAML.
    _path: Path | None = None

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def base_dir(self) -> Path:
        return self._path.parent if self._path else Path.cwd()

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
        raise KeyError(f"no circuit {name!r} in profile; circuits: {', '.join(c.name for c in self.circuits)}")

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
    bad date (2026-13-45) becomes a field error instead of a YAML crash."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_str)


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


def _explain(err: dict) -> str:
    etype, loc, given = err["type"], err["loc"], err.get("input")
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
    if etype == "string_pattern_mismatch":
        return f"{given!r} is not a valid id; use letters, digits, '-', '_' or '.'"
    if etype == "value_error":
        return str(err["msg"]).removeprefix("Value error, ")
    return str(err["msg"])


def _semantic_checks(p: Profile, file: str, lines: dict) -> list[Problem]:
    """Rules that span fields; each names the field to fix."""
    out: list[Problem] = []

    def add(loc: tuple, msg: str) -> None:
        out.append(Problem(file, _line_for(lines, loc), _field_name(loc), msg))

    codec = get_codec(p.planned.codec)
    if p.planned.ptime_ms not in codec.ptimes_ms:
        add(("planned", "ptime_ms"), f"{codec.name} is not used with ptime {p.planned.ptime_ms} ms; "
            f"expected one of {', '.join(map(str, codec.ptimes_ms))}")
    seen: dict[str, int] = {}
    for i, c in enumerate(p.circuits):
        if c.name in seen:
            add(("circuits", i, "name"), f"duplicate circuit name {c.name!r} (also circuits[{seen[c.name]}])")
        seen.setdefault(c.name, i)
        if c.key_file is not None:
            kp = p.resolve_path(c.key_file)
            if not kp.is_file():
                add(("circuits", i, "key_file"), f"file not found: {kp}")
    if not p.circuits_by_role("new"):
        add(("circuits",), "no circuit with role: new; the profile must describe the new service")
    ids: dict[str, int] = {}
    for i, item in enumerate(p.cutover.checklist):
        if item.id in ids:
            add(("cutover", "checklist", i, "id"), f"duplicate checklist id {item.id!r}")
        ids.setdefault(item.id, i)
    return out


def load_profile_text(text: str, file: str = "<profile>", path: Path | None = None) -> Profile:
    try:
        node = yaml.compose(text, Loader=_Loader)
        data = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as exc:  # syntax: one message with the line
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 1 if mark else None
        what = getattr(exc, "problem", None) or str(exc)
        raise ProfileError([Problem(file, line, "", f"YAML syntax error: {what}")]) from None
    if data is None:
        raise ProfileError([Problem(file, None, "", "the profile is empty; expected site:, planned:, circuits:")])
    if not isinstance(data, dict):
        raise ProfileError([Problem(file, 1, "", "expected a mapping at the top (site:, planned:, circuits:)")])
    lines: dict = {}
    problems: list[Problem] = []
    _line_map(node, (), lines, problems, file)
    if problems:
        raise ProfileError(problems)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError([Problem(file, _line_for(lines, tuple(e["loc"])), _field_name(tuple(e["loc"])),
                                    _explain(e)) for e in exc.errors()]) from None
    profile._path = path
    problems = _semantic_checks(profile, file, lines)
    if problems:
        raise ProfileError(problems)
    return profile


def load_profile(path: str | Path) -> Profile:
    """Load and validate a profile file. Raises ProfileError only."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError([Problem(str(p), None, "", "file not found")]) from None
    except IsADirectoryError:
        raise ProfileError([Problem(str(p), None, "", "is a directory; expected a YAML file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([Problem(str(p), None, "", f"cannot read: {exc}")]) from None
    return load_profile_text(text, str(p), p.resolve())


DEMO_PROFILE = Path(__file__).parent / "data" / "demo.yaml"


def json_schema() -> dict:
    schema = Profile.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "cutover site profile"
    return schema
