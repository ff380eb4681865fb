"""The scorer-sanity study: does each of vse's scorers pass NeuronEval's sanity checks, and how well does it pick
a unit's own explanation (Meta-AUPRC)?

Reference: Oikarinen, Yan & Weng, *Evaluating Neuron Explanations: A Unified Framework with Sanity Checks* (ICML
2025, arXiv 2506.05774; code Trustworthy-ML-Lab/Neuron_Eval at commit 5538002: ``metrics.py``,
``theoretical_sanity_check.ipynb``, ``experimental_sanity_check.ipynb``). Their definitions are in
`vse.core.sanity`; their published rows are quoted in `NEURONEVAL_ROWS` beside ours, never recomputed.

Design (fixed before any number was recorded):

1. Metric level (no simulator, no LLM). The simulator is the identity: it predicts the concept vector c itself
   (`vse.method.sanity.oracle_score`, pinned by a test to `score_target`'s mean with a simulator that returns
   c), so what is tested is vse's scoring: each protocol's own item selection (`vse.core.protocols.select`,
   with its own exclusion of the 25 items the explainer was shown: the top 25 by raw value, as
   `ScoreConfig().n_shown` says), its redraws, 100 x Pearson (`vse.core.exact`) and Algorithm 1's passes
   (`ScoreConfig()`'s stopping rule: >= 3 passes, half-width < 5, at most 15). Every member of
   `vse.core.vocab.Protocol`, 50 items a pass. Simulators are tested at text level (3.), not here.
   - Theoretical setting (NeuronEval's): the unit is the concept (a = c, binary), the first round(f n) of n
     items positive. NeuronEval takes n = 500,000 and 1,000 seeds; vse's exact Pearson is a Python sum, so
     n = 50,000 (f = 0.1, 0.01, 0.001: 5,000 to 50 positives; not 1e-4, whose 5 positives would all be among
     the 25 shown: NeuronEval asks n >> 1/f) and n = 1,000, the size of vse's Weight-Label targets (f = 0.499,
     0.1, 0.01, 0.001: 499 to 1 positive), 100 cases each.
   - Real units: 10 `_conv_head` units (drawn with `neuron_seed`), on their Weight-Label targets (1,000
     classes) and Caption-Activation targets (700 probe captions); a = the unit's values as vse scores them,
     c = its top k = ceil(f n) items by raw value (NeuronEval's ``_binarize_act``), f = 0.1, 0.01, 0.001;
     10 cases per unit (100 per cell).
   - A case: c' = c with missing labels (half the positives dropped) or extra labels (as many again added at
     random), drawn from stream "sanity"; s(a, c) and s(a, c') are scored with the same scoring seed (the
     case's: vse scores two explanations of a unit with one seed, so both see the same passes' items). A
     decrease: (s(a, c') - s(a, c)) / 200 < -0.001. A case vse cannot score (`Unscorable`: the draws keep
     finding one value, or every item the explainer did not see has one value) is counted in its own
     column, never as a decrease, never dropped from the denominator. A scorer passes a test at >= 90 %.
2. The check that the test works: NeuronEval's Pearson over top-and-random items fails the extra-labels
   test on sparse units; vse's top-and-random must fail it too (`tests/studies/test_scorer_sanity.py`).
3. Text level, on real explanations: `_conv_head` units whose top 4 Weight-Label classes all lie in one
   WordNet group of at most 340 classes (`vse/studies/data/imagenet_groups.json`, NeuronEval's
   ``imagenet_superclass_to_ids.json``; the smallest such group; few-shot and development units excluded).
   Three explanations each, written by rule, not by an LLM: exact (the 4 class names), too broad (the
   group, e.g. "placental mammals"), too narrow (the first 2 of the 4 class names: half the concepts). A
   scorer passes a unit when the exact explanation scores above both others.
   - embedding simulator (`vse.method.simulators.embedding`, all-MiniLM-L6-v2, recorded store): every
     protocol of 1., and the LLM's two item sets below;
   - the one-item LLM simulator (the paper's; `one_item_scorer()`, recorded cassettes, one per unit) on the
     first `text_llm_units` of them, on two small item sets (an LLM call per item): recall-free on a pool of
     the unit's next `pool_next` items after the 25 shown plus `pool_random` random items it was not shown
     (stream "pool"), one exact pass; and uniform, 3 passes of `uniform_items` items.
4. Meta-AUPRC (NeuronEval's second meta-evaluation, `vse.core.discrimination.meta_auprc`): `meta_units`
   `_conv_head` units (drawn with `neuron_seed` + 1), each explained by its top 4 class names; every
   explanation scored on every unit by the embedding simulator under each protocol of 1.; the AUPRC of
   picking the matched pairs among all pairs (floor 1/K) and against each unit's hard negative, the
   explanation nearest to its own by embedding (floor 0.5).

Results: ``decrease_rates.csv`` (1., one row per setting x protocol x frequency x test), ``text_level.csv``
(3., one row per unit x scorer x explanation), ``meta_auprc.csv`` (4.), ``neuroneval_reference.csv`` (their
rows), and ``table.md`` with all four and the verdict. A replay recomputes 1. and 4. and reads 3.'s LLM
predictions from the cassettes and the embeddings from ``cassettes/scorer-sanity/embeddings.npz``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
from tqdm import tqdm

from vse.core import exact, sanity, seeds
from vse.core.discrimination import MetaAUPRC, meta_auprc, nearest_others
from vse.core.markdown import Column, markdown_table
from vse.core.protocols import ranks
from vse.core.sanity import SanityCount, SanityTest
from vse.core.stats import StopRule
from vse.core.target import Target, neuron_id, neuron_stem
from vse.core.vocab import EXACT_PROTOCOLS, Kind, Mode, Protocol
from vse.data.loader import draw_neurons, excluded_units, fixture_width, load_target
from vse.method.pipeline import score_explanation
from vse.method.sanity import SCORE_SPAN, Oracle
from vse.method.score import ScoreConfig, Unscorable
from vse.method.simulators.embedding import EmbeddingStore, cosine_predictions
from vse.outputs.paper_tables import to_csv
from vse.studies.cassette_llms import CassetteLLMs
from vse.studies.kind import OneLayerStudy, one_item_scorer

PROTOCOLS: tuple[Protocol, ...] = tuple(Protocol)
#: The recommended scorer (`vse.method.defaults`: the embedding simulator, recall-free over every unseen item).
RECOMMENDED = Protocol.RECALL_FREE


@dataclass(frozen=True)
class Theory:
    """One theoretical setting: n items, the activation frequencies tested."""

    n: int
    frequencies: tuple[float, ...]


@dataclass(frozen=True)
class Reference:
    """A row NeuronEval published: a metric's decrease shares (%) per test, by frequency or setting."""

    metric: str
    setting: str  # "theoretical, f = ..." or "experimental (mean over their settings)"
    missing: float
    extra: float
    source: str


