"""A real, throwaway PostgreSQL server for the tests (Debian package
``postgresql``, installed by scripts/sysdeps.sh).

initdb + pg_ctl in a fresh folder under /tmp, listening on a unix socket in
that folder and on a free loopback TCP port. initdb refuses to run as root,
so as root the cluster belongs to the ``postgres`` system user (the package
creates it) and the folder is handed to it. Authentication: ``trust`` on the
socket (the folder is private to the test run), ``scram-sha-256`` on TCP, so
password handling is exercised against the real server.

Every database a test gets is fresh (``CREATE DATABASE``); the server is
stopped (``pg_ctl stop -m immediate``) and its folder removed at the end,
whatever happened.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

PG_BIN = Path(os.environ.get("CUTOVER_PG_BIN", "/usr/lib/postgresql/15/bin"))
SUPERUSER = "cutover"
PASSWORD_USER, PASSWORD = "site_probe", "s3cret-pw"


class Unavailable(Exception):
    """PostgreSQL cannot be run here (not installed, no unprivileged user)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise Unavailable(f"PostgreSQL is not installed ({PG_BIN}/initdb missing; "
                              "scripts/sysdeps.sh installs the Debian package postgresql)")
        self.run_as: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.run_as = pwd.getpwnam("postgres")
            except KeyError:
                raise Unavailable("running as root and there is no 'postgres' user to run initdb as") from None
        self.dir = Path(tempfile.mkdtemp(prefix="cutover-pg-"))
        self.data = self.dir / "data"
        self.port = _free_port()
        self.started = False
        if self.run_as:
            os.chown(self.dir, self.run_as.pw_uid, self.run_as.pw_gid)
        os.chmod(self.dir, 0o755)      # the socket must be reachable by the test processes

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        def demote() -> None:
            if self.run_as:
                os.setgid(self.run_as.pw_gid)
                os.setgroups([])
                os.setuid(self.run_as.pw_uid)
        env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", "HOME": str(self.dir)}
        return subprocess.run([str(PG_BIN / args[0]), *args[1:]], cwd=self.dir, env=env, preexec_fn=demote,
                              capture_output=True, text=True, timeout=timeout)

    def start(self) -> "PgServer":
        r = self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "--auth-local=trust",
                      "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync")
        if r.returncode != 0:
            raise Unavailable(f"initdb failed: {r.stderr.strip()[-400:]}")
        self.resume()
        self.sql("postgres", f"CREATE ROLE {PASSWORD_USER} LOGIN PASSWORD '{PASSWORD}' CREATEDB")
        return self

    def resume(self) -> None:
        """Start the server on its data folder (after :meth:`halt`, or the first time)."""
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir} "
                "-c fsync=off -c max_connections=200 -c shared_buffers=128MB")
        r = self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.dir / "log"), "-w",
                      "-t", "60", "start")
        if r.returncode != 0:
            log = (self.dir / "log").read_text(errors="replace")[-600:] if (self.dir / "log").exists() else ""
            raise Unavailable(f"pg_ctl start failed: {r.stderr.strip()[-300:]} {log}")
        self.started = True

    def halt(self) -> None:
        """Stop the server at once (as a crash would), keeping its data: every
        client's connection drops. :meth:`resume` starts it again."""
        if self.started:
            r = self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
            assert r.returncode == 0, r.stderr
            self.started = False

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30", "stop")
            self.started = False
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- databases

    def url(self, dbname: str, *, user: str = SUPERUSER) -> str:
        """Over the private unix socket (trust)."""
        return f"postgresql://{user}@/{dbname}?host={self.dir}&port={self.port}"

    def tcp_url(self, dbname: str, *, user: str = PASSWORD_USER, password: str | None = PASSWORD) -> str:
        cred = f"{user}:{password}" if password is not None else user
        return f"postgresql://{cred}@127.0.0.1:{self.port}/{dbname}?sslmode=disable"

    def sql(self, dbname: str, statement: str) -> None:
        import psycopg
        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            conn.execute(statement)

    def new_database(self, owner: str = SUPERUSER) -> str:
        name = "t_" + uuid.uuid4().hex[:12]
        self.sql("postgres", f"CREATE DATABASE {name} OWNER {owner}")
        return name


def start_or_reason() -> tuple[PgServer | None, str]:
    srv = None
    try:
        srv = PgServer()
        return srv.start(), ""
    except Unavailable as exc:
        if srv is not None:
            srv.stop()
        return None, str(exc)
    except (OSError, subprocess.SubprocessError):
        if srv is not None:
            srv.stop()
        raise


def wait_gone(pid: int, timeout_s: float = 10) -> None:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
