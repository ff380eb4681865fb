"""vse: explain single neurons of vision models with an LLM, and score the explanations.

The Python API, the same verbs as the command line:

>>> from vse import LLM, Mode, Protocol, ScoreConfig, explain_neuron, score_explanation  # doctest: +SKIP
>>> paper = ScoreConfig(mode=Mode.ONE, protocol=Protocol.UNIFORM)  # Algorithm 1 (default: embeddings)
>>> with LLM.open("http://127.0.0.1:8765/v1", cassette="my-run.json.gz", record=True) as llm:
...     [rec] = explain_neuron("efficientnet_lite0/_conv_head/17", "weight-label", llm=llm)
...     print(score_explanation(rec.neuron, rec.explanation, "weight-label", llm=llm, config=paper).line())
"""

# First, before any import: vse.method.records reads it while this package is still initialising.
__version__ = "0.1.0"

from vse.core.stats import StopRule
from vse.core.target import Target
from vse.core.vocab import (
    USER_METHOD,
    Api,
    Display,
    FewshotDraw,
    FewshotStrategy,
    Kind,
    Method,
    Mode,
    Polarity,
    Protocol,
    RankBy,
)
from vse.data.loader import load_target
from vse.method.best_of import BestOfN, Candidate, best_of_n, explain_best
from vse.method.explain import ExplainConfig, new_run_config
from vse.method.label_record import LabelRecord, UnitUsage
from vse.method.llm import LLM
from vse.method.pipeline import explain_neuron, score_explanation
from vse.method.records import ExplanationRecord, PassRecord, Provenance, ScoreRecord, ScoreResult
from vse.method.score import ScoreConfig, Unscorable
from vse.method.simulators.embedding import EmbeddingStore

__all__ = [
    "LLM",
    "USER_METHOD",
    "Api",
    "BestOfN",
    "Candidate",
    "Display",
    "EmbeddingStore",
    "ExplainConfig",
    "ExplanationRecord",
    "FewshotDraw",
    "FewshotStrategy",
    "Kind",
    "LabelRecord",
    "Method",
    "Mode",
    "PassRecord",
    "Polarity",
    "Protocol",
    "Provenance",
    "RankBy",
    "ScoreConfig",
    "ScoreRecord",
    "ScoreResult",
    "StopRule",
    "Target",
    "UnitUsage",
    "Unscorable",
    "__version__",
    "best_of_n",
    "explain_best",
    "explain_neuron",
    "load_target",
    "new_run_config",
    "score_explanation",
]
