"""The recorded experiments, as data: which neurons, which methods, which targets, which sizes.

`make reproduce` runs every experiment in `EXPERIMENTS` against its cassettes; `make record`
runs them against the local LLM server and appends what the cassettes lack (resumable).
Evaluation neurons are drawn with a fixed seed from the layer, excluding the hand-labelled
few-shot neurons and the neurons the prompts were tried on (`dev_neurons`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from importlib import resources

import numpy as np

from vse.explain import ExplainConfig, FewShotNeuron
from vse.score import SimulateConfig
from vse.stats import StopRule
from vse.targets import Target
from vse.vision import fixtures


@dataclass(frozen=True)
class Experiment:
    """One recorded experiment.

    name: folder name under cassettes/ and results/.
    model, layer: the layer whose units are explained.
    explain_kind: the pairs explanations are generated from ("weight-label", ...).
    score_kinds: the targets every explanation is scored on (Table 1's columns).
    n_neurons, neuron_seed: how many evaluation units are drawn, and the draw's seed.
    n_explanations: best-of-N (the paper: 10).
    baselines: other explanations scored the same way ("clip-dissect": its label as the explanation).
    seed: root of every per-pass and per-explanation seed.
    """

    name: str
    model: str = "efficientnet_lite0"
    layer: str = "_conv_head"
    explain_kind: str = "weight-label"
    score_kinds: tuple[str, ...] = ("weight-label",)
    n_neurons: int = 1
    neuron_seed: int = 0
    n_explanations: int = 3
    baselines: tuple[str, ...] = ("clip-dissect",)
    explain: ExplainConfig = field(default_factory=ExplainConfig)
    simulate: SimulateConfig = field(default_factory=SimulateConfig)
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)


EXPERIMENTS: dict[str, Experiment] = {
    e.name: e
    for e in [
        # Issue 3: one neuron end to end, Weight-Label on EfficientNet-Lite0's last hidden layer.
        Experiment(
            name="weight-label-one-neuron",
            n_neurons=1,
            n_explanations=3,
            simulate=SimulateConfig(mode="one", n_items=50, n_fewshot_pairs=50, fewshot_strategy="random-75/25", stop=StopRule(max_runs=8)),
        ),
    ]
}


def get_experiment(name: str) -> Experiment:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}") from None


# ----------------------------------------------------------------------------- data


def load_fewshot_file(model: str, layer: str) -> dict:
    name = f"{model}__{layer}.json"
    try:
        text = resources.files("vse.fewshot").joinpath(name).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no hand-labelled few-shot neurons for {model}/{layer}: vse/fewshot/{name} is missing") from None
    return json.loads(text)


def load_target(model: str, layer: str, unit: int, kind: str, polarity: str = "positive") -> Target:
    """A neuron's pairs of one kind, from the committed fixtures (numpy only, no model)."""
    neuron = f"{model}/{layer}/{unit}"
    if kind == "weight-label":
        weights, names = fixtures.load_weight_label(layer, model)
        texts, raw = names, weights
    elif kind == "weight-clip":
        weights, labels = fixtures.load_weight_clip(layer, model)
        texts, raw = labels, weights
    elif kind == "caption-activation":
        acts, _ids = fixtures.load_activations(layer)
        texts, raw = [p["caption"] for p in fixtures.load_probe()], acts.T
    else:
        raise ValueError(f"unknown feature kind {kind!r}")
    if not 0 <= unit < raw.shape[0]:
        raise ValueError(f"{neuron}: unit {unit} out of range; {layer} has {raw.shape[0]} units")
    return Target(neuron, kind, tuple(texts), np.asarray(raw[unit], dtype=np.float64), polarity)


def fewshot_neurons(exp: Experiment, kind: str) -> list[FewShotNeuron]:
    data = load_fewshot_file(exp.model, exp.layer)
    return [FewShotNeuron(load_target(exp.model, exp.layer, n["unit"], kind), n["explanation"]) for n in data["neurons"]]


def evaluation_units(exp: Experiment) -> list[int]:
    """The evaluation units: drawn with `neuron_seed`, never a few-shot or dev unit."""
    data = load_fewshot_file(exp.model, exp.layer)
    excluded = {n["unit"] for n in data["neurons"]} | set(data.get("dev_neurons", []))
    width = fixtures.load_weight_label(exp.layer, exp.model)[0].shape[0]
    candidates = np.array([u for u in range(width) if u not in excluded])
    rng = np.random.default_rng(exp.neuron_seed)
    return [int(u) for u in rng.choice(candidates, size=exp.n_neurons, replace=False)]


def baseline_explanation(exp: Experiment, baseline: str, unit: int) -> str:
    if baseline == "clip-dissect":
        # CLIP-Dissect gives one concept; as the paper does, it becomes "...does is find <concept>".
        labels = {d["unit"]: d["label"] for d in fixtures.load_dissect(exp.layer)}
        return labels[unit]
    raise ValueError(f"unknown baseline {baseline!r}; known: clip-dissect")
