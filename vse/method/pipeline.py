"""The Python API: the same verbs as the command line.

>>> from vse.method.pipeline import LLM, explain_neuron, score_explanation      # doctest: +SKIP
>>> with LLM.open("http://127.0.0.1:8765/v1", cassette="my-run.json.gz", record=True) as llm:
...     [rec] = explain_neuron("efficientnet_lite0/_conv_head/17", "weight-label", llm=llm)
...     print(score_explanation("efficientnet_lite0/_conv_head/17", rec.explanation, "weight-label", llm=llm).line())

`LLM` bundles a client with what the server says it is (for provenance) and, optionally, a
cassette: live calls are recorded there, and ``record=False`` replays it offline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vse.core import seeds
from vse.core.target import POLARITIES, parse_neuron_id
from vse.data.loader import FIXTURES, KINDS, TARGET_KINDS, Source, clip_dissect_label, fewshot_explanations, load_target
from vse.llm.client import ClientConfig, LLMClient
from vse.method.explain import NEW_MAX_TOKENS, ExplainConfig, FewShotNeuron, explain
from vse.method.prediction_store import PredictionStore
from vse.method.records import ExplanationRecord, Provenance, ScoreRecord, prompts_hash
from vse.method.score import ScoreConfig
from vse.method.score import score_explanation as _score

#: The explanation methods (rows of the paper's Table 1, plus Weight-Explanation).
METHODS = ("caption-activation", "weight-label", "weight-clip", "weight-explanation", "clip-dissect")
METHOD_HELP = {
    "caption-activation": "the LLM reads the captions of the images the neuron responds to most",
    "weight-label": "the LLM reads the classes the neuron's weights support most (deeper layers: the eq. 1 product)",
    "weight-clip": "the LLM reads the next layer's units it feeds most, named by their CLIP-Dissect labels",
    "weight-explanation": "as weight-clip, the next layer's units named by vse's own explanations of them",
    "clip-dissect": "CLIP-Dissect's one-concept label, used as the explanation (the baseline)",
}
TARGET_HELP = {
    "caption-activation": "activations on the probe images, predicted from their captions",
    "weight-label": "weights to the classes, predicted from the class names",
    "weight-clip": "weights to the next layer's units, predicted from their CLIP-Dissect labels",
}
#: The next layer of each layer that has weight-clip fixtures (whose units the weights reach).
NEXT_LAYER = {"_blocks.15": "_conv_head"}
#: Layers with hand-labelled few-shot neurons (vse/fewshot/), and the one used for any other layer.
FEWSHOT_LAYERS = {("efficientnet_lite0", "_conv_head"), ("efficientnet_lite0", "_blocks.15")}
FEWSHOT_FALLBACK = ("efficientnet_lite0", "_conv_head")
#: What the local llama.cpp server reports as its model id (`vse llm serve` sets this alias).
LOCAL_ALIAS_SUFFIX = ".gguf"


@dataclass
class LLM:
    """A client plus the server's identity, for provenance.

    client: the thin HTTP client (cassette-aware through `requests`).
    api: "completions" or "chat" (the endpoint explanations and simulations use).
    reported_model: the model id the server reports (or the configured name).
    llm_file_sha256, server, server_slots: set when the server is vse's local llama.cpp server.
    store: the run's prediction store (shared by every score made with this LLM).
    checkpoint: saves the cassette; the scoring loop calls it after every pass while recording.
    in_flight: one-item predictions sent at once (`vse.method.score.predict_items`); results do not
        depend on it. `from_client` sets it to the server's slots when the server reports them
        (vse's llama-server), else 1; ``--in-flight`` sets it for a remote endpoint.
    """

    client: LLMClient
    api: str = "completions"
    reported_model: str = ""
    llm_file_sha256: str | None = None
    server: str | None = None
    #: the server's parallel slots when it reports them (vse's llama-server does), else None
    server_slots: int | None = None
    store: PredictionStore = field(default_factory=PredictionStore)
    checkpoint: Callable[[], None] | None = None  # called after every pass (recording saves there)
    in_flight: int = 1
    #: the embedding simulator's store (`vse.method.simulators.embedding.EmbeddingStore`), when it is used
    embeddings: object | None = None

    @classmethod
    def from_client(cls, client: LLMClient, api: str = "completions") -> LLM:
        llm = cls(client, api)
        llm.identify()
        llm.in_flight = llm.server_slots or 1
        return llm

    def identify(self) -> None:
        """Ask the server what it serves (GET /models); recorded in the cassette like any call."""
        from vse.llm.server import MODEL_FILE, MODEL_SHA256

        self.reported_model = self.client.config.model
        url = self.client.config.base_url.rstrip("/") + "/models"
        try:
            # An endpoint the circuit breaker knows is down is not waited on here; (connect, read) timeouts.
            breaker = getattr(self.client, "breaker", None)
            if breaker is not None:
                breaker.check(url)
            resp = self.client.session.get(url, timeout=getattr(self.client, "timeout", self.client.config.timeout_s))
            data = resp.json().get("data") if resp.status_code == 200 else None
        except Exception:  # noqa: BLE001 - identity is best effort; a server without /models is fine
            data = None
        entry = data[0] if data and isinstance(data, list) and isinstance(data[0], dict) else {}
        if entry.get("id"):
            # llama-cpp-python reports the model file's path: keep its name, never a local path.
            self.reported_model = Path(str(entry["id"])).name
        if self.reported_model == MODEL_FILE:
            from vse.llm.server import describe_server

            self.llm_file_sha256 = MODEL_SHA256
            # From the recorded reply only (llama-server's tags name its build, slots and
            # context), so a replay names the server the recording used.
            self.server, self.server_slots = describe_server(entry)

    @classmethod
    @contextlib.contextmanager
    def open(
        cls,
        base_url: str | None = None,
        *,
        model: str | None = None,
        api: str = "completions",
        cassette: Path | str | None = None,
        record: bool = True,
        max_retries: int = 5,
        in_flight: int | None = None,
    ) -> Iterator[LLM]:
        """An LLM for a block: with a cassette, live calls are recorded (``record``) or replayed.

        in_flight: one-item predictions sent at once (None: the server's slots, else 1)."""
        from vse.llm.cassettes import use_cassette

        config = ClientConfig.from_env(base_url=base_url, model=model, max_retries=max_retries if record else 0)
        with contextlib.ExitStack() as stack:
            if cassette is not None:
                Path(cassette).parent.mkdir(parents=True, exist_ok=True)
                stack.enter_context(use_cassette(cassette, record=record))
            llm = cls.from_client(LLMClient(config), api)
            if in_flight is not None:
                llm.in_flight = in_flight
            yield llm

    def provenance(self, fewshot: Sequence[str], seed: int, *, simulator: str = "", protocol: str = "") -> Provenance:
        return Provenance(
            llm=self.reported_model,
            api=self.api,
            llm_file_sha256=self.llm_file_sha256,
            server=self.server,
            prompts_sha256=prompts_hash(),
            fewshot=tuple(fewshot),
            seed=seed,
            simulator=simulator,
            protocol=protocol,
        )


def fewshot_neurons(
    neuron: str, kind: str, polarity: str = "positive", *, next_explanations: Mapping[int, str] | None = None
) -> list[FewShotNeuron]:
    """The layer's hand-labelled few-shot neurons for `kind`, seen with the same polarity handling.

    Their explanations describe what drives them up, so negative targets still see them positive;
    signed targets see them signed (their explanations then say nothing of the negatives).
    """
    model, layer, _ = parse_neuron_id(neuron)
    shown = "both" if polarity == "both" else "positive"
    if (model, layer) not in FEWSHOT_LAYERS:
        # No hand-labelled neurons for this layer: EfficientNet-Lite0's last hidden layer's serve
        # as worked examples (from the fixtures). They show the format and the kind of answer;
        # they need not come from the same network.
        model, layer = FEWSHOT_FALLBACK
    return [
        FewShotNeuron(load_target(f"{model}/{layer}/{unit}", kind, shown, next_explanations=next_explanations), text)
        for unit, text in fewshot_explanations(model, layer, kind)
    ]


def _check(neuron: str, method: str, polarity: str) -> None:
    parse_neuron_id(neuron)
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if polarity not in POLARITIES:
        raise ValueError(f"polarity {polarity!r} is not one of {POLARITIES}")


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
    from tqdm import tqdm

    model, layer, _ = parse_neuron_id(neuron)
    if layer not in NEXT_LAYER:
        raise ValueError(
            f"weight-explanation needs the next layer's weights: known for {', '.join(NEXT_LAYER)}, not {layer}"
        )
    nxt = NEXT_LAYER[layer]
    config = config or ExplainConfig()
    out: dict[int, str] = {}
    for unit in tqdm(sorted(set(units)), desc="explain next layer", unit="unit", leave=False, disable=not progress):
        [rec] = explain_neuron(
            f"{model}/{nxt}/{unit}", "weight-label", llm=llm, n=1, config=config, seed=seed, progress=False
        )
        out[unit] = rec.explanation
        if llm.checkpoint is not None:
            llm.checkpoint()  # recording: an interruption loses at most this unit's explanation
    return out


def weight_explanation_units(neuron: str, polarity: str, config: ExplainConfig) -> list[int]:
    """Next-layer units whose explanations a Weight-Explanation prompt for `neuron` shows: the
    target's shown pairs (top or held-out display) and each few-shot neuron's top pairs."""
    import numpy as np

    from vse.core.sampling import top
    from vse.method.explain import shown_indices

    model, layer, _ = parse_neuron_id(neuron)
    units = {int(i) for i in np.asarray(shown_indices(load_target(neuron, "weight-clip", polarity), config))}
    for u, _ in fewshot_explanations(model, layer, "weight-explanation"):
        t = load_target(f"{model}/{layer}/{u}", "weight-clip", "positive")
        units |= {int(i) for i in np.asarray(top(t.strength if config.rank_by == "raw" else t.values, config.n_pairs))}
    return sorted(units)


def explain_neuron(
    neuron: str,
    method: str,
    *,
    llm: LLM,
    n: int = 1,
    polarity: str = "positive",
    config: ExplainConfig | None = None,
    seed: int = 0,
    next_explanations: Mapping[int, str] | None = None,
    progress: bool = True,
    source: Source = FIXTURES,
) -> list[ExplanationRecord]:
    """N explanations of a neuron by one method (clip-dissect: its single label)."""
    _check(neuron, method, polarity)
    # No config pinned (a new run): the new budget, a reply still cut off trimmed to its last sentence.
    # The recorded experiments pin theirs (60 tokens, untrimmed), so they keep sending the recorded requests.
    trim = config is None
    config = config or ExplainConfig(api=llm.api, max_tokens=NEW_MAX_TOKENS)
    if config.api != llm.api:
        config = ExplainConfig(**{**config.__dict__, "api": llm.api})
    if method == "clip-dissect":
        prov = llm.provenance((), seed)
        return [ExplanationRecord(neuron, method, "positive", clip_dissect_label(neuron), None, 0, 0, 0, prov)]
    if method == "weight-explanation" and next_explanations is None:
        units = weight_explanation_units(neuron, polarity, config)
        next_explanations = next_layer_explanations(
            neuron, llm=llm, units=units, config=ExplainConfig(rank_by=config.rank_by), seed=seed, progress=progress
        )
    target = load_target(neuron, method, polarity, next_explanations=next_explanations, source=source)
    fewshot = fewshot_neurons(neuron, method, polarity, next_explanations=next_explanations)
    prov = llm.provenance([f.target.neuron for f in fewshot], seed)
    records = []
    for k in range(n):
        e = explain(llm.client, target, fewshot, config, seed=seeds.llm_seed(seed, "explain", k), trim=trim)
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
            )
        )
    return records


