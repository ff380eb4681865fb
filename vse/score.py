"""The scoring loop (Algorithm 1): simulate on fresh random subsets until the score is certain.

One *pass* draws ``n_items`` of the target's pairs uniformly at random (the paper predicts 50
classes a pass), draws each few-shot neuron's pairs with the few-shot strategy (Random 75/25 for
weights, Highest 50/50 for captions), asks the simulator for the target's values and scores
them with 100 x Pearson against the true scaled values. Passes repeat until the 90%
t-interval half-width of the pass scores is below the threshold (at least 3 passes, at most
the cap; hitting the cap is reported).

Choices the paper leaves open, and ours:
- Each pass has its own generator, ``SeedSequence([seed, pass_index])``, so pass k draws the same
  subsets whether it runs first or after a resume: the same requests, replayed from the cassette.
- A drawn subset whose true values are all equal has no correlation to measure; it is redrawn
  (from the same pass generator) before any LLM call and the redraw is counted. Scoring such a
  pass as 0 would drag every explanation towards 0 for a reason that has nothing to do with it.
- A pass whose reply cannot be turned into values (after the simulator's own retries) is
  recorded as a failed pass and does not count; more than ``max_failed_passes`` ends the loop.
- Accuracy compares the rounded predictions with the true integers; MSE and MAE use the
  predictions as they are (expected values in the logprob modes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from vse.explain import FewShotNeuron
from vse.llm.client import LLMClient, Usage
from vse.prompts import Example, simulate_echo_prompt, simulate_list_prompt, simulate_one_prefix
from vse.sampling import get_strategy
from vse.sampling import random as uniform
from vse.simulate import MODES, Simulation, SimulationError, simulate_echo, simulate_list, simulate_one
from vse.stats import StopRule, accuracy, correlation_score, mae, mse, should_stop, summarize
from vse.targets import Target

MAX_REDRAWS = 100


@dataclass(frozen=True)
class SimulateConfig:
    """Knobs of explanation scoring (defaults: the paper's App. B.2.1 choices for weights).

    mode: how predictions are read (see vse.simulate.MODES).
    n_items: target pairs predicted per pass.
    n_fewshot_pairs: pairs shown for each few-shot neuron.
    fewshot_strategy: how those pairs are drawn (vse.sampling.STRATEGIES).
    stop: Algorithm 1's stopping rule.
    max_failed_passes: failed passes tolerated before the loop gives up.
    top_logprobs: alternatives asked for at each token (logprob modes).
    """

    mode: str = "one"
    n_items: int = 50
    n_fewshot_pairs: int = 50
    fewshot_strategy: str = "random-75/25"
    stop: StopRule = field(default_factory=lambda: StopRule(max_runs=15))
    max_failed_passes: int = 3
    top_logprobs: int = 20

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"simulation mode {self.mode!r} is not one of {MODES}")
        get_strategy(self.fewshot_strategy)


@dataclass
class PassRecord:
    """One simulation pass: which target items, what was predicted, the score (None if failed)."""

    index: int
    items: list[int]
    true: list[int]
    predicted: list[float]
    score: float | None
    calls: int
    redraws: int
    error: str | None = None


@dataclass
class ScoreResult:
    """Algorithm 1's outcome for one explanation on one target."""

    mean: float
    half_width: float
    runs: int
    hit_cap: bool
    scores: list[float]
    accuracy: float
    mse: float
    mae: float
    failed_passes: int
    calls: int
    prompt_tokens: int
    completion_tokens: int
    passes: list[PassRecord] = field(repr=False)

    def summary(self) -> dict:
        d = asdict(self)
        d.pop("passes")
        return d


def _pass_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index]))


