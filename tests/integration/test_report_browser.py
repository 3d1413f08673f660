"""The report's page in a real browser (Debian's chromium, headless): it renders, every image
loads, nothing is wider than a 1280 pixel window. The page has no script of its own; a copy
of it gets one that writes what the browser measured into the page, read with --dump-dom."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support import png
from tests.support.daemon_log import write_log

ROOT = Path(__file__).resolve().parents[2]
WIDTH = 1280
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]
CHECK = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var out = document.createElement("pre");
  out.id = "browser-check";
  out.textContent = JSON.stringify({
    images: images.length,
    broken: images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                  .map(function (i) { return i.getAttribute("src"); }),
    scrollWidth: document.documentElement.scrollWidth,
    widest: Math.max.apply(null, Array.prototype.map.call(document.body.querySelectorAll("*"),
      function (e) { return e.getBoundingClientRect().right; }))
  });
  document.body.appendChild(out);
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> str:
    browser = shutil.which("chromium")
    assert browser, "chromium is required (scripts/install-deps)"
    profile = tmp_path / f"profile-{time.monotonic_ns()}"  # a fresh one every run
    result = subprocess.run(
        [browser, *FLAGS, f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def measure(tmp_path: Path, html: Path) -> dict[str, Any]:
    page = html.read_text()
    check = html.with_name("browser-check.html")
    check.write_text(page.replace("</body>", CHECK + "</body>"))
    dom = chromium(tmp_path, f"--window-size={WIDTH},900", "--virtual-time-budget=10000",
                   "--dump-dom", check.as_uri())
    found = re.search(r'<pre id="browser-check">(.*?)</pre>', dom)
    assert found, dom[-2000:]
    result: dict[str, Any] = json.loads(found.group(1).replace("&quot;", '"'))
    return result


def test_the_page_renders_in_chromium(tmp_path: Path) -> None:
    now = time.time()
    last = (int(now) // 60 - 1) * 60
    log = tmp_path / "mmd.log"
    write_log(log, [float(t) for t in range(last - 1800, last + 60, 30)])
    result = subprocess.run(
        [sys.executable, "-m", "mmd.cli.report", "--from-file", str(log),
         "--state-directory", str(tmp_path / "state"),
         "--output-directory", str(tmp_path / "html")],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert result.returncode == 0, result.stderr
    html = tmp_path / "html" / "index.html"
    graphs = sorted(p.name for p in html.parent.glob("*.png"))
    assert len(graphs) == 24  # 6 graphs (4 + one child's 2) x 4 periods

    seen = measure(tmp_path, html)
    assert seen["images"] == len(graphs)
    assert seen["broken"] == []
    assert seen["scrollWidth"] <= WIDTH and seen["widest"] <= WIDTH, seen

    shot = tmp_path / "page.png"
    chromium(tmp_path, f"--window-size={WIDTH},1000", f"--screenshot={shot}", html.as_uri())
    image = png.read(shot)
    assert image.width == WIDTH
    blue = png.hex_colour("#4a86e8")  # the sessions graph's area, drawn by rrdtool
    assert any(pixel == blue for row in image.pixels for pixel in row)

    # the check can fail: a missing graph is reported as broken
    (html.parent / graphs[0]).unlink()
    assert measure(tmp_path, html)["broken"] == [graphs[0]]