def score_explanation(
    neuron: str,
    explanation: str,
    target: str,
    *,
    llm: LLM,
    config: ScoreConfig | None = None,
    polarity: str = "positive",
    method: str = "user",
    explanation_seed: int | None = None,
    seed: int = 0,
    progress: bool = True,
    checkpoint=None,
    source: Source = FIXTURES,
) -> ScoreRecord:
    """Score any explanation on a target kind of a neuron with Algorithm 1 (see vse.method.score)."""
    parse_neuron_id(neuron)
    if target not in TARGET_KINDS:
        raise ValueError(f"unknown target {target!r}; known: {', '.join(TARGET_KINDS)}")
    if polarity not in POLARITIES:
        raise ValueError(f"polarity {polarity!r} is not one of {POLARITIES}")
    config = config or ScoreConfig(api=llm.api)
    if config.api != llm.api:
        config = ScoreConfig(**{**config.__dict__, "api": llm.api})
    scored = load_target(neuron, target, polarity, source=source)
    fewshot = fewshot_neurons(neuron, target, polarity)
    result = _score(
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
    )
    prov = llm.provenance([f.target.neuron for f in fewshot], seed, simulator=config.mode, protocol=config.label)
    fields = {k: v for k, v in result.__dict__.items()}
    return ScoreRecord(
        neuron=neuron,
        method=method,
        explanation=explanation,
        explanation_seed=explanation_seed,
        target=target,
        polarity=polarity,
        provenance=prov,
        **fields,
    )


