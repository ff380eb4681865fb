"""The simulator study: which simulator and protocol tell a neuron's own explanation
from other neurons' explanations, on enough neurons and items to say so.

Design (every choice here is fixed before recording; the numbers then decide the recommendation):
- Neurons: `LayerSpec.n_neurons` units per layer drawn with `neuron_seed` (stream "neurons"),
  never a few-shot or prompt-development unit, nor one of the power study's 16 units (those were
  looked at while this study was designed: they are development units here).
- One Weight-Label explanation per unit, written from the held-out display ranked by the raw
  weights (`ExplainConfig(shown=Display.HELDOUT)`: the even raw ranks 0, 2, ..., 48 of the top 50).
- Targets: Weight-Label (the classes; the explainer saw 25 of them) and Caption-Activation (the
  700 probe captions; the explainer saw none of them).
- Items, per (layer, target): `n_random` random items shared by all units (stream "pool"), and each
  unit's `n_held` held-out top items (odd raw ranks 1, 3, ..., 2 n_held - 1: never shown).
- Protocols (item sets for unit j):
  uniform: the random items (the paper's uniform protocol, one pass);
  recall-free: the random items the explainer was never shown (one exact pass, no sampling error);
  recall-free-all: every item the explainer was never shown (embedding simulator only: it costs
      no calls, the LLM would need ~1,000 per explanation);
  top-and-random-heldout: the held-out top items plus the random items outside the unit's top
      2 n_held and outside what it was shown.
  Each also prior-corrected: the neutral explanation's predictions subtracted first.
- Comparisons: S[i, j] is explanation i scored on unit j's items. Under uniform and recall-free
  every explanation of the layer is compared (the random items are shared, so mismatched
  comparisons cost nothing). Under top-and-random-heldout each unit's held-out top items are
  predicted by `n_compared` explanations only: its own and the next n_compared - 1 units' in draw
  order (cyclic), because predicting every unit's top items with every explanation would cost
  n_neurons x n_neurons x n_held calls. Ranks are then out of n_compared.
- Simulators: ``llm-one`` (the paper's one-item simulator: few-shot prompt, expected value of the
  0..10 token), ``embedding`` (`vse.method.simulators.embedding`, no LLM), ``llm+embedding`` (the mean of
  the two, each standardised over the unit's random items: a simulator that needs both).
- Sensitivity: how much the own explanation lifts the predictions on the unit's held-out top items
  over its unseen random items, minus the same lift under the neutral explanation, in standard
  deviations of the own predictions over the random items; and how strongly the own predictions
  correlate with the neutral ones (1: the explanation changes nothing).

Recording is resumable per unit: one cassette per unit (its explanation, then its predictions,
target by target), one per layer for the neutral explanation, and the embedding store.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum

import numpy as np
from tqdm import tqdm

from vse.core import exact, seeds
from vse.core.discrimination import MATCH_COLUMNS, RANK_COLUMNS, Matched, explanation_sensitivity, match
from vse.core.markdown import Column, markdown_table
from vse.core.protocols import ranks
from vse.core.stats import correlation_score
from vse.core.target import neuron_id, neuron_stem
from vse.core.vocab import Kind, Method, Protocol
from vse.data.loader import draw_neurons, load_target
from vse.method.explain import ExplainConfig, shown_indices
from vse.method.fewshot import fewshot_neurons
from vse.method.pipeline import explain_neuron
from vse.method.predict import predict_explanation
from vse.method.records import ExplanationRecord
from vse.method.score import NEUTRAL_EXPLANATION, ScoreConfig
from vse.method.simulators import SimContext
from vse.method.simulators.embedding import EmbeddingSimulator, EmbeddingStore
from vse.outputs.paper_tables import to_csv
from vse.studies.cassette_llms import CassetteLLMs
from vse.studies.kind import StudyKind, heldout_explainer, one_item_scorer


class SimulatorName(StrEnum):
    LLM_ONE = "llm-one"
    EMBEDDING = "embedding"
    LLM_EMBEDDING = "llm+embedding"


#: The study's own protocol beside three of `Protocol`'s (uniform, recall-free, top-and-random-heldout):
#: every item the explainer was never shown, for the embedding simulator only (module doc).
RECALL_FREE_ALL = "recall-free-all"
#: A protocol the study compares: a `Protocol` member or `RECALL_FREE_ALL`.
StudyProtocol = Protocol | str


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the study: how many units, and how many shared random items per target."""

    layer: str
    n_neurons: int
    n_random: int


