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

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from tqdm import tqdm

from vse.core import seeds
from vse.core.protocols import heldout_shown, heldout_top, outside
from vse.core.stats import ci_half_width, correlation_score
from vse.data.loader import draw_neurons, load_target
from vse.method.explain import ExplainConfig
from vse.method.score import ScoreConfig, fewshot_examples, predict_items
from vse.outputs.paper_tables import to_csv

#: The paper's Table 5 rows (App. B.2.1), in vse.core.sampling's names.
TABLE5 = (
    ("Baseline (random)", (("fewshot_strategy", "random"),)),
    ("Highest 50/50", (("fewshot_strategy", "highest-50/50"),)),
    ("Random 50/50", (("fewshot_strategy", "random-50/50"),)),
    ("Random 75/25", (("fewshot_strategy", "random-75/25"),)),
    ("Random 90/10", (("fewshot_strategy", "random-90/10"),)),
)


@dataclass(frozen=True)
class StrategyStudy:
    """One explanation, scored under each variant `n_runs` times.

    name: folder under cassettes/ and results/. model, layer, neuron_seed: the neuron (one, drawn).
    method, target: the explanation method and the target kind scored.
    variants: (label, ((ScoreConfig field, value), ...)); the first is the baseline.
    n_runs: runs per variant. n_held: held-out top items (ranks 1, 3, ...) in every run.
    n_random: random items per run. explain, score: the knobs every variant starts from.
    seed: root of the explanation, item and few-shot seeds.
    """

    name: str
    model: str = "efficientnet_lite0"
    layer: str = "_conv_head"
    neuron_seed: int = 0
    method: str = "weight-label"
    target: str = "weight-label"
    variants: tuple = TABLE5
    n_runs: int = 10
    n_held: int = 4
    n_random: int = 30
    explain: ExplainConfig = field(default_factory=lambda: ExplainConfig(shown="heldout", n_pairs=15))
    score: ScoreConfig = field(default_factory=lambda: ScoreConfig(n_fewshot_pairs=25))
    seed: int = 0

    def to_json(self) -> dict:
        return asdict(self)

    def config(self, overrides) -> ScoreConfig:
        return replace(self.score, **dict(overrides))


def run_items(
    values: np.ndarray, n_held: int, n_random: int, n_shown: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(all items of a run, its random ones): the held-out top ranks 1, 3, ... (`n_held` of them)
    plus `n_random` items drawn from those neither shown to the explainer nor held out."""
    held = heldout_top(values, n_held)
    exclude = set(heldout_shown(values, n_shown).tolist()) | set(held.tolist())
    candidates = outside(len(values), exclude)
    rand = np.sort(rng.choice(candidates, size=min(n_random, len(candidates)), replace=False))
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


def run_strategy_study(study: StrategyStudy, open_llm: Callable[[str], object], *, progress: bool = True) -> dict:
    from vse.method.fewshot import fewshot_neurons
    from vse.method.pipeline import explain_neuron

    [unit] = draw_neurons(study.model, study.layer, 1, study.neuron_seed)
    neuron = f"{study.model}/{study.layer}/{unit}"
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
            config = replace(config, api=llm.api)
            for r, (items, rand) in enumerate(runs):
                examples = fewshot_examples(fewshot, config, seeds.rng(study.seed, "fewshot", r))
                texts = [target.texts[i] for i in items]
                pred = np.array(
                    predict_items(
                        llm.client,
                        rec.explanation,
                        texts,
                        kind=study.target,
                        examples=examples,
                        config=config,
                        store=llm.store,
                        in_flight=llm.in_flight,
                    ).values
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
                if llm.checkpoint is not None:
                    llm.checkpoint()
    return {"unit": unit, "explanation": rec.to_json(), "runs": scores, "n_items": [len(i) for i, _ in runs]}


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
                    "protocol": "uniform" if protocol == "uniform" else "top-and-random-heldout",
                    "variant": label,
                    "runs": len(x),
                    "mean": round(float(x.mean()), 2),
                    "ci90": round(ci_half_width(x), 2),
                    "diff_vs_baseline": round(float(d.mean()), 2),
                    "diff_ci90": round(ci_half_width(d), 2) if label != base else 0.0,
                }
            )
    return out


def markdown(rows: list[dict]) -> str:
    head = "| protocol | variant | runs | mean ± 90% CI | paired difference from the baseline ± 90% CI |\n|---|---|---|---|---|\n"
    return head + "".join(
        f"| {r['protocol']} | {r['variant']} | {r['runs']} | {r['mean']:.2f} ± {r['ci90']:.2f} | {r['diff_vs_baseline']:+.2f} ± {r['diff_ci90']:.2f} |\n"
        for r in rows
    )


def runs_csv(runs: list[RunScore]) -> str:
    return to_csv([asdict(s) for s in runs])


def render_runs(study: StrategyStudy, runs: list[RunScore]) -> bytes:
    """Every run's score per variant (dots) with the mean ± 90% CI, one panel per protocol."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _ in study.variants]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.5 * len(labels) + 1.6), sharey=True)
    for ax, protocol in zip(axes, ("uniform", "heldout")):
        for y, label in enumerate(labels):
            x = np.array([getattr(s, protocol) for s in runs if s.variant == label])
            ax.scatter(x, [y] * len(x), s=12, color="0.6", zorder=2)
            ax.errorbar(
                [x.mean()], [y], xerr=[[ci_half_width(x)], [ci_half_width(x)]], fmt="o", color="C3", capsize=4, zorder=3
            )
        ax.axvline(0, color="0.8", lw=1, zorder=1)
        ax.set_title("uniform (random items)" if protocol == "uniform" else "top-and-random-heldout", fontsize=9)
        ax.set_xlabel("correlation score per run, mean ± 90% CI")
    axes[0].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.suptitle(f"{study.name}: {study.n_runs} runs per variant", fontsize=9)
    fig.tight_layout()
    from vse.outputs.figures import png_bytes

    return png_bytes(fig)
