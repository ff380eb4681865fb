"""vse: explain single neurons of vision models with an LLM, and score the explanations.

The Python API, the same verbs as the command line:

>>> from vse import LLM, explain_neuron, score_explanation  # doctest: +SKIP
>>> with LLM.open("http://127.0.0.1:8765/v1", cassette="my-run.json.gz", record=True) as llm:
...     [rec] = explain_neuron("efficientnet_lite0/_conv_head/17", "weight-label", llm=llm)
...     print(score_explanation("efficientnet_lite0/_conv_head/17", rec.explanation, "weight-label", llm=llm).line())
"""

# First, before any import: vse.method.records reads it while this package is still initialising.
__version__ = "0.1.0"

from vse.core.target import Target
from vse.core.vocab import Api, Kind, Method, Mode, Polarity, Protocol
from vse.data.loader import load_target
from vse.method.llm import LLM
from vse.method.pipeline import explain_neuron, score_explanation

__all__ = [
    "LLM",
    "Api",
    "Kind",
    "Method",
    "Mode",
    "Polarity",
    "Protocol",
    "Target",
    "__version__",
    "explain_neuron",
    "load_target",
    "score_explanation",
]
