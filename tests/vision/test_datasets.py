import json

import numpy as np
import pytest
from PIL import Image

from vse.vision.datasets import UnreadableImage, load_folder, open_image, tuxpaint


def _stamp(path, caption=None, size=(20, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    img.paste((200, 10, 10, 255), (5, 2, 15, 8))  # opaque red box on a transparent canvas
    img.save(path)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption + "\nfr.utf8=Traduction\n", encoding="utf-8")


@pytest.fixture
def stamps(tmp_path):
    root = tmp_path / "stamps"
    _stamp(root / "animals" / "cat.png", "A cat.")
    _stamp(root / "food" / "apple.png", "A green apple.")
    _stamp(root / "food" / "apple_mirror.png")
    _stamp(root / "cartoon" / "tux-yay.png")  # no caption
    _stamp(root / "symbols" / "a.png", "The letter A.")
    (root / "food" / "broken.png").write_bytes(b"garbage, not a png")
    (root / "food" / "broken.txt").write_text("A broken stamp.\n")
    (root / "animals" / "cat.svg").write_text("<svg/>")  # twin of cat.png
    return root


def test_tuxpaint_adapter(stamps):
    probe = tuxpaint(stamps)
    ids = [it.id for it in probe.items]
    assert ids == ["animals/cat.png", "cartoon/tux-yay.png", "food/apple.png", "food/broken.png"]
    assert {it.id: it.caption for it in probe.items}["animals/cat.png"] == "A cat."  # first line only
    reasons = {e["id"]: e["reason"] for e in probe.excluded}
    assert "mirror" in reasons["food/apple_mirror.png"] and "PNG twin" in reasons["animals/cat.svg"]
    assert not any(i.startswith("symbols/") for i in ids + list(reasons))

    probe.only_captioned().verify()
    assert [it.id for it in probe.items] == ["animals/cat.png", "food/apple.png"]
    assert [s["id"] for s in probe.skipped] == ["food/broken.png"]  # corrupt: listed, not fatal
    rec = probe.record()
    assert rec["n_images"] == 2 and rec["skipped"][0]["reason"]
    assert {"id": "cartoon/tux-yay.png", "reason": "no caption"} in rec["excluded"]
    json.dumps(rec)


def test_transparent_stamp_composited_and_padded(stamps):
    probe = tuxpaint(stamps)
    img = probe.open(probe.items[0])
    assert img.mode == "RGB" and img.size == (20, 20)  # padded to a square
    a = np.asarray(img)
    assert tuple(a[0, 0]) == (255, 255, 255)  # transparent -> white background
    assert tuple(a[10, 10]) == (200, 10, 10)  # the opaque box, shifted down by the padding (5 rows)


def test_svg_only_stamp_rendered(tmp_path):
    pytest.importorskip("cairosvg")
    root = tmp_path / "stamps"
    (root / "food").mkdir(parents=True)
    (root / "food" / "dot.svg").write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><circle cx="5" cy="5" r="4" fill="blue"/></svg>'
    )
    (root / "food" / "dot.txt").write_text("A blue dot.\n")
    assert tuxpaint(root).items == []
    probe = tuxpaint(root, include_svg=True, svg_size=16)
    img = probe.open(probe.items[0])
    assert img.size == (16, 16) and np.asarray(img)[8, 8, 2] > 200


def test_open_image_errors_name_the_file(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\xff\xd8\xff broken jpeg")
    with pytest.raises(UnreadableImage, match="x.jpg"):
        open_image(bad)


def test_folder_with_sidecar_captions(tmp_path):
    for n in ("b.png", "a.jpg"):
        Image.new("RGB", (4, 4)).save(tmp_path / n)
    (tmp_path / "captions.tsv").write_text("a.jpg\tA dark square.\nb.png\tAnother one.\nz.png\tGone.\n")
    probe = load_folder(tmp_path)
    assert [(it.id, it.caption) for it in probe.items] == [("a.jpg", "A dark square."), ("b.png", "Another one.")]
    assert probe.excluded == [{"id": "z.png", "reason": "caption given but no image file"}]
    (tmp_path / "captions.tsv").unlink()
    (tmp_path / "c.json").write_text(json.dumps([{"id": "b.png", "caption": "From JSON."}]))
    probe = load_folder(tmp_path, captions=tmp_path / "c.json")
    assert {it.id: it.caption for it in probe.items} == {"a.jpg": None, "b.png": "From JSON."}
    assert probe.uncaptioned == ["a.jpg"]


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tuxpaint-stamps-default"):
        tuxpaint(tmp_path / "nope")
