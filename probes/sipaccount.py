"""A SIP account from a YAML file, with the password kept out of every output.

Why a file and not options: a password on the command line lands in shell
history and ``ps``; a file the operator keeps mode 0600 does not. The loader
reads at most 64 KiB from a regular file (not a FIFO, device or directory that
could block or flood us) and the password never leaves this object: it is not
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

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from probes.sip_message import TRANSPORTS, SipUriError, parse_uri

MAX_ACCOUNT_BYTES = 64 * 1024
KEYS = ("username", "password", "password_file", "domain", "registrar", "outbound_proxy", "transport",
        "auth_username", "display_name")


class AccountError(ValueError):
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


def _read_limited(path: Path, what: str) -> str:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AccountError(f"{what} {path}: file not found") from None
    except OSError as exc:
        raise AccountError(f"{what} {path}: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise AccountError(f"{what} {path}: not a regular file")
    if st.st_size > MAX_ACCOUNT_BYTES:
        raise AccountError(f"{what} {path}: {st.st_size} bytes, more than {MAX_ACCOUNT_BYTES} allowed")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_ACCOUNT_BYTES + 1)
    except OSError as exc:
        raise AccountError(f"{what} {path}: {exc.strerror}") from None
    if len(data) > MAX_ACCOUNT_BYTES:
        raise AccountError(f"{what} {path}: more than {MAX_ACCOUNT_BYTES} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise AccountError(f"{what} {path}: not UTF-8 text") from None


def load_account(path: str | Path) -> Account:
    """Load and check an account file. Raises AccountError only."""
    p = Path(path).expanduser()
    text = _read_limited(p, "account file")
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
        lines = _read_limited(pf, "password file").splitlines()
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
