"""Figures and the HTML report, from the committed fixtures only (no torch, no network)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from vse import figures
from vse import html as report_html
from vse.vision import fixtures

NEURON = "efficientnet_lite0/_conv_head/5"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- thumbnails --------------------------------------------------------------------------------
def test_thumbnails_atlas_matches_the_probe_set():
    probe = fixtures.load_probe()
    thumbs = fixtures.load_thumbnails()
    assert len(thumbs) == len(probe) == 700
    assert {t.size for t in thumbs} == {(fixtures.THUMB_SIZE, fixtures.THUMB_SIZE)}
    assert {t.mode for t in thumbs} == {"RGB"}
    assert np.array_equal(np.asarray(fixtures.load_thumbnail(699)), np.asarray(thumbs[699]))
    # real images, not blank tiles; the one exception is a white stamp on transparency, white on white
    # for the model too (open_image composites on white)
    blank = [i for i, t in enumerate(thumbs) if np.asarray(t).min() >= 250]
    assert [probe[i]["id"] for i in blank] == ["naturalforces/lightningbolt.png"]
    with pytest.raises(IndexError, match="700 images"):
        fixtures.load_thumbnail(700)
    path = fixtures.fixtures_root() / "tuxpaint" / fixtures.THUMBNAILS_FILE
    assert path.stat().st_size < 2_500_000


# -- the grid ----------------------------------------------------------------------------------
def test_grid_is_deterministic_png():
    a = figures.top_images_grid(NEURON)
    b = figures.top_images_grid(NEURON)
    assert a.startswith(PNG_MAGIC)
    assert a == b
    assert b"Software" not in a and b"tEXt" not in a


def test_grid_shows_the_top_activating_rows(monkeypatch):
    acts, ids = fixtures.load_activations("_blocks.15")
    neuron = "efficientnet_lite0/_blocks.15/17"
    top = figures.top_images(neuron, 12)
    want = np.argsort(-acts[:, 17], kind="stable")[:12]
    assert [t["row"] for t in top] == want.tolist()
    assert [t["id"] for t in top] == [ids[r] for r in want]
    assert all(a["activation"] >= b["activation"] for a, b in zip(top, top[1:]))
    assert top[0]["activation"] == pytest.approx(float(acts[:, 17].max()))

    asked = []
    real = fixtures.load_thumbnail
    monkeypatch.setattr(fixtures, "load_thumbnail", lambda i, **kw: asked.append(i) or real(i, **kw))
    figures.top_images_grid(neuron, n=5)
    assert asked == want[:5].tolist()


def test_grid_rejects_bad_neurons():
    with pytest.raises(ValueError, match="1280 units"):
        figures.top_images("efficientnet_lite0/_conv_head/1280")
    with pytest.raises(ValueError, match="only for efficientnet_lite0"):
        figures.top_images("resnet18/layer4/3")
    with pytest.raises(ValueError, match="MODEL/LAYER/INDEX"):
        figures.top_images("efficientnet_lite0/_conv_head")


# -- the HTML report -------------------------------------------------------------------------
def _fake_results(root: Path) -> Path:
    exp = root / "results" / "weight-label-demo"
    exp.mkdir(parents=True)
    (exp / "table.md").write_text(
        "# weight-label-demo\n\nBest of N per method:\n\n"
        "| neuron | method | explanation | score |\n|---|---|---|---|\n"
        f"| {NEURON} | weight-label | trucks <b>and</b> sledges | 41.20 ± 3.10 (4) |\n"
        f"| {NEURON} | clip-dissect | a \\| pipe | 12.00 ± 4.00 (6) |\n"
        "\nEvery explanation:\n\n"
        "| a | b |\n|:--|--:|\n| 1 < 2 | x & y |\n"
        "\nLLM usage: 3 calls\n\n![pass scores](scores.png)\n![missing](nowhere.png)\n",
        encoding="utf-8")
    records = [
        {"neuron": NEURON, "method": "weight-label", "explanation": "trucks <b>and</b> sledges", "target": "weight-label",
         "mean": 41.2, "half_width": 3.1, "passes": 4, "hit_cap": False},
        {"neuron": NEURON, "method": "weight-label", "explanation": "vehicles", "target": "weight-label",
         "mean": 20.0, "half_width": 4.9, "passes": 10, "hit_cap": True},
        {"neuron": "efficientnet_lite0/_blocks.15/17", "method": "clip-dissect", "explanation": "apple",
         "target": "caption-activation", "mean": 0.0, "half_width": 2.0, "passes": 3, "hit_cap": False},
    ]
    (exp / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (exp / "config.json").write_text("{}\n", encoding="utf-8")
    (exp / "scores.png").write_bytes(figures.top_images_grid(NEURON, n=1))  # any PNG will do
    study = root / "results" / "a-study"
    study.mkdir()
    (study / "summary.json").write_text("{}\n", encoding="utf-8")
    (study / "table.md").write_text("# a-study\n\n| strategy | mean |\n|---|---|\n| Top | 1.0 |\n", encoding="utf-8")
    return root / "results"


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("href", "src"):
                self.refs.append(v)


def test_report_tables_escaping_and_links(tmp_path):
    results = _fake_results(tmp_path)
    files = report_html.report_files(results)
    page = files["report.html"].decode("utf-8")
    assert page == report_html.build_report(results)
    assert files == report_html.report_files(results)  # deterministic
    parser = _Refs()
    parser.feed(page)

    # one <table> per Markdown table (3) plus one explanations table per neuron (2)
    assert parser.tags.count("table") == 3 + 2
    assert "<style>" in page and "<script" not in page
    assert "trucks &lt;b&gt;and&lt;/b&gt; sledges" in page and "<b>" not in page
    assert "1 &lt; 2" in page and "x &amp; y" in page and "a | pipe" in page

    # every relative reference points at a file report_files produces or that exists under results
    relative = [r for r in parser.refs if not r.startswith("#")]
    assert relative and all(not urlparse(r).scheme and not r.startswith("/") for r in relative)
    for ref in relative:
        rel = unquote(ref)
        assert rel in files or (results / rel).is_file(), ref
    assert "nowhere.png" not in relative

    grids = sorted(k for k in files if k != "report.html")
    assert grids == ["weight-label-demo/top-images-efficientnet_lite0___blocks.15__17.png",
                     "weight-label-demo/top-images-efficientnet_lite0___conv_head__5.png"]
    assert all(files[g].startswith(PNG_MAGIC) for g in grids)
    assert files[grids[1]] == figures.top_images_grid(NEURON)
    for name in ("config.json", "results.jsonl", "table.md", "scores.png", grids[0].split("/")[1]):
        assert f"weight-label-demo/{name}" in relative
    assert "a-study/summary.json" in relative
    assert page.index("a-study") < page.index("weight-label-demo")  # folders sorted

    # the grid sits beside the neuron's explanations and scores; the best of N per (method, target) in bold
    block = page[page.index(f'id="weight-label-demo/{NEURON}"'):]
    block = block[:block.index("</table>")]
    assert "top-images-efficientnet_lite0___conv_head__5.png" in block
    assert '<tr class="best"><td>weight-label</td><td>weight-label</td><td>trucks' in block
    assert "20.00 ± 4.90 (10, cap)" in block


def test_report_is_stable_once_grids_are_written(tmp_path):
    results = _fake_results(tmp_path)
    first = report_html.report_files(results)
    for rel, data in first.items():
        (results / rel).write_bytes(data)
    assert report_html.report_files(results) == first


def test_markdown_tables():
    out = report_html.markdown_to_html("intro <x>\n\n| h1 | h2 |\n|---|---|\n| a | `c<d>` |\ntail")
    assert out == ("<p>intro &lt;x&gt;</p>\n<table>\n<thead><tr><th>h1</th><th>h2</th></tr></thead>\n<tbody>\n"
                   "<tr><td>a</td><td><code>c&lt;d&gt;</code></td></tr>\n</tbody>\n</table>\n<p>tail</p>")
