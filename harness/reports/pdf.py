"""The report as a PDF, for people who attach files to emails.

The PDF is the HTML report printed by a real renderer: headless Chromium's
``--print-to-pdf`` (Debian's ``chromium``, installed by scripts/sysdeps.sh).
One source of truth for layout, no second template to drift. The HTML is
self-contained (inline SVG, no external assets), and Chromium runs with its
background networking off and a throwaway profile, so printing touches no
network. A missing browser is a clear error naming the package, never a
silently skipped file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
TIMEOUT_S = 120
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
         "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw")


class PdfError(Exception):
    """The PDF could not be made (no browser, the browser failed or timed out)."""


def browser() -> str | None:
    override = os.environ.get("CUTOVER_CHROMIUM")
    if override:
        return override if shutil.which(override) else None
    return next((p for p in map(shutil.which, BROWSERS) if p), None)


def write_pdf(html: str, path: Path) -> Path:
    """Print ``html`` to ``path`` (written atomically) with headless Chromium."""
    exe = browser()
    if exe is None:
        raise PdfError("the PDF report needs Chromium: install the 'chromium' package "
                       "(scripts/sysdeps.sh does) or set CUTOVER_CHROMIUM")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="cutover-pdf-") as tmp:
        src = Path(tmp) / "report.html"
        src.write_text(html, encoding="utf-8")
        out = Path(tmp) / "report.pdf"
        cmd = [exe, *FLAGS, f"--user-data-dir={Path(tmp) / 'profile'}", f"--print-to-pdf={out}",
               src.as_uri()]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise PdfError(f"Chromium did not print the report within {TIMEOUT_S} s") from None
        if done.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            tail = (done.stderr or "").strip().splitlines()[-1:] or ["no output"]
            raise PdfError(f"Chromium could not print the report (exit {done.returncode}): {tail[0]}")
        tmp_out = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        shutil.copyfile(out, tmp_out)
        os.replace(tmp_out, path)
    return path
