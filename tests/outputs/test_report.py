from vse.method.records import Provenance, ScoreRecord
from vse.outputs.tables import best_of, render_scores
from vse.outputs.tables import best_of_table as markdown_table

PROV = Provenance("m", "completions", None, None, "abc", (), 0)


def _rec(method, seed, expl, scores, mean, hw, passes, cap, acc, mse, mae):
    return ScoreRecord(
        neuron="m/l/1",
        method=method,
        explanation=expl,
        explanation_seed=seed,
        target="weight-label",
        polarity="positive",
        mean=mean,
        half_width=hw,
        passes=passes,
        hit_cap=cap,
        scores=scores,
        accuracy=acc,
        mse=mse,
        mae=mae,
        failed_passes=0,
        calls=0,
        prompt_tokens=0,
        completion_tokens=0,
        provenance=PROV,
    )


RECORDS = [
    _rec("weight-label", 0, "dogs", [10.0, 20.0, 30.0], 20.0, 16.9, 3, False, 0.5, 4.0, 1.5),
    _rec("weight-label", 1, "cats", [30.0, 40.0, 50.0], 40.0, 16.9, 8, True, 0.25, 5.0, 2.0),
    _rec("clip-dissect", None, "raspberry", [0.0, 1.0, -1.0], 0.0, 1.7, 3, False, 0.1, 9.0, 3.0),
]


def test_best_of_keeps_the_highest_mean_per_method():
    best = best_of(RECORDS)
    assert {(r.method, r.explanation) for r in best} == {("weight-label", "cats"), ("clip-dissect", "raspberry")}


def test_markdown_table_rows_and_cap_flag():
    table = markdown_table(RECORDS)
    lines = table.strip().splitlines()
    assert len(lines) == 4
    assert (
        "| m/l/1 | weight-label | the main thing this neuron does is find cats "
        "| 40.00 ± 16.90 (8, cap) | 25.0% | 5.00 | 2.00 |" in lines
    )
    assert (
        "| m/l/1 | clip-dissect | the main thing this neuron does is find raspberry "
        "| 0.00 ± 1.70 (3) | 10.0% | 9.00 | 3.00 |" in lines
    )


def test_plot_is_deterministic():
    a, b = render_scores(RECORDS, "t"), render_scores(RECORDS, "t")
    assert a[:8] == b"\x89PNG\r\n\x1a\n"
    assert a == b
