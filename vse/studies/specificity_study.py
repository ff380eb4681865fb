"""The specificity study: does choosing among more candidates, or choosing for specificity, single out a unit?

Why: in the defaults study (`vse.studies.defaults_study`) the recommended path (the top display, best of 4
chosen on held-in items) tells own from other explanations on average, but a unit's own explanation ranks
first among the 32 `_conv_head` units' for only 2 of them (issue 32). On the defaults study's recorded
candidates (development data; `bench/specificity_dev.py`, on this study's item halves) two levers were
measured before this design: pooling the candidates of both displays (`_conv_head` Weight-Label own ranked
first for 6/32 with 4 + 4 candidates, 7/32 with 8 + 8, against 4/32 for today's top 4) and the
`Pick.SPECIFIC` choice (held-in score on the unit minus its mean held-in score on its 10 nearest other
units' values over the same items), which ranked the own explanation first less often in every cell
(0/32 on `_conv_head` Weight-Label). The same development data show how noisy one split is: today's top 4
ranked first for 2/32 (mean rank 8.6) on the defaults study's halves and 4/32 (mean rank 11.7) on these.
This study measures the levers on units nobody looked at.

Design (fixed before recording; committed before the first recorded call):
- Units: 32 `_conv_head` and 16 `_blocks.15` units drawn with ``neuron_seed`` 32 (stream "neurons"),
  outside the few-shot and prompt-development units, outside every unit used before the defaults study
  (`vse.studies.defaults_study.USED_UNITS`) and outside the defaults study's own units (``DEFAULTS_UNITS``;
  `tests/studies/test_specificity_study.py` checks them against the defaults study's draw).
- Explanations: the Weight-Label method with the new-run explainer (`new_run_config`), ``n_candidates`` (4)
  candidates per display under both displays, ``top`` and ``heldout``; candidate k with the seed
  `llm_seed(seed, "explain", k)`, so the top display's 4 are exactly what today's `explain_best` asks for.
  One cassette per unit holds its 8 calls.
- Targets: Weight-Label and Caption-Activation (the explainer saw no caption).
- Items: the ones no candidate of the unit was shown (for Caption-Activation: every item), split once by
  `vse.method.best_of.split_unseen` (``split_seed``) into a held-in and a held-out half; every configuration
  is chosen on the held-in half and reported on the held-out half, the same halves for every configuration.
  Scorer: the defaults (`ScoreConfig()`: the embedding simulator, no LLM call).
- Configurations (``configs``): ``top-4`` (today's default), ``top-4-specific``, ``pooled-2+2`` (the first 2
  candidates of each display: today's cost), ``pooled-4+4`` (the 8 candidates of both displays, best by
  held-in score) and ``pooled-4+4-specific``. `Pick.SPECIFIC`'s
  neighbours: the ``n_neighbours`` (10) units of the layer whose values of the scored target correlate most
  with the unit's (`vse.method.best_of.nearest_units`, every unit of the layer, ties by index).
- Comparison, per (layer, target, configuration): S[i, j] = unit i's chosen explanation on unit j's held-out
  half; `vse.core.discrimination.match`: matched and mismatched means, own > others, own ranked first, mean
  rank, one-sided paired p-values; Meta-AUPRC of S (`vse.core.discrimination.meta_auprc`, added to the
  report after this design was committed and before any result was read: a measure, not part of the rule),
  with each unit's hard negative the chosen explanation nearest to its own by embedding; cost per unit:
  calls, prompt and completion tokens of the candidates the configuration chooses among.
- The rule (issue 32's "done when"): the challenger is the configuration other than ``top-4`` with the most
  `_conv_head` Weight-Label units ranked first (ties: lower mean rank, then fewer calls). It becomes the
  default if, on `_conv_head` Weight-Label, its own explanation ranks first for at least ``goal_rank1`` (16)
  of the 32 units with p (t) below ``goal_p`` (1e-4), and on each of the three other (layer, target) cells its
  mean rank is no higher than ``top-4``'s. Otherwise the defaults stay, and the table says so.

Expectation written before recording (so nobody reads it as a surprise): on the development data, the best
any single text can do under this scorer (a ridge direction in the embedding space fitted on the held-in half)
ranked first for 10 of 32 `_conv_head` Weight-Label units (17/32 on Caption-Activation, 8/16 and 13/16 on
`_blocks.15`); 16 of 32 on `_conv_head` Weight-Label is not expected from any configuration here.

Cost: 48 units x 8 explanation calls; the embeddings are kept in ``cassettes/<name>/embeddings.npz``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from tqdm import tqdm

from vse.core import exact
from vse.core.discrimination import MATCH_COLUMNS, RANK_COLUMNS, Matched, MetaAUPRC, match, meta_auprc, nearest_others
from vse.core.markdown import Column, markdown_table
from vse.core.stats import correlation_score
from vse.core.target import Target, neuron_id, neuron_stem
from vse.core.vocab import Display, Kind, Method, Pick
from vse.data.loader import draw_neurons, fixture_width, load_target
from vse.method.best_of import centred_rows, choose, nearest_units, split_unseen, unseen_items
from vse.method.explain import ExplainConfig, new_run_config
from vse.method.pipeline import explain_neuron
from vse.method.records import ExplanationRecord
from vse.method.score import ScoreConfig
from vse.method.simulators.embedding import EmbeddingStore, cosine_predictions
from vse.outputs.paper_tables import to_csv
from vse.studies.cassette_llms import CassetteLLMs
from vse.studies.defaults_study import USED_UNITS
from vse.studies.kind import StudyKind

#: The defaults study's own units (`DefaultsStudy().units`), never drawn here.
DEFAULTS_UNITS: tuple[tuple[str, tuple[int, ...]], ...] = (
    (
        "_conv_head",
        (1229, 1025, 998, 1042, 202, 908, 428, 438, 999, 895, 837, 781, 1140, 679, 222, 389)
        + (390, 458, 198, 246, 881, 1177, 1072, 548, 520, 718, 1158, 1085, 513, 576, 886, 223),
    ),
    ("_blocks.15", (139, 277, 302, 60, 212, 217, 293, 270, 289, 54, 116, 227, 146, 61, 100, 228)),
)


def _union(*groups: tuple[tuple[str, tuple[int, ...]], ...]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    layers: dict[str, set[int]] = {}
    for group in groups:
        for layer, units in group:
            layers.setdefault(layer, set()).update(units)
    return tuple((layer, tuple(sorted(units))) for layer, units in sorted(layers.items()))


@dataclass(frozen=True)
class Config:
    """One way to choose: which displays' candidates (``n`` each, the first ``n``) and how (`Pick`)."""

    name: str
    displays: tuple[Display, ...]
    n: int
    pick: Pick


