"""Figures and the HTML report, from the committed fixtures only (no torch, no network)."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

from vse.outputs import report as report_html
from vse.vision import fixtures

REPO = Path(__file__).resolve().parents[2]

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


# -- the HTML report -------------------------------------------------------------------------
def _fake_results(root: Path) -> Path:
    exp = root / "results" / "weight-label-demo"
    exp.mkdir(parents=True)
    long_rows = "".join(f"| {k} | {k * k} |\n" for k in range(13))
    (exp / "table.md").write_text(
        "# weight-label-demo\n\nBest of N per method:\n\n"
        "| neuron | method | explanation | score |\n|---|---|---|---|\n"
        f"| {NEURON} | weight-label | trucks <b>and</b> sledges | 41.20 ± 3.10 (4) |\n"
        f"| {NEURON} | clip-dissect | a \\| pipe | 12.00 ± 4.00 (6) |\n"
        "\nEvery explanation:\n\n"
        "| a | b |\n|:--|--:|\n| 1 < 2 | x & y |\n"
        "\nA long one:\n\n| k | k2 |\n|---|---|\n"
        + long_rows
        + "\nLLM usage: 3 calls\n\n![pass scores](scores.png)\n![missing](nowhere.png)\n"
        "\nEvery number above replays from: `cassettes/weight-label-demo/x.json.gz`\n",
        encoding="utf-8",
    )
    prov = {"protocol": "uniform"}
    records = [
        {
            "neuron": NEURON,
            "method": "weight-label",
            "explanation": "trucks <b>and</b> sledges",
            "target": "weight-label",
            "mean": 41.2,
            "half_width": 3.1,
            "passes": 4,
            "hit_cap": False,
            "polarity": "negative",
            "provenance": prov,
            "details": [{"items": [3, 7], "true": [10, 0], "predicted": [8.5, 1.0]}],
        },
        {
            "neuron": NEURON,
            "method": "weight-label",
            "explanation": "vehicles",
            "target": "weight-label",
            "mean": 20.0,
            "half_width": 4.9,
            "passes": 10,
            "hit_cap": True,
            "polarity": "negative",
            "provenance": prov,
        },
        {
            "neuron": "efficientnet_lite0/_blocks.15/17",
            "method": "clip-dissect",
            "explanation": "apple",
            "target": "caption-activation",
            "mean": 0.0,
            "half_width": 2.0,
            "passes": 3,
            "hit_cap": False,
            "provenance": prov,
        },
    ]
    (exp / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    (exp / "config.json").write_text(
        json.dumps(
            {
                "experiment": {
                    "model": "efficientnet_lite0",
                    "layer": "_conv_head",
                    "polarity": "negative",
                    "explain": {"max_tokens": 60},
                },
                "cassettes": ["cassettes/weight-label-demo/x.json.gz"],
            }
        )
        + "\n",
        encoding="utf-8",
    )
    (exp / "scores.png").write_bytes(PNG_MAGIC + b"any PNG will do")
    study = root / "results" / "a-study"
    study.mkdir()
    (study / "summary.json").write_text("{}\n", encoding="utf-8")
    (study / "table.md").write_text("# a-study\n\n| strategy | mean |\n|---|---|\n| Top | 1.0 |\n", encoding="utf-8")
    power = root / "results" / "power-study"
    power.mkdir()
    (power / "config.json").write_text(
        json.dumps({"experiment": {"model": "efficientnet_lite0", "layer": "_conv_head"}}), encoding="utf-8"
    )
    (power / "explanations.jsonl").write_text(
        json.dumps(
            {
                "neuron": "efficientnet_lite0/_conv_head/9",
                "method": "weight-label",
                "polarity": "positive",
                "calls": 1,
                "completion_tokens": 60,
                "explanation": "things such as a",
            }
        )
        + "\n",
        encoding="utf-8",
    )
    (power / "scores.csv").write_text(
        "unit,method,index,explanation,target,protocol,n_items,corr,acc,mse,mae\n"
        "9,weight-label,0,things such as a,weight-label,uniform,40,9.5,0.1,12,3\n",
        encoding="utf-8",
    )
    return root / "results"


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags, self.neurons = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k in ("href", "src"):
                self.refs.append(v)
            if k == "data-neuron" and tag == "article":
                self.neurons.append(v)


def test_report_sections_cards_escaping_folding_and_links(tmp_path):
    results = _fake_results(tmp_path)
    files = report_html.report_files(results)
    page = files["report.html"].decode("utf-8")
    assert page == report_html.build_report(results)
    assert files == report_html.report_files(results)  # deterministic
    parser = _Refs()
    parser.feed(page)

    # the power study first, then the rest by name
    assert page.index('id="power-study"') < page.index('id="a-study"') < page.index('id="weight-label-demo"')
    # a card for every neuron of every experiment, the power study's read from its scores.csv
    assert sorted(parser.neurons) == sorted(
        [NEURON, "efficientnet_lite0/_blocks.15/17", "efficientnet_lite0/_conv_head/9"]
    )
    power = page[page.index('id="power-study"') : page.index('id="a-study"')]
    assert (
        "things such as a" in power and "9.50" in power and '<mark class="cut"' in power
    )  # cut: 60 of 60 tokens in one call
    assert "1 explanation (1 cut off by the token budget)" in power
    # polarity always shown: the negative run's card says so, and shows the bottom images
    card = page[page.index(f'data-neuron="{NEURON}" data-polarity') :]
    card = card[: card.index("</article>")]
    assert 'class="pol pol-negative"' in card and "Bottom-activating probe images (12 of 700" in card
    assert "Top-activating" not in card and "Lowest-weighted classes" in card
    assert "<svg" in card and "true 10, simulated 8.50" in card  # one pass's items, true vs simulated
    assert "41.20 ± 3.10 (4)" in card and "20.00 ± 4.90 (10, cap)" in card

    assert "trucks &lt;b&gt;and&lt;/b&gt; sledges" in page and "<b>trucks" not in page
    assert "1 &lt; 2" in page and "x &amp; y" in page and "a | pipe" in page
    assert "<details><summary>table of 13 rows</summary>" in page  # long tables folded, short ones not
    assert "<details><summary>1 cassette replayed</summary>" in page
    assert "<details><summary>Every number above replays from</summary>" in page
    assert "<h3>weight-label-demo</h3>" not in page  # the table's own title is the section's heading
    # the index of every explanation, each row linking to its card in its section
    assert page.count('<tr data-neuron="') == 4 and f'href="#weight-label-demo/{NEURON.replace("/", "__")}"' in page

    # every relative reference points at a file report_files produces or that exists under results
    relative = [r for r in parser.refs if not r.startswith("#")]
    assert relative and all(not urlparse(r).scheme and not r.startswith("/") for r in relative)
    for ref in relative:
        rel = unquote(ref)
        # a study's full text is linked from the report to the checkout's docs/ (results/../docs/...)
        in_docs = rel.startswith("../docs/") and (REPO / rel.removeprefix("../")).is_file()
        assert rel in files or (results / rel).is_file() or in_docs, ref
    assert "nowhere.png" not in relative
    images = sorted(k for k in files if k != "report.html")
    assert images and all(k.startswith("img/tuxpaint/") and files[k].startswith(PNG_MAGIC) for k in images)
    assert "base64" not in page
    for name in ("config.json", "results.jsonl", "table.md"):
        assert f"weight-label-demo/{name}" in relative
    assert "a-study/summary.json" in relative


def test_report_is_stable_once_its_images_are_written(tmp_path):
    results = _fake_results(tmp_path)
    first = report_html.report_files(results)
    for rel, data in first.items():
        (results / rel).parent.mkdir(parents=True, exist_ok=True)
        (results / rel).write_bytes(data)
    assert report_html.report_files(results) == first  # results/img/ is not read as an experiment


def test_markdown_tables():
    out = report_html.markdown_to_html("intro <x>\n\n| h1 | h2 |\n|---|---|\n| a | `c<d>` |\ntail")
    assert out == (
        "<p>intro &lt;x&gt;</p>\n<table>\n<thead><tr><th>h1</th><th>h2</th></tr></thead>\n<tbody>\n"
        "<tr><td>a</td><td><code>c&lt;d&gt;</code></td></tr>\n</tbody>\n</table>\n<p>tail</p>"
    )


def test_the_paper_tables_sections_show_the_papers_numbers_beside_vses(tmp_path):
    study = tmp_path / "results" / "table1-second-last-layer"
    study.mkdir(parents=True)
    (study / "methods.csv").write_text(
        "method,target,protocol,best,mean,n_neurons,n_explanations\n"
        "weight-label,weight-label,uniform,40.9234,31.58,3,3\n"
        "weight-label,weight-label,top-and-random-heldout,41.29,32.3,3,3\n",
        encoding="utf-8",
    )
    page = report_html.build_report(tmp_path / "results")
    row = page[page.index("<tr><td>weight-label</td>") :]
    row = row[: row.index("</tr>")]
    # vse's uniform best (mean) beside the paper's Table 1 cell; the held-out row is not the paper's protocol
    assert '<td class="num">40.92 (31.58)</td><td class="num">51.58</td>' in row and "41.29" not in row
