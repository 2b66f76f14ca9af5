"""Open an HTML page in headless Chromium: check that images load and sections render, take a screenshot."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const sections = [...document.querySelectorAll('section')].map(s => ({
    id: s.id, height: s.getBoundingClientRect().height, heading: !!s.querySelector('h2')}));
  document.body.setAttribute('data-check', JSON.stringify({
    images: imgs.length,
    broken: imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.alt),
    sections: sections}));
});
</script>"""

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars",
]


def chromium() -> str:
    """The Chromium binary; the test fails (or skips outside CI) when it is missing."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = "headless Chromium not found (make test installs Debian's chromium package when run as root)"
    if os.environ.get("MEDGAP_REQUIRE_BROWSER"):
        pytest.fail(message)
    pytest.skip(message)


def _run(args: list[str], profile: Path) -> str:
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def check_page(html: Path, screenshot: Path) -> dict:
    """Load ``html`` in Chromium; return what the in-page check saw; write a PNG screenshot."""
    with tempfile.TemporaryDirectory() as profile:
        probe = html.with_name(f".probe-{html.name}")
        probe.write_text(html.read_text().replace("</body>", CHECK_SCRIPT + "</body>"))
        try:
            dom = _run(["--virtual-time-budget=15000", "--dump-dom", probe.resolve().as_uri()], Path(profile) / "a")
        finally:
            probe.unlink()
        _run(["--window-size=1280,2400", f"--screenshot={screenshot}", html.resolve().as_uri()], Path(profile) / "b")
    match = re.search(r"data-check=\"([^\"]*)\"", dom)
    assert match, "the page's load handler never ran"
    text = match.group(1).replace("&quot;", '"').replace("&amp;", "&")
    return json.loads(text)