#: The configurations compared (module doc); the first is today's default.
CONFIGS = (
    Config("top-4", (Display.TOP,), 4, Pick.HELD_IN),
    Config("top-4-specific", (Display.TOP,), 4, Pick.SPECIFIC),
    Config("pooled-2+2", (Display.TOP, Display.HELDOUT), 2, Pick.HELD_IN),
    Config("pooled-4+4", (Display.TOP, Display.HELDOUT), 4, Pick.HELD_IN),
    Config("pooled-4+4-specific", (Display.TOP, Display.HELDOUT), 4, Pick.SPECIFIC),
)


@dataclass(frozen=True, kw_only=True)
class SpecificityStudy(StudyKind):
    """Candidates pooled over displays and picked for specificity vs today's best of 4 (module doc)."""

    name: str = "specificity-study"
    layers: tuple[tuple[str, int], ...] = (("_conv_head", 32), ("_blocks.15", 16))
    neuron_seed: int = 32
    exclude: tuple[tuple[str, tuple[int, ...]], ...] = field(default_factory=lambda: _union(USED_UNITS, DEFAULTS_UNITS))
    displays: tuple[Display, ...] = (Display.TOP, Display.HELDOUT)
    n_candidates: int = 4
    configs: tuple[Config, ...] = CONFIGS
    targets: tuple[str, ...] = (Kind.WEIGHT_LABEL, Kind.CAPTION_ACTIVATION)
    explain: ExplainConfig = field(default_factory=new_run_config)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    split_seed: int = 0
    n_neighbours: int = 10
    goal_rank1: int = 16
    goal_p: float = 1e-4

    def __post_init__(self) -> None:
        for c in self.configs:
            if c.n > self.n_candidates or c.n < 1 or not set(c.displays) <= set(self.displays):
                raise ValueError(f"config {c.name}: {c.n} of {c.displays} is not among the recorded candidates")

    def units(self, layer: str, n: int) -> list[int]:
        return draw_neurons(self.model, layer, n, self.neuron_seed, exclude=dict(self.exclude).get(layer, ()))

    def run(self, llms: CassetteLLMs, *, progress: bool = True) -> SpecificityResult:
        store = EmbeddingStore(llms.folder / "embeddings.npz", record=llms.record)
        try:
            return run_specificity_study(self, llms, store, progress=progress)
        finally:
            store.save()  # recording: what was embedded so far survives an interruption


