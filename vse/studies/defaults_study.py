"""The defaults study: which display and how many candidates the recommended path should use.

The question: on units nobody tuned anything on, does the path a user runs (explain with the new-run
explainer, score with the embedding simulator over the items the explainer did not see) tell each
unit's own explanation from the other units', and do best-of-N and the held-out display help?

Design (fixed before recording; the numbers then pick the defaults by the rule below):
- Units: 32 `_conv_head` and 16 `_blocks.15` units drawn with ``neuron_seed`` (stream "neurons"),
  outside the few-shot and prompt-development units and outside every unit an earlier experiment,
  benchmark or issue example used (``exclude``; `tests/studies/test_defaults_study.py` checks it
  against results/*/config.json).
- Explanations: the Weight-Label method with the new-run explainer (`new_run_config`: 120 tokens, a
  reply cut off trimmed to its last sentence), ``n_candidates`` candidates per unit and display, candidate k
  with the seed `llm_seed(seed, "explain", k)`, under both displays: ``top`` (the 25 strongest
  classes) and ``heldout`` (the even raw ranks of the top 50).
- Targets: Weight-Label (the 1,000 classes) and Caption-Activation (the probe captions; the explainer
  saw none of them).
- Scoring: the defaults (`ScoreConfig()`: embedding simulator, ``recall-free``): a unit's items are
  the ones its explainer was not shown, split by `vse.method.best_of.split_unseen` (``split_seed``)
  into a held-in and a held-out half. Best of N chooses among the first N candidates by their score on
  the held-in half (the first of equal bests); every N, N = 1 included, is reported on the held-out
  half, so the rows differ only in the choice.
- Comparison, per (layer, target, display, N): S[i, j] = unit i's chosen explanation scored on unit
  j's held-out half; `vse.core.discrimination.match` gives matched and mismatched means, wins, rank 1,
  mean rank and one-sided paired p-values. Sensitivity (`explanation_sensitivity`): the unit's 10
  strongest held-out items against its held-out items outside its top 50, against the neutral
  explanation "nothing in particular".
- The rule that picks the defaults: a (display, N)'s separation is the mean, over the four
  (layer, target) cells, of the normalised mean rank (mean rank - 1) / (units - 1) (0: the own
  explanation always first; 0.5: chance). The display is the one with the lower separation averaged
  over N; N is the smallest whose separation under that display is within ``tolerance`` of the
  lowest (a candidate costs one explanation call per unit). That row is marked recommended.

The embedding simulator costs no LLM call, so the whole cost is the explanations: 48 units x 2
displays x ``n_candidates`` calls. Recording is resumable per unit (one cassette per unit, both
displays), and the embeddings are kept in ``cassettes/<name>/embeddings.npz``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from tqdm import tqdm

from vse.core import exact
from vse.core.discrimination import MATCH_COLUMNS, RANK_COLUMNS, explanation_sensitivity, match
from vse.core.markdown import Column, markdown_table
from vse.core.protocols import ranks
from vse.core.stats import correlation_score
from vse.core.target import Target, neuron_id, neuron_stem
from vse.core.vocab import Display, Kind, Method
from vse.data.loader import draw_neurons, load_target
from vse.method.best_of import split_unseen, unseen_items
from vse.method.explain import ExplainConfig, new_run_config
from vse.method.pipeline import explain_neuron
from vse.method.records import ExplanationRecord
from vse.method.score import NEUTRAL_EXPLANATION, ScoreConfig
from vse.method.simulators.embedding import EmbeddingStore, cosine_predictions
from vse.outputs.paper_tables import to_csv
from vse.studies.cassette_llms import CassetteLLMs
from vse.studies.kind import StudyKind
from vse.studies.simulator import Row as MatchRow

#: Units used before this study, by layer (experiments, benchmarks, the issue's examples): never drawn.
USED_UNITS: tuple[tuple[str, tuple[int, ...]], ...] = (
    (
        "_conv_head",
        # power study; simulator study; tables8-9; fewshot-strategies; chat-vs-completions & co;
        # negative/signed; bench/cold_start's `vse validate --units 1,2,3,4` and `vse label --units 0:8`
        (351, 1277, 620, 1144, 1225, 1257, 965, 100, 572, 459, 1063, 924, 931, 771, 636, 227)
        + (33, 103, 131, 192, 193, 196, 224, 232, 297, 429, 441, 543, 550, 560, 566, 583)
        + (649, 682, 701, 799, 807, 815, 854, 907, 915, 935, 1064, 1129, 1185, 1208, 1232, 1265)
        + (872, 888, 241, 168, 414, 1252)
        + tuple(range(8)),
    ),
    (
        "_blocks.15",
        # simulator study; table1; all-methods-one-neuron; the issue's `vse label ... --units 0:8`
        (8, 32, 47, 48, 74, 135, 163, 173, 200, 204, 226, 229, 281, 310, 313, 317)
        + (133, 80, 265, 278)
        + tuple(range(8)),
    ),
)


@dataclass(frozen=True, kw_only=True)
class DefaultsStudy(StudyKind):
    """Display x best-of-N x target x layer, matched vs mismatched, on the default scorer (module doc)."""

    name: str = "defaults-study"
    layers: tuple[tuple[str, int], ...] = (("_conv_head", 32), ("_blocks.15", 16))
    neuron_seed: int = 29
    exclude: tuple[tuple[str, tuple[int, ...]], ...] = USED_UNITS
    displays: tuple[Display, ...] = (Display.TOP, Display.HELDOUT)
    n_candidates: int = 8
    best_of: tuple[int, ...] = (1, 2, 4, 8)
    targets: tuple[str, ...] = (Kind.WEIGHT_LABEL, Kind.CAPTION_ACTIVATION)
    explain: ExplainConfig = field(default_factory=new_run_config)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    split_seed: int = 0
    n_strongest: int = 10
    tolerance: float = 0.02

    def __post_init__(self) -> None:
        if max(self.best_of) > self.n_candidates or min(self.best_of) < 1:
            raise ValueError(f"best_of {self.best_of} must lie within 1..n_candidates ({self.n_candidates})")

    def units(self, layer: str, n: int) -> list[int]:
        return draw_neurons(self.model, layer, n, self.neuron_seed, exclude=dict(self.exclude).get(layer, ()))

    def run(self, llms: CassetteLLMs, *, progress: bool = True) -> DefaultsResult:
        store = EmbeddingStore(llms.folder / "embeddings.npz", record=llms.record)
        try:
            return run_defaults_study(self, llms, store, progress=progress)
        finally:
            store.save()  # recording: what was embedded so far survives an interruption


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True, kw_only=True)
class Row(MatchRow):
    """One row of summary.json: the simulator study's keys plus ``n_candidates`` and ``display``."""

    display: str
    n_candidates: int

    @property
    def separation(self) -> float:
        """The normalised mean rank: 0 when the own explanation always ranks first, 0.5 by chance."""
        return (self.mean_rank - 1) / (self.n_compared - 1)


