import numpy as np
import pytest
from PIL import Image

from vse.vision import dissect as D

from .tiny_hf import tiny_clip


def _reference_soft_wpmi(sim, act, top_k, a=10.0, lam=1.0, min_prob=1e-7, p_start=0.998, p_end=0.97):
    """Loop-by-loop transcription of the official algorithm, to check the vectorised one."""
    probs = np.exp(a * sim) / np.exp(a * sim).sum(axis=1, keepdims=True)
    n_units = act.shape[1]
    log_p = np.zeros((n_units, sim.shape[1]))
    for u in range(n_units):
        top = sorted(range(act.shape[0]), key=lambda i: -act[i, u])[:top_k]
        for c in range(sim.shape[1]):
            for j, i in enumerate(top):
                p = p_start - j / top_k * (p_start - p_end)
                log_p[u, c] += np.log(1 + p * (probs[i, c] - 1) + min_prob)
    log_pc = np.log(np.exp(log_p).sum(axis=0) / n_units)
    return log_p - lam * log_pc


def test_soft_wpmi_matches_reference():
    g = np.random.default_rng(0)
    sim, act = g.uniform(-0.2, 0.8, (30, 7)), g.normal(size=(30, 5))
    got = D.soft_wpmi(sim, act, D.SoftWPMIParams(top_k=6), max_block=50)  # small blocks: exercises batching
    np.testing.assert_allclose(got, _reference_soft_wpmi(sim, act, 6), rtol=1e-9, atol=1e-9)


def test_dissect_recovers_planted_concepts():
    g = np.random.default_rng(1)
    concepts = ["cat", "car", "tree", "boat", "cup", "shoe", "thing"]
    n_img, true = 120, np.arange(120) % 6
    sim = np.full((n_img, 7), 0.1) + g.normal(0, 0.02, (n_img, 7))
    sim[np.arange(n_img), true] = 0.9
    sim[:, 6] = 0.6  # a generic concept fairly similar to every image: WPMI must not pick it
    planted = [3, 0, 5, 1]
    act = g.normal(0, 0.1, (n_img, 4))
    for u, c in enumerate(planted):
        act[true == c, u] += 2.0
    labels, scores = D.dissect(sim, act, concepts, D.SoftWPMIParams(top_k=10))
    assert [lab.label for lab in labels] == [concepts[c] for c in planted]
    truth = [concepts[c] for c in planted]
    assert D.topk_agreement(scores, concepts, truth, ks=(1, 5)) == {1: 1.0, 5: 1.0}


def test_dissect_input_checks():
    with pytest.raises(ValueError, match="same images"):
        D.soft_wpmi(np.zeros((3, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="3 concepts"):
        D.dissect(np.zeros((3, 2)), np.zeros((3, 2)), ["a", "b", "c"])


def test_concept_sets(tmp_path):
    words = D.wordfreq_concepts(500)
    assert len(words) == 500 and words[0] == "the" and all(w.isalpha() for w in words)
    f = tmp_path / "concepts.txt"
    f.write_text("dog\n\ncat\ndog\n")
    assert D.read_concepts(f) == ["dog", "cat"]
    assert D.merge_concepts(["a", "b"], ["b", "c"]) == ["a", "b", "c"]


def test_text_backend_on_real_minilm():
    caps = ["A black cat sleeping on a sofa.", "A red sports car.", "A bowl of tomato soup."]
    sim = D.caption_similarity(caps, ["car", "soup", "cat"])
    assert sim.shape == (3, 3)
    assert list(sim.argmax(axis=1)) == [2, 0, 1]


def test_clip_backend_plumbing_on_a_tiny_random_clip(tmp_path):
    model, proc = tiny_clip(tmp_path)
    imgs = [Image.new("RGB", (20, 24), (40 * i, 0, 0)) for i in range(3)]
    sim = D.clip_similarity(imgs, ["cat", "red dog"], model, proc, batch_size=2)
    assert sim.shape == (3, 2) and np.all(np.abs(sim) <= 1 + 1e-5)
    labels, _ = D.dissect(sim, np.eye(3), ["cat", "red dog"], D.SoftWPMIParams(top_k=2))
    assert len(labels) == 3