#: The power study's 16 `_conv_head` units: looked at while designing this study, so excluded.
POWER_STUDY_UNITS = (351, 1277, 620, 1144, 1225, 1257, 965, 100, 572, 459, 1063, 924, 931, 771, 636, 227)


@dataclass(frozen=True, kw_only=True)
class SimulatorStudy(StudyKind):
    """Simulators x protocols x targets x layers, matched vs mismatched (module doc).

    name: folder under cassettes/ and results/. layers: `LayerSpec`s. neuron_seed: the draw.
    exclude: (layer, units) never drawn (development units). targets: the pair kinds scored.
    n_held: held-out top items per unit. n_compared: explanations compared per unit under the
    held-out protocol. explain / score: the explanation and simulation knobs. seed: root of the
    pool, few-shot and explanation seeds. recommended: the (simulator, protocol)
    docs/studies/simulator-study.md recommends, marked in summary.json.
    """

    name: str = "simulator-study"
    layers: tuple[LayerSpec, ...] = (LayerSpec("_conv_head", 32, 80), LayerSpec("_blocks.15", 16, 48))
    neuron_seed: int = 17
    exclude: tuple[tuple[str, tuple[int, ...]], ...] = (("_conv_head", POWER_STUDY_UNITS),)
    targets: tuple[str, ...] = (Kind.WEIGHT_LABEL, Kind.CAPTION_ACTIVATION)
    n_held: int = 10
    n_compared: int = 4
    explain: ExplainConfig = field(default_factory=heldout_explainer)
    score: ScoreConfig = field(default_factory=one_item_scorer)
    recommended: tuple[str, str] = ("", "")

    def run(self, llms: CassetteLLMs, *, progress: bool = True) -> SimulatorResult:
        """The embeddings replay from (and record to) ``cassettes/<name>/embeddings.npz`` beside the cassettes."""
        store = EmbeddingStore(llms.folder / "embeddings.npz", record=llms.record)
        try:
            return run_simulator_study(self, llms, store, progress=progress)
        finally:
            store.save()  # recording: what was embedded so far survives an interruption

    def units(self, spec: LayerSpec) -> list[int]:
        excluded = dict(self.exclude).get(spec.layer, ())
        return draw_neurons(self.model, spec.layer, spec.n_neurons, self.neuron_seed, exclude=excluded)


# ----------------------------------------------------------------------------- items


@dataclass(frozen=True)
class UnitItems:
    """One unit's items on one target, as indices into the full item list."""

    held: np.ndarray  # held-out top items (odd raw ranks)
    top: np.ndarray  # the top 2 n_held by raw value (kept out of the random part of held-out)
    shown: np.ndarray  # what its explainer saw (empty when the target is not the explained kind)


