"""A SIP account from a YAML file, with the password kept out of every output.

Why a file and not options: a password on the command line lands in shell
history and ``ps``; a file the operator keeps mode 0600 does not. The loader
reads at most 64 KiB from a regular file private to its owner (probes.inputfile:
not a FIFO, device or directory that could block or flood us) and the password
never leaves this object: it is not
in ``repr``, not in ``to_dict``, and the only reader is the digest computation
(:mod:`probes.sipua`).

    username: "4420794600"          # the SIP user (also the auth user unless auth_username)
    password: "..."                 # or password_file: secret.txt (first line, relative to this file)
    domain: sip.carrier.example     # the AOR's domain (From/To, digest realm if none offered)
    registrar: sip:reg.carrier.example      # optional: register first
    outbound_proxy: sip:sbc.carrier.example:5060;transport=tcp   # optional first hop
    transport: udp | tcp | tls      # optional: force the transport
    auth_username: ...              # optional
    display_name: ...               # optional
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from probes.inputfile import MAX_ACCOUNT_BYTES, MAX_KEY_BYTES, InputFileError, read_secret
from probes.result import BadInput
from probes.wire.sip_message import TRANSPORTS, SipUriError, parse_uri

KEYS = ("username", "password", "password_file", "domain", "registrar", "outbound_proxy", "transport",
        "auth_username", "display_name")


class AccountError(BadInput):
    """A bad account file (exit 2). Its text never contains the password."""


@dataclass
class Account:
    username: str
    domain: str
    registrar: str | None = None
    outbound_proxy: str | None = None
    transport: str | None = None
    auth_username: str | None = None
    display_name: str | None = None
    source_file: str | None = None
    _password: str = field(default="", repr=False)

    @property
    def aor(self) -> str:
        return f"sip:{self.username}@{self.domain}"

    @property
    def auth_user(self) -> str:
        return self.auth_username or self.username

    def password(self) -> str:
        """Only the digest computation calls this."""
        return self._password

    def to_dict(self) -> dict:
        """What reports may show: everything but the password."""
        return {"username": self.username, "domain": self.domain, "registrar": self.registrar,
                "outbound_proxy": self.outbound_proxy, "transport": self.transport,
                "file": self.source_file}


def _read(path: Path, what: str, max_bytes: int) -> str:
    """Through probes.inputfile, the one place that opens users' files: a regular
    file only (a FIFO or /dev/zero is refused, not opened or read), size-capped, and
    private to its owner (a warning, an error with --strict-permissions)."""
    try:
        data = read_secret(path, what, max_bytes)
    except InputFileError as exc:
        raise AccountError(str(exc)) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise AccountError(f"{what} {path}: not UTF-8 text") from None


def load_account(path: str | Path) -> Account:
    """Load and check an account file. Raises AccountError only."""
    p = Path(path).expanduser()
    text = _read(p, "account file", MAX_ACCOUNT_BYTES)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        # the message of a YAML error can quote the offending line (maybe the password): give the line only
        raise AccountError(f"account file {p}: YAML syntax error"
                           + (f" at line {mark.line + 1}" if mark else "")) from None
    if not isinstance(data, dict):
        raise AccountError(f"account file {p}: expected a mapping (username:, password:, domain:...)")
    unknown = [str(k) for k in data if k not in KEYS]
    if unknown:
        raise AccountError(f"account file {p}: unknown key(s) {', '.join(sorted(unknown))}; "
                           f"expected {', '.join(KEYS)}")
    for key in KEYS:
        v = data.get(key)
        if v is not None and not isinstance(v, (str, int)):
            raise AccountError(f"account file {p}: {key}: expected text")
    get = lambda k: None if data.get(k) is None else str(data[k]).strip()   # noqa: E731
    username, domain = get("username"), get("domain")
    if not username:
        raise AccountError(f"account file {p}: username: required")
    if not domain:
        raise AccountError(f"account file {p}: domain: required (the AOR's domain, e.g. sip.carrier.example)")
    if data.get("password") is not None and data.get("password_file") is not None:
        raise AccountError(f"account file {p}: give password or password_file, not both")
    if data.get("password_file") is not None:
        pf = Path(str(data["password_file"])).expanduser()
        pf = pf if pf.is_absolute() else p.parent / pf
        lines = _read(pf, "password file", MAX_KEY_BYTES).splitlines()
        password = lines[0] if lines else ""
    else:
        password = "" if data.get("password") is None else str(data["password"])
    transport = get("transport")
    if transport is not None:
        transport = transport.lower()
        if transport not in TRANSPORTS:
            raise AccountError(f"account file {p}: transport: {transport!r}; expected udp, tcp or tls")
    for key in ("registrar", "outbound_proxy"):
        v = get(key)
        if v:
            try:
                parse_uri(v)
            except SipUriError as exc:
                raise AccountError(f"account file {p}: {key}: {exc}") from None
    return Account(username=username, domain=domain, registrar=get("registrar") or None,
                   outbound_proxy=get("outbound_proxy") or None, transport=transport,
                   auth_username=get("auth_username") or None, display_name=get("display_name") or None,
                   source_file=str(p), _password=password)
