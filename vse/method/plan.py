"""Request planning (dry runs): the requests a run would send, built by the same prompt builders.

Used to price a run before it starts (`vse label --dry-run`, `vse.llm.pricing`); it calls nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from vse.core import seeds
from vse.core.target import neuron_id, parse_neuron_id
from vse.core.vocab import Api, Kind, Method, Mode, Polarity, Protocol
from vse.data.loader import load_target
from vse.method.explain import ExplainConfig, build_prompt, new_run_config
from vse.method.fewshot import fewshot_neurons
from vse.method.pipeline import NEXT_LAYER, check_request, weight_explanation_units
from vse.method.prompts import TARGET_NAME, simulate_one_messages, simulate_one_prefix, simulate_one_prompt
from vse.method.score import ScoreConfig, draw_items, fewshot_examples


def plan_requests(
    neuron: str,
    method: str,
    *,
    n: int = 1,
    score: bool = False,
    target: str = Kind.WEIGHT_LABEL,
    api: str = Api.COMPLETIONS,
    model: str = "local",
    polarity: str = Polarity.POSITIVE,
    config: ExplainConfig | None = None,
    score_config: ScoreConfig | None = None,
    seed: int = 0,
) -> Iterator[tuple[str, dict]]:
    """The (endpoint, payload) pairs a run would send, built by the same prompt builders, calling nothing.

    Explanations are exact. Scoring is planned at Algorithm 1's minimum (``stop.min_runs`` passes,
    one call per item, the items the run would draw) with the few-shot neurons' explanations
    standing in for the explanation not yet written: a lower bound, since a noisy explanation
    needs more passes. Weight-Explanation first explains the next layer's units it shows.
    """
    check_request(neuron, method, polarity)
    config = config or new_run_config(api)
    if method != Method.CLIP_DISSECT:
        yield from _plan_explanations(
            neuron, method, n=n, api=api, model=model, polarity=polarity, config=config, seed=seed
        )
    if score:
        yield from _plan_scoring(
            neuron, target, n=n, api=api, model=model, polarity=polarity, sc=score_config, seed=seed
        )


def _plan_explanations(
    neuron: str, method: str, *, n: int, api: str, model: str, polarity: str, config: ExplainConfig, seed: int
) -> Iterator[tuple[str, dict]]:
    nexts: dict[int, str] | None = None
    if method == Method.WEIGHT_EXPLANATION:
        model_name, layer, _ = parse_neuron_id(neuron)
        units = weight_explanation_units(neuron, polarity, config)
        for u in units:
            yield from plan_requests(
                neuron_id(model_name, NEXT_LAYER[layer], u),
                Method.WEIGHT_LABEL,
                n=1,
                api=api,
                model=model,
                config=config,
                seed=seed,
            )
        nexts = {u: "x" * 80 for u in units}  # stand-ins of a typical explanation's length
    t = load_target(neuron, method, polarity, next_explanations=nexts)
    prompt = build_prompt(t, fewshot_neurons(neuron, method, polarity, next_explanations=nexts), config)
    for k in range(n):
        s = seeds.llm_seed(seed, "explain", k)
        if config.api == Api.CHAT:
            yield (
                "chat/completions",
                {
                    "model": model,
                    "messages": prompt,
                    "temperature": config.temperature,
                    "max_tokens": config.max_tokens,
                    "seed": s,
                    "stop": ["\n"],
                },
            )
        else:
            yield (
                "completions",
                {
                    "model": model,
                    "prompt": prompt,
                    "temperature": config.temperature,
                    "max_tokens": config.max_tokens,
                    "seed": s,
                    "stop": ["\n", "<end>"],
                },
            )


def _plan_scoring(
    neuron: str, target: str, *, n: int, api: str, model: str, polarity: str, sc: ScoreConfig | None, seed: int
) -> Iterator[tuple[str, dict]]:
    # The plan prices LLM calls: the paper's one-item simulator, whatever the default simulator is.
    sc = sc or ScoreConfig(mode=Mode.ONE, protocol=Protocol.UNIFORM, api=api)
    scored = load_target(neuron, target, polarity)
    fewshot = fewshot_neurons(neuron, target, polarity)
    stand_in = fewshot[0].explanation if fewshot else "x" * 80
    examples = fewshot_examples(fewshot, sc, seeds.rng(seed, "fewshot"))
    for _ in range(n):
        for p in range(sc.stop.min_runs):
            items, _r = draw_items(scored, sc, seeds.rng(seed, "pass", p))
            for i in items:
                text = scored.texts[i]
                if sc.api == Api.CHAT:
                    yield (
                        "chat/completions",
                        {
                            "model": model,
                            "messages": simulate_one_messages(target, examples, stand_in, text),
                            "max_tokens": 1,
                            "temperature": 0.0,
                            "logprobs": True,
                            "top_logprobs": sc.top_logprobs,
                        },
                    )
                else:
                    prompt = simulate_one_prompt(simulate_one_prefix(target, examples, TARGET_NAME, stand_in), text)
                    yield (
                        "completions",
                        {
                            "model": model,
                            "prompt": prompt,
                            "max_tokens": 1,
                            "temperature": 0.0,
                            "logprobs": sc.top_logprobs,
                        },
                    )
