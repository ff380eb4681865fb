"""The Python API: the same verbs as the command line, end to end on a neuron id.

>>> from vse import LLM, Mode, Protocol, ScoreConfig, explain_neuron, score_explanation  # doctest: +SKIP
>>> paper = ScoreConfig(mode=Mode.ONE, protocol=Protocol.UNIFORM)  # Algorithm 1 (default: embeddings)
>>> with LLM.open("http://127.0.0.1:8765/v1", cassette="my-run.json.gz", record=True) as llm:
...     [rec] = explain_neuron("efficientnet_lite0/_conv_head/17", "weight-label", llm=llm)
...     print(score_explanation(rec.neuron, rec.explanation, "weight-label", llm=llm, config=paper).line())

Each verb loads the neuron's pairs (`vse.data`), picks the few-shot neurons (`vse.method.fewshot`),
and runs one step of the method: explanation (`vse.method.explain`) or Algorithm 1
(`vse.method.score.score_target`), on the `LLM` (`vse.method.llm`) it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from vse.core import seeds
from vse.core.sampling import top
from vse.core.target import POLARITIES, Target, neuron_id, parse_neuron_id
from vse.core.vocab import TARGET_KINDS, USER_METHOD, Api, Display, Kind, Method, Mode, Polarity, RankBy, choices
from vse.data.loader import FIXTURES, Source, clip_dissect_label, fewshot_explanations, load_target
from vse.llm.errors import RequestDeferred
from vse.method.explain import (
    ExplainConfig,
    Explanation,
    FewShotNeuron,
    build_prompt,
    explain,
    new_run_config,
    shown_indices,
)
from vse.method.fewshot import fewshot_neurons
from vse.method.llm import LLM, on_llm_endpoint
from vse.method.records import ExplanationRecord, ScoreRecord
from vse.method.score import ScoreConfig, score_target

#: The explanation methods (rows of the paper's Table 1, plus Weight-Explanation).
METHODS = choices(Method)
#: The next layer of each layer that has weight-clip fixtures (whose units the weights reach).
NEXT_LAYER = {"_blocks.15": "_conv_head"}


def check_request(neuron: str, method: str, polarity: str) -> None:
    """A clear error for a malformed neuron id, an unknown method or polarity, before any work."""
    parse_neuron_id(neuron)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if polarity not in POLARITIES:
        raise ValueError(f"polarity {polarity!r} is not one of {POLARITIES}")


def check_simulator(config: ScoreConfig, llm: LLM) -> None:
    """A clear error, before any work, when the LLM cannot run the config's simulator."""
    if config.mode == Mode.EMBEDDING and llm.embeddings is None:
        raise ValueError(
            "the embedding simulator (ScoreConfig's default mode) needs an embedding store: open the LLM with "
            "`LLM.open_embeddings('scores.embeddings.npz')` (or `LLM.embedding_only(EmbeddingStore(path, "
            "record=True))`), or score with an LLM simulator: `config=ScoreConfig(mode=Mode.ONE, "
            "protocol=Protocol.UNIFORM)` (the paper's Algorithm 1)"
        )
    if config.mode != Mode.EMBEDDING and llm.client is None:
        raise ValueError(
            f"simulator {config.mode!s} calls an LLM, but this LLM only carries an embedding store: "
            "open one with `LLM.open(base_url)`"
        )


