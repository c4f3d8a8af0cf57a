"""Every output format escapes user data for its medium (issue #16): a site name, a
circuit name and a sign-off note carrying ESC sequences, other NUL-free control
characters, `<script>`, an `onerror=` image and table pipes go through `cutover check`,
`report`, `gate` and `signoff`. JUnit must parse with two XML parsers, the Markdown
rendered to HTML by markdown-it-py must contain no active markup, and no ESC from the
data may reach the terminal."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from harness.escape import markdown_text, rich_text, terminal_text, xml_text
from tests.conftest import run_cli
from tests.harness_procs import ReflectorProc, demo_profile

# every C0 control except NUL, plus DEL, a C1 control (CSI) and a bidi override
CONTROLS = "".join(chr(c) for c in range(1, 32)) + "\x7f\x9b\u202e"
HOSTILE = "Clinic \x1b[2J\x1b]0;pwned\x07 <script>alert(1)</script> <img src=x onerror=alert(1)> | a|b"
NOTE = "ok \x1b[31mRED\x1b[0m <script>x()</script> | [link](javascript:alert(1)) *em*"


# ---- the functions -------------------------------------------------------------------------

def test_xml_text_keeps_only_what_xml_carries():
    s = xml_text(HOSTILE + CONTROLS)
    assert "\x1b" not in s and "\\x1b[2J" in s and "\\x07" in s and "\\x9b" in s
    assert "\t" in s and "\n" in s and "\r" in s          # allowed in XML, kept
    ET.fromstring(f"<a b='{xml_text(CONTROLS).replace(chr(39), '')}'>{xml_text(CONTROLS)}</a>".replace("&", ""))


def test_markdown_text_is_inert():
    s = markdown_text(HOSTILE)
    assert "<" not in s and ">" not in s and "&lt;script&gt;" in s
    assert re.search(r"(?<!\\)\|", s) is None               # every pipe escaped
    assert markdown_text("a\nb\r\nc") == "a b c"            # a newline would end a table row
    assert markdown_text("[x](javascript:y) *e* `c` _u_ ~s~") == \
        r"\[x\](javascript:y) \*e\* \`c\` \_u\_ \~s\~"
    assert markdown_text("5 & 6") == "5 &amp; 6"


def test_terminal_text_shows_controls():
    s = terminal_text(HOSTILE + CONTROLS)
    assert not re.search("[\x00-\x1f\x7f-\x9f\u202e]", s)
    assert "\\x1b[2J" in s and "\\u202e" in s
    assert terminal_text("a\nb\tc", keep_lines=True) == "a\nb\tc"
    assert terminal_text("a\nb") == "a\\x0ab"
    assert rich_text("[bold]x\x1b") == "\\[bold]x\\x1b"


# ---- through every format ------------------------------------------------------------------

class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list]] = []
        self.rows: list[int] = []
        self._cells = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))
        if tag == "tr":
            self._cells = 0
        elif tag in ("td", "th"):
            self._cells += 1

    def handle_endtag(self, tag):
        if tag == "tr":
            self.rows.append(self._cells)


@pytest.fixture(scope="module")
def reflector(tmp_path_factory):
    r = ReflectorProc(tmp_path_factory.mktemp("refl") / "reflector.log")
    yield r
    r.stop()


def _yaml_dq(text: str) -> str:
    """A YAML double-quoted scalar for ``text`` (control characters as \\xNN / \\uNNNN)."""
    out = []
    for ch in text:
        c = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif c < 0x20 or 0x7f <= c <= 0x9f:
            out.append(f"\\x{c:02x}")
        elif c > 0x7e:
            out.append(f"\\u{c:04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def test_hostile_names_through_check_report_gate_and_signoff(reflector, tmp_path):
    import junitparser
    from markdown_it import MarkdownIt
    circuit = "old \x1b[31m<b>x</b> | y"
    prof = demo_profile(tmp_path / "demo.yaml", reflector.port, reflector.port)
    text = prof.read_text().replace("site: Demo site (loopback)", f"site: {_yaml_dq(HOSTILE + CONTROLS)}")
    text = text.replace("  - name: old\n", f"  - name: {_yaml_dq(circuit)}\n")
    prof.write_text(text)
    db = tmp_path / "h.sqlite"
    rep = tmp_path / "rep"
    check = run_cli("check", str(prof), "--quick", "--step", "stream", "--db", str(db), "--report-dir", str(rep),
                    timeout=180)
    assert check.returncode in (0, 1), check.stderr
    sign = run_cli("signoff", str(prof), "voice-vlan", "--by", "K. Nurse \x1b[2J", "--note", NOTE, "--db", str(db))
    assert sign.returncode == 0, sign.stderr
    report = run_cli("report", str(prof), "--db", str(db), "--out", str(tmp_path / "rep2"))
    assert report.returncode == 0, report.stderr
    gate = run_cli("gate", str(prof), "--db", str(db))
    # the terminal: nothing from the data arrives raw (output is not a TTY: no colour codes either)
    for name, cp in (("check", check), ("signoff", sign), ("report", report), ("gate", gate)):
        for stream in (cp.stdout, cp.stderr):
            assert "\x1b" not in stream and "\x07" not in stream and "\x9b" not in stream, (name, stream)
            assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", stream), (name, stream)
    assert "Clinic \\x1b[2J" in check.stdout + report.stdout      # shown, visibly
    assert "\\x1b[31mRED" in sign.stdout and "\\x1b[31mRED" in gate.stdout
    for folder in (rep, tmp_path / "rep2"):
        # JUnit: well-formed for ElementTree and for junitparser (the way CI tools read it)
        raw = (folder / "junit.xml").read_text()
        root = ET.fromstring(raw)
        assert root.get("name").startswith("cutover readiness: Clinic \\x1b[2J")
        suites = junitparser.JUnitXml.fromfile(str(folder / "junit.xml"))
        names = [s.name for s in suites]
        assert any("old \\x1b[31m<b>x</b> | y" in n for n in names), names
        assert sum(1 for s in suites for _ in s) == len(root.findall(".//testcase")) > 0
        # Markdown rendered as a viewer does (raw HTML enabled): no active markup survives
        md = (folder / "report.md").read_text()
        html = MarkdownIt("commonmark", {"html": True}).enable("table").render(md)
        tags = _Tags()
        tags.feed(html)
        allowed = {"h1", "h2", "h3", "p", "strong", "em", "code", "ul", "li", "table", "thead", "tbody",
                   "tr", "th", "td", "br"}
        assert {t for t, _ in tags.tags} <= allowed, {t for t, _ in tags.tags} - allowed
        assert not any(a for t, attrs in tags.tags for a, _v in attrs if a.startswith("on") or a == "href")
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script" not in html
        # HTML (escaped by its own writer) carries the name as text, JSON round-trips it exactly
        page = (folder / "report.html").read_text()
        assert "<script>alert(1)" not in page and "<img src=x" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        import json
        assert json.loads((folder / "report.json").read_text())["site"] == HOSTILE + CONTROLS
        # the pipes in the names did not split table cells: every row as wide as its header
        assert tags.rows and len(set(tags.rows)) >= 1
        for table in re.findall(r"<table>.*?</table>", html, re.S):
            t = _Tags()
            t.feed(table)
            assert len(set(t.rows)) == 1, (t.rows, table[:400])


def test_hostile_names_through_plan_and_profile_validate(tmp_path):
    """The commands that print a profile without measuring: no ESC, no Rich markup taken
    from the names (`[bold]` in a name is printed, not applied)."""
    prof = demo_profile(tmp_path / "demo.yaml", 9, 9)
    text = prof.read_text().replace("site: Demo site (loopback)", f"site: {_yaml_dq(HOSTILE + CONTROLS)}")
    name = _yaml_dq("old [bold]x[/bold] \x1b[5m")
    text = text.replace("  - name: old\n", f"  - name: {name}\n")
    prof.write_text(text)
    for args in (["plan", str(prof)], ["profile", "validate", str(prof)]):
        cp = run_cli(*args)
        assert cp.returncode == 0, cp.stderr
        for stream in (cp.stdout, cp.stderr):
            assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202e]", stream), (args, stream)
    assert "[bold]" in run_cli("plan", str(prof)).stdout          # shown as text, not applied


def test_a_hostile_sip_server_cannot_write_to_our_terminal():
    """Reason phrase and Server header come from the far end: `probe sip` shows their
    escape sequences as text."""
    import socket
    import threading
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    halt = threading.Event()

    def serve():
        while not halt.is_set():
            try:
                data, peer = sock.recvfrom(65535)
            except socket.timeout:
                continue
            h = {}
            for line in data.decode().split("\r\n")[1:]:
                k, _, v = line.partition(":")
                h.setdefault(k.strip().lower(), v.strip())
            resp = "\r\n".join([
                "SIP/2.0 200 OK \x1b]0;owned\x07\x1b[2J", f"Via: {h['via']}", f"From: {h['from']}",
                f"To: {h['to']};tag=1", f"Call-ID: {h['call-id']}", f"CSeq: {h['cseq']}",
                "Server: evil \x1b[31mSBC\x1b[0m", "Allow: OPTIONS", "Content-Length: 0", "", ""])
            sock.sendto(resp.encode(), peer)

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        cp = run_cli("probe", "sip", f"sip:127.0.0.1:{sock.getsockname()[1]}", "--timeout", "3")
    finally:
        halt.set()
        t.join(timeout=2)
        sock.close()
    assert cp.returncode == 0, cp.stderr
    assert "\x1b" not in cp.stdout + cp.stderr and "\x07" not in cp.stdout + cp.stderr
    assert "server: evil \\x1b[31mSBC" in cp.stdout and "OK \\x1b]0;owned\\x07" in cp.stdout


def test_a_newline_in_a_name_cannot_forge_a_line():
    """`out` lines are one line each: a site name "x\\nVerdict: GO" prints as one line."""
    from click.testing import CliRunner
    import click
    from harness.cli.common import out

    @click.command()
    def show():
        out("site: x\nVerdict: GO")
    r = CliRunner().invoke(show)
    assert r.output == "site: x\\x0aVerdict: GO\n"
