"""`vse label --probe` on a tiny model and a generated probe folder, then `vse atlas`: the files and the HTML.

The browser checks of the same site are in test_atlas_browser.py.
"""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from vse.cli.main import main
from vse.method.records import ExplanationRecord, Provenance, ScoreRecord
from vse.outputs.atlas import Card, Explanation, Score, SimItem, cards_from_records, cut_reason, render_card

from .atlas_helpers import CAPTIONS, EXPLANATION, fake_llm, label_args, make_probe, register_tinynet

PROV = Provenance("m", "completions", None, None, "h", (), 0)


def _said(neuron: str, method: str, text: str, polarity: str = "positive", completion_tokens: int = 10) -> dict:
    """An `ExplanationRecord`'s JSON, as `vse explain` and `vse label` write it."""
    return ExplanationRecord(neuron, method, polarity, text, 0, 1, 100, completion_tokens, PROV).to_json()


def _scored(neuron: str, method: str, text: str, target: str, mean: float) -> dict:
    """A `ScoreRecord`'s JSON with one exact pass and no items kept."""
    return ScoreRecord(
        mean=mean, half_width=0.0, passes=1, hit_cap=False, scores=[mean], accuracy=0.5, mse=1.0, mae=1.0,
        failed_passes=0, calls=0, prompt_tokens=0, completion_tokens=0, neuron=neuron, method=method,
        explanation=text, explanation_seed=0, target=target, polarity="positive", provenance=PROV,
    ).to_json()  # fmt: skip


def _run(*args):
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r


@pytest.fixture
def labelled(tmp_path, monkeypatch):
    """A probe folder, the tiny model, and `vse label tinynet/conv --probe DIR --score` run once."""
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    register_tinynet(monkeypatch)
    seen = fake_llm(monkeypatch)
    probe = make_probe(tmp_path / "shapes")
    r = _run(*label_args(probe))
    assert r.exit_code == 0, r.output
    return tmp_path, probe, seen


def test_label_probe_explains_and_scores_every_unit_and_resumes(labelled):
    tmp_path, probe, seen = labelled
    out = tmp_path / "labels" / "tinynet__conv__caption-activation__shapes.jsonl"
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["unit"] for r in recs) == [0, 1, 2, 3]  # the conv layer's 4 channels
    for r in recs:
        assert r["neuron"] == f"tinynet/conv/{r['unit']}"
        assert r["explanations"][0]["explanation"] == EXPLANATION
        [score] = r["scores"]
        assert score["target"] == "caption-activation" and score["details"]
        # the simulated items are the probe folder's captions, not the fixtures'
        item_prompts = [s["body"]["prompt"] for s in seen if s["body"].get("max_tokens") == 1]
        assert any(c in p for p in item_prompts for c in CAPTIONS)
    assert all(s["body"]["model"] == "scripted" for s in seen)
    n_calls = len(seen)
    r = _run(*label_args(probe))
    assert r.exit_code == 0 and "skipped 4 already done" in r.output
    assert len(seen) == n_calls  # resumed: nothing asked again
    assert list((tmp_path / ".vse-cache").glob("tinynet__conv__caption-activation__shapes-*.npz"))


def test_label_probe_refuses_pairs_it_cannot_compute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    register_tinynet(monkeypatch)
    probe = make_probe(tmp_path / "shapes")
    r = CliRunner().invoke(
        main, ["label", "tinynet/conv", "--probe", str(probe), "--method", "weight-clip", "--units", "0:2"]
    )
    assert (
        r.exit_code == 2 and "with --probe, methods and targets can be caption-activation or weight-label" in r.output
    )


