"""vse's score under NeuronEval's sanity checks: Algorithm 1 with a perfect simulator.

At metric level the simulator is the identity: it predicts exactly the concept vector ``c`` the
check hands it (NeuronEval's c_t), so what is tested is vse's scoring itself, not a simulator's
reading of words (the text-level study, `vse.studies.scorer_sanity`, tests simulators). Everything
else is `score_target`'s own code: each pass draws its items with `draw_items` (the protocol's
`vse.core.protocols.select`, with its own exclusion of the items the explainer was shown, and the
redraw of a constant pass) from the generator `score_target` gives pass i (stream "pass"), scores
them with `correlation_score` (100 x Pearson, `vse.core.exact`), and the passes run under the
config's `StopRule` through `run_until_confident` (Algorithm 1); an exact protocol is one pass.
`tests/method/test_sanity.py` checks that this is `score_target`'s mean, bit for bit, with a
simulator that returns ``c``.

A case the protocol cannot score (its draws keep finding one true value, or the items the
explainer did not see are all of one value) is ``None``: the sanity counts keep it in its own
column (`vse.core.sanity.count_decreases`).
"""

from __future__ import annotations

import numpy as np

from vse.core import seeds
from vse.core.stats import correlation_score, run_until_confident
from vse.core.target import Target
from vse.core.vocab import EXACT_PROTOCOLS
from vse.method.score import ItemDraw, ScoreConfig, Unscorable

#: The correlation score's range, max - min (NeuronEval normalises a change by it).
SCORE_SPAN = 200.0


def oracle_score(target: Target, concept: np.ndarray, config: ScoreConfig, *, seed: int) -> float | None:
    """`score_target`'s mean for a simulator that predicts ``concept[i]`` for item i; None when unscorable."""
    return Oracle(target, config).score(concept, seed=seed)


class Oracle:
    """`oracle_score` for many concepts on one target under one config: ``Oracle(target, config).score(c,
    seed=s)`` is ``oracle_score(target, c, config, seed=s)``. What does not depend on the concept is done
    once, here: the scorability check and the protocol's ranking (`ItemDraw`), the true values, and an exact
    protocol's one set of items (every pass of it is the same items, so the concept is indexed once).

    The items of pass i under seed s are a function of (target, config, s, i) alone (the draw and its redraws
    read the true values, never the concept), so they are drawn once and kept: a sanity case scores s(a, c)
    and s(a, c') with one seed, and both tests share the seeds. Any per-item simulator's predictions can be
    the concept (the embedding simulator's cosines: `vse.studies.scorer_sanity.embedding_scorer`).
    """

    def __init__(self, target: Target, config: ScoreConfig, universe: np.ndarray | None = None) -> None:
        """universe: the only items the passes may use, as `score_target`'s (None: the protocol's own rule)."""
        self.target, self.config = target, config
        # score_target correlates int(value) of each item; the scaled values are integers already, so this is
        # them as floats (+ 0.0: never a -0.0, as int() gives none).
        self._true = np.asarray(target.values, dtype=np.float64) + 0.0
        try:
            self._draw: ItemDraw | None = ItemDraw(target, config, universe)
        except Unscorable:
            self._draw = None
        self._exact_items: np.ndarray | None = None
        if self._draw is not None and config.protocol in EXACT_PROTOCOLS:
            try:
                self._exact_items, _redraws = self._draw.draw(seeds.rng(0, "pass", 0))  # draws nothing
            except Unscorable:
                self._draw = None
            else:
                self._exact_true = self._true[self._exact_items]
        self._passes: dict[tuple[int, int], tuple[np.ndarray, np.ndarray] | Unscorable] = {}
        # A pass's score is a function of its items and the concept on them alone: a perturbed concept that
        # agrees with the base one on a pass's 50 items (most passes of a sparse concept) scores as it did.
        self._scores: dict[tuple[int, int, bytes], float] = {}

    def _pass(self, seed: int, index: int, draw: ItemDraw) -> tuple[np.ndarray, np.ndarray]:
        """(items, their true values) of pass ``index`` under ``seed``; raises `Unscorable` as its draw did."""
        key = (seed, index)
        if key not in self._passes:
            try:
                items, _redraws = draw.draw(seeds.rng(seed, "pass", index))
                self._passes[key] = (items, self._true[items])
            except Unscorable as err:
                self._passes[key] = err
        got = self._passes[key]
        if isinstance(got, Unscorable):
            raise got.with_traceback(None)  # the kept error, without the tracebacks of its earlier raises
        return got

    def score(self, concept: np.ndarray, *, seed: int) -> float | None:
        c = np.asarray(concept, dtype=np.float64)
        if len(c) != len(self.target.values):
            raise ValueError(f"{self.target.neuron}: a concept of {len(c)} items for {len(self.target.values)} values")
        draw = self._draw
        if draw is None:
            return None
        if self._exact_items is not None:
            return correlation_score(c[self._exact_items], self._exact_true)

        def one_pass(index: int) -> float:
            items, true = self._pass(seed, index, draw)
            predicted = c[items]
            key = (seed, index, predicted.tobytes())
            if key not in self._scores:
                self._scores[key] = correlation_score(predicted, true)
            return self._scores[key]

        try:
            return run_until_confident(one_pass, self.config.stop).mean
        except Unscorable:
            return None