_THEORY_NB = "theoretical_sanity_check.ipynb (stored outputs, n = 500,000, 1,000 seeds)"
_TABLE = "the paper's results table, as quoted in vse issue 31 (experimental / theoretical)"
#: NeuronEval's own numbers, quoted (not recomputed): the theoretical notebook's stored outputs for the two
#: Pearson metrics, and the paper's summary for the experimental setting.
NEURONEVAL_ROWS: tuple[Reference, ...] = (
    *(
        Reference("correlation (every item)", f"theoretical, f = {f}", 100.0, 100.0, _THEORY_NB)
        for f in ("0.499", "0.1", "0.01", "0.001", "0.0001")
    ),  # fmt: skip
    Reference("correlation top-and-random", "theoretical, f = 0.499", 100.0, 100.0, _THEORY_NB),
    Reference("correlation top-and-random", "theoretical, f = 0.1", 100.0, 93.0, _THEORY_NB),
    Reference("correlation top-and-random", "theoretical, f = 0.01", 100.0, 20.0, _THEORY_NB),
    Reference("correlation top-and-random", "theoretical, f = 0.001", 100.0, 2.3, _THEORY_NB),
    Reference("correlation top-and-random", "theoretical, f = 0.0001", 100.0, 0.2, _THEORY_NB),
    Reference("correlation (every item)", "experimental", 99.41, 99.92, _TABLE),
    Reference("correlation top-and-random", "experimental", 87.83, 60.26, _TABLE),
)


