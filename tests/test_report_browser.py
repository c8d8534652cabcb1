"""`simmlm report` in a real (headless) browser: the figures of a 6-modality report render readably and fit the page."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from simmlm.reporting.report import write_report
from test_report import write_synthetic

_MEASURE = """<script>
window.addEventListener("load", () => {
  const root = document.documentElement;
  const images = Array.from(document.images).map(i => {
    const box = i.getBoundingClientRect();
    return {src: i.getAttribute("src"), width: box.width, height: box.height, natural: i.naturalWidth};
  });
  const body = document.body.getBoundingClientRect().width;
  const out = document.createElement("pre");
  out.id = "measured";
  out.hidden = true;
  out.textContent = JSON.stringify({images, body, scrollWidth: root.scrollWidth, clientWidth: root.clientWidth});
  document.body.appendChild(out);
});
</script>"""


def browser() -> str | None:
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


def render(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the headless browser on ``page`` (1280 px wide window) with extra arguments."""
    command = [browser() or "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    command += ["--virtual-time-budget=5000", *args, page.resolve().as_uri()]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_six_modality_report_renders_readable_figures_without_sideways_scrolling(tmp_path: Path) -> None:
    if browser() is None:
        pytest.skip("no headless browser (chromium, chromium-browser or google-chrome) on PATH")
    write_synthetic(tmp_path, 6)
    page = write_report(tmp_path)
    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", _MEASURE + "</body>"))
    result = render(measured, "--window-size=1280,2000", "--dump-dom")
    found = re.search(r'<pre id="measured" hidden="">(.*?)</pre>', result.stdout, re.S)
    assert found, result.stderr[-2000:]
    layout = json.loads(html.unescape(found.group(1)))
    assert len(layout["images"]) >= 6
    for image in layout["images"]:
        assert image["natural"] > 0, image  # the PNG loaded
        assert image["height"] >= 150, image  # not shrunk to an unreadable strip
        assert image["width"] <= layout["body"] + 0.5, image
    assert layout["scrollWidth"] <= layout["clientWidth"], layout  # no sideways scrolling
