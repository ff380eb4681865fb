"""`vse` re-exports its Python API, and importing it loads no deep-learning library."""

import subprocess
import sys


def test_the_api_is_importable_from_the_package():
    from vse import LLM, Kind, Method, Polarity, Target, __version__, explain_neuron, load_target, score_explanation
    from vse.core.target import Target as CoreTarget
    from vse.data.loader import load_target as loader_load_target
    from vse.method import pipeline

    assert (LLM, explain_neuron, score_explanation) == (
        pipeline.LLM,
        pipeline.explain_neuron,
        pipeline.score_explanation,
    )
    assert load_target is loader_load_target and Target is CoreTarget
    assert Method.WEIGHT_LABEL == Kind.WEIGHT_LABEL == "weight-label" and Polarity.BOTH == "both"
    assert __version__.count(".") == 2
    target = load_target("efficientnet_lite0/_conv_head/17", Kind.WEIGHT_LABEL)
    assert isinstance(target, Target) and len(target.texts) == len(target.raw) == 1000


def test_import_vse_loads_no_torch():
    code = (
        "import sys, vse\n"
        "heavy = sorted(m for m in ('torch', 'torchvision', 'transformers', 'matplotlib') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_the_configs_and_records_the_verbs_take_and_return_are_exported():
    import vse
    from vse.method.records import ExplanationRecord, ScoreRecord
    from vse.method.score import ScoreConfig

    assert (vse.ScoreConfig, vse.ScoreRecord, vse.ExplanationRecord) == (ScoreConfig, ScoreRecord, ExplanationRecord)
    assert {"ExplainConfig", "StopRule", "EmbeddingStore", "Provenance"} <= set(vse.__all__)