def test_label_probe_without_captions_fails_before_any_call(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    register_tinynet(monkeypatch)
    seen = fake_llm(monkeypatch)
    probe = make_probe(tmp_path / "shapes")
    (probe / "img03.txt").unlink()
    r = CliRunner().invoke(
        main,
        [
            "label",
            "tinynet/conv",
            "--probe",
            str(probe),
            "--method",
            "caption-activation",
            "--base-url",
            "http://llm.test/v1",
        ],
    )
    assert r.exit_code in (1, 2) and "img03" in r.output and "caption" in r.output and "Traceback" not in r.output
    assert seen == []


def test_atlas_writes_an_index_and_one_card_per_unit_with_image_files(labelled):
    tmp_path, probe, _ = labelled
    labels = tmp_path / "labels" / "tinynet__conv__caption-activation__shapes.jsonl"
    r = _run("atlas", str(labels), "--out", str(tmp_path / "site"), "--probe", str(probe))
    assert r.exit_code == 0, r.output
    site = tmp_path / "site"
    index = (site / "index.html").read_text()
    assert index.count('<tr data-neuron="tinynet/conv/') == 4
    assert 'data-key="score-0"' in index and "caption-activation · uniform" in index
    for unit in range(4):
        card = (site / "cards" / f"tinynet__conv__{unit}.html").read_text()
        assert f'data-neuron="tinynet/conv/{unit}"' in card
        assert "Top-activating probe images (12 of 12)" in card
        assert "True vs simulated values per item" in card and "<svg" in card
        imgs = re.findall(r'<img[^>]* src="\.\./(img/[^"]+)"', card)
        assert len(imgs) == 12 and all((site / p).is_file() for p in imgs)
        assert "base64" not in card  # images are files, not inline data
        assert sum(c in card for c in CAPTIONS) == 12
    # a second build is byte-identical (deterministic: sorted, no timestamps)
    before = {p.relative_to(site): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    _run("atlas", str(labels), "--out", str(site), "--probe", str(probe))
    assert before == {p.relative_to(site): p.read_bytes() for p in site.rglob("*") if p.is_file()}


def test_atlas_of_nothing_is_one_clear_line(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"unit": 3, "status": "failed", "error": "boom"}\n')
    r = CliRunner().invoke(main, ["atlas", str(empty), "--out", str(tmp_path / "site")])
    assert r.exit_code == 2 and "no explanations in" in r.output and "Traceback" not in r.output


def test_cut_reason_from_the_record():
    assert cut_reason({"cut": True}).startswith("cut off by the token budget (finish_reason")
    assert (
        cut_reason({"completion_tokens": 60, "calls": 1}, 60)
        == "cut off by the token budget (60 of max_tokens 60 used)"
    )
    assert cut_reason({"completion_tokens": 59, "calls": 1}, 60) == ""
    assert cut_reason({"completion_tokens": 60, "calls": 2}, 60) == ""  # two calls: a retry, not proof of a cut
    assert cut_reason({"explanation": "birds and insects"}) == ""  # no cost recorded: not judged from punctuation


def test_cards_group_every_record_shape_per_neuron_and_sort_units_numerically():
    expl = {
        "neuron": "m/l/10",
        "method": "weight-label",
        "polarity": "negative",
        "explanation": "cats",
        "calls": 1,
        "completion_tokens": 60,
    }
    score = {
        "neuron": "m/l/10",
        "method": "weight-label",
        "polarity": "negative",
        "explanation": "cats",
        "target": "weight-label",
        "mean": 12.5,
        "half_width": 3.0,
        "passes": 4,
        "provenance": {"protocol": "uniform"},
        "details": [{"items": [3, 1], "true": [5, 0], "predicted": [4.5, 1.0]}],
    }
    study_row = {
        "neuron": "m/l/2",
        "method": "clip-dissect",
        "explanation": "dog",
        "target": "caption-activation",
        "protocol": "top-and-random-heldout",
        "mean": 7.0,
    }
    label = {"unit": 9, "neuron": "m/l/9", "explanations": [_said("m/l/9", "weight-label", "cats")], "scores": []}
    cards, failed = cards_from_records([expl, score, study_row, label, {"unit": 4, "status": "failed", "error": "x"}])
    assert [c.neuron for c in cards] == ["m/l/2", "m/l/9", "m/l/10"]
    assert failed == ["unit 4: x"]
    c10 = cards[2]
    [e] = c10.explanations
    assert e.cut and e.polarity == "negative" and c10.polarities == ("negative",)
    [s] = e.scores
    assert (s.column, s.mean, s.passes) == ("weight-label · uniform", 12.5, 4)
    assert s.items == (SimItem(3, 5.0, 4.5), SimItem(1, 0.0, 1.0))
    assert cards[0].explanations[0].scores[0].column == "caption-activation · top-and-random-heldout"


def test_a_card_shows_polarity_cut_scores_and_escapes_text():
    card = Card(
        "m/l/1",
        (
            Explanation(
                "weight-label",
                "both",
                "<b>cats</b> & dogs",
                "cut off by the token budget",
                (Score("weight-label", "uniform", 10.0, 2.0, 3, False, (SimItem(0, -4, -3.5, "cat"),), 1),),
            ),
        ),
    )
    html = render_card(card)
    assert 'data-neuron="m/l/1"' in html and 'class="pol pol-both"' in html
    assert "&lt;b&gt;cats&lt;/b&gt; &amp; dogs" in html and "<b>cats</b>" not in html
    assert '<mark class="cut"' in html and "10.00 ± 2.00 (3)" in html
    assert "cat: true -4, simulated -3.50" in html  # the signed item in the plot's tooltip


def test_atlas_reads_results_folders_too(tmp_path):
    """`vse atlas results/power-study ...`: a study's explanations and its scores.csv make the cards
    (what `make atlas-demo` does)."""
    folder = tmp_path / "power-study"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"experiment": {"model": "efficientnet_lite0", "layer": "_conv_head"}})
    )
    (folder / "explanations.jsonl").write_text(
        json.dumps(
            {
                "neuron": "efficientnet_lite0/_conv_head/9",
                "method": "weight-label",
                "polarity": "positive",
                "explanation": "hats",
                "calls": 1,
                "completion_tokens": 5,
            }
        )
        + "\n"
    )
    (folder / "scores.csv").write_text(
        "unit,method,index,explanation,target,protocol,n_items,corr\n9,weight-label,0,hats,weight-label,uniform,40,12.5\n"
    )
    r = CliRunner().invoke(main, ["atlas", str(folder), "--out", str(tmp_path / "site")])
    assert r.exit_code == 0, r.output
    card = (tmp_path / "site" / "cards" / "efficientnet_lite0___conv_head__9.html").read_text()
    assert (
        "hats" in card
        and "12.50" in card
        and "Highest-weighted classes" in card
        and "Top-activating probe images (12 of 700)" in card
    )


