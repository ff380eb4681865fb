"""The atlas in a real headless browser (Debian's `chromium`): the index sorts, searches and filters, the
URL fragment restores a view, a card's images load and open enlarged. Skipped, with the reason, without chromium
(CI installs it: .ci/run)."""

from __future__ import annotations

import json

import pytest

from .atlas_helpers import CAPTIONS, label_and_build
from .browser import find_chromium, run_check

pytestmark = [
    pytest.mark.skipif(
        find_chromium() is None,
        reason="no chromium on PATH (apt-get install -y chromium); the atlas browser test needs it",
    ),
    pytest.mark.slow,
]


@pytest.fixture
def site(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    return label_and_build(tmp_path, monkeypatch)[0]


INDEX_CHECK = r"""
var t = document.getElementById('units'), rows = function () { return Array.prototype.slice.call(t.tBodies[0].rows); };
var visible = function () { return rows().filter(function (r) { return !r.hidden; }); };
var scores = function () { return visible().map(function (r) { return parseFloat(r.cells[5].getAttribute('data-v')); }); };
var out = {rows: rows().length, neurons: rows().map(function (r) { return r.getAttribute('data-neuron'); }),
           links: rows().map(function (r) { return r.querySelector('a').getAttribute('href'); }),
           ready: document.documentElement.getAttribute('data-ready-ms')};
var th = t.querySelector('th[data-key="score-0"]');
th.click(); out.desc = scores(); out.aria1 = th.getAttribute('aria-sort');
th.click(); out.asc = scores(); out.aria2 = th.getAttribute('aria-sort');
t.querySelector('th[data-key="unit"]').click(); out.byUnitDesc = visible().map(function (r) { return r.cells[1].textContent; });
var q = document.getElementById('q'); q.value = 'tinynet/conv/2'; q.dispatchEvent(new Event('input'));
out.search = visible().map(function (r) { return r.getAttribute('data-neuron'); }); out.count = document.getElementById('count').textContent;
q.value = ''; q.dispatchEvent(new Event('input'));
var col = document.getElementById('scol'), min = document.getElementById('smin');
col.value = 'score-0'; min.value = String(out.desc[1]); min.dispatchEvent(new Event('input'));
out.filtered = visible().length; out.hash = location.hash;
return out;
"""


def test_index_sorts_searches_and_filters_in_chromium(site):
    out = json.loads(run_check(site / "index.html", INDEX_CHECK))
    assert "error" not in out, out
    assert out["rows"] == 4 and out["neurons"] == [f"tinynet/conv/{u}" for u in range(4)]
    assert out["links"] == [f"cards/tinynet__conv__{u}.html" for u in range(4)] and all(
        (site / h).is_file() for h in out["links"]
    )
    assert out["desc"] == sorted(out["desc"], reverse=True) and out["aria1"] == "descending"
    assert out["asc"] == sorted(out["asc"]) and out["aria2"] == "ascending"
    assert out["byUnitDesc"] == ["3", "2", "1", "0"]
    assert out["search"] == ["tinynet/conv/2"] and out["count"] == "1 of 4 rows"
    assert out["filtered"] == 2  # scores at least the second highest: the top two
    assert "col=score-0" in out["hash"] and "min=" in out["hash"]
    assert int(out["ready"]) >= 0


def test_the_url_fragment_restores_a_sorted_searched_view(site):
    check = "return {shown: Array.prototype.slice.call(document.querySelectorAll('#units tbody tr')).filter(function (r) { return !r.hidden; }).map(function (r) { return r.getAttribute('data-neuron'); }), q: document.getElementById('q').value};"
    out = json.loads(run_check(site / "index.html", check, fragment="#q=conv&sort=unit&dir=desc"))
    assert out == {"shown": [f"tinynet/conv/{u}" for u in (3, 2, 1, 0)], "q": "conv"}


CARD_CHECK = r"""
var card = document.querySelector('article.card');
var imgs = Array.prototype.slice.call(card.querySelectorAll('figure.thumb img'));
var out = {neuron: card.getAttribute('data-neuron'), polarity: card.getAttribute('data-polarity'),
           images: imgs.length, loaded: imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length,
           shownPx: imgs.length ? imgs[0].getBoundingClientRect().width : 0,
           captions: Array.prototype.slice.call(card.querySelectorAll('figure.thumb figcaption')).map(function (f) { return f.childNodes[0].textContent; }),
           captionPx: parseFloat(getComputedStyle(card.querySelector('figure.thumb figcaption')).fontSize),
           bars: card.querySelectorAll('svg.simplot rect').length, score: card.querySelector('table.expl td.num').textContent};
var a = card.querySelector('a.zoom'); a.click();
var box = document.getElementById('lightbox');
out.lightbox = box && !box.hidden; out.big = box ? box.querySelector('img').getAttribute('src') === a.getAttribute('href') : false;
out.bigPx = box ? box.querySelector('img').getBoundingClientRect().width : 0;
out.caption = box ? box.querySelector('p').textContent : '';
box.click(); out.closed = box.hidden;
return out;
"""


def test_a_card_shows_loaded_images_captions_values_and_enlarges_on_click(site):
    out = json.loads(run_check(site / "cards" / "tinynet__conv__1.html", CARD_CHECK))
    assert "error" not in out, out
    assert out["neuron"] == "tinynet/conv/1" and out["polarity"] == "positive"
    assert out["images"] == 12 and out["loaded"] == 12  # every image file found and decoded
    assert out["shownPx"] >= 120 and out["captionPx"] >= 12  # readable: not the 6 px of a shrunk grid
    assert sorted(out["captions"]) == sorted(CAPTIONS)
    assert out["bars"] >= 2 * 12 and out["score"].strip()
    assert out["lightbox"] and out["big"] and out["bigPx"] > 3 * out["shownPx"] and "activation" in out["caption"]
    assert out["closed"]


REPORT_CHECK = r"""
var cards = Array.prototype.slice.call(document.querySelectorAll('article.card'));
var imgs = Array.prototype.slice.call(document.querySelectorAll('article.card img'));
return {neurons: cards.map(function (c) { return c.closest('section').id + ' ' + c.getAttribute('data-neuron'); }),
        unbadged: cards.filter(function (c) { return !c.querySelector('header .pol'); }).length,
        images: imgs.length, broken: imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).map(function (i) { return i.getAttribute('src'); }),
        sections: Array.prototype.slice.call(document.querySelectorAll('section')).map(function (s) { return s.id; })};
"""


def test_the_committed_report_has_a_card_for_every_recorded_neuron_and_its_images_load(tmp_path):
    """results/report.html as `make reproduce` writes it (a copy, so the check page never lands in results/)."""
    import shutil
    from pathlib import Path

    from vse.outputs.atlas import cards_from_records, folder_records
    from vse.outputs.report import _experiments

    results = Path(__file__).resolve().parents[2] / "results"
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    out = json.loads(run_check(copy / "report.html", REPORT_CHECK))
    expected = sorted(
        f"{d.name} {c.neuron}" for d in _experiments(results) for c in cards_from_records(folder_records(d))[0]
    )
    assert sorted(out["neurons"]) == expected and len(expected) >= 25
    assert out["unbadged"] == 0  # polarity always shown
    assert out["images"] > 0 and out["broken"] == []
    assert out["sections"][:3] == ["power-study", "table1-second-last-layer", "tables8-9-last-layer"]


def test_a_link_from_the_report_index_opens_the_folded_card(tmp_path):
    import shutil
    from pathlib import Path

    results = Path(__file__).resolve().parents[2] / "results"
    copy = tmp_path / "results"
    shutil.copytree(results, copy)
    page = (copy / "report.html").read_text(encoding="utf-8")
    target = "power-study/efficientnet_lite0___conv_head__351"
    assert f'href="#{target}"' in page  # the index row's link
    check = (
        "var el = document.getElementById('" + target + "'); return {found: !!el, "
        "open: !!el && Array.prototype.slice.call(document.querySelectorAll('details')).filter(function (d) { return d.contains(el); }).every(function (d) { return d.open; })};"
    )
    assert json.loads(run_check(copy / "report.html", check, fragment="#" + target)) == {"found": True, "open": True}
