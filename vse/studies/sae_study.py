"""The SAE study: are a layer's SAE latents easier to explain than its channels? (issue 33)

The question: vision SAE toolboxes claim their latents are more monosemantic than the channels they are
trained on. With one explainer and one scorer, on the same layer and probe set, do the latents of an SAE
get better explanations than the channels, and are their explanations more specific to them?

Design (fixed before recording; nothing below was tuned on what it measures):
- Layer and probe: EfficientNet-Lite0 `_conv_head` (1,280 channels) on the 700 Tux Paint probe images of
  the fixtures. SAE: ``fixtures/efficientnet_lite0/sae__conv_head.npz``, trained by
  ``vse sae train efficientnet_lite0/_conv_head --probe tuxpaint`` with its defaults (overcomplete 0.3.0's
  top-k SAE, 1,280 latents, k = 16, seed 0, 10 epochs, on the 34,300 spatial positions of those images;
  its provenance is in the file). A latent's value on an image is the spatial mean of its code, as a
  channel's is the spatial mean of its map (`vse.data.loader`).
- Units: ``n_units`` = 32 channels drawn with ``neuron_seed`` = 33 (`draw_neurons`: never a few-shot or
  prompt-development unit, nor one the defaults study drew or excluded; all 32 turned out scorable) and
  the latents of a seeded order of all 1,280 (``neuron_seed``, stream "latents") up to the 32nd the scorer
  can score. A unit whose values are constant on the probe set is dead: counted, never explained
  (`vse.studies.label_work.dead_reason`). A unit the scorer cannot score is unscorable: counted, never
  explained (`vse.method.best_of.universes`, checked before any call: a held-in or held-out half of the
  items the explainer is not shown has one scaled value, e.g. a sparse unit whose unseen images all scale
  to 0). (Amended before any latent was explained or any score computed: with a plain draw of 32 latents,
  27 were unscorable, so a comparison would have rested on 5; the passed-over latents are counted, and the
  whole populations' unscorable shares are reported beside the scores. The comparison is therefore of the
  scorable latents, the denser ones, against channels.)
- Explanations: the recommended path on Caption-Activation pairs: the new-run explainer (`new_run_config`),
  the top display, 4 candidates a unit (candidate k with the seed `llm_seed(seed, "explain", k)`), one
  cassette per unit; the same few-shot neurons (the layer's hand-labelled channels) for both kinds of unit.
- Scoring: the defaults (`ScoreConfig()`: the embedding simulator over every item the explainer was not
  shown, ``recall-free``; no LLM call). A unit's unseen items are split into a held-in and a held-out half
  (`split_unseen`, ``split_seed``); best of 4 is chosen on the held-in half, reported on the held-out half.
- Measures, per population (channels, latents): the held-out score of each unit's chosen explanation (its
  distribution: mean with a 95 % t interval, median, quartiles); matched vs mismatched on S[i, j] = unit i's
  chosen explanation scored on unit j's held-out half (`vse.core.discrimination.match`: matched and
  mismatched means, wins, mean rank, one-sided paired p); Meta-AUPRC of S (`meta_auprc`; floor 1/K); the
  dead, dense and unscorable shares of the whole population and of the units looked at (dense: non-zero on at
  least ``dense_share`` of the probe images).
- The verdict, by this rule: latents explain better (worse) when the 95 % Welch interval of the difference of
  mean held-out scores (latents minus channels) lies above (below) 0; otherwise no difference is shown.
  Matched-vs-mismatched and Meta-AUPRC are reported beside it, not folded into the verdict.

Cost: 64 units x 4 explanation calls (best of 4, within what the shared server takes per unit); the
embeddings are kept in ``cassettes/<name>/embeddings.npz``. Recording is resumable per unit.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm import tqdm

from vse.core import exact
from vse.core.discrimination import MetaAUPRC, match, meta_auprc
from vse.core.markdown import Column, markdown_table
from vse.core.seeds import rng
from vse.core.stats import correlation_score
from vse.core.target import Feature, Target, feature_layer, neuron_id, neuron_stem
from vse.core.tquantile import t_quantile
from vse.core.vocab import FeatureKind, Kind
from vse.data.loader import draw_neurons, feature_file, fixture_pairs, load_target
from vse.method.best_of import universes
from vse.method.explain import ExplainConfig, new_run_config
from vse.method.pipeline import explain_neuron
from vse.method.records import ExplanationRecord
from vse.method.score import ScoreConfig, Unscorable
from vse.method.simulators.embedding import EmbeddingStore, cosine_predictions
from vse.outputs.paper_tables import to_csv
from vse.studies.cassette_llms import CassetteLLMs
from vse.studies.defaults_study import USED_UNITS, DefaultsStudy
from vse.studies.kind import StudyKind
from vse.studies.label_work import dead_reason

#: The SAE the study explains, relative to the checkout (committed; `vse.data.loader` finds it from anywhere).
SAE_FILE = "fixtures/efficientnet_lite0/sae__conv_head.npz"
CHANNELS, LATENTS = "channels", "SAE latents"


def _excluded() -> tuple[int, ...]:
    """`_conv_head` units used before: every earlier experiment's (`USED_UNITS`) and the defaults study's."""
    defaults = DefaultsStudy()
    return tuple(dict(USED_UNITS)["_conv_head"]) + tuple(
        defaults.units("_conv_head", dict(defaults.layers)["_conv_head"])
    )


@dataclass(frozen=True, kw_only=True)
class SaeStudy(StudyKind):
    """Channels vs SAE latents of one layer, one explainer, the default scorer (module doc)."""

    name: str = "sae-vs-channels"
    layer: str = "_conv_head"
    sae_file: str = SAE_FILE
    n_units: int = 32
    neuron_seed: int = 33
    n_candidates: int = 4
    explain: ExplainConfig = field(default_factory=lambda: new_run_config())
    score: ScoreConfig = field(default_factory=ScoreConfig)
    split_seed: int = 0
    dense_share: float = 0.9

    @property
    def sae_layer(self) -> str:
        return feature_layer(self.layer, Feature(FeatureKind.SAE, self.sae_file))

    def populations(self) -> dict[str, tuple[str, list[int]]]:
        """{population: (the layer its ids name, the drawn units)}."""
        channels = draw_neurons(self.model, self.layer, self.n_units, self.neuron_seed, exclude=_excluded())
        n_latents = feature_file(self.model, self.layer, Feature(FeatureKind.SAE, self.sae_file)).latents
        order = rng(self.neuron_seed, "latents").permutation(n_latents)
        latents: list[int] = []
        scorable = 0
        for u in order:  # the seeded order, up to the n_units-th latent the scorer can score
            latents.append(int(u))
            t = load_target(neuron_id(self.model, self.sae_layer, int(u)), Kind.CAPTION_ACTIVATION)
            scorable += dead_reason(t) is None and not _unscorable(self, t)
            if scorable == self.n_units:
                break
        return {CHANNELS: (self.layer, channels), LATENTS: (self.sae_layer, latents)}

    def run(self, llms: CassetteLLMs, *, progress: bool = True) -> SaeResult:
        store = EmbeddingStore(llms.folder / "embeddings.npz", record=llms.record)
        try:
            return run_sae_study(self, llms, store, progress=progress)
        finally:
            store.save()  # recording: what was embedded so far survives an interruption


# ----------------------------------------------------------------------------- measures


@dataclass(frozen=True)
class Spread:
    """A sample's mean with its 95 % t interval, median and quartiles."""

    n: int
    mean: float
    low: float
    high: float
    median: float
    q1: float
    q3: float

    @classmethod
    def of(cls, x: np.ndarray) -> Spread:
        x = np.sort(np.asarray(x, dtype=np.float64))
        half = t_quantile(0.975, len(x) - 1) * exact.std(x, ddof=1) / math.sqrt(len(x))
        m = exact.mean(x)
        q1, med, q3 = (float(np.quantile(x, q)) for q in (0.25, 0.5, 0.75))
        return cls(len(x), m, m - half, m + half, med, q1, q3)