def test_weight_label_on_a_probe_model_shows_the_classes_it_read(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    register_tinynet(monkeypatch)
    fake_llm(monkeypatch)
    probe = make_probe(tmp_path / "shapes")
    r = _run(
        "label",
        "tinynet/conv",
        "--probe",
        str(probe),
        "--method",
        "weight-label",
        "--units",
        "0:2",
        "--base-url",
        "http://llm.test/v1",
        "--no-progress",
    )
    assert r.exit_code == 0, r.output
    labels = tmp_path / "labels" / "tinynet__conv__weight-label__shapes.jsonl"
    r = _run("atlas", str(labels), "--out", str(tmp_path / "site"), "--probe", str(probe))
    assert r.exit_code == 0, r.output
    card = (tmp_path / "site" / "cards" / "tinynet__conv__1.html").read_text()
    assert "Highest-weighted classes (what Weight-Label reads)" in card
    assert all(
        f"<td>{c}</td>" in card for c in ("apple", "boat", "cat")
    )  # the tiny net's 3 classes, with their weights


def test_a_dead_unit_has_a_card_and_an_index_row_that_say_so():
    from vse.outputs.atlas import render_index

    records = [
        {
            "unit": 3,
            "neuron": "m/l/3",
            "method": "caption-activation",
            "target": "caption-activation",
            "status": "dead",
            "kind": "caption-activation",
            "dead": "no non-zero value on the probe set",
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0},
        },
        {
            "unit": 4,
            "neuron": "m/l/4",
            "explanations": [_said("m/l/4", "caption-activation", "cats")],
            "scores": [_scored("m/l/4", "caption-activation", "cats", "caption-activation", 30.0)],
        },
    ]
    cards, failed = cards_from_records(records)
    assert not failed and [c.neuron for c in cards] == ["m/l/3", "m/l/4"]
    dead = cards[0]
    assert dead.dead is not None and not dead.explanations and cards[1].dead is None
    html = render_card(dead)
    assert '<mark class="dead"' in html and "dead: no non-zero value on the probe set" in html
    index = render_index(cards, href=lambda k, c: c.slug + ".html", title="t")
    [row] = [r for r in index.splitlines() if 'data-neuron="m/l/3"' in r]
    assert row.count('<td class="num" data-v="">dead</td>') == 1  # the one score column says dead
    assert "2 units, 1 explanations, 1 dead" in index