def next_layer_explanations(
    neuron: str,
    *,
    llm: LLM,
    units: Sequence[int],
    config: ExplainConfig | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[int, str]:
    """vse's own Weight-Label explanations of next-layer units (the labels Weight-Explanation reads)."""
    model, layer, _ = parse_neuron_id(neuron)
    if layer not in NEXT_LAYER:
        raise ValueError(
            f"weight-explanation needs the next layer's weights: known for {', '.join(NEXT_LAYER)}, not {layer}"
        )
    nxt = NEXT_LAYER[layer]
    config = config or ExplainConfig(shown=Display.TOP)  # a next-layer label reads its top pairs
    out: dict[int, str] = {}
    for unit in tqdm(sorted(set(units)), desc="explain next layer", unit="unit", leave=False, disable=not progress):
        [rec] = explain_neuron(
            neuron_id(model, nxt, unit), Method.WEIGHT_LABEL, llm=llm, n=1, config=config, seed=seed, progress=False
        )
        out[unit] = rec.explanation
        if llm.checkpoint is not None:
            llm.checkpoint()  # recording: an interruption loses at most this unit's explanation
    return out


def weight_explanation_units(neuron: str, polarity: str, config: ExplainConfig) -> list[int]:
    """Next-layer units whose explanations a Weight-Explanation prompt for `neuron` shows: the
    target's shown pairs (top or held-out display) and each few-shot neuron's top pairs."""
    model, layer, _ = parse_neuron_id(neuron)
    units = {int(i) for i in np.asarray(shown_indices(load_target(neuron, Kind.WEIGHT_CLIP, polarity), config))}
    for u, _ in fewshot_explanations(model, layer, Kind.WEIGHT_EXPLANATION):
        t = load_target(neuron_id(model, layer, u), Kind.WEIGHT_CLIP, Polarity.POSITIVE)
        units |= {
            int(i) for i in np.asarray(top(t.strength if config.rank_by == RankBy.RAW else t.values, config.n_pairs))
        }
    return sorted(units)


def explain_neuron(
    neuron: str,
    method: str,
    *,
    llm: LLM,
    n: int = 1,
    polarity: str = Polarity.POSITIVE,
    config: ExplainConfig | None = None,
    seed: int = 0,
    next_explanations: Mapping[int, str] | None = None,
    progress: bool = True,
    source: Source = FIXTURES,
) -> list[ExplanationRecord]:
    """N explanations of a neuron by one method (clip-dissect: its single label)."""
    check_request(neuron, method, polarity)
    if llm.client is None and method != Method.CLIP_DISSECT:
        raise ValueError(
            "explaining calls an LLM, but this LLM only carries an embedding store: open one with LLM.open"
        )
    # No config pinned (a new run): the new budget, a reply still cut off trimmed to its last sentence.
    # The recorded experiments pin theirs (60 tokens, untrimmed), so they keep sending the recorded requests.
    config = on_llm_endpoint(config or new_run_config(llm.api), llm)
    if method == Method.CLIP_DISSECT:
        prov = llm.provenance((), seed)
        return [ExplanationRecord(neuron, method, Polarity.POSITIVE, clip_dissect_label(neuron), None, 0, 0, 0, prov)]
    if method == Method.WEIGHT_EXPLANATION and next_explanations is None:
        units = weight_explanation_units(neuron, polarity, config)
        next_explanations = next_layer_explanations(
            neuron,
            llm=llm,
            units=units,
            config=ExplainConfig(shown=Display.TOP, rank_by=config.rank_by),
            seed=seed,
            progress=progress,
        )
    target = load_target(neuron, method, polarity, next_explanations=next_explanations, source=source)
    fewshot = fewshot_neurons(neuron, method, polarity, next_explanations=next_explanations)
    prov = llm.provenance([f.target.neuron for f in fewshot], seed)
    shown = tuple(sorted(int(i) for i in shown_indices(target, config)))
    records = []
    for e in _candidates(llm, target, fewshot, config, [seeds.llm_seed(seed, "explain", k) for k in range(n)]):
        records.append(
            ExplanationRecord(
                neuron,
                method,
                polarity,
                e.text,
                e.seed,
                e.calls,
                e.usage.prompt_tokens,
                e.usage.completion_tokens,
                prov,
                cut=e.cut,
                shown=shown,
                display=config.shown,
            )
        )
    return records


def _candidates(
    llm: LLM, target: Target, fewshot: Sequence[FewShotNeuron], config: ExplainConfig, candidate_seeds: list[int]
) -> list[Explanation]:
    """One explanation per seed, in seed order. They share one prompt: with several server slots they are
    sent together (``llm.in_flight`` at a time), the prompt computed once and copied into every slot
    (`vse.llm.slots`), so N candidates cost about one prompt and one batched generation. The requests, and
    so a cassette, are the same either way; a replay sends them one at a time."""

    def one(s: int) -> Explanation:
        return explain(llm.client, target, fewshot, config, seed=s)

    workers = min(llm.in_flight, len(candidate_seeds))
    if workers <= 1:
        return _each_asked(one, candidate_seeds)
    warmer = getattr(llm.client, "warmer", None)
    if warmer is not None and config.api == Api.COMPLETIONS:
        warmer.warm(build_prompt(target, fewshot, config))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vse-explain") as pool:
        return list(pool.map(one, candidate_seeds))


def _each_asked(fn: Callable[[int], Explanation], candidate_seeds: list[int]) -> list[Explanation]:
    """``fn`` of each seed in order. A request held back for a Batch API file (`RequestDeferred`: nothing
    was sent) does not stop the others, so one collection holds every candidate; the first is raised after."""
    out, deferred = [], None
    for s in candidate_seeds:
        try:
            out.append(fn(s))
        except RequestDeferred as held:
            deferred = deferred or held
    if deferred is not None:
        raise deferred
    return out


def score_explanation(
    neuron: str,
    explanation: str,
    target: str,
    *,
    llm: LLM,
    config: ScoreConfig | None = None,
    polarity: str = Polarity.POSITIVE,
    method: str = USER_METHOD,
    explanation_seed: int | None = None,
    seed: int = 0,
    progress: bool = True,
    checkpoint: Callable[[], None] | None = None,
    source: Source = FIXTURES,
    universe: np.ndarray | None = None,
) -> ScoreRecord:
    """Score any explanation on a target kind of a neuron with Algorithm 1 (`vse.method.score.score_target`).

    universe: the only items the score may use (`vse.method.best_of`: what the explainer did not see,
    or half of it); None: the protocol's own rule.
    """
    parse_neuron_id(neuron)
    if target not in TARGET_KINDS:
        raise ValueError(f"unknown target {target!r}; known: {', '.join(TARGET_KINDS)}")
    if polarity not in POLARITIES:
        raise ValueError(f"polarity {polarity!r} is not one of {POLARITIES}")
    config = on_llm_endpoint(config or ScoreConfig(api=llm.api), llm)
    check_simulator(config, llm)
    scored = load_target(neuron, target, polarity, source=source)
    fewshot = fewshot_neurons(neuron, target, polarity)
    result = score_target(
        llm.client,
        explanation,
        scored,
        fewshot,
        config,
        seed=seed,
        store=llm.store,
        progress=progress,
        checkpoint=checkpoint,
        in_flight=llm.in_flight,
        embeddings=llm.embeddings,
        universe=universe,
    )
    prov = llm.provenance([f.target.neuron for f in fewshot], seed, simulator=config.mode, protocol=config.label)
    return ScoreRecord.of(
        result,
        neuron=neuron,
        method=method,
        explanation=explanation,
        explanation_seed=explanation_seed,
        target=target,
        polarity=polarity,
        provenance=prov,
    )


__all__ = [
    "LLM",
    "METHODS",
    "explain_neuron",
    "fewshot_neurons",
    "next_layer_explanations",
    "score_explanation",
    "weight_explanation_units",
]
