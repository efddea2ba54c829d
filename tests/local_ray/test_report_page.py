"""report.html: every table and plot of report.md in one self-contained page (plots as
PNG data URIs, no network), checked from the file itself and in headless Chromium."""

from __future__ import annotations

import base64
import html.parser
import io
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from raysim.cli import main
from raysim.report import RunRecord, compare_runs
from raysim.report.render import write_report
from tests import browser

ROOT = Path(__file__).resolve().parents[2]
PNG_URI = "data:image/png;base64,"


class Page(html.parser.HTMLParser):
    """What a report page holds: headings, each table's header and rows, images, links."""

    def __init__(self, text: str):
        super().__init__()
        self.headings: list[str] = []
        self.tables: list[dict[str, list]] = []
        self.images: list[dict[str, str]] = []
        self.urls: list[str] = []
        self.tags: set[str] = set()
        self._text: list[str] | None = None
        self._row: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.add(tag)
        self.urls += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag in ("h1", "h2", "th", "td"):
            self._text = []
        elif tag == "table":
            self.tables.append({"header": [], "rows": []})
        elif tag == "tr":
            self._row = []
        elif tag == "img":
            self.images.append(attrs)

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag in ("h1", "h2"):
            self.headings.append("".join(self._text))
        elif tag in ("th", "td"):
            self._row.append("".join(self._text))
        elif tag == "tr":
            part = "header" if not self.tables[-1]["header"] else "rows"
            if part == "header":
                self.tables[-1]["header"] = self._row
            else:
                self.tables[-1]["rows"].append(self._row)
        if tag in ("h1", "h2", "th", "td"):
            self._text = None


def markdown_parts(report: str) -> tuple[list[str], list[list[str]], list[str]]:
    """report.md's headings (levels 1 and 2), its tables' headers, its images' names."""
    headings = re.findall(r"^#{1,2} (.+)$", report, re.M)
    lines = report.splitlines()
    headers = [
        [c.strip() for c in line.strip("|").split("|")]
        for line, below in zip(lines, lines[1:], strict=False)
        if line.startswith("| ") and below.startswith("|---")
    ]
    images = re.findall(r"^!\[[^\]]*\]\(([^)]+)\)$", report, re.M)
    return headings, headers, images


def check_page(out: Path) -> Page:
    """report.html has everything report.md has, its images are the PNGs written beside it,
    and nothing in it points outside the file."""
    text = (out / "report.html").read_text()
    page = Page(text)
    headings, headers, images = markdown_parts((out / "report.md").read_text())
    assert page.headings == headings
    assert [t["header"] for t in page.tables] == headers
    assert [i["alt"] + ".png" for i in page.images] == images
    for image, name in zip(page.images, images, strict=True):
        assert image["src"].startswith(PNG_URI), name
        data = base64.b64decode(image["src"][len(PNG_URI) :])
        assert data == (out / name).read_bytes()
        with Image.open(io.BytesIO(data)) as png:
            assert png.format == "PNG" and png.width > 100
    assert all(u.startswith("#") or u.startswith(PNG_URI) for u in page.urls), page.urls
    assert not re.search(r"https?://|url\(|@import", re.sub(r'src="data:[^"]+"', "", text))
    assert not {"script", "link", "iframe", "object"} & page.tags
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    return page


def record(name: str, nodes: int, rates: list[float], accs: list[float]) -> RunRecord:
    """A finished built-in run read back, as compare sees one (no trace: no timeline)."""
    epochs = [
        {"epoch": i + 1, "samples_per_s": rate, "test_accuracy": acc, "train_loss": 1 / (i + 1),
         "epoch_time_s": 100 / rate, "train_samples": 100, "wall_time_s": 10.0 * (i + 1)}
        for i, (rate, acc) in enumerate(zip(rates, accs, strict=True))
    ]  # fmt: skip
    summary_nodes = [
        {"rank": r, "node_id": f"node-{r}", "samples_per_s": rates[-1] / nodes,
         "step_time_s": 0.05 + 0.01 * r, "peak_rss_bytes": 900e6, "memory_peak_bytes": 200e6,
         "memory_budget_bytes": 2.3e9}
        for r in range(nodes)
    ]  # fmt: skip
    return RunRecord(
        run_dir=Path(name),
        config={"num_nodes": nodes, "batch_size": 8, "gpu_fraction": 0.23},
        summary={"status": "finished", "nodes": summary_nodes,
                 "environment": {"cpus": 2, "simulated_device": True}},
        epochs=epochs,
        ranks=[],
    )  # fmt: skip