@dataclass(frozen=True, kw_only=True)
class ScorerSanityStudy(OneLayerStudy):
    """NeuronEval's sanity checks and Meta-AUPRC for vse's scorers (module doc: the design).

    theory: the theoretical settings. cases: cases per theoretical cell. real_kinds, real_units, real_cases,
    real_frequencies: the real-unit setting. text_llm_units, pool_next, pool_random, uniform_items: the text
    level's LLM part. meta_units: units of the Meta-AUPRC matrix. score: the LLM simulator's knobs.
    """

    name: str = "scorer-sanity"
    neuron_seed: int = 31
    theory: tuple[Theory, ...] = (Theory(50_000, (0.1, 0.01, 0.001)), Theory(1_000, (0.499, 0.1, 0.01, 0.001)))
    cases: int = 100
    real_kinds: tuple[str, ...] = (Kind.WEIGHT_LABEL, Kind.CAPTION_ACTIVATION)
    real_units: int = 10
    real_cases: int = 10
    real_frequencies: tuple[float, ...] = (0.1, 0.01, 0.001)
    group_max: int = 340
    text_llm_units: int = 6
    pool_next: int = 15
    pool_random: int = 15
    uniform_items: int = 16
    meta_units: int = 32
    score: ScoreConfig = field(default_factory=one_item_scorer)

    def run(self, llms: CassetteLLMs, *, progress: bool = True) -> ScorerSanityResult:
        store = EmbeddingStore(llms.folder / "embeddings.npz", record=llms.record)
        try:
            return run_scorer_sanity(self, llms, store, progress=progress)
        finally:
            store.save()


# ----------------------------------------------------------------------------- 1. metric level


@dataclass(frozen=True)
class RateRow:
    """One cell of the decrease-rate table."""

    setting: str
    n: int
    frequency: float
    protocol: str
    test: str
    count: SanityCount

    def to_csv(self) -> dict:
        c = self.count
        return {
            "setting": self.setting,
            "n": self.n,
            "frequency": self.frequency,
            "protocol": self.protocol,
            "test": self.test,
            "cases": c.cases,
            "decreases": c.decreases,
            "unscorable": c.unscorable,
            "unchanged": c.unchanged,
            "decrease_share": round(c.decrease_share, 4),
            "unscorable_share": round(c.unscorable_share, 4),
            "mean_change": None if c.mean_change is None else round(c.mean_change, 6),
        }


def protocol_config(protocol: Protocol) -> ScoreConfig:
    """The metric-level scorer of one protocol: `ScoreConfig()`'s passes and items, this protocol."""
    return ScoreConfig(protocol=protocol)


def base_scores(oracle: Oracle, concept: np.ndarray, cases: list[tuple[int, int]]) -> list[float | None]:
    """s(a, c) for each case (scoring seed, perturbation index): both tests' cases share it (same concept and
    seeds), so it is scored once. An exact protocol draws no items: one score serves every seed."""
    if oracle.config.protocol in EXACT_PROTOCOLS:
        return [oracle.score(concept, seed=0)] * len(cases)
    return [oracle.score(concept, seed=seed) for seed, _k in cases]


