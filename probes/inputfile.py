"""Files handed to us by users and customers: profiles, key files, account
files, captures. One place opens them, so every command refuses the same
hostile input the same way.

Why (issue #16, each reproduced): ``--key-file /dev/zero`` grew to 2.7 GB
and ended in ``MemoryError``; a FIFO as key file hung the probe, which then
ignored SIGTERM for 565 s; a directory, ``/dev/zero`` or a FIFO was called
"file not found"; a key readable by everyone passed without a word.

The rules:

- open with ``O_NONBLOCK`` (opening a FIFO with no writer returns at once
  instead of blocking forever) and ``O_NOCTTY``;
- ``fstat`` the *opened* descriptor (no race between a stat and the open)
  and accept regular files only, naming what the path is instead
  (directory, FIFO, character device such as /dev/zero, socket);
- read at most a size limit (the file's size is checked first, the read is
  capped too in case it grows while we read);
- secrets (keys, account files) must not be readable or writable by group
  or others, as ssh requires of private keys: a warning by default, an
  error in strict mode (``cutover --strict-permissions`` or
  ``CUTOVER_STRICT_PERMISSIONS=1``).

Errors are :class:`InputFileError` (a ``ValueError``: bad input, exit 2),
whose text names the file and the problem.
"""

from __future__ import annotations

import os
import stat
import warnings
from typing import Callable

from probes.result import BadInput

MAX_KEY_BYTES = 4096            # an HMAC key is 16-64 bytes; a passphrase file a few hundred
MAX_ACCOUNT_BYTES = 64 * 1024   # a credentials file of a few accounts
STRICT_ENV = "CUTOVER_STRICT_PERMISSIONS"


class InputFileError(BadInput):
    """A file we were given cannot be used; ``str()`` names the file and the problem."""

    def __init__(self, what: str, path: str | os.PathLike, problem: str) -> None:
        self.what, self.path, self.problem = what, str(path), problem
        super().__init__(f"{what} {self.path}: {problem}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "is a character device (like /dev/zero)"
    if stat.S_ISBLK(mode):
        return "is a block device"
    if stat.S_ISSOCK(mode):
        return "is a socket"
    return "is not a regular file"


def open_regular(path: str | os.PathLike, what: str = "file") -> tuple[int, os.stat_result]:
    """Open ``path`` read-only without blocking; a regular file or InputFileError.
    Returns (descriptor, its stat); the caller closes the descriptor."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise InputFileError(what, path, "no such file") from None
    except PermissionError:
        raise InputFileError(what, path, "permission denied") from None
    except OSError as exc:   # ENXIO: a socket; ELOOP, ENOTDIR, EIO ...
        if exc.errno is not None and os.path.exists(path):
            try:
                kind = _kind(os.stat(path).st_mode)
            except OSError:
                kind = ""
            if kind and kind != "is not a regular file":
                raise InputFileError(what, path, f"{kind}; expected a regular file") from None
        raise InputFileError(what, path, f"cannot open: {exc.strerror or exc}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise InputFileError(what, path, f"{_kind(st.st_mode)}; expected a regular file")
    return fd, st


def check_regular(path: str | os.PathLike, what: str = "file") -> os.stat_result:
    """Raise InputFileError unless ``path`` is a readable regular file."""
    fd, st = open_regular(path, what)
    os.close(fd)
    return st


def read_regular(path: str | os.PathLike, what: str, max_bytes: int,
                 check: Callable[[os.stat_result], None] | None = None) -> bytes:
    """The content of a regular file of at most ``max_bytes`` bytes; ``check``
    sees the opened file's stat before anything is read."""
    fd, st = open_regular(path, what)
    try:
        if check is not None:
            check(st)
        if st.st_size > max_bytes:
            raise InputFileError(what, path, f"is {st.st_size:,} bytes; the limit is {max_bytes:,}")
        chunks, total = [], 0
        while True:
            try:
                chunk = os.read(fd, min(65536, max_bytes + 1 - total))
            except OSError as exc:
                raise InputFileError(what, path, f"cannot read: {exc.strerror or exc}") from None
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise InputFileError(what, path, f"grew beyond the limit of {max_bytes:,} bytes while read")
        return b"".join(chunks)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- secrets

class PermissionWarning(UserWarning):
    """A secret file that group or others may read (strict mode refuses it)."""


def _python_warning(message: str) -> None:
    """Where the warning goes unless a caller says (the CLI installs its own
    ``cutover: warning:`` line through :func:`set_policy`): Python's warnings,
    which an embedding program or pytest shows or filters; a probe prints nothing."""
    warnings.warn(message, PermissionWarning, stacklevel=4)


_warn: Callable[[str], None] = _python_warning
_strict: bool | None = None      # None: from the environment
_warned: set[str] = set()        # one warning per file per process


def set_policy(*, strict: bool | None = None, warn: Callable[[str], None] | None = None) -> None:
    """Strict mode (group/other access to a secret is an error) and where
    warnings go. ``strict=None`` reads ``$CUTOVER_STRICT_PERMISSIONS``."""
    global _strict, _warn
    _strict = strict
    if warn is not None:
        _warn = warn


def strict() -> bool:
    if _strict is not None:
        return _strict
    return os.environ.get(STRICT_ENV, "").strip().lower() in ("1", "yes", "true", "on")


def _check_mode(path: str | os.PathLike, what: str, st: os.stat_result) -> None:
    loose = stat.S_IMODE(st.st_mode) & 0o077
    if not loose:
        return
    who = "group and others" if loose & 0o070 and loose & 0o007 else "group" if loose & 0o070 else "others"
    problem = (f"is accessible by {who} (mode {stat.S_IMODE(st.st_mode):04o}); "
               f"run chmod 600 {path}")
    if strict():
        raise InputFileError(what, path, problem + " (refused: strict permissions)")
    key = os.path.realpath(path)
    if key not in _warned:
        _warned.add(key)
        _warn(f"{what} {path}: {problem}")


def check_secret(path: str | os.PathLike, what: str = "key file", max_bytes: int = MAX_KEY_BYTES) -> None:
    """Everything :func:`read_secret` checks, without keeping the content."""
    read_secret(path, what, max_bytes)


def read_secret(path: str | os.PathLike, what: str = "key file", max_bytes: int = MAX_KEY_BYTES) -> bytes:
    """A secret: a regular file within ``max_bytes``, private to its owner
    (warning, or error in strict mode), surrounding whitespace stripped, not empty."""
    data = read_regular(path, what, max_bytes, check=lambda st: _check_mode(path, what, st)).strip()
    if not data:
        raise InputFileError(what, path, "is empty")
    return data
