"""The HTML report is one self-contained file whose charts render in headless
Chromium (Debian's chromium, from scripts/sysdeps.sh): the test dumps the DOM
the browser built and takes a screenshot."""

from __future__ import annotations

import datetime as dt
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.profile import load_profile
from harness.reports import write_reports
from harness.store import Store
from tests.fixtures.history import FIXED_END, cached_history

NOW = FIXED_END + dt.timedelta(minutes=1)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1200,2000"]


@pytest.fixture(scope="module")
def html_file(tmp_path_factory) -> Path:
    fx = cached_history(tmp_path_factory)
    profile = load_profile(fx.profile_path)
    out = tmp_path_factory.mktemp("html")
    with Store(fx.db_path) as store:
        (path,) = write_reports(profile, store, out, ("html",), since=NOW - dt.timedelta(days=7), now=NOW)
    return path


class _Charts(HTMLParser):
    """svg.chart elements and their polylines, from markup."""

    def __init__(self):
        super().__init__()
        self.charts: list[dict] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "chart" in (a.get("class") or ""):
            self.charts.append({"circuit": a.get("data-circuit"), "metric": a.get("data-metric"), "lines": [],
                                "outages": 0})
        elif tag == "polyline" and self.charts:
            self.charts[-1]["lines"].append((a.get("data-series"), int(a.get("data-points")),
                                             len((a.get("points") or "").split())))
        elif tag == "rect" and self.charts and a.get("class") == "outage":
            self.charts[-1]["outages"] += 1
        for k in ("src", "href"):
            if a.get(k):
                self.external.append(a[k])
        if tag in ("script", "link", "iframe", "img"):
            self.external.append(tag)


def _check_charts(markup: str) -> list[dict]:
    p = _Charts()
    p.feed(markup)
    # 3 circuits x (latency, jitter, loss, throughput)
    assert [(c["circuit"], c["metric"]) for c in p.charts] == [
        (n, m) for n in ("old", "new", "backup") for m in ("latency", "jitter", "loss", "throughput")]
    for c in p.charts:
        assert c["lines"], c
        for name, n_points, n_coords in c["lines"]:
            # 7 days = 2016 runs, bucketed to <= 360 worst-of-bucket points; throughput hourly = 168
            assert n_points == n_coords
            assert (150 <= n_points <= 360), (c["circuit"], c["metric"], name, n_points)
    backup = [c for c in p.charts if c["circuit"] == "backup"]
    assert all(c["outages"] == 1 for c in backup)      # the ongoing outage is shaded
    assert p.external == []
    return p.charts


def test_self_contained(html_file):
    text = html_file.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # the only URL is the SVG namespace (an identifier, never fetched)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", text)) == {"http://www.w3.org/2000/svg"}
    assert "url(" not in text and "@import" not in text
    _check_charts(text)


def _png_pixels(data: bytes, max_rows: int = 1400) -> tuple[int, int, list[tuple[int, int, int]]]:
    """Minimal PNG decoder (8-bit RGB/RGBA, non-interlaced: what Chromium writes).
    Decodes the top ``max_rows`` rows (header, gate, tables and the first charts;
    each row depends only on the rows above) and returns a grid of sampled pixels."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, bpp = 8, b"", 0, 0, 3
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    lo7, hi1 = int.from_bytes(b"\x7f" * stride, "big"), int.from_bytes(b"\x80" * stride, "big")
    samples: list[tuple[int, int, int]] = []
    prev = bytes(stride)
    for y in range(min(height, max_rows)):
        f = raw[y * (stride + 1)]
        row = raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)]
        if f == 0:
            line = bytes(row)
        elif f == 2:      # Up: bytewise (row + prev) mod 256 on whole rows as big integers
            a, b = int.from_bytes(row, "big"), int.from_bytes(prev, "big")
            line = (((a & lo7) + (b & lo7)) ^ ((a ^ b) & hi1)).to_bytes(stride, "big")
        else:
            out = bytearray(row)
            for i in range(stride):
                left = out[i - bpp] if i >= bpp else 0
                up, ul = prev[i], (prev[i - bpp] if i >= bpp else 0)
                if f == 1:
                    out[i] = (out[i] + left) & 255
                elif f == 3:
                    out[i] = (out[i] + (left + up) // 2) & 255
                else:
                    p = left + up - ul
                    pa, pb, pc = abs(p - left), abs(p - up), abs(p - ul)
                    out[i] = (out[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else ul)) & 255
            line = bytes(out)
        if y % 5 == 0:
            samples += [tuple(line[i:i + 3]) for i in range(0, stride, bpp * 3)]
        prev = line
    return width, height, samples


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (bash scripts/sysdeps.sh installs it)")
def test_renders_in_headless_chromium(html_file, tmp_path):
    url = html_file.resolve().as_uri()
    flags = CHROME_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    charts = _check_charts(dom.stdout)                 # the DOM the browser built has every chart and line
    assert len(charts) == 12
    png = tmp_path / "report.png"
    shot = subprocess.run([CHROMIUM, *flags, f"--screenshot={png}", url], capture_output=True, text=True,
                          timeout=120)
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    width, height, samples = _png_pixels(png.read_bytes())
    assert (width, height) == (1200, 2000)
    colours = set(samples)
    # a blank or single-colour page would give 1; text, badges, and coloured chart lines give many,
    # among them the blue/red series strokes (#1f77b4, #d62728, antialiased: near those hues)
    assert len(colours) > 20
    assert (0x1F, 0x77, 0xB4) in colours or any(b > r + 60 and b > 120 for r, g, b in colours), \
        "no blue chart line pixels"
    assert any(r > b + 80 and r > 150 for r, g, b in colours), "no red (line/badge) pixels"


def test_text_is_escaped(tmp_path_factory):
    from harness.reports import build_report, render
    fx = cached_history(tmp_path_factory)
    profile = load_profile(fx.profile_path)
    with Store(fx.db_path) as store:
        rep = build_report(profile, store, since=NOW - dt.timedelta(hours=2), now=NOW)
    rep.site = '<script>alert("x")</script> & Co | Ltd'
    html = render(rep, "html")
    assert "<script>" not in html and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in html
    md = render(rep, "md")
    # Markdown viewers render raw HTML: it is escaped there too (harness/escape.py)
    assert "# Readiness report: &lt;script&gt;" in md and "<script>" not in md
    junit = render(rep, "junit")
    assert 'name="cutover readiness: &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co | Ltd"' in junit