def case_scores(
    oracle: Oracle, concept: np.ndarray, test: SanityTest, cases: list[tuple[int, int]], path
) -> list[float | None]:
    """s(a, c') for each case (scoring seed, perturbation index); perturbations from stream "sanity"."""
    test_index = list(SanityTest).index(test)
    out = []
    for seed, k in cases:
        changed = sanity.perturb(test, concept, seeds.rng(0, "sanity", *path, test_index, k))
        out.append(oracle.score(changed, seed=seed))
    return out


def theory_rows(study: ScorerSanityStudy, *, progress: bool = False) -> list[RateRow]:
    rows = []
    for t_index, theory in enumerate(study.theory):
        texts = ("",) * theory.n  # the oracle reads no text
        for f_index, f in enumerate(tqdm(theory.frequencies, desc=f"theory n={theory.n}", disable=not progress)):
            c = sanity.theoretical_concept(theory.n, f)
            target = Target(f"theory/n{theory.n}/{f_index}", Kind.WEIGHT_LABEL, texts, c)
            cases = [(k, k) for k in range(study.cases)]
            for protocol in PROTOCOLS:
                oracle = Oracle(target, protocol_config(protocol))
                base = base_scores(oracle, c, cases)
                for test in SanityTest:
                    pert = case_scores(oracle, c, test, cases, (1, t_index, f_index))
                    count = sanity.count_decreases(base, pert, span=SCORE_SPAN)
                    rows.append(RateRow("theoretical", theory.n, f, protocol, test, count))
    return rows


def real_rows(study: ScorerSanityStudy, *, progress: bool = False) -> list[RateRow]:
    units = draw_neurons(study.model, study.layer, study.real_units, study.neuron_seed)
    rows = []
    cases = [(k, k) for k in range(study.real_cases)]
    for k_index, kind in enumerate(study.real_kinds):
        targets = [load_target(neuron_id(study.model, study.layer, u), kind) for u in units]
        for f_index, f in enumerate(tqdm(study.real_frequencies, desc=f"real {kind}", disable=not progress)):
            concepts = [sanity.binarise_top(target.strength, f) for target in targets]
            for protocol in PROTOCOLS:
                oracles = [Oracle(target, protocol_config(protocol)) for target in targets]
                bases = [base_scores(o, c, cases) for o, c in zip(oracles, concepts, strict=True)]
                for test in SanityTest:
                    base, pert = [], []
                    for u_index, (oracle, c) in enumerate(zip(oracles, concepts, strict=True)):
                        base += bases[u_index]
                        pert += case_scores(oracle, c, test, cases, (2, k_index, f_index, u_index))
                    count = sanity.count_decreases(base, pert, span=SCORE_SPAN)
                    rows.append(RateRow(f"real {kind}", len(targets[0].values), f, protocol, test, count))
    return rows


# ----------------------------------------------------------------------------- 3. text level


@dataclass(frozen=True)
class TextUnit:
    """A unit whose top classes lie in one WordNet group, and its three rule-written explanations."""

    unit: int
    group: str
    classes: tuple[str, ...]
    exact: str
    broad: str
    narrow: str

    def explanations(self) -> dict[str, str]:
        return {"exact": self.exact, "too broad": self.broad, "too narrow": self.narrow}


def groups() -> dict[str, dict]:
    """The WordNet groups of ImageNet classes (`vse/studies/data/imagenet_groups.json`, with its source)."""
    text = resources.files("vse.studies").joinpath("data/imagenet_groups.json").read_text(encoding="utf-8")
    return json.loads(text)["groups"]


