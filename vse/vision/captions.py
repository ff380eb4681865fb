"""Captions for probe images: from the probe set's sidecar files, or from a captioning model.

The model path is BLIP (``BlipForConditionalGeneration``) through ``transformers``, batched, for
users who have a BLIP checkpoint (e.g. a local copy of Salesforce/blip-image-captioning-base). No
BLIP weights are obtainable on this workplace's machines: the tests run it on a tiny
randomly-initialised config, which checks the plumbing only; such captions mean nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vse.vision.datasets import UnreadableImage


def sidecar_captions(probe) -> list[dict]:
    """``[{"id", "caption"}]`` of a :class:`~vse.vision.datasets.ProbeSet`, uncaptioned items as None."""
    return [{"id": it.id, "caption": it.caption} for it in probe.items]


@dataclass
class BlipCaptioner:
    """Batched BLIP captioning. ``model``: ``BlipForConditionalGeneration``; ``processor``: ``BlipProcessor``."""

    model: Any
    processor: Any
    batch_size: int = 16
    max_new_tokens: int = 30
    prompt: str | None = None  # conditional captioning prefix, e.g. "a picture of"

    @classmethod
    def from_pretrained(cls, name_or_path: str, **kw) -> BlipCaptioner:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        try:
            model = BlipForConditionalGeneration.from_pretrained(name_or_path).eval()
            processor = BlipProcessor.from_pretrained(name_or_path)
        except OSError as exc:
            raise FileNotFoundError(
                f"could not load BLIP {name_or_path!r} ({exc}); give a local folder holding a BLIP captioning "
                "checkpoint (config.json, weights, tokenizer and preprocessor files)"
            ) from exc
        return cls(model, processor, **kw)

    def caption(self, images: Sequence, progress: bool = False) -> list[str]:
        """One caption per PIL image, in order."""
        import torch
        from tqdm import tqdm

        out: list[str] = []
        with torch.inference_mode():
            for s in tqdm(range(0, len(images), self.batch_size), desc="captions", disable=not progress):
                batch = list(images[s : s + self.batch_size])
                if self.prompt:
                    inputs = self.processor(images=batch, text=[self.prompt] * len(batch), return_tensors="pt")
                else:
                    inputs = self.processor(images=batch, return_tensors="pt")
                ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)
                out.extend(t.strip() for t in self.processor.batch_decode(ids, skip_special_tokens=True))
        return out


def caption_probe(probe, captioner: BlipCaptioner, progress: bool = True) -> list[dict]:
    """Caption every readable item of ``probe`` with the model; unreadable ones go to ``probe.skipped``."""
    ids, images = [], []
    for it in probe.items:
        try:
            images.append(probe.open(it))
            ids.append(it.id)
        except UnreadableImage as exc:
            probe.skipped.append({"id": it.id, "reason": str(exc)})
    return [{"id": i, "caption": c} for i, c in zip(ids, captioner.caption(images, progress=progress), strict=True)]


def write_captions(path: str | Path, captions: list[dict]) -> Path:
    """Write ``[{"id", "caption"}]`` as JSON (readable back by ``datasets.read_captions_file``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(captions, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
