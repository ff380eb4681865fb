"""Every random stream of a run, derived from one root seed with `numpy.random.SeedSequence`.

Why separate streams: each consumer gets its own generator, so adding a pass, a neuron or a
candidate explanation never shifts what another consumer draws (a resumed or extended recording
sends the same requests again, and the cassette replays them).

- ``neurons``: which evaluation neurons a study draws from a layer.
- ``explain``: the sampling seed sent with candidate explanation k (best of N).
- ``fewshot``: the few-shot neurons' pairs shown to the simulator, drawn once per scoring run.
- ``pass``: the items a scoring pass predicts (pass i of a run).
- ``pool``: the shared random items of a validation study.
- ``sanity``: the perturbed concepts of a NeuronEval sanity check (`vse.core.sanity`), case by case.
"""

from __future__ import annotations

import numpy as np

STREAMS = {"neurons": 1, "explain": 2, "fewshot": 3, "pass": 4, "pool": 5, "held-in": 6, "sanity": 7, "latents": 8}


def rng(seed: int, stream: str, *path: int) -> np.random.Generator:
    """The generator of `stream` (optionally indexed, e.g. pass 3) under the root `seed`."""
    if stream not in STREAMS:
        raise ValueError(f"unknown random stream {stream!r}; known: {', '.join(STREAMS)}")
    return np.random.default_rng(np.random.SeedSequence([int(seed), STREAMS[stream], *map(int, path)]))


def llm_seed(seed: int, stream: str, *path: int) -> int:
    """An integer seed for an LLM request (servers take a 32-bit int)."""
    return int(rng(seed, stream, *path).integers(0, 2**31 - 1))