def name_list(names: list[str]) -> str:
    """ "a, b and c"."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def text_units(study: ScorerSanityStudy, n_top: int = 4) -> list[TextUnit]:
    """Every unit of the layer (in index order, few-shot and development units left out) whose top ``n_top``
    classes lie in one group of at most ``group_max`` classes; the smallest such group (ties: its name)."""
    kept = {k: g for k, g in groups().items() if len(g["classes"]) <= study.group_max}
    excluded = excluded_units(study.model, study.layer)
    out = []
    for unit in range(fixture_width(study.model, study.layer)):
        if unit in excluded:
            continue
        target = load_target(neuron_id(study.model, study.layer, unit), Kind.WEIGHT_LABEL)
        top = [int(i) for i in ranks(target.strength)[:n_top]]
        fits = [k for k, g in kept.items() if set(top) <= set(g["classes"])]
        if not fits:
            continue
        group = min(fits, key=lambda k: (len(kept[k]["classes"]), k))
        names = [target.texts[i] for i in top]
        out.append(
            TextUnit(unit, group, tuple(names), name_list(names), kept[group]["name"], name_list(names[: n_top // 2]))
        )
    return out


@dataclass(frozen=True)
class TextScore:
    unit: int
    simulator: str
    protocol: str
    explanation: str  # exact, too broad, too narrow
    text: str
    score: float | None  # None: unscorable

    def to_csv(self) -> dict:
        return {
            "unit": self.unit,
            "simulator": self.simulator,
            "protocol": self.protocol,
            "explanation": self.explanation,
            "text": self.text,
            "score": None if self.score is None else round(self.score, 4),
        }


def llm_pool(study: ScorerSanityStudy, target: Target) -> np.ndarray:
    """The LLM's recall-free items: the next ``pool_next`` after the 25 shown, plus ``pool_random`` random unseen."""
    order = ranks(target.strength)
    shown = study.score.n_shown
    nxt = order[shown : shown + study.pool_next]
    rest = np.sort(order[shown + study.pool_next :])
    unit = int(target.neuron.rsplit("/", 1)[1])
    rand = seeds.rng(study.seed, "pool", unit).choice(rest, size=study.pool_random, replace=False)
    return np.sort(np.concatenate([nxt, rand]))


def llm_configs(study: ScorerSanityStudy) -> dict[str, ScoreConfig]:
    """The two small item sets an LLM simulator scores at text level (labels as the table shows them)."""
    base = study.score
    return {
        f"recall-free (pool of {study.pool_next + study.pool_random})": ScoreConfig(
            mode=base.mode, protocol=Protocol.RECALL_FREE, n_fewshot_pairs=base.n_fewshot_pairs
        ),
        f"uniform (3 x {study.uniform_items})": ScoreConfig(
            mode=base.mode,
            protocol=Protocol.UNIFORM,
            n_items=study.uniform_items,
            n_fewshot_pairs=base.n_fewshot_pairs,
            stop=StopRule(min_runs=3, max_runs=3),
        ),
    }


def _score(neuron, text, llm, config, universe, seed) -> float | None:
    try:
        record = score_explanation(
            neuron, text, Kind.WEIGHT_LABEL, llm=llm, config=config, seed=seed, progress=False, universe=universe
        )
    except Unscorable:
        return None
    return record.mean


def text_scores(
    study: ScorerSanityStudy, units: list[TextUnit], llms: CassetteLLMs, store: EmbeddingStore, *, progress=False
) -> list[TextScore]:
    out: list[TextScore] = []
    llm_sets = llm_configs(study)
    cosines: dict = {}
    for index, tu in enumerate(tqdm(units, desc="text level", unit="unit", disable=not progress)):
        neuron = neuron_id(study.model, study.layer, tu.unit)
        target = load_target(neuron, Kind.WEIGHT_LABEL)
        pool = llm_pool(study, target)
        # The embedding simulator on every protocol, then on the LLM's two item sets (`embedding_scorer`:
        # score_explanation's numbers, the item draws done once per unit and set, not once per explanation).
        scorers = {
            protocol: embedding_scorer(store, target, ScoreConfig(mode=Mode.EMBEDDING, protocol=protocol), cosines)
            for protocol in PROTOCOLS
        }
        for set_label, config in llm_sets.items():
            universe = pool if config.protocol == Protocol.RECALL_FREE else None
            emb = ScoreConfig(**{**_fields(config), "mode": Mode.EMBEDDING})
            scorers[set_label] = embedding_scorer(store, target, emb, cosines, universe)
        for label, text in tu.explanations().items():
            for protocol, score in scorers.items():
                out.append(TextScore(tu.unit, "embedding", protocol, label, text, score(text, study.seed)))
        if index >= study.text_llm_units:
            continue
        with llms(neuron_stem(study.model, study.layer, tu.unit)) as llm:
            for label, text in tu.explanations().items():
                for set_label, config in llm_sets.items():
                    universe = pool if config.protocol == Protocol.RECALL_FREE else None
                    score = _score(neuron, text, llm, config, universe, study.seed)
                    out.append(TextScore(tu.unit, "llm-one", set_label, label, text, score))
    return out