@dataclass(frozen=True)
class Pool:
    """One (layer, target): the texts, the truths, the shared random items, each unit's items."""

    target: str
    texts: tuple[str, ...]
    truths: np.ndarray  # [units, items] scaled 0..10 integers
    rand: np.ndarray
    units: tuple[UnitItems, ...]

    def compared(self, j: int, n_compared: int) -> list[int]:
        """The explanations compared on unit j under the held-out protocol: its own, then the next."""
        n = len(self.units)
        return [(j + k) % n for k in range(min(n_compared, n))]

    def needed(self, i: int, n_compared: int) -> np.ndarray:
        """The items explanation i must be predicted on: the random ones and the held-out top items
        of every unit whose comparison includes it (-1: the neutral explanation, every unit)."""
        n = len(self.units)
        js = range(n) if i < 0 else [j for j in range(n) if i in self.compared(j, n_compared)]
        return np.unique(np.concatenate([self.rand, *[self.units[j].held for j in js]])).astype(int)

    def item_set(self, protocol: StudyProtocol, j: int) -> np.ndarray:
        u = self.units[j]
        unseen = np.setdiff1d(self.rand, u.shown)
        if protocol == Protocol.UNIFORM:
            return self.rand
        if protocol == Protocol.RECALL_FREE:
            return unseen
        if protocol == RECALL_FREE_ALL:
            return np.setdiff1d(np.arange(len(self.texts)), u.shown)
        return np.union1d(u.held, np.setdiff1d(unseen, u.top))


def build_pool(study: SimulatorStudy, spec: LayerSpec, layer_index: int, units: list[int], target: str, t: int) -> Pool:
    targets = [load_target(neuron_id(study.model, spec.layer, u), target) for u in units]
    size = len(targets[0].texts)
    rand = np.sort(
        seeds.rng(study.seed, "pool", layer_index, t).choice(size, size=min(spec.n_random, size), replace=False)
    )
    items = []
    for x in targets:
        order = ranks(x.strength)
        shown = np.sort(shown_indices(x, study.explain)) if target == Kind.WEIGHT_LABEL else np.array([], dtype=int)
        items.append(UnitItems(np.sort(order[1 : 2 * study.n_held : 2]), np.sort(order[: 2 * study.n_held]), shown))
    return Pool(target, targets[0].texts, np.stack([x.values.astype(float) for x in targets]), rand, tuple(items))


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Row:
    """One row of summary.json: matched vs mismatched for (simulator, protocol, target, layer)."""

    simulator: str
    protocol: str
    target: str
    layer: str
    n_neurons: int
    n_compared: int
    matched_mean: float
    mismatched_mean: float
    wins: int
    rank1: int
    mean_rank: float
    p_value: float
    p_wilcoxon: float
    sensitivity: float
    corr_with_neutral: float
    recommended: bool = False

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}

    @classmethod
    def of(cls, m: Matched, sens: list[tuple[float, float]], **identity):
        """The row of ``identity`` (simulator, protocol, target, layer, n_neurons, ...) from a comparison and
        each unit's (lift, correlation with neutral) (`explanation_sensitivity`), averaged over the units."""
        return cls(
            **identity,
            n_compared=m.n_compared,
            matched_mean=m.matched_mean,
            mismatched_mean=m.mismatched_mean,
            wins=m.wins,
            rank1=m.rank1,
            mean_rank=m.mean_rank,
            p_value=m.p_value,
            p_wilcoxon=m.p_wilcoxon,
            sensitivity=exact.mean([x[0] for x in sens]),
            corr_with_neutral=exact.mean([x[1] for x in sens]),
        )


def sensitivity(own: np.ndarray, neutral: np.ndarray, pool: Pool, j: int) -> tuple[float, float]:
    """`vse.core.discrimination.explanation_sensitivity` for unit j: its held-out top items against its unseen
    random items. `own` and `neutral` are predictions over the whole item list (NaN elsewhere)."""
    u = pool.units[j]
    rest = np.setdiff1d(np.setdiff1d(pool.rand, u.shown), u.top)
    return explanation_sensitivity(own, neutral, u.held, rest, pool.rand)


def standardise(pred: np.ndarray, rand: np.ndarray) -> np.ndarray:
    """Predictions in SDs from their mean over the random items (how simulators are combined)."""
    sd = exact.std(pred[rand])
    return (pred - exact.mean(pred[rand])) / (sd if sd > 0 else 1.0)