def draw_items(target: Target, n: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """Uniform subset of the target; redrawn while its true values are all equal."""
    for redraws in range(MAX_REDRAWS):
        idx = uniform(target.values, n, rng)
        if len(np.unique(target.values[idx])) > 1:
            return idx, redraws
    raise ValueError(f"{target.neuron}: every drawn subset of {n} has constant values; the neuron has {np.count_nonzero(target.values)} non-zero values")


def fewshot_examples(fewshot: Sequence[FewShotNeuron], config: SimulateConfig, rng: np.random.Generator) -> list[Example]:
    strategy = get_strategy(config.fewshot_strategy)
    return [Example(f.target.name, f.target.pairs(strategy(f.target.values, config.n_fewshot_pairs, rng)), f.explanation) for f in fewshot]


def simulate_pass(client: LLMClient, explanation: str, target: Target, examples: Sequence[Example], texts: Sequence[str], config: SimulateConfig, *, seed: int) -> Simulation:
    """Predicted values for `texts` by the configured mode."""
    args = (target.kind, examples, target.name, explanation)
    if config.mode == "one":
        if target.signed:
            raise ValueError("signed targets need a list mode: one-item logprobs read a single token, and '-' would be it")
        return simulate_one(client, simulate_one_prefix(*args), texts, top_logprobs=config.top_logprobs)
    if config.mode == "echo":
        return simulate_echo(client, simulate_echo_prompt(*args, texts), texts, top_logprobs=config.top_logprobs)
    prompt = simulate_list_prompt(*args, texts, signed=target.signed)
    low = -10 if target.signed else 0
    return simulate_list(client, prompt, texts, logprobs=config.mode == "list-logprobs", seed=seed, top_logprobs=config.top_logprobs, low=low)


def score_explanation(client: LLMClient, explanation: str, target: Target, fewshot: Sequence[FewShotNeuron], config: SimulateConfig, *, seed: int, progress: bool = True, checkpoint: Callable[[], None] | None = None) -> ScoreResult:
    """Algorithm 1 for one explanation on one target; `checkpoint()` runs after every pass (recording saves there)."""
    passes: list[PassRecord] = []
    scores: list[float] = []
    usage = Usage()
    calls = failed = 0
    bar = tqdm(total=config.stop.max_runs, desc=f"score {target.neuron}", unit="pass", leave=False, disable=not progress)
    index = 0
    while not should_stop(scores, config.stop) and len(scores) < config.stop.max_runs:
        rng = _pass_rng(seed, index)
        items, redraws = draw_items(target, config.n_items, rng)
        examples = fewshot_examples(fewshot, config, rng)
        texts = [target.texts[i] for i in items]
        true = [int(target.values[i]) for i in items]
        try:
            sim = simulate_pass(client, explanation, target, examples, texts, config, seed=seed * 1000 + index)
        except SimulationError as err:
            failed += 1
            passes.append(PassRecord(index, items.tolist(), true, [], None, 0, redraws, error=str(err)))
            if failed > config.max_failed_passes:
                break
        else:
            score = correlation_score(sim.values, true)
            scores.append(score)
            calls += sim.calls
            usage = usage + sim.usage
            passes.append(PassRecord(index, items.tolist(), true, [round(v, 4) for v in sim.values], round(score, 4), sim.calls, redraws))
            bar.update(1)
            bar.set_postfix(mean=f"{np.mean(scores):.1f}")
        index += 1
        if checkpoint is not None:
            checkpoint()
    bar.close()
    ok = [p for p in passes if p.score is not None]
    if not scores:
        raise SimulationError(f"{target.neuron}: every simulation pass failed: {passes[-1].error if passes else 'none ran'}")
    result = summarize(scores, config.stop)
    pred = np.concatenate([p.predicted for p in ok])
    true = np.concatenate([p.true for p in ok])
    return ScoreResult(
        mean=result.mean,
        half_width=result.half_width,
        runs=result.runs,
        hit_cap=result.hit_cap,
        scores=[round(s, 4) for s in scores],
        accuracy=accuracy(np.rint(pred), true),
        mse=mse(pred, true),
        mae=mae(pred, true),
        failed_passes=failed,
        calls=calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        passes=passes,
    )