def _fields(config: ScoreConfig) -> dict:
    return {k: getattr(config, k) for k in config.__dataclass_fields__}


@dataclass(frozen=True)
class TextVerdict:
    simulator: str
    protocol: str
    units: int
    beats_broad: int
    beats_narrow: int
    beats_both: int
    unscorable: int
    exact_mean: float | None
    broad_mean: float | None
    narrow_mean: float | None


def text_verdicts(scores: list[TextScore]) -> list[TextVerdict]:
    keys = list(dict.fromkeys((s.simulator, s.protocol) for s in scores))
    out = []
    for sim, protocol in keys:
        cell = [s for s in scores if (s.simulator, s.protocol) == (sim, protocol)]
        by_unit: dict[int, dict[str, float | None]] = {}
        for s in cell:
            by_unit.setdefault(s.unit, {})[s.explanation] = s.score
        scored = {u: d for u, d in by_unit.items() if all(v is not None for v in d.values())}

        def mean(label, scored=scored):
            return exact.mean([d[label] for d in scored.values()]) if scored else None

        out.append(
            TextVerdict(
                sim,
                protocol,
                len(by_unit),
                sum(1 for d in scored.values() if d["exact"] > d["too broad"]),
                sum(1 for d in scored.values() if d["exact"] > d["too narrow"]),
                sum(1 for d in scored.values() if d["exact"] > max(d["too broad"], d["too narrow"])),
                len(by_unit) - len(scored),
                mean("exact"),
                mean("too broad"),
                mean("too narrow"),
            )
        )
    return out


# ----------------------------------------------------------------------------- 4. Meta-AUPRC


@dataclass(frozen=True)
class MetaRow:
    protocol: str
    meta: MetaAUPRC
    unscorable: int  # units whose own explanation could not be scored (left out)


def embedding_scorer(
    store: EmbeddingStore,
    target: Target,
    config: ScoreConfig,
    cosines: dict | None = None,
    universe: np.ndarray | None = None,
) -> Callable[[str, int], float | None]:
    """The embedding simulator's score of an explanation on ``target``: ``_score``'s mean, the same bits, for
    ``(explanation, seed)``, at a fraction of its cost where many explanations meet many targets.

    The embedding simulator predicts each item on its own (cos(explanation, item): `cosine_predictions`, a
    correctly rounded sum per item, whatever else is in the pass), so score_target's passes with it are the
    `Oracle`'s passes with those cosines as the concept: the items of every pass drawn, checked and correlated
    by the same code, once per (target, config) instead of once per explanation and pass.
    ``tests/studies/test_scorer_sanity.py`` checks it against `score_explanation`.

    cosines: kept between calls, keyed by (explanation, item texts): the Meta-AUPRC matrix scores each
    explanation under every protocol on targets that share their items (the 1,000 classes).
    universe: the only items the passes may use (`_score`'s).
    """
    oracle = Oracle(target, config, universe)
    texts = tuple(target.texts)
    kept = {} if cosines is None else cosines

    def score(explanation: str, seed: int) -> float | None:
        key = (explanation, texts)
        if key not in kept:
            kept[key] = cosine_predictions(store, explanation, texts)
        return oracle.score(kept[key], seed=seed)

    return score