def rows_for(
    simulator: str,
    pool: Pool,
    layer: str,
    pred: np.ndarray,
    neutral: np.ndarray,
    n_compared: int,
    protocols: tuple[StudyProtocol, ...],
) -> list[Row]:
    """Rows for one simulator on one pool. pred: [units, items] (NaN where not predicted)."""
    n = len(pool.units)
    sens = [sensitivity(pred[j], neutral, pool, j) for j in range(n)]
    out = []
    for protocol in protocols:
        for corrected in (False, True):
            p = pred - neutral if corrected else pred
            s = np.full((n, n), np.nan)
            for j in range(n):
                items = pool.item_set(protocol, j)
                who = pool.compared(j, n_compared) if protocol == Protocol.TOP_AND_RANDOM_HELDOUT else range(n)
                for i in who:
                    s[i, j] = correlation_score(p[i, items], pool.truths[j, items])
            m = match(s)
            label = str(protocol) + (" (prior-corrected)" if corrected else "")
            out.append(
                Row.of(m, sens, simulator=simulator, protocol=label, target=pool.target, layer=layer, n_neurons=n)
            )
    return out


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class UnitScores:
    """One unit's own explanation scored on the recall-free items, by each simulator (a line of
    per-unit.csv; the columns are these fields, in this order)."""

    neuron: str
    target: str
    explanation: str
    recall_free_llm: float
    recall_free_embedding: float
    recall_free_all_embedding: float

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SimulatorResult:
    """A simulator study's run: every explanation, the summary rows, each unit's recall-free scores."""

    name: str
    explanations: list[ExplanationRecord]
    rows: list[Row]
    per_unit: list[UnitScores]

    @property
    def units(self) -> list[str]:
        """The neurons explained, as ids ("model/layer/unit"), sorted."""
        return sorted({r.neuron for r in self.explanations})

    @property
    def table(self) -> str:
        return markdown(self.rows) + f"\nEmbeddings replay from `cassettes/{self.name}/embeddings.npz`.\n"

    @property
    def figure(self) -> str:
        return ""

    def files(self) -> dict[str, str | bytes]:
        return {
            "summary.json": summary_json(self.rows),
            "explanations.jsonl": "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in self.explanations),
            "per-unit.csv": to_csv([u.to_json() for u in self.per_unit]),
        }


