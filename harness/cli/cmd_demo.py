"""`cutover demo`: the whole job on loopback, on any machine, as any user.

Starts `cutover reflector` as a child process on 127.0.0.1:8620 (another
free port if that one is busy), runs a quick check of the embedded demo
profile's two "circuits" (sources 127.0.0.2 and 127.0.0.3, which Linux
routes on loopback without configuration), stores it in a history database
inside the report folder, writes the reports, prints the verdict and where
everything is, and stops the reflector (by its PID).
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import click

from harness.cli.common import EXIT_UNMEASURED, die, err, json_option

DEMO_PORT = 8620
START_TIMEOUT_S = 20.0


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Both UDP (STAMP) and TCP (bandwidth) must be free on the same number."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


class DemoReflector:
    """`python -m harness reflector` as a child; its log goes to a file."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "harness", "reflector", "--listen", f"127.0.0.1:{port}"],
                                     stdout=self._log, stderr=self._log, stdin=subprocess.DEVNULL)
        self.port: int | None = None

    def wait_ready(self) -> str | None:
        """None when listening (self.port set), else why it did not start."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            m = re.search(r"UDP 127\.0\.0\.1:(\d+)", text)
            if m:
                self.port = int(m.group(1))
                return None
            if self.proc.poll() is not None:
                last = text.strip().splitlines()[-1] if text.strip() else f"exit status {self.proc.returncode}"
                return last.removeprefix("cutover: ")
            time.sleep(0.05)
        return f"no start line within {START_TIMEOUT_S:g} s"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def demo_steps() -> tuple[list, dict[str, str]]:
    """The full suite, minus steps whose probe needs raw sockets when this
    process may not open them: the demo must work for any user, and a step
    it cannot attempt is skipped with the reason rather than reported."""
    from harness import suite
    steps, skipped = [], {}
    allowed = None
    for step in suite.steps():
        if suite.needs_raw_sockets(step):
            allowed = suite.raw_sockets_allowed() if allowed is None else allowed
            if not allowed:
                skipped[step.NAME] = ("needs raw sockets (root or CAP_NET_RAW); "
                                      "`sudo cutover check` runs it")
                continue
        steps.append(step)
    return steps, skipped


@click.command("demo", help="""Run the whole job on the embedded loopback demo profile: a local reflector,
a check, a report.

\b
Needs no configuration and no root: the two demo "circuits" are the
loopback source addresses 127.0.0.2 and 127.0.0.3, the far end is a
reflector this command starts on 127.0.0.1:8620 (or a free port) and stops
again. The run is stored in DIR/history.sqlite; DIR gets report.md,
report.html, report.json and junit.xml.

\b
Example:
  cutover demo --report-dir cutover-demo""")
@click.option("--report-dir", default="cutover-demo", show_default=True, metavar="DIR")
@json_option
def command(report_dir: str, as_json: bool) -> None:
    from harness.cli.cmd_check import execute
    from harness.profile import DEMO_PROFILE, load_profile
    from harness.store import Store, StoreError

    out = Path(report_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        die(2, f"--report-dir {report_dir}: {exc.strerror or exc}")
    profile = load_profile(DEMO_PROFILE)
    port = DEMO_PORT if port_free(DEMO_PORT) else 0
    if port == 0:
        err(f"cutover demo: port {DEMO_PORT} is busy; the reflector takes a free port instead")
    refl = DemoReflector(port, out / "reflector.log")
    try:
        why = refl.wait_ready()
        if why:
            die(EXIT_UNMEASURED, f"the demo reflector did not start: {why} (log: {refl.log_path})")
        for c in profile.circuits:
            c.reflector = f"127.0.0.1:{refl.port}"
        err(f"cutover demo: reflector on 127.0.0.1:{refl.port} (UDP STAMP + TCP bandwidth), "
            f"circuits 'old' from 127.0.0.2 and 'new' from 127.0.0.3")
        try:
            store = Store(out / "history.sqlite")
        except StoreError as exc:
            die(2, str(exc))
        steps, skipped = demo_steps()
        for name, why in skipped.items():
            err(f"cutover demo: step {name} skipped: {why}")
        code, outcome, paths = execute(profile, quick=True, store=store, report_dir=str(out), as_json=as_json,
                                       steps=steps, skipped=skipped)
    finally:
        refl.stop()
    if not as_json:
        html = out / "report.html"
        click.echo(f"\nDemo verdict: {outcome.verdict}. History: {store.path}")
        if html in paths:
            click.echo(f"Open {html} in a browser for the readiness report.")
    sys.exit(code)
