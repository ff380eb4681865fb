"""The recorded experiments, as data: which neurons, which methods, which targets, which sizes.

`make reproduce` runs every experiment in `EXPERIMENTS` against its cassettes; `make record`
runs them against the local LLM server and appends what the cassettes lack (resumable per
neuron). Evaluation neurons are drawn with a fixed seed from the layer, excluding the
hand-labelled few-shot neurons and the prompt-development neurons (`vse.data.loader.draw_neurons`).
Experiments are data only: they never read files themselves.
"""

from __future__ import annotations

from vse.core.stats import StopRule
from vse.core.vocab import Api, Display, FewshotDraw, Kind, Method, Mode, Polarity, Protocol, RankBy
from vse.method.explain import ExplainConfig
from vse.method.score import ScoreConfig
from vse.outputs.experiment_notes import NOTES, PRIORITY
from vse.studies.defaults_study import DefaultsStudy
from vse.studies.kind import StudyKind, one_item_scorer
from vse.studies.matched import MatchedStudy
from vse.studies.sae_study import SaeStudy
from vse.studies.scorer_sanity import ScorerSanityStudy
from vse.studies.simulator import RECALL_FREE_ALL, SimulatorName, SimulatorStudy
from vse.studies.specificity_study import SpecificityStudy
from vse.studies.strategy import StrategyStudy
from vse.studies.table import TableExperiment

#: The experiments recorded before the simulator study ranked the shown pairs by their scaled integers
#: (ties by index; the explainer now ranks by the raw values); pinned so that they keep sending the
#: recorded requests.
_SCALED = ExplainConfig(shown=Display.TOP, rank_by=RankBy.SCALED)


def _three_passes(n_items: int = 50, **fields) -> ScoreConfig:
    """Three passes of ``n_items`` uniformly drawn items (the paper's minimum), one item per call."""
    return ScoreConfig(
        mode=Mode.ONE,
        protocol=Protocol.UNIFORM,
        n_items=n_items,
        n_fewshot_pairs=25,
        stop=StopRule(min_runs=3, max_runs=3),
        **fields,
    )


_THREE_PASSES = _three_passes()
#: The matched studies' scoring: the paper's one-item simulator on their shared pools.
_MATCHED = one_item_scorer()

