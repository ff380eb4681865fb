"""Scoring an explanation on a target: simulation passes until the score is certain (Algorithm 1).

One *pass* picks items with the run's protocol (`vse.core.protocols`; the paper's is ``uniform``: 50
random items), asks the simulator for their values and scores them with 100 x Pearson against
the true scaled values. `vse.core.stats.run_until_confident` (Algorithm 1, written once) repeats
passes until the 90% t-interval half-width is below the threshold (at least 3 passes, at most the
cap; hitting the cap is reported). Protocol ``all`` predicts every item once: one exact pass,
half-width 0.

Choices the paper leaves open, and ours:
- The few-shot neurons' pairs are drawn once per scoring run (stream "fewshot"), not per pass as
  in the paper (``fewshot_draw="per-pass"`` restores that). With a fixed few-shot context a
  one-item prediction depends only on (explanation, item), so each item is predicted at most once
  and the `PredictionStore` serves every later pass, protocol and mismatched comparison.
- Pass i draws its items from its own generator (stream "pass", i), so a resumed recording sends
  the same requests. A drawn set whose true values are all equal says nothing about the
  explanation; it is redrawn before any LLM call and the redraw counted.
- Before any pass, `check_scorable` looks at every item the protocol can draw from
  (`vse.core.protocols.draw_pool`): fewer than 2 of them, or all of one value (every item the
  explainer did not see is 0 on a sparse unit of a small probe set), and no redraw can help:
  `Unscorable` says so in words, with what to do, before any LLM call.
- A pass whose reply cannot be turned into values (after the simulator's own retries) is recorded
  as failed and does not count; more than ``max_failed_passes`` ends the loop with an error.
- Prior correction: the predictions for `NEUTRAL_EXPLANATION` on the same items are subtracted
  before the correlation, so the score credits what the explanation adds over the item names.
- Accuracy compares the rounded predictions with the true integers; MSE and MAE use the
  predictions as they are (expected values in the logprob modes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from vse.core import seeds
from vse.core.protocols import PROTOCOLS, Selector, draw_pool
from vse.core.sampling import get_strategy
from vse.core.stats import StopRule, accuracy, correlation_score, mae, mse, run_until_confident
from vse.core.target import Target
from vse.core.vocab import (
    EXACT_PROTOCOLS,
    Api,
    FewshotDraw,
    FewshotStrategy,
    Kind,
    Mode,
    Protocol,
    Unscorability,
    choices,
)
from vse.errors import UserError
from vse.llm.client import LLMClient, Usage
from vse.method import defaults
from vse.method.explain import FewShotNeuron
from vse.method.prediction_store import PredictionStore
from vse.method.prompts import Example
from vse.method.records import PassRecord, ScoreResult
from vse.method.simulators import MODES, SimContext, Simulation, SimulationError, make_simulator
from vse.method.simulators.embedding import EmbeddingStore

MAX_REDRAWS = 100
#: The explanation whose predictions a prior-corrected score subtracts: it names no feature, so
#: what the simulator predicts for it is its prior over the item texts alone.
NEUTRAL_EXPLANATION = "nothing in particular"
#: The paper's few-shot strategies (App. B): weights Random 75/25, captions Highest 50/50.
FEWSHOT_STRATEGY = {
    Kind.CAPTION_ACTIVATION: FewshotStrategy.HIGHEST_50_50,
    Kind.WEIGHT_LABEL: FewshotStrategy.RANDOM_75_25,
    Kind.WEIGHT_CLIP: FewshotStrategy.RANDOM_75_25,
    Kind.WEIGHT_EXPLANATION: FewshotStrategy.RANDOM_75_25,
}


#: What to do about each kind of unscorable unit, in the options of `vse score` and `vse validate`
#: (`vse label` words its own: `vse.studies.label_work.LABEL_REMEDIES`).
REMEDIES: dict[Unscorability, str] = {
    Unscorability.CONSTANT: "no explanation can be scored on these items: score the unit on other items "
    "(another probe set) or another target",
    Unscorability.UNSEEN: "give a larger probe set, or score with --protocol uniform, which includes the shown items",
    Unscorability.SPLIT: "give a larger probe set, or score one explanation (--n 1), on every item the explainer "
    "did not see",
    Unscorability.DRAWS: "score with --protocol recall-free or all, which use each item once, or with more --n-items",
}


class Unscorable(UserError):
    """A protocol cannot score this unit: the items a score may use are fewer than 2 or all of one value.

    Not a failure of the run: `vse label` records the unit as ``unscorable`` with its explanations, `vse validate`
    leaves it out of the paired test. ``why`` (`Unscorability`) says which items and picks the remedy; ``cause``
    and ``remedy`` are words; ``reason`` is both (what a record keeps); ``str()`` adds the neuron.
    """

    def __init__(self, neuron: str, why: Unscorability, cause: str, remedy: str | None = None) -> None:
        self.neuron, self.why, self.cause = neuron, Unscorability(why), cause
        self.remedy = remedy or REMEDIES[self.why]
        super().__init__(f"{neuron}: {self.reason}")

    @property
    def reason(self) -> str:
        return f"{self.cause}; {self.remedy}"

    def instead(self, remedies: dict[Unscorability, str]) -> Unscorable:
        """The same cause with a command's own remedy (its own options' names), where it has one."""
        return Unscorable(self.neuron, self.why, self.cause, remedies.get(self.why, self.remedy))


def one_value(values: np.ndarray) -> str:
    """How a cause names the one value a set of items has: "(0)"."""
    return f"({int(values[0])})" if len(values) else ""


def unseen_cause(n_unseen: int, n_items: int, values: np.ndarray) -> str | None:
    """Why the ``n_unseen`` items the explainer did not see (of ``n_items``; their ``values``) cannot score, or None."""
    if n_unseen == 0:
        return f"the explainer was shown all {n_items} items: none is left that it did not see"
    if n_unseen == 1:
        return f"only 1 of the {n_items} items was not shown to the explainer: a correlation needs at least 2"
    if len(np.unique(values)) == 1:
        return f"all {n_unseen} items the explainer did not see have the same value {one_value(values)}"
    return None


def check_scorable(target: Target, config: ScoreConfig, universe: np.ndarray | None = None) -> None:
    """Raise `Unscorable` when no pass of ``config.protocol`` can score ``target``: the items it can draw from
    (`vse.core.protocols.draw_pool`, within ``universe`` when given) are fewer than 2 or all of one value.
    Costs nothing: run before any LLM call (`score_target` does)."""
    pool = draw_pool(
        config.protocol,
        target.values,
        config.n_items,
        n_shown=config.n_shown,
        strength=target.strength,
        universe=universe,
    )
    values = target.values[pool]
    if len(pool) >= 2 and len(np.unique(values)) > 1:
        return
    size = len(target.values)
    if universe is not None:
        why, cause = (
            Unscorability.UNSEEN,
            (
                f"the {len(pool)} items this score may use (its universe) "
                + ("are fewer than 2" if len(pool) < 2 else f"all have the same value {one_value(values)}")
            ),
        )
    elif config.protocol == Protocol.RECALL_FREE:
        why, cause = Unscorability.UNSEEN, unseen_cause(len(pool), size, values) or ""
    elif config.protocol == Protocol.TOP_AND_RANDOM_HELDOUT:
        why = Unscorability.UNSEEN
        cause = f"the {len(pool)} items {config.protocol} can draw from " + (
            "are fewer than 2" if len(pool) < 2 else f"all have the same value {one_value(values)}"
        )
    else:
        why = Unscorability.CONSTANT
        cause = (
            f"all {size} items have the same value {one_value(values)}: the unit is dead on them"
            if size >= 2
            else f"the target has {size} item(s): a correlation needs at least 2"
        )
    raise Unscorable(target.neuron, why, cause)


@dataclass(frozen=True)
class ScoreConfig:
    """Knobs of explanation scoring (defaults: `vse.method.defaults`, shared with the commands).

    mode: how predictions are read (`vse.core.vocab.Mode`); the default, the embedding simulator,
        needs an `EmbeddingStore` (`vse.method.llm.LLM.embedding_only`). The paper's Algorithm 1 is
        ``mode=Mode.ONE, protocol=Protocol.UNIFORM``.
    api: "completions" or "chat" (the LLM's endpoint wins: `vse.method.llm.on_llm_endpoint`).
    protocol: which items a pass predicts (vse.core.protocols.PROTOCOLS).
    prior_corrected: subtract the neutral explanation's predictions before the correlation.
    n_items: items per pass. n_shown: pairs the explainer saw (`ExplainConfig.n_pairs`), which the
        held-out and recall-free protocols leave out; the name is kept as recorded configs spell it.
    n_fewshot_pairs, fewshot_strategy: the pairs shown for each few-shot neuron (strategy None:
        the paper's choice for the target kind, `FEWSHOT_STRATEGY`).
    fewshot_draw: "per-run" (once per scoring run, store-friendly) or "per-pass" (the paper).
    stop: Algorithm 1's stopping rule. max_failed_passes: failures tolerated.
    top_logprobs: alternatives asked for at each token (logprob modes).
    split_ten: one-item mode: a follow-up call splits the mass on "1" into 1 and 10 (Qwen writes
        10 as "1","0"); off by default, it doubles the calls (the simulator's ``ten_followup``, see
        vse.method.simulators.one_item; the field keeps the name recorded configs use).

    Strings are accepted for the enum fields and stored as members; members are strings, so a
    config dumps to the same JSON either way.
    """

    mode: Mode = defaults.SIMULATOR
    api: Api = defaults.API
    protocol: Protocol = defaults.PROTOCOL
    prior_corrected: bool = False
    n_items: int = defaults.N_ITEMS
    n_shown: int = 25
    n_fewshot_pairs: int = 50
    fewshot_strategy: FewshotStrategy | None = None
    fewshot_draw: FewshotDraw = defaults.FEWSHOT_DRAW
    stop: StopRule = field(default_factory=lambda: StopRule(max_runs=defaults.MAX_PASSES))
    max_failed_passes: int = 3
    top_logprobs: int = 20
    split_ten: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"simulation mode {self.mode!r} is not one of {MODES}")
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"scoring protocol {self.protocol!r} is not one of {PROTOCOLS}")
        if self.fewshot_draw not in choices(FewshotDraw):
            raise ValueError(f"fewshot_draw must be 'per-run' or 'per-pass', got {self.fewshot_draw!r}")
        if self.fewshot_strategy is not None:
            get_strategy(self.fewshot_strategy)
        if self.api not in choices(Api):
            raise ValueError(f"api {self.api!r} is not one of {choices(Api)}")
        for name, enum in (("mode", Mode), ("api", Api), ("protocol", Protocol), ("fewshot_draw", FewshotDraw)):
            object.__setattr__(self, name, enum(getattr(self, name)))
        if self.fewshot_strategy is not None:
            object.__setattr__(self, "fewshot_strategy", FewshotStrategy(self.fewshot_strategy))
        if self.mode != Mode.EMBEDDING:  # the embedding simulator needs its store, given at run time
            make_simulator(self.mode, self.api)  # refuses impossible pairs (echo over chat) early

    @property
    def label(self) -> str:
        """The protocol as tables name it."""
        return self.protocol + (" (prior-corrected)" if self.prior_corrected else "")


#: The paper's Algorithm 1 (App. B.2.1): one item per call, passes of uniformly drawn items.
PAPER = ScoreConfig(mode=Mode.ONE, protocol=Protocol.UNIFORM)


def fewshot_examples(
    fewshot: Sequence[FewShotNeuron], config: ScoreConfig, rng: np.random.Generator
) -> tuple[Example, ...]:
    kinds = {f.target.kind for f in fewshot}
    name = config.fewshot_strategy or (
        FEWSHOT_STRATEGY[kinds.pop()] if len(kinds) == 1 else FewshotStrategy.RANDOM_75_25
    )
    strategy = get_strategy(name)
    return tuple(
        Example(f.target.name, f.target.pairs(strategy(f.target.values, config.n_fewshot_pairs, rng)), f.explanation)
        for f in fewshot
    )


def predict_items(
    client: LLMClient,
    explanation: str,
    texts: Sequence[str],
    *,
    kind: str,
    examples: Sequence[Example],
    config: ScoreConfig = PAPER,
    signed: bool = False,
    store: PredictionStore | None = None,
    in_flight: int = 1,
    seed: int = 0,
    embeddings: EmbeddingStore | None = None,
) -> Simulation:
    """The one way to predict a neuron's values for item texts from an explanation.

    Every caller goes through it: Algorithm 1 (`score_target`), the studies
    (`vse.studies.matched`, `vse.studies.strategy`) and `vse validate`. It builds the simulator that
    ``config`` names (``mode``, ``api``, ``top_logprobs``, ``split_ten``: `make_simulator`) and the
    prompt context, and returns a `Simulation` whose ``values[i]`` is the prediction for
    ``texts[i]`` (plus the calls and tokens it cost).

    client: the LLM client (a cassette around the call records or replays it).
    explanation: completes "the main thing this neuron does is find".
    texts: the items, in any order; a text given twice is predicted once.
    kind: the target's pair kind ("weight-label", ...): it picks the prompt's wording.
    examples: the few-shot neurons as shown (`fewshot_examples` draws them).
    signed: values are -10..10 (App. C.3.2) instead of 0..10.
    store: where per-item predictions (one-item mode) are kept and looked up first.
    in_flight: how many item predictions (store misses) are sent at once, one-item mode; the
        result is the same for every value (see `OneItemSimulator.predict`). 1 for a library
        call; the local llama.cpp server serves its slots in parallel, a remote endpoint as many
        as it allows (``--in-flight`` on the commands).
    seed: the sampling seed of modes that sample (``list``); one-item mode ignores it.
    embeddings: the `EmbeddingStore` of mode ``embedding`` (`vse.method.simulators.embedding`: no LLM).

    For the server's prompt cache, call it explanation by explanation: consecutive requests then
    share the prompt up to the item.
    """
    simulator = make_simulator(
        config.mode, config.api, top_logprobs=config.top_logprobs, ten_followup=config.split_ten, embeddings=embeddings
    )
    ctx = SimContext(kind, tuple(examples), explanation, signed)
    return simulator.predict(client, ctx, texts, seed=seed, store=store, in_flight=in_flight)


def draw_items(
    target: Target, config: ScoreConfig, rng: np.random.Generator, universe: np.ndarray | None = None
) -> tuple[np.ndarray, int]:
    """The items of one pass (within ``universe`` when given); redrawn while their true values are all equal.

    Raises `Unscorable` when the protocol's items are all of one value (`check_scorable`), or when
    ``MAX_REDRAWS`` random draws in a row were (a unit with a few non-zero items among many)."""
    return ItemDraw(target, config, universe).draw(rng)


class ItemDraw:
    """`draw_items` for many passes of one target: ``ItemDraw(target, config, universe).draw(rng)`` is
    ``draw_items(target, config, rng, universe)``, with the check (`check_scorable`) and the protocol's
    ranking (`vse.core.protocols.Selector`) done once, here, instead of once a pass.

    Raises `Unscorable` here when no pass can score the target.
    """

    def __init__(self, target: Target, config: ScoreConfig, universe: np.ndarray | None = None) -> None:
        check_scorable(target, config, universe)
        self.target, self.config, self.universe = target, config, universe
        self._values = target.values
        self._selector = Selector(
            config.protocol,
            target.values,
            config.n_items,
            n_shown=config.n_shown,
            strength=target.strength,
            universe=universe,
        )

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """(the items of one pass, how many draws before them were redrawn)."""
        config = self.config
        for redraws in range(MAX_REDRAWS):
            idx = self._selector.draw(rng)
            true = self._values[idx]
            # At least two distinct values (the values are finite: `Target` scales them), without np.unique's sort.
            if len(true) > 1 and true.min() != true.max():
                return idx, redraws
            if config.protocol in EXACT_PROTOCOLS:
                break
        universe, target = self.universe, self.target
        pool = target.values if universe is None else target.values[np.asarray(universe, dtype=int)]
        _, counts = np.unique(pool, return_counts=True)
        other = len(pool) - int(counts.max())
        raise Unscorable(
            target.neuron,
            Unscorability.DRAWS,
            f"{MAX_REDRAWS} draws in a row of {config.n_items} of its {len(pool)} items each had one value: "
            f"only {other} of them {'differs' if other == 1 else 'differ'} from the most common value",
        )


def score_target(
    client: LLMClient,
    explanation: str,
    target: Target,
    fewshot: Sequence[FewShotNeuron],
    config: ScoreConfig,
    *,
    seed: int,
    store: PredictionStore | None = None,
    progress: bool = True,
    checkpoint: Callable[[], None] | None = None,
    in_flight: int = 1,
    embeddings: EmbeddingStore | None = None,
    universe: np.ndarray | None = None,
) -> ScoreResult:
    """Algorithm 1 for one explanation on one target; `checkpoint()` runs after every pass.

    in_flight: item predictions sent at once within a pass (`predict_items`); the passes
    themselves run one after the other (the stopping rule reads each pass's score).
    universe: the only items passes may use (`vse.core.protocols.select`), e.g. the items the
    explainer was not shown, or one half of them (`vse.method.best_of`).
    """
    drawer = ItemDraw(target, config, universe)  # checks first, before any call: a unit no pass can score says why
    store = store if store is not None else PredictionStore()
    fixed = (
        fewshot_examples(fewshot, config, seeds.rng(seed, "fewshot"))
        if config.fewshot_draw == FewshotDraw.PER_RUN
        else None
    )
    details: list[PassRecord] = []
    usage, calls, failed = Usage(), 0, 0
    rule = config.stop
    bar = tqdm(
        total=rule.max_runs,
        desc=f"score {target.neuron} on {target.kind}",
        unit="pass",
        leave=False,
        disable=not progress,
    )

    def predict(text: str, examples: tuple[Example, ...], texts: list[str], index: int) -> Simulation:
        return predict_items(
            client,
            text,
            texts,
            kind=target.kind,
            examples=examples,
            config=config,
            signed=target.signed,
            store=store,
            in_flight=in_flight,
            seed=seeds.llm_seed(seed, "pass", index),
            embeddings=embeddings,
        )

    def one_pass(_i: int) -> float:
        nonlocal usage, calls, failed
        while True:
            index = len(details)
            rng = seeds.rng(seed, "pass", index)
            items, redraws = drawer.draw(rng)
            examples = fixed if fixed is not None else fewshot_examples(fewshot, config, rng)
            texts = [target.texts[i] for i in items]
            true = [int(target.values[i]) for i in items]
            try:
                sim = predict(explanation, examples, texts, index)
                predicted = np.asarray(sim.values)
                if config.prior_corrected:
                    prior = predict(NEUTRAL_EXPLANATION, examples, texts, index)
                    sim.calls += prior.calls
                    sim.usage = sim.usage + prior.usage
                    predicted = predicted - np.asarray(prior.values)
            except SimulationError as err:
                failed += 1
                details.append(PassRecord(index, items.tolist(), true, [], None, 0, redraws, error=str(err)))
                if checkpoint is not None:
                    checkpoint()
                if failed > config.max_failed_passes:
                    raise SimulationError(
                        f"{target.neuron}: {failed} simulation passes failed, the last: {err}"
                    ) from None
                continue
            score = correlation_score(predicted, true)
            calls += sim.calls
            usage = usage + sim.usage
            details.append(
                PassRecord(
                    index, items.tolist(), true, [round(v, 4) for v in sim.values], round(score, 4), sim.calls, redraws
                )
            )
            bar.update(1)
            if checkpoint is not None:
                checkpoint()
            return score

    if config.protocol in EXACT_PROTOCOLS:
        # One exact pass over every item: nothing is sampled, so there is no interval to narrow.
        scores, half_width, hit_cap = [one_pass(0)], 0.0, False
        mean = scores[0]
    else:
        outcome = run_until_confident(one_pass, rule)
        scores, mean, half_width, hit_cap = outcome.scores, outcome.mean, outcome.half_width, outcome.hit_cap
    bar.close()
    ok = [p for p in details if p.score is not None]
    pred = np.concatenate([p.predicted for p in ok])
    true = np.concatenate([p.true for p in ok])
    return ScoreResult(
        mean=mean,
        half_width=half_width,
        passes=len(scores),
        hit_cap=hit_cap,
        scores=[round(s, 4) for s in scores],
        accuracy=accuracy(np.rint(pred), true),
        mse=mse(pred, true),
        mae=mae(pred, true),
        failed_passes=failed,
        calls=calls,
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        details=details,
    )
