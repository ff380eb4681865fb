from PIL import Image

from vse.vision.captions import BlipCaptioner, caption_probe, sidecar_captions, write_captions
from vse.vision.datasets import load_folder, read_captions_file

from .tiny_hf import tiny_blip


def test_blip_plumbing_on_a_tiny_random_model(tmp_path):
    model, proc = tiny_blip(tmp_path)
    for i in range(3):
        Image.new("RGB", (20, 20), (60 * i, 0, 0)).save(tmp_path / f"{i}.png")
    (tmp_path / "3.png").write_bytes(b"broken")
    probe = load_folder(tmp_path)
    caps = caption_probe(probe, BlipCaptioner(model, proc, batch_size=2, max_new_tokens=3), progress=False)
    assert [c["id"] for c in caps] == ["0.png", "1.png", "2.png"]
    assert all(isinstance(c["caption"], str) for c in caps)
    assert [s["id"] for s in probe.skipped] == ["3.png"]
    out = write_captions(tmp_path / "caps.json", caps)
    assert read_captions_file(out) == {c["id"]: c["caption"] for c in caps}


def test_sidecar_captions(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "a.png")
    (tmp_path / "a.txt").write_text("A black square.\nsecond line\n")
    assert sidecar_captions(load_folder(tmp_path)) == [{"id": "a.png", "caption": "A black square."}]