def run_simulator_study(
    study: SimulatorStudy, open_llm: CassetteLLMs, embeddings: EmbeddingStore, *, progress: bool = True
) -> SimulatorResult:
    """Record or replay the study. open_llm(stem) gives an LLM on that cassette;
    embeddings: the embedding simulator's store (recording or replaying)."""
    explanations: list[ExplanationRecord] = []
    rows: list[Row] = []
    per_unit: list[UnitScores] = []
    for li, spec in enumerate(study.layers):
        units = study.units(spec)
        pools = [build_pool(study, spec, li, units, target, t) for t, target in enumerate(study.targets)]
        fewshot = {p.target: fewshot_neurons(neuron_id(study.model, spec.layer, units[0]), p.target) for p in pools}

        def predict(llm, pool: Pool, explanation: str, items: np.ndarray, fewshot=fewshot) -> np.ndarray:
            """The explanation's predictions over the pool's whole item list, NaN outside `items`."""
            values = predict_explanation(
                llm,
                explanation,
                [pool.texts[i] for i in items],
                kind=pool.target,
                fewshot=fewshot[pool.target],
                config=study.score,
                rng=seeds.rng(study.seed, "fewshot"),
            )
            full = np.full(len(pool.texts), np.nan)
            full[items] = np.round(values, 4)
            return full

        neutral_llm: dict[str, np.ndarray] = {}
        with open_llm(f"neutral__{spec.layer}") as llm:
            for pool in pools:
                neutral_llm[pool.target] = predict(llm, pool, NEUTRAL_EXPLANATION, pool.needed(-1, study.n_compared))
        llm_pred = {p.target: np.full((len(units), len(p.texts)), np.nan) for p in pools}
        texts_of_layer = []
        for i, unit in enumerate(tqdm(units, desc=f"{study.name} {spec.layer}", unit="neuron", disable=not progress)):
            neuron = neuron_id(study.model, spec.layer, unit)
            with open_llm(neuron_stem(study.model, spec.layer, unit)) as llm:
                [rec] = explain_neuron(
                    neuron, Method.WEIGHT_LABEL, llm=llm, n=1, config=study.explain, seed=study.seed, progress=False
                )
                explanations.append(rec)
                texts_of_layer.append(rec.explanation)
                for pool in pools:  # target by target: the few-shot prefix stays in the server's cache
                    llm_pred[pool.target][i] = predict(llm, pool, rec.explanation, pool.needed(i, study.n_compared))
        for pool in pools:
            embedder = EmbeddingSimulator(embeddings)
            emb = np.stack(
                [embedder.predict(None, SimContext(pool.target, (), e), pool.texts).values for e in texts_of_layer]
            )
            emb_neutral = np.array(
                embedder.predict(None, SimContext(pool.target, (), NEUTRAL_EXPLANATION), pool.texts).values
            )
            llm_p, llm_n = llm_pred[pool.target], neutral_llm[pool.target]
            both = np.stack(
                [(standardise(llm_p[i], pool.rand) + standardise(emb[i], pool.rand)) / 2 for i in range(len(units))]
            )
            both_n = (standardise(llm_n, pool.rand) + standardise(emb_neutral, pool.rand)) / 2
            llm_protocols = (Protocol.UNIFORM, Protocol.RECALL_FREE, Protocol.TOP_AND_RANDOM_HELDOUT)
            rows += rows_for(SimulatorName.LLM_ONE, pool, spec.layer, llm_p, llm_n, study.n_compared, llm_protocols)
            rows += rows_for(
                SimulatorName.EMBEDDING,
                pool,
                spec.layer,
                emb,
                emb_neutral,
                study.n_compared,
                (*llm_protocols, RECALL_FREE_ALL),
            )
            rows += rows_for(
                SimulatorName.LLM_EMBEDDING, pool, spec.layer, both, both_n, study.n_compared, llm_protocols
            )
            for j, unit in enumerate(units):
                items = pool.item_set(Protocol.RECALL_FREE, j)
                every = pool.item_set(RECALL_FREE_ALL, j)
                per_unit.append(
                    UnitScores(
                        neuron=neuron_id(study.model, spec.layer, unit),
                        target=pool.target,
                        explanation=texts_of_layer[j],
                        recall_free_llm=round(correlation_score(llm_p[j, items], pool.truths[j, items]), 4),
                        recall_free_embedding=round(correlation_score(emb[j, items], pool.truths[j, items]), 4),
                        recall_free_all_embedding=round(correlation_score(emb[j, every], pool.truths[j, every]), 4),
                    )
                )
    if study.recommended != ("", ""):
        rows = [replace(r, recommended=(r.simulator, r.protocol) == study.recommended) for r in rows]
    return SimulatorResult(study.name, explanations, rows, per_unit)


#: The simulator study's table columns (`markdown`).
COLUMNS = (
    Column("simulator", lambda r: f"{r.simulator}{' (recommended)' if r.recommended else ''}"),
    Column("protocol", lambda r: r.protocol),
    Column("target", lambda r: r.target),
    Column("layer", lambda r: r.layer),
    Column("neurons", lambda r: f"{r.n_neurons}"),
    Column("compared", lambda r: f"{r.n_compared}"),
    *MATCH_COLUMNS,
    *RANK_COLUMNS,
    Column("sensitivity", lambda r: f"{r.sensitivity:.2f}"),
    Column("corr with neutral", lambda r: f"{r.corr_with_neutral:.2f}"),
)


def markdown(rows: list[Row]) -> str:
    return markdown_table(COLUMNS, rows)


def summary_json(rows: list[Row]) -> str:
    return json.dumps([r.to_json() for r in rows], indent=2, sort_keys=True) + "\n"
