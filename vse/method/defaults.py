"""The user-facing defaults, in one place: the Python API (`ScoreConfig()`, `ExplainConfig()`), the
commands' options and the studies read them from here, so a neuron scored from Python and from the
shell with no options gets the same score.

Scoring defaults to what the simulator study recommends for comparing and selecting explanations:
the embedding simulator (no LLM) over every item the explainer cannot have seen (``recall-free``).
The paper's Algorithm 1 is ``mode=Mode.ONE, protocol=Protocol.UNIFORM``; the recorded experiments
name it explicitly (`vse.studies.registry`), so changing a default here never changes a result.
"""

from __future__ import annotations

from vse.core.vocab import Api, Display, FewshotDraw, Kind, Method, Mode, Polarity, Protocol, RankBy

#: The endpoint calls go to.
API = Api.COMPLETIONS
#: Which side of the values is shown and scored.
POLARITY = Polarity.POSITIVE

# Explaining. Both chosen by the defaults study (`vse.studies.defaults_study`, results/defaults-study/): on 48
# units nobody had looked at, best of 4 chosen on held-in items, from the top display, separated each unit's own
# explanation from the others' best by its rule fixed before recording (p 6.1e-06 and 2.1e-06 on `_conv_head`).
#: Candidate explanations per neuron, the best chosen on held-in items (``vse explain/label/validate --n``,
#: `vse.method.best_of.explain_best`).
N_EXPLANATIONS = 4
#: Which of the target's top pairs a prompt shows, and how "top" is ordered.
DISPLAY = Display.TOP
RANK_BY = RankBy.RAW

# Scoring.
#: The simulator and which items a pass predicts. Recall-free passes NeuronEval's missing- and extra-labels
#: checks at activation frequencies 0.1, 0.01 and 0.001 (results/scorer-sanity/: 100 % decreases, n = 50,000;
#: top-and-random and the paper's uniform 50 items fail extra labels there); where a unit's whole concept lies
#: among the items the explainer was shown it cannot judge it (unscorable, never a pass), and `all` is the
#: protocol that does, at the price of scoring the shown items again (docs/studies/scorer-sanity.md).
SIMULATOR = Mode.EMBEDDING
PROTOCOL = Protocol.RECALL_FREE
#: Items a simulation pass predicts, and Algorithm 1's cap on passes.
N_ITEMS = 50
MAX_PASSES = 15
#: When the few-shot neurons' pairs are drawn.
FEWSHOT_DRAW = FewshotDraw.PER_RUN

# Validating (`vse validate`): which methods and targets, and the shared item pool.
VALIDATE_METHODS = (Method.WEIGHT_LABEL, Method.CLIP_DISSECT)
VALIDATE_TARGETS = (Kind.WEIGHT_LABEL, Kind.CAPTION_ACTIVATION)
VALIDATE_N_TOP = 6
VALIDATE_N_RANDOM = 40