def welch_interval(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """(mean(a) - mean(b), low, high, df): the Welch t interval of a difference of means (df rounded down)."""
    va, vb = exact.var(a, ddof=1) / len(a), exact.var(b, ddof=1) / len(b)
    diff = exact.mean(a) - exact.mean(b)
    # Welch-Satterthwaite, rounded down; the 1e-9 keeps an exact integer (equal spreads and sizes: 2(n - 1))
    # from rounding to the one below it.
    df = math.floor((va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) + 1e-9)
    half = t_quantile(1 - (1 - confidence) / 2, df) * math.sqrt(va + vb)
    return diff, diff - half, diff + half, df


@dataclass(frozen=True)
class Population:
    """One row of summary.json: a population's dead and dense shares, score distribution and separation."""

    population: str
    units: int  # in the whole population (the layer's channels, the SAE's latents)
    dead_all: int
    dense_all: int
    unscorable_all: int
    drawn: int
    dead_drawn: int
    dense_drawn: int
    unscorable: int
    explained: int
    score: Spread
    matched_mean: float
    mismatched_mean: float
    wins: int
    mean_rank: float
    p_value: float
    meta: MetaAUPRC

    def to_json(self) -> dict:
        d = asdict(self)
        d["meta"] = self.meta.to_json()
        return json.loads(json.dumps(d), parse_float=lambda s: round(float(s), 4))


@dataclass(frozen=True)
class UnitScore:
    """One explained unit: its chosen candidate and scores (a line of units.csv)."""

    population: str
    neuron: str
    chosen: int
    explanation: str
    held_in: float
    held_out: float
    held_out_items: int

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _shares(raw: np.ndarray, dense_share: float) -> tuple[int, int]:
    """(dead, dense) among the rows of ``raw`` [units, images]: constant; non-zero on >= dense_share of images."""
    dead = int(np.count_nonzero(np.ptp(raw, axis=1) == 0))
    dense = int(np.count_nonzero(np.count_nonzero(raw != 0, axis=1) >= dense_share * raw.shape[1]))
    return dead, dense


@dataclass(frozen=True)
class SaeResult:
    name: str
    explanations: list[ExplanationRecord]
    rows: list[Population]
    unit_scores: list[UnitScore]
    difference: tuple[float, float, float, int]

    @property
    def units(self) -> list[str]:
        return [u.neuron for u in self.unit_scores]

    @property
    def verdict(self) -> str:
        diff, low, high, df = self.difference
        if low > 0:
            which = "SAE latents explain better than channels"
        elif high < 0:
            which = "channels explain better than SAE latents"
        else:
            which = "no difference is shown between SAE latents and channels"
        return (
            f"{which}: held-out score of the chosen explanation, latents minus channels, {diff:+.1f} "
            f"(100 x Pearson; 95 % Welch interval {low:+.1f} to {high:+.1f}, df {df})."
        )

    @property
    def table(self) -> str:
        return (
            markdown_table(COLUMNS, self.rows)
            + f"\n{self.verdict}\n"
            + f"Embeddings replay from `cassettes/{self.name}/embeddings.npz`.\n"
        )

    @property
    def figure(self) -> str:
        return ""

    def files(self) -> dict[str, str | bytes]:
        return {
            "summary.json": json.dumps(
                {"populations": [r.to_json() for r in self.rows], "difference": _rounded(self.difference)},
                indent=2,
                sort_keys=True,
            )
            + "\n",
            "explanations.jsonl": "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in self.explanations),
            "units.csv": to_csv([u.to_json() for u in self.unit_scores]),
        }


def _rounded(values) -> list:
    return [round(v, 4) if isinstance(v, float) else v for v in values]


# ----------------------------------------------------------------------------- running


def _population(
    study: SaeStudy, population: str, layer: str, units: list[int], llms: CassetteLLMs, store, *, progress: bool
) -> tuple[Population, list[UnitScore], list[ExplanationRecord], np.ndarray]:
    targets: list[Target] = [load_target(neuron_id(study.model, layer, u), Kind.CAPTION_ACTIVATION) for u in units]
    alive = [(u, t) for u, t in zip(units, targets, strict=True) if dead_reason(t) is None]
    unscorable = [t.neuron for _u, t in alive if _unscorable(study, t)]
    alive = [(u, t) for u, t in alive if t.neuron not in unscorable]
    records: dict[int, list[ExplanationRecord]] = {}
    for u, t in tqdm(alive, desc=f"{study.name} {population}", unit="unit", disable=not progress):
        with llms(neuron_stem(study.model, layer, u)) as llm:
            records[u] = explain_neuron(
                t.neuron,
                Kind.CAPTION_ACTIVATION,
                llm=llm,
                n=study.n_candidates,
                config=study.explain,
                seed=study.seed,
                progress=False,
            )
    texts = alive[0][1].texts
    halves = [_halves(study, t, records[u]) for u, t in alive]
    truths = [t.values.astype(float) for _u, t in alive]
    own, scores = [], []
    for j, (u, _t) in enumerate(alive):
        held_in, _out = halves[j]
        preds = [cosine_predictions(store, r.explanation, texts) for r in records[u]]
        ins = [correlation_score(p[held_in], truths[j][held_in]) for p in preds]
        chosen = int(np.argmax(ins))  # the first of equal bests
        own.append(preds[chosen])
        scores.append((chosen, ins[chosen]))
    k = len(alive)
    s = np.array(
        [[correlation_score(own[i][halves[j][1]], truths[j][halves[j][1]]) for j in range(k)] for i in range(k)]
    )
    m = match(s)
    unit_scores = [
        UnitScore(
            population,
            t.neuron,
            scores[j][0],
            records[u][scores[j][0]].explanation,
            scores[j][1],
            float(s[j, j]),
            len(halves[j][1]),
        )  # fmt: skip
        for j, (u, t) in enumerate(alive)
    ]
    whole = _whole(study, layer)
    dead_all, dense_all = _shares(whole, study.dense_share)
    unscorable_all = sum(
        _unscorable(study, load_target(neuron_id(study.model, layer, u), Kind.CAPTION_ACTIVATION))
        for u in range(whole.shape[0])
    )
    dead_drawn, dense_drawn = _shares(np.array([t.raw for t in targets]), study.dense_share)
    row = Population(
        population=population,
        units=whole.shape[0],
        dead_all=dead_all,
        dense_all=dense_all,
        unscorable_all=unscorable_all,
        drawn=len(units),
        dead_drawn=dead_drawn,
        dense_drawn=dense_drawn,
        unscorable=len(unscorable),
        explained=k,
        score=Spread.of(np.diag(s)),
        matched_mean=m.matched_mean,
        mismatched_mean=m.mismatched_mean,
        wins=m.wins,
        mean_rank=m.mean_rank,
        p_value=m.p_value,
        meta=meta_auprc(s),
    )
    return row, unit_scores, [r for u, _t in alive for r in records[u]], np.diag(s)


@dataclass(frozen=True)
class _Planned:
    """An explanation not yet made, as `universes` reads one: its kind, and no items said to be shown (so the
    explainer is taken to see the strongest, as the top display does)."""

    method: str = Kind.CAPTION_ACTIVATION
    shown: tuple[int, ...] = ()


def _unscorable(study: SaeStudy, t: Target) -> bool:
    """Whether best of N cannot score the unit (`universes`), known before any call."""
    try:
        universes([_Planned()] * study.n_candidates, t, Kind.CAPTION_ACTIVATION, study.score, study.split_seed)
    except Unscorable:
        return True
    return False


def _halves(study: SaeStudy, t: Target, records: list[ExplanationRecord]) -> tuple[np.ndarray, np.ndarray]:
    """(held-in, held-out) of the unit, as `vse.method.best_of` splits the items its explainer was not shown."""
    u = universes(records, t, Kind.CAPTION_ACTIVATION, study.score, study.split_seed)
    return u.held_in, u.held_out


def _whole(study: SaeStudy, layer: str) -> np.ndarray:
    """Every unit's values on the probe images [units, images]: the fixtures' channels or the SAE file's codes."""
    if layer == study.layer:
        return fixture_pairs(study.model, study.layer, Kind.CAPTION_ACTIVATION)[1]
    sae = feature_file(study.model, study.layer, Feature(FeatureKind.SAE, study.sae_file))
    return np.asarray(sae.probe_activations, dtype=np.float64).T


def run_sae_study(study: SaeStudy, llms: CassetteLLMs, store: EmbeddingStore, *, progress: bool = True) -> SaeResult:
    """Record or replay both populations' explanations, then measure them on the default scorer."""
    rows, unit_scores, explanations, held_out = [], [], [], {}
    for population, (layer, units) in study.populations().items():
        row, us, recs, own = _population(study, population, layer, units, llms, store, progress=progress)
        rows.append(row)
        unit_scores += us
        explanations += recs
        held_out[population] = own
    return SaeResult(study.name, explanations, rows, unit_scores, welch_interval(held_out[LATENTS], held_out[CHANNELS]))


#: The study's table columns.
COLUMNS = (
    Column("units", lambda r: r.population),
    Column("dead (all)", lambda r: f"{r.dead_all}/{r.units}"),
    Column("dense (all)", lambda r: f"{r.dense_all}/{r.units}"),
    Column("unscorable (all)", lambda r: f"{r.unscorable_all}/{r.units}"),
    Column(
        "looked at: dead, dense, unscorable", lambda r: f"{r.dead_drawn}, {r.dense_drawn}, {r.unscorable} of {r.drawn}"
    ),
    Column("explained", lambda r: f"{r.explained}"),
    Column(
        "held-out score (100 r), mean [95% CI]", lambda r: f"{r.score.mean:.1f} [{r.score.low:.1f}, {r.score.high:.1f}]"
    ),
    Column("median (IQR)", lambda r: f"{r.score.median:.1f} ({r.score.q1:.1f} to {r.score.q3:.1f})"),
    Column("matched", lambda r: f"{r.matched_mean:.1f}"),
    Column("mismatched", lambda r: f"{r.mismatched_mean:.1f}"),
    Column("wins", lambda r: f"{r.wins}/{r.explained}"),
    Column("mean rank", lambda r: f"{r.mean_rank:.2f}"),
    Column("p", lambda r: f"{r.p_value:.2g}"),
    Column("Meta-AUPRC (floor)", lambda r: f"{r.meta.auprc:.3f} ({r.meta.floor:.3f})"),
)