@dataclass(frozen=True)
class Choice:
    """One unit's best-of-N choice on one target and display (a line of choices.csv)."""

    neuron: str
    target: str
    display: str
    n_candidates: int
    chosen: int
    explanation: str  # the chosen candidate's text
    held_in: float  # the chosen candidate's score on the held-in half
    held_out: float  # ... and on the held-out half (what is reported)
    held_in_items: int
    held_out_items: int

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def recommend(rows: list[Row], tolerance: float) -> tuple[str, int]:
    """The (display, N) the module doc's rule picks from the rows."""
    displays = sorted({r.display for r in rows})
    ns = sorted({r.n_candidates for r in rows})

    def separation(display: str, n: int) -> float:
        return exact.mean([r.separation for r in rows if r.display == display and r.n_candidates == n])

    display = min(displays, key=lambda d: (exact.mean([separation(d, n) for n in ns]), d))
    best = min(separation(display, n) for n in ns)
    return display, next(n for n in ns if separation(display, n) <= best + tolerance)


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class DefaultsResult:
    name: str
    explanations: list[ExplanationRecord]
    rows: list[Row]
    choices: list[Choice]
    recommended: tuple[str, int]

    @property
    def units(self) -> list[str]:
        return sorted({r.neuron for r in self.explanations})

    @property
    def table(self) -> str:
        display, n = self.recommended
        return (
            markdown_table(COLUMNS, self.rows)
            + f"\nRecommended by the study's rule: display `{display}`, best of {n}.\n"
            + f"Embeddings replay from `cassettes/{self.name}/embeddings.npz`.\n"
        )

    @property
    def figure(self) -> str:
        return ""

    def files(self) -> dict[str, str | bytes]:
        display, n = self.recommended
        # What the report and `vse atlas` show beside each unit's explanations: the recommended row's chosen
        # explanation and its held-out score, per target.
        picked = [c for c in self.choices if (c.display, c.n_candidates) == (display, n)]
        neurons = [
            {
                "neuron": c.neuron,
                "method": Method.WEIGHT_LABEL.value,
                "polarity": "positive",
                "explanation": c.explanation,
                "target": c.target,
                "protocol": f"recall-free, held-out half, best of {n}",
                "simulator": "embedding",
                "mean": c.held_out,
            }
            for c in picked
        ]
        return {
            "summary.json": json.dumps([r.to_json() for r in self.rows], indent=2, sort_keys=True) + "\n",
            "explanations.jsonl": "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in self.explanations),
            "choices.csv": to_csv([c.to_json() for c in self.choices]),
            "neurons.jsonl": "".join(json.dumps(x, sort_keys=True) + "\n" for x in neurons),
        }


