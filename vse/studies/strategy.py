"""The paper's App. B studies: one explanation scored under several simulation set-ups, many runs each.

The paper's Table 5 compares how the few-shot neurons' Weight-Label pairs are picked (baseline
random, Highest 50/50, Random 50/50, 75/25, 90/10), 50 runs each, mean and 90% CI. Here a
*variant* is any set of `ScoreConfig` overrides (a few-shot strategy, a number of few-shot pairs),
so the same machinery reruns the other App. B studies.

Design, chosen for a paired comparison on a small budget:
- one neuron (drawn with a fixed seed), one explanation of it (held-out display);
- run r draws its items once for every variant: the neuron's held-out top ranks plus
  ``n_random`` uniformly drawn items it was not shown (stream "pass", r), and its few-shot
  generator (stream "fewshot", r) is the same for every variant, so variants differ only in what
  the variant changes;
- each run is scored twice: ``uniform`` (its random items only, the paper's protocol) and
  ``top-and-random-heldout`` (all its items);
- a variant's row: mean and 90% t-interval half-width over runs, and the paired mean difference
  from the first variant (the baseline) with its 90% interval.
Recording is resumable per variant: the explanation in ``explanation.json.gz``, each variant's
runs in its own cassette, saved after every run.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from tqdm import tqdm

from vse.core import exact, seeds
from vse.core.markdown import Column, markdown_table
from vse.core.protocols import draw_outside, heldout_shown, heldout_top
from vse.core.stats import ci_half_width, correlation_score
from vse.core.target import neuron_id
from vse.core.vocab import Display, Kind, Method, Mode, Protocol
from vse.data.loader import draw_neurons, load_target
from vse.method.explain import ExplainConfig
from vse.method.fewshot import fewshot_neurons
from vse.method.pipeline import explain_neuron
from vse.method.predict import predict_explanation
from vse.method.score import ScoreConfig
from vse.outputs.figures import png_bytes
from vse.outputs.paper_tables import to_csv
from vse.studies.cassette_llms import CassetteLLMs
from vse.studies.kind import OneLayerStudy

#: The paper's Table 5 rows (App. B.2.1), in vse.core.sampling's names.
TABLE5 = (
    ("Baseline (random)", (("fewshot_strategy", "random"),)),
    ("Highest 50/50", (("fewshot_strategy", "highest-50/50"),)),
    ("Random 50/50", (("fewshot_strategy", "random-50/50"),)),
    ("Random 75/25", (("fewshot_strategy", "random-75/25"),)),
    ("Random 90/10", (("fewshot_strategy", "random-90/10"),)),
)


@dataclass(frozen=True, kw_only=True)
class StrategyStudy(OneLayerStudy):
    """One explanation, scored under each variant `n_runs` times.

    name: folder under cassettes/ and results/. model, layer, neuron_seed: the neuron (one, drawn).
    method, target: the explanation method and the target kind scored.
    variants: (label, ((ScoreConfig field, value), ...)); the first is the baseline.
    n_runs: runs per variant. n_held: held-out top items (ranks 1, 3, ...) in every run.
    n_random: random items per run. explain, score: the knobs every variant starts from.
    seed: root of the explanation, item and few-shot seeds.
    """

    method: str = Method.WEIGHT_LABEL
    target: str = Kind.WEIGHT_LABEL
    variants: tuple = TABLE5
    n_runs: int = 10
    n_held: int = 4
    n_random: int = 30
    explain: ExplainConfig = field(default_factory=lambda: ExplainConfig(shown=Display.HELDOUT, n_pairs=15))
    score: ScoreConfig = field(
        default_factory=lambda: ScoreConfig(mode=Mode.ONE, protocol=Protocol.UNIFORM, n_fewshot_pairs=25)
    )

    def run(self, llms: CassetteLLMs, *, progress: bool = True) -> StrategyResult:
        return run_strategy_study(self, llms, progress=progress)

    def config(self, overrides) -> ScoreConfig:
        return replace(self.score, **dict(overrides))


def run_items(
    values: np.ndarray, n_held: int, n_random: int, n_shown: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(all items of a run, its random ones): the held-out top ranks 1, 3, ... (`n_held` of them)
    plus `n_random` items drawn from those neither shown to the explainer nor held out."""
    held = heldout_top(values, n_held)
    excluded = set(heldout_shown(values, n_shown).tolist()) | set(held.tolist())
    rand = np.sort(draw_outside(len(values), excluded, n_random, rng))
    return np.union1d(held, rand), rand


@dataclass(frozen=True)
class RunScore:
    """One run of one variant: its scores on all its items and on its random items alone."""

    variant: str
    run: int
    heldout: float
    uniform: float