# ----------------------------------------------------------------------------- planning (dry runs)


def plan_requests(
    neuron: str,
    method: str,
    *,
    n: int = 1,
    score: bool = False,
    target: str = "weight-label",
    api: str = "completions",
    model: str = "local",
    polarity: str = "positive",
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
    from vse.method.explain import build_prompt
    from vse.method.prompts import TARGET_NAME, simulate_one_messages, simulate_one_prefix, simulate_one_prompt
    from vse.method.score import draw_items, fewshot_examples

    _check(neuron, method, polarity)
    config = config or ExplainConfig(api=api, max_tokens=NEW_MAX_TOKENS)
    if method == "clip-dissect":
        pass
    else:
        nexts: dict[int, str] | None = None
        if method == "weight-explanation":
            model_name, layer, _ = parse_neuron_id(neuron)
            units = weight_explanation_units(neuron, polarity, config)
            for u in units:
                yield from plan_requests(
                    f"{model_name}/{NEXT_LAYER[layer]}/{u}",
                    "weight-label",
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
            if config.api == "chat":
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
    if not score:
        return
    sc = score_config or ScoreConfig(api=api)
    scored = load_target(neuron, target, polarity)
    fewshot = fewshot_neurons(neuron, target, polarity)
    stand_in = fewshot[0].explanation if fewshot else "x" * 80
    examples = fewshot_examples(fewshot, sc, seeds.rng(seed, "fewshot"))
    for _ in range(n):
        for p in range(sc.stop.min_runs):
            items, _r = draw_items(scored, sc, seeds.rng(seed, "pass", p))
            for i in items:
                text = scored.texts[i]
                if sc.api == "chat":
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


__all__ = [
    "KINDS",
    "LLM",
    "METHODS",
    "TARGET_KINDS",
    "explain_neuron",
    "fewshot_neurons",
    "next_layer_explanations",
    "plan_requests",
    "score_explanation",
]