def test_the_page_has_every_table_and_plot_of_report_md(tmp_path):
    runs = [record("one", 1, [50, 60], [0.5, 0.8]), record("two <b>", 2, [70, 90], [0.6, 0.9])]
    write_report(compare_runs(runs), runs, tmp_path, html=True)
    page = check_page(tmp_path)
    assert "Per node" in page.headings and "Throughput and scaling" in page.headings
    per_node = next(t for t in page.tables if t["header"][:2] == ["run", "node"])
    assert [r[:2] for r in per_node["rows"]] == [
        ["one", "node-0"], ["two <b>", "node-0"], ["two <b>", "node-1"],
    ]  # fmt: skip
    assert per_node["rows"][2][3] == "60 ms"
    assert "two &lt;b&gt;" in (tmp_path / "report.html").read_text(), "cells are escaped"
    assert "| two <b> | node-1 | 45.0 | 60 ms | 200 MB | 2300 MB | 900 MB |" in (
        (tmp_path / "report.md").read_text()
    )
    assert len(page.images) == 4


def test_without_html_there_is_no_page(tmp_path):
    runs = [record("one", 1, [50, 60], [0.5, 0.8])]
    write_report(compare_runs(runs), runs, tmp_path)
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "report.html").exists()


# A real run, compared with --html, opened in Chromium.


@pytest.fixture(scope="module")
def real_report(short_run, tmp_path_factory):
    """`raysim compare --html` on the session's short real 2-node run (its 3 steps traced, as
    every run's first 3 steps are by default), projected onto a real cluster: every part of
    the report has something in it."""
    assert short_run.config.trace_steps >= short_run.config.max_steps_per_epoch
    out = tmp_path_factory.mktemp("report") / "report"
    target = "gpus_per_node=8,intra=nvlink,network=100gbe"
    assert main(["compare", str(short_run.run_dir), "--out", str(out), "--html",
                 "--target", target]) == 0  # fmt: skip
    return out


def probe(out: Path) -> Path:
    """A copy of the page with a script that writes each image's decoded width into the
    DOM, so --dump-dom tells whether Chromium decoded it (the page itself runs none)."""
    script = (
        "<script>addEventListener('load', () => document.querySelectorAll('img').forEach("
        "i => i.setAttribute('data-natural-width', i.naturalWidth)));</script>"
    )
    text = (out / "report.html").read_text()
    text = text.replace("default-src 'none';", "script-src 'unsafe-inline';")
    path = out.parent / "probe.html"
    path.write_text(text.replace("</body>", script + "</body>"))
    return path


@pytest.mark.slow
def test_the_report_page_of_a_real_run_opens_in_chromium_with_its_plots(real_report, tmp_path):
    page = check_page(real_report)
    names = {i["alt"] for i in page.images}
    assert {"loss_vs_epoch", "projected_throughput_vs_machines", "timeline_short"} <= names
    assert any(h.startswith("Projected on a real cluster") for h in page.headings)
    assert {"Per node", "Timelines", "Plots"} <= set(page.headings)

    url = (real_report / "report.html").as_uri()
    shown = browser.text(browser.dom(url))
    for header in ("samples/s", "peak per node", "projected samples/s", "step time"):
        assert header in shown
    assert "short node-1" in shown, "the per-node table's rows"
    widths = re.findall(r'data-natural-width="(\d+)"', browser.dom(probe(real_report).as_uri()))
    assert len(widths) == len(page.images) and all(int(w) > 100 for w in widths), widths

    shot = tmp_path / "report_page.png"
    browser.screenshot(url, shot, size="1400,4200")
    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 200, "a page of text and plots, not blank"
    if os.environ.get("RAYSIM_DOCS_SCREENSHOTS") == "1":  # retake docs/report_page.png
        shutil.copy(shot, ROOT / "docs" / "report_page.png")