def meta_rows(study: ScorerSanityStudy, store: EmbeddingStore, *, progress=False) -> tuple[list[int], list[MetaRow]]:
    units = draw_neurons(study.model, study.layer, study.meta_units, study.neuron_seed + 1)
    neurons = [neuron_id(study.model, study.layer, u) for u in units]
    targets = [load_target(n, Kind.WEIGHT_LABEL) for n in neurons]
    texts = [name_list([t.texts[int(i)] for i in ranks(t.strength)[:4]]) for t in targets]
    nearest = nearest_others(store.embed(texts))
    rows, cosines = [], {}
    for protocol in tqdm(PROTOCOLS, desc="Meta-AUPRC", disable=not progress):
        config = ScoreConfig(mode=Mode.EMBEDDING, protocol=protocol)
        k = len(units)
        s = np.full((k, k), np.nan)
        for j, target in enumerate(targets):
            score = embedding_scorer(store, target, config, cosines)
            for i, text in enumerate(texts):
                got = score(text, study.seed)
                s[i, j] = np.nan if got is None else got
        keep = [j for j in range(k) if np.isfinite(s[j, j])]
        sub = s[np.ix_(keep, keep)]
        nn = None
        if len(keep) == k:
            nn = nearest
        rows.append(MetaRow(protocol, meta_auprc(sub, nn), k - len(keep)))
    return units, rows


# ----------------------------------------------------------------------------- the result


@dataclass
class ScorerSanityResult:
    study: ScorerSanityStudy
    rates: list[RateRow]
    text_units: list[TextUnit]
    text: list[TextScore]
    meta_units: list[int]
    meta: list[MetaRow]

    @property
    def units(self) -> list:
        return [t.unit for t in self.text_units]

    @property
    def figure(self) -> str:
        return ""

    @property
    def table(self) -> str:
        return render_table(self)

    def files(self) -> dict[str, str | bytes]:
        return {
            "decrease_rates.csv": to_csv([r.to_csv() for r in self.rates]),
            "text_level.csv": to_csv([s.to_csv() for s in self.text]),
            "text_units.json": json.dumps(
                [t.__dict__ | {"classes": list(t.classes)} for t in self.text_units], indent=2, sort_keys=True
            )
            + "\n",
            "meta_auprc.csv": to_csv(
                [{"protocol": m.protocol, "unscorable_units": m.unscorable} | m.meta.to_json() for m in self.meta]
            ),
            "neuroneval_reference.csv": to_csv([r.__dict__ for r in NEURONEVAL_ROWS]),
        }


def run_scorer_sanity(
    study: ScorerSanityStudy, llms: CassetteLLMs, store: EmbeddingStore, *, progress: bool = True
) -> ScorerSanityResult:
    units = text_units(study)
    text = text_scores(study, units, llms, store, progress=progress)
    store.save()
    meta_units, meta = meta_rows(study, store, progress=progress)
    store.save()
    rates = theory_rows(study, progress=progress) + real_rows(study, progress=progress)
    return ScorerSanityResult(study, rates, units, text, meta_units, meta)


# ----------------------------------------------------------------------------- tables


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def rate_table(rows: list[RateRow], setting: str, n: int) -> str:
    cells = [r for r in rows if r.setting == setting and r.n == n]
    keys = list(dict.fromkeys((r.protocol, r.frequency) for r in cells))
    get = {(r.protocol, r.frequency, r.test): r.count for r in cells}
    lines = []
    for protocol, f in keys:
        m, e = get[(protocol, f, SanityTest.MISSING)], get[(protocol, f, SanityTest.EXTRA)]
        verdict = "passes" if m.passes and e.passes else "fails"
        lines.append((protocol, f, m, e, verdict))
    cols = (
        Column("protocol", lambda r: r[0] + (" (recommended)" if r[0] == RECOMMENDED else "")),
        Column("frequency", lambda r: f"{r[1]:g}"),
        Column("missing labels: decrease %", lambda r: _pct(r[2].decrease_share)),
        Column("extra labels: decrease %", lambda r: _pct(r[3].decrease_share)),
        Column(
            "unscorable % (missing / extra)", lambda r: f"{_pct(r[2].unscorable_share)} / {_pct(r[3].unscorable_share)}"
        ),
        Column("cases", lambda r: f"{r[2].cases}"),
        Column("verdict (>= 90 % on both)", lambda r: r[4]),
    )
    return markdown_table(cols, lines)


