"""The run report: self-contained HTML with decodable inline PNGs, a Markdown twin, and (when
Debian's chromium is on PATH) a real headless-browser screenshot in which the plots are visible.

Manual check (docs): ``chromium --headless --no-sandbox --disable-gpu --screenshot=out.png
--window-size=1280,2000 file://$PWD/runs/<recipe>/<run>/report.html`` and look at out.png.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from evalfakes import LABELS
from PIL import Image

from tunebook import cli
from tunebook.evaluation import report

N = 40
SCORES = {"general-guard": [1.0] * 10 + [0.0] * 30, "safety": [0.0] * 20, "format": [0.0] * 20}
TAB_BLUE, TAB_ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's first two line colours


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.h2: list[str] = []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_h2 = tag == "h2"

    def handle_endtag(self, tag):
        self._in_h2 = False if tag == "h2" else self._in_h2

    def handle_data(self, data):
        if self._in_h2:
            self.h2.append(data.strip())


@pytest.fixture
def reported(make_run):
    run = make_run({"triage": [0.0] * N, **SCORES}, {"triage": [1.0] * 20 + [0.0] * 20, **SCORES})
    assert cli.main(["gate", "--run", str(run.path)]) == 0
    files = report.write_report(run)
    return run, files


def pixels_near(img: Image.Image, colour: tuple[int, int, int], tol: int = 30) -> int:
    arr = np.asarray(img.convert("RGB")).astype(int)
    return int((np.abs(arr - np.array(colour)).sum(axis=2) < tol).sum())


def test_html_is_self_contained_with_decodable_plots(reported):
    run, files = reported
    text = files["html"].read_text()
    parsed = Collect()
    parsed.feed(text)
    assert parsed.h2 == ["Loss curves", "Base vs tuned (paired, same held-out items)",
                         "Confusion (rows: reference label, columns: predicted)",
                         "Best items (tuning helped most)", "Worst items (tuning hurt most)",
                         "Blind human review", "Data check", "Provenance", "Resolved recipe"]
    srcs = [a.get("src", "") for t, a in parsed.tags if t == "img"]
    assert len(srcs) == 2 and all(s.startswith("data:image/png;base64,") for s in srcs)
    # nothing is fetched from elsewhere: no external scripts, styles or images
    assert not [a for t, a in parsed.tags if t in ("script", "link")]
    for src in srcs:
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        img.load()
        assert img.format == "PNG" and img.width > 300 and img.height > 150
    loss = Image.open(io.BytesIO(base64.b64decode(srcs[0].split(",", 1)[1])))
    assert pixels_near(loss, TAB_BLUE) > 200 and pixels_near(loss, TAB_ORANGE) > 100
    assert 'id="verdict">SHIP<' in text
    # the gate's table, the best items side by side, the data check and provenance
    assert "McNemar exact (b=0, c=20)" in text and "0.00 &rarr; 1.00" in text
    assert "tuned: " + LABELS[0] in text and "base: dunno" in text
    assert "train 544. PASSED." in text and "deadbeef" in text
    # the decision's description comes from gate.json, not from prose in the report
    gate = json.loads((run.path / "gate.json").read_text())
    assert html.escape(gate["test"]) in text and "Base prompting arms" in text
    # nothing got worse, and the report says so instead of listing improvements as "worst"
    assert "No item got worse." in text
    # guards show their one-sided bound beside the margin
    assert "(&gt;= -0.050)" in text


def test_markdown_twin(reported):
    run, files = reported
    md = files["markdown"].read_text()
    assert md.startswith("# tiny-lora-triage")
    assert "**passed**: data-check: train 544. PASSED." in md
    assert "**Verdict: SHIP**" in md
    # provenance gives the overrides the way a user types them to reproduce the run
    assert "| overrides | axolotl.max_steps=1 axolotl.lora_r=8 |" in md
    assert re.search(r"\| triage \| acc \| primary \| 40 \| 0\.000 \| 0\.500 \| \+0\.500 \|", md)
    for png in ("report-loss.png", "report-deltas.png"):
        assert f"]({png})" in md
        Image.open(run.path / png).verify()


def test_report_without_gate_says_so(make_run):
    run = make_run({"triage": [0.0] * N, **SCORES}, {"triage": [0.0] * N, **SCORES})
    (run.path / "eval" / "meta.json").unlink()
    assert cli.main(["report", "--run", str(run.path)]) == 0
    text = (run.path / "report.html").read_text()
    assert ">not evaluated<" in text and "No evaluation yet." in text


@pytest.mark.skipif(shutil.which("chromium") is None and not os.environ.get("CI"),
                    reason="Debian chromium not installed (`make setup-system`); "
                           "the structural test above still runs (CI runs this one too)")
def test_report_renders_in_headless_chromium(reported, tmp_path: Path):
    _run, files = reported
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--no-first-run", f"--user-data-dir={profile}", f"--screenshot={shot}",
             "--window-size=1280,2000", files["html"].resolve().as_uri()],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    img = Image.open(shot)
    assert img.size == (1280, 2000)
    # the browser drew the plots: matplotlib's line colours are on the page, and the verdict
    # badge's green is there too
    assert pixels_near(img, TAB_BLUE) > 150, "loss curve not visible"
    assert pixels_near(img, TAB_ORANGE) > 80, "validation curve not visible"
    assert pixels_near(img, (0x1a, 0x7f, 0x37), tol=20) > 200, "verdict badge not visible"
