"""An explanation's predictions on given items, with a study's few-shot draw (one-item mode).

The studies (`vse.studies.matched`, `vse.studies.strategy`, `vse.studies.simulator`) predict many
explanations on fixed items instead of running Algorithm 1; they all go through `predict_explanation`,
so a study's requests are built one way only (and replay from its cassettes).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vse.method.explain import FewShotNeuron
from vse.method.llm import LLM, on_llm_endpoint
from vse.method.score import ScoreConfig, fewshot_examples, predict_items


def predict_explanation(
    llm: LLM,
    explanation: str,
    texts: Sequence[str],
    *,
    kind: str,
    fewshot: Sequence[FewShotNeuron],
    config: ScoreConfig,
    rng: np.random.Generator,
) -> list[float]:
    """`explanation`'s predictions for `texts` of target kind `kind`, in order.

    fewshot: the layer's few-shot neurons for `kind` (`vse.method.pipeline.fewshot_neurons`); rng: the
    study's few-shot stream, from which their shown pairs are drawn (a fresh generator with the same
    seed gives the same draw, hence the same prompt prefix for every explanation).
    config: the simulation knobs; its api is the LLM's. While recording, the cassette is saved after
    the call, so an interruption loses at most this explanation's predictions.
    """
    examples = fewshot_examples(fewshot, config, rng)
    sim = predict_items(
        llm.client,
        explanation,
        list(texts),
        kind=kind,
        examples=examples,
        config=on_llm_endpoint(config, llm),
        store=llm.store,
        in_flight=llm.in_flight,
    )
    if llm.checkpoint is not None:
        llm.checkpoint()
    return sim.values