def _stem(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


@dataclass(frozen=True)
class StrategyResult:
    """A strategy study's run: its one unit and explanation, and every run's scores."""

    study: StrategyStudy
    unit: int
    explanation: dict  # the explanation's record (ExplanationRecord.to_json)
    runs: list[RunScore]
    n_items: list[int]  # items per run

    @property
    def units(self) -> list[int]:
        return [self.unit]

    @property
    def table(self) -> str:
        study, rec = self.study, self.explanation
        return (
            f'Neuron {rec["neuron"]}, its {rec["method"]} explanation: "{rec["explanation"]}"; target {study.target}; '
            f"{study.n_runs} runs per variant, each of {study.n_held} held-out top items + {study.n_random} random "
            "items (uniform: the random ones only); "
            "every variant sees the same items and few-shot draws in a run.\n\n"
            + markdown(summary_rows(study, self.runs))
        )

    @property
    def figure(self) -> str:
        return "\n![runs](runs.png)\n"

    def files(self) -> dict[str, str | bytes]:
        return {
            "explanation.json": json.dumps(self.explanation, indent=2, sort_keys=True) + "\n",
            "runs.csv": runs_csv(self.runs),
            "summary.csv": to_csv(summary_rows(self.study, self.runs)),
            "runs.png": render_runs(self.study, self.runs),
        }


def run_strategy_study(study: StrategyStudy, open_llm: CassetteLLMs, *, progress: bool = True) -> StrategyResult:
    [unit] = draw_neurons(study.model, study.layer, 1, study.neuron_seed)
    neuron = neuron_id(study.model, study.layer, unit)
    with open_llm("explanation") as llm:
        [rec] = explain_neuron(
            neuron, study.method, llm=llm, n=1, config=study.explain, seed=study.seed, progress=False
        )
    target = load_target(neuron, study.target)
    fewshot = fewshot_neurons(neuron, study.target)
    runs = [
        run_items(target.values, study.n_held, study.n_random, study.explain.n_pairs, seeds.rng(study.seed, "pass", r))
        for r in range(study.n_runs)
    ]
    scores: list[RunScore] = []
    for label, overrides in tqdm(study.variants, desc=study.name, unit="variant", disable=not progress):
        config = study.config(overrides)
        with open_llm(_stem(label)) as llm:
            for r, (items, rand) in enumerate(runs):
                pred = np.array(
                    predict_explanation(
                        llm,
                        rec.explanation,
                        [target.texts[i] for i in items],
                        kind=study.target,
                        fewshot=fewshot,
                        config=config,
                        rng=seeds.rng(study.seed, "fewshot", r),
                    )
                )
                true = target.values[items].astype(float)
                is_rand = np.isin(items, rand)
                scores.append(
                    RunScore(
                        label,
                        r,
                        round(correlation_score(pred, true), 4),
                        round(correlation_score(pred[is_rand], true[is_rand]), 4),
                    )
                )
    return StrategyResult(study, unit, rec.to_json(), scores, [len(i) for i, _ in runs])


def summary_rows(study: StrategyStudy, runs: list[RunScore]) -> list[dict]:
    """Per variant and protocol: mean, 90% half-width, paired difference from the baseline."""
    base = study.variants[0][0]
    out = []
    for protocol in ("uniform", "heldout"):
        ref = np.array([getattr(s, protocol) for s in runs if s.variant == base])
        for label, _ in study.variants:
            x = np.array([getattr(s, protocol) for s in runs if s.variant == label])
            d = x - ref
            out.append(
                {
                    "protocol": Protocol.UNIFORM if protocol == "uniform" else Protocol.TOP_AND_RANDOM_HELDOUT,
                    "variant": label,
                    "runs": len(x),
                    "mean": round(exact.mean(x), 2),
                    "ci90": round(ci_half_width(x), 2),
                    "diff_vs_baseline": round(exact.mean(d), 2),
                    "diff_ci90": round(ci_half_width(d), 2) if label != base else 0.0,
                }
            )
    return out


#: The strategy table's columns (`markdown`): one row of `summary_rows` each.
COLUMNS = (
    Column("protocol", lambda r: r["protocol"]),
    Column("variant", lambda r: r["variant"]),
    Column("runs", lambda r: f"{r['runs']}"),
    Column("mean ± 90% CI", lambda r: f"{r['mean']:.2f} ± {r['ci90']:.2f}"),
    Column(
        "paired difference from the baseline ± 90% CI", lambda r: f"{r['diff_vs_baseline']:+.2f} ± {r['diff_ci90']:.2f}"
    ),
)


def markdown(rows: list[dict]) -> str:
    return markdown_table(COLUMNS, rows)


def runs_csv(runs: list[RunScore]) -> str:
    return to_csv([asdict(s) for s in runs])


def render_runs(study: StrategyStudy, runs: list[RunScore]) -> bytes:
    """Every run's score per variant (dots) with the mean ± 90% CI, one panel per protocol."""
    # matplotlib is imported here, not at the top, so that `vse --help` stays fast.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _ in study.variants]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 * len(labels) + 1.6), sharey=True)
    for ax, protocol in zip(axes, ("uniform", "heldout"), strict=True):
        for y, label in enumerate(labels):
            x = np.array([getattr(s, protocol) for s in runs if s.variant == label])
            ax.scatter(x, [y] * len(x), s=12, color="0.6", zorder=2)
            ax.errorbar(
                [exact.mean(x)],
                [y],
                xerr=[[ci_half_width(x)], [ci_half_width(x)]],
                fmt="o",
                color="C3",
                capsize=4,
                zorder=3,
            )
        ax.axvline(0, color="0.8", lw=1, zorder=1)
        ax.set_title("uniform (random items)" if protocol == "uniform" else "top-and-random-heldout", fontsize=9)
        ax.set_xlabel("correlation score per run, mean ± 90% CI")
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"{study.name}: {study.n_runs} runs per variant", fontsize=9)
    fig.tight_layout()
    return png_bytes(fig)
