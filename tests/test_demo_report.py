"""The whole quick demo, and its report in headless Chromium (slow: run with -m slow)."""

import json
import subprocess
import sys

import pytest

from browser import check_page


@pytest.mark.slow
def test_quick_demo_report_renders_every_section(tmp_path):
    out = tmp_path / "demo"
    done = subprocess.run([sys.executable, "-m", "medgap", "demo", "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == ["data", "harmonize", "transfer", "synthesize"]
    seen = check_page(out / "report.html", tmp_path / "report.png")
    assert seen["broken"] == []
    assert seen["images"] == sum(len(s["figures"]) for s in summary.values())
    assert len(seen["sections"]) == 4 and all(s["height"] > 200 for s in seen["sections"])