def record_explanations(
    study: DefaultsStudy, llms: CassetteLLMs, layer: str, units: list[int], *, progress: bool
) -> dict[tuple[int, str], list[ExplanationRecord]]:
    """Every unit's candidates under every display, one cassette per unit: {(unit, display): records}."""
    out: dict[tuple[int, str], list[ExplanationRecord]] = {}
    for unit in tqdm(units, desc=f"{study.name} {layer}", unit="neuron", disable=not progress):
        neuron = neuron_id(study.model, layer, unit)
        with llms(neuron_stem(study.model, layer, unit)) as llm:
            for display in study.displays:
                out[unit, display] = explain_neuron(
                    neuron,
                    Method.WEIGHT_LABEL,
                    llm=llm,
                    n=study.n_candidates,
                    config=replace(study.explain, shown=display),
                    seed=study.seed,
                    progress=False,
                )
    return out


def rows_for_cell(
    study: DefaultsStudy,
    layer: str,
    units: list[int],
    target: str,
    records: dict[tuple[int, str], list[ExplanationRecord]],
    store: EmbeddingStore,
) -> tuple[list[Row], list[Choice]]:
    """Every (display, N) row of one (layer, target) cell, and every unit's choices."""
    targets: list[Target] = [load_target(neuron_id(study.model, layer, u), target) for u in units]
    texts = targets[0].texts
    truths = [t.values.astype(float) for t in targets]
    neutral = cosine_predictions(store, NEUTRAL_EXPLANATION, texts)
    rows: list[Row] = []
    choices: list[Choice] = []
    for display in study.displays:
        halves = []
        for u, t in zip(units, targets, strict=True):
            unseen = unseen_items(t.strength, records[u, display], target, study.score.n_shown)
            halves.append(split_unseen(unseen, study.split_seed, u))
        # Predictions over every item, once per candidate (the embedding simulator's are per item).
        pred = [[cosine_predictions(store, r.explanation, texts) for r in records[u, display]] for u in units]
        held_in = [
            [correlation_score(p[halves[j][0]], truths[j][halves[j][0]]) for p in pred[j]] for j in range(len(units))
        ]
        for n in study.best_of:
            chosen = [int(np.argmax(h[:n])) for h in held_in]  # the first of equal bests
            own = [pred[i][chosen[i]] for i in range(len(units))]
            s = np.array(
                [
                    [correlation_score(own[i][halves[j][1]], truths[j][halves[j][1]]) for j in range(len(units))]
                    for i in range(len(units))
                ]
            )
            m = match(s)
            sens = []
            for j, t in enumerate(targets):
                out = halves[j][1]
                order = ranks(t.strength)
                held_out = set(out.tolist())
                strongest = np.array([i for i in order if i in held_out][: study.n_strongest], dtype=int)
                rest = np.setdiff1d(out, order[:50])
                sens.append(explanation_sensitivity(own[j], neutral, strongest, rest, out))
            rows.append(
                Row.of(
                    m,
                    sens,
                    simulator=str(study.score.mode),
                    protocol=study.score.label,
                    target=target,
                    layer=layer,
                    display=str(display),
                    n_candidates=n,
                    n_neurons=len(units),
                )
            )
            for j, u in enumerate(units):
                choices.append(
                    Choice(
                        neuron=neuron_id(study.model, layer, u),
                        target=target,
                        display=str(display),
                        n_candidates=n,
                        chosen=chosen[j],
                        explanation=records[u, display][chosen[j]].explanation,
                        held_in=held_in[j][chosen[j]],
                        held_out=float(s[j, j]),
                        held_in_items=len(halves[j][0]),
                        held_out_items=len(halves[j][1]),
                    )
                )
    return rows, choices


def run_defaults_study(
    study: DefaultsStudy, llms: CassetteLLMs, store: EmbeddingStore, *, progress: bool = True
) -> DefaultsResult:
    """Record or replay the explanations, then compare every (display, N) on the default scorer."""
    drawn = [(layer, study.units(layer, n)) for layer, n in study.layers]
    records = {layer: record_explanations(study, llms, layer, units, progress=progress) for layer, units in drawn}
    rows: list[Row] = []
    choices: list[Choice] = []
    for layer, units in drawn:
        for target in study.targets:
            r, c = rows_for_cell(study, layer, units, target, records[layer], store)
            rows += r
            choices += c
    display, n = recommend(rows, study.tolerance)
    rows = [replace(r, recommended=(r.display, r.n_candidates) == (display, n)) for r in rows]
    explanations = [r for layer, units in drawn for u in units for d in study.displays for r in records[layer][u, d]]
    return DefaultsResult(study.name, explanations, rows, choices, (display, n))


#: The defaults study's table columns.
COLUMNS = (
    Column("layer", lambda r: r.layer),
    Column("target", lambda r: r.target),
    Column("display", lambda r: r.display),
    Column("best of", lambda r: f"{r.n_candidates}{' (recommended)' if r.recommended else ''}"),
    Column("neurons", lambda r: f"{r.n_neurons}"),
    *MATCH_COLUMNS,
    *RANK_COLUMNS,
    Column("sensitivity", lambda r: f"{r.sensitivity:.2f}"),
)