def test_an_unscorable_unit_shows_its_explanations_with_a_badge_and_its_reason():
    from vse.outputs.atlas import render_index

    reason = "all 23 items the explainer did not see have the same value (0); give a larger probe set"
    records = [
        {
            "unit": 6,
            "neuron": "m/l/6",
            "method": "caption-activation",
            "target": "caption-activation",
            "status": "unscorable",
            "unscorable": reason,
            "explanations": [_said("m/l/6", "caption-activation", "red squares")],
        },
        {
            "unit": 7,
            "neuron": "m/l/7",
            "explanations": [_said("m/l/7", "caption-activation", "cats")],
            "scores": [_scored("m/l/7", "caption-activation", "cats", "caption-activation", 30.0)],
        },
    ]
    cards, failed = cards_from_records(records)
    assert not failed  # not a failure: nothing to retry
    unscorable = cards[0]
    assert [e.text for e in unscorable.explanations] == ["red squares"] and cards[1].unscorable is None
    assert unscorable.unscorable is not None and unscorable.unscorable.reason == reason
    html = render_card(unscorable)
    assert '<mark class="unscorable"' in html and f"unscorable on caption-activation: {reason}" in html
    assert "unscorable" not in render_card(cards[1])
    index = render_index(cards, href=lambda k, c: c.slug + ".html", title="t")
    [row] = [r for r in index.splitlines() if 'data-neuron="m/l/6"' in r]
    assert "red squares" in row and '<mark class="unscorable"' in row
    [other] = [r for r in index.splitlines() if 'data-neuron="m/l/7"' in r]
    assert "unscorable" not in other
    assert "2 units, 2 explanations, 1 unscorable (explained; the protocol had nothing to correlate)" in index


def test_an_explained_unit_shows_its_explanations_and_is_listed_as_not_scored():
    cards, failed = cards_from_records(
        [
            {
                "unit": 2,
                "neuron": "m/l/2",
                "status": "explained",
                "error": "ValueError: boom",
                "explanations": [_said("m/l/2", "weight-label", "dogs")],
            }
        ]
    )
    assert [e.text for e in cards[0].explanations] == ["dogs"]
    assert failed == ["unit 2: explained, not scored: ValueError: boom"]


def _plot_attrs(html: str) -> dict[str, str]:
    svg = re.search(r"<svg [^>]*>", html).group(0)
    return dict(re.findall(r'([\w-]+)="([^"]*)"', svg))


