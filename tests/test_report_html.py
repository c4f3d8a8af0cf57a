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
    """svg.chart elements and their polylines and bars, from markup."""

    def __init__(self):
        super().__init__()
        self.charts: list[dict] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and "chart" in (a.get("class") or ""):
            self.charts.append({"metric": a.get("data-metric"), "lines": [], "outages": 0, "bars": 0, "limit": 0})
        elif tag == "polyline" and self.charts:
            self.charts[-1]["lines"].append((a.get("data-series"), int(a.get("data-points")),
                                             len((a.get("points") or "").split())))
        elif tag == "rect" and self.charts and a.get("class") == "outage":
            self.charts[-1]["outages"] += 1
        elif tag == "rect" and self.charts and a.get("class") == "daybar":
            self.charts[-1]["bars"] += 1
        elif tag == "line" and self.charts and a.get("class") == "limit":
            self.charts[-1]["limit"] += 1
        for k in ("src", "href"):
            if a.get(k):
                self.external.append(a[k])
        if tag in ("script", "link", "iframe", "img"):
            self.external.append(tag)


METRIC_CHARTS = ["latency", "jitter-up", "jitter-down", "loss-up", "loss-down", "mos", "throughput-down",
                 "throughput-up", "capacity"]


def _check_charts(markup: str) -> list[dict]:
    p = _Charts()
    p.feed(markup)
    # one chart per metric with one line per circuit (old, new and backup on the same axes),
    # then the daily pass rate as bars
    assert [c["metric"] for c in p.charts] == METRIC_CHARTS + ["daily-pass-rate"]
    for c in p.charts[:-1]:
        assert [name for name, _, _ in c["lines"]] == ["old", "new", "backup"], c
        for name, n_points, n_coords in c["lines"]:
            # 7 days = 2016 runs, bucketed to <= 360 worst-of-bucket points; bandwidth ~2 per hour;
            # capacity twice a day
            assert n_points == n_coords
            assert (150 <= n_points <= 360) or (c["metric"] == "capacity" and 7 <= n_points <= 16), \
                (c["metric"], name, n_points)
        # the window (run 6624 on) holds the fixture's outages at runs 7000 and 7007 (old) and
        # 8636 (backup, ongoing): each shaded on every chart
        assert c["outages"] == 3
    # a dashed limit on the charts that have one (jitter 30 ms, loss 1 %, MOS 4, the 95 % pass target);
    # the RTT limit (2 x 150 ms) is more than twice the ~31 ms data: the legend says "off scale" instead
    assert [c["metric"] for c in p.charts if c["limit"]] == METRIC_CHARTS[1:6] + ["daily-pass-rate"]
    assert "limit 300 (off scale)" in markup
    # 7 days + the day the window opened on (2026-11-13 12:01 to 11-20 12:01: 8 UTC days) x 3 circuits
    assert p.charts[-1]["bars"] == 8 * 3
    assert p.external == []
    return p.charts


def test_self_contained(html_file):
    text = html_file.read_text()
    assert text.startswith("<!DOCTYPE html>")
    # the only URL is the SVG namespace (an identifier, never fetched)
    assert set(re.findall(r"https?://[^\s\"'<>)]+", text)) == {"http://www.w3.org/2000/svg"}
    assert "url(" not in text and "@import" not in text
    _check_charts(text)


def _png_rows(data: bytes, max_rows: int = 1400) -> tuple[int, int, int, list[bytes]]:
    """Minimal PNG decoder (8-bit RGB/RGBA, non-interlaced: what Chromium writes):
    (width, height, bytes per pixel, the top ``max_rows`` rows unfiltered; each
    row depends only on the rows above)."""
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
    rows: list[bytes] = []
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
        rows.append(line)
        prev = line
    return width, height, bpp, rows


def _png_pixels(data: bytes, max_rows: int = 1400) -> tuple[int, int, list[tuple[int, int, int]]]:
    """A grid of sampled pixels (every 5th row, every 3rd pixel) of the top ``max_rows`` rows."""
    width, height, bpp, rows = _png_rows(data, max_rows)
    samples = [tuple(line[i:i + 3]) for y, line in enumerate(rows) if y % 5 == 0
               for i in range(0, len(line), bpp * 3)]
    return width, height, samples


def _pixel_at(rows: list[bytes], bpp: int, x: int, y: int) -> tuple[int, int, int]:
    return tuple(rows[y][x * bpp:x * bpp + 3])


def _near(c: tuple[int, int, int], ref: tuple[int, int, int], tol: int = 40) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(c, ref))


