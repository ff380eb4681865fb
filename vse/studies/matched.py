"""The power study: matched vs mismatched explanations under every protocol (see vse.core.discrimination).

Recording is resumable per neuron: each neuron's explanations and their predictions on the
shared pools live in one cassette (``cassettes/<study>/<model>__<layer>__<unit>.json.gz``), the
neutral explanation's in ``neutral.json.gz``. The pools and the few-shot context are computed from
the fixtures and the study's seed, so a replay sends exactly the recorded requests.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm import tqdm

from vse.core import exact, seeds
from vse.core.discrimination import (
    Comparison,
    build_pool,
    compare,
    explanation_sensitivity,
    item_sets,
    markdown,
    score_matrix,
)
from vse.core.target import neuron_id, neuron_stem
from vse.core.vocab import Display, Kind, Method, Polarity, Protocol, RankBy
from vse.data.loader import draw_neurons, load_target
from vse.method.explain import ExplainConfig
from vse.method.fewshot import fewshot_neurons
from vse.method.llm import LLM
from vse.method.pipeline import explain_neuron, next_layer_explanations, weight_explanation_units
from vse.method.predict import predict_explanation
from vse.method.score import NEUTRAL_EXPLANATION, ScoreConfig
from vse.outputs.paper_tables import (
    ExplanationScore,
    cells_csv,
    method_table,
    neuron_table,
    render_explanation_scores,
    rows_csv,
    score_rows,
    to_csv,
)
from vse.studies.cassette_llms import CassetteLLMs
from vse.studies.kind import MethodsStudy, heldout_explainer, one_item_scorer


@dataclass(frozen=True, kw_only=True)
class MatchedStudy(MethodsStudy):
    """A matched-vs-mismatched study.

    name: folder under cassettes/ and results/.
    model, layer: where the neurons are drawn. n_neurons, neuron_seed: how many, with which seed.
    methods: explanation methods compared (explanations are drawn with the held-out display, so
        the held-out protocol is fair; "clip-dissect" is the label).
    n_explanations: explanations per method and neuron (best of N in the method tables; the
        matched-vs-mismatched comparison uses each neuron's first one). clip-dissect has one.
    targets: the pair kinds scored. n_top, n_random: the pool (see vse.core.discrimination).
    explain: explanation knobs. score: simulation knobs (mode must be "one"; few-shot drawn once).
    seed: root of the pool, few-shot and explanation seeds.
    units: explicit units (`vse validate --units`); empty = draw `n_neurons` with `neuron_seed`.
    figures: write neurons.jsonl, so the HTML report shows each neuron's top-image grid beside its
        explanations and scores (the paper's Figures 1, 4, 11); off for the 16-neuron power study.
    """

    n_neurons: int = 16
    neuron_seed: int = 2026
    targets: tuple[str, ...] = (Kind.WEIGHT_LABEL, Kind.CAPTION_ACTIVATION)
    n_top: int = 6
    n_random: int = 40
    explain: ExplainConfig = field(default_factory=heldout_explainer)
    score: ScoreConfig = field(default_factory=one_item_scorer)
    units: tuple[int, ...] = ()
    figures: bool = False

    def run(self, llms: CassetteLLMs, *, progress: bool = True) -> MatchedResult:
        return run_matched_study(self, llms, progress=progress)


@dataclass
class Pool:
    """One target kind's shared items and each neuron's protocol item sets."""

    target: str
    items: np.ndarray
    texts: list[str]
    truths: list[np.ndarray]
    sets: list


def pools(study: MatchedStudy, units: list[int]) -> list[Pool]:
    out = []
    for t, kind in enumerate(study.targets):
        targets = [load_target(neuron_id(study.model, study.layer, u), kind) for u in units]
        values = [x.values for x in targets]
        # Rank as the explainer ranked (raw values; "scaled" for the studies recorded before the simulator study).
        order_by = values if study.explain.rank_by == RankBy.SCALED else [x.strength for x in targets]
        items, rand = build_pool(order_by, study.n_top, study.n_random, seeds.rng(study.seed, "pool", t))
        sets = [item_sets(v, items, rand, study.n_top, study.explain.n_pairs) for v in order_by]
        out.append(
            Pool(kind, items, [targets[0].texts[i] for i in items], [v[items].astype(float) for v in values], sets)
        )
    return out


def explain_one(
    llm: LLM, study: MatchedStudy, unit: int, method: str, next_explanations: dict[int, str] | None = None
) -> list[dict]:
    """The neuron's explanations by `method`: `n_explanations` of them (clip-dissect: its label)."""
    nxt = next_explanations if method == Method.WEIGHT_EXPLANATION else None
    recs = explain_neuron(
        neuron_id(study.model, study.layer, unit),
        method,
        llm=llm,
        n=study.n_for(method),
        config=study.explain,
        seed=study.seed,
        next_explanations=nxt,
        progress=False,
    )
    return [dict(r.to_json(), index=k) for k, r in enumerate(recs)]


def next_layer(llm: LLM, study: MatchedStudy, units: list[int], *, progress: bool = True) -> dict[int, str]:
    """vse's Weight-Label explanations of every next-layer unit the Weight-Explanation prompts
    of `units` (and of the few-shot neurons) show: recorded once for the whole study, in their
    own cassette, instead of once per neuron."""
    neurons = [neuron_id(study.model, study.layer, unit) for unit in units]
    needed = sorted({u for n in neurons for u in weight_explanation_units(n, Polarity.POSITIVE, study.explain)})
    return next_layer_explanations(
        neurons[0],
        llm=llm,
        units=needed,
        config=ExplainConfig(shown=Display.TOP, rank_by=study.explain.rank_by),
        seed=study.seed,
        progress=progress,
    )


def predict_pool(llm: LLM, study: MatchedStudy, pool: Pool, explanation: str) -> list[float]:
    """One explanation's predictions for every pool item (one-item mode, fixed few-shot draw)."""
    values = predict_explanation(
        llm,
        explanation,
        pool.texts,
        kind=pool.target,
        fewshot=fewshot_neurons(neuron_id(study.model, study.layer, 0), pool.target),
        config=study.score,
        rng=seeds.rng(study.seed, "fewshot"),
    )
    return [round(v, 4) for v in values]


@dataclass(frozen=True)
class MatchedResult:
    """A matched-vs-mismatched run: the explanations, the comparison rows, every explanation's scores."""

    study: MatchedStudy
    units: list[int]
    explanations: list[dict]
    pools: dict[str, dict]  # target -> the pool's items and size
    rows: list[Comparison]
    scores: list[ExplanationScore]

    @property
    def comparison(self) -> str:
        """The matched-vs-mismatched table (what `vse validate` prints)."""
        return markdown(self.rows)

    @property
    def table(self) -> str:
        """The method tables (both protocols), the neuron table, the comparison."""
        n = self.study.n_explanations
        parts = []
        for protocol, what in (
            (Protocol.UNIFORM, "the paper's protocol: the pool's random items"),
            (
                Protocol.TOP_AND_RANDOM_HELDOUT,
                "the neuron's held-out top items plus the random items it was not shown",
            ),
        ):
            cell = (
                f"the mean over {len(self.units)} neurons of the best of {n} explanations' score (the mean of all {n})"
                if n > 1
                else f"the mean over {len(self.units)} neurons (the same again: one explanation each)"
            )
            parts.append(
                f"Method table, {protocol} ({what}); each cell: {cell}:\n\n" + method_table(self.scores, protocol)
            )
        for method, target in ((Method.WEIGHT_LABEL, Kind.WEIGHT_LABEL),):
            t = neuron_table(self.scores, method, target)
            if t:
                parts.append(
                    f"Neuron table ({method} explanations on the {target} target, uniform; "
                    "Acc: rounded prediction equals the true 0..10 value):\n\n" + t
                )
        parts.append("Matched vs mismatched (each neuron's first explanation of each method):\n\n" + self.comparison)
        return "\n".join(parts)

    @property
    def figure(self) -> str:
        return "\n![pass scores](scores.png)\n" if self.study.figures else ""

    def files(self) -> dict[str, str | bytes]:
        files: dict[str, str | bytes] = {
            "explanations.jsonl": "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.explanations),
            "summary.json": summary_json(self.rows),
            "comparison.csv": to_csv([r.to_json() for r in self.rows]),
            "scores.csv": rows_csv(self.scores),
            "methods.csv": cells_csv(self.scores),
        }
        if self.study.figures:
            study = self.study
            files["scores.png"] = render_explanation_scores(self.scores, f"{study.name}: every explanation's score")
            # What the HTML report lists beside each neuron's top-image grid (vse.outputs.report).
            files["neurons.jsonl"] = "".join(
                json.dumps(
                    dict(r.to_json(), neuron=neuron_id(study.model, study.layer, r.unit), mean=r.to_json()["corr"]),
                    sort_keys=True,
                )
                + "\n"
                for r in self.scores
            )
        return files


#: The comparison's protocols and the `ItemSets` attribute holding each one's items.
COMPARED_SETS = (
    (Protocol.UNIFORM, "uniform"),
    (Protocol.TOP_AND_RANDOM, "top_and_random"),
    (Protocol.TOP_AND_RANDOM_HELDOUT, "heldout"),
    (Protocol.RECALL_FREE, "recall_free"),
)


def run_matched_study(study: MatchedStudy, open_llm: CassetteLLMs, *, progress: bool = True) -> MatchedResult:
    """Record or replay the study; `open_llm(cassette_stem)` is a context manager giving an LLM."""
    units = list(study.units) or draw_neurons(study.model, study.layer, study.n_neurons, study.neuron_seed)
    ps = pools(study, units)
    explanations: list[dict] = []
    # (method, index, unit, target) -> pool predictions; the comparison reads index 0.
    preds: dict[tuple[str, int, int, str], list[float]] = {}
    neutral: dict[str, list[float]] = {}
    with open_llm("neutral") as llm:
        for pool in ps:
            neutral[pool.target] = predict_pool(llm, study, pool, NEUTRAL_EXPLANATION)
    nxt = None
    if Method.WEIGHT_EXPLANATION in study.methods:
        with open_llm("next-layer") as llm:
            nxt = next_layer(llm, study, units, progress=progress)
    for unit in tqdm(units, desc=study.name, unit="neuron", disable=not progress):
        with open_llm(neuron_stem(study.model, study.layer, unit)) as llm:
            recs = [r for method in study.methods for r in explain_one(llm, study, unit, method, nxt)]
            explanations += recs
            # Target by target: consecutive requests share the few-shot context, which the
            # server's prompt cache then computes once per target instead of once per explanation.
            for pool in ps:
                for rec in recs:
                    preds[(rec["method"], rec["index"], unit, pool.target)] = predict_pool(
                        llm, study, pool, rec["explanation"]
                    )
    rows: list[Comparison] = []
    for pool in ps:
        for method in study.methods:
            p = np.array([preds[(method, 0, u, pool.target)] for u in units])
            prior = np.array(neutral[pool.target])
            sens = [
                explanation_sensitivity(p[j], prior, x.held, x.unseen_random, x.uniform)
                for j, x in enumerate(pool.sets)
            ]
            sensitivity = exact.mean([a for a, _ in sens])
            corr_with_neutral = exact.mean([c for _, c in sens])
            for protocol, attr in COMPARED_SETS:
                sets = [getattr(s, attr) for s in pool.sets]
                for corrected in (False, True):
                    s = score_matrix(p, pool.truths, sets, prior if corrected else None)
                    label = protocol + (" (prior-corrected)" if corrected else "")
                    c = compare(s, protocol=label, target=pool.target, method=method)
                    rows.append(replace(c, sensitivity=sensitivity, corr_with_neutral=corr_with_neutral))
    return MatchedResult(
        study,
        units,
        explanations,
        {p.target: {"items": p.items.tolist(), "size": len(p.items)} for p in ps},
        rows,
        explanation_scores(study, units, ps, explanations, preds),
    )


def explanation_scores(
    study: MatchedStudy, units: list[int], ps: list[Pool], explanations: list[dict], preds: dict
) -> list[ExplanationScore]:
    """Every explanation on its own neuron, per target and protocol (vse.outputs.paper_tables)."""
    rows: list[ExplanationScore] = []
    for pool in ps:
        for rec in explanations:
            j = units.index(int(rec["neuron"].rsplit("/", 1)[1]))
            p = preds[(rec["method"], rec["index"], units[j], pool.target)]
            rows += score_rows(
                units[j], rec["method"], rec["index"], rec["explanation"], pool.target, p, pool.truths[j], pool.sets[j]
            )
    return rows


def summary_json(rows: list[Comparison]) -> str:
    """results/<study>/summary.json: one object per table row, with the keys that tell the rows apart
    (protocol, target, method) and their statistics."""
    keys = (
        "protocol",
        "target",
        "method",
        "n_neurons",
        "matched_mean",
        "mismatched_mean",
        "wins",
        "rank1",
        "mean_rank",
        "p_value",
        "neurons_needed_for_p01",
        "sensitivity",
        "corr_with_neutral",
    )
    data = [{k: r.to_json()[k] for k in keys} for r in rows]
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