EXPERIMENTS: dict[str, StudyKind] = {
    e.name: e
    for e in [
        # One second-last-layer neuron, every method, every target (a small Table 1).
        TableExperiment(
            name="all-methods-one-neuron",
            layer="_blocks.15",
            n_neurons=1,
            neuron_seed=7,
            methods=(
                Method.CAPTION_ACTIVATION,
                Method.WEIGHT_LABEL,
                Method.WEIGHT_CLIP,
                Method.WEIGHT_EXPLANATION,
                Method.CLIP_DISSECT,
            ),
            targets=(Kind.CAPTION_ACTIVATION, Kind.WEIGHT_LABEL, Kind.WEIGHT_CLIP),
            # 15 pairs shown (not the paper's 25) and 40 items a pass: what this CPU records in ~25 min.
            explain=ExplainConfig(shown=Display.TOP, n_pairs=15, rank_by=RankBy.SCALED),
            score=_three_passes(40),
        ),
        # The same explain + score through /v1/completions and /v1/chat/completions.
        TableExperiment(
            name="chat-vs-completions",
            n_neurons=1,
            neuron_seed=11,
            methods=(Method.WEIGHT_LABEL,),
            targets=(Kind.WEIGHT_LABEL,),
            explain=ExplainConfig(shown=Display.TOP, api=Api.CHAT, rank_by=RankBy.SCALED),
            score=_three_passes(api=Api.CHAT),
        ),
        TableExperiment(
            name="chat-vs-completions-baseline",
            explain=_SCALED,
            n_neurons=1,
            neuron_seed=11,
            methods=(Method.WEIGHT_LABEL,),
            targets=(Kind.WEIGHT_LABEL,),
            score=_THREE_PASSES,
        ),
        # The paper's per-pass few-shot draws on the same neuron and item draws as the baseline.
        TableExperiment(
            name="fewshot-per-pass",
            explain=_SCALED,
            n_neurons=1,
            neuron_seed=11,
            methods=(Method.WEIGHT_LABEL,),
            targets=(Kind.WEIGHT_LABEL,),
            score=_three_passes(fewshot_draw=FewshotDraw.PER_PASS),
        ),
        # App. C.3.2: both signs at once, scored on the signed scale by the default one-item simulator.
        TableExperiment(
            name="signed-one-neuron",
            explain=_SCALED,
            n_neurons=1,
            neuron_seed=3,
            methods=(Method.WEIGHT_LABEL,),
            targets=(Kind.WEIGHT_LABEL,),
            polarity=Polarity.BOTH,
            score=_three_passes(40),
        ),
        # App. C.3.1: the same neuron's negative weights alone (flipped to magnitudes), explained and scored.
        TableExperiment(
            name="negative-one-neuron",
            explain=_SCALED,
            n_neurons=1,
            neuron_seed=3,
            methods=(Method.WEIGHT_LABEL,),
            targets=(Kind.WEIGHT_LABEL,),
            polarity=Polarity.NEGATIVE,
            score=_three_passes(40),
        ),
        # The paper's Table 1 on the second-last hidden layer (320 channels out of _blocks.15):
        # every method, best of 3, on all three targets, 3 neurons drawn with seed 9. Predictions on
        # shared pools (each neuron's top 6 + 30 random items per target); scored under the paper's
        # uniform protocol and the held-out one (vse.outputs.paper_tables). 15 pairs shown, held-out display.
        MatchedStudy(
            name="table1-second-last-layer",
            layer="_blocks.15",
            n_neurons=3,
            neuron_seed=9,
            methods=(
                Method.CLIP_DISSECT,
                Method.CAPTION_ACTIVATION,
                Method.WEIGHT_LABEL,
                Method.WEIGHT_CLIP,
                Method.WEIGHT_EXPLANATION,
            ),
            n_explanations=3,
            targets=(Kind.CAPTION_ACTIVATION, Kind.WEIGHT_LABEL, Kind.WEIGHT_CLIP),
            n_top=6,
            n_random=30,
            explain=ExplainConfig(shown=Display.HELDOUT, n_pairs=15, rank_by=RankBy.SCALED),
            score=_MATCHED,
            figures=True,
        ),
        # The paper's Tables 8-9 on the last hidden layer (1280 units out of _conv_head).
        MatchedStudy(
            name="tables8-9-last-layer",
            n_neurons=3,
            neuron_seed=89,
            methods=(Method.CLIP_DISSECT, Method.WEIGHT_LABEL, Method.CAPTION_ACTIVATION),
            n_explanations=3,
            targets=(Kind.WEIGHT_LABEL, Kind.CAPTION_ACTIVATION),
            n_top=6,
            n_random=30,
            explain=ExplainConfig(shown=Display.HELDOUT, n_pairs=15, rank_by=RankBy.SCALED),
            score=_MATCHED,
            figures=True,
        ),
        # The paper's Table 5 (App. B.2.1): how the few-shot neurons' Weight-Label pairs
        # are picked, 10 paired runs per strategy on one last-layer neuron drawn with seed 5.
        StrategyStudy(
            name="fewshot-strategies",
            neuron_seed=5,
            n_runs=10,
            explain=ExplainConfig(shown=Display.HELDOUT, n_pairs=15, rank_by=RankBy.SCALED),
        ),
        # Does the score tell a neuron's own explanation from others'? 16 neurons.
        MatchedStudy(name="power-study", explain=ExplainConfig(shown=Display.HELDOUT, rank_by=RankBy.SCALED)),
        # Which simulator and protocol separate explanations: 32 + 16 units, both targets.
        # The recommendation was read off its numbers after recording (docs/studies/simulator-study.md).
        SimulatorStudy(recommended=(SimulatorName.EMBEDDING, RECALL_FREE_ALL)),
        # The recommended path on 48 new units: display x best of 1/2/4/8, chosen on held-in items;
        # picks the defaults (`vse.method.defaults`) by a rule fixed before recording.
        DefaultsStudy(),
        # Issue 31: NeuronEval's sanity checks (missing / extra labels) for every protocol, real explanations too
        # broad and too narrow, and Meta-AUPRC; the design in the module's doc, fixed before recording.
        ScorerSanityStudy(),
        # Channels vs the latents of an SAE of the same layer (issue 33): 32 of each, best of 4, the default scorer.
        SaeStudy(),
        # Issue 32: does choosing among more candidates, or for specificity, single out a unit? 32 + 16 new units,
        # both displays x best of 4; the pick rule fixed in the module's doc before recording.
        SpecificityStudy(),
    ]
}


def check_notes(experiments=None, notes=None, priority=None) -> None:
    """Raise unless the report's notes (`vse.outputs.experiment_notes`) name exactly the experiments here."""
    names = set(EXPERIMENTS if experiments is None else experiments)
    noted = set(NOTES if notes is None else notes)
    ranked = set(PRIORITY if priority is None else priority)
    problems = []
    if names - noted:
        problems.append(f"experiments without a note: {', '.join(sorted(names - noted))}")
    if noted - names:
        problems.append(f"notes of no experiment: {', '.join(sorted(noted - names))}")
    if ranked - names:
        problems.append(f"report priority names no experiment: {', '.join(sorted(ranked - names))}")
    if problems:
        raise ValueError("vse/outputs/experiment_notes.py and the registry disagree: " + "; ".join(problems))


def get_experiment(name: str) -> StudyKind:
    try:
        return EXPERIMENTS[name]
    except KeyError:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(EXPERIMENTS)}") from None