# ----------------------------------------------------------------------------- rows


@dataclass(frozen=True, kw_only=True)
class Row:
    """One row of summary.json: one configuration on one (layer, target) cell, and what it cost per unit."""

    layer: str
    target: str
    config: str
    n_neurons: int
    n_compared: int
    matched_mean: float
    mismatched_mean: float
    wins: int
    rank1: int
    mean_rank: float
    p_value: float
    p_wilcoxon: float
    meta_auprc: float
    meta_auprc_floor: float
    meta_auprc_hard: float
    calls_per_unit: float
    prompt_tokens_per_unit: float
    completion_tokens_per_unit: float
    winner: bool = False

    @classmethod
    def of(cls, m: Matched, meta: MetaAUPRC, cost: tuple[float, float, float], **identity) -> Row:
        return cls(
            **identity,
            meta_auprc=meta.auprc,
            meta_auprc_floor=meta.floor,
            meta_auprc_hard=meta.hard if meta.hard is not None else float("nan"),
            n_compared=m.n_compared,
            matched_mean=m.matched_mean,
            mismatched_mean=m.mismatched_mean,
            wins=m.wins,
            rank1=m.rank1,
            mean_rank=m.mean_rank,
            p_value=m.p_value,
            p_wilcoxon=m.p_wilcoxon,
            calls_per_unit=cost[0],
            prompt_tokens_per_unit=cost[1],
            completion_tokens_per_unit=cost[2],
        )

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Choice:
    """One unit's choice under one configuration and target (a line of choices.csv)."""

    neuron: str
    target: str
    config: str
    chosen_display: str
    chosen_seed: int | None
    explanation: str
    held_in: float  # the chosen candidate's score on the unit's held-in half
    neighbours_held_in: float | None  # its mean score on the neighbours' values, same items (specific picks)
    held_out: float  # its score on the unit's held-out half (what is reported)

    def to_json(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def verdict(rows: list[Row], study: SpecificityStudy) -> tuple[str, bool]:
    """The module doc's rule: (the challenger's name, whether it meets the goal and becomes the default)."""
    baseline = study.configs[0].name
    calls = {c.name: len(c.displays) * c.n for c in study.configs}
    head = {r.config: r for r in rows if (r.layer, str(r.target)) == ("_conv_head", Kind.WEIGHT_LABEL)}
    challenger = min(
        (c.name for c in study.configs[1:]),
        key=lambda name: (-head[name].rank1, head[name].mean_rank, calls[name], name),
    )
    h = head[challenger]
    meets = h.rank1 >= study.goal_rank1 and h.p_value < study.goal_p
    for r in rows:
        if r.config != challenger or (r.layer, str(r.target)) == ("_conv_head", Kind.WEIGHT_LABEL):
            continue
        base = next(b for b in rows if (b.layer, b.target, b.config) == (r.layer, r.target, baseline))
        meets = meets and r.mean_rank <= base.mean_rank
    return challenger, meets


# ----------------------------------------------------------------------------- running


@dataclass(frozen=True)
class SpecificityResult:
    name: str
    explanations: list[ExplanationRecord]
    rows: list[Row]
    choices: list[Choice]
    challenger: str
    meets_goal: bool

    @property
    def units(self) -> list[str]:
        return sorted({r.neuron for r in self.explanations})

    @property
    def table(self) -> str:
        outcome = (
            "meets the goal: it becomes the default"
            if self.meets_goal
            else "does not meet the goal (own ranked first for >= 16/32 `_conv_head` Weight-Label units, "
            "p < 1e-4, no worse elsewhere): the defaults stay"
        )
        return (
            markdown_table(COLUMNS, self.rows)
            + f"\nChallenger by the study's rule: `{self.challenger}`; it {outcome}.\n"
            + f"Embeddings replay from `cassettes/{self.name}/embeddings.npz`.\n"
        )

    @property
    def figure(self) -> str:
        return ""

    def files(self) -> dict[str, str | bytes]:
        return {
            "summary.json": json.dumps([r.to_json() for r in self.rows], indent=2, sort_keys=True) + "\n",
            "explanations.jsonl": "".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in self.explanations),
            "choices.csv": to_csv([c.to_json() for c in self.choices]),
        }


