"""The PDF report (issue #15): the HTML report printed by headless Chromium, read
back with poppler (pdftotext for its words, pdftoppm for its first page as an
image). Both are Debian packages from scripts/sysdeps.sh."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys

import pytest

from harness.profile import load_profile
from harness.reports import parse_formats, write_reports
from harness.reports.pdf import PdfError, browser
from harness.store import Store
from tests.fixtures.history import FIXED_END, cached_history
from tests.test_report_html import _png_pixels

NOW = FIXED_END + dt.timedelta(minutes=1)
POPPLER = shutil.which("pdftotext") and shutil.which("pdftoppm")
need = pytest.mark.skipif(browser() is None or not POPPLER,
                          reason="needs chromium and poppler-utils (bash scripts/sysdeps.sh installs them)")


@need
def test_pdf_first_page_has_the_report(tmp_path_factory, tmp_path):
    fx = cached_history(tmp_path_factory)
    profile = load_profile(fx.profile_path)
    with Store(fx.db_path) as store:
        (pdf,) = write_reports(profile, store, tmp_path, ("pdf",), since=NOW - dt.timedelta(days=7), now=NOW)
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    first = subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-layout", str(pdf), "-"], capture_output=True,
                           text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    assert profile.site in first.stdout and "Readiness report" in first.stdout
    # the manager's summary is on the first page, its dates among it
    text = " ".join(first.stdout.split())
    assert "Summary" in text and "the termination notice must go out by" in text
    pages = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, timeout=60).stdout
    assert int(next(ln.split()[-1] for ln in pages.splitlines() if ln.startswith("Pages:"))) >= 1
    png = tmp_path / "page"
    subprocess.run(["pdftoppm", "-f", "1", "-l", "1", "-r", "50", "-png", str(pdf), str(png)], check=True,
                   timeout=60)
    (page,) = tmp_path.glob("page*.png")
    width, height, samples = _png_pixels(page.read_bytes())
    assert width > 300 and height > 300
    assert len(set(samples)) > 5, "the first page is blank"


def test_pdf_is_asked_for_by_name():
    assert "pdf" not in parse_formats("all")
    assert parse_formats("md,pdf") == ("md", "pdf")


def test_no_browser_is_a_clear_error(tmp_path_factory, tmp_path, monkeypatch):
    monkeypatch.setenv("CUTOVER_CHROMIUM", "/nonexistent/chromium")
    fx = cached_history(tmp_path_factory)
    profile = load_profile(fx.profile_path)
    with Store(fx.db_path) as store, pytest.raises(PdfError, match="needs Chromium"):
        write_reports(profile, store, tmp_path, ("pdf",), since=NOW - dt.timedelta(days=7), now=NOW)
    cli = subprocess.run([sys.executable, "-m", "harness", "report", str(fx.profile_path), "--db", str(fx.db_path),
                          "--as-of", NOW.isoformat(), "--format", "pdf", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, timeout=120)
    assert cli.returncode == 2
    assert "--format pdf: the PDF report needs Chromium" in cli.stderr and "Traceback" not in cli.stderr