def test_cosine_predictions_get_their_own_axis_and_llm_ones_share_0_to_10():
    items = (SimItem(0, 10.0, 0.62, "cat"), SimItem(1, 0.0, -0.18, "car"), SimItem(2, 4.0, 0.2, "dog"))
    cosine = Score("caption-activation", "recall-free", 40.0, None, None, False, items, 1, "embedding")
    llm = Score("caption-activation", "uniform", 40.0, 2.0, 3, False, items[:1], 1, "one")
    card = Card("m/l/1", (Explanation("caption-activation", "positive", "cats", "", (cosine,)),))
    html = render_card(card)
    attrs = _plot_attrs(html)
    assert attrs["data-sim-axis"] == "cosine" and attrs["data-true-axis"] == "0..10"
    assert attrs["data-sim-range"] == "-0.1800 0.6200"  # the predictions' own min..max, not 0..10
    assert "cosine (right axis, -0.18..0.62)" in html and "true 0..10 (left axis)" in html
    assert '<th class="num">cosine</th>' in html and ">cosine</text>" in html
    # A negative cosine does not make the true values' axis signed.
    assert "cat: true 10, cosine 0.62" in html
    heights = {m[0]: float(m[1]) for m in re.findall(r'<rect x="(\d+)" y="[\d.]+" width="4" height="([\d.]+)"', html)}
    assert heights["8"] == pytest.approx(112.0)  # the highest cosine spans the whole axis (120 - 2 x 4 pad)
    one = render_card(Card("m/l/1", (Explanation("caption-activation", "positive", "cats", "", (llm,)),)))
    assert "data-sim-axis" not in _plot_attrs(one) and "cat: true 10, simulated 0.62" in one


def test_a_unit_that_never_fires_on_the_probe_set_is_dead_on_its_card(tmp_path, monkeypatch):
    """`vse label --probe` on a net whose channel 1 is 0 on every image: no LLM call for it, exit 0,
    and the atlas's card and index row say dead."""
    pytest.importorskip("torch")
    import torch

    from vse.vision import models

    from .atlas_helpers import tiny_net

    monkeypatch.chdir(tmp_path)
    register_tinynet(monkeypatch)
    real = models.load_model

    def load_model(name="efficientnet_lite0", **kw):
        if name != "tinynet":
            return real(name, **kw)
        loaded = tiny_net()
        with torch.no_grad():  # channel 1 of conv: 0 on every image of every probe set
            loaded.module.conv.weight[1].zero_()
            loaded.module.conv.bias[1] = 0.0
        return loaded

    monkeypatch.setattr(models, "load_model", load_model)
    seen = fake_llm(monkeypatch)
    probe = make_probe(tmp_path / "shapes")
    args = ["label", "tinynet/conv", "--probe", str(probe), "--method", "caption-activation", "--score"]
    # 12 probe images, every one shown: nothing unseen to choose the best of several on
    args += ["--simulator", "one", "--n", "1", "--base-url", "http://llm.test/v1", "--no-progress"]
    r = _run(*args, "--units", "1:2")
    assert r.exit_code == 0, r.output
    assert not seen and "dead 1 (no LLM call)" in r.output  # the dead unit alone: no call at all
    r = _run(*args)
    assert r.exit_code == 0 and "labelled 3 units" in r.output and "skipped 1 already done" in r.output, r.output
    labels = tmp_path / "labels" / "tinynet__conv__caption-activation__shapes.jsonl"
    r = _run("atlas", str(labels), "--out", str(tmp_path / "site"), "--probe", str(probe))
    assert r.exit_code == 0, r.output
    card = (tmp_path / "site" / "cards" / "tinynet__conv__1.html").read_text()
    assert '<mark class="dead"' in card and "dead: no non-zero value on the probe set" in card
    index = (tmp_path / "site" / "index.html").read_text()
    [row] = [line for line in index.splitlines() if 'data-neuron="tinynet/conv/1"' in line]
    assert ">dead</td>" in row and "4 units, 3 explanations, 1 dead" in index