def record_explanations(
    study: SpecificityStudy, llms: CassetteLLMs, layer: str, units: list[int], *, progress: bool
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


def candidates(config: Config, records: dict[tuple[int, str], list[ExplanationRecord]], unit: int):
    """The records a configuration chooses among, in a fixed order (display by display, seed order)."""
    return [r for d in config.displays for r in records[unit, d][: config.n]]


def cost(config: Config, records: dict[tuple[int, str], list[ExplanationRecord]], units: list[int]):
    """Mean calls, prompt tokens and completion tokens per unit of the candidates a configuration uses."""
    per = [candidates(config, records, u) for u in units]
    return (
        exact.mean([sum(r.calls for r in rs) for rs in per]),
        exact.mean([sum(r.prompt_tokens for r in rs) for rs in per]),
        exact.mean([sum(r.completion_tokens for r in rs) for rs in per]),
    )


def compare_configs(
    study: SpecificityStudy,
    layer: str,
    units: list[int],
    target: str,
    records: dict[tuple[int, str], list[ExplanationRecord]],
    store: EmbeddingStore,
) -> tuple[list[Row], list[Choice]]:
    """Every configuration on one (layer, target) cell: its row and every unit's choice. Pure over the records
    and the store (the development bench runs it on the defaults study's candidates)."""
    targets: list[Target] = [load_target(neuron_id(study.model, layer, u), target) for u in units]
    texts = targets[0].texts
    truths = [t.values.astype(float) for t in targets]
    every = [r for u in units for d in study.displays for r in records[u, d]]
    halves = []
    for u, t in zip(units, targets, strict=True):
        shown_to = [r for d in study.displays for r in records[u, d]]
        halves.append(
            split_unseen(unseen_items(t.strength, shown_to, target, study.score.n_shown), study.split_seed, u)
        )
    pred = {r.explanation: cosine_predictions(store, r.explanation, texts) for r in every}
    neighbours: list[list[np.ndarray]] = [[] for _ in units]
    if any(c.pick == Pick.SPECIFIC for c in study.configs):
        width = fixture_width(study.model, layer, target)
        layer_values = [load_target(neuron_id(study.model, layer, v), target).values for v in range(width)]
        rows_c = centred_rows(np.array(layer_values, dtype=float))
        neighbours = [
            [np.asarray(layer_values[v], dtype=float) for v in nearest_units(rows_c, u, study.n_neighbours)]
            for u in units
        ]
    rows: list[Row] = []
    choices: list[Choice] = []
    for config in study.configs:
        chosen: list[ExplanationRecord] = []
        why: list[tuple[float, float | None]] = []
        for j, u in enumerate(units):
            cands = candidates(config, records, u)
            h = halves[j][0]
            own = [correlation_score(pred[r.explanation][h], truths[j][h]) for r in cands]
            on_nb = (
                [[correlation_score(pred[r.explanation][h], nb[h]) for nb in neighbours[j]] for r in cands]
                if config.pick == Pick.SPECIFIC
                else []
            )
            c = choose(own, config.pick, on_nb)
            chosen.append(cands[c])
            why.append((own[c], exact.mean(on_nb[c]) if on_nb else None))
        s = np.array(
            [
                [
                    correlation_score(pred[chosen[i].explanation][halves[j][1]], truths[j][halves[j][1]])
                    for j in range(len(units))
                ]
                for i in range(len(units))
            ]
        )
        # Meta-AUPRC's hard negative for unit j: the chosen explanation nearest to j's own by embedding.
        nearest = nearest_others(store.embed([r.explanation for r in chosen]))
        rows.append(
            Row.of(
                match(s),
                meta_auprc(s, nearest),
                cost(config, records, units),
                layer=layer,
                target=str(target),
                config=config.name,
                n_neurons=len(units),
            )
        )
        for j, u in enumerate(units):
            choices.append(
                Choice(
                    neuron=neuron_id(study.model, layer, u),
                    target=str(target),
                    config=config.name,
                    chosen_display=str(chosen[j].display),
                    chosen_seed=chosen[j].seed,
                    explanation=chosen[j].explanation,
                    held_in=why[j][0],
                    neighbours_held_in=why[j][1],
                    held_out=float(s[j, j]),
                )
            )
    return rows, choices


def run_specificity_study(
    study: SpecificityStudy, llms: CassetteLLMs, store: EmbeddingStore, *, progress: bool = True
) -> SpecificityResult:
    """Record or replay the candidates, then compare every configuration on the default scorer."""
    drawn = [(layer, study.units(layer, n)) for layer, n in study.layers]
    records = {layer: record_explanations(study, llms, layer, units, progress=progress) for layer, units in drawn}
    rows: list[Row] = []
    choices: list[Choice] = []
    for layer, units in drawn:
        for target in study.targets:
            r, c = compare_configs(study, layer, units, target, records[layer], store)
            rows += r
            choices += c
    challenger, meets = verdict(rows, study)
    rows = [replace(r, winner=meets and r.config == challenger) for r in rows]
    explanations = [r for layer, units in drawn for u in units for d in study.displays for r in records[layer][u, d]]
    return SpecificityResult(study.name, explanations, rows, choices, challenger, meets)


#: The specificity study's table columns.
COLUMNS = (
    Column("layer", lambda r: r.layer),
    Column("target", lambda r: r.target),
    Column("configuration", lambda r: r.config),
    Column("neurons", lambda r: f"{r.n_neurons}"),
    *MATCH_COLUMNS,
    *RANK_COLUMNS,
    Column("Meta-AUPRC (floor)", lambda r: f"{r.meta_auprc:.3f} ({r.meta_auprc_floor:.3f})"),
    Column("vs nearest", lambda r: f"{r.meta_auprc_hard:.3f}"),
    Column("calls / unit", lambda r: f"{r.calls_per_unit:.0f}"),
    Column(
        "tokens / unit (prompt + completion)",
        lambda r: f"{r.prompt_tokens_per_unit:.0f} + {r.completion_tokens_per_unit:.0f}",
    ),
)