REFERENCE_COLUMNS = (
    Column("metric (NeuronEval)", lambda r: r.metric),
    Column("setting", lambda r: r.setting),
    Column("missing labels %", lambda r: f"{r.missing:g}"),
    Column("extra labels %", lambda r: f"{r.extra:g}"),
    Column("source", lambda r: r.source),
)

TEXT_COLUMNS = (
    Column("simulator", lambda v: v.simulator),
    Column("protocol", lambda v: v.protocol),
    Column("units", lambda v: f"{v.units}"),
    Column("exact > too broad", lambda v: f"{v.beats_broad}"),
    Column("exact > too narrow", lambda v: f"{v.beats_narrow}"),
    Column("exact > both", lambda v: f"{v.beats_both}"),
    Column("unscorable", lambda v: f"{v.unscorable}"),
    Column(
        "mean: exact / broad / narrow",
        lambda v: "-" if v.exact_mean is None else f"{v.exact_mean:.1f} / {v.broad_mean:.1f} / {v.narrow_mean:.1f}",
    ),
)

META_COLUMNS = (
    Column("protocol (embedding simulator)", lambda m: m.protocol),
    Column("units", lambda m: f"{m.meta.n_units}"),
    Column("Meta-AUPRC", lambda m: f"{m.meta.auprc:.3f}"),
    Column("random floor", lambda m: f"{m.meta.floor:.3f}"),
    Column("vs nearest explanation", lambda m: "-" if m.meta.hard is None else f"{m.meta.hard:.3f}"),
    Column("its floor", lambda m: f"{m.meta.hard_floor:.2f}"),
    Column("units left out (unscorable)", lambda m: f"{m.unscorable}"),
)


def render_table(result: ScorerSanityResult) -> str:
    study = result.study
    parts = []
    for theory in study.theory:
        parts.append(
            f"Metric level, theoretical setting (a = c, binary), n = {theory.n:,}, {study.cases} cases a cell, "
            "the simulator the identity:\n\n" + rate_table(result.rates, "theoretical", theory.n)
        )
    for kind in study.real_kinds:
        n = next(r.n for r in result.rates if r.setting == f"real {kind}")
        parts.append(
            f"Metric level, {study.real_units} real `{study.layer}` units, {kind} ({n} items), c = the unit's top "
            f"ceil(f n) items, {study.real_units * study.real_cases} cases a cell:\n\n"
            + rate_table(result.rates, f"real {kind}", n)
        )
    parts.append(
        "NeuronEval's published rows (quoted, not recomputed):\n\n"
        + markdown_table(REFERENCE_COLUMNS, list(NEURONEVAL_ROWS))
    )
    parts.append(
        f"Text level: {len(result.text_units)} `{study.layer}` units whose top 4 classes lie in one WordNet group "
        "(exact: the 4 class names; too broad: the group; too narrow: 2 of the 4); units where the exact "
        "explanation scores above the others:\n\n" + markdown_table(TEXT_COLUMNS, text_verdicts(result.text))
    )
    parts.append(
        f"Meta-AUPRC: {len(result.meta_units)} `{study.layer}` units, each explained by its top 4 class names, every "
        "explanation scored on every unit:\n\n" + markdown_table(META_COLUMNS, result.meta)
    )
    return "\n".join(parts)