def _screenshot(page: Path, tmp_path: Path, size: str) -> tuple[int, int, int, list[bytes]]:
    png = tmp_path / f"{page.stem}.png"
    flags = [f for f in CHROME_FLAGS if not f.startswith("--window-size")]
    flags += [f"--window-size={size}", f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]
    shot = subprocess.run([CHROMIUM, *flags, f"--screenshot={png}", page.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    return _png_rows(png.read_bytes(), max_rows=10_000)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (bash scripts/sysdeps.sh installs it)")
def test_renders_in_headless_chromium(html_file, tmp_path):
    url = html_file.resolve().as_uri()
    flags = CHROME_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    charts = _check_charts(dom.stdout)                 # the DOM the browser built has every chart and line
    assert len(charts) == 10
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


SUMMARY_BG = (0xF3, 0xF7, 0xFB)            # section.summary's background (html.CSS)
OLD, NEW, BACKUP = (0x1F, 0x77, 0xB4), (0xD6, 0x27, 0x28), (0x2C, 0xA0, 0x2C)   # common.CIRCUIT_COLOURS


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (bash scripts/sysdeps.sh installs it)")
def test_summary_is_the_first_thing_on_screen(html_file, tmp_path):
    """In the rendered page the summary box sits right under the title, above the fold,
    with its blue rule on the left: found by its colours in the screenshot."""
    width, height, bpp, rows = _screenshot(html_file, tmp_path, "1200,900")
    box_rows = [y for y, line in enumerate(rows)
                if sum(1 for x in range(0, width, 4) if _pixel_at(rows, bpp, x, y) == SUMMARY_BG) > width // 8]
    assert box_rows, "no summary box in the screenshot"
    top, bottom = box_rows[0], box_rows[-1]
    assert 60 <= top <= 160 and 100 <= bottom - top <= 500, (top, bottom)     # under the title, 4-5 sentences
    # the blue rule on the box's left edge, on every row of the box
    rule = [y for y in range(top, bottom) if any(_near(_pixel_at(rows, bpp, x, y), OLD, 10) for x in range(0, 60))]
    assert len(rule) >= 0.9 * (bottom - top)
    # text inside the box: dark pixels on its rows
    dark = sum(1 for y in range(top, bottom, 2) for x in range(40, width - 40, 3)
               if sum(_pixel_at(rows, bpp, x, y)) < 200)
    assert dark > 500


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (bash scripts/sysdeps.sh installs it)")
def test_old_and_new_on_one_chart_in_the_screenshot(html_file, tmp_path):
    """The RTT chart as Chromium built it (from its DOM dump) holds old, new and backup on the
    same axes: their colours inside the plot area, old (~25 ms) drawn above new (~9 ms) and
    below backup (~50 ms), as the fixture's circuits are configured."""
    flags = CHROME_FLAGS + [f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", html_file.resolve().as_uri()], capture_output=True,
                         text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    svg = re.search(r'<svg class="chart" data-metric="latency".*?</svg>', dom.stdout, re.S).group(0)
    page = tmp_path / "latency.html"
    page.write_text(f'<!DOCTYPE html><html><body style="margin:0;background:#fff">{svg}</body></html>')
    width, height, bpp, rows = _screenshot(page, tmp_path, "560,190")
    ys: dict[str, list[int]] = {"old": [], "new": [], "backup": []}
    for y in range(26, 160):                              # the plot area (charts.PAD_T .. HEIGHT - PAD_B)
        for x in range(60, 540):
            c = _pixel_at(rows, bpp, x, y)
            for name, ref in (("old", OLD), ("new", NEW), ("backup", BACKUP)):
                if _near(c, ref, 30):
                    ys[name].append(y)
    assert all(len(v) > 200 for v in ys.values()), {k: len(v) for k, v in ys.items()}
    mean = {k: sum(v) / len(v) for k, v in ys.items()}
    assert mean["backup"] < mean["old"] < mean["new"], mean       # higher RTT is drawn higher


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (bash scripts/sysdeps.sh installs it)")
def test_daily_bars_are_drawn_to_scale(html_file, tmp_path):
    """The daily pass-rate chart as Chromium lays it out inside the report's own CSS:
    a ~99 % bar reaches from the 0 line nearly to the 100 line (a page style that sized
    the bars, as `.bar` once did, leaves 9-pixel stubs)."""
    text = html_file.read_text()
    css = re.search(r"<style>.*?</style>", text, re.S).group(0)
    svg = re.search(r'<svg class="chart bars".*?</svg>', text, re.S).group(0)
    page = tmp_path / "daily.html"
    page.write_text(f'<!DOCTYPE html><html><head>{css}</head><body style="margin:0;padding:0">{svg}</body></html>')
    width, height, bpp, rows = _screenshot(page, tmp_path, "700,190")
    # old's first bar: the first column of old's colour inside the plot area (y 26..160)
    col = next(x for x in range(52, 600) if any(_near(_pixel_at(rows, bpp, x, y), OLD, 12) for y in range(26, 160)))
    ys = [y for y in range(0, 190) if _near(_pixel_at(rows, bpp, col + 2, y), OLD, 12)]
    # plot height 134 px: a >= 95 % bar is >= 127 px tall
    assert len(ys) >= 120, len(ys)
