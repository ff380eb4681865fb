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
from vse.method.score import ScoreConfig, Unscorable, draw_items

#: The correlation score's range, max - min (NeuronEval normalises a change by it).
SCORE_SPAN = 200.0


def oracle_score(target: Target, concept: np.ndarray, config: ScoreConfig, *, seed: int) -> float | None:
    """`score_target`'s mean for a simulator that predicts ``concept[i]`` for item i; None when unscorable."""
    c = np.asarray(concept, dtype=np.float64)
    if len(c) != len(target.values):
        raise ValueError(f"{target.neuron}: a concept of {len(c)} items for {len(target.values)} values")

    def one_pass(index: int) -> float:
        items, _redraws = draw_items(target, config, seeds.rng(seed, "pass", index))
        return correlation_score(c[items], [int(v) for v in target.values[items]])

    try:
        if config.protocol in EXACT_PROTOCOLS:
            return one_pass(0)
        return run_until_confident(one_pass, config.stop).mean
    except Unscorable:
        return None
